//! The daemon's HTTP listener under idle and half-open connections, against the real binary:
//! with its file limit at the common default of 1024, more than a thousand connections that
//! send nothing (or half a header) must not stop `/healthz` from answering, and every one of
//! them is closed once the header timeout (10 s) has passed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;

use std::time::Duration;

use common::{Site, free_port, site_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// More idle connections than the daemon has file descriptors.
const IDLE: usize = 1100;
/// The daemon's file limit (`LimitNOFILE` on many systems).
const DAEMON_NOFILE: u32 = 1024;
/// A bound for answers that arrive at once when all is well; only a broken listener reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Lets this test process hold the idle connections, raising its soft file limit if needed.
fn allow_open_files(wanted: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read limits");
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if soft >= wanted {
        return;
    }
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={wanted}:"),
        ])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "cannot raise the file limit to {wanted}");
}

/// `portier run` with its file limit lowered to [`DAEMON_NOFILE`].
fn start_daemon(site: &Site) -> tokio::process::Child {
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {DAEMON_NOFILE} && exec \"$0\" --config \"$1\" run"
        ))
        .arg(env!("CARGO_BIN_EXE_portier"))
        .arg(site.config())
        .env_remove("PORTIER_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn portier run")
}

async fn healthz(client: &reqwest::Client, base: &str) -> Result<u16, String> {
    let response = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// A daemon with `http` added to its `[http]` section, reached through `client` at `base`
/// (`{port}` filled in): opens [`IDLE`] idle connections and checks health and their closing.
async fn idle_connections_neither_starve_health_nor_stay(
    http: &str,
    scheme: &str,
    client: reqwest::Client,
    prepare: impl FnOnce(&Site),
) {
    allow_open_files(IDLE as u64 + 512);
    let site = Site::start().await;
    prepare(&site);
    let port = free_port();
    site.write_config(
        &site_config().replace("[http]\n", &format!("[http]\n{http}")),
        port,
    );
    let _daemon = start_daemon(&site);
    let base = format!("{scheme}://127.0.0.1:{port}");
    let started = tokio::time::Instant::now();
    while healthz(&client, &base).await.is_err() {
        assert!(started.elapsed() < PATIENCE, "the daemon did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Half send nothing at all, half stop in the middle of their headers (or handshake).
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let connect = TcpStream::connect(("127.0.0.1", port));
        let mut stream = tokio::time::timeout(PATIENCE, connect)
            .await
            .unwrap_or_else(|_| panic!("connection {i} was not accepted"))
            .expect("connect");
        if i % 2 == 1 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: portier\r\n")
                .await
                .expect("half a header");
        }
        idle.push(stream);
    }
    eprintln!("{IDLE} idle connections open after {:?}", started.elapsed());
    let status = healthz(&client, &base).await;
    eprintln!("/healthz answered after {:?}", started.elapsed());
    assert_eq!(
        status,
        Ok(200),
        "/healthz with {IDLE} idle connections open"
    );

    // Every idle connection is closed by the daemon: the oldest when newer ones needed their
    // slots, the rest by the header timeout. Reading returns end of file (or a reset).
    let mut reads = tokio::task::JoinSet::new();
    for mut stream in idle {
        reads.spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
    let closed = tokio::time::timeout(PATIENCE, async {
        while reads.join_next().await.is_some() {}
    })
    .await;
    eprintln!("all closed after {:?}", started.elapsed());
    assert!(closed.is_ok(), "idle connections were left open");
    assert_eq!(healthz(&client, &base).await, Ok(200));
}

/// A client that opens a new connection for every request, as a monitoring probe does: a kept-alive
/// connection may be one of those the daemon closes for its cap or its idle timeout, and a request
/// racing that close fails on the client's side without telling anything about the daemon.
fn patient_client() -> reqwest::Client {
    portier::tls::http_client_builder()
        .timeout(PATIENCE)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_past_a_thousand_idle_connections_and_they_are_closed_after_the_header_timeout()
 {
    idle_connections_neither_starve_health_nor_stay("", "http", patient_client(), |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_idle_connections_are_closed_after_the_handshake_timeout_and_health_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=portier.local"])
        .args(["-addext", "subjectAltName=DNS:portier.local"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pem = std::fs::read(&cert).expect("certificate");
    let client = portier::tls::http_client_builder()
        .timeout(PATIENCE)
        .pool_max_idle_per_host(0)
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("pem"))
        .danger_accept_invalid_hostnames(true)
        .build()
        .expect("client");
    let http = "tls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n";
    idle_connections_neither_starve_health_nor_stay(http, "https", client, |site| {
        std::fs::copy(&cert, site.path("tls.crt")).expect("copy certificate");
        let key_text = std::fs::read_to_string(&key).expect("key");
        common::write_secret(&site.path("tls.key"), &key_text);
    })
    .await;
}
