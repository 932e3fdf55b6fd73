//! Random access to a framed zstd archive: one file whose members are each
//! in zstd frames of their own, listed by the seekable format's seek table
//! at its end. [`open`] reads the table, reads bundle.json, checks that the
//! frames tile the members bundle.json declares (no frame spans two
//! members, none is larger than [`FRAME_MAX`](super::frames::FRAME_MAX))
//! and that every member's tar header is the one expected there; then
//! [`FramedReader`] reads any member, or any stretch of one, by
//! decompressing only the frames that hold it, so readers work in
//! parallel and by offset, as over a plain archive.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::super::volumes::VOLUME_HEADER_PATH;
use super::super::{
    check_member, padding, parse_header, Archive, ArchiveError, Entry, Header, Span, BLOCK,
};
use super::frames::{frame_bound, FRAME_MAX};
use super::read::Stream;
use crate::format::bundle::{BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::format::sign::SIGNATURE_PATH;

/// One zstd frame of a framed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Where its compressed bytes start in the file.
    pub at: u64,
    /// How many compressed bytes it takes.
    pub len: u32,
    /// Where its bytes start in the tar it decompresses to.
    pub tar: u64,
    /// How many tar bytes it holds.
    pub tar_len: u32,
}

/// The frames of a file, from its seek table: each frame's place in the
/// file and in the tar. `Err` with the reason when the table is not one
/// ferry can read by offset (sizes that overflow, a frame larger than
/// ferry writes).
pub(crate) fn frames_of(table: &[(u32, u32)]) -> Result<Vec<Frame>, String> {
    let mut out = Vec::with_capacity(table.len());
    let (mut at, mut tar) = (0u64, 0u64);
    let most = frame_bound(FRAME_MAX);
    for (i, &(len, tar_len)) in table.iter().enumerate() {
        if u64::from(tar_len) > FRAME_MAX || tar_len == 0 {
            return Err(format!(
                "lists frame {i} with {tar_len} bytes of tar; ferry writes frames of 1 to {FRAME_MAX}"
            ));
        }
        if u64::from(len) > most || len == 0 {
            return Err(format!(
                "lists frame {i} with {len} compressed bytes; a frame of {tar_len} bytes takes at most {most}"
            ));
        }
        out.push(Frame {
            at,
            len,
            tar,
            tar_len,
        });
        at = at
            .checked_add(u64::from(len))
            .ok_or_else(|| "lists sizes that overflow".to_owned())?;
        tar = tar
            .checked_add(u64::from(tar_len))
            .ok_or_else(|| "lists sizes that overflow".to_owned())?;
    }
    Ok(out)
}

/// One tar member as it must be in the file: its path and size, where its
/// header starts in the tar, and the frames (a range of indexes) it takes.
struct Placed {
    path: String,
    size: u64,
    start: u64,
    frames: std::ops::Range<usize>,
}

