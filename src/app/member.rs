//! The member page at `/m/`: members open the doors their plan allows from their phone,
//! logged in with their Cobot account (`[member_page]`).
//!
//! - `GET /m/` without a session: a "Log in with Cobot" link to `/m/login`, which sends the
//!   browser to Cobot's authorize page (authorization code with PKCE S256, scopes `openid`
//!   and `read_user`) with a fresh `state`, remembered here for 10 minutes and tied to the
//!   browser by a short cookie. Cobot comes back to `/auth/callback`: the code is exchanged
//!   (client id and secret in the form body), `GET /api/user` tells who logged in, and a user
//!   with a synced membership gets a session (`HttpOnly`, `SameSite=Lax`, `Secure` when the
//!   page is https) for `member_page.session_ttl`, kept in the store so it survives restarts
//!   and needs no Cobot until it ends: doors keep opening during an outage. A user without a
//!   membership is told so.
//! - `GET /m/` with a session: each unit with a lock that the engine grants the member now is
//!   a `<button data-unit>`; the others are listed with the reason. Their plan and validity.
//! - `POST /m/open/{unit}` (with the session's CSRF token): a door request through the engine
//!   as the member's app credential, recorded with `via: "member_page"`; the answer is shown
//!   in the page's `role="status"` element. Limited per session and per client address.
//! - `POST /m/logout` ends the session; `POST /v1/admin/member-sessions/revoke` ends a
//!   user's (or every) session.
//!
//! The page is an installable web app (manifest, icon, a service worker that never touches
//! an open). No member data ever goes into a URL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::http_api::{AdminQuery, Api, error};
use super::web::{cookie, csrf_matches, escape, lock, random_token};
use crate::access::{Credential, Request};
use crate::config::MemberPageConfig;
use crate::store::MemberSession;

const PAGE: &str = include_str!("member/index.html");
const LOGIN: &str = include_str!("member/login.html");
const MANIFEST: &str = include_str!("member/manifest.webmanifest");
const WORKER: &str = include_str!("member/sw.js");
const ICON: &str = include_str!("member/icon.svg");

/// The session cookie.
const COOKIE: &str = "portier_member";
/// The cookie that ties a login attempt to the browser that started it.
const LOGIN_COOKIE: &str = "portier_login";
/// How long a login attempt may take at Cobot.
const ATTEMPT_TTL: Duration = Duration::from_secs(600);
/// The most login attempts remembered at once (the oldest goes first).
const MAX_ATTEMPTS: usize = 256;
/// Opens allowed per session, and per client address, in [`OPEN_WINDOW`].
const OPENS_PER_SESSION: u32 = 10;
const OPENS_PER_ADDRESS: u32 = 30;
const OPEN_WINDOW: Duration = Duration::from_secs(60);
/// How far ahead, and how finely, the page looks for a closed door's next opening.
const NEXT_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);
const NEXT_STEP: Duration = Duration::from_secs(15 * 60);
/// The name events give the member page.
const VIA: &str = "member_page";

/// Login attempts in flight and the open limiter.
#[derive(Default)]
pub(crate) struct Members {
    attempts: Mutex<HashMap<String, (String, Instant)>>,
    opens: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Members {
    /// Counts an open for `key`; false when over `max` in the window.
    fn allow(&self, key: String, max: u32, now: Instant) -> bool {
        let mut opens = lock(&self.opens);
        opens.retain(|_, (start, _)| now.saturating_duration_since(*start) < OPEN_WINDOW);
        let entry = opens.entry(key).or_insert((now, 0));
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= max
    }
}

fn headers_no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// The member page's settings (`None` when it is off: answer [`off`]).
fn settings(api: &Api) -> Option<MemberPageConfig> {
    api.daemon.config().member_page.clone()
}

/// The answer while the member page is off.
fn off() -> Response {
    error(StatusCode::NOT_FOUND, "the member page is not enabled")
}

/// `Set-Cookie` attributes for the page's cookies.
fn cookie_attributes(settings: &MemberPageConfig) -> &'static str {
    if settings.public_url.scheme() == "https" {
        "; Path=/; HttpOnly; SameSite=Lax; Secure"
    } else {
        "; Path=/; HttpOnly; SameSite=Lax"
    }
}

