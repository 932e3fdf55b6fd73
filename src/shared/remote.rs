//! Talking to a registry: credentials, transport rules and retries around
//! `oci-client`. Blobs move as streams (never buffered whole), manifests as
//! their raw bytes, and every error names the registry, the repository and
//! the digest or tag concerned.
//!
//! What the network sends is bounded and checked here, the last line
//! before a request or after an answer: every repository and tag is
//! checked against the distribution spec's grammar before it goes into a
//! URL; every body read into memory has a limit for its kind
//! ([`MANIFEST_MAX`], [`TOKEN_MAX`], [`TAG_LIST_MAX`], [`CATALOG_MAX`],
//! [`REFERRERS_MAX`], and [`ERROR_BODY_MAX`] for error answers, which are
//! shown on one line of at most [`ANSWER_SHOWN_MAX`] bytes); a blob is
//! present only when a `HEAD` proves it; and a manifest push is checked
//! against the digest the registry says it stored.
//!
//! Credentials come, in this order, from an explicit username and password,
//! then from the docker config (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, `auths`, `credHelpers` and `credsStore`), else
//! none. Plain HTTP is used only for loopback hosts and hosts the caller
//! names as insecure; everything else is HTTPS.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use oci_client::client::{
    BodyLimits, Certificate, CertificateEncoding, ClientConfig, ClientProtocol, UploadStart,
};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference as OciRef, RegistryOperation};

use crate::base::digest::Digest;
use crate::base::error::{error_chain, one_line};
use crate::base::reference::{is_valid_repository, is_valid_tag};
use crate::shared::transport::{
    attempts_note, plain_http_allowed, read_cas, retry_after_value, retrying, Attempt, GaveUp,
    TransportError, MAX_RETRY_AFTER,
};

/// A blob body: chunks in order; an `Err` aborts the upload.
pub type BlobBody = BoxStream<'static, io::Result<Bytes>>;

/// The largest manifest or index ferry reads from a registry (the size the
/// distribution spec asks registries to accept at the least; also the
/// limit everywhere else ferry reads one).
pub const MANIFEST_MAX: usize = crate::format::oci::MANIFEST_MAX_BYTES as usize;
/// The largest answer ferry reads from a token service: a token is a few
/// KiB (a JWT with its claims).
pub const TOKEN_MAX: usize = 1 << 20;
/// The largest page of a tag list ferry reads. It asks for 1,000 tags (of
/// at most 128 characters: some 130 KiB); a registry that ignores the
/// page size and sends every tag at once may send over 100,000 in this.
pub const TAG_LIST_MAX: usize = 16 << 20;
/// The largest page of `/v2/_catalog` ferry reads (it asks for 1,000
/// repositories of at most 255 characters: some 260 KiB; as for tags, a
/// registry may send them all at once).
pub const CATALOG_MAX: usize = 16 << 20;
/// The largest page of a referrers answer ferry reads (an index, so the
/// manifest limit).
pub const REFERRERS_MAX: usize = MANIFEST_MAX;
/// The most referrers ferry takes for one subject, over all pages of the
/// API's answer; more is refused as an error naming the subject, never cut
/// silently.
pub const REFERRERS_ENTRIES_MAX: usize = 1000;
/// The most pages of one referrers answer ferry follows.
pub const REFERRERS_PAGES_MAX: usize = 64;
/// The most bytes of one referrers answer ferry reads, over all its pages.
pub const REFERRERS_BYTES_MAX: usize = 16 << 20;
/// How much of an error answer's body ferry keeps in memory (the rest is
/// not read): enough for any registry's error JSON.
pub const ERROR_BODY_MAX: usize = 64 << 10;
/// How much of a registry's answer an error message shows, on one line.
pub const ANSWER_SHOWN_MAX: usize = 512;
/// How long cancelling an upload session may take before ferry leaves it
/// to the registry to collect.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// A byte count for messages: `4 MiB`, `64 KiB`, or bytes.
fn size_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A registry's answer as oci-client reports it, shown on one line: its
/// text comes from the network (an error body, a token service's reason),
/// so its whole chain of causes is shown escaped and cut at
/// [`ANSWER_SHOWN_MAX`] bytes. The error itself is kept for callers that
/// look inside it ([`Answer::error`]).
#[derive(Debug)]
pub struct Answer(OciDistributionError);

impl Answer {
    /// The error as oci-client gave it.
    pub fn error(&self) -> &OciDistributionError {
        &self.0
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&one_line(&error_chain(&self.0), ANSWER_SHOWN_MAX))
    }
}

/// Its causes are part of its one line.
impl std::error::Error for Answer {}

impl From<OciDistributionError> for Answer {
    fn from(e: OciDistributionError) -> Answer {
        Answer(e)
    }
}

/// `repo:tag`, or `repo@digest` when `reference` is a digest.
fn named(repo: &str, reference: &str) -> String {
    match reference.parse::<Digest>() {
        Ok(_) => format!("{repo}@{reference}"),
        Err(_) => format!("{repo}:{reference}"),
    }
}

