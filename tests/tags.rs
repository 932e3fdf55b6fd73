//! Tag rules (`tags:` on an image entry), `ferry resolve` and `pack
//! --lock`, against the real distribution registry (`docker-registry`)
//! filled by skopeo with one repository tagged `1.0.0`, `1.1.0`,
//! `1.2.0-rc.1`, `2.0.0` and `latest`, each tag a different image.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::build::{self, Flavour, LayoutBuilder};
use support::registry::DockerRegistry;
use support::*;

const TAGS: &[&str] = &["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest"];

/// A registry holding `org/app` at every tag of [`TAGS`].
fn filled_registry(dir: &Path) -> DockerRegistry {
    let reg = DockerRegistry::start(&dir.join("registry"), false);
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    for (i, tag) in TAGS.iter().enumerate() {
        let layer = build::layer(&[
            ("etc/version", tag.as_bytes()),
            ("bin/app", &build::pseudo_random(i as u64, 2048)),
        ]);
        let m = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
        l.tag(&m, tag);
    }
    let layout = l.finish();
    for tag in TAGS {
        push(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("{}/org/app:{tag}", reg.host()),
        );
    }
    reg
}

fn push(from: &str, to: &str) {
    run(skopeo().args([
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        &format!("docker://{to}"),
    ]))
    .expect_ok(&format!("skopeo copy {from} {to}"));
}

fn write_spec(dir: &Path, name: &str, images: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("name: tagged\nimages:\n{images}")).unwrap();
    p
}

/// `ferry ARGS…` with a fresh cache under `dir` and no docker config.
fn ferry_in(dir: &Path, args: &[&std::ffi::OsStr]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("--quiet")
        .args(args)
        .env("FERRY_CACHE", dir.join("cache"))
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null());
    run(&mut cmd)
}

fn pack(dir: &Path, spec: &Path, out: &Path, extra: &[&str]) -> Out {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    ferry_in(dir, &args)
}

/// The references an archive carries, sorted.
fn carried(archive: &Path) -> Vec<String> {
    let v = inspect_json(archive);
    let mut refs: Vec<String> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reference"].as_str().unwrap().to_owned())
        .collect();
    refs.sort();
    refs
}

