//! An OSDP reader's control panel on a thread of its own, bridged into tokio.
//!
//! The thread refreshes libosdp every [`REFRESH`] (the protocol wants at most 50 ms), sends
//! the reader's feedback, and hands card reads to the reader loop without ever waiting on it.
//! A reader that stopped answering is asked again every 2 s (libosdp's wait, set at build time
//! in `.cargo/config.toml`; its own default is five minutes), so it is back, secure channel
//! included, within seconds of answering again. One panel serves the reader for as long as it
//! is in service: libosdp keeps the channel it is given until the process ends, so a panel is
//! never built again for a reader that is merely offline. The thread ends when the reader is
//! taken out of service (its task is dropped) or the reader loop is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use libosdp::{
    ControlPanel, ControlPanelBuilder, OsdpCommand, OsdpCommandBuzzer, OsdpCommandLed, OsdpEvent,
    OsdpFlag, OsdpLedColor, OsdpLedParams, PdInfoBuilder,
};
use tokio::sync::oneshot;

use super::Feedback;
use super::serial::{PortProblem, SerialChannel};
use crate::config::OsdpLink;
use crate::readers::device::{Attached, REOPEN};

/// How often the panel is refreshed.
pub(crate) const REFRESH: Duration = Duration::from_millis(20);

/// Serves an OSDP reader until the task is dropped (a reload took the reader out) or the
/// reader loop is gone.
pub(crate) async fn serve(attached: Attached, link: OsdpLink, feedback: mpsc::Receiver<Feedback>) {
    let stop = Arc::new(AtomicBool::new(false));
    // Dropping this task (an abort) tells the thread to stop.
    let _stop = StopOnDrop(Arc::clone(&stop));
    let (done, ended) = oneshot::channel();
    let id = attached.id.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("osdp-{id}"))
        .spawn(move || {
            run(&attached, &link, &feedback, &stop);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = ended.await;
        }
        Err(e) => tracing::error!(reader = %id, error = %e, "cannot start the OSDP panel thread"),
    }
}

