//! Local image sources: OCI image layout directories (`oci:DIR[:REF]`),
//! OCI layouts inside tar archives (`oci-archive:TAR[:REF]`) and `docker
//! save` tars (`docker-archive:TAR[:REF|:@N]`, in [`docker`]), and the
//! graph walk that turns one selected image into the set of blobs to carry.
//!
//! Blobs are not copied here: the walk records where each blob's bytes are
//! (a file, or a byte range of a tar) and the archive writer streams them
//! once, re-hashing on the way. Manifests and indexes are read, hashed
//! against their digest and kept as raw bytes; only a platform filter makes
//! ferry write a new index, and then both digests are recorded.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::base::digest::Digest;
use crate::base::platform::Platform;
use crate::format::archive::MemberSource;
use crate::format::blob::{mismatch_in, BlobSource, Segments};
use crate::format::oci::{self, Descriptor, Index, Node};

pub mod docker;

/// Errors reading a local image source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A filesystem operation failed (the error names the path).
    #[error("reading the image source failed")]
    Io(#[from] std::io::Error),
    /// Not an OCI layout.
    #[error("{0} is not an OCI image layout (no index.json)")]
    NotLayout(PathBuf),
    /// index.json unreadable.
    #[error("{path}: index.json is not a valid OCI index")]
    BadIndex {
        /// The layout.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A tar that cannot be read.
    #[error("{path} is not a readable tar archive")]
    BadTar {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The requested ref name is not in index.json.
    #[error("{layout} has no image named {name:?}; it has: {available}")]
    UnknownName {
        /// The layout.
        layout: String,
        /// The requested name.
        name: String,
        /// The names present.
        available: String,
    },
    /// A member the archive's manifest.json names is not in it.
    #[error("{layout}: {member} is named in manifest.json but not in the archive")]
    MissingMember {
        /// The archive.
        layout: String,
        /// The member.
        member: String,
    },
    /// A JSON member over the limit.
    #[error("{layout}: {member} is {size} bytes, more than the {limit}-byte limit")]
    MemberTooLarge {
        /// The archive.
        layout: String,
        /// The member.
        member: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A JSON member that does not parse as what it must be.
    #[error("{layout}: {member} is not valid")]
    BadJson {
        /// The archive.
        layout: String,
        /// The member.
        member: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A gzip layer file that does not decompress to its diff_id.
    #[error("{layout}: layer {member} decompresses to {actual}, but the config says its diff_id is {diff_id}")]
    DiffId {
        /// The archive.
        layout: String,
        /// The layer member.
        member: String,
        /// What the config says.
        diff_id: Digest,
        /// What it decompresses to.
        actual: Digest,
    },
    /// A config whose diff_ids do not pair with the image's layer files.
    #[error("{layout}: config {config} lists {diff_ids} layers (diff_ids) but manifest.json gives {layers} layer files")]
    LayerCount {
        /// The archive.
        layout: String,
        /// The config member.
        config: String,
        /// How many diff_ids.
        diff_ids: usize,
        /// How many layer files.
        layers: usize,
    },
    /// A name that more than one image answers to.
    #[error("{layout}: {count} images answer to {name:?} ({matches}); name one by its full name")]
    AmbiguousName {
        /// The layout.
        layout: String,
        /// The requested name.
        name: String,
        /// How many.
        count: usize,
        /// Each match: its names and digest.
        matches: String,
    },
    /// No name given and more than one image present.
    #[error("{layout} holds {count} images; name one with {layout}:NAME (names: {available})")]
    Ambiguous {
        /// The layout.
        layout: String,
        /// How many.
        count: usize,
        /// The names present.
        available: String,
    },
    /// A blob named by the graph is not in the layout.
    #[error("{layout}: blob {digest} is missing")]
    MissingBlob {
        /// The layout.
        layout: String,
        /// The blob.
        digest: Digest,
    },
    /// A blob's size differs from its descriptor.
    #[error("{layout}: blob {digest} is {actual} bytes but its descriptor says {declared}")]
    BlobSize {
        /// The layout.
        layout: String,
        /// The blob.
        digest: Digest,
        /// Actual size.
        actual: u64,
        /// Declared size.
        declared: u64,
    },
    /// A blob that does not hash to its name.
    #[error("{layout}: blob {digest} does not match its digest (it hashes to {actual})")]
    Corrupt {
        /// The layout.
        layout: String,
        /// The blob.
        digest: Digest,
        /// What it hashes to.
        actual: Digest,
    },
    /// index.json larger than the limit.
    #[error("{layout}: index.json is {size} bytes, more than the {INDEX_MAX}-byte limit")]
    IndexTooLarge {
        /// The layout.
        layout: String,
        /// Its size.
        size: u64,
    },
    /// A manifest larger than the limit.
    #[error("{layout}: manifest {digest} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// The layout.
        layout: String,
        /// The document.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A document ferry cannot interpret.
    #[error("{layout}: unusable manifest")]
    Oci {
        /// The layout.
        layout: String,
        /// Why.
        #[source]
        source: oci::OciError,
    },
    /// Indexes nested too deep.
    #[error("{layout}: indexes nest deeper than {max} levels at {digest}")]
    TooDeep {
        /// The layout.
        layout: String,
        /// Where.
        digest: Digest,
        /// The limit.
        max: usize,
    },
    /// A requested platform is absent.
    #[error("{image} has no {platform} variant; it has: {available}")]
    MissingPlatform {
        /// The image.
        image: String,
        /// The requested platform.
        platform: Platform,
        /// What it has.
        available: String,
    },
}

/// An OCI layout to read blobs from: a directory or a tar.
#[derive(Debug)]
pub struct LocalLayout {
    label: String,
    kind: LayoutKind,
    /// The parsed index.json.
    pub index: Index,
    /// index.json's entries by name (built on the first `select`, so a
    /// layout of many images that many spec entries select from is
    /// searched once, not once per entry).
    names: std::sync::OnceLock<HashMap<String, Vec<usize>>>,
}

#[derive(Debug)]
enum LayoutKind {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

/// The largest index.json read from a source.
const INDEX_MAX: u64 = 16 << 20;
/// The largest image config read to learn its platform.
pub(crate) const CONFIG_MAX: u64 = 16 << 20;

impl LocalLayout {
    /// Opens an OCI layout directory.
    pub fn open_dir(dir: &Path) -> Result<LocalLayout, SourceError> {
        let index_path = dir.join("index.json");
        if !dir.is_dir() {
            // Let the I/O error name the path.
            fs_err::read_dir(dir)?;
        }
        if !index_path.is_file() {
            return Err(SourceError::NotLayout(dir.to_owned()));
        }
        let f = fs_err::File::open(&index_path)?;
        let size = f.metadata()?.len();
        if size > INDEX_MAX {
            return Err(SourceError::IndexTooLarge {
                layout: format!("oci:{}", dir.display()),
                size,
            });
        }
        let bytes = read_limited(f, INDEX_MAX)?;
        let index = oci::parse_index_json(&bytes).map_err(|source| SourceError::BadIndex {
            path: dir.to_owned(),
            source,
        })?;
        Ok(LocalLayout {
            label: format!("oci:{}", dir.display()),
            kind: LayoutKind::Dir(dir.to_owned()),
            index,
            names: Default::default(),
        })
    }

    /// The fetch cache (an OCI layout store without an index), read for
    /// one registry image; messages name the image.
    pub fn cache(dir: &Path, image: &crate::base::reference::Reference) -> LocalLayout {
        LocalLayout {
            label: format!("{image} (cached in {})", dir.display()),
            kind: LayoutKind::Dir(dir.to_owned()),
            index: Index {
                schema_version: 2,
                media_type: None,
                artifact_type: None,
                manifests: Vec::new(),
                subject: None,
                annotations: Default::default(),
            },
            names: Default::default(),
        }
    }

    /// Opens an OCI layout stored in a tar (as `skopeo copy … oci-archive:` writes).
    pub fn open_tar(path: &Path) -> Result<LocalLayout, SourceError> {
        let members = scan_tar(path)?;
        LocalLayout::from_tar(path, members, format!("oci-archive:{}", path.display()))
    }

    /// The OCI layout in a tar already scanned (`members`: path → offset,
    /// size), named `label` in messages.
    fn from_tar(
        path: &Path,
        members: HashMap<String, (u64, u64)>,
        label: String,
    ) -> Result<LocalLayout, SourceError> {
        let Some(&(off, size)) = members.get("index.json") else {
            return Err(SourceError::NotLayout(path.to_owned()));
        };
        if size > INDEX_MAX {
            return Err(SourceError::IndexTooLarge {
                layout: label,
                size,
            });
        }
        let mut f = fs_err::File::open(path)?;
        f.seek(SeekFrom::Start(off))?;
        let bytes = read_limited(f.take(size), INDEX_MAX)?;
        let index = oci::parse_index_json(&bytes).map_err(|source| SourceError::BadIndex {
            path: path.to_owned(),
            source,
        })?;
        Ok(LocalLayout {
            label,
            kind: LayoutKind::Tar {
                path: path.to_owned(),
                members,
            },
            index,
            names: Default::default(),
        })
    }

    /// How this layout is named in messages (`oci:DIR`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Picks the image to carry: by name, or the only one. A name matches
    /// an entry's `org.opencontainers.image.ref.name` or its
    /// `io.containerd.image.name` (the full name containerd's and Docker's
    /// exports set beside a tag-only ref.name), in any spelling of the
    /// reference; a name more than one entry answers to is refused.
    pub fn select(&self, name: Option<&str>) -> Result<Descriptor, SourceError> {
        let names_of = |d: &Descriptor| -> Vec<String> {
            [oci::ANN_IMAGE_NAME, oci::ANN_REF_NAME]
                .iter()
                .filter_map(|k| d.annotations.get(*k).cloned())
                .collect()
        };
        // Built only for a message: listing thousands of names is not free.
        let available = || {
            let all: Vec<String> = self
                .index
                .manifests
                .iter()
                .map(|d| names_of(d).join(" / "))
                .filter(|n| !n.is_empty())
                .collect();
            if all.is_empty() {
                "no named images".to_owned()
            } else {
                all.join(", ")
            }
        };
        let Some(n) = name else {
            return match self.index.manifests.as_slice() {
                [only] => Ok(only.clone()),
                many => Err(SourceError::Ambiguous {
                    layout: self.label.clone(),
                    count: many.len(),
                    available: available(),
                }),
            };
        };
        let normal = |s: &str| s.parse::<crate::base::reference::Reference>().ok();
        let wanted = normal(n);
        // A name matches exactly, or in another spelling of the same
        // reference when the entry's name is a full one (a tag-only
        // ref.name such as `1.0` is matched exactly only).
        let same = |name: &str, full_only: bool| {
            name == n
                || (wanted.is_some()
                    && (!full_only || name.contains('/'))
                    && normal(name) == wanted)
        };
        let answers = |d: &&Descriptor| {
            d.annotations
                .get(oci::ANN_REF_NAME)
                .is_some_and(|r| same(r, true))
                || d.annotations
                    .get(oci::ANN_IMAGE_NAME)
                    .is_some_and(|full| same(full, false))
        };
        // Candidates from the name table (each name as written and in its
        // normal spelling; equal references spell the same), then checked
        // by the rule above, in index.json's order.
        let table = self.names.get_or_init(|| {
            let mut t: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, d) in self.index.manifests.iter().enumerate() {
                for key in [oci::ANN_REF_NAME, oci::ANN_IMAGE_NAME] {
                    let Some(v) = d.annotations.get(key) else {
                        continue;
                    };
                    t.entry(v.clone()).or_default().push(i);
                    if let Some(r) = normal(v) {
                        t.entry(r.to_string()).or_default().push(i);
                    }
                }
            }
            t
        });
        let mut at: Vec<usize> = [Some(n.to_owned()), wanted.as_ref().map(|w| w.to_string())]
            .iter()
            .flatten()
            .filter_map(|k| table.get(k))
            .flatten()
            .copied()
            .collect();
        at.sort_unstable();
        at.dedup();
        let matches: Vec<&Descriptor> = at
            .iter()
            .filter_map(|&i| self.index.manifests.get(i))
            .filter(answers)
            .collect();
        match matches.as_slice() {
            [] => Err(SourceError::UnknownName {
                layout: self.label.clone(),
                name: n.to_owned(),
                available: available(),
            }),
            [one] => Ok((*one).clone()),
            many => Err(SourceError::AmbiguousName {
                layout: self.label.clone(),
                name: n.to_owned(),
                count: many.len(),
                matches: many
                    .iter()
                    .map(|d| format!("{} ({})", names_of(d).join(" / "), d.digest))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Where a blob's bytes are, after checking it exists with the right size.
    pub fn locate(&self, d: &Descriptor) -> Result<MemberSource, SourceError> {
        let Some((size, segments)) = BlobSource::locate(self, &d.digest) else {
            return Err(SourceError::MissingBlob {
                layout: self.label.clone(),
                digest: d.digest,
            });
        };
        let Some((path, offset, _)) = segments.into_iter().next() else {
            return Err(SourceError::MissingBlob {
                layout: self.label.clone(),
                digest: d.digest,
            });
        };
        if size != d.size {
            return Err(SourceError::BlobSize {
                layout: self.label.clone(),
                digest: d.digest,
                actual: size,
                declared: d.size,
            });
        }
        Ok(MemberSource::File { path, offset })
    }

    /// Reads a small blob whole and checks its digest.
    pub fn read_verified(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>, SourceError> {
        if d.size > limit {
            return Err(SourceError::TooLarge {
                layout: self.label.clone(),
                digest: d.digest,
                size: d.size,
                limit,
            });
        }
        self.locate(d)?;
        match BlobSource::read_small(self, &d.digest, limit) {
            Ok(bytes) => Ok(bytes),
            Err(e) => match mismatch_in(&e) {
                Some(m) => Err(SourceError::Corrupt {
                    layout: self.label.clone(),
                    digest: d.digest,
                    actual: m.actual,
                }),
                None => Err(e.into()),
            },
        }
    }
}

/// A local layout (directory or OCI archive) is a blob source: a
/// directory's blob files, or a tar's members, read by position.
impl BlobSource for LocalLayout {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn locate(&self, digest: &Digest) -> Option<(u64, Segments)> {
        match &self.kind {
            LayoutKind::Dir(root) => {
                let p = root.join(digest.blob_path());
                let size = std::fs::metadata(&p).ok().filter(|m| m.is_file())?.len();
                Some((size, vec![(p, 0, size)]))
            }
            LayoutKind::Tar { path, members } => {
                let &(off, size) = members.get(&digest.blob_path())?;
                Some((size, vec![(path.clone(), off, size)]))
            }
        }
    }
}

/// The regular files of a tar: path (without a leading `./`) → offset of
/// its data, size. Symbolic and hard links to a regular file inside the
/// tar count as that file (`docker save` writes `<id>/layer.tar` as a
/// link to another layer with the same content); a link that leaves the
/// tar, dangles or points at another link is left out, so naming it fails
/// as a missing member. A name given twice is refused: tools disagree on which one
/// counts (the first for skopeo and podman, the last for a plain map).
fn scan_tar(path: &Path) -> Result<HashMap<String, (u64, u64)>, SourceError> {
    let f = fs_err::File::open(path)?;
    let bad = |source| SourceError::BadTar {
        path: path.to_owned(),
        source,
    };
    let mut ar = tar::Archive::new(f);
    let mut members = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let clean = |name: &str| name.trim_start_matches("./").to_owned();
    for entry in ar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        if (kind.is_file() || kind.is_symlink() || kind.is_hard_link())
            && (members.contains_key(&name) || links.contains_key(&name))
        {
            return Err(SourceError::BadTar {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("it holds {name} twice"),
                ),
            });
        }
        if kind.is_file() {
            members.insert(name, (entry.raw_file_position(), entry.size()));
        } else if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name_bytes() else {
                continue;
            };
            let target = String::from_utf8_lossy(&target).into_owned();
            // A symlink is relative to its own directory; a hard link
            // names a member from the tar's root.
            let target = if kind.is_symlink() {
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                resolve_link(dir, &target)
            } else {
                Some(clean(&target))
            };
            if let Some(t) = target {
                links.insert(name, t);
            }
        }
    }
    // One hop: a link to a regular file. A link to a link is left out
    // (docker save never writes one, and no chain can loop).
    for (name, target) in links {
        if let Some(&at) = members.get(&target) {
            members.entry(name).or_insert(at);
        }
    }
    Ok(members)
}

/// A link target with `.` and `..` worked out against `dir`, or `None`
/// when it is absolute or leaves the tar.
fn resolve_link(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn read_limited<R: Read>(r: R, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.take(limit).read_to_end(&mut v)?;
    Ok(v)
}

/// A blob the walk found, and whether it is a small JSON document.
#[derive(Debug, Clone)]
pub struct FoundBlob {
    /// Size in bytes.
    pub size: u64,
    /// Where the bytes are.
    pub source: MemberSource,
    /// Manifest, index or config (archived before the layers).
    pub small: bool,
}

impl FoundBlob {
    /// Fills `buf` with the blob's bytes from `offset` on, by a positioned
    /// read (a few bytes at a layer's ends, for its size estimate).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let past = || {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes from {offset} are past the end of a {}-byte blob",
                    buf.len(),
                    self.size
                ),
            )
        };
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(past)?;
        match &self.source {
            MemberSource::Bytes(b) => {
                let range = usize::try_from(offset).map_err(|_| past())?
                    ..usize::try_from(end).map_err(|_| past())?;
                buf.copy_from_slice(b.get(range).ok_or_else(past)?);
                Ok(())
            }
            MemberSource::File { path, offset: base } => {
                use std::os::unix::fs::FileExt;
                let f = fs_err::File::open(path)?;
                f.file().read_exact_at(buf, base + offset).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
                })
            }
        }
    }
}

/// The result of walking one image.
#[derive(Debug, Clone)]
pub struct WalkedImage {
    /// The root descriptor as carried (possibly a new, filtered index).
    pub root: Descriptor,
    /// The source's root digest when a filter replaced the index.
    pub source_digest: Option<Digest>,
    /// Documents a conversion to OCI changed (`pack --oci`).
    pub converted: Vec<crate::format::bundle::DigestChange>,
    /// Platforms present.
    pub platforms: Vec<Platform>,
    /// Every blob of the image.
    pub blobs: BTreeMap<Digest, FoundBlob>,
}

/// Walks the image rooted at `root` in `layout`, keeping only `filter`'s
/// platforms when given. `image` names the image in messages.
pub fn walk_image(
    layout: &LocalLayout,
    root: &Descriptor,
    filter: Option<&[Platform]>,
    image: &str,
) -> Result<WalkedImage, SourceError> {
    let mut w = Walker {
        layout,
        blobs: BTreeMap::new(),
        platforms: Vec::new(),
        walked: Default::default(),
    };
    let bytes = layout.read_verified(root, oci::MANIFEST_MAX_BYTES)?;
    let node = parse(layout, root, &bytes)?;
    let mut out_root = plain(root);
    let mut source_digest = None;
    match node {
        Node::Index(index) => {
            let (kept, filtered) = filter_index(&index, filter, image)?;
            for child in &kept {
                w.child(child, 1)?;
            }
            if let Some(new_bytes) = filtered {
                let d = Digest::of(&new_bytes);
                source_digest = Some(root.digest);
                out_root = Descriptor::new(&root.media_type, d, new_bytes.len() as u64);
                w.blobs.insert(
                    d,
                    FoundBlob {
                        size: new_bytes.len() as u64,
                        source: MemberSource::Bytes(Arc::new(new_bytes)),
                        small: true,
                    },
                );
            } else {
                w.add(root, true)?;
            }
        }
        Node::Manifest(m) => {
            w.add(root, true)?;
            let p = w.manifest(&m)?;
            w.platforms.extend(p.clone());
            check_manifest_platform(filter, p.as_ref(), image)?;
        }
    }
    let mut platforms = w.platforms;
    platforms.sort();
    platforms.dedup();
    Ok(WalkedImage {
        root: out_root,
        source_digest,
        converted: Vec::new(),
        platforms,
        blobs: w.blobs,
    })
}

/// Converts the Docker schema-2 documents of a walked image to OCI
/// (`pack --oci`): each Docker manifest becomes an OCI manifest over the
/// same config and layers, each manifest list an OCI index over the
/// converted children, and an OCI index over converted children a new
/// index. Every document whose digest changes is recorded in
/// `converted` (source digest → carried digest, with its platform), the
/// root's too; the old documents are no longer carried.
pub fn convert_to_oci(walked: &mut WalkedImage, image: &str) -> Result<(), SourceError> {
    let root = walked.root.clone();
    let mut changes = Vec::new();
    let mut memo = HashMap::new();
    let new_root = convert_document(walked, &root, 0, image, &mut changes, &mut memo)?;
    for c in &changes {
        walked.blobs.remove(&c.from);
    }
    if let Some(new_root) = new_root {
        // The root's change names the digest at the source, which a
        // platform filter may have replaced already.
        let original = walked.source_digest.unwrap_or(root.digest);
        if let Some(c) = changes.iter_mut().find(|c| c.from == root.digest) {
            c.from = original;
        }
        walked.source_digest = Some(original);
        walked.root = new_root;
    }
    walked.converted = changes;
    Ok(())
}

fn convert_document(
    walked: &mut WalkedImage,
    d: &Descriptor,
    depth: usize,
    image: &str,
    changes: &mut Vec<crate::format::bundle::DigestChange>,
    memo: &mut HashMap<Digest, Option<Descriptor>>,
) -> Result<Option<Descriptor>, SourceError> {
    // A document the graph names twice is converted once.
    if let Some(done) = memo.get(&d.digest) {
        return Ok(done.clone().map(|new| Descriptor {
            platform: d.platform.clone(),
            annotations: d.annotations.clone(),
            ..new
        }));
    }
    if depth > oci::MAX_DEPTH {
        return Err(SourceError::TooDeep {
            layout: image.to_owned(),
            digest: d.digest,
            max: oci::MAX_DEPTH,
        });
    }
    let Some(found) = walked.blobs.get(&d.digest).cloned() else {
        return Err(SourceError::MissingBlob {
            layout: image.to_owned(),
            digest: d.digest,
        });
    };
    let bytes = read_found(&found, &d.digest, image)?;
    let node =
        oci::parse_node(d.digest, &d.media_type, &bytes).map_err(|source| SourceError::Oci {
            layout: image.to_owned(),
            source,
        })?;
    let (media_type, new_bytes) = match node {
        Node::Manifest(m) => {
            if !oci::is_docker_document(&m.media_type.clone().unwrap_or_default()) {
                memo.insert(d.digest, None);
                return Ok(None);
            }
            (oci::OCI_MANIFEST, oci::to_bytes(&oci::manifest_to_oci(&m)))
        }
        Node::Index(i) => {
            let docker = oci::is_docker_document(&i.media_type.clone().unwrap_or_default());
            let mut manifests = Vec::with_capacity(i.manifests.len());
            let mut changed = docker;
            for c in &i.manifests {
                match convert_document(walked, c, depth + 1, image, changes, memo)? {
                    Some(new) => {
                        changed = true;
                        manifests.push(new);
                    }
                    None => manifests.push(c.clone()),
                }
            }
            if !changed {
                memo.insert(d.digest, None);
                return Ok(None);
            }
            // An attestation manifest names the child it describes by
            // digest: point it at that child's new digest.
            for m in &mut manifests {
                let Some(target) = m.annotations.get(ATTESTATION_KEY) else {
                    continue;
                };
                let renamed = changes
                    .iter()
                    .find(|c| c.from.to_string() == *target)
                    .map(|c| c.to.to_string());
                if let Some(new) = renamed {
                    m.annotations.insert(ATTESTATION_KEY.to_owned(), new);
                }
            }
            let index = Index {
                media_type: Some(oci::OCI_INDEX.to_owned()),
                manifests,
                ..i
            };
            (oci::OCI_INDEX, oci::to_bytes(&index))
        }
    };
    let to = Digest::of(&new_bytes);
    let mut new = d.clone();
    new.media_type = media_type.to_owned();
    new.digest = to;
    new.size = new_bytes.len() as u64;
    changes.push(crate::format::bundle::DigestChange {
        from: d.digest,
        to,
        platform: d.platform.as_ref().map(|p| p.to_platform().to_string()),
    });
    memo.insert(d.digest, Some(new.clone()));
    walked.blobs.insert(
        to,
        FoundBlob {
            size: new_bytes.len() as u64,
            source: MemberSource::Bytes(Arc::new(new_bytes)),
            small: true,
        },
    );
    Ok(Some(new))
}

/// A walked document's bytes, checked against its digest (`image` names
/// the image in messages).
pub fn read_found(found: &FoundBlob, d: &Digest, image: &str) -> Result<Vec<u8>, SourceError> {
    let bytes = match &found.source {
        MemberSource::Bytes(b) => b.as_ref().clone(),
        MemberSource::File { path, offset } => {
            if found.size > oci::MANIFEST_MAX_BYTES {
                return Err(SourceError::TooLarge {
                    layout: image.to_owned(),
                    digest: *d,
                    size: found.size,
                    limit: oci::MANIFEST_MAX_BYTES,
                });
            }
            let mut f = fs_err::File::open(path)?;
            f.seek(SeekFrom::Start(*offset))?;
            read_limited(f.take(found.size), found.size)?
        }
    };
    let actual = Digest::of(&bytes);
    if actual != *d {
        return Err(SourceError::Corrupt {
            layout: image.to_owned(),
            digest: *d,
            actual,
        });
    }
    Ok(bytes)
}

fn plain(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest, d.size)
}

