//! `inspect --html`: what a bundle holds, gathered for people to look at.
//! [`gather`] walks every image's graph through the archive (documents
//! only, each checked against its digest), sums per platform what a pull
//! transfers (config and layers), estimates what the layers unpack to
//! without decompressing them (see [`Uncompressed`]), finds the layers
//! images share and what sharing saves, lists referrers (artifacts whose
//! manifest has a `subject`), and with `verify` runs [`verify`](super::verify).
//! [`html`] renders the result as one self-contained page; every string
//! from the archive is escaped there, never trusted.

pub mod html;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::base::report::Reporter;
use crate::far::unpack::Inspection;
use crate::far::verify::{SignatureCheckError, VerifyReport};
use crate::format::archive::{Archive, ArchiveError, Entry};
use crate::format::bundle::{Artifact, ArtifactKind};
use crate::format::oci::{self, Descriptor, Node};

/// Errors gathering or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The archive cannot be read (or, without `--verify`, is damaged).
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The signature of bundle.json is missing or wrong.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
    /// The verification asked for could not run.
    #[error(transparent)]
    Verify(#[from] SignatureCheckError),
    /// The page could not be written.
    #[error("cannot write the report {path}")]
    Write {
        /// The file asked for.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where bundle.json's signature stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Signature {
    /// Signed, and checked against the key given.
    Checked {
        /// The trusted comment of the signature.
        comment: String,
    },
    /// Signed, but no key was given to check it.
    NotChecked,
    /// Not signed.
    Unsigned,
}

/// What a set of layers unpacks to, as far as can be told without
/// decompressing them: `bytes` is the sum over the layers whose size is
/// known; `approximate` says some of those are estimates (a gzip trailer's
/// ISIZE, a zstd frame header's content size); `unknown` counts the layers
/// whose size cannot be told cheaply (left out of `bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Uncompressed {
    /// Known bytes.
    pub bytes: u64,
    /// Whether any part of `bytes` is an estimate.
    pub approximate: bool,
    /// Layers whose size is known (exactly or about).
    pub known: usize,
    /// Layers whose uncompressed size is unknown.
    pub unknown: usize,
}

impl Uncompressed {
    fn add(&mut self, e: Estimate) {
        match e {
            Estimate::Exact(n) => {
                self.bytes += n;
                self.known += 1;
            }
            Estimate::About(n) => {
                self.bytes += n;
                self.known += 1;
                self.approximate = true;
            }
            Estimate::Unknown => self.unknown += 1,
        }
    }
}

/// One layer's uncompressed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Estimate {
    /// The layer is an uncompressed tar: its own size.
    Exact(u64),
    /// From a gzip trailer or a zstd frame header.
    About(u64),
    /// Not known without decompressing.
    Unknown,
}

/// One platform of an image: one image manifest.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformReport {
    /// `os/arch[/variant]`, or empty when neither the index nor bundle.json
    /// says.
    pub platform: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its layers.
    pub layers: usize,
    /// Config and layers, as a pull transfers them.
    pub compressed: u64,
    /// Config and layers, unpacked.
    pub uncompressed: Uncompressed,
}

/// One image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Its reference.
    pub reference: String,
    /// Its root digest.
    pub digest: Digest,
    /// Where it came from.
    pub source: String,
    /// Every manifest under the root, in index order.
    pub platforms: Vec<PlatformReport>,
    /// Every distinct config and layer across its platforms.
    pub compressed: u64,
    /// The same, unpacked.
    pub uncompressed: Uncompressed,
    /// Why its graph could not be walked whole (damaged, or a delta that
    /// leaves a document out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A layer more than one image uses.
#[derive(Debug, Clone, Serialize)]
pub struct SharedLayer {
    /// The layer.
    pub digest: Digest,
    /// Its size in the archive.
    pub size: u64,
    /// The images using it (indexes into [`Report::images`]).
    pub images: Vec<usize>,
    /// `size × (images − 1)`: what carrying it once saves.
    pub saved: u64,
}

