//! Writes the scale benchmark source for `scripts/bench-scale.sh`: an OCI
//! layout of ARTIFACTS single-platform images, each a config and four
//! small layers of its own (64 to 1,087 bytes of pseudo-random data,
//! gzipped), so five blobs per artifact: 50,000 blobs at 10,000 artifacts.
//! Plus a spec naming them.
//! `cargo run --release --example gen_scale -- DIR [ARTIFACTS=10000]`

// Test fixtures panic on failure, like the tests that use them.
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/support/build.rs"]
mod build;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir =
        std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("bench-out/scale"));
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let _ = std::fs::remove_dir_all(&dir);
    let mut l = build::LayoutBuilder::new(&dir.join("layout"));
    let mut spec = String::from("name: scale\nimages:\n");
    for i in 0..n {
        let layers: Vec<_> = (0..4)
            .map(|k| {
                let seed = (i * 4 + k) as u64;
                let data = build::pseudo_random(seed, 64 + (seed as usize * 37) % 1024);
                (build::gzip(&data), ferry::digest::Digest::of(&data))
            })
            .collect();
        let m = l.image(build::Flavour::Oci, "linux", "amd64", &layers);
        let name = format!("registry.example.com/scale{}/app{i:05}:1.0", i % 50);
        l.tag(&m, &name);
        spec.push_str(&format!("  - oci:layout:{name}\n"));
    }
    l.finish();
    std::fs::write(dir.join("ferry.yaml"), spec)?;
    println!("wrote {} ({n} artifacts)", dir.display());
    Ok(())
}
