//! Reading a plain archive or volume set: [`Archive`] scans the structure
//! once, records where each member's bytes are, and gives positioned
//! readers over them, so members are read without extraction.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compressed;
use super::form::{detect_file, Form};
use super::scan::Scanner;
use super::volumes::{volume_path, VOLUME_HEADER_PATH};
use super::ArchiveError;
use crate::base::digest::Digest;
use crate::base::report::{Reporter, Silent};
use crate::format::blob::{self, BlobSource, SegmentReader, Segments};
use crate::format::bundle::{Bundle, Piece, BUNDLE_MAX_BYTES, BUNDLE_PATH, OCI_LAYOUT_PATH};
use crate::format::sign::{SIGNATURE_MAX_BYTES, SIGNATURE_PATH};

/// A stretch of a member's bytes in one file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The volume holding it, from 0 (an unsplit archive has only 0).
    pub volume: usize,
    /// Byte offset of the data in that file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// A member located in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub path: String,
    /// Data size.
    pub size: u64,
    /// Where the bytes are, in order: one span, or one per part when a
    /// member larger than a volume was split.
    pub spans: Vec<Span>,
}

impl Entry {
    /// The volumes (numbered from 1) holding the member.
    pub fn volumes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.spans.iter().map(|s| s.volume + 1).collect();
        v.dedup();
        v
    }
}

/// An opened, structurally scanned archive: one file, or the volumes of
/// a split one.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    files: Vec<(PathBuf, Option<Arc<File>>)>,
    /// The parsed table of contents.
    pub bundle: Bundle,
    /// Its raw bytes.
    pub bundle_bytes: Vec<u8>,
    /// The minisign signature of bundle.json, when the archive is signed.
    pub signature: Option<Vec<u8>>,
    /// Members that arrived whole, in archive order, excluding
    /// bundle.json. Members after a fault are missing from it.
    pub entries: Vec<Entry>,
    /// Structural problems, at most one per volume; scanning a volume
    /// stops at its first.
    pub faults: Vec<ArchiveError>,
    /// For a compressed archive, read in one pass: the members' digests as
    /// computed while streaming.
    pub(crate) digests: HashMap<String, Digest>,
    /// For a compressed archive: the small JSON members (documents,
    /// configs, index.json), kept in memory.
    pub(crate) kept: HashMap<String, Arc<Vec<u8>>>,
    /// Whether the archive is zstd read in order only: one zstd stream, or
    /// zstd volumes (no random access).
    pub(crate) compressed: bool,
    /// Whether the archive is zstd (in order only, or framed).
    zstd: bool,
    /// For a framed zstd file or zstd volumes: each file's frames
    /// (members are then read by decompressing the frames that hold them;
    /// spans are tar offsets in their file).
    frames: Option<Vec<Arc<Vec<compressed::Frame>>>>,
    /// Each blob that arrived, by digest: its index in `entries` (made on
    /// first use).
    by_digest: std::sync::OnceLock<HashMap<Digest, usize>>,
    /// For a framed zstd file: each entry's index by its data's volume
    /// and tar offset (made on first use), to name the member a blob read
    /// is in.
    by_offset: std::sync::OnceLock<HashMap<(usize, u64), usize>>,
}

