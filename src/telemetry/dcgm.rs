//! DCGM fields as dcgm-exporter (and `benchrun gpu-exporter`) serve them:
//! each field's short key, display name, unit, scale and kind.
//!
//! Units follow DCGM's field reference: power in W, energy in mJ (reported in
//! J), framebuffer in MiB (reported in GiB), violation counters in µs
//! (reported in s), profiling activities as ratios 0..1 (reported in %).
//! Fields not in the table are still collected, under their own name, with
//! the kind the payload declares.

/// How a field is aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldKind {
    /// Statistics over the samples.
    Gauge,
    /// Increase over the phase.
    Counter,
    /// A byte count that DCGM defines as a per-second rate but exporters
    /// declare as a counter; both readings are kept and the data decides.
    ByteRate,
    /// Bit flags (throttle reasons): the union over the phase.
    Bitmask,
}

/// Width of the DCGM value, which decides its "blank" sentinel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Int32,
    Int64,
    Fp64,
}

/// One DCGM field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    pub name: &'static str,
    /// Short, stable key used in results (`gpu_power_usage`).
    pub key: &'static str,
    pub display: &'static str,
    /// Unit after scaling.
    pub unit: &'static str,
    /// Multiplier from the exporter's unit to `unit`.
    pub scale: f64,
    pub kind: FieldKind,
    pub width: Width,
}

const fn f(
    name: &'static str,
    key: &'static str,
    display: &'static str,
    unit: &'static str,
    scale: f64,
    kind: FieldKind,
    width: Width,
) -> Field {
    Field {
        name,
        key,
        display,
        unit,
        scale,
        kind,
        width,
    }
}

use FieldKind::{Bitmask, ByteRate, Counter, Gauge};
use Width::{Fp64, Int32, Int64};

const MIB_TO_GIB: f64 = 1.0 / 1024.0;

