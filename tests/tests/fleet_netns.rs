//! The fleet across separate network stacks: `ringrift server` on one host and three GPU boxes
//! that `ringrift join` it, each host a network namespace on a shaped bridge, one box behind
//! NAT (it dials out; nobody can dial in). The controller finds the NAT'd box unreachable, the
//! box pushes its outputs to a reachable one before its tasks count, and the sample loop runs
//! to Succeeded. Then a box is unplugged in the middle of a generation (every process killed,
//! its namespace gone): its running work is rescheduled, nothing is counted twice, and the
//! loop goes on to Succeeded.
//!
//! Runs as root (CI does), with `ip`, `tc` and `nft` (`scripts/install-tools.sh`).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use ringrift::netns::{Host, Net, Plan};
use ringrift_crds::agent::Agent;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_crds::training_loop::{LoopPhase, TrainingLoop};
use ringrift_e2e::cluster::until;
use ringrift_e2e::process::{Scratch, ringrift_bin};
use ringrift_e2e::role::RoleProcess;

const SUBNET: u8 = 71;

/// The fleet test and the bench each use the machine's two cores to the full: one at a time,
/// so neither's timing (a box caught mid-task) depends on the other.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The sample loop, its selfplay `games` in tasks of `per_task` at `simulations` per move.
fn sample_loop(name: &str, generations: u32, games: u32, per_task: u32, simulations: u32) -> TrainingLoop {
    serde_saphyr::from_str(&format!(
        r"
apiVersion: ringrift.ai/v1alpha1
kind: TrainingLoop
metadata: {{name: {name}, namespace: default}}
spec:
  game: {{board: connect4, players: 2}}
  maxGenerations: {generations}
  selfplay: {{games: {games}, gamesPerTask: {per_task}, simulations: {simulations}, resources: {{cpuMillis: 100, memoryMiB: 64}}}}
  training:
    window: {{games: {games}}}
    hyperparameters: {{steps: 100, batchSize: 32}}
    resources: {{cpuMillis: 100, memoryMiB: 64}}
  gauntlet:
    opponents: [{{name: random, baseline: random}}]
    gamesPerOpponent: 10
    gamesPerTask: 5
    simulations: 16
    promotion: {{winRate: {{minWinRate: 0.5, minGames: 10}}}}
    resources: {{cpuMillis: 100, memoryMiB: 64}}
"
    ))
    .unwrap()
}

/// The server's administrator kubeconfig, reached at the head host's address.
async fn admin(dir: &Path, head: &Host) -> Client {
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig")).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.cluster_url = format!("https://{}:6443", head.addr).parse().unwrap();
    Client::try_from(config).unwrap()
}

fn condition(agent: &Agent, type_: &str) -> Option<String> {
    agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.clone())
}

/// `ringrift join` on `host`, listening and advertising on its own address.
fn join(scratch: &Path, host: &Host, join_line: &str) -> RoleProcess {
    let mut args: Vec<String> = join_line.split_whitespace().map(String::from).collect();
    assert_eq!(args.first().map(String::as_str), Some("ringrift"), "{join_line}");
    args.remove(0);
    let data = scratch.join(&host.name);
    args.extend(
        [
            "--name",
            &host.name,
            "--data-dir",
            &data.display().to_string(),
            "--listen",
            &format!("{}:8770", host.addr),
            "--advertise",
            &format!("https://{}:8770", host.addr),
            "--gossip-listen",
            &format!("{}:7946", host.addr),
            "--simulate-gpus",
            "1xT4-16GB",
            "--heartbeat",
            "1s",
            "--heartbeat-lease",
            "5s",
        ]
        .map(String::from),
    );
    RoleProcess::start_program(
        scratch,
        &host.name,
        Path::new("ip"),
        &host.wrap(&ringrift_bin().unwrap().display().to_string(), &args),
        &format!("ringrift agent {}: REST on", host.name),
        &[("RINGRIFT_LOG".into(), "info".into())],
        &[],
    )
    .unwrap()
}

