//! Replication end to end, with real `ringrift agent` processes: a task's outputs get the
//! Task's `replicas` copies on distinct agents before it counts as Succeeded, so the producer
//! SIGKILLed right after leaves a copy that feeds the next task; fewer agents than copies is a
//! shortfall (counted), never a failure; an agent short of disk takes no copy. (And an agent
//! whose credential may not relay logs stops asking the server.)
//!
//! No controller runs here: the `Reachable` conditions its probe would set are written by the
//! test (as the controller's identity does), so which agents count as targets is the test's
//! choice.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use ringrift_crds::agent::Agent;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_e2e::agent::{AgentProcess, CLUSTER_KEY, consume, finished, make_random, output, phase};
use ringrift_e2e::cluster::{Cluster, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Sets `type_` to `status` among the agent's conditions, as the controller would (the agent
/// keeps conditions it does not own), once the agent has registered.
async fn set_condition(cluster: &Cluster, agent: &str, type_: &str, status: &str) {
    let agents: Api<Agent> = Api::all(cluster.client.clone());
    until(&format!("{agent} to register"), WAIT, || async {
        let a = agents.get_opt(agent).await.ok().flatten()?;
        let mut conditions = a.status.map(|s| s.conditions).unwrap_or_default();
        conditions.retain(|c| c.type_ != type_);
        conditions.push(
            serde_json::from_value(json!({
                "type": type_, "status": status, "reason": "Test", "message": "set by the test",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }))
            .unwrap(),
        );
        // Based on the version read, as the agent's own writes are: neither clobbers the other.
        let patch = json!({
            "metadata": {"resourceVersion": a.metadata.resource_version},
            "status": {"conditions": conditions},
        });
        agents
            .patch_status(agent, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .ok()
    })
    .await;
}

/// Marks the agents `names` reachable and waits until each is Ready and Reachable in the API.
async fn reachable(cluster: &Cluster, names: &[&str]) {
    for name in names {
        set_condition(cluster, name, "Reachable", "True").await;
    }
    cluster.ready_and_reachable(names).await;
}

/// A task on `agent` writing `mib` MiB of random bytes as `data.bin`, asking for `replicas`
/// copies; the finished Task.
async fn produce(cluster: &Cluster, task: &str, agent: &str, mib: u32, replicas: u32) -> Task {
    make_random(cluster, task, agent, mib, json!({"replicas": replicas})).await
}

fn by_name<'a>(agents: &'a [&'a AgentProcess], name: &str) -> &'a AgentProcess {
    agents.iter().find(|a| a.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_get_their_copies_before_success_and_outlive_their_producer() {
    let cluster = Cluster::start("replication").await;
    let mut a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let a3 = cluster.synced_agent("a3", CLUSTER_KEY, &[]);
    reachable(&cluster, &["a1", "a2", "a3"]).await;

    // Two copies: a1's own and one pushed to another agent, named among the holders.
    let made = output(&produce(&cluster, "make", "a1", 8, 2).await);
    assert_eq!(made.holders.len(), 2, "{:?}", made.holders);
    assert_eq!(made.holders[0], "a1");
    let copy = made.holders[1].clone();
    assert_ne!(copy, "a1");
    assert!(a1.metric("ringrift_agent_replication_pushes_total{result=\"ok\"}") >= 1.0);
    // The producer dies right after.
    a1.role.kill();
    let agents = [&a2, &a3];
    let keeper = by_name(&agents, &copy);
    assert!(
        keeper.stored(&made.digest).exists(),
        "the copy is stored on {copy}"
    );
    assert!(keeper.get("/v1/artifacts").1.contains(&made.digest), "and listed");

    // The third agent's task still gets the bytes, from the copy.
    let third = ["a2", "a3"].into_iter().find(|n| *n != copy).unwrap();
    consume(&cluster, "use", third, &made).await;
    let used = finished(&cluster, "use").await;
    assert_eq!(phase(&used), TaskPhase::Succeeded, "{:?}", used.status);
    let (_, log) = by_name(&agents, third).get("/v1/tasks/default/use/logs");
    assert!(log.contains(made.digest.trim_start_matches("sha256:")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_agents_than_copies_is_a_shortfall_and_a_full_disk_takes_none() {
    let cluster = Cluster::start("replication-short").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    // a3 counts any disk as short: its own DiskPressure condition is True, and it takes no copy.
    let a3 = cluster.synced_agent("a3", CLUSTER_KEY, &["--disk-pressure-mib", "1000000000"]);
    reachable(&cluster, &["a1", "a2", "a3"]).await;

    let made = output(&produce(&cluster, "make", "a1", 1, 3).await);
    assert_eq!(made.holders, ["a1", "a2"], "a3 is under DiskPressure");
    assert!(!a3.stored(&made.digest).exists());
    let short = a1.metric("ringrift_agent_replication_shortfall_copies_total");
    assert!(
        (short - 1.0).abs() < f64::EPSILON,
        "three copies asked, two made: {short}"
    );
    // One copy asked: nothing pushed.
    let pushes = a2.metric("ringrift_agent_replication_pushes_total{result=\"ok\"}");
    let alone = output(&produce(&cluster, "alone", "a2", 1, 1).await);
    assert_eq!(alone.holders, ["a2"]);
    let after = a2.metric("ringrift_agent_replication_pushes_total{result=\"ok\"}");
    assert!((after - pushes).abs() < f64::EPSILON, "{pushes} then {after}");

    // These agents run with the administrator's kubeconfig, which the server does not let
    // relay task logs: each says so once and stops asking (it asked every 5 s before).
    let said = |a: &AgentProcess| {
        a.role
            .log()
            .matches("does not relay task logs for this agent")
            .count()
    };
    until("a1 to give up relaying logs", WAIT, || async {
        (said(&a1) > 0).then_some(())
    })
    .await;
    a1.after_passes(8.0).await;
    assert_eq!(said(&a1), 1, "{}", a1.role.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_go_to_another_zone_first_and_a_bad_zone_is_refused_at_start() {
    let cluster = Cluster::start("replication-zones").await;
    let _a1 = cluster.synced_agent("a1", CLUSTER_KEY, &["--zone", "z1"]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &["--zone", "z1"]);
    let a3 = cluster.synced_agent("a3", CLUSTER_KEY, &["--zone", "z2"]);
    reachable(&cluster, &["a1", "a2", "a3"]).await;
    let agents: Api<Agent> = Api::all(cluster.client.clone());
    let zone = |a: &Agent| {
        a.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ringrift_crds::identity::ZONE_LABEL))
            .cloned()
    };
    assert_eq!(zone(&agents.get("a3").await.unwrap()).as_deref(), Some("z2"));
    // Whatever the digest, a1's one copy goes to the other zone.
    for i in 0..3 {
        let made = output(&produce(&cluster, &format!("make{i}"), "a1", 1, 2).await);
        assert_eq!(made.holders, ["a1", "a3"], "copy {i}");
        assert!(a3.stored(&made.digest).exists());
    }
    // Another zone on restart: the label follows.
    drop(a2);
    let _a2 = cluster.synced_agent("a2", CLUSTER_KEY, &["--zone", "z3"]);
    until("a2's label to change", WAIT, || async {
        (zone(&agents.get("a2").await.ok()?).as_deref() == Some("z3")).then_some(())
    })
    .await;
    // A zone that is not a label value: refused before anything starts, naming the flag.
    let out = std::process::Command::new(ringrift_e2e::process::ringrift_bin().unwrap())
        .args(["agent", "--zone", "not a zone", "--kubeconfig"])
        .arg(&cluster.api.kubeconfig)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid --zone \"not a zone\""), "{err}");
}
