//! The cold query engine: DataFusion over one consistent version of the archive at a time.
//!
//! A *snapshot* is the Delta table at one version with the business views planned over it; a
//! background refresh builds a new one when the archiver commits, and swaps it in. Each query
//! takes the snapshot current when it is planned and keeps it to its last batch, so it never sees
//! two versions. Each query also gets its own memory pool (operators spill beyond it), a place in
//! the admission queue, a deadline covering queueing, planning and streaming, and a result-size
//! limit; dropping its stream stops it and frees everything it held.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::{DataFusionError, ScalarValue, SchemaError};
use datafusion::datasource::{TableProvider, ViewTable};
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::{
    CacheManager, CacheManagerConfig, FileMetadataCache,
};
use datafusion::execution::memory_pool::TrackConsumersPool;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry as _};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig};
use futures::FutureExt as _;
use orderlake_archive::key_index::SegmentCache;
use orderlake_archive::rollup::{DailyRollup, RollupTag};
use orderlake_archive::{ArchiveTable, TABLE_NAME, TableLocation};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::access::{AccessPolicy, QueryPrivilege};
use crate::access_catalog::{HiddenColumn, UserCatalogs};
use crate::activity::{Activity, CancelOutcome, FinishedQuery, RunningGuard, RunningQueryInfo};
use crate::bounded_topk::BoundedTopKAggregates;
use crate::cluster::{Cluster, ClusterSettings};
use crate::clustered_aggregate::ClusteredPartialAggregates;
use crate::error::{QueryError, Result};
use crate::key_rewrite::KeysThroughAggregates;
use crate::limits::{Admission, QueryLimits};
use crate::lookup_scan::ArchiveLookups;
use crate::memory::QueryMemoryPool;
use crate::meters;
use crate::reads::PlanReads;
use crate::rollup::{DAILY_ACTIVITY, DailyActivityProvider};
use crate::rollup_rewrite::KpisFromRollup;
use crate::scan::ArchiveScanProvider;
use crate::sketches;
use crate::statement;
use crate::storage_watch::{StorageWatch, WatchedStore};
use crate::stream::{QueryStream, out_of_time, outcome, plain_schema};
use crate::trino_functions;
use crate::utc_date_trunc::UtcDateTrunc;
use crate::views::{ViewDefinition, load_views};
use crate::{system, system_metadata};
use datafusion::execution::FunctionRegistry as _;

/// How the engine names things and how hard it works.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Catalog holding the archive (Trino's catalog): `archive`.
    pub catalog: String,
    /// Schema holding the archive table and the views: `oms`.
    pub schema: String,
    /// Directory of business views (`<name>.sql`); none means no views.
    pub views_dir: Option<std::path::PathBuf>,
    pub limits: QueryLimits,
    /// Where operators spill; the OS temporary directory when unset.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Partitions each query plan fans out to (0: the number of cores).
    pub target_partitions: usize,
    /// Memory for Parquet footers and page indexes kept between queries.
    pub metadata_cache_bytes: usize,
    /// Narrow lookups by `order_id` / `customer_id` with the archive's key index.
    pub use_key_index: bool,
    /// Read key lookups' scans with the archive's own lookup reader (`ArchiveLookupExec`: the
    /// readers' set-up kept across queries, several files at once) instead of DataFusion's
    /// Parquet scan.
    pub lookup_reader: bool,
    /// Answer KPI aggregates over `order_events` from the daily rollup (`daily_activity`).
    pub use_rollup: bool,
    /// DataFusion settings applied to every query after orderlake's own, named without the
    /// `datafusion.` prefix (`execution.parquet.pushdown_filters`); see
    /// [`check_datafusion_option`].
    pub datafusion_options: BTreeMap<String, String>,
    /// Run big queries on a Ballista cluster (none: every query runs here).
    pub cluster: Option<ClusterSettings>,
    /// Who may read which tables and columns, and see or stop others' queries
    /// ([`crate::access`]); open by default.
    pub access: Arc<AccessPolicy>,
}

/// Whether DataFusion knows the setting `key` (without the `datafusion.` prefix) and accepts
/// `value` for it; the reason if not.
pub fn check_datafusion_option(key: &str, value: &str) -> std::result::Result<(), String> {
    datafusion::config::ConfigOptions::new()
        .set(&format!("datafusion.{key}"), value)
        .map_err(|e| e.strip_backtrace())
}

/// Enough for the footers and page indexes of some thousands of files (an archive of years, one
/// compacted file per date); DataFusion's own default (50 MiB) evicted them between queries.
pub const DEFAULT_METADATA_CACHE_BYTES: usize = 512 * 1024 * 1024;

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            catalog: "archive".into(),
            schema: "oms".into(),
            views_dir: None,
            limits: QueryLimits::default(),
            spill_dir: None,
            target_partitions: 0,
            metadata_cache_bytes: DEFAULT_METADATA_CACHE_BYTES,
            use_key_index: true,
            lookup_reader: true,
            use_rollup: true,
            datafusion_options: BTreeMap::new(),
            cluster: None,
            access: Arc::default(),
        }
    }
}

