//! CPU, memory and disk from the operating system.

use std::path::Path;

use super::Host;

/// Reads the host's resources; the disk is the file system holding `data_dir`. What cannot be
/// read is reported as 0 and logged, never fatal.
pub fn host(data_dir: &Path) -> Host {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| meminfo_total_kib(&text))
        .map_or(0, |kib| kib / 1024);
    let (disk_mib, disk_free_mib) = match rustix::fs::statvfs(data_dir) {
        Ok(s) => (
            s.f_blocks.saturating_mul(s.f_frsize) >> 20,
            s.f_bavail.saturating_mul(s.f_frsize) >> 20,
        ),
        Err(e) => {
            tracing::warn!(dir = %data_dir.display(), error = %e, "failed to read the data directory's file system size");
            (0, 0)
        }
    };
    Host {
        cpu_millis: cpus as u64 * 1000,
        memory_mib,
        disk_mib,
        disk_free_mib,
    }
}

/// `MemTotal` from `/proc/meminfo`, KiB.
fn meminfo_total_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        let text = "MemTotal:       24596312 kB\nMemFree:         1000 kB\n";
        assert_eq!(meminfo_total_kib(text), Some(24_596_312));
        assert_eq!(meminfo_total_kib("nothing"), None);
    }

    #[test]
    fn reads_this_host() {
        let host = host(Path::new("/"));
        assert!(host.cpu_millis >= 1000);
        assert!(host.memory_mib > 0);
        assert!(host.disk_mib >= host.disk_free_mib);
    }
}
