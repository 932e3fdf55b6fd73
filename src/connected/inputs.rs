//! The spec file: what a bundle should carry. Reads `ferry.yaml`, the same
//! shape as JSON, or a plain `images.txt` (one reference a line, `#`
//! comments), validates every entry while parsing so errors carry file, line
//! and column, and resolves relative paths against the spec's directory.
//!
//! This module only describes; fetching and packing live in `pack`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::base::platform::Platform;
use crate::base::reference::Reference;

/// The most bytes a spec file may have; larger files are refused unread.
pub const SPEC_MAX_BYTES: u64 = 16 << 20;

/// Errors reading or validating a spec.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The spec file could not be read.
    #[error("cannot read spec")]
    Read(#[source] std::io::Error),
    /// The spec file is larger than [`SPEC_MAX_BYTES`].
    #[error("spec {path} is {size} bytes, more than the {SPEC_MAX_BYTES}-byte limit")]
    TooLarge {
        /// The spec file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The spec file is not UTF-8.
    #[error("spec {path} is not UTF-8 text")]
    NotUtf8 {
        /// The spec file.
        path: PathBuf,
    },
    /// YAML or JSON syntax or shape error.
    #[error("invalid spec {path}{location}: {message}")]
    Syntax {
        /// The spec file.
        path: PathBuf,
        /// ` at line L column C`, when known.
        location: Location,
        /// What the parser expected.
        message: String,
    },
    /// A line of an `images.txt` is not a reference.
    #[error("invalid spec {path}:{line}: {text:?} is not an image reference")]
    Line {
        /// The spec file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
        /// Why it did not parse.
        #[source]
        source: ImageSourceError,
    },
    /// The spec names nothing to carry.
    #[error("spec {0} lists no images, charts or files")]
    Empty(PathBuf),
    /// A platform list that keeps nothing.
    #[error("spec {path}: `platforms: []` {scope} keeps no platform; name at least one, or leave the key out to keep them all")]
    NoPlatforms {
        /// The spec file.
        path: PathBuf,
        /// "at the top" or "for IMAGE".
        scope: String,
    },
    /// An `images: [{from: PATH}]` entry could not be read.
    #[error("spec {spec}: images from {from}")]
    From {
        /// The spec file.
        spec: PathBuf,
        /// The `from:` path, resolved.
        from: PathBuf,
        /// Why.
        #[source]
        source: crate::shared::rewrite::RewriteError,
    },
    /// An `images: [{from: PATH}]` entry found nothing to carry.
    #[error("spec {spec}: {from} names no image reference ferry can carry ({skipped} value(s) skipped: templated, without a tag, or not references)")]
    FromEmpty {
        /// The spec file.
        spec: PathBuf,
        /// The `from:` path, resolved.
        from: PathBuf,
        /// How many values were skipped.
        skipped: usize,
    },
    /// A `from:` path holds text that names a registry but cannot be read.
    #[error("spec {spec}: {from}: the images it names are unknown: {}", .places.join("; "))]
    FromUnreadable {
        /// The spec file.
        spec: PathBuf,
        /// The `from:` path, resolved.
        from: PathBuf,
        /// `FILE:LINE (in BLOCK): why` for each.
        places: Vec<String>,
    },
    /// Two entries would carry the same name.
    #[error("spec {path}: {what} {name} is listed twice")]
    Duplicate {
        /// The spec file.
        path: PathBuf,
        /// "image", "chart" or "file".
        what: &'static str,
        /// The duplicated name.
        name: String,
    },
}

/// ` at line L column C` (or nothing when the parser gave no position).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Location(pub Option<(u64, u64)>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((l, c)) => write!(f, " at line {l} column {c}"),
            None => Ok(()),
        }
    }
}

/// Why an image source string did not parse.
#[derive(Debug, thiserror::Error)]
pub enum ImageSourceError {
    /// Not a valid registry reference.
    #[error(transparent)]
    Reference(#[from] crate::base::reference::ReferenceError),
    /// `oci:` or `oci-archive:` without a path.
    #[error("{0:?} names no path after the transport")]
    EmptyPath(String),
    /// A transport ferry does not read.
    #[error("{0:?} uses transport {1:?}; ferry reads registry references, oci:DIR[:REF], oci-archive:TAR[:REF] and docker-archive:TAR[:REF|:@N]")]
    Transport(String, String),
}

/// The whole spec, with paths resolved against the spec's directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, from = "RawSpec")]
pub struct Spec {
    /// Recorded in bundle.json and shown by `inspect`.
    #[serde(default)]
    pub name: Option<String>,
    /// Default platforms for images without their own list; `None` is all.
    #[serde(default)]
    pub platforms: Option<Vec<Platform>>,
    /// Images to carry.
    #[serde(default)]
    pub images: Vec<ImageEntry>,
    /// Helm charts to carry.
    #[serde(default)]
    pub charts: Vec<ChartEntry>,
    /// Local files and directories to carry.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Size budgets checked at pack: `{image: 500M, bundle: 20G}`.
    #[serde(default)]
    pub budget: Option<Budget>,
    /// `images: [{from: PATH}]` entries: the image references found in
    /// those files, added to `images` by [`Spec::load`].
    #[serde(default)]
    pub images_from: Vec<ImagesFrom>,
    /// `referrers: false` turns off finding and carrying signatures,
    /// attestations and SBOMs for every image (default: on).
    #[serde(default)]
    pub referrers: Option<bool>,
}

/// Size budgets, checked at pack against what each image's platforms
/// unpack to (the largest platform counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The most any one image may unpack to, for images without a budget
    /// of their own.
    #[serde(default)]
    pub image: Option<Size>,
    /// The most the bundle's images together may unpack to, on any one
    /// platform (each distinct layer once).
    #[serde(default)]
    pub bundle: Option<Size>,
}

