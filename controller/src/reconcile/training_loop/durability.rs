//! What a loop does when outputs of its jobs are lost: a lost best model falls back to the
//! previous best, unfinished jobs on it are replaced, and the `OutputsAvailable` condition says
//! which outputs have no copy left.

use ringrift_crds::common::{JobPhase, set_condition};
use ringrift_crds::gauntlet::Decision;

use super::{ChildKind, LoopEvent, Pass, batch_name, child_name};

impl Pass<'_> {
    /// A best model whose weights were lost with every copy: the loop falls back to its
    /// previous best (the newest promoted candidate before it whose weights are held, else the
    /// initial model, else none: untrained), with a warning event. Unfinished jobs that name
    /// the lost model are replaced next ([`Self::replace_lost`]).
    pub(super) fn fall_back(&mut self) {
        let Some(best) = self.status.best_model.clone() else {
            return;
        };
        if !self.world.lost_models.contains(&best) {
            return;
        }
        let usable = |m: &String| {
            *m != best && self.world.models.contains_key(m) && !self.world.lost_models.contains(m)
        };
        let previous = self
            .status
            .history
            .iter()
            .rev()
            .filter(|h| h.decision == Decision::Promote)
            .filter_map(|h| h.candidate.clone())
            .find(usable)
            .or_else(|| self.lp.spec.initial_model.clone().filter(usable));
        self.events.push(LoopEvent {
            warning: true,
            reason: "BestModelLost".into(),
            message: format!(
                "Model {best} has no copy of its weights on a Ready agent; the best model is now {}",
                previous.as_deref().unwrap_or("none (an untrained model plays)")
            ),
        });
        self.status.best_model = previous;
    }

    /// The current generation's jobs (and the next one's overlapped selfplay) that are not
    /// finished and name a model whose weights are lost (after [`Self::fall_back`], never the
    /// best): deleted, to be created again with the best model once they are gone; a failed
    /// one too, as it most likely failed for want of that model. An event names each.
    pub(super) fn replace_lost(&mut self) {
        let lost = self.world.lost_models.clone();
        self.replace_where(
            &|m| lost.contains(m),
            ("JobReplaced", true),
            "whose weights have no copy on a Ready agent",
        );
    }

    /// The current generation's jobs (and the next one's overlapped selfplay, and the running
    /// continuous batch and the one made ahead of it) that are not finished and name a model `stale` says must not be used:
    /// deleted, to be created again with the best model once they are gone, each with an
    /// event (`reason`, a warning or not; the message says the model is `why`).
    pub(super) fn replace_where(
        &mut self,
        stale: &dyn Fn(&String) -> bool,
        (reason, warning): (&str, bool),
        why: &str,
    ) {
        let g = self.status.generation;
        let mut jobs = vec![
            (ChildKind::Selfplay, child_name(&self.name, g, "selfplay")),
            (ChildKind::Training, child_name(&self.name, g, "train")),
            (ChildKind::Gauntlet, child_name(&self.name, g, "gauntlet")),
            (ChildKind::Selfplay, child_name(&self.name, g + 1, "selfplay")),
        ];
        if let Some(c) = &self.status.continuous {
            jobs.push((ChildKind::Selfplay, batch_name(&self.name, c.batch)));
            jobs.push((ChildKind::Selfplay, batch_name(&self.name, c.batch + 1)));
        }
        for (kind, job) in jobs {
            let Some(child) = self.world.jobs.get(&job) else {
                continue;
            };
            let Some(model) = child.model.as_ref().filter(|m| stale(m)) else {
                continue;
            };
            if child.deleting
                || child.phase == JobPhase::Succeeded
                || self.delete.iter().any(|(_, name)| *name == job)
            {
                continue;
            }
            self.events.push(LoopEvent {
                warning,
                reason: reason.into(),
                message: format!(
                    "{job} uses Model {model}, {why}: deleted, to run again with {}",
                    self.status.best_model.as_deref().unwrap_or("an untrained model")
                ),
            });
            self.delete.push((kind, job));
        }
    }

    /// The `OutputsAvailable` condition: False (`CopiesLost`) naming each child job with
    /// outputs whose every copy is lost, and what they are; a warning event when it turns so.
    pub(super) fn outputs(&mut self) {
        let mut lost: Vec<String> = self
            .world
            .jobs
            .iter()
            .filter_map(|(name, c)| Some(format!("{name}: {}", c.outputs_lost.as_ref()?)))
            .collect();
        lost.sort();
        let g = self.lp.metadata.generation.unwrap_or(0);
        let was = self
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "OutputsAvailable" && c.status == "False");
        if lost.is_empty() {
            set_condition(
                &mut self.status.conditions,
                "OutputsAvailable",
                true,
                "CopiesHeld",
                "every output of its jobs has a copy on a Ready agent",
                g,
                self.now,
            );
            return;
        }
        let message = format!(
            "{}; lost games are made again, a lost best model falls back to the previous best",
            lost.join("; ")
        );
        set_condition(
            &mut self.status.conditions,
            "OutputsAvailable",
            false,
            "CopiesLost",
            &message,
            g,
            self.now,
        );
        if !was {
            self.events.push(LoopEvent {
                warning: true,
                reason: "OutputsLost".into(),
                message,
            });
        }
    }
}
