//! `ferry serve` as a classic Helm chart repository (`/charts/index.yaml`,
//! `/charts/NAME-VERSION.tgz`) and a file server (`/files/NAME`). helm
//! cannot be installed here, so index.yaml is checked against the rules
//! Helm's repository loader applies (it reads the index strictly: unknown
//! fields and wrong types fail the whole repository), then every chart and
//! file is downloaded and compared byte for byte.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::hand::{desc, hand_archive, Root};
use support::*;

const RICH_CHART_YAML: &str = r#"apiVersion: v2
name: beta
version: 0.3.0
appVersion: "1.10"
description: "Beta: a chart with every field Helm knows"
home: https://example.com/beta
sources: [https://example.com/src]
keywords: ["yes", db, "1.0"]
maintainers:
  - name: Ops
    email: ops@example.com
icon: https://example.com/icon.png
kubeVersion: ">=1.25.0-0"
deprecated: true
type: application
annotations:
  category: Database
  licenses: Apache-2.0
dependencies:
  - name: common
    version: 2.x.x
    repository: https://charts.example.com
    condition: common.enabled
    tags: [base]
    import-values: [defaults]
    alias: shared
"#;

/// The charts of the fixture: (name, version, archive bytes).
fn fixture_charts() -> Vec<(String, String, Vec<u8>)> {
    let mut out: Vec<(String, String, Vec<u8>)> =
        ["1.0.0", "1.10.0", "1.2.0", "2.0.0-rc.1", "1.3.0+build.7"]
            .iter()
            .map(|v| {
                let tgz = build::chart_tgz("alpha", v, &format!("replicas: 1\n# {v}\n"));
                ("alpha".to_owned(), v.to_string(), tgz)
            })
            .collect();
    let rich = build::gzip(&build::tar_of(&[
        ("beta/Chart.yaml", RICH_CHART_YAML.as_bytes()),
        ("beta/values.yaml", b"image: {}\n"),
    ]));
    out.push(("beta".into(), "0.3.0".into(), rich));
    out
}

const INSTALL_SH: &[u8] = b"#!/bin/sh\necho installing\n";
const NOTES: &[u8] = b"notes with a space in the name\n";

/// Writes the fixture (charts, a script, a file whose name has a space, a
/// directory) and its spec into `dir`; returns the spec.
fn write_fixture(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("charts")).unwrap();
    let mut spec = String::from("name: helmrepo\ncharts:\n");
    for (name, version, tgz) in fixture_charts() {
        let file = format!("charts/{name}-{version}.tgz");
        std::fs::write(dir.join(&file), tgz).unwrap();
        spec.push_str(&format!("  - path: {file}\n"));
    }
    std::fs::write(dir.join("install.sh"), INSTALL_SH).unwrap();
    std::fs::write(dir.join("notes.txt"), NOTES).unwrap();
    std::fs::create_dir_all(dir.join("docs/sub")).unwrap();
    std::fs::write(dir.join("docs/a.yaml"), b"a: 1\n").unwrap();
    std::fs::write(dir.join("docs/sub/b.txt"), b"b\n").unwrap();
    spec.push_str(
        "files:\n  - path: install.sh\n  - {path: notes.txt, name: my notes.txt}\n  - path: docs\n",
    );
    let path = dir.join("ferry.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

fn get(addr: std::net::SocketAddr, path: &str) -> HttpReply {
    http(addr, "GET", path, &[])
}

/// Whether `t` is an RFC 3339 time (what Go's `time.Time` reads).
fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (t.ends_with('Z') || t[19..].contains(['+', '-']))
}

/// Helm 3's `ChartVersion` (its `Metadata` plus the index fields) and the
/// kind each field must have; anything else fails Helm's strict loader.
fn field_kind(key: &str) -> Option<&'static str> {
    Some(match key {
        "name" | "home" | "version" | "description" | "icon" | "apiVersion" | "condition"
        | "tags" | "appVersion" | "kubeVersion" | "type" | "created" | "digest" | "checksum"
        | "engine" | "tillerVersion" | "url" => "string",
        "sources" | "keywords" | "urls" => "strings",
        "deprecated" | "removed" => "bool",
        "annotations" => "string map",
        "maintainers" => "maintainers",
        "dependencies" => "dependencies",
        _ => return None,
    })
}

