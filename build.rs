//! Records the build time, the lower bound of a trustworthy clock (see src/clock.rs).
//! `SOURCE_DATE_EPOCH` wins when set, so packaged builds are reproducible.

#[allow(clippy::disallowed_methods)] // reason: the build time is read once, at build time
fn main() {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    // Rebuilding on every change would defeat incremental builds; the day is what matters.
    let day_start = seconds - seconds % 86_400;
    println!("cargo:rustc-env=PORTIER_BUILD_UNIX={day_start}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
}
