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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::volumes::{volume_path, VolumeHeader, VOLUME_HEADER_MAX, VOLUME_HEADER_PATH};
use super::{
    check_member, padding, parse_header, ustar_header, Archive, ArchiveError, Entry, Header,
    PlannedMember, Span, Written, BLOCK,
};
use crate::base::digest::{Digest, Hasher, COPY_BUF};
use crate::base::report::Reporter;
use crate::format::bundle::{Bundle, BUNDLE_MAX_BYTES, BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::format::sign::{SIGNATURE_MAX_BYTES, SIGNATURE_PATH};

/// The default compression level.
pub const DEFAULT_LEVEL: i32 = 3;
/// JSON members up to this size are kept in memory by [`scan`].
const KEEP_MAX: u64 = crate::format::oci::MANIFEST_MAX_BYTES * 4;
/// The most a scan keeps in memory in all.
pub const KEPT_MAX_BYTES: u64 = 256 << 20;
/// The most zero padding accepted after the end-of-archive marker.
pub const TRAILING_MAX: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Writing

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
    let tmp = super::partial_file(out)?;
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
        let (mut hr, source_path) = super::open_verified(m, reporter)?;
        put_member(&mut enc, &m.path, m.size, mtime, &mut hr).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::Other {
                ArchiveError::SourceRead {
                    source_path: source_path.clone(),
                    member: m.path.clone(),
                    source: e,
                }
            } else {
                ArchiveError::Io(werr(e))
            }
        })?;
        super::check_source(m, source_path, hr)?;
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

// ---------------------------------------------------------------------------
// Writing zstd volumes

/// Uncompressed bytes per frame in zstd volumes. Frames never span two
/// members and the seek table lists them all, so a reader can start at
/// any member, and frames can be decompressed in parallel.
pub(crate) const FRAME_MAX: u64 = 4 << 20;
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
fn frame_bound(n: u64) -> u64 {
    zstd::zstd_safe::compress_bound(n as usize) as u64 + 32 + SEEK_ENTRY
}

/// The most `len` uncompressed bytes of one tar member take as frames.
pub(crate) fn framed_bound(len: u64) -> u64 {
    let (full, rest) = (len / FRAME_MAX, len % FRAME_MAX);
    full * frame_bound(FRAME_MAX) + if rest > 0 { frame_bound(rest) } else { 0 }
}

