//! OCI and Docker schema-2 documents: media types, descriptors, and the
//! minimal view of manifests and indexes that graph walking needs.
//!
//! Parsing never re-serialises: callers keep the raw bytes and use the
//! parsed view only to find children. The types here are also used to
//! *create* the few documents ferry writes itself (chart and file artifacts,
//! filtered indexes, `index.json`); their maps are `BTreeMap`s so the output
//! is byte-for-byte deterministic (`oci-spec` uses `HashMap` annotations,
//! whose order changes from run to run, which is why it is not used here).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;
use crate::base::platform::Platform;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI empty descriptor (`{}`), used as the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Uncompressed OCI layer (used for directories carried as files).
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker schema-2 manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema-2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema-1 manifest (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema-1 signed manifest (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Helm chart config.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// Helm chart content layer.
pub const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// Artifact type of files and directories carried by ferry.
pub const FERRY_FILE_ARTIFACT: &str = "application/vnd.ferry.file.v1";
/// Media type of a single carried file.
pub const FILE_LAYER: &str = "application/octet-stream";

/// `org.opencontainers.image.ref.name`
pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `io.containerd.image.name`: the full image name, which containerd's
/// exports (and Docker 25's `docker save`) set beside a tag-only ref.name.
pub const ANN_IMAGE_NAME: &str = "io.containerd.image.name";
/// `org.opencontainers.image.title`
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
/// `org.opencontainers.image.version`
pub const ANN_VERSION: &str = "org.opencontainers.image.version";
/// `org.opencontainers.image.description`
pub const ANN_DESCRIPTION: &str = "org.opencontainers.image.description";
/// `org.opencontainers.image.created`
pub const ANN_CREATED: &str = "org.opencontainers.image.created";
/// oras' marker that a directory layer should be unpacked.
pub const ANN_ORAS_UNPACK: &str = "io.deis.oras.content.unpack";

/// Largest manifest or index ferry reads (distribution's own limit is 4 MiB).
pub const MANIFEST_MAX_BYTES: u64 = 4 << 20;
/// Deepest nesting of indexes inside indexes that is followed.
pub const MAX_DEPTH: usize = 4;

/// The `{}` blob every OCI artifact without a real config points at.
pub const EMPTY_JSON: &[u8] = b"{}";

mod strict;

/// Errors interpreting a manifest or index.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Not valid JSON of the expected shape.
    #[error("manifest {digest} is not a valid OCI or Docker schema-2 document")]
    Parse {
        /// The document's digest.
        digest: Digest,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A document that clients could read as a manifest or as an index,
    /// or whose kind disagrees with the descriptor that points at it (the
    /// class of CVE-2021-41190).
    #[error("manifest {digest} is ambiguous: {what}")]
    Ambiguous {
        /// The document's digest.
        digest: Digest,
        /// How.
        what: String,
    },
    /// A descriptor's embedded `data` contradicts its digest or size.
    #[error("manifest {digest}: the descriptor of {child} embeds data that {what}")]
    Data {
        /// The document's digest.
        digest: Digest,
        /// The descriptor's digest.
        child: Digest,
        /// What is wrong.
        what: String,
    },
    /// A media type ferry cannot carry faithfully.
    #[error("manifest {digest} has media type {media_type:?}, which ferry does not carry (schema-1 manifests are deprecated; re-push the image with a current client)")]
    Unsupported {
        /// The document's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes (at most `i64::MAX`: the spec's int64).
    #[serde(deserialize_with = "int64_size")]
    pub size: u64,
    /// The platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<OciPlatform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Artifact type, for index entries of artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Where else the content may be fetched (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// The content itself, base64, when the document embeds it. Checked
    /// against `digest` and `size` by [`parse_node`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A descriptor's size: the OCI image spec makes it an int64, so anything
/// past `i64::MAX` is refused where it is read (sums of sizes stay sane).
fn int64_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let size = u64::deserialize(d)?;
    if size > i64::MAX as u64 {
        return Err(serde::de::Error::custom(format!(
            "size {size} is past the largest the OCI spec allows (an int64)"
        )));
    }
    Ok(size)
}

impl Descriptor {
    /// A descriptor with no platform or annotations.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
            urls: None,
            data: None,
        }
    }

    /// Checks embedded `data`, when there is any, against the digest and
    /// size. `Err` says what is wrong.
    fn check_data(&self) -> Result<(), String> {
        let Some(data) = &self.data else {
            return Ok(());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("is not valid base64 ({e})"))?;
        if bytes.len() as u64 != self.size {
            return Err(format!(
                "is {} bytes while the descriptor says {}",
                bytes.len(),
                self.size
            ));
        }
        let d = Digest::of(&bytes);
        if d != self.digest {
            return Err(format!("hashes to {d}"));
        }
        Ok(())
    }
}

/// The platform object of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciPlatform {
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl OciPlatform {
    /// The user-facing form.
    pub fn to_platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when present in the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The entries.
    pub manifests: Vec<Descriptor>,
    /// Subject (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker schema-2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when present in the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Subject (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest or index, as far as graph walking cares.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // short-lived, one at a time
pub enum Node {
    /// An index or manifest list.
    Index(Index),
    /// An image or artifact manifest.
    Manifest(Manifest),
}

impl Node {
    /// Its artifact type as the referrers API reports it: `artifactType`,
    /// else (for a manifest) its config's media type.
    pub fn artifact_type(&self) -> Option<String> {
        match self {
            Node::Index(i) => i.artifact_type.clone(),
            Node::Manifest(m) => m
                .artifact_type
                .clone()
                .or_else(|| Some(m.config.media_type.clone())),
        }
    }

    /// The document's media type: its own field, else the OCI type of its
    /// kind.
    pub fn media_type(&self) -> String {
        match self {
            Node::Index(i) => i.media_type.clone().unwrap_or_else(|| OCI_INDEX.to_owned()),
            Node::Manifest(m) => m
                .media_type
                .clone()
                .unwrap_or_else(|| OCI_MANIFEST.to_owned()),
        }
    }
}

/// Whether `mt` names an index or manifest list.
pub fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_LIST
}

/// Whether `mt` names a manifest or index (a document, not a plain blob).
pub fn is_manifest_like(mt: &str) -> bool {
    is_index(mt) || mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    layers: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    schema_version: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Index,
    Manifest,
}

fn kind_of(mt: &str) -> Option<Kind> {
    if is_index(mt) {
        Some(Kind::Index)
    } else if mt == OCI_MANIFEST || mt == DOCKER_MANIFEST {
        Some(Kind::Manifest)
    } else {
        None
    }
}

/// Parses raw document bytes. `declared` is the media type of the
/// descriptor that pointed at them, or `""` when nothing did (a manifest
/// pulled by tag).
///
/// The document must read the same to every client: it passes the
/// strictness rules (no duplicate keys, no schema field that differs only
/// in case), it is unambiguously a manifest or an index, its own
/// `mediaType` (when present) equals `declared` (when given), and every
/// descriptor's embedded `data` matches its digest and size.
pub fn parse_node(digest: Digest, declared: &str, bytes: &[u8]) -> Result<Node, OciError> {
    let perr = |source| OciError::Parse { digest, source };
    strict::check(bytes).map_err(perr)?;
    let probe: Probe = serde_json::from_slice(bytes).map_err(perr)?;
    let own = probe.media_type.as_deref();
    let unsupported = |mt: &str| OciError::Unsupported {
        digest,
        media_type: mt.to_owned(),
    };
    if own == Some(DOCKER_SCHEMA1)
        || own == Some(DOCKER_SCHEMA1_SIGNED)
        || declared == DOCKER_SCHEMA1
        || declared == DOCKER_SCHEMA1_SIGNED
        || probe.schema_version == Some(1)
    {
        let said = own.or((!declared.is_empty()).then_some(declared));
        return Err(unsupported(said.unwrap_or(DOCKER_SCHEMA1_SIGNED)));
    }
    let ambiguous = |what: String| OciError::Ambiguous { digest, what };
    let has_manifests = probe.manifests.is_some();
    let has_parts = probe.config.is_some() || probe.layers.is_some();
    if let (Some(own), false) = (own, declared.is_empty()) {
        if own != declared {
            return Err(ambiguous(format!(
                "its descriptor says {declared} but the document says {own}"
            )));
        }
    }
    let kind = match own {
        Some(mt) => kind_of(mt).ok_or_else(|| unsupported(mt))?,
        None => match (has_manifests, has_parts) {
            (true, true) => {
                return Err(ambiguous(
                    "it has no mediaType and holds both manifests and config/layers".into(),
                ))
            }
            (true, false) => Kind::Index,
            (false, true) => Kind::Manifest,
            (false, false) => kind_of(declared).ok_or_else(|| unsupported(declared))?,
        },
    };
    if !declared.is_empty() {
        match kind_of(declared) {
            Some(k) if k == kind => {}
            Some(_) => {
                return Err(ambiguous(format!(
                    "its descriptor says {declared} but the document is {}",
                    if kind == Kind::Index {
                        "an index"
                    } else {
                        "a manifest"
                    }
                )))
            }
            None => return Err(unsupported(declared)),
        }
    }
    if kind == Kind::Manifest && has_manifests {
        return Err(ambiguous("a manifest that also has manifests".into()));
    }
    if kind == Kind::Index && has_parts {
        return Err(ambiguous("an index that also has config or layers".into()));
    }
    let node = match kind {
        Kind::Index => Node::Index(serde_json::from_slice(bytes).map_err(perr)?),
        Kind::Manifest => Node::Manifest(serde_json::from_slice(bytes).map_err(perr)?),
    };
    let descriptors: Vec<&Descriptor> = match &node {
        Node::Index(i) => i.manifests.iter().chain(&i.subject).collect(),
        Node::Manifest(m) => std::iter::once(&m.config)
            .chain(&m.layers)
            .chain(&m.subject)
            .collect(),
    };
    for d in descriptors {
        d.check_data().map_err(|what| OciError::Data {
            digest,
            child: d.digest,
            what,
        })?;
    }
    Ok(node)
}

/// Parses a layout's `index.json` under the same strictness rules as any
/// index (it is not content-addressed, so no digest or kind checks).
pub fn parse_index_json(bytes: &[u8]) -> Result<Index, serde_json::Error> {
    strict::check(bytes)?;
    let index: Index = serde_json::from_slice(bytes)?;
    for d in &index.manifests {
        d.check_data().map_err(|what| {
            <serde_json::Error as serde::de::Error>::custom(format_args!(
                "the descriptor of {} embeds data that {what}",
                d.digest
            ))
        })?;
    }
    Ok(index)
}

/// Parses an image config (or the part of it `T` names) under the
/// strictness rules: no duplicate keys, no top-level field that differs
/// only in case from one the OCI config defines.
pub fn parse_config<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    strict::check_config(bytes)?;
    serde_json::from_slice(bytes)
}

