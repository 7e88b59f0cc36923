//! The three job kinds behind one face for a pass: validate, status, events.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use ringrift_crds::common::{JobPhase, QueueStatus};
use ringrift_crds::gauntlet::{Decision, GauntletJob};
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::JobKind;
use ringrift_crds::training::TrainingJob;

use crate::reconcile::decide::JobPlan;
use crate::reconcile::status::{self, Blocked, Previous};
use crate::reconcile::validate::{self, World};
use crate::reconcile::view::JobView;

/// A job of any kind.
#[derive(Debug, Clone)]
pub enum AnyJob {
    /// A `SelfplayJob`.
    Selfplay(SelfplayJob),
    /// A `TrainingJob`.
    Training(TrainingJob),
    /// A `GauntletJob`.
    Gauntlet(GauntletJob),
}

/// The status fields [`Previous`] reads, owned.
#[derive(Debug, Clone, Default)]
pub struct Old {
    /// Phase.
    pub phase: JobPhase,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// Start.
    pub start_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Completion.
    pub completion_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Failed attempts so far.
    pub failed: u32,
    /// Gauntlet decision so far.
    pub decision: Decision,
}

macro_rules! old_of {
    ($status:expr, $failed:expr) => {
        $status.as_ref().map_or_else(Old::default, |s| Old {
            phase: s.phase,
            conditions: s.conditions.clone(),
            start_time: s.start_time.clone(),
            completion_time: s.completion_time.clone(),
            failed: $failed(s),
            decision: Decision::Pending,
        })
    };
}

