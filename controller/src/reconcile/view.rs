//! What the planner sees of jobs and tasks: plain data taken from the API objects, so the
//! decisions can be tested without a client.

use ringrift_contract::Params;
use std::collections::BTreeMap;

use jiff::Timestamp;
use ringrift_crds::common::{Artifact, RunPolicy, TaskResources, WorkloadTemplate};
use ringrift_crds::task::{CancelReason, FailureClass, JobKind, Role, Task, TaskPhase};

use crate::plan::split::WorkUnit;

/// A task as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Object name.
    pub name: String,
    /// Work unit id.
    pub unit: String,
    /// Attempt number.
    pub attempt: u32,
    /// Bound agent.
    pub agent: Option<String>,
    /// Phase, fenced: a status written for another attempt reads as `Pending`.
    pub phase: TaskPhase,
    /// Set when the controller asked the task to stop, with why.
    pub cancel: Option<CancelReason>,
    /// Failure class the agent reported.
    pub failure_class: Option<FailureClass>,
    /// Reason and message the agent reported, for events and the job's failure message.
    pub message: String,
    /// Created.
    pub created: Timestamp,
    /// Process started.
    pub started: Option<Timestamp>,
    /// Last progress report.
    pub last_progress: Option<Timestamp>,
    /// Finished.
    pub finished: Option<Timestamp>,
    /// Units of progress done (games, steps).
    pub done: u64,
    /// Outputs.
    pub outputs: Vec<Artifact>,
    /// The newest checkpoint it announced.
    pub checkpoint: Option<Artifact>,
    /// The workload's result.
    pub result: Option<serde_json::Value>,
    /// Latest workload metrics.
    pub metrics: BTreeMap<String, f64>,
    /// What it holds on its agent.
    pub resources: TaskResources,
    /// GPUs assigned.
    pub gpus: Vec<String>,
    /// A copy of its job's output ([`ringrift_crds::task::Role::Copy`]), not a work unit.
    pub copy: bool,
    /// Bytes its agent pulled for it and pushed as copies of its outputs.
    pub bytes_moved: u64,
}

impl TaskView {
    /// Reads a `Task` object.
    pub fn from_task(task: &Task) -> Self {
        let meta = &task.metadata;
        let status = task.status.clone().unwrap_or_default();
        // Fencing: a status that names another attempt is not about this object's attempt.
        let fenced = status.attempt.is_some_and(|a| a != task.spec.attempt);
        let cancel = task.cancel_reason();
        let message = [status.reason.as_deref(), status.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        Self {
            name: meta.name.clone().unwrap_or_default(),
            unit: task.spec.work_unit.clone(),
            attempt: task.spec.attempt,
            agent: task.spec.agent.clone(),
            phase: if fenced { TaskPhase::Pending } else { status.phase },
            cancel,
            failure_class: if fenced { None } else { status.failure_class },
            message,
            created: meta
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            started: status.start_time.map(|t| t.0),
            last_progress: status.last_progress_time.map(|t| t.0),
            finished: status.completion_time.map(|t| t.0),
            done: status.progress.map_or(0, |p| p.done),
            outputs: if fenced { Vec::new() } else { status.outputs },
            checkpoint: status.checkpoint,
            result: if fenced { None } else { status.result },
            metrics: status.metrics,
            resources: task.spec.resources.clone(),
            gpus: task.spec.gpus.clone(),
            copy: task.spec.role == Role::Copy,
            bytes_moved: status
                .bytes_fetched
                .unwrap_or(0)
                .saturating_add(status.bytes_pushed.unwrap_or(0)),
        }
    }

    /// Whether the task still holds its agent's resources.
    pub fn is_live(&self) -> bool {
        !self.phase.is_finished() && self.cancel != Some(CancelReason::Lost)
    }
}

/// What kind of job, with what only that kind needs.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSpecifics {
    /// Selfplay: games in chunks.
    Selfplay,
    /// Training: one unit; the output model's name and lineage.
    Training {
        /// Name of the `Model` to create.
        model: String,
        /// The base model, if any, and its generation.
        parent: Option<(String, u32)>,
        /// The loop generation and loop that asked for it (annotations on the job), if any.
        training_loop: Option<(String, u32)>,
    },
    /// Gauntlet: the promotion gates, the deciding opponent, games per opponent.
    Gauntlet {
        /// The promotion gates, defaults filled in.
        gates: Vec<crate::reconcile::promotion::Gate>,
        /// What the candidate's training reported (metric gates read it).
        candidate_metrics: BTreeMap<String, f64>,
        /// The opponent whose score is the job's `winRate` (`promotion.opponent`, else the
        /// first opponent).
        deciding: String,
        /// Games against each opponent.
        per_opponent: u64,
    },
}

/// A job as the planner sees it: the spec resolved into work units and the task template.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// Its kind.
    pub kind: JobKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, for owner references.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// Created.
    pub created: Timestamp,
    /// Work units.
    pub units: Vec<WorkUnit>,
    /// Per task.
    pub resources: TaskResources,
    /// How tasks start.
    pub template: WorkloadTemplate,
    /// Retries, deadlines, suspend, TTL.
    pub policy: RunPolicy,
    /// Effective priority.
    pub priority: u32,
    /// Most tasks at once.
    pub parallelism: Option<u32>,
    /// Parameters common to every task (each unit adds its own); none: an empty object.
    pub params: Option<Params>,
    /// Inputs of every task.
    pub inputs: Vec<Artifact>,
    /// Copies each task's outputs should have on distinct agents (none: the agent's default).
    pub replicas: Option<u32>,
    /// Kind specifics.
    pub specifics: JobSpecifics,
    /// The phase and completion time already recorded in its status, if finished: a finished
    /// job stays finished.
    pub finished: Option<(ringrift_crds::common::JobPhase, Timestamp)>,
    /// When its first task was created, as recorded.
    pub started: Option<Timestamp>,
}

/// Default priorities by kind: gauntlet > training > selfplay.
pub fn default_priority(kind: JobKind) -> u32 {
    match kind {
        JobKind::GauntletJob => 300,
        JobKind::TrainingJob => 200,
        JobKind::SelfplayJob => 100,
    }
}
