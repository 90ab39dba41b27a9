//! A server on port 0 over a fresh archive written through the archiver's own decoding and
//! writer, and signed-in Flight SQL clients.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt as _;
use orderlake_archive::{ArchiveTable, TableLocation};
use orderlake_ingest::{ArchiveWriter, MappingSet, SourceMapping, SourceRecord, WriterSettings};
use orderlake_server::config::{ServiceTokenConfig, UserConfig};
use orderlake_server::{RunningServer, ServerConfig, auth};
use tonic::transport::Channel;

pub const USER: &str = "analyst";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The known fixture records of `sql/tests/fixture.jsonl`.
pub fn fixture_records() -> Vec<SourceRecord> {
    orderlake_ingest::read_json_lines(&repo_path("sql/tests/fixture.jsonl")).unwrap()
}

/// A generated record as the archiver reads it from Kafka: on its partition (0 when the generator
/// leaves it to the producer), at the next offset of that topic and partition in `offsets`.
pub fn source_record(
    r: orderlake_samples::SampleRecord,
    offsets: &mut HashMap<(String, i32), i64>,
) -> SourceRecord {
    let partition = r.partition.unwrap_or(0);
    let next = offsets.entry((r.topic.clone(), partition)).or_default();
    let offset = *next;
    *next += 1;
    SourceRecord {
        topic: r.topic,
        partition,
        offset,
        timestamp_ms: Some(r.timestamp_ms),
        key: r.key,
        value: r.value,
        headers: r.headers,
    }
}

pub fn table_location(dir: &Path) -> TableLocation {
    TableLocation::parse(&dir.display().to_string(), HashMap::new()).unwrap()
}

/// Archives `records` into the table at `dir` (created on first use) in one commit.
pub async fn archive(dir: &Path, records: &[SourceRecord]) {
    archive_at(table_location(dir), records).await;
}

/// Archives `records` into the table at `location` (created on first use) in one commit.
pub async fn archive_at(location: TableLocation, records: &[SourceRecord]) {
    let table = ArchiveTable::open_or_create(location).await.unwrap();
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let mappings = MappingSet::new(SourceMapping::defaults()).unwrap();
    orderlake_ingest::archive_records(&mut writer, &mappings, records)
        .await
        .unwrap();
}

pub struct TestServer {
    pub server: RunningServer,
    pub archive_dir: PathBuf,
    pub service_token: String,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server over an archive holding `records`, with one user and one service token;
    /// `tweak` adjusts the configuration.
    pub async fn start(records: &[SourceRecord], tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let archive_dir = dir.path().join("archive");
        archive(&archive_dir, records).await;
        let (service_token, token_sha256) = auth::new_service_token();
        let mut config = ServerConfig::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.archive.table_uri = archive_dir.display().to_string();
        config.sql.views_dir = repo_path("sql");
        config.sql.refresh_interval_secs = 1;
        config.sql.target_partitions = 2;
        config.auth.users = vec![UserConfig {
            name: USER.into(),
            password_hash: auth::hash_password(PASSWORD),
        }];
        config.auth.service_tokens = vec![ServiceTokenConfig {
            name: "api-service".into(),
            token_sha256,
        }];
        tweak(&mut config);
        config.validate(Path::new("test")).unwrap();
        let server = RunningServer::start(config).await.unwrap();
        Self {
            server,
            archive_dir,
            service_token,
            _dir: dir,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.uri())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A client signed in as the test user through the handshake.
    pub async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let mut client = FlightSqlServiceClient::new(self.channel().await);
        client.handshake(USER, PASSWORD).await.unwrap();
        assert!(
            client.token().is_some(),
            "the handshake returns a bearer token"
        );
        client
    }
}

/// Every batch behind every endpoint of `info`.
pub async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        assert!(
            endpoint.location.is_empty(),
            "endpoints name no location: this server"
        );
        let ticket = endpoint.ticket.expect("endpoint has a ticket");
        let stream = client.do_get(ticket).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