impl AnyJob {
    /// Its kind.
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Selfplay(_) => JobKind::SelfplayJob,
            Self::Training(_) => JobKind::TrainingJob,
            Self::Gauntlet(_) => JobKind::GauntletJob,
        }
    }

    /// Its metadata.
    pub fn meta(&self) -> &kube::api::ObjectMeta {
        match self {
            Self::Selfplay(j) => &j.metadata,
            Self::Training(j) => &j.metadata,
            Self::Gauntlet(j) => &j.metadata,
        }
    }

    /// `Kind/namespace/name`.
    pub fn key(&self) -> String {
        format!(
            "{:?}/{}/{}",
            self.kind(),
            self.meta().namespace.as_deref().unwrap_or_default(),
            self.meta().name.as_deref().unwrap_or_default()
        )
    }

    /// Who it counts against in the fleet's fair share: the `TrainingLoop` that controls it
    /// (`TrainingLoop/<namespace>/<name>`), else itself (its [`Self::key`]).
    pub fn claimant(&self) -> String {
        let meta = self.meta();
        meta.owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "TrainingLoop")
            .map_or_else(
                || self.key(),
                |o| {
                    format!(
                        "TrainingLoop/{}/{}",
                        meta.namespace.as_deref().unwrap_or_default(),
                        o.name
                    )
                },
            )
    }

    /// Its own terms in the fair share (`spec.share`), which count when no loop controls it.
    pub fn share(&self) -> Option<ringrift_crds::common::ShareSpec> {
        match self {
            Self::Selfplay(j) => j.spec.share,
            Self::Training(j) => j.spec.share,
            Self::Gauntlet(j) => j.spec.share,
        }
    }

    /// A reference for events.
    pub fn reference(&self) -> ObjectReference {
        match self {
            Self::Selfplay(j) => j.object_ref(&()),
            Self::Training(j) => j.object_ref(&()),
            Self::Gauntlet(j) => j.object_ref(&()),
        }
    }

    /// The status as it is now.
    pub fn old(&self) -> Old {
        match self {
            Self::Selfplay(j) => old_of!(j.status, |s: &ringrift_crds::selfplay::SelfplayJobStatus| s
                .tasks
                .failed),
            Self::Training(j) => old_of!(j.status, |s: &ringrift_crds::training::TrainingJobStatus| s
                .attempts
                .saturating_sub(u32::from(s.phase == JobPhase::Succeeded))),
            Self::Gauntlet(j) => {
                let mut old = old_of!(j.status, |s: &ringrift_crds::gauntlet::GauntletJobStatus| s
                    .tasks
                    .failed);
                old.decision = j.status.as_ref().map_or(Decision::Pending, |s| s.decision);
                old
            }
        }
    }

    /// Validate: the job resolved against the world, with the selfplay model's name.
    pub fn validate(&self, world: &dyn World) -> (Result<JobView, Blocked>, Option<String>) {
        match self {
            Self::Selfplay(j) => match validate::selfplay(j, world) {
                Ok((view, model)) => (Ok(view), model),
                Err(b) => (Err(b), None),
            },
            Self::Training(j) => (validate::training(j, world), None),
            Self::Gauntlet(j) => (validate::gauntlet(j, world), None),
        }
    }

    /// The job with its new status, when that differs from the current one in more than the
    /// rate and ETA (which change with the clock and are refreshed at most every few seconds,
    /// `refresh_volatile`).
    #[allow(clippy::too_many_arguments)]
    pub fn with_status(
        &self,
        view: Option<&JobView>,
        plan: Option<&JobPlan>,
        blocked: Option<&Blocked>,
        queue: Option<QueueStatus>,
        model: Option<String>,
        now: Timestamp,
        refresh_volatile: bool,
    ) -> Option<Self> {
        let old = self.old();
        let previous = Previous {
            phase: old.phase,
            conditions: &old.conditions,
            start_time: old.start_time.as_ref(),
            completion_time: old.completion_time.as_ref(),
        };
        let fallback;
        let view = if let Some(v) = view {
            v
        } else {
            fallback = JobView {
                generation: self.meta().generation.unwrap_or(0),
                ..validate::placeholder(self.kind())
            };
            &fallback
        };
        let common = status::common(view, &previous, plan, blocked, queue, now);
        macro_rules! diff {
            ($job:expr, $new:expr) => {{
                let new = $new;
                // Equal as values is equal as JSON: most jobs of a pass are unchanged, and
                // their statuses (hundreds of outputs) are compared without serializing them.
                if $job.status.as_ref() == Some(&new) {
                    return None;
                }
                let current = serde_json::to_value(&$job.status).unwrap_or_default();
                let next = serde_json::to_value(Some(&new)).unwrap_or_default();
                let changed = if refresh_volatile {
                    current != next
                } else {
                    strip(current) != strip(next)
                };
                changed.then(|| {
                    let mut job = $job.clone();
                    job.status = Some(new);
                    job
                })
            }};
        }
        match self {
            Self::Selfplay(j) => {
                diff!(j, status::selfplay(view, plan, common, model, now)).map(Self::Selfplay)
            }
            Self::Training(j) => diff!(j, status::training(view, plan, common, now)).map(Self::Training),
            Self::Gauntlet(j) => diff!(j, status::gauntlet(view, plan, common)).map(Self::Gauntlet),
        }
    }

    /// Phase, failed count, gauntlet decision and the Ready condition's reason.
    pub fn summary(&self) -> (JobPhase, u32, Decision, Option<String>) {
        let old = self.old();
        let ready = old
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .map(|c| c.reason.clone());
        (old.phase, old.failed, old.decision, ready)
    }

    /// The job's name.
    pub fn name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }

    /// Its namespace.
    pub fn namespace(&self) -> String {
        self.meta().namespace.clone().unwrap_or_default()
    }

    /// Whether it is being deleted.
    pub fn deleting(&self) -> bool {
        self.meta().deletion_timestamp.is_some()
    }
}

fn strip(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("gamesPerSecond");
        o.remove("eta");
    }
    v
}

/// Events for the change from `before` to `after` (phase, failures, decision, readiness).
pub fn events(
    before: &(JobPhase, u32, Decision, Option<String>),
    after: &(JobPhase, u32, Decision, Option<String>),
    after_job: &AnyJob,
    last_failure: Option<&str>,
) -> Vec<(bool, String, String)> {
    let mut out = Vec::new();
    if after.3 != before.3
        && let Some(reason) = &after.3
    {
        let message = after_job
            .old()
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        out.push((true, reason.clone(), message));
    }
    if after.1 > before.1 {
        out.push((
            true,
            "TaskFailed".into(),
            format!(
                "{} attempt(s) failed; last: {}",
                after.1 - before.1,
                last_failure.unwrap_or("no reason reported")
            ),
        ));
    }
    if after.0 != before.0 {
        let old = after_job.old();
        let failed = old
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True");
        let (warning, reason, note) = match after.0 {
            JobPhase::Failed => (
                true,
                failed.map_or("Failed".into(), |c| c.reason.clone()),
                failed.map(|c| c.message.clone()).unwrap_or_default(),
            ),
            phase => (false, format!("{phase:?}"), format!("the job is {phase:?}")),
        };
        out.push((warning, reason, note));
    }
    if after.2 != before.2 && after.2 != Decision::Pending {
        out.push((false, format!("{:?}", after.2), "gauntlet decided".into()));
    }
    out
}
