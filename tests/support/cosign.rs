//! Making cosign-format artifacts with keys the tests generate (openssl):
//! simple-signing `.sig` manifests (key- or certificate-signed), `.att`
//! attestations, SBOM referrers, and Sigstore bundle referrers, laid out the
//! way cosign writes them, plus a small CA that issues code-signing
//! certificates and revokes them. `Artifact::push` puts one into a plain
//! HTTP registry without authentication (the distribution registry the
//! tests start).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use ferry::digest::Digest;
use ferry::oci::Descriptor;

use super::{require_tool, run};

/// cosign's simple-signing layer media type.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// cosign's attestation layer media type.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The Sigstore bundle artifactType and layer media type.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// SPDX JSON, the SBOM artifactType the helpers use.
pub const SPDX_JSON: &str = "application/spdx+json";
/// The predicate type `cosign sign --new-bundle-format` uses.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// A fixed creation time, so artifacts are the same bytes every run.
pub const CREATED: &str = "2026-01-02T03:04:05Z";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn openssl() -> Command {
    Command::new(require_tool("openssl", "openssl"))
}

/// A file name in `dir` starting with `stem` that is not taken yet.
fn fresh(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    (0..)
        .map(|i| dir.join(format!("{stem}-{i}.{ext}")))
        .find(|p| !p.exists())
        .unwrap()
}

/// Which algorithm a key pair signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256, ASN.1 DER signatures (cosign's default).
    P256,
    /// Ed25519 over the whole message.
    Ed25519,
    /// RSA 2048, PKCS#1 v1.5 with SHA-256.
    Rsa,
}

/// A private key (PEM, PKCS#8) and its public key (PEM SPKI), as files.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
    pub alg: Alg,
}

impl KeyPair {
    /// An ECDSA P-256 key pair in `dir`, like `cosign generate-key-pair`
    /// makes (unencrypted).
    pub fn generate_p256(dir: &Path) -> KeyPair {
        KeyPair::generate(dir, Alg::P256)
    }

    /// An Ed25519 key pair in `dir`.
    pub fn generate_ed25519(dir: &Path) -> KeyPair {
        KeyPair::generate(dir, Alg::Ed25519)
    }

    /// An RSA 2048 key pair in `dir`.
    pub fn generate_rsa(dir: &Path) -> KeyPair {
        KeyPair::generate(dir, Alg::Rsa)
    }

    /// A key pair of `alg` in `dir`.
    pub fn generate(dir: &Path, alg: Alg) -> KeyPair {
        let private = fresh(dir, "cosign", "key");
        let public = private.with_extension("pub");
        let mut gen = openssl();
        gen.arg("genpkey");
        match alg {
            Alg::P256 => gen.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            Alg::Ed25519 => gen.args(["-algorithm", "ed25519"]),
            Alg::Rsa => gen.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        };
        run(gen.arg("-out").arg(&private)).expect_ok("openssl genpkey");
        run(openssl()
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public))
        .expect_ok("openssl pkey -pubout");
        KeyPair {
            private,
            public,
            alg,
        }
    }

    /// The signature of `data`: DER ECDSA, raw Ed25519 or PKCS#1 v1.5 RSA.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("data");
        let out = dir.path().join("sig");
        std::fs::write(&input, data).unwrap();
        let mut cmd = openssl();
        match self.alg {
            Alg::Ed25519 => cmd.args(["pkeyutl", "-sign", "-rawin", "-inkey"]),
            Alg::P256 | Alg::Rsa => cmd.args(["dgst", "-sha256", "-sign"]),
        };
        cmd.arg(&self.private);
        match self.alg {
            Alg::Ed25519 => cmd.arg("-in").arg(&input).arg("-out").arg(&out),
            Alg::P256 | Alg::Rsa => cmd.arg("-out").arg(&out).arg(&input),
        };
        run(&mut cmd).expect_ok("openssl sign");
        std::fs::read(out).unwrap()
    }

    /// The public key PEM text.
    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(&self.public).unwrap()
    }
}

