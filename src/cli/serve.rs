//! `ferry serve ARCHIVE --listen ADDR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry::mapping::TargetRules;
use ferry::serve::{serve, serve_tls, AccessLog, Limits, Registry};

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
    /// Seconds a client may take to send a whole request head: from
    /// connecting (the TLS handshake included) or, on a kept-alive
    /// connection, from the first byte of its next request.
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::HEADER_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Connections open at once [default: 1024, or fewer if the open-file
    /// limit cannot carry them]. Past it, the connection idle or sending a
    /// request head for longest is closed; a download never is.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
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
    for note in registry.notes() {
        eprintln!("warning: {}", super::escape_controls(note));
    }
    let registry = Arc::new(registry);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(ferry::serve::load_tls(c, k)?),
        _ => None,
    };
    let limits = limits(&args);
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
        // The classic Helm repository and the file downloads, after the
        // repositories (a script reads the count in the first line).
        let charts = registry.chart_archives();
        if !charts.is_empty() {
            lines.push(format!(
                "  {scheme}://{addr}/charts/index.yaml ({} chart version{}; helm repo add NAME {scheme}://{addr}/charts)",
                charts.len(),
                if charts.len() == 1 { "" } else { "s" }
            ));
        }
        for name in registry.file_names() {
            lines.push(format!(
                "  {scheme}://{addr}/files/{}",
                ferry::serve::url_path_segment(&name)
            ));
        }
        // The Ctrl-C handler is in place before the address is announced:
        // a client that reads it and at once sends SIGINT stops the server
        // cleanly instead of killing it.
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("installing the Ctrl-C handler")?;
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
        let shutdown = async move {
            let _ = interrupt.recv().await;
            eprintln!("stopping");
        };
        match tls {
            Some(tls) => serve_tls(listener, registry, log, limits, tls, shutdown).await,
            None => serve(listener, registry, log, limits, shutdown).await,
        }
        .context("serving")?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The timeouts and the connection cap from the flags. The cap's default
/// is fitted to the open-file limit, raised to the hard limit first.
fn limits(args: &Args) -> Limits {
    let open_files = raise_open_file_limit();
    let fit = open_files.map_or(Limits::MAX_CONNECTIONS, Limits::max_connections_for);
    let max_connections = match args.max_connections {
        Some(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if let Some(files) = open_files.filter(|_| n > fit) {
                eprintln!(
                    "warning: --max-connections {n} may run out of open files: the limit of {files} carries about {fit}"
                );
            }
            n
        }
        None => {
            if let Some(files) = open_files.filter(|_| fit < Limits::MAX_CONNECTIONS) {
                eprintln!(
                    "warning: the open-file limit of {files} carries {fit} connections, not {}; raise `ulimit -n` for more",
                    Limits::MAX_CONNECTIONS
                );
            }
            fit
        }
    };
    Limits {
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections,
    }
}

/// Raises this process's soft limit on open files to its hard limit, as Go
/// programs do at start: the soft limit is often 1024 while the hard limit
/// is far higher. Returns the soft limit in force, or `None` if it cannot
/// be read.
fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // An unlimited hard limit still stops at the kernel's fs.nr_open,
    // 1,048,576 by default.
    let want = limit.rlim_max.min(1 << 20);
    if limit.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = want;
        }
    }
    let files: u64 = limit.rlim_cur;
    Some(files)
}