impl Archive {
    /// Opens and scans an archive, refusing it when it is damaged anywhere.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let mut a = Archive::open_lenient(path)?;
        if a.faults.is_empty() {
            Ok(a)
        } else {
            Err(a.faults.swap_remove(0))
        }
    }

    /// [`Archive::open`] for commands that read members out of order:
    /// a compressed archive is refused before it is read, naming `what`.
    pub fn open_random(path: &Path, what: &str) -> Result<Archive, ArchiveError> {
        match detect_file(path)? {
            (first, Form::Zstd, file) => match framed(&first, file, false)? {
                Ok(a) => Ok(a),
                // zstd volumes that do not open by offset are damaged: the
                // in-order reader names how, volume by volume.
                Err(true) => {
                    Archive::strict(compressed::scan(&first)?)?;
                    Err(ArchiveError::NeedsRandomAccess {
                        how: decompress_hint(&first),
                        archive: first,
                        what: what.to_owned(),
                    })
                }
                Err(false) => Err(ArchiveError::NeedsRandomAccess {
                    how: decompress_hint(&first),
                    archive: first,
                    what: what.to_owned(),
                }),
            },
            (first, Form::Plain, file) => Archive::strict(Archive::scan_plain(&first, file)?),
        }
    }

    /// The archive, or its first fault.
    fn strict(mut a: Archive) -> Result<Archive, ArchiveError> {
        if a.faults.is_empty() {
            Ok(a)
        } else {
            Err(a.faults.swap_remove(0))
        }
    }

    /// [`Archive::open`] for commands that read members in one pass, in
    /// archive order (`load`): a compressed archive is read only as far as
    /// its documents (see [`compressed::scan_head`]), the rest being
    /// checked while it is read; a plain one is scanned whole.
    pub fn open_head(path: &Path) -> Result<Archive, ArchiveError> {
        match detect_file(path)? {
            (first, Form::Zstd, file) => match framed(&first, file, false)? {
                Ok(a) => Ok(a),
                Err(_) => compressed::scan_head(&first),
            },
            (first, Form::Plain, file) => Archive::strict(Archive::scan_plain(&first, file)?),
        }
    }

    /// [`Archive::open_head`] that keeps a plain archive's structural
    /// faults in `faults` (with the members that arrived before them)
    /// instead of failing on the first, for a reader that reports what
    /// arrived (`inspect --html --verify`). A compressed archive is read
    /// as far as its documents, as by [`Archive::open_head`].
    pub fn open_head_lenient(path: &Path) -> Result<Archive, ArchiveError> {
        match detect_file(path)? {
            (first, Form::Zstd, file) => match framed(&first, file, true)? {
                Ok(a) => Ok(a),
                Err(_) => compressed::scan_head(&first),
            },
            (first, Form::Plain, file) => Archive::scan_plain(&first, file),
        }
    }

    /// Opens and scans an archive. `path` is the archive, or the first
    /// volume of a split one (`OUT.001`, or `OUT` when only the volumes
    /// exist). Damage after bundle.json is recorded in `faults` (with the
    /// members that still arrived whole in `entries`) so a verifier can
    /// check what arrived; damage before it is an error.
    pub fn open_lenient(path: &Path) -> Result<Archive, ArchiveError> {
        Archive::open_lenient_with(path, &Silent)
    }

    /// [`Archive::open_lenient`], reporting the bytes a compressed archive
    /// hashes while it is read (a plain archive is hashed by its caller).
    pub fn open_lenient_with(
        path: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Archive, ArchiveError> {
        match detect_file(path)? {
            (first, Form::Zstd, file) => match framed(&first, file, true)? {
                Ok(a) => Ok(a),
                Err(_) => compressed::scan_with(&first, reporter),
            },
            (first, Form::Plain, file) => Archive::scan_plain(&first, file),
        }
    }

    /// Scans a plain archive or volume set whose first file is `path`
    /// (`file`, when it is open already).
    fn scan_plain(path: &Path, file: Option<File>) -> Result<Archive, ArchiveError> {
        let file = match file {
            Some(f) => f,
            None => fs_err::File::open(path)?.into_parts().0,
        };
        let mut sc = Scanner::new(path, &file)?;
        let not_ferry = |reason: String| ArchiveError::NotFerry {
            archive: path.to_owned(),
            reason,
        };
        // oci-layout
        let first = match sc.next_header()? {
            Some(h) => h,
            None => return Err(not_ferry("it holds no members".into())),
        };
        if first.path == VOLUME_HEADER_PATH {
            let header = sc.volume_header(&first)?;
            let hint = path
                .to_str()
                .and_then(|s| s.get(..s.len().checked_sub(4)?))
                .filter(|_| path.extension().is_some_and(|e| e.len() == 3))
                .map(|base| format!(" ({base}.001)"))
                .unwrap_or_default();
            return Err(ArchiveError::NotFirstVolume {
                path: path.to_owned(),
                volume: header.volume,
                volumes: header.volumes,
                hint,
            });
        }
        if first.path != OCI_LAYOUT_PATH {
            return Err(not_ferry(format!(
                "its first member is {:?}, not oci-layout",
                first.path
            )));
        }
        sc.skip_data(&first)?;
        let layout_entry = first;
        // bundle.json
        let second = match sc.next_header()? {
            Some(h) => h,
            None => return Err(not_ferry("it has no bundle.json".into())),
        };
        if second.path != BUNDLE_PATH {
            return Err(not_ferry(format!(
                "its second member is {:?}, not bundle.json",
                second.path
            )));
        }
        if second.size > BUNDLE_MAX_BYTES {
            return Err(ArchiveError::TooLarge {
                archive: path.to_owned(),
                path: BUNDLE_PATH.into(),
                size: second.size,
                limit: BUNDLE_MAX_BYTES,
            });
        }
        let bundle_bytes = sc.read_data(&second)?;
        let bundle = Bundle::from_slice(&bundle_bytes).map_err(|source| ArchiveError::Bundle {
            archive: path.to_owned(),
            source,
        })?;
        // The signature, when signed, comes right after bundle.json.
        let before = sc.pos;
        let signature = match sc.next_header() {
            Ok(Some(h)) if h.path == SIGNATURE_PATH && h.size <= SIGNATURE_MAX_BYTES => {
                Some(sc.read_data(&h)?)
            }
            _ => {
                sc.pos = before;
                None
            }
        };

        // What each volume must hold, as (tar path, size).
        let plan: Vec<Vec<(String, u64)>> = match &bundle.volumes {
            Some(p) => p
                .volumes
                .iter()
                .map(|v| v.pieces.iter().map(|p| (p.tar_path(), p.size)).collect())
                .collect(),
            None => vec![bundle
                .members
                .iter()
                .map(|m| (m.path.clone(), m.size))
                .collect()],
        };
        let volumes = plan.len();
        let mut paths = vec![path.to_owned()];
        if let Some(p) = &bundle.volumes {
            let base = path
                .to_str()
                .and_then(|s| s.strip_suffix(".001"))
                .ok_or_else(|| ArchiveError::VolumeName {
                    path: path.to_owned(),
                    volumes,
                })?;
            paths.extend((2..=p.volumes.len()).map(|n| volume_path(Path::new(base), n)));
        }
        let known: std::collections::HashSet<&str> =
            plan.iter().flatten().map(|(p, _)| p.as_str()).collect();
        let split = bundle.volumes.as_ref().map(|p| p.id);
        let in_volume = |v: usize, e: ArchiveError| match split {
            Some(_) => ArchiveError::InVolume {
                volume: v + 1,
                volumes,
                source: Box::new(e),
            },
            None => e,
        };

        let mut found: HashMap<String, Span> = HashMap::new();
        let mut faults = Vec::new();
        if let Err(e) = sc.scan_volume(0, &plan[0], &known, Some(layout_entry), &mut found) {
            faults.push(in_volume(0, e));
        }
        let mut files = vec![(path.to_owned(), Some(Arc::new(file)))];
        for (v, vpath) in paths.iter().enumerate().skip(1) {
            let f = match File::open(vpath) {
                Ok(f) => f,
                Err(source) => {
                    faults.push(ArchiveError::VolumeMissing {
                        volume: v + 1,
                        volumes,
                        path: vpath.clone(),
                        source,
                    });
                    files.push((vpath.clone(), None));
                    continue;
                }
            };
            let scanned = (|| {
                let mut sc = Scanner::new(vpath, &f)?;
                let mismatch = |reason: String| ArchiveError::VolumeMismatch {
                    path: vpath.clone(),
                    volume: v + 1,
                    volumes,
                    reason,
                };
                let header = match sc.next_header()? {
                    Some(h) if h.path == VOLUME_HEADER_PATH => sc.volume_header(&h)?,
                    Some(h) if h.path == OCI_LAYOUT_PATH => {
                        return Err(mismatch("it is the first volume of a bundle".into()))
                    }
                    _ => {
                        return Err(mismatch(format!(
                            "it does not start with {VOLUME_HEADER_PATH}"
                        )))
                    }
                };
                if Some(header.id) != split {
                    return Err(mismatch(format!(
                        "it belongs to another bundle (volume set {}, this bundle's is {})",
                        header.id,
                        split.map(|d| d.to_string()).unwrap_or_default()
                    )));
                }
                if header.volume != v + 1 || header.volumes != volumes {
                    return Err(mismatch(format!(
                        "it is volume {} of {} of this bundle (a second copy, or renamed)",
                        header.volume, header.volumes
                    )));
                }
                sc.scan_volume(v, &plan[v], &known, None, &mut found)
            })();
            if let Err(e) = scanned {
                faults.push(match e {
                    e @ ArchiveError::VolumeMismatch { .. } => e,
                    e => in_volume(v, e),
                });
            }
            files.push((vpath.clone(), Some(Arc::new(f))));
        }

        // Members whose every piece arrived.
        let mut entries = Vec::with_capacity(bundle.members.len());
        let pieces: HashMap<&str, Vec<&Piece>> = match &bundle.volumes {
            Some(p) => {
                let mut m: HashMap<&str, Vec<&Piece>> = HashMap::new();
                for piece in p.volumes.iter().flat_map(|v| &v.pieces) {
                    m.entry(piece.member.as_str()).or_default().push(piece);
                }
                m
            }
            None => HashMap::new(),
        };
        for m in &bundle.members {
            let spans: Option<Vec<Span>> = match pieces.get(m.path.as_str()) {
                Some(ps) => ps
                    .iter()
                    .map(|p| found.get(&p.tar_path()).cloned())
                    .collect(),
                None => found.get(&m.path).cloned().map(|s| vec![s]),
            };
            if let Some(spans) = spans {
                entries.push(Entry {
                    path: m.path.clone(),
                    size: m.size,
                    spans,
                });
            }
        }
        Ok(Archive {
            path: path.to_owned(),
            files,
            bundle,
            bundle_bytes,
            signature,
            entries,
            faults,
            digests: HashMap::new(),
            kept: HashMap::new(),
            compressed: false,
            zstd: false,
            frames: None,
            by_digest: Default::default(),
            by_offset: Default::default(),
        })
    }

    /// The archive's path (the first volume's, when split).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Builds the view of a compressed archive read in one pass.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_stream(
        path: &Path,
        files: &[PathBuf],
        bundle: Bundle,
        bundle_bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
        entries: Vec<Entry>,
        faults: Vec<ArchiveError>,
        digests: HashMap<String, Digest>,
        kept: HashMap<String, Arc<Vec<u8>>>,
    ) -> Archive {
        Archive {
            path: path.to_owned(),
            files: files.iter().map(|f| (f.clone(), None)).collect(),
            bundle,
            bundle_bytes,
            signature,
            entries,
            faults,
            digests,
            kept,
            compressed: true,
            zstd: true,
            frames: None,
            by_digest: Default::default(),
            by_offset: Default::default(),
        }
    }

    /// A framed zstd file opened for random access (see
    /// `compressed::open_framed`): members are read by offset, as from a
    /// plain archive, each through the frames that hold it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_frames(
        path: &Path,
        file: Arc<File>,
        frames: Arc<Vec<compressed::Frame>>,
        bundle: Bundle,
        bundle_bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
        entries: Vec<Entry>,
        faults: Vec<ArchiveError>,
    ) -> Archive {
        Archive {
            path: path.to_owned(),
            files: vec![(path.to_owned(), Some(file))],
            bundle,
            bundle_bytes,
            signature,
            entries,
            faults,
            digests: HashMap::new(),
            kept: HashMap::new(),
            compressed: false,
            zstd: true,
            frames: Some(vec![frames]),
            by_digest: Default::default(),
            by_offset: Default::default(),
        }
    }

    /// Zstd volumes opened for random access (see
    /// `compressed::open_framed`): `files` each with its frames.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_volume_frames(
        path: &Path,
        files: Vec<(PathBuf, Arc<File>)>,
        frames: Vec<Arc<Vec<compressed::Frame>>>,
        bundle: Bundle,
        bundle_bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
        entries: Vec<Entry>,
    ) -> Archive {
        Archive {
            path: path.to_owned(),
            files: files.into_iter().map(|(p, f)| (p, Some(f))).collect(),
            bundle,
            bundle_bytes,
            signature,
            entries,
            faults: Vec::new(),
            digests: HashMap::new(),
            kept: HashMap::new(),
            compressed: false,
            zstd: true,
            frames: Some(frames),
            by_digest: Default::default(),
            by_offset: Default::default(),
        }
    }

    /// Whether the archive is zstd-compressed (framed, one stream or
    /// volumes).
    pub fn is_compressed(&self) -> bool {
        self.zstd
    }

    /// Whether the archive can be read only in order, in one pass (one zstd
    /// stream without a seek table, or zstd volumes): its members cannot
    /// be read by offset. A plain archive and a framed zstd file can.
    pub fn in_order_only(&self) -> bool {
        self.compressed
    }

    /// The member's digest when it was computed while scanning (compressed
    /// archives).
    pub fn scanned_digest(&self, entry: &Entry) -> Option<Digest> {
        self.digests.get(&entry.path).copied()
    }

    /// The files of the archive: one, or each volume in order.
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(|(p, _)| p.as_path()).collect()
    }

    /// How many volumes the archive has (1 when not split).
    pub fn volume_count(&self) -> usize {
        self.files.len()
    }

    /// The entry for a member path.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Each blob listed in bundle.json that arrived, by digest.
    pub fn blob_locations(&self) -> HashMap<Digest, Entry> {
        self.blob_index()
            .iter()
            .filter_map(|(d, &i)| Some((*d, self.entries.get(i)?.clone())))
            .collect()
    }

    /// Each blob listed in bundle.json that arrived: its index in
    /// `entries`, by digest (made on first use).
    fn blob_index(&self) -> &HashMap<Digest, usize> {
        self.by_digest.get_or_init(|| {
            let declared: HashMap<&str, Digest> = self
                .bundle
                .members
                .iter()
                .map(|m| (m.path.as_str(), m.digest))
                .collect();
            self.entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.path.starts_with("blobs/"))
                .filter_map(|(i, e)| Some((*declared.get(e.path.as_str())?, i)))
                .collect()
        })
    }

    /// Reads a whole member into memory, refusing members above `limit`.
    pub fn read_member(&self, entry: &Entry, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        if entry.size > limit {
            return Err(ArchiveError::TooLarge {
                archive: self.path.clone(),
                path: entry.path.clone(),
                size: entry.size,
                limit,
            });
        }
        if let Some(kept) = self.kept.get(&entry.path) {
            return Ok(kept.as_ref().clone());
        }
        if self.compressed {
            return Err(ArchiveError::NeedsRandomAccess {
                archive: self.path.clone(),
                how: decompress_hint(&self.path),
                what: format!("reading member {}", entry.path),
            });
        }
        let mut buf = vec![0u8; entry.size as usize];
        self.member_reader(entry)
            .read_exact(&mut buf)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("reading {} from {}: {e}", entry.path, self.path.display()),
                )
            })?;
        Ok(buf)
    }

    /// Fills `buf` with `entry`'s bytes from `offset` on, by positioned
    /// reads (a few bytes of a large member, without reading the rest).
    /// A compressed archive has no positions to read at: it is refused
    /// with `ErrorKind::Unsupported`.
    pub fn read_member_at(&self, entry: &Entry, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.compressed {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{} is compressed: {} cannot be read by position",
                    self.path.display(),
                    entry.path
                ),
            ));
        }
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > entry.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} is {} bytes; {} bytes from {offset} are past its end",
                    entry.path,
                    entry.size,
                    buf.len()
                ),
            ));
        }
        if self.frames.is_some() {
            let mut r = self.member_reader(entry);
            io::copy(&mut (&mut r).take(offset), &mut io::sink())?;
            return r.read_exact(buf);
        }
        let mut skip = offset;
        let mut filled = 0;
        for span in &entry.spans {
            if filled == buf.len() {
                break;
            }
            if skip >= span.len {
                skip -= span.len;
                continue;
            }
            let Some((_, Some(file))) = self.files.get(span.volume) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("volume {} is missing", span.volume + 1),
                ));
            };
            let n = ((span.len - skip) as usize).min(buf.len() - filled);
            file.read_exact_at(&mut buf[filled..filled + n], span.offset + skip)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("reading {} from {}: {e}", entry.path, self.path.display()),
                    )
                })?;
            filled += n;
            skip = 0;
        }
        if filled < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ends before its declared size", entry.path),
            ));
        }
        Ok(())
    }

    /// Checks, when `key` is given, the signature of the bundle.json this
    /// open read (the same bytes that were parsed into [`Archive::bundle`],
    /// and to which every member is tied by digest) against the minisign
    /// public key in `key`. Returns the signature's trusted comment.
    pub fn check_key(
        &self,
        key: Option<&Path>,
    ) -> Result<Option<String>, crate::format::sign::SignError> {
        check_key(
            &self.path,
            key,
            &self.bundle_bytes,
            self.signature.as_deref(),
        )
    }

    /// Reads `entry` into memory, checked against the digest bundle.json
    /// declares for it, so the bytes used are the bytes bundle.json (and a
    /// signature of it) vouches for.
    pub fn read_member_checked(&self, entry: &Entry, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let bytes = self.read_member(entry, limit)?;
        let declared = self.bundle.member(&entry.path).map(|m| m.digest);
        let actual = Digest::of(&bytes);
        match declared {
            Some(d) if d == actual => Ok(bytes),
            _ => Err(ArchiveError::MemberDigest {
                archive: self.path.clone(),
                path: entry.path.clone(),
                digest: declared.unwrap_or(actual),
                actual,
            }),
        }
    }

    /// index.json, read and checked against bundle.json, parsed under the
    /// strictness rules of every OCI index.
    pub fn index_json(&self) -> Result<crate::format::oci::Index, ArchiveError> {
        let model = |what: String| ArchiveError::Model {
            archive: self.path.clone(),
            what,
        };
        let entry = self
            .entry(crate::format::bundle::INDEX_PATH)
            .ok_or_else(|| model("is missing".into()))?;
        let bytes = self.read_member_checked(entry, crate::format::oci::MANIFEST_MAX_BYTES * 4)?;
        crate::format::oci::parse_index_json(&bytes)
            .map_err(|e| model(format!("is not a valid OCI index: {e}")))
    }

    /// Checks the one model of the bundle every reader relies on:
    /// index.json names exactly bundle.json's artifacts, at their digests
    /// and media types (see [`Bundle::check_index`]).
    pub fn check_model(&self) -> Result<(), ArchiveError> {
        let index = self.index_json()?;
        match self.bundle.check_index(&index).into_iter().next() {
            None => Ok(()),
            Some(what) => Err(ArchiveError::Model {
                archive: self.path.clone(),
                what: format!("disagrees with bundle.json: {what}"),
            }),
        }
    }

    /// Copies `entry`'s bytes to `to` at its current position, span by
    /// span from the files this open scanned, in the kernel where it can
    /// ([`blob::copy_range`]), calling `progress` as bytes go. The copy is
    /// not checked: the caller reads it back through the verifying reader.
    /// A compressed archive has no positions to copy from: it is refused
    /// with `ErrorKind::Unsupported`.
    pub fn copy_member(
        &self,
        entry: &Entry,
        to: &File,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<()> {
        let at = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("copying {} from {}: {e}", entry.path, self.path.display()),
            )
        };
        if self.compressed {
            return Err(at(io::Error::new(
                io::ErrorKind::Unsupported,
                "the archive is compressed, so it has no positions to copy from",
            )));
        }
        for span in &entry.spans {
            let Some((_, Some(file))) = self.files.get(span.volume) else {
                return Err(at(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("volume {} is missing", span.volume + 1),
                )));
            };
            blob::copy_range(file, span.offset, span.len, to, progress).map_err(at)?;
        }
        Ok(())
    }

    /// A reader over one member's bytes (positioned reads; many can be
    /// used at once from different threads).
    pub fn member_reader<'a>(&'a self, entry: &'a Entry) -> MemberReader<'a> {
        MemberReader {
            files: &self.files,
            spans: &entry.spans,
            at: 0,
            pos: 0,
            framed: self.framed_reader(&entry.path, &entry.spans, 0, entry.size),
        }
    }

    /// For a framed zstd file or zstd volumes: a reader over `len` bytes
    /// from `start` of the member `path` whose data is at `spans` (tar
    /// offsets, one span per volume it is in).
    fn framed_reader(
        &self,
        path: &str,
        spans: &[Span],
        start: u64,
        len: u64,
    ) -> Option<compressed::FramedChain> {
        let frames = self.frames.as_ref()?;
        let mut parts = Vec::with_capacity(spans.len());
        let (mut skip, mut left) = (start, len);
        for s in spans {
            if left == 0 {
                break;
            }
            if skip >= s.len {
                skip -= s.len;
                continue;
            }
            let take = (s.len - skip).min(left);
            let (Some((file_path, Some(file))), Some(f)) =
                (self.files.get(s.volume), frames.get(s.volume))
            else {
                let broken = format!("{path}: volume {} is not open", s.volume + 1);
                return Some(compressed::FramedChain::new(Vec::new(), Some(broken)));
            };
            parts.push(compressed::FramedReader::new(
                file_path,
                path,
                file.clone(),
                f.clone(),
                s.offset,
                skip,
                take,
            ));
            left -= take;
            skip = 0;
        }
        Some(compressed::FramedChain::new(parts, None))
    }
}

