//! Shared test support: running the ferry binary, requiring external tools
//! (failing loudly with the Debian package to install), building fixtures
//! (see `build`), and reading and hand-writing tar archives for bad-input
//! tests.
#![allow(dead_code)]
// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod build;
pub mod cosign;
pub mod files;
pub mod hand;
pub mod push;
pub mod registry;
pub mod runtimes;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo spec in `fixtures/`.
pub fn demo_spec() -> PathBuf {
    repo_root().join("fixtures/demo/ferry.yaml")
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Asserts success and returns stdout.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(
            self.ok(),
            "{what} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self.stdout
    }
    /// Asserts exit status 1 and returns stdout + stderr.
    pub fn expect_fail(self, what: &str) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "{what} should fail with exit 1:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Out {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs a command to completion with `input` on its standard input.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Out {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // A command that exits before reading closes the pipe; that is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Waits (up to 30 s) until `ready` holds, lets the child settle for a
/// moment, sends it SIGINT as Ctrl-C does, and returns its output, asserting
/// that it exited 130 and said it was interrupted.
pub fn interrupt_when(child: std::process::Child, what: &str, ready: impl Fn() -> bool) -> Out {
    signal_when(child, what, libc::SIGINT, ready)
}

/// [`interrupt_when`] with another signal: SIGTERM (exit 143, says
/// "terminated") or SIGHUP (exit 129, "hung up").
pub fn signal_when(
    child: std::process::Child,
    what: &str,
    signal: i32,
    ready: impl Fn() -> bool,
) -> Out {
    let (code, word) = match signal {
        libc::SIGTERM => (143, "terminated"),
        libc::SIGHUP => (129, "hung up"),
        _ => (130, "interrupted"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} never stalled");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let o = child.wait_with_output().unwrap();
    let out = Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert_eq!(out.code, Some(code), "{what}: {}", out.stderr);
    assert!(out.stderr.contains(word), "{what}: {}", out.stderr);
    out
}

/// Writes `DIR/docker/config.json` with an `auths` entry for `host`
/// (`user:password`, base64 as `docker login` writes it); returns the
/// directory, for `DOCKER_CONFIG`.
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let cfg = dir.join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let auth = base64(format!("{user}:{password}").as_bytes());
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    cfg
}

/// `ferry ARGS…` (quiet).
pub fn ferry<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run(Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--quiet")
        .args(args))
}

/// Fails the test loudly when an external tool is missing.
pub fn require_tool(bin: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!("this test needs `{bin}`, which is not installed: apt-get install {package} (or run scripts/test.sh, which installs it)");
}

/// A self-signed certificate for `127.0.0.1` (cert.pem, key.pem in `dir`),
/// made with openssl.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let openssl = require_tool("openssl", "openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run(Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert))
    .expect_ok("openssl req");
    (cert, key)
}

/// A private CA and a server certificate it signed for `127.0.0.1`, made
/// with openssl: (ca.pem, server.pem, server-key.pem) in `dir`.
pub fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require_tool("openssl", "openssl");
    let p = |n: &str| dir.join(n);
    run(Command::new(&openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=ferry test CA", "-keyout"])
        .arg(p("ca-key.pem"))
        .arg("-out")
        .arg(p("ca.pem")))
    .expect_ok("openssl CA");
    run(Command::new(&openssl)
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ])
        .arg(p("server-key.pem"))
        .arg("-out")
        .arg(p("server.csr")))
    .expect_ok("openssl CSR");
    std::fs::write(
        p("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new(&openssl)
        .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca-key.pem"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")))
    .expect_ok("openssl sign");
    (p("ca.pem"), p("server.pem"), p("server-key.pem"))
}

/// `skopeo --insecure-policy` (the tests carry their own trust decisions).
pub fn skopeo() -> Command {
    let mut c = Command::new(require_tool("skopeo", "skopeo"));
    c.arg("--insecure-policy");
    c
}

/// `skopeo inspect --raw docker://REFERENCE` from a plain-HTTP or
/// self-signed registry, with `user:password` when given: the manifest's
/// raw bytes on stdout.
pub fn registry_manifest(reference: &str, creds: Option<&str>) -> Out {
    let mut c = skopeo();
    c.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(creds) = creds {
        c.args(["--creds", creds]);
    }
    run(c.arg(format!("docker://{reference}")))
}

/// `ferry inspect --json ARCHIVE`, parsed.
pub fn inspect_json(archive: &Path) -> serde_json::Value {
    let out = ferry(["inspect".as_ref(), archive.as_os_str(), "--json".as_ref()])
        .expect_ok("inspect --json");
    serde_json::from_str(&out).unwrap()
}

