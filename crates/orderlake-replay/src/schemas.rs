//! `replay --schema-registry-url`: before a record framed for a schema registry is sent, the
//! schema its framing names must resolve in that registry (the target cluster's), so a replay into
//! another cluster never leaves records its consumers cannot decode. Each schema is checked once;
//! a schema that does not resolve stops the replay before that record, with progress
//! checkpointed for `--resume` once the registry holds it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderlake_ingest::avro::{SchemaKey, framing, schema_header};
use orderlake_ingest::registry::{Lookup, SchemaRegistry};

use crate::error::{ReplayError, Result};

/// How long one schema may take to resolve before the replay stops.
const RESOLVE_WITHIN: Duration = Duration::from_secs(30);

/// The schemas seen so far and the registry that must hold them.
#[derive(Debug)]
pub struct SchemaCheck {
    registry: Arc<SchemaRegistry>,
    resolved: HashSet<SchemaKey>,
}

impl SchemaCheck {
    pub fn new(registry: Arc<SchemaRegistry>) -> Self {
        Self {
            registry,
            resolved: HashSet::new(),
        }
    }

    /// Whether the schema of a record with this value and these headers resolves (unframed
    /// records need none). Blocks while the registry is asked, at most [`RESOLVE_WITHIN`].
    pub fn check(
        &mut self,
        value: Option<&[u8]>,
        headers: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        let header = schema_header(headers);
        let Some(value) = value else {
            return Ok(());
        };
        let Ok(Some(framed)) = framing(value, header) else {
            // Unframed, or framing that names no schema (archived raw): nothing to resolve.
            return Ok(());
        };
        let key = framed.key;
        if self.resolved.contains(&key) {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            match self.registry.lookup(key) {
                Lookup::Ready(_) => {
                    self.resolved.insert(key);
                    return Ok(());
                }
                Lookup::Failed(reason) | Lookup::Unavailable(reason) => {
                    return Err(ReplayError::SchemaUnresolved {
                        key: key.to_string(),
                        reason,
                    });
                }
                Lookup::Pending if started.elapsed() >= RESOLVE_WITHIN => {
                    self.registry.give_up(key);
                }
                Lookup::Pending => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
