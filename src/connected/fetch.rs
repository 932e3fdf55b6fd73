//! Fetching images from registries into the local cache, which is an OCI
//! layout store shared by every run: `pack` then reads registry images
//! from it exactly as it reads a local layout.
//!
//! For each reference the manifest (or index) is pulled as raw bytes and
//! its digest taken from those bytes; with a platform filter only the
//! index children that are kept are followed, so nothing unused is
//! downloaded. Manifests come first, so the images' plan is known before
//! the first layer moves; every image's manifests are resolved at once (a
//! bounded number of images at a time, each level of an index's children
//! at once), because over a wide-area link what they cost is round trips.
//! Then one bounded pool works over the *blobs* of all images: a blob
//! shared by several images is fetched once, hashed while it streams, and
//! renamed into the cache only when digest and size match. Referrers
//! (signatures, attestations, SBOMs) are looked for while those blobs
//! stream, and their own blobs fetched after. Blobs already cached are
//! re-hashed instead of fetched, and a damaged one is fetched again. One
//! image's failure does not stop the others. Each reference fetched whole
//! is recorded in the cache (`cache`) with the root it resolved to. The
//! caller holds the cache's shared lock.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};
use rayon::prelude::*;
use serde::Serialize;

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::base::report::Reporter;
use crate::connected::cache::{self, Record, Source};
use crate::connected::referrers::{self, Asked, Found, NoApi};
use crate::format::layout::{LayoutError, Store};
use crate::format::oci::{self, Descriptor, Node};
use crate::shared::remote::{BlobBody, Remote, RemoteError, RemoteOptions};

/// Errors that stop a fetch as a whole.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The cache directory is unusable.
    #[error("cannot use the cache directory {path}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: LayoutError,
    },
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The cache (an OCI layout store).
    pub cache: PathBuf,
    /// Blobs in flight at once.
    pub jobs: usize,
    /// Transport, credentials and retries (for every registry).
    pub remote: RemoteOptions,
}

/// One image to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The reference.
    pub reference: Reference,
    /// Platforms to keep (`None`: all).
    pub platforms: Option<Vec<Platform>>,
    /// Also find and fetch the referrers of every document kept
    /// (signatures, attestations, SBOMs: `referrers`).
    pub referrers: bool,
}

/// Counts for one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchCounts {
    /// Manifests and indexes pulled.
    pub manifests: usize,
    /// Blobs downloaded.
    pub blobs_fetched: usize,
    /// Bytes downloaded.
    pub bytes_fetched: u64,
    /// Blobs found whole in the cache.
    pub blobs_cached: usize,
    /// Cached blobs that were damaged and fetched again.
    pub blobs_repaired: usize,
    /// Referrers found (signatures, attestations, SBOMs, others).
    pub referrers: usize,
    /// Requests that looked for referrers (`HEAD`s and referrers API
    /// pages; the referrers' own pulls are in `manifests`).
    pub referrer_probes: usize,
}

impl FetchCounts {
    /// Adds another run's counts (pack fetches the spec's images, then the
    /// images its charts name).
    pub fn add(&mut self, other: &FetchCounts) {
        self.manifests += other.manifests;
        self.blobs_fetched += other.blobs_fetched;
        self.bytes_fetched += other.bytes_fetched;
        self.blobs_cached += other.blobs_cached;
        self.blobs_repaired += other.blobs_repaired;
        self.referrers += other.referrers;
        self.referrer_probes += other.referrer_probes;
    }
}

/// The outcome of a fetch.
#[derive(Debug)]
pub struct FetchReport {
    /// Per request, in order: the root descriptor in the cache, or why not.
    pub results: Vec<Result<Descriptor, String>>,
    /// Per request, in order: the referrers found (empty when not asked).
    pub referrers: Vec<Vec<crate::connected::referrers::Found>>,
    /// Counts.
    pub counts: FetchCounts,
}

/// A blob some image needs, and where it can be had.
struct Needed {
    size: u64,
    host: String,
    repo: String,
    /// Requests that need it.
    users: Vec<usize>,
}

