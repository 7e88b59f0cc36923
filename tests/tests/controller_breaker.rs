//! The circuit breaker for failing agents, end to end: the real controller with two simulated
//! agents, one of which fails every task with a GPU fault. After three such failures it is
//! quarantined (condition, event, metric) and takes no new work while the job finishes on the
//! other; the quarantine ends on time.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use ringrift_crds::agent::Agent;
use ringrift_crds::common::JobPhase;
use ringrift_e2e::cluster::{Cluster, selfplay, until};

const WAIT: Duration = Duration::from_secs(60);

async fn quarantined(agents: &Api<Agent>, name: &str) -> Option<(String, String, i64)> {
    let a = agents.get(name).await.ok()?;
    let c = a
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Quarantined")?;
    Some((c.status, c.reason, c.last_transition_time.0.as_second()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_tasks_keep_failing_is_kept_from_work_for_a_while() {
    let cluster = Cluster::start("breaker").await;
    let controller = cluster.controller_with("c1", &["--breaker-quarantine", "5s"]);
    let _agents = cluster.agents("sim", 2, 4);
    let mut job = selfplay(
        "flaky",
        24,
        1,
        &[
            ("SIM_FAIL_AGENTS", "sim-0"),
            ("SIM_FAIL_CLASS", "GpuFault"),
            ("SIM_DURATION_MS", "300"),
        ],
    );
    job.spec.settings.run_policy.backoff_limit = 20;
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();

    let agents: Api<Agent> = Api::all(cluster.client.clone());
    let since = until("sim-0 quarantined", WAIT, || async {
        let (status, reason, at) = quarantined(&agents, "sim-0").await?;
        (status == "True" && reason == "RepeatedFailures").then_some(at)
    })
    .await;
    assert!(
        quarantined(&agents, "sim-1").await.is_none(),
        "the healthy agent is not touched"
    );
    assert!((Cluster::metric(&controller, "ringrift_controller_agents_quarantined") - 1.0).abs() < 1e-9);
    until("the AgentQuarantined event", WAIT, || async {
        let described = cluster.kubectl(&["describe", "agent", "sim-0"]);
        described.contains("AgentQuarantined").then_some(())
    })
    .await;

    // While quarantined, nothing new goes to sim-0: the job finishes on sim-1.
    let done = until("the job done", Duration::from_secs(90), || async {
        let s = cluster.job("flaky").await.status?;
        s.phase.is_finished().then_some(s)
    })
    .await;
    assert_eq!(done.phase, JobPhase::Succeeded, "{done:?}");
    let late_on_sim0: Vec<String> = cluster
        .tasks_of("flaky")
        .await
        .into_iter()
        .filter(|t| {
            t.spec.agent.as_deref() == Some("sim-0")
                && t.metadata
                    .creation_timestamp
                    .as_ref()
                    .is_some_and(|c| c.0.as_second() > since + 1)
        })
        .filter_map(|t| t.metadata.name)
        .collect();
    assert!(
        late_on_sim0.is_empty(),
        "tasks placed on the quarantined agent: {late_on_sim0:?}"
    );

    // Five seconds later it takes work again.
    until("sim-0 released", WAIT, || async {
        let (status, reason, _) = quarantined(&agents, "sim-0").await?;
        (status == "False" && reason == "Released").then_some(())
    })
    .await;
    assert!(Cluster::metric(&controller, "ringrift_controller_agents_quarantined").abs() < 1e-9);
}
