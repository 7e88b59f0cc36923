//! Peer-to-peer data sync and gossip end to end, with real `ringrift agent` processes: an
//! artifact made on one agent feeds a task on another; a pull survives the death of a holder
//! and the restart of the puller, byte-identical; a holder serving corrupt bytes is dropped and
//! nothing corrupt is stored; a holder whose manifest lies is distrusted; an agent without the cluster key can neither join the gossip nor
//! fetch; a SIGKILLed agent is seen dead by the others.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use ringrift_crds::common::Artifact;
use ringrift_crds::task::{FailureClass, Task, TaskPhase};
use ringrift_e2e::agent::{AgentProcess, CLUSTER_KEY, consume, finished, make_random, phase};
use ringrift_e2e::cluster::{Cluster, until};
use ringrift_e2e::holders::{evil_holder, fake_agent, key_pair};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Runs a task on `agent` writing `mib` MiB of random bytes as `data.bin`; returns the artifact.
async fn produce(cluster: &Cluster, task: &str, agent: &str, mib: u32) -> Artifact {
    let t = make_random(cluster, task, agent, mib, json!({})).await;
    assert_eq!(phase(&t), TaskPhase::Succeeded, "{:?}", t.status);
    t.status.unwrap().outputs.remove(0)
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap_or(""))
}

