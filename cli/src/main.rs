//! Entry point of the `ringrift` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, or the C library's malloc where `RINGRIFT_ALLOCATOR=system` asks for it (an agent):
/// see the `ringrift_alloc` crate.
#[global_allocator]
static ALLOCATOR: ringrift_alloc::Allocator = ringrift_alloc::Allocator;

fn main() -> ExitCode {
    ringrift::run(ringrift::Cli::parse())
}
