//! README's quick start runs as written, in order, on a fresh checkout:
//! every line of its two command blocks, with `ferry` being the binary
//! under test and `localhost:5000` a real distribution registry the test
//! starts on a free port. (`scripts/test.sh`, the suite itself, is the one
//! line left out.)

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::registry::DockerRegistry;
use support::*;

/// The lines of the README's first two `sh` blocks (the quick start and
/// "Then, with the archive"), without comments and blank lines.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), l) => b.push(l.to_owned()),
            _ => {}
        }
        if blocks.len() == 2 {
            break;
        }
    }
    assert_eq!(blocks.len(), 2, "README has no quick start blocks");
    blocks
        .concat()
        .into_iter()
        .map(|l| match l.find(" #") {
            Some(i) if !l.starts_with('#') => l[..i].trim_end().to_owned(),
            _ => l,
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn every_quick_start_command_in_the_readme_runs_as_written_in_order() {
    require_tool("skopeo", "skopeo");
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("checkout");
    std::fs::create_dir(&work).unwrap();
    // A fresh checkout's fixtures, and `ferry` on the PATH.
    std::os::unix::fs::symlink(repo_root().join("fixtures"), work.join("fixtures")).unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ferry"), bin.join("ferry")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let scratch = t.path().join("demo-copy");
    let lines = quick_start();
    assert!(
        lines.iter().any(|l| l.starts_with("ferry load")),
        "the quick start changed shape: {lines:?}"
    );
    let mut ran = 0;
    for line in &lines {
        if line == "scripts/test.sh" {
            continue;
        }
        let cmd = line
            .replace("cargo run --release --", "ferry")
            .replace("localhost:5000", &reg.host())
            .replace("/tmp/demo", scratch.to_str().unwrap());
        let out = run(Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir(&work)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", t.path().join("no-docker-config")));
        assert!(
            out.ok(),
            "README line failed: {line}\nran: {cmd}\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} lines ran: {lines:?}");
}
