//! How the archive's typed columns are compressed, chosen when the table is created.
//!
//! The raw record (`kafka_value`, most of the bytes) is always zstd at the configured level: it
//! is kept for ever and read rarely. Every other column (the typed order columns, the Kafka
//! coordinates, the headers) is what queries decode, and its codec is a table setting:
//!
//! - **lz4** (`LZ4_RAW`, the default for new tables): about a quarter more bytes on disk, decoded
//!   several times faster and without a decompression context per column chunk: scans 40% and
//!   lookups 15–25% faster (docs/benchmarks.md, "Pages of every column, bloom filters for many
//!   keys, and the column codec").
//! - **zstd** (every table created before the setting existed): the fewest bytes.
//!
//! The setting is kept in the Delta table's configuration under [`CODEC_PROPERTY`], so every
//! writer of the table (the archiver, imports, compaction) writes the same; a table without it is
//! zstd.

use std::collections::HashMap;

use parquet::basic::{Compression, ZstdLevel};
use serde::{Deserialize, Serialize};

/// The Delta table configuration key holding the codec's name.
pub const CODEC_PROPERTY: &str = "orderlake.columnCodec";

/// The codec of every column but the raw record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnCodec {
    Zstd,
    #[default]
    Lz4,
}

impl ColumnCodec {
    pub const ALL: [ColumnCodec; 2] = [ColumnCodec::Zstd, ColumnCodec::Lz4];

    pub fn name(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        }
    }

    /// The Parquet compression of these columns (`zstd_level` is used by zstd only).
    pub fn compression(self, zstd_level: ZstdLevel) -> Compression {
        match self {
            Self::Zstd => Compression::ZSTD(zstd_level),
            Self::Lz4 => Compression::LZ4_RAW,
        }
    }

    /// The codec a table's configuration names: zstd when it names none (tables created before
    /// the setting, whatever the default for new ones); an error naming the value when it names
    /// one this build does not know.
    pub fn of_configuration(configuration: &HashMap<String, String>) -> Result<Self, String> {
        match configuration.get(CODEC_PROPERTY) {
            None => Ok(Self::Zstd),
            Some(name) => name
                .parse()
                .map_err(|e| format!("table property {CODEC_PROPERTY}: {e}")),
        }
    }
}

impl std::fmt::Display for ColumnCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ColumnCodec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("`{s}` is not a column codec: zstd or lz4"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_without_the_property_is_zstd_and_an_unknown_name_is_refused() {
        let mut configuration = HashMap::new();
        assert_eq!(
            ColumnCodec::of_configuration(&configuration),
            Ok(ColumnCodec::Zstd)
        );
        configuration.insert(CODEC_PROPERTY.to_owned(), "lz4".to_owned());
        assert_eq!(
            ColumnCodec::of_configuration(&configuration),
            Ok(ColumnCodec::Lz4)
        );
        configuration.insert(CODEC_PROPERTY.to_owned(), "snappy".to_owned());
        let err = ColumnCodec::of_configuration(&configuration).unwrap_err();
        assert!(
            err.contains(CODEC_PROPERTY) && err.contains("snappy"),
            "{err}"
        );
    }
}
