//! The figures of `ringrift bench fleet`, from what the bench saw (pure): how busy the GPUs
//! were, how long a GPU stood idle between two tasks and where that time went, how far each
//! loop's use strayed from its entitlement, and which loops starved.

use std::collections::BTreeMap;

/// A task's time on its GPUs: seconds from the bench's start, and how many GPUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Busy {
    /// When it was first seen running.
    pub start: f64,
    /// When it was first seen ended (or the window's end, for one still running).
    pub end: f64,
    /// Its GPUs (a fraction for a shared one).
    pub gpus: f64,
    /// The one whole GPU it is the time on (`agent/UUID`), or none for a fraction (counted as
    /// `gpus` of a GPU).
    pub device: Option<String>,
    /// It ended without succeeding (preempted, deleted, failed): the work it did is lost.
    pub lost: bool,
}

/// GPU-seconds busy inside `window` over the GPU-seconds the fleet had in it. A whole GPU's
/// busy time is the union of its tasks' times: where the next task was seen running before the
/// one before it was seen ended (a hand-over, a preemption), the GPU counts once.
pub fn busy_fraction(busy: &[Busy], window: (f64, f64), capacity_gpus: f64) -> f64 {
    let (from, to) = window;
    let offered = (to - from) * capacity_gpus;
    if offered <= 0.0 {
        return 0.0;
    }
    let inside = |b: &Busy| (b.start.max(from), b.end.min(to));
    let mut by_device: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    let mut used = 0.0;
    for b in busy {
        match &b.device {
            Some(d) => by_device.entry(d.as_str()).or_default().push(inside(b)),
            None => used += (inside(b).1 - inside(b).0).max(0.0) * b.gpus,
        }
    }
    for spans in by_device.values_mut() {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut until = f64::NEG_INFINITY;
        for &(start, end) in spans.iter() {
            let start = start.max(until);
            if end > start {
                used += end - start;
                until = end;
            }
        }
    }
    used / offered
}

/// GPU-seconds inside `window` of tasks whose work was lost (they ended without succeeding),
/// over the GPU-seconds the fleet had in it: the part of [`busy_fraction`] that did nothing.
pub fn lost_fraction(busy: &[Busy], window: (f64, f64), capacity_gpus: f64) -> f64 {
    let (from, to) = window;
    let offered = (to - from) * capacity_gpus;
    if offered <= 0.0 {
        return 0.0;
    }
    let lost: f64 = busy
        .iter()
        .filter(|b| b.lost)
        .map(|b| (b.end.min(to) - b.start.max(from)).max(0.0) * b.gpus)
        .sum();
    lost / offered
}

/// One task's time on one whole GPU, seconds from the bench's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenancy {
    /// The GPU (its agent and UUID).
    pub gpu: String,
    /// When the task was first seen (created, with its GPUs assigned).
    pub created: f64,
    /// When it was first seen running.
    pub start: f64,
    /// When it was first seen ended (none: still running).
    pub end: Option<f64>,
}

/// How long a GPU stood idle between the end of one task and the start of the next, on
/// average over the changes of tenant that started inside the window, and the two parts of
/// that gap: until the next task was created (the controller's: seeing the end, a pass, the
/// create), then until it ran (the agent's: seeing the task, starting it, saying so).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Turnover {
    /// Changes of tenant counted.
    pub changes: usize,
    /// Mean seconds from one task's end to the next one's start on the same GPU.
    pub idle_mean_s: f64,
    /// Mean seconds from that end to the next task's creation (0 when it came first).
    pub until_created_mean_s: f64,
    /// Mean seconds from the later of that end and the creation to the start.
    pub until_running_mean_s: f64,
    /// Changes of tenant whose GPU freed while some loop had work waiting (by the last
    /// snapshot before the end): the gaps placement, not the want of work, is answerable for.
    pub while_waiting: usize,
    /// Their mean gap, seconds.
    pub while_waiting_idle_mean_s: f64,
}

