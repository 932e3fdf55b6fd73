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

use std::collections::BTreeMap;

use crate::base::digest::Digest;
use crate::base::reference::{is_valid_repository, Reference};
use crate::format::bundle::{Artifact, ArtifactKind};

/// Errors computing targets.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
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
        if host.is_empty()
            || host.contains(char::is_whitespace)
            || registry.contains("://")
            || host.starts_with(':')
            || host.ends_with(':')
        {
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
                let r: Reference =
                    a.reference
                        .parse()
                        .map_err(|source| MappingError::Reference {
                            reference: a.reference.clone(),
                            source,
                        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
