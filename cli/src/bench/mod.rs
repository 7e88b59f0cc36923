//! The benchmarks: each prints JSON figures and never fails on speed.

pub(crate) mod agent_idle;
pub(crate) mod apiserver;
pub(crate) mod dispatch;
pub(crate) mod failover;
pub(crate) mod fleet;
pub(crate) mod gossip;
mod http;
mod stats;
pub(crate) mod sync;
mod system;
pub(crate) mod tls;
pub(crate) mod wan;

/// Runs a benchmark on a multi-threaded runtime and prints its JSON report.
///
/// On SIGTERM or Ctrl-C the benchmark stops where it is and fails: dropping it kills the
/// processes it started and removes what it made (every harness piece does so when dropped),
/// where the signal's default action would leave them running.
pub(crate) fn report(
    bench: impl std::future::Future<Output = anyhow::Result<serde_json::Value>>,
) -> anyhow::Result<std::process::ExitCode> {
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        tokio::select! {
            result = bench => result,
            signal = crate::apiserver::shutdown_signal() => Err(anyhow::anyhow!(
                "{signal}: stopped the benchmark, its processes and its files; no figures"
            )),
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(std::process::ExitCode::SUCCESS)
}
