//! The daemon's HTTP API (axum): health and metrics for monitoring, the admin endpoints behind
//! the admin bearer token.
//!
//! Bad input gets `400 {"error": "..."}`, never a panic. Every 4xx/5xx answer under `/v1/` is
//! JSON with an `error` field: handlers write their own, and [`json_errors`] turns whatever else
//! answers (axum's rejections of a path, query or body, an unknown route, a wrong method, a
//! body over the limit) into one, so clients parse one shape. The admin token is compared in
//! constant time; without a configured token every admin endpoint answers 401.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::health::{self, HealthStatus};
use super::http_api::{AdminQuery, Api, error};
use super::state::SyncJob;
use crate::clock;
use crate::views::{self, ErrorView, ExplainQuery, QueryError};

/// Builds the router.
pub(crate) fn router(api: Arc<Api>) -> Router {
    use super::{http_doors, member, page};
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/sync", post(sync))
        .route("/v1/explain", get(explain))
        .route("/v1/members", get(members))
        .route("/v1/events", get(http_doors::events))
        .route("/v1/backup", get(backup))
        .route("/v1/enrol", get(enrol))
        .route("/v1/lockdown", post(lockdown))
        .route("/v1/units/{unit}/open", post(http_doors::app_open))
        .route("/v1/admin/units/{unit}/open", post(http_doors::admin_open))
        .route("/", get(page::index))
        .route("/login", post(page::login))
        .route("/logout", post(page::logout))
        .route("/page/state", get(page::state))
        .route("/page/events", get(page::events))
        .route("/page/units/{unit}/pulse", post(page::pulse))
        .route("/m/", get(member::page))
        .route(
            "/m",
            get(|| async { axum::response::Redirect::permanent("/m/") }),
        )
        .route("/m/login", get(member::login))
        .route("/auth/callback", get(member::callback))
        .route("/m/open/{unit}", post(member::open))
        .route("/m/logout", post(member::logout))
        .route("/m/manifest.webmanifest", get(member::manifest))
        .route("/m/sw.js", get(member::worker))
        .route("/m/icon.svg", get(member::icon))
        .route("/v1/admin/member-sessions/revoke", post(member::revoke))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(api)
}

/// The most of a plain-text error body that is kept as the message.
const MAX_ERROR_TEXT: usize = 4096;

/// Turns an error answer under `/v1/` that is not JSON into `{"error": "<its text>"}`, with
/// the same status and headers (`Allow`, `Retry-After`). JSON answers pass unchanged, so open
/// answers keep their other fields; `/healthz` and `/metrics` are not touched.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = request.uri().path().starts_with("/v1/");
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        match parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
        {
            Some(allow) => format!("{method} is not allowed here (allowed: {allow})"),
            None => format!("{method} is not allowed here"),
        }
    } else {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorView { error: message }).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn healthz(State(api): State<Arc<Api>>) -> Response {
    let daemon = &api.daemon;
    let health = health::health(daemon, clock::now());
    let code = match health.status {
        HealthStatus::Failing => StatusCode::SERVICE_UNAVAILABLE,
        HealthStatus::Ok | HealthStatus::Degraded => StatusCode::OK,
    };
    (code, Json(health)).into_response()
}

async fn status(State(api): State<Arc<Api>>) -> Response {
    let daemon = &api.daemon;
    Json(super::status::status(daemon, clock::now())).into_response()
}

/// Classic Prometheus text by default and for `Accept: text/plain`; OpenMetrics when the
/// scraper asks for it. The gauges are read from the daemon's state now.
async fn metrics(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let daemon = &api.daemon;
    let format = super::metrics::Format::from_accept(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    super::status::refresh_metrics(daemon, clock::now());
    (
        [(header::CONTENT_TYPE, format.content_type())],
        daemon.metrics.render(format),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct SyncParams {
    #[serde(default)]
    accept_revocations: bool,
    #[serde(default)]
    wait: bool,
}

async fn sync(State(api): State<Arc<Api>>, AdminQuery(params): AdminQuery<SyncParams>) -> Response {
    let daemon = &api.daemon;
    let (reply, answer) = oneshot::channel();
    let job = SyncJob {
        accept_revocations: params.accept_revocations,
        reply: params.wait.then_some(reply),
    };
    if daemon
        .sync_jobs
        .send(super::state::Job::Sync(job))
        .await
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    }
    if !params.wait {
        return (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"accepted": true})),
        )
            .into_response();
    }
    match answer.await {
        Ok(Ok(summary)) => Json(summary).into_response(),
        Ok(Err(message)) => error(StatusCode::BAD_GATEWAY, message),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}