/// A small CA made with openssl: a self-signed P-256 root that can issue
/// code-signing certificates and revoke them in a CRL.
#[derive(Debug, Clone)]
pub struct Ca {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what `cosign_ca` names.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate the CA issued, with the key pair it certifies.
#[derive(Debug, Clone)]
pub struct Cert {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its key pair.
    pub key: KeyPair,
}

impl Cert {
    /// The certificate PEM text.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }
}

impl Ca {
    /// A new CA in `dir` (created if missing), valid for a year.
    pub fn generate(dir: &Path) -> Ca {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("ca.key");
        let cert = dir.join("ca.pem");
        run(openssl()
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key))
        .expect_ok("openssl genpkey (CA)");
        run(openssl()
            .args([
                "req",
                "-x509",
                "-new",
                "-days",
                "365",
                "-subj",
                "/O=ferry tests/CN=ferry code-signing CA",
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-key")
            .arg(&key)
            .arg("-out")
            .arg(&cert))
        .expect_ok("openssl req (CA)");
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = ferry\n[ferry]\ndatabase = {}\ncrlnumber = {}\ncertificate = {}\nprivate_key = {}\ndefault_md = sha256\ndefault_crl_days = 30\n",
                dir.join("index.txt").display(),
                dir.join("crlnumber").display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        Ca {
            dir: dir.to_owned(),
            cert,
            key,
        }
    }

    /// A code-signing certificate (P-256 key) for `subject` (a common name)
    /// with `san` as its e-mail subjectAltName, valid for 30 days.
    pub fn issue_code_signing(&self, subject: &str, san: &str) -> Cert {
        self.issue(subject, san, Some("codeSigning"))
    }

    /// A certificate with extended key usage `eku` (`codeSigning`,
    /// `serverAuth`, …), or none when `None`.
    pub fn issue(&self, subject: &str, san: &str, eku: Option<&str>) -> Cert {
        let key = KeyPair::generate_p256(&self.dir);
        let csr = key.private.with_extension("csr");
        let cert = key.private.with_extension("pem");
        let ext = key.private.with_extension("ext");
        run(openssl()
            .args(["req", "-new", "-subj", &format!("/CN={subject}"), "-key"])
            .arg(&key.private)
            .arg("-out")
            .arg(&csr))
        .expect_ok("openssl req (leaf)");
        let mut exts = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=email:{san}\n"
        );
        if let Some(eku) = eku {
            exts.push_str(&format!("extendedKeyUsage={eku}\n"));
        }
        std::fs::write(&ext, exts).unwrap();
        run(openssl()
            .args(["x509", "-req", "-days", "30", "-set_serial"])
            .arg(format!(
                "{}",
                1000 + std::fs::read_dir(&self.dir).unwrap().count()
            ))
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&self.cert)
            .arg("-CAkey")
            .arg(&self.key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert))
        .expect_ok("openssl x509 -req (leaf)");
        Cert { cert, key }
    }

    /// Revokes `cert` and returns a fresh PEM CRL listing every revoked
    /// certificate.
    pub fn revoke(&self, cert: &Cert) -> PathBuf {
        let cnf = self.dir.join("ca.cnf");
        run(openssl()
            .args(["ca", "-batch", "-config"])
            .arg(&cnf)
            .arg("-revoke")
            .arg(&cert.cert))
        .expect_ok("openssl ca -revoke");
        let crl = fresh(&self.dir, "revoked", "crl");
        run(openssl()
            .args(["ca", "-batch", "-gencrl", "-config"])
            .arg(&cnf)
            .arg("-out")
            .arg(&crl))
        .expect_ok("openssl ca -gencrl");
        crl
    }

    /// An empty CRL (nothing revoked).
    pub fn empty_crl(&self) -> PathBuf {
        let crl = fresh(&self.dir, "empty", "crl");
        run(openssl()
            .args(["ca", "-batch", "-gencrl", "-config"])
            .arg(self.dir.join("ca.cnf"))
            .arg("-out")
            .arg(&crl))
        .expect_ok("openssl ca -gencrl");
        crl
    }
}

/// A manifest with its blobs, ready to push or to feed to verification.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest's raw bytes.
    pub manifest: Vec<u8>,
    /// The config blob.
    pub config: Vec<u8>,
    /// The layers: media type and bytes.
    pub layers: Vec<(String, Vec<u8>)>,
}

