//! Controller leadership end to end, with real processes: a standby finishes a job when the
//! leader is killed, SIGTERM hands over at once, a leader that cannot renew exits.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kube::api::PostParams;
use ringrift_crds::common::JobPhase;
use ringrift_e2e::cluster::{Cluster, METRICS_TOKEN, finished, holder, selfplay, successes, until};
use ringrift_e2e::process::HttpClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_finishes_the_job_when_the_leader_is_killed_mid_job() {
    let cluster = Cluster::start("failover-kill").await;
    let mut first = cluster.controller("first");
    let leader = until("a leader", Duration::from_secs(20), || holder(&cluster)).await;
    assert_eq!(leader, "first");
    let _second = cluster.controller("second");
    let _agents = cluster.agents("sim", 2, 2);
    let job = selfplay("handover", 2000, 100, &[("SIM_DURATION_MS", "600")]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    until("the job half done", Duration::from_secs(60), || async {
        let s = cluster.job("handover").await.status?;
        (s.games_done >= 600).then_some(())
    })
    .await;
    first.kill();
    until("the standby to lead", Duration::from_secs(20), || async {
        (holder(&cluster).await.as_deref() == Some("second")).then_some(())
    })
    .await;
    let job = finished(&cluster, "handover", Duration::from_secs(90)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.games_done, 2000);
    assert_eq!(status.outputs.len(), 20, "one output per unit, none twice");
    let tasks = cluster.tasks_of("handover").await;
    assert_eq!(successes(&tasks).len(), 20);
    assert!(
        successes(&tasks).values().all(|n| *n == 1),
        "{:?}",
        successes(&tasks)
    );
    assert!(
        tasks.iter().all(|t| t.spec.attempt == 0),
        "no unit lost or retried in the hand-over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_over_without_waiting_for_the_lease_to_expire() {
    let cluster = Cluster::start("failover-term").await;
    let mut first = cluster.controller("first");
    until("first to lead", Duration::from_secs(20), || async {
        (holder(&cluster).await.as_deref() == Some("first")).then_some(())
    })
    .await;
    let second = cluster.controller("second");
    // Both replicas serve their admin port over TLS; the standby is ready (warm caches) but not
    // leading. The probes are open, /metrics needs the metrics token, plain HTTP is refused.
    let bearer = format!("Bearer {METRICS_TOKEN}");
    for (replica, leading) in [(&first, "1"), (&second, "0")] {
        let admin = replica.announced_client();
        let ready = until("ready", Duration::from_secs(20), || async {
            let (code, _) = admin.http("GET", "/ready", &[], b"").unwrap();
            (code == 200).then_some(())
        });
        ready.await;
        assert_eq!(admin.http("GET", "/live", &[], b"").unwrap().0, 200);
        assert_eq!(admin.http("GET", "/metrics", &[], b"").unwrap().0, 401);
        let (code, answer) = HttpClient::plain(admin.address())
            .http("GET", "/live", &[], b"")
            .unwrap();
        assert_eq!(code, 400, "plain HTTP on the admin port: {answer}");
        let (code, metrics) = admin
            .http("GET", "/metrics", &[("Authorization", &bearer)], b"")
            .unwrap();
        assert_eq!(code, 200);
        assert!(
            metrics.contains(&format!("ringrift_controller_leader {leading}")),
            "{metrics}"
        );
        assert!(
            metrics.contains("ringrift_controller_pass_duration_seconds"),
            "{metrics}"
        );
    }
    let asked = Instant::now();
    first.terminate().unwrap();
    let status = first.wait(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "a SIGTERM is a clean exit: {status}\n{}",
        first.log()
    );
    until("second to lead", Duration::from_secs(10), || async {
        (holder(&cluster).await.as_deref() == Some("second")).then_some(())
    })
    .await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "hand-over took {took:?}: close to the 3 s lease, as if it waited for expiry"
    );
    assert!(first.log().contains("released the lease"), "{}", first.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_exits_with_an_error() {
    let mut cluster = Cluster::start("renew-lost").await;
    let mut controller = cluster.controller("c1");
    until("c1 to lead", Duration::from_secs(20), || async {
        (holder(&cluster).await.as_deref() == Some("c1")).then_some(())
    })
    .await;
    cluster.api.kill();
    let lost = Instant::now();
    let status = controller.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(status.code(), Some(1), "{}", controller.log());
    assert!(
        lost.elapsed() < Duration::from_secs(8),
        "renew deadline 2 s; exited after {:?}",
        lost.elapsed()
    );
    let log = controller.log();
    assert!(log.contains("leadership lost"), "{log}");
    assert!(log.contains("failed to renew the lease"), "{log}");
}