fn check_kind(what: &str, v: &Value, kind: &str) {
    let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    let ok = match kind {
        "string" => v.is_string(),
        "strings" => strings(v),
        "bool" => v.is_boolean(),
        "string map" => v
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        "maintainers" => v.as_array().is_some_and(|a| {
            a.iter().all(|m| {
                m.as_object().is_some_and(|m| {
                    m.iter().all(|(k, v)| {
                        ["name", "email", "url"].contains(&k.as_str()) && v.is_string()
                    })
                })
            })
        }),
        "dependencies" => v.as_array().is_some_and(|a| {
            a.iter().all(|d| {
                d.as_object().is_some_and(|d| {
                    d.iter().all(|(k, v)| match k.as_str() {
                        "name" | "version" | "repository" | "condition" | "alias" => v.is_string(),
                        "tags" => strings(v),
                        "enabled" => v.is_boolean(),
                        "import-values" => v.is_array(),
                        _ => false,
                    })
                })
            })
        }),
        _ => unreachable!(),
    };
    assert!(ok, "{what} is not of Helm's type {kind}: {v}");
}

/// One index entry as the test needs it.
#[derive(Debug)]
struct Listed {
    version: String,
    url: String,
    digest: String,
    entry: serde_json::Map<String, Value>,
}

/// Checks index.yaml against Helm's loader rules and returns its entries.
fn load_index_as_helm_does(text: &str) -> BTreeMap<String, Vec<Listed>> {
    let index: Value = serde_saphyr::from_str(text).expect("index.yaml is YAML");
    let top = index.as_object().expect("index.yaml is a mapping");
    for k in top.keys() {
        assert!(
            [
                "apiVersion",
                "generated",
                "entries",
                "publicKeys",
                "annotations",
                "serverInfo"
            ]
            .contains(&k.as_str()),
            "index.yaml has the unknown top-level field {k}"
        );
    }
    assert_eq!(
        top["apiVersion"], "v1",
        "Helm refuses an index without apiVersion"
    );
    assert!(
        top["generated"].as_str().is_some_and(is_rfc3339),
        "generated: {}",
        top["generated"]
    );
    let mut out = BTreeMap::new();
    for (name, versions) in top["entries"].as_object().expect("entries is a mapping") {
        let versions = versions.as_array().expect("a chart's entries are a list");
        assert!(!versions.is_empty(), "{name} has no versions");
        let mut listed = Vec::new();
        for e in versions {
            let e = e.as_object().expect("an entry is a mapping");
            for (k, v) in e {
                let kind = field_kind(k)
                    .unwrap_or_else(|| panic!("{name}: {k} is not a field Helm knows"));
                check_kind(&format!("{name}: {k}"), v, kind);
            }
            assert_eq!(e["name"], name.as_str(), "an entry's name is its key");
            let version = e["version"].as_str().unwrap().to_owned();
            assert!(
                semver::Version::parse(&version).is_ok(),
                "{version} is SemVer"
            );
            let urls = e["urls"].as_array().unwrap();
            assert_eq!(urls.len(), 1, "{name} {version}: one URL");
            let url = urls[0].as_str().unwrap().to_owned();
            assert!(
                !url.contains("://") && !url.starts_with('/'),
                "{url} is relative to the index"
            );
            let digest = e["digest"].as_str().unwrap().to_owned();
            assert!(
                digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                "digest {digest} is hex without sha256:"
            );
            assert!(e["created"].as_str().is_some_and(is_rfc3339), "created");
            listed.push(Listed {
                version,
                url,
                digest,
                entry: e.clone(),
            });
        }
        // Newest first, by SemVer, as Helm sorts and as `helm pull` without
        // --version expects the first stable one to be the newest.
        let parsed: Vec<semver::Version> = listed
            .iter()
            .map(|l| semver::Version::parse(&l.version).unwrap())
            .collect();
        assert!(
            parsed.windows(2).all(|w| w[0] >= w[1]),
            "{name}: versions newest first: {parsed:?}"
        );
        out.insert(name.clone(), listed);
    }
    out
}

