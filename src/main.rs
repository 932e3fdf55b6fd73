//! The `ferry` command-line front end: parses arguments, resolves settings,
//! runs one library operation per command and prints the outcome. All work
//! happens in the `ferry` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
