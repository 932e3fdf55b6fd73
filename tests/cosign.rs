//! Offline cosign verification (`ferry::cosign`): real samples made by
//! cosign and sigstore's clients (tests/data/cosign, see SOURCES.md) pass,
//! and artifacts the tests make with generated keys pass or fail with the
//! right reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ferry::cosign::{
    self, CaTrust, Candidate, CosignError, Form, Identity, Kind, Policy, PublicKey, Trust, Verified,
};
use ferry::digest::Digest;
use ferry::oci::Descriptor;
use support::cosign::{self as make, Artifact, Ca, KeyPair, SigLayer};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn data(rel: &str) -> PathBuf {
    support::repo_root().join("tests/data/cosign").join(rel)
}

fn key_policy(path: &Path) -> Policy {
    Policy {
        trust: Trust::Key(PublicKey::from_pem_file(path).unwrap()),
        reference: None,
    }
}

fn ca_policy(path: &Path, at: SystemTime) -> Policy {
    Policy {
        trust: Trust::Ca(CaTrust::from_pem_file(path, at).unwrap()),
        reference: None,
    }
}

/// Verifies `subject` against `artifacts`, serving their blobs and any
/// `extra` ones (subject manifests) by digest.
fn check(
    subject: &Digest,
    artifacts: &[&Artifact],
    extra: &[&[u8]],
    policy: &Policy,
) -> Result<Verified, CosignError> {
    let mut blobs: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    for a in artifacts {
        blobs.extend(a.blobs());
    }
    for e in extra {
        blobs.insert(Digest::of(e), e.to_vec());
    }
    let digests: Vec<Digest> = artifacts.iter().map(|a| a.digest()).collect();
    let candidates: Vec<Candidate> = artifacts
        .iter()
        .zip(&digests)
        .map(|(a, d)| Candidate {
            digest: d,
            manifest: &a.manifest,
        })
        .collect();
    cosign::verify(subject, &candidates, policy, &mut |d: &Descriptor| {
        blobs
            .get(&d.digest)
            .cloned()
            .ok_or_else(|| CosignError::read(d.digest, "not in the test's blobs"))
    })
}

/// A containers/image `signature-1` file: its JSON after the format header.
fn containers_signature(dir: &str) -> serde_json::Value {
    let raw = std::fs::read(data(&format!("containers-image/{dir}/signature-1"))).unwrap();
    let start = raw.iter().position(|&b| b == b'{').unwrap();
    serde_json::from_slice(&raw[start..]).unwrap()
}

/// The `.sig` manifest cosign pushed for a containers/image sample: its
/// payload and annotations, exactly as cosign made them, in cosign's layout.
fn containers_sig(dir: &str) -> (Digest, Artifact) {
    let sig = containers_signature(dir);
    let ann = &sig["annotations"];
    let s = |k: &str| ann.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let layer = SigLayer {
        payload: base64::engine::general_purpose::STANDARD
            .decode(sig["payload"].as_str().unwrap())
            .unwrap(),
        signature: s("dev.cosignproject.cosign/signature").unwrap(),
        certificate: s("dev.sigstore.cosign/certificate"),
        chain: s("dev.sigstore.cosign/chain"),
        rekor_bundle: s("dev.sigstore.cosign/bundle"),
    };
    let art = make::sig_manifest(vec![layer]);
    let subject =
        Digest::of(&std::fs::read(data(&format!("containers-image/{dir}/manifest.json"))).unwrap());
    (subject, art)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn image(seed: &str) -> (Descriptor, Vec<u8>) {
    let bytes = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":2}},\"layers\":[],\"annotations\":{{\"seed\":\"{seed}\"}}}}",
        Digest::of(b"{}")
    )
    .into_bytes();
    (
        Descriptor::new(OCI_MANIFEST, Digest::of(&bytes), bytes.len() as u64),
        bytes,
    )
}

// --- Real samples -----------------------------------------------------------

