//! The main job, end to end: `ringrift up` (the embedded API server in its process, two
//! controller replicas and two real agents as child processes, the demo workload) runs a short
//! loop of two generations; the history, the models, the promotion and the artifacts moved
//! between agents are checked through the API and kubectl; Ctrl-C (SIGTERM) stops everything
//! cleanly, and running `up` again resumes from the persisted state.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use ringrift_crds::gauntlet::Decision;
use ringrift_crds::model::Model;
use ringrift_crds::training_loop::{LoopPhase, Stage, TrainingLoop, TrainingLoopStatus};
use ringrift_e2e::cluster::until;
use ringrift_e2e::process::{Scratch, ringrift_bin};

const LOOP: &str = r"
apiVersion: ringrift.ai/v1alpha1
kind: TrainingLoop
metadata:
  name: short
  namespace: default
spec:
  game: {board: connect4, players: 2}
  maxGenerations: 2
  selfplay: {games: 80, gamesPerTask: 20, simulations: 16, resources: {cpuMillis: 100, memoryMiB: 64}}
  training:
    window: {games: 160}
    hyperparameters: {steps: 200, batchSize: 32}
    resources: {cpuMillis: 100, memoryMiB: 64}
  gauntlet:
    opponents: [{name: random, baseline: random}, {name: heuristic, baseline: heuristic}]
    gamesPerOpponent: 10
    gamesPerTask: 5
    simulations: 16
    promotion: {winRate: {minWinRate: 0.5, minGames: 10}}
    resources: {cpuMillis: 100, memoryMiB: 64}
";

/// A running `ringrift up`; dropped (a failed assertion), it gets SIGTERM so it stops its
/// controllers and agents too, and SIGKILL if it has not exited within 30 s.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            terminate(&self.0);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn up(dir: &Path, manifest: &Path, log: &Path) -> Up {
    let out = std::fs::File::create(log).unwrap();
    Up(Command::new(ringrift_bin().unwrap())
        .args(["up", "--keep-running", "--plain", "--dir"])
        .arg(dir.join("up"))
        .arg("--loop")
        .arg(manifest)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap())
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringrift up did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn client(kubeconfig: &Path) -> Client {
    let config = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Processes still running whose command line mentions `needle`.
fn running_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

/// The registry: one Model per generation with its lineage and rating; exactly one promoted,
/// the loop's best.
async fn check_registry(client: &Client, status: &TrainingLoopStatus) {
    // The registry: one Model per generation with its lineage and rating; exactly one promoted.
    let models = until(
        "the models' ratings and promotion",
        Duration::from_secs(30),
        || async {
            let models = Api::<Model>::namespaced(client.clone(), "default")
                .list(&ListParams::default())
                .await
                .ok()?
                .items;
            let rated = models.iter().all(|m| {
                m.status
                    .as_ref()
                    .is_some_and(|s| s.elo.is_some() && s.games_rated > 0)
            });
            // Promotion follows the loop's bestModel in the next pass.
            let best_promoted = models.iter().any(|m| {
                m.metadata.name == status.best_model && m.status.as_ref().is_some_and(|s| s.promoted)
            });
            (rated && best_promoted).then_some(models)
        },
    )
    .await;
    assert_eq!(models.len(), 2);
    let g2 = models
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some("short-g002"))
        .unwrap();
    assert_eq!(g2.spec.generation, 2);
    assert_eq!(g2.spec.parent.as_deref(), Some("short-g001"));
    assert_eq!(g2.spec.training_loop.as_deref(), Some("short"));
    let promoted: Vec<&str> = models
        .iter()
        .filter(|m| m.status.as_ref().is_some_and(|s| s.promoted))
        .filter_map(|m| m.metadata.name.as_deref())
        .collect();
    assert_eq!(promoted, [status.best_model.as_deref().unwrap()]);
    let s = g2.status.clone().unwrap();
    assert!(s.elo_low.unwrap() < s.elo.unwrap() && s.elo.unwrap() < s.elo_high.unwrap());
    assert!(!s.holders.is_empty(), "{s:?}");
}

