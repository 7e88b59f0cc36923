//! What this node has: GPUs (through NVML, or simulated), CPU, memory and disk.
//!
//! A [`GpuSource`] takes samples; everything that turns samples into the `Agent`'s capacity,
//! health and conditions is pure and tested with a fake source.

pub mod nvml;
pub mod os;
pub mod simulate;

use ringrift_crds::agent::{Capacity, Gpu, GpuHealth};
use serde::Serialize;

/// One GPU as sampled now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuSample {
    /// NVML index.
    pub index: u32,
    /// `GPU-…` UUID (what `CUDA_VISIBLE_DEVICES` takes).
    pub uuid: String,
    /// Product name, for example `NVIDIA H100 80GB HBM3`.
    pub product: String,
    /// Frame buffer size, MiB.
    pub memory_total_mib: u64,
    /// Frame buffer in use, MiB.
    pub memory_used_mib: u64,
    /// GPU utilization, percent, when the device reports it.
    pub utilization_pct: Option<u32>,
    /// Core temperature, °C.
    pub temperature_c: Option<u32>,
    /// Power draw, watts.
    pub power_w: Option<f64>,
    /// Uncorrected ECC errors since the driver loaded (volatile counter), when ECC is on.
    pub ecc_uncorrected: Option<u64>,
    /// Critical XID errors seen since the agent started (newest last, bounded).
    pub xids: Vec<u64>,
    /// Whether MIG mode is on.
    pub mig_enabled: bool,
    /// MIG devices (UUIDs) when MIG is on.
    pub mig_devices: Vec<String>,
    /// Compute processes on this GPU.
    pub processes: Vec<GpuProcess>,
    /// Set when the device could not be read at all (for example `GpuLost`).
    pub error: Option<String>,
}

/// A compute process on a GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuProcess {
    /// Host process id.
    pub pid: u32,
    /// GPU memory it uses, MiB.
    pub memory_used_mib: u64,
    /// Its SM utilization, percent, when sampled.
    pub sm_utilization_pct: Option<u32>,
}

/// Why GPUs could not be listed. Never fatal: the agent runs with zero GPUs and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DetectError(pub String);

/// Where GPU samples come from.
pub trait GpuSource: Send {
    /// Samples every GPU.
    ///
    /// # Errors
    /// [`DetectError`] when the library is missing or the driver does not answer.
    fn sample(&mut self) -> Result<Vec<GpuSample>, DetectError>;

    /// Whether the inventory is simulated.
    fn simulated(&self) -> bool {
        false
    }
}

/// A source that has no GPUs, with the reason.
#[derive(Debug)]
pub struct NoGpus(pub String);

impl GpuSource for NoGpus {
    fn sample(&mut self) -> Result<Vec<GpuSample>, DetectError> {
        Err(DetectError(self.0.clone()))
    }
}

/// XIDs that applications cause (bad memory access, page faults, a killed context) rather than
/// the hardware; they do not make a GPU unhealthy. The same list the NVIDIA device plugin skips.
pub const APPLICATION_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// Whether a GPU is healthy, and if not, why.
pub fn health(sample: &GpuSample) -> (GpuHealth, Option<String>) {
    if let Some(error) = &sample.error {
        return (GpuHealth::Unhealthy, Some(format!("device unreadable: {error}")));
    }
    if let Some(n) = sample.ecc_uncorrected.filter(|n| *n > 0) {
        return (
            GpuHealth::Unhealthy,
            Some(format!("{n} uncorrected ECC errors since the driver loaded")),
        );
    }
    if let Some(xid) = sample.xids.iter().rev().find(|x| !APPLICATION_XIDS.contains(x)) {
        return (GpuHealth::Unhealthy, Some(format!("critical XID {xid}")));
    }
    (GpuHealth::Healthy, None)
}

/// The node's resources apart from GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// CPUs this process may use, thousandths of a core.
    pub cpu_millis: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Size of the data directory's file system, MiB.
    pub disk_mib: u64,
    /// Free space there, MiB.
    pub disk_free_mib: u64,
}

/// What the agent knows about its node at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// GPU samples (empty with a reason in `gpu_error` when there are none).
    pub gpus: Vec<GpuSample>,
    /// Why there are no GPUs.
    pub gpu_error: Option<String>,
    /// Whether the GPUs are simulated.
    pub simulated: bool,
    /// CPU, memory, disk.
    pub host: Host,
}

impl Inventory {
    /// Takes an inventory from a GPU source and the host.
    pub fn take(source: &mut dyn GpuSource, host: Host) -> Self {
        let simulated = source.simulated();
        match source.sample() {
            Ok(gpus) => Self {
                gpus,
                gpu_error: None,
                simulated,
                host,
            },
            Err(DetectError(reason)) => Self {
                gpus: Vec::new(),
                gpu_error: Some(reason),
                simulated,
                host,
            },
        }
    }

    /// The `Agent` status capacity this inventory reports.
    pub fn capacity(&self) -> Capacity {
        let gpus: Vec<Gpu> = self
            .gpus
            .iter()
            .map(|g| {
                let (health, health_message) = health(g);
                Gpu {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    product: g.product.clone(),
                    memory_mib: g.memory_total_mib,
                    health,
                    health_message,
                    mig_enabled: g.mig_enabled,
                }
            })
            .collect();
        Capacity {
            cpu_millis: self.host.cpu_millis,
            memory_mib: self.host.memory_mib,
            disk_mib: self.host.disk_mib,
            gpu_count: u32::try_from(gpus.len()).unwrap_or(u32::MAX),
            gpu_detection_message: self.gpu_error.clone(),
            gpus,
            simulated: self.simulated,
        }
    }

    /// UUIDs of GPUs that are unhealthy now.
    pub fn unhealthy(&self) -> Vec<String> {
        self.gpus
            .iter()
            .filter(|g| health(g).0 == GpuHealth::Unhealthy)
            .map(|g| g.uuid.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
