//! A link emulator for the network benchmarks (`scripts/bench-link.sh`,
//! `scripts/bench-small.sh`): a TCP proxy that puts one emulated link
//! between its clients and an upstream server, the way a registry tens of
//! milliseconds away is reached.
//!
//! Each direction of the link is one FIFO bottleneck shared by every
//! connection, as one link is: a chunk read from a socket takes its turn on
//! the direction's wire (its length at the capped rate, after everything
//! queued before it, whichever connection that came from), then arrives a
//! fixed one-way delay later and is written to the other side. Each
//! connection buffers up to `--buffer` bytes per direction (by default
//! twice the bandwidth-delay product, so one stream alone can fill the
//! link); past that the proxy stops reading, and TCP pushes back on the
//! sender. A new connection costs one round trip before its first byte
//! goes through (the handshake a real link would take).
//!
//! It terminates TCP on loopback at both ends, so it emulates request round
//! trips and bandwidth, not TCP's window dynamics (slow start, loss
//! recovery): figures measured through it are an upper bound for what a
//! client reaches on a real link with the same delay and rate.
//!
//! It also counts what goes through: connections, bytes each way, and HTTP/1
//! requests by kind (method and the registry API route: ping, manifest,
//! blob, upload, referrers, tags, other), from the request heads it sees
//! (requests with a chunked body stop the counting on their connection,
//! which is counted as such), and how long the downward wire was busy
//! (the time its bytes took at the capped rate). `SIGUSR1` writes the counts to `--stats`
//! (JSON) and starts them again from zero; so does the end of the process
//! on `SIGTERM`/`SIGINT`.
//!
//! `cargo run --release --example link -- --listen 127.0.0.1:PORT
//!   --upstream 127.0.0.1:PORT [--rtt-ms 50] [--mbit 200] [--buffer BYTES]
//!   [--stats FILE]`

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

#[derive(Parser, Debug)]
struct Args {
    /// Where clients connect.
    #[arg(long)]
    listen: SocketAddr,
    /// The server behind the link.
    #[arg(long)]
    upstream: SocketAddr,
    /// Round-trip time added (half each way), in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    rtt_ms: f64,
    /// Rate cap per direction, in Mbit/s (shared by all connections).
    #[arg(long, default_value_t = 200.0)]
    mbit: f64,
    /// Bytes buffered per connection and direction (default: twice the
    /// bandwidth-delay product, at least 256 KiB).
    #[arg(long)]
    buffer: Option<usize>,
    /// Where SIGUSR1 and the end of the process write the counts (JSON).
    #[arg(long)]
    stats: Option<PathBuf>,
}

/// One direction of the link: when its wire is next free.
struct Wire {
    free_at: Mutex<Instant>,
    /// Nanoseconds the wire spent sending, since the counts last started.
    busy_ns: AtomicU64,
    /// Seconds per byte.
    per_byte: f64,
    delay: Duration,
}

impl Wire {
    /// When a chunk of `len` bytes handed over now arrives at the far end.
    fn send(&self, len: usize) -> Instant {
        let now = Instant::now();
        let mut free = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*free).max(now);
        let took = Duration::from_secs_f64(len as f64 * self.per_byte);
        let done = start + took;
        *free = done;
        self.busy_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        done + self.delay
    }
}

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    up_bytes: AtomicU64,
    down_bytes: AtomicU64,
    /// "METHOD kind" → count.
    requests: Mutex<BTreeMap<String, u64>>,
    /// Connections whose request heads could not be followed (chunked
    /// request bodies).
    unparsed: AtomicU64,
    /// When counting started again.
    since: Mutex<Option<Instant>>,
}

impl Stats {
    fn count(&self, key: String) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    /// The counts as JSON, zeroing them.
    fn take(&self, down: &Wire) -> String {
        let requests =
            std::mem::take(&mut *self.requests.lock().unwrap_or_else(|p| p.into_inner()));
        let since = self
            .since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Instant::now());
        let total: u64 = requests.values().sum();
        let mut s = String::from("{\n");
        s += &format!(
            "  \"seconds\": {:.3},\n",
            since.map_or(0.0, |t| t.elapsed().as_secs_f64())
        );
        s += &format!(
            "  \"connections\": {},\n",
            self.connections.swap(0, Ordering::Relaxed)
        );
        s += &format!(
            "  \"bytes_up\": {},\n  \"bytes_down\": {},\n",
            self.up_bytes.swap(0, Ordering::Relaxed),
            self.down_bytes.swap(0, Ordering::Relaxed)
        );
        s += &format!(
            "  \"down_busy_seconds\": {:.3},\n",
            down.busy_ns.swap(0, Ordering::Relaxed) as f64 / 1e9
        );
        s += &format!(
            "  \"unparsed_connections\": {},\n",
            self.unparsed.swap(0, Ordering::Relaxed)
        );
        s += &format!("  \"requests\": {total},\n  \"by_kind\": {{");
        let kinds: Vec<String> = requests
            .iter()
            .map(|(k, v)| format!("\n    \"{k}\": {v}"))
            .collect();
        s += &kinds.join(",");
        s += "\n  }\n}\n";
        s
    }
}

