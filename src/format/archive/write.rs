//! Writing a plain archive or its volumes: deterministic ustar members at
//! planned offsets, copied from their sources and checked against their
//! digests, into temp files renamed only when complete.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::volumes::{sidecar_path, tar_bytes, volume_path, VolumeHeader, VOLUME_HEADER_PATH};
use super::{ArchiveError, BLOCK};
use crate::base::digest::{Digest, COPY_BUF};
use crate::base::report::{Progress, Reporter};
use crate::format::blob::{mismatch_in, Verifying};
use crate::format::bundle::{Bundle, Piece, VolumeInfo, BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::format::sign::SIGNATURE_PATH;

/// Where the bytes of a member come from while packing.
#[derive(Debug, Clone)]
pub enum MemberSource {
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
    pub source: MemberSource,
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
        registered.push(crate::base::interrupt::register(tmp.path()));
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
        crate::format::layout::make_readable(f).map_err(write_err)?;
    }
    reporter.finish();

    let sizes: Vec<u64> = ends.iter().map(|e| e + 2 * BLOCK).collect();
    drop(registered);
    let sidecar = persist(out, tmps, &finals, split.is_some())?;
    Ok(Written {
        files: finals.into_iter().zip(sizes).collect(),
        sidecar,
    })
}

/// Renames complete temp files to their final names. For a volume set
/// (`split`) the volumes are hashed as they are on disk first, a stale
/// sidecar is removed before any rename (it must not vouch for a
/// half-renamed set), and the new sidecar, for `sha256sum -c`, is written
/// last. A failed rename removes the volumes already renamed.
pub(super) fn persist(
    out: &Path,
    tmps: Vec<tempfile::NamedTempFile>,
    finals: &[PathBuf],
    split: bool,
) -> Result<Option<PathBuf>, ArchiveError> {
    let write_err =
        |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", out.display()));
    let sidecar = match split {
        false => None,
        true => {
            let sums = tmps
                .par_iter()
                .map(|t| {
                    let mut f = t.as_file();
                    f.rewind()?;
                    crate::base::digest::hash_reader(io::BufReader::new(f))
                })
                .collect::<io::Result<Vec<_>>>()
                .map_err(write_err)?;
            let mut text = String::new();
            for ((d, _), f) in sums.iter().zip(finals) {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                text.push_str(&format!("{}  {name}\n", d.hex()));
            }
            Some(text)
        }
    };
    let sidecar_file = sidecar_path(out);
    if sidecar.is_some() {
        match fs_err::remove_file(&sidecar_file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let mut persisted: Vec<&PathBuf> = Vec::new();
    for (tmp, f) in tmps.into_iter().zip(finals) {
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
    Ok(match sidecar {
        Some(text) => {
            crate::format::layout::write_atomic(&sidecar_file, text.as_bytes())?;
            Some(sidecar_file)
        }
        None => None,
    })
}

/// A reader over a planned member's source bytes, and the source's name
/// for messages.
pub(crate) fn open_source(
    m: &PlannedMember,
) -> Result<(Box<dyn Read + '_>, PathBuf), ArchiveError> {
    match &m.source {
        MemberSource::File { path, offset } => {
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
        MemberSource::Bytes(b) => Ok((Box::new(b.as_slice()), PathBuf::from("<memory>"))),
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
    let (mut hr, source_path) = open_verified(m, reporter)?;
    for d in dests {
        let file = files[d.volume];
        write_member_at(file, d.offset, &d.tar_path, d.len, mtime, &mut hr).map_err(
            |e| match e {
                MemberWriteError::Read(e) => source_error(m, &source_path, e),
                MemberWriteError::Write(e) => ArchiveError::Io(io::Error::new(
                    e.kind(),
                    format!("writing {}: {e}", out.display()),
                )),
            },
        )?;
        crate::format::layout::start_writeback(file, d.offset, BLOCK + d.len);
    }
    // What was written is exactly `size` bytes; it must hash right.
    check_source(m, source_path, hr)
}

/// A member's source, read through the verifying reader and reported as
/// progress.
pub(crate) type SourceReader<'a> = Verifying<Progress<'a, Box<dyn Read + 'a>>>;

/// Opens a planned member's source for copying: the verifying reader over
/// its bytes, and the source's name for messages.
pub(crate) fn open_verified<'a>(
    m: &'a PlannedMember,
    reporter: &'a dyn Reporter,
) -> Result<(SourceReader<'a>, PathBuf), ArchiveError> {
    let (reader, source_path) = open_source(m)?;
    let from = source_path.display().to_string();
    let progress = Progress {
        inner: reader,
        reporter,
    };
    Ok((
        Verifying::new(progress, m.digest, m.size, from),
        source_path,
    ))
}

/// The error for a failed read of a member's source: the typed mismatch
/// when the verifying reader found other bytes than the digest says (a
/// source shorter or longer than its size included), else a read error.
pub(crate) fn source_error(m: &PlannedMember, source_path: &Path, e: io::Error) -> ArchiveError {
    match mismatch_in(&e) {
        Some(bad) => ArchiveError::SourceMismatch {
            source_path: source_path.to_owned(),
            digest: m.digest,
            size: m.size,
            actual: bad.actual,
            actual_size: bad.actual_size,
        },
        None => ArchiveError::SourceRead {
            source_path: source_path.to_owned(),
            member: m.path.clone(),
            source: e,
        },
    }
}

/// Checks that what was copied from a member's source (exactly its size,
/// through the verifying reader) is the member's digest.
pub(crate) fn check_source<R: Read>(
    m: &PlannedMember,
    source_path: PathBuf,
    copied: Verifying<R>,
) -> Result<(), ArchiveError> {
    copied.finish().map_err(|bad| ArchiveError::SourceMismatch {
        source_path,
        digest: m.digest,
        size: m.size,
        actual: bad.actual,
        actual_size: bad.actual_size,
    })
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

/// The mtime written into headers: `SOURCE_DATE_EPOCH` when set and valid,
/// else 0.
pub fn mtime_from_env() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}
