//! A static HTTP file server on loopback (a Helm chart repository in the
//! tests), optionally behind basic auth; it counts requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct FileServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
}

impl FileServer {
    /// Serves `root`; with `auth` = base64 of `user:password`, other
    /// requests get 401.
    pub fn start(root: PathBuf, auth: Option<String>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let r = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                r.fetch_add(1, Ordering::Relaxed);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut byte).unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                let authorized = auth.as_ref().is_none_or(|a| {
                    text.lines()
                        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: basic {a}")))
                });
                let file = root.join(path.trim_start_matches('/'));
                let reply = if !authorized {
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"charts\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                } else if path.contains("..") || !file.is_file() {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                } else {
                    let body = std::fs::read(&file).unwrap();
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend(body);
                    r
                };
                let _ = c.write_all(&reply);
            }
        });
        FileServer { addr, requests }
    }
}
