//! A real `ringrift agent` as a process for end-to-end tests: simulated GPUs, a data directory
//! in the test's scratch directory that survives restarts, a known token, and a raw HTTP client
//! for its REST API.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::path::PathBuf;

use kube::Api;
use kube::api::PostParams;
use ringrift_crds::task::{Task, TaskPhase};
use serde_json::json;

use crate::cluster::Cluster;
use crate::https::announced_endpoint;
use crate::process::HttpClient;
use crate::role::RoleProcess;

/// The token every test agent uses.
pub const TOKEN: &str = "test-token-0123456789";

/// A running agent.
#[derive(Debug)]
pub struct AgentProcess {
    /// The process.
    pub role: RoleProcess,
    /// Agent name.
    pub name: String,
    /// Its REST base URL.
    pub url: String,
    /// Its certificate's fingerprint, as it announced it.
    pub fingerprint: String,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl AgentProcess {
    /// A raw HTTP client for its REST API, trusting its certificate by fingerprint.
    pub fn http(&self) -> HttpClient {
        HttpClient::pinned(&self.url, &self.fingerprint).unwrap()
    }

    /// `GET path` with the token: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let auth = format!("Bearer {TOKEN}");
        self.http()
            .http("GET", path, &[("Authorization", &auth)], b"")
            .unwrap()
    }
}

impl Drop for AgentProcess {
    /// Tasks outlive their agent by design; a test's must not outlive the test.
    fn drop(&mut self) {
        self.role.kill();
        kill_tasks(&self.data_dir);
    }
}

/// SIGKILLs the process group of every task shim started for `data_dir`.
pub fn kill_tasks(data_dir: &std::path::Path) {
    let needle = data_dir.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("task-shim") && cmdline.contains(&needle) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{name}")])
                .status();
        }
    }
}

impl Cluster {
    /// Starts (or restarts, with the same data directory) the agent `name` with two simulated
    /// GPUs, fast heartbeats, a 1 s stop grace period and `extra` arguments.
    pub fn agent(&self, name: &str, extra: &[&str]) -> AgentProcess {
        self.agent_wrapped(name, extra, None)
    }

    /// [`Cluster::agent`] whose data directory is a tmpfs of `mib` MiB, mounted in a mount
    /// namespace of its own (`unshare`): it fills up for real, and the mount goes with the
    /// process. The test sees the directory empty from outside; it asks the agent instead.
    pub fn agent_on_tmpfs(&self, name: &str, mib: u32, extra: &[&str]) -> AgentProcess {
        self.agent_wrapped(name, extra, Some(mib))
    }