/// `ferry unpack ARCHIVE -o DIR`, which must succeed.
pub fn unpack_ok(archive: &Path, dir: &Path) {
    ferry([
        "unpack".as_ref(),
        archive.as_os_str(),
        "-o".as_ref(),
        dir.as_os_str(),
    ])
    .expect_ok("unpack");
}

/// Packs the demo fixtures into `dir/demo.tar`.
pub fn pack_demo(dir: &Path) -> PathBuf {
    let out = dir.join("demo.tar");
    pack_spec(&demo_spec(), &out);
    out
}

/// `ferry pack SPEC -o OUT ARGS…`.
pub fn pack_args(spec: &Path, out: &Path, args: &[&str]) -> Out {
    let mut all: Vec<&std::ffi::OsStr> = vec![
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    ferry(all)
}

/// `ferry pack SPEC -o OUT`, which must succeed.
pub fn pack_spec(spec: &Path, out: &Path) {
    pack_args(spec, out, &[]).expect_ok(&format!("pack {}", spec.display()));
}

/// Standard base64 (for docker config `auth` entries).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            s.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

/// One tar member, as read or to be written verbatim.
#[derive(Debug, Clone)]
pub struct RawMember {
    pub name: String,
    pub data: Vec<u8>,
    /// The tar type flag (b'0' regular, b'2' symlink, …).
    pub typeflag: u8,
    pub link: String,
    /// Size written in the header (defaults to data length).
    pub header_size: Option<u64>,
}

impl RawMember {
    pub fn file(name: &str, data: &[u8]) -> RawMember {
        RawMember {
            name: name.into(),
            data: data.to_vec(),
            typeflag: b'0',
            link: String::new(),
            header_size: None,
        }
    }
}

/// Reads every member of a tar (using the `tar` crate, not ferry).
pub fn read_members(path: &Path) -> Vec<RawMember> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push(RawMember::file(&e.path().unwrap().to_string_lossy(), &data));
    }
    out
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[field.len() - 1] = 0;
}

