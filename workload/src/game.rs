//! Connect Four on a 7×6 board as bitboards: 7 bits per column (6 cells and a guard bit), bit
//! `col * 7 + row` from the bottom left. The side to move's stones and the occupied cells are
//! kept; everything else is derived.

// Board coordinates are below 64: casts between them never truncate.
#![allow(clippy::cast_possible_truncation)]

/// Columns.
pub const COLUMNS: usize = 7;
/// Rows.
pub const ROWS: usize = 6;
/// Cells: the most moves in a game.
pub const CELLS: usize = COLUMNS * ROWS;

const HEIGHT: u32 = 7;

/// How a finished game ended, for the player who moved first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first player won.
    FirstWins,
    /// The second player won.
    SecondWins,
    /// The board filled up.
    Draw,
}

impl Outcome {
    /// The game's value for the player who moved first: 1, -1 or 0.
    pub fn value_for_first(self) -> f32 {
        match self {
            Self::FirstWins => 1.0,
            Self::SecondWins => -1.0,
            Self::Draw => 0.0,
        }
    }
}

/// A position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Board {
    /// Stones of the side to move.
    current: u64,
    /// Occupied cells.
    mask: u64,
    /// Moves played.
    moves: u8,
}

fn bottom(col: usize) -> u64 {
    1 << (col as u32 * HEIGHT)
}

fn top(col: usize) -> u64 {
    1 << (ROWS as u32 - 1 + col as u32 * HEIGHT)
}

/// Whether the stones `b` hold four in a row.
fn four(b: u64) -> bool {
    [1, HEIGHT, HEIGHT - 1, HEIGHT + 1].into_iter().any(|s| {
        let m = b & (b >> s);
        m & (m >> (2 * s)) != 0
    })
}

impl Board {
    /// The empty board, first player to move.
    pub fn new() -> Self {
        Self::default()
    }

    /// The position after playing `columns` from the empty board; none if a move is illegal
    /// or comes after the end of the game.
    pub fn from_moves(columns: &[usize]) -> Option<Self> {
        let mut b = Self::new();
        for c in columns {
            if b.outcome().is_some() || !b.can_play(*c) {
                return None;
            }
            b.play(*c);
        }
        Some(b)
    }

    /// Moves played so far.
    pub fn moves(&self) -> usize {
        usize::from(self.moves)
    }

    /// Whether the first player is to move.
    pub fn first_to_move(&self) -> bool {
        self.moves.is_multiple_of(2)
    }

    /// Whether a stone can go in `col`.
    pub fn can_play(&self, col: usize) -> bool {
        col < COLUMNS && self.mask & top(col) == 0
    }

