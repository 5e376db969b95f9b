//! The Wiegand reader kind with recorded edge timings behind [`Gpio`] (no `/dev/gpiochip*` or
//! gpio-sim here): the line task alone, a swipe through the reader loop, the engine, a
//! log-only lock and a sled store on disk, and an enrolment reader that opens nothing.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::frame::Line;
use super::gpio::{EdgeSource, WiegandLines};
use super::*;
use crate::config::{ReaderSource, WiegandCredential, WiegandFormat, WiegandWiring};
use crate::readers::device::{Attached, BoxFuture, serve};
use crate::readers::testing::{Site, wiegand_wiring as wiring};
use crate::readers::{Frame, ReaderStatus, Transports};

/// Time between two bits, as readers send them.
const BIT: Duration = Duration::from_millis(2);

/// One recorded step on a pair of lines.
#[derive(Clone, Debug)]
enum Step {
    /// Bits as `0`/`1`, one falling edge every [`BIT`].
    Bits(String),
    /// Both lines fall 3 µs apart: noise, not two bits.
    Glitch,
    /// Nothing for this long.
    Pause(Duration),
    /// The lines fail.
    Fail,
}

/// A frame with its parity bits: `data` as `data_bits` bits, even parity over the first
/// half in front, odd parity over the second half behind (26-bit H10301, 34-bit H10306).
fn card(data: u64, data_bits: u32) -> String {
    let bits: Vec<bool> = (0..data_bits)
        .map(|i| (data >> (data_bits - 1 - i)) & 1 == 1)
        .collect();
    let half = data_bits as usize / 2;
    let even = bits[..half].iter().filter(|b| **b).count() % 2 == 1;
    let odd = bits[half..].iter().filter(|b| **b).count() % 2 == 0;
    let mut text = String::from(if even { "1" } else { "0" });
    text.extend(bits.iter().map(|b| if *b { '1' } else { '0' }));
    text.push(if odd { '1' } else { '0' });
    text
}

/// `frame` with bit `i` flipped.
fn flipped(frame: &str, i: usize) -> String {
    frame
        .char_indices()
        .map(|(j, c)| match (j == i, c) {
            (true, '0') => '1',
            (true, _) => '0',
            (false, c) => c,
        })
        .collect()
}

/// A keypad key as a 4-bit frame.
fn key(code: u8) -> String {
    format!("{code:04b}")
}

/// Lines that play recorded steps: each `open` takes the next recording, or fails when none
/// is left (the lines are busy).
struct Recorded {
    recordings: Mutex<VecDeque<Vec<Step>>>,
    opened: Mutex<usize>,
}

impl Recorded {
    fn new(recordings: Vec<Vec<Step>>) -> Arc<Self> {
        Arc::new(Self {
            recordings: Mutex::new(recordings.into()),
            opened: Mutex::new(0),
        })
    }
}

impl Gpio for Recorded {
    fn open(&self, _: &WiegandWiring) -> io::Result<Box<dyn EdgeSource>> {
        let steps = self
            .recordings
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| io::Error::new(io::ErrorKind::ResourceBusy, "lines busy"))?;
        *self.opened.lock().unwrap() += 1;
        let mut edges = VecDeque::new();
        for step in steps {
            match step {
                Step::Bits(bits) => {
                    for c in bits.chars() {
                        let line = if c == '1' { Line::D1 } else { Line::D0 };
                        edges.push_back(Edge::At(line, BIT));
                    }
                }
                Step::Glitch => {
                    edges.push_back(Edge::At(Line::D0, BIT));
                    edges.push_back(Edge::At(Line::D1, Duration::from_micros(3)));
                }
                Step::Pause(d) => edges.push_back(Edge::Quiet(d)),
                Step::Fail => edges.push_back(Edge::Fail),
            }
        }
        Ok(Box::new(Playing {
            edges,
            clock: Duration::from_secs(1000),
        }))
    }
}

enum Edge {
    /// A falling edge this long after the previous one.
    At(Line, Duration),
    Quiet(Duration),
    Fail,
}

/// A recording being played on a clock of its own (the kernel's timestamps), slept for real
/// so that the task's idle deadlines meet it; after its last step the lines stay quiet.
struct Playing {
    edges: VecDeque<Edge>,
    clock: Duration,
}

