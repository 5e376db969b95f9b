//! The installer page at `/`: the doors with their live state, the last decisions (card ids
//! masked) streamed over server-sent events, sync status and member errors, lock and reader
//! health, and a "pulse door" button — embedded in the binary.
//!
//! Who may see it:
//!
//! - Without `http.page_password_file`, only a browser on the box itself: the client address
//!   must be loopback **and** the `Host` header a loopback name (`127.0.0.1`, `[::1]`,
//!   `localhost`), so that a web site rebinding its own name to 127.0.0.1 cannot read the page
//!   or press its buttons from the installer's browser.
//! - With a password, anyone who logs in: a session cookie (`HttpOnly`, `SameSite=Strict`,
//!   `Secure` under TLS) that expires after [`SESSION_TTL`]; failed logins are limited per
//!   client address (10 a minute) and counted like failed admin tokens.
//!
//! Every state-changing request (the pulse, logout) carries the page's CSRF token in
//! `X-CSRF-Token`, compared in constant time. A pulse is a staff open through the engine,
//! recorded with `via: "page"`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::http_api::{Api, RateLimiter, error};
use super::web::{cookie, csrf_matches, escape, lock, random_token};
use crate::access::{Credential, Request};
use crate::locks::Latch;
use crate::store::EventRecord;

/// The page, its script and its style, as one file.
const INDEX: &str = include_str!("page/index.html");
/// The login form.
const LOGIN: &str = include_str!("page/login.html");
/// The session cookie's name.
const COOKIE: &str = "portier_page";
/// How long a login lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once (the oldest goes first).
const MAX_SESSIONS: usize = 64;
/// How many past decisions the page starts with.
const BACKLOG: usize = 30;

/// The page's sessions and login limiter.
pub(crate) struct Page {
    sessions: Mutex<HashMap<String, Session>>,
    logins: Mutex<RateLimiter>,
    /// The CSRF token of loopback use without a password (one per daemon run).
    local_csrf: String,
}

struct Session {
    csrf: String,
    expires: Instant,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            sessions: Mutex::default(),
            logins: Mutex::default(),
            local_csrf: random_token(),
        }
    }
}

/// Whether a request may see the page, and its CSRF token.
enum Access {
    Granted {
        csrf: String,
    },
    /// A password is set and the request has no valid session.
    Login,
    /// No password is set and the request is not from the box itself.
    LoopbackOnly,
}

/// True when the `Host` header names the box itself.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn access(api: &Api, peer: SocketAddr, headers: &HeaderMap) -> Access {
    if api.daemon.page_password().is_none() {
        return if peer.ip().is_loopback() && loopback_host(headers) {
            Access::Granted {
                csrf: api.page.local_csrf.clone(),
            }
        } else {
            Access::LoopbackOnly
        };
    }
    let Some(id) = cookie(headers, COOKIE) else {
        return Access::Login;
    };
    let mut sessions = lock(&api.page.sessions);
    let now = Instant::now();
    sessions.retain(|_, s| s.expires > now);
    match sessions.get(id) {
        Some(session) => Access::Granted {
            csrf: session.csrf.clone(),
        },
        None => Access::Login,
    }
}

fn loopback_only() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            "<!doctype html><meta charset=utf-8><title>Portier</title><p>The installer page \
             answers only on the box itself (http://127.0.0.1/). To reach it from the network, \
             set <code>http.page_password_file</code> and reload Portier.</p>",
        ),
    )
        .into_response()
}

fn login_page(status: StatusCode, message: &str, site: &str) -> Response {
    let html = LOGIN
        .replace("{{site}}", &escape(site))
        .replace("{{message}}", &escape(message));
    (status, no_store(), Html(html)).into_response()
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ]
}

