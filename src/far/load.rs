//! Loading a bundle into a registry straight from the archive: no
//! extraction, every blob re-hashed on its way out, blobs before the
//! manifests that need them, manifests as their raw bytes.
//!
//! The plan is made before the first request: targets (collisions are
//! refused), each artifact's documents in children-first order, and the
//! set of repositories each blob must reach. Then the push itself is
//! [`shared::push`](crate::shared::push)'s: one bounded pool over *blobs*
//! across all artifacts (HEAD, mount, upload), then manifests, HEAD
//! first, so a re-run after an interruption pushes only what is missing
//! and a repeated load pushes nothing. This module gives it the blobs'
//! bodies from the archive (positioned reads, or for a compressed archive
//! one ordered pass after the pool). One artifact's failure does not stop
//! the others.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::base::report::Reporter;
use crate::format::archive::{Archive, ArchiveError, Entry};
use crate::format::bundle::{Artifact, Bundle};
use crate::format::oci::{self, Visit, WalkError};
use crate::shared::mapping::{MappingError, TargetRegistry};
use crate::shared::push::{
    self, body_of, pump, BlobJob, BlobPhase, BlobReader, Document, PushItem, PushOptions, Tally,
};
use crate::shared::referrer_push::{self, ReferrerPush};
use crate::shared::remote::{BlobBody, Remote, RemoteError, RemoteOptions};

/// Errors that stop a load before anything is pushed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The archive is unreadable or damaged.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Target naming failed (bad registry, collision).
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// An artifact's graph is incomplete in the archive.
    #[error(
        "{archive}: artifact {artifact} cannot be loaded (run `ferry verify` for a full report)"
    )]
    Graph {
        /// The archive.
        archive: PathBuf,
        /// The artifact's reference.
        artifact: String,
        /// What is wrong.
        #[source]
        source: WalkError,
    },
    /// The signature of bundle.json is missing or wrong.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
    /// The registry client could not be set up (CA file, docker config).
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `HOST[:PORT][/PREFIX]`.
    pub registry: String,
    /// Keep the source host as the first path component.
    pub keep_host: bool,
    /// Blobs in flight at once.
    pub jobs: usize,
    /// Check the registry and report what would be pushed; push nothing.
    pub dry_run: bool,
    /// Move tags that already point to other content.
    pub force: bool,
    /// Transport, credentials and retries.
    pub remote: RemoteOptions,
    /// Require a signature of bundle.json by this minisign public key,
    /// checked on the archive as opened, before anything is pushed.
    pub key: Option<PathBuf>,
}

/// What happened to one artifact.
pub use crate::shared::push::ArtifactOutcome;

/// What happened to one referrer in one repository.
pub use crate::shared::referrer_push::ReferrerReport as ReferrerOutcome;

/// Counts for one run.
pub use crate::shared::push::PushCounts as LoadCounts;

/// The result of a load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The archive.
    pub archive: PathBuf,
    /// The registry host.
    pub registry: String,
    /// Whether nothing was pushed.
    pub dry_run: bool,
    /// Per artifact, in bundle order.
    pub artifacts: Vec<ArtifactOutcome>,
    /// Per referrer and repository, in bundle order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<ReferrerOutcome>,
    /// Counts.
    pub counts: LoadCounts,
    /// Digests of the blobs uploaded (sorted), so a re-run can be checked.
    pub uploaded: Vec<Digest>,
    /// With a key: the trusted comment of the signature checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl LoadReport {
    /// Whether every artifact and referrer is in place.
    pub fn is_ok(&self) -> bool {
        self.artifacts.iter().all(|a| a.ok) && self.referrers.iter().all(|r| r.ok)
    }

    /// The bundle restricted to the artifacts that are in place, for maps.
    pub fn loaded_bundle(&self, bundle: &Bundle) -> Bundle {
        let ok: HashSet<&str> = self
            .artifacts
            .iter()
            .filter(|a| a.ok)
            .map(|a| a.source.as_str())
            .collect();
        let mut b = bundle.clone();
        b.artifacts.retain(|a| ok.contains(a.reference.as_str()));
        b
    }
}

/// One artifact's share of the plan.
struct Item {
    artifact: Artifact,
    push: PushItem,
}

/// The archive as the source of blob bodies: each blob is read from its
/// member on a blocking thread, through the verifying reader.
struct ArchiveReader {
    archive: Arc<Archive>,
    locations: HashMap<Digest, Entry>,
}

