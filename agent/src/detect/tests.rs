use super::*;

/// A fake GPU source: scripted samples, one per call (the last repeats).
struct Fake(Vec<Result<Vec<GpuSample>, DetectError>>);

impl GpuSource for Fake {
    fn sample(&mut self) -> Result<Vec<GpuSample>, DetectError> {
        if self.0.len() > 1 {
            self.0.remove(0)
        } else {
            self.0[0].clone()
        }
    }
}

fn gpu(index: u32) -> GpuSample {
    GpuSample {
        index,
        uuid: format!("GPU-{index}"),
        product: "NVIDIA H100 80GB HBM3".into(),
        memory_total_mib: 81_559,
        memory_used_mib: 10,
        ecc_uncorrected: Some(0),
        ..GpuSample::default()
    }
}

fn host() -> Host {
    Host {
        cpu_millis: 16_000,
        memory_mib: 128_000,
        disk_mib: 64_000,
        disk_free_mib: 60_000,
    }
}

#[test]
fn samples_map_to_capacity() {
    let mut source = Fake(vec![Ok(vec![gpu(0), gpu(1)])]);
    let capacity = Inventory::take(&mut source, host()).capacity();
    assert_eq!(capacity.gpu_count, 2);
    assert_eq!(capacity.gpus[1].uuid, "GPU-1");
    assert_eq!(capacity.gpus[1].memory_mib, 81_559);
    assert_eq!(capacity.gpus[0].health, GpuHealth::Healthy);
    assert_eq!(capacity.cpu_millis, 16_000);
    assert_eq!(capacity.disk_mib, 64_000);
    assert!(capacity.gpu_detection_message.is_none());
    assert!(!capacity.simulated);
}

#[test]
fn no_library_means_zero_gpus_with_the_reason() {
    let mut source = NoGpus("libnvidia-ml.so.1: cannot open shared object file".into());
    let inventory = Inventory::take(&mut source, host());
    let capacity = inventory.capacity();
    assert_eq!(capacity.gpu_count, 0);
    assert!(capacity.gpus.is_empty());
    assert!(
        capacity
            .gpu_detection_message
            .as_deref()
            .is_some_and(|m| m.contains("libnvidia-ml"))
    );
    assert_eq!(capacity.cpu_millis, 16_000);
}

#[test]
fn a_gpu_that_turns_unhealthy_is_reported() {
    let mut bad = gpu(1);
    bad.ecc_uncorrected = Some(2);
    let mut source = Fake(vec![Ok(vec![gpu(0), gpu(1)]), Ok(vec![gpu(0), bad])]);
    let first = Inventory::take(&mut source, host());
    assert!(first.unhealthy().is_empty());
    let second = Inventory::take(&mut source, host());
    assert_eq!(second.unhealthy(), vec!["GPU-1".to_owned()]);
    let capacity = second.capacity();
    assert_eq!(capacity.gpus[1].health, GpuHealth::Unhealthy);
    assert!(
        capacity.gpus[1]
            .health_message
            .as_deref()
            .is_some_and(|m| m.contains("ECC"))
    );
    assert_eq!(capacity.gpus[0].health, GpuHealth::Healthy);
}

#[test]
fn application_xids_do_not_make_a_gpu_unhealthy() {
    let mut sample = gpu(0);
    sample.xids = vec![13, 31, 43];
    assert_eq!(health(&sample).0, GpuHealth::Healthy);
    sample.xids.push(79);
    let (state, message) = health(&sample);
    assert_eq!(state, GpuHealth::Unhealthy);
    assert_eq!(message.as_deref(), Some("critical XID 79"));
}

#[test]
fn an_unreadable_device_is_unhealthy() {
    let mut sample = gpu(0);
    sample.error = Some("GPU is lost".into());
    assert_eq!(health(&sample).0, GpuHealth::Unhealthy);
}

#[test]
fn ecc_off_is_not_an_error() {
    let mut sample = gpu(0);
    sample.ecc_uncorrected = None;
    assert_eq!(health(&sample).0, GpuHealth::Healthy);
}
