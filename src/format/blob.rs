//! One blob path. A blob comes from a [`BlobSource`] (an archive, the
//! store or a layout directory, a local image source) and goes to a
//! [`BlobSink`] (the store); [`copy`] moves a set of them. Every byte read
//! passes through [`Verifying`], the one reader that checks a blob against
//! its digest and size, and that fails with one typed [`Mismatch`] naming
//! the digest and where the bytes came from. A sink renames a blob into
//! place only after that check.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::base::digest::{Digest, Hasher};
use crate::base::report::{Progress, Reporter};

/// A blob whose bytes are not what its digest and size say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob {digest} ({size} bytes) from {from} arrived as {actual} ({actual_size} bytes)")]
pub struct Mismatch {
    /// The digest the blob should have.
    pub digest: Digest,
    /// The size it should have.
    pub size: u64,
    /// What its bytes hash to.
    pub actual: Digest,
    /// How many bytes there were (at most one more than `size`: reading
    /// stops at the first byte too many).
    pub actual_size: u64,
    /// Where the bytes came from: a file, an archive member, a URL.
    pub from: String,
}

/// The [`Mismatch`] inside an I/O error from a [`Verifying`] reader.
pub fn mismatch_in(e: &io::Error) -> Option<&Mismatch> {
    e.get_ref()?.downcast_ref::<Mismatch>()
}

/// A reader that hashes what passes and checks it against a digest and a
/// size: more bytes than the size fail at once, and at the end of the
/// input (or at [`Verifying::finish`], for callers that stop at the size)
/// the digest must match. The failure is a [`Mismatch`], inside an
/// [`io::Error`] of kind `InvalidData` when it comes from `read`.
pub struct Verifying<R> {
    inner: R,
    hasher: Hasher,
    digest: Digest,
    size: u64,
    seen: u64,
    from: String,
    checked: bool,
}

impl<R: Read> Verifying<R> {
    /// Wraps `inner`, whose bytes must be the blob `digest` of `size`
    /// bytes; `from` says where they come from, for the error.
    pub fn new(inner: R, digest: Digest, size: u64, from: impl Into<String>) -> Verifying<R> {
        Verifying {
            inner,
            hasher: Hasher::new(),
            digest,
            size,
            seen: 0,
            from: from.into(),
            checked: false,
        }
    }

    /// How many bytes have passed.
    pub fn bytes(&self) -> u64 {
        self.seen
    }

    /// Checks what passed: exactly the size, hashing to the digest.
    pub fn finish(self) -> Result<(), Mismatch> {
        let (actual, _) = self.hasher.finish();
        if actual == self.digest && self.seen == self.size {
            return Ok(());
        }
        Err(Mismatch {
            digest: self.digest,
            size: self.size,
            actual,
            actual_size: self.seen,
            from: self.from,
        })
    }

    fn mismatch(&self) -> io::Error {
        let actual = self.hasher.clone().finish().0;
        io::Error::new(
            io::ErrorKind::InvalidData,
            Mismatch {
                digest: self.digest,
                size: self.size,
                actual,
                actual_size: self.seen,
                from: self.from.clone(),
            },
        )
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the size, so that a longer input is seen.
        let room = self.size.saturating_add(1).saturating_sub(self.seen);
        let want = buf.len().min(room.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.hasher.update(&buf[..n]);
        self.seen += n as u64;
        if self.seen > self.size {
            return Err(self.mismatch());
        }
        if n == 0 && !buf.is_empty() && !self.checked {
            self.checked = true;
            if self.seen != self.size || self.hasher.clone().finish().0 != self.digest {
                return Err(self.mismatch());
            }
        }
        Ok(n)
    }
}

/// A blob's bytes on disk as (file, offset, length) pieces, in order.
pub type Segments = Vec<(PathBuf, u64, u64)>;

/// Where blobs can be read from.
pub trait BlobSource: Send + Sync + std::fmt::Debug {
    /// What the source is, for messages: an archive, a directory.
    fn describe(&self) -> String;

