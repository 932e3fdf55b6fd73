//! Compressed archives (`pack --compress zstd[:LEVEL]`): the same tar an
//! uncompressed archive holds, as one zstd stream (multithreaded, with
//! zstd's frame checksum). There is no random access, so readers take the
//! stream once, in order: [`Stream`] checks every header against
//! bundle.json exactly as the uncompressed reader does, and [`scan`] hashes
//! every member on the way, keeping only the small JSON members (index,
//! manifests, configs) in memory. Nothing is extracted to disk.
//!
//! zstd is built without its legacy-format decoders, and decoding goes
//! through `read::Decoder`, whose window is capped by zstd's default limit;
//! output is bounded by the sizes bundle.json declares, plus at most
//! [`TRAILING_MAX`] bytes of zero padding after the end marker.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    check_member, padding, parse_header, ustar_header, Archive, ArchiveError, Entry, Header,
    PlannedMember, Written, BLOCK,
};
use crate::bundle::{Bundle, BUNDLE_MAX_BYTES, BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::digest::{Digest, Hasher, HashingReader, COPY_BUF};
use crate::report::Reporter;
use crate::sign::{SIGNATURE_MAX_BYTES, SIGNATURE_PATH};

/// The first four bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The default compression level.
pub const DEFAULT_LEVEL: i32 = 3;
/// JSON members up to this size are kept in memory by [`scan`].
const KEEP_MAX: u64 = crate::oci::MANIFEST_MAX_BYTES * 4;
/// The most a scan keeps in memory in all.
pub const KEPT_MAX_BYTES: u64 = 256 << 20;
/// The most zero padding accepted after the end-of-archive marker.
pub const TRAILING_MAX: u64 = 1 << 20;

/// Whether the file starts like a zstd stream.
pub fn is_compressed(path: &Path) -> io::Result<bool> {
    let Ok(mut f) = File::open(path) else {
        // Let the caller's open name the problem.
        return Ok(false);
    };
    let mut magic = [0u8; 4];
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(magic == ZSTD_MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("reading {}: {e}", path.display()),
        )),
    }
}

// ---------------------------------------------------------------------------
// Writing

/// Writes the archive as one zstd stream to `out`, atomically (temp file,
/// renamed when complete). Members are copied in order and re-hashed on
/// the way; a mismatch leaves nothing under `out`.
pub fn write(
    out: &Path,
    bundle_json: &[u8],
    signature: Option<&[u8]>,
    members: &[PlannedMember],
    mtime: u64,
    level: i32,
    reporter: &dyn Reporter,
) -> Result<Written, ArchiveError> {
    let tmp = super::partial_file(out)?;
    let registered = crate::interrupt::register(tmp.path());
    let werr = |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", out.display()));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let mut enc =
        zstd::stream::write::Encoder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()), level)
            .map_err(werr)?;
    enc.include_checksum(true).map_err(werr)?;
    enc.multithread(threads).map_err(werr)?;

    let total: u64 = members.iter().map(|m| m.size).sum();
    reporter.start("compressing archive", total);
    let fixed = |enc: &mut zstd::stream::write::Encoder<'_, _>, path: &str, bytes: &[u8]| {
        put_member(enc, path, bytes.len() as u64, mtime, &mut &bytes[..]).map_err(werr)
    };
    for (i, m) in members.iter().enumerate() {
        let (reader, source_path) = super::open_source(m)?;
        let mut hr = HashingReader::new(super::Progress {
            inner: reader,
            reporter,
        });
        put_member(&mut enc, &m.path, m.size, mtime, &mut hr).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::Other {
                ArchiveError::SourceRead {
                    source_path: source_path.clone(),
                    member: m.path.clone(),
                    source: e,
                }
            } else {
                ArchiveError::Io(werr(e))
            }
        })?;
        super::check_source(m, source_path, hr)?;
        if i == 0 {
            // bundle.json and the signature follow oci-layout.
            if m.path != OCI_LAYOUT_PATH {
                return Err(ArchiveError::NotFerry {
                    archive: out.to_owned(),
                    reason: format!("the member list starts with {}, not oci-layout", m.path),
                });
            }
            fixed(&mut enc, BUNDLE_PATH, bundle_json)?;
            if let Some(sig) = signature {
                fixed(&mut enc, SIGNATURE_PATH, sig)?;
            }
        }
    }
    enc.write_all(&[0u8; 2 * BLOCK as usize]).map_err(werr)?;
    let buffered = enc.finish().map_err(werr)?;
    buffered
        .into_inner()
        .map_err(|e| werr(e.into_error()))?
        .sync_all()
        .map_err(werr)?;
    crate::layout::make_readable(tmp.as_file()).map_err(werr)?;
    let size = tmp.as_file().metadata().map_err(werr)?.len();
    drop(registered);
    tmp.persist(out).map_err(|e| {
        io::Error::new(
            e.error.kind(),
            format!("renaming into {}: {}", out.display(), e.error),
        )
    })?;
    reporter.finish();
    Ok(Written {
        files: vec![(out.to_owned(), size)],
        sidecar: None,
    })
}

