//! The writer schemas of framed records, from a Confluent-compatible Schema Registry.
//!
//! A schema id or GUID names one schema forever, so every schema fetched is kept for the life of
//! the process. Fetching never happens on the drain's thread: [`SchemaRegistry::lookup`] answers
//! at once from what is known, and starts a background fetch for an unknown key that retries
//! with backoff, trying each configured URL in turn, until the registry answers. The drain
//! waits a moment for the first answer ([`SchemaRegistry::await_first_answer`]); past that it
//! pauses only the partitions whose records need that key. A registry that answers "not
//! found" ends the wait for good (the records are archived raw, with that reason); one that does
//! not answer within `unavailable_wait_secs` lets the waiting records through raw, with a reason
//! `maintain --redecode` acts on later, while the fetch goes on for the records after them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::avro::{AvroSchema, SchemaKey};
use orderlake_telemetry::catalogue::archiver as m;

/// The `[schema_registry]` block of the archiver's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URLs of the registry's instances, tried in order (empty: no registry; framed records
    /// are archived raw with a reason).
    pub urls: Vec<String>,
    /// HTTP basic authentication (Confluent Cloud: the API key and secret).
    pub username: Option<String>,
    pub password: Option<String>,
    /// A bearer token instead of basic authentication.
    pub bearer_token: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's, for an HTTPS registry.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for one request.
    pub request_timeout_ms: u64,
    /// How long a partition waits for a schema the registry does not serve (down, slow,
    /// refusing) before its records are archived raw with a reason and decoded later by
    /// `maintain --redecode`.
    pub unavailable_wait_secs: u64,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            username: None,
            password: None,
            bearer_token: None,
            ca_file: None,
            request_timeout_ms: 5_000,
            unavailable_wait_secs: 300,
        }
    }
}

impl SchemaRegistryConfig {
    pub fn is_configured(&self) -> bool {
        !self.urls.is_empty()
    }

    /// The first key whose value cannot be used, and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for url in &self.urls {
            match url::Url::parse(url) {
                Err(e) => return Some(("urls", format!("`{url}`: {e}"))),
                Ok(parsed) if !["http", "https"].contains(&parsed.scheme()) => {
                    return Some((
                        "urls",
                        format!("`{url}`: the registry speaks http or https"),
                    ));
                }
                Ok(_) => {}
            }
        }
        if self.username.is_some() && self.bearer_token.is_some() {
            return Some((
                "bearer_token",
                "set either username/password or bearer_token, not both".into(),
            ));
        }
        if self.request_timeout_ms == 0 {
            return Some(("request_timeout_ms", "must be at least 1".into()));
        }
        if let Some(ca) = &self.ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            return Some(("ca_file", format!("`{}`: {e}", ca.display())));
        }
        None
    }

    pub fn unavailable_wait(&self) -> Duration {
        Duration::from_secs(self.unavailable_wait_secs)
    }

    /// A copy safe to print.
    pub fn redacted(&self) -> Self {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "<redacted>".to_owned());
        Self {
            password: hide(&self.password),
            bearer_token: hide(&self.bearer_token),
            ..self.clone()
        }
    }
}

/// What a schema key names.
#[derive(Debug)]
pub enum RegisteredSchema {
    Avro(Box<AvroSchema>),
    /// JSON Schema framing: the data after the framing is a JSON document.
    Json,
    /// Another format (Protobuf): archived raw with its name.
    Other(String),
}

/// What is known of a key now.
#[derive(Debug, Clone)]
pub enum Lookup {
    Ready(Arc<RegisteredSchema>),
    /// Being fetched: the records needing it wait.
    Pending,
    /// The registry says it does not exist, or what it holds cannot be used (for good).
    Failed(String),
    /// The wait for it ran out: records needing it go through raw until it arrives.
    Unavailable(String),
}

#[derive(Debug)]
enum Entry {
    Ready(Arc<RegisteredSchema>),
    Failed(String),
    Fetching {
        last_error: Option<String>,
        given_up: bool,
        /// Someone has already waited for the first answer (the wait is spent once per key).
        awaited: bool,
    },
}

/// The schemas known, and a signal each time a fetch records what it found.
#[derive(Debug, Default)]
struct Entries {
    map: Mutex<HashMap<SchemaKey, Entry>>,
    changed: Condvar,
}

impl Entries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SchemaKey, Entry>> {
        self.map.lock().expect("registry lock")
    }
}

/// A registry client with the schemas it has fetched.
#[derive(Debug)]
pub struct SchemaRegistry {
    config: SchemaRegistryConfig,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    entries: Arc<Entries>,
}

/// Why one fetch failed.
#[derive(Debug)]
enum FetchError {
    /// Not there, or not usable: waiting will not help.
    Permanent(String),
    /// Down, slow, refusing: try again.
    Transient(String),
}

