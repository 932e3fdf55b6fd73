//! `ferry cache ls|prune|gc` against caches a real `ferry pack` filled
//! from the real distribution registry (`docker-registry`, filled by
//! skopeo) and a Helm repository (a local file server): the records pack
//! writes, the listing, pruning by age and by specs, gc keeping exactly
//! what the records reach, the lock between a running pack and gc, where
//! the cache is ($FERRY_CACHE, $XDG_CACHE_HOME), and bad input.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::files::FileServer;
use support::registry::{DockerRegistry, Fault, FaultProxy};
use support::*;

/// Pushes `library/app:1.0` (a two-platform OCI index), `team/tool:2` and
/// `team/user:3` (single OCI manifests) with skopeo, digests preserved.
fn fill_registry(dir: &Path, host: &str) {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let app = build::multi_arch(&mut l, 41, 8 << 10);
    l.tag(&app, "app");
    for (name, seed) in [("tool", 50), ("user", 60)] {
        let layer = build::layer(&[("bin/x", &build::pseudo_random(seed, 8 << 10))]);
        let m = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
        l.tag(&m, name);
    }
    let layout = l.finish();
    for (name, target) in [
        ("app", "library/app:1.0"),
        ("tool", "team/tool:2"),
        ("user", "team/user:3"),
    ] {
        push(&layout, name, &format!("{host}/{target}"));
    }
}

/// `skopeo copy` of image `name` of the layout to `target` in a registry.
fn push(layout: &Path, name: &str, target: &str) {
    run(skopeo().args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:{name}", layout.display()),
        &format!("docker://{target}"),
    ]))
    .expect_ok(&format!("skopeo copy {name}"));
}

/// A Helm repository with chart `demo` 0.1.0, 0.1.5 and 1.0.0, whose
/// values name `image` (`repository:tag`).
fn chart_repo(dir: &Path, image: &str) -> FileServer {
    let root = dir.join("repo");
    std::fs::create_dir_all(&root).unwrap();
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let mut index = String::from("apiVersion: v1\nentries:\n  demo:\n");
    for v in ["0.1.0", "0.1.5", "1.0.0"] {
        let tgz = build::chart_tgz(
            "demo",
            v,
            &format!("image:\n  repository: {repository}\n  tag: \"{tag}\"\n"),
        );
        std::fs::write(root.join(format!("demo-{v}.tgz")), &tgz).unwrap();
        index.push_str(&format!(
            "  - name: demo\n    version: {v}\n    digest: {}\n    urls:\n    - demo-{v}.tgz\n",
            ferry::digest::Digest::of(&tgz).hex()
        ));
    }
    std::fs::write(root.join("index.yaml"), index).unwrap();
    FileServer::start(root, None)
}

/// `ferry [--quiet] ARGS…` with no docker config, and `env` set (a value
/// of `None` removes the variable).
fn ferry_env(args: &[&std::ffi::OsStr], env: &[(&str, Option<&Path>)], quiet: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    if quiet {
        cmd.arg("--quiet");
    }
    cmd.args(args)
        .env("DOCKER_CONFIG", "/nonexistent/ferry-test-docker-config")
        .stdin(Stdio::null());
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// `ferry pack SPEC -o OUT --cache CACHE --json`.
fn pack(spec: &Path, out: &Path, cache: &Path) -> Out {
    run(&mut ferry_env(
        &[
            "pack".as_ref(),
            spec.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--cache".as_ref(),
            cache.as_os_str(),
            "--json".as_ref(),
        ],
        &[],
        true,
    ))
}

fn pack_ok(spec: &Path, out: &Path, cache: &Path) -> Value {
    let out = pack(spec, out, cache);
    let stdout = out.expect_ok("pack");
    serde_json::from_str(&stdout).unwrap()
}

/// `ferry cache SUB --cache CACHE ARGS…`.
fn cache_cmd(sub: &str, cache: &Path, args: &[&str]) -> Out {
    let mut all: Vec<&std::ffi::OsStr> = vec![
        "cache".as_ref(),
        sub.as_ref(),
        "--cache".as_ref(),
        cache.as_os_str(),
    ];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    run(&mut ferry_env(&all, &[], true))
}

/// `ferry cache SUB --cache CACHE --json ARGS…`, which must succeed.
fn cache_json(sub: &str, cache: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend(args);
    let out = cache_cmd(sub, cache, &all).expect_ok(&format!("cache {sub}"));
    serde_json::from_str(&out).unwrap()
}

fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The blobs in the cache's store.
fn blobs(cache: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// The record of `name` (a reference, or a chart's `NAME VERSION`) in an
/// `ls --json` listing.
fn record<'v>(listing: &'v Value, name: &str) -> &'v Value {
    listing["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["reference"] == name
                || format!(
                    "{} {}",
                    r["name"].as_str().unwrap_or(""),
                    r["version"].as_str().unwrap_or("")
                ) == name
        })
        .unwrap_or_else(|| panic!("no record of {name} in {listing:#}"))
}

