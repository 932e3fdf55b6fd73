//! Signed bundles: `ferry keygen`, `pack --sign`, `verify --key` and
//! `load --key`, checked against the real `minisign` too.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::*;

fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let prefix = dir.join(name);
    ferry(["keygen".as_ref(), "-o".as_ref(), prefix.as_os_str()]).expect_ok("keygen");
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

fn verify_with(archive: &Path, key: &Path) -> Out {
    ferry([
        "verify".as_ref(),
        archive.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ])
}

#[test]
fn a_signed_bundle_verifies_with_ferry_and_with_minisign() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "release");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let msg = ferry([
        "keygen".as_ref(),
        "-o".as_ref(),
        t.path().join("release").as_os_str(),
    ])
    .expect_fail("keygen over an existing key");
    assert!(
        msg.contains("exists; keygen never overwrites a key"),
        "{msg}"
    );

    let archive = t.path().join("s.tar");
    pack_args(&demo_spec(), &archive, &["--sign", key.to_str().unwrap()]).expect_ok("pack --sign");
    let out = verify_with(&archive, &public).expect_ok("verify --key");
    assert!(
        out.contains("signature OK: ferry bundle demo: 5 artifacts"),
        "{out}"
    );
    let out = ferry(["verify".as_ref(), archive.as_os_str()]).expect_ok("verify");
    assert!(out.contains("signed (not checked"), "{out}");

    // No ferry needed: tar and minisign check the same signature.
    let x = t.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run(std::process::Command::new(require_tool("tar", "tar"))
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&x)
        .args(["bundle.json", "bundle.json.minisig"]))
    .expect_ok("tar -xf");
    run(
        std::process::Command::new(require_tool("minisign", "minisign"))
            .arg("-Vm")
            .arg(x.join("bundle.json"))
            .arg("-p")
            .arg(&public),
    )
    .expect_ok("minisign -V");
    // Other readers ignore the extra member.
    run(skopeo().args([
        "inspect",
        "--raw",
        &format!(
            "oci-archive:{}:docker.io/library/demo:1.0",
            archive.display()
        ),
    ]))
    .expect_ok("skopeo reads a signed archive");
}

#[test]
fn wrong_key_unsigned_and_tampered_bundles_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (key, _) = keygen(t.path(), "release");
    let (_, other) = keygen(t.path(), "other");
    let signed = t.path().join("s.tar");
    pack_args(&demo_spec(), &signed, &["--sign", key.to_str().unwrap()]).expect_ok("pack --sign");
    let public = t.path().join("release.pub");

    let msg = verify_with(&signed, &other).expect_fail("verify with another key");
    assert!(
        msg.contains("does not verify with") && msg.contains("other.pub"),
        "{msg}"
    );

    let unsigned = pack_demo(t.path());
    let msg = verify_with(&unsigned, &public).expect_fail("verify unsigned");
    assert!(
        msg.contains("is not signed (no bundle.json.minisig)"),
        "{msg}"
    );

    // bundle.json changed after signing (same length, still valid).
    let mut members = read_members(&signed);
    let b = members
        .iter_mut()
        .find(|m| m.name == "bundle.json")
        .unwrap();
    let text = String::from_utf8(b.data.clone())
        .unwrap()
        .replacen("\"demo\"", "\"demX\"", 1);
    b.data = text.into_bytes();
    let tampered = t.path().join("tampered.tar");
    write_raw_tar(&tampered, &members, true);
    let msg = verify_with(&tampered, &public).expect_fail("verify tampered");
    assert!(
        msg.contains("the signature of bundle.json does not verify"),
        "{msg}"
    );
    // load --key refuses it before any request (nothing listens on port 9).
    let msg = ferry([
        "load".as_ref(),
        tampered.as_os_str(),
        "--registry".as_ref(),
        "127.0.0.1:9".as_ref(),
        "--key".as_ref(),
        public.as_os_str(),
    ])
    .expect_fail("load --key of a tampered bundle");
    assert!(
        msg.contains("does not verify") && !msg.contains("Connection refused"),
        "{msg}"
    );
}

