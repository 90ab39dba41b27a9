//! Business views: one SQL file per view in the views directory (`<name>.sql`), a comment at the
//! top saying what it answers, then one query. They are planned over each table version as it
//! becomes visible, so a view never mixes two versions.

use std::path::{Path, PathBuf};

use crate::error::{QueryError, Result};

/// A view as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDefinition {
    pub name: String,
    /// What the view answers: the leading comment.
    pub description: String,
    pub sql: String,
    pub path: PathBuf,
}

/// Reads every `*.sql` file directly inside `dir` (sorted by name; subdirectories such as the
/// views' tests are skipped).
pub fn load_views(dir: &Path) -> Result<Vec<ViewDefinition>> {
    let err = |path: &Path, message: String| QueryError::View {
        path: path.display().to_string(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .ok_or_else(|| {
                    err(
                        &path,
                        "a view file is named <view_name>.sql (letters, digits, _)".into(),
                    )
                })?
                .to_owned();
            let description = text
                .lines()
                .map(str::trim)
                .take_while(|l| l.starts_with("--"))
                .map(|l| l.trim_start_matches('-').trim())
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_owned();
            if description.is_empty() {
                return Err(err(
                    &path,
                    "a view file starts with a `--` comment saying what the view answers".into(),
                ));
            }
            let sql = text.trim().trim_end_matches(';').to_owned();
            Ok(ViewDefinition {
                name,
                description,
                sql,
                path,
            })
        })
        .collect()
}
