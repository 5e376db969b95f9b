//! Running a browser script of `tests/peers/` (Selenium driving Debian's headless Chromium) and
//! reading what it saw.
//!
//! Use it with `#[path = "common/browser.rs"] mod browser;`.

#![allow(dead_code)] // reason: each test binary uses a different part of the harness
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: test harness: failing loudly is the point

use std::time::Duration;

use serde_json::Value;

/// The Python with selenium (and libosdp) that `scripts/test` makes, or
/// `$PORTIER_TEST_PYTHON`.
pub fn python() -> String {
    if let Ok(python) = std::env::var("PORTIER_TEST_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-peers/bin/python");
    assert!(
        std::path::Path::new(venv).exists(),
        "no test Python: run `bash scripts/test` (it makes {venv}) or set PORTIER_TEST_PYTHON"
    );
    venv.to_owned()
}

/// Runs `tests/peers/<script>` with `args` and returns the JSON it printed; fails the test
/// with what it saw when the script failed or took more than 2 minutes.
pub async fn run(script: &str, args: &[&str]) -> Value {
    let path = format!("{}/tests/peers/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python())
        .arg(path)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the browser finishes in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "browser said: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{seen:#}");
    seen
}

/// Checks that `png` is a picture of at least `width` × `height` with some content, and keeps
/// a copy as `name` in `$PORTIER_SCREENSHOT_DIR` when set (the README's screenshots).
pub fn check_screenshot(png: &std::path::Path, width: u32, height: u32, name: &str) {
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(w >= width && h >= height, "{w}x{h}");
    assert!(bytes.len() > 10_000, "{} bytes: a blank page?", bytes.len());
    if let Ok(dir) = std::env::var("PORTIER_SCREENSHOT_DIR") {
        std::fs::copy(png, std::path::Path::new(&dir).join(name)).unwrap();
    }
}
