//! Finding the signatures, attestations, SBOMs and other artifacts that
//! refer to an image, at fetch time, so they travel with it.
//!
//! For each document carried (an image's index and each child kept), three
//! places are asked, cheapest first: the OCI referrers API
//! (`/v2/<name>/referrers/<digest>`, every page; a registry without it
//! answers 404 or 400, remembered per registry, and then the referrers tag
//! schema's fallback index, tag `sha256-<hex>`, is looked for), and
//! cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom`. Which of those
//! tags exist comes from the repository's tag list, read once; only those
//! are asked (`HEAD`, then `GET`), so a registry that counts manifest pulls
//! (Docker Hub) is charged for what is carried. A registry that will not
//! list its tags is asked with a `HEAD` per tag. Each
//! referrer is pulled by digest as raw bytes, parsed strictly, checked to
//! name the subject it was listed for (cosign's tags have no `subject`
//! field and are tied by their tag), and then asked in turn for its own
//! referrers (a signature on an SBOM), to [`MAX_DEPTH`] levels. Every
//! document is taken once, so a cycle ends; a registry listing more than
//! [`MAX_PER_IMAGE`] referrers for one image is refused.
//!
//! Where the documents pulled go is the caller's ([`DocumentSink`]):
//! `pack`'s fetch keeps them in the cache's store, `mirror` in memory.

use std::collections::HashSet;

use futures_util::stream::{self, StreamExt};
use std::sync::Mutex;

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::format::bundle::{FoundBy, ReferrerKind, COSIGN_TAG_SUFFIXES};
use crate::format::cosign;
use crate::format::layout::Store;
use crate::format::oci::{self, Descriptor, Node};
use crate::shared::remote::Remote;

/// How many levels of referrers are followed: the image's own (1), theirs
/// (2: a signature on an SBOM), and one more.
pub const MAX_DEPTH: usize = 3;
/// The most referrers carried for one image, all levels together.
pub const MAX_PER_IMAGE: usize = 1000;

/// One referrer found, pulled into the store with its documents.
#[derive(Debug, Clone)]
pub struct Found {
    /// The document it refers to.
    pub subject: Digest,
    /// Its root document.
    pub root: Descriptor,
    /// Its artifact type (the manifest's `artifactType`, else its config's
    /// media type).
    pub artifact_type: Option<String>,
    /// What it is.
    pub kind: ReferrerKind,
    /// Where it was found.
    pub found: FoundBy,
    /// cosign's tag, when found by it.
    pub tag: Option<String>,
    /// Its blobs that are not documents (configs and layers), to fetch.
    pub blobs: Vec<Descriptor>,
}

/// Where the documents discovery pulls (each referrer's manifest or index,
/// and an index's children) go, each already checked against its digest.
pub trait DocumentSink: Sync {
    /// Keeps `bytes`, whose digest is `digest`; `Err` says why it could
    /// not.
    fn put(&self, bytes: &[u8], digest: Digest) -> Result<(), String>;
}

/// The cache's store, for `pack`.
impl DocumentSink for Store {
    fn put(&self, bytes: &[u8], d: Digest) -> Result<(), String> {
        Store::put(self, bytes, Some((d, bytes.len() as u64)), "the registry")
            .map(|_| ())
            .map_err(|e| format!("storing manifest {d} in the cache: {}", error_chain(&e)))
    }
}

/// Registries seen to have no referrers API in this run (asked once).
#[derive(Debug, Default)]
pub struct NoApi(Mutex<HashSet<String>>);

impl NoApi {
    fn has(&self, host: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(host)
    }

    fn add(&self, host: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_owned());
    }
}

/// Requests discovery made, for the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    /// Manifests and indexes pulled (`GET`).
    pub pulled: usize,
    /// Probes (`HEAD` of a tag, a referrers API page).
    pub probes: usize,
}

impl Asked {
    fn add(&mut self, other: Asked) {
        self.pulled += other.pulled;
        self.probes += other.probes;
    }
}

/// The tag the referrers tag schema keeps `d`'s fallback index under.
pub fn fallback_tag(d: &Digest) -> String {
    format!("sha256-{}", d.hex())
}

/// Requests in flight at once while looking for one image's referrers.
const IN_FLIGHT: usize = 8;

/// A referrer listed for `subject`, not yet pulled.
struct Listed {
    subject: Digest,
    descriptor: Descriptor,
    found: FoundBy,
    tag: Option<String>,
}

