//! `ferry load` against the real distribution registry (`docker-registry`):
//! exact manifest bytes, mounts, auth, idempotence, resuming after the
//! registry dies mid-load, damaged blobs, collisions and dry runs.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::registry::{CuttingProxy, DockerRegistry, PASSWORD, USER};
use support::*;

/// A bundle with a multi-arch image, a Docker schema-2 image and an OCI
/// image sharing a layer across repositories, and a chart.
fn fixture_bundle(dir: &Path, layer_size: usize) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let app = build::multi_arch(&mut l, 21, layer_size);
    l.tag(&app, "docker.io/library/app:1.0");
    let base = build::layer(&[("etc/shared", &build::pseudo_random(100, layer_size))]);
    let x = build::layer(&[("bin/tool", &build::pseudo_random(101, layer_size))]);
    let y = build::layer(&[("bin/user", &build::pseudo_random(102, layer_size))]);
    let tool = l.image(Flavour::Docker, "linux", "amd64", &[base.clone(), x]);
    l.tag(&tool, "quay.io/team/tool:2");
    let user = l.image(Flavour::Oci, "linux", "amd64", &[base, y]);
    l.tag(&user, "ghcr.io/org/base-user:3");
    l.finish();
    std::fs::write(
        dir.join("demo-0.1.0.tgz"),
        build::chart_tgz(
            "demo",
            "0.1.0",
            "image:\n  repository: app\n  tag: \"1.0\"\n",
        ),
    )
    .unwrap();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: load-test\nimages:\n  - oci:src:docker.io/library/app:1.0\n  - oci:src:quay.io/team/tool:2\n  - oci:src:ghcr.io/org/base-user:3\ncharts:\n  - path: demo-0.1.0.tgz\n",
    )
    .unwrap();
    let archive = dir.join("bundle.tar");
    pack_spec(&spec, &archive);
    archive
}

/// `ferry load ARCHIVE --registry R ARGS… --json`, with `stdin` fed in.
fn load(archive: &Path, registry: &str, args: &[&str], stdin: Option<&str>) -> Out {
    load_env(archive, registry, args, stdin, &[])
}

fn load_env(
    archive: &Path,
    registry: &str,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &Path)],
) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("--quiet")
        .arg("load")
        .arg(archive)
        .args(["--registry", registry, "--json"])
        .args(args);
    // Never read the developer's own docker credentials.
    cmd.env(
        "DOCKER_CONFIG",
        archive.parent().unwrap().join("no-docker-config"),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_stdin(&mut cmd, stdin.unwrap_or(""))
}

fn report(out: &Out) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}\n{}", out.stdout, out.stderr))
}

/// Every artifact's target answers with the bundle's exact manifest bytes,
/// and skopeo can copy it out.
fn check_targets_with_skopeo(report: &Value, scratch: &Path, creds: Option<&str>) {
    let arts = report["artifacts"].as_array().unwrap();
    assert!(!arts.is_empty());
    for (i, a) in arts.iter().enumerate() {
        assert_eq!(a["ok"], true, "{a}");
        let target = format!(
            "docker://{}:{}",
            a["target"].as_str().unwrap(),
            a["tag"].as_str().unwrap()
        );
        let raw = registry_manifest(target.trim_start_matches("docker://"), creds)
            .expect_ok(&format!("skopeo inspect --raw {target}"));
        assert_eq!(
            ferry::digest::Digest::of(raw.as_bytes()).to_string(),
            a["digest"].as_str().unwrap(),
            "the registry holds the bundle's exact manifest bytes for {target}"
        );
        let out = scratch.join(format!("copy-{i}"));
        let mut copy = skopeo();
        copy.args(["copy", "--all", "--src-tls-verify=false"]);
        if let Some(c) = creds {
            copy.args(["--src-creds", c]);
        }
        run(copy.arg(&target).arg(format!("dir:{}", out.display())))
            .expect_ok(&format!("skopeo copy {target}"));
    }
}

/// Asserts that every tag in `reg` resolves to a complete image: skopeo
/// copies each, with every blob it needs. Returns the tags.
fn assert_every_tag_is_complete(reg: &DockerRegistry, scratch: &Path) -> Vec<String> {
    let tags = reg.tags();
    for (i, tag) in tags.iter().enumerate() {
        let out = scratch.join(format!("tag-copy-{i}"));
        run(skopeo()
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{tag}", reg.host()))
            .arg(format!("dir:{}", out.display())))
        .expect_ok(&format!("{tag} resolves to a complete image"));
    }
    tags
}

