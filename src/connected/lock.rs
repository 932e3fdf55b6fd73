//! Lock files (`ferry resolve`): what a spec's rules chose, exactly. Every
//! registry image entry is recorded with each reference it stands for
//! (one per chosen tag for an entry with `tags:`) and the digest the
//! registry gave for it, and every chart from a Helm repository with the
//! exact version its constraint chose and the archive's digest.
//! `pack --lock` ([`Locked`]) packs exactly that: the same references,
//! fetched by digest, after checking that no tag has moved since.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;
use crate::base::reference::Reference;
use crate::connected::inputs::{ChartEntry, ImageEntry, ImageSource, Spec, SPEC_MAX_BYTES};
use crate::connected::tags::{self, ChosenTags, TagsError};
use crate::shared::remote::{Remote, RemoteError, RemoteOptions};

/// The `format` of a lock file.
pub const LOCK_FORMAT: &str = "ferry-lock";
/// The `format_version` ferry writes and reads.
pub const LOCK_FORMAT_VERSION: u32 = 1;

/// Errors making, reading or applying a lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be read.
    #[error("cannot read lock file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock file is larger than the spec limit.
    #[error("lock file {path} is {size} bytes, more than the {SPEC_MAX_BYTES}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not a lock file ferry reads.
    #[error("lock file {path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A spec entry the lock file does not record.
    #[error("{entry} is not in the lock file; the spec changed since it was written: run `ferry resolve` again")]
    NotLocked {
        /// The entry.
        entry: String,
    },
    /// A tag points elsewhere than when the lock file was written.
    #[error("image {reference} moved: the lock file has {locked}, the registry now {}; review the change and run `ferry resolve` again", now.map(|d| format!("has {d}")).unwrap_or_else(|| "has no such tag".into()))]
    Moved {
        /// `REPOSITORY:TAG`.
        reference: String,
        /// The digest the lock file has.
        locked: Digest,
        /// What the registry has now.
        now: Option<Digest>,
    },
    /// A chart archive's digest is not the locked one.
    #[error("chart {name} {version} from {repo} moved: the lock file has {locked}, the repository now serves {now}; review the change and run `ferry resolve` again")]
    ChartMoved {
        /// The repository.
        repo: String,
        /// The chart.
        name: String,
        /// The version.
        version: String,
        /// The digest the lock file has.
        locked: Digest,
        /// What the repository served.
        now: Digest,
    },
    /// A reference the registry does not have.
    #[error("image {reference}: the registry has no such tag")]
    Absent {
        /// The reference.
        reference: String,
    },
    /// The fetch cache cannot be used.
    #[error(transparent)]
    Cache(#[from] crate::connected::cache::CacheError),
    /// Choosing tags failed.
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// The registry could not be asked.
    #[error("image {reference}")]
    Remote {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: RemoteError,
    },
    /// A chart could not be resolved.
    #[error("chart {name} from {repo}")]
    Chart {
        /// The repository.
        repo: String,
        /// The chart.
        name: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Always `ferry-lock`.
    pub format: String,
    /// [`LOCK_FORMAT_VERSION`].
    pub format_version: u32,
    /// Per registry image entry of the spec.
    #[serde(default)]
    pub images: Vec<LockedImage>,
    /// Per chart entry from a Helm repository.
    #[serde(default)]
    pub charts: Vec<LockedChart>,
}

/// What one image entry chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The entry: its reference, or its repository for an entry with `tags:`.
    pub entry: String,
    /// The entry's tag rule, as ferry prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    /// Each reference chosen, as `REPOSITORY:TAG@DIGEST`.
    pub chosen: Vec<String>,
}

/// What one chart from a Helm repository chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedChart {
    /// The repository URL.
    pub repo: String,
    /// The chart name.
    pub name: String,
    /// The version or range the spec gives.
    pub version: String,
    /// The exact version chosen.
    pub chosen: String,
    /// The digest of the chart archive.
    pub digest: Digest,
}

fn key(e: &ImageEntry) -> (String, Option<String>) {
    (e.label(), e.tags.as_ref().map(ToString::to_string))
}

