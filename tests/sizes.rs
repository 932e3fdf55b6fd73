//! Image sizes (seed 004: base images under 200 MB, language images under
//! 500 MB, an alert when an image grows more than 20 %): `inspect`'s
//! compressed and uncompressed sizes per image and platform (estimated
//! from gzip trailers and zstd headers, or counted with `--exact`),
//! budgets at `pack`, and `ferry diff` between two generations.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry::oci::{self, Descriptor, Manifest, OciPlatform};
use serde_json::Value;
use support::build::{gzip, pseudo_random, tar_of, LayoutBuilder};
use support::{ferry, pack_args, read_members, write_raw_tar};

/// A layer: its media type and bytes.
type Layer = (&'static str, Vec<u8>);

/// The image config of linux/`arch`.
fn config_of(arch: &str) -> String {
    format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )
}

/// An image manifest for linux/`arch` over `layers` (any media types).
fn image(l: &mut LayoutBuilder, arch: &str, layers: &[Layer]) -> Descriptor {
    let config = l.blob(oci::OCI_CONFIG, config_of(arch).as_bytes());
    let layers = layers.iter().map(|(mt, b)| l.blob(mt, b)).collect();
    let m = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let mut d = l.blob(oci::OCI_MANIFEST, &oci::to_bytes(&m));
    d.platform = Some(OciPlatform {
        architecture: arch.into(),
        os: "linux".into(),
        os_version: None,
        os_features: None,
        variant: None,
    });
    d
}

/// A gzip layer of a tar holding `len` pseudo-random bytes.
fn random_gz(seed: u64, len: usize) -> Layer {
    let tar = tar_of(&[("data", &pseudo_random(seed, len))]);
    (oci::OCI_LAYER_GZIP, gzip(&tar))
}

/// The uncompressed size of [`random_gz`]'s layer: its tar.
fn tar_len(len: usize) -> u64 {
    tar_of(&[("data", &vec![0u8; len])]).len() as u64
}

/// `ferry inspect ARCHIVE --json ARGS…`, parsed.
fn inspect_json(archive: &Path, args: &[&str]) -> Value {
    let mut all = vec!["inspect", archive.to_str().unwrap(), "--json"];
    all.extend(args);
    serde_json::from_str(&ferry(all).expect_ok("inspect --json")).unwrap()
}

/// The entry of `sizes.images` for `reference`.
fn sized<'a>(j: &'a Value, reference: &str) -> &'a Value {
    j["sizes"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == reference)
        .unwrap_or_else(|| panic!("no sizes for {reference} in {j:#}"))
}

/// An archive of one image whose layers show each way a size is told: a
/// one-member gzip (its trailer is exact), a two-member gzip (the trailer
/// gives only the last member), a zstd frame with its content size, and an
/// uncompressed tar. Returns the archive, the config's size and the
/// uncompressed size of each layer.
fn every_kind_of_layer(dir: &Path) -> (PathBuf, u64, [u64; 4], u64) {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let one = random_gz(1, 40_000);
    let (t1, t2) = (
        tar_of(&[("a", &pseudo_random(2, 30_000))]),
        tar_of(&[("b", &vec![7u8; 5_000])]),
    );
    let two = (oci::OCI_LAYER_GZIP, [gzip(&t1), gzip(&t2)].concat());
    let two_gz = two.1.len() as u64;
    let t3 = tar_of(&[("c", &vec![3u8; 90_000])]);
    let zst = (
        "application/vnd.oci.image.layer.v1.tar+zstd",
        zstd::bulk::compress(&t3, 3).unwrap(),
    );
    let t4 = tar_of(&[("d", &pseudo_random(4, 10_000))]);
    let plain = (oci::OCI_LAYER_TAR, t4.clone());
    let m = image(&mut l, "amd64", &[one, two, zst, plain]);
    let config = config_of("amd64").len() as u64;
    l.tag(&m, "registry.example.com/reactor/kinds:1");
    l.finish();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        "images:\n  - oci:layout:registry.example.com/reactor/kinds:1\n",
    )
    .unwrap();
    let archive = dir.join("kinds.tar");
    pack_args(&spec, &archive, &[]).expect_ok("pack");
    let sizes = [
        tar_len(40_000),
        (t1.len() + t2.len()) as u64,
        t3.len() as u64,
        t4.len() as u64,
    ];
    (archive, config, sizes, two_gz)
}

