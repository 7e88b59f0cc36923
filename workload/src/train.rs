//! Fitting the network to games: minibatch gradient descent (AdamW) on the policy's
//! cross-entropy against the search's move distribution plus the squared error of the value
//! against the game's result. Positions are mirrored at random (Connect Four is symmetric).

// The maths reads best in its usual notation (g, m, s, h, p).
#![allow(clippy::many_single_char_names)]

use crate::game::COLUMNS;
use crate::net::{INPUTS, Net};
use crate::record::Sample;
use crate::rng::Rng;

/// How to train.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Minibatches.
    pub steps: u64,
    /// Positions per minibatch.
    pub batch_size: usize,
    /// Adam's step size.
    pub learning_rate: f32,
    /// Decoupled weight decay per step, relative to the step size.
    pub weight_decay: f32,
}

/// Losses over a stretch of training.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Losses {
    /// Policy cross-entropy.
    pub policy: f64,
    /// Value squared error.
    pub value: f64,
}

impl Losses {
    /// Their sum.
    pub fn total(&self) -> f64 {
        self.policy + self.value
    }
}

/// Gradients (or Adam moments), shaped like the network.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Grads {
    w1: Vec<f32>,
    b1: Vec<f32>,
    wp: Vec<f32>,
    bp: Vec<f32>,
    wv: Vec<f32>,
    bv: Vec<f32>,
}

impl Grads {
    fn zeros(h: usize) -> Self {
        Self {
            w1: vec![0.0; INPUTS * h],
            b1: vec![0.0; h],
            wp: vec![0.0; h * COLUMNS],
            bp: vec![0.0; COLUMNS],
            wv: vec![0.0; h],
            bv: vec![0.0; 1],
        }
    }

    fn clear(&mut self) {
        for v in self.parts_mut() {
            v.fill(0.0);
        }
    }

    fn parts_mut(&mut self) -> [&mut Vec<f32>; 6] {
        [
            &mut self.w1,
            &mut self.b1,
            &mut self.wp,
            &mut self.bp,
            &mut self.wv,
            &mut self.bv,
        ]
    }
}

/// Adds one sample's gradient into `g`; returns its losses.
fn backprop(net: &Net, sample: &Sample, mirror: bool, g: &mut Grads, features: &mut Vec<usize>) -> Losses {
    let h = net.hidden;
    sample.board.features(mirror, features);
    let mut hidden = Vec::with_capacity(h);
    net.hidden_layer(features, &mut hidden);
    let (logits, v_pre) = net.heads(&hidden);
    let flip = |c: usize| if mirror { COLUMNS - 1 - c } else { c };
    // Legal columns in the mirrored frame.
    let legal: Vec<usize> = sample.board.legal().map(flip).collect();
    let mut target = [0.0f32; COLUMNS];
    for c in 0..COLUMNS {
        target[flip(c)] = sample.policy[c];
    }
    let max = legal.iter().map(|c| logits[*c]).fold(f32::NEG_INFINITY, f32::max);
    let mut p = [0.0f32; COLUMNS];
    let mut sum = 0.0;
    for c in &legal {
        p[*c] = (logits[*c] - max).exp();
        sum += p[*c];
    }
    let mut policy_loss = 0.0f64;
    let mut dlogits = [0.0f32; COLUMNS];
    for c in &legal {
        p[*c] /= sum;
        dlogits[*c] = p[*c] - target[*c];
        if target[*c] > 0.0 {
            policy_loss -= f64::from(target[*c]) * f64::from(p[*c].max(1e-12)).ln();
        }
    }
    let v = v_pre.tanh();
    let err = v - sample.value;
    let dv = 2.0 * err * (1.0 - v * v);
    for (gb, d) in g.bp.iter_mut().zip(dlogits) {
        *gb += d;
    }
    g.bv[0] += dv;
    let mut dz = vec![0.0f32; h];
    for j in 0..h {
        if hidden[j] <= 0.0 {
            continue;
        }
        let row = &net.wp[j * COLUMNS..(j + 1) * COLUMNS];
        let mut d = dv * net.wv[j];
        for k in 0..COLUMNS {
            d += dlogits[k] * row[k];
            g.wp[j * COLUMNS + k] += hidden[j] * dlogits[k];
        }
        g.wv[j] += hidden[j] * dv;
        dz[j] = d;
        g.b1[j] += d;
    }
    for &i in features.iter() {
        for (gw, d) in g.w1[i * h..(i + 1) * h].iter_mut().zip(&dz) {
            *gw += d;
        }
    }
    Losses {
        policy: policy_loss,
        value: f64::from(err * err),
    }
}

