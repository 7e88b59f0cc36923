//! Summary statistics for benchmark samples.

/// A count as a float: benchmark counts stay far below 2^52, where `f64` is exact.
#[allow(clippy::cast_precision_loss)]
fn count(n: usize) -> f64 {
    n as f64
}

/// `n` events in `seconds`, per second, rounded.
pub fn per_second(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        round3(count(n) / seconds)
    } else {
        0.0
    }
}

/// The `p`-th percentile (0..=100) of `samples`, by nearest rank; 0 for no samples.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * count(samples.len())).ceil().max(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = (rank as usize).min(samples.len()) - 1;
    samples[index]
}

/// Rounds to three decimals, for readable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The memory figures `names` (`VmRSS:`, `RssAnon:`, …) of process `pid`, KiB, read from
/// `/proc/<pid>/status`; 0 for one it does not give (or a process gone).
pub fn proc_status_kib<const N: usize>(pid: u32, names: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    })
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values by construction
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(per_second(1000, 0.5), 2000.0);
        assert_eq!(per_second(10, 0.0), 0.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut s, 50.0), 50.0);
        assert_eq!(percentile(&mut s, 99.0), 99.0);
        assert_eq!(percentile(&mut s, 100.0), 100.0);
        let mut unsorted = vec![5.0, 1.0, 3.0];
        assert_eq!(percentile(&mut unsorted, 50.0), 3.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
        assert_eq!(percentile(&mut [7.0], 99.0), 7.0);
    }

    #[test]
    fn rounding() {
        assert_eq!(round3(1.234_56), 1.235);
    }
}
