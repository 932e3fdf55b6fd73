//! Mirroring a spec straight from its source registries into a target
//! registry, with no archive and no disk in between (`ferry mirror`).
//!
//! The spec is read as `pack` reads it: tag rules expanded (`tags`) or a
//! lock file applied (`lock`, each locked tag checked not to have moved).
//! Each registry image's documents are pulled (they are small) and its
//! index filtered by the spec's platforms with the very function `pack`
//! uses (`source::filter_index`), so the target holds exactly the digests
//! a pack then load of the same spec would give. OCI charts travel as they
//! are. Targets are named as `load` names them (`mapping`). Then the
//! registry is the sink (`shared::push`): one bounded pool over the blobs
//! of every image, each blob HEADed first, mounted when another target
//! repository already has it, else streamed from its source registry to
//! the target. A blob's bytes pass through the same verifying pump as
//! `load`'s, which holds the last chunk back until the digest matched: a
//! blob damaged in transit never reaches the target whole and its upload
//! is abandoned. Manifests follow, children first, tags last; a re-run
//! pushes nothing and a run cut off resumes where it stopped.
//!
//! Referrers (signatures, attestations) are not carried yet: they would be
//! found per root here and handed to `shared::push` as more items.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::base::report::{with_progress, Reporter};
use crate::connected::inputs::{ChartEntry, ImageEntry, ImageSource, Spec};
use crate::connected::lock::{Lock, LockError};
use crate::connected::source::{self, SourceError};
use crate::connected::tags::{ChosenTags, TagsError};
use crate::format::bundle::{Artifact, ArtifactKind, ChartInfo};
use crate::format::oci::{self, Descriptor, Node, Visit, WalkError};
use crate::shared::mapping::{ImageMap, MapEntry, MappingError, TargetRegistry};
use crate::shared::push::{
    self, body_of, pump, ArtifactOutcome, BlobJob, BlobPhase, BlobReader, Document, PushCounts,
    PushItem, PushOptions, Tally,
};
use crate::shared::remote::{BlobBody, Remote, RemoteError, RemoteOptions};
use crate::shared::transport::ChannelReader;

/// Errors that stop a mirror before anything is pushed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Choosing tags by a rule failed.
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// The lock file does not fit the spec, or a locked tag moved.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Target naming failed (bad registry, collision).
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The target registry could not be reached or refused the client.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A source registry could not be reached.
    #[error("cannot reach the source registry of {entry}")]
    Source {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: RemoteError,
    },
    /// An image (or chart) could not be resolved at its source.
    #[error("{entry}: cannot be mirrored")]
    Resolve {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An entry kind mirror does not carry.
    #[error("{entry}: mirror copies registry images and OCI charts only; {what} go through `ferry pack` and `ferry load`")]
    Unsupported {
        /// The entry.
        entry: String,
        /// What kind it is.
        what: &'static str,
    },
    /// Two entries would be carried under one name.
    #[error("{first} and {second} would both be mirrored as {name}")]
    Collision {
        /// The name.
        name: String,
        /// The first entry.
        first: String,
        /// The second entry.
        second: String,
    },
}

/// How to mirror.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// `HOST[:PORT][/PREFIX]`.
    pub registry: String,
    /// Keep the source host as the first path component.
    pub keep_host: bool,
    /// Blobs in flight at once (and images resolved at once).
    pub jobs: usize,
    /// Check the target and report what would be copied; push nothing.
    pub dry_run: bool,
    /// Move tags that already point to other content.
    pub force: bool,
    /// Platforms for every image, overriding the spec (`--platform`).
    pub platforms: Option<Vec<Platform>>,
    /// Mirror exactly what this lock file (from `ferry resolve`) chose.
    pub lock: Option<Lock>,
    /// Transport, credentials and retries, for sources and target alike.
    pub remote: RemoteOptions,
}

/// The result of a mirror.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorReport {
    /// The target registry host.
    pub registry: String,
    /// Whether nothing was pushed.
    pub dry_run: bool,
    /// The tags each entry with `tags:` chose (or the lock file gave).
    pub tags: Vec<ChosenTagsReport>,
    /// Per artifact, in spec order.
    pub artifacts: Vec<ArtifactOutcome>,
    /// Counts (`uploaded` are blobs copied from a source registry).
    pub counts: PushCounts,
    /// Digests of the blobs copied (sorted), so a re-run can be checked.
    pub uploaded: Vec<Digest>,
    /// What each artifact is, for the map file (not in `--json`).
    #[serde(skip)]
    pub model: Vec<Artifact>,
}

