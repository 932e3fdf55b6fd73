//! `ferry serve`: skopeo pulls everything from it unchanged; the HTTP
//! surface follows the distribution spec's pull side.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use ferry::mapping::TargetRules;
use support::build::{self, LayoutBuilder};
use support::*;

fn artifacts(archive: &Path) -> Vec<serde_json::Value> {
    inspect_json(archive)["artifacts"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn skopeo_pulls_every_artifact_with_identical_digests() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let s = Served::start(&archive, TargetRules::default());
    let targets = [
        ("library/demo:1.0", "docker.io/library/demo:1.0"),
        ("tools/hello:2.1", "registry.example.com/tools/hello:2.1"),
        ("charts/demo-chart:0.1.0", "charts/demo-chart:0.1.0"),
        ("files/manifests:latest", "files/manifests:latest"),
    ];
    let arts = artifacts(&archive);
    for (i, (target, source)) in targets.iter().enumerate() {
        let want = arts.iter().find(|a| a["reference"] == *source).unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let at = format!("{}/{target}", s.addr);
        let raw = registry_manifest(&at, None).expect_ok("skopeo inspect --raw");
        let src = format!("docker://{at}");
        assert_eq!(
            ferry::digest::Digest::of(raw.as_bytes()).to_string(),
            want,
            "raw bytes of {target}"
        );
        let dest = t.path().join(format!("pulled-{i}"));
        run(skopeo().args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            &src,
            &format!("oci:{}:x", dest.display()),
        ]))
        .expect_ok(&format!("skopeo copy --all {src}"));
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            want.as_str(),
            "{target} pulled with its digest"
        );
    }
    let tags = run(skopeo().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/library/demo", s.addr),
    ]))
    .expect_ok("list-tags");
    assert!(tags.contains("\"1.0\""), "{tags}");
}

