//! `[[reader]]` → [`ReaderConfig`].
//!
//! Every kind takes `id`, `kind` (default `mqtt`), and `unit` — or `enrol = true` instead of
//! a unit for a reader that only `portier enrol` reads. A key of another kind is an unknown
//! key, as for locks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::model::UnitDef;

use super::bounds::Bounds;
use super::checker::{Checker, check_name};
use super::error::KeyPath;
use super::locks::topic;
use super::raw::{RawReader, RawWiegandFormat};
use super::variants::Variants;
use super::{
    HidDevice, OsdpLink, ReaderConfig, ReaderSource, WiegandCredential, WiegandFormat,
    WiegandWiring,
};

/// Reader kinds with the keys each takes besides `id`, `kind`, `unit` and `enrol`.
const READER_KINDS: Variants = Variants {
    field: "kind",
    called: "reader kind",
    table: &[
        ("mqtt", &["topic"]),
        ("hid", &["device", "usb"]),
        (
            "wiegand",
            &[
                "d0",
                "d1",
                "chip",
                "format",
                "credential",
                "frame_gap",
                "pin_timeout",
            ],
        ),
        ("osdp", &["port", "baud", "address", "scbk_file"]),
    ],
};

/// The baud rates an OSDP bus runs at.
const OSDP_BAUDS: [u32; 6] = [9600, 19200, 38400, 57600, 115_200, 230_400];

/// Checks every `[[reader]]`: unique id, an existing unit (none for an enrolment reader), its
/// kind's keys (a unique topic for MQTT readers, one device for USB readers, two lines for
/// Wiegand readers).
pub(crate) fn readers(
    ck: &mut Checker<'_, '_>,
    raw: &[RawReader],
    units: &[UnitDef],
) -> Vec<ReaderConfig> {
    let mut first_id: HashMap<&str, usize> = HashMap::new();
    let mut first_topic: HashMap<&str, usize> = HashMap::new();
    let mut first_port: HashMap<&str, usize> = HashMap::new();
    let mut readers = Vec::new();
    for (i, reader) in raw.iter().enumerate() {
        let key = KeyPath::root("reader").index(i);
        let id = ck.required(reader.id.as_deref(), &key.key("id"));
        if let Some(id) = id {
            check_name(ck, id, &key.key("id"));
            match first_id.get(id) {
                Some(first) => ck.report.error(
                    &key.key("id"),
                    format!("duplicate reader id \"{id}\" (also reader[{first}])"),
                ),
                None => {
                    first_id.insert(id, i);
                }
            }
        }
        let unit = reader_unit(ck, reader, units, &key);
        let source = reader_source(ck, reader, &key);
        if let (Some(ReaderSource::Mqtt { topic }), Some(text)) = (&source, &reader.topic) {
            match first_topic.get(text.as_str()) {
                Some(first) => ck.report.error(
                    &key.key("topic"),
                    format!("reader[{first}] listens on \"{topic}\" already"),
                ),
                None => {
                    first_topic.insert(text, i);
                }
            }
        }
        if let (Some(ReaderSource::Osdp(_)), Some(port)) = (&source, &reader.port) {
            match first_port.get(port.as_str()) {
                Some(first) => ck.report.error(
                    &key.key("port"),
                    format!(
                        "reader[{first}] is on {port} already: one OSDP reader per serial port \
                         (give each reader its own RS-485 adapter)"
                    ),
                ),
                None => {
                    first_port.insert(port, i);
                }
            }
        }
        if let (Some(id), Some(unit), Some(source)) = (id, unit, source) {
            readers.push(ReaderConfig {
                id: id.to_owned(),
                unit,
                source,
            });
        }
    }
    readers
}

/// A reader's unit: an existing one for a door reader, none for an enrolment reader
/// (`enrol = true`). The outer `None` means the entry is in error.
fn reader_unit(
    ck: &mut Checker<'_, '_>,
    reader: &RawReader,
    units: &[UnitDef],
    key: &KeyPath,
) -> Option<Option<String>> {
    if reader.enrol == Some(true) {
        if reader.unit.is_some() {
            ck.report.error(
                &key.key("unit"),
                "an enrolment reader (enrol = true) opens nothing: remove unit, or enrol"
                    .to_owned(),
            );
            return None;
        }
        return Some(None);
    }
    let unit = ck.required(reader.unit.as_deref(), &key.key("unit"))?;
    if !units.iter().any(|d| d.id == unit) {
        ck.report
            .error(&key.key("unit"), format!("unknown unit \"{unit}\""));
    }
    Some(Some(unit.to_owned()))
}

