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
//!
//! Inside: [`write`](mod@write) lays out and writes plain archives and
//! volumes, [`volumes`] plans them, [`form`] tells plain from zstd (the
//! only place that looks at magic bytes), `read` opens every form,
//! `scan` holds the tar checks every reader shares, and [`compressed`]
//! writes and streams the zstd form.

pub mod compressed;
mod error;
pub mod form;
mod read;
mod scan;
pub mod volumes;
pub mod write;

pub(crate) use crate::base::report::Progress;
pub use error::ArchiveError;
pub use form::Form;
pub use read::{read_head, read_head_strict, Archive, Entry, Head, MemberReader, Span};
pub(crate) use scan::{check_member, parse_header, Header};
pub use volumes::{
    plan_volumes, sidecar_path, volume_path, VolumeHeader, MIN_VOLUME_SIZE, VOLUME_HEADER_PATH,
};
pub(crate) use write::{
    check_source, open_source, open_verified, padding, partial_file, source_error, ustar_header,
};
pub use write::{mtime_from_env, write, MemberSource, PlannedMember, Written};

/// The physical form an archive is written in: plain or zstd, one file
/// or volumes. `pack` asks for one; this module does the rest.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteForm {
    /// zstd at this level, or plain.
    pub compress: Option<i32>,
    /// Volumes of at most this many bytes, or one file.
    pub volume_size: Option<u64>,
}

impl WriteForm {
    /// Adds the volume plan to `bundle` when volumes are asked for. For
    /// zstd volumes every member is compressed once first, to fill the
    /// volumes by what the data really compresses to. Call before
    /// bundle.json is serialised (and signed).
    pub fn plan(
        &self,
        bundle: &mut crate::format::bundle::Bundle,
        members: &[PlannedMember],
        signed: bool,
        mtime: u64,
        reporter: &dyn crate::base::report::Reporter,
    ) -> Result<(), ArchiveError> {
        let Some(max_size) = self.volume_size else {
            return Ok(());
        };
        let framing = match self.compress {
            Some(level) => volumes::Framing::Zstd {
                measured: compressed::measure(members, mtime, level, reporter)?,
            },
            None => volumes::Framing::Plain,
        };
        volumes::plan_into(bundle, max_size, signed, &framing)
    }

    /// Writes the archive at `out` in this form: temp files renamed only
    /// when complete and checked. `bundle` carries the plan made by
    /// [`WriteForm::plan`]; `bundle_json` is its bytes as signed.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        out: &std::path::Path,
        bundle: &crate::format::bundle::Bundle,
        bundle_json: &[u8],
        signature: Option<&[u8]>,
        members: &[PlannedMember],
        mtime: u64,
        reporter: &dyn crate::base::report::Reporter,
    ) -> Result<Written, ArchiveError> {
        match (self.compress, bundle.volumes.is_some()) {
            (Some(level), true) => compressed::write_volumes(
                out,
                bundle,
                bundle_json,
                signature,
                members,
                mtime,
                level,
                reporter,
            ),
            (Some(level), false) => {
                compressed::write_file(out, bundle_json, signature, members, mtime, level, reporter)
            }
            (None, _) => write(
                out,
                bundle,
                bundle_json,
                signature,
                members,
                mtime,
                reporter,
            ),
        }
    }
}

/// The tar block size.
pub(crate) const BLOCK: u64 = 512;

/// Re-exported so callers need not import `bundle` for member paths.
pub use crate::format::bundle::INDEX_PATH;