fn parse(layout: &LocalLayout, d: &Descriptor, bytes: &[u8]) -> Result<Node, SourceError> {
    oci::parse_node(d.digest, &d.media_type, bytes).map_err(|source| SourceError::Oci {
        layout: layout.label.clone(),
        source,
    })
}

const ATTESTATION_KEY: &str = "vnd.docker.reference.digest";

/// Applies a platform filter to an index. Returns the children to keep and
/// whether that is a strict subset (so a new index must be written).
/// The index carried for an image whose root is `index`, with `filter`'s
/// platforms: the children kept and, when the filter dropped any, the
/// bytes of the new index over them (the same index `pack` writes and
/// `mirror` pushes). `image` names the image in messages.
pub fn filter_index(
    index: &Index,
    filter: Option<&[Platform]>,
    image: &str,
) -> Result<(Vec<Descriptor>, Option<Vec<u8>>), SourceError> {
    let (kept, rewritten) = choose_children(index, filter, image)?;
    let bytes = rewritten.then(|| {
        oci::to_bytes(&Index {
            manifests: kept.clone(),
            ..index.clone()
        })
    });
    Ok((kept, bytes))
}

/// The platform an image config declares (`None` when it names no os and
/// architecture, or does not parse).
pub fn config_platform(bytes: &[u8]) -> Option<Platform> {
    #[derive(serde::Deserialize)]
    struct Cfg {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    match oci::parse_config::<Cfg>(bytes) {
        Ok(Cfg {
            os: Some(os),
            architecture: Some(architecture),
            variant,
        }) => Some(Platform {
            os,
            architecture,
            variant,
        }),
        _ => None,
    }
}

/// Whether a single-manifest image of platform `p` (from its config)
/// passes `filter`: an error naming what it is, as `pack` gives, if not.
pub fn check_manifest_platform(
    filter: Option<&[Platform]>,
    p: Option<&Platform>,
    image: &str,
) -> Result<(), SourceError> {
    if let (Some(filter), Some(p)) = (filter.filter(|f| !f.is_empty()), p) {
        if !filter.iter().any(|f| f.accepts(p)) {
            return Err(SourceError::MissingPlatform {
                image: image.to_owned(),
                platform: filter[0].clone(),
                available: p.to_string(),
            });
        }
    }
    Ok(())
}

pub(crate) fn choose_children(
    index: &Index,
    filter: Option<&[Platform]>,
    image: &str,
) -> Result<(Vec<Descriptor>, bool), SourceError> {
    // An empty filter would keep nothing and make an empty index; the spec
    // refuses `platforms: []`, and here it means no filter at all.
    let Some(filter) = filter.filter(|f| !f.is_empty()) else {
        return Ok((index.manifests.clone(), false));
    };
    let platform_of = |d: &Descriptor| d.platform.as_ref().map(|p| p.to_platform());
    let available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(platform_of)
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect();
    for f in filter {
        if !index
            .manifests
            .iter()
            .filter_map(platform_of)
            .any(|p| f.accepts(&p))
        {
            return Err(SourceError::MissingPlatform {
                image: image.to_owned(),
                platform: f.clone(),
                available: available.join(", "),
            });
        }
    }
    let mut kept: Vec<Descriptor> = index
        .manifests
        .iter()
        .filter(|d| platform_of(d).is_some_and(|p| filter.iter().any(|f| f.accepts(&p))))
        .cloned()
        .collect();
    // Keep attestation manifests that describe a kept child.
    let kept_digests: Vec<String> = kept.iter().map(|d| d.digest.to_string()).collect();
    for d in &index.manifests {
        if let Some(target) = d.annotations.get(ATTESTATION_KEY) {
            if kept_digests.contains(target) && !kept.contains(d) {
                kept.push(d.clone());
            }
        }
    }
    // Preserve the original order.
    kept.sort_by_key(|d| index.manifests.iter().position(|x| x == d));
    let rewritten = kept.len() != index.manifests.len();
    Ok((kept, rewritten))
}

struct Walker<'a> {
    layout: &'a LocalLayout,
    blobs: BTreeMap<Digest, FoundBlob>,
    platforms: Vec<Platform>,
    /// Documents already walked: each is read and descended into once,
    /// however many times the graph names it.
    walked: std::collections::HashSet<Digest>,
}

