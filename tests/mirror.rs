//! `ferry mirror` from one real distribution registry (`docker-registry`)
//! into another, both on loopback: exact digests, a second run that sends
//! nothing (read from the target's access log), resuming after the target
//! dies midway, a blob damaged in transit never committed, platform
//! filters giving the digest `pack` gives, tag rules, dry runs, and no
//! disk used on the way.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::registry::{CuttingProxy, DockerRegistry, Fault, FaultProxy};
use support::*;

/// The source images: a multi-arch OCI image and two single-platform
/// images sharing a base layer (so one blob goes to two target
/// repositories: one upload, one mount).
const IMAGES: &[&str] = &["library/app:1.0", "team/tool:2", "org/base-user:3"];

/// A registry holding [`IMAGES`], with layers of `layer_size` bytes; and
/// the layer digest only `team/tool` has.
fn source_registry(dir: &Path, layer_size: usize) -> (DockerRegistry, String) {
    let reg = DockerRegistry::start(&dir.join("source"), false);
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let app = build::multi_arch(&mut l, 21, layer_size);
    l.tag(&app, "app");
    let base = build::layer(&[("etc/shared", &build::pseudo_random(100, layer_size))]);
    let x = build::layer(&[("bin/tool", &build::pseudo_random(101, layer_size))]);
    let y = build::layer(&[("bin/user", &build::pseudo_random(102, layer_size))]);
    let x_digest = ferry::digest::Digest::of(&x.0).to_string();
    let tool = l.image(Flavour::Oci, "linux", "amd64", &[base.clone(), x]);
    l.tag(&tool, "tool");
    let user = l.image(Flavour::Oci, "linux", "amd64", &[base, y]);
    l.tag(&user, "user");
    let layout = l.finish();
    for (name, to) in ["app", "tool", "user"].iter().zip(IMAGES) {
        push(
            &format!("oci:{}:{name}", layout.display()),
            &format!("{}/{to}", reg.host()),
        );
    }
    (reg, x_digest)
}

fn push(from: &str, to: &str) {
    run(skopeo().args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        &format!("docker://{to}"),
    ]))
    .expect_ok(&format!("skopeo copy {from} {to}"));
}

/// A spec naming every image of [`IMAGES`] at `host`.
fn spec(dir: &Path, host: &str, extra: &str) -> PathBuf {
    let p = dir.join("ferry.yaml");
    let images: String = IMAGES.iter().map(|i| format!("  - {host}/{i}\n")).collect();
    std::fs::write(&p, format!("name: mirror-test\nimages:\n{images}{extra}")).unwrap();
    p
}

/// `ferry mirror SPEC --registry TARGET --json ARGS…`, with a fresh,
/// empty TMPDIR and cache under `dir` (returned, to check they stay
/// empty) and no docker config.
fn mirror(dir: &Path, spec: &Path, target: &str, args: &[&str]) -> Out {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("--quiet")
        .arg("mirror")
        .arg(spec)
        .args(["--registry", target])
        .args(args)
        .env("TMPDIR", &tmp)
        .env("FERRY_CACHE", dir.join("cache"))
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .stdin(Stdio::null());
    run(&mut cmd)
}

fn report(out: &Out) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}\n{}", out.stdout, out.stderr))
}

/// The digest of the manifest `reference` answers with.
fn digest_at(reference: &str) -> String {
    let raw = registry_manifest(reference, None).expect_ok(&format!("skopeo inspect {reference}"));
    ferry::digest::Digest::of(raw.as_bytes()).to_string()
}

/// Whether the registry's storage holds blob `digest` at all (in any
/// repository, committed or not).
fn stores_blob(reg: &DockerRegistry, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    reg.dir
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .exists()
}

fn uploads(reg: &DockerRegistry) -> Vec<String> {
    reg.access_log()
        .into_iter()
        .filter(|r| r.contains("/blobs/uploads/"))
        .collect()
}

/// Nothing was written to TMPDIR or the cache: mirror streams.
fn assert_no_disk_used(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "mirror wrote to TMPDIR: {left:?}");
    assert!(
        !dir.join("cache").exists(),
        "mirror created the cache directory"
    );
}

#[test]
fn mirror_copies_exact_digests_and_a_second_run_uploads_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (src, _) = source_registry(t.path(), 64 << 10);
    let target = DockerRegistry::start_logged(&t.path().join("target"));
    let spec = spec(t.path(), &src.host(), "");

    let first = mirror(t.path(), &spec, &target.host(), &["--json"]);
    assert!(first.ok(), "{}\n{}", first.stdout, first.stderr);
    let r = report(&first);
    for (a, image) in r["artifacts"].as_array().unwrap().iter().zip(IMAGES) {
        assert_eq!(a["ok"], true, "{a}");
        let (repo, tag) = image.split_once(':').unwrap();
        assert_eq!(a["target"], format!("{}/{repo}", target.host()));
        assert_eq!(
            digest_at(&format!("{}/{repo}:{tag}", target.host())),
            digest_at(&format!("{}/{image}", src.host())),
            "{image}: the target holds the source's exact manifest"
        );
        assert_eq!(a["digest"], digest_at(&format!("{}/{image}", src.host())));
    }
    let c = &r["counts"];
    assert!(c["uploaded"].as_u64().unwrap() > 0);
    assert_eq!(c["mounted"], 1, "the shared base layer is mounted: {c}");
    assert!(!uploads(&target).is_empty());
    // Every image copies out whole.
    for (i, image) in IMAGES.iter().enumerate() {
        run(skopeo()
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{image}", target.host()))
            .arg(format!(
                "dir:{}",
                t.path().join(format!("out-{i}")).display()
            )))
        .expect_ok(&format!("{image} copies out of the target"));
    }
    assert_no_disk_used(t.path());

    let before = target.access_log().len();
    let second = mirror(t.path(), &spec, &target.host(), &["--json"]);
    assert!(second.ok(), "{}\n{}", second.stdout, second.stderr);
    let r2 = report(&second);
    assert_eq!(r2["counts"]["uploaded"], 0);
    assert_eq!(r2["counts"]["mounted"], 0);
    assert_eq!(r2["counts"]["manifests_pushed"], 0);
    let later: Vec<String> = target.access_log().split_off(before);
    assert!(!later.is_empty(), "the second run was logged");
    let sent: Vec<&String> = later
        .iter()
        .filter(|r| r.starts_with("POST") || r.starts_with("PUT") || r.starts_with("PATCH"))
        .collect();
    assert!(sent.is_empty(), "a second run sends nothing: {sent:?}");
}