/// Finds the referrers of `subjects` (documents of one image in `repo`)
/// and of those referrers, pulls their documents into `store`, and
/// returns them in a fixed order (level by level, each subject's in the
/// order the registry listed them, then cosign's tags). The places are
/// asked for every subject of a level at once, `IN_FLIGHT` (8) requests at
/// a time, and the referrers found are pulled the same way, so the time
/// taken grows with the levels, not with the subjects. `Err` names what
/// went wrong.
pub async fn discover(
    remote: &Remote,
    store: &dyn DocumentSink,
    repo: &str,
    subjects: &[Digest],
    no_api: &NoApi,
    asked: &mut Asked,
) -> Result<Vec<Found>, String> {
    let mut taken: HashSet<Digest> = subjects.iter().copied().collect();
    let mut level: Vec<Digest> = subjects.to_vec();
    // The repository's tags, read once (a page per 1,000 tags): then the
    // fallback and cosign tags that do not exist cost no request at all.
    // A registry that will not list them is asked tag by tag.
    asked.probes += 1;
    let tags: Option<HashSet<String>> = remote
        .list_tags(repo)
        .await
        .ok()
        .map(|t| t.into_iter().filter(|t| t.starts_with("sha256-")).collect());
    let tags = tags.as_ref();
    let mut out: Vec<Found> = Vec::new();
    for depth in 1..=MAX_DEPTH {
        if level.is_empty() {
            break;
        }
        // Where each subject's referrers are listed, in subject order,
        // counted as each answer arrives: past the bound, the rest is not
        // waited for.
        let too_many = || {
            format!(
                "{}/{repo} lists more than {MAX_PER_IMAGE} referrers for one image (signatures, attestations, SBOMs), ferry's limit; carry it with `referrers: false`",
                remote.host()
            )
        };
        let mut probed = stream::iter(level.iter())
            .map(|subject| probe(remote, repo, *subject, no_api, tags))
            .buffered(IN_FLIGHT);
        let mut listed = Vec::new();
        while let Some(p) = probed.next().await {
            let (l, a) = p?;
            asked.add(a);
            for x in l {
                if taken.insert(x.descriptor.digest) {
                    listed.push(x);
                }
            }
            if out.len() + listed.len() > MAX_PER_IMAGE {
                return Err(too_many());
            }
        }
        drop(probed);
        let pulled: Vec<Result<(Found, usize), String>> = stream::iter(listed)
            .map(|x| pull(remote, store, repo, x))
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        level = Vec::new();
        for p in pulled {
            let (f, n) = p?;
            asked.pulled += n;
            if depth < MAX_DEPTH {
                level.push(f.root.digest);
            }
            out.push(f);
        }
    }
    Ok(out)
}

/// The referrers listed for `subject`: the referrers API (or, without
/// it, the tag schema's fallback index), then cosign's tags.
async fn probe(
    remote: &Remote,
    repo: &str,
    subject: Digest,
    no_api: &NoApi,
    tags: Option<&HashSet<String>>,
) -> Result<(Vec<Listed>, Asked), String> {
    let mut asked = Asked::default();
    let mut listed = Vec::new();
    let api = if no_api.has(remote.host()) {
        None
    } else {
        asked.probes += 1;
        let r = remote
            .referrers(repo, &subject)
            .await
            .map_err(|e| error_chain(&e))?;
        if r.is_none() {
            no_api.add(remote.host());
        }
        r
    };
    let entry = |descriptor, found, tag| Listed {
        subject,
        descriptor,
        found,
        tag,
    };
    match api {
        Some(list) => listed.extend(
            list.into_iter()
                .map(|d| entry(d, FoundBy::ReferrersApi, None)),
        ),
        None => {
            let tag = fallback_tag(&subject);
            let listed_tag = tags.is_none_or(|t| t.contains(&tag));
            if listed_tag {
                asked.probes += 1;
            }
            let head = match listed_tag {
                true => remote
                    .manifest_digest(repo, &tag)
                    .await
                    .map_err(|e| error_chain(&e))?,
                false => None,
            };
            if let Some(d) = head {
                let (bytes, d) = remote
                    .pull_manifest(repo, &d.to_string())
                    .await
                    .map_err(|e| error_chain(&e))?;
                asked.pulled += 1;
                let at = || format!("{}/{repo}:{tag}", remote.host());
                let index = match oci::parse_node(d, "", &bytes) {
                    Ok(Node::Index(i)) => i,
                    Ok(Node::Manifest(_)) => {
                        return Err(format!(
                            "{}, the referrers tag schema's index for {subject}, is a manifest, not an index",
                            at()
                        ))
                    }
                    Err(e) => {
                        return Err(format!(
                            "{}, the referrers tag schema's index for {subject}: {}",
                            at(),
                            error_chain(&e)
                        ))
                    }
                };
                if index.manifests.len() > crate::shared::remote::REFERRERS_ENTRIES_MAX {
                    return Err(format!(
                        "{} lists {} referrers of {subject}, more than ferry's limit of {}",
                        at(),
                        index.manifests.len(),
                        crate::shared::remote::REFERRERS_ENTRIES_MAX
                    ));
                }
                listed.extend(
                    index
                        .manifests
                        .into_iter()
                        .map(|d| entry(d, FoundBy::TagSchema, None)),
                );
            }
        }
    }
    // cosign's three tags, asked at once.
    // With the repository's tag list, only the tags that exist are asked.
    let cosign_tags: Vec<String> = COSIGN_TAG_SUFFIXES
        .iter()
        .map(|suffix| format!("{}.{suffix}", fallback_tag(&subject)))
        .filter(|t| tags.is_none_or(|all| all.contains(t)))
        .collect();
    asked.probes += cosign_tags.len();
    let heads =
        futures_util::future::join_all(cosign_tags.iter().map(|t| remote.manifest_digest(repo, t)))
            .await;
    for (tag, head) in cosign_tags.into_iter().zip(heads) {
        if let Some(d) = head.map_err(|e| error_chain(&e))? {
            // The media type comes with the pull.
            listed.push(entry(
                Descriptor::new("", d, 0),
                FoundBy::CosignTag,
                Some(tag),
            ));
        }
    }
    Ok((listed, asked))
}

