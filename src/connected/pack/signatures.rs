//! Signature checks at pack time: each image with `verify:` in the spec
//! (or every image, with `pack --cosign-key`) must have a good cosign
//! signature among the referrers planned for its root, under that key or
//! CA, before anything is written. The bytes come from the plan (the
//! verified cache or a local layout), each re-hashed as it is read. The
//! signature that passed is recorded in bundle.json (`verified_by`), so
//! `inspect` can say which key signed what.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use crate::base::digest::Digest;
use crate::format::cosign::{self, CosignError, Policy};
use crate::format::oci;

use super::plan::Plan;
use super::PackError;

/// What to check for one planned image.
pub(super) struct Wanted {
    /// Its index in `plan.artifacts`.
    pub(super) artifact: usize,
    /// The key or CA, and the reference rule.
    pub(super) policy: Policy,
    /// The file named, for messages.
    pub(super) trust: String,
}

/// One image whose signature passed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignatureCheck {
    /// The image, as carried.
    pub image: String,
    /// The signature manifest.
    pub signature: Digest,
    /// `simple-signing` or `sigstore-bundle`.
    pub form: &'static str,
    /// The key file, or the certificate's identity.
    pub signer: String,
    /// With a key: its file name (what bundle.json records).
    #[serde(skip)]
    pub key_file: Option<String>,
    /// The signed docker-reference, normalised, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_reference: Option<String>,
    /// For a CA: the time the certificate was checked at (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
}

/// The policy of an image's `verify:` rule, or of `--cosign-key`, checked
/// as valid now (pack time).
pub fn policy_of(
    rule: Option<&crate::connected::inputs::VerifyRule>,
    cli_key: Option<&Path>,
    image: &str,
) -> Result<Option<(Policy, String)>, PackError> {
    let bad = |source: CosignError| PackError::Signature {
        image: image.to_owned(),
        trust: rule
            .and_then(|r| r.cosign_key.as_deref().or(r.cosign_ca.as_deref()))
            .or(cli_key)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source,
        hint: String::new(),
    };
    let (key, ca, identity, identity_regex, crls, reference) = match rule {
        Some(r) => (
            r.cosign_key.as_deref(),
            r.cosign_ca.as_deref(),
            r.identity.as_deref(),
            r.identity_regex.as_deref(),
            r.crls.as_slice(),
            r.reference.clone(),
        ),
        None => (cli_key, None, None, None, &[][..], None),
    };
    let trust = key.or(ca).map(|p| p.display().to_string());
    let policy = Policy::from_files(
        key,
        ca,
        identity,
        identity_regex,
        crls,
        reference,
        SystemTime::now(),
    )
    .map_err(bad)?;
    Ok(policy.zip(trust))
}

/// Checks every wanted image; returns what passed, and marks each passing
/// signature in the plan. `left` lists the referrers a platform filter or
/// `--oci` left behind, by image, for the hint when nothing passes.
pub(super) fn check(
    plan: &mut Plan,
    wanted: &[Wanted],
    left: &HashMap<usize, Vec<Digest>>,
) -> Result<Vec<SignatureCheck>, PackError> {
    let mut out = Vec::new();
    for w in wanted {
        let Some((artifact, _)) = plan.artifacts.get(w.artifact) else {
            continue;
        };
        let (image, subject, source_digest) = (
            artifact.reference.clone(),
            artifact.digest,
            artifact.source_digest,
        );
        let candidates_of = |d: &Digest| -> Vec<(Digest, Vec<u8>)> {
            plan.referrers
                .iter()
                .filter(|(r, _)| r.subject == *d)
                .filter_map(|(r, _)| {
                    read(plan, &r.digest, oci::MANIFEST_MAX_BYTES)
                        .ok()
                        .map(|b| (r.digest, b))
                })
                .collect()
        };
        // An index the platform filter made: its kept children, each of
        // which may carry its own signature.
        let children: Vec<Digest> = match source_digest {
            Some(_) => read(plan, &subject, oci::MANIFEST_MAX_BYTES)
                .ok()
                .and_then(|b| oci::parse_node(subject, "", &b).ok())
                .map(|n| match n {
                    oci::Node::Index(i) => i.manifests.iter().map(|m| m.digest).collect(),
                    oci::Node::Manifest(_) => Vec::new(),
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut read_blob = |d: &oci::Descriptor| {
            read(
                plan,
                &d.digest,
                cosign::PAYLOAD_MAX_BYTES.max(oci::MANIFEST_MAX_BYTES),
            )
            .map_err(|e| CosignError::read(d.digest, e))
        };
        match cosign::verify_image(
            &subject,
            &children,
            &candidates_of,
            &w.policy,
            &mut read_blob,
        ) {
            Ok(v) => out.push(SignatureCheck {
                image: image.clone(),
                signature: v.signature_digest,
                form: v.form.as_str(),
                key_file: match &w.policy.trust {
                    cosign::Trust::Key(_) => Path::new(&w.trust)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned()),
                    cosign::Trust::Ca(_) => None,
                },
                signer: v.signer.clone(),
                docker_reference: v.docker_reference.clone(),
                checked_at: v.checked_at.map(rfc3339),
            }),
            Err(source) => {
                let hint = match (source_digest, left.get(&w.artifact)) {
                    (Some(src), Some(l)) if !l.is_empty() => format!(
                        " ({} referrer(s) were made for {src}, the index before the platform filter or --oci, and cannot cover the new {subject}: keep all platforms for this image, or sign each platform's manifest)",
                        l.len()
                    ),
                    (Some(src), _) => format!(
                        " (the bundle carries {subject}, a new index the platform filter or --oci made from {src}, which no signature covers: keep all platforms, or sign each platform's manifest)"
                    ),
                    _ => String::new(),
                };
                return Err(PackError::Signature {
                    image,
                    trust: w.trust.clone(),
                    source,
                    hint,
                });
            }
        }
    }
    for c in &out {
        if let Some((r, _)) = plan
            .referrers
            .iter_mut()
            .find(|(r, _)| r.digest == c.signature)
        {
            // The key's file name, not its path: the archive's bytes must
            // not depend on where the spec or key was (and must not leak
            // local paths). A certificate's identity is kept whole.
            r.verified_by = Some(match &c.key_file {
                Some(name) => format!("key {name}"),
                None => c.signer.clone(),
            });
        }
    }
    Ok(out)
}

/// A planned blob's bytes, at most `max`, checked against its digest.
fn read(plan: &Plan, d: &Digest, max: u64) -> Result<Vec<u8>, std::io::Error> {
    let b = plan.blobs.get(d).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{d} is not in the bundle"),
        )
    })?;
    if b.size > max {
        return Err(std::io::Error::other(format!(
            "{d} is {} bytes, more than {max}",
            b.size
        )));
    }
    let mut buf = vec![0u8; b.size as usize];
    b.read_at(0, &mut buf)?;
    if Digest::of(&buf) != *d {
        return Err(std::io::Error::other(format!(
            "the bytes read for {d} do not match it"
        )));
    }
    Ok(buf)
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
