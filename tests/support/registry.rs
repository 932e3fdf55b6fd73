//! The real CNCF distribution registry (`docker-registry`, Debian package
//! `docker-registry`) on a free loopback port, with its storage and config
//! in a temp dir; optionally with htpasswd auth. Plus a TCP proxy that can
//! cut every connection once a byte budget is spent, to play a registry
//! dying mid-push.

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
        std::fs::create_dir_all(dir).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
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

    /// Repositories that exist in storage.
    pub fn repositories(&self) -> Vec<String> {
        let root = self.dir.join("data/docker/registry/v2/repositories");
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&root).into_iter().filter_map(|e| e.ok()) {
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
                        pipe_pair(client, server, budget, &cut, &spent, &on_cut)
                    });
                }
            });
        }
        CuttingProxy { addr, cut, stop }
    }
}

fn pipe_pair<F: FnOnce() + Send>(
    client: TcpStream,
    server: TcpStream,
    budget: u64,
    cut: &Arc<AtomicBool>,
    spent: &Arc<AtomicU64>,
    on_cut: &Arc<std::sync::Mutex<Option<F>>>,
) {
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        let (mut from, mut to) = (s2, c2);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    let (mut from, mut to) = (client, server);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if cut.load(Ordering::Relaxed) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if spent.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > budget {
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
    let _ = back.join();
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}
