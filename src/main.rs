//! The `ferry` command-line front end: parses arguments, resolves settings,
//! runs one library operation per command and prints the outcome. All work
//! happens in the `ferry` library.

mod cli;

fn main() -> std::process::ExitCode {
    // `ferry inspect … | head` should end quietly, like other Unix tools,
    // instead of panicking on a closed stdout. Sockets are unaffected: Rust
    // writes to them with MSG_NOSIGNAL.
    // SAFETY: called before any thread starts; restores the default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::run()
}
