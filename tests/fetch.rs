//! `ferry pack` of registry images, against the real distribution registry
//! (`docker-registry`) filled by skopeo: exact digests, platform filtering,
//! auth, the cache and resuming, and faults injected by a proxy (503, a
//! reset mid-blob, damaged bytes, a missing manifest).

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::registry::{CuttingProxy, DockerRegistry, Fault, FaultProxy, PASSWORD, USER};
use support::*;

/// Images in a layout: a multi-arch OCI index, and two Docker schema-2
/// images sharing a layer.
fn source_layout(dir: &Path, layer_size: usize) -> PathBuf {
    let mut l = LayoutBuilder::new(dir);
    let app = build::multi_arch(&mut l, 31, layer_size);
    l.tag(&app, "app");
    let base = build::layer(&[("etc/shared", &build::pseudo_random(200, layer_size))]);
    let x = build::layer(&[("bin/x", &build::pseudo_random(201, layer_size))]);
    let y = build::layer(&[("bin/y", &build::pseudo_random(202, layer_size))]);
    let a = l.image(Flavour::Docker, "linux", "amd64", &[base.clone(), x]);
    l.tag(&a, "tool");
    let b = l.image(Flavour::Docker, "linux", "amd64", &[base, y]);
    l.tag(&b, "user");
    l.finish()
}

/// skopeo's source for image `name` of the layout: the OCI layout itself
/// for OCI media types, else a `dir:` copy (skopeo's OCI transport only
/// lists OCI descriptors).
fn skopeo_source(layout: &Path, name: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap();
    if d["mediaType"]
        .as_str()
        .unwrap()
        .starts_with("application/vnd.oci.")
    {
        return format!("oci:{}:{name}", layout.display());
    }
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let dir = layout.with_file_name(format!("dir-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    let manifest = std::fs::read(blob(d["digest"].as_str().unwrap())).unwrap();
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
    for b in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        let digest = b["digest"].as_str().unwrap();
        std::fs::copy(blob(digest), dir.join(digest.trim_start_matches("sha256:"))).unwrap();
    }
    format!("dir:{}", dir.display())
}

/// Pushes the layout's images with skopeo (digests preserved).
fn fill_registry(layout: &Path, host: &str) {
    fill_registry_as(layout, host, None)
}

fn fill_registry_as(layout: &Path, host: &str, creds: Option<&str>) {
    for (name, target) in [
        ("app", "library/app:1.0"),
        ("tool", "team/tool:2"),
        ("user", "team/user:3"),
    ] {
        let mut c = skopeo();
        c.args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(creds) = creds {
            c.args(["--dest-creds", creds]);
        }
        run(c.args([
            &skopeo_source(layout, name),
            &format!("docker://{host}/{target}"),
        ]))
        .expect_ok(&format!("skopeo copy {name}"));
    }
}

fn spec(dir: &Path, host: &str) -> PathBuf {
    let p = dir.join("ferry.yaml");
    std::fs::write(
        &p,
        format!(
            "images:\n  - {host}/library/app:1.0\n  - {host}/team/tool:2\n  - {host}/team/user:3\n"
        ),
    )
    .unwrap();
    p
}

/// `ferry pack SPEC -o OUT --cache CACHE --json ARGS…` with an empty docker
/// config unless `env` sets one.
fn pack(spec: &Path, out: &Path, cache: &Path, args: &[&str], env: &[(&str, &Path)]) -> Out {
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
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

fn registry_digest(reference: &str, creds: Option<&str>) -> String {
    let raw = registry_manifest(reference, creds).expect_ok("skopeo inspect --raw");
    ferry::digest::Digest::of(raw.as_bytes()).to_string()
}

fn summary(out: &Out) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", out.stdout, out.stderr))
}

#[test]
fn pack_from_a_registry_keeps_every_digest_and_verifies() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 32 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let spec = spec(t.path(), &reg.host());
    let (archive, cache) = (t.path().join("b.tar"), t.path().join("cache"));
    let out = pack(&spec, &archive, &cache, &[], &[]);
    let s = summary(&out);
    assert!(out.ok(), "{}", out.stderr);
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");
    for a in s["artifacts"].as_array().unwrap() {
        let r = a["reference"].as_str().unwrap();
        assert_eq!(
            a["digest"].as_str().unwrap(),
            registry_digest(r, None),
            "{r}"
        );
        assert!(
            a.get("source_digest").is_none(),
            "no filter, no new index: {a}"
        );
    }
    assert_eq!(
        s["artifacts"][0]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    // The shared layer is fetched once: 5 blobs for app, 3 for tool and 2
    // more for user (its own layer and config).
    assert_eq!(s["fetched"]["blobs_fetched"], 10);
    assert_eq!(s["fetched"]["blobs_cached"], 0);

    // Again: everything comes from the cache, and the archive is identical.
    let again = t.path().join("again.tar");
    let out = pack(&spec, &again, &cache, &[], &[]);
    assert!(out.ok(), "{}", out.stderr);
    let s = summary(&out);
    assert_eq!(s["fetched"]["blobs_fetched"], 0);
    assert_eq!(s["fetched"]["blobs_cached"], 10);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&again).unwrap()
    );

    // A platform filter writes a new index and records the registry's.
    let one = t.path().join("one.tar");
    let out = pack(&spec, &one, &cache, &["--platform", "linux/arm64"], &[]);
    let msg = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.ok(), "tool and user have no linux/arm64: {msg}");
    assert!(msg.contains("has no linux/arm64 variant"), "{msg}");
    let app_only = t.path().join("app.yaml");
    std::fs::write(
        &app_only,
        format!("images:\n  - {}/library/app:1.0\n", reg.host()),
    )
    .unwrap();
    let out = pack(&app_only, &one, &cache, &["--platform", "linux/arm64"], &[]);
    assert!(out.ok(), "{}", out.stderr);
    let a = &summary(&out)["artifacts"][0];
    assert_eq!(a["platforms"], serde_json::json!(["linux/arm64"]));
    let at_registry = registry_digest(&format!("{}/library/app:1.0", reg.host()), None);
    assert_eq!(a["source_digest"].as_str().unwrap(), at_registry);
    assert_ne!(a["digest"].as_str().unwrap(), at_registry);
}

