//! One query run as a Ballista job: submitted as a physical plan, watched until it ends, its
//! result partitions read from the executors that hold them. A query dropped before its job ends
//! (cancelled, timed out, client gone) cancels the job on the cluster.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ballista_core::client::BallistaClient;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    CancelJobParams, ExecuteQueryParams, GetJobStatusParams, KeyValuePair, PartitionLocation,
    execute_query_params::Query, execute_query_result, job_status,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties as _, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::SessionConfig;
use futures::{StreamExt as _, TryStreamExt as _};
use tonic::transport::{Channel, Endpoint};

use super::{ClusterSettings, ClusterTls, JobOutcomes, USE_TLS_SETTING};

/// Plans and result batches up to this size cross the wire in one message.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How often a running job's status is asked for: first quickly (short jobs), then less often.
const FIRST_POLL: Duration = Duration::from_millis(5);
const LAST_POLL: Duration = Duration::from_millis(50);

/// A leaf that runs a plan on the cluster and yields its result. When the job fails before its
/// result is read (the cluster unreachable, an executor lost, a plan Ballista cannot run), the
/// same plan runs here instead: the query is answered, a little later.
pub struct ClusterExec {
    plan: Arc<[u8]>,
    /// The plan as it runs here, when the cluster cannot.
    local: Arc<dyn ExecutionPlan>,
    /// Counts `local` answering, and cancellations.
    outcomes: Arc<JobOutcomes>,
    scheduler: String,
    tls: Option<ClusterTls>,
    session_id: String,
    settings: Vec<KeyValuePair>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for ClusterExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterExec")
            .field("scheduler", &self.scheduler)
            .field("plan_bytes", &self.plan.len())
            .finish_non_exhaustive()
    }
}

impl ClusterExec {
    pub(crate) fn new(
        plan: Vec<u8>,
        local: Arc<dyn ExecutionPlan>,
        outcomes: Arc<JobOutcomes>,
        cluster: &ClusterSettings,
        session_id: &str,
        config: &SessionConfig,
    ) -> Self {
        let mut settings: Vec<KeyValuePair> = config
            .options()
            .entries()
            .into_iter()
            .map(|entry| KeyValuePair {
                key: entry.key,
                value: entry.value,
            })
            .collect();
        if cluster.tls.is_some() {
            // The executors' shuffle reads from each other dial `https://` too.
            settings.push(KeyValuePair {
                key: USE_TLS_SETTING.to_owned(),
                value: Some("true".to_owned()),
            });
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(local.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            plan: plan.into(),
            local,
            outcomes,
            scheduler: cluster.scheduler.clone(),
            tls: cluster.tls.clone(),
            session_id: session_id.to_owned(),
            settings,
            properties,
        }
    }
}

impl DisplayAs for ClusterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ClusterExec: scheduler={}, plan_bytes={}",
            self.scheduler,
            self.plan.len()
        )
    }
}

