//! Undoing a promotion: `spec.rollbackTo` makes a named earlier model the best again (once per
//! distinct value), `spec.autoRollback` rolls a promoted model back to its parent once the
//! ratings show it surely worse; either way the loop's unfinished jobs on the model rolled back
//! from run again on the best model, and `status.rollbacks` and an event record it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ringrift_crds::gauntlet::Decision;
use ringrift_crds::training_loop::{RollbackRecord, RollbackTrigger};

use super::{LoopEvent, Pass};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The upper end of the 95% interval of `a - b`, from each one's Elo and 95% interval (the
/// two treated as independent normal estimates).
pub fn difference_upper(a: (f64, (f64, f64)), b: (f64, (f64, f64))) -> f64 {
    let se = |(low, high): (f64, f64)| ((high - low) / (2.0 * Z95)).max(0.0);
    let (ea, ia) = a;
    let (eb, ib) = b;
    (ea - eb) + Z95 * (se(ia).powi(2) + se(ib).powi(2)).sqrt()
}

impl Pass<'_> {
    /// `spec.rollbackTo`, when its value has not been applied yet: the named model becomes the
    /// best. A name that is no Model (yet), or whose weights are lost, waits with a warning.
    pub(super) fn roll_back(&mut self) {
        let Some(to) = self.lp.spec.rollback_to.clone() else {
            return;
        };
        if self.status.rollback_applied.as_ref() == Some(&to) {
            return;
        }
        let problem = if !self.world.models.contains_key(&to) {
            Some("is no Model of this namespace")
        } else if self.world.lost_models.contains(&to) {
            Some("has no copy of its weights on a Ready agent")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.events.push(LoopEvent {
                warning: true,
                reason: "RollbackWaiting".into(),
                message: format!("spec.rollbackTo: {to} {problem}; the rollback waits for it"),
            });
            return;
        }
        self.status.rollback_applied = Some(to.clone());
        if self.status.best_model.as_ref() == Some(&to) {
            return;
        }
        let message = format!(
            "spec.rollbackTo: {to} is the best model again (it was {})",
            self.status.best_model.as_deref().unwrap_or("none")
        );
        self.rolled_back(to, RollbackTrigger::Manual, message);
    }

    /// `spec.autoRollback`: the best model, when a promotion made it so and its rating shows it
    /// worse than its parent (the best model it replaced) by more than the margin with 95%
    /// confidence, is rolled back to that parent. A model is rolled back this way once.
    pub(super) fn auto_roll_back(&mut self) {
        let Some(auto) = &self.lp.spec.auto_rollback else {
            return;
        };
        let Some(best) = self.status.best_model.clone() else {
            return;
        };
        let history = &self.status.history;
        let Some(at) = history
            .iter()
            .rposition(|h| h.decision == Decision::Promote && h.candidate.as_ref() == Some(&best))
        else {
            return;
        };
        let Some(parent) = history[..at]
            .iter()
            .rev()
            .filter(|h| h.decision == Decision::Promote)
            .find_map(|h| h.candidate.clone())
            .or_else(|| self.lp.spec.initial_model.clone())
        else {
            return;
        };
        if self
            .status
            .rollbacks
            .iter()
            .any(|r| r.trigger == RollbackTrigger::Automatic && r.from.as_ref() == Some(&best))
            || self.world.lost_models.contains(&parent)
        {
            return;
        }
        let rating = |m: &String| {
            let elo = self.world.models.get(m).copied().flatten()?;
            Some((elo, *self.world.intervals.get(m)?))
        };
        let (Some(b), Some(p)) = (rating(&best), rating(&parent)) else {
            return;
        };
        let upper = difference_upper(b, p);
        if upper >= -auto.margin_elo {
            return;
        }
        let message = format!(
            "spec.autoRollback: {best} (Elo {:.0}) is worse than its parent {parent} (Elo {:.0}): \
             the 95% interval of the difference ends at {upper:.0}, below -{:.0}; {parent} is the \
             best model again",
            b.0, p.0, auto.margin_elo
        );
        self.rolled_back(parent, RollbackTrigger::Automatic, message);
    }

    fn rolled_back(&mut self, to: String, trigger: RollbackTrigger, message: String) {
        let from = self.status.best_model.replace(to.clone());
        self.status.rollbacks.push(RollbackRecord {
            generation: self.status.generation,
            from,
            to,
            trigger,
            message: message.clone(),
            time: Some(Time(self.now)),
        });
        self.events.push(LoopEvent::normal("RolledBack", message));
    }

    /// Unfinished jobs on a model a rollback replaced (and that is not the best again): run
    /// again on the best model. Kept in the status, so a delete that failed is tried again.
    pub(super) fn replace_stale(&mut self) {
        let best = self.status.best_model.clone();
        let replaced: Vec<String> = self
            .status
            .rollbacks
            .iter()
            .filter_map(|r| r.from.clone())
            .filter(|m| Some(m) != best.as_ref())
            .collect();
        if replaced.is_empty() {
            return;
        }
        self.replace_where(
            &|m| replaced.contains(m),
            ("JobReplaced", false),
            "which a rollback replaced as the best model",
        );
    }
}
