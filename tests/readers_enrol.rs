//! `portier enrol` against a real mosquitto: an enrolment reader (`enrol = true`) hands the
//! card it reads to the command — through the running daemon's API, or opened by the command
//! itself when no daemon runs — printed as each door reader would send it. It opens nothing
//! and is recorded nowhere.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::time::Duration;

use common::Run;
use mosquitto::Mosquitto;
use mqtt_site::{LOCK_TOPIC, MqttSite, events};
use portier_fake_cobot::fixtures::ADA_CARD;
use rumqttc::QoS;

const DESK_TOPIC: &str = "portier/readers/desk";

/// The standard site plus a desk reader for enrolment and a Wiegand door reader (its lines do
/// not exist here: it stays offline, which enrolment does not mind).
const EXTRA: &str = "[[reader]]\nid = \"desk\"\nenrol = true\ntopic = \"portier/readers/desk\"\n\n\
                     [[reader]]\nid = \"side\"\nkind = \"wiegand\"\nunit = \"front_door\"\n\
                     d0 = \"GPIO17\"\nd1 = \"GPIO27\"\n";

/// Runs `portier enrol args…` while a reader at the desk presents `card` every 200 ms until
/// the command is done.
async fn enrol_while_presenting(s: &MqttSite, args: &[&str], card: Option<&str>) -> Run {
    let mut all = vec!["enrol"];
    all.extend_from_slice(args);
    let command = s.site.portier(&all);
    tokio::pin!(command);
    let reader = s.publisher("test-desk").await;
    loop {
        tokio::select! {
            run = &mut command => return run,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(card) = card {
                    reader
                        .publish(DESK_TOPIC, QoS::AtLeastOnce, false, card)
                        .await
                        .unwrap();
                }
            }
        }
    }
}

fn check_enrolled(run: &Run) {
    run.expect_code(0);
    let shown = run.json();
    assert_eq!(shown["reader"], "desk", "{shown}");
    assert_eq!(shown["kind"], "mqtt", "{shown}");
    assert_eq!(shown["card"], ADA_CARD, "{shown}");
    assert!(shown["error"].is_null(), "{shown}");
    let doors = shown["door_readers"].as_array().unwrap();
    assert_eq!(doors.len(), 2, "the desk itself is no door reader: {shown}");
    let front = doors
        .iter()
        .find(|d| d["reader"] == "front_reader")
        .unwrap();
    assert_eq!(
        front["card"], ADA_CARD,
        "an MQTT door reader sends what the desk sends"
    );
    assert_eq!(front["unit"], "front_door");
    let side = doors.iter().find(|d| d["reader"] == "side").unwrap();
    assert!(side["card"].is_null(), "{shown}");
    assert!(
        side["note"].as_str().unwrap().contains("cannot be told"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_reads_a_card_through_the_running_daemon_and_opens_nothing() {
    let s = MqttSite::with_extra(Mosquitto::start().await, EXTRA).await;
    let d = s.start_daemon().await;
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;

    let run = enrol_while_presenting(&s, &["--reader", "desk", "--json"], Some(ADA_CARD)).await;
    check_enrolled(&run);

    // Human output names the card and each door reader's id.
    let run = enrol_while_presenting(&s, &["--reader", "desk"], Some("04:a1:b2:c3:d4")).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("card read on desk (mqtt): {ADA_CARD}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("front_reader (mqtt, front_door): {ADA_CARD}")),
        "{}",
        run.stdout
    );

    // Nothing was decided, opened or recorded.
    assert!(
        lock_commands
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "an enrolment read opened a lock"
    );
    assert!(events(&d).await.is_empty());
    let (_, status) = d.admin_get("/v1/status").await;
    let desk = &status["readers"]["desk"];
    assert_eq!(desk["enrol"], true, "{status}");
    assert!(desk["unit"].is_null(), "{status}");
    assert!(desk["last_frame_at"].is_string(), "{status}");
    let side = &status["readers"]["side"];
    assert_eq!(side["kind"], "wiegand", "{status}");
    assert_eq!(side["online"], false, "no GPIO lines here: {status}");
    assert!(
        side["bits"].is_null() && side["parity_ok"].is_null(),
        "{status}"
    );
    assert!(!status.to_string().contains(ADA_CARD), "{status}");

    // Nobody presents a card: the wait ends with a clear failure.
    let run = enrol_while_presenting(&s, &["--reader", "desk", "--wait", "1s"], None).await;
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("no card was read on \"desk\" within 1s"),
        "{}",
        run.stderr
    );

    // A door reader and an unknown one are usage errors.
    let run = s.site.portier(&["enrol", "--reader", "front_reader"]).await;
    run.expect_code(64);
    assert!(
        run.stderr.contains("door reader of unit \"front_door\""),
        "{}",
        run.stderr
    );
    let run = s.site.portier(&["enrol", "--reader", "nope"]).await;
    run.expect_code(64);
    assert!(
        run.stderr.contains("enrolment readers: desk"),
        "{}",
        run.stderr
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_enrol_opens_the_reader_itself() {
    let s = MqttSite::with_extra(Mosquitto::start().await, EXTRA).await;
    let run = enrol_while_presenting(&s, &["--reader", "desk", "--json"], Some(ADA_CARD)).await;
    check_enrolled(&run);
    // The command left no state behind.
    assert!(!s.site.dir.path().join("state").join("cache.sled").exists());
}
