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
use ringrift_crds::task::Task;
use serde_json::json;

use crate::cluster::Cluster;
use crate::process::{ApiServerProcess, HttpClient};
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
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl AgentProcess {
    /// A raw HTTP client for its REST API.
    pub fn http(&self) -> HttpClient {
        ApiServerProcess::client(&self.url)
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
        let role =
            RoleProcess::start(&self.dir(), &format!("agent-{name}"), &args, "ringrift agent").unwrap();
        let url = role
            .announced
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("the agent announces its REST URL")
            .to_owned();
        AgentProcess {
            role,
            name: name.to_owned(),
            url,
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