/// Writes one member: header, exactly `size` bytes from `data`, padding.
fn put_member(
    w: &mut impl Write,
    path: &str,
    size: u64,
    mtime: u64,
    data: &mut dyn Read,
) -> io::Result<()> {
    let h = ustar_header(path, size, mtime)?;
    w.write_all(h.as_bytes())?;
    let copied = io::copy(&mut data.take(size), w)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "ended {} bytes before the declared size of {size}",
                size - copied
            ),
        ));
    }
    w.write_all(&[0u8; BLOCK as usize][..padding(size) as usize])
}

// ---------------------------------------------------------------------------
// Reading

/// A compressed archive read once, in order. After [`Stream::open`] the
/// table of contents is known; [`Stream::next_member`] moves to each
/// member in turn (checked against bundle.json) and `Read` gives its bytes.
pub struct Stream {
    path: PathBuf,
    dec: zstd::stream::read::Decoder<'static, BufReader<File>>,
    /// Uncompressed bytes consumed.
    pos: u64,
    /// The table of contents.
    pub bundle: Bundle,
    /// Its raw bytes.
    pub bundle_bytes: Vec<u8>,
    /// The signature of bundle.json, when signed.
    pub signature: Option<Vec<u8>>,
    /// The bytes of `oci-layout` (member 0, read while opening).
    pub layout: Vec<u8>,
    expected: Vec<(String, u64)>,
    next: usize,
    seen: HashSet<String>,
    /// A header already read while looking for the signature (`Some(None)`:
    /// the end marker).
    pending: Option<Option<Header>>,
    left: u64,
    pad: u64,
}

impl Stream {
    /// The archive view of what was read: the entries found, the faults
    /// met, the digests computed and the small members kept.
    fn into_archive(
        self,
        entries: Vec<Entry>,
        faults: Vec<ArchiveError>,
        digests: HashMap<String, Digest>,
        kept: HashMap<String, Arc<Vec<u8>>>,
    ) -> Archive {
        Archive::from_stream(
            &self.path,
            self.bundle,
            self.bundle_bytes,
            self.signature,
            entries,
            faults,
            digests,
            kept,
        )
    }

