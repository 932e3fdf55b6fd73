//! Split archives: `pack --volume-size` writes self-checking volumes and a
//! `sha256sum -c` sidecar; verify, load, serve and unpack take the first
//! volume and find the rest; a missing, swapped, duplicated, foreign or
//! truncated volume is named by number while the other volumes' members
//! are still checked.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::registry::DockerRegistry;
use support::*;

/// A spec with a multi-arch image (300 KiB layers), an image with one
/// 2.5 MiB layer (larger than a 1 MiB volume, so it is split) and a chart.
fn fixture(dir: &Path, seed: u64) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let app = build::multi_arch(&mut l, seed, 300 << 10);
    l.tag(&app, "docker.io/library/app:1.0");
    let big = build::layer(&[("opt/big", &build::pseudo_random(seed + 10, 5 << 19))]);
    let bigimg = l.image(Flavour::Docker, "linux", "amd64", &[big]);
    l.tag(&bigimg, "quay.io/team/big:2");
    l.finish();
    std::fs::write(
        dir.join("demo-0.1.0.tgz"),
        build::chart_tgz("demo", "0.1.0", "image:\n  repository: app\n"),
    )
    .unwrap();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: volumes-test\nimages:\n  - oci:src:docker.io/library/app:1.0\n  - oci:src:quay.io/team/big:2\ncharts:\n  - path: demo-0.1.0.tgz\n",
    )
    .unwrap();
    spec
}

fn split(spec: &Path, out: &Path) -> Vec<PathBuf> {
    pack_args(spec, out, &["--volume-size", "1M"]).expect_ok("split pack");
    let mut v = Vec::new();
    for n in 1.. {
        let p = PathBuf::from(format!("{}.{n:03}", out.display()));
        if !p.exists() {
            break;
        }
        v.push(p);
    }
    v
}

fn verify_json(first: &Path) -> (Option<i32>, Value) {
    let o = ferry(["verify", first.to_str().unwrap(), "--json"]);
    let v = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("verify --json output: {e}\n{}\n{}", o.stdout, o.stderr));
    (o.code, v)
}

fn messages(report: &Value) -> String {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn split_pack_writes_checkable_volumes_and_a_sidecar() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 1);
    let out = t.path().join("b.tar");
    let vols = split(&spec, &out);
    assert!(vols.len() >= 4, "expected at least 4 volumes, got {vols:?}");
    assert!(
        !out.exists(),
        "a split pack must not write the unsplit name"
    );
    for v in &vols {
        let len = std::fs::metadata(v).unwrap().len();
        assert!(len <= 1 << 20, "{} is {len} bytes", v.display());
        // Each volume is a tar a stock tool can list on its own.
        let o = run(Command::new("tar").arg("-tf").arg(v));
        assert!(o.ok(), "tar -tf {}: {}", v.display(), o.stderr);
    }
    // The 2.5 MiB layer is the only member split into parts.
    let listing = run(Command::new("tar").arg("-tf").arg(&vols[2])).stdout;
    assert!(listing.contains(".part"), "{listing}");
    let first = run(Command::new("tar").arg("-tf").arg(&vols[0])).stdout;
    assert!(first.starts_with("oci-layout\nbundle.json\n"), "{first}");

    // coreutils checks every volume with no ferry.
    let sidecar = t.path().join("b.tar.sha256");
    let o = run(Command::new(require_tool("sha256sum", "coreutils"))
        .arg("-c")
        .arg(&sidecar)
        .current_dir(t.path()));
    assert!(o.ok(), "sha256sum -c: {}{}", o.stdout, o.stderr);
    assert_eq!(o.stdout.lines().count(), vols.len());

    // verify takes the first volume, or the name the volumes share.
    for name in [vols[0].clone(), out.clone()] {
        let (code, report) = verify_json(&name);
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(report["volumes"].as_array().unwrap().len(), vols.len());
        assert_eq!(report["artifacts_ok"].as_array().unwrap().len(), 3);
    }
    // Or the whole set, as a shell glob gives it (sidecar included).
    let mut set: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.contains("b.tar."))
        .collect();
    set.sort();
    assert_eq!(set.len(), vols.len() + 1, "{set:?}");
    let mut args = vec!["verify".to_owned()];
    args.extend(set.iter().cloned());
    ferry(&args).expect_ok("verify b.tar.*");
    let m =
        ferry(["verify", set[1].as_str(), set[2].as_str()]).expect_fail("a set without volume 1");
    assert!(
        m.contains("give one archive, or the volumes of one split archive"),
        "{m}"
    );
    let m =
        ferry(["verify", set[0].as_str(), spec.to_str().unwrap()]).expect_fail("a foreign file");
    assert!(m.contains("is not a volume of"), "{m}");
    let inspect = inspect_json(&vols[0]);
    assert_eq!(inspect["volumes"].as_array().unwrap().len(), vols.len());

    // Deterministic: packing again gives the same volumes.
    let again = t.path().join("again/b.tar");
    std::fs::create_dir_all(again.parent().unwrap()).unwrap();
    let vols2 = split(&spec, &again);
    assert_eq!(vols.len(), vols2.len());
    for (a, b) in vols.iter().zip(&vols2) {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} differs between runs",
            a.display()
        );
    }
}

