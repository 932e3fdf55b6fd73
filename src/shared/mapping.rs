//! Where carried artifacts go in a target registry. The rule is shared by
//! `serve` (and, later, `load`), so a mirror set up against `ferry serve`
//! works unchanged against the real registry later.
//!
//! - An image keeps its repository path and drops its source host:
//!   `docker.io/library/nginx:1.27` becomes `PREFIX/library/nginx:1.27`.
//! - With `keep_host`, the host becomes the first path component:
//!   `PREFIX/docker.io/library/nginx:1.27`. A port's `:` becomes `-`
//!   (`localhost:5000` → `localhost-5000`), since `:` cannot appear in a
//!   repository path.
//! - Charts go to `PREFIX/charts/NAME:VERSION` and files to
//!   `PREFIX/files/NAME:latest`, their names inside the archive.
//! - Two artifacts that land on the same repository and tag are an error.
//!
//! It also owns what `load` writes for `rewrite`: the source → target map
//! file ([`ImageMap`], `ferry-map` JSON). The installer's override is the
//! installer's own file rewritten with that map (`rewrite`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;
use crate::base::reference::{is_valid_repository, is_valid_tag, Reference};
use crate::format::bundle::{Artifact, ArtifactKind, Bundle, DigestChange};

/// Errors computing targets.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// A map file that is not a ferry map.
    #[error("not a ferry map file: {0}")]
    MapFile(String),
    /// The target registry is malformed.
    #[error("invalid target registry {0:?}: expected HOST[:PORT][/PREFIX]")]
    Registry(String),
    /// The prefix is not a repository path.
    #[error("prefix {0:?} is not a valid repository path (lowercase letters, digits, separators . _ - and /)")]
    Prefix(String),
    /// An artifact's reference does not parse.
    #[error("artifact {reference} has a reference ferry cannot map")]
    Reference {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: crate::base::reference::ReferenceError,
    },
    /// The mapped repository is invalid.
    #[error("artifact {reference} maps to {repository:?}, which is not a valid repository path")]
    Repository {
        /// The reference.
        reference: String,
        /// The computed repository.
        repository: String,
    },
    /// The mapped tag is invalid.
    #[error("artifact {reference} maps to the tag {tag:?}, which is not a valid tag")]
    Tag {
        /// The reference.
        reference: String,
        /// The computed tag.
        tag: String,
    },
    /// Two artifacts land on one target.
    #[error("{first} and {second} would both become {target}; use --keep-host or rename one in the spec")]
    Collision {
        /// First source.
        first: String,
        /// Second source.
        second: String,
        /// The shared target.
        target: String,
    },
}

/// How targets are named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRules {
    /// A path prefix in the target registry (`mirror`, `team/x`).
    pub prefix: Option<String>,
    /// Keep the source registry host as the first path component.
    pub keep_host: bool,
}

/// Where one artifact goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The source reference as carried (`index.json` ref name).
    pub source: String,
    /// Repository path in the target registry.
    pub repository: String,
    /// Tag, when the source had one (digest-only references have none).
    pub tag: Option<String>,
    /// The digest the target will hold.
    pub digest: Digest,
}

/// A target registry, `HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRegistry {
    /// `HOST[:PORT]`.
    pub host: String,
    /// The naming rules (prefix, keep-host).
    pub rules: TargetRules,
}

impl TargetRegistry {
    /// Parses `HOST[:PORT][/PREFIX]` and checks the prefix.
    pub fn parse(registry: &str, keep_host: bool) -> Result<TargetRegistry, MappingError> {
        let (host, prefix) = match registry.split_once('/') {
            Some((h, p)) => (h, Some(p.trim_end_matches('/').to_owned())),
            None => (registry, None),
        };
        let prefix = prefix.filter(|p| !p.is_empty());
        if !valid_host(host) || registry.contains("://") {
            return Err(MappingError::Registry(registry.to_owned()));
        }
        let rules = TargetRules { prefix, keep_host };
        rules.validate()?;
        Ok(TargetRegistry {
            host: host.to_owned(),
            rules,
        })
    }
}