    fn agent_wrapped(&self, name: &str, extra: &[&str], tmpfs_mib: Option<u32>) -> AgentProcess {
        let data_dir = self.dir().join(format!("agent-{name}"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let token_file = self.dir().join("agent-token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let mut args: Vec<String> = [
            "agent",
            "--kubeconfig",
            &self.api.kubeconfig.display().to_string(),
            "--name",
            name,
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            &token_file.display().to_string(),
            "--simulate-gpus",
            "2xT4-16GB",
            "--heartbeat",
            "500ms",
            "--heartbeat-lease",
            "3s",
            "--grace",
            "1s",
            "--progress-interval",
            "100ms",
            "--sample-interval",
            "1s",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let role = match tmpfs_mib {
            None => {
                RoleProcess::start(&self.dir(), &format!("agent-{name}"), &args, "ringrift agent").unwrap()
            }
            Some(mib) => {
                let mut wrapped: Vec<String> = [
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "mount -t tmpfs -o size=\"$1\"m tmpfs \"$2\" && shift 2 && exec \"$@\"",
                    "sh",
                ]
                .map(String::from)
                .to_vec();
                wrapped.push(mib.to_string());
                wrapped.push(data_dir.display().to_string());
                wrapped.push(crate::process::ringrift_bin().unwrap().display().to_string());
                wrapped.extend(args);
                RoleProcess::start_program(
                    &self.dir(),
                    &format!("agent-{name}"),
                    std::path::Path::new("unshare"),
                    &wrapped,
                    "ringrift agent",
                    &[("RINGRIFT_LOG".to_owned(), "info".to_owned())],
                    &[],
                )
                .unwrap()
            }
        };
        let (url, fingerprint) = announced_endpoint(&role.announced);
        AgentProcess {
            role,
            name: name.to_owned(),
            url,
            fingerprint,
            data_dir,
        }
    }

    /// Creates a Task bound to `agent` that runs `script` with `/bin/sh -c`, with extra spec
    /// fields merged in.
    pub async fn shell_task(&self, name: &str, agent: &str, script: &str, extra: serde_json::Value) -> Task {
        let mut spec = json!({
            "role": "selfplay",
            "job": {"kind": "SelfplayJob", "name": "shell"},
            "workUnit": name,
            "attempt": 0,
            "agent": agent,
            "gpus": [format!("GPU-sim-{agent}-0")],
            "template": {"command": ["/bin/sh", "-c", script]},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let task: Task = serde_json::from_value(json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": "default", "labels": {"ringrift.ai/agent": agent}},
            "spec": spec,
        }))
        .unwrap();
        let tasks: Api<Task> = Api::namespaced(self.client.clone(), "default");
        tasks.create(&PostParams::default(), &task).await.unwrap()
    }
}

/// The cluster key test agents gossip with.
pub const CLUSTER_KEY: &str = "e2e-cluster-key-0123456789abcdef";

impl AgentProcess {
    /// The value of a metric sample (its full name with labels), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until this agent has made `more` passes over its Tasks after now (its
    /// `ringrift_agent_supervisor_passes_total`): tests wait for passes to go by rather than
    /// sleep, to show something does not happen.
    pub async fn after_passes(&self, more: f64) {
        let sample = "ringrift_agent_supervisor_passes_total";
        let start = self.metric(sample);
        crate::cluster::until(
            &format!("{more} more supervisor passes"),
            std::time::Duration::from_secs(30),
            || async { (self.metric(sample) >= start + more).then_some(()) },
        )
        .await;
    }

    /// Names in this agent's gossip view: live members and members seen dead.
    pub fn gossip_view(&self) -> (Vec<String>, Vec<String>) {
        let (_, body) = self.get("/v1/peers");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let names = |key: &str, field: Option<&str>| -> Vec<String> {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| field.map_or(Some(m), |f| m.get(f)).and_then(|s| s.as_str()))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        (names("members", Some("name")), names("dead", None))
    }

    /// Where this agent stores the content of `digest`.
    pub fn stored(&self, digest: &str) -> PathBuf {
        self.data_dir
            .join("artifacts/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }
}

impl Cluster {
    /// Starts the agent `name` gossiping on loopback under `key` (written to a key file), with
    /// `extra` arguments.
    pub fn synced_agent(&self, name: &str, key: &str, extra: &[&str]) -> AgentProcess {
        let key_file = self.dir().join(format!("cluster-key-{name}"));
        std::fs::write(&key_file, key).unwrap();
        let key_file = key_file.display().to_string();
        let mut args = vec![
            "--cluster-key-file",
            key_file.as_str(),
            "--gossip-listen",
            "127.0.0.1:0",
            "--gossip-suspect-timeout",
            "2s",
        ];
        args.extend_from_slice(extra);
        self.agent(name, &args)
    }

    /// Waits (a minute at most) until each of `names` is `Ready` and `Reachable` in the API
    /// (the controller's probe sets `Reachable`).
    pub async fn ready_and_reachable(&self, names: &[&str]) {
        let agents: Api<ringrift_crds::agent::Agent> = Api::all(self.client.clone());
        crate::cluster::until(
            "every agent Ready and Reachable",
            std::time::Duration::from_secs(60),
            || async {
                let list = agents.list(&kube::api::ListParams::default()).await.ok()?;
                let good = |a: &ringrift_crds::agent::Agent| {
                    ["Ready", "Reachable"].iter().all(|t| {
                        a.status
                            .as_ref()
                            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == *t && c.status == "True"))
                    })
                };
                names
                    .iter()
                    .all(|n| {
                        list.items
                            .iter()
                            .any(|a| a.metadata.name.as_deref() == Some(n) && good(a))
                    })
                    .then_some(())
            },
        )
        .await;
    }
}

/// The first output of a Task that must have Succeeded.
pub fn output(t: &Task) -> ringrift_crds::common::Artifact {
    assert_eq!(phase(t), TaskPhase::Succeeded, "{:?}", t.status);
    t.status.as_ref().unwrap().outputs[0].clone()
}

/// A Task's phase (Pending before any status).
pub fn phase(t: &Task) -> TaskPhase {
    t.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The Task `name` in `default` once it has Succeeded or Failed (a minute at most).
pub async fn finished(cluster: &Cluster, name: &str) -> Task {
    crate::cluster::until(
        &format!("{name} to finish"),
        std::time::Duration::from_secs(60),
        || async {
            cluster
                .tasks()
                .get(name)
                .await
                .ok()
                .filter(|t| matches!(phase(t), TaskPhase::Succeeded | TaskPhase::Failed))
        },
    )
    .await
}

/// Runs a task on `agent` writing `mib` MiB of random bytes as `data.bin` (with `extra` spec
/// fields); the finished Task.
pub async fn make_random(
    cluster: &Cluster,
    task: &str,
    agent: &str,
    mib: u32,
    extra: serde_json::Value,
) -> Task {
    let script = format!("head -c {mib}M /dev/urandom > \"$RINGRIFT_OUTPUT_DIR/data.bin\"");
    cluster.shell_task(task, agent, &script, extra).await;
    finished(cluster, task).await
}

/// Creates a task on `agent` that reads `input` and prints its sha256.
pub async fn consume(
    cluster: &Cluster,
    task: &str,
    agent: &str,
    input: &ringrift_crds::common::Artifact,
) -> Task {
    let script = format!("sha256sum \"$RINGRIFT_INPUT_DIR/{}\"", input.name);
    cluster
        .shell_task(task, agent, &script, json!({"inputs": [input]}))
        .await
}
