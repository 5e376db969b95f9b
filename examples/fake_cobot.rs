//! A simulated Cobot space with N connected memberships (default 10,000), each with a card, on
//! 127.0.0.1, for benchmarks. Prints its URL on the first line, then serves until killed.
//!
//! `cargo run --release --example fake_cobot -- 10000`

use portier_fake_cobot::fixtures;
use portier_fake_cobot::{FakeCobot, Fixture};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let today = portier::clock::now().date_naive();
    let mut fixture = Fixture::standard(today);
    fixture.memberships = fixtures::large(n);
    fixture.check_in_tokens = Value::Array(
        (0..n)
            .map(|i| json!({"token": format!("{i:08X}"), "membership": {"id": format!("{i:032x}"), "name": format!("Member {i}")}}))
            .collect(),
    );
    let cobot = FakeCobot::start(fixture).await?;
    println!("{}", cobot.url());
    std::future::pending::<()>().await;
    Ok(())
}
