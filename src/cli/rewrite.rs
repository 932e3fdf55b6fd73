//! `ferry rewrite`: point image references in YAML/JSON at the local
//! registry, exactly, and say what the bundle does not carry.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ferry::rewrite::{
    collect_inputs, find, read_text, rewrite, Found, ImageMap, InputFile, Inputs, Outcome,
    RewriteOptions,
};

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
    /// Write the whole tree under this directory (same relative paths):
    /// YAML and JSON rewritten, other files copied, links left out.
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
        ..RewriteOptions::default()
    };
    let inputs = collect_inputs(&args.paths)?;
    if let Some(dir) = &args.output {
        refuse_output_inside_inputs(dir, &args.paths)?;
    }
    // Everything is computed before anything is written: a bad file stops
    // the run with every file untouched.
    // Files are read and rewritten in parallel, and reported in order.
    use rayon::prelude::*;
    let done: Vec<Result<Rewritten<'_>, String>> = inputs
        .documents
        .par_iter()
        .map(|f| {
            let text = read_text(&f.path).map_err(|e| super::chain(&e))?;
            // --check writes nothing: the references alone, no new text.
            let r = match args.check {
                true => find(&text, &map, opts).map(|found| (String::new(), String::new(), found)),
                false => rewrite(&text, &map, opts).map(|(out, found)| (text, out, found)),
            };
            r.map(|(text, out, found)| (f, text, out, found))
                .map_err(|e| format!("{}: {e}", f.path.display()))
        })
        .collect();
    let mut results = Vec::with_capacity(done.len());
    let mut errors = Vec::new();
    for r in done {
        match r {
            Ok(r) => results.push(r),
            Err(e) => errors.push(e),
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
    let mut unreadable = Vec::new();
    let mut report = Vec::new();
    let mut lines = Vec::new();
    for (f, _, _, found) in &results {
        for x in found {
            let at = match &x.block {
                Some(b) => format!("{}:{} (in {b})", f.path.display(), x.line),
                None => format!("{}:{}", f.path.display(), x.line),
            };
            match &x.outcome {
                Outcome::NotInBundle => missing += 1,
                Outcome::Unreadable { .. } => unreadable.push(at.clone()),
                _ => {}
            }
            if args.json {
                let mut v = serde_json::to_value(x)?;
                v["file"] = f.path.display().to_string().into();
                report.push(v);
            } else {
                let what = match &x.outcome {
                    Outcome::Rewritten { to } => format!("-> {to}"),
                    Outcome::AlreadyLocal => "already local".into(),
                    Outcome::NotInBundle => "NOT IN BUNDLE".into(),
                    Outcome::Skipped { reason } => format!("skipped ({reason})"),
                    Outcome::Unreadable { reason } => format!("NOT READ ({reason})"),
                };
                let reference = if x.reference.is_empty() {
                    "-"
                } else {
                    &x.reference
                };
                lines.push(format!("{at}  {}  {reference}  {what}", x.form));
            }
        }
    }
    if args.json {
        super::print_json(&serde_json::to_string_pretty(&report)?)?;
    } else {
        super::print_result(&lines)?;
    }
    // Links and special files under the directories are never followed.
    let mut unvouched = Vec::new();
    for n in &inputs.not_followed {
        eprintln!(
            "note: {} is a {}: not followed{}",
            n.file.path.display(),
            n.kind,
            if args.output.is_some() {
                " and not copied"
            } else {
                ""
            }
        );
        if n.may_hold_documents {
            unvouched.push(n.file.path.display().to_string());
        }
    }
    if args.check || args.strict {
        let mut why = Vec::new();
        if missing > 0 {
            why.push(format!(
                "{missing} image reference(s) are not in the bundle"
            ));
        }
        why.extend(not_read(&unreadable, &unvouched));
        if !why.is_empty() {
            eprintln!("{}; nothing was written", why.join("; "));
            return Ok(ExitCode::FAILURE);
        }
    }
    if !args.check {
        if let Some(dir) = &args.output {
            write_tree(dir, &inputs, &results)?;
        } else if args.in_place {
            write_in_place(&results)?;
        } else {
            let changed = results.iter().filter(|r| r.1 != r.2).count();
            if changed > 0 {
                eprintln!(
                    "{changed} file(s) would change; pass -o DIR or --in-place to write them"
                );
            }
        }
    }
    if missing > 0 {
        eprintln!("warning: {missing} image reference(s) are not in the bundle");
    }
    if !unreadable.is_empty() {
        eprintln!(
            "warning: {} block(s) that name a registry could not be read: {}",
            unreadable.len(),
            unreadable.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

type Rewritten<'a> = (&'a InputFile, String, String, Vec<Found>);

/// `-o DIR`: the whole tree. YAML and JSON are written rewritten (or as
/// they were), every other file is copied byte for byte, empty
/// directories are made, links are left out (and were reported). Every
/// destination is checked, then every file staged, then all renamed.
/// Why a check cannot vouch for what it was given: blocks naming a
/// registry that could not be read, and links not followed (`rewrite
/// --check` and `ferry images` fail on both).
pub fn not_read(unreadable: &[String], unvouched: &[String]) -> Vec<String> {
    let mut why = Vec::new();
    if !unreadable.is_empty() {
        why.push(format!(
            "{} block(s) that name a registry could not be read ({})",
            unreadable.len(),
            unreadable.join(", ")
        ));
    }
    if !unvouched.is_empty() {
        why.push(format!(
            "{} link(s) that may lead to manifests were not followed ({})",
            unvouched.len(),
            unvouched.join(", ")
        ));
    }
    why
}

fn write_tree(dir: &Path, inputs: &Inputs, results: &[Rewritten<'_>]) -> anyhow::Result<()> {
    for rel in &inputs.dirs {
        output_path(dir, rel)?;
    }
    for f in results.iter().map(|r| r.0).chain(&inputs.others) {
        output_path(dir, &f.rel)?;
    }
    fs_err::create_dir_all(dir)?;
    for rel in &inputs.dirs {
        fs_err::create_dir_all(output_path(dir, rel)?)?;
    }
    let mut staged = Vec::new();
    let mut changed = 0;
    for (f, text, out, _) in results {
        changed += usize::from(out != text);
        let dest = output_path(dir, &f.rel)?;
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let s = ferry::layout::stage(&dest, out.as_bytes())
            .with_context(|| format!("writing {}; no file was changed", dest.display()))?;
        // A copy keeps its source's permissions (a private values file
        // stays private).
        if let Ok(m) = std::fs::metadata(&f.path) {
            s.set_permissions(m.permissions())?;
        }
        staged.push(s);
    }
    for f in &inputs.others {
        let dest = output_path(dir, &f.rel)?;
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let s = ferry::layout::stage_copy(&dest, &f.path).with_context(|| {
            format!(
                "copying {} to {}; no file was changed",
                f.path.display(),
                dest.display()
            )
        })?;
        staged.push(s);
    }
    commit_all(staged)?;
    let mut summary = format!(
        "wrote {} file(s) under {}: {changed} rewritten, {} YAML/JSON unchanged, {} other file(s) copied",
        results.len() + inputs.others.len(),
        dir.display(),
        results.len() - changed,
        inputs.others.len()
    );
    if !inputs.not_followed.is_empty() {
        summary.push_str(&format!(
            "; {} link(s) or special file(s) not copied",
            inputs.not_followed.len()
        ));
    }
    eprintln!("{}", super::escape_controls(&summary));
    Ok(())
}

/// `--in-place`: the files that change, each staged, then all renamed.
fn write_in_place(results: &[Rewritten<'_>]) -> anyhow::Result<()> {
    // Every output is written in full under a temp name first; only then
    // are they renamed into place, so a failure while writing (a full
    // disk, a read-only file) leaves every file as it was.
    let mut staged = Vec::new();
    for (f, text, out, _) in results {
        if out == text {
            continue;
        }
        let s = ferry::layout::stage(&f.path, out.as_bytes())
            .with_context(|| format!("writing {}; no file was changed", f.path.display()))?;
        staged.push(s);
    }
    let n = staged.len();
    commit_all(staged)?;
    eprintln!("rewrote {n} file(s) in place");
    Ok(())
}

fn commit_all(staged: Vec<ferry::layout::Staged>) -> anyhow::Result<()> {
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
    Ok(())
}

/// An output directory inside a directory being read would be read again
/// by the next run (and copied into itself).
fn refuse_output_inside_inputs(dir: &Path, inputs: &[PathBuf]) -> anyhow::Result<()> {
    // The output may not exist yet: resolve its deepest existing ancestor.
    let abs = std::path::absolute(dir)?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(n)) => {
                rest.push(n.to_owned());
                existing = p;
            }
            _ => break,
        }
    }
    let mut out = fs_err::canonicalize(existing).unwrap_or_else(|_| existing.to_owned());
    out.extend(rest.iter().rev());
    for p in inputs {
        if !p.is_dir() {
            continue;
        }
        let input = fs_err::canonicalize(p)?;
        if out.starts_with(&input) {
            bail!(
                "the output directory {} is inside the input directory {}; choose one outside it",
                dir.display(),
                p.display()
            );
        }
    }
    Ok(())
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