#[test]
fn cosign_key_signed_sample_verifies_with_its_public_key() {
    let (subject, sig) = containers_sig("dir-img-cosign-valid");
    let v = check(
        &subject,
        &[&sig],
        &[],
        &key_policy(&data("containers-image/cosign.pub")),
    )
    .unwrap();
    assert_eq!(v.form, Form::SimpleSigning);
    assert_eq!(v.signature_digest, sig.digest());
    assert_eq!(
        v.docker_reference.as_deref(),
        Some("192.168.64.2:5000/cosign-signed-single-sample")
    );
    assert!(v.signer.ends_with("cosign.pub"), "{}", v.signer);
    assert_eq!(v.checked_at, None);
    assert_eq!(cosign::classify(&sig.manifest, None), Kind::Signature);
    assert!(!cosign::is_keyless(&sig.manifest));
}

#[test]
fn cosign_key_signed_sample_with_a_flipped_signature_byte_fails() {
    let (subject, _) = containers_sig("dir-img-cosign-valid");
    let sig = containers_signature("dir-img-cosign-valid");
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(
            sig["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let n = raw.len() - 5;
    raw[n] ^= 0x01;
    let layer = SigLayer {
        payload: base64::engine::general_purpose::STANDARD
            .decode(sig["payload"].as_str().unwrap())
            .unwrap(),
        signature: base64::engine::general_purpose::STANDARD.encode(&raw),
        certificate: None,
        chain: None,
        rekor_bundle: None,
    };
    let art = make::sig_manifest(vec![layer]);
    let e = check(
        &subject,
        &[&art],
        &[],
        &key_policy(&data("containers-image/cosign.pub")),
    )
    .unwrap_err();
    assert!(
        matches!(e, CosignError::BadSignature { keyless: false, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("does not verify with"), "{e}");
    assert!(e.to_string().contains("cosign.pub"), "{e}");
}

#[test]
fn cosign_certificate_signed_sample_chains_to_its_ca() {
    let (subject, sig) = containers_sig("dir-img-cosign-pki-valid");
    let policy = ca_policy(
        &data("containers-image/pki_root_crts.pem"),
        at(1_767_225_600),
    ); // 2026-01-01
    let v = check(&subject, &[&sig], &[], &policy).unwrap();
    assert_eq!(v.form, Form::SimpleSigning);
    assert!(v.signer.contains("qiwan@redhat.com"), "{}", v.signer);
    assert_eq!(v.checked_at, Some(at(1_767_225_600)));
    assert_eq!(v.docker_reference.as_deref(), Some("localhost:5000/test"));
    // The same sample with an identity to match, and one it does not name.
    let mut ca = CaTrust::from_pem_file(
        &data("containers-image/pki_root_crts.pem"),
        at(1_767_225_600),
    )
    .unwrap();
    ca = ca.with_identity(Identity::regex(".*@redhat\\.com").unwrap());
    let p = Policy {
        trust: Trust::Ca(ca.clone()),
        reference: None,
    };
    check(&subject, &[&sig], &[], &p).unwrap();
    let p = Policy {
        trust: Trust::Ca(ca.with_identity(Identity::Exact("someone@example.com".into()))),
        reference: None,
    };
    let e = check(&subject, &[&sig], &[], &p).unwrap_err();
    assert!(matches!(e, CosignError::Identity { .. }), "{e}");
}

#[test]
fn cosign_keyless_sample_is_reported_keyless_and_checks_against_the_fulcio_ca_at_its_time() {
    let (subject, sig) = containers_sig("dir-img-cosign-fulcio-rekor-valid");
    assert!(cosign::is_keyless(&sig.manifest));
    assert_eq!(
        cosign::classify(&sig.manifest, Some("sha256-abc.sig")),
        Kind::Signature
    );
    // A key policy cannot verify it, and says it is keyless.
    let e = check(
        &subject,
        &[&sig],
        &[],
        &key_policy(&data("containers-image/cosign.pub")),
    )
    .unwrap_err();
    assert!(
        matches!(e, CosignError::BadSignature { keyless: true, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("keyless"), "{e}");
    // The certificate lived ten minutes on 2023-01-20; at that time it chains
    // to Fulcio's CA.
    let fulcio = data("containers-image/fulcio-chain");
    let v = check(
        &subject,
        &[&sig],
        &[],
        &ca_policy(&fulcio, at(1_674_248_000)),
    )
    .unwrap();
    assert_eq!(v.signer, "mitr@redhat.com");
    // At any later time it has expired, and the message says when.
    let e = check(
        &subject,
        &[&sig],
        &[],
        &ca_policy(&fulcio, at(1_767_225_600)),
    )
    .unwrap_err();
    assert!(matches!(e, CosignError::Expired { .. }), "{e}");
    assert!(
        e.to_string().contains("expired at 2023-01-20T21:01:31Z"),
        "{e}"
    );
}

#[test]
fn sigstore_go_message_signature_bundle_verifies_with_its_key() {
    let content = b"test content";
    let subject = Descriptor::new(
        "application/octet-stream",
        Digest::of(content),
        content.len() as u64,
    );
    let bundle = std::fs::read(data("sigstore-go/public-key-validity.sigstore.json")).unwrap();
    let r = make::referrer(&subject, make::BUNDLE_V03, (make::BUNDLE_V03, bundle), &[]);
    let policy = key_policy(&data("sigstore-go/public-key-validity.pem"));
    let v = check(&subject.digest, &[&r], &[content], &policy).unwrap();
    assert_eq!(v.form, Form::SigstoreBundle);
    assert_eq!(v.docker_reference, None);
    // Another subject: the message digest names the sample's content.
    let (other, other_bytes) = image("other");
    let e = check(&other.digest, &[&r], &[&other_bytes], &policy).unwrap_err();
    assert!(matches!(e, CosignError::DigestMismatch { .. }), "{e}");
}

#[test]
fn cosign_dsse_bundle_sample_chains_to_the_public_good_fulcio_ca() {
    let subject: Digest = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
        .parse()
        .unwrap();
    let bundle = std::fs::read(data("cosign/oci-attestation.sigstore.json")).unwrap();
    assert!(cosign::bundle_is_keyless(&bundle));
    let desc = Descriptor::new(OCI_MANIFEST, subject, 0);
    let r = make::referrer(&desc, make::BUNDLE_V03, (make::BUNDLE_V03, bundle), &[]);
    // Logged at 1740770291 (2025-02-28T19:18:11Z), inside the certificate's ten minutes.
    let policy = ca_policy(&data("cosign/fulcio-public-good.pem"), at(1_740_770_300));
    let v = check(&subject, &[&r], &[], &policy).unwrap();
    assert_eq!(v.form, Form::SigstoreBundle);
    assert_eq!(v.signer, "cody@soyland.com");
    assert_eq!(v.docker_reference.as_deref(), Some("127.0.0.1:60943/repo"));
    // A key does not verify it.
    let e = check(
        &subject,
        &[&r],
        &[],
        &key_policy(&data("containers-image/cosign.pub")),
    )
    .unwrap_err();
    assert!(
        matches!(e, CosignError::BadSignature { keyless: true, .. }),
        "{e}"
    );
}

// --- Artifacts made with generated keys ---------------------------------------

#[test]
fn generated_p256_ed25519_and_rsa_signatures_verify_and_wrong_keys_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = image("a");
    for key in [
        KeyPair::generate_p256(dir.path()),
        KeyPair::generate_ed25519(dir.path()),
        KeyPair::generate_rsa(dir.path()),
    ] {
        let sig = make::simple_signing(&img.digest, "registry.example/app", &key, None);
        let v = check(&img.digest, &[&sig], &[], &key_policy(&key.public)).unwrap();
        assert_eq!(v.docker_reference.as_deref(), Some("registry.example/app"));
        let other = KeyPair::generate(dir.path(), key.alg);
        let e = check(&img.digest, &[&sig], &[], &key_policy(&other.public)).unwrap_err();
        assert!(
            matches!(e, CosignError::BadSignature { .. }),
            "{:?}: {e}",
            key.alg
        );
        assert!(
            e.to_string().contains(&other.public.display().to_string()),
            "{e}"
        );
    }
}

#[test]
fn a_payload_for_another_digest_fails_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let (img, _) = image("a");
    let (other, _) = image("b");
    let sig = make::simple_signing(&other.digest, "registry.example/app", &key, None);
    let e = check(&img.digest, &[&sig], &[], &key_policy(&key.public)).unwrap_err();
    assert!(matches!(e, CosignError::DigestMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&other.digest.to_string()) && msg.contains(&img.digest.to_string()),
        "{msg}"
    );
}

#[test]
fn no_signature_among_attestations_and_sboms_is_no_signature_found() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let (img, _) = image("a");
    let att = make::attestation(&img.digest, &key);
    let sbom = make::sbom_referrer(&img);
    let e = check(&img.digest, &[&att, &sbom], &[], &key_policy(&key.public)).unwrap_err();
    assert!(matches!(e, CosignError::NoSignature { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("no signature found for {}", img.digest)
    );
    let e = check(&img.digest, &[], &[], &key_policy(&key.public)).unwrap_err();
    assert!(matches!(e, CosignError::NoSignature { .. }), "{e}");
}

#[test]
fn docker_reference_is_reported_normalised_and_enforced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let (img, _) = image("a");
    let sig = make::simple_signing(&img.digest, "nginx", &key, None);
    let mut policy = key_policy(&key.public);
    let v = check(&img.digest, &[&sig], &[], &policy).unwrap();
    assert_eq!(
        v.docker_reference.as_deref(),
        Some("docker.io/library/nginx")
    );
    policy.reference = Some("docker.io/library/nginx".into());
    check(&img.digest, &[&sig], &[], &policy).unwrap();
    policy.reference = Some("registry.example/nginx".into());
    let e = check(&img.digest, &[&sig], &[], &policy).unwrap_err();
    assert!(matches!(e, CosignError::ReferenceMismatch { .. }), "{e}");
    assert!(e.to_string().contains("registry.example/nginx"), "{e}");
}

#[test]
fn one_good_signature_among_bad_ones_is_enough_and_all_bad_lists_each() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let stranger = KeyPair::generate_p256(dir.path());
    let (img, _) = image("a");
    let bad = make::simple_signing(&img.digest, "r.example/a", &stranger, None);
    let good = make::simple_signing(&img.digest, "r.example/a", &key, None);
    let v = check(&img.digest, &[&bad, &good], &[], &key_policy(&key.public)).unwrap();
    assert_eq!(v.signature_digest, good.digest());
    // Two layers in one .sig (cosign appends one per signer): one is enough.
    let both = make::sig_manifest(vec![
        SigLayer::new(make::payload(&img.digest, "r.example/a"), &stranger),
        SigLayer::new(make::payload(&img.digest, "r.example/a"), &key),
    ]);
    check(&img.digest, &[&both], &[], &key_policy(&key.public)).unwrap();
    let (other, _) = image("b");
    let wrong = make::simple_signing(&other.digest, "r.example/a", &key, None);
    let e = check(&img.digest, &[&bad, &wrong], &[], &key_policy(&key.public)).unwrap_err();
    assert!(
        matches!(e, CosignError::NoneValid { ref failures, .. } if failures.len() == 2),
        "{e}"
    );
}

#[test]
fn sigstore_bundle_referrers_made_like_cosign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let (img, img_bytes) = image("a");
    let dsse = make::sigstore_bundle_referrer(&img, &key);
    let v = check(&img.digest, &[&dsse], &[], &key_policy(&key.public)).unwrap();
    assert_eq!(v.form, Form::SigstoreBundle);
    assert_eq!(cosign::classify(&dsse.manifest, None), Kind::Signature);
    let msg = make::sigstore_message_referrer(&img, &img_bytes, &key);
    let v = check(
        &img.digest,
        &[&msg],
        &[&img_bytes],
        &key_policy(&key.public),
    )
    .unwrap();
    assert_eq!(v.signature_digest, msg.digest());
    // Signed for another image, or by another key, they fail.
    let (other, other_bytes) = image("b");
    let e = check(
        &img.digest,
        &[&make::sigstore_bundle_referrer(&other, &key)],
        &[],
        &key_policy(&key.public),
    )
    .unwrap_err();
    assert!(matches!(e, CosignError::DigestMismatch { .. }), "{e}");
    let e = check(
        &img.digest,
        &[&make::sigstore_message_referrer(&other, &other_bytes, &key)],
        &[&other_bytes],
        &key_policy(&key.public),
    )
    .unwrap_err();
    assert!(matches!(e, CosignError::DigestMismatch { .. }), "{e}");
    let stranger = KeyPair::generate_p256(dir.path());
    let e = check(&img.digest, &[&dsse], &[], &key_policy(&stranger.public)).unwrap_err();
    assert!(matches!(e, CosignError::BadSignature { .. }), "{e}");
    // A bundle records no docker-reference, so an enforced one fails closed.
    let mut p = key_policy(&key.public);
    p.reference = Some("r.example/a".into());
    let e = check(&img.digest, &[&dsse], &[], &p).unwrap_err();
    assert!(
        matches!(e, CosignError::ReferenceMismatch { signed: None, .. }),
        "{e}"
    );
}

#[test]
fn ca_mode_checks_chain_time_revocation_usage_and_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate(&dir.path().join("ca"));
    let other_ca = Ca::generate(&dir.path().join("other"));
    let (img, _) = image("a");
    let signed_by = |cert: &make::Cert| {
        make::simple_signing(&img.digest, "r.example/a", &cert.key, Some((cert, &ca)))
    };
    let good = ca.issue_code_signing("release-bot", "release@vertex.example");
    // An hour into the certificates' 30 days: after every notBefore here,
    // however slowly openssl runs.
    let now = SystemTime::now() + Duration::from_secs(3600);
    let sig = signed_by(&good);
    let v = check(&img.digest, &[&sig], &[], &ca_policy(&ca.cert, now)).unwrap();
    assert_eq!(v.signer, "release@vertex.example");
    assert_eq!(v.checked_at, Some(now));

    // Another CA.
    let e = check(&img.digest, &[&sig], &[], &ca_policy(&other_ca.cert, now)).unwrap_err();
    assert!(matches!(e, CosignError::Chain { .. }), "{e}");
    assert!(e.to_string().contains("does not chain to CA"), "{e}");
    assert!(e.to_string().contains("CN=release-bot"), "{e}");

    // Checked after it expired (the certificate lives 30 days).
    let later = now + Duration::from_secs(60 * 86_400);
    let e = check(&img.digest, &[&sig], &[], &ca_policy(&ca.cert, later)).unwrap_err();
    assert!(matches!(e, CosignError::Expired { .. }), "{e}");

    // Revoked by a CRL; an empty CRL is fine.
    let empty = ca.empty_crl();
    let p = Policy {
        trust: Trust::Ca(
            CaTrust::from_pem_file(&ca.cert, now)
                .unwrap()
                .with_crl_file(&empty)
                .unwrap(),
        ),
        reference: None,
    };
    check(&img.digest, &[&sig], &[], &p).unwrap();
    let crl = ca.revoke(&good);
    let p = Policy {
        trust: Trust::Ca(
            CaTrust::from_pem_file(&ca.cert, now)
                .unwrap()
                .with_crl_file(&crl)
                .unwrap(),
        ),
        reference: None,
    };
    let e = check(&img.digest, &[&sig], &[], &p).unwrap_err();
    assert!(matches!(e, CosignError::Revoked { .. }), "{e}");

    // A certificate for TLS servers is not for code signing.
    let tls = ca.issue("web", "web@vertex.example", Some("serverAuth"));
    let e = check(
        &img.digest,
        &[&signed_by(&tls)],
        &[],
        &ca_policy(&ca.cert, now),
    )
    .unwrap_err();
    assert!(matches!(e, CosignError::NotCodeSigning { .. }), "{e}");

    // Identity: exact SAN, CN, regex; and a mismatch.
    for id in [
        Identity::Exact("release@vertex.example".into()),
        Identity::Exact("release-bot".into()),
        Identity::regex("release@.*\\.example").unwrap(),
    ] {
        let p = Policy {
            trust: Trust::Ca(
                CaTrust::from_pem_file(&ca.cert, now)
                    .unwrap()
                    .with_identity(id),
            ),
            reference: None,
        };
        check(&img.digest, &[&sig], &[], &p).unwrap();
    }
    let p = Policy {
        trust: Trust::Ca(
            CaTrust::from_pem_file(&ca.cert, now)
                .unwrap()
                .with_identity(Identity::regex("release").unwrap()),
        ),
        reference: None,
    };
    let e = check(&img.digest, &[&sig], &[], &p).unwrap_err();
    assert!(
        matches!(e, CosignError::Identity { .. }),
        "regex must match whole: {e}"
    );

    // A key-signed signature has no certificate to check.
    let key = KeyPair::generate_p256(dir.path());
    let plain = make::simple_signing(&img.digest, "r.example/a", &key, None);
    let e = check(&img.digest, &[&plain], &[], &ca_policy(&ca.cert, now)).unwrap_err();
    assert!(matches!(e, CosignError::NoCertificate { .. }), "{e}");

    // A certificate-signed bundle referrer chains the same way.
    let bundle = make::sigstore_bundle_referrer(&img, &good.key);
    let text = String::from_utf8(bundle.layers[0].1.clone()).unwrap();
    let der = std::process::Command::new(support::require_tool("openssl", "openssl"))
        .args(["x509", "-outform", "der", "-in"])
        .arg(&good.cert)
        .output()
        .unwrap()
        .stdout;
    let raw = base64::engine::general_purpose::STANDARD.encode(der);
    let start = text.find("\"verificationMaterial\":").unwrap();
    let end = text.find(",\"dsseEnvelope\"").unwrap();
    let text = format!(
        "{}\"verificationMaterial\":{{\"certificate\":{{\"rawBytes\":\"{raw}\"}}}}{}",
        &text[..start],
        &text[end..]
    );
    let r = make::referrer(
        &img,
        make::BUNDLE_V03,
        (make::BUNDLE_V03, text.into_bytes()),
        &[],
    );
    let v = check(&img.digest, &[&r], &[], &ca_policy(&ca.cert, now)).unwrap();
    assert_eq!(v.form, Form::SigstoreBundle);
    assert_eq!(v.signer, "release@vertex.example");
}

#[test]
fn oversized_payloads_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let (img, _) = image("a");
    let mut payload = make::payload(&img.digest, "r.example/a");
    payload.truncate(payload.len() - 1);
    payload.extend(std::iter::repeat_n(b' ', 1 << 20));
    payload.push(b'}');
    let sig = make::sig_manifest(vec![SigLayer::new(payload, &key)]);
    let e = check(&img.digest, &[&sig], &[], &key_policy(&key.public)).unwrap_err();
    assert!(matches!(e, CosignError::TooLarge { .. }), "{e}");
}

