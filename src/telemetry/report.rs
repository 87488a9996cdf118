//! Per-GPU results: each field's statistics, the GPU's energy with how it was
//! measured and how sure it is, profiling estimates and health warnings.

use serde::{Deserialize, Serialize};

use super::dcgm::{FIELDS, FieldKind};
use super::gpu::{FieldAgg, FieldId, GpuIdentity, GpuSeries, PodRef};
use super::peaks;
use super::series::{Changes, Counter};
use crate::stats::Summary;

/// One field of one GPU over the phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub key: String,
    /// The exporter's metric name.
    pub field: String,
    pub display: String,
    pub unit: String,
    pub kind: FieldKind,
    /// Gauges (and byte rates read as rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Summary>,
    /// Gauges: the first reading (the opening boundary scrape's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<f64>,
    /// Counters: increase over the phase, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// Counters: increase per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resets: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How a GPU's energy was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EnergySource {
    /// The increase of the total-energy counter between the boundary scrapes.
    Counter,
    /// The time integral of the power samples (no energy counter served).
    PowerIntegral,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Energy {
    pub joules: f64,
    pub source: EnergySource,
    /// Mean power over the phase, W.
    pub avg_power_w: f64,
    /// The time the joules span, s (from the first reading to the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// ± bound from the exporter's update period: each boundary reading may be
    /// up to one update old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_j: Option<f64>,
}

/// Estimates from the DCGM profiling fields and the GPU's peak figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The peak-figure model used, when the GPU model is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_model: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "dramBandwidthGBps"
    )]
    pub dram_bandwidth_gbps: Option<f64>,
    /// Memory bandwidth utilisation estimate, % (mean DRAM active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbu_pct: Option<f64>,
    /// FP16 tensor throughput estimate from tensor-pipe activity, TFLOPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_tflops: Option<f64>,
    /// Model FLOPS utilisation estimate, % (mean tensor-pipe active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfu_pct: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "pcieTxGBps"
    )]
    pub pcie_tx_gbps: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "pcieRxGBps"
    )]
    pub pcie_rx_gbps: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "nvlinkTxGBps"
    )]
    pub nvlink_tx_gbps: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "nvlinkRxGBps"
    )]
    pub nvlink_rx_gbps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    ComputeBound,
    MemoryBound,
    Balanced,
    Underutilized,
}

/// Everything reported for one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuResult {
    pub key: String,
    pub endpoint: String,
    #[serde(flatten)]
    pub identity: GpuIdentity,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodRef>,
    /// Pods on this GPU in namespaces the run may not read: counted, not
    /// named (see [`crate::measure::collect::Pods::name_only_readable`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pods_elsewhere: u32,
    pub samples: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval_s: Option<f64>,
    /// The exporter's real refresh period, estimated from when values changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_period_s: Option<f64>,
    /// The exporter refreshes markedly slower than it is scraped.
    pub stale: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<Energy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub metrics: Vec<MetricResult>,
}

/// The key of a GPU's energy counter among its fields and metrics.
pub const ENERGY_KEY: &str = "energy_consumption";

impl GpuSeries {
    /// The times of the first and the last reading the GPU's energy is
    /// computed from (the counter's, else the power gauge's, as [`energy`]
    /// chooses), or `None` when it has no energy.
    pub fn energy_span(&self) -> Option<(f64, f64)> {
        let changes = match (self.field(ENERGY_KEY), self.field("gpu_power_usage")) {
            (Some(FieldAgg::Counter(c)), _) if c.changes.samples >= 2 => &c.changes,
            (_, Some(FieldAgg::Gauge(g))) if g.changes.samples >= 2 && g.stats.count() > 0 => {
                &g.changes
            }
            _ => return None,
        };
        changes.bounds()
    }

    /// How many times the energy counter went back (0 without one).
    pub fn energy_resets(&self) -> u32 {
        match self.field(ENERGY_KEY) {
            Some(FieldAgg::Counter(c)) => c.resets,
            _ => 0,
        }
    }

