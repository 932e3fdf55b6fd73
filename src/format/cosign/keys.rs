//! Public keys and checking one signature: a PEM SubjectPublicKeyInfo
//! (ECDSA P-256 or P-384, Ed25519, RSA) read once, then asked whether a
//! signature over some bytes verifies. The algorithms are ring's, through
//! webpki's table, so a key's algorithm identifier picks its verifiers.

use std::fmt;
use std::path::Path;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer};
use webpki::ring as algs;

use super::der;
use super::CosignError;

/// The verifiers tried for a key, by its algorithm identifier. cosign signs
/// with SHA-256 on P-256 and SHA-384 on P-384; RSA keys sign PKCS#1 v1.5
/// (cosign's default) or PSS with SHA-256.
const ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    algs::ECDSA_P256_SHA256,
    algs::ECDSA_P384_SHA384,
    algs::ED25519,
    algs::RSA_PKCS1_2048_8192_SHA256,
    algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    algs::RSA_PKCS1_2048_8192_SHA384,
    algs::RSA_PKCS1_2048_8192_SHA512,
];

/// A public key a signature is checked with.
#[derive(Clone)]
pub struct PublicKey {
    /// The key bits of the SubjectPublicKeyInfo.
    bits: Vec<u8>,
    /// The verifiers for its algorithm, in the order tried.
    algs: Vec<&'static dyn SignatureVerificationAlgorithm>,
    /// What to call it in messages: the key file, or a certificate.
    name: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("name", &self.name)
            .finish()
    }
}

impl PublicKey {
    /// Reads a PEM public key file (`-----BEGIN PUBLIC KEY-----`, as
    /// `cosign generate-key-pair` and `openssl pkey -pubout` write). The
    /// path is remembered for messages.
    pub fn from_pem_file(path: &Path) -> Result<PublicKey, CosignError> {
        let bytes = fs_err::read(path).map_err(|source| CosignError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        PublicKey::from_pem(&bytes, &path.display().to_string()).map_err(|what| {
            CosignError::KeyFormat {
                path: path.to_owned(),
                what,
            }
        })
    }

    /// Reads a PEM public key from bytes; `name` is what messages call it.
    /// `Err` says what is wrong.
    pub fn from_pem(pem: &[u8], name: &str) -> Result<PublicKey, String> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("it holds no PEM public key (-----BEGIN PUBLIC KEY-----): {e}"))?;
        PublicKey::from_spki(spki.as_ref(), name)
    }

    /// A key from a DER SubjectPublicKeyInfo.
    pub(crate) fn from_spki(spki: &[u8], name: &str) -> Result<PublicKey, String> {
        let (alg, bits) = der::split_spki(spki)
            .ok_or_else(|| "the public key is not a valid SubjectPublicKeyInfo".to_owned())?;
        let algs: Vec<_> = ALGORITHMS
            .iter()
            .copied()
            .filter(|a| a.public_key_alg_id().as_ref() == alg)
            .collect();
        if algs.is_empty() {
            return Err(
                "the key type is not supported (ECDSA P-256 or P-384, Ed25519 or RSA)".to_owned(),
            );
        }
        Ok(PublicKey {
            bits: bits.to_vec(),
            algs,
            name: name.to_owned(),
        })
    }

    /// What messages call this key: its file, or its certificate.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `signature` is a good signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.algs
            .iter()
            .any(|a| a.verify_signature(&self.bits, message, signature).is_ok())
    }
}
