//! The member page against `portier run`, the simulated Cobot (with its member login app:
//! authorize, access token, `/api/user`) and a real mosquitto: log in with Cobot (PKCE, state
//! tied to the browser), see the doors the engine grants now, open one (the MQTT lock gets its
//! command; the event is the member's, `via: "member_page"`), be refused with the reason,
//! keep opening while Cobot is down, log out; an expired or revoked session is back to the
//! login; forged requests are refused. In a real headless Chromium too.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;
#[path = "common/web.rs"]
mod web;

use std::time::Duration;

use mosquitto::Mosquitto;
use mqtt_site::{LOCK_TOPIC, MqttSite, wait_events};
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::{ADA, BARBARA, user_id_of};
use serde_json::Value;
use web::{client, set_cookie};

const SECRET: &str = "portier-members-secret";

/// The site with the member page on, sessions lasting `ttl`.
async fn site(ttl: &str) -> MqttSite {
    let broker = Mosquitto::start().await;
    let site = common::Site::start().await;
    common::write_secret(&site.path("member.secret"), SECRET);
    let extra = format!(
        "[member_page]\nenabled = true\nclient_id = \"portier-members\"\n\
         client_secret_file = \"member.secret\"\npublic_url = \"http://127.0.0.1:{{http_port}}\"\n\
         session_ttl = \"{ttl}\"\n"
    );
    let text = mqtt_site::config(&broker, &extra);
    MqttSite::with_config(site, broker, &text).await
}

/// A browser's login as the member with `email`: returns the session cookie (`name=value`)
/// or the failed callback's answer.
async fn log_in(base: &str, email: &str) -> Result<String, (u16, String)> {
    let http = client();
    let start = http.get(format!("{base}/m/login")).send().await.unwrap();
    assert_eq!(start.status(), 303, "{:?}", start.text().await);
    let attempt = set_cookie(&start, "portier_login").unwrap();
    assert!(
        attempt.contains("HttpOnly") && attempt.contains("SameSite=Lax"),
        "{attempt}"
    );
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&authorize).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "portier-members");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].contains("openid") && q["scope"].contains("read_user"));
    assert_eq!(q["redirect_uri"], format!("{base}/auth/callback"));
    assert!(!authorize.contains('@'), "no member data in URLs");
    // The member logs in at Cobot, which sends the browser back with a code.
    let at_cobot = http
        .get(format!("{authorize}&email={}", email.replace('@', "%40")))
        .send()
        .await
        .unwrap();
    assert_eq!(at_cobot.status(), 302, "{:?}", at_cobot.text().await);
    let back = at_cobot.headers()["location"].to_str().unwrap().to_owned();
    let cookie = attempt.split(';').next().unwrap().to_owned();
    let callback = http
        .get(&back)
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    if callback.status() != 303 {
        let status = callback.status().as_u16();
        return Err((status, callback.text().await.unwrap()));
    }
    let session = set_cookie(&callback, "portier_member").unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    Ok(session.split(';').next().unwrap().to_owned())
}

/// The page of a session, and its CSRF token.
async fn page(base: &str, session: &str) -> (String, String) {
    web::page_and_csrf(&format!("{base}/m/"), session).await
}