/// Opens the framed zstd archive `path` (whose seek table `table` ends it)
/// for random access, or the zstd volumes it is the first of (`None` when
/// they do not all open so: they are then read in order). With `lenient`, damage after bundle.json (a member
/// whose header cannot be read or is not the one expected) is recorded in
/// the archive's faults and the other members are still given; otherwise
/// it is an error.
pub(crate) fn open(
    path: &Path,
    file: File,
    table: &[(u32, u32)],
    lenient: bool,
) -> Result<Option<Archive>, ArchiveError> {
    let lie = |reason: String| ArchiveError::SeekTable {
        archive: path.to_owned(),
        reason,
    };
    let frames = frames_of(table).map_err(lie)?;
    // The head, through a streaming decoder: the first frames only.
    let head = Stream::open(path)?;
    if head.bundle.volumes.is_some() {
        // The first of zstd volumes: read by offset too when the whole
        // set is as its plan says, else in order.
        return Ok(open_volumes(path, file, frames, head));
    }
    // Every tar member, in order, as bundle.json and the signature say.
    let members = &head.bundle.members;
    let mut listed: Vec<(String, u64)> = Vec::with_capacity(members.len() + 2);
    let mut rest = members.iter().map(|m| (m.path.clone(), m.size));
    listed.extend(rest.next());
    listed.push((BUNDLE_PATH.to_owned(), head.bundle_bytes.len() as u64));
    if let Some(sig) = &head.signature {
        listed.push((SIGNATURE_PATH.to_owned(), sig.len() as u64));
    }
    listed.extend(rest);
    if listed.first().is_none_or(|(p, _)| p != OCI_LAYOUT_PATH) {
        return Err(ArchiveError::NotFerry {
            archive: path.to_owned(),
            reason: "bundle.json does not list oci-layout first".into(),
        });
    }
    // The frames must tile the members exactly, then the end marker.
    let mut placed = Vec::with_capacity(listed.len());
    let (mut next, mut start) = (0usize, 0u64);
    for (p, size) in &listed {
        let at = start;
        let len = size
            .checked_add(BLOCK + padding(*size))
            .ok_or_else(|| lie(format!("cannot describe {p}, whose size overflows")))?;
        let range = tile(&frames, &mut start, &mut next, p, len).map_err(lie)?;
        placed.push(Placed {
            path: p.clone(),
            size: *size,
            start: at,
            frames: range,
        });
    }
    let end_frames = tile(
        &frames,
        &mut start,
        &mut next,
        "the end-of-archive marker",
        2 * BLOCK,
    )
    .map_err(lie)?;
    if next != frames.len() {
        return Err(lie(format!(
            "lists {} frames after the end-of-archive marker",
            frames.len() - next
        )));
    }
    let file = Arc::new(file);
    let frames = Arc::new(frames);
    let index = FrameIndex {
        path: path.to_owned(),
        file: file.clone(),
        frames: frames.clone(),
    };
    // Every header, and the end marker, decoded from the first bytes of
    // each member's first frame (in parallel; the data is read later).
    let checked: Vec<Result<(), ArchiveError>> =
        placed.par_iter().map(|m| index.check_header(m)).collect();
    let marker = index.check_end(end_frames);
    let mut entries = Vec::with_capacity(placed.len());
    let mut faults = Vec::new();
    for (m, r) in placed.iter().zip(checked) {
        if let Err(e) = r {
            if !lenient {
                return Err(e);
            }
            faults.push(e);
            continue;
        }
        if m.path == BUNDLE_PATH || m.path == SIGNATURE_PATH {
            continue;
        }
        entries.push(Entry {
            path: m.path.clone(),
            size: m.size,
            spans: vec![Span {
                volume: 0,
                offset: m.start + BLOCK,
                len: m.size,
            }],
        });
    }
    if let Err(e) = marker {
        if !lenient {
            return Err(e);
        }
        faults.push(e);
    }
    Ok(Some(Archive::from_frames(
        path,
        file,
        frames,
        head.bundle,
        head.bundle_bytes,
        head.signature,
        entries,
        faults,
    )))
}