#[test]
fn inspect_estimates_uncompressed_sizes_and_exact_counts_them() {
    let t = tempfile::tempdir().unwrap();
    let (archive, config, [one, two, zst, plain], two_gz) = every_kind_of_layer(t.path());
    let reference = "registry.example.com/reactor/kinds:1";

    // The estimate: a two-member gzip's trailer is only the last member's,
    // so it counts what its compressed size proves (never 4 GiB more).
    let j = inspect_json(&archive, &[]);
    assert_eq!(j["sizes"]["uncompressed"], "estimate", "{j:#}");
    let img = sized(&j, reference);
    let p = &img["platforms"][0];
    assert_eq!(p["platform"], "linux/amd64");
    assert_eq!(p["layers"], 4);
    let estimated = p["uncompressed"]["bytes"].as_u64().unwrap();
    let others = config + one + zst + plain;
    assert!(
        estimated > others + two_gz - 100 && estimated <= others + two_gz,
        "{estimated} vs {others} + {two_gz}: {p:#}"
    );
    assert_eq!(p["uncompressed"]["approximate"], true);
    assert_eq!(p["uncompressed"]["unknown"], 0);
    // Compressed: what a pull transfers, config and layers.
    let members: u64 = read_members(&archive)
        .iter()
        .filter(|m| m.name.starts_with("blobs/"))
        .map(|m| m.data.len() as u64)
        .sum();
    let manifest = img["platforms"][0]["digest"].as_str().unwrap().to_owned();
    let manifest_size = read_members(&archive)
        .iter()
        .find(|m| m.name == format!("blobs/sha256/{}", &manifest[7..]))
        .unwrap()
        .data
        .len() as u64;
    assert_eq!(p["compressed"], members - manifest_size);
    // The listing marks the estimate.
    let text = ferry(["inspect", archive.to_str().unwrap()]).expect_ok("inspect");
    assert!(
        text.contains("platform   linux/amd64: ") && text.contains("≈ "),
        "{text}"
    );
    assert!(text.contains("--exact counts them"), "{text}");

    // --exact: every layer decompressed, the two members counted.
    let j = inspect_json(&archive, &["--exact"]);
    assert_eq!(j["sizes"]["uncompressed"], "exact");
    let p = &sized(&j, reference)["platforms"][0];
    assert_eq!(
        p["uncompressed"]["bytes"],
        config + one + two + zst + plain,
        "{p:#}"
    );
    assert_eq!(p["uncompressed"]["approximate"], false);
    let text = ferry(["inspect", archive.to_str().unwrap(), "--exact"]).expect_ok("inspect");
    assert!(!text.contains('≈'), "{text}");

    // A zstd-compressed archive: no estimate by position, but --exact
    // counts in one pass.
    let spec = t.path().join("ferry.yaml");
    let zarchive = t.path().join("kinds.tar.zst");
    pack_args(&spec, &zarchive, &["--compress", "zstd"]).expect_ok("pack --compress");
    let j = inspect_json(&zarchive, &[]);
    let p = &sized(&j, reference)["platforms"][0];
    assert_eq!(p["uncompressed"]["unknown"], 3, "{p:#}");
    assert!(j["sizes"]["note"].as_str().unwrap().contains("--exact"));
    let j = inspect_json(&zarchive, &["--exact"]);
    let p = &sized(&j, reference)["platforms"][0];
    assert_eq!(p["uncompressed"]["bytes"], config + one + two + zst + plain);
}

#[test]
fn inspect_exact_refuses_a_layer_that_does_not_decompress_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let (archive, ..) = every_kind_of_layer(t.path());
    let j = inspect_json(&archive, &[]);
    let img = sized(&j, "registry.example.com/reactor/kinds:1");
    let manifest = img["platforms"][0]["digest"].as_str().unwrap().to_owned();
    let mut members = read_members(&archive);
    let m: Value = serde_json::from_slice(
        &members
            .iter()
            .find(|m| m.name == format!("blobs/sha256/{}", &manifest[7..]))
            .unwrap()
            .data,
    )
    .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();

    // A flipped byte: the bytes do not match the digest.
    let flipped = t.path().join("flipped.tar");
    let mut damaged = members.clone();
    let blob = damaged
        .iter_mut()
        .find(|m| m.name == format!("blobs/sha256/{}", &layer[7..]))
        .unwrap();
    let mid = blob.data.len() / 2;
    blob.data[mid] ^= 0xff;
    write_raw_tar(&flipped, &damaged, true);
    let msg = ferry(["inspect", flipped.to_str().unwrap(), "--exact"])
        .expect_fail("inspect --exact of a flipped layer");
    assert!(
        msg.contains(&format!("cannot count what layer {layer}")) && msg.contains("flipped.tar"),
        "{msg}"
    );
    // Without --exact nothing is decompressed: the estimate stands.
    ferry(["inspect", flipped.to_str().unwrap()]).expect_ok("inspect of a flipped layer");

    // A layer whose digest matches but whose gzip stream is broken.
    let broken = t.path().join("broken.tar");
    let blob = members
        .iter()
        .find(|m| m.name == format!("blobs/sha256/{}", &layer[7..]))
        .unwrap();
    let mut data = blob.data.clone();
    data[20..60].fill(0xff);
    support::swap_blob(&mut members, &layer, data);
    write_raw_tar(&broken, &members, true);
    let msg = ferry(["inspect", broken.to_str().unwrap(), "--exact"])
        .expect_fail("inspect --exact of a broken gzip stream");
    assert!(msg.contains("cannot count what layer sha256:"), "{msg}");
    assert!(!msg.contains(&layer), "the new digest is named: {msg}");
}