/// What sharing layers between images saves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sharing {
    /// Every shared layer, the largest saving first.
    pub layers: Vec<SharedLayer>,
    /// The total saved.
    pub saved: u64,
    /// What the images' configs and layers take, each image counted on its
    /// own.
    pub separate: u64,
}

/// An artifact whose manifest names another as its `subject`.
#[derive(Debug, Clone, Serialize)]
pub struct Referrer {
    /// The referrer's reference.
    pub reference: String,
    /// Its digest.
    pub digest: Digest,
    /// Its artifact type (or config media type).
    pub artifact_type: String,
    /// The subject's digest.
    pub subject: Digest,
    /// The artifact the subject belongs to, when it is carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_reference: Option<String>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What `inspect` says.
    pub inspection: Inspection,
    /// The sha256 of bundle.json: the bundle's identity (what a signature
    /// signs, and what ties every member to it).
    pub bundle_digest: Digest,
    /// bundle.json's creation time, when it records one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The signature's state.
    pub signature: Signature,
    /// The images, in bundle order.
    pub images: Vec<ImageReport>,
    /// Layers shared between images.
    pub sharing: Sharing,
    /// Referrers, when any artifact has a subject.
    pub referrers: Vec<Referrer>,
    /// Why no uncompressed size could be read from the layers, when that
    /// holds for the whole archive (a zstd-compressed one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_note: Option<String>,
    /// Structural damage met while opening (only with `verify`, which
    /// names it in full).
    pub faults: Vec<String>,
    /// The verification, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

/// Gathers the report of the archive at `path`. With `key`, the signature
/// of bundle.json is checked first. With `verify`, the archive is verified
/// too (every member hashed; progress through `reporter`) and the result
/// included, problems and all; a damaged plain archive is then reported on
/// as far as it arrived, where without `verify` it is refused as `inspect`
/// refuses it.
pub fn gather(
    path: &Path,
    key: Option<&Path>,
    verify: bool,
    reporter: &dyn Reporter,
) -> Result<Report, ReportError> {
    let archive = Archive::open_head_lenient(path)?;
    let comment = archive.check_key(key)?;
    let faults: Vec<String> = archive.faults.iter().map(|e| error_chain(e)).collect();
    if !verify && !archive.faults.is_empty() {
        let mut archive = archive;
        return Err(archive.faults.swap_remove(0).into());
    }
    let signature = match (comment, &archive.signature) {
        (Some(comment), _) => Signature::Checked { comment },
        (None, Some(_)) => Signature::NotChecked,
        (None, None) => Signature::Unsigned,
    };
    let mut archive_bytes = 0;
    for f in archive.files() {
        archive_bytes += fs_err::metadata(f).map_err(ArchiveError::Io)?.len();
    }
    let volumes = match archive.volume_count() {
        1 => Vec::new(),
        _ => archive.files().into_iter().map(Path::to_owned).collect(),
    };
    let mut inspection = Inspection::of(
        archive.path(),
        &archive.bundle,
        &archive.bundle_bytes,
        archive_bytes,
        volumes,
        archive.is_compressed(),
    );
    if let Signature::Checked { comment } = &signature {
        inspection.signature = Some(comment.clone());
    }

    let locations = archive.blob_locations();
    let reader = Documents {
        archive: &archive,
        locations: &locations,
    };
    // 1. Each artifact's graph, in parallel (documents only).
    let walked: Vec<Walked> = archive
        .bundle
        .artifacts
        .par_iter()
        .map(|a| reader.walk(a))
        .collect();
    // 2. Each distinct layer's uncompressed size, once.
    let mut layers: Vec<&Descriptor> = Vec::new();
    let mut seen = HashSet::new();
    for (a, w) in archive.bundle.artifacts.iter().zip(&walked) {
        if a.kind != ArtifactKind::Image {
            continue;
        }
        for l in w.manifests.iter().flat_map(|m| &m.layers) {
            if seen.insert(l.digest) {
                layers.push(l);
            }
        }
    }
    let estimates: HashMap<Digest, Estimate> = layers
        .par_iter()
        .map(|l| (l.digest, estimate(&archive, &locations, l)))
        .collect();
    let estimate_of = |d: &Descriptor| {
        estimates
            .get(&d.digest)
            .copied()
            .unwrap_or(Estimate::Unknown)
    };

    // 3. Per image and platform; who uses which layer.
    let mut images = Vec::new();
    let mut users: BTreeMap<Digest, (u64, Vec<usize>)> = BTreeMap::new();
    let mut separate = 0;
    for (a, w) in archive.bundle.artifacts.iter().zip(&walked) {
        if a.kind != ArtifactKind::Image {
            continue;
        }
        let n = images.len();
        let mut platforms = Vec::new();
        let mut distinct: HashSet<Digest> = HashSet::new();
        let (mut compressed, mut uncompressed) = (0, Uncompressed::default());
        for m in &w.manifests {
            let mut p = PlatformReport {
                platform: m.platform.clone(),
                digest: m.digest,
                layers: m.layers.len(),
                compressed: m.config.size,
                uncompressed: Uncompressed {
                    bytes: m.config.size,
                    ..Default::default()
                },
            };
            if distinct.insert(m.config.digest) {
                compressed += m.config.size;
                uncompressed.bytes += m.config.size;
            }
            for l in &m.layers {
                p.compressed += l.size;
                p.uncompressed.add(estimate_of(l));
                if distinct.insert(l.digest) {
                    compressed += l.size;
                    uncompressed.add(estimate_of(l));
                    let u = users.entry(l.digest).or_insert((l.size, Vec::new()));
                    u.1.push(n);
                }
            }
            platforms.push(p);
        }
        separate += compressed;
        images.push(ImageReport {
            reference: a.reference.clone(),
            digest: a.digest,
            source: a.source.clone(),
            platforms,
            compressed,
            uncompressed,
            problem: w.problem.clone(),
        });
    }
    let mut shared: Vec<SharedLayer> = users
        .into_iter()
        .filter(|(_, (_, u))| u.len() > 1)
        .map(|(digest, (size, images))| SharedLayer {
            digest,
            size,
            saved: size.saturating_mul(images.len() as u64 - 1),
            images,
        })
        .collect();
    shared.sort_by(|a, b| b.saved.cmp(&a.saved).then(a.digest.cmp(&b.digest)));
    let sharing = Sharing {
        saved: shared.iter().map(|l| l.saved).sum(),
        layers: shared,
        separate,
    };

    // 4. Referrers: artifacts whose root names a subject.
    let mut owner: HashMap<Digest, &str> = HashMap::new();
    for (a, w) in archive.bundle.artifacts.iter().zip(&walked) {
        owner.entry(a.digest).or_insert(&a.reference);
        for m in &w.manifests {
            owner.entry(m.digest).or_insert(&a.reference);
        }
    }
    let referrers = archive
        .bundle
        .artifacts
        .iter()
        .zip(&walked)
        .filter_map(|(a, w)| {
            let (subject, artifact_type) = w.subject.clone()?;
            Some(Referrer {
                reference: a.reference.clone(),
                digest: a.digest,
                artifact_type,
                subject_reference: owner.get(&subject).map(|r| (*r).to_owned()),
                subject,
            })
        })
        .collect();

    let uncompressed_note = archive.is_compressed().then(|| {
        "the archive is zstd-compressed, so layers cannot be read by position: only uncompressed tar layers have a known size (zstd -d it for estimates)".to_owned()
    });
    let created = archive.bundle.created.clone();
    let bundle_digest = Digest::of(&archive.bundle_bytes);
    drop(archive);
    let verify = match verify {
        true => Some(crate::far::verify::verify(path, key, reporter)?),
        false => None,
    };
    Ok(Report {
        inspection,
        bundle_digest,
        created,
        signature,
        images,
        sharing,
        referrers,
        uncompressed_note,
        faults,
        verify,
    })
}

/// Renders `report` and writes it to `path` atomically (a temp file beside
/// it, renamed when whole).
pub fn write_html(report: &Report, path: &Path) -> Result<(), ReportError> {
    crate::format::layout::write_atomic(path, html::render(report).as_bytes()).map_err(|source| {
        ReportError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

/// One image manifest met under a root.
struct ManifestSeen {
    platform: String,
    digest: Digest,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// What walking one artifact found.
#[derive(Default)]
struct Walked {
    manifests: Vec<ManifestSeen>,
    /// The root's subject and artifact type.
    subject: Option<(Digest, String)>,
    problem: Option<String>,
}

/// Reads documents out of the archive, each checked against its digest.
struct Documents<'a> {
    archive: &'a Archive,
    locations: &'a HashMap<Digest, Entry>,
}

impl Documents<'_> {
    fn read(&self, d: &Descriptor) -> Result<Node, String> {
        let entry = self
            .locations
            .get(&d.digest)
            .ok_or_else(|| format!("document {} is not in the archive", d.digest))?;
        let bytes = self
            .archive
            .read_member(entry, oci::MANIFEST_MAX_BYTES)
            .map_err(|e| error_chain(&e))?;
        if Digest::of(&bytes) != d.digest {
            return Err(format!("document {} does not match its digest", d.digest));
        }
        oci::parse_node(d.digest, &d.media_type, &bytes).map_err(|e| error_chain(&e))
    }

    fn walk(&self, a: &Artifact) -> Walked {
        let mut w = Walked::default();
        let root = Descriptor::new(&a.media_type, a.digest, 0);
        // A single manifest has no platform in a descriptor: bundle.json
        // recorded the one its config declares.
        let platform = match a.platforms.as_slice() {
            [one] => one.clone(),
            _ => String::new(),
        };
        let mut walked = HashSet::new();
        if let Err(e) = self.visit(&root, platform, 0, true, &mut walked, &mut w) {
            w.problem = Some(e);
        }
        w
    }

    fn visit(
        &self,
        d: &Descriptor,
        platform: String,
        depth: usize,
        root: bool,
        walked: &mut HashSet<Digest>,
        w: &mut Walked,
    ) -> Result<(), String> {
        if depth > oci::MAX_DEPTH {
            return Err(format!(
                "indexes nest deeper than {} levels at {}",
                oci::MAX_DEPTH,
                d.digest
            ));
        }
        if !walked.insert(d.digest) {
            return Ok(());
        }
        match self.read(d)? {
            Node::Index(i) => {
                if root {
                    w.subject = i
                        .subject
                        .as_ref()
                        .map(|s| (s.digest, i.artifact_type.clone().unwrap_or_default()));
                }
                for c in &i.manifests {
                    let p = c
                        .platform
                        .as_ref()
                        .map(|p| p.to_platform().to_string())
                        .unwrap_or_default();
                    self.visit(c, p, depth + 1, false, walked, w)?;
                }
            }
            Node::Manifest(m) => {
                if root {
                    w.subject = m.subject.as_ref().map(|s| {
                        let t = m
                            .artifact_type
                            .clone()
                            .unwrap_or_else(|| m.config.media_type.clone());
                        (s.digest, t)
                    });
                }
                w.manifests.push(ManifestSeen {
                    platform,
                    digest: d.digest,
                    config: m.config,
                    layers: m.layers,
                });
            }
        }
        Ok(())
    }
}

/// Layer media types that are an uncompressed tar.
fn is_plain_tar(media_type: &str) -> bool {
    matches!(
        media_type,
        oci::OCI_LAYER_TAR
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
    )
}

/// Annotations of layers made of many gzip members or zstd frames, whose
/// trailer or first header tells nothing of the whole.
const MULTI_PART: [&str; 2] = [
    "containerd.io/snapshot/stargz/toc.digest",
    "io.github.containers.zstd-chunked.manifest-checksum",
];

/// What `layer` unpacks to, from a few bytes at its ends at most.
fn estimate(archive: &Archive, locations: &HashMap<Digest, Entry>, layer: &Descriptor) -> Estimate {
    let entry = locations
        .get(&layer.digest)
        .filter(|e| e.size == layer.size);
    let head = entry.and_then(|e| {
        let mut buf = vec![0u8; e.size.min(18) as usize];
        archive.read_member_at(e, 0, &mut buf).ok().map(|()| buf)
    });
    if MULTI_PART
        .iter()
        .any(|k| layer.annotations.contains_key(*k))
    {
        return Estimate::Unknown;
    }
    let Some((entry, head)) = entry.zip(head) else {
        // Not readable by position (a compressed archive, or a blob a delta
        // leaves out): the media type alone.
        return match is_plain_tar(&layer.media_type) {
            true => Estimate::Exact(layer.size),
            false => Estimate::Unknown,
        };
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut isize = [0u8; 4];
        if entry.size < 18
            || archive
                .read_member_at(entry, entry.size - 4, &mut isize)
                .is_err()
        {
            return Estimate::Unknown;
        }
        return Estimate::About(gzip_size(u32::from_le_bytes(isize), entry.size));
    }
    if head.starts_with(&crate::format::archive::form::ZSTD_MAGIC) {
        return zstd_content_size(&head).map_or(Estimate::Unknown, Estimate::About);
    }
    // Neither gzip nor zstd: a tar is its own size.
    match is_plain_tar(&layer.media_type) || is_tar(archive, entry) {
        true => Estimate::Exact(entry.size),
        false => Estimate::Unknown,
    }
}

/// Whether the member starts with a ustar header (`ustar` at 257).
fn is_tar(archive: &Archive, entry: &Entry) -> bool {
    let mut magic = [0u8; 5];
    entry.size >= 512
        && archive.read_member_at(entry, 257, &mut magic).is_ok()
        && &magic == b"ustar"
}

/// The uncompressed size of a one-member gzip of `compressed` bytes whose
/// trailer says `isize` (the size modulo 2^32): the smallest size with that
/// remainder that deflate could have made `compressed` bytes from (stored
/// blocks add 5 bytes per 65,535, the gzip frame 18).
fn gzip_size(isize: u32, compressed: u64) -> u64 {
    let overhead = 18 + 5 * (compressed / 65_535 + 1);
    let floor = compressed.saturating_sub(overhead);
    let mut n = u64::from(isize);
    if n < floor {
        n += (floor - n).div_ceil(1 << 32) << 32;
    }
    n
}

/// The content size a zstd frame header declares, when it declares one
/// (the first frame's: the whole layer's when it is one frame).
fn zstd_content_size(head: &[u8]) -> Option<u64> {
    let fhd = *head.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    let did = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
    let fcs = match fhd >> 6 {
        0 if single_segment => 1,
        0 => return None,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let at = 5 + usize::from(!single_segment) + did;
    let field = head.get(at..at + fcs)?;
    let mut v = [0u8; 8];
    v[..fcs].copy_from_slice(field);
    let n = u64::from_le_bytes(v);
    Some(if fcs == 2 { n + 256 } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_isize_is_lifted_past_4_gib_when_the_compressed_size_needs_it() {
        assert_eq!(gzip_size(1000, 500), 1000);
        // A 5 GiB layer of incompressible data: ISIZE wrapped once.
        let five = 5u64 << 30;
        let wrapped = (five % (1 << 32)) as u32;
        assert_eq!(gzip_size(wrapped, five + 1000), five);
        // Well-compressed data over 4 GiB cannot be told apart: the floor.
        assert_eq!(gzip_size(wrapped, 1 << 20), u64::from(wrapped));
    }

    #[test]
    fn zstd_frame_header_content_size_is_read_when_declared() {
        let data = vec![7u8; 100_000];
        let z = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(zstd_content_size(&z[..18.min(z.len())]), Some(100_000));
        // A header without a content size (streamed).
        let no_size = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0, 0, 0, 0];
        assert_eq!(zstd_content_size(&no_size), None);
        // Two-byte field: value + 256.
        let two = [0x28, 0xb5, 0x2f, 0xfd, 0x40, 0x58, 0x10, 0x00];
        assert_eq!(zstd_content_size(&two), Some(0x10 + 256));
        assert_eq!(zstd_content_size(&[0x28, 0xb5]), None);
    }
}
