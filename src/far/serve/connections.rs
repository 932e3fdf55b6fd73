//! Connections for `serve`: one accept loop, for plain HTTP and for TLS,
//! that bounds what a client can hold without sending a request. A
//! connection is in one of four phases: receiving a request head (the TLS
//! handshake included), idle between requests, answering a request, or
//! draining the end of an answer to the socket. The first two may last at
//! most the header and the idle timeout, and only they are ever evicted:
//! when the connection cap is reached, the connection that has been
//! waiting longest in one of them is closed to make room. A connection
//! answering a request (a slow client downloading a big layer) is never
//! timed out or evicted; when every connection is answering one, a new
//! connection waits in the kernel's queue until one ends.
//!
//! The phase is learned from three places: the service (a request has
//! begun), the response body (dropped once sent or abandoned), and the
//! connection's stream (a byte of the next request head has arrived; hyper
//! has flushed the end of the answer).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long clients may take and how many connections may be open; see
/// docs/serve.md for the defaults and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a whole request head: from accepting the connection
    /// (the TLS handshake included) or, on a kept-alive connection, from
    /// the first byte of the next request.
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for the first byte of its next
    /// request.
    pub idle_timeout: Duration,
    /// Connections open at once. Past it, the connection idle or receiving
    /// a head for longest is closed; connections answering a request are
    /// never closed for it. At least 1.
    pub max_connections: usize,
}

impl Limits {
    /// The default header timeout: 20 s.
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
    /// The default idle timeout: 75 s.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
    /// The default connection cap, when the open-file limit allows it.
    pub const MAX_CONNECTIONS: usize = 1024;
    /// Open files one connection may need: its socket and the file a blob
    /// is read from (a blob split across volumes needs one per volume, but
    /// few do).
    pub const FILES_PER_CONNECTION: u64 = 2;
    /// Open files kept for everything else (the listener, the runtime,
    /// standard streams).
    pub const FILES_RESERVED: u64 = 64;

    /// The largest cap, at most [`Limits::MAX_CONNECTIONS`], that
    /// `open_files` file descriptors can carry.
    pub fn max_connections_for(open_files: u64) -> usize {
        let fit = open_files.saturating_sub(Limits::FILES_RESERVED) / Limits::FILES_PER_CONNECTION;
        usize::try_from(fit)
            .unwrap_or(usize::MAX)
            .clamp(1, Limits::MAX_CONNECTIONS)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Limits::HEADER_TIMEOUT,
            idle_timeout: Limits::IDLE_TIMEOUT,
            max_connections: Limits::MAX_CONNECTIONS,
        }
    }
}

/// Where a connection is between two requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Receiving a request head (or the TLS handshake before the first).
    Head,
    /// Kept alive, no byte of the next request yet.
    Idle,
    /// Answering this many requests.
    Busy(usize),
    /// The last answer's body is done; hyper may still be writing its end.
    Draining,
    /// Chosen for eviction; it closes at once.
    Evicted,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the phase began.
    since: Instant,
    /// Bytes arrived while busy or draining (a pipelined request): the
    /// next phase is then `Head`, not `Idle`.
    early_bytes: bool,
}

/// One connection's phase, shared by its stream, its service, its
/// response bodies, its watchdog and the accept loop.
#[derive(Debug)]
struct Conn {
    state: Mutex<State>,
    /// Wakes the watchdog when the phase changes.
    wake: Notify,
    /// Wakes the accept loop when a connection becomes evictable.
    evictable: Arc<Notify>,
}

