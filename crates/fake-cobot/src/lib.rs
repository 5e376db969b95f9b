//! The simulated Cobot: a real HTTP server on `127.0.0.1:0` that plays Cobot, for
//! `portier demo`, the tests and the benchmarks. It is a crate of its own so that nothing of it
//! is in Portier's production code: the daemon never links it, and a build without the
//! default `demo` feature leaves it out of the binary altogether.
//!
//! Space API (`/api/plans`, …) and www endpoints (`/api/user`, `/api/spaces/<sub>`,
//! `/api/access_tokens/<t>/space`, `/oauth/*`) live on the same server, so api_url = www_url =
//! [`FakeCobot::url`]. Fixtures can be changed while it runs; faults can be injected per path
//! prefix; every request and every check-in is recorded. It is deliberately strict where Cobot
//! is (admin bearer, PKCE verifier) so that the client's mistakes show up in tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;
use tokio::task::JoinHandle;
use url::Url;

pub mod fixtures;
mod routes;

/// A fault the fake answers with instead of the normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a small JSON error body.
    Status(u16),
    /// Answer 429 with `Retry-After: <secs>`.
    RateLimited {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// Answer 429 with this `Retry-After` value as is (an HTTP date, garbage, a huge number)
    /// and the fixture's `now` as `Date`.
    RateLimitedRaw {
        /// The `Retry-After` header's text.
        retry_after: String,
    },
    /// Answer 401, as for a revoked token.
    Unauthorized,
    /// Wait this long, then answer normally (longer than the client timeout = a timeout).
    Delay(Duration),
    /// Do the normal work at once (e.g. create the check-in), then wait this long before
    /// answering: longer than the client timeout, the request took effect but the client only
    /// sees a timeout.
    AnswerLate(Duration),
    /// Answer 200 with an HTML maintenance page instead of JSON.
    Html,
    /// Answer 200 with the normal JSON cut in half.
    TruncatedJson,
    /// Answer 200 with `[]`.
    EmptyList,
}

/// The OAuth app and the codes/tokens the fake hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFixture {
    /// The registered app's client id.
    pub client_id: String,
    /// Its client secret (must arrive in the form body).
    pub client_secret: String,
    /// The code `/oauth/authorize` redirects with and `/oauth/access_token` accepts.
    pub code: String,
    /// The admin's user-bound token `/oauth/access_token` returns.
    pub user_token: String,
    /// The member login app's client id (the member page): its `/oauth/authorize` asks which
    /// member logs in (by email) and its codes and tokens are per member.
    pub member_client_id: String,
    /// Its client secret.
    pub member_client_secret: String,
}

/// What the fake Cobot serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// The bearer token space endpoints accept; also the space-bound token it hands out.
    pub admin_token: String,
    /// The space's subdomain (for `/api/spaces/<subdomain>`).
    pub subdomain: String,
    /// The space's id.
    pub space_id: String,
    /// `/api/plans`.
    pub plans: Value,
    /// `/api/memberships`.
    pub memberships: Value,
    /// `/api/custom_fields`.
    pub custom_fields: Value,
    /// `/api/check_in_tokens`.
    pub check_in_tokens: Value,
    /// `/api/bookings` (served whole, whatever `from`/`to` say).
    pub bookings: Value,
    /// Member app tokens (bearer → Cobot user id) that `/api/user` knows.
    pub member_tokens: HashMap<String, String>,
    /// The OAuth app.
    pub oauth: OAuthFixture,
    /// The time the fake writes on check-ins it creates (it never reads the clock).
    pub now: DateTime<Utc>,
}

