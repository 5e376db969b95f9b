//! Enrolment readers (`enrol = true`): a card read at the desk, shown as each door reader
//! would send it, for the space manager to enter in Cobot.
//!
//! Such a reader opens nothing: the reader loop hands its reads to [`Enrolment`] instead of
//! the engine, and `portier enrol --reader ID` (through the daemon's API when it runs) waits
//! for the next one. A card's id depends on the reader kind that reads it: a Wiegand reader
//! sends bits that the door's `format` and `credential` turn into an id, a USB reader types
//! whatever its firmware makes of the card. So [`enrolled`] works out, where the bits allow,
//! the id each configured door reader would produce for the card just read, and says so
//! where they do not.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::wiegand::format::{self, Read};
use super::wiegand::frame::{MAX_BITS, RawFrame};
use super::{CardBits, Frame, Reader, ReaderPayload};
use crate::config::{ReaderConfig, ReaderSource};
use crate::domain::normalize_card;

/// A read on an enrolment reader, as its transport decoded it.
#[derive(Debug, Clone)]
pub(crate) struct EnrolRead {
    /// The reader's id.
    pub reader: String,
    /// The card as the reader read it, or why the read is no card.
    pub read: Result<String, String>,
    /// The card's bits, where the reader sends bits.
    pub bits: Option<CardBits>,
}

impl EnrolRead {
    /// A frame from enrolment reader `reader`, read by its kind; none for a stored message
    /// the transport replayed.
    pub(crate) fn of(reader: &Reader, frame: Frame) -> Option<EnrolRead> {
        if frame.replayed {
            return None;
        }
        let read = match reader.kind.parse(&frame.payload, crate::clock::now()) {
            ReaderPayload::Card(card) => Ok(card),
            ReaderPayload::Malformed(why)
            | ReaderPayload::Stale(why)
            | ReaderPayload::ClockSkew(why) => Err(why),
        };
        Some(EnrolRead {
            reader: reader.config.id.clone(),
            read,
            bits: frame.bits,
        })
    }
}

/// Where enrolment readers' reads go: to whoever waits for them (none waiting: dropped).
#[derive(Clone)]
pub(crate) struct Enrolment(broadcast::Sender<Arc<EnrolRead>>);

impl Default for Enrolment {
    fn default() -> Self {
        Self(broadcast::Sender::new(16))
    }
}

impl Enrolment {
    /// Hands a read to whoever waits for one.
    pub(crate) fn publish(&self, read: EnrolRead) {
        // No receiver: nobody is enrolling; the read opens nothing and is forgotten.
        let _ = self.0.send(Arc::new(read));
    }