/// A `Content-Length` the server declared, for messages.
fn declared_note(content_length: &Option<u64>) -> String {
    match content_length {
        Some(n) => format!(" (it declared Content-Length {n}); refused before reading it"),
        None => "; stopped reading past the limit".to_owned(),
    }
}

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A CA certificate file is unreadable.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The docker config file is unreadable or malformed.
    #[error("cannot read registry credentials for {registry} from {path}")]
    Config {
        /// The registry.
        registry: String,
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Nothing answers at the registry's address, on any scheme tried.
    #[error("cannot reach the registry {registry}: nothing answered at {tried}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The URLs tried.
        tried: String,
        /// Why (the plain-HTTP attempt's error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry wants credentials and none were found.
    #[error("registry {registry} asks for credentials and none were found (looked in {looked}); run `docker login {registry}` or pass --username and --password-stdin")]
    NoCredentials {
        /// The registry.
        registry: String,
        /// Where ferry looked.
        looked: String,
    },
    /// The registry refused the credentials.
    #[error("registry {registry} refused the credentials from {credentials} when {what}")]
    Refused {
        /// The registry.
        registry: String,
        /// Where the credentials came from.
        credentials: String,
        /// The operation.
        what: String,
        /// The registry's answer.
        #[source]
        source: Answer,
    },
    /// The registry's TLS certificate is not trusted.
    #[error("registry {registry} presented a TLS certificate ferry does not trust when {what}; pass its CA certificate with --ca-file")]
    Certificate {
        /// The registry.
        registry: String,
        /// The operation.
        what: String,
        /// The TLS error.
        #[source]
        source: Answer,
    },
    /// The registry sent a request on to another host (an upload
    /// `Location`, a redirect), which asked for credentials. ferry sends a
    /// registry's credentials to that registry only.
    #[error("{what} at {registry}: the registry sent the request on to {url}, another host, which asked for credentials; ferry sends the credentials for {registry} to {registry} only")]
    OffHost {
        /// The registry.
        registry: String,
        /// The operation.
        what: String,
        /// Where the registry sent the request.
        url: String,
        /// The other host's answer.
        #[source]
        source: Answer,
    },
    /// The registry names a token service reached over plain HTTP on a
    /// host that is neither loopback nor named insecure: the credentials
    /// would cross the network in clear text.
    #[error("registry {registry} sends logins to the token service {realm} over plain HTTP; ferry will not send the credentials from {credentials} there (name its host with --insecure-registry to allow it)")]
    PlainRealm {
        /// The registry.
        registry: String,
        /// The token service URL from the registry's challenge.
        realm: String,
        /// Where the credentials came from.
        credentials: String,
    },
    /// The registry throttled the request and asked for a longer wait
    /// (`Retry-After`) than ferry makes; waiting it out would look like a
    /// hang.
    #[error("{what} at {registry} failed{}: the registry asked to retry after {} s, longer than ferry waits ({} s); run again later", attempts_note(*attempts), wait.as_secs(), MAX_RETRY_AFTER.as_secs())]
    Throttled {
        /// The registry.
        registry: String,
        /// The operation.
        what: String,
        /// The wait the registry asked for.
        wait: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The registry's answer.
        #[source]
        source: Answer,
    },
    /// An answer's body is larger than ferry's limit for its kind: refused
    /// from its `Content-Length`, or once the bytes read passed the limit.
    #[error("{what} at {registry} failed: the {kind} is larger than ferry's limit of {}{} ({url})", size_text(*limit as u64), declared_note(content_length))]
    TooLarge {
        /// The registry.
        registry: String,
        /// The operation.
        what: String,
        /// What the body is: `manifest`, `token`, `tag list`, `catalog`, …
        kind: &'static str,
        /// The limit, in bytes.
        limit: usize,
        /// The URL that answered.
        url: String,
        /// The length the server declared, when it did.
        content_length: Option<u64>,
    },
    /// A referrers answer ferry cannot take: not an image index, a page
    /// link to another registry or back to a page already read, or more
    /// entries or pages than ferry's bounds.
    #[error("listing the referrers of {repository}@{subject} at {registry}: {why}")]
    Referrers {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The subject digest.
        subject: Digest,
        /// What is wrong.
        why: String,
    },
    /// A repository or tag that does not match the distribution spec's
    /// grammar: ferry never puts one into a URL (a tag holding `../` would
    /// make the request name another repository).
    #[error("registry {registry}: the {kind} {value:?} does not match the distribution spec's grammar for a {kind}; ferry sends no request naming it")]
    BadName {
        /// The registry.
        registry: String,
        /// `repository` or `tag`.
        kind: &'static str,
        /// The name, as given.
        value: String,
    },
    /// The registry answered a manifest push with another digest than the
    /// pushed bytes have: it holds other bytes than ferry sent (or says
    /// it does).
    #[error("pushing manifest {registry}/{reference}: the registry answered that it stored {answered}, but the manifest ferry pushed is {pushed}")]
    PushedOther {
        /// The registry.
        registry: String,
        /// `repo:tag` or `repo@digest`.
        reference: String,
        /// The digest of the bytes pushed.
        pushed: Digest,
        /// The digest the registry answered with.
        answered: String,
    },
    /// The registry accepted a manifest push without saying which digest
    /// it stored, and a `HEAD` of the pushed digest finds nothing.
    #[error("pushing manifest {registry}/{reference}: the registry accepted it without naming the digest it stored, and it does not hold {pushed}, the manifest ferry pushed")]
    PushedMissing {
        /// The registry.
        registry: String,
        /// `repo:tag` or `repo@digest`.
        reference: String,
        /// The digest of the bytes pushed.
        pushed: Digest,
    },
    /// Any other failure, after retries.
    #[error("{what} at {registry} failed{}", attempts_note(*attempts))]
    Request {
        /// The registry.
        registry: String,
        /// The operation.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        #[source]
        source: Answer,
    },
}

impl RemoteError {
    /// Whether the registry answered that the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            RemoteError::Request { source, .. } => {
                status(&source.0) == Some(404) || is_not_found(&source.0)
            }
            _ => false,
        }
    }

    /// Whether the failure is about credentials or trust (so retrying other
    /// operations against the same registry is pointless).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            RemoteError::NoCredentials { .. }
                | RemoteError::Refused { .. }
                | RemoteError::Certificate { .. }
                | RemoteError::PlainRealm { .. }
        )
    }
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// `HOST[:PORT]`s that may be spoken to over plain HTTP (loopback
    /// always may).
    pub insecure: Vec<String>,
    /// Extra PEM CA certificates to trust.
    pub ca_files: Vec<PathBuf>,
    /// Accept any TLS certificate (for testing only).
    pub tls_skip_verify: bool,
    /// Explicit username and password; otherwise the docker config.
    pub credentials: Option<(String, String)>,
    /// How many times a transient failure (5xx, 429, reset) is retried.
    pub retries: u32,
    /// The first retry's delay; it doubles each time (capped at 10 s).
    pub backoff: Duration,
}

/// A client for one registry host.
pub struct Remote {
    host: String,
    client: Client,
    chunked: Client,
    auth: RegistryAuth,
    credentials: String,
    retries: u32,
    backoff: Duration,
    /// Set once the registry refused a monolithic upload: later blobs go
    /// straight to chunked uploads.
    chunked_only: std::sync::atomic::AtomicBool,
    /// Cleared once a mount should not stand for a `HEAD` (the registry
    /// declined a mount from a repository known to hold the blob, or the
    /// caller expects to find most blobs there): later blobs are checked
    /// with a `HEAD` first.
    mount_probes: std::sync::atomic::AtomicBool,
}

/// How a registry answered a mount request ([`Remote::mount_or_start`]).
#[derive(Debug)]
pub enum MountAnswer {
    /// `201`: the repository holds the blob.
    Mounted,
    /// `202`: not mounted; an upload session is open at this URL, for
    /// [`Remote::push_blob_in`] (or [`Remote::cancel_upload`]).
    Session(String),
    /// Any other answer (a registry that takes no `mount`, a `201` naming
    /// another digest): nothing is known, and no session is open.
    Declined,
}

/// What `GET URL` answered: its status and its `WWW-Authenticate`
/// challenge; `None` when nothing answered. Only for looking ahead: the
/// real requests go through oci-client, which reports failures properly.
async fn probe(client: &reqwest::Client, url: &str) -> Option<(u16, Option<String>)> {
    probe_or_why(client, url).await.ok()
}

/// [`probe`], saying why it got no answer.
async fn probe_or_why(
    client: &reqwest::Client,
    url: &str,
) -> Result<(u16, Option<String>), reqwest::Error> {
    let r = client.get(url).send().await?;
    let challenge = r
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((r.status().as_u16(), challenge))
}