    /// Opens a compressed archive and reads it as far as bundle.json and
    /// the signature.
    pub fn open(path: &Path) -> Result<Stream, ArchiveError> {
        let file = fs_err::File::open(path)?.into_parts().0;
        let dec = zstd::stream::read::Decoder::new(file).map_err(|e| ArchiveError::Decompress {
            archive: path.to_owned(),
            offset: 0,
            source: e,
        })?;
        let not_ferry = |reason: String| ArchiveError::NotFerry {
            archive: path.to_owned(),
            reason,
        };
        let mut s = Stream {
            path: path.to_owned(),
            dec,
            pos: 0,
            bundle: placeholder(),
            bundle_bytes: Vec::new(),
            signature: None,
            layout: Vec::new(),
            expected: Vec::new(),
            next: 1,
            seen: HashSet::new(),
            pending: None,
            left: 0,
            pad: 0,
        };
        let first = s
            .header("the first member")?
            .ok_or_else(|| not_ferry("it holds no members".into()))?;
        if first.path != OCI_LAYOUT_PATH {
            return Err(not_ferry(format!(
                "its first member is {:?}, not oci-layout",
                first.path
            )));
        }
        s.layout = s.small_data(&first, 4096)?;
        let second = s
            .header("bundle.json")?
            .ok_or_else(|| not_ferry("it has no bundle.json".into()))?;
        if second.path != BUNDLE_PATH {
            return Err(not_ferry(format!(
                "its second member is {:?}, not bundle.json",
                second.path
            )));
        }
        s.bundle_bytes = s.small_data(&second, BUNDLE_MAX_BYTES)?;
        s.bundle = Bundle::from_slice(&s.bundle_bytes).map_err(|source| ArchiveError::Bundle {
            archive: path.to_owned(),
            source,
        })?;
        if s.bundle.volumes.is_some() {
            return Err(not_ferry(
                "its bundle.json plans volumes, which compressed archives do not have".into(),
            ));
        }
        s.expected = s
            .bundle
            .members
            .iter()
            .map(|m| (m.path.clone(), m.size))
            .collect();
        if s.expected.first().map(|(p, _)| p.as_str()) != Some(OCI_LAYOUT_PATH) {
            return Err(not_ferry(
                "bundle.json does not list oci-layout first".into(),
            ));
        }
        match s.header("the member after bundle.json")? {
            Some(h) if h.path == SIGNATURE_PATH && h.size <= SIGNATURE_MAX_BYTES => {
                s.signature = Some(s.small_data(&h, SIGNATURE_MAX_BYTES)?);
            }
            other => s.pending = Some(other),
        }
        Ok(s)
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves to the next member (skipping what is left of the current
    /// one): its index in bundle.json's members, or `None` at a proper end
    /// of the archive (every member arrived, the end marker and nothing but
    /// zero padding after it).
    pub fn next_member(&mut self) -> Result<Option<usize>, ArchiveError> {
        self.skip_rest()?;
        let h = match self.pending.take() {
            Some(h) => h,
            None => self.header("the next member")?,
        };
        let known: HashSet<&str> = HashSet::new();
        let Some(h) = h else {
            if let Some((path, _)) = self.expected.get(self.next) {
                return Err(ArchiveError::Missing {
                    archive: self.path.clone(),
                    path: path.clone(),
                    count: self.expected.len() - self.next,
                });
            }
            self.check_trailing()?;
            return Ok(None);
        };
        let want = self.expected.get(self.next);
        if let Err(e) = check_member(&self.path, want, &h, &self.seen, &known) {
            // Members listed further on are out of order, not unlisted.
            let listed = self.expected.iter().any(|(p, _)| *p == h.path);
            return Err(match (e, want) {
                (ArchiveError::Unlisted { archive, path }, Some((w, _))) if listed => {
                    ArchiveError::OutOfOrder {
                        archive,
                        path,
                        expected: w.clone(),
                    }
                }
                (e, _) => e,
            });
        }
        self.seen.insert(h.path.clone());
        self.left = h.size;
        self.pad = padding(h.size);
        let i = self.next;
        self.next += 1;
        Ok(Some(i))
    }

    /// Reads exactly `buf.len()` uncompressed bytes, naming what was being
    /// read when the stream ends or is damaged.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), ArchiveError> {
        match self.dec.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.stream_error(e, what)),
        }
    }

    fn stream_error(&self, e: io::Error, what: &str) -> ArchiveError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Truncated {
                archive: self.path.clone(),
                what: format!(
                    "the zstd stream ends inside {what}, after {} uncompressed bytes",
                    self.pos
                ),
                file_len: fs_err::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            }
        } else {
            ArchiveError::Decompress {
                archive: self.path.clone(),
                offset: self.pos,
                source: e,
            }
        }
    }

    /// The next header, or `None` at the end-of-archive marker.
    fn header(&mut self, what: &str) -> Result<Option<Header>, ArchiveError> {
        let mut block = [0u8; BLOCK as usize];
        let at = self.pos;
        self.fill(&mut block, &format!("the header of {what}"))?;
        if block.iter().all(|&b| b == 0) {
            self.fill(&mut block, "the end-of-archive marker")?;
            if block.iter().any(|&b| b != 0) {
                return Err(ArchiveError::BadHeader {
                    archive: self.path.clone(),
                    offset: at,
                    reason: "a zero block followed by data".into(),
                });
            }
            return Ok(None);
        }
        let (path, size) = parse_header(&self.path, at, &block)?;
        Ok(Some(Header {
            path,
            offset: self.pos,
            size,
        }))
    }

    fn small_data(&mut self, h: &Header, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        if h.size > limit {
            return Err(ArchiveError::TooLarge {
                archive: self.path.clone(),
                path: h.path.clone(),
                size: h.size,
                limit,
            });
        }
        let mut buf = vec![0u8; (h.size + padding(h.size)) as usize];
        self.fill(&mut buf, &h.path)?;
        buf.truncate(h.size as usize);
        Ok(buf)
    }

    fn skip_rest(&mut self) -> Result<(), ArchiveError> {
        let mut n = self.left + self.pad;
        let mut buf = [0u8; 64 * 1024];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..k], "a member")?;
            n -= k as u64;
        }
        self.left = 0;
        self.pad = 0;
        Ok(())
    }

    /// After the end marker: only zero padding, then the end of the stream.
    fn check_trailing(&mut self) -> Result<(), ArchiveError> {
        let mut buf = [0u8; 64 * 1024];
        let mut seen = 0u64;
        loop {
            let n = match self.dec.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_error(e, "the padding after the end marker")),
            };
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(ArchiveError::Trailing {
                    archive: self.path.clone(),
                    offset: self.pos + i as u64,
                });
            }
            self.pos += n as u64;
            seen += n as u64;
            if seen > TRAILING_MAX {
                return Err(ArchiveError::Trailing {
                    archive: self.path.clone(),
                    offset: self.pos,
                });
            }
        }
    }
}

