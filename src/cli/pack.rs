//! `ferry pack SPEC -o OUT`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry::inputs::Spec;
use ferry::pack::{pack, PackOptions};
use ferry::platform::Platform;

use super::{human, progress::Bars, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec: ferry.yaml, a JSON spec, or images.txt (one reference a line).
    pub spec: PathBuf,
    /// The archive to write (replaced atomically when complete).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Platforms to keep for every image (os/arch[/variant], comma-separated),
    /// overriding the spec; default: the spec's, else all.
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<Platform>,
    /// Bundle name when the spec has none (default: the spec's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let spec = Spec::load(&args.spec)?;
    let default_name = args.name.clone().unwrap_or_else(|| {
        args.spec
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into())
    });
    let opts = PackOptions {
        out: args.output.clone(),
        platforms: (!args.platform.is_empty()).then(|| args.platform.clone()),
        default_name,
        mtime: ferry::archive::mtime_from_env(),
    };
    let bars = Bars::new(settings.quiet);
    let summary =
        pack(&spec, &opts, &bars).with_context(|| format!("packing {}", args.spec.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "archive": summary.archive,
                "size": summary.size,
                "name": summary.bundle.name,
                "artifacts": summary.bundle.artifacts,
            })
        );
    } else {
        for a in &summary.bundle.artifacts {
            let filtered = match a.source_digest {
                Some(src) => format!(" (platform-filtered: new index; source index {src})"),
                None => String::new(),
            };
            println!(
                "  {:<6} {}  {}{}",
                format!("{:?}", a.kind).to_lowercase(),
                a.reference,
                a.digest,
                filtered
            );
        }
        println!(
            "wrote {} ({}, {} artifacts, {} members)",
            summary.archive.display(),
            human(summary.size),
            summary.bundle.artifacts.len(),
            summary.bundle.members.len() + 1
        );
    }
    Ok(ExitCode::SUCCESS)
}
