//! `ferry rewrite`: point image references in YAML/JSON at the local
//! registry, exactly, and say what the bundle does not carry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ferry::rewrite::{collect_files, rewrite, ImageMap, Outcome, RewriteOptions};

use super::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories (walked for .yaml, .yml and .json).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// A ferry map file (source → target with digests).
    #[arg(long, conflicts_with_all = ["bundle", "registry", "key", "keep_host"])]
    pub map: Option<PathBuf>,
    /// Compute the map from this archive instead of a map file.
    #[arg(long, requires = "registry", value_name = "ARCHIVE")]
    pub bundle: Option<PathBuf>,
    /// Require a signature of bundle.json by this minisign public key,
    /// checked on the archive as read, before anything in it is used (with --bundle).
    #[arg(long, value_name = "PUB", requires = "bundle")]
    pub key: Option<PathBuf>,
    /// With --bundle: the target registry, HOST[:PORT][/PREFIX].
    #[arg(long, requires = "bundle")]
    pub registry: Option<String>,
    /// With --bundle: keep the source host as a path component.
    #[arg(long, requires = "bundle")]
    pub keep_host: bool,
    /// Pin every rewritten reference to the digest the target holds.
    #[arg(long)]
    pub pin_digest: bool,
    /// Write rewritten copies under this directory (same relative paths).
    #[arg(short, long, conflicts_with = "in_place")]
    pub output: Option<PathBuf>,
    /// Rewrite the files themselves (each via temp file + rename).
    #[arg(long)]
    pub in_place: bool,
    /// Change nothing; exit 1 if any image is not in the bundle.
    #[arg(long, conflicts_with_all = ["output", "in_place"])]
    pub check: bool,
    /// Exit 1, writing nothing, if any image is not in the bundle.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, _: &Settings) -> anyhow::Result<ExitCode> {
    let map = match (&args.map, &args.bundle, &args.registry) {
        (Some(m), _, _) => ImageMap::from_json(&fs_err::read(m)?)
            .with_context(|| format!("reading map {}", m.display()))?,
        (None, Some(b), Some(r)) => {
            let bundle = ferry::inventory::read_bundle(b, args.key.as_deref())?;
            ImageMap::from_bundle(&bundle, r, args.keep_host)?
        }
        _ => bail!(
            "name the images with --map MAP, or --bundle ARCHIVE --registry HOST[:PORT][/PREFIX]"
        ),
    };
    let opts = RewriteOptions {
        pin_digest: args.pin_digest,
    };
    let files = collect_files(&args.paths)?;
    // Everything is computed before anything is written: a bad file stops
    // the run with every file untouched.
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (path, rel) in files {
        let text = match fs_err::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{e}"));
                continue;
            }
        };
        match rewrite(&text, &map, opts) {
            Ok((out, found)) => results.push((path, rel, text, out, found)),
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        bail!(
            "{} file(s) could not be rewritten; nothing was written",
            errors.len()
        );
    }

    let mut missing = 0;
    let mut report = Vec::new();
    for (path, _, _, _, found) in &results {
        for f in found {
            if f.outcome == Outcome::NotInBundle {
                missing += 1;
            }
            if args.json {
                let mut v = serde_json::to_value(f)?;
                v["file"] = path.display().to_string().into();
                report.push(v);
            } else {
                let what = match &f.outcome {
                    Outcome::Rewritten { to } => format!("-> {to}"),
                    Outcome::AlreadyLocal => "already local".into(),
                    Outcome::NotInBundle => "NOT IN BUNDLE".into(),
                    Outcome::Skipped { reason } => format!("skipped ({reason})"),
                };
                println!(
                    "{}:{}  {}  {}  {what}",
                    path.display(),
                    f.line,
                    f.form,
                    f.reference
                );
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let failing = missing > 0 && (args.check || args.strict);
    if failing {
        eprintln!("{missing} image reference(s) are not in the bundle; nothing was written");
        return Ok(ExitCode::FAILURE);
    }
    let mut changed = 0;
    if !args.check {
        // Every destination checked before the first is written.
        if let Some(dir) = &args.output {
            for (_, rel, text, out, _) in &results {
                if out != text {
                    output_path(dir, rel)?;
                }
            }
        }
        // Every output is written in full under a temp name first; only
        // then are they renamed into place, so a failure while writing
        // (a full disk, a read-only file) leaves every file as it was.
        let mut staged = Vec::new();
        for (path, rel, text, out, _) in &results {
            if out == text {
                continue;
            }
            changed += 1;
            let dest = match (&args.output, args.in_place) {
                (_, true) => path.clone(),
                (Some(dir), false) => {
                    let dest = output_path(dir, rel)?;
                    if let Some(parent) = dest.parent() {
                        fs_err::create_dir_all(parent)?;
                    }
                    dest
                }
                (None, false) => continue,
            };
            let s = ferry::layout::stage(&dest, out.as_bytes())
                .with_context(|| format!("writing {}; no file was changed", dest.display()))?;
            staged.push(s);
        }
        let mut written: Vec<String> = Vec::new();
        for s in staged {
            let path = s.path().to_owned();
            s.commit().with_context(|| {
                format!(
                    "writing {}; written before it: {}",
                    path.display(),
                    if written.is_empty() {
                        "none".into()
                    } else {
                        written.join(", ")
                    }
                )
            })?;
            written.push(path.display().to_string());
        }
        if args.output.is_none() && !args.in_place && changed > 0 {
            eprintln!("{changed} file(s) would change; pass -o DIR or --in-place to write them");
        }
    }
    if missing > 0 {
        eprintln!("warning: {missing} image reference(s) are not in the bundle");
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `rel` goes under the output root `dir`: never through a link
/// (one planted under the root would send the file elsewhere) and never
/// out of the root.
fn output_path(dir: &std::path::Path, rel: &std::path::Path) -> anyhow::Result<PathBuf> {
    use std::path::Component;
    let mut at = dir.to_owned();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            anyhow::bail!(
                "refusing to write {} under {}: the path leaves the output directory",
                rel.display(),
                dir.display()
            );
        };
        at.push(name);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            anyhow::bail!(
                "refusing to write {} under {}: {} is a symbolic link",
                rel.display(),
                dir.display(),
                at.display()
            );
        }
    }
    Ok(at)
}