/// Downloads every chart the index lists, resolving its URL against the
/// repository URL as Helm does, and compares it with the original.
fn check_every_chart_downloads(
    addr: std::net::SocketAddr,
    entries: &BTreeMap<String, Vec<Listed>>,
) {
    let originals = fixture_charts();
    let mut seen = 0;
    for (name, versions) in entries {
        for l in versions {
            let r = get(addr, &format!("/charts/{}", l.url));
            assert_eq!(r.status, 200, "{name} {}", l.version);
            let (_, _, want) = originals
                .iter()
                .find(|(n, v, _)| n == name && *v == l.version)
                .unwrap();
            assert_eq!(&r.body, want, "{name} {} byte for byte", l.version);
            assert_eq!(ferry::digest::Digest::of(&r.body).hex(), l.digest);
            assert_eq!(r.headers["content-length"], want.len().to_string());
            seen += 1;
        }
    }
    assert_eq!(seen, originals.len(), "every chart is listed");
}

#[test]
fn serve_is_a_helm_repository_whose_index_follows_helms_loader_rules() {
    let t = tempfile::tempdir().unwrap();
    let spec = write_fixture(&t.path().join("src"));
    let archive = t.path().join("a.tar");
    pack_spec(&spec, &archive);
    let s = ServeProcess::start(&archive, &[], None);

    let r = get(s.addr, "/charts/index.yaml");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], r.body.len().to_string());
    let text = String::from_utf8(r.body.clone()).unwrap();
    let entries = load_index_as_helm_does(&text);
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        ["alpha", "beta"],
        "{text}"
    );
    let alpha: Vec<&str> = entries["alpha"]
        .iter()
        .map(|l| l.version.as_str())
        .collect();
    assert_eq!(
        alpha,
        ["2.0.0-rc.1", "1.10.0", "1.3.0+build.7", "1.2.0", "1.0.0"]
    );
    assert_eq!(entries["alpha"][1].url, "alpha-1.10.0.tgz");
    // A `+` in a URL may come percent-encoded; it is the same archive.
    assert_eq!(entries["alpha"][2].url, "alpha-1.3.0+build.7.tgz");
    let plus = get(s.addr, "/charts/alpha-1.3.0+build.7.tgz");
    assert_eq!(plus.status, 200);
    assert_eq!(
        get(s.addr, "/charts/alpha-1.3.0%2Bbuild.7.tgz").body,
        plus.body
    );

    // The rich chart keeps every Chart.yaml field, with Helm's types.
    let beta = &entries["beta"][0].entry;
    assert_eq!(beta["appVersion"], "1.10");
    assert_eq!(beta["keywords"], serde_json::json!(["yes", "db", "1.0"]));
    assert_eq!(beta["deprecated"], true);
    assert_eq!(beta["kubeVersion"], ">=1.25.0-0");
    assert_eq!(
        beta["maintainers"],
        serde_json::json!([{"name": "Ops", "email": "ops@example.com"}])
    );
    assert_eq!(
        beta["dependencies"][0]["import-values"],
        serde_json::json!(["defaults"])
    );
    assert_eq!(beta["annotations"]["licenses"], "Apache-2.0");
    // Go's YAML 1.1 reader would take 1.10 for the number 1.1 and yes for
    // true: such strings are quoted.
    assert!(
        text.contains("appVersion: \"1.10\"") || text.contains("appVersion: '1.10'"),
        "{text}"
    );
    assert!(!text.contains("- yes\n"), "{text}");

    check_every_chart_downloads(s.addr, &entries);
    // HEAD and a range, as for blobs.
    let h = http(s.addr, "HEAD", "/charts/alpha-1.0.0.tgz", &[]);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    let r = http(
        s.addr,
        "GET",
        "/charts/alpha-1.0.0.tgz",
        &[("Range", "bytes=0-1")],
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &[0x1f, 0x8b][..]));
    // An unknown chart: 404 with a body that says so.
    let r = get(s.addr, "/charts/alpha-9.9.9.tgz");
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("no chart archive"));
}

