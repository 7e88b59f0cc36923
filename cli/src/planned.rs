//! Subcommands that are planned but not built yet: they parse no options and say so plainly.

use std::process::ExitCode;

/// Options of a subcommand that is not built yet: none.
#[derive(Debug, clap::Args)]
pub struct Planned {}

/// Exit status of a subcommand that is not built yet.
pub(crate) const NOT_BUILT: u8 = 2;

/// Tells the user the subcommand is not built yet and which issue tracks it.
#[allow(clippy::unnecessary_wraps)] // same signature as the built subcommands
pub(crate) fn not_built(name: &str, issue: u32) -> anyhow::Result<ExitCode> {
    eprintln!(
        "ringrift {name}: not built yet (tracked in issue #{issue}); this build is {}",
        crate::VERSION
    );
    Ok(ExitCode::from(NOT_BUILT))
}
