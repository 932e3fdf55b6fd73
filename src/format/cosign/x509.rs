//! The CA mode: a signing certificate embedded in a signature is trusted
//! when it chains to a CA bundle the user supplies, is valid at a given
//! time, is not revoked by the user's CRLs, is for code signing, and (when
//! asked) names the expected identity. webpki builds and checks the chain.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList};

use super::der;
use super::keys::PublicKey;
use super::CosignError;

/// The code-signing extended key usage, 1.3.6.1.5.5.7.3.3.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Which identity a signing certificate must name.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Equal to the subject (`CN=…, O=…`), its common name, or one
    /// subjectAltName (e-mail, URI or DNS name).
    Exact(String),
    /// A regular expression that must match the whole of one of those.
    Regex(regex::Regex),
}

impl Identity {
    /// A whole-string regular expression.
    pub fn regex(pattern: &str) -> Result<Identity, CosignError> {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(Identity::Regex)
            .map_err(|source| CosignError::IdentityPattern {
                pattern: pattern.to_owned(),
                source,
            })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Identity::Exact(want) => want == value,
            Identity::Regex(re) => re.is_match(value),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Exact(s) => write!(f, "{s:?}"),
            Identity::Regex(re) => {
                let p = re.as_str();
                let inner = p
                    .strip_prefix("^(?:")
                    .and_then(|p| p.strip_suffix(")$"))
                    .unwrap_or(p);
                write!(f, "/{inner}/")
            }
        }
    }
}

/// A CA bundle the signing certificate must chain to, with the rest of the
/// CA policy.
#[derive(Debug, Clone)]
pub struct CaTrust {
    /// The CA certificates (DER), every one a trust anchor.
    roots: Vec<CertificateDer<'static>>,
    /// The CA file, for messages.
    pub path: PathBuf,
    /// The identity the certificate must name, if any.
    pub identity: Option<Identity>,
    /// Revocation lists, with the file each came from.
    crls: Vec<(PathBuf, OwnedCertRevocationList)>,
    /// The time validity is checked at: pack time, or a time the user gives.
    /// There is no transparency log offline to date a signature.
    pub at: SystemTime,
}

