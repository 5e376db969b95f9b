//! Shared test harness: a site directory with a configuration pointing at a real HTTP server
//! playing Cobot on 127.0.0.1, and a way to run the real `portier` binary against it.

#![allow(dead_code)] // reason: each test binary uses a different part of the harness
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: test harness: failing loudly is the point

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{DateTime, NaiveDate, Utc};
use portier_fake_cobot::{FakeCobot, Fixture};
use serde_json::Value;

/// The site configuration used by the integration tests: the demo's site, listening on
/// `{http_port}` and with a short Cobot timeout (`{api}` is the fake's URL).
pub fn site_config() -> String {
    portier::demo::DEMO_CONFIG
        .replace("[http]\n", "[http]\nlisten = \"127.0.0.1:{http_port}\"\n")
        .replace(
            "access_token_file = \"cobot.token\"\n",
            "access_token_file = \"cobot.token\"\nrequest_timeout = \"2s\"\n",
        )
}

/// A site: a temporary directory with config, secrets and state, and the fake Cobot.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub cobot: FakeCobot,
    pub today: NaiveDate,
}

/// Today in the site's time zone, as the binary will see it.
pub fn today() -> NaiveDate {
    portier::clock::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
}

pub fn write_secret(path: &Path, content: &str) {
    std::fs::write(path, content).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

impl Site {
    /// A site whose fake Cobot serves the standard fixtures of today.
    pub async fn start() -> Site {
        let today = today();
        Self::with_fixture(Fixture::standard(today), today).await
    }

    /// A site whose fake Cobot serves `fixture`.
    pub async fn with_fixture(fixture: Fixture, today: NaiveDate) -> Site {
        let cobot = FakeCobot::start(fixture).await.expect("start fake Cobot");
        let dir = tempfile::tempdir().expect("tempdir");
        let site = Site { dir, cobot, today };
        site.write_config(&site_config(), free_port());
        write_secret(&site.path("cobot.token"), "admin-token\n");
        write_secret(&site.path("admin.token"), "test-admin-token\n");
        site
    }

    /// Writes `template` as the configuration, with `{api}` and `{http_port}` filled in.
    pub fn write_config(&self, template: &str, http_port: u16) {
        let api = self.cobot.url().to_string();
        let text = template
            .replace("{api}", api.trim_end_matches('/'))
            .replace("{http_port}", &http_port.to_string());
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("portier.toml")
    }

    /// Runs `portier --config <site config> args…`.
    pub async fn portier(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config".to_owned(), self.config().display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run_portier(&all).await
    }
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

pub async fn run_portier(args: &[String]) -> Run {
    let output: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_portier"))
        .args(args)
        .env_remove("PORTIER_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .await
        .expect("run portier");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A free TCP port on loopback.
///
/// Chosen below the kernel's ephemeral range (32768 and up on Linux): a port from `bind(0)`
/// is one that any outgoing connection (a daemon calling the fake Cobot, a test's client) may
/// take as its local port before the server binds it, which failed a daemon start now and then
/// with "Address already in use".
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between 20000 and 32000")
}

/// `day` at `h:m` in Berlin, as RFC 3339.
pub fn berlin(day: NaiveDate, h: u32, m: u32) -> String {
    use chrono::TimeZone;
    let local = day.and_hms_opt(h, m, 0).expect("valid time");
    chrono_tz::Europe::Berlin
        .from_local_datetime(&local)
        .earliest()
        .expect("exists")
        .to_rfc3339()
}

/// `day` at `h:00` UTC, as RFC 3339.
pub fn utc(day: NaiveDate, h: u32) -> String {
    let t: DateTime<Utc> = day.and_hms_opt(h, 0, 0).expect("valid time").and_utc();
    t.to_rfc3339()
}
