//! A cluster for controller tests: the real `ringrift apiserver` with the CRDs installed, the
//! controller and simulated agents as processes ([`RoleProcess`]), and helpers to make jobs and
//! wait on conditions with deadlines.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use ringrift_crds::common::{GameSpec, RunPolicy, TaskResources, WorkloadTemplate};
use ringrift_crds::selfplay::{DatasetOutput, SelfplayJob, SelfplayJobSpec, SelfplaySettings};
use ringrift_crds::task::{Task, TaskPhase};

use crate::process::{ApiServerProcess, Scratch};
use crate::role::RoleProcess;

/// The token the controllers' `/metrics` asks for.
pub const METRICS_TOKEN: &str = "metrics-token-for-tests";

/// An API server with the CRDs installed, and a client for it.
pub struct Cluster {
    /// A client.
    pub client: Client,
    /// The server.
    pub api: ApiServerProcess,
    /// The test's directory.
    pub scratch: Scratch,
}

impl Cluster {
    /// Starts the server and installs the CRDs.
    ///
    /// # Panics
    /// When it cannot.
    pub async fn start(test: &str) -> Self {
        let scratch = Scratch::new(test).unwrap();
        let api = ApiServerProcess::start(&scratch.0, &[]).unwrap();
        let kubeconfig = Kubeconfig::read_from(&api.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        install_crds(&client).await;
        Self { client, api, scratch }
    }

    /// The test's directory (logs, kubeconfig).
    pub fn dir(&self) -> PathBuf {
        self.scratch.0.clone()
    }

    /// A controller with short leader-election and retry timings, its `/metrics` behind
    /// [`METRICS_TOKEN`].
    pub fn controller(&self, identity: &str) -> RoleProcess {
        self.controller_with(identity, &[])
    }

    /// [`Self::controller`] with `extra` arguments.
    pub fn controller_with(&self, identity: &str, extra: &[&str]) -> RoleProcess {
        let token_file = self.dir().join("metrics-token");
        std::fs::write(&token_file, METRICS_TOKEN).unwrap();
        let args: Vec<String> = [
            "controller",
            "--kubeconfig",
            &self.api.kubeconfig.display().to_string(),
            "--metrics-token-file",
            &token_file.display().to_string(),
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
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|a| (*a).to_owned()))
            .collect();
        RoleProcess::start(&self.dir(), identity, &args, "ringrift controller").unwrap()
    }

    /// The reconcile passes `controller` has run so far (its
    /// `ringrift_controller_pass_duration_seconds_count`): tests wait for passes to go by
    /// rather than sleep, to show something does not happen.
    pub fn passes(controller: &RoleProcess) -> f64 {
        Self::metric(controller, "ringrift_controller_pass_duration_seconds_count")
    }

    /// The value of `controller`'s metric sample `name` (without labels), 0 when absent.
    pub fn metric(controller: &RoleProcess, name: &str) -> f64 {
        let (code, metrics) = controller
            .announced_client()
            .http(
                "GET",
                "/metrics",
                &[("Authorization", &format!("Bearer {METRICS_TOKEN}"))],
                b"",
            )
            .unwrap();
        assert_eq!(code, 200, "{metrics}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `controller` has run `more` passes after now.
    pub async fn after_passes(controller: &RoleProcess, more: f64) {
        let start = Self::passes(controller);
        until(
            &format!("{more} more reconcile passes"),
            Duration::from_secs(30),
            || async { (Self::passes(controller) >= start + more).then_some(()) },
        )
        .await;
    }

    /// `count` simulated agents named `<prefix>-<i>` with `gpus` GPUs each.
    pub fn agents(&self, prefix: &str, count: usize, gpus: u32) -> RoleProcess {
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

    /// Selfplay jobs in `default`.
    pub fn jobs(&self) -> Api<SelfplayJob> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Tasks in `default`.
    pub fn tasks(&self) -> Api<Task> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// The selfplay job `name`.
    pub async fn job(&self, name: &str) -> SelfplayJob {
        self.jobs().get(name).await.unwrap()
    }

    /// The tasks of the job `job` (by its label).
    pub async fn tasks_of(&self, job: &str) -> Vec<Task> {
        let params = ListParams::default().labels(&format!("ringrift.ai/job={job}"));
        self.tasks().list(&params).await.unwrap().items
    }

    /// Runs the real kubectl against the server; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        crate::kubectl::ok(&self.api, args)
    }
}

/// Installs every CRD.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ringrift_crds::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
}

/// Polls `check` until it returns `Some`, failing after `within`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
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

/// A selfplay job of `games` games in units of `per_task`, one GPU each, with `env` in its
/// template (the simulated agents' `SIM_*` switches).
pub fn selfplay(name: &str, games: u64, per_task: u64, env: &[(&str, &str)]) -> SelfplayJob {
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
                replicas: None,
            },
            output: DatasetOutput {
                dataset: format!("{name}-games"),
            },
            share: None,
        },
    );
    job.metadata.namespace = Some("default".into());
    job
}

/// Waits until the selfplay job `name` finished.
pub async fn finished(cluster: &Cluster, name: &str, within: Duration) -> SelfplayJob {
    until(&format!("{name} to finish"), within, || async {
        let job = cluster.job(name).await;
        job.status
            .as_ref()
            .is_some_and(|s| s.phase.is_finished())
            .then_some(job)
    })
    .await
}

/// How many of `tasks` are in `phase`.
pub fn phase_count(tasks: &[Task], phase: TaskPhase) -> usize {
    tasks
        .iter()
        .filter(|t| t.status.as_ref().is_some_and(|s| s.phase == phase))
        .count()
}

/// Succeeded attempts per work unit.
pub fn successes(tasks: &[Task]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for t in tasks {
        if t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Succeeded) {
            *out.entry(t.spec.work_unit.clone()).or_default() += 1;
        }
    }
    out
}

/// The controller Lease's holder.
pub async fn holder(cluster: &Cluster) -> Option<String> {
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

/// Creates an object in `default` from JSON.
pub async fn apply_json<K>(cluster: &Cluster, value: serde_json::Value) -> K
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

/// A `Model` as JSON.
pub fn model(name: &str, generation: u32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "Model",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"game": {"board": "connect4"}, "digest": format!("sha256:{}", "ab".repeat(32)),
                 "sizeBytes": 1000, "generation": generation}
    })
}
