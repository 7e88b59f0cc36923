//! One reconcile pass over every job: observe (caches) → validate → plan (pure, per job) →
//! place (pure, all jobs at once, so priorities and preemption see the whole fleet) → apply →
//! status. Passes run on changes and on timers (backoff, deadlines, heartbeat expiry).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jiff::Timestamp;
use kube::{Resource, ResourceExt};
use ringrift_crds::agent::Agent;
use ringrift_crds::common::QueueStatus;
use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{JobKind, Task};
use ringrift_crds::training::TrainingJob;

use super::admin::Health;
use super::agents::{HEARTBEAT_LAPSED, heartbeat_expiry, lease_name, view};
use super::apply::{ApplyError, Fence, Writer};
use super::caches::{Caches, valid};
use super::jobs::{AnyJob, events};
use super::metrics::KindLabels;
use super::overlay::Overlay;
use super::world::Snapshot;
use crate::plan::placement::{self, Claim, Outcome, Request};
use crate::reconcile::objects;
use crate::reconcile::plan::{Backoff, Env, JobPlan, Verdict, plan_job};
use crate::reconcile::status::Blocked;
use crate::reconcile::view::{CancelReason, JobView, TaskView, default_priority};

/// How often the clock-driven fields (rate, ETA) of running jobs are refreshed.
const VOLATILE_REFRESH: Duration = Duration::from_secs(5);

/// Tuning of the reconciler.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Retry backoff for failed work units.
    pub backoff: Backoff,
    /// Writes in flight at once.
    pub concurrency: usize,
}

/// One job in a pass.
struct Entry {
    job: AnyJob,
    view: Result<JobView, Blocked>,
    model: Option<String>,
    plan: Option<JobPlan>,
    queue: Option<QueueStatus>,
    placed: Vec<Task>,
    held_back: bool,
}