#[test]
fn a_mirror_cut_off_midway_resumes_without_resending_finished_blobs() {
    let t = tempfile::tempdir().unwrap();
    let (src, _) = source_registry(t.path(), 1 << 20);
    let mut target = DockerRegistry::start(&t.path().join("target"), false);
    let pid = target.pid().unwrap();
    // The target registry is killed once 2.5 MiB have gone its way (at
    // most two 1 MiB uploads in flight, so at least one blob was sent
    // whole) and it has committed one: on a busy machine it may still be
    // writing that blob when the budget runs out.
    let repos_dir = target.dir.join("data/docker/registry/v2/repositories");
    let proxy = CuttingProxy::start(target.addr, 5 << 19, move || {
        let committed = || {
            walkdir::WalkDir::new(&repos_dir)
                .into_iter()
                .filter_map(|e| e.ok())
                .any(|e| {
                    e.path()
                        .parent()
                        .is_some_and(|p| p.ends_with("_layers/sha256"))
                })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !committed() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: a signal to the registry process this test started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    });
    let spec = spec(t.path(), &src.host(), "");
    let first = mirror(
        t.path(),
        &spec,
        &proxy.addr.to_string(),
        &["--json", "--retries", "1", "--jobs", "2"],
    );
    let msg = first.expect_fail("mirror into a registry that dies");
    assert!(msg.contains("were not mirrored into"), "{msg}");
    assert!(proxy.cut.load(std::sync::atomic::Ordering::Relaxed));
    drop(proxy);

    target.restart();
    let repos = ["library/app", "team/tool", "org/base-user"];
    let before: std::collections::BTreeSet<String> =
        repos.iter().flat_map(|r| target.linked_blobs(r)).collect();
    assert!(!before.is_empty(), "some blobs arrived before the crash");
    let second = mirror(t.path(), &spec, &target.host(), &["--json"]);
    assert!(second.ok(), "{}\n{}", second.stdout, second.stderr);
    let r = report(&second);
    for d in r["uploaded"].as_array().unwrap() {
        assert!(
            !before.contains(d.as_str().unwrap()),
            "{d} was complete before the crash and was sent again"
        );
    }
    assert!(r["counts"]["present"].as_u64().unwrap() > 0);
    for image in IMAGES {
        assert_eq!(
            digest_at(&format!("{}/{image}", target.host())),
            digest_at(&format!("{}/{image}", src.host()))
        );
    }
}

#[test]
fn a_blob_damaged_in_transit_is_never_committed_and_the_error_names_it() {
    let t = tempfile::tempdir().unwrap();
    let (src, x_digest) = source_registry(t.path(), 64 << 10);
    // Every GET of tool's own layer has its last byte flipped.
    let proxy = FaultProxy::start(
        src.addr,
        x_digest.trim_start_matches("sha256:"),
        Fault::Corrupt,
        1000,
    );
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let spec = spec(t.path(), &proxy.addr.to_string(), "");
    let out = mirror(t.path(), &spec, &target.host(), &["--json"]);
    assert!(!out.ok(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out);
    let arts = r["artifacts"].as_array().unwrap();
    let tool = arts
        .iter()
        .find(|a| a["source"].as_str().unwrap().contains("team/tool"))
        .unwrap();
    assert_eq!(tool["ok"], false);
    let why = tool["error"].as_str().unwrap();
    assert!(
        why.contains(&x_digest) && why.contains("does not match its digest"),
        "{why}"
    );
    assert!(
        proxy.hits.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the damage happened"
    );
    // Never committed: not in the repository, not even in blob storage;
    // no tag for the image that needs it.
    assert!(!target.linked_blobs("team/tool").contains(&x_digest));
    assert!(!stores_blob(&target, &x_digest));
    assert!(!target.tags().iter().any(|t| t.starts_with("team/tool")));
    // The other images went through.
    for a in arts.iter().filter(|a| a != &tool) {
        assert_eq!(a["ok"], true, "{a}");
    }
}

#[test]
fn a_platform_filter_gives_the_digest_pack_gives() {
    let t = tempfile::tempdir().unwrap();
    let (src, _) = source_registry(t.path(), 16 << 10);
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let spec = t.path().join("filtered.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: filtered\nimages:\n  - ref: {}/library/app:1.0\n    platforms: [linux/arm64]\n",
            src.host()
        ),
    )
    .unwrap();
    let out = mirror(t.path(), &spec, &target.host(), &["--json"]);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out);
    let mirrored = r["artifacts"][0]["digest"].as_str().unwrap().to_owned();
    assert_ne!(
        mirrored,
        digest_at(&format!("{}/library/app:1.0", src.host())),
        "a filtered index is a new index"
    );
    assert_eq!(
        digest_at(&format!("{}/library/app:1.0", target.host())),
        mirrored
    );
    // The same spec packed: the same index.
    let archive = t.path().join("b.tar");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["--quiet", "pack"])
        .arg(&spec)
        .arg("-o")
        .arg(&archive)
        .env("FERRY_CACHE", t.path().join("pack-cache"))
        .env("DOCKER_CONFIG", t.path().join("no-docker-config"));
    run(&mut cmd).expect_ok("pack the filtered spec");
    let packed = inspect_json(&archive);
    let artifacts = packed["artifacts"].as_array().unwrap();
    assert_eq!(artifacts[0]["digest"].as_str().unwrap(), mirrored);
    // Only the arm64 image went over: one manifest, its config and two layers.
    let raw =
        registry_manifest(&format!("{}/library/app:1.0", target.host()), None).expect_ok("inspect");
    let index: Value = serde_json::from_str(&raw).unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0]["platform"]["architecture"], "arm64");
    assert_eq!(target.linked_blobs("library/app").len(), 3);

    // A platform the image lacks fails naming it, as pack does.
    std::fs::write(
        &spec,
        format!(
            "images:\n  - ref: {}/library/app:1.0\n    platforms: [linux/s390x]\n",
            src.host()
        ),
    )
    .unwrap();
    let msg = mirror(t.path(), &spec, &target.host(), &[]).expect_fail("a missing platform");
    assert!(msg.contains("linux/s390x"), "{msg}");
}

