//! One reconcile pass over every job: observe (caches) → validate → plan (pure, per job) →
//! place (pure, all jobs at once, so priorities and preemption see the whole fleet) → apply →
//! status. Passes run on changes and on timers (backoff, deadlines, heartbeat expiry).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use ringrift_crds::agent::Agent;
use ringrift_crds::common::{QueueStatus, ShareSpec};
use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{FailureClass, JobKind, Task};
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::TrainingLoop;

use super::admin::Health;
use super::agents::{HEARTBEAT_LAPSED, candidate, heartbeat_expiry, lease_name, view};
use super::caches::{Caches, Copies, valid};
use super::creates::Creates;
use super::hand_overs;
use super::jobs::AnyJob;
use super::metrics::KindLabels;
use super::overlay::Overlay;
use super::plans::{Plans, Settled};
use super::task_index::{LiveClaim, TaskIndex, TasksByJob};
use super::world::Snapshot;
use super::writer::Writer;
use crate::plan::placement::{self, Claim, Outcome, Request, Standing, Terms};
use crate::reconcile::breaker::{self, Policy};
use crate::reconcile::decide::{Env, JobPlan};
use crate::reconcile::durability::Candidate;
use crate::reconcile::objects;
use crate::reconcile::status::Blocked;
use crate::reconcile::units::Backoff;
use crate::reconcile::view::{JobView, TaskView};
use ringrift_crds::durability::Needed;

/// Everything the loops and models are planned from, as read this pass.
pub(super) struct Registry<'a> {
    pub(super) loops: Vec<TrainingLoop>,
    pub(super) selfplay: &'a [SelfplayJob],
    pub(super) training: &'a [TrainingJob],
    pub(super) gauntlet: &'a [GauntletJob],
    pub(super) models: Vec<Model>,
    /// Agents whose heartbeat is current.
    pub(super) live: &'a HashSet<String>,
    /// Fewer than half the agents are Ready: nothing is given up as lost.
    pub(super) disrupted: bool,
    /// How each claimant stands in the fair share after this pass's placement.
    pub(super) shares: &'a BTreeMap<String, Standing>,
}

/// How often the clock-driven fields (rate, ETA) of running jobs are refreshed.
pub(super) const VOLATILE_REFRESH: Duration = Duration::from_secs(5);

/// Tuning of the reconciler.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Retry backoff for failed work units.
    pub backoff: Backoff,
    /// Writes in flight at once.
    pub concurrency: usize,
    /// The circuit breaker for failing agents (none: off).
    pub breaker: Option<Policy>,
    /// How placement orders work: the fair share, or plain priority (a baseline).
    pub placement: placement::Policy,
    /// Trainings the loops may run at once across the fleet (0: no limit).
    pub max_concurrent_trainings: usize,
    /// Act as Kueue's external framework for jobs labelled `kueue.x-k8s.io/queue-name`.
    pub kueue: bool,
    /// How long before a running task's expected end a waiting unit may be bound to follow it
    /// on its GPUs (a hand-over; zero: off).
    pub hand_over: Duration,
}

/// One job in a pass.
pub(super) struct Entry {
    pub(super) job: AnyJob,
    pub(super) view: Result<JobView, Blocked>,
    pub(super) model: Option<String>,
    /// Shared with the plans kept between passes ([`Plans`]).
    pub(super) plan: Option<Arc<JobPlan>>,
    pub(super) queue: Option<QueueStatus>,
    pub(super) placed: Vec<Task>,
    /// Placed tasks that take the GPUs of one task preempted for them, by name: the victim's
    /// `namespace/name`, cancelled once the new task is created (see [`super::creates`]).
    pub(super) displacing: HashMap<String, String>,
    pub(super) held_back: bool,
    /// Kueue has not admitted it (or evicted it): no unit is placed, and why.
    pub(super) gated: Option<String>,
    /// Copies of its outputs asked for this pass, for the event.
    pub(super) copying: Vec<String>,
    /// Units run again this pass because every copy of their outputs was lost, for the event.
    pub(super) regenerating: Vec<String>,
}

