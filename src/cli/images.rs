//! `ferry images PATH…`: every image reference that manifests, values
//! files, compose files, kustomizations, an installer's
//! `images_digests.yml` and the YAML in their block scalars name, with its
//! file and line: what `pack` must carry for them (the connected-side twin
//! of `rewrite --check`). The same reader feeds `images: [{from: PATH}]`.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry::rewrite::find_images;

use super::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories (walked for .yaml, .yml and .json; links
    /// under them are not followed).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print each distinct reference once, nothing else (an images.txt
    /// for `ferry pack`).
    #[arg(long, conflicts_with = "json")]
    pub unique: bool,
    /// Print the listing as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, _: &Settings) -> anyhow::Result<ExitCode> {
    let listing = find_images(&args.paths)?;
    let distinct = listing.distinct();
    let at = |file: &std::path::Path, line: usize, block: &Option<String>| match block {
        Some(b) => format!("{}:{line} (in {b})", file.display()),
        None => format!("{}:{line}", file.display()),
    };
    if args.json {
        let v = serde_json::json!({
            "images": listing.images,
            "distinct": distinct,
            "skipped": listing.skipped,
            "not_followed": listing
                .not_followed
                .iter()
                .map(|n| n.file.path.display().to_string())
                .collect::<Vec<_>>(),
            "files": listing.files,
        });
        super::print_json(&serde_json::to_string_pretty(&v)?)?;
    } else if args.unique {
        // Parsed and printed by ferry: no control characters to escape.
        let text: String = distinct.iter().flat_map(|r| [*r, "\n"]).collect();
        super::write_stdout(&text)?;
    } else {
        let lines: Vec<String> = listing
            .images
            .iter()
            .map(|i| format!("{}  {}", i.reference, at(&i.file, i.line, &i.block)))
            .collect();
        super::print_result(&lines)?;
    }
    let mut unreadable = Vec::new();
    for s in &listing.skipped {
        let where_ = at(&s.file, s.line, &s.block);
        if s.unreadable {
            unreadable.push(where_.clone());
        }
        if !args.json {
            let what = if s.written.is_empty() {
                String::new()
            } else {
                format!("{}  ", s.written)
            };
            eprintln!(
                "{}",
                super::escape_controls(&format!(
                    "{} {where_}  {what}({})",
                    if s.unreadable { "NOT READ" } else { "skipped" },
                    s.reason
                ))
            );
        }
    }
    let mut unvouched = Vec::new();
    for n in &listing.not_followed {
        eprintln!(
            "note: {} is a {}: not followed",
            n.file.path.display(),
            n.kind
        );
        if n.may_hold_documents {
            unvouched.push(n.file.path.display().to_string());
        }
    }
    eprintln!(
        "{} reference(s), {} distinct, in {} file(s); {} value(s) skipped",
        listing.images.len(),
        distinct.len(),
        listing.files,
        listing.skipped.len()
    );
    let why = super::rewrite::not_read(&unreadable, &unvouched);
    let code = if why.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the list may be incomplete: {}", why.join("; "));
        ExitCode::FAILURE
    };
    // Hundreds of thousands of small strings: the process is about to
    // exit, which frees them at once (dropping them one by one took a
    // tenth of the run).
    std::mem::forget(listing);
    Ok(code)
}
