//! `ferry rewrite` end to end: maps from a bundle or a map file, output
//! directory, in place, check and strict modes, and bad input that leaves
//! every file untouched.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::*;

const DEPLOY: &str = "# keep this comment\napiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: demo\n          image: \"demo:1.0\"   # short name\n        - name: side\n          image: busybox:1.36\n";

fn setup(t: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let archive = pack_demo(t);
    let dir = t.join("manifests");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/deploy.yaml"), DEPLOY).unwrap();
    std::fs::write(dir.join("notes.txt"), "image: demo:1.0\n").unwrap();
    (archive, dir)
}

fn args<'a>(archive: &'a Path, extra: &[&'a str]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![
        "rewrite".into(),
        "--bundle".into(),
        archive.into(),
        "--registry".into(),
        "registry.local:5000".into(),
    ];
    v.extend(extra.iter().map(|s| s.into()));
    v
}

#[test]
fn bundle_map_to_an_output_directory() {
    let t = tempfile::tempdir().unwrap();
    let (archive, dir) = setup(t.path());
    let out = t.path().join("out");
    let mut a = args(&archive, &["--pin-digest", "-o", out.to_str().unwrap()]);
    a.push(dir.clone().into());
    let report = ferry(a).expect_ok("rewrite -o");
    let digest = inspect_json(&archive)["artifacts"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let want = DEPLOY.replace(
        "\"demo:1.0\"",
        &format!("\"registry.local:5000/library/demo:1.0@{digest}\""),
    );
    assert_eq!(
        std::fs::read_to_string(out.join("sub/deploy.yaml")).unwrap(),
        want
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/deploy.yaml")).unwrap(),
        DEPLOY,
        "source untouched"
    );
    assert!(
        !out.join("notes.txt").exists(),
        "only YAML and JSON are read"
    );
    assert!(
        report.contains(
            "sub/deploy.yaml:9  image  demo:1.0  -> registry.local:5000/library/demo:1.0@"
        ),
        "{report}"
    );
    assert!(
        report.contains("sub/deploy.yaml:11  image  busybox:1.36  NOT IN BUNDLE"),
        "{report}"
    );
}

#[test]
fn check_and_strict_fail_on_missing_images_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (archive, dir) = setup(t.path());
    let mut a = args(&archive, &["--check"]);
    a.push(dir.clone().into());
    let e = ferry(a).expect_fail("rewrite --check");
    assert!(
        e.contains("NOT IN BUNDLE") && e.contains("1 image reference(s) are not in the bundle"),
        "{e}"
    );

    let mut a = args(&archive, &["--strict", "--in-place"]);
    a.push(dir.clone().into());
    ferry(a).expect_fail("rewrite --strict");
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/deploy.yaml")).unwrap(),
        DEPLOY
    );

    // Without --strict, in place: the file changes, the missing image is a
    // warning, and the file keeps its permissions.
    use std::os::unix::fs::PermissionsExt;
    let target = dir.join("sub/deploy.yaml");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut a = args(&archive, &["--in-place", "--json"]);
    a.push(dir.clone().into());
    let out = ferry(a).expect_ok("rewrite --in-place");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 2);
    assert_eq!(report[0]["outcome"], "rewritten");
    assert_eq!(report[1]["outcome"], "not_in_bundle");
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .contains("registry.local:5000/library/demo:1.0"));
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600,
        "--in-place keeps the file's permissions"
    );
}

