//! Classic Helm chart repositories: reading `index.yaml`, choosing a
//! version by Helm's constraint rules, and downloading the chart archive
//! into the fetch cache, checked against the index's digest and recorded
//! there (`cache`) under the repository, name and version chosen.
//!
//! Version constraints follow Helm (Masterminds semver): an exact version,
//! `^1.2`, `~1.2.3`, `>=1.2 <2`, `1.2.x`, `*`, ranges `1.2 - 1.4`, and
//! alternatives with `||`. Pre-releases are chosen only when the constraint
//! names one. Plain HTTP is allowed only for loopback hosts and hosts the
//! caller names as insecure. Server errors, throttling and broken
//! connections are retried with backoff, or after the wait a 429 or 503
//! asks for in `Retry-After`. What the repository sends is bounded:
//! `index.yaml` at [`INDEX_MAX`], a chart download at [`CHART_DOWNLOAD_MAX`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::base::digest::Digest;
use crate::base::version::{parse_lenient as parse_version, Constraint};
use crate::connected::cache::{Record, Source};
use crate::connected::chart::CHART_MAX_DECOMPRESSED;
use crate::format::blob::Mismatch;
use crate::format::layout::{LayoutError, Store};
use crate::shared::remote::{RemoteError, RemoteOptions};
use crate::shared::transport::{
    attempts_note, plain_http_allowed, read_cas, retry_after_value, retrying, Attempt,
    ChannelReader, GaveUp, MAX_RETRY_AFTER,
};

/// The largest `index.yaml` ferry reads. Real indexes are large: one
/// entry per chart version, with its description, maintainers and
/// dependencies. Bitnami's held 15,300 entries in 14 MB when it was
/// trimmed in 2022 and was back to about 27 MB later; TrueCharts' reached
/// 50 MB in 2024, just over the 50 MiB limit Flux had set (fluxcd/flux2
/// issue 4635). 64 MiB holds all of these and bounds what ferry holds in
/// memory (the text and the parsed entries, a few times that at most).
pub const INDEX_MAX: u64 = 64 << 20;

/// The largest chart archive ferry downloads: a chart may decompress to
/// [`CHART_MAX_DECOMPRESSED`], and gzip never makes data more than a
/// fraction of a percent larger, so 1 MiB over that is room enough.
pub const CHART_DOWNLOAD_MAX: u64 = CHART_MAX_DECOMPRESSED + (1 << 20);