async fn loop_succeeded(loops: &Api<TrainingLoop>, name: &str, within: Duration) {
    until(&format!("TrainingLoop {name} Succeeded"), within, || async {
        let l = loops.get(name).await.ok()?;
        (l.status.as_ref().map(|s| s.phase) == Some(LoopPhase::Succeeded)).then_some(())
    })
    .await;
}

fn selfplay_units_counted_once(jobs: &[SelfplayJob], tasks: &[Task]) {
    for job in jobs {
        let name = job.metadata.name.clone().unwrap();
        let status = job.status.clone().unwrap_or_default();
        assert_eq!(status.games_done, status.games_total, "{name}: {status:?}");
        let mut units: Vec<&str> = status.outputs.iter().map(|a| a.name.as_str()).collect();
        let outputs = units.len();
        units.sort_unstable();
        units.dedup();
        assert_eq!(units.len(), outputs, "{name}: an output recorded twice");
        let succeeded: Vec<&Task> = tasks
            .iter()
            .filter(|t| {
                t.spec.job.name == name && t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Succeeded)
            })
            .collect();
        let mut done_units: Vec<&str> = succeeded.iter().map(|t| t.spec.work_unit.as_str()).collect();
        done_units.sort_unstable();
        let before = done_units.len();
        done_units.dedup();
        assert_eq!(before, done_units.len(), "{name}: a work unit succeeded twice");
    }
}

/// `ringrift logs` run on the head host with the administrator's kubeconfig: through the
/// API server, which passes the log from the box over the box's own connection.
fn logs_through_server(head: &Host, dir: &Path, task: &str, follow: bool) -> std::process::Output {
    let mut command = head.command(&ringrift_bin().unwrap().display().to_string());
    command
        .args(["logs", task, "--tail", "20", "--kubeconfig"])
        .arg(dir.join("kubeconfig"))
        .env_remove("RINGRIFT_TOKEN_FILE");
    if follow {
        command.arg("--follow");
    }
    command.output().unwrap()
}

/// A running task of the NAT'd box followed through the server: its log until it ends.
async fn follow_a_natd_task(tasks: &Api<Task>, head: &Host, dir: &Path) {
    let running = until(
        "a task running on the NAT'd box",
        Duration::from_secs(120),
        || async {
            let list = tasks.list(&ListParams::default()).await.ok()?.items;
            list.into_iter().find(|t| {
                t.spec.agent.as_deref() == Some("gpu3")
                    && t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Running)
            })
        },
    )
    .await;
    let name = running.metadata.name.clone().unwrap();
    let out = logs_through_server(head, dir, &name, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ended = tasks.get(&name).await.unwrap();
    assert!(
        ended
            .status
            .as_ref()
            .is_some_and(|s| s.phase != TaskPhase::Running),
        "the follow ended before the task: {:?}",
        ended.status
    );
}

/// Every box Ready; reachable where peers can connect, the NAT'd one found unreachable.
async fn reachability_settles(agents: &Api<Agent>) {
    until(
        "every box Ready, gpu3 found unreachable",
        Duration::from_secs(90),
        || async {
            let list = agents.list(&ListParams::default()).await.ok()?.items;
            let says = |n: &str, t: &str| {
                list.iter()
                    .find(|a| a.metadata.name.as_deref() == Some(n))
                    .and_then(|a| condition(a, t))
            };
            let all_ready = ["gpu1", "gpu2", "gpu3"]
                .iter()
                .all(|n| says(n, "Ready").as_deref() == Some("True"));
            (all_ready
                && says("gpu1", "Reachable").as_deref() == Some("True")
                && says("gpu2", "Reachable").as_deref() == Some("True")
                && says("gpu3", "Reachable").as_deref() == Some("False"))
            .then_some(())
        },
    )
    .await;
}