/// Zstd volumes, whose first is `path` (open as `first`, with its frames
/// `first_frames`), opened for random access: every volume must be there,
/// its seek table must tile exactly what the plan puts in it (after the
/// `ferry-volume.json` that volume must hold, byte for byte), every tar
/// header must be the one expected, and each end marker zeros. Anything
/// else gives `None`, and the set is read in order by [`Stream`], which
/// names the damage volume by volume. Members are then read through the
/// frames that hold them, a member split between volumes through each
/// volume's frames in turn.
fn open_volumes(
    path: &Path,
    first: File,
    first_frames: Vec<Frame>,
    head: Stream,
) -> Option<Archive> {
    let plan = head.bundle.volumes.as_ref()?;
    let files = head.files().to_vec();
    let n = files.len();
    if plan.volumes.len() != n {
        return None;
    }
    let members = &head.bundle.members;
    let index: std::collections::HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.path.as_str(), i))
        .collect();
    // Each member's spans (volume, tar offset of its data, length), and
    // how far into the member the pieces seen so far reach.
    let mut spans: Vec<Vec<Span>> = vec![Vec::new(); members.len()];
    let mut reach: Vec<u64> = vec![0; members.len()];
    let mut opened = Vec::with_capacity(n);
    let mut all_frames = Vec::with_capacity(n);
    let mut first = Some((first, first_frames));
    for (v, vol) in plan.volumes.iter().enumerate() {
        let vpath = files.get(v)?;
        // What the volume holds, in order: tar path, size, and the
        // member a piece belongs to.
        let mut list: Vec<(String, u64, Option<usize>)> = Vec::new();
        let header = (v > 0).then(|| {
            super::super::volumes::VolumeHeader {
                format: "ferry-volume".into(),
                id: plan.id,
                volume: v + 1,
                volumes: n,
            }
            .to_bytes()
        });
        if let Some(h) = &header {
            list.push((VOLUME_HEADER_PATH.to_owned(), h.len() as u64, None));
        }
        for (k, p) in vol.pieces.iter().enumerate() {
            let i = *index.get(p.member.as_str())?;
            if p.offset != *reach.get(i)? {
                return None;
            }
            *reach.get_mut(i)? = p.offset.checked_add(p.size)?;
            list.push((p.tar_path(), p.size, Some(i)));
            if v == 0 && k == 0 {
                if p.tar_path() != OCI_LAYOUT_PATH {
                    return None;
                }
                list.push((BUNDLE_PATH.to_owned(), head.bundle_bytes.len() as u64, None));
                if let Some(sig) = &head.signature {
                    list.push((SIGNATURE_PATH.to_owned(), sig.len() as u64, None));
                }
            }
        }
        let (file, frames) = match first.take() {
            Some(f) => f,
            None => {
                let f = File::open(vpath).ok()?;
                let len = f.metadata().ok()?.len();
                let table = super::frames::read_seek_table(&f, len).ok()??;
                let frames = frames_of(&table).ok()?;
                (f, frames)
            }
        };
        let (mut next, mut start) = (0usize, 0u64);
        let mut placed = Vec::with_capacity(list.len());
        for (p, size, _) in &list {
            let at = start;
            let len = size.checked_add(BLOCK + padding(*size))?;
            let range = tile(&frames, &mut start, &mut next, p, len).ok()?;
            placed.push(Placed {
                path: p.clone(),
                size: *size,
                start: at,
                frames: range,
            });
        }
        let end = tile(&frames, &mut start, &mut next, "the end", 2 * BLOCK).ok()?;
        if next != frames.len() {
            return None;
        }
        let file = Arc::new(file);
        let frames = Arc::new(frames);
        let idx = FrameIndex {
            path: vpath.clone(),
            file: file.clone(),
            frames: frames.clone(),
        };
        if !placed.par_iter().all(|m| idx.check_header(m).is_ok()) {
            return None;
        }
        idx.check_end(end).ok()?;
        if let (Some(h), Some(m)) = (&header, placed.first()) {
            let bytes = decode(&file, frames.get(m.frames.start), m.frames.start).ok()?;
            if bytes.get(BLOCK as usize..BLOCK as usize + h.len())? != h.as_slice() {
                return None;
            }
        }
        for (m, (_, _, member)) in placed.iter().zip(&list) {
            if let Some(i) = member {
                spans.get_mut(*i)?.push(Span {
                    volume: v,
                    offset: m.start + BLOCK,
                    len: m.size,
                });
            }
        }
        opened.push((vpath.clone(), file));
        all_frames.push(frames);
    }
    let mut entries = Vec::with_capacity(members.len());
    for ((m, spans), reach) in members.iter().zip(spans).zip(reach) {
        if spans.is_empty() || reach != m.size {
            return None;
        }
        entries.push(Entry {
            path: m.path.clone(),
            size: m.size,
            spans,
        });
    }
    Some(Archive::from_volume_frames(
        path,
        opened,
        all_frames,
        head.bundle,
        head.bundle_bytes,
        head.signature,
        entries,
    ))
}

