//! `ferry export`: the images of an archive as one tar that runtimes
//! import without a registry, checked with the real importers (containerd's
//! `ctr`, podman, skopeo), from every archive form, and its refusals.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::build::{self, layer, Flavour, LayoutBuilder};
use support::runtimes::{Containerd, Podman};
use support::*;

const MULTI: &str = "docker.io/library/multi:1.0";
const DOCKER_LIST: &str = "registry.example.com/team/dock:2.0";
const DOCKER_ONE: &str = "quay.io/org/single:3";

/// A spec with an OCI multi-arch image, a Docker schema-2 manifest list,
/// a single Docker schema-2 image, a chart and a file; layers of
/// `layer_size` bytes.
fn fixture(dir: &Path, layer_size: usize) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let idx = build::multi_arch(&mut l, 7, layer_size);
    l.tag(&idx, MULTI);
    let base = layer(&[("etc/os-release", b"ID=ferry-test\n")]);
    let amd = layer(&[("bin/app", &build::pseudo_random(21, layer_size))]);
    let arm = layer(&[("bin/app", &build::pseudo_random(22, layer_size))]);
    let a = l.image(Flavour::Docker, "linux", "amd64", &[base.clone(), amd]);
    let b = l.image(Flavour::Docker, "linux", "arm64", &[base.clone(), arm]);
    let list = l.index(Flavour::Docker, vec![a, b]);
    l.tag(&list, DOCKER_LIST);
    let one = l.image(Flavour::Docker, "linux", "amd64", &[base]);
    l.tag(&one, DOCKER_ONE);
    l.finish();
    std::fs::write(
        dir.join("chart-0.1.0.tgz"),
        build::chart_tgz("chart", "0.1.0", "x: 1\n"),
    )
    .unwrap();
    std::fs::write(dir.join("install.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: export-test\nimages:\n  - oci:layout:{MULTI}\n  - oci:layout:{DOCKER_LIST}\n  - oci:layout:{DOCKER_ONE}\ncharts:\n  - path: chart-0.1.0.tgz\nfiles:\n  - path: install.sh\n"
        ),
    )
    .unwrap();
    spec
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn export(archive: &Path, out: &Path, args: &[&str]) -> Out {
    let mut all = vec!["export", s(archive), "-o", s(out)];
    all.extend_from_slice(args);
    ferry(all)
}

/// The members of a tar, by name.
fn tar_member(tar: &Path, name: &str) -> Vec<u8> {
    read_members(tar)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{} has no {name}", tar.display()))
        .data
}

/// The config digest (image ID) of each image's amd64 manifest, from the
/// archive's own inspect and documents.
fn config_digests(tar: &Path) -> BTreeSet<String> {
    let manifest: Value = serde_json::from_slice(&tar_member(tar, "manifest.json")).unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["Config"]
                .as_str()
                .unwrap()
                .replace("blobs/sha256/", "sha256:")
        })
        .collect()
}

