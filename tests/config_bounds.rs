//! The configuration's bounds through the real binary: `check-config` exits 64 with
//! `PATH:LINE:COL: KEY: message` for a duration out of its range, a Cobot URL in plain HTTP to
//! another host, and an admin token others can read; `portier run` refuses the latter too.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Site, site_config};

/// The site's configuration with `line` added to `[cobot]`.
fn with_cobot_key(line: &str) -> String {
    site_config().replace("[cobot]\n", &format!("[cobot]\n{line}\n"))
}

#[tokio::test]
async fn check_config_refuses_a_duration_outside_its_range_naming_key_and_range() {
    let site = Site::start().await;
    site.write_config(&with_cobot_key("sync_interval = \"100000d\""), 8080);
    let run = site.portier(&["check-config"]).await;
    run.expect_code(64);
    let config = site.config().display().to_string();
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("cobot.sync_interval"))
        .unwrap_or_else(|| panic!("no error naming the key:\n{}", run.stderr));
    assert!(line.starts_with(&format!("{config}:")), "{line}");
    assert!(
        line.ends_with("cobot.sync_interval: \"100000d\" is out of range (30s to 1d)"),
        "{line}"
    );
    let open_for = site_config().replace(
        "id = \"front_door\"\n",
        "id = \"front_door\"\nopen_for = \"2h\"\n",
    );
    site.write_config(&open_for, 8080);
    let run = site.portier(&["check-config"]).await;
    run.expect_code(64);
    assert!(
        run.stderr
            .contains(".open_for: \"2h\" is out of range (1ms to 1h)"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn check_config_refuses_plain_http_to_cobot_on_another_host() {
    let site = Site::start().await;
    let text = site_config().replace("www_url = \"{api}\"", "www_url = \"http://www.cobot.me\"");
    assert_ne!(text, site_config(), "the site config sets www_url");
    site.write_config(&text, 8080);
    let run = site.portier(&["check-config"]).await;
    run.expect_code(64);
    assert!(
        run.stderr
            .contains("cobot.www_url: \"http://www.cobot.me\" must be https://"),
        "{}",
        run.stderr
    );
    // The fake Cobot on http://127.0.0.1 stays fine.
    site.write_config(&site_config(), 8080);
    site.portier(&["check-config"]).await.expect_code(0);
}

#[tokio::test]
async fn an_admin_token_others_can_read_is_refused_by_check_config_and_run() {
    let site = Site::start().await;
    let token = site.path("admin.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for args in [&["check-config"][..], &["run"][..]] {
        // Before the fix `run` started and served; the timeout turns that into a failure.
        let run = tokio::time::timeout(std::time::Duration::from_secs(30), site.portier(args))
            .await
            .unwrap_or_else(|_| panic!("{args:?} did not refuse the admin token"));
        run.expect_code(64);
        assert!(
            run.stderr.contains("http.admin_token_file:")
                && run.stderr.contains("readable by others"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
