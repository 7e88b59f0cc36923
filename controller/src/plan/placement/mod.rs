//! Placement: which agent (and which of its GPUs) each pending work unit goes to, decided
//! without I/O from a snapshot of agents and the resources their live tasks hold.
//!
//! Requests go in priority order (first come first within a priority). A unit fits an agent
//! that is Ready, schedulable and has the CPU, memory and enough free healthy GPUs matching its
//! selector; a unit that writes outputs does not go to an agent under `DiskPressure`. Other
//! units (training, gauntlets) go where most of their input bytes already are, then take the
//! tightest fit, keeping big holes for big jobs; elastic (selfplay) units spread to the least
//! loaded agent, then where their inputs are. A unit that fits nowhere may follow a running task
//! about to end on its GPUs (a hand-over: [`Outcome::HandOver`]), else preempt elastic units of
//! lower priority; otherwise it waits, with a reason and its queue position. With the share,
//! a gang (several whole GPUs, not elastic) that its claimant is owed holds one agent while it
//! waits, so that agent drains instead of being refilled (see [`place_by`]).

use std::collections::BTreeMap;

use ringrift_crds::common::{GpuFraction, TaskResources};

use super::share::{Amount, Claimant, entitlements};

mod free;
mod policy;
use free::{Free, free_capacity, gpu_matches, hand_overs, inventory, selected};
pub use policy::Policy;

/// One GPU of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuView {
    /// NVML UUID.
    pub uuid: String,
    /// Product name.
    pub product: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Whether work may be placed on it.
    pub healthy: bool,
}

/// An agent as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    /// Agent name.
    pub name: String,
    /// Heartbeat current.
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    /// Its disk is nearly full: no work that writes outputs goes there.
    pub disk_pressure: bool,
    /// CPU, thousandths of a core.
    pub cpu_millis: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Its GPUs.
    pub gpus: Vec<GpuView>,
}

/// What a live task holds on its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The task.
    pub task: String,
    /// Its agent.
    pub agent: String,
    /// CPU, thousandths of a core.
    pub cpu_millis: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// GPU UUIDs.
    pub gpus: Vec<String>,
    /// Its priority.
    pub priority: u32,
    /// Whether it may be preempted (selfplay).
    pub elastic: bool,
    /// Who it counts against in the fleet's fair share (see [`super::share`]).
    pub claimant: String,
    /// Its share of its one GPU, in thousandths, when it holds a fraction (`gpuFraction`).
    pub gpu_fraction: Option<u16>,
    /// GPU memory it needs on each of its GPUs, MiB (what GPUs shared by fractions count).
    pub gpu_memory_mib: u64,
    /// Milliseconds until it is expected to end (0: overdue), when it may hand its whole GPUs
    /// over to a successor: the caller sets it for a running task whose job's tasks take a
    /// known time and that is about to end (see [`Outcome::HandOver`]).
    pub ends_in_ms: Option<u64>,
    /// The task (`namespace/name`) whose GPUs it takes over once that task ends: a successor
    /// bound by a hand-over, not started yet. While that task is live, this one holds no CPU or
    /// memory of its own (it fits in what that task holds) and counts in the share in its
    /// place.
    pub after: Option<String>,
}

/// A work unit waiting for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Identifies it in the result (for example `namespace/job/unit`).
    pub id: String,
    /// Higher goes first.
    pub priority: u32,
    /// What it needs.
    pub resources: TaskResources,
    /// Whether it is elastic (selfplay): spread out, preempted first.
    pub elastic: bool,
    /// Agents to avoid if any other fits (a retry after a hardware fault).
    pub avoid: Vec<String>,
    /// Whether it writes output artifacts (kept off agents under `DiskPressure`).
    pub writes_outputs: bool,
    /// Bytes of its inputs each agent already holds (preferred: fewer bytes moved).
    pub input_bytes: BTreeMap<String, u64>,
    /// Who it counts against in the fleet's fair share (see [`super::share`]).
    pub claimant: String,
}