impl Lock {
    /// Reads and checks a lock file (YAML, or JSON).
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let read = |source| LockError::Read {
            path: path.to_owned(),
            source,
        };
        let size = fs_err::metadata(path).map_err(read)?.len();
        if size > SPEC_MAX_BYTES {
            return Err(LockError::TooLarge {
                path: path.to_owned(),
                size,
            });
        }
        let bytes = fs_err::read(path).map_err(read)?;
        let invalid = |why: String| LockError::Invalid {
            path: path.to_owned(),
            why,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
        let lock: Lock = serde_saphyr::from_str(text)
            .map_err(|e| invalid(e.to_string().lines().next().unwrap_or("").to_owned()))?;
        if lock.format != LOCK_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, not {LOCK_FORMAT:?}",
                lock.format
            )));
        }
        if lock.format_version != LOCK_FORMAT_VERSION {
            return Err(invalid(format!(
                "format_version {} is not {LOCK_FORMAT_VERSION}, the one this ferry reads",
                lock.format_version
            )));
        }
        for i in &lock.images {
            for c in &i.chosen {
                let r: Reference = c
                    .parse()
                    .map_err(|e| invalid(format!("{c:?} ({}): {e}", i.entry)))?;
                if r.digest().is_none() || (i.tags.is_some() && r.tag().is_none()) {
                    return Err(invalid(format!(
                        "{c:?} ({}) is not REPOSITORY:TAG@DIGEST",
                        i.entry
                    )));
                }
            }
        }
        Ok(lock)
    }

    /// The lock file's text (YAML).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }
}

/// What `resolve` found.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The lock.
    pub lock: Lock,
    /// The tags each rule chose.
    pub tags: Vec<ChosenTags>,
}

/// Resolves `spec`: chooses the tags of entries with `tags:`, asks the
/// registry for the digest of every registry image, and downloads each
/// chart from a Helm repository into the cache at `cache` for its exact
/// version and digest (holding the cache's shared lock while it does).
pub async fn resolve(
    spec: &Spec,
    cache: &Path,
    opts: &RemoteOptions,
) -> Result<Resolved, LockError> {
    let chosen = tags::choose_all(spec, opts).await?;
    let mut remotes: HashMap<String, Remote> = HashMap::new();
    let mut images = Vec::new();
    for (e, c) in spec.images.iter().zip(&chosen) {
        let ImageSource::Registry(r) = &e.source else {
            continue;
        };
        let refs: Vec<Reference> = match c {
            Some(c) => c
                .tags
                .iter()
                .filter_map(|t| format!("{}:{t}", r.name()).parse().ok())
                .collect(),
            None => vec![r.clone()],
        };
        let host = r.registry().to_owned();
        let remote_err = |source| LockError::Remote {
            reference: r.to_string(),
            source,
        };
        let remote = remote_for(&mut remotes, &host, opts)
            .await
            .map_err(remote_err)?;
        let mut out = Vec::new();
        for r in refs {
            let d = match (r.digest(), r.tag()) {
                (Some(d), _) => d,
                (None, tag) => remote
                    .manifest_digest(r.repository(), tag.unwrap_or("latest"))
                    .await
                    .map_err(|source| LockError::Remote {
                        reference: r.to_string(),
                        source,
                    })?
                    .ok_or_else(|| LockError::Absent {
                        reference: r.to_string(),
                    })?,
            };
            let name = match r.tag() {
                Some(t) => format!("{}:{t}", r.name()),
                None => r.name(),
            };
            out.push(format!("{name}@{d}"));
        }
        let (entry, tags) = key(e);
        images.push(LockedImage {
            entry,
            tags,
            chosen: out,
        });
    }
    let mut charts = Vec::new();
    let _cache_lock = if spec
        .charts
        .iter()
        .any(|c| matches!(c, ChartEntry::Repo { .. }))
    {
        Some(crate::connected::cache::Cache::create(cache)?.lock_shared(Some(&|| ()))?)
    } else {
        None
    };
    for c in &spec.charts {
        let ChartEntry::Repo {
            repo,
            name,
            version,
            ..
        } = c
        else {
            continue;
        };
        let f = crate::connected::helm_repo::fetch_chart(repo, name, version, cache, opts)
            .await
            .map_err(|e| LockError::Chart {
                repo: repo.clone(),
                name: name.clone(),
                source: Box::new(e),
            })?;
        charts.push(LockedChart {
            repo: repo.clone(),
            name: name.clone(),
            version: version.clone(),
            chosen: f.version,
            digest: f.digest,
        });
    }
    Ok(Resolved {
        lock: Lock {
            format: LOCK_FORMAT.into(),
            format_version: LOCK_FORMAT_VERSION,
            images,
            charts,
        },
        tags: chosen.into_iter().flatten().collect(),
    })
}

/// A spec with a lock applied: every entry with `tags:` expanded to the
/// locked tags, every registry image pinned to its locked digest, every
/// ranged chart fixed to its locked version.
#[derive(Debug, Clone)]
pub struct Locked {
    /// The spec to pack (the references carried are the ones a spec
    /// naming the same tags would carry).
    pub spec: Spec,
    /// By position in `spec.images`: the digest to fetch.
    pub image_pins: Vec<Option<Digest>>,
    /// By position in `spec.charts`: the digest the archive must have.
    pub chart_pins: Vec<Option<Digest>>,
    /// The tags each rule chose, as locked.
    pub tags: Vec<ChosenTags>,
}