    /// The readings whose changes show when the exporter refreshed: the
    /// energy counter (it moves at every refresh of a GPU that draws power),
    /// else the power gauge.
    fn refresh_changes(&self) -> Option<Changes> {
        match (self.field(ENERGY_KEY), self.field("gpu_power_usage")) {
            (Some(FieldAgg::Counter(c)), _) if c.changes.samples >= 2 => Some(c.changes),
            (_, Some(FieldAgg::Gauge(g))) => Some(g.changes),
            _ => None,
        }
    }

    /// Mean seconds between this GPU's scrapes, leaving out `gaps` (each
    /// `(from, to)` one interval between two scrapes, such as a takeover's
    /// time without scrapes) that lie inside them: the spacing the scrapes
    /// kept while they ran. `None` with fewer than two other intervals.
    pub fn scrape_spacing_s(&self, gaps: &[(f64, f64)]) -> Option<f64> {
        let c = self.refresh_changes()?;
        let (first, last) = c.bounds()?;
        let inside = gaps.iter().filter(|(a, b)| *a >= first && *b <= last);
        let (gap_s, n) = inside.fold((0.0, 0), |(s, n), (a, b)| (s + (b - a).max(0.0), n + 1));
        let intervals = c.samples.checked_sub(1 + n).filter(|&i| i > 0)?;
        Some((last - first - gap_s).max(0.0) / f64::from(intervals))
    }

    /// How many times the exporter was seen to refresh this GPU's readings
    /// since the first scrape ingested.
    pub fn refreshes(&self) -> u32 {
        self.refresh_changes().map_or(0, |c| c.changes)
    }

    /// The GPU's results over everything ingested.
    pub fn result(&self) -> GpuResult {
        let metrics: Vec<MetricResult> = self.fields.iter().map(metric).collect();
        let find = |key: &str| metrics.iter().find(|m| m.key == key);
        let power = self.field("gpu_power_usage");
        let energy_counter = self.field(ENERGY_KEY);
        let changes = self.refresh_changes();
        let scrape_interval_s = changes.and_then(|c| c.scrape_interval());
        let update_period_s = changes.and_then(|c| c.update_period());
        let stale =
            matches!((scrape_interval_s, update_period_s), (Some(s), Some(u)) if u > 1.5 * s);
        let energy = energy(energy_counter, power, update_period_s);
        let profile = profile(self.identity.model.as_deref(), &find, self);
        GpuResult {
            key: self.key.clone(),
            endpoint: self.endpoint.clone(),
            identity: self.identity.clone(),
            pods: self.pods.clone(),
            pods_elsewhere: 0,
            samples: changes.map_or(0, |c| c.samples),
            scrape_interval_s,
            update_period_s,
            stale,
            energy,
            profile,
            warnings: warnings(&find),
            metrics,
        }
    }
}

fn metric(f: &super::gpu::FieldSeries) -> MetricResult {
    let (key, field, display, unit, kind) = match &f.id {
        FieldId::Known(i) => {
            let d = &FIELDS[*i];
            (
                d.key.to_string(),
                d.name.to_string(),
                d.display.to_string(),
                d.unit.to_string(),
                d.kind,
            )
        }
        FieldId::Other { name, counter } => {
            let key = name.trim_start_matches("DCGM_FI_").to_ascii_lowercase();
            let kind = if *counter {
                FieldKind::Counter
            } else {
                FieldKind::Gauge
            };
            (
                key,
                name.clone(),
                super::names::display_name(name),
                String::new(),
                kind,
            )
        }
    };
    let mut m = MetricResult {
        key,
        field,
        display,
        unit,
        kind,
        stats: None,
        first: None,
        delta: None,
        rate: None,
        resets: 0,
        bits: None,
    };
    let counter = |m: &mut MetricResult, c: &Counter| {
        m.delta = Some(c.delta);
        m.rate = c.rate();
        m.resets = c.resets;
    };
    match &f.agg {
        FieldAgg::Gauge(g) => {
            m.stats = Some(g.stats.summary());
            m.first = g.changes.first();
        }
        FieldAgg::Counter(c) => counter(&mut m, c),
        FieldAgg::ByteRate { gauge, counter: c } => {
            if reads_as_counter(c) {
                counter(&mut m, c);
            } else {
                m.stats = Some(gauge.stats.summary());
            }
        }
        FieldAgg::Bitmask(bits) => m.bits = Some(*bits),
    }
    m
}

