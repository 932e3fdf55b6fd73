//! `bundle.json`: the archive's table of contents. It records the format
//! and tool versions, the spec's name, every carried artifact with its
//! source, digest, media type, platforms and size, and every archive member
//! with its digest and size, in archive order. `bundle.schema.json` at the
//! repository root is generated from these types.
//!
//! This module owns the document and its validation; reading it out of an
//! archive belongs to `archive`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;

/// The value of `format`.
pub const FORMAT: &str = "ferry-bundle";
/// The newest format version this build writes and reads. Version 2 adds
/// the volume plan and the delta record, version 3 the digest changes of
/// `pack --oci` (`converted`), version 4 the referrers (signatures,
/// attestations, SBOMs); a bundle is written with the lowest version that
/// holds what it uses, so older readers keep reading the others.
pub const FORMAT_VERSION: u32 = 4;
/// The version that added the digest changes of `pack --oci`.
pub const FORMAT_VERSION_CONVERTED: u32 = 3;
/// The version that added referrers.
pub const FORMAT_VERSION_REFERRERS: u32 = 4;
/// The version that added the volume plan and the delta record.
pub const FORMAT_VERSION_VOLUMES: u32 = 2;
/// The version written when a bundle uses no version-2 feature.
pub const FORMAT_VERSION_BASE: u32 = 1;
/// The largest bundle.json ferry reads.
pub const BUNDLE_MAX_BYTES: u64 = 64 << 20;
/// Member name of the layout marker.
pub const OCI_LAYOUT_PATH: &str = "oci-layout";
/// Member name of the table of contents.
pub const BUNDLE_PATH: &str = "bundle.json";
/// Member name of the layout index.
pub const INDEX_PATH: &str = "index.json";

