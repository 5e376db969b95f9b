//! The fake Cobot's request handling: record, inject faults, check the bearer, answer.
//!
//! One fallback handler routes by hand, so that recording and faults apply to every path,
//! including unknown ones.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use serde_json::{Value, json};

use super::{Fault, RecordedCheckIn, RecordedRequest, Shared, lock};

pub(super) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json_answer(status: StatusCode, body: impl Into<String>) -> Response {
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn error(status: StatusCode, message: &str) -> Response {
    json_answer(status, json!({ "errors": { "base": message } }).to_string())
}

fn bearer_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let bearer = bearer_of(&headers);
    let fault = {
        let mut state = lock(&shared);
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path_and_query: uri
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or_else(|| path.clone()),
            bearer: bearer.clone(),
        });
        state.take_fault(&path)
    };
    let normal = || answer(&shared, &method, &uri, bearer.as_deref(), &body);
    match fault {
        None => normal(),
        Some(Fault::Delay(wait)) => {
            tokio::time::sleep(wait).await;
            normal()
        }
        Some(Fault::AnswerLate(wait)) => {
            let response = normal();
            tokio::time::sleep(wait).await;
            response
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, "injected fault")
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            resp
        }
        Some(Fault::RateLimitedRaw { retry_after }) => {
            let now = lock(&shared).fixture.now;
            let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                resp.headers_mut().insert(header::RETRY_AFTER, value);
            }
            let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            if let Ok(value) = HeaderValue::from_str(&date) {
                resp.headers_mut().insert(header::DATE, value);
            }
            resp
        }
        Some(Fault::Unauthorized) => error(StatusCode::UNAUTHORIZED, "invalid token"),
        Some(Fault::Html) => {
            let page = "<!DOCTYPE html><html><body><h1>We'll be back soon</h1></body></html>";
            let mut resp = (StatusCode::OK, page).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        }
        Some(Fault::EmptyList) => json_answer(StatusCode::OK, "[]"),
        Some(Fault::TruncatedJson) => {
            let full = axum::body::to_bytes(normal().into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let mut cut = full.slice(..full.len() / 2).to_vec();
            if cut.is_empty() {
                cut = b"[{\"id\": \"0c4f".to_vec();
            }
            json_answer(StatusCode::OK, String::from_utf8_lossy(&cut).into_owned())
        }
    }
}

