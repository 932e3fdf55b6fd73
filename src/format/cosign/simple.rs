//! cosign's simple-signing form: a `.sig` manifest whose layers are
//! JSON payloads (`critical.image.docker-manifest-digest` names the image),
//! each with its base64 signature over the payload bytes in an annotation
//! and, when a certificate signed it, the PEM certificate and chain beside.

use serde::Deserialize;

use super::{x509, CosignError, Form, Outcome, Policy, Trust, Verified};
use crate::base::digest::Digest;
use crate::format::oci;

/// The `critical.type` of an image signature.
const SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(default)]
    identity: Option<Identity>,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference", default)]
    docker_reference: Option<String>,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Checks each simple-signing layer of `m`; good when one is.
pub(super) fn verify(
    subject: &Digest,
    signature: &Digest,
    m: &oci::Manifest,
    policy: &Policy,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Outcome {
    let mut worst: Option<CosignError> = None;
    for layer in m
        .layers
        .iter()
        .filter(|l| l.media_type == super::SIMPLE_SIGNING)
    {
        match verify_layer(subject, signature, layer, policy, read_blob) {
            Ok(v) => return Outcome::Good(v),
            Err(e) => {
                if worst
                    .as_ref()
                    .is_none_or(|w| super::rank(&e) > super::rank(w))
                {
                    worst = Some(e);
                }
            }
        }
    }
    match worst {
        Some(e) => Outcome::Bad(e),
        None => Outcome::NotSignature,
    }
}

fn verify_layer(
    subject: &Digest,
    signature: &Digest,
    layer: &oci::Descriptor,
    policy: &Policy,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Result<Verified, CosignError> {
    let malformed = |what: String| CosignError::Malformed {
        signature: *signature,
        what,
    };
    let ann = &layer.annotations;
    let sig_b64 = ann.get(super::ANN_SIGNATURE).ok_or_else(|| {
        malformed(format!(
            "payload {} has no {} annotation",
            layer.digest,
            super::ANN_SIGNATURE
        ))
    })?;
    let sig = super::base64_bytes(sig_b64).map_err(|e| {
        malformed(format!(
            "the signature of payload {} is not base64 ({e})",
            layer.digest
        ))
    })?;
    let keyless =
        ann.contains_key(super::ANN_CERTIFICATE) && ann.contains_key(super::ANN_REKOR_BUNDLE);
    let (key, signer) = match &policy.trust {
        Trust::Key(k) => (k.clone(), k.name().to_owned()),
        Trust::Ca(ca) => {
            let leaf_pem =
                ann.get(super::ANN_CERTIFICATE)
                    .ok_or_else(|| CosignError::NoCertificate {
                        signature: *signature,
                        ca: ca.path.clone(),
                    })?;
            let leaf = x509::pem_certs(leaf_pem).map_err(|e| {
                malformed(format!("its {} annotation is {e}", super::ANN_CERTIFICATE))
            })?;
            let Some(leaf) = leaf.into_iter().next() else {
                return Err(malformed(format!(
                    "its {} annotation holds no certificate",
                    super::ANN_CERTIFICATE
                )));
            };
            let chain = match ann.get(super::ANN_CHAIN) {
                Some(pem) => x509::pem_certs(pem).map_err(|e| {
                    malformed(format!("its {} annotation is {e}", super::ANN_CHAIN))
                })?,
                None => Vec::new(),
            };
            let (key, _) = ca.check(&leaf, &chain)?;
            (key, x509::signer_of(&leaf))
        }
    };
    let payload = super::read_capped(signature, layer, read_blob)?;
    if !key.verifies(&payload, &sig) {
        return Err(CosignError::BadSignature {
            signature: *signature,
            signer: key.name().to_owned(),
            keyless,
        });
    }
    let parsed: Payload = serde_json::from_slice(&payload).map_err(|e| {
        malformed(format!(
            "payload {} is not a simple-signing payload: {e}",
            layer.digest
        ))
    })?;
    if parsed.critical.kind != SIGNATURE_TYPE {
        return Err(malformed(format!(
            "payload {} has critical.type {:?}, not {SIGNATURE_TYPE:?}",
            layer.digest, parsed.critical.kind
        )));
    }
    let signed = parsed.critical.image.docker_manifest_digest;
    if signed.parse::<Digest>().ok().as_ref() != Some(subject) {
        return Err(CosignError::DigestMismatch {
            signature: *signature,
            signed,
            subject: *subject,
        });
    }
    let reference = parsed.critical.identity.and_then(|i| i.docker_reference);
    super::check_reference(signature, reference.as_deref(), policy)?;
    Ok(Verified {
        form: Form::SimpleSigning,
        signer,
        docker_reference: reference.as_deref().map(super::normalise_reference),
        signature_digest: *signature,
        checked_at: match &policy.trust {
            Trust::Ca(ca) => Some(ca.at),
            Trust::Key(_) => None,
        },
    })
}
