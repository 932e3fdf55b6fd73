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

use crate::bundle::{
    self, Bundle, BundleError, Member, Piece, VolumeInfo, BUNDLE_MAX_BYTES, BUNDLE_PATH,
    OCI_LAYOUT_PATH,
};
use crate::digest::{Digest, HashingReader, COPY_BUF};
use crate::report::Reporter;
use crate::sign::{SIGNATURE_MAX_BYTES, SIGNATURE_PATH};

pub(crate) const BLOCK: u64 = 512;

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
    /// The volume size cannot hold what must fit in one volume.
    #[error("a volume size of {max_size} bytes is too small: {what} needs {need} bytes")]
    VolumeTooSmall {
        /// The volume size asked for.
        max_size: u64,
        /// What is needed.
        need: u64,
        /// What needs it.
        what: String,
    },
    /// A volume of a split archive cannot be opened.
    #[error("volume {volume} of {volumes} ({path}) cannot be read")]
    VolumeMissing {
        /// Its number, from 1.
        volume: usize,
        /// How many volumes the set has.
        volumes: usize,
        /// Where it was looked for.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file in a volume's place that is not that volume.
    #[error("{path} should be volume {volume} of {volumes}, but {reason}")]
    VolumeMismatch {
        /// The file.
        path: PathBuf,
        /// The volume expected there.
        volume: usize,
        /// How many volumes the set has.
        volumes: usize,
        /// What it is instead.
        reason: String,
    },
    /// A later volume given where the first is needed.
    #[error(
        "{path} is volume {volume} of {volumes} of a split archive; pass the first volume{hint}"
    )]
    NotFirstVolume {
        /// The file given.
        path: PathBuf,
        /// Its number.
        volume: usize,
        /// How many volumes the set has.
        volumes: usize,
        /// ` (NAME.001)` when the name shows it.
        hint: String,
    },
    /// A first volume whose name does not lead to the others.
    #[error("{path} is volume 1 of {volumes}, but its name does not end in .001, so the other volumes cannot be found; restore the names OUT.001 … OUT.{volumes:03}")]
    VolumeName {
        /// The file given.
        path: PathBuf,
        /// How many volumes the set has.
        volumes: usize,
    },
    /// Damage inside one volume of a split archive.
    #[error("volume {volume} of {volumes}")]
    InVolume {
        /// Its number, from 1.
        volume: usize,
        /// How many volumes the set has.
        volumes: usize,
        /// The damage.
        #[source]
        source: Box<ArchiveError>,
    },
    /// A member whose bytes do not match bundle.json.
    #[error("{archive}: member {path} does not match its digest {digest} (it hashes to {actual}); run ferry verify")]
    MemberDigest {
        /// The archive.
        archive: PathBuf,
        /// The member.
        path: String,
        /// The digest bundle.json declares.
        digest: Digest,
        /// What it hashes to.
        actual: Digest,
    },
    /// A compressed archive whose zstd stream cannot be decoded.
    #[error("{archive}: the zstd stream is damaged after {offset} uncompressed bytes")]
    Decompress {
        /// The archive.
        archive: PathBuf,
        /// Uncompressed bytes read before the damage.
        offset: u64,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// A command that needs random access was given a compressed archive.
    #[error("{archive} is compressed (zstd), and {what} needs random access; decompress it first: zstd -d {archive} -o ARCHIVE.tar")]
    NeedsRandomAccess {
        /// The archive.
        archive: PathBuf,
        /// The command.
        what: String,
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

/// Member name of the small header that opens every volume after the first.
pub const VOLUME_HEADER_PATH: &str = "ferry-volume.json";
/// The largest `ferry-volume.json` ferry reads.
const VOLUME_HEADER_MAX: u64 = 4096;
/// Bytes a later volume spends on its header member.
const VOLUME_HEADER_BYTES: u64 = 2 * BLOCK;
/// The smallest part a split member is cut into; less room than this in a
/// volume starts the next volume instead.
const MIN_PART: u64 = 64 * 1024;
/// The smallest volume size accepted.
pub const MIN_VOLUME_SIZE: u64 = 1 << 20;

/// `ferry-volume.json`: says which bundle and which volume a file is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeHeader {
    /// Always `ferry-volume`.
    pub format: String,
    /// The bundle's volume-set id (bundle.json `volumes.id`).
    pub id: Digest,
    /// This volume's number, from 1.
    pub volume: usize,
    /// How many volumes the set has.
    pub volumes: usize,
}

impl VolumeHeader {
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// The file name of volume `n` (from 1) of the archive `out`: `OUT.001`.
pub fn volume_path(out: &Path, n: usize) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(format!(".{n:03}"));
    PathBuf::from(s)
}

/// The coreutils-format checksum file written beside a split archive.
pub fn sidecar_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Bytes a member takes in a tar: header, data, padding.
fn tar_bytes(size: u64) -> u64 {
    BLOCK + size + padding(size)
}

/// Cuts `members` into volumes of at most `max_size` bytes each. `head`
/// is what volume 1 spends on bundle.json and the signature. Members are
/// never split unless larger than a whole volume; such a member fills the
/// rest of the volume it starts in and continues in the next.
pub fn plan_volumes(
    members: &[Member],
    max_size: u64,
    head: u64,
) -> Result<Vec<VolumeInfo>, ArchiveError> {
    let too_small = |need: u64, what: String| ArchiveError::VolumeTooSmall {
        max_size,
        need,
        what,
    };
    if max_size < MIN_VOLUME_SIZE {
        return Err(too_small(
            MIN_VOLUME_SIZE,
            "the smallest volume ferry writes".into(),
        ));
    }
    let end = 2 * BLOCK;
    let mut volumes = vec![VolumeInfo { pieces: Vec::new() }];
    let mut used = head;
    if used + end > max_size {
        return Err(too_small(
            used + end,
            "bundle.json and the signature".into(),
        ));
    }
    let empty = VOLUME_HEADER_BYTES;
    for m in members {
        let need = tar_bytes(m.size);
        let whole = Piece {
            member: m.path.clone(),
            offset: 0,
            size: m.size,
            part: None,
        };
        if used + need + end <= max_size {
            used += need;
        } else if empty + need + end <= max_size {
            volumes.push(VolumeInfo { pieces: Vec::new() });
            used = empty + need;
        } else {
            // Larger than a volume: fill this one, then whole volumes.
            let mut at = 0;
            let mut part = 1;
            while at < m.size {
                let room = max_size.saturating_sub(used + BLOCK + end) / BLOCK * BLOCK;
                if room < MIN_PART.min(m.size - at) {
                    volumes.push(VolumeInfo { pieces: Vec::new() });
                    used = empty;
                    continue;
                }
                let len = room.min(m.size - at);
                if let Some(v) = volumes.last_mut() {
                    v.pieces.push(Piece {
                        member: m.path.clone(),
                        offset: at,
                        size: len,
                        part: Some(part),
                    });
                }
                used += tar_bytes(len);
                at += len;
                part += 1;
            }
            continue;
        }
        if let Some(v) = volumes.last_mut() {
            v.pieces.push(whole);
        }
    }
    Ok(volumes)
}

/// One place a member's bytes go: a tar member in a volume.
struct Dest {
    volume: usize,
    offset: u64,
    tar_path: String,
    len: u64,
}

/// What [`write()`] produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// The files written with their sizes: the archive, or its volumes.
    pub files: Vec<(PathBuf, u64)>,
    /// The checksum file, for a split archive.
    pub sidecar: Option<PathBuf>,
}