/// Why a bundle.json was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not JSON of the bundle shape.
    #[error("bundle.json does not match the ferry bundle schema")]
    Schema(#[source] serde_json::Error),
    /// Another format.
    #[error("bundle.json declares format {0:?}, not {FORMAT:?}")]
    Format(String),
    /// Written by a newer ferry.
    #[error("bundle.json has format version {0}; this ferry reads up to version {FORMAT_VERSION}: upgrade ferry")]
    TooNew(u32),
    /// A member path outside the layout's shape.
    #[error("bundle.json lists member {0:?}, which is not a layout path (oci-layout, index.json, blobs/sha256/<hex>)")]
    MemberPath(String),
    /// A blob member whose path and digest disagree.
    #[error("bundle.json lists member {path} with digest {digest}, which does not match its path")]
    MemberDigest {
        /// The member path.
        path: String,
        /// The declared digest.
        digest: Digest,
    },
    /// The same member listed twice.
    #[error("bundle.json lists member {0} twice")]
    DuplicateMember(String),
    /// Required members absent.
    #[error("bundle.json does not list {0}")]
    MissingMember(&'static str),
    /// Two artifacts carried under one reference.
    #[error("bundle.json lists the artifact {0} twice")]
    DuplicateArtifact(String),
    /// An artifact whose root is not a manifest or index, or is not carried.
    #[error("bundle.json lists the artifact {reference} with {what}")]
    Artifact {
        /// The artifact's reference.
        reference: String,
        /// What is wrong.
        what: String,
    },
    /// A referrer that cannot be carried as listed.
    #[error("bundle.json lists the referrer {digest} with {what}")]
    Referrer {
        /// The referrer's digest.
        digest: Digest,
        /// What is wrong.
        what: String,
    },
    /// A volume plan that does not cover the members exactly once, in order.
    #[error("bundle.json has an inconsistent volume plan: {0}")]
    VolumePlan(String),
}

/// The whole table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ferry bundle.json")]
pub struct Bundle {
    /// Always `ferry-bundle`.
    pub format: String,
    /// Format version; readers refuse versions newer than they know.
    pub format_version: u32,
    /// The program that wrote the archive.
    pub tool: Tool,
    /// The spec's name.
    pub name: String,
    /// Creation time (RFC 3339), only when asked for; absent by default so
    /// archives are reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Every carried artifact, in spec order.
    pub artifacts: Vec<Artifact>,
    /// Every archive member except bundle.json itself, in archive order
    /// (`oci-layout` first, then `index.json`, then the blobs).
    pub members: Vec<Member>,
    /// How the members are cut into volumes, when the archive is split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<VolumePlan>,
    /// When the archive is a delta: the blobs it leaves out because the
    /// far side already holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// Signatures, attestations, SBOMs and other artifacts that refer to a
    /// carried document, found at pack time and carried with their raw
    /// bytes. index.json lists each without a reference name. Format
    /// version 4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

/// An artifact that refers to a carried document: it travels unchanged
/// (so its digest and any signature in it stay valid) and is pushed after
/// its subject, into the subject's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Referrer {
    /// Digest of its manifest (or index).
    pub digest: Digest,
    /// Media type of that document.
    pub media_type: String,
    /// Its artifact type: the manifest's `artifactType`, else its config's
    /// media type (as the referrers API reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The document it refers to: an artifact's root, a child manifest of
    /// one, or another referrer (a signature on an SBOM).
    pub subject: Digest,
    /// Signature, attestation, SBOM or other.
    pub kind: ReferrerKind,
    /// Total bytes of its distinct blobs, its own document included.
    pub size: u64,
    /// How it was found.
    pub found: FoundBy,
    /// The tag it was found under (cosign's `sha256-<hex>.sig`, `.att`,
    /// `.sbom`); `load` pushes it under that tag too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// For a signature checked at pack time (`verify:`, `--cosign-key`):
    /// the key file or certificate identity it verified with. A record of
    /// that check, which `ferry verify --cosign-key` repeats offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
}

/// What a referrer is, for reports and policies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ReferrerKind {
    /// A signature (cosign simple signing, a Sigstore bundle, Notary).
    Signature,
    /// An attestation (in-toto, DSSE).
    Attestation,
    /// A software bill of materials (SPDX, CycloneDX, Syft).
    Sbom,
    /// Anything else that names a subject.
    Other,
}

impl From<crate::format::cosign::Kind> for ReferrerKind {
    fn from(k: crate::format::cosign::Kind) -> ReferrerKind {
        use crate::format::cosign::Kind;
        match k {
            Kind::Signature => ReferrerKind::Signature,
            Kind::Attestation => ReferrerKind::Attestation,
            Kind::Sbom => ReferrerKind::Sbom,
            Kind::Other => ReferrerKind::Other,
        }
    }
}

impl std::fmt::Display for ReferrerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReferrerKind::Signature => "signature",
            ReferrerKind::Attestation => "attestation",
            ReferrerKind::Sbom => "SBOM",
            ReferrerKind::Other => "other",
        })
    }
}

/// "3 signatures, 2 attestations, 1 SBOM": referrers counted by kind, in a
/// fixed order.
pub fn count_kinds(kinds: impl IntoIterator<Item = ReferrerKind>) -> String {
    let mut counts: std::collections::BTreeMap<ReferrerKind, usize> = Default::default();
    for k in kinds {
        *counts.entry(k).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The suffixes of cosign's tags (`sha256-<hex>.sig`, …): the only tags a
/// referrer may carry.
pub const COSIGN_TAG_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// Where a referrer was found at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FoundBy {
    /// The OCI referrers API (`/v2/<name>/referrers/<digest>`).
    ReferrersApi,
    /// The referrers tag schema's fallback index (tag `sha256-<hex>`).
    TagSchema,
    /// cosign's tag convention (`sha256-<hex>.sig`, `.att`, `.sbom`).
    CosignTag,
}

/// How an archive is cut into volumes `OUT.001`, `OUT.002`, ….
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumePlan {
    /// Identifies this set of volumes; every volume after the first
    /// repeats it in its `ferry-volume.json`, so a volume from another
    /// bundle is recognised.
    pub id: Digest,
    /// The largest volume allowed, in bytes.
    pub max_size: u64,
    /// The volumes in order; the first also holds `oci-layout`,
    /// `bundle.json` and the signature.
    pub volumes: Vec<VolumeInfo>,
}

/// One volume of a split archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeInfo {
    /// The member bytes it holds, in archive order.
    pub pieces: Vec<Piece>,
}

