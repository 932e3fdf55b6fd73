//! Signatures, attestations and SBOMs travel with their images: found at
//! pack time through the referrers tag schema (distribution 2.8 has no
//! referrers API), cosign's tags, and `ferry serve`'s referrers API;
//! carried unchanged; checked by verify; pushed by load; answered by serve.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ferry::digest::Digest;
use serde_json::Value;
use support::push::{self, digest_of, push_image, Artifact, Pushed};
use support::registry::DockerRegistry;
use support::*;

const SPDX: &str = "application/spdx+json";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A cosign-style `.sig` manifest for `subject` (no `subject` field: the
/// tag ties it): an image config and one simple-signing payload layer
/// with a (here meaningless) signature annotation.
fn cosign_sig(subject: &Digest, reference: &str) -> Artifact {
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": subject.to_string()},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&payload).to_string()]}
    }))
    .unwrap();
    let mut layer = push::desc(SIMPLESIGNING, &payload);
    layer["annotations"] = serde_json::json!({"dev.cosignproject.cosign/signature": "MEUCIQDfake"});
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": push::desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [layer],
    });
    Artifact {
        manifest: serde_json::to_vec(&m).unwrap(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        blobs: vec![config, payload],
    }
}

/// Pushes `referrers` of `subject` and the tag schema's fallback index
/// listing them (what an OCI 1.1 client does on a registry without the
/// referrers API).
fn push_referrers(host: &str, repo: &str, subject: &Digest, referrers: &[(&Artifact, &str)]) {
    for (a, _) in referrers {
        a.push(host, repo, None);
    }
    let index = push::index(referrers.iter().map(|(a, t)| push::listed(a, t)).collect());
    index.push(host, repo, Some(&format!("sha256-{}", subject.hex())));
}

fn pack(spec: &Path, out: &Path, cache: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("--quiet")
        .arg("pack")
        .arg(spec)
        .arg("-o")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .arg("--json")
        .args(args)
        .env(
            "DOCKER_CONFIG",
            spec.parent().unwrap().join("no-docker-config"),
        )
        .stdin(Stdio::null());
    run(&mut cmd)
}