/// The normal answer to a request.
fn answer(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    bearer: Option<&str>,
    body: &Bytes,
) -> Response {
    let mut state = lock(shared);
    let path = uri.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let admin_ok = bearer == Some(state.fixture.admin_token.as_str());
    let space_list = matches!(
        path,
        "/api/plans"
            | "/api/memberships"
            | "/api/custom_fields"
            | "/api/check_in_tokens"
            | "/api/bookings"
    );
    match (method.as_str(), segments.as_slice()) {
        ("GET", _) if space_list => match state.bodies.get(path) {
            Some(_) if !admin_ok => error(StatusCode::UNAUTHORIZED, "invalid token"),
            Some(body) => json_answer(StatusCode::OK, body.to_string()),
            None => error(StatusCode::NOT_FOUND, "not found"),
        },
        ("POST", ["api", "memberships", id, "work_sessions"]) => {
            if !admin_ok {
                return error(StatusCode::UNAUTHORIZED, "invalid token");
            }
            let known = state
                .fixture
                .memberships
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m.get("id") == Some(&json!(id))));
            if !known {
                return error(StatusCode::NOT_FOUND, "membership not found");
            }
            let at = state.fixture.now;
            state.check_ins.push(RecordedCheckIn {
                membership_id: (*id).to_owned(),
                at,
            });
            let n = state.check_ins.len();
            json_answer(StatusCode::CREATED, check_in_json(id, n, at).to_string())
        }
        ("GET", ["api", "memberships", id, "check_ins"]) => {
            if !admin_ok {
                return error(StatusCode::UNAUTHORIZED, "invalid token");
            }
            let items: Vec<Value> = state
                .check_ins
                .iter()
                .enumerate()
                .filter(|(_, c)| c.membership_id == *id)
                .map(|(i, c)| check_in_json(id, i + 1, c.at))
                .collect();
            json_answer(StatusCode::OK, Value::Array(items).to_string())
        }
        ("GET", ["api", "user"]) => match bearer.and_then(|b| state.fixture.member_tokens.get(b)) {
            Some(user) => json_answer(
                StatusCode::OK,
                json!({ "id": user, "email": format!("{user}@example.com"),
                            "memberships": [], "admin_of": [] })
                .to_string(),
            ),
            None => error(StatusCode::UNAUTHORIZED, "invalid token"),
        },
        ("GET", ["api", "spaces", sub]) if *sub == state.fixture.subdomain => {
            let f = &state.fixture;
            let space = json!({ "id": f.space_id, "name": "Co-Up", "subdomain": f.subdomain,
                                "url": format!("https://{}.cobot.me", f.subdomain),
                                "time_zone_name": "Europe/Berlin" });
            json_answer(StatusCode::OK, space.to_string())
        }
        ("POST", ["api", "access_tokens", token, "space"]) => {
            let f = &state.fixture;
            let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if *token != f.oauth.user_token || bearer != Some(f.oauth.user_token.as_str()) {
                error(StatusCode::UNAUTHORIZED, "invalid token")
            } else if sent.get("space_id") != Some(&json!(f.space_id)) {
                error(StatusCode::UNPROCESSABLE_ENTITY, "unknown space")
            } else {
                let answer = json!({ "scope": ["read", "write"], "token": f.admin_token,
                                     "client_id": f.oauth.client_id });
                json_answer(StatusCode::OK, answer.to_string())
            }
        }
        ("GET", ["api", "navigation_links"]) if admin_ok => json_answer(
            StatusCode::OK,
            Value::Array(state.navigation_links.clone()).to_string(),
        ),
        ("POST", ["api", "navigation_links"]) if admin_ok => {
            let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let field = |k: &str| sent.get(k).and_then(Value::as_str).unwrap_or_default();
            if field("section").is_empty()
                || field("label").is_empty()
                || field("iframe_url").is_empty()
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "section, label and iframe_url required",
                );
            }
            state.member_logins += 1;
            let link = json!({ "id": format!("nav-{}", state.member_logins),
                               "section": field("section"), "label": field("label"),
                               "iframe_url": field("iframe_url"), "user_editable": false });
            state.navigation_links.push(link.clone());
            json_answer(StatusCode::CREATED, link.to_string())
        }
        ("DELETE", ["api", "navigation_links", id]) if admin_ok => {
            let before = state.navigation_links.len();
            state
                .navigation_links
                .retain(|l| l.get("id").and_then(Value::as_str) != Some(*id));
            if state.navigation_links.len() == before {
                error(StatusCode::NOT_FOUND, "not found")
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
        ("GET" | "POST" | "DELETE", ["api", "navigation_links", ..]) => {
            error(StatusCode::UNAUTHORIZED, "invalid token")
        }
        ("GET", ["oauth", "authorize"]) => authorize(&mut state, uri),
        ("POST", ["oauth", "access_token"]) => access_token(&mut state, body),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn check_in_json(membership_id: &str, n: usize, at: chrono::DateTime<chrono::Utc>) -> Value {
    let until = at + chrono::Duration::hours(12);
    json!({
        "id": format!("{n:010x}"),
        "membership": { "id": membership_id, "name": "" },
        "membership_id": membership_id,
        "valid_from": fixtures_time(at),
        "valid_until": fixtures_time(until),
    })
}

fn fixtures_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y/%m/%d %H:%M:%S +0000").to_string()
}

/// `GET /oauth/authorize` of the member login app: without `email`, a form asking which member
/// logs in (as Cobot's login page would); with it, a code for that member's user, 302 back.
fn member_authorize(state: &mut super::State, q: &HashMap<String, String>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let scopes: Vec<&str> = get("scope").split(' ').collect();
    if !scopes.contains(&"openid") || !scopes.contains(&"read_user") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_scope: openid and read_user",
        );
    }
    if get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").is_empty()
        || get("state").is_empty()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "code flow with PKCE S256 and a state required",
        );
    }
    let Ok(mut back) = url::Url::parse(get("redirect_uri")) else {
        return error(StatusCode::BAD_REQUEST, "bad redirect_uri");
    };
    let email = get("email");
    if email.is_empty() {
        let hidden: String = q
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=hidden name=\"{}\" value=\"{}\">",
                    html(k),
                    html(v)
                )
            })
            .collect();
        let page = format!(
            "<!doctype html><meta charset=utf-8><title>Cobot login</title>\
             <form method=get action=/oauth/authorize>{hidden}\
             <label for=email>Email</label><input id=email name=email type=email>\
             <button id=allow type=submit>Log in and allow</button></form>"
        );
        let mut resp = (StatusCode::OK, page).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return resp;
    }
    let user = state.fixture.memberships.as_array().and_then(|ms| {
        ms.iter().find_map(|m| {
            let user = m.get("user")?;
            (user.get("email")?.as_str()? == email)
                .then(|| user.get("id")?.as_str().map(str::to_owned))?
        })
    });
    let Some(user) = user else {
        return error(StatusCode::UNAUTHORIZED, "no Cobot account with that email");
    };
    state.member_logins += 1;
    let code = format!("member-code-{}", state.member_logins);
    state.member_codes.insert(
        code.clone(),
        (
            user,
            get("code_challenge").to_owned(),
            get("redirect_uri").to_owned(),
        ),
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", get("state"));
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(location) = HeaderValue::from_str(back.as_str()) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp
}