impl Written {
    /// Total bytes written.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|(_, s)| s).sum()
    }
}

/// Writes the archive to `out` atomically: temp files in the same
/// directory, renamed to their final names only after every member was
/// copied and checked against its digest. When `bundle` has a volume plan
/// the archive is written as volumes `OUT.001`, … and a sidecar
/// `OUT.sha256`, which is written last.
pub fn write(
    out: &Path,
    bundle: &Bundle,
    bundle_json: &[u8],
    signature: Option<&[u8]>,
    members: &[PlannedMember],
    mtime: u64,
    reporter: &dyn Reporter,
) -> Result<Written, ArchiveError> {
    let write_err =
        |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", out.display()));
    let whole: Vec<VolumeInfo>;
    let (plan, split) = match &bundle.volumes {
        Some(p) => (&p.volumes, Some(p.id)),
        None => {
            whole = vec![VolumeInfo {
                pieces: members
                    .iter()
                    .map(|m| Piece {
                        member: m.path.clone(),
                        offset: 0,
                        size: m.size,
                        part: None,
                    })
                    .collect(),
            }];
            (&whole, None)
        }
    };
    let finals: Vec<PathBuf> = match split {
        Some(_) => (1..=plan.len()).map(|n| volume_path(out, n)).collect(),
        None => vec![out.to_owned()],
    };

    // Lay out every volume: fixed members first, then the pieces.
    let mut fixed: Vec<(usize, u64, String, Vec<u8>)> = Vec::new();
    let mut dests: HashMap<&str, Vec<Dest>> = HashMap::new();
    let mut ends = Vec::with_capacity(plan.len());
    for (v, vol) in plan.iter().enumerate() {
        let mut pos = 0;
        let mut push_fixed = |pos: &mut u64, path: &str, bytes: Vec<u8>| {
            let len = bytes.len() as u64;
            fixed.push((v, *pos, path.to_owned(), bytes));
            *pos += tar_bytes(len);
        };
        if let (Some(id), true) = (split, v > 0) {
            let header = VolumeHeader {
                format: "ferry-volume".into(),
                id,
                volume: v + 1,
                volumes: plan.len(),
            };
            push_fixed(&mut pos, VOLUME_HEADER_PATH, header.to_bytes());
        }
        for (i, p) in vol.pieces.iter().enumerate() {
            dests.entry(p.member.as_str()).or_default().push(Dest {
                volume: v,
                offset: pos,
                tar_path: p.tar_path(),
                len: p.size,
            });
            pos += tar_bytes(p.size);
            // bundle.json and the signature follow oci-layout.
            if v == 0 && i == 0 {
                if p.member != OCI_LAYOUT_PATH {
                    return Err(ArchiveError::NotFerry {
                        archive: out.to_owned(),
                        reason: format!("the plan starts with {}, not oci-layout", p.member),
                    });
                }
                push_fixed(&mut pos, BUNDLE_PATH, bundle_json.to_vec());
                if let Some(sig) = signature {
                    push_fixed(&mut pos, SIGNATURE_PATH, sig.to_vec());
                }
            }
        }
        ends.push(pos);
    }

    let mut tmps = Vec::with_capacity(finals.len());
    let mut registered = Vec::with_capacity(finals.len());
    for f in &finals {
        let tmp = partial_file(f)?;
        registered.push(crate::interrupt::register(tmp.path()));
        tmps.push(tmp);
    }
    let files: Vec<&File> = tmps.iter().map(|t| t.as_file()).collect();
    for (f, &end) in files.iter().zip(&ends) {
        f.set_len(end + 2 * BLOCK).map_err(write_err)?;
    }
    for (v, offset, path, bytes) in &fixed {
        write_member_at(
            files[*v],
            *offset,
            path,
            bytes.len() as u64,
            mtime,
            &mut &bytes[..],
        )
        .map_err(|e| e.into_archive(out, path))?;
    }
    let total: u64 = members.iter().map(|m| m.size).sum();
    reporter.start("writing archive", total);
    members.par_iter().with_max_len(1).try_for_each(|m| {
        let d = dests.get(m.path.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        write_planned(&files, d, m, mtime, out, reporter)
    })?;
    for (f, &end) in files.iter().zip(&ends) {
        // End of archive: two zero blocks.
        f.write_all_at(&[0u8; 2 * BLOCK as usize], end)
            .map_err(write_err)?;
        f.sync_all().map_err(write_err)?;
        crate::layout::make_readable(f).map_err(write_err)?;
    }
    reporter.finish();

    let sizes: Vec<u64> = ends.iter().map(|e| e + 2 * BLOCK).collect();
    let sidecar = match split {
        None => None,
        Some(_) => {
            // Hash what is on disk, for `sha256sum -c`.
            let sums = tmps
                .par_iter()
                .map(|t| crate::digest::hash_reader(io::BufReader::new(t.as_file())))
                .collect::<io::Result<Vec<_>>>()
                .map_err(write_err)?;
            let mut text = String::new();
            for ((d, _), f) in sums.iter().zip(&finals) {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                text.push_str(&format!("{}  {name}\n", d.hex()));
            }
            Some(text)
        }
    };
    // A stale sidecar must not vouch for a half-renamed set.
    let sidecar_file = sidecar_path(out);
    if sidecar.is_some() {
        match fs_err::remove_file(&sidecar_file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    drop(registered);
    let mut persisted: Vec<&PathBuf> = Vec::new();
    for (tmp, f) in tmps.into_iter().zip(&finals) {
        if let Err(e) = tmp.persist(f) {
            for p in persisted {
                let _ = std::fs::remove_file(p);
            }
            return Err(io::Error::new(
                e.error.kind(),
                format!("renaming into {}: {}", f.display(), e.error),
            )
            .into());
        }
        persisted.push(f);
    }
    let sidecar = match sidecar {
        Some(text) => {
            crate::layout::write_atomic(&sidecar_file, text.as_bytes())?;
            Some(sidecar_file)
        }
        None => None,
    };
    Ok(Written {
        files: finals.into_iter().zip(sizes).collect(),
        sidecar,
    })
}

/// A reader over a planned member's source bytes, and the source's name
/// for messages.
pub(crate) fn open_source(
    m: &PlannedMember,
) -> Result<(Box<dyn Read + '_>, PathBuf), ArchiveError> {
    match &m.source {
        BlobSource::File { path, offset } => {
            let mut f = fs_err::File::open(path).map_err(|source| ArchiveError::SourceRead {
                source_path: path.clone(),
                member: m.path.clone(),
                source,
            })?;
            if *offset > 0 {
                f.seek(SeekFrom::Start(*offset))?;
            }
            Ok((Box::new(f.take(m.size)), path.clone()))
        }
        BlobSource::Bytes(b) => Ok((Box::new(b.as_slice()), PathBuf::from("<memory>"))),
    }
}

/// Copies one planned member to its places, checking its digest.
fn write_planned(
    files: &[&File],
    dests: &[Dest],
    m: &PlannedMember,
    mtime: u64,
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<(), ArchiveError> {
    let (reader, source_path) = open_source(m)?;
    let mut hr = HashingReader::new(Progress {
        inner: reader,
        reporter,
    });
    for d in dests {
        let file = files[d.volume];
        write_member_at(file, d.offset, &d.tar_path, d.len, mtime, &mut hr).map_err(
            |e| match e {
                MemberWriteError::Read(source) => ArchiveError::SourceRead {
                    source_path: source_path.clone(),
                    member: m.path.clone(),
                    source,
                },
                MemberWriteError::Write(e) => ArchiveError::Io(io::Error::new(
                    e.kind(),
                    format!("writing {}: {e}", out.display()),
                )),
            },
        )?;
        crate::layout::start_writeback(file, d.offset, BLOCK + d.len);
    }
    // What was written is exactly `size` bytes; it must hash right.
    check_source(m, source_path, hr)
}

/// Checks that what was copied from a member's source hashed to the
/// member's digest and size.
pub(crate) fn check_source<R: Read>(
    m: &PlannedMember,
    source_path: PathBuf,
    copied: HashingReader<R>,
) -> Result<(), ArchiveError> {
    let (digest, size) = copied.finish();
    if digest != m.digest || size != m.size {
        return Err(ArchiveError::SourceMismatch {
            source_path,
            digest: m.digest,
            size: m.size,
            actual: digest,
            actual_size: size,
        });
    }
    Ok(())
}

/// A temp file `.NAME.<random>.partial` beside `out`, for writing `out`.
pub(crate) fn partial_file(out: &Path) -> Result<tempfile::NamedTempFile, ArchiveError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("archive");
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| {
            ArchiveError::Io(io::Error::new(
                e.kind(),
                format!("creating a temp file in {}: {e}", dir.display()),
            ))
        })
}

pub(crate) struct Progress<'a, R> {
    pub(crate) inner: R,
    pub(crate) reporter: &'a dyn Reporter,
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
    let h = ustar_header(path, size, mtime).map_err(MemberWriteError::Write)?;
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

/// The one header shape ferry writes: ustar, regular file, mode 0644,
/// uid/gid 0, the given mtime.
pub(crate) fn ustar_header(path: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

// ---------------------------------------------------------------------------
// Reading

/// A stretch of a member's bytes in one file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The volume holding it, from 0 (an unsplit archive has only 0).
    pub volume: usize,
    /// Byte offset of the data in that file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// A member located in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub path: String,
    /// Data size.
    pub size: u64,
    /// Where the bytes are, in order: one span, or one per part when a
    /// member larger than a volume was split.
    pub spans: Vec<Span>,
}

impl Entry {
    /// The volumes (numbered from 1) holding the member.
    pub fn volumes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.spans.iter().map(|s| s.volume + 1).collect();
        v.dedup();
        v
    }
}

/// An opened, structurally scanned archive: one file, or the volumes of
/// a split one.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    files: Vec<(PathBuf, Option<File>)>,
    /// The parsed table of contents.
    pub bundle: Bundle,
    /// Its raw bytes.
    pub bundle_bytes: Vec<u8>,
    /// The minisign signature of bundle.json, when the archive is signed.
    pub signature: Option<Vec<u8>>,
    /// Members that arrived whole, in archive order, excluding
    /// bundle.json. Members after a fault are missing from it.
    pub entries: Vec<Entry>,
    /// Structural problems, at most one per volume; scanning a volume
    /// stops at its first.
    pub faults: Vec<ArchiveError>,
    /// For a compressed archive, read in one pass: the members' digests as
    /// computed while streaming.
    pub(crate) digests: HashMap<String, Digest>,
    /// For a compressed archive: the small JSON members (documents,
    /// configs, index.json), kept in memory.
    pub(crate) kept: HashMap<String, Arc<Vec<u8>>>,
    /// Whether the archive is one zstd stream (no random access).
    pub(crate) compressed: bool,
}