#[test]
fn load_pushes_exact_manifests_and_a_second_load_pushes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 64 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let target = format!("{}/mirror", reg.host());
    let map = t.path().join("map.json");
    let digests = t.path().join("digests.yml");
    // The installer's file names two of the carried images.
    let installer = t.path().join("images_digests.yml");
    std::fs::write(
        &installer,
        "images_digests:\n  tools:\n    tool:\n      image_repository_path: team/tool\n      image_repository_server: quay.io\n      image_tag: \"2\"\n    app:\n      image_repository_path: library/app\n      image_repository_server: docker.io\n      image_tag: \"1.0\"\n",
    )
    .unwrap();
    let out = load(
        &archive,
        &target,
        &[
            "--map-out",
            map.to_str().unwrap(),
            "--images-digests-out",
            digests.to_str().unwrap(),
            "--images-digests-from",
            installer.to_str().unwrap(),
        ],
        None,
    );
    let r = report(&out);
    assert!(out.ok(), "load failed:\n{}\n{}", out.stdout, out.stderr);
    check_targets_with_skopeo(&r, t.path(), None);
    let c = &r["counts"];
    // The shared layer reaches its second repository by a mount.
    assert!(c["mounted"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["present"], 0);
    assert_eq!(
        c["uploaded"].as_u64().unwrap() + c["mounted"].as_u64().unwrap(),
        c["blob_placements"].as_u64().unwrap()
    );
    let names: Vec<&str> = r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["target"].as_str().unwrap())
        .collect();
    let host = reg.host();
    assert_eq!(
        names,
        [
            format!("{host}/mirror/library/app"),
            format!("{host}/mirror/team/tool"),
            format!("{host}/mirror/org/base-user"),
            format!("{host}/mirror/charts/demo"),
        ]
    );

    // The map feeds `ferry rewrite`; the override file names each image.
    let m: Value = serde_json::from_slice(&std::fs::read(&map).unwrap()).unwrap();
    assert_eq!(m["format"], "ferry-map");
    assert_eq!(m["images"].as_array().unwrap().len(), 3);
    assert_eq!(m["images"][0]["source"], "docker.io/library/app:1.0");
    assert_eq!(
        m["images"][0]["target"],
        format!("{host}/mirror/library/app")
    );
    assert_eq!(m["images"][0]["digest"], r["artifacts"][0]["digest"]);
    let d = std::fs::read_to_string(&digests).unwrap();
    assert_eq!(
        d,
        format!("images_digests:\n  tools:\n    tool:\n      image_repository_path: mirror/team/tool\n      image_repository_server: {host}\n      image_tag: \"2\"\n    app:\n      image_repository_path: mirror/library/app\n      image_repository_server: {host}\n      image_tag: \"1.0\"\n"),
        "the installer's shape, only server and path changed"
    );
    assert!(
        out.stderr.contains("2 of 2 entries of") && out.stderr.contains("digests.yml"),
        "{}",
        out.stderr
    );

    // Idempotent: a second load pushes no blob and no manifest.
    let again = load(&archive, &target, &[], None);
    let r2 = report(&again);
    assert!(again.ok(), "{}", again.stderr);
    assert_eq!(r2["counts"]["uploaded"], 0);
    assert_eq!(r2["counts"]["mounted"], 0);
    assert_eq!(r2["counts"]["manifests_pushed"], 0);
    assert_eq!(r2["counts"]["present"], c["blob_placements"]);
}

#[test]
fn load_into_a_registry_with_auth_uses_given_or_configured_credentials() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 16 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), true);
    let host = reg.host();

    // No credentials at all: the registry and where ferry looked are named.
    let out = load(&archive, &host, &[], None);
    let msg = out.expect_fail("load without credentials");
    assert!(
        msg.contains(&format!(
            "registry {host} asks for credentials and none were found"
        )),
        "{msg}"
    );
    assert!(reg.repositories().is_empty(), "nothing was pushed");
    // … naming the file it looked at, as an absolute path even when
    // DOCKER_CONFIG is relative (or empty: then ~/.docker).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.current_dir(t.path())
        .args(["--quiet", "load"])
        .arg(&archive)
        .args(["--registry", &host])
        .env("DOCKER_CONFIG", "rel-config");
    let msg = run(&mut cmd).expect_fail("load with a relative DOCKER_CONFIG");
    let looked = t.path().join("rel-config/config.json");
    assert!(
        msg.contains(&format!("{} (absent)", looked.display())),
        "{msg}"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["--quiet", "load"])
        .arg(&archive)
        .args(["--registry", &host])
        .env("DOCKER_CONFIG", "")
        .env("HOME", t.path());
    let msg = run(&mut cmd).expect_fail("load with an empty DOCKER_CONFIG");
    let looked = t.path().join(".docker/config.json");
    assert!(
        msg.contains(&format!("{} (absent)", looked.display())),
        "{msg}"
    );

    // A wrong password: refused, naming the credential source.
    let out = load(
        &archive,
        &host,
        &["--username", USER, "--password-stdin"],
        Some("wrong\n"),
    );
    let msg = out.expect_fail("load with a wrong password");
    assert!(
        msg.contains(&format!(
            "registry {host} refused the credentials from --username/--password-stdin"
        )),
        "{msg}"
    );

    // The right password on stdin.
    let out = load(
        &archive,
        &host,
        &["--username", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.ok(), "{}", out.stderr);
    check_targets_with_skopeo(&report(&out), t.path(), Some(&format!("{USER}:{PASSWORD}")));

    // Credentials from a docker config ($DOCKER_CONFIG/config.json).
    let cfg = docker_config(t.path(), &host, USER, PASSWORD);
    let out = load_env(
        &archive,
        &format!("{host}/other"),
        &[],
        None,
        &[("DOCKER_CONFIG", &cfg)],
    );
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(report(&out)["artifacts"][0]["ok"], true);
}

