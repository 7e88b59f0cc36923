//! A pass's new Tasks, created without the pass waiting for them. The pass sends each create
//! off and goes on (its statuses, the next pass); until the API server answers, the Task as sent
//! is laid over the cache like one already created, so the next pass neither places its unit
//! again nor gives its GPUs to another. The answers are taken at the start of the next pass: a
//! created Task moves to the overlay of this replica's writes, a refused one is forgotten (its
//! unit waits again) and counts against its job as any failed write does.
//!
//! A pass that waited for its creates kept a freed GPU idle for as long as the slowest of them:
//! completions come in bursts, and a pass placing hundreds of tasks spent most of its time
//! awaiting them while the next burst's GPUs waited for the next pass.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use ringrift_crds::task::{CancelReason, Role, Task};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use super::overlay::key;
use super::writer::{ApplyError, Fence, Writer};

/// The job a create is for, to record its answer against.
#[derive(Debug, Clone)]
pub(super) struct ForJob {
    /// The job's key (`Kind/namespace/name`), for its backoff.
    pub(super) key: String,
    /// Its kind, for the metrics.
    pub(super) kind: String,
    /// The job, for its events.
    pub(super) reference: ObjectReference,
}

/// The API server's answer to one create.
#[derive(Debug)]
pub(super) struct Answer {
    /// The job the task is for.
    pub(super) job: ForJob,
    /// Whether the task copies outputs (not a work unit's attempt).
    pub(super) copy: bool,
    /// The Task as created, or why not.
    pub(super) result: Result<Task, ApplyError>,
    /// The cancel of the task it displaces (preempted for it), sent once it was created.
    pub(super) displaced: Option<Result<Task, ApplyError>>,
    /// From the create sent off (waiting for a slot included) to its answer.
    pub(super) took: std::time::Duration,
}

/// Creates in flight and their answers.
#[derive(Debug)]
pub(super) struct Creates {
    /// The Tasks sent and not yet answered, by `namespace/name`.
    sent: HashMap<String, Arc<Task>>,
    /// Where the spawned creates put their answers, with the Task's `namespace/name`.
    outbox: mpsc::UnboundedSender<(String, Answer)>,
    inbox: mpsc::UnboundedReceiver<(String, Answer)>,
    /// Creates in flight at once, across passes.
    slots: Arc<Semaphore>,
    /// The creates sent off, to wait for when stopping.
    tracker: TaskTracker,
    /// Woken when an answer arrives (a refused create brings no watch event).
    wake: Option<Arc<Notify>>,
}

impl Creates {
    /// At most `concurrency` creates in flight at once.
    pub(super) fn new(concurrency: usize) -> Self {
        let (outbox, inbox) = mpsc::unbounded_channel();
        Self {
            sent: HashMap::new(),
            outbox,
            inbox,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            tracker: TaskTracker::new(),
            wake: None,
        }
    }

    /// Wakes `notify` whenever an answer arrives.
    pub(super) fn wake(&mut self, notify: Arc<Notify>) {
        self.wake = Some(notify);
    }