/// A reader's kind (default `mqtt`) and its keys; keys of another kind are errors.
fn reader_source(
    ck: &mut Checker<'_, '_>,
    reader: &RawReader,
    key: &KeyPath,
) -> Option<ReaderSource> {
    let name = reader.kind.as_deref().unwrap_or("mqtt");
    let present = [
        ("topic", reader.topic.is_some()),
        ("device", reader.device.is_some()),
        ("usb", reader.usb.is_some()),
        ("d0", reader.d0.is_some()),
        ("d1", reader.d1.is_some()),
        ("chip", reader.chip.is_some()),
        ("format", reader.format.is_some()),
        ("credential", reader.credential.is_some()),
        ("frame_gap", reader.frame_gap.is_some()),
        ("pin_timeout", reader.pin_timeout.is_some()),
        ("port", reader.port.is_some()),
        ("baud", reader.baud.is_some()),
        ("address", reader.address.is_some()),
        ("scbk_file", reader.scbk_file.is_some()),
    ];
    let (name, foreign) = READER_KINDS.pick(ck, key, name, &present)?;
    let source = match name {
        "hid" => hid_device(ck, reader, key).map(ReaderSource::Hid),
        "wiegand" => wiegand_wiring(ck, reader, key).map(ReaderSource::Wiegand),
        "osdp" => osdp_link(ck, reader, key).map(ReaderSource::Osdp),
        _ => topic(ck, reader.topic.as_deref(), &key.key("topic"))
            .map(|topic| ReaderSource::Mqtt { topic }),
    };
    source.filter(|_| !foreign)
}

/// A Wiegand reader's lines (by name) and how its frames are read.
fn wiegand_wiring(
    ck: &mut Checker<'_, '_>,
    reader: &RawReader,
    key: &KeyPath,
) -> Option<WiegandWiring> {
    let line = |ck: &mut Checker<'_, '_>, value: Option<&str>, name: &str| {
        let value = ck.required(value, &key.key(name))?;
        if value.trim().is_empty() || value.contains('\0') {
            ck.report.error(
                &key.key(name),
                format!(
                    "\"{value}\" is not a GPIO line name, like \"GPIO17\" (gpioinfo lists them)"
                ),
            );
            return None;
        }
        Some(value.to_owned())
    };
    let d0 = line(ck, reader.d0.as_deref(), "d0");
    let d1 = line(ck, reader.d1.as_deref(), "d1");
    if let (Some(d0), Some(d1)) = (&d0, &d1)
        && d0 == d1
    {
        ck.report.error(
            &key.key("d1"),
            format!("d0 and d1 are both \"{d0}\": DATA0 and DATA1 are two lines"),
        );
        return None;
    }
    let chip = match reader.chip.as_deref() {
        Some(chip) if chip.trim().is_empty() => {
            ck.report.error(
                &key.key("chip"),
                "must not be empty: a chip like \"gpiochip0\", or leave it out".to_owned(),
            );
            return None;
        }
        chip => chip.map(str::to_owned),
    };
    let format = match &reader.format {
        None => Some(WiegandFormat::Auto),
        Some(RawWiegandFormat::Text(text)) if text == "auto" => Some(WiegandFormat::Auto),
        Some(RawWiegandFormat::Text(text)) if text == "raw" => Some(WiegandFormat::Raw),
        Some(RawWiegandFormat::Text(text)) => text.parse::<i64>().ok().and_then(wiegand_bits),
        Some(RawWiegandFormat::Bits(bits)) => wiegand_bits(*bits),
    };
    if format.is_none() {
        ck.report.error(
            &key.key("format"),
            "must be \"auto\", 26, 34, 35, 37 or \"raw\"".to_owned(),
        );
    }
    let credential = match reader.credential.as_deref() {
        None | Some("hex") => Some(WiegandCredential::Hex),
        Some("facility_card") => Some(WiegandCredential::FacilityCard),
        Some(other) => {
            ck.report.error(
                &key.key("credential"),
                format!("\"{other}\" is not a credential style: \"hex\" or \"facility_card\""),
            );
            None
        }
    };
    let frame_gap = ck.duration(
        reader.frame_gap.as_deref(),
        &key.key("frame_gap"),
        Duration::from_millis(25),
        Bounds::FRAME_GAP,
    );
    let pin_timeout = ck.duration(
        reader.pin_timeout.as_deref(),
        &key.key("pin_timeout"),
        Duration::from_secs(10),
        Bounds::PIN_TIMEOUT,
    );
    Some(WiegandWiring {
        d0: d0?,
        d1: d1?,
        chip,
        format: format?,
        credential: credential?,
        frame_gap,
        pin_timeout,
    })
}