/// Where a request goes, or why it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Bind it to this agent with these GPUs.
    Place {
        /// The agent.
        agent: String,
        /// GPU UUIDs assigned.
        gpus: Vec<String>,
    },
    /// Cancel these elastic tasks, then bind it.
    Preempt {
        /// The agent.
        agent: String,
        /// GPU UUIDs assigned.
        gpus: Vec<String>,
        /// Tasks to cancel first.
        victims: Vec<String>,
    },
    /// Bind it to the GPUs of a running task that is about to end, to start when that task
    /// ends: the GPU changes tenant without waiting for the controller to see the end, a pass
    /// and a create.
    HandOver {
        /// The agent.
        agent: String,
        /// GPU UUIDs assigned: those of `after`.
        gpus: Vec<String>,
        /// The task it follows (`namespace/name`).
        after: String,
    },
    /// It fits nowhere now.
    Wait {
        /// Why, for the job's status.
        reason: String,
        /// Place in the queue, from 1.
        position: u32,
    },
}

/// Matches `*` (any run) and `?` (one character), case-insensitively, as GPU product selectors.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a == b && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    go(&p, &t)
}

/// Chooses among the agents a request fits: spread for elastic work, then where its inputs
/// are; where its inputs are for other work, then the tightest fit; agents to avoid only when
/// nothing else fits.
fn choose<'a>(free: &'a BTreeMap<String, Free>, req: &Request) -> Option<(&'a String, Vec<String>)> {
    let fits: Vec<(&String, Vec<String>, (usize, i128))> = free
        .iter()
        .filter(|(_, f)| f.open_to(req))
        .filter_map(|(name, f)| f.fit(&req.resources).map(|gpus| (name, gpus, f.load())))
        .collect();
    let held = |name: &String| req.input_bytes.get(name).copied().unwrap_or(0);
    let preferred: Vec<_> = fits
        .iter()
        .filter(|(name, _, _)| !req.avoid.contains(name))
        .collect();
    let pool: Vec<_> = if preferred.is_empty() {
        fits.iter().collect()
    } else {
        preferred
    };
    let best = if req.elastic {
        pool.into_iter().max_by(|a, b| {
            a.2.cmp(&b.2)
                .then_with(|| held(a.0).cmp(&held(b.0)))
                .then_with(|| b.0.cmp(a.0))
        })
    } else {
        pool.into_iter().min_by(|a, b| {
            held(b.0)
                .cmp(&held(a.0))
                .then_with(|| a.2.cmp(&b.2))
                .then_with(|| a.0.cmp(b.0))
        })
    };
    best.map(|(name, gpus, _)| (*name, gpus.clone()))
}

/// The cheapest preemption that makes room: the agent where cancelling the fewest elastic
/// tasks that `may_evict` allows (youngest claims first) lets the request fit. `may_evict` sees
/// each candidate with what this agent's earlier victims already took from each claimant.
fn preemption(
    agents: &[AgentView],
    free: &BTreeMap<String, Free>,
    req: &Request,
    may_evict: &dyn Fn(&Claim, &BTreeMap<String, Amount>) -> bool,
) -> Option<(String, Vec<String>, Vec<String>)> {
    let mut best: Option<(String, Vec<String>, Vec<String>)> = None;
    let candidate = |f: &Free, c: &Claim| f.preemptible(c);
    let nothing_taken = BTreeMap::new();
    for (name, f) in free.iter().filter(|(_, f)| f.open_to(req)) {
        // What `may_evict` refuses with nothing taken yet it refuses with more taken (a
        // claimant only gets less lent): an agent with no such victim is skipped before any
        // copy is made (this runs for every unit that fits nowhere).
        if !f
            .claims
            .iter()
            .any(|c| candidate(f, c) && may_evict(c, &nothing_taken))
        {
            continue;
        }
        let mut trial = f.clone();
        let mut victims = Vec::new();
        let mut taken: BTreeMap<String, Amount> = BTreeMap::new();
        for victim in f.claims.iter().rev().filter(|c| candidate(f, c)) {
            if trial.fit(&req.resources).is_some() {
                break;
            }
            if !may_evict(victim, &taken) {
                continue;
            }
            trial.release(victim, inventory(agents, name));
            let t = taken.entry(victim.claimant.clone()).or_default();
            *t = t.plus(&claim_amount(victim));
            victims.push(victim.task.clone());
        }
        if victims.is_empty() {
            continue;
        }
        if let Some(gpus) = trial.fit(&req.resources)
            && best.as_ref().is_none_or(|(_, _, v)| victims.len() < v.len())
        {
            let one = victims.len() == 1;
            best = Some((name.clone(), gpus, victims));
            // Nothing takes fewer than one: the first agent found with one is the answer.
            if one {
                break;
            }
        }
    }
    best
}

