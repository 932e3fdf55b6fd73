//! Putting referrers (signatures, attestations, SBOMs) into a registry
//! after their subjects, so that the far side's policy engines find them
//! where they look.
//!
//! Each referrer's manifest is pushed unchanged, by digest (its blobs are
//! already in place: they go through the blob pool like any layer). Then:
//!
//! - a referrer whose `subject` names its subject is listed by a registry
//!   with the referrers API, which says so with `OCI-Subject` on the push;
//!   when that header does not come (or the manifest was there already),
//!   the API is asked once per subject, and a registry without it (it
//!   answers 404 or 400) gets the tag schema's fallback index, tag
//!   `sha256-<hex>` of the subject, kept as the distribution spec
//!   describes: read what is there, add what is missing, push it back;
//! - a referrer found under cosign's tag (`sha256-<hex>.sig`, `.att`,
//!   `.sbom`) is pushed under that tag. cosign rewrites those manifests
//!   each time it adds a signature, so a tag that already holds another
//!   manifest is merged with it (its layers and ours, each once), not
//!   refused, and the outcome says so.
//!
//! The referrers of one subject in one repository are handled in order by
//! one task (they share the fallback index); subjects go in parallel. A
//! re-run finds everything in place and pushes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use futures_util::stream::{self, StreamExt};

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::format::oci::{self, Descriptor, Node};
use crate::shared::push::{self, Document, PushOptions, Tally};
use crate::shared::remote::Remote;

/// One referrer to push into one repository.
#[derive(Debug, Clone)]
pub struct ReferrerPush {
    /// The target repository (where its subject is).
    pub repository: String,
    /// The document it refers to.
    pub subject: Digest,
    /// Its documents, children first, its own manifest last.
    pub documents: Vec<Document>,
    /// Its blobs (it is pushed only when all are in place).
    pub blobs: Vec<Digest>,
    /// How a referrers list names it: media type, digest, size, artifact
    /// type and the manifest's annotations.
    pub listed: Descriptor,
    /// Whether its `subject` field names `subject` (else it is tied to it
    /// only by its tag, as cosign's `.sig` manifests are).
    pub has_subject: bool,
    /// cosign's tag, when it came under one.
    pub tag: Option<String>,
}

/// What happened to one referrer in one repository, as `load` and
/// `mirror` report it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReferrerReport {
    /// Signature, attestation, SBOM or other.
    pub kind: crate::format::bundle::ReferrerKind,
    /// Its digest (the target holds exactly these bytes).
    pub digest: Digest,
    /// The document it refers to.
    pub subject: Digest,
    /// `HOST[:PORT]/REPOSITORY`.
    pub target: String,
    /// cosign's tag, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Whether it is (or, in a dry run, could be) in place.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was done beside the push: fallback indexes, merged tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What happened to one referrer.
#[derive(Debug, Clone, Default)]
pub struct ReferrerOutcome {
    /// Why it could not be put in place, if it could not.
    pub error: Option<String>,
    /// What was done beyond the push: a fallback index made or updated, a
    /// cosign tag merged.
    pub notes: Vec<String>,
}

