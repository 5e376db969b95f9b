//! Output to a reader that went away: `portier members | head -1` must not panic on the broken
//! pipe. Every printing command ends quietly with the exit code its work earned.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;

use common::Site;

/// Runs `portier --config <site> args…` with stdout a pipe whose reading end is already
/// closed, so the first line it prints meets a broken pipe. Returns exit code and stderr.
async fn run_into_closed_pipe(site: &Site, args: &[&str]) -> (i32, String) {
    let config = site.config();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    // std's Command, off the runtime (the fake Cobot must keep serving): with tokio's, the
    // closed reading end was seen still open by the child.
    let output = tokio::task::spawn_blocking(move || {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        std::process::Command::new(env!("CARGO_BIN_EXE_portier"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("PORTIER_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run portier")
    })
    .await
    .expect("join");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn printing_commands_end_quietly_when_stdout_is_closed() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    let cases: [(&[&str], i32); 6] = [
        (&["members"], 0),
        (&["members", "--json"], 0),
        (&["check-config"], 0),
        (&["sync", "--json"], 0),
        (
            &[
                "explain",
                "--member",
                portier_fake_cobot::fixtures::ADA,
                "--unit",
                "front_door",
            ],
            0,
        ),
        // A denial keeps its exit code although nobody read it.
        (
            &[
                "explain",
                "--credential",
                "FFFFFFFF",
                "--unit",
                "front_door",
            ],
            2,
        ),
    ];
    for (args, code) in cases {
        let (exit, stderr) = run_into_closed_pipe(&site, args).await;
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
        assert_eq!(exit, code, "{args:?}: exit {exit}\n{stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}