#[test]
fn http_surface_follows_the_distribution_spec() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let s = Served::start(&archive, TargetRules::default());
    let members = read_members(&archive);
    let layer = members
        .iter()
        .find(|m| {
            m.name.starts_with("blobs/") && m.data.starts_with(&[0x1f, 0x8b]) && m.data.len() > 1000
        })
        .unwrap();
    let digest = format!("sha256:{}", layer.name.trim_start_matches("blobs/sha256/"));

    let r = http(s.addr, "GET", "/v2/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["docker-distribution-api-version"], "registry/2.0");

    // Manifest by tag and by digest, GET and HEAD.
    let demo = &artifacts(&archive)[0];
    let d = demo["digest"].as_str().unwrap();
    for path in [
        "/v2/library/demo/manifests/1.0".to_string(),
        format!("/v2/library/demo/manifests/{d}"),
    ] {
        let r = http(s.addr, "GET", &path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], ferry::oci::OCI_INDEX);
        assert_eq!(r.headers["docker-content-digest"], d);
        assert_eq!(ferry::digest::Digest::of(&r.body).to_string(), d);
        let h = http(s.addr, "HEAD", &path, &[]);
        assert_eq!(h.status, 200);
        assert_eq!(h.headers["content-length"], r.body.len().to_string());
        assert!(h.body.is_empty());
    }

    // Blobs: whole, HEAD, ranges.
    let blob_path = format!("/v2/library/demo/blobs/{digest}");
    let r = http(s.addr, "GET", &blob_path, &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, layer.data.as_slice()));
    let h = http(s.addr, "HEAD", &blob_path, &[]);
    assert_eq!(h.headers["content-length"], layer.data.len().to_string());
    let r = http(s.addr, "GET", &blob_path, &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &layer.data[100..200]);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes 100-199/{}", layer.data.len())
    );
    let r = http(s.addr, "GET", &blob_path, &[("Range", "bytes=-10")]);
    assert_eq!(r.body, &layer.data[layer.data.len() - 10..]);
    let r = http(
        s.addr,
        "GET",
        &blob_path,
        &[("Range", &format!("bytes={}-", layer.data.len()))],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes */{}", layer.data.len())
    );

    // Spec errors.
    let code = |r: &HttpReply| {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["errors"][0]["code"].as_str().unwrap().to_owned()
    };
    let r = http(s.addr, "GET", "/v2/nope/manifests/1.0", &[]);
    assert_eq!((r.status, code(&r).as_str()), (404, "NAME_UNKNOWN"));
    let r = http(s.addr, "GET", "/v2/library/demo/manifests/9.9", &[]);
    assert_eq!((r.status, code(&r).as_str()), (404, "MANIFEST_UNKNOWN"));
    let unknown = ferry::digest::Digest::of(b"nothing");
    let r = http(
        s.addr,
        "GET",
        &format!("/v2/library/demo/blobs/{unknown}"),
        &[],
    );
    assert_eq!((r.status, code(&r).as_str()), (404, "BLOB_UNKNOWN"));
    // A blob of another repository is not served under this one.
    let hello_layer = {
        let b = http(s.addr, "GET", "/v2/tools/hello/manifests/2.1", &[]);
        let m: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        m["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    let r = http(
        s.addr,
        "GET",
        &format!("/v2/library/demo/blobs/{hello_layer}"),
        &[],
    );
    assert_eq!(r.status, 404);
    let r = http(s.addr, "GET", "/v2/library/demo/blobs/sha256:zz", &[]);
    assert_eq!((r.status, code(&r).as_str()), (400, "DIGEST_INVALID"));
    for m in ["PUT", "POST", "DELETE", "PATCH"] {
        let r = http(
            s.addr,
            m,
            "/v2/library/demo/manifests/1.0",
            &[("Content-Length", "0")],
        );
        assert_eq!((r.status, code(&r).as_str()), (405, "UNSUPPORTED"), "{m}");
    }

    // A repository whose name contains `manifests` still routes (regression).
    let r = http(s.addr, "GET", "/v2/files/manifests/manifests/latest", &[]);
    assert_eq!(r.status, 200);
    let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        http(
            s.addr,
            "HEAD",
            &format!("/v2/files/manifests/blobs/{layer}"),
            &[]
        )
        .status,
        200
    );

    // Catalog and tag pagination.
    let r = http(s.addr, "GET", "/v2/_catalog?n=2", &[]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["charts/demo-chart", "files/manifests"])
    );
    assert_eq!(
        r.headers["link"],
        "</v2/_catalog?n=2&last=files/manifests>; rel=\"next\""
    );
    let r = http(s.addr, "GET", "/v2/_catalog?n=2&last=files/manifests", &[]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["files/readme.txt", "library/demo"])
    );
    let r = http(s.addr, "GET", "/v2/library/demo/tags/list", &[]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "library/demo", "tags": ["1.0"]})
    );
}

#[test]
fn names_follow_load_rules_and_layouts_serve_too() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let dir = t.path().join("layout");
    unpack_ok(&archive, &dir);
    let rules = TargetRules {
        prefix: Some("mirror".into()),
        keep_host: true,
    };
    for source in [&archive, &dir] {
        let s = Served::start(source, rules.clone());
        let r = http(
            s.addr,
            "GET",
            "/v2/mirror/docker.io/library/demo/manifests/1.0",
            &[],
        );
        assert_eq!(r.status, 200, "{}", source.display());
        let r = http(
            s.addr,
            "GET",
            "/v2/mirror/registry.example.com/tools/hello/tags/list",
            &[],
        );
        assert_eq!(r.status, 200);
        let r = http(
            s.addr,
            "GET",
            "/v2/mirror/charts/demo-chart/manifests/0.1.0",
            &[],
        );
        assert_eq!(r.status, 200);
    }
}