impl Archive {
    /// Opens and scans an archive, refusing it when it is damaged anywhere.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let mut a = Archive::open_lenient(path)?;
        if a.faults.is_empty() {
            Ok(a)
        } else {
            Err(a.faults.swap_remove(0))
        }
    }

    /// [`Archive::open`] for commands that read members out of order:
    /// a compressed archive is refused before it is read, naming `what`.
    pub fn open_random(path: &Path, what: &str) -> Result<Archive, ArchiveError> {
        if crate::compressed::is_compressed(path)? {
            return Err(ArchiveError::NeedsRandomAccess {
                archive: path.to_owned(),
                what: what.to_owned(),
            });
        }
        Archive::open(path)
    }

    /// Opens and scans an archive. `path` is the archive, or the first
    /// volume of a split one (`OUT.001`, or `OUT` when only the volumes
    /// exist). Damage after bundle.json is recorded in `faults` (with the
    /// members that still arrived whole in `entries`) so a verifier can
    /// check what arrived; damage before it is an error.
    pub fn open_lenient(path: &Path) -> Result<Archive, ArchiveError> {
        if crate::compressed::is_compressed(path)? {
            return crate::compressed::scan(path);
        }
        let path = if !path.exists() && volume_path(path, 1).exists() {
            volume_path(path, 1)
        } else {
            path.to_owned()
        };
        let path = path.as_path();
        let file = fs_err::File::open(path)?.into_parts().0;
        let mut sc = Scanner::new(path, &file)?;
        let not_ferry = |reason: String| ArchiveError::NotFerry {
            archive: path.to_owned(),
            reason,
        };
        // oci-layout
        let first = match sc.next_header()? {
            Some(h) => h,
            None => return Err(not_ferry("it holds no members".into())),
        };
        if first.path == VOLUME_HEADER_PATH {
            let header = sc.volume_header(&first)?;
            let hint = path
                .to_str()
                .and_then(|s| s.get(..s.len().checked_sub(4)?))
                .filter(|_| path.extension().is_some_and(|e| e.len() == 3))
                .map(|base| format!(" ({base}.001)"))
                .unwrap_or_default();
            return Err(ArchiveError::NotFirstVolume {
                path: path.to_owned(),
                volume: header.volume,
                volumes: header.volumes,
                hint,
            });
        }
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

        // What each volume must hold, as (tar path, size).
        let plan: Vec<Vec<(String, u64)>> = match &bundle.volumes {
            Some(p) => p
                .volumes
                .iter()
                .map(|v| v.pieces.iter().map(|p| (p.tar_path(), p.size)).collect())
                .collect(),
            None => vec![bundle
                .members
                .iter()
                .map(|m| (m.path.clone(), m.size))
                .collect()],
        };
        let volumes = plan.len();
        let mut paths = vec![path.to_owned()];
        if let Some(p) = &bundle.volumes {
            let base = path
                .to_str()
                .and_then(|s| s.strip_suffix(".001"))
                .ok_or_else(|| ArchiveError::VolumeName {
                    path: path.to_owned(),
                    volumes,
                })?;
            paths.extend((2..=p.volumes.len()).map(|n| volume_path(Path::new(base), n)));
        }
        let known: std::collections::HashSet<&str> =
            plan.iter().flatten().map(|(p, _)| p.as_str()).collect();
        let split = bundle.volumes.as_ref().map(|p| p.id);
        let in_volume = |v: usize, e: ArchiveError| match split {
            Some(_) => ArchiveError::InVolume {
                volume: v + 1,
                volumes,
                source: Box::new(e),
            },
            None => e,
        };

        let mut found: HashMap<String, Span> = HashMap::new();
        let mut faults = Vec::new();
        if let Err(e) = sc.scan_volume(0, &plan[0], &known, Some(layout_entry), &mut found) {
            faults.push(in_volume(0, e));
        }
        let mut files = vec![(path.to_owned(), Some(file))];
        for (v, vpath) in paths.iter().enumerate().skip(1) {
            let f = match File::open(vpath) {
                Ok(f) => f,
                Err(source) => {
                    faults.push(ArchiveError::VolumeMissing {
                        volume: v + 1,
                        volumes,
                        path: vpath.clone(),
                        source,
                    });
                    files.push((vpath.clone(), None));
                    continue;
                }
            };
            let scanned = (|| {
                let mut sc = Scanner::new(vpath, &f)?;
                let mismatch = |reason: String| ArchiveError::VolumeMismatch {
                    path: vpath.clone(),
                    volume: v + 1,
                    volumes,
                    reason,
                };
                let header = match sc.next_header()? {
                    Some(h) if h.path == VOLUME_HEADER_PATH => sc.volume_header(&h)?,
                    Some(h) if h.path == OCI_LAYOUT_PATH => {
                        return Err(mismatch("it is the first volume of a bundle".into()))
                    }
                    _ => {
                        return Err(mismatch(format!(
                            "it does not start with {VOLUME_HEADER_PATH}"
                        )))
                    }
                };
                if Some(header.id) != split {
                    return Err(mismatch(format!(
                        "it belongs to another bundle (volume set {}, this bundle's is {})",
                        header.id,
                        split.map(|d| d.to_string()).unwrap_or_default()
                    )));
                }
                if header.volume != v + 1 || header.volumes != volumes {
                    return Err(mismatch(format!(
                        "it is volume {} of {} of this bundle (a second copy, or renamed)",
                        header.volume, header.volumes
                    )));
                }
                sc.scan_volume(v, &plan[v], &known, None, &mut found)
            })();
            if let Err(e) = scanned {
                faults.push(match e {
                    e @ ArchiveError::VolumeMismatch { .. } => e,
                    e => in_volume(v, e),
                });
            }
            files.push((vpath.clone(), Some(f)));
        }

        // Members whose every piece arrived.
        let mut entries = Vec::with_capacity(bundle.members.len());
        let pieces: HashMap<&str, Vec<&Piece>> = match &bundle.volumes {
            Some(p) => {
                let mut m: HashMap<&str, Vec<&Piece>> = HashMap::new();
                for piece in p.volumes.iter().flat_map(|v| &v.pieces) {
                    m.entry(piece.member.as_str()).or_default().push(piece);
                }
                m
            }
            None => HashMap::new(),
        };
        for m in &bundle.members {
            let spans: Option<Vec<Span>> = match pieces.get(m.path.as_str()) {
                Some(ps) => ps
                    .iter()
                    .map(|p| found.get(&p.tar_path()).cloned())
                    .collect(),
                None => found.get(&m.path).cloned().map(|s| vec![s]),
            };
            if let Some(spans) = spans {
                entries.push(Entry {
                    path: m.path.clone(),
                    size: m.size,
                    spans,
                });
            }
        }
        Ok(Archive {
            path: path.to_owned(),
            files,
            bundle,
            bundle_bytes,
            signature,
            entries,
            faults,
            digests: HashMap::new(),
            kept: HashMap::new(),
            compressed: false,
        })
    }

    /// The archive's path (the first volume's, when split).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Builds the view of a compressed archive read in one pass.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_stream(
        path: &Path,
        bundle: Bundle,
        bundle_bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
        entries: Vec<Entry>,
        faults: Vec<ArchiveError>,
        digests: HashMap<String, Digest>,
        kept: HashMap<String, Arc<Vec<u8>>>,
    ) -> Archive {
        Archive {
            path: path.to_owned(),
            files: vec![(path.to_owned(), None)],
            bundle,
            bundle_bytes,
            signature,
            entries,
            faults,
            digests,
            kept,
            compressed: true,
        }
    }

    /// Whether the archive is compressed (one zstd stream, read in order).
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// The member's digest when it was computed while scanning (compressed
    /// archives).
    pub fn scanned_digest(&self, entry: &Entry) -> Option<Digest> {
        self.digests.get(&entry.path).copied()
    }

    /// The files of the archive: one, or each volume in order.
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(|(p, _)| p.as_path()).collect()
    }

    /// How many volumes the archive has (1 when not split).
    pub fn volume_count(&self) -> usize {
        self.files.len()
    }

    /// The entry for a member path.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Each blob listed in bundle.json that arrived, by digest.
    pub fn blob_locations(&self) -> HashMap<Digest, Entry> {
        let declared: HashMap<&str, Digest> = self
            .bundle
            .members
            .iter()
            .map(|m| (m.path.as_str(), m.digest))
            .collect();
        self.entries
            .iter()
            .filter(|e| e.path.starts_with("blobs/"))
            .filter_map(|e| Some((*declared.get(e.path.as_str())?, e.clone())))
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
        if let Some(kept) = self.kept.get(&entry.path) {
            return Ok(kept.as_ref().clone());
        }
        if self.compressed {
            return Err(ArchiveError::NeedsRandomAccess {
                archive: self.path.clone(),
                what: format!("reading member {}", entry.path),
            });
        }
        let mut buf = vec![0u8; entry.size as usize];
        self.member_reader(entry)
            .read_exact(&mut buf)
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
    pub fn member_reader<'a>(&'a self, entry: &'a Entry) -> MemberReader<'a> {
        MemberReader {
            files: &self.files,
            spans: &entry.spans,
            at: 0,
            pos: 0,
        }
    }
}

