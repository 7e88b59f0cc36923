//! Installing the rendered chart on the embedded API server for a test: static tokens for the
//! chart's ServiceAccounts, RBAC enforced, an audit log, kubectl as the administrator with a
//! token over TLS (no anonymous access), and the chart's containers started as processes the
//! way the kubelet would start them: in a pod's mount namespace with the ServiceAccount's token
//! and CA at their standard path ([`crate::pod`]), finding the API server in-cluster.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::chart::{NAMESPACE, audit, container, container_env, expand, object, objects, template};
use crate::pod::Pod;
use crate::process::{ApiServerProcess, Scratch};
use crate::role::RoleProcess;
use crate::{Output, run, tool};

/// The administrator's token (`--token`).
pub const ADMIN_TOKEN: &str = "admin-token-for-the-chart-test";
/// The controller ServiceAccount's token.
pub const CONTROLLER_TOKEN: &str = "controller-token-for-the-chart-test";
/// The agent ServiceAccount's token.
pub const AGENT_TOKEN: &str = "agent-token-for-the-chart-test";

/// The calls the test makes as the agent to show they are refused: (verb, resource).
pub const PROBES: &[(&str, &str)] = &[("delete", "tasks"), ("list", "secrets")];

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The API server with the chart applied to it (by [`setup`] and the test).
pub struct Setup {
    /// The test directory.
    pub scratch: Scratch,
    /// The API server.
    pub api: ApiServerProcess,
    /// The rendered objects.
    pub objects: Vec<Value>,
    /// The rendered manifests file.
    pub manifests: PathBuf,
    /// The API server's audit log.
    pub audit: PathBuf,
    /// A kubeconfig with the administrator's token, trusting the server's CA (kubectl's).
    pub admin: PathBuf,
    /// The controller's ServiceAccount.
    pub controller_sa: String,
    /// The agent's ServiceAccount.
    pub agent_sa: String,
}

impl Setup {
    /// kubectl with `kubeconfig`.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        run(Command::new(tool("kubectl").unwrap())
            .env("KUBECACHEDIR", self.scratch.0.join("kubecache"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args))
        .unwrap()
    }

    /// kubectl as the administrator; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_as(&self.admin, args);
        assert!(out.success, "kubectl {args:?}:\n{}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// Creates a namespace with kubectl.
    pub fn namespace(&self, name: &str) {
        let file = self.scratch.0.join(format!("namespace-{name}.yaml"));
        std::fs::write(
            &file,
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
        )
        .unwrap();
        self.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// Fails the test at once when RBAC refused a call of the controller or the agent (instead
    /// of at the end of a wait for work that cannot happen).
    pub fn no_refusals(&self) {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        let refused: Vec<String> = audit(&text)
            .into_iter()
            .filter(|a| a.code == 403 && a.user.starts_with("system:serviceaccount:"))
            .filter(|a| !PROBES.contains(&(a.call.0.as_str(), a.call.2.as_str())))
            .map(|a| format!("{} {:?} in {:?}", a.user, a.call, a.namespace))
            .collect();
        assert!(refused.is_empty(), "the chart's RBAC refused: {refused:#?}");
    }

    /// A kubeconfig with `token`, trusting the server's CA.
    pub fn kubeconfig_for(&self, who: &str, token: &str) -> PathBuf {
        let path = self.scratch.0.join(format!("kubeconfig-{who}"));
        std::fs::write(
            &path,
            ringrift_apiserver::run::kubeconfig(
                &self.api.url,
                Some(&self.api.ca()),
                ringrift_apiserver::run::Credential::Token(token),
            ),
        )
        .unwrap();
        path
    }

    /// A process with the args and env of `workload`'s container, as the kubelet would start
    /// it: `$(VAR)` expanded from the env (`fields` supplies the downward API), the volume
    /// mounts mapped to directories of the test, `0.0.0.0` (every interface of the pod) bound
    /// as 127.0.0.1, and the ServiceAccount's `token` (with the server's CA and the pod's
    /// namespace) mounted where in-cluster clients look for it.
    pub fn start(
        &self,
        workload: &Value,
        name: &str,
        fields: &BTreeMap<&str, String>,
        mounts: &BTreeMap<String, PathBuf>,
        token: &str,
        rewrite: impl Fn(String) -> String,
    ) -> RoleProcess {
        let c = container(workload);
        let env = container_env(c, fields);
        let mut args: Vec<String> = Vec::new();
        for arg in c["args"].as_array().unwrap() {
            let mut arg = expand(arg.as_str().unwrap(), &env);
            for (mount, local) in mounts {
                arg = arg.replace(mount.as_str(), &local.display().to_string());
            }
            args.push(rewrite(arg.replace("=0.0.0.0:", "=127.0.0.1:")));
        }
        let vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k != "TMPDIR").collect();
        let pod = Pod {
            host: "127.0.0.1".into(),
            port: self.api.port(),
            token: token.to_owned(),
            ca: self.api.ca(),
            namespace: NAMESPACE.to_owned(),
            env: vars,
        };
        let prefix = format!("ringrift {}", args[0]);
        pod.start(&self.scratch.0, name, &args, &prefix).unwrap()
    }
}

