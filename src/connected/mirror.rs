//! Mirroring a spec straight from its sources into a target registry,
//! with no archive in between (`ferry mirror`).
//!
//! The spec is read as `pack` reads it: tag rules expanded (`tags`) or a
//! lock file applied (`lock`, each locked tag checked not to have moved).
//! Each registry image's documents are pulled (they are small) and its
//! index filtered by the spec's platforms with the very function `pack`
//! uses (`source::filter_index`), so the target holds exactly the digests
//! a pack then load of the same spec would give. OCI charts travel as they
//! are. Local sources, chart files, Helm-repository charts and files are
//! made into artifacts by pack's own planning (`pack::plan_local`), their
//! blobs read from the files where they are. Referrers are found at the
//! source as `pack` finds them (`referrers::discover`, documents kept in
//! memory), kept by pack's platform rule, and `verify:` rules are checked
//! before anything is pushed. Targets are named as `load` names them
//! (`mapping`). Then the registry is the sink (`shared::push`): one
//! bounded pool over the blobs of every image, each blob HEADed first,
//! mounted when another target repository already has it, else streamed
//! from its source to the target. A blob's bytes pass through the same
//! verifying pump as `load`'s, which holds the last chunk back until the
//! digest matched: a blob damaged in transit never reaches the target
//! whole and its upload is abandoned. Manifests follow, children first,
//! tags last, then referrers by depth (`shared::referrer_push`); a re-run
//! pushes nothing and a run cut off resumes where it stopped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
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
use crate::connected::pack::{LocalEntry, LocalPlan, PackError, SignatureCheck};
use crate::connected::referrers::{Asked, DocumentSink, Found, NoApi};
use crate::connected::source::FoundBlob;
use crate::connected::source::{self, SourceError};
use crate::connected::tags::{ChosenTags, TagsError};
use crate::format::archive::MemberSource;
use crate::format::bundle::{Artifact, ArtifactKind, ChartInfo};
use crate::format::oci::{self, Descriptor, Node, Visit, WalkError};
use crate::shared::mapping::{ImageMap, MapEntry, MappingError, TargetRegistry};
use crate::shared::push::{
    self, body_of, pump, ArtifactOutcome, BlobJob, BlobPhase, BlobReader, Document, PushCounts,
    PushItem, PushOptions, Tally,
};
use crate::shared::referrer_push::{self, ReferrerPush};
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
    /// A local source, chart file or file could not be made into its
    /// artifact (pack's own planning refused it).
    #[error(transparent)]
    Local(#[from] crate::connected::pack::PackError),
    /// A chart could not be downloaded from its Helm repository.
    #[error("chart {entry}: cannot be downloaded")]
    RepoChart {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: crate::connected::helm_repo::RepoError,
    },
    /// The scratch directory (directory tars, downloaded charts) could
    /// not be made.
    #[error("cannot create a scratch directory in {}", std::env::temp_dir().display())]
    Scratch(#[source] io::Error),
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
    /// mtime for the tar headers of directories carried as files (as
    /// `pack` writes them, so the digests agree).
    pub mtime: u64,
    /// Find and carry referrers (signatures, attestations, SBOMs) where the
    /// spec does not turn them off; `false` is `--no-referrers`.
    pub referrers: bool,
    /// `--cosign-key`: every image without its own `verify:` must carry a
    /// good signature by this key, as `pack --cosign-key` requires.
    pub cosign_key: Option<std::path::PathBuf>,
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
    /// Per referrer carried, by depth (a referrer of a referrer after it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<ReferrerOutcome>,
    /// The signatures checked (the spec's `verify:`), one per image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureCheck>,
    /// Each image a chart with `images: true` names, and where (as `pack`
    /// reports them); those the spec does not list are mirrored after the
    /// spec's own entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chart_images: Vec<ChartImageReport>,
    /// Counts (`uploaded` are blobs copied from a source registry).
    pub counts: PushCounts,
    /// Digests of the blobs copied (sorted), so a re-run can be checked.
    pub uploaded: Vec<Digest>,
    /// What each artifact is, for the map file (not in `--json`).
    #[serde(skip)]
    pub model: Vec<Artifact>,
}

/// An image a chart names.
#[derive(Debug, Clone, Serialize)]
pub struct ChartImageReport {
    /// The reference.
    pub reference: String,
    /// The chart, and where in it (`redis/values.yaml:12`).
    pub origin: String,
}

/// What happened to one referrer, as `load` reports it.
pub use crate::shared::referrer_push::ReferrerReport as ReferrerOutcome;

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
        self.artifacts.iter().all(|a| a.ok) && self.referrers.iter().all(|r| r.ok)
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
                converted: a.converted.clone(),
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
    /// For a local artifact: where its blobs' bytes are (else they come
    /// from `host`/`repository`).
    local: Option<Arc<BTreeMap<Digest, FoundBlob>>>,
    /// The documents pulled at the source (the root as it is there and
    /// every child kept): whose referrers are looked for, as `pack` does.
    subjects: Vec<Digest>,
    /// Whether its referrers are looked for.
    referrers: bool,
}

/// A referrer found at the source whose subject travels: it goes to its
/// image's target repository after it.
struct Carried {
    found: Found,
    /// Its image, by position in the artifacts.
    artifact: usize,
    documents: Vec<Document>,
    blobs: Vec<Digest>,
    listed: Descriptor,
    has_subject: bool,
    /// 0 for a referrer of the image, 1 for one of a referrer, ...
    level: usize,
}

