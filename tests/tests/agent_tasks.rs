//! The node agent end to end: the real `ringrift apiserver` and `ringrift agent` processes, with
//! Tasks that run real shell processes. A task runs to success with its progress in the Task
//! status and its log over REST; cancel kills the whole process group; a task bound to the GPU
//! of a stopping task starts once that task has exited; a deadline kills; a
//! `kill -9` of the agent while tasks run, then a restart, re-adopts or collects them and never
//! runs one twice; requests without the token change nothing.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use ringrift_crds::task::{FailureClass, Task, TaskPhase};
use ringrift_e2e::agent::{AgentProcess, TOKEN};
use ringrift_e2e::cluster::{Cluster, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn task_when(cluster: &Cluster, name: &str, what: &str, check: impl Fn(&Task) -> bool) -> Task {
    until(what, WAIT, || async {
        cluster.tasks().get(name).await.ok().filter(|t| check(t))
    })
    .await
}

fn phase(t: &Task) -> TaskPhase {
    t.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

async fn log_contains(agent: &AgentProcess, task: &str, text: &str) {
    let path = format!("/v1/tasks/default/{task}/logs?tail=1000");
    until(&format!("{text:?} in the log of {task}"), WAIT, || async {
        let (code, body) = agent.get(&path);
        (code == 200 && body.contains(text)).then_some(())
    })
    .await;
}

/// Cancels a Task the controller's way: `spec.cancel`.
async fn cancel(cluster: &Cluster, name: &str) {
    cluster
        .tasks()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
}

/// Whether the process is gone (or a zombie nobody reaped yet).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_to_success_with_progress_in_its_status_and_its_log_over_rest() {
    let cluster = Cluster::start("agent-success").await;
    let agent = cluster.agent("a1", &[]);
    let go = cluster.dir().join("go");
    let script = format!(
        r#"echo starting
echo '@ringrift {{"done": 1, "total": 3, "unit": "games"}}'
while [ ! -f {go} ]; do sleep 0.05; done
echo '@ringrift {{"done": 3, "total": 3, "unit": "games", "metrics": {{"games_per_s": 2.5}}}}'
printf payload > "$RINGRIFT_OUTPUT_DIR/games.bin"
echo '{{"games": 3}}' > "$RINGRIFT_OUTPUT_DIR/result.json"
echo "role=$RINGRIFT_ROLE attempt=$RINGRIFT_ATTEMPT gpus=$CUDA_VISIBLE_DEVICES token=${{RINGRIFT_TOKEN_FILE:-none}}"
"#,
        go = go.display()
    );
    cluster.shell_task("t1", "a1", &script, json!({})).await;

    let running = task_when(&cluster, "t1", "progress 1/3 while running", |t| {
        phase(t) == TaskPhase::Running
            && t.status.as_ref().and_then(|s| s.progress_text.as_deref()) == Some("1/3 games")
    })
    .await;
    assert_eq!(running.status.unwrap().attempt, Some(0));
    log_contains(&agent, "t1", "starting").await;

    // Follow the log: the request streams until the task ends.
    let http = agent.http();
    let follow = std::thread::spawn(move || {
        let auth = format!("Bearer {TOKEN}");
        http.http(
            "GET",
            "/v1/tasks/default/t1/logs?follow=true",
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap()
    });
    // The follow has been answered (its headers counted) before the task may end.
    let logs = r#"ringrift_agent_http_requests_total{route="task_logs",code="200"}"#;
    until("the log follow to be answered", WAIT, || async {
        (agent.metric(logs) >= 1.0).then_some(())
    })
    .await;
    std::fs::write(&go, "").unwrap();

    let done = task_when(&cluster, "t1", "t1 Succeeded", |t| {
        phase(t) == TaskPhase::Succeeded
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.exit_code, Some(0));
    assert_eq!(status.progress_text.as_deref(), Some("3/3 games"));
    assert!((status.metrics["games_per_s"] - 2.5).abs() < 1e-9);
    assert_eq!(status.result, Some(json!({"games": 3})));
    assert_eq!(status.outputs.len(), 1, "{:?}", status.outputs);
    let out = &status.outputs[0];
    assert_eq!(out.name, "games.bin");
    // sha256("payload")
    assert_eq!(
        out.digest,
        "sha256:239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5"
    );
    assert_eq!((out.size_bytes, out.holders.clone()), (7, vec!["a1".to_owned()]));

    let (code, followed) = follow.join().unwrap();
    assert_eq!(code, 200);
    assert!(followed.contains("starting"), "{followed}");
    assert!(
        followed.contains("role=selfplay attempt=0 gpus=GPU-sim-a1-0 token=none"),
        "{followed}"
    );

    let (code, artifacts) = agent.get("/v1/artifacts");
    assert_eq!(code, 200);
    assert!(artifacts.contains(&out.digest), "{artifacts}");
    let (code, tasks) = agent.get("/v1/tasks/default/t1");
    assert_eq!(code, 200);
    assert!(tasks.contains(r#""phase":"Succeeded""#), "{tasks}");
    let (code, metrics) = agent.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("ringrift_agent_tasks_finished_total{phase=\"Succeeded\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("DCGM_FI_DEV_FB_FREE{"), "{metrics}");
    let logs = std::process::Command::new(ringrift_e2e::process::ringrift_bin().unwrap())
        .args(["logs", "t1", "--tail", "3", "--kubeconfig"])
        .arg(&cluster.api.kubeconfig)
        .arg("--token-file")
        .arg(cluster.dir().join("agent-token"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.status.success(), "{}", String::from_utf8_lossy(&logs.stderr));
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(printed.contains("role=selfplay"), "{printed}");
    let printed = cluster.kubectl(&["get", "rtask", "t1"]);
    assert!(
        printed.contains("Succeeded") && printed.contains("3/3 games"),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_whole_process_group_even_children_that_ignore_sigterm() {
    let cluster = Cluster::start("agent-cancel").await;
    let agent = cluster.agent("a1", &[]);
    let pids = cluster.dir().join("pids");
    let script = format!(
        "(trap '' TERM; exec sleep 1000) & echo $! > {pids}.child; echo $$ > {pids}.main; echo started; wait",
        pids = pids.display()
    );
    cluster.shell_task("t1", "a1", &script, json!({})).await;
    log_contains(&agent, "t1", "started").await;
    let child = std::fs::read_to_string(format!("{}.child", pids.display())).unwrap();
    let main = std::fs::read_to_string(format!("{}.main", pids.display())).unwrap();
    assert!(!gone(&child) && !gone(&main));

    cancel(&cluster, "t1").await;
    let t = task_when(&cluster, "t1", "t1 Cancelled", |t| {
        phase(t) == TaskPhase::Cancelled
    })
    .await;
    assert_eq!(t.status.unwrap().reason.as_deref(), Some("Cancelled"));
    until(
        "every process of the group gone",
        Duration::from_secs(5),
        || async { (gone(&child) && gone(&main)).then_some(()) },
    )
    .await;
}

/// Files in which shell tasks mark when something happened (nanoseconds since the epoch).
struct Marks {
    dir: std::path::PathBuf,
}

impl Marks {
    fn new(cluster: &Cluster) -> Self {
        let dir = cluster.dir().join("marks");
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// The shell command that marks `what` now.
    fn command(&self, what: &str) -> String {
        format!("date +%s%N > {}/{what}", self.dir.display())
    }

    /// When `what` was marked.
    fn at(&self, what: &str) -> u128 {
        std::fs::read_to_string(self.dir.join(what))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// A preemption binds the new task as its victim is cancelled; the victim may take its grace
/// period to exit. The new task starts only once the victim's process is gone (two tasks never
/// share a device's memory), while a task on another GPU starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_the_gpus_of_a_stopping_task_starts_once_that_task_has_exited() {
    let cluster = Cluster::start("agent-handover").await;
    let agent = cluster.agent("a1", &[]);
    let marks = Marks::new(&cluster);
    let mark = |what: &str| marks.command(what);
    // The victim takes half a second to exit after SIGTERM (as a selfplay process saving its
    // games; the test agent's grace period is 1 s).
    let victim = format!(
        "trap 'sleep 0.5; {}; exit 143' TERM; echo started; while true; do sleep 0.05; done",
        mark("victim-exited")
    );
    cluster.shell_task("victim", "a1", &victim, json!({})).await;
    log_contains(&agent, "victim", "started").await;
    cancel(&cluster, "victim").await;
    // Bound to the victim's GPU (GPU-sim-a1-0), and one to another GPU of the agent.
    cluster
        .shell_task("preemptor", "a1", &mark("preemptor-started"), json!({}))
        .await;
    cluster
        .shell_task(
            "neighbour",
            "a1",
            &mark("neighbour-started"),
            json!({"gpus": ["GPU-sim-a1-1"]}),
        )
        .await;
    task_when(&cluster, "preemptor", "the preemptor Succeeded", |t| {
        phase(t) == TaskPhase::Succeeded
    })
    .await;
    task_when(&cluster, "neighbour", "the neighbour Succeeded", |t| {
        phase(t) == TaskPhase::Succeeded
    })
    .await;
    task_when(&cluster, "victim", "the victim Cancelled", |t| {
        phase(t) == TaskPhase::Cancelled
    })
    .await;
    let at = |what: &str| marks.at(what);
    let (exited, preemptor, neighbour) = (
        at("victim-exited"),
        at("preemptor-started"),
        at("neighbour-started"),
    );
    assert!(
        preemptor >= exited,
        "the preemptor started {} ms before the victim exited",
        (exited - preemptor) / 1_000_000
    );
    assert!(
        neighbour < exited,
        "the task on another GPU waited for the victim too"
    );
}

/// A hand-over: the controller binds the next task to a GPU whose task is about to end
/// (`spec.startAfter`). The agent starts it once that task's process has exited, not before;
/// naming a task the agent does not run, it starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_follows_another_starts_once_that_process_has_exited() {
    let cluster = Cluster::start("agent-follow").await;
    let agent = cluster.agent("a1", &[]);
    let marks = Marks::new(&cluster);
    let mark = |what: &str| marks.command(what);
    // The running task ends on its own when told to (a file appears).
    let go = marks.dir.join("go");
    let first = format!(
        "echo started; while [ ! -e {} ]; do sleep 0.05; done; {}",
        go.display(),
        mark("first-exited")
    );
    let first = cluster.shell_task("first", "a1", &first, json!({})).await;
    log_contains(&agent, "first", "started").await;
    cluster
        .shell_task(
            "next",
            "a1",
            &mark("next-started"),
            json!({"startAfter": first.uid().unwrap()}),
        )
        .await;
    cluster
        .shell_task(
            "orphan",
            "a1",
            &mark("orphan-started"),
            json!({"startAfter": "5d0c2f1e-0000-4000-8000-000000000000", "gpus": ["GPU-sim-a1-1"]}),
        )
        .await;
    task_when(
        &cluster,
        "orphan",
        "the task following no task here Succeeded",
        |t| phase(t) == TaskPhase::Succeeded,
    )
    .await;
    // The agent has looked at `next` since (a pass after the orphan's end), and holds it.
    agent.after_passes(2.0).await;
    assert!(
        !marks.dir.join("next-started").exists(),
        "started before the task it follows exited"
    );
    let t = task_when(&cluster, "next", "next still Pending", |_| true).await;
    assert_eq!(phase(&t), TaskPhase::Pending);
    std::fs::write(&go, b"").unwrap();
    task_when(&cluster, "next", "next Succeeded", |t| {
        phase(t) == TaskPhase::Succeeded
    })
    .await;
    let at = |what: &str| marks.at(what);
    assert!(at("next-started") >= at("first-exited"));
    assert!(
        agent
            .role
            .log()
            .contains("waiting for the task it follows to exit")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_deadline_is_killed_and_failed() {
    let cluster = Cluster::start("agent-deadline").await;
    let _agent = cluster.agent("a1", &[]);
    cluster
        .shell_task(
            "t1",
            "a1",
            "echo started; sleep 1000",
            json!({"activeDeadlineSeconds": 1}),
        )
        .await;
    let t = task_when(&cluster, "t1", "t1 Failed", |t| phase(t) == TaskPhase::Failed).await;
    let status = t.status.unwrap();
    assert_eq!(
        status.failure_class,
        Some(FailureClass::DeadlineExceeded),
        "{status:?}"
    );
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_and_a_restart_tasks_are_readopted_or_collected_and_never_run_twice() {
    let cluster = Cluster::start("agent-restart").await;
    let mut agent = cluster.agent("a1", &[]);
    let dir = cluster.dir();
    let script = |name: &str| {
        format!(
            r#"echo run >> {d}/{name}.runs; echo started; while [ ! -f {d}/{name}.go ]; do sleep 0.05; done; echo '@ringrift {{"done": 1, "total": 1}}'; exit 0"#,
            d = dir.display()
        )
    };
    cluster
        .shell_task("adopt", "a1", &script("adopt"), json!({}))
        .await;
    cluster
        .shell_task("collect", "a1", &script("collect"), json!({}))
        .await;
    log_contains(&agent, "adopt", "started").await;
    log_contains(&agent, "collect", "started").await;

    agent.role.kill();
    // `collect` ends while no agent runs; its shim records how.
    std::fs::write(dir.join("collect.go"), "").unwrap();
    until("collect's exit recorded", WAIT, || async {
        exit_file_exists(&agent.data_dir, "collect").then_some(())
    })
    .await;

    let agent = cluster.agent("a1", &[]);
    let body = until("the restarted agent shows the adopted task", WAIT, || async {
        let (code, body) = agent.get("/v1/tasks/default/adopt");
        (code == 200).then_some(body)
    })
    .await;
    assert!(body.contains(r#""adopted":true"#), "{body}");
    assert!(body.contains(r#""phase":"Running""#), "{body}");
    std::fs::write(dir.join("adopt.go"), "").unwrap();
    for name in ["adopt", "collect"] {
        let t = task_when(&cluster, name, "Succeeded", |t| phase(t) == TaskPhase::Succeeded).await;
        assert_eq!(t.status.unwrap().exit_code, Some(0));
        let runs = std::fs::read_to_string(dir.join(format!("{name}.runs"))).unwrap();
        assert_eq!(
            runs.lines().count(),
            1,
            "{name} ran {} times",
            runs.lines().count()
        );
    }
    // A third life of the agent starts nothing again.
    drop(agent);
    let agent = cluster.agent("a1", &[]);
    // Passes over its Tasks go by (counted, not slept through) and start nothing.
    agent.after_passes(3.0).await;
    for name in ["adopt", "collect"] {
        let runs = std::fs::read_to_string(dir.join(format!("{name}.runs"))).unwrap();
        assert_eq!(runs.lines().count(), 1, "{name} ran again after a restart");
    }
    drop(agent);
}

fn exit_file_exists(data_dir: &Path, task: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(data_dir.join("tasks/default")) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(&format!("{task}-"))
            && e.path().join("exit.json").exists()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_change_nothing() {
    let cluster = Cluster::start("agent-auth").await;
    let agent = cluster.agent("a1", &[]);
    cluster
        .shell_task("t1", "a1", "echo started; sleep 1000", json!({}))
        .await;
    log_contains(&agent, "t1", "started").await;
    let http = agent.http();
    let cancel = "/v1/tasks/default/t1/cancel";
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong-token-0123456789")],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
    ] {
        let (code, body) = http.http("POST", cancel, &headers, b"").unwrap();
        assert_eq!(code, 401, "{body}");
        assert!(body.contains(r#""code":"Unauthorized""#), "{body}");
    }
    let (code, _) = http.http("GET", "/v1/tasks", &[], b"").unwrap();
    assert_eq!(code, 401);
    let (code, _) = http.http("GET", "/healthz", &[], b"").unwrap();
    assert_eq!(code, 200, "health needs no token");

    // Malformed requests with the token are refused too, and change nothing.
    let auth = format!("Bearer {TOKEN}");
    let (code, body) = http
        .http("POST", cancel, &[("Authorization", &auth)], b"{not json")
        .unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, body) = http
        .http("POST", cancel, &[("Authorization", &auth)], &[b'x'; 8192])
        .unwrap();
    assert_eq!(code, 413, "{body}");
    let (code, body) = http
        .http(
            "POST",
            "/v1/tasks/Bad_NS/t1/cancel",
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
    assert_eq!(code, 400, "{body}");

    agent.after_passes(2.0).await;
    let t = cluster.tasks().get("t1").await.unwrap();
    assert_eq!(phase(&t), TaskPhase::Running, "nothing changed");
    let (_, body) = agent.get("/v1/tasks/default/t1");
    assert!(body.contains(r#""phase":"Running""#), "{body}");

    let (code, body) = http
        .http(
            "POST",
            cancel,
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            br#"{"reason": "test"}"#,
        )
        .unwrap();
    assert_eq!(code, 202, "{body}");
    task_when(&cluster, "t1", "t1 Cancelled", |t| {
        phase(t) == TaskPhase::Cancelled
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_tasks_running_unless_asked_to_drain() {
    let cluster = Cluster::start("agent-sigterm").await;
    let mut agent = cluster.agent("a1", &[]);
    let go = cluster.dir().join("go");
    let script = format!(
        "echo started; while [ ! -f {go} ]; do sleep 0.05; done; echo done",
        go = go.display()
    );
    cluster.shell_task("keep", "a1", &script, json!({})).await;
    log_contains(&agent, "keep", "started").await;
    agent.role.terminate().unwrap();
    let status = agent.role.wait(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "the agent exits 0 on SIGTERM: {status}");
    let t = cluster.tasks().get("keep").await.unwrap();
    assert_eq!(phase(&t), TaskPhase::Running, "the task outlives a stopped agent");

    // The next agent adopts it; this one drains on SIGTERM.
    let mut agent = cluster.agent("a1", &["--drain-on-shutdown"]);
    until("the task adopted", WAIT, || async {
        let (code, body) = agent.get("/v1/tasks/default/keep");
        (code == 200 && body.contains(r#""adopted":true"#)).then_some(())
    })
    .await;
    agent.role.terminate().unwrap();
    let status = agent.role.wait(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{status}");
    let t = cluster.tasks().get("keep").await.unwrap();
    assert_eq!(phase(&t), TaskPhase::Cancelled, "drained: {:?}", t.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_registers_again_when_the_api_comes_back_empty() {
    let mut cluster = Cluster::start("agent-api-outage").await;
    let agent = cluster.agent("a1", &[]);
    let agents: kube::Api<ringrift_crds::agent::Agent> = kube::Api::all(cluster.client.clone());
    until("a1 registered", WAIT, || async {
        agents.get_opt("a1").await.ok().flatten()
    })
    .await;

    cluster.api.restart_empty_on_same_address().unwrap();
    // The empty API has no CRDs yet: registering fails, and is retried.
    until("a failed registration against the empty API", WAIT, || async {
        let (_, metrics) = agent.get("/metrics");
        metrics
            .contains(r#"ringrift_agent_registrations_total{result="error"}"#)
            .then_some(())
    })
    .await;
    ringrift_e2e::cluster::install_crds(&cluster.client).await;

    let registered = until("a1 registered again with its GPUs", WAIT, || async {
        agents
            .get_opt("a1")
            .await
            .ok()
            .flatten()
            .filter(|a| a.status.as_ref().is_some_and(|s| s.capacity.gpu_count == 2))
    })
    .await;
    assert!(
        registered
            .status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(cluster.client.clone(), "default");
    until("the heartbeat Lease back", WAIT, || async {
        leases.get_opt("agent-a1").await.ok().flatten()
    })
    .await;
    // And it runs new work.
    cluster.shell_task("after", "a1", "echo back", json!({})).await;
    task_when(&cluster, "after", "a task after the outage Succeeded", |t| {
        phase(t) == TaskPhase::Succeeded
    })
    .await;
}
