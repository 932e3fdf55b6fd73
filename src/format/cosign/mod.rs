//! cosign signatures, checked offline: whether an image (a manifest or
//! index digest) has a good signature among the referrer and cosign-tag
//! manifests found for it, under a [`Policy`] that trusts a public key or a
//! CA bundle. Two forms: cosign's simple-signing `.sig` manifests
//! (`simple`) and the Sigstore bundle newer cosign attaches as an OCI 1.1
//! referrer (`bundle`). Also [`classify`], which tells signatures,
//! attestations and SBOMs apart for reports. Pure and synchronous: blobs
//! come from the caller's `read_blob`, nothing is printed, and the only
//! I/O is reading the key, CA and CRL files the user names. No
//! transparency log is consulted, so keyless (Fulcio and Rekor)
//! signatures are not verified unless a CA bundle trusts their
//! certificate.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::base::digest::Digest;
use crate::format::oci;

mod bundle;
mod der;
mod keys;
mod simple;
mod x509;

pub use keys::PublicKey;
pub use x509::{CaTrust, Identity};

/// Layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of a simple-signing payload.
pub const ANN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation holding the PEM signing certificate.
pub const ANN_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation holding the PEM certificate chain (intermediates, root).
pub const ANN_CHAIN: &str = "dev.sigstore.cosign/chain";
/// Layer annotation holding the Rekor bundle of a logged signature.
pub const ANN_REKOR_BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// Layer media type of a cosign attestation (`.att`): a DSSE envelope.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// artifactType and layer media type of a Sigstore bundle referrer.
pub const SIGSTORE_BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Manifest annotation naming the predicate type of a bundle referrer.
pub const ANN_BUNDLE_PREDICATE: &str = "dev.sigstore.bundle.predicateType";
/// Manifest annotation saying what a bundle referrer holds
/// (`message-signature` or `dsse-envelope`).
pub const ANN_BUNDLE_CONTENT: &str = "dev.sigstore.bundle.content";
/// The predicate type `cosign sign --new-bundle-format` signs images with.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// artifactType of in-toto attestations attached as referrers.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The largest payload, bundle or subject manifest read for verification.
pub const PAYLOAD_MAX_BYTES: u64 = 1 << 20;

/// What the user trusts: from the spec's `verify:` or `--cosign-key`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The key or CA bundle a signature must verify against.
    pub trust: Trust,
    /// When set, the signed `docker-reference` must equal this (both
    /// normalised). cosign enforces it only when asked: images keep their
    /// old name when they move between registries.
    pub reference: Option<String>,
}

impl Policy {
    /// The policy a user names: a public key file, or a CA bundle (with an
    /// identity the certificate must name exactly or match as a whole by a
    /// regular expression, and CRLs) whose
    /// certificates are checked as valid at `at`; `None` when neither file
    /// is given.
    pub fn from_files(
        key: Option<&std::path::Path>,
        ca: Option<&std::path::Path>,
        identity: Option<&str>,
        identity_regex: Option<&str>,
        crls: &[PathBuf],
        reference: Option<String>,
        at: SystemTime,
    ) -> Result<Option<Policy>, CosignError> {
        let trust = match (key, ca) {
            (Some(k), _) => Trust::Key(PublicKey::from_pem_file(k)?),
            (None, Some(c)) => {
                let mut t = CaTrust::from_pem_file(c, at)?;
                if let Some(i) = identity {
                    t = t.with_identity(Identity::Exact(i.to_owned()));
                }
                if let Some(r) = identity_regex {
                    t = t.with_identity(Identity::regex(r)?);
                }
                for crl in crls {
                    t = t.with_crl_file(crl)?;
                }
                Trust::Ca(t)
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Policy { trust, reference }))
    }
}

/// The root of trust of a [`Policy`].
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per policy
pub enum Trust {
    /// A PEM public key: ECDSA P-256 (cosign's default) or P-384, Ed25519,
    /// or RSA (PKCS#1 v1.5 or PSS).
    Key(PublicKey),
    /// A CA bundle the signing certificate embedded in the signature must
    /// chain to (see [`CaTrust`]).
    Ca(CaTrust),
}

impl Trust {
    /// The key or CA file, for messages.
    pub fn name(&self) -> String {
        match self {
            Trust::Key(k) => k.name().to_owned(),
            Trust::Ca(ca) => format!("CA {}", ca.path.display()),
        }
    }
}