/// What a user sees: kubectl's model table, a second `up` refused, `ringrift status`, and the
/// artifacts the agents pulled from each other.
fn check_what_users_see(dir: &Path, kubeconfig: &Path) {
    // kubectl sees the models in generation order with their Elo.
    let kubectl = ringrift_e2e::tool("kubectl").unwrap();
    let out = ringrift_e2e::run(
        Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["get", "mdl"]),
    )
    .unwrap();
    assert!(out.success, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].contains("GENERATION") && lines[0].contains("ELO"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("short-g001") && lines[2].starts_with("short-g002"),
        "{}",
        out.stdout
    );

    // A second `up` on the same directory is refused while this one runs.
    let out = ringrift_e2e::run(
        Command::new(ringrift_bin().unwrap())
            .args(["up", "--dir"])
            .arg(dir.join("up")),
    )
    .unwrap();
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("another `ringrift up` or `ringrift server` (pid"),
        "{}",
        out.stderr
    );

    // `ringrift status` shows the same.
    let out = ringrift_e2e::run(
        Command::new(ringrift_bin().unwrap())
            .args(["status", "--kubeconfig"])
            .arg(kubeconfig),
    )
    .unwrap();
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("TrainingLoop short: Succeeded, generation 2/2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("agents: 2 ready of 2"), "{}", out.stdout);

    // Games and models moved between the two agents.
    let logs = dir.join("up").join("logs");
    let pulled: usize = ["agent-1.log", "agent-2.log"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(logs.join(f))
                .unwrap_or_default()
                .matches("artifact pulled")
                .count()
        })
        .sum();
    assert!(pulled >= 1, "no artifact was pulled from another agent");
}