/// The documents discovery pulls, kept in memory (mirror has no cache).
#[derive(Default)]
struct Pulled(Mutex<HashMap<Digest, Vec<u8>>>);

impl Pulled {
    fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(d)
            .cloned()
    }
}

impl DocumentSink for Pulled {
    fn put(&self, bytes: &[u8], d: Digest) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d, bytes.to_vec());
        Ok(())
    }
}

/// One entry of the spec, as mirror takes it.
enum Slot {
    /// An image or OCI chart at its source registry.
    Registry(Box<Wanted>),
    /// A local image source, chart file or file, planned as `pack` plans
    /// it.
    Local(LocalEntry),
    /// A chart from a classic Helm repository, downloaded first.
    RepoChart {
        repo: String,
        name: String,
        version: String,
        /// The lock file's digest for the chart archive.
        pin: Option<Digest>,
    },
}

/// Where a blob's bytes come from.
#[derive(Clone)]
enum BlobFrom {
    /// A source registry and repository.
    Registry(Arc<Remote>, String),
    /// A local file (a byte range) or bytes in memory.
    Local(FoundBlob),
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
    /// Whether its referrers are looked for.
    referrers: bool,
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
    let (spec, pins, chart_pins, tags) = prepare(spec, opts, reporter).await?;
    let mut slots = wanted(&spec, &pins, &chart_pins, opts)?;

    // Directories are tarred and Helm repository charts downloaded here
    // (pack's scratch space); removed when the mirror ends.
    let needs_scratch = slots
        .iter()
        .any(|s| matches!(s, Slot::RepoChart { .. } | Slot::Local(LocalEntry::File(_))));
    let scratch = match needs_scratch {
        true => Some(
            tempfile::Builder::new()
                .prefix(".ferry-mirror-")
                .tempdir()
                .map_err(MirrorError::Scratch)?,
        ),
        false => None,
    };
    let _scratch_registered = scratch
        .as_ref()
        .map(|d| crate::base::interrupt::register(d.path()));
    if let Some(dir) = &scratch {
        fetch_repo_charts(&mut slots, dir.path(), opts, reporter).await?;
    }
    // Charts with `images: true` bring the images they name, as in `pack`.
    let chart_images = add_chart_images(&spec, &mut slots, opts, reporter).await?;

    // Every source registry once; then each artifact's documents.
    let mut remotes: HashMap<String, Arc<Remote>> = HashMap::new();
    for w in slots.iter().filter_map(|s| match s {
        Slot::Registry(w) => Some(w),
        _ => None,
    }) {
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
    // Local entries: made into artifacts by pack's own planning (files
    // hashed in place), on a blocking thread, while the registries answer.
    let locals: Vec<LocalEntry> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Local(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    let local_plan = {
        let scratch = scratch
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap_or_else(std::env::temp_dir);
        let mtime = opts.mtime;
        async move {
            if locals.is_empty() {
                return Ok(None);
            }
            tokio::task::spawn_blocking(move || {
                crate::connected::pack::plan_local(&locals, &scratch, mtime)
            })
            .await
            .map_err(|e| MirrorError::Scratch(io::Error::other(e)))?
            .map(Some)
            .map_err(MirrorError::from)
        }
    };
    reporter.start("resolving images", 0);
    let remote_wanted: Vec<&Wanted> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Registry(w) => Some(&**w),
            _ => None,
        })
        .collect();
    let registry_resolved = stream::iter(remote_wanted)
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
        .try_collect::<Vec<Resolved>>();
    let (registry_resolved, local_plan) =
        futures_util::future::join(registry_resolved, local_plan).await;
    reporter.finish();
    let mut registry_resolved = registry_resolved?.into_iter();
    let local_plan = local_plan?;
    if let Some(p) = &local_plan {
        for note in &p.notes {
            reporter.note(note);
        }
    }
    let mut local_resolved = match local_plan {
        Some(p) => resolve_local(p)?.into_iter(),
        None => Vec::new().into_iter(),
    };
    // Back in spec order.
    let mut resolved = Vec::new();
    for s in &slots {
        let next = match s {
            Slot::Registry(_) => registry_resolved.next(),
            _ => local_resolved.next(),
        };
        resolved.extend(next);
    }
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

    // Referrers, found at the source as `pack` finds them; those whose
    // subject travels are carried. Then the spec's `verify:` rules, checked
    // before anything is pushed.
    let pulled = Pulled::default();
    let found = find_referrers(&resolved, &remotes, &pulled, opts, reporter).await?;
    let carried = carry_referrers(&resolved, found, &pulled, reporter)?;
    let signatures = check_signatures(
        &spec, opts, &resolved, &carried, &pulled, &remotes, reporter,
    )
    .await?;

