//! Packing, inspecting, verifying and unpacking archives made from local
//! sources, and the archive contract: member order, determinism, schema.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::build::{self, Flavour, LayoutBuilder};
use support::*;

#[test]
fn demo_pack_inspect_verify_unpack() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());

    let inspect = ferry(["inspect".as_ref(), archive.as_os_str()]).expect_ok("inspect");
    for needle in [
        "docker.io/library/demo:1.0",
        "linux/amd64, linux/arm64",
        "registry.example.com/tools/hello:2.1",
        "charts/demo-chart:0.1.0",
        "demo-chart 0.1.0",
        "README.txt",
        "manifests/ (directory)",
    ] {
        assert!(
            inspect.contains(needle),
            "inspect lacks {needle:?}:\n{inspect}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(
        &ferry(["inspect".as_ref(), archive.as_os_str(), "--json".as_ref()])
            .expect_ok("inspect --json"),
    )
    .unwrap();
    assert_eq!(json["name"], "demo");
    assert_eq!(json["artifacts"].as_array().unwrap().len(), 5);

    let v = ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");
    assert!(v.starts_with("OK "), "{v}");
    let vj: serde_json::Value = serde_json::from_str(
        &ferry(["verify".as_ref(), archive.as_os_str(), "--json".as_ref()])
            .expect_ok("verify --json"),
    )
    .unwrap();
    assert_eq!(vj["problems"].as_array().unwrap().len(), 0);
    assert_eq!(vj["artifacts_ok"].as_array().unwrap().len(), 5);

    let dir = t.path().join("layout");
    unpack_ok(&archive, &dir);
    // Every member's bytes are in the layout, hashing to its name.
    for m in read_members(&archive) {
        if m.name == "bundle.json" {
            continue;
        }
        let on_disk = std::fs::read(dir.join(&m.name)).unwrap();
        assert_eq!(on_disk, m.data, "{}", m.name);
        if let Some(hex) = m.name.strip_prefix("blobs/sha256/") {
            assert_eq!(ferry::digest::Digest::of(&on_disk).hex(), hex);
        }
    }
}

#[test]
fn members_are_in_contract_order() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let members = read_members(&archive);
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(&names[..3], &["oci-layout", "bundle.json", "index.json"]);
    let bundle = bundle_of(&members);
    // bundle.json lists every other member, in archive order.
    let listed: Vec<&str> = bundle["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = names.clone();
    expected.remove(1);
    assert_eq!(listed, expected);
    // Small JSON blobs first, then large ones, each group sorted by digest.
    let blobs = &members[3..];
    let is_json = |m: &RawMember| serde_json::from_slice::<serde_json::Value>(&m.data).is_ok();
    let first_large = blobs.iter().position(|m| !is_json(m)).unwrap();
    assert!(
        blobs[first_large..].iter().all(|m| !is_json(m)),
        "a JSON blob after the large blobs"
    );
    for group in [&blobs[..first_large], &blobs[first_large..]] {
        let mut sorted: Vec<&str> = group.iter().map(|m| m.name.as_str()).collect();
        sorted.sort();
        assert_eq!(
            group.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            sorted
        );
    }
    // Fixed metadata: mtime 0, uid/gid 0, mode 0644, regular files only.
    let mut ar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.mode().unwrap(), 0o644);
        assert!(h.entry_type().is_file());
    }
}

#[test]
fn packing_twice_gives_identical_bytes() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.tar");
    let b = t.path().join("b.tar");
    for out in [&a, &b] {
        ferry([
            "pack".as_ref(),
            demo_spec().as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ])
        .expect_ok("pack");
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // SOURCE_DATE_EPOCH sets the mtime and nothing else.
    let c = t.path().join("c.tar");
    run(std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["--quiet", "pack"])
        .arg(demo_spec())
        .arg("-o")
        .arg(&c))
    .expect_ok("pack with SOURCE_DATE_EPOCH");
    let mut ar = tar::Archive::new(std::fs::File::open(&c).unwrap());
    for e in ar.entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1_700_000_000);
    }
    assert_eq!(
        std::fs::metadata(&a).unwrap().len(),
        std::fs::metadata(&c).unwrap().len()
    );
}

