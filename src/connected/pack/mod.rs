//! `pack`: turns a spec into an archive. It resolves every entry into an
//! artifact (image, chart, file), collects the distinct blobs with where
//! their bytes are, builds `index.json` and `bundle.json`, orders members as
//! the archive contract requires (small JSON blobs, then large blobs, each
//! sorted by digest) and hands the plan to the archive writer.
//!
//! Local sources are read in place: nothing is copied into a cache first,
//! and the writer re-hashes every blob as it streams it into the archive.
//! A run that fetches holds the cache's shared lock from the first fetch
//! to the last byte written. What a spec needs from the cache, resolved
//! from its records without the network, is `needs` (for `ferry cache
//! prune --keep`).

use std::path::PathBuf;

use crate::base::digest::Digest;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::base::report::Reporter;
use crate::connected::cache::Cache;
use crate::connected::chart::ChartError;
use crate::connected::fetch::{FetchCounts, FetchOptions};
use crate::connected::inputs::{ChartEntry, ImageEntry, ImageSource, Spec};
use crate::connected::lock::Locked;
use crate::connected::source::SourceError;
use crate::format::archive::{self, ArchiveError};
use crate::format::bundle::Bundle;
use crate::shared::inventory::Inventory;

mod budget;
mod needs;
mod plan;
mod resolve;
mod signatures;

pub use budget::{BudgetReport, LimitFrom, Measured};
pub use needs::{cache_needs, CacheNeeds};
pub use resolve::listed_images;
pub use signatures::{policy_of, SignatureCheck};