#[test]
fn load_resumes_after_the_registry_dies_midway_without_pushing_twice() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 1 << 20);
    let mut reg = DockerRegistry::start(&t.path().join("reg"), false);
    let pid = reg.pid().unwrap();
    // The registry process is killed once 2.5 MiB have gone its way.
    let proxy = CuttingProxy::start(reg.addr, 5 << 19, move || {
        // SAFETY: a signal to the registry process this test started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    });
    let first = load(
        &archive,
        &proxy.addr.to_string(),
        &["--retries", "1", "--jobs", "2"],
        None,
    );
    let msg = first.expect_fail("load into a registry that dies");
    assert!(
        msg.contains("were not loaded into"),
        "the summary says the load is incomplete:\n{msg}"
    );
    assert!(proxy.cut.load(std::sync::atomic::Ordering::Relaxed));
    drop(proxy);

    reg.restart();
    let repos = ["library/app", "team/tool", "org/base-user", "charts/demo"];
    let before: Vec<Vec<String>> = repos.iter().map(|r| reg.linked_blobs(r)).collect();
    assert!(
        before.iter().any(|b| !b.is_empty()),
        "some blobs arrived before the crash"
    );
    let second = load(&archive, &reg.host(), &[], None);
    assert!(second.ok(), "{}\n{}", second.stdout, second.stderr);
    let r = report(&second);
    let uploaded: Vec<String> = r["uploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    // Nothing already complete in a repository is uploaded to it again.
    let all_before: std::collections::BTreeSet<&String> = before.iter().flatten().collect();
    for d in &uploaded {
        assert!(
            !all_before.contains(d),
            "{d} was complete before the crash and was uploaded again"
        );
    }
    assert!(r["counts"]["present"].as_u64().unwrap() > 0);
    check_targets_with_skopeo(&r, t.path(), None);
}

#[test]
fn load_refuses_a_damaged_blob_names_it_and_loads_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 32 << 10);
    // Damage the chart's content layer (same size, different bytes).
    let chart_layer =
        ferry::digest::Digest::of(&std::fs::read(t.path().join("demo-0.1.0.tgz")).unwrap());
    let member = format!("blobs/sha256/{}", chart_layer.hex());
    let mut members = read_members(&archive);
    let m = members.iter_mut().find(|m| m.name == member).unwrap();
    let last = m.data.len() - 1;
    m.data[last] ^= 0xff;
    write_raw_tar(&archive, &members, true);

    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let out = load(&archive, &reg.host(), &["--retries", "1"], None);
    let r = report(&out);
    let msg = out.expect_fail("load of a damaged archive");
    assert!(
        msg.contains(&format!("blob {chart_layer} in"))
            && msg.contains("does not match its digest"),
        "{msg}"
    );
    let failed: Vec<&str> = r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["ok"] == false)
        .map(|a| a["source"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["charts/demo:0.1.0"]);
    assert!(
        !reg.linked_blobs("charts/demo")
            .contains(&chart_layer.to_string()),
        "the damaged blob was not pushed"
    );
    let blob_dir = reg
        .dir
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&chart_layer.hex()[..2])
        .join(chart_layer.hex());
    assert!(!blob_dir.exists(), "no blob data for {chart_layer}");
    assert_eq!(reg.linked_blobs("library/app").len(), 5);
}

#[test]
fn load_refuses_two_sources_for_one_target_before_any_request() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let a = l.image(
        Flavour::Oci,
        "linux",
        "amd64",
        &[build::layer(&[("a", b"a")])],
    );
    l.tag(&a, "docker.io/team/x:1");
    let b = l.image(
        Flavour::Oci,
        "linux",
        "amd64",
        &[build::layer(&[("b", b"b")])],
    );
    l.tag(&b, "quay.io/team/x:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "images:\n  - oci:src:docker.io/team/x:1\n  - oci:src:quay.io/team/x:1\n",
    )
    .unwrap();
    let archive = t.path().join("b.tar");
    pack_spec(&spec, &archive);
    // A listener that would see any request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let msg = load(&archive, &host, &[], None).expect_fail("load with a collision");
    assert!(
        msg.contains("docker.io/team/x:1 and quay.io/team/x:1 would both become team/x:1"),
        "{msg}"
    );
    assert!(listener.accept().is_err(), "no connection was made");
    // --keep-host separates them.
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let out = load(&archive, &reg.host(), &["--keep-host"], None);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(reg.repositories(), ["docker.io/team/x", "quay.io/team/x"]);
}

#[test]
fn an_unreachable_registry_is_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 1 << 10);
    // Port 9 (discard) on loopback: nothing listens. The error is about
    // the registry, naming both schemes tried (loopback speaks plain HTTP
    // when it answers there), not about a blob over https after retries.
    let msg =
        load(&archive, "127.0.0.1:9", &[], None).expect_fail("load into an unreachable registry");
    assert!(
        msg.contains("cannot reach the registry 127.0.0.1:9")
            && msg.contains("http://127.0.0.1:9/v2/ and https://127.0.0.1:9/v2/")
            && msg.contains("Connection refused")
            && !msg.contains("blob")
            && !msg.contains("attempts"),
        "{msg}"
    );
    assert_eq!(
        msg.matches("Connection refused").count(),
        1,
        "one error, not one per blob: {msg}"
    );
}

#[test]
fn dry_run_reports_the_plan_and_pushes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 8 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let out = load(&archive, &reg.host(), &["--dry-run"], None);
    assert!(out.ok(), "{}", out.stderr);
    let r = report(&out);
    assert_eq!(r["dry_run"], true);
    let c = &r["counts"];
    assert_eq!(
        c["uploaded"].as_u64().unwrap() + c["mounted"].as_u64().unwrap(),
        c["blob_placements"].as_u64().unwrap(),
        "{c}"
    );
    assert!(c["bytes_uploaded"].as_u64().unwrap() > 0);
    assert!(c["manifests_pushed"].as_u64().unwrap() >= 6);
    assert!(reg.repositories().is_empty(), "a dry run pushes nothing");
}

