//! `ferry mirror SPEC --registry HOST[:PORT][/PREFIX]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ferry::inputs::Spec;
use ferry::layout::write_atomic;
use ferry::mirror::{mirror, MirrorOptions};
use ferry::platform::Platform;

use super::load::{read_installer, write_override, Override};
use super::{human, progress::Bars, remote_args::RemoteArgs, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec: ferry.yaml, a JSON spec, or images.txt (one reference a line).
    pub spec: PathBuf,
    /// Target registry, `HOST[:PORT]` with an optional path prefix
    /// (`staging.local:5000/mirror`).
    #[arg(long)]
    pub registry: String,
    /// Keep the source host as the first path component
    /// (`docker.io/library/nginx` → `PREFIX/docker.io/library/nginx`).
    #[arg(long)]
    pub keep_host: bool,
    /// Platforms to keep for every image (os/arch[/variant], comma-separated),
    /// overriding the spec; default: the spec's, else all.
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<Platform>,
    /// Mirror exactly what this lock file (from `ferry resolve`) chose: the
    /// same tags, pulled by digest. Fails if a locked tag has moved.
    #[arg(long, value_name = "LOCK")]
    pub lock: Option<PathBuf>,
    /// Blobs in flight at once (each streamed from its source to the target).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Check both sides and print what would be copied and what mounted;
    /// push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move a tag that already points to different content in the target
    /// (without it, such an image fails and the tag is left alone).
    #[arg(long)]
    pub force: bool,
    /// Do not look for or carry signatures, attestations, SBOMs and other
    /// referrers (the spec's `referrers: false`, for every image).
    #[arg(long)]
    pub no_referrers: bool,
    /// Require every image to carry a good cosign signature by this public
    /// key (PEM: ECDSA P-256, Ed25519 or RSA), checked before anything is
    /// pushed; images with their own `verify:` use that instead.
    #[arg(long, value_name = "PUB", conflicts_with = "no_referrers")]
    pub cosign_key: Option<PathBuf>,
    /// Write the source → target map (for `ferry rewrite --map`).
    #[arg(long, value_name = "FILE")]
    pub map_out: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: super::load::OverrideArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let spec = Spec::load(&args.spec)?;
    if let Some(map) = &args.map_out {
        check_output_path(map, &[Some(&args.spec), args.lock.as_ref()])?;
    }
    // One password is never sent to several registries: the sources and
    // the target each get theirs from the docker config.
    let mut hosts = ferry::pack::registry_hosts(&spec);
    if let Ok(t) = ferry::mapping::TargetRegistry::parse(&args.registry, args.keep_host) {
        hosts.insert(t.host);
    }
    if args.remote.username.is_some() && hosts.len() > 1 {
        anyhow::bail!(
            "--username would be sent to {} registries ({}); give each its credentials with `docker login` (or $DOCKER_CONFIG) instead",
            hosts.len(),
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    // Everything read from disk is checked before anything is pushed.
    let installer = read_installer(
        args.overrides.images_digests_from.as_deref(),
        args.overrides.configmap.as_deref(),
    )?;
    let opts = MirrorOptions {
        registry: args.registry.clone(),
        keep_host: args.keep_host,
        jobs: args.jobs as usize,
        dry_run: args.dry_run,
        force: args.force,
        platforms: (!args.platform.is_empty()).then(|| args.platform.clone()),
        lock: match &args.lock {
            Some(p) => Some(ferry::lock::Lock::read(p)?),
            None => None,
        },
        remote: args.remote.options()?,
        mtime: ferry::archive::mtime_from_env(),
        referrers: !args.no_referrers,
        cosign_key: args.cosign_key.clone(),
    };
    let bars = Bars::new(settings.quiet || args.json);
    let start = Instant::now();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = rt
        .block_on(mirror(&spec, &opts, &bars))
        .with_context(|| format!("mirroring {}", args.spec.display()))?;
    let secs = start.elapsed().as_secs_f64();

    let mut overridden = None;
    if !args.dry_run {
        let map = report.image_map();
        if let Some(path) = &args.map_out {
            write_atomic(path, &map.to_json())
                .with_context(|| format!("writing the map {}", path.display()))?;
        }
        if let (Some(path), Some((file, text))) = (&args.overrides.images_digests_out, &installer) {
            let how = Override {
                registry: &args.registry,
                allow_missing: args.overrides.allow_missing,
                images_digests_tag: args.overrides.images_digests_tag,
                configmap: args.overrides.configmap.as_deref(),
            };
            overridden = Some(write_override(&how, path, file, text, &map));
        }
    }

    let c = &report.counts;
    if args.json {
        super::print_json(&serde_json::to_string_pretty(&report)?)?;
    } else {
        let mut lines: Vec<String> = report
            .tags
            .iter()
            .map(|t| {
                format!(
                    "  tags   {} {} chose {}",
                    t.image,
                    t.rule,
                    t.chosen.join(", ")
                )
            })
            .collect();
        lines.extend(report.artifacts.iter().map(|a| match &a.error {
            None if args.dry_run => format!("  would mirror {} -> {}", a.source, a.target_ref()),
            None => format!("  mirrored {} -> {}", a.source, a.target_ref()),
            Some(e) => format!("  FAILED {} -> {}: {e}", a.source, a.target_ref()),
        }));
        for c in &report.chart_images {
            lines.push(format!("  chart names {} ({})", c.reference, c.origin));
        }
        for s in &report.signatures {
            lines.push(format!(
                "  verified {} signed by {} ({}, {})",
                s.image, s.signer, s.form, s.signature
            ));
        }
        lines.extend(super::load::referrer_lines(&report.referrers, args.dry_run));
        lines.push(format!(
            "{} {} blobs ({}), {} {}, {} already present; {} {} manifests, {} already present; {:.1} s",
            if args.dry_run { "would copy" } else { "copied" },
            c.uploaded,
            human(c.bytes_uploaded),
            if args.dry_run { "would mount" } else { "mounted" },
            c.mounted,
            c.present,
            if args.dry_run { "would push" } else { "pushed" },
            c.manifests_pushed,
            c.manifests_present,
            secs
        ));
        super::print_result(&lines)?;
    }
    match overridden {
        Some(Ok(note)) => eprintln!("{}", super::escape_controls(&note)),
        Some(Err(e)) => {
            eprintln!("error: {}", super::chain(e.as_ref()));
            return Ok(ExitCode::FAILURE);
        }
        _ => {}
    }
    let failed = report.artifacts.iter().filter(|a| !a.ok).count();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} artifacts were not mirrored into {}; re-run to resume (what is in place is skipped)",
            report.artifacts.len(),
            report.registry
        );
        if args.map_out.is_some() || args.overrides.images_digests_out.is_some() {
            eprintln!("note: the map and override files list only what was mirrored");
        }
        return Ok(ExitCode::FAILURE);
    }
    let failed = report.referrers.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} signatures, attestations, SBOMs and other referrers were not attached in {}; re-run to resume",
            report.referrers.len(),
            report.registry
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses, before anything is pushed, an output path that could only
/// fail at the end (a directory, a parent that is not one) or that names
/// one of the run's own inputs, which it would overwrite.
fn check_output_path(out: &std::path::Path, inputs: &[Option<&PathBuf>]) -> anyhow::Result<()> {
    if out.is_dir() {
        anyhow::bail!("--map-out {} is a directory", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        anyhow::bail!(
            "--map-out {}: {} is not a directory",
            out.display(),
            parent.display()
        );
    }
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize())
    {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    for input in inputs.iter().flatten() {
        if same(out, input) {
            anyhow::bail!(
                "--map-out {} is {}, an input of this run; it would be overwritten",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}