/// `NAME[:PORT]` or `[IPV6][:PORT]`: a DNS name or IPv4 address of letters,
/// digits, `-` and `.`, and a port from 1 to 65535. No user, query,
/// fragment or second port, which would send requests somewhere else.
fn valid_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.is_empty()
                    || !ip
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(p) => (ip, Some(p)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        },
    };
    let name_ok = host.starts_with('[')
        || (!name.is_empty()
            && !name.starts_with(['-', '.'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    name_ok && port_ok
}

impl TargetRules {
    /// Checks the prefix.
    pub fn validate(&self) -> Result<(), MappingError> {
        match &self.prefix {
            Some(p) if !is_valid_repository(p) => Err(MappingError::Prefix(p.clone())),
            _ => Ok(()),
        }
    }

    /// The target of one artifact.
    pub fn target(&self, a: &Artifact) -> Result<Target, MappingError> {
        let (path, tag) = match a.kind {
            ArtifactKind::Image => {
                let r = image_reference(a)?;
                let path = if self.keep_host {
                    format!("{}/{}", r.registry().replace(':', "-"), r.repository())
                } else {
                    r.repository().to_owned()
                };
                (path, r.tag().map(str::to_owned))
            }
            ArtifactKind::Chart | ArtifactKind::File => match a.reference.rsplit_once(':') {
                Some((p, t)) => (p.to_owned(), Some(t.to_owned())),
                None => (a.reference.clone(), None),
            },
        };
        let repository = match &self.prefix {
            Some(p) => format!("{}/{path}", p.trim_end_matches('/')),
            None => path,
        };
        if !is_valid_repository(&repository) {
            return Err(MappingError::Repository {
                reference: a.reference.clone(),
                repository,
            });
        }
        if let Some(t) = tag.as_ref().filter(|t| !is_valid_tag(t)) {
            return Err(MappingError::Tag {
                reference: a.reference.clone(),
                tag: t.clone(),
            });
        }
        Ok(Target {
            source: a.reference.clone(),
            repository,
            tag,
            digest: a.digest,
        })
    }

    /// Targets of every artifact, refusing collisions.
    pub fn targets(&self, artifacts: &[Artifact]) -> Result<Vec<Target>, MappingError> {
        self.validate()?;
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::new();
        for a in artifacts {
            let t = self.target(a)?;
            let key = match &t.tag {
                Some(tag) => format!("{}:{tag}", t.repository),
                None => format!("{}@{}", t.repository, t.digest),
            };
            if let Some(first) = seen.insert(key.clone(), a.reference.clone()) {
                return Err(MappingError::Collision {
                    first,
                    second: a.reference.clone(),
                    target: key,
                });
            }
            out.push(t);
        }
        Ok(out)
    }
}

/// An image artifact's reference, parsed (bundle.json is read as
/// untrusted, so a reference that does not parse is an error naming it).
pub fn image_reference(a: &Artifact) -> Result<Reference, MappingError> {
    a.reference
        .parse()
        .map_err(|source| MappingError::Reference {
            reference: a.reference.clone(),
            source,
        })
}

/// The `format` of map files.
pub const MAP_FORMAT: &str = "ferry-map";
/// The newest map format version: 2 adds `converted` (`pack --oci`).
pub const MAP_FORMAT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    format: String,
    format_version: u32,
    registry: String,
    images: Vec<MapEntry>,
}

/// One source image and where it is in the target registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    /// The source reference, as carried.
    pub source: String,
    /// `HOST[:PORT]/REPOSITORY` in the target registry.
    pub target: String,
    /// The tag, when the source had one.
    pub tag: Option<String>,
    /// The digest the target holds.
    pub digest: Digest,
    /// The digest at the source, when a platform filter changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// Documents `pack --oci` converted (old → new digest), so that a pin
    /// on an old child manifest becomes its new digest. Map format 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub converted: Vec<DigestChange>,
}

/// Source → target lookups.
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    entries: Vec<MapEntry>,
    by_name_tag: HashMap<(String, String), usize>,
    by_digest: HashMap<(String, Digest), usize>,
    target_host: String,
}

impl ImageMap {
    /// The map a load of `bundle` into `registry` (`HOST[:PORT][/PREFIX]`)
    /// produces, with the shared naming rules.
    pub fn from_bundle(
        bundle: &Bundle,
        registry: &str,
        keep_host: bool,
    ) -> Result<ImageMap, MappingError> {
        let TargetRegistry { host, rules } = TargetRegistry::parse(registry, keep_host)?;
        let images: Vec<_> = bundle
            .artifacts
            .iter()
            .filter(|a| a.kind == ArtifactKind::Image)
            .cloned()
            .collect();
        let targets = rules.targets(&images)?;
        let mut map = ImageMap {
            target_host: host.clone(),
            ..ImageMap::default()
        };
        for (t, a) in targets.into_iter().zip(&images) {
            map.insert(MapEntry {
                source: a.reference.clone(),
                target: format!("{host}/{}", t.repository),
                tag: t.tag,
                digest: t.digest,
                source_digest: a.source_digest,
                converted: a.converted.clone(),
            });
        }
        Ok(map)
    }

    /// A map from explicit entries (`target_host` is the registry whose
    /// references count as already local).
    pub fn from_entries(target_host: &str, entries: Vec<MapEntry>) -> ImageMap {
        let mut map = ImageMap {
            target_host: target_host.to_owned(),
            ..ImageMap::default()
        };
        for e in entries {
            map.insert(e);
        }
        map
    }

