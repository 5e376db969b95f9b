//! The baseline of `scripts/bench-sync`: what a sync costs at the least — fetch Cobot's answers
//! for a site and parse them, with the same client, and nothing else (no compile, no guard, no
//! store). Prints the number of memberships parsed.
//!
//! `cargo run --release --example fetch_parse -- portier.toml`

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: fetch_parse CONFIG")?;
    portier::tls::install_provider();
    let config =
        portier::config::Config::load(std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    let client = portier::cobot::client_for(&config, portier::cobot::token_for(&config)?)?;
    let options = portier::sync::fetch_options(
        &config.policy,
        config.cobot.booking_horizon,
        portier::clock::now(),
    );
    let data = client.fetch(&options).await?;
    println!("parsed {} memberships", data.memberships.len());
    Ok(())
}