/// Pulls one listed referrer (and, for an index, its children) into the
/// store, checking it names the subject it was listed for. Returns it with
/// the number of documents pulled.
async fn pull(
    remote: &Remote,
    store: &dyn DocumentSink,
    repo: &str,
    x: Listed,
) -> Result<(Found, usize), String> {
    let Listed {
        subject,
        descriptor: listed,
        found,
        tag,
    } = x;
    if !listed.media_type.is_empty() && !oci::is_manifest_like(&listed.media_type) {
        return Err(format!(
            "{}/{repo}: a referrer of {subject} is listed as {} with media type {:?}, which is not a manifest",
            remote.host(),
            listed.digest,
            listed.media_type
        ));
    }
    let (bytes, d) = remote
        .pull_manifest(repo, &listed.digest.to_string())
        .await
        .map_err(|e| error_chain(&e))?;
    let mut asked = Asked {
        pulled: 1,
        probes: 0,
    };
    let where_ = || format!("{}/{repo}@{d} (a referrer of {subject})", remote.host());
    let node = oci::parse_node(d, &listed.media_type, &bytes)
        .map_err(|e| format!("{}: {}", where_(), error_chain(&e)))?;
    let named_subject = match &node {
        Node::Manifest(m) => m.subject.as_ref(),
        Node::Index(i) => i.subject.as_ref(),
    }
    .map(|s| s.digest);
    if found != FoundBy::CosignTag && named_subject != Some(subject) {
        return Err(format!(
            "{}: it is listed as a referrer of {subject} but its subject is {}",
            where_(),
            named_subject.map_or("absent".to_owned(), |s| s.to_string())
        ));
    }
    put_small(store, &bytes, d)?;
    let media_type = node.media_type();
    let artifact_type = node.artifact_type();
    let blobs = match &node {
        Node::Manifest(m) => {
            let mut blobs = vec![m.config.clone()];
            blobs.extend(m.layers.iter().cloned());
            blobs
        }
        Node::Index(i) => pull_children(remote, store, repo, i, &mut asked, &where_).await?,
    };
    let kind = ReferrerKind::from(cosign::classify(&bytes, tag.as_deref()));
    Ok((
        Found {
            subject,
            root: Descriptor::new(&media_type, d, bytes.len() as u64),
            artifact_type,
            kind,
            found,
            tag,
            blobs,
        },
        asked.pulled,
    ))
}

/// Pulls the child manifests of a referrer that is an index (every one:
/// no platform filter applies to an artifact) and returns their blobs.
async fn pull_children(
    remote: &Remote,
    store: &dyn DocumentSink,
    repo: &str,
    index: &oci::Index,
    asked: &mut Asked,
    where_: &dyn Fn() -> String,
) -> Result<Vec<Descriptor>, String> {
    let mut blobs = Vec::new();
    let mut todo: Vec<(oci::Index, usize)> = vec![(index.clone(), 1)];
    let mut seen = HashSet::new();
    while let Some((i, depth)) = todo.pop() {
        if depth >= oci::MAX_DEPTH {
            return Err(format!(
                "{}: indexes nest deeper than {} levels",
                where_(),
                oci::MAX_DEPTH
            ));
        }
        for c in &i.manifests {
            if !seen.insert(c.digest) {
                continue;
            }
            if seen.len() > MAX_PER_IMAGE {
                return Err(format!(
                    "{}: an index with more than {MAX_PER_IMAGE} documents, ferry's limit for one image's referrers",
                    where_()
                ));
            }
            let (bytes, d) = remote
                .pull_manifest(repo, &c.digest.to_string())
                .await
                .map_err(|e| error_chain(&e))?;
            asked.pulled += 1;
            let node = oci::parse_node(d, &c.media_type, &bytes)
                .map_err(|e| format!("{}: {}", where_(), error_chain(&e)))?;
            put_small(store, &bytes, d)?;
            match node {
                Node::Index(i) => todo.push((i, depth + 1)),
                Node::Manifest(m) => {
                    blobs.push(m.config.clone());
                    blobs.extend(m.layers);
                }
            }
        }
    }
    Ok(blobs)
}

fn put_small(store: &dyn DocumentSink, bytes: &[u8], d: Digest) -> Result<(), String> {
    store.put(bytes, d)
}
