//! What can go wrong talking to Cobot, sorted by what the caller does next.
//!
//! Paths in errors are the request's path and query as sent (`/api/memberships?all=true`), never
//! a full URL with credentials; a path that would carry a token is replaced by a placeholder.

use std::time::Duration;

use thiserror::Error;

/// A failed Cobot request. [`CobotError::is_retryable`] separates "try again later" from "final".
#[derive(Debug, Error)]
pub enum CobotError {
    /// Cobot refused the admin (sync) token with 401. Stop syncing, keep the old snapshot, and
    /// report in health that an admin must reconnect; retrying will not help.
    #[error(
        "Cobot answered 401: token revoked or admin removed: reconnect (portier cobot connect)"
    )]
    Unauthorized,

    /// A member's app token was refused by Cobot's `/api/user` (401 or 403). Answer the app with
    /// 401 (and do not fall back to the token cache: Cobot was reachable).
    #[error("Cobot does not know this app token (status {status})")]
    MemberTokenRejected {
        /// The HTTP status Cobot answered.
        status: u16,
    },

    /// Cobot answered 429. Wait `retry_after` (when given) before the next try; the command line
    /// says when that is and exits.
    #[error("Cobot answered 429 (rate limited): {}", retry_hint(.retry_after))]
    RateLimited {
        /// Cobot's `Retry-After`, when it sent one that could be read.
        retry_after: Option<Duration>,
    },

    /// Any other non-2xx answer. 5xx and 408 are retried with backoff; other 4xx are final
    /// (record them, do not retry).
    #[error("Cobot answered {status} to {path}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The request's path and query.
        path: String,
    },

    /// No complete answer within the request timeout. Retry with backoff; for a check-in the
    /// outcome is uncertain, so ask Cobot for today's check-ins before posting again.
    #[error("Cobot did not answer {path} in time")]
    Timeout {
        /// The request's path and query.
        path: String,
    },

    /// Cobot could not be reached (DNS, connect, TLS, connection reset). Retry with backoff;
    /// meanwhile decisions run from the cache.
    #[error("Cobot is unreachable for {path}: {detail}")]
    Unreachable {
        /// The request's path and query.
        path: String,
        /// What the transport said.
        detail: String,
    },

    /// The answer was not JSON, was truncated, or had the wrong top-level shape. The whole fetch
    /// fails and nothing is replaced; retry later and report it if it persists.
    #[error("Cobot's answer to {path} is malformed: {detail}")]
    Malformed {
        /// The request's path and query.
        path: String,
        /// What was wrong with the answer.
        detail: String,
    },

    /// The client could not be built or a URL could not be formed: a configuration error, final.
    #[error("Cobot client setup failed: {0}")]
    Setup(String),
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(
            "try again in {}",
            humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
        ),
        None => "try again in a minute (no Retry-After given)".to_owned(),
    }
}

impl CobotError {
    /// True for failures that a later try may cure (5xx, 408, 429, timeout, connection errors,
    /// malformed answers); false for final ones (401, other 4xx, setup errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unauthorized | Self::MemberTokenRejected { .. } | Self::Setup(_) => false,
            Self::RateLimited { .. }
            | Self::Timeout { .. }
            | Self::Unreachable { .. }
            | Self::Malformed { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408,
        }
    }

    /// How long Cobot asked us to wait, for a 429 that said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// True when Cobot could not be reached or did not answer usefully (5xx, 429, timeout,
    /// connection error): the case where app opens fall back to the token cache.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_tells_the_operator_to_reconnect() {
        assert_eq!(
            CobotError::Unauthorized.to_string(),
            "Cobot answered 401: token revoked or admin removed: reconnect (portier cobot connect)"
        );
        assert!(!CobotError::Unauthorized.is_retryable());
    }

    #[test]
    fn rate_limited_says_when_to_try_again() {
        let e = CobotError::RateLimited {
            retry_after: Some(Duration::from_secs(42)),
        };
        assert!(e.to_string().contains("try again in 42s"), "{e}");
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(42)));
    }

    #[test]
    fn server_errors_and_408_are_retryable_but_other_4xx_are_final() {
        let status = |status| CobotError::Status {
            status,
            path: "/api/plans".into(),
        };
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(status(408).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(422).is_retryable());
        assert!(CobotError::Timeout { path: "/x".into() }.is_retryable());
    }
}
