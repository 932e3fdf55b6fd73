//! `serve`: the pull side of the OCI distribution API, answered straight
//! from an archive (by byte offset, nothing extracted or copied) or from an
//! OCI layout directory written by `ferry unpack`.
//!
//! At start-up the archive is scanned like `verify` scans it (structure,
//! bundle.json, member offsets), repositories are named with the shared
//! [`crate::shared::mapping`] rules, and every manifest and index is read and hashed
//! once to learn its media type and children. Those checked bytes are kept
//! in memory and are what manifest requests get: bytes changed on disk
//! after start-up are never served under the digest they no longer match.
//! Blobs are not re-hashed, at start-up or when served; clients check blob
//! digests, and `ferry verify` checks all. Blob requests stream byte ranges
//! from disk with a fixed-size buffer, so memory grows with the manifests
//! (at most 4 MiB each), not with the layers.
//!
//! Beside the registry API, a source with a bundle.json is also a classic
//! Helm chart repository (`/charts/index.yaml`, `/charts/NAME-VERSION.tgz`;
//! see `charts`) and a file server (`/files/NAME`; see `files`). Both are
//! tables built at start-up; their bodies are the chart and file layers,
//! streamed by position like any blob.
//!
//! The server takes a bound listener, [`Limits`] and a shutdown future; it
//! never decides its own address, lifetime or limits. Plain HTTP and TLS
//! share one accept loop (`connections`): it closes a connection that takes
//! longer than the header timeout to send a request head or stays idle past
//! the idle timeout, and at the connection cap it closes the connection
//! that has waited longest, idle or partway through a head. A connection
//! answering a request is never closed by either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::base::digest::Digest;
use crate::format::archive::{Archive, ArchiveError};
use crate::format::blob::BlobSource;
use crate::format::bundle::{Artifact, ArtifactKind, Bundle, Referrer};
use crate::format::layout::Store;
use crate::format::oci::{self, Visit};
use crate::shared::mapping::{MappingError, TargetRules};

mod charts;
mod connections;
mod files;

pub use connections::Limits;