#[test]
fn pack_from_a_registry_with_auth_reads_the_docker_config() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 8 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), true);
    let host = reg.host();
    fill_registry_as(&layout, &host, Some(&format!("{USER}:{PASSWORD}")));
    let spec = spec(t.path(), &host);
    let cache = t.path().join("cache");
    let archive = t.path().join("b.tar");

    let out = pack(&spec, &archive, &cache, &[], &[]);
    let msg = out.expect_fail("pack without credentials");
    assert!(
        msg.contains(&format!("registry {host} asks for credentials")),
        "{msg}"
    );
    assert!(
        msg.contains("3 of 3 registry images and charts could not be fetched"),
        "{msg}"
    );
    assert!(!archive.exists());

    let cfg = docker_config(t.path(), &host, USER, "wrong");
    let out = pack(&spec, &archive, &cache, &[], &[("DOCKER_CONFIG", &cfg)]);
    let msg = out.expect_fail("pack with a refused login");
    assert!(
        msg.contains(&format!(
            "registry {host} refused the credentials from {}",
            cfg.join("config.json").display()
        )),
        "{msg}"
    );
    docker_config(t.path(), &host, USER, PASSWORD);
    let out = pack(&spec, &archive, &cache, &[], &[("DOCKER_CONFIG", &cfg)]);
    assert!(out.ok(), "{}", out.stderr);
    let creds = format!("{USER}:{PASSWORD}");
    for a in summary(&out)["artifacts"].as_array().unwrap() {
        let r = a["reference"].as_str().unwrap();
        assert_eq!(
            a["digest"].as_str().unwrap(),
            registry_digest(r, Some(&creds))
        );
    }
}

#[test]
fn an_interrupted_pack_resumes_fetching_only_the_missing_blobs() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 1 << 20);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let cache = t.path().join("cache");
    // The link drops after ~2.5 MiB have come back from the registry: the
    // proxy counts bytes towards ferry, so cut on the upstream side.
    let proxy = CuttingProxy::start_both_ways(reg.addr, 5 << 19);
    let spec_cut = spec(t.path(), &proxy.addr.to_string());
    let archive = t.path().join("b.tar");
    let out = pack(
        &spec_cut,
        &archive,
        &cache,
        &["--retries", "1", "--jobs", "2"],
        &[],
    );
    out.expect_fail("pack over a link that drops");
    assert!(!archive.exists(), "no archive from an incomplete fetch");
    drop(proxy);
    let cached_before = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert!(cached_before > 0, "some blobs arrived before the cut");

    let spec_ok = t.path().join("ok.yaml");
    std::fs::copy(spec(t.path(), &reg.host()), &spec_ok).unwrap();
    let out = pack(&spec_ok, &archive, &cache, &[], &[]);
    assert!(out.ok(), "{}", out.stderr);
    let f = &summary(&out)["fetched"];
    assert!(f["blobs_cached"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(
        f["blobs_cached"].as_u64().unwrap() + f["blobs_fetched"].as_u64().unwrap(),
        10,
        "only the missing blobs were fetched: {f}"
    );
    // No temp file is left looking like a blob.
    for e in std::fs::read_dir(cache.join("blobs/sha256")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            let d: ferry::digest::Digest = format!("sha256:{name}").parse().unwrap();
            let (h, _) = ferry::source::hash_file(&cache.join("blobs/sha256").join(&name)).unwrap();
            assert_eq!(h, d, "cached blob {name} is whole");
        }
    }
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");
}

