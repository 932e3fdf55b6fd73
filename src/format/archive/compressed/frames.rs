//! Writing framed zstd: one file or volumes, each member in frames of its
//! own (at most [`FRAME_MAX`] bytes of tar, never spanning two members),
//! compressed in parallel, and a seekable-format seek table closing each
//! file; and reading that seek table back.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::super::volumes::{volume_path, VolumeHeader, VOLUME_HEADER_PATH};
use super::super::{padding, ustar_header, ArchiveError, PlannedMember, Written, BLOCK};
use crate::base::report::Reporter;
use crate::format::bundle::{Bundle, BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::format::sign::SIGNATURE_PATH;

/// Uncompressed bytes per frame in zstd volumes. Frames never span two
/// members and the seek table lists them all, so a reader can start at
/// any member, and frames can be decompressed in parallel.
pub const FRAME_MAX: u64 = 4 << 20;
/// Bytes of the seek table's frame besides its entries: the skippable
/// frame's magic and size, and the footer.
pub(crate) const SEEK_TABLE_FIXED: u64 = 8 + 9;
/// One seek-table entry: compressed and decompressed size.
const SEEK_ENTRY: u64 = 8;
/// The skippable-frame magic the seek table is written under.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// The seekable format's footer magic.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// The most one frame of `n` uncompressed bytes takes: zstd's worst case
/// for incompressible input, room for the frame header and checksum, and
/// its seek-table entry.
pub(crate) fn frame_bound(n: u64) -> u64 {
    zstd::zstd_safe::compress_bound(n as usize) as u64 + 32 + SEEK_ENTRY
}

/// The most `len` uncompressed bytes of one tar member take as frames.
pub(crate) fn framed_bound(len: u64) -> u64 {
    let (full, rest) = (len / FRAME_MAX, len % FRAME_MAX);
    full * frame_bound(FRAME_MAX) + if rest > 0 { frame_bound(rest) } else { 0 }
}

/// Writes the archive as zstd volumes `OUT.001`, … and the sidecar
/// `OUT.sha256`, as `bundle`'s volume plan (made with
/// [`Framing::Zstd`](super::super::volumes::Framing)) says. Each volume is a zstd
/// stream of its own that decompresses to a tar of its own: each member
/// in frames of at most 4 MiB of tar (compressed in parallel, so
/// the bytes do not depend on the thread count), the end-of-archive
/// marker, and the seekable format's seek table in a skippable frame,
/// which `zstd -d` passes over. Members are re-hashed on the way; temp
/// files are renamed only when every volume is complete and checked.
#[allow(clippy::too_many_arguments)]
pub fn write_volumes(
    out: &Path,
    bundle: &Bundle,
    bundle_json: &[u8],
    signature: Option<&[u8]>,
    members: &[PlannedMember],
    mtime: u64,
    level: i32,
    reporter: &dyn Reporter,
) -> Result<Written, ArchiveError> {
    let not_ferry = |reason: String| ArchiveError::NotFerry {
        archive: out.to_owned(),
        reason,
    };
    let Some(plan) = &bundle.volumes else {
        return Err(not_ferry("bundle.json has no volume plan".into()));
    };
    let werr = |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", out.display()));
    let by_path: HashMap<&str, &PlannedMember> =
        members.iter().map(|m| (m.path.as_str(), m)).collect();
    let finals: Vec<PathBuf> = (1..=plan.volumes.len())
        .map(|n| volume_path(out, n))
        .collect();
    let total: u64 = members.iter().map(|m| m.size).sum();
    reporter.start("compressing archive", total);
    let mut tmps = Vec::with_capacity(finals.len());
    let mut registered = Vec::with_capacity(finals.len());
    let mut sizes = Vec::with_capacity(finals.len());
    // The member being copied, across the volumes it is split between.
    let mut current: Option<(super::super::write::SourceReader<'_>, PathBuf)> = None;
    for (v, vol) in plan.volumes.iter().enumerate() {
        let Some(fin) = finals.get(v) else { break };
        let tmp = super::super::partial_file(fin)?;
        registered.push(crate::base::interrupt::register(tmp.path()));
        let mut fw = FrameWriter::new(BufWriter::with_capacity(1 << 20, tmp.as_file()), level);
        if v > 0 {
            let header = VolumeHeader {
                format: "ferry-volume".into(),
                id: plan.id,
                volume: v + 1,
                volumes: plan.volumes.len(),
            };
            fw.fixed(VOLUME_HEADER_PATH, &header.to_bytes(), mtime)
                .map_err(werr)?;
        }
        for (i, p) in vol.pieces.iter().enumerate() {
            let m = by_path
                .get(p.member.as_str())
                .copied()
                .ok_or_else(|| not_ferry(format!("the plan names {}, not a member", p.member)))?;
            if p.offset == 0 {
                current = Some(super::super::open_verified(m, reporter)?);
            }
            let Some((hr, source_path)) = current.as_mut() else {
                return Err(not_ferry(format!(
                    "the plan continues {} before it starts",
                    p.member
                )));
            };
            fw.member(&p.tar_path(), p.size, mtime, hr)
                .map_err(|e| match e {
                    Put::Read(e) => super::super::source_error(m, source_path, e),
                    Put::Write(e) => ArchiveError::Io(werr(e)),
                })?;
            if p.offset + p.size == m.size {
                if let Some((hr, source_path)) = current.take() {
                    super::super::check_source(m, source_path, hr)?;
                }
            }
            if v == 0 && i == 0 {
                // bundle.json and the signature follow oci-layout.
                if p.member != OCI_LAYOUT_PATH {
                    return Err(not_ferry(format!(
                        "the plan starts with {}, not oci-layout",
                        p.member
                    )));
                }
                fw.fixed(BUNDLE_PATH, bundle_json, mtime).map_err(werr)?;
                if let Some(sig) = signature {
                    fw.fixed(SIGNATURE_PATH, sig, mtime).map_err(werr)?;
                }
            }
        }
        let (_, size) = fw.finish().map_err(werr)?;
        if size > plan.max_size {
            // The plan prices every frame at zstd's worst case, so this
            // cannot happen; refuse rather than write an oversized volume.
            return Err(ArchiveError::VolumeTooSmall {
                max_size: plan.max_size,
                need: size,
                what: format!("volume {} compressed", v + 1),
            });
        }
        tmp.as_file().sync_all().map_err(werr)?;
        crate::format::layout::make_readable(tmp.as_file()).map_err(werr)?;
        sizes.push(size);
        tmps.push(tmp);
    }
    reporter.finish();
    drop(registered);
    let sidecar = super::super::write::persist(out, tmps, &finals, true)?;
    Ok(Written {
        files: finals.into_iter().zip(sizes).collect(),
        sidecar,
    })
}

/// Writes the archive as one zstd file at `out`, in the framing zstd
/// volumes use: each member in frames of its own (at most [`FRAME_MAX`]
/// bytes of tar each, compressed in parallel, so the bytes do not depend
/// on the thread count), the end-of-archive marker, and the seek table in
/// a skippable frame, which `zstd -d` passes over: it still gives the
/// plain tar, byte for byte. Members are re-hashed on the way; the temp
/// file is renamed to `out` only when complete and checked.
pub fn write_file(
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
    let total: u64 = members.iter().map(|m| m.size).sum();
    reporter.start("compressing archive", total);
    let mut fw = FrameWriter::new(BufWriter::with_capacity(1 << 20, tmp.as_file()), level);
    for (i, m) in members.iter().enumerate() {
        let (mut hr, source_path) = super::super::open_verified(m, reporter)?;
        fw.member(&m.path, m.size, mtime, &mut hr)
            .map_err(|e| match e {
                Put::Read(e) => super::super::source_error(m, &source_path, e),
                Put::Write(e) => ArchiveError::Io(werr(e)),
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
            fw.fixed(BUNDLE_PATH, bundle_json, mtime).map_err(werr)?;
            if let Some(sig) = signature {
                fw.fixed(SIGNATURE_PATH, sig, mtime).map_err(werr)?;
            }
        }
    }
    let (buffered, size) = fw.finish().map_err(werr)?;
    drop(buffered);
    tmp.as_file().sync_all().map_err(werr)?;
    crate::format::layout::make_readable(tmp.as_file()).map_err(werr)?;
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

/// The exact bytes each member takes as frames, with its seek-table
/// entries, when [`write_volumes`] writes it whole: what the volume plan
/// needs to fill volumes by what the data really compresses to. Every
/// member is compressed once, in the same frames, and nothing is kept.
pub fn measure(
    members: &[PlannedMember],
    mtime: u64,
    level: i32,
    reporter: &dyn Reporter,
) -> Result<HashMap<String, u64>, ArchiveError> {
    let total: u64 = members.iter().map(|m| m.size).sum();
    reporter.start("sizing compressed volumes", total);
    let mut sizes = HashMap::with_capacity(members.len());
    for m in members {
        let (reader, source_path) = super::super::open_source(m)?;
        let mut fw = FrameWriter::new(io::sink(), level);
        let mut r = super::super::Progress {
            inner: reader,
            reporter,
        };
        fw.member(&m.path, m.size, mtime, &mut r)
            .map_err(|e| match e {
                Put::Read(source) => ArchiveError::SourceRead {
                    source_path,
                    member: m.path.clone(),
                    source,
                },
                Put::Write(e) => ArchiveError::Io(e),
            })?;
        fw.flush_frames().map_err(ArchiveError::Io)?;
        sizes.insert(
            m.path.clone(),
            fw.written + fw.frames.len() as u64 * SEEK_ENTRY,
        );
    }
    reporter.finish();
    Ok(sizes)
}

/// Where copying a member failed: reading its source or writing.
enum Put {
    Read(io::Error),
    Write(io::Error),
}

/// A batch of frames being compressed on the thread pool: its input and,
/// when done, each frame compressed.
type Batch = std::sync::mpsc::Receiver<(Vec<Vec<u8>>, Vec<Vec<u8>>, io::Result<()>)>;

/// Writes tar members as zstd frames and, at the end, the seek table.
struct FrameWriter<W: Write> {
    out: W,
    level: i32,
    written: u64,
    /// Each frame's compressed and decompressed size.
    frames: Vec<(u32, u32)>,
    /// Frames read but not yet compressed, and their bytes.
    pending: Vec<Vec<u8>>,
    pending_bytes: u64,
    /// The batch before, still being compressed while the next is read.
    in_flight: Option<Batch>,
    /// Frame buffers written already, to read the next frames into, and
    /// to compress them into.
    spare: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
}

/// Frames of at least this many bytes are probed first: when a sample of
/// them does not compress, they are compressed at [`INCOMPRESSIBLE_LEVEL`].
const PROBE_MIN: usize = 256 << 10;
/// Bytes probed at each of a frame's start, middle and end.
const PROBE_LEN: usize = 16 << 10;
/// The level for frames whose sample does not compress (gzip layers, say):
/// zstd stores such data as raw blocks at any level, and this one gets
/// there several times faster than the default.
const INCOMPRESSIBLE_LEVEL: i32 = -5;

/// Compresses one frame into `out` (replacing what it held) with `z` (at
/// the level asked for), or with `fast` when a sample of it, compressed
/// by `probe`, shrinks by less than 3 %: the choice depends on the
/// frame's bytes alone, so the output stays deterministic.
fn compress_frame(
    c: &[u8],
    out: &mut Vec<u8>,
    z: &mut zstd::bulk::Compressor<'static>,
    probe: &mut zstd::bulk::Compressor<'static>,
    fast: &mut zstd::bulk::Compressor<'static>,
) -> io::Result<()> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(c.len()));
    if c.len() >= PROBE_MIN {
        let mid = c.len() / 2 - PROBE_LEN / 2;
        let mut sampled = 0;
        for at in [0, mid, c.len() - PROBE_LEN] {
            if let Some(s) = c.get(at..at + PROBE_LEN) {
                sampled += probe.compress(s)?.len();
            }
        }
        if sampled * 100 > 3 * PROBE_LEN * 97 {
            fast.compress_to_buffer(c, out)?;
            return Ok(());
        }
    }
    z.compress_to_buffer(c, out)?;
    Ok(())
}

/// Compression contexts a thread keeps from batch to batch (making them
/// costs more than a small frame does): the level they are for, and the
/// contexts at that level, for the probe, and for incompressible frames.
type Contexts = (
    i32,
    zstd::bulk::Compressor<'static>,
    zstd::bulk::Compressor<'static>,
    zstd::bulk::Compressor<'static>,
);

thread_local! {
    static CONTEXTS: std::cell::RefCell<Option<Contexts>> = const { std::cell::RefCell::new(None) };
}

/// [`compress_frame`] with this thread's contexts for `level`.
fn compress_frame_here(c: &[u8], out: &mut Vec<u8>, level: i32) -> io::Result<()> {
    CONTEXTS.with(|kept| {
        let mut kept = kept.borrow_mut();
        let ctx = match kept.take() {
            Some(k) if k.0 == level => k,
            _ => (
                level,
                compressor(level)?,
                compressor(1)?,
                compressor(INCOMPRESSIBLE_LEVEL)?,
            ),
        };
        let (_, z, probe, fast) = kept.insert(ctx);
        compress_frame(c, out, z, probe, fast)
    })
}

/// A compression context at `level`, with zstd's frame checksum.
fn compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut z = zstd::bulk::Compressor::new(level)?;
    z.include_checksum(true)?;
    Ok(z)
}

impl<W: Write> FrameWriter<W> {
    fn new(out: W, level: i32) -> FrameWriter<W> {
        FrameWriter {
            out,
            level,
            written: 0,
            frames: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            in_flight: None,
            spare: Vec::new(),
            spare_out: Vec::new(),
        }
    }

    /// A member whose bytes ferry made (bundle.json, a volume header).
    fn fixed(&mut self, path: &str, bytes: &[u8], mtime: u64) -> io::Result<()> {
        self.member(path, bytes.len() as u64, mtime, &mut &bytes[..])
            .map_err(|e| match e {
                Put::Read(e) | Put::Write(e) => e,
            })
    }

    /// One tar member (header, exactly `size` bytes of `data`, padding),
    /// cut into frames of at most [`FRAME_MAX`] bytes. Frames wait in a
    /// batch, across members, and each batch is compressed in parallel
    /// (so many small members use every core too); call
    /// [`FrameWriter::flush_frames`] to have them written.
    fn member(
        &mut self,
        path: &str,
        size: u64,
        mtime: u64,
        data: &mut dyn Read,
    ) -> Result<(), Put> {
        let header = ustar_header(path, size, mtime).map_err(Put::Write)?;
        let mut tar = io::Cursor::new(header.as_bytes().to_vec())
            .chain(data.take(size))
            .chain(io::repeat(0).take(padding(size)));
        let total = BLOCK + size + padding(size);
        let mut done = 0u64;
        while done < total {
            let len = (total - done).min(FRAME_MAX) as usize;
            let mut chunk = self.spare.pop().unwrap_or_default();
            chunk.resize(len, 0);
            read_full(&mut tar, &mut chunk).map_err(|e| {
                Put::Read(match e.kind() {
                    io::ErrorKind::UnexpectedEof => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("ended before the declared size of {size}"),
                    ),
                    _ => e,
                })
            })?;
            done += len as u64;
            self.pending_bytes += len as u64;
            self.pending.push(chunk);
            // Two frames a thread, at most six full frames in flight (24
            // MiB of input and at most as much output), whatever the core
            // count; or many small ones.
            let batch = rayon::current_num_threads().clamp(1, 3) as u64 * 2;
            if self.pending_bytes >= batch * FRAME_MAX || self.pending.len() >= 256 {
                self.submit().map_err(Put::Write)?;
            }
        }
        Ok(())
    }

    /// Compresses the frames waiting, in parallel, and writes them in order.
    fn flush_frames(&mut self) -> io::Result<()> {
        self.submit()?;
        self.collect()
    }

    /// Starts compressing the frames waiting, in parallel on the thread
    /// pool, after writing the batch before (so at most two batches are
    /// held: one compressing, one being read). On a pool thread itself the
    /// batch is compressed at once instead (waiting there for the pool
    /// could wait for itself).
    fn submit(&mut self) -> io::Result<()> {
        self.collect()?;
        let chunks = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if chunks.is_empty() {
            return Ok(());
        }
        let level = self.level;
        let mut outs: Vec<Vec<u8>> = (0..chunks.len())
            .map(|_| self.spare_out.pop().unwrap_or_default())
            .collect();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let work = move || {
            let done = chunks
                .par_iter()
                .zip(outs.par_iter_mut())
                .map(|(c, out)| compress_frame_here(c, out, level))
                .collect::<io::Result<()>>();
            let _ = tx.send((chunks, outs, done));
        };
        if rayon::current_thread_index().is_some() {
            work();
        } else {
            rayon::spawn(work);
        }
        self.in_flight = Some(rx);
        Ok(())
    }

    /// Waits for the batch being compressed, and writes it in order.
    fn collect(&mut self) -> io::Result<()> {
        let Some(rx) = self.in_flight.take() else {
            return Ok(());
        };
        let (chunks, compressed, done) = rx
            .recv()
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        done?;
        for (c, z) in chunks.iter().zip(&compressed) {
            self.out.write_all(z)?;
            self.written += z.len() as u64;
            self.frames.push((z.len() as u32, c.len() as u32));
        }
        // The buffers are used again (fresh ones cost page faults).
        self.spare.extend(chunks);
        self.spare.truncate(8);
        self.spare_out.extend(compressed);
        self.spare_out.truncate(8);
        Ok(())
    }

    /// The end-of-archive marker and the seek table; returns the writer
    /// and the bytes written in all.
    fn finish(mut self) -> io::Result<(W, u64)> {
        self.flush_frames()?;
        let end = [0u8; 2 * BLOCK as usize];
        let z = compressor(self.level)?.compress(&end)?;
        self.out.write_all(&z)?;
        self.written += z.len() as u64;
        self.frames.push((z.len() as u32, end.len() as u32));
        let mut table = Vec::with_capacity(self.frames.len() * 8 + 17);
        table.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        let body = self.frames.len() * SEEK_ENTRY as usize + 9;
        table.extend_from_slice(&(body as u32).to_le_bytes());
        for (c, d) in &self.frames {
            table.extend_from_slice(&c.to_le_bytes());
            table.extend_from_slice(&d.to_le_bytes());
        }
        table.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        table.push(0); // descriptor: no per-frame checksums in the table
        table.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        self.out.write_all(&table)?;
        self.written += table.len() as u64;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

/// The seek table that ends the file `f` of `len` bytes: each frame's
/// compressed and decompressed size. `Ok(None)` when the file does not end
/// with the seekable format's footer (a zstd stream written as one, by
/// ferry before 0.x or by `zstd` itself); `Err` says how a table that is
/// there does not describe the file (its frames must fill the file up to
/// it).
pub(crate) fn read_seek_table(f: &File, len: u64) -> Result<Option<Vec<(u32, u32)>>, TableError> {
    use std::os::unix::fs::FileExt;
    let at = |offset: u64, n: usize| -> Result<Vec<u8>, TableError> {
        let mut buf = vec![0u8; n];
        f.read_exact_at(&mut buf, offset).map_err(TableError::Io)?;
        Ok(buf)
    };
    let bad = |reason: String| TableError::Bad(reason);
    let u32_at = |b: &[u8], i: usize| -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(b.get(i..i + 4).unwrap_or(&[0; 4]));
        u32::from_le_bytes(w)
    };
    if len < SEEK_TABLE_FIXED {
        return Ok(None);
    }
    let footer = at(len - 9, 9)?;
    if u32_at(&footer, 5) != SEEKABLE_MAGIC {
        return Ok(None);
    }
    if footer.get(4) != Some(&0) {
        return Err(bad(format!(
            "has a descriptor ferry does not write ({:#04x})",
            footer.get(4).copied().unwrap_or(0)
        )));
    }
    let frames = u64::from(u32_at(&footer, 0));
    let table = SEEK_TABLE_FIXED + frames * SEEK_ENTRY;
    if table > len {
        return Err(bad(format!(
            "lists {frames} frames, more than the file's {len} bytes can hold"
        )));
    }
    let head = at(len - table, 8)?;
    if u32_at(&head, 0) != SKIPPABLE_MAGIC || u64::from(u32_at(&head, 4)) != table - 8 {
        return Err(bad(format!(
            "does not start where its footer says (byte {})",
            len - table
        )));
    }
    let entries = at(len - table + 8, (frames * SEEK_ENTRY) as usize)?;
    let list: Vec<(u32, u32)> = entries
        .chunks_exact(SEEK_ENTRY as usize)
        .map(|e| (u32_at(e, 0), u32_at(e, 4)))
        .collect();
    let compressed: u64 = list.iter().map(|(c, _)| u64::from(*c)).sum();
    if compressed != len - table {
        return Err(bad(format!(
            "lists {compressed} bytes of frames, but {} bytes come before it",
            len - table
        )));
    }
    Ok(Some(list))
}

/// Why a seek table cannot be read.
pub(crate) enum TableError {
    Io(io::Error),
    Bad(String),
}

impl TableError {
    /// The archive error for the file at `path`.
    pub(crate) fn at(self, path: &Path) -> ArchiveError {
        match self {
            TableError::Io(e) => ArchiveError::Io(io::Error::new(
                e.kind(),
                format!("reading the seek table of {}: {e}", path.display()),
            )),
            TableError::Bad(reason) => ArchiveError::SeekTable {
                archive: path.to_owned(),
                reason,
            },
        }
    }
}

/// Checks the seek table that ends the zstd volume at `path` against the
/// volume: its frames must fill the file up to the table, and their
/// decompressed sizes add up to `tar_len`, the bytes the volume
/// decompressed to. (zstd itself skips the table, so nothing else would
/// notice a damaged one, or a skippable frame slipped in elsewhere.)
pub(crate) fn check_seek_table(path: &Path, tar_len: u64) -> Result<(), ArchiveError> {
    let bad = |reason: String| ArchiveError::SeekTable {
        archive: path.to_owned(),
        reason,
    };
    let f = fs_err::File::open(path)?;
    let len = f.metadata()?.len();
    let Some(list) = read_seek_table(f.file(), len).map_err(|e| e.at(path))? else {
        return Err(bad(if len < SEEK_TABLE_FIXED {
            "is missing: the volume is too short to hold one".into()
        } else {
            "is missing: the volume does not end with one".into()
        }));
    };
    let decompressed: u64 = list.iter().map(|(_, d)| u64::from(*d)).sum();
    if decompressed != tar_len {
        return Err(bad(format!(
            "lists {decompressed} bytes of tar, but the volume decompresses to {tar_len}"
        )));
    }
    Ok(())
}

/// Fills `buf` from `r`, failing with `UnexpectedEof` if it ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::archive::compressed::DEFAULT_LEVEL;

    /// Noise zstd cannot shrink.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A frame whose sample does not compress is compressed at the fast
    /// level (the same bytes `zstd --fast=5` gives); one that compresses,
    /// or is too small to probe, at the level asked for; a frame of noise
    /// with text in its middle third still counts as compressible.
    #[test]
    fn incompressible_frames_take_the_fast_level_and_others_the_one_asked() {
        let c = |l| compressor(l).unwrap();
        let (mut z, mut probe, mut fast) = (c(DEFAULT_LEVEL), c(1), c(INCOMPRESSIBLE_LEVEL));
        let mut frame = |data: &[u8]| {
            let mut out = Vec::new();
            compress_frame(data, &mut out, &mut z, &mut probe, &mut fast).unwrap();
            out
        };
        let n = noise(1 << 20);
        assert_eq!(frame(&n), c(INCOMPRESSIBLE_LEVEL).compress(&n).unwrap());
        let text = b"ferry carries images across the air gap. ".repeat(30_000);
        assert_eq!(frame(&text), c(DEFAULT_LEVEL).compress(&text).unwrap());
        let mut mixed = noise(1 << 20);
        mixed[(1 << 19) - (64 << 10)..(1 << 19) + (64 << 10)].fill(b'x');
        assert_eq!(frame(&mixed), c(DEFAULT_LEVEL).compress(&mixed).unwrap());
        let small = noise(PROBE_MIN - 1);
        assert_eq!(frame(&small), c(DEFAULT_LEVEL).compress(&small).unwrap());
        // Either way zstd reads it back.
        let back = zstd::bulk::decompress(&frame(&n), n.len()).unwrap();
        assert!(back == n);
    }

    #[test]
    fn a_member_never_takes_more_than_the_plan_prices_it_at() {
        for data in [Vec::new(), noise(10), noise(600), noise((9 << 20) + 77)] {
            let size = data.len() as u64;
            let mut fw = FrameWriter::new(Vec::new(), DEFAULT_LEVEL);
            if fw.member("m", size, 0, &mut &data[..]).is_err() || fw.flush_frames().is_err() {
                panic!("writing {size} bytes");
            }
            let cost = fw.written + fw.frames.len() as u64 * SEEK_ENTRY;
            let tar = BLOCK + size + padding(size);
            assert!(cost <= framed_bound(tar), "{size}: {cost}");
            // Frames hold at most FRAME_MAX and never span two members.
            assert_eq!(fw.frames.len() as u64, tar.div_ceil(FRAME_MAX));
            assert_eq!(fw.frames.iter().map(|f| f.1 as u64).sum::<u64>(), tar);
        }
    }

    #[test]
    fn a_volume_ends_with_a_seek_table_zstd_skips() {
        let data = noise(5000);
        let mut fw = FrameWriter::new(Vec::new(), DEFAULT_LEVEL);
        assert!(fw.member("m", 5000, 0, &mut &data[..]).is_ok());
        assert!(fw.flush_frames().is_ok());
        let frames = fw.frames.len() as u32 + 1;
        let Ok((bytes, _)) = fw.finish() else {
            panic!("finishing");
        };
        // Footer: frame count, descriptor, seekable magic.
        let footer = &bytes[bytes.len() - 9..];
        assert_eq!(&footer[5..], &SEEKABLE_MAGIC.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]),
            frames
        );
        let Ok(plain) = zstd::stream::decode_all(&bytes[..]) else {
            panic!("zstd cannot read the volume");
        };
        assert_eq!(plain.len() as u64, BLOCK + 5000 + padding(5000) + 2 * BLOCK);
        assert_eq!(&plain[512..5512], &data[..]);
    }
}