/// A member, or a part of one, held by a volume. A member larger than a
/// volume is the only kind split into parts; each part is a tar member
/// named `PATH.partN` (N from 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Piece {
    /// The member's path (as in `members`).
    pub member: String,
    /// Where in the member this piece starts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The piece's length.
    pub size: u64,
    /// The part number (from 1) when the member is split; absent when the
    /// piece is the whole member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
}

impl Piece {
    /// The piece's path inside its volume's tar.
    pub fn tar_path(&self) -> String {
        match self.part {
            Some(n) => format!("{}.part{n}", self.member),
            None => self.member.clone(),
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What a delta archive leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// What the inventory described: a registry or an earlier bundle.
    pub base: String,
    /// sha256 of the inventory file the delta was made against.
    pub inventory: Digest,
    /// Blobs the artifacts need that are not in this archive; `load`
    /// checks each is in the target before pushing what needs it.
    pub absent: Vec<AbsentBlob>,
}

/// A blob a delta expects the target to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbsentBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Repositories of the target registry the inventory saw it in;
    /// `load` mounts it from one of them when the target repository
    /// lacks it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
}

/// Writer identification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// `ferry`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// What kind of thing an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A container image (single manifest or index).
    Image,
    /// A Helm chart stored as an OCI artifact.
    Chart,
    /// A file or directory stored as an OCI artifact.
    File,
}

/// One carried artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Image, chart or file.
    pub kind: ArtifactKind,
    /// Where it came from, as the spec named it.
    pub source: String,
    /// The reference it is carried as (`org.opencontainers.image.ref.name`).
    pub reference: String,
    /// Digest of the root manifest or index in this archive: what a target
    /// registry will hold.
    pub digest: Digest,
    /// Media type of the root document.
    pub media_type: String,
    /// Total bytes of every distinct blob of the artifact, root included.
    pub size: u64,
    /// Platforms present, as `os/arch[/variant]`; empty for artifacts
    /// without a platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// When a platform filter rewrote an index: the digest of the original
    /// index at the source. `digest` is then the digest of the new index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// When `pack --oci` converted Docker schema-2 documents to OCI: each
    /// document whose digest changed (the root's own change is also in
    /// `source_digest`), so that rewrite can translate pins on the old
    /// digests, per platform too. Signatures made for an old digest do not
    /// apply to the new one. Format version 3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub converted: Vec<DigestChange>,
    /// Chart name and version, for charts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartInfo>,
    /// File title, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
}

/// A document whose digest a conversion changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestChange {
    /// The digest at the source.
    pub from: Digest,
    /// The digest carried.
    pub to: Digest,
    /// The platform of a child manifest (`os/arch[/variant]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// Chart identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartInfo {
    /// Chart name.
    pub name: String,
    /// Chart version.
    pub version: String,
    /// App version, when the chart declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

/// File identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileInfo {
    /// The file or directory name it is restored under.
    pub title: String,
    /// Whether it is a directory (carried as an uncompressed tar).
    pub directory: bool,
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Path inside the archive.
    pub path: String,
    /// sha256 of the member's bytes.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

