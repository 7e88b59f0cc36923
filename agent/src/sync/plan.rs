//! Chunk planning across holders (pure): which chunk each holder is asked for next, what a
//! failed or corrupt chunk does to its holder, and when a pull cannot go on.
//!
//! Every holder gets its own stream of requests; a holder asks [`Planner::next`] for work as
//! soon as it has a free slot, so fast holders serve more chunks than slow ones. Among the
//! chunks a holder has, the rarest comes first (the swarm rule: pieces few peers hold spread
//! before pieces many hold), and ties go to the chunk nearest the holder's own starting point so
//! holders do not all start on the same chunk. The starting points are turned by the puller's
//! own offset ([`Planner::offset`]), so pullers of one artifact ask a shared holder for
//! different chunks, and soon have different chunks to give each other.
//!
//! A holder that reports how often it sent each chunk lately ([`super::sent`]) is asked first
//! for what it sent least, and a chunk it sent more often than its least-sent one is left to a
//! puller that has it and would serve it as one of its own least sent (asked of this holder
//! when no such puller exists, so some holder always takes every chunk). So the first holder of
//! a new artifact puts each chunk into the swarm once before any twice, and the copies after
//! the first come from the pullers' uplinks, not from its one.

/// How a chunk request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Received, verified, written.
    Verified,
    /// The holder could not serve it (connection refused or cut, timeout, 5xx, not held yet).
    Transient,
    /// The bytes did not match the chunk digest.
    Corrupt,
    /// The holder was serving all it serves at once: not a failure; ask again later.
    Busy,
}

/// Why a holder is no longer asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ban {
    /// It served bytes that did not verify: never asked again in this pull, and penalized.
    BadData,
    /// It failed [`MAX_FAILURES`] requests in a row.
    Unreachable,
}

/// Consecutive failed requests after which a holder is dropped from a pull.
pub const MAX_FAILURES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Missing,
    InFlight(usize),
    Done,
}

/// One holder in a pull.
#[derive(Debug, Clone)]
struct Holder {
    name: String,
    /// The chunks it can serve; `None` for all (a holder with the whole artifact).
    have: Option<Vec<bool>>,
    /// How often it sent each chunk lately, when it said.
    sent: Option<Vec<u8>>,
    /// The least it sent any chunk it has (0 without counts).
    least: u8,
    in_flight: usize,
    failures: u32,
    ban: Option<Ban>,
}

impl Holder {
    fn has(&self, chunk: usize) -> bool {
        self.ban.is_none()
            && self
                .have
                .as_ref()
                .is_none_or(|h| h.get(chunk).copied().unwrap_or(false))
    }

    fn sent(&self, chunk: usize) -> u8 {
        self.sent
            .as_ref()
            .and_then(|s| s.get(chunk).copied())
            .unwrap_or(0)
    }

    /// Whether it serves `chunk` as one of its least sent: a chunk it sent more often is left
    /// to others that have it, when one of them serves it this way.
    fn serves_first(&self, chunk: usize) -> bool {
        self.has(chunk) && self.sent(chunk) <= self.least
    }

    fn update_least(&mut self) {
        let least = self.sent.as_ref().and_then(|sent| {
            sent.iter()
                .enumerate()
                .filter(|(c, _)| self.has(*c))
                .map(|(_, n)| *n)
                .min()
        });
        self.least = least.unwrap_or(0);
    }
}

/// The plan of one pull.
#[derive(Debug, Clone)]
pub struct Planner {
    chunks: Vec<Chunk>,
    holders: Vec<Holder>,
    offset: usize,
}

impl Planner {
    /// A pull of `count` chunks, of which those marked in `done` are already here (a resumed
    /// transfer).
    pub fn new(count: usize, done: &[bool]) -> Self {
        Self {
            chunks: (0..count)
                .map(|i| {
                    if done.get(i).copied().unwrap_or(false) {
                        Chunk::Done
                    } else {
                        Chunk::Missing
                    }
                })
                .collect(),
            holders: Vec::new(),
            offset: 0,
        }
    }

