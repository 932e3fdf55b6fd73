//! Inventories: what the far side already holds, so that `pack --have`
//! leaves those blobs out of the next bundle. An inventory is listed from a
//! registry (every tag of the repositories under a prefix, or of the
//! repositories a bundle maps to, walked down to configs and layers) or
//! from an earlier bundle's bundle.json. It is a small JSON file that
//! travels back across the air gap.
//!
//! This module owns the file format and the listing; leaving blobs out is
//! `pack`'s, checking they are really there is `load`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;
use crate::base::report::Reporter;
use crate::format::archive::ArchiveError;
use crate::format::bundle::{Bundle, BundleError};
use crate::format::oci::{self, Node};
use crate::shared::mapping::{MappingError, TargetRegistry};
use crate::shared::remote::{Remote, RemoteError, RemoteOptions};

/// The value of `format`.
pub const FORMAT: &str = "ferry-inventory";
/// The format version written and read.
pub const FORMAT_VERSION: u32 = 1;
/// The largest inventory file ferry reads.
pub const INVENTORY_MAX_BYTES: u64 = 256 << 20;

/// Why an inventory could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The signature of bundle.json is missing or wrong.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
    /// The inventory file is unreadable.
    #[error("cannot read inventory {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The inventory file is too large.
    #[error("inventory {path} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not an inventory.
    #[error("{0} is not a ferry inventory")]
    Parse(PathBuf, #[source] serde_json::Error),
    /// Another format or a newer version.
    #[error("{path} is {found}, not a {FORMAT} version this ferry reads (up to {FORMAT_VERSION})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What it declares.
        found: String,
    },
    /// The earlier bundle cannot be read.
    #[error("cannot read {0} as an archive or a bundle.json")]
    Archive(PathBuf, #[source] ArchiveError),
    /// A bundle.json given directly is not valid.
    #[error("{0} is not a valid bundle.json")]
    Bundle(PathBuf, #[source] BundleError),
    /// The target registry name is invalid, or a bundle's targets collide.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The registry failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A manifest in the registry cannot be walked.
    #[error("{repository}@{digest} in {registry} cannot be read as a manifest")]
    Manifest {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The document.
        digest: Digest,
        /// Why.
        #[source]
        source: oci::OciError,
    },
}

/// What the far side holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Always `ferry-inventory`.
    pub format: String,
    /// Format version.
    pub format_version: u32,
    /// What was listed: `registry HOST[/PREFIX]` or `bundle NAME (FILE)`.
    pub source: String,
    /// Every blob held, by digest. A listing from a bundle includes its
    /// manifests too; `pack --have` never leaves manifests, indexes or
    /// configs out, only layers and chart and file contents.
    pub blobs: Vec<HeldBlob>,
}

/// One blob the far side holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Repositories of the registry that hold it (from a registry
    /// listing), so `load` can mount it from one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
}

impl Inventory {
    fn new(source: String, blobs: BTreeMap<Digest, (u64, BTreeSet<String>)>) -> Inventory {
        Inventory {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            source,
            blobs: blobs
                .into_iter()
                .map(|(digest, (size, repos))| HeldBlob {
                    digest,
                    size,
                    repositories: repos.into_iter().collect(),
                })
                .collect(),
        }
    }

    /// Serialises deterministically (pretty, trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Reads an inventory file; returns it with the file's digest.
    pub fn read(path: &Path) -> Result<(Inventory, Digest), InventoryError> {
        let read = |e| InventoryError::Read(path.to_owned(), e);
        let size = fs_err::metadata(path).map_err(read)?.len();
        if size > INVENTORY_MAX_BYTES {
            return Err(InventoryError::TooLarge {
                path: path.to_owned(),
                size,
                limit: INVENTORY_MAX_BYTES,
            });
        }
        let bytes = fs_err::read(path).map_err(read)?;
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            format_version: Option<u32>,
        }
        let head: Head = serde_json::from_slice(&bytes)
            .map_err(|e| InventoryError::Parse(path.to_owned(), e))?;
        match (head.format.as_deref(), head.format_version) {
            (Some(FORMAT), Some(v)) if v <= FORMAT_VERSION => {}
            (f, v) => {
                return Err(InventoryError::Format {
                    path: path.to_owned(),
                    found: format!(
                        "format {:?} version {}",
                        f.unwrap_or("(none)"),
                        v.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
                    ),
                })
            }
        }
        let inv: Inventory = serde_json::from_slice(&bytes)
            .map_err(|e| InventoryError::Parse(path.to_owned(), e))?;
        Ok((inv, Digest::of(&bytes)))
    }

    /// The blobs held, by digest: (size, repositories).
    pub fn held(&self) -> BTreeMap<Digest, &HeldBlob> {
        self.blobs.iter().map(|b| (b.digest, b)).collect()
    }
}

