//! Cold SQL over the orderlake archive: DataFusion over the Delta table with Trino-like names
//! (`archive.oms.order_events`, short names through the current catalog and schema), business
//! views from `sql/`, read-only by construction, and per-query limits on memory, time,
//! concurrency and result size. The Flight SQL server is a protocol layer over this crate.

pub mod access;
mod access_catalog;
mod activity;
mod bounded_topk;
pub mod cluster;
mod clustered_aggregate;
pub mod engine;
pub mod error;
mod join_keys;
mod key_rewrite;
mod leaf;
pub mod limits;
mod lookup_reader;
mod lookup_scan;
mod memory;
mod meters;
mod reads;
pub mod rollup;
mod rollup_rewrite;
pub mod scan;
mod sketches;
pub mod statement;
mod storage_watch;
mod stream;
pub mod system;
mod system_metadata;
mod trino_functions;
pub mod trino_types;
mod utc_date_trunc;
pub mod views;

pub use activity::{CancelOutcome, FinishedQuery, QueryPhase, QueryTimes, RunningQueryInfo};
pub use engine::{
    ColdQueryEngine, EngineSettings, PlannedQuery, QueryRequest, QueryScope, TableEntry,
    TableReport, new_query_id,
};
pub use error::{QueryError, Result};
pub use limits::QueryLimits;
pub use memory::default_query_memory;
pub use stream::{QueryStream, plain_schema};
pub use views::ViewDefinition;
