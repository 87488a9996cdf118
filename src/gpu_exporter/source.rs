//! Where GPU readings come from: NVML (through nvml-wrapper, which loads
//! `libnvidia-ml.so.1` at run time, so the binary runs and says so clearly where
//! there is none), or a fake for tests.

use std::sync::Arc;

use super::xid::{self, XidLog};
use crate::expose::dcgm::Values;

/// One GPU, read once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub pci_bus_id: String,
    /// dcgm-exporter field → value, in dcgm-exporter's units; fields the GPU does
    /// not support are absent.
    pub values: Values,
}

/// A source of GPU readings.
pub trait GpuSource: Send + Sync {
    fn driver_version(&self) -> String;
    /// Every GPU's reading; a GPU that cannot be read at all is an error.
    fn read_all(&self) -> Result<Vec<Reading>, String>;
}

/// NVML.
pub struct Nvml {
    nvml: Arc<nvml_wrapper::Nvml>,
    xids: Arc<XidLog>,
    /// What became of the XID watch, for the start-up log.
    pub xid_watch: String,
}

impl Nvml {
    /// Loads NVML and starts watching XID events; a clear message when the
    /// library or the driver is missing, or there are no GPUs.
    pub fn open() -> Result<Self, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
            format!(
                "NVML is not available ({e}): this needs an NVIDIA driver and libnvidia-ml.so.1 \
                 (on Kubernetes, the NVIDIA container runtime or a runtimeClassName that provides it)"
            )
        })?;
        match nvml.device_count() {
            Ok(0) => Err("NVML found no NVIDIA GPUs on this machine".into()),
            Ok(_) => {
                let nvml = Arc::new(nvml);
                let xids = Arc::new(XidLog::default());
                let xid_watch = match xid::watch(nvml.clone(), xids.clone()) {
                    Ok(0) => {
                        "no GPU supports XID events: DCGM_FI_DEV_XID_ERRORS is left out".into()
                    }
                    Ok(n) => format!("watching XID events on {n} GPU(s)"),
                    Err(e) => format!("XID events are not watched ({e})"),
                };
                Ok(Self {
                    nvml,
                    xids,
                    xid_watch,
                })
            }
            Err(e) => Err(format!("NVML could not count the GPUs: {e}")),
        }
    }
}

impl GpuSource for Nvml {
    fn driver_version(&self) -> String {
        self.nvml.sys_driver_version().unwrap_or_default()
    }

    fn read_all(&self) -> Result<Vec<Reading>, String> {
        use nvml_wrapper::enum_wrappers::device::{
            Clock, EccCounter, MemoryError, PcieUtilCounter, PerformancePolicy, TemperatureSensor,
        };
        let n = self.nvml.device_count().map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let d = self
                .nvml
                .device_by_index(i)
                .map_err(|e| format!("GPU {i}: {e}"))?;
            let uuid = d.uuid().unwrap_or_default();
            let mut v = Values::new();
            let mut put = |k: &'static str, r: Option<f64>| {
                if let Some(x) = r {
                    v.insert(k, x);
                }
            };
            put(
                "DCGM_FI_DEV_SM_CLOCK",
                d.clock_info(Clock::SM).ok().map(f64::from),
            );
            put(
                "DCGM_FI_DEV_MEM_CLOCK",
                d.clock_info(Clock::Memory).ok().map(f64::from),
            );
            put(
                "DCGM_FI_DEV_GPU_TEMP",
                d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
            );
            put(
                "DCGM_FI_DEV_POWER_USAGE",
                d.power_usage().ok().map(|mw| f64::from(mw) / 1e3),
            );
            put(
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                d.total_energy_consumption().ok().map(|mj| mj as f64),
            );
            put(
                "DCGM_FI_DEV_POWER_MGMT_LIMIT",
                d.enforced_power_limit().ok().map(|mw| f64::from(mw) / 1e3),
            );
            put(
                "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                d.pcie_replay_counter().ok().map(f64::from),
            );
            if let Ok(u) = d.utilization_rates() {
                put("DCGM_FI_DEV_GPU_UTIL", Some(f64::from(u.gpu)));
                put("DCGM_FI_DEV_MEM_COPY_UTIL", Some(f64::from(u.memory)));
            }
            if let Ok(m) = d.memory_info() {
                let mib = |b: u64| (b / (1 << 20)) as f64;
                put("DCGM_FI_DEV_FB_FREE", Some(mib(m.free)));
                put("DCGM_FI_DEV_FB_USED", Some(mib(m.used)));
                put("DCGM_FI_DEV_FB_TOTAL", Some(mib(m.total)));
            }
            put("DCGM_FI_DEV_FAN_SPEED", d.fan_speed(0).ok().map(f64::from));
            put(
                "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
                d.current_throttle_reasons().ok().map(|r| r.bits() as f64),
            );
            // NVML counts violation time in ns; DCGM in µs.
            for (k, p) in [
                ("DCGM_FI_DEV_POWER_VIOLATION", PerformancePolicy::Power),
                ("DCGM_FI_DEV_THERMAL_VIOLATION", PerformancePolicy::Thermal),
            ] {
                put(
                    k,
                    d.violation_status(p)
                        .ok()
                        .map(|t| (t.violation_time / 1000) as f64),
                );
            }
            for (k, e) in [
                ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", MemoryError::Corrected),
                ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", MemoryError::Uncorrected),
            ] {
                put(
                    k,
                    d.total_ecc_errors(e, EccCounter::Volatile)
                        .ok()
                        .map(|n| n as f64),
                );
            }
            // NVML gives KB/s over a short window; DCGM's field is bytes/s.
            for (k, c) in [
                ("DCGM_FI_PROF_PCIE_TX_BYTES", PcieUtilCounter::Send),
                ("DCGM_FI_PROF_PCIE_RX_BYTES", PcieUtilCounter::Receive),
            ] {
                put(
                    k,
                    d.pcie_throughput(c).ok().map(|kb| f64::from(kb) * 1024.0),
                );
            }
            put(
                "DCGM_FI_DEV_XID_ERRORS",
                self.xids.last(&uuid).map(|x| x as f64),
            );
            out.push(Reading {
                index: d.index().unwrap_or(i),
                name: d.name().unwrap_or_default(),
                uuid,
                pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
                values: v,
            });
        }
        Ok(out)
    }
}