fn with_cookie(mut response: Response, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The session of the request, if any and not expired.
fn session(api: &Api, headers: &HeaderMap) -> Option<(String, MemberSession)> {
    let value = cookie(headers, COOKIE)?;
    match api.daemon.store.member_session(value, crate::clock::now()) {
        Ok(found) => found.map(|s| (value.to_owned(), s)),
        Err(e) => {
            tracing::error!(error = %e, "cannot read member sessions");
            None
        }
    }
}

fn login_page(status: StatusCode, site: &str, message: &str) -> Response {
    let html = LOGIN
        .replace("{{site}}", &escape(site))
        .replace("{{message}}", &escape(message));
    (status, headers_no_store(), Html(html)).into_response()
}

/// `GET /m/`: the doors, or the way to log in.
pub(crate) async fn page(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if settings(&api).is_none() {
        return off();
    }
    let site = api.daemon.config().site.name.clone();
    let Some((_, session)) = session(&api, &headers) else {
        return login_page(StatusCode::OK, &site, "");
    };
    let user = &session.user_id;
    let config = api.daemon.config();
    let mut doors = String::new();
    let mut closed = String::new();
    for unit in config.policy.units.iter().filter(|u| u.lock.is_some()) {
        match api.engine.preview(&unit.id, user) {
            Some((true, _)) => doors.push_str(&format!(
                "<li><button type=\"button\" data-unit=\"{id}\">Open {id}</button></li>",
                id = escape(&unit.id)
            )),
            Some((false, reason)) => {
                let next = match api
                    .engine
                    .next_grant(&unit.id, user, NEXT_HORIZON, NEXT_STEP)
                {
                    Some(at) => format!(
                        "opens for you {}",
                        at.with_timezone(&config.site.timezone)
                            .format("%a %-d %b %H:%M")
                    ),
                    None => "no opening for you in the next 7 days".to_owned(),
                };
                closed.push_str(&format!(
                    "<li><strong>{}</strong>: {} <span class=\"next\">({next})</span></li>",
                    escape(&unit.id),
                    escape(&reason)
                ));
            }
            None => {}
        }
    }
    if doors.is_empty() {
        doors.push_str("<li class=\"none\">No door opens for you right now.</li>");
    }
    if !closed.is_empty() {
        closed =
            format!("<h2 class=\"muted\">Not open for you now</h2><ul id=\"closed\">{closed}</ul>");
    }
    let plan = api
        .engine
        .current()
        .and_then(|s| {
            let m = s.member_by_user(user)?;
            s.member_at(m, crate::clock::now())
        })
        .map(|m| {
            let until = m
                .valid_until
                .map(|d| format!(", valid until {d}"))
                .unwrap_or_default();
            format!(
                "{}: {}{until}",
                escape(&m.name),
                escape(m.plan.as_deref().unwrap_or("no plan in force"))
            )
        })
        .unwrap_or_default();
    let html = PAGE
        .replace("{{site}}", &escape(&site))
        .replace("{{csrf}}", &session.csrf)
        .replace("{{member}}", &plan)
        .replace("{{doors}}", &doors)
        .replace("{{closed}}", &closed)
        .replace(
            "{{expires}}",
            &session.expires.format("%Y-%m-%d").to_string(),
        );
    (headers_no_store(), Html(html)).into_response()
}

/// The Cobot login client of the configuration in force, or the page that says why there is
/// none (boxed: a response is large).
fn login_client(
    api: &Api,
    settings: &MemberPageConfig,
) -> Result<crate::cobot::member_login::MemberLogin, Box<Response>> {
    let config = api.daemon.config();
    let secret = crate::config::read_secret(&settings.client_secret_file).map_err(|e| {
        tracing::error!(error = %e, "member_page.client_secret_file unusable: members cannot log in");
        Box::new(login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &config.site.name,
            "Logging in is not set up on this gateway yet; ask the space's staff.",
        ))
    })?;
    crate::cobot::member_login::MemberLogin::new(
        &config.cobot.www_url,
        &settings.client_id,
        secret,
        &settings.url("auth/callback"),
        config.cobot.request_timeout,
    )
    .map_err(|e| Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
}

/// `GET /m/login`: to Cobot's authorize page, with a new attempt.
pub(crate) async fn login(State(api): State<Arc<Api>>) -> Response {
    let Some(settings) = settings(&api) else {
        return off();
    };
    let client = match login_client(&api, &settings) {
        Ok(client) => client,
        Err(refusal) => return *refusal,
    };
    let attempt = client.start();
    let now = Instant::now();
    {
        let mut attempts = lock(&api.members.attempts);
        attempts.retain(|_, (_, at)| now.saturating_duration_since(*at) < ATTEMPT_TTL);
        if attempts.len() >= MAX_ATTEMPTS
            && let Some(oldest) = attempts
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            attempts.remove(&oldest);
        }
        attempts.insert(attempt.state.clone(), (attempt.verifier, now));
    }
    let response = Redirect::to(attempt.url.as_str()).into_response();
    with_cookie(
        response,
        &format!(
            "{LOGIN_COOKIE}={}{}; Max-Age={}",
            attempt.state,
            cookie_attributes(&settings),
            ATTEMPT_TTL.as_secs()
        ),
    )
}