/// `GET /`: the page, the login form, or a refusal.
pub(crate) async fn index(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let site = api.daemon.config().site.name.clone();
    match access(&api, peer, &headers) {
        Access::Granted { csrf } => {
            let logout = api.daemon.page_password().is_some();
            let html = INDEX
                .replace("{{site}}", &escape(&site))
                .replace("{{csrf}}", &csrf)
                .replace("{{logout}}", if logout { "" } else { "hidden" });
            (no_store(), Html(html)).into_response()
        }
        Access::Login => login_page(StatusCode::OK, "", &site),
        Access::LoopbackOnly => loopback_only(),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    password: String,
}

/// `POST /login` (form `password`): a session cookie and back to `/`.
pub(crate) async fn login(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let site = api.daemon.config().site.name.clone();
    let Some(password) = api.daemon.page_password() else {
        return loopback_only();
    };
    let now = Instant::now();
    if let Some(wait) = lock(&api.page.logins).blocked(peer.ip(), now) {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed logins from this address: try again in {wait} s."),
            &site,
        );
    }
    if !bool::from(form.password.as_bytes().ct_eq(password.as_bytes())) {
        lock(&api.page.logins).failed(peer.ip(), now);
        api.daemon
            .auth_failed("/login", Some(peer.ip()), "wrong installer page password");
        return login_page(StatusCode::UNAUTHORIZED, "Wrong password.", &site);
    }
    let id = random_token();
    {
        let mut sessions = lock(&api.page.sessions);
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                expires: now + SESSION_TTL,
            },
        );
    }
    tracing::info!(client = %peer.ip(), "installer page login");
    let secure = if api.daemon.config().http.tls_cert_file.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /logout` (with the CSRF token): ends the session.
pub(crate) async fn logout(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = checked(&api, peer, &headers) {
        return refusal.into_response();
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        lock(&api.page.sessions).remove(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("portier_page=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// Why a page request is refused.
enum Refusal {
    /// A password is set and there is no valid session.
    NoSession,
    /// No password is set and the request is not from the box itself.
    NotLoopback,
    /// The CSRF token is missing or wrong.
    Csrf,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NoSession => error(
                StatusCode::UNAUTHORIZED,
                "no installer page session: log in again",
            ),
            Refusal::NotLoopback => error(
                StatusCode::FORBIDDEN,
                "the installer page answers only on the box itself",
            ),
            Refusal::Csrf => error(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page",
            ),
        }
    }
}

/// A state-changing request: page access and the right CSRF token, or the refusal.
fn checked(api: &Api, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
    let csrf = match access(api, peer, headers) {
        Access::Granted { csrf } => csrf,
        Access::Login => return Err(Refusal::NoSession),
        Access::LoopbackOnly => return Err(Refusal::NotLoopback),
    };
    if csrf_matches(headers, &csrf) {
        Ok(())
    } else {
        api.daemon
            .auth_failed("/page", Some(peer.ip()), "missing or wrong CSRF token");
        Err(Refusal::Csrf)
    }
}

/// A unit as the page shows it.
#[derive(Serialize)]
struct UnitView {
    id: String,
    lock: Option<String>,
    /// What the lock last did.
    latch: Option<Latch>,
    /// The door contact, where there is one.
    door: Option<crate::doors::DoorStatus>,
    /// The unlock schedule.
    unlocked: Option<String>,
}

#[derive(Serialize)]
struct MemberErrors {
    id: String,
    name: String,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct PageState {
    status: super::status::StatusView,
    units: Vec<UnitView>,
    member_errors: Vec<MemberErrors>,
}

/// Refuses a read without page access.
fn readable(api: &Api, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
    match access(api, peer, headers) {
        Access::Granted { .. } => Ok(()),
        Access::Login => Err(Refusal::NoSession),
        Access::LoopbackOnly => Err(Refusal::NotLoopback),
    }
}

/// `GET /page/state`: everything the page shows but the decisions.
pub(crate) async fn state(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = readable(&api, peer, &headers) {
        return refusal.into_response();
    }
    let daemon = &api.daemon;
    let now = crate::clock::now();
    let config = daemon.config();
    let latches = daemon.locks.latches();
    let doors = daemon.doors.borrow().clone();
    let units = config
        .policy
        .units
        .iter()
        .map(|u| UnitView {
            id: u.id.clone(),
            lock: u.lock.clone(),
            latch: u
                .lock
                .as_ref()
                .and_then(|l| latches.get(l))
                .map(|l| *l.borrow()),
            door: doors.get(&u.id).map(|d| d.status),
            unlocked: u.unlocked.as_ref().map(ToString::to_string),
        })
        .collect();
    let member_errors = daemon
        .current()
        .map(|s| {
            s.members_at(now)
                .into_iter()
                .filter(|m| !m.errors.is_empty())
                .map(|m| MemberErrors {
                    id: m.id,
                    name: m.name,
                    errors: m.errors,
                })
                .collect()
        })
        .unwrap_or_default();
    let state = PageState {
        status: super::status::status(daemon, now),
        units,
        member_errors,
    };
    (no_store(), axum::Json(state)).into_response()
}

/// A decision as the page lists it: card ids in the reason masked.
fn decision(event: &EventRecord) -> Event {
    let data = serde_json::json!({
        "seq": event.seq,
        "time": event.time,
        "unit": event.unit,
        "member": event.member,
        "credential": event.credential_kind,
        "reader": event.reader,
        "via": event.via,
        "granted": event.granted,
        "opened": event.opened,
        "lock_error": event.lock_error,
        "reason": crate::site::masked_reason(&event.reason),
    });
    Event::default().event("decision").data(data.to_string())
}

/// `GET /page/events`: the last decisions, then each new decision and door event as it
/// happens (server-sent events `decision` and `door`).
pub(crate) async fn events(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = readable(&api, peer, &headers) {
        return refusal.into_response();
    }
    // Subscribed before the backlog is read, so nothing falls between them.
    let feed = api.feed.subscribe();
    let doors = api.door_notices.subscribe();
    let backlog = api.daemon.store.recent_events(BACKLOG).unwrap_or_default();
    let last = backlog.last().map_or(0, |e| e.seq);
    let first: Vec<Result<Event, Infallible>> = backlog.iter().map(|e| Ok(decision(e))).collect();
    let stopping = api.stopping.clone();
    let live = futures_util::stream::unfold(
        (feed, doors, last, stopping),
        |(mut feed, mut doors, last, mut stopping)| async move {
            loop {
                tokio::select! {
                    // The daemon stops: the stream ends, so the connection can close.
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; } => return None,
                    event = feed.recv() => match event {
                        Ok(event) if event.seq <= last => continue,
                        Ok(event) => return Some((Ok(decision(&event)), (feed, doors, last, stopping))),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    notice = doors.recv() => match notice {
                        Ok(notice) => {
                            let data = serde_json::json!({
                                "unit": notice.unit,
                                "event": notice.event.as_str(),
                                "time": notice.time,
                            });
                            let event = Event::default().event("door").data(data.to_string());
                            return Some((Ok(event), (feed, doors, last, stopping)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
        },
    );
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter(first), live);
    (
        no_store(),
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
        .into_response()
}

/// `POST /page/units/{unit}/pulse` (with the CSRF token): a staff open of the unit's lock.
pub(crate) async fn pulse(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(unit): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = checked(&api, peer, &headers) {
        return refusal.into_response();
    }
    let request = Request {
        unit,
        credential: Credential::Admin { member: None },
        reader: None,
        via: Some("page"),
    };
    match api.engine.handle(&request).await {
        Ok(outcome) => {
            tracing::info!(unit = %request.unit, client = %peer.ip(), opened = outcome.event.opened,
                "door pulsed from the installer page");
            axum::Json(serde_json::json!({
                "granted": outcome.event.granted,
                "opened": outcome.event.opened,
                "reason": crate::site::masked_reason(&outcome.event.reason),
                "lock_error": outcome.event.lock_error,
            }))
            .into_response()
        }
        Err(crate::access::NotDecided::UnknownUnit(unit)) => {
            error(StatusCode::NOT_FOUND, format!("unknown unit \"{unit}\""))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn only_loopback_names_count_as_the_box_itself() {
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(loopback_host(&host(ok)), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "192.168.1.5:8080",
            "",
        ] {
            assert!(!loopback_host(&host(bad)), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }
}