#[test]
fn tag_rules_choose_the_tags_and_mirror_prints_them() {
    let t = tempfile::tempdir().unwrap();
    let src = DockerRegistry::start(&t.path().join("source"), false);
    let mut l = LayoutBuilder::new(&t.path().join("layout"));
    let tags = ["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest"];
    for (i, tag) in tags.iter().enumerate() {
        let layer = build::layer(&[("bin/app", &build::pseudo_random(i as u64, 2048))]);
        let m = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
        l.tag(&m, tag);
    }
    let layout = l.finish();
    for tag in tags {
        push(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("{}/org/app:{tag}", src.host()),
        );
    }
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let spec = t.path().join("rules.yaml");
    std::fs::write(
        &spec,
        format!(
            "images:\n  - ref: {}/org/app\n    tags: {{semver: \"^1\"}}\n",
            src.host()
        ),
    )
    .unwrap();
    let out = mirror(t.path(), &spec, &target.host(), &[]);
    let stdout = out.expect_ok("mirror with a tag rule");
    assert!(stdout.contains("chose 1.0.0, 1.1.0"), "{stdout}");
    assert_eq!(target.tags(), vec!["org/app:1.0.0", "org/app:1.1.0"]);
    for tag in ["1.0.0", "1.1.0"] {
        assert_eq!(
            digest_at(&format!("{}/org/app:{tag}", target.host())),
            digest_at(&format!("{}/org/app:{tag}", src.host()))
        );
    }

    // A rule that matches nothing fails naming the image and the rule.
    std::fs::write(
        &spec,
        format!(
            "images:\n  - ref: {}/org/app\n    tags: {{semver: \"^3\"}}\n",
            src.host()
        ),
    )
    .unwrap();
    let msg = mirror(t.path(), &spec, &target.host(), &[]).expect_fail("a rule matching nothing");
    assert!(msg.contains("org/app") && msg.contains("^3"), "{msg}");
}

#[test]
fn a_dry_run_says_what_would_be_copied_and_mounted_and_pushes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (src, _) = source_registry(t.path(), 16 << 10);
    let target = DockerRegistry::start_logged(&t.path().join("target"));
    let spec = spec(t.path(), &src.host(), "");
    let dry = mirror(t.path(), &spec, &target.host(), &["--json", "--dry-run"]);
    assert!(dry.ok(), "{}\n{}", dry.stdout, dry.stderr);
    let d = report(&dry);
    assert_eq!(d["dry_run"], true);
    assert!(uploads(&target).is_empty(), "a dry run uploads nothing");
    assert!(target.repositories().is_empty());
    let text = mirror(t.path(), &spec, &target.host(), &["--dry-run"]);
    let stdout = text.expect_ok("dry run, text");
    assert!(
        stdout.contains("would copy") && stdout.contains("would mount"),
        "{stdout}"
    );

    let real = mirror(t.path(), &spec, &target.host(), &["--json"]);
    assert!(real.ok(), "{}\n{}", real.stdout, real.stderr);
    let r = report(&real);
    for k in [
        "uploaded",
        "mounted",
        "bytes_uploaded",
        "present",
        "manifests_pushed",
    ] {
        assert_eq!(d["counts"][k], r["counts"][k], "{k}");
    }
}