/// The reconciler's state between passes.
pub struct Reconciler {
    pub(super) caches: Caches,
    pub(super) writer: Writer,
    pub(super) health: Arc<Health>,
    pub(super) tuning: Tuning,
    pub(super) tasks: Overlay<Task>,
    /// Creates sent off by earlier passes: the Tasks not yet answered are laid over the cache.
    pub(super) creates: Creates,
    /// The tasks cache's objects, copied once per version.
    task_copies: Copies<Task>,
    /// The planner's views of those objects, made once per object.
    task_index: TaskIndex,
    /// Plans of settled jobs, kept while nothing they were made from changes.
    plans: Plans,
    pub(super) selfplay: Overlay<SelfplayJob>,
    pub(super) training: Overlay<TrainingJob>,
    pub(super) gauntlet: Overlay<GauntletJob>,
    pub(super) loops: Overlay<TrainingLoop>,
    pub(super) models: Overlay<Model>,
    /// Per job: transient failures in a row and when to try again.
    pub(super) errors: HashMap<String, (u32, Instant)>,
    /// Per job: when its rate and ETA were last written.
    pub(super) refreshed: HashMap<String, Instant>,
    /// Per settled job: what its status was last found up to date with (see [`Settled`]).
    pub(super) settled: HashMap<String, Settled>,
    pub(super) reported: HashSet<String>,
    /// The claimants whose share gauges the last pass set (to remove those gone).
    pub(super) shares_reported: HashSet<String>,
    /// Agents and loops whose gauges were set, to remove those of the gone.
    pub(super) agents_reported: HashSet<String>,
    pub(super) loops_reported: HashSet<(String, String)>,
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
            creates: Creates::new(tuning.concurrency),
            task_copies: Copies::default(),
            task_index: TaskIndex::default(),
            plans: Plans::default(),
            selfplay: Overlay::for_updated(),
            training: Overlay::for_updated(),
            gauntlet: Overlay::for_updated(),
            loops: Overlay::for_updated(),
            models: Overlay::for_updated(),
            errors: HashMap::new(),
            refreshed: HashMap::new(),
            settled: HashMap::new(),
            reported: HashSet::new(),
            shares_reported: HashSet::new(),
            agents_reported: HashSet::new(),
            loops_reported: HashSet::new(),
        }
    }

    /// Wakes `notify` when the API server answers a create this reconciler sent off (a pass
    /// takes the answers; a refused create brings no watch event to wake it otherwise).
    pub fn wake_on_answers(&mut self, notify: Arc<tokio::sync::Notify>) {
        self.creates.wake(notify);
    }

    /// Waits (up to `patience`) for the creates sent off to be answered and sends no more: call
    /// once, when the controller stops, before its Lease is released.
    pub async fn settle(&mut self, patience: Duration) {
        self.creates.settle(patience).await;
    }

    /// Forgets this replica's own writes (call when leadership is gained or lost).
    pub fn reset(&mut self) {
        self.tasks.clear();
        self.creates.clear();
        self.task_copies.clear();
        self.plans.clear();
        self.selfplay.clear();
        self.training.clear();
        self.gauntlet.clear();
        self.loops.clear();
        self.models.clear();
        self.errors.clear();
    }

    /// One pass. Returns how long until the next one is due if nothing changes.
    #[tracing::instrument(name = "reconcile_pass", skip_all)]
    pub async fn pass(&mut self) -> Option<Duration> {
        let started = Instant::now();
        let now = Timestamp::now();
        let mut wake: Option<Duration> = None;
        let mut soon = |d: Duration| wake = Some(wake.map_or(d, |w: Duration| w.min(d)));

        // The answers to the last passes' creates, before reading the caches.
        self.take_answers().await;
        let Observed {
            tasks,
            agents,
            selfplay,
            training,
            gauntlet,
            models,
            loops,
        } = self.observe();
        let (selfplay_all, training_all, gauntlet_all) =
            (selfplay.clone(), training.clone(), gauntlet.clone());
        let world = Snapshot::new(models.clone(), &loops, &selfplay_all);

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
        self.report_agents(current.len(), &agent_views);

        let (by_job, claims) = self.task_index.index(&tasks);
        // Agents whose tasks keep failing for reasons of the agent: no new work for a while.
        let mut agent_views = agent_views;
        let (quarantines, quarantine_writes) =
            self.breaker(&tasks, &agents, &mut agent_views, now, &mut soon);

        // Validate and plan each job.
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
        let (mut entries, priorities) =
            self.plan_jobs(all_jobs, &world, &by_job, (&env, &current), &mut soon);

        // Jobs queued in Kueue wait for its admission. Then every waiting unit of every job is
        // placed at once, sharing the fleet between loops and standalone jobs.
        let mut evicted = Vec::new();
        let kueue_writes = self.kueue_gate(&mut entries, &by_job, &mut evicted, now);
        let terms = share_terms(&loops, &entries);
        let (mut victims, shares) = self.place(
            &mut entries,
            (claims, &by_job, &priorities),
            (&agent_views, &terms),
            now,
            &mut soon,
        );
        victims.extend(evicted);
        // Copies of needed outputs whose holders were lost.
        let needed = Needed::from_objects(&tasks, &models, &selfplay_all, &loops, &training_all);
        let disrupted = self.keep_outputs(
            &mut entries,
            &needed,
            (&agents, &current, &quarantines),
            now,
            &mut soon,
        );
        let placed: usize = entries.iter().map(|e| e.placed.len()).sum();
        if placed > 0 {
            tracing::debug!(
                placed,
                planned_ms = started.elapsed().as_millis(),
                "planned a pass; writing"
            );
        }

        // Apply.
        self.apply(&mut entries, victims, agent_writes, now, &mut soon)
            .await;
        self.apply_quarantines(quarantine_writes).await;
        self.apply_kueue(kueue_writes).await;
        // The loops (which create jobs) and the model registry.
        let applied = Instant::now();
        self.loops_and_models(
            Registry {
                loops,
                selfplay: &selfplay_all,
                training: &training_all,
                gauntlet: &gauntlet_all,
                models,
                live: &current,
                disrupted,
                shares: &shares,
            },
            now,
        )
        .await;
        if let Some(d) = self.next_retry() {
            soon(d);
        }
        tracing::debug!(
            applied_ms = applied.duration_since(started).as_millis(),
            loops_ms = applied.elapsed().as_millis(),
            "passed"
        );
        self.health.metrics.pass.observe(started.elapsed().as_secs_f64());
        wake
    }

    /// Copies of the needed outputs whose holders were lost, onto the Ready agents not in
    /// quarantine (`current`: those heartbeating); whether the fleet reads as disrupted.
    fn keep_outputs(
        &mut self,
        entries: &mut [Entry],
        needed: &Needed,
        (agents, current, quarantines): (&[Agent], &HashSet<String>, &BTreeMap<String, breaker::Quarantine>),
        now: Timestamp,
        soon: &mut impl FnMut(Duration),
    ) -> bool {
        let candidates: Vec<Candidate> = agents
            .iter()
            .map(|a| {
                let mut c = candidate(a, current.contains(&a.name_any()));
                c.eligible &= !quarantines.contains_key(&c.name);
                c
            })
            .collect();
        // Fewer than half the agents Ready reads as an outage of the network or the control
        // plane, not as lost agents: nothing is regenerated or given up then (as the node
        // lifecycle controller stops evicting when a whole zone goes dark).
        let disrupted = current.len() * 2 < agents.len() || current.is_empty();
        let ready = |a: &str| current.contains(a);
        self.durability(entries, needed, &candidates, &ready, disrupted, now, soon);
        disrupted
    }

    /// When the first job held back by a transient error may try again (not backoffs already
    /// over: waking for those would spin).
    fn next_retry(&self) -> Option<Duration> {
        let now = Instant::now();
        self.errors
            .values()
            .filter(|(_, at)| *at > now)
            .map(|(_, at)| at.saturating_duration_since(now))
            .min()
    }

    /// The agents' gauges: how many are Ready, and each one's readiness and disk pressure
    /// (those of agents gone removed).
    fn report_agents(&mut self, ready: usize, views: &[placement::AgentView]) {
        let metrics = &self.health.metrics;
        metrics.agents_ready.set(i64::try_from(ready).unwrap_or(i64::MAX));
        let per_agent: Vec<(String, bool, bool)> = views
            .iter()
            .map(|v| (v.name.clone(), v.ready, v.disk_pressure))
            .collect();
        metrics.agents(&per_agent, &self.agents_reported);
        self.agents_reported = per_agent.into_iter().map(|(a, _, _)| a).collect();
    }

    /// The circuit breaker: the agents quarantined now (from the tasks' failures), marked in
    /// `views` as cordoned for placement (nothing new goes there, nothing is preempted); the
    /// status patches of those whose `Quarantined` condition changes; a wake-up for the first
    /// release.
    fn breaker(
        &self,
        tasks: &[Arc<Task>],
        agents: &[Agent],
        views: &mut [placement::AgentView],
        now: Timestamp,
        soon: &mut impl FnMut(Duration),
    ) -> (BTreeMap<String, breaker::Quarantine>, Vec<QuarantineWrite>) {
        let Some(policy) = self.tuning.breaker else {
            return (BTreeMap::new(), Vec::new());
        };
        let quarantines = breaker::quarantined(&agent_failures(tasks), now, &policy);
        for v in views.iter_mut().filter(|v| quarantines.contains_key(&v.name)) {
            v.unschedulable = true;
        }
        if let Some(first) = quarantines.values().map(|q| q.until).min() {
            soon(Duration::try_from(first.duration_since(now)).unwrap_or_default());
        }
        let writes = agents
            .iter()
            .filter_map(|a| quarantine_patch(a, quarantines.get(&a.name_any()), &policy, now))
            .collect();
        self.health
            .metrics
            .agents_quarantined
            .set(i64::try_from(quarantines.len()).unwrap_or(i64::MAX));
        (quarantines, writes)
    }

    /// Observe: every cached object checked (the malformed reported once), with this
    /// replica's own recent writes laid over the caches.
    fn observe(&mut self) -> Observed {
        let mut invalid = Vec::new();
        let (tasks, bad) = self.task_copies.valid(&self.caches.tasks);
        invalid.extend(bad);
        let mut tasks = self.tasks.merge(tasks);
        let unanswered = self.creates.unanswered(&tasks);
        tasks.extend(unanswered);
        let (agents, bad) = valid(&self.caches.agents);
        invalid.extend(bad);
        let selfplay = merge_jobs(&mut self.selfplay, valid(&self.caches.selfplay), &mut invalid);
        let training = merge_jobs(&mut self.training, valid(&self.caches.training), &mut invalid);
        let gauntlet = merge_jobs(&mut self.gauntlet, valid(&self.caches.gauntlet), &mut invalid);
        let (models, bad) = valid(&self.caches.models);
        invalid.extend(bad);
        let (loops, bad) = valid(&self.caches.loops);
        invalid.extend(bad);
        self.report_invalid(&invalid);
        let loops = self.loops.merge(loops);
        Observed {
            tasks,
            agents,
            selfplay,
            training,
            gauntlet,
            models,
            loops,
        }
    }

    /// Validate and plan each job not being deleted: its entry for placement and apply, and the
    /// priorities placement weighs.
    fn plan_jobs(
        &mut self,
        all_jobs: impl Iterator<Item = AnyJob>,
        world: &Snapshot,
        by_job: &TasksByJob,
        (env, ready): (&Env<'_>, &HashSet<String>),
        soon: &mut impl FnMut(Duration),
    ) -> (Vec<Entry>, HashMap<String, u32>) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut priorities: HashMap<String, u32> = HashMap::new();
        let ready = self.plans.begin(ready);
        for job in all_jobs.filter(|j| !j.deleting()) {
            let (view, model) = job.validate(world);
            let plan = view.as_ref().ok().map(|v| {
                priorities.insert(v.uid.clone(), v.priority);
                let tasks = by_job.get(&v.uid).map_or(&[][..], Vec::as_slice);
                self.plans.plan(v, tasks, env, ready)
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
                displacing: HashMap::new(),
                held_back,
                gated: None,
                copying: Vec::new(),
                regenerating: Vec::new(),
            });
        }
        self.plans.end();
        // Forget the bookkeeping of jobs gone.
        let present: HashSet<String> = entries.iter().map(|e| e.job.key()).collect();
        self.refreshed.retain(|k, _| present.contains(k));
        self.settled.retain(|k, _| present.contains(k));
        self.errors.retain(|k, _| present.contains(k));
        (entries, priorities)
    }

    fn report_invalid(&mut self, invalid: &[(String, String)]) {
        for (name, error) in invalid {
            if self.reported.insert(format!("{name}:{error}")) {
                tracing::warn!(object = name, error, "ignoring a malformed object");
                self.health.metrics.error("Object", "malformed");
            }
        }
    }

    /// Runs placement given the live tasks' claims (with their job's uid) and the claimants'
    /// terms; fills each entry's `placed` tasks and queue status. Returns the tasks to preempt
    /// (and successors withdrawn), as `namespace/name`, and how each claimant stands in the
    /// fair share.
    fn place(
        &mut self,
        entries: &mut [Entry],
        (claims, by_job, priorities): (Vec<LiveClaim>, &TasksByJob, &HashMap<String, u32>),
        (agents, terms): (&[placement::AgentView], &BTreeMap<String, Terms>),
        now: Timestamp,
        soon: &mut impl FnMut(Duration),
    ) -> (Vec<String>, BTreeMap<String, Standing>) {
        let peers = hand_overs::peers(entries);
        let hand_overs::Marked {
            claims,
            withdrawn,
            next: next_hand_over,
            uids,
        } = hand_overs::mark(claims, (by_job, &peers), now, self.tuning.hand_over);
        let claims = claimed(entries, claims, priorities);
        let requests = requests(entries);
        let started = Instant::now();
        let placement::Placed {
            outcomes,
            shares,
            reservations,
        } = placement::place_by(agents, &claims, &requests, terms, self.tuning.placement);
        self.health
            .metrics
            .placement
            .observe(started.elapsed().as_secs_f64());
        self.health
            .metrics
            .hand_overs_withdrawn
            .inc_by(withdrawn.len() as u64);
        let mut victims = withdrawn;
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
                    let mut task = objects::task(view, attempt, &agent, &gpus);
                    // One victim: the new task follows it, and it is cancelled only once the
                    // new task exists, so its GPUs pass straight from one to the other. A
                    // victim not created yet (no uid) is cancelled in the pass.
                    if let [victim] = v.as_slice()
                        && let Some(uid) = uids.get(victim)
                    {
                        task.spec.start_after = Some(uid.clone());
                        entry.displacing.insert(task.name_any(), victim.clone());
                    } else {
                        victims.extend(v);
                    }
                    entry.placed.push(task);
                }
                Outcome::HandOver { agent, gpus, after } => {
                    // Named by uid: a task deleted and created again keeps its name. Only a
                    // running task hands over, so it has one.
                    let Some(uid) = uids.get(&after) else { continue };
                    let mut task = objects::task(view, attempt, &agent, &gpus);
                    task.spec.start_after = Some(uid.clone());
                    entry.placed.push(task);
                    self.health.metrics.hand_overs.inc();
                }
                Outcome::Wait { reason, position } => {
                    waiting += 1;
                    if entry.queue.as_ref().is_none_or(|q| position < q.position) {
                        entry.queue = Some(QueueStatus { position, reason });
                    }
                }
            }
        }
        // Work waits: look again when the next running task may hand its GPUs over.
        if waiting > 0
            && let Some(d) = next_hand_over
        {
            soon(d);
        }
        self.health.metrics.queue_depth.set(waiting);
        self.health
            .metrics
            .agents_held
            .set(i64::try_from(reservations.len()).unwrap_or(i64::MAX));
        self.health.metrics.shares(&shares, &self.shares_reported);
        self.shares_reported = shares.keys().cloned().collect();
        (victims, shares)
    }
}

