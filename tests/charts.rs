//! Charts from a classic Helm repository (a local HTTP server with a
//! generated index.yaml, relative URLs and digests): version choice by
//! Helm's rules, digest checks, clear errors, and the archive bytes back
//! out of `unpack --charts`.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::Value;
use support::build;
use support::files::FileServer;
use support::registry::{Fault, FaultProxy};
use support::*;

/// A repository with demo 0.1.0, 0.1.5, 0.2.0-rc.1 and 1.0.0; the index
/// names 0.1.5 with a wrong digest when `bad_digest`.
fn repo(dir: &Path, bad_digest: bool) -> std::path::PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(root.join("archives")).unwrap();
    let mut index = String::from("apiVersion: v1\nentries:\n  demo:\n");
    for v in ["0.1.0", "0.1.5", "0.2.0-rc.1", "1.0.0"] {
        let tgz = build::chart_tgz(
            "demo",
            v,
            &format!("image:\n  repository: app\n  tag: \"{v}\"\n"),
        );
        let file = format!("demo-{v}.tgz");
        std::fs::write(root.join("archives").join(&file), &tgz).unwrap();
        let mut digest = ferry::digest::Digest::of(&tgz).hex();
        if bad_digest && v == "0.1.5" {
            digest = ferry::digest::Digest::of(b"other").hex();
        }
        index.push_str(&format!(
            "  - apiVersion: v2\n    name: demo\n    version: {v}\n    description: \"A chart: demo\"\n    digest: {digest}\n    urls:\n    - archives/{file}\n"
        ));
    }
    index.push_str("  other-chart:\n  - name: other-chart\n    version: 1.0.0\n    urls:\n    - archives/none.tgz\ngenerated: \"2026-11-24T00:00:00Z\"\n");
    std::fs::write(root.join("index.yaml"), index).unwrap();
    root
}

fn pack_charts(dir: &Path, repo_url: &str, name: &str, version: &str) -> Out {
    pack_charts_with(dir, repo_url, name, version, &[])
}

fn pack_charts_with(dir: &Path, repo_url: &str, name: &str, version: &str, args: &[&str]) -> Out {
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        format!("charts:\n  - repo: {repo_url}\n    name: {name}\n    version: \"{version}\"\n"),
    )
    .unwrap();
    run(std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "pack"])
        .arg(&spec)
        .arg("-o")
        .arg(dir.join("c.tar"))
        .arg("--cache")
        .arg(dir.join("cache"))
        .arg("--json")
        .args(args)
        .env("DOCKER_CONFIG", dir.join("none")))
}

#[test]
fn a_chart_from_a_repository_is_chosen_by_constraint_and_comes_back_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let root = repo(t.path(), false);
    let server = FileServer::start(root.clone(), None);
    let url = format!("http://{}/", server.addr);
    let out = pack_charts(t.path(), &url, "demo", "^0.1");
    assert!(out.ok(), "{}", out.stderr);
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    let a = &s["artifacts"][0];
    assert_eq!(a["reference"], "charts/demo:0.1.5", "highest stable 0.1.x");
    assert!(
        a["source"].as_str().unwrap().contains("from http://"),
        "{a}"
    );
    let archive = t.path().join("c.tar");
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");
    let out_dir = t.path().join("out");
    ferry([
        "unpack".as_ref(),
        archive.as_os_str(),
        "--charts".as_ref(),
        out_dir.as_os_str(),
    ])
    .expect_ok("unpack --charts");
    assert_eq!(
        std::fs::read(out_dir.join("demo-0.1.5.tgz")).unwrap(),
        std::fs::read(root.join("archives/demo-0.1.5.tgz")).unwrap()
    );
    // A pre-release only when named; an exact version.
    let out = pack_charts(t.path(), &url, "demo", "0.2.0-rc.1");
    assert!(out.ok(), "{}", out.stderr);
    let out = pack_charts(t.path(), &url, "demo", "*");
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(s["artifacts"][0]["reference"], "charts/demo:1.0.0");
}

