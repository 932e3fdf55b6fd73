//! Reading a zstd archive in order: one stream, or zstd volumes one after
//! the other, every header checked against bundle.json and the volume
//! plan, and scans that hash every member on the way.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::volumes::{volume_path, VolumeHeader, VOLUME_HEADER_MAX, VOLUME_HEADER_PATH};
use super::super::{
    check_member, padding, parse_header, Archive, ArchiveError, Entry, Header, Span, BLOCK,
};
use super::{KEEP_MAX, KEPT_MAX_BYTES, TRAILING_MAX};
use crate::base::digest::{Digest, Hasher, COPY_BUF};
use crate::base::report::Reporter;
use crate::format::bundle::{Bundle, BUNDLE_MAX_BYTES, BUNDLE_PATH, INDEX_PATH, OCI_LAYOUT_PATH};
use crate::format::oci::{self, Node};
use crate::format::sign::{SIGNATURE_MAX_BYTES, SIGNATURE_PATH};

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
    /// [`Stream::open`] for a second pass over an archive already opened:
    /// refused unless its bundle.json is byte for byte `bundle_bytes`, the
    /// one checked (and, with a key, whose signature was checked) first.
    pub fn reopen(path: &Path, bundle_bytes: &[u8]) -> Result<Stream, ArchiveError> {
        let s = Stream::open(path)?;
        if s.bundle_bytes != bundle_bytes {
            return Err(ArchiveError::Changed {
                archive: path.to_owned(),
            });
        }
        Ok(s)
    }

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
            return Err(ArchiveError::NotFerry {
                archive: self.file.clone(),
                reason: "its volume plan ends inside a member".into(),
            });
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
                // A volume ends with the seek table its frames must match.
                if self.split.is_some() {
                    super::check_seek_table(&self.file, self.pos)?;
                }
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
        if buf.is_empty() {
            return Ok(0);
        }
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
        referrers: Vec::new(),
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
    let mut documents = Documents::of(&s.bundle);
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
        // Which members are documents is the graph's to say, not the
        // bytes': until every document is held, every small member is.
        let keep = m.size <= KEEP_MAX
            && kept_bytes + m.size <= KEPT_MAX_BYTES
            && (!documents.complete() || documents.wants(&m.path));
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
        let digest = h.finish().0;
        digests.insert(m.path.clone(), digest);
        if keep && digest == m.digest {
            kept_bytes += held.len() as u64;
            kept.insert(m.path.clone(), Arc::new(held));
            documents.absorb(&m.path, &kept);
        }
        entries.push(Entry {
            path: m.path,
            size: m.size,
            spans: s.spans().to_vec(),
        });
    }
    reporter.finish();
    documents.prune(&mut kept);
    Ok(s.into_archive(entries, faults, digests, kept))
}

/// Reads the head of a compressed archive: bundle.json, index.json and
/// every manifest and index the artifacts need (which ferry writes before
/// any layer), each checked against its digest. Which members those are is
/// learnt from the graph as it is read, never guessed from their bytes.
/// Every member bundle.json lists is entered as declared; the rest of the
/// stream is checked when it is read (by `load`'s upload pass).
pub fn scan_head(path: &Path) -> Result<Archive, ArchiveError> {
    let mut s = Stream::open(path)?;
    let mut kept: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
    kept.insert(OCI_LAYOUT_PATH.to_owned(), Arc::new(s.layout.clone()));
    let mut kept_bytes = 0u64;
    let mut documents = Documents::of(&s.bundle);
    let mut buf = vec![0u8; COPY_BUF];
    while !documents.complete() {
        let Some(i) = s.next_member()? else {
            break;
        };
        let Some(m) = s.bundle.members.get(i).cloned() else {
            break;
        };
        if m.size > KEEP_MAX || kept_bytes + m.size > KEPT_MAX_BYTES {
            // Too big to be a document: read past it.
            while s.read(&mut buf).map_err(|e| s.stream_error(e, &m.path))? > 0 {}
            continue;
        }
        let mut bytes = Vec::new();
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
        kept.insert(m.path.clone(), Arc::new(bytes));
        documents.absorb(&m.path, &kept);
    }
    documents.prune(&mut kept);
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

/// The documents a compressed archive's readers need in memory: index.json
/// and every manifest and index reachable from bundle.json's artifacts.
/// Learnt as members arrive (the archive sorts its small members by digest,
/// so a child may come before its parent); a document that does not parse
/// has no children here, and the reader that walks it reports why.
struct Documents {
    /// Member path → the media type its parent declared.
    needed: HashMap<String, String>,
    /// Needed documents already held and expanded.
    expanded: HashSet<String>,
}

impl Documents {
    fn of(bundle: &Bundle) -> Documents {
        let mut needed: HashMap<String, String> = bundle
            .artifacts
            .iter()
            .map(|a| (a.digest.blob_path(), a.media_type.clone()))
            .collect();
        needed.insert(INDEX_PATH.to_owned(), String::new());
        Documents {
            needed,
            expanded: HashSet::new(),
        }
    }

    fn complete(&self) -> bool {
        self.expanded.len() == self.needed.len()
    }

    fn wants(&self, path: &str) -> bool {
        self.needed.contains_key(path)
    }

    /// Takes note that `path` is now held: when it is a needed document,
    /// it and every needed document it leads to that is already held are
    /// expanded (each once, so the work is linear in what arrives).
    fn absorb(&mut self, path: &str, kept: &HashMap<String, Arc<Vec<u8>>>) {
        let mut todo = vec![path.to_owned()];
        while let Some(path) = todo.pop() {
            let Some(media_type) = self.needed.get(&path).cloned() else {
                continue;
            };
            if !self.expanded.insert(path.clone()) || path == INDEX_PATH {
                continue;
            }
            let (Some(bytes), Some(digest)) = (
                kept.get(&path),
                path.strip_prefix("blobs/sha256/")
                    .and_then(|h| Digest::from_hex(h).ok()),
            ) else {
                continue;
            };
            if let Ok(Node::Index(i)) = oci::parse_node(digest, &media_type, bytes) {
                for c in &i.manifests {
                    let child = c.digest.blob_path();
                    if self.needed.contains_key(&child) {
                        continue;
                    }
                    self.needed.insert(child.clone(), c.media_type.clone());
                    if kept.contains_key(&child) {
                        todo.push(child);
                    }
                }
            }
        }
    }

    /// Drops what was held only while the graph was not yet known.
    fn prune(&self, kept: &mut HashMap<String, Arc<Vec<u8>>>) {
        kept.retain(|p, _| p == OCI_LAYOUT_PATH || self.needed.contains_key(p));
    }
}