#[test]
fn many_parallel_blob_downloads_keep_server_memory_bounded() {
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let idx = build::multi_arch(&mut l, 11, 8 << 20);
    l.tag(&idx, "docker.io/library/big:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "images:\n  - oci:src:docker.io/library/big:1\n").unwrap();
    let archive = t.path().join("big.tar");
    pack_spec(&spec, &archive);
    let blobs: Vec<RawMember> = read_members(&archive)
        .into_iter()
        .filter(|m| m.name.starts_with("blobs/") && m.data.len() > 4 << 20)
        .collect();
    assert!(blobs.len() >= 3);

    // The real binary, so its memory can be read from /proc.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "serve".as_ref(),
            archive.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    let addr = served_addr(&first);
    std::thread::spawn(move || lines.for_each(drop));

    // 48 parallel downloads: 384 MiB streamed in all.
    std::thread::scope(|scope| {
        for i in 0..48 {
            let m = &blobs[i % blobs.len()];
            scope.spawn(move || {
                let d = m.name.trim_start_matches("blobs/sha256/");
                let r = http(
                    addr,
                    "GET",
                    &format!("/v2/library/big/blobs/sha256:{d}"),
                    &[],
                );
                assert_eq!(r.status, 200);
                assert_eq!(ferry::digest::Digest::of(&r.body).hex(), d);
            });
        }
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Bounded by buffers (256 KiB per stream), not by the bytes served.
    eprintln!("ferry serve peak RSS while streaming 384 MiB: {peak_kib} KiB");
    assert!(
        peak_kib < 96 * 1024,
        "ferry serve peaked at {peak_kib} KiB while streaming 384 MiB"
    );
}

#[test]
fn damaged_or_colliding_bundles_are_refused_at_start() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() - 5000]).unwrap();
    let e = ferry([
        "serve".as_ref(),
        archive.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])
    .expect_fail("serve truncated");
    assert!(e.contains("is truncated"), "{e}");

    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let a = build::layer(&[("a", b"a")]);
    let m = l.image(build::Flavour::Oci, "linux", "amd64", &[a]);
    l.tag(&m, "docker.io/team/app:1");
    l.tag(&m, "quay.io/team/app:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "images:\n  - oci:src:docker.io/team/app:1\n  - oci:src:quay.io/team/app:1\n",
    )
    .unwrap();
    let out = t.path().join("c.tar");
    pack_spec(&spec, &out);
    let e = ferry([
        "serve".as_ref(),
        out.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])
    .expect_fail("serve colliding");
    assert!(
        e.contains("docker.io/team/app:1 and quay.io/team/app:1 would both become team/app:1"),
        "{e}"
    );
    assert!(e.contains("--keep-host"), "{e}");
}