/// The live tasks' claims (with the uid of the job that owns each), with their job's priority
/// and claimant filled in.
fn claimed(entries: &[Entry], claims: Vec<(Claim, String)>, priorities: &HashMap<String, u32>) -> Vec<Claim> {
    let claimant_of: HashMap<String, String> = entries
        .iter()
        .filter_map(|e| Some((e.job.meta().uid.clone()?, e.job.claimant())))
        .collect();
    claims
        .into_iter()
        .map(|(mut claim, owner)| {
            if let Some(p) = priorities.get(&owner) {
                claim.priority = *p;
            }
            // A task whose job is gone counts under that job's uid until it stops.
            claim.claimant = claimant_of.get(&owner).cloned().unwrap_or(owner);
            claim
        })
        .collect()
}

/// A placement request for every unit a job's plan creates (id `<entry>/<unit>`), except jobs
/// held back or waiting for Kueue.
fn requests(entries: &[Entry]) -> Vec<Request> {
    let mut requests = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let (Ok(view), Some(plan)) = (&e.view, &e.plan) else {
            continue;
        };
        if e.held_back || e.gated.is_some() {
            continue;
        }
        let mut input_bytes: BTreeMap<String, u64> = BTreeMap::new();
        for input in &view.inputs {
            for holder in &input.holders {
                *input_bytes.entry(holder.clone()).or_default() += input.size_bytes;
            }
        }
        for (j, c) in plan.create.iter().enumerate() {
            requests.push(Request {
                id: format!("{i}/{j}"),
                priority: view.priority,
                resources: view.resources.clone(),
                elastic: view.kind == JobKind::SelfplayJob,
                avoid: c.avoid.clone(),
                // A gauntlet writes only its result.
                writes_outputs: view.kind != JobKind::GauntletJob,
                input_bytes: input_bytes.clone(),
                claimant: e.job.claimant(),
            });
        }
    }
    requests
}

