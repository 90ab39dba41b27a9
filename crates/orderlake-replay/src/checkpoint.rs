//! The replay checkpoint: a local JSON file, written atomically (temp file + rename) while the
//! replay runs. Per source partition it holds the offset through which every selected record was
//! acknowledged by the broker; per target partition, the offset from which a resumed replay
//! re-reads the target to find records that were delivered after the last checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ReplayError, Result};
use crate::selection::ReplaySelection;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayCheckpoint {
    pub table_uri: String,
    pub target_topic: String,
    pub selection: ReplaySelection,
    /// topic → partition → last source offset acknowledged (with all before it).
    pub acked_through: BTreeMap<String, BTreeMap<i32, i64>>,
    /// target partition → offset to re-read from on resume.
    pub scan_from: BTreeMap<i32, i64>,
    pub sent: u64,
    pub bytes: u64,
    pub complete: bool,
}

impl ReplayCheckpoint {
    /// Default location: `.orderlake-replay/<target topic>.json` in the working directory.
    pub fn default_path(target_topic: &str) -> PathBuf {
        let safe: String = target_topic
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(".orderlake-replay").join(format!("{safe}.json"))
    }

    fn err(path: &Path, reason: impl Into<String>) -> ReplayError {
        ReplayError::Checkpoint {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }

    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Self::err(path, format!("unreadable: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::err(path, e.to_string())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Self::err(path, e.to_string()))?;
        }
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Self::err(path, e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| Self::err(path, e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| Self::err(path, e.to_string()))
    }

    /// A resumed replay must be the same replay.
    pub fn check_matches(
        &self,
        path: &Path,
        table_uri: &str,
        topic: &str,
        selection: &ReplaySelection,
    ) -> Result<()> {
        if self.table_uri != table_uri || self.target_topic != topic || &self.selection != selection
        {
            return Err(Self::err(
                path,
                format!(
                    "it belongs to a different replay (table {}, topic {}, selection {:?}); use the same arguments or another --checkpoint",
                    self.table_uri, self.target_topic, self.selection
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_refuses_another_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp/x.json");
        let mut cp = ReplayCheckpoint {
            table_uri: "t".into(),
            target_topic: "x".into(),
            ..Default::default()
        };
        cp.acked_through
            .entry("a".into())
            .or_default()
            .insert(0, 41);
        cp.save(&path).unwrap();
        let back = ReplayCheckpoint::load(&path).unwrap().unwrap();
        assert_eq!(back, cp);
        assert!(
            back.check_matches(&path, "t", "x", &ReplaySelection::default())
                .is_ok()
        );
        let other = ReplaySelection {
            topics: vec!["b".into()],
            ..Default::default()
        };
        assert!(
            back.check_matches(&path, "t", "x", &other)
                .unwrap_err()
                .to_string()
                .contains("different replay")
        );
        assert_eq!(
            ReplayCheckpoint::load(&dir.path().join("none.json")).unwrap(),
            None
        );
    }
}