#[test]
fn a_docker_archive_export_imports_into_containerd_podman_and_skopeo() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 4096);
    let archive = t.path().join("b.tar");
    pack_spec(&spec, &archive);
    let out = t.path().join("images.tar");
    let o = export(&archive, &out, &["--platform", "linux/amd64"]);
    let summary = o.expect_ok("export");
    for name in [MULTI, DOCKER_LIST, DOCKER_ONE] {
        assert!(summary.contains(name), "summary names {name}:\n{summary}");
    }
    assert!(
        summary.contains("image IDs (config digests) above are unchanged"),
        "{summary}"
    );
    // Only images: no chart, no file.
    let manifest: Value = serde_json::from_slice(&tar_member(&out, "manifest.json")).unwrap();
    let tags: BTreeSet<String> = manifest
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["RepoTags"].as_array().unwrap().clone())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        tags,
        [MULTI, DOCKER_LIST, DOCKER_ONE]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let ids = config_digests(&out);

    // containerd: every image under its full name.
    let c = Containerd::start();
    c.ctr(&["-n", "test", "images", "import", s(&out)])
        .expect_ok("ctr images import of the docker-archive");
    let names: Vec<String> = c.images("test").into_iter().map(|(n, _)| n).collect();
    let mut want = vec![
        MULTI.to_owned(),
        DOCKER_LIST.to_owned(),
        DOCKER_ONE.to_owned(),
    ];
    want.sort();
    assert_eq!(names, want);

    // podman: every image loaded, under its name, with the same image ID.
    let p = Podman::new();
    let loaded = p.load(&out);
    assert!(
        loaded.ok(),
        "podman load: {}\n{}",
        loaded.stdout,
        loaded.stderr
    );
    for name in [MULTI, DOCKER_LIST, DOCKER_ONE] {
        let id = p
            .run(&["image", "inspect", "--format", "{{.Id}}", name])
            .expect_ok("podman image inspect");
        assert!(
            ids.contains(&format!("sha256:{}", id.trim())),
            "podman's image ID {} for {name} is not a config digest of the bundle: {ids:?}",
            id.trim()
        );
    }

    // skopeo reads each one by name: the same config (image ID), and the
    // layers as the config's diff_ids (the uncompressed layers of the input).
    for name in [MULTI, DOCKER_LIST, DOCKER_ONE] {
        let raw = skopeo()
            .args([
                "inspect",
                "--raw",
                &format!("docker-archive:{}:{name}", s(&out)),
            ])
            .output()
            .unwrap();
        assert!(
            raw.status.success(),
            "skopeo inspect {name}: {}",
            String::from_utf8_lossy(&raw.stderr)
        );
        let m: Value = serde_json::from_slice(&raw.stdout).unwrap();
        let config = m["config"]["digest"].as_str().unwrap();
        assert!(
            ids.contains(config),
            "{name}: config {config} not in {ids:?}"
        );
        let config: Value = serde_json::from_slice(&tar_member(
            &out,
            &config.replace("sha256:", "blobs/sha256/"),
        ))
        .unwrap();
        let layers: Vec<&Value> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["digest"])
            .collect();
        let diff_ids: Vec<&Value> = config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(
            layers, diff_ids,
            "{name}: skopeo's layers are not the input's diff_ids"
        );
    }
}