/// The JSON summary of a command that must succeed.
fn json_ok(out: Out, what: &str) -> Value {
    let stdout = out.expect_ok(what);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// A registry holding `app:1.0` with a `.sig` and `.att` on its index, an
/// SBOM referrer on its amd64 manifest, and a signature on that SBOM.
struct Signed {
    _registry: DockerRegistry,
    host: String,
    image: Pushed,
    sig: Artifact,
    att: Artifact,
    sbom: Artifact,
    sbom_sig: Artifact,
}

fn signed_registry(dir: &Path) -> Signed {
    let registry = DockerRegistry::start(&dir.join("registry"), false);
    let host = registry.host();
    let image = push_image(dir, &host, "library/app", "1.0", 40);
    let index = digest_of(&image.index);
    let sig = cosign_sig(&index, &format!("{host}/library/app"));
    sig.push(
        &host,
        "library/app",
        Some(&format!("sha256-{}.sig", index.hex())),
    );
    let att = push::referrer(
        &image.index,
        "application/vnd.dsse.envelope.v1+json",
        "application/vnd.dsse.envelope.v1+json",
        br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#,
    );
    att.push(
        &host,
        "library/app",
        Some(&format!("sha256-{}.att", index.hex())),
    );
    let sbom = push::referrer(&image.amd64, SPDX, SPDX, br#"{"spdxVersion":"SPDX-2.3"}"#);
    push_referrers(
        &host,
        "library/app",
        &digest_of(&image.amd64),
        &[(&sbom, SPDX)],
    );
    let sbom_desc = push::desc(&sbom.media_type, &sbom.manifest);
    let sbom_sig = push::referrer(
        &sbom_desc,
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#,
    );
    push_referrers(
        &host,
        "library/app",
        &sbom.digest(),
        &[(&sbom_sig, "application/vnd.dev.sigstore.bundle.v0.3+json")],
    );
    Signed {
        _registry: registry,
        host,
        image,
        sig,
        att,
        sbom,
        sbom_sig,
    }
}

fn spec(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("ferry.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

fn bundle_json(archive: &Path) -> Value {
    bundle_of(&read_members(archive))
}

fn index_json(archive: &Path) -> Value {
    let members = read_members(archive);
    let m = members.iter().find(|m| m.name == "index.json").unwrap();
    serde_json::from_slice(&m.data).unwrap()
}

#[test]
fn signatures_attestations_and_sboms_travel_with_their_image() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let spec = spec(
        t.path(),
        &format!("images:\n  - {}/library/app:1.0\n", s.host),
    );
    let out = t.path().join("b.tar");
    let summary = json_ok(pack(&spec, &out, &t.path().join("cache"), &[]), "pack");
    let refs = summary["referrers"].as_array().unwrap();
    assert_eq!(refs.len(), 4, "{refs:#?}");
    let by_digest = |a: &Artifact| {
        refs.iter()
            .find(|r| r["digest"] == a.digest().to_string())
            .unwrap_or_else(|| panic!("{} not carried: {refs:#?}", a.digest()))
            .clone()
    };
    let index = digest_of(&s.image.index);
    let sig = by_digest(&s.sig);
    assert_eq!(sig["kind"], "signature");
    assert_eq!(sig["found"], "cosign-tag");
    assert_eq!(sig["subject"], index.to_string());
    assert_eq!(sig["tag"], format!("sha256-{}.sig", index.hex()));
    let att = by_digest(&s.att);
    assert_eq!(att["kind"], "attestation");
    assert_eq!(att["tag"], format!("sha256-{}.att", index.hex()));
    let sbom = by_digest(&s.sbom);
    assert_eq!(sbom["kind"], "sbom");
    assert_eq!(sbom["found"], "tag-schema");
    assert_eq!(sbom["subject"], s.image.amd64["digest"]);
    assert_eq!(sbom["artifact_type"], SPDX);
    let sbom_sig = by_digest(&s.sbom_sig);
    assert_eq!(sbom_sig["kind"], "signature");
    assert_eq!(sbom_sig["subject"], s.sbom.digest().to_string());

    // bundle.json (format 4) and index.json list them, without names.
    let b = bundle_json(&out);
    assert_eq!(b["format_version"], 4);
    assert_eq!(b["referrers"].as_array().unwrap().len(), 4);
    let idx = index_json(&out);
    let unnamed: Vec<&Value> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["org.opencontainers.image.ref.name"].is_null())
        .collect();
    assert_eq!(unnamed.len(), 4);
    let sbom_entry = unnamed
        .iter()
        .find(|d| d["digest"] == s.sbom.digest().to_string())
        .unwrap();
    assert_eq!(sbom_entry["artifactType"], SPDX);

    // The referrers' manifests travel as their raw bytes.
    let members = read_members(&out);
    for a in [&s.sig, &s.att, &s.sbom, &s.sbom_sig] {
        let m = members
            .iter()
            .find(|m| m.name == a.digest().blob_path())
            .unwrap();
        assert_eq!(m.data, a.manifest);
    }
    ferry(["verify", out.to_str().unwrap()]).expect_ok("verify");

    // inspect lists each under its image, the SBOM's signature too.
    let listing = ferry(["inspect", out.to_str().unwrap()]).expect_ok("inspect");
    for (kind, a) in [
        ("signature", &s.sig),
        ("attestation", &s.att),
        ("sbom", &s.sbom),
        ("signature", &s.sbom_sig),
    ] {
        let reference = match a.digest() {
            d if d == s.sig.digest() => format!("sha256-{}.sig", index.hex()),
            d if d == s.att.digest() => format!("sha256-{}.att", index.hex()),
            d => d.to_string(),
        };
        assert!(
            listing
                .lines()
                .any(|l| l.trim_start().starts_with(kind) && l.contains(&reference)),
            "{kind} {reference} not listed:\n{listing}"
        );
    }
    let j: Value = serde_json::from_str(
        &ferry(["inspect", "--json", out.to_str().unwrap()]).expect_ok("inspect --json"),
    )
    .unwrap();
    let listed = j["referrers"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    let image_ref = format!("{}/library/app:1.0", s.host);
    assert!(
        listed
            .iter()
            .all(|r| r["subject_reference"] == image_ref.as_str()),
        "{listed:#?}"
    );

    // skopeo still reads the image from the plain layout after tar -xf.
    let x = t.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&x)).expect_ok("tar -xf");
    let raw = run(skopeo().args([
        "inspect",
        "--raw",
        &format!("oci:{}:{}/library/app:1.0", x.display(), s.host),
    ]))
    .expect_ok("skopeo inspect");
    assert_eq!(Digest::of(raw.as_bytes()), index);
}

#[test]
fn no_referrers_flag_and_spec_switch_leave_them_behind() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let cache = t.path().join("cache");
    let spec1 = spec(
        t.path(),
        &format!("images:\n  - {}/library/app:1.0\n", s.host),
    );
    let out = t.path().join("a.tar");
    let summary = json_ok(pack(&spec1, &out, &cache, &["--no-referrers"]), "pack");
    assert!(summary["referrers"].is_null() || summary["referrers"].as_array().unwrap().is_empty());
    assert_eq!(bundle_json(&out)["format_version"], 1);
    for body in [
        format!(
            "referrers: false\nimages:\n  - {}/library/app:1.0\n",
            s.host
        ),
        format!(
            "images:\n  - ref: {}/library/app:1.0\n    referrers: false\n",
            s.host
        ),
    ] {
        let spec2 = spec(t.path(), &body);
        let summary = json_ok(pack(&spec2, &out, &cache, &[]), "pack");
        assert!(
            summary["referrers"].as_array().is_none_or(|a| a.is_empty()),
            "{body}: {summary}"
        );
    }
}

