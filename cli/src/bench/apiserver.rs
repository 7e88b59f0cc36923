//! `ringrift bench apiserver`: durable writes per second, list latency, watch delivery latency
//! with many watchers, and memory with many stored objects, against the real server running as
//! its own process on this machine, over HTTPS (its own CA, the admin's client certificate) or,
//! with `--insecure-plain-http`, the plain-HTTP baseline. Prints JSON; never fails on speed.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::body::Body as _;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Command;

use super::http::{Connection, Target};
use super::stats::{per_second, percentile, round3};

/// Options of `ringrift bench apiserver`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BenchApiserverArgs {
    /// Objects stored before memory is measured.
    #[arg(long, default_value_t = 100_000)]
    pub objects: usize,
    /// Objects stored when list latency is measured (written first).
    #[arg(long, default_value_t = 10_000)]
    pub list_objects: usize,
    /// Concurrent writers, one connection each.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Concurrent watchers, one connection each.
    #[arg(long, default_value_t = 500)]
    pub watchers: usize,
    /// Writes whose delivery to every watcher is timed.
    #[arg(long, default_value_t = 100)]
    pub watch_events: usize,
    /// Run the server over plain HTTP (no TLS, no authentication): the baseline that shows
    /// what TLS costs.
    #[arg(long)]
    pub insecure_plain_http: bool,
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const WATCHED: &str = "/api/v1/namespaces/bench-watch/configmaps";
const SENT_AT: &str = "bench.ringrift.ai/sent-ns";

