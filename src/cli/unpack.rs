//! `ferry unpack ARCHIVE [-o DIR] [--charts DIR] [--files DIR]`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{human, progress::Bars, Settings};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["output", "charts", "files"])))]
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
    /// The OCI layout directory to create (must be new or empty).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write each carried chart as NAME-VERSION.tgz into this directory
    /// (for `helm install ./NAME-VERSION.tgz`).
    #[arg(long, value_name = "DIR")]
    pub charts: Option<PathBuf>,
    /// Write each carried file and directory into this directory, under
    /// the name it was packed with.
    #[arg(long, value_name = "DIR")]
    pub files: Option<PathBuf>,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    if let Some(out) = &args.output {
        let bars = Bars::new(settings.quiet);
        let s = ferry::unpack::unpack(&archive, out, args.key.as_deref(), &bars)?;
        println!(
            "unpacked {} blobs ({}) into OCI layout {}",
            s.blobs,
            human(s.bytes),
            s.dir.display()
        );
    }
    if args.charts.is_some() || args.files.is_some() {
        let x = ferry::unpack::extract(
            &archive,
            args.charts.as_deref(),
            args.files.as_deref(),
            args.key.as_deref(),
        )?;
        for p in x.charts.iter().chain(&x.files) {
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