#[test]
fn a_platform_filter_carries_the_kept_childs_referrers_and_says_which_are_left() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let spec = spec(
        t.path(),
        &format!(
            "images:\n  - ref: {}/library/app:1.0\n    platforms: [linux/amd64]\n",
            s.host
        ),
    );
    let out = t.path().join("b.tar");
    let o = pack(&spec, &out, &t.path().join("cache"), &[]);
    let stderr = o.stderr.clone();
    let summary = json_ok(o, "pack");
    let refs = summary["referrers"].as_array().unwrap();
    let carried: Vec<&str> = refs.iter().map(|r| r["digest"].as_str().unwrap()).collect();
    // The amd64 manifest is kept, so its SBOM (and the SBOM's signature)
    // travel; the signature and attestation of the old index do not.
    assert_eq!(carried.len(), 2, "{refs:#?}");
    assert!(carried.contains(&s.sbom.digest().to_string().as_str()));
    assert!(carried.contains(&s.sbom_sig.digest().to_string().as_str()));
    let index = digest_of(&s.image.index);
    assert!(
        stderr.contains("1 signature, 1 attestation") && stderr.contains(&index.to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("Keep all platforms"), "{stderr}");
    ferry(["verify", out.to_str().unwrap()]).expect_ok("verify");
}

/// Asks a server's referrers API; (status, headers, index).
fn referrers_api(
    host: &str,
    repo: &str,
    subject: &Digest,
    query: &str,
) -> (u16, Vec<(String, String)>, Value) {
    let (status, headers, body) = push::request(
        host,
        "GET",
        &format!("/v2/{repo}/referrers/{subject}{query}"),
        &[],
        &[],
    );
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, v)
}

fn listed_digests(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn serve_answers_the_referrers_api_and_pack_discovers_through_it() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let spec1 = spec(
        t.path(),
        &format!("images:\n  - {}/library/app:1.0\n", s.host),
    );
    let out = t.path().join("b.tar");
    json_ok(pack(&spec1, &out, &t.path().join("cache"), &[]), "pack");
    let served = ServeProcess::start(&out, &[], None);
    let host = served.addr.to_string();
    let amd64 = digest_of(&s.image.amd64);
    let index = digest_of(&s.image.index);

    // The SBOM on the amd64 manifest, with its artifact type; the filter
    // applies and says so.
    let (status, headers, list) = referrers_api(&host, "library/app", &amd64, "");
    assert_eq!(status, 200);
    assert_eq!(listed_digests(&list), vec![s.sbom.digest().to_string()]);
    assert_eq!(list["manifests"][0]["artifactType"], SPDX);
    assert_eq!(
        list["manifests"][0]["annotations"]["org.opencontainers.image.created"],
        "2026-01-01T00:00:00Z"
    );
    assert!(!headers.iter().any(|(k, _)| k == "oci-filters-applied"));
    let (_, headers, list) = referrers_api(
        &host,
        "library/app",
        &amd64,
        "?artifactType=application%2Fspdx%2Bjson",
    );
    assert_eq!(listed_digests(&list).len(), 1);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "oci-filters-applied" && v == "artifactType"));
    let (_, _, list) = referrers_api(&host, "library/app", &amd64, "?artifactType=text%2Fplain");
    assert!(listed_digests(&list).is_empty());
    // A referrer of a referrer, and a digest with none (200, empty).
    let (_, _, list) = referrers_api(&host, "library/app", &s.sbom.digest(), "");
    assert_eq!(listed_digests(&list), vec![s.sbom_sig.digest().to_string()]);
    let (status, _, list) = referrers_api(&host, "library/app", &Digest::of(b"none"), "");
    assert_eq!(status, 200);
    assert!(listed_digests(&list).is_empty());
    let (status, _, _) = push::request(
        &host,
        "GET",
        "/v2/library/app/referrers/sha256:nothex",
        &[],
        &[],
    );
    assert_eq!(status, 400);
    // cosign's tags and the fallback tag answer too.
    let sig =
        push::get_manifest(&host, "library/app", &format!("sha256-{}.sig", index.hex())).unwrap();
    assert_eq!(sig, s.sig.manifest);
    let fallback: Value = serde_json::from_slice(
        &push::get_manifest(&host, "library/app", &format!("sha256-{}", amd64.hex())).unwrap(),
    )
    .unwrap();
    assert_eq!(listed_digests(&fallback), vec![s.sbom.digest().to_string()]);

    // Packing from ferry serve finds the referrers through its API.
    let spec2 = spec(t.path(), &format!("images:\n  - {host}/library/app:1.0\n"));
    let again = t.path().join("again.tar");
    let summary = json_ok(
        pack(&spec2, &again, &t.path().join("cache2"), &[]),
        "pack from serve",
    );
    let refs = summary["referrers"].as_array().unwrap();
    assert_eq!(refs.len(), 4, "{refs:#?}");
    let sbom = refs
        .iter()
        .find(|r| r["digest"] == s.sbom.digest().to_string())
        .unwrap();
    assert_eq!(sbom["found"], "referrers-api");
    let sig = refs
        .iter()
        .find(|r| r["digest"] == s.sig.digest().to_string())
        .unwrap();
    assert_eq!(sig["found"], "cosign-tag");
}

fn load(archive: &Path, host: &str, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["--quiet", "load"])
        .arg(archive)
        .args(["--registry", host, "--json"])
        .args(args)
        .env("DOCKER_CONFIG", archive.with_file_name("no-docker-config"))
        .stdin(Stdio::null());
    run(&mut cmd)
}