#[test]
fn load_falls_back_to_chunked_upload_when_a_proxy_limits_body_size() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 3 << 20);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    // nginx's default client_max_body_size: 1 MiB.
    let proxy = support::registry::BodyLimitProxy::start(reg.addr, 1 << 20);
    let out = load(&archive, &proxy.addr.to_string(), &[], None);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        proxy.refused.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "monolithic uploads of the 3 MiB layers were refused"
    );
    // Checked at the registry itself (the proxy serves one request per
    // connection, which makes skopeo slow).
    let direct: Value =
        serde_json::from_str(&out.stdout.replace(&proxy.addr.to_string(), &reg.host())).unwrap();
    check_targets_with_skopeo(&direct, t.path(), None);
}

#[test]
fn load_over_tls_trusts_a_private_ca_given_with_ca_file() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 8 << 10);
    let (ca, cert, key) = private_ca(t.path());
    let reg = DockerRegistry::start_with(&t.path().join("reg"), false, Some((&cert, &key)));
    // Not trusted: the failure names the registry and says why.
    let out = load(&archive, &reg.host(), &[], None);
    let msg = out.expect_fail("load to an untrusted certificate");
    assert!(msg.contains(&reg.host()), "{msg}");
    assert!(
        msg.contains("presented a TLS certificate ferry does not trust")
            && msg.contains("--ca-file"),
        "{msg}"
    );
    assert!(reg.repositories().is_empty());
    // Trusted with --ca-file: everything lands, over HTTPS.
    let out = load(
        &archive,
        &reg.host(),
        &["--ca-file", ca.to_str().unwrap()],
        None,
    );
    assert!(out.ok(), "{}", out.stderr);
    let r = report(&out);
    assert!(r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["ok"] == true));
    assert_eq!(reg.repositories().len(), 4);
}

#[test]
fn a_tag_that_points_elsewhere_is_not_moved_without_force() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    // Same references, different content.
    let first = fixture_bundle(&da, 4 << 10);
    let second = fixture_bundle(&db, 8 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    assert!(load(&first, &host, &[], None).ok());
    let before = report(&load(&first, &host, &["--dry-run"], None))["artifacts"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = load(&second, &host, &[], None);
    let r = report(&out);
    let new = r["artifacts"][0]["digest"].as_str().unwrap().to_owned();
    let msg = out.expect_fail("load over tags that point elsewhere");
    assert!(
        msg.contains(&format!(
            "tag {host}/library/app:1.0 already points to {before}, not to {new}"
        )) && msg.contains("--force"),
        "{msg}"
    );
    let tag = format!("{host}/library/app:1.0");
    let digest_at = |tag: &str| {
        let raw = registry_manifest(tag, None).expect_ok("skopeo inspect");
        ferry::digest::Digest::of(raw.as_bytes()).to_string()
    };
    assert_eq!(digest_at(&tag), before, "the tag was left alone");

    let out = load(&second, &host, &["--force"], None);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(digest_at(&tag), new, "--force moved it");
}

#[test]
fn a_registry_out_of_disk_fails_the_load_and_leaves_no_tag() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let proxy = support::registry::FaultProxy::start(
        reg.addr,
        "/blobs/uploads/",
        support::registry::Fault::DiskFull,
        u64::MAX,
    );
    let out = load(&archive, &proxy.addr.to_string(), &["--retries", "1"], None);
    let msg = out.expect_fail("load into a full registry");
    assert!(
        msg.contains("uploading blob sha256:") && msg.contains("507"),
        "{msg}"
    );
    assert!(msg.contains("4 of 4 artifacts were not loaded"), "{msg}");
    let tags = reg
        .dir
        .join("data/docker/registry/v2/repositories/library/app/_manifests/tags");
    assert!(!tags.exists(), "no tag points at an incomplete image");
}

/// A registry that throttles a manifest push with 429 and `Retry-After`
/// is asked again only after the wait it named (ferry's own first backoff
/// would be 0.5 s), and the load completes.
#[test]
fn a_throttled_push_is_retried_after_the_wait_the_registry_asks_for() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let needle = "PUT /v2/library/app/manifests/";
    let proxy = support::registry::FaultProxy::start(
        reg.addr,
        needle,
        support::registry::Fault::TooManyRequests(2),
        1,
    );
    let out = load(&archive, &proxy.addr.to_string(), &[], None);
    assert!(out.ok(), "{}", out.stderr);
    proxy.assert_asked_again_after(needle, 2);
    // Checked on the registry itself: skopeo's TLS probe would stall on
    // the plain-text proxy.
    let tags = assert_every_tag_is_complete(&reg, t.path());
    assert!(tags.contains(&"library/app:1.0".to_owned()), "{tags:?}");
    assert!(tags.contains(&"team/tool:2".to_owned()), "{tags:?}");
}

