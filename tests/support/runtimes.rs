//! Container runtimes that import images without a registry, each started
//! with its own temp root, state and socket: containerd (driven with
//! `ctr`) and podman (vfs storage, no daemon).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{require_tool, run, Out};

/// A containerd daemon of its own, stopped on drop.
pub struct Containerd {
    child: Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        let bin = require_tool("containerd", "containerd");
        require_tool("ctr", "containerd");
        // A short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let socket = d.join("c.sock");
        let config = d.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
                d.join("root").display(),
                d.join("state").display(),
                socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("log")).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut c = Containerd {
            child,
            socket,
            _dir: dir,
        };
        let start = Instant::now();
        while !c.ctr(&["version"]).ok() {
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!(
                    "containerd exited ({status}): {}",
                    std::fs::read_to_string(c._dir.path().join("log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not answer on {} within 30 s",
                c.socket.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// `ctr -a SOCKET ARGS…`.
    pub fn ctr(&self, args: &[&str]) -> Out {
        run(Command::new("ctr").arg("-a").arg(&self.socket).args(args))
    }

    /// `ctr -n NS images ls -q`, sorted, and the digests by name.
    pub fn images(&self, namespace: &str) -> Vec<(String, String)> {
        let out = self
            .ctr(&["-n", namespace, "images", "ls"])
            .expect_ok("ctr images ls");
        let mut v: Vec<(String, String)> = out
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.first()?.to_string(), f.get(2)?.to_string()))
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// podman with its own storage (vfs), no daemon.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        require_tool("podman", "podman");
        Podman {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `podman --root … --runroot … --storage-driver vfs ARGS…`.
    pub fn run(&self, args: &[&str]) -> Out {
        run(Command::new("podman")
            .arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args))
    }

    /// `podman load -i TAR`.
    pub fn load(&self, tar: &Path) -> Out {
        self.run(&["load", "-i", tar.to_str().unwrap()])
    }
}
