#![allow(dead_code)] // reason: each test binary uses a different part of the harness

//! Running `portier run` as a child process the way systemd does: with a `NOTIFY_SOCKET` we
//! read `READY=1`, `STATUS=`, `WATCHDOG=1` and `STOPPING=1` from.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running daemon.
pub struct Daemon {
    pub child: Child,
    /// Every notify message so far, read continuously (as systemd does: a full socket queue
    /// would block the daemon's sd_notify calls).
    notified: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub messages: Vec<String>,
    pub base: String,
    pub admin_token: String,
}

impl Daemon {
    /// Starts `portier --config <config> run` with a notify socket in `dir`, the watchdog
    /// set to `watchdog`.
    pub fn start(config: &Path, dir: &Path, http_port: u16, watchdog: Option<Duration>) -> Daemon {
        // A name no earlier daemon of this process used in `dir`. A free port number, as it
        // was before, repeats: crash_safety starts a daemon per round in one directory and
        // failed on an old socket file in 2 of 5 runs.
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = dir.join(format!("notify-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let notify = UnixDatagram::bind(&socket).expect("bind notify socket");
        let notified = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&notified);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().expect("notify log").push(message);
            }
        });
        let mut command = Command::new(env!("CARGO_BIN_EXE_portier"));
        command
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("NOTIFY_SOCKET", &socket)
            .env("RUST_LOG", "info")
            .env_remove("PORTIER_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(w) = watchdog {
            command.env("WATCHDOG_USEC", w.as_micros().to_string());
        }
        let child = command.spawn().expect("spawn portier run");
        Daemon {
            child,
            notified,
            messages: Vec::new(),
            base: format!("http://127.0.0.1:{http_port}"),
            admin_token: "test-admin-token".into(),
        }
    }

    /// Waits until a notify message contains `wanted` or `within` passes.
    pub async fn wait_for_notify(&mut self, wanted: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.messages = self.notified.lock().expect("notify log").clone();
            if self.messages.iter().any(|m| m.contains(wanted)) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// An HTTP client call with the admin token.
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// An HTTP POST with a bearer token (or none).
    pub async fn post(&self, path: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Polls `GET path` until `check` accepts the answer or `within` passes.
    pub async fn poll(
        &self,
        path: &str,
        within: Duration,
        check: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> (u16, serde_json::Value) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let answer = match reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_token)
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.json().await.unwrap_or(serde_json::Value::Null))
                }
                Err(_) => (0, serde_json::Value::Null),
            };
            if check(answer.0, &answer.1) || tokio::time::Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
