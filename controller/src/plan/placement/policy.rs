//! The placement policies: the fleet's fair share and plain priority (the baseline `ringrift
//! bench fleet` measures the share against). They differ in two things only, both here: which
//! queue a request waits in, and what it may preempt when it fits nowhere.

use std::collections::BTreeMap;

use super::{Claim, Request, Standing, request_amount, served};
use crate::plan::share::Amount;

/// How placement orders work and what may preempt what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// The fleet's fair share ([`super::place_shared`]): claimants take turns by how far each
    /// is served; lent elastic work is taken back.
    #[default]
    Share,
    /// Plain priority: every request in priority order, then first come first served, and work
    /// that is not elastic preempts elastic work of lower priority, whoever owns either. No
    /// share decides anything; the standings are still reported.
    Priority,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "share" => Ok(Self::Share),
            "priority" => Ok(Self::Priority),
            other => Err(format!(
                "unknown placement policy {other:?}: expected share or priority"
            )),
        }
    }
}

/// Whether a live task's claim may be evicted for a request, given what the agent's earlier
/// victims already took from each claimant.
pub(super) type Evictable<'a> = Box<dyn Fn(&Claim, &BTreeMap<String, Amount>) -> bool + 'a>;

impl Policy {
    /// The queue a request waits in: its claimant's with the share (claimants take turns), one
    /// for all with plain priority.
    pub(super) fn queue(self, r: &Request) -> &str {
        match self {
            Self::Share => &r.claimant,
            Self::Priority => "",
        }
    }

    /// What `req` may preempt when it fits nowhere, given the claimants' standings; `None`
    /// when it may preempt nothing (checked before any agent is looked at).
    pub(super) fn evictable<'a>(
        self,
        req: &'a Request,
        shares: &'a BTreeMap<String, Standing>,
        capacity: &'a Amount,
    ) -> Option<Evictable<'a>> {
        let own = move |c: &Claim| !req.elastic && c.priority < req.priority;
        match self {
            Self::Priority => (!req.elastic)
                .then(|| Box::new(move |c: &Claim, _: &BTreeMap<String, Amount>| own(c)) as Evictable<'a>),
            Self::Share => {
                let standing = |id: &str| shares.get(id).cloned().unwrap_or_default();
                let mine = standing(&req.claimant);
                let owed = served(&mine.used, &mine.entitled, capacity) < 1.0 - 1e-9;
                // Elastic work preempts only across claimants, for a claimant that is owed.
                if req.elastic && !owed {
                    return None;
                }
                let after = served(&mine.used.plus(&request_amount(req)), &mine.entitled, capacity);
                Some(Box::new(move |c: &Claim, taken: &BTreeMap<String, Amount>| {
                    if c.claimant == req.claimant {
                        return own(c);
                    }
                    let other = standing(&c.claimant);
                    let used = other
                        .used
                        .minus(&taken.get(&c.claimant).copied().unwrap_or_default());
                    let lent = served(&used, &other.entitled, capacity);
                    owed && lent > 1.0 + 1e-9 && after < lent
                }))
            }
        }
    }
}