/// A size as `--volume-size` takes it: `200M`, `1.5GiB`, `4000MB`, or a
/// plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 200M, 1.5GiB or 4000MB")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                crate::format::sizes::parse_size(s)
                    .map(Size)
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                match n {
                    0 => Err(E::custom("a size of 0 bytes is not a usable budget")),
                    n => Ok(Size(n)),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{n} is not a size"))),
                }
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Size, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// `{from: PATH, platforms: […]}` in `images:`: every image reference the
/// manifests, values files, compose files, kustomizations or installer
/// `images_digests.yml` under PATH name (`ferry images PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesFrom {
    /// A file or directory, relative to the spec.
    pub path: PathBuf,
    /// Platforms for every image found; `None` defers to the spec's default.
    pub platforms: Option<Vec<Platform>>,
    /// After [`Spec::load`]: the references found, as (normalised
    /// reference, `FILE:LINE`) of their first occurrence.
    pub found: Vec<(String, String)>,
    /// After [`Spec::load`]: the values not taken (templated, without a
    /// tag, not references), as `FILE:LINE VALUE (why)`.
    pub skipped: Vec<String>,
}

/// The spec as written; `images` may hold `from:` entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    platforms: Option<Vec<Platform>>,
    #[serde(default)]
    images: Vec<ImageItem>,
    #[serde(default)]
    charts: Vec<ChartEntry>,
    #[serde(default)]
    files: Vec<FileEntry>,
    #[serde(default)]
    budget: Option<Budget>,
    #[serde(default)]
    referrers: Option<bool>,
}

impl From<RawSpec> for Spec {
    fn from(r: RawSpec) -> Spec {
        let mut images = Vec::new();
        let mut images_from = Vec::new();
        for i in r.images {
            match i {
                ImageItem::Entry(e) => images.push(e),
                ImageItem::From(f) => images_from.push(f),
            }
        }
        Spec {
            name: r.name,
            platforms: r.platforms,
            images,
            charts: r.charts,
            files: r.files,
            budget: r.budget,
            images_from,
            referrers: r.referrers,
        }
    }
}

/// One item of `images:`: an image, or `{from: PATH}`.
#[allow(clippy::large_enum_variant)] // short-lived, while a spec is read
enum ImageItem {
    Entry(ImageEntry),
    From(ImagesFrom),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageItemMap {
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    from: Option<PathBuf>,
    #[serde(default)]
    platforms: Option<Vec<Platform>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Option<TagRuleMap>,
    #[serde(default)]
    budget: Option<Size>,
    #[serde(default)]
    referrers: Option<bool>,
    #[serde(default)]
    verify: Option<VerifyRule>,
}

/// `verify:` on an image: pack fails unless the image has a signature that
/// this key or CA accepts, and `ferry verify` checks it again offline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRule {
    /// A PEM public key (ECDSA P-256, Ed25519 or RSA).
    #[serde(default)]
    pub cosign_key: Option<PathBuf>,
    /// A PEM CA bundle the certificate embedded in the signature must chain
    /// to.
    #[serde(default)]
    pub cosign_ca: Option<PathBuf>,
    /// With `cosign_ca`: the certificate's subject or a SAN must equal this.
    #[serde(default)]
    pub identity: Option<String>,
    /// With `cosign_ca`: the certificate's subject or a SAN must match this
    /// regular expression as a whole.
    #[serde(default)]
    pub identity_regex: Option<String>,
    /// With `cosign_ca`: PEM or DER CRLs the certificate must not be on.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// The signed `docker-reference` must be this (normalised); by default
    /// it is only reported, as cosign does, since images change registries.
    #[serde(default)]
    pub reference: Option<String>,
}

impl VerifyRule {
    fn check(&self, reference: &str) -> Result<(), String> {
        match (&self.cosign_key, &self.cosign_ca) {
            (Some(_), Some(_)) => Err(format!("image {reference}: `verify:` takes one of `cosign_key` and `cosign_ca`, not both")),
            (None, None) => Err(format!("image {reference}: `verify:` needs `cosign_key: PUBLIC_KEY.pem` or `cosign_ca: CA.pem`")),
            (Some(_), None) if self.identity.is_some() || self.identity_regex.is_some() || !self.crls.is_empty() => Err(format!("image {reference}: `identity`, `identity_regex` and `crls` go with `cosign_ca`, not `cosign_key`")),
            (None, Some(_)) if self.identity.is_some() && self.identity_regex.is_some() => Err(format!("image {reference}: give one of `identity` and `identity_regex`")),
            _ => Ok(()),
        }
    }

