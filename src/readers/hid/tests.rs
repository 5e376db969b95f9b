//! The USB reader kind with recorded key events behind [`Keyboards`] (no `/dev/uinput` here):
//! the device task alone, and a swipe through the reader loop, the engine, a log-only lock and
//! a sled store on disk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::device::{KeySource, READ_TIMEOUT};
use super::*;
use crate::config::{HidDevice, ReaderSource};
use crate::readers::device::{Attached, BoxFuture, serve};
use crate::readers::testing::Site;
use crate::readers::{Frame, Transports};

/// Linux key codes of the characters used here.
fn code(c: char) -> u16 {
    match c {
        '0' => 11,
        '1'..='9' => 2 + (c as u16 - '1' as u16),
        'a' => 30,
        'b' => 48,
        'c' => 46,
        'd' => 32,
        'e' => 18,
        'f' => 33,
        '!' => 59, // F1: no character
        '\n' => 28,
        other => panic!("no key for {other:?}"),
    }
}

/// One recorded step of a device.
#[derive(Clone, Debug)]
enum Step {
    /// Types the text (press and release per character), `\n` being ENTER.
    Type(&'static str),
    /// Nothing for this long.
    Pause(Duration),
    /// The device fails (unplugged).
    Unplug,
}

/// Devices that play recorded steps: each `open` takes the next recording, or fails when none
/// is left (the device is not plugged in).
struct Recorded {
    recordings: Mutex<VecDeque<Vec<Step>>>,
    opened: Mutex<Vec<HidDevice>>,
}

impl Recorded {
    fn new(recordings: Vec<Vec<Step>>) -> Arc<Self> {
        Arc::new(Self {
            recordings: Mutex::new(recordings.into()),
            opened: Mutex::new(Vec::new()),
        })
    }
}

impl Keyboards for Recorded {
    fn open(&self, device: &HidDevice) -> std::io::Result<Box<dyn KeySource>> {
        let steps =
            self.recordings.lock().unwrap().pop_front().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "not plugged in")
            })?;
        self.opened.lock().unwrap().push(device.clone());
        let mut keys = VecDeque::new();
        for step in steps {
            match step {
                Step::Type(text) => {
                    for c in text.chars() {
                        keys.push_back(Key::Event(code(c), 1));
                        keys.push_back(Key::Event(code(c), 0));
                    }
                }
                Step::Pause(d) => keys.push_back(Key::Pause(d)),
                Step::Unplug => keys.push_back(Key::Gone),
            }
        }
        Ok(Box::new(Playing(keys)))
    }
}

enum Key {
    Event(u16, i32),
    Pause(Duration),
    Gone,
}

/// A recording being played; after its last step the device stays silent.
struct Playing(VecDeque<Key>);

impl KeySource for Playing {
    fn next_key(&mut self) -> BoxFuture<'_, std::io::Result<(u16, i32)>> {
        Box::pin(async move {
            loop {
                match self.0.front() {
                    None => std::future::pending::<()>().await,
                    Some(Key::Pause(d)) => {
                        let d = *d;
                        tokio::time::sleep(d).await;
                        self.0.pop_front();
                    }
                    Some(Key::Event(code, value)) => {
                        let key = (*code, *value);
                        self.0.pop_front();
                        return Ok(key);
                    }
                    Some(Key::Gone) => {
                        self.0.pop_front();
                        return Err(std::io::Error::from_raw_os_error(19)); // ENODEV
                    }
                }
            }
        })
    }
}

fn parsed(frame: &Frame) -> ReaderPayload {
    HidReaders.parse(&frame.payload, crate::clock::now())
}

async fn next(frames: &mut tokio::sync::mpsc::Receiver<Frame>) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), frames.recv())
        .await
        .expect("a frame in time")
        .expect("the device task is alive")
}

