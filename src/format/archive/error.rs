//! Errors reading or writing an archive, one enum for every form.

use std::io;
use std::path::PathBuf;

use crate::base::digest::Digest;
use crate::format::bundle::BundleError;

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
    /// The archive read again is not the one opened first.
    #[error("{archive} changed while it was being read: its bundle.json is no longer the one checked first")]
    Changed {
        /// The archive.
        archive: PathBuf,
    },
    /// index.json does not parse, or disagrees with bundle.json.
    #[error("{archive}: index.json {what}; run ferry verify")]
    Model {
        /// The archive.
        archive: PathBuf,
        /// What is wrong.
        what: String,
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
    #[error("{archive} is compressed (zstd), and {what} needs random access; decompress it first: {how}")]
    NeedsRandomAccess {
        /// The archive.
        archive: PathBuf,
        /// The commands that decompress it.
        how: String,
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
    /// A frame of a framed zstd archive that cannot be decompressed.
    #[error("{archive}: frame {frame} (compressed bytes from {offset}), which holds {member}, is damaged")]
    Frame {
        /// The archive.
        archive: PathBuf,
        /// The member the frame holds.
        member: String,
        /// The frame's number in the seek table, from 0.
        frame: usize,
        /// Where its compressed bytes start.
        offset: u64,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// A zstd file's seek table does not describe the file.
    #[error("{archive}: the seek table {reason}")]
    SeekTable {
        /// The volume.
        archive: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