/// Writes the archive as zstd volumes `OUT.001`, … and the sidecar
/// `OUT.sha256`, as `bundle`'s volume plan (made with
/// [`Framing::Zstd`](super::volumes::Framing)) says. Each volume is a zstd
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
    let mut current: Option<(super::write::SourceReader<'_>, PathBuf)> = None;
    for (v, vol) in plan.volumes.iter().enumerate() {
        let Some(fin) = finals.get(v) else { break };
        let tmp = super::partial_file(fin)?;
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
                current = Some(super::open_verified(m, reporter)?);
            }
            let Some((hr, source_path)) = current.as_mut() else {
                return Err(not_ferry(format!(
                    "the plan continues {} before it starts",
                    p.member
                )));
            };
            fw.member(&p.tar_path(), p.size, mtime, hr)
                .map_err(|e| match e {
                    Put::Read(source) => ArchiveError::SourceRead {
                        source_path: source_path.clone(),
                        member: m.path.clone(),
                        source,
                    },
                    Put::Write(e) => ArchiveError::Io(werr(e)),
                })?;
            if p.offset + p.size == m.size {
                if let Some((hr, source_path)) = current.take() {
                    super::check_source(m, source_path, hr)?;
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
    let sidecar = super::write::persist(out, tmps, &finals, true)?;
    Ok(Written {
        files: finals.into_iter().zip(sizes).collect(),
        sidecar,
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
        let (reader, source_path) = super::open_source(m)?;
        let mut fw = FrameWriter::new(io::sink(), level);
        let mut r = super::Progress {
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

/// Writes tar members as zstd frames and, at the end, the seek table.
struct FrameWriter<W: Write> {
    out: W,
    level: i32,
    written: u64,
    /// Each frame's compressed and decompressed size.
    frames: Vec<(u32, u32)>,
}

impl<W: Write> FrameWriter<W> {
    fn new(out: W, level: i32) -> FrameWriter<W> {
        FrameWriter {
            out,
            level,
            written: 0,
            frames: Vec::new(),
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
    /// cut into frames of at most [`FRAME_MAX`] bytes, compressed a batch
    /// at a time in parallel.
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
        let batch = rayon::current_num_threads().max(1) * 2;
        let mut done = 0u64;
        while done < total {
            let mut chunks = Vec::with_capacity(batch);
            while chunks.len() < batch && done < total {
                let len = (total - done).min(FRAME_MAX) as usize;
                let mut chunk = vec![0u8; len];
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
                chunks.push(chunk);
            }
            let level = self.level;
            let compressed = chunks
                .par_iter()
                .map(|c| {
                    let mut z = zstd::bulk::Compressor::new(level)?;
                    z.include_checksum(true)?;
                    z.compress(c)
                })
                .collect::<io::Result<Vec<Vec<u8>>>>()
                .map_err(Put::Write)?;
            for (c, z) in chunks.iter().zip(&compressed) {
                self.out.write_all(z).map_err(Put::Write)?;
                self.written += z.len() as u64;
                self.frames.push((z.len() as u32, c.len() as u32));
            }
        }
        Ok(())
    }

    /// The end-of-archive marker and the seek table; returns the writer
    /// and the bytes written in all.
    fn finish(mut self) -> io::Result<(W, u64)> {
        let end = [0u8; 2 * BLOCK as usize];
        let z = zstd::bulk::Compressor::new(self.level).and_then(|mut z| {
            z.include_checksum(true)?;
            z.compress(&end)
        })?;
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

// ---------------------------------------------------------------------------
// Reading

/// A compressed archive read once, in order: one zstd stream, or zstd
/// volumes read one after the other. After [`Stream::open`] the table of
/// contents is known; [`Stream::next_member`] moves to each member in turn
/// (checked against bundle.json, and against the volume plan) and `Read`
/// gives its bytes, across volumes for a member split between them.
pub struct Stream {
    /// The file that opened the archive (the first volume, when split).
    path: PathBuf,
    /// The archive's files: itself, or each volume in order.
    files: Vec<PathBuf>,
    /// The volume-set id, when split.
    split: Option<Digest>,
    /// The volume being read (from 0) and its file.
    volume: usize,
    file: PathBuf,
    dec: zstd::stream::read::Decoder<'static, BufReader<File>>,
    /// Uncompressed bytes consumed in this file.
    pos: u64,
    /// The table of contents.
    pub bundle: Bundle,
    /// Its raw bytes.
    pub bundle_bytes: Vec<u8>,
    /// The signature of bundle.json, when signed.
    pub signature: Option<Vec<u8>>,
    /// The bytes of `oci-layout` (member 0, read while opening).
    pub layout: Vec<u8>,
    /// Every tar member the archive must hold after bundle.json, in order.
    pieces: Vec<PieceAt>,
    next: usize,
    /// Tar paths seen in this file.
    seen: HashSet<String>,
    /// A header already read while looking for the signature (`Some(None)`:
    /// the end marker).
    pending: Option<Option<Header>>,
    /// What is left of the current piece, its padding, and whether more
    /// pieces of the same member follow.
    left: u64,
    pad: u64,
    continues: bool,
    /// Where the current member's bytes were.
    spans: Vec<Span>,
    /// The error met inside `read` (which can only return an io::Error).
    fault: Option<ArchiveError>,
    /// A volume that could not be opened: nothing more is read until
    /// [`Stream::resume`] moves past it.
    gone: Option<usize>,
}

/// One tar member of the archive as planned: a whole member, or a part of
/// one split across volumes.
struct PieceAt {
    volume: usize,
    tar_path: String,
    size: u64,
    /// Its member's index in bundle.json's members.
    member: usize,
    /// Whether it is the member's first piece, and its last.
    first: bool,
    last: bool,
}

impl Stream {
    /// The archive view of what was read: the entries found, the faults
    /// met, the digests computed and the small members kept.
    fn into_archive(
        self,
        entries: Vec<Entry>,
        faults: Vec<ArchiveError>,
        digests: HashMap<String, Digest>,
        kept: HashMap<String, Arc<Vec<u8>>>,
    ) -> Archive {
        Archive::from_stream(
            &self.path,
            &self.files,
            self.bundle,
            self.bundle_bytes,
            self.signature,
            entries,
            faults,
            digests,
            kept,
        )
    }

    /// Opens a compressed archive (or the first of its zstd volumes) and
    /// reads it as far as bundle.json and the signature.
    pub fn open(path: &Path) -> Result<Stream, ArchiveError> {
        let dec = decoder(path)?;
        let not_ferry = |reason: String| ArchiveError::NotFerry {
            archive: path.to_owned(),
            reason,
        };
        let mut s = Stream {
            path: path.to_owned(),
            files: vec![path.to_owned()],
            split: None,
            volume: 0,
            file: path.to_owned(),
            dec,
            pos: 0,
            bundle: placeholder(),
            bundle_bytes: Vec::new(),
            signature: None,
            layout: Vec::new(),
            pieces: Vec::new(),
            next: 1,
            seen: HashSet::new(),
            pending: None,
            left: 0,
            pad: 0,
            continues: false,
            spans: Vec::new(),
            fault: None,
            gone: None,
        };
        let first = s
            .header("the first member")?
            .ok_or_else(|| not_ferry("it holds no members".into()))?;
        if first.path == VOLUME_HEADER_PATH {
            let header = s.volume_header(&first)?;
            return Err(ArchiveError::NotFirstVolume {
                path: path.to_owned(),
                volume: header.volume,
                volumes: header.volumes,
                hint: first_volume_hint(path),
            });
        }
        if first.path != OCI_LAYOUT_PATH {
            return Err(not_ferry(format!(
                "its first member is {:?}, not oci-layout",
                first.path
            )));
        }
        s.layout = s.small_data(&first, 4096)?;
        let second = s
            .header("bundle.json")?
            .ok_or_else(|| not_ferry("it has no bundle.json".into()))?;
        if second.path != BUNDLE_PATH {
            return Err(not_ferry(format!(
                "its second member is {:?}, not bundle.json",
                second.path
            )));
        }
        s.bundle_bytes = s.small_data(&second, BUNDLE_MAX_BYTES)?;
        s.bundle = Bundle::from_slice(&s.bundle_bytes).map_err(|source| ArchiveError::Bundle {
            archive: path.to_owned(),
            source,
        })?;
        s.pieces = pieces(&s.bundle).ok_or_else(|| {
            not_ferry("its volume plan names members bundle.json does not list".into())
        })?;
        if s.pieces
            .first()
            .is_none_or(|p| p.tar_path != OCI_LAYOUT_PATH || p.volume != 0)
        {
            return Err(not_ferry(
                "bundle.json does not list oci-layout first".into(),
            ));
        }
        if let Some(plan) = &s.bundle.volumes {
            let volumes = plan.volumes.len();
            let base = path
                .to_str()
                .and_then(|p| p.strip_suffix(".001"))
                .ok_or_else(|| ArchiveError::VolumeName {
                    path: path.to_owned(),
                    volumes,
                })?;
            s.files = (1..=volumes)
                .map(|n| volume_path(Path::new(base), n))
                .collect();
            s.split = Some(plan.id);
        }
        match s.header("the member after bundle.json")? {
            Some(h) if h.path == SIGNATURE_PATH && h.size <= SIGNATURE_MAX_BYTES => {
                s.signature = Some(s.small_data(&h, SIGNATURE_MAX_BYTES)?);
            }
            other => s.pending = Some(other),
        }
        Ok(s)
    }

    /// The archive's path (the first volume's, when split).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The archive's files: the archive, or each volume in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Where the current member's bytes were read so far, by volume.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Moves to the next member (skipping what is left of the current
    /// one): its index in bundle.json's members, or `None` at a proper end
    /// of the archive (every member arrived, the end marker and nothing but
    /// zero padding after it, in every volume). Damage inside a volume of
    /// a split archive names the volume.
    pub fn next_member(&mut self) -> Result<Option<usize>, ArchiveError> {
        self.next_member_here().map_err(|e| self.in_volume(e))
    }

    fn next_member_here(&mut self) -> Result<Option<usize>, ArchiveError> {
        self.skip_rest()?;
        loop {
            let Some(p) = self.pieces.get(self.next) else {
                // Everything arrived: the file must end here.
                let h = self.take_header("the end-of-archive marker")?;
                if let Some(h) = h {
                    self.check_piece(None, &h)?;
                }
                self.check_trailing()?;
                return Ok(None);
            };
            if p.volume != self.volume {
                self.next_volume()?;
                continue;
            }
            let (member, last) = (p.member, p.last);
            self.enter_piece("the next member")?;
            self.continues = !last;
            return Ok(Some(member));
        }
    }

    /// Reads the header of `pieces[next]` (in the current volume), checks
    /// it and makes it the current piece.
    fn enter_piece(&mut self, what: &str) -> Result<(), ArchiveError> {
        let h = self.take_header(what)?;
        let Some(p) = self.pieces.get(self.next) else {
            return Ok(());
        };
        let Some(h) = h else {
            let rest = self.pieces.len() - self.next;
            return Err(ArchiveError::Missing {
                archive: self.file.clone(),
                path: p.tar_path.clone(),
                count: rest,
            });
        };
        let want = (p.tar_path.clone(), p.size);
        self.check_piece(Some(&want), &h)?;
        self.seen.insert(h.path.clone());
        if !self.continues {
            self.spans.clear();
        }
        self.spans.push(Span {
            volume: self.volume,
            offset: h.offset,
            len: h.size,
        });
        self.left = h.size;
        self.pad = padding(h.size);
        self.next += 1;
        Ok(())
    }

    /// Checks a header against the piece expected there, telling pieces
    /// listed further on (out of order) from unlisted ones.
    fn check_piece(&self, want: Option<&(String, u64)>, h: &Header) -> Result<(), ArchiveError> {
        let known: HashSet<&str> = HashSet::new();
        check_member(&self.file, want, h, &self.seen, &known).map_err(|e| {
            let listed = self.pieces.iter().any(|p| p.tar_path == h.path);
            match (e, want) {
                (ArchiveError::Unlisted { archive, path }, Some((w, _))) if listed => {
                    ArchiveError::OutOfOrder {
                        archive,
                        path,
                        expected: w.clone(),
                    }
                }
                (e, _) => e,
            }
        })
    }

    /// Ends the current volume (its end marker and padding) and opens the
    /// next, checking its `ferry-volume.json`.
    fn next_volume(&mut self) -> Result<(), ArchiveError> {
        if let Some(h) = self.take_header("the end of the volume")? {
            self.check_piece(None, &h)?;
        }
        self.check_trailing()?;
        self.open_volume(self.volume + 1)
    }

    /// After damage in a volume of a split archive: moves to the start of
    /// the next volume that opens, past the parts of a member begun in an
    /// earlier one, so the members that start there can still be read.
    /// `Ok(false)` when no volume is left; an error names a volume that
    /// does not open (call again to move past it).
    pub fn resume(&mut self) -> Result<bool, ArchiveError> {
        self.resume_here().map_err(|e| self.in_volume(e))
    }

    fn resume_here(&mut self) -> Result<bool, ArchiveError> {
        let v = self.volume + 1;
        if self.split.is_none() || v >= self.files.len() {
            return Ok(false);
        }
        self.next = self
            .pieces
            .iter()
            .position(|p| p.volume >= v)
            .unwrap_or(self.pieces.len());
        (self.left, self.pad, self.continues) = (0, 0, false);
        (self.pending, self.fault) = (None, None);
        self.spans.clear();
        self.open_volume(v)?;
        // The rest of a member begun before is lost with it: pass over
        // its parts, in this volume and any after.
        while let Some(p) = self.pieces.get(self.next).filter(|p| !p.first) {
            if p.volume != self.volume {
                self.next_volume()?;
            }
            self.enter_piece("the rest of a member begun in an earlier volume")?;
            let mut buf = [0u8; 64 * 1024];
            while self.left > 0 {
                let k = self.left.min(buf.len() as u64) as usize;
                self.fill(
                    &mut buf[..k],
                    "the rest of a member begun in an earlier volume",
                )?;
                self.left -= k as u64;
            }
            self.skip_pad()?;
        }
        self.spans.clear();
        Ok(true)
    }

    /// Opens volume `v` (from 0) and checks its `ferry-volume.json`.
    fn open_volume(&mut self, v: usize) -> Result<(), ArchiveError> {
        let volumes = self.files.len();
        let Some(path) = self.files.get(v).cloned() else {
            return Ok(());
        };
        self.volume = v;
        self.gone = Some(v);
        self.dec = match File::open(&path) {
            Ok(f) => zstd::stream::read::Decoder::new(f).map_err(|e| ArchiveError::Decompress {
                archive: path.clone(),
                offset: 0,
                source: e,
            })?,
            Err(source) => {
                return Err(ArchiveError::VolumeMissing {
                    volume: v + 1,
                    volumes,
                    path,
                    source,
                })
            }
        };
        self.gone = None;
        self.file = path.clone();
        self.pos = 0;
        self.seen.clear();
        let mismatch = |reason: String| ArchiveError::VolumeMismatch {
            path: path.clone(),
            volume: v + 1,
            volumes,
            reason,
        };
        let header = match self.header("the volume header")? {
            Some(h) if h.path == VOLUME_HEADER_PATH => self.volume_header(&h)?,
            Some(h) if h.path == OCI_LAYOUT_PATH => {
                return Err(mismatch("it is the first volume of a bundle".into()))
            }
            _ => {
                return Err(mismatch(format!(
                    "it does not start with {VOLUME_HEADER_PATH}"
                )))
            }
        };
        if Some(header.id) != self.split {
            return Err(mismatch(format!(
                "it belongs to another bundle (volume set {}, this bundle's is {})",
                header.id,
                self.split.map(|d| d.to_string()).unwrap_or_default()
            )));
        }
        if header.volume != v + 1 || header.volumes != volumes {
            return Err(mismatch(format!(
                "it is volume {} of {} of this bundle (a second copy, or renamed)",
                header.volume, header.volumes
            )));
        }
        Ok(())
    }

    /// Reads and parses a `ferry-volume.json` member.
    fn volume_header(&mut self, h: &Header) -> Result<VolumeHeader, ArchiveError> {
        let bytes = self.small_data(h, VOLUME_HEADER_MAX)?;
        self.seen.insert(h.path.clone());
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::NotFerry {
            archive: self.file.clone(),
            reason: format!("its {VOLUME_HEADER_PATH} is not a ferry volume header ({e})"),
        })
    }

    /// The error for reading on after a volume did not open.
    fn gone_error(&self) -> Option<ArchiveError> {
        let v = self.gone?;
        Some(ArchiveError::VolumeMissing {
            volume: v + 1,
            volumes: self.files.len(),
            path: self.files.get(v)?.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "it did not open"),
        })
    }

    /// Damage met in a volume of a split archive, named by its number.
    fn in_volume(&self, e: ArchiveError) -> ArchiveError {
        match (self.split, e) {
            (
                _,
                e @ (ArchiveError::VolumeMissing { .. }
                | ArchiveError::VolumeMismatch { .. }
                | ArchiveError::InVolume { .. }),
            ) => e,
            (Some(_), e) => ArchiveError::InVolume {
                volume: self.volume + 1,
                volumes: self.files.len(),
                source: Box::new(e),
            },
            (None, e) => e,
        }
    }

    /// Reads exactly `buf.len()` uncompressed bytes, naming what was being
    /// read when the stream ends or is damaged.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), ArchiveError> {
        if let Some(e) = self.gone_error() {
            return Err(e);
        }
        match self.dec.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.decode_error(e, what)),
        }
    }

    /// The archive error behind a failed read of the stream: the one met
    /// moving between pieces, or the stream's own damage, named by volume.
    fn stream_error(&mut self, e: io::Error, what: &str) -> ArchiveError {
        match self.fault.take() {
            Some(f) => f,
            None => {
                let e = self.decode_error(e, what);
                self.in_volume(e)
            }
        }
    }

    fn decode_error(&self, e: io::Error, what: &str) -> ArchiveError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Truncated {
                archive: self.file.clone(),
                what: format!(
                    "the zstd stream ends inside {what}, after {} uncompressed bytes",
                    self.pos
                ),
                file_len: fs_err::metadata(&self.file).map(|m| m.len()).unwrap_or(0),
            }
        } else {
            ArchiveError::Decompress {
                archive: self.file.clone(),
                offset: self.pos,
                source: e,
            }
        }
    }

    /// The header read ahead while opening, or the next one.
    fn take_header(&mut self, what: &str) -> Result<Option<Header>, ArchiveError> {
        match self.pending.take() {
            Some(h) => Ok(h),
            None => self.header(what),
        }
    }

    /// The next header, or `None` at the end-of-archive marker.
    fn header(&mut self, what: &str) -> Result<Option<Header>, ArchiveError> {
        let mut block = [0u8; BLOCK as usize];
        let at = self.pos;
        self.fill(&mut block, &format!("the header of {what}"))?;
        if block.iter().all(|&b| b == 0) {
            self.fill(&mut block, "the end-of-archive marker")?;
            if block.iter().any(|&b| b != 0) {
                return Err(ArchiveError::BadHeader {
                    archive: self.file.clone(),
                    offset: at,
                    reason: "a zero block followed by data".into(),
                });
            }
            return Ok(None);
        }
        let (path, size) = parse_header(&self.file, at, &block)?;
        Ok(Some(Header {
            path,
            offset: self.pos,
            size,
        }))
    }

    fn small_data(&mut self, h: &Header, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        if h.size > limit {
            return Err(ArchiveError::TooLarge {
                archive: self.file.clone(),
                path: h.path.clone(),
                size: h.size,
                limit,
            });
        }
        let mut buf = vec![0u8; (h.size + padding(h.size)) as usize];
        self.fill(&mut buf, &h.path)?;
        buf.truncate(h.size as usize);
        Ok(buf)
    }

    /// Skips what is left of the current member, across volumes, and its
    /// padding.
    fn skip_rest(&mut self) -> Result<(), ArchiveError> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.stream_error(e, "a member")),
            }
        }
        self.skip_pad()
    }

    fn skip_pad(&mut self) -> Result<(), ArchiveError> {
        let mut buf = [0u8; BLOCK as usize];
        let n = self.pad as usize;
        self.fill(&mut buf[..n], "a member's padding")?;
        self.pad = 0;
        Ok(())
    }

    /// After the current piece: the next piece of the same member, in
    /// this volume or the next.
    fn next_piece(&mut self) -> Result<(), ArchiveError> {
        self.skip_pad()?;
        if self
            .pieces
            .get(self.next)
            .is_some_and(|p| p.volume != self.volume)
        {
            self.next_volume()?;
        }
        let last = self.pieces.get(self.next).is_none_or(|p| p.last);
        self.enter_piece("the next part of a split member")?;
        self.continues = !last;
        Ok(())
    }

    /// After the end marker: only zero padding, then the end of the stream.
    fn check_trailing(&mut self) -> Result<(), ArchiveError> {
        if let Some(e) = self.gone_error() {
            return Err(e);
        }
        let mut buf = [0u8; 64 * 1024];
        let mut seen = 0u64;
        loop {
            let n = match self.dec.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.decode_error(e, "the padding after the end marker")),
            };
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(ArchiveError::Trailing {
                    archive: self.file.clone(),
                    offset: self.pos + i as u64,
                });
            }
            self.pos += n as u64;
            seen += n as u64;
            if seen > TRAILING_MAX {
                return Err(ArchiveError::Trailing {
                    archive: self.file.clone(),
                    offset: self.pos,
                });
            }
        }
    }
}