/// Applies `lock` to `spec`; fails naming the first entry it lacks.
pub fn apply(spec: &Spec, lock: &Lock) -> Result<Locked, LockError> {
    let by_key: HashMap<(String, Option<String>), &LockedImage> = lock
        .images
        .iter()
        .map(|i| ((i.entry.clone(), i.tags.clone()), i))
        .collect();
    let mut out = Locked {
        spec: spec.clone(),
        image_pins: Vec::new(),
        chart_pins: Vec::new(),
        tags: Vec::new(),
    };
    out.spec.images.clear();
    for e in &spec.images {
        if !matches!(e.source, ImageSource::Registry(_)) {
            out.spec.images.push(e.clone());
            out.image_pins.push(None);
            continue;
        }
        let k = key(e);
        let not_locked = || LockError::NotLocked {
            entry: match &k.1 {
                Some(rule) => format!("image {} ({rule})", k.0),
                None => format!("image {}", k.0),
            },
        };
        let locked = by_key.get(&k).ok_or_else(not_locked)?;
        let mut chosen_tags = Vec::new();
        for c in &locked.chosen {
            // Checked by `Lock::read`; a lock built by hand may differ.
            let r: Reference = c.parse().map_err(|_| not_locked())?;
            let Some(d) = r.digest() else {
                return Err(not_locked());
            };
            let source = match (&e.source, &e.tags, r.tag()) {
                (_, Some(_), Some(tag)) => {
                    chosen_tags.push(tag.to_owned());
                    ImageSource::Registry(
                        format!("{}:{tag}", r.name())
                            .parse()
                            .map_err(|_| not_locked())?,
                    )
                }
                (ImageSource::Registry(own), None, tag)
                    if own.name() == r.name() && own.tag() == tag =>
                {
                    ImageSource::Registry(own.clone())
                }
                _ => return Err(not_locked()),
            };
            out.spec.images.push(ImageEntry {
                source,
                platforms: e.platforms.clone(),
                name: e.name.clone(),
                tags: None,
                budget: e.budget,
                referrers: e.referrers,
                verify: e.verify.clone(),
            });
            out.image_pins.push(Some(d));
        }
        if let Some(rule) = &e.tags {
            out.tags.push(ChosenTags {
                image: k.0.clone(),
                rule: rule.to_string(),
                tags: chosen_tags,
            });
        }
    }
    for c in &mut out.spec.charts {
        let ChartEntry::Repo {
            repo,
            name,
            version,
            ..
        } = c
        else {
            out.chart_pins.push(None);
            continue;
        };
        let locked = lock
            .charts
            .iter()
            .find(|l| l.repo == *repo && l.name == *name && l.version == *version)
            .ok_or_else(|| LockError::NotLocked {
                entry: format!("chart {name} {version} from {repo}"),
            })?;
        *version = locked.chosen.clone();
        out.chart_pins.push(Some(locked.digest));
    }
    Ok(out)
}

/// Checks that no pinned tag of `locked` has moved: the registry must
/// still give each `REPOSITORY:TAG` the locked digest.
pub async fn check_moved(locked: &Locked, opts: &RemoteOptions) -> Result<(), LockError> {
    let mut remotes: HashMap<String, Remote> = HashMap::new();
    for (e, pin) in locked.spec.images.iter().zip(&locked.image_pins) {
        let (ImageSource::Registry(r), Some(pin)) = (&e.source, pin) else {
            continue;
        };
        if r.digest().is_some() {
            continue;
        }
        let Some(tag) = r.tag() else { continue };
        let host = r.registry().to_owned();
        let remote_err = |source| LockError::Remote {
            reference: r.to_string(),
            source,
        };
        let remote = remote_for(&mut remotes, &host, opts)
            .await
            .map_err(remote_err)?;
        let now = remote
            .manifest_digest(r.repository(), tag)
            .await
            .map_err(remote_err)?;
        if now != Some(*pin) {
            return Err(LockError::Moved {
                reference: r.to_string(),
                locked: *pin,
                now,
            });
        }
    }
    Ok(())
}

/// The client for `host`, connected on first use and kept for the run.
async fn remote_for<'a>(
    remotes: &'a mut HashMap<String, Remote>,
    host: &str,
    opts: &RemoteOptions,
) -> Result<&'a Remote, RemoteError> {
    use std::collections::hash_map::Entry;
    Ok(match remotes.entry(host.to_owned()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(Remote::connect(host, opts).await?),
    })
}
