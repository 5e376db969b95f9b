//! Unit tests of `client`: headers, URLs and refusal reasons.

use super::*;
use reqwest::header::HeaderValue;

#[test]
fn retry_after_is_read_as_seconds_or_as_a_date() {
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static("17"));
    assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT"),
    );
    h.insert(
        DATE,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
    h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(retry_after(&h), None);
}

#[test]
fn a_retry_after_of_at_most_an_hour_is_honoured_and_anything_else_ignored() {
    let with = |value: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(value));
        h.insert(
            DATE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        retry_after(&h)
    };
    assert_eq!(with("3600"), Some(Duration::from_secs(3600)));
    assert_eq!(with("0"), Some(Duration::ZERO));
    for ignored in [
        "3601",
        "18446744073709551615",
        "99999999999999999999999",
        "-5",
        "1.5",
        "",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Wed, 21 Oct 2015 08:28:01 GMT",
        "Wed, 21 Oct 2015 07:27:00 GMT",
    ] {
        assert_eq!(with(ignored), None, "Retry-After: {ignored:?}");
    }
    assert_eq!(
        with("Wed, 21 Oct 2015 08:28:00 GMT"),
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn endpoints_keep_a_base_path_and_encode_segments() {
    let base = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
    let url = endpoint(&base, &["api", "memberships", "a/b", "check_ins"]).unwrap();
    assert_eq!(url.path(), "/prefix/api/memberships/a%2Fb/check_ins");
}

#[test]
fn the_client_never_shows_its_token() {
    let url = Url::parse("http://127.0.0.1:9").unwrap();
    let c = CobotClient::new(url.clone(), url, "s3cret".into(), Duration::from_secs(1)).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn a_refusal_reason_comes_from_errors_base() {
    assert_eq!(
        refusal_reason(r#"{"errors": {"base": "No time passes left."}}"#),
        "No time passes left."
    );
    assert_eq!(
        refusal_reason(r#"{"errors": {"base": ["a", "b"]}}"#),
        "a; b"
    );
    assert_eq!(refusal_reason("nope"), "nope");
}
