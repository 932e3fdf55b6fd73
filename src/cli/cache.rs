//! `ferry cache ls|prune|gc`: what the fetch cache holds, and keeping it
//! in bounds (docs/fetch.md, "The cache").

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ferry::cache::{self, Cache, GcReport, Listed, Listing};
use ferry::inputs::Spec;

use super::{human, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// List the cache: its size, what each record resolved to, and what
    /// no record needs.
    Ls(LsArgs),
    /// Drop the records not used for a while (--older-than) or not needed
    /// by specs (--keep), then remove what no record needs (as gc).
    Prune(PruneArgs),
    /// Remove every blob no record needs, and temp files interrupted runs
    /// left.
    Gc(GcArgs),
}

#[derive(Debug, clap::Args)]
pub struct Where {
    /// The cache. Default: $FERRY_CACHE, else $XDG_CACHE_HOME/ferry, else
    /// ~/.cache/ferry.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Fail at once when another ferry holds the cache, instead of waiting
    /// for it.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).args(["older_than", "keep"])))]
pub struct PruneArgs {
    /// Drop the records last used longer ago than this: a whole number
    /// and a unit, s, m, h, d or w (30d, 12h, 2w).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<u64>,
    /// Keep only the records these specs need (resolved from what the
    /// cache recorded, without the network: a tag is what it was last
    /// fetched as, a chart version range the highest version recorded);
    /// drop the rest.
    #[arg(long, value_name = "SPEC", num_args = 1..)]
    pub keep: Vec<PathBuf>,
    /// Say what would be dropped and removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub at: Where,
}

/// The cache directory: `--cache`, else the default.
pub fn dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given.or_else(cache::default_dir) {
        Some(d) => Ok(d),
        None => bail!(
            "no cache directory: give --cache DIR, or set $FERRY_CACHE, $XDG_CACHE_HOME or $HOME"
        ),
    }
}

pub fn run(args: Args, _settings: &Settings) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::Ls(a) => ls(a),
        Sub::Prune(a) => prune(a),
        Sub::Gc(a) => {
            let dir = dir(a.at.cache.clone())?;
            collect(&dir, &a.at, a.dry_run, &|_| None, Vec::new())
        }
    }
}

/// Said on stderr when the lock is held by someone else.
fn waiting(dir: &Path) -> impl Fn() + '_ {
    move || {
        eprintln!(
            "waiting for the cache {}: another ferry (a pack, or a `ferry cache` command) is using it",
            dir.display()
        )
    }
}

fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let dir = dir(a.at.cache.clone())?;
    let now = cache::now();
    let listing = match Cache::open(&dir)? {
        None => Listing::empty(&dir),
        Some(c) => {
            let wait = waiting(&dir);
            let _lock = c.lock_shared((!a.at.no_wait).then_some(&wait as &dyn Fn()))?;
            c.survey()?.listing(now)
        }
    };
    for b in &listing.bad_records {
        eprintln!(
            "warning: record file {} cannot be read ({}); `ferry cache gc` removes it",
            b.file.display(),
            b.why
        );
    }
    if a.at.json {
        super::print_json(&serde_json::to_string_pretty(&listing)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines = vec![format!(
        "cache {}: {} in {} blobs, {} records",
        dir.display(),
        human(listing.blobs.size),
        listing.blobs.count,
        listing.records.len()
    )];
    for r in &listing.records {
        lines.push(format!("  {}", describe(r, now)));
    }
    let u = &listing.unreferenced;
    let t = &listing.temp_files;
    lines.push(if u.count + t.count + listing.bad_records.len() == 0 {
        "unreferenced: none".to_owned()
    } else {
        format!(
            "unreferenced: {} blobs ({}), {} temp files ({}), {} unreadable record files; `ferry cache gc` removes them",
            u.count,
            human(u.size),
            t.count,
            human(t.size),
            listing.bad_records.len()
        )
    });
    if listing.other_files > 0 {
        lines.push(format!(
            "{} other files in {} (not ferry's; left alone)",
            listing.other_files,
            dir.join("blobs/sha256").display()
        ));
    }
    super::print_result(&lines)?;
    Ok(ExitCode::SUCCESS)
}

/// One record on one line.
fn describe(r: &Listed, now: u64) -> String {
    let name = match &r.source {
        cache::Source::Registry { reference } => reference.clone(),
        cache::Source::HelmRepo { .. } => r.source.to_string(),
    };
    let platforms = match &r.platforms {
        Some(p) => format!(" [{}]", p.join(",")),
        None => String::new(),
    };
    let state = match (&r.damaged, r.missing) {
        (Some(why), _) => format!("  DAMAGED: {why}; gc drops this record"),
        (None, 0) => String::new(),
        (None, n) => format!("  ({n} blobs missing; a pack fetches them again)"),
    };
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.last_used);
    format!(
        "{:<5}  {name}{platforms}  {}  {} in {} blobs  last used {} ago ({}){state}",
        r.kind,
        r.digest,
        human(r.size),
        r.blobs,
        cache::human_age(now.saturating_sub(r.last_used)),
        httpdate::fmt_http_date(when),
    )
}

