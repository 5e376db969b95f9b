//! Tests of loading: the example file, each kind of error with its key and position, secret
//! files, and path resolution.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::line_col;
use super::*;

/// The smallest valid file.
const BASE: &str = "[site]\ntimezone = \"Europe/Berlin\"\n\n[cobot]\nsubdomain = \"co-up\"\n";

/// The repository's example configuration.
fn example_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portier.toml");
    fs::read_to_string(path).expect("config/portier.toml is readable")
}

/// Writes `text` as `portier.toml` in a fresh folder.
fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("portier.toml");
    fs::write(&path, text).expect("write config");
    (dir, path)
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    let (_dir, path) = write_config(text);
    Config::load_with(&path, None)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// The error naming `key`, failing the test with every error when there is none.
fn error_for<'e>(errors: &'e [ConfigError], key: &str) -> &'e ConfigError {
    errors
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no error for {key} in {errors:#?}"))
}

/// Line and column of the `nth` (0-based) occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle} not in text"))
        .0;
    line_col(text, offset)
}

fn assert_at(error: &ConfigError, text: &str, needle: &str, nth: usize) {
    assert_eq!(
        (error.line, error.col),
        position_of(text, needle, nth),
        "{error}"
    );
}

fn secret(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).expect("write secret");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[test]
fn the_example_file_loads_with_its_values() {
    let config = Config::parse(
        &example_text(),
        Path::new("/etc/portier/portier.toml"),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.site.name, "co-up-berlin");
    assert_eq!(config.site.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        config.http.admin_token_file.as_deref(),
        Some(Path::new("/etc/portier/admin.token"))
    );
    assert_eq!(config.cobot.api_url.as_str(), "https://co-up.cobot.me/");
    assert_eq!(config.cobot.www_url.as_str(), "https://www.cobot.me/");
    assert_eq!(config.cobot.request_timeout, Duration::from_secs(30));
    assert_eq!(config.events.retention, Duration::from_secs(90 * 86_400));
    assert_eq!(config.policy.fallback_plan.as_deref(), Some("Drop In"));
    assert_eq!(config.policy.booking_grace, Duration::from_secs(15 * 60));
    assert_eq!(config.policy.groups.len(), 3);
    assert_eq!(config.policy.units[1].parent.as_deref(), Some("building"));
    assert!(config.policy.permissions[1].schedule.is_some());
    assert_eq!(config.policy.overrides[0].add_groups, ["staff"]);
    assert_eq!(config.locks.len(), 3);
    assert_eq!(
        config.locks[0].driver,
        LockDriver::Modbus {
            address: ModbusAddress::Tcp("127.0.0.1:5020".into()),
            slave: 1,
            target: ModbusTarget::Coil(0),
        }
    );
    assert!(matches!(
        &config.locks[2].driver,
        LockDriver::Ble { device, unlock_payload, lock_payload: None, .. }
            if device == "AA:BB:CC:DD:EE:FF" && unlock_payload == &[1]
    ));
    assert_eq!(config.readers[0].topic(), Some("portier/readers/front"));
    assert_eq!(
        config.mqtt.as_ref().map(|m| m.client_id.as_str()),
        Some("portier-co-up")
    );
}

#[test]
fn the_example_file_passes_the_secret_check_once_its_secret_files_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = format!("{}/", dir.path().display());
    let text = example_text().replace("/etc/portier/", &folder);
    let path = dir.path().join("portier.toml");
    fs::write(&path, &text).expect("write config");
    let config = Config::load_with(&path, None).expect("valid");
    let missing = config.check_secrets();
    assert_eq!(missing.len(), 2, "{missing:#?}");
    secret(dir.path(), "admin.token", "token\n", 0o600);
    secret(dir.path(), "cobot-client-secret", "s3cret", 0o640);
    assert_eq!(config.check_secrets(), Vec::new());
}