#[test]
fn index_yaml_is_reproducible_across_packs_and_the_same_from_an_unpacked_layout() {
    let t = tempfile::tempdir().unwrap();
    let spec = write_fixture(&t.path().join("src"));
    let (a, b) = (t.path().join("a.tar"), t.path().join("b.tar"));
    pack_spec(&spec, &a);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    pack_spec(&spec, &b);
    let dir = t.path().join("layout");
    unpack_ok(&a, &dir);
    let mut indexes = Vec::new();
    for source in [&a, &b, &dir] {
        let s = ServeProcess::start(source, &[], None);
        let r = get(s.addr, "/charts/index.yaml");
        assert_eq!(r.status, 200, "{}", source.display());
        indexes.push(r.body);
        // Files too, from the layout as from the archive.
        assert_eq!(get(s.addr, "/files/install.sh").body, INSTALL_SH);
        check_every_chart_downloads(
            s.addr,
            &load_index_as_helm_does(&String::from_utf8(indexes[0].clone()).unwrap()),
        );
    }
    assert_eq!(indexes[0], indexes[1], "two packs, one index.yaml");
    assert_eq!(
        indexes[0], indexes[2],
        "the layout serves the same index.yaml"
    );
    let text = String::from_utf8(indexes[0].clone()).unwrap();
    assert!(
        text.contains("generated: \"1970-01-01T00:00:00Z\""),
        "no creation time in bundle.json: the epoch, never the clock\n{text}"
    );
}

#[test]
fn index_times_come_from_bundle_json_when_it_records_one() {
    let t = tempfile::tempdir().unwrap();
    let spec = write_fixture(&t.path().join("src"));
    let archive = t.path().join("a.tar");
    pack_spec(&spec, &archive);
    let mut members = read_members(&archive);
    let mut b = bundle_of(&members);
    b["created"] = "2024-05-06T07:08:09Z".into();
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let s = ServeProcess::start(&archive, &[], None);
    let text = String::from_utf8(get(s.addr, "/charts/index.yaml").body).unwrap();
    let index: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(index["generated"], "2024-05-06T07:08:09Z");
    for versions in index["entries"].as_object().unwrap().values() {
        for e in versions.as_array().unwrap() {
            assert_eq!(e["created"], "2024-05-06T07:08:09Z");
        }
    }
}

#[test]
fn files_download_by_name_with_content_type_length_and_ranges_and_curl_o_works() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let spec = write_fixture(&src);
    let archive = t.path().join("a.tar");
    pack_spec(&spec, &archive);
    let s = ServeProcess::start(&archive, &[], None);

    let r = get(s.addr, "/files/install.sh");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, INSTALL_SH);
    assert_eq!(
        r.headers["content-type"],
        "text/x-shellscript; charset=utf-8"
    );
    assert_eq!(r.headers["content-length"], INSTALL_SH.len().to_string());
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"install.sh\""
    );
    assert_eq!(r.headers["accept-ranges"], "bytes");
    let h = http(s.addr, "HEAD", "/files/install.sh", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.headers["content-length"], INSTALL_SH.len().to_string());
    assert!(h.body.is_empty());
    let r = http(s.addr, "GET", "/files/install.sh", &[("Range", "bytes=2-")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &INSTALL_SH[2..]));
    let r = http(
        s.addr,
        "GET",
        "/files/install.sh",
        &[("Range", "bytes=999-")],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes */{}", INSTALL_SH.len())
    );

    // A name with a space, percent-encoded in the URL.
    let r = get(s.addr, "/files/my%20notes.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, NOTES));
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");

    // A directory is its tar, under the directory's name.
    let r = get(s.addr, "/files/docs");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/x-tar");
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"docs.tar\""
    );
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(r.body.as_slice());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if p == "docs/sub/b.txt" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            assert_eq!(s, "b\n");
        }
        names.push(p);
    }
    assert!(names.contains(&"docs/a.yaml".to_owned()), "{names:?}");

    // The listing, then names that are not there: 404 with a plain body.
    let r = get(s.addr, "/files/");
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "docs\ninstall.sh\nmy%20notes.txt\n"
    );
    for path in [
        "/files/nope",
        "/files/../charts/index.yaml",
        "/files/..%2F..%2Fetc%2Fpasswd",
        "/files/%2e%2e",
        "/files/docs/a.yaml",
        "/files/%FF",
    ] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
        assert!(
            String::from_utf8_lossy(&r.body).contains("no file named"),
            "{path}"
        );
    }
    for m in ["PUT", "POST", "DELETE"] {
        let r = http(s.addr, m, "/files/install.sh", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.headers["allow"], "GET, HEAD");
    }

    // curl -O names the file after the URL; -J after the header.
    let curl = require_tool("curl", "curl");
    let out = t.path().join("curl");
    std::fs::create_dir_all(&out).unwrap();
    for args in [
        vec![
            "-sSfO".to_owned(),
            format!("http://{}/files/install.sh", s.addr),
        ],
        vec!["-sSfOJ".to_owned(), format!("http://{}/files/docs", s.addr)],
    ] {
        run(std::process::Command::new(&curl)
            .args(&args)
            .current_dir(&out))
        .expect_ok(&format!("curl {args:?}"));
    }
    assert_eq!(std::fs::read(out.join("install.sh")).unwrap(), INSTALL_SH);
    assert!(out.join("docs.tar").is_file());
}

