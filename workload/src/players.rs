//! Who picks the moves: the built-in baselines (`random`, `heuristic`) and the search guided by
//! a model.

use crate::game::{Board, COLUMNS};
use crate::mcts::{Search, most_visited};
use crate::net::Net;
use crate::rng::Rng;

/// Column preferences of the heuristic: the centre takes part in the most lines.
const CENTRE: [f64; COLUMNS] = [1.0, 2.0, 4.0, 8.0, 4.0, 2.0, 1.0];

/// A player.
#[derive(Debug)]
pub enum Player {
    /// Uniformly random legal moves.
    Random,
    /// Wins at once when it can, blocks the opponent's immediate win, avoids moves that hand
    /// the opponent a win on top, otherwise prefers the centre (weighted at random).
    Heuristic,
    /// Tree search guided by a model (none: the untrained search).
    Search {
        /// The model.
        net: Option<Box<Net>>,
        /// Simulations per move.
        simulations: u32,
        /// Its search tree, reused between moves.
        search: Search,
    },
}

impl Player {
    /// A search player.
    pub fn search(net: Option<Net>, simulations: u32) -> Self {
        Self::Search {
            net: net.map(Box::new),
            simulations,
            search: Search::default(),
        }
    }

    /// The column to play in `board` (not finished).
    pub fn choose(&mut self, board: &Board, rng: &mut Rng) -> usize {
        match self {
            Self::Random => {
                let legal: Vec<usize> = board.legal().collect();
                legal[rng.below(legal.len())]
            }
            Self::Heuristic => heuristic(board, rng),
            Self::Search {
                net,
                simulations,
                search,
            } => most_visited(&search.run(net.as_deref(), board, *simulations, None)),
        }
    }
}

/// The heuristic baseline's move.
pub fn heuristic(board: &Board, rng: &mut Rng) -> usize {
    let legal: Vec<usize> = board.legal().collect();
    if let Some(c) = legal.iter().find(|c| board.wins_with(**c)) {
        return *c;
    }
    // The opponent's immediate wins, as if it were to move now.
    let passed = board.passed();
    if let Some(c) = legal.iter().find(|c| passed.wins_with(**c)) {
        return *c;
    }
    let safe: Vec<usize> = legal
        .iter()
        .copied()
        .filter(|c| {
            let next = board.after(*c);
            !next.legal().any(|o| next.wins_with(o))
        })
        .collect();
    let pool = if safe.is_empty() { &legal } else { &safe };
    let weights: Vec<f64> = pool.iter().map(|c| CENTRE[*c]).collect();
    pool[rng.weighted(&weights)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(moves: &[usize]) -> Board {
        Board::from_moves(moves).unwrap()
    }

    #[test]
    fn heuristic_wins_blocks_and_avoids_traps() {
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            assert_eq!(heuristic(&board(&[0, 1, 0, 1, 0, 1]), &mut rng), 0, "win");
            assert_eq!(heuristic(&board(&[0, 1, 0, 1, 0]), &mut rng), 0, "block");
            // X holds row 1 of columns 0-2 and column 3 is empty: a stone there hands X the
            // win on top of it.
            let trap = board(&[1, 0, 0, 2, 2, 6, 1]);
            assert_ne!(heuristic(&trap, &mut rng), 3, "\n{}", trap.render());
        }
    }

    #[test]
    fn players_only_play_legal_moves() {
        let mut rng = Rng::new(5);
        for mut p in [Player::Random, Player::Heuristic, Player::search(None, 20)] {
            let mut b = board(&[3, 3, 3, 3, 3]);
            while b.outcome().is_none() {
                let c = p.choose(&b, &mut rng);
                assert!(b.can_play(c));
                b.play(c);
            }
        }
    }
}
