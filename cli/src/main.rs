//! Entry point of the `ringrift` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: every role parses and copies JSON objects all day,
/// and with glibc's malloc the API server spent a quarter of its time allocating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ringrift::run(ringrift::Cli::parse())
}
