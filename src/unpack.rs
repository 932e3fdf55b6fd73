//! `unpack` and `inspect`: reading an archive out.
//!
//! `unpack` writes a plain OCI image layout that skopeo, umoci, oras or
//! containerd can use without ferry. Only the paths bundle.json declares
//! (and the archive reader accepted) are written, each blob through the
//! layout store (temp file, hash check, rename), and `index.json` last, so
//! an interrupted or refused unpack never leaves a layout that looks whole.
//! `inspect` summarises bundle.json without hashing anything.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::archive::{Archive, ArchiveError};
use crate::bundle::{self, Artifact, INDEX_PATH, OCI_LAYOUT_PATH};
use crate::digest::Digest;
use crate::layout::{LayoutError, Store};
use crate::report::Reporter;

/// Errors unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is unreadable or damaged.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The target directory holds something already.
    #[error("{0} exists and is not empty; unpack into a new or empty directory")]
    NotEmpty(PathBuf),
    /// Writing a blob failed or it did not match its digest.
    #[error("{archive}: member {member} could not be unpacked into {dir}")]
    Blob {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// The target directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: LayoutError,
    },
}

/// What an unpack wrote.
#[derive(Debug, Clone, Serialize)]
pub struct UnpackSummary {
    /// The layout directory.
    pub dir: PathBuf,
    /// Blobs written.
    pub blobs: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Unpacks `archive` into the OCI layout directory `dir`.
pub fn unpack(
    archive_path: &Path,
    dir: &Path,
    reporter: &dyn Reporter,
) -> Result<UnpackSummary, UnpackError> {
    let archive = Archive::open(archive_path)?;
    if dir.exists() {
        let mut it = fs_err::read_dir(dir).map_err(ArchiveError::Io)?;
        if it.next().is_some() {
            return Err(UnpackError::NotEmpty(dir.to_owned()));
        }
    }
    let blob_err = |member: &str, source| UnpackError::Blob {
        archive: archive_path.to_owned(),
        member: member.to_owned(),
        dir: dir.to_owned(),
        source,
    };
    let store = Store::create(dir).map_err(|e| blob_err(OCI_LAYOUT_PATH, e))?;
    let declared = |path: &str| -> Option<(Digest, u64)> {
        archive.bundle.member(path).map(|m| (m.digest, m.size))
    };

    let blobs: Vec<_> = archive
        .entries
        .iter()
        .filter(|e| e.path != INDEX_PATH && e.path != OCI_LAYOUT_PATH)
        .collect();
    let total: u64 = blobs.iter().map(|e| e.size).sum();
    reporter.start("unpacking", total);
    blobs.par_iter().with_max_len(1).try_for_each(|e| {
        let expected = declared(&e.path);
        let r = ProgressReader {
            inner: archive.member_reader(e),
            reporter,
        };
        store
            .put(r, expected)
            .map(|_| ())
            .map_err(|err| blob_err(&e.path, err))
    })?;
    reporter.finish();

    // bundle.json travels along (harmless to other tools, useful to ferry).
    crate::layout::write_atomic(&dir.join(bundle::BUNDLE_PATH), &archive.bundle_bytes)
        .map_err(|e| blob_err(bundle::BUNDLE_PATH, e.into()))?;
    // index.json last, after its own digest check.
    let index_entry = archive.entry(INDEX_PATH).ok_or_else(|| {
        blob_err(
            INDEX_PATH,
            LayoutError::Io(std::io::Error::other("index.json missing")),
        )
    })?;
    let bytes = archive.read_member(index_entry, bundle::BUNDLE_MAX_BYTES)?;
    if let Some((d, n)) = declared(INDEX_PATH) {
        let actual = Digest::of(&bytes);
        if actual != d || bytes.len() as u64 != n {
            return Err(blob_err(
                INDEX_PATH,
                LayoutError::Mismatch {
                    expected: d,
                    expected_size: n,
                    actual,
                    actual_size: bytes.len() as u64,
                },
            ));
        }
    }
    store
        .write_index(&bytes)
        .map_err(|e| blob_err(INDEX_PATH, e))?;
    Ok(UnpackSummary {
        dir: dir.to_owned(),
        blobs: blobs.len(),
        bytes: total,
    })
}

struct ProgressReader<'a, R> {
    inner: R,
    reporter: &'a dyn Reporter,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.reporter.advance(n as u64);
        Ok(n)
    }
}

/// A summary of an archive's contents.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The archive.
    pub archive: PathBuf,
    /// The bundle's name.
    pub name: String,
    /// bundle.json format version.
    pub format_version: u32,
    /// The ferry version that wrote it.
    pub tool_version: String,
    /// Number of members (bundle.json included).
    pub members: usize,
    /// Bytes of member content (bundle.json included).
    pub content_bytes: u64,
    /// The archive file's size.
    pub archive_bytes: u64,
    /// The artifacts.
    pub artifacts: Vec<Artifact>,
}

/// Reads bundle.json and summarises it. Refuses damaged archives.
pub fn inspect(path: &Path) -> Result<Inspection, ArchiveError> {
    let a = Archive::open(path)?;
    let archive_bytes = fs_err::metadata(path)?.len();
    Ok(Inspection {
        archive: path.to_owned(),
        name: a.bundle.name.clone(),
        format_version: a.bundle.format_version,
        tool_version: a.bundle.tool.version.clone(),
        members: a.bundle.members.len() + 1,
        content_bytes: a.bundle.members.iter().map(|m| m.size).sum::<u64>()
            + a.bundle_bytes.len() as u64,
        archive_bytes,
        artifacts: a.bundle.artifacts.clone(),
    })
}