/// The `realm` of a `Bearer` challenge, if the challenge is one.
fn bearer_realm(challenge: &str) -> Option<&str> {
    let (scheme, params) = challenge.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    params.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("realm")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Refuses a token realm that would carry credentials in clear text: plain
/// HTTP to a host that is neither loopback nor in `insecure`. Realms on
/// another host over HTTPS are normal (Docker Hub's is `auth.docker.io`).
fn check_realm(
    registry: &str,
    challenge: &str,
    insecure: &[String],
    credentials: &str,
) -> Result<(), RemoteError> {
    let Some(realm) = bearer_realm(challenge) else {
        return Ok(());
    };
    let Some(rest) = realm
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("http://"))
        .and_then(|_| realm.get(7..))
    else {
        return Ok(());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if plain_http_allowed(authority, insecure) {
        return Ok(());
    }
    Err(RemoteError::PlainRealm {
        registry: registry.to_owned(),
        realm: realm.to_owned(),
        credentials: credentials.to_owned(),
    })
}

impl Remote {
    /// A client for `host` (`HOST[:PORT]`), resolving credentials now.
    /// A loopback host, or one named insecure, is spoken to over plain HTTP
    /// when it answers a registry's `/v2/` there, else over HTTPS.
    pub async fn connect(host: &str, opts: &RemoteOptions) -> Result<Remote, RemoteError> {
        // One process-wide crypto provider (ring, shared with `serve`).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots: Vec<Certificate> = read_cas(&opts.ca_files)?
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            })
            .collect();
        let (auth, credentials) = resolve_credentials(host, opts.credentials.clone())?;
        let prober = |tls: bool| {
            let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
            if tls {
                b = b.danger_accept_invalid_certs(opts.tls_skip_verify);
                for c in &roots {
                    if let Ok(c) = reqwest::Certificate::from_pem(&c.data) {
                        b = b.tls_certs_merge([c]);
                    }
                }
            }
            b.build().ok()
        };
        // A loopback or insecure host is spoken to over plain HTTP when it
        // answers `/v2/` there as a registry does (200, or 401 asking for
        // credentials); a TLS port answers with a 400 or not at all.
        let mut plain: Vec<String> = Vec::new();
        let mut answer = None;
        if plain_http_allowed(host, &opts.insecure) {
            let http_url = format!("http://{host}/v2/");
            let mut refused = None;
            if let Some(c) = prober(false) {
                match probe_or_why(&c, &http_url).await {
                    Ok(a) => answer = Some(a).filter(|(status, _)| matches!(status, 200 | 401)),
                    Err(e) if e.is_connect() => refused = Some(e),
                    Err(_) => {}
                }
            }
            if answer.is_some() {
                plain.push(host.to_owned());
            }
            // Nothing listens for plain HTTP: unless TLS answers, the
            // registry is unreachable, and that is one error naming it and
            // both schemes tried (not, later, one blob's over https).
            if let (Some(http_err), Some(c)) = (refused, prober(true)) {
                let https_url = format!("https://{host}/v2/");
                if let Err(e) = probe_or_why(&c, &https_url).await {
                    if e.is_connect() {
                        return Err(RemoteError::Unreachable {
                            registry: host.to_owned(),
                            tried: format!("{http_url} and {https_url}"),
                            source: Box::new(http_err),
                        });
                    }
                }
            }
        }
        // With credentials to send, look at the token realm first:
        // oci-client would send them wherever it points.
        if !matches!(auth, RegistryAuth::Anonymous) {
            if answer.is_none() {
                // As oci-client resolves it: `docker.io` → `index.docker.io`.
                let name = OciRef::with_tag(host.to_owned(), "x".into(), "x".into())
                    .resolve_registry()
                    .to_owned();
                if let Some(c) = prober(true) {
                    answer = probe(&c, &format!("https://{name}/v2/")).await;
                }
            }
            if let Some((_, Some(challenge))) = &answer {
                check_realm(host, challenge, &opts.insecure, &credentials)?;
            }
        }
        let config = |monolithic: bool| ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain.clone()),
            accept_invalid_certificates: opts.tls_skip_verify,
            use_monolithic_push: monolithic,
            extra_root_certificates: roots.clone(),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("ferry/", env!("CARGO_PKG_VERSION")),
            body_limits: BodyLimits {
                manifest: MANIFEST_MAX,
                token: TOKEN_MAX,
                tag_list: TAG_LIST_MAX,
                catalog: CATALOG_MAX,
                referrers: REFERRERS_MAX,
                error: ERROR_BODY_MAX,
            },
            ..ClientConfig::default()
        };
        // `Client::new` would fall back to a default config on a bad CA.
        let build = |monolithic| {
            Client::try_from(config(monolithic)).map_err(|source| RemoteError::Request {
                registry: host.to_owned(),
                what: "setting up the HTTP client".into(),
                attempts: 0,
                source: source.into(),
            })
        };
        Ok(Remote {
            host: host.to_owned(),
            client: build(true)?,
            chunked: build(false)?,
            auth,
            credentials,
            retries: opts.retries,
            backoff: opts.backoff,
            chunked_only: false.into(),
            mount_probes: true.into(),
        })
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where the credentials came from (for messages).
    pub fn credentials(&self) -> &str {
        &self.credentials
    }

    /// The one place a repository and a tag or digest become what
    /// oci-client puts into a URL: a repository or tag that breaks the
    /// distribution spec's grammar is refused here, whatever it came from
    /// (bundle.json, a map file, a chart version, a spec), so that no
    /// request can name another path than the one meant.
    fn reference(&self, repo: &str, reference: &str) -> Result<OciRef, RemoteError> {
        let bad = |kind, value: &str| RemoteError::BadName {
            registry: self.host.clone(),
            kind,
            value: value.to_owned(),
        };
        if !is_valid_repository(repo) {
            return Err(bad("repository", repo));
        }
        let (host, repo) = (self.host.clone(), repo.to_owned());
        match reference.parse::<Digest>() {
            Ok(d) => Ok(OciRef::with_digest(host, repo, d.to_string())),
            Err(_) if is_valid_tag(reference) => {
                Ok(OciRef::with_tag(host, repo, reference.to_owned()))
            }
            Err(_) => Err(bad("tag", reference)),
        }
    }

    fn at_digest(&self, repo: &str, d: &Digest) -> Result<OciRef, RemoteError> {
        self.reference(repo, &d.to_string())
    }

    /// The registry name oci-client looks credentials up by (`docker.io`
    /// → `index.docker.io`).
    fn resolved_registry(&self) -> String {
        OciRef::with_tag(self.host.clone(), "x".into(), "x".into())
            .resolve_registry()
            .to_owned()
    }

    async fn login(&self) {
        // oci-client looks credentials up by the resolved name
        // (`docker.io` → `index.docker.io`).
        let resolved = self.resolved_registry();
        for c in [&self.client, &self.chunked] {
            c.store_auth_if_needed(&self.host, &self.auth).await;
            c.store_auth_if_needed(&resolved, &self.auth).await;
        }
    }

    /// Runs `op` with retries on transient failures.
    async fn retry<T, F, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        op: F,
    ) -> Result<T, RemoteError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        self.login().await;
        // Credentials refused, untrusted certificates and errors that are
        // not transient end the loop at once.
        let judge = |e: &OciDistributionError| match status(e) {
            Some(401 | 403) => Attempt::Stop,
            _ if matches!(e, OciDistributionError::RequestError(r) if is_certificate_error(r)) => {
                Attempt::Stop
            }
            _ if transient(e) => Attempt::Retry(retry_after(e)),
            _ => Attempt::Stop,
        };
        let GaveUp {
            error: e,
            attempts,
            too_long,
        } = match retrying(self.retries, self.backoff, op, judge).await {
            Ok(v) => return Ok(v),
            Err(g) => g,
        };
        if let Some(code @ (401 | 403)) = status(&e) {
            if let Some(url) = error_url(&e).filter(|u| !self.is_own(u)) {
                return Err(RemoteError::OffHost {
                    registry: self.host.clone(),
                    what: what(),
                    url,
                    source: e.into(),
                });
            }
            // oci-client drops a failed token request and sends the
            // request without a token; ask again to learn why.
            let e = match self.why_no_token(&e).await {
                Some(why) => why,
                None => e,
            };
            if let Some(too_large) = self.too_large(&e, what) {
                return Err(too_large);
            }
            return Err(self.auth_error(code, what(), e));
        }
        if let Some(too_large) = self.too_large(&e, what) {
            return Err(too_large);
        }
        if matches!(&e, OciDistributionError::RequestError(r) if is_certificate_error(r)) {
            return Err(RemoteError::Certificate {
                registry: self.host.clone(),
                what: what(),
                source: e.into(),
            });
        }
        if let Some(wait) = too_long {
            return Err(RemoteError::Throttled {
                registry: self.host.clone(),
                what: what(),
                wait,
                attempts,
                source: peel(e).into(),
            });
        }
        Err(RemoteError::Request {
            registry: self.host.clone(),
            what: what(),
            attempts,
            source: e.into(),
        })
    }

    /// [`RemoteError::TooLarge`] when `e` is a body over its limit.
    fn too_large(
        &self,
        e: &OciDistributionError,
        what: &dyn Fn() -> String,
    ) -> Option<RemoteError> {
        match inner(e) {
            OciDistributionError::BodyTooLarge {
                what: kind,
                url,
                limit,
                content_length,
            } => Some(RemoteError::TooLarge {
                registry: self.host.clone(),
                what: what(),
                kind,
                limit: *limit,
                url: url.clone(),
                content_length: *content_length,
            }),
            _ => None,
        }
    }

    /// Why the registry got no token for the request that failed with
    /// `e` (a 401 from the registry's own host): the token service's
    /// refusal or an answer over [`TOKEN_MAX`], which oci-client does not
    /// report. `None` when a token comes, or there are no credentials.
    async fn why_no_token(&self, e: &OciDistributionError) -> Option<OciDistributionError> {
        if matches!(self.auth, RegistryAuth::Anonymous) {
            return None;
        }
        let url = error_url(e)?;
        let path = url.parse::<http::Uri>().ok()?.path().to_owned();
        let rest = path.strip_prefix("/v2/")?;
        let repo = ["/manifests/", "/blobs/", "/tags/"]
            .iter()
            .find_map(|m| rest.rfind(m).map(|i| &rest[..i]))?;
        let r = self.reference(repo, "x").ok()?;
        self.client
            .auth(&r, &self.auth, RegistryOperation::Pull)
            .await
            .err()
    }

    /// Whether `url` is on this registry's host (as named, or as
    /// oci-client resolves it: `docker.io` → `index.docker.io`).
    fn is_own(&self, url: &str) -> bool {
        let Some(authority) = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.authority().cloned())
        else {
            return true;
        };
        let resolved = self.resolved_registry();
        [self.host.as_str(), resolved.as_str()]
            .iter()
            .any(|h| authority.as_str().eq_ignore_ascii_case(h))
    }

    fn auth_error(&self, code: u16, what: String, source: OciDistributionError) -> RemoteError {
        let source = Answer(source);
        if code == 401 && matches!(self.auth, RegistryAuth::Anonymous) {
            RemoteError::NoCredentials {
                registry: self.host.clone(),
                looked: self.credentials.clone(),
            }
        } else {
            RemoteError::Refused {
                registry: self.host.clone(),
                credentials: self.credentials.clone(),
                what,
                source,
            }
        }
    }

    /// Every repository the registry lists in `/v2/_catalog` (all pages).
    pub async fn catalog(&self) -> Result<Vec<String>, RemoteError> {
        const PAGE: usize = 1000;
        let r = self.reference("x", "x")?;
        let mut all: Vec<String> = Vec::new();
        loop {
            let last = all.last().cloned();
            let page = self
                .retry(&|| "listing repositories (/v2/_catalog)".to_owned(), || {
                    self.client
                        .catalog(&r, &self.auth, Some(PAGE), last.as_deref())
                })
                .await?;
            let n = page.repositories.len();
            let before = all.len();
            all.extend(
                page.repositories
                    .into_iter()
                    .filter(|x| last.as_deref().is_none_or(|l| x.as_str() > l)),
            );
            if n < PAGE || all.len() == before {
                return Ok(all);
            }
        }
    }

    /// Every tag of `repo` (all pages); an unknown repository has none.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>, RemoteError> {
        self.list_tags_paged(repo, 1000).await
    }

    /// Every tag of `repo`, sorted, asked for `page` at a time
    /// (`?n=PAGE&last=…`, where `last` is the last tag of the page before,
    /// as the `Link` header of the distribution spec names it), each page
    /// of at most [`TAG_LIST_MAX`] bytes, until a page brings nothing new
    /// (so a registry that sends fewer than asked is read to the end). A
    /// page that is not in lexical order means the registry cannot page by
    /// `last` (distribution 2.8 does not sort its storage listing): then
    /// the whole list is asked for in one answer.
    pub async fn list_tags_paged(
        &self,
        repo: &str,
        page: usize,
    ) -> Result<Vec<String>, RemoteError> {
        let size = page.max(1);
        let r = self.reference(repo, "x")?;
        let fetch = |n: Option<usize>, last: Option<String>| {
            let r = &r;
            async move {
                self.retry(&|| format!("listing the tags of {repo}"), || async {
                    match self
                        .client
                        .list_tags(r, &self.auth, n, last.as_deref())
                        .await
                    {
                        Err(e) if status(&e) == Some(404) || is_not_found(&e) => Ok(Vec::new()),
                        Err(e) => Err(e),
                        Ok(t) => Ok(t.tags),
                    }
                })
                .await
            }
        };
        let mut all: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut last: Option<String> = None;
        loop {
            let tags = fetch(Some(size), last.clone()).await?;
            let unsorted = tags.windows(2).any(|w| w.first() >= w.get(1))
                || last
                    .as_ref()
                    .is_some_and(|l| tags.first().is_some_and(|f| f <= l));
            if unsorted {
                let whole = fetch(None, None).await?;
                return Ok(whole
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect());
            }
            let before = all.len();
            last = tags.last().cloned();
            all.extend(tags);
            if all.len() == before {
                return Ok(all.into_iter().collect());
            }
        }
    }

    /// Whether `repo` holds blob `d` of `size` bytes: only an answer that
    /// proves it says yes (a 200 whose `Content-Length` is `size` and
    /// whose `Docker-Content-Digest`, when sent, is `d`). Anything else (a
    /// redirect loop, a redirect with nowhere to go, a wrong length or
    /// digest) is "not there", and the caller uploads the blob: uploading
    /// a blob again is always safe (it is named by its digest), while
    /// taking it for present would leave an incomplete image behind a tag.
    /// Failures to ask (the registry unreachable, credentials refused, 5xx
    /// after retries) are errors.
    pub async fn has_blob(&self, repo: &str, d: &Digest, size: u64) -> Result<bool, RemoteError> {
        let r = self.at_digest(repo, d)?;
        let digest = d.to_string();
        self.retry(&|| format!("checking blob {d} in {repo}"), || async {
            match self.client.blob_head(&r, &digest).await {
                Ok((status, headers)) => {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                    Ok(holds_blob(
                        status.as_u16(),
                        header("content-length"),
                        header("docker-content-digest"),
                        d,
                        size,
                    ))
                }
                Err(OciDistributionError::RequestError(e)) if e.is_redirect() => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Asks the registry to mount blob `d` into `repo` from `from`; `false`
    /// when it declines (the caller then uploads). An upload session the
    /// registry opens instead (`202`) is cancelled.
    pub async fn mount_blob(
        &self,
        repo: &str,
        from: &str,
        d: &Digest,
    ) -> Result<bool, RemoteError> {
        match self.mount_or_start(repo, from, d).await? {
            MountAnswer::Mounted => Ok(true),
            MountAnswer::Session(location) => {
                self.cancel_upload(repo, &location).await;
                Ok(false)
            }
            MountAnswer::Declined => Ok(false),
        }
    }

    /// Asks the registry, in one `POST`, to mount blob `d` into `repo` from
    /// `from` (which may be `repo` itself: then a mount says the repository
    /// holds the blob, as a `HEAD` would), else to open an upload session
    /// for it. A `201` counts only when the `Docker-Content-Digest` it
    /// sends, if any, is `d`. Credentials refused and throttling are
    /// errors; other refusals are [`MountAnswer::Declined`].
    pub async fn mount_or_start(
        &self,
        repo: &str,
        from: &str,
        d: &Digest,
    ) -> Result<MountAnswer, RemoteError> {
        let target = self.at_digest(repo, d)?;
        self.at_digest(from, d)?;
        let digest = d.to_string();
        let r = self
            .retry(
                &|| format!("mounting blob {d} into {repo} from {from}"),
                || self.client.mount_or_start_upload(&target, from, &digest),
            )
            .await;
        match r {
            Ok(UploadStart::Mounted { digest: None }) => Ok(MountAnswer::Mounted),
            Ok(UploadStart::Mounted { digest: Some(h) }) => Ok(match h.trim().parse::<Digest>() {
                Ok(named) if named == *d => MountAnswer::Mounted,
                _ => MountAnswer::Declined,
            }),
            Ok(UploadStart::Session(location)) => Ok(MountAnswer::Session(location)),
            Err(e @ RemoteError::Throttled { .. }) => Err(e),
            Err(e) if e.is_auth() => Err(e),
            Err(_) => Ok(MountAnswer::Declined),
        }
    }

    /// Whether a mount may stand for a `HEAD` on this registry (see
    /// [`Remote::stop_mount_probes`]).
    pub fn mount_probes(&self) -> bool {
        self.mount_probes.load(Ordering::Relaxed)
    }

    /// From now on, presence is checked with a `HEAD`, not with a mount
    /// (the registry declined a mount it should have made, or the caller
    /// expects to find most blobs there).
    pub fn stop_mount_probes(&self) {
        self.mount_probes.store(false, Ordering::Relaxed);
    }

    /// Cancels the upload session at `location` in `repo` (`DELETE`), so
    /// the registry drops what was sent; best effort, bounded in time (a
    /// session left behind is only a registry's garbage to collect).
    pub async fn cancel_upload(&self, repo: &str, location: &str) {
        let Ok(r) = self.reference(repo, "x") else {
            return;
        };
        self.login().await;
        let cancel = self.client.cancel_upload(&r, location);
        let _ = tokio::time::timeout(CANCEL_WAIT, cancel).await;
    }

    /// Uploads blob `d` of `size` bytes into `repo`: one monolithic PUT,
    /// falling back to a chunked upload when the registry refuses that
    /// (a proxy's body size limit, say). `open` gives a fresh body for each
    /// attempt; `aborted` tells whether a body failure is final (a digest
    /// mismatch, not a network fault), so it is not retried.
    pub async fn push_blob(
        &self,
        repo: &str,
        d: &Digest,
        size: u64,
        open: &(dyn Fn() -> BlobBody + Send + Sync),
        aborted: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(), RemoteError> {
        self.push_blob_in(repo, d, size, None, open, aborted).await
    }

    /// [`Remote::push_blob`], into the upload session `session` when one
    /// is open already (from [`Remote::mount_or_start`]), so the upload
    /// is one `PUT`. A monolithic upload that fails cancels its session
    /// (`DELETE`): a registry keeps nothing of a blob whose bytes turned
    /// out damaged on the way, or of one cut off.
    pub async fn push_blob_in(
        &self,
        repo: &str,
        d: &Digest,
        size: u64,
        session: Option<String>,
        open: &(dyn Fn() -> BlobBody + Send + Sync),
        aborted: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(), RemoteError> {
        let r = self.at_digest(repo, d)?;
        let digest = d.to_string();
        let body = |f: BlobBody| f.map(|c| c.map_err(OciDistributionError::IoError));
        let what = || format!("uploading blob {d} to {repo}");
        let chunked = || async {
            self.retry(
                &|| format!("uploading blob {d} to {repo} in chunks"),
                || {
                    self.chunked
                        .push_blob_stream(&r, body(open()), &digest, Some(size))
                },
            )
            .await
            .map(|_| ())
        };
        if self.chunked_only.load(Ordering::Relaxed) {
            if let Some(location) = session {
                self.cancel_upload(repo, &location).await;
            }
            return chunked().await;
        }
        let session = std::sync::Mutex::new(session);
        let mono = self
            .retry(&what, || {
                let open_session = session.lock().unwrap_or_else(|p| p.into_inner()).take();
                let (r, digest) = (&r, &digest);
                async move {
                    if aborted() {
                        if let Some(location) = &open_session {
                            self.cancel_upload(repo, location).await;
                        }
                        return Err(OciDistributionError::GenericError(Some(
                            "the blob's bytes are damaged".into(),
                        )));
                    }
                    let location = match open_session {
                        Some(l) => l,
                        None => self.client.start_upload(r).await?,
                    };
                    match self
                        .client
                        .push_blob_stream_to(&location, r, body(open()), size, digest)
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            self.cancel_upload(repo, &location).await;
                            Err(e)
                        }
                    }
                }
            })
            .await;
        match mono {
            Ok(()) => Ok(()),
            Err(RemoteError::Request { source: ref e, .. })
                if !aborted()
                    && matches!(status(e.error()), Some(400 | 405 | 411 | 413 | 415 | 501)) =>
            {
                self.chunked_only.store(true, Ordering::Relaxed);
                chunked().await
            }
            Err(e) => Err(e),
        }
    }

    /// The referrers of `repo@subject` from the OCI referrers API, every
    /// page (following `Link: <…>; rel="next"` on the same registry); `None`
    /// when the registry has no such API (it answers 404 or 400), which is
    /// not an error: the caller then looks at the tag schema's fallback.
    /// Each page is parsed by ferry's strict parser. Bounded by
    /// [`REFERRERS_ENTRIES_MAX`] entries and [`REFERRERS_PAGES_MAX`] pages;
    /// a page link that leaves the registry or comes back to a page read
    /// already is refused.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Option<Vec<crate::format::oci::Descriptor>>, RemoteError> {
        let r = self.at_digest(repo, subject)?;
        let bad = |why: String| RemoteError::Referrers {
            registry: self.host.clone(),
            repository: repo.to_owned(),
            subject: *subject,
            why,
        };
        let mut all = Vec::new();
        let mut seen_pages = std::collections::HashSet::new();
        let mut page: Option<String> = None;
        let mut bytes = 0usize;
        for n in 0.. {
            if n >= REFERRERS_PAGES_MAX {
                return Err(bad(format!(
                    "the answer runs over more than {REFERRERS_PAGES_MAX} pages"
                )));
            }
            let answer = self
                .retry(
                    &|| format!("listing the referrers of {repo}@{subject}"),
                    || self.client.pull_referrers_page(&r, None, page.as_deref()),
                )
                .await?;
            // 404 and 400 are the spec's "no referrers API"; 405 and 501
            // are what a proxy or server without the route may answer.
            if matches!(answer.status, 404 | 400 | 405 | 501) {
                if n == 0 {
                    return Ok(None);
                }
                return Err(bad(format!(
                    "page {} of the answer is missing (HTTP {})",
                    n + 1,
                    answer.status
                )));
            }
            let node = crate::format::oci::parse_node(
                Digest::of(&answer.body),
                crate::format::oci::OCI_INDEX,
                &answer.body,
            )
            .map_err(|e| {
                bad(format!(
                    "the answer is not an image index: {}",
                    error_chain(&e)
                ))
            })?;
            let crate::format::oci::Node::Index(index) = node else {
                return Err(bad("the answer is not an image index".into()));
            };
            bytes += answer.body.len();
            if bytes > REFERRERS_BYTES_MAX {
                return Err(bad(format!(
                    "the answer is larger than {} MiB over its pages",
                    REFERRERS_BYTES_MAX >> 20
                )));
            }
            all.extend(index.manifests);
            if all.len() > REFERRERS_ENTRIES_MAX {
                return Err(bad(format!(
                    "it lists more than {REFERRERS_ENTRIES_MAX} referrers, ferry's limit for one subject"
                )));
            }
            match answer.link.as_deref().and_then(next_link) {
                None => return Ok(Some(all)),
                Some(next) => {
                    let path = self.same_registry_path(&next).ok_or_else(|| {
                        bad(format!("its next page {next:?} is not on this registry"))
                    })?;
                    if !seen_pages.insert(path.clone()) {
                        return Err(bad(format!("its next page {path:?} was read already")));
                    }
                    page = Some(path);
                }
            }
        }
        Ok(Some(all))
    }

    /// The path and query of `url` when it is a path under `/v2/` or an
    /// absolute URL on this registry's host.
    fn same_registry_path(&self, url: &str) -> Option<String> {
        if url.starts_with("/v2/") {
            return Some(url.to_owned());
        }
        let uri = url.parse::<http::Uri>().ok()?;
        let authority = uri.authority()?.as_str();
        if !authority.eq_ignore_ascii_case(&self.host)
            && !authority.eq_ignore_ascii_case(&self.resolved_registry())
        {
            return None;
        }
        let pq = uri.path_and_query()?.as_str();
        pq.starts_with("/v2/").then(|| pq.to_owned())
    }

    /// Pulls the manifest or index `repo:reference` (a tag or a digest) as
    /// raw bytes, with its digest (checked against a digest reference).
    pub async fn pull_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, Digest), RemoteError> {
        let r = self.reference(repo, reference)?;
        let what = || format!("fetching manifest {repo}:{reference}");
        let accept = [
            crate::format::oci::OCI_INDEX,
            crate::format::oci::OCI_MANIFEST,
            crate::format::oci::DOCKER_LIST,
            crate::format::oci::DOCKER_MANIFEST,
            crate::format::oci::DOCKER_SCHEMA1_SIGNED,
            crate::format::oci::DOCKER_SCHEMA1,
        ];
        let (bytes, _) = self
            .retry(&what, || {
                self.client.pull_manifest_raw(&r, &self.auth, &accept)
            })
            .await?;
        let d = Digest::of(&bytes);
        if let Ok(want) = reference.parse::<Digest>() {
            if want != d {
                return Err(RemoteError::Request {
                    registry: self.host.clone(),
                    what: what(),
                    attempts: 1,
                    source: OciDistributionError::GenericError(Some(format!(
                        "the registry served bytes with digest {d}"
                    )))
                    .into(),
                });
            }
        }
        Ok((bytes.to_vec(), d))
    }

    /// Streams blob `d` of `repo` into `sink` (called once per attempt with
    /// a fresh body; it must hash, check and store, returning `Ok(false)`
    /// when the bytes were damaged in transit, which is retried).
    pub async fn pull_blob<F, Fut>(
        &self,
        repo: &str,
        d: &Digest,
        sink: F,
    ) -> Result<(), RemoteError>
    where
        F: Fn(BlobBody) -> Fut,
        Fut: Future<Output = io::Result<()>>,
    {
        let r = self.at_digest(repo, d)?;
        let digest = d.to_string();
        self.retry(&|| format!("fetching blob {d} from {repo}"), || async {
            let s = self.client.pull_blob_stream(&r, digest.as_str()).await?;
            sink(s.stream).await.map_err(OciDistributionError::IoError)
        })
        .await
    }

    /// Starts a download of blob `d` of `repo` (retried until the registry
    /// answers) and returns its body as it comes, for a caller that hashes
    /// and checks the bytes itself (`mirror` streams them through the
    /// verifying pump). It asks for the range from byte 0, which a registry
    /// serves as the whole blob, so the client does not hash it a second
    /// time; a registry that ignores ranges answers 200 and the client
    /// checks that body as well.
    pub async fn blob_stream(&self, repo: &str, d: &Digest) -> Result<BlobBody, RemoteError> {
        let r = self.at_digest(repo, d)?;
        let digest = d.to_string();
        self.retry(&|| format!("fetching blob {d} from {repo}"), || async {
            match self
                .client
                .pull_blob_stream_partial(&r, digest.as_str(), 0, None)
                .await?
            {
                oci_client::client::BlobResponse::Full(s)
                | oci_client::client::BlobResponse::Partial(s) => Ok(s.stream),
            }
        })
        .await
    }

    /// The digest `repo:reference` points at, or `None` when absent: one
    /// `HEAD`, whose `404` means absent and whose `Docker-Content-Digest`
    /// names the digest. Only an answer without that header (a registry
    /// that sends it on `GET` only) is followed by a `GET`, whose bytes
    /// are hashed.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RemoteError> {
        let r = self.reference(repo, reference)?;
        let res = self
            .retry(
                &|| format!("checking manifest {repo}:{reference}"),
                || async {
                    let (code, headers) = match self.client.manifest_head(&r).await {
                        Ok(answer) => answer,
                        Err(e) if status(&e) == Some(404) || is_not_found(&e) => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    if code.as_u16() == 404 {
                        return Ok(None);
                    }
                    let named = headers
                        .get("docker-content-digest")
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                        .filter(|h| h.starts_with("sha256:"))
                        .map(str::to_owned);
                    if let (200, Some(h)) = (code.as_u16(), named) {
                        return Ok(Some(h));
                    }
                    match self.client.fetch_manifest_digest(&r, &self.auth).await {
                        Ok(d) => Ok(Some(d)),
                        Err(e) if status(&e) == Some(404) || is_not_found(&e) => Ok(None),
                        Err(e) => Err(e),
                    }
                },
            )
            .await?;
        Ok(res.and_then(|d| d.parse().ok()))
    }

    /// Pushes raw manifest bytes as `repo:reference` (a tag or a digest),
    /// and checks that the registry holds them: the `Docker-Content-Digest`
    /// it answers with must be the pushed bytes' digest; without one, a
    /// `HEAD` of that digest must find it.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), RemoteError> {
        self.push_manifest_noting_subject(repo, reference, bytes, media_type)
            .await
            .map(|_| ())
    }

    /// [`Remote::push_manifest`], also telling whether the registry
    /// answered with an `OCI-Subject` header: a registry with the referrers
    /// API sends it when it indexed the pushed manifest's `subject`.
    pub async fn push_manifest_noting_subject(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<bool, RemoteError> {
        let r = self.reference(repo, reference)?;
        let what = || format!("pushing manifest {repo}:{reference}");
        let ct = reqwest_header(media_type).ok_or_else(|| RemoteError::Request {
            registry: self.host.clone(),
            what: what(),
            attempts: 0,
            source: OciDistributionError::UnsupportedMediaTypeError(media_type.to_owned()).into(),
        })?;
        let body = Bytes::copy_from_slice(bytes);
        let (_, answered, subject) = self
            .retry(&what, || {
                self.client
                    .push_manifest_raw_with_headers(&r, body.clone(), ct.clone())
            })
            .await?;
        let indexed = subject.is_some();
        let pushed = Digest::of(bytes);
        let other = |answered: String| RemoteError::PushedOther {
            registry: self.host.clone(),
            reference: named(repo, reference),
            pushed,
            answered,
        };
        match answered {
            // A digest of another algorithm cannot be compared: ask.
            Some(a) if a.starts_with("sha256:") => match a.parse::<Digest>() {
                Ok(d) if d == pushed => Ok(indexed),
                _ => Err(other(a)),
            },
            _ => match self.manifest_digest(repo, &pushed.to_string()).await? {
                Some(d) if d == pushed => Ok(indexed),
                Some(d) => Err(other(d.to_string())),
                None => Err(RemoteError::PushedMissing {
                    registry: self.host.clone(),
                    reference: named(repo, reference),
                    pushed,
                }),
            },
        }
    }
}

/// The target of a `Link` header's `rel="next"` entry (RFC 8288:
/// `<URL>; rel="next"`, several links separated by commas).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .filter_map(|p| p.split_once('='))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
            .then(|| target.to_owned())
    })
}

