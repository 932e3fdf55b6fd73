//! The real CNCF distribution registry (`docker-registry`, Debian package
//! `docker-registry`) on a free loopback port, with its storage and config
//! in a temp dir; optionally with htpasswd auth. Plus a TCP proxy that can
//! cut every connection once a byte budget is spent, to play a registry
//! dying mid-push, and [`FaultProxy`], an HTTP proxy that injects faults
//! and lies into selected answers (errors, huge bodies streamed as they
//! are sent, rewritten digests, lying blob `HEAD`s).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::require_tool;

/// The user and password of registries started with auth.
pub const USER: &str = "ferry";
pub const PASSWORD: &str = "s3cret-pass";
/// `htpasswd -Bbn -C 5 ferry s3cret-pass` (bcrypt; fixed so the tests need
/// no htpasswd tool).
const HTPASSWD: &str = "ferry:$2y$05$yeIfixxHppfFWiZaD6LD2O2YkyHvIWQZtg9cqwIi1B2T73XdX2NkO\n";

pub struct DockerRegistry {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl DockerRegistry {
    /// Starts a registry storing under `dir` (created), with htpasswd auth
    /// when `auth` is set.
    pub fn start(dir: &Path, auth: bool) -> DockerRegistry {
        DockerRegistry::start_with(dir, auth, None)
    }

    /// With `tls` = (certificate, key) PEM files, serves HTTPS.
    pub fn start_with(dir: &Path, auth: bool, tls: Option<(&Path, &Path)>) -> DockerRegistry {
        DockerRegistry::start_config(dir, auth, tls, false)
    }

    /// With its access log on: every request is a line of
    /// [`DockerRegistry::access_log`].
    pub fn start_logged(dir: &Path) -> DockerRegistry {
        DockerRegistry::start_config(dir, false, None, true)
    }

    /// The access log's request lines so far (`"POST /v2/… HTTP/1.1"`),
    /// for a registry started with [`DockerRegistry::start_logged`].
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("registry.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
            .filter(|r| r.contains(" /v2/"))
            .collect()
    }

    fn start_config(
        dir: &Path,
        auth: bool,
        tls: Option<(&Path, &Path)>,
        access_log: bool,
    ) -> DockerRegistry {
        std::fs::create_dir_all(dir).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            !access_log,
            dir.join("data").display()
        );
        if let Some((cert, key)) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if auth {
            std::fs::write(dir.join("htpasswd"), HTPASSWD).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let mut r = DockerRegistry {
            addr,
            dir: dir.to_owned(),
            child: None,
        };
        r.restart();
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Starts (again) on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let bin = require_tool("docker-registry", "docker-registry");
        let log = std::fs::File::create(self.dir.join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {}; its log:\n{}",
                self.addr,
                std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Blob digests (`sha256:…`) linked into `repo`.
    pub fn linked_blobs(&self, repo: &str) -> Vec<String> {
        let dir = self
            .dir
            .join("data/docker/registry/v2/repositories")
            .join(repo)
            .join("_layers/sha256");
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Every `repository:tag` in storage.
    pub fn tags(&self) -> Vec<String> {
        let root = self.dir.join("data/docker/registry/v2/repositories");
        let mut out = Vec::new();
        for repo in self.repositories() {
            let Ok(rd) = std::fs::read_dir(root.join(&repo).join("_manifests/tags")) else {
                continue;
            };
            for e in rd.filter_map(|e| e.ok()) {
                out.push(format!("{repo}:{}", e.file_name().to_string_lossy()));
            }
        }
        out.sort();
        out
    }

    /// Repositories that exist in storage.
    pub fn repositories(&self) -> Vec<String> {
        let root = self.dir.join("data/docker/registry/v2/repositories");
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(|e| e.ok())
        {
            if e.file_name() == "_layers" {
                let repo = e.path().parent().unwrap().strip_prefix(&root).unwrap();
                out.push(repo.to_string_lossy().into_owned());
            }
        }
        out.sort();
        out
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy to `upstream` that, once `budget` bytes have gone upstream,
/// calls `on_cut` once and then resets every connection and refuses new
/// ones until dropped.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    pub cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    pub fn start(
        upstream: SocketAddr,
        budget: u64,
        on_cut: impl FnOnce() + Send + 'static,
    ) -> CuttingProxy {
        CuttingProxy::start_with(upstream, budget, false, on_cut)
    }

    /// Counts bytes in both directions (for downloads).
    pub fn start_both_ways(upstream: SocketAddr, budget: u64) -> CuttingProxy {
        CuttingProxy::start_with(upstream, budget, true, || {})
    }

    fn start_with(
        upstream: SocketAddr,
        budget: u64,
        both_ways: bool,
        on_cut: impl FnOnce() + Send + 'static,
    ) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let spent = Arc::new(AtomicU64::new(0));
        let on_cut = Arc::new(std::sync::Mutex::new(Some(on_cut)));
        {
            let cut = cut.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    if cut.load(Ordering::Relaxed) {
                        drop(client);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let (cut, spent, on_cut) = (cut.clone(), spent.clone(), on_cut.clone());
                    std::thread::spawn(move || {
                        pipe_pair(client, server, budget, both_ways, &cut, &spent, &on_cut)
                    });
                }
            });
        }
        CuttingProxy { addr, cut, stop }
    }
}

fn pipe_pair<F: FnOnce() + Send + 'static>(
    client: TcpStream,
    server: TcpStream,
    budget: u64,
    both_ways: bool,
    cut: &Arc<AtomicBool>,
    spent: &Arc<AtomicU64>,
    on_cut: &Arc<std::sync::Mutex<Option<F>>>,
) {
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (cut2, spent2, on_cut2) = (cut.clone(), spent.clone(), on_cut.clone());
    let back = std::thread::spawn(move || {
        let b = if both_ways { budget } else { u64::MAX };
        pump(s2, c2, b, &cut2, &spent2, &on_cut2);
    });
    pump(client, server, budget, cut, spent, on_cut);
    let _ = back.join();
}

