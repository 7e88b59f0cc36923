//! Splitting jobs into work units: the pieces that become `Task`s. Every attempt of a unit
//! shares its id; a job counts one succeeded attempt per unit.

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkUnit {
    /// Stable id within the job, for example `games-0003` or `random-0001`.
    pub id: String,
    /// Games to play (0 for training).
    pub games: u64,
    /// The opponent, for gauntlet units.
    pub opponent: Option<String>,
    /// Position among the job's units, for seeds.
    pub index: u64,
}

/// Selfplay: `total` games in units of `per_task` (the last one smaller).
pub fn selfplay(total: u64, per_task: u64) -> Vec<WorkUnit> {
    let per_task = per_task.max(1);
    (0..total.div_ceil(per_task))
        .map(|i| WorkUnit {
            id: format!("games-{i:04}"),
            games: per_task.min(total - i * per_task),
            opponent: None,
            index: i,
        })
        .collect()
}

/// A gauntlet: for each opponent, `per_opponent` games in units of `per_task`, interleaved
/// (the first unit of every opponent, then the second, …) so that every opponent is played
/// evenly while the gauntlet runs, and a gauntlet that stops early once decided still has a
/// balanced record against each.
pub fn gauntlet(opponents: &[String], per_opponent: u64, per_task: u64) -> Vec<WorkUnit> {
    let chunks = selfplay(per_opponent, per_task);
    let mut units = Vec::with_capacity(chunks.len() * opponents.len());
    for chunk in &chunks {
        for opponent in opponents {
            let index = units.len() as u64;
            units.push(WorkUnit {
                id: format!("{opponent}-{:04}", chunk.index),
                games: chunk.games,
                opponent: Some(opponent.clone()),
                index,
            });
        }
    }
    units
}

/// Training: one unit.
pub fn training() -> Vec<WorkUnit> {
    vec![WorkUnit {
        id: "train".into(),
        games: 0,
        opponent: None,
        index: 0,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selfplay_chunks_cover_every_game_once() {
        let units = selfplay(1050, 100);
        assert_eq!(units.len(), 11);
        assert_eq!(units.iter().map(|u| u.games).sum::<u64>(), 1050);
        assert_eq!(units[10].games, 50);
        assert_eq!(units[3].id, "games-0003");
        assert_eq!(selfplay(100, 100).len(), 1);
        assert!(selfplay(0, 100).is_empty());
        assert_eq!(selfplay(5, 0).len(), 5, "a zero chunk size cannot loop forever");
    }

    #[test]
    fn gauntlet_units_per_opponent() {
        let units = gauntlet(&["best".into(), "random".into()], 50, 20);
        let ids: Vec<&str> = units.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "best-0000",
                "random-0000",
                "best-0001",
                "random-0001",
                "best-0002",
                "random-0002"
            ],
            "interleaved: every opponent is played evenly"
        );
        assert_eq!(
            units
                .iter()
                .filter(|u| u.opponent.as_deref() == Some("random"))
                .map(|u| u.games)
                .sum::<u64>(),
            50
        );
        assert_eq!(
            units[5].index, 5,
            "indexes are unique across opponents (distinct seeds)"
        );
    }

    #[test]
    fn training_is_one_unit() {
        assert_eq!(training().len(), 1);
    }
}