/// The tags one rule chose, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ChosenTagsReport {
    /// The entry.
    pub image: String,
    /// The rule as written.
    pub rule: String,
    /// The tags chosen, oldest first.
    pub chosen: Vec<String>,
}

impl From<ChosenTags> for ChosenTagsReport {
    fn from(c: ChosenTags) -> Self {
        ChosenTagsReport {
            image: c.image,
            rule: c.rule,
            chosen: c.tags,
        }
    }
}

impl MirrorReport {
    /// Whether every artifact is in place.
    pub fn is_ok(&self) -> bool {
        self.artifacts.iter().all(|a| a.ok)
    }

    /// The source → target map of the images in place (`--map-out`, and
    /// the installer's override), as `load` writes it.
    pub fn image_map(&self) -> ImageMap {
        let entries = self
            .artifacts
            .iter()
            .zip(&self.model)
            .filter(|(o, a)| o.ok && a.kind == ArtifactKind::Image)
            .map(|(o, a)| MapEntry {
                source: a.reference.clone(),
                target: o.target.clone(),
                tag: o.tag.clone(),
                digest: o.digest,
                source_digest: a.source_digest,
                converted: Vec::new(),
            })
            .collect();
        ImageMap::from_entries(&self.registry, entries)
    }
}

/// One artifact resolved at its source: its model, where it comes from,
/// its documents children first and its blobs.
struct Resolved {
    artifact: Artifact,
    host: String,
    repository: String,
    documents: Vec<Document>,
    blobs: Vec<Descriptor>,
}

/// What to resolve: an image or OCI chart at its source.
struct Wanted {
    /// The entry, for messages.
    label: String,
    /// Where to pull it from.
    reference: Reference,
    /// The digest to pull instead of the tag (a lock file's pin).
    pin: Option<Digest>,
    /// Platforms to keep.
    filter: Option<Vec<Platform>>,
    /// The name carried (images; charts are named by their config).
    name: Option<String>,
    /// A Helm chart rather than an image.
    chart: bool,
}

