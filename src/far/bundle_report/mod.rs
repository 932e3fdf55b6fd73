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
use crate::format::blob::{BlobSource, Verifying};
use crate::format::bundle::{Artifact, ArtifactKind};
use crate::format::oci::{self, Descriptor, Node};
use crate::format::sizes::{self, Estimate, Walked};
pub use crate::format::sizes::{PlatformSize, Uncompressed};

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
    /// A layer could not be decompressed to count its size (`--exact`).
    #[error("cannot count what layer {digest} in {archive} unpacks to")]
    Count {
        /// The archive.
        archive: PathBuf,
        /// The layer.
        digest: Digest,
        /// Why (a damaged stream, bytes that do not match the digest).
        #[source]
        source: std::io::Error,
    },
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

/// One platform of an image (see [`PlatformSize`]).
pub type PlatformReport = PlatformSize;

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

/// A referrer: one of bundle.json's (a signature, attestation, SBOM found
/// at pack), or an artifact listed by hand whose manifest names a
/// `subject`.
#[derive(Debug, Clone, Serialize)]
pub struct Referrer {
    /// The referrer's reference: its cosign tag, its artifact reference,
    /// or its digest.
    pub reference: String,
    /// Its digest.
    pub digest: Digest,
    /// `signature`, `attestation`, `sbom`, `other`, or `artifact` for one
    /// listed by hand.
    pub kind: String,
    /// Its artifact type (or config media type).
    pub artifact_type: String,
    /// Its size (every distinct blob, its manifest included).
    pub size: u64,
    /// The subject's digest.
    pub subject: Digest,
    /// The artifact the subject belongs to, when it is carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_reference: Option<String>,
    /// For a signature checked at pack: the key or identity it verified
    /// with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
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
    /// Whether uncompressed sizes were counted by decompressing every layer
    /// (`--exact`) rather than estimated.
    pub exact: bool,
    /// Structural damage met while opening (only with `verify`, which
    /// names it in full).
    pub faults: Vec<String>,
    /// The verification, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

/// What to gather besides what bundle.json and the documents say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Verify the archive too (as `ferry verify`) and include the result.
    pub verify: bool,
    /// Count each layer's uncompressed size by decompressing it (every
    /// layer read once, through the verifying reader) instead of
    /// estimating it from a few bytes at its ends.
    pub exact: bool,
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
    gather_with(
        path,
        key,
        Options {
            verify,
            exact: false,
        },
        reporter,
    )
}