impl Artifact {
    /// The manifest's digest.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// A descriptor of the manifest (OCI image manifest).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(OCI_MANIFEST, self.digest(), self.manifest.len() as u64)
    }

    /// Every blob (config first), by digest.
    pub fn blobs(&self) -> Vec<(Digest, Vec<u8>)> {
        std::iter::once(&self.config)
            .chain(self.layers.iter().map(|(_, b)| b))
            .map(|b| (Digest::of(b), b.clone()))
            .collect()
    }

    /// The bytes of one blob, when the artifact has it.
    pub fn blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.blobs()
            .into_iter()
            .find(|(d, _)| d == digest)
            .map(|(_, b)| b)
    }

    /// Pushes the blobs, then the manifest as `reference` (a tag or a
    /// digest), into `repo` on the plain-HTTP registry at `host`, without
    /// authentication.
    pub fn push(&self, host: &str, repo: &str, reference: &str) {
        for (_, bytes) in self.blobs() {
            super::push::blob(host, repo, &bytes);
        }
        super::push::manifest(host, repo, reference, OCI_MANIFEST, &self.manifest);
    }
}

/// cosign's config for a signature or attestation image: go-containerregistry's
/// empty image config with one diff_id per layer.
fn cosign_config(layers: &[&[u8]]) -> Vec<u8> {
    let ids: Vec<String> = layers
        .iter()
        .map(|l| json_str(&Digest::of(l).to_string()))
        .collect();
    format!(
        "{{\"architecture\":\"\",\"created\":\"0001-01-01T00:00:00Z\",\"history\":[{{\"created\":\"0001-01-01T00:00:00Z\"}}],\"os\":\"\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}},\"config\":{{}}}}",
        ids.join(",")
    )
    .into_bytes()
}

/// A descriptor in go-containerregistry's field order.
fn desc_json(media_type: &str, bytes: &[u8], annotations: &[(&str, String)]) -> String {
    let mut s = format!(
        "{{\"mediaType\":{},\"size\":{},\"digest\":{}",
        json_str(media_type),
        bytes.len(),
        json_str(&Digest::of(bytes).to_string())
    );
    if !annotations.is_empty() {
        let a: Vec<String> = annotations
            .iter()
            .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
            .collect();
        s.push_str(&format!(",\"annotations\":{{{}}}", a.join(",")));
    }
    s.push('}');
    s
}

/// A cosign-style image manifest (config, layers) as cosign writes `.sig`
/// and `.att` tags.
/// A layer to lay out: media type, bytes, annotations.
type LayerSpec<'a> = (String, Vec<u8>, Vec<(&'a str, String)>);

fn cosign_image(layers: Vec<LayerSpec<'_>>) -> Artifact {
    let config = cosign_config(
        &layers
            .iter()
            .map(|(_, b, _)| b.as_slice())
            .collect::<Vec<_>>(),
    );
    let layer_json: Vec<String> = layers
        .iter()
        .map(|(mt, b, a)| desc_json(mt, b, a))
        .collect();
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":{},\"config\":{},\"layers\":[{}]}}",
        json_str(OCI_MANIFEST),
        desc_json(OCI_CONFIG, &config, &[]),
        layer_json.join(",")
    )
    .into_bytes();
    Artifact {
        manifest,
        config,
        layers: layers.into_iter().map(|(mt, b, _)| (mt, b)).collect(),
    }
}

/// The simple-signing payload cosign signs for an image.
pub fn payload(subject: &Digest, docker_reference: &str) -> Vec<u8> {
    format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":{}}},\"image\":{{\"docker-manifest-digest\":{}}},\"type\":\"cosign container image signature\"}},\"optional\":null}}",
        json_str(docker_reference),
        json_str(&subject.to_string())
    )
    .into_bytes()
}

/// One simple-signing layer: payload, its signature, and the certificate
/// and chain when a certificate signed it.
pub struct SigLayer {
    pub payload: Vec<u8>,
    pub signature: String,
    pub certificate: Option<String>,
    pub chain: Option<String>,
    /// The Rekor bundle annotation of a keyless signature.
    pub rekor_bundle: Option<String>,
}

