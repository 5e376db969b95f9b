//! The monitoring files Portier ships (contrib/prometheus, contrib/grafana): the alert rules
//! pass `promtool check rules` and their own `promtool test rules` file, the dashboard picks its
//! data source through a template variable, and every `portier_*` metric either file names is
//! one a running daemon exposes. Both are installed by the .deb under /usr/share/portier/.
//!
//! promtool comes with Debian's `prometheus` package (.ci/run installs it); without it the
//! promtool parts are skipped with a message, never silently.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RULES: &str = "contrib/prometheus/portier.rules.yml";
const RULE_TESTS: &str = "contrib/prometheus/portier.rules.test.yml";
const DASHBOARD: &str = "contrib/grafana/portier.json";

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Runs promtool with `args` in `dir`: `None` when it is not installed.
fn promtool(dir: &Path, args: &[&str]) -> Option<(bool, String)> {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run promtool: {e}"),
    }
}

/// Every `portier_…` name in `text`, with histogram sample suffixes taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("portier_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        // Part of a longer identifier is not a metric name.
        let before = rest[..at].chars().last();
        if !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            let name = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(name.to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// The families a daemon exposes (classic names), read from a never-synced daemon's /metrics.
async fn exposed_families() -> BTreeSet<String> {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(d.wait_for_notify("READY=1", Duration::from_secs(10)).await);
    let text = d.metrics().await;
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = Path::new(ROOT).join("contrib/prometheus");
    let Some((ok, output)) = promtool(&dir, &["check", "rules", "portier.rules.yml"]) else {
        eprintln!(
            "SKIPPED promtool check/test rules: promtool is not installed \
             (apt-get install prometheus; CI installs it)"
        );
        return;
    };
    assert!(ok, "promtool check rules:\n{output}");
    let (ok, output) = promtool(&dir, &["test", "rules", "portier.rules.test.yml"]).unwrap();
    assert!(ok, "promtool test rules:\n{output}");
    assert!(output.contains("SUCCESS"), "{output}");
}

#[test]
fn every_alert_the_rules_promise_is_there_and_unit_tested() {
    let rules = read(RULES);
    let tests = read(RULE_TESTS);
    for alert in [
        "PortierGatewayDown",
        "PortierSyncStale",
        "PortierLockDown",
        "PortierOutboxBacklogGrowing",
        "PortierClockUntrusted",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}\n")),
            "{alert} missing"
        );
    }
    for line in rules.lines() {
        if let Some(alert) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!("alertname: {alert}\n")),
                "{alert} has no promtool test"
            );
        }
    }
}

#[test]
fn the_dashboard_takes_its_data_source_from_a_template_variable() {
    let text = read(DASHBOARD);
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(
        !text.contains("__inputs") && !text.contains("${DS_"),
        "an import-only dashboard: use the datasource variable"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let source = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource template variable");
    assert_eq!(source["query"], "prometheus");
    let uid = format!("${{{}}}", source["name"].as_str().unwrap());

    let mut queries = 0;
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {panel}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], uid.as_str(), "{panel}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], uid.as_str(), "{target}");
            // Portier's own metrics, or Prometheus's `up` for the scrape itself.
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("portier_") || e.starts_with("up{")),
                "{target}"
            );
            queries += 1;
        }
    }
    assert!(queries >= 15, "{queries} queries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_and_the_dashboard_name_only_metrics_the_daemon_exposes() {
    let exposed = exposed_families().await;
    // The queries only: the dashboard's panel targets and variables, the rules' expressions.
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut queries = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push_str(target["expr"].as_str().unwrap());
            queries.push('\n');
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            queries.push_str(query);
            queries.push('\n');
        }
    }
    let expressions: String = read(RULES)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(|e| format!("{e}\n"))
        .collect();
    let used_by_dashboard = metric_names(&queries);
    let used_by_rules = metric_names(&expressions);
    assert!(used_by_rules.len() >= 7, "{used_by_rules:?}");
    for (file, used) in [(DASHBOARD, &used_by_dashboard), (RULES, &used_by_rules)] {
        let unknown: Vec<&String> = used.iter().filter(|m| !exposed.contains(*m)).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the daemon does not expose: {unknown:?} (exposed: {exposed:?})"
        );
    }
    // The dashboard shows every family DESIGN.md lists.
    for family in [
        "portier_build_info",
        "portier_health_status",
        "portier_last_sync_success_timestamp_seconds",
        "portier_syncs_total",
        "portier_sync_seconds",
        "portier_members",
        "portier_decisions_total",
        "portier_stage_seconds",
        "portier_lock_up",
        "portier_mqtt_connected",
        "portier_clock_trusted",
        "portier_auth_failures_total",
        "portier_outbox_depth",
        "portier_outbox_oldest_seconds",
        "portier_lockdown",
    ] {
        assert!(
            used_by_dashboard.contains(family),
            "the dashboard does not show {family}"
        );
    }
}

#[test]
fn the_package_installs_both_under_usr_share_portier() {
    let manifest = read("Cargo.toml");
    for (source, target) in [
        (DASHBOARD, "usr/share/portier/portier.json"),
        (RULES, "usr/share/portier/portier.rules.yml"),
    ] {
        assert!(
            manifest.contains(&format!("[\"{source}\", \"{target}\", \"644\"]")),
            "Cargo.toml [package.metadata.deb] assets do not install {source} as /{target}"
        );
    }
}
