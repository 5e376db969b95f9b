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
    /// Everything the daemon wrote to stderr, when started with [`Daemon::start_logged`].
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Daemon {
    /// Starts `portier run` like [`Daemon::start`] without a watchdog and waits for READY=1
    /// and the first snapshot; the daemon and its `/v1/status` then.
    pub async fn start_serving(
        config: &Path,
        dir: &Path,
        http_port: u16,
    ) -> (Daemon, serde_json::Value) {
        let mut d = Self::start(config, dir, http_port, None);
        assert!(
            d.wait_for_notify("READY=1", Duration::from_secs(10)).await,
            "no READY=1: {:?}",
            d.messages
        );
        let (_, status) = d
            .poll("/v1/status", Duration::from_secs(15), |_, s| {
                s["snapshot"]["version"].as_u64().is_some()
            })
            .await;
        assert!(status["snapshot"]["version"].as_u64().is_some(), "{status}");
        (d, status)
    }

    /// Starts `portier --config <config> run` with a notify socket in `dir`, the watchdog
    /// set to `watchdog`.
    pub fn start(config: &Path, dir: &Path, http_port: u16, watchdog: Option<Duration>) -> Daemon {
        Self::spawn(config, dir, http_port, watchdog, &[], false)
    }

    /// Like [`Daemon::start`] without a watchdog, with `env` set and stderr captured (a pipe,
    /// not a terminal) for [`Daemon::stderr`].
    pub fn start_logged(config: &Path, dir: &Path, http_port: u16, env: &[(&str, &str)]) -> Daemon {
        Self::spawn(config, dir, http_port, None, env, true)
    }

    /// What the daemon wrote to stderr so far (only with [`Daemon::start_logged`]).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr log")).into_owned()
    }

    /// Waits until stderr contains `wanted` or `within` passes; returns stderr.
    pub async fn wait_for_stderr(&self, wanted: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = self.stderr();
            if text.contains(wanted) || tokio::time::Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn spawn(
        config: &Path,
        dir: &Path,
        http_port: u16,
        watchdog: Option<Duration>,
        env: &[(&str, &str)],
        capture_stderr: bool,
    ) -> Daemon {
        // Unique per start: a restarted daemon's socket file from before is still there.
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
            .stderr(if capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        if let Some(w) = watchdog {
            command.env("WATCHDOG_USEC", w.as_micros().to_string());
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn portier run");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = std::sync::Arc::clone(&stderr);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    // Shown too, so a failing test still has the daemon's log.
                    eprint!("{}", String::from_utf8_lossy(&buf[..n]));
                    sink.lock()
                        .expect("stderr log")
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        Daemon {
            child,
            notified,
            messages: Vec::new(),
            base: format!("http://127.0.0.1:{http_port}"),
            admin_token: "test-admin-token".into(),
            stderr,
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

    /// `GET /metrics` as monitoring scrapes it (no token, no `Accept`): the text.
    pub async fn metrics(&self) -> String {
        portier::tls::http_client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics text")
    }

    /// An HTTP client call with the admin token.
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = portier::tls::http_client()
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
        let mut request = portier::tls::http_client().post(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// An HTTP POST of a JSON body with the admin token.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = portier::tls::http_client()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .expect("POST");
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
            let answer = match portier::tls::http_client()
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
