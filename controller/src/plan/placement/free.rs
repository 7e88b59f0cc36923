//! What one agent has free while placing: CPU, memory, whole GPUs, and GPUs that fractional
//! tasks share (with what is left of each), from its live tasks' claims; taking a request's
//! resources and giving a claim's back.

use std::collections::BTreeMap;

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
    pub(super) fresh: std::collections::HashSet<String>,
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
            gpu_fraction: fraction,
            gpu_memory_mib: r.gpu_memory_mib,
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
                cpu: i128::from(a.cpu_millis) - mine.iter().map(|c| i128::from(c.cpu_millis)).sum::<i128>(),
                memory: i128::from(a.memory_mib)
                    - mine.iter().map(|c| i128::from(c.memory_mib)).sum::<i128>(),
                gpus: a
                    .gpus
                    .iter()
                    .filter(|g| !whole.contains(&&g.uuid) && !shared.iter().any(|s| s.gpu.uuid == g.uuid))
                    .cloned()
                    .collect(),
                shared,
                claims: mine,
                fresh: std::collections::HashSet::new(),
                disk_pressure: a.disk_pressure,
                reserved_for: None,
            };
            (a.name.clone(), free)
        })
        .collect()
}
