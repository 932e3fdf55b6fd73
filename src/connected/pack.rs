//! `pack`: turns a spec into an archive. It resolves every entry into an
//! artifact (image, chart, file), collects the distinct blobs with where
//! their bytes are, builds `index.json` and `bundle.json`, orders members as
//! the archive contract requires (small JSON blobs, then large blobs, each
//! sorted by digest) and hands the plan to the archive writer.
//!
//! Local sources are read in place: nothing is copied into a cache first,
//! and the writer re-hashes every blob as it streams it into the archive.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::base::digest::Digest;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::base::report::Reporter;
use crate::connected::chart::{self, ChartError};
use crate::connected::fetch::{FetchCounts, FetchOptions, FetchRequest};
use crate::connected::inputs::{ChartEntry, FileEntry, ImageEntry, ImageSource, Spec};
use crate::connected::source::{self, FoundBlob, LocalLayout, SourceError};
use crate::format::archive::{self, ArchiveError, BlobSource, PlannedMember};
use crate::format::bundle::{
    self, Artifact, ArtifactKind, Bundle, ChartInfo, FileInfo, Member, Tool,
};
use crate::format::oci::{self, Descriptor, Index, Manifest};
use crate::shared::inventory::Inventory;

/// Errors while packing. Each names the spec entry it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// An image entry could not be resolved.
    #[error("image {entry}")]
    Image {
        /// The entry as written in the spec.
        entry: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// A chart entry could not be resolved.
    #[error("chart {entry}")]
    Chart {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: ChartError,
    },
    /// A file entry could not be read.
    #[error("file {entry}")]
    File {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file entry that is neither a regular file nor a directory.
    #[error("file {entry}: {path} is a {kind}; ferry carries regular files and directories")]
    FileKind {
        /// The entry.
        entry: String,
        /// The offending path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Chart-repository and OCI chart sources need the chart fetcher.
    #[error("{entry}: fetching charts from chart repositories and registries is not available in this build of ferry; `helm pull` the chart and name its .tgz with `path:`")]
    Remote {
        /// The entry.
        entry: String,
    },
    /// A registry artifact named as a chart is not a Helm chart.
    #[error("chart {entry}: not a Helm chart artifact: {what}")]
    NotChart {
        /// The entry.
        entry: String,
        /// What is wrong.
        what: String,
    },
    /// Some registry images could not be fetched; nothing was written.
    #[error("{} of {total} registry images and charts could not be fetched; no archive was written (what was fetched stays in the cache {}, so a re-run fetches only the rest):{}", failures.len(), cache.display(), failures.iter().map(|(r, why)| format!("\n  {r}: {why}")).collect::<String>())]
    Fetch {
        /// The cache directory.
        cache: PathBuf,
        /// How many registry images the spec names.
        total: usize,
        /// (reference, why) of each failure.
        failures: Vec<(String, String)>,
    },
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
    /// The fetcher could not start (cache directory, runtime).
    #[error("fetching registry images failed")]
    Fetcher(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The images a chart names could not be read.
    #[error("chart {entry}: cannot read the images it names")]
    ChartImages {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: ChartError,
    },
    /// The image has no usable name.
    #[error(
        "image {entry} has no name to carry it under; add `name: REGISTRY/REPO:TAG` to the entry"
    )]
    Unnamed {
        /// The entry.
        entry: String,
    },
    /// A local ref name that is not a valid reference.
    #[error(
        "image {entry}: its name {name:?} is not a valid image reference; add `name:` to the entry"
    )]
    BadName {
        /// The entry.
        entry: String,
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: crate::base::reference::ReferenceError,
    },
    /// Two entries carried under one name.
    #[error("{name} would be carried twice (by {first} and by {second}); give one of them another `name:`")]
    Collision {
        /// The shared name.
        name: String,
        /// First entry.
        first: String,
        /// Second entry.
        second: String,
    },
    /// Writing the archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A scratch directory could not be made.
    #[error("cannot create a scratch directory next to {0}")]
    Scratch(PathBuf, #[source] std::io::Error),
}

