//! The output policy (README, "Output"), command by command: results and
//! `--json` on stdout; progress, warnings, notes and errors on stderr. A
//! failed verification or load is still the command's result (stdout, exit
//! 1); an error that stops a command is `error: …` on stderr with nothing
//! on stdout. With pipes instead of a terminal there is no progress at all.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::build::{self, LayoutBuilder};
use support::registry::DockerRegistry;
use support::*;

/// `ferry [--quiet] ARGS…` with pipes for stdout and stderr (so no
/// terminal), and no docker config of the developer's.
fn ferry_run(quiet: bool, args: &[&str]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    if quiet {
        c.arg("--quiet");
    }
    run(c.args(args).env("DOCKER_CONFIG", "/nonexistent/ferry-test"))
}

/// `ferry --quiet ARGS…`.
fn q(args: &[&str]) -> Out {
    ferry_run(true, args)
}

/// `ferry ARGS…`, progress not turned off: stderr is a pipe, so none shows.
fn loud(args: &[&str]) -> Out {
    ferry_run(false, args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Success, every marker on stdout, none on stderr, and nothing else on
/// stderr either (no progress, no notes).
fn assert_result_only(out: &Out, markers: &[&str], what: &str) {
    assert_eq!(
        out.code,
        Some(0),
        "{what}:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert_markers(out, markers, what);
    assert!(
        out.stderr.is_empty(),
        "{what}: stderr should be empty:\n{}",
        out.stderr
    );
}

/// Every marker on stdout and none on stderr.
fn assert_markers(out: &Out, markers: &[&str], what: &str) {
    for m in markers {
        assert!(
            out.stdout.contains(m),
            "{what}: {m:?} belongs on stdout:\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        assert!(
            !out.stderr.contains(m),
            "{what}: {m:?} is a result, not for stderr:\n{}",
            out.stderr
        );
    }
}

/// `--json`: stdout is one JSON document, stderr holds none.
fn assert_json(out: &Out, code: i32, what: &str) -> Value {
    assert_eq!(
        out.code,
        Some(code),
        "{what}:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{}", out.stdout));
    assert!(
        !out.stderr.contains('{'),
        "{what}: JSON on stderr:\n{}",
        out.stderr
    );
    v
}

/// An error that stops the command: exit 1, `error: …` on stderr, nothing
/// on stdout.
fn assert_error_only(out: &Out, what: &str) {
    assert_eq!(
        out.code,
        Some(1),
        "{what}:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: nothing on stdout:\n{}",
        out.stdout
    );
    assert!(out.stderr.starts_with("error: "), "{what}: {}", out.stderr);
}

#[test]
fn pack_says_what_it_wrote_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let spec = demo_spec();
    let out = t.path().join("demo.tar");
    let markers = [
        "wrote ",
        "docker.io/library/demo:1.0",
        "charts/demo-chart:0.1.0",
    ];
    for (run, what) in [(q as fn(&[&str]) -> Out, "pack --quiet"), (loud, "pack")] {
        let o = run(&["pack", s(&spec), "-o", s(&out)]);
        assert_result_only(&o, &markers, what);
    }
    let o = q(&["pack", s(&spec), "-o", s(&out), "--json"]);
    let v = assert_json(&o, 0, "pack --json");
    assert_eq!(v["name"], "demo");
    assert!(o.stderr.is_empty(), "{}", o.stderr);

    let o = q(&["pack", s(&t.path().join("missing.yaml")), "-o", s(&out)]);
    assert_error_only(&o, "pack of a missing spec");

    // A reader that has gone (`ferry pack … | head -1`) does not turn a
    // written archive into a panic.
    let bin = env!("CARGO_BIN_EXE_ferry");
    let o = run(Command::new("bash").arg("-c").arg(format!(
        "'{bin}' --quiet pack '{}' -o '{}' | true; exit ${{PIPESTATUS[0]}}",
        s(&spec),
        s(&t.path().join("piped.tar"))
    )));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
}

#[test]
fn inspect_lists_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let o = q(&["inspect", s(&archive)]);
    assert_result_only(
        &o,
        &["bundle:   demo", "images:", "docker.io/library/demo:1.0"],
        "inspect",
    );
    let o = q(&["inspect", s(&archive), "--json"]);
    let v = assert_json(&o, 0, "inspect --json");
    assert_eq!(v["name"], "demo");
    assert!(o.stderr.is_empty(), "{}", o.stderr);
}

