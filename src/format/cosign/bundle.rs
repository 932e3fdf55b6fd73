//! The Sigstore bundle form newer cosign attaches as an OCI 1.1 referrer:
//! a manifest with `artifactType: application/vnd.dev.sigstore.bundle.v0.3+json`,
//! an empty config, and one layer holding the bundle JSON. The bundle holds
//! either a `dsseEnvelope` (what `cosign sign --new-bundle-format` and
//! `cosign attest` write: an in-toto statement whose subject digest is the
//! image, signed over DSSE's pre-authentication encoding) or a
//! `messageSignature` (a signature over the subject manifest's bytes, with
//! their sha256 as the message digest).

use serde::Deserialize;

use super::{x509, CosignError, Form, Outcome, Policy, Trust, Verified};
use crate::base::digest::Digest;
use crate::format::oci;

/// The prefix every Sigstore bundle media type starts with (v0.1 to v0.3).
const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// The DSSE payload type of an in-toto statement.
const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    #[serde(default)]
    verification_material: Material,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
    #[serde(default)]
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default)]
    x509_certificate_chain: Option<CertChain>,
    #[serde(default)]
    certificate: Option<RawCert>,
    #[serde(default)]
    tlog_entries: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct CertChain {
    #[serde(default)]
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    #[serde(default)]
    message_digest: Option<MessageDigest>,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    subject: Vec<StatementSubject>,
}