    fn resolve(&mut self, base: &Path) {
        for p in self
            .cosign_key
            .iter_mut()
            .chain(self.cosign_ca.iter_mut())
            .chain(self.crls.iter_mut())
        {
            *p = base.join(&*p);
        }
    }
}

impl<'de> Deserialize<'de> for ImageItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImageItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an image reference string, a map with `ref` (and optional `platforms`, `name`, `tags`, `budget`), or a map with `from` (and optional `platforms`)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ImageItem, E> {
                Ok(ImageItem::Entry(ImageEntry {
                    source: ImageSource::parse(s).map_err(E::custom)?,
                    platforms: None,
                    name: None,
                    tags: None,
                    budget: None,
                    referrers: None,
                    verify: None,
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ImageItem, A::Error> {
                let m = ImageItemMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                match (m.reference, m.from) {
                    (Some(reference), None) => {
                        let source = ImageSource::parse(&reference).map_err(de::Error::custom)?;
                        let name = match m.name {
                            Some(n) => Some(n.parse::<Reference>().map_err(de::Error::custom)?),
                            None => None,
                        };
                        let tags = match m.tags {
                            Some(t) => {
                                if !matches!(source, ImageSource::Registry(_)) {
                                    return Err(de::Error::custom(format!("image {reference}: `tags:` chooses tags of a registry repository; a local source has none")));
                                }
                                if name.is_some() {
                                    return Err(de::Error::custom(format!("image {reference}: `name:` and `tags:` do not go together (each chosen tag is carried as REPOSITORY:TAG)")));
                                }
                                Some(tag_rule(&reference, t).map_err(de::Error::custom)?)
                            }
                            None => None,
                        };
                        if let Some(v) = &m.verify {
                            v.check(&reference).map_err(de::Error::custom)?;
                            if m.referrers == Some(false) {
                                return Err(de::Error::custom(format!("image {reference}: `verify:` needs its signatures, and `referrers: false` leaves them behind")));
                            }
                        }
                        Ok(ImageItem::Entry(ImageEntry {
                            source,
                            platforms: m.platforms,
                            name,
                            tags,
                            budget: m.budget.map(|b| b.0),
                            referrers: m.referrers,
                            verify: m.verify,
                        }))
                    }
                    (None, Some(path)) => {
                        if m.tags.is_some() || m.budget.is_some() || m.verify.is_some() {
                            return Err(de::Error::custom(
                                "a `from:` entry names many images; `tags:`, `budget:` and `verify:` go on single images",
                            ));
                        }
                        if m.name.is_some() {
                            return Err(de::Error::custom(
                                "a `from:` entry names many images; remove `name:`",
                            ));
                        }
                        Ok(ImageItem::From(ImagesFrom {
                            path,
                            platforms: m.platforms,
                            found: Vec::new(),
                            skipped: Vec::new(),
                        }))
                    }
                    _ => Err(de::Error::custom(
                        "an image entry needs exactly one of `ref:` (an image) or `from:` (files to find images in)",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A registry reference (`nginx:1.27`).
    Registry(Reference),
    /// An OCI image layout directory, optionally selecting one `ref.name`.
    OciDir {
        /// The layout directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick.
        name: Option<String>,
    },
    /// An OCI image layout in a tar archive.
    OciArchive {
        /// The archive file.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick.
        name: Option<String>,
    },
    /// A `docker save` tar (legacy, or Docker 25+ with index.json).
    DockerArchive {
        /// The tar.
        path: PathBuf,
        /// A name in its `RepoTags`, or `@N` (the N-th image, from 0).
        name: Option<String>,
    },
}

impl ImageSource {
    /// Parses `oci:DIR[:REF]`, `oci-archive:TAR[:REF]`,
    /// `docker-archive:TAR[:REF|:@N]`, `docker://REF` or a plain registry
    /// reference.
    pub fn parse(s: &str) -> Result<ImageSource, ImageSourceError> {
        let local = |rest: &str| -> Result<(PathBuf, Option<String>), ImageSourceError> {
            let (p, n) = match rest.split_once(':') {
                Some((p, n)) => (p, (!n.is_empty()).then(|| n.to_owned())),
                None => (rest, None),
            };
            if p.is_empty() {
                return Err(ImageSourceError::EmptyPath(s.to_owned()));
            }
            Ok((PathBuf::from(p), n))
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, name) = local(rest)?;
            return Ok(ImageSource::OciDir { path, name });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, name) = local(rest)?;
            return Ok(ImageSource::OciArchive { path, name });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, name) = local(rest)?;
            return Ok(ImageSource::DockerArchive { path, name });
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(ImageSource::Registry(rest.parse()?));
        }
        if let Some((scheme, _)) = s.split_once(':') {
            if matches!(
                scheme,
                "docker-daemon" | "dir" | "containers-storage" | "http" | "https"
            ) {
                return Err(ImageSourceError::Transport(s.to_owned(), scheme.to_owned()));
            }
        }
        Ok(ImageSource::Registry(s.parse()?))
    }

    fn resolve(&mut self, base: &Path) {
        match self {
            ImageSource::Registry(_) => {}
            ImageSource::OciDir { path, .. }
            | ImageSource::OciArchive { path, .. }
            | ImageSource::DockerArchive { path, .. } => *path = base.join(&*path),
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, path, name) = match self {
            ImageSource::Registry(r) => return write!(f, "{r}"),
            ImageSource::OciDir { path, name } => ("oci", path, name),
            ImageSource::OciArchive { path, name } => ("oci-archive", path, name),
            ImageSource::DockerArchive { path, name } => ("docker-archive", path, name),
        };
        write!(f, "{t}:{}", path.display())?;
        if let Some(n) = name {
            write!(f, ":{n}")?;
        }
        Ok(())
    }
}

/// One image to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// Where it comes from.
    pub source: ImageSource,
    /// Platforms to keep; `None` defers to the spec's default.
    pub platforms: Option<Vec<Platform>>,
    /// The reference it is carried as (`index.json` ref name); defaults to
    /// the registry reference or the local `ref.name`.
    pub name: Option<Reference>,
    /// Which tags of a registry repository to carry (`tags:`); the entry
    /// then stands for one image per chosen tag.
    pub tags: Option<TagRule>,
    /// The most this image may unpack to (`budget: 200M`), instead of the
    /// spec's `budget.image` and `pack --max-image-size`.
    pub budget: Option<u64>,
    /// `referrers: false`: carry no signatures, attestations or SBOMs for
    /// this image; `None` defers to the spec's `referrers:`.
    pub referrers: Option<bool>,
    /// `verify:`: the signature this image must carry.
    pub verify: Option<VerifyRule>,
}

/// Which tags of a repository an image entry carries (`tags:` in the
/// spec). Choosing them from a tag list is `tags` (in `connected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagRule {
    /// `tags: [1.2.0, 1.3.0]`: exactly these tags.
    List(Vec<String>),
    /// `tags: {semver, regex, newest}`: the tags every given rule accepts,
    /// the highest `newest` of them when that is given.
    Select {
        /// A version constraint in Helm's grammar (checked when parsed).
        semver: Option<String>,
        /// A regular expression a tag must match (unanchored; checked
        /// when parsed).
        regex: Option<String>,
        /// Keep only the N highest of the tags chosen.
        newest: Option<usize>,
    },
}

/// The most bytes a compiled `regex:` tag rule may take.
pub const TAG_REGEX_MAX: usize = 1 << 20;

impl TagRule {
    /// The rule's regular expression, compiled with a size limit.
    pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
        regex::RegexBuilder::new(pattern)
            .size_limit(TAG_REGEX_MAX)
            .dfa_size_limit(TAG_REGEX_MAX)
            .build()
    }
}

impl fmt::Display for TagRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagRule::List(tags) => write!(f, "tags [{}]", tags.join(", ")),
            TagRule::Select {
                semver,
                regex,
                newest,
            } => {
                let mut parts = Vec::new();
                if let Some(c) = semver {
                    parts.push(format!("semver {c:?}"));
                }
                if let Some(r) = regex {
                    parts.push(format!("regex {r:?}"));
                }
                if let Some(n) = newest {
                    parts.push(format!("newest {n}"));
                }
                write!(f, "tags {{{}}}", parts.join(", "))
            }
        }
    }
}

