//! Classic Helm chart repositories: reading `index.yaml`, choosing a
//! version by Helm's constraint rules, and downloading the chart archive
//! into the fetch cache, checked against the index's digest.
//!
//! Version constraints follow Helm (Masterminds semver): an exact version,
//! `^1.2`, `~1.2.3`, `>=1.2 <2`, `1.2.x`, `*`, ranges `1.2 - 1.4`, and
//! alternatives with `||`. Pre-releases are chosen only when the constraint
//! names one. Plain HTTP is allowed only for loopback hosts and hosts the
//! caller names as insecure.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::digest::Digest;
use crate::layout::{LayoutError, Store};
use crate::remote::{is_loopback, RemoteError, RemoteOptions};

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
    #[error("fetching {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("fetching {url} failed: the server answered {status}{}", auth_hint(*status, credentials))]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Where credentials came from.
        credentials: String,
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

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    entries: std::collections::BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Deserialize)]
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
    /// Where it came from.
    pub url: String,
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
        "http" if is_loopback(&host) || opts.insecure.contains(&host) => {}
        "http" => return Err(RepoError::PlainHttp(repo.to_owned())),
        _ => return Err(RepoError::Url(repo.to_owned())),
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120))
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(opts.tls_skip_verify);
    for path in &opts.ca_files {
        let pem = fs_err::read(path).map_err(|source| RemoteError::Ca {
            path: path.clone(),
            source,
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| RemoteError::Ca {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder.build().map_err(|source| RepoError::Http {
        url: repo.to_owned(),
        source,
    })?;
    let (creds, source) = crate::remote::basic_credentials(&host, opts.credentials.clone())?;
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
                source: e,
            })?;
            if !r.status().is_success() {
                return Err(RepoError::Status {
                    url,
                    status: r.status().as_u16(),
                    credentials: source,
                });
            }
            Ok(r)
        }
    };

    let index_url = base
        .join("index.yaml")
        .map_err(|_| RepoError::Url(repo.to_owned()))?;
    let body = get(index_url.to_string())
        .await?
        .bytes()
        .await
        .map_err(|source| RepoError::Http {
            url: index_url.to_string(),
            source,
        })?;
    let index = parse_index(&body).map_err(|source| RepoError::Index {
        url: index_url.to_string(),
        source,
    })?;
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
    let bytes = get(url.clone())
        .await?
        .bytes()
        .await
        .map_err(|source| RepoError::Http {
            url: url.clone(),
            source,
        })?;
    let expected = entry
        .digest
        .as_deref()
        .and_then(|d| Digest::from_hex(d.trim_start_matches("sha256:")).ok())
        .map(|d| (d, bytes.len() as u64));
    let store_err = |source| RepoError::Store {
        name: name.to_owned(),
        version: entry.version.clone(),
        url: url.clone(),
        source,
    };
    let store = Store::create_cache(cache).map_err(store_err)?;
    let (d, _) = store.put(&bytes[..], expected).map_err(store_err)?;
    Ok(FetchedChart {
        path: store.blob_path(&d),
        version: entry.version.clone(),
        url,
    })
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

/// A version as semver, tolerating Helm's leading `v` and short forms.
fn parse_version(v: &str) -> Option<semver::Version> {
    let v = v.trim().trim_start_matches('v');
    semver::Version::parse(v).ok().or_else(|| {
        let (core, rest) = match v.find(['-', '+']) {
            Some(i) => v.split_at(i),
            None => (v, ""),
        };
        let parts = core.split('.').count();
        let padded = match parts {
            1 => format!("{core}.0.0{rest}"),
            2 => format!("{core}.0{rest}"),
            _ => return None,
        };
        semver::Version::parse(&padded).ok()
    })
}

/// Helm's constraint syntax as `semver` requirements (one per `||`
/// alternative).
fn requirements(constraint: &str) -> Result<Vec<semver::VersionReq>, String> {
    let mut out = Vec::new();
    for alt in constraint.split("||") {
        let alt = alt.trim();
        if alt.is_empty() || alt == "*" || alt == "x" {
            out.push(semver::VersionReq::STAR);
            continue;
        }
        // Hyphen range: `1.2 - 1.4`.
        let comparators: Vec<String> = if let Some((lo, hi)) = alt.split_once(" - ") {
            vec![format!(">={}", lo.trim()), format!("<={}", hi.trim())]
        } else {
            // Join an operator to the version after it (`>= 1.2`).
            let mut parts: Vec<String> = Vec::new();
            for tok in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
                match parts.last_mut() {
                    Some(last)
                        if matches!(
                            last.as_str(),
                            ">" | ">=" | "<" | "<=" | "=" | "~" | "^" | "!="
                        ) =>
                    {
                        last.push_str(tok);
                    }
                    _ => parts.push(tok.to_owned()),
                }
            }
            parts
        };
        let fixed: Vec<String> = comparators
            .into_iter()
            .map(|c| {
                let c = c.replace(".x", ".*").replace(".X", ".*");
                let op_len = c.len() - c.trim_start_matches(['>', '<', '=', '~', '^', '!']).len();
                let (op, v) = c.split_at(op_len);
                let v = v.trim_start_matches('v');
                if op.is_empty() && !v.contains('*') {
                    // A bare version is exact in Helm (caret in `semver`).
                    format!("={v}")
                } else {
                    format!("{op}{v}")
                }
            })
            .collect();
        if fixed.iter().any(|c| c.starts_with("!=")) {
            return Err("`!=` is not supported".into());
        }
        out.push(semver::VersionReq::parse(&fixed.join(", ")).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The highest version matching `constraint`.
fn choose<'e>(
    versions: &'e [IndexEntry],
    constraint: &str,
) -> Result<Option<&'e IndexEntry>, String> {
    let reqs = requirements(constraint)?;
    Ok(versions
        .iter()
        .filter_map(|e| Some((parse_version(&e.version)?, e)))
        .filter(|(v, _)| reqs.iter().any(|r| r.matches(v)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, e)| e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
