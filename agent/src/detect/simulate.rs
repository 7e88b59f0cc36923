//! A made-up GPU inventory for tests and benchmarks: `--simulate-gpus 4xH100-80GB`.

use std::str::FromStr;

use super::{DetectError, GpuSample, GpuSource};

/// A parsed `--simulate-gpus` value: `[<count>x]<product>-<memory>GB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedGpus {
    /// How many GPUs.
    pub count: u32,
    /// Product, as NVML would name it (`NVIDIA H100 80GB`).
    pub product: String,
    /// Memory per GPU, MiB.
    pub memory_mib: u64,
}

impl FromStr for SimulatedGpus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "invalid GPU inventory {s:?}: expected [<count>x]<product>-<memory>GB, for example 4xH100-80GB"
            )
        };
        let (count, rest) = match s.split_once('x') {
            Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (n.parse::<u32>().map_err(|_| usage())?, rest)
            }
            _ => (1, s),
        };
        if count == 0 || count > 64 {
            return Err(format!("invalid GPU count {count} in {s:?}: 1 to 64"));
        }
        let (product, memory) = rest.rsplit_once('-').ok_or_else(usage)?;
        let gb = memory
            .strip_suffix("GB")
            .or_else(|| memory.strip_suffix("G"))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| (1..=4096).contains(n))
            .ok_or_else(usage)?;
        if product.is_empty() || !product.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(usage());
        }
        Ok(Self {
            count,
            product: format!("NVIDIA {product} {gb}GB"),
            memory_mib: gb * 1024,
        })
    }
}

/// A source that reports the simulated GPUs, all healthy and idle.
#[derive(Debug, Clone)]
pub struct SimulatedSource {
    gpus: SimulatedGpus,
    node: String,
}

impl SimulatedSource {
    /// Simulated GPUs of the agent `node` (UUIDs are derived from its name, so they are stable
    /// across restarts).
    pub fn new(gpus: SimulatedGpus, node: &str) -> Self {
        Self {
            gpus,
            node: node.to_owned(),
        }
    }
}

impl GpuSource for SimulatedSource {
    fn sample(&mut self) -> Result<Vec<GpuSample>, DetectError> {
        Ok((0..self.gpus.count)
            .map(|index| GpuSample {
                index,
                uuid: format!("GPU-sim-{}-{index}", self.node),
                product: self.gpus.product.clone(),
                memory_total_mib: self.gpus.memory_mib,
                ecc_uncorrected: Some(0),
                ..GpuSample::default()
            })
            .collect())
    }

    fn simulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_count_product_and_memory() {
        let g: SimulatedGpus = "4xH100-80GB".parse().unwrap();
        assert_eq!(g.count, 4);
        assert_eq!(g.product, "NVIDIA H100 80GB");
        assert_eq!(g.memory_mib, 80 * 1024);
        let one: SimulatedGpus = "A10G-24GB".parse().unwrap();
        assert_eq!(one.count, 1);
        assert_eq!(one.memory_mib, 24 * 1024);
    }

    #[test]
    fn refuses_bad_inventories_with_the_format() {
        for bad in [
            "",
            "4x",
            "0xH100-80GB",
            "4xH100",
            "4xH100-eightyGB",
            "99xH100-80GB",
            "4x-80GB",
            "4xH 100-80GB",
        ] {
            let err = bad.parse::<SimulatedGpus>().unwrap_err();
            assert!(err.contains("GPU"), "{bad}: {err}");
        }
    }

    #[test]
    fn uuids_are_stable_per_node() {
        let gpus: SimulatedGpus = "2xA100-40GB".parse().unwrap();
        let a = SimulatedSource::new(gpus.clone(), "n1").sample().unwrap();
        let b = SimulatedSource::new(gpus, "n1").sample().unwrap();
        assert_eq!(a, b);
        assert_eq!(a[1].uuid, "GPU-sim-n1-1");
    }
}
