//! Every read of untrusted data has a limit, and each limit is refused
//! with its number: bundle.json, manifests, index nesting, signatures,
//! volume headers, specs (size, nesting, aliases) and inventories. The
//! limits are listed in docs/SECURITY.md.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use ferry::oci;
use support::build::{self, Flavour, LayoutBuilder};
use support::*;

/// A sparse file of `size` bytes (nothing is written to disk).
fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

#[test]
fn bundle_json_over_64_mib_is_refused_before_it_is_read() {
    let t = tempfile::tempdir().unwrap();
    let mut members = read_members(&pack_demo(t.path()));
    let b = members
        .iter_mut()
        .find(|m| m.name == "bundle.json")
        .unwrap();
    b.header_size = Some((64 << 20) + 1);
    let bad = t.path().join("big-bundle.tar");
    write_raw_tar(&bad, &members[..2], false);
    let m = ferry(["verify", bad.to_str().unwrap()]).expect_fail("verify");
    assert!(
        m.contains("member bundle.json is 67108865 bytes, more than the 67108864-byte limit"),
        "{m}"
    );
}

#[test]
fn a_signature_member_over_4_kib_is_not_taken_for_a_signature() {
    let t = tempfile::tempdir().unwrap();
    let mut members = read_members(&pack_demo(t.path()));
    members.insert(2, RawMember::file("bundle.json.minisig", &[b'x'; 5000]));
    let bad = t.path().join("big-sig.tar");
    write_raw_tar(&bad, &members, true);
    let m = ferry(["verify", bad.to_str().unwrap()]).expect_fail("verify");
    assert!(m.contains("bundle.json.minisig"), "{m}");
    assert!(m.contains("not listed in bundle.json"), "{m}");
}

#[test]
fn a_manifest_over_4_mib_is_refused_with_the_limit() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let layer = build::layer(&[("a", b"a")]);
    let config = l.blob(oci::OCI_CONFIG, b"{}");
    let layer_d = l.blob(oci::OCI_LAYER_GZIP, &layer.0);
    let mut m = oci::Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        artifact_type: None,
        config,
        layers: vec![layer_d],
        subject: None,
        annotations: Default::default(),
    };
    m.annotations.insert(
        "padding".into(),
        "x".repeat(oci::MANIFEST_MAX_BYTES as usize),
    );
    let d = l.blob(oci::OCI_MANIFEST, &oci::to_bytes(&m));
    l.tag(&d, "example.com/big:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "images:\n  - oci:src:example.com/big:1\n").unwrap();
    let m = pack_args(&spec, &t.path().join("b.tar"), &[]).expect_fail("pack");
    assert!(m.contains("more than the 4194304-byte limit"), "{m}");
    assert!(!t.path().join("b.tar").exists());
}

#[test]
fn indexes_nested_deeper_than_4_levels_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let layer = build::layer(&[("a", b"a")]);
    let mut d = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
    for _ in 0..6 {
        d = l.index(Flavour::Oci, vec![d]);
    }
    l.tag(&d, "example.com/deep:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "images:\n  - oci:src:example.com/deep:1\n").unwrap();
    let m = pack_args(&spec, &t.path().join("b.tar"), &[]).expect_fail("pack");
    assert!(m.contains("indexes nest deeper than 4 levels"), "{m}");
}

#[test]
fn a_spec_over_16_mib_is_refused_unread() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("ferry.yaml");
    sparse(&spec, (16 << 20) + 1);
    let m = pack_args(&spec, &t.path().join("b.tar"), &[]).expect_fail("pack");
    assert!(m.contains("more than the 16777216-byte limit"), "{m}");
}

#[test]
fn deeply_nested_and_alias_bomb_specs_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("ferry.yaml");
    // 100,000 nested flow sequences: an error, not a stack overflow.
    std::fs::write(
        &spec,
        format!("images: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    let m = pack_args(&spec, &t.path().join("b.tar"), &[]).expect_fail("nested spec");
    assert!(m.contains("ferry.yaml"), "{m}");
    // Billion laughs: never expanded.
    let mut bomb =
        String::from("a: &a [\"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\"]\n");
    for i in 1..10 {
        let p = (b'a' + i - 1) as char;
        let c = (b'a' + i) as char;
        bomb.push_str(&format!(
            "{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        ));
    }
    bomb.push_str("images: *j\n");
    std::fs::write(&spec, bomb).unwrap();
    let m = pack_args(&spec, &t.path().join("b.tar"), &[]).expect_fail("alias bomb spec");
    assert!(m.contains("ferry.yaml"), "{m}");
}

#[test]
fn an_inventory_over_256_mib_is_refused_unread() {
    let t = tempfile::tempdir().unwrap();
    let have = t.path().join("have.json");
    sparse(&have, (256 << 20) + 1);
    let m = pack_args(
        &demo_spec(),
        &t.path().join("b.tar"),
        &["--have", have.to_str().unwrap()],
    )
    .expect_fail("pack --have");
    assert!(m.contains("over the 268435456-byte limit"), "{m}");
}

#[test]
fn a_volume_header_over_4_kib_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let big = build::layer(&[("big", &build::pseudo_random(9, 3 << 19))]);
    let d = l.image(Flavour::Oci, "linux", "amd64", &[big]);
    l.tag(&d, "example.com/big:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "images:\n  - oci:src:example.com/big:1\n").unwrap();
    let out = t.path().join("b.tar");
    pack_args(&spec, &out, &["--volume-size", "1M"]).expect_ok("split pack");
    let v2 = t.path().join("b.tar.002");
    let mut members = read_members(&v2);
    assert_eq!(members[0].name, "ferry-volume.json");
    members[0].data = vec![b' '; 5000];
    write_raw_tar(&v2, &members, true);
    let m = ferry(["verify", t.path().join("b.tar.001").to_str().unwrap()]).expect_fail("verify");
    assert!(m.contains("volume 2 of"), "{m}");
    assert!(
        m.contains("ferry-volume.json is 5000 bytes, more than the 4096-byte limit"),
        "{m}"
    );
}
