//! `ferry unpack ARCHIVE -o DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{human, progress::Bars, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive.
    pub archive: PathBuf,
    /// The OCI layout directory to create (must be new or empty).
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let bars = Bars::new(settings.quiet);
    let s = ferry::unpack::unpack(&args.archive, &args.output, &bars)?;
    println!(
        "unpacked {} blobs ({}) into OCI layout {}",
        s.blobs,
        human(s.bytes),
        s.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
