//! Loading a bundle into a registry straight from the archive: no
//! extraction, every blob re-hashed on its way out, blobs before the
//! manifests that need them, manifests as their raw bytes.
//!
//! The plan is made before the first request: targets (collisions are
//! refused), each artifact's documents in children-first order, and the
//! set of repositories each blob must reach. Then one bounded pool works
//! over *blobs* across all artifacts: for each blob, the first repository
//! gets an upload (after a HEAD shows it missing) and the others a
//! cross-repository mount, falling back to an upload when the registry
//! declines. Manifests follow, HEAD first, so a re-run after an
//! interruption pushes only what is missing and a repeated load pushes
//! nothing. One artifact's failure does not stop the others.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::base::digest::{Digest, COPY_BUF};
use crate::base::error::error_chain;
use crate::base::report::Reporter;
use crate::format::archive::{Archive, ArchiveError, Entry};
use crate::format::blob::{mismatch_in, Verifying};
use crate::format::bundle::{Artifact, ArtifactKind, Bundle};
use crate::format::oci::{self, Visit, WalkError};
use crate::shared::mapping::{MappingError, TargetRegistry};
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
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactOutcome {
    /// Image, chart or file.
    pub kind: ArtifactKind,
    /// The reference carried in the bundle.
    pub source: String,
    /// `HOST[:PORT]/REPOSITORY`.
    pub target: String,
    /// The tag, when the source had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The digest the target holds.
    pub digest: Digest,
    /// Whether it is (or, in a dry run, could be) fully in the registry.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ArtifactOutcome {
    /// `HOST/REPO:TAG` or `HOST/REPO@DIGEST`.
    pub fn target_ref(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.target),
            None => format!("{}@{}", self.target, self.digest),
        }
    }
}

/// Counts for one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadCounts {
    /// Distinct blobs in the artifacts loaded.
    pub blobs: usize,
    /// (repository, blob) pairs the run needed.
    pub blob_placements: usize,
    /// Pairs uploaded (in a dry run: that would be).
    pub uploaded: usize,
    /// Pairs mounted from another repository.
    pub mounted: usize,
    /// Pairs already present.
    pub present: usize,
    /// Bytes uploaded (in a dry run: at most).
    pub bytes_uploaded: u64,
    /// Manifests and indexes pushed (in a dry run: that would be).
    pub manifests_pushed: usize,
    /// Manifests and tags already in place.
    pub manifests_present: usize,
}

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
    /// Counts.
    pub counts: LoadCounts,
    /// Digests of the blobs uploaded (sorted), so a re-run can be checked.
    pub uploaded: Vec<Digest>,
    /// With a key: the trusted comment of the signature checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl LoadReport {
    /// Whether every artifact is in place.
    pub fn is_ok(&self) -> bool {
        self.artifacts.iter().all(|a| a.ok)
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
    repository: String,
    tag: Option<String>,
    /// Documents children first; the root is last.
    documents: Vec<(Digest, String, Vec<u8>)>,
    blobs: Vec<Digest>,
}

/// One blob and where it must go.
struct BlobJob {
    digest: Digest,
    /// Where it is in the archive; none when a delta left it out.
    entry: Option<Entry>,
    /// For a left-out blob: repositories the inventory saw it in.
    mount_from: Vec<String>,
    size: u64,
    repositories: Vec<String>,
}