/// Positioned reader over a member's spans (or, in a framed zstd file,
/// over the frames that hold it).
pub struct MemberReader<'a> {
    files: &'a [(PathBuf, Option<Arc<File>>)],
    spans: &'a [Span],
    at: usize,
    pos: u64,
    framed: Option<compressed::FramedChain>,
}

impl MemberReader<'_> {
    /// For a member of a framed zstd file: the decompressed bytes of the
    /// current frame from the current position on, without copying them
    /// (empty at the end); call [`MemberReader::consume`] with what was
    /// used. `None` for a plain archive's member.
    pub fn frame_chunk(&mut self) -> Option<io::Result<&[u8]>> {
        self.framed.as_mut().map(|f| f.chunk())
    }

    /// Marks `n` bytes of the last [`MemberReader::frame_chunk`] as used.
    pub fn consume(&mut self, n: usize) {
        if let Some(f) = self.framed.as_mut() {
            f.consume(n);
        }
    }
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = self.framed.as_mut() {
            return f.read(buf);
        }
        loop {
            let Some(span) = self.spans.get(self.at) else {
                return Ok(0);
            };
            let left = span.len - self.pos;
            if left == 0 {
                self.at += 1;
                self.pos = 0;
                continue;
            }
            let Some((_, Some(file))) = self.files.get(span.volume) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("volume {} is missing", span.volume + 1),
                ));
            };
            let want = buf.len().min(left as usize);
            let n = file.read_at(&mut buf[..want], span.offset + self.pos)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ended inside a member",
                ));
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