#[test]
fn damaged_volumes_are_named_by_number_and_the_rest_still_checked() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 1);
    let out = t.path().join("b.tar");
    let vols = split(&spec, &out);
    let n = vols.len();
    let pristine: Vec<Vec<u8>> = vols.iter().map(|v| std::fs::read(v).unwrap()).collect();
    let restore = || {
        for (v, b) in vols.iter().zip(&pristine) {
            std::fs::write(v, b).unwrap();
        }
    };

    // Missing.
    std::fs::remove_file(&vols[2]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(m.contains(&format!("volume 3 of {n}")), "{m}");
    assert!(m.contains("b.tar.003"), "{m}");
    assert!(r["members_ok"].as_u64().unwrap() > 3, "{r}");
    restore();

    // A flipped byte inside a whole (not split) blob of a later volume.
    let (k, victim) = (1..n)
        .find_map(|k| {
            read_members(&vols[k])
                .into_iter()
                .find(|m| {
                    m.name.starts_with("blobs/") && !m.name.contains(".part") && m.data.len() > 1000
                })
                .map(|m| (k, m))
        })
        .expect("a whole blob in a later volume");
    let mut bytes = pristine[k].clone();
    let at = bytes
        .windows(64)
        .position(|w| w == &victim.data[..64])
        .unwrap()
        + 100;
    bytes[at] ^= 0x55;
    std::fs::write(&vols[k], &bytes).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(m.contains(&format!("(in volume {} of {n})", k + 1)), "{m}");
    assert!(
        m.contains(&format!(
            "does not match its digest sha256:{}",
            victim.name.trim_start_matches("blobs/sha256/")
        )),
        "{m}"
    );
    assert_eq!(r["problems"].as_array().unwrap().len(), 1, "{r}");
    restore();

    // Swapped.
    std::fs::write(&vols[1], &pristine[2]).unwrap();
    std::fs::write(&vols[2], &pristine[1]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(
        m.contains(&format!(
            "b.tar.002 should be volume 2 of {n}, but it is volume 3 of {n}"
        )),
        "{m}"
    );
    assert!(m.contains("b.tar.003 should be volume 3"), "{m}");
    restore();

    // Two copies of one volume.
    std::fs::write(&vols[2], &pristine[1]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(m.contains("a second copy"), "{m}");
    assert!(!m.contains("b.tar.002"), "volume 2 itself is fine: {m}");
    restore();

    // A volume of another bundle.
    let other_dir = t.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other_vols = split(&fixture(&other_dir, 7), &other_dir.join("b.tar"));
    std::fs::copy(&other_vols[1], &vols[1]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(m.contains("belongs to another bundle"), "{m}");
    restore();

    // The last volume truncated.
    let last = &vols[n - 1];
    let cut = pristine[n - 1].len() - 3000;
    std::fs::write(last, &pristine[n - 1][..cut]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(m.contains(&format!("volume {n} of {n}")), "{m}");
    assert!(m.contains("truncated"), "{m}");
    // load refuses it before any connection.
    let o = ferry([
        "load",
        vols[0].to_str().unwrap(),
        "--registry",
        "127.0.0.1:9",
    ]);
    let m = o.expect_fail("load of a truncated volume set");
    assert!(m.contains(&format!("volume {n} of {n}")), "{m}");
    restore();

    // A later volume given first.
    let o = ferry(["verify", vols[1].to_str().unwrap()]);
    let m = o.expect_fail("verify of volume 2");
    assert!(
        m.contains(&format!(
            "is volume 2 of {n} of a split archive; pass the first volume"
        )),
        "{m}"
    );
    assert!(m.contains("b.tar.001"), "{m}");

    // Everything restored verifies again.
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(0), "{r}");
}

#[test]
fn split_archive_loads_serves_and_unpacks_like_the_unsplit_one() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 3);
    let whole = t.path().join("whole.tar");
    pack_spec(&spec, &whole);
    let vols = split(&spec, &t.path().join("split.tar"));
    assert!(vols.len() >= 3);

    // load: each into its own prefix of one real registry.
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    let mut maps = Vec::new();
    for (name, archive) in [("whole", &whole), ("split", &vols[0])] {
        let map = t.path().join(format!("{name}.map"));
        ferry([
            "load",
            archive.to_str().unwrap(),
            "--registry",
            &format!("{host}/{name}"),
            "--map-out",
            map.to_str().unwrap(),
        ])
        .expect_ok("load");
        maps.push(
            std::fs::read_to_string(&map)
                .unwrap()
                .replace("/split/", "/whole/"),
        );
    }
    assert_eq!(maps[0], maps[1], "the two loads differ");
    for repo in ["library/app:1.0", "team/big:2"] {
        let digest = |prefix: &str| {
            registry_manifest(&format!("{host}/{prefix}/{repo}"), None).expect_ok(repo)
        };
        assert_eq!(digest("whole"), digest("split"), "{repo}");
    }
    // Every blob of the split bundle arrived whole in the registry.
    let o = run(skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/split/team/big:2"),
        &format!("oci:{}:big", t.path().join("pulled").display()),
    ]));
    assert!(o.ok(), "skopeo copy: {}", o.stderr);

    // serve: skopeo pulls the split 2.5 MiB layer through ferry serve.
    let s = Served::start(&vols[0], ferry::mapping::TargetRules::default());
    let o = run(skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/team/big:2", s.addr),
        &format!("oci:{}:big", t.path().join("served").display()),
    ]));
    assert!(o.ok(), "skopeo copy from serve: {}", o.stderr);
    // A range across the cut between two volumes.
    let listing = run(Command::new("tar").arg("-tf").arg(&vols[1])).stdout;
    let part = listing
        .lines()
        .find(|l| l.contains(".part"))
        .expect("a part in volume 2")
        .to_owned();
    let hex = part
        .trim_start_matches("blobs/sha256/")
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let full = std::fs::read(t.path().join("src/blobs/sha256").join(&hex)).unwrap();
    let mid = (full.len() / 2) as u64;
    let r = http(
        s.addr,
        "GET",
        &format!("/v2/team/big/blobs/sha256:{hex}"),
        &[(
            "Range",
            &format!("bytes={}-{}", mid - 700_000, mid + 700_000),
        )],
    );
    assert_eq!(r.status, 206);
    assert!(r.body == full[(mid - 700_000) as usize..=(mid + 700_000) as usize]);
    drop(s);

    // unpack: the same layout as from the unsplit archive.
    let (a, b) = (t.path().join("u-whole"), t.path().join("u-split"));
    unpack_ok(&whole, &a);
    unpack_ok(&vols[0], &b);
    let list = |d: &Path| {
        let mut v: Vec<_> = walkdir::WalkDir::new(d)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                (
                    e.path().strip_prefix(d).unwrap().to_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (la, lb) = (list(&a), list(&b));
    let names = |l: &[(PathBuf, Vec<u8>)]| l.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&la), names(&lb));
    for ((p, x), (_, y)) in la.iter().zip(&lb) {
        if p != Path::new("bundle.json") {
            assert!(x == y, "{} differs", p.display());
        }
    }
    let o = run(Command::new(require_tool("umoci", "umoci"))
        .args(["ls", "--layout"])
        .arg(&b));
    assert!(o.ok(), "umoci ls: {}", o.stderr);
}