/// The catalog and schema that short names resolve against for one client session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryScope {
    pub catalog: String,
    pub schema: String,
    /// The session's time zone (an IANA name or an offset): `current_timestamp`,
    /// `current_date` and zoned literals use it. UTC when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The session's own time limit (Trino's `query_max_run_time`); it can only shorten the
    /// server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_time: Option<Duration>,
    /// The session's own memory limit (Trino's `query_max_memory`); it can only lower the
    /// server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<usize>,
}

impl QueryScope {
    /// The server's limits, lowered by this session's own.
    pub fn limits(&self, server: &QueryLimits) -> QueryLimits {
        let mut limits = server.clone();
        if let Some(t) = self.max_run_time {
            limits.timeout = limits.timeout.min(t);
        }
        if let Some(m) = self.max_memory_bytes {
            limits.memory_bytes = limits.memory_bytes.min(m);
        }
        limits
    }

    /// Whether `zone` names a time zone a session may use: an IANA name (`Europe/Berlin`) or
    /// an offset (`+02:00`).
    pub fn is_time_zone(zone: &str) -> bool {
        zone.parse::<arrow::array::timezone::Tz>().is_ok()
    }
}

/// A query to run: its text, bound parameter values and where short names resolve.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// Identifies the query for cancellation and logs; chosen by the caller.
    pub id: String,
    pub sql: String,
    pub params: Vec<ScalarValue>,
    pub scope: QueryScope,
    /// Who asked (for logs, the running-query list and the access rules).
    pub user: String,
    /// What the client called itself (`X-Trino-Source`, a Flight client's user agent), shown in
    /// the running-query list.
    pub source: Option<String>,
}

/// A planned query: what it returns and which parameters it takes.
#[derive(Debug)]
pub struct PlannedQuery {
    plan: LogicalPlan,
    state: SessionState,
    /// Parameter names (`$1`, `$2`, …) in order, with the type the planner inferred.
    pub parameters: Vec<(String, Option<DataType>)>,
    /// The schema clients receive (view types replaced by their plain forms).
    pub schema: SchemaRef,
}

/// What a client can see of a table or view.
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    /// `TABLE` or `VIEW`.
    pub kind: &'static str,
    pub arrow_schema: SchemaRef,
    pub description: Option<String>,
}

struct Snapshot {
    version: Option<u64>,
    /// When `version` was committed (Unix milliseconds).
    committed_at_ms: Option<i64>,
    /// The daily rollup object `daily_activity` was built with.
    rollup_tag: Option<RollupTag>,
    base: SessionState,
    descriptions: HashMap<String, String>,
}

/// Physical plans waiting for their execution: at most this many, for at most this long (a
/// client that asked for a FlightInfo and never fetched it leaves nothing behind for long).
const READY_PLANS: usize = 1024;
const READY_PLAN_TTL: Duration = Duration::from_secs(120);

/// A query planned to its physical plan, ready to run.
struct ReadyPlan {
    physical: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    schema: SchemaRef,
    made: Instant,
    /// How long planning it took.
    planning: Duration,
}

/// DataFusion over the archive, read-only and limited.
/// What [`ColdQueryEngine::table_report`] reads of the table.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub status: orderlake_archive::TableStatus,
    pub commits: Vec<orderlake_archive::CommitSummary>,
    pub growth: Vec<orderlake_archive::DaySize>,
}

pub struct ColdQueryEngine {
    settings: EngineSettings,
    table: tokio::sync::Mutex<ArchiveTable>,
    snapshot: RwLock<Arc<Snapshot>>,
    views: Vec<ViewDefinition>,
    object_stores: Arc<DefaultObjectStoreRegistry>,
    /// Follows every read queries make of the archive's storage.
    storage: Arc<StorageWatch>,
    /// Parquet footers and page indexes, shared by every query's runtime (each query has its
    /// own memory pool); data files never change, so entries stay valid across versions.
    metadata_cache: Arc<FileMetadataCache>,
    /// Key index segments already read (they never change), reused by every refresh.
    index_segments: tokio::sync::Mutex<SegmentCache>,
    admission: Admission,
    activity: Arc<Activity>,
    ready: Mutex<VecDeque<(String, ReadyPlan)>>,
    cluster: Option<Cluster>,
}