/// What [`walk_graph`] meets.
#[derive(Debug)]
pub enum Visit<'a> {
    /// A manifest or index, with its raw bytes (met once per digest,
    /// after all its children).
    Document {
        /// Its digest (checked against the bytes).
        digest: Digest,
        /// Its media type: the document's own field, else the descriptor's.
        media_type: String,
        /// The raw bytes.
        bytes: Vec<u8>,
    },
    /// A config or layer descriptor of a manifest.
    Blob(&'a Descriptor),
}

/// Why a graph walk stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// Indexes nest too deep.
    #[error("indexes nest deeper than {MAX_DEPTH} levels at {0}")]
    TooDeep(Digest),
    /// A document could not be read.
    #[error("cannot read document {digest}")]
    Read {
        /// The document.
        digest: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A document's bytes do not match its digest.
    #[error("document {0} does not match its digest")]
    Mismatch(Digest),
    /// A document does not parse.
    #[error(transparent)]
    Parse(#[from] OciError),
    /// A blob a manifest needs is missing or has the wrong size.
    #[error("blob {0} is missing or has the wrong size")]
    Blob(Digest),
}

/// Walks the graph under `root` (of declared `media_type`) depth first,
/// children before parents. `read` returns a document's bytes (at most
/// [`MANIFEST_MAX_BYTES`]); `visit` sees every document once and every
/// config and layer descriptor of every manifest.
pub fn walk_graph(
    media_type: &str,
    root: &Digest,
    read: &mut dyn FnMut(&Digest) -> std::io::Result<Vec<u8>>,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<(), WalkError>,
) -> Result<(), WalkError> {
    let mut seen = std::collections::HashSet::new();
    walk_at(media_type, root, read, visit, &mut seen, 0)
}

fn walk_at(
    media_type: &str,
    d: &Digest,
    read: &mut dyn FnMut(&Digest) -> std::io::Result<Vec<u8>>,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<(), WalkError>,
    seen: &mut std::collections::HashSet<Digest>,
    depth: usize,
) -> Result<(), WalkError> {
    if depth > MAX_DEPTH {
        return Err(WalkError::TooDeep(*d));
    }
    if !seen.insert(*d) {
        return Ok(());
    }
    let bytes = read(d).map_err(|source| WalkError::Read { digest: *d, source })?;
    if Digest::of(&bytes) != *d {
        return Err(WalkError::Mismatch(*d));
    }
    let node = parse_node(*d, media_type, &bytes)?;
    let own = match &node {
        Node::Index(i) => i.media_type.clone(),
        Node::Manifest(m) => m.media_type.clone(),
    };
    match &node {
        Node::Index(i) => {
            for c in &i.manifests {
                walk_at(&c.media_type, &c.digest, read, visit, seen, depth + 1)?;
            }
        }
        Node::Manifest(m) => {
            for b in std::iter::once(&m.config).chain(&m.layers) {
                visit(Visit::Blob(b))?;
            }
        }
    }
    visit(Visit::Document {
        digest: *d,
        media_type: own.unwrap_or_else(|| media_type.to_owned()),
        bytes,
    })
}

/// Docker schema-2 media types and their OCI equivalents (documents,
/// configs, layers); `pack --oci` converts by this table.
const DOCKER_TO_OCI: &[(&str, &str)] = &[
    (DOCKER_LIST, OCI_INDEX),
    (DOCKER_MANIFEST, OCI_MANIFEST),
    ("application/vnd.docker.container.image.v1+json", OCI_CONFIG),
    (
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        OCI_LAYER_GZIP,
    ),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar",
        OCI_LAYER_TAR,
    ),
];