impl EdgeSource for Playing {
    fn next_edge(&mut self) -> BoxFuture<'_, io::Result<(Line, Duration)>> {
        Box::pin(async move {
            loop {
                match self.edges.front() {
                    None => std::future::pending::<()>().await,
                    Some(Edge::Quiet(d)) => {
                        let d = *d;
                        tokio::time::sleep(d).await;
                        self.clock += d;
                        self.edges.pop_front();
                    }
                    Some(Edge::At(line, after)) => {
                        let (line, after) = (*line, *after);
                        if after >= Duration::from_millis(1) {
                            tokio::time::sleep(after).await;
                        }
                        self.clock += after;
                        self.edges.pop_front();
                        return Ok((line, self.clock));
                    }
                    Some(Edge::Fail) => {
                        self.edges.pop_front();
                        return Err(io::Error::other("line request failed"));
                    }
                }
            }
        })
    }
}

fn parsed(frame: &Frame) -> ReaderPayload {
    WiegandReaders.parse(&frame.payload, crate::clock::now())
}

async fn next(frames: &mut tokio::sync::mpsc::Receiver<Frame>) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), frames.recv())
        .await
        .expect("a frame in time")
        .expect("the line task is alive")
}

fn gap() -> Step {
    Step::Pause(Duration::from_millis(60))
}

#[tokio::test]
async fn edges_become_reads_bad_frames_are_malformed_keys_stay_and_failed_lines_come_back() {
    let h10301 = card((12 << 16) | 345, 24);
    let gpio = Recorded::new(vec![
        vec![
            Step::Bits(h10301.clone()),
            gap(),
            // The same card with one data bit flipped: the parity catches it.
            Step::Bits(flipped(&h10301, 5)),
            gap(),
            // Noise in the middle of a frame.
            Step::Bits(h10301[..10].to_owned()),
            Step::Glitch,
            Step::Bits(h10301[12..].to_owned()),
            gap(),
            // A half frame: 13 bits.
            Step::Bits(h10301[..13].to_owned()),
            gap(),
            // A card, then a PIN on the keypad: 4, 2, ENT. The keys are no frames.
            Step::Bits(h10301.clone()),
            gap(),
            Step::Bits(key(4)),
            gap(),
            Step::Bits(key(2)),
            gap(),
            Step::Bits(key(11)),
            gap(),
            Step::Fail,
        ],
        // Requested again after the failure.
        vec![Step::Bits(h10301.clone()), gap()],
    ]);
    let (frames_tx, mut frames) = tokio::sync::mpsc::channel(8);
    let status = Arc::new(Mutex::new(ReaderStatus::default()));
    let task = tokio::spawn(serve(
        Attached {
            reader: 3,
            id: "front".into(),
            status: Arc::clone(&status),
            frames: frames_tx,
        },
        Arc::new(WiegandLines {
            wiring: wiring(WiegandFormat::Auto, WiegandCredential::FacilityCard),
            gpio: Arc::clone(&gpio) as Arc<dyn Gpio>,
        }),
    ));

    let first = next(&mut frames).await;
    assert_eq!(first.reader, 3);
    assert!(!first.replayed);
    assert_eq!(parsed(&first), ReaderPayload::Card("01200345".into()));
    assert_eq!(first.bits.as_ref().map(|b| b.0.len()), Some(26));
    {
        let status = status.lock().unwrap();
        assert_eq!(
            (status.bits, status.format, status.parity_ok),
            (Some(26), Some("H10301"), Some(true))
        );
        assert!(status.last_frame_at.is_some());
    }
    let malformed = |frame: &Frame| match parsed(frame) {
        ReaderPayload::Malformed(why) => why,
        other => panic!("{other:?}"),
    };
    let bad_parity = next(&mut frames).await;
    assert!(
        malformed(&bad_parity).contains("parity"),
        "{}",
        malformed(&bad_parity)
    );
    let noisy = next(&mut frames).await;
    assert!(malformed(&noisy).contains("noise"), "{}", malformed(&noisy));
    assert_eq!(noisy.bits, None, "a noisy frame's bits are no card's");
    let half = next(&mut frames).await;
    assert!(malformed(&half).contains("13 bits"), "{}", malformed(&half));
    assert_eq!(
        parsed(&next(&mut frames).await),
        ReaderPayload::Card("01200345".into())
    );
    // The keypad frames reached no one, but the wiring check saw the last one.
    let after_failure = next(&mut frames).await;
    assert_eq!(
        parsed(&after_failure),
        ReaderPayload::Card("01200345".into())
    );
    assert_eq!(*gpio.opened.lock().unwrap(), 2);
    assert_eq!(status.lock().unwrap().online, Some(true));
    task.abort();
}