#[test]
fn tag_rules_choose_by_semver_newest_and_regex_and_pack_prints_the_choice() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let reg = filled_registry(dir);
    let app = format!("{}/org/app", reg.host());
    let case = |name: &str, rule: &str, want: &[&str]| {
        let spec = write_spec(
            dir,
            &format!("{name}.yaml"),
            &format!("  - ref: {app}\n    tags: {rule}\n"),
        );
        let out = dir.join(format!("{name}.tar"));
        let stdout = pack(dir, &spec, &out, &[]).expect_ok(&format!("pack {name}"));
        assert!(
            stdout.contains(&format!("chose {}", want.join(", "))),
            "{name}: {stdout}"
        );
        let want: Vec<String> = want.iter().map(|t| format!("{app}:{t}")).collect();
        assert_eq!(carried(&out), want, "{name}");
    };
    // Pre-releases only when named; `latest` is not a version.
    case("semver", r#"{semver: "^1"}"#, &["1.0.0", "1.1.0"]);
    case("newest", r#"{semver: "^1", newest: 1}"#, &["1.1.0"]);
    case(
        "pre",
        r#"{semver: ">=1.2.0-rc.0"}"#,
        &["1.2.0-rc.1", "2.0.0"],
    );
    case("regex", r#"{regex: '^1\.\d+\.0$'}"#, &["1.0.0", "1.1.0"]);
    case("latest", r#"{regex: '^latest$'}"#, &["latest"]);
    case("list", "[2.0.0, latest]", &["2.0.0", "latest"]);
}

#[test]
fn a_tag_rule_matching_nothing_names_the_image_the_rule_and_the_nearest_tags() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let reg = filled_registry(dir);
    let app = format!("{}/org/app", reg.host());
    let spec = write_spec(
        dir,
        "none.yaml",
        &format!("  - ref: {app}\n    tags: {{semver: \"^3\", newest: 2}}\n"),
    );
    let err = pack(dir, &spec, &dir.join("none.tar"), &[]).expect_fail("a rule matching nothing");
    assert!(
        err.contains(&format!(
            "image {app}: tags {{semver \"^3\", newest 2}} matches none of its 5 tags"
        )),
        "{err}"
    );
    assert!(
        err.contains("nearest that exist: 2.0.0, 1.2.0-rc.1, 1.1.0, 1.0.0"),
        "{err}"
    );
    assert!(!dir.join("none.tar").exists());
    let spec = write_spec(
        dir,
        "missing.yaml",
        &format!("  - ref: {app}\n    tags: [1.1.0, 1.1.1]\n"),
    );
    let err = pack(dir, &spec, &dir.join("none.tar"), &[]).expect_fail("a missing listed tag");
    assert!(err.contains(&format!("image {app}: tag 1.1.1")), "{err}");
    assert!(err.contains("nearest that exist: 1.1.0"), "{err}");
}

#[test]
fn tag_lists_are_read_page_by_page() {
    // Paged against `ferry serve` (which sorts, as the distribution spec
    // asks; distribution 2.8 pages its unsorted storage order).
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let reg = filled_registry(dir);
    let spec = write_spec(
        dir,
        "all.yaml",
        &format!(
            "  - ref: {}/org/app\n    tags: {{regex: '.'}}\n",
            reg.host()
        ),
    );
    let archive = dir.join("all.tar");
    pack(dir, &spec, &archive, &[]).expect_ok("pack every tag");
    let served = Served::start(&archive, ferry::mapping::TargetRules::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = |host: String, page: usize| {
        rt.block_on(async {
            let remote = ferry::remote::Remote::connect(&host, &Default::default())
                .await
                .unwrap();
            remote.list_tags_paged("org/app", page).await.unwrap()
        })
    };
    let mut want: Vec<String> = TAGS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(list(served.addr.to_string(), 2), want);
    assert_eq!(list(served.addr.to_string(), 1), want);
    // The registry's own answer, however it orders its pages.
    assert_eq!(list(reg.host(), 1000), want);
}

#[test]
fn resolve_then_pack_lock_gives_the_bytes_of_a_pack_of_the_same_tags_and_fails_when_a_tag_moved() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let reg = filled_registry(dir);
    let app = format!("{}/org/app", reg.host());
    let ruled = write_spec(
        dir,
        "ruled.yaml",
        &format!("  - ref: {app}\n    tags: {{semver: \">=1.0.0 <2\"}}\n"),
    );
    let exact = write_spec(
        dir,
        "exact.yaml",
        &format!("  - {app}:1.0.0\n  - {app}:1.1.0\n"),
    );
    let lock = dir.join("ferry.lock.yaml");
    let stdout = ferry_in(
        dir,
        &[
            "resolve".as_ref(),
            ruled.as_os_str(),
            "-o".as_ref(),
            lock.as_os_str(),
        ],
    )
    .expect_ok("resolve");
    assert!(stdout.contains("chose 1.0.0, 1.1.0"), "{stdout}");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains("format: ferry-lock"), "{text}");
    assert!(text.contains("format_version: 1"), "{text}");
    let digest = |tag: &str| {
        let raw = registry_manifest(&format!("{app}:{tag}"), None).expect_ok("skopeo inspect");
        ferry::digest::Digest::of(raw.as_bytes()).to_string()
    };
    for tag in ["1.0.0", "1.1.0"] {
        assert!(
            text.contains(&format!("{app}:{tag}@{}", digest(tag))),
            "{text}"
        );
    }

    // Meanwhile a new release appears: the rule would now choose it too,
    // the lock does not.
    push(&format!("docker://{app}:2.0.0"), &format!("{app}:1.9.0"));
    let locked = dir.join("locked.tar");
    let stdout =
        pack(dir, &ruled, &locked, &["--lock", lock.to_str().unwrap()]).expect_ok("pack --lock");
    assert!(stdout.contains("chose 1.0.0, 1.1.0"), "{stdout}");
    let plain = dir.join("exact.tar");
    pack(dir, &exact, &plain, &[]).expect_ok("pack of the exact tags");
    assert_eq!(
        std::fs::read(&locked).unwrap(),
        std::fs::read(&plain).unwrap(),
        "pack --lock and a pack of the same exact tags differ"
    );

    // A locked tag moves: pack --lock refuses, naming it.
    push(&format!("docker://{app}:2.0.0"), &format!("{app}:1.1.0"));
    let out = dir.join("moved.tar");
    let err =
        pack(dir, &ruled, &out, &["--lock", lock.to_str().unwrap()]).expect_fail("a moved tag");
    assert!(err.contains(&format!("image {app}:1.1.0 moved")), "{err}");
    assert!(err.contains(&digest("2.0.0")), "{err}");
    assert!(!out.exists());

    // A spec entry the lock does not know.
    let other = write_spec(
        dir,
        "other.yaml",
        &format!("  - ref: {app}\n    tags: {{semver: \"^2\"}}\n"),
    );
    let err = pack(dir, &other, &out, &["--lock", lock.to_str().unwrap()])
        .expect_fail("an entry not locked");
    assert!(err.contains("is not in the lock file"), "{err}");
}

#[test]
fn bad_tag_rules_are_refused_naming_the_entry() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let cases = [
        (
            "  - ref: reg.example/app:1.0\n    tags: [1.0]\n",
            "names its own tag or digest",
        ),
        (
            "  - ref: reg.example/app\n    name: reg.example/x:1\n    tags: [a]\n",
            "`name:` and `tags:` do not go together",
        ),
        (
            "  - ref: reg.example/app\n    tags: {regex: '('}\n",
            "`regex: \"(\"` is not a regular expression",
        ),
        (
            "  - ref: reg.example/app\n    tags: {semver: '>>1'}\n",
            "`semver: \">>1\"` is not a version constraint",
        ),
        (
            "  - ref: reg.example/app\n    tags: {newest: 0}\n",
            "`newest: 0` keeps no tag",
        ),
        ("  - ref: reg.example/app\n    tags: {}\n", "has no rule"),
        (
            "  - ref: reg.example/app\n    tags: {semver: '^1', newset: 2}\n",
            "newset",
        ),
        (
            "  - ref: oci:./layout\n    tags: [a]\n",
            "a local source has none",
        ),
    ];
    for (images, want) in cases {
        let spec = write_spec(dir, "bad.yaml", images);
        let err = pack(dir, &spec, &dir.join("bad.tar"), &[]).expect_fail(images);
        assert!(err.contains(want), "{images}: {err}");
        assert!(err.contains("bad.yaml at line"), "{images}: {err}");
    }
    let lock = dir.join("bad.lock.yaml");
    std::fs::write(&lock, "format: ferry-lock\nformat_version: 9\nimages: []\n").unwrap();
    let spec = write_spec(dir, "ok.yaml", "  - reg.example/app:1\n");
    let err = pack(
        dir,
        &spec,
        &dir.join("bad.tar"),
        &["--lock", lock.to_str().unwrap()],
    )
    .expect_fail("a lock of another version");
    assert!(err.contains("format_version 9"), "{err}");
}
