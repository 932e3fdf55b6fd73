//! Pushing into a registry: the registry as a sink, for `load` (bytes from
//! an archive) and `mirror` (bytes from another registry).
//!
//! The caller plans; this module pushes. The plan is a list of blobs, each
//! with the repositories it must reach ([`BlobJob`]), and a list of
//! artifacts, each with its documents in children-first order and its tag
//! ([`PushItem`]). Bytes come from a [`BlobReader`], which gives a fresh
//! body per attempt. One bounded pool works over *blobs* across all
//! artifacts ([`push_blobs`]): for each blob, the first repository gets an
//! upload (after a HEAD shows it missing) and the others a
//! cross-repository mount, falling back to an upload when the registry
//! declines. Manifests follow ([`push_manifests`]), HEAD first, children
//! first, the tag last, so a re-run after an interruption pushes only what
//! is missing and a repeated push pushes nothing. Every body goes through
//! [`pump`], which hashes as the bytes pass and holds the last chunk back
//! until the digest is checked: a damaged blob never reaches the registry
//! whole. One artifact's failure does not stop the others.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::base::digest::{Digest, COPY_BUF};
use crate::base::error::error_chain;
use crate::format::blob::{mismatch_in, Verifying};
use crate::format::bundle::ArtifactKind;
use crate::shared::remote::{BlobBody, MountAnswer, Remote};

/// Counts for one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushCounts {
    /// Distinct blobs in the artifacts pushed.
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

/// What a run did, shared by the tasks of the pool.
#[derive(Debug, Default)]
pub struct Tally {
    /// Counts.
    pub counts: PushCounts,
    /// Digests of the blobs uploaded (unsorted, may repeat).
    pub uploaded: Vec<Digest>,
    /// The (repository, blob) pairs this run uploaded or mounted (in a dry
    /// run: would): a manifest that needs one of them cannot be in that
    /// repository yet, so it is pushed without a `HEAD` first.
    pub placed: HashSet<(String, Digest)>,
}

impl Tally {
    /// A tally for a run over `jobs`, with its blob and placement counts.
    pub fn for_jobs(jobs: &[BlobJob]) -> Mutex<Tally> {
        let mut t = Tally::default();
        t.counts.blobs = jobs.len();
        t.counts.blob_placements = jobs.iter().map(|j| j.repositories.len()).sum();
        Mutex::new(t)
    }
}

/// Locks the tally, through a poisoned lock (counts stay usable).
pub fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// One blob and where it must go.
#[derive(Debug, Clone)]
pub struct BlobJob {
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Whether the reader has its bytes; a blob without them (left out
    /// of a delta) can only be mounted.
    pub carried: bool,
    /// For a blob without bytes: repositories it may be mounted from.
    pub mount_from: Vec<String>,
    /// The repositories that need it, in plan order.
    pub repositories: Vec<String>,
}

/// One document of an artifact: a manifest or index, as raw bytes.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its digest.
    pub digest: Digest,
    /// Its media type (the `Content-Type` of the push).
    pub media_type: String,
    /// The bytes, exactly as pushed.
    pub bytes: Vec<u8>,
}

/// One artifact's manifests.
#[derive(Debug, Clone)]
pub struct PushItem {
    /// The target repository.
    pub repository: String,
    /// The tag the root gets, if any (else it is pushed by digest).
    pub tag: Option<String>,
    /// Documents children first; the root is last.
    pub documents: Vec<Document>,
    /// The blobs it needs (sorted, distinct): it is pushed only when all
    /// of them are in place.
    pub blobs: Vec<Digest>,
}

/// Where the bytes of blobs come from.
pub trait BlobReader: Send + Sync {
    /// A fresh body for blob `digest` of `size` bytes, for one attempt.
    /// It must come through [`pump`] (or check the digest as [`pump`]
    /// does, holding back the last chunk), setting `corrupt` when the
    /// bytes do not match, and add what it sends to `sent`.
    fn open(
        &self,
        digest: Digest,
        size: u64,
        corrupt: &Arc<AtomicBool>,
        sent: &Arc<AtomicU64>,
    ) -> BlobBody;

    /// Whether uploads wait for one ordered pass after the pool (a
    /// compressed archive): the pool then only checks and mounts, and
    /// hands the rest back.
    fn deferred(&self) -> bool {
        false
    }

    /// The message for blob `digest` whose bytes did not match it.
    fn damaged(&self, digest: &Digest) -> String;
}

