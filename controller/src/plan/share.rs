//! Fair share of the fleet between claimants — each `TrainingLoop`, and each job outside a
//! loop — without I/O.
//!
//! Weighted dominant-resource fairness (Ghodsi et al., "Dominant Resource Fairness", NSDI 2011)
//! over GPUs and CPU, capped by demand and with a floor:
//!
//! - A claimant's *demand* is what its live and waiting work would hold. Its *dominant share*
//!   of an amount is the largest fraction of the fleet's capacity that amount takes of any
//!   resource (3 of 12 GPUs and 2 of 64 cores: 0.25).
//! - Floors first: each claimant is entitled to `minGPUs` (no more than it demands), with the
//!   CPU its demand asks alongside; floors that do not all fit are scaled down alike.
//! - Then water-filling: every claimant's dominant share grows as `weight × level`, until it
//!   has its whole demand or a resource it uses runs out; the level rises until every claimant
//!   is stopped one way or the other. So a claimant that wants less than its weighted share
//!   gets what it wants, and the rest is divided among the others by weight; a claimant that
//!   needs only CPU keeps growing after the GPUs are gone.
//!
//! The entitlement is what placement orders work by and what preemption takes back (see
//! [`super::placement`]); capacity nobody is entitled to is lent to whoever has work.

/// An amount of the two resources shared: GPUs and CPU (thousandths of a core).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[must_use]
pub struct Amount {
    /// GPUs (fractions allowed: an entitlement need not be whole).
    pub gpus: f64,
    /// CPU, thousandths of a core.
    pub cpu_millis: f64,
}

impl Amount {
    /// `gpus` and `cpu_millis`.
    pub fn new(gpus: f64, cpu_millis: f64) -> Self {
        Self { gpus, cpu_millis }
    }

    /// The largest fraction of `capacity` this amount takes of any resource (0 for a resource
    /// the fleet has none of).
    pub fn dominant(&self, capacity: &Amount) -> f64 {
        let part = |want: f64, have: f64| if have > 0.0 { want / have } else { 0.0 };
        part(self.gpus, capacity.gpus).max(part(self.cpu_millis, capacity.cpu_millis))
    }

    fn scaled(&self, by: f64) -> Amount {
        Amount::new(self.gpus * by, self.cpu_millis * by)
    }

    /// Sum of two amounts.
    pub fn plus(&self, other: &Amount) -> Amount {
        Amount::new(self.gpus + other.gpus, self.cpu_millis + other.cpu_millis)
    }

    /// Difference, never below zero in either resource.
    pub fn minus(&self, other: &Amount) -> Amount {
        Amount::new(
            (self.gpus - other.gpus).max(0.0),
            (self.cpu_millis - other.cpu_millis).max(0.0),
        )
    }
}

/// A claimant as the share sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimant {
    /// Who (for example `namespace/TrainingLoop/name`).
    pub id: String,
    /// Its weight (`share.weight`); a weight that is not positive counts as the smallest one.
    pub weight: f64,
    /// GPUs it is entitled to before any sharing (`share.minGPUs`), up to its demand.
    pub min_gpus: f64,
    /// What its live and waiting work would hold.
    pub demand: Amount,
}

/// The smallest weight: a weight of 0 (or less, or not a number) still grows, slowly, so no
/// claimant with demand is entitled to nothing.
const MIN_WEIGHT: f64 = 1e-6;

/// Bisection steps per level search: the level is found to 2⁻⁶⁰ of its range.
const STEPS: u32 = 60;

