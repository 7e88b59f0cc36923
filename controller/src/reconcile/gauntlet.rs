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

/// Reads a gauntlet task's result from the candidate's side: `{"wins": n, "losses": n,
/// "draws": n}` (two players; missing counts are 0), or for games of more seats `{"places":
/// [[c, o, o, …], …]}`, one finishing place per seat for each game (1 first, ties allowed), the
/// candidate's first and the opponent's seats after it: each opponent seat the candidate
/// finished ahead of is a win, level with a draw, behind a loss (the pairwise outcomes the
/// ranking implies, which the ratings and tests read). Both forms may be given; they add up.
pub fn record_of(result: Option<&serde_json::Value>) -> Record {
    let get = |k: &str| {
        result
            .and_then(|r| r.get(k))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let mut record = Record {
        wins: get("wins"),
        losses: get("losses"),
        draws: get("draws"),
    };
    let games = result
        .and_then(|r| r.get("places"))
        .and_then(serde_json::Value::as_array)
        .map(|games| {
            games
                .iter()
                .filter_map(|g| {
                    g.as_array()?
                        .iter()
                        .map(serde_json::Value::as_u64)
                        .collect::<Option<Vec<u64>>>()
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let implied = pairwise(&games);
    record.wins += implied.wins;
    record.losses += implied.losses;
    record.draws += implied.draws;
    record
}

/// The candidate's pairwise outcomes against the other seats of each game, from finishing
/// places (the candidate's first). A game with fewer than two seats, or a place of 0, counts
/// nothing.
pub fn pairwise(games: &[Vec<u64>]) -> Record {
    let mut r = Record::default();
    for places in games {
        let Some((&mine, others)) = places.split_first() else {
            continue;
        };
        if others.is_empty() || mine == 0 || others.contains(&0) {
            continue;
        }
        for &theirs in others {
            match mine.cmp(&theirs) {
                std::cmp::Ordering::Less => r.wins += 1,
                std::cmp::Ordering::Equal => r.draws += 1,
                std::cmp::Ordering::Greater => r.losses += 1,
            }
        }
    }
    r
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_player_counts_stay_accepted_and_places_imply_pairwise_outcomes() {
        let two = serde_json::json!({"wins": 3, "losses": 1, "draws": 2});
        assert_eq!(
            record_of(Some(&two)),
            Record {
                wins: 3,
                losses: 1,
                draws: 2
            }
        );
        // Four seats: first of four is three wins; tied second with one seat, ahead of one,
        // behind one; last of three.
        let four = serde_json::json!({"places": [[1, 2, 3, 4], [2, 1, 2, 3], [3, 1, 2]]});
        assert_eq!(
            record_of(Some(&four)),
            Record {
                wins: 4,
                losses: 3,
                draws: 1
            }
        );
        // Malformed games count nothing; both forms add up.
        let odd = serde_json::json!({"wins": 1, "places": [[1], [0, 1], ["x", 2], [2, 1], "no"]});
        assert_eq!(
            record_of(Some(&odd)),
            Record {
                wins: 1,
                losses: 1,
                draws: 0
            }
        );
        assert_eq!(record_of(None), Record::default());
    }
}
