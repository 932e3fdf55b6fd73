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

    // A zstd-compressed archive is read by position through its frames:
    // the same estimates as the plain archive, and --exact counts.
    let spec = t.path().join("ferry.yaml");
    let zarchive = t.path().join("kinds.tar.zst");
    pack_args(&spec, &zarchive, &["--compress", "zstd"]).expect_ok("pack --compress");
    let j = inspect_json(&zarchive, &[]);
    let plain_j = inspect_json(&archive, &[]);
    assert_eq!(
        sized(&j, reference)["platforms"],
        sized(&plain_j, reference)["platforms"]
    );
    assert!(j["sizes"]["note"].is_null(), "{j:#}");
    let j = inspect_json(&zarchive, &["--exact"]);
    let p = &sized(&j, reference)["platforms"][0];
    assert_eq!(p["uncompressed"]["bytes"], config + one + two + zst + plain);

    // One zstd stream (ferry before framing, or `zstd` over a plain
    // archive): no estimate by position, but --exact counts in one pass.
    let stream = t.path().join("kinds-stream.tar.zst");
    std::fs::write(
        &stream,
        zstd::encode_all(&std::fs::read(&archive).unwrap()[..], 3).unwrap(),
    )
    .unwrap();
    let j = inspect_json(&stream, &[]);
    let p = &sized(&j, reference)["platforms"][0];
    assert_eq!(p["uncompressed"]["unknown"], 3, "{p:#}");
    assert!(j["sizes"]["note"].as_str().unwrap().contains("--exact"));
    let j = inspect_json(&stream, &["--exact"]);
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

/// One generation of the Reactor images (seed 004), scaled down 1000×: a
/// base image and two language images on it, each for linux/amd64 and
/// linux/arm64 (amd64 a little larger), and a spec that keeps the base
/// under 200K and the language images under 500K. `python` is the size of
/// the Python image's own layer. Returns the spec.
fn generation(dir: &Path, tag: &str, python: usize) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let base = |arch: u64| random_gz(100 + arch, 150_000 + arch as usize * 5_000);
    let images = [("base", 0), ("python", python), ("node", 200_000)];
    for (i, (name, own)) in images.iter().enumerate() {
        let mut children = Vec::new();
        for (a, arch) in [(1u64, "amd64"), (0, "arm64")] {
            let mut layers = vec![base(a)];
            if *own > 0 {
                layers.push(random_gz(1_000 * i as u64 + a, own + a as usize * 5_000));
            }
            children.push(image(&mut l, arch, &layers));
        }
        let idx = l.index(support::build::Flavour::Oci, children);
        l.tag(&idx, &format!("ghcr.io/dyluth/reactor/{name}:{tag}"));
    }
    l.finish();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: reactor\nbudget: {{image: 500K}}\nimages:\n  - ref: oci:layout:ghcr.io/dyluth/reactor/base:{tag}\n    budget: 200K\n  - oci:layout:ghcr.io/dyluth/reactor/python:{tag}\n  - oci:layout:ghcr.io/dyluth/reactor/node:{tag}\n"
        ),
    )
    .unwrap();
    spec
}

/// What an image of [`generation`] unpacks to on linux/amd64: its config
/// and the tars of its layers.
fn amd64_size(own: usize) -> u64 {
    let own = match own {
        0 => 0,
        n => tar_len(n + 5_000),
    };
    config_of("amd64").len() as u64 + tar_len(155_000) + own
}

/// Files left in `dir` besides `keep` (temp files of a failed pack).
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn budgets_that_are_not_sizes_are_refused_naming_the_spec_line() {
    let t = tempfile::tempdir().unwrap();
    let spec = generation(t.path(), "1", 1_000);
    let text = std::fs::read_to_string(&spec).unwrap();
    for (bad, line, why) in [
        ("budget: 200K", "budget: 200 apples", "unknown unit"),
        ("budget: {image: 500K}", "budget: {image: -5}", "not a size"),
        (
            "budget: {image: 500K}",
            "budget: {image: 500K, bundel: 1G}",
            "bundel",
        ),
        ("budget: 200K", "budget: 0", "not a usable budget"),
    ] {
        std::fs::write(&spec, text.replace(bad, line)).unwrap();
        let msg = pack_args(&spec, &t.path().join("b.tar"), &[]).expect_fail(line);
        assert!(
            msg.contains("ferry.yaml at line") && msg.contains(why),
            "{line}: {msg}"
        );
        assert!(!t.path().join("b.tar").exists());
    }
}