#[tokio::test]
async fn reads_become_frames_partial_ones_are_dropped_and_an_unplugged_reader_comes_back() {
    let device = HidDevice::Usb {
        vendor: 0x08ff,
        product: 0x0009,
    };
    let keyboards = Recorded::new(vec![
        vec![
            Step::Type("04a1b2c3\n"),
            // Half a card, then nothing: dropped after the read timeout, never a frame.
            Step::Type("04a1"),
            Step::Pause(READ_TIMEOUT * 2),
            Step::Type("1234\n"),
            // A key that is no card character: the read is malformed, and said so.
            Step::Type("12!4\n"),
            Step::Unplug,
        ],
        // Plugged in again.
        vec![Step::Type("beef\n")],
    ]);
    let (frames_tx, mut frames) = tokio::sync::mpsc::channel(8);
    let status = Arc::new(Mutex::new(crate::readers::ReaderStatus::default()));
    let task = tokio::spawn(serve(
        Attached {
            reader: 7,
            id: "desk".into(),
            status: Arc::clone(&status),
            frames: frames_tx,
        },
        Arc::new(UsbReader {
            device: device.clone(),
            keyboards: Arc::clone(&keyboards) as Arc<dyn Keyboards>,
        }),
    ));

    let first = next(&mut frames).await;
    assert_eq!(first.reader, 7);
    assert!(!first.replayed);
    assert_eq!(parsed(&first), ReaderPayload::Card("04a1b2c3".into()));
    assert_eq!(
        parsed(&next(&mut frames).await),
        ReaderPayload::Card("1234".into())
    );
    match parsed(&next(&mut frames).await) {
        ReaderPayload::Malformed(why) => assert!(why.contains("key code 59"), "{why}"),
        other => panic!("{other:?}"),
    }
    // After the unplug the device is opened again (every 2 s) and reads on.
    assert_eq!(
        parsed(&next(&mut frames).await),
        ReaderPayload::Card("beef".into())
    );
    assert_eq!(
        *keyboards.opened.lock().unwrap(),
        vec![device.clone(), device]
    );
    assert_eq!(status.lock().unwrap().online, Some(true));
    task.abort();
}

#[test]
fn payloads_that_no_device_task_made_are_malformed_not_a_panic() {
    for payload in [&b""[..], b"X1234", b"C\xff\xfe"] {
        assert!(matches!(
            HidReaders.parse(payload, crate::clock::now()),
            ReaderPayload::Malformed(_)
        ));
    }
}

#[tokio::test]
async fn a_card_on_a_usb_reader_opens_the_door_and_is_recorded_with_the_reader() {
    let site = Site::new();

    // A stranger's card, then Ada's, typed by the desk reader at the front door.
    let keyboards = Recorded::new(vec![vec![
        Step::Type("deadbeef\n"),
        Step::Type("04a1b2c3\n"),
    ]]);
    let reader = ReaderConfig {
        id: "desk".into(),
        unit: Some("front_door".into()),
        source: ReaderSource::Hid(HidDevice::Path(
            "/dev/input/by-id/usb-desk-event-kbd".into(),
        )),
    };
    let serving = site.serve(
        std::slice::from_ref(&reader),
        Transports {
            keyboards: Arc::clone(&keyboards) as Arc<dyn Keyboards>,
            ..site.transports()
        },
    );
    let events = site.events(2).await;
    assert!(!events[0].granted && !events[0].opened, "{:?}", events[0]);
    assert!(events[1].granted && events[1].opened, "{:?}", events[1]);
    assert_eq!(events[1].member.as_deref(), Some("m_ada"));
    for event in &events {
        assert_eq!(event.reader.as_deref(), Some("desk"));
        assert_eq!(event.unit, "front_door");
    }
    assert_eq!(site.locks.log_lock("front_lock").unwrap().unlocks(), 1);
    let status = &serving.status("desk");
    assert_eq!(status.kind, "hid");
    assert_eq!(status.online, Some(true));
    assert!(status.last_frame_at.is_some());

    // Taken out by a reload, then shut down: the loop ends.
    serving.readers.apply(&[]);
    assert!(serving.readers.devices.lock().unwrap().is_empty());
    serving.stop().await;
    assert_eq!(keyboards.opened.lock().unwrap().len(), 1);
}