/// The mean losses of `net` on `samples` (held-out positions), without training.
pub fn evaluate(net: &Net, samples: &[Sample]) -> Losses {
    let mut scratch = Grads::zeros(net.hidden);
    let mut features = Vec::new();
    let mut sum = Losses::default();
    for sample in samples {
        let l = backprop(net, sample, false, &mut scratch, &mut features);
        sum.policy += l.policy;
        sum.value += l.value;
    }
    #[allow(clippy::cast_precision_loss)] // a count of positions
    let n = samples.len().max(1) as f64;
    Losses {
        policy: sum.policy / n,
        value: sum.value / n,
    }
}

/// The format of a training checkpoint.
pub const CHECKPOINT_FORMAT: &str = "ringrift-demo/connect4-checkpoint/v1";

/// A training's state after a step: the network, Adam's moments and the step reached; enough
/// to go on as if never stopped (but for the minibatches drawn, which depend on the step
/// resumed from).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Steps done.
    pub step: u64,
    /// The network after that step.
    pub net: Net,
    /// Adam's first moments.
    pub m: Grads,
    /// Adam's second moments.
    pub s: Grads,
}

impl Checkpoint {
    /// Writes it as JSON.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_vec(self).map_err(|e| format!("cannot encode the checkpoint: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("cannot write checkpoint {}: {e}", path.display()))
    }

    /// Reads one, checking its format and shapes.
    ///
    /// # Errors
    /// When it cannot be read, is not a checkpoint of this workload, or its parts disagree.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read checkpoint {}: {e}", path.display()))?;
        let c: Self = serde_json::from_slice(&bytes)
            .map_err(|e| format!("checkpoint {} is not a demo checkpoint: {e}", path.display()))?;
        if c.format != CHECKPOINT_FORMAT {
            return Err(format!(
                "checkpoint {} has format {:?}, not {CHECKPOINT_FORMAT:?}",
                path.display(),
                c.format
            ));
        }
        c.net
            .check()
            .map_err(|e| format!("checkpoint {}: {e}", path.display()))?;
        let shape = Grads::zeros(c.net.hidden);
        let same = |g: &Grads| {
            g.w1.len() == shape.w1.len()
                && g.b1.len() == shape.b1.len()
                && g.wp.len() == shape.wp.len()
                && g.bp.len() == shape.bp.len()
                && g.wv.len() == shape.wv.len()
                && g.bv.len() == shape.bv.len()
        };
        if !same(&c.m) || !same(&c.s) {
            return Err(format!(
                "checkpoint {}: Adam's moments do not fit the network",
                path.display()
            ));
        }
        Ok(c)
    }
}

/// Trains `net` on `samples` (not empty). `report(step, losses)` is called every
/// `report_every` steps and after the last one, with the mean losses since the previous call.
///
/// # Errors
/// When there are no samples.
pub fn train(
    net: &mut Net,
    samples: &[Sample],
    settings: &Settings,
    rng: &mut Rng,
    report_every: u64,
    report: impl FnMut(u64, Losses),
) -> Result<(), String> {
    train_resumable(
        net,
        samples,
        settings,
        rng,
        (report_every, report),
        None,
        (0, |_: &Checkpoint| {}),
    )
}