/// Mirrors `spec` into `opts.registry` (or, with `dry_run`, reports what a
/// mirror would copy). Errors returned stop everything before any push;
/// per-artifact failures are in the report.
pub async fn mirror(
    spec: &Spec,
    opts: &MirrorOptions,
    reporter: &dyn Reporter,
) -> Result<MirrorReport, MirrorError> {
    let target = TargetRegistry::parse(&opts.registry, opts.keep_host)?;
    let (spec, pins, tags) = prepare(spec, opts, reporter).await?;
    let wanted = wanted(&spec, &pins, opts)?;

    // Every source registry once; then each artifact's documents.
    let mut remotes: HashMap<String, Arc<Remote>> = HashMap::new();
    for w in &wanted {
        let host = w.reference.registry().to_owned();
        if let std::collections::hash_map::Entry::Vacant(slot) = remotes.entry(host) {
            let r = Remote::connect(slot.key(), &opts.remote)
                .await
                .map_err(|source| MirrorError::Source {
                    entry: w.label.clone(),
                    source,
                })?;
            slot.insert(Arc::new(r));
        }
    }
    reporter.start("resolving images", 0);
    let resolved: Result<Vec<Resolved>, MirrorError> = stream::iter(&wanted)
        .map(|w| {
            let remote = remotes.get(w.reference.registry()).cloned();
            async move {
                let Some(remote) = remote else {
                    return Err(MirrorError::Resolve {
                        entry: w.label.clone(),
                        source: "its registry was not connected".into(),
                    });
                };
                resolve(&remote, w).await
            }
        })
        .buffered(opts.jobs.max(1))
        .try_collect()
        .await;
    reporter.finish();
    let resolved = resolved?;
    let mut names: HashMap<&str, &str> = HashMap::new();
    for r in &resolved {
        if let Some(first) = names.insert(&r.artifact.reference, &r.artifact.source) {
            return Err(MirrorError::Collision {
                name: r.artifact.reference.clone(),
                first: first.to_owned(),
                second: r.artifact.source.clone(),
            });
        }
    }
    let model: Vec<Artifact> = resolved.iter().map(|r| r.artifact.clone()).collect();
    let targets = target.rules.targets(&model)?;

    // The plan: every blob once, with the target repositories that need
    // it and one source to read it from.
    let mut items = Vec::new();
    let mut jobs: Vec<BlobJob> = Vec::new();
    let mut index: HashMap<Digest, usize> = HashMap::new();
    let mut sources: HashMap<Digest, (Arc<Remote>, String)> = HashMap::new();
    for (t, r) in targets.into_iter().zip(&resolved) {
        let mut blobs: Vec<Digest> = r.blobs.iter().map(|b| b.digest).collect();
        blobs.sort();
        blobs.dedup();
        for b in &r.blobs {
            let i = *index.entry(b.digest).or_insert_with(|| {
                jobs.push(BlobJob {
                    digest: b.digest,
                    size: b.size,
                    carried: true,
                    mount_from: Vec::new(),
                    repositories: Vec::new(),
                });
                jobs.len() - 1
            });
            if !jobs[i].repositories.contains(&t.repository) {
                jobs[i].repositories.push(t.repository.clone());
            }
            if let Some(remote) = remotes.get(&r.host) {
                sources
                    .entry(b.digest)
                    .or_insert_with(|| (remote.clone(), r.repository.clone()));
            }
        }
        items.push(PushItem {
            repository: t.repository,
            tag: t.tag,
            documents: r.documents.clone(),
            blobs,
        });
    }

    let remote = Remote::connect(&target.host, &opts.remote).await?;
    push::probe(&remote, &jobs).await?;
    let tally = Tally::for_jobs(&jobs);
    let sent = Arc::new(AtomicU64::new(0));
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    reporter.start(
        if opts.dry_run {
            "Checking blobs"
        } else {
            "Copying blobs"
        },
        total,
    );
    let push_opts = PushOptions {
        jobs: opts.jobs,
        dry_run: opts.dry_run,
        force: opts.force,
    };
    let reader = RegistryReader {
        sources,
        target: target.host.clone(),
    };
    let keep = |_: &BlobJob, e: String| e;
    let phase = push::push_blobs(&remote, &reader, &jobs, push_opts, &tally, &sent, &keep);
    let BlobPhase { results, .. } = with_progress(phase, &sent, reporter).await;
    reporter.finish();
    let failed_blobs: HashMap<Digest, String> = results
        .into_iter()
        .filter_map(|(d, r)| r.err().map(|e| (d, e)))
        .collect();

    reporter.start("Pushing manifests", 0);
    let errors = push::push_manifests(&remote, &items, &failed_blobs, push_opts, &tally).await;
    reporter.finish();
    let artifacts = items
        .iter()
        .zip(&model)
        .zip(errors)
        .map(|((it, a), error)| ArtifactOutcome {
            kind: a.kind,
            source: a.source.clone(),
            target: format!("{}/{}", target.host, it.repository),
            tag: it.tag.clone(),
            digest: a.digest,
            ok: error.is_none(),
            error,
        })
        .collect();
    let Tally {
        counts,
        mut uploaded,
        ..
    } = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    uploaded.sort();
    uploaded.dedup();
    Ok(MirrorReport {
        registry: target.host.clone(),
        dry_run: opts.dry_run,
        tags: tags.into_iter().map(Into::into).collect(),
        artifacts,
        counts,
        uploaded,
        model,
    })
}

/// The spec as it is mirrored, as `pack` prepares it: with a lock file,
/// what it locked (every locked tag checked not to have moved); else each
/// entry with `tags:` expanded to the tags its rule chooses now. Returns
/// the spec, each image's pinned digest, and the tags chosen.
async fn prepare(
    spec: &Spec,
    opts: &MirrorOptions,
    reporter: &dyn Reporter,
) -> Result<(Spec, Vec<Option<Digest>>, Vec<ChosenTags>), MirrorError> {
    if let Some(lock) = &opts.lock {
        let locked = crate::connected::lock::apply(spec, lock)?;
        reporter.start("checking locked tags", 0);
        let checked = crate::connected::lock::check_moved(&locked, &opts.remote).await;
        reporter.finish();
        checked?;
        return Ok((locked.spec, locked.image_pins, locked.tags));
    }
    if !crate::connected::tags::has_rules(spec) {
        return Ok((spec.clone(), vec![None; spec.images.len()], Vec::new()));
    }
    reporter.start("choosing tags", 0);
    let chosen = crate::connected::tags::choose_all(spec, &opts.remote).await;
    reporter.finish();
    let chosen = chosen?;
    let expanded = crate::connected::tags::expand(spec, &chosen);
    let pins = vec![None; expanded.images.len()];
    Ok((expanded, pins, chosen.into_iter().flatten().collect()))
}