impl std::fmt::Debug for ColdQueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdQueryEngine")
            .field("settings", &self.settings)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl ColdQueryEngine {
    /// Opens the archive table at `location`, reads the views and plans them over the table's
    /// current version.
    pub async fn open(location: TableLocation, settings: EngineSettings) -> Result<Self> {
        for (key, value) in &settings.datafusion_options {
            check_datafusion_option(key, value)
                .map_err(|reason| DataFusionError::Configuration(format!("{key}: {reason}")))?;
        }
        let table = ArchiveTable::open(location).await?;
        let views = match &settings.views_dir {
            Some(dir) => load_views(dir)?,
            None => Vec::new(),
        };
        let object_stores = Arc::new(DefaultObjectStoreRegistry::new());
        let metadata_cache = CacheManager::try_new(
            &CacheManagerConfig::default().with_metadata_cache_limit(settings.metadata_cache_bytes),
        )?
        .get_file_metadata_cache();
        let engine = Self {
            cluster: settings.cluster.clone().map(Cluster::new),
            admission: Admission::new(&settings.limits),
            snapshot: RwLock::new(Arc::new(Snapshot {
                version: None,
                committed_at_ms: None,
                rollup_tag: None,
                base: SessionStateBuilder::new().build(),
                descriptions: HashMap::new(),
            })),
            table: tokio::sync::Mutex::new(table),
            views,
            object_stores,
            storage: Arc::default(),
            metadata_cache,
            index_segments: tokio::sync::Mutex::new(SegmentCache::new()),
            settings,
            activity: Arc::default(),
            ready: Mutex::new(VecDeque::new()),
        };
        let first = {
            let table = engine.table.lock().await;
            engine.build_snapshot(&table).await?
        };
        *engine.snapshot.write().expect("snapshot lock") = Arc::new(first);
        tracing::info!(
            version = ?engine.version(),
            views = engine.views.len(),
            "archive opened for queries"
        );
        Ok(engine)
    }

    /// How many query plans were sent to the cluster, and how many of those the cluster failed
    /// and the server answered itself; zeros without a cluster.
    pub fn cluster_jobs(&self) -> (u64, u64) {
        self.cluster.as_ref().map_or((0, 0), Cluster::jobs)
    }

    /// How many jobs the cluster stopped, at the scheduler's word, because their query was
    /// cancelled, timed out or lost its client.
    pub fn cluster_jobs_cancelled(&self) -> u64 {
        self.cluster.as_ref().map_or(0, Cluster::cancelled_jobs)
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The table version queries planned now will read.
    pub fn version(&self) -> Option<u64> {
        self.current().version
    }

    /// What the archive holds now (`orderlake-archiver status`), its last `commits` commits
    /// (newest first) and its size at the end of each of the last `growth_days` days, read at
    /// the table's latest version.
    pub async fn table_report(
        &self,
        commits: u64,
        growth: &mut orderlake_archive::Growth,
        growth_days: usize,
    ) -> Result<TableReport> {
        // A copy of the current version: the status scan and the growth reads do not hold up
        // the refresh.
        let table = self.table.lock().await.clone();
        Ok(TableReport {
            status: table.status().await?,
            commits: table.recent_commits(commits).await?,
            growth: growth.sizes(&table, growth_days).await?,
        })
    }

    /// Stops the query with this id, or makes sure it never starts.
    pub fn cancel(&self, id: &str) -> CancelOutcome {
        self.activity.cancel(id)
    }

    /// Stops the query with this id if `user` runs it or may stop anyone's (the access rules'
    /// `kill`).
    pub fn cancel_for(&self, id: &str, user: &str) -> CancelOutcome {
        if self.settings.access.may(user, QueryPrivilege::Kill) {
            self.activity.cancel(id)
        } else {
            self.activity.cancel_as(id, user)
        }
    }

    /// The queries running now, longest-running first.
    pub fn running(&self) -> Vec<RunningQueryInfo> {
        self.activity.running()
    }

    /// The queries that ended lately, newest first.
    pub fn recent(&self) -> Vec<FinishedQuery> {
        self.activity.recent()
    }

    /// Sets the gauges that describe the engine now: the version served and its age, and the
    /// footer cache (call before a metrics scrape).
    pub fn publish_gauges(&self) {
        let snapshot = self.current();
        meters::serving(snapshot.version, snapshot.committed_at_ms);
        let entries = self.metadata_cache.list_entries();
        let hits: usize = entries.values().map(|e| e.hits).sum();
        let bytes: usize = entries.values().map(|e| e.size_bytes).sum();
        meters::metadata_cache(hits, entries.len(), bytes);
    }

    pub fn views(&self) -> &[ViewDefinition] {
        &self.views
    }

    fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().expect("snapshot lock"))
    }

    /// Looks for new commits; when there are, plans the views over the new version and makes it
    /// the one new queries read. Returns the new version, if it changed.
    pub async fn refresh(&self) -> Result<Option<u64>> {
        let mut table = self.table.lock().await;
        table.refresh().await?;
        if table.version() == self.version() {
            // Maintenance may have replaced the rollup without a new table version.
            let tag = DailyRollup::current_tag(&table.index_store()).await;
            if tag.is_err() || tag.is_ok_and(|t| t == self.current().rollup_tag) {
                return Ok(None);
            }
        }
        let next = self.build_snapshot(&table).await?;
        let version = next.version;
        *self.snapshot.write().expect("snapshot lock") = Arc::new(next);
        tracing::debug!(?version, "archive refreshed");
        Ok(version)
    }

    /// Refreshes every `every` until the engine is dropped; failures are logged and retried.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(engine) = weak.upgrade() else { return };
                let refreshed = engine.refresh().await;
                meters::refreshed(&refreshed);
                match refreshed {
                    Ok(Some(v)) => tracing::info!(version = v, "new archive version visible"),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "could not refresh the archive; queries keep reading version {:?}",
                        engine.version()
                    ),
                }
            }
        })
    }

    fn session_config(&self, scope: &QueryScope) -> SessionConfig {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(&scope.catalog, &scope.schema)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        if self.settings.target_partitions > 0 {
            config = config.with_target_partitions(self.settings.target_partitions);
        }
        let options = config.options_mut();
        // Clients (JDBC above all) read plain strings and binaries more reliably than views.
        options.execution.parquet.schema_force_view_types = false;
        options.sql_parser.map_string_types_to_utf8view = false;
        // Measured on a 10-year archive (docs/benchmarks.md, "Parquet reading settings"): an
        // archive file is one row group of some thousands of rows, so page indexes skip nothing
        // and bloom filters rarely, while reading them is a request per file; filtering while
        // decoding slows full scans. The archive scan turns filtering while decoding (and bloom
        // filters over files the key index does not cover) on for key lookups.
        options.execution.parquet.pushdown_filters = false;
        options.execution.parquet.reorder_filters = true;
        options.execution.parquet.enable_page_index = false;
        options.execution.parquet.bloom_filter_on_read = false;
        // Trino's `current_timestamp` is zoned, UTC unless the session names a zone.
        options.execution.time_zone = Some(scope.time_zone.clone().unwrap_or_else(|| "UTC".into()));
        for (key, value) in &self.settings.datafusion_options {
            // Checked when the engine opened.
            if let Err(e) = options.set(&format!("datafusion.{key}"), value) {
                tracing::warn!(key, value, error = %e, "DataFusion setting not applied");
            }
        }
        config
    }

    fn runtime(
        &self,
        memory_bytes: Option<usize>,
    ) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
        let mut builder = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::clone(&self.object_stores)
                as Arc<dyn datafusion::execution::object_store::ObjectStoreRegistry>)
            // The limit again: building a runtime sets the shared cache's limit to the config's
            // (DataFusion's 50 MiB by default), which would shrink it for every query.
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(Arc::clone(&self.metadata_cache)))
                    .with_metadata_cache_limit(self.settings.metadata_cache_bytes),
            );
        if let Some(bytes) = memory_bytes {
            builder = builder.with_memory_pool(Arc::new(TrackConsumersPool::new(
                QueryMemoryPool::new(bytes),
                std::num::NonZeroUsize::new(5).expect("non-zero"),
            )));
        }
        if let Some(dir) = &self.settings.spill_dir {
            builder = builder.with_temp_file_path(dir.clone());
        }
        Ok(builder.build_arc()?)
    }

    async fn build_snapshot(&self, table: &ArchiveTable) -> Result<Snapshot> {
        let scope = self.default_scope();
        let schema = Arc::new(MemorySchemaProvider::new());
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(
            &scope.schema,
            Arc::clone(&schema) as Arc<dyn SchemaProvider>,
        )?;
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        catalogs.register_catalog(scope.catalog.clone(), catalog as Arc<dyn CatalogProvider>);
        if scope.catalog != system::SYSTEM_CATALOG {
            catalogs.register_catalog(
                system::SYSTEM_CATALOG.to_owned(),
                system::catalog(&self.activity)?,
            );
        }
        let files = Arc::new(table.files()?);
        let watched = WatchedStore::new(Arc::clone(&files.store), Arc::clone(&self.storage));
        self.object_stores
            .register_store(files.store_url.as_ref(), Arc::new(watched));
        let index = if self.settings.use_key_index {
            let mut cache = self.index_segments.lock().await;
            match table.key_index(&mut cache).await {
                Ok(index) => {
                    let live = files
                        .files
                        .iter()
                        .map(|f| f.relative_path.as_str())
                        .collect();
                    Some((index.for_live_files(&live), table.index_store()))
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "the key index could not be read; lookups read every file until it can"
                    );
                    None
                }
            }
        } else {
            None
        };
        let store = table.index_store();
        let (rollup, rollup_tag) = match DailyRollup::load(&store).await {
            Ok(rollup) => {
                let tag = rollup.tag().cloned();
                (rollup, tag)
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the daily rollup could not be read; {DAILY_ACTIVITY} is computed from the rows"
                );
                // Remembered, so that the same unreadable object is not read again each refresh.
                let tag = DailyRollup::current_tag(&store).await.ok().flatten();
                (DailyRollup::default(), tag)
            }
        };
        let activity: Arc<dyn TableProvider> =
            Arc::new(DailyActivityProvider::new(Arc::clone(&files), rollup));
        let partitioning = files.partitioning;
        let provider: Arc<dyn TableProvider> = Arc::new(ArchiveScanProvider::new(files, index)?);
        schema.register_table(TABLE_NAME.to_owned(), Arc::clone(&provider))?;
        schema.register_table(DAILY_ACTIVITY.to_owned(), Arc::clone(&activity))?;

        let mut builder = SessionStateBuilder::new()
            .with_config(self.session_config(&scope))
            .with_runtime_env(self.runtime(None)?)
            .with_catalog_list(catalogs as Arc<dyn CatalogProviderList>)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(BoundedTopKAggregates))
            .with_physical_optimizer_rule(Arc::new(ClusteredPartialAggregates { partitioning }));
        if self.settings.lookup_reader {
            builder = builder.with_physical_optimizer_rule(Arc::new(ArchiveLookups));
        }
        if self.settings.use_key_index {
            builder = builder.with_optimizer_rule(Arc::new(KeysThroughAggregates));
        }
        if self.settings.use_rollup {
            builder =
                builder.with_optimizer_rule(Arc::new(KpisFromRollup::new(provider, activity)));
        }
        let mut base = builder.build();
        register_functions(&mut base)?;

        // Views may read other views: plan in rounds until a round plans nothing more.
        let mut descriptions = HashMap::new();
        descriptions.insert(
            TABLE_NAME.to_owned(),
            "Every archived order event, raw and typed".to_owned(),
        );
        descriptions.insert(
            DAILY_ACTIVITY.to_owned(),
            "Per event date and facility: events, orders placed, revenue, cancellations, line \
             items and distinct customers (with a sketch hll_union merges); closed dates from \
             the archive's rollup, the others from the rows"
                .to_owned(),
        );
        let mut pending: Vec<&ViewDefinition> = self.views.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut failed = Vec::new();
            let mut first_error = None;
            for view in pending {
                match plan_view(&base, &view.sql).await {
                    Ok(plan) => {
                        let view_table = ViewTable::new(plan, Some(view.sql.clone()));
                        schema.register_table(view.name.clone(), Arc::new(view_table))?;
                        descriptions.insert(view.name.clone(), view.description.clone());
                    }
                    Err(e) => {
                        first_error.get_or_insert((view, e));
                        failed.push(view);
                    }
                }
            }
            if failed.len() == before
                && let Some((view, e)) = first_error
            {
                return Err(QueryError::View {
                    path: view.path.display().to_string(),
                    message: QueryError::from(e).to_string(),
                });
            }
            pending = failed;
        }
        system_metadata::register(&base, &descriptions).await?;
        Ok(Snapshot {
            version: table.version(),
            committed_at_ms: table.committed_at_ms(),
            rollup_tag,
            base,
            descriptions,
        })
    }

    /// The catalog and schema a new client session starts in.
    pub fn default_scope(&self) -> QueryScope {
        QueryScope {
            catalog: self.settings.catalog.clone(),
            schema: self.settings.schema.clone(),
            time_zone: None,
            max_run_time: None,
            max_memory_bytes: None,
        }
    }

    /// Every function a query can call, sorted, with its kind (`scalar`, `aggregate`, `window`).
    pub fn function_names(&self) -> Vec<(String, &'static str)> {
        let snapshot = self.current();
        let state = &snapshot.base;
        let mut all: Vec<(String, &'static str)> = state
            .scalar_functions()
            .keys()
            .map(|n| (n.clone(), "scalar"))
            .chain(
                state
                    .aggregate_functions()
                    .keys()
                    .map(|n| (n.clone(), "aggregate")),
            )
            .chain(
                state
                    .window_functions()
                    .keys()
                    .map(|n| (n.clone(), "window")),
            )
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Checks that a catalog (and schema, when given) exists, for session options.
    pub fn check_scope(&self, catalog: &str, schema: Option<&str>) -> Result<()> {
        let snapshot = self.current();
        let list = snapshot.base.catalog_list();
        let Some(c) = list.catalog(catalog) else {
            return Err(QueryError::not_found(format!(
                "catalog '{catalog}' does not exist; catalogs: {}",
                list.catalog_names().join(", ")
            )));
        };
        if let Some(schema) = schema
            && schema != "information_schema"
            && c.schema(schema).is_none()
        {
            return Err(QueryError::not_found(format!(
                "schema '{catalog}.{schema}' does not exist; schemas: {}",
                c.schema_names().join(", ")
            )));
        }
        Ok(())
    }

    /// Every catalog, schema, table and view there is, information_schema included (what
    /// operators see).
    pub async fn tables(&self) -> Result<Vec<TableEntry>> {
        let snapshot = self.current();
        let list = Arc::clone(snapshot.base.catalog_list());
        self.tables_in(&snapshot, list).await
    }

    /// What `user` can list: the tables and views the access rules let them read, without
    /// their hidden columns.
    pub async fn tables_for(&self, user: &str) -> Result<Vec<TableEntry>> {
        let snapshot = self.current();
        let list = self.catalogs_for(&snapshot, user).0;
        self.tables_in(&snapshot, list).await
    }

    /// The catalogs as `user` sees them, and the hidden columns the session handed out.
    fn catalogs_for(
        &self,
        snapshot: &Snapshot,
        user: &str,
    ) -> (Arc<dyn CatalogProviderList>, Option<HiddenColumns>) {
        let base = Arc::clone(snapshot.base.catalog_list());
        if !self.settings.access.restricts_tables() {
            return (base, None);
        }
        let catalogs = UserCatalogs::new(base, Arc::clone(&self.settings.access), user);
        let hidden = catalogs.hidden_columns();
        (Arc::new(catalogs), Some(hidden))
    }

    async fn tables_in(
        &self,
        snapshot: &Snapshot,
        list: Arc<dyn CatalogProviderList>,
    ) -> Result<Vec<TableEntry>> {
        let state = &snapshot.base;
        let mut out = Vec::new();
        let mut catalogs = list.catalog_names();
        catalogs.sort();
        for catalog_name in catalogs {
            let Some(catalog) = list.catalog(&catalog_name) else {
                continue;
            };
            let mut schemas = catalog.schema_names();
            schemas.sort();
            for schema_name in schemas {
                // Trino's information_schema is reached by its usual name only.
                if schema_name == statement::TRINO_INFORMATION_SCHEMA {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                let mut names = schema.table_names();
                names.sort();
                for name in names {
                    let Some(table) = schema.table(&name).await? else {
                        continue;
                    };
                    let kind = match table.table_type() {
                        datafusion::logical_expr::TableType::View => "VIEW",
                        _ => "TABLE",
                    };
                    out.push(TableEntry {
                        catalog: catalog_name.clone(),
                        schema: schema_name.clone(),
                        description: snapshot.descriptions.get(&name).cloned(),
                        name,
                        kind,
                        arrow_schema: plain_schema(&table.schema()),
                    });
                }
            }
            for name in ["tables", "views", "columns", "schemata", "df_settings"] {
                let reference = datafusion::common::TableReference::full(
                    catalog_name.as_str(),
                    "information_schema",
                    name,
                );
                let Ok(schema) = state.schema_for_ref(reference) else {
                    continue;
                };
                if let Some(table) = schema.table(name).await? {
                    out.push(TableEntry {
                        catalog: catalog_name.clone(),
                        schema: "information_schema".into(),
                        name: name.into(),
                        kind: "VIEW",
                        arrow_schema: plain_schema(&table.schema()),
                        description: None,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Parses, vets and plans `sql` for `user` without running it: its result schema and
    /// parameters.
    pub async fn plan(&self, sql: &str, scope: &QueryScope, user: &str) -> Result<PlannedQuery> {
        self.plan_with(sql, scope, None, user).await
    }

    async fn plan_with(
        &self,
        sql: &str,
        scope: &QueryScope,
        memory_bytes: Option<usize>,
        user: &str,
    ) -> Result<PlannedQuery> {
        let snapshot = self.current();
        let (catalogs, hidden) = self.catalogs_for(&snapshot, user);
        let config = self
            .session_config(scope)
            .with_extension(Arc::new(system::QueryUser {
                name: user.to_owned(),
                sees_all_queries: !self.settings.access.restricts()
                    || self.settings.access.may(user, QueryPrivilege::View),
            }));
        let mut state = SessionStateBuilder::new_from_existing(snapshot.base.clone())
            .with_config(config)
            .with_catalog_list(catalogs)
            .with_runtime_env(self.runtime(memory_bytes)?)
            .build();
        // The statement's clock: `now()` / `current_timestamp` become this instant when the
        // plan is simplified (without it they fail: "invoke should not be called on a simplified
        // now() function").
        state.mark_start_execution();
        let dialect = statement::dialect_for(sql, state.config().options().sql_parser.dialect);
        let parsed =
            statement::prepare(sql, scope, |sql| Ok(state.sql_to_statement(sql, &dialect)?))?;
        let plan = match state.statement_to_plan(parsed).await {
            Ok(plan) => plan,
            Err(e) => return Err(denied_column(&e, hidden.as_ref()).unwrap_or_else(|| e.into())),
        };
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        let mut parameters: Vec<(String, Option<DataType>)> =
            plan.get_parameter_types()?.into_iter().collect();
        parameters.sort_by_key(|(name, _)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let schema = client_schema(&plan);
        Ok(PlannedQuery {
            plan,
            state,
            parameters,
            schema,
        })
    }

    /// Plans `request` with its own memory pool (logical plan, parameters still unbound).
    async fn plan_request(&self, request: &QueryRequest) -> Result<PlannedQuery> {
        let limits = request.scope.limits(&self.settings.limits);
        self.plan_with(
            &request.sql,
            &request.scope,
            Some(limits.memory_bytes),
            &request.user,
        )
        .await
    }

    /// Binds the parameter values and plans down to the physical plan, recording how long
    /// planning took since `started`. Big plans are handed to the cluster, when there is one.
    async fn physical_plan(
        &self,
        planned: PlannedQuery,
        params: Vec<ScalarValue>,
        started: Instant,
    ) -> Result<ReadyPlan> {
        let bound = !planned.parameters.is_empty();
        let plan = bind(planned.plan, &planned.parameters, params)?;
        // A placeholder the planner could not type (`SELECT ?`) is typed by its value.
        let schema = if bound {
            client_schema(&plan)
        } else {
            planned.schema
        };
        let state = planned.state;
        let mut task = Arc::new(TaskContext::from(&state));
        let mut physical = state.create_physical_plan(&plan).await?;
        if let Some(cluster) = &self.cluster
            && cluster.wants(&physical)
        {
            let state = cluster.planning_state(&state);
            let placed = cluster.place(state.create_physical_plan(&plan).await?, state.config());
            if let Some(placed) = placed {
                physical = placed;
                task = Arc::new(TaskContext::from(&state));
            }
        }
        let planning = started.elapsed();
        meters::planned(planning);
        Ok(ReadyPlan {
            physical,
            task,
            schema,
            made: Instant::now(),
            planning,
        })
    }

    /// Plans a query that will be executed under `request.id` soon (a Flight SQL GetFlightInfo
    /// before its DoGet): the physical plan is kept, so the execution runs it instead of planning
    /// again. A statement whose parameters are not all bound yet is only checked. Returns the
    /// schema clients receive. Planning is held to the query's time limit too: it may read
    /// storage (footers not cached yet).
    pub async fn plan_for_execution(&self, request: &QueryRequest) -> Result<SchemaRef> {
        let limits = &request.scope.limits(&self.settings.limits);
        let planning = unless_panicking(self.plan_for_execution_in(request));
        tokio::time::timeout(limits.timeout, planning)
            .instrument(query_span(request))
            .await
            .unwrap_or_else(|_| Err(out_of_time(limits, &self.storage)))
    }

    async fn plan_for_execution_in(&self, request: &QueryRequest) -> Result<SchemaRef> {
        let started = Instant::now();
        let planned = self.plan_request(request).await?;
        if planned.parameters.len() != request.params.len() {
            return Ok(planned.schema);
        }
        let ready = self
            .physical_plan(planned, request.params.clone(), started)
            .await?;
        let schema = Arc::clone(&ready.schema);
        let mut plans = self.ready.lock().expect("ready plans lock");
        plans.retain(|(_, p)| p.made.elapsed() < READY_PLAN_TTL);
        if plans.len() >= READY_PLANS {
            plans.pop_front();
        }
        plans.push_back((request.id.clone(), ready));
        Ok(schema)
    }

    /// The plan kept for this query id, if it is still fresh.
    fn take_ready(&self, id: &str) -> Option<ReadyPlan> {
        let mut plans = self.ready.lock().expect("ready plans lock");
        let at = plans.iter().position(|(i, _)| i == id)?;
        let (_, ready) = plans.remove(at)?;
        (ready.made.elapsed() < READY_PLAN_TTL).then_some(ready)
    }

    /// Runs a query under the limits. The returned stream yields its batches as they are computed;
    /// dropping it stops the query.
    pub async fn execute(self: &Arc<Self>, request: QueryRequest) -> Result<QueryStream> {
        let span = query_span(&request);
        self.execute_in(request, span.clone())
            .instrument(span)
            .await
    }

    async fn execute_in(
        self: &Arc<Self>,
        request: QueryRequest,
        span: tracing::Span,
    ) -> Result<QueryStream> {
        let limits = &request.scope.limits(&self.settings.limits);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + limits.timeout;
        if self
            .activity
            .was_cancelled_early(&request.id, &request.user)
        {
            return Err(QueryError::Cancelled {
                query_id: request.id,
            });
        }
        let cancel = CancellationToken::new();
        let mut guard = RunningGuard::register(&self.activity, &request, cancel.clone());
        let ready = self.take_ready(&request.id);
        // Planned first (unless planned ahead), then admitted to the lane its plan belongs in:
        // what a plan reads is known only once it is planned.
        let prepare = unless_panicking(async {
            let ready = match ready {
                Some(ready) => ready,
                None => {
                    let started = Instant::now();
                    let planned = self.plan_request(&request).await?;
                    self.physical_plan(planned, request.params.clone(), started)
                        .await?
                }
            };
            let lane = self.admission.lane(&PlanReads::of(&ready.physical));
            guard.queued(lane, ready.planning);
            let permit = self.admission.admit(lane, limits.timeout).await?;
            guard.admitted(Arc::clone(ready.task.memory_pool()));
            let stream = execute_stream(ready.physical, ready.task)?;
            Ok::<_, QueryError>((stream, ready.schema, permit))
        });
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let prepared = tokio::select! {
            r = tokio::time::timeout(remaining, prepare) => {
                r.unwrap_or_else(|_| Err(out_of_time(limits, &self.storage)))
            }
            () = cancel.cancelled() => Err(QueryError::Cancelled { query_id: request.id }),
        };
        let (inner, schema, permit) = prepared.inspect_err(|e| guard.ended(outcome(e), 0))?;
        Ok(QueryStream {
            needs_cast: inner.schema() != schema,
            schema,
            inner: Some(inner),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            cancelled: Box::pin(cancel.cancelled_owned()),
            limits: limits.clone(),
            storage: Arc::clone(&self.storage),
            rows: 0,
            bytes: 0,
            started,
            _permit: permit,
            guard,
            span,
        })
    }
}

/// The hidden columns a user's session resolved, shared with its catalogs.
type HiddenColumns = Arc<Mutex<std::collections::BTreeSet<HiddenColumn>>>;

/// A view's query planned over `base`: in the dialect its text needs, Trino's lambdas read as
/// clients' statements are (a view may use what a query may).
async fn plan_view(base: &SessionState, sql: &str) -> datafusion::error::Result<LogicalPlan> {
    let dialect = statement::dialect_for(sql, base.config().options().sql_parser.dialect);
    let mut parsed = base.sql_to_statement(sql, &dialect)?;
    statement::trino_lambda_functions(&mut parsed);
    base.statement_to_plan(parsed).await
}

/// A planning error about a field the access rules hide from the user: refused as such, naming
/// the column and its table, rather than reported as a column that does not exist.
fn denied_column(e: &DataFusionError, hidden: Option<&HiddenColumns>) -> Option<QueryError> {
    let DataFusionError::SchemaError(schema_error, _) = e.find_root() else {
        return None;
    };
    let SchemaError::FieldNotFound { field, .. } = schema_error.as_ref() else {
        return None;
    };
    let hidden = hidden?.lock().expect("hidden columns lock");
    let name = field.name.to_lowercase();
    let column = hidden.iter().find(|h| h.column == name)?;
    Some(QueryError::forbidden(format!(
        "Access Denied: Cannot select from columns [{}] in table or view {}",
        column.column, column.table
    )))
}

/// `work`, failing with [`QueryError::panicked`] instead of unwinding if the engine panics in it.
async fn unless_panicking<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(QueryError::panicked(panic.as_ref())))
}

/// The result schema clients receive for `plan`.
fn client_schema(plan: &LogicalPlan) -> SchemaRef {
    plain_schema(&Arc::new(plan.schema().as_arrow().clone()))
}

/// Registers orderlake's own functions in `state`: `date_trunc` over DataFusion's, the sketch
/// functions and the Trino functions.
pub(crate) fn register_functions(state: &mut SessionState) -> datafusion::error::Result<()> {
    // By name, over DataFusion's own: the archive's zoned UTC times truncate by arithmetic.
    state.register_udf(Arc::new(UtcDateTrunc::udf()))?;
    let (scalars, aggregates) = sketches::functions();
    for f in scalars {
        state.register_udf(Arc::new(f))?;
    }
    for f in aggregates {
        state.register_udaf(Arc::new(f))?;
    }
    trino_functions::register(state)
}

/// The span every log line of a query carries: its id and who asked.
fn query_span(request: &QueryRequest) -> tracing::Span {
    tracing::info_span!("query", query_id = %request.id, user = %request.user)
}

/// Binds parameter values to a plan's placeholders, casting each to the type the planner
/// inferred for it.
fn bind(
    plan: LogicalPlan,
    parameters: &[(String, Option<DataType>)],
    values: Vec<ScalarValue>,
) -> Result<LogicalPlan> {
    if parameters.is_empty() && values.is_empty() {
        return Ok(plan);
    }
    if parameters.len() != values.len() {
        return Err(QueryError::invalid(format!(
            "the statement takes {} parameter(s) but {} value(s) were bound",
            parameters.len(),
            values.len()
        )));
    }
    let mut cast = Vec::with_capacity(values.len());
    for ((name, ty), value) in parameters.iter().zip(values) {
        cast.push(match ty {
            Some(ty) if value.data_type() != *ty && !value.is_null() => {
                value.cast_to(ty).map_err(|e| {
                    QueryError::invalid(format!(
                        "parameter {name}: {value} cannot be used as {ty}: {}",
                        e.strip_backtrace()
                    ))
                })?
            }
            Some(ty) if value.is_null() => ScalarValue::try_from(ty)?,
            _ => value,
        });
    }
    Ok(plan.with_param_values(cast)?)
}

/// A fresh random id for a query.
pub fn new_query_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
