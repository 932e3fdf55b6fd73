//! Image references: parsing and normalisation the way docker and containerd
//! do it (`nginx` → `docker.io/library/nginx:latest`), with a `Display` that
//! round-trips. This module knows nothing about transports such as `oci:`;
//! those live in `inputs`.

// Parses untrusted input: no indexing that could panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;
use std::str::FromStr;

use crate::base::digest::Digest;

/// The registry Docker Hub images live on, in normalised form.
pub const DOCKER_HUB: &str = "docker.io";
const NAME_MAX: usize = 255;

/// Why a reference did not parse. Each variant carries the whole input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("empty image reference")]
    Empty,
    /// The registry host or port is malformed.
    #[error("invalid image reference {0:?}: the registry host is malformed")]
    Registry(String),
    /// A repository path component breaks the naming rules.
    #[error("invalid image reference {0:?}: repository path components are lowercase letters, digits and single separators (. _ __ -)")]
    Repository(String),
    /// The tag breaks the tag rules.
    #[error("invalid image reference {0:?}: a tag is 1-128 of [A-Za-z0-9_.-] and does not start with . or -")]
    Tag(String),
    /// The digest is malformed.
    #[error("invalid image reference {0:?}: the digest is not sha256:<64 hex>")]
    Digest(String),
    /// The name is longer than 255 characters.
    #[error("invalid image reference {0:?}: the name is longer than 255 characters")]
    TooLong(String),
}

/// A fully normalised image reference: registry, repository, and a tag, a
/// digest or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry host, with port when one was given (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The repository path (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest, if any.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }
    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err = |f: fn(String) -> ReferenceError| f(input.to_owned());

        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| err(ReferenceError::Digest))?,
                ),
            ),
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(err(ReferenceError::Tag));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        if !valid_registry(&registry) {
            return Err(err(ReferenceError::Registry));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        // The limit is on the full name, as the registry sees it (found
        // by fuzzing: a 250-character Docker Hub short name parsed, but
        // its own printed form, with docker.io/library/, did not).
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(err(ReferenceError::TooLong));
        }
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(err(ReferenceError::Repository));
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Docker's rule: the first component is a registry when it contains a dot
/// or a colon, is `localhost`, or has uppercase letters.
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.starts_with('[')
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => return !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
            None => return after.is_empty(),
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut it = b.iter().copied().peekable();
    let mut need_alnum = true;
    while let Some(x) = it.next() {
        if alnum(x) {
            need_alnum = false;
            continue;
        }
        if need_alnum {
            return false;
        }
        // A separator: '.', '_', '__' or a run of '-'.
        match x {
            b'.' => {}
            b'_' => {
                it.next_if_eq(&b'_');
            }
            b'-' => while it.next_if_eq(&b'-').is_some() {},
            _ => return false,
        }
        need_alnum = true;
    }
    !need_alnum
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Whether `s` is a valid repository path (components separated by `/`).
pub fn is_valid_repository(s: &str) -> bool {
    !s.is_empty() && s.split('/').all(valid_path_component)
}

/// Whether `t` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(t: &str) -> bool {
    valid_tag(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let cases: &[(&str, &str)] = &[
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("library/nginx", "docker.io/library/nginx:latest"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            ("index.docker.io/nginx:1", "docker.io/library/nginx:1"),
            (
                "vectorim/element-web:v1.11.50",
                "docker.io/vectorim/element-web:v1.11.50",
            ),
            (
                "ghcr.io/cloudnative-pg/postgresql:16",
                "ghcr.io/cloudnative-pg/postgresql:16",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:2", "localhost:5000/app:2"),
            ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
            ("[::1]:5000/app:1", "[::1]:5000/app:1"),
            (
                "registry.k8s.io/ingress-nginx/controller:v1.15.1",
                "registry.k8s.io/ingress-nginx/controller:v1.15.1",
            ),
            (
                "my_repo/sub__x/a-b--c.d:tag_1.2-x",
                "docker.io/my_repo/sub__x/a-b--c.d:tag_1.2-x",
            ),
            (
                "quay.io/prometheus/prometheus:v2.53.0",
                "quay.io/prometheus/prometheus:v2.53.0",
            ),
        ];
        for (input, want) in cases {
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
            // Display round-trips.
            assert_eq!(r.to_string().parse::<Reference>().unwrap(), r, "{input}");
        }
    }

    #[test]
    fn digests_and_tag_plus_digest() {
        let r: Reference = format!("nginx@{D}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/nginx@{D}"));

        let r: Reference = format!("registry.k8s.io/x/y:v1@{D}").parse().unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.to_string(), format!("registry.k8s.io/x/y:v1@{D}"));

        let r: Reference = format!("localhost:5000/app@{D}").parse().unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn rejects_invalid() {
        let bad = [
            "",
            "Nginx", // uppercase first component is taken as a registry, repo empty
            "docker.io/Library/x", // uppercase repository
            "nginx:", // empty tag
            "nginx:-x", // tag starts with -
            "nginx:a/b",
            "nginx@sha256:abc",
            "nginx@md5:abc",
            "a//b",
            "a/b/",
            "-a/b",
            "a_-b",
            "a..b",
            "registry:abc/x", // non-numeric port
            "reg-.io/x",      // label ends with -
            "http://nginx",
            "nginx latest",
        ];
        for b in bad {
            assert!(b.parse::<Reference>().is_err(), "{b:?} accepted");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(matches!(
            long.parse::<Reference>(),
            Err(ReferenceError::TooLong(_))
        ));
    }

    /// Found by `cargo fuzz run reference`: the limit applies to the name
    /// as printed (`docker.io/library/…`), so every accepted reference
    /// prints to a string that parses again.
    #[test]
    fn length_limit_counts_the_normalised_name() {
        let fits = "x".repeat(255 - "docker.io/library/".len());
        let r: Reference = fits.parse().unwrap();
        assert_eq!(r.to_string().parse::<Reference>().unwrap(), r);
        let over = format!("{fits}y");
        assert!(matches!(
            over.parse::<Reference>(),
            Err(ReferenceError::TooLong(_))
        ));
    }

    #[test]
    fn error_names_input() {
        let e = "nginx:-x".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("\"nginx:-x\""), "{e}");
    }
}