#[test]
fn tls_with_a_certificate_skopeo_verifies() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let (cert, key) = self_signed_cert(t.path());
    let s = Served::start_with(
        &archive,
        TargetRules::default(),
        Some((cert.clone(), key.clone())),
    );
    // skopeo trusts the certificate as a CA from --cert-dir and verifies TLS.
    let certs = t.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&cert, certs.join("ca.crt")).unwrap();
    let raw = run(skopeo().args([
        "inspect",
        "--raw",
        "--cert-dir",
        certs.to_str().unwrap(),
        &format!("docker://{}/library/demo:1.0", s.addr),
    ]))
    .expect_ok("skopeo over verified TLS");
    let want = artifacts(&archive)[0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(ferry::digest::Digest::of(raw.as_bytes()).to_string(), want);
    // Plain HTTP is not answered on a TLS port.
    let mut plain = std::net::TcpStream::connect(s.addr).unwrap();
    std::io::Write::write_all(
        &mut plain,
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // A key that is not a key is named.
    let e = ferry([
        "serve".as_ref(),
        archive.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--tls-cert".as_ref(),
        key.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ])
    .expect_fail("serve with a bad certificate");
    assert!(
        e.contains("TLS setup failed") && e.contains("holds no certificate"),
        "{e}"
    );
}

#[test]
fn serve_answers_n_0_without_a_link_bad_query_encoding_with_an_answer_and_a_stale_if_range_with_the_whole_blob(
) {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let s = Served::start(&archive, TargetRules::default());

    // n=0: an empty page and no Link, which would send a link-following
    // client round for ever.
    for path in ["/v2/_catalog?n=0", "/v2/library/demo/tags/list?n=0"] {
        let r = http(s.addr, "GET", path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.headers.contains_key("link"), "{path}: {:?}", r.headers);
    }

    // A `%` followed by raw UTF-8 bytes: an answer, not a dropped
    // connection (the query decoder used to panic on it).
    let r = http(s.addr, "GET", "/v2/_catalog?n=%\u{e9}1&last=%\u{20ac}", &[]);
    assert!(r.status == 200 || r.status == 400, "{}", r.status);

    // If-Range: the blob's ETag gets the range, anything else all of it.
    let layer = read_members(&archive)
        .into_iter()
        .find(|m| m.name.starts_with("blobs/") && m.data.starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let digest = format!("sha256:{}", layer.name.trim_start_matches("blobs/sha256/"));
    let path = format!("/v2/library/demo/blobs/{digest}");
    let etag = format!("\"{digest}\"");
    let r = http(
        s.addr,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = http(
        s.addr,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", "\"sha256:0000\"")],
    );
    assert_eq!(r.status, 200);
    assert!(r.body == layer.data, "the whole blob");
}

#[test]
fn serve_dir_refuses_a_blob_that_is_a_symbolic_link() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let dir = t.path().join("layout");
    unpack_ok(&archive, &dir);
    // The same bytes, but through a link to a file outside the layout.
    let layer = read_members(&archive)
        .into_iter()
        .find(|m| m.name.starts_with("blobs/") && m.data.starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let outside = t.path().join("outside");
    std::fs::write(&outside, &layer.data).unwrap();
    std::fs::remove_file(dir.join(&layer.name)).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join(&layer.name)).unwrap();
    let o = run(
        std::process::Command::new(require_tool("timeout", "coreutils"))
            .arg("30")
            .arg(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg(&dir),
    );
    assert_eq!(
        o.code,
        Some(1),
        "serve must refuse: {}{}",
        o.stdout,
        o.stderr
    );
    let hex = layer.name.trim_start_matches("blobs/sha256/");
    assert!(o.stderr.contains(hex), "{}", o.stderr);
}

#[test]
fn manifest_bytes_changed_in_the_archive_after_start_are_served_as_checked_at_start() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let dir = t.path().join("layout");
    unpack_ok(&archive, &dir);
    let index = artifacts(&archive)[0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let hello = artifacts(&archive)
        .iter()
        .find(|a| a["reference"] == "registry.example.com/tools/hello:2.1")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
    let members = read_members(&archive);
    let original = |d: &str| {
        members
            .iter()
            .find(|m| m.name == format!("blobs/sha256/{}", hex(d)))
            .unwrap()
            .data
            .clone()
    };
    // The same length, one byte changed inside the JSON: what a disk, a
    // copy or someone with write access could do while serve runs.
    let changed = |bytes: &[u8]| {
        let mut b = bytes.to_vec();
        let at = b.len() / 2;
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
        b
    };
    let served_archive = Served::start(&archive, TargetRules::default());
    let served_dir = Served::start(&dir, TargetRules::default());

    let mut file = std::fs::read(&archive).unwrap();
    for d in [&index, &hello] {
        let bytes = original(d);
        let at = file
            .windows(bytes.len())
            .position(|w| w == bytes.as_slice())
            .unwrap();
        file[at..at + bytes.len()].copy_from_slice(&changed(&bytes));
        std::fs::write(dir.join("blobs/sha256").join(hex(d)), changed(&bytes)).unwrap();
    }
    // In place, as a write into the open archive would be.
    std::io::Write::write_all(
        &mut std::fs::OpenOptions::new()
            .write(true)
            .open(&archive)
            .unwrap(),
        &file,
    )
    .unwrap();

    for s in [&served_archive, &served_dir] {
        for (repo, tag, d) in [
            ("library/demo", "1.0", &index),
            ("tools/hello", "2.1", &hello),
        ] {
            for reference in [tag, d.as_str()] {
                let path = format!("/v2/{repo}/manifests/{reference}");
                let r = http(s.addr, "GET", &path, &[]);
                assert_eq!(r.status, 200, "{path}");
                assert_eq!(r.headers["docker-content-digest"], *d, "{path}");
                assert_eq!(
                    ferry::digest::Digest::of(&r.body).to_string(),
                    *d,
                    "{path}: the bytes served must be the ones that match the digest"
                );
                assert!(r.body == original(d), "{path}");
            }
        }
    }
}

// Connections: timeouts and the cap (issue 21, defect 14).

const WHOLE_HEAD: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: ferry\r\n\r\n";
const HALF_HEAD: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: ferry\r\nUser-Agent: slo";

/// Whether the server has closed `s`, reading whatever it sent first.
fn closed_by_server(s: &std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match (&*s).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Reads until the server closes the connection; returns the time since
/// `since`. The socket's read timeout (30 s) fails the test.
fn time_until_closed(r: &mut impl std::io::Read, since: std::time::Instant) -> std::time::Duration {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("still open after {:?}", since.elapsed())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Reset, or TLS cut without close_notify: closed all the same.
            Err(_) => return since.elapsed(),
        }
    }
}