/// Opens the zstd file `first` (open as `file`) for random access when it
/// is framed: one file ending with a seek table, or zstd volumes each
/// whole and as their plan says. `Ok(Err(volumes))` when it is not, to be
/// read in order: `volumes` when it is zstd volumes that do not open so
/// (one missing or damaged), not when it is one zstd stream. An error for
/// a seek table that is there but does not describe the file.
fn framed(
    first: &Path,
    file: Option<File>,
    lenient: bool,
) -> Result<Result<Archive, bool>, ArchiveError> {
    let file = match file {
        Some(f) => f,
        None => fs_err::File::open(first)?.into_parts().0,
    };
    let len = file.metadata()?.len();
    let Some(table) = compressed::read_seek_table(&file, len).map_err(|e| e.at(first))? else {
        return Ok(Err(false));
    };
    Ok(compressed::open_framed(first, file, &table, lenient)?.ok_or(true))
}

/// The commands that turn the zstd archive opened by `first` into a plain
/// one: `zstd -d` for one stream; for zstd volumes, each volume in turn,
/// under the same names in another directory (a plain volume set).
fn decompress_hint(first: &Path) -> String {
    match first.to_str().and_then(|p| p.strip_suffix(".001")) {
        Some(base) => format!(
            "mkdir plain && for v in {base}.[0-9][0-9][0-9]; do zstd -d \"$v\" -o \"plain/$(basename \"$v\")\"; done; then give plain/{}",
            first.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        ),
        None => format!("zstd -d {} -o ARCHIVE.tar", first.display()),
    }
}