#[test]
fn volume_size_too_small_is_refused_with_the_size() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 1);
    let out = t.path().join("b.tar");
    let m = pack_args(&spec, &out, &["--volume-size", "100K"]).expect_fail("tiny volumes");
    assert!(
        m.contains("a volume size of 102400 bytes is too small"),
        "{m}"
    );
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("b.tar") || n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A bundle of about 110 MiB: an image with one 30 MiB incompressible
/// layer (larger than a 20 MiB volume, so it is split), a multi-arch
/// image, and nine 8 MiB files of compressible text.
fn big_fixture(dir: &Path) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let app = build::multi_arch(&mut l, 7, 300 << 10);
    l.tag(&app, "docker.io/library/app:1.0");
    let big = build::layer(&[("opt/big", &build::pseudo_random(70, 30 << 20))]);
    let bigimg = l.image(Flavour::Oci, "linux", "amd64", &[big]);
    l.tag(&bigimg, "quay.io/team/big:2");
    l.finish();
    let mut spec = String::from(
        "name: zstd-volumes\nimages:\n  - oci:src:docker.io/library/app:1.0\n  - oci:src:quay.io/team/big:2\nfiles:\n",
    );
    for i in 0..9u64 {
        // 64 KiB of noise, repeated: zstd takes it to a fraction.
        let text = build::pseudo_random(100 + i, 64 << 10).repeat(128);
        std::fs::write(dir.join(format!("f{i}.bin")), text).unwrap();
        spec.push_str(&format!("  - {{path: f{i}.bin}}\n"));
    }
    let path = dir.join("ferry.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

fn volumes_of(out: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|n| PathBuf::from(format!("{}.{n:03}", out.display())))
        .take_while(|p| p.exists())
        .collect()
}

