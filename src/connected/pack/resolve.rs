//! Resolving: what must come over the network before anything is
//! planned. Registry images and OCI charts are fetched into the verified
//! cache (their roots keyed by spec entry), charts from Helm repositories
//! are downloaded, and the images a chart names are found and fetched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::runtime::Handle;

use crate::base::digest::Digest;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::base::report::Reporter;
use crate::connected::chart::{self, ChartError};
use crate::connected::fetch::{FetchCounts, FetchOptions, FetchRequest};
use crate::connected::inputs::{ChartEntry, ImageEntry, ImageSource, Spec};
use crate::connected::referrers::Found;
use crate::format::oci::{self, Descriptor};

use super::plan::{plan_image, plan_referrers, Plan};
use super::{oci_chart_reference, EntryId, PackError, PackOptions};

/// What the fetch of the spec's entries gave: each entry's root in the
/// cache, the referrers found for it, and the counts.
pub(super) struct Fetched {
    pub(super) roots: BTreeMap<EntryId, Descriptor>,
    pub(super) referrers: BTreeMap<EntryId, Vec<Found>>,
    pub(super) counts: Option<FetchCounts>,
}

/// Whether an image entry's referrers are looked for: not with
/// `--no-referrers`, else the entry's `referrers:`, else the spec's, else
/// yes.
pub(super) fn wants_referrers(spec: &Spec, opts: &PackOptions, entry: Option<&ImageEntry>) -> bool {
    opts.referrers
        && entry
            .and_then(|e| e.referrers)
            .or(spec.referrers)
            .unwrap_or(true)
}

/// Fetches the spec's registry images and OCI charts into the cache;
/// returns each one's root descriptor by spec entry.
pub(super) fn fetch_registry_images(
    spec: &Spec,
    opts: &PackOptions,
    rt: &Handle,
    filter_of: &dyn Fn(&ImageEntry) -> Option<Vec<Platform>>,
    pins: &[Option<Digest>],
    reporter: &dyn Reporter,
) -> Result<Fetched, PackError> {
    let wanted: Vec<(EntryId, FetchRequest)> = spec
        .images
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.source {
            ImageSource::Registry(r) => Some((
                EntryId::Image(i),
                FetchRequest {
                    // A locked image is fetched by its digest (the name it
                    // is carried under stays the entry's).
                    reference: match (pins.get(i).copied().flatten(), r.digest()) {
                        (Some(d), None) => format!("{r}@{d}").parse().unwrap_or_else(|_| r.clone()),
                        _ => r.clone(),
                    },
                    platforms: filter_of(e),
                    referrers: wants_referrers(spec, opts, Some(e)),
                },
            )),
            _ => None,
        })
        .collect();
    let mut wanted = wanted;
    for (j, c) in spec.charts.iter().enumerate() {
        if let ChartEntry::Oci {
            reference, version, ..
        } = c
        {
            wanted.push((
                EntryId::Chart(j),
                FetchRequest {
                    reference: oci_chart_reference(reference, version)?,
                    platforms: None,
                    referrers: wants_referrers(spec, opts, None),
                },
            ));
        }
    }
    if wanted.is_empty() {
        return Ok(Fetched {
            roots: BTreeMap::new(),
            referrers: BTreeMap::new(),
            counts: None,
        });
    }
    let Some(fopts) = &opts.fetch else {
        return Err(PackError::Remote {
            entry: wanted[0].1.reference.to_string(),
        });
    };
    let requests: Vec<FetchRequest> = wanted.iter().map(|(_, r)| r.clone()).collect();
    let report = run_fetch(&requests, fopts, rt, reporter)?;
    let mut roots = BTreeMap::new();
    let mut referrers = BTreeMap::new();
    let mut failures = Vec::new();
    let mut found = report.referrers.into_iter();
    for ((i, req), result) in wanted.iter().zip(report.results) {
        let found = found.next().unwrap_or_default();
        match result {
            Ok(root) => {
                roots.insert(*i, root);
                referrers.insert(*i, found);
            }
            Err(why) => failures.push((req.reference.to_string(), why)),
        }
    }
    if !failures.is_empty() {
        return Err(PackError::Fetch {
            cache: fopts.cache.clone(),
            total: wanted.len(),
            failures,
        });
    }
    Ok(Fetched {
        roots,
        referrers,
        counts: Some(report.counts),
    })
}

