//! `ferry inventory (--registry HOST[:PORT][/PREFIX] | --bundle ARCHIVE) -o FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ferry::inventory::{from_bundle, from_registry, read_bundle};
use ferry::layout::write_atomic;
use ferry::mapping::TargetRegistry;

use super::{human, progress::Bars, remote_args::RemoteArgs, Settings};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("archive_given").args(["bundle", "for_bundle"])))]
pub struct Args {
    /// List a registry: every tag of every repository under PREFIX (from
    /// /v2/_catalog), or with --for, of the repositories a bundle maps to.
    #[arg(long, value_name = "HOST[:PORT][/PREFIX]", conflicts_with = "bundle")]
    pub registry: Option<String>,
    /// List what an earlier bundle carried (its archive, first volume or
    /// bundle.json).
    #[arg(long, value_name = "ARCHIVE")]
    pub bundle: Option<PathBuf>,
    /// With --registry: list only the repositories this bundle maps to
    /// (no catalog needed; for registries that do not offer one).
    #[arg(long = "for", value_name = "ARCHIVE", requires = "registry")]
    pub for_bundle: Option<PathBuf>,
    /// Require a signature of bundle.json by this minisign public key,
    /// checked on the archive as read, before anything in it is used (with --bundle or --for).
    #[arg(long, value_name = "PUB", requires = "archive_given")]
    pub key: Option<PathBuf>,
    /// With --for: the source host is kept in repository paths, as with
    /// `load --keep-host`.
    #[arg(long, requires = "for_bundle")]
    pub keep_host: bool,
    /// Where to write the inventory (JSON).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let inv = match (&args.registry, &args.bundle) {
        (Some(registry), None) => {
            let only = match &args.for_bundle {
                Some(b) => {
                    let bundle = read_bundle(b, args.key.as_deref())?;
                    let target = TargetRegistry::parse(registry, args.keep_host)?;
                    let mut repos: Vec<String> = target
                        .rules
                        .targets(&bundle.artifacts)?
                        .into_iter()
                        .map(|t| t.repository)
                        .collect();
                    repos.sort();
                    repos.dedup();
                    Some(repos)
                }
                None => None,
            };
            let bars = Bars::new(settings.quiet);
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(from_registry(
                registry,
                only,
                &args.remote.options()?,
                args.jobs as usize,
                &bars,
            ))?
        }
        (None, Some(b)) => from_bundle(b, args.key.as_deref())?,
        _ => bail!("give --registry HOST[:PORT][/PREFIX] or --bundle ARCHIVE"),
    };
    write_atomic(&args.output, &inv.to_bytes())
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{}: {} blobs ({}) held by {}",
        args.output.display(),
        inv.blobs.len(),
        human(inv.blobs.iter().map(|b| b.size).sum()),
        inv.source
    );
    Ok(ExitCode::SUCCESS)
}
