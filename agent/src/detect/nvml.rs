//! GPUs through NVML. The library is loaded when the agent starts, so a node without the NVIDIA
//! driver builds and runs the same binary and reports zero GPUs with the loader's message.

use std::collections::HashMap;

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, EventSet, Nvml};

use super::{DetectError, GpuProcess, GpuSample, GpuSource};

/// How many XIDs per GPU are remembered.
const XID_HISTORY: usize = 16;
const MIB: u64 = 1024 * 1024;

/// Samples GPUs through NVML.
pub struct NvmlSource {
    nvml: &'static Nvml,
    events: Option<EventSet<'static>>,
    xids: HashMap<String, Vec<u64>>,
    /// Last process-utilization timestamp per GPU (NVML returns samples newer than it).
    last_seen: HashMap<u32, u64>,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSource").finish_non_exhaustive()
    }
}

fn err(action: &str) -> impl Fn(NvmlError) -> DetectError + '_ {
    move |e| DetectError(format!("failed to {action}: {e}"))
}

impl NvmlSource {
    /// Loads NVML and subscribes to critical XID and double-bit ECC events.
    ///
    /// # Errors
    /// [`DetectError`] when the library cannot be loaded or initialized (no driver).
    pub fn open() -> Result<Self, DetectError> {
        let nvml = Nvml::init().map_err(err("initialize NVML"))?;
        // One NVML handle for the life of the process: event sets borrow it.
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let events = subscribe(nvml);
        Ok(Self {
            nvml,
            events,
            xids: HashMap::new(),
            last_seen: HashMap::new(),
        })
    }

    /// The driver version, for the logs.
    pub fn driver_version(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    /// Drains pending XID events without blocking.
    fn drain_events(&mut self) {
        let Some(set) = &self.events else { return };
        while let Ok(event) = set.wait(0) {
            let Ok(uuid) = event.device.uuid() else { continue };
            let xid = match event.event_data {
                Some(XidError::Value(x)) => x,
                // Double-bit ECC events carry no XID; 48 is the XID for them.
                _ if event.event_type.contains(EventTypes::DOUBLE_BIT_ECC_ERROR) => 48,
                _ => continue,
            };
            tracing::warn!(gpu = %uuid, xid, "GPU reported an XID error");
            let seen = self.xids.entry(uuid).or_default();
            seen.push(xid);
            if seen.len() > XID_HISTORY {
                seen.remove(0);
            }
        }
    }

    fn read(&mut self, device: &Device<'static>, index: u32) -> GpuSample {
        let read_uuid = device.uuid();
        let lost = matches!(read_uuid, Err(NvmlError::GpuLost));
        let uuid = read_uuid.unwrap_or_else(|_| format!("GPU-index-{index}"));
        let mut sample = GpuSample {
            index,
            uuid: uuid.clone(),
            xids: self.xids.get(&uuid).cloned().unwrap_or_default(),
            ..GpuSample::default()
        };
        match device.name() {
            Ok(name) => sample.product = name,
            Err(e) => sample.error = Some(e.to_string()),
        }
        match device.memory_info() {
            Ok(m) => {
                sample.memory_total_mib = m.total / MIB;
                sample.memory_used_mib = m.used / MIB;
            }
            Err(e) => sample.error = Some(e.to_string()),
        }
        sample.utilization_pct = device.utilization_rates().ok().map(|u| u.gpu);
        sample.temperature_c = device.temperature(TemperatureSensor::Gpu).ok();
        sample.power_w = device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0);
        sample.ecc_uncorrected = device
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .ok();
        sample.mig_enabled = device.mig_mode().is_ok_and(|m| m.current == 1);
        if sample.mig_enabled {
            let count = device.mig_device_count().unwrap_or(0);
            sample.mig_devices = (0..count)
                .filter_map(|i| device.mig_device_by_index(i).ok())
                .filter_map(|d| d.uuid().ok())
                .collect();
        }
        let utilization: HashMap<u32, u32> = device
            .process_utilization_stats(self.last_seen.get(&index).copied())
            .map(|samples| {
                if let Some(newest) = samples.iter().map(|s| s.timestamp).max() {
                    self.last_seen.insert(index, newest);
                }
                samples.into_iter().map(|s| (s.pid, s.sm_util)).collect()
            })
            .unwrap_or_default();
        sample.processes = device
            .running_compute_processes()
            .unwrap_or_default()
            .into_iter()
            .map(|p| GpuProcess {
                pid: p.pid,
                memory_used_mib: match p.used_gpu_memory {
                    UsedGpuMemory::Used(bytes) => bytes / MIB,
                    UsedGpuMemory::Unavailable => 0,
                },
                sm_utilization_pct: utilization.get(&p.pid).copied(),
            })
            .collect();
        if lost {
            sample.error = Some("GPU is lost (fell off the bus)".into());
        }
        sample
    }
}

/// Registers every GPU for critical XID and double-bit ECC events; `None` when the driver
/// does not support events (the agent still reads ECC counters).
fn subscribe(nvml: &'static Nvml) -> Option<EventSet<'static>> {
    let mut set = nvml.create_event_set().ok()?;
    let count = nvml.device_count().ok()?;
    for index in 0..count {
        let device = nvml.device_by_index(index).ok()?;
        set = match device.register_events(
            EventTypes::CRITICAL_XID_ERROR | EventTypes::DOUBLE_BIT_ECC_ERROR,
            set,
        ) {
            Ok(set) => set,
            Err(e) => {
                tracing::info!(index, error = %e, "GPU events not available; health from ECC counters only");
                return None;
            }
        };
    }
    Some(set)
}

impl GpuSource for NvmlSource {
    fn sample(&mut self) -> Result<Vec<GpuSample>, DetectError> {
        self.drain_events();
        let count = self.nvml.device_count().map_err(err("count GPUs"))?;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            match self.nvml.device_by_index(index) {
                Ok(device) => out.push(self.read(&device, index)),
                Err(e) => out.push(GpuSample {
                    index,
                    uuid: format!("GPU-index-{index}"),
                    error: Some(e.to_string()),
                    ..GpuSample::default()
                }),
            }
        }
        Ok(out)
    }
}