/// Runs the fetcher to completion.
pub(super) fn run_fetch(
    requests: &[FetchRequest],
    fopts: &FetchOptions,
    rt: &Handle,
    reporter: &dyn Reporter,
) -> Result<crate::connected::fetch::FetchReport, PackError> {
    rt.block_on(crate::connected::fetch::fetch(requests, fopts, reporter))
        .map_err(|e| PackError::Fetcher(Box::new(e)))
}

/// The chart archive inside an OCI chart in the cache.
pub(super) fn oci_chart_layer(
    f: &FetchOptions,
    root: &Descriptor,
    label: &str,
) -> Result<PathBuf, PackError> {
    let bytes = fs_err::read(f.cache.join(root.digest.blob_path())).map_err(|e| {
        PackError::ChartImages {
            entry: label.to_owned(),
            source: ChartError::Io(e),
        }
    })?;
    match oci::parse_node(root.digest, &root.media_type, &bytes) {
        Ok(oci::Node::Manifest(m)) => m
            .layers
            .iter()
            .find(|l| l.media_type == oci::HELM_CHART)
            .map(|l| f.cache.join(l.digest.blob_path()))
            .ok_or_else(|| PackError::NotChart {
                entry: label.to_owned(),
                what: format!("it has no {} layer", oci::HELM_CHART),
            }),
        _ => Err(PackError::NotChart {
            entry: label.to_owned(),
            what: "it is not an artifact manifest".into(),
        }),
    }
}

/// Each image charts name, as (reference, where it was found), and what
/// fetching them counted.
pub(super) type ChartImages = (Vec<(String, String)>, Option<FetchCounts>);

/// The images a spec lists by name (registry references, and the names
/// given to local sources): an image a chart names that is among them is
/// not carried twice.
pub fn listed_images(spec: &Spec) -> std::collections::HashSet<String> {
    spec.images
        .iter()
        .filter_map(|e| match &e.source {
            ImageSource::Registry(r) => Some(r.to_string()),
            _ => e.name.as_ref().map(|n| n.to_string()),
        })
        .collect()
}

/// Fetches and plans the images named by charts with `images: true`
/// (those the spec does not list already); returns (reference, origin) for
/// each, and what that fetch counted.
pub(super) fn plan_chart_images(
    plan: &mut Plan,
    spec: &Spec,
    opts: &PackOptions,
    rt: &Handle,
    charts: &[(PathBuf, String)],
    filter_of: &dyn Fn(&ImageEntry) -> Option<Vec<Platform>>,
    reporter: &dyn Reporter,
) -> Result<ChartImages, PackError> {
    let listed = listed_images(spec);
    let mut wanted: Vec<(Reference, String)> = Vec::new();
    let mut report = Vec::new();
    for (path, label) in charts {
        let found = chart::chart_images(path).map_err(|source| PackError::ChartImages {
            entry: label.clone(),
            source,
        })?;
        for img in found {
            let origin = format!("{label}: {}", img.origin);
            let Ok(r) = img.reference.parse::<Reference>() else {
                continue;
            };
            report.push((r.to_string(), origin.clone()));
            if listed.contains(&r.to_string()) || wanted.iter().any(|(w, _)| *w == r) {
                continue;
            }
            wanted.push((r, origin));
        }
    }
    if wanted.is_empty() {
        return Ok((report, None));
    }
    let Some(fopts) = &opts.fetch else {
        return Err(PackError::Remote {
            entry: wanted[0].0.to_string(),
        });
    };
    let entries: Vec<ImageEntry> = wanted
        .iter()
        .map(|(r, _)| ImageEntry {
            source: ImageSource::Registry(r.clone()),
            platforms: None,
            name: None,
            tags: None,
            budget: None,
            referrers: None,
            verify: None,
        })
        .collect();
    let requests: Vec<FetchRequest> = entries
        .iter()
        .zip(&wanted)
        .map(|(e, (r, _))| FetchRequest {
            reference: r.clone(),
            platforms: filter_of(e),
            referrers: wants_referrers(spec, opts, Some(e)),
        })
        .collect();
    let fetched = run_fetch(&requests, fopts, rt, reporter)?;
    let counts = fetched.counts.clone();
    let mut failures = Vec::new();
    let mut roots = Vec::new();
    let mut found = fetched.referrers.into_iter();
    for ((r, origin), result) in wanted.iter().zip(fetched.results) {
        let found = found.next().unwrap_or_default();
        match result {
            Ok(root) => roots.push((root, found)),
            Err(why) => failures.push((format!("{r} (named by {origin})"), why)),
        }
    }
    if !failures.is_empty() {
        return Err(PackError::Fetch {
            cache: fopts.cache.clone(),
            total: wanted.len(),
            failures,
        });
    }
    for ((entry, (_, origin)), (root, found)) in entries.iter().zip(&wanted).zip(&roots) {
        let filter = filter_of(entry);
        plan_image(plan, entry, filter.as_deref(), Some((Some(fopts), root)))?;
        if let Some((a, _)) = plan.artifacts.last_mut() {
            a.source = format!("{} (named by {origin})", a.source);
        }
        plan_referrers(plan, found, &fopts.cache)?;
    }
    Ok((report, Some(counts)))
}