/// The [`Turnover`] of every GPU, from the tasks that held each and the loops' standings
/// (snapshots in time order).
pub fn turnover(tenancies: &[Tenancy], window: (f64, f64), snapshots: &[Snapshot]) -> Turnover {
    let waiting_at = |t: f64| {
        let i = snapshots.partition_point(|s| s.at <= t);
        i > 0 && snapshots[i - 1].loops.values().any(|l| l.waiting > 0)
    };
    let mut by_gpu: BTreeMap<&str, Vec<&Tenancy>> = BTreeMap::new();
    for t in tenancies {
        by_gpu.entry(t.gpu.as_str()).or_default().push(t);
    }
    let (mut changes, mut idle, mut until_created, mut until_running) = (0_usize, 0.0, 0.0, 0.0);
    let (mut while_waiting, mut waiting_idle) = (0_usize, 0.0);
    for held in by_gpu.values_mut() {
        held.sort_by(|a, b| a.start.total_cmp(&b.start));
        for pair in held.windows(2) {
            let (before, next) = (pair[0], pair[1]);
            let Some(ended) = before.end else { continue };
            if next.start < window.0 || next.start > window.1 {
                continue;
            }
            // Seen running before the task before it was seen ended (a hand-over whose
            // start was written before the other's end): no idle time.
            let gap = (next.start - ended).max(0.0);
            changes += 1;
            idle += gap;
            until_created += (next.created - ended).max(0.0).min(gap);
            until_running += (next.start - next.created.max(ended)).max(0.0);
            if waiting_at(ended) {
                while_waiting += 1;
                waiting_idle += gap;
            }
        }
    }
    if changes == 0 {
        return Turnover::default();
    }
    #[allow(clippy::cast_precision_loss)]
    let n = changes as f64;
    #[allow(clippy::cast_precision_loss)]
    let while_waiting_idle_mean_s = if while_waiting == 0 {
        0.0
    } else {
        waiting_idle / while_waiting as f64
    };
    Turnover {
        changes,
        idle_mean_s: idle / n,
        until_created_mean_s: until_created / n,
        until_running_mean_s: until_running / n,
        while_waiting,
        while_waiting_idle_mean_s,
    }
}

/// One loop's standing in the fair share as its status said, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Standing {
    /// GPUs it is entitled to.
    pub entitled: f64,
    /// GPUs its tasks hold.
    pub used: f64,
    /// Its work units waiting for a place.
    pub waiting: u32,
}

/// Every loop's standing at one instant (seconds from the bench's start).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When.
    pub at: f64,
    /// By loop.
    pub loops: BTreeMap<String, Standing>,
}

/// Shortfall or excess under one GPU is rounding: work comes in whole GPUs.
const SLACK_GPUS: f64 = 1.0;

/// Each snapshot's weight in a time average: the time to the next one (the last gets the
/// mean interval).
fn weights(snapshots: &[Snapshot]) -> Vec<f64> {
    let gaps: Vec<f64> = snapshots
        .windows(2)
        .map(|w| (w[1].at - w[0].at).max(0.0))
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let mean = if gaps.is_empty() {
        1.0
    } else {
        gaps.iter().sum::<f64>() / gaps.len() as f64
    };
    gaps.into_iter().chain(std::iter::once(mean)).collect()
}

/// For each loop, the time average of |used − entitled| / entitled over the snapshots where
/// it was entitled to something (a loop with no demand is entitled to nothing and owed
/// nothing).
pub fn share_errors(snapshots: &[Snapshot]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (s, w) in snapshots.iter().zip(weights(snapshots)) {
        for (name, st) in &s.loops {
            if st.entitled > 0.0 {
                let e = sums.entry(name.clone()).or_default();
                e.0 += w * (st.used - st.entitled).abs() / st.entitled;
                e.1 += w;
            }
        }
    }
    sums.into_iter()
        .map(|(name, (sum, time))| (name, if time > 0.0 { sum / time } else { 0.0 }))
        .collect()
}