/// Each claimant's terms in the fair share: every loop's `spec.share`, and the `spec.share` of
/// each job no loop controls.
fn share_terms(loops: &[TrainingLoop], entries: &[Entry]) -> BTreeMap<String, Terms> {
    let terms = |s: ShareSpec| Terms {
        weight: f64::from(s.weight),
        min_gpus: f64::from(s.min_gpus),
    };
    let mut out: BTreeMap<String, Terms> = loops
        .iter()
        .map(|l| {
            (
                format!(
                    "TrainingLoop/{}/{}",
                    l.namespace().unwrap_or_default(),
                    l.name_any()
                ),
                terms(l.spec.share),
            )
        })
        .collect();
    for e in entries {
        if let Some(s) = e.job.share()
            && e.job.claimant() == e.job.key()
        {
            out.insert(e.job.key(), terms(s));
        }
    }
    out
}

/// The objects a pass works from (the tasks shared with the cache's copies, not copied).
struct Observed {
    tasks: Vec<Arc<Task>>,
    agents: Vec<Agent>,
    selfplay: Vec<SelfplayJob>,
    training: Vec<TrainingJob>,
    gauntlet: Vec<GauntletJob>,
    models: Vec<Model>,
    loops: Vec<TrainingLoop>,
}

/// What the agents' heartbeats say.
struct Heartbeats {
    /// Agents whose heartbeat is current.
    current: HashSet<String>,
    /// Agents for placement.
    views: Vec<placement::AgentView>,
    /// Agents whose Ready condition must change: name, heartbeat current, status patch.
    writes: Vec<(ObjectReference, bool, serde_json::Value)>,
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
                out.writes.push((agent.object_ref(&()), ok, patch));
            }
        }
        out
    }
}