/// One referrer or cosign-tag manifest that might be a signature.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The manifest's digest.
    pub digest: &'a Digest,
    /// Its raw bytes.
    pub manifest: &'a [u8],
}

/// Which form a good signature came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// cosign's simple-signing payload in a `.sig` manifest.
    SimpleSigning,
    /// A Sigstore bundle attached as an OCI 1.1 referrer.
    SigstoreBundle,
}

impl Form {
    /// How reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::SimpleSigning => "simple-signing",
            Form::SigstoreBundle => "sigstore-bundle",
        }
    }
}

/// The good signature [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its form.
    pub form: Form,
    /// Who signed: the key file, or the certificate's subjectAltNames
    /// (else its subject).
    pub signer: String,
    /// The signed `docker-reference`, normalised (`docker.io/library/x`),
    /// when the signature records one.
    pub docker_reference: Option<String>,
    /// The manifest the signature is in.
    pub signature_digest: Digest,
    /// In CA mode, the time the certificate's validity was checked at.
    pub checked_at: Option<SystemTime>,
}

/// What a referrer or cosign-tag manifest is, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A signature: cosign simple-signing, a Sigstore bundle signing the
    /// image, or a Notary signature.
    Signature,
    /// An attestation: a DSSE envelope or an in-toto statement.
    Attestation,
    /// A software bill of materials (SPDX, CycloneDX, Syft).
    Sbom,
    /// Anything else.
    Other,
}

