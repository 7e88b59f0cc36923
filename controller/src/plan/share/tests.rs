use super::*;

fn claimant(id: &str, weight: f64, gpus: f64, cpu: f64) -> Claimant {
    Claimant {
        id: id.into(),
        weight,
        min_gpus: 0.0,
        demand: Amount::new(gpus, cpu),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

#[track_caller]
fn gpus_are(got: &[Amount], want: &[f64]) {
    let gpus: Vec<f64> = got.iter().map(|a| a.gpus).collect();
    assert!(
        gpus.len() == want.len() && gpus.iter().zip(want).all(|(g, w)| close(*g, *w)),
        "GPUs {gpus:?}, wanted {want:?}"
    );
}

/// 12 GPUs, 96 cores.
fn fleet() -> Amount {
    Amount::new(12.0, 96_000.0)
}

#[test]
fn equal_weights_split_evenly_and_weights_split_in_proportion() {
    let even = entitlements(
        fleet(),
        &[claimant("a", 1.0, 100.0, 0.0), claimant("b", 1.0, 100.0, 0.0)],
    );
    gpus_are(&even, &[6.0, 6.0]);
    let weighted = entitlements(
        fleet(),
        &[
            claimant("a", 1.0, 100.0, 0.0),
            claimant("b", 2.0, 100.0, 0.0),
            claimant("c", 3.0, 100.0, 0.0),
        ],
    );
    gpus_are(&weighted, &[2.0, 4.0, 6.0]);
}

#[test]
fn a_claimant_that_wants_less_gets_what_it_wants_and_the_rest_is_shared_by_weight() {
    // Water-filling: a wants 2 of its 4; b and c split the other 10 as 1:4.
    let got = entitlements(
        fleet(),
        &[
            claimant("a", 1.0, 2.0, 0.0),
            claimant("b", 1.0, 100.0, 0.0),
            claimant("c", 4.0, 100.0, 0.0),
        ],
    );
    gpus_are(&got, &[2.0, 2.0, 8.0]);
    // Nobody wants it all: everyone has its demand, and the rest is nobody's.
    let got = entitlements(
        fleet(),
        &[claimant("a", 1.0, 3.0, 0.0), claimant("b", 5.0, 4.0, 0.0)],
    );
    gpus_are(&got, &[3.0, 4.0]);
}

#[test]
fn the_dominant_resource_is_what_is_shared_fairly() {
    // The DRF paper's example: 9 GPUs and 18 cores; a's work needs 1 GPU for 4 cores, b's 3
    // GPUs for 1 core. Each ends with two thirds of its dominant resource: a 3 GPUs and 12
    // cores, b 6 GPUs and 2 cores.
    let capacity = Amount::new(9.0, 18_000.0);
    let got = entitlements(
        capacity,
        &[
            claimant("a", 1.0, 100.0, 400_000.0),
            claimant("b", 1.0, 300.0, 100_000.0),
        ],
    );
    gpus_are(&got, &[3.0, 6.0]);
    assert!(close(got[0].cpu_millis, 12_000.0), "{got:?}");
    assert!(close(got[1].cpu_millis, 2_000.0), "{got:?}");
    for a in &got {
        assert!(close(a.dominant(&capacity), 2.0 / 3.0), "{got:?}");
    }
}

#[test]
fn work_that_needs_only_cpu_keeps_growing_after_the_gpus_are_gone() {
    // Two GPU loops (1 core per 12 GPUs) run the GPUs out at half each; the CPU-only loop is
    // not stopped by that and takes every core left.
    let got = entitlements(
        fleet(),
        &[
            claimant("gpu-1", 1.0, 12.0, 1_000.0),
            claimant("gpu-2", 1.0, 12.0, 1_000.0),
            claimant("cpu", 1.0, 0.0, 1_000_000.0),
        ],
    );
    gpus_are(&got, &[6.0, 6.0, 0.0]);
    assert!(close(got[0].cpu_millis, 500.0), "{got:?}");
    assert!(close(got[2].cpu_millis, 95_000.0), "{got:?}");
    // When the CPU runs out first, the GPU loop's dominant share is held to the CPU loop's:
    // 100 GPUs' worth of work with 8 cores is 12 GPUs with 0.96 core at most.
    let got = entitlements(
        fleet(),
        &[
            claimant("gpu", 1.0, 100.0, 8_000.0),
            claimant("cpu", 1.0, 0.0, 1_000_000.0),
        ],
    );
    let shares: Vec<f64> = got.iter().map(|a| a.dominant(&fleet())).collect();
    assert!(close(shares[0], shares[1]) && shares[0] < 1.0, "{got:?}");
}

#[test]
fn floors_come_first_and_are_scaled_when_they_do_not_fit() {
    let mut small = claimant("small", 1.0, 100.0, 0.0);
    small.min_gpus = 4.0;
    let got = entitlements(fleet(), &[small.clone(), claimant("big", 100.0, 100.0, 0.0)]);
    gpus_are(&got, &[4.0, 8.0]);
    // A floor is no more than the demand.
    small.demand.gpus = 1.0;
    let got = entitlements(fleet(), &[small.clone(), claimant("big", 100.0, 100.0, 0.0)]);
    gpus_are(&got, &[1.0, 11.0]);
    // Floors of 12 and 6 on 12 GPUs: scaled alike, 8 and 4.
    let mut a = claimant("a", 1.0, 100.0, 0.0);
    a.min_gpus = 12.0;
    let mut b = claimant("b", 1.0, 100.0, 0.0);
    b.min_gpus = 6.0;
    let got = entitlements(fleet(), &[a, b]);
    gpus_are(&got, &[8.0, 4.0]);
}

#[test]
fn one_claimant_with_a_million_units_takes_no_more_than_its_share() {
    let got = entitlements(
        fleet(),
        &[
            claimant("huge", 1.0, 1_000_000.0, 1_000_000_000.0),
            claimant("small", 1.0, 100.0, 0.0),
        ],
    );
    // The huge demand counts as the whole fleet's GPUs (with its work's CPU in proportion):
    // it gets half, as the small one does.
    gpus_are(&got, &[6.0, 6.0]);
    assert!(close(got[0].cpu_millis, 6_000.0), "{got:?}");
}

#[test]
fn weights_of_one_to_a_thousand_still_give_the_light_one_something() {
    let got = entitlements(
        fleet(),
        &[
            claimant("light", 1.0, 100.0, 0.0),
            claimant("heavy", 1000.0, 100.0, 0.0),
        ],
    );
    assert!(close(got[0].gpus, 12.0 / 1001.0), "{got:?}");
    assert!(close(got[1].gpus, 12.0 * 1000.0 / 1001.0), "{got:?}");
    // A weight of 0 is the smallest weight, not none.
    let got = entitlements(
        fleet(),
        &[
            claimant("zero", 0.0, 100.0, 0.0),
            claimant("one", 1.0, 100.0, 0.0),
        ],
    );
    assert!(got[0].gpus > 0.0 && got[0].gpus < 1e-3, "{got:?}");
}

#[test]
fn a_claimant_that_appears_late_is_entitled_at_once() {
    let before = entitlements(fleet(), &[claimant("a", 1.0, 100.0, 0.0)]);
    gpus_are(&before, &[12.0]);
    let after = entitlements(
        fleet(),
        &[claimant("a", 1.0, 100.0, 0.0), claimant("late", 2.0, 100.0, 0.0)],
    );
    gpus_are(&after, &[4.0, 8.0]);
}

#[test]
fn nothing_to_share_or_nothing_wanted() {
    assert!(entitlements(fleet(), &[]).is_empty());
    gpus_are(
        &entitlements(Amount::default(), &[claimant("a", 1.0, 4.0, 1000.0)]),
        &[0.0],
    );
    gpus_are(&entitlements(fleet(), &[claimant("idle", 1.0, 0.0, 0.0)]), &[0.0]);
    // No CPU in the fleet: CPU demands are dropped, GPUs still shared.
    let got = entitlements(
        Amount::new(4.0, 0.0),
        &[claimant("a", 1.0, 4.0, 1000.0), claimant("b", f64::NAN, 4.0, 0.0)],
    );
    assert!(got[0].gpus > 3.99 && got[0].cpu_millis == 0.0, "{got:?}");
}

/// A small deterministic generator (xorshift), so the property test needs no dependency and
/// fails the same way every time.
struct Rng(u64);

impl Rng {
    fn bits(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In [0, 1).
    fn next(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.bits() >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }

    /// In [0, n).
    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.bits() % n).unwrap()
    }
}

#[test]
fn random_fleets_are_shared_within_capacity_demand_and_fairly() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..500 {
        let capacity = Amount::new((rng.next() * 64.0).floor(), (rng.next() * 512_000.0).floor());
        let n = 1 + rng.below(12);
        let claimants: Vec<Claimant> = (0..n)
            .map(|i| Claimant {
                id: format!("c{i}"),
                weight: 1.0 + (rng.next() * 3.0).floor(),
                min_gpus: if rng.next() < 0.2 {
                    (rng.next() * 4.0).floor()
                } else {
                    0.0
                },
                demand: Amount::new(
                    if rng.next() < 0.8 {
                        (rng.next() * 40.0).floor()
                    } else {
                        0.0
                    },
                    (rng.next() * 300_000.0).floor(),
                ),
            })
            .collect();
        let got = entitlements(capacity, &claimants);
        let sum = got.iter().fold(Amount::default(), |s, a| s.plus(a));
        assert!(
            sum.gpus <= capacity.gpus + 1e-6 && sum.cpu_millis <= capacity.cpu_millis + 1e-3,
            "case {case}: over capacity {sum:?} of {capacity:?}"
        );
        let demand: Vec<Amount> = claimants.iter().map(|c| within(&c.demand, &capacity)).collect();
        for (i, a) in got.iter().enumerate() {
            assert!(
                a.gpus <= demand[i].gpus + 1e-6 && a.cpu_millis <= demand[i].cpu_millis + 1e-3,
                "case {case}: {i} over its demand"
            );
        }
        // Pareto: a claimant short of its demand uses a resource that ran out.
        let out_gpus = sum.gpus >= capacity.gpus - 1e-4;
        let out_cpu = sum.cpu_millis >= capacity.cpu_millis - 1e-1;
        for (i, a) in got.iter().enumerate() {
            let short = a.dominant(&capacity) < demand[i].dominant(&capacity) - 1e-6;
            let blocked = (out_gpus && demand[i].gpus > 0.0) || (out_cpu && demand[i].cpu_millis > 0.0);
            assert!(
                !short || blocked,
                "case {case}: {i} short with room left: {got:?}"
            );
        }
    }
}

