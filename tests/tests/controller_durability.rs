//! Durability with the controller, end to end with real `ringrift agent` processes: the
//! controller keeps each needed output at its count of live holders (copy Tasks when a holder
//! is lost), says which outputs lost every copy, makes lost games again, keeps work and copies
//! off a full disk while retention keeps what the count relies on, and a copy survives the
//! holder it pulls from being killed midway. (The agent's own copies, without a controller,
//! are in `agent_replication.rs`; a whole loop living through losses in `loop_durability.rs`.)

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use ringrift_crds::agent::Agent;
use ringrift_crds::common::Artifact;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_e2e::agent::{AgentProcess, CLUSTER_KEY, make_random, output, phase};
use ringrift_e2e::cluster::{Cluster, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The copies of `job`'s one output as its status records them, once it has one.
async fn recorded(cluster: &Cluster, job: &str) -> Option<Artifact> {
    let j = cluster.jobs().get(job).await.ok()?;
    j.status?.outputs.into_iter().next()
}

/// The reason of the job's `Replicated` condition and its message.
async fn replicated(cluster: &Cluster, job: &str) -> Option<(String, String)> {
    let j = cluster.jobs().get(job).await.ok()?;
    let c = j
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Replicated")?;
    Some((c.reason, c.message))
}

/// A selfplay job `games` of `units` units, each writing `size` random bytes (`head -c`) as
/// its games, kept as `replicas` copies; and a training job that reads its dataset (suspended,
/// so it stays unfinished): the games are needed, and kept at their count.
async fn needed_games(cluster: &Cluster, units: u64, size: &str, replicas: u32) {
    let mut job = ringrift_e2e::cluster::selfplay("games", units, 1, &[]);
    job.spec.settings.resources.gpus = 0;
    job.spec.settings.replicas = Some(replicas);
    job.spec.settings.template.command = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("head -c {size} /dev/urandom > \"$RINGRIFT_OUTPUT_DIR/part.games\""),
    ];
    cluster
        .jobs()
        .create(&kube::api::PostParams::default(), &job)
        .await
        .unwrap();
    let _: ringrift_crds::training::TrainingJob = ringrift_e2e::cluster::apply_json(
        cluster,
        json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "reader", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "datasets": ["games-games"], "window": {"games": 10},
                     "runPolicy": {"suspend": true}, "output": {"model": "m1"}}
        }),
    )
    .await;
}