#[test]
fn committed_fixtures_match_their_generator() {
    let t = tempfile::tempdir().unwrap();
    build::demo_fixtures(t.path());
    let committed = repo_root().join("fixtures/demo");
    let list = |root: &Path| {
        let mut v: Vec<_> = walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(root).unwrap().to_owned();
                (rel, std::fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    assert!(
        list(t.path()) == list(&committed),
        "fixtures/demo differs from what tests/support/build.rs generates: run `cargo run --example gen_fixtures`"
    );
}

#[test]
fn bundle_schema_is_committed_and_produced_bundles_match_it() {
    let generated = ferry::bundle::schema_json();
    let path = repo_root().join("bundle.schema.json");
    if std::env::var_os("FERRY_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "bundle.schema.json is stale: run `FERRY_BLESS=1 cargo test --test archive bundle_schema` and commit it"
    );

    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let bundle = bundle_of(&read_members(&archive));
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&bundle)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // And the schema is not vacuous: a broken bundle fails it.
    let mut broken = bundle.clone();
    broken["members"][0]["digest"] = "md5:abc".into();
    assert!(!validator.is_valid(&broken));
}

fn write_spec(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("ferry.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn docker_schema2_images_and_oci_archives_are_carried_raw() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let base = build::layer(&[("a", &build::pseudo_random(7, 3000))]);
    let amd = l.image(
        Flavour::Docker,
        "linux",
        "amd64",
        std::slice::from_ref(&base),
    );
    let arm = l.image(Flavour::Docker, "linux", "arm64", &[base]);
    let list = l.index(Flavour::Docker, vec![amd, arm]);
    l.tag(&list, "quay.io/team/tool:3");
    let root = l.finish();
    // The same layout as an oci-archive tar.
    let tar_path = t.path().join("src.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    b.append_dir_all(".", &root).unwrap();
    b.finish().unwrap();

    let spec = write_spec(
        t.path(),
        "images:\n  - oci:src:quay.io/team/tool:3\n  - ref: oci-archive:src.tar:quay.io/team/tool:3\n    name: quay.io/team/tool-copy:3\n",
    );
    let out = t.path().join("b.tar");
    ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_ok("pack");
    let i = inspect_json(&out);
    for a in i["artifacts"].as_array().unwrap() {
        assert_eq!(a["digest"], list.digest.to_string(), "digest kept: {a}");
        assert_eq!(a["media_type"], ferry::oci::DOCKER_LIST);
        assert_eq!(
            a["platforms"],
            serde_json::json!(["linux/amd64", "linux/arm64"])
        );
    }
    // The raw list bytes are in the archive unchanged.
    let raw = std::fs::read(root.join(list.digest.blob_path())).unwrap();
    let members = read_members(&out);
    assert!(members
        .iter()
        .any(|m| m.name == list.digest.blob_path() && m.data == raw));
    ferry(["verify".as_ref(), out.as_os_str()]).expect_ok("verify");
}

#[test]
fn platform_filter_writes_a_new_index_and_records_both_digests() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let idx = build::multi_arch(&mut l, 3, 2048);
    l.tag(&idx, "docker.io/library/app:1");
    l.finish();
    let spec = write_spec(
        t.path(),
        "platforms: [linux/arm64]\nimages:\n  - oci:src:docker.io/library/app:1\n",
    );
    let out = t.path().join("b.tar");
    let printed = ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_ok("pack");
    assert!(
        printed.contains("platform-filtered"),
        "the user is told: {printed}"
    );
    let i = inspect_json(&out);
    let a = &i["artifacts"][0];
    assert_eq!(a["platforms"], serde_json::json!(["linux/arm64"]));
    assert_eq!(a["source_digest"], idx.digest.to_string());
    assert_ne!(a["digest"], idx.digest.to_string());
    ferry(["verify".as_ref(), out.as_os_str()]).expect_ok("verify filtered");

    // --platform overrides the spec; all platforms selected keeps the digest.
    let out2 = t.path().join("c.tar");
    ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out2.as_os_str(),
        "--platform".as_ref(),
        "linux/amd64,linux/arm64".as_ref(),
    ])
    .expect_ok("pack all");
    let i = inspect_json(&out2);
    assert_eq!(i["artifacts"][0]["digest"], idx.digest.to_string());
    assert!(i["artifacts"][0].get("source_digest").is_none());

    // A platform the image lacks is an error naming both.
    let e = ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        t.path().join("d.tar").as_os_str(),
        "--platform".as_ref(),
        "linux/s390x".as_ref(),
    ])
    .expect_fail("missing platform");
    assert!(
        e.contains("docker.io/library/app:1 has no linux/s390x variant"),
        "{e}"
    );
    assert!(e.contains("linux/amd64, linux/arm64"), "{e}");
    assert!(!t.path().join("d.tar").exists());
}

