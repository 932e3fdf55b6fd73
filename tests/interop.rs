//! Interop with clients no one here wrote: skopeo and umoci read ferry
//! archives (as `oci-archive:`), layouts extracted with plain `tar -xf`,
//! and layouts written by `ferry unpack`.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// (reference, digest) of every artifact in the archive.
fn artifacts(archive: &Path) -> Vec<(String, String, String)> {
    inspect_json(archive)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["reference"].as_str().unwrap().to_owned(),
                a["digest"].as_str().unwrap().to_owned(),
                a["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn check_layout_with_skopeo(dir: &Path, archive: &Path, scratch: &Path) {
    for (i, (reference, digest, kind)) in artifacts(archive).iter().enumerate() {
        let transport = format!("oci:{}:{reference}", dir.display());
        let raw = run(skopeo().args(["inspect", "--raw", &transport]))
            .expect_ok(&format!("skopeo inspect --raw {transport}"));
        assert_eq!(
            ferry::digest::Digest::of(raw.as_bytes()).to_string(),
            *digest,
            "skopeo sees the bundle's exact bytes for {reference}"
        );
        if kind == "image" {
            let out = scratch.join(format!("copy-{i}"));
            run(skopeo().args([
                "copy",
                "--all",
                &transport,
                &format!("dir:{}", out.display()),
            ]))
            .expect_ok(&format!("skopeo copy {transport}"));
            run(skopeo().args(["inspect", &transport])).expect_ok("skopeo inspect");
        }
    }
}

/// umoci 0.4 does not resolve multi-platform indexes, so each child
/// manifest gets its own name in a copy of index.json before `umoci stat`.
fn check_layout_with_umoci(dir: &Path, archive: &Path) {
    let umoci = require_tool("umoci", "umoci");
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut extra = Vec::new();
    for (reference, digest, kind) in artifacts(archive) {
        if kind != "image" {
            continue;
        }
        let blob: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap(),
        )
        .unwrap();
        match blob["manifests"].as_array() {
            Some(children) => {
                for (n, c) in children.iter().enumerate() {
                    let name = format!("child-{}-{n}", names.len());
                    let mut d = c.clone();
                    d["annotations"] =
                        serde_json::json!({"org.opencontainers.image.ref.name": name});
                    extra.push(d);
                    names.push(name);
                }
            }
            None => names.push(reference),
        }
    }
    assert!(
        names.len() >= 3,
        "the demo has 3 image manifests, found {names:?}"
    );
    index["manifests"].as_array_mut().unwrap().extend(extra);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    for name in names {
        let out = run(Command::new(&umoci).args([
            "stat",
            "--image",
            &format!("{}:{name}", dir.display()),
        ]))
        .expect_ok(&format!("umoci stat {name}"));
        assert!(
            out.contains("ferry test fixture"),
            "umoci read the config history: {out}"
        );
    }
}

#[test]
fn skopeo_and_umoci_read_a_tar_extracted_archive() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let dir = t.path().join("extracted");
    std::fs::create_dir(&dir).unwrap();
    run(Command::new(require_tool("tar", "tar"))
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir))
    .expect_ok("tar -xf");
    check_layout_with_skopeo(&dir, &archive, t.path());
    check_layout_with_umoci(&dir, &archive);
}

#[test]
fn skopeo_and_umoci_read_an_unpacked_layout() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let dir = t.path().join("unpacked");
    unpack_ok(&archive, &dir);
    check_layout_with_skopeo(&dir, &archive, t.path());
    check_layout_with_umoci(&dir, &archive);
}

#[test]
fn skopeo_reads_the_archive_itself_as_oci_archive() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let transport = format!(
        "oci-archive:{}:docker.io/library/demo:1.0",
        archive.display()
    );
    let raw = run(skopeo().args(["inspect", "--raw", &transport]))
        .expect_ok("skopeo inspect oci-archive");
    let (_, digest, _) = artifacts(&archive).into_iter().next().unwrap();
    assert_eq!(
        ferry::digest::Digest::of(raw.as_bytes()).to_string(),
        digest
    );
    run(skopeo().args([
        "copy",
        "--all",
        &transport,
        &format!("oci:{}:x", t.path().join("copy").display()),
    ]))
    .expect_ok("skopeo copy from oci-archive");
}

#[test]
fn ferry_packs_what_skopeo_wrote() {
    // A layout written by skopeo (from ferry's own unpack) packs back to the
    // same digests: ferry reads other tools' layouts too.
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let dir = t.path().join("unpacked");
    unpack_ok(&archive, &dir);
    let copy = t.path().join("by-skopeo");
    run(skopeo().args([
        "copy",
        "--all",
        &format!("oci:{}:docker.io/library/demo:1.0", dir.display()),
        &format!("oci-archive:{}:docker.io/library/demo:1.0", copy.display()),
    ]))
    .expect_ok("skopeo copy to oci-archive");
    let spec = t.path().join("images.txt");
    std::fs::write(
        &spec,
        format!(
            "oci-archive:{}:docker.io/library/demo:1.0\n",
            copy.display()
        ),
    )
    .unwrap();
    let out = t.path().join("again.tar");
    ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_ok("pack skopeo's archive");
    let (_, d1, _) = artifacts(&archive).into_iter().next().unwrap();
    let (_, d2, _) = artifacts(&out).into_iter().next().unwrap();
    assert_eq!(d1, d2);
}