/// With the controller: a selfplay job's games (two copies, read by a training job) lose a
/// holder, and the controller has a copy made on the third agent; then every holder goes and
/// the job names the lost games.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_holder_is_replaced_and_losing_every_copy_is_said() {
    use ringrift_crds::common::JobPhase;

    let cluster = Cluster::start("replication-repair").await;
    let controller = cluster.controller("c1");
    let mut agents = three_agents(&cluster).await;

    needed_games(&cluster, 1, "2M", 2).await;
    let made = until("the games with two copies", WAIT, || async {
        let j = cluster.jobs().get("games").await.ok()?;
        let s = j.status?;
        let out = s.outputs.into_iter().next()?;
        (s.phase == JobPhase::Succeeded && out.holders.len() == 2).then_some(out)
    })
    .await;
    let index = |name: &str| usize::from(name.as_bytes()[1] - b'1');
    let third = ["a1", "a2", "a3"]
        .into_iter()
        .find(|n| !made.holders.iter().any(|h| h == n))
        .unwrap();
    assert!(
        !agents[index(third)]
            .as_ref()
            .unwrap()
            .stored(&made.digest)
            .exists()
    );

    // The pushed copy's agent dies: the controller has the third agent make one.
    let lost = made.holders[1].clone();
    agents[index(&lost)].take().unwrap().role.kill();
    let repaired = until("a copy on the third agent", WAIT, || async {
        let out = recorded(&cluster, "games").await?;
        out.holders.iter().any(|h| h == third).then_some(out)
    })
    .await;
    assert_eq!(repaired.digest, made.digest);
    let keeper = agents[index(third)].as_ref().unwrap();
    let stored = std::fs::read(keeper.stored(&made.digest)).unwrap();
    assert_eq!(stored.len(), 2 * 1024 * 1024, "the whole copy");
    let copies: Vec<Task> = cluster
        .tasks()
        .list(&ListParams::default().labels("ringrift.ai/job=games"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|t| t.spec.role == ringrift_crds::task::Role::Copy)
        .collect();
    assert_eq!(copies.len(), 1, "one copy made, not one per pass");
    assert_eq!(copies[0].spec.agent.as_deref(), Some(third));
    assert_eq!(phase(&copies[0]), TaskPhase::Succeeded, "{:?}", copies[0].status);
    until("Replicated again", WAIT, || async {
        (replicated(&cluster, "games").await?.0 == "Replicated").then_some(())
    })
    .await;
    // Bytes moved: the producer's push and the copy's pull, 2 MiB each.
    let moved = cluster.job("games").await.status.unwrap().bytes_moved;
    assert_eq!(moved, 2 * 2 * 1024 * 1024);
    let described = cluster.kubectl(&["describe", "sp", "games"]);
    assert!(described.contains("CopyingOutputs"), "{described}");
    assert!(keeper.metric("ringrift_agent_copies_made_total") >= 1.0);
    let metric = |name: &str| Cluster::metric(&controller, name);
    assert!((metric("ringrift_controller_copies_created_total") - 1.0).abs() < f64::EPSILON);

    // Every holder goes: the job says which output has no copy left, and who held it.
    for a in &mut agents {
        if let Some(mut a) = a.take() {
            a.role.kill();
        }
    }
    let (_, message) = until("CopiesLost", WAIT, || async {
        let r = replicated(&cluster, "games").await?;
        (r.0 == "CopiesLost").then_some(r)
    })
    .await;
    assert!(
        message.contains("part.games") && message.contains(&made.digest) && message.contains(third),
        "{message}"
    );
    until("the OutputsLost event and metric", WAIT, || async {
        let described = cluster.kubectl(&["describe", "sp", "games"]);
        (described.contains("OutputsLost")
            && (metric("ringrift_controller_outputs_lost") - 1.0).abs() < f64::EPSILON)
            .then_some(())
    })
    .await;
}

/// Agents a1, a2 and a3 gossiping, once the controller's probe found each Ready and Reachable
/// (an option each, for the test to take one out and kill it).
async fn three_agents(cluster: &Cluster) -> [Option<AgentProcess>; 3] {
    let agents = [
        Some(cluster.synced_agent("a1", CLUSTER_KEY, &[])),
        Some(cluster.synced_agent("a2", CLUSTER_KEY, &[])),
        Some(cluster.synced_agent("a3", CLUSTER_KEY, &[])),
    ];
    cluster.ready_and_reachable(&["a1", "a2", "a3"]).await;
    agents
}

/// With the controller: games kept as one copy (`replicas: 1`) and still needed lose their only
/// holder; the units that made them run again elsewhere, and the job is whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_lost_with_every_copy_are_made_again() {
    use ringrift_crds::common::JobPhase;

    let cluster = Cluster::start("replication-regenerate").await;
    let _controller = cluster.controller("c1");
    let mut agents = three_agents(&cluster).await;
    needed_games(&cluster, 2, "64K", 1).await;
    let first = until("the games, one copy each", WAIT, || async {
        let s = cluster.jobs().get("games").await.ok()?.status?;
        (s.phase == JobPhase::Succeeded && s.outputs.len() == 2).then_some(s.outputs)
    })
    .await;
    // The holder of the first unit's games dies with the only copy.
    let gone = first[0].holders[0].clone();
    let index = usize::from(gone.as_bytes()[1] - b'1');
    agents[index].take().unwrap().role.kill();
    let lost: Vec<String> = first
        .iter()
        .filter(|a| a.holders == [gone.clone()])
        .map(|a| a.digest.clone())
        .collect();

    let again = until("the lost games made again", Duration::from_secs(90), || async {
        let s = cluster.jobs().get("games").await.ok()?.status?;
        let whole = s.phase == JobPhase::Succeeded
            && s.outputs.len() == 2
            && s.outputs.iter().all(|a| !a.holders.contains(&gone));
        whole.then_some(s.outputs)
    })
    .await;
    assert!(
        again.iter().all(|a| !lost.contains(&a.digest)),
        "new games, not the lost ones: {again:?}"
    );
    let fenced: Vec<Task> = cluster
        .tasks_of("games")
        .await
        .into_iter()
        .filter(|t| t.cancel_reason() == Some(ringrift_crds::task::CancelReason::OutputsLost))
        .collect();
    assert_eq!(
        fenced.len(),
        lost.len(),
        "each unit whose games were lost: {fenced:?}"
    );
    let described = cluster.kubectl(&["describe", "sp", "games"]);
    assert!(described.contains("RegeneratingOutputs"), "{described}");
}