/// The failures that count against agents: tasks that ended `GpuFault` or `AgentError` on
/// them (never the workload's own failures).
fn agent_failures(tasks: &[Arc<Task>]) -> Vec<breaker::Failure> {
    tasks
        .iter()
        .filter(|t| {
            t.status.as_ref().is_some_and(|s| {
                matches!(
                    s.failure_class,
                    Some(FailureClass::GpuFault | FailureClass::AgentError)
                )
            })
        })
        .filter_map(|t| {
            let v = TaskView::from_task(t);
            let why = match v.failure_class? {
                FailureClass::GpuFault => "GpuFault",
                FailureClass::AgentError => "AgentError",
                _ => return None,
            };
            Some(breaker::Failure {
                agent: v.agent?,
                at: v.finished.unwrap_or(v.created),
                why: why.to_owned(),
            })
        })
        .collect()
}

/// An agent's quarantine starting (with why) or ending: its reference, the message when it
/// starts, the status patch.
pub(super) type QuarantineWrite = (ObjectReference, Option<String>, serde_json::Value);

/// Reason of the `Quarantined=True` condition.
pub(super) const QUARANTINED: &str = "RepeatedFailures";

/// The status patch that records an agent's quarantine starting or ending, when its
/// `Quarantined` condition does not say so already: (agent, the message when quarantined,
/// the patch).
fn quarantine_patch(
    agent: &Agent,
    quarantine: Option<&breaker::Quarantine>,
    policy: &breaker::Policy,
    now: Timestamp,
) -> Option<QuarantineWrite> {
    let status = agent.status.clone().unwrap_or_default();
    let current = status.conditions.iter().find(|c| c.type_ == "Quarantined");
    let message = quarantine.map(|q| q.message(policy));
    let (on, reason, text) = match &message {
        Some(m) if current.is_some_and(|c| c.status == "True" && c.message == *m) => return None,
        Some(m) => (true, QUARANTINED, m.clone()),
        None if current.is_some_and(|c| c.status == "True") => (
            false,
            "Released",
            "its quarantine ended: it takes new work again".to_owned(),
        ),
        None => return None,
    };
    let mut conditions = status.conditions;
    let generation = agent.metadata.generation.unwrap_or(0);
    ringrift_crds::common::set_condition(&mut conditions, "Quarantined", on, reason, &text, generation, now);
    Some((
        agent.object_ref(&()),
        message,
        serde_json::json!({
            "metadata": {"resourceVersion": agent.metadata.resource_version},
            "status": {"conditions": conditions},
        }),
    ))
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
        ringrift_crds::common::set_condition(
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
        ringrift_crds::common::set_condition(
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