#[test]
fn random_gpu_demands_are_water_filled() {
    // GPU-only demands, no floors: every claimant short of its demand stands at one level of
    // GPUs per weight, and every claimant with its whole demand at or below that level.
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for case in 0..500 {
        let capacity = Amount::new(1.0 + (rng.next() * 200.0).floor(), 1000.0);
        let n = 1 + rng.below(12);
        let claimants: Vec<Claimant> = (0..n)
            .map(|i| {
                claimant(
                    &format!("c{i}"),
                    1.0 + (rng.next() * 3.0).floor(),
                    (rng.next() * 60.0).floor(),
                    0.0,
                )
            })
            .collect();
        let got = entitlements(capacity, &claimants);
        let level: Vec<f64> = got
            .iter()
            .zip(&claimants)
            .map(|(a, c)| a.gpus / c.weight)
            .collect();
        let short: Vec<usize> = (0..n)
            .filter(|i| got[*i].gpus < claimants[*i].demand.gpus.min(capacity.gpus) - 1e-6)
            .collect();
        if let Some(first) = short.first() {
            for i in &short {
                assert!(
                    close(level[*i], level[*first]),
                    "case {case}: unequal levels {level:?}"
                );
            }
            for i in 0..n {
                assert!(
                    level[i] <= level[*first] + 1e-6,
                    "case {case}: {i} above the level {level:?}"
                );
            }
            let total: f64 = got.iter().map(|a| a.gpus).sum();
            assert!(
                close(total, capacity.gpus),
                "case {case}: not all shared: {total}"
            );
        }
    }
}