impl Conn {
    fn new(evictable: Arc<Notify>) -> Conn {
        Conn {
            state: Mutex::new(State {
                phase: Phase::Head,
                since: Instant::now(),
                early_bytes: false,
            }),
            wake: Notify::new(),
            evictable,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state torn: every
        // change is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, s: &mut State, phase: Phase) {
        s.phase = phase;
        s.since = Instant::now();
        self.wake.notify_one();
        if matches!(phase, Phase::Head | Phase::Idle) {
            self.evictable.notify_one();
        }
    }

    /// Bytes of a request arrived.
    fn bytes_arrived(&self) {
        let mut s = self.state();
        match s.phase {
            Phase::Idle => self.enter(&mut s, Phase::Head),
            Phase::Busy(_) | Phase::Draining => s.early_bytes = true,
            Phase::Head | Phase::Evicted => {}
        }
    }

    /// A whole request head has arrived and is being answered.
    fn request_began(&self) {
        let mut s = self.state();
        s.early_bytes = false;
        match s.phase {
            Phase::Busy(n) => s.phase = Phase::Busy(n + 1),
            Phase::Evicted => {}
            _ => self.enter(&mut s, Phase::Busy(1)),
        }
    }

    /// An answer's body was sent (or dropped).
    fn request_ended(&self) {
        let mut s = self.state();
        match s.phase {
            Phase::Busy(n) if n > 1 => s.phase = Phase::Busy(n - 1),
            Phase::Busy(_) => self.enter(&mut s, Phase::Draining),
            _ => {}
        }
    }

    /// Everything written so far has left hyper's and TLS's buffers.
    fn flushed(&self) {
        let mut s = self.state();
        if s.phase == Phase::Draining {
            let next = if s.early_bytes {
                Phase::Head
            } else {
                Phase::Idle
            };
            self.enter(&mut s, next);
        }
    }

    /// Closes the connection if it is idle or receiving a head; false if
    /// it is not (any more).
    fn evict(&self) -> bool {
        let mut s = self.state();
        let waiting = matches!(s.phase, Phase::Head | Phase::Idle);
        if waiting {
            self.enter(&mut s, Phase::Evicted);
        }
        waiting
    }

    /// When the connection should be closed, if it stays in its phase.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let s = self.state();
        match s.phase {
            Phase::Head => Some(s.since + limits.header_timeout),
            Phase::Idle => Some(s.since + limits.idle_timeout),
            Phase::Evicted => Some(s.since),
            Phase::Busy(_) | Phase::Draining => None,
        }
    }

    /// Ends when the connection has to close: a timeout or eviction.
    async fn watchdog(&self, limits: &Limits) {
        loop {
            match self.deadline(limits) {
                Some(d) if d <= Instant::now() => return,
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

/// The open connections, for choosing whom to evict.
#[derive(Debug, Default)]
struct Table {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

impl Table {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(self: &Arc<Table>, conn: Arc<Conn>) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns().insert(id, conn);
        Entry {
            table: self.clone(),
            id,
        }
    }

    /// Closes the connection that has been idle or receiving a head for
    /// longest. False if every connection is answering a request.
    fn evict_oldest(&self) -> bool {
        let conns = self.conns();
        let mut oldest: Option<(Instant, &Arc<Conn>)> = None;
        for c in conns.values() {
            let s = c.state();
            if matches!(s.phase, Phase::Head | Phase::Idle)
                && oldest.is_none_or(|(since, _)| s.since < since)
            {
                oldest = Some((s.since, c));
            }
        }
        // It may have begun a request since: then nothing is evicted.
        oldest.is_some_and(|(_, c)| c.evict())
    }

    /// Closes every connection that is idle or receiving a head.
    fn evict_all_waiting(&self) {
        for c in self.conns().values() {
            c.evict();
        }
    }
}

/// A connection's place in the table, given up when it closes.
struct Entry {
    table: Arc<Table>,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.table.conns().remove(&self.id);
    }
}

/// Accepts connections on `listener` (over TLS with `tls`) and answers them
/// with `app` until `shutdown` completes; then stops accepting, closes the
/// connections that wait, lets the answers under way finish, and returns
/// when every connection has closed.
pub(super) async fn run<F>(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    // Bounded so that the semaphore and the final wait can count them all.
    let most = usize::try_from(u32::MAX)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let max = limits.max_connections.clamp(1, most);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let limits = Arc::new(Limits {
        max_connections: max,
        ..limits
    });
    let slots = Arc::new(Semaphore::new(max));
    let table = Arc::new(Table::default());
    let evictable = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    'accept: loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A failed accept (say, too many open files) must not end
                // the server, nor spin: wait a moment and accept again.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break slot;
            }
            // At the cap: make room by closing the longest-waiting idle or
            // half-sent connection, or wait until one ends or becomes
            // evictable.
            let evicted = table.evict_oldest();
            tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => break slot,
                    Err(_) => break 'accept,
                },
                _ = evictable.notified(), if !evicted => {}
                _ = &mut shutdown => break 'accept,
            }
        };
        let conn = Arc::new(Conn::new(evictable.clone()));
        let entry = table.add(conn.clone());
        let (app, tls, limits, stop) = (app.clone(), tls.clone(), limits.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _entry = entry;
            let work = async {
                match tls {
                    None => serve_stream(stream, app, &conn, &stop).await,
                    Some(tls) => {
                        // The handshake counts as part of the first head.
                        if let Ok(stream) = tls.accept(stream).await {
                            serve_stream(stream, app, &conn, &stop).await;
                        }
                    }
                }
            };
            // Dropping the connection closes it.
            tokio::select! {
                _ = work => {}
                _ = conn.watchdog(&limits) => {}
            }
        });
    }
    drop(listener);
    // hyper closes connections between requests, not those still sending
    // their first head; neither is answering anything.
    stop.cancel();
    table.evict_all_waiting();
    // Every connection holds a slot until it has closed.
    let _all = slots.acquire_many(all).await;
    Ok(())
}

