//! `ferry load ARCHIVE --registry HOST[:PORT][/PREFIX]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ferry::layout::write_atomic;
use ferry::load::{load, LoadOptions};
use ferry::rewrite::ImageMap;

use super::{human, progress::Bars, remote_args::RemoteArgs, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive written by `ferry pack`.
    /// For a split archive: its first volume (OUT.001), the name the
    /// volumes share (OUT), or the whole set (OUT.*).
    #[arg(required = true, num_args = 1.., value_name = "ARCHIVE")]
    pub archive: Vec<PathBuf>,
    /// Target registry, `HOST[:PORT]` with an optional path prefix
    /// (`harbor.corp/mirror`).
    #[arg(long)]
    pub registry: String,
    /// Keep the source host as the first path component
    /// (`docker.io/library/nginx` → `PREFIX/docker.io/library/nginx`).
    #[arg(long)]
    pub keep_host: bool,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Check the registry and print what would be pushed; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move a tag that already points to different content in the target
    /// (without it, such an artifact fails and the tag is left alone).
    #[arg(long)]
    pub force: bool,
    /// Write the source → target map (for `ferry rewrite --map`).
    #[arg(long, value_name = "FILE")]
    pub map_out: Option<PathBuf>,
    /// Write an `images_digests.yml`-shaped override file
    /// (image_repository_server, image_repository_path, image_tag, image_digest).
    #[arg(long, value_name = "FILE")]
    pub images_digests_out: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Refuse the archive unless bundle.json is signed by this minisign
    /// public key (checked before anything is pushed).
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    let opts = LoadOptions {
        registry: args.registry.clone(),
        keep_host: args.keep_host,
        jobs: args.jobs as usize,
        dry_run: args.dry_run,
        force: args.force,
        remote: args.remote.options()?,
        key: args.key.clone(),
    };
    let bars = Bars::new(settings.quiet || args.json);
    let start = Instant::now();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // With --key, load checks the signature on the archive it opened,
    // before anything is pushed.
    let (report, bundle) = rt.block_on(load(&archive, &opts, &bars))?;
    let secs = start.elapsed().as_secs_f64();
    if let (Some(comment), false, false) = (&report.signature, args.json, settings.quiet) {
        eprintln!("signature OK: {}", super::escape_controls(comment));
    }

    if !args.dry_run {
        let loaded = report.loaded_bundle(&bundle);
        let map = ImageMap::from_bundle(&loaded, &args.registry, args.keep_host)?;
        if let Some(path) = &args.map_out {
            write_atomic(path, &map.to_json())
                .with_context(|| format!("writing the map {}", path.display()))?;
        }
        if let Some(path) = &args.images_digests_out {
            write_atomic(path, map.images_digests_yaml().as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }

    // The result on stdout (so `ferry load … | tail -1` is the counts line);
    // the signature note above and the error below on stderr.
    let c = &report.counts;
    if args.json {
        super::print_json(&serde_json::to_string_pretty(&report)?)?;
    } else {
        let mut lines: Vec<String> = report
            .artifacts
            .iter()
            .map(|a| match &a.error {
                None if args.dry_run => format!("  would load {} -> {}", a.source, a.target_ref()),
                None => format!("  loaded {} -> {}", a.source, a.target_ref()),
                Some(e) => format!("  FAILED {} -> {}: {e}", a.source, a.target_ref()),
            })
            .collect();
        let verb = if args.dry_run {
            "would upload"
        } else {
            "uploaded"
        };
        lines.push(format!(
            "{} {} blobs ({}), {} {}, {} already present; {} {} manifests, {} already present; {:.1} s",
            verb,
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
    let failed = report.artifacts.iter().filter(|a| !a.ok).count();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} artifacts were not loaded into {}; re-run to resume (what is in place is skipped)",
            report.artifacts.len(),
            report.registry
        );
        if args.map_out.is_some() || args.images_digests_out.is_some() {
            eprintln!("note: the map and override files list only what was loaded");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