/// Errors opening content for serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The archive is unreadable or damaged.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Reading a layout directory failed.
    #[error("cannot read layout {path}")]
    Layout {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The layout's bundle.json or index.json is unusable.
    #[error("{path}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Target naming failed.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The TLS certificate or key is unusable.
    #[error("TLS setup failed with certificate {cert} and key {key}: {what}")]
    Tls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The signature of bundle.json is missing or wrong.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
    /// A document needed to build the graph is missing or damaged.
    #[error("{source_path}: {what} (run `ferry verify` for a full report)")]
    Graph {
        /// The archive or layout.
        source_path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Two different charts or files would be served at one URL.
    #[error("{source_path}: {what}")]
    Conflict {
        /// The archive or layout.
        source_path: PathBuf,
        /// Which artifacts, and where.
        what: String,
    },
}

#[derive(Debug, Default)]
struct ServedRepo {
    tags: BTreeMap<String, Digest>,
    contents: HashSet<Digest>,
    /// The referrers of each subject in this repository, as the referrers
    /// API lists them (bundle order).
    referrers: HashMap<Digest, Vec<oci::Descriptor>>,
}

/// Everything a running server needs: repositories, tags, media types and
/// where each blob is.
#[derive(Debug)]
pub struct Registry {
    source: PathBuf,
    /// Where blob bytes live: the archive (read by position), or the
    /// layout directory.
    content: Box<dyn BlobSource>,
    repos: BTreeMap<String, ServedRepo>,
    /// Every manifest and index, as read and checked against its digest at
    /// start-up.
    documents: HashMap<Digest, Document>,
    /// The classic Helm repository and the file downloads; `None` for a
    /// layout without bundle.json, whose charts and files ferry cannot
    /// tell.
    downloads: Option<Downloads>,
    /// Charts and files left out of the downloads, and why.
    notes: Vec<String>,
}

/// `/charts/` and `/files/`.
#[derive(Debug)]
struct Downloads {
    charts: charts::ChartRepo,
    files: BTreeMap<String, files::ServedFile>,
}

/// What a source holds besides its artifacts.
struct Origin {
    /// Whether it has a bundle.json (charts and files are known only then).
    bundle: bool,
    /// bundle.json's `created`.
    created: Option<String>,
}

/// A manifest or index held in memory.
#[derive(Debug)]
struct Document {
    media_type: String,
    bytes: bytes::Bytes,
}

impl Registry {
    /// Opens an archive file or a layout directory.
    pub fn open(path: &Path, rules: &TargetRules) -> Result<Registry, ServeError> {
        Registry::open_with_key(path, rules, None).map(|(r, _)| r)
    }

    /// [`Registry::open`], requiring with `key` a signature of bundle.json
    /// by that minisign public key, checked on the very bytes this open
    /// reads and serves from. Returns the signature's trusted comment.
    pub fn open_with_key(
        path: &Path,
        rules: &TargetRules,
        key: Option<&Path>,
    ) -> Result<(Registry, Option<String>), ServeError> {
        if path.is_dir() {
            Registry::open_dir(path, rules, key)
        } else {
            Registry::open_archive(path, rules, key)
        }
    }

    fn open_archive(
        path: &Path,
        rules: &TargetRules,
        key: Option<&Path>,
    ) -> Result<(Registry, Option<String>), ServeError> {
        let a = Archive::open_random(path, "ferry serve")?;
        let signature = a.check_key(key)?;
        a.check_model()?;
        let artifacts = a.bundle.artifacts.clone();
        let referrers = a.bundle.referrers.clone();
        let origin = Origin {
            bundle: true,
            created: a.bundle.created.clone(),
        };
        Ok((
            Registry::build(path, Box::new(a), &artifacts, &referrers, rules, origin)?,
            signature,
        ))
    }

    fn open_dir(
        dir: &Path,
        rules: &TargetRules,
        key: Option<&Path>,
    ) -> Result<(Registry, Option<String>), ServeError> {
        let layout_err = |source| ServeError::Layout {
            path: dir.to_owned(),
            source,
        };
        let bundle_path = dir.join(crate::format::bundle::BUNDLE_PATH);
        let index_path = dir.join(crate::format::bundle::INDEX_PATH);
        let mut signature = None;
        let mut origin = Origin {
            bundle: false,
            created: None,
        };
        let mut referrers = Vec::new();
        let artifacts = if bundle_path.is_file() {
            let bytes = fs_err::read(&bundle_path).map_err(layout_err)?;
            let bundle = Bundle::from_slice(&bytes).map_err(|e| ServeError::Invalid {
                path: bundle_path.clone(),
                what: crate::base::error::error_chain(&e),
            })?;
            if let Some(key) = key {
                // `ferry unpack` writes the archive's signature beside it.
                let sig_path = dir.join(crate::format::sign::SIGNATURE_PATH);
                let sig = match fs_err::metadata(&sig_path) {
                    Ok(m) if m.len() <= crate::format::sign::SIGNATURE_MAX_BYTES => {
                        Some(fs_err::read(&sig_path).map_err(layout_err)?)
                    }
                    _ => None,
                };
                signature = Some(crate::format::sign::check(
                    dir,
                    key,
                    &bytes,
                    sig.as_deref(),
                )?);
            }
            // One model: index.json is the one bundle.json lists, and
            // names exactly its artifacts.
            let index_bytes = fs_err::read(&index_path).map_err(layout_err)?;
            let invalid = |what: String| ServeError::Invalid {
                path: index_path.clone(),
                what,
            };
            let listed = bundle
                .member(crate::format::bundle::INDEX_PATH)
                .map(|m| m.digest);
            if listed != Some(crate::base::digest::Digest::of(&index_bytes)) {
                return Err(invalid("is not the index.json bundle.json lists".into()));
            }
            let index = oci::parse_index_json(&index_bytes)
                .map_err(|e| invalid(format!("not an OCI index: {e}")))?;
            if let Some(what) = bundle.check_index(&index).into_iter().next() {
                return Err(invalid(format!("disagrees with bundle.json: {what}")));
            }
            origin = Origin {
                bundle: true,
                created: bundle.created,
            };
            referrers = bundle.referrers;
            bundle.artifacts
        } else if let Some(key) = key {
            return Err(ServeError::Invalid {
                path: dir.to_owned(),
                what: format!(
                    "has no bundle.json, so nothing in it is signed to check against {}",
                    key.display()
                ),
            });
        } else {
            // A layout from another tool: every named image in index.json.
            let bytes = fs_err::read(&index_path).map_err(layout_err)?;
            let index: oci::Index =
                oci::parse_index_json(&bytes).map_err(|e| ServeError::Invalid {
                    path: index_path.clone(),
                    what: format!("not an OCI index: {e}"),
                })?;
            index
                .manifests
                .iter()
                .filter_map(|d| {
                    let name = d.annotations.get(oci::ANN_REF_NAME)?;
                    let reference = name
                        .parse::<crate::base::reference::Reference>()
                        .ok()?
                        .to_string();
                    Some(Artifact {
                        kind: ArtifactKind::Image,
                        source: name.clone(),
                        reference,
                        digest: d.digest,
                        media_type: d.media_type.clone(),
                        size: d.size,
                        platforms: Vec::new(),
                        source_digest: None,
                        converted: Vec::new(),
                        chart: None,
                        file: None,
                    })
                })
                .collect()
        };
        Ok((
            Registry::build(
                dir,
                Box::new(Store::at(dir)),
                &artifacts,
                &referrers,
                rules,
                origin,
            )?,
            signature,
        ))
    }

    fn build(
        source: &Path,
        content: Box<dyn BlobSource>,
        artifacts: &[Artifact],
        referrers: &[Referrer],
        rules: &TargetRules,
        origin: Origin,
    ) -> Result<Registry, ServeError> {
        let targets = rules.targets(artifacts)?;
        let mut reg = Registry {
            source: source.to_owned(),
            content,
            repos: BTreeMap::new(),
            documents: HashMap::new(),
            downloads: None,
            notes: Vec::new(),
        };
        for (t, a) in targets.iter().zip(artifacts) {
            let mut contents = HashSet::new();
            reg.walk(&a.media_type, &a.digest, &mut contents)?;
            let repo = reg.repos.entry(t.repository.clone()).or_default();
            repo.contents.extend(contents);
            if let Some(tag) = &t.tag {
                repo.tags.insert(tag.clone(), t.digest);
            }
        }
        reg.add_referrers(referrers)?;
        if origin.bundle {
            reg.downloads = Some(reg.downloads(artifacts, origin.created.as_deref())?);
        }
        Ok(reg)
    }

    /// Puts each referrer into every repository that holds its subject
    /// (in bundle order, so a referrer of a referrer follows it), listed,
    /// when its `subject` field names that subject, for the referrers API
    /// as the distribution spec describes it (the
    /// manifest's media type, digest, size, artifact type and
    /// annotations), under cosign's tag when it came with one, and under
    /// the tag schema's fallback tag `sha256-<hex>` of its subject, whose
    /// index is made here from the same list.
    fn add_referrers(&mut self, referrers: &[Referrer]) -> Result<(), ServeError> {
        for r in referrers {
            let holders: Vec<String> = self
                .repos
                .iter()
                .filter(|(_, repo)| repo.contents.contains(&r.subject))
                .map(|(name, _)| name.clone())
                .collect();
            if holders.is_empty() {
                continue;
            }
            let mut contents = HashSet::new();
            self.walk(&r.media_type, &r.digest, &mut contents)?;
            // Only a document whose `subject` names it is a referrer in
            // the API's sense; cosign's tagged signatures have none and
            // are found by their tag.
            let (subject, annotations, artifact_type) = self
                .documents
                .get(&r.digest)
                .and_then(|doc| oci::parse_node(r.digest, &doc.media_type, &doc.bytes).ok())
                .map(|node| {
                    let t = node.artifact_type();
                    match node {
                        oci::Node::Manifest(m) => (m.subject, m.annotations, t),
                        oci::Node::Index(i) => (i.subject, i.annotations, t),
                    }
                })
                .unwrap_or_default();
            let in_api = subject.is_some_and(|s| s.digest == r.subject);
            let size = self
                .documents
                .get(&r.digest)
                .map_or(0, |doc| doc.bytes.len() as u64);
            let mut listed = oci::Descriptor::new(&r.media_type, r.digest, size);
            // From the manifest, not bundle.json (verify checks they agree).
            listed.artifact_type = artifact_type;
            listed.annotations = annotations;
            for name in holders {
                let repo = self.repos.entry(name).or_default();
                repo.contents.extend(contents.iter().copied());
                if let Some(tag) = &r.tag {
                    repo.tags.entry(tag.clone()).or_insert(r.digest);
                }
                if in_api {
                    let list = repo.referrers.entry(r.subject).or_default();
                    if !list.iter().any(|d| d.digest == r.digest) {
                        list.push(listed.clone());
                    }
                }
            }
        }
        // The tag schema's fallback indexes, for clients that look there.
        let mut made: Vec<(String, String, Digest, bytes::Bytes)> = Vec::new();
        for (name, repo) in &self.repos {
            for (subject, list) in &repo.referrers {
                let tag = format!("sha256-{}", subject.hex());
                if repo.tags.contains_key(&tag) {
                    continue;
                }
                let bytes = bytes::Bytes::from(referrers_index(list.clone()));
                made.push((name.clone(), tag, Digest::of(&bytes), bytes));
            }
        }
        for (name, tag, d, bytes) in made {
            if let Some(repo) = self.repos.get_mut(&name) {
                repo.tags.insert(tag, d);
                repo.contents.insert(d);
            }
            self.documents.insert(
                d,
                Document {
                    media_type: oci::OCI_INDEX.into(),
                    bytes,
                },
            );
        }
        Ok(())
    }

    /// The chart repository and file table, from the chart and file
    /// artifacts' manifests (checked by the walk) and, for charts, their
    /// config blobs (read through the verifying blob path).
    fn downloads(
        &mut self,
        artifacts: &[Artifact],
        created: Option<&str>,
    ) -> Result<Downloads, ServeError> {
        let conflict = |what| ServeError::Conflict {
            source_path: self.source.clone(),
            what,
        };
        let mut chart_sources = Vec::new();
        let mut file_sources = Vec::new();
        for a in artifacts {
            let Some(doc) = self.documents.get(&a.digest) else {
                continue;
            };
            match a.kind {
                ArtifactKind::Chart => chart_sources.push(charts::ChartSource {
                    artifact: a,
                    manifest: &doc.bytes,
                    media_type: &doc.media_type,
                }),
                ArtifactKind::File => file_sources.push(files::FileSource {
                    artifact: a,
                    manifest: &doc.bytes,
                    media_type: &doc.media_type,
                }),
                ArtifactKind::Image => {}
            }
        }
        let mut notes = Vec::new();
        let content = &self.content;
        let read = |d: &Digest, limit: u64| content.read_small(d, limit);
        let charts = charts::build(&chart_sources, &read, created, &mut notes).map_err(conflict)?;
        let files = files::build(&file_sources, &mut notes).map_err(conflict)?;
        self.notes.extend(notes);
        Ok(Downloads { charts, files })
    }

    fn walk(
        &mut self,
        media_type: &str,
        d: &Digest,
        out: &mut HashSet<Digest>,
    ) -> Result<(), ServeError> {
        let content = &self.content;
        let documents = &mut self.documents;
        oci::walk_graph(
            media_type,
            d,
            &mut |d| content.read_small(d, oci::MANIFEST_MAX_BYTES),
            &mut |v| {
                match v {
                    Visit::Blob(b) => {
                        if content.locate(&b.digest).map(|(size, _)| size) != Some(b.size) {
                            return Err(oci::WalkError::Blob(b.digest));
                        }
                        out.insert(b.digest);
                    }
                    Visit::Document {
                        digest,
                        media_type,
                        bytes,
                    } => {
                        // The walk has checked `bytes` against `digest`.
                        out.insert(digest);
                        documents.insert(
                            digest,
                            Document {
                                media_type,
                                bytes: bytes.into(),
                            },
                        );
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| ServeError::Graph {
            source_path: self.source.clone(),
            what: crate::base::error::error_chain(&e),
        })
    }

    /// Answers one request as the server does, without a network (for
    /// tests and for fuzzing the request parsing).
    pub async fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
        route(self, method, uri, headers).await
    }

    /// Repository names served, sorted.
    pub fn repositories(&self) -> Vec<String> {
        self.repos.keys().cloned().collect()
    }

    /// Tags of a repository, sorted.
    pub fn tags(&self, repo: &str) -> Option<Vec<String>> {
        self.repos
            .get(repo)
            .map(|r| r.tags.keys().cloned().collect())
    }

    /// The chart archives `/charts/index.yaml` lists (`NAME-VERSION.tgz`),
    /// sorted.
    pub fn chart_archives(&self) -> Vec<String> {
        self.downloads
            .iter()
            .flat_map(|d| d.charts.archives.keys().cloned())
            .collect()
    }

    /// The names files are served under (`/files/NAME`), sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.downloads
            .iter()
            .flat_map(|d| d.files.keys().cloned())
            .collect()
    }

    /// Charts and files that are not served under `/charts/` or `/files/`,
    /// each with the reason (they are still served as OCI artifacts).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// A name as one URL path segment, percent-encoded as `/files/NAME` is
/// written (and decoded when asked for).
pub fn url_path_segment(name: &str) -> String {
    files::percent_encode(name)
}

/// One served request, for access logs.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// HTTP method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Response body length, when known.
    pub bytes: Option<u64>,
    /// Time to the response head, in milliseconds.
    pub millis: f64,
}

/// Receives one record per request.
pub type AccessLog = Arc<dyn Fn(&AccessRecord) + Send + Sync>;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    log: Option<AccessLog>,
}

/// Serves `registry` on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish. `limits` bounds how long a
/// client may take to send a request head, how long an idle connection
/// stays open, and how many are open at once.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    log: Option<AccessLog>,
    limits: Limits,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    connections::run(listener, router(registry, log), None, limits, shutdown).await
}