/// An OSDP reader's serial port, baud rate, address and key file.
fn osdp_link(ck: &mut Checker<'_, '_>, reader: &RawReader, key: &KeyPath) -> Option<OsdpLink> {
    let port = ck.required(reader.port.as_deref(), &key.key("port"));
    let port = match port {
        Some(port) if port.starts_with('/') => Some(PathBuf::from(port)),
        Some(port) => {
            ck.report.error(
                &key.key("port"),
                format!(
                    "\"{port}\" is not an absolute serial device path, like \
                     \"/dev/serial/by-id/usb-FTDI_USB-RS485-if00-port0\""
                ),
            );
            None
        }
        None => None,
    };
    let baud = match reader.baud {
        None => Some(115_200),
        Some(baud) => {
            let known = u32::try_from(baud).ok().filter(|b| OSDP_BAUDS.contains(b));
            if known.is_none() {
                ck.report.error(
                    &key.key("baud"),
                    format!(
                        "{baud} is no OSDP baud rate (9600, 19200, 38400, 57600, 115200 or 230400)"
                    ),
                );
            }
            known
        }
    };
    if reader.address.is_none() {
        ck.report.error(&key.key("address"), "required".to_owned());
    }
    let address = reader
        .address
        .and_then(|address| match u8::try_from(address) {
            Ok(address) if address <= 126 => Some(address),
            _ => {
                ck.report.error(
                    &key.key("address"),
                    format!("{address} is no OSDP reader address (0 to 126; 127 is broadcast)"),
                );
                None
            }
        });
    let scbk_file = ck.file_path(reader.scbk_file.as_deref(), &key.key("scbk_file"));
    if reader.scbk_file.as_deref() == Some("") {
        return None;
    }
    Some(OsdpLink {
        port: port?,
        baud: baud?,
        address: address?,
        scbk_file,
    })
}

/// A card format's bit count, if Portier knows it.
fn wiegand_bits(bits: i64) -> Option<WiegandFormat> {
    [26, 34, 35, 37]
        .contains(&bits)
        .then_some(WiegandFormat::Bits(bits as u32))
}

/// A USB reader's `device` path or `usb = "VVVV:PPPP"` (exactly one of them).
fn hid_device(ck: &mut Checker<'_, '_>, reader: &RawReader, key: &KeyPath) -> Option<HidDevice> {
    match (&reader.device, &reader.usb) {
        (Some(_), Some(_)) => {
            ck.report.error(
                &key.key("usb"),
                "give either device or usb, not both".to_owned(),
            );
            None
        }
        (None, None) => {
            ck.report.error(
                &key.key("device"),
                "required for kind \"hid\": the reader's input device, like \
                 \"/dev/input/by-id/usb-ACME_Reader-event-kbd\" (or usb = \"VVVV:PPPP\")"
                    .to_owned(),
            );
            None
        }
        (Some(path), None) => {
            if path.is_empty() || !path.starts_with('/') {
                ck.report.error(
                    &key.key("device"),
                    format!(
                        "\"{path}\" is not an absolute device path, like \"/dev/input/by-id/...\""
                    ),
                );
                return None;
            }
            Some(HidDevice::Path(PathBuf::from(path)))
        }
        (None, Some(text)) => match usb_id(text) {
            Some((vendor, product)) => Some(HidDevice::Usb { vendor, product }),
            None => {
                ck.report.error(
                    &key.key("usb"),
                    format!(
                        "\"{text}\" is not a USB vendor and product id, like \"08ff:0009\" (as lsusb shows them)"
                    ),
                );
                None
            }
        },
    }
}

/// `VVVV:PPPP` in hex.
fn usb_id(text: &str) -> Option<(u16, u16)> {
    let (vendor, product) = text.split_once(':')?;
    let hex = |part: &str| {
        (part.len() == 4 && part.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u16::from_str_radix(part, 16).ok())
            .flatten()
    };
    Some((hex(vendor)?, hex(product)?))
}