enum TagRuleMap {
    List(Vec<TagText>),
    Select(TagSelectMap),
}

impl<'de> Deserialize<'de> for TagRuleMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagRuleMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tags or a map with `semver`, `regex` and/or `newest`")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<TagRuleMap, A::Error> {
                Vec::<TagText>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(TagRuleMap::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TagRuleMap, A::Error> {
                TagSelectMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TagRuleMap::Select)
            }
        }
        d.deserialize_any(V)
    }
}

/// A tag as YAML may spell it (`1.2.0` is a string, `1.2` a number).
#[derive(Deserialize)]
#[serde(untagged)]
enum TagText {
    Text(String),
    Int(u64),
    Float(f64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagSelectMap {
    #[serde(default)]
    semver: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    newest: Option<usize>,
}

/// Checks a `tags:` value of the entry `reference` (as written).
fn tag_rule(reference: &str, m: TagRuleMap) -> Result<TagRule, String> {
    let raw = reference.strip_prefix("docker://").unwrap_or(reference);
    let last = raw.rsplit('/').next().unwrap_or(raw);
    if raw.contains('@') || last.contains(':') {
        return Err(format!(
            "image {reference}: `ref` names its own tag or digest and `tags:` chooses tags; give the repository alone (without :TAG or @DIGEST)"
        ));
    }
    match m {
        TagRuleMap::List(list) => {
            if list.is_empty() {
                return Err(format!(
                    "image {reference}: `tags: []` chooses no tag; name at least one"
                ));
            }
            let mut tags = Vec::new();
            for t in list {
                let t = match t {
                    TagText::Text(s) => s,
                    TagText::Int(n) => n.to_string(),
                    TagText::Float(x) => {
                        return Err(format!("image {reference}: tag {x} reads as a number in YAML (and 1.10 as 1.1); quote it"));
                    }
                };
                if !crate::base::reference::is_valid_tag(&t) {
                    return Err(format!("image {reference}: {t:?} is not a tag (1-128 of [A-Za-z0-9_.-], not starting with . or -)"));
                }
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            Ok(TagRule::List(tags))
        }
        TagRuleMap::Select(s) => {
            if s.semver.is_none() && s.regex.is_none() && s.newest.is_none() {
                return Err(format!("image {reference}: `tags: {{}}` has no rule; use `semver:`, `regex:` and/or `newest:`, or a list of tags"));
            }
            if let Some(c) = &s.semver {
                crate::base::version::Constraint::parse(c).map_err(|why| {
                    format!("image {reference}: `semver: {c:?}` is not a version constraint: {why}")
                })?;
            }
            if let Some(r) = &s.regex {
                TagRule::compile_regex(r).map_err(|why| {
                    format!(
                        "image {reference}: `regex: {r:?}` is not a regular expression: {}",
                        first_line(&why.to_string())
                    )
                })?;
            }
            if s.newest == Some(0) {
                return Err(format!(
                    "image {reference}: `newest: 0` keeps no tag; give 1 or more"
                ));
            }
            Ok(TagRule::Select {
                semver: s.semver,
                regex: s.regex,
                newest: s.newest,
            })
        }
    }
}

impl ImageEntry {
    /// The entry as messages name it: its source, or for an entry with
    /// `tags:` the repository (its reference holds no tag of its own).
    pub fn label(&self) -> String {
        match (&self.source, &self.tags) {
            (ImageSource::Registry(r), Some(_)) => r.name(),
            _ => self.source.to_string(),
        }
    }

    fn label_with(&self, rule: &TagRule) -> String {
        format!("{} {rule}", self.label())
    }
}

/// One Helm chart to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartEntry {
    /// A chart from a classic Helm repository (`index.yaml`).
    Repo {
        /// Repository URL.
        repo: String,
        /// Chart name.
        name: String,
        /// Exact version or semver range.
        version: String,
        /// Also carry the images this chart names.
        images: bool,
    },
    /// A chart stored as an OCI artifact.
    Oci {
        /// `oci://registry/path/name`.
        reference: String,
        /// Version (tag).
        version: String,
        /// Also carry the images this chart names.
        images: bool,
    },
    /// A local chart archive.
    Path {
        /// The `.tgz` file.
        path: PathBuf,
        /// Also carry the images this chart names.
        images: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChartEntryMap {
    #[serde(default)]
    repo: Option<String>,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    images: bool,
}

impl<'de> Deserialize<'de> for ChartEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = ChartEntryMap::deserialize(d)?;
        let images = m.images;
        match (m.repo, m.reference, m.path) {
            (Some(repo), None, None) => match (m.name, m.version) {
                (Some(name), Some(version)) => Ok(ChartEntry::Repo {
                    repo,
                    name,
                    version,
                    images,
                }),
                _ => Err(de::Error::custom("a `repo:` chart needs `name:` and `version:`")),
            },
            (None, Some(reference), None) => {
                if m.name.is_some() {
                    return Err(de::Error::custom("an OCI chart (`ref:`) takes its name from the reference; remove `name:`"));
                }
                if !reference.starts_with("oci://") {
                    return Err(de::Error::custom(format!("chart reference {reference:?} must start with oci://")));
                }
                match m.version {
                    Some(version) => Ok(ChartEntry::Oci {
                        reference,
                        version,
                        images,
                    }),
                    None => Err(de::Error::custom("an OCI chart (`ref:`) needs `version:`")),
                }
            }
            (None, None, Some(path)) => {
                if m.name.is_some() || m.version.is_some() {
                    return Err(de::Error::custom(
                        "a local chart (`path:`) takes its name and version from its Chart.yaml; remove `name:`/`version:`",
                    ));
                }
                Ok(ChartEntry::Path { path, images })
            }
            _ => Err(de::Error::custom(
                "a chart entry needs exactly one of `repo:` (with name and version), `ref: oci://…` (with version) or `path:`",
            )),
        }
    }
}

/// A local file or directory to carry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The file or directory.
    pub path: PathBuf,
    /// Name it is carried under (`files/NAME`); defaults to the file name.
    #[serde(default)]
    pub name: Option<String>,
}

impl Spec {
    /// Reads and validates a spec file. The format follows the extension:
    /// `.txt` is a reference list, anything else is YAML (which includes JSON).
    pub fn load(path: &Path) -> Result<Spec, InputsError> {
        let meta = fs_err::metadata(path).map_err(InputsError::Read)?;
        if meta.len() > SPEC_MAX_BYTES {
            return Err(InputsError::TooLarge {
                path: path.to_owned(),
                size: meta.len(),
            });
        }
        let bytes = fs_err::read(path).map_err(InputsError::Read)?;
        let text = String::from_utf8(bytes).map_err(|_| InputsError::NotUtf8 {
            path: path.to_owned(),
        })?;
        let is_txt = path.extension().is_some_and(|e| e == "txt");
        let mut spec = if is_txt {
            Spec::from_lines(path, &text)?
        } else {
            Spec::from_yaml(path, &text)?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        spec.resolve(base);
        spec.check(path)?;
        spec.expand_images_from(path)?;
        Ok(spec)
    }

    /// Adds the references found under each `from:` path to `images`
    /// (after the images listed, in the order found, each once and not
    /// again when listed already), with the entry's platforms.
    pub fn expand_images_from(&mut self, spec: &Path) -> Result<(), InputsError> {
        let mut seen: std::collections::HashSet<String> = self
            .images
            .iter()
            .filter_map(|i| match (&i.name, &i.source) {
                (Some(n), _) => Some(n.to_string()),
                (None, ImageSource::Registry(r)) => Some(r.to_string()),
                _ => None,
            })
            .collect();
        for f in &mut self.images_from {
            let listing = crate::shared::rewrite::find_images(std::slice::from_ref(&f.path))
                .map_err(|source| InputsError::From {
                    spec: spec.to_owned(),
                    from: f.path.clone(),
                    source,
                })?;
            let place = |file: &Path, line: usize, block: &Option<String>| match block {
                Some(b) => format!("{}:{line} (in {b})", file.display()),
                None => format!("{}:{line}", file.display()),
            };
            let mut unreadable: Vec<String> = listing
                .skipped
                .iter()
                .filter(|s| s.unreadable)
                .map(|s| format!("{}: {}", place(&s.file, s.line, &s.block), s.reason))
                .collect();
            unreadable.extend(
                listing
                    .not_followed
                    .iter()
                    .filter(|n| n.may_hold_documents)
                    .map(|n| format!("{}: a {}, not followed", n.file.path.display(), n.kind)),
            );
            if !unreadable.is_empty() {
                return Err(InputsError::FromUnreadable {
                    spec: spec.to_owned(),
                    from: f.path.clone(),
                    places: unreadable,
                });
            }
            f.skipped = listing
                .skipped
                .iter()
                .map(|s| {
                    format!(
                        "{} {} ({})",
                        place(&s.file, s.line, &s.block),
                        s.written,
                        s.reason
                    )
                })
                .collect();
            let mut found = Vec::new();
            for i in &listing.images {
                let Ok(r) = i.reference.parse::<Reference>() else {
                    continue;
                };
                if seen.insert(r.to_string()) {
                    found.push((r.to_string(), place(&i.file, i.line, &i.block)));
                    self.images.push(ImageEntry {
                        source: ImageSource::Registry(r),
                        platforms: f.platforms.clone(),
                        name: None,
                        tags: None,
                        budget: None,
                        referrers: None,
                        verify: None,
                    });
                }
            }
            if listing.images.is_empty() {
                return Err(InputsError::FromEmpty {
                    spec: spec.to_owned(),
                    from: f.path.clone(),
                    skipped: listing.skipped.len(),
                });
            }
            f.found = found;
        }
        Ok(())
    }

    /// Parses YAML or JSON text; `path` is only used in messages.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Spec, InputsError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        serde_saphyr::from_str::<Spec>(text).map_err(|e| {
            let location = Location(
                e.location()
                    .filter(|l| l.line() > 0)
                    .map(|l| (l.line(), l.column())),
            );
            InputsError::Syntax {
                path: path.to_owned(),
                location,
                message: first_line(&e.to_string()),
            }
        })
    }

    /// Parses an `images.txt`: one reference a line, `#` starts a comment.
    pub fn from_lines(path: &Path, text: &str) -> Result<Spec, InputsError> {
        let mut images = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let source = ImageSource::parse(line).map_err(|source| InputsError::Line {
                path: path.to_owned(),
                line: i + 1,
                text: line.to_owned(),
                source,
            })?;
            images.push(ImageEntry {
                source,
                platforms: None,
                name: None,
                tags: None,
                budget: None,
                referrers: None,
                verify: None,
            });
        }
        Ok(Spec {
            images,
            ..Spec::default()
        })
    }

    fn resolve(&mut self, base: &Path) {
        for i in &mut self.images {
            i.source.resolve(base);
            if let Some(v) = &mut i.verify {
                v.resolve(base);
            }
        }
        for f in &mut self.images_from {
            f.path = base.join(&f.path);
        }
        for c in &mut self.charts {
            if let ChartEntry::Path { path, .. } = c {
                *path = base.join(&*path);
            }
        }
        for f in &mut self.files {
            f.path = base.join(&f.path);
        }
    }

    fn check(&self, path: &Path) -> Result<(), InputsError> {
        if self.images.is_empty()
            && self.images_from.is_empty()
            && self.charts.is_empty()
            && self.files.is_empty()
        {
            return Err(InputsError::Empty(path.to_owned()));
        }
        if self.platforms.as_ref().is_some_and(Vec::is_empty) {
            return Err(InputsError::NoPlatforms {
                path: path.to_owned(),
                scope: "at the top".into(),
            });
        }
        if let Some(i) = self
            .images
            .iter()
            .find(|i| i.platforms.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(InputsError::NoPlatforms {
                path: path.to_owned(),
                scope: format!("for {}", i.source),
            });
        }
        if let Some(f) = self
            .images_from
            .iter()
            .find(|f| f.platforms.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(InputsError::NoPlatforms {
                path: path.to_owned(),
                scope: format!("for the images from {}", f.path.display()),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for i in &self.images {
            let key = match (&i.name, &i.tags) {
                (Some(n), _) => n.to_string(),
                (None, Some(rule)) => i.label_with(rule),
                (None, None) => i.source.to_string(),
            };
            if !seen.insert(key.clone()) {
                return Err(InputsError::Duplicate {
                    path: path.to_owned(),
                    what: "image",
                    name: key,
                });
            }
        }
        Ok(())
    }
}

/// Parser messages can span several lines (with a source snippet) and
/// repeat the position; keep the first line without the position.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains(" column ") => rest.to_owned(),
        _ => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Result<Spec, InputsError> {
        Spec::from_yaml(Path::new("ferry.yaml"), s)
    }

    #[test]
    fn verify_rules_that_cannot_be_honoured_are_refused_naming_the_image() {
        let ok = yaml("images:\n  - ref: r.example/a:1\n    verify: {cosign_ca: ca.pem, identity_regex: '.*@x'}\n")
            .unwrap();
        assert!(ok.images[0].verify.is_some());
        for (rule, want) in [
            ("{cosign_key: k.pub, cosign_ca: ca.pem}", "not both"),
            ("{}", "needs `cosign_key"),
            ("{cosign_key: k.pub, identity: a@b}", "go with `cosign_ca`"),
            (
                "{cosign_ca: ca.pem, identity: a, identity_regex: b}",
                "one of `identity`",
            ),
            ("{cosign_key: k.pub, trust: all}", "unknown field"),
        ] {
            let e = yaml(&format!(
                "images:\n  - ref: r.example/a:1\n    verify: {rule}\n"
            ))
            .unwrap_err();
            let chain = crate::base::error::error_chain(&e);
            assert!(
                chain.contains(want) && chain.contains("ferry.yaml"),
                "{rule}: {chain}"
            );
        }
        let e = yaml("images:\n  - ref: r.example/a:1\n    referrers: false\n    verify: {cosign_key: k.pub}\n")
            .unwrap_err();
        assert!(
            crate::base::error::error_chain(&e).contains("`referrers: false` leaves them behind")
        );
    }

    #[test]
    fn parses_the_design_example() {
        let s = yaml(
            r#"
name: matrix-stack
platforms: [linux/amd64]
images:
  - docker.io/matrixdotorg/synapse:v1.102.0
  - ref: vectorim/element-web:v1.11.50
    platforms: [linux/amd64, linux/arm64]
  - oci:./local-layout:myapp:2.0
charts:
  - {repo: https://charts.example.com/stable, name: redis, version: "^18.1", images: true}
  - {ref: oci://registry.example.com/charts/cloudnative-pg, version: 0.20.0}
  - {path: ./charts/in-house-1.2.0.tgz}
files:
  - {path: ./deploy/}
"#,
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("matrix-stack"));
        assert_eq!(s.images.len(), 3);
        assert_eq!(
            s.images[2].source,
            ImageSource::OciDir {
                path: "./local-layout".into(),
                name: Some("myapp:2.0".into())
            }
        );
        assert_eq!(s.images[1].platforms.as_ref().unwrap().len(), 2);
        assert!(matches!(
            &s.charts[0],
            ChartEntry::Repo { images: true, .. }
        ));
        assert!(matches!(&s.charts[1], ChartEntry::Oci { version, .. } if version == "0.20.0"));
        assert!(matches!(&s.charts[2], ChartEntry::Path { .. }));
    }

    #[test]
    fn json_is_accepted() {
        let s =
            yaml(r#"{"name": "x", "images": ["nginx", {"ref": "oci-archive:a.tar"}]}"#).unwrap();
        assert_eq!(s.images.len(), 2);
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let e = yaml("name: x\nimagez:\n  - nginx\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("ferry.yaml at line 2"), "{msg}");
        assert!(msg.contains("imagez"), "{msg}");
    }

    #[test]
    fn bad_reference_names_line_and_column() {
        let e = yaml("images:\n  - nginx\n  - Bad/Name:1\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("Bad/Name:1"), "{msg}");
    }

    #[test]
    fn budgets_parse_like_volume_sizes_at_the_top_and_per_image() {
        let s = yaml(
            "budget: {image: 500M, bundle: 20G}\nimages:\n  - ref: a:1\n    budget: 200MB\n  - b:1\n  - {ref: c:1, budget: 1048576}\n",
        )
        .unwrap();
        let b = s.budget.unwrap();
        assert_eq!(b.image, Some(Size(500 << 20)));
        assert_eq!(b.bundle, Some(Size(20 << 30)));
        assert_eq!(s.images[0].budget, Some(200_000_000));
        assert_eq!(s.images[1].budget, None);
        assert_eq!(s.images[2].budget, Some(1 << 20));
        let e = yaml("images:\n  - ref: a:1\n    budget: 20X\n").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 3") && m.contains("unknown unit"), "{m}");
        let e = yaml("budget: {image: 1G, bundel: 2G}\nimages: [a:1]\n").unwrap_err();
        assert!(e.to_string().contains("bundel"), "{e}");
        assert!(yaml("budget: {image: 0}\nimages: [a:1]\n").is_err());
    }

    #[test]
    fn images_txt() {
        let s = Spec::from_lines(
            Path::new("images.txt"),
            "# base images\nnginx:1.27\n\n  ghcr.io/a/b:1 # trailing comment\n",
        )
        .unwrap();
        assert_eq!(s.images.len(), 2);
        let e = Spec::from_lines(Path::new("images.txt"), "nginx\nnot a ref\n").unwrap_err();
        assert!(
            e.to_string().starts_with("invalid spec images.txt:2:"),
            "{e}"
        );
    }

    #[test]
    fn images_from_files() {
        let e = yaml("images:\n  - {ref: nginx, from: x}\n").unwrap_err();
        assert!(e.to_string().contains("exactly one of `ref:`"), "{e}");
        let e = yaml("images:\n  - {from: x, name: a:1}\n").unwrap_err();
        assert!(e.to_string().contains("remove `name:`"), "{e}");

        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("deploy");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "image: nginx:1.27\nother:\n  image: \"{{ .Values.x }}\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("cm.yaml"),
            "data:\n  images_digests: |\n    web:\n      web:\n        image_repository_server: quay.io\n        image_repository_path: org/web\n        image_tag: v1\n      nginx:\n        image: docker.io/library/nginx:1.27\n",
        )
        .unwrap();
        let spec = t.path().join("ferry.yaml");
        std::fs::write(
            &spec,
            "images:\n  - nginx:1.27\n  - from: deploy\n    platforms: [linux/arm64]\n",
        )
        .unwrap();
        let s = Spec::load(&spec).unwrap();
        let refs: Vec<String> = s.images.iter().map(|i| i.source.to_string()).collect();
        // Listed once: nginx is already in the spec.
        assert_eq!(refs, ["docker.io/library/nginx:1.27", "quay.io/org/web:v1"]);
        assert_eq!(s.images[0].platforms, None);
        assert_eq!(s.images[1].platforms.as_ref().unwrap().len(), 1);
        assert_eq!(s.images_from[0].skipped.len(), 1, "{:?}", s.images_from[0]);
        assert!(s.images_from[0].found[0]
            .1
            .ends_with("cm.yaml:5 (in data.images_digests)"));

        // Nothing to carry, an unreadable block, a missing path: errors.
        std::fs::write(&spec, "images:\n  - from: deploy/none.yaml\n").unwrap();
        std::fs::write(dir.join("none.yaml"), "image: ${X}\n").unwrap();
        let e = Spec::load(&spec).unwrap_err();
        assert!(
            matches!(e, InputsError::FromEmpty { skipped: 1, .. }),
            "{e}"
        );
        std::fs::write(
            dir.join("none.yaml"),
            "data:\n  x: |\n    image_repository_server: quay.io\n     bad: [\n",
        )
        .unwrap();
        let e = Spec::load(&spec).unwrap_err();
        assert!(
            e.to_string()
                .contains("none.yaml:3 (in data.x): looks like YAML but does not parse"),
            "{e}"
        );
        std::fs::write(&spec, "images:\n  - from: missing\n").unwrap();
        let e = Spec::load(&spec).unwrap_err();
        assert!(matches!(e, InputsError::From { .. }), "{e}");
    }

    #[test]
    fn transports() {
        assert!(matches!(
            ImageSource::parse("oci-archive:/x/y.tar:app:1").unwrap(),
            ImageSource::OciArchive { name: Some(n), .. } if n == "app:1"
        ));
        assert!(matches!(
            ImageSource::parse("docker-archive:./all.tar:matrixdotorg/synapse:v1").unwrap(),
            ImageSource::DockerArchive { name: Some(n), .. } if n == "matrixdotorg/synapse:v1"
        ));
        assert!(ImageSource::parse("docker-daemon:x").is_err());
        assert!(ImageSource::parse("oci:").is_err());
        assert!(matches!(
            ImageSource::parse("docker://nginx").unwrap(),
            ImageSource::Registry(_)
        ));
    }
}
