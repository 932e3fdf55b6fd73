//! `ferry diff OLD NEW [--json] [--max-growth P%]`.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry::diff::{Change, Status, Total};

use super::{human, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The old bundle: an archive (its first volume), or a bundle.json.
    #[arg(value_name = "ARCHIVE")]
    pub old: PathBuf,
    /// The new bundle: an archive (its first volume), or a bundle.json.
    #[arg(value_name = "ARCHIVE")]
    pub new: PathBuf,
    /// Require a signature of bundle.json by this minisign public key on
    /// both archives (a bare bundle.json carries none).
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when an image in both bundles grew by more than this many
    /// percent (`20%` or `20`).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub max_growth: Option<f64>,
    /// Also list the artifacts that did not change.
    #[arg(long)]
    pub all: bool,
}

/// `--json`: the diff, and the threshold's verdict when one was given.
#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    diff: &'a ferry::diff::Diff,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_growth: Option<Threshold<'a>>,
}

#[derive(serde::Serialize)]
struct Threshold<'a> {
    percent: f64,
    ok: bool,
    over: Vec<&'a Change>,
}

pub fn run(args: Args, _settings: &Settings) -> anyhow::Result<ExitCode> {
    let d = ferry::diff::diff(&args.old, &args.new, args.key.as_deref())?;
    let over = args.max_growth.map(|p| (p, d.grown(p)));
    let status = match &over {
        Some((_, o)) if !o.is_empty() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    };
    if args.json {
        let out = Out {
            diff: &d,
            max_growth: over.as_ref().map(|(p, o)| Threshold {
                percent: *p,
                ok: o.is_empty(),
                over: o.clone(),
            }),
        };
        super::print_json(&serde_json::to_string_pretty(&out)?)?;
        return Ok(status);
    }
    let mut lines = Vec::new();
    for (label, b) in [("old", &d.old), ("new", &d.new)] {
        lines.push(format!(
            "{label}:  {} (bundle {}, {} images, {} artifacts)",
            b.path.display(),
            b.name,
            b.images,
            b.artifacts
        ));
    }
    let shown: Vec<&Change> = d
        .artifacts
        .iter()
        .filter(|c| args.all || c.status != Status::Unchanged)
        .collect();
    if !shown.is_empty() {
        lines.push(String::new());
    }
    for c in shown {
        lines.push(row(c));
    }
    lines.push(String::new());
    lines.push(format!(
        "artifacts: {} added, {} removed, {} changed, {} unchanged",
        d.count(Status::Added),
        d.count(Status::Removed),
        d.count(Status::Changed),
        d.count(Status::Unchanged)
    ));
    lines.push(format!("images:    {}", total(&d.images)));
    lines.push(format!("content:   {}", total(&d.content)));
    if let Some((p, o)) = &over {
        match o.as_slice() {
            [] => lines.push(format!("OK: no image grew more than {p} %")),
            o => {
                lines.push(format!(
                    "FAILED: {} image{} grew more than {p} %:",
                    o.len(),
                    if o.len() == 1 { "" } else { "s" }
                ));
                for c in o {
                    lines.push(format!(
                        "  {} {}",
                        c.new
                            .as_ref()
                            .map_or(c.repository.as_str(), |s| &s.reference),
                        percent(c.growth)
                    ));
                }
            }
        }
    }
    super::print_result(&lines)?;
    Ok(status)
}

/// One artifact: status, kind, repository, tags, sizes, growth.
fn row(c: &Change) -> String {
    let tag = |s: &ferry::diff::Side| {
        s.reference
            .strip_prefix(&c.repository)
            .unwrap_or(&s.reference)
            .to_owned()
    };
    let kind = format!("{:?}", c.kind).to_lowercase();
    let status = format!("{:?}", c.status).to_lowercase();
    match (&c.old, &c.new) {
        (Some(o), Some(n)) => {
            let tags = match (tag(o), tag(n)) {
                (a, b) if a == b => a,
                (a, b) => format!("{a} -> {}", b.trim_start_matches(':')),
            };
            format!(
                "  {status:<9} {kind:<5} {}{tags}  {} -> {}  {}{}",
                c.repository,
                human(o.size),
                human(n.size),
                signed(c.delta),
                match c.growth {
                    Some(_) => format!(" ({})", percent(c.growth)),
                    None => String::new(),
                }
            )
        }
        (None, Some(s)) | (Some(s), None) => {
            format!("  {status:<9} {kind:<5} {}  {}", s.reference, human(s.size))
        }
        (None, None) => format!("  {status:<9} {kind:<5} {}", c.repository),
    }
}

/// `1.2 MiB -> 1.4 MiB, +204.8 KiB (+16.7 %)`.
fn total(t: &Total) -> String {
    format!(
        "{} -> {}, {}{}",
        human(t.old),
        human(t.new),
        signed(t.delta),
        match t.growth {
            Some(_) => format!(" ({})", percent(t.growth)),
            None => String::new(),
        }
    )
}

/// `+204.8 KiB`, `-1.0 MiB`, `±0 B`.
fn signed(delta: i64) -> String {
    match delta {
        0 => "±0 B".into(),
        d if d > 0 => format!("+{}", human(d.unsigned_abs())),
        d => format!("-{}", human(d.unsigned_abs())),
    }
}

/// `+16.7 %`.
fn percent(g: Option<f64>) -> String {
    match g {
        Some(g) => format!("{g:+.1} %"),
        None => "new".into(),
    }
}

/// `20%`, `20`, `7.5 %`: a growth threshold in percent.
fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let n = t.strip_suffix('%').unwrap_or(t).trim();
    match n.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage (try 20%)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_thresholds_parse_with_or_without_a_percent_sign() {
        assert_eq!(parse_percent("20%"), Ok(20.0));
        assert_eq!(parse_percent(" 7.5 % "), Ok(7.5));
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert!(parse_percent("-5%").is_err());
        assert!(parse_percent("twenty").is_err());
        assert!(parse_percent("NaN").is_err());
        assert!(parse_percent("inf").is_err());
    }
}