/// Waits on the panel's own thread (never a tokio worker): libosdp is refreshed by a thread
/// that sleeps between calls.
#[allow(clippy::disallowed_methods)] // reason: a dedicated thread, not the runtime's
pub(crate) fn pause(time: Duration) {
    std::thread::sleep(time);
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The thread: reads the key and builds the panel (again every 2 s while either fails), then
/// refreshes it until told to stop.
fn run(
    attached: &Attached,
    link: &OsdpLink,
    feedback: &mpsc::Receiver<Feedback>,
    stop: &AtomicBool,
) {
    if link.scbk_file.is_none() {
        tracing::warn!(reader = %attached.id,
            "OSDP reader without scbk_file: card ids cross the bus unencrypted");
    }
    while !stop.load(Ordering::Relaxed) && !attached.frames.is_closed() {
        let key = match link.scbk_file.as_deref().map(crate::config::read_key) {
            None => None,
            Some(Ok(key)) => Some(key),
            Some(Err(e)) => {
                set_state(
                    attached,
                    false,
                    None,
                    Some(format!("secure channel key: {e}")),
                );
                pause(REOPEN);
                continue;
            }
        };
        let port_problem = PortProblem::default();
        let panel = match build(attached, link, key, &port_problem) {
            Ok(panel) => panel,
            Err(e) => {
                set_state(
                    attached,
                    false,
                    None,
                    Some(format!("cannot set up OSDP: {e}")),
                );
                pause(REOPEN);
                continue;
            }
        };
        refresh(
            attached,
            link,
            key.is_some(),
            panel,
            &port_problem,
            feedback,
            stop,
        );
    }
}

/// A control panel for the one reader on `link`, its card reads handed to the reader loop.
fn build(
    attached: &Attached,
    link: &OsdpLink,
    key: Option<[u8; 16]>,
    port_problem: &PortProblem,
) -> Result<ControlPanel, libosdp::OsdpError> {
    // With a key, only that key: never the install key, and so never an automatic key set.
    let mut panel = control_panel(&attached.id, link, key, key.is_some(), port_problem)?;
    let reads = attached.clone();
    panel.set_event_callback(move |_, event| {
        if let OsdpEvent::CardRead(read) = event {
            deliver(&reads, &read.data, read.nr_bits);
        }
        0
    });
    Ok(panel)
}

/// A control panel for the one reader on `link`, on the secure channel with `key` when
/// given (`enforce`: with that key alone).
pub(crate) fn control_panel(
    name: &str,
    link: &OsdpLink,
    key: Option<[u8; 16]>,
    enforce: bool,
    port_problem: &PortProblem,
) -> Result<ControlPanel, libosdp::OsdpError> {
    let mut pd = PdInfoBuilder::new()
        .name(name)?
        .address(i32::from(link.address))?
        .baud_rate(i32::try_from(link.baud).unwrap_or(115_200))?;
    if let Some(key) = key {
        pd = pd.secure_channel_key(key);
    }
    if enforce {
        pd = pd.flag(OsdpFlag::EnforceSecure);
    }
    let channel = SerialChannel::new(link.port.clone(), link.baud, Arc::clone(port_problem));
    ControlPanelBuilder::new()
        .add_channel(Box::new(channel), vec![pd])
        .build()
}

/// Hands a card read to the reader loop, never waiting (the panel must keep its timing).
fn deliver(attached: &Attached, data: &[u8], bits: usize) {
    {
        let mut status = attached.status();
        status.bits = u32::try_from(bits).ok();
        status.format = Some("raw");
        status.last_frame_at = Some(crate::clock::now());
    }
    let (read, bits) = match super::card(data, bits) {
        Ok((card, bits)) => (Ok(card), Some(bits)),
        Err(why) => (Err(why), None),
    };
    if !attached.try_deliver(read, bits) {
        tracing::warn!(reader = %attached.id, "the reader loop is not taking card reads; this one is dropped");
    }
}

/// Refreshes `panel` until told to stop or the reader loop is gone.
fn refresh(
    attached: &Attached,
    link: &OsdpLink,
    secure: bool,
    mut panel: ControlPanel,
    port_problem: &PortProblem,
    feedback: &mpsc::Receiver<Feedback>,
    stop: &AtomicBool,
) {
    let mut was_online = false;
    while !stop.load(Ordering::Relaxed) && !attached.frames.is_closed() {
        panel.refresh();
        let online = panel.is_online(0);
        let sc = panel.is_sc_active(0);
        loop {
            match feedback.try_recv() {
                Ok(answer) if online => send_feedback(&mut panel, attached, answer),
                Ok(_) => {}
                // The reader's kind is gone: a reload replaced it; its task stops us.
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if online != was_online {
            if online {
                tracing::info!(reader = %attached.id, secure_channel = sc, "OSDP reader online");
            } else {
                tracing::warn!(reader = %attached.id, "OSDP reader offline");
            }
            was_online = online;
        }
        if online {
            set_state(attached, true, Some(sc), None);
        } else {
            let problem = port_problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| {
                    if secure {
                        format!(
                            "no answer at OSDP address {} on {}, or the reader refuses the \
                             secure channel (a wrong key: `portier osdp keyset`)",
                            link.address,
                            link.port.display()
                        )
                    } else {
                        format!(
                            "no answer at OSDP address {} on {} (check the address, the baud \
                             rate and the RS-485 wiring)",
                            link.address,
                            link.port.display()
                        )
                    }
                });
            set_state(attached, false, Some(false), Some(problem));
        }
        pause(REFRESH);
    }
}

/// Shows an answer on the reader: green for the time the door is open, or red and two beeps.
fn send_feedback(panel: &mut ControlPanel, attached: &Attached, answer: Feedback) {
    let (color, tenths) = match answer {
        Feedback::Granted(open_for) => (
            OsdpLedColor::Green,
            u16::try_from(open_for.as_millis() / 100)
                .unwrap_or(u16::MAX)
                .max(1),
        ),
        Feedback::Denied => (OsdpLedColor::Red, 20),
    };
    let led = OsdpCommand::Led(OsdpCommandLed {
        reader: 0,
        led_number: 0,
        temporary: OsdpLedParams {
            control_code: 2,
            on_count: 1,
            off_count: 0,
            on_color: color,
            off_color: color,
            timer_count: tenths,
        },
        permanent: OsdpLedParams::default(),
    });
    let mut commands = vec![led];
    if answer == Feedback::Denied {
        commands.push(OsdpCommand::Buzzer(OsdpCommandBuzzer {
            reader: 0,
            control_code: 2,
            on_count: 2,
            off_count: 1,
            rep_count: 2,
        }));
    }
    for command in commands {
        if let Err(e) = panel.send_command(0, command) {
            tracing::debug!(reader = %attached.id, error = %e, "OSDP feedback not sent");
        }
    }
}

/// Notes the reader's state for `/v1/status` and health.
fn set_state(
    attached: &Attached,
    online: bool,
    secure_channel: Option<bool>,
    problem: Option<String>,
) {
    let mut status = attached.status();
    status.online = Some(online);
    status.secure_channel = secure_channel;
    status.problem = problem;
}