/// Opens a zstd decoder over `path`.
fn decoder(
    path: &Path,
) -> Result<zstd::stream::read::Decoder<'static, BufReader<File>>, ArchiveError> {
    let file = fs_err::File::open(path)?.into_parts().0;
    zstd::stream::read::Decoder::new(file).map_err(|e| ArchiveError::Decompress {
        archive: path.to_owned(),
        offset: 0,
        source: e,
    })
}

/// Every tar member an archive holds after bundle.json, in order: the
/// members, or the volume plan's pieces. `None` when the plan names a
/// member bundle.json does not list.
fn pieces(bundle: &Bundle) -> Option<Vec<PieceAt>> {
    let Some(plan) = &bundle.volumes else {
        return Some(
            bundle
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| PieceAt {
                    volume: 0,
                    tar_path: m.path.clone(),
                    size: m.size,
                    member: i,
                    first: true,
                    last: true,
                })
                .collect(),
        );
    };
    let index: HashMap<&str, usize> = bundle
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.path.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for (v, vol) in plan.volumes.iter().enumerate() {
        for p in &vol.pieces {
            let i = *index.get(p.member.as_str())?;
            let size = bundle.members.get(i)?.size;
            out.push(PieceAt {
                volume: v,
                tar_path: p.tar_path(),
                size: p.size,
                member: i,
                first: p.offset == 0,
                last: p.offset + p.size == size,
            });
        }
    }
    Some(out)
}

