//! Card ids and emails in their comparable forms.
//!
//! A card id is compared with `:`, `-` and ASCII whitespace removed and ASCII letters
//! upper-cased (`04:a1:b2` is `04A1B2`); what remains must be 1–128 characters of `[0-9A-Z]`,
//! else it is malformed and matches nothing. Only ASCII is case-folded, on purpose: Unicode
//! rules fold `ſ` (long s) to `S` and `ı` to `I`, so `HANſ0001` would open the door of
//! `HANS0001`. An email is compared lower-case. The `with_*` helpers work on the stack, so the
//! decision path does not allocate; they must stay free of I/O and never panic.

/// The longest card id, in characters, after normalisation.
pub(crate) const MAX_CARD_LEN: usize = 128;

/// Longest text lower-cased on the stack; longer text is lower-cased on the heap.
const STACK_LEN: usize = 128;

/// Why a card id is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedCard {
    /// Nothing but separators.
    #[error("the card id is empty")]
    Empty,
    /// More than [`MAX_CARD_LEN`] characters after removing separators.
    #[error("the card id is longer than 128 characters")]
    TooLong,
    /// A character other than `0-9`, `A-Z`, `a-z`, `:`, `-` or a space.
    #[error("the card id may only hold 0-9 and A-Z (with \":\", \"-\" or spaces between)")]
    BadCharacter,
}

/// A card id as compared: `:`, `-` and ASCII whitespace removed, ASCII letters upper-cased;
/// an error when the rest is not 1–128 characters of `[0-9A-Z]`.
pub fn normalize_card(raw: &str) -> Result<String, MalformedCard> {
    with_normalized_card(raw, str::to_owned)
}

fn is_card_separator(b: u8) -> bool {
    b == b':' || b == b'-' || b.is_ascii_whitespace()
}

/// Calls `f` with the normalised card id (see [`normalize_card`]), without allocating.
pub(crate) fn with_normalized_card<R>(
    raw: &str,
    f: impl FnOnce(&str) -> R,
) -> Result<R, MalformedCard> {
    let mut buf = [0u8; MAX_CARD_LEN];
    let mut len = 0;
    // Bytes, not chars: every byte of a multi-byte UTF-8 character is >= 0x80 and so fails
    // the ASCII check below; nothing non-ASCII can survive into the result.
    for b in raw.bytes().filter(|b| !is_card_separator(*b)) {
        if !b.is_ascii_alphanumeric() {
            return Err(MalformedCard::BadCharacter);
        }
        let Some(slot) = buf.get_mut(len) else {
            return Err(MalformedCard::TooLong);
        };
        *slot = b.to_ascii_uppercase();
        len += 1;
    }
    match std::str::from_utf8(&buf[..len]) {
        Ok("") => Err(MalformedCard::Empty),
        Ok(card) => Ok(f(card)),
        // Unreachable: only ASCII alphanumerics were copied.
        Err(_) => Err(MalformedCard::BadCharacter),
    }
}

/// Calls `f` with the lower-case text, without allocating for short ASCII text.
pub(crate) fn with_lowercase<R>(raw: &str, f: impl FnOnce(&str) -> R) -> R {
    if raw.is_ascii() && raw.len() <= STACK_LEN {
        let mut buf = [0u8; STACK_LEN];
        let bytes = &mut buf[..raw.len()];
        bytes.copy_from_slice(raw.as_bytes());
        bytes.make_ascii_lowercase();
        if let Ok(s) = std::str::from_utf8(bytes) {
            return f(s);
        }
    }
    f(&raw.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn card_ids_ignore_case_colons_dashes_and_spaces() {
        assert_eq!(normalize_card("04:a1:b2:c3").as_deref(), Ok("04A1B2C3"));
        assert_eq!(normalize_card(" 04-a1 b2\tc3 ").as_deref(), Ok("04A1B2C3"));
        assert_eq!(
            normalize_card(&"ab:".repeat(64)).as_deref(),
            Ok("AB".repeat(64).as_str())
        );
    }

    #[test]
    fn only_ascii_letters_are_upper_cased_so_a_long_s_opens_nothing() {
        // Unicode case folding turns 'ſ' into 'S' and 'ı' into 'I'; ASCII folding does not.
        assert_eq!(normalize_card("HANſ0001"), Err(MalformedCard::BadCharacter));
        assert_eq!(normalize_card("ıd01"), Err(MalformedCard::BadCharacter));
        assert_eq!(normalize_card("ÄÖ-ü"), Err(MalformedCard::BadCharacter));
        assert_eq!(
            normalize_card("04\u{a0}A1"),
            Err(MalformedCard::BadCharacter)
        );
    }

    #[test]
    fn empty_long_and_odd_card_ids_are_malformed() {
        assert_eq!(normalize_card(""), Err(MalformedCard::Empty));
        assert_eq!(normalize_card(" :-: "), Err(MalformedCard::Empty));
        assert_eq!(
            normalize_card(&"A".repeat(129)),
            Err(MalformedCard::TooLong)
        );
        assert!(normalize_card(&"A".repeat(128)).is_ok());
        for odd in ["04_A1", "04.A1", "04/A1", "04\0A1", "{\"x\"}", "04+A1"] {
            assert_eq!(
                normalize_card(odd),
                Err(MalformedCard::BadCharacter),
                "{odd}"
            );
        }
    }

    #[test]
    fn emails_are_lower_cased_on_the_stack_and_the_heap() {
        assert_eq!(
            with_lowercase("Ada@Example.COM", str::to_owned),
            "ada@example.com"
        );
        assert_eq!(with_lowercase("ÄDA@X", str::to_owned), "äda@x");
    }

    proptest! {
        /// No input holding a non-ASCII character ever normalises to a card id (so it can
        /// never match an ASCII card).
        #[test]
        fn no_non_ascii_input_ever_matches_an_ascii_card(
            prefix in "[0-9A-Za-z:\\- ]{0,20}",
            odd in any::<char>().prop_filter("non-ASCII", |c| !c.is_ascii()),
            suffix in "\\PC{0,20}",
        ) {
            let raw = format!("{prefix}{odd}{suffix}");
            prop_assert!(normalize_card(&raw).is_err(), "{raw:?}");
        }

        /// Whatever comes in, a card id that comes out is 1–128 characters of `[0-9A-Z]` and
        /// equals the input's ASCII alphanumerics, upper-cased.
        #[test]
        fn a_normalised_card_id_is_what_the_ascii_input_spells(raw in "\\PC{0,200}") {
            if let Ok(card) = normalize_card(&raw) {
                prop_assert!((1..=MAX_CARD_LEN).contains(&card.len()));
                prop_assert!(card.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
                let expected: String = raw
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_uppercase())
                    .collect();
                prop_assert_eq!(card, expected);
            }
        }
    }
}