/// Settings for one pack run.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The archive to write.
    pub out: PathBuf,
    /// Platforms for every image, overriding the spec (`--platform`).
    pub platforms: Option<Vec<Platform>>,
    /// Bundle name when the spec has none.
    pub default_name: String,
    /// mtime for tar headers.
    pub mtime: u64,
    /// How to fetch registry images (cache, jobs, credentials). Needed only
    /// when the spec names registry images.
    pub fetch: Option<FetchOptions>,
    /// Sign bundle.json with this minisign secret key.
    pub sign: Option<PathBuf>,
    /// Split the archive into volumes of at most this many bytes.
    pub volume_size: Option<u64>,
    /// Make a delta: leave out the layers this inventory (with its file's
    /// digest) says the far side holds.
    pub have: Option<(Inventory, Digest)>,
    /// Compress the archive as one zstd stream at this level.
    pub compress: Option<i32>,
}

/// What a pack run produced.
#[derive(Debug, Clone)]
pub struct PackSummary {
    /// The archive path.
    pub archive: PathBuf,
    /// Its size in bytes (all volumes together).
    pub size: u64,
    /// The files written: the archive, or its volumes.
    pub files: Vec<(PathBuf, u64)>,
    /// The checksum sidecar of a split archive.
    pub sidecar: Option<PathBuf>,
    /// Its table of contents.
    pub bundle: Bundle,
    /// What was fetched from registries (when anything was).
    pub fetched: Option<FetchCounts>,
    /// Images carried because a chart with `images: true` names them:
    /// (reference, where it was found).
    pub chart_images: Vec<(String, String)>,
}

#[derive(Default)]
struct Plan {
    artifacts: Vec<(Artifact, Descriptor)>,
    blobs: BTreeMap<Digest, FoundBlob>,
    names: HashMap<String, String>,
}

impl Plan {
    fn add_blobs(&mut self, blobs: BTreeMap<Digest, FoundBlob>) {
        for (d, b) in blobs {
            self.blobs
                .entry(d)
                .and_modify(|e| e.small |= b.small)
                .or_insert(b);
        }
    }

    fn claim(&mut self, name: &str, entry: &str) -> Result<(), PackError> {
        if let Some(first) = self.names.insert(name.to_owned(), entry.to_owned()) {
            return Err(PackError::Collision {
                name: name.to_owned(),
                first,
                second: entry.to_owned(),
            });
        }
        Ok(())
    }
}