#[test]
fn map_out_names_each_image_where_the_target_holds_it() {
    let t = tempfile::tempdir().unwrap();
    let (src, _) = source_registry(t.path(), 16 << 10);
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let spec = spec(t.path(), &src.host(), "");
    let map = t.path().join("map.json");
    let registry = format!("{}/mirror", target.host());
    let out = mirror(
        t.path(),
        &spec,
        &registry,
        &["--keep-host", "--map-out", map.to_str().unwrap()],
    );
    out.expect_ok("mirror with --map-out");
    let m: Value = serde_json::from_slice(&std::fs::read(&map).unwrap()).unwrap();
    let images = m["images"].as_array().unwrap();
    assert_eq!(images.len(), IMAGES.len());
    let host_dir = src.host().replace(':', "-");
    for (e, image) in images.iter().zip(IMAGES) {
        let (repo, tag) = image.split_once(':').unwrap();
        assert_eq!(e["source"], format!("{}/{image}", src.host()));
        assert_eq!(
            e["target"],
            format!("{}/mirror/{host_dir}/{repo}", target.host())
        );
        assert_eq!(
            e["digest"].as_str().unwrap(),
            digest_at(&format!("{}/mirror/{host_dir}/{repo}:{tag}", target.host()))
        );
    }
}

#[test]
fn bad_arguments_and_a_missing_local_file_are_refused_before_anything_is_pushed() {
    let t = tempfile::tempdir().unwrap();
    let (src, _) = source_registry(t.path(), 1024);
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let spec = spec(t.path(), &src.host(), "files:\n  - path: no-such-file.md\n");
    let msg = mirror(t.path(), &spec, &target.host(), &[]).expect_fail("a missing file");
    assert!(msg.contains("no-such-file.md"), "{msg}");
    assert!(target.repositories().is_empty());
    assert_no_scratch_left(t.path());

    let msg = mirror(t.path(), &spec, "http://bad host", &[]).expect_fail("a bad --registry");
    assert!(msg.contains("bad host"), "{msg}");

    // One password is not sent to the source and the target alike.
    let plain = self::spec(t.path(), &src.host(), "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["--quiet", "mirror"])
        .arg(&plain)
        .args(["--registry", &target.host()])
        .args(["--username", "u", "--password-stdin"])
        .env("DOCKER_CONFIG", t.path().join("no-docker-config"));
    let msg = run_with_stdin(&mut cmd, "secret\n").expect_fail("--username with two registries");
    assert!(
        msg.contains("--username would be sent to 2 registries"),
        "{msg}"
    );
    assert!(target.repositories().is_empty());
}

#[test]
fn mirror_lock_copies_the_locked_digests_and_refuses_a_moved_tag() {
    let t = tempfile::tempdir().unwrap();
    let src = DockerRegistry::start(&t.path().join("source"), false);
    let mut l = LayoutBuilder::new(&t.path().join("layout"));
    for (i, tag) in ["1.0.0", "1.1.0", "2.0.0"].iter().enumerate() {
        let layer = build::layer(&[("bin/app", &build::pseudo_random(40 + i as u64, 2048))]);
        let m = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
        l.tag(&m, tag);
    }
    let layout = l.finish();
    for tag in ["1.0.0", "1.1.0", "2.0.0"] {
        push(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("{}/org/app:{tag}", src.host()),
        );
    }
    let app = format!("{}/org/app", src.host());
    let spec = t.path().join("rules.yaml");
    std::fs::write(
        &spec,
        format!("images:\n  - ref: {app}\n    tags: {{semver: \"^1\"}}\n"),
    )
    .unwrap();
    let lock = t.path().join("ferry.lock.yaml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["--quiet", "resolve"])
        .arg(&spec)
        .arg("-o")
        .arg(&lock)
        .env("FERRY_CACHE", t.path().join("resolve-cache"))
        .env("DOCKER_CONFIG", t.path().join("no-docker-config"));
    run(&mut cmd).expect_ok("resolve");
    let locked_1_1 = digest_at(&format!("{app}:1.1.0"));

    // A new release the rule would choose now: the lock does not.
    push(&format!("docker://{app}:2.0.0"), &format!("{app}:1.2.0"));
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let out = mirror(
        t.path(),
        &spec,
        &target.host(),
        &["--lock", lock.to_str().unwrap()],
    );
    let stdout = out.expect_ok("mirror --lock");
    assert!(stdout.contains("chose 1.0.0, 1.1.0"), "{stdout}");
    assert_eq!(target.tags(), vec!["org/app:1.0.0", "org/app:1.1.0"]);
    assert_eq!(
        digest_at(&format!("{}/org/app:1.1.0", target.host())),
        locked_1_1
    );

    // A locked tag moves: refused before anything is copied, naming it.
    push(&format!("docker://{app}:2.0.0"), &format!("{app}:1.1.0"));
    let fresh = DockerRegistry::start(&t.path().join("fresh"), false);
    let msg = mirror(
        t.path(),
        &spec,
        &fresh.host(),
        &["--lock", lock.to_str().unwrap()],
    )
    .expect_fail("a moved tag");
    assert!(msg.contains(&format!("image {app}:1.1.0 moved")), "{msg}");
    assert!(fresh.repositories().is_empty());
}

#[test]
fn a_source_download_cut_midway_is_sent_again_and_the_mirror_completes() {
    let t = tempfile::tempdir().unwrap();
    let (src, _) = source_registry(t.path(), 256 << 10);
    // The first two blob downloads break off halfway.
    let proxy = FaultProxy::start(src.addr, "/blobs/sha256:", Fault::ResetMidBody, 2);
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let spec = spec(t.path(), &proxy.addr.to_string(), "");
    let out = mirror(t.path(), &spec, &target.host(), &["--json"]);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::Relaxed), 2);
    for image in IMAGES {
        let (repo, tag) = image.split_once(':').unwrap();
        assert_eq!(
            digest_at(&format!("{}/{repo}:{tag}", target.host())),
            digest_at(&format!("{}/{image}", src.host()))
        );
    }
}

