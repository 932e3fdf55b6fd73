//! The ferry archive on disk: a plain POSIX (ustar) tar whose members form
//! an OCI image layout, in the order `oci-layout`, `bundle.json`,
//! `index.json`, small JSON blobs, large blobs.
//!
//! The writer produces byte-identical output for identical inputs (fixed
//! mtime, uid/gid 0, mode 0644, no directories, no extensions) and writes to
//! a temp file that is renamed to the final name only when complete.
//!
//! The reader trusts nothing. It parses each 512-byte header itself (with
//! the `tar` crate's field decoding), accepts only regular files whose path
//! and size are exactly what `bundle.json` declares at that position, and
//! requires the end-of-archive blocks, so truncation on a member boundary,
//! links, devices, duplicates, unlisted members and lying sizes are all
//! refused. It records each member's data offset so that verification,
//! unpacking and serving read members by offset without extraction.
//! Hashing members is left to the callers (`verify`, `unpack`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::bundle::{self, Bundle, BundleError, BUNDLE_MAX_BYTES, BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::digest::{Digest, HashingReader, COPY_BUF};
use crate::report::Reporter;
use crate::sign::{SIGNATURE_MAX_BYTES, SIGNATURE_PATH};

const BLOCK: u64 = 512;

/// Errors reading or writing an archive. Every variant names the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation failed (the error names the path).
    #[error("archive I/O failed")]
    Io(#[from] io::Error),
    /// Reading a blob's source while packing failed.
    #[error("reading {source_path} for member {member} failed")]
    SourceRead {
        /// The file the blob comes from.
        source_path: PathBuf,
        /// The member being written.
        member: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A blob's source did not hash to its digest while packing.
    #[error("{source_path} should hold {digest} ({size} bytes) but hashes to {actual} ({actual_size} bytes); no archive was written")]
    SourceMismatch {
        /// The file the blob comes from.
        source_path: PathBuf,
        /// Expected digest.
        digest: Digest,
        /// Expected size.
        size: u64,
        /// What it hashed to.
        actual: Digest,
        /// Its real size.
        actual_size: u64,
    },
    /// The archive does not start like a ferry archive.
    #[error("{archive} is not a ferry archive: {reason}")]
    NotFerry {
        /// The archive.
        archive: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// bundle.json failed validation.
    #[error("{archive}: invalid bundle.json")]
    Bundle {
        /// The archive.
        archive: PathBuf,
        /// Why.
        #[source]
        source: BundleError,
    },
    /// The file ends before the archive does.
    #[error("{archive} is truncated: {what} (the file ends at byte {file_len})")]
    Truncated {
        /// The archive.
        archive: PathBuf,
        /// Where the data stops.
        what: String,
        /// The file's length.
        file_len: u64,
    },
    /// A header block that is not a valid ustar header.
    #[error("{archive}: corrupt tar header at byte {offset}: {reason}")]
    BadHeader {
        /// The archive.
        archive: PathBuf,
        /// Byte offset of the header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A member that is not a regular file.
    #[error("{archive}: member {path:?} is a {kind}; ferry archives hold regular files only")]
    MemberType {
        /// The archive.
        archive: PathBuf,
        /// The member path.
        path: String,
        /// Its tar type.
        kind: String,
    },
    /// A member bundle.json does not list.
    #[error("{archive}: member {path:?} is not listed in bundle.json")]
    Unlisted {
        /// The archive.
        archive: PathBuf,
        /// The member path.
        path: String,
    },
    /// A member that appears a second time.
    #[error("{archive}: member {path} appears twice")]
    Duplicate {
        /// The archive.
        archive: PathBuf,
        /// The member path.
        path: String,
    },
    /// A member at the wrong position.
    #[error("{archive}: member {path} is out of order (bundle.json expects {expected} here)")]
    OutOfOrder {
        /// The archive.
        archive: PathBuf,
        /// The member found.
        path: String,
        /// The member expected.
        expected: String,
    },
    /// Listed members absent from a properly terminated archive.
    #[error("{archive}: {count} member(s) listed in bundle.json are missing, first {path}")]
    Missing {
        /// The archive.
        archive: PathBuf,
        /// The first missing member.
        path: String,
        /// How many are missing.
        count: usize,
    },
    /// A member whose header size differs from bundle.json.
    #[error("{archive}: member {path} is {actual} bytes but bundle.json declares {declared}")]
    Size {
        /// The archive.
        archive: PathBuf,
        /// The member path.
        path: String,
        /// Size in the tar header.
        actual: u64,
        /// Size in bundle.json.
        declared: u64,
    },
    /// Non-zero bytes after the end-of-archive marker.
    #[error("{archive}: unexpected data after the end-of-archive marker at byte {offset}")]
    Trailing {
        /// The archive.
        archive: PathBuf,
        /// Where the data starts.
        offset: u64,
    },
    /// A member too large to read into memory.
    #[error(
        "{archive}: member {path} is {size} bytes, more than the {limit}-byte limit for its kind"
    )]
    TooLarge {
        /// The archive.
        archive: PathBuf,
        /// The member path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

// ---------------------------------------------------------------------------
// Writing

/// Where the bytes of a member come from while packing.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// A byte range of a file (a layout blob, or a member of a tar).
    File {
        /// The file.
        path: PathBuf,
        /// Byte offset of the content.
        offset: u64,
    },
    /// Bytes in memory (documents ferry created, small files).
    Bytes(Arc<Vec<u8>>),
}

/// One member to write, after `oci-layout` and `bundle.json`.
#[derive(Debug, Clone)]
pub struct PlannedMember {
    /// Path inside the archive.
    pub path: String,
    /// Expected digest of the content.
    pub digest: Digest,
    /// Expected size.
    pub size: u64,
    /// Where the content is.
    pub source: BlobSource,
}

/// Writes the archive to `out` atomically: a temp file in the same
/// directory, renamed over `out` only after every member was copied and
/// checked against its digest. Returns the archive's size.
pub fn write(
    out: &Path,
    bundle_json: &[u8],
    signature: Option<&[u8]>,
    members: &[PlannedMember],
    mtime: u64,
    reporter: &dyn Reporter,
) -> Result<u64, ArchiveError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("archive");
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating a temp file in {}: {e}", dir.display()),
            )
        })?;
    let total: u64 = members.iter().map(|m| m.size).sum();
    reporter.start("writing archive", total);
    let write_err =
        |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", out.display()));
    let file = tmp.as_file();

    // Every member's place is known in advance (ustar headers have a fixed
    // size), so members are written in parallel at their offsets.
    let layout = crate::layout::OCI_LAYOUT;
    let mut pos = write_member_at(
        file,
        0,
        OCI_LAYOUT_PATH,
        layout.len() as u64,
        mtime,
        &mut &layout[..],
    )
    .map_err(|e| e.into_archive(out, OCI_LAYOUT_PATH))?;
    pos += write_member_at(
        file,
        pos,
        BUNDLE_PATH,
        bundle_json.len() as u64,
        mtime,
        &mut &bundle_json[..],
    )
    .map_err(|e| e.into_archive(out, BUNDLE_PATH))?;
    if let Some(sig) = signature {
        pos += write_member_at(
            file,
            pos,
            SIGNATURE_PATH,
            sig.len() as u64,
            mtime,
            &mut &sig[..],
        )
        .map_err(|e| e.into_archive(out, SIGNATURE_PATH))?;
    }
    let mut placed = Vec::with_capacity(members.len());
    for m in members.iter().filter(|m| m.path != OCI_LAYOUT_PATH) {
        placed.push((pos, m));
        pos += BLOCK + m.size + padding(m.size);
    }
    let end = pos + 2 * BLOCK;
    file.set_len(end).map_err(write_err)?;
    placed
        .par_iter()
        .with_max_len(1)
        .try_for_each(|&(offset, m)| write_planned(file, offset, m, mtime, out, reporter))?;
    // End of archive: two zero blocks.
    file.write_all_at(&[0u8; 2 * BLOCK as usize], pos)
        .map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    crate::layout::make_readable(file).map_err(write_err)?;
    tmp.persist(out).map_err(|e| {
        io::Error::new(
            e.error.kind(),
            format!("renaming into {}: {}", out.display(), e.error),
        )
    })?;
    reporter.finish();
    Ok(end)
}

