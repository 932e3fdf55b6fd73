//! `ferry serve ARCHIVE --listen ADDR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ferry::mapping::TargetRules;
use ferry::serve::{serve, serve_tls, AccessLog, Registry};

use super::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive, or a layout directory written by `ferry unpack`.
    /// For a split archive: its first volume (OUT.001), the name the
    /// volumes share (OUT), or the whole set (OUT.*).
    #[arg(required = true, num_args = 1.., value_name = "ARCHIVE")]
    pub archive: Vec<PathBuf>,
    /// Require a signature of bundle.json by this minisign public key,
    /// checked on the archive as read, before anything in it is served.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Address to listen on. Loopback by default; name another address to
    /// expose the registry to the network.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Serve repositories under this path prefix (as `ferry load` would
    /// with a prefix in --registry).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Keep the source registry host as the first path component.
    #[arg(long)]
    pub keep_host: bool,
    /// Serve HTTPS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Print one access-log line per request on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(args: Args, _: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    let rules = TargetRules {
        prefix: args.prefix.clone(),
        keep_host: args.keep_host,
    };
    let start = std::time::Instant::now();
    let (registry, signature) = Registry::open_with_key(&archive, &rules, args.key.as_deref())?;
    if let Some(comment) = signature {
        eprintln!("signature OK: {}", super::escape_controls(&comment));
    }
    let registry = Arc::new(registry);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(ferry::serve::load_tls(c, k)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let repos = registry.repositories();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // What is served, and where: the result a script waits for, so on
        // stdout, in one write, and a reader that stops reading after the
        // first line does not stop the server. The access log and
        // "stopping" are diagnostics, on stderr.
        let mut lines = vec![format!(
            "serving {} ({} repositories, ready in {:.0} ms) on {scheme}://{addr}/v2/ — Ctrl-C to stop",
            archive.display(),
            repos.len(),
            start.elapsed().as_secs_f64() * 1000.0
        )];
        for r in &repos {
            let tags = registry.tags(r).unwrap_or_default();
            lines.push(format!("  {addr}/{r}:{}", tags.join(",")));
        }
        super::print_result(&lines)?;
        let log: Option<AccessLog> = args.verbose.then(|| {
            Arc::new(|r: &ferry::serve::AccessRecord| {
                eprintln!(
                    "{} {} {} {} {:.1}ms",
                    r.method,
                    r.path,
                    r.status,
                    r.bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
                    r.millis
                )
            }) as AccessLog
        });
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping");
        };
        match tls {
            Some(tls) => serve_tls(listener, registry, log, tls, shutdown).await,
            None => serve(listener, registry, log, shutdown).await,
        }
        .context("serving")?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
