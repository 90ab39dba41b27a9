//! The offset ledger: per Kafka partition, the last offset whose record is in the table. It is
//! stored as Delta application transactions inside the same commits as the data files, so the
//! table alone says what has been archived. The app id names the source topic and partition (not
//! the consumer group): a record is archived once per table, whichever group or instance reads it.
//!
//! Imports keep a ledger entry of the same kind per imported source (a legacy export file, named
//! by the SHA-256 of its bytes): how many of its records the table holds.

use std::collections::BTreeMap;
use std::fmt;

use deltalake::kernel::Transaction;

use crate::error::{ArchiveError, Result};
use crate::table::ArchiveTable;

/// One Kafka partition of one source topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePartition {
    pub topic: String,
    pub partition: i32,
}

impl SourcePartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The Delta application-transaction id that records this partition's archived offset.
    pub fn app_id(&self) -> String {
        format!("orderlake/kafka/{}/{}", self.topic, self.partition)
    }

    /// The ledger entry saying "archived through `offset`", to commit with the data.
    pub fn ledger_entry(&self, offset: i64) -> Transaction {
        Transaction::new(self.app_id(), offset)
    }
}

impl fmt::Display for SourcePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// A source imported without Kafka coordinates: a legacy export file, identified by its content,
/// or a generated stream, identified by its settings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImportSource {
    /// Content identity: the SHA-256 of a file's bytes (hex), or a generator's settings.
    pub id: String,
    /// What a user recognises: the file's URI, or the generator's command.
    pub name: String,
}

impl ImportSource {
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }

    /// The application-transaction id whose version counts the records imported so far.
    pub fn app_id(&self) -> String {
        format!("orderlake/import/{}", self.id)
    }

    /// The `import_source` value of its rows: `name#id`, so that `verify` can find the ledger
    /// entry of any imported row.
    pub fn label(&self) -> String {
        format!("{}#{}", self.name, self.id)
    }

    /// The source a [`label`](Self::label) names (a label without an id gives an empty id, whose
    /// ledger entry never exists).
    pub fn from_label(label: &str) -> Self {
        let (name, id) = label.rsplit_once('#').unwrap_or((label, ""));
        Self::new(id, name)
    }

    /// Records of this source the table holds, as of the table's current snapshot.
    pub async fn imported(&self, table: &ArchiveTable) -> Result<Option<i64>> {
        transaction_version(table, self.app_id()).await
    }
}

impl fmt::Display for ImportSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The version of one application transaction in the table's current snapshot.
async fn transaction_version(table: &ArchiveTable, app_id: String) -> Result<Option<i64>> {
    let delta = table.delta();
    let Ok(state) = delta.snapshot() else {
        return Ok(None);
    };
    state
        .transaction_version(delta.log_store().as_ref(), app_id)
        .await
        .map_err(ArchiveError::delta(&table.location().to_string()))
}

/// Archived offsets of a set of partitions as of one table version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetLedger {
    version: Option<u64>,
    archived: BTreeMap<SourcePartition, Option<i64>>,
}

impl OffsetLedger {
    /// Reads the ledger entries of `partitions` from the table's current snapshot.
    pub async fn read(
        table: &ArchiveTable,
        partitions: impl IntoIterator<Item = SourcePartition>,
    ) -> Result<Self> {
        let mut archived = BTreeMap::new();
        for sp in partitions {
            let offset = transaction_version(table, sp.app_id()).await?;
            archived.insert(sp, offset);
        }
        Ok(Self {
            version: table.delta().version(),
            archived,
        })
    }

    /// The archived offset of each `(topic, partition)`, in the order given.
    pub async fn offsets_of<'a>(
        table: &ArchiveTable,
        keys: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> Result<Vec<Option<i64>>> {
        let keys: Vec<SourcePartition> = keys
            .into_iter()
            .map(|(t, p)| SourcePartition::new(t, p))
            .collect();
        let ledger = Self::read(table, keys.iter().cloned()).await?;
        Ok(keys.iter().map(|sp| ledger.archived(sp)).collect())
    }

    /// Table version this ledger was read at.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Last archived offset of `sp`, `None` when the table holds nothing from it.
    pub fn archived(&self, sp: &SourcePartition) -> Option<i64> {
        self.archived.get(sp).copied().flatten()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SourcePartition, Option<i64>)> {
        self.archived.iter().map(|(sp, o)| (sp, *o))
    }
}