#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/callback`: Cobot's answer to a login attempt.
pub(crate) async fn callback(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let Some(settings) = settings(&api) else {
        return off();
    };
    let config = api.daemon.config();
    let site = config.site.name.clone();
    let again = |status, message: &str| login_page(status, &site, message);
    if let Some(why) = answer.error {
        tracing::info!(error = %why.chars().take(64).collect::<String>(), "member login declined at Cobot");
        return again(
            StatusCode::UNAUTHORIZED,
            "Cobot did not log you in. Try again.",
        );
    }
    let (Some(code), Some(state)) = (answer.code, answer.state) else {
        return again(
            StatusCode::BAD_REQUEST,
            "That login link is incomplete. Try again.",
        );
    };
    // The same browser that started the attempt, and an attempt we made.
    let same_browser = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
    // Only the browser that started it may use (and so use up) an attempt.
    let attempt = same_browser
        .then(|| lock(&api.members.attempts).remove(&state))
        .flatten();
    let Some((verifier, started)) = attempt else {
        return again(
            StatusCode::BAD_REQUEST,
            "That login has expired or was started elsewhere. Try again.",
        );
    };
    if started.elapsed() > ATTEMPT_TTL {
        return again(
            StatusCode::BAD_REQUEST,
            "That login has expired. Try again.",
        );
    }
    let client = match login_client(&api, &settings) {
        Ok(client) => client,
        Err(refusal) => return *refusal,
    };
    let access = match client.exchange(&code, verifier).await {
        Ok(access) => access,
        Err(why) => {
            tracing::warn!(%why, "member login: Cobot did not exchange the code");
            return again(
                StatusCode::BAD_GATEWAY,
                "Cobot could not be asked who you are right now. Try again in a moment.",
            );
        }
    };
    let user = match api.users.user(&access).await {
        Ok(user) => user.id,
        Err(e) => {
            tracing::warn!(error = %e, "member login: Cobot did not say who logged in");
            return again(
                StatusCode::BAD_GATEWAY,
                "Cobot could not be asked who you are right now. Try again in a moment.",
            );
        }
    };
    let known = api
        .engine
        .current()
        .is_some_and(|s| s.member_by_user(&user).is_some());
    if !known {
        tracing::info!(%user, "member login of a Cobot user without a membership here");
        return again(
            StatusCode::FORBIDDEN,
            &format!(
                "Your Cobot account has no membership at {site} (or it is not synced yet). \
                 Ask the space's staff."
            ),
        );
    }
    let now = crate::clock::now();
    let ttl = chrono::Duration::from_std(settings.session_ttl).unwrap_or(chrono::Duration::MAX);
    let value = random_token();
    let session = MemberSession {
        user_id: user.clone(),
        created: now,
        expires: now
            .checked_add_signed(ttl)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        csrf: random_token(),
    };
    if let Err(e) = api.daemon.store.save_member_session(&value, &session).await {
        tracing::error!(error = %e, "cannot keep a member session");
        return again(StatusCode::INTERNAL_SERVER_ERROR, "Try again.");
    }
    tracing::info!(%user, "member logged in to the member page");
    let attributes = cookie_attributes(&settings);
    let response = Redirect::to("/m/").into_response();
    let response = with_cookie(
        response,
        &format!(
            "{COOKIE}={value}{attributes}; Max-Age={}",
            settings.session_ttl.as_secs()
        ),
    );
    with_cookie(response, &format!("{LOGIN_COOKIE}={attributes}; Max-Age=0"))
}