/// The running task about to end that the request could follow (a hand-over): on an agent
/// open to it, the soonest to end, agents to avoid only when no other has one. Agent, GPUs, the
/// task followed.
fn hand_over(
    agents: &[AgentView],
    free: &BTreeMap<String, Free>,
    req: &Request,
) -> Option<(String, Vec<String>, String)> {
    free.iter()
        .filter(|(_, f)| f.open_to(req))
        .filter_map(|(name, f)| {
            let (claim, ends) = f.slot(&req.resources, inventory(agents, name))?;
            Some((req.avoid.contains(name), ends, name, claim))
        })
        .min_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)))
        .map(|(_, _, name, claim)| (name.clone(), claim.gpus.clone(), claim.task.clone()))
}

/// Why a request fits nowhere, in words.
fn reason(agents: &[AgentView], free: &BTreeMap<String, Free>, req: &Request) -> String {
    if free.is_empty() {
        return if agents.is_empty() {
            "no agents registered".into()
        } else {
            "no Ready, schedulable agent".into()
        };
    }
    // References, not copies: this runs for every unit that waits.
    let allowed: Vec<&Free> = free.values().filter(|f| f.allows(req)).collect();
    if allowed.is_empty() {
        return format!(
            "every Ready, schedulable agent is under DiskPressure (work that writes outputs waits \
             for disk): {}",
            free.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let open: Vec<&Free> = allowed.into_iter().filter(|f| f.open_to(req)).collect();
    if open.is_empty() {
        return "every agent it may use is held for a waiting gang (work that needs several \
                whole GPUs and is owed them)"
            .into();
    }
    let (free, r) = (&open, &req.resources);
    if let Some(f) = r.gpu_fraction {
        let fits_one = free.iter().any(|a| {
            a.gpus.iter().any(|g| gpu_matches(g, r))
                || a.shared.iter().any(|s| {
                    s.left >= f.thousandths() && s.memory_left >= r.gpu_memory_mib && selected(&s.gpu, r)
                })
        });
        if !fits_one {
            return format!(
                "needs {:.3} of a GPU with {} MiB of its memory free; no GPU has that left",
                f64::from(f.thousandths()) / 1000.0,
                r.gpu_memory_mib
            );
        }
    }
    let most_gpus = free.iter().map(|f| f.matching_gpus(r)).max().unwrap_or(0);
    if r.gpus > 0 && most_gpus < usize::try_from(r.gpus).unwrap_or(usize::MAX) {
        let selector = r
            .gpu_selector
            .as_ref()
            .and_then(|s| s.product.as_deref())
            .map(|p| format!(" matching {p}"))
            .unwrap_or_default();
        return format!(
            "needs {} free GPUs{selector}; the most on any agent is {most_gpus}",
            r.gpus
        );
    }
    let most_cpu = free.iter().map(|f| f.cpu).max().unwrap_or(0);
    if most_cpu < i128::from(r.cpu_millis) {
        return format!(
            "needs {}m CPU; the most free on any agent is {most_cpu}m",
            r.cpu_millis
        );
    }
    let most_memory = free.iter().map(|f| f.memory).max().unwrap_or(0);
    format!(
        "needs {} MiB memory with {}m CPU; the most free memory on any agent is {most_memory} MiB",
        r.memory_mib, r.cpu_millis
    )
}

/// Places `requests` given the `agents` and the `claims` of their live tasks, every claimant
/// with weight 1 and no floor.
pub fn place(agents: &[AgentView], claims: &[Claim], requests: &[Request]) -> Vec<(String, Outcome)> {
    place_shared(agents, claims, requests, &BTreeMap::new()).outcomes
}

/// A claimant's terms in the fair share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    /// `share.weight`.
    pub weight: f64,
    /// `share.minGPUs`.
    pub min_gpus: f64,
}

impl Default for Terms {
    fn default() -> Self {
        Self {
            weight: 1.0,
            min_gpus: 0.0,
        }
    }
}

/// How a claimant stands after a placement pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    /// Its entitlement ([`super::share::entitlements`] of the demands of this pass).
    pub entitled: Amount,
    /// What its live tasks hold, those placed in this pass included (victims excluded).
    pub used: Amount,
    /// Its work units still waiting.
    pub waiting: u32,
}