impl SigLayer {
    /// `payload` signed by `key`.
    pub fn new(payload: Vec<u8>, key: &KeyPair) -> SigLayer {
        SigLayer {
            signature: b64(&key.sign(&payload)),
            payload,
            certificate: None,
            chain: None,
            rekor_bundle: None,
        }
    }

    /// `payload` signed by a certificate's key, carrying the certificate
    /// and the CA as its chain.
    pub fn with_cert(payload: Vec<u8>, cert: &Cert, chain: Option<&Ca>) -> SigLayer {
        let mut l = SigLayer::new(payload, &cert.key);
        l.certificate = Some(cert.pem());
        l.chain = chain.map(|ca| std::fs::read_to_string(&ca.cert).unwrap());
        l
    }
}

/// A `.sig` manifest of these layers, as cosign writes under
/// `sha256-<hex>.sig` (cosign appends a layer per signature).
pub fn sig_manifest(layers: Vec<SigLayer>) -> Artifact {
    cosign_image(
        layers
            .into_iter()
            .map(|l| {
                let mut a = vec![("dev.cosignproject.cosign/signature", l.signature)];
                if let Some(b) = l.rekor_bundle {
                    a.push(("dev.sigstore.cosign/bundle", b));
                }
                if let Some(c) = l.certificate {
                    a.push(("dev.sigstore.cosign/certificate", c));
                }
                if let Some(c) = l.chain {
                    a.push(("dev.sigstore.cosign/chain", c));
                }
                (SIMPLE_SIGNING.to_owned(), l.payload, a)
            })
            .collect(),
    )
}