/// Packs `spec` into `opts.out`.
pub fn pack(
    spec: &Spec,
    opts: &PackOptions,
    reporter: &dyn Reporter,
) -> Result<PackSummary, PackError> {
    let out_dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // Scratch space for generated blobs (directory tars); removed on drop.
    let scratch = tempfile::Builder::new()
        .prefix(".ferry-pack-")
        .tempdir_in(&out_dir)
        .map_err(|e| PackError::Scratch(opts.out.clone(), e))?;
    let _scratch_registered = crate::base::interrupt::register(scratch.path());

    let filter_of = |entry: &ImageEntry| {
        opts.platforms
            .as_ref()
            .or(entry.platforms.as_ref())
            .or(spec.platforms.as_ref())
            .cloned()
    };
    let (fetched_roots, fetched) = fetch_registry_images(spec, opts, &filter_of, reporter)?;
    let repo_charts = fetch_repo_charts(spec, opts, reporter)?;

    let mut plan = Plan::default();
    reporter.start("resolving sources", 0);
    for (i, entry) in spec.images.iter().enumerate() {
        let filter = filter_of(entry);
        let cached = fetched_roots
            .get(&i)
            .map(|root| (opts.fetch.as_ref(), root));
        plan_image(&mut plan, entry, filter.as_deref(), cached)?;
    }
    let mut chart_files: Vec<(PathBuf, String)> = Vec::new();
    for (j, entry) in spec.charts.iter().enumerate() {
        let cached = fetched_roots
            .get(&(spec.images.len() + j))
            .and_then(|root| Some((opts.fetch.as_ref()?, root)));
        match repo_charts.get(&j) {
            Some(c) => plan_chart_file(&mut plan, &c.path, c.label.clone())?,
            None => plan_chart(&mut plan, entry, cached)?,
        }
        let wants_images = match entry {
            ChartEntry::Path { images, .. }
            | ChartEntry::Repo { images, .. }
            | ChartEntry::Oci { images, .. } => *images,
        };
        if wants_images {
            let label = plan
                .artifacts
                .last()
                .map(|(a, _)| a.source.clone())
                .unwrap_or_default();
            let path = match (entry, repo_charts.get(&j), cached) {
                (ChartEntry::Path { path, .. }, _, _) => path.clone(),
                (_, Some(c), _) => c.path.clone(),
                (_, None, Some((f, root))) => oci_chart_layer(f, root, &label)?,
                _ => continue,
            };
            chart_files.push((path, label));
        }
    }
    reporter.finish();
    let chart_images =
        plan_chart_images(&mut plan, spec, opts, &chart_files, &filter_of, reporter)?;
    reporter.start("resolving sources", 0);
    for entry in &spec.files {
        plan_file(&mut plan, entry, scratch.path(), opts.mtime)?;
    }
    reporter.finish();

    // index.json: one descriptor per artifact, in spec order.
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        artifact_type: None,
        manifests: plan
            .artifacts
            .iter()
            .map(|(a, root)| {
                let mut d = root.clone();
                d.annotations
                    .insert(oci::ANN_REF_NAME.into(), a.reference.clone());
                d
            })
            .collect(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let index_bytes = Arc::new(oci::to_bytes(&index));

    let mut members = vec![
        PlannedMember {
            path: bundle::OCI_LAYOUT_PATH.into(),
            digest: Digest::of(crate::format::layout::OCI_LAYOUT),
            size: crate::format::layout::OCI_LAYOUT.len() as u64,
            source: BlobSource::Bytes(Arc::new(crate::format::layout::OCI_LAYOUT.to_vec())),
        },
        PlannedMember {
            path: bundle::INDEX_PATH.into(),
            digest: Digest::of(&index_bytes),
            size: index_bytes.len() as u64,
            source: BlobSource::Bytes(index_bytes.clone()),
        },
    ];
    // A delta leaves out layers and contents the far side holds (same
    // digest and size); manifests, indexes and configs always travel.
    let mut delta = opts.have.as_ref().map(|(inv, digest)| bundle::Delta {
        base: inv.source.clone(),
        inventory: *digest,
        absent: Vec::new(),
    });
    if let (Some(delta), Some((inv, _))) = (&mut delta, &opts.have) {
        let held = inv.held();
        plan.blobs.retain(|d, b| {
            let Some(h) = held.get(d).filter(|h| !b.small && h.size == b.size) else {
                return true;
            };
            delta.absent.push(bundle::AbsentBlob {
                digest: *d,
                size: b.size,
                repositories: h.repositories.clone(),
            });
            false
        });
    }
    for small in [true, false] {
        for (d, b) in plan.blobs.iter().filter(|(_, b)| b.small == small) {
            members.push(PlannedMember {
                path: d.blob_path(),
                digest: *d,
                size: b.size,
                source: b.source.clone(),
            });
        }
    }

    let mut bundle = Bundle {
        format: bundle::FORMAT.into(),
        format_version: bundle::FORMAT_VERSION_BASE,
        tool: Tool {
            name: "ferry".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        name: spec
            .name
            .clone()
            .unwrap_or_else(|| opts.default_name.clone()),
        created: None,
        artifacts: plan.artifacts.into_iter().map(|(a, _)| a).collect(),
        members: members
            .iter()
            .map(|m| Member {
                path: m.path.clone(),
                digest: m.digest,
                size: m.size,
            })
            .collect(),
        volumes: None,
        delta,
    };
    if bundle.delta.is_some() {
        bundle.format_version = bundle::FORMAT_VERSION;
    }
    let form = archive::WriteForm {
        compress: opts.compress,
        volume_size: opts.volume_size,
    };
    form.plan(
        &mut bundle,
        &members,
        opts.sign.is_some(),
        opts.mtime,
        reporter,
    )?;
    let bundle_bytes = bundle.to_bytes();
    let signature = match &opts.sign {
        Some(key) => {
            let comment = format!(
                "ferry bundle {}: {} artifacts, {} members, signed at {}",
                bundle.name,
                bundle.artifacts.len(),
                bundle.members.len() + 1,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            );
            Some(crate::format::sign::sign(key, &bundle_bytes, &comment)?)
        }
        None => None,
    };
    let written = form.write(
        &opts.out,
        &bundle,
        &bundle_bytes,
        signature.as_deref(),
        &members,
        opts.mtime,
        reporter,
    )?;
    drop(scratch);
    Ok(PackSummary {
        archive: opts.out.clone(),
        size: written.size(),
        files: written.files,
        sidecar: written.sidecar,
        bundle,
        fetched,
        chart_images,
    })
}

/// Fetches the spec's registry images into the cache; returns each one's
/// root descriptor by image index.
#[allow(clippy::type_complexity)]
fn fetch_registry_images(
    spec: &Spec,
    opts: &PackOptions,
    filter_of: &dyn Fn(&ImageEntry) -> Option<Vec<Platform>>,
    reporter: &dyn Reporter,
) -> Result<(BTreeMap<usize, Descriptor>, Option<FetchCounts>), PackError> {
    let wanted: Vec<(usize, FetchRequest)> = spec
        .images
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.source {
            ImageSource::Registry(r) => Some((
                i,
                FetchRequest {
                    reference: r.clone(),
                    platforms: filter_of(e),
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
                spec.images.len() + j,
                FetchRequest {
                    reference: oci_chart_reference(reference, version)?,
                    platforms: None,
                },
            ));
        }
    }
    if wanted.is_empty() {
        return Ok((BTreeMap::new(), None));
    }
    let Some(fopts) = &opts.fetch else {
        return Err(PackError::Remote {
            entry: wanted[0].1.reference.to_string(),
        });
    };
    let requests: Vec<FetchRequest> = wanted.iter().map(|(_, r)| r.clone()).collect();
    let report = run_fetch(&requests, fopts, reporter)?;
    let mut roots = BTreeMap::new();
    let mut failures = Vec::new();
    for ((i, req), result) in wanted.iter().zip(report.results) {
        match result {
            Ok(root) => {
                roots.insert(*i, root);
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
    Ok((roots, Some(report.counts)))
}

fn plan_image(
    plan: &mut Plan,
    entry: &ImageEntry,
    filter: Option<&[Platform]>,
    fetched: Option<(Option<&FetchOptions>, &Descriptor)>,
) -> Result<(), PackError> {
    let label = entry.source.to_string();
    let image_err = |source| PackError::Image {
        entry: label.clone(),
        source,
    };
    let (layout, local_name) = match (&entry.source, fetched) {
        (ImageSource::Registry(r), Some((Some(f), _))) => {
            (LocalLayout::cache(&f.cache, r), Some(r.to_string()))
        }
        (ImageSource::Registry(_), _) => return Err(PackError::Remote { entry: label }),
        (ImageSource::OciDir { path, name }, _) => (
            LocalLayout::open_dir(path).map_err(image_err)?,
            name.clone(),
        ),
        (ImageSource::OciArchive { path, name }, _) => (
            LocalLayout::open_tar(path).map_err(image_err)?,
            name.clone(),
        ),
    };
    let local_name = local_name.as_deref();
    let root = match fetched {
        Some((_, root)) => root.clone(),
        None => layout.select(local_name).map_err(image_err)?,
    };
    let name = match (
        &entry.name,
        local_name,
        root.annotations.get(oci::ANN_REF_NAME).map(String::as_str),
    ) {
        (Some(n), _, _) => n.clone(),
        (None, Some(n), _) | (None, None, Some(n)) => {
            n.parse::<Reference>()
                .map_err(|source| PackError::BadName {
                    entry: label.clone(),
                    name: n.to_owned(),
                    source,
                })?
        }
        (None, None, None) => return Err(PackError::Unnamed { entry: label }),
    };
    let reference = name.to_string();
    plan.claim(&reference, &label)?;
    let walked = source::walk_image(&layout, &root, filter, &reference).map_err(image_err)?;
    let size = walked.blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::Image,
            source: label,
            reference,
            digest: walked.root.digest,
            media_type: walked.root.media_type.clone(),
            size,
            platforms: walked.platforms.iter().map(|p| p.to_string()).collect(),
            source_digest: walked.source_digest,
            chart: None,
            file: None,
        },
        walked.root.clone(),
    ));
    plan.add_blobs(walked.blobs);
    Ok(())
}

fn small_bytes(bytes: Vec<u8>) -> (Digest, FoundBlob) {
    let d = Digest::of(&bytes);
    (
        d,
        FoundBlob {
            size: bytes.len() as u64,
            source: BlobSource::Bytes(Arc::new(bytes)),
            small: true,
        },
    )
}

/// The hosts a spec fetches from (registries of images and OCI charts,
/// chart repositories).
pub fn registry_hosts(spec: &Spec) -> std::collections::BTreeSet<String> {
    let images = spec.images.iter().filter_map(|e| match &e.source {
        ImageSource::Registry(r) => Some(r.registry().to_owned()),
        _ => None,
    });
    let charts = spec.charts.iter().filter_map(|c| match c {
        ChartEntry::Oci {
            reference, version, ..
        } => oci_chart_reference(reference, version)
            .ok()
            .map(|r| r.registry().to_owned()),
        ChartEntry::Repo { repo, .. } => reqwest::Url::parse(repo).ok().and_then(|u| {
            let h = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h,
            })
        }),
        _ => None,
    });
    images.chain(charts).collect()
}