impl Fixture {
    /// No plans, members, tokens or bookings; admin token `admin-token`.
    pub fn empty() -> Self {
        Self {
            admin_token: "admin-token".into(),
            subdomain: "co-up".into(),
            space_id: "space-co-up".into(),
            plans: Value::Array(Vec::new()),
            memberships: Value::Array(Vec::new()),
            custom_fields: Value::Array(Vec::new()),
            check_in_tokens: Value::Array(Vec::new()),
            bookings: Value::Array(Vec::new()),
            member_tokens: HashMap::new(),
            oauth: OAuthFixture {
                client_id: "portier-client-id".into(),
                client_secret: "portier-client-secret".into(),
                code: "fake-authorization-code".into(),
                user_token: "fake-user-token".into(),
                member_client_id: "portier-members".into(),
                member_client_secret: "portier-members-secret".into(),
            },
            now: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    /// The standard data set of [`fixtures`] relative to `today`; `now` is today 10:00 UTC, and
    /// every connected member has an app token `app-<membership id>`.
    pub fn standard(today: NaiveDate) -> Self {
        let memberships = fixtures::memberships(today);
        let member_tokens = memberships
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let id = m.get("id")?.as_str()?;
                let user = m.get("user")?.get("id")?.as_str()?;
                Some((format!("app-{id}"), user.to_owned()))
            })
            .collect();
        let ten = NaiveTime::from_hms_opt(10, 0, 0).unwrap_or_default();
        Self {
            plans: fixtures::plans(),
            memberships,
            custom_fields: fixtures::custom_fields(),
            check_in_tokens: fixtures::check_in_tokens(),
            bookings: fixtures::bookings(today),
            member_tokens,
            now: today.and_time(ten).and_utc(),
            ..Self::empty()
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query exactly as sent, e.g. `/api/memberships?all=true`.
    pub path_and_query: String,
    /// The bearer token sent, if any.
    pub bearer: Option<String>,
}

impl RecordedRequest {
    /// `"GET /api/plans"`: method and path with query, for asserting request lists.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path_and_query)
    }
}

/// A check-in the fake created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCheckIn {
    /// The checked-in membership.
    pub membership_id: String,
    /// The fake's `now` when it was made.
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
struct ActiveFault {
    prefix: String,
    fault: Fault,
    /// `None`: until cleared; `Some(n)`: the next n matching requests.
    remaining: Option<u32>,
}

/// The fake's mutable state; bodies are kept serialized so large fixtures are served fast.
#[derive(Debug)]
struct State {
    fixture: Fixture,
    bodies: HashMap<&'static str, Arc<str>>,
    faults: Vec<ActiveFault>,
    requests: Vec<RecordedRequest>,
    check_ins: Vec<RecordedCheckIn>,
    pkce_challenges: Vec<String>,
    /// Member login codes: code → (Cobot user id, PKCE challenge, redirect URI).
    member_codes: HashMap<String, (String, String, String)>,
    /// How many member codes and tokens were handed out.
    member_logins: u64,
    /// `/api/navigation_links`, in order of creation.
    navigation_links: Vec<Value>,
}

fn serialize(v: &Value) -> Arc<str> {
    Arc::from(v.to_string())
}

impl State {
    fn new(fixture: Fixture) -> Self {
        let mut state = State {
            fixture,
            bodies: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            check_ins: Vec::new(),
            pkce_challenges: Vec::new(),
            member_codes: HashMap::new(),
            member_logins: 0,
            navigation_links: Vec::new(),
        };
        state.reserialize();
        state
    }

    fn reserialize(&mut self) {
        let f = &self.fixture;
        self.bodies = HashMap::from([
            ("/api/plans", serialize(&f.plans)),
            ("/api/memberships", serialize(&f.memberships)),
            ("/api/custom_fields", serialize(&f.custom_fields)),
            ("/api/check_in_tokens", serialize(&f.check_in_tokens)),
            ("/api/bookings", serialize(&f.bookings)),
        ]);
    }