/// Fetches every request into `opts.cache`.
pub async fn fetch(
    requests: &[FetchRequest],
    opts: &FetchOptions,
    reporter: &dyn Reporter,
) -> Result<FetchReport, FetchError> {
    let store = Store::create_cache(&opts.cache).map_err(|source| FetchError::Cache {
        path: opts.cache.clone(),
        source,
    })?;
    let mut remotes: HashMap<String, Arc<Remote>> = HashMap::new();
    let mut results: Vec<Result<Descriptor, String>> = Vec::new();
    let mut counts = FetchCounts::default();
    let mut needed: BTreeMap<Digest, Needed> = BTreeMap::new();
    let mut referrers: Vec<Vec<Found>> = vec![Vec::new(); requests.len()];
    let no_api = NoApi::default();
    // Registries that could not be reached, with why.
    let mut failed_hosts: HashMap<String, String> = HashMap::new();
    // Images whose referrers are looked for once every manifest is in.
    let mut pending: Vec<(usize, Arc<Remote>, Vec<Digest>)> = Vec::new();
    let need =
        |needed: &mut BTreeMap<Digest, Needed>, i: usize, host: &str, blobs: Vec<Descriptor>| {
            let repo = requests[i].reference.repository();
            for b in blobs {
                needed
                    .entry(b.digest)
                    .or_insert_with(|| Needed {
                        size: b.size,
                        host: host.to_owned(),
                        repo: repo.to_owned(),
                        users: Vec::new(),
                    })
                    .users
                    .push(i);
            }
        };

    // One client per registry, before anything else (few: one per host).
    for req in requests {
        let host = req.reference.registry();
        if remotes.contains_key(host) || failed_hosts.contains_key(host) {
            continue;
        }
        match Remote::connect(host, &opts.remote).await {
            Ok(r) => {
                remotes.insert(host.to_owned(), Arc::new(r));
            }
            Err(e) => {
                failed_hosts.insert(host.to_owned(), error_chain(&e));
            }
        }
    }

    // Manifests first: every image's at once (a bounded number at a time;
    // they are small, so what they cost is round trips, which overlap).
    // Results keep the requests' order, so the plan is the same whatever
    // answers first.
    reporter.start("resolving images", 0);
    let resolved: Vec<_> = stream::iter(requests.iter().enumerate())
        .map(|(i, req)| {
            let host = req.reference.registry().to_owned();
            let remote = remotes.get(&host).cloned();
            let failed = failed_hosts.get(&host).cloned();
            let store = &store;
            async move {
                let Some(remote) = remote else {
                    return (i, host, None, Err(failed.unwrap_or_default()));
                };
                let mut found = Resolved::default();
                let r = resolve(&remote, store, req, &mut found).await;
                (i, host, Some((remote, found)), r)
            }
        })
        .buffered(resolve_at_once(opts.jobs))
        .collect()
        .await;
    for (i, host, got, r) in resolved {
        let Some((remote, found)) = got else {
            results.push(r);
            continue;
        };
        counts.manifests += found.manifests;
        match r {
            Ok(root) => {
                need(&mut needed, i, &host, found.blobs);
                if requests[i].referrers {
                    pending.push((i, remote, found.docs));
                }
                results.push(Ok(root));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    reporter.finish();

    // The images' own blobs, and meanwhile the referrers of every image
    // (several images at once, each asking its places for a whole level of
    // documents at once): discovery is round trips, which the blob streams
    // hide, rather than a phase the first layer waits for.
    let users = |needed: &BTreeMap<Digest, Needed>, all: &mut HashMap<Digest, Vec<usize>>| {
        for (d, n) in needed {
            all.entry(*d).or_default().extend(n.users.iter().copied());
        }
    };
    let mut all_users: HashMap<Digest, Vec<usize>> = HashMap::new();
    users(&needed, &mut all_users);
    let first: std::collections::HashSet<Digest> = needed.keys().copied().collect();
    type Discovered = (usize, String, Result<(Vec<Found>, Asked), String>);
    let discovery = {
        let no_api = &no_api;
        let store = &store;
        stream::iter(pending)
            .map(move |(i, remote, docs)| async move {
                let mut asked = Asked::default();
                let repo = requests[i].reference.repository();
                let r = referrers::discover(&remote, store, repo, &docs, no_api, &mut asked)
                    .await
                    .map(|f| (f, asked));
                (i, remote.host().to_owned(), r)
            })
            .buffered(opts.jobs.clamp(1, 8))
            .collect::<Vec<Discovered>>()
    };
    let blobs = fetch_blobs(needed, &remotes, &store, opts.jobs, reporter, &mut counts);
    let (found, mut failed) = futures_util::future::join(discovery, blobs).await;
    let mut more: BTreeMap<Digest, Needed> = BTreeMap::new();
    for (i, host, r) in found {
        match r {
            Ok((f, asked)) => {
                counts.manifests += asked.pulled;
                counts.referrer_probes += asked.probes;
                counts.referrers += f.len();
                need(
                    &mut more,
                    i,
                    &host,
                    f.iter().flat_map(|x| x.blobs.iter().cloned()).collect(),
                );
                referrers[i] = f;
            }
            Err(e) => {
                results[i] = Err(format!("{}: finding referrers: {e}", requests[i].reference))
            }
        }
    }
    // Then the referrers' own blobs (those not among the images').
    users(&more, &mut all_users);
    more.retain(|d, _| !first.contains(d));
    if !more.is_empty() {
        failed.extend(fetch_blobs(more, &remotes, &store, opts.jobs, reporter, &mut counts).await);
    }
    for (d, msg) in failed {
        for &u in all_users.get(&d).map(Vec::as_slice).unwrap_or_default() {
            if results[u].is_ok() {
                results[u] = Err(msg.clone());
            }
        }
    }
    // What each reference resolved to, for `ferry cache` (only images
    // fetched whole are recorded).
    let now = cache::now();
    for (req, result) in requests.iter().zip(results.iter_mut()) {
        let Ok(root) = result else { continue };
        let record = Record {
            source: Source::Registry {
                reference: req.reference.to_string(),
            },
            digest: root.digest,
            media_type: root.media_type.clone(),
            size: root.size,
            platforms: req
                .platforms
                .as_ref()
                .map(|ps| ps.iter().map(ToString::to_string).collect()),
            last_used: now,
        };
        if let Err(e) = cache::write_record(&opts.cache, &record) {
            *result = Err(error_chain(&e));
        }
    }
    Ok(FetchReport {
        results,
        referrers,
        counts,
    })
}

/// Fetches `needed` into the store, a bounded number at once: blobs
/// already cached are re-hashed (in parallel) rather than trusted, and a
/// damaged one is fetched again. Returns the blobs that could not be had,
/// with why.
async fn fetch_blobs(
    mut needed: BTreeMap<Digest, Needed>,
    remotes: &HashMap<String, Arc<Remote>>,
    store: &Store,
    jobs: usize,
    reporter: &dyn Reporter,
    counts: &mut FetchCounts,
) -> Vec<(Digest, String)> {
    let cached: Vec<(Digest, bool)> = needed
        .par_iter()
        .filter(|(d, n)| store.has(d, n.size))
        .map(|(d, _)| {
            let whole =
                crate::base::digest::hash_file(&store.blob_path(d)).is_ok_and(|(h, _)| h == *d);
            (*d, whole)
        })
        .collect();
    for (d, whole) in cached {
        if whole {
            counts.blobs_cached += 1;
            needed.remove(&d);
        } else {
            counts.blobs_repaired += 1;
            let _ = fs_err::remove_file(store.blob_path(&d));
        }
    }

    let total: u64 = needed.values().map(|n| n.size).fold(0, u64::saturating_add);
    reporter.start("fetching blobs", total);
    let received = Arc::new(AtomicU64::new(0));
    let failures: Mutex<Vec<(Digest, String)>> = Mutex::new(Vec::new());
    let fetched = AtomicU64::new(0);
    let work = stream::iter(needed.iter().enumerate())
        .map(|(id, (d, n))| {
            let remote = remotes.get(&n.host).cloned();
            let received = received.clone();
            let failures = &failures;
            let fetched = &fetched;
            async move {
                let Some(remote) = remote else { return };
                let label = format!("{}…", &d.to_string()[..19]);
                reporter.item_start(id as u64, &label, n.size);
                let item = (reporter, id as u64);
                let r = fetch_blob(&remote, store, &n.repo, d, n.size, &received, item).await;
                reporter.item_finish(id as u64);
                match r {
                    Ok(()) => {
                        fetched.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((*d, error_chain(&e))),
                }
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect::<Vec<()>>();
    crate::base::report::with_progress(work, &received, reporter).await;
    reporter.finish();
    counts.blobs_fetched += fetched.load(Ordering::Relaxed) as usize;
    counts.bytes_fetched += received.load(Ordering::Relaxed);
    failures.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// How many images' manifests are resolved at once: twice the blobs in
/// flight (manifests are small; their cost is the round trip), at most 64.
fn resolve_at_once(jobs: usize) -> usize {
    (jobs.max(1) * 2).min(64)
}

/// How many children of one level of an image's indexes are pulled at once.
const CHILDREN_AT_ONCE: usize = 8;

/// What resolving one image found.
#[derive(Default)]
struct Resolved {
    /// The blobs its manifests name (configs and layers).
    blobs: Vec<Descriptor>,
    /// Every document pulled (for referrer discovery).
    docs: Vec<Digest>,
    /// Manifests and indexes pulled.
    manifests: usize,
}

/// Pulls the manifests of one image into the store and lists its blobs:
/// the root, then each level of indexes' children at once.
async fn resolve(
    remote: &Remote,
    store: &Store,
    req: &FetchRequest,
    found: &mut Resolved,
) -> Result<Descriptor, String> {
    let r = &req.reference;
    let repo = r.repository();
    let reference = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    let (bytes, digest) = remote
        .pull_manifest(repo, &reference)
        .await
        .map_err(|e| error_chain(&e))?;
    found.manifests += 1;
    // Pulled by tag or digest: nothing declared its kind, so the document
    // says what it is (and must say it unambiguously).
    let node =
        oci::parse_node(digest, "", &bytes).map_err(|e| format!("{r}: {}", error_chain(&e)))?;
    let root = Descriptor::new(&node.media_type(), digest, bytes.len() as u64);
    put_small(store, &bytes, digest)?;
    found.docs.push(digest);
    let mut level: Vec<Node> = vec![node];
    // Each document is pulled once, however often the graph names it.
    let mut pulled = std::collections::HashSet::from([digest]);
    let mut depth = 0;
    while !level.is_empty() {
        let mut children: Vec<Descriptor> = Vec::new();
        for node in level {
            match node {
                Node::Index(i) => {
                    let kept = if depth == 0 {
                        crate::connected::source::choose_children(
                            &i,
                            req.platforms.as_deref(),
                            &r.to_string(),
                        )
                        .map_err(|e| error_chain(&e))?
                        .0
                    } else {
                        i.manifests.clone()
                    };
                    if depth >= oci::MAX_DEPTH {
                        return Err(format!(
                            "{r}: indexes nest deeper than {} levels",
                            oci::MAX_DEPTH
                        ));
                    }
                    children.extend(kept.into_iter().filter(|c| pulled.insert(c.digest)));
                }
                Node::Manifest(m) => {
                    found.blobs.push(m.config.clone());
                    found.blobs.extend(m.layers.iter().cloned());
                }
            }
        }
        // The whole level at once, kept in its order.
        let pulls: Vec<Result<(Node, Digest), String>> = stream::iter(children)
            .map(|c| async move {
                let (bytes, d) = remote
                    .pull_manifest(repo, &c.digest.to_string())
                    .await
                    .map_err(|e| error_chain(&e))?;
                let node =
                    oci::parse_node(d, &c.media_type, &bytes).map_err(|e| error_chain(&e))?;
                put_small(store, &bytes, d)?;
                Ok((node, d))
            })
            .buffered(CHILDREN_AT_ONCE)
            .collect()
            .await;
        level = Vec::new();
        for p in pulls {
            let (node, d) = p?;
            found.manifests += 1;
            found.docs.push(d);
            level.push(node);
        }
        depth += 1;
    }
    Ok(root)
}

fn put_small(store: &Store, bytes: &[u8], d: Digest) -> Result<(), String> {
    store
        .put(bytes, Some((d, bytes.len() as u64)), "the registry")
        .map(|_| ())
        .map_err(|e| format!("storing manifest {d} in the cache: {}", error_chain(&e)))
}

/// Downloads one blob into the store: streamed into a temp file by a
/// blocking thread that hashes as it writes, renamed only when whole.
async fn fetch_blob(
    remote: &Remote,
    store: &Store,
    repo: &str,
    d: &Digest,
    size: u64,
    received: &Arc<AtomicU64>,
    (reporter, id): (&dyn Reporter, u64),
) -> Result<(), RemoteError> {
    // Bytes this blob's current attempt has counted into `received`: a
    // retried download takes back its earlier attempt's count, so the bar
    // never runs past its total.
    let this_blob = Arc::new(AtomicU64::new(0));
    remote
        .pull_blob(repo, d, |body: BlobBody| {
            let earlier = this_blob.swap(0, Ordering::Relaxed);
            let _ = received.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(r.saturating_sub(earlier))
            });
            let this_blob = this_blob.clone();
            let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
            let root = store.root().to_owned();
            let (d, received) = (*d, received.clone());
            let from = format!("{}/{repo}", remote.host());
            let writer = tokio::task::spawn_blocking(move || {
                let store = Store::create_cache(&root)?;
                store
                    .put(
                        crate::shared::transport::ChannelReader::new(rx, received),
                        Some((d, size)),
                        &from,
                    )
                    .map(|_| ())
            });
            async move {
                let mut body = body;
                while let Some(chunk) = body.next().await {
                    let failed = chunk.is_err();
                    let len = chunk.as_ref().map_or(0, |c| c.len() as u64);
                    if tx.send(chunk).await.is_err() || failed {
                        break;
                    }
                    // Sent is received: the writer counts it as it reads.
                    this_blob.fetch_add(len, Ordering::Relaxed);
                    reporter.item_advance(id, len);
                }
                drop(tx);
                match writer.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(io::Error::other(error_chain(&e))),
                    Err(e) => Err(io::Error::other(e.to_string())),
                }
            }
        })
        .await
}
