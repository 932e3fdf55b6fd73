//! Documents that clients could read differently from ferry: keys that
//! differ only in case or repeat, ambiguous manifests and indexes, embedded
//! data that contradicts its digest, a bundle.json and index.json that
//! disagree, and chart versions that would become paths. Each must be
//! refused by every command that reads it, and valid content in unusual
//! shapes (non-JSON configs, leading whitespace) must still load from a
//! compressed archive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use ferry::digest::Digest;
use ferry::oci;
use support::hand::{desc, hand_archive, rename_artifact, Root};
use support::registry::DockerRegistry;
use support::{bundle_of, ferry, read_members, set_bundle, write_raw_tar};

const REF: &str = "docker.io/library/odd:1";

/// A config and a layer, and their descriptors.
fn parts() -> (Vec<u8>, Vec<u8>, String, String) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = support::build::gzip(&support::build::tar_of(&[("etc/odd", b"odd")]));
    let c = desc(oci::OCI_CONFIG, &config);
    let l = desc(oci::OCI_LAYER_GZIP, &layer);
    (config, layer, c, l)
}

/// `ferry load` of `archive` into a new registry under `dir/NAME` fails,
/// pushing nothing; its message.
fn load_refused(dir: &Path, name: &str, archive: &Path) -> String {
    let reg = DockerRegistry::start(&dir.join(name), false);
    let o = ferry([
        "load".as_ref(),
        archive.as_os_str(),
        "--registry".as_ref(),
        reg.host().as_ref(),
    ]);
    assert_ne!(o.code, Some(0), "load accepted it: {}", o.stdout);
    assert!(reg.tags().is_empty(), "load pushed {:?}", reg.tags());
    format!("{}{}", o.stdout, o.stderr)
}

/// verify, load and serve all refuse the archive, each naming `what`.
fn refused_everywhere(dir: &Path, archive: &Path, what: &str) {
    let o = ferry(["verify".as_ref(), archive.as_os_str()]);
    assert_ne!(o.code, Some(0), "verify accepted it: {}", o.stdout);
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(all.contains(what), "verify does not say {what:?}: {all}");

    let all = load_refused(dir, "reg", archive);
    assert!(all.contains(what), "load does not say {what:?}: {all}");

    let o = ferry([
        "serve".as_ref(),
        archive.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ]);
    assert_ne!(o.code, Some(0), "serve started: {}", o.stdout);
    assert!(
        o.stderr.contains(what),
        "serve does not say {what:?}: {}",
        o.stderr
    );
}

#[test]
fn keys_that_differ_only_in_case_or_repeat_are_refused_wherever_a_document_is_read() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, c, l) = parts();
    // A second layer list Go clients would use, never hashed by ferry.
    let other = desc(oci::OCI_LAYER_GZIP, b"never carried");
    let cases = [
        (
            "case",
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}],"Layers":[{other}]}}"#,
                oci::OCI_MANIFEST
            ),
            "differs only in case",
        ),
        (
            "case-in-descriptor",
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{}]}}"#,
                oci::OCI_MANIFEST,
                l.replace("\"size\"", "\"Digest\":\"sha256:00\",\"size\"")
            ),
            "differs only in case",
        ),
        (
            "duplicate",
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}],"layers":[]}}"#,
                oci::OCI_MANIFEST
            ),
            "appears twice",
        ),
        (
            "wrong-kind",
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":{{"0":{l}}}}}"#,
                oci::OCI_MANIFEST
            ),
            "not a valid OCI",
        ),
    ];
    for (name, manifest, what) in cases {
        let dir = t.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.tar");
        let root = Root {
            reference: REF,
            media_type: oci::OCI_MANIFEST,
            bytes: manifest.into_bytes(),
        };
        hand_archive(&archive, &[root], &[config.clone(), layer.clone()]);
        refused_everywhere(&dir, &archive, what);
    }
    // User maps keep their keys: both spellings of an annotation are fine.
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}],"annotations":{{"maintainer":"a","Maintainer":"b"}}}}"#,
        oci::OCI_MANIFEST
    );
    let archive = t.path().join("fine.tar");
    let root = Root {
        reference: REF,
        media_type: oci::OCI_MANIFEST,
        bytes: manifest.into_bytes(),
    };
    hand_archive(&archive, &[root], &[config, layer]);
    ferry(["verify".as_ref(), archive.as_os_str()])
        .expect_ok("verify of a manifest with Maintainer and maintainer");
}