#[test]
fn malformed_signatures_and_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let (img, _) = image("a");
    let mut layer = SigLayer::new(make::payload(&img.digest, "r.example/a"), &key);
    layer.signature = "not base64!".into();
    let sig = make::sig_manifest(vec![layer]);
    let e = check(&img.digest, &[&sig], &[], &key_policy(&key.public)).unwrap_err();
    assert!(matches!(e, CosignError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("not base64"), "{e}");
    // A candidate whose bytes are not those of its digest.
    let good = make::simple_signing(&img.digest, "r.example/a", &key, None);
    let wrong = Digest::of(b"something else");
    let e = cosign::verify(
        &img.digest,
        &[Candidate {
            digest: &wrong,
            manifest: &good.manifest,
        }],
        &key_policy(&key.public),
        &mut |d: &Descriptor| {
            good.blob(&d.digest)
                .ok_or_else(|| CosignError::read(d.digest, "missing"))
        },
    )
    .unwrap_err();
    assert!(matches!(e, CosignError::Malformed { .. }), "{e}");

    let bad = dir.path().join("bad.pub");
    std::fs::write(
        &bad,
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let e = PublicKey::from_pem_file(&bad).unwrap_err();
    assert!(matches!(e, CosignError::KeyFormat { .. }), "{e}");
    assert!(e.to_string().contains("bad.pub"), "{e}");
    // A private key where a public key belongs.
    let e = PublicKey::from_pem_file(&key.private).unwrap_err();
    assert!(matches!(e, CosignError::KeyFormat { .. }), "{e}");
    let e = PublicKey::from_pem_file(&dir.path().join("missing.pub")).unwrap_err();
    assert!(matches!(e, CosignError::KeyFile { .. }), "{e}");
    assert!(e.to_string().contains("missing.pub"), "{e}");
    let e = CaTrust::from_pem_file(&key.public, SystemTime::now()).unwrap_err();
    assert!(matches!(e, CosignError::KeyFormat { .. }), "{e}");
    assert!(Identity::regex("(").is_err());
}

#[test]
fn classify_tells_signatures_attestations_and_sboms_apart() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_p256(dir.path());
    let (img, img_bytes) = image("a");
    let sig = make::simple_signing(&img.digest, "r.example/a", &key, None);
    assert_eq!(cosign::classify(&sig.manifest, None), Kind::Signature);
    assert_eq!(
        cosign::classify(&make::attestation(&img.digest, &key).manifest, None),
        Kind::Attestation
    );
    assert_eq!(
        cosign::classify(&make::sbom_referrer(&img).manifest, None),
        Kind::Sbom
    );
    assert_eq!(
        cosign::classify(
            &make::sigstore_message_referrer(&img, &img_bytes, &key).manifest,
            None
        ),
        Kind::Signature
    );
    let att_bundle = make::referrer(
        &img,
        make::BUNDLE_V03,
        (make::BUNDLE_V03, b"{}".to_vec()),
        &[(
            "dev.sigstore.bundle.predicateType",
            "https://slsa.dev/provenance/v1".into(),
        )],
    );
    assert_eq!(
        cosign::classify(&att_bundle.manifest, None),
        Kind::Attestation
    );
    // cosign's .sbom tags hold the SBOM as a plain layer.
    let other = make::referrer(
        &img,
        "application/x-thing",
        ("application/x-thing", b"x".to_vec()),
        &[],
    );
    assert_eq!(cosign::classify(&other.manifest, None), Kind::Other);
    assert_eq!(
        cosign::classify(&other.manifest, Some("sha256-abc.sbom")),
        Kind::Sbom
    );
    assert_eq!(
        cosign::classify(b"not json", Some("sha256-abc.att")),
        Kind::Attestation
    );
    assert_eq!(cosign::classify(b"not json", None), Kind::Other);
    assert!(!cosign::is_keyless(&sig.manifest));
}