#[test]
fn compressed_volumes_are_zstd_streams_that_sha256sum_verify_inspect_and_load_take() {
    let t = tempfile::tempdir().unwrap();
    let spec = big_fixture(t.path());
    let out = t.path().join("b.tar");
    let max = 20u64 << 20;
    pack_args(&spec, &out, &["--compress", "zstd", "--volume-size", "20M"])
        .expect_ok("pack --compress zstd --volume-size 20M");
    let vols = volumes_of(&out);
    assert!(vols.len() >= 2, "{vols:?}");
    let zstd = require_tool("zstd", "zstd");
    let mut parts = 0;
    let mut total = 0;
    for v in &vols {
        let len = std::fs::metadata(v).unwrap().len();
        total += len;
        assert!(len <= max, "{} is {len} bytes", v.display());
        // Each volume is a zstd stream of its own holding a tar of its own.
        let tar = t.path().join("one.tar");
        let o = run(Command::new(&zstd).args(["-dqf", "-o"]).arg(&tar).arg(v));
        assert!(o.ok(), "zstd -d {}: {}", v.display(), o.stderr);
        let listing = run(Command::new("tar").arg("-tf").arg(&tar));
        assert!(
            listing.ok(),
            "tar -tf of {}: {}",
            v.display(),
            listing.stderr
        );
        parts += listing.stdout.matches(".part").count();
    }
    assert!(parts >= 2, "the 30 MiB layer is split into parts");
    // Filled by what the data compresses to, not by its worst case: the
    // text compresses, so the set is far smaller than the content.
    assert!(total < 60 << 20, "{total} bytes in {} volumes", vols.len());
    assert!(vols.len() <= 3, "{} volumes", vols.len());

    let o = run(Command::new(require_tool("sha256sum", "coreutils"))
        .arg("-c")
        .arg(t.path().join("b.tar.sha256"))
        .current_dir(t.path()));
    assert!(o.ok(), "sha256sum -c: {}{}", o.stdout, o.stderr);
    assert_eq!(o.stdout.lines().count(), vols.len());

    let (code, report) = verify_json(&vols[0]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["volumes"].as_array().unwrap().len(), vols.len());
    assert_eq!(report["artifacts_ok"].as_array().unwrap().len(), 11);
    let inspect = inspect_json(&out);
    assert_eq!(inspect["compressed"], true);
    assert_eq!(inspect["volumes"].as_array().unwrap().len(), vols.len());
    assert_eq!(inspect["archive_bytes"].as_u64().unwrap(), total);

    // load: what the registry holds has the source digests.
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    ferry([
        "load",
        vols[0].to_str().unwrap(),
        "--registry",
        &format!("{host}/z"),
    ])
    .expect_ok("load of zstd volumes");
    for a in inspect["artifacts"].as_array().unwrap() {
        let reference = a["reference"].as_str().unwrap();
        // Images lose their source host; files keep their files/ name.
        let repo = match reference.strip_prefix("files/") {
            Some(_) => reference,
            None => reference.split_once('/').unwrap().1,
        };
        let raw = registry_manifest(&format!("{host}/z/{repo}"), None).expect_ok(repo);
        assert_eq!(
            ferry::digest::Digest::of(raw.as_bytes()).to_string(),
            a["digest"].as_str().unwrap(),
            "{reference}"
        );
    }
    let o = run(skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/z/team/big:2"),
        &format!("oci:{}:big", t.path().join("pulled").display()),
    ]));
    assert!(o.ok(), "skopeo copy of the split layer: {}", o.stderr);

    // serve reads the volumes by offset, with no temp file: the split
    // layer whole, and a range across the cut between two volumes.
    let first_tar = t.path().join("first.tar");
    let o = run(Command::new(&zstd)
        .args(["-dqf", "-o"])
        .arg(&first_tar)
        .arg(&vols[0]));
    assert!(o.ok(), "zstd -d: {}", o.stderr);
    let bundle = bundle_of(&read_members(&first_tar));
    let plan = bundle["volumes"]["volumes"].as_array().unwrap();
    let first_part = plan
        .iter()
        .flat_map(|v| v["pieces"].as_array().unwrap())
        .find(|p| p["part"].as_u64() == Some(1))
        .expect("a split member");
    let member = first_part["member"].as_str().unwrap();
    let cut = first_part["size"].as_u64().unwrap() as usize;
    let digest = member.replace("blobs/sha256/", "sha256:");
    let s = Served::start(&vols[0], ferry::mapping::TargetRules::default());
    let url = format!("/v2/team/big/blobs/{digest}");
    let whole = http(s.addr, "GET", &url, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(
        ferry::digest::Digest::of(&whole.body).to_string(),
        digest,
        "the split layer served whole"
    );
    let (from, to) = (cut - 1000, cut + 999);
    let range = http(
        s.addr,
        "GET",
        &url,
        &[("Range", &format!("bytes={from}-{to}"))],
    );
    assert_eq!(range.status, 206);
    assert!(
        range.body == whole.body[from..=to],
        "a range across two volumes"
    );
    drop(s);

    // Deterministic: packing again gives the same volumes.
    let again = t.path().join("again/b.tar");
    std::fs::create_dir_all(again.parent().unwrap()).unwrap();
    pack_args(
        &spec,
        &again,
        &["--compress", "zstd", "--volume-size", "20M"],
    )
    .expect_ok("second pack");
    let sums = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        sums(&t.path().join("b.tar.sha256")),
        sums(&t.path().join("again/b.tar.sha256"))
    );
}

