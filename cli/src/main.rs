//! Entry point of the `ringrift` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ringrift::run(ringrift::Cli::parse())
}