    fn insert(&mut self, e: MapEntry) {
        let Ok(r) = e.source.parse::<Reference>() else {
            return;
        };
        let i = self.entries.len();
        if let Some(t) = r.tag() {
            self.by_name_tag.insert((r.name(), t.to_owned()), i);
        }
        self.by_digest.insert((r.name(), e.digest), i);
        if let Some(sd) = e.source_digest {
            self.by_digest.insert((r.name(), sd), i);
        }
        if let Some(d) = r.digest() {
            self.by_digest.insert((r.name(), d), i);
        }
        for c in &e.converted {
            self.by_digest.insert((r.name(), c.from), i);
            self.by_digest.insert((r.name(), c.to), i);
        }
        self.entries.push(e);
    }

    /// Reads a map file (`ferry-map` JSON: `{"format": "ferry-map",
    /// "format_version": 1, "registry": HOST, "images": [MapEntry…]}`).
    pub fn from_json(bytes: &[u8]) -> Result<ImageMap, MappingError> {
        let f: MapFile =
            serde_json::from_slice(bytes).map_err(|e| MappingError::MapFile(e.to_string()))?;
        if f.format != MAP_FORMAT {
            return Err(MappingError::MapFile(format!(
                "format is {:?}, not {MAP_FORMAT:?}",
                f.format
            )));
        }
        if f.format_version > MAP_FORMAT_VERSION {
            return Err(MappingError::MapFile(format!(
                "format version {} is newer than this ferry reads ({MAP_FORMAT_VERSION})",
                f.format_version
            )));
        }
        // Every field ferry writes into YAML must be what it claims to be:
        // a target that is not a reference (a newline and more YAML, say)
        // would be written into manifests verbatim.
        for e in &f.images {
            if e.source.parse::<Reference>().is_err() {
                return Err(MappingError::MapFile(format!(
                    "source {:?} is not an image reference",
                    e.source
                )));
            }
            let target = match &e.tag {
                Some(tag) => format!("{}:{tag}", e.target),
                None => format!("{}@{}", e.target, e.digest),
            };
            let valid = target
                .parse::<Reference>()
                .is_ok_and(|r| r.to_string() == target);
            if !valid || e.target.contains(['@', ' ']) {
                return Err(MappingError::MapFile(format!(
                    "the target of {} ({target:?}) is not a reference of the form HOST/REPOSITORY:TAG",
                    e.source
                )));
            }
        }
        let host = f.registry.split('/').next().unwrap_or("").to_owned();
        Ok(ImageMap::from_entries(&host, f.images))
    }

    /// The map as a `ferry-map` JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        // Version 2 only when an entry records a conversion, so that older
        // readers keep reading every other map.
        let converted = self.entries.iter().any(|e| !e.converted.is_empty());
        let f = MapFile {
            format: MAP_FORMAT.into(),
            format_version: if converted { MAP_FORMAT_VERSION } else { 1 },
            registry: self.target_host.clone(),
            images: self.entries.clone(),
        };
        let mut v = serde_json::to_vec_pretty(&f).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// The entries.
    pub fn entries(&self) -> &[MapEntry] {
        &self.entries
    }

    /// Whether the map holds no image.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The registry whose references count as already local.
    pub(crate) fn target_host(&self) -> &str {
        &self.target_host
    }

    /// An entry for image `name` (`HOST/REPO`), whatever its tag.
    pub(crate) fn lookup_name(&self, name: &str) -> Option<&MapEntry> {
        self.entries.iter().find(|e| {
            e.source
                .parse::<Reference>()
                .is_ok_and(|r| r.name() == name)
        })
    }

