//! The controller end to end: the real `ringrift apiserver`, `ringrift controller` and
//! `ringrift sim-agents` processes, driven through the API and kubectl. Jobs run to the right
//! counts; failures are retried then given up; a killed agent's work is rescheduled and counted
//! once; suspend and resume; deletion cleans up; a second controller takes over.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use ringrift_crds::agent::Agent;
use ringrift_crds::common::{GameSpec, JobPhase, RunPolicy, TaskResources, WorkloadTemplate};
use ringrift_crds::selfplay::{DatasetOutput, SelfplayJob, SelfplayJobSpec, SelfplaySettings};
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use ringrift_e2e::role::RoleProcess;

struct Cluster {
    client: Client,
    api: ApiServerProcess,
    scratch: Scratch,
}

impl Cluster {
    async fn start(test: &str) -> Self {
        let scratch = Scratch::new(test).unwrap();
        let api = ApiServerProcess::start(&scratch.0, &[]).unwrap();
        let kubeconfig = Kubeconfig::read_from(&api.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in ringrift_crds::all() {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        Self { client, api, scratch }
    }

    fn dir(&self) -> PathBuf {
        self.scratch.0.clone()
    }

    /// A controller with short leader-election and retry timings.
    fn controller(&self, identity: &str) -> RoleProcess {
        let args: Vec<String> = [
            "controller",
            "--kubeconfig",
            &self.api.kubeconfig.display().to_string(),
            "--admin-listen",
            "127.0.0.1:0",
            "--identity",
            identity,
            "--lease-duration",
            "3s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "250ms",
            "--retry-backoff",
            "200ms",
            "--retry-backoff-max",
            "1s",
        ]
        .map(String::from)
        .to_vec();
        RoleProcess::start(&self.dir(), identity, &args, "ringrift controller").unwrap()
    }

    /// `count` simulated agents named `<prefix>-<i>` with `gpus` GPUs each.
    fn agents(&self, prefix: &str, count: usize, gpus: u32) -> RoleProcess {
        let args: Vec<String> = [
            "sim-agents",
            "--kubeconfig",
            &self.api.kubeconfig.display().to_string(),
            "--prefix",
            prefix,
            "--count",
            &count.to_string(),
            "--gpus",
            &gpus.to_string(),
            "--heartbeat",
            "500ms",
            "--heartbeat-lease",
            "3s",
            "--task-duration",
            "400ms",
        ]
        .map(String::from)
        .to_vec();
        RoleProcess::start(&self.dir(), prefix, &args, "ringrift sim-agents").unwrap()
    }

    fn jobs(&self) -> Api<SelfplayJob> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn tasks(&self) -> Api<Task> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn job(&self, name: &str) -> SelfplayJob {
        self.jobs().get(name).await.unwrap()
    }

    async fn tasks_of(&self, job: &str) -> Vec<Task> {
        let params = ListParams::default().labels(&format!("ringrift.ai/job={job}"));
        self.tasks().list(&params).await.unwrap().items
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = ringrift_e2e::run(
            std::process::Command::new(ringrift_e2e::tool("kubectl").unwrap())
                .env("KUBECACHEDIR", self.dir().join("kubecache"))
                .arg("--kubeconfig")
                .arg(&self.api.kubeconfig)
                .args(args),
        )
        .unwrap();
        assert!(out.success, "kubectl {args:?} failed: {}", out.stderr);
        out.stdout
    }
}

/// Polls `check` until it returns `Some`, failing after `within`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn selfplay(name: &str, games: u64, per_task: u64, env: &[(&str, &str)]) -> SelfplayJob {
    let mut job = SelfplayJob::new(
        name,
        SelfplayJobSpec {
            game: GameSpec {
                board: "connect4".into(),
                players: 2,
                options: BTreeMap::new(),
            },
            model: None,
            settings: SelfplaySettings {
                games,
                games_per_task: per_task,
                parallelism: None,
                simulations: 16,
                template: WorkloadTemplate {
                    env: env
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..WorkloadTemplate::default()
                },
                resources: TaskResources {
                    gpus: 1,
                    ..TaskResources::default()
                },
                run_policy: RunPolicy::default(),
            },
            output: DatasetOutput {
                dataset: format!("{name}-games"),
            },
        },
    );
    job.metadata.namespace = Some("default".into());
    job
}

async fn finished(cluster: &Cluster, name: &str, within: Duration) -> SelfplayJob {
    until(&format!("{name} to finish"), within, || async {
        let job = cluster.job(name).await;
        job.status
            .as_ref()
            .is_some_and(|s| s.phase.is_finished())
            .then_some(job)
    })
    .await
}

fn phase_count(tasks: &[Task], phase: TaskPhase) -> usize {
    tasks
        .iter()
        .filter(|t| t.status.as_ref().is_some_and(|s| s.phase == phase))
        .count()
}

/// Succeeded attempts per work unit.
fn successes(tasks: &[Task]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for t in tasks {
        if t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Succeeded) {
            *out.entry(t.spec.work_unit.clone()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selfplay_job_runs_to_succeeded_with_the_right_game_count() {
    let cluster = Cluster::start("selfplay-succeeds").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 2);
    cluster
        .jobs()
        .create(&PostParams::default(), &selfplay("demo", 1050, 100, &[]))
        .await
        .unwrap();
    let job = finished(&cluster, "demo", Duration::from_secs(60)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!((status.games_done, status.games_total), (1050, 1050));
    assert_eq!(status.tasks.succeeded, 11);
    assert_eq!(status.outputs.len(), 11, "one game file per work unit");
    assert_eq!(status.observed_generation, job.metadata.generation);
    let tasks = cluster.tasks_of("demo").await;
    assert!(successes(&tasks).values().all(|n| *n == 1));
    assert_eq!(successes(&tasks).len(), 11);
    for t in &tasks {
        let owner = &t.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("SelfplayJob", "demo")
        );
        assert_eq!(t.labels()["ringrift.ai/agent"], t.spec.agent.clone().unwrap());
        assert_eq!(t.spec.gpus.len(), 1);
    }
    // What a user sees.
    let table = cluster.kubectl(&["get", "sp", "demo"]);
    assert!(
        table.contains("Succeeded") && table.contains("1050/1050"),
        "{table}"
    );
    let described = until("the Succeeded event", Duration::from_secs(10), || async {
        let d = cluster.kubectl(&["describe", "sp", "demo"]);
        d.contains("TasksCreated").then_some(d)
    })
    .await;
    assert!(described.contains("Succeeded"), "{described}");
    let ready = cluster.kubectl(&[
        "get",
        "agt",
        "sim-0",
        "-o",
        "jsonpath={.status.capacity.gpuCount}",
    ]);
    assert_eq!(ready.trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_new_attempts_then_given_up_with_a_reason() {
    let cluster = Cluster::start("selfplay-retries").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 2);
    // The first attempt of every unit fails; the second succeeds.
    let flaky = selfplay("flaky", 300, 100, &[("SIM_FAIL_ATTEMPTS", "1")]);
    let mut broken = selfplay("broken", 100, 100, &[("SIM_FAIL_ATTEMPTS", "99")]);
    broken.spec.settings.run_policy.backoff_limit = 2;
    cluster
        .jobs()
        .create(&PostParams::default(), &flaky)
        .await
        .unwrap();
    cluster
        .jobs()
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();

    let flaky = finished(&cluster, "flaky", Duration::from_secs(60)).await;
    let status = flaky.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.games_done, 300);
    assert_eq!(status.tasks.failed, 3);
    let tasks = cluster.tasks_of("flaky").await;
    assert_eq!(tasks.len(), 6, "attempt 0 and 1 of each unit");
    assert!(tasks.iter().all(|t| t.spec.attempt <= 1));

    let broken = finished(&cluster, "broken", Duration::from_secs(60)).await;
    let status = broken.status.unwrap();
    assert_eq!(status.phase, JobPhase::Failed);
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "BackoffLimitExceeded")
    );
    assert!(
        failed.message.contains("games-0000 failed 3 times"),
        "{}",
        failed.message
    );
    assert!(failed.message.contains("simulated failure"), "{}", failed.message);
    assert_eq!(
        cluster.tasks_of("broken").await.len(),
        3,
        "backoffLimit 2: three attempts"
    );
    let described = until("the failure events", Duration::from_secs(10), || async {
        let d = cluster.kubectl(&["describe", "sp", "broken"]);
        d.contains("BackoffLimitExceeded").then_some(d)
    })
    .await;
    assert!(described.contains("TaskFailed"), "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_tasks_are_rescheduled_and_counted_once() {
    let cluster = Cluster::start("agent-killed").await;
    let _controller = cluster.controller("c1");
    let mut doomed = cluster.agents("doomed", 1, 4);
    let job = selfplay("long", 800, 100, &[("SIM_DURATION_MS", "2500")]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    until(
        "tasks running on the doomed agent",
        Duration::from_secs(30),
        || async {
            let tasks = cluster.tasks_of("long").await;
            (phase_count(&tasks, TaskPhase::Running) >= 2).then_some(())
        },
    )
    .await;
    let _survivor = cluster.agents("survivor", 1, 4);
    doomed.kill();

    let job = finished(&cluster, "long", Duration::from_secs(90)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.games_done, 800, "every unit counted exactly once");
    let tasks = cluster.tasks_of("long").await;
    let lost: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            t.spec.agent.as_deref() == Some("doomed-0")
                && t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Lost)
        })
        .collect();
    assert!(!lost.is_empty(), "the doomed agent's running tasks are Lost");
    let message = lost[0]
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("agent doomed-0 stopped heartbeating"),
        "{message}"
    );
    assert!(
        successes(&tasks).values().all(|n| *n == 1),
        "{:?}",
        successes(&tasks)
    );
    assert_eq!(successes(&tasks).len(), 8);
    for t in &lost {
        let retry = tasks
            .iter()
            .find(|r| r.spec.work_unit == t.spec.work_unit && r.spec.attempt > t.spec.attempt);
        assert_eq!(retry.and_then(|r| r.spec.agent.as_deref()), Some("survivor-0"));
    }
    let agents: Api<Agent> = Api::all(cluster.client.clone());
    let doomed = agents.get("doomed-0").await.unwrap();
    let ready = doomed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "HeartbeatLapsed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_cancels_running_tasks_and_resume_finishes_with_progress_kept() {
    let cluster = Cluster::start("suspend").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let job = selfplay("pausable", 600, 100, &[("SIM_DURATION_MS", "1500")]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    until("a counted unit", Duration::from_secs(30), || async {
        let s = cluster.job("pausable").await.status?;
        (s.games_done >= 100 && s.tasks.running > 0).then_some(())
    })
    .await;
    let suspend = serde_json::json!({"spec": {"runPolicy": {"suspend": true}}});
    cluster
        .jobs()
        .patch("pausable", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    let status = until(
        "Suspended with nothing running",
        Duration::from_secs(30),
        || async {
            let s = cluster.job("pausable").await.status?;
            (s.phase == JobPhase::Suspended && s.tasks.running == 0 && s.tasks.pending == 0).then_some(s)
        },
    )
    .await;
    let done_when_suspended = status.games_done;
    assert!((100..600).contains(&done_when_suspended), "{done_when_suspended}");
    let tasks = cluster.tasks_of("pausable").await;
    assert!(
        phase_count(&tasks, TaskPhase::Cancelled) >= 1,
        "running tasks were cancelled"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster.tasks_of("pausable").await.len(),
        tasks.len(),
        "no new tasks while suspended"
    );

    let resume = serde_json::json!({"spec": {"runPolicy": {"suspend": false}}});
    cluster
        .jobs()
        .patch("pausable", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    let job = finished(&cluster, "pausable", Duration::from_secs(60)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded);
    assert_eq!(status.games_done, 600);
    assert_eq!(status.tasks.failed, 0, "a suspension uses no retry");
    assert!(
        successes(&cluster.tasks_of("pausable").await)
            .values()
            .all(|n| *n == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_deletes_its_tasks() {
    let cluster = Cluster::start("delete").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let job = selfplay("doomed-job", 1000, 100, &[("SIM_DURATION_MS", "5000")]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    until("tasks", Duration::from_secs(30), || async {
        (cluster.tasks_of("doomed-job").await.len() >= 2).then_some(())
    })
    .await;
    cluster
        .jobs()
        .delete("doomed-job", &DeleteParams::default())
        .await
        .unwrap();
    until("its tasks to be gone", Duration::from_secs(30), || async {
        cluster.tasks_of("doomed-job").await.is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cluster.tasks_of("doomed-job").await.is_empty(),
        "the controller does not recreate them"
    );
}

/// The leader named in the Lease.
async fn holder(cluster: &Cluster) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client.clone(), "default");
    leases
        .get_opt("ringrift-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

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
    // Both replicas serve their admin port; the standby is ready (warm caches) but not leading.
    for (replica, leading) in [(&first, "1"), (&second, "0")] {
        let admin = ApiServerProcess::client(replica.announced.rsplit("http://").next().unwrap());
        let ready = until("ready", Duration::from_secs(20), || async {
            let (code, _) = admin.http("GET", "/ready", &[], b"").unwrap();
            (code == 200).then_some(())
        });
        ready.await;
        assert_eq!(admin.http("GET", "/live", &[], b"").unwrap().0, 200);
        let (code, metrics) = admin.http("GET", "/metrics", &[], b"").unwrap();
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

async fn apply_json<K>(cluster: &Cluster, value: serde_json::Value) -> K
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    Api::<K>::namespaced(cluster.client.clone(), "default")
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

fn model(name: &str, generation: u32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "Model",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"game": {"board": "connect4"}, "digest": format!("sha256:{}", "ab".repeat(32)),
                 "sizeBytes": 1000, "generation": generation}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selfplay_then_training_then_a_gauntlet_that_promotes_early() {
    use ringrift_crds::model::Model;
    use ringrift_crds::training::TrainingJob;

    let cluster = Cluster::start("pipeline").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 4);

    // A job naming a model that does not exist waits, saying why.
    let mut games = selfplay("gen0-games", 400, 100, &[]);
    games.spec.model = Some(ringrift_crds::common::ModelRef::model("gen0"));
    games.spec.output.dataset = "connect4".into();
    cluster
        .jobs()
        .create(&PostParams::default(), &games)
        .await
        .unwrap();
    until("ModelNotFound", Duration::from_secs(30), || async {
        let s = cluster.job("gen0-games").await.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "False" && ready.reason == "ModelNotFound" && s.phase == JobPhase::Pending)
            .then_some(())
    })
    .await;
    let _: Model = apply_json(&cluster, model("gen0", 0)).await;
    let done = finished(&cluster, "gen0-games", Duration::from_secs(60)).await;
    assert_eq!(done.status.as_ref().unwrap().phase, JobPhase::Succeeded);
    assert_eq!(done.status.unwrap().model.as_deref(), Some("gen0"));
    let described = cluster.kubectl(&["describe", "sp", "gen0-games"]);
    assert!(
        described.contains("Warning") && described.contains("ModelNotFound"),
        "{described}"
    );

    let _: TrainingJob = apply_json(
        &cluster,
        serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "train-gen1", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "datasets": ["connect4"], "window": {"games": 300},
                     "baseModel": {"model": "gen0"}, "hyperparameters": {"steps": 50},
                     "resources": {"gpus": 2}, "output": {"model": "gen1"}}
        }),
    )
    .await;
    let trainings: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), "default");
    let trained = until("training to finish", Duration::from_secs(60), || async {
        let j = trainings.get("train-gen1").await.ok()?;
        j.status
            .as_ref()
            .is_some_and(|s| s.phase.is_finished())
            .then_some(j)
    })
    .await;
    let status = trained.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.model.as_deref(), Some("gen1"));
    assert_eq!((status.step, status.total_steps), (50, 50));
    let task = &cluster.tasks_of("train-gen1").await[0];
    assert_eq!(task.spec.gpus.len(), 2, "both GPUs on one agent");
    assert_eq!(task.spec.inputs.len(), 5, "four game files and the base model");
    let models: Api<Model> = Api::namespaced(cluster.client.clone(), "default");
    let gen1 = until("Model gen1", Duration::from_secs(10), || async {
        models.get_opt("gen1").await.ok().flatten()
    })
    .await;
    assert_eq!(gen1.spec.parent.as_deref(), Some("gen0"));
    assert_eq!(gen1.spec.generation, 1);
    assert_eq!(gen1.spec.training_job.as_deref(), Some("train-gen1"));
    assert_eq!(gen1.spec.digest, status.outputs[0].digest);

    gauntlet_promotes_early(&cluster).await;
}