fn record_names(listing: &Value) -> Vec<String> {
    let mut names: Vec<String> = listing["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["reference"].as_str() {
            Some(reference) => reference.to_owned(),
            None => format!(
                "{} {}",
                r["name"].as_str().unwrap(),
                r["version"].as_str().unwrap()
            ),
        })
        .collect();
    names.sort();
    names
}

/// Sets the `last_used` of the record of `reference` back `days` days, as
/// if no pack had used it since.
fn age_record(cache: &Path, reference: &str, days: u64) {
    for e in std::fs::read_dir(cache.join("records")).unwrap() {
        let path = e.unwrap().path();
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if v["reference"] == reference {
            let last = v["last_used"].as_u64().unwrap();
            v["last_used"] = (last - days * 86_400).into();
            std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
            return;
        }
    }
    panic!("no record of {reference}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn pack_records_what_each_reference_and_chart_resolved_to_and_ls_lists_them() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    fill_registry(t.path(), &host);
    let charts = chart_repo(t.path(), &format!("{host}/team/tool:2"));
    let spec = write_spec(
        t.path(),
        "ferry.yaml",
        &format!("images:\n  - {host}/library/app:1.0\n  - {host}/team/tool:2\ncharts:\n  - repo: http://{}/\n    name: demo\n    version: \"^0.1\"\n", charts.addr),
    );
    let cache = t.path().join("cache");
    let before = now();
    let packed = pack_ok(&spec, &t.path().join("b.tar"), &cache);
    let after = now();
    assert_eq!(
        std::fs::read_dir(cache.join("records")).unwrap().count(),
        3,
        "one record per reference and chart"
    );

    let listing = cache_json("ls", &cache, &[]);
    assert_eq!(listing["cache"], cache.to_str().unwrap());
    assert_eq!(listing["records"].as_array().unwrap().len(), 3);
    let app = record(&listing, &format!("{host}/library/app:1.0"));
    assert_eq!(app["kind"], "image");
    assert_eq!(app["source"], "registry");
    assert_eq!(app["digest"], packed["artifacts"][0]["digest"]);
    assert_eq!(app["media_type"], "application/vnd.oci.image.index.v1+json");
    // The index, two manifests, two configs, a shared base layer and a
    // layer per platform.
    assert_eq!(app["blobs"], 8);
    assert_eq!(app["missing"], 0);
    let on_disk: u64 = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(listing["blobs"]["size"], on_disk);
    let last = app["last_used"].as_u64().unwrap();
    assert!(before <= last && last <= after, "{before} {last} {after}");
    let chart = record(&listing, "demo 0.1.5");
    assert_eq!(chart["kind"], "chart");
    assert_eq!(chart["source"], "helm_repo");
    assert_eq!(chart["repo"], format!("http://{}", charts.addr));
    assert_eq!(chart["blobs"], 1);
    assert_eq!(listing["unreferenced"]["count"], 0);

    let text = cache_cmd("ls", &cache, &[]).expect_ok("cache ls");
    assert!(
        text.starts_with(&format!("cache {}: ", cache.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("image  {host}/team/tool:2  sha256:")),
        "{text}"
    );
    assert!(
        text.contains(&format!("chart  demo 0.1.5 from http://{}", charts.addr)),
        "{text}"
    );
    assert!(text.contains(" KiB in 8 blobs  last used "), "{text}");
    assert!(text.contains("unreferenced: none"), "{text}");

    // A platform filter is recorded; a later pack of the same reference
    // with another filter replaces the record (and keeps what is cached).
    let arm = write_spec(
        t.path(),
        "arm.yaml",
        &format!("platforms: [linux/arm64]\nimages:\n  - {host}/library/app:1.0\n"),
    );
    pack_ok(&arm, &t.path().join("arm.tar"), &cache);
    let listing = cache_json("ls", &cache, &[]);
    let app = record(&listing, &format!("{host}/library/app:1.0"));
    assert_eq!(app["platforms"], serde_json::json!(["linux/arm64"]));
    assert_eq!(app["blobs"], 8, "the amd64 manifest is still cached");
}

#[test]
fn gc_removes_only_what_no_record_reaches_and_a_repack_fetches_nothing() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    fill_registry(t.path(), &host);
    let spec = write_spec(
        t.path(),
        "ferry.yaml",
        &format!("images:\n  - {host}/library/app:1.0\n  - {host}/team/tool:2\n"),
    );
    let cache = t.path().join("cache");
    pack_ok(&spec, &t.path().join("b.tar"), &cache);
    let packed = blobs(&cache);
    assert_eq!(packed.len(), 11, "8 for app, 3 for tool");
    // What interrupted runs and older ferries leave.
    let stray = ferry::digest::Digest::of(b"cached by an older ferry");
    std::fs::write(cache.join(stray.blob_path()), b"cached by an older ferry").unwrap();
    std::fs::write(cache.join("blobs/sha256/.tmp-XyZ123"), b"half a blob").unwrap();
    std::fs::write(cache.join("records/.tmp-AbC456"), b"{").unwrap();
    let junk = cache
        .join("records")
        .join(format!("{}.json", "0".repeat(64)));
    std::fs::write(&junk, b"not json").unwrap();

    let listing = cache_json("ls", &cache, &[]);
    assert_eq!(listing["unreferenced"]["count"], 1);
    assert_eq!(listing["unreferenced"]["size"], 24);
    assert_eq!(listing["temp_files"]["count"], 2);
    assert_eq!(listing["bad_records"].as_array().unwrap().len(), 1);

    let dry = cache_json("gc", &cache, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"]["count"], 1);
    assert_eq!(dry["temp_files"]["count"], 2);
    assert!(
        cache.join(stray.blob_path()).exists(),
        "a dry run removes nothing"
    );
    assert!(junk.exists());

    let out = cache_cmd("gc", &cache, &[]);
    let text = out.stdout.clone();
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        text.contains("removed 1 blobs (24 B) and 2 temp files (12 B)"),
        "{text}"
    );
    assert!(text.contains("kept 11 blobs"), "{text}");
    assert!(
        out.stderr.contains("warning: removed the record file")
            && out.stderr.contains("not a ferry record"),
        "{}",
        out.stderr
    );
    assert_eq!(blobs(&cache), packed);
    assert!(!junk.exists());
    assert!(!cache.join("blobs/sha256/.tmp-XyZ123").exists());

    // Everything a pack needs is still there.
    let again = pack_ok(&spec, &t.path().join("again.tar"), &cache);
    assert_eq!(again["fetched"]["blobs_fetched"], 0);
    assert_eq!(again["fetched"]["blobs_cached"], 7, "configs and layers");
    assert_eq!(
        std::fs::read(t.path().join("b.tar")).unwrap(),
        std::fs::read(t.path().join("again.tar")).unwrap()
    );

    // The tag moves: the next pack records the new image, and gc removes
    // the old one's manifest, config and layer.
    let old_tool = cache_json("ls", &cache, &[])["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reference"] == format!("{host}/team/tool:2"))
        .unwrap()["digest"]
        .clone();
    let mut l = LayoutBuilder::new(&t.path().join("layout2"));
    let layer = build::layer(&[("bin/x", &build::pseudo_random(99, 8 << 10))]);
    let m = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
    l.tag(&m, "tool");
    push(&l.finish(), "tool", &format!("{host}/team/tool:2"));
    pack_ok(&spec, &t.path().join("moved.tar"), &cache);
    let gc = cache_json("gc", &cache, &[]);
    assert_eq!(gc["removed"]["count"], 3, "{gc:#}");
    assert_eq!(gc["records_kept"], 2);
    let old_hex = old_tool.as_str().unwrap().trim_start_matches("sha256:");
    assert!(!blobs(&cache).contains(old_hex));
    ferry(["verify".as_ref(), t.path().join("moved.tar").as_os_str()]).expect_ok("verify");
}

