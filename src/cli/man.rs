//! `ferry man -o DIR`: man pages for ferry and each of its commands
//! (`ferry.1`, `ferry-pack.1`, …), made from the same definitions as
//! `--help`. `docs/man/` holds them as generated; a test fails when they
//! are stale.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use super::{Cli, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write the pages into (made when missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: Args, _: &Settings) -> anyhow::Result<ExitCode> {
    let written = write_pages(&args.output)?;
    super::print_result(&[format!(
        "wrote {written} man pages into {}",
        args.output.display()
    )])?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `ferry.1` and `ferry-COMMAND.1` for every command (and
/// `ferry-COMMAND-SUB.1` for the commands of a group, such as `ferry cache
/// ls`) into `dir`; returns how many.
pub fn write_pages(dir: &Path) -> anyhow::Result<usize> {
    fs_err::create_dir_all(dir)?;
    // The version alone: pages that named the commit would go stale with
    // every commit.
    let cmd = Cli::command().long_version(None::<&str>);
    let mut pages = vec![("ferry".to_owned(), cmd.clone())];
    let mut todo: Vec<(String, String, clap::Command)> =
        vec![("ferry".to_owned(), "ferry".to_owned(), cmd)];
    while let Some((name, bin, cmd)) = todo.pop() {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{name}-{}", sub.get_name());
            let bin = format!("{bin} {}", sub.get_name());
            let page = sub.clone().display_name(name.clone()).bin_name(bin.clone());
            pages.push((name.clone(), page.clone()));
            todo.push((name, bin, page));
        }
    }
    for (name, page) in &pages {
        let mut text = Vec::new();
        clap_mangen::Man::new(page.clone())
            .render(&mut text)
            .with_context(|| format!("rendering the man page {name}.1"))?;
        let path = dir.join(format!("{name}.1"));
        ferry::layout::write_atomic(&path, &text)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(pages.len())
}