impl Read for Stream {
    /// Reads the current member's bytes; 0 at its end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.dec.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the zstd stream ends inside a member, after {} uncompressed bytes",
                    self.pos
                ),
            ));
        }
        self.left -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

fn placeholder() -> Bundle {
    Bundle {
        format: String::new(),
        format_version: 0,
        tool: crate::bundle::Tool {
            name: String::new(),
            version: String::new(),
        },
        name: String::new(),
        created: None,
        artifacts: Vec::new(),
        members: Vec::new(),
        volumes: None,
        delta: None,
    }
}

/// Reads a compressed archive in one pass: checks its structure, hashes
/// every member and keeps the small JSON ones in memory. Damage after
/// bundle.json is recorded in the returned archive's faults, with the
/// members before it.
pub fn scan(path: &Path) -> Result<Archive, ArchiveError> {
    scan_with(path, &crate::report::Silent)
}

/// [`scan`], reporting bytes read.
pub fn scan_with(path: &Path, reporter: &dyn Reporter) -> Result<Archive, ArchiveError> {
    let mut s = Stream::open(path)?;
    let mut entries = Vec::new();
    let mut digests = HashMap::new();
    let mut kept: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
    let mut kept_bytes = 0u64;
    let layout_path = OCI_LAYOUT_PATH.to_owned();
    digests.insert(layout_path.clone(), Digest::of(&s.layout));
    kept.insert(layout_path.clone(), Arc::new(s.layout.clone()));
    entries.push(Entry {
        path: layout_path,
        size: s.layout.len() as u64,
        spans: Vec::new(),
    });
    let total: u64 = s.bundle.members.iter().map(|m| m.size).sum();
    reporter.start("verifying", total);
    let mut faults = Vec::new();
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let i = match s.next_member() {
            Ok(Some(i)) => i,
            Ok(None) => break,
            Err(e) => {
                faults.push(e);
                break;
            }
        };
        let Some(m) = s.bundle.members.get(i).cloned() else {
            break;
        };
        let mut h = Hasher::new();
        let keep = m.size <= KEEP_MAX && kept_bytes + m.size <= KEPT_MAX_BYTES;
        let mut held = Vec::new();
        let mut failed = None;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    reporter.advance(n as u64);
                    if keep {
                        held.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(s.stream_error(e, &m.path));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            faults.push(e);
            break;
        }
        digests.insert(m.path.clone(), h.finish().0);
        if keep && held.first() == Some(&b'{') {
            kept_bytes += held.len() as u64;
            kept.insert(m.path.clone(), Arc::new(held));
        }
        entries.push(Entry {
            path: m.path,
            size: m.size,
            spans: Vec::new(),
        });
    }
    reporter.finish();
    Ok(s.into_archive(entries, faults, digests, kept))
}

/// Reads the head of a compressed archive: bundle.json and the JSON
/// members at its start (index.json, manifests, indexes, configs, which
/// ferry writes before anything else), each checked against its digest.
/// Every member bundle.json lists is entered as declared; the rest of the
/// stream is checked when it is read (by `load`'s upload pass).
pub fn scan_head(path: &Path) -> Result<Archive, ArchiveError> {
    let mut s = Stream::open(path)?;
    let mut kept: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
    kept.insert(OCI_LAYOUT_PATH.to_owned(), Arc::new(s.layout.clone()));
    let mut kept_bytes = 0u64;
    while let Some(i) = s.next_member()? {
        let Some(m) = s.bundle.members.get(i).cloned() else {
            break;
        };
        if m.size > KEEP_MAX || kept_bytes + m.size > KEPT_MAX_BYTES {
            break;
        }
        let mut first = [0u8; 1];
        if m.size > 0 {
            s.read_exact(&mut first)
                .map_err(|e| s.stream_error(e, &m.path))?;
            if first[0] != b'{' {
                break;
            }
        }
        let mut bytes = first[..m.size.min(1) as usize].to_vec();
        s.read_to_end(&mut bytes)
            .map_err(|e| s.stream_error(e, &m.path))?;
        let actual = Digest::of(&bytes);
        if actual != m.digest {
            return Err(ArchiveError::MemberDigest {
                archive: path.to_owned(),
                path: m.path,
                digest: m.digest,
                actual,
            });
        }
        kept_bytes += bytes.len() as u64;
        kept.insert(m.path, Arc::new(bytes));
    }
    let entries = s
        .bundle
        .members
        .iter()
        .map(|m| Entry {
            path: m.path.clone(),
            size: m.size,
            spans: Vec::new(),
        })
        .collect();
    Ok(s.into_archive(entries, Vec::new(), HashMap::new(), kept))
}
