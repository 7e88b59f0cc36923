//! Monte Carlo tree search guided by the network (PUCT, as in AlphaZero): each simulation walks
//! down the tree by prior and value, evaluates one new position with the network and backs the
//! value up. Without a network the prior is uniform and the value 0, so the search alone plays.

use crate::game::{Board, COLUMNS};
use crate::net::{Net, Scratch};
use crate::rng::Rng;

/// Exploration constant of PUCT.
const C_PUCT: f32 = 1.5;

#[derive(Debug, Clone)]
struct Node {
    board: Board,
    /// The column that led here.
    column: u8,
    prior: f32,
    visits: u32,
    /// Sum of values from the view of the player who moved into this node.
    value: f32,
    first_child: u32,
    children: u8,
    expanded: bool,
}

/// A reusable search.
#[derive(Debug, Default)]
pub struct Search {
    nodes: Vec<Node>,
    scratch: Scratch,
}

/// Root exploration noise for selfplay.
#[derive(Debug)]
pub struct Noise<'a> {
    /// Where the noise comes from.
    pub rng: &'a mut Rng,
    /// Share of the prior replaced by noise.
    pub fraction: f32,
}

impl Search {
    /// Runs `simulations` simulations from `board` (not finished) and returns the visit count
    /// of each column.
    pub fn run(
        &mut self,
        net: Option<&Net>,
        board: &Board,
        simulations: u32,
        noise: Option<Noise<'_>>,
    ) -> [u32; COLUMNS] {
        self.nodes.clear();
        self.nodes.push(Node {
            board: *board,
            column: 0,
            prior: 1.0,
            visits: 0,
            value: 0.0,
            first_child: 0,
            children: 0,
            expanded: false,
        });
        self.expand(net, 0);
        if let Some(mut noise) = noise {
            self.add_noise(&mut noise);
        }
        let mut path = Vec::with_capacity(48);
        for _ in 0..simulations.max(1) {
            path.clear();
            path.push(0usize);
            let mut at = 0usize;
            while self.nodes[at].expanded && self.nodes[at].children > 0 {
                at = self.select(at);
                path.push(at);
            }
            let mut v = self.leaf_value(net, at);
            for &i in path.iter().rev() {
                let node = &mut self.nodes[i];
                node.visits += 1;
                node.value -= v;
                v = -v;
            }
        }
        let mut visits = [0u32; COLUMNS];
        for child in self.children(0) {
            let node = &self.nodes[child];
            visits[usize::from(node.column)] = node.visits;
        }
        visits
    }

    fn children(&self, i: usize) -> std::ops::Range<usize> {
        let n = &self.nodes[i];
        n.first_child as usize..n.first_child as usize + usize::from(n.children)
    }

    /// The value of the node's position for its side to move; expands it if it is new.
    fn leaf_value(&mut self, net: Option<&Net>, i: usize) -> f32 {
        let board = self.nodes[i].board;
        if board.last_mover_won() {
            return -1.0;
        }
        if board.moves() == crate::game::CELLS {
            return 0.0;
        }
        self.expand(net, i)
    }

    /// Creates the node's children with their priors; returns the network's value.
    fn expand(&mut self, net: Option<&Net>, i: usize) -> f32 {
        let board = self.nodes[i].board;
        let (policy, value) = if let Some(net) = net {
            net.evaluate(&board, &mut self.scratch)
        } else {
            let legal = board.legal().count();
            let mut p = [0.0; COLUMNS];
            #[allow(clippy::cast_precision_loss)] // at most 7
            for c in board.legal() {
                p[c] = 1.0 / legal as f32;
            }
            (p, 0.0)
        };
        let first = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        let mut count = 0u8;
        for col in board.legal() {
            self.nodes.push(Node {
                board: board.after(col),
                column: u8::try_from(col).unwrap_or(0),
                prior: policy[col],
                visits: 0,
                value: 0.0,
                first_child: 0,
                children: 0,
                expanded: false,
            });
            count += 1;
        }
        let node = &mut self.nodes[i];
        node.first_child = first;
        node.children = count;
        node.expanded = true;
        value
    }

    fn add_noise(&mut self, noise: &mut Noise<'_>) {
        // Dirichlet(1) noise: normalised exponential samples.
        let range = self.children(0);
        #[allow(clippy::cast_possible_truncation)] // a probability
        let samples: Vec<f32> = range
            .clone()
            .map(|_| -(noise.rng.unit().max(1e-12)).ln() as f32)
            .collect();
        let total: f32 = samples.iter().sum();
        for (child, s) in range.zip(samples) {
            let node = &mut self.nodes[child];
            node.prior = (1.0 - noise.fraction) * node.prior + noise.fraction * s / total;
        }
    }

    fn select(&self, i: usize) -> usize {
        #[allow(clippy::cast_precision_loss)] // visit counts stay small
        let sqrt_n = (self.nodes[i].visits as f32).sqrt();
        let mut best = usize::MAX;
        let mut best_score = f32::NEG_INFINITY;
        for child in self.children(i) {
            let c = &self.nodes[child];
            #[allow(clippy::cast_precision_loss)]
            let n = c.visits as f32;
            let q = if c.visits == 0 { 0.0 } else { c.value / n };
            let score = q + C_PUCT * c.prior * sqrt_n / (1.0 + n);
            if score > best_score {
                best_score = score;
                best = child;
            }
        }
        best
    }
}

/// The column with the most visits (the lowest column on ties).
pub fn most_visited(visits: &[u32; COLUMNS]) -> usize {
    let mut best = 0;
    for (c, v) in visits.iter().enumerate() {
        if *v > visits[best] {
            best = c;
        }
    }
    best
}

/// A column drawn in proportion to its visits.
pub fn sample_visits(visits: &[u32; COLUMNS], rng: &mut Rng) -> usize {
    let weights: Vec<f64> = visits.iter().map(|v| f64::from(*v)).collect();
    rng.weighted(&weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(moves: &[usize]) -> Board {
        Board::from_moves(moves).unwrap()
    }

    #[test]
    fn finds_a_win_in_one() {
        let b = board(&[0, 1, 0, 1, 0, 1]);
        let visits = Search::default().run(None, &b, 200, None);
        assert_eq!(most_visited(&visits), 0, "{visits:?}");
    }

    #[test]
    fn blocks_a_win_in_one() {
        let b = board(&[0, 1, 0, 1, 0]);
        let visits = Search::default().run(None, &b, 400, None);
        assert_eq!(most_visited(&visits), 0, "{visits:?}");
    }

    #[test]
    fn visits_add_up_and_skip_full_columns() {
        let b = board(&[3, 3, 3, 3, 3, 3]);
        let visits = Search::default().run(Some(&Net::new(8, 1)), &b, 100, None);
        assert_eq!(visits[3], 0);
        assert_eq!(
            visits.iter().sum::<u32>(),
            100,
            "every simulation visits one child of the root"
        );
    }

    #[test]
    fn deterministic_without_noise_and_seeded_with_it() {
        let net = Net::new(16, 2);
        let b = board(&[3]);
        let a = Search::default().run(Some(&net), &b, 50, None);
        assert_eq!(a, Search::default().run(Some(&net), &b, 50, None));
        let noisy = |seed| {
            let mut rng = Rng::new(seed);
            Search::default().run(
                Some(&net),
                &b,
                50,
                Some(Noise {
                    rng: &mut rng,
                    fraction: 0.25,
                }),
            )
        };
        assert_eq!(noisy(9), noisy(9));
    }
}
