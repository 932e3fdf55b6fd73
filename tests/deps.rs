//! The dependency floor the hardening issue sets for reading untrusted
//! archives: the `tar` crate at 0.4.45 or later (the 2026 PAX-size and
//! symlink fixes), never `tokio-tar`, and zstd without its legacy-format
//! decoders. Checked against Cargo.lock and `cargo tree`, offline.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn lockfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap()
}

/// Versions of `name` in Cargo.lock.
fn versions(lock: &str, name: &str) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == format!("name = \"{name}\"") {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                out.push(
                    v.trim_end_matches('"')
                        .split(['.', '-', '+'])
                        .filter_map(|p| p.parse().ok())
                        .collect(),
                );
            }
        }
    }
    out
}

#[test]
fn tar_is_at_least_0_4_45_and_tokio_tar_is_absent() {
    let lock = lockfile();
    let tar = versions(&lock, "tar");
    assert!(!tar.is_empty(), "tar is not in Cargo.lock");
    for v in &tar {
        assert!(
            v.as_slice() >= [0, 4, 45].as_slice(),
            "tar {v:?} predates 0.4.45"
        );
    }
    for banned in ["tokio-tar", "async-tar"] {
        assert!(
            versions(&lock, banned).is_empty(),
            "{banned} is in Cargo.lock"
        );
    }
}

#[test]
fn zstd_is_built_without_its_legacy_decoders() {
    let o = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-e", "features", "-i", "zstd-sys"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(tree.contains("zstd-sys"), "{tree}");
    assert!(
        !tree.contains("feature \"legacy\""),
        "zstd's legacy feature is enabled:\n{tree}"
    );
}