/// Positioned reader over a member's spans.
pub struct MemberReader<'a> {
    files: &'a [(PathBuf, Option<File>)],
    spans: &'a [Span],
    at: usize,
    pos: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(span) = self.spans.get(self.at) else {
                return Ok(0);
            };
            let left = span.len - self.pos;
            if left == 0 {
                self.at += 1;
                self.pos = 0;
                continue;
            }
            let Some((_, Some(file))) = self.files.get(span.volume) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("volume {} is missing", span.volume + 1),
                ));
            };
            let want = buf.len().min(left as usize);
            let n = file.read_at(&mut buf[..want], span.offset + self.pos)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ended inside a member",
                ));
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

/// A member header as scanned: the path, where its data starts, its size.
pub(crate) struct Header {
    pub(crate) path: String,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

struct Scanner<'a> {
    archive: PathBuf,
    file: &'a File,
    file_len: u64,
    pos: u64,
}

impl<'a> Scanner<'a> {
    fn new(archive: &Path, file: &'a File) -> Result<Scanner<'a>, ArchiveError> {
        Ok(Scanner {
            archive: archive.to_owned(),
            file,
            file_len: file.metadata()?.len(),
            pos: 0,
        })
    }

    /// Reads and parses a `ferry-volume.json` member.
    fn volume_header(&mut self, h: &Header) -> Result<VolumeHeader, ArchiveError> {
        if h.size > VOLUME_HEADER_MAX {
            return Err(ArchiveError::TooLarge {
                archive: self.archive.clone(),
                path: h.path.clone(),
                size: h.size,
                limit: VOLUME_HEADER_MAX,
            });
        }
        let bytes = self.read_data(h)?;
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::NotFerry {
            archive: self.archive.clone(),
            reason: format!("its {VOLUME_HEADER_PATH} is not a ferry volume header ({e})"),
        })
    }