    // The plan: every blob once, with the target repositories that need
    // it and one source to read it from.
    let mut items = Vec::new();
    let mut jobs: Vec<BlobJob> = Vec::new();
    let mut index: HashMap<Digest, usize> = HashMap::new();
    let mut sources: HashMap<Digest, BlobFrom> = HashMap::new();
    let repositories: Vec<String> = targets.iter().map(|t| t.repository.clone()).collect();
    // A referrer's blobs go where its image goes, read from its source.
    let referrer_blobs: Vec<Vec<Descriptor>> = resolved
        .iter()
        .enumerate()
        .map(|(i, _)| {
            carried
                .iter()
                .filter(|c| c.artifact == i)
                .flat_map(|c| c.found.blobs.iter().cloned())
                .collect()
        })
        .collect();
    for ((t, r), more) in targets.into_iter().zip(&resolved).zip(&referrer_blobs) {
        let mut blobs: Vec<Digest> = r.blobs.iter().map(|b| b.digest).collect();
        blobs.sort();
        blobs.dedup();
        for b in r.blobs.iter().chain(more) {
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
            if sources.contains_key(&b.digest) {
                continue;
            }
            match (&r.local, remotes.get(&r.host)) {
                (Some(local), _) => {
                    if let Some(f) = local.get(&b.digest) {
                        sources.insert(b.digest, BlobFrom::Local(f.clone()));
                    }
                }
                (None, Some(remote)) => {
                    sources.insert(
                        b.digest,
                        BlobFrom::Registry(remote.clone(), r.repository.clone()),
                    );
                }
                (None, None) => {}
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
    let total: u64 = jobs.iter().map(|j| j.size).fold(0, u64::saturating_add);
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
    let reader = SourceReader {
        sources,
        target: target.host.clone(),
        failures: Arc::default(),
    };
    // A blob that could not be read at its source fails for that reason,
    // named first, not as the upload its body was feeding.
    let explain = |job: &BlobJob, e: String| reader.explain(&job.digest, e);
    let phase = push::push_blobs(&remote, &reader, &jobs, push_opts, &tally, &sent, &explain);
    let BlobPhase { results, .. } = with_progress(phase, &sent, reporter).await;
    reporter.finish();
    let failed_blobs: HashMap<Digest, String> = results
        .into_iter()
        .filter_map(|(d, r)| r.err().map(|e| (d, e)))
        .collect();

    reporter.start("Pushing manifests", 0);
    let errors = push::push_manifests(&remote, &items, &failed_blobs, push_opts, &tally).await;
    // Referrers after their subjects, by depth, as `load` pushes them.
    let mut referrers = Vec::new();
    let depth = carried.iter().map(|c| c.level + 1).max().unwrap_or(0);
    for level in 0..depth {
        let phase: Vec<&Carried> = carried.iter().filter(|c| c.level == level).collect();
        let pushes: Vec<ReferrerPush> = phase
            .iter()
            .map(|c| ReferrerPush {
                repository: repositories[c.artifact].clone(),
                subject: c.found.subject,
                documents: c.documents.clone(),
                blobs: c.blobs.clone(),
                listed: c.listed.clone(),
                has_subject: c.has_subject,
                tag: c.found.tag.clone(),
            })
            .collect();
        let results =
            referrer_push::push_referrers(&remote, &pushes, &failed_blobs, push_opts, &tally).await;
        for ((c, p), o) in phase.iter().zip(&pushes).zip(results) {
            referrers.push(ReferrerOutcome {
                kind: c.found.kind,
                digest: c.found.root.digest,
                subject: c.found.subject,
                target: format!("{}/{}", target.host, p.repository),
                tag: c.found.tag.clone(),
                ok: o.error.is_none(),
                error: o.error,
                notes: o.notes,
            });
        }
    }
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
    drop(scratch);
    Ok(MirrorReport {
        registry: target.host.clone(),
        dry_run: opts.dry_run,
        tags: tags.into_iter().map(Into::into).collect(),
        artifacts,
        referrers,
        signatures,
        chart_images,
        counts,
        uploaded,
        model,
    })
}

/// The spec as it is mirrored, as `pack` prepares it: with a lock file,
/// what it locked (every locked tag checked not to have moved); else each
/// entry with `tags:` expanded to the tags its rule chooses now. Returns
/// the spec, each image's pinned digest, each chart's pinned archive
/// digest, and the tags chosen.
#[allow(clippy::type_complexity)]
async fn prepare(
    spec: &Spec,
    opts: &MirrorOptions,
    reporter: &dyn Reporter,
) -> Result<
    (
        Spec,
        Vec<Option<Digest>>,
        Vec<Option<Digest>>,
        Vec<ChosenTags>,
    ),
    MirrorError,
> {
    if let Some(lock) = &opts.lock {
        let locked = crate::connected::lock::apply(spec, lock)?;
        reporter.start("checking locked tags", 0);
        let checked = crate::connected::lock::check_moved(&locked, &opts.remote).await;
        reporter.finish();
        checked?;
        return Ok((
            locked.spec,
            locked.image_pins,
            locked.chart_pins,
            locked.tags,
        ));
    }
    let chart_pins = vec![None; spec.charts.len()];
    if !crate::connected::tags::has_rules(spec) {
        return Ok((
            spec.clone(),
            vec![None; spec.images.len()],
            chart_pins,
            Vec::new(),
        ));
    }
    reporter.start("choosing tags", 0);
    let chosen = crate::connected::tags::choose_all(spec, &opts.remote).await;
    reporter.finish();
    let chosen = chosen?;
    let expanded = crate::connected::tags::expand(spec, &chosen);
    let pins = vec![None; expanded.images.len()];
    Ok((
        expanded,
        pins,
        chart_pins,
        chosen.into_iter().flatten().collect(),
    ))
}

/// What the spec asks to mirror, in spec order: its images (from
/// registries and local sources), its charts (OCI, from Helm
/// repositories, from files), then its files.
fn wanted(
    spec: &Spec,
    pins: &[Option<Digest>],
    chart_pins: &[Option<Digest>],
    opts: &MirrorOptions,
) -> Result<Vec<Slot>, MirrorError> {
    let filter_of = |entry: &ImageEntry| {
        opts.platforms
            .as_ref()
            .or(entry.platforms.as_ref())
            .or(spec.platforms.as_ref())
            .cloned()
    };
    // As `pack` decides: not with `--no-referrers`, else the entry's
    // `referrers:`, else the spec's, else yes.
    let wants_referrers = |entry: Option<&ImageEntry>| {
        opts.referrers
            && entry
                .and_then(|e| e.referrers)
                .or(spec.referrers)
                .unwrap_or(true)
    };
    let mut out = Vec::new();
    for (i, e) in spec.images.iter().enumerate() {
        out.push(match &e.source {
            ImageSource::Registry(r) => Slot::Registry(Box::new(Wanted {
                label: e.source.to_string(),
                reference: r.clone(),
                pin: pins.get(i).copied().flatten(),
                filter: filter_of(e),
                name: Some(match &e.name {
                    Some(n) => n.to_string(),
                    None => r.to_string(),
                }),
                chart: false,
                referrers: wants_referrers(Some(e)),
            })),
            ImageSource::OciDir { .. }
            | ImageSource::OciArchive { .. }
            | ImageSource::DockerArchive { .. } => Slot::Local(LocalEntry::Image {
                entry: Box::new(e.clone()),
                filter: filter_of(e),
            }),
        });
    }
    for (j, c) in spec.charts.iter().enumerate() {
        out.push(match c {
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
                Slot::Registry(Box::new(Wanted {
                    label: format!("chart {label}"),
                    reference: parsed,
                    pin: None,
                    filter: None,
                    name: None,
                    chart: true,
                    referrers: wants_referrers(None),
                }))
            }
            ChartEntry::Path { path, .. } => Slot::Local(LocalEntry::Chart {
                path: path.clone(),
                label: path.display().to_string(),
            }),
            ChartEntry::Repo {
                repo,
                name,
                version,
                ..
            } => Slot::RepoChart {
                repo: repo.clone(),
                name: name.clone(),
                version: version.clone(),
                pin: chart_pins.get(j).copied().flatten(),
            },
        });
    }
    out.extend(
        spec.files
            .iter()
            .cloned()
            .map(LocalEntry::File)
            .map(Slot::Local),
    );
    Ok(out)
}

/// The images named by the spec's charts with `images: true` (their
/// `artifacthub.io/images` and `image:` values, read by pack's own
/// reader), appended to `slots` as registry images when the spec does not
/// list them already, with the spec's platforms, as `pack` carries them.
/// A chart at a registry is read by pulling its chart archive (bounded by
/// [`CHART_MAX_BYTES`]) into memory; a chart file or a downloaded one from
/// its file.
async fn add_chart_images(
    spec: &Spec,
    slots: &mut Vec<Slot>,
    opts: &MirrorOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<ChartImageReport>, MirrorError> {
    let first_chart = spec.images.len();
    let mut report = Vec::new();
    let mut found: Vec<(String, String)> = Vec::new();
    for (j, c) in spec.charts.iter().enumerate() {
        let wanted = match c {
            ChartEntry::Oci { images, .. }
            | ChartEntry::Path { images, .. }
            | ChartEntry::Repo { images, .. } => *images,
        };
        if !wanted {
            continue;
        }
        let images = match slots.get(first_chart + j) {
            Some(Slot::Local(LocalEntry::Chart { path, label })) => {
                crate::connected::chart::chart_images(path).map_err(|e| MirrorError::Resolve {
                    entry: format!("chart {label}"),
                    source: Box::new(e),
                })?
            }
            Some(Slot::Registry(w)) if w.chart => {
                reporter.start(&format!("reading {}", w.label), 0);
                let bytes = pull_chart_archive(w, opts).await;
                reporter.finish();
                let bytes = bytes?;
                crate::connected::chart::chart_images_in(
                    Path::new(&w.reference.to_string()),
                    io::Cursor::new(bytes),
                )
                .map_err(|e| MirrorError::Resolve {
                    entry: w.label.clone(),
                    source: Box::new(e),
                })?
            }
            _ => continue,
        };
        let label = match c {
            ChartEntry::Oci {
                reference, version, ..
            } => format!("{reference}:{version}"),
            ChartEntry::Path { path, .. } => path.display().to_string(),
            ChartEntry::Repo { name, version, .. } => format!("{name}:{version}"),
        };
        for img in images {
            let origin = format!("{label}: {}", img.origin);
            let Ok(r) = img.reference.parse::<Reference>() else {
                continue;
            };
            report.push(ChartImageReport {
                reference: r.to_string(),
                origin: origin.clone(),
            });
            found.push((r.to_string(), origin));
        }
    }
    let listed = crate::connected::pack::listed_images(spec);
    let mut added = std::collections::HashSet::new();
    for (reference, origin) in found {
        if listed.contains(&reference) || !added.insert(reference.clone()) {
            continue;
        }
        let Ok(r) = reference.parse::<Reference>() else {
            continue;
        };
        slots.push(Slot::Registry(Box::new(Wanted {
            label: format!("{reference} (named by {origin})"),
            reference: r,
            pin: None,
            filter: opts.platforms.as_ref().or(spec.platforms.as_ref()).cloned(),
            name: Some(reference),
            chart: false,
            referrers: opts.referrers && spec.referrers.unwrap_or(true),
        })));
    }
    Ok(report)
}

/// The most of a chart archive read into memory to list its images.
const CHART_MAX_BYTES: u64 = 64 << 20;

/// The chart archive (its content layer) of the OCI chart `w`.
async fn pull_chart_archive(w: &Wanted, opts: &MirrorOptions) -> Result<Vec<u8>, MirrorError> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| MirrorError::Resolve {
        entry: w.label.clone(),
        source,
    };
    let remote = Remote::connect(w.reference.registry(), &opts.remote)
        .await
        .map_err(|e| fail(Box::new(e)))?;
    let repo = w.reference.repository();
    let tag = w.reference.tag().unwrap_or("latest");
    let (bytes, digest) = remote
        .pull_manifest(repo, tag)
        .await
        .map_err(|e| fail(Box::new(e)))?;
    let layer = match oci::parse_node(digest, oci::OCI_MANIFEST, &bytes) {
        Ok(Node::Manifest(m)) => m
            .layers
            .into_iter()
            .find(|l| l.media_type == oci::HELM_CHART),
        _ => None,
    }
    .ok_or_else(|| {
        fail(
            format!(
                "{digest} is not a Helm chart (no {} layer)",
                oci::HELM_CHART
            )
            .into(),
        )
    })?;
    if layer.size > CHART_MAX_BYTES {
        return Err(fail(
            format!(
                "its chart archive {} is {} bytes, over the {CHART_MAX_BYTES} read to list its images",
                layer.digest, layer.size
            )
            .into(),
        ));
    }
    // No more than the descriptor declares (a body past it is refused).
    pull_small(&remote, repo, &layer, layer.size)
        .await
        .map_err(|e| fail(Box::new(e)))
}

/// Downloads each chart from a Helm repository into `scratch` (as `pack`
/// downloads it into its cache), checks a lock file's digest, and makes it
/// a local chart file.
async fn fetch_repo_charts(
    slots: &mut [Slot],
    scratch: &Path,
    opts: &MirrorOptions,
    reporter: &dyn Reporter,
) -> Result<(), MirrorError> {
    if !slots.iter().any(|s| matches!(s, Slot::RepoChart { .. })) {
        return Ok(());
    }
    reporter.start("fetching charts", 0);
    let mut result = Ok(());
    for slot in slots.iter_mut() {
        let Slot::RepoChart {
            repo,
            name,
            version,
            pin,
        } = slot
        else {
            continue;
        };
        let fetched =
            crate::connected::helm_repo::fetch_chart(repo, name, version, scratch, &opts.remote)
                .await;
        let c = match fetched {
            Ok(c) => c,
            Err(source) => {
                result = Err(MirrorError::RepoChart {
                    entry: format!("{name} from {repo}"),
                    source,
                });
                break;
            }
        };
        if let Some(locked) = pin.filter(|p| *p != c.digest) {
            result = Err(LockError::ChartMoved {
                repo: repo.clone(),
                name: name.clone(),
                version: c.version,
                locked,
                now: c.digest,
            }
            .into());
            break;
        }
        // The label `pack` gives it (the artifact's `source`).
        let label = format!("chart {name} {} from {repo}", c.version);
        *slot = Slot::Local(LocalEntry::Chart {
            path: c.path,
            label,
        });
    }
    reporter.finish();
    result
}

/// The local artifacts planned, each with its documents (children first,
/// read from where the plan found them, each checked against its digest)
/// and its blobs.
fn resolve_local(plan: LocalPlan) -> Result<Vec<Resolved>, MirrorError> {
    let blobs = Arc::new(plan.blobs);
    let mut out = Vec::new();
    for (artifact, root) in plan.artifacts {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| MirrorError::Resolve {
            entry: artifact.source.clone(),
            source,
        };
        let (documents, found) = walk(&root, &mut |d| {
            let b = blobs
                .get(d)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not planned"))?;
            if b.size > oci::MANIFEST_MAX_BYTES {
                return Err(io::Error::other(format!(
                    "document {d} is {} bytes, more than {}",
                    b.size,
                    oci::MANIFEST_MAX_BYTES
                )));
            }
            let mut buf = vec![0u8; b.size as usize];
            b.read_at(0, &mut buf)?;
            Ok(buf)
        })
        .map_err(|e| fail(Box::new(e)))?;
        out.push(Resolved {
            artifact,
            host: String::new(),
            repository: String::new(),
            documents,
            blobs: found,
            local: Some(blobs.clone()),
            subjects: Vec::new(),
            referrers: false,
        });
    }
    Ok(out)
}

/// The walk `load` makes from `root`: documents children first (read by
/// `read`, each checked against its digest), and every blob.
fn walk(
    root: &Descriptor,
    read: &mut dyn FnMut(&Digest) -> io::Result<Vec<u8>>,
) -> Result<(Vec<Document>, Vec<Descriptor>), WalkError> {
    let mut documents = Vec::new();
    let mut blobs = Vec::new();
    oci::walk_graph(&root.media_type, &root.digest, read, &mut |v| {
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
    })?;
    Ok((documents, blobs))
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
    let mut subjects = vec![digest];
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
        subjects.push(d.digest);
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
            let bytes = pull_small(remote, repo, &c, source::CONFIG_MAX)
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
            let bytes = pull_small(remote, repo, &c, source::CONFIG_MAX)
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
    let (documents, blobs) = walk(&root, &mut |d| {
        docs.get(d)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not pulled"))
    })
    .map_err(|e| fail(Box::new(e)))?;
    platforms.sort();
    platforms.dedup();
    let mut seen = HashSet::new();
    // Sizes come from the source: summed without overflow.
    let size = blobs
        .iter()
        .filter(|b| seen.insert(b.digest))
        .map(|b| b.size)
        .chain(documents.iter().map(|d| d.bytes.len() as u64))
        .fold(0u64, u64::saturating_add);
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
        local: None,
        subjects,
        referrers: w.referrers,
    })
}