#[test]
fn chart_repository_errors_are_clear_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let server = FileServer::start(repo(t.path(), true), None);
    let url = format!("http://{}", server.addr);
    let archive = t.path().join("c.tar");

    let msg = pack_charts(t.path(), &url, "demo", "0.1.5").expect_fail("digest mismatch");
    assert!(
        msg.contains("chart demo 0.1.5 downloaded from") && msg.contains("arrived as"),
        "{msg}"
    );
    assert!(!archive.exists());

    let msg = pack_charts(t.path(), &url, "demo", "^3").expect_fail("no such version");
    assert!(
        msg.contains("has no version matching \"^3\"")
            && msg.contains("it has: 1.0.0, 0.2.0-rc.1, 0.1.5"),
        "{msg}"
    );
    let msg = pack_charts(t.path(), &url, "dem", "1.0.0").expect_fail("no such chart");
    assert!(msg.contains("has no chart \"dem\"; it has: demo"), "{msg}");
    let msg = pack_charts(
        t.path(),
        &format!("http://{}/nope", server.addr),
        "demo",
        "1.0.0",
    )
    .expect_fail("no index");
    assert!(
        msg.contains("index.yaml failed: the server answered 404"),
        "{msg}"
    );
    // An index that is not one.
    let bad = t.path().join("bad-repo");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("index.yaml"), "entries: [unclosed\n").unwrap();
    let bad_server = FileServer::start(bad, None);
    let msg = pack_charts(
        t.path(),
        &format!("http://{}", bad_server.addr),
        "demo",
        "1.0.0",
    )
    .expect_fail("not an index");
    assert!(
        msg.contains("index.yaml is not a Helm repository index"),
        "{msg}"
    );
    // Plain HTTP to a host that is not loopback is refused before any request.
    let msg = pack_charts(
        t.path(),
        "http://charts.example.com/stable",
        "demo",
        "1.0.0",
    )
    .expect_fail("plain http");
    assert!(msg.contains("uses plain HTTP"), "{msg}");
    assert!(!archive.exists());
}