/// [`gather`] with every option: with `exact`, each distinct layer is
/// decompressed once to count what it unpacks to (in parallel by position
/// from a plain archive, in one ordered pass over a compressed one;
/// progress through `reporter`). A layer that does not decompress, or whose
/// bytes do not match its digest, fails the report naming it, unless
/// `verify` is asked for too: then its size is unknown and verify names
/// the damage.
pub fn gather_with(
    path: &Path,
    key: Option<&Path>,
    options: Options,
    reporter: &dyn Reporter,
) -> Result<Report, ReportError> {
    let Options { verify, exact } = options;
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
    let estimates: HashMap<Digest, Estimate> = match exact {
        true => count_layers(&archive, &layers, verify, reporter)?,
        false => layers
            .par_iter()
            .map(|l| (l.digest, estimate(&archive, &locations, l)))
            .collect(),
    };
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
            platforms.push(PlatformSize::of(m, &estimate_of));
            if distinct.insert(m.config.digest) {
                compressed += m.config.size;
                uncompressed.bytes += m.config.size;
            }
            for l in &m.layers {
                if distinct.insert(l.digest) {
                    compressed += l.size;
                    uncompressed.add(estimate_of(l));
                    let u = users.entry(l.digest).or_insert((l.size, Vec::new()));
                    u.1.push(n);
                }
            }
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
    let mut referrers: Vec<Referrer> = archive
        .bundle
        .artifacts
        .iter()
        .zip(&walked)
        .filter_map(|(a, w)| {
            let (subject, artifact_type) = w.subject.clone()?;
            Some(Referrer {
                reference: a.reference.clone(),
                digest: a.digest,
                kind: "artifact".into(),
                artifact_type,
                size: a.size,
                subject_reference: owner.get(&subject).map(|r| (*r).to_owned()),
                subject,
                verified_by: None,
            })
        })
        .collect();
    // bundle.json's referrers, each under the artifact its subject (or
    // its subject's subject) belongs to.
    for r in &archive.bundle.referrers {
        let subject_reference = owner.get(&r.subject).map(|s| (*s).to_owned());
        if let Some(s) = owner.get(&r.subject).copied() {
            owner.entry(r.digest).or_insert(s);
        }
        referrers.push(Referrer {
            reference: r.tag.clone().unwrap_or_else(|| r.digest.to_string()),
            digest: r.digest,
            kind: r.kind.to_string().to_lowercase(),
            artifact_type: r.artifact_type.clone().unwrap_or_default(),
            size: r.size,
            subject: r.subject,
            subject_reference,
            verified_by: r.verified_by.clone(),
        });
    }

    let uncompressed_note = (archive.in_order_only() && !exact).then(|| {
        "the archive is zstd-compressed, so layers cannot be read by position: only uncompressed tar layers have a known size (zstd -d it for estimates, or count them with --exact)".to_owned()
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
        exact,
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
        let root = Descriptor::new(&a.media_type, a.digest, 0);
        // A single manifest has no platform in a descriptor: bundle.json
        // recorded the one its config declares.
        let platform = match a.platforms.as_slice() {
            [one] => one.clone(),
            _ => String::new(),
        };
        sizes::walk(&root, platform, &|d| self.read(d))
    }
}

/// Each layer's uncompressed size, counted by decompressing it once
/// through the verifying reader (`--exact`). A layer the archive does not
/// hold (a delta leaves it out) is told by its media type alone. With
/// `tolerate`, a layer that fails is unknown instead of an error.
fn count_layers(
    archive: &Archive,
    layers: &[&Descriptor],
    tolerate: bool,
    reporter: &dyn Reporter,
) -> Result<HashMap<Digest, Estimate>, ReportError> {
    use crate::base::report::Progress;
    let total = layers.iter().map(|l| l.size).sum();
    reporter.start("counting uncompressed sizes", total);
    let failed = |digest: Digest, source: std::io::Error| match tolerate {
        true => Ok(Estimate::Unknown),
        false => Err(ReportError::Count {
            archive: archive.path().to_owned(),
            digest,
            source,
        }),
    };
    let one = |l: &Descriptor, r: &mut dyn std::io::Read| {
        let mut v = Verifying::new(r, l.digest, l.size, archive.path().display().to_string());
        let counted = sizes::count(
            l,
            &mut Progress {
                inner: &mut v,
                reporter,
            },
        );
        counted.and_then(|e| {
            v.finish()
                .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidData, m))?;
            Ok(e)
        })
    };
    let mut counted: HashMap<Digest, Estimate> = HashMap::new();
    if archive.in_order_only() {
        // One ordered pass over the stream, every wanted layer in turn.
        let wanted: HashMap<Digest, &Descriptor> = layers.iter().map(|l| (l.digest, *l)).collect();
        let mut stream = crate::format::archive::compressed::Stream::reopen(
            archive.path(),
            &archive.bundle_bytes,
        )?;
        loop {
            let i = match stream.next_member() {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(_) if tolerate => break,
                Err(e) => return Err(e.into()),
            };
            let Some(m) = archive.bundle.members.get(i) else {
                continue;
            };
            let Some(l) = wanted.get(&m.digest).filter(|l| l.size == m.size) else {
                continue;
            };
            if counted.contains_key(&l.digest) {
                continue;
            }
            let e = match one(l, &mut stream) {
                Ok(e) => e,
                Err(source) => failed(l.digest, source)?,
            };
            counted.insert(l.digest, e);
        }
    } else {
        counted = layers
            .par_iter()
            .filter_map(|l| {
                let (size, segments) = archive.locate(&l.digest)?;
                if size != l.size {
                    return None;
                }
                let mut r = archive.reader(segments);
                Some(match one(l, &mut r) {
                    Ok(e) => Ok((l.digest, e)),
                    Err(source) => failed(l.digest, source).map(|e| (l.digest, e)),
                })
            })
            .collect::<Result<_, _>>()?;
    }
    reporter.finish();
    // What the archive does not hold: the media type alone.
    for l in layers {
        counted
            .entry(l.digest)
            .or_insert_with(|| sizes::estimate(l, None));
    }
    Ok(counted)
}

/// What `layer` unpacks to, from a few bytes at its ends at most (read
/// by position from the archive, when it holds the layer at its size).
fn estimate(archive: &Archive, locations: &HashMap<Digest, Entry>, layer: &Descriptor) -> Estimate {
    let entry = locations
        .get(&layer.digest)
        .filter(|e| e.size == layer.size);
    match entry {
        Some(e) => sizes::estimate(layer, Some(&|at, buf| archive.read_member_at(e, at, buf))),
        None => sizes::estimate(layer, None),
    }
}
