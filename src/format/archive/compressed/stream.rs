//! Writing one zstd stream: the plain tar, multithreaded, with zstd's
//! frame checksum.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::super::{padding, ustar_header, ArchiveError, PlannedMember, Written, BLOCK};
use crate::base::report::Reporter;
use crate::format::bundle::{BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::format::sign::SIGNATURE_PATH;

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
    let tmp = super::super::partial_file(out)?;
    let registered = crate::base::interrupt::register(tmp.path());
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
        let (mut hr, source_path) = super::super::open_verified(m, reporter)?;
        put_member(&mut enc, &m.path, m.size, mtime, &mut hr).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof
                || e.kind() == io::ErrorKind::Other
                || e.kind() == io::ErrorKind::InvalidData
            {
                super::super::source_error(m, &source_path, e)
            } else {
                ArchiveError::Io(werr(e))
            }
        })?;
        super::super::check_source(m, source_path, hr)?;
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
    crate::format::layout::make_readable(tmp.as_file()).map_err(werr)?;
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
