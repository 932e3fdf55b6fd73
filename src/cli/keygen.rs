//! `ferry keygen -o PREFIX`: a minisign key pair for signing bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Writes PREFIX.key (secret, mode 0600, unencrypted) and PREFIX.pub.
    #[arg(short, long, value_name = "PREFIX")]
    pub output: PathBuf,
}

pub fn run(args: Args, _: &Settings) -> anyhow::Result<ExitCode> {
    let (key, public) = ferry::sign::keygen(&args.output)?;
    println!(
        "wrote {} (secret: keep it off the transfer media) and {} (give it to the air-gapped side)",
        key.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}