impl BlobReader for ArchiveReader {
    fn open(
        &self,
        digest: Digest,
        _size: u64,
        corrupt: &Arc<AtomicBool>,
        sent: &Arc<AtomicU64>,
    ) -> BlobBody {
        match self.locations.get(&digest) {
            Some(entry) => blob_body(&self.archive, entry, digest, corrupt, sent),
            None => stream::once(async move {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("blob {digest} is not in the archive"),
                ))
            })
            .boxed(),
        }
    }

    fn deferred(&self) -> bool {
        self.archive.in_order_only()
    }

    fn damaged(&self, d: &Digest) -> String {
        damaged(d, self.archive.path())
    }
}

fn damaged(d: &Digest, archive: &Path) -> String {
    format!(
        "blob {d} in {} does not match its digest; it was not pushed (run `ferry verify`)",
        archive.display()
    )
}

/// Opens `archive`, plans, and loads it (or, with `dry_run`, reports what
/// a load would push). Errors returned stop everything before any push;
/// per-artifact failures are in the report.
pub async fn load(
    archive: &Path,
    opts: &LoadOptions,
    reporter: &dyn Reporter,
) -> Result<(LoadReport, Bundle), LoadError> {
    // A compressed archive is read twice in order: its head (the
    // documents) now, and everything else once, while uploading.
    let a = Arc::new(Archive::open_head(archive)?);
    let signature = a.check_key(opts.key.as_deref())?;
    // The roots pushed are bundle.json's artifacts, which index.json must
    // name: the same model verify checks.
    a.check_model()?;
    let target = TargetRegistry::parse(&opts.registry, opts.keep_host)?;
    let targets = target.rules.targets(&a.bundle.artifacts)?;
    let locations = a.blob_locations();
    // A delta's left-out blobs: the target must already hold them.
    let absent: HashMap<Digest, &crate::format::bundle::AbsentBlob> = a
        .bundle
        .delta
        .iter()
        .flat_map(|d| &d.absent)
        .map(|b| (b.digest, b))
        .collect();

    let mut items = Vec::new();
    for (t, art) in targets.into_iter().zip(&a.bundle.artifacts) {
        let (documents, blobs) = graph(&a, &locations, &absent, &art.media_type, &art.digest)
            .map_err(|source| LoadError::Graph {
                archive: archive.to_owned(),
                artifact: art.reference.clone(),
                source,
            })?;
        items.push(Item {
            artifact: art.clone(),
            push: PushItem {
                repository: t.repository,
                tag: t.tag,
                documents,
                blobs,
            },
        });
    }

    // Referrers go where their subjects go, by depth (a referrer of a
    // referrer after it).
    let referrer_plan = plan_referrers(&a, &locations, &absent, &items, archive)?;

    // Every blob once, with the repositories that need it, in plan order.
    let mut jobs: Vec<BlobJob> = Vec::new();
    let mut index: HashMap<Digest, usize> = HashMap::new();
    let needs = items
        .iter()
        .map(|it| (&it.push.repository, &it.push.blobs))
        .chain(
            referrer_plan
                .iter()
                .flatten()
                .map(|(_, p)| (&p.repository, &p.blobs)),
        );
    for (repository, blobs) in needs {
        for d in blobs {
            let i = *index.entry(*d).or_insert_with(|| {
                let entry = locations.get(d);
                let left_out = absent.get(d);
                jobs.push(BlobJob {
                    digest: *d,
                    size: entry
                        .map(|e| e.size)
                        .or(left_out.map(|a| a.size))
                        .unwrap_or(0),
                    carried: entry.is_some(),
                    mount_from: match (entry, left_out) {
                        (None, Some(a)) => a.repositories.clone(),
                        _ => Vec::new(),
                    },
                    repositories: Vec::new(),
                });
                jobs.len() - 1
            });
            if !jobs[i].repositories.contains(repository) {
                jobs[i].repositories.push(repository.clone());
            }
        }
    }

    let remote = Remote::connect(&target.host, &opts.remote).await?;
    // One request first: an unreachable registry or refused credentials
    // is one error, not one per blob.
    push::probe(&remote, &jobs).await?;
    let tally = Tally::for_jobs(&jobs);
    let sent = Arc::new(AtomicU64::new(0));
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    reporter.start(
        if opts.dry_run {
            "Checking blobs"
        } else {
            "Pushing blobs"
        },
        total,
    );
    let push_opts = PushOptions {
        jobs: opts.jobs,
        dry_run: opts.dry_run,
        force: opts.force,
    };
    let reader = ArchiveReader {
        archive: a.clone(),
        locations,
    };
    let explain = |job: &BlobJob, e: String| {
        match job.carried {
        true => e,
        false => format!(
            "{e}; blob {} was left out of this delta because {} held it: load that first, or pack without --have",
            job.digest,
            a.bundle.delta.as_ref().map(|d| d.base.as_str()).unwrap_or("its base")
        ),
    }
    };
    let blob_phase = push::push_blobs(&remote, &reader, &jobs, push_opts, &tally, &sent, &explain);
    let BlobPhase {
        results: mut blob_results,
        deferred,
    } = crate::base::report::with_progress(blob_phase, &sent, reporter).await;
    if !deferred.is_empty() {
        let streamed = upload_in_order(&remote, &reader, &jobs, &deferred, &tally, &sent);
        blob_results.extend(crate::base::report::with_progress(streamed, &sent, reporter).await);
    }
    reporter.finish();
    let failed_blobs: HashMap<Digest, String> = blob_results
        .into_iter()
        .filter_map(|(d, r)| r.err().map(|e| (d, e)))
        .collect();

    reporter.start("Pushing manifests", 0);
    let pushes: Vec<PushItem> = items.iter().map(|it| it.push.clone()).collect();
    let errors = push::push_manifests(&remote, &pushes, &failed_blobs, push_opts, &tally).await;
    let outcomes = items
        .iter()
        .zip(errors)
        .map(|(it, error)| ArtifactOutcome {
            kind: it.artifact.kind,
            source: it.artifact.reference.clone(),
            target: format!("{}/{}", target.host, it.push.repository),
            tag: it.push.tag.clone(),
            digest: it.artifact.digest,
            ok: error.is_none(),
            error,
        })
        .collect();
    let mut referrer_outcomes = Vec::new();
    for phase in &referrer_plan {
        let pushes: Vec<ReferrerPush> = phase.iter().map(|(_, p)| p.clone()).collect();
        let results =
            referrer_push::push_referrers(&remote, &pushes, &failed_blobs, push_opts, &tally).await;
        for ((r, p), o) in phase.iter().zip(results) {
            referrer_outcomes.push(ReferrerOutcome {
                kind: r.kind,
                digest: r.digest,
                subject: r.subject,
                target: format!("{}/{}", target.host, p.repository),
                tag: r.tag.clone(),
                ok: o.error.is_none(),
                error: o.error,
                notes: o.notes,
            });
        }
    }
    reporter.finish();

    let Tally {
        counts,
        mut uploaded,
        ..
    } = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    uploaded.sort();
    uploaded.dedup();
    Ok((
        LoadReport {
            archive: archive.to_owned(),
            registry: target.host.clone(),
            dry_run: opts.dry_run,
            artifacts: outcomes,
            referrers: referrer_outcomes,
            counts,
            uploaded,
            signature,
        },
        a.bundle.clone(),
    ))
}

