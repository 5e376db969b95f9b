//! Error answers of the daemon's API over HTTP: every 4xx/5xx under `/v1/` is JSON with an
//! `error` field, whoever produced it (a handler, or axum rejecting a path, query, body, route
//! or method); `/healthz` keeps its own shape.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use serde_json::Value;

async fn start() -> (Site, Daemon) {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let mut daemon = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(
        daemon
            .wait_for_notify("READY=1", Duration::from_secs(10))
            .await,
        "no READY=1"
    );
    (site, daemon)
}

/// Sends `request` and returns its status, headers and body parsed as JSON (failing the test
/// when the body is not JSON).
async fn answer(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {text:?}"));
    (status, headers, body)
}

fn assert_error(what: &str, status: u16, wanted: u16, body: &Value) {
    assert_eq!(status, wanted, "{what}: {body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no error message in {body}");
}

#[tokio::test]
async fn every_error_under_v1_is_json_with_an_error_field() {
    let (_site, daemon) = start().await;
    let base = &daemon.base;
    let admin = &daemon.admin_token;
    // A fresh connection per request: the server closes the one whose body it refused.
    let http = portier::tls::http_client_builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    let (status, headers, body) = answer(http.get(format!("{base}/v1/sync"))).await;
    assert_error("wrong method", status, 405, &body);
    assert!(
        headers.contains_key("allow"),
        "405 keeps Allow: {headers:?}"
    );
    assert!(body["error"].as_str().unwrap().contains("GET"), "{body}");

    let (status, _, body) = answer(http.post(format!("{base}/v1/units/%FF%FE/open"))).await;
    assert_error("path that is not UTF-8", status, 400, &body);

    let (status, _, body) = answer(http.get(format!("{base}/v1/no/such/endpoint"))).await;
    assert_error("unknown route", status, 404, &body);

    let (status, _, body) = answer(
        http.get(format!("{base}/v1/events?after=soon"))
            .bearer_auth(admin),
    )
    .await;
    assert_error("bad query", status, 400, &body);

    let (status, _, body) = answer(
        http.post(format!("{base}/v1/admin/units/front_door/open"))
            .bearer_auth(admin)
            .body("{\"member\": "),
    )
    .await;
    assert_error("bad JSON body", status, 400, &body);

    let (status, _, body) = answer(
        http.post(format!("{base}/v1/admin/units/front_door/open"))
            .bearer_auth(admin)
            .body(vec![b' '; 3 * 1024 * 1024]),
    )
    .await;
    assert_error("body over the limit", status, 413, &body);

    let (status, _, body) = answer(http.post(format!("{base}/v1/units/front_door/open"))).await;
    assert_error("app open without a token", status, 401, &body);

    // Health keeps its shape: status and reasons, no error field.
    let (status, _, body) = answer(http.get(format!("{base}/healthz"))).await;
    assert!(status == 200 || status == 503, "{status}");
    assert!(
        body["status"].is_string() && body["reasons"].is_array(),
        "{body}"
    );
    assert!(body.get("error").is_none(), "{body}");
}