/// How to push.
#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    /// Blobs (and artifacts' manifests) in flight at once.
    pub jobs: usize,
    /// Check the registry and count what would be pushed; push nothing.
    pub dry_run: bool,
    /// Move tags that already point to other content.
    pub force: bool,
}

/// What the blob pool left: per blob, an error (or success), and the
/// uploads a deferring reader must still make (blob → repositories).
pub struct BlobPhase {
    /// Each blob's result.
    pub results: Vec<(Digest, Result<(), String>)>,
    /// For a deferring reader: uploads still to make.
    pub deferred: HashMap<Digest, Vec<String>>,
}

/// Puts every blob of `jobs` in place in one pool of `opts.jobs`, with
/// progress counted in `sent`. `explain` may add to a blob's error (it
/// gets the job and the message).
pub async fn push_blobs(
    remote: &Remote,
    reader: &dyn BlobReader,
    jobs: &[BlobJob],
    opts: PushOptions,
    tally: &Mutex<Tally>,
    sent: &Arc<AtomicU64>,
    explain: &(dyn Fn(&BlobJob, String) -> String + Sync),
) -> BlobPhase {
    let deferred: Mutex<HashMap<Digest, Vec<String>>> = Mutex::new(HashMap::new());
    if !opts.dry_run && !reader.deferred() {
        choose_probes(remote, jobs).await;
    }
    let results = stream::iter(jobs)
        .map(|job| {
            let deferred = &deferred;
            let sent = sent.clone();
            async move {
                let r = place_blob(remote, reader, job, opts.dry_run, tally, deferred, &sent).await;
                (job.digest, r.map_err(|e| explain(job, e)))
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .collect::<Vec<_>>()
        .await;
    BlobPhase {
        results,
        deferred: deferred.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}

/// Chooses, before the pool starts, how blobs are looked for: when the
/// first blob is in its first repository already (a re-run, or a load
/// resumed), with a `HEAD` each, which reads and leaves nothing behind;
/// otherwise (a registry that lacks the bundle) with a mount of each blob
/// from its own repository ([`place_carried`]), which is the start of its
/// upload too. A registry that cannot mount then costs nothing more,
/// since every blob it lacks is uploaded anyway; a blob it holds but
/// would not mount is uploaded again, which is safe.
async fn choose_probes(remote: &Remote, jobs: &[BlobJob]) {
    let first = jobs
        .iter()
        .filter(|j| j.carried)
        .find_map(|j| j.repositories.first().map(|r| (j, r)));
    if let Some((j, repo)) = first {
        if matches!(remote.has_blob(repo, &j.digest, j.size).await, Ok(true)) {
            remote.stop_mount_probes();
        }
    }
}

/// Gets one blob into every repository that needs it.
async fn place_blob(
    remote: &Remote,
    reader: &dyn BlobReader,
    job: &BlobJob,
    dry_run: bool,
    tally: &Mutex<Tally>,
    deferred: &Mutex<HashMap<Digest, Vec<String>>>,
    sent: &Arc<AtomicU64>,
) -> Result<(), String> {
    match (job.carried, dry_run) {
        (false, _) => place_left_out(remote, job, dry_run, tally, sent).await,
        (true, true) => predict_blob(remote, job, tally, sent).await,
        (true, false) => place_carried(remote, reader, job, tally, deferred, sent).await,
    }
}

/// Counts a blob of `size` bytes found in place already (and its bytes as
/// done, for the progress bar).
fn found_present(tally: &Mutex<Tally>, sent: &AtomicU64, size: u64) {
    lock(tally).counts.present += 1;
    sent.fetch_add(size, Ordering::Relaxed);
}

/// Counts a placement of `d` into `repo` this run made.
fn placed(tally: &Mutex<Tally>, repo: &str, d: &Digest, mounted: bool) {
    let mut t = lock(tally);
    if mounted {
        t.counts.mounted += 1;
    }
    t.placed.insert((repo.to_owned(), *d));
}

/// Gets a blob whose bytes the reader has into every repository that
/// needs it, with as few requests as the registry allows. The first
/// repository is asked, in one `POST`, to mount the blob from itself: a
/// `201` says it holds it (as a `HEAD` would), a `202` opens the upload
/// session the bytes then go to (one `PUT`). Each later repository gets a
/// mount from the first, with no `HEAD` before it when this run put the
/// blob there (it was missing, so it is missing in the others too, or a
/// mount is harmless). When the blob was there already, the others are
/// checked with a `HEAD` as before, so a re-run counts every pair present
/// and uploads nothing. A registry that declines a mount it should make
/// gets `HEAD`s from then on ([`Remote::stop_mount_probes`]), and a
/// reader that defers uploads (a compressed archive) gets them always.
async fn place_carried(
    remote: &Remote,
    reader: &dyn BlobReader,
    job: &BlobJob,
    tally: &Mutex<Tally>,
    deferred: &Mutex<HashMap<Digest, Vec<String>>>,
    sent: &Arc<AtomicU64>,
) -> Result<(), String> {
    let d = &job.digest;
    let corrupt = Arc::new(AtomicBool::new(false));
    // Where the blob is known to be, and whether this run put it there.
    let mut holder: Option<(&str, bool)> = None;
    let mut deferring = false;
    for repo in &job.repositories {
        let repo = repo.as_str();
        if deferring {
            // Uploaded later to the first repository, then mounted here.
            let mut q = deferred.lock().unwrap_or_else(|p| p.into_inner());
            q.entry(*d).or_default().push(repo.to_owned());
            lock(tally).placed.insert((repo.to_owned(), *d));
            continue;
        }
        let from = match holder {
            Some((h, true)) => Some(h),
            Some((_, false)) => None,
            None if !reader.deferred() && remote.mount_probes() => Some(repo),
            None => None,
        };
        let mut session = None;
        let mut known_missing = false;
        if let Some(from) = from {
            match remote
                .mount_or_start(repo, from, d)
                .await
                .map_err(|e| error_chain(&e))?
            {
                MountAnswer::Mounted if from == repo => {
                    found_present(tally, sent, job.size);
                    holder = Some((repo, false));
                    continue;
                }
                MountAnswer::Mounted => {
                    placed(tally, repo, d, true);
                    continue;
                }
                MountAnswer::Session(location) => {
                    if from != repo {
                        // Declined a mount from where the blob is.
                        remote.stop_mount_probes();
                    }
                    session = Some(location);
                    known_missing = true;
                }
                MountAnswer::Declined => remote.stop_mount_probes(),
            }
        }
        if !known_missing {
            let present = remote
                .has_blob(repo, d, job.size)
                .await
                .map_err(|e| error_chain(&e))?;
            if present {
                found_present(tally, sent, job.size);
                holder.get_or_insert((repo, false));
                continue;
            }
            if let Some((h, _)) = holder {
                match remote
                    .mount_or_start(repo, h, d)
                    .await
                    .map_err(|e| error_chain(&e))?
                {
                    MountAnswer::Mounted => {
                        placed(tally, repo, d, true);
                        continue;
                    }
                    MountAnswer::Session(location) => session = Some(location),
                    MountAnswer::Declined => {}
                }
            }
        }
        if reader.deferred() {
            // Uploaded later, in the reader's order, from one pass; the
            // other repositories get mounts.
            if let Some(location) = session {
                remote.cancel_upload(repo, &location).await;
            }
            let mut q = deferred.lock().unwrap_or_else(|p| p.into_inner());
            q.entry(*d).or_default().push(repo.to_owned());
            lock(tally).placed.insert((repo.to_owned(), *d));
            deferring = holder.is_none();
            continue;
        }
        let open = {
            let (digest, size) = (*d, job.size);
            let corrupt = corrupt.clone();
            let sent = sent.clone();
            move || reader.open(digest, size, &corrupt, &sent)
        };
        upload_in(
            remote, repo, d, job.size, session, &open, &corrupt, reader, tally,
        )
        .await?;
        placed(tally, repo, d, false);
        holder.get_or_insert((repo, true));
    }
    Ok(())
}

/// What [`place_carried`] would do, with `HEAD`s only: the first
/// repository that lacks the blob gets an upload; once this run would have
/// put it somewhere, every later repository a mount, unchecked, as the
/// load makes it; before that, each is checked.
async fn predict_blob(
    remote: &Remote,
    job: &BlobJob,
    tally: &Mutex<Tally>,
    sent: &Arc<AtomicU64>,
) -> Result<(), String> {
    let d = &job.digest;
    // Whether the blob is known to be somewhere, and whether this run
    // would have put it there.
    let mut holder: Option<bool> = None;
    for repo in &job.repositories {
        if holder != Some(true) {
            let present = remote
                .has_blob(repo, d, job.size)
                .await
                .map_err(|e| error_chain(&e))?;
            if present {
                found_present(tally, sent, job.size);
                holder.get_or_insert(false);
                continue;
            }
        }
        let mut t = lock(tally);
        if holder.is_some() {
            t.counts.mounted += 1;
        } else {
            t.counts.uploaded += 1;
            t.counts.bytes_uploaded += job.size;
            holder = Some(true);
        }
        t.placed.insert((repo.clone(), *d));
    }
    Ok(())
}

/// Gets a blob left out of a delta (the reader has no bytes for it) into
/// every repository that needs it: each is checked with a `HEAD`, and one
/// that lacks it gets a mount from where it is, or from a repository the
/// delta names.
async fn place_left_out(
    remote: &Remote,
    job: &BlobJob,
    dry_run: bool,
    tally: &Mutex<Tally>,
    sent: &Arc<AtomicU64>,
) -> Result<(), String> {
    let d = &job.digest;
    let mut holder: Option<&str> = None;
    for repo in &job.repositories {
        let present = remote
            .has_blob(repo, d, job.size)
            .await
            .map_err(|e| error_chain(&e))?;
        if present {
            found_present(tally, sent, job.size);
            holder.get_or_insert(repo);
            continue;
        }
        // A dry run predicts a mount when there is somewhere to mount
        // from.
        if dry_run && (holder.is_some() || !job.mount_from.is_empty()) {
            placed(tally, repo, d, true);
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
                placed(tally, repo, d, true);
                continue;
            }
        }
        return Err(format!(
            "{}/{repo} does not hold blob {d}, which this archive does not carry",
            remote.host()
        ));
    }
    Ok(())
}

/// Uploads blob `d` into `repo` with bodies from `open`, counting it in
/// `tally`; a body that did not match its digest (`corrupt`) fails with
/// the reader's message and is not retried.
#[allow(clippy::too_many_arguments)]
pub async fn upload(
    remote: &Remote,
    repo: &str,
    d: &Digest,
    size: u64,
    open: &(dyn Fn() -> BlobBody + Send + Sync),
    corrupt: &AtomicBool,
    reader: &dyn BlobReader,
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    upload_in(remote, repo, d, size, None, open, corrupt, reader, tally).await
}

/// [`upload`], into the upload `session` when one is open already.
#[allow(clippy::too_many_arguments)]
async fn upload_in(
    remote: &Remote,
    repo: &str,
    d: &Digest,
    size: u64,
    session: Option<String>,
    open: &(dyn Fn() -> BlobBody + Send + Sync),
    corrupt: &AtomicBool,
    reader: &dyn BlobReader,
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    let aborted = || corrupt.load(Ordering::Relaxed);
    match remote
        .push_blob_in(repo, d, size, session, open, &aborted)
        .await
    {
        Ok(()) => {
            let mut t = lock(tally);
            t.counts.uploaded += 1;
            t.counts.bytes_uploaded += size;
            t.uploaded.push(*d);
            Ok(())
        }
        Err(_) if corrupt.load(Ordering::Relaxed) => Err(reader.damaged(d)),
        Err(e) => Err(error_chain(&e)),
    }
}

/// Sends the `size` bytes of blob `digest` read from `r` down `tx` in
/// chunks, through the verifying reader. The last chunk is held back until
/// the reader has checked the digest at the end of the blob, so a damaged
/// blob never reaches the registry whole; then `corrupt` is set and the
/// mismatch sent. Returns early (having read less) when the receiver is
/// gone.
#[allow(clippy::too_many_arguments)]
pub fn pump(
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

/// The receiving end of [`pump`] as an upload body.
pub fn body_of(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> BlobBody {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

/// Mounts an uploaded blob from `from` into the other repositories;
/// `declined` is the message when the registry will not.
pub async fn mount_rest(
    remote: &Remote,
    from: &str,
    rest: &[String],
    d: &Digest,
    tally: &Mutex<Tally>,
    declined: &(dyn Fn(&str) -> String + Sync),
) -> Result<(), String> {
    for repo in rest {
        if remote
            .mount_blob(repo, from, d)
            .await
            .map_err(|e| error_chain(&e))?
        {
            placed(tally, repo, d, true);
        } else {
            return Err(declined(repo));
        }
    }
    Ok(())
}

/// Pushes each item's documents (children first, the tag last, skipping
/// those present), `opts.jobs` items at once, after its blobs: an item
/// whose blob failed is not pushed and gets that blob's error. Returns
/// each item's error, in order.
pub async fn push_manifests(
    remote: &Remote,
    items: &[PushItem],
    failed_blobs: &HashMap<Digest, String>,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Vec<Option<String>> {
    stream::iter(items)
        .map(|it| async move {
            match it.blobs.iter().find_map(|d| failed_blobs.get(d)) {
                Some(e) => Some(e.clone()),
                None => place_documents(remote, it, opts, tally).await.err(),
            }
        })
        .buffered(opts.jobs.max(1))
        .collect::<Vec<_>>()
        .await
}

/// Pushes an artifact's documents, children first, skipping those present.
/// Children that do not name each other go at once, and the root's check
/// runs beside them: an index of two platforms costs two round trips, not
/// four. The root (and its tag) is pushed only once every child is in.
async fn place_documents(
    remote: &Remote,
    it: &PushItem,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    let repo = &it.repository;
    let Some((root, children)) = it.documents.split_last() else {
        return Ok(());
    };
    // A blob this run put into the repository means no document that
    // needs it is there yet: those pushed by digest go without a HEAD (a
    // push by digest of a document that is there after all changes
    // nothing). A tag is always looked at first.
    let fresh = {
        let t = lock(tally);
        it.blobs
            .iter()
            .any(|b| t.placed.contains(&(repo.clone(), *b)))
    };
    let root_ref = it.tag.clone().unwrap_or_else(|| root.digest.to_string());
    let check = |reference: String, by_digest: bool| async move {
        match fresh && by_digest {
            true => Ok(None),
            false => remote
                .manifest_digest(repo, &reference)
                .await
                .map_err(|e| error_chain(&e)),
        }
    };
    let (current, pushed) = futures_util::join!(
        check(root_ref.clone(), it.tag.is_none()),
        place_children(remote, repo, children, &check, opts, tally)
    );
    pushed?;
    let tag = it.tag.as_deref();
    place_one(remote, repo, tag, root, &root_ref, current?, opts, tally).await
}

/// The documents before the root, in waves: each wave holds those that
/// name no document still to push (a nested index waits for its
/// manifests), pushed at once.
async fn place_children<F, Fut>(
    remote: &Remote,
    repo: &str,
    children: &[Document],
    check: &F,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Result<(), String>
where
    F: Fn(String, bool) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Digest>, String>>,
{
    let names = |a: &Document, b: &Document| {
        let needle = b.digest.to_string();
        a.digest != b.digest
            && a.bytes
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
    };
    let mut pending: Vec<&Document> = children.iter().collect();
    while !pending.is_empty() {
        let (mut ready, mut wait): (Vec<&Document>, Vec<&Document>) = pending
            .iter()
            .partition(|d| !pending.iter().any(|o| names(d, o)));
        if ready.is_empty() {
            // Documents naming each other (no registry takes that): one
            // at a time, in the given order.
            ready.push(wait.remove(0));
        }
        let wave = ready.iter().map(|doc| async move {
            let reference = doc.digest.to_string();
            let current = check(reference.clone(), true).await?;
            place_one(remote, repo, None, doc, &reference, current, opts, tally).await
        });
        for r in futures_util::future::join_all(wave).await {
            r?;
        }
        pending = wait;
    }
    Ok(())
}

/// Pushes `doc` into `repo` as `reference`, unless the registry holds it
/// there already (`current`); a `tag` that names other content is moved
/// only with `--force`.
#[allow(clippy::too_many_arguments)]
async fn place_one(
    remote: &Remote,
    repo: &str,
    tag: Option<&str>,
    doc: &Document,
    reference: &str,
    current: Option<Digest>,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    let d = &doc.digest;
    if current == Some(*d) {
        lock(tally).counts.manifests_present += 1;
        return Ok(());
    }
    // A tag that already names other content is not moved silently.
    if let (Some(other), Some(tag), false) = (current, tag, opts.force) {
        if reference == tag {
            return Err(format!(
                "tag {}/{repo}:{tag} already points to {other}, not to {d}; it was left as it is (pass --force to move it)",
                remote.host()
            ));
        }
    }
    if !opts.dry_run {
        remote
            .push_manifest(repo, reference, &doc.bytes, &doc.media_type)
            .await
            .map_err(|e| error_chain(&e))?;
    }
    lock(tally).counts.manifests_pushed += 1;
    Ok(())
}

/// Probes the registry once with the first blob's HEAD, so an unreachable
/// registry or refused credentials is one error, not one per blob.
pub async fn probe(
    remote: &Remote,
    jobs: &[BlobJob],
) -> Result<(), crate::shared::remote::RemoteError> {
    if let Some(j) = jobs.iter().find(|j| !j.repositories.is_empty()) {
        remote
            .has_blob(&j.repositories[0], &j.digest, j.size)
            .await?;
    }
    Ok(())
}
