//! Progress reporting. The library never prints: long operations call a
//! [`Reporter`], which the command-line front end implements with progress
//! bars and tests implement with nothing ([`Silent`]). `with_progress`
//! turns a byte counter that async workers share into progress.

/// Receives progress from long operations. Implementations must be cheap
/// and thread-safe: `advance` is called from worker threads per chunk.
pub trait Reporter: Send + Sync {
    /// A phase starts; `total_bytes` is the amount of work (0 if unknown).
    fn start(&self, phase: &str, total_bytes: u64);
    /// `bytes` more of the current phase are done.
    fn advance(&self, bytes: u64);
    /// A note worth showing the user (a warning, a decision made).
    fn note(&self, _message: &str) {}
    /// The current phase is done.
    fn finish(&self);
    /// One item of the current phase (a blob being fetched) starts; `id`
    /// is unique within the phase.
    fn item_start(&self, _id: u64, _label: &str, _total_bytes: u64) {}
    /// `bytes` more of item `id` are done.
    fn item_advance(&self, _id: u64, _bytes: u64) {}
    /// Item `id` is done (or abandoned).
    fn item_finish(&self, _id: u64) {}
}

/// A reporter that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Drives `work` while turning the shared byte counter into progress.
pub(crate) async fn with_progress<T>(
    work: impl std::future::Future<Output = T>,
    sent: &std::sync::atomic::AtomicU64,
    reporter: &dyn Reporter,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut seen = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            out = &mut work => {
                reporter.advance(sent.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(seen));
                return out;
            }
            _ = tick.tick() => {
                let now = sent.load(std::sync::atomic::Ordering::Relaxed);
                reporter.advance(now.saturating_sub(seen));
                seen = now;
            }
        }
    }
}

/// A reader that reports the bytes it passes as progress of the current
/// phase.
pub struct Progress<'a, R> {
    /// The bytes.
    pub inner: R,
    /// Where progress goes.
    pub reporter: &'a dyn Reporter,
}

impl<R: std::io::Read> std::io::Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.reporter.advance(n as u64);
        Ok(n)
    }
}