/// Packs the three images through a fault proxy.
fn pack_through(
    fault: Fault,
    needle: &str,
    times: u64,
) -> (tempfile::TempDir, Out, FaultProxy, PathBuf, DockerRegistry) {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 64 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let proxy = FaultProxy::start(reg.addr, needle, fault, times);
    let spec = spec(t.path(), &proxy.addr.to_string());
    let cache = t.path().join("cache");
    let out = pack(
        &spec,
        &t.path().join("b.tar"),
        &cache,
        &["--retries", "2"],
        &[],
    );
    (t, out, proxy, cache, reg)
}

#[test]
fn a_503_then_success_is_retried() {
    let (t, out, proxy, _, _reg) = pack_through(Fault::Unavailable, "/blobs/", 2);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::Relaxed), 2);
    ferry(["verify".as_ref(), t.path().join("b.tar").as_os_str()]).expect_ok("verify");
}

/// Docker Hub answers a rate limit with 429 and an OCI error body, which
/// the client crate reports without its status; it must still be retried,
/// and only after the `Retry-After` wait (2 s here; ferry's own first
/// backoff would be 0.5 s).
#[test]
fn a_429_with_an_oci_error_body_is_retried_after_the_wait_it_asks_for() {
    for needle in ["/manifests/", "/blobs/"] {
        let (t, out, proxy, _, _reg) = pack_through(Fault::TooManyRequests(2), needle, 1);
        assert!(out.ok(), "{needle}: {}", out.stderr);
        proxy.assert_asked_again_after(needle, 2);
        ferry(["verify".as_ref(), t.path().join("b.tar").as_os_str()]).expect_ok("verify");
    }
}

/// A registry asking for a longer wait than ferry makes fails each image
/// at once, naming the wait, instead of sleeping through `--retries`
/// rounds or hanging the run; nothing is written.
#[test]
fn a_registry_asking_for_a_long_wait_fails_at_once_naming_it() {
    let (t, out, proxy, _, _reg) = pack_through(Fault::TooManyRequests(3600), "/manifests/", 100);
    let msg = out.expect_fail("a registry asking for an hour's wait");
    assert!(
        msg.contains("asked to retry after 3600 s, longer than ferry waits (60 s)"),
        "{msg}"
    );
    assert!(msg.contains("fetching manifest "), "{msg}");
    assert_eq!(
        proxy.hits.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "one request per image, none retried"
    );
    assert!(!t.path().join("b.tar").exists());
}

#[test]
fn a_connection_reset_mid_blob_is_retried() {
    let (t, out, proxy, _, _reg) = pack_through(Fault::ResetMidBody, "/blobs/", 1);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
    ferry(["verify".as_ref(), t.path().join("b.tar").as_os_str()]).expect_ok("verify");
}

#[test]
fn a_blob_with_the_wrong_bytes_never_enters_the_cache() {
    // Every download of one layer of `tool` comes back damaged.
    let t0 = tempfile::tempdir().unwrap();
    let layout = source_layout(&t0.path().join("src"), 64 << 10);
    let x = build::layer(&[("bin/x", &build::pseudo_random(201, 64 << 10))]);
    let x_digest = ferry::digest::Digest::of(&x.0);
    drop(layout);
    let (_t, out, proxy, cache, _reg) = pack_through(Fault::Corrupt, &x_digest.hex(), 100);
    let msg = out.expect_fail("pack with a damaged blob");
    assert!(msg.contains(&x_digest.to_string()), "{msg}");
    assert!(msg.contains("team/tool:2"), "the image is named: {msg}");
    assert!(
        !msg.contains("team/user:3:"),
        "user does not need that layer: {msg}"
    );
    assert!(proxy.hits.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(
        !cache.join("blobs/sha256").join(x_digest.hex()).exists(),
        "the damaged blob is not in the cache"
    );
}

#[test]
fn a_missing_manifest_is_named_and_the_other_images_are_still_fetched() {
    let (_t, out, _proxy, cache, _reg) =
        pack_through(Fault::NotFound, "/team/user/manifests/", 100);
    let msg = out.expect_fail("pack with a missing image");
    assert!(
        msg.contains("1 of 3 registry images and charts could not be fetched"),
        "{msg}"
    );
    assert!(msg.contains("team/user:3"), "{msg}");
    assert!(msg.to_lowercase().contains("manifest unknown"), "{msg}");
    // tool's and app's blobs are in the cache for the re-run.
    let cached = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .count();
    assert!(cached >= 8, "{cached}");
}

#[test]
fn a_schema1_manifest_is_refused_naming_the_reference() {
    let (_t, out, _proxy, _cache, _reg) =
        pack_through(Fault::Schema1, "/team/user/manifests/", 100);
    let msg = out.expect_fail("pack of a schema-1 image");
    assert!(msg.contains("team/user:3"), "{msg}");
    assert!(msg.contains("manifest.v1+prettyjws"), "{msg}");
}

#[test]
fn a_digest_reference_must_match_what_the_registry_serves() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 8 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let host = reg.host();
    let digest = registry_digest(&format!("{host}/team/tool:2"), None);
    let cache = t.path().join("cache");
    let spec = t.path().join("d.yaml");
    std::fs::write(&spec, format!("images:\n  - {host}/team/tool@{digest}\n")).unwrap();
    let out = pack(&spec, &t.path().join("d.tar"), &cache, &[], &[]);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(summary(&out)["artifacts"][0]["digest"], digest.as_str());
    // A digest the registry does not hold under that name.
    let other = registry_digest(&format!("{host}/team/user:3"), None);
    std::fs::write(&spec, format!("images:\n  - {host}/team/tool@{other}\n")).unwrap();
    let msg = pack(&spec, &t.path().join("e.tar"), &cache, &[], &[]).expect_fail("wrong digest");
    assert!(msg.contains(&format!("team/tool@{other}")), "{msg}");
}