/// What the spec asks to mirror, in spec order: its registry images, then
/// its OCI charts. Anything else is refused, naming the entry.
fn wanted(
    spec: &Spec,
    pins: &[Option<Digest>],
    opts: &MirrorOptions,
) -> Result<Vec<Wanted>, MirrorError> {
    let filter_of = |entry: &ImageEntry| {
        opts.platforms
            .as_ref()
            .or(entry.platforms.as_ref())
            .or(spec.platforms.as_ref())
            .cloned()
    };
    let mut out = Vec::new();
    for (i, e) in spec.images.iter().enumerate() {
        let what = match &e.source {
            ImageSource::Registry(r) => {
                out.push(Wanted {
                    label: e.source.to_string(),
                    reference: r.clone(),
                    pin: pins.get(i).copied().flatten(),
                    filter: filter_of(e),
                    name: Some(match &e.name {
                        Some(n) => n.to_string(),
                        None => r.to_string(),
                    }),
                    chart: false,
                });
                continue;
            }
            ImageSource::OciDir { .. } => "local OCI layouts",
            ImageSource::OciArchive { .. } => "oci-archive: sources",
            ImageSource::DockerArchive { .. } => "docker-archive: sources",
        };
        return Err(MirrorError::Unsupported {
            entry: e.source.to_string(),
            what,
        });
    }
    for c in &spec.charts {
        match c {
            ChartEntry::Oci {
                reference, version, ..
            } => {
                let label = format!("{reference}:{version}");
                let r = format!(
                    "{}:{}",
                    reference.trim_start_matches("oci://").trim_end_matches('/'),
                    version.replace('+', "_")
                );
                let parsed = r.parse::<Reference>().map_err(|e| MirrorError::Resolve {
                    entry: format!("chart {label}"),
                    source: Box::new(e),
                })?;
                out.push(Wanted {
                    label: format!("chart {label}"),
                    reference: parsed,
                    pin: None,
                    filter: None,
                    name: None,
                    chart: true,
                });
            }
            ChartEntry::Path { path, .. } => {
                return Err(MirrorError::Unsupported {
                    entry: format!("chart {}", path.display()),
                    what: "charts from files",
                })
            }
            ChartEntry::Repo { repo, name, .. } => {
                return Err(MirrorError::Unsupported {
                    entry: format!("chart {name} from {repo}"),
                    what: "charts from Helm repositories",
                })
            }
        }
    }
    if let Some(f) = spec.files.first() {
        return Err(MirrorError::Unsupported {
            entry: format!("file {}", f.path.display()),
            what: "files",
        });
    }
    Ok(out)
}