/// Each claimant's entitlement, in the order given: its floor, then its weighted share by
/// water-filling, never more than its demand, never more in all than `capacity`.
pub fn entitlements(capacity: Amount, claimants: &[Claimant]) -> Vec<Amount> {
    // Demands as far as the fleet could meet them (scaled down whole, so the mix of GPUs and
    // CPU a claimant's work needs is kept), and each one's dominant share.
    let demand: Vec<Amount> = claimants.iter().map(|c| within(&c.demand, &capacity)).collect();
    let full: Vec<f64> = demand.iter().map(|d| d.dominant(&capacity)).collect();
    let weight: Vec<f64> = claimants
        .iter()
        .map(|c| {
            if c.weight.is_finite() {
                c.weight.max(MIN_WEIGHT)
            } else {
                MIN_WEIGHT
            }
        })
        .collect();
    let floor = floors(capacity, claimants, &demand);
    // The fraction of its demand each claimant gets at `level`, while not frozen.
    let at = |i: usize, level: f64| -> f64 {
        if full[i] <= 0.0 {
            return 0.0;
        }
        (weight[i] * level / full[i]).clamp(floor[i], 1.0)
    };
    let mut frozen: Vec<Option<f64>> = full.iter().map(|f| (*f <= 0.0).then_some(0.0)).collect();
    let fraction = |frozen: &[Option<f64>], level: f64| -> Vec<f64> {
        (0..claimants.len())
            .map(|i| frozen[i].unwrap_or_else(|| at(i, level)))
            .collect()
    };
    let used = |t: &[f64]| -> Amount {
        t.iter()
            .zip(&demand)
            .fold(Amount::default(), |sum, (t, d)| sum.plus(&d.scaled(*t)))
    };
    let fits = |a: &Amount| {
        a.gpus <= capacity.gpus * (1.0 + 1e-9) + 1e-9
            && a.cpu_millis <= capacity.cpu_millis * (1.0 + 1e-9) + 1e-9
    };
    let mut low = 0.0_f64;
    // Each round freezes at least one claimant: at most one round per claimant.
    for _ in 0..=claimants.len() {
        let active: Vec<usize> = (0..claimants.len()).filter(|i| frozen[*i].is_none()).collect();
        if active.is_empty() {
            break;
        }
        // The level at which every active claimant has its whole demand.
        let high = active.iter().map(|i| full[*i] / weight[*i]).fold(low, f64::max);
        if fits(&used(&fraction(&frozen, high))) {
            for i in active {
                frozen[i] = Some(1.0);
            }
            break;
        }
        // The highest level that fits: a resource runs out there.
        let (mut lo, mut hi) = (low, high);
        for _ in 0..STEPS {
            let mid = f64::midpoint(lo, hi);
            if fits(&used(&fraction(&frozen, mid))) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        low = lo;
        let t = fraction(&frozen, lo);
        let total = used(&t);
        let out_gpus = total.gpus >= capacity.gpus * (1.0 - 1e-9);
        let out_cpu = total.cpu_millis >= capacity.cpu_millis * (1.0 - 1e-9);
        let mut stopped = false;
        for i in active {
            let uses_out = (out_gpus && demand[i].gpus > 0.0) || (out_cpu && demand[i].cpu_millis > 0.0);
            if uses_out || t[i] >= 1.0 {
                frozen[i] = Some(t[i]);
                stopped = true;
            }
        }
        if !stopped {
            // Numerically nothing ran out: stop where the level fits.
            for (i, f) in frozen.iter_mut().enumerate() {
                f.get_or_insert(t[i]);
            }
            break;
        }
    }
    frozen
        .iter()
        .zip(&demand)
        .map(|(t, d)| d.scaled(t.unwrap_or(0.0)))
        .collect()
}

/// `demand` scaled down whole until no resource is more than `capacity` has; a resource the
/// fleet has none of is dropped (nothing can be entitled to it).
fn within(demand: &Amount, capacity: &Amount) -> Amount {
    let keep = |want: f64, have: f64| if have > 0.0 && want > 0.0 { want } else { 0.0 };
    let d = Amount::new(
        keep(demand.gpus, capacity.gpus),
        keep(demand.cpu_millis, capacity.cpu_millis),
    );
    let over = d.dominant(capacity);
    if over > 1.0 { d.scaled(1.0 / over) } else { d }
}

/// The fraction of its demand each claimant's floor is: `minGPUs` of its demanded GPUs (and the
/// CPU in proportion), scaled down alike when the floors do not all fit.
fn floors(capacity: Amount, claimants: &[Claimant], demand: &[Amount]) -> Vec<f64> {
    let wanted: Vec<f64> = claimants
        .iter()
        .zip(demand)
        .map(|(c, d)| {
            if d.gpus > 0.0 && c.min_gpus > 0.0 {
                (c.min_gpus / d.gpus).min(1.0)
            } else {
                0.0
            }
        })
        .collect();
    let total = wanted
        .iter()
        .zip(demand)
        .fold(Amount::default(), |sum, (t, d)| sum.plus(&d.scaled(*t)));
    let room = |want: f64, have: f64| if want > have { have / want } else { 1.0 };
    let scale = room(total.gpus, capacity.gpus).min(room(total.cpu_millis, capacity.cpu_millis));
    wanted.iter().map(|t| t * scale).collect()
}

#[cfg(test)]
mod tests;
