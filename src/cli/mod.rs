//! Argument parsing (clap), global settings, and dispatch to one module per
//! command. Errors are printed here, with their causes, and turned into the
//! exit status: 0 success, 1 failure, 2 usage error.

mod cache;
mod completion;
mod diff;
mod export;
mod images;
mod inspect;
mod inventory;
mod keygen;
mod load;
mod man;
mod mirror;
mod pack;
mod progress;
mod remote_args;
mod resolve;
mod rewrite;
mod serve;
mod unpack;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `ferry --version`: the package version, the commit and the build date
/// (from build.rs: `SOURCE_DATE_EPOCH` or the commit's time, never the
/// clock). `-V` and the man pages show the version alone, and bundle.json
/// records only the package version, so archives do not depend on the build.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FERRY_COMMIT"),
    ", built ",
    env!("FERRY_BUILD_DATE"),
    ")"
);

/// ferry carries container images, Helm charts and files across an air gap.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, long_version = LONG_VERSION, about, long_about = None)]
pub struct Cli {
    /// Show no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch everything a spec names and write one archive.
    Pack(pack::Args),
    /// List what an archive carries (--html: a report page to look at).
    Inspect(inspect::Args),
    /// Re-hash every member and check the graph; exit 1 unless whole.
    Verify(verify::Args),
    /// Write a plain OCI image layout from an archive.
    Unpack(unpack::Args),
    /// Make a minisign key pair for signing bundles (`pack --sign`).
    Keygen(keygen::Args),
    /// Push an archive into a registry, resumably; write the source → target map.
    Load(load::Args),
    /// Write the images as one tar for docker/podman load or ctr import.
    Export(export::Args),
    /// Serve an archive (or an unpacked layout) as a read-only registry, Helm
    /// chart repository (/charts/) and file server (/files/).
    Serve(serve::Args),
    /// Point image references in YAML/JSON at the local registry.
    Rewrite(rewrite::Args),
    /// List the image references YAML/JSON files name, with file and line.
    Images(images::Args),
    /// List the blobs a registry or an earlier bundle holds (for `pack --have`).
    Inventory(inventory::Args),
    /// Write a lock file: the exact tags, digests and chart versions a spec chooses.
    Resolve(resolve::Args),
    /// Copy a spec's images from their registries straight into a registry, no archive.
    Mirror(mirror::Args),
    /// Show the fetch cache, or prune it (ls, prune, gc).
    Cache(cache::Args),
    /// Compare two bundles: images added, removed or changed, and growth.
    Diff(diff::Args),
    /// Print the shell completion script (bash, zsh, fish, powershell, elvish).
    Completion(completion::Args),
    /// Write man pages for ferry and each command.
    Man(man::Args),
}

/// Global settings every command gets.
pub struct Settings {
    pub quiet: bool,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Inspect(_)
            | Command::Verify(_)
            | Command::Rewrite(_)
            | Command::Images(_)
            | Command::Unpack(_)
            | Command::Export(_)
            | Command::Diff(_)
            | Command::Completion(_)
            | Command::Cache(_)
    ) {
        // `ferry inspect … | head` should end quietly, like other Unix
        // tools, instead of panicking on a closed stdout. Only for commands
        // with no network I/O: a registry that hangs up must be an error,
        // not a signal (vectored socket writes do not suppress SIGPIPE).
        // SAFETY: no other thread runs yet; this restores the default.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if !matches!(cli.command, Command::Serve(_)) {
        // serve treats Ctrl-C as its graceful shutdown instead.
        clean_up_on_interrupt();
    }
    let settings = Settings { quiet: cli.quiet };
    let result = match cli.command {
        Command::Pack(a) => pack::run(a, &settings),
        Command::Inspect(a) => inspect::run(a, &settings),
        Command::Verify(a) => verify::run(a, &settings),
        Command::Unpack(a) => unpack::run(a, &settings),
        Command::Keygen(a) => keygen::run(a, &settings),
        Command::Load(a) => load::run(a, &settings),
        Command::Export(a) => export::run(a, &settings),
        Command::Serve(a) => serve::run(a, &settings),
        Command::Rewrite(a) => rewrite::run(a, &settings),
        Command::Images(a) => images::run(a, &settings),
        Command::Inventory(a) => inventory::run(a, &settings),
        Command::Resolve(a) => resolve::run(a, &settings),
        Command::Mirror(a) => mirror::run(a, &settings),
        Command::Cache(a) => cache::run(a, &settings),
        Command::Diff(a) => diff::run(a, &settings),
        Command::Completion(a) => completion::run(a, &settings),
        Command::Man(a) => man::run(a, &settings),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Causes quote what they could not read (a tar header, a
            // registry's answer): control characters are shown escaped.
            let text: Vec<String> = chain(e.as_ref()).split('\n').map(escape_controls).collect();
            eprintln!("error: {}", text.join("\n"));
            ExitCode::FAILURE
        }
    }
}