impl SchemaRegistry {
    /// A client for `config` (which must name URLs); fetches run on `runtime`.
    pub fn new(
        config: SchemaRegistryConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        if let Some((key, reason)) = config.problem() {
            return Err(format!("schema_registry.{key}: {reason}"));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(Duration::from_millis(config.request_timeout_ms));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("schema_registry.ca_file `{}`: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("schema_registry.ca_file `{}`: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("schema registry client: {e}"))?;
        Ok(Self {
            config,
            client,
            runtime,
            entries: Arc::default(),
        })
    }

    pub fn config(&self) -> &SchemaRegistryConfig {
        &self.config
    }

    /// What is known of `key`; an unknown key starts being fetched (and is `Pending`).
    pub fn lookup(&self, key: SchemaKey) -> Lookup {
        let mut entries = self.entries.lock();
        match entries.get(&key) {
            Some(Entry::Ready(schema)) => Lookup::Ready(schema.clone()),
            Some(Entry::Failed(reason)) => Lookup::Failed(reason.clone()),
            Some(Entry::Fetching {
                given_up: true,
                last_error,
                ..
            }) => Lookup::Unavailable(
                last_error
                    .clone()
                    .unwrap_or_else(|| "no answer yet".to_owned()),
            ),
            Some(Entry::Fetching { .. }) => Lookup::Pending,
            None => {
                entries.insert(
                    key,
                    Entry::Fetching {
                        last_error: None,
                        given_up: false,
                        awaited: false,
                    },
                );
                drop(entries);
                self.spawn_fetch(key);
                Lookup::Pending
            }
        }
    }

    /// Waits up to `wait` for the first answer about `key`, whose fetch has started: `true` when
    /// the registry has answered (the schema, or that it has none), `false` when the wait ran
    /// out or the registry failed to answer (the records then wait with their partition paused
    /// while the fetch retries). A registry nearby answers in a millisecond or two, far sooner
    /// than a paused partition's records are fetched again. Only the first caller for a key
    /// waits: the records of other partitions that need it do not add waits of their own.
    pub fn await_first_answer(&self, key: SchemaKey, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        let mut entries = self.entries.lock();
        match entries.get_mut(&key) {
            Some(Entry::Fetching { awaited, .. }) if *awaited => return false,
            Some(Entry::Fetching { awaited, .. }) => *awaited = true,
            _ => {}
        }
        loop {
            match entries.get(&key) {
                Some(Entry::Ready(_) | Entry::Failed(_)) => return true,
                Some(Entry::Fetching {
                    last_error: None,
                    given_up: false,
                    ..
                }) => {}
                Some(Entry::Fetching { .. }) | None => return false,
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            entries = self
                .entries
                .changed
                .wait_timeout(entries, left)
                .expect("registry lock")
                .0;
        }
    }

    /// Stops holding records back for `key`: they go through raw until it arrives.
    pub fn give_up(&self, key: SchemaKey) {
        if let Some(Entry::Fetching { given_up, .. }) = self.entries.lock().get_mut(&key) {
            *given_up = true;
        }
    }

    fn spawn_fetch(&self, key: SchemaKey) {
        let entries: Weak<Entries> = Arc::downgrade(&self.entries);
        let fetcher = Fetcher {
            config: self.config.clone(),
            client: self.client.clone(),
        };
        self.runtime.spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let outcome = fetcher.fetch(key).await;
                let Some(alive) = entries.upgrade() else {
                    return;
                };
                if !record(&alive, key, outcome, backoff) {
                    return;
                }
                drop(alive);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
    }
}

/// Keeps what one fetch found; `true`: fetch again.
fn record(
    entries: &Entries,
    key: SchemaKey,
    outcome: Result<RegisteredSchema, FetchError>,
    backoff: Duration,
) -> bool {
    let mut map = entries.lock();
    let again = match outcome {
        Ok(schema) => {
            tracing::info!(%key, "schema fetched from the registry");
            fetched("ok");
            map.insert(key, Entry::Ready(Arc::new(schema)));
            false
        }
        Err(FetchError::Permanent(reason)) => {
            tracing::warn!(%key, %reason, "the registry has no usable schema; its records are archived raw");
            fetched("not_found");
            map.insert(key, Entry::Failed(reason));
            false
        }
        Err(FetchError::Transient(reason)) => {
            tracing::warn!(%key, %reason, retry_in = ?backoff, "schema registry unavailable");
            fetched("unavailable");
            if let Some(Entry::Fetching { last_error, .. }) = map.get_mut(&key) {
                *last_error = Some(reason);
            }
            true
        }
    };
    drop(map);
    entries.changed.notify_all();
    again
}

fn fetched(outcome: &'static str) {
    metrics::counter!(m::SCHEMA_REGISTRY_REQUESTS, "outcome" => outcome).increment(1);
}

/// One fetch of a schema and what it references.
struct Fetcher {
    config: SchemaRegistryConfig,
    client: reqwest::Client,
}

/// The registry's answer for a schema (`/schemas/ids/…`, `/subjects/…/versions/…`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaAnswer {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    subject: String,
    version: i64,
}

impl Fetcher {
    async fn fetch(&self, key: SchemaKey) -> Result<RegisteredSchema, FetchError> {
        let path = match key {
            SchemaKey::Id(id) => format!("schemas/ids/{id}"),
            SchemaKey::Guid(guid) => format!("schemas/guids/{guid}"),
        };
        let answer = self.get(&path).await?;
        match answer.schema_type.as_deref().unwrap_or("AVRO") {
            "AVRO" => {
                let mut texts = Vec::new();
                self.references(&answer.references, &mut texts, 0).await?;
                AvroSchema::parse(&answer.schema, &texts)
                    .map(|s| RegisteredSchema::Avro(Box::new(s)))
                    .map_err(|e| FetchError::Permanent(format!("its Avro schema: {e}")))
            }
            "JSON" => Ok(RegisteredSchema::Json),
            other => Ok(RegisteredSchema::Other(other.to_owned())),
        }
    }