/// Where each request goes, and how every claimant stands.
#[derive(Debug, Clone, Default)]
pub struct Placed {
    /// Per request, in the order placement decided them.
    pub outcomes: Vec<(String, Outcome)>,
    /// Per claimant with live or waiting work.
    pub shares: BTreeMap<String, Standing>,
    /// The gangs still waiting that hold an agent, by request id, with that agent.
    pub reservations: BTreeMap<String, String>,
}

fn claim_amount(c: &Claim) -> Amount {
    #[allow(clippy::cast_precision_loss)]
    let gpus = match c.gpu_fraction {
        Some(f) => f64::from(f) / f64::from(GpuFraction::WHOLE),
        None => c.gpus.len() as f64,
    };
    #[allow(clippy::cast_precision_loss)]
    Amount::new(gpus, c.cpu_millis as f64)
}

fn request_amount(r: &Request) -> Amount {
    let gpus = match r.resources.gpu_fraction {
        Some(f) => f64::from(f.thousandths()) / f64::from(GpuFraction::WHOLE),
        None => f64::from(r.resources.gpus),
    };
    Amount::new(gpus, f64::from(r.resources.cpu_millis))
}

/// What the fleet shares: the healthy GPUs and the CPU of Ready, schedulable agents.
fn capacity(agents: &[AgentView]) -> Amount {
    agents
        .iter()
        .filter(|a| a.ready && !a.unschedulable)
        .fold(Amount::default(), |sum, a| {
            #[allow(clippy::cast_precision_loss)]
            let gpus = a.gpus.iter().filter(|g| g.healthy).count() as f64;
            #[allow(clippy::cast_precision_loss)]
            sum.plus(&Amount::new(gpus, a.cpu_millis as f64))
        })
}

/// The claimants' standings before placing: used from the claims, entitled from the demands
/// (claims and requests).
fn standings(
    agents: &[AgentView],
    claims: &[Claim],
    requests: &[Request],
    terms: &BTreeMap<String, Terms>,
) -> (Amount, BTreeMap<String, Standing>) {
    let mut shares: BTreeMap<String, Standing> = BTreeMap::new();
    let mut demand: BTreeMap<String, Amount> = BTreeMap::new();
    // A task a successor follows is about to hand its GPUs over: the successor counts for them.
    let (followed, _) = hand_overs(claims);
    for c in claims.iter().filter(|c| !followed.contains(&c.task)) {
        let s = shares.entry(c.claimant.clone()).or_default();
        s.used = s.used.plus(&claim_amount(c));
        let d = demand.entry(c.claimant.clone()).or_default();
        *d = d.plus(&claim_amount(c));
    }
    for r in requests {
        shares.entry(r.claimant.clone()).or_default();
        let d = demand.entry(r.claimant.clone()).or_default();
        *d = d.plus(&request_amount(r));
    }
    let capacity = capacity(agents);
    entitle(&capacity, &demand, terms, &mut shares);
    (capacity, shares)
}

