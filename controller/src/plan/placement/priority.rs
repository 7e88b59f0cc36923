//! The placement policies: the fleet's fair share ([`super::place_shared`]) and plain priority,
//! the baseline `ringrift bench fleet` measures the share against.

use std::collections::BTreeMap;

use super::{
    AgentView, Claim, Outcome, Placed, Request, Terms, choose, evict, free_capacity, place_shared,
    preemption, reason, request_amount, standings,
};
use crate::plan::share::Amount;

/// How placement orders work and what may preempt what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// The fleet's fair share ([`place_shared`]): claimants take turns by how far each is
    /// served; lent elastic work is taken back.
    #[default]
    Share,
    /// Plain priority: every request in priority order, then first come first served, and work
    /// that is not elastic preempts elastic work of lower priority, whoever owns either. No
    /// share decides anything; the standings are still reported. The baseline `ringrift bench
    /// fleet` compares the share with.
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

/// Places `requests` by `policy`: [`place_shared`], or plain priority (see [`Policy`]).
pub fn place_by(
    agents: &[AgentView],
    claims: &[Claim],
    requests: &[Request],
    terms: &BTreeMap<String, Terms>,
    policy: Policy,
) -> Placed {
    match policy {
        Policy::Share => place_shared(agents, claims, requests, terms),
        Policy::Priority => place_by_priority(agents, claims, requests, terms),
    }
}

/// Plain priority placement (see [`Policy::Priority`]).
fn place_by_priority(
    agents: &[AgentView],
    claims: &[Claim],
    requests: &[Request],
    terms: &BTreeMap<String, Terms>,
) -> Placed {
    let mut free = free_capacity(agents, claims);
    let (_, mut shares) = standings(agents, claims, requests, terms);
    let mut order: Vec<&Request> = requests.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.priority));
    let mut waiting = 0;
    let mut out = Vec::new();
    for req in order {
        let may_evict = |c: &Claim, _: &BTreeMap<String, Amount>| !req.elastic && c.priority < req.priority;
        let outcome = if let Some((agent, gpus)) = choose(&free, req).map(|(a, g)| (a.clone(), g)) {
            if let Some(f) = free.get_mut(&agent) {
                f.take(req, &agent, &gpus);
            }
            Outcome::Place { agent, gpus }
        } else if let Some((agent, gpus, victims)) = (!req.elastic)
            .then(|| preemption(agents, &free, req, &may_evict))
            .flatten()
        {
            evict(agents, &mut free, &mut shares, &agent, &victims);
            if let Some(f) = free.get_mut(&agent) {
                f.take(req, &agent, &gpus);
            }
            Outcome::Preempt { agent, gpus, victims }
        } else {
            waiting += 1;
            if let Some(s) = shares.get_mut(&req.claimant) {
                s.waiting += 1;
            }
            out.push((
                req.id.clone(),
                Outcome::Wait {
                    reason: reason(agents, &free, req),
                    position: waiting,
                },
            ));
            continue;
        };
        if let Some(s) = shares.get_mut(&req.claimant) {
            s.used = s.used.plus(&request_amount(req));
        }
        out.push((req.id.clone(), outcome));
    }
    Placed {
        outcomes: out,
        shares,
    }
}
