//! The installer page against `portier run` on a real mosquitto: driven in a real headless
//! Chromium (Debian's `chromium` and `chromium-driver`, through Selenium from the test venv):
//! log in, see the doors and the last decisions, pulse a door (the MQTT lock gets its command,
//! the event says the page did it), take a screenshot, log out. And from plain HTTP: no
//! password means loopback only (a rebinding `Host` is refused), a page request without a
//! session gets the login form, state-changing requests need the CSRF token, failed logins are
//! limited.
//!
//! The browser runs on the Python that `scripts/test` prepares (`target/test-peers`, or
//! `$PORTIER_TEST_PYTHON`).

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
use mqtt_site::{LOCK_TOPIC, MqttSite, READER_TOPIC, wait_events};
use portier_fake_cobot::fixtures::ADA_CARD;
use rumqttc::QoS;
use serde_json::Value;
use web::client;

const PASSWORD: &str = "front desk 4711";

async fn site_with_password(password: Option<&str>) -> MqttSite {
    let extra = if password.is_some() {
        "page_password_file = \"page.password\"\n"
    } else {
        ""
    };
    let broker = Mosquitto::start().await;
    let site = common::Site::start().await;
    if let Some(password) = password {
        common::write_secret(&site.path("page.password"), password);
    }
    let text = mqtt_site::config(&broker, "").replace("[http]\n", &format!("[http]\n{extra}"));
    MqttSite::with_config(site, broker, &text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installer_logs_in_sees_the_doors_pulses_one_and_logs_out_in_a_real_browser() {
    let s = site_with_password(Some(PASSWORD)).await;
    let d = s.start_daemon().await;
    let (_l, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    // A decision to show: Ada's card at the front door.
    let reader = s.publisher("test-reader").await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    wait_events(&d, 1).await;
    assert!(
        lock_commands
            .next()
            .await
            .payload
            .starts_with(b"{\"state\":\"UNLOCK\"")
    );
    let _relock = lock_commands.next().await;

    let shots = tempfile::tempdir().unwrap();
    let shot = shots.path().join("installer-page.png");
    let base = format!("http://127.0.0.1:{}", s.port);
    let shot_path = shot.to_str().unwrap();
    let seen = browser::run(
        "page_browser.py",
        &[&base, PASSWORD, "front_door", shot_path],
    )
    .await;
    assert_eq!(seen["wrong_password"], "Wrong password.", "{seen:#}");
    assert_eq!(
        seen["doors"],
        serde_json::json!(["building", "front_door", "office"]),
        "{seen:#}"
    );
    assert!(
        seen["lock_state"].as_str().unwrap().contains("Locked"),
        "{seen:#}"
    );
    let first = seen["first_decision"].as_str().unwrap();
    assert!(first.starts_with("Granted front_door"), "{seen:#}");
    assert!(!first.contains(ADA_CARD), "{seen:#}");
    assert!(
        seen["confirmation"]
            .as_str()
            .unwrap()
            .contains("front_door"),
        "{seen:#}"
    );
    assert_eq!(seen["outcome"], "front_door opened.", "{seen:#}");
    assert!(
        seen["new_decision"]
            .as_str()
            .unwrap()
            .starts_with("Granted front_door · page"),
        "{seen:#}"
    );
    assert!(
        seen["readers"].to_string().contains("front_reader"),
        "{seen:#}"
    );
    assert_eq!(seen["logged_out"], true);

    // The pulse reached the lock and is in the log as the page's.
    let unlock = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"));
    let events = wait_events(&d, 2).await;
    assert_eq!(events[1]["via"], "page", "{}", events[1]);
    assert_eq!(events[1]["credential_kind"], "admin");

    // The screenshot is a real picture of the page.
    browser::check_screenshot(&shot, 400, 800, "installer-page.png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_refuses_strangers_requests_without_a_session_or_csrf_token_and_guessers() {
    // Without a password: loopback only, and only under a loopback name.
    let s = site_with_password(None).await;
    let _d = s.start_daemon().await;
    let base = format!("http://127.0.0.1:{}", s.port);
    let http = client();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Pulse") || html.contains("doors"), "{html}");
    let rebound = http
        .get(format!("{base}/"))
        .header("Host", format!("evil.example:{}", s.port))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let state = http
        .get(format!("{base}/page/state"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 403);
    // A pulse without the CSRF token, from the box itself: refused.
    let pulse = http
        .post(format!("{base}/page/units/front_door/pulse"))
        .send()
        .await
        .unwrap();
    assert_eq!(pulse.status(), 403);
    let body: Value = pulse.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("CSRF"), "{body}");
    drop(_d);

    // With a password: a request without a session gets the login form, never the data.
    let s = site_with_password(Some(PASSWORD)).await;
    let d = s.start_daemon().await;
    let base = format!("http://127.0.0.1:{}", s.port);
    let login_form = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(login_form.status(), 200);
    assert!(
        login_form
            .text()
            .await
            .unwrap()
            .contains("name=\"password\"")
    );
    for path in ["/page/state", "/page/events"] {
        let refused = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
    }
    let pulse = http
        .post(format!("{base}/page/units/front_door/pulse"))
        .header("X-CSRF-Token", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(pulse.status(), 401);

    // Logged in: the cookie is HttpOnly and SameSite=Strict; the data answers; a pulse still
    // needs the page's CSRF token.
    let login = http
        .post(format!("{base}/login"))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let state = http
        .get(format!("{base}/page/state"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 200);
    let state: Value = state.json().await.unwrap();
    assert_eq!(state["units"][1]["id"], "front_door", "{state}");
    let forged = http
        .post(format!("{base}/page/units/front_door/pulse"))
        .header("Cookie", &session)
        .header("X-CSRF-Token", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let (_, csrf) = web::page_and_csrf(&format!("{base}/"), &session).await;
    assert!(!csrf.is_empty(), "the page has a CSRF token");
    let pulse = http
        .post(format!("{base}/page/units/front_door/pulse"))
        .header("Cookie", &session)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(pulse.status(), 200);
    let outcome: Value = pulse.json().await.unwrap();
    assert_eq!(outcome["opened"], true, "{outcome}");
    let unknown = http
        .post(format!("{base}/page/units/vault/pulse"))
        .header("Cookie", &session)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Guessing the password: limited per address.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let answer = http
            .post(format!("{base}/login"))
            .form(&[("password", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(statuses[..10], [401; 10]);
    assert_eq!(statuses[10], 429);
    let right = http
        .post(format!("{base}/login"))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 429, "blocked even with the right password");
    let metrics = d.metrics().await;
    assert!(metrics.contains("portier_auth_failures_total"), "{metrics}");

    // A page left open (its event stream) does not hold up a stop.
    let stream = http
        .get(format!("{base}/page/events"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut d = d;
    let stopping = tokio::time::Instant::now();
    d.signal("TERM");
    let exited = tokio::time::timeout(Duration::from_secs(10), d.child.wait())
        .await
        .expect("stopped")
        .unwrap();
    assert!(exited.success());
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}: the open stream held the stop up",
        stopping.elapsed()
    );
    drop(stream);
}
