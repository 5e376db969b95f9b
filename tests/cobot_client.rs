//! The Cobot client and connect flow against the fake Cobot, a real HTTP server on loopback.

// Test helpers outside `#[test]` fns may fail loudly too (clippy only exempts the fns).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use portier::cobot::{
    CheckInOutcome, CobotClient, CobotError, ConnectFlow, ConnectParams, FetchOptions,
    load_stored_token, store_token,
};
use portier_fake_cobot::Fixture;
use portier_fake_cobot::fixtures::{self, ADA, ALAN, EDSGER, MARGARET};
use portier_fake_cobot::{FakeCobot, Fault};
use serde_json::json;
use url::Url;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 15).unwrap()
}

async fn fake() -> FakeCobot {
    FakeCobot::start(Fixture::standard(today())).await.unwrap()
}

fn client_with(fake: &FakeCobot, token: &str, timeout: Duration) -> CobotClient {
    CobotClient::new(fake.url(), fake.url(), token.into(), timeout).unwrap()
}

fn client(fake: &FakeCobot) -> CobotClient {
    client_with(fake, "admin-token", Duration::from_secs(5))
}

fn everything() -> FetchOptions {
    FetchOptions {
        custom_fields: true,
        bookings: Some((
            Utc.with_ymd_and_hms(2025, 6, 14, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2025, 7, 15, 23, 30, 0).unwrap(),
        )),
    }
}

#[tokio::test]
async fn a_fetch_makes_exactly_the_design_requests_in_order() {
    let fake = fake().await;
    client(&fake).fetch(&everything()).await.unwrap();
    assert_eq!(
        fake.request_lines(),
        [
            "GET /api/plans",
            "GET /api/memberships?all=true",
            "GET /api/custom_fields",
            "GET /api/check_in_tokens",
            "GET /api/bookings?from=2025-06-14+00%3A00+%2B0000&to=2025-07-15+23%3A30+%2B0000",
        ]
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.bearer.as_deref() == Some("admin-token"))
    );
}

#[tokio::test]
async fn custom_fields_and_bookings_are_fetched_only_when_asked() {
    let fake = fake().await;
    let data = client(&fake).fetch(&FetchOptions::default()).await.unwrap();
    assert_eq!(
        fake.request_lines(),
        [
            "GET /api/plans",
            "GET /api/memberships?all=true",
            "GET /api/check_in_tokens"
        ]
    );
    assert!(data.memberships.iter().all(|m| m.custom_fields.is_empty()));
    assert!(data.bookings.is_empty());
}

#[tokio::test]
async fn the_standard_fixture_arrives_whole_in_domain_types() {
    let fake = fake().await;
    let data = client(&fake).fetch(&everything()).await.unwrap();
    assert!(data.malformed.is_empty(), "{:?}", data.malformed);
    assert_eq!(data.plans.len(), 3);
    assert_eq!(data.memberships.len(), 9);
    let member = |id: &str| data.memberships.iter().find(|m| m.id == id).unwrap();
    assert_eq!(member(ALAN).user_id, None);
    assert_eq!(member(EDSGER).user_id, None);
    assert!(member(ADA).user_id.is_some());
    assert!(
        member(ADA)
            .custom_fields
            .iter()
            .any(|f| f.label == fixtures::ADDITIONAL_UNITS_FIELD
                && f.value == "staff, unknown_group")
    );
    let linus = member(fixtures::LINUS).upcoming_plan.clone().unwrap();
    assert_eq!(
        linus.starts_at,
        NaiveDate::from_ymd_opt(2025, 6, 18).unwrap()
    );
    assert_eq!(data.check_in_tokens.len(), 4);
    // The event booking without membership is ignored, not malformed.
    assert_eq!(data.bookings.len(), 2);
    assert!(data.bookings.iter().all(|b| b.membership_id == MARGARET));
}

#[tokio::test]
async fn a_malformed_membership_is_skipped_and_reported_in_the_data() {
    let fake = fake().await;
    fake.set_memberships(json!([
        {"id": "m1", "name": "Fine", "user": {"id": "u1"}},
        {"name": "No Id"},
        {"id": "m3", "name": "Bad Date", "starts_at": "someday"}
    ]));
    let data = client(&fake).fetch(&FetchOptions::default()).await.unwrap();
    assert_eq!(data.memberships.len(), 1);
    assert_eq!(data.malformed.len(), 2, "{:?}", data.malformed);
    assert!(data.malformed[0].contains("No Id"));
    assert!(data.malformed[1].contains("m3 (Bad Date)"));
}