/// The NAT'd box did work, and every output it made is also held by a reachable box; returns
/// the name of one of its tasks.
async fn natd_outputs_are_held_by_reachable_boxes(tasks: &Api<Task>) -> String {
    let all = tasks.list(&ListParams::default()).await.unwrap().items;
    let on_nat: Vec<&Task> = all
        .iter()
        .filter(|t| {
            t.spec.agent.as_deref() == Some("gpu3")
                && t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Succeeded)
        })
        .collect();
    assert!(!on_nat.is_empty(), "no task succeeded on the NAT'd box");
    for t in &on_nat {
        for output in &t.status.as_ref().unwrap().outputs {
            assert!(
                output.holders.iter().any(|h| h == "gpu1" || h == "gpu2"),
                "{} of {:?} is held only by {:?}",
                output.name,
                t.metadata.name,
                output.holders
            );
        }
    }
    on_nat[0].metadata.name.clone().unwrap()
}

/// Whether `host` can be unplugged now without losing anything of the second loop: it made
/// nothing of it yet, holds no output nobody reachable else holds, and runs one of its
/// selfplay tasks (returned).
fn victim_on(list: &[Task], host: &str) -> Option<Task> {
    let second = |t: &&Task| t.spec.job.name.starts_with("second-");
    let on_host = |t: &&Task| t.spec.agent.as_deref() == Some(host);
    let phase = |t: &Task| t.status.as_ref().map(|s| s.phase);
    let made_something = list
        .iter()
        .filter(second)
        .filter(on_host)
        .any(|t| phase(t) == Some(TaskPhase::Succeeded));
    let only_copy = list
        .iter()
        .filter(second)
        .filter_map(|t| t.status.as_ref())
        .flat_map(|s| &s.outputs)
        .any(|o| o.holders.iter().all(|h| h == host || h == "gpu3"));
    let running =
        list.iter().filter(second).filter(on_host).find(|t| {
            t.spec.role == ringrift_crds::task::Role::Selfplay && phase(t) == Some(TaskPhase::Running)
        });
    (!made_something && !only_copy)
        .then_some(running)
        .flatten()
        .cloned()
}

/// Unplugs a reachable box while it runs a selfplay task of the second loop, before it made
/// anything of that loop: the box is frozen (SIGSTOP) first, the state checked again once
/// nothing it sent can still be arriving, and only then killed (else thawed, and another moment
/// taken). Returns the task it was running.
async fn unplug_mid_task(net: &mut Net, tasks: &Api<Task>) -> Task {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no moment to unplug a box running a selfplay task of the second loop"
        );
        let list = tasks.list(&ListParams::default()).await.unwrap().items;
        let Some(host) = ["gpu1", "gpu2"]
            .into_iter()
            .find(|h| victim_on(&list, h).is_some())
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        net.signal_host(host, "STOP");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let list = tasks.list(&ListParams::default()).await.unwrap().items;
        if let Some(victim) = victim_on(&list, host) {
            net.kill_host(host);
            return victim;
        }
        net.signal_host(host, "CONT");
    }
}