/// Writes one planned member at `offset`, checking its digest.
fn write_planned(
    file: &File,
    offset: u64,
    m: &PlannedMember,
    mtime: u64,
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<(), ArchiveError> {
    let source_path = match &m.source {
        BlobSource::File { path, .. } => path.clone(),
        BlobSource::Bytes(_) => PathBuf::from("<memory>"),
    };
    let reader: Box<dyn Read + '_> = match &m.source {
        BlobSource::File { path, offset } => {
            let mut f = fs_err::File::open(path).map_err(|source| ArchiveError::SourceRead {
                source_path: path.clone(),
                member: m.path.clone(),
                source,
            })?;
            if *offset > 0 {
                f.seek(SeekFrom::Start(*offset))?;
            }
            Box::new(f.take(m.size))
        }
        BlobSource::Bytes(b) => Box::new(b.as_slice()),
    };
    let mut hr = HashingReader::new(Progress {
        inner: reader,
        reporter,
    });
    write_member_at(file, offset, &m.path, m.size, mtime, &mut hr).map_err(|e| match e {
        MemberWriteError::Read(source) => ArchiveError::SourceRead {
            source_path: source_path.clone(),
            member: m.path.clone(),
            source,
        },
        MemberWriteError::Write(e) => ArchiveError::Io(io::Error::new(
            e.kind(),
            format!("writing {}: {e}", out.display()),
        )),
    })?;
    // What was written is exactly `size` bytes; it must hash right.
    let (digest, size) = hr.finish();
    if digest != m.digest || size != m.size {
        return Err(ArchiveError::SourceMismatch {
            source_path,
            digest: m.digest,
            size: m.size,
            actual: digest,
            actual_size: size,
        });
    }
    crate::layout::start_writeback(file, offset, BLOCK + m.size);
    Ok(())
}

