//! `ringrift bench tls`: what TLS costs the control plane, measured in one run: `bench
//! dispatch` and `bench apiserver` each over HTTPS and over plain HTTP (`--insecure-plain-http`),
//! interleaved (HTTPS first in even rounds, plain first in odd ones, so a machine that speeds
//! up or slows down over the run weighs on both alike), medians of each figure and their ratios.
//! Prints JSON; never fails on speed. (The data plane's cost is in `bench sync`.)

use std::process::ExitCode;

use serde_json::{Value, json};

use super::apiserver::BenchApiserverArgs;
use super::dispatch::BenchDispatchArgs;
use super::stats::round3;

/// Options of `ringrift bench tls`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BenchTlsArgs {
    /// Rounds, each one run over HTTPS and one over plain HTTP of both benchmarks.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub rounds: u64,
    /// Small sizes (20 simulated agents and 500 tasks; 5,000 objects and 100 watchers) for a
    /// quick look instead of the benchmarks' defaults.
    #[arg(long)]
    pub quick: bool,
}

/// The figures compared, each a JSON pointer into a report and a name.
const DISPATCH: &[(&str, &str)] = &[
    (
        "/latency_job/placements_per_second",
        "latency_job_placements_per_second",
    ),
    (
        "/latency_job/created_to_bound_s/p99",
        "latency_job_created_to_bound_p99_s",
    ),
    (
        "/throughput_job/placements_per_second",
        "throughput_job_placements_per_second",
    ),
];
const APISERVER: &[(&str, &str)] = &[
    ("/durable_writes/all_per_second", "durable_writes_per_second"),
    ("/list/p50_ms", "list_p50_ms"),
    ("/watch/p99_ms", "watch_delivery_p99_ms"),
];

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

/// Medians per transport and their ratios (HTTPS over plain) of `figures` in `reports`.
fn summary(reports: &[Value], figures: &[(&str, &str)]) -> Value {
    let of = |transport: &str, pointer: &str| -> f64 {
        median(
            reports
                .iter()
                .filter(|r| r["transport"] == transport)
                .filter_map(|r| r.pointer(pointer).and_then(Value::as_f64))
                .collect(),
        )
    };
    let mut https = serde_json::Map::new();
    let mut http = serde_json::Map::new();
    let mut ratio = serde_json::Map::new();
    for (pointer, name) in figures {
        let (a, b) = (of("https", pointer), of("http", pointer));
        https.insert((*name).to_owned(), json!(round3(a)));
        http.insert((*name).to_owned(), json!(round3(b)));
        ratio.insert((*name).to_owned(), json!(round3(a / b.max(1e-9))));
    }
    json!({"https": https, "http": http, "https_vs_http": ratio, "samples": reports})
}

async fn bench(args: BenchTlsArgs) -> anyhow::Result<Value> {
    let dispatch = |plain: bool| BenchDispatchArgs {
        agents: if args.quick { 20 } else { 200 },
        gpus: 8,
        tasks: if args.quick { 500 } else { 5000 },
        latency_tasks: if args.quick { 100 } else { 1000 },
        insecure_plain_http: plain,
    };
    let apiserver = |plain: bool| BenchApiserverArgs {
        objects: if args.quick { 5_000 } else { 100_000 },
        list_objects: if args.quick { 1_000 } else { 10_000 },
        writers: 16,
        watchers: if args.quick { 100 } else { 500 },
        watch_events: if args.quick { 20 } else { 100 },
        insecure_plain_http: plain,
    };
    let (mut dispatches, mut apiservers) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for plain in order {
            let transport = if plain { "plain HTTP" } else { "HTTPS" };
            eprintln!("round {round}: dispatch over {transport}");
            dispatches.push(super::dispatch::bench(dispatch(plain)).await?);
            eprintln!("round {round}: apiserver over {transport}");
            apiservers.push(super::apiserver::measure(apiserver(plain)).await?);
        }
    }
    Ok(json!({
        "benchmark": "tls",
        "rounds": args.rounds,
        "quick": args.quick,
        "dispatch": summary(&dispatches, DISPATCH),
        "apiserver": summary(&apiservers, APISERVER),
    }))
}

pub(crate) fn run(args: BenchTlsArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios_per_transport() {
        let reports: Vec<Value> = [
            ("https", 90.0),
            ("http", 100.0),
            ("https", 80.0),
            ("http", 120.0),
            ("https", 85.0),
        ]
        .iter()
        .map(|(t, v)| json!({"transport": t, "durable_writes": {"all_per_second": v}}))
        .collect();
        let s = summary(&reports, &[("/durable_writes/all_per_second", "writes")]);
        assert_eq!(s["https"]["writes"], 85.0);
        assert_eq!(s["http"]["writes"], 120.0, "of two samples, the upper");
        assert!((s["https_vs_http"]["writes"].as_f64().unwrap() - 0.708).abs() < 1e-9);
        assert_eq!(s["samples"].as_array().unwrap().len(), 5);
    }
}
