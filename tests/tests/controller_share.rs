//! The fleet's fair share end to end: the real controller with simulated agents (2 × 4 GPUs).
//! Two standalone selfplay jobs weighted 1 and 3 run 2 and 6 tasks; with the heavy one gone
//! the light one takes every GPU (idle capacity is lent); when the heavy one comes back, the
//! lent tasks are preempted and the split is 2 and 6 again. A loop shows its share in its
//! status, in `ringrift status` and in the controller's metrics. `ringrift bench fleet`, which
//! measures the share, reports its figures, and stopped by SIGTERM leaves nothing running.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use ringrift_crds::common::ShareSpec;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_crds::training_loop::TrainingLoop;
use ringrift_e2e::cluster::{Cluster, apply_json, selfplay, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A selfplay job of 16 one-GPU units that run for ten minutes, with `weight`.
async fn hungry(cluster: &Cluster, name: &str, weight: u32) {
    let mut job = selfplay(name, 16, 1, &[("SIM_DURATION_MS", "600000")]);
    job.spec.share = Some(ShareSpec { weight, min_gpus: 0 });
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
}

/// Running (or bound) tasks of each job, in the order asked.
async fn running(cluster: &Cluster, jobs: &[&str]) -> Vec<usize> {
    let tasks = cluster
        .tasks()
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items;
    let live = |t: &Task| {
        !t.spec.cancel
            && t.spec.agent.is_some()
            && t.status
                .as_ref()
                .is_none_or(|s| matches!(s.phase, TaskPhase::Pending | TaskPhase::Running))
    };
    jobs.iter()
        .map(|j| tasks.iter().filter(|t| t.spec.job.name == *j && live(t)).count())
        .collect()
}

async fn preempted_tasks(cluster: &Cluster, job: &str) -> usize {
    cluster
        .tasks_of(job)
        .await
        .iter()
        .filter(|t| t.cancel_reason() == Some(ringrift_crds::task::CancelReason::Preempted))
        .count()
}

async fn split_is(cluster: &Cluster, jobs: &[&str], want: &[usize]) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = running(cluster, jobs).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{jobs:?} running {got:?} after {WAIT:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_is_shared_by_weight_lent_when_idle_and_taken_back() {
    let cluster = Cluster::start("share").await;
    let controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 4);

    hungry(&cluster, "light", 1).await;
    hungry(&cluster, "heavy", 3).await;
    split_is(&cluster, &["light", "heavy"], &[2, 6]).await;
    // It stays so: a few more passes change nothing.
    Cluster::after_passes(&controller, 5.0).await;
    assert_eq!(running(&cluster, &["light", "heavy"]).await, [2, 6]);
    let entitled = |job: &str| {
        Cluster::metric(
            &controller,
            &format!("ringrift_controller_share_entitled_gpus{{claimant=\"SelfplayJob/default/{job}\"}}"),
        )
    };
    assert!((entitled("light") - 2.0).abs() < 1e-6, "{}", entitled("light"));
    assert!((entitled("heavy") - 6.0).abs() < 1e-6, "{}", entitled("heavy"));

    // Light may have been preempted already, when a pass ran between the two jobs' creation
    // and lent it the whole fleet: only what follows is counted.
    let preempted_before = preempted_tasks(&cluster, "light").await;
    // Heavy gone: light takes the whole fleet.
    cluster
        .jobs()
        .delete("heavy", &DeleteParams::background())
        .await
        .unwrap();
    split_is(&cluster, &["light"], &[8]).await;
    // Heavy back: what was lent is taken back.
    until("the old heavy's tasks gone", WAIT, || async {
        (running(&cluster, &["heavy"]).await == [0]).then_some(())
    })
    .await;
    hungry(&cluster, "heavy", 3).await;
    split_is(&cluster, &["light", "heavy"], &[2, 6]).await;
    let preempted = preempted_tasks(&cluster, "light").await - preempted_before;
    assert_eq!(preempted, 6, "light's six lent tasks were preempted");
    // Each was followed by the heavy task given its GPUs, cancelled once that task existed
    // (the two passing the GPUs straight from one to the other, as in a hand-over).
    let mut heavy = cluster.tasks_of("heavy").await;
    heavy.retain(|h| !h.spec.cancel);
    let light = cluster.tasks_of("light").await;
    let followed: Vec<&Task> = light
        .iter()
        .filter(|t| heavy.iter().any(|h| h.spec.start_after == t.metadata.uid))
        .collect();
    assert_eq!(followed.len(), 6, "every victim is followed by its successor");
    for victim in followed {
        let next = heavy
            .iter()
            .find(|h| h.spec.start_after == victim.metadata.uid)
            .unwrap();
        assert_eq!(next.spec.agent, victim.spec.agent);
        assert_eq!(next.spec.gpus, victim.spec.gpus);
        assert_eq!(
            victim.cancel_reason(),
            Some(ringrift_crds::task::CancelReason::Preempted)
        );
    }

    // A loop's share is in its status and in `ringrift status`.
    let _: TrainingLoop = apply_json(
        &cluster,
        json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
            "metadata": {"name": "looped", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "share": {"weight": 4},
                     "selfplay": {"games": 16, "gamesPerTask": 1, "resources": {"gpus": 1},
                                  "template": {"env": {"SIM_DURATION_MS": "600000"}}},
                     "training": {"window": {"games": 16}},
                     "gauntlet": {"opponents": [{"name": "random", "baseline": "random"}],
                                  "gamesPerOpponent": 2,
                                  "promotion": {"winRate": {"minWinRate": 0.5, "minGames": 2}}}}
        }),
    )
    .await;
    let loops: Api<TrainingLoop> = Api::namespaced(cluster.client.clone(), "default");
    // Weights 1, 3 and 4 on 8 GPUs: 1, 3 and 4.
    let share = until("the loop's share", WAIT, || async {
        let s = loops.get("looped").await.ok()?.status?.share?;
        ((s.used_gpus - 4.0).abs() < 1e-9).then_some(s)
    })
    .await;
    assert!((share.entitled_gpus - 4.0).abs() < 1e-6, "{share:?}");
    assert_eq!(share.waiting, 12, "{share:?}");
    split_is(&cluster, &["light", "heavy"], &[1, 3]).await;
    let status = std::process::Command::new(ringrift_e2e::process::ringrift_bin().unwrap())
        .args(["status", "--kubeconfig"])
        .arg(&cluster.api.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("fleet share 4 of 4.00 GPUs (12 units waiting)"),
        "{text}"
    );
    let columns = cluster.kubectl(&["get", "trainingloops"]);
    assert!(columns.contains("ENTITLED"), "{columns}");
    // The gauges the chart's dashboard and alerts read: the loop's generation and health, each
    // agent's readiness and disk.
    let gauge = |sample: &str| Cluster::metric(&controller, sample);
    let looped = "namespace=\"default\",training_loop=\"looped\"";
    assert!((gauge(&format!("ringrift_controller_loop_generation{{{looped}}}")) - 1.0).abs() < 1e-9);
    assert!(gauge(&format!("ringrift_controller_loop_degraded{{{looped}}}")).abs() < 1e-9);
    for agent in ["sim-0", "sim-1"] {
        let ready = gauge(&format!("ringrift_controller_agent_ready{{agent=\"{agent}\"}}"));
        assert!((ready - 1.0).abs() < 1e-9, "{agent}: {ready}");
        let pressure = gauge(&format!(
            "ringrift_controller_agent_disk_pressure{{agent=\"{agent}\"}}"
        ));
        assert!(pressure.abs() < 1e-9, "{agent}: {pressure}");
    }
}