    /// Turns every holder's starting point by `offset` chunks (pullers pick theirs apart, from
    /// their names).
    #[must_use]
    pub fn offset(self, offset: usize) -> Self {
        Self { offset, ..self }
    }

    /// Adds a holder (or updates what it has); returns its index.
    pub fn holder(&mut self, name: &str, have: Option<Vec<bool>>) -> usize {
        if let Some(i) = self.holders.iter().position(|h| h.name == name) {
            self.holders[i].have = have;
            self.holders[i].update_least();
            return i;
        }
        self.holders.push(Holder {
            name: name.to_owned(),
            have,
            sent: None,
            least: 0,
            in_flight: 0,
            failures: 0,
            ban: None,
        });
        self.holders.len() - 1
    }

    /// Records how often a holder sent each chunk lately (`None`: it did not say).
    pub fn sent(&mut self, holder: usize, sent: Option<Vec<u8>>) {
        if let Some(h) = self.holders.get_mut(holder) {
            h.sent = sent;
            h.update_least();
        }
    }

    /// Among `holders`, the one with the fewest requests in flight; ties go to the first at or
    /// after `rotation` in holder order (each puller turns by its own, so pullers that list
    /// the same holders in the same order still start on different ones).
    pub fn least_loaded(&self, holders: impl IntoIterator<Item = usize>, rotation: usize) -> Option<usize> {
        let n = self.holders.len().max(1);
        holders
            .into_iter()
            .filter(|&h| h < self.holders.len())
            .min_by_key(|&h| (self.in_flight(h), (h + n - rotation % n) % n))
    }

    /// Whether a holder has every chunk.
    pub fn whole(&self, holder: usize) -> bool {
        self.holders.get(holder).is_some_and(|h| h.have.is_none())
    }

    /// Whether asking the holder named `name` again can tell nothing new: it has every chunk and
    /// reported no send counts (which change as it serves).
    pub fn settled(&self, name: &str) -> bool {
        self.holders
            .iter()
            .any(|h| h.name == name && h.ban.is_none() && h.have.is_none() && h.sent.is_none())
    }

    /// The holder's name.
    pub fn name(&self, holder: usize) -> &str {
        self.holders.get(holder).map_or("", |h| h.name.as_str())
    }

    /// Why a holder was dropped, if it was.
    pub fn ban(&self, holder: usize) -> Option<Ban> {
        self.holders.get(holder).and_then(|h| h.ban)
    }

    /// Requests in flight to a holder.
    pub fn in_flight(&self, holder: usize) -> usize {
        self.holders.get(holder).map_or(0, |h| h.in_flight)
    }

    /// The next chunk to ask `holder` for, marked in flight; `None` when it has none that is
    /// missing and not already asked of another holder (or it was dropped, or what it has is
    /// left to the partial holders: see the module's documentation).
    pub fn next(&mut self, holder: usize) -> Option<usize> {
        let h = self.holders.get(holder)?;
        if h.ban.is_some() {
            return None;
        }
        let n = self.chunks.len();
        let usable = self.holders.len().max(1);
        let start = (holder * n / usable + self.offset) % n.max(1);
        let rarity = |c: usize| self.holders.iter().filter(|o| o.has(c)).count();
        // A chunk this holder sent more often than its least-sent one goes to another partial
        // holder that serves it as one of its own least sent, when there is one. (Never to one
        // that would defer it in turn: some holder always takes every chunk.)
        let elsewhere = |c: usize| {
            self.holders
                .iter()
                .enumerate()
                .any(|(j, o)| j != holder && o.have.is_some() && o.serves_first(c))
        };
        let best = (0..n)
            .filter(|&c| self.chunks[c] == Chunk::Missing && h.has(c))
            .filter(|&c| h.serves_first(c) || !elsewhere(c))
            .min_by_key(|&c| (h.sent(c), rarity(c), (c + n - start) % n.max(1)))?;
        self.chunks[best] = Chunk::InFlight(holder);
        self.holders[holder].in_flight += 1;
        Some(best)
    }