#[test]
fn a_missing_or_damaged_compressed_volume_is_named_by_number_and_the_rest_still_checked() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 4);
    let out = t.path().join("b.tar");
    pack_args(&spec, &out, &["--compress", "zstd", "--volume-size", "1M"])
        .expect_ok("pack --compress zstd --volume-size 1M");
    let vols = volumes_of(&out);
    let n = vols.len();
    assert!(n >= 3, "{vols:?}");
    let (code, whole) = verify_json(&vols[0]);
    assert_eq!(code, Some(0), "{whole}");
    let all_ok = whole["members_ok"].as_u64().unwrap();

    // Missing: named, and the members of the other volumes still checked.
    let kept = std::fs::read(&vols[1]).unwrap();
    std::fs::remove_file(&vols[1]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(m.contains(&format!("volume 2 of {n}")), "{m}");
    assert!(m.contains("b.tar.002"), "{m}");
    let ok = r["members_ok"].as_u64().unwrap();
    assert!(ok < all_ok, "{r}");
    assert!(
        r["problems"].as_array().unwrap().len() == 1,
        "only volume 2 is named: {m}"
    );
    // load names it too, and fails.
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let m = ferry([
        "load",
        vols[0].to_str().unwrap(),
        "--registry",
        &format!("{}/x", reg.host()),
        "--retries",
        "0",
    ])
    .expect_fail("load without volume 2");
    assert!(m.contains(&format!("volume 2 of {n}")), "{m}");
    // unpack, which reads a whole set by offset, refuses it, naming it.
    let m = ferry([
        "unpack",
        vols[0].to_str().unwrap(),
        "-o",
        t.path().join("u").to_str().unwrap(),
    ])
    .expect_fail("unpack without volume 2");
    assert!(m.contains(&format!("volume 2 of {n}")), "{m}");
    std::fs::write(&vols[1], &kept).unwrap();

    // Damaged: a flipped byte in the middle of the last volume.
    let last = &vols[n - 1];
    let mut bytes = std::fs::read(last).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(last, &bytes).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(m.contains(&format!("volume {n} of {n}")), "{m}");

    // Swapped: volume 3's file under volume 2's name.
    bytes[mid] ^= 0x55;
    std::fs::write(last, &bytes).unwrap();
    std::fs::copy(&vols[2], &vols[1]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(
        m.contains(&format!("should be volume 2 of {n}, but it is volume 3")),
        "{m}"
    );
    std::fs::write(&vols[1], &kept).unwrap();

    // A seek table that no longer matches its frames (zstd itself skips
    // the table, so only ferry's check sees it).
    let mut bytes = std::fs::read(&vols[0]).unwrap();
    let at = bytes.len() - 12; // the last entry's decompressed size
    bytes[at] ^= 0x01;
    std::fs::write(&vols[0], &bytes).unwrap();
    let o = run(Command::new(require_tool("zstd", "zstd"))
        .args(["-tq"])
        .arg(&vols[0]));
    assert!(o.ok(), "zstd does not look at the table: {}", o.stderr);
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1));
    let m = messages(&r);
    assert!(
        m.contains(&format!("volume 1 of {n}")) && m.contains("the seek table lists"),
        "{m}"
    );
    bytes[at] ^= 0x01;
    std::fs::write(&vols[0], &bytes).unwrap();
}