// The lock is held by whole tests on their own runtimes and threads, never by two tasks of one.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_three_joined_hosts_one_behind_nat_run_the_loop_and_survive_losing_a_host() {
    assert!(
        ringrift::netns::is_root(),
        "this test builds network namespaces and needs root (CI runs as root)"
    );
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = Scratch::new("fleet-netns").unwrap();
    let mut net = Net::build(
        "rrfn",
        SUBNET,
        &[
            Plan {
                name: "head",
                nat: false,
            },
            Plan {
                name: "gpu1",
                nat: false,
            },
            Plan {
                name: "gpu2",
                nat: false,
            },
            Plan {
                name: "gpu3",
                nat: true,
            },
        ],
        "1gbit",
    )
    .unwrap();
    let head = net.host("head").unwrap().clone();
    let dir = scratch.0.join("server");
    let server_args: Vec<String> = [
        "server",
        "--dir",
        &dir.display().to_string(),
        "--advertise",
        &head.addr,
    ]
    .map(String::from)
    .to_vec();
    let server = RoleProcess::start_program(
        &scratch.0,
        "server",
        Path::new("ip"),
        &head.wrap(&ringrift_bin().unwrap().display().to_string(), &server_args),
        "  ringrift join https://",
        &[("RINGRIFT_LOG".into(), "info,ringrift_controller=debug".into())],
        &[],
    )
    .unwrap();
    let join_line = server.announced.trim().to_owned();
    assert!(
        join_line.contains(&format!("https://{}:6443", head.addr)),
        "{join_line}"
    );

    let boxes: Vec<RoleProcess> = ["gpu1", "gpu2", "gpu3"]
        .iter()
        .map(|n| join(&scratch.0, net.host(n).unwrap(), &join_line))
        .collect();
    let client = admin(&dir, &head).await;
    let agents: Api<Agent> = Api::all(client.clone());
    reachability_settles(&agents).await;

    let loops: Api<TrainingLoop> = Api::namespaced(client.clone(), "default");
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    loops
        .create(&PostParams::default(), &sample_loop("first", 1, 60, 20, 16))
        .await
        .unwrap();
    loop_succeeded(&loops, "first", Duration::from_secs(600)).await;
    let natd_task = natd_outputs_are_held_by_reachable_boxes(&tasks).await;
    // Its logs are readable through the server, though nobody can connect to it.
    let out = logs_through_server(&head, &dir, &natd_task, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("@ringrift"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A second loop, with selfplay tasks of seconds; a reachable box unplugged while it runs
    // one, before it holds the only reachable copy of anything this loop made.
    loops
        .create(&PostParams::default(), &sample_loop("second", 2, 300, 100, 100))
        .await
        .unwrap();
    let victim = unplug_mid_task(&mut net, &tasks).await;
    let host = victim.spec.agent.clone().unwrap();
    let unit = victim.spec.work_unit.clone();
    let job = victim.spec.job.name.clone();
    // Its work unit runs again elsewhere.
    until(
        "the unplugged box's work unit rescheduled",
        Duration::from_secs(120),
        || async {
            let list = tasks.list(&ListParams::default()).await.ok()?.items;
            list.iter()
                .any(|t| {
                    t.spec.job.name == job
                        && t.spec.work_unit == unit
                        && t.spec.attempt > victim.spec.attempt
                        && t.spec.agent.as_deref() != Some(host.as_str())
                })
                .then_some(())
        },
    )
    .await;
    follow_a_natd_task(&tasks, &head, &dir).await;
    loop_succeeded(&loops, "second", Duration::from_secs(600)).await;
    let all = tasks.list(&ListParams::default()).await.unwrap().items;
    let jobs = Api::<SelfplayJob>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    selfplay_units_counted_once(&jobs, &all);
    drop(boxes);
    drop(server);
    drop(net);
    // Nothing left behind: no namespace or link with the prefix.
    let left = ringrift::netns::run("ip", &["netns", "list"]).unwrap();
    assert!(!left.contains("rrfn"), "{left}");
}

/// A TCP answer from `host`'s port 9000: the address the connection came from.
fn listen_once(host: &Host) -> std::process::Child {
    host.command("python3")
        .args([
            "-c",
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',9000))\ns.listen()\nprint('listening',flush=True)\n\
             c,a=s.accept()\nc.sendall(a[0].encode())\nc.close()",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// What `from` reads from `to`'s port 9000, or why it could not connect.
fn connect(from: &Host, to: &str) -> Result<String, String> {
    let out = from
        .command("python3")
        .args([
            "-c",
            "import socket,sys\ns=socket.create_connection((sys.argv[1],9000),timeout=3)\nprint(s.recv(64).decode())",
            to,
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn wait_listening(child: &mut std::process::Child) {
    use std::io::BufRead as _;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening");
}

#[test]
fn the_harness_joins_hosts_on_a_shaped_bridge_and_lets_a_natd_host_only_dial_out() {
    assert!(
        ringrift::netns::is_root(),
        "this test builds network namespaces and needs root"
    );
    let mut net = Net::build(
        "rrnh",
        SUBNET + 1,
        &[
            Plan {
                name: "a",
                nat: false,
            },
            Plan {
                name: "b",
                nat: false,
            },
            Plan { name: "n", nat: true },
        ],
        "100mbit",
    )
    .unwrap();
    let (a, b, n) = (
        net.host("a").unwrap().clone(),
        net.host("b").unwrap().clone(),
        net.host("n").unwrap().clone(),
    );
    assert!(
        a.addr.starts_with("198.18.") && n.addr.starts_with("198.19."),
        "{a:?} {n:?}"
    );
    // Each link is shaped at both ends.
    let qdisc = ringrift::netns::run(
        "ip",
        &["netns", "exec", &a.netns, "tc", "qdisc", "show", "dev", "eth0"],
    )
    .unwrap();
    assert!(qdisc.contains("tbf") && qdisc.contains("100Mbit"), "{qdisc}");
    // Bridged hosts reach each other directly.
    let mut server = listen_once(&b);
    wait_listening(&mut server);
    assert_eq!(connect(&a, &b.addr).unwrap(), a.addr);
    server.wait().unwrap();
    // The NAT'd host dials out, seen as its router's address...
    let mut server = listen_once(&b);
    wait_listening(&mut server);
    let seen = connect(&n, &b.addr).unwrap();
    assert!(seen.starts_with("198.18.") && seen != n.addr, "{seen}");
    server.wait().unwrap();
    // ...and nobody dials in.
    let mut server = listen_once(&n);
    wait_listening(&mut server);
    let refused = connect(&a, &n.addr).unwrap_err();
    assert!(
        refused.contains("unreachable") || refused.contains("timed out"),
        "{refused}"
    );
    let _ = server.kill();
    let _ = server.wait();
    // An unplugged host is gone with its processes; the rest is removed on drop.
    net.kill_host("b");
    assert!(connect(&a, &b.addr).is_err());
    drop(net);
    let left = ringrift::netns::run("ip", &["netns", "list"]).unwrap();
    assert!(!left.contains("rrnh"), "{left}");
    let links = ringrift::netns::run("ip", &["-o", "link", "show"]).unwrap();
    assert!(!links.contains("rrnhu"), "{links}");
}

#[test]
fn bench_wan_reports_its_figures_under_the_names_others_read() {
    assert!(
        ringrift::netns::is_root(),
        "this test builds network namespaces and needs root"
    );
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Tiny sizes: the figures' names and sense, not their values.
    let out = std::process::Command::new(ringrift_bin().unwrap())
        .args([
            "bench",
            "wan",
            "--size-mib",
            "8",
            "--spread-mib",
            "4",
            "--hosts",
            "2",
            "--rounds",
            "1",
            "--rate",
            "200mbit",
            "--spread-rate",
            "100mbit",
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
    for pointer in [
        "/transfer/link_utilization",
        "/transfer/vs_rsync",
        "/spread/vs_one_transfer",
        "/spread/sequential_s",
        "/spread/cpu_busy_fraction",
        "/join_to_ready_s/median",
    ] {
        let v = report.pointer(pointer).and_then(serde_json::Value::as_f64);
        assert!(v.is_some_and(|v| v > 0.0), "{pointer} in {report}");
    }
    assert_eq!(report["links"]["rate"], "200mbit");
    assert_eq!(report["links"]["delay_ms"], 0);
    // Its namespaces are gone.
    let left = ringrift::netns::run("ip", &["netns", "list"]).unwrap();
    assert!(!left.contains("rrbw") && !left.contains("rrbs"), "{left}");
}