#[test]
fn signed_volumes_and_signed_compressed_archives_verify_and_refuse_other_keys() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "release");
    let (_, other) = keygen(t.path(), "other");
    let spec = demo_spec();
    for (name, extra) in [
        ("split.tar", vec!["--volume-size", "1M"]),
        ("packed.tar.zst", vec!["--compress", "zstd:5"]),
    ] {
        let out = t.path().join(name);
        let mut args = vec!["--sign", key.to_str().unwrap()];
        args.extend(extra);
        pack_args(&spec, &out, &args).expect_ok("signed pack");
        let first = if name == "split.tar" {
            t.path().join("split.tar.001")
        } else {
            out.clone()
        };
        let ok = verify_with(&first, &public).expect_ok("verify --key");
        assert!(ok.contains("signature OK"), "{ok}");
        let m = verify_with(&first, &other).expect_fail("verify with another key");
        assert!(m.contains("signature"), "{m}");
    }
}

/// How often `ferry ARGS` opened `archive`, traced by strace.
fn opens_of(dir: &Path, archive: &Path, args: &[&std::ffi::OsStr]) -> (Out, usize) {
    let log = dir.join("strace.log");
    let out = run(std::process::Command::new(require_tool("strace", "strace"))
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .arg("--quiet")
        .args(args));
    let name = format!("\"{}\"", archive.display());
    let text = std::fs::read_to_string(&log).unwrap();
    let n = text
        .lines()
        .filter(|l| l.contains(&name) && !l.contains("ENOENT"))
        .count();
    (out, n)
}

#[test]
fn the_signature_is_checked_on_the_one_open_of_the_archive_that_is_then_used() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "release");
    let archive = t.path().join("s.tar");
    pack_args(&demo_spec(), &archive, &["--sign", key.to_str().unwrap()]).expect_ok("pack --sign");
    let reg = support::registry::DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    let (layout, charts) = (t.path().join("layout"), t.path().join("charts"));
    let inv = t.path().join("inv.json");
    let k = public.as_os_str();
    let a = archive.as_os_str();
    let commands: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec!["verify".as_ref(), a, "--key".as_ref(), k],
        vec!["inspect".as_ref(), a, "--key".as_ref(), k],
        vec![
            "load".as_ref(),
            a,
            "--registry".as_ref(),
            host.as_ref(),
            "--key".as_ref(),
            k,
        ],
        vec![
            "unpack".as_ref(),
            a,
            "-o".as_ref(),
            layout.as_os_str(),
            "--key".as_ref(),
            k,
        ],
        vec![
            "unpack".as_ref(),
            a,
            "--charts".as_ref(),
            charts.as_os_str(),
            "--key".as_ref(),
            k,
        ],
        vec![
            "inventory".as_ref(),
            "--bundle".as_ref(),
            a,
            "-o".as_ref(),
            inv.as_os_str(),
            "--key".as_ref(),
            k,
        ],
    ];
    for args in commands {
        let (out, n) = opens_of(t.path(), &archive, &args);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        // Checked and used through one open file: an archive swapped
        // after the check is never read.
        assert_eq!(n, 1, "{args:?} opened the archive {n} times");
    }
}

