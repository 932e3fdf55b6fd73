//! Argument parsing (clap), global settings, and dispatch to one module per
//! command. Errors are printed here, with their causes, and turned into the
//! exit status: 0 success, 1 failure, 2 usage error.

mod inspect;
mod keygen;
mod load;
mod pack;
mod progress;
mod remote_args;
mod rewrite;
mod serve;
mod unpack;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ferry carries container images, Helm charts and files across an air gap.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
pub struct Cli {
    /// Show no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch everything a spec names and write one archive.
    Pack(pack::Args),
    /// List what an archive carries.
    Inspect(inspect::Args),
    /// Re-hash every member and check the graph; exit 1 unless whole.
    Verify(verify::Args),
    /// Write a plain OCI image layout from an archive.
    Unpack(unpack::Args),
    /// Make a minisign key pair for signing bundles (`pack --sign`).
    Keygen(keygen::Args),
    /// Push an archive into a registry, resumably; write the source → target map.
    Load(load::Args),
    /// Serve an archive (or an unpacked layout) as a read-only registry.
    Serve(serve::Args),
    /// Point image references in YAML/JSON at the local registry.
    Rewrite(rewrite::Args),
}

/// Global settings every command gets.
pub struct Settings {
    pub quiet: bool,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let settings = Settings { quiet: cli.quiet };
    let result = match cli.command {
        Command::Pack(a) => pack::run(a, &settings),
        Command::Inspect(a) => inspect::run(a, &settings),
        Command::Verify(a) => verify::run(a, &settings),
        Command::Unpack(a) => unpack::run(a, &settings),
        Command::Keygen(a) => keygen::run(a, &settings),
        Command::Load(a) => load::run(a, &settings),
        Command::Serve(a) => serve::run(a, &settings),
        Command::Rewrite(a) => rewrite::run(a, &settings),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, outermost first.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    ferry::verify::error_chain(e)
}

/// Human-readable byte counts.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