#[test]
fn an_oci_chart_is_fetched_with_its_manifest_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    // `ferry load` puts the demo chart in the registry as a Helm artifact.
    let demo = pack_demo(t.path());
    run(Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "load"])
        .arg(&demo)
        .args(["--registry", &reg.host()])
        .env("DOCKER_CONFIG", t.path().join("none")))
    .expect_ok("load the demo");
    let host = reg.host();
    let at_registry = registry_digest(&format!("{host}/charts/demo-chart:0.1.0"), None);

    let spec = t.path().join("charts.yaml");
    std::fs::write(
        &spec,
        format!("charts:\n  - ref: oci://{host}/charts/demo-chart\n    version: 0.1.0\n"),
    )
    .unwrap();
    let archive = t.path().join("c.tar");
    let out = pack(&spec, &archive, &t.path().join("cache"), &[], &[]);
    assert!(out.ok(), "{}", out.stderr);
    let a = &summary(&out)["artifacts"][0];
    assert_eq!(a["kind"], "chart");
    assert_eq!(a["reference"], "charts/demo-chart:0.1.0");
    assert_eq!(a["digest"], at_registry.as_str());
    assert_eq!(a["chart"]["name"], "demo-chart");
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");
    // The .tgz comes back out byte for byte.
    let charts = t.path().join("charts");
    ferry([
        "unpack".as_ref(),
        archive.as_os_str(),
        "--charts".as_ref(),
        charts.as_os_str(),
    ])
    .expect_ok("unpack --charts");
    assert_eq!(
        std::fs::read(charts.join("demo-chart-0.1.0.tgz")).unwrap(),
        std::fs::read(repo_root().join("fixtures/demo/charts/demo-chart-0.1.0.tgz")).unwrap()
    );

    // An image is not a chart.
    let layout = source_layout(&t.path().join("src"), 4 << 10);
    fill_registry(&layout, &host);
    std::fs::write(
        &spec,
        format!("charts:\n  - ref: oci://{host}/team/tool\n    version: \"2\"\n"),
    )
    .unwrap();
    let msg = pack(
        &spec,
        &t.path().join("d.tar"),
        &t.path().join("cache"),
        &[],
        &[],
    )
    .expect_fail("pack an image as a chart");
    assert!(msg.contains("not a Helm chart artifact"), "{msg}");
}