/// Copies `from` → `to` until either side closes or, once `budget` bytes
/// have passed in all, cuts every connection.
fn pump<F: FnOnce() + Send>(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: u64,
    cut: &AtomicBool,
    spent: &AtomicU64,
    on_cut: &std::sync::Mutex<Option<F>>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if cut.load(Ordering::Relaxed) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if budget != u64::MAX && spent.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > budget {
            if !cut.swap(true, Ordering::Relaxed) {
                if let Some(f) = on_cut.lock().unwrap().take() {
                    f();
                }
            }
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// An HTTP proxy to `upstream` that answers `413 Payload Too Large` to any
/// request whose body is over `limit` bytes (as nginx does with its default
/// `client_max_body_size 1m`) and passes everything else through, one
/// request per connection. `refused` counts the 413s.
pub struct BodyLimitProxy {
    pub addr: SocketAddr,
    pub refused: Arc<AtomicU64>,
}

impl BodyLimitProxy {
    pub fn start(upstream: SocketAddr, limit: u64) -> BodyLimitProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = Arc::new(AtomicU64::new(0));
        let r = refused.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let r = r.clone();
                std::thread::spawn(move || {
                    let _ = limit_one(client, upstream, limit, &r);
                });
            }
        });
        BodyLimitProxy { addr, refused }
    }
}

fn limit_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    limit: u64,
    refused: &AtomicU64,
) -> std::io::Result<()> {
    let Some((head, length)) = read_head(&mut client)? else {
        return Ok(());
    };
    if length > limit {
        refused.fetch_add(1, Ordering::Relaxed);
        // Read the body away first, as nginx's lingering close does, so the
        // client sees the answer rather than a reset.
        std::io::copy(&mut (&mut client).take(length), &mut std::io::sink())?;
        client.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let mut server = send_head(&head, upstream)?;
    let (mut c2, mut s2) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut (&mut c2).take(length), &mut s2);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = up.join();
    Ok(())
}

/// Reads one request head; returns it with its Content-Length.
fn read_head(client: &mut TcpStream) -> std::io::Result<Option<(String, u64)>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let length: u64 = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Some((text, length)))
}

/// Sends `head` upstream with `Connection: close`, so every request gets
/// its own connection and is seen by the proxy.
fn send_head(head: &str, upstream: SocketAddr) -> std::io::Result<TcpStream> {
    let mut lines: Vec<&str> = head.trim_end().split("\r\n").collect();
    lines.retain(|l| !l.to_ascii_lowercase().starts_with("connection:"));
    let head = format!("{}\r\nConnection: close\r\n\r\n", lines.join("\r\n"));
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(head.as_bytes())?;
    Ok(server)
}