    /// The blob's size and where its bytes are on disk, when this source
    /// holds it. Sources that cannot say (a compressed archive) hold
    /// nothing here.
    fn locate(&self, digest: &Digest) -> Option<(u64, Segments)>;

    /// Where a blob's bytes are, for messages: its file when it is one,
    /// else the source.
    fn name_of(&self, _digest: &Digest, segments: &Segments) -> String {
        match segments.as_slice() {
            [(path, _, _)] => path.display().to_string(),
            _ => self.describe(),
        }
    }

    /// A reader over `segments` (as [`BlobSource::locate`] gave them).
    /// A source that holds its files open reads through those.
    fn reader(&self, segments: Segments) -> SegmentReader {
        SegmentReader::new(segments)
    }

    /// A reader over `len` bytes from `start` of a blob at `segments`, for a
    /// source whose segments are not bytes to read straight from disk (a
    /// framed zstd archive, whose blobs are decompressed frame by frame).
    /// `None` for the others: their segments are read by position, as
    /// they are (`serve` streams them from disk).
    fn range_reader(&self, _segments: &Segments, _start: u64, _len: u64) -> Option<SegmentReader> {
        None
    }

    /// A verifying reader over the blob's bytes, or `None` when the source
    /// does not hold it.
    fn open(&self, digest: &Digest) -> Option<Verifying<SegmentReader>> {
        let (size, segments) = self.locate(digest)?;
        let from = self.name_of(digest, &segments);
        Some(Verifying::new(self.reader(segments), *digest, size, from))
    }

    /// The whole blob in memory, checked, refusing blobs over `limit`
    /// bytes (documents: manifests, indexes, configs).
    fn read_small(&self, digest: &Digest, limit: u64) -> io::Result<Vec<u8>> {
        let mut r = self.open(digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {digest} is not in {}", self.describe()),
            )
        })?;
        if r.size > limit {
            return Err(io::Error::other(format!(
                "document {digest} is {} bytes, over the {limit}-byte limit",
                r.size
            )));
        }
        let mut buf = Vec::with_capacity(r.size as usize);
        r.read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// Where blobs can be written: only whole and checked.
pub trait BlobSink: Sync {
    /// Whether the sink already holds the blob, at that size.
    fn has(&self, digest: &Digest, size: u64) -> bool;