#[test]
fn two_packs_sharing_one_cache_both_succeed() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 256 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let spec = spec(t.path(), &reg.host());
    let cache = t.path().join("cache");
    let (a, b) = (t.path().join("a.tar"), t.path().join("b.tar"));
    let (oa, ob) = std::thread::scope(|s| {
        let ja = s.spawn(|| pack(&spec, &a, &cache, &["--jobs", "2"], &[]));
        let jb = s.spawn(|| pack(&spec, &b, &cache, &["--jobs", "2"], &[]));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    assert!(oa.ok(), "{}", oa.stderr);
    assert!(ob.ok(), "{}", ob.stderr);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    ferry(["verify".as_ref(), a.as_os_str()]).expect_ok("verify");
}

/// Ctrl-C while a blob is half downloaded: ferry removes its temp files
/// (the cache's partial blob, nothing in the output directory) and exits
/// 130; a re-run completes and the archive verifies.
#[test]
fn ctrl_c_mid_fetch_leaves_no_temp_file_and_a_rerun_completes() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 512 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let proxy = FaultProxy::start(reg.addr, "/blobs/", Fault::Stall, 1);
    let spec = spec(t.path(), &proxy.addr.to_string());
    let cache = t.path().join("cache");
    let out_dir = t.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("b.tar");
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "pack"])
        .arg(&spec)
        .arg("-o")
        .arg(&out)
        .arg("--cache")
        .arg(&cache)
        .env("DOCKER_CONFIG", t.path().join("no-docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let temps = |dir: &Path| -> Vec<String> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    // Interrupted once the stalled blob's temp file exists in the cache.
    let interrupted = interrupt_when(child, "the fetch", || {
        !temps(&cache).is_empty() && proxy.hits.load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    assert!(
        interrupted.stderr.contains("interrupted: removed"),
        "{}",
        interrupted.stderr
    );
    assert!(
        temps(&cache).is_empty(),
        "left in the cache: {:?}",
        temps(&cache)
    );
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "left in the output directory: {left:?}");

    // The stall was one-off: a re-run completes.
    pack(&spec, &out, &cache, &[], &[]).expect_ok("re-run after Ctrl-C");
    ferry(["verify".as_ref(), out.as_os_str()]).expect_ok("verify");
}

/// Registries may send blob downloads to another host (a CDN, an object
/// store). The redirect is followed, but the registry's credentials stay
/// with the registry: the other host sees no `Authorization` header.
#[test]
fn a_blob_redirected_to_another_host_is_fetched_without_the_credentials() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 16 << 10);
    let with_auth = DockerRegistry::start(&t.path().join("reg"), true);
    fill_registry_as(
        &layout,
        &with_auth.host(),
        Some(&format!("{USER}:{PASSWORD}")),
    );
    // The "CDN": another registry holding the same blobs, open to all.
    let open = DockerRegistry::start(&t.path().join("cdn"), false);
    fill_registry(&layout, &open.host());
    let cdn = FaultProxy::recording(open.addr);
    let front = FaultProxy::start(
        with_auth.addr,
        "/blobs/",
        Fault::Redirect(cdn.addr),
        u64::MAX,
    );

    let (out, archive) = pack_logged_in(t.path(), &front.addr.to_string());
    assert!(out.ok(), "{}", out.stderr);
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");

    let redirected = front.hits.load(std::sync::atomic::Ordering::Relaxed);
    let served = cdn.heads.lock().unwrap().len() as u64;
    assert!(redirected >= 5, "blobs were redirected: {redirected}");
    assert_eq!(served, redirected, "every redirect reached the other host");
    assert_eq!(cdn.with_credentials(), Vec::<String>::new());
    assert!(
        !front.with_credentials().is_empty(),
        "the registry itself did get the credentials"
    );
}

/// Packs the three images from `host` with `USER:PASSWORD` in a docker
/// config (`DIR/docker`); the output and the archive's path.
fn pack_logged_in(dir: &Path, host: &str) -> (Out, PathBuf) {
    pack_with_config(dir, host, &docker_config(dir, host, USER, PASSWORD))
}

/// Packs the test images from `host` into `DIR/b.tar` with the docker
/// config in `cfg`.
fn pack_with_config(dir: &Path, host: &str, cfg: &Path) -> (Out, PathBuf) {
    let archive = dir.join("b.tar");
    let out = pack(
        &spec(dir, host),
        &archive,
        &dir.join("cache"),
        &[],
        &[("DOCKER_CONFIG", cfg)],
    );
    (out, archive)
}

/// The test images in the real registry, behind a front that asks for a
/// Bearer token from an in-process token service (as Docker Hub's registry
/// sends clients to auth.docker.io): the registry, the token service, its
/// realm URL and the front.
fn behind_token_service(
    dir: &Path,
) -> (
    DockerRegistry,
    support::registry::TokenServer,
    &'static str,
    FaultProxy,
) {
    let layout = source_layout(&dir.join("src"), 8 << 10);
    let reg = DockerRegistry::start(&dir.join("reg"), false);
    fill_registry(&layout, &reg.host());
    let tokens = support::registry::TokenServer::start();
    let realm: &'static str = format!("http://{}/token", tokens.addr).leak();
    let front = FaultProxy::start(reg.addr, "", Fault::Bearer(realm), u64::MAX);
    (reg, tokens, realm, front)
}