impl Bundle {
    /// Parses and validates bundle.json bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Bundle, BundleError> {
        // Read the version first, so a newer format gets the right message
        // even when its fields are unknown to this build.
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            format_version: Option<u32>,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(BundleError::Schema)?;
        if let Some(f) = head.format {
            if f != FORMAT {
                return Err(BundleError::Format(f));
            }
        }
        if let Some(v) = head.format_version {
            if v > FORMAT_VERSION {
                return Err(BundleError::TooNew(v));
            }
        }
        let b: Bundle = serde_json::from_slice(bytes).map_err(BundleError::Schema)?;
        b.validate()?;
        Ok(b)
    }

    /// Serialises deterministically (pretty, trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    fn validate(&self) -> Result<(), BundleError> {
        let mut seen = std::collections::HashSet::new();
        for m in &self.members {
            if !seen.insert(m.path.as_str()) {
                return Err(BundleError::DuplicateMember(m.path.clone()));
            }
            match m.path.as_str() {
                OCI_LAYOUT_PATH | INDEX_PATH => {}
                p => {
                    let hex = p
                        .strip_prefix("blobs/sha256/")
                        .ok_or_else(|| BundleError::MemberPath(p.to_owned()))?;
                    let d =
                        Digest::from_hex(hex).map_err(|_| BundleError::MemberPath(p.to_owned()))?;
                    if d != m.digest {
                        return Err(BundleError::MemberDigest {
                            path: p.to_owned(),
                            digest: m.digest,
                        });
                    }
                }
            }
        }
        for required in [OCI_LAYOUT_PATH, INDEX_PATH] {
            if !seen.contains(required) {
                return Err(BundleError::MissingMember(required));
            }
        }
        let mut references = std::collections::HashSet::new();
        for a in &self.artifacts {
            if !references.insert(a.reference.as_str()) {
                return Err(BundleError::DuplicateArtifact(a.reference.clone()));
            }
            let bad = |what: String| BundleError::Artifact {
                reference: a.reference.clone(),
                what,
            };
            if !crate::format::oci::is_manifest_like(&a.media_type) {
                return Err(bad(format!(
                    "media type {:?}, which is not a manifest or index",
                    a.media_type
                )));
            }
            if !seen.contains(a.digest.blob_path().as_str()) {
                return Err(bad(format!("root {}, which is not a member", a.digest)));
            }
            if let Some(c) = &a.chart {
                check_chart(&c.name, &c.version).map_err(bad)?;
            }
        }
        let roots: std::collections::HashSet<Digest> =
            self.artifacts.iter().map(|a| a.digest).collect();
        let mut referrers = std::collections::HashSet::new();
        for r in &self.referrers {
            let bad = |what: String| BundleError::Referrer {
                digest: r.digest,
                what,
            };
            if !referrers.insert(r.digest) {
                return Err(bad("listed twice".into()));
            }
            if roots.contains(&r.digest) {
                return Err(bad("also listed as an artifact".into()));
            }
            if !crate::format::oci::is_manifest_like(&r.media_type) {
                return Err(bad(format!(
                    "media type {:?}, which is not a manifest or index",
                    r.media_type
                )));
            }
            if r.subject == r.digest {
                return Err(bad("itself as its subject".into()));
            }
            for (what, d) in [("document", r.digest), ("subject", r.subject)] {
                if !seen.contains(d.blob_path().as_str()) {
                    return Err(bad(format!("{what} {d}, which is not a member")));
                }
            }
            if let Some(t) = &r.tag {
                // Only cosign's own tag for this subject: any other would
                // let a referrer move an image's tag at load.
                let ok = COSIGN_TAG_SUFFIXES
                    .iter()
                    .any(|s| *t == format!("sha256-{}.{s}", r.subject.hex()));
                if !ok {
                    return Err(bad(format!(
                        "tag {t:?}, which is not cosign's tag for its subject (sha256-{}.sig, .att or .sbom)",
                        r.subject.hex()
                    )));
                }
            }
        }
        if let Some(plan) = &self.volumes {
            self.validate_volumes(plan)?;
        }
        Ok(())
    }

    /// The pieces, read in order, must be every member in order, each
    /// whole or cut into consecutive numbered parts.
    fn validate_volumes(&self, plan: &VolumePlan) -> Result<(), BundleError> {
        let bad = |m: String| Err(BundleError::VolumePlan(m));
        if plan.volumes.is_empty() {
            return bad("it lists no volumes".into());
        }
        let mut members = self.members.iter();
        let mut current: Option<(&Member, u64, u32)> = None;
        for (v, vol) in plan.volumes.iter().enumerate() {
            for p in &vol.pieces {
                let (m, at, part) = match current.take() {
                    Some(c) => c,
                    None => match members.next() {
                        Some(m) => (m, 0, 0),
                        None => {
                            return bad(format!(
                                "volume {} lists {} after the last member",
                                v + 1,
                                p.member
                            ))
                        }
                    },
                };
                let whole = p.part.is_none();
                if p.member != m.path
                    || p.offset != at
                    || (whole && (at != 0 || p.size != m.size))
                    || (!whole && p.part != Some(part + 1))
                    || p.size == 0 && m.size != 0
                    || at + p.size > m.size
                {
                    return bad(format!(
                        "volume {} lists {} (offset {}, {} bytes) where {} from byte {at} is due",
                        v + 1,
                        p.tar_path(),
                        p.offset,
                        p.size,
                        m.path
                    ));
                }
                if at + p.size < m.size {
                    current = Some((m, at + p.size, part + 1));
                }
            }
        }
        if let Some((m, at, _)) = current {
            return bad(format!("{} ends at byte {at} of {}", m.path, m.size));
        }
        if let Some(m) = members.next() {
            return bad(format!("{} is in no volume", m.path));
        }
        Ok(())
    }

    /// The member entry for a path.
    pub fn member(&self, path: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.path == path)
    }
}

