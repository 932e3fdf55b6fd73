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
    #[command(flatten)]
    pub overrides: OverrideArgs,
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

/// The installer-override flags `load` and `mirror` share.
#[derive(Debug, clap::Args)]
pub struct OverrideArgs {
    /// Write the installer's override: the --images-digests-from file with
    /// each entry's server, path and digest pointed at the image in the target.
    #[arg(long, value_name = "FILE", requires = "images_digests_from")]
    pub images_digests_out: Option<PathBuf>,
    /// The installer's `images_digests.yml` (component → container →
    /// image_repository_server, image_repository_path, image_tag,
    /// image_digest), the shape --images-digests-out keeps.
    #[arg(long, value_name = "FILE", requires = "images_digests_out")]
    pub images_digests_from: Option<PathBuf>,
    /// Keep entries of --images-digests-from that this run did not carry
    /// unchanged (without it they are an error naming them).
    #[arg(long, requires = "images_digests_from")]
    pub allow_missing: bool,
    /// Also write the tag the target holds into image_tag (by default the
    /// installer's tag is kept; they differ only when an entry matched by
    /// its digest an image carried under another tag).
    #[arg(long, requires = "images_digests_from")]
    pub images_digests_tag: bool,
    /// Write the override as a ready ConfigMap of this name, its tree in
    /// `data.images_digests: |`.
    #[arg(long, value_name = "NAME", requires = "images_digests_from")]
    pub configmap: Option<String>,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    // The installer's file and the ConfigMap name are checked before
    // anything is pushed.
    let installer = read_installer(
        args.overrides.images_digests_from.as_deref(),
        args.overrides.configmap.as_deref(),
    )?;
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

    let mut overridden = None;
    if !args.dry_run {
        let loaded = report.loaded_bundle(&bundle);
        let map = ImageMap::from_bundle(&loaded, &args.registry, args.keep_host)?;
        if let Some(path) = &args.map_out {
            write_atomic(path, &map.to_json())
                .with_context(|| format!("writing the map {}", path.display()))?;
        }
        if let (Some(path), Some((file, text))) = (&args.overrides.images_digests_out, &installer) {
            // Reported after the load's own result.
            let how = Override {
                registry: &args.registry,
                allow_missing: args.overrides.allow_missing,
                images_digests_tag: args.overrides.images_digests_tag,
                configmap: args.overrides.configmap.as_deref(),
            };
            overridden = Some(write_override(&how, path, file, text, &map));
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
        lines.extend(super::load::referrer_lines(&report.referrers, args.dry_run));
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
            "error: {failed} of {} artifacts were not loaded into {}; re-run to resume (what is in place is skipped)",
            report.artifacts.len(),
            report.registry
        );
        if args.map_out.is_some() || args.overrides.images_digests_out.is_some() {
            eprintln!("note: the map and override files list only what was loaded");
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

/// The installer's `images_digests.yml` (name, text), checked with the
/// ConfigMap name before anything is pushed.
pub(super) fn read_installer(
    from: Option<&std::path::Path>,
    configmap: Option<&str>,
) -> anyhow::Result<Option<(String, String)>> {
    let Some(path) = from else { return Ok(None) };
    let text = ferry::rewrite::read_text(path)?;
    let file = path.display().to_string();
    ferry::rewrite::check_images_digests(&file, &text)?;
    if let Some(name) = configmap {
        if !ferry::rewrite::is_object_name(name) {
            return Err(ferry::rewrite::OverrideError::Name(name.to_owned()).into());
        }
    }
    Ok(Some((file, text)))
}

/// How the installer's override is written (load's and mirror's flags).
pub(super) struct Override<'a> {
    /// `--registry`, for the note.
    pub registry: &'a str,
    /// `--allow-missing`.
    pub allow_missing: bool,
    /// `--images-digests-tag`.
    pub images_digests_tag: bool,
    /// `--configmap`.
    pub configmap: Option<&'a str>,
}

/// Writes the installer's override (or its ConfigMap) to `path`; returns
/// the note to print.
pub(super) fn write_override(
    args: &Override<'_>,
    path: &std::path::Path,
    file: &str,
    text: &str,
    map: &ImageMap,
) -> anyhow::Result<String> {
    let o = ferry::rewrite::images_digests_override(
        file,
        text,
        map,
        args.allow_missing,
        args.images_digests_tag,
    )
    .with_context(|| format!("nothing was written to {}", path.display()))?;
    let out = match args.configmap {
        Some(name) => ferry::rewrite::configmap(name, file, &o.text)?,
        None => o.text,
    };
    write_atomic(path, out.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    let entries: Vec<_> = o
        .entries
        .iter()
        .filter(|f| f.form == "images_digests")
        .collect();
    let pointed = entries
        .iter()
        .filter(|f| {
            matches!(
                f.outcome,
                ferry::rewrite::Outcome::Rewritten { .. } | ferry::rewrite::Outcome::AlreadyLocal
            )
        })
        .count();
    Ok(format!(
        "wrote {}{}: {pointed} of {} entries of {file} point at {}{}",
        path.display(),
        match args.configmap {
            Some(n) => format!(" (ConfigMap {n})"),
            None => String::new(),
        },
        entries.len(),
        args.registry,
        if pointed < entries.len() {
            format!(
                "; {} kept unchanged (--allow-missing)",
                entries.len() - pointed
            )
        } else {
            String::new()
        }
    ))
}

/// A line per referrer pushed (and one per note under it), for `load` and
/// `mirror`.
pub fn referrer_lines(referrers: &[ferry::load::ReferrerOutcome], dry_run: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for r in referrers {
        let at = match &r.tag {
            Some(t) => format!("{}:{t}", r.target),
            None => format!("{}@{}", r.target, r.digest),
        };
        lines.push(match &r.error {
            None if dry_run => format!("  would attach {} {at} to {}", r.kind, r.subject),
            None => format!("  attached {} {at} to {}", r.kind, r.subject),
            Some(e) => format!("  FAILED {} {at} (of {}): {e}", r.kind, r.subject),
        });
        lines.extend(r.notes.iter().map(|n| format!("    {n}")));
    }
    lines
}