/// DCGM defines the PCIe/NVLink byte fields as per-second rates, and
/// dcgm-exporter declares them counters. A series that only ever grew, over
/// at least three changes, is read as a counter; anything else as a rate.
pub fn reads_as_counter(c: &Counter) -> bool {
    c.resets == 0 && c.changes.changes >= 3 && c.delta > 0.0
}

fn energy(
    counter: Option<&FieldAgg>,
    power: Option<&FieldAgg>,
    period: Option<f64>,
) -> Option<Energy> {
    let power = match power {
        Some(FieldAgg::Gauge(g)) if g.stats.count() > 0 => Some(g),
        _ => None,
    };
    let (joules, source, elapsed) = match counter {
        Some(FieldAgg::Counter(c)) if c.changes.samples >= 2 => {
            (c.delta, EnergySource::Counter, c.elapsed())
        }
        _ => {
            let p = power.filter(|p| p.changes.samples >= 2)?;
            (p.integral, EnergySource::PowerIntegral, p.changes.span())
        }
    };
    let avg_power_w = match power {
        Some(p) => p.stats.moments.mean,
        None if elapsed > 0.0 => joules / elapsed,
        None => return None,
    };
    Some(Energy {
        joules,
        source,
        avg_power_w,
        seconds: (elapsed > 0.0).then_some(elapsed),
        uncertainty_j: period.map(|u| avg_power_w * u),
    })
}

fn mean(m: Option<&MetricResult>) -> Option<f64> {
    m.and_then(|m| m.stats.as_ref())
        .filter(|s| s.count > 0)
        .map(|s| s.mean)
}

fn profile<'a>(
    model: Option<&str>,
    find: &impl Fn(&str) -> Option<&'a MetricResult>,
    gpu: &GpuSeries,
) -> Option<Profile> {
    let dram = mean(find("dram_active"));
    let tensor = mean(find("tensor_active"));
    let bandwidth = |key: &str| match gpu.field(key) {
        Some(FieldAgg::ByteRate { gauge, counter }) => {
            let bps = if reads_as_counter(counter) {
                counter.rate()
            } else {
                (gauge.stats.count() > 0).then_some(gauge.stats.moments.mean)
            };
            bps.map(|b| b / 1e9)
        }
        _ => None,
    };
    let peak = model.and_then(peaks::lookup);
    let p = Profile {
        peak_model: peak.map(|p| p.model.to_string()),
        dram_bandwidth_gbps: dram
            .zip(peak)
            .map(|(d, p)| d / 100.0 * p.memory_bandwidth_gbps),
        mbu_pct: dram,
        tensor_tflops: tensor
            .zip(peak)
            .map(|(t, p)| t / 100.0 * p.fp16_tensor_tflops),
        mfu_pct: tensor,
        pcie_tx_gbps: bandwidth("pcie_tx_bytes"),
        pcie_rx_gbps: bandwidth("pcie_rx_bytes"),
        nvlink_tx_gbps: bandwidth("nvlink_tx_bytes"),
        nvlink_rx_gbps: bandwidth("nvlink_rx_bytes"),
        workload: dram.zip(tensor).map(|(d, t)| classify(d, t)),
    };
    (p != Profile::default()).then_some(p)
}

