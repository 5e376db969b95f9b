//! The record format: what every value the store writes looks like on disk, and how the values
//! older versions wrote are read.
//!
//! Every value starts with its format number, one byte, then the body:
//!
//! - **Format 1** (Portier before records carried a version): the body is the whole value, the
//!   record's JSON. Every record was a JSON object, so its first byte is `{` (0x7B); that is how
//!   such a value is told apart. It is read as it is and written back in the current format the
//!   next time the record changes (the snapshot at the next sync), so old stores need no
//!   migration step and keep working after an upgrade.
//! - **Format 2**: the byte `2`, then the record's JSON.
//!
//! A value with any other first byte was written by a newer Portier (or is damaged): it is
//! reported as unreadable with its format number, never guessed at. A record type that changes
//! incompatibly takes the next number here, and the reader of the old one stays.
//!
//! Raw counters (the next event seq, a big-endian `u64`) are not records and carry no format.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format every record is written in.
pub(crate) const CURRENT: u8 = 2;

/// The first byte of a format-1 value (a JSON object).
const FORMAT_1_FIRST_BYTE: u8 = b'{';

/// Encodes `value` in the current format.
pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut bytes = vec![CURRENT];
    serde_json::to_writer(&mut bytes, value).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Writes `value` in the current format to `out` (for a record too large to build in memory
/// first).
pub(super) fn encode_to<W: std::io::Write, T: Serialize>(
    out: &mut W,
    value: &T,
) -> std::io::Result<()> {
    out.write_all(&[CURRENT])?;
    serde_json::to_writer(out, value).map_err(std::io::Error::other)
}

/// Decodes a value of any format this version reads; the error says what is wrong with it.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let body = match bytes.first() {
        None => return Err("the record is empty".into()),
        Some(&FORMAT_1_FIRST_BYTE) => bytes,
        Some(&CURRENT) => &bytes[1..],
        Some(&other) => {
            return Err(format!(
                "record format {other} is not one this Portier reads (1 to {CURRENT}): written \
                 by a newer version, or damaged"
            ));
        }
    };
    serde_json::from_slice(body).map_err(|e| format!("record format {}: {e}", format_of(bytes)))
}

/// The format number of a value (1 for the JSON of format 1).
pub(crate) fn format_of(bytes: &[u8]) -> u8 {
    match bytes.first() {
        Some(&FORMAT_1_FIRST_BYTE) => 1,
        Some(&n) => n,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        count: u32,
    }

    fn sample() -> Sample {
        Sample {
            name: "Ada".into(),
            count: 3,
        }
    }

    #[test]
    fn a_record_is_written_with_the_current_format_first_and_read_back() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], CURRENT);
        assert_eq!(format_of(&bytes), CURRENT);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
    }

    #[test]
    fn a_format_1_record_of_plain_json_is_still_read() {
        let bytes = br#"{"name":"Ada","count":3}"#;
        assert_eq!(format_of(bytes), 1);
        assert_eq!(decode::<Sample>(bytes).unwrap(), sample());
    }

    #[test]
    fn a_record_of_a_newer_format_is_refused_with_its_number() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[0] = 9;
        let error = decode::<Sample>(&bytes).unwrap_err();
        assert!(error.contains("record format 9"), "{error}");
        assert!(error.contains("newer version"), "{error}");
    }

    #[test]
    fn empty_and_damaged_records_are_errors_not_panics() {
        assert!(decode::<Sample>(b"").unwrap_err().contains("empty"));
        let error = decode::<Sample>(&[CURRENT, b'{', b'"']).unwrap_err();
        assert!(error.contains("record format 2"), "{error}");
        assert!(decode::<Sample>(b"{\"name\":").is_err());
        assert!(decode::<Sample>(&[0xff, 0x00]).is_err());
    }
}
