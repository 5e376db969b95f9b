//! The Cobot client for a configuration: which token it carries (`cobot.access_token_file`, else
//! the one `portier cobot connect` stored) and the URLs and timeout of `[cobot]`. The daemon's
//! sync and check-in tasks, its app-token lookups and the command line all make their clients
//! here.

use super::{CobotClient, CobotError};
use crate::config::Config;

/// The Cobot token: `cobot.access_token_file`, else the one `portier cobot connect` stored.
/// The error names both ways to provide one.
pub fn token_for(config: &Config) -> Result<String, String> {
    if let Some(file) = &config.cobot.access_token_file {
        return crate::config::read_secret(file)
            .map_err(|e| format!("cobot.access_token_file: {e}"));
    }
    super::connect::load_stored_token(&config.site.state_dir).ok_or_else(|| {
        "no Cobot token: set cobot.access_token_file or run portier cobot connect".to_owned()
    })
}

/// A Cobot client for this configuration and token.
pub fn client_for(config: &Config, token: String) -> Result<CobotClient, CobotError> {
    CobotClient::new(
        config.cobot.api_url.clone(),
        config.cobot.www_url.clone(),
        token,
        config.cobot.request_timeout,
    )
}