/// Pulls one artifact's documents from its source, filters its index by
/// platform as `pack` does, and walks the graph children first.
async fn resolve(remote: &Remote, w: &Wanted) -> Result<Resolved, MirrorError> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| MirrorError::Resolve {
        entry: w.label.clone(),
        source,
    };
    let r = &w.reference;
    let repo = r.repository();
    let at = match (w.pin, r.digest(), r.tag()) {
        (Some(d), _, _) | (None, Some(d), _) => d.to_string(),
        (None, None, Some(t)) => t.to_owned(),
        (None, None, None) => "latest".to_owned(),
    };
    let (bytes, digest) = remote
        .pull_manifest(repo, &at)
        .await
        .map_err(|e| fail(Box::new(e)))?;
    // Pulled by tag or digest: the document says what it is.
    let node = oci::parse_node(digest, "", &bytes).map_err(|e| fail(Box::new(e)))?;
    let mut root = Descriptor::new(&node.media_type(), digest, bytes.len() as u64);
    let mut source_digest = None;
    let mut docs: HashMap<Digest, Vec<u8>> = HashMap::from([(digest, bytes)]);
    let mut platforms: Vec<Platform> = Vec::new();
    let mut todo: Vec<(Descriptor, usize)> = Vec::new();
    let mut config = None;
    match &node {
        Node::Index(i) => {
            let (kept, filtered) = source::filter_index(i, w.filter.as_deref(), &w.label)
                .map_err(|e| fail(Box::new(e)))?;
            platforms.extend(
                kept.iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_platform()))
                    .filter(|p| p.os != "unknown"),
            );
            if let Some(new) = filtered {
                let d = Digest::of(&new);
                source_digest = Some(digest);
                root = Descriptor::new(&root.media_type, d, new.len() as u64);
                docs.insert(d, new);
            }
            todo.extend(kept.into_iter().map(|d| (d, 1)));
        }
        Node::Manifest(m) => config = Some(m.config.clone()),
    }
    // Every document under the root, each pulled once (by digest, which
    // the client checks against the bytes).
    while let Some((d, depth)) = todo.pop() {
        if depth > oci::MAX_DEPTH || docs.contains_key(&d.digest) {
            continue;
        }
        let (bytes, _) = remote
            .pull_manifest(repo, &d.digest.to_string())
            .await
            .map_err(|e| fail(Box::new(e)))?;
        if let Ok(Node::Index(i)) = oci::parse_node(d.digest, &d.media_type, &bytes) {
            todo.extend(i.manifests.into_iter().map(|c| (c, depth + 1)));
        }
        docs.insert(d.digest, bytes);
    }
    // A single manifest is checked against the filter by its config, as
    // `pack` checks it, and a chart is named by its config.
    let mut chart = None;
    if let Some(c) = config {
        let is_image_config = c.media_type == oci::OCI_CONFIG
            || c.media_type == "application/vnd.docker.container.image.v1+json";
        if w.chart {
            if c.media_type != oci::HELM_CONFIG {
                return Err(fail(
                    format!(
                        "it is not a Helm chart: its config has media type {:?}, not {:?}",
                        c.media_type,
                        oci::HELM_CONFIG
                    )
                    .into(),
                ));
            }
            let bytes = pull_small(remote, repo, &c)
                .await
                .map_err(|e| fail(Box::new(e)))?;
            #[derive(serde::Deserialize)]
            struct HelmConfig {
                name: String,
                version: String,
                #[serde(rename = "appVersion")]
                app_version: Option<String>,
            }
            let cfg: HelmConfig = serde_json::from_slice(&bytes).map_err(|e| fail(Box::new(e)))?;
            chart = Some(ChartInfo {
                name: cfg.name,
                version: cfg.version,
                app_version: cfg.app_version,
            });
        } else if is_image_config && w.filter.as_ref().is_some_and(|f| !f.is_empty()) {
            let bytes = pull_small(remote, repo, &c)
                .await
                .map_err(|e| fail(Box::new(e)))?;
            let p = source::config_platform(&bytes);
            source::check_manifest_platform(w.filter.as_deref(), p.as_ref(), &w.label)
                .map_err(|e: SourceError| fail(Box::new(e)))?;
            platforms.extend(p);
        }
    } else if w.chart {
        return Err(fail("it is not a Helm chart: it is an index".into()));
    }

    // The walk `load` makes: documents children first, every blob.
    let mut documents = Vec::new();
    let mut blobs = Vec::new();
    oci::walk_graph(
        &root.media_type,
        &root.digest,
        &mut |d| {
            docs.get(d)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not pulled"))
        },
        &mut |v| {
            match v {
                Visit::Blob(b) => blobs.push(Descriptor::new(&b.media_type, b.digest, b.size)),
                Visit::Document {
                    digest,
                    media_type,
                    bytes,
                } => documents.push(Document {
                    digest,
                    media_type,
                    bytes,
                }),
            }
            Ok(())
        },
    )
    .map_err(|e: WalkError| fail(Box::new(e)))?;
    platforms.sort();
    platforms.dedup();
    let mut seen = HashSet::new();
    let size = blobs
        .iter()
        .filter(|b| seen.insert(b.digest))
        .map(|b| b.size)
        .sum::<u64>()
        + documents.iter().map(|d| d.bytes.len() as u64).sum::<u64>();
    let (kind, reference) = match &chart {
        Some(c) => (
            ArtifactKind::Chart,
            format!("charts/{}:{}", c.name, c.version.replace('+', "_")),
        ),
        None => (ArtifactKind::Image, w.name.clone().unwrap_or_default()),
    };
    Ok(Resolved {
        artifact: Artifact {
            kind,
            source: w.label.clone(),
            reference,
            digest: root.digest,
            media_type: root.media_type.clone(),
            size,
            platforms: platforms.iter().map(ToString::to_string).collect(),
            source_digest,
            converted: Vec::new(),
            chart,
            file: None,
        },
        host: r.registry().to_owned(),
        repository: repo.to_owned(),
        documents,
        blobs,
    })
}