#[tokio::test]
async fn a_wrong_token_or_an_injected_401_is_unauthorized() {
    let fake = fake().await;
    let wrong = client_with(&fake, "revoked", Duration::from_secs(5));
    let err = wrong.fetch(&FetchOptions::default()).await.unwrap_err();
    assert!(matches!(err, CobotError::Unauthorized), "{err:?}");
    assert!(
        err.to_string()
            .contains("reconnect (portier cobot connect)")
    );

    fake.set_fault("/api/memberships", Fault::Unauthorized);
    let err = client(&fake)
        .fetch(&FetchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CobotError::Unauthorized), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_429_carries_retry_after_and_stops_the_fetch() {
    let fake = fake().await;
    fake.set_fault(
        "/api/memberships",
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    let err = client(&fake)
        .fetch(&FetchOptions::default())
        .await
        .unwrap_err();
    match &err {
        CobotError::RateLimited { retry_after } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(30)))
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(err.to_string().contains("30s"), "{err}");
    assert_eq!(
        fake.request_lines(),
        ["GET /api/plans", "GET /api/memberships?all=true"]
    );
}

#[tokio::test]
async fn a_500_is_a_retryable_status_error_naming_the_path() {
    let fake = fake().await;
    fake.set_fault("/api/check_in_tokens", Fault::Status(500));
    let err = client(&fake)
        .fetch(&FetchOptions::default())
        .await
        .unwrap_err();
    match &err {
        CobotError::Status { status, path } => {
            assert_eq!((*status, path.as_str()), (500, "/api/check_in_tokens"))
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_fault_for_a_number_of_times_then_clears_itself() {
    let fake = fake().await;
    fake.set_fault_times("/api/plans", Fault::Status(503), 1);
    assert!(client(&fake).plans().await.is_err());
    assert_eq!(client(&fake).plans().await.unwrap().items.len(), 3);
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_a_timeout() {
    let fake = fake().await;
    fake.set_fault("/api/plans", Fault::Delay(Duration::from_secs(2)));
    let impatient = client_with(&fake, "admin-token", Duration::from_millis(200));
    let err = impatient.fetch(&FetchOptions::default()).await.unwrap_err();
    assert!(
        matches!(&err, CobotError::Timeout { path } if path == "/api/plans"),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_unreachable_cobot_is_unreachable() {
    let fake = fake().await;
    let url = fake.url();
    drop(fake);
    let c = CobotClient::new(url.clone(), url, "t".into(), Duration::from_secs(2)).unwrap();
    let err = c.plans().await.unwrap_err();
    assert!(matches!(err, CobotError::Unreachable { .. }), "{err:?}");
    assert!(err.is_unreachable());
}

#[tokio::test]
async fn html_truncated_or_non_array_answers_fail_the_whole_fetch() {
    let fake = fake().await;
    fake.set_fault("/api/plans", Fault::Html);
    let err = client(&fake)
        .fetch(&FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CobotError::Malformed { path, detail } if path == "/api/plans" && detail.starts_with("not JSON")),
        "{err:?}"
    );

    fake.clear_faults();
    fake.set_fault("/api/memberships", Fault::TruncatedJson);
    let err = client(&fake)
        .fetch(&FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CobotError::Malformed { detail, .. } if detail.starts_with("truncated")),
        "{err:?}"
    );

    fake.clear_faults();
    fake.set_check_in_tokens(json!({"tokens": []}));
    let err = client(&fake)
        .fetch(&FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CobotError::Malformed { detail, .. } if detail.contains("expected a JSON array")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_empty_member_list_is_a_valid_answer() {
    let fake = fake().await;
    fake.set_fault("/api/memberships", Fault::EmptyList);
    let data = client(&fake).fetch(&FetchOptions::default()).await.unwrap();
    assert!(data.memberships.is_empty());
    assert_eq!(data.plans.len(), 3);
}

#[tokio::test]
async fn the_user_endpoint_resolves_app_tokens_and_rejects_unknown_ones() {
    let fake = fake().await;
    let c = client(&fake);
    let user = c.user(&format!("app-{ADA}")).await.unwrap();
    assert_eq!(user.id, fixtures::user_id_of(ADA));
    let err = c.user("stolen").await.unwrap_err();
    assert!(matches!(
        err,
        CobotError::MemberTokenRejected { status: 401 }
    ));
    fake.set_fault("/api/user", Fault::Status(502));
    assert!(
        c.user(&format!("app-{ADA}"))
            .await
            .unwrap_err()
            .is_unreachable()
    );
}

#[tokio::test]
async fn a_check_in_is_posted_and_can_be_read_back() {
    let fake = fake().await;
    let c = client(&fake);
    let outcome = c.check_in(ADA).await.unwrap();
    assert!(matches!(outcome, CheckInOutcome::Created(ref ci) if ci.valid_from.is_some()));
    let posted = fake.requests().last().cloned().unwrap();
    assert_eq!(
        posted.line(),
        format!("POST /api/memberships/{ADA}/work_sessions")
    );
    assert_eq!(fake.check_ins().len(), 1);
    assert_eq!(fake.check_ins()[0].membership_id, ADA);

    let from = Utc.with_ymd_and_hms(2025, 6, 14, 22, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2025, 6, 15, 22, 0, 0).unwrap();
    let found = c.check_ins_between(ADA, from, to).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        fake.request_lines().last().unwrap(),
        &format!(
            "GET /api/memberships/{ADA}/check_ins?from=2025-06-14+22%3A00+%2B0000&to=2025-06-15+22%3A00+%2B0000"
        )
    );
}

#[tokio::test]
async fn final_4xx_check_ins_are_refused_and_5xx_are_retryable_errors() {
    let fake = fake().await;
    let c = client(&fake);
    let unknown = c
        .check_in("0000000000000000000000000000dead")
        .await
        .unwrap();
    assert!(matches!(
        unknown,
        CheckInOutcome::Refused { status: 404, .. }
    ));
    fake.set_fault("/api/memberships", Fault::Status(422));
    let refused = c.check_in(ADA).await.unwrap();
    assert_eq!(
        refused,
        CheckInOutcome::Refused {
            status: 422,
            reason: "injected fault".into()
        }
    );
    fake.set_fault("/api/memberships", Fault::Status(503));
    assert!(c.check_in(ADA).await.unwrap_err().is_retryable());
    fake.set_fault("/api/memberships", Fault::Status(408));
    assert!(c.check_in(ADA).await.unwrap_err().is_retryable());
    assert!(fake.check_ins().is_empty());
}

fn connect_params(fake: &FakeCobot, port: u16) -> ConnectParams {
    let f = fake.fixture();
    ConnectParams {
        www_url: fake.url(),
        subdomain: f.subdomain,
        client_id: f.oauth.client_id,
        client_secret: f.oauth.client_secret,
        redirect_uri: Url::parse(&format!("http://127.0.0.1:{port}/callback")).unwrap(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn connect_exchanges_the_redirected_code_for_a_space_bound_token() {
    let fake = fake().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (authorize, flow) = ConnectFlow::start(connect_params(&fake, port)).unwrap();

    // The "browser": Cobot redirects it to our listener.
    let browser = portier::tls::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let waiting = tokio::spawn(async move {
        let code = flow
            .wait_for_redirect(listener, Duration::from_secs(10))
            .await?;
        flow.finish(&code).await
    });
    let to_cobot = browser.get(authorize).send().await.unwrap();
    assert_eq!(to_cobot.status(), 302);
    let back = to_cobot.headers()["location"].to_str().unwrap().to_owned();
    let page = browser.get(back).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let token = waiting.await.unwrap().unwrap();
    assert_eq!(token, "admin-token");

    let lines = fake.request_lines();
    assert!(lines.contains(&"POST /oauth/access_token".to_owned()));
    assert!(lines.contains(&"GET /api/spaces/co-up".to_owned()));
    assert!(lines.contains(&"POST /api/access_tokens/fake-user-token/space".to_owned()));

    let dir = tempfile::tempdir().unwrap();
    store_token(dir.path(), &token).unwrap();
    let stored = load_stored_token(dir.path()).unwrap();
    let data = client_with(&fake, &stored, Duration::from_secs(5))
        .fetch(&FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(data.plans.len(), 3);
}

#[tokio::test]
async fn a_code_exchanged_without_the_matching_pkce_verifier_is_refused() {
    let fake = fake().await;
    let (authorize, _first) = ConnectFlow::start(connect_params(&fake, 8765)).unwrap();
    let browser = portier::tls::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(browser.get(authorize).send().await.unwrap().status(), 302);
    let (_, second) = ConnectFlow::start(connect_params(&fake, 8765)).unwrap();
    let err = second
        .exchange(&fake.fixture().oauth.code)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn a_pasted_redirect_url_works_like_the_listener() {
    let fake = fake().await;
    let (_, flow) = ConnectFlow::start(connect_params(&fake, 8765)).unwrap();
    let pasted = format!(
        "http://localhost:8765/callback?code={}&state={}",
        fake.fixture().oauth.code,
        flow.state()
    );
    let code = flow.code_from_pasted_url(&pasted).unwrap();
    // No authorize visit was recorded, so the fake has no challenge to hold the verifier to.
    assert_eq!(flow.finish(&code).await.unwrap(), "admin-token");
}

#[tokio::test]
async fn ten_thousand_memberships_are_fetched_and_read() {
    let mut fixture = Fixture::empty();
    fixture.plans = fixtures::plans();
    fixture.memberships = fixtures::large(10_000);
    let fake = FakeCobot::start(fixture).await.unwrap();
    let data = client(&fake).fetch(&FetchOptions::default()).await.unwrap();
    assert_eq!(data.memberships.len(), 10_000);
    assert!(data.malformed.is_empty());
    assert!(data.memberships.iter().all(|m| m.user_id.is_some()));
}

#[tokio::test]
async fn an_answer_over_the_size_limit_fails_as_malformed_instead_of_filling_memory() {
    let mut fixture = Fixture::empty();
    fixture.plans = fixtures::plans();
    fixture.memberships = fixtures::large(1_000);
    let fake = FakeCobot::start(fixture).await.unwrap();
    let limited = client(&fake).with_body_limit(64 * 1024);
    match limited.fetch(&FetchOptions::default()).await {
        Err(CobotError::Malformed { path, detail }) => {
            assert_eq!(path, "/api/memberships?all=true");
            assert!(detail.contains("larger than 65536 bytes"), "{detail}");
        }
        other => panic!("expected a malformed answer, got {other:?}"),
    }
    // The default limit reads the same answer.
    let data = client(&fake).fetch(&FetchOptions::default()).await.unwrap();
    assert_eq!(data.memberships.len(), 1_000);
}
