//! Writes the bundle-report benchmark source for `scripts/bench-report.sh`:
//! an OCI layout of IMAGES two-platform images sharing ten base layers,
//! and a spec naming them (see `many_images` in tests/support/build.rs).
//! With GENERATION (from 1), a later generation of the same images (see
//! `many_images_generation`), for `scripts/bench-diff.sh`.
//! `cargo run --release --example gen_report -- DIR [IMAGES [GENERATION]]`

// Test fixtures panic on failure, like the tests that use them.
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/support/build.rs"]
mod build;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("bench-out/report"),
    );
    let images: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let generation: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    let saved = build::many_images_generation(&dir, images, generation);
    println!(
        "wrote {} ({images} images; sharing saves {saved} bytes)",
        dir.display()
    );
}