/// Runs `script` with `/bin/sh -c` in the mount namespace of the process `pid` (where an
/// agent's tmpfs is mounted).
fn in_mounts_of(pid: u32, script: &str) {
    let status = std::process::Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--mount", "sh", "-c", script])
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// The digests an agent lists as held (`GET /v1/artifacts`).
fn held(agent: &AgentProcess) -> String {
    let (code, body) = agent.get("/v1/artifacts");
    assert_eq!(code, 200, "{body}");
    body
}

/// An agent whose data directory is a small tmpfs that fills up for real: while it is under
/// DiskPressure, work and copies go elsewhere and retention drops only what nothing needs;
/// once it has room again, the controller brings the outputs' copies up to their count on it,
/// and retention, past its high-water mark again, keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_takes_no_work_and_retention_keeps_what_replication_counts_on() {
    use ringrift_crds::common::JobPhase;

    let cluster = Cluster::start("replication-tmpfs").await;
    let _controller = cluster.controller("c1");
    let _a1 = cluster.synced_agent("a1", CLUSTER_KEY, &[]);
    let _a2 = cluster.synced_agent("a2", CLUSTER_KEY, &[]);
    // 32 MiB; DiskPressure under 12 MiB free; retention past half full, down to 40%.
    let key_file = cluster.dir().join("cluster-key-small");
    std::fs::write(&key_file, CLUSTER_KEY).unwrap();
    let small = cluster.agent_on_tmpfs(
        "small",
        32,
        &[
            "--cluster-key-file",
            &key_file.display().to_string(),
            "--gossip-listen",
            "127.0.0.1:0",
            "--disk-pressure-mib",
            "12",
            "--disk-high-water",
            "0.5",
            "--disk-low-water",
            "0.4",
            "--retention-interval",
            "1s",
        ],
    );
    cluster.ready_and_reachable(&["a1", "a2", "small"]).await;
    let agents: Api<Agent> = Api::all(cluster.client.clone());
    let pressure = || async {
        let a = agents.get("small").await.ok()?;
        let c = a
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "DiskPressure")?;
        Some(c.status == "True")
    };

    // An output nothing needs, then a file the agent knows nothing of: the disk fills.
    let scratch = output(&make_random(&cluster, "scratch", "small", 4, json!({"replicas": 1})).await);
    assert!(held(&small).contains(&scratch.digest));
    in_mounts_of(
        small.role.pid(),
        &format!("head -c 22M /dev/zero > {}/filler", small.data_dir.display()),
    );
    until("small under DiskPressure", WAIT, || async {
        pressure().await?.then_some(())
    })
    .await;
    // Retention, past the high-water mark, drops what nothing needs (and only that).
    until("the scratch output dropped", WAIT, || async {
        (!held(&small).contains(&scratch.digest)).then_some(())
    })
    .await;
    assert!(small.metric("ringrift_agent_retention_dropped_artifacts_total") >= 1.0);

    // Needed games, three copies each: none of the work, and no copy, on the full agent.
    needed_games(&cluster, 4, "2M", 3).await;
    let outputs = until("the games", Duration::from_secs(90), || async {
        let s = cluster.jobs().get("games").await.ok()?.status?;
        (s.phase == JobPhase::Succeeded && s.outputs.len() == 4).then_some(s.outputs)
    })
    .await;
    for t in cluster.tasks_of("games").await {
        assert_ne!(
            t.spec.agent.as_deref(),
            Some("small"),
            "{}",
            t.metadata.name.unwrap()
        );
    }
    for o in &outputs {
        assert_eq!(o.holders.len(), 2, "two agents may hold a copy: {:?}", o.holders);
        assert!(!o.holders.iter().any(|h| h == "small"));
    }

    // Room again: the controller has the third copies made on it.
    in_mounts_of(
        small.role.pid(),
        &format!("rm {}/filler", small.data_dir.display()),
    );
    until("small without DiskPressure", WAIT, || async {
        (!pressure().await?).then_some(())
    })
    .await;
    let digests: Vec<String> = outputs.iter().map(|o| o.digest.clone()).collect();
    until(
        "three copies of every output",
        Duration::from_secs(60),
        || async {
            let s = cluster.jobs().get("games").await.ok()?.status?;
            let listed = held(&small);
            (s.outputs.iter().all(|o| o.holders.len() == 3)
                && digests.iter().all(|d| listed.contains(d.as_str())))
            .then_some(())
        },
    )
    .await;

    // Past the high-water mark again: retention runs and keeps every needed copy.
    in_mounts_of(
        small.role.pid(),
        &format!("head -c 12M /dev/zero > {}/filler", small.data_dir.display()),
    );
    let dropped = small.metric("ringrift_agent_retention_dropped_artifacts_total");
    let rounds = small.metric("ringrift_agent_retention_rounds_total");
    until("three more retention rounds", WAIT, || async {
        (small.metric("ringrift_agent_retention_rounds_total") >= rounds + 3.0).then_some(())
    })
    .await;
    let listed = held(&small);
    assert!(digests.iter().all(|d| listed.contains(d.as_str())), "{listed}");
    assert!(
        (small.metric("ringrift_agent_retention_dropped_artifacts_total") - dropped).abs() < f64::EPSILON,
        "nothing needed was dropped"
    );
}

