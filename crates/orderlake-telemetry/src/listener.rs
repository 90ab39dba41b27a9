//! The operations listener: `/metrics` (Prometheus text format), `/health` (the process answers)
//! and `/ready` (every readiness condition holds), plus whatever routes the binary adds.

use std::collections::BTreeMap;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalogue::{self, Kind};
use crate::error::TelemetryError;

/// The `[metrics]` block of either binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener serving `/metrics`, `/health` and `/ready` (`host:port`;
    /// port 0 picks a free one). Unset: no listener, and nothing is recorded.
    pub listen: Option<SocketAddr>,
}

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls return the same handle), with
/// every catalogued metric described and its histogram buckets set.
pub fn recorder() -> Result<&'static PrometheusHandle, TelemetryError> {
    RECORDER
        .get_or_init(install)
        .as_ref()
        .map_err(|e| TelemetryError::Recorder(e.clone()))
}

fn install() -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new();
    for m in catalogue::all() {
        if let Kind::Histogram(buckets) = m.kind {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(m.name.to_owned()), buckets.bounds())
                .map_err(|e| e.to_string())?;
        }
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    for m in catalogue::all() {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram(_) => metrics::describe_histogram!(m.name, m.help),
        }
    }
    Ok(handle)
}

/// Named conditions that must all hold before `/ready` answers 200. Each starts unmet, with the
/// reason given.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeMap<&'static str, Result<(), String>>>>);

impl Readiness {
    pub fn new(conditions: &[(&'static str, &str)]) -> Self {
        let map = conditions
            .iter()
            .map(|(c, why)| (*c, Err((*why).to_owned())))
            .collect();
        Self(Arc::new(Mutex::new(map)))
    }

    pub fn set(&self, condition: &'static str, state: Result<(), String>) {
        self.0
            .lock()
            .expect("readiness lock")
            .insert(condition, state);
    }

    /// Whether every condition holds, and one line per condition saying so or why not.
    pub fn report(&self) -> (bool, String) {
        let map = self.0.lock().expect("readiness lock");
        let ready = map.values().all(Result::is_ok);
        let lines: String = map
            .iter()
            .map(|(name, state)| match state {
                Ok(()) => format!("{name}: ok\n"),
                Err(why) => format!("{name}: not ready: {why}\n"),
            })
            .collect();
        (ready, lines)
    }
}

/// Called before each scrape, to set gauges computed from the present (ages, cache sizes).
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
struct Probes {
    handle: PrometheusHandle,
    readiness: Readiness,
    before_scrape: Option<BeforeScrape>,
}

/// A running operations listener; dropping it stops it.
#[derive(Debug)]
pub struct OpsListener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl OpsListener {
    /// Binds `listen` and serves the probes and `extra` routes until dropped.
    pub async fn start(
        listen: SocketAddr,
        readiness: Readiness,
        before_scrape: Option<BeforeScrape>,
        extra: Router,
    ) -> Result<Self, TelemetryError> {
        let handle = recorder()?.clone();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| TelemetryError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| TelemetryError::Bind {
                addr: listen,
                source,
            })?;
        let probes = Probes {
            handle,
            readiness,
            before_scrape,
        };
        let upkeep = probes.handle.clone();
        let app = Router::new()
            .route("/metrics", get(metrics_page))
            .route("/health", get(|| async { "ok\n" }))
            .route("/ready", get(ready_page))
            .with_state(probes)
            .merge(extra);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future();
            tokio::pin!(serve);
            loop {
                tokio::select! {
                    r = &mut serve => {
                        if let Err(e) = r {
                            tracing::error!(error = %e, "the operations listener failed");
                        }
                        return;
                    }
                    _ = tick.tick() => upkeep.run_upkeep(),
                }
            }
        });
        tracing::info!(%addr, "serving /metrics, /health and /ready");
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for OpsListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn metrics_page(State(probes): State<Probes>) -> impl IntoResponse {
    if let Some(before) = &probes.before_scrape {
        before();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        probes.handle.render(),
    )
}

async fn ready_page(State(probes): State<Probes>) -> impl IntoResponse {
    let (ready, body) = probes.readiness.report();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

/// A plain HTTP/1.1 GET on loopback, for probes and tests: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let r = http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )?;
    Ok((r.code, r.body))
}

/// An HTTP response as [`http_request`] read it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub code: u16,
    /// The status line and headers.
    pub head: String,
    /// The body, de-chunked.
    pub body: String,
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) and reads the response.
pub fn http_request(addr: SocketAddr, request: &str) -> std::io::Result<HttpResponse> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpResponse {
        code,
        head: head.to_owned(),
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One sample of a Prometheus text page: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// Whether this is a sample of `name` carrying (at least) `labels`.
    pub fn is(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name
            && labels
                .iter()
                .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

/// Reads the samples of a Prometheus text page (comments skipped).
pub fn parse_samples(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_answer_and_readiness_follows_its_conditions() {
        let readiness = Readiness::new(&[("table", "opening"), ("broker", "not checked yet")]);
        let ops = OpsListener::start(
            "127.0.0.1:0".parse().unwrap(),
            readiness.clone(),
            None,
            Router::new(),
        )
        .await
        .unwrap();
        let addr = ops.addr();
        let get = move |path: &'static str| {
            tokio::task::spawn_blocking(move || http_get(addr, path).unwrap())
        };
        assert_eq!(get("/health").await.unwrap(), (200, "ok\n".into()));
        let (code, body) = get("/ready").await.unwrap();
        assert_eq!(code, 503);
        assert!(
            body.contains("broker: not ready: not checked yet"),
            "{body}"
        );
        readiness.set("table", Ok(()));
        readiness.set("broker", Err("no broker answers".into()));
        let (code, body) = get("/ready").await.unwrap();
        assert_eq!(code, 503);
        assert!(body.contains("table: ok"), "{body}");
        assert!(
            body.contains("broker: not ready: no broker answers"),
            "{body}"
        );
        readiness.set("broker", Ok(()));
        assert_eq!(get("/ready").await.unwrap().0, 200);

        metrics::counter!(catalogue::server::AUTH_FAILURES, "call" => "handshake").increment(2);
        metrics::histogram!(catalogue::server::QUERY_QUEUE).record(0.003);
        let (code, page) = get("/metrics").await.unwrap();
        assert_eq!(code, 200);
        assert!(
            page.contains("# HELP orderlake_server_auth_failures_total Refused sign-ins"),
            "{page}"
        );
        let samples = parse_samples(&page);
        let failures = samples
            .iter()
            .find(|s| s.name == catalogue::server::AUTH_FAILURES)
            .expect("the counter is exported");
        assert_eq!(failures.value, 2.0);
        assert_eq!(failures.labels["call"], "handshake");
        // Histograms get the catalogue's buckets, not the exporter's default summary.
        let bucket = samples
            .iter()
            .find(|s| {
                s.is(
                    "orderlake_server_query_queue_seconds_bucket",
                    &[("le", "0.005")],
                )
            })
            .expect("a histogram bucket");
        assert_eq!(bucket.value, 1.0);
    }
}
