//! `portier cobot connect`: the OAuth authorization-code flow with PKCE (S256) for the sync app,
//! then a space-bound token, stored as `<state_dir>/cobot-token` (mode 0600).
//!
//! The box is usually headless, so the browser can be anywhere: [`ConnectFlow::start`] gives the
//! authorize URL to print; the code then comes either from Cobot's redirect to our own listener
//! ([`ConnectFlow::wait_for_redirect`]), from the redirected URL pasted by the installer
//! ([`ConnectFlow::code_from_pasted_url`]), or from `--code`. [`ConnectFlow::finish`] exchanges
//! it (client secret in the form body) and makes the token space-bound, so removing the admin
//! who connected does not break the sync. Neither the secret nor a token is ever logged.

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use url::Url;

use super::client::{CobotClient, endpoint, error_chain, http_client};
use super::error::CobotError;

/// The scopes Sensorberg's guide registers for its sync app, requested as they are.
pub(crate) const SCOPES: [&str; 8] = [
    "navigation",
    "read",
    "read_custom_fields",
    "read_memberships",
    "read_plans",
    "read_user",
    "write",
    "write_custom_fields",
];

/// Where Cobot sends the browser back unless `--redirect-uri` says otherwise.
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:8765/callback";

/// The token file's name inside `state_dir`.
pub(crate) const TOKEN_FILE: &str = "cobot-token";

