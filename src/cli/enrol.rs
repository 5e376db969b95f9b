//! `portier enrol --reader ID`: reads one card on an enrolment reader and prints its id as
//! each door reader would send it, for the space manager to enter in Cobot.
//!
//! While the daemon runs it holds the reader (a grabbed USB device, requested GPIO lines), so
//! the card is read through its API (`GET /v1/enrol`, admin token). Otherwise this command
//! opens the reader itself for one read.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::output::{out, print_json};
use super::remote::{self, Answer};
use super::{EnrolArgs, Failure};
use crate::config::{Config, ReaderConfig};
use crate::readers::enrol::{EnrolRead, Enrolled, enrolled};
use crate::readers::{Readers, Transports};

/// Reads one card on `args.reader` and prints it.
pub(super) fn enrol(config: &Config, args: &EnrolArgs) -> Result<(), Failure> {
    let reader = enrolment_reader(config, &args.reader)?;
    let wait = humantime::parse_duration(&args.wait)
        .ok()
        .filter(|w| !w.is_zero() && *w <= Duration::from_secs(600))
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--wait {}: not a duration from 1s to 10m, like 60s",
                args.wait
            ))
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
    if !args.json {
        eprintln!(
            "present a card to reader \"{}\" (waiting up to {})",
            reader.id,
            humantime::format_duration(wait)
        );
    }
    let shown = if super::owner::daemon_holds(&config.site.state_dir) {
        runtime.block_on(through_daemon(config, &reader.id, &args.wait, wait))?
    } else {
        runtime.block_on(read_here(config, reader, wait))?
    };
    if args.json {
        print_json(&shown);
    } else {
        print(&shown);
    }
    match &shown.error {
        None => Ok(()),
        Some(why) => Err(Failure::Reported(if args.json {
            1
        } else {
            print_error(why)
        })),
    }
}

/// The `[[reader]]` called `id`, which must be an enrolment reader.
fn enrolment_reader<'c>(config: &'c Config, id: &str) -> Result<&'c ReaderConfig, Failure> {
    let Some(reader) = config.readers.iter().find(|r| r.id == id) else {
        let enrolment: Vec<&str> = config
            .readers
            .iter()
            .filter(|r| r.unit.is_none())
            .map(|r| r.id.as_str())
            .collect();
        return Err(Failure::Usage(format!(
            "{} has no reader \"{id}\" (enrolment readers: {})",
            config.path.display(),
            if enrolment.is_empty() {
                "none; add a [[reader]] with enrol = true".to_owned()
            } else {
                enrolment.join(", ")
            }
        )));
    };
    if let Some(unit) = &reader.unit {
        return Err(Failure::Usage(format!(
            "reader \"{id}\" is the door reader of unit \"{unit}\"; enrol reads a reader \
             with enrol = true (and no unit)"
        )));
    }
    Ok(reader)
}

/// Asks the running daemon for the next card on `id`.
async fn through_daemon(
    config: &Config,
    id: &str,
    wait_text: &str,
    wait: Duration,
) -> Result<Enrolled, Failure> {
    let daemon = remote::Daemon::new(config)?;
    // The daemon answers when the wait is up; the connection may take a little longer.
    match daemon
        .get_within(
            "/v1/enrol",
            &[("reader", id), ("wait", wait_text)],
            wait + Duration::from_secs(30),
        )
        .await?
    {
        Answer::Ok(shown) => Ok(shown),
        Answer::Err(status, message) => Err(remote::failure(status, message)),
    }
}

/// Opens the reader here, for one read.
async fn read_here(
    config: &Config,
    reader: &ReaderConfig,
    wait: Duration,
) -> Result<Enrolled, Failure> {
    let (frames_tx, mut frames) = mpsc::channel(8);
    let (table_tx, table) = watch::channel(Arc::default());
    let (stop, stopped) = watch::channel(false);
    let mqtt = match (&config.mqtt, reader.topic()) {
        (Some(mqtt), Some(_)) => {
            let password = mqtt
                .password_file
                .as_deref()
                .map(crate::config::read_secret)
                .transpose()
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            Some(
                crate::mqtt::connect(mqtt, password, true, None)
                    .map_err(|e| Failure::Runtime(e.to_string()))?,
            )
        }
        _ => None,
    };
    let readers = Readers::new(
        std::slice::from_ref(reader),
        Transports {
            mqtt: mqtt.as_ref(),
            keyboards: Arc::new(crate::readers::hid::Evdev),
            gpio: Arc::new(crate::readers::wiegand::Gpiocdev),
        },
        frames_tx,
        table_tx,
    );
    let broker = mqtt.map(|connection| tokio::spawn(connection.run(stopped)));
    let read = tokio::time::timeout(wait, async {
        while let Some(frame) = frames.recv().await {
            let Some(served) = table.borrow().get(&frame.reader).cloned() else {
                continue;
            };
            if let Some(read) = EnrolRead::of(&served, frame) {
                return Some(read);
            }
        }
        None
    })
    .await;
    // Let go of the device (and the broker) before printing.
    readers.apply(&[]);
    stop.send_replace(true);
    if let Some(broker) = broker {
        let _ = broker.await;
    }
    match read {
        Ok(Some(read)) => Ok(enrolled(&read, reader, &config.readers)),
        Ok(None) => Err(Failure::Runtime(format!(
            "reader \"{}\" stopped",
            reader.id
        ))),
        Err(_) => {
            let status = table_status(&table, &reader.id);
            Err(Failure::Runtime(format!(
                "no card was read on \"{}\" within {}{status}",
                reader.id,
                humantime::format_duration(wait)
            )))
        }
    }
}

/// What is known of why a reader read nothing (its device never opened), for the message.
fn table_status(table: &watch::Receiver<Arc<crate::readers::Table>>, id: &str) -> String {
    let statuses = crate::readers::statuses(&table.borrow());
    match statuses.get(id).and_then(|s| s.online) {
        Some(false) => " (its device could not be opened: see the log above)".to_owned(),
        _ => String::new(),
    }
}

/// The human form.
fn print(shown: &Enrolled) {
    let bits = shown
        .bits
        .map(|b| format!(", {b} bits"))
        .unwrap_or_default();
    match &shown.card {
        Some(card) => out!(
            "card read on {} ({}{bits}): {card}",
            shown.reader,
            shown.kind
        ),
        None => out!("no card read on {} ({}{bits})", shown.reader, shown.kind),
    }
    if shown.door_readers.is_empty() {
        return;
    }
    out!("as the door readers send it (enter this in Cobot as the member's card):");
    for door in &shown.door_readers {
        match (&door.card, &door.note) {
            (Some(card), _) => out!("  {} ({}, {}): {card}", door.reader, door.kind, door.unit),
            (None, note) => out!(
                "  {} ({}, {}): -  {}",
                door.reader,
                door.kind,
                door.unit,
                note.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Says why the read was no card; the exit code.
fn print_error(why: &str) -> u8 {
    eprintln!("portier: the read was no card: {why}; present the card again");
    1
}
