//! The archive is the contract between the two sides of orderlake: the archiver writes it, the
//! query server reads it, and neither calls the other. This crate owns that contract: the row
//! schema users write SQL against, where the table lives, and the per-partition offset ledger that
//! makes ingestion exactly once.

pub mod codec;
pub mod compaction;
pub mod config_file;
pub mod error;
pub mod files;
pub mod growth;
pub mod history;
pub mod key_index;
pub mod layout;
pub mod ledger;
pub mod maintenance;
pub mod parquet_io;
pub mod rollup;
pub mod schema;
pub mod storage;
pub mod table;
pub mod time;
pub mod unreachable;
pub mod verify;

pub use codec::ColumnCodec;
pub use config_file::ConfigError;
pub use error::{ArchiveError, Result, exit_code, one_line};
pub use files::{ArchiveFile, ArchiveFiles, ColumnStatistics};
pub use growth::{DaySize, Growth};
pub use history::CommitSummary;
pub use layout::{Partitioning, TableLayout};
pub use ledger::{ImportSource, OffsetLedger, SourcePartition};
pub use maintenance::{CompactReport, MaintenanceSettings};
pub use storage::{ArchiveConfig, TableLocation};
pub use table::{ArchiveTable, TABLE_NAME, TableStatus};
pub use unreachable::{store_unreachable, until_reachable};
pub use verify::{PartitionCheck, VerifyReport};
