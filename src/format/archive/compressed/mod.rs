//! Compressed archives (`pack --compress zstd[:LEVEL]`): the same tar an
//! uncompressed archive holds, in zstd frames aligned to its members (at
//! most 4 MiB of tar each, with zstd's frame checksum) and a seekable-format
//! seek table at the end of each file, so `zstd -d` reads it as one stream
//! and ferry reads any member by offset (`seekable`: one file, opened as an
//! [`Archive`](super::Archive) that decompresses only the frames a read
//! needs). Archives written as one zstd stream (ferry before framing, or
//! `zstd` over a plain archive) and zstd volumes are read in order:
//! [`Stream`] checks every header against bundle.json exactly as the
//! uncompressed reader does, and [`scan`] hashes every member on the way,
//! keeping only the small JSON members (index, manifests, configs) in
//! memory. Nothing is extracted to disk.
//!
//! zstd is built without its legacy-format decoders, and decoding goes
//! through `read::Decoder`, whose window is capped by zstd's default limit;
//! output is bounded by the sizes bundle.json declares, plus at most
//! [`TRAILING_MAX`] bytes of zero padding after the end marker.
//!
//! Inside: `frames` writes one framed file or zstd volumes (member-aligned
//! frames and the seek table) and reads the table back, `seekable` reads a
//! framed file by offset, and `read` streams any form in order.

mod frames;
mod read;
mod seekable;

pub(crate) use frames::{check_seek_table, framed_bound, read_seek_table, SEEK_TABLE_FIXED};
pub use frames::{measure, write_file, write_volumes, FRAME_MAX};
pub use read::{scan, scan_head, scan_with, Stream};
pub(crate) use seekable::open as open_framed;
pub use seekable::{Frame, FramedChain, FramedReader};

/// The default compression level.
pub const DEFAULT_LEVEL: i32 = 3;
/// JSON members up to this size are kept in memory by [`scan`].
pub(super) const KEEP_MAX: u64 = crate::format::oci::MANIFEST_MAX_BYTES * 4;
/// The most a scan keeps in memory in all.
pub const KEPT_MAX_BYTES: u64 = 256 << 20;
/// The most zero padding accepted after the end-of-archive marker.
pub const TRAILING_MAX: u64 = 1 << 20;