    /// Waits for the next read on `reader` (reads on other readers are skipped).
    pub(crate) fn next(&self, reader: &str) -> impl Future<Output = Arc<EnrolRead>> + use<> {
        let mut reads = self.0.subscribe();
        let reader = reader.to_owned();
        async move {
            loop {
                match reads.recv().await {
                    Ok(read) if read.reader == reader => return read,
                    // Another reader's, or some reads missed: wait for the next one.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        }
    }
}

/// A card read on an enrolment reader, as `portier enrol` prints it (and `GET
/// /v1/readers/{id}/enrol` answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Enrolled {
    /// The enrolment reader.
    pub reader: String,
    /// Its kind.
    pub kind: String,
    /// The card id as this reader reads it, normalised; none when the read is no card.
    pub card: Option<String>,
    /// Why the read is no card (a bad frame, a bad parity).
    pub error: Option<String>,
    /// How many bits the reader sent, where it sends bits.
    pub bits: Option<u32>,
    /// The id each door reader would send for this card.
    pub door_readers: Vec<DoorReaderId>,
}

/// The id one door reader would send for an enrolled card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DoorReaderId {
    /// The door reader.
    pub reader: String,
    /// Its kind.
    pub kind: String,
    /// The unit it opens.
    pub unit: String,
    /// The id, where it follows from the read.
    pub card: Option<String>,
    /// Why there is no id.
    pub note: Option<String>,
}

/// `read`, taken on `reader`, with the id each of `readers`' door readers would send.
pub(crate) fn enrolled(
    read: &EnrolRead,
    reader: &ReaderConfig,
    readers: &[ReaderConfig],
) -> Enrolled {
    let (card, error) = match &read.read {
        Ok(card) => match normalize_card(card) {
            Ok(card) => (Some(card), None),
            Err(e) => (None, Some(format!("not a card id: {e}"))),
        },
        Err(why) => (None, Some(why.clone())),
    };
    let door_readers = readers
        .iter()
        .filter_map(|door| {
            let unit = door.unit.clone()?;
            let (card, note) = match door_id(read, card.as_deref(), reader, door) {
                Ok(id) => (Some(id), None),
                Err(note) => (None, Some(note)),
            };
            Some(DoorReaderId {
                reader: door.id.clone(),
                kind: door.kind().to_owned(),
                unit,
                card,
                note,
            })
        })
        .collect();
    Enrolled {
        reader: read.reader.clone(),
        kind: reader.kind().to_owned(),
        card,
        error,
        bits: read.bits.as_ref().map(|b| b.0.len() as u32),
        door_readers,
    }
}

/// The id `door` would send for the card read on `reader`, or why it cannot be told.
fn door_id(
    read: &EnrolRead,
    card: Option<&str>,
    reader: &ReaderConfig,
    door: &ReaderConfig,
) -> Result<String, String> {
    // From the bits: what a Wiegand door reader makes of them, or an OSDP one (all of them,
    // parity included, as hex).
    match (&read.bits, &door.source) {
        (Some(bits), ReaderSource::Wiegand(wiring)) => {
            let frame = frame_of(bits)?;
            return match format::read(&frame, wiring.format, wiring.credential).0 {
                Read::Card(id) => normalize_card(&id).map_err(|e| e.to_string()),
                Read::Malformed(why) => Err(why),
                Read::Key(_) => Err("a keypad key, not a card".to_owned()),
            };
        }
        (Some(bits), ReaderSource::Osdp(_)) if !bits.0.is_empty() => {
            return Ok(super::osdp::hex(&bits.0));
        }
        _ => {}
    }
    // The same kind, reading the same way: the same id.
    if same_reading(reader, door) {
        return card
            .map(str::to_owned)
            .ok_or_else(|| "the read is no card".to_owned());
    }
    Err(format!(
        "a {} reader's id cannot be told from a {} reader's read: read the card on it \
         (its reads are in the event log)",
        door.kind(),
        reader.kind()
    ))
}

/// Whether two readers turn a card into the same id: both USB or MQTT readers (what they
/// send is their firmware's), or Wiegand readers set the same way.
fn same_reading(a: &ReaderConfig, b: &ReaderConfig) -> bool {
    match (&a.source, &b.source) {
        (ReaderSource::Wiegand(a), ReaderSource::Wiegand(b)) => {
            a.format == b.format && a.credential == b.credential
        }
        (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// Bits as a Wiegand frame.
fn frame_of(bits: &CardBits) -> Result<RawFrame, String> {
    let count = bits.0.len() as u32;
    if count > MAX_BITS {
        return Err(format!("{count} bits is longer than a Wiegand frame"));
    }
    Ok(RawFrame {
        bits: bits.0.iter().fold(0, |acc, &b| (acc << 1) | u64::from(b)),
        count,
        noisy: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HidDevice, WiegandCredential, WiegandFormat};
    use crate::readers::testing::wiegand_wiring;

    fn wiegand(
        id: &str,
        unit: Option<&str>,
        format: WiegandFormat,
        credential: WiegandCredential,
    ) -> ReaderConfig {
        ReaderConfig {
            id: id.into(),
            unit: unit.map(str::to_owned),
            source: ReaderSource::Wiegand(wiegand_wiring(format, credential)),
        }
    }

    fn usb(id: &str, unit: Option<&str>) -> ReaderConfig {
        ReaderConfig {
            id: id.into(),
            unit: unit.map(str::to_owned),
            source: ReaderSource::Hid(HidDevice::Path("/dev/input/event0".into())),
        }
    }

    /// A 26-bit H10301 frame: facility 12, card 345, parity set.
    fn h10301(facility: u64, card: u64) -> CardBits {
        let data = (facility << 16) | card;
        let bit = |i: u32| (data >> (23 - i)) & 1 == 1;
        let even = (0..12).filter(|&i| bit(i)).count() % 2 == 1;
        let odd = (12..24).filter(|&i| bit(i)).count() % 2 == 0;
        let mut bits = vec![even];
        bits.extend((0..24).map(bit));
        bits.push(odd);
        CardBits(bits)
    }

    #[test]
    fn a_wiegand_read_is_shown_as_every_door_reader_would_send_it() {
        let desk = wiegand("desk", None, WiegandFormat::Auto, WiegandCredential::Hex);
        let readers = vec![
            desk.clone(),
            wiegand(
                "front",
                Some("front_door"),
                WiegandFormat::Auto,
                WiegandCredential::FacilityCard,
            ),
            wiegand(
                "back",
                Some("back_door"),
                WiegandFormat::Bits(26),
                WiegandCredential::Hex,
            ),
            wiegand(
                "side",
                Some("side_door"),
                WiegandFormat::Bits(34),
                WiegandCredential::Hex,
            ),
            usb("lobby", Some("lobby")),
        ];
        let read = EnrolRead {
            reader: "desk".into(),
            read: Ok("0C0159".into()),
            bits: Some(h10301(12, 345)),
        };
        let shown = enrolled(&read, &desk, &readers);
        assert_eq!(shown.card.as_deref(), Some("0C0159"));
        assert_eq!(shown.bits, Some(26));
        let ids: Vec<_> = shown
            .door_readers
            .iter()
            .map(|d| (d.reader.as_str(), d.card.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("front", Some("01200345")),
                ("back", Some("0C0159")),
                ("side", None),
                ("lobby", None),
            ],
            "the enrolment reader itself is no door reader"
        );
        assert!(
            shown.door_readers[2]
                .note
                .as_deref()
                .unwrap()
                .contains("34-bit")
        );
        assert!(
            shown.door_readers[3]
                .note
                .as_deref()
                .unwrap()
                .contains("hid reader")
        );
    }

    #[test]
    fn a_usb_read_gives_the_same_id_on_usb_door_readers_only() {
        let desk = usb("desk", None);
        let readers = vec![
            desk.clone(),
            usb("lobby", Some("lobby")),
            wiegand(
                "front",
                Some("front_door"),
                WiegandFormat::Auto,
                WiegandCredential::Hex,
            ),
        ];
        let read = EnrolRead {
            reader: "desk".into(),
            read: Ok("04:a1:b2:c3".into()),
            bits: None,
        };
        let shown = enrolled(&read, &desk, &readers);
        assert_eq!(shown.card.as_deref(), Some("04A1B2C3"));
        assert_eq!(shown.door_readers[0].card.as_deref(), Some("04A1B2C3"));
        assert_eq!(shown.door_readers[1].card, None);
    }

    #[test]
    fn a_bad_frame_is_said_to_be_one_and_gives_no_ids() {
        let desk = wiegand("desk", None, WiegandFormat::Auto, WiegandCredential::Hex);
        let mut bits = h10301(12, 345);
        bits.0[5] = !bits.0[5];
        let read = EnrolRead {
            reader: "desk".into(),
            read: Err("malformed Wiegand frame: H10301 parity check failed".into()),
            bits: Some(bits),
        };
        let readers = vec![
            desk.clone(),
            wiegand(
                "front",
                Some("front_door"),
                WiegandFormat::Auto,
                WiegandCredential::Hex,
            ),
        ];
        let shown = enrolled(&read, &desk, &readers);
        assert_eq!(shown.card, None);
        assert!(shown.error.unwrap().contains("parity"));
        assert_eq!(shown.door_readers[0].card, None);
        assert!(
            shown.door_readers[0]
                .note
                .as_deref()
                .unwrap()
                .contains("parity")
        );
    }
}
