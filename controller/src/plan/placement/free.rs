//! What one agent has free while placing: CPU, memory, whole GPUs, and GPUs that fractional
//! tasks share (with what is left of each), from its live tasks' claims; taking a request's
//! resources and giving a claim's back; the running tasks about to end that could hand their
//! GPUs over to a successor.

use std::collections::{BTreeMap, HashSet};

use ringrift_crds::common::{GpuFraction, TaskResources};

use super::{AgentView, Claim, GpuView, Request, glob_match};

/// Free capacity of one agent while placing.
#[derive(Debug, Clone)]
pub(super) struct Free {
    pub(super) cpu: i128,
    pub(super) memory: i128,
    /// GPUs nothing holds.
    pub(super) gpus: Vec<GpuView>,
    /// GPUs held by fractional tasks only: what is left of each.
    pub(super) shared: Vec<Shared>,
    pub(super) claims: Vec<Claim>,
    /// Requests placed here in this pass: their claims are no tasks yet, never preempted.
    pub(super) fresh: HashSet<String>,
    /// Tasks a successor follows (a hand-over, bound before or in this pass): they hand over
    /// to no other, and are not preempted (they are about to end).
    pub(super) followed: HashSet<String>,
    /// Successors whose predecessor is still here: they hold nothing of their own yet and are
    /// not preempted (that would free nothing).
    pub(super) queued: HashSet<String>,
    pub(super) disk_pressure: bool,
    /// The waiting gang this agent is held for (see `super::reserve`): nothing else goes here.
    pub(super) reserved_for: Option<String>,
}

/// A GPU that fractional tasks share.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) gpu: GpuView,
    /// Thousandths not taken.
    pub(super) left: u16,
    /// Memory not taken, MiB.
    pub(super) memory_left: u64,
}

impl Shared {
    pub(super) fn whole(gpu: &GpuView) -> Self {
        Self {
            gpu: gpu.clone(),
            left: GpuFraction::WHOLE,
            memory_left: gpu.memory_mib,
        }
    }
}

pub(super) fn gpu_matches(gpu: &GpuView, r: &TaskResources) -> bool {
    gpu.memory_mib >= r.gpu_memory_mib && selected(gpu, r)
}

/// Whether the GPU is healthy and what the request's selector asks for (memory aside).
pub(super) fn selected(gpu: &GpuView, r: &TaskResources) -> bool {
    let selector = r.gpu_selector.as_ref();
    gpu.healthy
        && selector
            .and_then(|s| s.product.as_deref())
            .is_none_or(|p| glob_match(p, &gpu.product))
        && selector
            .and_then(|s| s.min_memory_mib)
            .is_none_or(|m| gpu.memory_mib >= m)
}

impl Free {
    /// Whether the request may go here at all (its outputs need disk).
    pub(super) fn allows(&self, req: &Request) -> bool {
        !(self.disk_pressure && req.writes_outputs)
    }

    /// Whether the request may go here now: its outputs need disk, and an agent held for a
    /// waiting gang takes only that gang.
    pub(super) fn open_to(&self, req: &Request) -> bool {
        self.allows(req) && self.reserved_for.as_ref().is_none_or(|id| *id == req.id)
    }

    /// How many of its free whole GPUs the request could use (memory and selector).
    pub(super) fn matching_gpus(&self, r: &TaskResources) -> usize {
        self.gpus.iter().filter(|g| gpu_matches(g, r)).count()
    }

    /// The GPUs this request would get here, if it fits: whole free GPUs, or for a fraction
    /// the fullest shared GPU it still fits on (packing), else a free one.
    pub(super) fn fit(&self, r: &TaskResources) -> Option<Vec<String>> {
        if self.cpu < i128::from(r.cpu_millis) || self.memory < i128::from(r.memory_mib) {
            return None;
        }
        if let Some(f) = r.gpu_fraction.map(GpuFraction::thousandths) {
            let shared = self
                .shared
                .iter()
                .filter(|s| s.left >= f && s.memory_left >= r.gpu_memory_mib && selected(&s.gpu, r))
                .min_by_key(|s| (s.left, s.gpu.uuid.clone()))
                .map(|s| s.gpu.uuid.clone());
            return shared
                .or_else(|| {
                    self.gpus
                        .iter()
                        .find(|g| gpu_matches(g, r))
                        .map(|g| g.uuid.clone())
                })
                .map(|uuid| vec![uuid]);
        }
        let gpus: Vec<String> = self
            .gpus
            .iter()
            .filter(|g| gpu_matches(g, r))
            .map(|g| g.uuid.clone())
            .collect();
        let wanted = usize::try_from(r.gpus).unwrap_or(usize::MAX);
        (gpus.len() >= wanted).then(|| gpus.into_iter().take(wanted).collect())
    }

