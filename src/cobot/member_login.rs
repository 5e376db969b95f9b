//! Member login with a Cobot account: the OAuth 2 authorization-code flow with PKCE (S256)
//! of the space's "mobile app login" application, for the member page.
//!
//! [`MemberLogin::start`] gives the authorize URL (scopes `openid` and `read_user`) with a
//! fresh `state` and PKCE verifier; [`MemberLogin::exchange`] trades the code the callback
//! got for the member's access token (client id and secret in the form body). Who the member
//! is comes from `GET <www_url>/api/user` with that token ([`super::CobotClient::user`]).
//! The id token, when Cobot sends one, is not used (it would need its signature checked).
//! Neither the secret nor a token is ever logged.

use std::fmt;
use std::time::Duration;

use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use url::Url;

use super::client::{endpoint, error_chain, http_client};
use super::connect::{OAuthClient, oauth_http};
use super::error::CobotError;

/// What the member page asks Cobot for: who the member is.
pub(crate) const MEMBER_SCOPES: [&str; 2] = ["openid", "read_user"];

/// The member login client of one configuration.
pub(crate) struct MemberLogin {
    client: OAuthClient,
    timeout: Duration,
}

impl fmt::Debug for MemberLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberLogin").finish_non_exhaustive()
    }
}

/// One login attempt: where to send the browser, and what the callback must match.
pub(crate) struct Attempt {
    /// Cobot's authorize URL with this attempt's parameters.
    pub url: Url,
    /// The `state` the callback must carry back.
    pub state: String,
    /// The PKCE verifier the code exchange needs.
    pub verifier: String,
}

impl MemberLogin {
    /// The client for `www_url`'s authorize and token endpoints, redirecting to
    /// `redirect_uri`.
    pub fn new(
        www_url: &Url,
        client_id: &str,
        client_secret: String,
        redirect_uri: &str,
        timeout: Duration,
    ) -> Result<Self, CobotError> {
        let auth = endpoint(www_url, &["oauth", "authorize"])?;
        let token = endpoint(www_url, &["oauth", "access_token"])?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| CobotError::Setup(format!("member_page.public_url: {e}")))?;
        let client: OAuthClient = oauth2::Client::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(AuthUrl::from_url(auth))
            .set_token_uri(TokenUrl::from_url(token))
            .set_redirect_uri(redirect);
        Ok(Self { client, timeout })
    }

    /// A new attempt.
    pub fn start(&self) -> Attempt {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(MEMBER_SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .url();
        Attempt {
            url,
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
        }
    }

    /// Trades the callback's code for the member's access token; the error says why Cobot
    /// did not (or could not be asked).
    pub async fn exchange(&self, code: &str, verifier: String) -> Result<String, String> {
        let http = http_client(self.timeout).map_err(|e| e.to_string())?;
        let send = move |req| oauth_http(http.clone(), req);
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code.trim().to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&send)
            .await
            .map_err(|e| error_chain(&e))?;
        Ok(token.access_token().secret().clone())
    }
}