fn router(registry: Arc<Registry>, log: Option<AccessLog>) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .with_state(AppState { registry, log })
}

/// Loads a PEM certificate chain and private key for [`serve_tls`].
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |what: String| ServeError::Tls {
        cert: cert.to_owned(),
        key: key.to_owned(),
        what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(format!("cannot read the certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("the certificate is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("the certificate file holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err(format!("cannot read the private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(format!("the key does not fit the certificate: {e}")))?;
    Ok(Arc::new(config))
}

/// Like [`serve`], over TLS. The handshake counts as part of the first
/// request head, for the header timeout.
pub async fn serve_tls<F>(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    log: Option<AccessLog>,
    limits: Limits,
    tls: Arc<rustls::ServerConfig>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(registry, log);
    connections::run(listener, app, Some(acceptor), limits, shutdown).await
}

async fn handle(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let start = Instant::now();
    let resp = route(&st.registry, &method, &uri, &headers).await;
    if let Some(log) = &st.log {
        log(&AccessRecord {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            status: resp.status().as_u16(),
            bytes: resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            millis: start.elapsed().as_secs_f64() * 1000.0,
        });
    }
    resp
}

fn error(status: StatusCode, code: &str, message: &str, detail: Option<&str>) -> Response<Body> {
    let mut e = serde_json::json!({"code": code, "message": message});
    if let Some(d) = detail {
        e["detail"] = d.into();
    }
    let body = serde_json::to_vec(&serde_json::json!({ "errors": [e] })).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn name_unknown(name: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        "repository name not known to registry",
        Some(name),
    )
}

fn json(value: serde_json::Value, link: Option<String>) -> Response<Body> {
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header("Docker-Distribution-API-Version", "registry/2.0");
    if let Some(l) = link {
        b = b.header(header::LINK, l);
    }
    b.body(Body::from(body)).unwrap_or_default()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_decode_with(s, true)
}

fn percent_decode_with(s: &str, plus_is_space: bool) -> String {
    // Byte by byte: a `%` may be followed by anything, raw UTF-8 included,
    // so nothing here slices the string.
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&c| (c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if let (b'%', Some(hi), Some(lo)) = (c, hex(i + 1), hex(i + 2)) {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(if plus_is_space && c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `n`/`last` pagination over a sorted list.
fn paginate(
    items: Vec<String>,
    q: &HashMap<String, String>,
) -> (Vec<String>, Option<(usize, String)>) {
    let after: Vec<String> = match q.get("last") {
        Some(last) => items.into_iter().filter(|t| t > last).collect(),
        None => items,
    };
    match q.get("n").and_then(|n| n.parse::<usize>().ok()) {
        // An empty page has no next page: no Link (the distribution spec).
        Some(0) => (Vec::new(), None),
        Some(n) if n < after.len() => {
            let page: Vec<String> = after.into_iter().take(n).collect();
            let last = page.last().cloned().unwrap_or_default();
            (page, Some((n, last)))
        }
        _ => (after, None),
    }
}

async fn route(reg: &Registry, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    let path = uri.path();
    let read = method == Method::GET || method == Method::HEAD;
    for (prefix, kind) in [("/charts/", Area::Charts), ("/files/", Area::Files)] {
        if let Some(rest) = path.strip_prefix(prefix) {
            if !read {
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "ferry serve is read-only\n".into(),
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return r;
            }
            return download(reg, kind, rest, method == Method::HEAD, headers).await;
        }
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not a registry API path (ferry serve answers /v2/, /charts/ and /files/)",
            None,
        );
    };
    if !read {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "ferry serve is read-only; push into a registry with `ferry load`",
            None,
        );
    }
    let head = method == Method::HEAD;
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return json(serde_json::json!({}), None);
    }
    if rest == "_catalog" {
        let q = query(uri);
        let (page, next) = paginate(reg.repositories(), &q);
        let link = next.map(|(n, last)| format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""));
        return json(serde_json::json!({ "repositories": page }), link);
    }
    // `<name>/<kind>/<last>`: the name may contain slashes (and even a
    // component called `manifests`), the last two segments never do.
    let parsed = rest.rsplit_once('/').and_then(|(before, last)| {
        before
            .rsplit_once('/')
            .map(|(name, kind)| (name, kind, last))
    });
    match parsed {
        Some((name, "tags", "list")) => {
            let Some(tags) = reg.tags(name) else {
                return name_unknown(name);
            };
            let q = query(uri);
            let (page, next) = paginate(tags, &q);
            let link = next
                .map(|(n, last)| format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""));
            return json(serde_json::json!({ "name": name, "tags": page }), link);
        }
        Some((name, "manifests", reference)) => return manifest(reg, name, reference, head),
        Some((name, "referrers", digest)) => return referrers(reg, name, digest, uri),
        Some((name, "blobs", digest)) => return blob(reg, name, digest, head, headers).await,
        _ => {}
    }
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "unknown registry API path",
        Some(path),
    )
}

