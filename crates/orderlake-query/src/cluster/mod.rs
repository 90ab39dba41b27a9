//! Queries on an Apache DataFusion Ballista cluster (issue 16).
//!
//! The server plans every query as it does for the local engine (vetting, views, the key index,
//! pruning); a plan big enough to be worth a cluster is then sent *as a physical plan* to a
//! Ballista scheduler, which cuts it into stages for its executors. What crosses the wire is the
//! archive scan's plain Parquet scan over listed files (`DataSourceExec` over a
//! `FileScanConfig`), which DataFusion's own protobuf codec carries; nothing Delta-specific.
//!
//! - **What stays local.** A plan whose scans read less than `local_below_bytes` (point lookups,
//!   rollup-served answers) runs on the server: a cluster round trip costs more than it saves.
//!   So does a plan holding a node the codec cannot carry (the rollup's `daily_activity` scan,
//!   `system` and `information_schema` tables): the local answer is the same.
//! - **What changes on the way.** A scan the key index narrows when a join's keys are known
//!   (`KeyJoinScan`) is sent as the plain scan it wraps: executors have no index. The answer is
//!   the same; only that run-time narrowing is lost.
//! - **Functions.** Functions travel by name; executors and the scheduler register the engine's
//!   own ([`cluster_session_state`]), so `date_trunc`, the sketches and the Trino functions mean
//!   the same there.

mod job;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::tree_node::{Transformed, TreeNode as _};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::AsExecutionPlan as _;
use datafusion_proto::protobuf::PhysicalPlanNode;

pub use job::ClusterExec;
pub use tls::{ClusterTls, USE_TLS_SETTING};

use crate::reads::{key_join_scan, scanned_bytes};

/// Where the cluster is and which queries go to it (`[distributed]` in the server's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Ballista scheduler's gRPC address, `http://host:port` (`https://` with `tls`).
    pub scheduler: String,
    /// A plan whose scans read fewer bytes than this runs on the server.
    pub local_below_bytes: u64,
    /// TLS to the scheduler and the executors (a cluster addressed as `https://`).
    pub tls: Option<ClusterTls>,
}

/// The host and port of a scheduler address, `http://host:port` (`https` too), or why it is not
/// one.
pub fn scheduler_host_port(address: &str) -> std::result::Result<(String, u16), String> {
    let url =
        url::Url::parse(address).map_err(|e| format!("'{address}' is not an address: {e}"))?;
    match (url.scheme(), url.host_str(), url.port()) {
        ("http" | "https", Some(host), Some(port)) => Ok((host.to_owned(), port)),
        _ => Err(format!("'{address}' must be http://host:port")),
    }
}

/// Whether a cluster addressed by its scheduler at `address` speaks TLS (`https://`).
pub fn speaks_tls(address: &str) -> bool {
    address.starts_with("https://")
}

/// Below this a plan runs locally by default: a lookup reads a few files' pages, and the
/// cluster's scheduling round trips (tens of milliseconds) would be most of its time.
pub const DEFAULT_LOCAL_BELOW_BYTES: u64 = 256 * 1024 * 1024;

/// The engine's side of the cluster: decides where a plan runs and wraps the ones that leave.
#[derive(Debug)]
pub(crate) struct Cluster {
    settings: ClusterSettings,
    /// One scheduler session for this server's queries (settings travel with each query).
    session_id: String,
    /// Plans sent to the cluster so far.
    jobs: AtomicU64,
    /// What became of them.
    outcomes: Arc<JobOutcomes>,
}

/// What became of the jobs sent to the cluster, counted as they end.
#[derive(Debug, Default)]
pub(crate) struct JobOutcomes {
    /// Answered here because the cluster failed them.
    pub(crate) fallbacks: AtomicU64,
    /// Cancelled on the cluster (by the query's cancel, its time limit or its client leaving)
    /// and acknowledged by the scheduler.
    pub(crate) cancelled: AtomicU64,
}

impl Cluster {
    pub(crate) fn new(settings: ClusterSettings) -> Self {
        Self {
            settings,
            session_id: format!("orderlake-{}", crate::engine::new_query_id()),
            jobs: AtomicU64::new(0),
            outcomes: Arc::default(),
        }
    }

    /// How many plans were sent to the cluster, and how many of them the cluster failed (they
    /// were answered here).
    pub(crate) fn jobs(&self) -> (u64, u64) {
        (
            self.jobs.load(Ordering::Relaxed),
            self.outcomes.fallbacks.load(Ordering::Relaxed),
        )
    }