/// The share of the snapshots in which no loop had a work unit waiting for a place: while
/// none waits, idle GPUs are for want of work, not of placement.
pub fn nothing_waiting(snapshots: &[Snapshot]) -> f64 {
    if snapshots.is_empty() {
        return 0.0;
    }
    let idle = snapshots
        .iter()
        .filter(|s| s.loops.values().all(|l| l.waiting == 0))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let share = idle as f64 / snapshots.len() as f64;
    share
}

/// The time average of the share of the fleet's GPUs that no work could have used: the GPUs
/// left over when every loop's units in use and waiting (one GPU each; a training's eight count
/// as one, so this errs low) are set against `capacity`. Idle GPUs beyond this share are
/// placement's (work waited while they stood idle); this share no placement could fill.
pub fn want_of_work(snapshots: &[Snapshot], capacity: f64) -> f64 {
    if snapshots.is_empty() || capacity <= 0.0 {
        return 0.0;
    }
    let (mut sum, mut time) = (0.0, 0.0);
    for (s, w) in snapshots.iter().zip(weights(snapshots)) {
        let wanted: f64 = s.loops.values().map(|l| l.used + f64::from(l.waiting)).sum();
        sum += w * (capacity - wanted).max(0.0) / capacity;
        time += w;
    }
    if time > 0.0 { sum / time } else { 0.0 }
}

/// Whether `name` starves in `s`: it has work waiting and holds at least a GPU less than its
/// entitlement, while another loop holds at least a GPU more than its own (its share is lent).
fn starving(s: &Snapshot, name: &str) -> bool {
    let Some(me) = s.loops.get(name) else {
        return false;
    };
    me.waiting > 0
        && me.used < me.entitled - SLACK_GPUS
        && s.loops
            .iter()
            .any(|(other, st)| other != name && st.used > st.entitled + SLACK_GPUS)
}