impl CaTrust {
    /// Reads a PEM file of one or more CA certificates; validity is checked
    /// at `at`.
    pub fn from_pem_file(path: &Path, at: SystemTime) -> Result<CaTrust, CosignError> {
        let bytes = fs_err::read(path).map_err(|source| CosignError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        let bad = |what: String| CosignError::KeyFormat {
            path: path.to_owned(),
            what,
        };
        let roots = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("it is not a PEM file of certificates: {e}")))?;
        if roots.is_empty() {
            return Err(bad(
                "it holds no certificate (-----BEGIN CERTIFICATE-----)".to_owned()
            ));
        }
        for (i, root) in roots.iter().enumerate() {
            webpki::anchor_from_trusted_cert(root)
                .map_err(|e| bad(format!("certificate {} cannot be a CA: {e}", i + 1)))?;
        }
        Ok(CaTrust {
            roots,
            path: path.to_owned(),
            identity: None,
            crls: Vec::new(),
            at,
        })
    }

    /// Requires the certificate to name `identity`.
    pub fn with_identity(mut self, identity: Identity) -> CaTrust {
        self.identity = Some(identity);
        self
    }

    /// Adds the revocation lists of a PEM or DER CRL file.
    pub fn with_crl_file(mut self, path: &Path) -> Result<CaTrust, CosignError> {
        let bytes = fs_err::read(path).map_err(|source| CosignError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        let bad = |what: String| CosignError::KeyFormat {
            path: path.to_owned(),
            what,
        };
        let ders: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
            CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("it is not a PEM file of CRLs: {e}")))?
        } else {
            vec![CertificateRevocationListDer::from(bytes)]
        };
        if ders.is_empty() {
            return Err(bad("it holds no CRL (-----BEGIN X509 CRL-----)".to_owned()));
        }
        for d in ders {
            let crl = OwnedCertRevocationList::from_der(d.as_ref())
                .map_err(|e| bad(format!("it is not a valid CRL: {e}")))?;
            self.crls.push((path.to_owned(), crl));
        }
        Ok(self)
    }

    /// Checks the certificate chain of a signature and returns the leaf's
    /// public key (named after the certificate) and what to call the
    /// signer.
    pub(crate) fn check(
        &self,
        leaf: &[u8],
        chain: &[Vec<u8>],
    ) -> Result<(PublicKey, String), CosignError> {
        let names = der::names(leaf).unwrap_or_default();
        let who = describe(&names);
        let leaf_der = CertificateDer::from(leaf);
        let cert = EndEntityCert::try_from(&leaf_der).map_err(|e| CosignError::Chain {
            cert: who.clone(),
            ca: self.path.clone(),
            reason: format!("it is not a valid certificate ({e})"),
        })?;
        let anchors: Vec<TrustAnchor<'_>> = self
            .roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        let intermediates: Vec<CertificateDer<'_>> = chain
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let secs = self.at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let time = UnixTime::since_unix_epoch(secs);
        let crls: Vec<CertRevocationList<'_>> = self
            .crls
            .iter()
            .map(|(_, c)| CertRevocationList::from(c.clone()))
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| {
                b.with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                    .build()
            });
        // cosign (through Go's x509) accepts a certificate with no extended
        // key usage at all as good for any purpose, and refuses one whose
        // usages leave out code signing; so does this.
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            KeyUsage::required_if_present(EKU_CODE_SIGNING),
            revocation,
            None,
        )
        .map_err(|e| self.chain_error(&who, e))?;
        if let Some(id) = &self.identity {
            let cn = names
                .subject
                .split(", ")
                .find_map(|p| p.strip_prefix("CN="))
                .map(str::to_owned);
            let mut candidates = names.sans.clone();
            candidates.push(names.subject.clone());
            candidates.extend(cn);
            if !candidates.iter().any(|c| id.matches(c)) {
                return Err(CosignError::Identity {
                    cert: who,
                    want: id.to_string(),
                });
            }
        }
        let spki = cert.subject_public_key_info();
        let key =
            PublicKey::from_spki(spki.as_ref(), &format!("certificate {who}")).map_err(|what| {
                CosignError::Chain {
                    cert: who.clone(),
                    ca: self.path.clone(),
                    reason: what,
                }
            })?;
        Ok((key, who))
    }

    fn chain_error(&self, who: &str, e: webpki::Error) -> CosignError {
        use webpki::Error as E;
        let at = rfc3339(self.at);
        match e {
            E::CertExpired { not_after, .. } => CosignError::Expired {
                cert: who.to_owned(),
                not_after: rfc3339(to_system(not_after)),
                at,
            },
            E::CertNotValidYet { not_before, .. } => CosignError::NotYetValid {
                cert: who.to_owned(),
                not_before: rfc3339(to_system(not_before)),
                at,
            },
            E::CertRevoked => CosignError::Revoked {
                cert: who.to_owned(),
                crls: self
                    .crls
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            #[allow(deprecated)]
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
                CosignError::NotCodeSigning {
                    cert: who.to_owned(),
                }
            }
            other => CosignError::Chain {
                cert: who.to_owned(),
                ca: self.path.clone(),
                reason: chain_reason(&other),
            },
        }
    }
}

/// A plain reason for a chain failure webpki reports.
fn chain_reason(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => {
            "no certificate in the CA file or the signature's chain issued it".into()
        }
        E::InvalidSignatureForPublicKey => "a signature in the chain does not verify".into(),
        E::CaUsedAsEndEntity => "the signing certificate is itself a CA".into(),
        E::EndEntityUsedAsCa => "an issuer in the chain is not a CA".into(),
        other => format!("{other}"),
    }
}

fn to_system(t: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// An RFC 3339 UTC time, for messages and reports.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What messages call a certificate: its subject, else its first
/// subjectAltName.
fn describe(names: &der::Names) -> String {
    match (names.subject.is_empty(), names.sans.first()) {
        (false, _) => names.subject.clone(),
        (true, Some(san)) => san.clone(),
        (true, None) => "(no subject or subjectAltName)".to_owned(),
    }
}

/// The signer a certificate names for reports: its subjectAltNames, else its
/// subject.
pub(crate) fn signer_of(leaf: &[u8]) -> String {
    let names = der::names(leaf).unwrap_or_default();
    if names.sans.is_empty() {
        describe(&names)
    } else {
        names.sans.join(", ")
    }
}

/// Reads PEM certificates (cosign's certificate and chain annotations).
pub(crate) fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))
}