#[test]
fn an_oci_archive_export_keeps_every_platform_and_the_manifest_digests() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 4096);
    let archive = t.path().join("b.tar");
    pack_spec(&spec, &archive);
    let out = t.path().join("images.oci.tar");
    export(&archive, &out, &["--format", "oci-archive"]).expect_ok("export oci-archive");
    let names = tar_member(&out, "index.json");
    let index: Value = serde_json::from_slice(&names).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let name = m["annotations"]["io.containerd.image.name"]
            .as_str()
            .unwrap();
        let tag = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        assert!(name.ends_with(&format!(":{tag}")), "{name} / {tag}");
    }
    let bundle = inspect_json(&archive);
    let carried: Vec<(String, String)> = {
        let mut v: Vec<(String, String)> = bundle["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "image")
            .map(|a| {
                (
                    a["reference"].as_str().unwrap().to_owned(),
                    a["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let c = Containerd::start();
    c.ctr(&["-n", "test", "images", "import", "--all-platforms", s(&out)])
        .expect_ok("ctr images import of the oci-archive");
    assert_eq!(c.images("test"), carried, "ctr keeps the carried digests");
}

#[test]
fn every_archive_form_exports_the_same_bytes_and_so_does_stdout() {
    let t = tempfile::tempdir().unwrap();
    // Layers big enough for several 1 MiB volumes.
    let spec = fixture(t.path(), 700 << 10);
    let plain = t.path().join("plain.tar");
    pack_spec(&spec, &plain);
    let zst = t.path().join("b.tar.zst");
    pack_args(&spec, &zst, &["--compress", "zstd"]).expect_ok("pack zstd");
    let split = t.path().join("split.tar");
    pack_args(&spec, &split, &["--volume-size", "1M"]).expect_ok("pack volumes");
    let args = [
        "--platform",
        "linux/arm64",
        "--image",
        "multi:1.0",
        "--image",
        DOCKER_LIST,
    ];
    let mut outs = Vec::new();
    for (i, a) in [
        plain.clone(),
        zst,
        t.path().join("split.tar.001"),
        plain.clone(),
    ]
    .iter()
    .enumerate()
    {
        let out = t.path().join(format!("out{i}.tar"));
        export(a, &out, &args).expect_ok(&format!("export {}", a.display()));
        outs.push(std::fs::read(&out).unwrap());
    }
    assert!(
        outs.iter().all(|o| o == &outs[0]),
        "exports differ between forms or runs"
    );
    // -o -: the same tar on stdout, the summary on stderr.
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["export", s(&plain), "-o", "-"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, outs[0], "stdout export differs from the file");
    assert!(String::from_utf8_lossy(&o.stderr).contains("exported 2 images"));
}

#[test]
fn registry_names_follow_loads_mapping() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 4096);
    let archive = t.path().join("b.tar");
    pack_spec(&spec, &archive);
    let out = t.path().join("x.tar");
    export(
        &archive,
        &out,
        &[
            "--platform",
            "linux/amd64",
            "--registry",
            "localhost:5000/mirror",
        ],
    )
    .expect_ok("export --registry");
    let manifest = String::from_utf8(tar_member(&out, "manifest.json")).unwrap();
    for want in [
        "localhost:5000/mirror/library/multi:1.0",
        "localhost:5000/mirror/team/dock:2.0",
        "localhost:5000/mirror/org/single:3",
    ] {
        assert!(manifest.contains(want), "{want} in {manifest}");
    }
    let repos: Value = serde_json::from_slice(&tar_member(&out, "repositories")).unwrap();
    assert!(
        repos["localhost:5000/mirror/library/multi"]["1.0"].is_string(),
        "{repos}"
    );
    export(
        &archive,
        &out,
        &[
            "--platform",
            "linux/amd64",
            "--registry",
            "localhost:5000",
            "--keep-host",
        ],
    )
    .expect_ok("export --keep-host");
    let manifest = String::from_utf8(tar_member(&out, "manifest.json")).unwrap();
    assert!(
        manifest.contains("localhost:5000/quay.io/org/single:3"),
        "{manifest}"
    );
}

/// Nothing at OUT and no temp file beside it.
fn assert_nothing_written(dir: &Path, out: &Path) {
    assert!(!out.exists(), "{} was written", out.display());
    let partial: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "temp files left: {partial:?}");
}

#[test]
fn export_refusals_name_the_image_platform_or_blob_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 4096);
    let archive = t.path().join("b.tar");
    pack_spec(&spec, &archive);
    let out = t.path().join("x.tar");

    // A docker-archive holds one platform per image.
    let e = export(&archive, &out, &[]).expect_fail("docker-archive of a multi-arch image");
    assert!(
        e.contains(MULTI) && e.contains("linux/amd64, linux/arm64") && e.contains("--platform"),
        "{e}"
    );
    assert_nothing_written(t.path(), &out);

    let e = export(&archive, &out, &["--platform", "linux/s390x"]).expect_fail("no such platform");
    assert!(
        e.contains("has no linux/s390x variant") && e.contains(MULTI),
        "{e}"
    );
    assert_nothing_written(t.path(), &out);

    let e = export(
        &archive,
        &out,
        &["--platform", "linux/amd64", "--image", "nginx:1"],
    )
    .expect_fail("unknown image");
    assert!(
        e.contains("carries no image nginx:1") && e.contains(DOCKER_ONE),
        "{e}"
    );
    assert_nothing_written(t.path(), &out);

    // A damaged layer: named, and no tar left behind that looks whole.
    let mut members = read_members(&archive);
    let bundle = bundle_of(&members);
    let layer = bundle["members"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|m| m["size"].as_u64().unwrap())
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = members.iter_mut().find(|m| m.name == layer).unwrap();
    m.data[100] ^= 0xff;
    let damaged = t.path().join("damaged.tar");
    write_raw_tar(&damaged, &members, true);
    let e = export(&damaged, &out, &["--format", "oci-archive"]).expect_fail("damaged layer");
    let hex = layer.trim_start_matches("blobs/sha256/");
    assert!(e.contains(hex) && e.contains("damaged.tar"), "{e}");
    assert_nothing_written(t.path(), &out);

    // A key the bundle is not signed with.
    let keys = t.path().join("keys");
    ferry(["keygen", "-o", s(&keys)]).expect_ok("keygen");
    let e = export(
        &archive,
        &out,
        &[
            "--format",
            "oci-archive",
            "--key",
            s(&t.path().join("keys.pub")),
        ],
    )
    .expect_fail("unsigned archive with --key");
    assert!(e.contains("sign"), "{e}");
    assert_nothing_written(t.path(), &out);

    let e = ferry(["export", s(&archive), "-o", "-", "--json"]).expect_fail("--json with -o -");
    assert!(e.contains("--json"), "{e}");
}