/// cosign's `.sig` for `subject`, signed by `key` (or by `cert`'s key,
/// embedding the certificate and the CA as its chain).
pub fn simple_signing(
    subject: &Digest,
    docker_reference: &str,
    key: &KeyPair,
    cert: Option<(&Cert, &Ca)>,
) -> Artifact {
    let p = payload(subject, docker_reference);
    let layer = match cert {
        Some((cert, ca)) => SigLayer::with_cert(p, cert, Some(ca)),
        None => SigLayer::new(p, key),
    };
    sig_manifest(vec![layer])
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope of an in-toto statement, signed by `key`.
fn envelope(statement: &[u8], key: &KeyPair) -> String {
    let pt = "application/vnd.in-toto+json";
    let sig = key.sign(&pae(pt, statement));
    format!(
        "{{\"payloadType\":{},\"payload\":{},\"signatures\":[{{\"keyid\":\"\",\"sig\":{}}}]}}",
        json_str(pt),
        json_str(&b64(statement)),
        json_str(&b64(&sig))
    )
}

/// An in-toto statement about `subject` (v0.1, as cosign attest writes).
pub fn statement(subject: &Digest, name: &str, predicate_type: &str, predicate: &str) -> Vec<u8> {
    format!(
        "{{\"_type\":\"https://in-toto.io/Statement/v0.1\",\"predicateType\":{},\"subject\":[{{\"name\":{},\"digest\":{{\"sha256\":{}}}}}],\"predicate\":{predicate}}}",
        json_str(predicate_type),
        json_str(name),
        json_str(&subject.hex())
    )
    .into_bytes()
}

/// cosign's `.att` for `subject`: a DSSE envelope of an SLSA provenance
/// statement, signed by `key`.
pub fn attestation(subject: &Digest, key: &KeyPair) -> Artifact {
    let pred = "https://slsa.dev/provenance/v0.2";
    let st = statement(
        subject,
        "registry.example/app",
        pred,
        "{\"builder\":{\"id\":\"ferry-tests\"}}",
    );
    cosign_image(vec![(
        DSSE_ENVELOPE.to_owned(),
        envelope(&st, key).into_bytes(),
        vec![("predicateType", pred.to_owned())],
    )])
}

/// An OCI 1.1 referrer of `subject`: empty config, one layer, artifactType.
pub fn referrer(
    subject: &Descriptor,
    artifact_type: &str,
    layer: (&str, Vec<u8>),
    annotations: &[(&str, String)],
) -> Artifact {
    let config = b"{}".to_vec();
    let mut m = format!(
        "{{\"schemaVersion\":2,\"mediaType\":{},\"artifactType\":{},\"config\":{},\"layers\":[{}],\"subject\":{{\"mediaType\":{},\"digest\":{},\"size\":{}}}",
        json_str(OCI_MANIFEST),
        json_str(artifact_type),
        desc_json(OCI_EMPTY, &config, &[]),
        desc_json(layer.0, &layer.1, &[]),
        json_str(&subject.media_type),
        json_str(&subject.digest.to_string()),
        subject.size
    );
    if !annotations.is_empty() {
        let a: Vec<String> = annotations
            .iter()
            .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
            .collect();
        m.push_str(&format!(",\"annotations\":{{{}}}", a.join(",")));
    }
    m.push('}');
    Artifact {
        manifest: m.into_bytes(),
        config,
        layers: vec![(layer.0.to_owned(), layer.1)],
    }
}

/// An SPDX SBOM attached to `subject` as an OCI 1.1 referrer.
pub fn sbom_referrer(subject: &Descriptor) -> Artifact {
    let doc = format!(
        "{{\"spdxVersion\":\"SPDX-2.3\",\"dataLicense\":\"CC0-1.0\",\"SPDXID\":\"SPDXRef-DOCUMENT\",\"name\":{},\"documentNamespace\":\"https://ferry.invalid/spdx/{}\",\"creationInfo\":{{\"created\":\"{CREATED}\",\"creators\":[\"Tool: ferry-tests\"]}},\"packages\":[]}}",
        json_str(&subject.digest.to_string()),
        subject.digest.hex()
    );
    referrer(
        subject,
        SPDX_JSON,
        (SPDX_JSON, doc.into_bytes()),
        &[("org.opencontainers.image.created", CREATED.to_owned())],
    )
}

/// The Sigstore bundle referrer `cosign sign --new-bundle-format --key`
/// attaches to `subject`: a v0.3 bundle with a DSSE envelope of an in-toto
/// statement (predicate `https://sigstore.dev/cosign/sign/v1`) naming the
/// subject digest, signed by `key`.
pub fn sigstore_bundle_referrer(subject: &Descriptor, key: &KeyPair) -> Artifact {
    let st = format!(
        "{{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{{\"digest\":{{\"sha256\":{}}}}}],\"predicateType\":{},\"predicate\":{{}}}}",
        json_str(&subject.digest.hex()),
        json_str(COSIGN_SIGN_PREDICATE)
    );
    let bundle = format!(
        "{{\"mediaType\":{},\"verificationMaterial\":{{\"publicKey\":{{\"hint\":{}}}}},\"dsseEnvelope\":{}}}",
        json_str(BUNDLE_V03),
        json_str(&b64(&Digest::of(key.public_pem().as_bytes()).hex().into_bytes())),
        envelope(st.as_bytes(), key)
    );
    referrer(
        subject,
        BUNDLE_V03,
        (BUNDLE_V03, bundle.into_bytes()),
        &[
            ("dev.sigstore.bundle.content", "dsse-envelope".to_owned()),
            (
                "dev.sigstore.bundle.predicateType",
                COSIGN_SIGN_PREDICATE.to_owned(),
            ),
            ("org.opencontainers.image.created", CREATED.to_owned()),
        ],
    )
}

/// A Sigstore bundle referrer holding a `messageSignature`: `key`'s
/// signature over the subject manifest's bytes, with their sha256 as the
/// message digest.
pub fn sigstore_message_referrer(
    subject: &Descriptor,
    subject_bytes: &[u8],
    key: &KeyPair,
) -> Artifact {
    let bundle = format!(
        "{{\"mediaType\":{},\"verificationMaterial\":{{\"publicKey\":{{\"hint\":\"\"}}}},\"messageSignature\":{{\"messageDigest\":{{\"algorithm\":\"SHA2_256\",\"digest\":{}}},\"signature\":{}}}}}",
        json_str(BUNDLE_V03),
        json_str(&b64(&hex::decode(Digest::of(subject_bytes).hex()).unwrap())),
        json_str(&b64(&key.sign(subject_bytes)))
    );
    referrer(
        subject,
        BUNDLE_V03,
        (BUNDLE_V03, bundle.into_bytes()),
        &[(
            "dev.sigstore.bundle.content",
            "message-signature".to_owned(),
        )],
    )
}