/// A chart downloaded from a repository, and how it is named in messages.
pub(super) struct RepoChart {
    pub(super) path: PathBuf,
    pub(super) label: String,
}

/// Downloads the spec's chart-repository charts into the cache, keyed by
/// their spec entry. Every failure is listed; nothing is written when one fails.
pub(super) fn fetch_repo_charts(
    spec: &Spec,
    opts: &PackOptions,
    rt: &Handle,
    pins: &[Option<Digest>],
    reporter: &dyn Reporter,
) -> Result<BTreeMap<EntryId, RepoChart>, PackError> {
    let wanted: Vec<(usize, &str, &str, &str)> = spec
        .charts
        .iter()
        .enumerate()
        .filter_map(|(j, c)| match c {
            ChartEntry::Repo {
                repo,
                name,
                version,
                ..
            } => Some((j, repo.as_str(), name.as_str(), version.as_str())),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Some(fopts) = &opts.fetch else {
        return Err(PackError::Remote {
            entry: format!("chart {} from {}", wanted[0].2, wanted[0].1),
        });
    };
    reporter.start("fetching charts", 0);
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for &(j, repo, name, version) in &wanted {
            let r = crate::connected::helm_repo::fetch_chart(
                repo,
                name,
                version,
                &fopts.cache,
                &fopts.remote,
            )
            .await;
            out.push((j, repo, name, r));
        }
        out
    });
    reporter.finish();
    let mut charts = BTreeMap::new();
    let mut failures = Vec::new();
    for (j, repo, name, r) in results {
        match r {
            Ok(c)
                if pins
                    .get(j)
                    .copied()
                    .flatten()
                    .is_some_and(|p| p != c.digest) =>
            {
                let locked = pins.get(j).copied().flatten().unwrap_or(c.digest);
                return Err(crate::connected::lock::LockError::ChartMoved {
                    repo: repo.to_owned(),
                    name: name.to_owned(),
                    version: c.version,
                    locked,
                    now: c.digest,
                }
                .into());
            }
            Ok(c) => {
                charts.insert(
                    EntryId::Chart(j),
                    RepoChart {
                        path: c.path,
                        label: format!("chart {name} {} from {repo}", c.version),
                    },
                );
            }
            Err(e) => failures.push((
                format!("chart {name} from {repo}"),
                crate::base::error::error_chain(&e),
            )),
        }
    }
    if !failures.is_empty() {
        return Err(PackError::Fetch {
            cache: fopts.cache.clone(),
            total: wanted.len(),
            failures,
        });
    }
    Ok(charts)
}