fn log_of(agent: &AgentProcess, task: &str) -> String {
    agent.get(&format!("/v1/tasks/default/{task}/logs?tail=100")).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_made_on_one_agent_feeds_another_and_a_pull_survives_its_holder_dying() {
    let cluster = Cluster::start("sync-holders").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let a3 = cluster.synced_agent("a3", CLUSTER_KEY, &["--transfer-rate-mib", "8"]);

    let made = produce(&cluster, "make", "a1", 40).await;
    assert_eq!(made.holders, ["a1"]);

    // Made on a1, used on a2.
    consume(&cluster, "use", "a2", &made).await;
    let used = finished(&cluster, "use").await;
    assert_eq!(phase(&used), TaskPhase::Succeeded, "{:?}", used.status);
    let hex = made.digest.trim_start_matches("sha256:");
    assert!(log_of(&a2, "use").contains(hex), "the task read the right bytes");
    assert!(a2.get("/v1/artifacts").1.contains(&made.digest));
    assert!(
        a2.metric("ringrift_agent_transfer_bytes_total{direction=\"in\",class=\"background\"}")
            >= 40.0 * 1024.0 * 1024.0
    );

    // Gossip: everyone sees everyone, with the artifacts they hold.
    until("all three to see each other", WAIT, || async {
        [&a1, &a2, &a3]
            .iter()
            .all(|a| a.gossip_view().0.len() == 3)
            .then_some(())
    })
    .await;

    // a3 pulls from a1 and a2 at 8 MiB/s; a1 dies part-way.
    let mut both = made.clone();
    both.holders = vec!["a1".into(), "a2".into()];
    consume(&cluster, "late", "a3", &both).await;
    let in_bytes = "ringrift_agent_transfer_bytes_total{direction=\"in\",class=\"background\"}";
    until("a3 to have pulled 8 MiB", WAIT, || async {
        (a3.metric(in_bytes) >= 8.0 * 1024.0 * 1024.0).then_some(())
    })
    .await;
    let mut a1 = a1;
    a1.role.kill();
    let late = finished(&cluster, "late").await;
    assert_eq!(phase(&late), TaskPhase::Succeeded, "{:?}", late.status);
    assert!(log_of(&a3, "late").contains(hex));
    let (from_a2, on_a3) = (
        std::fs::read(a2.stored(&made.digest)).unwrap(),
        std::fs::read(a3.stored(&made.digest)).unwrap(),
    );
    assert!(from_a2 == on_a3, "byte-identical");
    assert_eq!(sha256_of(&a3.stored(&made.digest)), made.digest);
    assert!(
        a3.metric("ringrift_agent_transfer_holders_dropped_total{reason=\"unreachable\"}") >= 1.0,
        "a1 was dropped from the pull as unreachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_cut_by_a_crash_of_the_puller_resumes_where_it_stopped() {
    let cluster = Cluster::start("sync-resume").await;
    let _a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let mut a2 = cluster.synced_agent("a2", CLUSTER_KEY, &["--transfer-rate-mib", "6"]);
    let made = produce(&cluster, "make", "a1", 30).await;

    consume(&cluster, "first", "a2", &made).await;
    let in_bytes = "ringrift_agent_transfer_bytes_total{direction=\"in\",class=\"background\"}";
    until("a2 to have pulled 12 MiB", WAIT, || async {
        (a2.metric(in_bytes) >= 12.0 * 1024.0 * 1024.0).then_some(())
    })
    .await;
    a2.role.kill();
    drop(a2);

    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    consume(&cluster, "second", "a2", &made).await;
    let second = finished(&cluster, "second").await;
    assert_eq!(phase(&second), TaskPhase::Succeeded, "{:?}", second.status);
    assert_eq!(sha256_of(&a2.stored(&made.digest)), made.digest);
    let pulled_again = a2.metric(in_bytes);
    // At least the chunks recorded before the crash (two 4 MiB chunks at 6 MiB/s, recorded every
    // half second) are not pulled again.
    assert!(
        pulled_again <= 26.0 * 1024.0 * 1024.0,
        "resumed: only the rest was pulled, {pulled_again} bytes"
    );
    assert!(a2.role.log().contains("resuming a pull"), "{}", a2.role.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_serving_corrupt_bytes_is_dropped_and_nothing_corrupt_is_stored() {
    let cluster = Cluster::start("sync-corrupt").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    // a3 gossips under another key: it cannot learn of a1 and a2 as holders, so in the last
    // step the bad holder really is the only one it knows (evil checks no credentials).
    let a3 = cluster.synced_agent("a3", "an-isolated-cluster-key-0123456789", &[]);
    let made = produce(&cluster, "make", "a1", 16).await;
    let (code, manifest) = a1.get(&format!("/v1/artifacts/{}/chunks", made.digest));
    assert_eq!(code, 200);

    // An agent "evil" whose endpoint serves garbage.
    let (endpoint, fingerprint) = evil_holder(manifest, &key_pair());
    fake_agent(&cluster, "evil", &endpoint, &fingerprint).await;

    // With a good holder beside it: the bad chunks are caught, the holder dropped, the pull done.
    let mut mixed = made.clone();
    mixed.holders = vec!["evil".into(), "a1".into()];
    consume(&cluster, "mixed", "a2", &mixed).await;
    let t = finished(&cluster, "mixed").await;
    assert_eq!(phase(&t), TaskPhase::Succeeded, "{:?}", t.status);
    assert_eq!(sha256_of(&a2.stored(&made.digest)), made.digest);
    assert!(a2.metric("ringrift_agent_transfer_verification_failures_total") >= 1.0);
    let dropped = a2.metric("ringrift_agent_transfer_holders_dropped_total{reason=\"bad_data\"}");
    assert!(
        (dropped - 1.0).abs() < f64::EPSILON,
        "one holder dropped for bad data: {dropped}"
    );

    // With only the bad holder: the task fails, and nothing is stored or listed.
    let mut only_evil = made.clone();
    only_evil.holders = vec!["evil".into()];
    consume(&cluster, "doomed", "a3", &only_evil).await;
    let t = finished(&cluster, "doomed").await;
    let status = t.status.unwrap();
    assert_eq!(
        (status.phase, status.failure_class),
        (TaskPhase::Failed, Some(FailureClass::InputUnavailable)),
        "{:?}",
        status.message
    );
    assert!(!a3.stored(&made.digest).exists(), "nothing corrupt stored");
    assert!(!a3.get("/v1/artifacts").1.contains(&made.digest));
    let (code, _) = a3.get(&format!("/v1/artifacts/{}", made.digest));
    assert_eq!(code, 404, "nothing served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_manifest_lies_is_distrusted_and_the_pull_ends_from_another() {
    let cluster = Cluster::start("sync-liar").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let made = produce(&cluster, "make", "a1", 16).await;
    let (code, manifest) = a1.get(&format!("/v1/artifacts/{}/chunks", made.digest));
    assert_eq!(code, 200);
    // The same digest and size, chunk states that do not belong to the content (the last one,
    // the digest itself, kept so the manifest passes the checks made before any byte moves).
    let mut lie: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    lie["chunks"][0] = lie["chunks"][1].clone();
    let (endpoint, fingerprint) = evil_holder(lie.to_string(), &key_pair());
    fake_agent(&cluster, "liar", &endpoint, &fingerprint).await;

    // The liar is asked first, so its manifest is the one the pull starts with; a1 serves
    // another and is not asked until the liar is found out.
    let mut from_liar = made.clone();
    from_liar.holders = vec!["liar".into(), "a1".into()];
    consume(&cluster, "lied-to", "a2", &from_liar).await;
    let t = finished(&cluster, "lied-to").await;
    assert_eq!(phase(&t), TaskPhase::Succeeded, "{:?}", t.status);
    assert_eq!(sha256_of(&a2.stored(&made.digest)), made.digest);
    assert!(
        a2.role.log().contains("distrusting its holder"),
        "{}",
        a2.role.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_the_cluster_key_cannot_join_the_gossip_or_fetch() {
    let cluster = Cluster::start("sync-key").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let outsider = cluster.synced_agent("outsider", "not-the-cluster-key-at-all", &[]);
    until("a1 and a2 to meet", WAIT, || async {
        (a1.gossip_view().0.len() == 2 && a2.gossip_view().0.len() == 2).then_some(())
    })
    .await;
    until("the outsider's packets to be refused", WAIT, || async {
        (a1.metric("ringrift_agent_gossip_rejected_packets_total") > 0.0).then_some(())
    })
    .await;
    for a in [&a1, &a2] {
        assert!(!a.gossip_view().0.contains(&"outsider".to_owned()));
    }
    assert_eq!(outsider.gossip_view().0, ["outsider"]);

    let made = produce(&cluster, "make", "a1", 1).await;
    consume(&cluster, "steal", "outsider", &made).await;
    let t = finished(&cluster, "steal").await;
    let status = t.status.unwrap();
    assert_eq!(status.failure_class, Some(FailureClass::InputUnavailable));
    assert!(
        status.message.as_deref().unwrap_or("").contains("401"),
        "{:?}",
        status.message
    );
    assert!(!outsider.stored(&made.digest).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_with_sigkill_is_seen_dead_by_the_others() {
    let cluster = Cluster::start("sync-death").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let mut a3 = cluster.synced_agent("a3", CLUSTER_KEY, &[]);
    until("all three to meet", WAIT, || async {
        [&a1, &a2, &a3]
            .iter()
            .all(|a| a.gossip_view().0.len() == 3)
            .then_some(())
    })
    .await;
    a3.role.kill();
    let started = std::time::Instant::now();
    until("a1 and a2 to see a3 dead", Duration::from_secs(20), || async {
        [&a1, &a2]
            .iter()
            .all(|a| {
                let (members, dead) = a.gossip_view();
                dead.contains(&"a3".to_owned()) && !members.contains(&"a3".to_owned())
            })
            .then_some(())
    })
    .await;
    eprintln!("a3 seen dead after {:?}", started.elapsed());
    assert!(a1.metric("ringrift_agent_gossip_member_deaths_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_what_nothing_needs_and_keeps_what_a_task_needs() {
    let cluster = Cluster::start("sync-retention").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let stale = produce(&cluster, "stale", "a1", 1).await;
    let wanted = produce(&cluster, "wanted", "a1", 1).await;
    // A task on a2 that needs `wanted` and has not finished (it waits for a file that never comes).
    let never = cluster.dir().join("never");
    cluster
        .shell_task(
            "waiting",
            "a2",
            &format!("while [ ! -f {} ]; do sleep 0.1; done", never.display()),
            json!({"inputs": [wanted]}),
        )
        .await;
    until("the waiting task to run", WAIT, || async {
        cluster
            .tasks()
            .get("waiting")
            .await
            .ok()
            .filter(|t| phase(t) == TaskPhase::Running)
    })
    .await;
    // a1 again, with marks so low that any disk is past them: every round drops all it may.
    drop(a1);
    let a1 = cluster.synced_agent(
        "a1",
        CLUSTER_KEY,
        &[
            "--disk-high-water",
            "0.000001",
            "--disk-low-water",
            "0.0000005",
            "--retention-interval",
            "500ms",
        ],
    );
    until("stale games to be dropped", WAIT, || async {
        (!a1.stored(&stale.digest).exists()).then_some(())
    })
    .await;
    assert!(!a1.get("/v1/artifacts").1.contains(&stale.digest));
    assert!(a1.metric("ringrift_agent_retention_dropped_artifacts_total") >= 1.0);
    // Several more rounds (counted, not slept through): what the waiting task needs stays.
    let rounds = a1.metric("ringrift_agent_retention_rounds_total");
    until("three more retention rounds", Duration::from_secs(30), || async {
        (a1.metric("ringrift_agent_retention_rounds_total") >= rounds + 3.0).then_some(())
    })
    .await;
    assert!(a1.stored(&wanted.digest).exists(), "needed by an unfinished task");
    drop(a2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_while_pulling_its_inputs_stops_at_once() {
    let cluster = Cluster::start("sync-cancel").await;
    let _a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &["--transfer-rate-mib", "1"]);
    let made = produce(&cluster, "make", "a1", 32).await;
    consume(&cluster, "slow", "a2", &made).await;
    until("slow to be fetching", WAIT, || async {
        cluster
            .tasks()
            .get("slow")
            .await
            .ok()
            .filter(|t| phase(t) == TaskPhase::Fetching)
    })
    .await;
    let asked = std::time::Instant::now();
    cluster
        .tasks()
        .patch(
            "slow",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
    let t = finished_or_cancelled(&cluster, "slow").await;
    assert_eq!(phase(&t), TaskPhase::Cancelled, "{:?}", t.status);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped within {:?}",
        asked.elapsed()
    );
    assert!(!a2.stored(&made.digest).exists(), "the pull did not finish");
}

async fn finished_or_cancelled(cluster: &Cluster, name: &str) -> Task {
    until(&format!("{name} to end"), WAIT, || async {
        cluster.tasks().get(name).await.ok().filter(|t| {
            matches!(
                phase(t),
                TaskPhase::Succeeded | TaskPhase::Failed | TaskPhase::Cancelled
            )
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_waits_for_a_holder_that_is_restarting() {
    let cluster = Cluster::start("sync-wait").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let made = produce(&cluster, "make", "a1", 2).await;
    drop(a1);
    consume(&cluster, "patient", "a2", &made).await;
    // The pull has found the holder gone (a failed round, counted) and keeps waiting.
    until("a2 to have tried a1 and failed", WAIT, || async {
        (a2.metric("ringrift_agent_transfers_total{result=\"failed\"}") >= 1.0).then_some(())
    })
    .await;
    let _a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let t = finished(&cluster, "patient").await;
    assert_eq!(phase(&t), TaskPhase::Succeeded, "{:?}", t.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_is_not_who_its_agent_says_or_speaks_plain_http_is_refused() {
    let cluster = Cluster::start("sync-impostor").await;
    let a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    let made = produce(&cluster, "make", "a1", 4).await;
    let (code, manifest) = a1.get(&format!("/v1/artifacts/{}/chunks", made.digest));
    assert_eq!(code, 200);
    // An impostor: its Agent status pins one key, its endpoint serves another.
    let (endpoint, served) = evil_holder(manifest, &key_pair());
    let pinned = key_pair().info().unwrap().fingerprint;
    fake_agent(&cluster, "impostor", &endpoint, &pinned).await;
    // A holder whose Agent says plain HTTP.
    fake_agent(&cluster, "plain", "http://127.0.0.1:9", &pinned).await;

    let mut input = made.clone();
    input.holders = vec!["impostor".into(), "plain".into(), "a1".into()];
    consume(&cluster, "careful", "a2", &input).await;
    let t = finished(&cluster, "careful").await;
    assert_eq!(phase(&t), TaskPhase::Succeeded, "{:?}", t.status);
    assert_eq!(sha256_of(&a2.stored(&made.digest)), made.digest);
    let mismatches =
        a2.metric(r#"ringrift_agent_trust_failures_total{peer="agent",reason="fingerprint_mismatch"}"#);
    assert!(mismatches >= 1.0, "counted: {mismatches}");
    let log = a2.role.log();
    assert!(
        log.contains("cannot trust the peer agent") && log.contains(&served) && log.contains(&pinned),
        "the refusal names the peer, what it presented and what was pinned:\n{log}"
    );
    assert!(log.contains("refusing plain HTTP"), "{log}");
}