#[test]
fn several_unknown_keys_are_all_reported_with_their_positions() {
    let text = format!(
        "{BASE}tmezone = 1\n\n[http]\nlisen = \"x\"\n\n[sitee]\nname = \"a\"\n\n\
         [[lock]]\nid = \"l\"\ndriver = \"log\"\ntopc = \"t\"\n"
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_at(error_for(&errors, "cobot.tmezone"), &text, "tmezone", 0);
    assert_at(error_for(&errors, "http.lisen"), &text, "lisen", 0);
    assert_at(error_for(&errors, "sitee"), &text, "sitee", 0);
    let topc = error_for(&errors, "lock[0].topc");
    assert_at(topc, &text, "topc", 0);
    assert_eq!(topc.message, "unknown key");
}

#[test]
fn an_unknown_group_is_reported_at_the_key_that_refers_to_it() {
    let text = format!(
        "{BASE}\n[[group]]\nid = \"drop_in\"\n\n[[unit]]\nid = \"door\"\n\n\
         [[permission]]\ngroup = \"drop_in\"\nunit = \"door\"\n\n\
         [[permission]]\ngroup = \"drop_inn\"\nunit = \"door\"\n"
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = error_for(&errors, "permission[1].group");
    assert_at(error, &text, "group = \"drop_inn\"", 0);
    assert!(error.message.contains("unknown group \"drop_inn\""));
    let path = error.file.display().to_string();
    assert_eq!(
        error.to_string(),
        format!(
            "{path}:{}:{}: permission[1].group: unknown group \"drop_inn\"",
            error.line, error.col
        )
    );
}

#[test]
fn a_cycle_in_the_unit_tree_is_reported_once_with_its_units() {
    let text = format!(
        "{BASE}\n[[unit]]\nid = \"root\"\n\n[[unit]]\nid = \"a\"\nparent = \"b\"\n\n\
         [[unit]]\nid = \"b\"\nparent = \"a\"\n\n[[unit]]\nid = \"c\"\nparent = \"a\"\n"
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = error_for(&errors, "unit[1].parent");
    assert_at(error, &text, "parent", 0);
    assert!(error.message.contains("cycle: a → b → a"), "{error}");
}

#[test]
fn a_unit_that_is_its_own_parent_is_a_cycle() {
    let text = format!("{BASE}\n[[unit]]\nid = \"a\"\nparent = \"a\"\n");
    let errors = errors(&text);
    assert!(
        error_for(&errors, "unit[0].parent")
            .message
            .contains("a → a")
    );
}

#[test]
fn a_bad_schedule_names_the_permission_and_the_window() {
    let text = format!(
        "{BASE}\n[[group]]\nid = \"g\"\n\n[[unit]]\nid = \"door\"\n\n\
         [[permission]]\ngroup = \"g\"\nunit = \"door\"\nschedule = [\"Mon-Fri 08:00-18:00\", \"Mon-Fri 8-18\"]\n"
    );
    let errors = errors(&text);
    let error = error_for(&errors, "permission[0].schedule");
    assert_at(error, &text, "schedule", 0);
    assert!(error.message.contains("Mon-Fri 8-18"), "{error}");
}

#[test]
fn an_unknown_time_zone_names_site_timezone() {
    let text = BASE.replace("Europe/Berlin", "Europe/Berlinn");
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = error_for(&errors, "site.timezone");
    assert_eq!((error.line, error.col), (2, 1));
    assert!(error.message.contains("Europe/Berlinn"));
}

#[test]
fn a_key_of_another_lock_driver_is_an_unknown_key() {
    let text = format!(
        "{BASE}\n[[lock]]\nid = \"relay\"\ndriver = \"modbus\"\naddress = \"tcp://10.0.0.5\"\n\
         coil = 3\ntopic = \"x/y\"\n"
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = error_for(&errors, "lock[0].topic");
    assert_at(error, &text, "topic", 0);
    assert_eq!(error.message, "unknown key for driver \"modbus\"");
}

#[test]
fn an_unknown_lock_driver_is_an_error() {
    let text = format!("{BASE}\n[[lock]]\nid = \"l\"\ndriver = \"zigbee\"\n");
    let errors = errors(&text);
    assert_eq!(
        error_for(&errors, "lock[0].driver").message,
        "unknown driver \"zigbee\" (modbus, mqtt, ble or log)"
    );
}

#[test]
fn a_reader_without_an_mqtt_section_is_an_error() {
    let text = format!(
        "{BASE}\n[[unit]]\nid = \"door\"\n\n[[reader]]\nid = \"r\"\nunit = \"door\"\ntopic = \"readers/r\"\n"
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = error_for(&errors, "mqtt");
    assert_at(error, &text, "[[reader]]", 0);
    assert!(error.message.contains("required"));
}

#[test]
fn usb_readers_need_no_broker_and_take_a_device_path_or_a_usb_id() {
    let text = format!(
        "{BASE}\n[[unit]]\nid = \"door\"\n\n[[reader]]\nid = \"desk\"\nkind = \"hid\"\nunit = \"door\"\n\
         device = \"/dev/input/by-id/usb-ACME-event-kbd\"\n\n[[reader]]\nid = \"side\"\nkind = \"hid\"\n\
         unit = \"door\"\nusb = \"08FF:0009\"\n"
    );
    let config = load(&text).expect("valid");
    assert_eq!(config.mqtt, None);
    assert_eq!(
        config.readers[0].source,
        ReaderSource::Hid(HidDevice::Path(
            "/dev/input/by-id/usb-ACME-event-kbd".into()
        ))
    );
    assert_eq!(
        config.readers[1].source,
        ReaderSource::Hid(HidDevice::Usb {
            vendor: 0x08ff,
            product: 0x0009
        })
    );
    assert_eq!(config.readers[1].topic(), None);
}

#[test]
fn a_usb_reader_with_a_topic_both_devices_or_a_bad_id_and_an_unknown_kind_are_errors() {
    let reader =
        |i: usize, keys: &str| format!("\n[[reader]]\nid = \"r{i}\"\nunit = \"door\"\n{keys}\n");
    let text = format!(
        "{BASE}\n[[unit]]\nid = \"door\"\n{}{}{}{}{}",
        reader(
            0,
            "kind = \"hid\"\ndevice = \"/dev/input/event3\"\ntopic = \"readers/r0\""
        ),
        reader(
            1,
            "kind = \"hid\"\ndevice = \"/dev/input/event3\"\nusb = \"08ff:0009\""
        ),
        reader(2, "kind = \"hid\"\nusb = \"08ff-0009\""),
        reader(3, "kind = \"hid\""),
        reader(4, "kind = \"nfc\""),
    );
    let errors = errors(&text);
    assert!(
        error_for(&errors, "reader[0].topic")
            .message
            .contains("unknown key for kind \"hid\"")
    );
    assert!(
        error_for(&errors, "reader[1].usb")
            .message
            .contains("either device or usb")
    );
    assert!(
        error_for(&errors, "reader[2].usb")
            .message
            .contains("08ff-0009")
    );
    assert!(
        error_for(&errors, "reader[3].device")
            .message
            .contains("required")
    );
    assert!(
        error_for(&errors, "reader[4].kind")
            .message
            .contains("unknown reader kind \"nfc\"")
    );
    // None of them talks MQTT: no [mqtt] is asked for.
    assert!(errors.iter().all(|e| e.key != "mqtt"), "{errors:#?}");
}

#[test]
fn wiegand_readers_take_two_line_names_and_read_their_format_and_credential() {
    let text = format!(
        "{BASE}\n[[unit]]\nid = \"door\"\n\n[[reader]]\nid = \"front\"\nkind = \"wiegand\"\n\
         unit = \"door\"\nd0 = \"GPIO17\"\nd1 = \"GPIO27\"\n\n[[reader]]\nid = \"back\"\n\
         kind = \"wiegand\"\nunit = \"door\"\nd0 = \"WG_D0\"\nd1 = \"WG_D1\"\nchip = \"gpiochip4\"\n\
         format = 34\ncredential = \"facility_card\"\nframe_gap = \"40ms\"\npin_timeout = \"20s\"\n\n\
         [[reader]]\nid = \"desk\"\nkind = \"wiegand\"\nenrol = true\nd0 = \"GPIO5\"\nd1 = \"GPIO6\"\n\
         format = \"raw\"\n"
    );
    let config = load(&text).expect("valid");
    assert_eq!(config.mqtt, None, "Wiegand readers need no broker");
    assert_eq!(
        config.readers[0].source,
        ReaderSource::Wiegand(WiegandWiring {
            d0: "GPIO17".into(),
            d1: "GPIO27".into(),
            chip: None,
            format: WiegandFormat::Auto,
            credential: WiegandCredential::Hex,
            frame_gap: Duration::from_millis(25),
            pin_timeout: Duration::from_secs(10),
        })
    );
    assert_eq!(
        config.readers[1].source,
        ReaderSource::Wiegand(WiegandWiring {
            d0: "WG_D0".into(),
            d1: "WG_D1".into(),
            chip: Some("gpiochip4".into()),
            format: WiegandFormat::Bits(34),
            credential: WiegandCredential::FacilityCard,
            frame_gap: Duration::from_millis(40),
            pin_timeout: Duration::from_secs(20),
        })
    );
    assert_eq!(config.readers[1].kind(), "wiegand");
    assert_eq!(
        config.readers[2].unit, None,
        "an enrolment reader opens nothing"
    );
    assert!(matches!(
        &config.readers[2].source,
        ReaderSource::Wiegand(w) if w.format == WiegandFormat::Raw
    ));
}

#[test]
fn bad_wiegand_keys_and_enrolment_readers_with_a_unit_are_errors() {
    let reader = |i: usize, keys: &str| format!("\n[[reader]]\nid = \"r{i}\"\n{keys}\n");
    let wiegand = "kind = \"wiegand\"\nunit = \"door\"";
    let text = format!(
        "{BASE}\n[[unit]]\nid = \"door\"\n{}{}{}{}{}{}{}",
        reader(0, &format!("{wiegand}\nd0 = \"GPIO17\"")),
        reader(1, &format!("{wiegand}\nd0 = \"GPIO17\"\nd1 = \"GPIO17\"")),
        reader(
            2,
            &format!("{wiegand}\nd0 = \"A\"\nd1 = \"B\"\nformat = 32")
        ),
        reader(
            3,
            &format!("{wiegand}\nd0 = \"A\"\nd1 = \"B\"\ncredential = \"decimal\"")
        ),
        reader(
            4,
            &format!("{wiegand}\nd0 = \"A\"\nd1 = \"B\"\nframe_gap = \"2s\"")
        ),
        reader(
            5,
            &format!("{wiegand}\nd0 = \"A\"\nd1 = \"B\"\ntopic = \"readers/r5\"")
        ),
        reader(
            6,
            "kind = \"hid\"\nenrol = true\nunit = \"door\"\ndevice = \"/dev/input/event1\""
        ),
    );
    let errors = errors(&text);
    let says = |key: &str, text: &str| {
        let message = &error_for(&errors, key).message;
        assert!(message.contains(text), "{key}: {message}");
    };
    says("reader[0].d1", "required");
    says("reader[1].d1", "two lines");
    says("reader[2].format", "26, 34, 35, 37");
    says("reader[3].credential", "\"decimal\"");
    says("reader[4].frame_gap", "500ms");
    says("reader[5].topic", "unknown key for kind \"wiegand\"");
    says("reader[6].unit", "opens nothing");
    assert!(errors.iter().all(|e| e.key != "mqtt"), "{errors:#?}");
}

#[test]
fn timezone_and_subdomain_are_required_and_tokens_are_not() {
    let errors = errors("[site]\nname = \"x\"\n");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    error_for(&errors, "site.timezone");
    error_for(&errors, "cobot.subdomain");
    let config = load("[site]\ntimezone = \"UTC\"\n[cobot]\napi_url = \"http://127.0.0.1:9/\"\n")
        .expect("api_url replaces subdomain");
    assert_eq!(config.cobot.api_url.as_str(), "http://127.0.0.1:9/");
    assert_eq!(config.cobot.client_id, None);
    assert_eq!(config.cobot.access_token_file, None);
}

#[test]
fn defaults_apply_when_keys_are_absent() {
    let config = load(BASE).expect("valid");
    assert_eq!(config.site.state_dir, Path::new("/var/lib/portier"));
    assert_eq!(config.site.name, "co-up");
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.cobot.sync_interval, Duration::from_secs(300));
    assert!(config.cobot.check_ins);
    assert!((config.cobot.max_revoke_ratio - 0.5).abs() < f64::EPSILON);
    assert_eq!(
        config.cobot.booking_horizon,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        config.cobot.token_cache_ttl,
        Duration::from_secs(30 * 86_400)
    );
    assert!(config.policy.require_connected_user);
    assert_eq!(config.policy.offline.max_age, None);
    assert_eq!(config.mqtt, None);
}

#[test]
fn a_syntax_error_is_one_error_at_the_place_toml_reports() {
    let text = format!("{BASE}\n[http\nlisten = \"x\"\n");
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, 7, "{}", errors[0]);
    assert_eq!(errors[0].key, "");
}

#[test]
fn a_wrong_type_names_its_key_and_value_position() {
    let text = format!("{BASE}sync_interval = 5\n");
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = error_for(&errors, "cobot.sync_interval");
    assert_at(error, &text, "5\n", 0);
}

#[test]
fn a_missing_file_is_an_error_naming_the_path() {
    let path = Path::new("/nonexistent/portier.toml");
    let ConfigErrors(errors) = Config::load_with(path, None).expect_err("missing");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("/nonexistent/portier.toml: ")
    );
}

#[test]
fn a_fallback_plan_without_an_assignment_of_that_name_is_left_to_cobots_plan_list() {
    let config = load(&format!("{BASE}fallback_plan = \"Part Time\"\n")).expect("valid");
    assert_eq!(config.policy.fallback_plan.as_deref(), Some("Part Time"));
}

#[test]
fn references_ids_and_values_are_all_checked_at_once() {
    let text = format!(
        "{BASE}fallback_plan = \"\"\nmax_revoke_ratio = 1.5\nrequest_timeout = \"soon\"\n\n\
         [offline]\nkeep_groups = [\"ghost\"]\n\n\
         [[group]]\nid = \"Full Time\"\n\n[[group]]\nid = \"g\"\n\n[[group]]\nid = \"g\"\n\n\
         [[assignment]]\nplan = \"P\"\ngroups = [\"x\"]\n\n\
         [[unit]]\nid = \"u\"\nlock = \"nolock\"\nparent = \"nowhere\"\nopen_for = \"0s\"\n\n\
         [[unit]]\nid = \"u\"\n\n[[holiday]]\ndate = \"2026-13-01\"\n\n\
         [[override]]\nmember = \"a@b.c\"\nadd_groups = [\"ghost\"]\nuntil = \"soon\"\n"
    );
    let errors = errors(&text);
    for key in [
        "cobot.fallback_plan",
        "cobot.max_revoke_ratio",
        "cobot.request_timeout",
        "offline.keep_groups",
        "group[0].id",
        "group[2].id",
        "assignment[0].groups",
        "unit[0].lock",
        "unit[0].parent",
        "unit[0].open_for",
        "unit[1].id",
        "holiday[0].date",
        "override[0].add_groups",
        "override[0].until",
    ] {
        error_for(&errors, key);
    }
    assert_eq!(errors.len(), 14, "{errors:#?}");
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert!(lines.is_sorted(), "errors come in file order");
}

#[test]
fn modbus_addresses_and_targets_parse() {
    let text = format!(
        "{BASE}\n[[lock]]\nid = \"a\"\ndriver = \"modbus\"\naddress = \"rtu:///dev/ttyUSB0?baud=19200\"\n\
         slave = 7\nregister = 10\nregister_value = 3\n\n\
         [[lock]]\nid = \"b\"\ndriver = \"modbus\"\naddress = \"tcp://relay.local\"\ncoil = 1\n"
    );
    let config = load(&text).expect("valid");
    assert_eq!(
        config.locks[0].driver,
        LockDriver::Modbus {
            address: ModbusAddress::Rtu {
                path: "/dev/ttyUSB0".into(),
                baud: 19200
            },
            slave: 7,
            target: ModbusTarget::Register {
                register: 10,
                value: 3
            },
        }
    );
    assert!(matches!(
        &config.locks[1].driver,
        LockDriver::Modbus { address: ModbusAddress::Tcp(a), slave: 1, .. } if a == "relay.local:502"
    ));
}

#[test]
fn bad_lock_settings_are_named() {
    let text = format!(
        "{BASE}\n[[lock]]\nid = \"a\"\ndriver = \"modbus\"\naddress = \"udp://x\"\nslave = 300\n\
         coil = 1\nregister = 2\n\n\
         [[lock]]\nid = \"b\"\ndriver = \"ble\"\ndevice = \"AA:BB\"\ncharacteristic = \"xyz\"\n\
         unlock_payload = \"0g\"\n"
    );
    let errors = errors(&text);
    for key in [
        "lock[0].address",
        "lock[0].slave",
        "lock[0].register",
        "lock[1].device",
        "lock[1].characteristic",
        "lock[1].unlock_payload",
    ] {
        error_for(&errors, key);
    }
}

#[test]
fn check_secrets_names_the_key_and_file_of_an_open_secret_and_never_its_contents() {
    let dir = tempfile::tempdir().expect("temp dir");
    secret(dir.path(), "open.token", "abc", 0o644);
    let text = format!("{BASE}\n[http]\nadmin_token_file = \"open.token\"\n");
    let path = dir.path().join("portier.toml");
    fs::write(&path, &text).expect("write config");
    let config = Config::load_with(&path, None).expect("valid");
    let problems = config.check_secrets();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "http.admin_token_file");
    assert_at(&problems[0], &text, "admin_token_file", 0);
    assert!(
        problems[0].message.contains("open.token"),
        "{}",
        problems[0]
    );
    assert!(problems[0].message.contains("0644"), "{}", problems[0]);
    assert!(
        !problems[0].message.contains("abc"),
        "never show the secret"
    );
}

#[test]
fn check_secrets_reports_missing_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    secret(dir.path(), "tls.key", "key", 0o600);
    let text = format!("{BASE}\n[http]\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n");
    let path = dir.path().join("portier.toml");
    fs::write(&path, &text).expect("write config");
    let config = Config::load_with(&path, None).expect("valid");
    let problems = config.check_secrets();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "http.tls_cert_file");
    assert!(problems[0].message.contains("no such file"));
}

