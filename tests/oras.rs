//! Interop with oras-py (the pip package `oras`, an OCI client no one here
//! wrote): it pulls a chart and file artifacts from the real distribution
//! registry after `ferry load`, and from `ferry serve`, and what it saves
//! is compared byte for byte with what was packed. oras-py saves a layer
//! under its title annotation, and one without a title (a Helm chart's
//! layer, as Helm pushes it) under its digest.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::registry::DockerRegistry;
use support::*;

/// Pulls `target` with `oras.client.OrasClient` over plain HTTP into
/// `out`; prints the saved paths, one a line.
const PULL: &str = r#"
import sys
import oras.client

host, target, out = sys.argv[1], sys.argv[2], sys.argv[3]
client = oras.client.OrasClient(hostname=host, insecure=True)
for path in client.pull(target=target, outdir=out):
    print(path)
"#;

/// python3 with oras-py, or a failure naming what to install.
fn python_with_oras() -> PathBuf {
    let python = require_tool("python3", "python3");
    let probe = run(Command::new(&python).args(["-c", "import oras.client"]));
    assert!(
        probe.ok(),
        "this test needs oras-py, the pip package `oras`, which is not installed: python3 -m pip install oras (or run scripts/test.sh, which installs it)\n{}",
        probe.stderr
    );
    python
}

/// `oras pull HOST/TARGET` into `out`; the files it says it saved.
fn oras_pull(python: &Path, host: &str, target: &str, out: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(out).unwrap();
    let saved = run(Command::new(python).args([
        "-c",
        PULL,
        host,
        &format!("{host}/{target}"),
        &out.display().to_string(),
    ]))
    .expect_ok(&format!("oras-py pull {host}/{target}"));
    saved.lines().map(PathBuf::from).collect()
}

/// Pulls the demo chart, file and directory from `host` and compares them
/// with the fixtures.
fn check_pulls(python: &Path, host: &str, scratch: &Path) {
    let demo = repo_root().join("fixtures/demo");
    let chart = std::fs::read(demo.join("charts/demo-chart-0.1.0.tgz")).unwrap();
    let layer = ferry::digest::Digest::of(&chart);

    // The chart layer has no title: saved under its digest.
    let out = scratch.join("chart");
    let saved = oras_pull(python, host, "charts/demo-chart:0.1.0", &out);
    assert_eq!(saved, [out.join(layer.to_string())], "{host}");
    assert_eq!(
        std::fs::read(&saved[0]).unwrap(),
        chart,
        "the chart from {host}"
    );

    let out = scratch.join("file");
    let saved = oras_pull(python, host, "files/readme.txt:latest", &out);
    assert_eq!(saved, [out.join("README.txt")], "{host}");
    assert_eq!(
        std::fs::read(&saved[0]).unwrap(),
        std::fs::read(demo.join("files/README.txt")).unwrap(),
        "README.txt from {host}"
    );

    // A directory is carried as a plain tar (not oras's tar+gzip), so
    // oras-py saves the tar under the directory's name.
    let out = scratch.join("dir");
    let saved = oras_pull(python, host, "files/manifests:latest", &out);
    assert_eq!(saved, [out.join("manifests")], "{host}");
    let tar = std::fs::read(&saved[0]).unwrap();
    let mut found = false;
    for e in tar::Archive::new(tar.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("manifests/deployment.yaml") {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut got).unwrap();
            assert_eq!(
                got,
                std::fs::read(demo.join("files/manifests/deployment.yaml")).unwrap()
            );
            found = true;
        }
    }
    assert!(
        found,
        "the directory's tar from {host} holds deployment.yaml"
    );
}

#[test]
fn oras_py_pulls_charts_and_files_from_a_loaded_registry_and_from_serve() {
    let python = python_with_oras();
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());

    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    run(Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "load"])
        .arg(&archive)
        .args(["--registry", &reg.host()])
        .env("DOCKER_CONFIG", t.path().join("none")))
    .expect_ok("ferry load");
    check_pulls(&python, &reg.host(), &t.path().join("from-registry"));

    let served = ServeProcess::start(&archive, &[], None);
    check_pulls(
        &python,
        &served.addr.to_string(),
        &t.path().join("from-serve"),
    );
}