/// The frames from `next` on that hold `len` tar bytes from `start`
/// (`what`), exactly: the last of them must end where they do. Moves
/// `start` and `next` past them.
fn tile(
    frames: &[Frame],
    start: &mut u64,
    next: &mut usize,
    what: &str,
    len: u64,
) -> Result<std::ops::Range<usize>, String> {
    let end = start
        .checked_add(len)
        .ok_or_else(|| format!("cannot describe {what}, whose place overflows"))?;
    let first = *next;
    while let Some(f) = frames.get(*next) {
        let f_end = f.tar + u64::from(f.tar_len);
        if f_end > end {
            return Err(format!(
                "lists frame {} (tar bytes {}-{}), which runs past the end of {what} (tar byte {end}): a frame must hold one member",
                *next, f.tar, f_end
            ));
        }
        *next += 1;
        if f_end == end {
            *start = end;
            return Ok(first..*next);
        }
    }
    Err(format!(
        "ends before {what} does: its frames hold {} bytes of tar",
        frames.last().map_or(0, |f| f.tar + u64::from(f.tar_len))
    ))
}

/// A framed file: its path, the open file and its frames.
struct FrameIndex {
    path: PathBuf,
    file: Arc<File>,
    frames: Arc<Vec<Frame>>,
}

impl FrameIndex {
    /// Checks the tar header at the start of `m`'s first frame.
    fn check_header(&self, m: &Placed) -> Result<(), ArchiveError> {
        let Some(f) = self.frames.get(m.frames.start) else {
            return Err(ArchiveError::SeekTable {
                archive: self.path.clone(),
                reason: format!("lists no frame for {}", m.path),
            });
        };
        let damaged = |source| ArchiveError::Frame {
            archive: self.path.clone(),
            member: m.path.clone(),
            frame: m.frames.start,
            offset: f.at,
            source,
        };
        let block = self.first_block(f).map_err(damaged)?;
        let checked = parse_header(&self.path, m.start, &block).and_then(|(found, size)| {
            let h = Header {
                path: found,
                offset: m.start + BLOCK,
                size,
            };
            let (seen, known) = (Default::default(), Default::default());
            check_member(
                &self.path,
                Some(&(m.path.clone(), m.size)),
                &h,
                &seen,
                &known,
            )
        });
        match checked {
            Ok(()) => Ok(()),
            // A header that is not the one expected may be a damaged
            // frame (zstd finds out only at the frame's checksum): then
            // the frame is named, with the member it holds.
            Err(e) => match decode(&self.file, Some(f), m.frames.start) {
                Err(source) => Err(damaged(source)),
                Ok(_) => Err(e),
            },
        }
    }

    /// Checks the end-of-archive marker's frames decode to zeros.
    fn check_end(&self, range: std::ops::Range<usize>) -> Result<(), ArchiveError> {
        for i in range {
            let bytes = decode(&self.file, self.frames.get(i), i).map_err(|source| {
                ArchiveError::Frame {
                    archive: self.path.clone(),
                    member: "the end-of-archive marker".into(),
                    frame: i,
                    offset: self.frames.get(i).map_or(0, |f| f.at),
                    source,
                }
            })?;
            if let Some(at) = bytes.iter().position(|&b| b != 0) {
                let tar = self.frames.get(i).map_or(0, |f| f.tar);
                return Err(ArchiveError::BadHeader {
                    archive: self.path.clone(),
                    offset: tar + at as u64,
                    reason: "the end-of-archive marker holds data".into(),
                });
            }
        }
        Ok(())
    }