impl Bundle {
    /// Checks that `index` (the archive's index.json) names exactly the
    /// artifacts bundle.json lists, each once, at the same digest and media
    /// type. This is the one model every reader relies on: bundle.json's
    /// artifacts are the roots that verify walks, load pushes and serve
    /// answers, and index.json is what OCI tools see. Returns every
    /// disagreement.
    pub fn check_index(&self, index: &crate::format::oci::Index) -> Vec<String> {
        use crate::format::oci::ANN_REF_NAME;
        let mut problems = Vec::new();
        let sizes: std::collections::HashMap<&str, u64> = self
            .members
            .iter()
            .map(|m| (m.path.as_str(), m.size))
            .collect();
        let mut named: std::collections::HashMap<&str, Vec<&crate::format::oci::Descriptor>> =
            std::collections::HashMap::new();
        let mut unnamed: std::collections::HashMap<Digest, Vec<&crate::format::oci::Descriptor>> =
            std::collections::HashMap::new();
        for d in &index.manifests {
            match d.annotations.get(ANN_REF_NAME) {
                Some(name) => named.entry(name.as_str()).or_default().push(d),
                None => unnamed.entry(d.digest).or_default().push(d),
            }
        }
        for r in &self.referrers {
            match unnamed.remove(&r.digest).as_deref() {
                None | Some([]) => problems.push(format!(
                    "bundle.json lists the referrer {}, which index.json does not",
                    r.digest
                )),
                Some([d]) => {
                    if d.media_type != r.media_type {
                        problems.push(format!(
                            "index.json gives the referrer {} the media type {} but bundle.json records {}",
                            r.digest, d.media_type, r.media_type
                        ));
                    } else if let Some(&size) = sizes
                        .get(r.digest.blob_path().as_str())
                        .filter(|&&s| s != d.size)
                    {
                        problems.push(format!(
                            "index.json gives the referrer {} the size {} but it is {size} bytes",
                            r.digest, d.size
                        ));
                    }
                }
                Some(_) => problems.push(format!(
                    "index.json lists the referrer {} more than once",
                    r.digest
                )),
            }
        }
        let mut left: Vec<Digest> = unnamed.into_keys().collect();
        left.sort_unstable();
        for d in left {
            problems.push(format!(
                "index.json lists {d} without a reference name, and bundle.json does not list it as a referrer"
            ));
        }
        for a in &self.artifacts {
            match named.remove(a.reference.as_str()).as_deref() {
                None | Some([]) => problems.push(format!(
                    "bundle.json lists {}, which index.json does not",
                    a.reference
                )),
                Some([d]) => {
                    if d.digest != a.digest {
                        problems.push(format!(
                            "index.json points {} at {} but bundle.json records {}",
                            a.reference, d.digest, a.digest
                        ));
                    } else if d.media_type != a.media_type {
                        problems.push(format!(
                            "index.json gives {} the media type {} but bundle.json records {}",
                            a.reference, d.media_type, a.media_type
                        ));
                    } else if let Some(&size) = sizes
                        .get(a.digest.blob_path().as_str())
                        .filter(|&&s| s != d.size)
                    {
                        problems.push(format!(
                            "index.json gives {} the size {} but its root {} is {size} bytes",
                            a.reference, d.size, a.digest
                        ));
                    }
                }
                Some(_) => {
                    problems.push(format!("index.json names {} more than once", a.reference))
                }
            }
        }
        let mut left: Vec<&str> = named.into_keys().collect();
        left.sort_unstable();
        for name in left {
            problems.push(format!(
                "index.json names {name:?}, which bundle.json does not list"
            ));
        }
        problems
    }
}