impl Walker<'_> {
    fn add(&mut self, d: &Descriptor, small: bool) -> Result<(), SourceError> {
        if let Some(b) = self.blobs.get_mut(&d.digest) {
            b.small |= small;
            return Ok(());
        }
        let source = self.layout.locate(d)?;
        self.blobs.insert(
            d.digest,
            FoundBlob {
                size: d.size,
                source,
                small,
            },
        );
        Ok(())
    }

    fn child(&mut self, d: &Descriptor, depth: usize) -> Result<(), SourceError> {
        // Depth first, as in `oci::walk_graph`: any path that nests too
        // deep is refused, even to a document already walked.
        if depth > oci::MAX_DEPTH {
            return Err(SourceError::TooDeep {
                layout: self.layout.label.clone(),
                digest: d.digest,
                max: oci::MAX_DEPTH,
            });
        }
        if !self.walked.insert(d.digest) {
            return Ok(());
        }
        let bytes = self.layout.read_verified(d, oci::MANIFEST_MAX_BYTES)?;
        self.add(d, true)?;
        match parse(self.layout, d, &bytes)? {
            Node::Index(i) => {
                for c in &i.manifests {
                    self.child(c, depth + 1)?;
                }
            }
            Node::Manifest(m) => {
                let config_platform = self.manifest(&m)?;
                let p = d
                    .platform
                    .as_ref()
                    .map(|p| p.to_platform())
                    .or(config_platform);
                if let Some(p) = p.filter(|p| p.os != "unknown") {
                    self.platforms.push(p);
                }
            }
        }
        Ok(())
    }

    /// Adds a manifest's config and layers; returns the platform its image
    /// config declares, for image manifests.
    fn manifest(&mut self, m: &oci::Manifest) -> Result<Option<Platform>, SourceError> {
        self.add(&m.config, true)?;
        for l in &m.layers {
            self.add(l, false)?;
        }
        let is_image_config = m.config.media_type == oci::OCI_CONFIG
            || m.config.media_type == "application/vnd.docker.container.image.v1+json";
        if !is_image_config {
            return Ok(None);
        }
        let bytes = self.layout.read_verified(&m.config, CONFIG_MAX)?;
        Ok(config_platform(&bytes))
    }
}