/// Answers the requests of one connection until it closes or `stop` asks
/// it to finish the answer under way and close.
async fn serve_stream<S>(stream: S, app: axum::Router, conn: &Arc<Conn>, stop: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: stream,
        conn: conn.clone(),
    });
    let service = Requests {
        app: hyper_util::service::TowerToHyperService::new(app),
        conn: conn.clone(),
    };
    let http = hyper::server::conn::http1::Builder::new()
        // ferry's own watchdog times heads out (hyper's timer would count
        // the idle wait as part of the head).
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(http);
    tokio::select! {
        _ = http.as_mut() => return,
        _ = stop.cancelled() => {}
    }
    http.as_mut().graceful_shutdown();
    let _ = http.await;
}

/// The application, marking the connection busy from a request's head to
/// the end of its answer's body.
struct Requests {
    app: hyper_util::service::TowerToHyperService<axum::Router>,
    conn: Arc<Conn>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Requests {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Answer {
        self.conn.request_began();
        let busy = Busy(self.conn.clone());
        let answer = self.app.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| Tracked { body, _busy: busy }))
        })
    }
}

/// Marks the end of a request when dropped.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that ends its request when hyper drops it.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream, reporting arriving bytes and finished flushes.
struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.bytes_arrived();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper flushes the stream only once its own buffer is empty.
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.conn.flushed();
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        assert_eq!(Limits::max_connections_for(1024), 480);
        assert_eq!(Limits::max_connections_for(20_000), Limits::MAX_CONNECTIONS);
        assert_eq!(
            Limits::max_connections_for(u64::MAX),
            Limits::MAX_CONNECTIONS
        );
        assert_eq!(Limits::max_connections_for(10), 1);
    }

    #[tokio::test]
    async fn phases_follow_requests_and_only_waiting_connections_are_evicted() {
        let table = Arc::new(Table::default());
        let evictable = Arc::new(Notify::new());
        let a = Arc::new(Conn::new(evictable.clone()));
        let _ea = table.add(a.clone());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = Arc::new(Conn::new(evictable));
        let _eb = table.add(b.clone());
        let limits = Limits::default();

        // A busy connection has no deadline and is never chosen.
        a.request_began();
        assert_eq!(a.deadline(&limits), None);
        assert!(table.evict_oldest());
        assert_eq!(b.state().phase, Phase::Evicted);
        assert!(!table.evict_oldest(), "a busy connection was evicted");

        // The answer is sent: draining until flushed, then idle.
        a.bytes_arrived();
        a.request_ended();
        assert_eq!(a.state().phase, Phase::Draining);
        assert!(!table.evict_oldest());
        a.flushed();
        // A pipelined byte arrived while busy: the next head has begun.
        assert_eq!(a.state().phase, Phase::Head);
        a.request_began();
        a.request_ended();
        a.flushed();
        assert_eq!(a.state().phase, Phase::Idle);
        let idle_since = a.state().since;
        assert_eq!(a.deadline(&limits), Some(idle_since + limits.idle_timeout));
        a.bytes_arrived();
        let head_since = a.state().since;
        assert_eq!(
            a.deadline(&limits),
            Some(head_since + limits.header_timeout)
        );
        assert!(table.evict_oldest());
        assert_eq!(a.state().phase, Phase::Evicted);
    }
}