#[test]
fn a_layout_whose_manifest_repeats_a_key_is_refused_by_pack() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, c, l) = parts();
    let mut b = support::build::LayoutBuilder::new(&t.path().join("src"));
    b.blob(oci::OCI_CONFIG, &config);
    b.blob(oci::OCI_LAYER_GZIP, &layer);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}],"LAYERS":[]}}"#,
        oci::OCI_MANIFEST
    );
    let d = b.blob(oci::OCI_MANIFEST, manifest.as_bytes());
    b.tag(&d, REF);
    b.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, format!("images:\n  - oci:src:{REF}\n")).unwrap();
    let out = t.path().join("b.tar");
    let msg = ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_fail("pack of a manifest with LAYERS");
    assert!(msg.contains(&d.digest.to_string()), "{msg}");
    assert!(msg.contains("differs only in case"), "{msg}");
    assert!(!out.exists());
}

#[test]
fn ambiguous_manifests_and_indexes_are_refused_by_verify_load_and_serve() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, c, l) = parts();
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}]}}"#,
        oci::OCI_MANIFEST
    );
    let child = desc(oci::OCI_MANIFEST, image.as_bytes());
    let cases = [
        // A manifest that also lists manifests.
        (
            "manifest-with-manifests",
            oci::OCI_MANIFEST,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}],"manifests":[{child}]}}"#,
                oci::OCI_MANIFEST
            ),
        ),
        // An index that also has layers.
        (
            "index-with-layers",
            oci::OCI_INDEX,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{child}],"layers":[{l}]}}"#,
                oci::OCI_INDEX
            ),
        ),
        // No mediaType, and both shapes.
        (
            "both-without-media-type",
            oci::OCI_INDEX,
            format!(r#"{{"schemaVersion":2,"manifests":[{child}],"config":{c},"layers":[{l}]}}"#),
        ),
        // A manifest whose descriptor calls it an index.
        (
            "kind-disagrees",
            oci::OCI_INDEX,
            format!(r#"{{"schemaVersion":2,"config":{c},"layers":[{l}]}}"#),
        ),
    ];
    for (name, media_type, doc) in cases {
        let dir = t.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.tar");
        let root = Root {
            reference: REF,
            media_type,
            bytes: doc.into_bytes(),
        };
        hand_archive(
            &archive,
            &[root],
            &[image.clone().into_bytes(), config.clone(), layer.clone()],
        );
        refused_everywhere(&dir, &archive, "is ambiguous");
    }
}

#[test]
fn a_descriptor_whose_embedded_data_contradicts_its_digest_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, _, l) = parts();
    // The config descriptor embeds `{}` but names the real config's digest.
    let c = desc(oci::OCI_CONFIG, &config).replace("\"size\"", "\"data\":\"e30=\",\"size\"");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}]}}"#,
        oci::OCI_MANIFEST
    );
    let archive = t.path().join("a.tar");
    let root = Root {
        reference: REF,
        media_type: oci::OCI_MANIFEST,
        bytes: manifest.into_bytes(),
    };
    hand_archive(&archive, &[root], &[config, layer]);
    refused_everywhere(t.path(), &archive, "embeds data");
}

#[test]
fn verify_checks_the_artifacts_load_and_serve_use_not_only_index_json() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, c, l) = parts();
    let good = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}]}}"#,
        oci::OCI_MANIFEST
    );
    let missing = desc(oci::OCI_LAYER_GZIP, b"not in the archive");
    let broken = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{missing}]}}"#,
        oci::OCI_MANIFEST
    );

    // bundle.json lists the reference twice; index.json names only the
    // good one, and the second points at a manifest with a missing layer.
    let archive = t.path().join("twice.tar");
    let root = Root {
        reference: REF,
        media_type: oci::OCI_MANIFEST,
        bytes: good.clone().into_bytes(),
    };
    let mut members = hand_archive(
        &archive,
        &[root],
        &[broken.clone().into_bytes(), config.clone(), layer.clone()],
    );
    let mut b = bundle_of(&members);
    let mut second = b["artifacts"][0].clone();
    second["digest"] = Digest::of(broken.as_bytes()).to_string().into();
    b["artifacts"].as_array_mut().unwrap().push(second);
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let msg = ferry(["verify".as_ref(), archive.as_os_str()])
        .expect_fail("verify of an artifact listed twice");
    assert!(
        msg.contains(&format!("lists the artifact {REF} twice")),
        "{msg}"
    );

    // Each listed once, but bundle.json's media type disagrees with
    // index.json's.
    let archive = t.path().join("media-type.tar");
    let root = Root {
        reference: REF,
        media_type: oci::OCI_MANIFEST,
        bytes: good.into_bytes(),
    };
    let mut members = hand_archive(&archive, &[root], &[config, layer]);
    let mut b = bundle_of(&members);
    b["artifacts"][0]["media_type"] = oci::DOCKER_MANIFEST.into();
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let o = ferry(["verify".as_ref(), archive.as_os_str()]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("gives") && o.stdout.contains("media type"),
        "{}",
        o.stdout
    );
    refused_everywhere(t.path(), &archive, oci::DOCKER_MANIFEST);
}

