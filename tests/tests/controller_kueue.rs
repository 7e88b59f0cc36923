//! Kueue's external framework end to end: the real controller with `--kueue` and simulated
//! agents, Kueue's Workload CRD in the embedded API server (authored after Kueue's API: no
//! Kueue build can be had here), and this test acting as Kueue. A job labelled
//! `kueue.x-k8s.io/queue-name` gets a Workload owned by it and runs nothing until the Workload
//! is admitted; an eviction stops its tasks until it is admitted again; a finished job's
//! Workload is marked Finished; a job without the label runs as before, with no Workload.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use ringrift_crds::kueue::Workload;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{CancelReason, Task, TaskPhase};
use ringrift_e2e::cluster::{Cluster, selfplay, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Kueue's conditions on a Workload it admitted.
const ADMITTED: &[(&str, &str, &str)] = &[
    ("QuotaReserved", "True", "QuotaReserved"),
    ("Admitted", "True", "Admitted"),
];

async fn queued(cluster: &Cluster, name: &str, units: u64, ms: &str) -> SelfplayJob {
    let mut job = selfplay(name, units, 1, &[("SIM_DURATION_MS", ms)]);
    job.metadata.labels = Some([("kueue.x-k8s.io/queue-name".to_owned(), "team-queue".to_owned())].into());
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap()
}

fn live(t: &Task) -> bool {
    !t.spec.cancel
        && t.status
            .as_ref()
            .is_none_or(|s| matches!(s.phase, TaskPhase::Pending | TaskPhase::Running))
}

async fn live_tasks(cluster: &Cluster, job: &str) -> usize {
    cluster.tasks_of(job).await.iter().filter(|t| live(t)).count()
}

/// Sets the Workload's conditions as Kueue would.
async fn kueue_says(workloads: &Api<Workload>, name: &str, conditions: &[(&str, &str, &str)]) {
    let conditions: Vec<_> = conditions
        .iter()
        .map(|(t, s, reason)| {
            json!({"type": t, "status": s, "reason": reason, "message": format!("{t} by the test"),
                   "lastTransitionTime": "2026-12-06T00:00:00Z"})
        })
        .collect();
    let patch = json!({"status": {"conditions": conditions, "admission": {"clusterQueue": "cluster-queue"}}});
    workloads
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn queue_reason(cluster: &Cluster, job: &str) -> String {
    let job = cluster.job(job).await;
    job.status
        .and_then(|s| s.queue)
        .map(|q| q.reason)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_runs_only_while_kueue_admits_its_workload() {
    let cluster = Cluster::start("kueue").await;
    let crd = ringrift_e2e::repo_root().join("tests/fixtures/kueue-workloads-crd.yaml");
    cluster.kubectl(&["apply", "-f", crd.to_str().unwrap()]);
    cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/workloads.kueue.x-k8s.io",
    ]);
    let controller = cluster.controller_with("c1", &["--kueue"]);
    let _agents = cluster.agents("sim", 1, 4);
    let workloads: Api<Workload> = Api::namespaced(cluster.client.clone(), "default");

    let job = queued(&cluster, "queued", 4, "600000").await;
    let uid = job.metadata.uid.clone().unwrap();
    let name = format!("selfplayjob-queued-{}", &uid[..5]);
    let workload = until("the job's Workload", WAIT, || async {
        workloads.get(&name).await.ok()
    })
    .await;
    assert_eq!(workload.spec.queue_name, "team-queue");
    let set = &workload.spec.pod_sets[0];
    assert_eq!(set["count"], 4);
    assert_eq!(
        set["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"],
        "1"
    );
    let owner = &workload.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("SelfplayJob", uid.as_str())
    );
    // Not admitted: nothing runs, and the job says why.
    Cluster::after_passes(&controller, 3.0).await;
    assert!(cluster.tasks_of("queued").await.is_empty());
    let reason = queue_reason(&cluster, "queued").await;
    assert!(reason.contains("waiting for Kueue to admit Workload"), "{reason}");

    // Admitted: its units run.
    kueue_says(&workloads, &name, ADMITTED).await;
    until("4 tasks running", WAIT, || async {
        (live_tasks(&cluster, "queued").await == 4).then_some(())
    })
    .await;

    // Evicted: its tasks stop, and nothing runs until it is admitted again.
    kueue_says(
        &workloads,
        &name,
        &[
            ("QuotaReserved", "True", "QuotaReserved"),
            ("Admitted", "True", "Admitted"),
            ("Evicted", "True", "Preempted"),
        ],
    )
    .await;
    until("the tasks stopped", WAIT, || async {
        (live_tasks(&cluster, "queued").await == 0).then_some(())
    })
    .await;
    let stopped = cluster.tasks_of("queued").await;
    assert!(
        stopped
            .iter()
            .all(|t| t.cancel_reason() == Some(CancelReason::Preempted)),
        "{:?}",
        stopped.iter().map(Task::cancel_reason).collect::<Vec<_>>()
    );
    Cluster::after_passes(&controller, 3.0).await;
    assert_eq!(
        live_tasks(&cluster, "queued").await,
        0,
        "no new attempts while evicted"
    );
    let reason = queue_reason(&cluster, "queued").await;
    assert!(reason.contains("evicted by Kueue (Preempted"), "{reason}");
    kueue_says(
        &workloads,
        &name,
        &[
            ("QuotaReserved", "True", "QuotaReserved"),
            ("Admitted", "True", "Admitted"),
            ("Evicted", "False", "Admitted"),
        ],
    )
    .await;
    until("4 tasks running again", WAIT, || async {
        (live_tasks(&cluster, "queued").await == 4).then_some(())
    })
    .await;

    finished_and_plain(&cluster, &workloads).await;
}

/// A queued job that finishes has its Workload marked Finished; a job without the label runs
/// at once with no Workload.
async fn finished_and_plain(cluster: &Cluster, workloads: &Api<Workload>) {
    // A job that finishes: its Workload is marked Finished, so Kueue releases the quota.
    let quick = queued(cluster, "quick", 2, "200").await;
    let quick_name = format!("selfplayjob-quick-{}", &quick.metadata.uid.unwrap()[..5]);
    until("the quick job's Workload", WAIT, || async {
        workloads.get(&quick_name).await.ok()
    })
    .await;
    kueue_says(workloads, &quick_name, ADMITTED).await;
    let finished = until("the Workload Finished", WAIT, || async {
        let w = workloads.get(&quick_name).await.ok()?;
        w.status?
            .conditions
            .into_iter()
            .find(|c| c["type"] == "Finished" && c["status"] == "True")
    })
    .await;
    assert_eq!(finished["reason"], "Succeeded");
    let kept = workloads
        .get(&quick_name)
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions;
    assert!(
        kept.iter().any(|c| c["type"] == "Admitted"),
        "Kueue's conditions are kept: {kept:?}"
    );

    // No label: it runs at once, with no Workload.
    let plain = selfplay("plain", 1, 1, &[("SIM_DURATION_MS", "200")]);
    cluster
        .jobs()
        .create(&PostParams::default(), &plain)
        .await
        .unwrap();
    until("the plain job to run", WAIT, || async {
        (!cluster.tasks_of("plain").await.is_empty()).then_some(())
    })
    .await;
    let all = workloads.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2, "one Workload per queued job");
}
