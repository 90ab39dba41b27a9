//! The Trino front door: Trino's client REST protocol over HTTP, as the `trino` Python client,
//! the Trino JDBC driver (and so DBeaver) and Superset speak it, over the same engine, users,
//! limits and query list as Flight SQL.
//!
//! - `POST /v1/statement` starts a statement; each answer's `nextUri` is fetched with `GET` until
//!   an answer has none; `DELETE` of a `nextUri` cancels (204).
//! - `GET /v1/info` describes the server; `GET /v1/query/{id}` one query of the caller.
//! - HTTP Basic with the configured users, or a service token as `Bearer`; passwords over plain
//!   HTTP only when `[trino] allow_insecure_passwords` says so.

mod protocol;
mod query;
pub(crate) mod session_properties;
pub(crate) mod statement;
mod values;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orderlake_query::{CancelOutcome, ColdQueryEngine, QueryRequest, QueryScope};
use serde_json::json;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataMap;

use crate::auth::Authenticator;
use crate::config::TrinoConfig;
use crate::error::ServerError;
use protocol::{Code, Column, TrinoError};
use query::{Answer, Queries, TrinoQuery};
use statement::{ClientSession, Command};

/// Everything the handlers share.
struct Door {
    engine: Arc<ColdQueryEngine>,
    auth: Arc<Authenticator>,
    queries: Queries,
    config: TrinoConfig,
    tls: bool,
    started: Instant,
}

/// The Trino listener, running.
#[derive(Debug)]
pub struct TrinoListener {
    addr: SocketAddr,
    serve: JoinHandle<()>,
    sweep: JoinHandle<()>,
}

impl TrinoListener {
    /// Binds `config.listen` and serves Trino's protocol over `engine`.
    pub async fn start(
        listen: SocketAddr,
        config: TrinoConfig,
        engine: Arc<ColdQueryEngine>,
        auth: Arc<Authenticator>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Result<Self, ServerError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
        let door = Arc::new(Door {
            engine,
            auth,
            queries: Queries::default(),
            config,
            tls: tls.is_some(),
            started: Instant::now(),
        });
        let sweep = {
            let door = Arc::clone(&door);
            tokio::spawn(async move {
                let abandon = Duration::from_secs(door.config.client_timeout_secs);
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    door.queries.sweep(&door.engine, abandon);
                }
            })
        };
        let app = router(door);
        let serve = tokio::spawn(async move {
            let served = match tls {
                Some(acceptor) => match crate::tls::TlsListener::new(listener, acceptor) {
                    Ok(tls) => axum::serve(tls, app).await,
                    Err(e) => Err(e),
                },
                None => {
                    // Small answers are one or two packets: without TCP_NODELAY each would wait
                    // out the client's delayed ACK (40 ms on Linux).
                    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app).await
                }
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "the Trino listener stopped");
            }
        });
        tracing::info!(%addr, "orderlake-server listening for Trino clients");
        Ok(Self { addr, serve, sweep })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(&self) {
        self.serve.abort();
        self.sweep.abort();
    }
}

fn router(door: Arc<Door>) -> Router {
    Router::new()
        .route("/v1/statement", post(submit))
        .route(
            "/v1/statement/executing/{id}/{slug}/{token}",
            get(fetch).delete(cancel),
        )
        .route("/v1/info", get(info))
        .route("/v1/query/{id}", get(query_info))
        .with_state(door)
}

/// A response with Trino's JSON body.
fn json_response(status: StatusCode, headers: HeaderMap, body: String) -> Response {
    let mut response = (status, headers, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    Refused(status, message.into()).into_response()
}

/// A request refused before it reached a query: its HTTP status and why.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = (self.0, self.1).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"orderlake\""),
            );
        }
        response
    }
}