/// A plain archive, or volume set, is a blob source: each blob that
/// arrived is read by position from the file (or the volumes) holding it.
/// A compressed archive holds nothing here; it is read in order instead.
impl BlobSource for Archive {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn locate(&self, digest: &Digest) -> Option<(u64, Segments)> {
        if self.compressed {
            return None;
        }
        let entry = self.entries.get(*self.blob_index().get(digest)?)?;
        let segments = entry
            .spans
            .iter()
            .map(|s| {
                let file = self.files.get(s.volume).map(|(p, _)| p.clone());
                Some((file?, s.offset, s.len))
            })
            .collect::<Option<Segments>>()?;
        Some((entry.size, segments))
    }

    /// Read through the files this open scanned (and whose bundle.json
    /// was checked), never by opening the path again.
    fn reader(&self, segments: Segments) -> SegmentReader {
        if self.frames.is_some() {
            let len = segments.iter().map(|(_, _, l)| l).sum();
            return self
                .range_reader(&segments, 0, len)
                .unwrap_or_else(|| SegmentReader::new(Vec::new()));
        }
        let opened = segments
            .iter()
            .map(|(p, _, _)| {
                self.files
                    .iter()
                    .find(|(q, _)| q == p)
                    .and_then(|(_, f)| f.clone())
            })
            .collect();
        SegmentReader::with_files(segments, opened)
    }