/// A registry whose token service is on another host (as Docker Hub's is
/// on auth.docker.io): the password goes to the token service it names,
/// and the registry itself only ever sees the token.
#[test]
fn a_token_realm_on_another_host_gets_the_login_and_the_registry_only_the_token() {
    let t = tempfile::tempdir().unwrap();
    let (_reg, tokens, _, front) = behind_token_service(t.path());
    let (out, archive) = pack_logged_in(t.path(), &front.addr.to_string());
    assert!(out.ok(), "{}", out.stderr);
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");

    let basic = format!(
        "authorization: basic {}",
        base64(format!("{USER}:{PASSWORD}").as_bytes())
    );
    let logins = tokens.heads.lock().unwrap().clone();
    assert!(!logins.is_empty());
    assert!(
        logins
            .iter()
            .all(|h| h.to_ascii_lowercase().contains(&basic.to_ascii_lowercase())),
        "{logins:?}"
    );
    let sent = front.with_credentials();
    assert!(!sent.is_empty());
    for h in sent {
        let h = h.to_ascii_lowercase();
        assert!(
            !h.contains("authorization: basic"),
            "the password reached the registry: {h}"
        );
    }
}

/// A docker config holding `token` as the identity token of each of
/// `hosts` (`identitytoken`, as `docker login` leaves for registries that
/// log in with OAuth2).
fn identity_config(dir: &Path, hosts: &[&str], token: &str) -> PathBuf {
    let cfg = dir.join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let auths: Vec<String> = hosts
        .iter()
        .map(|h| format!(r#""{h}":{{"identitytoken":"{token}"}}"#))
        .collect();
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{{}}}}}"#, auths.join(",")),
    )
    .unwrap();
    cfg
}

/// An identity token in the docker config is traded at the token service
/// for a token per repository and action (an OAuth2 `refresh_token`
/// grant, as docker does): pack pulls with it, load pushes with it, and
/// neither registry ever sees the identity token itself.
#[test]
fn an_identity_token_is_traded_at_the_token_service_for_pull_and_push() {
    let t = tempfile::tempdir().unwrap();
    let (_reg, tokens, realm, front) = behind_token_service(t.path());
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let target_front = FaultProxy::start(target.addr, "", Fault::Bearer(realm), u64::MAX);
    let (host, target_host) = (front.addr.to_string(), target_front.addr.to_string());
    let cfg = identity_config(
        t.path(),
        &[&host, &target_host],
        support::registry::REFRESH_TOKEN,
    );

    let (out, archive) = pack_with_config(t.path(), &host, &cfg);
    assert!(out.ok(), "{}", out.stderr);
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");
    let mut load = Command::new(env!("CARGO_BIN_EXE_ferry"));
    load.args(["--quiet", "load"])
        .arg(&archive)
        .args(["--registry", &target_host])
        .env("DOCKER_CONFIG", &cfg);
    run_with_stdin(&mut load, "").expect_ok("load with an identity token");
    assert_eq!(
        target.tags(),
        ["library/app:1.0", "team/tool:2", "team/user:3"]
    );

    // Each grant's form fields, in any order.
    let grants: Vec<Vec<String>> = tokens
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.starts_with("POST /token "))
        .map(|g| {
            let body = g.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            body.split('&').map(str::to_owned).collect()
        })
        .collect();
    let refresh = format!("refresh_token={}", support::registry::REFRESH_TOKEN);
    let client_id = format!("client_id=ferry%2F{}", env!("CARGO_PKG_VERSION"));
    for scope in [
        "repository:library/app:pull",
        "repository:team/tool:pull",
        "repository:library/app:pull,push",
        "repository:team/user:pull,push",
    ] {
        let scope = format!(
            "scope={}",
            scope
                .replace(':', "%3A")
                .replace('/', "%2F")
                .replace(',', "%2C")
        );
        assert!(
            grants.iter().any(
                |g| ["grant_type=refresh_token", &refresh, &client_id, &scope]
                    .iter()
                    .all(|f| g.iter().any(|have| have == f))
            ),
            "no grant with {scope}: {grants:?}"
        );
    }
    for (name, proxy) in [("source", &front), ("target", &target_front)] {
        let heads = proxy.heads.lock().unwrap();
        assert!(!heads.is_empty());
        for (_, h) in heads.iter() {
            assert!(
                !h.contains(support::registry::REFRESH_TOKEN),
                "the identity token reached the {name} registry: {h}"
            );
        }
    }
}

/// An identity token the token service refuses: the image fails naming
/// the registry and the docker config entry it came from, and no archive
/// is written.
#[test]
fn a_refused_identity_token_names_the_registry_and_the_config_entry() {
    let t = tempfile::tempdir().unwrap();
    let (_reg, _tokens, _, front) = behind_token_service(t.path());
    let host = front.addr.to_string();
    let cfg = identity_config(t.path(), &[&host], "revoked");
    let (out, archive) = pack_with_config(t.path(), &host, &cfg);
    let msg = out.expect_fail("pack with a refused identity token");
    let want = format!(
        "registry {host} refused the credentials from {} (entry \"{host}\", an identity token)",
        cfg.join("config.json").display()
    );
    assert!(msg.contains(&want), "{msg}");
    assert!(!archive.exists());
}