/// The reconciler's state between passes.
pub struct Reconciler {
    caches: Caches,
    writer: Writer,
    health: Arc<Health>,
    tuning: Tuning,
    tasks: Overlay<Task>,
    selfplay: Overlay<SelfplayJob>,
    training: Overlay<TrainingJob>,
    gauntlet: Overlay<GauntletJob>,
    /// Per job: transient failures in a row and when to try again.
    errors: HashMap<String, (u32, Instant)>,
    /// Per job: when its rate and ETA were last written.
    refreshed: HashMap<String, Instant>,
    reported: HashSet<String>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

fn merge_jobs<K: Clone + kube::Resource>(
    overlay: &mut Overlay<K>,
    cached: (Vec<K>, Vec<(String, String)>),
    invalid: &mut Vec<(String, String)>,
) -> Vec<K> {
    invalid.extend(cached.1);
    overlay.merge(cached.0)
}

impl Reconciler {
    /// A reconciler over these caches, writing through `writer`.
    pub fn new(caches: Caches, writer: Writer, health: Arc<Health>, tuning: Tuning) -> Self {
        Self {
            caches,
            writer,
            health,
            tuning,
            tasks: Overlay::for_created(Duration::from_secs(5)),
            selfplay: Overlay::for_updated(),
            training: Overlay::for_updated(),
            gauntlet: Overlay::for_updated(),
            errors: HashMap::new(),
            refreshed: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// Forgets this replica's own writes (call when leadership is gained or lost).
    pub fn reset(&mut self) {
        self.tasks.clear();
        self.selfplay.clear();
        self.training.clear();
        self.gauntlet.clear();
        self.errors.clear();
    }

    /// One pass. Returns how long until the next one is due if nothing changes.
    pub async fn pass(&mut self) -> Option<Duration> {
        let started = Instant::now();
        let now = Timestamp::now();
        let mut wake: Option<Duration> = None;
        let mut soon = |d: Duration| wake = Some(wake.map_or(d, |w: Duration| w.min(d)));

        // Observe.
        let mut invalid = Vec::new();
        let (tasks, bad) = valid(&self.caches.tasks);
        invalid.extend(bad);
        let tasks = self.tasks.merge(tasks);
        let (agents, bad) = valid(&self.caches.agents);
        invalid.extend(bad);
        let selfplay = merge_jobs(&mut self.selfplay, valid(&self.caches.selfplay), &mut invalid);
        let training = merge_jobs(&mut self.training, valid(&self.caches.training), &mut invalid);
        let gauntlet = merge_jobs(&mut self.gauntlet, valid(&self.caches.gauntlet), &mut invalid);
        let (models, bad) = valid(&self.caches.models);
        invalid.extend(bad);
        let (loops, _) = valid(&self.caches.loops);
        self.report_invalid(&invalid);
        let world = Snapshot::new(models, &loops, &selfplay);

        // Agents: heartbeats.
        let heartbeats = self.heartbeats(&agents, now);
        if let Some(d) = heartbeats.next_expiry {
            soon(d);
        }
        let Heartbeats {
            current,
            views: agent_views,
            writes: agent_writes,
            ..
        } = heartbeats;
        self.health
            .metrics
            .agents_ready
            .set(i64::try_from(current.len()).unwrap_or(i64::MAX));

        // Validate and plan each job.
        let mut by_job: HashMap<(JobKind, String, String), Vec<TaskView>> = HashMap::new();
        for t in &tasks {
            let key = (
                t.spec.job.kind,
                t.namespace().unwrap_or_default(),
                t.spec.job.name.clone(),
            );
            by_job.entry(key).or_default().push(TaskView::from_task(t));
        }
        let ready = |a: &str| current.contains(a);
        let env = Env {
            now,
            agent_ready: &ready,
            backoff: self.tuning.backoff,
        };
        let all_jobs = selfplay
            .into_iter()
            .map(AnyJob::Selfplay)
            .chain(training.into_iter().map(AnyJob::Training))
            .chain(gauntlet.into_iter().map(AnyJob::Gauntlet));
        let mut entries: Vec<Entry> = Vec::new();
        let mut priorities: HashMap<(JobKind, String, String), u32> = HashMap::new();
        for job in all_jobs.filter(|j| !j.deleting()) {
            let (view, model) = job.validate(&world);
            let key = (job.kind(), job.namespace(), job.name());
            let plan = view.as_ref().ok().map(|v| {
                priorities.insert(key.clone(), v.priority);
                plan_job(v, by_job.get(&key).map_or(&[][..], Vec::as_slice), &env)
            });
            if let Some(d) = plan.as_ref().and_then(|p| p.requeue_after) {
                soon(d);
            }
            let held_back = self
                .errors
                .get(&job.key())
                .is_some_and(|(_, at)| *at > Instant::now());
            self.health
                .metrics
                .reconciles
                .get_or_create(&KindLabels {
                    kind: format!("{:?}", job.kind()),
                })
                .inc();
            entries.push(Entry {
                job,
                view,
                model,
                plan,
                queue: None,
                placed: Vec::new(),
                held_back,
            });
        }

        let present: HashSet<String> = entries.iter().map(|e| e.job.key()).collect();
        self.refreshed.retain(|k, _| present.contains(k));
        self.errors
            .retain(|k, _| present.contains(k) || k.starts_with("Agent/"));

        // Place every waiting unit of every job at once.
        let victims = self.place(&mut entries, &tasks, &priorities, &agent_views);

        // Apply.
        self.apply(&mut entries, victims, agent_writes, now, &mut soon)
            .await;
        for (_, at) in self.errors.values() {
            soon(at.saturating_duration_since(Instant::now()));
        }
        self.health.metrics.pass.observe(started.elapsed().as_secs_f64());
        wake
    }

    fn report_invalid(&mut self, invalid: &[(String, String)]) {
        for (name, error) in invalid {
            if self.reported.insert(format!("{name}:{error}")) {
                tracing::warn!(object = name, error, "ignoring a malformed object");
                self.health.metrics.error("Object", "malformed");
            }
        }
    }

    /// Runs placement; fills each entry's `placed` tasks and queue status. Returns the tasks to
    /// preempt, as `namespace/name`.
    fn place(
        &self,
        entries: &mut [Entry],
        tasks: &[Task],
        priorities: &HashMap<(JobKind, String, String), u32>,
        agents: &[placement::AgentView],
    ) -> Vec<String> {
        let claims: Vec<Claim> = tasks
            .iter()
            .filter_map(|t| {
                let v = TaskView::from_task(t);
                let agent = v.agent.clone()?;
                v.is_live().then(|| {
                    let ns = t.namespace().unwrap_or_default();
                    let key = (t.spec.job.kind, ns.clone(), t.spec.job.name.clone());
                    Claim {
                        task: format!("{ns}/{}", v.name),
                        agent,
                        cpu_millis: u64::from(v.resources.cpu_millis),
                        memory_mib: v.resources.memory_mib,
                        gpus: v.gpus.clone(),
                        priority: priorities
                            .get(&key)
                            .copied()
                            .unwrap_or_else(|| default_priority(key.0)),
                        elastic: key.0 == JobKind::SelfplayJob,
                    }
                })
            })
            .collect();
        let mut requests = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let (Ok(view), Some(plan)) = (&e.view, &e.plan) else {
                continue;
            };
            if e.held_back {
                continue;
            }
            for (j, c) in plan.create.iter().enumerate() {
                requests.push(Request {
                    id: format!("{i}/{j}"),
                    priority: view.priority,
                    resources: view.resources.clone(),
                    elastic: view.kind == JobKind::SelfplayJob,
                    avoid: c.avoid.clone(),
                });
            }
        }
        let started = Instant::now();
        let outcomes = placement::place(agents, &claims, &requests);
        self.health
            .metrics
            .placement
            .observe(started.elapsed().as_secs_f64());
        let mut victims = Vec::new();
        let mut waiting = 0;
        for (id, outcome) in outcomes {
            let Some((i, j)) = id
                .split_once('/')
                .and_then(|(i, j)| Some((i.parse::<usize>().ok()?, j.parse::<usize>().ok()?)))
            else {
                continue;
            };
            let Some(entry) = entries.get_mut(i) else { continue };
            let (Ok(view), Some(plan)) = (&entry.view, &entry.plan) else {
                continue;
            };
            let Some(attempt) = plan.create.get(j) else {
                continue;
            };
            match outcome {
                Outcome::Place { agent, gpus } => {
                    entry.placed.push(objects::task(view, attempt, &agent, &gpus));
                }
                Outcome::Preempt {
                    agent,
                    gpus,
                    victims: v,
                } => {
                    victims.extend(v);
                    entry.placed.push(objects::task(view, attempt, &agent, &gpus));
                }
                Outcome::Wait { reason, position } => {
                    waiting += 1;
                    if entry.queue.as_ref().is_none_or(|q| position < q.position) {
                        entry.queue = Some(QueueStatus { position, reason });
                    }
                }
            }
        }
        self.health.metrics.queue_depth.set(waiting);
        victims
    }
}

/// What the agents' heartbeats say.
struct Heartbeats {
    /// Agents whose heartbeat is current.
    current: HashSet<String>,
    /// Agents for placement.
    views: Vec<placement::AgentView>,
    /// Agents whose Ready condition must change: name, heartbeat current, status patch.
    writes: Vec<(String, bool, serde_json::Value)>,
    /// When the next current heartbeat runs out.
    next_expiry: Option<Duration>,
}

impl Reconciler {
    fn heartbeats(&self, agents: &[Agent], now: Timestamp) -> Heartbeats {
        let leases: HashMap<String, _> = self
            .caches
            .leases
            .state()
            .into_iter()
            .map(|l| (l.name_any(), l))
            .collect();
        let mut out = Heartbeats {
            current: HashSet::new(),
            views: Vec::new(),
            writes: Vec::new(),
            next_expiry: None,
        };
        for agent in agents {
            let name = agent.name_any();
            let expiry = heartbeat_expiry(leases.get(&lease_name(&name)).map(AsRef::as_ref));
            let ok = expiry.is_some_and(|e| e > now);
            if let Some(e) = expiry.filter(|_| ok) {
                let left =
                    Duration::try_from(e.duration_since(now)).unwrap_or_default() + Duration::from_millis(50);
                out.next_expiry = Some(out.next_expiry.map_or(left, |n| n.min(left)));
                out.current.insert(name.clone());
            }
            out.views.push(view(agent, ok));
            if let Some(patch) = readiness_patch(agent, ok, now) {
                out.writes.push((name, ok, patch));
            }
        }
        out
    }
}

/// The status patch that records an agent's heartbeat lapsing or resuming, if its `Ready`
/// condition does not say so already.
fn readiness_patch(agent: &Agent, heartbeat_current: bool, now: Timestamp) -> Option<serde_json::Value> {
    let status = agent.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let lapsed_mark = ready.is_some_and(|c| c.status == "False" && c.reason == HEARTBEAT_LAPSED);
    let mut conditions = status.conditions.clone();
    let generation = agent.metadata.generation.unwrap_or(0);
    if !heartbeat_current && !lapsed_mark {
        crate::reconcile::status::set_condition(
            &mut conditions,
            "Ready",
            false,
            HEARTBEAT_LAPSED,
            &format!(
                "no heartbeat: Lease {} is missing or expired",
                lease_name(&agent.name_any())
            ),
            generation,
            now,
        );
    } else if heartbeat_current && lapsed_mark {
        crate::reconcile::status::set_condition(
            &mut conditions,
            "Ready",
            true,
            "HeartbeatResumed",
            "the heartbeat is current again",
            generation,
            now,
        );
    } else {
        return None;
    }
    Some(serde_json::json!({
        "metadata": {"resourceVersion": agent.metadata.resource_version},
        "status": {"conditions": conditions},
    }))
}

impl Reconciler {
    /// Counts a failed write and, for transient errors, backs the job off.
    fn failed(&mut self, job_key: &str, kind: &str, e: &ApplyError) {
        self.health.metrics.error(kind, e.category());
        match e.category() {
            // Someone changed or deleted the object meanwhile: the next pass sees it.
            "conflict" | "not_found" | "not_leading" => {
                tracing::debug!(job = job_key, error = %e, "write skipped");
            }
            _ => tracing::warn!(job = job_key, error = %e, category = e.category(), "write failed"),
        }
        if e.is_transient() {
            let entry = self
                .errors
                .entry(job_key.to_owned())
                .or_insert((0, Instant::now()));
            entry.0 += 1;
            let base = Duration::from_millis(200).saturating_mul(1 << entry.0.min(10));
            let jitter = Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_bytes()[0]));
            entry.1 = Instant::now() + base.min(Duration::from_secs(60)) + jitter;
        }
    }