    /// How many jobs the scheduler confirmed cancelling.
    pub(crate) fn cancelled_jobs(&self) -> u64 {
        self.outcomes.cancelled.load(Ordering::Relaxed)
    }

    /// Whether `plan` is big enough for the cluster.
    pub(crate) fn wants(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        scanned_bytes(plan) >= self.settings.local_below_bytes
    }

    /// `state` as a plan for the cluster is made in: without dynamic filters. Ballista
    /// re-plans joins between stages (it swaps a join's sides by the sizes it has seen), which
    /// DataFusion refuses for a join that already built its dynamic filter; Ballista 55 then
    /// leaves the job running for ever ("Cannot swap HashJoinExec inputs after dynamic filters
    /// have been constructed").
    pub(crate) fn planning_state(&self, state: &SessionState) -> SessionState {
        let mut config = state.config().clone();
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.enable_dynamic_filter_pushdown = false;
        optimizer.enable_join_dynamic_filter_pushdown = false;
        optimizer.enable_topk_dynamic_filter_pushdown = false;
        optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        // Executors do not know the engine's own plan nodes.
        let rules = state
            .physical_optimizers()
            .iter()
            .filter(|rule| {
                ![
                    crate::clustered_aggregate::RULE_NAME,
                    crate::lookup_scan::RULE_NAME,
                ]
                .contains(&rule.name())
            })
            .cloned()
            .collect();
        SessionStateBuilder::new_from_existing(state.clone())
            .with_config(config)
            .with_physical_optimizer_rules(rules)
            .build()
    }

    /// A [`ClusterExec`] running `plan` (made by [`Self::planning_state`]) on the cluster, or
    /// `None` when the cluster cannot run it.
    pub(crate) fn place(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        match encode(&plan) {
            Ok(encoded) => {
                tracing::debug!(bytes = encoded.len(), "query planned for the cluster");
                self.jobs.fetch_add(1, Ordering::Relaxed);
                Some(Arc::new(ClusterExec::new(
                    encoded,
                    plan,
                    Arc::clone(&self.outcomes),
                    &self.settings,
                    &self.session_id,
                    config,
                )))
            }
            Err(reason) => {
                tracing::debug!(%reason, "query kept local: the cluster cannot run its plan");
                None
            }
        }
    }
}

/// `plan` with every join-key scan replaced by the plain scan it wraps.
fn without_key_join_scans(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let plain = key_join_scan(node.as_ref())
            .map(|scan| DataSourceExec::from_data_source(scan.inner().clone()));
        Ok(match plain {
            Some(plain) => Transformed::yes(plain as Arc<dyn ExecutionPlan>),
            None => Transformed::no(node),
        })
    })
    .map(|t| t.data)
}

/// The plan as the scheduler receives it (protobuf, Ballista's codec for its own nodes), or why
/// it cannot be sent.
fn encode(plan: &Arc<dyn ExecutionPlan>) -> std::result::Result<Vec<u8>, String> {
    let plan = without_key_join_scans(Arc::clone(plan)).map_err(|e| e.to_string())?;
    let codec = ballista_core::serde::BallistaPhysicalExtensionCodec::default();
    let node =
        PhysicalPlanNode::try_from_physical_plan(plan, &codec).map_err(|e| e.strip_backtrace())?;
    let mut buf = Vec::new();
    node.try_encode(&mut buf).map_err(|e| e.strip_backtrace())?;
    Ok(buf)
}

/// A session holding the engine's functions, for the scheduler (which decodes plans) and the
/// executors (which run them).
pub fn cluster_session_state(config: SessionConfig) -> Result<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    crate::engine::register_functions(&mut state)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::scheduler_host_port;

    #[test]
    fn scheduler_addresses_need_a_scheme_a_host_and_a_port() {
        assert_eq!(
            scheduler_host_port("http://scheduler:50050"),
            Ok(("scheduler".to_owned(), 50050))
        );
        assert_eq!(
            scheduler_host_port("https://10.0.0.5:8443"),
            Ok(("10.0.0.5".to_owned(), 8443))
        );
        for bad in [
            "sched:50050",
            "http://scheduler",
            "grpc://scheduler:50050",
            "",
        ] {
            assert!(scheduler_host_port(bad).is_err(), "{bad}");
        }
    }
}