    /// The entry for `r`, with the digest a pin on `r` must become: the
    /// root's, or, for a pin on a document `pack --oci` converted (a
    /// per-platform manifest), that document's new digest.
    pub(crate) fn lookup(&self, r: &Reference) -> Option<MapEntry> {
        if self.entries.is_empty() {
            return None;
        }
        let by_digest = r.digest().and_then(|d| self.by_digest.get(&(r.name(), d)));
        let by_tag = r
            .tag()
            .and_then(|t| self.by_name_tag.get(&(r.name(), t.to_owned())));
        // A pin on a digest the bundle does not carry is not in it, tag or
        // not: falling back to the tag would re-pin it to other content
        // (another platform's index, say).
        if r.digest().is_some() && by_digest.is_none() {
            return None;
        }
        let mut e = by_digest
            .or(by_tag)
            .and_then(|&i| self.entries.get(i))?
            .clone();
        if let Some(d) = r.digest() {
            if let Some(c) = e.converted.iter().find(|c| c.from == d || c.to == d) {
                e.digest = c.to;
            }
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_host_with_a_user_query_fragment_or_bad_port_is_refused() {
        for ok in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000/team",
            "registry.example.com",
            "[::1]:5000",
            "[::1]",
            "my-reg.local:443/a/b",
        ] {
            assert!(TargetRegistry::parse(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ":5000",
            "127.0.0.1:",
            "127.0.0.1:5002?x=1",
            "127.0.0.1:5002#x",
            "user@127.0.0.1:5002",
            "127.0.0.1:99999",
            "127.0.0.1:0",
            "127.0.0.1:5002:5003",
            "http://127.0.0.1:5000",
            "reg istry",
            "[::1",
            "[::1]x",
            "-reg",
        ] {
            let e = TargetRegistry::parse(bad, false).err();
            assert!(
                matches!(e, Some(MappingError::Registry(_))),
                "{bad:?}: {e:?}"
            );
        }
    }

    fn image(r: &str) -> Artifact {
        Artifact {
            kind: ArtifactKind::Image,
            source: r.into(),
            reference: r.into(),
            digest: Digest::of(r.as_bytes()),
            media_type: crate::format::oci::OCI_INDEX.into(),
            size: 1,
            platforms: vec![],
            source_digest: None,
            converted: Vec::new(),
            chart: None,
            file: None,
        }
    }

    #[test]
    fn drops_or_keeps_the_host() {
        let a = image("docker.io/library/nginx:1.27");
        let plain = TargetRules::default().target(&a).unwrap();
        assert_eq!(
            (plain.repository.as_str(), plain.tag.as_deref()),
            ("library/nginx", Some("1.27"))
        );
        let kept = TargetRules {
            prefix: Some("mirror".into()),
            keep_host: true,
        }
        .target(&a)
        .unwrap();
        assert_eq!(kept.repository, "mirror/docker.io/library/nginx");
        let port = TargetRules {
            prefix: None,
            keep_host: true,
        }
        .target(&image("localhost:5000/app:1"))
        .unwrap();
        assert_eq!(port.repository, "localhost-5000/app");
    }

    #[test]
    fn collisions_are_refused() {
        let arts = vec![image("docker.io/team/app:1"), image("quay.io/team/app:1")];
        let e = TargetRules::default().targets(&arts).unwrap_err();
        assert!(e.to_string().contains("team/app:1"), "{e}");
        assert!(TargetRules {
            prefix: None,
            keep_host: true
        }
        .targets(&arts)
        .is_ok());
        assert!(TargetRules {
            prefix: Some("Bad Prefix".into()),
            keep_host: false
        }
        .targets(&arts)
        .is_err());
    }

    #[test]
    fn a_map_with_conversions_is_format_2_and_translates_child_pins() {
        let old_child = Digest::of(b"old amd64 manifest");
        let new_child = Digest::of(b"new amd64 manifest");
        let old_root = Digest::of(b"old list");
        let mut a = image("docker.io/library/app:1");
        a.source_digest = Some(old_root);
        a.converted = vec![
            DigestChange {
                from: old_root,
                to: a.digest,
                platform: None,
            },
            DigestChange {
                from: old_child,
                to: new_child,
                platform: Some("linux/amd64".into()),
            },
        ];
        let bundle = Bundle {
            format: crate::format::bundle::FORMAT.into(),
            format_version: crate::format::bundle::FORMAT_VERSION,
            tool: crate::format::bundle::Tool {
                name: "ferry".into(),
                version: "0".into(),
            },
            name: "t".into(),
            created: None,
            artifacts: vec![a.clone()],
            members: vec![],
            volumes: None,
            delta: None,
            referrers: Vec::new(),
        };
        let map = ImageMap::from_bundle(&bundle, "r.local:5000", false).unwrap();
        let json = map.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["format_version"], 2);
        let back = ImageMap::from_json(&json).unwrap();
        for (pin, want) in [
            (old_child, new_child),
            (new_child, new_child),
            (old_root, a.digest),
        ] {
            let r: Reference = format!("docker.io/library/app@{pin}").parse().unwrap();
            assert_eq!(back.lookup(&r).map(|e| e.digest), Some(want), "{pin}");
        }
        // A pin on a digest the bundle does not carry is not in it, even
        // with a tag that is: re-pinning it would change what runs.
        let stray: Reference = format!("docker.io/library/app:1@{}", Digest::of(b"other"))
            .parse()
            .unwrap();
        assert!(back.lookup(&stray).is_none());
        // Without conversions the map stays version 1 for older readers.
        let plain = ImageMap::from_bundle(
            &Bundle {
                artifacts: vec![image("docker.io/library/b:1")],
                ..bundle
            },
            "r.local:5000",
            false,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&plain.to_json()).unwrap();
        assert_eq!(v["format_version"], 1);
    }
}