/// The OCI media type for a Docker schema-2 one (`None`: not a Docker type
/// this table knows, kept as it is).
pub fn oci_media_type(mt: &str) -> Option<&'static str> {
    DOCKER_TO_OCI
        .iter()
        .find(|(docker, _)| *docker == mt)
        .map(|(_, oci)| *oci)
}

/// Whether `mt` is a Docker schema-2 manifest or manifest list.
pub fn is_docker_document(mt: &str) -> bool {
    mt == DOCKER_MANIFEST || mt == DOCKER_LIST
}

/// A Docker schema-2 manifest as an OCI one: the same config and layers
/// (their bytes do not change), with OCI media types. An OCI manifest is
/// returned unchanged.
pub fn manifest_to_oci(m: &Manifest) -> Manifest {
    let retype = |d: &Descriptor| {
        let mut d = d.clone();
        if let Some(mt) = oci_media_type(&d.media_type) {
            d.media_type = mt.to_owned();
        }
        d
    };
    Manifest {
        media_type: Some(OCI_MANIFEST.to_owned()),
        config: retype(&m.config),
        layers: m.layers.iter().map(retype).collect(),
        ..m.clone()
    }
}

/// Serialises a document ferry creates itself (compact, deterministic).
pub fn to_bytes<T: Serialize>(doc: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_schema1_and_unknown() {
        let d = Digest::of(b"x");
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            parse_node(d, DOCKER_SCHEMA1_SIGNED, s1),
            Err(OciError::Unsupported { .. })
        ));
        let odd = br#"{"schemaVersion":2,"mediaType":"application/x-odd"}"#;
        let e = parse_node(d, OCI_MANIFEST, odd).unwrap_err();
        assert!(e.to_string().contains("application/x-odd"), "{e}");
    }

    #[test]
    fn index_without_media_type_is_recognised() {
        let d = Digest::of(b"x");
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":3,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#
        );
        // Its descriptor calling it a manifest is a contradiction.
        let e = parse_node(d, OCI_MANIFEST, doc.as_bytes()).unwrap_err();
        assert!(matches!(e, OciError::Ambiguous { .. }), "{e}");
        match parse_node(d, OCI_INDEX, doc.as_bytes()).unwrap() {
            Node::Index(i) => {
                assert_eq!(
                    i.manifests[0]
                        .platform
                        .as_ref()
                        .unwrap()
                        .to_platform()
                        .to_string(),
                    "linux/arm/v7"
                )
            }
            Node::Manifest(_) => panic!("parsed as manifest"),
        }
    }

    #[test]
    fn a_size_past_int64_is_refused_so_sums_of_sizes_cannot_overflow() {
        let d = Digest::of(b"x");
        let c = blob(b"{}");
        let layer = format!(
            r#"{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{d}","size":9223372036854775808}}"#
        );
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[{layer},{layer}]}}"#
        );
        let e = parse_node(d, OCI_MANIFEST, doc.as_bytes()).unwrap_err();
        assert!(
            crate::base::error::error_chain(&e).contains("int64"),
            "{}",
            crate::base::error::error_chain(&e)
        );
        let fits = doc.replace("9223372036854775808", "9223372036854775807");
        assert!(parse_node(d, OCI_MANIFEST, fits.as_bytes()).is_ok());
    }

    fn blob(data: &[u8]) -> String {
        format!(
            r#"{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}}"#,
            Digest::of(data),
            data.len()
        )
    }

    #[test]
    fn ambiguous_documents_are_refused_whatever_the_declared_type() {
        let d = Digest::of(b"x");
        let c = blob(b"{}");
        let cases = [
            // A manifest that also lists manifests.
            (
                OCI_MANIFEST,
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[],"manifests":[]}}"#
                ),
            ),
            // An index that also has config or layers.
            (
                OCI_INDEX,
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[],"layers":[]}}"#
                ),
            ),
            (
                OCI_INDEX,
                format!(r#"{{"schemaVersion":2,"manifests":[],"config":{c}}}"#),
            ),
            // No mediaType and both shapes.
            (
                "",
                format!(r#"{{"schemaVersion":2,"manifests":[],"config":{c},"layers":[]}}"#),
            ),
            // The body's kind disagrees with its descriptor.
            (
                OCI_INDEX,
                format!(r#"{{"schemaVersion":2,"config":{c},"layers":[]}}"#),
            ),
            (
                DOCKER_MANIFEST,
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[]}}"#
                ),
            ),
        ];
        for (declared, doc) in cases {
            let e = parse_node(d, declared, doc.as_bytes()).unwrap_err();
            assert!(matches!(e, OciError::Ambiguous { .. }), "{doc}: {e}");
        }
        let fine = format!(r#"{{"schemaVersion":2,"config":{c},"layers":[]}}"#);
        assert!(matches!(
            parse_node(d, OCI_MANIFEST, fine.as_bytes()),
            Ok(Node::Manifest(_))
        ));
        assert!(matches!(
            parse_node(d, "", fine.as_bytes()),
            Ok(Node::Manifest(_))
        ));
    }

    #[test]
    fn embedded_data_must_match_the_digest_and_size() {
        let d = Digest::of(b"x");
        let ok = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_EMPTY}","digest":"{}","size":2,"data":"e30="}},"layers":[]}}"#,
            Digest::of(b"{}")
        );
        assert!(parse_node(d, OCI_MANIFEST, ok.as_bytes()).is_ok());
        for (data, size) in [("e31=", 2), ("e30=", 3), ("not base64!", 2)] {
            let doc = format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_EMPTY}","digest":"{}","size":{size},"data":"{data}"}},"layers":[]}}"#,
                Digest::of(b"{}")
            );
            let e = parse_node(d, OCI_MANIFEST, doc.as_bytes()).unwrap_err();
            assert!(matches!(e, OciError::Data { .. }), "{doc}: {e}");
        }
    }
}