struct Progress<'a, R> {
    inner: R,
    reporter: &'a dyn Reporter,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.reporter.advance(n as u64);
        Ok(n)
    }
}

enum MemberWriteError {
    Read(io::Error),
    Write(io::Error),
}

impl MemberWriteError {
    fn into_archive(self, out: &Path, member: &str) -> ArchiveError {
        match self {
            MemberWriteError::Read(e) | MemberWriteError::Write(e) => {
                ArchiveError::Io(io::Error::new(
                    e.kind(),
                    format!("writing member {member} of {}: {e}", out.display()),
                ))
            }
        }
    }
}

/// Writes one header at `offset`, exactly `size` bytes of data (fewer is
/// an error) and the padding. Returns the bytes written.
fn write_member_at(
    file: &File,
    offset: u64,
    path: &str,
    size: u64,
    mtime: u64,
    data: &mut dyn Read,
) -> Result<u64, MemberWriteError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(MemberWriteError::Write)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    file.write_all_at(h.as_bytes(), offset)
        .map_err(MemberWriteError::Write)?;
    let mut at = offset + BLOCK;
    let mut buf = vec![0u8; COPY_BUF.min(size.max(1) as usize)];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        // Fill the buffer before writing: fewer, larger writes.
        let mut filled = 0;
        while filled < want {
            match data.read(&mut buf[filled..want]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(MemberWriteError::Read(e)),
            }
        }
        if filled == 0 {
            return Err(MemberWriteError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("ended {left} bytes before the declared size of {size}"),
            )));
        }
        file.write_all_at(&buf[..filled], at)
            .map_err(MemberWriteError::Write)?;
        at += filled as u64;
        left -= filled as u64;
    }
    let pad = padding(size);
    if pad > 0 {
        file.write_all_at(&[0u8; BLOCK as usize][..pad as usize], at)
            .map_err(MemberWriteError::Write)?;
    }
    Ok(BLOCK + size + pad)
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

// ---------------------------------------------------------------------------
// Reading