/// A registry may answer the start of an upload with a `Location` on
/// another host. ferry follows it, but never with the registry's
/// credentials; when that host asks for them the blob fails, named with
/// the place it was sent, and no tag points at an incomplete image. A
/// re-run against a sane registry completes.
#[test]
fn an_upload_location_on_another_host_gets_no_credentials_and_no_tag_is_left() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), true);
    let elsewhere = support::registry::FaultProxy::recording(reg.addr);
    let front = support::registry::FaultProxy::start(
        reg.addr,
        "/blobs/uploads/",
        support::registry::Fault::MoveUploads(elsewhere.addr),
        u64::MAX,
    );
    let front_host = front.addr.to_string();
    let login = ["--username", USER, "--password-stdin", "--retries", "1"];
    let password = format!("{PASSWORD}\n");
    let out = load(&archive, &front_host, &login, Some(&password));
    let msg = out.expect_fail("load with uploads sent elsewhere");
    let other = format!("http://{}/v2/", elsewhere.addr);
    assert!(
        msg.contains(&format!(
            "at {front_host}: the registry sent the request on to {other}"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("another host, which asked for credentials"),
        "{msg}"
    );
    assert!(msg.contains("uploading blob sha256:"), "{msg}");
    assert!(
        !elsewhere.heads.lock().unwrap().is_empty(),
        "the uploads went there"
    );
    assert_eq!(elsewhere.with_credentials(), Vec::<String>::new());
    assert!(!front.with_credentials().is_empty());
    let tags = reg
        .dir
        .join("data/docker/registry/v2/repositories/library/app/_manifests/tags");
    assert!(!tags.exists(), "no tag points at an incomplete image");

    let out = load(&archive, &reg.host(), &login, Some(&password));
    assert!(out.ok(), "{}", out.stderr);
    check_targets_with_skopeo(&report(&out), t.path(), Some(&format!("{USER}:{PASSWORD}")));
}

/// A load that stops in a phase after the blobs (the child manifests of
/// an index, pushed by digest; the index itself, pushed by its tag) leaves
/// no tag that resolves to an incomplete image, the other artifacts load,
/// and a re-run completes. (Stopping in the blob phase is covered by the
/// out-of-disk and registry-dies tests.)
#[test]
fn a_load_failing_in_any_manifest_phase_leaves_no_tag_on_an_incomplete_image() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    for (phase, needle) in [
        ("child manifests", "/library/app/manifests/sha256:"),
        ("the index and its tag", "/library/app/manifests/1.0"),
    ] {
        let scratch = t.path().join(phase.replace(' ', "-"));
        let reg = DockerRegistry::start(&scratch.join("reg"), false);
        let proxy = support::registry::FaultProxy::start(
            reg.addr,
            needle,
            support::registry::Fault::DiskFull,
            u64::MAX,
        );
        let out = load(&archive, &proxy.addr.to_string(), &["--retries", "0"], None);
        let msg = out.expect_fail(&format!("load failing on {phase}"));
        assert!(msg.contains("507"), "{phase}: {msg}");
        assert!(
            proxy.hits.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "{phase}"
        );
        let tags = assert_every_tag_is_complete(&reg, &scratch);
        assert!(
            !tags.iter().any(|t| t.starts_with("library/app:")),
            "{phase}: {tags:?}"
        );
        assert!(
            tags.contains(&"team/tool:2".to_owned()),
            "{phase}: {tags:?}"
        );
        let out = load(&archive, &reg.host(), &[], None);
        assert!(out.ok(), "{phase}: {}", out.stderr);
        check_targets_with_skopeo(&report(&out), &scratch, None);
    }
}

/// Ctrl-C while an upload hangs: exit 130, every tag already pushed is
/// complete, and a re-run completes.
#[test]
fn ctrl_c_mid_load_exits_130_and_a_rerun_completes() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 256 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let proxy = support::registry::FaultProxy::start(
        reg.addr,
        "/blobs/uploads/",
        support::registry::Fault::Stall,
        1,
    );
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "load"])
        .arg(&archive)
        .args(["--registry", &proxy.addr.to_string()])
        .env("DOCKER_CONFIG", t.path().join("no-docker-config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_when(child, "the load", || {
        proxy.hits.load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    assert_every_tag_is_complete(&reg, t.path());

    let out = load(&archive, &reg.host(), &[], None);
    assert!(out.ok(), "{}", out.stderr);
    check_targets_with_skopeo(&report(&out), t.path(), None);
}

/// The one failed artifact's error in a `--json` load report.
fn the_error(out: &Out) -> String {
    let r = report(out);
    let failed: Vec<&Value> = r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["ok"] != true)
        .collect();
    assert_eq!(failed.len(), 1, "one artifact fails: {r:#}");
    failed[0]["error"].as_str().unwrap().to_owned()
}

/// A registry answering a manifest push with a 400 MB error body (sent
/// as it is read, never held by the test): ferry keeps at most 64 KiB of
/// it and shows the registry's answer on one short line, escaped, with
/// the status and the reference; it reads little more than that.
#[test]
fn a_huge_error_body_on_a_manifest_push_is_cut_to_one_short_line() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let huge = 400 << 20;
    let proxy = support::registry::FaultProxy::start(
        reg.addr,
        "/team/tool/manifests/2",
        support::registry::Fault::Huge {
            method: "PUT",
            status: 400,
            bytes: huge,
            declared: true,
        },
        u64::MAX,
    );
    let out = load(&archive, &proxy.addr.to_string(), &["--retries", "0"], None);
    let e = the_error(&out);
    assert!(out
        .expect_fail("load")
        .contains("1 of 4 artifacts were not loaded"));
    assert!(e.contains("pushing manifest team/tool:2"), "{e}");
    assert!(e.contains("code: 400"), "{e}");
    assert!(e.contains("the registry says no"), "{e}");
    assert!(!e.chars().any(char::is_control), "one line, escaped: {e:?}");
    assert!(e.contains("\\u{1b}[2J"), "{e}");
    assert!(e.len() < 2048, "{} bytes: {e}", e.len());
    let sent = proxy.body_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 64 << 20, "read {sent} of {huge} bytes");
}