    /// In a framed zstd file the segments are tar offsets: a reader over
    /// `len` bytes from `start` of the blob, through its frames.
    fn range_reader(&self, segments: &Segments, start: u64, len: u64) -> Option<SegmentReader> {
        let spans = segments
            .iter()
            .map(|(p, at, seg_len)| {
                Some(Span {
                    volume: self.files.iter().position(|(q, _)| q == p)?,
                    offset: *at,
                    len: *seg_len,
                })
            })
            .collect::<Option<Vec<Span>>>()?;
        let first = spans.first()?;
        let name = self
            .by_offset
            .get_or_init(|| {
                self.entries
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| {
                        let s = e.spans.first()?;
                        Some(((s.volume, s.offset), i))
                    })
                    .collect()
            })
            .get(&(first.volume, first.offset))
            .and_then(|&i| self.entries.get(i))
            .map_or_else(|| "a blob".to_owned(), |e| e.path.clone());
        let r = self.framed_reader(&name, &spans, start, len)?;
        Some(SegmentReader::boxed(Box::new(r)))
    }

    fn name_of(&self, digest: &Digest, _segments: &Segments) -> String {
        match self
            .blob_index()
            .get(digest)
            .and_then(|&i| self.entries.get(i))
        {
            Some(entry) => format!("{} in {}", entry.path, self.path.display()),
            None => self.describe(),
        }
    }
}