#[test]
fn seed_004_sizes_budgets_and_growth_between_generations() {
    let t = tempfile::tempdir().unwrap();
    let (g1, g2) = (t.path().join("2025.05"), t.path().join("2025.06"));
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let spec1 = generation(&g1, "2025.05", 250_000);
    let spec2 = generation(&g2, "2025.06", 400_000);
    let (a1, a2) = (
        out.join("reactor-2025.05.tar"),
        out.join("reactor-2025.06.tar"),
    );

    // Generation 1 fits its budgets; pack says how close it came.
    let stdout = pack_args(&spec1, &a1, &[]).expect_ok("pack generation 1");
    assert!(
        stdout.contains("budgets: 3 images checked, all within"),
        "{stdout}"
    );

    // inspect: per image and platform, compressed and uncompressed.
    let j = inspect_json(&a1, &[]);
    let python = sized(&j, "ghcr.io/dyluth/reactor/python:2025.05");
    let amd64 = &python["platforms"][0];
    assert_eq!(amd64["platform"], "linux/amd64");
    assert_eq!(amd64["uncompressed"]["bytes"], amd64_size(250_000));
    assert_eq!(amd64["uncompressed"]["approximate"], true);
    let arm64 = &python["platforms"][1];
    assert_eq!(arm64["platform"], "linux/arm64");
    assert!(arm64["uncompressed"]["bytes"].as_u64() < amd64["uncompressed"]["bytes"].as_u64());
    let text = ferry(["inspect", a1.to_str().unwrap()]).expect_ok("inspect");
    assert!(
        text.contains("    platform   linux/amd64: ") && text.contains(" compressed, ≈ "),
        "{text}"
    );

    // Generation 2: Python grew past 500K. The pack fails before writing,
    // naming the image, the platform and both sizes.
    let msg = pack_args(&spec2, &a2, &[]).expect_fail("pack over budget");
    let size = amd64_size(400_000);
    assert!(
        msg.contains(&format!(
            "ghcr.io/dyluth/reactor/python:2025.06 (linux/amd64): ≈ {} ({size} bytes) uncompressed, over the spec's budget.image of 500.0 KiB (512000 bytes)",
            ferry::sizes::human(size)
        )),
        "{msg}"
    );
    assert!(
        msg.contains("1 image is over budget; no archive was written"),
        "{msg}"
    );
    assert!(!msg.contains("reactor/node"), "node is within: {msg}");
    assert_eq!(
        leftovers(&out, &["reactor-2025.05.tar"]),
        Vec::<String>::new()
    );

    // --warn-only: a warning, and the archive.
    let o = pack_args(&spec2, &a2, &["--warn-only"]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("warning: over budget: ghcr.io/dyluth/reactor/python:2025.06 (linux/amd64)"),
        "{}",
        o.stderr
    );
    assert!(
        o.stdout
            .contains("budgets: 3 images checked, 1 over (--warn-only)"),
        "{}",
        o.stdout
    );
    assert!(a2.exists());

    // --max-image-size replaces the spec's budget.image, but not an
    // image's own budget (the base keeps its 200K).
    let a3 = out.join("x.tar");
    pack_args(&spec2, &a3, &["--max-image-size", "600K"]).expect_ok("pack with a larger limit");
    let msg = pack_args(&spec2, &a3, &["--max-image-size", "100K"]).expect_fail("pack with 100K");
    assert!(msg.contains("2 images are over budget"), "{msg}");
    assert!(
        msg.contains("python:2025.06 (linux/amd64)") && msg.contains("node:2025.06 (linux/amd64)"),
        "{msg}"
    );
    assert!(
        msg.contains("over --max-image-size of 100.0 KiB (102400 bytes)"),
        "{msg}"
    );
    assert!(!msg.contains("reactor/base"), "{msg}");
    // The bundle's budget: every image's layers for one platform, each
    // once (the base layer and the config are shared), the largest
    // platform counting.
    let text = std::fs::read_to_string(&spec1).unwrap();
    let bundle_spec = g1.join("bundle.yaml");
    std::fs::write(
        &bundle_spec,
        text.replace(
            "budget: {image: 500K}",
            "budget: {image: 500K, bundle: 600K}",
        ),
    )
    .unwrap();
    let msg = pack_args(&bundle_spec, &a3, &[]).expect_fail("pack over the bundle budget");
    let whole = amd64_size(250_000) + amd64_size(200_000) + amd64_size(0)
        - 2 * (tar_len(155_000) + config_of("amd64").len() as u64);
    assert!(
        msg.contains(&format!(
            "the bundle is over budget; no archive was written (pack --warn-only writes it anyway):\n  the bundle (linux/amd64): ≈ {} ({whole} bytes) uncompressed, over the spec's budget.bundle of 600.0 KiB (614400 bytes)",
            ferry::sizes::human(whole)
        )),
        "{msg}"
    );

    // diff: what changed between the generations, from bundle.json only.
    let (p1, p2) = (a1.to_str().unwrap(), a2.to_str().unwrap());
    let size_of = |archive: &Path, name: &str| -> u64 {
        inspect_json(archive, &[])["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["reference"] == format!("ghcr.io/dyluth/reactor/{name}"))
            .unwrap()["size"]
            .as_u64()
            .unwrap()
    };
    let (old, new) = (
        size_of(&a1, "python:2025.05"),
        size_of(&a2, "python:2025.06"),
    );
    let growth = (new as f64 - old as f64) * 100.0 / old as f64;
    assert!(growth > 30.0, "{growth}");
    let text = ferry(["diff", p1, p2]).expect_ok("diff");
    assert!(
        text.contains(&format!(
            "  changed   image ghcr.io/dyluth/reactor/python:2025.05 -> 2025.06  {} -> {}  +{} ({growth:+.1} %)",
            ferry::sizes::human(old),
            ferry::sizes::human(new),
            ferry::sizes::human(new - old)
        )),
        "{text}"
    );
    assert!(
        text.contains("artifacts: 0 added, 0 removed, 1 changed, 2 unchanged"),
        "base and node are the same images under new tags: {text}"
    );
    assert!(
        !text.contains("reactor/node"),
        "unchanged rows need --all: {text}"
    );
    let all = ferry(["diff", p1, p2, "--all"]).expect_ok("diff --all");
    assert!(
        all.contains("  unchanged image ghcr.io/dyluth/reactor/node:2025.05 -> 2025.06"),
        "{all}"
    );
    let j: Value =
        serde_json::from_str(&ferry(["diff", p1, p2, "--json"]).expect_ok("diff --json")).unwrap();
    let py = j["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["repository"] == "ghcr.io/dyluth/reactor/python")
        .unwrap();
    assert_eq!(py["status"], "changed");
    assert_eq!(py["old"]["size"], old);
    assert_eq!(py["new"]["size"], new);
    assert_eq!(py["delta"], new - old);
    assert!((py["growth"].as_f64().unwrap() - growth).abs() < 1e-9);
    assert_eq!(j["images"]["delta"], new - old);

    // --max-growth 20 %: the alert. A result (stdout), exit 1.
    let o = ferry(["diff", p1, p2, "--max-growth", "20%"]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains(&format!(
            "FAILED: 1 image grew more than 20 %:\n  ghcr.io/dyluth/reactor/python:2025.06 {growth:+.1} %"
        )),
        "{}",
        o.stdout
    );
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    let o = ferry(["diff", p1, p2, "--max-growth", "50", "--json"]);
    assert!(o.ok(), "{}", o.stderr);
    let j: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(j["max_growth"]["ok"], true);
    let j: Value = serde_json::from_str(
        &ferry(["diff", p1, p2, "--max-growth", "20", "--json"]).expect_fail("diff --json over"),
    )
    .unwrap();
    assert_eq!(j["max_growth"]["ok"], false);
    assert_eq!(
        j["max_growth"]["over"][0]["repository"],
        "ghcr.io/dyluth/reactor/python"
    );
    // The same from the bare bundle.json files.
    let bare = |archive: &Path, name: &str| {
        let m = read_members(archive);
        let b = m.iter().find(|m| m.name == "bundle.json").unwrap();
        let path = t.path().join(name);
        std::fs::write(&path, &b.data).unwrap();
        path
    };
    let (b1, b2) = (bare(&a1, "old.json"), bare(&a2, "new.json"));
    let o = ferry([
        "diff".as_ref(),
        b1.as_os_str(),
        b2.as_os_str(),
        "--max-growth".as_ref(),
        "20%".as_ref(),
    ]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stdout.contains("FAILED: 1 image grew more than 20 %"),
        "{}",
        o.stdout
    );

    let a4 = out.join("y.tar");
    let o = pack_args(&spec2, &a4, &["--max-image-size", "4X"]);
    assert_eq!(o.code, Some(2), "a bad size is a usage error: {}", o.stderr);
    assert!(o.stderr.contains("unknown unit"), "{}", o.stderr);
    assert!(!a4.exists());
}

#[test]
fn diff_refuses_what_is_not_a_bundle_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let archive = support::pack_demo(t.path());
    let a = archive.to_str().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("notes.txt", b"not an archive\n", "notes.txt"),
        (
            "other.json",
            br#"{"format": "something else"}"#,
            "other.json is not a valid bundle.json",
        ),
        (
            "broken.json",
            b"{\"format\": ",
            "broken.json is not a valid bundle.json",
        ),
        ("empty.tar", b"", "empty.tar"),
    ];
    for (name, bytes, want) in cases {
        let path = t.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let p = path.to_str().unwrap();
        for args in [[a, p], [p, a]] {
            let o = ferry(["diff", args[0], args[1]]);
            assert_eq!(o.code, Some(1), "{name}: {}{}", o.stdout, o.stderr);
            assert!(o.stdout.is_empty(), "{name}: {}", o.stdout);
            assert!(o.stderr.contains(want), "{name}: {}", o.stderr);
        }
    }
    let missing = t.path().join("missing.tar");
    let msg = ferry(["diff", a, missing.to_str().unwrap()]).expect_fail("diff of a missing file");
    assert!(msg.contains("missing.tar"), "{msg}");
    // A bare bundle.json carries no signature: refused with --key.
    let (_, public) = {
        let o = ferry(["keygen", "-o", t.path().join("k").to_str().unwrap()]);
        assert!(o.ok(), "{}", o.stderr);
        (t.path().join("k.key"), t.path().join("k.pub"))
    };
    let bare = t.path().join("bundle.json");
    let members = read_members(&archive);
    std::fs::write(
        &bare,
        &members
            .iter()
            .find(|m| m.name == "bundle.json")
            .unwrap()
            .data,
    )
    .unwrap();
    let msg = ferry([
        "diff",
        bare.to_str().unwrap(),
        bare.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
    ])
    .expect_fail("diff of bare bundle.json files with --key");
    assert!(
        msg.contains("bundle.json") && msg.contains("k.pub"),
        "{msg}"
    );
    // Two bare bundle.json files without --key: the same bundle, no change.
    let same = ferry(["diff", bare.to_str().unwrap(), a, "--max-growth", "0%"]).expect_ok("diff");
    assert!(
        same.contains("0 added, 0 removed, 0 changed, 5 unchanged"),
        "{same}"
    );
    assert!(same.contains("OK: no image grew more than 0 %"), "{same}");
}