/// The scratch space (directory tars, downloaded charts) is gone.
fn assert_no_scratch_left(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "mirror left its scratch space: {left:?}");
}

/// The demo fixtures with their images as an `oci-archive:` and a
/// (legacy) `docker-archive:`, a chart `.tgz`, a chart from a Helm
/// repository at `repo_url`, a file and a directory.
fn local_spec(dir: &Path, repo_url: &str) -> PathBuf {
    build::demo_fixtures(dir);
    let layout = dir.join("layout");
    let mut b = tar::Builder::new(std::fs::File::create(dir.join("layout.tar")).unwrap());
    b.append_dir_all(".", &layout).unwrap();
    b.finish().unwrap();
    let hello = "registry.example.com/tools/hello:2.1";
    run(skopeo().args([
        "copy",
        &format!("oci:{}:{hello}", layout.display()),
        &format!("docker-archive:{}:{hello}", dir.join("saved.tar").display()),
    ]))
    .expect_ok("skopeo copy into a docker-archive");
    let p = dir.join("local.yaml");
    std::fs::write(
        &p,
        format!(
            "name: local\nimages:\n  - oci-archive:layout.tar:docker.io/library/demo:1.0\n  - docker-archive:saved.tar:{hello}\ncharts:\n  - path: charts/demo-chart-0.1.0.tgz\n  - repo: {repo_url}\n    name: other\n    version: \"^1\"\nfiles:\n  - path: files/README.txt\n  - path: files/manifests\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn local_sources_charts_and_files_mirror_with_the_digests_pack_records() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // A Helm repository with chart `other` 1.0.0.
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let tgz = build::chart_tgz("other", "1.0.0", "image: {}\n");
    std::fs::write(repo.join("other-1.0.0.tgz"), &tgz).unwrap();
    std::fs::write(
        repo.join("index.yaml"),
        format!(
            "apiVersion: v1\nentries:\n  other:\n  - apiVersion: v2\n    name: other\n    version: 1.0.0\n    digest: {}\n    urls:\n    - other-1.0.0.tgz\n",
            ferry::digest::Digest::of(&tgz).hex()
        ),
    )
    .unwrap();
    let server = support::files::FileServer::start(repo, None);
    let spec = local_spec(d, &format!("http://{}/", server.addr));
    let target = DockerRegistry::start_logged(&d.join("target"));

    // What pack records, and where load puts it.
    let archive = d.join("local.tar");
    let pack_cache = d.join("pack-cache");
    pack_args(&spec, &archive, &["--cache", pack_cache.to_str().unwrap()])
        .expect_ok("pack the local spec");
    let packed = inspect_json(&archive);
    let packed = packed["artifacts"].as_array().unwrap();
    assert_eq!(packed.len(), 6);

    let dry = mirror(d, &spec, &target.host(), &["--json", "--dry-run"]);
    let dry = report(&dry);
    assert!(target.repositories().is_empty(), "a dry run pushes nothing");
    assert_no_scratch_left(d);

    let map = d.join("map.json");
    let out = mirror(
        d,
        &spec,
        &target.host(),
        &["--json", "--map-out", map.to_str().unwrap()],
    );
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out);
    let got = r["artifacts"].as_array().unwrap();
    assert_eq!(got.len(), packed.len());
    for (g, p) in got.iter().zip(packed) {
        assert_eq!(g["ok"], true, "{g}");
        assert_eq!(g["source"], p["source"], "spec order, pack's labels");
        assert_eq!(g["digest"], p["digest"], "{}: pack's digest", p["source"]);
        let reference = p["reference"].as_str().unwrap();
        let (repo, tag) = reference.rsplit_once(':').unwrap();
        let repo = repo
            .trim_start_matches("docker.io/")
            .trim_start_matches("registry.example.com/");
        assert_eq!(g["target"], format!("{}/{repo}", target.host()), "{g}");
        assert_eq!(
            digest_at(&format!("{}/{repo}:{tag}", target.host())),
            p["digest"].as_str().unwrap(),
            "the target holds {reference} at pack's digest"
        );
    }
    // The dry run said exactly what the run then did.
    for k in [
        "uploaded",
        "mounted",
        "present",
        "bytes_uploaded",
        "manifests_pushed",
    ] {
        assert_eq!(dry["counts"][k], r["counts"][k], "{k}");
    }
    assert_no_scratch_left(d);

    // The map is the one a load of the packed archive writes.
    let load_map = d.join("load-map.json");
    let loaded = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "load"])
        .arg(&archive)
        .args(["--registry", &target.host(), "--json", "--map-out"])
        .arg(&load_map)
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let loaded: Value = serde_json::from_slice(&loaded.stdout).unwrap();
    assert_eq!(
        loaded["counts"]["uploaded"], 0,
        "mirror put everything in place"
    );
    assert_eq!(loaded["counts"]["manifests_pushed"], 0);
    assert_eq!(
        std::fs::read_to_string(&map).unwrap(),
        std::fs::read_to_string(&load_map).unwrap()
    );

    // A second run sends nothing.
    let before = target.access_log().len();
    let again = report(&mirror(d, &spec, &target.host(), &["--json"]));
    assert_eq!(again["counts"]["uploaded"], 0);
    assert_eq!(again["counts"]["manifests_pushed"], 0);
    let sent: Vec<String> = target
        .access_log()
        .split_off(before)
        .into_iter()
        .filter(|r| r.starts_with("POST") || r.starts_with("PUT") || r.starts_with("PATCH"))
        .collect();
    assert!(sent.is_empty(), "a second run sends nothing: {sent:?}");
    assert_no_scratch_left(d);
}

