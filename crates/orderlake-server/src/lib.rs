//! `orderlake-server`: Trino-like cold SQL over the orderlake archive through Arrow Flight SQL,
//! read-only, authenticated and limited. The query engine lives in `orderlake-query`; this crate
//! is configuration, authentication, sessions and the Flight SQL protocol.

pub mod auth;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod error;
pub mod flight_door;
pub mod fuzzing;
pub mod observe;
pub mod service;
pub mod session;
pub mod sql_info;
pub mod status_page;
pub mod ticket;
pub mod tls;
pub mod trino;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use orderlake_archive::TableLocation;
use orderlake_query::{ColdQueryEngine, EngineSettings};
use orderlake_telemetry::{BeforeScrape, OpsListener, Readiness};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Server, ServerTlsConfig};

pub use config::ServerConfig;
pub use error::ServerError;

use crate::auth::Authenticator;
use crate::service::ColdQueryService;

/// Flight messages can be large (wide batches, bound parameter sets).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Chooses rustls' ring provider for TLS. The dependency tree also carries aws-lc-rs (through the
/// S3 client), and with two providers compiled in rustls will not pick one by itself.
pub fn install_tls_provider() {
    // An error means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server that is listening; dropping it does not stop it, `shutdown` does.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    engine: Arc<ColdQueryEngine>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    refresh: JoinHandle<()>,
    stop: oneshot::Sender<()>,
    ops: Option<OpsListener>,
    trino: Option<trino::TrinoListener>,
}

impl RunningServer {
    /// Opens the archive, binds the listener (port 0 picks a free one) and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let readiness = Readiness::new(&[("snapshot", "opening the archive table")]);
        let opened: Arc<OnceLock<Arc<ColdQueryEngine>>> = Arc::default();
        let auth = Arc::new(Authenticator::new(&config.auth));
        let mut ops = None;
        if let Some(listen) = config.metrics.listen {
            let before_scrape: BeforeScrape = {
                let opened = Arc::clone(&opened);
                Arc::new(move || {
                    if let Some(engine) = opened.get() {
                        engine.publish_gauges();
                    }
                })
            };
            let page = status_page::router(
                Arc::clone(&opened),
                Arc::clone(&auth),
                config.status.clone(),
            );
            ops = Some(
                OpsListener::start(listen, readiness.clone(), Some(before_scrape), page).await?,
            );
        }
        let location = config.archive.location()?;
        let engine = Arc::new(open_waiting(location, config.engine_settings()?, &readiness).await?);
        let _ = opened.set(Arc::clone(&engine));
        readiness.set("snapshot", Ok(()));
        let refresh = engine.spawn_refresh(Duration::from_secs(config.sql.refresh_interval_secs));
        let service = ColdQueryService::new(Arc::clone(&engine), Arc::clone(&auth));
        let trino = match config.trino.listen {
            Some(listen) => {
                let tls = match (&config.server.tls_cert, &config.server.tls_key) {
                    (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
                    _ => None,
                };
                Some(
                    trino::TrinoListener::start(
                        listen,
                        config.trino.clone(),
                        Arc::clone(&engine),
                        Arc::clone(&auth),
                        tls,
                    )
                    .await?,
                )
            }
            None => None,
        };

        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let mut builder = Server::builder();
        if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
            builder =
                builder.tls_config(ServerTlsConfig::new().identity(tls::identity(cert, key)?))?;
        }
        let flight = FlightServiceServer::new(flight_door::FlightDoor(service))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (stop, stopped) = oneshot::channel::<()>();
        // Small answers are a few frames each way; with Nagle's algorithm on, every round trip
        // waited out the client's delayed ACK (40 ms on Linux), which was 88 ms of a 92 ms lookup.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let serve = tokio::spawn(builder.add_service(flight).serve_with_incoming_shutdown(
            incoming,
            async {
                let _ = stopped.await;
            },
        ));
        tracing::info!(
            %addr,
            tls = config.server.tls_cert.is_some(),
            auth = config.auth.required,
            version = ?engine.version(),
            "orderlake-server listening for Flight SQL"
        );
        Ok(Self {
            addr,
            engine,
            serve,
            refresh,
            stop,
            ops,
            trino,
        })
    }

    /// The address of the Trino front door, when `[trino] listen` is set.
    pub fn trino_addr(&self) -> Option<SocketAddr> {
        self.trino.as_ref().map(trino::TrinoListener::addr)
    }

    /// The address of `/metrics`, `/health` and `/ready`, when `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(OpsListener::addr)
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn engine(&self) -> &Arc<ColdQueryEngine> {
        &self.engine
    }

    /// Stops accepting calls, lets running ones finish, and returns.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(());
        self.refresh.abort();
        if let Some(trino) = &self.trino {
            trino.stop();
        }
        match self.serve.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(ServerError::Query(orderlake_query::QueryError::Engine {
                message: format!("server task failed: {e}"),
            })),
        }
    }

    /// Serves until `signal` completes (then shuts down gracefully) or the server fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        tokio::select! {
            () = signal => {
                tracing::info!("stopping: no new calls accepted, running ones finish");
                self.shutdown().await
            }
            ended = &mut self.serve => match ended {
                Ok(result) => Ok(result?),
                Err(e) => Err(ServerError::Query(orderlake_query::QueryError::Engine {
                    message: format!("server task failed: {e}"),
                })),
            },
        }
    }
}

/// Opens the archive, waiting while its object store cannot be reached: a server started before
/// S3 (or during an outage) logs why, shows it on the readiness probe and serves once the store
/// answers. Any other failure (no table there, an incompatible one, refused credentials) ends
/// the start, as waiting would not mend it.
async fn open_waiting(
    location: TableLocation,
    settings: EngineSettings,
    readiness: &Readiness,
) -> Result<ColdQueryEngine, ServerError> {
    let what = location.to_string();
    let waiting = |reason: &str| {
        readiness.set(
            "snapshot",
            Err(format!("waiting for the archive's object store: {reason}")),
        );
        true
    };
    let open = || ColdQueryEngine::open(location.clone(), settings.clone());
    Ok(orderlake_archive::until_reachable(&what, waiting, open).await?)
}