/// Whether a blob `HEAD`'s answer proves the registry holds blob `d` of
/// `size` bytes: a 200 whose `Content-Length` is `size` and whose
/// `Docker-Content-Digest`, when it sends one, is `d`. Nothing else does:
/// not a redirect left unfollowed, not another 2xx, not a missing or wrong
/// length.
fn holds_blob(
    status: u16,
    content_length: Option<&str>,
    digest: Option<&str>,
    d: &Digest,
    size: u64,
) -> bool {
    status == 200
        && content_length.and_then(|l| l.trim().parse::<u64>().ok()) == Some(size)
        && digest.is_none_or(|h| h.trim().parse::<Digest>().ok() == Some(*d))
}

fn reqwest_header(v: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(v).ok()
}

/// The error a response gave, without the `Retry-After` wrapper that
/// ferry's patch of oci-client adds to throttling answers.
fn inner(e: &OciDistributionError) -> &OciDistributionError {
    match e {
        OciDistributionError::RetryAfter { source, .. } => inner(source),
        e => e,
    }
}

/// [`inner`], owned.
fn peel(e: OciDistributionError) -> OciDistributionError {
    match e {
        OciDistributionError::RetryAfter { source, .. } => peel(*source),
        e => e,
    }
}

/// The wait a throttling answer asked for (`Retry-After`), when it did.
fn retry_after(e: &OciDistributionError) -> Option<Duration> {
    match e {
        OciDistributionError::RetryAfter { retry_after, .. } => retry_after_value(retry_after),
        _ => None,
    }
}