/// Every field benchrun knows, in the order results list them.
#[rustfmt::skip]
pub const FIELDS: &[Field] = &[
    f("DCGM_FI_DEV_POWER_USAGE", "gpu_power_usage", "GPU Power Usage", "W", 1.0, Gauge, Fp64),
    f("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "energy_consumption", "Energy Consumption", "J", 1e-3, Counter, Int64),
    f("DCGM_FI_DEV_POWER_MGMT_LIMIT", "power_limit", "Power Management Limit", "W", 1.0, Gauge, Fp64),
    f("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "enforced_power_limit", "Enforced Power Limit", "W", 1.0, Gauge, Fp64),
    f("DCGM_FI_DEV_GPU_UTIL", "gpu_utilization", "GPU Utilization", "%", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_MEM_COPY_UTIL", "memory_copy_utilization", "Memory Copy Utilization", "%", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_ENC_UTIL", "encoder_utilization", "Encoder Utilization", "%", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_DEC_UTIL", "decoder_utilization", "Decoder Utilization", "%", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_FB_USED", "gpu_memory_used", "GPU Memory Used", "GiB", MIB_TO_GIB, Gauge, Int32),
    f("DCGM_FI_DEV_FB_FREE", "gpu_memory_free", "GPU Memory Free", "GiB", MIB_TO_GIB, Gauge, Int32),
    f("DCGM_FI_DEV_FB_TOTAL", "gpu_memory_total", "GPU Memory Total", "GiB", MIB_TO_GIB, Gauge, Int32),
    f("DCGM_FI_DEV_FB_RESERVED", "gpu_memory_reserved", "GPU Memory Reserved", "GiB", MIB_TO_GIB, Gauge, Int32),
    f("DCGM_FI_DEV_FB_USED_PERCENT", "gpu_memory_used_percent", "GPU Memory Used", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_DEV_SM_CLOCK", "sm_clock", "SM Clock Frequency", "MHz", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_MEM_CLOCK", "memory_clock", "Memory Clock Frequency", "MHz", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_GPU_TEMP", "gpu_temperature", "GPU Temperature", "°C", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_MEMORY_TEMP", "memory_temperature", "Memory Temperature", "°C", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_SLOWDOWN_TEMP", "slowdown_temperature", "Slowdown Temperature", "°C", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_SHUTDOWN_TEMP", "shutdown_temperature", "Shutdown Temperature", "°C", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_FAN_SPEED", "fan_speed", "Fan Speed", "%", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_PSTATE", "pstate", "Performance State", "", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_XID_ERRORS", "xid_errors", "XID Errors", "last XID", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_POWER_VIOLATION", "power_violation", "Power Throttling Duration", "s", 1e-6, Counter, Int64),
    f("DCGM_FI_DEV_THERMAL_VIOLATION", "thermal_violation", "Thermal Throttling Duration", "s", 1e-6, Counter, Int64),
    f("DCGM_FI_DEV_SYNC_BOOST_VIOLATION", "sync_boost_violation", "Sync Boost Throttling Duration", "s", 1e-6, Counter, Int64),
    f("DCGM_FI_DEV_BOARD_LIMIT_VIOLATION", "board_limit_violation", "Board Limit Throttling Duration", "s", 1e-6, Counter, Int64),
    f("DCGM_FI_DEV_LOW_UTIL_VIOLATION", "low_util_violation", "Low Utilization Throttling Duration", "s", 1e-6, Counter, Int64),
    f("DCGM_FI_DEV_RELIABILITY_VIOLATION", "reliability_violation", "Reliability Throttling Duration", "s", 1e-6, Counter, Int64),
    f("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "clock_throttle_reasons", "Clock Throttle Reasons", "bitmask", 1.0, Bitmask, Int64),
    f("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "pcie_replay_counter", "PCIe Replays", "count", 1.0, Counter, Int64),
    f("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "ecc_sbe_volatile", "ECC Single-Bit Errors (volatile)", "count", 1.0, Counter, Int64),
    f("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc_dbe_volatile", "ECC Double-Bit Errors (volatile)", "count", 1.0, Counter, Int64),
    f("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "ecc_sbe_aggregate", "ECC Single-Bit Errors (aggregate)", "count", 1.0, Counter, Int64),
    f("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "ecc_dbe_aggregate", "ECC Double-Bit Errors (aggregate)", "count", 1.0, Counter, Int64),
    f("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "correctable_remapped_rows", "Correctable Remapped Rows", "count", 1.0, Counter, Int32),
    f("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "uncorrectable_remapped_rows", "Uncorrectable Remapped Rows", "count", 1.0, Counter, Int32),
    f("DCGM_FI_DEV_ROW_REMAP_FAILURE", "row_remap_failure", "Row Remap Failure", "flag", 1.0, Gauge, Int32),
    f("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "nvlink_bandwidth_total", "NVLink Bandwidth Counter", "count", 1.0, Counter, Int64),
    f("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gr_engine_active", "Graphics Engine Active", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_SM_ACTIVE", "sm_active", "SM Active", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_SM_OCCUPANCY", "sm_occupancy", "SM Occupancy", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "tensor_active", "Tensor Pipe Active", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_PIPE_FP64_ACTIVE", "fp64_active", "FP64 Pipe Active", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_PIPE_FP32_ACTIVE", "fp32_active", "FP32 Pipe Active", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_PIPE_FP16_ACTIVE", "fp16_active", "FP16 Pipe Active", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_DRAM_ACTIVE", "dram_active", "DRAM Active", "%", 100.0, Gauge, Fp64),
    f("DCGM_FI_PROF_PCIE_TX_BYTES", "pcie_tx_bytes", "PCIe TX", "B/s", 1.0, ByteRate, Int64),
    f("DCGM_FI_PROF_PCIE_RX_BYTES", "pcie_rx_bytes", "PCIe RX", "B/s", 1.0, ByteRate, Int64),
    f("DCGM_FI_PROF_NVLINK_TX_BYTES", "nvlink_tx_bytes", "NVLink TX", "B/s", 1.0, ByteRate, Int64),
    f("DCGM_FI_PROF_NVLINK_RX_BYTES", "nvlink_rx_bytes", "NVLink RX", "B/s", 1.0, ByteRate, Int64),
];

/// The position in [`FIELDS`] of the field named `name`, if benchrun knows it.
pub fn field_index(name: &str) -> Option<usize> {
    // Binary search over a sorted index built once; the table is small but
    // this sits on the per-sample path.
    static SORTED: std::sync::LazyLock<Vec<(&'static str, usize)>> =
        std::sync::LazyLock::new(|| {
            let mut v: Vec<_> = FIELDS
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name, i))
                .collect();
            v.sort();
            v
        });
    // DCGM 3.x renamed the throttle reasons to "clock event reasons".
    let name = match name {
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" => "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        other => other,
    };
    SORTED
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| SORTED[i].1)
}

/// The field named `name`, if benchrun knows it.
pub fn field(name: &str) -> Option<&'static Field> {
    field_index(name).map(|i| &FIELDS[i])
}

/// The field whose result key is `key` (the first, for aliased fields).
pub fn by_key(key: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.key == key)
}

/// Whether a name is a DCGM field at all (known or not).
pub fn is_dcgm(name: &str) -> bool {
    name.starts_with("DCGM_FI_")
}

/// DCGM's "blank" sentinels: a field with no value (not supported, not found,
/// no permission) is served as the blank value of its width or just above.
const INT32_BLANK: f64 = 2_147_483_632.0; // 0x7ffffff0
const INT64_BLANK: f64 = 9_223_372_036_854_775_792.0; // 0x7ffffffffffffff0
const FP64_BLANK: f64 = 140_737_488_355_328.0; // 2^47

/// Whether `v` is a blank sentinel rather than a reading.
pub fn is_blank(v: f64, width: Width) -> bool {
    match width {
        Width::Int32 => v >= INT32_BLANK,
        // An int64 read through a float loses the low bits: anything at the
        // top of the range is the sentinel.
        Width::Int64 => v >= INT64_BLANK * (1.0 - 1e-15),
        Width::Fp64 => v >= FP64_BLANK,
    }
}

/// For fields outside the table, whose width is unknown: the int64 blanks and
/// the fp64 blanks (which sit just above 2^47). The int32 blanks are real
/// values for 64-bit counters, so they are kept.
pub fn is_blank_unknown(v: f64) -> bool {
    is_blank(v, Width::Int64) || (FP64_BLANK..=FP64_BLANK + 3.0).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_found_and_keys_are_unique() {
        for f in FIELDS {
            assert_eq!(field(f.name).map(|x| x.name), Some(f.name));
            assert_eq!(by_key(f.key).map(|x| x.name), Some(f.name));
            assert!(is_dcgm(f.name));
        }
        let mut keys: Vec<_> = FIELDS.iter().map(|f| f.key).collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len());
        assert_eq!(
            field("DCGM_FI_DEV_CLOCKS_EVENT_REASONS").map(|f| f.key),
            Some("clock_throttle_reasons")
        );
        assert!(field("DCGM_FI_DEV_NOPE").is_none());
    }

    #[test]
    fn blanks_by_width() {
        assert!(is_blank(2_147_483_632.0, Width::Int32));
        assert!(is_blank(2_147_483_634.0, Width::Int32));
        assert!(!is_blank(2_147_483_631.0, Width::Int32));
        assert!(is_blank(9.223_372_036_854_776e18, Width::Int64));
        assert!(!is_blank(2_147_483_632.0, Width::Int64));
        assert!(is_blank(140_737_488_355_328.0, Width::Fp64));
        assert!(!is_blank(700.5, Width::Fp64));
        assert!(is_blank_unknown(140_737_488_355_328.0));
        assert!(!is_blank_unknown(2_147_483_632.0));
    }
}