/// A source registry holding a two-platform `library/app:1.0` with a
/// cosign `.sig` on its index signed by `key`, and an SBOM referrer on its
/// amd64 manifest under the tag schema's fallback index.
struct SignedSource {
    _registry: DockerRegistry,
    host: String,
    index: ferry::digest::Digest,
    amd64: ferry::digest::Digest,
    sig: support::cosign::Artifact,
    sbom: support::push::Artifact,
}

const SPDX: &str = "application/spdx+json";

fn signed_source(dir: &Path, key: &support::cosign::KeyPair) -> SignedSource {
    use support::push;
    let registry = DockerRegistry::start(&dir.join("source"), false);
    let host = registry.host();
    let image = push::push_image(dir, &host, "library/app", "1.0", 70);
    let index = push::digest_of(&image.index);
    let amd64 = push::digest_of(&image.amd64);
    let sig = support::cosign::simple_signing(&index, &format!("{host}/library/app"), key, None);
    sig.push(&host, "library/app", &format!("sha256-{}.sig", index.hex()));
    let sbom = push::referrer(&image.amd64, SPDX, SPDX, br#"{"spdxVersion":"SPDX-2.3"}"#);
    sbom.push(&host, "library/app", None);
    push::index(vec![push::listed(&sbom, SPDX)]).push(
        &host,
        "library/app",
        Some(&format!("sha256-{}", amd64.hex())),
    );
    SignedSource {
        _registry: registry,
        host,
        index,
        amd64,
        sig,
        sbom,
    }
}

#[test]
fn cosign_key_requires_every_image_signed_by_that_key_before_anything_is_pushed() {
    use support::cosign::KeyPair;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for k in ["key", "other"] {
        std::fs::create_dir_all(d.join(k)).unwrap();
    }
    let key = KeyPair::generate_p256(&d.join("key"));
    let other = KeyPair::generate_p256(&d.join("other"));
    let src = signed_source(d, &key);
    let spec = d.join("plain.yaml");
    std::fs::write(
        &spec,
        format!("images:\n  - {}/library/app:1.0\n", src.host),
    )
    .unwrap();

    let wrong = DockerRegistry::start(&d.join("wrong"), false);
    let other_key = other.public.to_str().unwrap();
    let msg = mirror(d, &spec, &wrong.host(), &["--cosign-key", other_key])
        .expect_fail("--cosign-key with another key");
    assert!(
        msg.contains("library/app:1.0") && msg.contains(other_key),
        "{msg}"
    );
    assert!(wrong.repositories().is_empty(), "nothing was pushed");

    let target = DockerRegistry::start(&d.join("target"), false);
    let good_key = key.public.to_str().unwrap();
    let out = mirror(
        d,
        &spec,
        &target.host(),
        &["--json", "--cosign-key", good_key],
    );
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out);
    assert_eq!(r["signatures"][0]["form"], "simple-signing", "{r:#}");
    assert_eq!(
        digest_at(&format!("{}/library/app:1.0", target.host())),
        src.index.to_string()
    );
}