#[test]
fn load_pushes_referrers_unchanged_after_their_subjects_and_keeps_the_fallback_indexes() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let spec1 = spec(
        t.path(),
        &format!("images:\n  - {}/library/app:1.0\n", s.host),
    );
    let out = t.path().join("b.tar");
    json_ok(pack(&spec1, &out, &t.path().join("cache"), &[]), "pack");

    let target = DockerRegistry::start(&t.path().join("target"), false);
    let host = target.host();
    // The target already holds another signature under the .sig tag (as
    // when someone signed the image there too), and a fallback index for
    // the amd64 manifest listing something else.
    let index = digest_of(&s.image.index);
    let amd64 = digest_of(&s.image.amd64);
    let theirs = cosign_sig(&index, "elsewhere/app");
    let mut theirs_m: Value = serde_json::from_slice(&theirs.manifest).unwrap();
    theirs_m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"] =
        "MEUCIQDother".into();
    let theirs = Artifact {
        manifest: serde_json::to_vec(&theirs_m).unwrap(),
        ..theirs
    };
    theirs.push(
        &host,
        "library/app",
        Some(&format!("sha256-{}.sig", index.hex())),
    );
    let other = push::referrer(&s.image.amd64, "text/plain", "text/plain", b"hello");
    push_referrers(&host, "library/app", &amd64, &[(&other, "text/plain")]);

    let report = json_ok(load(&out, &host, &[]), "load");
    let refs = report["referrers"].as_array().unwrap();
    assert_eq!(refs.len(), 4, "{report:#}");
    assert!(refs.iter().all(|r| r["ok"] == true), "{report:#}");
    // Every referrer manifest is at the target with the source's digest.
    for a in [&s.sig, &s.att, &s.sbom, &s.sbom_sig] {
        let got = push::get_manifest(&host, "library/app", &a.digest().to_string())
            .unwrap_or_else(|| panic!("{} missing at the target", a.digest()));
        assert_eq!(got, a.manifest);
    }
    // The .att tag is the source's; the .sig tag was merged, not refused.
    let att =
        push::get_manifest(&host, "library/app", &format!("sha256-{}.att", index.hex())).unwrap();
    assert_eq!(att, s.att.manifest);
    let sig: Value = serde_json::from_slice(
        &push::get_manifest(&host, "library/app", &format!("sha256-{}.sig", index.hex())).unwrap(),
    )
    .unwrap();
    let sigs: Vec<&str> = sig["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(sigs, vec!["MEUCIQDother", "MEUCIQDfake"]);
    // Its config is rebuilt as cosign rebuilds it: one diff_id per layer.
    let (status, _, config) = push::request(
        &host,
        "GET",
        &format!(
            "/v2/library/app/blobs/{}",
            sig["config"]["digest"].as_str().unwrap()
        ),
        &[],
        &[],
    );
    assert_eq!(status, 200);
    let config: Value = serde_json::from_slice(&config).unwrap();
    let layer_digests: Vec<&Value> = sig["layers"]
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
    assert_eq!(diff_ids, layer_digests);
    let notes: Vec<String> = refs
        .iter()
        .flat_map(|r| r["notes"].as_array().cloned().unwrap_or_default())
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("merged 1 layer")),
        "{notes:#?}"
    );
    // The tag schema's indexes list the referrers: the amd64 one merged
    // with what was there, the SBOM's made.
    let fallback = |d: &Digest| -> Vec<String> {
        let b = push::get_manifest(&host, "library/app", &format!("sha256-{}", d.hex())).unwrap();
        listed_digests(&serde_json::from_slice(&b).unwrap())
    };
    assert_eq!(
        fallback(&amd64),
        vec![other.digest().to_string(), s.sbom.digest().to_string()]
    );
    assert_eq!(
        fallback(&s.sbom.digest()),
        vec![s.sbom_sig.digest().to_string()]
    );
    let fb: Value = serde_json::from_slice(
        &push::get_manifest(&host, "library/app", &format!("sha256-{}", amd64.hex())).unwrap(),
    )
    .unwrap();
    assert_eq!(fb["manifests"][1]["artifactType"], SPDX);

    // A second load pushes nothing.
    let again = json_ok(load(&out, &host, &[]), "load again");
    assert_eq!(again["counts"]["manifests_pushed"], 0, "{again:#}");
    assert_eq!(again["counts"]["uploaded"], 0, "{again:#}");

    // And a pack from the target finds them all again, the same bytes.
    let spec2 = spec(t.path(), &format!("images:\n  - {host}/library/app:1.0\n"));
    let summary = json_ok(
        pack(
            &spec2,
            &t.path().join("c.tar"),
            &t.path().join("cache2"),
            &[],
        ),
        "pack",
    );
    let found: Vec<&str> = summary["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    for a in [&s.att, &s.sbom, &s.sbom_sig] {
        assert!(
            found.contains(&a.digest().to_string().as_str()),
            "{found:?}"
        );
    }
}