#[test]
fn a_compressed_archive_of_valid_but_unusual_documents_loads_and_verifies() {
    let t = tempfile::tempdir().unwrap();
    let mut b = support::build::LayoutBuilder::new(&t.path().join("src"));
    // An ORAS-style artifact whose config is not JSON at all.
    let cfg = b.blob(
        "application/vnd.example.config.v1+text",
        b"plain text config",
    );
    let payload = b.blob(
        "application/vnd.example.payload",
        &support::build::pseudo_random(7, 4096),
    );
    let oras = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example","config":{},"layers":[{}]}}"#,
        oci::OCI_MANIFEST,
        serde_json::to_string(&cfg).unwrap(),
        serde_json::to_string(&payload).unwrap()
    );
    let oras = b.blob(oci::OCI_MANIFEST, oras.as_bytes());
    b.tag(&oras, "registry.example.com/art/oras:1");
    // An image whose config starts with whitespace and whose manifest
    // starts with a newline.
    let layer = support::build::gzip(&support::build::tar_of(&[("etc/x", b"x")]));
    let config = b.blob(oci::OCI_CONFIG, b"  {\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}");
    let layer = b.blob(oci::OCI_LAYER_GZIP, &layer);
    let manifest = format!(
        "\n{{\"schemaVersion\":2,\"mediaType\":\"{}\",\"config\":{},\"layers\":[{}]}}",
        oci::OCI_MANIFEST,
        serde_json::to_string(&config).unwrap(),
        serde_json::to_string(&layer).unwrap()
    );
    let image = b.blob(oci::OCI_MANIFEST, manifest.as_bytes());
    b.tag(&image, "registry.example.com/art/spaced:1");
    b.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "images:\n  - oci:src:registry.example.com/art/oras:1\n  - oci:src:registry.example.com/art/spaced:1\n",
    )
    .unwrap();
    let out = t.path().join("b.tar.zst");
    ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--compress".as_ref(),
        "zstd".as_ref(),
    ])
    .expect_ok("pack --compress zstd");
    ferry(["verify".as_ref(), out.as_os_str()]).expect_ok("verify");
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    ferry([
        "load".as_ref(),
        out.as_os_str(),
        "--registry".as_ref(),
        reg.host().as_ref(),
    ])
    .expect_ok("load of a compressed archive with unusual documents");
    let pulled = support::registry_manifest(&format!("{}/art/spaced:1", reg.host()), None);
    assert!(pulled.ok(), "{}", pulled.stderr);
}

#[test]
fn a_chart_version_that_would_become_a_path_is_refused_at_pack_verify_and_load() {
    let t = tempfile::tempdir().unwrap();
    let evil = "1.0.0/../../../../../library/demo/manifests/9.9";
    let charts = t.path().join("charts");
    std::fs::create_dir_all(&charts).unwrap();
    std::fs::write(
        charts.join("demo.tgz"),
        support::build::chart_tgz("demo", evil, "image: x\n"),
    )
    .unwrap();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "charts:\n  - path: charts/demo.tgz\n").unwrap();
    let out = t.path().join("b.tar");
    let msg = ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_fail("pack of a chart whose version is a path");
    assert!(
        msg.contains("is not SemVer") && msg.contains("demo.tgz"),
        "{msg}"
    );
    assert!(!out.exists());

    // An archive whose bundle.json carries such a chart anyway.
    std::fs::write(
        charts.join("demo.tgz"),
        support::build::chart_tgz("demo", "1.0.0", "image: x\n"),
    )
    .unwrap();
    ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_ok("pack");
    let mut members = read_members(&out);
    let mut b = bundle_of(&members);
    b["artifacts"][0]["chart"]["version"] = evil.into();
    b["artifacts"][0]["reference"] = format!("charts/demo:{evil}").into();
    set_bundle(&mut members, &b);
    write_raw_tar(&out, &members, true);
    // (bundle.json is no longer what index.json names, which verify would
    // also report; the chart version is refused first, by every reader.)
    refused_everywhere(t.path(), &out, "is not SemVer");
}

