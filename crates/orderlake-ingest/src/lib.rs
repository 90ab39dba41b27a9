//! The ingest side of orderlake: Kafka records become archive rows (raw envelope plus typed order
//! columns decoded through per-topic source mappings), buffered and committed to the Delta table
//! exactly once, with each commit carrying its Kafka offsets.

pub mod avro;
mod convert;
pub mod debezium;
pub mod decode;
pub mod direct;
pub mod document;
pub mod drain;
pub mod error;
pub mod import;
pub mod lag;
pub mod mapping;
mod pressure;
pub mod redecode;
pub mod registry;
pub mod rowbuf;
pub mod writer;

pub use direct::{SourceRecord, archive_records, read_json_lines};
pub use drain::{DrainReport, DrainSettings, StartFrom, StopSignal, drain};
pub use error::{IngestError, Result};
pub use import::{ImportFile, ImportFormat, ImportRecord, ImportReport, import_records};
pub use mapping::{MappingSet, SourceMapping};
pub use writer::{ArchiveWriter, WriterSettings};
