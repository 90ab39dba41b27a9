//! The operations files in `ops/` against the code: every metric the Grafana dashboard and the
//! alerting rules name is one the binaries export, the dashboard shows what an operator must see,
//! Prometheus scrapes the ports docker-compose.yml gives the binaries, Prometheus's own
//! `promtool` accepts the configuration and passes the alerts' unit tests, and Alertmanager's
//! `amtool` accepts its configuration and routes every alert to the receiver of its severity.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use orderlake_telemetry::catalogue::{self, Kind};

/// The repository; the manifest directory is read when the test runs (the binary may have been
/// built in another checkout sharing the target directory).
fn root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Metric names in a PromQL expression (ours and the lag exporters' name).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("orderlake_") || t.starts_with("kafka_"))
        .map(str::to_owned)
        .collect()
}

/// Whether the catalogue has `name` (a histogram's series carry `_bucket`, `_sum`, `_count`).
fn exported(name: &str) -> bool {
    catalogue::all().any(|m| match m.kind {
        Kind::Histogram(_) => ["", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| name == format!("{}{suffix}", m.name)),
        Kind::Counter | Kind::Gauge => name == m.name,
    })
}

fn dashboard_exprs() -> (serde_json::Value, Vec<String>) {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("ops/grafana/dashboards/orderlake.json")).unwrap();
    let exprs = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    (dashboard, exprs)
}

fn alert_rules() -> Vec<serde_yaml::Value> {
    let rules: serde_yaml::Value = serde_yaml::from_str(&read("ops/alerts.yml")).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

fn alert_exprs() -> Vec<String> {
    alert_rules()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect()
}

fn run_tool(variable: &str, args: &[&str]) -> std::process::Output {
    let tool = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests through ./scripts/test.sh, which installs it")
    });
    Command::new(&tool)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    let (_, dashboard) = dashboard_exprs();
    for (file, exprs) in [("dashboard", dashboard), ("alerts", alert_exprs())] {
        assert!(!exprs.is_empty(), "{file}");
        for expr in &exprs {
            for name in metric_names(expr) {
                assert!(exported(&name), "{file}: {name} is not exported ({expr})");
            }
        }
    }
}

#[test]
fn the_dashboard_shows_lag_freshness_throughput_errors_and_query_latency() {
    use catalogue::{archiver as a, server as s};
    let (dashboard, exprs) = dashboard_exprs();
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for wanted in [
        a::PARTITION_LAG.to_owned(),
        a::NEWEST_ARCHIVED_TIMESTAMP.to_owned(),
        a::RECORDS_ARCHIVED.to_owned(),
        a::DECODE_FAILURES.to_owned(),
        a::STORAGE_RETRIES.to_owned(),
        s::QUERIES.to_owned(),
        format!("{}_bucket", s::QUERY_DURATION),
    ] {
        assert!(
            used.contains(&wanted),
            "the dashboard does not show {wanted}"
        );
    }
    // Every panel reads the provisioned datasource.
    let provisioned: serde_yaml::Value =
        serde_yaml::from_str(&read("ops/grafana/provisioning/datasources/prometheus.yml")).unwrap();
    let uid = provisioned["datasources"][0]["uid"].as_str().unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], uid, "{}", panel["title"]);
        }
    }
}

#[test]
fn prometheus_scrapes_the_ports_compose_gives_the_binaries() {
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    let prometheus: serde_yaml::Value = serde_yaml::from_str(&read("ops/prometheus.yml")).unwrap();
    for (job, service) in [
        ("orderlake-archiver", "archiver"),
        ("orderlake-server", "server"),
    ] {
        let listen = compose["services"][service]["environment"]["ORDERLAKE_METRICS_LISTEN"]
            .as_str()
            .unwrap_or_else(|| panic!("{service} has no ORDERLAKE_METRICS_LISTEN"));
        let port = listen.rsplit(':').next().unwrap();
        let scrape = prometheus["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| s["job_name"] == job)
            .unwrap_or_else(|| panic!("no scrape job {job}"));
        assert_eq!(
            scrape["static_configs"][0]["targets"][0].as_str().unwrap(),
            format!("{service}:{port}")
        );
        let health = compose["services"][service]["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} has no health check"));
        let command = health
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            command.contains(&format!("127.0.0.1:{port}/ready")),
            "{service}: {command}"
        );
    }
}

#[test]
fn promtool_accepts_the_config_and_the_alerts_pass_their_unit_tests() {
    for args in [
        ["check", "config", "ops/prometheus.yml"],
        ["test", "rules", "ops/alerts.test.yml"],
    ] {
        let out = run_tool("ORDERLAKE_TEST_PROMTOOL", &args);
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn alertmanager_routes_every_alert_to_the_receiver_of_its_severity() {
    let out = run_tool(
        "ORDERLAKE_TEST_AMTOOL",
        &["check-config", "ops/alertmanager.yml"],
    );
    assert!(
        out.status.success(),
        "amtool check-config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = alert_rules();
    let names: BTreeSet<String> = rules
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    for rule in &rules {
        let alert = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert} has no severity"));
        let out = run_tool(
            "ORDERLAKE_TEST_AMTOOL",
            &[
                "config",
                "routes",
                "test",
                "--config.file=ops/alertmanager.yml",
                &format!("--verify.receivers={severity}"),
                &format!("alertname={alert}"),
                &format!("severity={severity}"),
            ],
        );
        assert!(
            out.status.success(),
            "{alert} (severity {severity}) is not routed to receiver {severity}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Inhibitions name only alerts that exist.
    let config: serde_yaml::Value = serde_yaml::from_str(&read("ops/alertmanager.yml")).unwrap();
    for rule in config["inhibit_rules"].as_sequence().unwrap() {
        for matcher in ["source_matchers", "target_matchers"]
            .iter()
            .flat_map(|k| rule[*k].as_sequence().unwrap())
            .map(|m| m.as_str().unwrap())
            .filter_map(|m| m.strip_prefix("alertname"))
        {
            let pattern = matcher.trim_start_matches(['=', '~']).trim_matches('"');
            for alert in pattern.split('|') {
                assert!(
                    names.contains(alert),
                    "inhibit rule names {alert}: no such alert"
                );
            }
        }
    }
    // Prometheus sends its alerts to the Alertmanager that compose runs.
    let prometheus: serde_yaml::Value = serde_yaml::from_str(&read("ops/prometheus.yml")).unwrap();
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    let target = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    let (service, port) = target.split_once(':').unwrap();
    let ports = compose["services"][service]["ports"]
        .as_sequence()
        .unwrap_or_else(|| panic!("compose has no service {service}"));
    assert!(
        ports
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(&format!(":{port}"))),
        "{ports:?}"
    );
}

#[test]
fn the_operations_doc_lists_every_metric_as_exported() {
    let doc = read("docs/operations.md");
    for (binary, metrics) in [
        ("archiver", catalogue::archiver::ALL),
        ("server", catalogue::server::ALL),
    ] {
        let table = catalogue::markdown_table(metrics);
        assert!(
            doc.contains(&table),
            "docs/operations.md must hold the {binary}'s metrics as exported:\n{table}"
        );
    }
}