/// `" (OUT.001)"` for a path that looks like a later volume `OUT.NNN`.
fn first_volume_hint(path: &Path) -> String {
    path.to_str()
        .and_then(|s| s.get(..s.len().checked_sub(4)?))
        .filter(|_| path.extension().is_some_and(|e| e.len() == 3))
        .map(|base| format!(" ({base}.001)"))
        .unwrap_or_default()
}

impl Read for Stream {
    /// Reads the current member's bytes, across the pieces of a member
    /// split between volumes; 0 at its end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            if !self.continues {
                return Ok(0);
            }
            if let Err(e) = self.next_piece() {
                let e = self.in_volume(e);
                let text = e.to_string();
                self.fault = Some(e);
                return Err(io::Error::other(text));
            }
        }
        if let Some(e) = self.gone_error() {
            return Err(io::Error::other(e.to_string()));
        }
        let want = buf.len().min(self.left as usize);
        let n = self.dec.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the zstd stream ends inside a member, after {} uncompressed bytes",
                    self.pos
                ),
            ));
        }
        self.left -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

fn placeholder() -> Bundle {
    Bundle {
        format: String::new(),
        format_version: 0,
        tool: crate::format::bundle::Tool {
            name: String::new(),
            version: String::new(),
        },
        name: String::new(),
        created: None,
        artifacts: Vec::new(),
        members: Vec::new(),
        volumes: None,
        delta: None,
    }
}