/// A registry (here on loopback) whose token service is reached over
/// plain HTTP on another host: the login would cross the network in clear
/// text, so ferry refuses before sending it, in pack and in load alike.
#[test]
fn a_plain_http_token_realm_off_loopback_is_refused_before_the_login_is_sent() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let realm = "http://tokens.invalid/token";
    let front = FaultProxy::start(reg.addr, "", Fault::Bearer(realm), u64::MAX);
    let host = front.addr.to_string();
    let (out, archive) = pack_logged_in(t.path(), &host);
    let cfg = t.path().join("docker");
    let msg = out.expect_fail("pack with a plain-HTTP token realm");
    let want = format!(
        "registry {host} sends logins to the token service {realm} over plain HTTP; ferry will not send the credentials from {}",
        cfg.join("config.json").display()
    );
    assert!(msg.contains(&want), "{msg}");
    assert!(!archive.exists());

    let demo = pack_demo(t.path());
    let mut load = Command::new(env!("CARGO_BIN_EXE_ferry"));
    load.args(["--quiet", "load"])
        .arg(&demo)
        .args(["--registry", &host, "--username", USER, "--password-stdin"])
        .env("DOCKER_CONFIG", t.path().join("no-docker-config"));
    let out = run_with_stdin(&mut load, &format!("{PASSWORD}\n"));
    let msg = out.expect_fail("load with a plain-HTTP token realm");
    assert!(
        msg.contains(&format!(
            "registry {host} sends logins to the token service {realm} over plain HTTP"
        )),
        "{msg}"
    );
    assert!(msg.contains("--username/--password-stdin"), "{msg}");
    assert_eq!(front.with_credentials(), Vec::<String>::new());
    assert!(reg.repositories().is_empty(), "nothing was pushed");
}

/// A blob damaged in the cache (same size, other bytes) is found by
/// re-hashing, fetched again, and counted; the archive comes out the same.
#[test]
fn a_damaged_blob_in_the_cache_is_detected_and_fetched_again() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 32 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let spec = spec(t.path(), &reg.host());
    let cache = t.path().join("cache");
    let first = t.path().join("first.tar");
    pack(&spec, &first, &cache, &[], &[]).expect_ok("first pack");

    let x = build::layer(&[("bin/x", &build::pseudo_random(201, 32 << 10))]);
    let x = ferry::digest::Digest::of(&x.0);
    let cached = cache.join("blobs/sha256").join(x.hex());
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&cached, &bytes).unwrap();

    let second = t.path().join("second.tar");
    let out = pack(&spec, &second, &cache, &[], &[]);
    assert!(out.ok(), "{}", out.stderr);
    let s = summary(&out);
    assert_eq!(s["fetched"]["blobs_repaired"], 1, "{s}");
    assert_eq!(s["fetched"]["blobs_fetched"], 1, "{s}");
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    assert_eq!(
        ferry::digest::Digest::of(&std::fs::read(&cached).unwrap()),
        x
    );
}

/// Credentials that stop working in the middle of a run (a password
/// changed, a token revoked): the images that hit the refusal are named
/// with the registry and the credential source; the others are packed
/// into the cache, and the run fails without writing an archive.
#[test]
fn credentials_refused_mid_run_name_the_registry_and_the_source() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 16 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let y = build::layer(&[("bin/y", &build::pseudo_random(202, 16 << 10))]);
    let y = ferry::digest::Digest::of(&y.0);
    let proxy = FaultProxy::start(reg.addr, &y.hex(), Fault::Unauthorized, u64::MAX);
    let host = proxy.addr.to_string();
    let (out, archive) = pack_logged_in(t.path(), &host);
    let cfg = t.path().join("docker");
    let msg = out.expect_fail("pack with credentials refused mid-run");
    assert!(
        msg.contains(&format!(
            "registry {host} refused the credentials from {}",
            cfg.join("config.json").display()
        )),
        "{msg}"
    );
    assert!(msg.contains(&y.to_string()), "{msg}");
    assert!(
        msg.contains("1 of 3 registry images and charts could not be fetched"),
        "{msg}"
    );
    assert!(msg.contains("team/user:3"), "{msg}");
    assert!(!archive.exists());
}