/// `spec.rollbackTo` on the finished loop: the other model becomes the best (the loop's status
/// and the Models' `promoted` follow), recorded once.
async fn roll_back(client: &Client, status: &TrainingLoopStatus) {
    use kube::api::{Patch, PatchParams};
    let loops: Api<TrainingLoop> = Api::namespaced(client.clone(), "default");
    let models: Api<Model> = Api::namespaced(client.clone(), "default");
    let best = status.best_model.clone().unwrap();
    let target = if best == "short-g001" {
        "short-g002"
    } else {
        "short-g001"
    };
    loops
        .patch(
            "short",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"rollbackTo": target}})),
        )
        .await
        .unwrap();
    let rolled = until("the rollback", Duration::from_secs(60), || async {
        let s = loops.get_opt("short").await.ok()??.status?;
        (s.best_model.as_deref() == Some(target)).then_some(s)
    })
    .await;
    assert_eq!(rolled.rollback_applied.as_deref(), Some(target));
    assert_eq!(rolled.rollbacks.len(), 1, "{:?}", rolled.rollbacks);
    assert_eq!(rolled.rollbacks[0].from.as_deref(), Some(best.as_str()));
    assert_eq!(
        rolled.rollbacks[0].trigger,
        ringrift_crds::training_loop::RollbackTrigger::Manual
    );
    until("the Models to follow", Duration::from_secs(60), || async {
        let promoted = |m: Option<Model>| m?.status.map(|s| s.promoted);
        let now_best = promoted(models.get_opt(target).await.ok()?)?;
        let old_best = promoted(models.get_opt(&best).await.ok()?)?;
        (now_best && !old_best).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringrift_up_runs_a_short_loop_and_resumes() {
    let scratch = Scratch::new("training-loop").unwrap();
    let dir = scratch.0.clone();
    let manifest = dir.join("loop.yaml");
    std::fs::write(&manifest, LOOP).unwrap();
    let log = dir.join("up.log");
    let mut first = up(&dir, &manifest, &log);
    let kubeconfig = dir.join("up").join("kubeconfig");
    until("the kubeconfig", Duration::from_secs(60), || async {
        kubeconfig.exists().then_some(())
    })
    .await;
    let client = client(&kubeconfig).await;
    let loops: Api<TrainingLoop> = Api::namespaced(client.clone(), "default");

    let status = until("the loop to succeed", Duration::from_secs(240), || async {
        let s = loops.get_opt("short").await.ok()??.status?;
        (s.phase == LoopPhase::Succeeded).then_some(s)
    })
    .await;
    assert_eq!(status.stage, Stage::Done);
    assert_eq!(status.history.len(), 2, "{status:?}");
    for (i, h) in status.history.iter().enumerate() {
        let g = u32::try_from(i + 1).unwrap();
        assert_eq!(h.generation, g);
        assert_eq!(h.candidate.as_deref(), Some(format!("short-g00{g}").as_str()));
        assert_ne!(h.decision, Decision::Pending);
        assert_eq!(h.games, 80, "each generation recorded its games");
        assert!(h.win_rate.is_some() && h.elo.is_some(), "{h:?}");
        assert_eq!(
            h.jobs.training.as_deref(),
            Some(format!("short-g00{g}-train").as_str())
        );
    }
    // Generation 1 has no best model: the first opponent (random) decides, and a trained
    // search beats random.
    assert_eq!(status.history[0].decision, Decision::Promote, "{status:?}");
    let last_promoted = status
        .history
        .iter()
        .rev()
        .find(|h| h.decision == Decision::Promote)
        .and_then(|h| h.candidate.clone());
    assert_eq!(status.best_model, last_promoted);

    check_registry(&client, &status).await;
    check_what_users_see(&dir, &kubeconfig);
    roll_back(&client, &status).await;

    // Ctrl-C (SIGTERM) stops everything cleanly.
    terminate(&first.0);
    let exit = wait_exit(&mut first.0, Duration::from_secs(60));
    assert!(
        exit.success(),
        "{exit:?}: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let leftovers = running_with(&dir.join("up").display().to_string());
    assert!(leftovers.is_empty(), "still running: {leftovers:?}");

    // Up again: the state is still there and the loop is not re-applied.
    let second_log = dir.join("up2.log");
    let mut second = up(&dir, &manifest, &second_log);
    until(
        "the second run to find the loop",
        Duration::from_secs(60),
        || async {
            let text = std::fs::read_to_string(&second_log).unwrap_or_default();
            text.contains("finished in").then_some(())
        },
    )
    .await;
    let text = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        text.contains("TrainingLoop default/short exists: resuming it"),
        "{text}"
    );
    terminate(&second.0);
    assert!(wait_exit(&mut second.0, Duration::from_secs(60)).success());
    drop(scratch);
}

/// `ringrift up` running `manifest_text` in `dir` (log `up.log`), and a client of its API
/// server once its kubeconfig is written.
async fn up_with(dir: &Path, manifest_text: &str) -> (Up, Client, std::path::PathBuf) {
    let manifest = dir.join("loop.yaml");
    std::fs::write(&manifest, manifest_text).unwrap();
    let running = up(dir, &manifest, &dir.join("up.log"));
    let kubeconfig = dir.join("up").join("kubeconfig");
    until("the kubeconfig", Duration::from_secs(60), || async {
        kubeconfig.exists().then_some(())
    })
    .await;
    let client = client(&kubeconfig).await;
    (running, client, kubeconfig)
}

/// Quality gates end to end, with the demo's real figures: a loop whose training gate its games
/// always fail (no game lasts one move) is rejected untrained in each generation; a loop whose
/// candidate's held-out loss fails a promotion gate is rejected before its gauntlet plays a
/// game, the gate named in the gauntlet's status and the loop's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_gates_reject_on_the_workloads_own_figures() {
    let scratch = Scratch::new("quality-gates").unwrap();
    let dir = scratch.0.clone();
    let untrained = LOOP.replace("name: short", "name: untrained").replace(
        "    resources: {cpuMillis: 100, memoryMiB: 64}\n  gauntlet:",
        "    resources: {cpuMillis: 100, memoryMiB: 64}\n    gates: [{name: long-games, metric: {name: mean_moves, min: 1000}}]\n  gauntlet:",
    );
    assert!(untrained.contains("long-games"), "{untrained}");
    let (_up, client, _) = up_with(&dir, &untrained).await;
    let loops: Api<TrainingLoop> = Api::namespaced(client.clone(), "default");
    // The second loop: its candidates' held-out loss is never that small.
    let overfit = LOOP.replace("name: short", "name: overfit").replace(
        "    promotion: {winRate: {minWinRate: 0.5, minGames: 10}}",
        "    promotion:\n      gates: [{name: generalizes, metric: {name: holdout_loss, max: 0.001}}, {opponent: random, winRate: {minWinRate: 0.5, minGames: 10}}]",
    );
    assert!(overfit.contains("generalizes"), "{overfit}");
    let overfit: TrainingLoop = serde_saphyr::from_str(&overfit).unwrap();
    until(
        "the second loop to be created",
        Duration::from_secs(60),
        || async {
            loops
                .create(&kube::api::PostParams::default(), &overfit)
                .await
                .ok()
        },
    )
    .await;

    let done = |name: &'static str| {
        let loops = loops.clone();
        async move {
            until(
                &format!("loop {name} to succeed"),
                Duration::from_secs(240),
                || async {
                    let s = loops.get_opt(name).await.ok()??.status?;
                    (s.phase == LoopPhase::Succeeded).then_some(s)
                },
            )
            .await
        }
    };
    let status = done("untrained").await;
    assert_eq!(status.history.len(), 2, "{status:?}");
    for h in &status.history {
        assert_eq!(
            (h.decision, h.candidate.as_deref()),
            (Decision::Reject, None),
            "{h:?}"
        );
        let reason = h.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("training gate long-games failed: mean_moves "),
            "{reason}"
        );
        assert_eq!(h.jobs.training, None);
    }
    let trainings: Api<ringrift_crds::training::TrainingJob> = Api::namespaced(client.clone(), "default");
    let names: Vec<String> = trainings
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("untrained-")), "{names:?}");

    let status = done("overfit").await;
    for h in &status.history {
        assert_eq!(h.decision, Decision::Reject, "{h:?}");
        let reason = h.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("gate generalizes failed: holdout_loss "),
            "{reason}"
        );
    }
    let gauntlets: Api<ringrift_crds::gauntlet::GauntletJob> = Api::namespaced(client.clone(), "default");
    let g = gauntlets
        .get("overfit-g001-gauntlet")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(g.games_done, 0, "decided before any game: {g:?}");
    let gate = &g.gates[0];
    assert_eq!(
        (gate.name.as_str(), gate.verdict),
        ("generalizes", ringrift_crds::gauntlet::GateVerdict::Failed)
    );
    let models: Api<Model> = Api::namespaced(client, "default");
    let m = models.get("overfit-g001").await.unwrap();
    assert!(
        m.spec.metrics.get("holdout_loss").is_some_and(|l| *l > 0.001),
        "{:?}",
        m.spec.metrics
    );
}

