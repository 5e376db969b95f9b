//! HTTP to Cobot API v1: one try per request, every request bounded by the client's timeout.
//!
//! [`CobotClient::fetch`] does a whole sync's requests in the order DESIGN pins. The same
//! requests are public one by one (`plans`, `memberships`, …) so the daemon can pace
//! `/api/memberships` (6 a minute) and wrap each in its own retry; the command line never
//! retries. Redirects are not followed (a redirect would carry the bearer token elsewhere), and
//! the token is never logged or put in an error.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{DATE, HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use url::Url;

use super::error::CobotError;
use super::wire::{self, MembershipFields, Parsed, WireId};
use crate::domain::model::{Booking, CheckInToken, CobotData, CobotMembership, CobotPlan};

pub use super::wire::CheckIn;

/// The User-Agent Portier sends to Cobot.
pub(crate) const USER_AGENT: &str = concat!("portier/", env!("CARGO_PKG_VERSION"));

/// What a sync fetches besides plans, memberships and check-in tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Fetch `/api/custom_fields` (only when `additional_groups_field` is configured).
    pub custom_fields: bool,
    /// Fetch `/api/bookings` for this period (only when an assignment requires booking).
    pub bookings: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The Cobot user behind a member's app token (`GET {www}/api/user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CobotUser {
    /// Cobot's user id, as in a membership's `user.id`.
    pub id: String,
}

/// How Cobot answered a check-in POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckInOutcome {
    /// 2xx: the check-in exists (fields as far as Cobot sent them).
    Created(CheckIn),
    /// A final 4xx (not 401, 408 or 429), e.g. 422 "No time passes left.": record it, do not
    /// retry.
    Refused {
        /// The HTTP status.
        status: u16,
        /// Cobot's `errors.base`, or the start of its body.
        reason: String,
    },
}

/// The largest answer read from Cobot. 10,000 memberships are about 15 MB; a bigger answer is
/// a glitch or hostile, and reading it whole could exhaust a small box's memory.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A link in Cobot's navigation (`/api/navigation_links`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NavigationLink {
    /// Its id (for removing it).
    #[serde(default, deserialize_with = "id_text")]
    pub id: String,
    /// Where it shows (`members`, `admin/manage`, …).
    #[serde(default)]
    pub section: String,
    /// Its text.
    #[serde(default)]
    pub label: String,
    /// What it shows (in an iframe).
    #[serde(default)]
    pub iframe_url: String,
}

/// An id Cobot may send as a number or a string.
fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    })
}

/// A client for one Cobot space, holding the admin (sync) token.
#[derive(Clone)]
pub struct CobotClient {
    http: reqwest::Client,
    api_url: Url,
    www_url: Url,
    token: String,
    timeout: Duration,
    max_body: usize,
}

impl fmt::Debug for CobotClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CobotClient")
            .field("api_url", &self.api_url.as_str())
            .field("www_url", &self.www_url.as_str())
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The reqwest client every Cobot request uses: rustls, no redirects, Portier's User-Agent, and
/// a total timeout per request.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, CobotError> {
    crate::tls::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| CobotError::Setup(error_chain(&e)))
}

/// `base` + path segments (each percent-encoded), without query or fragment.
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, CobotError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| CobotError::Setup(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The request's path and query, as used in errors and logs.
fn path_of(url: &Url) -> String {
    url[url::Position::BeforePath..].to_owned()
}

/// An error with all its causes, `outer: inner: innermost`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn transport_error(e: reqwest::Error, path: &str) -> CobotError {
    let path = path.to_owned();
    if e.is_timeout() {
        return CobotError::Timeout { path };
    }
    // Without the URL: a path may carry a token (`/api/access_tokens/<token>/space`).
    let detail = error_chain(&e.without_url());
    CobotError::Unreachable { path, detail }
}

/// The longest `Retry-After` Portier honours. A longer one is ignored (the normal backoff
/// applies): a glitch or a hostile answer must not stop syncs or strand check-ins for days.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads `Retry-After` as seconds, or as an HTTP date relative to the answer's `Date` header.
/// Bounded here, where the number enters: a value over [`MAX_RETRY_AFTER`], negative (a date in
/// the past) or unreadable gives `None`, so nothing downstream ever sees an absurd wait.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 fails to parse, which is "ignored" too.
        Duration::from_secs(value.parse::<u64>().ok()?)
    } else {
        let at = DateTime::parse_from_rfc2822(value).ok()?;
        let now = DateTime::parse_from_rfc2822(headers.get(DATE)?.to_str().ok()?).ok()?;
        at.signed_duration_since(now).to_std().ok()?
    };
    (wait <= MAX_RETRY_AFTER).then_some(wait)
}

