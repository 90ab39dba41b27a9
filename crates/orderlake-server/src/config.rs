//! Server configuration as documented blocks, one struct per concern. Precedence: built-in
//! defaults < the TOML file (`--config`) < environment variables < flags. `config/server.toml` is
//! the commented example of every key; a test parses it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orderlake_archive::{ArchiveConfig, ConfigError, config_file};
use orderlake_query::{EngineSettings, QueryLimits, default_query_memory};
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// Where the server listens, and its TLS identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Address for Flight SQL clients (`host:port`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, clients must connect with TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Names clients see and the business views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlConfig {
    /// Catalog holding the archive (Trino's catalog).
    pub catalog: String,
    /// Schema holding the archive table and the views.
    pub schema: String,
    /// Directory of business views, one `<name>.sql` each; empty for none.
    pub views_dir: PathBuf,
    /// How often the server looks for new archive commits.
    pub refresh_interval_secs: u64,
    /// Partitions each query fans out to; 0 means one per core.
    pub target_partitions: usize,
    /// Where queries spill when over their memory limit; empty for the OS temporary directory.
    pub spill_dir: PathBuf,
    /// Memory for Parquet footers and page indexes kept between queries.
    pub metadata_cache_bytes: usize,
    /// Narrow lookups by order_id / customer_id with the archive's key index (`_orderlake_index/`).
    pub use_key_index: bool,
    /// Read key lookups with orderlake's own reader (each file's reader set-up kept between
    /// queries, several files at once); `false` reads them with DataFusion's Parquet scan.
    pub lookup_reader: bool,
    /// Answer KPI aggregates over order_events from the daily rollup (`_orderlake_rollup/`).
    pub use_rollup: bool,
    /// DataFusion settings for every query, named without the `datafusion.` prefix, for example
    /// `"execution.parquet.pushdown_filters" = "false"`. They override orderlake's own choices;
    /// clients cannot change them (`SET` is refused).
    pub datafusion: BTreeMap<String, String>,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            catalog: "archive".into(),
            schema: "oms".into(),
            views_dir: PathBuf::from("sql"),
            refresh_interval_secs: 10,
            target_partitions: 0,
            spill_dir: PathBuf::new(),
            metadata_cache_bytes: orderlake_query::engine::DEFAULT_METADATA_CACHE_BYTES,
            use_key_index: true,
            lookup_reader: true,
            use_rollup: true,
            datafusion: BTreeMap::new(),
        }
    }
}

/// What one query may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Memory one query's operators may hold before spilling, then failing with RESOURCE_EXHAUSTED.
    /// Unset: three quarters of the machine's memory shared by `max_running` queries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<usize>,
    /// Longest a query may take, queueing included; then DEADLINE_EXCEEDED (UNAVAILABLE when
    /// the archive's storage stopped answering under it).
    pub timeout_secs: u64,
    /// Queries running at once (lookups aside).
    pub max_running: usize,
    /// Queries waiting for a slot, in each lane; more are refused with RESOURCE_EXHAUSTED.
    pub max_queued: usize,
    /// Key lookups running at once in a lane of their own (0: they share `max_running`).
    pub lookup_slots: usize,
    /// A plan reading files of fewer bytes than this (key lookups' scans not counted) is a
    /// lookup.
    pub lookup_below_bytes: u64,
    /// Rows one result may have.
    pub max_result_rows: u64,
    /// Bytes (in Arrow memory) one result may have.
    pub max_result_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = QueryLimits::default();
        Self {
            memory_bytes: None,
            timeout_secs: d.timeout.as_secs(),
            max_running: d.max_running,
            max_queued: d.max_queued,
            lookup_slots: d.lookup_slots,
            lookup_below_bytes: d.lookup_below_bytes,
            max_result_rows: d.max_result_rows,
            max_result_bytes: d.max_result_bytes,
        }
    }
}

impl LimitsConfig {
    /// The memory a query may hold: `memory_bytes`, or when unset the share of the machine's
    /// memory each of `max_running` queries gets.
    pub fn query_memory(&self) -> usize {
        self.memory_bytes
            .unwrap_or_else(|| default_query_memory(self.max_running))
    }
}