/// Flips a byte in the middle of the demo image's first gzip layer;
/// returns the layer's member name.
fn damage_a_layer(archive: &Path) -> String {
    let layer = read_members(archive)
        .into_iter()
        .find(|m| {
            m.name.starts_with("blobs/") && m.data.starts_with(&[0x1f, 0x8b]) && m.data.len() > 1000
        })
        .expect("a layer");
    let mut bytes = std::fs::read(archive).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &layer.data[..64])
        .unwrap()
        + 100;
    bytes[at] ^= 0x40;
    std::fs::write(archive, &bytes).unwrap();
    layer.name
}

#[test]
fn verify_puts_its_verdict_on_stdout_whether_ok_or_failed() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    for (run, what) in [
        (q as fn(&[&str]) -> Out, "verify --quiet"),
        (loud, "verify"),
    ] {
        let o = run(&["verify", s(&archive)]);
        assert_result_only(&o, &["OK ", " members, "], what);
    }
    let o = q(&["verify", s(&archive), "--json"]);
    assert_json(&o, 0, "verify --json");
    assert!(o.stderr.is_empty(), "{}", o.stderr);

    // A failed verification is verify's result: the report on stdout, exit 1.
    let layer = damage_a_layer(&archive);
    let o = q(&["verify", s(&archive)]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert_markers(
        &o,
        &[
            "FAILED ",
            "problem(s)",
            &layer,
            "does not match its digest",
            "members intact; intact artifacts: ",
        ],
        "verify of a damaged archive",
    );
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    let o = q(&["verify", s(&archive), "--json"]);
    assert_json(&o, 1, "verify --json of a damaged archive");
    assert!(o.stderr.is_empty(), "{}", o.stderr);

    // No archive at all: an error, not a verdict.
    let o = q(&["verify", s(&t.path().join("missing.tar"))]);
    assert_error_only(&o, "verify of a missing file");
}

#[test]
fn unpack_says_what_it_wrote_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let layout = t.path().join("layout");
    let o = loud(&["unpack", s(&archive), "-o", s(&layout)]);
    assert_result_only(&o, &["unpacked ", "into OCI layout"], "unpack -o");
    let (charts, files) = (t.path().join("charts"), t.path().join("files"));
    let o = q(&[
        "unpack",
        s(&archive),
        "--charts",
        s(&charts),
        "--files",
        s(&files),
    ]);
    assert_result_only(&o, &["wrote ", "demo-chart-0.1.0.tgz"], "unpack --charts");
}

#[test]
fn keygen_says_what_it_wrote_on_stdout_and_verify_reports_the_signature_there() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("release");
    let o = q(&["keygen", "-o", s(&prefix)]);
    assert_result_only(&o, &["wrote ", "release.key", "release.pub"], "keygen");
    let o = q(&["keygen", "-o", s(&prefix)]);
    assert_error_only(&o, "keygen over an existing key");

    let archive = t.path().join("signed.tar");
    pack_args(
        &demo_spec(),
        &archive,
        &["--sign", s(&t.path().join("release.key"))],
    )
    .expect_ok("pack --sign");
    let public = t.path().join("release.pub");
    let o = loud(&["verify", s(&archive), "--key", s(&public)]);
    assert_result_only(&o, &["OK ", "signature OK: "], "verify --key");
}

