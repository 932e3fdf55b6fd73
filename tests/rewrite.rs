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
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        b"image: demo:1.0\n",
        "other files are copied as they are, never rewritten"
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

/// The rough edge of issue 20: `-o DIR` wrote only the files that changed,
/// so `kubectl apply -f DIR` missed every manifest without an image. It
/// must give the whole tree, and say what it wrote.
#[test]
fn rewrite_to_an_output_directory_writes_the_whole_tree() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let (archive, dir) = setup(t.path());
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: demo\n";
    std::fs::write(dir.join("service.yaml"), service).unwrap();
    std::fs::write(dir.join("sub/config.json"), "{\"a\": 1}\n").unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(dir.join("sub/blob.bin"), &binary).unwrap();
    std::fs::write(dir.join("install.sh"), "#!/bin/sh\nkubectl apply -f .\n").unwrap();
    std::fs::set_permissions(
        dir.join("install.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("service.yaml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("sub/link.txt")).unwrap();
    std::os::unix::fs::symlink("../service.yaml", dir.join("sub/link.yaml")).unwrap();

    let out = t.path().join("out");
    let mut a = args(&archive, &["-o", out.to_str().unwrap()]);
    a.push(dir.clone().into());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(a);
    let o = run(&mut cmd);
    assert!(o.ok(), "{}{}", o.stdout, o.stderr);

    // Every regular file is there: rewritten, unchanged or copied.
    assert!(std::fs::read_to_string(out.join("sub/deploy.yaml"))
        .unwrap()
        .contains("registry.local:5000/library/demo:1.0"));
    assert_eq!(
        std::fs::read_to_string(out.join("service.yaml")).unwrap(),
        service,
        "a manifest without an image is in the tree too"
    );
    assert_eq!(
        std::fs::read(out.join("sub/config.json")).unwrap(),
        b"{\"a\": 1}\n"
    );
    assert_eq!(std::fs::read(out.join("sub/blob.bin")).unwrap(), binary);
    let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("install.sh"), 0o750, "copies keep their permissions");
    assert_eq!(mode("service.yaml"), 0o600, "a private file stays private");
    assert!(out.join("empty").is_dir());
    // Links are neither followed nor copied, and are named.
    for l in ["sub/link.txt", "sub/link.yaml"] {
        assert!(std::fs::symlink_metadata(out.join(l)).is_err(), "{l}");
        assert!(
            o.stderr.contains(&format!(
                "{l} is a symbolic link: not followed and not copied"
            )),
            "{}",
            o.stderr
        );
    }
    // The summary says what was written.
    assert!(
        o.stderr.contains(&format!(
            "wrote 6 file(s) under {}: 1 rewritten, 2 YAML/JSON unchanged, 3 other file(s) copied; 2 link(s) or special file(s) not copied",
            out.display()
        )),
        "{}",
        o.stderr
    );

    // An output directory inside the input is refused.
    let mut a = args(&archive, &["-o"]);
    a.push(dir.join("out").into());
    a.push(dir.clone().into());
    let e = ferry(a).expect_fail("rewrite -o inside the input");
    assert!(e.contains("is inside the input directory"), "{e}");
    // Also when the path only gets there through `..`.
    let mut a = args(&archive, &["-o"]);
    a.push(t.path().join("out/../manifests/new/out").into());
    a.push(dir.clone().into());
    let e = ferry(a).expect_fail("rewrite -o inside the input, through ..");
    assert!(e.contains("is inside the input directory"), "{e}");
    assert!(!dir.join("new").exists(), "nothing written");
}

/// `--check` must never pass on what it could not read: a file that is
/// not text, and a link to a manifest under a directory.
#[test]
fn check_fails_on_what_it_could_not_read() {
    let t = tempfile::tempdir().unwrap();
    let (archive, dir) = setup(t.path());
    let ok = t.path().join("ok");
    std::fs::create_dir_all(&ok).unwrap();
    std::fs::write(ok.join("a.yaml"), "image: demo:1.0\n").unwrap();
    let mut a = args(&archive, &["--check"]);
    a.push(ok.clone().into());
    ferry(a).expect_ok("rewrite --check on a readable tree");

    std::fs::write(ok.join("b.yaml"), b"image: \xff\xfe\n").unwrap();
    let mut a = args(&archive, &["--check"]);
    a.push(ok.clone().into());
    let e = ferry(a).expect_fail("rewrite --check on a file that is not UTF-8");
    assert!(e.contains("b.yaml is not UTF-8 text"), "{e}");
    std::fs::remove_file(ok.join("b.yaml")).unwrap();

    std::os::unix::fs::symlink(dir.join("sub/deploy.yaml"), ok.join("linked.yaml")).unwrap();
    let mut a = args(&archive, &["--check"]);
    a.push(ok.clone().into());
    let e = ferry(a).expect_fail("rewrite --check with a link to a manifest");
    assert!(
        e.contains("link(s) that may lead to manifests were not followed")
            && e.contains("linked.yaml"),
        "{e}"
    );
}

