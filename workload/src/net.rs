//! The learned model: a small two-headed network. The position's 84 features (each side's
//! stones) feed one hidden layer of ReLU units; a policy head gives a prior over the 7 columns
//! and a value head (tanh) the expected result for the side to move.
//!
//! Stored as JSON (`ringrift-demo/connect4-mlp/v1`), so a model file is readable and its
//! loading checks every size.

use serde::{Deserialize, Serialize};

use crate::game::{Board, CELLS, COLUMNS};
use crate::rng::Rng;

/// Inputs: each side's stones.
pub const INPUTS: usize = 2 * CELLS;
/// The format name in model files.
pub const FORMAT: &str = "ringrift-demo/connect4-mlp/v1";
/// Hidden units unless the hyperparameters say otherwise.
pub const DEFAULT_HIDDEN: usize = 128;

/// The network's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Net {
    /// Always [`FORMAT`].
    pub format: String,
    /// Hidden units.
    pub hidden: usize,
    /// Input → hidden, `INPUTS × hidden`, row per input.
    pub w1: Vec<f32>,
    /// Hidden biases.
    pub b1: Vec<f32>,
    /// Hidden → policy, `hidden × 7`, row per hidden unit.
    pub wp: Vec<f32>,
    /// Policy biases.
    pub bp: Vec<f32>,
    /// Hidden → value.
    pub wv: Vec<f32>,
    /// Value bias.
    pub bv: f32,
    /// Training steps behind these weights, over all generations.
    #[serde(default)]
    pub steps: u64,
}

/// Scratch space for evaluations, reused to avoid allocating per call.
#[derive(Debug, Default)]
pub struct Scratch {
    features: Vec<usize>,
    hidden: Vec<f32>,
}

impl Net {
    /// Fresh weights (He initialisation) from a seed.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // small sizes
    pub fn new(hidden: usize, seed: u64) -> Self {
        let mut rng = Rng::derive(seed, "init");
        let mut init = |n: usize, fan_in: usize| -> Vec<f32> {
            let scale = (2.0 / fan_in as f64).sqrt();
            (0..n).map(|_| (rng.normal() * scale) as f32).collect()
        };
        Self {
            format: FORMAT.into(),
            hidden,
            w1: init(INPUTS * hidden, 42),
            b1: vec![0.0; hidden],
            wp: init(hidden * COLUMNS, hidden).iter().map(|w| w * 0.1).collect(),
            bp: vec![0.0; COLUMNS],
            wv: init(hidden, hidden).iter().map(|w| w * 0.1).collect(),
            bv: 0.0,
            steps: 0,
        }
    }

    /// Checks the sizes after loading.
    ///
    /// # Errors
    /// A description of the first problem.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("model format is {:?}, expected {FORMAT:?}", self.format));
        }
        let h = self.hidden;
        if !(1..=4096).contains(&h) {
            return Err(format!("hidden is {h}, expected 1 to 4096"));
        }
        for (name, len, want) in [
            ("w1", self.w1.len(), INPUTS * h),
            ("b1", self.b1.len(), h),
            ("wp", self.wp.len(), h * COLUMNS),
            ("bp", self.bp.len(), COLUMNS),
            ("wv", self.wv.len(), h),
        ] {
            if len != want {
                return Err(format!("{name} has {len} weights, expected {want}"));
            }
        }
        let all = [&self.w1, &self.b1, &self.wp, &self.bp, &self.wv];
        if !all.iter().all(|v| v.iter().all(|w| w.is_finite())) || !self.bv.is_finite() {
            return Err("a weight is not a finite number".into());
        }
        Ok(())
    }

    /// Reads a model file.
    ///
    /// # Errors
    /// When it cannot be read or is not a valid model.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read model {}: {e}", path.display()))?;
        let net: Self = serde_json::from_slice(&text)
            .map_err(|e| format!("model {} is not a demo model: {e}", path.display()))?;
        net.check()
            .map_err(|e| format!("model {}: {e}", path.display()))?;
        Ok(net)
    }

    /// Writes a model file.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_vec(self).map_err(|e| format!("cannot encode the model: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("cannot write model {}: {e}", path.display()))
    }

    /// Hidden activations for the given active inputs, into `hidden`.
    pub(crate) fn hidden_layer(&self, features: &[usize], hidden: &mut Vec<f32>) {
        hidden.clear();
        hidden.extend_from_slice(&self.b1);
        for &i in features {
            let row = &self.w1[i * self.hidden..(i + 1) * self.hidden];
            for (h, w) in hidden.iter_mut().zip(row) {
                *h += w;
            }
        }
        for h in hidden.iter_mut() {
            *h = h.max(0.0);
        }
    }

    /// Policy logits and the value's pre-activation from hidden activations.
    pub(crate) fn heads(&self, hidden: &[f32]) -> ([f32; COLUMNS], f32) {
        let mut logits = [0.0f32; COLUMNS];
        logits.copy_from_slice(&self.bp);
        let mut v = self.bv;
        for (j, h) in hidden.iter().enumerate() {
            if *h == 0.0 {
                continue;
            }
            let row = &self.wp[j * COLUMNS..(j + 1) * COLUMNS];
            for (l, w) in logits.iter_mut().zip(row) {
                *l += h * w;
            }
            v += h * self.wv[j];
        }
        (logits, v)
    }

    /// The prior over columns (zero for full ones, summing to 1) and the value for the side to
    /// move, in `[-1, 1]`.
    pub fn evaluate(&self, board: &Board, scratch: &mut Scratch) -> ([f32; COLUMNS], f32) {
        board.features(false, &mut scratch.features);
        let features = std::mem::take(&mut scratch.features);
        self.hidden_layer(&features, &mut scratch.hidden);
        scratch.features = features;
        let (logits, v) = self.heads(&scratch.hidden);
        let mut policy = [0.0f32; COLUMNS];
        let legal: Vec<usize> = board.legal().collect();
        let max = legal.iter().map(|c| logits[*c]).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for c in &legal {
            policy[*c] = (logits[*c] - max).exp();
            sum += policy[*c];
        }
        if sum > 0.0 {
            for p in &mut policy {
                *p /= sum;
            }
        }
        (policy, v.tanh())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_is_a_distribution_over_legal_moves() {
        let net = Net::new(16, 3);
        let mut b = Board::new();
        for _ in 0..6 {
            b.play(2);
        }
        let (p, v) = net.evaluate(&b, &mut Scratch::default());
        assert!(p[2].abs() < f32::EPSILON, "a full column has no prior");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!((-1.0..=1.0).contains(&v));
    }

    #[test]
    fn save_load_round_trip_and_checks() {
        let dir = std::env::temp_dir().join(format!("ringrift-demo-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.json");
        let net = Net::new(8, 1);
        net.save(&path).unwrap();
        assert_eq!(Net::load(&path).unwrap(), net);
        let mut bad = net.clone();
        bad.wp.pop();
        bad.save(&path).unwrap();
        assert!(Net::load(&path).unwrap_err().contains("wp has"));
        std::fs::write(&path, b"{\"format\": 3}").unwrap();
        assert!(Net::load(&path).unwrap_err().contains("not a demo model"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