/// A person who signs in with a password (BI tools, JDBC, ADBC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// An argon2 PHC string (`orderlake-server hash-password` prints one) or a bcrypt hash.
    pub password_hash: String,
}

/// A long-lived token for a service (the API service's delegated lookups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTokenConfig {
    pub name: String,
    /// Hex SHA-256 of the token (`orderlake-server new-token` prints both).
    pub token_sha256: String,
}

/// Who may query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse requests without valid credentials (UNAUTHENTICATED). Only switch off on loopback.
    pub required: bool,
    /// Lifetime of the bearer token a password sign-in returns.
    pub token_ttl_secs: u64,
    pub users: Vec<UserConfig>,
    pub service_tokens: Vec<ServiceTokenConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: true,
            token_ttl_secs: 8 * 3600,
            users: Vec::new(),
            service_tokens: Vec::new(),
        }
    }
}

/// The Trino front door: Trino's client protocol over HTTP (the `trino` Python client, the
/// Trino JDBC driver, Superset, DBeaver), TLS from `[server]`'s certificate when it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrinoConfig {
    /// Address of the Trino listener (`host:port`; port 0 picks a free one). Unset: off.
    pub listen: Option<SocketAddr>,
    /// Accept passwords (HTTP Basic) without TLS. Off by default, as in Trino: a password
    /// crosses the network in the clear. Clients must opt in too (`allow_insecure_auth` in the
    /// Python client).
    pub allow_insecure_passwords: bool,
    /// A query whose client has not asked for its next page for this long is cancelled.
    pub client_timeout_secs: u64,
}

impl Default for TrinoConfig {
    fn default() -> Self {
        Self {
            listen: None,
            allow_insecure_passwords: false,
            client_timeout_secs: 300,
        }
    }
}

/// Big queries on an Apache DataFusion Ballista cluster: a scheduler and its executors
/// (`orderlake-server scheduler`, `orderlake-server executor`). Off unless a scheduler is named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributedConfig {
    /// The scheduler's gRPC address, `http://host:port`, or `https://host:port` for a cluster
    /// that speaks TLS (then `ca_cert` is needed). Unset: every query runs on this server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// The CA certificate (PEM) that signed the scheduler's and the executors' certificates,
    /// for an `https://` scheduler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Queries whose scans list fewer bytes of files run on this server (lookups, rollup-served
    /// answers): the cluster's round trips would cost more than they save.
    pub local_below_bytes: u64,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        Self {
            scheduler: None,
            ca_cert: None,
            local_below_bytes: orderlake_query::cluster::DEFAULT_LOCAL_BELOW_BYTES,
        }
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub server: ListenConfig,
    pub archive: ArchiveConfig,
    pub sql: SqlConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    /// The listener of /metrics, /health, /ready and the status page (at `/`).
    pub metrics: orderlake_telemetry::MetricsConfig,
    pub status: crate::status_page::StatusConfig,
    pub trino: TrinoConfig,
    pub distributed: DistributedConfig,
    /// Who may read which tables and columns (Trino-style file-based rules; none: every
    /// signed-in user reads everything).
    pub access: orderlake_query::access::AccessRules,
}