impl ExecutionPlan for ClusterExec {
    crate::leaf::leaf_plan_methods!("ClusterExec");

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ClusterExec has one partition, not {partition}"
            )));
        }
        let job = Job {
            scheduler: self.scheduler.clone(),
            tls: self.tls.clone(),
            outcomes: Arc::clone(&self.outcomes),
            params: ExecuteQueryParams {
                session_id: self.session_id.clone(),
                settings: self.settings.clone(),
                operation_id: crate::engine::new_query_id(),
                query: Some(Query::PhysicalPlan(self.plan.to_vec())),
            },
        };
        let local = Arc::clone(&self.local);
        let outcomes = Arc::clone(&self.outcomes);
        let stream = futures::stream::once(async move {
            match job.run().await {
                Ok(remote) => {
                    crate::meters::cluster_job(true);
                    Ok::<_, DataFusionError>(remote.boxed())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the cluster did not answer; the query runs here");
                    outcomes.fallbacks.fetch_add(1, Ordering::Relaxed);
                    crate::meters::cluster_job(false);
                    let local: Arc<dyn ExecutionPlan> =
                        if local.output_partitioning().partition_count() > 1 {
                            Arc::new(CoalescePartitionsExec::new(local))
                        } else {
                            local
                        };
                    Ok(local.execute(0, context)?.boxed())
                }
            }
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

struct Job {
    scheduler: String,
    tls: Option<ClusterTls>,
    outcomes: Arc<JobOutcomes>,
    params: ExecuteQueryParams,
}

type Scheduler = SchedulerGrpcClient<Channel>;

fn cluster_error(what: &str, e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("cluster: {what}: {e}"))
}

impl Job {
    /// Submits the job, waits for it, and returns its result partitions as one stream.
    async fn run(self) -> Result<impl futures::Stream<Item = Result<arrow::array::RecordBatch>>> {
        let endpoint = match &self.tls {
            Some(tls) => tls.endpoint(&self.scheduler),
            None => Endpoint::from_shared(self.scheduler.clone()),
        };
        let channel = endpoint
            .map_err(|e| cluster_error("bad scheduler address", e))?
            .connect()
            .await
            .map_err(|e| {
                cluster_error(
                    &format!("cannot reach the scheduler at {}", self.scheduler),
                    e,
                )
            })?;
        let mut scheduler = SchedulerGrpcClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut request = tonic::Request::new(self.params);
        ballista_core::version::insert_version_header(request.metadata_mut());
        let submitted = scheduler
            .execute_query(request)
            .await
            .map_err(|e| cluster_error("the scheduler refused the query", e.message()))?
            .into_inner();
        let job_id = match submitted.result {
            Some(execute_query_result::Result::Success(s)) => s.job_id,
            Some(execute_query_result::Result::Failure(f)) => {
                return Err(cluster_error(
                    "the scheduler refused the query",
                    format!("{:?}", f.failure),
                ));
            }
            None => return Err(cluster_error("the scheduler answered", "no result")),
        };
        let mut running = RunningJob {
            scheduler: scheduler.clone(),
            job_id: job_id.clone(),
            outcomes: Arc::clone(&self.outcomes),
            done: false,
        };
        let mut wait = FIRST_POLL;
        let locations = loop {
            let status = scheduler
                .get_job_status(GetJobStatusParams {
                    job_id: job_id.clone(),
                })
                .await
                .map_err(|e| cluster_error(&format!("job {job_id}"), e.message()))?
                .into_inner()
                .status
                .and_then(|s| s.status);
            match status {
                Some(job_status::Status::Successful(done)) => break done.partition_location,
                Some(job_status::Status::Failed(failed)) => {
                    running.done = true;
                    return Err(cluster_error(&format!("job {job_id} failed"), failed.error));
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LAST_POLL);
                }
            }
        };
        running.done = true;
        tracing::debug!(%job_id, partitions = locations.len(), "cluster job finished");
        let tls = self.tls;
        Ok(futures::stream::iter(locations)
            .then(move |location| fetch(location, tls.clone()))
            .try_flatten())
    }
}

/// Reads one result partition from the executor holding it.
async fn fetch(
    location: PartitionLocation,
    tls: Option<ClusterTls>,
) -> Result<SendableRecordBatchStream> {
    let layout = location.layout();
    let executor = location
        .executor_meta
        .ok_or_else(|| cluster_error("a result partition", "no executor named"))?;
    let partition = location
        .partition_id
        .ok_or_else(|| cluster_error("a result partition", "no partition id"))?;
    let port = u16::try_from(executor.port)
        .map_err(|e| cluster_error(&format!("executor {}", executor.id), e))?;
    let mut client = BallistaClient::try_new(
        &executor.host,
        port,
        MAX_MESSAGE_BYTES,
        tls.is_some(),
        tls.map(|tls| tls.ballista_endpoint()),
        3,
        100,
        0,
        0,
    )
    .await
    .map_err(|e| cluster_error(&format!("cannot reach executor {}", executor.id), e))?;
    client
        .fetch_partition(
            &executor.id,
            &partition.into(),
            location.file_id,
            layout,
            true,
        )
        .await
        .map_err(|e| cluster_error(&format!("executor {}", executor.id), e))
}

/// A submitted job not yet finished; dropped so, it cancels the job on the cluster.
struct RunningJob {
    scheduler: Scheduler,
    job_id: String,
    outcomes: Arc<JobOutcomes>,
    done: bool,
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut scheduler = self.scheduler.clone();
        let job_id = std::mem::take(&mut self.job_id);
        let outcomes = Arc::clone(&self.outcomes);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                match scheduler
                    .cancel_job(CancelJobParams {
                        job_id: job_id.clone(),
                    })
                    .await
                {
                    Ok(answer) if answer.get_ref().cancelled => {
                        outcomes.cancelled.fetch_add(1, Ordering::Relaxed);
                        crate::meters::cluster_job_cancelled();
                        tracing::info!(%job_id, "cluster job cancelled");
                    }
                    Ok(_) => tracing::info!(%job_id, "cluster job ended before its cancel"),
                    Err(e) => {
                        tracing::warn!(%job_id, error = %e.message(), "cluster job not cancelled");
                    }
                }
            });
        }
    }
}