/// A gauntlet of gen1 against gen0 and a baseline, decided by SPRT.
async fn gauntlet_promotes_early(cluster: &Cluster) {
    use ringrift_crds::gauntlet::{Decision, GauntletJob};

    // The candidate wins 80% of its games: SPRT accepts H1 long before 2 x 400 games.
    let _: GauntletJob = apply_json(
        cluster,
        serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "GauntletJob",
            "metadata": {"name": "gauntlet-gen1", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "candidate": {"model": "gen1"},
                     "opponents": [{"name": "best", "model": "gen0"}, {"name": "random", "baseline": "random"}],
                     "gamesPerOpponent": 400, "gamesPerTask": 10,
                     "promotion": {"opponent": "best", "sprt": {"elo0": 0, "elo1": 30}},
                     "template": {"env": {"SIM_WIN_RATE": "0.8", "SIM_DURATION_MS": "300"}},
                     "resources": {"gpus": 1}}
        }),
    )
    .await;
    let gauntlets: Api<GauntletJob> = Api::namespaced(cluster.client.clone(), "default");
    let decided = until("the gauntlet to decide", Duration::from_secs(90), || async {
        let j = gauntlets.get("gauntlet-gen1").await.ok()?;
        j.status
            .as_ref()
            .is_some_and(|s| s.phase.is_finished())
            .then_some(j)
    })
    .await;
    let status = decided.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.decision, Decision::Promote, "{status:?}");
    assert!(
        status
            .decision_reason
            .as_deref()
            .unwrap()
            .contains("SPRT accepted H1")
    );
    assert!(
        status.games_done < status.games_total,
        "stopped early: {} of {}",
        status.games_done,
        status.games_total
    );
    let best = status.results.iter().find(|r| r.name == "best").unwrap();
    assert!(best.wins > best.losses && best.wins > 0);
    assert!(best.elo_diff.unwrap() > 0.0 && best.elo_low.unwrap() < best.elo_diff.unwrap());
    assert!(status.sprt.unwrap().llr >= 2.9);
    let ready = until(
        "the gauntlet's tasks to stop",
        Duration::from_secs(30),
        || async {
            let tasks = cluster.tasks_of("gauntlet-gen1").await;
            let live = tasks
                .iter()
                .filter(|t| t.status.as_ref().is_none_or(|s| !s.phase.is_finished()))
                .count();
            (live == 0).then_some(tasks)
        },
    )
    .await;
    assert!(
        phase_count(&ready, TaskPhase::Cancelled) + phase_count(&ready, TaskPhase::Succeeded) == ready.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_fits_nowhere_says_why_and_a_gauntlet_preempts_selfplay() {
    use ringrift_crds::gauntlet::GauntletJob;
    use ringrift_crds::model::Model;

    let cluster = Cluster::start("queue-preempt").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let mut huge = selfplay("huge", 100, 100, &[]);
    huge.spec.settings.resources.gpus = 16;
    cluster
        .jobs()
        .create(&PostParams::default(), &huge)
        .await
        .unwrap();
    let queue = until("a queue reason", Duration::from_secs(30), || async {
        cluster.job("huge").await.status?.queue
    })
    .await;
    assert_eq!(queue.position, 1);
    assert_eq!(queue.reason, "needs 16 free GPUs; the most on any agent is 2");

    // Selfplay fills both GPUs; a gauntlet (higher priority) takes one of them.
    let filler = selfplay("filler", 400, 100, &[("SIM_DURATION_MS", "20000")]);
    cluster
        .jobs()
        .create(&PostParams::default(), &filler)
        .await
        .unwrap();
    until("both GPUs busy", Duration::from_secs(30), || async {
        (phase_count(&cluster.tasks_of("filler").await, TaskPhase::Running) == 2).then_some(())
    })
    .await;
    let _: Model = apply_json(&cluster, model("cand", 1)).await;
    let _: GauntletJob = apply_json(
        &cluster,
        serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "GauntletJob",
            "metadata": {"name": "urgent", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "candidate": {"model": "cand"},
                     "opponents": [{"name": "random", "baseline": "random"}],
                     "gamesPerOpponent": 10, "gamesPerTask": 10,
                     "promotion": {"winRate": {"minWinRate": 0.5, "minGames": 10}},
                     "resources": {"gpus": 1}}
        }),
    )
    .await;
    let gauntlets: Api<GauntletJob> = Api::namespaced(cluster.client.clone(), "default");
    until("the gauntlet to finish", Duration::from_secs(30), || async {
        let s = gauntlets.get("urgent").await.ok()?.status?;
        (s.phase == JobPhase::Succeeded).then_some(())
    })
    .await;
    let tasks = cluster.tasks_of("filler").await;
    let preempted: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            t.annotations()
                .get("ringrift.ai/cancel-reason")
                .map(String::as_str)
                == Some("Preempted")
        })
        .collect();
    assert_eq!(preempted.len(), 1, "one selfplay task made room");
    let status = cluster.job("filler").await.status.unwrap();
    assert_eq!(status.tasks.failed, 0, "a preemption uses no retry");
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