/// A root's documents (children first) and its distinct blobs, sorted,
/// walked through the archive; a blob must be carried, or left out of a
/// delta (`absent`), at its declared size.
fn graph(
    a: &Archive,
    locations: &HashMap<Digest, Entry>,
    absent: &HashMap<Digest, &crate::format::bundle::AbsentBlob>,
    media_type: &str,
    digest: &Digest,
) -> Result<(Vec<Document>, Vec<Digest>), WalkError> {
    let mut documents = Vec::new();
    let mut blobs = Vec::new();
    oci::walk_graph(
        media_type,
        digest,
        &mut |d| read_document(a, locations, d),
        &mut |v| {
            match v {
                Visit::Blob(b) => {
                    let carried = locations.get(&b.digest).map(|e| e.size) == Some(b.size);
                    let left_out = absent.get(&b.digest).map(|a| a.size) == Some(b.size);
                    if !carried && !left_out {
                        return Err(WalkError::Blob(b.digest));
                    }
                    blobs.push(b.digest);
                }
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
    )?;
    blobs.sort();
    blobs.dedup();
    Ok((documents, blobs))
}

/// The referrers to push, in phases by depth: each into every repository
/// that holds its subject (an artifact's document, or a referrer placed
/// there before), with its documents and blobs from the archive.
#[allow(clippy::type_complexity)]
fn plan_referrers(
    a: &Archive,
    locations: &HashMap<Digest, Entry>,
    absent: &HashMap<Digest, &crate::format::bundle::AbsentBlob>,
    items: &[Item],
    archive: &Path,
) -> Result<Vec<Vec<(crate::format::bundle::Referrer, ReferrerPush)>>, LoadError> {
    let mut held: HashMap<&str, HashSet<Digest>> = HashMap::new();
    for it in items {
        held.entry(it.push.repository.as_str())
            .or_default()
            .extend(it.push.documents.iter().map(|d| d.digest));
    }
    let mut depth: HashMap<Digest, usize> = HashMap::new();
    let mut phases: Vec<Vec<(crate::format::bundle::Referrer, ReferrerPush)>> = Vec::new();
    for r in &a.bundle.referrers {
        let (documents, blobs) =
            graph(a, locations, absent, &r.media_type, &r.digest).map_err(|source| {
                LoadError::Graph {
                    archive: archive.to_owned(),
                    artifact: format!("{} {} (of {})", r.kind, r.digest, r.subject),
                    source,
                }
            })?;
        let Some(root) = documents.last() else {
            continue;
        };
        // What a referrers list says of it comes from its manifest, not
        // from bundle.json (verify checks the two agree).
        let (subject_field, annotations, artifact_type) =
            match oci::parse_node(root.digest, &root.media_type, &root.bytes) {
                Ok(n) => {
                    let t = n.artifact_type();
                    match n {
                        oci::Node::Manifest(m) => (m.subject, m.annotations, t),
                        oci::Node::Index(i) => (i.subject, i.annotations, t),
                    }
                }
                Err(_) => (None, Default::default(), None),
            };
        let mut listed =
            oci::Descriptor::new(&root.media_type, root.digest, root.bytes.len() as u64);
        listed.artifact_type = artifact_type;
        listed.annotations = annotations;
        let level = depth.get(&r.subject).map_or(0, |d| d + 1);
        depth.insert(r.digest, level);
        let repos: Vec<&str> = held
            .iter()
            .filter(|(_, docs)| docs.contains(&r.subject))
            .map(|(repo, _)| *repo)
            .collect();
        let mut repos = repos;
        repos.sort_unstable();
        for repo in repos {
            if phases.len() <= level {
                phases.resize_with(level + 1, Vec::new);
            }
            phases[level].push((
                r.clone(),
                ReferrerPush {
                    repository: repo.to_owned(),
                    subject: r.subject,
                    documents: documents.clone(),
                    blobs: blobs.clone(),
                    listed: listed.clone(),
                    has_subject: subject_field
                        .as_ref()
                        .is_some_and(|s| s.digest == r.subject),
                    tag: r.tag.clone(),
                },
            ));
        }
        for docs in held.values_mut() {
            if docs.contains(&r.subject) {
                docs.extend(documents.iter().map(|d| d.digest));
            }
        }
    }
    Ok(phases)
}

fn read_document(
    a: &Archive,
    locations: &HashMap<Digest, Entry>,
    d: &Digest,
) -> io::Result<Vec<u8>> {
    let entry = locations
        .get(d)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in the archive"))?;
    a.read_member(entry, oci::MANIFEST_MAX_BYTES)
        .map_err(|e| io::Error::other(error_chain(&e)))
}

/// A body reading one member of the archive on a blocking thread,
/// hashing as it goes. The last chunk is held back until the hash is
/// checked, so a damaged blob never reaches the registry whole.
fn blob_body(
    archive: &Arc<Archive>,
    entry: &Entry,
    digest: Digest,
    corrupt: &Arc<AtomicBool>,
    sent: &Arc<AtomicU64>,
) -> BlobBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let archive = archive.clone();
    let entry = entry.clone();
    let corrupt = corrupt.clone();
    let sent = sent.clone();
    tokio::task::spawn_blocking(move || {
        let mut r = archive.member_reader(&entry);
        let from = format!("{} in {}", entry.path, archive.path().display());
        pump(&mut r, entry.size, digest, &from, &tx, &corrupt, &sent);
    });
    body_of(rx)
}

/// The second pass over a compressed archive: reads the stream once, in
/// order, and uploads each deferred blob as it comes by, to the first
/// repository that needs it, then mounts it into the others. A retried
/// upload reads the archive again from the start up to that blob.
async fn upload_in_order(
    remote: &Remote,
    reader: &ArchiveReader,
    jobs: &[BlobJob],
    deferred: &HashMap<Digest, Vec<String>>,
    tally: &Mutex<Tally>,
    sent: &Arc<AtomicU64>,
) -> Vec<(Digest, Result<(), String>)> {
    type Delivery = (
        Digest,
        u64,
        Arc<AtomicBool>,
        tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    );
    let archive = &reader.archive;
    let (deliver, mut delivered) = tokio::sync::mpsc::channel::<Delivery>(1);
    let path = archive.path().to_owned();
    // Each pass over the stream must read the bundle.json checked first.
    let bundle_bytes: Arc<[u8]> = archive.bundle_bytes.clone().into();
    let wanted: HashMap<Digest, u64> = jobs
        .iter()
        .filter(|j| deferred.contains_key(&j.digest))
        .map(|j| (j.digest, j.size))
        .collect();
    let pass = {
        let (path, wanted, sent) = (path.clone(), wanted.clone(), sent.clone());
        let bundle_bytes = bundle_bytes.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut s = crate::format::archive::compressed::Stream::reopen(&path, &bundle_bytes)
                .map_err(|e| error_chain(&e))?;
            while let Some(i) = s.next_member().map_err(|e| error_chain(&e))? {
                let Some(m) = s.bundle.members.get(i).cloned() else {
                    continue;
                };
                let Some(&size) = wanted.get(&m.digest) else {
                    continue;
                };
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                let corrupt = Arc::new(AtomicBool::new(false));
                if deliver
                    .blocking_send((m.digest, size, corrupt.clone(), rx))
                    .is_err()
                {
                    return Ok(());
                }
                let from = format!("{} in {}", m.path, path.display());
                pump(&mut s, size, m.digest, &from, &tx, &corrupt, &sent);
            }
            Ok(())
        })
    };

    let mut results = Vec::new();
    while let Some((d, size, corrupt, rx)) = delivered.recv().await {
        let repos = &deferred[&d];
        let first = Mutex::new(Some(rx));
        let open = || match first.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(rx) => body_of(rx),
            None => reread(&path, &bundle_bytes, d, size, &corrupt),
        };
        let r = push::upload(remote, &repos[0], &d, size, &open, &corrupt, reader, tally).await;
        // Drain what the upload left unread, so the stream moves on.
        drop(first);
        let declined = |repo: &str| {
            format!(
                "{} declined to mount blob {d} from {} into {repo}, and a compressed archive cannot be read again cheaply; decompress it (zstd -d) and load again",
                remote.host(),
                repos[0]
            )
        };
        let r = match r {
            Ok(()) => push::mount_rest(remote, &repos[0], &repos[1..], &d, tally, &declined).await,
            e => e,
        };
        results.push((d, r));
    }
    let failure = match pass.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(format!("reading {} failed: {e}", path.display())),
    };
    // Blobs the stream never reached (it was damaged before them).
    let done: std::collections::HashSet<Digest> = results.iter().map(|(d, _)| *d).collect();
    for d in deferred.keys().filter(|d| !done.contains(d)) {
        results.push((
            *d,
            Err(failure
                .clone()
                .unwrap_or_else(|| format!("blob {d} never came by in {}", path.display()))),
        ));
    }
    results
}

