//! The validation state and the checks every section uses: required keys, durations, dates,
//! ids, URLs and paths (relative to the file's folder; bare `*_file` names from
//! `$CREDENTIALS_DIRECTORY`). A leaf: the sections (`validate`, `locks`, `policy`) use it and
//! know nothing of each other through it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;

use super::bounds::{Bounds, parse_duration};
use super::error::{KeyPath, Locator, Report};

/// Validation state: the report plus what path resolution needs.
pub(crate) struct Checker<'a, 'i> {
    /// Errors found so far.
    pub report: Report<'a, 'i>,
    /// The configuration file's folder (absolute when it can be).
    pub(super) base: PathBuf,
    pub(super) credentials_dir: Option<&'a Path>,
    pub(super) key_positions: BTreeMap<String, (usize, usize)>,
}

impl<'a, 'i> Checker<'a, 'i> {
    pub(super) fn new(
        file: &'a Path,
        credentials_dir: Option<&'a Path>,
        locator: &'a Locator<'i>,
    ) -> Self {
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
        let base = absolute.parent().map(Path::to_owned).unwrap_or_default();
        Self {
            report: Report::new(file, locator),
            base,
            credentials_dir,
            key_positions: BTreeMap::new(),
        }
    }

    /// The value, or an error saying the key is required.
    pub(crate) fn required<'v>(
        &mut self,
        value: Option<&'v str>,
        key: &KeyPath,
    ) -> Option<&'v str> {
        if value.is_none() {
            self.report.error(key, "required");
        }
        value
    }

    /// The value, with an error when it is empty or only spaces.
    pub(crate) fn non_empty(&mut self, value: String, key: &KeyPath) -> String {
        if value.trim().is_empty() {
            self.report.error(key, "must not be empty");
        }
        value
    }

    /// A duration like `30s`, `5m`, `2h`, `7d` within `bounds`; `default` when absent. Every
    /// duration key goes through here (see `bounds`).
    pub(crate) fn duration(
        &mut self,
        value: Option<&str>,
        key: &KeyPath,
        default: Duration,
        bounds: Bounds,
    ) -> Duration {
        let Some(text) = value else {
            return default;
        };
        match parse_duration(text, bounds) {
            Ok(d) => d,
            Err(message) => {
                self.report.error(key, message);
                default
            }
        }
    }

    /// A date `YYYY-MM-DD`.
    pub(crate) fn date(&mut self, text: &str, key: &KeyPath) -> Option<NaiveDate> {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
        if date.is_none() {
            self.report
                .error(key, format!("\"{text}\" is not a date like \"2026-12-25\""));
        }
        date
    }

    /// An `https://` URL, or an `http://` one to a loopback address (the test fakes): app
    /// tokens and the Cobot token travel on it, so plain HTTP over a network is refused.
    pub(super) fn http_url(&mut self, text: &str, key: &KeyPath) -> Option<url::Url> {
        match url::Url::parse(text) {
            Ok(url) if url.scheme() == "https" && url.has_host() => Some(url),
            Ok(url) if url.scheme() == "http" && url.host().is_some_and(is_loopback) => Some(url),
            Ok(url) if url.scheme() == "http" && url.has_host() => {
                self.report.error(
                    key,
                    format!(
                        "\"{text}\" must be https:// (http:// only to a loopback address: \
                         127.0.0.0/8, ::1 or localhost)"
                    ),
                );
                None
            }
            _ => {
                self.report.error(
                    key,
                    format!("\"{text}\" is not an https URL like \"https://co-up.cobot.me\""),
                );
                None
            }
        }
    }

    /// A folder path; relative ones resolve from the configuration file's folder.
    pub(super) fn dir_path(&mut self, text: &str, key: &KeyPath) -> PathBuf {
        if text.is_empty() {
            self.report.error(key, "must not be empty");
        }
        self.base.join(text)
    }

    /// A `*_file` path; a bare name is looked up in the credentials directory first (when set
    /// and the file is there), then like any relative path from the configuration's folder.
    /// Remembers where the key was written, for `check_secrets`.
    pub(super) fn file_path(&mut self, text: Option<&str>, key: &KeyPath) -> Option<PathBuf> {
        let text = text?;
        let position = self.report.position(key);
        self.key_positions.insert(key.to_string(), position);
        if text.is_empty() {
            self.report.error(key, "must not be empty");
            return None;
        }
        if !text.contains('/')
            && let Some(dir) = self.credentials_dir
            && dir.join(text).is_file()
        {
            return Some(dir.join(text));
        }
        Some(self.base.join(text))
    }
}

/// Checks an id of a unit, lock or reader: it appears in URLs and MQTT topics.
pub(crate) fn check_name(ck: &mut Checker<'_, '_>, id: &str, key: &KeyPath) {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        ck.report.error(
            key,
            format!(
                "\"{id}\" is not an id (letters, digits, `_`, `-` and `.`, like \"front_door\")"
            ),
        );
    }
}

/// True for `localhost`, 127.0.0.0/8 and `::1`.
fn is_loopback(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}
