//! The one place that tells an archive's physical form: whether the
//! bytes are a plain tar (one file or volumes, read by offset) or zstd
//! (one stream or zstd volumes, read in order). Every command opens an
//! archive through [`detect`] and the openers built on it, and none looks
//! at magic bytes itself.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::volumes::volume_path;

/// The first four bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How an archive's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A plain tar, or plain tar volumes: members are read by offset.
    Plain,
    /// zstd: one stream, or volumes each a stream of its own; members are
    /// read in order.
    Zstd,
}

/// The file that opens the archive at `path`: `path` itself, or its
/// first volume `PATH.001` when only the volumes exist.
pub fn first_file(path: &Path) -> PathBuf {
    if !path.exists() && volume_path(path, 1).exists() {
        volume_path(path, 1)
    } else {
        path.to_owned()
    }
}

/// The form of the archive at `path` (the archive, or the first volume of
/// a split one), and the file that opens it. A file that cannot be opened
/// is reported as plain: the opener then names the problem.
pub fn detect(path: &Path) -> io::Result<(PathBuf, Form)> {
    detect_file(path).map(|(first, form, _)| (first, form))
}

/// [`detect`], also returning the first file as it was opened (when it
/// could be), so a reader goes on with the very file whose form it learnt
/// and never opens the path a second time.
pub(crate) fn detect_file(path: &Path) -> io::Result<(PathBuf, Form, Option<File>)> {
    let first = first_file(path);
    let Ok(mut f) = File::open(&first) else {
        return Ok((first, Form::Plain, None));
    };
    let mut magic = [0u8; 4];
    let form = match f.read_exact(&mut magic) {
        Ok(()) if magic == ZSTD_MAGIC => Form::Zstd,
        Ok(()) => Form::Plain,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Form::Plain,
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", first.display()),
            ))
        }
    };
    Ok((first, form, Some(f)))
}