    /// Sends the create of `task` off; its answer comes with [`Creates::answers`]. Nothing is
    /// sent once [`Creates::settle`] has run.
    ///
    /// `displacing` (`namespace/name`) is a task preempted for this one, which it follows
    /// (`spec.startAfter`): it is cancelled once this one exists, so its GPUs pass straight
    /// to it; were it cancelled with the create only sent, its GPUs would stand idle for as
    /// long as the create waits behind the others. A create refused cancels nothing.
    pub(super) fn send(&mut self, writer: &Writer, task: Task, job: ForJob, displacing: Option<String>) {
        if self.tracker.is_closed() {
            return;
        }
        let name = key(&task);
        // Laid over the cache as the API server would store it: created now.
        let mut laid = task.clone();
        laid.metadata
            .creation_timestamp
            .get_or_insert(Time(jiff::Timestamp::now()));
        self.sent.insert(name.clone(), Arc::new(laid));
        let (writer, outbox, slots, wake) = (
            writer.clone(),
            self.outbox.clone(),
            self.slots.clone(),
            self.wake.clone(),
        );
        let sent = std::time::Instant::now();
        self.tracker.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let result = writer.create_task(&task).await;
            let displaced = match (&result, displacing) {
                (Ok(created), Some(victim)) => Some(displace(&writer, created, &victim).await),
                _ => None,
            };
            let copy = task.spec.role == Role::Copy;
            // A receiver gone is a replica that lost leadership: nobody wants the answer.
            let took = sent.elapsed();
            if outbox
                .send((
                    name,
                    Answer {
                        job,
                        copy,
                        result,
                        displaced,
                        took,
                    },
                ))
                .is_ok()
                && let Some(wake) = wake
            {
                wake.notify_one();
            }
        });
    }

    /// The answers that arrived since the last call; their Tasks are no longer laid over the
    /// cache from here (the caller records the created ones as its writes).
    pub(super) fn answers(&mut self) -> Vec<Answer> {
        let mut out = Vec::new();
        while let Ok((name, answer)) = self.inbox.try_recv() {
            self.sent.remove(&name);
            out.push(answer);
        }
        out
    }

    /// The Tasks sent and not yet answered that `seen`, the pass's view of the cache, lacks.
    /// The view and not the cache itself: the cache may have taken a Task in since the view was
    /// made, and a Task in neither would have its unit placed again.
    pub(super) fn unanswered(&self, seen: &[Arc<Task>]) -> Vec<Arc<Task>> {
        if self.sent.is_empty() {
            return Vec::new();
        }
        let mut missing: HashMap<(&str, &str), &Arc<Task>> = self
            .sent
            .values()
            .map(|t| {
                let m = &t.metadata;
                (
                    (
                        m.namespace.as_deref().unwrap_or_default(),
                        m.name.as_deref().unwrap_or_default(),
                    ),
                    t,
                )
            })
            .collect();
        for t in seen {
            let m = &t.metadata;
            missing.remove(&(
                m.namespace.as_deref().unwrap_or_default(),
                m.name.as_deref().unwrap_or_default(),
            ));
            if missing.is_empty() {
                break;
            }
        }
        missing.into_values().cloned().collect()
    }

    /// Creates sent and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        self.sent.len()
    }

    /// Waits, up to `patience`, for the creates sent off to be answered, and sends no more: a
    /// replica that stops lets no create of its own land after it released its Lease (the
    /// next leader would place the same units again).
    pub(super) async fn settle(&mut self, patience: std::time::Duration) {
        self.tracker.close();
        let _ = tokio::time::timeout(patience, self.tracker.wait()).await;
    }

    /// Forgets what was sent (leadership changed hands): answers still to come are dropped.
    pub(super) fn clear(&mut self) {
        self.sent.clear();
        let (outbox, inbox) = mpsc::unbounded_channel();
        self.outbox = outbox;
        self.inbox = inbox;
    }
}