/// The registry API route of a request path, for counting.
fn kind(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let k = if path == "/v2/" || path == "/v2" {
        "ping"
    } else if !path.starts_with("/v2/") {
        "other (token?)"
    } else if path.contains("/blobs/uploads") {
        "upload"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/referrers/") {
        "referrers"
    } else if path.ends_with("/tags/list") {
        "tags"
    } else {
        "other"
    };
    format!("{method} {k}")
}

/// Follows the request heads of one client → server byte stream.
struct Heads {
    buf: Vec<u8>,
    /// Body bytes still to skip.
    skip: u64,
    lost: bool,
}

impl Heads {
    fn feed(&mut self, data: &[u8], stats: &Stats) {
        let mut data = data.to_vec();
        while !self.lost && !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                self.skip -= n as u64;
                data.drain(..n);
                continue;
            }
            self.buf.append(&mut data);
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.buf.len() > 1 << 20 {
                    self.lost = true;
                }
                return;
            };
            // What comes after the head is body, then maybe the next head.
            data = self.buf.split_off(end + 4);
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.clear();
            let mut lines = head.lines();
            let mut first = lines.next().unwrap_or("").split_whitespace();
            let (method, path) = (first.next().unwrap_or("?"), first.next().unwrap_or("?"));
            stats.count(kind(method, path));
            for l in lines {
                let Some((name, value)) = l.split_once(':') else {
                    continue;
                };
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    self.skip = value.parse().unwrap_or(0);
                } else if name == "transfer-encoding" && value.contains("chunked") {
                    self.lost = true;
                    stats.unparsed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Carries one direction of one connection over `wire`.
async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    wire: Arc<Wire>,
    buffer: usize,
    counted: &'static AtomicU64,
    mut heads: Option<(Heads, &'static Stats)>,
) -> io::Result<()> {
    let room = Arc::new(Semaphore::new(buffer));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer_room = room.clone();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            let r = to.write_all(&chunk).await;
            writer_room.add_permits(chunk.len());
            r?;
        }
        to.shutdown().await
    });
    let chunk_max = 16 << 10;
    loop {
        // Wait for room before reading, so a full buffer pushes back.
        let permit = room
            .acquire_many(chunk_max as u32)
            .await
            .map_err(io::Error::other)?;
        permit.forget();
        let mut chunk = vec![0u8; chunk_max];
        let n = from.read(&mut chunk).await?;
        room.add_permits(chunk_max - n);
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        counted.fetch_add(n as u64, Ordering::Relaxed);
        if let Some((h, stats)) = heads.as_mut() {
            h.feed(&chunk, stats);
        }
        let at = wire.send(n);
        if tx.send((at, chunk)).is_err() {
            break;
        }
    }
    drop(tx);
    writer.await.map_err(io::Error::other)?
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> io::Result<()> {
    let one_way = Duration::from_secs_f64(args.rtt_ms / 2000.0);
    let bytes_per_s = args.mbit * 1e6 / 8.0;
    let bdp = (bytes_per_s * args.rtt_ms / 1000.0) as usize;
    let buffer = args
        .buffer
        .unwrap_or((2 * bdp).max(256 << 10))
        .max(16 << 10);
    let wire = |_| {
        Arc::new(Wire {
            free_at: Mutex::new(Instant::now()),
            busy_ns: AtomicU64::new(0),
            per_byte: 1.0 / bytes_per_s,
            delay: one_way,
        })
    };
    let (up, down) = (wire(()), wire(()));
    let down_wire = down.clone();
    // Shared with every connection for the process's life.
    let stats: &'static Stats = Box::leak(Box::default());
    *stats.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "link: {} -> {} rtt {} ms, {} Mbit/s each way, {} KiB buffered per connection and direction",
        args.listen,
        args.upstream,
        args.rtt_ms,
        args.mbit,
        buffer >> 10
    );
    let dump = {
        let path = args.stats.clone();
        let down = down_wire;
        move || {
            let json = stats.take(&down);
            match &path {
                Some(p) => {
                    // Whole or not at all, for scripts waiting on it.
                    let tmp = p.with_extension("tmp");
                    let _ = std::fs::write(&tmp, &json).and_then(|()| std::fs::rename(&tmp, p));
                }
                None => eprint!("{json}"),
            }
        }
    };
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = usr1.recv() => dump(),
            _ = term.recv() => { dump(); return Ok(()); }
            _ = tokio::signal::ctrl_c() => { dump(); return Ok(()); }
            accepted = listener.accept() => {
                let (client, _) = accepted?;
                let (up, down, upstream) = (up.clone(), down.clone(), args.upstream);
                stats.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    // The handshake's round trip.
                    tokio::time::sleep(2 * one_way).await;
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let heads = Heads { buf: Vec::new(), skip: 0, lost: false };
                    let a = carry(cr, sw, up, buffer, &stats.up_bytes, Some((heads, stats)));
                    let b = carry(sr, cw, down, buffer, &stats.down_bytes, None);
                    let _ = tokio::join!(a, b);
                });
            }
        }
    }
}