/// For each loop, its longest spell of starving (seconds, from the first snapshot that saw it
/// to the first that did not, or to the last snapshot).
pub fn longest_starvation(snapshots: &[Snapshot]) -> BTreeMap<String, f64> {
    let names: std::collections::BTreeSet<&String> = snapshots.iter().flat_map(|s| s.loops.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let (mut longest, mut since): (f64, Option<f64>) = (0.0, None);
            for s in snapshots {
                match (starving(s, name), since) {
                    (true, None) => since = Some(s.at),
                    (false, Some(t)) => {
                        longest = longest.max(s.at - t);
                        since = None;
                    }
                    _ => {}
                }
            }
            if let (Some(t), Some(last)) = (since, snapshots.last()) {
                longest = longest.max(last.at - t);
            }
            (name.clone(), longest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn busy_counts_only_the_window_and_the_gpus_held() {
        let on = |device: &str, start: f64, end: f64| Busy {
            start,
            end,
            gpus: 1.0,
            device: Some(device.to_owned()),
            lost: false,
        };
        let busy = [
            // Two GPUs before the window.
            on("a/0", 0.0, 10.0),
            on("a/1", 0.0, 10.0),
            // Half inside the window.
            on("a/2", 15.0, 25.0),
            // A quarter GPU the whole window.
            Busy {
                start: 0.0,
                end: 30.0,
                gpus: 0.25,
                device: None,
                lost: true,
            },
            // Outside.
            on("a/3", 21.0, 30.0),
        ];
        // Window 10..20 on 4 GPUs: 40 GPU-seconds offered; 5 + 2.5 used.
        assert!(close(busy_fraction(&busy, (10.0, 20.0), 4.0), 7.5 / 40.0));
        assert!(
            close(busy_fraction(&busy, (10.0, 10.0), 4.0), 0.0),
            "an empty window"
        );
        // The quarter GPU's task was lost: 2.5 of the 40.
        assert!(close(lost_fraction(&busy, (10.0, 20.0), 4.0), 2.5 / 40.0));
        assert!(close(lost_fraction(&busy, (10.0, 10.0), 4.0), 0.0));
    }

    #[test]
    fn a_gpu_two_tasks_overlap_on_counts_once() {
        let on = |start: f64, end: f64| Busy {
            start,
            end,
            gpus: 1.0,
            device: Some("a/0".into()),
            lost: false,
        };
        // The next task seen running 0.2 s before the one before it was seen ended, then a
        // gap of 1 s, then one inside another's time.
        let busy = [on(0.0, 4.0), on(3.8, 8.0), on(9.0, 12.0), on(10.0, 11.0)];
        assert!(close(busy_fraction(&busy, (0.0, 12.0), 1.0), 11.0 / 12.0));
    }

    fn tenancy(gpu: &str, created: f64, start: f64, end: Option<f64>) -> Tenancy {
        Tenancy {
            gpu: gpu.to_owned(),
            created,
            start,
            end,
        }
    }

    #[test]
    fn want_of_work_is_the_capacity_left_over_by_work_in_use_and_waiting() {
        // 10 GPUs. At 0 s: 6 in use, 1 waiting: 3 no work could use. At 1 s: 4 in use, 8
        // waiting: none. At 3 s: nothing at all: all 10 (weighted by the mean interval, 1.5 s).
        let standings = [
            snap(0.0, &[("a", 5.0, 4.0, 1), ("b", 5.0, 2.0, 0)]),
            snap(1.0, &[("a", 5.0, 4.0, 8)]),
            snap(3.0, &[]),
        ];
        let want = want_of_work(&standings, 10.0);
        let expected = (1.0 * 0.3 + 2.0 * 0.0 + 1.5 * 1.0) / 4.5;
        assert!((want - expected).abs() < 1e-9, "{want} against {expected}");
        assert!(want_of_work(&[], 10.0).abs() < f64::EPSILON);
        assert!(want_of_work(&standings, 0.0).abs() < f64::EPSILON);
    }

    #[test]
    fn turnover_splits_each_gpus_idle_gaps_between_controller_and_agent() {
        let held = [
            // GPU a: ends at 4; the next is created at 4.5 and runs at 4.75.
            tenancy("a", 0.0, 0.1, Some(4.0)),
            tenancy("a", 4.5, 4.75, Some(9.0)),
            // … then one created before that end (a preemption's replacement), running at 9.25.
            tenancy("a", 8.5, 9.25, None),
            // GPU b: ends at 3; the next starts at 4, before the window.
            tenancy("b", 0.0, 0.0, Some(3.0)),
            tenancy("b", 3.5, 4.0, Some(8.0)),
            // A task still running has no gap after it.
            tenancy("c", 0.0, 0.0, None),
        ];
        // Work waited from 8 s on: the second change only.
        let standings = [snap(0.0, &[("l", 4.0, 4.0, 0)]), snap(8.0, &[("l", 4.0, 3.0, 5)])];
        let t = turnover(&held, (4.5, 20.0), &standings);
        assert_eq!(t.changes, 2);
        assert_eq!(t.while_waiting, 1);
        assert!(close(t.while_waiting_idle_mean_s, 0.25), "{t:?}");
        assert!(close(t.idle_mean_s, 0.5), "{t:?}");
        assert!(close(t.until_created_mean_s, 0.25), "{t:?}");
        assert!(close(t.until_running_mean_s, 0.25), "{t:?}");
        assert_eq!(
            turnover(&held, (30.0, 40.0), &standings),
            Turnover::default(),
            "nothing in the window"
        );
    }

    #[test]
    fn a_hand_over_seen_starting_before_the_end_is_a_change_without_a_gap() {
        let held = [
            // Created at 2 to follow a task that ends at 4.1; seen running at 4.0.
            tenancy("a", 0.0, 0.0, Some(4.1)),
            tenancy("a", 2.0, 4.0, Some(8.0)),
            // The next follows 0.1 s after the end.
            tenancy("a", 6.0, 8.1, None),
        ];
        let t = turnover(&held, (0.0, 20.0), &[]);
        assert_eq!(t.changes, 2);
        assert!(close(t.idle_mean_s, 0.05), "{t:?}");
        assert!(close(t.until_created_mean_s, 0.0), "{t:?}");
        assert!(close(t.until_running_mean_s, 0.05), "{t:?}");
    }

    fn snap(at: f64, loops: &[(&str, f64, f64, u32)]) -> Snapshot {
        Snapshot {
            at,
            loops: loops
                .iter()
                .map(|(n, entitled, used, waiting)| {
                    (
                        (*n).to_owned(),
                        Standing {
                            entitled: *entitled,
                            used: *used,
                            waiting: *waiting,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_share_error_is_a_time_average_over_the_time_a_loop_was_entitled() {
        let snapshots = [
            snap(0.0, &[("a", 10.0, 5.0, 3), ("b", 0.0, 0.0, 0)]),
            // Three seconds on: a exact for the rest of the run.
            snap(3.0, &[("a", 10.0, 10.0, 0), ("b", 0.0, 0.0, 0)]),
            snap(4.0, &[("a", 10.0, 10.0, 0), ("b", 4.0, 6.0, 0)]),
        ];
        let errors = share_errors(&snapshots);
        // a: 0.5 for 3 s, 0 for 1 s, 0 for the last (weighted by the mean gap, 2 s): 1.5 / 6.
        assert!(close(errors["a"], 1.5 / 6.0), "{errors:?}");
        // b counted only where it was entitled: 0.5.
        assert!(close(errors["b"], 0.5), "{errors:?}");
    }

    #[test]
    fn nothing_waiting_counts_the_snapshots_without_any_waiting_unit() {
        let snaps = [
            snap(0.0, &[("a", 4.0, 4.0, 0), ("b", 4.0, 4.0, 0)]),
            snap(1.0, &[("a", 4.0, 4.0, 0), ("b", 4.0, 3.0, 2)]),
            snap(2.0, &[("a", 4.0, 2.0, 0), ("b", 4.0, 4.0, 0)]),
            snap(3.0, &[("a", 4.0, 4.0, 1), ("b", 4.0, 4.0, 0)]),
        ];
        assert!(close(nothing_waiting(&snaps), 0.5));
        assert!(close(nothing_waiting(&[]), 0.0));
    }

    #[test]
    fn a_loop_starves_only_while_short_with_work_waiting_and_its_share_lent() {
        let snapshots = [
            // Short with work waiting, b over its share: starving from 0 ...
            snap(0.0, &[("a", 10.0, 2.0, 5), ("b", 10.0, 18.0, 0)]),
            snap(2.0, &[("a", 10.0, 4.0, 5), ("b", 10.0, 16.0, 0)]),
            // ... until 5.
            snap(5.0, &[("a", 10.0, 9.5, 5), ("b", 10.0, 10.5, 0)]),
            // Short but nothing waits: not starving.
            snap(6.0, &[("a", 10.0, 2.0, 0), ("b", 10.0, 18.0, 3)]),
            // Short and waiting, but nobody holds more than its own: the fleet is just full.
            snap(7.0, &[("a", 10.0, 5.0, 2), ("b", 10.0, 10.0, 3)]),
            // Starving again at the end of the run: 8..9.
            snap(8.0, &[("a", 10.0, 2.0, 5), ("b", 10.0, 18.0, 0)]),
            snap(9.0, &[("a", 10.0, 2.0, 5), ("b", 10.0, 18.0, 0)]),
        ];
        let spells = longest_starvation(&snapshots);
        assert!(close(spells["a"], 5.0), "{spells:?}");
        assert!(close(spells["b"], 0.0), "{spells:?}");
        assert!(longest_starvation(&[]).is_empty());
    }
}
