//! The chart on a cluster: its rendered output applied with the real kubectl to the embedded API
//! server over TLS (the administrator's token; static tokens for the ServiceAccounts; RBAC
//! enforced; no anonymous access), then the controllers and an agent started with the chart's
//! own container arguments in pods' mount namespaces, finding the API server in-cluster with
//! their ServiceAccounts' token files: a training loop runs to the end, a finished job is deleted after its TTL, a
//! lost agent's task is marked Lost. The API server's audit log then holds every call the
//! controller and the agent made; the test fails if the chart's RBAC refused one, or grants
//! something neither used.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_crds::training_loop::{LoopPhase, TrainingLoop};
use ringrift_e2e::agent::kill_tasks;
use ringrift_e2e::chart::{Call, NAMESPACE, audit, container, granted, object, secret_data};
use ringrift_e2e::chart_install::{
    AGENT_TOKEN, CONTROLLER_TOKEN, PROBES, Setup, admin_client, free_port, http_status, setup,
};
use ringrift_e2e::cluster::until;
use ringrift_e2e::role::RoleProcess;
use serde_json::Value;

/// A one-generation loop in another namespace than the release's: the controller and agent
/// work across namespaces.
const LOOP: &str = r"
apiVersion: ringrift.ai/v1alpha1
kind: TrainingLoop
metadata: {name: chart, namespace: research}
spec:
  game: {board: connect4, players: 2}
  maxGenerations: 1
  selfplay: {games: 40, gamesPerTask: 20, simulations: 8, resources: {cpuMillis: 100, memoryMiB: 64}}
  training:
    window: {games: 40}
    hyperparameters: {steps: 50, batchSize: 16}
    resources: {cpuMillis: 100, memoryMiB: 64}
  gauntlet:
    opponents: [{name: random, baseline: random}]
    gamesPerOpponent: 4
    gamesPerTask: 4
    simulations: 8
    promotion: {winRate: {minWinRate: 0.5, minGames: 4}}
    resources: {cpuMillis: 100, memoryMiB: 64}
";

/// A job that finishes at once and is deleted a second later (its TTL).
const SHORT_LIVED: &str = r"
apiVersion: ringrift.ai/v1alpha1
kind: SelfplayJob
metadata: {name: short-lived, namespace: research}
spec:
  game: {board: connect4}
  games: 2
  gamesPerTask: 2
  simulations: 4
  output: {dataset: scratch}
  resources: {cpuMillis: 100, memoryMiB: 64}
  runPolicy: {ttlSecondsAfterFinished: 1}
";

/// A job that runs until its agent is lost.
const LONG: &str = r"
apiVersion: ringrift.ai/v1alpha1
kind: SelfplayJob
metadata: {name: long, namespace: research}
spec:
  game: {board: connect4}
  games: 1000000
  gamesPerTask: 1000000
  simulations: 64
  output: {dataset: endless}
  resources: {cpuMillis: 100, memoryMiB: 64}
";

/// Calls granted and made in some runs only (timing decides), by component, and why.
const GRANTED_SOMETIMES: &[(&str, &str, &str, &str, &str)] = &[(
    "controller",
    "patch",
    "",
    "events",
    "a repeated event raises the count of the existing one (when one repeats in the run)",
)];

