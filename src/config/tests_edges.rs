//! Tests of the bounds on what a user writes: durations outside their range, integers and
//! shares out of range, and Cobot URLs that would carry tokens in plain HTTP over a network.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// The smallest valid file, with room for more `[cobot]` keys after it.
const BASE: &str = "[site]\ntimezone = \"Europe/Berlin\"\n\n[cobot]\nsubdomain = \"co-up\"\n";

fn load(text: &str) -> Result<Config, ConfigErrors> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("portier.toml");
    fs::write(&path, text).expect("write config");
    Config::load_with(&path, None)
}

/// The one error of `text`, failing when it loads or has several.
fn only_error(text: &str) -> ConfigError {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(ConfigErrors(mut errors)) => {
            assert_eq!(errors.len(), 1, "{errors:#?}");
            errors.remove(0)
        }
    }
}

/// A file setting one duration key (`table.key`, or `unit.open_for`) to `value`.
fn with_duration(key: &str, value: &str) -> String {
    let (table, name) = key.split_once('.').expect("table.key");
    match table {
        "cobot" => format!("{BASE}{name} = \"{value}\"\n"),
        "unit" => format!("{BASE}\n[[unit]]\nid = \"door\"\n{name} = \"{value}\"\n"),
        _ => format!("{BASE}\n[{table}]\n{name} = \"{value}\"\n"),
    }
}

/// Each duration key with the longest value just outside its range and its range as shown.
const TOO_LONG: [(&str, &str, &str, &str); 8] = [
    ("cobot.sync_interval", "25h", "10s", "30s to 1d"),
    ("unit.open_for", "61m", "0s", "1ms to 1h"),
    ("cobot.booking_grace", "25h", "", "0s to 1d"),
    ("cobot.booking_horizon", "401d", "23h", "1d to 400d"),
    ("cobot.token_cache_ttl", "401d", "59m", "1h to 400d"),
    ("cobot.request_timeout", "11m", "999ms", "1s to 10m"),
    ("offline.max_age", "401d", "59m", "1h to 400d"),
    ("events.retention", "11y", "23h", "1d to 10y"),
];

#[test]
fn every_duration_outside_its_range_is_an_error_naming_the_key_and_the_range() {
    for (key, too_long, too_short, range) in TOO_LONG {
        let error = only_error(&with_duration(key, too_long));
        let shown_key = key.replace("unit.", "unit[0].");
        assert_eq!(error.key, shown_key, "{error}");
        assert_eq!(
            error.message,
            format!("\"{too_long}\" is out of range ({range})")
        );
        assert!(error.line > 0, "{error}");
        if !too_short.is_empty() {
            let error = only_error(&with_duration(key, too_short));
            assert_eq!(error.key, shown_key, "{error}");
            assert!(error.message.contains(range), "{error}");
        }
    }
}

#[test]
fn durations_at_the_ends_of_their_ranges_are_accepted() {
    let ends = [
        ("cobot.sync_interval", "30s", "24h"),
        ("unit.open_for", "1ms", "1h"),
        ("cobot.booking_grace", "0s", "24h"),
        ("cobot.booking_horizon", "1d", "400d"),
        ("cobot.token_cache_ttl", "1h", "400d"),
        ("cobot.request_timeout", "1s", "10m"),
        ("offline.max_age", "1h", "400d"),
        ("events.retention", "1d", "10y"),
    ];
    for (key, short, long) in ends {
        for value in [short, long] {
            if let Err(e) = load(&with_duration(key, value)) {
                panic!("{key} = {value}: {e}");
            }
        }
    }
    let config = load(&with_duration("events.retention", "10y")).expect("valid");
    assert_eq!(config.events.retention, Duration::from_secs(315_576_000));
}