/// Reads a compressed archive in one pass: checks its structure, hashes
/// every member and keeps the small JSON ones in memory. Damage after
/// bundle.json is recorded in the returned archive's faults, with the
/// members before it.
pub fn scan(path: &Path) -> Result<Archive, ArchiveError> {
    scan_with(path, &crate::base::report::Silent)
}

/// [`scan`], reporting bytes read.
pub fn scan_with(path: &Path, reporter: &dyn Reporter) -> Result<Archive, ArchiveError> {
    let mut s = Stream::open(path)?;
    let mut entries = Vec::new();
    let mut digests = HashMap::new();
    let mut kept: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
    let mut kept_bytes = 0u64;
    let layout_path = OCI_LAYOUT_PATH.to_owned();
    digests.insert(layout_path.clone(), Digest::of(&s.layout));
    kept.insert(layout_path.clone(), Arc::new(s.layout.clone()));
    entries.push(Entry {
        path: layout_path,
        size: s.layout.len() as u64,
        spans: vec![Span {
            volume: 0,
            offset: BLOCK,
            len: s.layout.len() as u64,
        }],
    });
    let total: u64 = s.bundle.members.iter().map(|m| m.size).sum();
    reporter.start("verifying", total);
    let mut faults = Vec::new();
    let mut buf = vec![0u8; COPY_BUF];
    // Damage stops the reading of a volume; the next volume is read on
    // (each volume of a split archive is a stream of its own).
    let resume = |s: &mut Stream, faults: &mut Vec<ArchiveError>| loop {
        match s.resume() {
            Ok(more) => return more,
            Err(e) => faults.push(e),
        }
    };
    loop {
        let i = match s.next_member() {
            Ok(Some(i)) => i,
            Ok(None) => break,
            Err(e) => {
                faults.push(e);
                match resume(&mut s, &mut faults) {
                    true => continue,
                    false => break,
                }
            }
        };
        let Some(m) = s.bundle.members.get(i).cloned() else {
            break;
        };
        let mut h = Hasher::new();
        let keep = m.size <= KEEP_MAX && kept_bytes + m.size <= KEPT_MAX_BYTES;
        let mut held = Vec::new();
        let mut failed = None;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    reporter.advance(n as u64);
                    if keep {
                        held.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(s.stream_error(e, &m.path));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            faults.push(e);
            match resume(&mut s, &mut faults) {
                true => continue,
                false => break,
            }
        }
        digests.insert(m.path.clone(), h.finish().0);
        if keep && held.first() == Some(&b'{') {
            kept_bytes += held.len() as u64;
            kept.insert(m.path.clone(), Arc::new(held));
        }
        entries.push(Entry {
            path: m.path,
            size: m.size,
            spans: s.spans().to_vec(),
        });
    }
    reporter.finish();
    Ok(s.into_archive(entries, faults, digests, kept))
}

