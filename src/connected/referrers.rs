//! Finding the signatures, attestations, SBOMs and other artifacts that
//! refer to an image, at fetch time, so they travel with it.
//!
//! For each document carried (an image's index and each child kept), three
//! places are asked, cheapest first: the OCI referrers API
//! (`/v2/<name>/referrers/<digest>`, every page; a registry without it
//! answers 404 or 400, remembered per registry, and then the referrers tag
//! schema's fallback index, tag `sha256-<hex>`, is looked for with a
//! `HEAD`), and cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom`, each
//! a `HEAD`. Only what exists is fetched (`GET`), so a registry that counts
//! manifest pulls (Docker Hub) is charged for what is carried. Each
//! referrer is pulled by digest as raw bytes, parsed strictly, checked to
//! name the subject it was listed for (cosign's tags have no `subject`
//! field and are tied by their tag), and then asked in turn for its own
//! referrers (a signature on an SBOM), to [`MAX_DEPTH`] levels. Every
//! document is taken once, so a cycle ends; a registry listing more than
//! [`MAX_PER_IMAGE`] referrers for one image is refused.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::format::bundle::{FoundBy, ReferrerKind};
use crate::format::cosign;
use crate::format::layout::Store;
use crate::format::oci::{self, Descriptor, Node};
use crate::shared::remote::Remote;

/// How many levels of referrers are followed: the image's own (1), theirs
/// (2: a signature on an SBOM), and one more.
pub const MAX_DEPTH: usize = 3;
/// The most referrers carried for one image, all levels together.
pub const MAX_PER_IMAGE: usize = 1000;
/// cosign's tag suffixes, with what each holds.
pub const COSIGN_SUFFIXES: [(&str, ReferrerKind); 3] = [
    ("sig", ReferrerKind::Signature),
    ("att", ReferrerKind::Attestation),
    ("sbom", ReferrerKind::Sbom),
];

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

/// The tag the referrers tag schema keeps `d`'s fallback index under.
pub fn fallback_tag(d: &Digest) -> String {
    format!("sha256-{}", d.hex())
}

/// Finds the referrers of `subjects` (documents of one image in `repo`)
/// and of those referrers, pulls their documents into `store`, and
/// returns them in the order found. `Err` names what went wrong.
pub async fn discover(
    remote: &Remote,
    store: &Store,
    repo: &str,
    subjects: &[Digest],
    no_api: &NoApi,
    asked: &mut Asked,
) -> Result<Vec<Found>, String> {
    let mut taken: HashSet<Digest> = subjects.iter().copied().collect();
    let mut queue: VecDeque<(Digest, usize)> = subjects.iter().map(|d| (*d, 1)).collect();
    let mut out: Vec<Found> = Vec::new();
    while let Some((subject, depth)) = queue.pop_front() {
        let mut candidates: Vec<(Descriptor, FoundBy, Option<String>)> = Vec::new();
        let listed = if no_api.has(remote.host()) {
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
        match listed {
            Some(list) => {
                candidates.extend(list.into_iter().map(|d| (d, FoundBy::ReferrersApi, None)))
            }
            None => {
                let tag = fallback_tag(&subject);
                asked.probes += 1;
                if let Some(d) = remote
                    .manifest_digest(repo, &tag)
                    .await
                    .map_err(|e| error_chain(&e))?
                {
                    let (bytes, d) = remote
                        .pull_manifest(repo, &d.to_string())
                        .await
                        .map_err(|e| error_chain(&e))?;
                    asked.pulled += 1;
                    let index = match oci::parse_node(d, "", &bytes) {
                        Ok(Node::Index(i)) => i,
                        Ok(Node::Manifest(_)) => {
                            return Err(format!(
                            "{}/{repo}:{tag}, the referrers tag schema's index for {subject}, is a manifest, not an index",
                            remote.host()
                        ))
                        }
                        Err(e) => {
                            return Err(format!(
                                "{}/{repo}:{tag}, the referrers tag schema's index for {subject}: {}",
                                remote.host(),
                                error_chain(&e)
                            ))
                        }
                    };
                    candidates.extend(
                        index
                            .manifests
                            .into_iter()
                            .map(|d| (d, FoundBy::TagSchema, None)),
                    );
                }
            }
        }
        for (suffix, _) in COSIGN_SUFFIXES {
            let tag = format!("{}.{suffix}", fallback_tag(&subject));
            asked.probes += 1;
            if let Some(d) = remote
                .manifest_digest(repo, &tag)
                .await
                .map_err(|e| error_chain(&e))?
            {
                // The media type comes with the pull.
                candidates.push((Descriptor::new("", d, 0), FoundBy::CosignTag, Some(tag)));
            }
        }
        for (listed, found, tag) in candidates {
            if !taken.insert(listed.digest) {
                continue;
            }
            if out.len() >= MAX_PER_IMAGE {
                return Err(format!(
                    "{}/{repo} lists more than {MAX_PER_IMAGE} referrers for one image (signatures, attestations, SBOMs), ferry's limit; carry it with `referrers: false`",
                    remote.host()
                ));
            }
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
            asked.pulled += 1;
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
            let (artifact_type, blobs) = match &node {
                Node::Manifest(m) => {
                    let mut blobs = vec![m.config.clone()];
                    blobs.extend(m.layers.iter().cloned());
                    (
                        m.artifact_type
                            .clone()
                            .or_else(|| Some(m.config.media_type.clone())),
                        blobs,
                    )
                }
                Node::Index(i) => {
                    let blobs = pull_children(remote, store, repo, i, asked, &where_).await?;
                    (i.artifact_type.clone(), blobs)
                }
            };
            let kind = ReferrerKind::from(cosign::classify(&bytes, tag.as_deref()));
            out.push(Found {
                subject,
                root: Descriptor::new(&media_type, d, bytes.len() as u64),
                artifact_type,
                kind,
                found,
                tag,
                blobs,
            });
            if depth < MAX_DEPTH {
                queue.push_back((d, depth + 1));
            }
        }
    }
    Ok(out)
}

/// Pulls the child manifests of a referrer that is an index (every one:
/// no platform filter applies to an artifact) and returns their blobs.
async fn pull_children(
    remote: &Remote,
    store: &Store,
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

fn put_small(store: &Store, bytes: &[u8], d: Digest) -> Result<(), String> {
    store
        .put(bytes, Some((d, bytes.len() as u64)), "the registry")
        .map(|_| ())
        .map_err(|e| format!("storing manifest {d} in the cache: {}", error_chain(&e)))
}