    async fn apply(
        &mut self,
        entries: &mut [Entry],
        victims: Vec<String>,
        agent_writes: Vec<(String, bool, serde_json::Value)>,
        now: Timestamp,
        soon: &mut impl FnMut(Duration),
    ) {
        let writer = self.writer.clone();
        let n = self.tuning.concurrency.max(1);
        // Agents whose heartbeat lapsed or resumed.
        for (name, ok, patch) in agent_writes {
            match writer.patch_agent_status(&name, &patch).await {
                Ok(()) => {
                    let reference =
                        Agent::new(&name, ringrift_crds::agent::AgentSpec::default()).object_ref(&());
                    if ok {
                        writer
                            .event(
                                &reference,
                                false,
                                "HeartbeatResumed",
                                format!("agent {name} is heartbeating again"),
                            )
                            .await;
                    } else {
                        writer
                            .event(
                                &reference,
                                true,
                                HEARTBEAT_LAPSED,
                                format!(
                                    "agent {name} stopped heartbeating; its tasks are lost and rescheduled"
                                ),
                            )
                            .await;
                    }
                }
                Err(e) => self.failed(&format!("Agent/{name}"), "Agent", &e),
            }
        }
        // 1. Fences first: lost tasks, cancellations, preemptions.
        self.apply_fences(entries, victims).await;

        // 2. New attempts, bounded concurrency.
        let creates: Vec<(usize, Task)> = entries
            .iter_mut()
            .enumerate()
            .flat_map(|(i, e)| std::mem::take(&mut e.placed).into_iter().map(move |t| (i, t)))
            .collect();
        let results: Vec<(usize, Result<Task, ApplyError>)> = futures_util::stream::iter(creates)
            .map(|(i, t)| {
                let w = writer.clone();
                async move { (i, w.create_task(&t).await) }
            })
            .buffer_unordered(n)
            .collect()
            .await;
        let mut created_per_job: HashMap<usize, usize> = HashMap::new();
        for (i, r) in results {
            if r.is_ok() {
                let kind = format!("{:?}", entries[i].job.kind());
                self.health
                    .metrics
                    .tasks_created
                    .get_or_create(&KindLabels { kind })
                    .inc();
                *created_per_job.entry(i).or_default() += 1;
            }
            self.record_task_write(entries, Some(i), r);
        }

        // 3. Models, statuses, events, TTL deletes.
        for (i, e) in entries.iter().enumerate() {
            self.finish_job(e, created_per_job.get(&i).copied().unwrap_or(0), now, soon)
                .await;
        }
    }