/// Packs `app:1.0` from `s` through a proxy answering every referrers API
/// request with `answer`; the pack's output.
fn pack_through_referrers_answer(
    t: &Path,
    s: &Signed,
    answer: fn(&str) -> (String, String, Vec<u8>),
) -> (Out, support::registry::FaultProxy) {
    use support::registry::{Fault, FaultProxy};
    let proxy = FaultProxy::start(
        s.host.parse().unwrap(),
        "/referrers/",
        Fault::Answer(answer),
        u64::MAX,
    );
    let spec = spec(t, &format!("images:\n  - {}/library/app:1.0\n", proxy.addr));
    let out = pack(&spec, &t.join("b.tar"), &t.join("cache"), &[]);
    (out, proxy)
}

#[test]
fn a_referrers_answer_that_is_not_an_index_is_refused_naming_the_subject() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let (out, _p) = pack_through_referrers_answer(t.path(), &s, |_| {
        (
            "200 OK".into(),
            "Content-Type: application/vnd.oci.image.index.v1+json\r\n".into(),
            b"<html>not json</html>".to_vec(),
        )
    });
    let err = out.expect_fail("pack");
    assert!(
        err.contains("listing the referrers of library/app@sha256:")
            && err.contains("is not an image index"),
        "{err}"
    );
    assert!(!t.path().join("b.tar").exists());
}

#[test]
fn ten_thousand_referrers_are_refused_at_the_bound() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let (out, proxy) = pack_through_referrers_answer(t.path(), &s, |_| {
        let manifests: Vec<Value> = (0..10_000u32)
            .map(|i| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": Digest::of(&i.to_le_bytes()).to_string(),
                    "size": 100,
                    "artifactType": "application/spdx+json",
                })
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        (
            "200 OK".into(),
            "Content-Type: application/vnd.oci.image.index.v1+json\r\n".into(),
            body,
        )
    });
    let err = out.expect_fail("pack");
    assert!(err.contains("more than 1000 referrers"), "{err}");
    // Refused from the list: none of the 10,000 was fetched.
    let heads = proxy.heads.lock().unwrap();
    assert!(
        heads
            .iter()
            .filter(|(_, h)| h.contains("/manifests/sha256:"))
            .count()
            < 10,
        "{}",
        heads.len()
    );
}

#[test]
fn a_referrers_page_that_links_back_to_itself_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let (out, proxy) = pack_through_referrers_answer(t.path(), &s, |line| {
        let path = line.split(' ').nth(1).unwrap_or("/");
        let base = path.split('?').next().unwrap_or(path);
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec();
        (
            "200 OK".into(),
            format!("Content-Type: application/vnd.oci.image.index.v1+json\r\nLink: <{base}?p=1>; rel=\"next\"\r\n"),
            body,
        )
    });
    let err = out.expect_fail("pack");
    assert!(err.contains("was read already"), "{err}");
    assert!(proxy.hits.load(std::sync::atomic::Ordering::Relaxed) < 10);
}

#[test]
fn a_referrer_listing_its_own_subject_or_itself_does_not_loop() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    // Every subject is answered with a list naming the image's own index
    // and amd64 manifest: documents already taken, so nothing is fetched
    // twice and the walk ends.
    fn answer(_: &str) -> (String, String, Vec<u8>) {
        let index = std::env::var("FERRY_TEST_SELF").unwrap();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{index}]}}"#
        );
        (
            "200 OK".into(),
            "Content-Type: application/vnd.oci.image.index.v1+json\r\n".into(),
            body.into_bytes(),
        )
    }
    // SAFETY: set before any thread of this test reads it; the proxy runs
    // in this process.
    unsafe {
        std::env::set_var(
            "FERRY_TEST_SELF",
            serde_json::to_string(&s.image.index).unwrap(),
        );
    }
    let (out, proxy) = pack_through_referrers_answer(t.path(), &s, answer);
    let summary = json_ok(out, "pack");
    // Through the API only (it answers), the cosign tags still count.
    let refs = summary["referrers"].as_array().unwrap();
    assert!(refs.iter().all(|r| r["found"] == "cosign-tag"), "{refs:#?}");
    assert!(proxy.hits.load(std::sync::atomic::Ordering::Relaxed) < 20);
}

mod signed {
    //! `verify:` at pack and `ferry verify --cosign-key/--cosign-ca`
    //! offline, with signatures in cosign's formats made by keys and a CA
    //! the tests generate.

    use super::*;
    use support::cosign::{self as cs, Ca, KeyPair};

    fn descriptor(v: &Value) -> ferry::oci::Descriptor {
        ferry::oci::Descriptor::new(
            v["mediaType"].as_str().unwrap(),
            digest_of(v),
            v["size"].as_u64().unwrap(),
        )
    }

    struct World {
        _t: tempfile::TempDir,
        dir: PathBuf,
        _registry: DockerRegistry,
        host: String,
        key: KeyPair,
        other: KeyPair,
        ca: Ca,
    }