impl ServerConfig {
    /// Reads a TOML file; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, ServerError> {
        let config: Self = config_file::read_toml(path)?;
        config.validate(path)?;
        Ok(config)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ServerError> {
        let config: Self = config_file::parse_toml(text, path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks values serde cannot; `file` is named in the error.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::invalid(file, key, reason);
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(bad(
                "server.tls_cert",
                "TLS needs both server.tls_cert and server.tls_key".into(),
            ));
        }
        for (key, value) in [
            ("sql.catalog", &self.sql.catalog),
            ("sql.schema", &self.sql.schema),
        ] {
            if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(key, format!("'{value}' is not a plain SQL identifier")));
            }
        }
        for (key, value) in &self.sql.datafusion {
            orderlake_query::engine::check_datafusion_option(key, value)
                .map_err(|reason| bad(&format!("sql.datafusion.\"{key}\""), reason))?;
        }
        if self.sql.refresh_interval_secs == 0 {
            return Err(bad(
                "sql.refresh_interval_secs",
                "must be at least 1".into(),
            ));
        }
        let l = &self.limits;
        for (key, zero) in [
            ("limits.memory_bytes", l.memory_bytes == Some(0)),
            ("limits.timeout_secs", l.timeout_secs == 0),
            ("limits.max_running", l.max_running == 0),
            ("limits.max_result_rows", l.max_result_rows == 0),
            ("limits.max_result_bytes", l.max_result_bytes == 0),
            (
                "trino.client_timeout_secs",
                self.trino.client_timeout_secs == 0,
            ),
        ] {
            if zero {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        orderlake_query::access::AccessPolicy::new(&self.access)
            .map_err(|e| bad(&e.key, e.reason))?;
        if let Some(scheduler) = &self.distributed.scheduler {
            orderlake_query::cluster::scheduler_host_port(scheduler)
                .map_err(|reason| bad("distributed.scheduler", reason))?;
        }
        self.cluster_tls()
            .map_err(|reason| bad("distributed.ca_cert", reason))?;
        if self.auth.required && self.auth.users.is_empty() && self.auth.service_tokens.is_empty() {
            return Err(bad(
                "auth.users",
                "authentication is required but no users or service tokens are configured; add \
                 [[auth.users]] (see `orderlake-server hash-password`) or set auth.required = false"
                    .into(),
            ));
        }
        for (i, u) in self.auth.users.iter().enumerate() {
            if !(u.password_hash.starts_with("$argon2") || u.password_hash.starts_with("$2")) {
                return Err(bad(
                    &format!("auth.users[{i}].password_hash"),
                    format!(
                        "the hash for user '{}' is neither argon2 nor bcrypt; \
                         `orderlake-server hash-password` prints one",
                        u.name
                    ),
                ));
            }
        }
        for (i, t) in self.auth.service_tokens.iter().enumerate() {
            if t.token_sha256.len() != 64 || !t.token_sha256.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(bad(
                    &format!("auth.service_tokens[{i}].token_sha256"),
                    "must be 64 hex digits (`orderlake-server new-token` prints one)".into(),
                ));
            }
        }
        Ok(())
    }

    /// TLS to the cluster: for an `https://` scheduler, with the CA of `ca_cert`; or why the
    /// two do not go together.
    fn cluster_tls(&self) -> Result<Option<orderlake_query::cluster::ClusterTls>, String> {
        let d = &self.distributed;
        let tls = d
            .scheduler
            .as_deref()
            .is_some_and(orderlake_query::cluster::speaks_tls);
        match (&d.ca_cert, tls) {
            (Some(ca), true) => orderlake_query::cluster::ClusterTls::from_pem_file(ca).map(Some),
            (None, true) => Err(
                "an https:// scheduler needs the CA that signed the cluster's \
                                 certificates"
                    .into(),
            ),
            (Some(_), false) => Err("a CA is only used with an https:// scheduler".into()),
            (None, false) => Ok(None),
        }
    }

    /// The query engine's settings from these blocks.
    pub fn engine_settings(&self) -> Result<EngineSettings, ServerError> {
        let non_empty = |p: &PathBuf| (!p.as_os_str().is_empty()).then(|| p.clone());
        let tls = self
            .cluster_tls()
            .map_err(|reason| ServerError::Cluster(format!("distributed.ca_cert: {reason}")))?;
        Ok(EngineSettings {
            catalog: self.sql.catalog.clone(),
            schema: self.sql.schema.clone(),
            views_dir: non_empty(&self.sql.views_dir),
            spill_dir: non_empty(&self.sql.spill_dir),
            target_partitions: self.sql.target_partitions,
            metadata_cache_bytes: self.sql.metadata_cache_bytes,
            use_key_index: self.sql.use_key_index,
            lookup_reader: self.sql.lookup_reader,
            use_rollup: self.sql.use_rollup,
            datafusion_options: self.sql.datafusion.clone(),
            cluster: self.distributed.scheduler.as_ref().map(|scheduler| {
                orderlake_query::cluster::ClusterSettings {
                    scheduler: scheduler.clone(),
                    local_below_bytes: self.distributed.local_below_bytes,
                    tls: tls.clone(),
                }
            }),
            // Checked by `validate`; rules that do not compile shut everything rather than open it.
            access: std::sync::Arc::new(
                orderlake_query::access::AccessPolicy::new(&self.access)
                    .unwrap_or_else(|_| orderlake_query::access::AccessPolicy::deny_all()),
            ),
            limits: QueryLimits {
                memory_bytes: self.limits.query_memory(),
                timeout: Duration::from_secs(self.limits.timeout_secs),
                max_running: self.limits.max_running,
                max_queued: self.limits.max_queued,
                lookup_slots: self.limits.lookup_slots,
                lookup_below_bytes: self.limits.lookup_below_bytes,
                max_result_rows: self.limits.max_result_rows,
                max_result_bytes: self.limits.max_result_bytes,
            },
        })
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.archive = self.archive.redacted();
        // The limit a query really gets, derived from the machine when unset.
        shown.limits.memory_bytes = Some(self.limits.query_memory());
        for u in &mut shown.auth.users {
            u.password_hash = "<redacted>".into();
        }
        for t in &mut shown.auth.service_tokens {
            t.token_sha256 = "<redacted>".into();
        }
        toml::to_string(&shown).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ServerError> {
        ServerConfig::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        )
        .join("../../config/server.toml");
        let c = ServerConfig::from_file(&path).unwrap();
        assert_eq!(c.sql.catalog, "archive");
        assert_eq!(c.sql.schema, "oms");
        assert!(c.auth.required);
        assert!(!c.auth.users.is_empty());
        assert!(!c.auth.service_tokens.is_empty());
    }

    #[test]
    fn bad_config_names_the_key_and_the_file() {
        let err = parse("[limits]\ntimeout_secs = \"long\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml") && err.contains("limits.timeout_secs"),
            "{err}"
        );
        let err = parse("[auth]\nrequired = true\n").unwrap_err().to_string();
        assert!(err.contains("auth.users"), "{err}");
        let err = parse("[auth]\nrequired = false\n[server]\ntls_cert = \"a.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.tls_cert"), "{err}");
        let err = parse("[auth]\nrequired = false\n[distributed]\nscheduler = \"sched:50050\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("distributed.scheduler"), "{err}");
        for distributed in [
            "scheduler = \"https://sched:50050\"\n",
            "scheduler = \"http://sched:50050\"\nca_cert = \"/etc/ca.pem\"\n",
            "scheduler = \"https://sched:50050\"\nca_cert = \"/no/such/ca.pem\"\n",
        ] {
            let err = parse(&format!(
                "[auth]\nrequired = false\n[distributed]\n{distributed}"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("distributed.ca_cert"), "{distributed}: {err}");
        }
        let err = parse(
            "[auth]\nrequired = false\n[[access.tables]]\ngroup = \"bi\"\nprivileges = [\"SELECT\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("access.tables[0].group") && err.contains("'bi' matches no group"),
            "{err}"
        );
        let err = parse("[[auth.users]]\nname = \"bi\"\npassword_hash = \"secret\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.users[0].password_hash"), "{err}");
        let auth = "[auth]\nrequired = false\n";
        let err = parse(&format!(
            "{auth}[sql.datafusion]\n\"execution.no_such_knob\" = \"1\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sql.datafusion.\"execution.no_such_knob\""),
            "{err}"
        );
        let err = parse(&format!(
            "{auth}[sql.datafusion]\n\"execution.parquet.pushdown_filters\" = \"sometimes\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("execution.parquet.pushdown_filters") && err.contains("sometimes"),
            "{err}"
        );
        let ok = parse(&format!(
            "{auth}[sql.datafusion]\n\"execution.parquet.pushdown_filters\" = \"false\"\n"
        ))
        .unwrap();
        assert_eq!(
            ok.engine_settings().unwrap().datafusion_options["execution.parquet.pushdown_filters"],
            "false"
        );
    }

    #[test]
    fn redaction_hides_secrets() {
        let c = parse(
            "[[auth.users]]\nname = \"bi\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\"\n\
             [archive.storage_options]\naws_secret_access_key = \"s3cr3t\"\n",
        )
        .unwrap();
        let shown = c.redacted();
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("argon2id"),
            "{shown}"
        );
    }
}