    /// Stores blob `digest` of `size` bytes read from `bytes` (`from`
    /// names where they come from). The sink reads them through a
    /// [`Verifying`] reader, so a mismatch fails before it renames anything
    /// into place.
    fn put(
        &self,
        digest: &Digest,
        size: u64,
        from: &str,
        bytes: &mut dyn Read,
    ) -> Result<(), CopyError>;
}

/// Why a blob could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source does not hold it.
    #[error("blob {digest} is not in {source_name}")]
    Missing {
        /// The blob.
        digest: Digest,
        /// The source.
        source_name: String,
    },
    /// Its bytes are not what its digest says.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// Reading or writing failed.
    #[error("copying blob {digest} failed")]
    Io {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl CopyError {
    /// The error for an I/O failure while copying `digest`, keeping a
    /// verifying reader's mismatch typed.
    pub fn io(digest: Digest, e: io::Error) -> CopyError {
        match mismatch_in(&e) {
            Some(m) => CopyError::Mismatch(m.clone()),
            None => CopyError::Io { digest, source: e },
        }
    }
}

/// Copies `blobs` from `from` to `to` (those it already holds are
/// skipped), several at once, largest first; returns the bytes copied.
pub fn copy(
    from: &dyn BlobSource,
    to: &dyn BlobSink,
    blobs: &[Digest],
    reporter: &dyn Reporter,
) -> Result<u64, CopyError> {
    let mut todo: Vec<(Digest, u64)> = Vec::with_capacity(blobs.len());
    for d in blobs {
        let (size, _) = from.locate(d).ok_or_else(|| CopyError::Missing {
            digest: *d,
            source_name: from.describe(),
        })?;
        if !to.has(d, size) {
            todo.push((*d, size));
        }
    }
    todo.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    let total = todo.iter().map(|(_, s)| s).sum();
    reporter.start("copying blobs", total);
    let name = from.describe();
    todo.par_iter().with_max_len(1).try_for_each(|(d, _)| {
        let missing = || CopyError::Missing {
            digest: *d,
            source_name: name.clone(),
        };
        // The sink verifies; the bytes are hashed once.
        let (size, segments) = from.locate(d).ok_or_else(missing)?;
        let named = from.name_of(d, &segments);
        let inner = from.reader(segments);
        to.put(d, size, &named, &mut Progress { inner, reporter })
    })?;
    reporter.finish();
    Ok(total)
}

/// Reads a blob's [`Segments`] in order, by position.
pub struct SegmentReader {
    segments: Segments,
    /// Files already open, by segment: read through them rather than
    /// opening the path again.
    opened: Vec<Option<std::sync::Arc<File>>>,
    at: usize,
    pos: u64,
    file: Option<std::sync::Arc<File>>,
    /// A source's own reader instead (see [`SegmentReader::boxed`]).
    other: Option<Box<dyn Read + Send>>,
}

impl SegmentReader {
    /// A reader over `segments`, opening each file by path.
    pub fn new(segments: Segments) -> SegmentReader {
        SegmentReader::with_files(segments, Vec::new())
    }

    /// A reader over `segments` that reads segment `i` through
    /// `opened[i]` when it is given (the file a source already opened and
    /// checked), and opens the path only for the others.
    pub fn with_files(
        segments: Segments,
        opened: Vec<Option<std::sync::Arc<File>>>,
    ) -> SegmentReader {
        SegmentReader {
            segments,
            opened,
            at: 0,
            pos: 0,
            file: None,
            other: None,
        }
    }

    /// A reader that gives what `inner` gives: for a source whose bytes
    /// are not plain stretches of files (a framed zstd archive).
    pub fn boxed(inner: Box<dyn Read + Send>) -> SegmentReader {
        SegmentReader {
            other: Some(inner),
            ..SegmentReader::new(Vec::new())
        }
    }
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(r) = self.other.as_mut() {
            return r.read(buf);
        }
        loop {
            let Some((path, offset, len)) = self.segments.get(self.at) else {
                return Ok(0);
            };
            let left = len - self.pos;
            if left == 0 {
                (self.at, self.pos, self.file) = (self.at + 1, 0, None);
                continue;
            }
            if self.file.is_none() {
                self.file = match self.opened.get(self.at) {
                    Some(Some(f)) => Some(f.clone()),
                    _ => Some(std::sync::Arc::new(
                        fs_err::File::open(path)?.into_parts().0,
                    )),
                };
            }
            let Some(f) = &self.file else { continue };
            let want = buf.len().min(left.min(usize::MAX as u64) as usize);
            let n = f.read_at(&mut buf[..want], offset + self.pos)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ends inside a blob", path.display()),
                ));
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

/// Copies `len` bytes of `from`, starting at `offset`, to `to` at its
/// current position (which advances), calling `progress` with each run of
/// bytes copied. On Linux the kernel moves them (`copy_file_range`: page
/// cache to page cache, no trip through user space); where it cannot (an
/// older kernel, another filesystem, a pipe) they go through a buffer.
///
/// The bytes are **not** checked here: a caller reads the copy back
/// through [`Verifying`] (over a [`SegmentReader`] of `to`) before it
/// lets anyone use it, as `export` does before it renames its file.
pub fn copy_range(
    from: &File,
    offset: u64,
    len: u64,
    to: &File,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let mut at = offset;
    let end = offset
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range past 2^64"))?;
    #[cfg(target_os = "linux")]
    while at < end {
        use std::os::unix::io::AsRawFd;
        // A run at a time, so progress moves and a caller can start
        // writeback between runs.
        let want = (end - at).min(KERNEL_RUN) as usize;
        let Ok(mut off_in) = libc::loff_t::try_from(at) else {
            break;
        };
        // SAFETY: both descriptors are open files we borrow for the call;
        // `off_in` is a valid, exclusive pointer for its duration, and a
        // null `off_out` means "at and advancing `to`'s own position".
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                0,
            )
        };
        match n {
            0 => return Err(ended(end - at)),
            n if n > 0 => {
                at += n as u64;
                progress(n as u64);
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Not between these two files: copy the rest by hand.
                    Some(
                        libc::EXDEV
                        | libc::EINVAL
                        | libc::ENOSYS
                        | libc::EOPNOTSUPP
                        | libc::EBADF
                        | libc::EPERM,
                    ) => break,
                    _ => return Err(e),
                }
            }
        }
    }
    let mut buf = vec![0u8; (end - at).min(COPY_BUF as u64) as usize];
    let mut to = to;
    while at < end {
        let want = (end - at).min(buf.len() as u64) as usize;
        let n = match from.read_at(&mut buf[..want], at) {
            Ok(0) => return Err(ended(end - at)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        io::Write::write_all(&mut to, &buf[..n])?;
        at += n as u64;
        progress(n as u64);
    }
    Ok(())
}

/// How much [`copy_range`] asks the kernel to move at once.
const KERNEL_RUN: u64 = 8 << 20;
/// [`copy_range`]'s buffer when the kernel cannot copy.
const COPY_BUF: usize = 1 << 20;

fn ended(left: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the file ended {left} bytes before the end of the range"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mut r: impl Read) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn the_verifying_reader_passes_a_blob_that_is_what_it_says() {
        let d = Digest::of(b"hello");
        let r = Verifying::new(&b"hello"[..], d, 5, "here");
        assert_eq!(read_all(r).unwrap(), b"hello");
        let mut r = Verifying::new(&b"hello"[..], d, 5, "here");
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).unwrap();
        assert!(r.finish().is_ok());
    }

    #[test]
    fn other_bytes_fewer_bytes_or_more_bytes_are_one_typed_mismatch_naming_the_source() {
        let d = Digest::of(b"hello");
        for (bytes, size) in [(&b"jello"[..], 5), (b"hell", 5), (b"hello!", 5)] {
            let e = read_all(Verifying::new(bytes, d, size, "volume 3")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let m = mismatch_in(&e).expect("a typed mismatch");
            assert_eq!((m.digest, m.size, m.from.as_str()), (d, 5, "volume 3"));
            assert!(m.actual_size <= 6, "reading stops one byte past the size");
            assert!(e.to_string().contains(&d.to_string()), "{e}");
        }
        // A caller that stops at the size asks finish().
        let mut r = Verifying::new(&b"jello"[..], d, 5, "x");
        io::copy(&mut (&mut r).take(5), &mut io::sink()).unwrap();
        assert_eq!(r.finish().unwrap_err().actual, Digest::of(b"jello"));
    }

    #[test]
    fn copy_range_moves_exactly_the_range_to_the_position_and_fails_past_the_end() {
        let t = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let src = t.path().join("src");
        std::fs::write(&src, &bytes).unwrap();
        let from = File::open(&src).unwrap();
        let dst = t.path().join("dst");
        let mut to = File::create(&dst).unwrap();
        io::Write::write_all(&mut to, b"head").unwrap();
        let mut seen = 0;
        copy_range(&from, 1000, 200_000, &to, &mut |n| seen += n).unwrap();
        io::Write::write_all(&mut to, b"tail").unwrap();
        let got = std::fs::read(&dst).unwrap();
        assert_eq!(seen, 200_000);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..200_004], &bytes[1000..201_000]);
        assert_eq!(&got[200_004..], b"tail");
        // A range the file does not hold fails, saying so.
        let e = copy_range(&from, 250_000, 100_000, &to, &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn copy_range_into_a_pipe_goes_through_a_buffer() {
        let t = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let src = t.path().join("src");
        std::fs::write(&src, &bytes).unwrap();
        let from = File::open(&src).unwrap();
        let (mut r, w) = io::pipe().unwrap();
        let w = File::from(std::os::fd::OwnedFd::from(w));
        let reader = std::thread::spawn(move || read_all(&mut r).unwrap());
        copy_range(&from, 5, 2_500_000, &w, &mut |_| {}).unwrap();
        drop(w);
        assert_eq!(reader.join().unwrap(), &bytes[5..2_500_005]);
    }
}
