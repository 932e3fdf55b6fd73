//! `pack --compress zstd`: the same tar in member-aligned zstd frames with
//! a seek table, which `zstd -d` and `tar` read as one stream and ferry
//! reads by offset (verify, load, unpack, serve); archives written as one
//! zstd stream still read in order; and damage (truncation, flipped bits,
//! a damaged frame, a lying seek table, garbage after the stream, zero
//! bombs) named.

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
fn compressed_pack_is_the_plain_tar_in_member_aligned_frames() {
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

    // unpack and serve read it by offset, with no temp file, and give
    // what they give from the plain archive.
    unpack_ok(&zst, &t.path().join("u"));
    unpack_ok(&plain, &t.path().join("u-plain"));
    assert_eq!(tree(&t.path().join("u")), tree(&t.path().join("u-plain")));
    let layer = biggest_blob(&plain);
    let want = std::fs::read(t.path().join("u-plain").join(&layer)).unwrap();
    let s = Served::start(&zst, ferry::mapping::TargetRules::default());
    // The repository that holds it (serve answers for a repository's own
    // blobs only).
    let digest = layer.replace("blobs/sha256/", "sha256:");
    let url = ["library/app", "team/a", "org/b", "files/docs"]
        .iter()
        .map(|repo| format!("/v2/{repo}/blobs/{digest}"))
        .find(|url| http(s.addr, "HEAD", url, &[]).status == 200)
        .expect("a repository serves the blob");
    let whole = http(s.addr, "GET", &url, &[]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == want, "the served blob differs");
    let range = http(s.addr, "GET", &url, &[("Range", "bytes=1000-70999")]);
    assert_eq!(range.status, 206);
    assert!(range.body == want[1000..71000], "the served range differs");
}

/// The member paths of a directory tree with their contents' digests.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((
                    rel,
                    ferry::digest::Digest::of(&std::fs::read(&p).unwrap()).to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The largest blob member of a plain archive.
fn biggest_blob(plain: &Path) -> String {
    read_members(plain)
        .into_iter()
        .filter(|m| m.name.starts_with("blobs/"))
        .max_by_key(|m| m.data.len())
        .unwrap()
        .name
}

/// The seek table at the end of a framed file: (compressed, tar) sizes.
fn seek_table(bytes: &[u8]) -> Vec<(u32, u32)> {
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let n = bytes.len();
    assert_eq!(u32_at(n - 4), 0x8F92_EAB1, "no seekable footer");
    let count = u32_at(n - 9) as usize;
    let start = n - 9 - 8 * count;
    assert_eq!(u32_at(start - 8), 0x184D_2A5E, "no skippable frame");
    (0..count)
        .map(|i| (u32_at(start + 8 * i), u32_at(start + 8 * i + 4)))
        .collect()
}