/// A registry that stores other bytes than ferry pushed (here the proxy
/// adds a byte on the way, and the registry honestly answers with the
/// digest of what it stored), or that answers a push with another digest
/// than the pushed one: the artifact fails, naming the reference and both
/// digests, and is not reported loaded.
#[test]
fn a_manifest_push_answered_with_another_digest_fails_naming_both() {
    use support::registry::{Fault, FaultProxy, PutDigest};
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for (case, alter, digest) in [
        ("other bytes stored", true, PutDigest::AsSent),
        ("another digest answered", false, PutDigest::Replaced(other)),
    ] {
        let scratch = t.path().join(case.replace(' ', "-"));
        let reg = DockerRegistry::start(&scratch.join("reg"), false);
        let proxy = FaultProxy::start(
            reg.addr,
            "/team/tool/manifests/2",
            Fault::ManifestPut { alter, digest },
            u64::MAX,
        );
        let host = proxy.addr.to_string();
        let map = scratch.join("map.yaml");
        let out = load(&archive, &host, &["--map-out", map.to_str().unwrap()], None);
        let e = the_error(&out);
        let tool = report(&out)["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["target"].as_str().unwrap().ends_with("/team/tool"))
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        out.expect_fail(case);
        assert!(e.contains(&format!("{host}/team/tool:2")), "{case}: {e}");
        assert!(e.contains(&tool), "{case}: pushed digest named: {e}");
        let answered = if alter {
            let stored = registry_manifest(&format!("{}/team/tool:2", reg.host()), None)
                .expect_ok("skopeo inspect");
            assert!(stored.ends_with('\n'), "the registry stored other bytes");
            ferry::digest::Digest::of(stored.as_bytes()).to_string()
        } else {
            other.to_owned()
        };
        assert!(e.contains(&answered), "{case}: answered digest named: {e}");
        let map = std::fs::read_to_string(&map).unwrap_or_default();
        assert!(!map.contains("team/tool"), "{case}: not in the map: {map}");
    }
}

/// A registry that answers a manifest push without `Docker-Content-Digest`
/// is asked, with a `HEAD` of the pushed digest, whether it holds it: an
/// honest one does and the load completes; one that stored other bytes
/// does not, and the artifact fails naming the reference and the digest.
#[test]
fn a_manifest_push_answered_without_a_digest_is_checked_with_a_head() {
    use support::registry::{Fault, FaultProxy, PutDigest};
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    for alter in [false, true] {
        let scratch = t.path().join(format!("alter-{alter}"));
        let reg = DockerRegistry::start(&scratch.join("reg"), false);
        let proxy = FaultProxy::start(
            reg.addr,
            "/team/tool/manifests/2",
            Fault::ManifestPut {
                alter,
                digest: PutDigest::Dropped,
            },
            u64::MAX,
        );
        let host = proxy.addr.to_string();
        let out = load(&archive, &host, &[], None);
        let r = report(&out);
        let tool = r["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["target"].as_str().unwrap().ends_with("/team/tool"))
            .unwrap()
            .clone();
        let digest = tool["digest"].as_str().unwrap();
        let mut heads = proxy.heads.lock().unwrap().clone();
        heads.sort_by_key(|(at, _)| *at);
        let lines: Vec<&str> = heads
            .iter()
            .map(|(_, h)| h.lines().next().unwrap_or(""))
            .collect();
        let put = lines
            .iter()
            .position(|l| l.starts_with("PUT /v2/team/tool/manifests/2 "))
            .unwrap();
        assert!(
            lines[put..]
                .iter()
                .any(|l| l.starts_with(&format!("HEAD /v2/team/tool/manifests/{digest} "))),
            "alter {alter}: the pushed digest is asked for after the push: {lines:?}"
        );
        if alter {
            let e = the_error(&out);
            out.expect_fail("load into a registry storing other bytes");
            assert!(e.contains(&format!("{host}/team/tool:2")), "{e}");
            assert!(e.contains(digest), "{e}");
        } else {
            assert!(out.ok(), "{}", out.stderr);
            check_targets_with_skopeo(
                &serde_json::from_str(&out.stdout.replace(&host, &reg.host())).unwrap(),
                &scratch,
                None,
            );
        }
    }
}

/// A blob `HEAD` that does not prove the blob is there (a redirect loop,
/// a 302 with nowhere to go, a 200 with the wrong length) is "not
/// present": the blob is uploaded (uploading again is always safe), and
/// every tag resolves to a complete image.
#[test]
fn a_blob_head_that_lies_about_presence_does_not_stop_the_upload() {
    use support::registry::{Fault, FaultProxy, HeadLie};
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    for lie in [
        HeadLie::RedirectLoop,
        HeadLie::FoundWithoutLocation,
        HeadLie::WrongLength,
    ] {
        let scratch = t.path().join(format!("{lie:?}"));
        let reg = DockerRegistry::start(&scratch.join("reg"), false);
        let proxy = FaultProxy::start(reg.addr, "/blobs/sha256:", Fault::BlobHead(lie), u64::MAX);
        let out = load(&archive, &proxy.addr.to_string(), &["--retries", "0"], None);
        assert!(out.ok(), "{lie:?}: {}{}", out.stdout, out.stderr);
        assert!(proxy.hits.load(std::sync::atomic::Ordering::Relaxed) > 0);
        let r = report(&out);
        assert_eq!(r["counts"]["present"], 0, "{lie:?}: {r:#}");
        // A dry run looks with HEADs only: every lie is "not there".
        let dry = load(
            &archive,
            &proxy.addr.to_string(),
            &["--retries", "0", "--dry-run"],
            None,
        );
        assert!(dry.ok(), "{lie:?}: {}", dry.stderr);
        let d = report(&dry);
        assert_eq!(d["counts"]["present"], 0, "{lie:?}: {d:#}");
        assert_eq!(d["counts"]["uploaded"], r["counts"]["uploaded"], "{lie:?}");
        let tags = assert_every_tag_is_complete(&reg, &scratch);
        assert_eq!(tags.len(), 4, "{lie:?}: {tags:?}");
    }
}

/// A tag from bundle.json that would walk out of its repository in a URL
/// (`1.0.0/../../x/manifests/9.9`) never reaches a request: it is refused,
/// named, when the targets are named, before anything is pushed.
#[test]
fn load_never_puts_a_tag_that_leaves_its_repository_into_a_url() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    let mut members = read_members(&archive);
    let bundle = bundle_of(&members);
    let evil = "1.0.0/../../x/manifests/9.9";
    let chart = bundle["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "chart")
        .unwrap();
    let reference = chart["reference"].as_str().unwrap().to_owned();
    let (name, _) = reference.rsplit_once(':').unwrap();
    // bundle.json and index.json both name it so: the bundle model
    // agrees, and only the tag itself is wrong.
    support::hand::rename_artifact(&mut members, &reference, &format!("{name}:{evil}"));
    let bad = t.path().join("bad.tar");
    write_raw_tar(&bad, &members, true);

    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let proxy = support::registry::FaultProxy::recording(reg.addr);
    let out = load(&bad, &proxy.addr.to_string(), &[], None);
    // Refused when the target is named, before any request; the
    // registry client refuses such a tag too, as the last line
    // (`remote::tests::repositories_and_tags_outside_the_grammar_never_become_a_request`).
    let e = out.expect_fail("load of a bundle with a tag that is a path");
    assert!(e.contains(&format!("{evil:?}")), "{e}");
    assert!(e.contains("not a valid tag"), "{e}");
    let heads = proxy.heads.lock().unwrap().clone();
    for (_, h) in heads {
        let line = h.lines().next().unwrap_or("");
        assert!(!line.contains(".."), "{line}");
        assert!(!line.contains("/x/"), "{line}");
    }
    assert!(!reg
        .repositories()
        .iter()
        .any(|r| r.ends_with("/x") || r == "x"));
}

/// A dry run predicts what the load then does: the same uploads, the same
/// mounts (a shared layer's second repository), the same bytes.
#[test]
fn a_dry_run_predicts_the_loads_uploads_and_mounts() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 64 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let target = format!("{}/mirror", reg.host());
    let dry = load(&archive, &target, &["--dry-run"], None);
    assert!(dry.ok(), "{}\n{}", dry.stdout, dry.stderr);
    assert!(reg.tags().is_empty(), "a dry run pushed: {:?}", reg.tags());
    let real = load(&archive, &target, &[], None);
    assert!(real.ok(), "{}\n{}", real.stdout, real.stderr);
    let (d, r) = (&report(&dry)["counts"], &report(&real)["counts"]);
    assert!(r["mounted"].as_u64().unwrap() >= 1, "{r}");
    for k in ["uploaded", "mounted", "bytes_uploaded", "present"] {
        assert_eq!(d[k], r[k], "{k}: dry run {d}, load {r}");
    }
}

/// Against a registry that asks for no credentials, the client asks its
/// `/v2/` once per client, not before every request (that doubled the
/// requests of a load of many small blobs).
#[test]
fn an_open_registry_is_not_asked_for_credentials_before_every_request() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 64 << 10);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let proxy = support::registry::FaultProxy::recording(reg.addr);
    let out = load(&archive, &proxy.addr.to_string(), &[], None);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let heads = proxy.heads.lock().unwrap().clone();
    let line = |h: &String| h.lines().next().unwrap_or("").to_owned();
    let pings = heads
        .iter()
        .filter(|(_, h)| line(h).starts_with("GET /v2/ "))
        .count();
    let others = heads.len() - pings;
    assert!(others >= 10, "{heads:?}");
    // The connect probe, and at most one per client (blobs and manifests
    // use one each).
    assert!(
        pings <= 3,
        "{pings} pings of /v2/ for {others} other requests: {:?}",
        heads.iter().map(|(_, h)| line(h)).collect::<Vec<_>>()
    );
}