#[tokio::test]
async fn the_wiring_check_shows_a_keypad_frame_and_a_failed_parity() {
    let gpio = Recorded::new(vec![vec![
        Step::Bits(key(7)),
        gap(),
        Step::Bits(flipped(&card(0x04A1_B2C3, 32), 0)),
        gap(),
    ]]);
    let (frames_tx, mut frames) = tokio::sync::mpsc::channel(8);
    let status = Arc::new(Mutex::new(ReaderStatus::default()));
    let task = tokio::spawn(serve(
        Attached {
            reader: 0,
            id: "front".into(),
            status: Arc::clone(&status),
            frames: frames_tx,
        },
        Arc::new(WiegandLines {
            wiring: wiring(WiegandFormat::Bits(34), WiegandCredential::Hex),
            gpio: Arc::clone(&gpio) as Arc<dyn Gpio>,
        }),
    ));
    let frame = next(&mut frames).await;
    assert!(matches!(parsed(&frame), ReaderPayload::Malformed(_)));
    let status = status.lock().unwrap().clone();
    assert_eq!(
        (status.bits, status.format, status.parity_ok),
        (Some(34), Some("H10306"), Some(false))
    );
    task.abort();
}

#[tokio::test]
async fn a_card_on_a_wiegand_reader_opens_the_door_and_a_bad_frame_is_denied_and_recorded() {
    let site = Site::new();
    let ada = card(0x04A1_B2C3, 32);
    let gpio = Recorded::new(vec![vec![
        Step::Bits(flipped(&ada, 9)),
        gap(),
        Step::Bits(ada),
        gap(),
    ]]);
    let reader = ReaderConfig {
        id: "front".into(),
        unit: Some("front_door".into()),
        source: ReaderSource::Wiegand(wiring(WiegandFormat::Auto, WiegandCredential::Hex)),
    };
    let serving = site.serve(
        std::slice::from_ref(&reader),
        Transports {
            gpio: Arc::clone(&gpio) as Arc<dyn Gpio>,
            ..site.transports()
        },
    );
    let events = site.events(2).await;
    assert!(!events[0].granted && !events[0].opened, "{:?}", events[0]);
    assert!(
        events[0].reason.contains("parity"),
        "the bad frame is recorded as such: {}",
        events[0].reason
    );
    assert!(events[1].granted && events[1].opened, "{:?}", events[1]);
    assert_eq!(events[1].member.as_deref(), Some("m_ada"));
    for event in &events {
        assert_eq!(event.reader.as_deref(), Some("front"));
        assert_eq!(event.unit, "front_door");
    }
    assert_eq!(site.locks.log_lock("front_lock").unwrap().unlocks(), 1);
    let status = serving.status("front");
    assert_eq!(status.kind, "wiegand");
    assert_eq!(status.online, Some(true));
    assert_eq!(
        (status.bits, status.format, status.parity_ok),
        (Some(34), Some("H10306"), Some(true))
    );
    serving.stop().await;
}

#[tokio::test]
async fn an_enrolment_reader_hands_its_card_to_enrol_and_opens_nothing() {
    let site = Site::new();
    let gpio = Recorded::new(vec![vec![
        Step::Pause(Duration::from_millis(200)),
        Step::Bits(card(0x04A1_B2C3, 32)),
        gap(),
    ]]);
    let desk = ReaderConfig {
        id: "desk".into(),
        unit: None,
        source: ReaderSource::Wiegand(wiring(WiegandFormat::Auto, WiegandCredential::Hex)),
    };
    let serving = site.serve(
        std::slice::from_ref(&desk),
        Transports {
            gpio: Arc::clone(&gpio) as Arc<dyn Gpio>,
            ..site.transports()
        },
    );
    let read = tokio::time::timeout(Duration::from_secs(10), serving.enrolment.next("desk"))
        .await
        .expect("a read in time");
    assert_eq!(read.read, Ok("04A1B2C3".to_owned()));
    assert_eq!(read.bits.as_ref().map(|b| b.0.len()), Some(34));
    let status = serving.status("desk");
    assert!(status.enrol && status.unit.is_none());
    serving.stop().await;
    assert!(
        site.store.events_after(0, 10).unwrap().is_empty(),
        "nothing decided"
    );
    assert_eq!(site.locks.log_lock("front_lock").unwrap().unlocks(), 0);
}