/// `bytes` with its seek table replaced by `table`.
fn with_table(bytes: &[u8], table: &[(u32, u32)]) -> Vec<u8> {
    let old = seek_table(bytes).len();
    let mut out = bytes[..bytes.len() - 17 - 8 * old].to_vec();
    out.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    out.extend_from_slice(&((table.len() * 8 + 9) as u32).to_le_bytes());
    for (c, d) in table {
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    out
}

/// Where `member`'s header is in the tar `tar`, walking its headers.
fn tar_offset(tar: &[u8], member: &str) -> usize {
    let mut at = 0;
    while tar[at] != 0 {
        let name = tar[at..at + 100].split(|&b| b == 0).next().unwrap();
        if name == member.as_bytes() {
            return at;
        }
        let size = std::str::from_utf8(&tar[at + 124..at + 135]).unwrap();
        let size = usize::from_str_radix(size.trim_matches(|c| c == ' ' || c == '\0'), 8).unwrap();
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("{member} is not in the tar")
}

#[test]
fn zstd_and_tar_read_the_member_aligned_frames() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    let zst = t.path().join("b.tar.zst");
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    let bytes = std::fs::read(&zst).unwrap();
    // Every frame holds at most 4 MiB of tar, and the frames add up to the
    // tar `zstd -d` gives.
    let table = seek_table(&bytes);
    let tar = zstd::decode_all(&bytes[..]).unwrap();
    assert!(table.iter().all(|&(_, d)| d > 0 && d <= 4 << 20));
    assert_eq!(
        table.iter().map(|&(_, d)| d as usize).sum::<usize>(),
        tar.len()
    );
    // A frame starts at every member's header.
    let mut starts = std::collections::HashSet::new();
    let mut at = 0usize;
    for &(_, d) in &table {
        starts.insert(at);
        at += d as usize;
    }
    // zstd -d into tar -x: the stock tools give back every member.
    let decoded = t.path().join("decoded.tar");
    let o = run(Command::new(zstd_bin())
        .args(["-q", "-d"])
        .arg(&zst)
        .arg("-o")
        .arg(&decoded));
    assert!(o.ok(), "zstd -d: {}", o.stderr);
    let members = read_members(&decoded);
    for m in &members {
        assert!(
            starts.contains(&tar_offset(&tar, &m.name)),
            "{} does not start a frame",
            m.name
        );
    }
    let x = t.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    let o = run(Command::new("tar")
        .arg("-xf")
        .arg(&decoded)
        .arg("-C")
        .arg(&x));
    assert!(o.ok(), "tar -x: {}", o.stderr);
    for m in &members {
        assert!(
            std::fs::read(x.join(&m.name)).unwrap() == m.data,
            "{}",
            m.name
        );
    }
    // And through a pipe, as one stream.
    let o = run(Command::new("sh").arg("-c").arg(format!(
        "{} -dc {} | tar -tf -",
        zstd_bin().display(),
        zst.display()
    )));
    assert!(o.ok(), "zstd -dc | tar -t: {}", o.stderr);
    assert_eq!(
        o.stdout.lines().collect::<Vec<_>>(),
        members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()
    );
}

#[test]
fn a_damaged_frame_is_named_by_the_member_it_holds() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    // A member of several frames (9 MiB that do not compress).
    std::fs::write(
        t.path().join("docs/big.bin"),
        build::pseudo_random(53, 9 << 20),
    )
    .unwrap();
    let plain = t.path().join("b.tar");
    let zst = t.path().join("b.tar.zst");
    pack_spec(&spec, &plain);
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    let good = std::fs::read(&zst).unwrap();
    let tar = zstd::decode_all(&good[..]).unwrap();
    let layer = biggest_blob(&plain);
    // The frame holding the middle of the layer (not its first): flip a
    // byte in it.
    let size = read_members(&plain)
        .into_iter()
        .find(|m| m.name == layer)
        .unwrap()
        .data
        .len();
    assert!(size > 8 << 20, "{size}");
    let middle = tar_offset(&tar, &layer) + 512 + size / 2;
    let (mut c_at, mut d_at) = (0usize, 0usize);
    let mut flipped = good.clone();
    for (c, d) in seek_table(&good) {
        if middle < d_at + d as usize {
            flipped[c_at + c as usize / 2] ^= 0x40;
            break;
        }
        (c_at, d_at) = (c_at + c as usize, d_at + d as usize);
    }
    let bad = t.path().join("bad.tar.zst");
    std::fs::write(&bad, &flipped).unwrap();
    let m = ferry(["verify", bad.to_str().unwrap()]).expect_fail("verify of a damaged frame");
    assert!(
        m.contains(&format!(
            "the frame holding {layer} from its byte {}",
            (4 << 20) - 512
        )),
        "{m}"
    );
    let m = ferry([
        "unpack",
        bad.to_str().unwrap(),
        "-o",
        t.path().join("u").to_str().unwrap(),
    ])
    .expect_fail("unpack of a damaged frame");
    assert!(
        m.contains(&layer) || m.contains(&layer.replace("blobs/sha256/", "sha256:")),
        "{m}"
    );
    assert!(!t.path().join("u").join(&layer).exists());
}