    /// Scans the members of one file against `expected` (tar path, size),
    /// recording each that is well-formed in `found`. `pending` is a header
    /// already read (and skipped). Stops at the first problem.
    fn scan_volume(
        &mut self,
        volume: usize,
        expected: &[(String, u64)],
        known: &std::collections::HashSet<&str>,
        mut pending: Option<Header>,
        found: &mut HashMap<String, Span>,
    ) -> Result<(), ArchiveError> {
        let archive = self.archive.clone();
        let mut expected = expected.iter();
        let mut seen = std::collections::HashSet::new();
        loop {
            let already_skipped = pending.is_some();
            let entry = match pending.take() {
                Some(e) => Some(e),
                None => self.next_header()?,
            };
            let Some(entry) = entry else {
                // Proper end of archive: everything listed must have come.
                let rest: Vec<_> = expected.collect();
                if let Some((first, _)) = rest.first() {
                    return Err(ArchiveError::Missing {
                        archive,
                        path: first.clone(),
                        count: rest.len(),
                    });
                }
                return self.check_trailing();
            };
            check_member(&archive, expected.next(), &entry, &seen, known)?;
            if !already_skipped {
                self.skip_data(&entry)?;
            }
            seen.insert(entry.path.clone());
            found.insert(
                entry.path,
                Span {
                    volume,
                    offset: entry.offset,
                    len: entry.size,
                },
            );
        }
    }

