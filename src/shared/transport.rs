//! The transport rules the registry client ([`remote`](super::remote))
//! and the chart-repository client share: which failures are retried and
//! how long to wait between attempts (a doubling backoff, or the server's
//! `Retry-After` up to [`MAX_RETRY_AFTER`]), which hosts may be spoken to
//! over plain HTTP, the extra CA certificates ferry trusts, and
//! `ChannelReader`, which hands bytes received by async code to a
//! blocking writer.

use std::future::Future;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Errors setting up a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A CA certificate file is unreadable.
    #[error("cannot read CA certificate {path}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The longest `Retry-After` ferry waits out, for registries and chart
/// repositories alike; a server asking for more fails the request at once,
/// naming the wait.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The wait a `Retry-After` value asks for: delay-seconds or an HTTP date
/// (a date in the past means no wait).
pub(crate) fn retry_after_value(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The wait before retry number `attempt` (from 1): `first`, doubling
/// each time, capped at 10 s.
pub(crate) fn backoff_delay(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(8))
        .min(Duration::from_secs(10))
}

/// ` after N attempts` when there was more than one, else nothing.
pub(crate) fn attempts_note(n: u32) -> String {
    if n > 1 {
        format!(" after {n} attempts")
    } else {
        String::new()
    }
}

/// Whether `host` (`HOST[:PORT]`) is a loopback address or name.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `host` (`HOST[:PORT]`) may be spoken to over plain HTTP: a
/// loopback host, or one named with `--insecure-registry`.
pub(crate) fn plain_http_allowed(host: &str, insecure: &[String]) -> bool {
    is_loopback(host) || insecure.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// The PEM bytes of each extra CA certificate, in order.
pub(crate) fn read_cas(files: &[PathBuf]) -> Result<Vec<Vec<u8>>, TransportError> {
    files
        .iter()
        .map(|path| {
            fs_err::read(path).map_err(|source| TransportError::Ca {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// What one failed attempt means for the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Transient: try again, after the server's wait when it named one.
    Retry(Option<Duration>),
    /// Final: do not try again.
    Stop,
}

/// Why [`retrying`] gave up: the last error, how many attempts were made,
/// and the wait the server asked for when it was longer than
/// [`MAX_RETRY_AFTER`] (the request then failed at once).
pub(crate) struct GaveUp<E> {
    pub(crate) error: E,
    pub(crate) attempts: u32,
    pub(crate) too_long: Option<Duration>,
}

/// Runs `op` until it succeeds, `judge` calls a failure final, or it has
/// been retried `retries` times. Between attempts it waits what the server
/// asked (`Retry-After`), else `backoff` doubling each time (capped at
/// 10 s). A server asking for more than [`MAX_RETRY_AFTER`] ends it at once.
pub(crate) async fn retrying<T, E, F, Fut>(
    retries: u32,
    backoff: Duration,
    mut op: F,
    judge: impl Fn(&E) -> Attempt,
) -> Result<T, GaveUp<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let gave_up = |error, too_long| GaveUp {
            error,
            attempts: attempt,
            too_long,
        };
        match judge(&error) {
            Attempt::Retry(Some(wait)) if wait > MAX_RETRY_AFTER => {
                return Err(gave_up(error, Some(wait)))
            }
            Attempt::Retry(wait) if attempt <= retries => {
                tokio::time::sleep(wait.unwrap_or_else(|| backoff_delay(backoff, attempt))).await;
            }
            _ => return Err(gave_up(error, None)),
        }
    }
}

/// A `Read` over chunks sent from async code (for blocking writers).
pub(crate) struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
    received: Arc<AtomicU64>,
}

impl ChannelReader {
    pub(crate) fn new(
        rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
        received: Arc<AtomicU64>,
    ) -> Self {
        ChannelReader {
            rx,
            cur: bytes::Bytes::new(),
            received,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    self.received.fetch_add(c.len() as u64, Ordering::Relaxed);
                    self.cur = c;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["registry.local:5000", "10.0.0.1", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
        assert!(plain_http_allowed("reg.lan:5000", &["REG.lan:5000".into()]));
        assert!(!plain_http_allowed(
            "reg.lan:5000",
            &["reg.lan:5001".into()]
        ));
    }

    /// Runs `retrying` over an operation that always fails, judged by
    /// `verdict`; returns (attempts made, the wait that was too long).
    fn run(retries: u32, verdict: Attempt) -> (u32, u32, Option<Duration>) {
        let calls = AtomicU32::new(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let r: Result<(), GaveUp<&str>> = rt.block_on(retrying(
            retries,
            Duration::ZERO,
            || {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err("failed") }
            },
            |_| verdict,
        ));
        let g = r.err().unwrap();
        (calls.into_inner(), g.attempts, g.too_long)
    }

    #[test]
    fn transient_failures_are_retried_as_often_as_asked_then_given_up() {
        assert_eq!(run(2, Attempt::Retry(None)), (3, 3, None));
        let short = Some(Duration::from_millis(1));
        assert_eq!(run(1, Attempt::Retry(short)), (2, 2, None));
    }

    #[test]
    fn a_final_failure_or_a_wait_over_the_limit_ends_it_at_once() {
        assert_eq!(run(5, Attempt::Stop), (1, 1, None));
        let long = MAX_RETRY_AFTER + Duration::from_secs(1);
        assert_eq!(run(5, Attempt::Retry(Some(long))), (1, 1, Some(long)));
    }

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        let first = Duration::from_millis(200);
        assert_eq!(backoff_delay(first, 1), first);
        assert_eq!(backoff_delay(first, 3), first * 4);
        assert_eq!(backoff_delay(first, 30), Duration::from_secs(10));
    }
}