    /// Whether a claim may be preempted: elastic, a task already (not placed in this pass),
    /// and in no hand-over.
    pub(super) fn preemptible(&self, c: &Claim) -> bool {
        c.elastic
            && !self.fresh.contains(&c.task)
            && !self.followed.contains(&c.task)
            && !self.queued.contains(&c.task)
    }

    /// The running task here that the request could follow (a hand-over), with how soon it is
    /// expected to end: one that may hand over ([`Claim::ends_in_ms`]) and no successor has
    /// taken yet, holding as many whole GPUs as the request wants, all matching it, and at least
    /// its CPU and memory (which the successor takes over). The soonest to end; whole-GPU
    /// requests only.
    pub(super) fn slot(&self, r: &TaskResources, inventory: &[GpuView]) -> Option<(&Claim, u64)> {
        if r.gpu_fraction.is_some() || r.gpus == 0 {
            return None;
        }
        let wanted = usize::try_from(r.gpus).unwrap_or(usize::MAX);
        self.claims
            .iter()
            .filter_map(|c| Some((c, c.ends_in_ms?)))
            .filter(|(c, _)| {
                c.gpu_fraction.is_none()
                    && c.gpus.len() == wanted
                    && !self.followed.contains(&c.task)
                    && u64::from(r.cpu_millis) <= c.cpu_millis
                    && r.memory_mib <= c.memory_mib
                    && c.gpus
                        .iter()
                        .all(|uuid| inventory.iter().any(|g| &g.uuid == uuid && gpu_matches(g, r)))
            })
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.task.cmp(&b.0.task)))
    }

    /// Binds the request to the GPUs of `after`, to start when it ends: it takes nothing now
    /// (what `after` holds covers it), and `after` takes no other successor.
    pub(super) fn take_after(&mut self, req: &Request, agent: &str, gpus: &[String], after: &str) {
        self.take_claim(req, agent, gpus, Some(after.to_owned()));
        self.followed.insert(after.to_owned());
        self.queued.insert(req.id.clone());
    }

    pub(super) fn take(&mut self, req: &Request, agent: &str, gpus: &[String]) {
        let r = &req.resources;
        self.cpu -= i128::from(r.cpu_millis);
        self.memory -= i128::from(r.memory_mib);
        let fraction = r.gpu_fraction.map(GpuFraction::thousandths);
        if let Some(f) = fraction {
            for uuid in gpus {
                if let Some(i) = self.gpus.iter().position(|g| &g.uuid == uuid) {
                    let gpu = self.gpus.remove(i);
                    self.shared.push(Shared::whole(&gpu));
                }
                if let Some(s) = self.shared.iter_mut().find(|s| &s.gpu.uuid == uuid) {
                    s.left = s.left.saturating_sub(f);
                    s.memory_left = s.memory_left.saturating_sub(r.gpu_memory_mib);
                }
            }
        } else {
            self.gpus.retain(|g| !gpus.contains(&g.uuid));
        }
        self.take_claim(req, agent, gpus, None);
    }

    fn take_claim(&mut self, req: &Request, agent: &str, gpus: &[String], after: Option<String>) {
        let r = &req.resources;
        self.fresh.insert(req.id.clone());
        self.claims.push(Claim {
            task: req.id.clone(),
            agent: agent.to_owned(),
            cpu_millis: u64::from(r.cpu_millis),
            memory_mib: r.memory_mib,
            gpus: gpus.to_vec(),
            priority: req.priority,
            elastic: req.elastic,
            claimant: req.claimant.clone(),
            gpu_fraction: r.gpu_fraction.map(GpuFraction::thousandths),
            gpu_memory_mib: r.gpu_memory_mib,
            ends_in_ms: None,
            after,
        });
    }

    /// Gives back what a claim held; `inventory` says what its GPUs are. A shared GPU its
    /// fractions all left is whole again.
    pub(super) fn release(&mut self, claim: &Claim, inventory: &[GpuView]) {
        self.cpu += i128::from(claim.cpu_millis);
        self.memory += i128::from(claim.memory_mib);
        if let Some(f) = claim.gpu_fraction {
            for uuid in &claim.gpus {
                if let Some(i) = self.shared.iter().position(|s| &s.gpu.uuid == uuid) {
                    let s = &mut self.shared[i];
                    s.left = (s.left + f).min(GpuFraction::WHOLE);
                    s.memory_left = (s.memory_left + claim.gpu_memory_mib).min(s.gpu.memory_mib);
                    if s.left == GpuFraction::WHOLE {
                        let whole = self.shared.remove(i);
                        self.gpus.push(whole.gpu);
                    }
                }
            }
            return;
        }
        self.gpus
            .extend(inventory.iter().filter(|g| claim.gpus.contains(&g.uuid)).cloned());
    }

    pub(super) fn load(&self) -> (usize, i128) {
        (self.gpus.len(), self.cpu)
    }
}