async fn open(base: &str, session: &str, csrf: &str, unit: &str) -> (u16, Value) {
    let answer = client()
        .post(format!("{base}/m/open/{unit}"))
        .header("Cookie", session)
        .header("X-CSRF-Token", csrf)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_logs_in_with_cobot_opens_a_door_is_refused_another_and_keeps_opening_offline() {
    let s = site("30d").await;
    let d = s.start_daemon().await;
    let base = format!("http://127.0.0.1:{}", s.port);
    let (_l, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;

    // Without a session: the way to log in, no doors.
    let (html, csrf) = page(&base, "").await;
    assert!(html.contains("href=\"/m/login\""), "{html}");
    assert!(csrf.is_empty());

    let ada = log_in(&base, "ada.lovelace@example.com").await.unwrap();
    let (html, csrf) = page(&base, &ada).await;
    assert!(
        html.contains("<button type=\"button\" data-unit=\"front_door\">"),
        "{html}"
    );
    assert!(html.contains("data-unit=\"office\""), "{html}");
    assert!(html.contains("role=\"status\""));
    assert!(html.contains("Ada Lovelace"), "{html}");
    assert!(!csrf.is_empty());

    // Open: the lock gets its command, the log has the member and the way in.
    let (status, answer) = open(&base, &ada, &csrf, "front_door").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["opened"], true, "{answer}");
    let unlock = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"));
    let event = wait_events(&d, 1).await[0].clone();
    assert_eq!(event["member"], ADA, "{event}");
    assert_eq!(event["credential_kind"], "app");
    assert_eq!(event["via"], "member_page");

    // Barbara (Part Time, no staff) may not open the office: the page says why, and a press
    // anyway is refused with the reason; the lock hears nothing.
    let barbara = log_in(&base, "barbara.liskov@example.com").await.unwrap();
    let (html, barbara_csrf) = page(&base, &barbara).await;
    assert!(!html.contains("data-unit=\"office\""), "{html}");
    assert!(html.contains("<strong>office</strong>"), "{html}");
    assert!(
        html.contains("(no opening for you in the next 7 days)"),
        "office needs staff, which no plan of hers gives: {html}"
    );
    let (status, answer) = open(&base, &barbara, &barbara_csrf, "office").await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["opened"], false);
    assert!(!answer["reason"].as_str().unwrap().is_empty(), "{answer}");
    let _relock = lock_commands.next_within(Duration::from_secs(2)).await;
    assert!(
        lock_commands
            .next_within(Duration::from_millis(500))
            .await
            .is_none()
    );
    let events = wait_events(&d, 2).await;
    assert_eq!(events[1]["member"], BARBARA, "{}", events[1]);
    assert_eq!(events[1]["granted"], false);

    // Forged: another session's CSRF token, no token, no session.
    assert_eq!(open(&base, &ada, &barbara_csrf, "front_door").await.0, 403);
    assert_eq!(open(&base, &ada, "", "front_door").await.0, 403);
    assert_eq!(open(&base, "", &csrf, "front_door").await.0, 401);

    // Cobot's API goes down: the logged-in member still opens, from the cache.
    s.site.cobot.set_fault("/api/", Fault::Status(503));
    s.site
        .cobot
        .set_fault("/oauth/access_token", Fault::Status(503));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, answer) = open(&base, &ada, &csrf, "front_door").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["opened"], true, "{answer}");
    // … but nobody new logs in meanwhile (Cobot's login page answers, its API does not).
    let refused = log_in(&base, "ada.lovelace@example.com").await.unwrap_err();
    assert_eq!(refused.0, 502, "{refused:?}");
    assert!(
        refused.1.contains("Cobot could not be asked"),
        "{refused:?}"
    );
    s.site.cobot.clear_faults();

    // Logout ends the session (it stays ended after a restart, as it was kept in the store).
    let out = client()
        .post(format!("{base}/m/logout"))
        .header("Cookie", &ada)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(open(&base, &ada, &csrf, "front_door").await.0, 401);

    // An admin revokes Barbara's sessions.
    let (status, body) = d
        .post_json(
            "/v1/admin/member-sessions/revoke",
            &serde_json::json!({ "user": user_id_of(BARBARA) }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], 1);
    assert_eq!(
        open(&base, &barbara, &barbara_csrf, "front_door").await.0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_logins_need_their_own_browser_and_strangers_are_told_why() {
    let s = site("2s").await;
    let _d = s.start_daemon().await;
    let base = format!("http://127.0.0.1:{}", s.port);

    // A callback without the attempt's cookie (a link sent to someone else) is refused.
    let http = client();
    let start = http.get(format!("{base}/m/login")).send().await.unwrap();
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let back = http
        .get(format!("{authorize}&email=ada.lovelace%40example.com"))
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let stolen = http.get(&back).send().await.unwrap();
    assert_eq!(stolen.status(), 400);
    assert!(
        stolen
            .text()
            .await
            .unwrap()
            .contains("expired or was started elsewhere")
    );

    // A Cobot user without a membership here is told so (Alan is not connected).
    let charles = log_in(&base, "charles.babbage@example.com").await;
    match charles {
        Err((403, html)) => assert!(html.contains("no membership"), "{html}"),
        Err((status, html)) if status == 400 || status == 401 => {
            // No Cobot account with that email at all: Cobot refused before the callback.
            panic!("{status}: {html}")
        }
        other => {
            // Charles's membership was cancelled, but he is synced: he may log in and is
            // then told by each door why it stays shut.
            let session = other.unwrap();
            let (html, _) = page(&base, &session).await;
            assert!(html.contains("No door opens for you right now"), "{html}");
        }
    }

    // The session ends after its time: back to the login.
    let ada = log_in(&base, "ada.lovelace@example.com").await.unwrap();
    let (_, csrf) = page(&base, &ada).await;
    assert_eq!(open(&base, &ada, &csrf, "front_door").await.0, 200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (html, _) = page(&base, &ada).await;
    assert!(html.contains("href=\"/m/login\""), "{html}");
    assert_eq!(open(&base, &ada, &csrf, "front_door").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_logs_in_and_opens_a_door_from_a_real_browser() {
    let s = site("30d").await;
    let d = s.start_daemon().await;
    let (_l, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let shots = tempfile::tempdir().unwrap();
    let shot = shots.path().join("member-page.png");
    let base = format!("http://127.0.0.1:{}", s.port);
    let seen = browser::run(
        "member_browser.py",
        &[
            &base,
            "ada.lovelace@example.com",
            "front_door",
            "barbara.liskov@example.com",
            "office",
            shot.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        seen["url_after_login"].as_str().unwrap().ends_with("/m/"),
        "{seen:#}"
    );
    assert_eq!(seen["opened"], "front_door is open.", "{seen:#}");
    assert_eq!(seen["denied"]["status"], 403, "{seen:#}");
    assert!(
        !seen["denied"]["body"]["reason"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{seen:#}"
    );
    assert!(seen["closed"].to_string().contains("office"), "{seen:#}");
    assert!(
        seen["service_worker"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/m/sw.js"),
        "{seen:#}"
    );
    assert_eq!(seen["logged_out"], true);
    let unlock = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"));
    let events = wait_events(&d, 2).await;
    assert_eq!(events[0]["member"], ADA, "{}", events[0]);
    assert_eq!(events[0]["via"], "member_page");
    assert_eq!(events[1]["member"], BARBARA, "{}", events[1]);
    assert_eq!(events[1]["granted"], false, "{}", events[1]);
    browser::check_screenshot(&shot, 380, 600, "member-page.png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cobot_link_adds_the_member_portal_link_once_and_removes_it() {
    let s = site("30d").await;
    let target = format!("http://127.0.0.1:{}/m/", s.port);
    let run = s.site.portier(&["cobot", "link"]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("added \"Open doors\""),
        "{}",
        run.stdout
    );
    let links = s.site.cobot.navigation_links();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["section"], "members");
    assert_eq!(links[0]["iframe_url"], target.as_str());
    // Again: nothing doubled.
    let again = s.site.portier(&["cobot", "link"]).await;
    again.expect_code(0);
    assert!(again.stdout.contains("already"), "{}", again.stdout);
    assert_eq!(s.site.cobot.navigation_links().len(), 1);
    let removed = s.site.portier(&["cobot", "link", "--remove"]).await;
    removed.expect_code(0);
    assert!(removed.stdout.contains("removed"), "{}", removed.stdout);
    assert!(s.site.cobot.navigation_links().is_empty());

    // Without the member page there is nothing to link to.
    let plain = common::Site::start().await;
    plain.write_config(&common::site_config(), common::free_port());
    let refused = plain.portier(&["cobot", "link"]).await;
    refused.expect_code(64);
    assert!(
        refused.stderr.contains("member page is not enabled"),
        "{}",
        refused.stderr
    );
}

/// The member's session value, logged in over HTTP while Cobot answers.
async fn session_value(base: &str, email: &str) -> String {
    let session = log_in(base, email).await.unwrap();
    session.split_once('=').unwrap().1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_a_member_opens_while_cobot_is_down_and_an_ended_session_goes_back_to_the_login()
 {
    // Logged in while Cobot answered; then Cobot goes down: the page still opens the door.
    let s = site("30d").await;
    let d = s.start_daemon().await;
    let (_l, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let base = format!("http://127.0.0.1:{}", s.port);
    let ada = session_value(&base, "ada.lovelace@example.com").await;
    s.site.cobot.set_fault("/", Fault::Status(503));
    let seen = browser::run(
        "member_session_browser.py",
        &[&base, &ada, "front_door", "0"],
    )
    .await;
    assert_eq!(seen["opened"], "front_door is open.", "{seen:#}");
    assert_eq!(seen["after_wait"], "doors", "{seen:#}");
    let unlock = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"));
    assert_eq!(wait_events(&d, 1).await[0]["via"], "member_page");
    drop(d);

    // A session of 3 s: after it, the page is the login again.
    let s = site("3s").await;
    let _d = s.start_daemon().await;
    let base = format!("http://127.0.0.1:{}", s.port);
    let ada = session_value(&base, "ada.lovelace@example.com").await;
    let seen = browser::run(
        "member_session_browser.py",
        &[&base, &ada, "front_door", "3.5"],
    )
    .await;
    assert_eq!(seen["opened"], "front_door is open.", "{seen:#}");
    assert_eq!(seen["after_wait"], "login", "{seen:#}");
}