/// The pid of the workload process of `task` run by an agent under `dir` (the child of its shim,
/// whose `--exit-file` path is the task's directory there, `<task>-<uid>`), if it runs. Only
/// under `dir`: an agent stopped by another test leaves its tasks running for the next agent to
/// adopt, and one may have the same name.
fn workload_pid(dir: &Path, task: &str) -> Option<String> {
    let shim = Command::new("pgrep")
        .args(["-f", &format!("{}/.*/{task}-[0-9a-f-]+/exit.json", dir.display())])
        .output()
        .ok()?;
    let shim = String::from_utf8_lossy(&shim.stdout)
        .lines()
        .next()?
        .trim()
        .to_owned();
    let child = Command::new("pgrep").args(["-P", &shim]).output().ok()?;
    let pid = String::from_utf8_lossy(&child.stdout)
        .lines()
        .next()?
        .trim()
        .to_owned();
    (!pid.is_empty()).then_some(pid)
}

/// Resumable training end to end: the training process is SIGKILLed after it announced a
/// checkpoint; the agent kept it, the controller hands it to the next attempt
/// (`resumeFrom`, one more input), and the demo goes on from that step instead of from zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_training_resumes_from_its_checkpoint() {
    use ringrift_crds::task::Task;
    let scratch = Scratch::new("resume").unwrap();
    let dir = scratch.0.clone();
    let manifest_text = LOOP
        .replace("name: short", "name: resumed")
        .replace("maxGenerations: 2", "maxGenerations: 1")
        .replace(
            "hyperparameters: {steps: 200, batchSize: 32}",
            "hyperparameters: {steps: 200000, batchSize: 16, extra: {checkpointEvery: \"10000\"}}",
        );
    assert!(manifest_text.contains("checkpointEvery"), "{manifest_text}");
    let (_up, client, kubeconfig) = up_with(&dir, &manifest_text).await;
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    let first = "resumed-g001-train-train-0";
    // Its first checkpoint is kept and recorded: then its process is killed.
    let checkpoint = until("the first checkpoint", Duration::from_secs(180), || async {
        tasks.get_opt(first).await.ok()??.status?.checkpoint
    })
    .await;
    assert_eq!(checkpoint.kind, ringrift_crds::common::ArtifactKind::Checkpoint);
    assert!(!checkpoint.holders.is_empty(), "{checkpoint:?}");
    let pid = until("the training process", Duration::from_secs(30), || async {
        workload_pid(&dir, first)
    })
    .await;
    let what = Command::new("ps")
        .args(["-o", "pid,ppid,args", "-p", &pid])
        .output()
        .unwrap();
    eprintln!("killing {pid}: {}", String::from_utf8_lossy(&what.stdout));
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let failed = until("the attempt to fail", Duration::from_secs(60), || async {
        let s = tasks.get_opt(first).await.ok()??.status?;
        (s.phase == ringrift_crds::task::TaskPhase::Failed).then_some(s)
    })
    .await;
    let kept = failed.checkpoint.clone().unwrap();

    // The next attempt resumes from the newest checkpoint the failed one kept.
    let second = "resumed-g001-train-train-1";
    let next = until("the next attempt", Duration::from_secs(60), || async {
        tasks.get_opt(second).await.ok()?
    })
    .await;
    assert_eq!(next.spec.resume_from.as_deref(), Some(kept.name.as_str()));
    assert!(
        next.spec.inputs.iter().any(|a| a.digest == kept.digest),
        "{:?}",
        next.spec.inputs
    );
    let loops: Api<TrainingLoop> = Api::namespaced(client.clone(), "default");
    until("the loop to finish", Duration::from_secs(300), || async {
        let s = loops.get_opt("resumed").await.ok()??.status?;
        (s.phase == LoopPhase::Succeeded).then_some(())
    })
    .await;
    // Its log says where it went on from.
    let out = ringrift_e2e::run(
        Command::new(ringrift_bin().unwrap())
            .args(["logs", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--tail", "1000", second]),
    )
    .unwrap();
    assert!(out.success, "{}", out.stderr);
    let step = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("resuming from step "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no resume line in:\n{}", out.stdout));
    assert!(step >= 10_000 && step % 10_000 == 0, "{step}");
}