#[test]
fn prune_older_than_drops_the_records_not_used_since_and_their_blobs() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    fill_registry(t.path(), &host);
    let spec = write_spec(
        t.path(),
        "ferry.yaml",
        &format!("images:\n  - {host}/library/app:1.0\n  - {host}/team/tool:2\n"),
    );
    let cache = t.path().join("cache");
    pack_ok(&spec, &t.path().join("b.tar"), &cache);
    let tool = format!("{host}/team/tool:2");
    age_record(&cache, &tool, 40);
    let listing = cache_json("ls", &cache, &[]);
    let text = cache_cmd("ls", &cache, &[]).expect_ok("ls");
    assert!(text.contains("last used 40d ago"), "{text}");
    let tool_blobs = record(&listing, &tool)["blobs"].as_u64().unwrap();
    assert_eq!(tool_blobs, 3);

    let dry = cache_json("prune", &cache, &["--older-than", "30d", "--dry-run"]);
    assert_eq!(dry["dropped"].as_array().unwrap().len(), 1);
    assert_eq!(dry["dropped"][0]["reference"], tool);
    assert_eq!(dry["removed"]["count"], 3);
    assert_eq!(blobs(&cache).len(), 11, "a dry run removes nothing");
    assert_eq!(
        cache_json("ls", &cache, &[])["records"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Nothing is older than 6 weeks.
    let none = cache_json("prune", &cache, &["--older-than", "6w"]);
    assert_eq!(none["dropped"].as_array().unwrap().len(), 0);
    assert_eq!(none["removed"]["count"], 0);

    let out = cache_cmd("prune", &cache, &["--older-than", "30d"]).expect_ok("prune");
    assert!(
        out.contains(&format!("dropped image {tool} ("))
            && out.contains("last used 40d ago, longer than 30d"),
        "{out}"
    );
    assert!(out.contains("removed 3 blobs"), "{out}");
    let listing = cache_json("ls", &cache, &[]);
    assert_eq!(record_names(&listing), [format!("{host}/library/app:1.0")]);
    assert_eq!(blobs(&cache).len(), 8);
    assert_eq!(listing["unreferenced"]["count"], 0);
}

#[test]
fn prune_keep_keeps_what_the_specs_need_resolved_from_the_records_alone() {
    let t = tempfile::tempdir().unwrap();
    let mut reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    fill_registry(t.path(), &host);
    let charts = chart_repo(t.path(), &format!("{host}/team/tool:2"));
    let repo = format!("http://{}", charts.addr);
    let cache = t.path().join("cache");
    let all = write_spec(
        t.path(),
        "all.yaml",
        &format!("images:\n  - {host}/library/app:1.0\n  - {host}/team/tool:2\n  - {host}/team/user:3\ncharts:\n  - repo: {repo}\n    name: demo\n    version: \"0.1.0\"\n"),
    );
    let packed = pack_ok(&all, &t.path().join("all.tar"), &cache);
    let newer = write_spec(
        t.path(),
        "newer.yaml",
        &format!("charts:\n  - repo: {repo}/\n    name: demo\n    version: \"^0.1\"\n"),
    );
    pack_ok(&newer, &t.path().join("newer.tar"), &cache);
    assert_eq!(
        cache_json("ls", &cache, &[])["records"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // The registry is gone: --keep resolves from the records alone.
    reg.kill();
    let user_digest = packed["artifacts"][2]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    build::demo_fixtures(&t.path().join("demo"));
    let keep_a = write_spec(
        t.path(),
        "keep-a.yaml",
        &format!("images:\n  - {host}/library/app:1.0\n  - {host}/team/missing:1\n  - oci:demo/layout:docker.io/library/demo:1.0\ncharts:\n  - repo: {repo}\n    name: demo\n    version: \"^0.1\"\n"),
    );
    // A digest reference is met by the record that resolved to it; a
    // local chart with `images: true` needs the images it names.
    std::fs::write(
        t.path().join("named.tgz"),
        build::chart_tgz(
            "named",
            "1.0.0",
            &format!("image:\n  repository: {host}/team/tool\n  tag: \"2\"\n"),
        ),
    )
    .unwrap();
    let keep_b = write_spec(
        t.path(),
        "keep-b.txt",
        &format!("{host}/team/user@{user_digest}\n"),
    );
    let keep_c = write_spec(
        t.path(),
        "keep-c.yaml",
        "charts:\n  - path: named.tgz\n    images: true\n",
    );
    let args = |dry: bool| {
        let mut a = vec![
            "--json",
            "--keep",
            keep_a.to_str().unwrap(),
            keep_b.to_str().unwrap(),
            "--keep",
            keep_c.to_str().unwrap(),
        ];
        if dry {
            a.push("--dry-run");
        }
        a
    };
    let out = cache_cmd("prune", &cache, &args(true));
    assert!(out.ok(), "{}", out.stderr);
    let dry: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(dry["dropped"].as_array().unwrap().len(), 1, "{dry:#}");
    assert_eq!(dry["dropped"][0]["version"], "0.1.0");
    assert_eq!(dry["removed"]["count"], 1);
    assert_eq!(
        cache_json("ls", &cache, &[])["records"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // The entry the cache knows nothing of is a warning, not an error.
    let warning = format!(
        "warning: {}: image {host}/team/missing:1: the cache holds no record of it",
        keep_a.display()
    );
    assert!(out.stderr.contains(&warning), "{}", out.stderr);
    assert_eq!(dry["unknown"].as_array().unwrap().len(), 1, "{dry:#}");

    let out = cache_cmd("prune", &cache, &args(false));
    assert!(out.ok(), "{}", out.stderr);
    let listing = cache_json("ls", &cache, &[]);
    assert_eq!(
        record_names(&listing),
        [
            format!("{host}/library/app:1.0"),
            format!("{host}/team/tool:2"),
            format!("{host}/team/user:3"),
            "demo 0.1.5".to_owned(),
        ]
    );
    assert_eq!(listing["unreferenced"]["count"], 0);

    // Keeping only app drops the others, and their blobs.
    let only_app = write_spec(t.path(), "app.txt", &format!("{host}/library/app:1.0\n"));
    let pruned = cache_json("prune", &cache, &["--keep", only_app.to_str().unwrap()]);
    assert_eq!(pruned["dropped"].as_array().unwrap().len(), 3);
    assert_eq!(pruned["records_kept"], 1);
    assert_eq!(blobs(&cache).len(), 8);

    // A spec that is not there stops the prune before anything goes.
    let out = cache_cmd("prune", &cache, &["--keep", "/nonexistent/ferry.yaml"]);
    let msg = out.expect_fail("prune --keep missing");
    assert!(msg.contains("/nonexistent/ferry.yaml"), "{msg}");
    assert_eq!(blobs(&cache).len(), 8);
}

/// An image entry with a tag rule keeps the recorded tags of its
/// repository that the rule chooses (it once kept none, taking the
/// untagged repository for a reference with no record).
#[test]
fn prune_keep_applies_an_entrys_tag_rule_to_the_recorded_tags() {
    let t = tempfile::tempdir().unwrap();
    let mut reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    let mut l = LayoutBuilder::new(&t.path().join("layout"));
    let tags = ["1.0.0", "1.1.0", "2.0.0"];
    for (i, tag) in tags.iter().enumerate() {
        let layer = build::layer(&[("bin/x", &build::pseudo_random(70 + i as u64, 4096))]);
        let m = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
        l.tag(&m, tag);
    }
    let layout = l.finish();
    for tag in tags {
        push(&layout, tag, &format!("{host}/org/app:{tag}"));
    }
    let cache = t.path().join("cache");
    let images: String = tags
        .iter()
        .map(|tag| format!("  - {host}/org/app:{tag}\n"))
        .collect();
    let all = write_spec(t.path(), "all.yaml", &format!("images:\n{images}"));
    pack_ok(&all, &t.path().join("all.tar"), &cache);
    reg.kill();

    let rule = write_spec(
        t.path(),
        "rule.yaml",
        &format!("images:\n  - ref: {host}/org/app\n    tags: {{semver: \"^1\"}}\n"),
    );
    let pruned = cache_json("prune", &cache, &["--keep", rule.to_str().unwrap()]);
    assert_eq!(pruned["unknown"].as_array().unwrap().len(), 0, "{pruned:#}");
    assert_eq!(
        record_names(&cache_json("ls", &cache, &[])),
        [
            format!("{host}/org/app:1.0.0"),
            format!("{host}/org/app:1.1.0")
        ]
    );
}

/// A pack holds the cache's shared lock from its first fetch to its last
/// written byte: gc waits for it (or, with --no-wait, refuses), and never
/// removes a blob the pack fetched, even one not yet recorded. A pack that
/// starts while gc holds the cache waits for gc.
#[test]
fn gc_waits_for_a_running_pack_and_never_removes_a_blob_it_uses() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    fill_registry(t.path(), &reg.host());
    // The proxy holds one blob download half done until released.
    let proxy = FaultProxy::start(reg.addr, "/blobs/", Fault::Stall, 1);
    let host = proxy.addr.to_string();
    let spec = write_spec(
        t.path(),
        "ferry.yaml",
        &format!("images:\n  - {host}/library/app:1.0\n  - {host}/team/tool:2\n"),
    );
    let cache = t.path().join("cache");
    std::fs::create_dir_all(cache.join("blobs/sha256")).unwrap();
    let stray = ferry::digest::Digest::of(b"stray");
    std::fs::write(cache.join(stray.blob_path()), b"stray").unwrap();
    let out = t.path().join("b.tar");
    let packing = ferry_env(
        &[
            "pack".as_ref(),
            spec.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--cache".as_ref(),
            cache.as_os_str(),
            "--json".as_ref(),
            "--jobs".as_ref(),
            "2".as_ref(),
        ],
        &[],
        true,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while proxy.hits.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pack never stalled"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Let the other download finish into the cache, unrecorded as yet.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let fetched_meanwhile = blobs(&cache);

    let refused = cache_cmd("gc", &cache, &["--no-wait"]);
    let msg = refused.expect_fail("gc --no-wait beside a pack");
    assert!(
        msg.contains(&format!(
            "the cache {} is in use by another ferry",
            cache.display()
        )),
        "{msg}"
    );
    assert!(cache.join(stray.blob_path()).exists());

    let mut gc = ferry_env(
        &[
            "cache".as_ref(),
            "gc".as_ref(),
            "--cache".as_ref(),
            cache.as_os_str(),
            "--json".as_ref(),
        ],
        &[],
        true,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut gc_err = std::io::BufReader::new(gc.stderr.take().unwrap());
    let mut line = String::new();
    gc_err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(&format!("waiting for the cache {}", cache.display())),
        "{line}"
    );
    assert!(gc.try_wait().unwrap().is_none(), "gc waits for the pack");
    for b in &fetched_meanwhile {
        assert!(cache.join("blobs/sha256").join(b).exists(), "{b} kept");
    }

    proxy.release();
    let packed = packing.wait_with_output().unwrap();
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let gc = gc.wait_with_output().unwrap();
    assert!(gc.status.success());
    let report: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(report["removed"]["count"], 1, "only the stray: {report:#}");
    assert_eq!(report["records_kept"], 2);
    assert!(!cache.join(stray.blob_path()).exists());
    for b in &fetched_meanwhile {
        if *b != stray.hex() {
            assert!(cache.join("blobs/sha256").join(b).exists(), "{b} kept");
        }
    }
    ferry(["verify".as_ref(), out.as_os_str()]).expect_ok("verify");
    let again = pack_ok(&spec, &t.path().join("again.tar"), &cache);
    assert_eq!(again["fetched"]["blobs_fetched"], 0);

    // While gc (or prune) holds the cache, a pack waits, and says so.
    let held = ferry::cache::Cache::open(&cache)
        .unwrap()
        .unwrap()
        .lock_exclusive(None)
        .unwrap();
    let mut waiting = ferry_env(
        &[
            "pack".as_ref(),
            spec.as_os_str(),
            "-o".as_ref(),
            t.path().join("late.tar").as_os_str(),
            "--cache".as_ref(),
            cache.as_os_str(),
        ],
        &[],
        false,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = std::io::BufReader::new(waiting.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(&format!(
            "waiting for the cache {}: a `ferry cache` prune or gc",
            cache.display()
        )),
        "{line}"
    );
    assert!(waiting.try_wait().unwrap().is_none(), "the pack waits");
    drop(held);
    let late = waiting.wait_with_output().unwrap();
    assert!(late.status.success());
    assert!(t.path().join("late.tar").exists());
}

#[test]
fn a_damaged_cached_manifest_drops_its_record_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    fill_registry(t.path(), &host);
    let spec = write_spec(
        t.path(),
        "ferry.yaml",
        &format!("images:\n  - {host}/library/app:1.0\n  - {host}/team/tool:2\n"),
    );
    let cache = t.path().join("cache");
    let packed = pack_ok(&spec, &t.path().join("b.tar"), &cache);
    let tool = packed["artifacts"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = cache.join(tool.parse::<ferry::digest::Digest>().unwrap().blob_path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();

    let text = cache_cmd("ls", &cache, &[]).expect_ok("ls");
    assert!(
        text.contains(&format!(
            "DAMAGED: document {tool}: its bytes do not match its digest; gc drops this record"
        )),
        "{text}"
    );
    let out = cache_cmd("gc", &cache, &[]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("warning: dropped the record of {host}/team/tool:2: its graph in the cache cannot be read: document {tool}: its bytes do not match its digest; a pack fetches it again")),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("removed 3 blobs"), "{}", out.stdout);
    let listing = cache_json("ls", &cache, &[]);
    assert_eq!(record_names(&listing), [format!("{host}/library/app:1.0")]);
    // The next pack fetches it whole again.
    let again = pack_ok(&spec, &t.path().join("again.tar"), &cache);
    assert_eq!(
        again["fetched"]["blobs_fetched"], 2,
        "tool's config and layer"
    );
    ferry(["verify".as_ref(), t.path().join("again.tar").as_os_str()]).expect_ok("verify");
}

#[test]
fn ferry_cache_then_xdg_cache_home_then_home_choose_the_cache() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    fill_registry(t.path(), &host);
    let spec = write_spec(t.path(), "one.txt", &format!("{host}/team/tool:2\n"));
    let (home, xdg, fc) = (
        t.path().join("home"),
        t.path().join("xdg"),
        t.path().join("fc"),
    );
    let pack_in = |env: &[(&str, Option<&Path>)]| {
        run(&mut ferry_env(
            &[
                "pack".as_ref(),
                spec.as_os_str(),
                "-o".as_ref(),
                t.path().join("b.tar").as_os_str(),
            ],
            env,
            true,
        ))
        .expect_ok("pack with the default cache");
    };
    let ls_in = |env: &[(&str, Option<&Path>)]| -> Value {
        let out = run(&mut ferry_env(
            &["cache".as_ref(), "ls".as_ref(), "--json".as_ref()],
            env,
            true,
        ))
        .expect_ok("cache ls");
        serde_json::from_str(&out).unwrap()
    };
    let empty = Path::new("");
    let all = [
        ("HOME", Some(home.as_path())),
        ("XDG_CACHE_HOME", Some(xdg.as_path())),
        ("FERRY_CACHE", Some(fc.as_path())),
    ];
    pack_in(&all);
    let listing = ls_in(&all);
    assert_eq!(listing["cache"], fc.to_str().unwrap());
    assert_eq!(listing["records"].as_array().unwrap().len(), 1);
    assert!(!xdg.exists() && !home.exists());

    // An empty FERRY_CACHE counts as unset: XDG_CACHE_HOME/ferry.
    let xdg_env = [
        ("HOME", Some(home.as_path())),
        ("XDG_CACHE_HOME", Some(xdg.as_path())),
        ("FERRY_CACHE", Some(empty)),
    ];
    pack_in(&xdg_env);
    assert_eq!(
        ls_in(&xdg_env)["cache"],
        xdg.join("ferry").to_str().unwrap()
    );
    assert!(xdg.join("ferry/records").is_dir());

    // Neither: ~/.cache/ferry (a relative XDG_CACHE_HOME is ignored).
    let home_env = [
        ("HOME", Some(home.as_path())),
        ("XDG_CACHE_HOME", Some(Path::new("relative/dir"))),
        ("FERRY_CACHE", None),
    ];
    let listing = ls_in(&home_env);
    assert_eq!(
        listing["cache"],
        home.join(".cache/ferry").to_str().unwrap()
    );
    assert_eq!(
        listing["records"].as_array().unwrap().len(),
        0,
        "not there yet"
    );

    // --cache wins over all of them.
    let named = t.path().join("named");
    let listing = cache_json("ls", &named, &[]);
    assert_eq!(listing["cache"], named.to_str().unwrap());
}

#[test]
fn bad_input_to_ferry_cache_is_refused_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    // Durations need a whole number and a unit; usage errors exit 2.
    for bad in ["30x", "30", "1.5d", "-3d"] {
        let out = cache_cmd("prune", &cache, &[&format!("--older-than={bad}")]);
        assert_eq!(out.code, Some(2), "{bad}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("{bad:?} is not a duration")),
            "{bad}: {}",
            out.stderr
        );
    }
    let out = cache_cmd("prune", &cache, &[]);
    assert_eq!(out.code, Some(2), "prune needs a rule: {}", out.stderr);
    let out = cache_cmd("prune", &cache, &["--older-than", "1d", "--keep", "a.yaml"]);
    assert_eq!(out.code, Some(2), "one rule at a time: {}", out.stderr);

    // A spec that does not load is named, before the cache is touched.
    let broken = write_spec(t.path(), "broken.yaml", "images: [\n");
    let msg = cache_cmd("prune", &cache, &["--keep", broken.to_str().unwrap()])
        .expect_fail("prune --keep broken");
    assert!(msg.contains("broken.yaml"), "{msg}");
    assert!(!cache.exists());

    // A cache that is not a directory, for every command that uses it.
    let file = t.path().join("a-file");
    std::fs::write(&file, b"not a cache").unwrap();
    let want = format!("the cache {} is not a directory", file.display());
    for sub in ["ls", "gc"] {
        let msg = cache_cmd(sub, &file, &[]).expect_fail(sub);
        assert!(msg.contains(&want), "{sub}: {msg}");
    }
    let msg = cache_cmd("prune", &file, &["--older-than", "1d"]).expect_fail("prune");
    assert!(msg.contains(&want), "{msg}");
    let one = write_spec(t.path(), "one.txt", "127.0.0.1:9/team/tool:2\n");
    let msg = pack(&one, &t.path().join("b.tar"), &file).expect_fail("pack --cache FILE");
    assert!(msg.contains(&want), "{msg}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a cache");

    // A cache that does not exist yet: nothing to list or remove.
    let text = cache_cmd("ls", &cache, &[]).expect_ok("ls");
    assert!(text.contains("0 B in 0 blobs, 0 records"), "{text}");
    let text = cache_cmd("gc", &cache, &[]).expect_ok("gc");
    assert!(text.contains("removed 0 blobs"), "{text}");
    assert!(!cache.exists(), "nothing is made");
}

#[test]
fn an_oci_chart_is_listed_as_a_chart_and_kept_with_the_images_it_names() {
    let t = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    fill_registry(t.path(), &host);
    // `ferry load` puts the demo chart in the registry as a Helm artifact;
    // its values name docker.io/library/demo:1.0.
    let demo = pack_demo(t.path());
    run(&mut ferry_env(
        &[
            "load".as_ref(),
            demo.as_os_str(),
            "--registry".as_ref(),
            host.as_ref(),
        ],
        &[],
        true,
    ))
    .expect_ok("load the demo");
    let cache = t.path().join("cache");
    let spec = write_spec(
        t.path(),
        "ferry.yaml",
        &format!("images:\n  - {host}/team/tool:2\ncharts:\n  - ref: oci://{host}/charts/demo-chart\n    version: 0.1.0\n"),
    );
    pack_ok(&spec, &t.path().join("b.tar"), &cache);
    let listing = cache_json("ls", &cache, &[]);
    let chart = record(&listing, &format!("{host}/charts/demo-chart:0.1.0"));
    assert_eq!(chart["kind"], "chart");
    assert_eq!(chart["source"], "registry");
    assert_eq!(chart["blobs"], 3, "manifest, config, chart archive");

    // Kept by a spec that wants its images too: the chart archive is read
    // from the cache, and the image it names, never fetched, is a warning.
    let keep = write_spec(
        t.path(),
        "keep.yaml",
        &format!("charts:\n  - ref: oci://{host}/charts/demo-chart\n    version: 0.1.0\n    images: true\n"),
    );
    let out = cache_cmd(
        "prune",
        &cache,
        &["--json", "--keep", keep.to_str().unwrap()],
    );
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "image docker.io/library/demo:1.0 (named by chart {host}/charts/demo-chart:0.1.0: "
        )) && out.stderr.contains("the cache holds no record of it"),
        "{}",
        out.stderr
    );
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["dropped"].as_array().unwrap().len(), 1);
    assert_eq!(
        report["dropped"][0]["reference"],
        format!("{host}/team/tool:2")
    );
    assert_eq!(
        record_names(&cache_json("ls", &cache, &[])),
        [format!("{host}/charts/demo-chart:0.1.0")]
    );
}