/// On Ctrl-C, SIGTERM or SIGHUP (a closed ssh session): removes the temp
/// files and scratch directories the library has registered, says so, and
/// exits 130 (143 for SIGTERM, 129 for SIGHUP), so an interrupted pack,
/// unpack or mirror leaves nothing half-written behind.
fn clean_up_on_interrupt() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // Both handlers are installed here, before the command starts: a
    // signal that comes at once is caught, never the default action that
    // would leave temp files behind.
    let handlers = {
        let _in = rt.enter();
        signal(SignalKind::interrupt()).and_then(|i| {
            Ok((
                i,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        })
    };
    let Ok((mut int, mut term, mut hup)) = handlers else {
        return;
    };
    std::thread::spawn(move || {
        let (what, code) = rt.block_on(async {
            tokio::select! {
                _ = int.recv() => ("interrupted", 130),
                _ = term.recv() => ("terminated", 143),
                _ = hup.recv() => ("hung up", 129),
            }
        });
        let removed = ferry::interrupt::remove_registered();
        eprintln!("\n{what}: removed {removed} temp file(s) and directories; nothing half-written is left");
        std::process::exit(code);
    });
}

/// Writes a command's result lines to stdout in one write. A reader that
/// has gone (`ferry load … | head -1`) is not an error: the work is done
/// and the exit status must still say how it went. `println!` would panic
/// there instead, since commands with network I/O ignore SIGPIPE.
///
/// Control characters in a line (from an untrusted bundle.json, map or
/// spec: a name, a title, a version) are shown escaped (`\u{1b}`), so they
/// cannot clear the screen or forge lines. JSON goes through
/// [`print_json`] instead.
pub fn print_result<S: AsRef<str>>(lines: &[S]) -> anyhow::Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&escape_controls(l.as_ref()));
        text.push('\n');
    }
    write_stdout(&text)
}

/// `s` with every control character shown as an escape, never obeyed
/// (the library's one escaping, without a length limit).
pub fn escape_controls(s: &str) -> String {
    ferry::base::error::one_line(s, usize::MAX)
}

/// A JSON result, as it is: serde escapes every control character inside
/// its strings, so the only raw ones are its own line breaks.
pub fn print_json(json: &str) -> anyhow::Result<()> {
    write_stdout(&format!("{json}\n"))
}

/// One write to stdout; a reader that has gone is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

/// An error and its causes on one line, outermost first.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    ferry::verify::error_chain(e)
}

/// The archive named on the command line: one path, or the files of one
/// volume set (`b.tar.*`, the sidecar included), of which the first volume
/// is opened; the reader finds and checks the others by number.
pub fn archive_arg(paths: &[std::path::PathBuf]) -> anyhow::Result<std::path::PathBuf> {
    let named: Vec<&std::path::PathBuf> = paths
        .iter()
        .filter(|p| !(paths.len() > 1 && p.to_string_lossy().ends_with(".sha256")))
        .collect();
    match named.as_slice() {
        [] => anyhow::bail!("no archive given"),
        [one] => return Ok((*one).clone()),
        _ => {}
    }
    let Some(first) = named.iter().find(|p| p.to_string_lossy().ends_with(".001")) else {
        anyhow::bail!(
            "{} archives given; give one archive, or the volumes of one split archive (OUT.001 …)",
            named.len()
        );
    };
    let s = first.to_string_lossy();
    let base = &s[..s.len() - 4];
    for p in &named {
        let name = p.to_string_lossy();
        let ok = name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            anyhow::bail!("{} is not a volume of {base} (OUT.NNN)", p.display());
        }
    }
    Ok((*first).clone())
}

/// Sizes as `--volume-size`, `--max-image-size` and the spec's `budget:`
/// write them (the library's one parser).
pub use ferry::sizes::parse_size;

/// Human-readable byte counts (the library's one formatter).
pub use ferry::sizes::human;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command that reads an archive takes `--key`, including any
    /// added later: an argument that names an archive (`ARCHIVE`) without a
    /// `--key` beside it fails this test.
    #[test]
    fn every_command_that_reads_an_archive_takes_a_key() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let mut readers = Vec::new();
        for sub in cli.get_subcommands() {
            let reads_archive = sub.get_arguments().any(|a| {
                a.get_value_names()
                    .is_some_and(|names| names.iter().any(|n| n.as_str() == "ARCHIVE"))
            });
            if reads_archive {
                readers.push(sub.get_name().to_owned());
                let key = sub.get_arguments().find(|a| a.get_id() == "key");
                assert!(
                    key.is_some_and(|k| k.get_long() == Some("key")),
                    "`ferry {}` reads an archive but takes no --key",
                    sub.get_name()
                );
            }
        }
        readers.sort();
        assert_eq!(
            readers,
            [
                "diff",
                "export",
                "inspect",
                "inventory",
                "load",
                "rewrite",
                "serve",
                "unpack",
                "verify"
            ]
        );
    }
}