/// Sets each claimant's entitlement from its `demand`.
fn entitle(
    capacity: &Amount,
    demand: &BTreeMap<String, Amount>,
    terms: &BTreeMap<String, Terms>,
    shares: &mut BTreeMap<String, Standing>,
) {
    let claimants: Vec<Claimant> = shares
        .keys()
        .map(|id| {
            let t = terms.get(id).copied().unwrap_or_default();
            Claimant {
                id: id.clone(),
                weight: t.weight,
                min_gpus: t.min_gpus,
                demand: demand.get(id).copied().unwrap_or_default(),
            }
        })
        .collect();
    for (c, entitled) in claimants.iter().zip(entitlements(*capacity, &claimants)) {
        if let Some(s) = shares.get_mut(&c.id) {
            s.entitled = entitled;
        }
    }
}

/// How far a claimant is served: its dominant share of `used` over that of its entitlement
/// (below 1: it is owed; above: it holds capacity lent to it).
fn served(used: &Amount, entitled: &Amount, capacity: &Amount) -> f64 {
    used.dominant(capacity) / entitled.dominant(capacity).max(1e-12)
}

/// Releases `victims` on `agent`: their capacity free again, their claimants' use less.
fn evict(
    agents: &[AgentView],
    free: &mut BTreeMap<String, Free>,
    shares: &mut BTreeMap<String, Standing>,
    agent: &str,
    victims: &[String],
) {
    let Some(f) = free.get_mut(agent) else { return };
    for victim in victims {
        if let Some(i) = f.claims.iter().position(|c| &c.task == victim) {
            let claim = f.claims.remove(i);
            f.release(&claim, inventory(agents, agent));
            if let Some(s) = shares.get_mut(&claim.claimant) {
                s.used = s.used.minus(&claim_amount(&claim));
            }
        }
    }
}

/// Places `requests` given the `agents`, the `claims` of their live tasks and each claimant's
/// `terms` (absent: weight 1, no floor).
///
/// Claimants take turns: the next request placed is the first (by priority, then age) of the
/// claimant that would be least served relative to its entitlement with it, so work fills the
/// fleet in proportion to the shares, and idle capacity still goes to whoever has work. A request that fits nowhere
/// may take back capacity lent: elastic tasks of a claimant served beyond its entitlement,
/// when its own claimant is owed and stays less served than the other was; inside one
/// claimant, work that is not elastic preempts elastic work of lower priority, as before.
pub fn place_shared(
    agents: &[AgentView],
    claims: &[Claim],
    requests: &[Request],
    terms: &BTreeMap<String, Terms>,
) -> Placed {
    place_by(agents, claims, requests, terms, Policy::Share)
}

/// Whether `agent` could ever hold `r`, empty: enough CPU, memory and matching healthy GPUs in
/// all.
fn could_hold(agent: &AgentView, r: &TaskResources) -> bool {
    agent.cpu_millis >= u64::from(r.cpu_millis)
        && agent.memory_mib >= r.memory_mib
        && agent.gpus.iter().filter(|g| gpu_matches(g, r)).count()
            >= usize::try_from(r.gpus).unwrap_or(usize::MAX)
}