#[test]
fn rewrite_reports_on_stdout_and_warns_on_stderr() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let dir = t.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("app.yaml"),
        "containers:\n  - image: docker.io/library/demo:1.0\n  - image: nginx:1.27\n",
    )
    .unwrap();
    let base = [
        "rewrite",
        "--bundle",
        s(&archive),
        "--registry",
        "reg.local:5000",
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        a.push(s(&dir));
        q(&a)
    };

    let o = with(&[]);
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.stderr);
    assert_markers(
        &o,
        &[
            "-> reg.local:5000/library/demo:1.0",
            "nginx:1.27  NOT IN BUNDLE",
        ],
        "rewrite",
    );
    // The hint and the warning are notes.
    assert!(o.stderr.contains("1 file(s) would change"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("warning: 1 image reference(s) are not in the bundle"),
        "{}",
        o.stderr
    );
    assert!(!o.stdout.contains("warning"), "{}", o.stdout);

    // --check: the report is still the result; the exit status says it failed.
    let o = with(&["--check"]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert_markers(&o, &["NOT IN BUNDLE"], "rewrite --check");
    assert!(o.stderr.contains("nothing was written"), "{}", o.stderr);

    let o = with(&["--json"]);
    let v = assert_json(&o, 0, "rewrite --json");
    assert_eq!(v.as_array().unwrap().len(), 2);

    let o = q(&[
        "rewrite",
        "--map",
        s(&t.path().join("missing.json")),
        s(&dir),
    ]);
    assert_error_only(&o, "rewrite with a missing map");
}

#[test]
fn inventory_of_a_bundle_says_what_it_wrote_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let inv = t.path().join("have.json");
    let o = loud(&["inventory", "--bundle", s(&archive), "-o", s(&inv)]);
    assert_result_only(&o, &["have.json: ", " blobs ", "held by"], "inventory");
}

#[test]
fn diff_puts_the_comparison_and_the_growth_verdict_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let other = other_demo(&t.path().join("other"));
    let o = loud(&["diff", s(&archive), s(&other)]);
    assert_result_only(
        &o,
        &["old:  ", "new:  ", "artifacts: ", "content: "],
        "diff",
    );
    // Over the threshold: still the result, on stdout, exit 1.
    let o = loud(&["diff", s(&archive), s(&other), "--max-growth", "0%"]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert_markers(
        &o,
        &["FAILED: 1 image grew more than 0 %"],
        "diff --max-growth",
    );
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    let v = assert_json(
        &loud(&[
            "diff",
            s(&archive),
            s(&other),
            "--max-growth",
            "0",
            "--json",
        ]),
        1,
        "diff --json",
    );
    assert_eq!(v["max_growth"]["ok"], false);
    assert_error_only(
        &loud(&["diff", s(&archive), s(&t.path().join("nope.tar"))]),
        "diff of a missing archive",
    );
}

/// A bundle whose `docker.io/library/demo:1.0` is other content than the
/// demo's, so loading it where the demo is fails that artifact.
fn other_demo(dir: &Path) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let idx = build::multi_arch(&mut l, 99, 4096);
    l.tag(&idx, "docker.io/library/demo:1.0");
    l.finish();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: other\nimages:\n  - oci:src:docker.io/library/demo:1.0\n",
    )
    .unwrap();
    let archive = dir.join("other.tar");
    pack_spec(&spec, &archive);
    archive
}