#[test]
fn a_seek_table_that_lies_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    let zst = t.path().join("b.tar.zst");
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    let good = std::fs::read(&zst).unwrap();
    let table = seek_table(&good);
    let bad = t.path().join("bad.tar.zst");
    let check = |bytes: Vec<u8>, what: &str, want: &[&str]| {
        std::fs::write(&bad, &bytes).unwrap();
        for cmd in ["verify", "unpack"] {
            let mut args = vec![cmd, bad.to_str().unwrap()];
            let out = t.path().join(format!("u-{}", what.len()));
            if cmd == "unpack" {
                args.extend(["-o", out.to_str().unwrap()]);
            }
            let m = ferry(&args).expect_fail(&format!("{cmd} of {what}"));
            assert!(m.contains("bad.tar.zst"), "{what}: {m}");
            assert!(want.iter().any(|w| m.contains(w)), "{what}: {m}");
        }
    };
    // More frames than the file can hold.
    let mut b = good.clone();
    let n = b.len();
    b[n - 9..n - 5].copy_from_slice(&u32::MAX.to_le_bytes());
    check(b, "a frame count past the end", &["more than the file's"]);
    // Two frames of two members listed as one: a frame spanning members.
    let mut merged = table.clone();
    let (c, d) = merged.remove(1);
    merged[0] = (merged[0].0 + c, merged[0].1 + d);
    check(
        with_table(&good, &merged),
        "a frame spanning two members",
        &["a frame must hold one member"],
    );
    // Frames larger than ferry writes, or sizes that overflow.
    let mut huge = table.clone();
    huge[2].1 = u32::MAX;
    check(
        with_table(&good, &huge),
        "an oversized frame",
        &["ferry writes frames of 1 to"],
    );
    // Compressed sizes that add up but do not fall on frames.
    let mut shifted = table.clone();
    let last = shifted.len() - 2;
    shifted[last].0 += 3;
    shifted[last - 1].0 -= 3;
    check(
        with_table(&good, &shifted),
        "frames listed at the wrong offsets",
        &["is damaged", "frame"],
    );
    // The tar the frames add up to ends before the members do.
    let mut short = table.clone();
    short.pop();
    let cut = good.len() - 17 - 8 * table.len() - table.last().unwrap().0 as usize;
    let mut b = good[..cut].to_vec();
    b.extend_from_slice(&with_table(&good, &short)[good.len() - 17 - 8 * table.len()..]);
    check(
        b,
        "frames that end early",
        &["ends before the end-of-archive marker"],
    );
}

#[test]
fn an_archive_compressed_as_one_stream_is_still_read_in_order() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path());
    let plain = t.path().join("b.tar");
    pack_spec(&spec, &plain);
    // What ferry wrote before framing, and what `zstd` over a plain archive
    // gives: one stream, no seek table.
    let old = t.path().join("old.tar.zst");
    let o = run(Command::new(zstd_bin())
        .args(["-q", "--check"])
        .arg(&plain)
        .arg("-o")
        .arg(&old));
    assert!(o.ok(), "zstd: {}", o.stderr);
    let out = ferry(["verify", old.to_str().unwrap()]).expect_ok("verify");
    assert!(out.contains("OK"), "{out}");
    assert_eq!(inspect_json(&old)["compressed"], true);
    // Commands that need random access say so and what to do.
    let m = ferry([
        "unpack",
        old.to_str().unwrap(),
        "-o",
        t.path().join("u").to_str().unwrap(),
    ])
    .expect_fail("unpack of a one-stream archive");
    assert!(
        m.contains(
            "is compressed (zstd), and ferry unpack needs random access; decompress it first"
        ),
        "{m}"
    );
    let r = ferry::serve::Registry::open(&old, &ferry::mapping::TargetRules::default());
    let Err(e) = r else {
        panic!("serve must refuse a one-stream archive")
    };
    assert!(
        format!("{e}").contains("ferry serve needs random access"),
        "{e}"
    );
    // load reads it in one ordered pass.
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    ferry(["load", old.to_str().unwrap(), "--registry", &reg.host()]).expect_ok("load");
    let o = run(skopeo().args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/library/app:1.0", reg.host()),
        &format!("oci:{}:app", t.path().join("pulled").display()),
    ]));
    assert!(o.ok(), "skopeo copy: {}", o.stderr);
}

#[test]
fn compressed_archive_loads_like_the_plain_one() {
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
