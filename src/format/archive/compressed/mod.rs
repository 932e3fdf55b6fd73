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
//!
//! Inside: `stream` writes one zstd stream, `frames` writes zstd volumes
//! (member-aligned frames and the seek table), and `read` streams either.

mod frames;
mod read;
mod stream;

pub(crate) use frames::{check_seek_table, framed_bound, SEEK_TABLE_FIXED};
pub use frames::{measure, write_volumes};
pub use read::{scan, scan_head, scan_with, Stream};
pub use stream::write;

/// The default compression level.
pub const DEFAULT_LEVEL: i32 = 3;
/// JSON members up to this size are kept in memory by [`scan`].
pub(super) const KEEP_MAX: u64 = crate::format::oci::MANIFEST_MAX_BYTES * 4;
/// The most a scan keeps in memory in all.
pub const KEPT_MAX_BYTES: u64 = 256 << 20;
/// The most zero padding accepted after the end-of-archive marker.
pub const TRAILING_MAX: u64 = 1 << 20;
