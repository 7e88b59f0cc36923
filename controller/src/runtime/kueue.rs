//! Kueue's external framework at run time (`--kueue`): a Workload per job labelled
//! `kueue.x-k8s.io/queue-name`, its units held until Kueue admits it, its tasks stopped when
//! Kueue evicts it, and the Workload finished with the job (the decisions in
//! [`crate::reconcile::kueue`]).

use jiff::Timestamp;
use kube::ResourceExt;
use ringrift_crds::common::{JobPhase, QueueStatus};
use ringrift_crds::kueue::Workload;

use super::caches::valid;
use super::reconciler::{Entry, Reconciler};
use super::task_index::TasksByJob;
use crate::reconcile::kueue::{self, Admission, Asked};

/// The Kueue integration's writes for a pass.
#[derive(Default)]
pub(super) struct KueueWrites {
    /// Workloads to create, for jobs that have none.
    create: Vec<Workload>,
    /// Workloads whose job has ended, with their `Finished` condition set.
    finish: Vec<Workload>,
}

impl Reconciler {
    /// Holds back the units of every queued job Kueue has not admitted (or has evicted), with
    /// the reason in the job's queue status; adds the live tasks of evicted jobs to `victims`.
    /// Returns the Workloads to create and to finish.
    pub(super) fn kueue_gate(
        &self,
        entries: &mut [Entry],
        by_job: &TasksByJob,
        victims: &mut Vec<String>,
        now: Timestamp,
    ) -> KueueWrites {
        let mut writes = KueueWrites::default();
        let Some(store) = self.caches.workloads.as_ref().filter(|_| self.tuning.kueue) else {
            return writes;
        };
        let (workloads, _) = valid(store);
        for e in entries.iter_mut() {
            let Some(queue) = e
                .job
                .meta()
                .labels
                .as_ref()
                .and_then(|l| l.get(kueue::QUEUE_LABEL))
            else {
                continue;
            };
            let Ok(view) = &e.view else { continue };
            let kind = format!("{:?}", view.kind);
            let name = kueue::workload_name(&kind, &view.name, &view.uid);
            let existing = workloads
                .iter()
                .find(|w| w.name_any() == name && w.namespace().as_deref() == Some(view.namespace.as_str()));
            let conditions = existing.map(|w| w.status.clone().unwrap_or_default().conditions);
            if let Some((phase, _)) = view.finished {
                if let (Some(w), Some(c)) = (existing, &conditions)
                    && !kueue::finished(c)
                {
                    let succeeded = phase == JobPhase::Succeeded;
                    let mut done = w.clone();
                    let mut status = done.status.take().unwrap_or_default();
                    status.conditions = kueue::with_finished(c, succeeded, &format!("{kind} {phase:?}"), now);
                    done.status = Some(status);
                    writes.finish.push(done);
                }
                continue;
            }
            let units = u32::try_from(view.units.len()).unwrap_or(u32::MAX);
            let reason = match kueue::admission(conditions.as_deref()) {
                Admission::Admitted => continue,
                Admission::Missing => {
                    let object = kueue::workload(&Asked {
                        kind: &kind,
                        name: &view.name,
                        namespace: &view.namespace,
                        uid: &view.uid,
                        queue,
                        count: view.parallelism.map_or(units, |p| p.min(units)),
                        resources: &view.resources,
                    });
                    match serde_json::from_value::<Workload>(object) {
                        Ok(w) => writes.create.push(w),
                        Err(error) => tracing::warn!(%error, workload = name, "could not build a Workload"),
                    }
                    format!("waiting for Kueue: Workload {name} created in LocalQueue {queue}")
                }
                Admission::Pending => {
                    format!("waiting for Kueue to admit Workload {name} (LocalQueue {queue})")
                }
                Admission::Evicted(why) => {
                    let live = by_job
                        .get(&view.uid)
                        .into_iter()
                        .flatten()
                        .filter(|t| t.is_live() && t.cancel.is_none());
                    victims.extend(live.map(|t| format!("{}/{}", view.namespace, t.name)));
                    format!("evicted by Kueue ({why}); waits to be admitted again")
                }
            };
            e.queue = Some(QueueStatus {
                position: 0,
                reason: reason.clone(),
            });
            e.gated = Some(reason);
        }
        writes
    }

    /// Creates and finishes the pass's Workloads (failures logged: the next pass tries again).
    pub(super) async fn apply_kueue(&mut self, writes: KueueWrites) {
        for w in writes.create {
            match self.writer.create_if_absent(&w).await {
                Ok(true) => tracing::info!(workload = w.name_any(), "created Workload"),
                Ok(false) => {}
                Err(e) => {
                    self.health.metrics.error("Workload", e.category());
                    tracing::warn!(workload = w.name_any(), error = %e, "could not create the Workload");
                }
            }
        }
        for w in writes.finish {
            if let Err(e) = self.writer.replace_status(&w).await {
                self.health.metrics.error("Workload", e.category());
                tracing::warn!(workload = w.name_any(), error = %e, "could not finish the Workload");
            }
        }
    }
}