fn runtime() -> Result<tokio::runtime::Runtime, PackError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| PackError::Fetcher(Box::new(e)))
}

/// Runs the fetcher to completion.
fn run_fetch(
    requests: &[FetchRequest],
    fopts: &FetchOptions,
    reporter: &dyn Reporter,
) -> Result<crate::connected::fetch::FetchReport, PackError> {
    runtime()?
        .block_on(crate::connected::fetch::fetch(requests, fopts, reporter))
        .map_err(|e| PackError::Fetcher(Box::new(e)))
}

/// The chart archive inside an OCI chart in the cache.
fn oci_chart_layer(f: &FetchOptions, root: &Descriptor, label: &str) -> Result<PathBuf, PackError> {
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

/// Fetches and plans the images named by charts with `images: true`
/// (those the spec does not list already); returns (reference, origin).
fn plan_chart_images(
    plan: &mut Plan,
    spec: &Spec,
    opts: &PackOptions,
    charts: &[(PathBuf, String)],
    filter_of: &dyn Fn(&ImageEntry) -> Option<Vec<Platform>>,
    reporter: &dyn Reporter,
) -> Result<Vec<(String, String)>, PackError> {
    let listed: std::collections::HashSet<String> = spec
        .images
        .iter()
        .filter_map(|e| match &e.source {
            ImageSource::Registry(r) => Some(r.to_string()),
            _ => e.name.as_ref().map(|n| n.to_string()),
        })
        .collect();
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
        return Ok(report);
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
        })
        .collect();
    let requests: Vec<FetchRequest> = entries
        .iter()
        .zip(&wanted)
        .map(|(e, (r, _))| FetchRequest {
            reference: r.clone(),
            platforms: filter_of(e),
        })
        .collect();
    let fetched = run_fetch(&requests, fopts, reporter)?;
    let mut failures = Vec::new();
    let mut roots = Vec::new();
    for ((r, origin), result) in wanted.iter().zip(fetched.results) {
        match result {
            Ok(root) => roots.push(root),
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
    for ((entry, (_, origin)), root) in entries.iter().zip(&wanted).zip(&roots) {
        let filter = filter_of(entry);
        plan_image(plan, entry, filter.as_deref(), Some((Some(fopts), root)))?;
        if let Some((a, _)) = plan.artifacts.last_mut() {
            a.source = format!("{} (named by {origin})", a.source);
        }
    }
    Ok(report)
}

/// A chart downloaded from a repository, and how it is named in messages.
struct RepoChart {
    path: PathBuf,
    label: String,
}

/// Downloads the spec's chart-repository charts into the cache; by chart
/// index. Every failure is listed; nothing is written when one fails.
fn fetch_repo_charts(
    spec: &Spec,
    opts: &PackOptions,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<usize, RepoChart>, PackError> {
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
    let rt = runtime()?;
    reporter.start("fetching charts", 0);
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for &(j, repo, name, version) in &wanted {
            let r = crate::connected::repo::fetch_chart(
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
            Ok(c) => {
                charts.insert(
                    j,
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

/// `oci://HOST/PATH/NAME` at `version` as a registry reference (Helm
/// stores `+` in versions as `_` in tags).
fn oci_chart_reference(reference: &str, version: &str) -> Result<Reference, PackError> {
    let r = format!(
        "{}:{}",
        reference.trim_start_matches("oci://").trim_end_matches('/'),
        version.replace('+', "_")
    );
    r.parse().map_err(|source| PackError::BadName {
        entry: format!("chart {reference}"),
        name: r.clone(),
        source,
    })
}

fn plan_chart(
    plan: &mut Plan,
    entry: &ChartEntry,
    fetched: Option<(&FetchOptions, &Descriptor)>,
) -> Result<(), PackError> {
    let path = match entry {
        ChartEntry::Path { path, .. } => path,
        ChartEntry::Repo { repo, name, .. } => {
            return Err(PackError::Remote {
                entry: format!("chart {name} from {repo}"),
            })
        }
        ChartEntry::Oci {
            reference, version, ..
        } => {
            return match fetched {
                Some((f, root)) => plan_oci_chart(plan, reference, version, f, root),
                None => Err(PackError::Remote {
                    entry: format!("chart {reference}"),
                }),
            }
        }
    };
    plan_chart_file(plan, path, path.display().to_string())
}

/// A chart `.tgz` on disk (given, or downloaded into the cache).
fn plan_chart_file(plan: &mut Plan, path: &Path, label: String) -> Result<(), PackError> {
    let chart_err = |source| PackError::Chart {
        entry: label.clone(),
        source,
    };
    let meta = chart::read_chart(path).map_err(chart_err)?;
    let (digest, size) =
        crate::base::digest::hash_file(path).map_err(|e| chart_err(ChartError::Io(e)))?;
    let reference = format!("charts/{}:{}", meta.name, meta.tag());
    plan.claim(&reference, &label)?;
    let manifest = meta.manifest(digest, size);
    let (md, mblob) = small_bytes(manifest);
    let (cd, cblob) = small_bytes(meta.config.clone());
    let mut blobs = BTreeMap::new();
    let msize = mblob.size;
    blobs.insert(md, mblob);
    blobs.insert(cd, cblob);
    blobs.insert(
        digest,
        FoundBlob {
            size,
            source: BlobSource::File {
                path: path.to_owned(),
                offset: 0,
            },
            small: false,
        },
    );
    let total = blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::Chart,
            source: label,
            reference,
            digest: md,
            media_type: oci::OCI_MANIFEST.into(),
            size: total,
            platforms: Vec::new(),
            source_digest: None,
            chart: Some(ChartInfo {
                name: meta.name.clone(),
                version: meta.version.clone(),
                app_version: meta.app_version.clone(),
            }),
            file: None,
        },
        Descriptor::new(oci::OCI_MANIFEST, md, msize),
    ));
    plan.add_blobs(blobs);
    Ok(())
}

/// A chart fetched from a registry into the cache: checked to be a Helm
/// chart artifact whose archive is a real chart, then carried with its
/// manifest bytes unchanged.
fn plan_oci_chart(
    plan: &mut Plan,
    reference: &str,
    version: &str,
    f: &FetchOptions,
    root: &Descriptor,
) -> Result<(), PackError> {
    let label = format!("{reference}:{version}");
    let r = oci_chart_reference(reference, version)?;
    let layout = LocalLayout::cache(&f.cache, &r);
    let not_chart = |what: String| PackError::NotChart {
        entry: label.clone(),
        what,
    };
    let image_err = |source| PackError::Image {
        entry: label.clone(),
        source,
    };
    let bytes = layout
        .read_verified(root, oci::MANIFEST_MAX_BYTES)
        .map_err(image_err)?;
    let m = match oci::parse_node(root.digest, &root.media_type, &bytes) {
        Ok(oci::Node::Manifest(m)) => m,
        _ => return Err(not_chart("it is not an artifact manifest".into())),
    };
    if m.config.media_type != oci::HELM_CONFIG {
        return Err(not_chart(format!(
            "its config has media type {:?}, not {:?}",
            m.config.media_type,
            oci::HELM_CONFIG
        )));
    }
    let Some(layer) = m.layers.iter().find(|l| l.media_type == oci::HELM_CHART) else {
        return Err(not_chart(format!("it has no {} layer", oci::HELM_CHART)));
    };
    let config = layout
        .read_verified(&m.config, 1 << 20)
        .map_err(image_err)?;
    #[derive(serde::Deserialize)]
    struct HelmConfig {
        name: String,
        version: String,
        #[serde(rename = "appVersion")]
        app_version: Option<String>,
    }
    let cfg: HelmConfig = serde_json::from_slice(&config)
        .map_err(|e| not_chart(format!("its Helm config does not parse: {e}")))?;
    // The archive itself must be a chart (and safe to unpack later).
    let meta = chart::read_chart(&f.cache.join(layer.digest.blob_path())).map_err(|source| {
        PackError::Chart {
            entry: label.clone(),
            source,
        }
    })?;
    if meta.name != cfg.name || meta.version != cfg.version {
        return Err(not_chart(format!(
            "its config says {} {} but its Chart.yaml says {} {}",
            cfg.name, cfg.version, meta.name, meta.version
        )));
    }
    let reference_name = format!("charts/{}:{}", cfg.name, cfg.version.replace('+', "_"));
    plan.claim(&reference_name, &label)?;
    let walked = source::walk_image(&layout, root, None, &label).map_err(image_err)?;
    let size = walked.blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::Chart,
            source: label,
            reference: reference_name,
            digest: root.digest,
            media_type: root.media_type.clone(),
            size,
            platforms: Vec::new(),
            source_digest: None,
            chart: Some(ChartInfo {
                name: cfg.name,
                version: cfg.version,
                app_version: cfg.app_version,
            }),
            file: None,
        },
        plain_descriptor(root),
    ));
    plan.add_blobs(walked.blobs);
    Ok(())
}

fn plain_descriptor(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest, d.size)
}