/// Errors fetching a chart from a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository URL is not usable.
    #[error("chart repository {0:?} is not an http(s) URL")]
    Url(String),
    /// Plain HTTP to a host that is neither loopback nor named insecure.
    #[error("chart repository {0} uses plain HTTP; use https, or name the host with --insecure-registry")]
    PlainHttp(String),
    /// A request failed.
    #[error("fetching {url} failed{}", attempts_note(*attempts))]
    Http {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("fetching {url} failed{}: the server answered {status}{}{}", attempts_note(*attempts), wait_note(*retry_after), auth_hint(*status, credentials))]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The wait the server asked for (`Retry-After`).
        retry_after: Option<Duration>,
        /// How many attempts were made.
        attempts: u32,
        /// Where credentials came from.
        credentials: String,
    },
    /// The server sent more than ferry's limit for what it asked for.
    #[error("fetching {url} failed: the {what} is larger than ferry's limit of {} MiB{}", limit >> 20, match content_length {
        Some(n) => format!(" (it declared Content-Length {n}); refused before reading it"),
        None => "; stopped reading past the limit".to_owned(),
    })]
    TooLarge {
        /// The URL.
        url: String,
        /// `index.yaml` or `chart archive`.
        what: &'static str,
        /// The limit, in bytes.
        limit: u64,
        /// The length the server declared, when it did.
        content_length: Option<u64>,
    },
    /// `index.yaml` does not parse.
    #[error("{url} is not a Helm repository index")]
    Index {
        /// The index URL.
        url: String,
        /// Why.
        #[source]
        source: serde_saphyr::Error,
    },
    /// No chart of that name.
    #[error("chart repository {repo} has no chart {name:?}{}", closest(similar))]
    UnknownChart {
        /// The repository.
        repo: String,
        /// The name asked for.
        name: String,
        /// Names that look alike.
        similar: Vec<String>,
    },
    /// No version matches.
    #[error(
        "chart {name} in {repo} has no version matching {constraint:?}{}",
        closest(available)
    )]
    NoVersion {
        /// The repository.
        repo: String,
        /// The chart.
        name: String,
        /// The constraint.
        constraint: String,
        /// The highest versions it has.
        available: Vec<String>,
    },
    /// The constraint does not parse.
    #[error("chart {name}: version constraint {constraint:?} is not valid ({reason})")]
    Constraint {
        /// The chart.
        name: String,
        /// The constraint.
        constraint: String,
        /// Why.
        reason: String,
    },
    /// The index entry has no download URL.
    #[error("chart {name} {version} in {repo} has no download URL")]
    NoUrl {
        /// The repository.
        repo: String,
        /// The chart.
        name: String,
        /// The version.
        version: String,
    },
    /// The download does not match the index's digest, or cannot be stored.
    #[error("chart {name} {version} downloaded from {url} could not be stored")]
    Store {
        /// The chart.
        name: String,
        /// The version.
        version: String,
        /// The URL.
        url: String,
        /// Why (a digest mismatch names both digests).
        #[source]
        source: LayoutError,
    },
    /// Credentials or TLS setup failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The chart was stored but could not be recorded in the cache.
    #[error(transparent)]
    Record(#[from] crate::connected::cache::CacheError),
}

fn wait_note(wait: Option<Duration>) -> String {
    match wait {
        Some(w) if w > MAX_RETRY_AFTER => format!(
            " and asked to retry after {} s, longer than ferry waits ({} s); run again later",
            w.as_secs(),
            MAX_RETRY_AFTER.as_secs()
        ),
        Some(w) => format!(" and asked to retry after {} s", w.as_secs()),
        None => String::new(),
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP
/// date (a date in the past means no wait).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    retry_after_value(headers.get(http::header::RETRY_AFTER)?.to_str().ok()?)
}

impl RepoError {
    /// Whether trying again may help, and after how long at the least
    /// (the server's `Retry-After`).
    fn retry(&self) -> Attempt {
        match self {
            RepoError::Status {
                status,
                retry_after,
                ..
            } if *status >= 500 || *status == 429 || *status == 408 => Attempt::Retry(*retry_after),
            RepoError::Http { source, .. }
                if source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
                    // A body cut short reads as a decode error.
                    || source.is_decode() =>
            {
                Attempt::Retry(None)
            }
            _ => Attempt::Stop,
        }
    }

    fn set_attempts(mut self, n: u32) -> RepoError {
        if let RepoError::Status { attempts, .. } | RepoError::Http { attempts, .. } = &mut self {
            *attempts = n;
        }
        self
    }
}

/// Runs `op` with the shared retry policy, judging failures by
/// [`RepoError::retry`]; the error given up on says how many attempts
/// were made.
async fn with_retries<T, F, Fut>(opts: &RemoteOptions, op: F) -> Result<T, RepoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RepoError>>,
{
    retrying(opts.retries, opts.backoff, op, RepoError::retry)
        .await
        .map_err(
            |GaveUp {
                 error, attempts, ..
             }| error.set_attempts(attempts),
        )
}

fn auth_hint(status: u16, credentials: &str) -> String {
    if status == 401 || status == 403 {
        format!(" (credentials: {credentials})")
    } else {
        String::new()
    }
}

fn closest(list: &[String]) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!("; it has: {}", list.join(", "))
    }
}