/// The base of the URIs this server hands out, as the client reached it.
fn base_uri(door: &Door, headers: &HeaderMap) -> String {
    let scheme = if door.tls { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Who is asking: the authenticated user, who must be the session user the client names.
fn caller(door: &Door, headers: &HeaderMap, session_user: Option<&str>) -> Result<String, Refused> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("basic"));
    if basic && !door.tls && !door.config.allow_insecure_passwords {
        crate::observe::auth_failed("trino");
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "passwords are accepted only over TLS: configure [server] tls_cert and tls_key, or \
             set [trino] allow_insecure_passwords = true for a trusted network"
                .into(),
        ));
    }
    let metadata = MetadataMap::from_headers(headers.clone());
    let principal = door.auth.authenticate(&metadata).map_err(|status| {
        crate::observe::auth_failed("trino");
        Refused(StatusCode::UNAUTHORIZED, status.message().to_owned())
    })?;
    if principal.name == "anonymous" {
        return Ok(session_user.unwrap_or("anonymous").to_owned());
    }
    match session_user {
        Some(user) if user != principal.name => Err(Refused(
            StatusCode::FORBIDDEN,
            format!(
                "Access Denied: User {} cannot impersonate user {user}",
                principal.name
            ),
        )),
        _ => Ok(principal.name),
    }
}

async fn submit(Extract(door): Extract<Arc<Door>>, headers: HeaderMap, body: Bytes) -> Response {
    let session = match ClientSession::from_headers(&headers) {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.message),
    };
    let user = match caller(&door, &headers, session.user.as_deref()) {
        Ok(u) => u,
        Err(refused) => return refused.into_response(),
    };
    let Ok(sql) = String::from_utf8(body.to_vec()) else {
        return plain(StatusCode::BAD_REQUEST, "the statement is not UTF-8");
    };
    if sql.trim().is_empty() {
        return plain(StatusCode::BAD_REQUEST, "SQL statement is empty");
    }
    let default = door.engine.default_scope();
    let mut scope = QueryScope {
        catalog: session.catalog.clone().unwrap_or(default.catalog),
        schema: session.schema.clone().unwrap_or(default.schema),
        ..default
    };
    // A bad time zone or property fails the query (below), as Trino reports it.
    let applied = statement::apply_session(&session, &mut scope);
    let mut request = QueryRequest {
        id: orderlake_query::new_query_id(),
        sql: sql.clone(),
        params: Vec::new(),
        scope,
        user,
        source: session.source.clone(),
    };
    let mut extra = HeaderMap::new();
    let query = match applied.and_then(|()| statement::classify(&sql, &session)) {
        Err(e) => TrinoQuery::failed(&request, e),
        Ok(command) => {
            match run_command(&door, &session, &mut request, command, &mut extra).await {
                Ok(Handled::Session(update_type)) => TrinoQuery::answered(&request, update_type),
                Ok(Handled::Rows(columns, rows)) => {
                    TrinoQuery::answered_with_rows(&request, columns, rows)
                }
                Ok(Handled::Engine) => TrinoQuery::start(&door.engine, request),
                Err(e) => TrinoQuery::failed(&request, e),
            }
        }
    };
    door.queries.insert(Arc::clone(&query));
    let base = base_uri(&door, &headers);
    match query.answer(0, query::wait(), &base).await {
        Some(answer) => respond(answer, extra),
        None => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the query lost its first page",
        ),
    }
}

fn respond(answer: Answer, headers: HeaderMap) -> Response {
    json_response(StatusCode::OK, headers, answer.body)
}

