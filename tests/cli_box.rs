//! The command line as an operator meets it on the box, through the real binary:
//!
//! - `portier status [--json]` against the real daemon (a real HTTP server playing Cobot, a
//!   real sled cache): exit 0 ok, 1 degraded, 2 failing, 3 when no daemon answers.
//! - The state directory belongs to the service user: a command that would write it as another
//!   user (root, typically) refuses with exit 1 naming the owner, and writes nothing; while the
//!   daemon holds the store, `members`, `explain` and `sync` ask it instead.
//!
//! The ownership tests make a directory owned by another user with `chown`, so they need root
//! (as CI runs); as another user they use `/`, which belongs to root, for the refusals.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Run, Site, free_port, site_config};
use daemon::Daemon;
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::{ADA, CHARLES};
use serde_json::Value;

/// The uid (and gid) the tests hand the state directory to: `nobody` on Debian.
const OTHER_UID: u32 = 65534;

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

async fn site_on(port: u16) -> Site {
    let site = Site::start().await;
    site.write_config(&site_config(), port);
    site
}

async fn start_daemon(site: &Site, port: u16) -> Daemon {
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(
        d.wait_for_notify("READY=1", Duration::from_secs(20)).await,
        "no READY=1: {:?}",
        d.messages
    );
    d
}

/// Polls until `/healthz` says `want`.
async fn health_becomes(d: &Daemon, want: &str) -> Value {
    let (_, health) = d
        .poll("/healthz", Duration::from_secs(20), |_, h| {
            h["status"] == want
        })
        .await;
    assert_eq!(health["status"], want, "{health}");
    health
}

