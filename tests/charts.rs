//! Charts from a classic Helm repository (a local HTTP server with a
//! generated index.yaml, relative URLs and digests): version choice by
//! Helm's rules, digest checks, clear errors, and the archive bytes back
//! out of `unpack --charts`.

mod support;

use std::path::Path;

use serde_json::Value;
use support::build;
use support::files::FileServer;
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
    std::fs::write(
        cfg.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"ZmVycnk6czNjcmV0"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap();
    let out = pack_charts(t.path(), &url, "demo", "1.0.0");
    assert!(out.ok(), "{}", out.stderr);
}