#[test]
fn a_tag_that_is_not_a_tag_never_reaches_a_registry_url() {
    let t = tempfile::tempdir().unwrap();
    let charts = t.path().join("charts");
    std::fs::create_dir_all(&charts).unwrap();
    std::fs::write(
        charts.join("demo.tgz"),
        support::build::chart_tgz("demo", "1.0.0", "image: x\n"),
    )
    .unwrap();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "charts:\n  - path: charts/demo.tgz\n").unwrap();
    let out = t.path().join("b.tar");
    ferry([
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_ok("pack");
    // A file-like artifact named with a path for a tag, chart record gone.
    let mut members = read_members(&out);
    let mut b = bundle_of(&members);
    b["artifacts"][0].as_object_mut().unwrap().remove("chart");
    set_bundle(&mut members, &b);
    rename_artifact(
        &mut members,
        "charts/demo:1.0.0",
        "charts/demo:1.0.0/../../../x/manifests/9",
    );
    write_raw_tar(&out, &members, true);
    let msg = load_refused(t.path(), "reg", &out);
    assert!(msg.contains("is not a valid tag"), "{msg}");
}

#[test]
fn verify_walks_a_document_also_named_as_a_blob_and_checks_every_size_a_manifest_gives() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, c, l) = parts();
    // X: a manifest Go clients would read with another layer list.
    let other = desc(oci::OCI_LAYER_GZIP, b"never carried");
    let x = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}],"Layers":[{other}]}}"#,
        oci::OCI_MANIFEST
    );
    // M1 names X as its config, before the index names X as a child.
    let m1 = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{l}]}}"#,
        oci::OCI_MANIFEST,
        desc(oci::OCI_CONFIG, x.as_bytes())
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
        oci::OCI_INDEX,
        desc(oci::OCI_MANIFEST, m1.as_bytes()),
        desc(oci::OCI_MANIFEST, x.as_bytes())
    );
    let archive = t.path().join("a.tar");
    let root = Root {
        reference: REF,
        media_type: oci::OCI_INDEX,
        bytes: index.into_bytes(),
    };
    hand_archive(
        &archive,
        &[root],
        &[
            m1.into_bytes(),
            x.into_bytes(),
            config.clone(),
            layer.clone(),
        ],
    );
    let msg = ferry(["verify".as_ref(), archive.as_os_str()]).expect_fail("verify");
    assert!(msg.contains("differs only in case"), "{msg}");

    // Two manifests give one layer two sizes: the wrong one is named.
    let wrong = l.replace(
        &format!("\"size\":{}", layer.len()),
        &format!("\"size\":{}", layer.len() + 1),
    );
    let a = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}]}}"#,
        oci::OCI_MANIFEST
    );
    let b = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{wrong}]}}"#,
        oci::OCI_MANIFEST
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
        oci::OCI_INDEX,
        desc(oci::OCI_MANIFEST, a.as_bytes()),
        desc(oci::OCI_MANIFEST, b.as_bytes())
    );
    let root = Root {
        reference: REF,
        media_type: oci::OCI_INDEX,
        bytes: index.into_bytes(),
    };
    hand_archive(
        &archive,
        &[root],
        &[a.into_bytes(), b.into_bytes(), config, layer.clone()],
    );
    let msg = ferry(["verify".as_ref(), archive.as_os_str()]).expect_fail("verify");
    assert!(
        msg.contains(&format!("its descriptor says {}", layer.len() + 1)),
        "{msg}"
    );
}