#[test]
fn a_chart_repository_behind_basic_auth_uses_the_docker_config() {
    let t = tempfile::tempdir().unwrap();
    // "ferry:s3cret" in base64.
    let server = FileServer::start(repo(t.path(), false), Some("ZmVycnk6czNjcmV0".into()));
    let url = format!("http://{}", server.addr);
    let msg = pack_charts(t.path(), &url, "demo", "1.0.0").expect_fail("no credentials");
    assert!(
        msg.contains("answered 401") && msg.contains("credentials:"),
        "{msg}"
    );
    let cfg = t.path().join("none");
    std::fs::create_dir_all(&cfg).unwrap();
    // An identity token is for registries' token services: not sent here.
    let entry = |creds: &str| {
        let json = format!(r#"{{"auths":{{"{}":{{{creds}}}}}}}"#, server.addr);
        std::fs::write(cfg.join("config.json"), json).unwrap();
    };
    entry(r#""identitytoken":"r3fr3sh""#);
    let msg = pack_charts(t.path(), &url, "demo", "1.0.0").expect_fail("an identity token");
    assert!(
        msg.contains(&format!(
            "answered 401 (credentials: none sent; {} (entry \"{}\", an identity token) is for registry token services only)",
            cfg.join("config.json").display(),
            server.addr
        )),
        "{msg}"
    );
    entry(r#""auth":"ZmVycnk6czNjcmV0""#);
    let out = pack_charts(t.path(), &url, "demo", "1.0.0");
    assert!(out.ok(), "{}", out.stderr);
}

#[test]
fn images_true_carries_the_images_a_chart_and_its_subcharts_name() {
    use support::registry::DockerRegistry;
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    // The demo images, in a real registry: HOST/library/demo:1.0 and
    // HOST/tools/hello:2.1.
    let demo = pack_demo(t.path());
    run(std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "load"])
        .arg(&demo)
        .args(["--registry", &host])
        .env("DOCKER_CONFIG", t.path().join("none")))
    .expect_ok("load the demo images");

    // A sub-chart (nested .tgz) naming hello without a tag: its appVersion.
    let sub = build::gzip(&build::tar_of(&[
        (
            "hello/Chart.yaml",
            b"apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: \"2.1\"\n",
        ),
        (
            "hello/values.yaml",
            format!("image:\n  registry: {host}\n  repository: tools/hello\n  tag: \"\"\n")
                .as_bytes(),
        ),
    ]));
    let chart_yaml = format!(
        "apiVersion: v2\nname: app\nversion: 1.0.0\nappVersion: \"1.0\"\nannotations:\n  artifacthub.io/images: |\n    - name: demo\n      image: {host}/library/demo:1.0\n"
    );
    let values = format!(
        "# values\nimage: {host}/library/demo:1.0\nsidecar:\n  image: \"{{{{ .Values.x }}}}\"\n"
    );
    let tgz = build::gzip(&build::tar_of(&[
        ("app/Chart.yaml", chart_yaml.as_bytes()),
        ("app/values.yaml", values.as_bytes()),
        ("app/charts/hello-0.1.0.tgz", &sub),
    ]));
    std::fs::write(t.path().join("app-1.0.0.tgz"), tgz).unwrap();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "charts:\n  - path: app-1.0.0.tgz\n    images: true\n",
    )
    .unwrap();
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "pack"])
        .arg(&spec)
        .arg("-o")
        .arg(t.path().join("b.tar"))
        .arg("--cache")
        .arg(t.path().join("cache"))
        .arg("--json")
        .env("DOCKER_CONFIG", t.path().join("none")));
    assert!(out.ok(), "{}", out.stderr);
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    let refs: Vec<&str> = s["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "charts/app:1.0.0".to_owned(),
            format!("{host}/library/demo:1.0"),
            format!("{host}/tools/hello:2.1"),
        ]
    );
    let origins: Vec<String> = s["chart_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["origin"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        origins
            .iter()
            .any(|o| o.ends_with("app/Chart.yaml artifacthub.io/images")),
        "{origins:?}"
    );
    assert!(
        origins.iter().any(|o| o.ends_with("app/values.yaml:2")),
        "{origins:?}"
    );
    assert!(
        origins
            .iter()
            .any(|o| o.contains("app/charts/hello-0.1.0.tgz!hello/values.yaml")),
        "{origins:?}"
    );
    let source = s["artifacts"][1]["source"].as_str().unwrap();
    assert!(
        source.contains("(named by ") && source.contains("app-1.0.0.tgz"),
        "{source}"
    );
    ferry(["verify".as_ref(), t.path().join("b.tar").as_os_str()]).expect_ok("verify");
    // The summary counts what the chart images' fetch downloaded: every
    // blob of both images (the cache was empty), no fewer bytes.
    let images_bytes: u64 = s["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "image")
        .map(|a| a["size"].as_u64().unwrap())
        .sum();
    let fetched = &s["fetched"];
    assert!(
        fetched["bytes_fetched"].as_u64().unwrap_or(0) + 4096 >= images_bytes,
        "fetched {fetched} for images of {images_bytes} bytes"
    );
}

/// Asserts that no temp file (a name starting with `.`) is left under
/// `cache`.
fn assert_no_temp_file(cache: &Path) {
    let temps: Vec<_> = walkdir::WalkDir::new(cache)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

/// A chart repository behind a proxy that applies `fault` to the first
/// `times` requests whose path contains `needle`.
fn faulty_repo(
    dir: &Path,
    needle: &str,
    fault: Fault,
    times: u64,
) -> (FileServer, FaultProxy, String) {
    let server = FileServer::start(repo(dir, false), None);
    let proxy = FaultProxy::start(server.addr, needle, fault, times);
    let url = format!("http://{}/", proxy.addr);
    (server, proxy, url)
}

/// A chart repository that throttles with `429` and `Retry-After` is
/// asked again only after the wait it named (longer than ferry's own
/// first backoff of 0.5 s).
#[test]
fn a_chart_repository_429_is_retried_after_the_wait_it_asks_for() {
    let t = tempfile::tempdir().unwrap();
    let (_server, proxy, url) = faulty_repo(t.path(), "/index.yaml", Fault::TooManyRequests(2), 1);
    let out = pack_charts(t.path(), &url, "demo", "1.0.0");
    assert!(out.ok(), "{}", out.stderr);
    proxy.assert_asked_again_after("/index.yaml", 2);
    ferry(["verify".as_ref(), t.path().join("c.tar").as_os_str()]).expect_ok("verify");
}

/// A wait longer than ferry is willing to sit through fails at once,
/// naming it, rather than hanging the run.
#[test]
fn a_chart_repository_asking_for_a_long_wait_fails_at_once_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let (_server, proxy, url) =
        faulty_repo(t.path(), "/index.yaml", Fault::TooManyRequests(3600), 100);
    let msg = pack_charts(t.path(), &url, "demo", "1.0.0").expect_fail("a long Retry-After");
    assert!(
        msg.contains("index.yaml failed: the server answered 429 and asked to retry after 3600 s, longer than ferry waits (60 s); run again later"),
        "{msg}"
    );
    assert_eq!(proxy.hits.load(Ordering::Relaxed), 1, "not asked again");
    assert!(!t.path().join("c.tar").exists());
}