#[derive(Deserialize, Debug, PartialEq)]
struct Index {
    #[serde(default)]
    entries: std::collections::BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct IndexEntry {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// A chart downloaded into the cache.
#[derive(Debug, Clone)]
pub struct FetchedChart {
    /// The `.tgz` in the cache.
    pub path: PathBuf,
    /// The version chosen.
    pub version: String,
    /// The archive's digest.
    pub digest: Digest,
}

/// Fetches chart `name` matching `constraint` from the repository at
/// `repo` into the cache at `cache`.
pub async fn fetch_chart(
    repo: &str,
    name: &str,
    constraint: &str,
    cache: &std::path::Path,
    opts: &RemoteOptions,
) -> Result<FetchedChart, RepoError> {
    let base = reqwest::Url::parse(&format!("{}/", repo.trim_end_matches('/')))
        .map_err(|_| RepoError::Url(repo.to_owned()))?;
    let host = match (base.host_str(), base.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return Err(RepoError::Url(repo.to_owned())),
    };
    match base.scheme() {
        "https" => {}
        "http" if plain_http_allowed(&host, &opts.insecure) => {}
        "http" => return Err(RepoError::PlainHttp(repo.to_owned())),
        _ => return Err(RepoError::Url(repo.to_owned())),
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120))
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(opts.tls_skip_verify);
    let pems = read_cas(&opts.ca_files).map_err(RemoteError::from)?;
    for (path, pem) in opts.ca_files.iter().zip(pems) {
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            RemoteError::from(crate::shared::transport::TransportError::Ca {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })
        })?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder.build().map_err(|source| RepoError::Http {
        url: repo.to_owned(),
        attempts: 1,
        source,
    })?;
    let (creds, source) =
        crate::shared::remote::basic_credentials(&host, opts.credentials.clone())?;
    let get = |url: String| {
        let mut req = client.get(url.clone());
        // Credentials go only to the repository's own host.
        let same_host = reqwest::Url::parse(&url).is_ok_and(|u| u.host_str() == base.host_str());
        if let (Some((u, p)), true) = (&creds, same_host) {
            req = req.basic_auth(u, Some(p));
        }
        let source = source.clone();
        async move {
            let r = req.send().await.map_err(|e| RepoError::Http {
                url: url.clone(),
                attempts: 1,
                source: e,
            })?;
            if !r.status().is_success() {
                return Err(RepoError::Status {
                    url,
                    status: r.status().as_u16(),
                    retry_after: retry_after(r.headers()),
                    attempts: 1,
                    credentials: source,
                });
            }
            Ok(r)
        }
    };