    fn truncated(&self, what: String) -> ArchiveError {
        ArchiveError::Truncated {
            archive: self.archive.clone(),
            what,
            file_len: self.file_len,
        }
    }

    /// The next member header, or `None` at a valid end-of-archive marker.
    fn next_header(&mut self) -> Result<Option<Header>, ArchiveError> {
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
        let (path, size) = parse_header(&self.archive, at, &block)?;
        self.pos += BLOCK;
        Ok(Some(Header {
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

    fn skip_data(&mut self, e: &Header) -> Result<(), ArchiveError> {
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

    fn read_data(&mut self, e: &Header) -> Result<Vec<u8>, ArchiveError> {
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

/// Checks a member header against the one bundle.json expects at that
/// position (`None`: no more are expected), naming what is wrong.
pub(crate) fn check_member(
    archive: &Path,
    expected: Option<&(String, u64)>,
    entry: &Header,
    seen: &std::collections::HashSet<String>,
    known: &std::collections::HashSet<&str>,
) -> Result<(), ArchiveError> {
    let archive = archive.to_owned();
    let path = entry.path.clone();
    let again = seen.contains(&entry.path) || path == BUNDLE_PATH || path == VOLUME_HEADER_PATH;
    let Some((want, want_size)) = expected else {
        return Err(if again {
            ArchiveError::Duplicate { archive, path }
        } else {
            ArchiveError::Unlisted { archive, path }
        });
    };
    if path != *want {
        return Err(if again {
            ArchiveError::Duplicate { archive, path }
        } else if known.contains(path.as_str()) {
            ArchiveError::OutOfOrder {
                archive,
                path,
                expected: want.clone(),
            }
        } else {
            ArchiveError::Unlisted { archive, path }
        });
    }
    if entry.size != *want_size {
        return Err(ArchiveError::Size {
            archive,
            path,
            actual: entry.size,
            declared: *want_size,
        });
    }
    Ok(())
}

/// Validates one non-zero 512-byte header block at byte `at`: checksum,
/// ustar magic, UTF-8 name, regular file, numeric size.
pub(crate) fn parse_header(
    archive: &Path,
    at: u64,
    block: &[u8; BLOCK as usize],
) -> Result<(String, u64), ArchiveError> {
    let bad = |offset: u64, reason: String| ArchiveError::BadHeader {
        archive: archive.to_owned(),
        offset,
        reason,
    };
    let h = tar::Header::from_byte_slice(block);
    let stored = h
        .cksum()
        .map_err(|_| bad(at, "the checksum field is not octal".into()))?;
    let computed: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| b as u32)
        .sum::<u32>()
        + 8 * 32;
    if stored != computed {
        return Err(bad(
            at,
            format!("checksum {stored} does not match the header's bytes ({computed})"),
        ));
    }
    if h.as_ustar().is_none() {
        return Err(bad(at, "not a POSIX ustar header".into()));
    }
    let path = String::from_utf8(h.path_bytes().into_owned())
        .map_err(|_| bad(at, "the member name is not UTF-8".into()))?;
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
            archive: archive.to_owned(),
            path,
            kind,
        });
    }
    let size = h
        .entry_size()
        .map_err(|_| bad(at, format!("the size field of {path:?} is not a number")))?;
    Ok((path, size))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(n: u8, size: u64) -> Member {
        let d = Digest::of(&[n]);
        Member {
            path: d.blob_path(),
            digest: d,
            size,
        }
    }

    /// The tar bytes a planned volume takes, as the writer lays it out.
    fn volume_bytes(v: usize, vol: &VolumeInfo, head: u64) -> u64 {
        let fixed = if v == 0 { head } else { VOLUME_HEADER_BYTES };
        fixed + vol.pieces.iter().map(|p| tar_bytes(p.size)).sum::<u64>() + 2 * BLOCK
    }

    #[test]
    fn volume_plan_keeps_every_volume_under_the_size_and_splits_only_oversized_members() {
        let max = 1 << 20;
        let head = 8192;
        let members: Vec<Member> = [100, 300_000, 700_000, 3_500_000, 10, 1_040_000, 500_000, 0]
            .iter()
            .enumerate()
            .map(|(i, &s)| member(i as u8, s))
            .collect();
        let plan = plan_volumes(&members, max, head).unwrap();
        for (v, vol) in plan.iter().enumerate() {
            assert!(volume_bytes(v, vol, head) <= max, "volume {}", v + 1);
        }
        let parts: Vec<&Piece> = plan
            .iter()
            .flat_map(|v| &v.pieces)
            .filter(|p| p.part.is_some())
            .collect();
        assert!(parts.iter().all(|p| p.member == members[3].path));
        assert_eq!(parts.iter().map(|p| p.size).sum::<u64>(), 3_500_000);
        // The plan is what bundle.json validation accepts.
        let mut all = vec![
            Member {
                path: OCI_LAYOUT_PATH.into(),
                digest: Digest::of(b"l"),
                size: 30,
            },
            Member {
                path: bundle::INDEX_PATH.into(),
                digest: Digest::of(b"i"),
                size: 300,
            },
        ];
        all.extend(members);
        let plan = plan_volumes(&all, max, head).unwrap();
        let bundle = Bundle {
            format: bundle::FORMAT.into(),
            format_version: bundle::FORMAT_VERSION,
            tool: bundle::Tool {
                name: "ferry".into(),
                version: "0".into(),
            },
            name: "t".into(),
            created: None,
            artifacts: Vec::new(),
            members: all,
            volumes: Some(bundle::VolumePlan {
                id: Digest::of(b"id"),
                max_size: max,
                volumes: plan,
            }),
            delta: None,
        };
        assert!(Bundle::from_slice(&bundle.to_bytes()).is_ok());
        // A plan that drops a piece is refused.
        let mut broken = bundle.clone();
        if let Some(p) = &mut broken.volumes {
            p.volumes[1].pieces.remove(0);
        }
        let e = Bundle::from_slice(&broken.to_bytes()).unwrap_err();
        assert!(e.to_string().contains("inconsistent volume plan"), "{e}");
    }

    #[test]
    fn volume_plan_refuses_a_size_that_cannot_hold_bundle_json() {
        let e = plan_volumes(&[member(1, 10)], 1 << 20, 2 << 20).unwrap_err();
        assert!(
            e.to_string().contains("bundle.json and the signature"),
            "{e}"
        );
        let e = plan_volumes(&[member(1, 10)], 1000, 0).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
    }
}