/// 503s and a download cut in the middle are retried; a cut that never
/// heals is named with the attempts made.
#[test]
fn chart_repository_503s_and_broken_downloads_are_retried() {
    for (needle, fault) in [
        ("/index.yaml", Fault::Unavailable),
        (".tgz", Fault::Unavailable),
        (".tgz", Fault::ResetMidBody),
    ] {
        let t = tempfile::tempdir().unwrap();
        let (_server, proxy, url) = faulty_repo(t.path(), needle, fault, 2);
        let out = pack_charts(t.path(), &url, "demo", "1.0.0");
        assert!(out.ok(), "{needle} {fault:?}: {}", out.stderr);
        assert_eq!(proxy.hits.load(Ordering::Relaxed), 2, "{needle} {fault:?}");
        ferry(["verify".as_ref(), t.path().join("c.tar").as_os_str()]).expect_ok("verify");
        assert_no_temp_file(&t.path().join("cache"));
    }
    let t = tempfile::tempdir().unwrap();
    let (_server, _proxy, url) = faulty_repo(t.path(), ".tgz", Fault::ResetMidBody, 100);
    let msg =
        pack_charts(t.path(), &url, "demo", "1.0.0").expect_fail("a download that never completes");
    assert!(msg.contains("demo-1.0.0.tgz failed after"), "{msg}");
    assert!(!t.path().join("c.tar").exists());
}

/// A chart repository sending an `index.yaml` of 200 MB, or a chart
/// archive of 300 MB (streamed by the proxy, never held by the test):
/// each is refused at its limit (64 MiB for the index, the 100 MiB a chart
/// may decompress to plus 1 MiB for the archive), from the declared length
/// or once the bytes read pass it, naming the limit; nothing near the
/// whole is read, and nothing is written.
#[test]
fn chart_repository_bodies_over_their_limits_are_refused_naming_the_limit() {
    for (needle, huge, declared, want) in [
        ("/index.yaml", 200 << 20, true, "the index.yaml is larger than ferry's limit of 64 MiB (it declared Content-Length 209715200)"),
        ("/index.yaml", 200 << 20, false, "the index.yaml is larger than ferry's limit of 64 MiB; stopped reading past the limit"),
        (".tgz", 300 << 20, true, "the chart archive is larger than ferry's limit of 101 MiB (it declared Content-Length 314572800)"),
        (".tgz", 300 << 20, false, "the chart archive is larger than ferry's limit of 101 MiB; stopped reading past the limit"),
    ] {
        let t = tempfile::tempdir().unwrap();
        let fault = Fault::Huge {
            method: "GET",
            status: 200,
            bytes: huge,
            declared,
        };
        let (_server, proxy, url) = faulty_repo(t.path(), needle, fault, u64::MAX);
        let msg = pack_charts(t.path(), &url, "demo", "1.0.0").expect_fail(needle);
        assert!(msg.contains(want), "{needle} {declared}: {msg}");
        let sent = proxy.body_sent.load(Ordering::Relaxed);
        assert!(sent < huge / 2, "{needle} {declared}: read {sent} of {huge} bytes");
        assert!(!t.path().join("c.tar").exists());
        assert_no_temp_file(&t.path().join("cache"));
    }
}