    /// The fault for this path, counting down limited ones.
    fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| path.starts_with(&f.prefix))?;
        let active = self.faults.get_mut(i)?;
        let fault = active.fault.clone();
        if let Some(n) = active.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.faults.remove(i);
            }
        }
        Some(fault)
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking test thread must not hide the state from the others.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running fake Cobot. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeCobot {
    url: Url,
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for FakeCobot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCobot {
    /// Starts the server on `127.0.0.1:0` (needs a tokio runtime).
    pub async fn start(fixture: Fixture) -> std::io::Result<FakeCobot> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let shared: Shared = Arc::new(Mutex::new(State::new(fixture)));
        let app = routes::router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake Cobot stopped");
            }
        });
        Ok(FakeCobot {
            url,
            addr,
            shared,
            task,
        })
    }

    /// The base URL, for both `api_url` and `www_url`.
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers every request whose path starts with `path_prefix` with `fault` until cleared.
    pub fn set_fault(&self, path_prefix: &str, fault: Fault) {
        self.push_fault(path_prefix, fault, None);
    }

    /// Answers the next `times` requests under `path_prefix` with `fault`, then normally.
    pub fn set_fault_times(&self, path_prefix: &str, fault: Fault, times: u32) {
        if times > 0 {
            self.push_fault(path_prefix, fault, Some(times));
        }
    }

    /// Answers the next requests under `path_prefix` with `faults`, one each in order, then
    /// normally.
    pub fn queue_faults(&self, path_prefix: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut state = lock(&self.shared);
        state.faults.retain(|f| f.prefix != path_prefix);
        for fault in faults {
            state.faults.push(ActiveFault {
                prefix: path_prefix.to_owned(),
                fault,
                remaining: Some(1),
            });
        }
    }

    fn push_fault(&self, prefix: &str, fault: Fault, remaining: Option<u32>) {
        let mut state = lock(&self.shared);
        state.faults.retain(|f| f.prefix != prefix);
        state.faults.push(ActiveFault {
            prefix: prefix.to_owned(),
            fault,
            remaining,
        });
    }

    /// The navigation links the space has now (`/api/navigation_links`).
    pub fn navigation_links(&self) -> Vec<Value> {
        lock(&self.shared).navigation_links.clone()
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// Every request so far as `"METHOD /path?query"` lines.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests().iter().map(RecordedRequest::line).collect()
    }

    /// Forgets the recorded requests (not the check-ins).
    pub fn clear_requests(&self) {
        lock(&self.shared).requests.clear();
    }

    /// Every check-in created so far, in order.
    pub fn check_ins(&self) -> Vec<RecordedCheckIn> {
        lock(&self.shared).check_ins.clone()
    }

    /// Changes the fixture at once (e.g. `|f| f.plans = json!([])`).
    pub fn update(&self, change: impl FnOnce(&mut Fixture)) {
        let mut state = lock(&self.shared);
        change(&mut state.fixture);
        state.reserialize();
    }

    /// A copy of the current fixture.
    pub fn fixture(&self) -> Fixture {
        lock(&self.shared).fixture.clone()
    }

    /// Replaces `/api/plans`.
    pub fn set_plans(&self, plans: Value) {
        self.update(|f| f.plans = plans);
    }

    /// Replaces `/api/memberships`.
    pub fn set_memberships(&self, memberships: Value) {
        self.update(|f| f.memberships = memberships);
    }

    /// Replaces `/api/custom_fields`.
    pub fn set_custom_fields(&self, custom_fields: Value) {
        self.update(|f| f.custom_fields = custom_fields);
    }

    /// Replaces `/api/check_in_tokens`.
    pub fn set_check_in_tokens(&self, tokens: Value) {
        self.update(|f| f.check_in_tokens = tokens);
    }

    /// Replaces `/api/bookings`.
    pub fn set_bookings(&self, bookings: Value) {
        self.update(|f| f.bookings = bookings);
    }

    /// Lets `/api/user` answer `user_id` for the app token `bearer`.
    pub fn set_member_token(&self, bearer: &str, user_id: &str) {
        let (b, u) = (bearer.to_owned(), user_id.to_owned());
        self.update(|f| {
            f.member_tokens.insert(b, u);
        });
    }

    /// Makes `/api/user` refuse the app token `bearer`.
    pub fn remove_member_token(&self, bearer: &str) {
        self.update(|f| {
            f.member_tokens.remove(bearer);
        });
    }

    /// Changes the admin token the space endpoints accept (the old one then gets 401).
    pub fn set_admin_token(&self, token: &str) {
        let token = token.to_owned();
        self.update(|f| f.admin_token = token);
    }

    /// Changes the space id behind the subdomain.
    pub fn set_space_id(&self, space_id: &str) {
        let id = space_id.to_owned();
        self.update(|f| f.space_id = id);
    }

    /// Changes the time written on new check-ins.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.update(|f| f.now = now);
    }
}
