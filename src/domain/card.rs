//! Card ids and emails in their comparable forms.
//!
//! A card id is compared upper-case with `:`, `-` and whitespace removed (`04:a1:b2` is
//! `04A1B2`); an email is compared lower-case. The `with_*` helpers do this on the stack for
//! the usual short ASCII input, so the decision path does not allocate; they must stay free of
//! I/O and never panic.

/// Longest input normalised on the stack; longer input is normalised on the heap.
const STACK_LEN: usize = 128;

/// A card id as compared: upper-case, without `:`, `-` and whitespace.
pub fn normalize_card(raw: &str) -> String {
    raw.chars()
        .filter(|c| !is_card_separator(*c))
        .flat_map(char::to_uppercase)
        .collect()
}

fn is_card_separator(c: char) -> bool {
    c == ':' || c == '-' || c.is_whitespace()
}

/// Calls `f` with the normalised card id, without allocating for short ASCII ids.
pub(crate) fn with_normalized_card<R>(raw: &str, f: impl FnOnce(&str) -> R) -> R {
    if raw.is_ascii() && raw.len() <= STACK_LEN {
        let mut buf = [0u8; STACK_LEN];
        let mut len = 0;
        for b in raw.bytes() {
            if !is_card_separator(char::from(b)) {
                buf[len] = b.to_ascii_uppercase();
                len += 1;
            }
        }
        if let Ok(s) = std::str::from_utf8(&buf[..len]) {
            return f(s);
        }
    }
    f(&normalize_card(raw))
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

    #[test]
    fn card_ids_ignore_case_colons_dashes_and_spaces() {
        assert_eq!(normalize_card("04:a1:b2:c3"), "04A1B2C3");
        assert_eq!(normalize_card(" 04-a1 b2\tc3 "), "04A1B2C3");
        assert_eq!(normalize_card(""), "");
    }

    #[test]
    fn stack_and_heap_normalisation_agree() {
        for raw in ["04:a1:b2", "ß-straße", &"ab:".repeat(100), "ÄÖ-ü"] {
            let on_stack = with_normalized_card(raw, str::to_owned);
            assert_eq!(on_stack, normalize_card(raw), "{raw}");
        }
        assert_eq!(
            with_lowercase("Ada@Example.COM", str::to_owned),
            "ada@example.com"
        );
        assert_eq!(with_lowercase("ÄDA@X", str::to_owned), "äda@x");
    }
}