#[test]
fn unpack_charts_and_files_gives_back_the_packed_bytes() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let (charts, files) = (t.path().join("charts"), t.path().join("files"));
    let out = ferry([
        "unpack".as_ref(),
        archive.as_os_str(),
        "--charts".as_ref(),
        charts.as_os_str(),
        "--files".as_ref(),
        files.as_os_str(),
    ])
    .expect_ok("unpack --charts --files");
    assert!(out.contains("demo-chart-0.1.0.tgz"), "{out}");
    let fx = repo_root().join("fixtures/demo");
    assert_eq!(
        std::fs::read(charts.join("demo-chart-0.1.0.tgz")).unwrap(),
        std::fs::read(fx.join("charts/demo-chart-0.1.0.tgz")).unwrap()
    );
    assert_eq!(
        std::fs::read(files.join("README.txt")).unwrap(),
        std::fs::read(fx.join("files/README.txt")).unwrap()
    );
    assert_eq!(
        std::fs::read(files.join("manifests/deployment.yaml")).unwrap(),
        std::fs::read(fx.join("files/manifests/deployment.yaml")).unwrap()
    );
    // Only what was asked for, and no temp files left behind.
    let names: Vec<_> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // A chart already there with the same bytes is fine; other bytes are not
    // overwritten.
    let unpack_charts = || {
        ferry([
            "unpack".as_ref(),
            archive.as_os_str(),
            "--charts".as_ref(),
            charts.as_os_str(),
        ])
    };
    unpack_charts().expect_ok("unpack --charts again");
    let mine = charts.join("demo-chart-0.1.0.tgz");
    std::fs::write(&mine, b"my own file").unwrap();
    let msg = unpack_charts().expect_fail("unpack over a different file");
    assert!(msg.contains("a different file is there"), "{msg}");
    assert_eq!(std::fs::read(&mine).unwrap(), b"my own file");
}

#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    // The reader is gone before ferry writes a byte.
    let o = run(std::process::Command::new("sh").arg("-c").arg(format!(
        "'{}' inspect '{}' | true",
        env!("CARGO_BIN_EXE_ferry"),
        archive.display()
    )));
    assert!(o.ok(), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert!(o.stderr.is_empty(), "{}", o.stderr);
}

/// Re-running `unpack --files` over what it wrote is success; a directory
/// whose contents differ in any file, an extra file or an executable bit
/// is refused and left as it is, with no temp directory behind.
#[test]
fn unpack_files_again_over_the_same_tree_succeeds_and_over_another_fails() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let files = t.path().join("files");
    let unpack = || {
        ferry([
            "unpack".as_ref(),
            archive.as_os_str(),
            "--files".as_ref(),
            files.as_os_str(),
        ])
    };
    unpack().expect_ok("unpack --files");
    unpack().expect_ok("unpack --files again, the same tree");
    let deploy = files.join("manifests/deployment.yaml");
    let original = std::fs::read(&deploy).unwrap();
    type Step<'a> = Box<dyn Fn() + 'a>;
    let changes: Vec<(&str, Step, Step)> = vec![
        (
            "other bytes",
            Box::new(|| std::fs::write(&deploy, b"kind: Changed\n").unwrap()),
            Box::new(|| std::fs::write(&deploy, &original).unwrap()),
        ),
        (
            "an extra file",
            Box::new(|| std::fs::write(files.join("manifests/extra.yaml"), b"x").unwrap()),
            Box::new(|| std::fs::remove_file(files.join("manifests/extra.yaml")).unwrap()),
        ),
        (
            "an executable bit",
            Box::new(|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&deploy, std::fs::Permissions::from_mode(0o755)).unwrap()
            }),
            Box::new(|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&deploy, std::fs::Permissions::from_mode(0o644)).unwrap()
            }),
        ),
    ];
    for (what, change, undo) in changes {
        change();
        let msg = unpack().expect_fail(what);
        assert!(
            msg.contains("a different directory is there"),
            "{what}: {msg}"
        );
        let left: Vec<String> = std::fs::read_dir(&files)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".ferry-extract"))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
        undo();
        unpack().expect_ok(&format!("{what} undone"));
    }
}