/// [`train`], going on from `resume` (its network replaces `net`; steps already done are not
/// done again), calling `checkpoint` every `every` steps (0: never) with the state reached.
///
/// # Errors
/// When there are no samples.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // step counts, sizes
pub fn train_resumable(
    net: &mut Net,
    samples: &[Sample],
    settings: &Settings,
    rng: &mut Rng,
    (report_every, mut report): (u64, impl FnMut(u64, Losses)),
    resume: Option<Checkpoint>,
    (every, mut checkpoint): (u64, impl FnMut(&Checkpoint)),
) -> Result<(), String> {
    if samples.is_empty() {
        return Err("no positions to train on".into());
    }
    let (first, mut m, mut s) = match resume {
        Some(c) => {
            *net = c.net;
            (c.step + 1, c.m, c.s)
        }
        None => (1, Grads::zeros(net.hidden), Grads::zeros(net.hidden)),
    };
    let h = net.hidden;
    let mut g = Grads::zeros(h);
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut features = Vec::new();
    let mut acc = Losses::default();
    let mut acc_n = 0u64;
    let batch = settings.batch_size.max(1);
    for step in first..=settings.steps {
        g.clear();
        for _ in 0..batch {
            let sample = &samples[rng.below(samples.len())];
            let l = backprop(net, sample, rng.below(2) == 1, &mut g, &mut features);
            acc.policy += l.policy;
            acc.value += l.value;
        }
        acc_n += batch as u64;
        let t = (step.min(1 << 20)) as i32;
        let lr = settings.learning_rate;
        let correction1 = 1.0 - beta1.powi(t);
        let correction2 = 1.0 - beta2.powi(t);
        let scale = 1.0 / batch as f32;
        let decay = 1.0 - lr * settings.weight_decay;
        let mut bv = [net.bv];
        let params: [&mut [f32]; 6] = [
            &mut net.w1,
            &mut net.b1,
            &mut net.wp,
            &mut net.bp,
            &mut net.wv,
            &mut bv,
        ];
        for ((p, (gp, mp)), sp) in params
            .into_iter()
            .zip(g.parts_mut().into_iter().zip(m.parts_mut()))
            .zip(s.parts_mut())
        {
            for i in 0..p.len() {
                let grad = gp[i] * scale;
                mp[i] = beta1 * mp[i] + (1.0 - beta1) * grad;
                sp[i] = beta2 * sp[i] + (1.0 - beta2) * grad * grad;
                let update = (mp[i] / correction1) / ((sp[i] / correction2).sqrt() + eps);
                p[i] = p[i] * decay - lr * update;
            }
        }
        net.bv = bv[0];
        net.steps += 1;
        if step % report_every.max(1) == 0 || step == settings.steps {
            let n = acc_n.max(1) as f64;
            report(
                step,
                Losses {
                    policy: acc.policy / n,
                    value: acc.value / n,
                },
            );
            acc = Losses::default();
            acc_n = 0;
        }
        if every > 0 && step % every == 0 && step < settings.steps {
            checkpoint(&Checkpoint {
                format: CHECKPOINT_FORMAT.into(),
                step,
                net: net.clone(),
                m: m.clone(),
                s: s.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::Board;

    /// From the empty board, always column 3 and a win for the side to move.
    fn column_three() -> Sample {
        let mut policy = [0.0; COLUMNS];
        policy[3] = 1.0;
        Sample {
            board: Board::new(),
            policy,
            value: 1.0,
        }
    }

    /// 400 steps of 8 at a large step size: enough to learn [`column_three`].
    fn quick() -> Settings {
        Settings {
            steps: 400,
            batch_size: 8,
            learning_rate: 0.02,
            weight_decay: 0.0,
        }
    }

    #[test]
    fn a_run_resumed_from_a_checkpoint_goes_on_where_it_stopped() {
        let sample = column_three();
        let settings = quick();
        // Uninterrupted, with checkpoints every 100 steps (none after the last step).
        let mut whole = Net::new(16, 4);
        let mut saved = Vec::new();
        train_resumable(
            &mut whole,
            std::slice::from_ref(&sample),
            &settings,
            &mut Rng::new(1),
            (50, |_, _| {}),
            None,
            (100, |c: &Checkpoint| saved.push(c.clone())),
        )
        .unwrap();
        let steps: Vec<u64> = saved.iter().map(|c| c.step).collect();
        assert_eq!(steps, [100, 200, 300]);
        // Through a file and back, then on from step 200: only the remaining steps run.
        let path = std::env::temp_dir().join(format!("ringrift-ckpt-{}", std::process::id()));
        saved[1].save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded, saved[1]);
        let mut reported = Vec::new();
        let mut resumed = Net::new(16, 99);
        train_resumable(
            &mut resumed,
            &[sample],
            &settings,
            &mut Rng::new(7),
            (50, |step, _| reported.push(step)),
            Some(loaded),
            (0, |_: &Checkpoint| {}),
        )
        .unwrap();
        assert_eq!(reported, [250, 300, 350, 400]);
        assert_eq!(resumed.steps, whole.steps, "the same number of steps in all");
        let (p, _) = resumed.evaluate(&Board::new(), &mut crate::net::Scratch::default());
        assert!(p[3] > 0.9, "{p:?}");
        // A file that is not a checkpoint is refused, naming it.
        std::fs::write(&path, b"{}").unwrap();
        assert!(
            Checkpoint::load(&path)
                .unwrap_err()
                .contains("not a demo checkpoint")
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn learns_a_fixed_target() {
        let sample = column_three();
        let mut net = Net::new(16, 4);
        let mut losses = Vec::new();
        let settings = quick();
        train(&mut net, &[sample], &settings, &mut Rng::new(1), 50, |_, l| {
            losses.push(l);
        })
        .unwrap();
        assert_eq!(losses.len(), 8);
        assert!(losses[7].total() < losses[0].total() / 4.0, "{losses:?}");
        let (p, v) = net.evaluate(&Board::new(), &mut crate::net::Scratch::default());
        assert!(p[3] > 0.9, "{p:?}");
        assert!(v > 0.8, "{v}");
        assert_eq!(net.steps, 400);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut b = Board::new();
        for c in [3, 2, 4] {
            b.play(c);
        }
        let sample = Sample {
            board: b,
            policy: [0.1, 0.1, 0.2, 0.3, 0.1, 0.1, 0.1],
            value: -0.5,
        };
        let net = Net::new(6, 9);
        let mut g = Grads::zeros(6);
        let mut f = Vec::new();
        backprop(&net, &sample, false, &mut g, &mut f);
        let loss = |n: &Net| {
            let mut g = Grads::zeros(6);
            backprop(n, &sample, false, &mut g, &mut Vec::new()).total()
        };
        b.features(false, &mut f);
        // Every weight of the active inputs, and every weight of the heads and biases.
        let mut checked = 0;
        let mut check = |what: &str, at: &dyn Fn(&mut Net) -> &mut f32, analytic: f32| {
            let mut plus = net.clone();
            *at(&mut plus) += 1e-3;
            let mut minus = net.clone();
            *at(&mut minus) -= 1e-3;
            let numeric = (loss(&plus) - loss(&minus)) / 2e-3;
            assert!(
                (numeric - f64::from(analytic)).abs() < 2e-3,
                "{what}: numeric {numeric} vs analytic {analytic}"
            );
            checked += 1;
        };
        for &input in &f {
            for j in 0..6 {
                let i = input * 6 + j;
                check(&format!("w1[{i}]"), &|n| &mut n.w1[i], g.w1[i]);
            }
        }
        for i in 0..6 * COLUMNS {
            check(&format!("wp[{i}]"), &|n| &mut n.wp[i], g.wp[i]);
        }
        for i in 0..6 {
            check(&format!("b1[{i}]"), &|n| &mut n.b1[i], g.b1[i]);
            check(&format!("wv[{i}]"), &|n| &mut n.wv[i], g.wv[i]);
        }
        for i in 0..COLUMNS {
            check(&format!("bp[{i}]"), &|n| &mut n.bp[i], g.bp[i]);
        }
        check("bv", &|n| &mut n.bv, g.bv[0]);
        assert_eq!(checked, 3 * 6 + 42 + 12 + 7 + 1);
    }
}
