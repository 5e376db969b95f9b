//! An HTTP client as a browser's page scripts see the daemon's pages: no redirects followed,
//! cookies and CSRF tokens read by hand.

#![allow(dead_code)] // reason: each test binary uses a different part of the harness
#![allow(clippy::unwrap_used)] // reason: test harness: failing loudly is the point

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The whole `Set-Cookie` header that sets `name`, if the answer has one.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The page at `url` for the session `cookie` (`name=value`), and the CSRF token in its
/// `<meta name="csrf-token">` (empty when it has none).
pub async fn page_and_csrf(url: &str, cookie: &str) -> (String, String) {
    let html = client()
        .get(url)
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    (html, csrf)
}
