//! The content-addressed store: an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) written safely.
//!
//! Every blob is streamed into a temp file beside its final place, hashed on
//! the way, and renamed into place only after its digest and size match, so
//! a crash or a bad source never leaves a partial blob under a real name.
//! Re-running is safe: a blob already present with the right size is kept.
//! What goes into the store, and from where, is decided by the callers.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::base::digest::{Digest, HashingWriter, COPY_BUF};
use crate::format::blob::{
    mismatch_in, BlobSink, BlobSource, CopyError as BlobCopyError, Mismatch, Segments, Verifying,
};

/// The `oci-layout` file content.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A filesystem operation failed (the error names the path).
    #[error("layout store I/O failed")]
    Io(#[from] io::Error),
    /// Reading the content being stored failed.
    #[error("reading the blob's content failed")]
    Source(#[source] io::Error),
    /// The content did not hash to what it claimed.
    #[error("{0}; it was not stored")]
    Mismatch(Mismatch),
}

/// An OCI image layout directory used as a blob store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    sync: bool,
}

impl Store {
    /// Like [`Store::create`], for a cache whose every blob is re-hashed
    /// before use: blobs are not synced to disk one by one (a blob a crash
    /// damaged is found by the re-hash and fetched again).
    pub fn create_cache(root: &Path) -> Result<Store, LayoutError> {
        let mut s = Store::create(root)?;
        s.sync = false;
        Ok(s)
    }

    /// Opens `root`, creating the layout skeleton when missing.
    pub fn create(root: &Path) -> Result<Store, LayoutError> {
        fs_err::create_dir_all(root.join("blobs/sha256"))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, OCI_LAYOUT)?;
        }
        Ok(Store {
            sync: true,
            root: root.to_owned(),
        })
    }

    /// The existing layout at `root`, read as it is (nothing is created).
    pub fn at(root: &Path) -> Store {
        Store {
            root: root.to_owned(),
            sync: true,
        }
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.blob_path())
    }

    /// Whether the blob is present with the expected size. (Content is
    /// re-hashed by every reader, so a size check is enough here.)
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Streams `reader` into the store. With `expected`, the content must
    /// hash to that digest and size (it is read through the verifying
    /// reader, `from` naming where it comes from) or nothing is stored.
    pub fn put<R: Read>(
        &self,
        reader: R,
        expected: Option<(Digest, u64)>,
        from: &str,
    ) -> Result<(Digest, u64), LayoutError> {
        match expected {
            Some((d, n)) if self.has(&d, n) => Ok((d, n)),
            Some((d, n)) => {
                self.write(&mut Verifying::new(reader, d, n, from), Some(d))?;
                Ok((d, n))
            }
            None => self.write(&mut { reader }, None),
        }
    }

    /// Writes a blob to a temp file and renames it into place. `known` is
    /// its digest when `bytes` is a verifying reader (which fails the read
    /// on a mismatch, before anything is renamed); else it is hashed here.
    fn write(
        &self,
        bytes: &mut dyn Read,
        known: Option<Digest>,
    ) -> Result<(Digest, u64), LayoutError> {
        let (tmp, registered) = temp_in(&self.root.join("blobs/sha256"))?;
        let mut out = io::BufWriter::with_capacity(COPY_BUF, tmp);
        let copy_err = |e| match e {
            CopyError::Read(source) => match mismatch_in(&source) {
                Some(m) => LayoutError::Mismatch(m.clone()),
                None => LayoutError::Source(source),
            },
            CopyError::Write(e) => LayoutError::Io(e),
        };
        let (digest, size) = match known {
            Some(d) => (d, copy_with(bytes, &mut out).map_err(copy_err)?),
            None => {
                let mut w = HashingWriter::new(&mut out);
                copy_with(bytes, &mut w).map_err(copy_err)?;
                let (_, digest, size) = w.finish();
                (digest, size)
            }
        };
        let tmp = out.into_inner().map_err(|e| e.into_error())?;
        if self.sync {
            tmp.as_file().sync_data()?;
        } else {
            start_writeback(tmp.as_file(), 0, 0);
        }
        make_readable(tmp.as_file())?;
        let dest = self.blob_path(&digest);
        drop(registered);
        tmp.persist(&dest).map_err(|e| {
            io::Error::new(
                e.error.kind(),
                format!("renaming into {}: {}", dest.display(), e.error),
            )
        })?;
        Ok((digest, size))
    }

    /// Writes `index.json` atomically. Call it last: a layout without an
    /// index is not taken for a usable one.
    pub fn write_index(&self, bytes: &[u8]) -> Result<(), LayoutError> {
        write_atomic(&self.root.join("index.json"), bytes)?;
        Ok(())
    }
}

