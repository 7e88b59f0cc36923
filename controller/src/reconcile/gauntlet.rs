//! A gauntlet's tally, without I/O: the counted attempts' results per opponent and the
//! promotion decision on the deciding opponent's record.

use ringrift_crds::gauntlet::Decision;

use super::units::UnitState;
use super::view::{JobSpecifics, JobView};
use crate::sprt::{self, Record};

/// A gauntlet's results so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GauntletTally {
    /// Per opponent, in spec order.
    pub records: Vec<(String, Record)>,
    /// The decision.
    pub decision: Decision,
    /// Why.
    pub reason: String,
}

/// Reads a gauntlet task's result: `{"wins": n, "losses": n, "draws": n}` from the
/// candidate's side. Missing counts are 0.
pub fn record_of(result: Option<&serde_json::Value>) -> Record {
    let get = |k: &str| {
        result
            .and_then(|r| r.get(k))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    Record {
        wins: get("wins"),
        losses: get("losses"),
        draws: get("draws"),
    }
}

pub(super) fn tally(job: &JobView, states: &[UnitState<'_>]) -> Option<GauntletTally> {
    let JobSpecifics::Gauntlet {
        policy,
        deciding,
        per_opponent,
    } = &job.specifics
    else {
        return None;
    };
    let mut records: Vec<(String, Record)> = Vec::new();
    for unit in &job.units {
        let name = unit.opponent.clone().unwrap_or_default();
        if !records.iter().any(|(n, _)| *n == name) {
            records.push((name, Record::default()));
        }
    }
    for state in states {
        let (Some(task), Some(opponent)) = (state.counted, &state.unit.opponent) else {
            continue;
        };
        let r = record_of(task.result.as_ref());
        if let Some((_, total)) = records.iter_mut().find(|(n, _)| n == opponent) {
            total.wins += r.wins;
            total.losses += r.losses;
            total.draws += r.draws;
        }
    }
    let deciding_record = records
        .iter()
        .find(|(n, _)| n == deciding)
        .map(|(_, r)| *r)
        .unwrap_or_default();
    let (decision, reason) = sprt::decide(policy, &deciding_record, *per_opponent);
    Some(GauntletTally {
        records,
        decision,
        reason,
    })
}