/// Writes a ustar archive byte by byte, with whatever names and types the
/// test asks for (the `tar` crate refuses `..` names, which is the point).
pub fn write_raw_tar(path: &Path, members: &[RawMember], end_marker: bool) {
    let mut out = Vec::new();
    for m in members {
        let mut h = [0u8; 512];
        h[..m.name.len()].copy_from_slice(m.name.as_bytes());
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(
            &mut h[124..136],
            m.header_size.unwrap_or(m.data.len() as u64),
        );
        octal(&mut h[136..148], 0);
        h[156] = m.typeflag;
        h[157..157 + m.link.len()].copy_from_slice(m.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if end_marker {
        out.extend_from_slice(&[0u8; 1024]);
    }
    std::fs::write(path, out).unwrap();
}

/// Parses bundle.json out of members read with `read_members`.
pub fn bundle_of(members: &[RawMember]) -> serde_json::Value {
    let b = members
        .iter()
        .find(|m| m.name == "bundle.json")
        .expect("bundle.json");
    serde_json::from_slice(&b.data).unwrap()
}

/// Replaces bundle.json among `members`.
pub fn set_bundle(members: &mut [RawMember], v: &serde_json::Value) {
    let b = members
        .iter_mut()
        .find(|m| m.name == "bundle.json")
        .expect("bundle.json");
    b.data = serde_json::to_vec_pretty(v).unwrap();
}

/// A `ferry serve` running in-process on 127.0.0.1:0; stopped on drop.
pub struct Served {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub fn start(path: &Path, rules: ferry::mapping::TargetRules) -> Served {
        Served::start_with(path, rules, None)
    }

    /// With `tls` = (certificate, key) PEM files, serves HTTPS.
    pub fn start_with(
        path: &Path,
        rules: ferry::mapping::TargetRules,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> Served {
        let tls = tls.map(|(c, k)| ferry::serve::load_tls(&c, &k).expect("TLS config"));
        let registry = std::sync::Arc::new(
            ferry::serve::Registry::open(path, &rules).expect("open for serving"),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let stop = async {
                    let _ = rx.await;
                };
                let limits = ferry::serve::Limits::default();
                match tls {
                    Some(tls) => {
                        ferry::serve::serve_tls(listener, registry, None, limits, tls, stop).await
                    }
                    None => ferry::serve::serve(listener, registry, None, limits, stop).await,
                }
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Served {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A minimal HTTP/1.1 exchange (no client library needed for raw checks).
pub struct HttpReply {
    pub status: u16,
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
}

pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpReply {
    let (status, headers, body) = push::request(&addr.to_string(), method, path, headers, &[]);
    HttpReply {
        status,
        headers: headers.into_iter().collect(),
        body,
    }
}

/// Replaces blob `old` (a digest) with `data` of the same length and
/// re-points everything above it: manifests and indexes naming it are
/// rewritten (and renamed, their own digests changing in turn), then
/// index.json and bundle.json. Positions in the tar stay the same, so the
/// result is a well-formed archive whose content is `data`.
pub fn swap_blob(members: &mut [RawMember], old: &str, data: Vec<u8>) {
    let hex = |d: &[u8]| ferry::digest::Digest::of(d).hex();
    let old = old.trim_start_matches("sha256:").to_owned();
    let mut swaps: Vec<(String, String)> = Vec::new();
    let m = members
        .iter_mut()
        .find(|m| m.name == format!("blobs/sha256/{old}"))
        .expect("the blob to swap");
    assert_eq!(m.data.len(), data.len(), "a swapped blob keeps its size");
    let new = hex(&data);
    m.name = format!("blobs/sha256/{new}");
    m.data = data;
    swaps.push((old, new));
    let mut i = 0;
    while i < swaps.len() {
        let (from, to) = swaps[i].clone();
        for m in members.iter_mut().filter(|m| m.name != "bundle.json") {
            let text = String::from_utf8_lossy(&m.data).into_owned();
            if !m.name.ends_with(&to)
                && text.contains(&from)
                && std::str::from_utf8(&m.data).is_ok()
            {
                let before = hex(&m.data);
                m.data = text.replace(&from, &to).into_bytes();
                let after = hex(&m.data);
                if m.name.starts_with("blobs/") {
                    m.name = format!("blobs/sha256/{after}");
                }
                swaps.push((before, after));
            }
        }
        i += 1;
    }
    let b = members
        .iter_mut()
        .find(|m| m.name == "bundle.json")
        .unwrap();
    let mut text = String::from_utf8(b.data.clone()).unwrap();
    for (from, to) in &swaps {
        text = text.replace(from.as_str(), to);
    }
    b.data = text.into_bytes();
}

/// The address in `ferry serve`'s first line (`serving … on http://ADDR/v2/ …`).
pub fn served_addr(first: &str) -> std::net::SocketAddr {
    first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
}

/// Raises this test process's soft limit on open files to its hard limit
/// (a test that holds a thousand connections needs more than the usual
/// 1024) and returns it.
pub fn raise_open_file_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
    }
    l.rlim_cur
}

/// `ferry serve SOURCE --listen 127.0.0.1:0 ARGS…` as a child process,
/// killed on drop: its address, the `ADDR/REPOSITORY:TAGS` lines it
/// printed, and its stderr so far.
pub struct ServeProcess {
    pub addr: std::net::SocketAddr,
    /// `ADDR/REPOSITORY:TAG,TAG…`, one per repository.
    pub repositories: Vec<String>,
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// With `open_files`, the child may open at most that many files (its
    /// soft and hard limits), as under a default `ulimit -n`.
    pub fn start(source: &Path, args: &[&str], open_files: Option<u64>) -> ServeProcess {
        use std::io::{BufRead, Read};
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("serve")
            .arg(source)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(n) = open_files {
            // SAFETY: setrlimit is async-signal-safe; it runs in the child
            // between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    let l = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let Some(Ok(first)) = lines.next() else {
            let _ = child.wait();
            panic!("ferry serve printed nothing: {}", stderr.lock().unwrap());
        };
        let addr = first
            .rsplit("://")
            .next()
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let count: usize = first
            .split(" repositories")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no repository count in {first:?}"));
        let repositories = (0..count)
            .map(|_| lines.next().unwrap().unwrap().trim().to_owned())
            .collect();
        std::thread::spawn(move || lines.for_each(drop));
        ServeProcess {
            addr,
            repositories,
            child,
            stderr,
        }
    }

    /// What the server has written on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
    }

    /// Waits up to `within` for the server to exit; its exit status.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ferry serve still running after {within:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rustls client configuration trusting the CA certificate in `ca` (PEM).
pub fn tls_client_config(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS connection to `addr` (a server certificate for 127.0.0.1), with
/// the handshake done.
pub fn tls_connect(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    rustls::StreamOwned::new(conn, sock)
}