#[test]
fn a_broken_lock_is_reported_once_not_again_by_its_unit() {
    let text = format!(
        "{BASE}\n[[unit]]\nid = \"door\"\nlock = \"relay\"\n\n\
         [[lock]]\nid = \"relay\"\ndriver = \"modbus\"\ncoil = 1\n"
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    error_for(&errors, "lock[0].address");
}

#[test]
fn a_type_error_is_reported_with_the_unknown_keys_seen_before_it() {
    let text = "[cobot]\nsubdomain = 7\n\n[events]\nkeep = 1\n";
    let errors = errors(text);
    let error = error_for(&errors, "cobot.subdomain");
    assert_at(error, text, "7", 0);
    assert!(error.message.contains("expected a string"), "{error}");
    assert!(errors.len() <= 2, "{errors:#?}");
}

#[test]
fn a_bare_file_name_is_looked_up_in_the_credentials_directory_first() {
    let credentials = tempfile::tempdir().expect("temp dir");
    secret(credentials.path(), "admin.token", "abc", 0o600);
    let text = format!(
        "{BASE}client_secret_file = \"cobot-secret\"\n\n[http]\nadmin_token_file = \"admin.token\"\n"
    );
    let (dir, path) = write_config(&text);
    let config = Config::load_with(&path, Some(credentials.path())).expect("valid");
    assert_eq!(
        config.http.admin_token_file,
        Some(credentials.path().join("admin.token"))
    );
    assert_eq!(
        config.cobot.client_secret_file,
        Some(dir.path().join("cobot-secret")),
        "not in the credentials directory: next to the config"
    );
}

#[test]
fn relative_paths_resolve_from_the_config_folder() {
    let text = "[site]\ntimezone = \"UTC\"\nstate_dir = \"state\"\n\n\
                [cobot]\nsubdomain = \"co-up\"\naccess_token_file = \"secrets/token\"\n\
                client_secret_file = \"/etc/portier/cobot-secret\"\n";
    let (dir, path) = write_config(text);
    let config = Config::load_with(&path, Some(dir.path())).expect("valid");
    assert_eq!(config.site.state_dir, dir.path().join("state"));
    assert_eq!(
        config.cobot.access_token_file,
        Some(dir.path().join("secrets/token")),
        "a path with a folder is never looked up in the credentials directory"
    );
    assert_eq!(
        config.cobot.client_secret_file.as_deref(),
        Some(Path::new("/etc/portier/cobot-secret"))
    );
}

#[test]
fn a_mqtt_lock_needs_a_broker_url_of_its_scheme() {
    let text = format!(
        "{BASE}\n[mqtt]\nurl = \"http://broker\"\n\n[[lock]]\nid = \"l\"\ndriver = \"mqtt\"\n\
         topic = \"a/#\"\nunlock_payload = \"on\"\n"
    );
    let errors = errors(&text);
    error_for(&errors, "mqtt.url");
    error_for(&errors, "lock[0].topic");
}

proptest::proptest! {
    #[test]
    fn no_input_makes_loading_panic(text in "\\PC{0,200}") {
        let _ = Config::parse(&text, Path::new("p.toml"), None);
    }

    #[test]
    fn no_truncation_of_the_example_makes_loading_panic(cut in 0usize..6000) {
        let text = example_text();
        let cut = (0..=cut.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let _ = Config::parse(&text[..cut], Path::new("p.toml"), None);
    }
}

#[test]
fn a_file_with_no_settings_asks_to_be_edited_in_one_line() {
    let (_dir, path) = write_config(&installed_template_text());
    let ConfigErrors(errors) = Config::load_with(&path, None).expect_err("template is refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let line = errors[0].to_string();
    assert!(
        line.contains(&format!("edit {}", path.display())),
        "the message names the file to edit: {line}"
    );
    assert!(line.contains("examples/portier.toml"), "{line}");
}

#[test]
fn a_file_with_one_setting_gets_the_ordinary_errors_not_the_edit_message() {
    let errors = errors("[site]\n");
    assert!(
        errors.iter().all(|e| !e.message.contains("edit ")),
        "{errors:#?}"
    );
    error_for(&errors, "site.timezone");
}

/// The file the package installs as `/etc/portier/portier.toml`.
fn installed_template_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portier.template.toml");
    fs::read_to_string(path).expect("config/portier.template.toml is readable")
}

#[test]
fn home_assistant_needs_the_broker_and_a_topic_for_a_prefix() {
    let text = format!("{BASE}\n[homeassistant]\ncommands = true\n");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let error = error_for(&found, "mqtt");
    assert_at(error, &text, "homeassistant]", 0);
    assert!(error.message.contains("Home Assistant"), "{error:?}");

    let broker = "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n";
    for bad in ["ha/#", "/ha", "ha/", "", "h a", "ha//x"] {
        let text = format!("{BASE}\n{broker}\n[homeassistant]\nprefix = \"{bad}\"\n");
        let found = errors(&text);
        let error = error_for(&found, "homeassistant.prefix");
        assert!(
            error.message.contains("discovery prefix"),
            "{bad}: {error:?}"
        );
    }

    let text = format!("{BASE}\n{broker}\n[homeassistant]\n");
    let ha = load(&text).expect("valid").homeassistant.expect("on");
    assert_eq!(ha.prefix, "homeassistant");
    assert!(!ha.commands, "commands are off unless enabled");
    assert!(
        load(&format!("{BASE}\n{broker}"))
            .expect("valid")
            .homeassistant
            .is_none()
    );
}

#[test]
fn unlock_schedules_need_a_lock_and_name_a_bad_window() {
    let lock = "[[lock]]\nid = \"l\"\ndriver = \"log\"\n";
    let text = format!(
        "{BASE}\n{lock}\n[[unit]]\nid = \"hall\"\nunlocked = [\"Mon-Fri 09:00-17:00\"]\n\n\
         [[unit]]\nid = \"door\"\nlock = \"l\"\nunlocked = [\"Mon-Fri 09:00-17:00\", \"Someday 10:00-11:00\"]\n"
    );
    let found = errors(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        error_for(&found, "unit[0].unlocked")
            .message
            .contains("no `lock`")
    );
    assert!(
        error_for(&found, "unit[1].unlocked")
            .message
            .contains("window \"Someday 10:00-11:00\"")
    );
    let text = format!(
        "{BASE}\n{lock}\n[[unit]]\nid = \"door\"\nlock = \"l\"\nunlocked = [\"Mon-Fri 09:00-17:00\"]\n"
    );
    let config = load(&text).expect("valid");
    let unlocked = config.policy.units[0].unlocked.as_ref().expect("schedule");
    assert_eq!(unlocked.to_string(), "Mon-Fri 09:00-17:00");
}

#[test]
fn door_sensors_name_their_unit_driver_and_payloads() {
    let broker = "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n";
    let units = "[[unit]]\nid = \"door\"\nheld_open_after = \"2m\"\n";
    let text = format!(
        "{BASE}\n{broker}\n{units}\n\
         [[sensor]]\nunit = \"door\"\ndriver = \"mqtt\"\ntopic = \"z2m/door\"\njson_key = \"contact\"\nopen_value = false\nrex_topic = \"z2m/exit\"\n"
    );
    let config = load(&text).expect("valid");
    let sensor = &config.sensors[0];
    assert_eq!(sensor.held_open_after, Duration::from_secs(120));
    assert_eq!(sensor.driver(), "mqtt");
    let ContactSource::Mqtt {
        payload, rex_topic, ..
    } = &sensor.contact
    else {
        panic!("{sensor:?}")
    };
    assert_eq!(rex_topic.as_deref(), Some("z2m/exit"));
    assert_eq!(
        payload,
        &ContactPayload::Json {
            key: "contact".into(),
            open_value: serde_json::Value::Bool(false)
        }
    );

    let text = format!(
        "{BASE}\n{units}\n\
         [[sensor]]\nunit = \"door\"\ndriver = \"mqtt\"\ntopic = \"z2m/#\"\n\n\
         [[sensor]]\nunit = \"door\"\ndriver = \"modbus\"\naddress = \"tcp://10.0.0.5\"\nopen_when = 2\ntopic = \"x\"\n\n\
         [[sensor]]\nunit = \"attic\"\ndriver = \"laser\"\n"
    );
    let found = errors(&text);
    assert!(
        error_for(&found, "mqtt").message.contains("door contact"),
        "{found:#?}"
    );
    assert!(
        error_for(&found, "sensor[0].topic")
            .message
            .contains("wildcards")
    );
    assert!(
        error_for(&found, "sensor[1].unit")
            .message
            .contains("has a sensor already")
    );
    assert!(
        error_for(&found, "sensor[1].open_when")
            .message
            .contains("not 0 or 1")
    );
    assert!(
        error_for(&found, "sensor[1].discrete_input")
            .message
            .contains("required")
    );
    assert!(
        error_for(&found, "sensor[1].topic")
            .message
            .contains("unknown key")
    );
    assert!(
        error_for(&found, "sensor[2].unit")
            .message
            .contains("unknown unit")
    );
    assert!(
        error_for(&found, "sensor[2].driver")
            .message
            .contains("mqtt or modbus")
    );
}
