//! The Ballista scheduler and executor that run the server's big queries (issue 16), built with
//! the engine's functions so that plans decode the same everywhere. `orderlake-server scheduler`
//! and `orderlake-server executor` run them as processes; tests start them in process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::extension::SessionConfigExt as _;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::ArrowFlightServerProvider;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_scheduler::cluster::{BallistaCluster, ClusterStateEvent};
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::scheduler_server::SessionBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use futures::StreamExt as _;
use orderlake_archive::{ArchiveTable, TableLocation};
use orderlake_query::cluster::{ClusterTls, cluster_session_state};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::error::ServerError;

/// How quickly a lost executor is noticed: executors report every `HEARTBEAT`, and the
/// scheduler gives up on one silent for `EXECUTOR_TIMEOUT` (Ballista's defaults, 60 s and
/// 180 s, would hold a query on a dead executor for minutes).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
pub const EXECUTOR_TIMEOUT: Duration = Duration::from_secs(10);

/// Executors ask the scheduler for tasks. With Ballista's default (the scheduler pushes tasks
/// into the slots it books per executor), after a lost executor's job was failed the surviving
/// executor's slots stayed booked in one run of six under load, and the next job waited for
/// ever; pulled tasks need no booking.
const SCHEDULING: TaskSchedulingPolicy = TaskSchedulingPolicy::PullStaged;

fn cluster_error(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Cluster(format!("{what}: {e}"))
}

/// The object stores of the archive at `table` (the one store its files are read from), read
/// from the table's log once.
async fn archive_stores(table: TableLocation) -> Result<Arc<dyn ObjectStoreRegistry>, ServerError> {
    let files = ArchiveTable::open(table).await?.files()?;
    let stores = DefaultObjectStoreRegistry::new();
    stores.register_store(files.store_url.as_ref(), Arc::clone(&files.store));
    Ok(Arc::new(stores))
}

/// A runtime reading `stores`, spilling to `work_dir`.
fn runtime(
    stores: &Arc<dyn ObjectStoreRegistry>,
    work_dir: Option<&PathBuf>,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(Arc::clone(stores));
    if let Some(dir) = work_dir {
        builder = builder.with_temp_file_path(dir.clone());
    }
    builder.build_arc()
}

/// TLS a scheduler or an executor serves (`identity`) and checks the others with (`trust`).
/// Its `Debug` leaves the identity out: tonic's would print the private key.
#[derive(Clone)]
pub struct ServingTls {
    pub identity: Identity,
    pub trust: ClusterTls,
}

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingTls")
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// A Ballista scheduler on `listener` that decodes plans with the engine's functions and the
/// archive's store at `table`, over TLS when `tls` is given. Runs until the process ends.
pub async fn run_scheduler(
    listener: tokio::net::TcpListener,
    table: TableLocation,
    tls: Option<ServingTls>,
) -> Result<(), ServerError> {
    let stores = archive_stores(table).await?;
    let session: SessionBuilder = Arc::new(move |config: SessionConfig| {
        let state = cluster_session_state(config)?;
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime(&stores, None)?)
            .build())
    });
    let address = listener
        .local_addr()
        .map_err(|e| cluster_error("scheduler listener", e))?;
    let config = SchedulerConfig {
        bind_host: address.ip().to_string(),
        bind_port: address.port(),
        external_host: address.ip().to_string(),
        executor_timeout_seconds: EXECUTOR_TIMEOUT.as_secs(),
        expire_dead_executor_interval_seconds: 2,
        no_executors_grace_period_seconds: EXECUTOR_TIMEOUT.as_secs(),
        override_session_builder: Some(session),
        scheduling_policy: SCHEDULING,
        use_tls: tls.is_some(),
        override_create_grpc_client_endpoint: tls.as_ref().map(|t| t.trust.endpoint_override()),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| cluster_error("scheduler state", e))?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(|e| cluster_error("scheduler", e))?;
    let mut events = scheduler
        .state
        .executor_manager
        .cluster_state_events()
        .await
        .map_err(|e| cluster_error("scheduler events", e))?;
    let watcher = scheduler.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let ClusterStateEvent::RemovedExecutor { executor_id } = event {
                fail_running_jobs(&watcher, &executor_id).await;
            }
        }
    });
    tracing::info!(%address, tls = tls.is_some(), "Ballista scheduler listening");
    match tls {
        None => start_grpc_service_with_listener(listener, scheduler)
            .await
            .map_err(|e| cluster_error("scheduler", e)),
        // Ballista serves its scheduler in plain gRPC only; its gRPC service is served here with
        // TLS instead (without Ballista's REST routes and Flight proxy, which the server does not
        // use: it fetches results from the executors).
        Some(tls) => {
            let max = scheduler.state.config.grpc_server_max_decoding_message_size as usize;
            let grpc = SchedulerGrpcServer::new(scheduler)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
            Server::builder()
                .tls_config(ServerTlsConfig::new().identity(tls.identity))?
                .add_service(grpc)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .map_err(|e| cluster_error("scheduler", e))
        }
    }
}