/// Finds the referrers of each registry artifact that wants them, at its
/// source, as `pack` finds them (`referrers::discover`), keeping their
/// documents in `pulled`. Returns each artifact's, in artifact order.
async fn find_referrers(
    resolved: &[Resolved],
    remotes: &HashMap<String, Arc<Remote>>,
    pulled: &Pulled,
    opts: &MirrorOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<Vec<Found>>, MirrorError> {
    if !resolved.iter().any(|r| r.referrers) {
        return Ok(vec![Vec::new(); resolved.len()]);
    }
    reporter.start("finding referrers", 0);
    let no_api = NoApi::default();
    let found: Vec<Result<Vec<Found>, MirrorError>> = stream::iter(resolved)
        .map(|r| {
            let remote = remotes.get(&r.host).cloned();
            let no_api = &no_api;
            async move {
                let (Some(remote), true) = (remote, r.referrers) else {
                    return Ok(Vec::new());
                };
                let mut asked = Asked::default();
                crate::connected::referrers::discover(
                    &remote,
                    pulled,
                    &r.repository,
                    &r.subjects,
                    no_api,
                    &mut asked,
                )
                .await
                .map_err(|e| MirrorError::Resolve {
                    entry: r.artifact.source.clone(),
                    source: format!("finding referrers: {e}").into(),
                })
            }
        })
        .buffered(opts.jobs.clamp(1, 8))
        .collect()
        .await;
    reporter.finish();
    found.into_iter().collect()
}

/// The referrers that travel, with `pack`'s rule: each whose subject is
/// carried (a document of its image, or a referrer carried before it);
/// those of a document a platform filter replaced stay behind, and a
/// warning says so.
fn carry_referrers(
    resolved: &[Resolved],
    found: Vec<Vec<Found>>,
    pulled: &Pulled,
    reporter: &dyn Reporter,
) -> Result<Vec<Carried>, MirrorError> {
    let mut out: Vec<Carried> = Vec::new();
    let mut taken: HashSet<Digest> = resolved.iter().map(|r| r.artifact.digest).collect();
    for (i, (r, found)) in resolved.iter().zip(found).enumerate() {
        let mut carried: HashSet<Digest> = r
            .documents
            .iter()
            .map(|d| d.digest)
            .chain(r.blobs.iter().map(|b| b.digest))
            .collect();
        let mut level_of: HashMap<Digest, usize> = HashMap::new();
        let mut left: Vec<Found> = Vec::new();
        for f in found {
            if !carried.contains(&f.subject) {
                left.push(f);
                continue;
            }
            if !taken.insert(f.root.digest) {
                continue;
            }
            let fail = |e: String| MirrorError::Resolve {
                entry: r.artifact.source.clone(),
                source: format!("referrer {} (of {}): {e}", f.root.digest, f.subject).into(),
            };
            let (documents, blobs) = walk(&f.root, &mut |d| {
                pulled
                    .get(d)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not pulled"))
            })
            .map_err(|e| fail(error_chain(&e)))?;
            let Some(root) = documents.last() else {
                continue;
            };
            // What a referrers list says of it comes from its manifest.
            let node = oci::parse_node(root.digest, &root.media_type, &root.bytes)
                .map_err(|e| fail(error_chain(&e)))?;
            let artifact_type = node.artifact_type();
            let (subject_field, annotations) = match node {
                Node::Manifest(m) => (m.subject, m.annotations),
                Node::Index(x) => (x.subject, x.annotations),
            };
            let mut listed =
                Descriptor::new(&root.media_type, root.digest, root.bytes.len() as u64);
            listed.artifact_type = artifact_type;
            listed.annotations = annotations;
            let level = level_of.get(&f.subject).map_or(0, |l| l + 1);
            level_of.insert(f.root.digest, level);
            carried.extend(documents.iter().map(|d| d.digest));
            let mut digests: Vec<Digest> = blobs.iter().map(|b| b.digest).collect();
            digests.sort();
            digests.dedup();
            out.push(Carried {
                has_subject: subject_field.is_some_and(|s| s.digest == f.subject),
                found: f,
                artifact: i,
                documents,
                blobs: digests,
                listed,
                level,
            });
        }
        if !left.is_empty() {
            let subjects: std::collections::BTreeSet<String> =
                left.iter().map(|f| f.subject.to_string()).collect();
            reporter.note(&format!(
                "warning: {}: {} made for {} are not carried: the mirror carries {} instead (a platform filter made a new document), which they do not cover. Keep all platforms, or sign each platform's manifest",
                r.artifact.reference,
                crate::format::bundle::count_kinds(left.iter().map(|f| f.kind)),
                subjects.into_iter().collect::<Vec<_>>().join(", "),
                r.artifact.digest
            ));
        }
    }
    Ok(out)
}

/// Checks the spec's `verify:` rules as `pack` does (`format::cosign`
/// over the referrers carried), before anything is pushed: an image
/// without a good signature stops the mirror.
async fn check_signatures(
    spec: &Spec,
    opts: &MirrorOptions,
    resolved: &[Resolved],
    carried: &[Carried],
    pulled: &Pulled,
    remotes: &HashMap<String, Arc<Remote>>,
    reporter: &dyn Reporter,
) -> Result<Vec<SignatureCheck>, MirrorError> {
    // Images come first, in spec order. An image's own `verify:` rule
    // wins over `--cosign-key`, as in `pack`.
    let cli_key = opts.cosign_key.as_deref();
    let mut wanted: Vec<(usize, Option<&crate::connected::inputs::VerifyRule>)> = spec
        .images
        .iter()
        .enumerate()
        .filter(|(_, e)| e.verify.is_some() || cli_key.is_some())
        .map(|(i, e)| (i, e.verify.as_ref()))
        .collect();
    // The images charts name come after the spec's entries.
    if cli_key.is_some() {
        let named = spec.images.len() + spec.charts.len() + spec.files.len();
        wanted.extend((named..resolved.len()).map(|i| (i, None)));
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    reporter.start("checking signatures", 0);
    let limit = crate::format::cosign::PAYLOAD_MAX_BYTES.max(oci::MANIFEST_MAX_BYTES);
    let mut out = Vec::new();
    for (i, rule) in wanted {
        let Some(r) = resolved.get(i) else { continue };
        let image = r.artifact.reference.clone();
        let Some((policy, trust)) = crate::connected::pack::policy_of(rule, cli_key, &image)?
        else {
            continue;
        };
        let subject = r.artifact.digest;
        // An index the platform filter made: its kept children, each of
        // which may carry its own signature.
        let children: Vec<Digest> = match r.artifact.source_digest {
            Some(_) => r
                .documents
                .last()
                .and_then(|d| oci::parse_node(d.digest, &d.media_type, &d.bytes).ok())
                .map(|n| match n {
                    Node::Index(x) => x.manifests.iter().map(|m| m.digest).collect(),
                    Node::Manifest(_) => Vec::new(),
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mine: Vec<&Carried> = carried.iter().filter(|c| c.artifact == i).collect();
        // The small blobs of the candidate signatures, pulled now (by
        // digest, checked): what the check reads.
        let mut blobs: HashMap<Digest, Vec<u8>> = HashMap::new();
        if let Some(remote) = remotes.get(&r.host) {
            for c in mine
                .iter()
                .filter(|c| c.found.subject == subject || children.contains(&c.found.subject))
            {
                for b in c.found.blobs.iter().filter(|b| b.size <= limit) {
                    if blobs.contains_key(&b.digest) {
                        continue;
                    }
                    let bytes = pull_small(remote, &r.repository, b, limit)
                        .await
                        .map_err(|e| MirrorError::Resolve {
                            entry: r.artifact.source.clone(),
                            source: Box::new(e),
                        })?;
                    blobs.insert(b.digest, bytes);
                }
            }
        }
        let candidates_of = |d: &Digest| -> Vec<(Digest, Vec<u8>)> {
            mine.iter()
                .filter(|c| c.found.subject == *d)
                .filter_map(|c| {
                    pulled
                        .get(&c.found.root.digest)
                        .map(|b| (c.found.root.digest, b))
                })
                .collect()
        };
        let mut read_blob = |d: &Descriptor| {
            blobs
                .get(&d.digest)
                .cloned()
                .or_else(|| pulled.get(&d.digest))
                .ok_or_else(|| {
                    crate::format::cosign::CosignError::read(
                        d.digest,
                        io::Error::new(io::ErrorKind::NotFound, "not pulled"),
                    )
                })
        };
        match crate::format::cosign::verify_image(
            &subject,
            &children,
            &candidates_of,
            &policy,
            &mut read_blob,
        ) {
            Ok(v) => out.push(SignatureCheck {
                image,
                signature: v.signature_digest,
                form: v.form.as_str(),
                key_file: match &policy.trust {
                    crate::format::cosign::Trust::Key(_) => Path::new(&trust)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned()),
                    crate::format::cosign::Trust::Ca(_) => None,
                },
                signer: v.signer.clone(),
                docker_reference: v.docker_reference.clone(),
                checked_at: None,
            }),
            Err(source) => {
                reporter.finish();
                let hint = match r.artifact.source_digest {
                    Some(src) => format!(
                        " (the mirror carries {subject}, a new index the platform filter made from {src}, which no signature covers: keep all platforms, or sign each platform's manifest)"
                    ),
                    None => String::new(),
                };
                return Err(PackError::Signature {
                    image,
                    trust,
                    source,
                    hint,
                }
                .into());
            }
        }
    }
    reporter.finish();
    Ok(out)
}

/// A small blob (a config) pulled into memory, checked against its digest.
async fn pull_small(
    remote: &Remote,
    repo: &str,
    d: &Descriptor,
    limit: u64,
) -> Result<Vec<u8>, RemoteError> {
    let out = Mutex::new(Vec::new());
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

/// The sources as the source of blob bodies. A blob from a registry: each
/// attempt GETs it as a stream and passes it through [`pump`] on a
/// blocking thread, which hashes as the bytes pass and holds the last
/// chunk back until the digest matched; nothing touches the disk. A local
/// blob: read from its file (or memory) through the same pump.
struct SourceReader {
    /// Where each blob is read from.
    sources: HashMap<Digest, BlobFrom>,
    /// The target host, for messages.
    target: String,
    /// Why reading a blob at its source failed, last attempt's reason.
    failures: Arc<Mutex<HashMap<Digest, String>>>,
}

impl SourceReader {
    /// `upload_error` for blob `d`, or, when reading it at its source
    /// failed, that reason (the upload it fed was abandoned unfinished).
    fn explain(&self, d: &Digest, upload_error: String) -> String {
        let failed = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(d)
            .cloned();
        match failed {
            Some(why) => format!(
                "cannot read blob {d} from {}: {why}; nothing of it was committed to {}",
                self.from(d),
                self.target
            ),
            None => upload_error,
        }
    }

    fn from(&self, d: &Digest) -> String {
        match self.sources.get(d) {
            Some(BlobFrom::Registry(r, repo)) => format!("{}/{repo}", r.host()),
            Some(BlobFrom::Local(f)) => match &f.source {
                MemberSource::File { path, .. } => path.display().to_string(),
                MemberSource::Bytes(_) => "memory".to_owned(),
            },
            None => String::new(),
        }
    }
}

impl BlobReader for SourceReader {
    fn open(
        &self,
        digest: Digest,
        size: u64,
        corrupt: &Arc<AtomicBool>,
        sent: &Arc<AtomicU64>,
    ) -> BlobBody {
        // A new attempt: an earlier one's reason no longer holds.
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest);
        let (remote, repo) = match self.sources.get(&digest).cloned() {
            Some(BlobFrom::Registry(remote, repo)) => (remote, repo),
            Some(BlobFrom::Local(found)) => {
                let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
                let (corrupt, sent) = (corrupt.clone(), sent.clone());
                let from = self.from(&digest);
                let failures = self.failures.clone();
                tokio::task::spawn_blocking(move || {
                    let mut r: Box<dyn io::Read> = match &found.source {
                        MemberSource::Bytes(b) => Box::new(io::Cursor::new(b.clone().to_vec())),
                        MemberSource::File { path, offset } => {
                            use std::io::{Read, Seek};
                            let f = fs_err::File::open(path).and_then(|mut f| {
                                f.seek(io::SeekFrom::Start(*offset))?;
                                Ok(f)
                            });
                            match f {
                                Ok(f) => Box::new(f.take(size)),
                                Err(e) => {
                                    failures
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .insert(digest, error_chain(&e));
                                    let _ = tx.blocking_send(Err(e));
                                    return;
                                }
                            }
                        }
                    };
                    pump(&mut r, size, digest, &from, &tx, &corrupt, &sent);
                });
                return body_of(rx);
            }
            None => {
                return stream::once(async move {
                    Err(io::Error::other(format!("blob {digest} has no source")))
                })
                .boxed()
            }
        };
        let (raw_tx, raw_rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(8);
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
        let from = format!("{}/{repo}", remote.host());
        // The download: one GET (retried until a body starts), its chunks
        // handed on as they come. A body that breaks off ends the attempt;
        // the upload's retry opens a new one.
        let failures = self.failures.clone();
        let failed_with = move |why: String| {
            failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(digest, why);
        };
        tokio::spawn(async move {
            let mut body = match remote.blob_stream(&repo, &digest).await {
                Ok(b) => b,
                Err(e) => {
                    failed_with(error_chain(&e));
                    let _ = raw_tx.send(Err(io::Error::other(error_chain(&e)))).await;
                    return;
                }
            };
            let mut got = 0u64;
            let (mut receiver_gone, mut broke) = (false, false);
            while let Some(c) = body.next().await {
                // A registry that ignored the range sent a body the client
                // checks at its end; with every byte handed on, ferry's own
                // hash judges them (and names the damage).
                if c.is_err() && got == size {
                    break;
                }
                if let Err(e) = &c {
                    failed_with(format!(
                        "the download broke off after {got} of {size} bytes: {}",
                        error_chain(e)
                    ));
                }
                let failed = c.is_err();
                broke |= failed;
                got += c.as_ref().map_or(0, |b| b.len() as u64);
                if raw_tx.send(c).await.is_err() {
                    receiver_gone = true;
                    break;
                }
                if failed {
                    break;
                }
            }
            if got < size && !receiver_gone && !broke {
                failed_with(format!("the source sent {got} of its {size} bytes"));
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
        let from = self.from(d);
        format!(
            "blob {d} from {from} does not match its digest (damaged in transit); it was not committed to {}",
            self.target
        )
    }
}
