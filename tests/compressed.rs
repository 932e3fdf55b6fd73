//! `pack --compress zstd`: the same tar in one zstd stream, verified and
//! loaded in one streaming pass, and damage (truncation, flipped bits,
//! garbage after the stream, zero bombs) named.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::registry::DockerRegistry;
use support::*;

/// Three images (one multi-arch) sharing a layer across repositories, and
/// an uncompressed directory, so compression has something to do.
fn fixture(dir: &Path) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let app = build::multi_arch(&mut l, 5, 200 << 10);
    l.tag(&app, "docker.io/library/app:1.0");
    let shared = build::layer(&[("etc/shared", &build::pseudo_random(50, 300 << 10))]);
    let x = build::layer(&[("bin/x", &build::pseudo_random(51, 300 << 10))]);
    let y = build::layer(&[("bin/y", &build::pseudo_random(52, 300 << 10))]);
    let a = l.image(Flavour::Docker, "linux", "amd64", &[shared.clone(), x]);
    l.tag(&a, "quay.io/team/a:2");
    let b = l.image(Flavour::Oci, "linux", "amd64", &[shared, y]);
    l.tag(&b, "ghcr.io/org/b:3");
    l.finish();
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("notes.txt"),
        "all work and no play\n".repeat(20_000),
    )
    .unwrap();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: zstd-test\nimages:\n  - oci:src:docker.io/library/app:1.0\n  - oci:src:quay.io/team/a:2\n  - oci:src:ghcr.io/org/b:3\nfiles:\n  - path: docs\n",
    )
    .unwrap();
    spec
}

fn zstd_bin() -> PathBuf {
    require_tool("zstd", "zstd")
}

#[test]
fn compressed_pack_is_the_plain_tar_in_one_zstd_stream() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    let plain = t.path().join("b.tar");
    let zst = t.path().join("b.tar.zst");
    pack_spec(&spec, &plain);
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    assert!(std::fs::metadata(&zst).unwrap().len() < std::fs::metadata(&plain).unwrap().len());

    // The stock zstd tool decodes it (checksum included) to the same tar.
    let out = t.path().join("decoded.tar");
    let o = run(Command::new(zstd_bin())
        .args(["-q", "-d"])
        .arg(&zst)
        .arg("-o")
        .arg(&out));
    assert!(o.ok(), "zstd -d: {}", o.stderr);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&plain).unwrap());

    // Deterministic.
    let again = t.path().join("again.tar.zst");
    pack_args(&spec, &again, &["--compress", "zstd"]).expect_ok("pack again");
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&zst).unwrap());

    let out = ferry(["verify", zst.to_str().unwrap()]).expect_ok("verify");
    assert!(out.contains("OK"), "{out}");
    let i = inspect_json(&zst);
    assert_eq!(i["compressed"], true);
    assert_eq!(i["artifacts"].as_array().unwrap().len(), 4);

    // Levels, and what is refused.
    pack_args(
        &spec,
        &t.path().join("l19.tar.zst"),
        &["--compress", "zstd:19"],
    )
    .expect_ok("level 19");
    let o = pack_args(&spec, &t.path().join("x.tar"), &["--compress", "gzip"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("use zstd or zstd:LEVEL"), "{}", o.stderr);
    // Compression and volumes together give zstd volumes (tests/volumes.rs).
    pack_args(
        &spec,
        &t.path().join("x.tar"),
        &["--compress", "zstd", "--volume-size", "1M"],
    )
    .expect_ok("compress and volumes");
    assert!(t.path().join("x.tar.001").exists());

    // Commands that need random access say so and what to do.
    let m = ferry([
        "unpack",
        zst.to_str().unwrap(),
        "-o",
        t.path().join("u").to_str().unwrap(),
    ])
    .expect_fail("unpack of a compressed archive");
    assert!(
        m.contains(
            "is compressed (zstd), and ferry unpack needs random access; decompress it first"
        ),
        "{m}"
    );
    let r = ferry::serve::Registry::open(&zst, &ferry::mapping::TargetRules::default());
    let Err(e) = r else {
        panic!("serve must refuse a compressed archive")
    };
    assert!(
        format!("{e}").contains("ferry serve needs random access"),
        "{e}"
    );
}

