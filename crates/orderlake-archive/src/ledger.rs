//! The offset ledger: per Kafka partition, the last offset whose record is in the table. It is
//! stored as Delta application transactions inside the same commits as the data files, so the
//! table alone says what has been archived. The app id names the source topic and partition (not
//! the consumer group): a record is archived once per table, whichever group or instance reads it.

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
        let delta = table.delta();
        let uri = table.location().to_string();
        let mut archived = BTreeMap::new();
        if let Ok(state) = delta.snapshot() {
            let log_store = delta.log_store();
            for sp in partitions {
                let offset = state
                    .transaction_version(log_store.as_ref(), sp.app_id())
                    .await
                    .map_err(ArchiveError::delta(&uri))?;
                archived.insert(sp, offset);
            }
        } else {
            archived.extend(partitions.into_iter().map(|sp| (sp, None)));
        }
        Ok(Self {
            version: delta.version(),
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