/// A member located in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub path: String,
    /// Byte offset of the data (after the header).
    pub offset: u64,
    /// Data size.
    pub size: u64,
}

/// An opened, structurally scanned archive.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: File,
    /// The parsed table of contents.
    pub bundle: Bundle,
    /// Its raw bytes.
    pub bundle_bytes: Vec<u8>,
    /// The minisign signature of bundle.json, when the archive is signed.
    pub signature: Option<Vec<u8>>,
    /// Members found, in archive order, excluding bundle.json. When `fault`
    /// is set, these are the members before the fault.
    pub entries: Vec<Entry>,
    /// The first structural problem, if the scan stopped early.
    pub fault: Option<ArchiveError>,
}

impl Archive {
    /// Opens and scans an archive, refusing it when it is damaged anywhere.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let mut a = Archive::open_lenient(path)?;
        match a.fault.take() {
            Some(f) => Err(f),
            None => Ok(a),
        }
    }

    /// Opens and scans an archive. Damage after bundle.json is recorded in
    /// `fault` (with the members before it in `entries`) so a verifier can
    /// still check what arrived; damage before it is an error.
    pub fn open_lenient(path: &Path) -> Result<Archive, ArchiveError> {
        let file = fs_err::File::open(path)?.into_parts().0;
        let file_len = file.metadata()?.len();
        let mut sc = Scanner {
            archive: path.to_owned(),
            file: &file,
            file_len,
            pos: 0,
        };
        let not_ferry = |reason: String| ArchiveError::NotFerry {
            archive: path.to_owned(),
            reason,
        };
        // oci-layout
        let first = match sc.next_header()? {
            Some(h) => h,
            None => return Err(not_ferry("it holds no members".into())),
        };
        if first.path != OCI_LAYOUT_PATH {
            return Err(not_ferry(format!(
                "its first member is {:?}, not oci-layout",
                first.path
            )));
        }
        sc.skip_data(&first)?;
        let layout_entry = first;
        // bundle.json
        let second = match sc.next_header()? {
            Some(h) => h,
            None => return Err(not_ferry("it has no bundle.json".into())),
        };
        if second.path != BUNDLE_PATH {
            return Err(not_ferry(format!(
                "its second member is {:?}, not bundle.json",
                second.path
            )));
        }
        if second.size > BUNDLE_MAX_BYTES {
            return Err(ArchiveError::TooLarge {
                archive: path.to_owned(),
                path: BUNDLE_PATH.into(),
                size: second.size,
                limit: BUNDLE_MAX_BYTES,
            });
        }
        let bundle_bytes = sc.read_data(&second)?;
        let bundle = Bundle::from_slice(&bundle_bytes).map_err(|source| ArchiveError::Bundle {
            archive: path.to_owned(),
            source,
        })?;
        // The signature, when signed, comes right after bundle.json.
        let before = sc.pos;
        let signature = match sc.next_header() {
            Ok(Some(h)) if h.path == SIGNATURE_PATH && h.size <= SIGNATURE_MAX_BYTES => {
                Some(sc.read_data(&h)?)
            }
            _ => {
                sc.pos = before;
                None
            }
        };

        let mut a = Archive {
            path: path.to_owned(),
            file: sc.file.try_clone()?,
            bundle,
            bundle_bytes,
            signature,
            entries: Vec::new(),
            fault: None,
        };
        a.fault = a.scan_rest(&mut sc, layout_entry).err();
        Ok(a)
    }

    fn scan_rest(&mut self, sc: &mut Scanner<'_>, layout_entry: Entry) -> Result<(), ArchiveError> {
        let archive = self.path.clone();
        let members = self.bundle.members.clone();
        let position: std::collections::HashMap<&str, usize> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.path.as_str(), i))
            .collect();
        let mut expected = members.iter().enumerate();
        let mut seen = std::collections::HashSet::new();
        let mut pending = Some(layout_entry);
        loop {
            let already_skipped = pending.is_some();
            let entry = match pending.take() {
                Some(e) => Some(e),
                None => sc.next_header()?,
            };
            let Some(entry) = entry else {
                // Proper end of archive: everything listed must have come.
                let rest: Vec<_> = expected.collect();
                if let Some((_, first)) = rest.first() {
                    return Err(ArchiveError::Missing {
                        archive,
                        path: first.path.clone(),
                        count: rest.len(),
                    });
                }
                return sc.check_trailing();
            };
            let Some((_, want)) = expected.next() else {
                return Err(if seen.contains(&entry.path) || entry.path == BUNDLE_PATH {
                    ArchiveError::Duplicate {
                        archive,
                        path: entry.path,
                    }
                } else {
                    ArchiveError::Unlisted {
                        archive,
                        path: entry.path,
                    }
                });
            };
            if entry.path != want.path {
                return Err(if seen.contains(&entry.path) || entry.path == BUNDLE_PATH {
                    ArchiveError::Duplicate {
                        archive,
                        path: entry.path,
                    }
                } else if position.contains_key(entry.path.as_str()) {
                    ArchiveError::OutOfOrder {
                        archive,
                        path: entry.path,
                        expected: want.path.clone(),
                    }
                } else {
                    ArchiveError::Unlisted {
                        archive,
                        path: entry.path,
                    }
                });
            }
            if entry.size != want.size {
                return Err(ArchiveError::Size {
                    archive,
                    path: entry.path,
                    actual: entry.size,
                    declared: want.size,
                });
            }
            if !already_skipped {
                sc.skip_data(&entry)?;
            }
            seen.insert(entry.path.clone());
            self.entries.push(entry);
        }
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry for a member path.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Where each blob listed in bundle.json lies: digest → (offset, size).
    pub fn blob_locations(&self) -> HashMap<Digest, (u64, u64)> {
        let declared: HashMap<&str, Digest> = self
            .bundle
            .members
            .iter()
            .map(|m| (m.path.as_str(), m.digest))
            .collect();
        self.entries
            .iter()
            .filter(|e| e.path.starts_with("blobs/"))
            .filter_map(|e| Some((*declared.get(e.path.as_str())?, (e.offset, e.size))))
            .collect()
    }

    /// Reads a whole member into memory, refusing members above `limit`.
    pub fn read_member(&self, entry: &Entry, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        if entry.size > limit {
            return Err(ArchiveError::TooLarge {
                archive: self.path.clone(),
                path: entry.path.clone(),
                size: entry.size,
                limit,
            });
        }
        let mut buf = vec![0u8; entry.size as usize];
        self.file
            .read_exact_at(&mut buf, entry.offset)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("reading {} from {}: {e}", entry.path, self.path.display()),
                )
            })?;
        Ok(buf)
    }

    /// A reader over one member's bytes (positioned reads; many can be
    /// used at once from different threads).
    pub fn member_reader(&self, entry: &Entry) -> MemberReader<'_> {
        MemberReader {
            file: &self.file,
            pos: entry.offset,
            end: entry.offset + entry.size,
        }
    }
}

