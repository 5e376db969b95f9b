//! What the HTTP handlers share: the handler state ([`Api`]), error answers, the admin token
//! check, and the failed-attempt limiter of app opens.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::state::Daemon;
use crate::views::ErrorView;

/// Failed attempts allowed per client address and minute.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);

/// What the handlers share.
pub(crate) struct Api {
    /// The daemon's state.
    pub daemon: Arc<Daemon>,
    /// The door pipeline.
    pub engine: Arc<crate::access::Engine>,
    /// Failed app-open attempts per client address.
    pub limiter: std::sync::Mutex<RateLimiter>,
    /// Asks Cobot's `/api/user` who an app token belongs to.
    pub users: crate::cobot::CobotClient,
    /// The installer page's sessions.
    pub page: super::page::Page,
    /// The member page's login attempts and open limits.
    pub members: super::member::Members,
    /// Every durable event (the installer page streams them).
    pub feed: tokio::sync::broadcast::Sender<Arc<crate::store::EventRecord>>,
    /// Door sensors' events (the installer page streams them).
    pub door_notices: tokio::sync::broadcast::Sender<crate::doors::DoorNotice>,
    /// Turns true when the daemon stops (event streams end then).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// An error answer: `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorView {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The bearer token of a request, if the header is well-formed.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// True when the request carries the admin token (compared in constant time).
pub(crate) fn is_admin(daemon: &Daemon, headers: &HeaderMap) -> bool {
    match (daemon.admin_token(), bearer(headers)) {
        (Some(expected), Some(given)) => bool::from(given.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    }
}

/// Why a request failed the admin check, for the log (never the token).
pub(crate) fn admin_refusal(daemon: &Daemon, headers: &HeaderMap) -> &'static str {
    match (daemon.admin_token(), bearer(headers)) {
        (None, _) => "no usable admin token is configured (http.admin_token_file)",
        (Some(_), None) => "no bearer token",
        (Some(_), Some(_)) => "wrong admin token",
    }
}

pub(crate) fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "missing or wrong admin token")
}

/// The query of an admin request: the admin token is checked first (401), then the query is
/// parsed (400 with the reason).
pub(crate) struct AdminQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<Arc<Api>>
    for AdminQuery<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        api: &Arc<Api>,
    ) -> Result<Self, Response> {
        if !is_admin(&api.daemon, &parts.headers) {
            // The admin routes with a query have no path parameters: the path is the route.
            let endpoint = parts.uri.path();
            let client = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip());
            api.daemon
                .auth_failed(endpoint, client, admin_refusal(&api.daemon, &parts.headers));
            return Err(unauthorized());
        }
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(query)| AdminQuery(query))
            .map_err(bad_query)
    }
}

pub(crate) fn bad_query(rejection: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, rejection.body_text())
}

/// Counts failed (401) app-open attempts per client address in fixed one-minute windows.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    failures: HashMap<IpAddr, (Instant, u32)>,
}

impl RateLimiter {
    /// Seconds until `ip` may try again, if it is blocked now.
    pub(crate) fn blocked(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        self.failures
            .retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
        let (start, count) = self.failures.get(&ip)?;
        (*count >= MAX_FAILURES)
            .then(|| (WINDOW.saturating_sub(now.saturating_duration_since(*start))).as_secs() + 1)
    }

    /// Records a failed attempt from `ip`.
    pub(crate) fn failed(&mut self, ip: IpAddr, now: Instant) {
        let entry = self.failures.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_a_minute_block_an_address_until_the_minute_is_over() {
        let mut limiter = RateLimiter::default();
        let ip: IpAddr = [192, 0, 2, 7].into();
        let other: IpAddr = [192, 0, 2, 8].into();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(limiter.blocked(ip, t0), None, "attempt {i}");
            limiter.failed(ip, t0 + Duration::from_secs(u64::from(i)));
        }
        assert!(limiter.blocked(ip, t0 + Duration::from_secs(30)).is_some());
        assert_eq!(limiter.blocked(other, t0 + Duration::from_secs(30)), None);
        assert_eq!(limiter.blocked(ip, t0 + Duration::from_secs(61)), None);
    }
}