/// The sum of an agent's metric samples whose text starts with `prefix` (labels included).
fn metric_sum(agent: &AgentProcess, prefix: &str) -> f64 {
    let (_, text) = agent.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A holder killed while the controller's copy is being pulled from it: the copy goes on
/// from the holder left, whole and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_in_the_middle_of_a_copy_leaves_it_whole() {
    use ringrift_crds::common::JobPhase;

    let cluster = Cluster::start("replication-midcopy").await;
    let _controller = cluster.controller("c1");
    let mut agents = three_agents(&cluster).await;
    needed_games(&cluster, 1, "32M", 3).await;
    let made = until("the games on all three", Duration::from_secs(90), || async {
        let s = cluster.jobs().get("games").await.ok()?.status?;
        let out = s.outputs.into_iter().next()?;
        (s.phase == JobPhase::Succeeded && out.holders.len() == 3).then_some(out)
    })
    .await;
    // A fourth agent, slow to receive (8 MiB/s: four seconds for the copy), then a holder dies.
    let a4 = cluster.synced_agent("a4", CLUSTER_KEY, &["--transfer-rate-mib", "8"]);
    cluster.ready_and_reachable(&["a4"]).await;
    let (first, second, left) = (
        made.holders[0].clone(),
        made.holders[1].clone(),
        made.holders[2].clone(),
    );
    let index = |name: &str| usize::from(name.as_bytes()[1] - b'1');
    agents[index(&first)].take().unwrap().role.kill();
    // Mid-copy: a4 pulls and has some bytes; a second holder dies.
    until("a4 pulling the copy", WAIT, || async {
        (metric_sum(&a4, "ringrift_agent_transfers_active") >= 1.0
            && metric_sum(&a4, "ringrift_agent_transfer_bytes_total") > 0.0)
            .then_some(())
    })
    .await;
    agents[index(&second)].take().unwrap().role.kill();
    let repaired = until(
        "the copy made from the holder left",
        Duration::from_secs(60),
        || async {
            let out = recorded(&cluster, "games").await?;
            out.holders.iter().any(|h| h == "a4").then_some(out)
        },
    )
    .await;
    assert_eq!(repaired.digest, made.digest);
    assert!(held(&a4).contains(&made.digest));
    let stored = std::fs::read(a4.stored(&made.digest)).unwrap();
    assert_eq!(stored.len(), 32 * 1024 * 1024, "whole");
    let digest = format!("sha256:{}", hex_digest(&stored));
    assert_eq!(digest, made.digest, "and the bytes it should be");
    assert!(
        metric_sum(&a4, "ringrift_agent_transfer_verification_failures") < 1.0,
        "nothing failed its check"
    );
    // Two live copies (a4 and the one left); no agent is left to take a third.
    let left_agent = agents[index(&left)].as_ref().unwrap();
    assert!(held(left_agent).contains(&made.digest));
}

/// The sha256 of `bytes`, in hex.
fn hex_digest(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