#[test]
fn load_results_are_on_stdout_so_tail_shows_the_counts() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("release");
    q(&["keygen", "-o", s(&prefix)]).expect_ok("keygen");
    let archive = t.path().join("demo.tar");
    pack_args(
        &demo_spec(),
        &archive,
        &["--sign", s(&t.path().join("release.key"))],
    )
    .expect_ok("pack --sign");
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    let target = format!("{host}/out");

    // The per-artifact lines, then the counts line, all on stdout.
    let o = q(&["load", s(&archive), "--registry", &target]);
    assert_result_only(
        &o,
        &[
            &format!("  loaded docker.io/library/demo:1.0 -> {target}/library/demo:1.0"),
            &format!("  loaded charts/demo-chart:0.1.0 -> {target}/charts/demo-chart:0.1.0"),
            "uploaded ",
            " manifests, ",
        ],
        "load",
    );
    let last = o.stdout.lines().last().unwrap();
    assert!(last.starts_with("uploaded "), "{last}");

    // Literally `ferry load … | tail -1`: the counts line.
    let bin = env!("CARGO_BIN_EXE_ferry");
    let o = run(Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{bin}' --quiet load '{}' --registry '{target}' | tail -1",
            s(&archive)
        ))
        .env("DOCKER_CONFIG", "/nonexistent/ferry-test"));
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.starts_with("uploaded 0 blobs (0 B), mounted 0, ")
            && o.stdout.contains("; pushed 0 manifests, ")
            && o.stdout.lines().count() == 1,
        "{}",
        o.stdout
    );
    assert!(o.stderr.is_empty(), "{}", o.stderr);

    // A reader that has gone does not turn a finished load into a panic.
    let o = run(Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{bin}' --quiet load '{}' --registry '{target}' | true; exit ${{PIPESTATUS[0]}}",
            s(&archive)
        ))
        .env("DOCKER_CONFIG", "/nonexistent/ferry-test"));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);

    let o = q(&["load", s(&archive), "--registry", &target, "--dry-run"]);
    assert_result_only(
        &o,
        &[
            "  would load docker.io/library/demo:1.0 -> ",
            "would upload 0 blobs",
            "would push 0 manifests",
        ],
        "load --dry-run",
    );

    let o = q(&["load", s(&archive), "--registry", &target, "--json"]);
    let v = assert_json(&o, 0, "load --json");
    assert_eq!(v["counts"]["uploaded"], 0);
    assert!(o.stderr.is_empty(), "{}", o.stderr);

    // The signature check is a note before the work (stderr); the result
    // is still on stdout, and there is no progress on a pipe.
    let public = t.path().join("release.pub");
    let o = loud(&[
        "load",
        s(&archive),
        "--registry",
        &target,
        "--key",
        s(&public),
    ]);
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.stderr);
    assert_markers(&o, &["  loaded ", "uploaded 0 blobs"], "load --key");
    assert!(o.stderr.starts_with("signature OK: "), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(!o.stdout.contains("signature"), "{}", o.stdout);

    // inventory of the registry: its line on stdout.
    let inv = t.path().join("inv.json");
    let o = q(&["inventory", "--registry", &target, "-o", s(&inv)]);
    assert_result_only(
        &o,
        &["inv.json: ", " blobs ", "held by"],
        "inventory --registry",
    );

    // An artifact that fails is an outcome (stdout); the error that the
    // load is incomplete is on stderr; exit 1.
    let other = other_demo(&t.path().join("other"));
    let o = q(&["load", s(&other), "--registry", &target]);
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    assert_markers(
        &o,
        &[
            &format!("  FAILED docker.io/library/demo:1.0 -> {target}/library/demo:1.0: "),
            "already points to",
        ],
        "load over a tag that points elsewhere",
    );
    assert!(o.stdout.lines().last().unwrap().starts_with("uploaded "));
    assert!(
        o.stderr
            .starts_with("error: 1 of 1 artifacts were not loaded into "),
        "{}",
        o.stderr
    );
    assert!(!o.stdout.contains("error:"), "{}", o.stdout);
    let o = q(&["load", s(&other), "--registry", &target, "--json"]);
    let v = assert_json(&o, 1, "load --json over a tag that points elsewhere");
    assert_eq!(v["artifacts"][0]["ok"], false);
    assert!(o.stderr.starts_with("error: "), "{}", o.stderr);

    let o = q(&[
        "load",
        s(&t.path().join("missing.tar")),
        "--registry",
        &target,
    ]);
    assert_error_only(&o, "load of a missing archive");
}