    /// Records how a request ended. A corrupt chunk drops its holder at once; a holder failing
    /// [`MAX_FAILURES`] times in a row is dropped too. Returns the ban when this call made one.
    pub fn finish(&mut self, chunk: usize, holder: usize, outcome: Outcome) -> Option<Ban> {
        if let Some(state) = self.chunks.get_mut(chunk)
            && *state == Chunk::InFlight(holder)
        {
            *state = if outcome == Outcome::Verified {
                Chunk::Done
            } else {
                Chunk::Missing
            };
        }
        let h = self.holders.get_mut(holder)?;
        h.in_flight = h.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Busy => None,
            Outcome::Verified => {
                h.failures = 0;
                None
            }
            Outcome::Transient => self.unanswered(holder),
            Outcome::Corrupt => {
                let fresh = h.ban != Some(Ban::BadData);
                h.ban = Some(Ban::BadData);
                fresh.then_some(Ban::BadData)
            }
        }
    }

    /// Records that a holder could not be reached when asked what it has: a failure in a row,
    /// as a failed chunk request. Returns the ban when this call made one.
    pub fn unanswered(&mut self, holder: usize) -> Option<Ban> {
        let h = self.holders.get_mut(holder)?;
        h.failures += 1;
        (h.failures >= MAX_FAILURES && h.ban.is_none()).then(|| {
            h.ban = Some(Ban::Unreachable);
            Ban::Unreachable
        })
    }

    /// Whether every chunk is here.
    pub fn is_done(&self) -> bool {
        self.chunks.iter().all(|c| *c == Chunk::Done)
    }

    /// Which chunks are here.
    pub fn done(&self) -> Vec<bool> {
        self.chunks.iter().map(|c| *c == Chunk::Done).collect()
    }

    /// Chunks not here yet.
    pub fn remaining(&self) -> usize {
        self.chunks.iter().filter(|c| **c != Chunk::Done).count()
    }

    /// True when nothing is in flight and some missing chunk has no holder left to ask: the
    /// pull cannot finish with the holders it has.
    pub fn stuck(&self) -> bool {
        let in_flight = self.chunks.iter().any(|c| matches!(c, Chunk::InFlight(_)));
        !in_flight
            && self
                .chunks
                .iter()
                .enumerate()
                .any(|(i, c)| *c == Chunk::Missing && !self.holders.iter().any(|h| h.has(i)))
    }

    /// Holders still asked.
    pub fn usable(&self) -> usize {
        self.holders.iter().filter(|h| h.ban.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut Planner, holder: usize) -> Vec<usize> {
        std::iter::from_fn(|| p.next(holder)).collect()
    }

    #[test]
    fn holders_start_apart_and_never_get_the_same_chunk() {
        let mut p = Planner::new(8, &[]);
        let a = p.holder("a", None);
        let b = p.holder("b", None);
        assert_eq!(p.next(a), Some(0));
        assert_eq!(p.next(b), Some(4), "b starts half-way");
        let mut rest = drain(&mut p, a);
        rest.extend(drain(&mut p, b));
        rest.sort_unstable();
        assert_eq!(rest, vec![1, 2, 3, 5, 6, 7]);
        assert_eq!(p.next(a), None, "nothing left to ask");
    }

    #[test]
    fn pullers_with_other_offsets_ask_a_shared_holder_for_other_chunks() {
        let mut a = Planner::new(64, &[]).offset(0);
        let mut b = Planner::new(64, &[]).offset(21);
        let (ha, hb) = (a.holder("seed", None), b.holder("seed", None));
        let first_a: Vec<usize> = (0..3).filter_map(|_| a.next(ha)).collect();
        let first_b: Vec<usize> = (0..3).filter_map(|_| b.next(hb)).collect();
        assert_eq!(first_a, vec![0, 1, 2]);
        assert_eq!(first_b, vec![21, 22, 23]);
        // The offset wraps around the end.
        let mut c = Planner::new(4, &[]).offset(7);
        let h = c.holder("seed", None);
        assert_eq!(drain(&mut c, h), vec![3, 0, 1, 2]);
    }

    #[test]
    fn a_busy_holder_is_not_a_failing_one() {
        let mut p = Planner::new(2, &[]);
        let a = p.holder("a", None);
        for _ in 0..10 {
            let c = p.next(a).unwrap();
            assert_eq!(p.finish(c, a, Outcome::Busy), None);
            assert_eq!(p.in_flight(a), 0);
        }
        assert_eq!(p.ban(a), None, "ten Busy answers drop nobody");
        assert_eq!(p.remaining(), 2, "the chunks are asked again");
        let c = p.next(a).unwrap();
        p.finish(c, a, Outcome::Transient);
        let c = p.next(a).unwrap();
        p.finish(c, a, Outcome::Transient);
        let c = p.next(a).unwrap();
        assert_eq!(p.finish(c, a, Outcome::Transient), Some(Ban::Unreachable));
    }

    #[test]
    fn a_resumed_pull_asks_only_for_what_is_missing() {
        let mut p = Planner::new(4, &[true, false, true, false]);
        let a = p.holder("a", None);
        assert_eq!(drain(&mut p, a), vec![1, 3]);
        assert_eq!(p.remaining(), 2);
        p.finish(1, a, Outcome::Verified);
        p.finish(3, a, Outcome::Verified);
        assert!(p.is_done());
        assert_eq!(p.done(), vec![true; 4]);
    }

    #[test]
    fn rarest_chunks_first_and_only_chunks_a_partial_holder_has() {
        let mut p = Planner::new(4, &[]);
        let seed = p.holder("seed", None);
        let peer = p.holder("peer", Some(vec![true, true, false, false]));
        // Chunks 2 and 3 only the seed has: it serves those first.
        assert_eq!(p.next(seed), Some(2));
        assert_eq!(p.next(seed), Some(3));
        // The peer is asked only for chunks it has.
        assert_eq!(drain(&mut p, peer), vec![0, 1]);
        assert_eq!(p.next(seed), None);
    }

    #[test]
    fn a_failed_chunk_goes_to_another_holder_and_three_failures_drop_a_holder() {
        let mut p = Planner::new(3, &[]);
        let a = p.holder("a", None);
        let b = p.holder("b", None);
        let c = p.next(a).unwrap();
        assert_eq!(p.finish(c, a, Outcome::Transient), None);
        assert!(drain(&mut p, b).contains(&c), "b is asked for the chunk a failed");
        let mut p = Planner::new(3, &[]);
        let a = p.holder("a", None);
        for round in 1..=MAX_FAILURES {
            let c = p.next(a).unwrap();
            let ban = p.finish(c, a, Outcome::Transient);
            assert_eq!(ban, (round == MAX_FAILURES).then_some(Ban::Unreachable));
        }
        assert_eq!(p.next(a), None);
        assert!(p.stuck(), "no holder left");
        let b = p.holder("b", None);
        assert!(!p.stuck(), "a new holder unsticks it");
        assert!(p.next(b).is_some());
    }

    #[test]
    fn unanswered_asks_count_with_failed_requests_toward_dropping_a_holder() {
        let mut p = Planner::new(4, &[]);
        let a = p.holder("a", None);
        let b = p.holder("b", None);
        // The plan has nothing for `a` now (all in flight to `b`), but `a` stops answering.
        let _ = drain(&mut p, b);
        assert_eq!(p.next(a), None);
        assert_eq!(p.unanswered(a), None);
        assert_eq!(p.unanswered(a), None);
        assert_eq!(
            p.unanswered(a),
            Some(Ban::Unreachable),
            "the third failure in a row"
        );
        assert_eq!(p.unanswered(a), None, "dropped once");
        // A failed request and failed asks are one count; a verified chunk resets it.
        let mut p = Planner::new(4, &[]);
        let a = p.holder("a", None);
        let c = p.next(a).unwrap();
        p.finish(c, a, Outcome::Transient);
        assert_eq!(p.unanswered(a), None);
        let c = p.next(a).unwrap();
        p.finish(c, a, Outcome::Verified);
        assert_eq!(p.unanswered(a), None);
        assert_eq!(p.unanswered(a), None);
        assert_eq!(p.ban(a), None);
        let c = p.next(a).unwrap();
        assert_eq!(p.finish(c, a, Outcome::Transient), Some(Ban::Unreachable));
    }

    #[test]
    fn success_resets_the_failure_count() {
        let mut p = Planner::new(6, &[]);
        let a = p.holder("a", None);
        for _ in 0..3 {
            let c = p.next(a).unwrap();
            p.finish(c, a, Outcome::Transient);
            let c = p.next(a).unwrap();
            let c2 = p.next(a).unwrap();
            p.finish(c, a, Outcome::Transient);
            p.finish(c2, a, Outcome::Verified);
        }
        assert_eq!(p.ban(a), None, "never three in a row");
    }

    #[test]
    fn corrupt_data_drops_the_holder_at_once_and_the_chunk_is_refetched() {
        let mut p = Planner::new(2, &[]);
        let bad = p.holder("bad", None);
        let good = p.holder("good", None);
        let c = p.next(bad).unwrap();
        assert_eq!(p.finish(c, bad, Outcome::Corrupt), Some(Ban::BadData));
        assert_eq!(p.ban(bad), Some(Ban::BadData));
        assert_eq!(p.next(bad), None);
        let mut got = drain(&mut p, good);
        got.sort_unstable();
        assert_eq!(
            got,
            vec![0, 1],
            "the corrupt chunk is asked again, of the good holder"
        );
        assert_eq!(p.usable(), 1);
        // A late answer from the dropped holder changes nothing.
        assert_eq!(p.finish(c, bad, Outcome::Corrupt), None);
        assert_eq!(p.in_flight(good), 2);
    }

    #[test]
    fn a_late_finish_for_a_chunk_reassigned_is_ignored() {
        let mut p = Planner::new(1, &[]);
        let a = p.holder("a", None);
        let b = p.holder("b", None);
        let c = p.next(a).unwrap();
        // a fails it; b is asked; a's late duplicate answer must not mark it done or missing.
        p.finish(c, a, Outcome::Transient);
        assert_eq!(p.next(b), Some(c));
        p.finish(c, a, Outcome::Verified);
        assert!(!p.is_done(), "only b's answer counts");
        assert_eq!(p.next(a), None, "still in flight to b");
        p.finish(c, b, Outcome::Verified);
        assert!(p.is_done());
    }

    #[test]
    fn a_holder_is_asked_first_for_what_it_sent_least() {
        let mut p = Planner::new(4, &[]);
        let seed = p.holder("seed", None);
        p.sent(seed, Some(vec![1, 0, 2, 0]));
        // No other holder: every chunk is asked of it, least sent first.
        assert_eq!(drain(&mut p, seed), vec![1, 3, 0, 2]);
    }

    #[test]
    fn chunks_a_holder_sent_more_often_are_left_to_partial_holders_that_have_them() {
        let mut p = Planner::new(6, &[]);
        let seed = p.holder("seed", None);
        // The seed sent chunks 0 and 1 once already; 2..6 never.
        p.sent(seed, Some(vec![1, 1, 0, 0, 0, 0]));
        let peer = p.holder("peer", Some(vec![true, false, false, false, false, false]));
        let from_seed = drain(&mut p, seed);
        assert!(
            !from_seed.contains(&0),
            "chunk 0 is the peer's to give: {from_seed:?}"
        );
        assert!(
            from_seed.contains(&1),
            "chunk 1 is nowhere else, so the seed is asked anyway: {from_seed:?}"
        );
        assert_eq!(&from_seed[..4], &[2, 3, 4, 5], "unsent chunks first");
        assert_eq!(drain(&mut p, peer), vec![0]);
        // Once the peer is dropped, the seed is asked for chunk 0 after all.
        p.finish(0, peer, Outcome::Corrupt);
        assert_eq!(p.next(seed), Some(0));
        assert!(!p.settled("seed"), "a seed with counts is asked again");
    }

    #[test]
    fn holders_that_each_sent_a_chunk_often_do_not_all_leave_it_to_each_other() {
        let mut p = Planner::new(2, &[true, false]);
        let seed = p.holder("seed", None);
        let q = p.holder("q", Some(vec![true, true]));
        let r = p.holder("r", Some(vec![true, true]));
        // Each sent chunk 1 more often than chunk 0: each would leave it to the others.
        for h in [seed, q, r] {
            p.sent(h, Some(vec![0, 3]));
        }
        // Nobody serves it first, so nobody defers it: it is asked of someone.
        assert_eq!(p.next(q), Some(1));
        // When one of them does serve it first, the others leave it to that one.
        let mut p = Planner::new(2, &[true, false]);
        let seed = p.holder("seed", None);
        let q = p.holder("q", Some(vec![true, true]));
        let r = p.holder("r", Some(vec![false, true]));
        p.sent(seed, Some(vec![0, 3]));
        p.sent(q, Some(vec![0, 3]));
        p.sent(r, Some(vec![0, 1]));
        assert_eq!(p.next(seed), None);
        assert_eq!(p.next(q), None);
        assert_eq!(p.next(r), Some(1), "r has only chunk 1: its least sent");
    }

    #[test]
    fn a_whole_holder_without_counts_is_settled_and_one_with_counts_is_not() {
        let mut p = Planner::new(2, &[]);
        let a = p.holder("a", None);
        p.holder("b", Some(vec![true, false]));
        assert!(p.settled("a"));
        assert!(!p.settled("b"), "a partial holder gains chunks");
        assert!(!p.settled("c"), "not asked yet");
        p.sent(a, Some(vec![0, 1]));
        assert!(!p.settled("a"));
        p.sent(a, None);
        assert!(p.settled("a"));
        p.finish(0, a, Outcome::Corrupt);
        assert!(!p.settled("a"), "dropped");
    }

    #[test]
    fn requests_go_to_the_least_loaded_holder_turned_by_the_pullers_rotation() {
        let mut p = Planner::new(16, &[]);
        let hs: Vec<usize> = ["seed", "a", "b", "c"]
            .iter()
            .map(|n| p.holder(n, None))
            .collect();
        assert_eq!(p.least_loaded(hs.clone(), 0), Some(0));
        assert_eq!(
            p.least_loaded(hs.clone(), 2),
            Some(2),
            "another puller starts elsewhere"
        );
        assert_eq!(p.least_loaded(hs.clone(), 6), Some(2), "the rotation wraps");
        p.next(2);
        assert_eq!(
            p.least_loaded(hs.clone(), 2),
            Some(3),
            "then the next with fewest requests"
        );
        p.next(3);
        p.next(0);
        assert_eq!(p.least_loaded(hs.clone(), 2), Some(1));
        assert_eq!(p.least_loaded([0, 2], 2), Some(2), "only among those offered");
        assert_eq!(p.least_loaded([], 0), None);
        assert_eq!(p.least_loaded([9], 0), None, "not a holder");
    }

    #[test]
    fn a_pull_with_no_chunks_is_done() {
        let mut p = Planner::new(0, &[]);
        let a = p.holder("a", None);
        assert!(p.is_done());
        assert_eq!(p.next(a), None);
        assert!(!p.stuck());
    }
}
