//! Unit tests of `connect`: the authorize URL, the redirect listener, pasted URLs, token files.

use std::os::unix::fs::PermissionsExt;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn params(redirect: &str) -> ConnectParams {
    ConnectParams {
        www_url: Url::parse("https://www.cobot.me").unwrap(),
        subdomain: "co-up".into(),
        client_id: "client-123".into(),
        client_secret: "secret-456".into(),
        redirect_uri: Url::parse(redirect).unwrap(),
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn the_authorize_url_asks_for_pkce_s256_and_all_scopes() {
    let (url, flow) = ConnectFlow::start(params(DEFAULT_REDIRECT_URI)).unwrap();
    assert_eq!(url.host_str(), Some("www.cobot.me"));
    assert_eq!(url.path(), "/oauth/authorize");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "client-123");
    assert_eq!(q["redirect_uri"], "http://localhost:8765/callback");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["state"], flow.state());
    assert_eq!(
        q["scope"],
        "navigation read read_custom_fields read_memberships read_plans read_user write write_custom_fields"
    );
    assert!(!url.as_str().contains("secret-456"));
    assert!(!format!("{flow:?}").contains("secret-456"));
}

#[test]
fn a_pasted_url_must_carry_this_attempts_state() {
    let (_, flow) = ConnectFlow::start(params(DEFAULT_REDIRECT_URI)).unwrap();
    let good = format!(
        "http://localhost:8765/callback?code=abc&state={}",
        flow.state()
    );
    assert_eq!(flow.code_from_pasted_url(&good).unwrap(), "abc");
    let wrong = "http://localhost:8765/callback?code=abc&state=other";
    assert!(matches!(
        flow.code_from_pasted_url(wrong),
        Err(ConnectError::BadRedirect(_))
    ));
    let denied = "http://localhost:8765/callback?error=access_denied";
    assert!(matches!(
        flow.code_from_pasted_url(denied),
        Err(ConnectError::Denied(e)) if e == "access_denied"
    ));
    assert!(flow.code_from_pasted_url("not a url").is_err());
}

async fn browser(port: u16, target: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn the_listener_takes_the_code_from_cobots_redirect_and_ignores_strays() {
    let (_, flow) = ConnectFlow::start(params("http://127.0.0.1:0/callback")).unwrap();
    let listener = flow.listen().await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = flow.state().to_owned();
    let waiting = tokio::spawn(async move {
        flow.wait_for_redirect(listener, Duration::from_secs(10))
            .await
    });
    // A browser's idle speculative connection must not hold up the real redirect.
    let _idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stray = browser(port, "/favicon.ico").await;
    assert!(stray.starts_with("HTTP/1.1 404"), "{stray}");
    let old_tab = browser(port, "/callback?code=old&state=stale").await;
    assert!(old_tab.starts_with("HTTP/1.1 400"), "{old_tab}");
    let ok = browser(port, &format!("/callback?code=the-code&state={state}")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("close this tab"));
    assert_eq!(waiting.await.unwrap().unwrap(), "the-code");
}

#[tokio::test]
async fn waiting_for_the_redirect_gives_up_after_its_deadline() {
    let (_, flow) = ConnectFlow::start(params("http://127.0.0.1:0/callback")).unwrap();
    let listener = flow.listen().await.unwrap();
    let result = flow
        .wait_for_redirect(listener, Duration::from_millis(50))
        .await;
    assert!(matches!(result, Err(ConnectError::TimedOut(_))));
}

#[test]
fn the_token_file_is_written_with_mode_0600_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load_stored_token(dir.path()), None);
    let path = store_token(dir.path(), "  first-token\n").unwrap();
    assert_eq!(path, dir.path().join("cobot-token"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        load_stored_token(dir.path()).as_deref(),
        Some("first-token")
    );
    store_token(dir.path(), "second-token").unwrap();
    assert_eq!(
        load_stored_token(dir.path()).as_deref(),
        Some("second-token")
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["cobot-token"]);
}

#[test]
fn a_missing_state_dir_is_a_clear_store_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = store_token(&missing, "t").unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
