//! Writes the graph-walk benchmark source for `scripts/bench-fanout.sh`:
//! an OCI layout whose one image is an index of FANOUT copies of an index
//! of FANOUT copies … DEPTH levels deep, over one single-layer manifest.
//! A few KB of documents that name 60^4 = 12,960,000 paths; a walk that
//! does not skip repeats never ends. DIR/layer names the layer's member.
//! `cargo run --release --example gen_fanout -- DIR [FANOUT] [DEPTH]`

// Test fixtures panic on failure, like the tests that use them.
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/support/build.rs"]
mod build;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("bench-out/fanout"),
    );
    let fanout: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let depth: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let _ = std::fs::remove_dir_all(&dir);
    let mut l = build::LayoutBuilder::new(&dir.join("layout"));
    let layer = build::layer(&[("etc/leaf", b"leaf")]);
    let mut node = l.image(
        build::Flavour::Oci,
        "linux",
        "amd64",
        std::slice::from_ref(&layer),
    );
    for _ in 0..depth {
        node = l.index(build::Flavour::Oci, vec![node; fanout]);
    }
    l.tag(&node, "docker.io/library/fan:1");
    l.finish();
    // The layer's member name, for the script to drop from an archive.
    let gz = ferry::digest::Digest::of(&layer.0);
    std::fs::write(dir.join("layer"), gz.blob_path())?;
    std::fs::write(
        dir.join("ferry.yaml"),
        "name: fanout\nimages:\n  - oci:layout:docker.io/library/fan:1\n",
    )
}