/// Workload class from mean DRAM-active and tensor-active percentages: both
/// under 30 % is underutilised; otherwise the one at least 1.5× the other
/// names the bound, and neither dominating is balanced.
pub fn classify(dram_pct: f64, tensor_pct: f64) -> Workload {
    if dram_pct < 30.0 && tensor_pct < 30.0 {
        Workload::Underutilized
    } else if dram_pct >= 1.5 * tensor_pct {
        Workload::MemoryBound
    } else if tensor_pct >= 1.5 * dram_pct {
        Workload::ComputeBound
    } else {
        Workload::Balanced
    }
}

/// Health thresholds (°C, % of framebuffer).
pub const HOT_C: f64 = 80.0;
pub const MEMORY_FULL_PCT: f64 = 95.0;
/// Mean GPU utilisation under which the load likely does not saturate the GPU.
pub const LOW_UTIL_PCT: f64 = 50.0;
/// Share of the power limit above which the GPU runs at its power ceiling.
pub const NEAR_POWER_LIMIT: f64 = 0.95;

/// NVML clock-event reason bits.
const POWER_BITS: u64 = 0x4 | 0x80; // software power cap, hardware power brake
const THERMAL_BITS: u64 = 0x8 | 0x20 | 0x40; // hardware slowdown, software and hardware thermal

fn warnings<'a>(find: &impl Fn(&str) -> Option<&'a MetricResult>) -> Vec<String> {
    let max = |k: &str| {
        find(k)
            .and_then(|m| m.stats.as_ref())
            .filter(|s| s.count > 0)
            .map(|s| s.max)
    };
    let delta = |k: &str| find(k).and_then(|m| m.delta).unwrap_or(0.0);
    let bits = find("clock_throttle_reasons")
        .and_then(|m| m.bits)
        .unwrap_or(0);
    let mut out = Vec::new();
    if let Some(t) = max("gpu_temperature").filter(|t| *t > HOT_C) {
        out.push(format!(
            "GPU temperature reached {t:.0} °C (above {HOT_C:.0} °C)"
        ));
    }
    let used = max("gpu_memory_used");
    let total = max("gpu_memory_total").or_else(|| Some(used? + max("gpu_memory_free")?));
    if let (Some(u), Some(t)) = (used, total)
        && t > 0.0
        && u / t * 100.0 > MEMORY_FULL_PCT
    {
        out.push(format!(
            "GPU memory {:.1}% full (above {MEMORY_FULL_PCT:.0}%)",
            u / t * 100.0
        ));
    }
    if let Some(x) = max("xid_errors").filter(|x| *x > 0.0) {
        out.push(format!(
            "XID error {x:.0} reported ({})",
            super::xid::describe(x as u64)
        ));
    }
    if delta("power_violation") > 0.0 || bits & POWER_BITS != 0 {
        out.push(format!(
            "power throttling ({:.3} s throttled)",
            delta("power_violation")
        ));
    }
    if delta("thermal_violation") > 0.0 || bits & THERMAL_BITS != 0 {
        out.push(format!(
            "thermal throttling ({:.3} s throttled)",
            delta("thermal_violation")
        ));
    }
    if delta("ecc_dbe_volatile") > 0.0 || delta("uncorrectable_remapped_rows") > 0.0 {
        out.push("uncorrectable memory errors during the run".to_string());
    }
    if let Some(u) = mean(find("gpu_utilization")).filter(|u| *u < LOW_UTIL_PCT) {
        out.push(format!(
            "GPU utilisation averaged {u:.0} % (below {LOW_UTIL_PCT:.0} %): the load may not saturate this GPU"
        ));
    }
    let limit = max("enforced_power_limit").or_else(|| max("power_limit"));
    if let (Some(p), Some(l)) = (max("gpu_power_usage"), limit)
        && l > 0.0
        && p >= NEAR_POWER_LIMIT * l
    {
        out.push(format!(
            "power draw reached {p:.0} W, {:.0} % of its {l:.0} W limit",
            p / l * 100.0
        ));
    }
    out
}