/// What every form gives without reading past bundle.json and its
/// signature: enough to inspect, check a signature or take an inventory.
#[derive(Debug)]
pub struct Head {
    /// The file that opens the archive (the first volume, when split).
    pub path: PathBuf,
    /// How its bytes are stored.
    pub form: Form,
    /// Its files: the archive, or each volume in order.
    pub files: Vec<PathBuf>,
    /// The table of contents.
    pub bundle: Bundle,
    /// Its raw bytes.
    pub bundle_bytes: Vec<u8>,
    /// The minisign signature of bundle.json, when signed.
    pub signature: Option<Vec<u8>>,
}

/// Reads the head of the archive at `path`, whatever its form. A plain
/// archive's structure is scanned too (it costs no reading of data), so
/// damage before bundle.json is an error; damage after it is not.
pub fn read_head(path: &Path) -> Result<Head, ArchiveError> {
    head_of(path, false)
}

/// With a key, the signature of `bundle_bytes` (read from `path`) checked
/// against it; its trusted comment.
fn check_key(
    path: &Path,
    key: Option<&Path>,
    bundle_bytes: &[u8],
    signature: Option<&[u8]>,
) -> Result<Option<String>, crate::format::sign::SignError> {
    key.map(|k| crate::format::sign::check(path, k, bundle_bytes, signature))
        .transpose()
}