#[test]
fn made_artifacts_are_the_same_bytes_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = image("a");
    assert_eq!(
        make::sbom_referrer(&img).manifest,
        make::sbom_referrer(&img).manifest
    );
    let key = KeyPair::generate_ed25519(dir.path());
    // Ed25519 signatures are deterministic, so the whole .sig is.
    assert_eq!(
        make::simple_signing(&img.digest, "r.example/a", &key, None).manifest,
        make::simple_signing(&img.digest, "r.example/a", &key, None).manifest
    );
}

#[test]
fn made_artifacts_push_into_the_distribution_registry_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let reg = support::registry::DockerRegistry::start(&dir.path().join("reg"), false);
    let key = KeyPair::generate_p256(dir.path());
    let (img, img_bytes) = image("pushed");
    let image_art = Artifact {
        manifest: img_bytes.clone(),
        config: b"{}".to_vec(),
        layers: vec![],
    };
    image_art.push(&reg.host(), "app", "v1");
    let sig_tag = format!("sha256-{}.sig", img.digest.hex());
    let att_tag = format!("sha256-{}.att", img.digest.hex());
    let sig = make::simple_signing(&img.digest, &format!("{}/app", reg.host()), &key, None);
    let att = make::attestation(&img.digest, &key);
    let sbom = make::sbom_referrer(&img);
    let bundle = make::sigstore_bundle_referrer(&img, &key);
    sig.push(&reg.host(), "app", &sig_tag);
    att.push(&reg.host(), "app", &att_tag);
    sbom.push(&reg.host(), "app", &sbom.digest().to_string());
    bundle.push(&reg.host(), "app", &bundle.digest().to_string());
    for (art, reference) in [
        (&sig, format!(":{sig_tag}")),
        (&att, format!(":{att_tag}")),
        (&sbom, format!("@{}", sbom.digest())),
        (&bundle, format!("@{}", bundle.digest())),
    ] {
        let got = support::registry_manifest(&format!("{}/app{reference}", reg.host()), None)
            .expect_ok("skopeo inspect --raw");
        assert_eq!(Digest::of(got.as_bytes()), art.digest(), "{reference}");
    }
    // What came back verifies.
    check(
        &img.digest,
        &[&sig, &att, &sbom, &bundle],
        &[],
        &key_policy(&key.public),
    )
    .unwrap();
}
