//! What a holder has sent of each artifact lately, chunk by chunk. Its chunks answer reports
//! the counts (`sent`, one digit per chunk), and pullers ask it first for what it has sent
//! least and take the chunks it has sent more often from the pullers that already have them
//! ([`super::plan`]). So the first holder of a new artifact puts every chunk into the swarm once
//! before it sends any twice ("super-seeding"): its uplink is the one every copy starts from,
//! and a chunk it sends twice while another is still nowhere else is time the whole spread
//! waits.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts of an artifact nobody has asked for this long are forgotten (a later spread starts
/// from nothing).
pub const FORGET: Duration = Duration::from_secs(120);
/// Artifacts whose counts are kept at most (the least recently served go first).
const MOST_ARTIFACTS: usize = 256;
/// Counts are reported up to this (one digit per chunk).
pub const CAP: u8 = 9;

/// Chunk send counts by artifact digest, with when each was last served.
#[derive(Debug, Default)]
pub struct Sent {
    counts: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl Sent {
    /// Counts one more send of `chunks` of `digest`, an artifact of `count` chunks.
    pub fn record(&self, digest: &str, chunks: Range<usize>, count: usize, now: Instant) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET);
        if !map.contains_key(digest) && map.len() >= MOST_ARTIFACTS {
            let oldest = map.iter().min_by_key(|(_, (_, at))| *at).map(|(d, _)| d.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        let (counts, at) = map
            .entry(digest.to_owned())
            .or_insert_with(|| (vec![0; count], now));
        counts.resize(count, 0);
        for c in chunks {
            if let Some(n) = counts.get_mut(c) {
                *n = n.saturating_add(1);
            }
        }
        *at = now;
    }

    /// The counts of `digest` as its chunks answer reports them; `None` when none were kept.
    pub fn report(&self, digest: &str, now: Instant) -> Option<String> {
        let map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(digest)
            .filter(|(_, at)| now.saturating_duration_since(*at) < FORGET)
            .map(|(counts, _)| encode(counts))
    }
}

/// The chunks a byte span of an artifact with chunks of `chunk_size` touches.
pub fn chunks_of(span: &Range<u64>, chunk_size: u64) -> Range<usize> {
    if span.is_empty() || chunk_size == 0 {
        return 0..0;
    }
    let first = span.start / chunk_size;
    let end = span.end.div_ceil(chunk_size);
    usize::try_from(first).unwrap_or(usize::MAX)..usize::try_from(end).unwrap_or(usize::MAX)
}

/// One digit per chunk, counts over [`CAP`] reported as it.
pub fn encode(counts: &[u8]) -> String {
    counts.iter().map(|n| char::from(b'0' + (*n).min(CAP))).collect()
}

/// A holder's report read back: `None` when it is not one digit for each of `count` chunks (a
/// report that does not fit is ignored, never trusted in part).
pub fn decode(report: &str, count: usize) -> Option<Vec<u8>> {
    if report.len() != count {
        return None;
    }
    report
        .bytes()
        .map(|b| b.is_ascii_digit().then(|| b - b'0'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_counted_per_chunk_and_reported_as_digits() {
        let sent = Sent::default();
        let t = Instant::now();
        let d = "sha256:aa";
        assert_eq!(sent.report(d, t), None, "nothing sent, nothing reported");
        sent.record(d, 1..3, 4, t);
        sent.record(d, 2..3, 4, t);
        assert_eq!(sent.report(d, t).as_deref(), Some("0120"));
        for _ in 0..20 {
            sent.record(d, 0..1, 4, t);
        }
        assert_eq!(sent.report(d, t).as_deref(), Some("9120"), "capped at one digit");
        assert_eq!(sent.report("sha256:bb", t), None);
        // Out of range chunks are ignored.
        sent.record(d, 3..10, 4, t);
        assert_eq!(sent.report(d, t).as_deref(), Some("9121"));
    }

    #[test]
    fn counts_are_forgotten_when_nobody_asks_for_a_while() {
        let sent = Sent::default();
        let t = Instant::now();
        sent.record("a", 0..1, 2, t);
        assert!(
            sent.report("a", t + Duration::from_secs(FORGET.as_secs() - 1))
                .is_some()
        );
        assert_eq!(sent.report("a", t + FORGET), None);
        // A new send after that starts from nothing.
        sent.record("a", 1..2, 2, t + FORGET);
        assert_eq!(sent.report("a", t + FORGET).as_deref(), Some("01"));
    }

    #[test]
    fn the_least_recently_served_artifact_goes_when_too_many_are_kept() {
        let sent = Sent::default();
        let t = Instant::now();
        for i in 0..MOST_ARTIFACTS {
            sent.record(&format!("d{i}"), 0..1, 1, t + Duration::from_millis(i as u64));
        }
        let later = t + Duration::from_secs(1);
        sent.record("new", 0..1, 1, later);
        assert_eq!(sent.report("d0", later), None, "the oldest was dropped");
        assert!(sent.report("d1", later).is_some());
        assert!(sent.report("new", later).is_some());
    }

    #[test]
    fn spans_map_to_the_chunks_they_touch() {
        assert_eq!(chunks_of(&(0..8), 4), 0..2);
        assert_eq!(chunks_of(&(3..5), 4), 0..2);
        assert_eq!(chunks_of(&(4..8), 4), 1..2);
        assert_eq!(chunks_of(&(4..9), 4), 1..3);
        assert_eq!(chunks_of(&(5..5), 4), 0..0);
        assert_eq!(chunks_of(&(0..5), 0), 0..0);
    }

    #[test]
    fn reports_read_back_only_when_they_fit() {
        assert_eq!(decode("0129", 4), Some(vec![0, 1, 2, 9]));
        assert_eq!(decode("012", 4), None, "too short");
        assert_eq!(decode("01x9", 4), None, "not a digit");
        assert_eq!(decode("", 0), Some(vec![]));
        assert_eq!(encode(&[0, 3, 200]), "039");
    }
}
