//! What the two pages (the installer page, the member page) share: cookies, HTML escaping,
//! random tokens and checking a CSRF token.

use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The value of cookie `name` in the request, if any.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// HTML-escapes text put into a page.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A fresh random token (session ids, CSRF tokens): 256 bits as hex.
pub(super) fn random_token() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// Whether the request's `X-CSRF-Token` is `expected` (compared in constant time).
pub(super) fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Locks a mutex whose data stays usable after a panic elsewhere (maps of sessions, limits).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_by_name_text_is_escaped_and_csrf_tokens_compared() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; portier_page=abc; b=2"),
        );
        assert_eq!(cookie(&headers, "portier_page"), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        assert_eq!(
            escape("<script>\"x\" & 'y'"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
        assert!(!csrf_matches(&headers, "t"));
        headers.insert("x-csrf-token", HeaderValue::from_static("t"));
        assert!(csrf_matches(&headers, "t"));
        assert!(!csrf_matches(&headers, "u"));
        assert_eq!(random_token().len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