/// Two single-platform images that share the tag `1.0`.
fn two_tagged_one_zero(dir: &Path) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    for (i, name) in ["docker.io/library/nginx:1.0", "docker.io/library/redis:1.0"]
        .iter()
        .enumerate()
    {
        let body = build::pseudo_random(40 + i as u64, 2048);
        let img = l.image(
            Flavour::Oci,
            "linux",
            "amd64",
            &[layer(&[("bin/app", &body)])],
        );
        l.tag(&img, name);
    }
    l.finish();
    let spec = dir.join("two.yaml");
    std::fs::write(
        &spec,
        "name: two\nimages:\n  - oci:layout:docker.io/library/nginx:1.0\n  - oci:layout:docker.io/library/redis:1.0\n",
    )
    .unwrap();
    spec
}

fn pack_one(dir: &Path, name: &str, image: &str) -> Out {
    let spec = dir.join(format!("{name}.yaml"));
    std::fs::write(&spec, format!("name: {name}\nimages:\n{image}")).unwrap();
    pack_args(&spec, &dir.join(format!("{name}.tar")), &[])
}

fn carried(dir: &Path, name: &str) -> (String, String) {
    let b = inspect_json(&dir.join(format!("{name}.tar")));
    let a = &b["artifacts"][0];
    (
        a["reference"].as_str().unwrap().to_owned(),
        a["digest"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_ctr_export_is_selected_by_its_containerd_name_and_a_shared_tag_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let spec = two_tagged_one_zero(d);
    let archive = d.join("b.tar");
    pack_spec(&spec, &archive);
    let bundle = inspect_json(&archive);
    let redis_digest = bundle["artifacts"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // A real containerd export: both entries have ref.name "1.0", and the
    // full names only in io.containerd.image.name.
    let oci = d.join("oci.tar");
    export(&archive, &oci, &["--format", "oci-archive"]).expect_ok("export");
    let c = Containerd::start();
    c.ctr(&["-n", "t", "images", "import", s(&oci)])
        .expect_ok("ctr import");
    let ctrx = d.join("ctrx.tar");
    c.ctr(&[
        "-n",
        "t",
        "images",
        "export",
        s(&ctrx),
        "docker.io/library/nginx:1.0",
        "docker.io/library/redis:1.0",
    ])
    .expect_ok("ctr export");
    let index: Value = serde_json::from_slice(&tar_member(&ctrx, "index.json")).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["1.0", "1.0"], "ctr's export: {index}");

    // By its full name, in either spelling: that image, under that name.
    for (n, sel) in [
        ("full", "docker.io/library/redis:1.0"),
        ("short", "redis:1.0"),
    ] {
        let o = pack_one(d, n, &format!("  - oci-archive:{}:{sel}\n", s(&ctrx)));
        o.expect_ok(&format!("pack by {sel}"));
        assert_eq!(
            carried(d, n),
            (
                "docker.io/library/redis:1.0".to_owned(),
                redis_digest.clone()
            )
        );
    }
    // By the tag both share: refused, naming both, never the first silently.
    let e = pack_one(d, "tag", &format!("  - oci-archive:{}:1.0\n", s(&ctrx)))
        .expect_fail("a tag two images share");
    assert!(
        e.contains("2 images answer to \"1.0\"")
            && e.contains("docker.io/library/nginx:1.0")
            && e.contains("docker.io/library/redis:1.0"),
        "{e}"
    );
}

#[test]
fn a_bare_ref_name_is_carried_with_a_warning_unless_the_spec_names_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // As buildah writes it: ref.name is the short name alone.
    let mut l = LayoutBuilder::new(&d.join("bb"));
    let img = l.image(Flavour::Oci, "linux", "amd64", &[layer(&[("x", b"x\n")])]);
    l.tag(&img, "tb");
    l.finish();
    let o = pack_one(d, "bare", &format!("  - oci:{}\n", s(&d.join("bb"))));
    assert!(o.ok(), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("its name \"tb\" is only a short name or a tag")
            && o.stderr.contains("carried as docker.io/library/tb:latest")
            && o.stderr.contains("`name:`"),
        "no warning: {}",
        o.stderr
    );
    assert_eq!(carried(d, "bare").0, "docker.io/library/tb:latest");
    let o = pack_one(
        d,
        "named",
        &format!(
            "  - ref: oci:{}\n    name: registry.local/team/tb:1\n",
            s(&d.join("bb"))
        ),
    );
    assert!(o.ok(), "{}", o.stderr);
    assert!(!o.stderr.contains("warning"), "{}", o.stderr);
    assert_eq!(carried(d, "named").0, "registry.local/team/tb:1");
}

/// The documents of an index in an archive: (platform, digest) per child.
fn children(archive: &Path, index: &str) -> Vec<(String, String)> {
    let bytes = tar_member(archive, &index.replace("sha256:", "blobs/sha256/"));
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn docker_format_images_are_marked_and_pack_oci_converts_them_with_pins_translated() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let spec = fixture(d, 4096);
    let plain = d.join("b.tar");
    pack_spec(&spec, &plain);
    let listing = ferry(["inspect", s(&plain)]).expect_ok("inspect");
    let mut marked: Vec<&str> = Vec::new();
    let mut current = "";
    for line in listing.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            current = line.trim();
        } else if line.contains("format     Docker schema 2") {
            marked.push(current);
        }
    }
    assert_eq!(marked, [DOCKER_LIST, DOCKER_ONE], "{listing}");
    let bundle = inspect_json(&plain);
    let old_root = bundle["artifacts"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_children = children(&plain, &old_root);

    // skopeo's oci: transport does not see a Docker manifest list …
    let x = d.join("x");
    std::fs::create_dir(&x).unwrap();
    let untar = |archive: &Path, dir: &Path| {
        assert!(Command::new("tar")
            .args(["-xf", s(archive), "-C", s(dir)])
            .status()
            .unwrap()
            .success())
    };
    untar(&plain, &x);
    let seen = skopeo()
        .args(["inspect", "--raw", &format!("oci:{}:{DOCKER_LIST}", s(&x))])
        .output()
        .unwrap();
    assert!(
        !seen.status.success(),
        "skopeo read a Docker list from the layout"
    );

    // … until pack --oci converts it, recording every changed digest.
    let oci = d.join("oci.tar");
    let o = pack_args(&spec, &oci, &["--oci"]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("{DOCKER_LIST} was converted to OCI"))
            && o.stderr.contains(&format!("it was {old_root}"))
            && o.stderr.contains("do not apply"),
        "no signature warning: {}",
        o.stderr
    );
    ferry(["verify", s(&oci)]).expect_ok("verify the converted archive");
    let b = inspect_json(&oci);
    assert_eq!(b["format_version"], 3);
    let list = &b["artifacts"][1];
    assert_eq!(
        list["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(list["source_digest"], old_root.as_str());
    let new_root = list["digest"].as_str().unwrap().to_owned();
    let new_children = children(&oci, &new_root);
    let converted = list["converted"].as_array().unwrap();
    for ((p, from), (p2, to)) in old_children.iter().zip(&new_children) {
        assert_eq!(p, p2);
        assert!(
            converted.iter().any(|c| c["from"] == from.as_str()
                && c["to"] == to.as_str()
                && c["platform"] == p.as_str()),
            "{p}: {from} -> {to} not recorded in {converted:?}"
        );
    }
    // The OCI image is untouched.
    assert_eq!(
        b["artifacts"][0]["digest"],
        bundle["artifacts"][0]["digest"]
    );
    assert!(b["artifacts"][0].get("converted").is_none());

    let y = d.join("y");
    std::fs::create_dir(&y).unwrap();
    untar(&oci, &y);
    for r in [DOCKER_LIST, DOCKER_ONE] {
        let o = skopeo()
            .args(["inspect", "--raw", &format!("oci:{}:{r}", s(&y))])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo {r}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // A pin on the old list, and one on the old arm64 manifest, become the
    // new ones.
    let arm_old = &old_children
        .iter()
        .find(|(p, _)| p == "linux/arm64")
        .unwrap()
        .1;
    let arm_new = &new_children
        .iter()
        .find(|(p, _)| p == "linux/arm64")
        .unwrap()
        .1;
    let manifests = d.join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("deploy.yaml"),
        format!(
            "containers:\n  - image: registry.example.com/team/dock@{old_root}\n  - image: registry.example.com/team/dock@{arm_old}\n"
        ),
    )
    .unwrap();
    let out = d.join("out");
    ferry([
        "rewrite",
        "--bundle",
        s(&oci),
        "--registry",
        "r.local:5000",
        s(&manifests),
        "-o",
        s(&out),
    ])
    .expect_ok("rewrite");
    let text = std::fs::read_to_string(out.join("deploy.yaml")).unwrap();
    assert_eq!(
        text,
        format!(
            "containers:\n  - image: r.local:5000/team/dock@{new_root}\n  - image: r.local:5000/team/dock@{arm_new}\n"
        )
    );

    // And export takes either form.
    let e = d.join("e.tar");
    export(
        &oci,
        &e,
        &["--platform", "linux/arm64", "--image", DOCKER_LIST],
    )
    .expect_ok("export");
}

/// What an outsider's review found: `-o` naming the archive itself (or a
/// FIFO) destroyed or replaced it and still exited 0; two images with one
/// name were both exported under it; the tar was readable by its owner
/// only.
#[test]
fn export_refuses_its_own_archive_a_fifo_and_one_name_for_two_images() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let spec = fixture(d, 4096);
    let archive = d.join("b.tar");
    pack_spec(&spec, &archive);
    let before = std::fs::read(&archive).unwrap();

    let e = export(&archive, &archive, &["--format", "oci-archive"])
        .expect_fail("export over its own archive");
    assert!(e.contains("is the archive being exported"), "{e}");
    assert!(
        std::fs::read(&archive).unwrap() == before,
        "the archive changed"
    );

    let fifo = d.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let e = export(&archive, &fifo, &["--format", "oci-archive"]).expect_fail("export to a FIFO");
    assert!(
        e.contains("is not a regular file") && e.contains("-o -"),
        "{e}"
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    let out = d.join("ok.tar");
    export(&archive, &out, &["--format", "oci-archive"]).expect_ok("export");
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // One image carried twice, under one tag: by name and by tag@digest.
    let two = d.join("two.yaml");
    std::fs::write(
        &two,
        format!(
            "name: two\nimages:\n  - ref: oci:layout:{DOCKER_ONE}\n    name: docker.io/library/x:1\n  - ref: oci:layout:{MULTI}\n    name: docker.io/library/x:1@{}\n",
            inspect_json(&archive)["artifacts"][0]["digest"].as_str().unwrap()
        ),
    )
    .unwrap();
    let b2 = d.join("two.tar");
    pack_spec(&two, &b2);
    let e = export(&b2, &d.join("x.tar"), &["--platform", "linux/amd64"])
        .expect_fail("two images, one name");
    assert!(
        e.contains("would both be exported as docker.io/library/x:1"),
        "{e}"
    );
    assert!(!d.join("x.tar").exists());
}

/// A full (not delta) archive whose manifest names a layer it does not
/// carry: export names the image and the blob as missing, not as left out
/// of a delta, and writes nothing.
#[test]
fn a_missing_layer_is_named_as_missing_not_as_left_out_of_a_delta() {
    use support::hand::{desc, hand_archive, Root};
    let t = tempfile::tempdir().unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"a layer this archive does not carry".to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
        ferry::oci::OCI_MANIFEST,
        desc(ferry::oci::OCI_CONFIG, config),
        desc(ferry::oci::OCI_LAYER_GZIP, &layer)
    );
    let archive = t.path().join("a.tar");
    hand_archive(
        &archive,
        &[Root {
            reference: "docker.io/library/odd:1",
            media_type: ferry::oci::OCI_MANIFEST,
            bytes: manifest.into_bytes(),
        }],
        &[config.to_vec()],
    );
    let out = t.path().join("x.tar");
    let e = export(&archive, &out, &[]).expect_fail("a missing layer");
    let missing = ferry::digest::Digest::of(&layer);
    assert!(
        e.contains("docker.io/library/odd:1")
            && e.contains(&format!("blob {missing} is missing"))
            && !e.contains("delta"),
        "{e}"
    );
    assert_nothing_written(t.path(), &out);
}