#[derive(Deserialize)]
struct StatementSubject {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// Whether `m` is a Sigstore bundle referrer.
pub(super) fn is_bundle(m: &oci::Manifest) -> bool {
    m.artifact_type
        .as_deref()
        .is_some_and(|t| t.starts_with(BUNDLE_PREFIX))
        || m.layers
            .iter()
            .any(|l| l.media_type.starts_with(BUNDLE_PREFIX))
}

/// Whether a bundle is keyless: a certificate and transparency-log entries.
pub(super) fn is_keyless(bundle_json: &[u8]) -> bool {
    serde_json::from_slice::<Bundle>(bundle_json).is_ok_and(|b| {
        let m = &b.verification_material;
        (m.certificate.is_some() || m.x509_certificate_chain.is_some())
            && !m.tlog_entries.is_empty()
    })
}

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
pub(crate) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Checks the bundle layer of `m`.
pub(super) fn verify(
    subject: &Digest,
    signature: &Digest,
    m: &oci::Manifest,
    policy: &Policy,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Outcome {
    match verify_bundle(subject, signature, m, policy, read_blob) {
        Ok(v) => Outcome::Good(v),
        Err(e) => Outcome::Bad(e),
    }
}

fn verify_bundle(
    subject: &Digest,
    signature: &Digest,
    m: &oci::Manifest,
    policy: &Policy,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Result<Verified, CosignError> {
    let malformed = |what: String| CosignError::Malformed {
        signature: *signature,
        what,
    };
    let layer = m
        .layers
        .iter()
        .find(|l| l.media_type.starts_with(BUNDLE_PREFIX))
        .ok_or_else(|| malformed("the bundle referrer has no bundle layer".to_owned()))?;
    let bytes = super::read_capped(signature, layer, read_blob)?;
    let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| {
        malformed(format!(
            "bundle {} is not a Sigstore bundle: {e}",
            layer.digest
        ))
    })?;
    let material = &bundle.verification_material;
    let keyless = (material.certificate.is_some() || material.x509_certificate_chain.is_some())
        && !material.tlog_entries.is_empty();
    let (key, signer) = match &policy.trust {
        Trust::Key(k) => (k.clone(), k.name().to_owned()),
        Trust::Ca(ca) => {
            let mut certs = Vec::new();
            if let Some(c) = &material.certificate {
                certs.push(&c.raw_bytes);
            } else if let Some(chain) = &material.x509_certificate_chain {
                certs.extend(chain.certificates.iter().map(|c| &c.raw_bytes));
            }
            let certs = certs
                .into_iter()
                .map(|c| super::base64_bytes(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    malformed(format!(
                        "a certificate in bundle {} is not base64 ({e})",
                        layer.digest
                    ))
                })?;
            let Some((leaf, chain)) = certs.split_first() else {
                return Err(CosignError::NoCertificate {
                    signature: *signature,
                    ca: ca.path.clone(),
                });
            };
            let (key, _) = ca.check(leaf, chain)?;
            (key, x509::signer_of(leaf))
        }
    };
    let bad = || CosignError::BadSignature {
        signature: *signature,
        signer: key.name().to_owned(),
        keyless,
    };
    let reference = match (&bundle.message_signature, &bundle.dsse_envelope) {
        (Some(ms), None) => {
            let md = ms.message_digest.as_ref().ok_or_else(|| {
                malformed(format!("bundle {} has no message digest", layer.digest))
            })?;
            if md.algorithm != "SHA2_256" {
                return Err(malformed(format!(
                    "bundle {} signs a {} digest; only SHA2_256 is checked",
                    layer.digest, md.algorithm
                )));
            }
            let signed = super::base64_bytes(&md.digest)
                .map(hex::encode)
                .map_err(|e| {
                    malformed(format!(
                        "the message digest of bundle {} is not base64 ({e})",
                        layer.digest
                    ))
                })?;
            if signed != subject.hex() {
                return Err(CosignError::DigestMismatch {
                    signature: *signature,
                    signed: format!("sha256:{signed}"),
                    subject: *subject,
                });
            }
            let sig = super::base64_bytes(&ms.signature).map_err(|e| {
                malformed(format!(
                    "the signature in bundle {} is not base64 ({e})",
                    layer.digest
                ))
            })?;
            // The message is the subject itself: read it through the
            // referrer's subject descriptor.
            let desc = m
                .subject
                .as_ref()
                .filter(|d| d.digest == *subject)
                .ok_or_else(|| {
                    malformed(format!(
                        "the referrer's subject is not {subject}, so the signed message cannot be read"
                    ))
                })?;
            let message = read_subject(signature, desc, read_blob)?;
            if !key.verifies(&message, &sig) {
                return Err(bad());
            }
            None
        }
        (None, Some(env)) => {
            if env.payload_type != IN_TOTO_PAYLOAD {
                return Err(malformed(format!(
                    "bundle {} has DSSE payload type {:?}, not {IN_TOTO_PAYLOAD}",
                    layer.digest, env.payload_type
                )));
            }
            let payload = super::base64_bytes(&env.payload).map_err(|e| {
                malformed(format!(
                    "the DSSE payload in bundle {} is not base64 ({e})",
                    layer.digest
                ))
            })?;
            let signed_bytes = pae(&env.payload_type, &payload);
            let mut good = false;
            for s in &env.signatures {
                let sig = super::base64_bytes(&s.sig).map_err(|e| {
                    malformed(format!(
                        "a DSSE signature in bundle {} is not base64 ({e})",
                        layer.digest
                    ))
                })?;
                if key.verifies(&signed_bytes, &sig) {
                    good = true;
                    break;
                }
            }
            if !good {
                return Err(bad());
            }
            let statement: Statement = serde_json::from_slice(&payload).map_err(|e| {
                malformed(format!(
                    "the DSSE payload in bundle {} is not an in-toto statement: {e}",
                    layer.digest
                ))
            })?;
            let hex = subject.hex();
            let Some(hit) = statement.subject.iter().find(|s| {
                s.digest
                    .get("sha256")
                    .is_some_and(|d| d.eq_ignore_ascii_case(&hex))
            }) else {
                let named: Vec<String> = statement
                    .subject
                    .iter()
                    .filter_map(|s| s.digest.get("sha256").map(|d| format!("sha256:{d}")))
                    .collect();
                return Err(CosignError::DigestMismatch {
                    signature: *signature,
                    signed: if named.is_empty() {
                        "no sha256 digest".to_owned()
                    } else {
                        named.join(", ")
                    },
                    subject: *subject,
                });
            };
            hit.name.clone().filter(|n| !n.is_empty())
        }
        _ => {
            return Err(malformed(format!(
                "bundle {} must hold exactly one of messageSignature and dsseEnvelope",
                layer.digest
            )))
        }
    };
    super::check_reference(signature, reference.as_deref(), policy)?;
    Ok(Verified {
        form: Form::SigstoreBundle,
        signer,
        docker_reference: reference.as_deref().map(super::normalise_reference),
        signature_digest: *signature,
        checked_at: match &policy.trust {
            Trust::Ca(ca) => Some(ca.at),
            Trust::Key(_) => None,
        },
    })
}

/// Reads the subject manifest a message signature signs, capped like any
/// manifest.
fn read_subject(
    signature: &Digest,
    desc: &oci::Descriptor,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Result<Vec<u8>, CosignError> {
    let too_large = |size| CosignError::TooLarge {
        signature: *signature,
        blob: desc.digest,
        size,
        max: oci::MANIFEST_MAX_BYTES,
    };
    if desc.size > oci::MANIFEST_MAX_BYTES {
        return Err(too_large(desc.size));
    }
    let bytes = read_blob(desc)?;
    if bytes.len() as u64 > oci::MANIFEST_MAX_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if Digest::of(&bytes) != desc.digest {
        return Err(CosignError::Malformed {
            signature: *signature,
            what: format!("the subject {} does not hash to its digest", desc.digest),
        });
    }
    Ok(bytes)
}