/// What a [`FaultProxy`] does to a matching GET.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer 503 instead.
    Unavailable,
    /// Send half the response, then close the connection.
    ResetMidBody,
    /// Flip the last byte of the body.
    Corrupt,
    /// Answer 404 with a registry error body.
    NotFound,
    /// Answer with a Docker schema-1 manifest.
    Schema1,
    /// Answer 507 Insufficient Storage to uploads (PUT and PATCH).
    DiskFull,
    /// Answer 429 with `Retry-After: SECONDS` and Docker Hub's error body,
    /// to any method.
    TooManyRequests(u32),
    /// Pass a GET or PUT through, then send the head and half the body of
    /// the answer (half the head when it has no body) and hold the
    /// connection open for a minute, or until [`FaultProxy::release`].
    Stall,
    /// Answer `307 Temporary Redirect` to the same path on another host,
    /// as registries that keep blobs on a CDN or object store do.
    Redirect(SocketAddr),
    /// Pass a POST that starts an upload through, then point its
    /// `Location` at another host (answers to other methods pass as is).
    MoveUploads(SocketAddr),
    /// Answer 401 with a Basic challenge, as a registry does once the
    /// credentials stop working.
    Unauthorized,
    /// Answer any request (every method) that lacks `Authorization: Bearer
    /// TOKEN` with 401 and a Bearer challenge naming this realm, as a
    /// registry with a separate token service does; pass the rest through.
    Bearer(&'static str),
    /// Answer a request of `method` with status `status` and a body of
    /// `bytes` bytes of text lines (with escape sequences and carriage
    /// returns in them), generated as it is sent: nothing is held in
    /// memory. With `declared` the answer has a `Content-Length`, else the
    /// body ends when the connection closes. [`FaultProxy::body_sent`]
    /// counts the body bytes written before the client hung up.
    Huge {
        /// `GET`, `PUT`, …
        method: &'static str,
        /// The status code.
        status: u16,
        /// The body's length.
        bytes: u64,
        /// Whether the answer says how long the body is.
        declared: bool,
    },
    /// Pass a `PUT` through, with one byte (a newline) added to its body
    /// when `alter` is set, so the registry stores other bytes than the
    /// client sent; then answer with the registry's `Docker-Content-Digest`
    /// as it is, dropped, or replaced.
    ManifestPut {
        /// Add a byte to the body on its way to the registry.
        alter: bool,
        /// What happens to the answer's `Docker-Content-Digest`.
        digest: PutDigest,
    },
    /// Answer a `HEAD` with a lie (the blob is not looked up).
    BlobHead(HeadLie),
    /// Answer a GET with what the function makes of its request line:
    /// (status line such as `200 OK`, extra header lines each ending in
    /// CRLF, body).
    Answer(fn(&str) -> (String, String, Vec<u8>)),
}

/// What [`Fault::ManifestPut`] does to the answer's `Docker-Content-Digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutDigest {
    /// Keep the registry's.
    AsSent,
    /// Drop it.
    Dropped,
    /// Replace it with this one.
    Replaced(&'static str),
}

/// The lie [`Fault::BlobHead`] tells about a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLie {
    /// `307` back to the same path: a redirect loop.
    RedirectLoop,
    /// `302 Found` with no `Location` to follow.
    FoundWithoutLocation,
    /// `200 OK` with the blob's digest in `Docker-Content-Digest` and a
    /// `Content-Length` of 1.
    WrongLength,
}

/// The token a [`TokenServer`] hands out.
pub const TOKEN: &str = "t0k3n";

/// The refresh token (a docker config's `identitytoken`) a [`TokenServer`]
/// takes in an OAuth2 `refresh_token` grant.
pub const REFRESH_TOKEN: &str = "r3fr3sh-t0k3n";

