//! Pushing hand-made blobs and manifests into a registry over plain HTTP
//! (no auth), for artifacts no client here makes: referrers with a
//! `subject`, cosign's tag layouts, fallback indexes.

use std::io::{Read, Write};
use std::net::TcpStream;

use ferry::digest::Digest;

/// One HTTP/1.1 request with a body; returns (status, headers, body).
pub fn request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(host).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    // A length only where a body belongs, so callers can test the rest
    // exactly as they write it.
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Uploads `bytes` as a blob of `repo` (POST, then a monolithic PUT).
pub fn blob(host: &str, repo: &str, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    let (status, headers, body) = request(
        host,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        &[],
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let location = header(&headers, "location").unwrap().to_owned();
    let path = match location.find("/v2/") {
        Some(i) => &location[i..],
        None => &location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, _, body) = request(
        host,
        "PUT",
        &format!("{path}{sep}digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    d
}

/// Pushes manifest `bytes` as `repo:reference` (a tag or a digest).
pub fn manifest(host: &str, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Digest {
    let (status, _, body) = request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        bytes,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    Digest::of(bytes)
}

/// Fetches `repo:reference`'s manifest bytes (any media type), or `None`.
pub fn get_manifest(host: &str, repo: &str, reference: &str) -> Option<Vec<u8>> {
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let (status, _, body) = request(
        host,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", accept)],
        &[],
    );
    (status == 200).then_some(body)
}

/// A descriptor as JSON.
pub fn desc(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::of(bytes).to_string(),
        "size": bytes.len(),
    })
}

/// An artifact made for tests: its manifest and the blobs it names.
pub struct Artifact {
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub blobs: Vec<Vec<u8>>,
}

impl Artifact {
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// Pushes its blobs, then its manifest as `reference` (its digest when
    /// `None`).
    pub fn push(&self, host: &str, repo: &str, reference: Option<&str>) -> Digest {
        for b in &self.blobs {
            blob(host, repo, b);
        }
        let r = reference
            .map(str::to_owned)
            .unwrap_or_else(|| self.digest().to_string());
        manifest(host, repo, &r, &self.media_type, &self.manifest)
    }
}

/// An OCI 1.1 artifact referring to `subject` (OCI manifest, empty config,
/// one layer of `content`).
pub fn referrer(
    subject: &serde_json::Value,
    artifact_type: &str,
    layer_type: &str,
    content: &[u8],
) -> Artifact {
    let empty = b"{}".to_vec();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": desc("application/vnd.oci.empty.v1+json", &empty),
        "layers": [desc(layer_type, content)],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    Artifact {
        manifest: serde_json::to_vec(&m).unwrap(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        blobs: vec![empty, content.to_vec()],
    }
}

/// An index of `manifests` (descriptors), as the referrers tag schema keeps.
pub fn index(manifests: Vec<serde_json::Value>) -> Artifact {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    Artifact {
        manifest: serde_json::to_vec(&m).unwrap(),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        blobs: Vec::new(),
    }
}

/// The descriptor of `a` with its artifact type, as a referrers index
/// lists it.
pub fn listed(a: &Artifact, artifact_type: &str) -> serde_json::Value {
    let mut d = desc(&a.media_type, &a.manifest);
    d["artifactType"] = artifact_type.into();
    d
}

/// A two-platform OCI image pushed as `repo:tag`; returns the index and
/// its amd64 child's descriptors (as JSON).
pub struct Pushed {
    pub index: serde_json::Value,
    pub amd64: serde_json::Value,
}

pub fn push_image(dir: &std::path::Path, host: &str, repo: &str, tag: &str, seed: u64) -> Pushed {
    let layout = dir.join(format!("layout-{seed}"));
    let mut l = super::build::LayoutBuilder::new(&layout);
    let base = super::build::layer(&[("etc/base", &super::build::pseudo_random(seed, 2000))]);
    let amd = super::build::layer(&[("bin/app", &super::build::pseudo_random(seed + 1, 2000))]);
    let arm = super::build::layer(&[("bin/app", &super::build::pseudo_random(seed + 2, 2000))]);
    let a = l.image(
        super::build::Flavour::Oci,
        "linux",
        "amd64",
        &[base.clone(), amd],
    );
    let b = l.image(super::build::Flavour::Oci, "linux", "arm64", &[base, arm]);
    let i = l.index(super::build::Flavour::Oci, vec![a.clone(), b.clone()]);
    l.tag(&i, "app");
    l.finish();
    super::run(super::skopeo().args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:app", layout.display()),
        &format!("docker://{host}/{repo}:{tag}"),
    ]))
    .expect_ok("skopeo copy");
    let j = |d: &ferry::oci::Descriptor| serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size});
    Pushed {
        index: j(&i),
        amd64: j(&a),
    }
}

pub fn digest_of(d: &serde_json::Value) -> Digest {
    d["digest"].as_str().unwrap().parse().unwrap()
}