/// An archive that carries only files has nothing to export: refused,
/// pointing at `unpack --files`, and nothing written.
#[test]
fn an_archive_without_images_is_refused_pointing_at_unpack() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("install.sh"), "#!/bin/sh\n").unwrap();
    let spec = t.path().join("files.yaml");
    std::fs::write(&spec, "name: files\nfiles:\n  - path: install.sh\n").unwrap();
    let archive = t.path().join("f.tar");
    pack_spec(&spec, &archive);
    let out = t.path().join("x.tar");
    let e = export(&archive, &out, &[]).expect_fail("no images");
    assert!(
        e.contains("carries no images to export") && e.contains("unpack --charts/--files"),
        "{e}"
    );
    assert_nothing_written(t.path(), &out);
}

/// Flips one byte of `pattern`'s first occurrence in whichever of `files`
/// holds it (the same size: only the digest can tell); returns that file.
fn damage_where(files: &[PathBuf], pattern: &[u8]) -> PathBuf {
    for f in files {
        let mut bytes = std::fs::read(f).unwrap();
        if let Some(at) = bytes.windows(pattern.len()).position(|w| w == pattern) {
            bytes[at + pattern.len() / 2] ^= 0xff;
            std::fs::write(f, bytes).unwrap();
            return f.clone();
        }
    }
    panic!("no file holds the pattern");
}