#[test]
fn compressed_archive_loads_in_one_pass_like_the_plain_one() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    let plain = t.path().join("b.tar");
    let zst = t.path().join("b.tar.zst");
    pack_spec(&spec, &plain);
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    let mut maps = Vec::new();
    for (name, archive) in [("plain", &plain), ("zst", &zst)] {
        let map = t.path().join(format!("{name}.map"));
        let out = ferry([
            "load",
            archive.to_str().unwrap(),
            "--registry",
            &format!("{host}/{name}"),
            "--map-out",
            map.to_str().unwrap(),
            "--json",
        ])
        .expect_ok("load");
        let report: Value = serde_json::from_str(&out).unwrap();
        if name == "zst" {
            // The shared layer went up once and was mounted into the other
            // repository.
            assert!(
                report["counts"]["mounted"].as_u64().unwrap() >= 1,
                "{report:#}"
            );
        }
        maps.push(
            std::fs::read_to_string(&map)
                .unwrap()
                .replace("/zst/", "/plain/"),
        );
    }
    assert_eq!(maps[0], maps[1]);
    for repo in [
        "library/app:1.0",
        "team/a:2",
        "org/b:3",
        "files/docs:latest",
    ] {
        let raw = |prefix: &str| {
            registry_manifest(&format!("{host}/{prefix}/{repo}"), None).expect_ok(repo)
        };
        assert_eq!(raw("plain"), raw("zst"), "{repo}");
    }
    let o = run(skopeo().args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{host}/zst/library/app:1.0"),
        &format!("oci:{}:app", t.path().join("pulled").display()),
    ]));
    assert!(o.ok(), "skopeo copy: {}", o.stderr);
    // A second load pushes nothing.
    let out = ferry([
        "load",
        zst.to_str().unwrap(),
        "--registry",
        &format!("{host}/zst"),
        "--json",
    ])
    .expect_ok("second load");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["counts"]["uploaded"], 0, "{report:#}");
}

#[test]
fn damaged_compressed_archives_are_named() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    let zst = t.path().join("b.tar.zst");
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    let good = std::fs::read(&zst).unwrap();
    let bad = t.path().join("bad.tar.zst");

    // Cut in the middle.
    std::fs::write(&bad, &good[..good.len() * 2 / 3]).unwrap();
    let m = ferry(["verify", bad.to_str().unwrap()]).expect_fail("verify of a cut stream");
    assert!(m.contains("bad.tar.zst"), "{m}");
    assert!(m.contains("truncated") || m.contains("damaged"), "{m}");
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let o = ferry(["load", bad.to_str().unwrap(), "--registry", &reg.host()]);
    let m = o.expect_fail("load of a cut stream");
    assert!(m.contains("bad.tar.zst"), "{m}");
    // No tag may point at an image whose blobs did not all arrive.
    for repo in ["library/app:1.0", "team/a:2", "org/b:3"] {
        let o = run(skopeo().args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{}/{repo}", reg.host()),
            &format!("oci:{}:x", t.path().join("check").display()),
        ]));
        let tagged = registry_manifest(&format!("{}/{repo}", reg.host()), None);
        assert!(
            !tagged.ok() || o.ok(),
            "{repo} is tagged but incomplete: {}",
            o.stderr
        );
    }

    // A flipped byte: zstd's checksum or ferry's digest names it.
    let mut flipped = good.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x40;
    std::fs::write(&bad, &flipped).unwrap();
    let m = ferry(["verify", bad.to_str().unwrap()]).expect_fail("verify of a flipped byte");
    assert!(
        m.contains("bad.tar.zst") || m.contains("does not match its digest"),
        "{m}"
    );

    // Garbage after the stream.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"this is not zstd");
    std::fs::write(&bad, &trailing).unwrap();
    let m = ferry(["verify", bad.to_str().unwrap()]).expect_fail("verify with trailing garbage");
    assert!(
        m.contains("damaged") || m.contains("unexpected data"),
        "{m}"
    );

    // A zero bomb: the tar followed by 256 MiB of zeros, which compress to
    // a few KiB. Reading stops after 1 MiB of padding.
    let tar = zstd::decode_all(&good[..]).unwrap();
    let mut raw = tar.clone();
    raw.resize(tar.len() + (256 << 20), 0);
    std::fs::write(&bad, zstd::encode_all(&raw[..], 19).unwrap()).unwrap();
    drop(raw);
    assert!(std::fs::metadata(&bad).unwrap().len() < good.len() as u64 + (64 << 10));
    let m = ferry(["verify", bad.to_str().unwrap()]).expect_fail("verify of a zero bomb");
    assert!(
        m.contains("unexpected data after the end-of-archive marker"),
        "{m}"
    );

    // The good one is still good.
    ferry(["verify", zst.to_str().unwrap()]).expect_ok("verify");
}

#[test]
fn a_second_pass_over_a_compressed_archive_must_read_the_bundle_json_checked_first() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    let zst = t.path().join("x.tar.zst");
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    let first = ferry::archive::Archive::open_head(&zst).unwrap();
    // The same archive reads again.
    assert!(ferry::archive::compressed::Stream::reopen(&zst, &first.bundle_bytes).is_ok());
    // Another archive in its place (here: another name) is refused.
    let other = t.path().join("y.tar.zst");
    pack_args(
        &spec,
        &other,
        &["--compress", "zstd", "--platform", "linux/amd64"],
    )
    .expect_ok("pack");
    std::fs::rename(&other, &zst).unwrap();
    let Err(e) = ferry::archive::compressed::Stream::reopen(&zst, &first.bundle_bytes) else {
        panic!("a replaced archive was read again")
    };
    assert!(
        e.to_string().contains("changed while it was being read"),
        "{e}"
    );
}
