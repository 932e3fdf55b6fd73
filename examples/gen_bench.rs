//! Writes a benchmark source for `scripts/bench.sh`: an OCI layout with
//! IMAGES images (each a two-platform index) whose layers are incompressible
//! pseudo-random data, about TOTAL_MIB in all, plus a spec naming them.
//! With CHANGE_PCT, that share of the layers (evenly spread) gets other
//! bytes: the "next month" of the same images, for the delta benchmark.
//! With FERRY_BENCH_TEXT=1 in the environment, layers are uncompressed
//! text instead (compressible about 3x), for the compression benchmark.
//! With FERRY_BENCH_SHARED=1, the first layer of every platform of every
//! image is one and the same blob (the link benchmark's fixed set).
//! `cargo run --release --example gen_bench -- DIR TOTAL_MIB IMAGES [CHANGE_PCT]`

// Test fixtures panic on failure, like the tests that use them.
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/support/build.rs"]
mod build;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("bench-out/src"));
    let total_mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let images: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let change_pct: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
    let text = std::env::var_os("FERRY_BENCH_TEXT").is_some();
    let shared = std::env::var_os("FERRY_BENCH_SHARED").is_some();
    let n_layers = images * 2 * 4;
    let changes = (n_layers * change_pct + 50) / 100;
    // Layer g changes when g*changes/n steps: `changes` layers, evenly spread.
    let changed = |g: usize| g * changes / n_layers != (g + 1) * changes / n_layers;
    let _ = std::fs::remove_dir_all(&dir);
    let mut l = build::LayoutBuilder::new(&dir.join("layout"));
    // Each image: 2 platforms x 4 layers; layers are stored gzip-wrapped
    // random data (gzip of random data is incompressible).
    let per_layer = total_mib * (1 << 20) / (images * 2 * 4);
    let mut spec = String::from("name: bench\nimages:\n");
    for i in 0..images {
        let mut children = Vec::new();
        for (p, arch) in ["amd64", "arm64"].iter().enumerate() {
            let layers: Vec<_> = (0..4)
                .map(|k| {
                    let g = (i * 2 + p) * 4 + k;
                    let seed = (i * 100 + p * 10 + k) as u64 + if changed(g) { 1 << 40 } else { 0 };
                    let seed = if shared && k == 0 { 1 << 41 } else { seed };
                    if text {
                        let data = words(seed, per_layer);
                        let d = ferry::digest::Digest::of(&data);
                        return (data, d);
                    }
                    let data = build::pseudo_random(seed, per_layer);
                    let gz = build::gzip(&data);
                    (gz, ferry::digest::Digest::of(&data))
                })
                .collect();
            children.push(l.image(build::Flavour::Oci, "linux", arch, &layers));
        }
        let idx = l.index(build::Flavour::Oci, children);
        let name = format!("registry.example.com/bench/app{i}:1.0");
        l.tag(&idx, &name);
        spec.push_str(&format!("  - oci:layout:{name}\n"));
    }
    l.finish();
    std::fs::write(dir.join("ferry.yaml"), spec)?;
    println!("wrote {}", dir.display());
    Ok(())
}

/// `len` bytes of text: words from a small vocabulary in a pseudo-random
/// order (compresses about 3x, like logs or manifests).
fn words(seed: u64, len: usize) -> Vec<u8> {
    const VOCAB: [&str; 16] = [
        "container",
        "image",
        "layer",
        "registry",
        "manifest",
        "digest",
        "sha256",
        "volume",
        "bundle",
        "ferry",
        "air",
        "gap",
        "kubernetes",
        "helm",
        "chart",
        "values",
    ];
    let noise = build::pseudo_random(seed, len / 4 + 1);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        let b = noise[i % noise.len()];
        out.extend_from_slice(VOCAB[(b & 15) as usize].as_bytes());
        out.push(if b & 0x30 == 0 { b'\n' } else { b' ' });
        if b >> 6 == 0 {
            out.extend_from_slice(format!("{} ", b).as_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}
