//! Regenerates `fixtures/demo` deterministically:
//! `cargo run --example gen_fixtures [DIR]` (default `fixtures/demo`).
//! A test checks that the committed fixtures equal this output.

// Test fixtures panic on failure, like the tests that use them.
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/support/build.rs"]
mod build;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fixtures/demo".into());
    let dir = std::path::PathBuf::from(dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    build::demo_fixtures(&dir);
    println!("wrote {}", dir.display());
    Ok(())
}