/// Cancels `victim` (`namespace/name`), preempted for `created`, which follows it. Should
/// the cancel fail (other than for a victim already gone), `created` would wait for a task
/// that runs on: it is withdrawn too, and its unit is placed again by a later pass.
async fn displace(writer: &Writer, created: &Task, victim: &str) -> Result<Task, ApplyError> {
    let (ns, name) = victim.split_once('/').unwrap_or(("", victim));
    let cancelled = writer
        .fence(ns, name, Fence::Cancel(CancelReason::Preempted))
        .await;
    if let Err(e) = &cancelled
        && e.category() != "not_found"
    {
        let (ns, name) = (created.namespace().unwrap_or_default(), created.name_any());
        if let Err(e) = writer
            .fence(&ns, &name, Fence::Cancel(CancelReason::Preempted))
            .await
        {
            tracing::warn!(task = name, error = %e, "failed to withdraw a task whose victim runs on");
        }
    }
    cancelled
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper::{Request, Response, StatusCode};
    use kube::Client;
    use kube::client::Body;
    use tokio::sync::watch;

    use super::*;
    use crate::runtime::events::Recorder;

    fn task(name: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "job"},
                     "workUnit": "u0", "attempt": 0, "agent": "agent-a", "gpus": ["GPU-0"],
                     "resources": {"cpuMillis": 500, "memoryMiB": 256},
                     "template": {"command": ["x"]}}
        }))
        .expect("a valid Task")
    }

    fn job() -> ForJob {
        ForJob {
            key: "SelfplayJob/default/job".into(),
            kind: "SelfplayJob".into(),
            reference: ObjectReference::default(),
        }
    }

    /// A request's body (empty when it cannot be read).
    async fn body(request: Request<Body>) -> Bytes {
        request
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default()
    }

    /// A writer whose API server answers each create only when `release` lets one through,
    /// with the Task as sent plus a uid and a resourceVersion.
    fn writer(leading: bool, release: Arc<Semaphore>) -> Writer {
        let service = tower::service_fn(move |request: Request<Body>| {
            let release = Arc::clone(&release);
            async move {
                let body = body(request).await;
                if let Ok(permit) = release.acquire().await {
                    permit.forget();
                }
                let mut task: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                task["metadata"]["uid"] = "uid-1".into();
                task["metadata"]["resourceVersion"] = "7".into();
                let mut response = Response::new(Full::new(Bytes::from(task.to_string())));
                *response.status_mut() = StatusCode::CREATED;
                Ok::<_, Infallible>(response)
            }
        });
        let client = Client::new(service, "default");
        let recorder = Recorder::new(client.clone(), "test", "test-0");
        Writer::new(client, watch::channel(leading).1, recorder)
    }

    /// Creates (`concurrency` in flight) that wake the returned notify on each answer.
    fn creates(concurrency: usize) -> (Creates, Arc<Notify>) {
        let wake = Arc::new(Notify::new());
        let mut creates = Creates::new(concurrency);
        creates.wake(wake.clone());
        (creates, wake)
    }

    async fn answered(wake: &Notify) {
        tokio::time::timeout(Duration::from_secs(10), wake.notified())
            .await
            .expect("an answer within 10 s");
    }

    #[tokio::test]
    async fn a_task_sent_is_laid_over_the_cache_until_it_is_answered() {
        let release = Arc::new(Semaphore::new(0));
        let writer = writer(true, release.clone());
        let (mut creates, wake) = creates(4);
        creates.send(&writer, task("t1"), job(), None);
        assert_eq!(creates.in_flight(), 1);
        let laid = creates.unanswered(&[Arc::new(task("other"))]);
        assert_eq!(laid.len(), 1, "the next pass sees it as created");
        assert!(laid[0].metadata.creation_timestamp.is_some(), "created now");
        assert!(creates.answers().is_empty(), "not answered yet");
        // Once the pass's view of the cache holds it, that copy is what the pass reads.
        let mut stored = task("t1");
        stored.metadata.uid = Some("uid-1".into());
        assert!(creates.unanswered(&[Arc::new(stored)]).is_empty());
        let mut elsewhere = task("t1");
        elsewhere.metadata.namespace = Some("other".into());
        assert_eq!(
            creates.unanswered(&[Arc::new(elsewhere)]).len(),
            1,
            "a Task of the same name in another namespace is another Task"
        );

        release.add_permits(1);
        answered(&wake).await;
        let answers = creates.answers();
        assert_eq!(answers.len(), 1);
        let task = answers[0].result.as_ref().expect("created");
        assert_eq!(task.metadata.uid.as_deref(), Some("uid-1"));
        assert!(!answers[0].copy);
        assert_eq!(answers[0].job.key, "SelfplayJob/default/job");
        assert_eq!(creates.in_flight(), 0, "answered: no longer laid over the cache");
    }

    #[tokio::test]
    async fn a_refused_create_is_answered_with_its_error() {
        let writer = writer(false, Arc::new(Semaphore::new(100)));
        let (mut creates, wake) = creates(4);
        creates.send(&writer, task("t1"), job(), None);
        answered(&wake).await;
        let answers = creates.answers();
        assert_eq!(answers.len(), 1);
        let error = answers[0].result.as_ref().expect_err("refused");
        assert_eq!(error.category(), "not_leading");
        assert!(creates.unanswered(&[]).is_empty(), "its unit waits again");
    }

    /// A writer whose API server records each request (`METHOD path`) and answers creates
    /// with the Task sent, and patches of the task named `victim` with `victim_status`.
    fn recording(victim_status: StatusCode) -> (Writer, Arc<std::sync::Mutex<Vec<String>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let log = log.clone();
            async move {
                let line = format!("{} {}", request.method(), request.uri().path());
                log.lock().expect("log").push(line.clone());
                let body = body(request).await;
                let (status, answer) = if line.starts_with("POST") {
                    let mut t: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    t["metadata"]["uid"] = "uid-2".into();
                    (StatusCode::CREATED, t)
                } else if line.ends_with("/victim") && victim_status != StatusCode::OK {
                    let status = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "message": "no", "code": victim_status.as_u16()});
                    (victim_status, status)
                } else {
                    let name = line.rsplit('/').next().unwrap_or_default();
                    let mut t = serde_json::to_value(task(name)).unwrap_or_default();
                    t["spec"]["cancel"] = true.into();
                    (StatusCode::OK, t)
                };
                let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
        let client = Client::new(service, "default");
        let recorder = Recorder::new(client.clone(), "test", "test-0");
        (Writer::new(client, watch::channel(true).1, recorder), seen)
    }

    const TASKS: &str = "/apis/ringrift.ai/v1alpha1/namespaces/default/tasks";

    /// A task preempted for another is cancelled only once the other exists; a cancel that
    /// fails withdraws the new task, unless the victim is already gone.
    #[tokio::test]
    async fn a_victim_is_cancelled_once_the_task_that_displaces_it_is_created() {
        for (victim_status, withdrawn) in [
            (StatusCode::OK, false),
            (StatusCode::NOT_FOUND, false),
            (StatusCode::INTERNAL_SERVER_ERROR, true),
        ] {
            let (writer, seen) = recording(victim_status);
            let (mut creates, wake) = creates(4);
            creates.send(&writer, task("t1"), job(), Some("default/victim".into()));
            answered(&wake).await;
            let answers = creates.answers();
            assert!(answers[0].result.is_ok(), "{victim_status}");
            assert_eq!(
                answers[0].displaced.as_ref().map(Result::is_ok),
                Some(victim_status == StatusCode::OK)
            );
            let mut expected = vec![format!("POST {TASKS}"), format!("PATCH {TASKS}/victim")];
            if withdrawn {
                expected.push(format!("PATCH {TASKS}/t1"));
            }
            assert_eq!(*seen.lock().expect("log"), expected, "{victim_status}");
        }
        // A create refused cancels nothing.
        let writer = writer(false, Arc::new(Semaphore::new(100)));
        let (mut creates, wake) = creates(4);
        creates.send(&writer, task("t1"), job(), Some("default/victim".into()));
        answered(&wake).await;
        let answers = creates.answers();
        assert!(answers[0].result.is_err());
        assert!(answers[0].displaced.is_none());
    }

    #[tokio::test]
    async fn settling_waits_for_the_creates_in_flight_and_sends_no_more() {
        let release = Arc::new(Semaphore::new(0));
        let writer = writer(true, release.clone());
        let (mut creates, _) = creates(2);
        creates.send(&writer, task("t1"), job(), None);
        release.add_permits(1);
        creates.settle(Duration::from_secs(10)).await;
        assert_eq!(creates.answers().len(), 1, "answered before settle returned");
        creates.send(&writer, task("t2"), job(), None);
        assert_eq!(creates.in_flight(), 0, "nothing is sent after settling");
    }
}