    /// The first 512 bytes frame `f` decompresses to, decoding as little
    /// of it as it can: a zstd block is at most 128 KiB, so the first
    /// block of a large frame is in its first 128 KiB and some bytes.
    fn first_block(&self, f: &Frame) -> io::Result<[u8; BLOCK as usize]> {
        let mut block = [0u8; BLOCK as usize];
        let prefix = u64::from(f.len).min((128 << 10) + 64) as usize;
        let mut c = vec![0u8; prefix];
        self.file.read_exact_at(&mut c, f.at)?;
        let first = zstd::stream::read::Decoder::with_buffer(&c[..])
            .and_then(|mut d| d.read_exact(&mut block));
        if first.is_ok() || prefix == f.len as usize {
            return first.map(|_| block);
        }
        let mut c = vec![0u8; f.len as usize];
        self.file.read_exact_at(&mut c, f.at)?;
        zstd::stream::read::Decoder::with_buffer(&c[..])?.read_exact(&mut block)?;
        Ok(block)
    }
}

/// Decompresses frame `i` (`f`) of `file` whole, checking it gives exactly
/// the tar bytes the seek table lists (and, through zstd, its checksum).
fn decode(file: &File, f: Option<&Frame>, i: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Decoder::new()?.decode(file, f, i, &mut out)?;
    Ok(out)
}

/// A decompression context and a buffer for compressed bytes, kept for
/// the frames one reader decodes in turn.
struct Decoder {
    z: zstd::bulk::Decompressor<'static>,
    compressed: Vec<u8>,
}

impl Decoder {
    fn new() -> io::Result<Decoder> {
        Ok(Decoder {
            z: zstd::bulk::Decompressor::new()?,
            compressed: Vec::new(),
        })
    }

    /// Decompresses frame `i` (`f`) of `file` into `out` (replacing what
    /// it held), checking it gives exactly the tar bytes the seek table
    /// lists (and, through zstd, its checksum).
    fn decode(
        &mut self,
        file: &File,
        f: Option<&Frame>,
        i: usize,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let Some(f) = f else {
            return Err(io::Error::other(format!(
                "frame {i} is not in the seek table"
            )));
        };
        self.compressed.resize(f.len as usize, 0);
        file.read_exact_at(&mut self.compressed, f.at)?;
        out.clear();
        out.reserve_exact(f.tar_len as usize);
        self.z.decompress_to_buffer(&self.compressed[..], out)?;
        check_len(out, f)
    }
}

/// Checks a decoded frame is as long as the seek table says.
fn check_len(out: &[u8], f: &Frame) -> io::Result<()> {
    if out.len() != f.tar_len as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it decompresses to {} bytes, not the {} the seek table lists",
                out.len(),
                f.tar_len
            ),
        ));
    }
    Ok(())
}

/// Reads `len` tar bytes from tar offset `start` of a framed file (one
/// member's data, or part of it), decompressing each frame it needs once.
/// A frame that cannot be decompressed is an error naming `member`, the
/// frame and where it is in the file.
pub struct FramedReader {
    path: PathBuf,
    member: String,
    file: Arc<File>,
    frames: Arc<Vec<Frame>>,
    /// Tar offset of the member's first data byte, of the next byte to
    /// give, and where to stop.
    data: u64,
    pos: u64,
    end: u64,
    /// The frame decompressed last: its index and bytes.
    held: Option<usize>,
    bytes: Vec<u8>,
    /// Made on first use.
    decoder: Option<Decoder>,
    /// For a read of [`AHEAD_MIN`] frames or more: a thread decompressing
    /// the next frames while the caller uses this one (made on first use;
    /// `Some(None)` when it could not be started or stopped early).
    ahead: Option<Option<Ahead>>,
    /// Counted in [`BUSY`] (from its first frame until it is dropped).
    busy: bool,
}