    /// The texts of the referenced schemas, each after the ones it references.
    async fn references(
        &self,
        refs: &[Reference],
        texts: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), FetchError> {
        if depth > 32 {
            return Err(FetchError::Permanent(
                "schema references nest deeper than 32".into(),
            ));
        }
        for r in refs {
            let subject = percent_encode(&r.subject);
            let version = if r.version < 0 {
                "latest".to_owned()
            } else {
                r.version.to_string()
            };
            let answer = self
                .get(&format!("subjects/{subject}/versions/{version}"))
                .await?;
            Box::pin(self.references(&answer.references, texts, depth + 1)).await?;
            if !texts.contains(&answer.schema) {
                texts.push(answer.schema);
            }
        }
        Ok(())
    }

    /// GET `path` from the first URL that answers.
    async fn get(&self, path: &str) -> Result<SchemaAnswer, FetchError> {
        let mut errors = Vec::new();
        for base in &self.config.urls {
            let url = format!("{}/{path}", base.trim_end_matches('/'));
            let mut request = self
                .client
                .get(&url)
                .header("Accept", "application/vnd.schemaregistry.v1+json");
            if let Some(user) = &self.config.username {
                request = request.basic_auth(user, self.config.password.as_ref());
            } else if let Some(token) = &self.config.bearer_token {
                request = request.bearer_auth(token);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("{url}: {}", error_chain(&e)));
                    continue;
                }
            };
            let status = response.status();
            let body = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    errors.push(format!("{url}: {}", error_chain(&e)));
                    continue;
                }
            };
            if status.is_success() {
                return serde_json::from_slice(&body).map_err(|e| {
                    FetchError::Permanent(format!("{url} answered something not a schema: {e}"))
                });
            }
            let message = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(FetchError::Permanent(format!(
                    "{url}: not found: {message}"
                )));
            }
            errors.push(format!("{url}: HTTP {status}: {message}"));
        }
        Err(FetchError::Transient(errors.join("; ")))
    }
}

/// The error and its causes in one line (reqwest's own display stops at the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A registry on loopback that answers every request with `schema`, once per connection.
    fn answering(schema: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).unwrap();
                let body = serde_json::json!({ "schema": schema }).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    fn registry(url: String, runtime: &tokio::runtime::Runtime) -> SchemaRegistry {
        let config = SchemaRegistryConfig {
            urls: vec![url],
            // Longer than any wait below: a silent registry stays unanswered throughout.
            request_timeout_ms: 60_000,
            ..Default::default()
        };
        SchemaRegistry::new(config, runtime.handle().clone()).unwrap()
    }

    #[test]
    fn the_first_answer_is_awaited_and_a_failing_registry_is_not() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let key = SchemaKey::Id(7);

        let up = registry(answering(r#""string""#), &runtime);
        assert!(matches!(up.lookup(key), Lookup::Pending));
        assert!(up.await_first_answer(key, Duration::from_secs(30)));
        assert!(matches!(up.lookup(key), Lookup::Ready(_)));

        // Nothing listens there: the first fetch fails at once, and the wait ends with it (the
        // records then wait with their partition paused while the fetch retries).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = registry(format!("http://127.0.0.1:{port}"), &runtime);
        assert!(matches!(down.lookup(key), Lookup::Pending));
        let started = std::time::Instant::now();
        assert!(!down.await_first_answer(key, Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(matches!(down.lookup(key), Lookup::Pending));
        // A key nobody asked for has no fetch to wait for.
        assert!(!down.await_first_answer(SchemaKey::Id(8), Duration::from_secs(30)));

        // A registry that takes the request and never answers: the first caller waits out its
        // wait; later callers for the same key (other partitions' records) do not wait again.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_url = format!("http://{}", silent.local_addr().unwrap());
        let slow = registry(silent_url, &runtime);
        assert!(matches!(slow.lookup(key), Lookup::Pending));
        assert!(!slow.await_first_answer(key, Duration::from_millis(200)));
        let started = std::time::Instant::now();
        assert!(!slow.await_first_answer(key, Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(slow.lookup(key), Lookup::Pending));
        drop(silent);
    }
}