/// Fails every running job when an executor is lost. Ballista 55 would run the lost tasks again,
/// and measured here that gives wrong answers: a count of 26,403,632 rows came back as 58,560,488
/// after an executor was killed mid-job (the stages it had finished were reset and run again
/// while the stage reading them was running). A failed job is answered by the server itself
/// (`ClusterExec`), so the query still gets the right answer. The job is failed within
/// microseconds of the removal, long before a re-run task could finish.
async fn fail_running_jobs(
    scheduler: &SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    executor_id: &str,
) {
    let jobs: Vec<_> = scheduler
        .state
        .task_manager
        .get_running_job_cache()
        .keys()
        .cloned()
        .collect();
    for job_id in jobs {
        tracing::warn!(executor_id, %job_id, "executor lost: its job fails");
        if let Err(e) = scheduler.cancel_job(job_id.clone()).await {
            tracing::error!(%job_id, error = %e, "job not failed after a lost executor");
        }
    }
}

/// Where an executor listens and what it reads.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The scheduler's gRPC address, `http://host:port`.
    pub scheduler: String,
    /// The address results are fetched from (Arrow Flight).
    pub listen: SocketAddr,
    /// The host name others reach this executor at.
    pub external_host: String,
    /// The executor's own gRPC port (the scheduler's calls); on `listen`'s host.
    pub grpc_port: u16,
    /// Tasks run at once; 0 for one per core.
    pub tasks: usize,
    /// Shuffle files; a temporary directory when unset.
    pub work_dir: Option<PathBuf>,
    /// TLS for its Flight service and its calls (the scheduler is then `https://`).
    pub tls: Option<ServingTls>,
    /// The archive the queries read (its store's address and credentials).
    pub table: TableLocation,
}

/// Runs an executor until SIGINT/SIGTERM: registers with the scheduler, runs its tasks, serves
/// their results. It reads the archive's store with the server's `[archive]` settings.
pub async fn run_executor(settings: ExecutorSettings) -> Result<(), ServerError> {
    let stores = archive_stores(settings.table.clone()).await?;
    let work_dir = settings.work_dir.clone();
    let runtime: RuntimeProducer =
        Arc::new(move |_config: &SessionConfig| runtime(&stores, work_dir.as_ref()));
    let functions = cluster_session_state(SessionConfig::new())
        .map_err(|e| cluster_error("executor functions", e))?;
    let (scheduler_host, scheduler_port) =
        orderlake_query::cluster::scheduler_host_port(&settings.scheduler)
            .map_err(|reason| cluster_error("--scheduler", reason))?;
    let config = ExecutorProcessConfig {
        bind_host: settings.listen.ip().to_string(),
        external_host: Some(settings.external_host.clone()),
        port: settings.listen.port(),
        grpc_port: settings.grpc_port,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: settings.tasks,
        task_scheduling_policy: SCHEDULING,
        work_dir: settings.work_dir.as_ref().map(|d| d.display().to_string()),
        executor_heartbeat_interval_seconds: HEARTBEAT.as_secs(),
        override_runtime_producer: Some(runtime),
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&functions))),
        print_thread_info: false,
        ..ExecutorProcessConfig::default()
    };
    let config = match &settings.tls {
        Some(tls) => with_tls(config, tls),
        None => config,
    };
    tracing::info!(
        listen = %settings.listen,
        scheduler = %settings.scheduler,
        table = %settings.table.url(),
        "Ballista executor starting"
    );
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| cluster_error("executor", e))
}

/// An executor's settings with TLS: its Flight service (results and shuffles) served with
/// `tls`'s identity, its calls to the scheduler and to other executors made over TLS.
fn with_tls(config: ExecutorProcessConfig, tls: &ServingTls) -> ExecutorProcessConfig {
    let (max_decoding, max_encoding) = (
        config.grpc_max_decoding_message_size as usize,
        config.grpc_max_encoding_message_size as usize,
    );
    let identity = tls.identity.clone();
    let flight: Arc<ArrowFlightServerProvider> =
        Arc::new(move |work_dir, address, mut shutdown, _grpc| {
            let identity = identity.clone();
            tokio::spawn(async move {
                let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir))
                    .max_decoding_message_size(max_decoding)
                    .max_encoding_message_size(max_encoding);
                Server::builder()
                    .tls_config(ServerTlsConfig::new().identity(identity))?
                    .add_service(flight)
                    .serve_with_shutdown(address, shutdown.recv())
                    .await
                    .map_err(BallistaError::TonicError)
            })
        });
    let trust = tls.trust.clone();
    let sessions: ConfigProducer = Arc::new(move || {
        SessionConfig::new_with_ballista()
            .with_ballista_use_tls(true)
            .with_ballista_override_create_grpc_client_endpoint(trust.endpoint_override())
    });
    ExecutorProcessConfig {
        override_arrow_flight_service: Some(flight),
        override_create_grpc_client_endpoint: Some(tls.trust.endpoint_override()),
        override_config_producer: Some(sessions),
        ..config
    }
}

/// Waits until the scheduler at `address` answers (for scripts and tests that start one), over
/// TLS checked against `tls` when given.
pub async fn wait_for_scheduler(
    address: &str,
    tls: Option<&ClusterTls>,
    timeout: Duration,
) -> Result<(), ServerError> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let endpoint = match tls {
            Some(tls) => tls.endpoint(address),
            None => tonic::transport::Endpoint::from_shared(address.to_owned()),
        }?;
        match endpoint.connect().await.map(SchedulerGrpcClient::new) {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= until => {
                return Err(cluster_error(&format!("scheduler at {address}"), e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