/// A token service: answers a GET with [`TOKEN`], and a POST with it only
/// when the form is a `refresh_token` grant of [`REFRESH_TOKEN`] (else 401).
/// Keeps each request's head and body.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenServer {
    pub fn start() -> TokenServer {
        TokenServer::start_granting(TOKEN)
    }

    /// A token service that grants `token` (as a JSON string, so any
    /// bytes a JSON string can hold).
    pub fn start_granting(token: &'static str) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hd = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let hd = hd.clone();
                std::thread::spawn(move || {
                    if let Ok(Some((head, length))) = read_head(&mut client) {
                        let mut body = String::new();
                        let _ = (&mut client).take(length).read_to_string(&mut body);
                        let granted = !head.starts_with("POST ")
                            || (body.split('&').any(|f| f == "grant_type=refresh_token")
                                && body
                                    .split('&')
                                    .any(|f| f == format!("refresh_token={REFRESH_TOKEN}")));
                        hd.lock().unwrap().push(format!("{head}{body}"));
                        let (status, body) = if granted {
                            (
                                "200 OK",
                                format!(
                                    r#"{{"access_token":{},"expires_in":300}}"#,
                                    serde_json::Value::from(token)
                                ),
                            )
                        } else {
                            (
                                "401 Unauthorized",
                                r#"{"error":"invalid_grant"}"#.to_owned(),
                            )
                        };
                        let _ = client.write_all(format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes());
                    }
                });
            }
        });
        TokenServer { addr, heads }
    }
}

