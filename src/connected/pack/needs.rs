//! What a spec needs from the fetch cache, resolved from the cache's
//! records alone, with no network (for `ferry cache prune --keep`). A
//! registry image or OCI chart is found by its reference, so a tag means
//! what the cache recorded for it; an image with a tag rule (`tags:`)
//! keeps the recorded tags of its repository that the rule chooses. A Helm repository chart is the highest
//! recorded version its constraint matches, by the rule `helm_repo`
//! chooses from an index with. A chart with `images: true` needs the
//! images it names, read from the chart in the cache (or on disk, for a
//! `path:` chart). Local image sources and files need nothing from the
//! cache.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::base::reference::Reference;
use crate::connected::cache::{Record, Source};
use crate::connected::inputs::{ChartEntry, ImageSource, Spec};
use crate::format::oci;

/// What a spec needs from the cache.
#[derive(Debug, Clone, Default)]
pub struct CacheNeeds {
    /// The records it needs.
    pub keep: BTreeSet<Source>,
    /// Spec entries the cache holds no record for, or whose chart could
    /// not be read for the images it names: one line each.
    pub unknown: Vec<String>,
}

/// Resolves `spec` against `records` (those of the cache at `cache`).
pub fn cache_needs(spec: &Spec, cache: &Path, records: &[&Record]) -> CacheNeeds {
    let by_reference: HashMap<&str, &Record> = records
        .iter()
        .filter_map(|r| match &r.source {
            Source::Registry { reference } => Some((reference.as_str(), *r)),
            Source::HelmRepo { .. } => None,
        })
        .collect();
    let mut needs = CacheNeeds::default();
    // A digest reference is met by its own record, or by any record of
    // the same repository that resolved to that digest.
    let by_digest: HashMap<(String, Digest), &Record> = records
        .iter()
        .filter_map(|r| match &r.source {
            Source::Registry { reference } => {
                let name = reference.parse::<Reference>().ok()?.name();
                Some(((name, r.digest), *r))
            }
            Source::HelmRepo { .. } => None,
        })
        .collect();
    let want = |needs: &mut CacheNeeds, r: &Reference, what: String| -> Option<Record> {
        let found = by_reference
            .get(r.to_string().as_str())
            .or_else(|| r.digest().and_then(|d| by_digest.get(&(r.name(), d))));
        match found {
            Some(rec) => {
                needs.keep.insert(rec.source.clone());
                Some((*rec).clone())
            }
            None => {
                needs
                    .unknown
                    .push(format!("{what}: the cache holds no record of it"));
                None
            }
        }
    };
    let mut listed: HashSet<String> = HashSet::new();
    for e in &spec.images {
        let ImageSource::Registry(r) = &e.source else {
            continue;
        };
        let Some(rule) = &e.tags else {
            listed.insert(r.to_string());
            want(&mut needs, r, format!("image {r}"));
            continue;
        };
        // A tag rule chooses among the tags the cache recorded for the
        // repository, as it would among the registry's.
        let name = r.name();
        let recorded: Vec<(String, &Record)> = records
            .iter()
            .filter_map(|rec| match &rec.source {
                Source::Registry { reference } => {
                    let parsed = reference.parse::<Reference>().ok()?;
                    if parsed.name() != name {
                        return None;
                    }
                    Some((parsed.tag()?.to_owned(), *rec))
                }
                Source::HelmRepo { .. } => None,
            })
            .collect();
        let mut tags: Vec<String> = recorded.iter().map(|(t, _)| t.clone()).collect();
        tags.sort();
        tags.dedup();
        match crate::connected::tags::select(&e.label(), rule, &tags) {
            Ok(chosen) => {
                for (t, rec) in &recorded {
                    if chosen.contains(t) {
                        listed.insert(format!("{name}:{t}"));
                        needs.keep.insert(rec.source.clone());
                    }
                }
            }
            Err(why) => needs.unknown.push(format!(
                "{} (the cache's records): {}",
                e.label(),
                error_chain(&why)
            )),
        }
    }
    // Charts whose images the spec carries too: (the chart, its label).
    let mut with_images: Vec<(PathBuf, String)> = Vec::new();
    for c in &spec.charts {
        match c {
            ChartEntry::Oci {
                reference,
                version,
                images,
            } => {
                let r = match super::oci_chart_reference(reference, version) {
                    Ok(r) => r,
                    Err(e) => {
                        needs.unknown.push(error_chain(&e));
                        continue;
                    }
                };
                let label = format!("chart {r}");
                let Some(rec) = want(&mut needs, &r, label.clone()) else {
                    continue;
                };
                if *images {
                    match chart_layer(cache, &rec) {
                        Ok(path) => with_images.push((path, label)),
                        Err(why) => needs.unknown.push(format!("{label}: {why}")),
                    }
                }
            }
            ChartEntry::Repo {
                repo,
                name,
                version,
                images,
            } => {
                let recorded: Vec<(&str, &Record)> = records
                    .iter()
                    .filter_map(|r| match &r.source {
                        Source::HelmRepo { version: v, .. }
                            if r.source == Source::helm_repo(repo, name, v) =>
                        {
                            Some((v.as_str(), *r))
                        }
                        _ => None,
                    })
                    .collect();
                let versions: Vec<&str> = recorded.iter().map(|(v, _)| *v).collect();
                let label = format!("chart {name} {version:?} from {repo}");
                let chosen = match crate::connected::helm_repo::highest_match(&versions, version) {
                    Ok(v) => v,
                    Err(why) => {
                        needs.unknown.push(format!(
                            "{label}: the version constraint is not valid ({why})"
                        ));
                        continue;
                    }
                };
                let Some(rec) = chosen.and_then(|v| recorded.iter().find(|(rv, _)| *rv == v))
                else {
                    needs.unknown.push(format!(
                        "{label}: the cache holds no record of a version that matches{}",
                        match versions.is_empty() {
                            true => String::new(),
                            false => format!(" (it has {})", versions.join(", ")),
                        }
                    ));
                    continue;
                };
                needs.keep.insert(rec.1.source.clone());
                if *images {
                    with_images.push((cache.join(rec.1.digest.blob_path()), label));
                }
            }
            ChartEntry::Path { path, images } => {
                if *images {
                    with_images.push((path.clone(), format!("chart {}", path.display())));
                }
            }
        }
    }
    for (path, label) in with_images {
        let found = match crate::connected::chart::chart_images(&path) {
            Ok(f) => f,
            Err(e) => {
                needs.unknown.push(format!(
                    "{label}: cannot read the images it names: {}",
                    error_chain(&e)
                ));
                continue;
            }
        };
        for img in found {
            // As pack does: what does not parse is not carried.
            let Ok(r) = img.reference.parse::<Reference>() else {
                continue;
            };
            if listed.insert(r.to_string()) {
                let what = format!("image {r} (named by {label}: {})", img.origin);
                want(&mut needs, &r, what);
            }
        }
    }
    needs
}

/// The chart archive (layer) of an OCI chart in the cache.
fn chart_layer(cache: &Path, rec: &Record) -> Result<PathBuf, String> {
    let bytes = std::fs::read(cache.join(rec.digest.blob_path()))
        .map_err(|e| format!("cannot read its manifest {} in the cache: {e}", rec.digest))?;
    match oci::parse_node(rec.digest, &rec.media_type, &bytes) {
        Ok(oci::Node::Manifest(m)) => m
            .layers
            .iter()
            .find(|l| l.media_type == oci::HELM_CHART)
            .map(|l| cache.join(l.digest.blob_path()))
            .ok_or_else(|| format!("its manifest has no {} layer", oci::HELM_CHART)),
        Ok(oci::Node::Index(_)) => Err("it is an index, not a chart".into()),
        Err(e) => Err(error_chain(&e)),
    }
}