/// A child process killed (if still running) when the test ends, even by
/// a failed assertion.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_says_where_it_serves_on_stdout_and_logs_on_stderr() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", s(&archive), "--listen", "127.0.0.1:0", "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Lines of stdout as they come, so a line that never comes fails the
    // test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line on stdout within 30 s"))
    };
    let first = next_line();
    assert!(first.starts_with("serving "), "{first:?}");
    let addr = served_addr(&first);
    // One line per repository follows.
    let n: usize = first
        .split(" (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no repository count in {first:?}"));
    assert_eq!(n, 5, "{first:?}");
    let repos: Vec<String> = (0..n).map(|_| next_line()).collect();
    assert!(
        repos
            .iter()
            .any(|l| l.trim() == format!("{addr}/library/demo:1.0")),
        "{repos:?}"
    );

    assert_eq!(http(addr, "GET", "/v2/", &[]).status, 200);
    // SAFETY: a signal to the server this test started.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGINT);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    // Then the chart repository and the files, a line each, and nothing
    // more.
    assert_eq!(
        rest,
        [
            format!("  http://{addr}/charts/index.yaml (1 chart version; helm repo add NAME http://{addr}/charts)"),
            format!("  http://{addr}/files/README.txt"),
            format!("  http://{addr}/files/manifests"),
        ],
        "the rest of stdout"
    );
    // The access log and "stopping" are diagnostics.
    assert!(stderr.contains("GET /v2/ 200"), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");

    let o = q(&[
        "serve",
        s(&t.path().join("missing.tar")),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_error_only(&o, "serve of a missing archive");
}

#[test]
fn errors_that_stop_a_command_are_on_stderr_alone() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("missing.tar");
    let m = s(&missing);
    let out = t.path().join("out");
    let o = s(&out);
    for args in [
        vec!["inspect", m],
        vec!["inspect", m, "--json"],
        vec!["verify", m, "--json"],
        vec!["unpack", m, "-o", o],
        vec!["inventory", "--bundle", m, "-o", o],
        vec!["rewrite", "--bundle", m, "--registry", "r.local", o],
    ] {
        assert_error_only(&q(&args), &args.join(" "));
    }
}

/// `--version` names the commit and the build date (README, "Versions");
/// `-V` and bundle.json carry the package version alone, so two builds of
/// one version write the same archive bytes.
#[test]
fn version_names_the_commit_and_build_date_but_bundle_json_only_the_version() {
    let long = q(&["--version"]);
    assert_eq!(long.code, Some(0), "{}", long.stderr);
    let line = long.stdout.trim();
    let version = env!("CARGO_PKG_VERSION");
    let rest = line
        .strip_prefix(&format!("ferry {version} (commit "))
        .unwrap_or_else(|| panic!("--version: {line:?}"));
    let (commit, built) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("--version: {line:?}"));
    // Built from this checkout: the commit is git's, the date a real date.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(
        commit.len() == 12 && head.starts_with(commit),
        "--version names commit {commit:?}, HEAD is {head}"
    );
    let date: Vec<&str> = built.split('-').collect();
    assert!(
        date.len() == 3 && date.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "--version's build date {built:?} is not YYYY-MM-DD"
    );
    let short = q(&["-V"]);
    assert_eq!(short.stdout.trim(), format!("ferry {version}"));

    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let bundle = inspect_json(&archive);
    let raw = read_members(&archive)
        .into_iter()
        .find(|m| m.name == "bundle.json")
        .unwrap();
    let raw = String::from_utf8(raw.data).unwrap();
    assert!(!raw.contains(commit), "bundle.json names the commit: {raw}");
    assert!(
        raw.contains(&format!("\"version\": \"{version}\""))
            || raw.contains(&format!("\"version\":\"{version}\"")),
        "bundle.json's tool version: {raw}"
    );
    assert_eq!(bundle["name"], "demo");
}

#[test]
fn the_final_error_line_shows_control_characters_escaped() {
    let t = tempfile::tempdir().unwrap();
    // A name that would clear the screen if printed raw.
    let spec = t.path().join("a\u{1b}[2Jb.yaml");
    let out = q(&["pack", s(&spec), "-o", s(&t.path().join("b.tar"))]);
    assert!(!out.ok());
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
    assert!(out.stderr.contains("a\\u{1b}[2Jb.yaml"), "{}", out.stderr);
}
