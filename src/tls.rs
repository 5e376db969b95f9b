//! The one TLS crypto provider: rustls with *ring*.
//!
//! rumqttc's certificate checks already need *ring*; reqwest's and axum-server's default,
//! aws-lc-rs, would add a second implementation of the same algorithms (about 1.5 MB of the
//! arm64 binary and the slowest C build of the cross build). Both are built without a provider
//! and use the process-wide one installed here, before the first client or server is made.

/// Installs *ring* as the process's rustls provider (once; later calls do nothing).
pub fn install_provider() {
    // `Err` only means a provider is installed already (by an earlier call, or by a test
    // harness), which is what this function is for.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder whose TLS uses the provider of [`install_provider`].
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_provider();
    reqwest::Client::builder()
}

/// A reqwest client with the defaults and the provider of [`install_provider`] (tests and
/// tools; the daemon's own clients set timeouts through [`http_client_builder`]).
pub fn http_client() -> reqwest::Client {
    install_provider();
    reqwest::Client::new()
}