/// Checks a chart's identity as it becomes a repository and tag: the name
/// is one repository path component, and the version is SemVer (Helm's
/// leading `v` and short forms allowed) whose tag (`+` → `_`, as Helm
/// pushes it) is a valid OCI tag. `Err` says what is wrong.
pub fn check_chart(name: &str, version: &str) -> Result<(), String> {
    use crate::base::reference::{is_valid_repository, is_valid_tag};
    if name.contains('/') || !is_valid_repository(name) {
        return Err(format!(
            "chart name {name:?}, which is not a repository name (lowercase letters and digits, separated by . _ or -)"
        ));
    }
    if chart_semver(version).is_none() {
        return Err(format!("chart version {version:?}, which is not SemVer"));
    }
    let tag = version.replace('+', "_");
    if !is_valid_tag(&tag) {
        return Err(format!(
            "chart version {version:?}, whose OCI tag {tag:?} is not a valid tag"
        ));
    }
    Ok(())
}

/// A chart version as SemVer, read as Helm reads it: a leading `v` and a
/// missing minor or patch number (`1`, `1.2`) are allowed. Charts are
/// compared by this, newest first in a repository index.
pub fn chart_semver(version: &str) -> Option<semver::Version> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let (core, rest) = match v.find(['-', '+']) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let padded = match core.split('.').count() {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => v.to_owned(),
    };
    semver::Version::parse(&padded).ok()
}