    let index_url = base
        .join("index.yaml")
        .map_err(|_| RepoError::Url(repo.to_owned()))?;
    let body = with_retries(opts, || async {
        let url = index_url.to_string();
        let mut resp = get(url.clone()).await?;
        let too_large = |content_length| RepoError::TooLarge {
            url: url.clone(),
            what: "index.yaml",
            limit: INDEX_MAX,
            content_length,
        };
        if let Some(n) = resp.content_length().filter(|n| *n > INDEX_MAX) {
            return Err(too_large(Some(n)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|source| RepoError::Http {
            url: url.clone(),
            attempts: 1,
            source,
        })? {
            if (body.len() + chunk.len()) as u64 > INDEX_MAX {
                return Err(too_large(None));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
    .await?;
    let index = match std::str::from_utf8(&body).ok().and_then(scan_index) {
        Some(i) => i,
        None => parse_index(&body).map_err(|source| RepoError::Index {
            url: index_url.to_string(),
            source,
        })?,
    };
    let Some(versions) = index.entries.get(name) else {
        let mut similar: Vec<&String> = index.entries.keys().collect();
        similar.sort_by_key(|k| std::cmp::Reverse(common_prefix(k, name)));
        return Err(RepoError::UnknownChart {
            repo: repo.to_owned(),
            name: name.to_owned(),
            similar: similar.into_iter().take(5).cloned().collect(),
        });
    };
    let entry = choose(versions, constraint).map_err(|reason| RepoError::Constraint {
        name: name.to_owned(),
        constraint: constraint.to_owned(),
        reason,
    })?;
    let Some(entry) = entry else {
        let mut all: Vec<(semver::Version, &str)> = versions
            .iter()
            .filter_map(|e| Some((parse_version(&e.version)?, e.version.as_str())))
            .collect();
        all.sort();
        return Err(RepoError::NoVersion {
            repo: repo.to_owned(),
            name: name.to_owned(),
            constraint: constraint.to_owned(),
            available: all
                .iter()
                .rev()
                .take(5)
                .map(|(_, v)| v.to_string())
                .collect(),
        });
    };
    let Some(first) = entry.urls.first() else {
        return Err(RepoError::NoUrl {
            repo: repo.to_owned(),
            name: name.to_owned(),
            version: entry.version.clone(),
        });
    };
    let url = base
        .join(first)
        .map_err(|_| RepoError::Url(first.clone()))?
        .to_string();
    let store_err = |source| RepoError::Store {
        name: name.to_owned(),
        version: entry.version.clone(),
        url: url.clone(),
        source,
    };
    let expected = entry
        .digest
        .as_deref()
        .and_then(|d| Digest::from_hex(d.trim_start_matches("sha256:")).ok());
    // Streamed into the cache by a blocking writer that hashes as it goes;
    // a broken body is retried from the start.
    let too_large = |content_length| RepoError::TooLarge {
        url: url.clone(),
        what: "chart archive",
        limit: CHART_DOWNLOAD_MAX,
        content_length,
    };
    let (d, size) = with_retries(opts, || async {
        let mut resp = get(url.clone()).await?;
        if let Some(n) = resp.content_length().filter(|n| *n > CHART_DOWNLOAD_MAX) {
            return Err(too_large(Some(n)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let root = cache.to_owned();
        let writer = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader::new(rx, Default::default());
            Store::create_cache(&root)?.put(reader, None, "")
        });
        let mut broken = None;
        let mut over = false;
        let mut received = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) if received + c.len() as u64 > CHART_DOWNLOAD_MAX => {
                    over = true;
                    Err(std::io::Error::other("the download is over the limit"))
                }
                Ok(Some(c)) => {
                    received += c.len() as u64;
                    Ok(c)
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    Err(std::io::Error::other("the download broke off"))
                }
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        let stored = writer
            .await
            .map_err(|e| store_err(LayoutError::Io(std::io::Error::other(e))));
        if let Some(source) = broken {
            return Err(RepoError::Http {
                url: url.clone(),
                attempts: 1,
                source,
            });
        }
        if over {
            return Err(too_large(None));
        }
        stored?.map_err(store_err)
    })
    .await?;
    let store = Store::create_cache(cache).map_err(store_err)?;
    if let Some(want) = expected.filter(|w| *w != d) {
        let _ = fs_err::remove_file(store.blob_path(&d));
        return Err(store_err(LayoutError::Mismatch(Mismatch {
            digest: want,
            size,
            actual: d,
            actual_size: size,
            from: url.clone(),
        })));
    }
    let record = Record {
        source: Source::helm_repo(repo, name, &entry.version),
        digest: d,
        media_type: crate::format::oci::HELM_CHART.to_owned(),
        size,
        platforms: None,
        last_used: crate::connected::cache::now(),
    };
    crate::connected::cache::write_record(cache, &record)?;
    Ok(FetchedChart {
        path: store.blob_path(&d),
        version: entry.version.clone(),
        digest: d,
    })
}

/// Reads the parts of `index.yaml` ferry needs (each chart's versions,
/// URLs and digests) line by line, for the block layout Helm writes. Keys
/// are recognised only at the indentation of an entry's fields, where YAML
/// cannot be inside a multi-line value. Anything unexpected (tabs, flow
/// style, escapes, odd nesting) gives `None`, and the full parser reads
/// the index instead.
fn scan_index(text: &str) -> Option<Index> {
    let mut index = Index {
        entries: Default::default(),
    };
    let mut in_entries = false;
    let mut chart_indent: Option<usize> = None;
    let mut chart: Option<String> = None;
    let mut dash_indent: Option<usize> = None;
    let mut field_indent = 0;
    let mut entry: Option<IndexEntry> = None;
    let mut in_urls = false;
    let finish =
        |index: &mut Index, chart: &Option<String>, entry: &mut Option<IndexEntry>| -> Option<()> {
            if let Some(e) = entry.take() {
                if e.version.is_empty() {
                    return None;
                }
                index.entries.get_mut(chart.as_ref()?)?.push(e);
            }
            Some(())
        };
    for raw in text.strip_prefix('\u{feff}').unwrap_or(text).split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = line[indent..].trim_end_matches(' ');
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if rest.starts_with('\t') {
            return None;
        }
        if indent == 0 {
            finish(&mut index, &chart, &mut entry)?;
            in_urls = false;
            in_entries = rest == "entries:";
            if !in_entries && rest.starts_with("entries:") && rest != "entries: {}" {
                return None;
            }
            continue;
        }
        if !in_entries {
            continue;
        }
        let ci = *chart_indent.get_or_insert(indent);
        let dash = rest.starts_with("- ") || rest == "-";
        if indent == ci && !dash {
            finish(&mut index, &chart, &mut entry)?;
            in_urls = false;
            let (k, v) = rest.split_once(':')?;
            if !(v.is_empty() || v.trim() == "[]") {
                return None;
            }
            let name = unquote(k)?;
            index.entries.entry(name.clone()).or_default();
            chart = Some(name);
            dash_indent = None;
            continue;
        }
        chart.as_ref()?;
        if dash && in_urls && indent >= field_indent && dash_indent.is_some_and(|d| indent != d) {
            entry.as_mut()?.urls.push(unquote(rest[1..].trim())?);
            continue;
        }
        if dash && dash_indent.is_none_or(|d| d == indent) && indent >= ci {
            finish(&mut index, &chart, &mut entry)?;
            dash_indent = Some(indent);
            let after = &rest[1..];
            let pad = after.len() - after.trim_start_matches(' ').len();
            field_indent = indent + 1 + pad;
            entry = Some(IndexEntry {
                version: String::new(),
                urls: Vec::new(),
                digest: None,
            });
            in_urls = false;
            field(entry.as_mut()?, after.trim_start(), &mut in_urls)?;
            continue;
        }
        if indent == field_indent && !dash {
            in_urls = false;
            field(entry.as_mut()?, rest, &mut in_urls)?;
            continue;
        }
        if indent == field_indent && dash {
            continue; // an item of another field's list (`dependencies:`)
        }
        if indent > field_indent {
            if in_urls && dash {
                entry.as_mut()?.urls.push(unquote(rest[1..].trim())?);
            }
            continue; // nested content of another field
        }
        return None;
    }
    finish(&mut index, &chart, &mut entry)?;
    Some(index)
}

/// One `key: value` field of an index entry.
fn field(e: &mut IndexEntry, kv: &str, in_urls: &mut bool) -> Option<()> {
    let (k, v) = match kv.split_once(": ") {
        Some((k, v)) => (k, v.trim()),
        None => (kv.strip_suffix(':')?, ""),
    };
    match k {
        "version" => e.version = unquote(v)?,
        "digest" => e.digest = Some(unquote(v)?),
        "urls" if v.is_empty() => *in_urls = true,
        "urls" => {
            let inner = v.strip_prefix('[')?.strip_suffix(']')?;
            for u in inner.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                e.urls.push(unquote(u)?);
            }
        }
        _ => {}
    }
    Some(())
}

/// A single-line scalar's value; `None` for what needs the full parser.
fn unquote(v: &str) -> Option<String> {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return (!inner.contains('\\')).then(|| inner.to_owned());
    }
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Some(inner.replace("''", "'"));
    }
    if v.is_empty()
        || v.starts_with(['&', '*', '!', '|', '>', '{', '[', '"', '\''])
        || v.contains(" #")
    {
        return None;
    }
    Some(v.to_owned())
}

/// Parses `index.yaml`. Real indexes hold millions of nodes, so the parser's
/// node and event budgets scale with the input (one per 4 bytes, which a
/// YAML node cannot be smaller than); the other limits (aliases, depth)
/// stay at their defaults.
fn parse_index(bytes: &[u8]) -> Result<Index, serde_saphyr::Error> {
    let n = (bytes.len() / 4).max(1_000_000);
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = n;
    budget.max_events = 2 * n;
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    serde_saphyr::from_slice_with_options(bytes, opts)
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// The highest of `versions` that `constraint` matches, by the rule
/// [`fetch_chart`] chooses from an index with (`prune --keep` asks it of
/// the versions the cache recorded).
pub(crate) fn highest_match<'v>(
    versions: &[&'v str],
    constraint: &str,
) -> Result<Option<&'v str>, String> {
    let entries: Vec<IndexEntry> = versions
        .iter()
        .map(|v| IndexEntry {
            version: (*v).to_owned(),
            urls: Vec::new(),
            digest: None,
        })
        .collect();
    let chosen = choose(&entries, constraint)?;
    Ok(chosen.and_then(|e| versions.iter().copied().find(|v| *v == e.version)))
}

/// The highest version matching `constraint`.
fn choose<'e>(
    versions: &'e [IndexEntry],
    constraint: &str,
) -> Result<Option<&'e IndexEntry>, String> {
    let constraint = Constraint::parse(constraint)?;
    Ok(versions
        .iter()
        .filter_map(|e| Some((parse_version(&e.version)?, e)))
        .filter(|(v, _)| constraint.matches(v))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, e)| e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::RETRY_AFTER, v.parse().unwrap());
            retry_after(&m)
        };
        assert_eq!(h("7"), Some(Duration::from_secs(7)));
        assert_eq!(h(" 0 "), Some(Duration::ZERO));
        assert_eq!(h("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        let w = h(&later).unwrap();
        assert!(
            w > Duration::from_secs(80) && w <= Duration::from_secs(90),
            "{w:?}"
        );
        assert_eq!(h("soon"), None);
        assert_eq!(h("-5"), None);
        assert_eq!(retry_after(&http::HeaderMap::new()), None);
    }

    #[test]
    fn server_errors_throttling_and_timeouts_are_retried_with_the_wait_asked() {
        let status = |code, wait| RepoError::Status {
            url: "u".into(),
            status: code,
            retry_after: wait,
            attempts: 1,
            credentials: "none".into(),
        };
        assert_eq!(status(429, None).retry(), Attempt::Retry(None));
        assert_eq!(status(408, None).retry(), Attempt::Retry(None));
        let w = Some(Duration::from_secs(3));
        assert_eq!(status(503, w).retry(), Attempt::Retry(w));
        // A wait over the limit is passed on: the shared retry loop
        // (transport::retrying) ends at once on it.
        let long = Some(MAX_RETRY_AFTER + Duration::from_secs(1));
        assert_eq!(status(429, long).retry(), Attempt::Retry(long));
        assert_eq!(status(404, None).retry(), Attempt::Stop);
        assert_eq!(status(401, w).retry(), Attempt::Stop);
    }

    fn entries(vs: &[&str]) -> Vec<IndexEntry> {
        vs.iter()
            .map(|v| IndexEntry {
                version: (*v).into(),
                urls: vec![],
                digest: None,
            })
            .collect()
    }

    fn pick(vs: &[&str], c: &str) -> Option<String> {
        choose(&entries(vs), c).unwrap().map(|e| e.version.clone())
    }

    fn index_text() -> String {
        let mut s = String::from("apiVersion: v1\nentries:\n");
        for c in 0..3 {
            s.push_str(&format!("  chart-{c}:\n"));
            for v in 0..4 {
                s.push_str(&format!(
                    "  - annotations:\n      category: Database\n      licenses: Apache-2.0\n    apiVersion: v2\n    created: \"2024-01-01T00:00:00Z\"\n    dependencies:\n    - name: common\n      version: 2.x.x\n    description: |\n      version: 9.9.9 (not a field)\n      text\n    digest: {c}{v}ab\n    name: chart-{c}\n    urls:\n    - https://example.com/chart-{c}-1.{v}.0.tgz\n    - 'mirror/chart-{c}-1.{v}.0.tgz'\n    version: \"1.{v}.0\"\n"
                ));
            }
        }
        s.push_str("  empty: []\ngenerated: \"2026-01-01T00:00:00Z\"\nserverInfo: {}\n");
        s
    }

    #[test]
    fn index_scanner_agrees_with_the_parser() {
        let text = index_text();
        let fast = scan_index(&text).expect("the scanner reads Helm's layout");
        let slow = parse_index(text.as_bytes()).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(fast.entries["chart-1"][2].version, "1.2.0");
        assert_eq!(fast.entries["chart-1"][2].urls.len(), 2);
        // Indented lists (`entries:` items deeper than the names) too.
        let deeper = text
            .replace("\n  - ", "\n    - ")
            .replace("\n    ", "\n      ");
        if let Some(f) = scan_index(&deeper) {
            assert_eq!(f, parse_index(deeper.as_bytes()).unwrap());
        }
        // Escapes and flow style go to the parser.
        assert!(scan_index("entries:\n  a:\n  - version: \"1\\u0030\"\n").is_none());
        assert!(scan_index("entries: {a: [{version: 1}]}\n").is_none());
    }

    #[test]
    fn index_scanner_survives_garbage() {
        let alphabet: Vec<char> = " \n-:#'\"{}[]ab1.eé".chars().collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20000 {
            let mut doc = String::from("entries:\n");
            for _ in 0..(seed % 80) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                doc.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = scan_index(&doc);
            let _ = Constraint::parse(&doc);
        }
    }

    #[test]
    fn helm_constraints() {
        let vs = [
            "18.0.0",
            "18.1.0",
            "18.1.5",
            "18.2.0-rc.1",
            "19.0.0",
            "v17.3.1",
        ];
        assert_eq!(pick(&vs, "18.1.0").as_deref(), Some("18.1.0"));
        assert_eq!(pick(&vs, "^18.1").as_deref(), Some("18.1.5"));
        assert_eq!(pick(&vs, "~18.1.0").as_deref(), Some("18.1.5"));
        assert_eq!(pick(&vs, ">=18.0.0 <19").as_deref(), Some("18.1.5"));
        assert_eq!(pick(&vs, ">= 18.0.0, < 19.0.0").as_deref(), Some("18.1.5"));
        assert_eq!(pick(&vs, "18.1.x").as_deref(), Some("18.1.5"));
        assert_eq!(pick(&vs, "*").as_deref(), Some("19.0.0"));
        assert_eq!(pick(&vs, "17.3.1").as_deref(), Some("v17.3.1"));
        assert_eq!(pick(&vs, "17.0.0 - 18.0.0").as_deref(), Some("18.0.0"));
        assert_eq!(pick(&vs, "^17 || ^19").as_deref(), Some("19.0.0"));
        // Pre-releases only when named.
        assert_eq!(pick(&vs, ">=18.2.0-rc.0").as_deref(), Some("19.0.0"));
        assert_eq!(pick(&vs, "18.2.0-rc.1").as_deref(), Some("18.2.0-rc.1"));
        assert_eq!(pick(&vs, "^20"), None);
        assert!(choose(&entries(&vs), ">>1").is_err());
    }
}