/// The tag the referrers tag schema keeps `subject`'s fallback index under.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// Pushes `items` (their blobs are in place unless `failed_blobs` says
/// otherwise); the referrers of one (repository, subject) in order, the
/// groups `opts.jobs` at once. Returns each item's outcome, in order.
pub async fn push_referrers(
    remote: &Remote,
    items: &[ReferrerPush],
    failed_blobs: &HashMap<Digest, String>,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Vec<ReferrerOutcome> {
    let mut groups: BTreeMap<(&str, Digest), Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        groups
            .entry((it.repository.as_str(), it.subject))
            .or_default()
            .push(i);
    }
    let results: Vec<Vec<(usize, ReferrerOutcome)>> = stream::iter(groups)
        .map(|((repo, subject), members)| async move {
            push_group(
                remote,
                repo,
                &subject,
                items,
                &members,
                failed_blobs,
                opts,
                tally,
            )
            .await
        })
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    let mut out = vec![ReferrerOutcome::default(); items.len()];
    for (i, o) in results.into_iter().flatten() {
        if let Some(slot) = out.get_mut(i) {
            *slot = o;
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn push_group(
    remote: &Remote,
    repo: &str,
    subject: &Digest,
    items: &[ReferrerPush],
    members: &[usize],
    failed_blobs: &HashMap<Digest, String>,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Vec<(usize, ReferrerOutcome)> {
    let mut out = Vec::new();
    // Referrers the registry did not say it indexed: for the fallback.
    let mut unindexed: Vec<Descriptor> = Vec::new();
    let mut unindexed_at: Vec<usize> = Vec::new();
    for &i in members {
        let Some(it) = items.get(i) else { continue };
        let mut o = ReferrerOutcome::default();
        if let Some(e) = it.blobs.iter().find_map(|d| failed_blobs.get(d)) {
            o.error = Some(e.clone());
            out.push((i, o));
            continue;
        }
        match push_one(remote, it, opts, tally, &mut o).await {
            Ok(indexed) => {
                if it.has_subject && !indexed {
                    unindexed.push(it.listed.clone());
                    unindexed_at.push(out.len());
                }
            }
            Err(e) => o.error = Some(e),
        }
        out.push((i, o));
    }
    if unindexed.is_empty() {
        return out;
    }
    // Does the registry list them itself? One question per subject.
    let listed = match remote.referrers(repo, subject).await {
        Ok(l) => l,
        Err(e) => {
            let e = error_chain(&e);
            for &k in &unindexed_at {
                if let Some((_, o)) = out.get_mut(k) {
                    o.error.get_or_insert_with(|| e.clone());
                }
            }
            return out;
        }
    };
    let missing: Vec<Descriptor> = match &listed {
        // The API lists what it indexed; in a dry run, what it would.
        Some(list) => {
            if !opts.dry_run {
                for d in &unindexed {
                    if !list.iter().any(|l| l.digest == d.digest) {
                        let e = format!(
                            "{}/{repo} has the referrers API but does not list {} as a referrer of {subject} after it was pushed",
                            remote.host(),
                            d.digest
                        );
                        for &k in &unindexed_at {
                            if let Some((_, o)) = out.get_mut(k) {
                                o.error.get_or_insert_with(|| e.clone());
                            }
                        }
                    }
                }
            }
            Vec::new()
        }
        None => unindexed,
    };
    if missing.is_empty() {
        return out;
    }
    match update_fallback(remote, repo, subject, &missing, opts, tally).await {
        Ok(Some(note)) => {
            if let Some(&k) = unindexed_at.first() {
                if let Some((_, o)) = out.get_mut(k) {
                    o.notes.push(note);
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            for &k in &unindexed_at {
                if let Some((_, o)) = out.get_mut(k) {
                    o.error.get_or_insert_with(|| e.clone());
                }
            }
        }
    }
    out
}

/// Pushes one referrer's documents by digest (children first), then its
/// cosign tag. `Ok(true)` when the registry said it indexed the subject.
async fn push_one(
    remote: &Remote,
    it: &ReferrerPush,
    opts: PushOptions,
    tally: &Mutex<Tally>,
    o: &mut ReferrerOutcome,
) -> Result<bool, String> {
    let repo = &it.repository;
    let mut indexed = false;
    for doc in &it.documents {
        let present = remote
            .manifest_digest(repo, &doc.digest.to_string())
            .await
            .map_err(|e| error_chain(&e))?;
        if present == Some(doc.digest) {
            push::lock(tally).counts.manifests_present += 1;
            continue;
        }
        if !opts.dry_run {
            indexed = remote
                .push_manifest_noting_subject(
                    repo,
                    &doc.digest.to_string(),
                    &doc.bytes,
                    &doc.media_type,
                )
                .await
                .map_err(|e| error_chain(&e))?;
        }
        push::lock(tally).counts.manifests_pushed += 1;
    }
    if let (Some(tag), Some(root)) = (&it.tag, it.documents.last()) {
        if let Some(note) = place_tag(remote, repo, tag, root, opts, tally).await? {
            o.notes.push(note);
        }
    }
    Ok(indexed)
}

/// Puts `root` under cosign's `tag`: pushed when the tag is absent, left
/// when it is there, merged when it holds another manifest of the same
/// shape (its layers, then ours that it lacks; its config). Returns a note
/// for a merge.
async fn place_tag(
    remote: &Remote,
    repo: &str,
    tag: &str,
    root: &Document,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Result<Option<String>, String> {
    let put_root = || {
        put(
            remote,
            repo,
            tag,
            &root.bytes,
            &root.media_type,
            opts,
            tally,
        )
    };
    let current = remote
        .manifest_digest(repo, tag)
        .await
        .map_err(|e| error_chain(&e))?;
    let Some(other) = current else {
        put_root().await?;
        return Ok(None);
    };
    if other == root.digest {
        push::lock(tally).counts.manifests_present += 1;
        return Ok(None);
    }
    let at = || format!("{}/{repo}:{tag}", remote.host());
    let (bytes, d) = remote
        .pull_manifest(repo, &other.to_string())
        .await
        .map_err(|e| error_chain(&e))?;
    let theirs = match oci::parse_node(d, "", &bytes) {
        Ok(Node::Manifest(m)) => m,
        Ok(Node::Index(_)) | Err(_) if opts.force => {
            put_root().await?;
            return Ok(Some(format!("{} replaced {other} (--force)", at())));
        }
        Ok(Node::Index(_)) => {
            return Err(format!(
                "{} holds an index ({other}), not a cosign manifest to merge {} into; it was left as it is (pass --force to replace it)",
                at(),
                root.digest
            ))
        }
        Err(e) => {
            return Err(format!(
                "{} holds {other}, which ferry cannot read to merge {} into ({}); it was left as it is (pass --force to replace it)",
                at(),
                root.digest,
                error_chain(&e)
            ))
        }
    };
    let Ok(Node::Manifest(ours)) = oci::parse_node(root.digest, &root.media_type, &root.bytes)
    else {
        return Err(format!(
            "{}: {} is not a manifest to merge",
            at(),
            root.digest
        ));
    };
    // Only cosign's signature and attestation manifests are merged, as
    // cosign merges them; anything else under the tag is not ours to
    // change.
    let signed_layers = |m: &oci::Manifest| {
        !m.layers.is_empty()
            && m.layers.iter().all(|l| {
                l.media_type == crate::format::cosign::SIMPLE_SIGNING
                    || l.media_type == crate::format::cosign::DSSE_ENVELOPE
            })
    };
    let mergeable = (tag.ends_with(".sig") || tag.ends_with(".att"))
        && signed_layers(&theirs)
        && signed_layers(&ours);
    if !mergeable {
        if !opts.force {
            return Err(format!(
                "{} holds {other}, which is not a cosign signature or attestation manifest to merge {} into; it was left as it is (pass --force to replace it)",
                at(),
                root.digest
            ));
        }
        put_root().await?;
        return Ok(Some(format!("{} replaced {other} (--force)", at())));
    }
    let mut merged = theirs.clone();
    let before = merged.layers.len();
    for l in ours.layers {
        if !merged.layers.iter().any(|x| x.digest == l.digest) {
            merged.layers.push(l);
        }
    }
    let added = merged.layers.len() - before;
    if added == 0 {
        push::lock(tally).counts.manifests_present += 1;
        return Ok(None);
    }
    // A config like cosign's, whose diff_ids list the merged layers (the
    // payloads are not compressed, so each is its own diff_id).
    let config = cosign_config(&merged.layers);
    let config_digest = Digest::of(&config);
    if !opts.dry_run {
        let body = bytes::Bytes::from(config.clone());
        let open = move || -> crate::shared::remote::BlobBody {
            let b = body.clone();
            stream::once(async move { Ok(b) }).boxed()
        };
        remote
            .push_blob(repo, &config_digest, config.len() as u64, &open, &|| false)
            .await
            .map_err(|e| error_chain(&e))?;
    }
    merged.config = Descriptor::new(oci::OCI_CONFIG, config_digest, config.len() as u64);
    let merged_bytes = oci::to_bytes(&merged);
    let media_type = merged
        .media_type
        .clone()
        .unwrap_or_else(|| oci::OCI_MANIFEST.to_owned());
    put(remote, repo, tag, &merged_bytes, &media_type, opts, tally).await?;
    Ok(Some(format!(
        "{} held other signatures ({other}); merged {added} layer{} of {} into it (now {})",
        at(),
        if added == 1 { "" } else { "s" },
        root.digest,
        Digest::of(&merged_bytes)
    )))
}

/// Adds `missing` to the fallback index of `subject` in `repo` (made when
/// absent). Returns a note saying what was done.
async fn update_fallback(
    remote: &Remote,
    repo: &str,
    subject: &Digest,
    missing: &[Descriptor],
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Result<Option<String>, String> {
    let tag = fallback_tag(subject);
    let at = || format!("{}/{repo}:{tag}", remote.host());
    let current = remote
        .manifest_digest(repo, &tag)
        .await
        .map_err(|e| error_chain(&e))?;
    let mut index = match current {
        None => oci::Index {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        },
        Some(d) => {
            let (bytes, d) = remote
                .pull_manifest(repo, &d.to_string())
                .await
                .map_err(|e| error_chain(&e))?;
            match oci::parse_node(d, "", &bytes) {
                Ok(Node::Index(i)) => i,
                Ok(Node::Manifest(_)) if !opts.force => {
                    return Err(format!(
                        "{}, the referrers tag schema's index for {subject}, holds a manifest ({d}); it was left as it is (pass --force to replace it)",
                        at()
                    ))
                }
                Err(e) if !opts.force => {
                    return Err(format!(
                        "{}, the referrers tag schema's index for {subject}, cannot be read ({}); it was left as it is (pass --force to replace it)",
                        at(),
                        error_chain(&e)
                    ))
                }
                _ => oci::Index {
                    schema_version: 2,
                    media_type: Some(oci::OCI_INDEX.into()),
                    artifact_type: None,
                    manifests: Vec::new(),
                    subject: None,
                    annotations: BTreeMap::new(),
                },
            }
        }
    };
    let before = index.manifests.len();
    for d in missing {
        if !index.manifests.iter().any(|m| m.digest == d.digest) {
            index.manifests.push(d.clone());
        }
    }
    let added = index.manifests.len() - before;
    if added == 0 {
        push::lock(tally).counts.manifests_present += 1;
        return Ok(None);
    }
    let bytes = oci::to_bytes(&index);
    put(remote, repo, &tag, &bytes, oci::OCI_INDEX, opts, tally).await?;
    Ok(Some(match current {
        None => format!(
            "{} made: the registry has no referrers API, so the tag schema's index lists {added} referrer{}",
            at(),
            if added == 1 { "" } else { "s" }
        ),
        Some(_) => format!(
            "{} updated: {added} referrer{} added to the {before} listed",
            at(),
            if added == 1 { "" } else { "s" }
        ),
    }))
}

/// The image config cosign gives a signature or attestation manifest: no
/// platform, one diff_id per layer.
fn cosign_config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

/// Pushes `bytes` as `repo:reference` (not in a dry run) and counts it.
async fn put(
    remote: &Remote,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    opts: PushOptions,
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    if !opts.dry_run {
        remote
            .push_manifest(repo, reference, bytes, media_type)
            .await
            .map_err(|e| error_chain(&e))?;
    }
    push::lock(tally).counts.manifests_pushed += 1;
    Ok(())
}