/// The requests of a load, from the registry's access log, by kind.
fn requests_by_kind(log: &[String]) -> std::collections::BTreeMap<&'static str, usize> {
    let mut by = std::collections::BTreeMap::new();
    for l in log {
        let kind = match l.split(' ').next().unwrap_or("") {
            "HEAD" if l.contains("/blobs/sha256:") => "HEAD blob",
            "HEAD" if l.contains("/manifests/") => "HEAD manifest",
            "GET" if l.contains("/manifests/") => "GET manifest",
            "POST" if l.contains("mount=") => "POST mount",
            "POST" => "POST upload",
            "PUT" if l.contains("/blobs/uploads/") => "PUT blob",
            "PUT" if l.contains("/manifests/") => "PUT manifest",
            "DELETE" => "DELETE",
            _ => "other",
        };
        *by.entry(kind).or_insert(0) += 1;
    }
    by
}

/// Into an empty registry, a new blob costs two requests (a mount of it
/// from its own repository, which opens the upload session its `PUT`
/// uses), a blob another repository got this run one (a mount, with no
/// `HEAD` before it), a manifest pushed by digest one (its `PUT`) and a
/// tag two (a `HEAD`, then the `PUT`): no `GET` after a `HEAD` that found
/// nothing. A second load looks with `HEAD`s only and writes nothing.
#[test]
fn a_load_into_an_empty_registry_makes_only_the_requests_it_needs() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 4 << 10);
    let reg = DockerRegistry::start_logged(&t.path().join("reg"));
    let out = load(&archive, &reg.host(), &[], None);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let c = report(&out)["counts"].clone();
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let (uploaded, mounted, pushed) = (n("uploaded"), n("mounted"), n("manifests_pushed"));
    assert!(mounted >= 1 && uploaded >= 8, "{c}");
    let log = reg.access_log();
    let by = requests_by_kind(&log);
    let count = |k: &str| by.get(k).copied().unwrap_or(0);
    assert_eq!(count("POST mount"), uploaded + mounted, "{by:?}\n{log:#?}");
    assert_eq!(count("PUT blob"), uploaded, "{by:?}");
    assert_eq!(count("POST upload"), 0, "{by:?}");
    // The first blob is looked for twice before the pool starts (the
    // probe of the registry, then the choice of how to look).
    assert!(count("HEAD blob") <= 2, "{by:?}");
    assert_eq!(count("HEAD manifest"), 4, "the four tags only: {by:?}");
    assert_eq!(count("GET manifest"), 0, "{by:?}");
    assert_eq!(count("PUT manifest"), pushed, "{by:?}");
    assert_eq!(count("DELETE"), 0, "{by:?}");
    check_targets_with_skopeo(&report(&out), t.path(), None);

    let before = reg.access_log().len();
    let again = load(&archive, &reg.host(), &[], None);
    assert!(again.ok(), "{}", again.stderr);
    let c2 = report(&again)["counts"].clone();
    assert_eq!(c2["uploaded"], 0, "{c2}");
    assert_eq!(c2["present"], c["blob_placements"], "{c2}");
    let log = reg.access_log();
    let by = requests_by_kind(&log[before..]);
    let count = |k: &str| by.get(k).copied().unwrap_or(0);
    for k in [
        "POST mount",
        "POST upload",
        "PUT blob",
        "PUT manifest",
        "DELETE",
    ] {
        assert_eq!(count(k), 0, "a second load sent {k}: {by:?}");
    }
    assert_eq!(count("HEAD blob"), n("blob_placements") + 2, "{by:?}");
    assert_eq!(count("HEAD manifest"), pushed, "{by:?}");
}

