//! A gauntlet's tally, without I/O: the counted attempts' results per opponent, each promotion
//! gate's verdict on its opponent's record, and the decision they make.

use ringrift_crds::gauntlet::{Decision, GateStatus};

use super::promotion;
use super::units::UnitState;
use super::view::{JobSpecifics, JobView};
use crate::sprt::Record;

/// A gauntlet's results so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GauntletTally {
    /// Per opponent, in spec order.
    pub records: Vec<(String, Record)>,
    /// Each gate's verdict, in spec order.
    pub gates: Vec<GateStatus>,
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
        gates,
        per_opponent,
        candidate_metrics,
        ..
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
    let verdicts: Vec<_> = gates
        .iter()
        .map(|g| {
            let record = records
                .iter()
                .find(|(n, _)| *n == g.opponent)
                .map(|(_, r)| *r)
                .unwrap_or_default();
            let (verdict, reason) = promotion::judge(&g.test, &record, *per_opponent, candidate_metrics);
            (g.clone(), verdict, reason)
        })
        .collect();
    let (decision, reason) = promotion::decide(&verdicts);
    let gates = verdicts
        .into_iter()
        .map(|(g, verdict, reason)| GateStatus {
            name: g.name,
            opponent: g.opponent,
            verdict,
            reason,
        })
        .collect();
    Some(GauntletTally {
        records,
        gates,
        decision,
        reason,
    })
}
