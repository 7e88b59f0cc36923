//! The placement policies: the fleet's fair share and plain priority (the baseline `ringrift
//! bench fleet` measures the share against). They differ in three things only, all here: which
//! queue a request waits in, what it may preempt when it fits nowhere, and whether a gang may
//! hold an agent while it waits.

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

    /// Whether `req` holds an agent for itself while it waits, given the claimants' standings
    /// and what gangs placed before it already hold (`held`, per claimant): with the share, a
    /// gang (work that is not elastic and needs several whole GPUs) whose claimant stays within
    /// its entitlement with it, and what it holds already; with plain priority, nothing (a
    /// gang there takes room by preempting lower priorities).
    pub(super) fn reserves(
        self,
        req: &Request,
        shares: &BTreeMap<String, Standing>,
        held: &BTreeMap<String, Amount>,
        capacity: &Amount,
    ) -> bool {
        match self {
            Self::Priority => false,
            Self::Share => {
                if req.elastic || req.resources.gpus < 2 {
                    return false;
                }
                let mine = shares.get(&req.claimant).cloned().unwrap_or_default();
                let with = mine
                    .used
                    .plus(&held.get(&req.claimant).copied().unwrap_or_default())
                    .plus(&request_amount(req));
                served(&with, &mine.entitled, capacity) <= 1.0 + 1e-9
            }
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
                // Elastic work may take only what another claimant holds lent; when nobody is
                // served beyond its entitlement (and beyond this claimant with the unit), no
                // agent needs looking at: this runs for every waiting unit of every pass.
                if req.elastic
                    && !shares.iter().any(|(id, s)| {
                        let lent = served(&s.used, &s.entitled, capacity);
                        *id != req.claimant && lent > 1.0 + 1e-9 && after < lent
                    })
                {
                    return None;
                }
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