/// Seed 003: the ESS override is a ConfigMap whose `data.images_digests: |`
/// block holds the installer's tree. `--check` reads that block: an image
/// the bundle lacks fails it, named with its file, line and key path.
#[test]
fn check_reads_the_images_digests_block_of_a_configmap() {
    let t = tempfile::tempdir().unwrap();
    let (archive, _) = setup(t.path());
    let digest = inspect_json(&archive)["artifacts"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let cm = |path: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ess-images\ndata:\n  images_digests: |\n    element_web:\n      element_web:\n        image_digest: {digest}\n        image_repository_path: {path}\n        image_repository_server: docker.io\n        image_tag: \"1.0\"\n"
        )
    };
    let file = t.path().join("cm.yaml");
    std::fs::write(&file, cm("library/demo")).unwrap();
    let mut a = args(&archive, &["--check"]);
    a.push(file.clone().into());
    let report = ferry(a).expect_ok("rewrite --check on a ConfigMap the bundle covers");
    assert!(
        report.contains(
            "cm.yaml:11 (in data.images_digests)  images_digests  docker.io/library/demo:1.0@"
        ),
        "{report}"
    );

    std::fs::write(&file, cm("library/absent")).unwrap();
    let mut a = args(&archive, &["--check"]);
    a.push(file.clone().into());
    let o = {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(a);
        run(&mut cmd)
    };
    assert!(!o.ok(), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains(&format!(
            "cm.yaml:11 (in data.images_digests)  images_digests  docker.io/library/absent:1.0@{digest}  NOT IN BUNDLE"
        )),
        "{}",
        o.stdout
    );
    assert!(
        o.stderr
            .contains("1 image reference(s) are not in the bundle"),
        "{}",
        o.stderr
    );

    // A block that looks like YAML, names a registry and does not parse
    // fails the check too.
    std::fs::write(
        &file,
        "kind: ConfigMap\ndata:\n  images_digests: |\n    element_web:\n      image_repository_server: quay.io\n     bad: [\n",
    )
    .unwrap();
    let mut a = args(&archive, &["--check", "--json"]);
    a.push(file.clone().into());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(a);
    let o = run(&mut cmd);
    assert!(!o.ok(), "{}{}", o.stdout, o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["outcome"], "unreadable", "{v}");
    assert_eq!(v[0]["block"], "data.images_digests", "{v}");
    assert!(
        o.stderr
            .contains("1 block(s) that name a registry could not be read (")
            && o.stderr.contains("cm.yaml:4 (in data.images_digests)"),
        "{}",
        o.stderr
    );
}

/// `ferry images`, the connected-side twin of `--check`: references on
/// stdout with file and line, skipped values on stderr, and exit 1 when a
/// block that names a registry could not be read.
#[test]
fn ferry_images_lists_references_and_fails_on_what_it_could_not_read() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), DEPLOY).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        "image:\n  registry: docker.io\n  repository: bitnami/redis\n---\nimage: \"{{ .Values.x }}\"\n---\nkind: ConfigMap\ndata:\n  images_digests: |\n    web:\n      web:\n        image_repository_server: quay.io\n        image_repository_path: org/web\n        image_tag: v1\n",
    )
    .unwrap();
    let run_images = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("images").arg(&dir).args(extra);
        run(&mut cmd)
    };
    let o = run_images(&[]);
    assert!(o.ok(), "{}{}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "only references on stdout:\n{}", o.stdout);
    assert!(lines[0].starts_with("docker.io/library/demo:1.0  ") && lines[0].ends_with("a.yaml:9"));
    assert!(lines[1].starts_with("docker.io/library/busybox:1.36  "));
    assert!(
        lines[2].starts_with("quay.io/org/web:v1  ")
            && lines[2].ends_with("b.yaml:12 (in data.images_digests)"),
        "{}",
        lines[2]
    );
    assert!(
        o.stderr.contains(
            "docker.io/bitnami/redis  (no tag or digest: the chart's appVersion decides it)"
        ) && o.stderr.contains("{{ .Values.x }}  (templated or empty)")
            && o.stderr
                .contains("3 reference(s), 3 distinct, in 2 file(s); 2 value(s) skipped"),
        "{}",
        o.stderr
    );
    let o = run_images(&["--unique"]);
    assert_eq!(
        o.stdout,
        "docker.io/library/demo:1.0\ndocker.io/library/busybox:1.36\nquay.io/org/web:v1\n"
    );

    std::fs::write(
        dir.join("c.yaml"),
        "data:\n  x: |\n    image_repository_server: ghcr.io\n     bad: [\n",
    )
    .unwrap();
    let o = run_images(&[]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("NOT READ ") && o.stderr.contains("c.yaml:3 (in data.x)")
            && o.stderr.contains("error: the list may be incomplete: 1 block(s) that name a registry could not be read"),
        "{}",
        o.stderr
    );
}