#[test]
fn every_command_that_reads_an_archive_refuses_a_key_that_did_not_sign_it() {
    let t = tempfile::tempdir().unwrap();
    let (key, _) = keygen(t.path(), "release");
    let (_, other) = keygen(t.path(), "other");
    let archive = t.path().join("s.tar");
    pack_args(&demo_spec(), &archive, &["--sign", key.to_str().unwrap()]).expect_ok("pack --sign");
    let reg = support::registry::DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    let (layout, charts, inv, images) = (
        t.path().join("layout"),
        t.path().join("charts"),
        t.path().join("inv.json"),
        t.path().join("images.tar"),
    );
    let (k, a) = (other.as_os_str(), archive.as_os_str());
    let commands: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec!["verify".as_ref(), a],
        vec!["inspect".as_ref(), a],
        vec!["diff".as_ref(), a, a],
        vec!["load".as_ref(), a, "--registry".as_ref(), host.as_ref()],
        vec!["unpack".as_ref(), a, "-o".as_ref(), layout.as_os_str()],
        vec![
            "unpack".as_ref(),
            a,
            "--charts".as_ref(),
            charts.as_os_str(),
        ],
        vec![
            "export".as_ref(),
            a,
            "-o".as_ref(),
            images.as_os_str(),
            "--format".as_ref(),
            "oci-archive".as_ref(),
        ],
        vec![
            "serve".as_ref(),
            a,
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        vec![
            "inventory".as_ref(),
            "--bundle".as_ref(),
            a,
            "-o".as_ref(),
            inv.as_os_str(),
        ],
        vec![
            "rewrite".as_ref(),
            t.path().as_os_str(),
            "--bundle".as_ref(),
            a,
            "--registry".as_ref(),
            "r.local".as_ref(),
        ],
    ];
    for mut args in commands {
        args.extend(["--key".as_ref(), k]);
        let msg = ferry(&args).expect_fail(&format!("{args:?} with another key"));
        assert!(
            msg.contains("does not verify") && msg.contains("other.pub"),
            "{args:?}: {msg}"
        );
    }
    assert!(!layout.exists() && !charts.exists() && !inv.exists() && !images.exists());
    assert!(reg.tags().is_empty(), "{:?}", reg.tags());

    // A layout unpacked with the key carries the signature, so serving the
    // directory checks it again; a layout without bundle.json cannot be.
    ferry(["unpack".as_ref(), a, "-o".as_ref(), layout.as_os_str()]).expect_ok("unpack");
    let msg = ferry([
        "serve".as_ref(),
        layout.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--key".as_ref(),
        k,
    ])
    .expect_fail("serve DIR with another key");
    assert!(msg.contains("does not verify"), "{msg}");
    std::fs::remove_file(layout.join("bundle.json")).unwrap();
    let msg = ferry([
        "serve".as_ref(),
        layout.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--key".as_ref(),
        k,
    ])
    .expect_fail("serve DIR without bundle.json, with a key");
    assert!(msg.contains("has no bundle.json"), "{msg}");
}

#[test]
fn a_key_given_where_no_archive_is_read_is_a_usage_error_not_ignored() {
    let t = tempfile::tempdir().unwrap();
    let (_, public) = keygen(t.path(), "release");
    let map = t.path().join("map.json");
    std::fs::write(&map, "{}").unwrap();
    let k = public.to_str().unwrap();
    for args in [
        vec![
            "rewrite",
            t.path().to_str().unwrap(),
            "--map",
            map.to_str().unwrap(),
            "--key",
            k,
        ],
        vec![
            "inventory",
            "--registry",
            "127.0.0.1:9",
            "-o",
            "inv.json",
            "--key",
            k,
        ],
    ] {
        let o = ferry(&args);
        assert_eq!(o.code, Some(2), "{args:?}: {}", o.stderr);
        assert!(
            o.stderr.contains("--key") || o.stderr.contains("--bundle"),
            "{args:?}: {}",
            o.stderr
        );
    }
}

/// The trusted comment says when in RFC 3339 UTC; with
/// `SOURCE_DATE_EPOCH` that is the epoch's time, so two signed packs of
/// the same inputs carry the same bundle.json and the same comment (the
/// signature bytes themselves are randomised by minisign's signer).
#[test]
fn the_signing_time_is_rfc3339_and_reproducible_with_source_date_epoch() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "release");
    let pack = |out: &Path| {
        let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["--quiet", "pack"])
            .arg(demo_spec())
            .arg("-o")
            .arg(out)
            .arg("--sign")
            .arg(&key)
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        assert!(o.ok(), "{}", o.stderr);
    };
    let (a, b) = (t.path().join("a.tar"), t.path().join("b.tar"));
    pack(&a);
    pack(&b);
    let member = |p: &Path, name: &str| {
        read_members(p)
            .into_iter()
            .find(|m| m.name == name)
            .unwrap()
            .data
    };
    assert!(member(&a, "bundle.json") == member(&b, "bundle.json"));
    let comment = |p: &Path| {
        String::from_utf8(member(p, "bundle.json.minisig"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("trusted comment:"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(comment(&a), comment(&b));
    let shown = ferry([
        "inspect".as_ref(),
        a.as_os_str(),
        "--key".as_ref(),
        public.as_os_str(),
    ])
    .expect_ok("inspect --key");
    assert!(shown.contains("signed at 2023-11-14T22:13:20Z"), "{shown}");
}