/// A small blob (a config) pulled into memory, checked against its digest.
async fn pull_small(remote: &Remote, repo: &str, d: &Descriptor) -> Result<Vec<u8>, RemoteError> {
    let out = Mutex::new(Vec::new());
    let limit = source::CONFIG_MAX;
    remote
        .pull_blob(repo, &d.digest, |mut body: BlobBody| {
            let out = &out;
            let digest = d.digest;
            async move {
                let mut buf = Vec::new();
                while let Some(c) = body.next().await {
                    buf.extend_from_slice(&c?);
                    if buf.len() as u64 > limit {
                        return Err(io::Error::other(format!(
                            "blob {digest} is over {limit} bytes"
                        )));
                    }
                }
                if Digest::of(&buf) != digest {
                    return Err(io::Error::other(format!(
                        "blob {digest} does not match its digest"
                    )));
                }
                *out.lock().unwrap_or_else(|p| p.into_inner()) = buf;
                Ok(())
            }
        })
        .await?;
    Ok(out.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Source registries as the source of blob bodies: each attempt GETs the
/// blob as a stream and passes it through [`pump`] on a blocking thread,
/// which hashes as the bytes pass and holds the last chunk back until the
/// digest matched. Nothing touches the disk.
struct RegistryReader {
    /// Where each blob is read from: its source registry and repository.
    sources: HashMap<Digest, (Arc<Remote>, String)>,
    /// The target host, for messages.
    target: String,
}

impl BlobReader for RegistryReader {
    fn open(
        &self,
        digest: Digest,
        size: u64,
        corrupt: &Arc<AtomicBool>,
        sent: &Arc<AtomicU64>,
    ) -> BlobBody {
        let Some((remote, repo)) = self.sources.get(&digest).cloned() else {
            return stream::once(async move {
                Err(io::Error::other(format!("blob {digest} has no source")))
            })
            .boxed();
        };
        let (raw_tx, raw_rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(8);
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
        let from = format!("{}/{repo}", remote.host());
        // The download: one GET (retried until a body starts), its chunks
        // handed on as they come. A body that breaks off ends the attempt;
        // the upload's retry opens a new one.
        tokio::spawn(async move {
            let mut body = match remote.blob_stream(&repo, &digest).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = raw_tx.send(Err(io::Error::other(error_chain(&e)))).await;
                    return;
                }
            };
            let mut got = 0u64;
            while let Some(c) = body.next().await {
                // A registry that ignored the range sent a body the client
                // checks at its end; with every byte handed on, ferry's own
                // hash judges them (and names the damage).
                if c.is_err() && got == size {
                    break;
                }
                let failed = c.is_err();
                got += c.as_ref().map_or(0, |b| b.len() as u64);
                if raw_tx.send(c).await.is_err() || failed {
                    break;
                }
            }
        });
        let (corrupt, sent) = (corrupt.clone(), sent.clone());
        tokio::task::spawn_blocking(move || {
            let mut r = ChannelReader::new(raw_rx, Arc::new(AtomicU64::new(0)));
            pump(&mut r, size, digest, &from, &tx, &corrupt, &sent);
        });
        body_of(rx)
    }

    fn damaged(&self, d: &Digest) -> String {
        let from = self
            .sources
            .get(d)
            .map(|(r, repo)| format!("{}/{repo}", r.host()))
            .unwrap_or_default();
        format!(
            "blob {d} from {from} does not match its digest (damaged in transit); it was not committed to {}",
            self.target
        )
    }
}