/// Holds one agent for each gang that `policy` lets wait on one ([`Policy::reserves`]), in
/// priority order: the agent, not held yet and able to hold the gang at all, with the most free
/// GPUs the gang could use (then the most free CPU, then by name). Nothing else is placed there
/// in this pass, so it drains as its tasks end and the gang fits within one task's time;
/// without it, elastic work, which spreads to the least loaded agent, refills exactly the
/// agents that are emptying. Chosen afresh each pass, the choice stays put: nothing new lands
/// on a held agent, so its free GPUs only grow. Request id → agent.
fn reserve(
    agents: &[AgentView],
    free: &mut BTreeMap<String, Free>,
    order: &[&Request],
    shares: &BTreeMap<String, Standing>,
    (capacity, policy): (&Amount, Policy),
) -> BTreeMap<String, String> {
    let mut reservations = BTreeMap::new();
    let mut held: BTreeMap<String, Amount> = BTreeMap::new();
    for req in order {
        if !policy.reserves(req, shares, &held, capacity) {
            continue;
        }
        let r = &req.resources;
        let best = agents
            .iter()
            .filter(|a| could_hold(a, r))
            .filter_map(|a| free.get(&a.name).map(|f| (&a.name, f)))
            .filter(|(_, f)| f.reserved_for.is_none() && f.allows(req))
            .max_by(|(a, fa), (b, fb)| {
                fa.matching_gpus(r)
                    .cmp(&fb.matching_gpus(r))
                    .then_with(|| fa.cpu.cmp(&fb.cpu))
                    .then_with(|| b.cmp(a))
            })
            .map(|(name, _)| name.clone());
        let Some(name) = best else { continue };
        if let Some(f) = free.get_mut(&name) {
            f.reserved_for = Some(req.id.clone());
        }
        let h = held.entry(req.claimant.clone()).or_default();
        *h = h.plus(&request_amount(req));
        reservations.insert(req.id.clone(), name);
    }
    reservations
}

