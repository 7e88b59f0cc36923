//! Game records: one JSON object per line (`games-*.jsonl`), each game's moves, the search's
//! visit counts at every move (the policy target) and the result.

use serde::{Deserialize, Serialize};

use crate::game::{Board, COLUMNS, Outcome};

/// One recorded game.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameRecord {
    /// Columns played, in order.
    pub moves: Vec<u8>,
    /// Visit counts of the search at each move.
    pub visits: Vec<[u32; COLUMNS]>,
    /// 1: the first player won, -1: the second, 0: a draw.
    pub result: i8,
}

/// A training example: a position, the search's move distribution there and the game's result
/// for the side to move.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The position.
    pub board: Board,
    /// Target move distribution.
    pub policy: [f32; COLUMNS],
    /// Target value for the side to move.
    pub value: f32,
}

/// The result field for an outcome.
pub fn result_of(outcome: Outcome) -> i8 {
    match outcome {
        Outcome::FirstWins => 1,
        Outcome::SecondWins => -1,
        Outcome::Draw => 0,
    }
}

impl GameRecord {
    /// The game's positions as samples, checking that the record is a legal game.
    ///
    /// # Errors
    /// What is wrong with the record.
    pub fn samples(&self) -> Result<Vec<Sample>, String> {
        if self.moves.len() != self.visits.len() {
            return Err(format!(
                "{} moves but {} visit counts",
                self.moves.len(),
                self.visits.len()
            ));
        }
        if !(-1..=1).contains(&self.result) {
            return Err(format!("result {} is not -1, 0 or 1", self.result));
        }
        let mut board = Board::new();
        let mut out = Vec::with_capacity(self.moves.len());
        for (i, (m, visits)) in self.moves.iter().zip(&self.visits).enumerate() {
            let col = usize::from(*m);
            if board.outcome().is_some() || !board.can_play(col) {
                return Err(format!("move {} (column {col}) is not legal", i + 1));
            }
            let total: u32 = visits.iter().sum();
            let mut policy = [0.0f32; COLUMNS];
            for (c, v) in visits.iter().enumerate() {
                if *v > 0 && !board.can_play(c) {
                    return Err(format!("move {}: visits on full column {c}", i + 1));
                }
                #[allow(clippy::cast_precision_loss)] // visit counts stay small
                if total > 0 {
                    policy[c] = *v as f32 / total as f32;
                } else if c == col {
                    policy[c] = 1.0;
                }
            }
            let first = f32::from(self.result);
            out.push(Sample {
                board,
                policy,
                value: if board.first_to_move() { first } else { -first },
            });
            board.play(col);
        }
        let ended = board.outcome().map(result_of);
        if ended != Some(self.result) {
            return Err(format!(
                "the moves end {} but the result says {}",
                ended.map_or_else(|| "unfinished".into(), |r| r.to_string()),
                self.result
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_carry_the_result_for_the_side_to_move() {
        let moves = vec![0u8, 1, 0, 1, 0, 1, 0];
        let record = GameRecord {
            visits: moves
                .iter()
                .map(|m| {
                    let mut v = [0; COLUMNS];
                    v[usize::from(*m)] = 3;
                    v[5] = 1;
                    v
                })
                .collect(),
            moves,
            result: 1,
        };
        let samples = record.samples().unwrap();
        assert_eq!(samples.len(), 7);
        assert!((samples[0].value - 1.0).abs() < f32::EPSILON);
        assert!((samples[1].value + 1.0).abs() < f32::EPSILON);
        assert!((samples[0].policy[0] - 0.75).abs() < 1e-6);
        let mut wrong = record.clone();
        wrong.result = -1;
        assert!(wrong.samples().unwrap_err().contains("result says -1"));
        let mut illegal = record;
        illegal.moves[6] = 9;
        assert!(illegal.samples().unwrap_err().contains("not legal"));
    }
}