pub(super) fn inventory<'a>(agents: &'a [AgentView], name: &str) -> &'a [GpuView] {
    agents
        .iter()
        .find(|a| a.name == name)
        .map_or(&[], |a| a.gpus.as_slice())
}

pub(super) fn free_capacity(agents: &[AgentView], claims: &[Claim]) -> BTreeMap<String, Free> {
    agents
        .iter()
        .filter(|a| a.ready && !a.unschedulable)
        .map(|a| {
            let mine: Vec<Claim> = claims.iter().filter(|c| c.agent == a.name).cloned().collect();
            let (followed, queued) = hand_overs(&mine);
            // A successor waiting for its predecessor holds nothing of its own yet.
            let holding = || mine.iter().filter(|c| !queued.contains(&c.task));
            let whole: Vec<&String> = mine
                .iter()
                .filter(|c| c.gpu_fraction.is_none())
                .flat_map(|c| &c.gpus)
                .collect();
            let mut shared: Vec<Shared> = Vec::new();
            for c in mine.iter().filter(|c| c.gpu_fraction.is_some()) {
                for uuid in &c.gpus {
                    let Some(gpu) = a.gpus.iter().find(|g| &g.uuid == uuid) else {
                        continue;
                    };
                    if !shared.iter().any(|s| &s.gpu.uuid == uuid) {
                        shared.push(Shared::whole(gpu));
                    }
                    if let Some(s) = shared.iter_mut().find(|s| &s.gpu.uuid == uuid) {
                        s.left = s.left.saturating_sub(c.gpu_fraction.unwrap_or(0));
                        s.memory_left = s.memory_left.saturating_sub(c.gpu_memory_mib);
                    }
                }
            }
            let free = Free {
                cpu: i128::from(a.cpu_millis) - holding().map(|c| i128::from(c.cpu_millis)).sum::<i128>(),
                memory: i128::from(a.memory_mib) - holding().map(|c| i128::from(c.memory_mib)).sum::<i128>(),
                gpus: a
                    .gpus
                    .iter()
                    .filter(|g| !whole.contains(&&g.uuid) && !shared.iter().any(|s| s.gpu.uuid == g.uuid))
                    .cloned()
                    .collect(),
                shared,
                claims: mine,
                fresh: HashSet::new(),
                followed,
                queued,
                disk_pressure: a.disk_pressure,
                reserved_for: None,
            };
            (a.name.clone(), free)
        })
        .collect()
}

/// Of `claims`, the tasks a successor follows and the successors waiting for them (whose
/// predecessor is among the claims: once it has ended, a successor is an ordinary task).
pub(super) fn hand_overs(claims: &[Claim]) -> (HashSet<String>, HashSet<String>) {
    let present: HashSet<&str> = claims.iter().map(|c| c.task.as_str()).collect();
    let mut followed = HashSet::new();
    let mut queued = HashSet::new();
    for c in claims {
        if let Some(after) = c.after.as_deref().filter(|p| present.contains(p)) {
            followed.insert(after.to_owned());
            queued.insert(c.task.clone());
        }
    }
    (followed, queued)
}
