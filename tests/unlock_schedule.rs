//! Unlock schedules against `portier run` on a real mosquitto: a unit with `unlocked = [...]`
//! is held open in its windows without anyone at the door (one event says so), a lockdown
//! locks it and its end opens it again, a reload that removes the schedule locks it at once,
//! and a restart asserts the hold again. The windows' edges (to the minute, holidays, the
//! clock) are `domain::hold`'s unit tests.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::time::Duration;

use mosquitto::{Mosquitto, Received};
use mqtt_site::{LOCK_TOPIC, MqttSite, wait_events};

const ALWAYS: &str = "unlocked = [\"00:00-24:00\"]";

/// The next lock command, as text.
async fn command(commands: &mut Received, within: Duration) -> Option<String> {
    commands
        .next_within(within)
        .await
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
}

fn is_unlock(command: &str) -> bool {
    command.contains("UNLOCK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_is_held_open_in_its_window_through_lockdowns_reloads_and_restarts() {
    let broker = Mosquitto::start().await;
    let text = mqtt_site::config(&broker, "").replace(
        "open_for = \"300ms\"",
        &format!("open_for = \"300ms\"\n{ALWAYS}"),
    );
    assert!(text.contains(ALWAYS));
    let s = MqttSite::with_config(common::Site::start().await, broker, &text).await;
    let (_l, mut commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let d = s.start_daemon().await;

    // Held open with nobody at the door, and it stays open past the unit's 300 ms.
    let first = command(&mut commands, Duration::from_secs(10))
        .await
        .expect("the hold's unlock");
    assert!(is_unlock(&first), "{first}");
    let event = wait_events(&d, 1).await[0].clone();
    assert_eq!(event["granted"], true, "{event}");
    assert_eq!(event["opened"], true, "{event}");
    assert_eq!(event["via"], "schedule", "{event}");
    assert!(
        event["reason"]
            .as_str()
            .unwrap()
            .contains("unlock schedule (00:00-24:00)"),
        "{event}"
    );
    assert_eq!(
        command(&mut commands, Duration::from_secs(2)).await,
        None,
        "no relock while the window lasts"
    );

    // A lockdown locks it and keeps it locked; its end opens it again.
    s.site
        .portier(&["lockdown", "on", "--reason", "drill"])
        .await
        .expect_code(0);
    let locked = command(&mut commands, Duration::from_secs(5))
        .await
        .expect("locked at the lockdown");
    assert!(!is_unlock(&locked), "{locked}");
    assert_eq!(command(&mut commands, Duration::from_secs(2)).await, None);
    s.site.portier(&["lockdown", "off"]).await.expect_code(0);
    let again = command(&mut commands, Duration::from_secs(5))
        .await
        .expect("open again after the lockdown");
    assert!(is_unlock(&again), "{again}");

    // A reload that takes the schedule out locks the door at once.
    s.site.write_config(&text.replace(ALWAYS, ""), s.port);
    d.signal("HUP");
    let locked = command(&mut commands, Duration::from_secs(5))
        .await
        .expect("locked when the schedule is gone");
    assert!(!is_unlock(&locked), "{locked}");
    assert_eq!(command(&mut commands, Duration::from_secs(2)).await, None);

    // Back in, then a restart: the stop locks it, the start holds it open again.
    s.site.write_config(&text, s.port);
    d.signal("HUP");
    let open = command(&mut commands, Duration::from_secs(5))
        .await
        .expect("held again after the reload");
    assert!(is_unlock(&open), "{open}");
    let mut d = d;
    d.signal("TERM");
    let locked = command(&mut commands, Duration::from_secs(10))
        .await
        .expect("locked at the stop");
    assert!(!is_unlock(&locked), "{locked}");
    let _ = tokio::time::timeout(Duration::from_secs(10), d.child.wait()).await;
    drop(d);
    let _d = s.start_daemon().await;
    let open = command(&mut commands, Duration::from_secs(10))
        .await
        .expect("held again after the restart");
    assert!(is_unlock(&open), "{open}");
}
