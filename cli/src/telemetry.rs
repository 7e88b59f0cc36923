//! Logging for the long-running subcommands: `tracing` to stderr, plain or JSON.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Logging options shared by the long-running subcommands.
#[derive(Debug, clap::Args)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(long, env = "RINGRIFT_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` directive syntax (`info`, `ringrift_apiserver=debug`).
    #[arg(long, env = "RINGRIFT_LOG", default_value = "info")]
    pub log_level: String,
}

/// Installs the global subscriber. Logs go to stderr; stdout is kept for what scripts read.
///
/// # Errors
/// When the filter does not parse.
pub fn init(args: &TelemetryArgs) -> anyhow::Result<()> {
    let TelemetryArgs {
        log_format,
        log_level,
    } = args;
    let filter = EnvFilter::try_new(log_level)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {log_level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling run twice) keeps the first subscriber.
    let _ = match log_format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