/// Reads spanning at least this many frames decompress ahead on a thread
/// of their own, so one large member (a big layer) uses two cores: one
/// decompressing, one using the bytes (hashing, sending).
const AHEAD_MIN: usize = 3;

/// Framed readers reading now. A reader decompresses ahead only while
/// fewer are busy than there are cores: when readers already run in
/// parallel (verify of many layers), another thread per reader would only
/// compete with them for the cores and hold more frames in memory.
static BUSY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a reader starting now has a core to spare for reading ahead.
fn core_to_spare() -> bool {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    BUSY.load(std::sync::atomic::Ordering::Relaxed) < cores
}

/// Frames decompressed ahead, in order, by a thread of their own: at most
/// one waiting and one being decompressed.
struct Ahead {
    rx: std::sync::mpsc::Receiver<(usize, io::Result<Vec<u8>>)>,
    /// Used buffers, for the thread to decompress into again.
    back: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Ahead {
    /// Starts decompressing frames `first..=last` of `file`.
    fn start(file: Arc<File>, frames: Arc<Vec<Frame>>, first: usize, last: usize) -> Option<Ahead> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (back, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("ferry-frames".into())
            .spawn(move || {
                let mut d = match Decoder::new() {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send((first, Err(e)));
                        return;
                    }
                };
                for j in first..=last {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    let r = d.decode(&file, frames.get(j), j, &mut buf).map(|()| buf);
                    let failed = r.is_err();
                    // The reader dropped: nothing more is wanted.
                    if tx.send((j, r)).is_err() || failed {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Ahead { rx, back })
    }
}

impl FramedReader {
    /// A reader over `len` bytes from `start` of the data of `member`,
    /// which is at tar offset `data` of the framed file `path` (open as
    /// `file`).
    pub(crate) fn new(
        path: &Path,
        member: &str,
        file: Arc<File>,
        frames: Arc<Vec<Frame>>,
        data: u64,
        start: u64,
        len: u64,
    ) -> FramedReader {
        let pos = data.saturating_add(start);
        FramedReader {
            path: path.to_owned(),
            member: member.to_owned(),
            file,
            frames,
            data,
            pos,
            end: pos.saturating_add(len),
            held: None,
            bytes: Vec::new(),
            decoder: None,
            ahead: None,
            busy: false,
        }
    }

    /// Error `e` from decompressing frame `i`, naming the member, where in
    /// it the frame starts and where its compressed bytes are.
    fn damaged(&self, i: usize, e: io::Error) -> io::Error {
        let f = self.frames.get(i).copied();
        io::Error::new(
            e.kind(),
            format!(
                "{}: the frame holding {} from its byte {} (frame {i}, compressed bytes from {}) is damaged: {e}",
                self.path.display(),
                self.member,
                f.map_or(0, |f| f.tar.saturating_sub(self.data)),
                f.map_or(0, |f| f.at)
            ),
        )
    }

    /// The index of the frame holding tar byte `at`.
    fn frame_at(&self, at: u64) -> Option<usize> {
        let i = self
            .frames
            .partition_point(|f| f.tar <= at)
            .checked_sub(1)?;
        let f = self.frames.get(i)?;
        (at < f.tar + u64::from(f.tar_len)).then_some(i)
    }

    /// Gives the bytes of the current frame from the current position on
    /// (decompressing the frame when it is not the one held).
    pub fn chunk(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.end {
            return Ok(&[]);
        }
        let Some(i) = self.frame_at(self.pos) else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: {} ends at tar byte {}, past the last frame",
                    self.path.display(),
                    self.member,
                    self.pos
                ),
            ));
        };
        if self.held != Some(i) {
            self.held = None;
            if self.ahead.is_none() {
                let last = self.frame_at(self.end.saturating_sub(1)).unwrap_or(i);
                if !self.busy {
                    self.busy = true;
                    BUSY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.ahead = Some(if last + 1 >= i + AHEAD_MIN && core_to_spare() {
                    Ahead::start(self.file.clone(), self.frames.clone(), i, last)
                } else {
                    None
                });
            }
            if let Some(Some(a)) = &self.ahead {
                match a.rx.recv() {
                    Ok((j, Ok(buf))) if j == i => {
                        let used = std::mem::replace(&mut self.bytes, buf);
                        let _ = a.back.send(used);
                        self.held = Some(i);
                    }
                    Ok((j, Err(e))) if j == i => return Err(self.damaged(i, e)),
                    // Out of step, or the thread ended: decompress here.
                    _ => self.ahead = Some(None),
                }
            }
        }
        if self.held != Some(i) {
            let f = self.frames.get(i).copied();
            if self.decoder.is_none() {
                // A context and buffers a thread kept from a reader before
                // (fresh ones for every member cost page faults).
                let kept = KEPT.with(|k| k.borrow_mut().pop());
                let (d, bytes) = match kept {
                    Some(k) => k,
                    None => (Decoder::new()?, Vec::new()),
                };
                self.bytes = bytes;
                self.decoder = Some(d);
            }
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(&[]);
            };
            if let Err(e) = decoder.decode(&self.file, f.as_ref(), i, &mut self.bytes) {
                return Err(self.damaged(i, e));
            }
            self.held = Some(i);
        }
        let Some(f) = self.frames.get(i) else {
            return Ok(&[]);
        };
        let from = (self.pos - f.tar) as usize;
        let to = ((self.end - f.tar) as usize).min(self.bytes.len());
        Ok(self.bytes.get(from..to).unwrap_or_default())
    }

    /// Marks `n` bytes of the last [`FramedReader::chunk`] as used.
    pub fn consume(&mut self, n: usize) {
        self.pos += n as u64;
    }
}

