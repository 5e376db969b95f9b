//! Asking the running daemon, when it holds the store: `sync`, `members` and `explain` then go
//! over its HTTP API with the admin token from the configuration and print the same output.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::Failure;
use crate::config::Config;
use crate::views::ErrorView;

/// How long to wait for the daemon; a sync with `wait=true` may take a while.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A client for the local daemon's API: the admin API with the token, or the public part.
pub(crate) struct Daemon {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// The answer of the daemon: the parsed body, or the status and error text.
pub(crate) enum Answer<T> {
    /// 2xx with the expected body.
    Ok(T),
    /// Any other status, with the daemon's `error` text.
    Err(StatusCode, String),
}

impl Daemon {
    /// Connects to the daemon of this configuration, with the admin token.
    pub(crate) fn new(config: &Config) -> Result<Self, Failure> {
        let file = config.http.admin_token_file.as_ref().ok_or_else(|| {
            Failure::Runtime(
                "the store is held by the running daemon and http.admin_token_file is not set, \
                 so it cannot be asked"
                    .into(),
            )
        })?;
        let token = crate::config::read_secret(file)
            .map_err(|e| Failure::Runtime(format!("http.admin_token_file: {e}")))?;
        Self::build(config, Some(token))
    }

    /// Connects to the daemon of this configuration for the endpoints without authentication.
    pub(crate) fn public(config: &Config) -> Result<Self, Failure> {
        Self::build(config, None)
    }

    fn build(config: &Config, token: Option<String>) -> Result<Self, Failure> {
        let mut builder = crate::tls::http_client_builder().timeout(TIMEOUT);
        let scheme = match &config.http.tls_cert_file {
            None => "http",
            Some(cert) => {
                // The daemon's own certificate is the only one trusted; it is usually issued for
                // the box's LAN name, not for the loopback address asked here.
                let pem = std::fs::read(cert).map_err(|e| {
                    Failure::Runtime(format!("http.tls_cert_file {}: {e}", cert.display()))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Failure::Runtime(format!("http.tls_cert_file {}: {e}", cert.display()))
                })?;
                builder = builder
                    .tls_certs_only(certs)
                    .danger_accept_invalid_hostnames(true);
                "https"
            }
        };
        let http = builder
            .build()
            .map_err(|e| Failure::Runtime(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: format!("{scheme}://{}", loopback_for(config.http.listen)),
            token,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer<T>, Failure> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            Failure::Runtime(format!("cannot reach the daemon at {}: {e}", self.base))
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Runtime(format!("the daemon's answer broke off: {e}")))?;
        if status.is_success() {
            serde_json::from_slice(&body)
                .map(Answer::Ok)
                .map_err(|e| Failure::Runtime(format!("the daemon answered unexpected JSON: {e}")))
        } else {
            let message = serde_json::from_slice::<ErrorView>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            Ok(Answer::Err(status, message))
        }
    }

    /// `GET path?query`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Answer<T>, Failure> {
        self.call(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    /// `GET path?query`, allowing the daemon `timeout` to answer (a request that waits for
    /// something, longer than the usual bound).
    pub(crate) async fn get_within<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Answer<T>, Failure> {
        let url = format!("{}{path}", self.base);
        self.call(self.http.get(url).query(query).timeout(timeout))
            .await
    }

    /// Where the daemon is asked.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` within `timeout`: the status and the body, whatever the status; `Err` when
    /// no answer arrives (nothing listens, the connection breaks, the time runs out).
    pub(crate) async fn get_raw(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), reqwest::Error> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok((status, body.to_vec()))
    }

    /// `GET path` for a binary body: the bytes on 2xx, else the status and error text.
    pub(crate) async fn download(&self, path: &str) -> Result<Answer<Vec<u8>>, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            Failure::Runtime(format!("cannot reach the daemon at {}: {e}", self.base))
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Runtime(format!("the daemon's answer broke off: {e}")))?;
        if status.is_success() {
            return Ok(Answer::Ok(body.to_vec()));
        }
        let message = serde_json::from_slice::<ErrorView>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Ok(Answer::Err(status, message))
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer<T>, Failure> {
        self.call(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `POST path?query`.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Answer<T>, Failure> {
        self.call(self.http.post(format!("{}{path}", self.base)).query(query))
            .await
    }
}

/// The address to reach a listener on from this machine.
fn loopback_for(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Maps an error answer to the command line's exit codes: 400/404 are usage errors (64),
/// everything else a runtime failure (1).
pub(crate) fn failure(status: StatusCode, message: String) -> Failure {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => Failure::Usage(message),
        StatusCode::UNAUTHORIZED => Failure::Runtime(format!(
            "the daemon refused the admin token ({message}): check http.admin_token_file"
        )),
        _ => Failure::Runtime(message),
    }
}