/// Export copies blobs in the kernel and checks the copy: a layer whose
/// bytes were changed in place (same size) inside a plain archive or a
/// volume set fails the export in either form, naming the digest and the
/// archive, and leaves no output (nor temp file) behind.
#[test]
fn a_blob_damaged_in_place_fails_the_kernel_copy_naming_it_and_leaves_no_output() {
    let t = tempfile::tempdir().unwrap();
    let spec = fixture(t.path(), 700 << 10);
    let plain = t.path().join("plain.tar");
    pack_spec(&spec, &plain);
    let split = t.path().join("split.tar");
    pack_args(&spec, &split, &["--volume-size", "1M"]).expect_ok("pack volumes");
    // The largest layer the amd64 docker-archive holds.
    let good = t.path().join("good.tar");
    export(&plain, &good, &["--platform", "linux/amd64"]).expect_ok("export");
    let layer = read_members(&good)
        .into_iter()
        .filter(|m| m.name.starts_with("blobs/"))
        .max_by_key(|m| m.data.len())
        .unwrap();
    let hex = layer.name.trim_start_matches("blobs/sha256/").to_owned();
    let pattern = layer.data[1000..1064].to_vec();
    let out = t.path().join("x.tar");

    let damaged = t.path().join("damaged.tar");
    std::fs::copy(&plain, &damaged).unwrap();
    damage_where(std::slice::from_ref(&damaged), &pattern);
    assert_eq!(
        std::fs::metadata(&damaged).unwrap().len(),
        std::fs::metadata(&plain).unwrap().len()
    );
    for args in [
        &["--platform", "linux/amd64"][..],
        &["--format", "oci-archive"][..],
    ] {
        let e = export(&damaged, &out, args).expect_fail("a damaged layer");
        assert!(
            e.contains(&hex) && e.contains("damaged.tar") && e.contains("arrived as"),
            "{args:?}: {e}"
        );
        assert_nothing_written(t.path(), &out);
    }

    let volumes: Vec<PathBuf> = (1..=99)
        .map(|i| t.path().join(format!("split.tar.{i:03}")))
        .take_while(|v| v.exists())
        .collect();
    assert!(volumes.len() > 1, "the fixture spans several volumes");
    let hit = damage_where(&volumes, &pattern);
    let e = export(&volumes[0], &out, &["--format", "oci-archive"]).expect_fail("damaged volume");
    assert!(
        e.contains(&hex) && e.contains("arrived as"),
        "{}: {e}",
        hit.display()
    );
    assert_nothing_written(t.path(), &out);

    // Streamed to stdout (the buffered path), the same blob is named.
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "export",
            s(&damaged),
            "-o",
            "-",
            "--platform",
            "linux/amd64",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "stdout export of a damaged archive");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&hex));
}