/// What the front door made of a statement.
enum Handled {
    /// A session statement, answered with headers: its update type.
    Session(&'static str),
    /// Rows the front door computed (`DESCRIBE`).
    Rows(Vec<Column>, Vec<serde_json::Value>),
    /// `request` is ready for the engine.
    Engine,
}

/// Handles a session statement or `DESCRIBE`, or prepares `request` for the engine.
async fn run_command(
    door: &Door,
    session: &ClientSession,
    request: &mut QueryRequest,
    command: Command,
    extra: &mut HeaderMap,
) -> Result<Handled, TrinoError> {
    let set = |extra: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            extra.insert(HeaderName::from_static(name), v);
        }
    };
    match command {
        Command::Use { catalog, schema } => {
            let catalog = catalog.unwrap_or_else(|| request.scope.catalog.clone());
            door.engine
                .check_scope(&catalog, Some(&schema))
                .map_err(|e| TrinoError::from_query(&e))?;
            set(extra, statement::SET_CATALOG, catalog);
            set(extra, statement::SET_SCHEMA, schema);
            Ok(Handled::Session("USE"))
        }
        Command::Prepare { name, sql } => {
            door.engine
                .plan(&sql, &request.scope, &request.user)
                .await
                .map_err(|e| TrinoError::from_query(&e))?;
            set(
                extra,
                statement::ADDED_PREPARE,
                format!("{}={}", statement::encode(&name), statement::encode(&sql)),
            );
            Ok(Handled::Session("PREPARE"))
        }
        Command::Deallocate { name } => {
            set(
                extra,
                statement::DEALLOCATED_PREPARE,
                statement::encode(&name),
            );
            Ok(Handled::Session("DEALLOCATE"))
        }
        Command::Execute { sql, using } => {
            if let Some(using) = using {
                request.params = statement::evaluate(&using).await?;
            }
            request.sql = sql;
            Ok(Handled::Engine)
        }
        Command::KillQuery { query_id, message } => {
            if !door.engine.running().iter().any(|q| q.id == query_id) {
                return Err(TrinoError::new(
                    Code::NotFound,
                    format!("Target query not found: {query_id}"),
                    None,
                ));
            }
            match door.engine.cancel_for(&query_id, &request.user) {
                CancelOutcome::NotYours => Err(TrinoError::new(
                    Code::PermissionDenied,
                    format!("Access Denied: Cannot kill query {query_id}: it is another user's"),
                    None,
                )),
                CancelOutcome::Cancelled | CancelOutcome::CancelledBeforeStart => {
                    tracing::info!(
                        query_id,
                        by = %request.user,
                        message = message.as_deref().unwrap_or(""),
                        "query killed"
                    );
                    Ok(Handled::Session("CALL"))
                }
            }
        }
        Command::Query(sql) => {
            request.sql = sql;
            Ok(Handled::Engine)
        }
        Command::Describe { name } => {
            let (columns, rows) = describe(door, request, &name).await?;
            Ok(Handled::Rows(columns, rows))
        }
        Command::ShowCreateView { name } => {
            let view = name.last().cloned().unwrap_or_default();
            let scope = &request.scope;
            let (catalog, schema) = match name.as_slice() {
                [c, s, _] => (c.clone(), s.clone()),
                [s, _] => (scope.catalog.clone(), s.clone()),
                _ => (scope.catalog.clone(), scope.schema.clone()),
            };
            let default = door.engine.default_scope();
            let access =
                door.engine
                    .settings()
                    .access
                    .table(&request.user, &catalog, &schema, &view);
            if access == orderlake_query::access::TableAccess::Hidden
                && door.engine.views().iter().any(|v| v.name == view)
            {
                return Err(TrinoError::new(
                    Code::PermissionDenied,
                    format!("Access Denied: Cannot show create view {catalog}.{schema}.{view}"),
                    None,
                ));
            }
            let found = door
                .engine
                .views()
                .iter()
                .find(|v| v.name == view && catalog == default.catalog && schema == default.schema)
                .map(|v| format!("CREATE VIEW {catalog}.{schema}.{view} AS\n{}", v.sql.trim()));
            match found {
                Some(text) => Ok(Handled::Rows(
                    varchar_columns(&["Create View"]),
                    vec![json!([text])],
                )),
                None => Err(TrinoError::new(
                    Code::TableNotFound,
                    format!("View '{catalog}.{schema}.{view}' does not exist"),
                    None,
                )),
            }
        }
        Command::ShowSession => Ok(Handled::Rows(
            varchar_columns(&["Name", "Value", "Default", "Type", "Description"]),
            session_properties::rows(&session.properties, &door.engine.settings().limits)
                .into_iter()
                .map(|row| json!(row))
                .collect(),
        )),
        Command::SetSession { name, value } => {
            set(
                extra,
                statement::SET_SESSION,
                format!("{name}={}", statement::encode(&value)),
            );
            Ok(Handled::Session("SET SESSION"))
        }
        Command::ResetSession { name } => {
            set(extra, statement::CLEAR_SESSION, name);
            Ok(Handled::Session("RESET SESSION"))
        }
        Command::ShowFunctions => Ok(Handled::Rows(
            varchar_columns(&[
                "Function",
                "Return Type",
                "Argument Types",
                "Function Type",
                "Deterministic",
                "Description",
            ]),
            door.engine
                .function_names()
                .into_iter()
                .map(|(name, kind)| json!([name, "", "", kind, "true", ""]))
                .collect(),
        )),
    }
}