#[test]
fn zstd_volumes_decompressed_one_by_one_are_a_plain_volume_set_verify_and_unpack_take() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 5);
    let out = t.path().join("b.tar");
    pack_args(&spec, &out, &["--compress", "zstd", "--volume-size", "1M"])
        .expect_ok("pack --compress zstd --volume-size 1M");
    // unpack reads the zstd set by offset.
    unpack_ok(&volumes_of(&out)[0], &t.path().join("u0"));

    // Each volume decompressed under its own name: a plain set.
    let plain = t.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let zstd = require_tool("zstd", "zstd");
    for v in volumes_of(&out) {
        let o = run(Command::new(&zstd)
            .arg("-dq")
            .arg(&v)
            .arg("-o")
            .arg(plain.join(v.file_name().unwrap())));
        assert!(o.ok(), "zstd -d {}: {}", v.display(), o.stderr);
    }
    let first = volumes_of(&plain.join("b.tar"))[0].clone();
    let (code, r) = verify_json(&first);
    assert_eq!(code, Some(0), "{r}");
    unpack_ok(&first, &t.path().join("u"));
    let o = run(Command::new(require_tool("umoci", "umoci"))
        .args(["ls", "--layout"])
        .arg(t.path().join("u")));
    assert!(o.ok(), "umoci ls: {}", o.stderr);
    // Both give the same layout.
    assert_eq!(
        files_of(&t.path().join("u0")),
        files_of(&t.path().join("u"))
    );
}

