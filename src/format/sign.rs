//! Bundle signatures, minisign-compatible: `keygen` writes a key pair,
//! `sign` signs `bundle.json` (which lists every member's digest, so it
//! vouches for the whole archive), and `check` verifies such a signature.
//! The signature travels in the archive as `bundle.json.minisig`, right
//! after `bundle.json`, so `tar -xf` plus `minisign -Vm bundle.json -p
//! KEY.pub` checks it without ferry.
//!
//! Secret keys are written unencrypted with mode 0600; keep them offline.
//! Signatures are hedged (minisign adds randomness), so two signed packs of
//! the same inputs differ in that one member.

use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The archive member holding the signature.
pub const SIGNATURE_PATH: &str = "bundle.json.minisig";
/// Largest signature file read.
pub const SIGNATURE_MAX_BYTES: u64 = 4096;

/// Errors with keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key file could not be read or written.
    #[error("key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file exists already.
    #[error("{0} exists; keygen never overwrites a key")]
    Exists(PathBuf),
    /// A key file is not a minisign key.
    #[error("{path} is not a usable minisign {what}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// "secret key" or "public key".
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Signing failed.
    #[error("signing with {key} failed: {reason}")]
    Sign {
        /// The secret key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
    /// The archive carries no signature.
    #[error("{archive} is not signed (no {SIGNATURE_PATH}); it cannot be checked against {key}")]
    Unsigned {
        /// The archive.
        archive: PathBuf,
        /// The public key.
        key: PathBuf,
    },
    /// The signature does not verify.
    #[error("{archive}: the signature of bundle.json does not verify with {key}: {reason}")]
    BadSignature {
        /// The archive.
        archive: PathBuf,
        /// The public key.
        key: PathBuf,
        /// Why (another key, or bundle.json changed after signing).
        reason: String,
    },
}

/// Writes `PREFIX.key` (secret, mode 0600) and `PREFIX.pub`; refuses to
/// overwrite either.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf), SignError> {
    let key = PathBuf::from(format!("{}.key", prefix.display()));
    let public = PathBuf::from(format!("{}.pub", prefix.display()));
    for p in [&key, &public] {
        if p.exists() {
            return Err(SignError::Exists(p.clone()));
        }
    }
    let bad = |reason: String| SignError::Sign {
        key: key.clone(),
        reason,
    };
    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| bad(e.to_string()))?;
    let sk = pair
        .sk
        .to_box(Some("ferry secret key"))
        .map_err(|e| bad(e.to_string()))?
        .into_string();
    let pk = pair
        .pk
        .to_box()
        .map_err(|e| bad(e.to_string()))?
        .into_string();
    write_new(&key, sk.as_bytes(), 0o600)?;
    write_new(&public, pk.as_bytes(), 0o644)?;
    Ok((key, public))
}

/// Writes a new file whole or not at all: a temp file beside it, synced,
/// then linked into place without replacing anything there.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SignError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io = |source| SignError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-key.")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    let registered = crate::base::interrupt::register(tmp.path());
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    drop(registered);
    tmp.persist_noclobber(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Signs `data` (bundle.json) with the secret key in `key`; returns the
/// `.minisig` text.
pub fn sign(key: &Path, data: &[u8], trusted_comment: &str) -> Result<Vec<u8>, SignError> {
    let text = fs_err::read_to_string(key).map_err(|source| SignError::Io {
        path: key.to_owned(),
        source,
    })?;
    let bad = |reason: String| SignError::BadKey {
        path: key.to_owned(),
        what: "secret key",
        reason,
    };
    let sk_box = minisign::SecretKeyBox::from_string(&text).map_err(|e| bad(e.to_string()))?;
    let sk = sk_box
        .into_unencrypted_secret_key()
        .map_err(|e| bad(format!("{e} (password-protected keys are not supported)")))?;
    let pk = minisign::PublicKey::from_secret_key(&sk).ok();
    let sig = minisign::sign(
        pk.as_ref(),
        &sk,
        Cursor::new(data),
        Some(trusted_comment),
        Some("signature of a ferry bundle.json"),
    )
    .map_err(|e| SignError::Sign {
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(sig.into_string().into_bytes())
}

/// Checks `signature` over `data` with the public key in `key`; returns
/// the trusted comment.
pub fn check(
    archive: &Path,
    key: &Path,
    data: &[u8],
    signature: Option<&[u8]>,
) -> Result<String, SignError> {
    let text = fs_err::read_to_string(key).map_err(|source| SignError::Io {
        path: key.to_owned(),
        source,
    })?;
    let pk = minisign::PublicKeyBox::from_string(&text)
        .and_then(|b| b.into_public_key())
        .map_err(|e| SignError::BadKey {
            path: key.to_owned(),
            what: "public key",
            reason: e.to_string(),
        })?;
    let Some(signature) = signature else {
        return Err(SignError::Unsigned {
            archive: archive.to_owned(),
            key: key.to_owned(),
        });
    };
    let bad = |reason: String| SignError::BadSignature {
        archive: archive.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let sig = minisign::SignatureBox::from_string(&String::from_utf8_lossy(signature))
        .map_err(|e| bad(e.to_string()))?;
    minisign::verify(&pk, &sig, Cursor::new(data), true, false, false)
        .map_err(|e| bad(e.to_string()))?;
    sig.trusted_comment().map_err(|e| bad(e.to_string()))
}