/// Selfplay asking a quarter of a GPU each: eight tasks run at once on one agent's two GPUs,
/// four to a device, each given that device's UUID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarter_gpu_selfplay_is_packed_four_to_a_device() {
    let cluster = Cluster::start("share-fractions").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let job: ringrift_crds::selfplay::SelfplayJob = apply_json(
        &cluster,
        json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
            "metadata": {"name": "quarters", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "games": 8, "gamesPerTask": 1,
                     "resources": {"gpuFraction": 0.25},
                     "template": {"env": {"SIM_DURATION_MS": "600000"}},
                     "output": {"dataset": "quarters"}}
        }),
    )
    .await;
    assert_eq!(
        job.spec
            .settings
            .resources
            .gpu_fraction
            .map(ringrift_crds::common::GpuFraction::thousandths),
        Some(250),
        "stored as written"
    );
    split_is(&cluster, &["quarters"], &[8]).await;
    let mut per_device: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for t in cluster.tasks_of("quarters").await {
        assert_eq!(t.spec.gpus.len(), 1, "{:?}", t.spec.gpus);
        *per_device.entry(t.spec.gpus[0].clone()).or_default() += 1;
    }
    assert_eq!(
        per_device.values().copied().collect::<Vec<_>>(),
        [4, 4],
        "{per_device:?}"
    );
    // A fraction beside whole GPUs is refused, naming both fields.
    let mut both = selfplay("both", 1, 1, &[]);
    both.spec.settings.resources.gpu_fraction = ringrift_crds::common::GpuFraction::from_thousandths(500);
    cluster
        .jobs()
        .create(&PostParams::default(), &both)
        .await
        .unwrap();
    let message = until("the job refused", WAIT, || async {
        let s = cluster.job("both").await.status?;
        let c = s.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (c.reason == "InvalidSpec").then_some(c.message)
    })
    .await;
    assert!(
        message.contains("resources.gpuFraction and resources.gpus"),
        "{message}"
    );
}