/// A hand-made archive holding chart artifacts built the way pack builds
/// them: (reference, Helm config JSON, chart archive bytes) each.
fn chart_archive(path: &Path, charts: &[(&str, &str, &[u8])]) {
    let mut roots = Vec::new();
    let mut blobs = Vec::new();
    for (_, config, tgz) in charts {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            ferry::oci::OCI_MANIFEST,
            desc(ferry::oci::HELM_CONFIG, config.as_bytes()),
            desc(ferry::oci::HELM_CHART, tgz)
        );
        roots.push(manifest.into_bytes());
        blobs.push(config.as_bytes().to_vec());
        blobs.push(tgz.to_vec());
    }
    let roots: Vec<Root<'_>> = charts
        .iter()
        .zip(roots)
        .map(|((reference, _, _), bytes)| Root {
            reference,
            media_type: ferry::oci::OCI_MANIFEST,
            bytes,
        })
        .collect();
    let mut members = hand_archive(path, &roots, &blobs);
    let mut b = bundle_of(&members);
    for (a, (_, config, _)) in b["artifacts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(charts)
    {
        let c: Value = serde_json::from_str(config).unwrap();
        a["kind"] = "chart".into();
        a["chart"] = serde_json::json!({"name": c["name"], "version": c["version"]});
    }
    set_bundle(&mut members, &b);
    write_raw_tar(path, &members, true);
}

#[test]
fn two_different_charts_with_one_name_and_version_are_refused_naming_both() {
    let t = tempfile::tempdir().unwrap();
    let config = r#"{"name":"dup","version":"1.0.0","apiVersion":"v2"}"#;
    let one = build::chart_tgz("dup", "1.0.0", "a: 1\n");
    let other = build::chart_tgz("dup", "1.0.0", "a: 2\n");
    let archive = t.path().join("dup.tar");
    chart_archive(
        &archive,
        &[
            ("charts/dup:1.0.0", config, &one),
            ("mirror/dup:1.0.0", config, &other),
        ],
    );
    let err = ferry([
        "serve".as_ref(),
        archive.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])
    .expect_fail("serve with two charts dup 1.0.0");
    assert!(
        err.contains("charts/dup:1.0.0")
            && err.contains("mirror/dup:1.0.0")
            && err.contains("/charts/dup-1.0.0.tgz"),
        "{err}"
    );

    // The same chart twice (same archive bytes) is one entry.
    let same = t.path().join("same.tar");
    chart_archive(
        &same,
        &[
            ("charts/dup:1.0.0", config, &one),
            ("mirror/dup:1.0.0", config, &one),
        ],
    );
    let s = ServeProcess::start(&same, &[], None);
    let text = String::from_utf8(get(s.addr, "/charts/index.yaml").body).unwrap();
    let entries = load_index_as_helm_does(&text);
    assert_eq!(entries["dup"].len(), 1, "{text}");
}

