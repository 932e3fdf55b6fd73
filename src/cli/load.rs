//! `ferry load ARCHIVE --registry HOST[:PORT][/PREFIX]`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferry::layout::write_atomic;
use ferry::load::{images_digests_yaml, load, LoadOptions};
use ferry::remote::RemoteOptions;
use ferry::rewrite::ImageMap;

use super::{human, progress::Bars, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive written by `ferry pack`.
    pub archive: PathBuf,
    /// Target registry, `HOST[:PORT]` with an optional path prefix
    /// (`harbor.corp/mirror`).
    #[arg(long)]
    pub registry: String,
    /// Keep the source host as the first path component
    /// (`docker.io/library/nginx` → `PREFIX/docker.io/library/nginx`).
    #[arg(long)]
    pub keep_host: bool,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Check the registry and print what would be pushed; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the source → target map (for `ferry rewrite --map`).
    #[arg(long, value_name = "FILE")]
    pub map_out: Option<PathBuf>,
    /// Write an `images_digests.yml`-shaped override file
    /// (image_repository_server, image_repository_path, image_tag, image_digest).
    #[arg(long, value_name = "FILE")]
    pub images_digests_out: Option<PathBuf>,
    /// Speak plain HTTP to this registry (loopback hosts always may).
    /// Repeatable; `HOST[:PORT]`.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Trust this PEM CA certificate too (a private registry CA). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
    /// Accept any TLS certificate. Unsafe; prefer --ca-file.
    #[arg(long)]
    pub tls_skip_verify: bool,
    /// Username for the registry (the password comes from --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Retries of a transient failure (5xx, 429, reset connection) per request.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let credentials = match (&args.username, args.password_stdin) {
        (Some(u), true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("reading the password from standard input")?;
            let p = p.trim_end_matches(['\n', '\r']).to_owned();
            if p.is_empty() {
                bail!("--password-stdin: standard input held no password");
            }
            Some((u.clone(), p))
        }
        _ => None,
    };
    let opts = LoadOptions {
        registry: args.registry.clone(),
        keep_host: args.keep_host,
        jobs: args.jobs as usize,
        dry_run: args.dry_run,
        remote: RemoteOptions {
            insecure: args.insecure_registry.clone(),
            ca_files: args.ca_file.clone(),
            tls_skip_verify: args.tls_skip_verify,
            credentials,
            retries: args.retries,
            backoff: Duration::from_millis(500),
        },
    };
    let bars = Bars::new(settings.quiet || args.json);
    let start = Instant::now();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (report, bundle) = rt.block_on(load(&args.archive, &opts, &bars))?;
    let secs = start.elapsed().as_secs_f64();

    if !args.dry_run {
        let loaded = report.loaded_bundle(&bundle);
        if let Some(path) = &args.map_out {
            let map = ImageMap::from_bundle(&loaded, &args.registry, args.keep_host)?;
            write_atomic(path, &map.to_json())
                .with_context(|| format!("writing the map {}", path.display()))?;
        }
        if let Some(path) = &args.images_digests_out {
            write_atomic(path, images_digests_yaml(&report).as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }

    let c = &report.counts;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for a in &report.artifacts {
            match &a.error {
                None if args.dry_run => {
                    eprintln!("  would load {} -> {}", a.source, a.target_ref())
                }
                None => eprintln!("  loaded {} -> {}", a.source, a.target_ref()),
                Some(e) => eprintln!("  FAILED {} -> {}: {e}", a.source, a.target_ref()),
            }
        }
        let verb = if args.dry_run {
            "would upload"
        } else {
            "uploaded"
        };
        eprintln!(
            "{} {} blobs ({}), mounted {}, {} already present; {} {} manifests, {} already present; {:.1} s",
            verb,
            c.uploaded,
            human(c.bytes_uploaded),
            c.mounted,
            c.present,
            if args.dry_run { "would push" } else { "pushed" },
            c.manifests_pushed,
            c.manifests_present,
            secs
        );
    }
    let failed = report.artifacts.iter().filter(|a| !a.ok).count();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} artifacts were not loaded into {}; re-run to resume (what is in place is skipped)",
            report.artifacts.len(),
            report.registry
        );
        if args.map_out.is_some() || args.images_digests_out.is_some() {
            eprintln!("note: the map and override files list only what was loaded");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