/// A reader over a member's stretches in one or more framed files (a
/// member split between zstd volumes has one in each volume it is in),
/// each read through its frames, in turn.
pub struct FramedChain {
    parts: Vec<FramedReader>,
    at: usize,
    /// Why the member cannot be read (a volume the archive did not open).
    broken: Option<String>,
}

impl FramedChain {
    pub(crate) fn new(parts: Vec<FramedReader>, broken: Option<String>) -> FramedChain {
        FramedChain {
            parts,
            at: 0,
            broken,
        }
    }

    /// Gives the bytes of the current frame from the current position on
    /// (empty at the end).
    pub fn chunk(&mut self) -> io::Result<&[u8]> {
        if let Some(b) = &self.broken {
            return Err(io::Error::new(io::ErrorKind::NotFound, b.clone()));
        }
        while self.parts.get(self.at).is_some_and(|p| p.pos >= p.end) {
            self.at += 1;
        }
        match self.parts.get_mut(self.at) {
            Some(p) => p.chunk(),
            None => Ok(&[]),
        }
    }

    /// Marks `n` bytes of the last [`FramedChain::chunk`] as used.
    pub fn consume(&mut self, n: usize) {
        if let Some(p) = self.parts.get_mut(self.at) {
            p.consume(n);
        }
    }
}

impl Read for FramedChain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.chunk()?;
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.consume(n);
        Ok(n)
    }
}

thread_local! {
    /// Decoders and frame buffers kept for the next reader on this thread.
    static KEPT: std::cell::RefCell<Vec<(Decoder, Vec<u8>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for FramedReader {
    fn drop(&mut self) {
        if self.busy {
            BUSY.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(d) = self.decoder.take() {
            let bytes = std::mem::take(&mut self.bytes);
            KEPT.with(|k| {
                let mut k = k.borrow_mut();
                if k.len() < 2 {
                    k.push((d, bytes));
                }
            });
        }
    }
}

impl Read for FramedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.chunk()?;
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.consume(n);
        Ok(n)
    }
}
