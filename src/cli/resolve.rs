//! `ferry resolve SPEC -o LOCK`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry::inputs::Spec;
use ferry::layout::write_atomic;

use super::{progress::Bars, remote_args::RemoteArgs, Settings};
use ferry::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec: ferry.yaml, a JSON spec, or images.txt.
    pub spec: PathBuf,
    /// The lock file to write (YAML; replaced atomically).
    #[arg(short, long, value_name = "LOCK")]
    pub output: PathBuf,
    /// Print what was chosen as JSON on stdout (the lock file's content).
    #[arg(long)]
    pub json: bool,
    /// Cache for the chart archives downloaded to take their digests
    /// (as for `pack`). Default: $FERRY_CACHE, else $XDG_CACHE_HOME/ferry,
    /// else ~/.cache/ferry.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let spec = Spec::load(&args.spec)?;
    let cache = super::cache::dir(args.cache.clone())?;
    let opts = args.remote.options()?;
    let bars = Bars::new(settings.quiet);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    bars.start("resolving tags and digests", 0);
    let resolved = rt.block_on(ferry::lock::resolve(&spec, &cache, &opts));
    bars.finish();
    let resolved = resolved.with_context(|| format!("resolving {}", args.spec.display()))?;
    write_atomic(&args.output, resolved.lock.to_yaml().as_bytes())
        .with_context(|| format!("writing {}", args.output.display()))?;
    let mut lines = Vec::new();
    if args.json {
        lines.push(serde_json::to_string(&resolved.lock)?);
    } else {
        for c in &resolved.tags {
            lines.push(format!(
                "  tags   {} {} chose {}",
                c.image,
                c.rule,
                c.tags.join(", ")
            ));
        }
        for i in &resolved.lock.images {
            for c in &i.chosen {
                lines.push(format!("  image  {c}"));
            }
        }
        for c in &resolved.lock.charts {
            lines.push(format!(
                "  chart  {} {} ({}) from {}  {}",
                c.name, c.chosen, c.version, c.repo, c.digest
            ));
        }
        lines.push(format!(
            "wrote {} ({} images, {} charts)",
            args.output.display(),
            resolved
                .lock
                .images
                .iter()
                .map(|i| i.chosen.len())
                .sum::<usize>(),
            resolved.lock.charts.len()
        ));
    }
    crate::cli::print_result(&lines)?;
    Ok(ExitCode::SUCCESS)
}
