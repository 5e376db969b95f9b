//! Writes a state directory in the store format of this commit, for the upgrade test: the demo
//! site synced from the simulated Cobot (standard fixtures of 2026-11-20), four events (one
//! check-in sent, one still pending in the outbox) and one cached app token.
//!
//! `cargo run --example make_store_fixture -- DIR` then
//! `tar -C DIR -czf tests/fixtures/state-format-1.tar.gz state`

use std::os::unix::fs::PermissionsExt;

use chrono::{DateTime, NaiveDate, Utc};
use portier::cobot::fake::{FakeCobot, Fixture};
use portier::cobot::fixtures::{ADA, MARGARET, user_id_of};
use portier::config::Config;
use portier::store::{CheckInResult, CredentialKind, NewEvent, Store, token_hash};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: DIR")?);
    std::fs::create_dir_all(&dir)?;
    let day = NaiveDate::from_ymd_opt(2026, 11, 20).ok_or("date")?;
    let at = |h: u32, m: u32| -> DateTime<Utc> {
        day.and_hms_opt(h, m, 0).unwrap_or_default().and_utc()
    };
    let cobot = FakeCobot::start(Fixture::standard(day)).await?;
    let config_text = portier::demo::DEMO_CONFIG.replace(
        "{api}",
        cobot.url().as_str().trim_end_matches('/'),
    );
    std::fs::write(dir.join("portier.toml"), config_text)?;
    for secret in ["cobot.token", "admin.token"] {
        std::fs::write(dir.join(secret), "admin-token\n")?;
        std::fs::set_permissions(dir.join(secret), std::fs::Permissions::from_mode(0o600))?;
    }
    let config = Config::load(&dir.join("portier.toml")).map_err(|e| e.to_string())?;
    let store = Store::open(&config.site.state_dir)?;
    let client = portier::sync::cobot_client(&config, "admin-token".into())?;
    let result =
        portier::sync::sync_once(&config, &store, &client, false, None, || at(9, 0)).await?;
    println!("synced: {} members", result.summary.members);

    let event = |time, unit: &str, member: Option<&str>, kind, granted, reason: &str, id: &str| {
        NewEvent {
            time,
            unit: unit.into(),
            member: member.map(Into::into),
            credential_kind: kind,
            granted,
            reason: reason.into(),
            decision_id: id.into(),
            reader: Some("front_reader".into()),
            opened: granted,
            lock_error: None,
            check_in_day: granted.then_some(day),
        }
    };
    let first = store
        .append_event(event(
            at(9, 5),
            "front_door",
            Some(ADA),
            CredentialKind::Card,
            true,
            "Ada Lovelace: Full Time grants building",
            "d-0001",
        ))
        .await?;
    store
        .append_event(event(
            at(9, 6),
            "front_door",
            None,
            CredentialKind::Card,
            false,
            "unknown card 0BADCAFE",
            "d-0002",
        ))
        .await?;
    store
        .append_event(event(
            at(9, 7),
            "front_door",
            Some(MARGARET),
            CredentialKind::App,
            true,
            "Margaret Hamilton: Flex grants front_door during a booking",
            "d-0003",
        ))
        .await?;
    store
        .append_event(event(
            at(12, 0),
            "front_door",
            Some(ADA),
            CredentialKind::Card,
            true,
            "Ada Lovelace: Full Time grants building",
            "d-0004",
        ))
        .await?;
    let tasks = store.pending_check_ins()?;
    let ada = tasks
        .iter()
        .find(|t| t.member == ADA && t.event_seq == first.seq)
        .ok_or("Ada's check-in is not pending")?;
    store.finish_check_in(ada, CheckInResult::Sent).await?;
    store.remember_app_token(
        token_hash(&format!("app-{MARGARET}")),
        &user_id_of(MARGARET),
        at(9, 7),
    )?;
    println!(
        "events: {}, pending check-ins: {}",
        store.events_after(0, 100)?.len(),
        store.outbox_depth()?
    );
    Ok(())
}