/// A plain connection with a 30 s read timeout.
fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    s
}

/// Reads one response from a kept-alive connection: its status.
fn read_response(r: &mut impl std::io::Read) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        r.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// `ferry serve ARCHIVE ARGS…` twice: over plain HTTP, and over TLS with a
/// server certificate from a private CA made in `dir`; and a TLS client
/// configuration that trusts that CA.
fn serve_plain_and_tls(
    archive: &Path,
    dir: &Path,
    args: &[&str],
) -> (
    ServeProcess,
    ServeProcess,
    std::sync::Arc<rustls::ClientConfig>,
) {
    let (ca, cert, key) = private_ca(dir);
    let plain = ServeProcess::start(archive, args, None);
    let mut with_tls = args.to_vec();
    with_tls.extend([
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let tls = ServeProcess::start(archive, &with_tls, None);
    (plain, tls, tls_client_config(&ca))
}

/// ferry serve, under an open-file limit of 512 it cannot raise (a hard
/// `ulimit -n`, set well under the 1000 connections of the attack), holds
/// 500 idle kept-alive connections and 500 that stopped halfway through a
/// request head (a TLS ClientHello over TLS), while skopeo pulls every
/// artifact of the demo bundle. Before the cap, the attack took every file
/// descriptor and the server stopped accepting connections: the attack's
/// own last connections, and the pull, got no answer.
fn real_pull_while_1000_connections_are_held(tls: bool) {
    use std::io::Write;
    raise_open_file_limit();
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let (ca, cert, key) = private_ca(t.path());
    let mut args: Vec<&str> = Vec::new();
    if tls {
        args = vec![
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ];
    }
    let s = ServeProcess::start(&archive, &args, Some(512));
    let config = tls_client_config(&ca);

    let mut plain = Vec::new();
    let mut secure = Vec::new();
    for _ in 0..500 {
        if tls {
            let mut c = tls_connect(s.addr, &config);
            c.write_all(WHOLE_HEAD).unwrap();
            c.flush().unwrap();
            secure.push(c);
        } else {
            let mut c = connect(s.addr);
            c.write_all(WHOLE_HEAD).unwrap();
            plain.push(c);
        }
    }
    for _ in 0..500 {
        let mut c = connect(s.addr);
        // A TLS record header and the start of a ClientHello.
        let half: &[u8] = if tls {
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
        } else {
            HALF_HEAD
        };
        c.write_all(half).unwrap();
        plain.push(c);
    }

    let certs = t.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let start = std::time::Instant::now();
    let bound = std::time::Duration::from_secs(60);
    for (i, line) in s.repositories.iter().enumerate() {
        let (repo, tags) = line.rsplit_once(':').unwrap();
        let tag = tags.split(',').next().unwrap();
        let left = bound.saturating_sub(start.elapsed()).as_secs().max(1);
        let mut pull = std::process::Command::new(require_tool("timeout", "coreutils"));
        pull.arg(left.to_string())
            .arg(require_tool("skopeo", "skopeo"))
            .args(["--insecure-policy", "copy", "--all"]);
        if tls {
            pull.arg("--src-cert-dir").arg(&certs);
        } else {
            pull.arg("--src-tls-verify=false");
        }
        pull.arg(format!("docker://{repo}:{tag}")).arg(format!(
            "oci:{}:x",
            t.path().join(format!("pulled-{i}")).display()
        ));
        run(&mut pull).expect_ok(&format!(
            "skopeo copy {repo}:{tag} with 1000 connections held"
        ));
    }
    let took = start.elapsed();
    eprintln!(
        "{}: pulled {} artifacts in {took:?} with 1000 connections held",
        if tls { "https" } else { "http" },
        s.repositories.len()
    );
    assert!(took < bound, "the pull took {took:?}");

    // Under 512 open files the cap is 224, so the server closed at least
    // 776 of the attacking connections to let the pull in.
    assert!(
        s.stderr()
            .contains("the open-file limit of 512 carries 224 connections"),
        "{}",
        s.stderr()
    );
    let closed = plain
        .iter()
        .chain(secure.iter().map(|c| &c.sock))
        .filter(|c| closed_by_server(c))
        .count();
    eprintln!("the server closed {closed} of the 1000 connections held");
    assert!(closed >= 776, "only {closed} of 1000 connections closed");
}

#[test]
fn serve_answers_a_real_pull_while_500_idle_and_500_half_sent_connections_are_held() {
    real_pull_while_1000_connections_are_held(false);
}

#[test]
fn serve_tls_answers_a_real_pull_while_500_idle_and_500_half_sent_connections_are_held() {
    real_pull_while_1000_connections_are_held(true);
}

#[test]
fn a_request_head_not_whole_within_the_header_timeout_is_closed_even_if_it_trickles_in() {
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let (plain, tls, config) = serve_plain_and_tls(&archive, t.path(), &["--header-timeout", "1"]);
    let (p, s) = (plain.addr, tls.addr);
    let config = &config;
    let results: Vec<(&str, std::time::Duration)> = std::thread::scope(|scope| {
        let cases = vec![
            scope.spawn(move || {
                let start = std::time::Instant::now();
                (
                    "http: nothing sent",
                    time_until_closed(&mut connect(p), start),
                )
            }),
            scope.spawn(move || {
                let start = std::time::Instant::now();
                let mut c = connect(p);
                c.write_all(HALF_HEAD).unwrap();
                ("http: half a head", time_until_closed(&mut c, start))
            }),
            scope.spawn(move || {
                // One byte every 100 ms: each read is quick, the head never
                // ends. The timeout is for the whole head.
                let start = std::time::Instant::now();
                let mut c = connect(p);
                c.write_all(HALF_HEAD).unwrap();
                c.set_read_timeout(Some(std::time::Duration::from_millis(100)))
                    .unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    assert!(start.elapsed().as_secs() < 30, "trickle never closed");
                    if c.write_all(b"w").is_err() {
                        break;
                    }
                    match std::io::Read::read(&mut c, &mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                ("http: a head trickling in", start.elapsed())
            }),
            scope.spawn(move || {
                let start = std::time::Instant::now();
                let mut c = connect(s);
                c.write_all(b"\x16\x03\x01\x02\x00\x01").unwrap();
                (
                    "https: half a ClientHello",
                    time_until_closed(&mut c, start),
                )
            }),
            scope.spawn(move || {
                let start = std::time::Instant::now();
                let mut c = tls_connect(s, config);
                c.write_all(HALF_HEAD).unwrap();
                c.flush().unwrap();
                (
                    "https: handshake, then half a head",
                    time_until_closed(&mut c, start),
                )
            }),
            scope.spawn(move || {
                let start = std::time::Instant::now();
                let mut c = tls_connect(s, config);
                (
                    "https: handshake, then nothing",
                    time_until_closed(&mut c, start),
                )
            }),
        ];
        cases.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (what, took) in results {
        eprintln!("{what}: closed after {took:?}");
        assert!(
            took >= std::time::Duration::from_secs(1) && took < std::time::Duration::from_secs(10),
            "{what}: closed after {took:?}, the header timeout is 1 s"
        );
    }
    // A whole head in time is answered, on both.
    assert_eq!(http(p, "GET", "/v2/", &[]).status, 200);
    let mut c = tls_connect(s, config);
    c.write_all(WHOLE_HEAD).unwrap();
    c.flush().unwrap();
    assert_eq!(read_response(&mut c), 200);
}

#[test]
fn a_kept_alive_connection_waits_the_idle_timeout_not_the_header_timeout_then_is_closed() {
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let (plain, tls, config) = serve_plain_and_tls(
        &archive,
        t.path(),
        &["--header-timeout", "1", "--idle-timeout", "3"],
    );
    fn twice_then_idle(c: &mut (impl std::io::Read + Write), what: &str) {
        c.write_all(WHOLE_HEAD).unwrap();
        c.flush().unwrap();
        assert_eq!(read_response(c), 200, "{what}");
        // Past the header timeout, within the idle one: still open.
        std::thread::sleep(std::time::Duration::from_secs(2));
        c.write_all(WHOLE_HEAD).unwrap();
        c.flush().unwrap();
        assert_eq!(read_response(c), 200, "{what}: the second request");
        let took = time_until_closed(c, std::time::Instant::now());
        eprintln!("{what}: idle connection closed after {took:?}");
        assert!(
            took >= std::time::Duration::from_millis(2500)
                && took < std::time::Duration::from_secs(15),
            "{what}: closed after {took:?} idle, the idle timeout is 3 s"
        );
    }
    std::thread::scope(|scope| {
        let a = scope.spawn(|| twice_then_idle(&mut connect(plain.addr), "http"));
        let b = scope.spawn(|| twice_then_idle(&mut tls_connect(tls.addr, &config), "https"));
        a.join().unwrap();
        b.join().unwrap();
    });
}

/// An archive whose one image has a 24 MiB layer: (archive, layer digest).
fn big_layer_archive(dir: &Path) -> (std::path::PathBuf, String) {
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let layer = build::layer(&[("big", &build::pseudo_random(5, 24 << 20))]);
    let m = l.image(build::Flavour::Oci, "linux", "amd64", &[layer]);
    l.tag(&m, "docker.io/library/big:1");
    l.finish();
    let spec = dir.join("ferry.yaml");
    std::fs::write(&spec, "images:\n  - oci:src:docker.io/library/big:1\n").unwrap();
    let archive = dir.join("big.tar");
    pack_spec(&spec, &archive);
    let digest = read_members(&archive)
        .into_iter()
        .find(|m| m.name.starts_with("blobs/") && m.data.len() > 20 << 20)
        .unwrap()
        .name
        .trim_start_matches("blobs/sha256/")
        .to_owned();
    (archive, digest)
}

/// Starts downloading the big layer over `c` with a 64 KiB receive buffer,
/// and reads its first MiB: the server is left blocked mid-body.
fn start_download(
    c: &mut (impl std::io::Read + std::io::Write),
    sock: &std::net::TcpStream,
    digest: &str,
) -> Vec<u8> {
    use std::os::unix::io::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: setsockopt reads the int we pass, on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    c.write_all(
        format!(
            "GET /v2/library/big/blobs/sha256:{digest} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    c.flush().unwrap();
    let mut first = vec![0u8; 1 << 20];
    c.read_exact(&mut first).unwrap();
    first
}

/// Reads the rest of a download and checks it is the whole blob.
fn finish_download(c: &mut impl std::io::Read, mut got: Vec<u8>, digest: &str, what: &str) {
    let mut rest = Vec::new();
    // A TLS peer closing without close_notify after the body is fine here:
    // the length and digest are checked.
    let _ = c.read_to_end(&mut rest);
    got.extend(rest);
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200"), "{what}");
    let body = &got[split + 4..];
    assert_eq!(
        ferry::digest::Digest::of(body).hex(),
        digest,
        "{what}: the whole blob"
    );
}

#[test]
fn a_download_stalled_past_the_header_and_idle_timeouts_is_not_cut() {
    let t = tempfile::tempdir().unwrap();
    let (archive, digest) = big_layer_archive(t.path());
    let (plain, tls, config) = serve_plain_and_tls(
        &archive,
        t.path(),
        &["--header-timeout", "1", "--idle-timeout", "1"],
    );
    let stall = std::time::Duration::from_millis(2500);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            let mut c = connect(plain.addr);
            let sock = c.try_clone().unwrap();
            let first = start_download(&mut c, &sock, &digest);
            std::thread::sleep(stall);
            finish_download(&mut c, first, &digest, "http");
        });
        let b = scope.spawn(|| {
            let mut c = tls_connect(tls.addr, &config);
            let sock = c.sock.try_clone().unwrap();
            let first = start_download(&mut c, &sock, &digest);
            std::thread::sleep(stall);
            finish_download(&mut c, first, &digest, "https");
        });
        a.join().unwrap();
        b.join().unwrap();
    });
}

#[test]
fn past_the_connection_cap_the_longest_waiting_idle_or_half_sent_connection_is_closed_never_a_download(
) {
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let (archive, digest) = big_layer_archive(t.path());
    // The default timeouts (20 s, 75 s) do not fire during this test: every
    // connection closed here is closed by the cap.
    let s = ServeProcess::start(&archive, &["--max-connections", "4"], None);
    let mut download = connect(s.addr);
    let sock = download.try_clone().unwrap();
    let first = start_download(&mut download, &sock, &digest);

    // Three idle connections fill the cap, one after another.
    let idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut c = connect(s.addr);
            c.write_all(WHOLE_HEAD).unwrap();
            assert_eq!(read_response(&mut c), 200);
            c
        })
        .collect();
    // The server marks a connection idle when it has flushed the answer
    // and waits for the next head, which under load can lag the client's
    // read of the answer; let that happen before the half-sent ones
    // arrive, or the order of "longest waiting" is not the test's.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let wait_closed = |c: &std::net::TcpStream, what: &str| {
        let start = std::time::Instant::now();
        while !closed_by_server(c) {
            assert!(start.elapsed().as_secs() < 10, "{what} was not closed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // Each half-sent connection past the cap closes the idle one that has
    // waited longest.
    let mut half = Vec::new();
    for (i, old) in idle.iter().enumerate() {
        let mut c = connect(s.addr);
        c.write_all(HALF_HEAD).unwrap();
        half.push(c);
        wait_closed(old, &format!("idle connection {i}"));
        for (j, younger) in idle.iter().enumerate().skip(i + 1) {
            assert!(
                !closed_by_server(younger),
                "idle connection {j} closed before {i}"
            );
        }
    }
    // A real request still gets in, closing the oldest half-sent one.
    assert_eq!(http(s.addr, "GET", "/v2/", &[]).status, 200);
    wait_closed(&half[0], "the oldest half-sent connection");
    assert!(!closed_by_server(&half[1]) && !closed_by_server(&half[2]));
    // The download, blocked all along, was never chosen.
    finish_download(&mut download, first, &digest, "the download");
}

#[test]
fn ctrl_c_closes_waiting_connections_at_once_and_lets_a_download_finish() {
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let (archive, digest) = big_layer_archive(t.path());
    let mut s = ServeProcess::start(&archive, &[], None);
    let mut download = connect(s.addr);
    let sock = download.try_clone().unwrap();
    let first = start_download(&mut download, &sock, &digest);
    let mut idle = connect(s.addr);
    idle.write_all(WHOLE_HEAD).unwrap();
    assert_eq!(read_response(&mut idle), 200);
    let mut half = connect(s.addr);
    half.write_all(HALF_HEAD).unwrap();
    // Accepted before Ctrl-C.
    std::thread::sleep(std::time::Duration::from_millis(200));

    s.interrupt();
    let start = std::time::Instant::now();
    // Well before the 20 s header timeout.
    for (what, c) in [("idle", &mut idle), ("half-sent", &mut half)] {
        let took = time_until_closed(c, start);
        assert!(took.as_secs() < 5, "{what}: closed {took:?} after Ctrl-C");
    }
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "a new connection was accepted after Ctrl-C"
    );
    finish_download(&mut download, first, &digest, "the download under way");
    let status = s.wait_exit(std::time::Duration::from_secs(10));
    assert!(status.success(), "{status:?}: {}", s.stderr());
    assert!(s.stderr().contains("stopping"), "{}", s.stderr());
}