/// What went wrong while connecting; each variant says what the installer does.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// A URL or setting is unusable: fix the configuration or the flag.
    #[error("cannot connect: {0}")]
    Setup(String),
    /// The redirect URI's port could not be opened: free it, or paste the redirected URL.
    #[error(
        "cannot listen on {addr} for Cobot's redirect: {source}; paste the redirected URL instead"
    )]
    Listen {
        /// The address we tried.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// No usable redirect arrived in time: start again.
    #[error("no redirect from Cobot within {0:?}: run portier cobot connect again")]
    TimedOut(Duration),
    /// Cobot (or the admin) refused the authorization: start again and approve.
    #[error("Cobot did not authorize Portier ({0}): run portier cobot connect again")]
    Denied(String),
    /// The pasted URL is not the redirect of this attempt: paste the right one or start again.
    #[error("the redirected URL does not fit: {0}")]
    BadRedirect(String),
    /// The code could not be exchanged for a token (expired, used, wrong secret): start again.
    #[error("Cobot refused the code exchange: {0}")]
    Exchange(String),
    /// Making the token space-bound, or another Cobot request, failed.
    #[error(transparent)]
    Cobot(#[from] CobotError),
    /// The token could not be stored: check `state_dir` and run as its owner or root.
    #[error("cannot store the token in {path}: {source}")]
    Store {
        /// The file or folder involved.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Everything the flow needs, from the configuration and the command line.
#[derive(Clone)]
pub struct ConnectParams {
    /// `https://www.cobot.me` (or the fake's URL in tests).
    pub www_url: Url,
    /// The space's subdomain, for the space-bound token.
    pub subdomain: String,
    /// The OAuth app's client id.
    pub client_id: String,
    /// The OAuth app's client secret (sent in the form body).
    pub client_secret: String,
    /// The redirect URI registered with the app.
    pub redirect_uri: Url,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("www_url", &self.www_url.as_str())
            .field("subdomain", &self.subdomain)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish()
    }
}

/// Cobot's token answer: only `access_token` is known to be present, so `token_type` is optional
/// (oauth2's standard response would reject its absence).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CobotTokenResponse {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    token_type: BasicTokenType,
    expires_in: Option<u64>,
    refresh_token: Option<RefreshToken>,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

impl TokenResponse for CobotTokenResponse {
    type TokenType = BasicTokenType;
    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

pub(super) type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    CobotTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// oauth2's HTTP calls through our reqwest 0.13 client (oauth2 5 itself speaks reqwest 0.12).
#[derive(Debug, Error)]
pub(super) enum HttpAdapterError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error(transparent)]
    Http(#[from] http::Error),
}

pub(super) async fn oauth_http(
    client: reqwest::Client,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpAdapterError> {
    let resp = client.execute(reqwest::Request::try_from(req)?).await?;
    let mut builder = http::Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        builder = builder.header(name, value);
    }
    Ok(builder.body(resp.bytes().await?.to_vec())?)
}

/// The file remembering an attempt between `cobot connect` and `cobot connect --code`.
pub(crate) const PENDING_FILE: &str = "cobot-connect.pending";

/// One connect attempt: the PKCE verifier and the `state` that the redirect must carry.
pub struct ConnectFlow {
    client: OAuthClient,
    verifier: PkceCodeVerifier,
    state: CsrfToken,
    params: ConnectParams,
}

impl fmt::Debug for ConnectFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectFlow")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl ConnectFlow {
    /// Starts an attempt: returns the authorize URL to open in a browser, and the flow.
    pub fn start(params: ConnectParams) -> Result<(Url, ConnectFlow), ConnectError> {
        let auth = endpoint(&params.www_url, &["oauth", "authorize"])?;
        let token = endpoint(&params.www_url, &["oauth", "access_token"])?;
        let client: OAuthClient = oauth2::Client::new(ClientId::new(params.client_id.clone()))
            .set_client_secret(ClientSecret::new(params.client_secret.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(AuthUrl::from_url(auth))
            .set_token_uri(TokenUrl::from_url(token))
            .set_redirect_uri(RedirectUrl::from_url(params.redirect_uri.clone()));
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .url();
        let flow = ConnectFlow {
            client,
            verifier,
            state,
            params,
        };
        Ok((url, flow))
    }

    /// Remembers this attempt (its `state` and PKCE verifier) in `<state_dir>/cobot-connect.pending`,
    /// mode 0600, so that `portier cobot connect --code CODE` in a later run can finish it.
    pub(crate) fn save_pending(&self, state_dir: &Path) -> Result<PathBuf, ConnectError> {
        let contents = format!("{}\n{}\n", self.state.secret(), self.verifier.secret());
        write_private(state_dir, PENDING_FILE, &contents)
    }

    /// Resumes the attempt saved by [`ConnectFlow::save_pending`].
    pub fn resume(params: ConnectParams, state_dir: &Path) -> Result<ConnectFlow, ConnectError> {
        let path = state_dir.join(PENDING_FILE);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            ConnectError::Setup(format!(
                "no pending connect attempt in {}: run portier cobot connect without --code first",
                path.display()
            ))
        })?;
        let mut lines = text.lines();
        let (Some(state), Some(verifier)) = (lines.next(), lines.next()) else {
            return Err(ConnectError::Setup(format!(
                "{} is damaged: run portier cobot connect again",
                path.display()
            )));
        };
        let (_, mut flow) = Self::start(params)?;
        flow.state = CsrfToken::new(state.to_owned());
        flow.verifier = PkceCodeVerifier::new(verifier.to_owned());
        Ok(flow)
    }

    /// Forgets a saved attempt (after success).
    pub(crate) fn clear_pending(state_dir: &Path) {
        // Absent is fine: nothing to forget.
        let _ = std::fs::remove_file(state_dir.join(PENDING_FILE));
    }

    /// The `state` value the redirect must carry back.
    pub fn state(&self) -> &str {
        self.state.secret()
    }

    /// Opens the redirect URI's port: `localhost` and loopback addresses bind 127.0.0.1, any other
    /// host binds all interfaces (the browser may be on another machine of the LAN).
    pub async fn listen(&self) -> Result<TcpListener, ConnectError> {
        let uri = &self.params.redirect_uri;
        let port = uri
            .port_or_known_default()
            .ok_or_else(|| ConnectError::Setup(format!("{uri} has no port")))?;
        let ip = match uri.host() {
            Some(url::Host::Ipv4(ip)) => ip.into(),
            Some(url::Host::Ipv6(ip)) => ip.into(),
            Some(url::Host::Domain("localhost")) => Ipv4Addr::LOCALHOST.into(),
            _ => Ipv4Addr::UNSPECIFIED.into(),
        };
        let addr = SocketAddr::new(ip, port);
        TcpListener::bind(addr)
            .await
            .map_err(|source| ConnectError::Listen { addr, source })
    }

    /// Serves Cobot's redirect (`GET <redirect path>?code=..&state=..`) on `listener` until one
    /// carries this attempt's `state`, answering each browser with a short page. Requests with a
    /// wrong `state` (an old tab) get 400 and the wait goes on; `error=...` ends it. Connections
    /// are served concurrently: browsers open idle speculative connections.
    pub async fn wait_for_redirect(
        &self,
        listener: TcpListener,
        wait: Duration,
    ) -> Result<String, ConnectError> {
        let expected = Arc::new(Expected {
            state: self.state.secret().clone(),
            path: self.params.redirect_uri.path().to_owned(),
        });
        let (tx, mut rx) = mpsc::channel(4);
        let serve = async {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let (tx, expected) = (tx.clone(), expected.clone());
                            tokio::spawn(async move {
                                let answered = tokio::time::timeout(
                                    Duration::from_secs(10),
                                    answer(&expected, stream),
                                );
                                if let Ok(Some(outcome)) = answered.await {
                                    let _ = tx.send(outcome).await;
                                }
                            });
                        }
                        // E.g. out of file descriptors: pause instead of spinning.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Some(outcome) = rx.recv() => return outcome,
                }
            }
        };
        tokio::time::timeout(wait, serve)
            .await
            .map_err(|_| ConnectError::TimedOut(wait))?
    }

    /// Reads the code from the redirected URL the installer copied from the browser's address
    /// bar; its `state` must be this attempt's.
    pub fn code_from_pasted_url(&self, pasted: &str) -> Result<String, ConnectError> {
        let url = Url::parse(pasted.trim())
            .map_err(|e| ConnectError::BadRedirect(format!("not a URL ({e})")))?;
        code_from_url(&url, self.state.secret())
    }

    /// Exchanges the code (with the PKCE verifier, secret in the form body) for the admin's
    /// user-bound token.
    pub async fn exchange(self, code: &str) -> Result<String, ConnectError> {
        let http = http_client(self.params.timeout)?;
        let send = move |req| oauth_http(http.clone(), req);
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code.trim().to_owned()))
            .set_pkce_verifier(self.verifier)
            .request_async(&send)
            .await
            .map_err(|e| ConnectError::Exchange(error_chain(&e)))?;
        Ok(token.access_token().secret().clone())
    }

    /// Exchanges the code and makes the token space-bound: the token to store.
    pub async fn finish(self, code: &str) -> Result<String, ConnectError> {
        let params = self.params.clone();
        let user_token = self.exchange(code).await?;
        space_bound_token(&params, user_token).await
    }
}