/// Calls granted but not made in this run, by component, and why they are still needed.
/// Anything else granted and unused fails the test (the chart allows more than the code needs).
const GRANTED_UNUSED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "controller",
        "delete",
        "ringrift.ai",
        "trainingjobs",
        "TTL deletion, the code path selfplayjobs exercise here",
    ),
    (
        "controller",
        "delete",
        "ringrift.ai",
        "gauntletjobs",
        "TTL deletion, the code path selfplayjobs exercise here",
    ),
    (
        "agent",
        "list",
        "ringrift.ai",
        "models",
        "retention keeps promoted models; it reads them only above the disk high-water mark",
    ),
    (
        "agent",
        "list",
        "ringrift.ai",
        "selfplayjobs",
        "retention keeps games in a training window; read only above the high-water mark",
    ),
    (
        "agent",
        "list",
        "ringrift.ai",
        "trainingloops",
        "retention reads the loops' training windows; only above the high-water mark",
    ),
    (
        "agent",
        "list",
        "ringrift.ai",
        "trainingjobs",
        "retention reads unfinished training jobs' windows; only above the high-water mark",
    ),
    (
        "agent",
        "patch",
        "ringrift.ai",
        "agents",
        "the zone label of an existing Agent, only when the agent is started with another --zone",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_chart_applies_and_its_controller_and_agent_work_within_its_rbac() {
    let ports = (free_port(), free_port(), free_port());
    let s = setup(ports);
    let client = admin_client(&s.api.kubeconfig).await;
    install(&s);
    let mut running = start(&s, ports).await;
    work(&s, &client, &mut running).await;
    refusals(&s, &running.agent_kubeconfig).await;

    // Stop the controllers as Kubernetes would (SIGTERM): the leader releases its Lease.
    for c in &running.controllers {
        c.terminate().unwrap();
    }
    for c in &mut running.controllers {
        let status = c.wait(Duration::from_secs(30)).unwrap();
        assert!(status.success(), "{} exited with {status}:\n{}", c.name, c.log());
    }
    check_rbac(&s);
}

/// Applies the rendered chart with kubectl, twice (an upgrade with nothing changed).
fn install(s: &Setup) {
    let before = s.kubectl_as(&s.admin, &["get", "namespaces"]);
    assert!(before.success, "kubectl is admitted: {}", before.stderr);
    // Without credentials, nothing (the server allows no anonymous access; kubectl would ask
    // for a user name, so this is a raw request).
    let (code, body) = s
        .api
        .anonymous_client()
        .http("GET", "/api/v1/namespaces", &[], b"")
        .unwrap();
    assert_eq!(code, 401, "{body}");
    // Install: the namespace, then everything the chart renders, with the real kubectl.
    // (`kubectl create namespace` sends protobuf, which this server does not speak: a manifest.)
    s.namespace(NAMESPACE);
    let applied = s.kubectl(&["apply", "-f", s.manifests.to_str().unwrap()]);
    assert_eq!(
        applied.lines().count(),
        s.objects.len(),
        "one line per object:\n{applied}"
    );
    assert!(applied.lines().all(|l| l.ends_with(" created")), "{applied}");
    // An upgrade with nothing changed applies cleanly too.
    let again = s.kubectl(&["apply", "-f", s.manifests.to_str().unwrap()]);
    assert!(
        again
            .lines()
            .all(|l| l.ends_with(" unchanged") || l.ends_with(" configured")),
        "{again}"
    );
    let crds = s.kubectl(&["get", "crd", "-o", "name"]);
    assert_eq!(
        crds.lines().filter(|l| l.ends_with(".ringrift.ai")).count(),
        7,
        "{crds}"
    );
    s.namespace("research");
}

/// The chart's processes, as started on the nodes.
struct Running {
    controllers: Vec<RoleProcess>,
    agent: RoleProcess,
    agent_kubeconfig: PathBuf,
    data_dir: PathBuf,
}

/// Starts two controllers and an agent from the chart's containers and checks their probes.
async fn start(s: &Setup, ports: (u16, u16, u16)) -> Running {
    // The Secret's keys as the agent's mounted files.
    let secret_dir = s.scratch.0.join("secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    for (key, value) in secret_data(object(&s.objects, "Secret", "agent")) {
        std::fs::write(secret_dir.join(key), value).unwrap();
    }
    let data_dir = s.scratch.0.join("node-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mounts: BTreeMap<String, PathBuf> = [
        ("/var/lib/ringrift".to_owned(), data_dir.clone()),
        ("/etc/ringrift/secret".to_owned(), secret_dir.clone()),
        ("/etc/ringrift/metrics".to_owned(), secret_dir.clone()),
    ]
    .into();

    // Two controller replicas (each pod has its own network, so on this host the second gets
    // another admin port) and one agent, as the chart's ServiceAccounts (their tokens mounted
    // in their pods; the test's own calls as the agent use a kubeconfig with its token).
    let agent_kubeconfig = s.kubeconfig_for("agent", AGENT_TOKEN);
    let deployment = object(&s.objects, "Deployment", "controller");
    let mut controllers = Vec::new();
    let mut admin_ports = Vec::new();
    for i in 0..2 {
        let fields: BTreeMap<&str, String> = [
            ("metadata.name", format!("rr-ringrift-controller-{i}")),
            ("metadata.namespace", NAMESPACE.to_owned()),
        ]
        .into();
        let port = if i == 0 { ports.0 } else { free_port() };
        admin_ports.push(port);
        let admin = ports.0;
        controllers.push(s.start(
            deployment,
            &format!("controller-{i}"),
            &fields,
            &mounts,
            CONTROLLER_TOKEN,
            move |a| a.replace(&format!("127.0.0.1:{admin}"), &format!("127.0.0.1:{port}")),
        ));
    }
    let daemonset = object(&s.objects, "DaemonSet", "agent");
    let fields: BTreeMap<&str, String> = [
        ("spec.nodeName", "gpu-node-1".to_owned()),
        ("metadata.namespace", NAMESPACE.to_owned()),
        ("status.podIP", "127.0.0.1".to_owned()),
    ]
    .into();
    let agent = s.start(daemonset, "agent", &fields, &mounts, AGENT_TOKEN, |a| a);

    // The probes the chart declares answer on the ports it declares.
    let probe = |workload: &Value, kind: &str| {
        container(workload)[kind]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    until("the agent to be ready", Duration::from_secs(30), || async {
        (http_status(ports.1, &probe(daemonset, "readinessProbe")) == 200).then_some(())
    })
    .await;
    assert_eq!(http_status(ports.1, &probe(daemonset, "livenessProbe")), 200);
    for port in &admin_ports {
        for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let path = probe(deployment, kind);
            until(
                &format!("{kind} {path} on port {port} to answer 200"),
                Duration::from_secs(30),
                || async { (http_status(*port, &path) == 200).then_some(()) },
            )
            .await;
        }
    }
    let agents = s.kubectl(&["get", "agents", "-o", "name"]);
    assert_eq!(
        agents.trim(),
        "agent.ringrift.ai/gpu-node-1",
        "the Agent is named after the node"
    );
    Running {
        controllers,
        agent,
        agent_kubeconfig,
        data_dir,
    }
}

/// A loop to the end, a job past its TTL, a job whose agent is lost.
async fn work(s: &Setup, client: &Client, processes: &mut Running) {
    for doc in [LOOP, SHORT_LIVED] {
        let file = s.scratch.0.join("job.yaml");
        std::fs::write(&file, doc).unwrap();
        s.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    }
    let loops: Api<TrainingLoop> = Api::namespaced(client.clone(), "research");
    until("the loop to succeed", Duration::from_secs(240), || async {
        s.no_refusals();
        let status = loops.get_opt("chart").await.ok()??.status?;
        (status.phase == LoopPhase::Succeeded).then_some(())
    })
    .await;
    let jobs: Api<SelfplayJob> = Api::namespaced(client.clone(), "research");
    until(
        "the short-lived job to be deleted after its TTL",
        Duration::from_secs(60),
        || async {
            s.no_refusals();
            jobs.get_opt("short-lived").await.ok()?.is_none().then_some(())
        },
    )
    .await;

    let file = s.scratch.0.join("long.yaml");
    std::fs::write(&file, LONG).unwrap();
    s.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let tasks: Api<Task> = Api::namespaced(client.clone(), "research");
    let params = kube::api::ListParams::default().labels("ringrift.ai/job=long");
    let running = until("the long task to run", Duration::from_secs(60), || async {
        s.no_refusals();
        tasks
            .list(&params)
            .await
            .ok()?
            .items
            .into_iter()
            .find(|t| t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Running))
    })
    .await;
    processes.agent.kill();
    kill_tasks(&processes.data_dir);
    let name = kube::ResourceExt::name_any(&running);
    until(
        "the task of the lost agent to be marked Lost",
        Duration::from_secs(60),
        || async {
            s.no_refusals();
            let t = tasks.get(&name).await.ok()?;
            (t.status?.phase == TaskPhase::Lost).then_some(())
        },
    )
    .await;
    let ready = until(
        "the agent to be marked not ready",
        Duration::from_secs(30),
        || async {
            s.no_refusals();
            let out = s.kubectl_as(
                &s.admin,
                &[
                    "get",
                    "agent",
                    "gpu-node-1",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            );
            (out.success && out.stdout.trim() == "False").then_some(out.stdout)
        },
    )
    .await;
    assert_eq!(ready.trim(), "False");
    s.kubectl(&["delete", "selfplayjob", "long", "-n", "research"]);
}

/// What the agent's identity may not do, it cannot: the refusal names the user and call.
async fn refusals(s: &Setup, agent_kubeconfig: &Path) {
    let name = "any-task";
    let as_agent = admin_client(agent_kubeconfig).await;
    let refused = Api::<Task>::namespaced(as_agent.clone(), "research")
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .expect_err("the agent may not delete tasks");
    let user = format!("system:serviceaccount:{NAMESPACE}:{}", s.agent_sa);
    assert!(
        refused.to_string().contains(&format!(
            "User \"{user}\" cannot delete resource \"tasks\" in API group \"ringrift.ai\" in the namespace \"research\""
        )),
        "{refused}"
    );
    let secrets = Api::<Secret>::namespaced(as_agent, NAMESPACE)
        .list(&kube::api::ListParams::default())
        .await;
    assert!(
        secrets
            .as_ref()
            .is_err_and(|e| e.to_string().contains("forbidden")),
        "{secrets:?}"
    );
}

/// Every call the components made was allowed, and every grant was used (or is listed in
/// [`GRANTED_UNUSED`] or [`GRANTED_SOMETIMES`] with its reason).
fn check_rbac(s: &Setup) {
    let log = audit(&std::fs::read_to_string(&s.audit).unwrap());
    for (component, sa) in [("controller", &s.controller_sa), ("agent", &s.agent_sa)] {
        let user = format!("system:serviceaccount:{NAMESPACE}:{sa}");
        // The test's own calls as the agent (refused on purpose) share its token, so they are
        // told apart by what they asked: the calls in PROBES, which the agent never makes.
        let made: Vec<_> = log
            .iter()
            .filter(|a| a.user == user && !PROBES.contains(&(a.call.0.as_str(), a.call.2.as_str())))
            .collect();
        assert!(made.len() > 20, "{component} made calls: {}", made.len());
        let refused: BTreeSet<(Call, Option<String>)> = made
            .iter()
            .filter(|a| a.code == 403)
            .map(|a| (a.call.clone(), a.namespace.clone()))
            .collect();
        assert!(
            refused.is_empty(),
            "the chart's RBAC refused calls of the {component}: {refused:#?}"
        );
        let calls: BTreeSet<Call> = made.iter().map(|a| a.call.clone()).collect();
        let granted = granted(&s.objects, sa);
        let listed: BTreeSet<Call> = GRANTED_UNUSED
            .iter()
            .filter(|(c, ..)| *c == component)
            .map(|(_, v, g, r, _)| ((*v).to_owned(), (*g).to_owned(), (*r).to_owned()))
            .collect();
        // The list of exceptions stays true: each is granted and was not used (once a run uses
        // one, it leaves the list).
        for call in &listed {
            assert!(
                granted.contains(call),
                "{component}: {call:?} in GRANTED_UNUSED is granted"
            );
        }
        let sometimes: BTreeSet<Call> = GRANTED_SOMETIMES
            .iter()
            .filter(|(c, ..)| *c == component)
            .map(|(_, v, g, r, _)| ((*v).to_owned(), (*g).to_owned(), (*r).to_owned()))
            .collect();
        assert!(
            sometimes.iter().all(|c| granted.contains(c)),
            "{component}: {sometimes:?} granted"
        );
        let unused: Vec<&Call> = granted
            .iter()
            .filter(|c| !calls.contains(*c) && !listed.contains(*c) && !sometimes.contains(*c))
            .collect();
        assert!(
            unused.is_empty(),
            "the chart grants the {component} calls it never made: {unused:#?}\nmade: {calls:#?}"
        );
        // Nothing outside the grants got through (RBAC enforced it; this says so plainly).
        let ungranted: Vec<&Call> = calls.iter().filter(|c| !granted.contains(*c)).collect();
        assert!(ungranted.is_empty(), "{component}: {ungranted:#?}");
        let stale: Vec<&Call> = listed.iter().filter(|c| calls.contains(*c)).collect();
        assert!(
            stale.is_empty(),
            "{component} used {stale:?}: take it off GRANTED_UNUSED"
        );
    }
}