#[derive(Default)]
struct Tally {
    counts: LoadCounts,
    uploaded: Vec<Digest>,
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
        let mut documents = Vec::new();
        let mut blobs = Vec::new();
        oci::walk_graph(
            &art.media_type,
            &art.digest,
            &mut |d| read_document(&a, &locations, d),
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
                    } => documents.push((digest, media_type, bytes)),
                }
                Ok(())
            },
        )
        .map_err(|source| LoadError::Graph {
            archive: archive.to_owned(),
            artifact: art.reference.clone(),
            source,
        })?;
        blobs.sort();
        blobs.dedup();
        items.push(Item {
            artifact: art.clone(),
            repository: t.repository,
            tag: t.tag,
            documents,
            blobs,
        });
    }

    // Every blob once, with the repositories that need it, in plan order.
    let mut jobs: Vec<BlobJob> = Vec::new();
    let mut index: HashMap<Digest, usize> = HashMap::new();
    for it in &items {
        for d in &it.blobs {
            let i = *index.entry(*d).or_insert_with(|| {
                let entry = locations.get(d).cloned();
                let left_out = absent.get(d);
                jobs.push(BlobJob {
                    digest: *d,
                    size: entry
                        .as_ref()
                        .map(|e| e.size)
                        .or(left_out.map(|a| a.size))
                        .unwrap_or(0),
                    mount_from: match (&entry, left_out) {
                        (None, Some(a)) => a.repositories.clone(),
                        _ => Vec::new(),
                    },
                    entry,
                    repositories: Vec::new(),
                });
                jobs.len() - 1
            });
            if !jobs[i].repositories.contains(&it.repository) {
                jobs[i].repositories.push(it.repository.clone());
            }
        }
    }

    let remote = Remote::connect(&target.host, &opts.remote).await?;
    // One request first: an unreachable registry or refused credentials
    // is one error, not one per blob.
    if let Some(j) = jobs.first() {
        remote
            .has_blob(&j.repositories[0], &j.digest, j.size)
            .await?;
    }
    let tally = Mutex::new(Tally::default());
    {
        let mut t = lock(&tally);
        t.counts.blobs = jobs.len();
        t.counts.blob_placements = jobs.iter().map(|j| j.repositories.len()).sum();
    }
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

    let deferred: Mutex<HashMap<Digest, Vec<String>>> = Mutex::new(HashMap::new());
    let blob_phase = stream::iter(&jobs)
        .map(|job| {
            let a = &a;
            let remote = &remote;
            let tally = &tally;
            let deferred = &deferred;
            let sent = sent.clone();
            async move {
                let r = place_blob(remote, a, job, opts.dry_run, tally, deferred, &sent).await;
                let r = r.map_err(|e| match &job.entry {
                    Some(_) => e,
                    None => format!(
                        "{e}; blob {} was left out of this delta because {} held it: load that first, or pack without --have",
                        job.digest,
                        a.bundle.delta.as_ref().map(|d| d.base.as_str()).unwrap_or("its base")
                    ),
                });
                (job.digest, r)
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .collect::<Vec<_>>();
    let mut blob_results = crate::base::report::with_progress(blob_phase, &sent, reporter).await;
    let deferred = deferred.into_inner().unwrap_or_else(|p| p.into_inner());
    if !deferred.is_empty() {
        let streamed = upload_in_order(&remote, &a, &jobs, &deferred, &tally, &sent);
        blob_results.extend(crate::base::report::with_progress(streamed, &sent, reporter).await);
    }
    reporter.finish();
    let failed_blobs: HashMap<Digest, String> = blob_results
        .into_iter()
        .filter_map(|(d, r)| r.err().map(|e| (d, e)))
        .collect();

    reporter.start("Pushing manifests", 0);
    let outcomes = stream::iter(&items)
        .map(|it| {
            let remote = &remote;
            let tally = &tally;
            let failed_blobs = &failed_blobs;
            let host = &target.host;
            async move {
                let error = match it.blobs.iter().find_map(|d| failed_blobs.get(d)) {
                    Some(e) => Some(e.clone()),
                    None => place_documents(remote, it, opts, tally).await.err(),
                };
                ArtifactOutcome {
                    kind: it.artifact.kind,
                    source: it.artifact.reference.clone(),
                    target: format!("{host}/{}", it.repository),
                    tag: it.tag.clone(),
                    digest: it.artifact.digest,
                    ok: error.is_none(),
                    error,
                }
            }
        })
        .buffered(opts.jobs.max(1))
        .collect::<Vec<_>>()
        .await;
    reporter.finish();

    let Tally {
        counts,
        mut uploaded,
    } = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    uploaded.sort();
    uploaded.dedup();
    Ok((
        LoadReport {
            archive: archive.to_owned(),
            registry: target.host.clone(),
            dry_run: opts.dry_run,
            artifacts: outcomes,
            counts,
            uploaded,
            signature,
        },
        a.bundle.clone(),
    ))
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|p| p.into_inner())
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

/// Gets one blob into every repository that needs it.
async fn place_blob(
    remote: &Remote,
    archive: &Arc<Archive>,
    job: &BlobJob,
    dry_run: bool,
    tally: &Mutex<Tally>,
    deferred: &Mutex<HashMap<Digest, Vec<String>>>,
    sent: &Arc<AtomicU64>,
) -> Result<(), String> {
    let d = &job.digest;
    let mut holder: Option<&str> = None;
    let corrupt = Arc::new(AtomicBool::new(false));
    for repo in &job.repositories {
        let present = remote
            .has_blob(repo, d, job.size)
            .await
            .map_err(|e| error_chain(&e))?;
        if present {
            lock(tally).counts.present += 1;
            sent.fetch_add(job.size, Ordering::Relaxed);
            holder.get_or_insert(repo);
            continue;
        }
        let Some(entry) = &job.entry else {
            // Left out of a delta: only a mount can place it. A dry run
            // predicts one when there is somewhere to mount from.
            if dry_run && (holder.is_some() || !job.mount_from.is_empty()) {
                lock(tally).counts.mounted += 1;
                continue;
            }
            if !dry_run {
                let sources = holder
                    .into_iter()
                    .chain(job.mount_from.iter().map(String::as_str));
                let mut mounted = false;
                for from in sources.filter(|f| *f != repo.as_str()) {
                    if remote
                        .mount_blob(repo, from, d)
                        .await
                        .map_err(|e| error_chain(&e))?
                    {
                        mounted = true;
                        break;
                    }
                }
                if mounted {
                    lock(tally).counts.mounted += 1;
                    continue;
                }
            }
            return Err(format!(
                "{}/{repo} does not hold blob {d}, which this archive does not carry",
                remote.host()
            ));
        };
        if dry_run {
            // As the load would: the first repository that lacks it gets an
            // upload, every other one a mount from where it already is.
            let mut t = lock(tally);
            if holder.is_some() {
                t.counts.mounted += 1;
            } else {
                t.counts.uploaded += 1;
                t.counts.bytes_uploaded += job.size;
                holder = Some(repo);
            }
            continue;
        }
        if let Some(from) = holder {
            if remote
                .mount_blob(repo, from, d)
                .await
                .map_err(|e| error_chain(&e))?
            {
                lock(tally).counts.mounted += 1;
                continue;
            }
        }
        if archive.is_compressed() {
            // Uploaded later, in archive order, from one pass over the
            // stream; the other repositories get mounts.
            deferred
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(*d)
                .or_default()
                .push(repo.clone());
            continue;
        }
        let open = {
            let archive = archive.clone();
            let (entry, digest) = (entry.clone(), *d);
            let corrupt = corrupt.clone();
            let sent = sent.clone();
            move || blob_body(&archive, &entry, digest, &corrupt, &sent)
        };
        let aborted = || corrupt.load(Ordering::Relaxed);
        match remote.push_blob(repo, d, job.size, &open, &aborted).await {
            Ok(()) => {
                let mut t = lock(tally);
                t.counts.uploaded += 1;
                t.counts.bytes_uploaded += job.size;
                t.uploaded.push(*d);
                holder.get_or_insert(repo);
            }
            Err(_) if corrupt.load(Ordering::Relaxed) => {
                return Err(format!(
                "blob {d} in {} does not match its digest; it was not pushed (run `ferry verify`)",
                archive.path().display()
            ))
            }
            Err(e) => return Err(error_chain(&e)),
        }
    }
    Ok(())
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

/// Sends the `size` bytes of blob `digest` read from `r` down `tx` in
/// chunks, through the verifying reader. The last chunk is held back until
/// the reader has checked the digest at the end of the blob, so a damaged
/// blob never reaches the registry whole; then `corrupt` is set and the
/// mismatch sent. Returns early (having read less) when the receiver is
/// gone.
#[allow(clippy::too_many_arguments)]
fn pump(
    r: &mut dyn Read,
    size: u64,
    digest: Digest,
    from: &str,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    corrupt: &AtomicBool,
    sent: &AtomicU64,
) {
    let mut r = Verifying::new(r, digest, size, from);
    let mut run = || -> io::Result<Option<Bytes>> {
        let mut pos = 0u64;
        let mut pending: Option<Bytes> = None;
        while pos < size {
            let n = (size - pos).min(COPY_BUF as u64) as usize;
            let mut buf = vec![0u8; n];
            r.read_exact(&mut buf)?;
            pos += n as u64;
            if let Some(p) = pending.replace(Bytes::from(buf)) {
                let len = p.len() as u64;
                if tx.blocking_send(Ok(p)).is_err() {
                    return Ok(None);
                }
                sent.fetch_add(len, Ordering::Relaxed);
            }
        }
        // The end of the blob: the verifying reader checks it here (and
        // fails on any byte past the size, so nothing more can come).
        if r.read(&mut [0u8; 1])? != 0 {
            return Err(io::Error::other(format!(
                "blob {digest} is longer than its size"
            )));
        }
        Ok(pending)
    };
    let last = run();
    // Damage, wherever the reader met it, is final: no retry helps.
    if last.as_ref().err().and_then(mismatch_in).is_some() {
        corrupt.store(true, Ordering::Relaxed);
    }
    if let Ok(Some(p)) = &last {
        sent.fetch_add(p.len() as u64, Ordering::Relaxed);
    }
    let _ = match last {
        Ok(Some(p)) => tx.blocking_send(Ok(p)),
        Ok(None) => Ok(()),
        Err(e) => tx.blocking_send(Err(e)),
    };
}

fn body_of(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> BlobBody {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

/// The second pass over a compressed archive: reads the stream once, in
/// order, and uploads each deferred blob as it comes by, to the first
/// repository that needs it, then mounts it into the others. A retried
/// upload reads the archive again from the start up to that blob.
async fn upload_in_order(
    remote: &Remote,
    archive: &Arc<Archive>,
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
    let (deliver, mut delivered) = tokio::sync::mpsc::channel::<Delivery>(1);
    let path = archive.path().to_owned();
    // Each pass over the stream must read the bundle.json checked first.
    let bundle_bytes: Arc<[u8]> = archive.bundle_bytes.clone().into();
    let wanted: HashMap<Digest, u64> = jobs
        .iter()
        .filter(|j| deferred.contains_key(&j.digest))
        .map(|j| (j.digest, j.size))
        .collect();
    let reader = {
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
        let aborted = || corrupt.load(Ordering::Relaxed);
        let r = match remote.push_blob(&repos[0], &d, size, &open, &aborted).await {
            Ok(()) => {
                let mut t = lock(tally);
                t.counts.uploaded += 1;
                t.counts.bytes_uploaded += size;
                t.uploaded.push(d);
                Ok(())
            }
            Err(_) if corrupt.load(Ordering::Relaxed) => Err(format!(
                "blob {d} in {} does not match its digest; it was not pushed (run `ferry verify`)",
                path.display()
            )),
            Err(e) => Err(error_chain(&e)),
        };
        // Drain what the upload left unread, so the stream moves on.
        drop(first);
        let r = match r {
            Ok(()) => mount_rest(remote, &repos[0], &repos[1..], &d, tally).await,
            e => e,
        };
        results.push((d, r));
    }
    let failure = match reader.await {
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

/// Mounts an uploaded blob from `from` into the other repositories.
async fn mount_rest(
    remote: &Remote,
    from: &str,
    rest: &[String],
    d: &Digest,
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    for repo in rest {
        if remote
            .mount_blob(repo, from, d)
            .await
            .map_err(|e| error_chain(&e))?
        {
            lock(tally).counts.mounted += 1;
        } else {
            return Err(format!(
                "{} declined to mount blob {d} from {from} into {repo}, and a compressed archive cannot be read again cheaply; decompress it (zstd -d) and load again",
                remote.host()
            ));
        }
    }
    Ok(())
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

/// Pushes an artifact's documents, children first, skipping those present.
async fn place_documents(
    remote: &Remote,
    it: &Item,
    opts: &LoadOptions,
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    let repo = &it.repository;
    let Some(((root, root_mt, root_bytes), children)) = it.documents.split_last() else {
        return Ok(());
    };
    let mut steps: Vec<(&Digest, &str, &[u8], String)> = children
        .iter()
        .map(|(d, mt, b)| (d, mt.as_str(), b.as_slice(), d.to_string()))
        .collect();
    let root_ref = it.tag.clone().unwrap_or_else(|| root.to_string());
    steps.push((root, root_mt.as_str(), root_bytes.as_slice(), root_ref));
    for (d, mt, bytes, reference) in steps {
        let current = remote
            .manifest_digest(repo, &reference)
            .await
            .map_err(|e| error_chain(&e))?;
        if current == Some(*d) {
            lock(tally).counts.manifests_present += 1;
            continue;
        }
        // A tag that already names other content is not moved silently.
        if let (Some(other), Some(tag), false) = (current, &it.tag, opts.force) {
            if reference == *tag {
                return Err(format!(
                    "tag {}/{repo}:{tag} already points to {other}, not to the bundle's {d}; it was left as it is (pass --force to move it)",
                    remote.host()
                ));
            }
        }
        if !opts.dry_run {
            remote
                .push_manifest(repo, &reference, bytes, mt)
                .await
                .map_err(|e| error_chain(&e))?;
        }
        lock(tally).counts.manifests_pushed += 1;
    }
    Ok(())
}