/// Lists what an earlier bundle carried: every blob member, and the blobs
/// it left out itself when it was a delta (its load checked they were
/// there). `path` is the archive (its first volume) or a bundle.json.
pub fn from_bundle(path: &Path, key: Option<&Path>) -> Result<Inventory, InventoryError> {
    let bundle = read_bundle(path, key)?;
    let mut blobs = BTreeMap::new();
    for m in &bundle.members {
        if m.path.starts_with("blobs/") {
            blobs.insert(m.digest, (m.size, BTreeSet::new()));
        }
    }
    for b in bundle.delta.iter().flat_map(|d| &d.absent) {
        blobs.insert(b.digest, (b.size, BTreeSet::new()));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok(Inventory::new(
        format!("bundle {} ({})", bundle.name, name.unwrap_or_default()),
        blobs,
    ))
}

/// bundle.json of an archive, or a bundle.json file. With `key`, only an
/// archive will do: its signature of bundle.json is checked on the bytes
/// read here.
pub fn read_bundle(path: &Path, key: Option<&Path>) -> Result<Bundle, InventoryError> {
    // An archive first: only bundle.json is needed, so damage further on
    // does not matter, and the key is checked on the bytes that are used.
    let archive_error = match crate::format::archive::read_head(path) {
        Ok(head) => {
            head.check_key(key)?;
            return Ok(head.bundle);
        }
        Err(e) => e,
    };
    let read = |e| InventoryError::Read(path.to_owned(), e);
    let mut first = [0u8; 1];
    let is_json = match fs_err::File::open(path) {
        Ok(mut f) => {
            use std::io::Read;
            f.read(&mut first).map_err(read)? == 1 && first[0] == b'{'
        }
        Err(_) => false,
    };
    if !is_json {
        return Err(InventoryError::Archive(path.to_owned(), archive_error));
    }
    if let Some(key) = key {
        // A bare bundle.json carries no signature.
        return Err(InventoryError::Sign(
            crate::format::sign::SignError::Unsigned {
                archive: path.to_owned(),
                key: key.to_owned(),
            },
        ));
    }
    let size = fs_err::metadata(path).map_err(read)?.len();
    if size > crate::format::bundle::BUNDLE_MAX_BYTES {
        return Err(InventoryError::TooLarge {
            path: path.to_owned(),
            size,
            limit: crate::format::bundle::BUNDLE_MAX_BYTES,
        });
    }
    let bytes = fs_err::read(path).map_err(read)?;
    Bundle::from_slice(&bytes).map_err(|e| InventoryError::Bundle(path.to_owned(), e))
}

/// Lists what a registry holds: every tag of every repository under the
/// target's prefix (from `/v2/_catalog`), or, with `only`, of those
/// repositories, walked down to configs and layers.
pub async fn from_registry(
    registry: &str,
    only: Option<Vec<String>>,
    remote: &RemoteOptions,
    jobs: usize,
    reporter: &dyn Reporter,
) -> Result<Inventory, InventoryError> {
    let target = TargetRegistry::parse(registry, false)?;
    let r = Remote::connect(&target.host, remote).await?;
    let prefix = target.rules.prefix.clone();
    let repos: Vec<String> = match only {
        Some(list) => list,
        None => r
            .catalog()
            .await?
            .into_iter()
            .filter(|repo| match &prefix {
                Some(p) => repo.starts_with(&format!("{p}/")),
                None => true,
            })
            .collect(),
    };
    reporter.start("listing tags", repos.len() as u64);
    let tagged = stream::iter(&repos)
        .map(|repo| {
            let r = &r;
            async move {
                let tags = r.list_tags(repo).await;
                reporter.advance(1);
                tags.map(|t| (repo.clone(), t))
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect::<Vec<_>>()
        .await;
    reporter.finish();
    let mut roots: Vec<(String, String)> = Vec::new();
    for t in tagged {
        let (repo, tags) = t?;
        roots.extend(tags.into_iter().map(|tag| (repo.clone(), tag)));
    }
    reporter.start("reading manifests", roots.len() as u64);
    let walked = stream::iter(&roots)
        .map(|(repo, tag)| {
            let r = &r;
            async move {
                let found = walk(r, repo, tag).await;
                reporter.advance(1);
                found.map(|f| (repo.clone(), f))
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect::<Vec<_>>()
        .await;
    reporter.finish();
    let mut blobs: BTreeMap<Digest, (u64, BTreeSet<String>)> = BTreeMap::new();
    for w in walked {
        let (repo, found) = w?;
        for (d, size) in found {
            blobs
                .entry(d)
                .or_insert((size, BTreeSet::new()))
                .1
                .insert(repo.clone());
        }
    }
    Ok(Inventory::new(format!("registry {registry}"), blobs))
}

/// The configs and layers under `repo:tag`, following indexes.
async fn walk(r: &Remote, repo: &str, tag: &str) -> Result<Vec<(Digest, u64)>, InventoryError> {
    let mut out = Vec::new();
    let mut pending: Vec<(String, String, usize)> = vec![(tag.to_owned(), String::new(), 0)];
    // Each child is pulled once, however often the graph names it.
    let mut pulled = std::collections::HashSet::new();
    while let Some((reference, media_type, depth)) = pending.pop() {
        let (bytes, digest) = match r.pull_manifest(repo, &reference).await {
            Ok(m) => m,
            // A tag deleted while listing, or a child the registry lacks.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let node = match oci::parse_node(digest, &media_type, &bytes) {
            Ok(n) => n,
            // Schema 1, foreign artifacts and documents ferry would refuse
            // (ambiguous, case-folded keys) hold nothing ferry would carry
            // or load. Leaving them out is safe: their blobs are not
            // counted as held, so a delta carries them.
            Err(_) => continue,
        };
        match node {
            Node::Index(i) if depth < oci::MAX_DEPTH => {
                for c in i.manifests {
                    if pulled.insert(c.digest) {
                        pending.push((c.digest.to_string(), c.media_type, depth + 1));
                    }
                }
            }
            Node::Index(_) => {}
            Node::Manifest(m) => {
                out.push((m.config.digest, m.config.size));
                out.extend(m.layers.iter().map(|l| (l.digest, l.size)));
            }
        }
    }
    Ok(out)
}