    fn world() -> World {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_owned();
        let registry = DockerRegistry::start(&dir.join("registry"), false);
        let host = registry.host();
        for d in ["key", "other"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let key = KeyPair::generate_p256(&dir.join("key"));
        let other = KeyPair::generate_p256(&dir.join("other"));
        let ca = Ca::generate(&dir.join("ca"));
        World {
            _t: t,
            dir,
            _registry: registry,
            host,
            key,
            other,
            ca,
        }
    }

    /// Packs `body` (a spec) with `args`; the output.
    fn pack_spec(w: &World, body: &str, args: &[&str]) -> (Out, PathBuf) {
        let spec = spec(&w.dir, body);
        let out = w.dir.join("b.tar");
        let _ = std::fs::remove_file(&out);
        (pack(&spec, &out, &w.dir.join("cache"), args), out)
    }

    fn verify_with(archive: &Path, args: &[&str]) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(["--quiet", "verify"]).arg(archive).args(args);
        run(&mut c)
    }

    #[test]
    fn a_good_key_signature_passes_at_pack_and_offline_and_another_key_fails_naming_both() {
        let w = world();
        let image = push_image(&w.dir, &w.host, "library/app", "1.0", 50);
        let index = digest_of(&image.index);
        cs::simple_signing(&index, &format!("{}/library/app", w.host), &w.key, None).push(
            &w.host,
            "library/app",
            &format!("sha256-{}.sig", index.hex()),
        );
        let key = w.key.public.display().to_string();
        let other = w.other.public.display().to_string();
        let (o, out) = pack_spec(
            &w,
            &format!(
                "images:\n  - ref: {}/library/app:1.0\n    verify: {{cosign_key: {key}}}\n",
                w.host
            ),
            &[],
        );
        let summary = json_ok(o, "pack with verify");
        assert_eq!(summary["signatures"][0]["form"], "simple-signing");
        assert_eq!(
            summary["signatures"][0]["signer"],
            key.as_str(),
            "{summary:#}"
        );
        let b = bundle_json(&out);
        let sig = b["referrers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "signature")
            .unwrap();
        // The key's file name, not its path: the archive's bytes do not
        // depend on where the key was.
        assert_eq!(sig["verified_by"], "key cosign-0.pub", "{b:#}");

        let ok = verify_with(&out, &["--cosign-key", &key]).expect_ok("verify --cosign-key");
        assert!(
            ok.contains("signature OK") && ok.contains("library/app:1.0"),
            "{ok}"
        );
        // A compressed archive (member-aligned frames) is checked by
        // position too.
        let zst = w.dir.join("b.tar.zst");
        json_ok(
            pack(
                &spec(
                    &w.dir,
                    &format!("images:\n  - {}/library/app:1.0\n", w.host),
                ),
                &zst,
                &w.dir.join("cache"),
                &["--compress", "zstd"],
            ),
            "pack --compress",
        );
        verify_with(&zst, &["--cosign-key", &key]).expect_ok("verify --cosign-key on zstd");
        let j = verify_with(&out, &["--cosign-key", &key, "--json"]).expect_ok("verify --json");
        let j: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(j["signatures"][0]["form"], "simple-signing");

        // Another key: offline, and at pack (nothing written).
        let bad = verify_with(&out, &["--cosign-key", &other]).expect_fail("verify other key");
        assert!(
            bad.contains("library/app:1.0")
                && bad.contains(&other)
                && bad.contains("does not verify"),
            "{bad}"
        );
        let (o, out2) = pack_spec(
            &w,
            &format!("images:\n  - {}/library/app:1.0\n", w.host),
            &["--cosign-key", &other],
        );
        let err = o.expect_fail("pack with another key");
        assert!(
            err.contains("library/app:1.0")
                && err.contains(&other)
                && err.contains("does not verify"),
            "{err}"
        );
        assert!(!out2.exists());
    }

    #[test]
    fn a_payload_for_another_digest_and_an_unsigned_image_fail_naming_the_image() {
        let w = world();
        let a = push_image(&w.dir, &w.host, "library/a", "1", 60);
        let b = push_image(&w.dir, &w.host, "library/b", "1", 61);
        let _c = push_image(&w.dir, &w.host, "library/c", "1", 62);
        // b's .sig holds a good signature of a's digest.
        let (ia, ib) = (digest_of(&a.index), digest_of(&b.index));
        cs::simple_signing(&ia, "x/a", &w.key, None).push(
            &w.host,
            "library/b",
            &format!("sha256-{}.sig", ib.hex()),
        );
        let key = w.key.public.display().to_string();
        let (o, _) = pack_spec(
            &w,
            &format!("images:\n  - {}/library/b:1\n", w.host),
            &["--cosign-key", &key],
        );
        let err = o.expect_fail("pack b");
        assert!(
            err.contains("library/b:1") && err.contains(&format!("is for {ia}, not {ib}")),
            "{err}"
        );
        let (o, _) = pack_spec(
            &w,
            &format!("images:\n  - {}/library/c:1\n", w.host),
            &["--cosign-key", &key],
        );
        let err = o.expect_fail("pack c");
        assert!(
            err.contains("library/c:1") && err.contains("no signature found"),
            "{err}"
        );
        // Packed without the check, verify offline says the same.
        let (o, out) = pack_spec(&w, &format!("images:\n  - {}/library/c:1\n", w.host), &[]);
        json_ok(o, "pack c unchecked");
        let err = verify_with(&out, &["--cosign-key", &key]).expect_fail("verify c");
        assert!(
            err.contains("library/c:1") && err.contains("no signature found"),
            "{err}"
        );
    }

    #[test]
    fn tampered_signature_bytes_in_the_archive_are_caught_by_the_member_hashes() {
        let w = world();
        let image = push_image(&w.dir, &w.host, "library/app", "1.0", 70);
        let index = digest_of(&image.index);
        let sig = cs::simple_signing(&index, "x/app", &w.key, None);
        sig.push(
            &w.host,
            "library/app",
            &format!("sha256-{}.sig", index.hex()),
        );
        let (o, out) = pack_spec(
            &w,
            &format!("images:\n  - {}/library/app:1.0\n", w.host),
            &[],
        );
        json_ok(o, "pack");
        // Flip one byte of the signature annotation inside the archive.
        let mut members = read_members(&out);
        let m = members
            .iter_mut()
            .find(|m| m.name == sig.digest().blob_path())
            .unwrap();
        let at = m.data.windows(9).position(|w| w == b"signature").unwrap() + 20;
        m.data[at] ^= 1;
        write_raw_tar(&out, &members, true);
        let err = verify_with(&out, &["--cosign-key", &w.key.public.display().to_string()])
            .expect_fail("verify tampered");
        assert!(err.contains(&sig.digest().blob_path()), "{err}");
    }

    #[test]
    fn a_ca_signed_certificate_passes_with_its_identity_and_fails_with_another() {
        let w = world();
        let image = push_image(&w.dir, &w.host, "vertex/synapse", "v2.1.3", 80);
        let index = digest_of(&image.index);
        let cert =
            w.ca.issue_code_signing("Vertex Release", "release@vertex.example");
        cs::simple_signing(
            &index,
            "docker.io/vertexproject/synapse",
            &cert.key,
            Some((&cert, &w.ca)),
        )
        .push(
            &w.host,
            "vertex/synapse",
            &format!("sha256-{}.sig", index.hex()),
        );
        let ca = w.ca.cert.display().to_string();
        let (o, out) = pack_spec(
            &w,
            &format!(
                "images:\n  - ref: {}/vertex/synapse:v2.1.3\n    verify: {{cosign_ca: {ca}, identity: release@vertex.example}}\n",
                w.host
            ),
            &[],
        );
        let summary = json_ok(o, "pack with a CA");
        assert!(
            summary["signatures"][0]["checked_at"].is_string(),
            "{summary:#}"
        );
        assert_eq!(
            summary["signatures"][0]["docker_reference"],
            "docker.io/vertexproject/synapse"
        );
        verify_with(
            &out,
            &[
                "--cosign-ca",
                &ca,
                "--cosign-identity",
                "release@vertex.example",
            ],
        )
        .expect_ok("verify --cosign-ca");
        verify_with(
            &out,
            &[
                "--cosign-ca",
                &ca,
                "--cosign-identity-regexp",
                r".*@vertex\.example",
            ],
        )
        .expect_ok("verify --cosign-identity-regexp");
        verify_with(
            &out,
            &["--cosign-ca", &ca, "--cosign-identity-regexp", "release"],
        )
        .expect_fail("a pattern must match the whole identity");
        let err = verify_with(
            &out,
            &[
                "--cosign-ca",
                &ca,
                "--cosign-identity",
                "someone@else.example",
            ],
        )
        .expect_fail("verify another identity");
        assert!(err.contains("someone@else.example"), "{err}");
        // Another CA refuses it at pack.
        let other_ca = Ca::generate(&w.dir.join("ca2"));
        let (o, _) = pack_spec(
            &w,
            &format!(
                "images:\n  - ref: {}/vertex/synapse:v2.1.3\n    verify: {{cosign_ca: {}}}\n",
                w.host,
                other_ca.cert.display()
            ),
            &[],
        );
        let err = o.expect_fail("pack with another CA");
        assert!(err.contains("does not chain"), "{err}");
    }

    #[test]
    fn a_sigstore_bundle_referrer_verifies_and_a_platform_filter_is_refused_with_advice() {
        let w = world();
        let image = push_image(&w.dir, &w.host, "org/prism", "1.4", 90);
        let index = digest_of(&image.index);
        let bundle = cs::sigstore_bundle_referrer(&descriptor(&image.index), &w.key);
        for (_, b) in bundle.blobs() {
            push::blob(&w.host, "org/prism", &b);
        }
        push::manifest(
            &w.host,
            "org/prism",
            &bundle.digest().to_string(),
            "application/vnd.oci.image.manifest.v1+json",
            &bundle.manifest,
        );
        let mut listed = push::desc(
            "application/vnd.oci.image.manifest.v1+json",
            &bundle.manifest,
        );
        listed["artifactType"] = "application/vnd.dev.sigstore.bundle.v0.3+json".into();
        push::manifest(
            &w.host,
            "org/prism",
            &format!("sha256-{}", index.hex()),
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [listed],
            }))
            .unwrap(),
        );
        let key = w.key.public.display().to_string();
        let body = format!(
            "images:\n  - ref: {}/org/prism:1.4\n    verify: {{cosign_key: {key}}}\n",
            w.host
        );
        let (o, out) = pack_spec(&w, &body, &[]);
        let summary = json_ok(o, "pack a bundle-signed image");
        assert_eq!(summary["signatures"][0]["form"], "sigstore-bundle");
        verify_with(&out, &["--cosign-key", &key]).expect_ok("verify bundle");

        // A platform filter makes a new index the signature cannot cover.
        let filtered = format!("{body}    platforms: [linux/amd64]\n");
        let (o, out) = pack_spec(&w, &filtered, &[]);
        let err = o.expect_fail("pack filtered");
        assert!(
            err.contains("org/prism:1.4")
                && err.contains("keep all platforms")
                && err.contains(&index.to_string()),
            "{err}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn a_platform_filtered_image_passes_when_each_kept_platform_is_signed() {
        let w = world();
        let image = push_image(&w.dir, &w.host, "org/prism", "2.0", 95);
        let amd64 = digest_of(&image.amd64);
        cs::simple_signing(&amd64, "x/prism", &w.key, None).push(
            &w.host,
            "org/prism",
            &format!("sha256-{}.sig", amd64.hex()),
        );
        let key = w.key.public.display().to_string();
        let (o, out) = pack_spec(
            &w,
            &format!(
                "images:\n  - ref: {}/org/prism:2.0\n    platforms: [linux/amd64]\n    verify: {{cosign_key: {key}}}\n",
                w.host
            ),
            &[],
        );
        json_ok(o, "pack: the kept platform is signed");
        verify_with(&out, &["--cosign-key", &key]).expect_ok("verify the filtered image");
    }

    #[test]
    fn a_referrers_artifact_type_that_disagrees_with_its_manifest_fails_verify() {
        let t = tempfile::tempdir().unwrap();
        let s = signed_registry(t.path());
        let spec1 = spec(
            t.path(),
            &format!("images:\n  - {}/library/app:1.0\n", s.host),
        );
        let out = t.path().join("b.tar");
        json_ok(pack(&spec1, &out, &t.path().join("cache"), &[]), "pack");
        let mut members = read_members(&out);
        let mut b = bundle_of(&members);
        for r in b["referrers"].as_array_mut().unwrap() {
            if r["digest"] == s.sbom.digest().to_string() {
                r["artifact_type"] = "application/vnd.cncf.notary.signature".into();
            }
        }
        set_bundle(&mut members, &b);
        write_raw_tar(&out, &members, true);
        let err = verify_with(&out, &[]).expect_fail("verify");
        assert!(
            err.contains("artifact type") && err.contains(&s.sbom.digest().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_fallback_tag_holding_a_manifest_is_refused_naming_the_tag() {
    let t = tempfile::tempdir().unwrap();
    let registry = DockerRegistry::start(&t.path().join("registry"), false);
    let host = registry.host();
    let image = push_image(t.path(), &host, "library/app", "1.0", 45);
    let amd64 = digest_of(&image.amd64);
    // Not an index: an SBOM manifest where the tag schema's index belongs.
    let sbom = push::referrer(&image.amd64, SPDX, SPDX, b"{}");
    sbom.push(
        &host,
        "library/app",
        Some(&format!("sha256-{}", amd64.hex())),
    );
    let spec = spec(t.path(), &format!("images:\n  - {host}/library/app:1.0\n"));
    let out = t.path().join("b.tar");
    let err = pack(&spec, &out, &t.path().join("cache"), &[]).expect_fail("pack");
    assert!(
        err.contains(&format!("library/app:sha256-{}", amd64.hex()))
            && err.contains("is a manifest, not an index"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_cosign_tag_at_the_target_holding_an_image_is_left_alone_without_force() {
    let t = tempfile::tempdir().unwrap();
    let s = signed_registry(t.path());
    let spec1 = spec(
        t.path(),
        &format!("images:\n  - {}/library/app:1.0\n", s.host),
    );
    let out = t.path().join("b.tar");
    json_ok(pack(&spec1, &out, &t.path().join("cache"), &[]), "pack");
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let host = target.host();
    let index = digest_of(&s.image.index);
    let tag = format!("sha256-{}.sig", index.hex());
    // An ordinary image under the signature's tag.
    push_image(t.path(), &host, "library/app", "other", 46);
    let image_bytes = push::get_manifest(&host, "library/app", "other").unwrap();
    push::manifest(
        &host,
        "library/app",
        &tag,
        "application/vnd.oci.image.index.v1+json",
        &image_bytes,
    );
    let o = load(&out, &host, &[]);
    let report: Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(!o.ok(), "{report:#}");
    let failed = report["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tag"] == tag.as_str())
        .unwrap();
    assert!(
        failed["error"].as_str().unwrap().contains("--force"),
        "{failed:#}"
    );
    assert_eq!(
        push::get_manifest(&host, "library/app", &tag).unwrap(),
        image_bytes,
        "the tag was moved"
    );
    // --force replaces it.
    json_ok(load(&out, &host, &["--force"]), "load --force");
    assert_eq!(
        push::get_manifest(&host, "library/app", &tag).unwrap(),
        s.sig.manifest
    );
}