/// A repository-safe form of a file name: lowercase, runs of other
/// characters turned into single dashes.
fn repo_name(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            s.push(c);
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_owned();
    if s.is_empty() {
        "file".into()
    } else {
        s
    }
}

fn plan_file(
    plan: &mut Plan,
    entry: &FileEntry,
    scratch: &Path,
    mtime: u64,
) -> Result<(), PackError> {
    let label = entry.path.display().to_string();
    let io_err = |source| PackError::File {
        entry: label.clone(),
        source,
    };
    let meta = fs_err::metadata(&entry.path).map_err(io_err)?;
    let title = match &entry.name {
        Some(n) => n.clone(),
        None => entry
            .path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "file".into()),
    };
    let (layer_path, layer_type, directory) = if meta.is_dir() {
        let tar_path = scratch.join(format!("{}.tar", plan.artifacts.len()));
        write_dir_tar(&entry.path, &title, &tar_path, mtime, &label)?;
        (tar_path, oci::OCI_LAYER_TAR, true)
    } else if meta.is_file() {
        (entry.path.clone(), oci::FILE_LAYER, false)
    } else {
        return Err(PackError::FileKind {
            entry: label,
            path: entry.path.clone(),
            kind: "special file",
        });
    };
    let (digest, size) = crate::base::digest::hash_file(&layer_path).map_err(io_err)?;
    let mut layer = Descriptor::new(layer_type, digest, size);
    layer
        .annotations
        .insert(oci::ANN_TITLE.into(), title.clone());
    if directory {
        layer
            .annotations
            .insert(oci::ANN_ORAS_UNPACK.into(), "true".into());
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        artifact_type: Some(oci::FERRY_FILE_ARTIFACT.into()),
        config: Descriptor::new(
            oci::OCI_EMPTY,
            Digest::of(oci::EMPTY_JSON),
            oci::EMPTY_JSON.len() as u64,
        ),
        layers: vec![layer],
        subject: None,
        annotations: BTreeMap::from([(oci::ANN_TITLE.to_owned(), title.clone())]),
    };
    let reference = format!("files/{}:latest", repo_name(&title));
    plan.claim(&reference, &label)?;
    let (md, mblob) = small_bytes(oci::to_bytes(&manifest));
    let (ed, eblob) = small_bytes(oci::EMPTY_JSON.to_vec());
    let msize = mblob.size;
    let mut blobs = BTreeMap::from([(md, mblob), (ed, eblob)]);
    blobs.insert(
        digest,
        FoundBlob {
            size,
            source: BlobSource::File {
                path: layer_path,
                offset: 0,
            },
            small: false,
        },
    );
    let total = blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::File,
            source: label,
            reference,
            digest: md,
            media_type: oci::OCI_MANIFEST.into(),
            size: total,
            platforms: Vec::new(),
            source_digest: None,
            chart: None,
            file: Some(FileInfo { title, directory }),
        },
        Descriptor::new(oci::OCI_MANIFEST, md, msize),
    ));
    plan.add_blobs(blobs);
    Ok(())
}