/// What a redirect must match: this attempt's `state` and the redirect URI's path.
struct Expected {
    state: String,
    path: String,
}

/// Handles one browser connection; `Some` ends the wait.
async fn answer(
    expected: &Expected,
    mut stream: TcpStream,
) -> Option<Result<String, ConnectError>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let target = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("GET "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default();
    let url = Url::parse("http://localhost/")
        .and_then(|base| base.join(target))
        .ok()
        .filter(|u| u.path() == expected.path);
    let (status, page, outcome) = match url.map(|u| code_from_url(&u, &expected.state)) {
        None => ("404 Not Found", "Not found.", None),
        Some(Ok(code)) => (
            "200 OK",
            "Portier received Cobot's authorization. You can close this tab and return to the terminal.",
            Some(Ok(code)),
        ),
        Some(Err(e @ ConnectError::Denied(_))) => (
            "200 OK",
            "Cobot did not authorize Portier. See the terminal.",
            Some(Err(e)),
        ),
        Some(Err(_)) => (
            "400 Bad Request",
            "This is not the redirect of the current connect attempt. Use the newest link printed by portier cobot connect.",
            None,
        ),
    };
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Portier</title></head><body><p>{page}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    // The browser's page is a courtesy; the outcome stands even if it cannot be written.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    outcome
}

/// The code of a redirect URL, if it is this attempt's (`state`) and Cobot did not refuse.
fn code_from_url(url: &Url, state: &str) -> Result<String, ConnectError> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = param("error") {
        return Err(ConnectError::Denied(error));
    }
    match param("state") {
        Some(got) if got == state => {}
        Some(_) => {
            return Err(ConnectError::BadRedirect(
                "its state belongs to another attempt".into(),
            ));
        }
        None => return Err(ConnectError::BadRedirect("it has no state".into())),
    }
    param("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ConnectError::BadRedirect("it has no code".into()))
}

/// `GET {www}/api/spaces/<subdomain>` → id, then `POST {www}/api/access_tokens/<token>/space`
/// → a token that belongs to the space.
pub(crate) async fn space_bound_token(
    params: &ConnectParams,
    user_token: String,
) -> Result<String, ConnectError> {
    let www = params.www_url.clone();
    let client = CobotClient::new(www.clone(), www, user_token, params.timeout)?;
    let space_id = client.space_id(&params.subdomain).await?;
    Ok(client.space_bound_token(&space_id).await?)
}

/// The token file inside `state_dir`.
pub(crate) fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_FILE)
}

/// Stores the token as `<state_dir>/cobot-token`, mode 0600, owned by `state_dir`'s owner.
pub fn store_token(state_dir: &Path, token: &str) -> Result<PathBuf, ConnectError> {
    write_private(state_dir, TOKEN_FILE, &format!("{}\n", token.trim()))
}

/// Writes `<state_dir>/<name>` with mode 0600, owned by `state_dir`'s owner: written to a
/// temporary file, fsynced, renamed over the old one, and the folder fsynced.
fn write_private(state_dir: &Path, name: &str, contents: &str) -> Result<PathBuf, ConnectError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = state_dir.join(name);
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ConnectError::Store { path: p, source }
    };
    let dir_meta = std::fs::metadata(state_dir).map_err(err(state_dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(state_dir)
        .map_err(err(state_dir))?;
    let file = tmp.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err(tmp.path()))?;
    let file_meta = file.metadata().map_err(err(tmp.path()))?;
    if file_meta.uid() != dir_meta.uid() {
        // Run as root: hand the file to the service user who owns state_dir.
        std::os::unix::fs::fchown(file, Some(dir_meta.uid()), Some(dir_meta.gid()))
            .map_err(err(tmp.path()))?;
    } else if file_meta.gid() != dir_meta.gid() {
        // Best effort: the owner is right, and 0600 makes the group irrelevant.
        let _ = std::os::unix::fs::fchown(file, None, Some(dir_meta.gid()));
    }
    tmp.write_all(contents.as_bytes()).map_err(err(&path))?;
    tmp.as_file().sync_all().map_err(err(&path))?;
    tmp.persist(&path).map_err(|e| ConnectError::Store {
        path: path.clone(),
        source: e.error,
    })?;
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(err(state_dir))?;
    Ok(path)
}

/// The token stored by [`store_token`], if there is a non-empty one.
pub fn load_stored_token(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(token_path(state_dir)).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
