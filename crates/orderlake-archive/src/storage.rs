//! Where the archive table lives: `file:///…`, a plain local path, or `s3://bucket/prefix`.
//! S3 endpoint and credentials come from the standard `AWS_*` environment variables that
//! object_store and delta-rs read (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …), so secrets never pass
//! through our config structs or logs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Once;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{ArchiveError, Result};

/// The archive table, as a configuration block shared by the archiver and the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// `file:///…`, a local path, or `s3://bucket/prefix`. S3 endpoint and credentials come from
    /// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`.
    pub table_uri: String,
    /// Extra object-store options (values are never logged).
    pub storage_options: BTreeMap<String, String>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            table_uri: "./data/lake/order_events".into(),
            storage_options: BTreeMap::new(),
        }
    }
}

impl ArchiveConfig {
    pub fn location(&self) -> Result<TableLocation> {
        let options = self
            .storage_options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        TableLocation::parse(&self.table_uri, options)
    }

    /// A copy safe to log: storage option values replaced.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        for v in shown.storage_options.values_mut() {
            *v = "<redacted>".into();
        }
        shown
    }
}

/// A resolved table location plus extra object-store options.
#[derive(Clone)]
pub struct TableLocation {
    url: Url,
    options: HashMap<String, String>,
}

impl std::fmt::Debug for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Option values may hold secrets: show only their keys.
        f.debug_struct("TableLocation")
            .field("url", &self.url.as_str())
            .field("option_keys", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Display for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// What a local path names, for [`resolve_url`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPath {
    Directory,
    File,
}

/// True for a location without a scheme (or with a Windows drive letter): a local path.
fn is_local_path(uri: &str) -> bool {
    Url::parse(uri).map_or(true, |url| url.scheme().len() <= 1)
}

/// Resolves a location as users write it, a local path, `file://…`, `s3://bucket/…` or
/// `memory://…`, into a URL; a local path is made absolute, so it must exist. Creates nothing.
/// The error is a sentence for the caller's own error.
pub fn resolve_url(uri: &str, local: LocalPath) -> std::result::Result<Url, String> {
    let url = if is_local_path(uri) {
        let abs = Path::new(uri)
            .canonicalize()
            .map_err(|e| format!("cannot resolve path: {e}"))?;
        match local {
            LocalPath::Directory => Url::from_directory_path(&abs),
            LocalPath::File => Url::from_file_path(&abs),
        }
        .map_err(|()| "not an absolute path".to_owned())?
    } else {
        Url::parse(uri).map_err(|e| e.to_string())?
    };
    match url.scheme() {
        "file" | "memory" => Ok(url),
        "s3" | "s3a" if url.host_str().is_some_and(|b| !b.is_empty()) => Ok(url),
        "s3" | "s3a" => Err("an S3 URI needs a bucket: s3://bucket/prefix".into()),
        other => Err(format!(
            "unsupported scheme `{other}` (use file://, s3:// or a local path)"
        )),
    }
}

fn register_object_stores() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| deltalake::aws::register_handlers(None));
}

impl TableLocation {
    /// Parses a table URI. A string without a scheme is a local directory, relative to the
    /// working directory; local directories are created when missing.
    pub fn parse(uri: &str, options: HashMap<String, String>) -> Result<Self> {
        register_object_stores();
        let invalid = |reason: String| ArchiveError::InvalidLocation {
            uri: uri.to_owned(),
            reason,
        };
        let create = |path: &Path| {
            std::fs::create_dir_all(path)
                .map_err(|e| invalid(format!("cannot create directory: {e}")))
        };
        // A plain path is created before it is resolved (resolving needs it to exist); a
        // file:// URI after.
        let plain_path = is_local_path(uri);
        if plain_path {
            create(Path::new(uri))?;
        }
        let url = resolve_url(uri, LocalPath::Directory).map_err(invalid)?;
        if !plain_path && url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| invalid("file URI has no local path".to_owned()))?;
            create(&path)?;
        }
        Ok(Self { url, options })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_become_file_urls_and_bad_schemes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lake/order_events");
        let loc = TableLocation::parse(p.to_str().unwrap(), HashMap::new()).unwrap();
        assert_eq!(loc.url().scheme(), "file");
        assert!(p.is_dir());
        let err = TableLocation::parse("ftp://host/x", HashMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("unsupported scheme `ftp`"),
            "{err}"
        );
        let err = TableLocation::parse("s3:///prefix", HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("needs a bucket"), "{err}");
    }
}
