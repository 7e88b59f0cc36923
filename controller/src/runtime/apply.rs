//! Apply, for a pass: fences, new tasks, models, statuses, events and TTL deletes, with
//! per-job backoff on transient errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{JobKind, Task};
use ringrift_crds::training::TrainingJob;

use super::agents::HEARTBEAT_LAPSED;
use super::creates::ForJob;
use super::jobs::{AnyJob, events};
use super::metrics::KindLabels;
use super::plans::{Settled, settled};
use super::reconciler::{Entry, QuarantineWrite, Reconciler, VOLATILE_REFRESH};
use super::writer::{ApplyError, Fence};
use crate::reconcile::decide::Verdict;
use crate::reconcile::objects;
use ringrift_crds::task::CancelReason;

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

    /// Agents whose quarantine starts (with why) or ends: their `Quarantined` condition, an
    /// event, the trips counted.
    pub(super) async fn apply_quarantines(&mut self, changes: Vec<QuarantineWrite>) {
        let writer = self.writer.clone();
        for (reference, message, patch) in changes {
            let name = reference.name.clone().unwrap_or_default();
            match writer.patch_agent_status(&name, &patch).await {
                Ok(()) => {
                    if let Some(message) = message {
                        self.health.metrics.agent_quarantines.inc();
                        tracing::warn!(agent = name, "quarantined: {message}");
                        writer.event(&reference, true, "AgentQuarantined", message).await;
                    } else {
                        tracing::info!(agent = name, "quarantine ended");
                        writer
                            .event(
                                &reference,
                                false,
                                "AgentReleased",
                                format!("agent {name}'s quarantine ended: it takes new work again"),
                            )
                            .await;
                    }
                }
                Err(e) => self.failed(&format!("Agent/{name}"), "Agent", &e),
            }
        }
    }

    pub(super) async fn apply(
        &mut self,
        entries: &mut [Entry],
        victims: Vec<String>,
        agent_writes: Vec<(ObjectReference, bool, serde_json::Value)>,
        now: Timestamp,
        soon: &mut impl FnMut(Duration),
    ) {
        let writer = self.writer.clone();
        let n = self.tuning.concurrency.max(1);
        // Agents whose heartbeat lapsed or resumed.
        // Events name the Agent with its uid: `kubectl describe agent` finds them by it.
        for (reference, ok, patch) in agent_writes {
            let name = reference.name.clone().unwrap_or_default();
            match writer.patch_agent_status(&name, &patch).await {
                Ok(()) => {
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
        let started = Instant::now();
        self.apply_fences(entries, victims).await;
        let fences_done = Instant::now();

        // 2. New attempts, sent off: the next pass sees them as created (see `creates`).
        let mut sent = 0_usize;
        for e in entries.iter_mut() {
            let job = ForJob {
                key: e.job.key(),
                kind: format!("{:?}", e.job.kind()),
                reference: e.job.reference(),
            };
            for task in std::mem::take(&mut e.placed) {
                sent += 1;
                let displacing = e.displacing.remove(&task.name_any());
                self.creates.send(&writer, task, job.clone(), displacing);
            }
        }

        // 3. Models, statuses, events, TTL deletes: each job's in order, the jobs at once.
        if entries
            .iter()
            .any(|e| !e.held_back && e.plan.as_deref().is_some_and(|p| p.verdict == Verdict::Running))
        {
            soon(VOLATILE_REFRESH);
        }
        let this = &*self;
        let finished: Vec<Finished> = futures_util::stream::iter(entries.iter())
            .map(|e| this.finish_job(e, now))
            .buffer_unordered(n)
            .collect()
            .await;
        for f in finished {
            for e in &f.errors {
                self.failed(&f.key, &f.kind, e);
            }
            if let Some(settled) = f.settled {
                self.settled.insert(f.key.clone(), settled);
            }
            match f.status {
                Some(AnyJob::Selfplay(j)) => self.selfplay.wrote(j),
                Some(AnyJob::Training(j)) => self.training.wrote(j),
                Some(AnyJob::Gauntlet(j)) => self.gauntlet.wrote(j),
                None => continue,
            }
            self.errors.remove(&f.key);
            self.refreshed.insert(f.key, Instant::now());
        }
        self.health
            .metrics
            .creates_in_flight
            .set(i64::try_from(self.creates.in_flight()).unwrap_or(i64::MAX));
        tracing::debug!(
            fences_ms = fences_done.duration_since(started).as_millis(),
            creates_sent = sent,
            creates_in_flight = self.creates.in_flight(),
            statuses_ms = fences_done.elapsed().as_millis(),
            "applied a pass"
        );
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

    /// Takes the answers to the creates sent off by earlier passes: a created Task is recorded
    /// as this replica's write and counted, with one `TasksCreated` event per job; a refused
    /// create counts against its job as any failed write.
    pub(super) async fn take_answers(&mut self) {
        let mut per_job: HashMap<String, (ObjectReference, usize)> = HashMap::new();
        let answers = self.creates.answers();
        if let Some(slowest) = answers.iter().map(|a| a.took).max() {
            tracing::debug!(
                answers = answers.len(),
                slowest_ms = slowest.as_millis(),
                "creates answered"
            );
        }
        for answer in answers {
            self.health.metrics.create.observe(answer.took.as_secs_f64());
            match answer.result {
                Ok(task) => {
                    if answer.copy {
                        self.health.metrics.copies_created.inc();
                    } else {
                        per_job
                            .entry(answer.job.key.clone())
                            .or_insert((answer.job.reference, 0))
                            .1 += 1;
                    }
                    self.health
                        .metrics
                        .tasks_created
                        .get_or_create(&KindLabels {
                            kind: answer.job.kind,
                        })
                        .inc();
                    self.tasks.wrote(task);
                }
                Err(e) => self.failed(&answer.job.key, &answer.job.kind, &e),
            }
            // A victim cancelled once its successor existed, recorded as the victims
            // cancelled in the pass are. Had the cancel failed, the victim runs on and its
            // successor was withdrawn (see `creates`).
            if let Some(r) = answer.displaced {
                self.record_task_write(&[], None, r);
            }
        }
        let writer = &self.writer;
        futures_util::future::join_all(per_job.into_values().map(|(reference, created)| async move {
            let note = format!("created {created} task(s)");
            writer.event(&reference, false, "TasksCreated", note).await;
        }))
        .await;
    }

    /// Events for what a pass decided for a job: units run again because their outputs were
    /// lost, copies of outputs.
    async fn decision_events(&self, e: &Entry) {
        if !e.regenerating.is_empty() {
            let note = format!(
                "every copy of the outputs of work unit(s) {} was lost while still needed; running them again",
                e.regenerating.join(", ")
            );
            self.writer
                .event(&e.job.reference(), true, "RegeneratingOutputs", note)
                .await;
        }
        if !e.copying.is_empty() {
            let note = format!(
                "holders of outputs were lost; making copies: {}",
                e.copying.join(", ")
            );
            self.writer
                .event(&e.job.reference(), false, "CopyingOutputs", note)
                .await;
        }
    }

    /// Writes a job's new status, then the events its change calls for.
    async fn write_status(&self, e: &Entry, next: AnyJob, done: &mut Finished) {
        let writer = &self.writer;
        let before = e.job.summary();
        let last_failure = e.plan.as_deref().and_then(|p| p.summary.last_failure.clone());
        let result = match &next {
            AnyJob::Selfplay(j) => writer.replace_status(j).await.map(AnyJob::Selfplay),
            AnyJob::Training(j) => writer.replace_status(j).await.map(AnyJob::Training),
            AnyJob::Gauntlet(j) => writer.replace_status(j).await.map(AnyJob::Gauntlet),
        };
        match result {
            Ok(written) => {
                done.status = Some(written);
                for (warning, reason, note) in
                    events(&before, &next.summary(), &next, last_failure.as_deref())
                {
                    writer.event(&e.job.reference(), warning, &reason, note).await;
                }
                let lost = |j: &AnyJob| {
                    j.old()
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Replicated" && c.reason == "CopiesLost")
                        .map(|c| c.message.clone())
                };
                if let (None, Some(note)) = (lost(&e.job), lost(&next)) {
                    writer.event(&e.job.reference(), true, "OutputsLost", note).await;
                }
            }
            Err(err) => done.errors.push(err),
        }
    }

    /// A job's writes after its tasks': its model (a training job that succeeded), status and
    /// events, its TTL delete; what was written and what failed, for the caller to record.
    async fn finish_job(&self, e: &Entry, now: Timestamp) -> Finished {
        let key = e.job.key();
        let kind = format!("{:?}", e.job.kind());
        let mut done = Finished {
            key,
            kind,
            status: None,
            errors: Vec::new(),
            settled: None,
        };
        if e.held_back {
            return done;
        }
        // A settled job whose status was up to date with the same version, plan and model.
        let is_settled = e.queue.is_none()
            && e.view.as_ref().is_ok_and(|v| v.finished.is_some())
            && e.plan.as_deref().is_some_and(settled);
        if is_settled && self.settled.get(&done.key).is_some_and(|s| s.holds_for(e)) {
            return done;
        }
        self.decision_events(e).await;
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
        let writer = &self.writer;
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
                done.errors.push(err);
                return done;
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
            .get(&done.key)
            .is_none_or(|at| at.elapsed() >= VOLATILE_REFRESH);
        let next = e.job.with_status(
            view,
            e.plan.as_deref(),
            blocked,
            e.queue.clone(),
            e.model.clone(),
            now,
            refresh,
        );
        // Up to date, compared whole (the clock-driven fields too): kept until something
        // it was built from changes.
        if next.is_none()
            && is_settled
            && refresh
            && let (Some(version), Some(plan)) = (e.job.meta().resource_version.clone(), e.plan.clone())
        {
            done.settled = Some(Settled {
                version,
                plan,
                model: e.model.clone(),
            });
        }
        if let Some(next) = next {
            self.write_status(e, next, &mut done).await;
        }
        if e.plan.as_deref().is_some_and(|p| p.delete) {
            let (ns, name) = (e.job.namespace(), e.job.name());
            let r = match e.job.kind() {
                JobKind::SelfplayJob => writer.delete::<SelfplayJob>(&ns, &name).await,
                JobKind::TrainingJob => writer.delete::<TrainingJob>(&ns, &name).await,
                JobKind::GauntletJob => writer.delete::<GauntletJob>(&ns, &name).await,
            };
            match r {
                Ok(()) => tracing::info!(job = done.key, "deleted after ttlSecondsAfterFinished"),
                Err(err) => done.errors.push(err),
            }
        }
        done
    }
}

/// What a job's writes after its tasks' came to.
struct Finished {
    key: String,
    kind: String,
    /// Its status as written.
    status: Option<AnyJob>,
    /// Writes that failed.
    errors: Vec<ApplyError>,
    /// A settled job's status found up to date: with what.
    settled: Option<Settled>,
}