#[test]
fn invalid_yaml_names_the_file_and_leaves_everything_untouched() {
    let t = tempfile::tempdir().unwrap();
    let (archive, dir) = setup(t.path());
    std::fs::write(dir.join("broken.yaml"), "a: [1, 2\nb: c\n").unwrap();
    let mut a = args(&archive, &["--in-place"]);
    a.push(dir.clone().into());
    let e = ferry(a).expect_fail("rewrite with a broken file");
    assert!(e.contains("broken.yaml: invalid YAML at line"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/deploy.yaml")).unwrap(),
        DEPLOY
    );
}

#[test]
fn map_files() {
    let t = tempfile::tempdir().unwrap();
    let (archive, dir) = setup(t.path());
    let bundle = ferry::archive::Archive::open(&archive).unwrap().bundle;
    let map = ferry::rewrite::ImageMap::from_bundle(&bundle, "registry.local:5000/mirror", false)
        .unwrap();
    let map_path = t.path().join("map.json");
    std::fs::write(&map_path, map.to_json()).unwrap();
    let out = ferry([
        "rewrite".as_ref(),
        "--map".as_ref(),
        map_path.as_os_str(),
        dir.join("sub/deploy.yaml").as_os_str(),
    ])
    .expect_ok("rewrite --map");
    assert!(
        out.contains("-> registry.local:5000/mirror/library/demo:1.0"),
        "{out}"
    );

    std::fs::write(&map_path, b"{\"images\": []}").unwrap();
    let e = ferry([
        "rewrite".as_ref(),
        "--map".as_ref(),
        map_path.as_os_str(),
        dir.as_os_str(),
    ])
    .expect_fail("bad map");
    assert!(
        e.contains("not a ferry map file") && e.contains("map.json"),
        "{e}"
    );

    let e = ferry(["rewrite".as_ref(), dir.as_os_str()]).expect_fail("no map");
    assert!(
        e.contains("--map MAP, or --bundle ARCHIVE --registry"),
        "{e}"
    );
}

#[test]
fn a_map_whose_fields_are_not_references_is_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let (_, dir) = setup(t.path());
    let file = dir.join("sub/deploy.yaml");
    let before = std::fs::read(&file).unwrap();
    let d = ferry::digest::Digest::of(b"x");
    for (source, target, tag) in [
        // A newline and more YAML: a privileged Pod if written verbatim.
        (
            "docker.io/library/demo:1.0",
            "reg:5000/library/demo\n    securityContext: {privileged: true}\n    x",
            "\"1.0\"",
        ),
        (
            "docker.io/library/demo:1.0",
            "reg:5000/library/demo",
            "\"1.0\\nprivileged: true\"",
        ),
        (
            "docker.io/library/demo:1.0",
            "reg:5000/Library/ Demo",
            "\"1.0\"",
        ),
        ("not a reference", "reg:5000/library/demo", "\"1.0\""),
    ] {
        let map = format!(
            r#"{{"format":"ferry-map","format_version":1,"registry":"reg:5000","images":[{{"source":{},"target":{},"tag":{tag},"digest":"{d}"}}]}}"#,
            serde_json::to_string(source).unwrap(),
            serde_json::to_string(target).unwrap(),
        );
        let map_path = t.path().join("map.json");
        std::fs::write(&map_path, map).unwrap();
        let e = ferry([
            "rewrite".as_ref(),
            "--in-place".as_ref(),
            "--map".as_ref(),
            map_path.as_os_str(),
            file.as_os_str(),
        ])
        .expect_fail("rewrite with a bad map");
        assert!(
            e.contains("not a ferry map file") && e.contains("map.json"),
            "{e}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), before, "nothing written");
    }
}

#[test]
fn rewrite_to_an_output_directory_never_writes_through_a_link_planted_in_it() {
    let t = tempfile::tempdir().unwrap();
    let (archive, dir) = setup(t.path());
    let out = t.path().join("out");
    let victim = t.path().join("victim");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    // out/sub -> victim: sub/deploy.yaml would land in victim/.
    std::os::unix::fs::symlink(&victim, out.join("sub")).unwrap();
    let mut a = args(&archive, &["-o", out.to_str().unwrap()]);
    a.push(dir.clone().into());
    let e = ferry(a).expect_fail("rewrite -o through a link");
    assert!(e.contains("is a symbolic link") && e.contains("sub"), "{e}");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing written through the link"
    );
}

#[test]
fn a_rewrite_in_place_that_fails_midway_changes_no_file() {
    let t = tempfile::tempdir().unwrap();
    let (archive, _) = setup(t.path());
    let dir = t.path().join("values");
    std::fs::create_dir_all(&dir).unwrap();
    // a.yaml is small; z.yaml is larger than the file-size limit below, so
    // writing it fails after a.yaml's output is already written.
    std::fs::write(dir.join("a.yaml"), DEPLOY).unwrap();
    let big = format!("{DEPLOY}# {}\n", "x".repeat(200 << 10));
    std::fs::write(dir.join("z.yaml"), &big).unwrap();
    let o = run(std::process::Command::new("bash").arg("-c").arg(format!(
        "trap '' XFSZ; ulimit -f 64; exec '{}' --quiet rewrite --bundle '{}' --registry registry.local:5000 --in-place '{}'",
        env!("CARGO_BIN_EXE_ferry"),
        archive.display(),
        dir.display()
    )));
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("z.yaml") && o.stderr.contains("no file was changed"),
        "{}",
        o.stderr
    );
    assert_eq!(std::fs::read_to_string(dir.join("a.yaml")).unwrap(), DEPLOY);
    assert_eq!(std::fs::read_to_string(dir.join("z.yaml")).unwrap(), big);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}
