//! docker-compose.yml cannot run here (no Docker engine), so this checks it is consistent with
//! the rest of the project: the services exist, the archiver gets the environment variables it
//! reads, ports match what the clients are pointed at, the bucket in the table URI is the one the
//! MinIO init creates, and the mounted config is the shipped example.

use std::path::PathBuf;

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn env_of<'a>(svc: &'a Value, key: &str) -> &'a str {
    svc["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("environment {key} missing in {svc:?}"))
}

fn host_ports(svc: &Value) -> Vec<String> {
    svc["ports"]
        .as_sequence()
        .map(|ps| {
            ps.iter()
                .map(|p| p.as_str().unwrap().split(':').next().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn services_and_wiring_are_consistent() {
    let c = compose();
    let services = &c["services"];
    for name in ["kafka", "minio", "minio-init", "archiver", "server"] {
        assert!(services[name].is_mapping(), "service {name} missing");
    }

    // The archiver reaches Kafka on the in-network listener Kafka advertises.
    let kafka = &services["kafka"];
    let archiver = &services["archiver"];
    let brokers = env_of(archiver, "ORDERLAKE_BROKERS");
    assert!(
        env_of(kafka, "KAFKA_ADVERTISED_LISTENERS").contains(&format!("PLAINTEXT://{brokers}")),
        "{brokers}"
    );
    assert_eq!(
        env_of(kafka, "KAFKA_PROCESS_ROLES"),
        "broker,controller",
        "KRaft mode"
    );

    // S3: endpoint is the MinIO service's API port; the credentials are the ones the init creates.
    let minio_init = &services["minio-init"];
    let endpoint = env_of(archiver, "AWS_ENDPOINT_URL");
    assert_eq!(endpoint, env_of(minio_init, "MINIO_URL"));
    assert!(
        host_ports(&services["minio"]).contains(&endpoint.rsplit(':').next().unwrap().to_owned())
    );
    assert_eq!(
        env_of(archiver, "AWS_ACCESS_KEY_ID"),
        env_of(minio_init, "ARCHIVER_ACCESS_KEY")
    );
    assert_eq!(
        env_of(&services["server"], "AWS_ACCESS_KEY_ID"),
        env_of(minio_init, "SERVER_ACCESS_KEY")
    );
    assert_eq!(
        env_of(archiver, "AWS_ALLOW_HTTP"),
        "true",
        "MinIO here speaks plain HTTP"
    );
    for key in ["AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        env_of(archiver, key);
    }

    // The table lives in the bucket the init creates, under the prefix the policies grant.
    let table = env_of(archiver, "ORDERLAKE_TABLE_URI");
    let bucket = env_of(minio_init, "ORDERLAKE_BUCKET");
    assert!(
        table.starts_with(&format!("s3://{bucket}/archive/")),
        "{table}"
    );
    assert_eq!(
        table,
        env_of(&services["server"], "ORDERLAKE_TABLE_URI"),
        "both sides open one archive"
    );
    let policy = std::fs::read_to_string(root().join("minio/policies/archiver.json")).unwrap();
    assert!(policy.contains("__BUCKET__/archive/*") && policy.contains("s3:PutObject"));
    let read_only = std::fs::read_to_string(root().join("minio/policies/server.json")).unwrap();
    assert!(!read_only.contains("PutObject") && !read_only.contains("DeleteObject"));
    let init = std::fs::read_to_string(root().join("minio/init.sh")).unwrap();
    assert!(init.contains("mc mb --ignore-existing"));

    // The archiver runs the shipped example config, mounted where its command says.
    let cmd: Vec<&str> = archiver["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd, ["run", "--config", "/etc/orderlake/archiver.toml"]);
    let mounts: Vec<&str> = archiver["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(mounts.contains(&"./config:/etc/orderlake:ro"), "{mounts:?}");
    assert!(root().join("config/archiver.toml").is_file());
    let grace: u64 = archiver["stop_grace_period"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let config = std::fs::read_to_string(root().join("config/archiver.toml")).unwrap();
    let configured: u64 = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("grace_secs = "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        grace > configured,
        "docker must wait longer than the archiver's own grace period"
    );
}

/// Every environment variable the compose file gives the archiver is one the archiver reads.
#[test]
fn archiver_environment_names_are_real() {
    let c = compose();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_orderlake-archiver"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for (k, _) in c["services"]["archiver"]["environment"]
        .as_mapping()
        .unwrap()
    {
        let k = k.as_str().unwrap();
        let known = k.starts_with("AWS_") || help.contains(&format!("env: {k}="));
        assert!(known, "{k} is not read by orderlake-archiver run");
    }
}
