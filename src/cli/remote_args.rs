//! Registry connection flags shared by `pack` (fetching) and `load`
//! (pushing), and their resolution into the library's `RemoteOptions`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use ferry::remote::RemoteOptions;

#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Speak plain HTTP to this registry if it answers there (loopback
    /// hosts always may). Repeatable; `HOST[:PORT]`.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Trust this PEM CA certificate too (a private registry CA). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
    /// Accept any TLS certificate. Unsafe; prefer --ca-file.
    #[arg(long)]
    pub tls_skip_verify: bool,
    /// Username for the registry (the password comes from --password-stdin).
    /// Without it, credentials come from the docker config.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Retries of a transient failure (5xx, 429, reset connection) per request.
    /// Waits 0.5 s, doubling up to 10 s, or what the server's `Retry-After`
    /// asks for (up to 60 s; a longer wait fails the request at once).
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
}

impl RemoteArgs {
    /// The options, reading the password from stdin when asked to.
    pub fn options(&self) -> anyhow::Result<RemoteOptions> {
        let credentials = match (&self.username, self.password_stdin) {
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
        Ok(RemoteOptions {
            insecure: self.insecure_registry.clone(),
            ca_files: self.ca_file.clone(),
            tls_skip_verify: self.tls_skip_verify,
            credentials,
            retries: self.retries,
            backoff: Duration::from_millis(500),
        })
    }
}
