//! The door endpoints: app opens with a Cobot user token, remote opens by staff, and the
//! event log.
//!
//! App opens answer in a fixed order: 429 (too many failed attempts from this address), 401
//! (token unknown), 404 (unknown unit), 403 (denied), 409 (unit without lock), 502 (granted but
//! the lock failed). Every open answer says whether the door opened (`opened`, and
//! `lock_error` when a granted door stayed shut). The token is checked with Cobot's
//! `/api/user` first; only when Cobot cannot be reached does the local cache of token hashes
//! answer, so a member seen before still gets in during an outage (for
//! `cobot.token_cache_ttl`).

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::http_api::{AdminQuery, Api, admin_refusal, bearer, error, is_admin, unauthorized};
use crate::access::{AtTheLock, Credential, NotDecided, Outcome, Request};
use crate::store::token_hash;

/// How long an app open waits for Cobot's `/api/user` before using the cache.
const USER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Events per page by default, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The answer to an open: a view of the outcome's record.
#[derive(Debug, Serialize)]
struct OpenAnswer<'a> {
    granted: bool,
    unit: &'a str,
    member: Option<&'a str>,
    reason: &'a str,
    decision_id: &'a str,
    /// Whether the door opened (false when denied, without a lock, or the lock failed).
    opened: bool,
    /// Why a granted door did not open, in a word (`no_lock`, `unreachable`, `timeout`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    lock_error: Option<&'a str>,
    /// `opened`, or `extended` when the door was already open.
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<crate::locks::Actuation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn answer(outcome: &Outcome) -> Response {
    let event = &outcome.event;
    let body = |error: Option<String>| OpenAnswer {
        granted: event.granted,
        unit: &event.unit,
        member: event.member.as_deref(),
        reason: &event.reason,
        decision_id: &event.decision_id,
        opened: event.opened,
        lock_error: event.lock_error.as_deref(),
        lock: match &outcome.lock {
            AtTheLock::Done(done) => Some(*done),
            _ => None,
        },
        error,
    };
    if let Err(e) = &outcome.stored {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(body(Some(format!("the event could not be recorded: {e}")))),
        )
            .into_response();
    }
    let (status, error) = match &outcome.lock {
        AtTheLock::NotGranted => (StatusCode::FORBIDDEN, None),
        AtTheLock::NoLock => (
            StatusCode::CONFLICT,
            Some(format!("unit {} has no lock to open", event.unit)),
        ),
        AtTheLock::Done(_) => (StatusCode::OK, None),
        AtTheLock::Failed(e) => (StatusCode::BAD_GATEWAY, Some(e.to_string())),
    };
    (status, Json(body(error))).into_response()
}

/// Decides and carries out an open, and renders its outcome.
async fn open(api: &Api, unit: String, credential: Credential) -> Response {
    let request = Request {
        unit,
        credential,
        reader: None,
        via: None,
    };
    match api.engine.handle(&request).await {
        Ok(outcome) => answer(&outcome),
        Err(e) => not_decided(e),
    }
}

fn not_decided(e: NotDecided) -> Response {
    match e {
        NotDecided::UnknownUnit(unit) => {
            error(StatusCode::NOT_FOUND, format!("unknown unit \"{unit}\""))
        }
        NotDecided::UnknownMember(member) => error(
            StatusCode::BAD_REQUEST,
            format!("unknown member \"{member}\": not a synced member"),
        ),
    }
}

/// The Cobot user an app token belongs to: Cobot first, the cache when Cobot is unreachable.
async fn resolve_user(api: &Api, token: &str) -> Option<String> {
    let daemon = &api.daemon;
    let hash = token_hash(token);
    let now = crate::clock::now();
    let asked = tokio::time::timeout(USER_LOOKUP_TIMEOUT, api.users.user(token)).await;
    let unreachable = match asked {
        Ok(Ok(user)) => {
            if let Err(e) = daemon.store.remember_app_token(hash, &user.id, now) {
                tracing::warn!(error = %e, "cannot cache the app token");
            }
            return Some(user.id);
        }
        Ok(Err(e)) => e.is_unreachable(),
        Err(_) => true,
    };
    if !unreachable {
        // Cobot says the token is not (or no longer) valid: it must not open doors offline
        // either.
        if let Err(e) = daemon.store.forget_app_token(&hash) {
            tracing::warn!(error = %e, "cannot drop the app token from the cache");
        }
        return None;
    }
    let ttl = daemon.config().cobot.token_cache_ttl;
    match daemon.store.app_token_user(&hash, now, ttl) {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the app token cache");
            None
        }
    }
}

/// `POST /v1/units/{unit}/open` with a Cobot user's bearer token.
pub(crate) async fn app_open(
    State(api): State<Arc<Api>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(unit): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ip = client.ip();
    let blocked = api
        .limiter
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .blocked(ip, Instant::now());
    if let Some(seconds) = blocked {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed attempts from {ip}: try again in {seconds} s"),
        );
    }
    let user = match bearer(&headers) {
        Some(token) => resolve_user(&api, token).await,
        None => None,
    };
    let Some(user) = user else {
        api.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed(ip, Instant::now());
        let why = if bearer(&headers).is_some() {
            "unknown Cobot token"
        } else {
            "no bearer token"
        };
        api.daemon
            .auth_failed("/v1/units/{unit}/open", Some(ip), why);
        return error(
            StatusCode::UNAUTHORIZED,
            "unknown or missing Cobot token: log in to the app again",
        );
    };
    open(&api, unit, Credential::App(user)).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminOpenBody {
    member: Option<String>,
}

/// `POST /v1/admin/units/{unit}/open`: a remote open by staff, optionally for a member.
pub(crate) async fn admin_open(
    State(api): State<Arc<Api>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(unit): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_admin(&api.daemon, &headers) {
        api.daemon.auth_failed(
            "/v1/admin/units/{unit}/open",
            Some(client.ip()),
            admin_refusal(&api.daemon, &headers),
        );
        return unauthorized();
    }
    let body: AdminOpenBody = if body.iter().all(u8::is_ascii_whitespace) {
        AdminOpenBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be {{\"member\": \"<id or email>\"}} or empty: {e}"),
                );
            }
        }
    };
    open(
        &api,
        unit,
        Credential::Admin {
            member: body.member,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsParams {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/events?after=SEQ&limit=N`.
pub(crate) async fn events(
    State(api): State<Arc<Api>>,
    AdminQuery(params): AdminQuery<EventsParams>,
) -> Response {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    match api
        .daemon
        .store
        .events_after(params.after.unwrap_or(0), limit)
    {
        Ok(events) => Json(serde_json::json!({ "events": events })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