async fn explain(
    State(api): State<Arc<Api>>,
    AdminQuery(query): AdminQuery<ExplainQuery>,
) -> Response {
    let daemon = &api.daemon;
    let Some(snapshot) = daemon.current() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot yet: run portier sync",
        );
    };
    let now = clock::now();
    match views::explain(
        &snapshot,
        &query,
        now,
        daemon.clock_trust(now),
        daemon.lockdown.borrow().on,
    ) {
        Ok(view) => Json(view).into_response(),
        Err(e @ QueryError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ QueryError::UnknownUnit(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// `GET /v1/backup` takes no parameters (unknown ones are ignored, as elsewhere).
#[derive(Debug, Deserialize)]
pub(crate) struct NoParams {}

/// A consistent copy of the store (`portier backup` while the daemon runs). The copy is taken on
/// the blocking pool: it holds the store's write gate for the few milliseconds it reads.
async fn backup(
    State(api): State<Arc<Api>>,
    AdminQuery(NoParams {}): AdminQuery<NoParams>,
) -> Response {
    let store = Arc::clone(&api.daemon.store);
    match tokio::task::spawn_blocking(move || store.backup()).await {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"portier.backup\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the backup task failed: {e}"),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockdownBody {
    on: bool,
    reason: Option<String>,
}

/// `POST /v1/lockdown {"on": bool, "reason": "..."}` (admin): switches the lockdown, durably;
/// switched on, every lock is sent its lock command at once.
async fn lockdown(
    State(api): State<Arc<Api>>,
    AdminQuery(NoParams {}): AdminQuery<NoParams>,
    body: axum::body::Bytes,
) -> Response {
    let body: LockdownBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"on\": true|false, \"reason\": \"...\"}}: {e}"),
            );
        }
    };
    match api
        .daemon
        .lockdown
        .switch(body.on, body.reason, "the admin API")
        .await
    {
        Ok(state) => Json(state).into_response(),
        Err(e @ crate::access::SwitchError::ReasonTooLong) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct EnrolParams {
    reader: String,
    wait: Option<String>,
}

/// How long `GET /v1/enrol` waits for a card unless told (`wait`), and at most.
const ENROL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
const ENROL_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(600);

/// `GET /v1/enrol?reader=ID[&wait=60s]` (admin): waits for the next card on enrolment reader
/// `ID` and answers it as each door reader would send it.
async fn enrol(
    State(api): State<Arc<Api>>,
    AdminQuery(params): AdminQuery<EnrolParams>,
) -> Response {
    let wait = match params.wait.as_deref().map(humantime::parse_duration) {
        None => ENROL_WAIT,
        Some(Ok(wait)) if !wait.is_zero() && wait <= ENROL_WAIT_MAX => wait,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "wait must be a duration from 1s to 10m, like \"60s\"".to_owned(),
            );
        }
    };
    let table = Arc::clone(&api.daemon.readers.borrow());
    let Some(reader) = table
        .values()
        .find(|r| r.config.id == params.reader)
        .cloned()
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no reader \"{}\" is in service", params.reader),
        );
    };
    if let Some(unit) = &reader.config.unit {
        return error(
            StatusCode::CONFLICT,
            format!(
                "reader \"{}\" is the door reader of unit \"{unit}\"; only a reader with \
                 enrol = true is read for enrolment",
                params.reader
            ),
        );
    }
    match tokio::time::timeout(wait, api.daemon.enrolment.next(&params.reader)).await {
        Ok(read) => {
            let config = api.daemon.config();
            Json(crate::readers::enrol::enrolled(
                &read,
                &reader.config,
                &config.readers,
            ))
            .into_response()
        }
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "no card was read on \"{}\" within {}",
                params.reader,
                humantime::format_duration(wait)
            ),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct MembersParams {
    at: Option<String>,
}

async fn members(
    State(api): State<Arc<Api>>,
    AdminQuery(params): AdminQuery<MembersParams>,
) -> Response {
    let daemon = &api.daemon;
    let at = match views::parse_at(params.at.as_deref(), clock::now()) {
        Ok(at) => at,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(snapshot) = daemon.current() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot yet: run portier sync",
        );
    };
    Json(snapshot.members_at(at)).into_response()
}