#[test]
fn referrers_travel_unchanged_after_their_images_and_verify_refuses_a_wrong_key() {
    use support::cosign::KeyPair;
    use support::push::get_manifest;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for k in ["key", "other"] {
        std::fs::create_dir_all(d.join(k)).unwrap();
    }
    let key = KeyPair::generate_p256(&d.join("key"));
    let other = KeyPair::generate_p256(&d.join("other"));
    let src = signed_source(d, &key);
    let spec_with = |k: &KeyPair| {
        let p = d.join("signed.yaml");
        std::fs::write(
            &p,
            format!(
                "images:\n  - ref: {}/library/app:1.0\n    verify: {{cosign_key: {}}}\n",
                src.host,
                k.public.display()
            ),
        )
        .unwrap();
        p
    };

    // A wrong key: refused before anything of the image is pushed.
    let wrong = DockerRegistry::start(&d.join("wrong"), false);
    let msg = mirror(d, &spec_with(&other), &wrong.host(), &[]).expect_fail("another key");
    assert!(
        msg.contains("library/app:1.0") && msg.contains(&other.public.display().to_string()),
        "{msg}"
    );
    assert!(wrong.repositories().is_empty(), "nothing was pushed");

    // The right key: the image, then its signature and its SBOM, the
    // exact bytes of the source, where policy engines look for them.
    let target = DockerRegistry::start_logged(&d.join("target"));
    let spec = spec_with(&key);
    let out = mirror(d, &spec, &target.host(), &["--json"]);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out);
    assert_eq!(r["signatures"][0]["form"], "simple-signing", "{r:#}");
    let refs = r["referrers"].as_array().unwrap();
    assert_eq!(refs.len(), 2, "{r:#}");
    assert!(refs.iter().all(|x| x["ok"] == true), "{r:#}");
    let th = target.host();
    let sig_tag = format!("sha256-{}.sig", src.index.hex());
    assert_eq!(
        get_manifest(&th, "library/app", &sig_tag).unwrap(),
        src.sig.manifest,
        "the cosign tag holds the source's signature byte for byte"
    );
    assert_eq!(
        get_manifest(&th, "library/app", &src.sbom.digest().to_string()).unwrap(),
        src.sbom.manifest
    );
    let fallback = get_manifest(&th, "library/app", &format!("sha256-{}", src.amd64.hex()))
        .expect("the tag schema's fallback index");
    let fallback: Value = serde_json::from_slice(&fallback).unwrap();
    assert_eq!(
        fallback["manifests"][0]["digest"],
        src.sbom.digest().to_string(),
        "{fallback:#}"
    );
    assert_eq!(
        digest_at(&format!("{th}/library/app:1.0")),
        src.index.to_string()
    );

    // A second run sends nothing.
    let before = target.access_log().len();
    let again = report(&mirror(d, &spec, &th, &["--json"]));
    assert_eq!(again["counts"]["uploaded"], 0);
    assert_eq!(again["counts"]["manifests_pushed"], 0, "{again:#}");
    let sent: Vec<String> = target
        .access_log()
        .split_off(before)
        .into_iter()
        .filter(|r| r.starts_with("POST") || r.starts_with("PUT") || r.starts_with("PATCH"))
        .collect();
    assert!(sent.is_empty(), "a second run sends nothing: {sent:?}");
}

#[test]
fn no_referrers_and_the_spec_switch_leave_referrers_behind_and_a_platform_filter_keeps_the_childs()
{
    use support::push::get_manifest;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("key")).unwrap();
    let key = support::cosign::KeyPair::generate_p256(&d.join("key"));
    let src = signed_source(d, &key);
    let plain = d.join("plain.yaml");
    std::fs::write(
        &plain,
        format!("images:\n  - {}/library/app:1.0\n", src.host),
    )
    .unwrap();
    let off = d.join("off.yaml");
    std::fs::write(
        &off,
        format!(
            "referrers: false\nimages:\n  - {}/library/app:1.0\n",
            src.host
        ),
    )
    .unwrap();
    for (name, spec, args) in [
        ("flag", &plain, &["--json", "--no-referrers"][..]),
        ("spec", &off, &["--json"][..]),
    ] {
        let target = DockerRegistry::start(&d.join(name), false);
        let r = report(&mirror(d, spec, &target.host(), args));
        assert!(r["referrers"].is_null(), "{name}: {r:#}");
        assert!(
            get_manifest(
                &target.host(),
                "library/app",
                &format!("sha256-{}.sig", src.index.hex())
            )
            .is_none(),
            "{name}"
        );
        assert_eq!(r["artifacts"][0]["ok"], true);
    }

    // amd64 only: the filtered index is new, so the index's signature
    // stays behind (with a warning); the amd64 manifest's SBOM travels.
    let target = DockerRegistry::start(&d.join("filtered"), false);
    let out = mirror(
        d,
        &plain,
        &target.host(),
        &["--json", "--platform", "linux/amd64"],
    );
    assert!(out.ok(), "{}", out.stderr);
    let r = report(&out);
    let refs = r["referrers"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{r:#}");
    assert_eq!(refs[0]["digest"], src.sbom.digest().to_string());
    assert_eq!(refs[0]["subject"], src.amd64.to_string());
}

#[test]
fn a_chart_with_images_true_brings_the_images_it_names_as_pack_does() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (src, _) = source_registry(d, 16 << 10);
    let host = src.host();
    // A chart naming team/tool in its values (and library/app, which the
    // spec lists itself, in its annotation).
    let chart_yaml = format!(
        "apiVersion: v2\nname: app\nversion: 1.0.0\nappVersion: \"2\"\nannotations:\n  artifacthub.io/images: |\n    - name: app\n      image: {host}/library/app:1.0\n"
    );
    let values = format!("image:\n  repository: {host}/team/tool\n");
    let tgz = build::gzip(&build::tar_of(&[
        ("app/Chart.yaml", chart_yaml.as_bytes()),
        ("app/values.yaml", values.as_bytes()),
    ]));
    std::fs::write(d.join("app-1.0.0.tgz"), tgz).unwrap();
    let file_spec = d.join("file.yaml");
    std::fs::write(
        &file_spec,
        format!("images:\n  - {host}/library/app:1.0\ncharts:\n  - {{path: app-1.0.0.tgz, images: true}}\n"),
    )
    .unwrap();

    let target = DockerRegistry::start(&d.join("target"), false);
    let out = mirror(d, &file_spec, &target.host(), &["--json"]);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    let r = report(&out);
    let named: Vec<&str> = r["chart_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reference"].as_str().unwrap())
        .collect();
    assert!(
        named.contains(&format!("{host}/team/tool:2").as_str()),
        "{r:#}"
    );
    let sources: Vec<&str> = r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources.len(),
        3,
        "the image, the chart, the image it names: {sources:?}"
    );
    assert!(sources[2].contains("(named by "), "{sources:?}");
    assert_eq!(
        digest_at(&format!("{}/team/tool:2", target.host())),
        digest_at(&format!("{host}/team/tool:2")),
        "the image the chart names is mirrored"
    );

    // `--cosign-key` covers the images a chart names too: here, unsigned.
    std::fs::create_dir_all(d.join("key")).unwrap();
    let key = support::cosign::KeyPair::generate_p256(&d.join("key"));
    let only_chart = d.join("only-chart.yaml");
    std::fs::write(
        &only_chart,
        "charts:\n  - {path: app-1.0.0.tgz, images: true}\n",
    )
    .unwrap();
    let refused = DockerRegistry::start(&d.join("refused"), false);
    let msg = mirror(
        d,
        &only_chart,
        &refused.host(),
        &["--cosign-key", key.public.to_str().unwrap()],
    )
    .expect_fail("unsigned images named by a chart, with --cosign-key");
    assert!(msg.contains(&format!("{host}/library/app:1.0")), "{msg}");
    assert!(refused.repositories().is_empty(), "nothing was pushed");

    // The same chart at a registry (put there by mirror itself): its
    // archive is read from the registry, and the image comes along again.
    let oci_spec = d.join("oci.yaml");
    std::fs::write(
        &oci_spec,
        format!(
            "charts:\n  - {{ref: oci://{}/charts/app, version: 1.0.0, images: true}}\n",
            target.host()
        ),
    )
    .unwrap();
    let second = DockerRegistry::start(&d.join("second"), false);
    let out = mirror(d, &oci_spec, &second.host(), &["--json"]);
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        digest_at(&format!("{}/team/tool:2", second.host())),
        digest_at(&format!("{host}/team/tool:2"))
    );
    assert_eq!(
        digest_at(&format!("{}/library/app:1.0", second.host())),
        digest_at(&format!("{host}/library/app:1.0")),
        "the annotation's image too, now that the spec does not list it"
    );
}