/// The HTTP status behind an error, when there is one.
fn status(e: &OciDistributionError) -> Option<u16> {
    use oci_client::errors::OciErrorCode as C;
    match inner(e) {
        OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::AuthenticationFailure(_) => Some(401),
        // A 4xx with an OCI error body arrives without its status; the
        // codes that matter for retrying and for auth say it.
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                C::Toomanyrequests => Some(429),
                C::Unauthorized => Some(401),
                C::Denied => Some(403),
                _ => None,
            })
        }
        _ => None,
    }
}

/// The URL a failed request went to, when the error says.
fn error_url(e: &OciDistributionError) -> Option<String> {
    match inner(e) {
        OciDistributionError::RequestError(r) => r.url().map(|u| u.to_string()),
        OciDistributionError::ServerError { url, .. }
        | OciDistributionError::UnauthorizedError { url }
        | OciDistributionError::RegistryError { url, .. } => Some(url.clone()),
        _ => None,
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode as C;
    match inner(e) {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, C::ManifestUnknown | C::NameUnknown)),
        _ => false,
    }
}

/// Whether retrying may help: server errors, throttling, timeouts and
/// connections that failed or broke.
fn transient(e: &OciDistributionError) -> bool {
    match status(e) {
        Some(s) => s >= 500 || s == 429 || s == 408,
        None => match inner(e) {
            OciDistributionError::RequestError(r) => {
                (r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
                    && !is_certificate_error(r)
            }
            OciDistributionError::IoError(_) => true,
            _ => false,
        },
    }
}

/// Whether a request failed on the peer's TLS certificate (retrying will
/// not change the certificate).
fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<rustls::Error>().is_some() || c.to_string().contains("certificate") {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Basic credentials for `host` (explicit ones, else the docker config),
/// and where they came from; for HTTP services other than registries
/// (chart repositories).
pub(crate) fn basic_credentials(
    host: &str,
    explicit: Option<(String, String)>,
) -> Result<(Option<(String, String)>, String), RemoteError> {
    let (auth, source) = resolve_credentials(host, explicit)?;
    Ok(match auth {
        RegistryAuth::Basic(u, p) => (Some((u, p)), source),
        RegistryAuth::IdentityToken(_) => (
            None,
            format!("none sent; {source} is for registry token services only"),
        ),
        _ => (None, source),
    })
}

/// Where credentials for `host` come from: explicit ones, else the docker
/// config, else none. Returns the auth and a description of its source.
fn resolve_credentials(
    host: &str,
    explicit: Option<(String, String)>,
) -> Result<(RegistryAuth, String), RemoteError> {
    if let Some((u, p)) = explicit {
        return Ok((
            RegistryAuth::Basic(u, p),
            "--username/--password-stdin".into(),
        ));
    }
    let Some(path) = docker_config_path() else {
        return Ok((
            RegistryAuth::Anonymous,
            "no docker config ($HOME unset)".into(),
        ));
    };
    credentials_from_config(host, path)
}

/// Credentials for `host` from the docker config file at `path`.
fn credentials_from_config(
    host: &str,
    path: PathBuf,
) -> Result<(RegistryAuth, String), RemoteError> {
    let bytes = match fs_err::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((
                RegistryAuth::Anonymous,
                format!("{} (absent) and no --username", path.display()),
            ))
        }
        Err(e) => {
            return Err(RemoteError::Config {
                registry: host.to_owned(),
                path,
                source: Box::new(e),
            })
        }
    };
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let mut keys = vec![
        host.to_owned(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
    ];
    if host == "docker.io" || host == "registry-1.docker.io" || host == "index.docker.io" {
        keys.insert(0, "https://index.docker.io/v1/".into());
    }
    for key in &keys {
        match docker_credential::get_credential_from_reader(&bytes[..], key) {
            Ok(DockerCredential::UsernamePassword(u, p)) => {
                return Ok((
                    RegistryAuth::Basic(u, p),
                    format!("{} (entry {key:?})", path.display()),
                ))
            }
            Ok(DockerCredential::IdentityToken(t)) => {
                return Ok((
                    RegistryAuth::IdentityToken(t),
                    format!("{} (entry {key:?}, an identity token)", path.display()),
                ))
            }
            // Helpers that know nothing of this key, and absent entries.
            Err(E::NoCredentialConfigured | E::HelperFailure { .. }) => continue,
            Err(e) => {
                return Err(RemoteError::Config {
                    registry: host.to_owned(),
                    path,
                    source: Box::new(e),
                })
            }
        }
    }
    Ok((
        RegistryAuth::Anonymous,
        format!("{} (no entry for {host}) and no --username", path.display()),
    ))
}

/// Where the docker config is: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`. An empty variable counts as unset, and the path
/// is made absolute, so messages name the file ferry really looked at.
fn docker_config_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    let path = dir.join("config.json");
    Some(std::path::absolute(&path).unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_takes_only_the_next_relation() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:x?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:x?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<https://r/v2/p>; rel="prev", <https://r/v2/n>; rel=next"#).as_deref(),
            Some("https://r/v2/n")
        );
        assert_eq!(next_link(r#"</v2/a>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link(""), None);
    }

    fn config(dir: &std::path::Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn docker_config_entries_by_host_and_docker_hub_key() {
        let t = tempfile::tempdir().unwrap();
        // "u:p" and "hub:secret" in base64.
        let p = config(
            t.path(),
            r#"{"auths":{"reg.local:5000":{"auth":"dTpw"},"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}}}"#,
        );
        let (auth, from) = credentials_from_config("reg.local:5000", p.clone()).unwrap();
        assert!(matches!(auth, RegistryAuth::Basic(u, pw) if u == "u" && pw == "p"));
        assert!(from.contains("\"reg.local:5000\""), "{from}");
        let (auth, _) = credentials_from_config("docker.io", p.clone()).unwrap();
        assert!(matches!(auth, RegistryAuth::Basic(u, _) if u == "hub"));
        let (auth, from) = credentials_from_config("other.example", p).unwrap();
        assert!(matches!(auth, RegistryAuth::Anonymous));
        assert!(from.contains("no entry for other.example"), "{from}");
        let missing = t.path().join("absent.json");
        let (auth, from) = credentials_from_config("x", missing).unwrap();
        assert!(matches!(auth, RegistryAuth::Anonymous));
        assert!(from.contains("(absent)"), "{from}");
    }

    #[test]
    fn identity_tokens_are_kept_for_the_token_service() {
        let t = tempfile::tempdir().unwrap();
        let p = config(
            t.path(),
            r#"{"auths":{"reg.local":{"identitytoken":"abc"}}}"#,
        );
        let (auth, source) = credentials_from_config("reg.local", p).unwrap();
        assert!(matches!(auth, RegistryAuth::IdentityToken(t) if t == "abc"));
        assert!(
            source.ends_with("(entry \"reg.local\", an identity token)"),
            "{source}"
        );
    }

    #[test]
    fn malformed_docker_config_is_an_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let p = config(t.path(), "{not json");
        let e = credentials_from_config("reg.local", p.clone()).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    }

    #[test]
    fn token_realms_over_plain_http_leave_loopback_and_insecure_hosts_only() {
        let insecure = vec!["tokens.lan:8080".to_owned()];
        let check = |c: &str| check_realm("reg.example", c, &insecure, "config.json");
        assert_eq!(
            bearer_realm(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Some("https://auth.docker.io/token")
        );
        assert_eq!(bearer_realm(r#"Basic realm="Registry Realm""#), None);
        for ok in [
            r#"Bearer realm="https://auth.example/token",service="reg""#,
            r#"bearer service="reg", realm="http://127.0.0.1:5001/token""#,
            r#"Bearer realm="http://localhost/token""#,
            r#"Bearer realm="http://[::1]:80/token""#,
            r#"Bearer realm="http://tokens.lan:8080/token?x=1""#,
            r#"Basic realm="http://anywhere""#,
            "Bearer",
            "",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            r#"Bearer realm="http://auth.example/token",service="reg""#,
            r#"Bearer realm="HTTP://tokens.lan/token""#,
            r#"Bearer realm="http://127.0.0.1.evil.example/token""#,
            r#"Bearer realm="http://user@auth.example""#,
        ] {
            let e = check(bad).unwrap_err().to_string();
            assert!(e.contains("over plain HTTP"), "{bad}: {e}");
            assert!(e.contains("registry reg.example"), "{e}");
            assert!(e.contains("config.json"), "{e}");
        }
    }

    #[test]
    fn only_a_200_with_the_right_length_and_digest_proves_a_blob_is_there() {
        let d = Digest::of(b"blob");
        let (dh, other) = (d.to_string(), Digest::of(b"other").to_string());
        let holds = |status, len, digest| holds_blob(status, len, digest, &d, 4);
        assert!(holds(200, Some("4"), Some(dh.as_str())));
        assert!(
            holds(200, Some("4"), None),
            "the digest is checked when sent"
        );
        for (status, len, digest) in [
            (200, Some("5"), Some(dh.as_str())),
            (200, Some("0"), None),
            (200, None, Some(dh.as_str())),
            (200, Some("four"), None),
            (200, Some("4"), Some(other.as_str())),
            (200, Some("4"), Some("sha512:abc")),
            (204, Some("4"), None),
            (302, Some("4"), None),
            (307, Some("4"), Some(dh.as_str())),
            (304, Some("4"), None),
            (404, Some("4"), None),
        ] {
            assert!(!holds(status, len, digest), "{status} {len:?} {digest:?}");
        }
    }

    #[test]
    fn repositories_and_tags_outside_the_grammar_never_become_a_request() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A name that resolves nowhere (and is not loopback, so connect
            // probes nothing): a request would fail with a connection
            // error, not with the name.
            let remote = Remote::connect("registry.invalid:9", &RemoteOptions::default())
                .await
                .unwrap();
            let d = Digest::of(b"x");
            let bad_tag = "1.0.0/../../x/manifests/9.9";
            let e = remote
                .push_manifest("charts/demo", bad_tag, b"{}", "application/json")
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RemoteError::BadName { kind: "tag", value, .. } if value == bad_tag),
                "{e}"
            );
            assert!(e.to_string().contains(&format!("{bad_tag:?}")), "{e}");
            for tag in ["", ".hidden", "-x", "a b", "a\nb", &"x".repeat(129), "v1:2"] {
                let e = remote
                    .manifest_digest("charts/demo", tag)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(e, RemoteError::BadName { kind: "tag", .. }),
                    "{tag:?}: {e}"
                );
            }
            for repo in [
                "../x", "a/../b", "A", "a//b", "/a", "a/", "a?b", "a%2fb", "",
            ] {
                let errors = [
                    remote.pull_manifest(repo, "1.0").await.err(),
                    remote.manifest_digest(repo, "1.0").await.err(),
                    remote.has_blob(repo, &d, 1).await.err(),
                    remote.mount_blob("ok", repo, &d).await.err(),
                    remote.list_tags(repo).await.err(),
                    remote.pull_blob(repo, &d, |_| async { Ok(()) }).await.err(),
                ];
                for e in errors {
                    assert!(
                        matches!(
                            e,
                            Some(RemoteError::BadName {
                                kind: "repository",
                                ..
                            })
                        ),
                        "{repo:?}: {e:?}"
                    );
                }
            }
            // A name in the grammar gets as far as the network.
            let e = remote
                .manifest_digest("a.b/c__d/e-f", "v1.0_x")
                .await
                .unwrap_err();
            assert!(matches!(e, RemoteError::Request { .. }), "{e}");
        });
    }

    #[test]
    fn a_registrys_answer_is_shown_on_one_bounded_line() {
        let message = format!(
            "{}\n\u{1b}[2Jferry: loaded everything\n",
            "no ".repeat(10_000)
        );
        let e = Answer(OciDistributionError::RetryAfter {
            retry_after: "1".into(),
            source: Box::new(OciDistributionError::ServerError {
                code: 400,
                url: "http://r/v2/x/manifests/1".into(),
                message,
            }),
        });
        let shown = e.to_string();
        assert!(shown.starts_with("the server asked to retry after 1: Server error: url http://r/v2/x/manifests/1, code: 400, message: no no"), "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.len() < ANSWER_SHOWN_MAX + 64, "{}", shown.len());
        assert!(shown.ends_with("more characters not shown)"), "{shown}");
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(size_text(4 << 20), "4 MiB");
        assert_eq!(size_text(64 << 10), "64 KiB");
        assert_eq!(size_text(1000), "1000 bytes");
    }

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        }
    }

    #[test]
    fn transient_statuses() {
        assert!(transient(&server(503)));
        assert!(transient(&server(429)));
        assert!(!transient(&server(404)));
        assert!(!transient(&server(400)));
    }

    #[test]
    fn a_retry_after_answer_keeps_its_status_url_and_wait() {
        let wrap = |retry_after: &str, source| OciDistributionError::RetryAfter {
            retry_after: retry_after.into(),
            source: Box::new(source),
        };
        let unavailable = wrap(
            "7",
            OciDistributionError::ServerError {
                code: 503,
                url: "https://r.example/v2/x/manifests/1".into(),
                message: String::new(),
            },
        );
        assert!(transient(&unavailable));
        assert_eq!(status(&unavailable), Some(503));
        assert_eq!(retry_after(&unavailable), Some(Duration::from_secs(7)));
        assert_eq!(
            error_url(&unavailable).as_deref(),
            Some("https://r.example/v2/x/manifests/1")
        );
        assert!(matches!(
            peel(unavailable),
            OciDistributionError::ServerError { code: 503, .. }
        ));

        let envelope = serde_json::from_str(
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limit"}]}"#,
        )
        .unwrap();
        let hub = wrap(
            "Wed, 21 Oct 2015 07:28:00 GMT",
            OciDistributionError::RegistryError {
                envelope,
                url: "u".into(),
            },
        );
        assert!(transient(&hub));
        assert_eq!(status(&hub), Some(429));
        assert_eq!(retry_after(&hub), Some(Duration::ZERO), "a past date");
        assert_eq!(retry_after(&wrap("soon", server(429))), None);
        assert_eq!(retry_after(&server(429)), None);
    }
}