/// A fresh body for blob `d` of a compressed archive, read from the start
/// of the stream (for a retried upload).
fn reread(
    path: &Path,
    bundle_bytes: &Arc<[u8]>,
    d: Digest,
    size: u64,
    corrupt: &Arc<AtomicBool>,
) -> BlobBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let (path, corrupt, bundle_bytes) = (path.to_owned(), corrupt.clone(), bundle_bytes.clone());
    tokio::task::spawn_blocking(move || {
        let mut s = match crate::format::archive::compressed::Stream::reopen(&path, &bundle_bytes) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(io::Error::other(error_chain(&e))));
                return;
            }
        };
        loop {
            match s.next_member() {
                Ok(Some(i)) if s.bundle.members.get(i).map(|m| m.digest) == Some(d) => {
                    // Progress was counted by the first attempt already.
                    let uncounted = AtomicU64::new(0);
                    let from = format!("{} in {}", d.blob_path(), path.display());
                    pump(&mut s, size, d, &from, &tx, &corrupt, &uncounted);
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    let _ = tx.blocking_send(Err(io::Error::other(format!(
                        "blob {d} is not in {}",
                        path.display()
                    ))));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(io::Error::other(error_chain(&e))));
                    return;
                }
            }
        }
    });
    body_of(rx)
}