fn lines(run: &Run) -> String {
    format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_a_daemon_exits_3_and_says_so() {
    let port = free_port();
    let site = site_on(port).await;
    for args in [&["status"][..], &["status", "--json"][..]] {
        let run = site.portier(args).await;
        run.expect_code(3);
        assert!(run.stdout.is_empty(), "{}", lines(&run));
        assert!(
            run.stderr
                .contains(&format!("no daemon answers at http://127.0.0.1:{port}")),
            "{}",
            lines(&run)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_something_that_is_not_portier_exits_3() {
    // The fake Cobot's port: an HTTP server that answers /v1/status with no portier status.
    let site = Site::start().await;
    let cobot_port = site.cobot.url().port().expect("port");
    site.write_config(&site_config(), cobot_port);
    let run = site.portier(&["status"]).await;
    run.expect_code(3);
    assert!(
        run.stderr.contains("/v1/status answered HTTP"),
        "{}",
        lines(&run)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_summarises_a_healthy_daemon_and_its_json_is_v1_status() {
    let port = free_port();
    let site = site_on(port).await;
    let d = start_daemon(&site, port).await;
    health_becomes(&d, "ok").await;

    let run = site.portier(&["status"]).await;
    run.expect_code(0);
    let text = &run.stdout;
    for wanted in [
        "at site demo-space: OK",
        "Sync       last success ",
        "Snapshot   version ",
        " 7 members,",
        "Guard      applied",
        "front_lock (log): ok",
        "office_lock (log): ok",
        "Readers    none configured",
        "Outbox     0 check-ins waiting for Cobot",
        "Clock      trusted",
        "Health     ok",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?}\n{}", lines(&run));
    }

    let json = site.portier(&["status", "--json"]).await;
    json.expect_code(0);
    let answer = json.json();
    let (code, direct) = d.admin_get("/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(answer["health"]["status"], "ok");
    // The daemon's own document, passed through: the same fields (ages may have ticked).
    let keys = |v: &Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(keys(&answer), keys(&direct));
    assert_eq!(answer["snapshot"]["members"], direct["snapshot"]["members"]);
    assert_eq!(answer["site"], "demo-space");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_1_while_degraded_and_names_the_reason() {
    let port = free_port();
    let site = site_on(port).await;
    let d = start_daemon(&site, port).await;
    health_becomes(&d, "ok").await;
    site.cobot.set_fault("/api/", Fault::Status(503));
    let (code, body) = d.post("/v1/sync", Some(&d.admin_token)).await;
    assert_eq!(code, 202, "{body}");
    let health = health_becomes(&d, "degraded").await;

    let run = site.portier(&["status"]).await;
    run.expect_code(1);
    assert!(run.stdout.contains(": DEGRADED"), "{}", lines(&run));
    assert!(run.stdout.contains("last error: "), "{}", lines(&run));
    let reason = health["reasons"][0].as_str().expect("a reason");
    assert!(
        run.stdout.contains(&format!("- {reason}")),
        "the reason {reason:?} is not listed\n{}",
        lines(&run)
    );
    let json = site.portier(&["status", "--json"]).await;
    json.expect_code(1);
    assert_eq!(json.json()["health"]["status"], "degraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_2_while_failing() {
    let port = free_port();
    let site = site_on(port).await;
    site.cobot.set_fault("/api/", Fault::Unauthorized);
    let d = start_daemon(&site, port).await;
    // Failing from the start (no snapshot); wait until the 401 is known too.
    d.poll("/healthz", Duration::from_secs(20), |_, h| {
        h["reasons"].to_string().contains("reconnect")
    })
    .await;
    let run = site.portier(&["status"]).await;
    run.expect_code(2);
    assert!(run.stdout.contains(": FAILING"), "{}", lines(&run));
    assert!(
        run.stdout
            .contains("Snapshot   none: every request is denied"),
        "{}",
        lines(&run)
    );
    assert!(run.stdout.contains("reconnect"), "{}", lines(&run));
    assert!(
        run.stdout.contains("Sync       no successful sync yet"),
        "{}",
        lines(&run)
    );
}

/// A state directory that belongs to another user, and that user's name: as root, `state`
/// handed to `nobody`; otherwise `/`, which belongs to root.
fn foreign_state_dir(site: &Site) -> (PathBuf, &'static str) {
    if running_as_root() {
        let dir = site.path("state");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
        (dir, "nobody")
    } else {
        (PathBuf::from("/"), "root")
    }
}

fn with_state_dir(site: &Site, dir: &Path, port: u16) {
    site.write_config(
        &site_config().replace(
            "state_dir = \"state\"",
            &format!("state_dir = \"{}\"", dir.display()),
        ),
        port,
    );
}

fn listing(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            }
            found.push((entry.path(), meta.uid()));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_would_write_another_users_state_directory_refuse_and_name_the_owner() {
    let port = free_port();
    let site = Site::start().await;
    let (state, owner) = foreign_state_dir(&site);
    with_state_dir(&site, &state, port);
    let config = site.config().display().to_string();
    let before = if running_as_root() {
        listing(&state)
    } else {
        Vec::new()
    };

    for args in [
        &["sync"][..],
        &["sync", "--json"][..],
        &["members"][..],
        &["explain", "--member", ADA, "--unit", "front_door"][..],
        &["cobot", "connect", "--code", "abc"][..],
        &["run"][..],
    ] {
        let run = site.portier(args).await;
        run.expect_code(1);
        let shown = format!(
            "sudo -u {owner} portier --config {config} {}",
            args.join(" ")
        );
        assert!(
            run.stderr.contains(&format!(
                "the state directory {} belongs to user {owner} (uid ",
                state.display()
            )) && run.stderr.contains(&shown),
            "{args:?}: wanted the owner and {shown:?}\n{}",
            lines(&run)
        );
    }
    // Nothing was written: no cache, no lock file, no token.
    if running_as_root() {
        assert_eq!(listing(&state), before);
        assert!(before.is_empty(), "{before:?}");
    }
    // Reading the configuration and asking for the status write nothing: they still work.
    site.portier(&["check-config"]).await.expect_code(0);
    site.portier(&["status"]).await.expect_code(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_service_user_runs_the_daemon_root_commands_ask_it_and_write_nothing() {
    if !running_as_root() {
        eprintln!("skipped: running the daemon as another user needs root");
        return;
    }
    let port = free_port();
    let site = Site::start().await;
    let (state, owner) = foreign_state_dir(&site);
    assert_eq!(owner, "nobody");
    with_state_dir(&site, &state, port);
    // What the package sets up: the service user can reach its configuration and secrets.
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for secret in ["cobot.token", "admin.token"] {
        std::os::unix::fs::chown(site.path(secret), Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    }
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_portier"))
        .arg("--config")
        .arg(site.config())
        .arg("run")
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .current_dir("/")
        .env_remove("PORTIER_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the daemon as nobody");
    let client = portier::tls::http_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let health = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        if let Ok(r) = health {
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if body["status"] == "ok" {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon run as nobody did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let members = site.portier(&["members", "--json"]).await;
    members.expect_code(0);
    assert_eq!(members.json().as_array().map(Vec::len), Some(7));
    site.portier(&["explain", "--member", ADA, "--unit", "front_door"])
        .await
        .expect_code(0);
    site.portier(&["explain", "--member", CHARLES, "--unit", "front_door"])
        .await
        .expect_code(2);
    let sync = site.portier(&["sync", "--json"]).await;
    sync.expect_code(0);
    assert_eq!(sync.json()["applied"], true);
    // Through the daemon, it says what it may wait for.
    assert!(
        sync.stderr.contains("membership request every 10 s"),
        "{}",
        sync.stderr
    );
    site.portier(&["status"]).await.expect_code(0);
    // Commands with no daemon to ask still refuse.
    site.portier(&["run"]).await.expect_code(1);

    let files = listing(&state);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("portier.lock")),
        "{files:?}"
    );
    let foreign: Vec<_> = files.iter().filter(|(_, uid)| *uid != OTHER_UID).collect();
    assert!(foreign.is_empty(), "files not owned by nobody: {foreign:?}");

    // Once the daemon is gone, nobody answers for the store: refused again.
    daemon.kill().await.unwrap();
    let run = site.portier(&["members"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("sudo -u nobody "), "{}", lines(&run));
}