#[test]
fn a_path_nesting_too_deep_is_refused_by_verify_even_to_a_document_walked_before() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, c, l) = parts();
    let x = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}]}}"#,
        oci::OCI_MANIFEST
    );
    let index_of = |children: &[&String]| {
        let list: Vec<String> = children
            .iter()
            .map(|d| {
                let mt = if d.contains("\"manifests\"") {
                    oci::OCI_INDEX
                } else {
                    oci::OCI_MANIFEST
                };
                desc(mt, d.as_bytes())
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
            oci::OCI_INDEX,
            list.join(",")
        )
    };
    // R lists X (depth 1) and a chain B → C → D → E → X (X at depth 5).
    let e = index_of(&[&x]);
    let d = index_of(&[&e]);
    let cc = index_of(&[&d]);
    let b = index_of(&[&cc]);
    let r = index_of(&[&x, &b]);
    let archive = t.path().join("a.tar");
    let root = Root {
        reference: REF,
        media_type: oci::OCI_INDEX,
        bytes: r.into_bytes(),
    };
    let docs: Vec<Vec<u8>> = [&x, &e, &d, &cc, &b]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let mut blobs = docs;
    blobs.extend([config, layer]);
    hand_archive(&archive, &[root], &blobs);
    let msg = ferry(["verify".as_ref(), archive.as_os_str()]).expect_fail("verify");
    assert!(msg.contains("nest deeper than 4 levels"), "{msg}");
    let msg = load_refused(t.path(), "reg", &archive);
    assert!(msg.contains("nest deeper than 4 levels"), "{msg}");
}

#[test]
fn an_index_json_entry_with_another_size_or_contradicting_data_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (config, layer, c, l) = parts();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{c},"layers":[{l}]}}"#,
        oci::OCI_MANIFEST
    );
    for (name, edit) in [("size", r#""size":1,"#), ("data", r#""data":"e30=","#)] {
        let archive = t.path().join(format!("{name}.tar"));
        let root = Root {
            reference: REF,
            media_type: oci::OCI_MANIFEST,
            bytes: m.clone().into_bytes(),
        };
        let mut members = hand_archive(&archive, &[root], &[config.clone(), layer.clone()]);
        let index = members.iter_mut().find(|x| x.name == "index.json").unwrap();
        let text = String::from_utf8(index.data.clone()).unwrap();
        let text = match name {
            "size" => text.replace(&format!("\"size\":{}", m.len()), "\"size\":1"),
            _ => text.replace(
                "\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",",
                &format!("\"mediaType\":\"{}\",{edit}", oci::OCI_MANIFEST),
            ),
        };
        index.data = text.into_bytes();
        let (digest, size) = (Digest::of(&index.data), index.data.len());
        let mut b = bundle_of(&members);
        for x in b["members"].as_array_mut().unwrap() {
            if x["path"] == "index.json" {
                x["digest"] = digest.to_string().into();
                x["size"] = size.into();
            }
        }
        set_bundle(&mut members, &b);
        write_raw_tar(&archive, &members, true);
        let o = ferry(["verify".as_ref(), archive.as_os_str()]);
        assert_eq!(o.code, Some(1), "{name}: {}{}", o.stdout, o.stderr);
        load_refused(t.path(), &format!("reg-{name}"), &archive);
    }
}

/// An image whose index lists no manifests has nothing to run: verify
/// refuses it, naming the image and the index. An empty referrers-style
/// index (one with an artifactType) stays valid.
#[test]
fn verify_refuses_an_image_whose_index_lists_no_manifests() {
    let t = tempfile::tempdir().unwrap();
    let empty = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
        oci::OCI_INDEX
    );
    let archive = t.path().join("empty.tar");
    hand_archive(
        &archive,
        &[Root {
            reference: REF,
            media_type: oci::OCI_INDEX,
            bytes: empty.clone().into_bytes(),
        }],
        &[],
    );
    let out = ferry(["verify".as_ref(), archive.as_os_str()]);
    assert!(!out.ok(), "verify accepted an empty image index");
    let index = Digest::of(empty.as_bytes());
    assert!(
        out.stdout
            .contains(&format!("image {REF}: index {index} lists no manifests")),
        "{}",
        out.stdout
    );
    let referrers = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.list","manifests":[]}}"#,
        oci::OCI_INDEX
    );
    let archive = t.path().join("referrers.tar");
    hand_archive(
        &archive,
        &[Root {
            reference: REF,
            media_type: oci::OCI_INDEX,
            bytes: referrers.into_bytes(),
        }],
        &[],
    );
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("an empty referrers index");
}