fn status_error(status: StatusCode, headers: &HeaderMap, path: &str) -> CobotError {
    match status {
        StatusCode::UNAUTHORIZED => CobotError::Unauthorized,
        StatusCode::TOO_MANY_REQUESTS => CobotError::RateLimited {
            retry_after: retry_after(headers),
        },
        _ => CobotError::Status {
            status: status.as_u16(),
            path: path.to_owned(),
        },
    }
}

/// A raw answer: status, headers and the whole body as text.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

fn malformed(path: &str, detail: String) -> CobotError {
    CobotError::Malformed {
        path: path.to_owned(),
        detail,
    }
}

#[derive(Deserialize)]
struct IdDto {
    id: Option<WireId>,
}

#[derive(Deserialize)]
struct TokenDto {
    token: Option<String>,
}

fn id_of(answer: &Answer, path: &str) -> Result<String, CobotError> {
    let dto: IdDto = serde_json::from_str(&answer.body)
        .map_err(|e| malformed(path, wire::describe_body_error(&e)))?;
    match dto.id {
        Some(WireId::Str(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(WireId::Num(n)) => Ok(n.to_string()),
        _ => Err(malformed(path, "no \"id\" in the answer".into())),
    }
}

impl CobotClient {
    /// A client for the space at `api_url` (`https://<subdomain>.cobot.me`) and Cobot's user
    /// endpoints at `www_url` (`https://www.cobot.me`), sending `token` as bearer.
    pub fn new(
        api_url: Url,
        www_url: Url,
        token: String,
        timeout: Duration,
    ) -> Result<Self, CobotError> {
        for url in [&api_url, &www_url] {
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(CobotError::Setup(format!(
                    "{url} is not an http(s) base URL"
                )));
            }
        }
        Ok(Self {
            http: http_client(timeout)?,
            api_url,
            www_url,
            token: token.trim().to_owned(),
            timeout,
            max_body: MAX_BODY_BYTES,
        })
    }

    /// The same client with another answer size limit (tests use a small one).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request; 2xx comes back as an [`Answer`], anything else as the matching error.
    async fn send(&self, req: RequestBuilder, path: &str) -> Result<Answer, CobotError> {
        let answer = self.send_any(req, path).await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(status_error(answer.status, &answer.headers, path))
        }
    }

    /// Sends one request and returns whatever status came back.
    async fn send_any(&self, req: RequestBuilder, path: &str) -> Result<Answer, CobotError> {
        let mut resp = req.send().await.map_err(|e| transport_error(e, path))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let too_big = || {
            malformed(
                path,
                format!("the answer is larger than {} bytes", self.max_body),
            )
        };
        let announced = resp.content_length().unwrap_or(0);
        if announced > self.max_body as u64 {
            return Err(too_big());
        }
        // Read in chunks so an endless or huge answer stops at the limit, not at the memory's.
        let mut bytes = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(e, path))? {
            if bytes.len().saturating_add(chunk.len()) > self.max_body {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        tracing::debug!(path = %path, status = status.as_u16(), bytes = body.len(), "cobot answered");
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn get_list<T>(
        &self,
        url: Url,
        parse: fn(&str) -> Result<Parsed<T>, String>,
    ) -> Result<Parsed<T>, CobotError> {
        let path = path_of(&url);
        let answer = self
            .send(self.http.get(url).bearer_auth(&self.token), &path)
            .await?;
        parse(&answer.body).map_err(|detail| malformed(&path, detail))
    }

    /// `GET /api/plans` (hidden plans included with `read_plans`).
    pub async fn plans(&self) -> Result<Parsed<CobotPlan>, CobotError> {
        let url = endpoint(&self.api_url, &["api", "plans"])?;
        self.get_list(url, wire::parse_plans).await
    }

    /// `GET /api/memberships?all=true`. Cobot allows 6 a minute: the daemon paces this call.
    pub async fn memberships(&self) -> Result<Parsed<CobotMembership>, CobotError> {
        let mut url = endpoint(&self.api_url, &["api", "memberships"])?;
        url.query_pairs_mut().append_pair("all", "true");
        self.get_list(url, wire::parse_memberships).await
    }

    /// `GET /api/custom_fields`: every membership's custom fields in one call.
    pub async fn custom_fields(&self) -> Result<Parsed<MembershipFields>, CobotError> {
        let url = endpoint(&self.api_url, &["api", "custom_fields"])?;
        self.get_list(url, wire::parse_custom_fields).await
    }

    /// `GET /api/check_in_tokens`: card ids by membership.
    pub async fn check_in_tokens(&self) -> Result<Parsed<CheckInToken>, CobotError> {
        let url = endpoint(&self.api_url, &["api", "check_in_tokens"])?;
        self.get_list(url, wire::parse_check_in_tokens).await
    }

    /// `GET /api/bookings?from=..&to=..` (`YYYY-MM-DD HH:MM +0000`); bookings without a
    /// membership are left out.
    pub async fn bookings(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Parsed<Booking>, CobotError> {
        let mut url = endpoint(&self.api_url, &["api", "bookings"])?;
        url.query_pairs_mut()
            .append_pair("from", &wire::format_query_time(from))
            .append_pair("to", &wire::format_query_time(to));
        self.get_list(url, wire::parse_bookings).await
    }

    /// One sync's requests, in DESIGN's order, one try each; the first failure fails the fetch.
    pub async fn fetch(&self, opts: &FetchOptions) -> Result<CobotData, CobotError> {
        let plans = self.plans().await?;
        let mut memberships = self.memberships().await?;
        let mut malformed = plans.malformed;
        malformed.append(&mut memberships.malformed);
        if opts.custom_fields {
            let mut fields = self.custom_fields().await?;
            malformed.append(&mut fields.malformed);
            wire::merge_custom_fields(&mut memberships.items, fields.items);
        }
        let mut tokens = self.check_in_tokens().await?;
        malformed.append(&mut tokens.malformed);
        let bookings = match opts.bookings {
            Some((from, to)) => {
                let mut bookings = self.bookings(from, to).await?;
                malformed.append(&mut bookings.malformed);
                bookings.items
            }
            None => Vec::new(),
        };
        Ok(CobotData {
            plans: plans.items,
            memberships: memberships.items,
            check_in_tokens: tokens.items,
            bookings,
            malformed,
        })
    }

    /// `GET {www}/api/user` with a member's app token: who is this? 401/403 means Cobot does not
    /// know the token ([`CobotError::MemberTokenRejected`]).
    pub async fn user(&self, bearer: &str) -> Result<CobotUser, CobotError> {
        let url = endpoint(&self.www_url, &["api", "user"])?;
        let path = path_of(&url);
        let answer = self
            .send_any(self.http.get(url).bearer_auth(bearer.trim()), &path)
            .await?;
        match answer.status {
            s if s.is_success() => Ok(CobotUser {
                id: id_of(&answer, &path)?,
            }),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                Err(CobotError::MemberTokenRejected { status: s.as_u16() })
            }
            s => Err(status_error(s, &answer.headers, &path)),
        }
    }

    /// `POST /api/memberships/<id>/work_sessions` with an empty JSON body: checks the member in.
    /// 401, 408, 429, 5xx and transport failures are errors (retry, or reconnect for 401); other
    /// 4xx are a final [`CheckInOutcome::Refused`].
    pub async fn check_in(&self, membership_id: &str) -> Result<CheckInOutcome, CobotError> {
        let url = endpoint(
            &self.api_url,
            &["api", "memberships", membership_id, "work_sessions"],
        )?;
        let path = path_of(&url);
        let req = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({}));
        let answer = self.send_any(req, &path).await?;
        let status = answer.status;
        if status.is_success() {
            // The check-in exists whatever the body says; read what we can of it.
            let check_in = serde_json::from_str::<wire::CheckInDto>(&answer.body)
                .ok()
                .and_then(|d| CheckIn::try_from(d).ok())
                .unwrap_or(CheckIn {
                    id: None,
                    valid_from: None,
                    valid_until: None,
                });
            return Ok(CheckInOutcome::Created(check_in));
        }
        let final_4xx = status.is_client_error()
            && !matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
            );
        if final_4xx {
            return Ok(CheckInOutcome::Refused {
                status: status.as_u16(),
                reason: refusal_reason(&answer.body),
            });
        }
        Err(status_error(status, &answer.headers, &path))
    }

    /// `GET /api/memberships/<id>/check_ins?from=&to=`: the member's check-ins in a period, to
    /// settle an uncertain check-in before posting again.
    pub async fn check_ins_between(
        &self,
        membership_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CheckIn>, CobotError> {
        let mut url = endpoint(
            &self.api_url,
            &["api", "memberships", membership_id, "check_ins"],
        )?;
        url.query_pairs_mut()
            .append_pair("from", &wire::format_query_time(from))
            .append_pair("to", &wire::format_query_time(to));
        let parsed = self.get_list(url, wire::parse_check_ins).await?;
        if !parsed.malformed.is_empty() {
            tracing::warn!(membership = %membership_id, skipped = ?parsed.malformed, "unreadable check-ins");
        }
        Ok(parsed.items)
    }

    /// `GET /api/navigation_links`: the links the space's apps added to Cobot's navigation.
    pub async fn navigation_links(&self) -> Result<Vec<NavigationLink>, CobotError> {
        let url = endpoint(&self.api_url, &["api", "navigation_links"])?;
        let path = path_of(&url);
        let answer = self
            .send(self.http.get(url).bearer_auth(&self.token), &path)
            .await?;
        serde_json::from_str(&answer.body)
            .map_err(|e| malformed(&path, format!("not a list of navigation links: {e}")))
    }

    /// `POST /api/navigation_links` (scope `navigation`): adds a link to `iframe_url` in the
    /// navigation `section` (`members`: the member portal).
    pub(crate) async fn add_navigation_link(
        &self,
        section: &str,
        label: &str,
        iframe_url: &str,
    ) -> Result<NavigationLink, CobotError> {
        let url = endpoint(&self.api_url, &["api", "navigation_links"])?;
        let path = path_of(&url);
        let body = serde_json::json!({
            "section": section,
            "label": label,
            "iframe_url": iframe_url,
        });
        let answer = self
            .send(
                self.http.post(url).bearer_auth(&self.token).json(&body),
                &path,
            )
            .await?;
        serde_json::from_str(&answer.body)
            .map_err(|e| malformed(&path, format!("not a navigation link: {e}")))
    }

    /// `DELETE /api/navigation_links/<id>`.
    pub(crate) async fn remove_navigation_link(&self, id: &str) -> Result<(), CobotError> {
        let url = endpoint(&self.api_url, &["api", "navigation_links", id])?;
        let path = path_of(&url);
        self.send(self.http.delete(url).bearer_auth(&self.token), &path)
            .await?;
        Ok(())
    }

    /// `GET {www}/api/spaces/<subdomain>` → the space's id (for a space-bound token).
    pub async fn space_id(&self, subdomain: &str) -> Result<String, CobotError> {
        let url = endpoint(&self.www_url, &["api", "spaces", subdomain])?;
        let path = path_of(&url);
        let answer = self
            .send(self.http.get(url).bearer_auth(&self.token), &path)
            .await?;
        id_of(&answer, &path)
    }

    /// `POST {www}/api/access_tokens/<this client's token>/space` with `{"space_id": ..}` → a
    /// token that belongs to the space and survives its admin leaving.
    pub(crate) async fn space_bound_token(&self, space_id: &str) -> Result<String, CobotError> {
        let url = endpoint(
            &self.www_url,
            &["api", "access_tokens", &self.token, "space"],
        )?;
        let path = "/api/access_tokens/<token>/space";
        let req = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "space_id": space_id }));
        let answer = self.send(req, path).await?;
        let dto: TokenDto = serde_json::from_str(&answer.body)
            .map_err(|e| malformed(path, wire::describe_body_error(&e)))?;
        dto.token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed(path, "no \"token\" in the answer".into()))
    }
}

/// Cobot's reason for refusing a check-in: `errors.base` (string or list), else the body's start.
fn refusal_reason(body: &str) -> String {
    let base = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/errors/base").cloned());
    match base {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.chars().take(200).collect(),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
