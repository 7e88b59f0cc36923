//! The elector against an in-memory Lease API, on tokio's paused clock: lease expiry, renew
//! deadlines and hand-overs are checked to the retry period without waiting for them. (The
//! same behaviour against the real API server, in real time: `tests/tests/leader_election.rs`.)

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::*;

const TIMING: Timing = Timing {
    lease_duration: Duration::from_secs(15),
    renew_deadline: Duration::from_secs(10),
    retry_period: Duration::from_secs(2),
};

/// One Lease, as the API server keeps it: resourceVersion preconditions on updates, 409 on
/// conflicts, 404 when absent. `down` makes every request fail (503), as an outage would.
#[derive(Default)]
struct FakeApi {
    lease: Mutex<Option<serde_json::Value>>,
    version: AtomicU64,
    down: AtomicBool,
    writes: AtomicU64,
}

fn reply(code: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
}

fn status(code: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                "message": reason, "code": code.as_u16()}),
    )
}

impl FakeApi {
    async fn handle(&self, request: Request<kube::client::Body>) -> Response<Full<Bytes>> {
        if self.down.load(Ordering::SeqCst) {
            return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable");
        }
        let method = request.method().clone();
        let body = request
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut lease = self.lease.lock().unwrap();
        match method {
            Method::GET => match &*lease {
                Some(l) => reply(StatusCode::OK, l),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::POST if lease.is_some() => status(StatusCode::CONFLICT, "AlreadyExists"),
            Method::POST | Method::PUT => {
                let current = lease.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
                if method == Method::PUT && current != Some(sent["metadata"]["resourceVersion"].clone()) {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                let mut stored = sent;
                stored["metadata"]["resourceVersion"] = json!(version.to_string());
                stored["apiVersion"] = json!("coordination.k8s.io/v1");
                stored["kind"] = json!("Lease");
                *lease = Some(stored.clone());
                self.writes.fetch_add(1, Ordering::SeqCst);
                reply(
                    if method == Method::POST {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    &stored,
                )
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }

    fn holder(&self) -> Option<String> {
        let lease = self.lease.lock().unwrap();
        lease.as_ref()?["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_owned)
    }
}

fn client(api: &Arc<FakeApi>) -> Client {
    let api = Arc::clone(api);
    let service = tower::service_fn(move |request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(api.handle(request).await) }
    });
    Client::new(service, "default")
}

struct Replica {
    leading: watch::Receiver<bool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ElectionError>>,
}

fn replica(api: &Arc<FakeApi>, identity: &str) -> Replica {
    let elector = Elector::new(client(api), "default", "ringrift-controller", identity, TIMING).unwrap();
    let (tx, leading) = watch::channel(false);
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(tx, stop.clone()));
    Replica { leading, stop, task }
}

/// Waits (on the paused clock) until `replica` leads; how long that took.
async fn until_leading(replica: &mut Replica) -> Duration {
    let started = tokio::time::Instant::now();
    replica.leading.wait_for(|l| *l).await.unwrap();
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_a_lease_duration_after_its_last_renewal() {
    let api = Arc::new(FakeApi::default());
    let mut a = replica(&api, "a");
    assert_eq!(until_leading(&mut a).await, Duration::ZERO);
    let mut b = replica(&api, "b");
    // Renewals go by while b stands by.
    tokio::time::sleep(TIMING.lease_duration * 2).await;
    assert!(!*b.leading.borrow(), "b must not lead while a renews");
    assert_eq!(api.holder().as_deref(), Some("a"));
    // A crash: no release, no more renewals.
    a.task.abort();
    let took = until_leading(&mut b).await;
    assert!(
        took >= TIMING.lease_duration.saturating_sub(TIMING.retry_period)
            && took <= TIMING.lease_duration + TIMING.retry_period,
        "b took over after {took:?}"
    );
    assert_eq!(api.holder().as_deref(), Some("b"));
    b.stop.cancel();
    b.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stopped_leader_releases_and_its_standby_takes_over_at_its_next_retry() {
    let api = Arc::new(FakeApi::default());
    let mut a = replica(&api, "a");
    until_leading(&mut a).await;
    let mut b = replica(&api, "b");
    tokio::time::sleep(TIMING.retry_period * 3).await;
    a.stop.cancel();
    a.task.await.unwrap().unwrap();
    assert!(!*a.leading.borrow());
    assert_eq!(api.holder(), None, "released on stop");
    let took = until_leading(&mut b).await;
    assert!(took <= TIMING.retry_period, "hand-over took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_at_the_renew_deadline() {
    let api = Arc::new(FakeApi::default());
    let mut a = replica(&api, "a");
    until_leading(&mut a).await;
    let writes = api.writes.load(Ordering::SeqCst);
    tokio::time::sleep(TIMING.retry_period * 2).await;
    assert!(
        api.writes.load(Ordering::SeqCst) > writes,
        "renews every retry period"
    );
    api.down.store(true, Ordering::SeqCst);
    let outage = tokio::time::Instant::now();
    let ended = a.task.await.unwrap();
    let after = outage.elapsed();
    assert!(matches!(ended, Err(ElectionError::Lost { .. })), "{ended:?}");
    assert!(!*a.leading.borrow(), "no longer leading once lost");
    assert!(
        after >= TIMING.renew_deadline.saturating_sub(TIMING.retry_period)
            && after <= TIMING.renew_deadline + TIMING.retry_period,
        "stepped down after {after:?}"
    );
    // Steps down before the Lease can expire for a standby: never two leaders.
    assert!(after < TIMING.lease_duration);
}

#[tokio::test(start_paused = true)]
async fn of_two_candidates_for_a_missing_lease_exactly_one_leads() {
    let api = Arc::new(FakeApi::default());
    let (mut a, mut b) = (replica(&api, "a"), replica(&api, "b"));
    tokio::time::sleep(TIMING.lease_duration * 2).await;
    let leaders = [*a.leading.borrow_and_update(), *b.leading.borrow_and_update()];
    assert_eq!(leaders.iter().filter(|l| **l).count(), 1, "{leaders:?}");
    let holder = api.holder().unwrap();
    assert_eq!(leaders[0], holder == "a");
}