/// A blob whose bytes turn out damaged while they are uploaded: the
/// upload session it was going to is cancelled (`DELETE`), so the
/// registry keeps no part of it, rather than left open.
#[test]
fn a_damaged_blobs_upload_session_is_cancelled_not_left_open() {
    let t = tempfile::tempdir().unwrap();
    let archive = fixture_bundle(t.path(), 32 << 10);
    let chart_layer =
        ferry::digest::Digest::of(&std::fs::read(t.path().join("demo-0.1.0.tgz")).unwrap());
    let member = format!("blobs/sha256/{}", chart_layer.hex());
    let mut members = read_members(&archive);
    let m = members.iter_mut().find(|m| m.name == member).unwrap();
    let last = m.data.len() - 1;
    m.data[last] ^= 0xff;
    write_raw_tar(&archive, &members, true);

    let reg = DockerRegistry::start_logged(&t.path().join("reg"));
    let out = load(&archive, &reg.host(), &["--retries", "1"], None);
    let msg = out.expect_fail("load of a damaged archive");
    assert!(msg.contains("does not match its digest"), "{msg}");
    let log = reg.access_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("DELETE /v2/charts/demo/blobs/uploads/")),
        "{log:#?}"
    );
    // What a session keeps: its start time and the bytes sent so far.
    // (distribution 2.8 writes an empty hash state back into the folder of
    // a session it cancelled; that is no session.)
    let sessions = reg
        .dir
        .join("data/docker/registry/v2/repositories/charts/demo/_uploads");
    let open: Vec<String> = walkdir::WalkDir::new(&sessions)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() == "data" || e.file_name() == "startedat")
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(open.is_empty(), "upload sessions left open: {open:?}");
}

/// The documents of an index go at once, but a nested index only after
/// the manifests it names (a registry refuses an index naming a manifest
/// it does not hold), and the tag last: an index of an index loads whole.
#[test]
fn a_nested_index_is_pushed_after_the_manifests_it_names() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let inner = build::multi_arch(&mut l, 31, 4 << 10);
    let extra = l.image(
        Flavour::Oci,
        "linux",
        "s390x",
        &[build::layer(&[(
            "bin/x",
            &build::pseudo_random(35, 4 << 10),
        )])],
    );
    let held = [inner.digest, extra.digest];
    let outer = l.index(Flavour::Oci, vec![inner, extra]);
    l.tag(&outer, "docker.io/library/nested:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: nested\nimages:\n  - oci:src:docker.io/library/nested:1\n",
    )
    .unwrap();
    let archive = t.path().join("bundle.tar");
    pack_spec(&spec, &archive);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let out = load(&archive, &reg.host(), &[], None);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out);
    assert_eq!(r["counts"]["manifests_pushed"], 5, "{r:#}");
    // (skopeo copies no index of indexes: the registry is asked directly.)
    let raw = registry_manifest(&format!("{}/library/nested:1", reg.host()), None)
        .expect_ok("skopeo inspect --raw of the tag");
    assert_eq!(
        ferry::digest::Digest::of(raw.as_bytes()),
        outer.digest,
        "the tag names the outer index"
    );
    let revisions = reg
        .dir
        .join("data/docker/registry/v2/repositories/library/nested/_manifests/revisions/sha256");
    for d in held {
        assert!(revisions.join(d.hex()).exists(), "{d} is in the registry");
    }
    let again = load(&archive, &reg.host(), &[], None);
    assert!(again.ok(), "{}", again.stderr);
    assert_eq!(report(&again)["counts"]["manifests_pushed"], 0);
}