#[test]
fn a_blob_the_source_cannot_give_is_named_with_the_source_and_its_reason() {
    let t = tempfile::tempdir().unwrap();
    let (src, x_digest) = source_registry(t.path(), 16 << 10);
    // tool's own layer vanishes from the source registry's storage.
    let hex = x_digest.trim_start_matches("sha256:");
    let data = src
        .dir
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    std::fs::remove_file(&data).unwrap();
    let target = DockerRegistry::start(&t.path().join("target"), false);
    let spec = spec(t.path(), &src.host(), "");
    let out = mirror(t.path(), &spec, &target.host(), &["--retries", "1"]);
    let msg = out.expect_fail("a source missing a blob");
    let said = format!(
        "cannot read blob {x_digest} from {}/team/tool: ",
        src.host()
    );
    assert!(msg.contains(&said), "{msg}");
    assert!(!target.linked_blobs("team/tool").contains(&x_digest));
    assert!(
        !target.tags().iter().any(|t| t.starts_with("team/tool:")),
        "no tag for the image missing a blob: {:?}",
        target.tags()
    );
}

#[test]
fn a_hang_up_mid_mirror_removes_the_scratch_directory() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let dir = d.join("site");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), build::pseudo_random(7, 64 << 10)).unwrap();
    let spec = d.join("files.yaml");
    std::fs::write(&spec, "files:\n  - path: site\n").unwrap();
    let target = DockerRegistry::start(&d.join("target"), false);
    // The upload's answer never comes: the mirror waits with its scratch
    // tar in place, as an ssh session closes.
    let proxy = FaultProxy::start(target.addr, "/blobs/uploads/", Fault::Stall, 1);
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "mirror"])
        .arg(&spec)
        .args(["--registry", &proxy.addr.to_string()])
        .current_dir(d)
        .env("TMPDIR", &tmp)
        .env("DOCKER_CONFIG", d.join("no-docker-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scratch = || std::fs::read_dir(&tmp).unwrap().count();
    let out = signal_when(child, "the mirror", libc::SIGHUP, || {
        scratch() > 0 && proxy.hits.load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    assert!(out.stderr.contains("hung up: removed"), "{}", out.stderr);
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    proxy.release();
}

#[test]
fn a_map_out_that_cannot_be_written_or_is_the_spec_is_refused_before_anything_is_pushed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (src, _) = source_registry(d, 16 << 10);
    let target = DockerRegistry::start(&d.join("target"), false);
    let spec = spec(d, &src.host(), "");
    let before = std::fs::read(&spec).unwrap();
    let missing = d.join("no/such/dir/map.json");
    for (map, says) in [
        (spec.clone(), "an input of this run"),
        (missing, "is not a directory"),
        (d.to_path_buf(), "is a directory"),
    ] {
        let msg = mirror(
            d,
            &spec,
            &target.host(),
            &["--map-out", map.to_str().unwrap()],
        )
        .expect_fail("an unusable --map-out");
        assert!(msg.contains("--map-out") && msg.contains(says), "{msg}");
    }
    assert_eq!(
        std::fs::read(&spec).unwrap(),
        before,
        "the spec is untouched"
    );
    for bad in [
        "user@127.0.0.1:5000",
        "127.0.0.1:99999",
        "127.0.0.1:5000?x=1",
    ] {
        let msg = mirror(d, &spec, bad, &[]).expect_fail("a bad --registry");
        assert!(msg.contains("invalid target registry"), "{bad}: {msg}");
    }
    assert!(target.repositories().is_empty(), "nothing was pushed");
}