/// Writes a directory as a deterministic tar: entries sorted by name, paths
/// under `title/`, uid/gid 0, fixed mtime, modes 0755 (directories and
/// executables) or 0644. Symbolic links and special files are refused.
fn write_dir_tar(
    dir: &Path,
    title: &str,
    out: &Path,
    mtime: u64,
    label: &str,
) -> Result<(), PackError> {
    let io_err = |source| PackError::File {
        entry: label.to_owned(),
        source,
    };
    let f = fs_err::File::create(out).map_err(io_err)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    for item in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .follow_links(false)
    {
        let item = item.map_err(|e| io_err(e.into()))?;
        let rel = item.path().strip_prefix(dir).unwrap_or(item.path());
        let name = if rel.as_os_str().is_empty() {
            PathBuf::from(title)
        } else {
            Path::new(title).join(rel)
        };
        let ft = item.file_type();
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, &name, std::io::empty())
                .map_err(io_err)?;
        } else if ft.is_file() {
            let m = fs_err::metadata(item.path()).map_err(io_err)?;
            use std::os::unix::fs::PermissionsExt;
            let exec = m.permissions().mode() & 0o111 != 0;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if exec { 0o755 } else { 0o644 });
            h.set_size(m.len());
            let file = fs_err::File::open(item.path()).map_err(io_err)?;
            b.append_data(&mut h, &name, file).map_err(io_err)?;
        } else {
            return Err(PackError::FileKind {
                entry: label.to_owned(),
                path: item.path().to_owned(),
                kind: if ft.is_symlink() {
                    "symbolic link"
                } else {
                    "special file"
                },
            });
        }
    }
    let w = b.into_inner().map_err(io_err)?;
    w.into_inner()
        .map_err(|e| io_err(e.into_error()))?
        .sync_all()
        .map_err(io_err)?;
    Ok(())
}