/// Reads the head of a compressed archive: bundle.json and the JSON
/// members at its start (index.json, manifests, indexes, configs, which
/// ferry writes before anything else), each checked against its digest.
/// Every member bundle.json lists is entered as declared; the rest of the
/// stream is checked when it is read (by `load`'s upload pass).
pub fn scan_head(path: &Path) -> Result<Archive, ArchiveError> {
    let mut s = Stream::open(path)?;
    let mut kept: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
    kept.insert(OCI_LAYOUT_PATH.to_owned(), Arc::new(s.layout.clone()));
    let mut kept_bytes = 0u64;
    while let Some(i) = s.next_member()? {
        let Some(m) = s.bundle.members.get(i).cloned() else {
            break;
        };
        if m.size > KEEP_MAX || kept_bytes + m.size > KEPT_MAX_BYTES {
            break;
        }
        let mut first = [0u8; 1];
        if m.size > 0 {
            s.read_exact(&mut first)
                .map_err(|e| s.stream_error(e, &m.path))?;
            if first[0] != b'{' {
                break;
            }
        }
        let mut bytes = first[..m.size.min(1) as usize].to_vec();
        s.read_to_end(&mut bytes)
            .map_err(|e| s.stream_error(e, &m.path))?;
        let actual = Digest::of(&bytes);
        if actual != m.digest {
            return Err(ArchiveError::MemberDigest {
                archive: path.to_owned(),
                path: m.path,
                digest: m.digest,
                actual,
            });
        }
        kept_bytes += bytes.len() as u64;
        kept.insert(m.path, Arc::new(bytes));
    }
    let entries = s
        .bundle
        .members
        .iter()
        .map(|m| Entry {
            path: m.path.clone(),
            size: m.size,
            spans: Vec::new(),
        })
        .collect();
    Ok(s.into_archive(entries, Vec::new(), HashMap::new(), kept))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_member_never_takes_more_than_the_plan_prices_it_at() {
        for data in [Vec::new(), noise(10), noise(600), noise((9 << 20) + 77)] {
            let size = data.len() as u64;
            let mut fw = FrameWriter::new(Vec::new(), DEFAULT_LEVEL);
            if fw.member("m", size, 0, &mut &data[..]).is_err() {
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