/// An image index listing `manifests`, as the referrers API and the tag
/// schema's fallback answer.
fn referrers_index(manifests: Vec<oci::Descriptor>) -> Vec<u8> {
    oci::to_bytes(&oci::Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        artifact_type: None,
        manifests,
        subject: None,
        annotations: BTreeMap::new(),
    })
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=…]`: the distribution
/// spec's referrers list, 200 with an empty list for a digest without
/// referrers, filtered by artifact type when asked (and then saying so
/// with `OCI-Filters-Applied`), 400 for a digest that is not one.
fn referrers(reg: &Registry, name: &str, digest: &str, uri: &Uri) -> Response<Body> {
    let Some(repo) = reg.repos.get(name) else {
        return name_unknown(name);
    };
    let Ok(subject) = digest.parse::<Digest>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
            Some(digest),
        );
    };
    let q = query(uri);
    let filter = q.get("artifactType").filter(|t| !t.is_empty());
    let list: Vec<oci::Descriptor> = repo
        .referrers
        .get(&subject)
        .into_iter()
        .flatten()
        .filter(|d| filter.is_none_or(|t| d.artifact_type.as_ref() == Some(t)))
        .cloned()
        .collect();
    let body = referrers_index(list);
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, oci::OCI_INDEX)
        .header(header::CONTENT_LENGTH, body.len())
        .header("Docker-Distribution-API-Version", "registry/2.0");
    if filter.is_some() {
        b = b.header("OCI-Filters-Applied", "artifactType");
    }
    b.body(Body::from(body)).unwrap_or_default()
}

/// The two download areas beside the registry API.
#[derive(Clone, Copy)]
enum Area {
    Charts,
    Files,
}

/// A plain-text answer (the download areas are for people and scripts,
/// not registry clients).
fn text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// `GET`/`HEAD /charts/…` and `/files/…`; `rest` is the path after the
/// area's prefix, still percent-encoded.
async fn download(
    reg: &Registry,
    area: Area,
    rest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Response<Body> {
    let Some(d) = &reg.downloads else {
        return text(
            StatusCode::NOT_FOUND,
            "this layout has no bundle.json, so ferry cannot tell its charts and files; only /v2/ is served\n".into(),
        );
    };
    // A name, looked up in a table: `..`, `/` or `%2F` reach nothing else.
    let name = percent_decode_path(rest);
    match area {
        Area::Charts if name == "index.yaml" => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, charts::INDEX_MEDIA_TYPE)
            .header(header::CONTENT_LENGTH, d.charts.index.len())
            .header(header::ETAG, format!("\"{}\"", d.charts.index_digest))
            .body(if head {
                Body::empty()
            } else {
                Body::from(d.charts.index.clone())
            })
            .unwrap_or_default(),
        Area::Charts => match d.charts.archives.get(&name) {
            Some(digest) => {
                let b = Response::builder()
                    .header(header::CONTENT_TYPE, charts::CHART_MEDIA_TYPE)
                    .header(header::CONTENT_DISPOSITION, files::disposition(&name));
                send_blob(reg, digest, head, headers, b, Flavour::Plain).await
            }
            None => text(
                StatusCode::NOT_FOUND,
                format!(
                    "no chart archive {name:?} in this bundle; /charts/index.yaml lists {} chart versions\n",
                    d.charts.archives.len()
                ),
            ),
        },
        Area::Files if name.is_empty() => {
            let mut body = String::new();
            for n in d.files.keys() {
                body.push_str(&files::percent_encode(n));
                body.push('\n');
            }
            let mut r = text(StatusCode::OK, body);
            if head {
                *r.body_mut() = Body::empty();
            }
            r
        }
        Area::Files => match d.files.get(&name) {
            Some(f) => {
                let b = Response::builder()
                    .header(header::CONTENT_TYPE, f.content_type)
                    .header(header::CONTENT_DISPOSITION, f.disposition.as_str())
                    .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
                send_blob(reg, &f.digest, head, headers, b, Flavour::Plain).await
            }
            None => text(
                StatusCode::NOT_FOUND,
                format!(
                    "no file named {name:?} in this bundle; GET /files/ lists the {} it has\n",
                    d.files.len()
                ),
            ),
        },
    }
}

/// Percent-decoding for a path: unlike a query, `+` stays `+`. Invalid
/// UTF-8 becomes U+FFFD, which names nothing.
fn percent_decode_path(s: &str) -> String {
    percent_decode_with(s, false)
}

fn manifest(reg: &Registry, name: &str, reference: &str, head: bool) -> Response<Body> {
    let Some(repo) = reg.repos.get(name) else {
        return name_unknown(name);
    };
    let digest = if reference.contains(':') {
        match reference.parse::<Digest>() {
            Ok(d) if repo.contents.contains(&d) => d,
            Ok(_) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    Some(reference),
                )
            }
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                    Some(reference),
                )
            }
        }
    } else {
        match repo.tags.get(reference) {
            Some(d) => *d,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    Some(reference),
                )
            }
        }
    };
    // The bytes checked at start-up, never a fresh read of the disk.
    let Some(doc) = reg.documents.get(&digest) else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            Some(reference),
        );
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, doc.media_type.as_str())
        .header(header::CONTENT_LENGTH, doc.bytes.len())
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""))
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .body(if head {
            Body::empty()
        } else {
            Body::from(doc.bytes.clone())
        })
        .unwrap_or_default()
}

/// Parses a single `bytes=` range against `size`. `Ok(None)`: no range.
fn parse_range(h: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = h.and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Multiple ranges: allowed to ignore and send the whole blob.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (s, e) => {
            let s: u64 = s.parse().map_err(|_| ())?;
            let e: u64 = e.parse().map_err(|_| ())?;
            if e < s {
                return Err(());
            }
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn blob(
    reg: &Registry,
    name: &str,
    digest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Response<Body> {
    let Some(repo) = reg.repos.get(name) else {
        return name_unknown(name);
    };
    let d = match digest.parse::<Digest>() {
        Ok(d) => d,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "invalid digest",
                Some(digest),
            )
        }
    };
    if !repo.contents.contains(&d) {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
            Some(digest),
        );
    }
    let b = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", d.to_string())
        .header("Docker-Distribution-API-Version", "registry/2.0");
    send_blob(reg, &d, head, headers, b, Flavour::Registry).await
}

/// How errors are told: the registry API's JSON, or plain text.
#[derive(Clone, Copy)]
enum Flavour {
    Registry,
    Plain,
}

/// Sends blob `d` (whole, a single range, or just the head) on top of the
/// headers already in `b`, streamed from disk by position.
async fn send_blob(
    reg: &Registry,
    d: &Digest,
    head: bool,
    headers: &HeaderMap,
    b: axum::http::response::Builder,
    flavour: Flavour,
) -> Response<Body> {
    let digest = d.to_string();
    let fail = |status: StatusCode, code: &str, message: &str| match flavour {
        Flavour::Registry => error(status, code, message, Some(&digest)),
        Flavour::Plain => text(status, format!("{message}: {digest}\n")),
    };
    let Some((size, segments)) = reg.content.locate(d) else {
        return fail(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        );
    };
    // An If-Range that does not name this blob asks for all of it (RFC
    // 9110 13.1.5): ferry's validator is the digest ETag.
    let etag = format!("\"{d}\"");
    let if_range_holds = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let asked = headers.get(header::RANGE).filter(|_| if_range_holds);
    let range = match parse_range(asked, size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = fail(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                "invalid content range",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let (start, len, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let mut b = b
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag);
    if range.is_some() {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    if head {
        return b.body(Body::empty()).unwrap_or_default();
    }
    if let Some(reader) = reg.content.range_reader(&segments, start, len) {
        // A framed zstd archive: its frames are decompressed as they are
        // sent, on a blocking thread, a chunk at a time.
        return b
            .body(Body::from_stream(decoded(reader)))
            .unwrap_or_default();
    }
    match open_range(&segments, start, len).await {
        Ok(reader) => {
            let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024);
            b.body(Body::from_stream(stream)).unwrap_or_default()
        }
        Err(e) => match flavour {
            Flavour::Registry => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "cannot read content",
                Some(&e.to_string()),
            ),
            Flavour::Plain => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read {digest}: {e}\n"),
            ),
        },
    }
}

/// The bytes `reader` gives (decompressing, so on a blocking thread), as
/// a body stream; an error ends the stream, so the client sees a body
/// shorter than its Content-Length.
fn decoded(
    mut reader: crate::format::blob::SegmentReader,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            let item = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(bytes::Bytes::from(buf))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// A reader over `len` bytes from `start` of a blob made of `segments`.
async fn open_range(
    segments: &[(PathBuf, u64, u64)],
    start: u64,
    len: u64,
) -> io::Result<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>> {
    let mut reader: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> =
        Box::pin(tokio::io::empty());
    let (mut skip, mut want) = (start, len);
    for (path, offset, seg_len) in segments {
        if want == 0 {
            break;
        }
        if skip >= *seg_len {
            skip -= seg_len;
            continue;
        }
        let take = (seg_len - skip).min(want);
        let mut file = tokio::fs::File::open(path).await?;
        file.seek(SeekFrom::Start(offset + skip)).await?;
        reader = Box::pin(reader.chain(file.take(take)));
        skip = 0;
        want -= take;
    }
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=0-3")), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some(&h("bytes=4-")), 10), Ok(Some((4, 9))));
        assert_eq!(parse_range(Some(&h("bytes=-3")), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some(&h("bytes=5-100")), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some(&h("bytes=10-")), 10), Err(()));
        assert_eq!(parse_range(Some(&h("bytes=5-2")), 10), Err(()));
        assert_eq!(parse_range(Some(&h("bytes=a-b")), 10), Err(()));
        assert_eq!(parse_range(Some(&h("bytes=0-1,4-5")), 10), Ok(None));
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let q: HashMap<String, String> = [("n".to_string(), "2".to_string())].into();
        assert_eq!(
            paginate(items.clone(), &q),
            (vec!["a".into(), "b".into()], Some((2, "b".into())))
        );
        let q: HashMap<String, String> =
            [("n".into(), "2".into()), ("last".into(), "b".into())].into();
        assert_eq!(paginate(items, &q), (vec!["c".into(), "d".into()], None));
    }
}