/// Result columns of type varchar with these names.
fn varchar_columns(names: &[&str]) -> Vec<Column> {
    let varchar = orderlake_query::trino_types::trino_type(&arrow::datatypes::DataType::Utf8);
    names
        .iter()
        .map(|n| Column {
            name: (*n).to_owned(),
            type_name: varchar.name.clone(),
            type_signature: varchar.signature.clone(),
        })
        .collect()
}

/// `DESCRIBE`'s answer as Trino gives it: one row per column with its Trino type name.
async fn describe(
    door: &Door,
    request: &QueryRequest,
    name: &[String],
) -> Result<(Vec<Column>, Vec<serde_json::Value>), TrinoError> {
    let quoted: Vec<String> = name
        .iter()
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect();
    let planned = door
        .engine
        .plan(
            &format!("SELECT * FROM {}", quoted.join(".")),
            &request.scope,
            &request.user,
        )
        .await
        .map_err(|e| TrinoError::from_query(&e))?;
    let columns = varchar_columns(&["Column", "Type", "Extra", "Comment"]);
    let rows = planned
        .schema
        .fields()
        .iter()
        .map(|f| {
            json!([
                f.name(),
                orderlake_query::trino_types::trino_type(f.data_type()).name,
                "",
                f.metadata().get("comment").cloned().unwrap_or_default()
            ])
        })
        .collect();
    Ok((columns, rows))
}

/// The query a `nextUri` (id and slug) or an info URI (id alone) names, if the caller may see it.
fn named_query(
    door: &Door,
    headers: &HeaderMap,
    id: &str,
    slug: Option<&str>,
) -> Result<Arc<TrinoQuery>, Refused> {
    let session = ClientSession::from_headers(headers)
        .map_err(|e| Refused(StatusCode::BAD_REQUEST, e.message))?;
    let user = caller(door, headers, session.user.as_deref())?;
    let found = match slug {
        Some(slug) => door.queries.get(id, slug),
        None => door.queries.by_id(id),
    };
    match found {
        Some(q) if q.user == user || !door.auth.required() => Ok(q),
        _ => Err(Refused(
            StatusCode::NOT_FOUND,
            format!("Query not found: {id}"),
        )),
    }
}

async fn fetch(
    Extract(door): Extract<Arc<Door>>,
    Path((id, slug, token)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let query = match named_query(&door, &headers, &id, Some(&slug)) {
        Ok(q) => q,
        Err(refused) => return refused.into_response(),
    };
    let base = base_uri(&door, &headers);
    match query.answer(token, query::wait(), &base).await {
        Some(answer) => respond(answer, HeaderMap::new()),
        None => plain(
            StatusCode::GONE,
            format!("Query {id}: token {token} is not the next one or the last one answered"),
        ),
    }
}

async fn cancel(
    Extract(door): Extract<Arc<Door>>,
    Path((id, slug, _token)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    match named_query(&door, &headers, &id, Some(&slug)) {
        Ok(query) => {
            query.cancel(&door.engine).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

async fn info(Extract(door): Extract<Arc<Door>>) -> Response {
    let body = json!({
        "nodeVersion": {"version": concat!("orderlake-", env!("CARGO_PKG_VERSION"))},
        "environment": "orderlake",
        "coordinator": true,
        "starting": false,
        "uptime": format!("{:.2}s", door.started.elapsed().as_secs_f64()),
    });
    json_response(StatusCode::OK, HeaderMap::new(), body.to_string())
}

async fn query_info(
    Extract(door): Extract<Arc<Door>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match named_query(&door, &headers, &id, None) {
        Ok(query) => {
            let body = query.info().await;
            json_response(StatusCode::OK, HeaderMap::new(), body.to_string())
        }
        Err(refused) => refused.into_response(),
    }
}
