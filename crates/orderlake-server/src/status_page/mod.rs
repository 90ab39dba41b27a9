//! The status page: the archive as a picture for the people who run it, served on the metrics
//! listener at `/`. Signed in as the server's users (a session cookie holding the bearer token a
//! password sign-in issues); everything it shows comes from `/api/status`, and its one action,
//! cancelling a query, follows the engine's rule that people cancel their own queries. No asset
//! comes from outside the binary.

mod report;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use orderlake_query::{CancelOutcome, ColdQueryEngine};
use serde::{Deserialize, Serialize};

use crate::auth::{Authenticator, Principal};
use report::Reports;
pub use report::StatusConfig;

const PAGE: &str = include_str!("page.html");
const LOGIN: &str = include_str!("login.html");
const COOKIE: &str = "orderlake_session";

/// The engine once the archive is open (the listener starts first, so that `/ready` can say it
/// is opening).
pub type OpenedEngine = Arc<OnceLock<Arc<ColdQueryEngine>>>;

#[derive(Clone)]
struct Page {
    engine: OpenedEngine,
    auth: Arc<Authenticator>,
    reports: Arc<Reports>,
}

/// The page's routes, to merge into the operations listener.
pub fn router(engine: OpenedEngine, auth: Arc<Authenticator>, config: StatusConfig) -> Router {
    let page = Page {
        engine,
        auth,
        reports: Arc::new(Reports::new(config)),
    };
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/status", get(status))
        .route("/api/queries/{id}/cancel", post(cancel))
        .with_state(page)
}

fn session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(&format!("{COOKIE}=")))
        .filter(|t| !t.is_empty())
}

impl Page {
    fn who(&self, headers: &HeaderMap) -> Option<Principal> {
        self.auth.token_principal(session(headers)).ok()
    }
}

fn login_page(error: &str, code: StatusCode) -> Response {
    let escaped = error
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (code, Html(LOGIN.replace("{{error}}", &escaped))).into_response()
}

async fn index(State(page): State<Page>, headers: HeaderMap) -> Response {
    match page.who(&headers) {
        Some(_) => Html(PAGE).into_response(),
        None => login_page("", StatusCode::OK),
    }
}

#[derive(Debug, Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

async fn login(State(page): State<Page>, Form(c): Form<Credentials>) -> Response {
    match page.auth.password_sign_in(&c.user, &c.password) {
        Ok((_, token)) => (
            [(
                header::SET_COOKIE,
                format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
            )],
            Redirect::to("/"),
        )
            .into_response(),
        Err(e) => {
            crate::observe::auth_failed("status_page");
            login_page(e.message(), StatusCode::UNAUTHORIZED)
        }
    }
}

async fn logout(State(page): State<Page>, headers: HeaderMap) -> Response {
    if let Some(token) = session(&headers) {
        page.auth.revoke(token);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

async fn status(State(page): State<Page>, headers: HeaderMap) -> Response {
    let Some(who) = page.who(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first\n").into_response();
    };
    let Some(engine) = page.engine.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "opening the archive\n").into_response();
    };
    match page.reports.report(engine, &who.name).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the archive: {e}\n"),
        )
            .into_response(),
    }
}

#[derive(Debug, Serialize)]
struct Cancelled {
    outcome: &'static str,
}

async fn cancel(State(page): State<Page>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(who) = page.who(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first\n").into_response();
    };
    let Some(engine) = page.engine.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "opening the archive\n").into_response();
    };
    match engine.cancel_for(&id, &who.name) {
        CancelOutcome::Cancelled => axum::Json(Cancelled {
            outcome: "cancelled",
        })
        .into_response(),
        CancelOutcome::CancelledBeforeStart => axum::Json(Cancelled {
            outcome: "not running",
        })
        .into_response(),
        CancelOutcome::NotYours => (
            StatusCode::FORBIDDEN,
            axum::Json(Cancelled {
                outcome: "another user's query: only they can cancel it",
            }),
        )
            .into_response(),
    }
}
