//! The simulated GPUs' `/metrics` page: the snapshot as dcgm-exporter field
//! values, written by [`crate::expose::dcgm`].

pub use crate::expose::dcgm::Identity;
use crate::expose::dcgm::{PodRef, Row, Values};

use super::model::Snapshot;

/// A stable identity for GPU `gpu` of `hostname`: the same host and index
/// always give the same UUID.
pub fn identity(gpu: usize, hostname: &str, model_name: &str, driver_version: &str) -> Identity {
    // FNV-1a over host and index, spread over the UUID's 128 bits.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in hostname.bytes().chain((gpu as u64).to_le_bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let x = format!("{h:032x}");
    Identity {
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

/// Values that come from the board, not the snapshot.
pub struct Limits<'a> {
    pub power_limit_w: f64,
    /// Fields the board does not serve.
    pub omit: &'a [String],
}

/// The snapshot as dcgm-exporter field values.
pub fn values(s: &Snapshot, l: &Limits<'_>) -> Values {
    let mut v = Values::from([
        ("DCGM_FI_DEV_SM_CLOCK", s.sm_clock_mhz),
        ("DCGM_FI_DEV_MEM_CLOCK", s.mem_clock_mhz),
        ("DCGM_FI_DEV_MEMORY_TEMP", s.mem_temp_c),
        ("DCGM_FI_DEV_GPU_TEMP", s.gpu_temp_c),
        ("DCGM_FI_DEV_POWER_USAGE", (s.power_w * 1e3).round() / 1e3),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", s.energy_mj as f64),
        ("DCGM_FI_DEV_POWER_MGMT_LIMIT", l.power_limit_w),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0.0),
        ("DCGM_FI_DEV_GPU_UTIL", s.gpu_util_pct),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", s.mem_copy_util_pct),
        ("DCGM_FI_DEV_ENC_UTIL", 0.0),
        ("DCGM_FI_DEV_DEC_UTIL", 0.0),
        ("DCGM_FI_DEV_XID_ERRORS", 0.0),
        ("DCGM_FI_DEV_FB_FREE", s.fb_free_mib),
        ("DCGM_FI_DEV_FB_USED", s.fb_used_mib),
        ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", s.clock_reasons as f64),
        ("DCGM_FI_DEV_POWER_VIOLATION", 0.0),
        ("DCGM_FI_DEV_THERMAL_VIOLATION", 0.0),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", s.gr_engine_active),
        ("DCGM_FI_PROF_SM_ACTIVE", s.sm_active),
        ("DCGM_FI_PROF_SM_OCCUPANCY", s.sm_occupancy),
        ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", s.tensor_active),
        ("DCGM_FI_PROF_DRAM_ACTIVE", s.dram_active),
        ("DCGM_FI_PROF_PCIE_TX_BYTES", s.pcie_tx_bps),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", s.pcie_rx_bps),
        ("DCGM_FI_PROF_NVLINK_TX_BYTES", s.nvlink_bps),
        ("DCGM_FI_PROF_NVLINK_RX_BYTES", s.nvlink_bps),
    ]);
    v.retain(|name, _| !l.omit.iter().any(|o| o == name));
    v
}

/// The page for `gpus`: (identity, the pod it serves, snapshot).
pub fn render(gpus: &[(&Identity, Option<&PodRef>, &Snapshot)], limits: &Limits<'_>) -> String {
    let values: Vec<Values> = gpus.iter().map(|(_, _, s)| values(s, limits)).collect();
    let rows: Vec<Row<'_>> = gpus
        .iter()
        .zip(&values)
        .map(|((id, pod, _), values)| Row {
            id,
            pod: *pod,
            values,
        })
        .collect();
    crate::expose::dcgm::render(&rows)
}