struct Server {
    process: super::system::Process,
    target: Target,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        crate::harness::reap(&mut self.process.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_server(plain: bool) -> anyhow::Result<Server> {
    let dir = std::env::temp_dir().join(format!("ringrift-bench-apiserver-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().context("failed to find the ringrift binary")?;
    let kubeconfig = dir.join("kubeconfig");
    let mut command = Command::new(exe);
    command
        .args([
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .stderr(Stdio::inherit());
    if plain {
        command.arg("--insecure-plain-http");
    }
    let announced = tokio::task::spawn_blocking(move || {
        crate::harness::spawn_announced(
            &mut command,
            "ringrift apiserver",
            "ringrift apiserver listening on ",
            Duration::from_secs(30),
        )
    })
    .await??;
    let process = super::system::Process {
        child: announced.child,
    };
    let target = Target::from_kubeconfig(&kubeconfig)?;
    Ok(Server { process, target, dir })
}

fn config_map(name: &str, annotations: &Value) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "annotations": annotations},
           "data": {"model": "connect4-gen3", "games": "100", "note": "benchmark object of a realistic small size"}})
    .to_string()
    .into_bytes()
}

/// Writes objects `from..to` with `writers` connections; returns the seconds it took.
async fn write_range(target: &Target, writers: usize, from: usize, to: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&target).await?;
            for i in (from + w..to).step_by(writers) {
                let (status, body) = conn
                    .send(
                        Method::POST,
                        CONFIGMAPS,
                        config_map(&format!("obj-{i:06}"), &json!({})),
                    )
                    .await?;
                anyhow::ensure!(
                    status == StatusCode::CREATED,
                    "write {i} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn list_latency(target: &Target, samples: usize) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut conn = Connection::open(target).await?;
    let mut times = Vec::new();
    let mut items = 0;
    for _ in 0..samples {
        let started = Instant::now();
        let (status, body) = conn.send(Method::GET, CONFIGMAPS, Vec::new()).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == StatusCode::OK, "list answered {status}");
        items = serde_json::from_slice::<Value>(&body)?["items"]
            .as_array()
            .map_or(0, Vec::len);
    }
    Ok((times, items))
}

/// Opens `watchers` watches, then writes `events` objects, each stamped with its send time;
/// returns every delivery latency in milliseconds and the number of deliveries missed.
async fn watch_latency(target: &Target, watchers: usize, events: usize) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut conn = Connection::open(target).await?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-watch"}});
    conn.send(Method::POST, "/api/v1/namespaces", ns.to_string().into_bytes())
        .await?;
    let (_, list) = conn.send(Method::GET, WATCHED, Vec::new()).await?;
    let rv = serde_json::from_slice::<Value>(&list)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let epoch = Arc::new(Instant::now());
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut watch = Connection::open(target).await?;
        let mut body = watch
            .stream(&format!(
                "{WATCHED}?watch=1&resourceVersion={rv}&timeoutSeconds=600"
            ))
            .await?;
        let epoch = Arc::clone(&epoch);
        tasks.push(tokio::spawn(async move {
            let _keep = watch;
            let (mut latencies, mut buffer) = (Vec::new(), Vec::new());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while latencies.len() < events {
                let Ok(Some(Ok(frame))) = tokio::time::timeout_at(
                    deadline,
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)),
                )
                .await
                else {
                    break;
                };
                let Ok(data) = frame.into_data() else { continue };
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let now = epoch.elapsed().as_secs_f64() * 1000.0;
                    let event: Value = serde_json::from_slice(&line).unwrap_or_default();
                    if let Some(sent) = event
                        .pointer(&format!(
                            "/object/metadata/annotations/{}",
                            SENT_AT.replace('/', "~1")
                        ))
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<f64>().ok())
                    {
                        latencies.push(now - sent);
                    }
                }
            }
            latencies
        }));
    }
    for i in 0..events {
        let sent = epoch.elapsed().as_secs_f64() * 1000.0;
        let body = config_map(&format!("watched-{i:04}"), &json!({SENT_AT: sent.to_string()}));
        let (status, _) = conn.send(Method::POST, WATCHED, body).await?;
        anyhow::ensure!(status == StatusCode::CREATED, "watched write answered {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let missed = watchers * events - all.len();
    Ok((all, missed))
}

#[allow(clippy::cast_precision_loss)]
fn rss_mib(pid: u32) -> (f64, f64) {
    let [rss, hwm] = super::stats::proc_status_kib(pid, ["VmRSS:", "VmHWM:"]);
    (round3(rss as f64 / 1024.0), round3(hwm as f64 / 1024.0))
}

/// Runs the benchmark; its JSON report.
///
/// # Errors
/// When the server cannot be started or a request fails.
pub(crate) async fn measure(args: BenchApiserverArgs) -> anyhow::Result<Value> {
    let BenchApiserverArgs {
        objects,
        list_objects,
        writers,
        watchers,
        watch_events,
        insecure_plain_http,
    } = args;
    anyhow::ensure!(
        writers > 0 && list_objects <= objects,
        "need --writers > 0 and --list-objects <= --objects"
    );
    let server = start_server(insecure_plain_http).await?;
    let target = &server.target;
    let pid = server.process.pid();
    eprintln!(
        "bench: writing {list_objects} objects with {writers} writers ({})",
        target.scheme()
    );
    let first = write_range(target, writers, 0, list_objects).await?;
    eprintln!("bench: listing {list_objects} objects");
    let (mut list, items) = list_latency(target, 20).await?;
    eprintln!("bench: {watchers} watchers, {watch_events} timed writes");
    let (mut deliveries, missed) = watch_latency(target, watchers, watch_events).await?;
    eprintln!("bench: writing up to {objects} objects");
    let rest = write_range(target, writers, list_objects, objects).await?;
    let (rss, peak) = rss_mib(pid);
    let total_writes = objects + watch_events;
    Ok(json!({
        "benchmark": "apiserver",
        "transport": target.scheme(),
        "machine": {"cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get)},
        "durable_writes": {
            "writers": writers,
            "first_objects": list_objects,
            "first_per_second": per_second(list_objects, first),
            "all_objects": objects,
            "all_per_second": per_second(objects, first + rest),
            "storage": "SQLite WAL, synchronous=FULL (one fsync per group commit)",
        },
        "list": {"objects": items, "samples": list.len(), "p50_ms": round3(percentile(&mut list, 50.0)), "p99_ms": round3(percentile(&mut list, 99.0))},
        "watch": {
            "watchers": watchers, "events": watch_events, "deliveries": deliveries.len(), "missed": missed,
            "p50_ms": round3(percentile(&mut deliveries, 50.0)), "p99_ms": round3(percentile(&mut deliveries, 99.0)),
        },
        "memory": {"objects": total_writes, "server_rss_mib": rss, "server_peak_rss_mib": peak},
    }))
}

pub(crate) fn run(args: BenchApiserverArgs) -> anyhow::Result<ExitCode> {
    super::report(measure(args))
}
