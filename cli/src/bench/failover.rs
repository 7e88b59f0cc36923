//! `ringrift bench failover`: how long the controller is without a leader when the leader is
//! killed (SIGKILL) or asked to stop (SIGTERM), with real processes on this machine. Prints
//! JSON; never fails on speed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams};
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::Task;
use serde_json::json;

use super::stats::round3;
use super::system::Fleet;

/// Options of `ringrift bench failover`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFailoverArgs {
    /// The controllers' lease duration.
    #[arg(long, default_value = "15s", value_parser = crate::duration::parse)]
    pub lease_duration: Duration,
    /// The controllers' renew deadline.
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse)]
    pub renew_deadline: Duration,
    /// The controllers' retry period.
    #[arg(long, default_value = "2s", value_parser = crate::duration::parse)]
    pub retry_period: Duration,
}

/// A random byte, from the clock's nanoseconds (good enough for a phase offset).
fn uuid_byte() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u8::try_from(nanos % 256).unwrap_or(0)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("ringrift-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn until_holder(leases: &Api<Lease>, who: &str, within: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        if holder(leases).await.as_deref() == Some(who) {
            return Ok(Instant::now());
        }
        anyhow::ensure!(Instant::now() < deadline, "{who} did not lead within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Creates a one-task job and returns when its task exists: the new leader's first reconcile.
async fn first_task(fleet: &Fleet, name: &str, within: Duration) -> anyhow::Result<Instant> {
    let text = format!(
        r#"{{"apiVersion":"ringrift.ai/v1alpha1","kind":"SelfplayJob","metadata":{{"name":"{name}","namespace":"default"}},
        "spec":{{"game":{{"board":"bench"}},"games":1,"gamesPerTask":1,"output":{{"dataset":"{name}"}}}}}}"#
    );
    let job: SelfplayJob = serde_json::from_str(&text)?;
    Api::<SelfplayJob>::namespaced(fleet.client.clone(), "default")
        .create(&PostParams::default(), &job)
        .await?;
    let tasks: Api<Task> = Api::namespaced(fleet.client.clone(), "default");
    let params = ListParams::default().labels(&format!("ringrift.ai/job={name}"));
    let deadline = Instant::now() + within;
    loop {
        if !tasks.list(&params).await?.items.is_empty() {
            return Ok(Instant::now());
        }
        anyhow::ensure!(Instant::now() < deadline, "no task for {name} within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn bench(args: BenchFailoverArgs) -> anyhow::Result<serde_json::Value> {
    let timing = [
        "--lease-duration".to_owned(),
        format!("{}ms", args.lease_duration.as_millis()),
        "--renew-deadline".to_owned(),
        format!("{}ms", args.renew_deadline.as_millis()),
        "--retry-period".to_owned(),
        format!("{}ms", args.retry_period.as_millis()),
    ];
    let timing: Vec<&str> = timing.iter().map(String::as_str).collect();
    let fleet = Fleet::start("failover", false).await?;
    let _agents = fleet.agents(2, 2).await?;
    let leases: Api<Lease> = Api::namespaced(fleet.client.clone(), "default");
    let mut first = fleet.controller("first", &timing).await?;
    until_holder(&leases, "first", Duration::from_secs(60)).await?;
    let mut second = fleet.controller("second", &timing).await?;
    // Let the standby's caches sync and the leader settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let within = args.lease_duration * 3 + Duration::from_secs(10);

    let killed = Instant::now();
    first.kill();
    let (lease, task) = tokio::join!(
        until_holder(&leases, "second", within),
        first_task(&fleet, "after-kill", within)
    );
    let (kill_lease, kill_task) = (lease?.duration_since(killed), task?.duration_since(killed));

    let third = fleet.controller("third", &timing).await?;
    // Settle, then stop at a random point of the standby's retry cycle.
    let jitter = args.retry_period.mul_f64(f64::from(uuid_byte()) / 255.0);
    tokio::time::sleep(Duration::from_secs(2) + jitter).await;
    let asked = Instant::now();
    second.terminate()?;
    let (lease, task) = tokio::join!(
        until_holder(&leases, "third", within),
        first_task(&fleet, "after-term", within)
    );
    let (term_lease, term_task) = (lease?.duration_since(asked), task?.duration_since(asked));
    let exit = second
        .exited(Duration::from_secs(30))
        .await
        .context("the SIGTERMed leader did not exit")?;
    drop(third);
    Ok(json!({
        "benchmark": "failover",
        "lease_duration_s": args.lease_duration.as_secs_f64(),
        "renew_deadline_s": args.renew_deadline.as_secs_f64(),
        "retry_period_s": args.retry_period.as_secs_f64(),
        "sigkill": {
            "to_standby_lease_write_s": round3(kill_lease.as_secs_f64()),
            "to_first_task_created_s": round3(kill_task.as_secs_f64()),
            "target_s": round3((args.lease_duration + args.retry_period).as_secs_f64()),
        },
        "sigterm": {
            "to_standby_lease_write_s": round3(term_lease.as_secs_f64()),
            "to_first_task_created_s": round3(term_task.as_secs_f64()),
            "leader_exit_code": exit.code(),
            "target_s": 1.0,
        },
    }))
}

pub(crate) fn run(args: BenchFailoverArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}