/// Error of a copy, telling which side failed.
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy` that tells read errors from write errors.
pub(crate) fn copy_with<R: Read + ?Sized, W: Write>(
    r: &mut R,
    w: &mut W,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

/// Temp files are created private (0600); finished files get the usual
/// 0644 so registries and other users can read a layout or an archive.
pub(crate) fn make_readable(f: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to
/// disk (0 = to the end) without waiting, so a later `fsync` (of this file,
/// or of another that the filesystem orders after it) has little left to
/// do. Only a hint: failures are ignored.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; no memory is
        // passed.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// A `.tmp-*` file in `dir`, removed on Ctrl-C until the guard is dropped.
fn temp_in(
    dir: &Path,
) -> io::Result<(tempfile::NamedTempFile, crate::base::interrupt::Registered)> {
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating a temp file in {}: {e}", dir.display()),
            )
        })?;
    let registered = crate::base::interrupt::register(tmp.path());
    Ok((tmp, registered))
}

/// Writes a small file via temp file + fsync + rename, keeping the
/// permissions of the file it replaces.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    stage(path, bytes)?.commit()
}

/// A file written in full under a temp name beside its final place, not
/// yet renamed: several can be staged, then committed together, so a
/// failure while writing leaves every final file as it was.
pub struct Staged {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    _registered: crate::base::interrupt::Registered,
}

/// Stages `bytes` for `path` (temp file, fsync, the permissions of the
/// file it replaces or 0644).
pub fn stage(path: &Path, bytes: &[u8]) -> io::Result<Staged> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (mut tmp, registered) = temp_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    // Replacing a file keeps its permissions (a private values file stays
    // private); a new file gets 0644.
    match std::fs::metadata(path) {
        Ok(m) => tmp.as_file().set_permissions(m.permissions())?,
        Err(_) => make_readable(tmp.as_file())?,
    }
    Ok(Staged {
        path: path.to_owned(),
        tmp,
        _registered: registered,
    })
}

/// Stages a byte-for-byte copy of the regular file `from` for `path`,
/// streamed, with `from`'s permissions.
pub fn stage_copy(path: &Path, from: &Path) -> io::Result<Staged> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut src = fs_err::File::open(from)?;
    let perms = src.metadata()?.permissions();
    let (mut tmp, registered) = temp_in(dir)?;
    io::copy(&mut src, &mut tmp)?;
    tmp.as_file().sync_data()?;
    tmp.as_file().set_permissions(perms)?;
    Ok(Staged {
        path: path.to_owned(),
        tmp,
        _registered: registered,
    })
}

impl Staged {
    /// Sets the permissions the file will have (a copy keeps its source's).
    pub fn set_permissions(&self, perms: std::fs::Permissions) -> io::Result<()> {
        self.tmp.as_file().set_permissions(perms)
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the staged file into place.
    pub fn commit(self) -> io::Result<()> {
        let Staged { path, tmp, .. } = self;
        tmp.persist(&path).map_err(|e| {
            io::Error::new(
                e.error.kind(),
                format!("renaming into {}: {}", path.display(), e.error),
            )
        })?;
        Ok(())
    }
}

impl BlobSource for Store {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn locate(&self, digest: &Digest) -> Option<(u64, Segments)> {
        // A link under blobs/ is not a blob of this layout, wherever it
        // points (serve would hand out the target's bytes).
        let path = self.blob_path(digest);
        let size = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.is_file())?
            .len();
        Some((size, vec![(path, 0, size)]))
    }
}

impl BlobSink for Store {
    fn has(&self, digest: &Digest, size: u64) -> bool {
        Store::has(self, digest, size)
    }

    fn put(
        &self,
        digest: &Digest,
        size: u64,
        from: &str,
        bytes: &mut dyn Read,
    ) -> Result<(), BlobCopyError> {
        self.write(
            &mut Verifying::new(bytes, *digest, size, from),
            Some(*digest),
        )
        .map(|_| ())
        .map_err(|e| match e {
            LayoutError::Mismatch(m) => BlobCopyError::Mismatch(m),
            LayoutError::Io(e) | LayoutError::Source(e) => BlobCopyError::io(*digest, e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::report::Silent;
    use crate::format::blob;

    #[test]
    fn stores_once_and_refuses_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::create(dir.path()).unwrap();
        let (d, n) = s.put(&b"hello"[..], None, "test").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert!(s.has(&d, n));
        // Same content again: fine, same place.
        assert_eq!(s.put(&b"hello"[..], Some((d, n)), "test").unwrap(), (d, n));
        // Wrong content for a claimed digest: refused, nothing left behind.
        let want = Digest::of(b"other");
        let e = s
            .put(&b"tampered"[..], Some((want, 5)), "test")
            .unwrap_err();
        assert!(matches!(e, LayoutError::Mismatch(_)), "{e}");
        assert!(!s.blob_path(&want).exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn copy_moves_blobs_between_stores_and_refuses_a_damaged_one() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let from = Store::create(&a).unwrap();
        let to = Store::create(&b).unwrap();
        let (x, _) = from.put(&b"blob x"[..], None, "test").unwrap();
        let (y, _) = from.put(&b"blob y!"[..], None, "test").unwrap();
        assert_eq!(blob::copy(&from, &to, &[x, y], &Silent).unwrap(), 13);
        assert_eq!(std::fs::read(to.blob_path(&y)).unwrap(), b"blob y!");
        // Already there: nothing to copy.
        assert_eq!(blob::copy(&from, &to, &[x, y], &Silent).unwrap(), 0);

        // A blob damaged at the source is refused, named, and not stored.
        let z = Digest::of(b"blob z");
        std::fs::write(from.blob_path(&z), b"blob Z").unwrap();
        let e = blob::copy(&from, &to, &[z], &Silent).unwrap_err();
        let blob::CopyError::Mismatch(m) = &e else {
            panic!("{e}");
        };
        assert_eq!(m.digest, z);
        assert!(m.from.contains(&z.hex()), "{}", m.from);
        assert!(!to.blob_path(&z).exists());
        let leftovers = std::fs::read_dir(b.join("blobs/sha256"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(leftovers, 0, "no temp file left");
        // A blob the source lacks is named too.
        let e = blob::copy(&from, &to, &[Digest::of(b"none")], &Silent).unwrap_err();
        assert!(matches!(e, blob::CopyError::Missing { .. }), "{e}");
    }
}