/// `POST /oauth/access_token` of the member login app: the code once, with its PKCE verifier
/// and redirect URI; the token is one `/api/user` then knows.
fn member_access_token(state: &mut super::State, form: &HashMap<String, String>) -> Response {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let invalid = |e: &str| json_answer(StatusCode::BAD_REQUEST, json!({ "error": e }).to_string());
    if get("client_secret") != state.fixture.oauth.member_client_secret {
        return invalid("invalid_client");
    }
    let Some((user, challenge, redirect)) = state.member_codes.remove(get("code")) else {
        return invalid("invalid_grant");
    };
    let verifier = PkceCodeVerifier::new(get("code_verifier").to_owned());
    if PkceCodeChallenge::from_code_verifier_sha256(&verifier).as_str() != challenge
        || get("redirect_uri") != redirect
        || get("grant_type") != "authorization_code"
    {
        return invalid("invalid_grant");
    }
    state.member_logins += 1;
    let token = format!("member-token-{}", state.member_logins);
    state.fixture.member_tokens.insert(token.clone(), user);
    json_answer(
        StatusCode::OK,
        json!({ "access_token": token, "token_type": "bearer", "scope": "openid read_user" })
            .to_string(),
    )
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /oauth/authorize`: the admin "approves" at once; 302 back with code and state.
fn authorize(state: &mut super::State, uri: &Uri) -> Response {
    let q = query_map(uri);
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") == state.fixture.oauth.member_client_id {
        return member_authorize(state, &q);
    }
    if get("client_id") != state.fixture.oauth.client_id || get("response_type") != "code" {
        return error(StatusCode::BAD_REQUEST, "unknown client or response type");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return error(StatusCode::BAD_REQUEST, "PKCE S256 required");
    }
    let Ok(mut back) = url::Url::parse(get("redirect_uri")) else {
        return error(StatusCode::BAD_REQUEST, "bad redirect_uri");
    };
    state.pkce_challenges.push(get("code_challenge").to_owned());
    back.query_pairs_mut()
        .append_pair("code", &state.fixture.oauth.code)
        .append_pair("state", get("state"));
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(location) = HeaderValue::from_str(back.as_str()) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp
}

/// `POST /oauth/access_token`: form body with the secret and, after an authorize visit, a PKCE
/// verifier matching its challenge.
fn access_token(state: &mut super::State, body: &Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") == state.fixture.oauth.member_client_id {
        return member_access_token(state, &form);
    }
    let o = &state.fixture.oauth;
    let invalid = |e: &str| json_answer(StatusCode::BAD_REQUEST, json!({ "error": e }).to_string());
    if get("client_id") != o.client_id || get("client_secret") != o.client_secret {
        return invalid("invalid_client");
    }
    if get("grant_type") != "authorization_code" || get("code") != o.code {
        return invalid("invalid_grant");
    }
    if !state.pkce_challenges.is_empty() {
        let verifier = PkceCodeVerifier::new(get("code_verifier").to_owned());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        if !state
            .pkce_challenges
            .iter()
            .any(|c| c == challenge.as_str())
        {
            return invalid("invalid_grant");
        }
    }
    json_answer(
        StatusCode::OK,
        json!({ "access_token": o.user_token, "token_type": "bearer" }).to_string(),
    )
}