    /// The columns that can be played, in order.
    pub fn legal(&self) -> impl Iterator<Item = usize> + '_ {
        (0..COLUMNS).filter(|c| self.can_play(*c))
    }

    /// Drops a stone of the side to move in `col` (which must be playable).
    pub fn play(&mut self, col: usize) {
        debug_assert!(self.can_play(col));
        self.current ^= self.mask;
        self.mask |= self.mask + bottom(col);
        self.moves += 1;
    }

    /// The board after playing `col`.
    #[must_use]
    pub fn after(&self, col: usize) -> Self {
        let mut b = *self;
        b.play(col);
        b
    }

    /// The same stones with the other side to move (a pass), to look at the opponent's threats.
    #[must_use]
    pub fn passed(&self) -> Self {
        Self {
            current: self.current ^ self.mask,
            mask: self.mask,
            moves: self.moves.wrapping_add(1),
        }
    }

    /// Whether the player who just moved made four in a row.
    pub fn last_mover_won(&self) -> bool {
        four(self.current ^ self.mask)
    }

    /// Whether playing `col` wins at once for the side to move.
    pub fn wins_with(&self, col: usize) -> bool {
        self.can_play(col) && self.after(col).last_mover_won()
    }

    /// The outcome, once the game is over.
    pub fn outcome(&self) -> Option<Outcome> {
        if self.last_mover_won() {
            // The player who just moved is the first player when an odd number were played.
            Some(if self.moves % 2 == 1 {
                Outcome::FirstWins
            } else {
                Outcome::SecondWins
            })
        } else if self.moves() == CELLS {
            Some(Outcome::Draw)
        } else {
            None
        }
    }

    /// Indexes (0..84) of the input features from the side to move's view: its own stones
    /// at `col * 6 + row`, the opponent's at `42 + col * 6 + row`; `mirror` flips the columns.
    pub fn features(&self, mirror: bool, out: &mut Vec<usize>) {
        out.clear();
        let opponent = self.current ^ self.mask;
        for col in 0..COLUMNS {
            let c = if mirror { COLUMNS - 1 - col } else { col };
            for row in 0..ROWS {
                let bit = 1u64 << (col as u32 * HEIGHT + row as u32);
                if self.current & bit != 0 {
                    out.push(c * ROWS + row);
                } else if opponent & bit != 0 {
                    out.push(CELLS + c * ROWS + row);
                }
            }
        }
    }

    /// The board as text, top row first: `X` first player, `O` second, `.` empty.
    pub fn render(&self) -> String {
        let first = if self.first_to_move() {
            self.current
        } else {
            self.current ^ self.mask
        };
        let mut s = String::new();
        for row in (0..ROWS).rev() {
            for col in 0..COLUMNS {
                let bit = 1u64 << (col as u32 * HEIGHT + row as u32);
                s.push(if self.mask & bit == 0 {
                    '.'
                } else if first & bit != 0 {
                    'X'
                } else {
                    'O'
                });
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(moves: &[usize]) -> Board {
        Board::from_moves(moves).unwrap()
    }

    #[test]
    fn vertical_horizontal_and_diagonal_wins() {
        assert_eq!(play(&[0, 1, 0, 1, 0, 1, 0]).outcome(), Some(Outcome::FirstWins));
        assert_eq!(play(&[0, 0, 1, 1, 2, 2, 3]).outcome(), Some(Outcome::FirstWins));
        assert_eq!(play(&[6, 0, 1, 1, 2, 2, 3, 3, 6, 3]).outcome(), None);
        // Diagonal / for the first player: 0, 1, 2, 3 rising.
        let b = play(&[0, 1, 1, 2, 2, 3, 2, 3, 3, 6, 3]);
        assert_eq!(b.outcome(), Some(Outcome::FirstWins), "\n{}", b.render());
        // The mirror image: diagonal \.
        let b = play(&[6, 5, 5, 4, 4, 3, 4, 3, 3, 0, 3]);
        assert_eq!(b.outcome(), Some(Outcome::FirstWins), "\n{}", b.render());
        // The second player wins in the bottom row.
        let b = play(&[0, 1, 0, 2, 0, 3, 6, 4]);
        assert_eq!(b.outcome(), Some(Outcome::SecondWins), "\n{}", b.render());
    }

    #[test]
    fn from_moves_refuses_illegal_games() {
        assert_eq!(Board::from_moves(&[7]), None);
        assert_eq!(
            Board::from_moves(&[0, 1, 0, 1, 0, 1, 0, 1]),
            None,
            "after the win"
        );
        assert_eq!(Board::from_moves(&[]), Some(Board::new()));
    }

    #[test]
    fn no_wrap_across_columns() {
        // Three on top of column 0 and one at the bottom of column 1 are not four in a row.
        let b = play(&[0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 1, 2]);
        assert!(!b.last_mover_won(), "\n{}", b.render());
    }

    #[test]
    fn full_columns_and_draws() {
        let mut b = Board::new();
        for _ in 0..ROWS {
            b.play(3);
        }
        assert!(!b.can_play(3));
        assert_eq!(b.legal().count(), 6);
        // A known drawn filling: columns in pairs, shifted so nothing lines up.
        let order = [
            0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 2, 3, 2, 3, 2, 3, 3, 2, 3, 2, 3, 2, 4, 5, 4, 5, 4, 5, 5, 4,
            5, 4, 5, 4, 6, 6, 6, 6, 6, 6,
        ];
        let b = play(&order);
        assert_eq!(b.outcome(), Some(Outcome::Draw), "\n{}", b.render());
    }

    #[test]
    fn features_follow_the_side_to_move_and_mirror() {
        let b = play(&[3, 0]);
        let mut f = Vec::new();
        b.features(false, &mut f);
        assert_eq!(
            f,
            vec![CELLS, 3 * ROWS],
            "first player's stone is own: first to move again"
        );
        b.features(true, &mut f);
        assert_eq!(f, vec![CELLS + 6 * ROWS, 3 * ROWS]);
        assert!(!b.wins_with(0));
    }
}