pub async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client
        .execute(sql.to_owned(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    fetch(client, info).await
}

/// Runs `sql` to its end: the number of rows, or the error text (which names the gRPC code).
pub async fn run(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Result<usize, String> {
    let info = client
        .execute(sql.to_owned(), None)
        .await
        .map_err(|e| e.to_string())?;
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
    let batches: Vec<_> = stream.try_collect().await.map_err(|e| e.to_string())?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// Whether an error text from [`run`] carries `code`.
pub fn has_code(err: &str, code: tonic::Code) -> bool {
    err.contains(&format!("code: '{code}'"))
}

/// The status code of fetching `ticket` to its end as the holder of `token`.
pub async fn fetch_code(
    raw: &mut arrow_flight::flight_service_client::FlightServiceClient<Channel>,
    ticket: arrow_flight::Ticket,
    token: Option<&str>,
) -> (tonic::Code, String) {
    match raw.do_get(signed(ticket, token)).await {
        Err(s) => (s.code(), s.message().to_owned()),
        Ok(stream) => match stream.into_inner().try_collect::<Vec<_>>().await {
            Err(s) => (s.code(), s.message().to_owned()),
            Ok(_) => (tonic::Code::Ok, String::new()),
        },
    }
}

/// `message` with `token` (if any) as its bearer credentials.
pub fn signed<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// Rows of the batches as text, one `a|b|c` string per row.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .unwrap()
            })
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

/// Runs one of `tests/python/`'s client scripts (with the Python `scripts/test.sh` names) and
/// asserts that every check it printed passed.
pub async fn run_python_checks(script: &str, args: Vec<String>) {
    let python = std::env::var("ORDERLAKE_TEST_PYTHON").expect(
        "ORDERLAKE_TEST_PYTHON names a Python with adbc-driver-flightsql (scripts/test.sh sets it)",
    );
    let mut command = std::process::Command::new(python);
    command
        .arg(repo_path(&format!("tests/python/{script}")))
        .args(args);
    assert_checks_pass(command, script).await;
}

/// Runs a client script that prints one JSON object a check (`{"check": name, "ok": bool}`,
/// ending with the check `all`) and asserts that all passed.
pub async fn assert_checks_pass(mut command: std::process::Command, what: &str) {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    let all_passed = stdout.lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|c| c["check"] == "all" && c["ok"] == true)
    });
    assert!(
        output.status.success() && all_passed,
        "{what} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// One HTTP/1.1 request to the Trino door (a service token as Bearer), its JSON answer.
pub async fn trino_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> serde_json::Value {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         X-Trino-User: api-service\r\nX-Trino-Catalog: archive\r\nX-Trino-Schema: oms\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Runs `sql` through the Trino door to its end (following `nextUri`): the rows (cells as text,
/// joined by `|`), or the error object Trino reports.
pub async fn trino_rows(
    addr: std::net::SocketAddr,
    token: &str,
    sql: &str,
) -> Result<Vec<String>, serde_json::Value> {
    let mut answer = trino_http(addr, "POST", "/v1/statement", token, sql).await;
    let mut got = Vec::new();
    loop {
        if let Some(error) = answer.get("error") {
            return Err(error.clone());
        }
        for row in answer["data"].as_array().into_iter().flatten() {
            let cells: Vec<String> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            got.push(cells.join("|"));
        }
        let Some(next) = answer["nextUri"].as_str() else {
            return Ok(got);
        };
        let path = next.split_once(&addr.to_string()).unwrap().1.to_owned();
        answer = trino_http(addr, "GET", &path, token, "").await;
    }
}

/// A test CA and a certificate for `localhost` and 127.0.0.1 signed by it, made by `openssl` in
/// `dir`: the CA's, the certificate's and its key's paths.
pub fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    let (ca, cert, key) = (path("ca.crt"), path("server.crt"), path("server.key"));
    std::fs::write(
        path("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    // A test CA, and a server certificate for localhost signed by it.
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=orderlake test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    ];
    for args in steps {
        let made = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl makes the test certificates");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }

    (ca, cert, key)
}