#[test]
fn bench_fleet_reports_its_figures_and_the_share_beats_plain_priority() {
    // Tiny sizes (3 loops on 4 × 4 GPUs, tasks of a second): the figures' names and sense.
    let out = std::process::Command::new(ringrift_e2e::process::ringrift_bin().unwrap())
        .args([
            "bench",
            "fleet",
            "--agents",
            "4",
            "--gpus",
            "4",
            "--loops",
            "3",
            "--task-seconds",
            "1",
            "--warmup",
            "6s",
            "--duration",
            "8s",
            // Generations: each loop's demand comes and goes, which plain priority serves
            // first come first served.
            "--pipeline",
            "generational",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    for figures in [&report, &report["baseline"]] {
        let busy = figures["gpu_busy_fraction"].as_f64().unwrap();
        assert!(busy > 0.0 && busy <= 1.0, "{report}");
        assert!(figures["share_error_max"].as_f64().is_some(), "{report}");
        assert!(figures["starved_loops"].as_u64().is_some(), "{report}");
    }
    assert_eq!(report["baseline"]["placement"], "priority");
    assert_eq!(report["per_loop"].as_array().unwrap().len(), 3, "{report}");
    // First come first served gives the oldest loop the whole fleet; the share gives each its
    // part.
    let (share, priority) = (
        report["share_error_max"].as_f64().unwrap(),
        report["baseline"]["share_error_max"].as_f64().unwrap(),
    );
    assert!(
        share < 0.5 && priority > 0.5,
        "share {share}, priority {priority}: {report}"
    );
}

/// The processes whose parent is `pid` (from `/proc/<pid>/stat`: the parent is the field after
/// the state, which follows the command's closing parenthesis).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether process `pid` still exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// A process and its children, killed when the test ends so that a failure leaves none behind:
/// `0` the parent, `1` the children seen (they may have been orphaned by the time it drops).
struct Reap(u32, Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        let mut all = vec![self.0];
        all.extend(children(self.0));
        all.extend(&self.1);
        for pid in all.iter().filter(|p| alive(**p)) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

#[test]
fn bench_fleet_stopped_by_sigterm_stops_its_processes_and_removes_its_files() {
    use std::io::BufRead as _;
    let mut bench = std::process::Command::new(ringrift_e2e::process::ringrift_bin().unwrap())
        .args([
            "bench", "fleet", "--agents", "2", "--gpus", "2", "--loops", "2", "--warmup", "10m",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = bench.id();
    let mut reap = Reap(pid, Vec::new());
    // The bench says when its API server, controller and agents are up and the loops made.
    let (said, lines) = std::sync::mpsc::channel();
    let stderr = bench.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if said.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|e| panic!("the bench never warmed up ({e}): {seen:#?}"));
        let up = line.contains("warming up");
        seen.push(line);
        if up {
            break;
        }
    }
    reap.1 = children(pid);
    assert!(
        reap.1.len() >= 3,
        "an API server, a controller and the agents: {:?}",
        reap.1
    );
    let dir = std::env::temp_dir().join(format!("ringrift-bench-fleet-share-{pid}"));
    assert!(dir.exists(), "{}", dir.display());

    ringrift::harness::terminate(pid).unwrap();
    let status = ringrift::harness::wait_exit(&mut bench, Duration::from_secs(30))
        .unwrap()
        .unwrap_or_else(|| panic!("the bench still runs 30 s after SIGTERM"));
    assert!(!status.success(), "stopped before its figures: {status}");
    // Its stderr ends once every process that shares it (its children too) has exited.
    let mut told = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        told.push(line);
    }
    assert!(
        told.iter()
            .any(|l| l.contains("SIGTERM") && l.contains("stopped the benchmark")),
        "{told:#?}"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut bench.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.is_empty(), "no figures: {out}");
    let left: Vec<u32> = reap.1.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running after the bench exited: {left:?}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}
