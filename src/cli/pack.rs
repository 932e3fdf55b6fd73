//! `ferry pack SPEC -o OUT`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ferry::inputs::Spec;
use ferry::pack::{pack, PackOptions};
use ferry::platform::Platform;

use super::{human, progress::Bars, remote_args::RemoteArgs, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec: ferry.yaml, a JSON spec, or images.txt (one reference a line).
    pub spec: PathBuf,
    /// The archive to write (replaced atomically when complete).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Platforms to keep for every image (os/arch[/variant], comma-separated),
    /// overriding the spec; default: the spec's, else all.
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<Platform>,
    /// Bundle name when the spec has none (default: the spec's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Cache for registry images and charts (shared between runs, so a
    /// re-run fetches only what is missing; see `ferry cache`). Default:
    /// $FERRY_CACHE, else $XDG_CACHE_HOME/ferry, else ~/.cache/ferry.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Registry blobs downloaded at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Sign bundle.json with this minisign secret key (from `ferry keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Split the archive into volumes OUT.001, OUT.002, … of at most SIZE
    /// (700M, 4G, 4000MB, fat32) plus OUT.sha256 for `sha256sum -c`. Without
    /// SIZE: fat32, the largest file FAT32 holds (4 GiB less one byte).
    #[arg(long, value_name = "SIZE", num_args = 0..=1, default_missing_value = "fat32", value_parser = super::parse_size)]
    pub volume_size: Option<u64>,
    /// Compress the archive as one zstd stream: `zstd` or `zstd:LEVEL`
    /// (1-19, default 3). Worth it only for uncompressed content; layers
    /// are usually compressed already. serve and unpack need an
    /// uncompressed archive.
    #[arg(long, value_name = "zstd[:LEVEL]", value_parser = parse_compress)]
    pub compress: Option<i32>,
    /// Make a delta: leave out the layers this inventory (from `ferry
    /// inventory`) says the far side already holds.
    #[arg(long, value_name = "INVENTORY")]
    pub have: Option<PathBuf>,
    /// Convert Docker schema-2 manifests and manifest lists to OCI, so that
    /// OCI-only tools (skopeo's oci: transport, podman pull oci-archive:)
    /// read them from the layout. Their digests change: bundle.json records
    /// each old and new digest, rewrite translates pins on the old ones, and
    /// signatures made for the old digests no longer apply.
    #[arg(long)]
    pub oci: bool,
    /// Pack exactly what this lock file (from `ferry resolve`) chose: the
    /// same tags and chart versions, fetched by digest. Fails if a locked
    /// tag has moved.
    #[arg(long, value_name = "LOCK")]
    pub lock: Option<PathBuf>,
    /// Fail when an image unpacks to more than SIZE (700M, 4G, 500MB) on
    /// any platform, by its layers' gzip trailers and zstd headers. For
    /// images without a `budget:` of their own; replaces the spec's
    /// `budget.image`.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    pub max_image_size: Option<u64>,
    /// Make an image (or the bundle) over its budget a warning instead of
    /// a failure; the archive is written.
    #[arg(long)]
    pub warn_only: bool,
    /// Do not look for or carry signatures, attestations, SBOMs and other
    /// referrers (the spec's `referrers: false`, for every image).
    #[arg(long)]
    pub no_referrers: bool,
    /// Require every image to carry a good cosign signature by this public
    /// key (PEM: ECDSA P-256, Ed25519 or RSA), checked before anything is
    /// written; images with their own `verify:` use that instead.
    #[arg(long, value_name = "PUB", conflicts_with = "no_referrers")]
    pub cosign_key: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let spec = Spec::load(&args.spec)?;
    for f in &spec.images_from {
        eprintln!(
            "{}",
            super::escape_controls(&format!(
                "images from {}: {} to carry, {} value(s) skipped",
                f.path.display(),
                f.found.len(),
                f.skipped.len()
            ))
        );
        for s in &f.skipped {
            eprintln!("{}", super::escape_controls(&format!("  skipped {s}")));
        }
    }
    let default_name = args.name.clone().unwrap_or_else(|| {
        args.spec
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into())
    });
    let hosts = ferry::pack::registry_hosts(&spec);
    if args.remote.username.is_some() && hosts.len() > 1 {
        bail!(
            "--username would be sent to {} registries ({}); give each its credentials with `docker login` (or $DOCKER_CONFIG) instead",
            hosts.len(),
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let chart_images = spec.charts.iter().any(|c| match c {
        ferry::inputs::ChartEntry::Path { images, .. }
        | ferry::inputs::ChartEntry::Repo { images, .. }
        | ferry::inputs::ChartEntry::Oci { images, .. } => *images,
    });
    let fetch = if hosts.is_empty() && !chart_images {
        None
    } else {
        let cache = super::cache::dir(args.cache.clone())?;
        Some(ferry::fetch::FetchOptions {
            cache,
            jobs: args.jobs as usize,
            remote: args.remote.options()?,
        })
    };
    let opts = PackOptions {
        out: args.output.clone(),
        platforms: (!args.platform.is_empty()).then(|| args.platform.clone()),
        default_name,
        mtime: ferry::archive::mtime_from_env(),
        fetch,
        sign: args.sign.clone(),
        volume_size: args.volume_size,
        compress: args.compress,
        oci: args.oci,
        lock: match &args.lock {
            Some(p) => Some(ferry::lock::Lock::read(p)?),
            None => None,
        },
        budget: ferry::pack::BudgetOptions {
            max_image_size: args.max_image_size,
            warn_only: args.warn_only,
        },
        have: match &args.have {
            Some(p) => Some(ferry::inventory::Inventory::read(p)?),
            None => None,
        },
        referrers: !args.no_referrers,
        cosign_key: args.cosign_key.clone(),
    };
    let bars = Bars::new(settings.quiet);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let summary = pack(&spec, &opts, rt.handle(), &bars)
        .with_context(|| format!("packing {}", args.spec.display()))?;
    // Written at once; a reader that has gone is not an error.
    let mut lines: Vec<String> = Vec::new();
    if args.json {
        lines.push(format!(
            "{}",
            serde_json::json!({
                "archive": summary.archive,
                "size": summary.size,
                "files": summary.files.iter().map(|(f, s)| serde_json::json!({"path": f, "size": s})).collect::<Vec<_>>(),
                "sidecar": summary.sidecar,
                "name": summary.bundle.name,
                "artifacts": summary.bundle.artifacts,
                "referrers": summary.bundle.referrers,
                "signatures": summary.signatures,
                "fetched": summary.fetched,
                "tags": summary.tags.iter().map(|c| serde_json::json!({"image": c.image, "rule": c.rule, "chosen": c.tags})).collect::<Vec<_>>(),
                "chart_images": summary.chart_images.iter().map(|(r, o)| serde_json::json!({"reference": r, "origin": o})).collect::<Vec<_>>(),
                "budget": summary.budget,
            })
        ));
    } else {
        for c in &summary.tags {
            lines.push(format!(
                "  tags   {} {} chose {}",
                c.image,
                c.rule,
                c.tags.join(", ")
            ));
        }
        for a in &summary.bundle.artifacts {
            let filtered = match (a.source_digest, a.converted.is_empty()) {
                (Some(src), true) => format!(" (platform-filtered: new index; source index {src})"),
                (Some(src), false) => format!(
                    " (converted to OCI: {} document{} changed; source digest {src})",
                    a.converted.len(),
                    if a.converted.len() == 1 { "" } else { "s" }
                ),
                (None, _) => String::new(),
            };
            lines.push(format!(
                "  {:<6} {}  {}{}",
                format!("{:?}", a.kind).to_lowercase(),
                a.reference,
                a.digest,
                filtered
            ));
        }
        for (r, origin) in &summary.chart_images {
            lines.push(format!("  chart names {r} ({origin})"));
        }
        if let Some(f) = &summary.fetched {
            lines.push(format!(
                "fetched {} blobs ({}) and {} manifests from registries; {} blobs were already cached{}",
                f.blobs_fetched,
                human(f.bytes_fetched),
                f.manifests,
                f.blobs_cached,
                if f.blobs_repaired > 0 {
                    format!(", {} damaged cached blobs fetched again", f.blobs_repaired)
                } else {
                    String::new()
                }
            ));
        }
        for c in &summary.signatures {
            lines.push(format!(
                "  signed {} by {} ({}{}{})",
                c.image,
                c.signer,
                c.form,
                c.docker_reference
                    .as_deref()
                    .map(|r| format!(", for {r}"))
                    .unwrap_or_default(),
                c.checked_at
                    .as_deref()
                    .map(|t| format!(", certificate checked at {t}"))
                    .unwrap_or_default()
            ));
        }
        if !summary.bundle.referrers.is_empty() {
            lines.push(format!(
                "referrers: {}",
                ferry::bundle::count_kinds(summary.bundle.referrers.iter().map(|r| r.kind))
            ));
        }
        if let Some(b) = &summary.budget {
            lines.push(budget_line(b));
        }
        if let Some(d) = &summary.bundle.delta {
            lines.push(format!(
                "delta against {}: {} blobs ({}) left out; the target must hold them",
                d.base,
                d.absent.len(),
                human(d.absent.iter().map(|b| b.size).sum())
            ));
        }
        if let Some(sidecar) = &summary.sidecar {
            for (f, size) in &summary.files {
                lines.push(format!("  volume {}  {}", f.display(), human(*size)));
            }
            lines.push(format!(
                "wrote {} volumes ({}, {} artifacts, {} members) and {}",
                summary.files.len(),
                human(summary.size),
                summary.bundle.artifacts.len(),
                summary.bundle.members.len() + 1,
                sidecar.display()
            ));
        } else {
            lines.push(format!(
                "wrote {} ({}, {} artifacts, {} members)",
                summary.archive.display(),
                human(summary.size),
                summary.bundle.artifacts.len(),
                summary.bundle.members.len() + 1
            ));
        }
    }
    crate::cli::print_result(&lines)?;
    Ok(ExitCode::SUCCESS)
}

/// `zstd` or `zstd:LEVEL`.
fn parse_compress(s: &str) -> Result<i32, String> {
    let (algo, level) = match s.split_once(':') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    if algo != "zstd" {
        return Err(format!("{algo:?} is not supported; use zstd or zstd:LEVEL"));
    }
    match level {
        None => Ok(ferry::archive::compressed::DEFAULT_LEVEL),
        Some(l) => match l.parse::<i32>() {
            Ok(n) if (1..=19).contains(&n) => Ok(n),
            _ => Err(format!("zstd level {l:?} must be 1-19")),
        },
    }
}

/// `budgets: N checked, …`: how the budgets went, with the one nearest
/// its limit (or each over it, with --warn-only).
fn budget_line(b: &ferry::pack::BudgetReport) -> String {
    let over = b.over();
    let bundle = b
        .measured
        .iter()
        .any(|m| m.from == ferry::pack::LimitFrom::SpecBundle);
    let images = b.measured.len() - usize::from(bundle);
    let n = match (images, bundle) {
        (1, false) => "1 image".to_owned(),
        (i, false) => format!("{i} images"),
        (0, true) => "the bundle".to_owned(),
        (1, true) => "1 image and the bundle".to_owned(),
        (i, true) => format!("{i} images and the bundle"),
    };
    if !over.is_empty() {
        return format!(
            "budgets: {n} checked, {} over (--warn-only): {}",
            over.len(),
            over.iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let closest = b.measured.iter().max_by(|x, y| {
        (x.size.bytes as f64 / x.limit as f64).total_cmp(&(y.size.bytes as f64 / y.limit as f64))
    });
    match closest {
        Some(m) => format!(
            "budgets: {n} checked, all within; the closest, at {:.0} %: {m}",
            100.0 * m.size.bytes as f64 / m.limit as f64
        ),
        None => "budgets: no image to check".into(),
    }
}
