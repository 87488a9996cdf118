//! The simulated GPUs' `/metrics` page, in dcgm-exporter's names, HELP texts,
//! types and label set (as in the captured pages under `shared/fixtures`).
//!
//! `DCGM_FI_PROF_PCIE_*_BYTES` and `DCGM_FI_PROF_NVLINK_*_BYTES` are written
//! as dcgm-exporter writes them: declared `counter` (its default field list
//! says so) but holding DCGM's value, bytes per second over the interval.

use crate::expose::{NumberStyle, Page};
use crate::scrape::Kind;

use super::model::Snapshot;
use super::serving::PodRef;

/// The identity labels of one GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub gpu: usize,
    pub uuid: String,
    pub pci_bus_id: String,
    pub device: String,
    pub model_name: String,
    pub hostname: String,
    pub driver_version: String,
}

impl Identity {
    /// A stable identity for GPU `gpu` of `hostname`: the same host and index
    /// always give the same UUID.
    pub fn new(gpu: usize, hostname: &str, model_name: &str, driver_version: &str) -> Self {
        // FNV-1a over host and index, spread over the UUID's 128 bits.
        let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
        for b in hostname.bytes().chain((gpu as u64).to_le_bytes()) {
            h ^= u128::from(b);
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
        let x = format!("{h:032x}");
        Self {
            gpu,
            uuid: format!(
                "GPU-{}-{}-{}-{}-{}",
                &x[0..8],
                &x[8..12],
                &x[12..16],
                &x[16..20],
                &x[20..32]
            ),
            pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + gpu * 0x10 % 0xE0),
            device: format!("nvidia{gpu}"),
            model_name: model_name.to_string(),
            hostname: hostname.to_string(),
            driver_version: driver_version.to_string(),
        }
    }
}

/// One field: name, HELP text, type, and how to read it from a snapshot.
struct Field {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    value: fn(&Snapshot, &Limits) -> f64,
}

/// Values that come from the board, not the snapshot.
pub struct Limits {
    pub power_limit_w: f64,
}

const fn field(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    value: fn(&Snapshot, &Limits) -> f64,
) -> Field {
    Field {
        name,
        help,
        kind,
        value,
    }
}

#[rustfmt::skip]
const FIELDS: &[Field] = &[
    field("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", Kind::Gauge, |s, _| s.sm_clock_mhz),
    field("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", Kind::Gauge, |s, _| s.mem_clock_mhz),
    field("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", Kind::Gauge, |s, _| s.mem_temp_c),
    field("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", Kind::Gauge, |s, _| s.gpu_temp_c),
    field("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", Kind::Gauge, |s, _| (s.power_w * 1e3).round() / 1e3),
    field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).", Kind::Counter, |s, _| s.energy_mj as f64),
    field("DCGM_FI_DEV_POWER_MGMT_LIMIT", "", Kind::Gauge, |_, l| l.power_limit_w),
    field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.", Kind::Counter, |_, _| 0.0),
    field("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", Kind::Gauge, |s, _| s.gpu_util_pct),
    field("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", Kind::Gauge, |s, _| s.mem_copy_util_pct),
    field("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", Kind::Gauge, |_, _| 0.0),
    field("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", Kind::Gauge, |_, _| 0.0),
    field("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", Kind::Gauge, |_, _| 0.0),
    field("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", Kind::Gauge, |s, _| s.fb_free_mib),
    field("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", Kind::Gauge, |s, _| s.fb_used_mib),
    field("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "", Kind::Gauge, |s, _| s.clock_reasons as f64),
    field("DCGM_FI_DEV_POWER_VIOLATION", "Throttling duration due to power constraints (in us).", Kind::Counter, |_, _| 0.0),
    field("DCGM_FI_DEV_THERMAL_VIOLATION", "Throttling duration due to thermal constraints (in us).", Kind::Counter, |_, _| 0.0),
    field("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.", Kind::Gauge, |s, _| s.gr_engine_active),
    field("DCGM_FI_PROF_SM_ACTIVE", "The ratio of cycles an SM has at least 1 warp assigned.", Kind::Gauge, |s, _| s.sm_active),
    field("DCGM_FI_PROF_SM_OCCUPANCY", "The ratio of number of warps resident on an SM.", Kind::Gauge, |s, _| s.sm_occupancy),
    field("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor (HMMA) pipe is active.", Kind::Gauge, |s, _| s.tensor_active),
    field("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active sending or receiving data (in %).", Kind::Gauge, |s, _| s.dram_active),
    field("DCGM_FI_PROF_PCIE_TX_BYTES", "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second.", Kind::Counter, |s, _| s.pcie_tx_bps),
    field("DCGM_FI_PROF_PCIE_RX_BYTES", "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second.", Kind::Counter, |s, _| s.pcie_rx_bps),
    field("DCGM_FI_PROF_NVLINK_TX_BYTES", "The rate of data transmitted over NVLink, not including protocol headers, in bytes per second.", Kind::Counter, |s, _| s.nvlink_bps),
    field("DCGM_FI_PROF_NVLINK_RX_BYTES", "The rate of data received over NVLink, not including protocol headers, in bytes per second.", Kind::Counter, |s, _| s.nvlink_bps),
];

/// The page for `gpus`: (identity, the pod it serves, snapshot), field by field.
pub fn render(gpus: &[(&Identity, Option<&PodRef>, &Snapshot)], limits: &Limits) -> String {
    let mut page = Page::new(NumberStyle::Go);
    for f in FIELDS {
        page.family(f.name, f.help, f.kind);
        for (id, pod, snap) in gpus {
            let gpu = id.gpu.to_string();
            let mut labels: Vec<(&str, &str)> = vec![
                ("gpu", &gpu),
                ("UUID", &id.uuid),
                ("pci_bus_id", &id.pci_bus_id),
                ("device", &id.device),
                ("modelName", &id.model_name),
                ("Hostname", &id.hostname),
                ("DCGM_FI_DRIVER_VERSION", &id.driver_version),
            ];
            if let Some(p) = pod {
                labels.extend([
                    ("container", p.container.as_str()),
                    ("namespace", p.namespace.as_str()),
                    ("pod", p.name.as_str()),
                ]);
            }
            page.sample(f.name, &labels, (f.value)(snap, limits));
        }
    }
    page.finish()
}