    /// Marks lost tasks and cancels what the plans and placement say.
    async fn apply_fences(&mut self, entries: &[Entry], victims: Vec<String>) {
        let writer = self.writer.clone();
        let n = self.tuning.concurrency.max(1);
        let mut fences = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let Some(plan) = &e.plan else { continue };
            if e.held_back {
                continue;
            }
            let ns = e.job.namespace();
            for (name, agent) in &plan.lost {
                let agent = agent.clone();
                fences.push((Some(i), ns.clone(), name.clone(), Fence::Lost { agent }));
            }
            for (name, reason) in &plan.cancel {
                fences.push((Some(i), ns.clone(), name.clone(), Fence::Cancel(*reason)));
            }
        }
        for victim in victims {
            let (ns, name) = victim.split_once('/').unwrap_or(("", victim.as_str()));
            fences.push((
                None,
                ns.to_owned(),
                name.to_owned(),
                Fence::Cancel(CancelReason::Preempted),
            ));
        }
        let results: Vec<(Option<usize>, Result<Task, ApplyError>)> = futures_util::stream::iter(fences)
            .map(|(i, ns, name, fence)| {
                let w = writer.clone();
                async move { (i, w.fence(&ns, &name, fence).await) }
            })
            .buffer_unordered(n)
            .collect()
            .await;
        for (i, r) in results {
            self.record_task_write(entries, i, r);
        }
    }

    fn record_task_write(&mut self, entries: &[Entry], i: Option<usize>, r: Result<Task, ApplyError>) {
        match r {
            Ok(task) => self.tasks.wrote(task),
            Err(e) => {
                let (key, kind) = i
                    .and_then(|i| entries.get(i))
                    .map_or(("Task".to_owned(), "Task".to_owned()), |e| {
                        (e.job.key(), format!("{:?}", e.job.kind()))
                    });
                self.failed(&key, &kind, &e);
            }
        }
    }

    async fn finish_job(
        &mut self,
        e: &Entry,
        created: usize,
        now: Timestamp,
        soon: &mut impl FnMut(Duration),
    ) {
        if e.held_back {
            return;
        }
        if created > 0 {
            let note = format!("created {created} task(s)");
            self.writer
                .event(&e.job.reference(), false, "TasksCreated", note)
                .await;
        }
        if let Some(plan) = &e.plan
            && !plan.lost.is_empty()
        {
            let note = format!(
                "{} task(s) lost with their agent; their work units run again",
                plan.lost.len()
            );
            self.writer
                .event(&e.job.reference(), true, "TasksLost", note)
                .await;
        }
        let key = e.job.key();
        let kind = format!("{:?}", e.job.kind());
        let writer = self.writer.clone();
        let view = e.view.as_ref().ok();
        let blocked = e.view.as_ref().err();
        // A training job that just succeeded registers its model before saying so.
        if let (Some(view), Some(plan)) = (view, &e.plan)
            && view.finished.is_none()
            && matches!(
                plan.verdict,
                Verdict::Finished {
                    phase: ringrift_crds::common::JobPhase::Succeeded,
                    ..
                }
            )
            && let Some(model) = objects::trained_model(view, plan)
        {
            if let Err(err) = writer.create_model(&model).await {
                self.failed(&key, &kind, &err);
                return;
            }
            writer
                .event(
                    &e.job.reference(),
                    false,
                    "ModelCreated",
                    format!("created Model {}", model.name_any()),
                )
                .await;
        }
        let refresh = self
            .refreshed
            .get(&key)
            .is_none_or(|at| at.elapsed() >= VOLATILE_REFRESH);
        let running = e.plan.as_ref().is_some_and(|p| p.verdict == Verdict::Running);
        if running {
            soon(VOLATILE_REFRESH);
        }
        if let Some(next) = e.job.with_status(
            view,
            e.plan.as_ref(),
            blocked,
            e.queue.clone(),
            e.model.clone(),
            now,
            refresh,
        ) {
            let before = e.job.summary();
            let last_failure = e.plan.as_ref().and_then(|p| p.summary.last_failure.clone());
            let result = match &next {
                AnyJob::Selfplay(j) => writer.replace_status(j).await.map(|j| self.selfplay.wrote(j)),
                AnyJob::Training(j) => writer.replace_status(j).await.map(|j| self.training.wrote(j)),
                AnyJob::Gauntlet(j) => writer.replace_status(j).await.map(|j| self.gauntlet.wrote(j)),
            };
            match result {
                Ok(()) => {
                    self.errors.remove(&key);
                    self.refreshed.insert(key.clone(), Instant::now());
                    for (warning, reason, note) in
                        events(&before, &next.summary(), &next, last_failure.as_deref())
                    {
                        writer.event(&e.job.reference(), warning, &reason, note).await;
                    }
                }
                Err(err) => self.failed(&key, &kind, &err),
            }
        }
        if e.plan.as_ref().is_some_and(|p| p.delete) {
            let (ns, name) = (e.job.namespace(), e.job.name());
            let r = match e.job.kind() {
                JobKind::SelfplayJob => writer.delete::<SelfplayJob>(&ns, &name).await,
                JobKind::TrainingJob => writer.delete::<TrainingJob>(&ns, &name).await,
                JobKind::GauntletJob => writer.delete::<GauntletJob>(&ns, &name).await,
            };
            match r {
                Ok(()) => tracing::info!(job = key, "deleted after ttlSecondsAfterFinished"),
                Err(err) => self.failed(&key, &kind, &err),
            }
        }
    }
}
