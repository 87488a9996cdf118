//! Where GPU readings come from: NVML (through nvml-wrapper, which loads
//! `libnvidia-ml.so.1` at run time, so the binary runs and says so clearly where
//! there is none), or a fake for tests.
//!
//! Loading a shared library needs a dynamically linked binary: the static musl
//! build (the controller's image) says so at once and names the image that can
//! (the `gpu-exporter` target of the Dockerfile, built against glibc).

use std::sync::Arc;

use nvml_wrapper::error::NvmlError;

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

/// One read of every GPU: those that answered, and why the others did not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Readings {
    pub gpus: Vec<Reading>,
    /// One line per GPU that could not be read (a GPU that fell off the bus):
    /// it is left off the page, whose other GPUs are still served.
    pub unreadable: Vec<String>,
}

/// A source of GPU readings.
pub trait GpuSource: Send + Sync {
    fn driver_version(&self) -> String;
    /// Every GPU's reading; an error when NVML itself cannot be asked.
    fn read_all(&self) -> Result<Readings, String>;
}

/// The library nvml-wrapper loads.
pub const LIBRARY: &str = "libnvidia-ml.so.1";

/// Why a static binary cannot serve GPUs.
pub const STATIC_BINARY: &str = "this benchrun binary is statically linked (musl) and cannot load \
     libnvidia-ml.so.1: run the gpu-exporter image instead (the Dockerfile's `gpu-exporter` target, \
     ghcr.io/benchrun/benchrun-gpu-exporter; the chart's DaemonSet uses it)";

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
        if cfg!(all(target_env = "musl", target_feature = "crt-static")) {
            return Err(STATIC_BINARY.into());
        }
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| match e {
            NvmlError::LibloadingError(e) => format!(
                "NVML is not available: {LIBRARY} could not be loaded ({e}). It comes with the \
                 NVIDIA driver: install the driver on the machine, or on Kubernetes run the pod \
                 with the NVIDIA container runtime (NVIDIA_VISIBLE_DEVICES=all, or the \
                 runtimeClassName that provides it) so that it mounts the library"
            ),
            e => format!(
                "NVML is not available ({e}): {LIBRARY} loaded but the NVIDIA driver did not \
                 answer (is the kernel module loaded? does the container see /dev/nvidia*?)"
            ),
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

    /// One GPU. A field the GPU does not support is left out; a GPU that is
    /// lost (NVML_ERROR_GPU_IS_LOST on any call) is not read at all, so the page
    /// never shows a half-read GPU.
    fn read_one(&self, i: u32) -> Result<Reading, String> {
        use nvml_wrapper::enum_wrappers::device::{
            Clock, EccCounter, MemoryError, PcieUtilCounter, PerformancePolicy, TemperatureSensor,
        };
        let d = self.nvml.device_by_index(i).map_err(|e| unreadable(i, e))?;
        let uuid = d.uuid().map_err(|e| unreadable(i, e))?;
        let mut v = Values::new();
        let mut lost = None;
        let mut put = |k: &'static str, r: Result<f64, NvmlError>| match r {
            Ok(x) => {
                v.insert(k, x);
            }
            Err(NvmlError::GpuLost) => {
                lost.get_or_insert(k);
            }
            Err(_) => {}
        };
        put(
            "DCGM_FI_DEV_SM_CLOCK",
            d.clock_info(Clock::SM).map(f64::from),
        );
        put(
            "DCGM_FI_DEV_MEM_CLOCK",
            d.clock_info(Clock::Memory).map(f64::from),
        );
        put(
            "DCGM_FI_DEV_GPU_TEMP",
            d.temperature(TemperatureSensor::Gpu).map(f64::from),
        );
        put(
            "DCGM_FI_DEV_POWER_USAGE",
            d.power_usage().map(|mw| f64::from(mw) / 1e3),
        );
        put(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            d.total_energy_consumption().map(|mj| mj as f64),
        );
        put(
            "DCGM_FI_DEV_POWER_MGMT_LIMIT",
            d.enforced_power_limit().map(|mw| f64::from(mw) / 1e3),
        );
        put(
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            d.pcie_replay_counter().map(f64::from),
        );
        match d.utilization_rates() {
            Ok(u) => {
                put("DCGM_FI_DEV_GPU_UTIL", Ok(f64::from(u.gpu)));
                put("DCGM_FI_DEV_MEM_COPY_UTIL", Ok(f64::from(u.memory)));
            }
            Err(e) => put("DCGM_FI_DEV_GPU_UTIL", Err(e)),
        }
        let mib = |b: u64| (b / (1 << 20)) as f64;
        match d.memory_info() {
            Ok(m) => {
                put("DCGM_FI_DEV_FB_FREE", Ok(mib(m.free)));
                put("DCGM_FI_DEV_FB_USED", Ok(mib(m.used)));
                put("DCGM_FI_DEV_FB_TOTAL", Ok(mib(m.total)));
            }
            Err(e) => put("DCGM_FI_DEV_FB_USED", Err(e)),
        }
        put("DCGM_FI_DEV_FAN_SPEED", d.fan_speed(0).map(f64::from));
        put(
            "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
            d.current_throttle_reasons().map(|r| r.bits() as f64),
        );
        // NVML counts violation time in ns; DCGM in µs.
        for (k, p) in [
            ("DCGM_FI_DEV_POWER_VIOLATION", PerformancePolicy::Power),
            ("DCGM_FI_DEV_THERMAL_VIOLATION", PerformancePolicy::Thermal),
        ] {
            put(
                k,
                d.violation_status(p)
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
                    .map(|n| n as f64),
            );
        }
        // NVML gives KB/s over a short window; DCGM's field is bytes/s.
        for (k, c) in [
            ("DCGM_FI_PROF_PCIE_TX_BYTES", PcieUtilCounter::Send),
            ("DCGM_FI_PROF_PCIE_RX_BYTES", PcieUtilCounter::Receive),
        ] {
            put(k, d.pcie_throughput(c).map(|kb| f64::from(kb) * 1024.0));
        }
        let name = d.name();
        let pci = d.pci_info();
        let index = d.index();
        if let Some(k) = lost
            .or(matches!(name, Err(NvmlError::GpuLost)).then_some("the name"))
            .or(matches!(pci, Err(NvmlError::GpuLost)).then_some("the PCI info"))
        {
            return Err(format!(
                "GPU {i} ({uuid}) is lost (reading {k}: {})",
                NvmlError::GpuLost
            ));
        }
        if let Some(x) = self.xids.last(&uuid) {
            v.insert("DCGM_FI_DEV_XID_ERRORS", x as f64);
        }
        Ok(Reading {
            index: index.unwrap_or(i),
            name: name.unwrap_or_default(),
            uuid,
            pci_bus_id: pci.map(|p| p.bus_id).unwrap_or_default(),
            values: v,
        })
    }
}

/// Why GPU `i` could not be read at all.
fn unreadable(i: u32, e: NvmlError) -> String {
    match e {
        NvmlError::GpuLost => format!("GPU {i} is lost ({e})"),
        e => format!("GPU {i} cannot be read ({e})"),
    }
}

impl GpuSource for Nvml {
    fn driver_version(&self) -> String {
        self.nvml.sys_driver_version().unwrap_or_default()
    }

    fn read_all(&self) -> Result<Readings, String> {
        let n = self.nvml.device_count().map_err(|e| e.to_string())?;
        let mut out = Readings::default();
        for i in 0..n {
            match self.read_one(i) {
                Ok(r) => out.gpus.push(r),
                Err(e) => out.unreadable.push(e),
            }
        }
        Ok(out)
    }
}