/// The JSON schema of bundle.json, as committed in `bundle.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Bundle);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(referrers: Vec<Referrer>) -> Bundle {
        let image = Digest::of(b"image");
        let sig = Digest::of(b"sig");
        let member = |d: Digest| Member {
            path: d.blob_path(),
            digest: d,
            size: 5,
        };
        Bundle {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            tool: Tool {
                name: "ferry".into(),
                version: "0".into(),
            },
            name: "t".into(),
            created: None,
            artifacts: vec![Artifact {
                kind: ArtifactKind::Image,
                source: "x".into(),
                reference: "docker.io/library/x:1".into(),
                digest: image,
                media_type: crate::format::oci::OCI_MANIFEST.into(),
                size: 5,
                platforms: Vec::new(),
                source_digest: None,
                converted: Vec::new(),
                chart: None,
                file: None,
            }],
            members: vec![
                Member {
                    path: OCI_LAYOUT_PATH.into(),
                    digest: Digest::of(b"l"),
                    size: 1,
                },
                Member {
                    path: INDEX_PATH.into(),
                    digest: Digest::of(b"i"),
                    size: 1,
                },
                member(image),
                member(sig),
            ],
            volumes: None,
            delta: None,
            referrers,
        }
    }

    fn referrer(digest: Digest, subject: Digest) -> Referrer {
        Referrer {
            digest,
            media_type: crate::format::oci::OCI_MANIFEST.into(),
            artifact_type: None,
            subject,
            kind: ReferrerKind::Signature,
            size: 5,
            found: FoundBy::CosignTag,
            tag: Some(format!("sha256-{}.sig", subject.hex())),
            verified_by: None,
        }
    }

    fn refused(b: &Bundle) -> String {
        Bundle::from_slice(&b.to_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn referrers_that_cannot_be_carried_as_listed_are_refused() {
        let (image, sig) = (Digest::of(b"image"), Digest::of(b"sig"));
        let good = bundle_with(vec![referrer(sig, image)]);
        assert!(Bundle::from_slice(&good.to_bytes()).is_ok());
        let twice = bundle_with(vec![referrer(sig, image), referrer(sig, image)]);
        assert!(refused(&twice).contains("listed twice"));
        let also_artifact = bundle_with(vec![referrer(image, sig)]);
        assert!(refused(&also_artifact).contains("also listed as an artifact"));
        let own = bundle_with(vec![referrer(sig, sig)]);
        assert!(refused(&own).contains("itself as its subject"));
        let absent = bundle_with(vec![referrer(sig, Digest::of(b"elsewhere"))]);
        assert!(refused(&absent).contains("which is not a member"));
        for t in ["../x", "prod", "latest"] {
            let mut bad_tag = referrer(sig, image);
            bad_tag.tag = Some(t.into());
            assert!(refused(&bundle_with(vec![bad_tag])).contains("not cosign's tag"));
        }
        let mut other_subject = referrer(sig, image);
        other_subject.tag = Some(format!("sha256-{}.sig", Digest::of(b"x").hex()));
        assert!(refused(&bundle_with(vec![other_subject])).contains("not cosign's tag"));
        let mut blob = referrer(sig, image);
        blob.media_type = "application/octet-stream".into();
        assert!(refused(&bundle_with(vec![blob])).contains("not a manifest"));
    }

    #[test]
    fn index_json_must_list_each_referrer_once_without_a_name() {
        let (image, sig) = (Digest::of(b"image"), Digest::of(b"sig"));
        let b = bundle_with(vec![referrer(sig, image)]);
        let named = |d: Digest| {
            let mut x = crate::format::oci::Descriptor::new(crate::format::oci::OCI_MANIFEST, d, 5);
            x.annotations.insert(
                crate::format::oci::ANN_REF_NAME.into(),
                "docker.io/library/x:1".into(),
            );
            x
        };
        let index = |manifests| crate::format::oci::Index {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            manifests,
            subject: None,
            annotations: Default::default(),
        };
        let unnamed = crate::format::oci::Descriptor::new(crate::format::oci::OCI_MANIFEST, sig, 5);
        assert!(b
            .check_index(&index(vec![named(image), unnamed.clone()]))
            .is_empty());
        let missing = b.check_index(&index(vec![named(image)]));
        assert!(
            missing[0].contains("which index.json does not"),
            "{missing:?}"
        );
        let doubled = b.check_index(&index(vec![named(image), unnamed.clone(), unnamed.clone()]));
        assert!(doubled[0].contains("more than once"), "{doubled:?}");
        let stray = crate::format::oci::Descriptor::new(
            crate::format::oci::OCI_MANIFEST,
            Digest::of(b"stray"),
            5,
        );
        let extra = b.check_index(&index(vec![named(image), unnamed, stray]));
        assert!(
            extra[0].contains("does not list it as a referrer"),
            "{extra:?}"
        );
    }
}