/// A registry answering a manifest with 300 MB (streamed by the proxy,
/// never held by the test): with a `Content-Length`, ferry refuses it
/// before reading; without one, it stops reading past the 4 MiB limit.
/// Either way the image fails naming the limit and the reference, and
/// nothing near 300 MB is read.
#[test]
fn a_manifest_over_4_mib_from_a_registry_is_refused_without_reading_it_whole() {
    for declared in [true, false] {
        let huge = 300 << 20;
        let fault = Fault::Huge {
            method: "GET",
            status: 200,
            bytes: huge,
            declared,
        };
        let (t, out, proxy, _, _reg) = pack_through(fault, "/team/user/manifests/", 100);
        let msg = out.expect_fail("pack of a 300 MB manifest");
        assert!(msg.contains("team/user:3"), "{declared}: {msg}");
        assert!(
            msg.contains("the manifest is larger than ferry's limit of 4 MiB"),
            "{declared}: {msg}"
        );
        if declared {
            assert!(msg.contains(&format!("Content-Length {huge}")), "{msg}");
        }
        let sent = proxy.body_sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < 64 << 20, "{declared}: read {sent} of {huge} bytes");
        assert!(!t.path().join("b.tar").exists());
    }
}

/// A token service answering with 100 MB: refused at the token limit,
/// named, and nothing near 100 MB is read.
#[test]
fn a_token_response_over_its_limit_is_refused_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 8 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let tokens = support::registry::TokenServer::start();
    let huge = 100 << 20;
    let token_front = FaultProxy::start(
        tokens.addr,
        "/token",
        Fault::Huge {
            method: "GET",
            status: 200,
            bytes: huge,
            declared: false,
        },
        u64::MAX,
    );
    let realm: &'static str = format!("http://{}/token", token_front.addr).leak();
    let front = FaultProxy::start(reg.addr, "", Fault::Bearer(realm), u64::MAX);
    let (out, archive) = pack_logged_in(t.path(), &front.addr.to_string());
    let msg = out.expect_fail("pack with a 100 MB token");
    assert!(
        msg.contains("the token is larger than ferry's limit of 1 MiB"),
        "{msg}"
    );
    let sent = token_front
        .body_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 64 << 20, "read {sent} of {huge} bytes");
    assert!(!archive.exists());
}

#[test]
fn a_token_that_cannot_be_a_header_is_an_error_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 8 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    let tokens = support::registry::TokenServer::start_granting("line\nbreak");
    let realm: &'static str = format!("http://{}/token", tokens.addr).leak();
    let front = FaultProxy::start(reg.addr, "", Fault::Bearer(realm), u64::MAX);
    let (out, archive) = pack_logged_in(t.path(), &front.addr.to_string());
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot be sent in an HTTP header"),
        "{}",
        out.stderr
    );
    assert!(!archive.exists());
}

/// Progress that a retried download reports is taken back when it is
/// retried: the bar of the blob phase never runs past its total (it once
/// showed 10.81 MiB/7.51 MiB).
#[test]
fn a_retried_download_does_not_push_progress_past_its_total() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        phases: Mutex<Vec<(String, u64)>>,
        done: AtomicU64,
        over: AtomicU64,
    }
    impl ferry::report::Reporter for Recorder {
        fn start(&self, phase: &str, total: u64) {
            self.phases.lock().unwrap().push((phase.to_owned(), total));
            self.done.store(0, Ordering::Relaxed);
        }
        fn advance(&self, bytes: u64) {
            let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
            let total = self.phases.lock().unwrap().last().map_or(0, |p| p.1);
            if total > 0 && done > total {
                self.over.fetch_max(done - total, Ordering::Relaxed);
            }
        }
        fn finish(&self) {}
    }

    let t = tempfile::tempdir().unwrap();
    let layout = source_layout(&t.path().join("src"), 256 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(&layout, &reg.host());
    // Every blob download is cut off halfway once, then retried.
    let proxy = FaultProxy::start(reg.addr, "/blobs/", Fault::ResetMidBody, 4);
    let host = proxy.addr.to_string();
    let requests: Vec<ferry::fetch::FetchRequest> = ["library/app:1.0", "team/tool:2"]
        .iter()
        .map(|r| ferry::fetch::FetchRequest {
            reference: format!("{host}/{r}").parse().unwrap(),
            platforms: None,
            referrers: false,
        })
        .collect();
    let opts = ferry::fetch::FetchOptions {
        cache: t.path().join("cache"),
        jobs: 2,
        remote: ferry::remote::RemoteOptions {
            retries: 3,
            backoff: std::time::Duration::from_millis(10),
            ..Default::default()
        },
    };
    let recorder = Recorder::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(ferry::fetch::fetch(&requests, &opts, &recorder))
        .unwrap();
    assert!(
        report.results.iter().all(|r| r.is_ok()),
        "{:?}",
        report.results
    );
    assert!(
        proxy.hits.load(Ordering::Relaxed) >= 1,
        "no download was cut off"
    );
    assert_eq!(
        recorder.over.load(Ordering::Relaxed),
        0,
        "progress ran past the total: {:?}",
        recorder.phases.lock().unwrap()
    );
}