impl Head {
    /// [`Archive::check_key`] for the bundle.json this head read.
    pub fn check_key(
        &self,
        key: Option<&Path>,
    ) -> Result<Option<String>, crate::format::sign::SignError> {
        check_key(
            &self.path,
            key,
            &self.bundle_bytes,
            self.signature.as_deref(),
        )
    }
}

/// [`read_head`], refusing a plain archive that is damaged anywhere (its
/// whole structure is scanned anyway); a compressed one is read only as
/// far as its head.
pub fn read_head_strict(path: &Path) -> Result<Head, ArchiveError> {
    head_of(path, true)
}

fn head_of(path: &Path, strict: bool) -> Result<Head, ArchiveError> {
    match detect_file(path)? {
        (first, Form::Zstd, _) => {
            let s = compressed::Stream::open(&first)?;
            Ok(Head {
                path: first,
                form: Form::Zstd,
                files: s.files().to_vec(),
                bundle: s.bundle,
                bundle_bytes: s.bundle_bytes,
                signature: s.signature,
            })
        }
        (first, Form::Plain, file) => {
            let mut a = Archive::scan_plain(&first, file)?;
            if strict && !a.faults.is_empty() {
                return Err(a.faults.swap_remove(0));
            }
            Ok(Head {
                files: a.files().into_iter().map(Path::to_owned).collect(),
                path: a.path,
                form: Form::Plain,
                bundle: a.bundle,
                bundle_bytes: a.bundle_bytes,
                signature: a.signature,
            })
        }
    }
}
