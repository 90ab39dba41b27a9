//! Replay: archived records back into Kafka, byte for byte (key, value, headers, timestamp), in
//! per-partition offset order, rate-limited and resumable. The archive is read through DataFusion
//! so selections prune by partition and file statistics; progress is checkpointed in a local file
//! (the archive stays the read-mostly record and the replaying user may only be able to read it).

pub mod checkpoint;
pub mod error;
pub mod produce;
pub mod schemas;
pub mod selection;
pub mod sender;

pub use checkpoint::ReplayCheckpoint;
pub use error::{ReplayError, Result};
pub use selection::{ReplaySelection, TimeField};
pub use sender::{Partitioning, ReplayOptions, ReplayPlan, ReplayReport, plan, replay};