impl Kind {
    /// How reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Signature => "signature",
            Kind::Attestation => "attestation",
            Kind::Sbom => "sbom",
            Kind::Other => "other",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors verifying signatures. Each names the signature manifest, key,
/// CA file or certificate it is about; the caller adds the image.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// Nothing among the candidates is a signature.
    #[error("no signature found for {subject}")]
    NoSignature {
        /// The image digest.
        subject: Digest,
    },
    /// Several signatures, none good; each failure in order.
    #[error("none of the {} signatures of {subject} is valid: {}", .failures.len(), join(.failures))]
    NoneValid {
        /// The image digest.
        subject: Digest,
        /// Why each was refused.
        failures: Vec<CosignError>,
    },
    /// A signature that verifies, but for another image.
    #[error("signature {signature}: the signed payload is for {signed}, not {subject}")]
    DigestMismatch {
        /// The signature manifest.
        signature: Digest,
        /// The digest the payload names (or "no digest").
        signed: String,
        /// The image digest.
        subject: Digest,
    },
    /// The signature bytes do not verify.
    #[error("signature {signature} does not verify with {signer}{}", if *.keyless { " (it is a keyless signature: Fulcio certificate and Rekor bundle, not verified offline)" } else { "" })]
    BadSignature {
        /// The signature manifest.
        signature: Digest,
        /// The key file or certificate.
        signer: String,
        /// Whether the signature is keyless.
        keyless: bool,
    },
    /// A signature manifest, payload or bundle that cannot be read as one.
    #[error("signature {signature} is not in a form ferry can check: {what}")]
    Malformed {
        /// The signature manifest.
        signature: Digest,
        /// What is wrong.
        what: String,
    },
    /// A payload, bundle or subject manifest over the size cap.
    #[error("signature {signature}: blob {blob} is {size} bytes, more than the {max} bytes a signature may take")]
    TooLarge {
        /// The signature manifest.
        signature: Digest,
        /// The blob.
        blob: Digest,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The caller could not read a blob.
    #[error("cannot read blob {digest} of a signature")]
    Read {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The signed docker-reference is not the one the policy requires.
    #[error("signature {signature} is for {}, not {want}", .signed.as_deref().unwrap_or("no docker-reference"))]
    ReferenceMismatch {
        /// The signature manifest.
        signature: Digest,
        /// The normalised signed reference, if any.
        signed: Option<String>,
        /// The normalised required reference.
        want: String,
    },
    /// A CA policy, and a signature with no certificate.
    #[error("signature {signature} carries no certificate to check against CA {}", .ca.display())]
    NoCertificate {
        /// The signature manifest.
        signature: Digest,
        /// The CA file.
        ca: PathBuf,
    },
    /// The certificate does not chain to the CA.
    #[error("certificate {cert} does not chain to CA {}: {reason}", .ca.display())]
    Chain {
        /// The certificate's subject or SAN.
        cert: String,
        /// The CA file.
        ca: PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate expired before the check time.
    #[error("certificate {cert} expired at {not_after} (checked at {at}; offline there is no transparency log to date the signature)")]
    Expired {
        /// The certificate.
        cert: String,
        /// Its notAfter.
        not_after: String,
        /// The check time.
        at: String,
    },
    /// The certificate is not valid yet at the check time.
    #[error("certificate {cert} is not valid before {not_before} (checked at {at})")]
    NotYetValid {
        /// The certificate.
        cert: String,
        /// Its notBefore.
        not_before: String,
        /// The check time.
        at: String,
    },
    /// A CRL revokes the certificate or an issuer.
    #[error("certificate {cert} (or an issuer) is revoked by {crls}")]
    Revoked {
        /// The certificate.
        cert: String,
        /// The CRL files.
        crls: String,
    },
    /// The certificate's extended key usage leaves out code signing.
    #[error("certificate {cert} is not for code signing: its extended key usage lacks 1.3.6.1.5.5.7.3.3")]
    NotCodeSigning {
        /// The certificate.
        cert: String,
    },
    /// The certificate names another identity.
    #[error(
        "certificate {cert} does not name the identity {want} (in its subject or subjectAltName)"
    )]
    Identity {
        /// The certificate.
        cert: String,
        /// The identity required.
        want: String,
    },
    /// An identity regular expression that does not compile.
    #[error("identity pattern {pattern:?} is not a valid regular expression")]
    IdentityPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        #[source]
        source: regex::Error,
    },
    /// A key, CA or CRL file that cannot be read.
    #[error("cannot read {}", .path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key, CA or CRL file that is not what it should be.
    #[error("{} is not usable: {what}", .path.display())]
    KeyFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

fn join(failures: &[CosignError]) -> String {
    failures
        .iter()
        .map(|f| crate::base::error::error_chain(f))
        .collect::<Vec<_>>()
        .join("; ")
}

impl CosignError {
    /// The error a `read_blob` returns when it cannot read `digest`.
    pub fn read(
        digest: Digest,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> CosignError {
        CosignError::Read {
            digest,
            source: source.into(),
        }
    }
}

/// What one candidate turned out to be.
enum Outcome {
    /// Not a signature in a form verified here.
    NotSignature,
    /// A good signature.
    Good(Verified),
    /// A signature that failed.
    Bad(CosignError),
}

/// Verifies that `subject` (an image manifest or index digest) has at least
/// one good signature among `candidates` under `policy`. `read_blob`
/// returns a blob's bytes (the caller reads through its verifying reader
/// and caps the size); it is asked for simple-signing payloads, bundle
/// layers and, for a bundle that signs a message digest, the subject
/// manifest itself (the referrer's `subject` descriptor). Blobs over
/// [`PAYLOAD_MAX_BYTES`] are refused before they are read.
///
/// Returns the first good signature. When none is good, the error is the
/// one signature's failure, [`CosignError::NoneValid`] listing each, or
/// [`CosignError::NoSignature`] when no candidate is a signature.
pub fn verify(
    subject: &Digest,
    candidates: &[Candidate],
    policy: &Policy,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Result<Verified, CosignError> {
    let mut failures = Vec::new();
    for c in candidates {
        if Digest::of(c.manifest) != *c.digest {
            failures.push(CosignError::Malformed {
                signature: *c.digest,
                what: "the manifest bytes do not hash to its digest".to_owned(),
            });
            continue;
        }
        let outcome = match oci::parse_node(*c.digest, "", c.manifest) {
            Ok(oci::Node::Manifest(m)) => {
                if m.layers.iter().any(|l| l.media_type == SIMPLE_SIGNING) {
                    simple::verify(subject, c.digest, &m, policy, read_blob)
                } else if bundle::is_bundle(&m) {
                    bundle::verify(subject, c.digest, &m, policy, read_blob)
                } else {
                    Outcome::NotSignature
                }
            }
            Ok(oci::Node::Index(_)) => Outcome::NotSignature,
            Err(e) => Outcome::Bad(CosignError::Malformed {
                signature: *c.digest,
                what: crate::base::error::error_chain(&e),
            }),
        };
        match outcome {
            Outcome::Good(v) => return Ok(v),
            Outcome::Bad(e) => failures.push(e),
            Outcome::NotSignature => {}
        }
    }
    match failures.len() {
        0 => Err(CosignError::NoSignature { subject: *subject }),
        1 => Err(failures.remove(0)),
        _ => Err(CosignError::NoneValid {
            subject: *subject,
            failures,
        }),
    }
}

/// The referrer manifests carried for a digest: (digest, raw bytes) each.
pub type CandidatesOf<'a> = dyn Fn(&Digest) -> Vec<(Digest, Vec<u8>)> + 'a;

/// [`verify`] for an image: its root must have a good signature, or, for
/// an index ferry made from some of the source's children (a platform
/// filter), every one of `children` must have one, since no signature can
/// cover the new index. `candidates_of` gives the referrer manifests
/// carried for a digest. Returns the root's good signature, else the
/// first child's.
pub fn verify_image(
    root: &Digest,
    children: &[Digest],
    candidates_of: &CandidatesOf<'_>,
    policy: &Policy,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Result<Verified, CosignError> {
    let check =
        |d: &Digest,
         read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>| {
            let docs = candidates_of(d);
            let candidates: Vec<Candidate> = docs
                .iter()
                .map(|(digest, manifest)| Candidate { digest, manifest })
                .collect();
            verify(d, &candidates, policy, read_blob)
        };
    let at_root = check(root, read_blob);
    if at_root.is_ok() || children.is_empty() {
        return at_root;
    }
    let mut first = None;
    for c in children {
        match check(c, read_blob) {
            Ok(v) => {
                first.get_or_insert(v);
            }
            // A child without any signature: the root's failure says it
            // best (it carries the advice); a child's bad signature is
            // its own.
            Err(CosignError::NoSignature { .. }) => return at_root,
            Err(e) => return Err(e),
        }
    }
    match first {
        Some(v) => Ok(v),
        None => at_root,
    }
}

/// Reads one blob for a signature, refusing it above the cap before and
/// after reading.
fn read_capped(
    signature: &Digest,
    desc: &oci::Descriptor,
    read_blob: &mut dyn FnMut(&oci::Descriptor) -> Result<Vec<u8>, CosignError>,
) -> Result<Vec<u8>, CosignError> {
    let too_large = |size| CosignError::TooLarge {
        signature: *signature,
        blob: desc.digest,
        size,
        max: PAYLOAD_MAX_BYTES,
    };
    if desc.size > PAYLOAD_MAX_BYTES {
        return Err(too_large(desc.size));
    }
    let bytes = read_blob(desc)?;
    if bytes.len() as u64 > PAYLOAD_MAX_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if Digest::of(&bytes) != desc.digest {
        return Err(CosignError::Malformed {
            signature: *signature,
            what: format!("blob {} does not hash to its digest", desc.digest),
        });
    }
    Ok(bytes)
}

/// A docker reference in normalised form (`nginx` →
/// `docker.io/library/nginx`), keeping a tag or digest only when it was
/// written (cosign records the repository alone); unparsable ones as given.
pub fn normalise_reference(r: &str) -> String {
    match r.parse::<crate::base::reference::Reference>() {
        Ok(p) if has_tag_or_digest(r) => p.to_string(),
        Ok(p) => p.name(),
        Err(_) => r.to_owned(),
    }
}

/// Whether a written reference names a tag or digest (after its last `/`,
/// so a registry port is not taken for a tag).
fn has_tag_or_digest(r: &str) -> bool {
    r.contains('@') || r.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// Checks the signed docker-reference against the policy, when it asks:
/// the repositories must be equal, and when the policy names a tag or
/// digest, so must the signed reference.
fn check_reference(
    signature: &Digest,
    signed: Option<&str>,
    policy: &Policy,
) -> Result<(), CosignError> {
    let Some(want_raw) = &policy.reference else {
        return Ok(());
    };
    let want = normalise_reference(want_raw);
    let signed = signed.map(normalise_reference);
    let repo = |r: &str| {
        r.parse::<crate::base::reference::Reference>()
            .map(|p| p.name())
            .unwrap_or_else(|_| r.to_owned())
    };
    let ok = signed.as_deref().is_some_and(|s| {
        if has_tag_or_digest(want_raw) {
            s == want
        } else {
            repo(s) == want
        }
    });
    if ok {
        return Ok(());
    }
    Err(CosignError::ReferenceMismatch {
        signature: *signature,
        signed,
        want,
    })
}

/// Classifies a referrer or cosign-tag manifest for reports, by its layer
/// media types, its artifactType or config media type, its bundle
/// annotations, and the cosign tag it was found under (`sha256-….sig`,
/// `.att`, `.sbom`) when given. Bytes that are not a manifest are
/// [`Kind::Other`].
pub fn classify(manifest: &[u8], tag: Option<&str>) -> Kind {
    let by_tag = tag.and_then(|t| {
        if t.ends_with(".sig") {
            Some(Kind::Signature)
        } else if t.ends_with(".att") {
            Some(Kind::Attestation)
        } else if t.ends_with(".sbom") {
            Some(Kind::Sbom)
        } else {
            None
        }
    });
    let Ok(oci::Node::Manifest(m)) = oci::parse_node(Digest::of(manifest), "", manifest) else {
        return by_tag.unwrap_or(Kind::Other);
    };
    let layer_types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
    let artifact = m
        .artifact_type
        .as_deref()
        .unwrap_or(m.config.media_type.as_str());
    if layer_types.contains(&SIMPLE_SIGNING) {
        return Kind::Signature;
    }
    if bundle::is_bundle(&m) {
        let content = m.annotations.get(ANN_BUNDLE_CONTENT).map(String::as_str);
        return match (
            m.annotations.get(ANN_BUNDLE_PREDICATE).map(String::as_str),
            content,
        ) {
            (Some(COSIGN_SIGN_PREDICATE), _) => Kind::Signature,
            (Some(_), _) | (None, Some("dsse-envelope")) => Kind::Attestation,
            (None, _) => Kind::Signature,
        };
    }
    if let Some(k) = by_tag {
        return k;
    }
    let sbom = |t: &str| {
        let t = t.to_ascii_lowercase();
        t.contains("spdx") || t.contains("cyclonedx") || t.contains("syft")
    };
    if sbom(artifact) || layer_types.iter().any(|t| sbom(t)) {
        return Kind::Sbom;
    }
    if layer_types.contains(&DSSE_ENVELOPE) || artifact == IN_TOTO || artifact == DSSE_ENVELOPE {
        return Kind::Attestation;
    }
    if artifact.starts_with("application/vnd.cncf.notary.signature") {
        return Kind::Signature;
    }
    Kind::Other
}

/// Whether a manifest holds a keyless signature: a Fulcio certificate with
/// a Rekor bundle and no CA of the user's to check it against. Reports say
/// "keyless, not verified offline". A Sigstore bundle referrer keeps that
/// inside its layer; see [`bundle_is_keyless`].
pub fn is_keyless(manifest: &[u8]) -> bool {
    let Ok(oci::Node::Manifest(m)) = oci::parse_node(Digest::of(manifest), "", manifest) else {
        return false;
    };
    m.layers.iter().any(|l| {
        l.annotations.contains_key(ANN_CERTIFICATE) && l.annotations.contains_key(ANN_REKOR_BUNDLE)
    })
}

/// Whether a Sigstore bundle (the layer of a bundle referrer) is keyless:
/// a certificate with transparency-log entries.
pub fn bundle_is_keyless(bundle_json: &[u8]) -> bool {
    bundle::is_keyless(bundle_json)
}

/// Decodes base64 as Go's encoders write it (standard or URL-safe alphabet,
/// padded or not), ignoring line breaks, as cosign's PKCS#1 annotations
/// carry them.
fn base64_bytes(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&clean)
        .or_else(|_| STANDARD_NO_PAD.decode(&clean))
        .or_else(|_| URL_SAFE.decode(&clean))
        .or_else(|_| URL_SAFE_NO_PAD.decode(&clean))
}

/// How telling a failure is, to report the most telling one of a
/// signature manifest's layers: a signature that verified but names
/// something else, then certificate trouble, then a bad signature.
fn rank(e: &CosignError) -> u8 {
    use CosignError as E;
    match e {
        E::DigestMismatch { .. } | E::ReferenceMismatch { .. } => 5,
        E::Identity { .. }
        | E::Expired { .. }
        | E::NotYetValid { .. }
        | E::Revoked { .. }
        | E::NotCodeSigning { .. }
        | E::Chain { .. } => 4,
        E::BadSignature { .. } => 3,
        E::NoCertificate { .. } => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests;
