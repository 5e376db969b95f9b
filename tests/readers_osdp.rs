//! OSDP readers against a real peripheral device: libosdp's own PD (PyPI `libosdp`,
//! `tests/peers/osdp_pd.py`) on a pseudo-terminal, `portier run` as the control panel. A card
//! opens the door and the reader lights green; a stranger gets red and two beeps; the secure
//! channel comes up with the key from `scbk_file` and never with a wrong one; a reader that
//! stops answering is offline in status and health and comes back by itself; `portier osdp
//! keyset` gives a reader in install mode its key.
//!
//! The PD runs on the Python that `scripts/test` prepares (`target/test-peers`, or
//! `$PORTIER_TEST_PYTHON`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::{Site, free_port, site_config, write_secret};
use daemon::Daemon;
use portier_fake_cobot::fixtures::{ADA, ADA_CARD};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// libosdp's command and colour codes, as the PD prints them.
const CMD_LED: i64 = 2;
const CMD_BUZZER: i64 = 3;
const CMD_KEYSET: i64 = 5;
const RED: i64 = 1;
const GREEN: i64 = 2;

const KEY: &str = "00112233445566778899AABBCCDDEEFF";
const OTHER_KEY: &str = "FFEEDDCCBBAA99887766554433221100";

/// The Python with `libosdp` installed.
fn python() -> String {
    if let Ok(python) = std::env::var("PORTIER_TEST_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-peers/bin/python");
    assert!(
        std::path::Path::new(venv).exists(),
        "no Python with libosdp: run `bash scripts/test` (it makes {venv}) or set PORTIER_TEST_PYTHON"
    );
    venv.to_owned()
}

/// The peripheral device: a reader on a pseudo-terminal.
struct Pd {
    _child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    port: String,
}

impl Pd {
    /// A reader at `address` with `key` (none: in install mode).
    async fn start(address: u8, key: Option<&str>) -> Pd {
        let mut command = Command::new(python());
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peers/osdp_pd.py"
            ))
            .args(["--address", &address.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(key) = key {
            command.args(["--scbk", key]);
        }
        let mut child = command.spawn().expect("start the OSDP PD");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .expect("the PD starts")
            .expect("the PD prints its port");
        let port = first["port"].as_str().expect("a port").to_owned();
        Pd {
            _child: child,
            stdin,
            lines,
            port,
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next command the panel sent, within `within`.
    async fn command(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .ok()??;
            if let Some(command) = line.get("command") {
                return Some(command.clone());
            }
        }
    }

    /// Commands until `within` passes with none.
    async fn commands(&mut self, within: Duration) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(command) = self.command(within).await {
            all.push(command);
        }
        all
    }
}

/// The demo site with an OSDP reader at the front door on `pd`'s port, with `key_file` (a
/// name in the site folder) as its `scbk_file`.
async fn site_with_reader(pd: &Pd, key_file: Option<&str>) -> (Site, u16) {
    let site = Site::start().await;
    let port = free_port();
    let key = key_file
        .map(|file| format!("scbk_file = \"{file}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "{}\n[[reader]]\nid = \"front_osdp\"\nkind = \"osdp\"\nunit = \"front_door\"\n\
         port = \"{}\"\naddress = 1\n{key}",
        site_config(),
        pd.port
    );
    site.write_config(&text, port);
    (site, port)
}

async fn start_daemon(site: &Site, port: u16) -> Daemon {
    Daemon::start_serving(&site.config(), site.dir.path(), port)
        .await
        .0
}

/// `/v1/status`'s reader once `check` accepts it (or after 20 s).
async fn reader_status(d: &Daemon, check: impl Fn(&Value) -> bool) -> Value {
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(20), |_, s| {
            check(&s["readers"]["front_osdp"])
        })
        .await;
    status["readers"]["front_osdp"].clone()
}