/// A proxy to `upstream` that applies a fault to the first `times` GET
/// requests whose path contains `needle`, passing everything else through.
/// `hits` counts faults applied; `requests` counts every request and
/// `heads` keeps each request's head, with the time it arrived.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
    pub heads: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    /// Body bytes of [`Fault::Huge`] answers written so far.
    pub body_sent: Arc<AtomicU64>,
    /// Set by [`FaultProxy::release`]: stalled answers end now.
    released: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr, needle: &str, fault: Fault, times: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let body_sent = Arc::new(AtomicU64::new(0));
        let released = Arc::new(AtomicBool::new(false));
        let counters = Counters {
            hits: hits.clone(),
            requests: requests.clone(),
            heads: heads.clone(),
            body_sent: body_sent.clone(),
            released: released.clone(),
        };
        let needle = needle.to_owned();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let (c, needle) = (counters.clone(), needle.clone());
                std::thread::spawn(move || {
                    let _ = fault_one(client, upstream, &needle, fault, times, &c);
                });
            }
        });
        FaultProxy {
            addr,
            hits,
            requests,
            heads,
            body_sent,
            released,
        }
    }

    /// Ends every [`Fault::Stall`] now (the stalled connections close, as
    /// after their minute), and makes later ones end at once.
    pub fn release(&self) {
        self.released.store(true, Ordering::Relaxed);
    }

    /// A proxy that passes everything through and only records.
    pub fn recording(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start(upstream, "", Fault::Unavailable, 0)
    }

    /// The recorded request heads that carry an `Authorization` header.
    pub fn with_credentials(&self) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .filter(|(_, h)| {
                h.lines()
                    .any(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            })
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Asserts that the one fault this proxy injected (a 429 asking for
    /// `seconds`) on the request line containing `needle` was retried once,
    /// and only after that wait.
    pub fn assert_asked_again_after(&self, needle: &str, seconds: u64) {
        assert_eq!(self.hits.load(Ordering::Relaxed), 1, "{needle}: one fault");
        let waited = self.wait_before_asking_again(needle);
        assert!(
            waited >= std::time::Duration::from_secs(seconds),
            "{needle}: asked again after {waited:?}, not after the {seconds} s asked for"
        );
    }

    /// The time between the first two arrivals of the one request line
    /// (method and path) containing `needle` that arrived more than once:
    /// how long the client waited before asking again.
    fn wait_before_asking_again(&self, needle: &str) -> std::time::Duration {
        let mut heads = self.heads.lock().unwrap().clone();
        heads.sort_by_key(|(at, _)| *at);
        let lines: Vec<(Instant, &str)> = heads
            .iter()
            .map(|(at, h)| (*at, h.lines().next().unwrap_or("")))
            .filter(|(_, l)| l.contains(needle))
            .collect();
        let mut repeated: Vec<&str> = lines
            .iter()
            .map(|(_, l)| *l)
            .filter(|l| lines.iter().filter(|(_, m)| m == l).count() > 1)
            .collect();
        repeated.dedup();
        assert_eq!(repeated.len(), 1, "one request line asked again: {lines:?}");
        let at: Vec<Instant> = lines
            .iter()
            .filter(|(_, l)| *l == repeated[0])
            .map(|(at, _)| *at)
            .collect();
        at[1] - at[0]
    }
}

/// What a [`FaultProxy`] counts, shared by its connections.
#[derive(Clone)]
struct Counters {
    hits: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    heads: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    body_sent: Arc<AtomicU64>,
    released: Arc<AtomicBool>,
}

fn fault_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    needle: &str,
    fault: Fault,
    times: u64,
    counters: &Counters,
) -> std::io::Result<()> {
    let (hits, requests, heads) = (&counters.hits, &counters.requests, &counters.heads);
    let Some((head, mut length)) = read_head(&mut client)? else {
        return Ok(());
    };
    requests.fetch_add(1, Ordering::Relaxed);
    heads.lock().unwrap().push((Instant::now(), head.clone()));
    let first = head.lines().next().unwrap_or("").to_owned();
    let method = match fault {
        Fault::DiskFull => first.starts_with("PUT ") || first.starts_with("PATCH "),
        Fault::MoveUploads(_) => first.starts_with("POST "),
        Fault::Stall => first.starts_with("GET ") || first.starts_with("PUT "),
        Fault::TooManyRequests(_) => true,
        Fault::Bearer(_) => !head
            .to_ascii_lowercase()
            .contains(&format!("\r\nauthorization: bearer {TOKEN}\r\n")),
        Fault::Huge { method, .. } => first.starts_with(&format!("{method} ")),
        Fault::ManifestPut { .. } => first.starts_with("PUT "),
        Fault::BlobHead(_) => first.starts_with("HEAD "),
        _ => first.starts_with("GET "),
    };
    let matches = method && first.contains(needle);
    let apply = matches && hits.fetch_add(1, Ordering::Relaxed) < times;
    if matches && !apply {
        hits.fetch_sub(1, Ordering::Relaxed);
    }
    // Faults answered here, without asking upstream: status, extra
    // headers, body.
    const JSON: &str = "Content-Type: application/json\r\n";
    let unauthorized =
        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
    let canned: Option<(&str, String, &[u8])> = match fault {
        _ if !apply => None,
        Fault::Unavailable => Some(("503 Service Unavailable", String::new(), b"")),
        Fault::Redirect(to) => {
            let path = first.split(' ').nth(1).unwrap_or("/");
            Some(("307 Temporary Redirect", format!("Location: http://{to}{path}\r\n"), b""))
        }
        Fault::Unauthorized => Some((
            "401 Unauthorized",
            format!("WWW-Authenticate: Basic realm=\"registry\"\r\n{JSON}"),
            unauthorized,
        )),
        Fault::Bearer(realm) => Some((
            "401 Unauthorized",
            format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\n{JSON}"),
            unauthorized,
        )),
        Fault::TooManyRequests(wait) => Some((
            "429 Too Many Requests",
            format!("Retry-After: {wait}\r\n{JSON}"),
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#,
        )),
        Fault::NotFound => Some((
            "404 Not Found",
            JSON.to_owned(),
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )),
        Fault::DiskFull => Some((
            "507 Insufficient Storage",
            JSON.to_owned(),
            br#"{"errors":[{"code":"UNKNOWN","message":"no space left on device"}]}"#,
        )),
        Fault::Schema1 => Some((
            "200 OK",
            "Content-Type: application/vnd.docker.distribution.manifest.v1+prettyjws\r\n".to_owned(),
            br#"{"schemaVersion":1,"name":"team/user","tag":"3","architecture":"amd64","fsLayers":[],"history":[]}"#,
        )),
        _ => None,
    };
    if apply {
        if let Fault::Huge {
            status,
            bytes,
            declared,
            ..
        } = fault
        {
            std::io::copy(&mut (&mut client).take(length), &mut std::io::sink())?;
            return send_huge(&mut client, status, bytes, declared, &counters.body_sent);
        }
        if let Fault::BlobHead(lie) = fault {
            let path = first.split(' ').nth(1).unwrap_or("/");
            let digest = path.rsplit('/').next().unwrap_or("");
            let answer = match lie {
                HeadLie::RedirectLoop => {
                    format!("307 Temporary Redirect\r\nLocation: {path}\r\nContent-Length: 0")
                }
                HeadLie::FoundWithoutLocation => "302 Found\r\nContent-Length: 0".to_owned(),
                HeadLie::WrongLength => {
                    format!("200 OK\r\nDocker-Content-Digest: {digest}\r\nContent-Length: 1")
                }
            };
            return client
                .write_all(format!("HTTP/1.1 {answer}\r\nConnection: close\r\n\r\n").as_bytes());
        }
    }
    if let (true, Fault::Answer(make)) = (apply, fault) {
        let (status, headers, body) = make(&first);
        std::io::copy(&mut (&mut client).take(length), &mut std::io::sink())?;
        client.write_all(
            format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )?;
        return client.write_all(&body);
    }
    if let Some((status, headers, body)) = canned {
        // Read the request body away first, so the client sees the answer
        // rather than a reset.
        std::io::copy(&mut (&mut client).take(length), &mut std::io::sink())?;
        client.write_all(
            format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )?;
        return client.write_all(body);
    }
    let mut head = head;
    let mut body = Vec::new();
    (&mut client).take(length).read_to_end(&mut body)?;
    if let (true, Fault::ManifestPut { alter: true, .. }) = (apply, fault) {
        body.push(b'\n');
        length += 1;
        head = set_header(&head, "Content-Length", Some(&length.to_string()));
    }
    let mut server = send_head(&head, upstream)?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    if apply {
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        match fault {
            Fault::ResetMidBody => {
                let cut = split + (response.len() - split) / 2;
                client.write_all(&response[..cut])?;
                let _ = client.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Fault::Stall => {
                // Half the body, or half the head when there is no body.
                let cut = if response.len() > split {
                    split + (response.len() - split) / 2
                } else {
                    split / 2
                };
                client.write_all(&response[..cut])?;
                client.flush()?;
                let until = Instant::now() + Duration::from_secs(60);
                while Instant::now() < until && !counters.released.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Ok(());
            }
            Fault::MoveUploads(to) => {
                let head = String::from_utf8_lossy(&response[..split]).into_owned();
                let moved: Vec<String> = head
                    .split("\r\n")
                    .map(|l| match l.split_once(':') {
                        Some((k, v)) if k.eq_ignore_ascii_case("location") => {
                            let v = v.trim();
                            let path = v.split_once("://").map_or(v, |(_, rest)| {
                                &rest[rest.find('/').unwrap_or(rest.len())..]
                            });
                            format!("Location: http://{to}{path}")
                        }
                        _ => l.to_owned(),
                    })
                    .collect();
                let mut out = moved.join("\r\n").into_bytes();
                out.extend_from_slice(&response[split..]);
                response = out;
            }
            Fault::Corrupt if response.len() > split => {
                let last = response.len() - 1;
                response[last] ^= 0xff;
            }
            Fault::ManifestPut { digest, .. } => {
                let head = String::from_utf8_lossy(&response[..split]).into_owned();
                let value = match digest {
                    PutDigest::AsSent => None,
                    PutDigest::Dropped => Some(None),
                    PutDigest::Replaced(d) => Some(Some(d)),
                };
                if let Some(value) = value {
                    let mut out = set_header(&head, "Docker-Content-Digest", value).into_bytes();
                    out.extend_from_slice(&response[split..]);
                    response = out;
                }
            }
            _ => {}
        }
    }
    client.write_all(&response)
}

/// `head` (a request or response head, ending in a blank line) with
/// header `name` set to `value`, or removed when `value` is `None`.
fn set_header(head: &str, name: &str, value: Option<&str>) -> String {
    let mut lines: Vec<String> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        })
        .map(str::to_owned)
        .collect();
    if let Some(v) = value {
        lines.push(format!("{name}: {v}"));
    }
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// Answers with `status` and a body of `bytes` bytes, written in pieces
/// as the client reads them, counting them in `sent`; stops quietly when
/// the client hangs up.
fn send_huge(
    client: &mut TcpStream,
    status: u16,
    bytes: u64,
    declared: bool,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let length = if declared {
        format!("Content-Length: {bytes}\r\n")
    } else {
        String::new()
    };
    client.write_all(
        format!("HTTP/1.1 {status} Lie\r\nContent-Type: text/plain\r\n{length}Connection: close\r\n\r\n")
            .as_bytes(),
    )?;
    // Lines that would clear a terminal and forge a line of output.
    let line: &[u8] = b"the registry says no \x1b[2J\r\nferry: loaded everything\n";
    let piece: Vec<u8> = line.iter().copied().cycle().take(64 << 10).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(piece.len() as u64) as usize;
        if client.write_all(&piece[..n]).is_err() {
            return Ok(());
        }
        sent.fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
    }
    Ok(())
}