#[test]
fn two_different_files_with_one_name_are_refused_naming_both() {
    let t = tempfile::tempdir().unwrap();
    let (one, other) = (b"one\n".to_vec(), b"other\n".to_vec());
    let empty = b"{}".to_vec();
    let manifest = |data: &[u8]| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.ferry.file.v1","config":{},"layers":[{{"mediaType":"application/octet-stream","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.title":"install.sh"}}}}]}}"#,
            ferry::oci::OCI_MANIFEST,
            desc("application/vnd.oci.empty.v1+json", &empty),
            ferry::digest::Digest::of(data),
            data.len()
        )
        .into_bytes()
    };
    let roots = [
        Root {
            reference: "files/install-sh:latest",
            media_type: ferry::oci::OCI_MANIFEST,
            bytes: manifest(&one),
        },
        Root {
            reference: "files/install-sh:v2",
            media_type: ferry::oci::OCI_MANIFEST,
            bytes: manifest(&other),
        },
    ];
    let archive = t.path().join("dup.tar");
    let mut members = hand_archive(&archive, &roots, &[empty.clone(), one, other]);
    let mut b = bundle_of(&members);
    for a in b["artifacts"].as_array_mut().unwrap() {
        a["kind"] = "file".into();
        a["file"] = serde_json::json!({"title": "install.sh", "directory": false});
    }
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let err = ferry([
        "serve".as_ref(),
        archive.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])
    .expect_fail("serve with two files named install.sh");
    assert!(
        err.contains("files/install-sh:latest")
            && err.contains("files/install-sh:v2")
            && err.contains("/files/install.sh"),
        "{err}"
    );
}

#[test]
fn a_chart_whose_config_helm_could_not_read_is_left_out_of_the_index_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let good = build::chart_tgz("good", "1.0.0", "a: 1\n");
    let bad = build::chart_tgz("bad", "1.0.0", "a: 1\n");
    let archive = t.path().join("a.tar");
    chart_archive(
        &archive,
        &[
            (
                "charts/good:1.0.0",
                r#"{"name":"good","version":"1.0.0","apiVersion":"v2","x-extension":{"dropped":true}}"#,
                &good,
            ),
            (
                "charts/bad:1.0.0",
                r#"{"name":"bad","version":"1.0.0","apiVersion":"v2","keywords":"not-a-list"}"#,
                &bad,
            ),
        ],
    );
    let s = ServeProcess::start(&archive, &[], None);
    let text = String::from_utf8(get(s.addr, "/charts/index.yaml").body).unwrap();
    let entries = load_index_as_helm_does(&text);
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["good"], "{text}");
    assert!(
        !text.contains("x-extension"),
        "unknown fields are dropped: {text}"
    );
    assert_eq!(get(s.addr, "/charts/bad-1.0.0.tgz").status, 404);
    // Still a registry artifact.
    assert_eq!(get(s.addr, "/v2/charts/bad/manifests/1.0.0").status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.stderr().contains("charts/bad:1.0.0") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stderr = s.stderr();
    assert!(
        stderr.contains("warning: chart charts/bad:1.0.0 is left out of /charts/index.yaml")
            && stderr.contains("`keywords` is not a list"),
        "{stderr}"
    );
}

#[test]
fn a_layout_without_bundle_json_answers_charts_and_files_with_404_saying_why() {
    let t = tempfile::tempdir().unwrap();
    let mut l = build::LayoutBuilder::new(&t.path().join("layout"));
    let img = build::multi_arch(&mut l, 3, 64);
    l.tag(&img, "docker.io/library/x:1");
    let dir = l.finish();
    let s = ServeProcess::start(&dir, &[], None);
    for path in ["/charts/index.yaml", "/files/x"] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("has no bundle.json"),
            "{path}"
        );
    }
    assert_eq!(get(s.addr, "/v2/library/x/manifests/1").status, 200);
}