#[test]
fn a_duration_too_large_for_any_clock_is_out_of_range() {
    let error = only_error(&with_duration(
        "cobot.sync_interval",
        "100000000000000000000d",
    ));
    assert_eq!(error.key, "cobot.sync_interval");
    assert!(
        error.message.contains("out of range (30s to 1d)"),
        "{error}"
    );
}

#[test]
fn every_default_duration_is_inside_its_own_range() {
    let config = load(BASE).expect("defaults are valid");
    use super::bounds::Bounds;
    assert!(Bounds::SYNC_INTERVAL.contains(config.cobot.sync_interval));
    assert!(Bounds::REQUEST_TIMEOUT.contains(config.cobot.request_timeout));
    assert!(Bounds::BOOKING_HORIZON.contains(config.cobot.booking_horizon));
    assert!(Bounds::TOKEN_CACHE_TTL.contains(config.cobot.token_cache_ttl));
    assert!(Bounds::BOOKING_GRACE.contains(config.policy.booking_grace));
    assert!(Bounds::EVENTS_RETENTION.contains(config.events.retention));
    let unit = load(&format!("{BASE}\n[[unit]]\nid = \"door\"\n")).expect("valid");
    assert!(Bounds::OPEN_FOR.contains(unit.policy.units[0].open_for));
}

#[test]
fn integers_and_shares_out_of_range_name_their_key() {
    let lock = "\n[[lock]]\nid = \"relay\"\ndriver = \"modbus\"\naddress = \"tcp://127.0.0.1\"\n";
    let cases = [
        (
            format!("{BASE}{lock}slave = 256\ncoil = 0\n"),
            "lock[0].slave",
        ),
        (
            format!("{BASE}{lock}slave = -1\ncoil = 0\n"),
            "lock[0].slave",
        ),
        (format!("{BASE}{lock}coil = 65536\n"), "lock[0].coil"),
        (format!("{BASE}{lock}register = -5\n"), "lock[0].register"),
        (
            format!("{BASE}{lock}register = 1\nregister_value = 9223372036854775807\n"),
            "lock[0].register_value",
        ),
        (
            format!("{BASE}max_revoke_ratio = 1.5\n"),
            "cobot.max_revoke_ratio",
        ),
        (
            format!("{BASE}max_revoke_ratio = -0.1\n"),
            "cobot.max_revoke_ratio",
        ),
        (
            format!("{BASE}max_revoke_ratio = nan\n"),
            "cobot.max_revoke_ratio",
        ),
        (
            format!("{BASE}max_revoke_ratio = inf\n"),
            "cobot.max_revoke_ratio",
        ),
    ];
    for (text, key) in cases {
        let error = only_error(&text);
        assert_eq!(error.key, key, "{text}\n{error}");
    }
    // Beyond 64 bits TOML itself has no number: an error at the value, not a crash.
    let error = only_error(&format!(
        "{BASE}{lock}slave = 99999999999999999999\ncoil = 0\n"
    ));
    assert!(error.line > 0, "{error}");
}

#[test]
fn cobot_urls_must_be_https_except_http_to_loopback() {
    for url in [
        "https://co-up.cobot.me",
        "http://127.0.0.1:8000",
        "http://127.8.9.10",
        "http://localhost:3000",
        "http://LOCALHOST",
        "http://[::1]:8000",
    ] {
        for key in ["api_url", "www_url"] {
            let text = format!("{BASE}{key} = \"{url}\"\n");
            if let Err(e) = load(&text) {
                panic!("{key} = {url}: {e}");
            }
        }
    }
    for url in [
        "http://co-up.cobot.me",
        "http://192.168.1.10:8000",
        "http://[::ffff:10.0.0.1]",
        "http://localhost.example.com",
        "ftp://127.0.0.1",
    ] {
        for key in ["api_url", "www_url"] {
            let error = only_error(&format!("{BASE}{key} = \"{url}\"\n"));
            assert_eq!(error.key, format!("cobot.{key}"), "{error}");
            assert!(error.message.contains("https"), "{error}");
        }
    }
}
