//! `ferry inspect ARCHIVE`, with `--verify` and the HTML report
//! (`--html FILE`).

use std::path::PathBuf;
use std::process::ExitCode;

use ferry::bundle::ArtifactKind;
use ferry::bundle_report::{ImageReport, Uncompressed};
use ferry::unpack::Inspection;
use ferry::verify::VerifyReport;

use super::{human, progress::Bars, Settings};

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
    /// Also write the bundle report, one self-contained HTML page, to
    /// FILE (`-`: stdout, instead of the listing).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also verify the archive (as `ferry verify`) and show the result;
    /// exit 1 when it finds problems (the report is still written).
    #[arg(long)]
    pub verify: bool,
    /// Count uncompressed sizes by decompressing every layer once, instead
    /// of estimating them from the layers' gzip trailers and zstd headers.
    #[arg(long)]
    pub exact: bool,
}

/// `--json`: the inspection, the sizes under `sizes`, and with
/// `--verify`, verify's report under `verify`.
#[derive(serde::Serialize)]
struct Verified<'a> {
    #[serde(flatten)]
    inspection: &'a Inspection,
    sizes: Sizes<'a>,
    /// Signatures, attestations, SBOMs and other referrers, with the
    /// artifact each belongs to (docs/supply-chain.md).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    referrers: &'a [ferry::bundle_report::Referrer],
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<&'a VerifyReport>,
}

/// `sizes` in `--json` (docs/sizes.md): how uncompressed sizes were told,
/// why none could be, and each image with its platforms.
#[derive(serde::Serialize)]
struct Sizes<'a> {
    /// `estimate` or `exact`.
    uncompressed: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    images: &'a [ImageReport],
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    let to_stdout = args.html.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout && args.json {
        anyhow::bail!("--html - and --json both write to stdout; give --html a file name");
    }
    let bars = Bars::new(settings.quiet);
    let start = std::time::Instant::now();
    // One open of the archive for everything (and the key checked on it).
    let options = ferry::bundle_report::Options {
        verify: args.verify,
        exact: args.exact,
    };
    let report = ferry::bundle_report::gather_with(&archive, args.key.as_deref(), options, &bars)?;
    let mut written = None;
    if let Some(path) = &args.html {
        if to_stdout {
            super::write_stdout(&ferry::bundle_report::html::render(&report))?;
        } else {
            ferry::bundle_report::write_html(&report, path)?;
            written = Some(written_line(path, &report));
        }
    }
    let i = &report.inspection;
    let verified = &report.verify;
    let secs = start.elapsed().as_secs_f64();
    let status = match &verified {
        Some(v) if !v.is_ok() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    };
    if args.json {
        let out = Verified {
            inspection: i,
            sizes: Sizes {
                uncompressed: if report.exact { "exact" } else { "estimate" },
                note: report.uncompressed_note.as_deref(),
                images: &report.images,
            },
            referrers: &report.referrers,
            verify: verified.as_ref(),
        };
        super::print_json(&serde_json::to_string_pretty(&out)?)?;
        return Ok(status);
    }
    if to_stdout {
        return Ok(status);
    }
    if let Some(line) = written {
        // The page has it all: one line for the file, and verify's verdict.
        let mut lines = vec![line];
        if let Some(v) = &verified {
            lines.extend(super::verify::lines(v, secs));
        }
        super::print_result(&lines)?;
        return Ok(status);
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
    if let Some(note) = sizes_note(&report) {
        lines.push(format!("sizes:    {note}"));
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
        for (n, a) in list.into_iter().enumerate() {
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
            // Images: what a pull transfers and what it unpacks to, in
            // all and per platform (report.images is the images in order).
            let img = report.images.get(n);
            match img.filter(|i| kind == ArtifactKind::Image && i.reference == a.reference) {
                Some(img) => {
                    lines.push(format!(
                        "    size       {} compressed, {} uncompressed",
                        human(img.compressed),
                        shown(&img.uncompressed)
                    ));
                    if !a.platforms.is_empty() {
                        lines.push(format!("    platforms  {}", a.platforms.join(", ")));
                    }
                    for p in img
                        .platforms
                        .iter()
                        .filter(|p| !is_attestation(&p.platform))
                    {
                        lines.push(format!(
                            "    platform   {}: {} compressed, {} uncompressed, {} layer{}",
                            if p.platform.is_empty() {
                                "unnamed"
                            } else {
                                &p.platform
                            },
                            human(p.compressed),
                            shown(&p.uncompressed),
                            p.layers,
                            if p.layers == 1 { "" } else { "s" }
                        ));
                    }
                    if let Some(problem) = &img.problem {
                        lines.push(format!("    sizes      incomplete: {problem}"));
                    }
                }
                None => {
                    lines.push(format!("    size       {}", human(a.size)));
                    if !a.platforms.is_empty() {
                        lines.push(format!("    platforms  {}", a.platforms.join(", ")));
                    }
                }
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
            for x in report.referrers.iter().filter(|x| {
                x.kind != "artifact" && x.subject_reference.as_deref() == Some(a.reference.as_str())
            }) {
                lines.push(format!(
                    "    {:<10} {} ({}, {}{}){}",
                    x.kind,
                    x.reference,
                    if x.artifact_type.is_empty() {
                        "no artifact type"
                    } else {
                        &x.artifact_type
                    },
                    human(x.size),
                    if x.subject == a.digest {
                        String::new()
                    } else {
                        format!(", on {}", x.subject)
                    },
                    x.verified_by
                        .as_deref()
                        .map(|v| format!(" verified at pack by {v}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    if let Some(v) = &verified {
        lines.push(String::new());
        lines.extend(super::verify::lines(v, secs));
    }
    super::print_result(&lines)?;
    Ok(status)
}

/// `report: FILE (…)`, what `--html FILE` prints.
fn written_line(path: &std::path::Path, r: &ferry::bundle_report::Report) -> String {
    let platforms: usize = r.images.iter().map(|i| i.platforms.len()).sum();
    let shared = match r.sharing.layers.len() {
        0 => "no layer shared between images".to_owned(),
        n => format!(
            "{n} layers shared between images save {}",
            human(r.sharing.saved)
        ),
    };
    format!(
        "report: {} ({} images, {} platforms; {shared})",
        path.display(),
        r.images.len(),
        platforms,
    )
}

/// An uncompressed size as printed (`≈` an estimate, `≥` some unknown).
pub fn shown(u: &Uncompressed) -> String {
    u.shown()
}

/// Attestation manifests (`unknown/unknown`) are listed in `--json` but not
/// as platforms in the listing.
fn is_attestation(platform: &str) -> bool {
    platform.starts_with("unknown/")
}

/// The line saying how precise uncompressed sizes are, when they are not
/// all exact.
fn sizes_note(r: &ferry::bundle_report::Report) -> Option<String> {
    if let Some(note) = &r.uncompressed_note {
        return Some(format!("uncompressed sizes: {note}"));
    }
    let approximate = r.images.iter().any(|i| i.uncompressed.approximate);
    let unknown = r.images.iter().any(|i| i.uncompressed.unknown > 0);
    let mut parts = Vec::new();
    if approximate {
        parts
            .push("≈ an estimate from a layer's gzip trailer or zstd header (--exact counts them)");
    }
    if unknown {
        parts.push("≥ a sum with layers of unknown size");
    }
    match parts.is_empty() {
        true => None,
        false => Some(format!("uncompressed: {}", parts.join("; "))),
    }
}