use plan::{assemble, plan_chart, plan_chart_file, plan_file, plan_image, plan_referrers, Plan};
use resolve::{fetch_registry_images, fetch_repo_charts, oci_chart_layer, plan_chart_images};

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
    /// An image's signature check failed (`verify:`, `--cosign-key`).
    #[error("image {image}: no good signature by {trust}{hint}")]
    Signature {
        /// The image.
        image: String,
        /// The key or CA file.
        trust: String,
        /// Why.
        #[source]
        source: crate::format::cosign::CosignError,
        /// What may explain it (a platform filter).
        hint: String,
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
    /// Images (or the bundle) over their size budgets; nothing was written.
    #[error("{} over budget; no archive was written (pack --warn-only writes it anyway):{}", budget::who(over), over.iter().map(|m| format!("\n  {m}")).collect::<String>())]
    Budget {
        /// Each image (or the bundle) over its limit, with both sizes.
        over: Vec<Measured>,
    },
    /// Writing the archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Tags could not be chosen.
    #[error(transparent)]
    Tags(#[from] crate::connected::tags::TagsError),
    /// The lock file does not fit the spec, or a locked tag moved.
    #[error(transparent)]
    Lock(#[from] crate::connected::lock::LockError),
    /// The fetch cache cannot be used.
    #[error(transparent)]
    Cache(#[from] crate::connected::cache::CacheError),
    /// A scratch directory could not be made.
    #[error("cannot create a scratch directory next to {0}")]
    Scratch(PathBuf, #[source] std::io::Error),
}

/// A spec entry, by kind and position in the spec: how what is resolved
/// for an entry is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum EntryId {
    /// The n-th entry of `images:`.
    Image(usize),
    /// The n-th entry of `charts:`.
    Chart(usize),
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
    /// Convert Docker schema-2 manifests and lists to OCI (`--oci`), which
    /// changes their digests (recorded in bundle.json).
    pub oci: bool,
    /// Pack exactly what this lock file (from `ferry resolve`) chose.
    pub lock: Option<crate::connected::lock::Lock>,
    /// Size budgets from the command line (the spec's are in the spec).
    pub budget: BudgetOptions,
    /// Find and carry referrers (signatures, attestations, SBOMs) where
    /// the spec does not turn them off; `false` is `--no-referrers`.
    pub referrers: bool,
    /// `--cosign-key`: every image must carry a good cosign signature by
    /// this public key (images with their own `verify:` use that).
    pub cosign_key: Option<PathBuf>,
}

/// Budgets given on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct BudgetOptions {
    /// `--max-image-size`: the most an image without a `budget:` of its own
    /// may unpack to (instead of the spec's `budget.image`).
    pub max_image_size: Option<u64>,
    /// `--warn-only`: an image over its budget is a warning, not a failure.
    pub warn_only: bool,
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
    /// The tags each entry with `tags:` chose (or the lock file gave).
    pub tags: Vec<crate::connected::tags::ChosenTags>,
    /// The budgets checked, when any applied.
    pub budget: Option<BudgetReport>,
    /// The signatures checked (`verify:`, `--cosign-key`), one per image.
    pub signatures: Vec<SignatureCheck>,
}

/// When a bundle is signed, in RFC 3339 UTC: `SOURCE_DATE_EPOCH` when set
/// (the archive's own `mtime`), so a reproducible build signs reproducibly,
/// else the clock.
fn signing_time(mtime: u64) -> String {
    let secs = if mtime > 0 {
        i64::try_from(mtime).unwrap_or(i64::MAX)
    } else {
        chrono::Utc::now().timestamp()
    };
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Packs `spec` into `opts.out`: resolve (fetch what the network must
/// give, on the caller's runtime `rt`), plan each entry, `assemble` the
/// bundle, then plan the volumes, sign and write in the form asked for.
pub fn pack(
    spec: &Spec,
    opts: &PackOptions,
    rt: &tokio::runtime::Handle,
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
    // The cache is shared with other runs and kept in bounds by `ferry
    // cache`: this run holds its shared lock for as long as it uses the
    // cache (fetching, then writing the archive from cached blobs), so a
    // prune or gc waits until it is done.
    let _cache_lock = match &opts.fetch {
        Some(f) => {
            let waiting = || {
                reporter.note(&format!(
                    "waiting for the cache {}: a `ferry cache` prune or gc is using it",
                    f.cache.display()
                ))
            };
            Some(Cache::create(&f.cache)?.lock_shared(Some(&waiting))?)
        }
        None => None,
    };

    let prepared = prepare(spec, opts, rt, reporter)?;
    let spec = &prepared.spec;
    let filter_of = |entry: &ImageEntry| {
        opts.platforms
            .as_ref()
            .or(entry.platforms.as_ref())
            .or(spec.platforms.as_ref())
            .cloned()
    };
    let resolve::Fetched {
        roots: fetched_roots,
        referrers: fetched_referrers,
        counts: fetched,
    } = fetch_registry_images(spec, opts, rt, &filter_of, &prepared.image_pins, reporter)?;
    let repo_charts = fetch_repo_charts(spec, opts, rt, &prepared.chart_pins, reporter)?;

    let mut plan = Plan::default();
    plan.oci = opts.oci;
    // Images whose signature must check, and what each left behind.
    let mut wanted: Vec<signatures::Wanted> = Vec::new();
    let mut left_behind: std::collections::HashMap<usize, Vec<Digest>> = Default::default();
    reporter.start("resolving sources", 0);
    for (i, entry) in spec.images.iter().enumerate() {
        let filter = filter_of(entry);
        let cached = fetched_roots
            .get(&EntryId::Image(i))
            .map(|root| (opts.fetch.as_ref(), root));
        plan_image(&mut plan, entry, filter.as_deref(), cached)?;
        let at = plan.artifacts.len().saturating_sub(1);
        if let (Some(found), Some(f)) = (fetched_referrers.get(&EntryId::Image(i)), &opts.fetch) {
            let left = plan_referrers(&mut plan, found, &f.cache)?;
            left_behind.insert(at, left.iter().map(|l| l.root.digest).collect());
        }
        if entry.verify.is_some() {
            let image = plan
                .artifacts
                .get(at)
                .map(|(a, _)| a.reference.clone())
                .unwrap_or_default();
            if let Some((policy, trust)) =
                signatures::policy_of(entry.verify.as_ref(), None, &image)?
            {
                wanted.push(signatures::Wanted {
                    artifact: at,
                    policy,
                    trust,
                });
            }
        }
    }
    let mut chart_files: Vec<(PathBuf, String)> = Vec::new();
    for (j, entry) in spec.charts.iter().enumerate() {
        let cached = fetched_roots
            .get(&EntryId::Chart(j))
            .and_then(|root| Some((opts.fetch.as_ref()?, root)));
        match repo_charts.get(&EntryId::Chart(j)) {
            Some(c) => plan_chart_file(&mut plan, &c.path, c.label.clone())?,
            None => {
                plan_chart(&mut plan, entry, cached)?;
                if let (Some(found), Some((f, _))) =
                    (fetched_referrers.get(&EntryId::Chart(j)), cached)
                {
                    plan_referrers(&mut plan, found, &f.cache)?;
                }
            }
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
            let path = match (entry, repo_charts.get(&EntryId::Chart(j)), cached) {
                (ChartEntry::Path { path, .. }, _, _) => path.clone(),
                (_, Some(c), _) => c.path.clone(),
                (_, None, Some((f, root))) => oci_chart_layer(f, root, &label)?,
                _ => continue,
            };
            chart_files.push((path, label));
        }
    }
    reporter.finish();
    let (chart_images, chart_fetched) = plan_chart_images(
        &mut plan,
        spec,
        opts,
        rt,
        &chart_files,
        &filter_of,
        reporter,
    )?;
    // The summary counts both fetches: the spec's images and the charts'.
    let fetched = match (fetched, chart_fetched) {
        (Some(mut a), Some(b)) => {
            a.add(&b);
            Some(a)
        }
        (a, b) => a.or(b),
    };
    reporter.start("resolving sources", 0);
    for entry in &spec.files {
        plan_file(&mut plan, entry, scratch.path(), opts.mtime)?;
    }
    reporter.finish();
    for note in &plan.notes {
        reporter.note(note);
    }
    // `--cosign-key`: every other image too.
    if let Some(key) = &opts.cosign_key {
        for (at, (a, _)) in plan.artifacts.iter().enumerate() {
            if a.kind != crate::format::bundle::ArtifactKind::Image
                || wanted.iter().any(|w| w.artifact == at)
            {
                continue;
            }
            if let Some((policy, trust)) = signatures::policy_of(None, Some(key), &a.reference)? {
                wanted.push(signatures::Wanted {
                    artifact: at,
                    policy,
                    trust,
                });
            }
        }
    }
    let signatures = if wanted.is_empty() {
        Vec::new()
    } else {
        reporter.start("checking signatures", 0);
        let checked = signatures::check(&mut plan, &wanted, &left_behind);
        reporter.finish();
        checked?
    };
    // Budgets: checked on the plan, before anything is written.
    let limits = budget::Limits {
        cli: opts.budget.max_image_size,
        spec: spec.budget.unwrap_or_default(),
    };
    reporter.start("checking size budgets", 0);
    let budget = budget::check(&plan, limits);
    reporter.finish();
    if let Some(b) = &budget {
        for note in &b.notes {
            reporter.note(note);
        }
        let over: Vec<Measured> = b.over().into_iter().cloned().collect();
        if !over.is_empty() {
            if !opts.budget.warn_only {
                return Err(PackError::Budget { over });
            }
            for m in &over {
                reporter.note(&format!("warning: over budget: {m}"));
            }
        }
    }

    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| opts.default_name.clone());
    let (mut bundle, members) = assemble(plan, name, opts.have.as_ref());
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
                signing_time(opts.mtime)
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
        tags: prepared.tags,
        budget,
        signatures,
    })
}

/// One local entry for [`plan_local`]: what `mirror` pushes as `load`
/// pushes it, made into OCI artifacts by pack's own planning.
#[derive(Debug, Clone)]
pub enum LocalEntry {
    /// An `oci:`, `oci-archive:` or `docker-archive:` image, with the
    /// platforms to keep.
    Image {
        /// The spec entry.
        entry: Box<ImageEntry>,
        /// The platforms to keep (`None`: all).
        filter: Option<Vec<Platform>>,
    },
    /// A chart `.tgz` on disk (given by `path:`, or downloaded from a Helm
    /// repository), with how messages name it.
    Chart {
        /// The chart archive.
        path: PathBuf,
        /// The entry, for messages and the artifact's `source`.
        label: String,
    },
    /// A file or directory.
    File(crate::connected::inputs::FileEntry),
}

/// What [`plan_local`] made: one artifact per entry, in order, with its
/// root descriptor, and every blob with where its bytes are.
#[derive(Debug, Clone)]
pub struct LocalPlan {
    /// One per entry, in the order given.
    pub artifacts: Vec<(
        crate::format::bundle::Artifact,
        crate::format::oci::Descriptor,
    )>,
    /// Every blob (documents included), with where its bytes are.
    pub blobs: std::collections::BTreeMap<Digest, crate::connected::source::FoundBlob>,
    /// Warnings for the user.
    pub notes: Vec<String>,
}

/// Plans local entries exactly as `pack` plans them (the same artifacts,
/// digests and names a pack of them records), for `mirror`. A directory is
/// tarred into `scratch` (with tar headers' `mtime`); everything else is
/// read in place.
pub fn plan_local(
    entries: &[LocalEntry],
    scratch: &std::path::Path,
    mtime: u64,
) -> Result<LocalPlan, PackError> {
    let mut plan = Plan::default();
    for e in entries {
        match e {
            LocalEntry::Image { entry, filter } => {
                plan_image(&mut plan, entry, filter.as_deref(), None)?
            }
            LocalEntry::Chart { path, label } => plan_chart_file(&mut plan, path, label.clone())?,
            LocalEntry::File(f) => plan_file(&mut plan, f, scratch, mtime)?,
        }
    }
    Ok(LocalPlan {
        artifacts: plan.artifacts,
        blobs: plan.blobs,
        notes: plan.notes,
    })
}

/// The spec as it is packed: with a lock file, what it locked (and a
/// check that no locked tag moved); else each entry with `tags:` expanded
/// to the tags its rule chooses now.
fn prepare(
    spec: &Spec,
    opts: &PackOptions,
    rt: &tokio::runtime::Handle,
    reporter: &dyn Reporter,
) -> Result<Locked, PackError> {
    let remote = opts.fetch.as_ref().map(|f| &f.remote);
    if let Some(lock) = &opts.lock {
        let locked = crate::connected::lock::apply(spec, lock)?;
        if let Some(remote) = remote {
            reporter.start("checking locked tags", 0);
            let checked = rt.block_on(crate::connected::lock::check_moved(&locked, remote));
            reporter.finish();
            checked?;
        }
        return Ok(locked);
    }
    let mut out = Locked {
        spec: spec.clone(),
        image_pins: vec![None; spec.images.len()],
        chart_pins: vec![None; spec.charts.len()],
        tags: Vec::new(),
    };
    if crate::connected::tags::has_rules(spec) {
        let Some(remote) = remote else {
            return Err(PackError::Remote {
                entry: spec
                    .images
                    .iter()
                    .find(|e| e.tags.is_some())
                    .map(ImageEntry::label)
                    .unwrap_or_default(),
            });
        };
        reporter.start("choosing tags", 0);
        let chosen = rt.block_on(crate::connected::tags::choose_all(spec, remote));
        reporter.finish();
        let chosen = chosen?;
        out.spec = crate::connected::tags::expand(spec, &chosen);
        out.image_pins = vec![None; out.spec.images.len()];
        out.tags = chosen.into_iter().flatten().collect();
    }
    Ok(out)
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