/// Checks the CSRF token of a state-changing request against the session's.
fn csrf_ok(headers: &HeaderMap, session: &MemberSession) -> bool {
    csrf_matches(headers, &session.csrf)
}

/// `POST /m/open/{unit}`: a member opens a door.
pub(crate) async fn open(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(unit): Path<String>,
    headers: HeaderMap,
) -> Response {
    if settings(&api).is_none() {
        return off();
    }
    let Some((value, session)) = session(&api, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "your login has ended: log in again",
        );
    };
    if !csrf_ok(&headers, &session) {
        api.daemon
            .auth_failed("/m/open", Some(peer.ip()), "missing or wrong CSRF token");
        return error(StatusCode::FORBIDDEN, "reload the page and try again");
    }
    let now = Instant::now();
    let session_key = format!(
        "s:{}",
        crate::store::token_hash(&value)
            .map(|b| format!("{b:02x}"))
            .concat()
    );
    if !api.members.allow(session_key, OPENS_PER_SESSION, now)
        || !api
            .members
            .allow(format!("a:{}", peer.ip()), OPENS_PER_ADDRESS, now)
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many opens in a minute: wait a little",
        );
    }
    let request = Request {
        unit,
        credential: Credential::App(session.user_id.clone()),
        reader: None,
        via: Some(VIA),
    };
    match api.engine.handle(&request).await {
        Ok(outcome) => {
            let event = &outcome.event;
            let status = if event.granted {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            (
                status,
                Json(serde_json::json!({
                    "granted": event.granted,
                    "opened": event.opened,
                    "reason": crate::site::masked_reason(&event.reason),
                    "lock_error": event.lock_error,
                })),
            )
                .into_response()
        }
        Err(crate::access::NotDecided::UnknownUnit(unit)) => {
            error(StatusCode::NOT_FOUND, format!("unknown door \"{unit}\""))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e:?}")),
    }
}

/// `POST /m/logout`: ends the session.
pub(crate) async fn logout(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let Some(settings) = settings(&api) else {
        return off();
    };
    if let Some((value, session)) = session(&api, &headers) {
        if !csrf_ok(&headers, &session) {
            return error(StatusCode::FORBIDDEN, "reload the page and try again");
        }
        if let Err(e) = api.daemon.store.end_member_session(&value) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    }
    let response = StatusCode::NO_CONTENT.into_response();
    with_cookie(
        response,
        &format!("{COOKIE}={}; Max-Age=0", cookie_attributes(&settings)),
    )
}

/// `GET /m/manifest.webmanifest`, `/m/sw.js`, `/m/icon.svg`.
pub(crate) async fn manifest() -> Response {
    (
        [(header::CONTENT_TYPE, "application/manifest+json")],
        MANIFEST,
    )
        .into_response()
}

pub(crate) async fn worker() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        WORKER,
    )
        .into_response()
}

pub(crate) async fn icon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    user: Option<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /v1/admin/member-sessions/revoke {"user": "<cobot user id>"}` or `{"all": true}`
/// (admin): ends member page sessions.
pub(crate) async fn revoke(
    State(api): State<Arc<Api>>,
    AdminQuery(super::http::NoParams {}): AdminQuery<super::http::NoParams>,
    body: axum::body::Bytes,
) -> Response {
    let body: RevokeBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be {{\"user\": \"<cobot user id>\"}} or {{\"all\": true}}: {e}"
                ),
            );
        }
    };
    let user = match (body.user, body.all) {
        (Some(user), false) => Some(user),
        (None, true) => None,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "name one \"user\" or say \"all\": true",
            );
        }
    };
    match api.daemon.store.revoke_member_sessions(user.as_deref()) {
        Ok(revoked) => {
            tracing::warn!(
                user = user.as_deref().unwrap_or("(all)"),
                revoked,
                "member page sessions revoked"
            );
            Json(serde_json::json!({ "revoked": revoked })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