/// Places `requests` by `policy`: [`place_shared`], or plain priority (one queue for all, in
/// priority order, preempting by priority alone: see [`Policy`]).
///
/// With the share, each gang its claimant is owed first holds an agent (`reserve`): only it
/// may be placed there, and when it still fits nowhere it waits on that agent (its reason says
/// which, and how far it has drained); placed anywhere, it lets the agent go.
pub fn place_by(
    agents: &[AgentView],
    claims: &[Claim],
    requests: &[Request],
    terms: &BTreeMap<String, Terms>,
    policy: Policy,
) -> Placed {
    let mut free = free_capacity(agents, claims);
    let (capacity, mut shares) = standings(agents, claims, requests, terms);
    let mut queues: BTreeMap<&str, std::collections::VecDeque<&Request>> = BTreeMap::new();
    let mut order: Vec<&Request> = requests.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.priority));
    let mut reservations = reserve(agents, &mut free, &order, &shares, (&capacity, policy));
    for r in order {
        queues.entry(policy.queue(r)).or_default().push_back(r);
    }
    let mut waiting = 0;
    let mut out = Vec::new();
    let mut still_waiting: BTreeMap<String, Amount> = BTreeMap::new();
    loop {
        // The claimant that would be least served once its next unit is placed (as weighted
        // fair queueing orders by finish time): a claimant entitled to a sliver does not get
        // a whole GPU first just because it holds nothing yet.
        let next = queues
            .iter()
            .filter_map(|(id, q)| Some((*id, q.front()?)))
            .map(|(id, r)| {
                let s = shares.get(id).cloned().unwrap_or_default();
                (
                    served(&s.used.plus(&request_amount(r)), &s.entitled, &capacity),
                    id,
                )
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let Some(req) = next
            .and_then(|(_, id)| queues.get_mut(id))
            .and_then(std::collections::VecDeque::pop_front)
        else {
            break;
        };
        let outcome = place_one(
            agents,
            (&mut free, &mut reservations),
            &mut shares,
            (&capacity, policy),
            req,
        );
        if matches!(outcome, Outcome::Wait { .. }) {
            waiting += 1;
            if let Some(s) = shares.get_mut(&req.claimant) {
                s.waiting += 1;
            }
            let w = still_waiting.entry(req.claimant.clone()).or_default();
            *w = w.plus(&request_amount(req));
        }
        let outcome = match outcome {
            Outcome::Wait { reason, .. } => Outcome::Wait {
                reason,
                position: waiting,
            },
            other => other,
        };
        out.push((req.id.clone(), outcome));
    }
    // Tasks handed over in this pass no longer count for their claimants, whose demand they
    // were part of: the standings reported are those of the fleet after the pass, entitlements
    // from what each claimant then holds and still waits for.
    if out.iter().any(|(_, o)| matches!(o, Outcome::HandOver { .. })) {
        let demand: BTreeMap<String, Amount> = shares
            .iter()
            .map(|(id, s)| {
                let waiting = still_waiting.get(id).copied().unwrap_or_default();
                (id.clone(), s.used.plus(&waiting))
            })
            .collect();
        entitle(&capacity, &demand, terms, &mut shares);
    }
    Placed {
        outcomes: out,
        shares,
        reservations,
    }
}

/// One request: placed where it fits, else by preemption, else waiting (position filled in by
/// the caller). Updates the free capacity, the agents held for gangs and the claimants' use.
fn place_one(
    agents: &[AgentView],
    (free, reservations): (&mut BTreeMap<String, Free>, &mut BTreeMap<String, String>),
    shares: &mut BTreeMap<String, Standing>,
    (capacity, policy): (&Amount, Policy),
    req: &Request,
) -> Outcome {
    let room = if let Some((agent, gpus)) = choose(free, req) {
        Some((agent.clone(), gpus, Vec::new()))
    } else {
        if let Some(slot) = hand_over(agents, free, req) {
            return handed_over(free, reservations, shares, req, slot);
        }
        policy
            .evictable(req, shares, capacity)
            .and_then(|rule| preemption(agents, free, req, &*rule))
    };
    let Some((agent, gpus, victims)) = room else {
        let mut why = reason(agents, free, req);
        if let Some((held, f)) = reservations
            .get(&req.id)
            .and_then(|a| free.get(a).map(|f| (a, f)))
        {
            why = format!(
                "{why}; agent {held} is held for it ({} of {} GPUs free there) and takes no \
                 other work until it fits",
                f.matching_gpus(&req.resources),
                req.resources.gpus
            );
        }
        return Outcome::Wait {
            reason: why,
            position: 0,
        };
    };
    if let Some(held) = reservations.remove(&req.id)
        && let Some(f) = free.get_mut(&held)
    {
        f.reserved_for = None;
    }
    evict(agents, free, shares, &agent, &victims);
    if let Some(f) = free.get_mut(&agent) {
        f.take(req, &agent, &gpus);
    }
    if let Some(s) = shares.get_mut(&req.claimant) {
        s.used = s.used.plus(&request_amount(req));
    }
    if victims.is_empty() {
        Outcome::Place { agent, gpus }
    } else {
        Outcome::Preempt { agent, gpus, victims }
    }
}

/// Binds `req` to follow `after` on `agent`: the task followed counts no more in its
/// claimant's use, the request counts in its own.
fn handed_over(
    free: &mut BTreeMap<String, Free>,
    reservations: &mut BTreeMap<String, String>,
    shares: &mut BTreeMap<String, Standing>,
    req: &Request,
    (agent, gpus, after): (String, Vec<String>, String),
) -> Outcome {
    if let Some(held) = reservations.remove(&req.id)
        && let Some(f) = free.get_mut(&held)
    {
        f.reserved_for = None;
    }
    if let Some(f) = free.get_mut(&agent) {
        if let Some(c) = f.claims.iter().find(|c| c.task == after)
            && let Some(s) = shares.get_mut(&c.claimant)
        {
            s.used = s.used.minus(&claim_amount(c));
        }
        f.take_after(req, &agent, &gpus, &after);
    }
    if let Some(s) = shares.get_mut(&req.claimant) {
        s.used = s.used.plus(&request_amount(req));
    }
    Outcome::HandOver { agent, gpus, after }
}

#[cfg(test)]
mod tests;