/// Renders the chart with the given ports and fast heartbeats and starts the API server with
/// tokens for its ServiceAccounts, RBAC and an audit log.
pub fn setup(ports: (u16, u16, u16)) -> Setup {
    let scratch = Scratch::new("chart-install").unwrap();
    let (admin, rest, gossip) = ports;
    let manifests = template(&[
        "--set",
        &format!("controller.adminPort={admin}"),
        "--set",
        &format!("agent.port={rest}"),
        "--set",
        &format!("agent.gossipPort={gossip}"),
        "--set",
        "agent.heartbeat=500ms",
        "--set",
        "agent.heartbeatLease=3s",
        "--set",
        "agent.taskGracePeriod=1s",
        "--set",
        "controller.retryBackoff=200ms",
        "--set",
        "logging.format=plain",
        "--set",
        "logging.level=info",
        "--set",
        "metrics.serviceMonitor.enabled=false",
    ])
    .unwrap();
    let objects = objects(&manifests);
    let path = scratch.0.join("rendered.yaml");
    std::fs::write(&path, &manifests).unwrap();
    let sa = |component: &str| {
        object(&objects, "ServiceAccount", component)["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (controller_sa, agent_sa) = (sa("controller"), sa("agent"));
    let tokens = scratch.0.join("tokens.csv");
    std::fs::write(
        &tokens,
        format!(
            "{CONTROLLER_TOKEN},system:serviceaccount:{NAMESPACE}:{controller_sa},1\n{AGENT_TOKEN},system:serviceaccount:{NAMESPACE}:{agent_sa},2\n"
        ),
    )
    .unwrap();
    let audit = scratch.0.join("audit.jsonl");
    let api = ApiServerProcess::start(
        &scratch.0,
        &[
            "--in-memory",
            "--token",
            ADMIN_TOKEN,
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--authorization-mode",
            "RBAC",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    )
    .unwrap();
    // kubectl as the administrator, with the token over TLS (kubectl sends tokens only over
    // TLS, as to any real cluster).
    let admin = scratch.0.join("kubeconfig-admin");
    std::fs::write(
        &admin,
        ringrift_apiserver::run::kubeconfig(
            &api.url,
            Some(&api.ca()),
            ringrift_apiserver::run::Credential::Token(ADMIN_TOKEN),
        ),
    )
    .unwrap();
    Setup {
        scratch,
        api,
        objects,
        manifests: path,
        audit,
        admin,
        controller_sa,
        agent_sa,
    }
}

/// A kube client from a kubeconfig.
pub async fn admin_client(kubeconfig: &Path) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

/// The status of `GET <path>` on 127.0.0.1:`port` over TLS without checking the certificate,
/// as the kubelet's HTTPS probes ask; 0 when nothing answers.
pub fn http_status(port: u16, path: &str) -> u16 {
    crate::https::HttpClient::unverified(&format!("127.0.0.1:{port}"))
        .http("GET", path, &[], b"")
        .map_or(0, |(code, _)| code)
}