// Kept at its old path for the tests.
pub use crate::base::digest::hash_file;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8, names: &[(&str, &str)]) -> Descriptor {
        Descriptor {
            media_type: oci::OCI_MANIFEST.to_owned(),
            digest: Digest::of(&[i]),
            size: 1,
            platform: None,
            annotations: names
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            artifact_type: None,
            urls: None,
            data: None,
        }
    }

    fn layout(manifests: Vec<Descriptor>) -> LocalLayout {
        let mut l = LocalLayout::cache(Path::new("/nowhere"), &"x/y:1".parse().unwrap());
        l.index.manifests = manifests;
        l
    }

    /// `select`'s name table answers exactly as the rule it stands for: a
    /// name as written, another spelling of a full name, a tag-only
    /// ref.name matched exactly only, and a name two entries share refused.
    #[test]
    fn select_by_name_matches_every_spelling_and_refuses_shared_names() {
        let l = layout(vec![
            entry(0, &[(oci::ANN_REF_NAME, "docker.io/library/redis:1.0")]),
            entry(
                1,
                &[
                    (oci::ANN_REF_NAME, "1.0"),
                    (oci::ANN_IMAGE_NAME, "docker.io/library/nginx:1.0"),
                ],
            ),
            entry(2, &[(oci::ANN_REF_NAME, "1.0")]),
            entry(3, &[(oci::ANN_REF_NAME, "tb")]),
        ]);
        let pick = |n: &str| l.select(Some(n)).map(|d| d.digest);
        assert_eq!(pick("redis:1.0").unwrap(), Digest::of(&[0]));
        assert_eq!(
            pick("docker.io/library/redis:1.0").unwrap(),
            Digest::of(&[0])
        );
        assert_eq!(pick("nginx:1.0").unwrap(), Digest::of(&[1]));
        // `tb` is exactly entry 3's ref.name; `tb:latest` spells the same
        // reference but a short ref.name is matched exactly only.
        assert_eq!(pick("tb").unwrap(), Digest::of(&[3]));
        assert!(matches!(
            pick("tb:latest"),
            Err(SourceError::UnknownName { .. })
        ));
        match pick("1.0") {
            Err(SourceError::AmbiguousName { count, .. }) => assert_eq!(count, 2),
            other => panic!("{other:?}"),
        }
        match pick("mysql:8") {
            Err(SourceError::UnknownName { available, .. }) => {
                assert!(
                    available.contains("docker.io/library/redis:1.0"),
                    "{available}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