async fn events(d: &Daemon, n: usize) -> Vec<Value> {
    let (_, body) = d
        .poll("/v1/events?after=0", Duration::from_secs(10), |_, b| {
            b["events"].as_array().is_some_and(|e| e.len() >= n)
        })
        .await;
    body["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_opens_the_door_with_green_and_a_stranger_gets_red_and_two_beeps() {
    let mut pd = Pd::start(1, None).await;
    let (site, port) = site_with_reader(&pd, None).await;
    site.portier(&["check-config"]).await.expect_code(0);
    let d = start_daemon(&site, port).await;
    let reader = reader_status(&d, |r| r["online"] == true).await;
    assert_eq!(reader["online"], true, "{reader}");
    assert_eq!(reader["kind"], "osdp");
    assert_eq!(
        reader["secure_channel"], false,
        "no key, no secure channel: {reader}"
    );

    // Ada's card: 40 bits of raw card data.
    pd.send(&format!("card {ADA_CARD} 40")).await;
    let recorded = events(&d, 1).await;
    assert_eq!(recorded[0]["granted"], true, "{recorded:?}");
    assert_eq!(recorded[0]["opened"], true, "{recorded:?}");
    assert_eq!(recorded[0]["member"], ADA);
    assert_eq!(recorded[0]["reader"], "front_osdp");
    let led = pd.command(Duration::from_secs(10)).await.expect("feedback");
    assert_eq!(led["command"], CMD_LED, "{led}");
    assert_eq!(led["on_color"], GREEN, "{led}");
    assert_eq!(led["timer_count"], 50, "green for open_for (5 s): {led}");

    // A stranger: red, and the buzzer twice.
    pd.send("card DEADBEEF 32").await;
    let recorded = events(&d, 2).await;
    assert_eq!(recorded[1]["granted"], false, "{recorded:?}");
    let feedback = pd.commands(Duration::from_secs(3)).await;
    let led = feedback
        .iter()
        .find(|c| c["command"] == CMD_LED)
        .expect("LED");
    assert_eq!(led["on_color"], RED, "{feedback:?}");
    let buzzer = feedback
        .iter()
        .find(|c| c["command"] == CMD_BUZZER)
        .expect("buzzer");
    assert_eq!(buzzer["rep_count"], 2, "{feedback:?}");

    // The wiring check shows the last frame, not the card.
    let reader = reader_status(&d, |r| r["bits"] == 32).await;
    assert_eq!(reader["bits"], 32, "{reader}");
    assert!(reader["last_frame_at"].is_string());
    let (_, status) = d.admin_get("/v1/status").await;
    assert!(!status.to_string().contains(ADA_CARD), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_channel_uses_the_key_file_and_a_reader_that_goes_away_comes_back() {
    let mut pd = Pd::start(1, Some(KEY)).await;
    let (site, port) = site_with_reader(&pd, Some("front.scbk")).await;
    write_secret(&site.path("front.scbk"), KEY);
    site.portier(&["check-config"]).await.expect_code(0);
    let d = start_daemon(&site, port).await;
    let reader = reader_status(&d, |r| r["secure_channel"] == true).await;
    assert_eq!(reader["online"], true, "{reader}");
    assert_eq!(reader["secure_channel"], true, "{reader}");
    pd.send(&format!("card {ADA_CARD} 40")).await;
    assert_eq!(events(&d, 1).await[0]["opened"], true);
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("portier_reader_up{reader=\"front_osdp\"} 1\n")
            && metrics.contains("portier_reader_secure_channel{reader=\"front_osdp\"} 1\n"),
        "{metrics}"
    );

    // The reader stops answering: offline, with a health reason.
    pd.send("pause").await;
    let reader = reader_status(&d, |r| r["online"] == false).await;
    assert_eq!(reader["online"], false, "{reader}");
    let (_, health) = d.admin_get("/healthz").await;
    assert!(
        health["reasons"].as_array().unwrap().iter().any(|r| r
            .as_str()
            .unwrap()
            .starts_with("reader \"front_osdp\" is offline")),
        "{health}"
    );
    // It answers again: set up again, secure channel included, by itself.
    pd.send("resume").await;
    let back = tokio::time::Instant::now();
    let reader = reader_status(&d, |r| r["online"] == true && r["secure_channel"] == true).await;
    assert_eq!(reader["secure_channel"], true, "{reader}");
    eprintln!("OSDP reader back online after {:?}", back.elapsed());
    pd.send(&format!("card {ADA_CARD} 40")).await;
    let recorded = events(&d, 2).await;
    assert_eq!(recorded[1]["opened"], true, "{recorded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_with_another_key_stays_offline_and_no_card_of_it_is_taken() {
    let mut pd = Pd::start(1, Some(OTHER_KEY)).await;
    let (site, port) = site_with_reader(&pd, Some("front.scbk")).await;
    write_secret(&site.path("front.scbk"), KEY);
    let d = start_daemon(&site, port).await;
    let reader = reader_status(&d, |r| r["problem"].is_string()).await;
    assert_eq!(reader["online"], false, "{reader}");
    assert!(
        reader["problem"]
            .as_str()
            .unwrap()
            .contains("secure channel"),
        "{reader}"
    );
    // Long enough for libosdp to have tried the install key, had it been allowed to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let commands = pd.commands(Duration::from_millis(500)).await;
    assert!(
        commands.iter().all(|c| c["command"] != CMD_KEYSET),
        "a key was sent outside `portier osdp keyset`: {commands:?}"
    );
    pd.send(&format!("card {ADA_CARD} 40")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, body) = d.admin_get("/v1/events?after=0").await;
    assert_eq!(body["events"].as_array().unwrap().len(), 0, "{body}");
    let (_, health) = d.admin_get("/healthz").await;
    assert_eq!(health["status"], "degraded", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_gives_a_reader_in_install_mode_its_key_and_the_daemon_then_uses_it() {
    let mut pd = Pd::start(1, None).await;
    let (site, port) = site_with_reader(&pd, Some("front.scbk")).await;
    // No key yet: check-config says where it is missing.
    let run = site.portier(&["check-config"]).await;
    run.expect_code(64);
    assert!(run.stderr.contains("front.scbk"), "{}", run.stderr);

    let run = site
        .portier(&["osdp", "keyset", "--reader", "front_osdp", "--wait", "20s"])
        .await;
    run.expect_code(0);
    let file = site.path("front.scbk");
    let key = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(key.len(), 32, "{key}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let commands = pd.commands(Duration::from_millis(500)).await;
    let keyset = commands
        .iter()
        .find(|c| c["command"] == CMD_KEYSET)
        .expect("a key set");
    assert_eq!(keyset["data"], key.as_str(), "{commands:?}");
    site.portier(&["check-config"]).await.expect_code(0);

    let d = start_daemon(&site, port).await;
    let reader = reader_status(&d, |r| r["secure_channel"] == true).await;
    assert_eq!(reader["secure_channel"], true, "{reader}");
    // While the daemon holds the port, keyset refuses.
    let run = site
        .portier(&["osdp", "keyset", "--reader", "front_osdp"])
        .await;
    run.expect_code(1);
    assert!(run.stderr.contains("stop it first"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_on_a_reader_that_has_a_key_already_fails_and_keeps_the_old_file() {
    let pd = Pd::start(1, Some(OTHER_KEY)).await;
    let (site, _) = site_with_reader(&pd, Some("front.scbk")).await;
    write_secret(&site.path("front.scbk"), KEY);
    let run = site
        .portier(&["osdp", "keyset", "--reader", "front_osdp", "--wait", "3s"])
        .await;
    run.expect_code(1);
    assert!(run.stderr.contains("install mode"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(site.path("front.scbk"))
            .unwrap()
            .trim(),
        KEY
    );
}
