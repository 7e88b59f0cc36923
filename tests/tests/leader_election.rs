//! Leader election against the real API server, with short timings (lease 2 s, renew deadline
//! 1 s, retry 200 ms): one leader at a time, a graceful hand-over that does not wait for
//! expiry, a takeover only after a crashed leader's lease expires, and a leader that cannot
//! renew stepping down (DESIGN.md section 5).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use ringrift_controller::leader::{ElectionError, Elector, Timing};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TIMING: Timing = Timing {
    lease_duration: Duration::from_secs(2),
    renew_deadline: Duration::from_secs(1),
    retry_period: Duration::from_millis(200),
};

async fn client(server: &ApiServerProcess) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

struct Replica {
    leading: watch::Receiver<bool>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ElectionError>>,
}

fn replica(client: &Client, identity: &str) -> Replica {
    let elector = Elector::new(client.clone(), "default", "ringrift-controller", identity, TIMING).unwrap();
    let (tx, leading) = watch::channel(false);
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(tx, stop.clone()));
    Replica { leading, stop, task }
}

/// Waits until `replica` leads, checking that `other` never leads at the same moment.
async fn until_leading(replica: &Replica, other: Option<&Replica>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(other) = other {
            assert!(
                !(*replica.leading.borrow() && *other.leading.borrow()),
                "two leaders at once"
            );
        }
        if *replica.leading.borrow() {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "no leadership within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    leases
        .get("ringrift-controller")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_graceful_hand_over_without_waiting_for_expiry() {
    let dir = Scratch::new("leader-handover").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let client = client(&server).await;
    let mut a = replica(&client, "a");
    until_leading(&a, None, Duration::from_secs(10)).await;
    let b = replica(&client, "b");
    // B stands by while A renews.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert!(
            *a.leading.borrow() && !*b.leading.borrow(),
            "A leads, B stands by"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holder(&client).await.as_deref(), Some("a"));
    // SIGTERM-like: A releases; B takes over at its next retry, well before the 2 s expiry.
    a.stop.cancel();
    (&mut a.task).await.unwrap().unwrap();
    assert!(!*a.leading.borrow());
    let took = until_leading(&b, Some(&a), Duration::from_secs(10)).await;
    assert!(took < TIMING.lease_duration, "hand-over took {took:?}");
    assert_eq!(holder(&client).await.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_only_after_its_lease_expires() {
    let dir = Scratch::new("leader-crash").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let client = client(&server).await;
    let a = replica(&client, "a");
    until_leading(&a, None, Duration::from_secs(10)).await;
    let b = replica(&client, "b");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A crash: no release, no more renewals.
    a.task.abort();
    let took = until_leading(&b, None, Duration::from_secs(10)).await;
    let earliest = TIMING.lease_duration.saturating_sub(2 * TIMING.retry_period);
    assert!(
        took >= earliest,
        "B took over after {took:?}, before the lease could expire"
    );
    assert!(
        took <= TIMING.lease_duration + 3 * TIMING.retry_period,
        "B took over after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_steps_down_within_the_renew_deadline() {
    let dir = Scratch::new("leader-lost").unwrap();
    let mut server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let client = client(&server).await;
    let a = replica(&client, "a");
    until_leading(&a, None, Duration::from_secs(10)).await;
    server.kill();
    let killed = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), a.task)
        .await
        .unwrap()
        .unwrap();
    let after = killed.elapsed();
    assert!(matches!(result, Err(ElectionError::Lost { .. })), "{result:?}");
    assert!(!*a.leading.borrow(), "no longer leading once it returns");
    assert!(
        after <= TIMING.renew_deadline + 3 * TIMING.retry_period,
        "stepped down after {after:?}"
    );
}