/// Every file under `dir`, with its bytes, by path.
fn files_of(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn verify_checks_the_volume_sidecar_and_names_each_disagreement() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 21);
    let out = t.path().join("b.tar");
    let vols = split(&spec, &out);
    assert!(vols.len() >= 3, "{vols:?}");
    let sidecar = t.path().join("b.tar.sha256");
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["sidecar"], sidecar.to_str().unwrap(), "{r:#}");
    let o = ferry(["verify", vols[0].to_str().unwrap()]).expect_ok("verify");
    assert!(o.contains("each intact and as"), "{o}");

    // One line altered: verify agrees with `sha256sum -c`, naming the volume.
    let good = std::fs::read_to_string(&sidecar).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[1] = format!("{}  b.tar.002", "0".repeat(64));
    std::fs::write(&sidecar, lines.join("\n") + "\n").unwrap();
    let sums = run(std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(&sidecar)
        .current_dir(t.path()));
    assert!(!sums.ok(), "sha256sum -c accepted the altered sidecar");
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1), "{r:#}");
    let m = messages(&r);
    assert!(
        m.contains("b.tar.sha256 says b.tar.002 hashes to sha256:000"),
        "{m}"
    );
    assert_eq!(r["problems"][0]["volumes"][0], 2, "{r:#}");

    // A volume left out of it, a file it lists that is not a volume, and
    // a line that is not a checksum line.
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines.remove(0);
    lines.push(format!("{}  b.tar.999", "1".repeat(64)));
    lines.push("not a checksum line".into());
    std::fs::write(&sidecar, lines.join("\n") + "\n").unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1), "{r:#}");
    let m = messages(&r);
    assert!(m.contains("b.tar.sha256 does not list b.tar.001"), "{m}");
    assert!(
        m.contains("lists b.tar.999, which is not a volume of this archive"),
        "{m}"
    );
    assert!(m.contains(&format!("line {} is not", lines.len())), "{m}");

    // A sidecar over its 1 MiB limit is not read, and says so.
    std::fs::write(&sidecar, vec![b'#'; (1 << 20) + 1]).unwrap();
    let (code, r) = verify_json(&vols[0]);
    assert_eq!(code, Some(1), "{r:#}");
    assert!(
        messages(&r).contains("more than the 1048576-byte limit; not read"),
        "{r:#}"
    );

    // No sidecar: verify says so and passes on the volumes alone.
    std::fs::remove_file(&sidecar).unwrap();
    let o = ferry(["verify", vols[0].to_str().unwrap()]).expect_ok("verify without a sidecar");
    assert!(o.contains("no checksum sidecar"), "{o}");
}

#[test]
fn a_volume_set_of_one_has_its_sidecar_checked_too() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 22);
    let out = t.path().join("one.tar");
    pack_args(&spec, &out, &["--volume-size", "1G"]).expect_ok("pack into one volume");
    let first = t.path().join("one.tar.001");
    let sidecar = t.path().join("one.tar.sha256");
    assert!(first.exists() && sidecar.exists());
    assert!(!t.path().join("one.tar.002").exists());
    let (code, r) = verify_json(&first);
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["sidecar"], sidecar.to_str().unwrap(), "{r:#}");
    std::fs::write(&sidecar, format!("{}  one.tar.001\n", "0".repeat(64))).unwrap();
    let (code, r) = verify_json(&first);
    assert_eq!(code, Some(1), "{r:#}");
    assert!(
        messages(&r).contains("one.tar.sha256 says one.tar.001 hashes to"),
        "{r:#}"
    );
}