/// Positioned reader over a byte range of the archive file.
pub struct MemberReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(left as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ended inside a member",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

struct Scanner<'a> {
    archive: PathBuf,
    file: &'a File,
    file_len: u64,
    pos: u64,
}

impl Scanner<'_> {
    fn truncated(&self, what: String) -> ArchiveError {
        ArchiveError::Truncated {
            archive: self.archive.clone(),
            what,
            file_len: self.file_len,
        }
    }

    /// The next member header, or `None` at a valid end-of-archive marker.
    fn next_header(&mut self) -> Result<Option<Entry>, ArchiveError> {
        if self.pos >= self.file_len {
            return Err(self.truncated(format!(
                "no end-of-archive marker after byte {} (the archive was cut on a member boundary)",
                self.pos
            )));
        }
        if self.pos + BLOCK > self.file_len {
            return Err(self.truncated(format!("a tar header at byte {} is incomplete", self.pos)));
        }
        let mut block = [0u8; BLOCK as usize];
        self.file.read_exact_at(&mut block, self.pos)?;
        let at = self.pos;
        if block.iter().all(|&b| b == 0) {
            // End marker: a second zero block must follow.
            if self.pos + 2 * BLOCK > self.file_len {
                return Err(self.truncated(format!(
                    "the end-of-archive marker at byte {at} is incomplete"
                )));
            }
            self.file.read_exact_at(&mut block, self.pos + BLOCK)?;
            if block.iter().any(|&b| b != 0) {
                return Err(self.bad(at, "a zero block followed by data".into()));
            }
            self.pos += 2 * BLOCK;
            return Ok(None);
        }
        let h = tar::Header::from_byte_slice(&block);
        let stored = h
            .cksum()
            .map_err(|_| self.bad(at, "the checksum field is not octal".into()))?;
        let computed: u32 = block[..148]
            .iter()
            .chain(&block[156..])
            .map(|&b| b as u32)
            .sum::<u32>()
            + 8 * 32;
        if stored != computed {
            return Err(self.bad(
                at,
                format!("checksum {stored} does not match the header's bytes ({computed})"),
            ));
        }
        if h.as_ustar().is_none() {
            return Err(self.bad(at, "not a POSIX ustar header".into()));
        }
        let path = String::from_utf8(h.path_bytes().into_owned())
            .map_err(|_| self.bad(at, "the member name is not UTF-8".into()))?;
        let kind = h.entry_type();
        if !kind.is_file() {
            let kind = match kind {
                tar::EntryType::Symlink => "symbolic link".to_owned(),
                tar::EntryType::Link => "hard link".to_owned(),
                tar::EntryType::Char => "character device".to_owned(),
                tar::EntryType::Block => "block device".to_owned(),
                tar::EntryType::Fifo => "FIFO".to_owned(),
                tar::EntryType::Directory => "directory".to_owned(),
                tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {
                    "PAX extended header".to_owned()
                }
                tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {
                    "GNU long-name header".to_owned()
                }
                other => format!("tar entry of type {:?}", other.as_byte() as char),
            };
            return Err(ArchiveError::MemberType {
                archive: self.archive.clone(),
                path,
                kind,
            });
        }
        let size = h
            .entry_size()
            .map_err(|_| self.bad(at, format!("the size field of {path:?} is not a number")))?;
        self.pos += BLOCK;
        Ok(Some(Entry {
            path,
            offset: self.pos,
            size,
        }))
    }

    fn bad(&self, offset: u64, reason: String) -> ArchiveError {
        ArchiveError::BadHeader {
            archive: self.archive.clone(),
            offset,
            reason,
        }
    }

    fn skip_data(&mut self, e: &Entry) -> Result<(), ArchiveError> {
        let end = e.offset + e.size;
        if end > self.file_len {
            return Err(self.truncated(format!(
                "member {} needs {} bytes but only {} are present",
                e.path,
                e.size,
                self.file_len.saturating_sub(e.offset)
            )));
        }
        self.pos = end + padding(e.size);
        Ok(())
    }

    fn read_data(&mut self, e: &Entry) -> Result<Vec<u8>, ArchiveError> {
        let end = e.offset + e.size;
        if end > self.file_len {
            return Err(self.truncated(format!(
                "member {} needs {} bytes but only {} are present",
                e.path,
                e.size,
                self.file_len.saturating_sub(e.offset)
            )));
        }
        let mut buf = vec![0u8; e.size as usize];
        self.file.read_exact_at(&mut buf, e.offset)?;
        self.pos = end + padding(e.size);
        Ok(buf)
    }

    /// After the end marker only zero padding (tar's record blocking) may follow.
    fn check_trailing(&mut self) -> Result<(), ArchiveError> {
        let mut buf = vec![0u8; COPY_BUF];
        let mut pos = self.pos;
        while pos < self.file_len {
            let n = ((self.file_len - pos) as usize).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], pos)?;
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(ArchiveError::Trailing {
                    archive: self.archive.clone(),
                    offset: pos + i as u64,
                });
            }
            pos += n as u64;
        }
        Ok(())
    }
}

/// The mtime written into headers: `SOURCE_DATE_EPOCH` when set and valid,
/// else 0.
pub fn mtime_from_env() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Re-exported so callers need not import `bundle` for member paths.
pub use bundle::INDEX_PATH;