fn prune(a: PruneArgs) -> anyhow::Result<ExitCode> {
    let dir = dir(a.at.cache.clone())?;
    let now = cache::now();
    if let Some(seconds) = a.older_than {
        let rule = cache::older_than(seconds, now);
        return collect(&dir, &a.at, a.dry_run, &rule, Vec::new());
    }
    // Every spec is read before the cache is touched: a spec that does not
    // load stops the prune with nothing dropped.
    let mut specs = Vec::new();
    for p in &a.keep {
        let spec = Spec::load(p).with_context(|| format!("--keep {}", p.display()))?;
        specs.push((p.clone(), spec));
    }
    let Some(c) = Cache::open(&dir)? else {
        return collect(&dir, &a.at, a.dry_run, &|_| None, Vec::new());
    };
    let wait = waiting(&dir);
    let lock = c.lock_exclusive((!a.at.no_wait).then_some(&wait as &dyn Fn()))?;
    let survey = c.survey()?;
    let records: Vec<&cache::Record> = survey.entries.iter().map(|e| &e.record).collect();
    let mut keep = std::collections::BTreeSet::new();
    let mut unknown = Vec::new();
    for (path, spec) in &specs {
        let needs = ferry::pack::cache_needs(spec, &dir, &records);
        keep.extend(needs.keep);
        unknown.extend(
            needs
                .unknown
                .into_iter()
                .map(|u| format!("{}: {u}", path.display())),
        );
    }
    for u in &unknown {
        eprintln!("warning: {u}");
    }
    let report = cache::gc(&lock, &survey, &cache::not_kept(&keep), a.dry_run, now)?;
    print_report(&report, &a.at, unknown)
}

/// Takes the exclusive lock, then drops what `rule` says and removes what
/// no record left needs (`gc`), and prints what happened.
fn collect(
    dir: &Path,
    at: &Where,
    dry_run: bool,
    rule: &dyn Fn(&cache::Entry) -> Option<String>,
    unknown: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let report = match Cache::open(dir)? {
        None => GcReport::nothing(dir, dry_run),
        Some(c) => {
            let wait = waiting(dir);
            let lock = c.lock_exclusive((!at.no_wait).then_some(&wait as &dyn Fn()))?;
            let survey = c.survey()?;
            cache::gc(&lock, &survey, rule, dry_run, cache::now())?
        }
    };
    print_report(&report, at, unknown)
}

fn print_report(report: &GcReport, at: &Where, unknown: Vec<String>) -> anyhow::Result<ExitCode> {
    let now = cache::now();
    for d in &report.dropped {
        if d.record.damaged.is_some() {
            eprintln!(
                "warning: {} the record of {}: {}; a pack fetches it again",
                if report.dry_run {
                    "would drop"
                } else {
                    "dropped"
                },
                d.record.source,
                d.reason
            );
        }
    }
    for b in &report.bad_records {
        eprintln!(
            "warning: {} the record file {}: {}",
            if report.dry_run {
                "would remove"
            } else {
                "removed"
            },
            b.file.display(),
            b.why
        );
    }
    if at.json {
        let mut v = serde_json::to_value(report)?;
        v["unknown"] = serde_json::json!(unknown);
        super::print_json(&serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (drop, remove, keep) = match report.dry_run {
        true => ("would drop", "would remove", "would keep"),
        false => ("dropped", "removed", "kept"),
    };
    let mut lines: Vec<String> = report
        .dropped
        .iter()
        .map(|d| {
            format!(
                "{drop} {} {} ({}, last used {} ago): {}",
                d.record.kind,
                d.record.source,
                human(d.record.size),
                cache::human_age(now.saturating_sub(d.record.last_used)),
                d.reason
            )
        })
        .collect();
    lines.push(format!(
        "{remove} {} blobs ({}) and {} temp files ({}) from {}; {keep} {} blobs ({}) for {} records",
        report.removed.count,
        human(report.removed.size),
        report.temp_files.count,
        human(report.temp_files.size),
        report.cache.display(),
        report.kept.count,
        human(report.kept.size),
        report.records_kept
    ));
    super::print_result(&lines)?;
    Ok(ExitCode::SUCCESS)
}

/// `30d`, `12h`, `2w`, `90m`, `45s`: a whole number and a unit.
fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("{s:?} is not a duration: give a whole number and a unit, s, m, h, d or w (30d, 12h, 2w)")
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is longer than ferry can count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_whole_number_and_a_unit() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("0s"), Ok(0));
        for bad in ["30", "d", "1.5d", "-1d", "30x", "30 d", "", "1d2h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
        assert!(parse_duration("99999999999999999999w").is_err());
        assert!(parse_duration("9999999999999999w")
            .unwrap_err()
            .contains("longer than"));
    }
}
