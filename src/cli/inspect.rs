//! `ferry inspect ARCHIVE`.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry::bundle::ArtifactKind;

use super::{human, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive.
    /// For a split archive: its first volume (OUT.001), the name the
    /// volumes share (OUT), or the whole set (OUT.*).
    #[arg(required = true, num_args = 1.., value_name = "ARCHIVE")]
    pub archive: Vec<PathBuf>,
    /// Require a signature of bundle.json by this minisign public key,
    /// checked on the archive as read, before anything in it is used.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, _: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    let i = ferry::unpack::inspect(&archive, args.key.as_deref())?;
    if args.json {
        super::print_json(&serde_json::to_string_pretty(&i)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Through print_result: what bundle.json says is shown, never obeyed.
    let mut lines: Vec<String> = Vec::new();
    lines.push(format!("bundle:   {}", i.name));
    if let Some(comment) = &i.signature {
        lines.push(format!("signature OK: {comment}"));
    }
    lines.push(format!(
        "archive:  {} ({}{})",
        i.archive.display(),
        human(i.archive_bytes),
        if i.compressed {
            format!(", zstd-compressed from {}", human(i.content_bytes))
        } else {
            String::new()
        }
    ));
    if !i.volumes.is_empty() {
        lines.push(format!("volumes:  {}", i.volumes.len()));
        for v in &i.volumes {
            lines.push(format!("          {}", v.display()));
        }
    }
    if let Some(d) = &i.delta {
        lines.push(format!(
            "delta:    against {} ({} blobs, {} left out; inventory {})",
            d.base,
            d.absent.len(),
            human(d.absent.iter().map(|b| b.size).sum()),
            d.inventory
        ));
    }
    lines.push(format!(
        "format:   {} (written by ferry {})",
        i.format_version, i.tool_version
    ));
    lines.push(format!(
        "members:  {} ({} of content)",
        i.members,
        human(i.content_bytes)
    ));
    for (kind, title) in [
        (ArtifactKind::Image, "images"),
        (ArtifactKind::Chart, "charts"),
        (ArtifactKind::File, "files"),
    ] {
        let list: Vec<_> = i.artifacts.iter().filter(|a| a.kind == kind).collect();
        if list.is_empty() {
            continue;
        }
        lines.push(String::new());
        lines.push(format!("{title}:"));
        for a in list {
            lines.push(format!("  {}", a.reference));
            lines.push(format!("    digest     {}", a.digest));
            match (a.source_digest, a.converted.is_empty()) {
                (Some(src), true) => lines.push(format!("    source     {src} (index rewritten by the platform filter; targets get the digest above)")),
                (Some(src), false) => {
                    lines.push(format!("    source     {src} (converted to OCI by pack --oci; signatures made for the source digests do not apply)"));
                    for c in a.converted.iter().filter(|c| c.from != src) {
                        lines.push(format!(
                            "    converted  {} -> {}{}",
                            c.from,
                            c.to,
                            c.platform.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
                        ));
                    }
                }
                (None, _) => {}
            }
            if ferry::oci::is_docker_document(&a.media_type) {
                lines.push("    format     Docker schema 2: skopeo's oci: and podman's oci-archive: do not see it in the layout; ctr, ferry load, serve and export do (or pack --oci)".to_owned());
            }
            lines.push(format!("    size       {}", human(a.size)));
            if !a.platforms.is_empty() {
                lines.push(format!("    platforms  {}", a.platforms.join(", ")));
            }
            if let Some(c) = &a.chart {
                lines.push(format!(
                    "    chart      {} {}{}",
                    c.name,
                    c.version,
                    c.app_version
                        .as_ref()
                        .map(|v| format!(" (app {v})"))
                        .unwrap_or_default()
                ));
            }
            if let Some(f) = &a.file {
                lines.push(format!(
                    "    file       {}{}",
                    f.title,
                    if f.directory { "/ (directory)" } else { "" }
                ));
            }
            lines.push(format!("    from       {}", a.source));
        }
    }
    super::print_result(&lines)?;
    Ok(ExitCode::SUCCESS)
}
