//! The run's time series (`spec.results.timeseries: true`): the results'
//! `timeseries.jsonl`, one JSON object per line, time-aligned on the
//! session's clock (`t`, seconds; `tUnixMs` too).
//!
//! - one `scrape` record per scrape of a step: per GPU its power, the energy
//!   used since the previous record (so a step's records add up to the step's
//!   energy, from the same source: the energy counter, else the power
//!   integral), utilization, SM/tensor/DRAM activity, temperature and memory
//!   used; per server endpoint its gauges (summed over label sets) and its
//!   counters' increase since the previous record;
//! - one `progress` record per answer of the workers' progress: requests
//!   done, succeeded and failed so far, output tokens, and the rates since the
//!   previous progress record.
//!
//! The series is bounded by its size in memory, estimated as it grows: past
//! [`MAX_BYTES`], neighbouring records of the same step are merged two by
//! two (energies and increases added, gauges averaged by the number of
//! scrapes, rates by time). Nothing is cut: each record says how many raw
//! records it holds (`n`), and the first line (`header`) how often the file
//! was thinned. A session that took the run over after a controller restart
//! starts its series then, and the header says so.
//!
//! It is an append-only log the session's task writes and the reconciler
//! reads once, when it writes the results: the one thing a session shares
//! behind a lock instead of publishing (publishing copies, and this grows).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::telemetry::gpu::FieldAgg;
use crate::telemetry::{GpuTelemetry, ServerMetrics};

/// The estimated size of the records kept before they are thinned.
pub const MAX_BYTES: usize = 8 << 20;
/// Server metric families with longer names are left out of the records.
pub const MAX_NAME: usize = 128;
/// Server metric families per endpoint and record (gauges and counters
/// each); the rest are counted in `omitted`.
pub const MAX_FAMILIES_PER_POINT: usize = 48;
/// The file's layout version.
pub const TIMESERIES_SCHEMA_VERSION: u32 = 1;
/// Its name in the results.
pub const FILE: &str = "timeseries.jsonl";

/// One GPU at one scrape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GpuPoint {
    /// UUID (or the exporter's key for the GPU when it serves none).
    pub gpu: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    /// Joules since the previous record of this GPU in this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_active_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_active_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dram_active_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_gib: Option<f64>,
}

/// One server endpoint at one scrape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerPoint {
    pub endpoint: String,
    /// Each gauge family's value, summed over its label sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, f64>,
    /// Each counter family's increase since the previous record of this
    /// endpoint in this step, summed over its label sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, f64>,
    /// Families past [`MAX_FAMILIES_PER_POINT`], left out of this record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A line of the file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Record {
    #[serde(rename_all = "camelCase")]
    Header {
        schema_version: u32,
        records: usize,
        /// How many times neighbouring records were merged two by two.
        thinned: u32,
        max_bytes: usize,
        /// A session that took the run over starts its series then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        starts_after_restart_at_t: Option<f64>,
    },
    #[serde(rename_all = "camelCase")]
    Scrape {
        t: f64,
        t_unix_ms: u64,
        step: usize,
        /// Scrapes this record holds.
        n: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gpus: Vec<GpuPoint>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        servers: Vec<ServerPoint>,
    },
    #[serde(rename_all = "camelCase")]
    Progress {
        t: f64,
        t_unix_ms: u64,
        n: u32,
        requests_done: u64,
        ok: u64,
        errors: u64,
        output_tokens: u64,
        /// Seconds since the previous progress record.
        dt: f64,
        requests_per_s: f64,
        output_tokens_per_s: f64,
    },
}

impl Record {
    /// About the bytes the record takes in memory.
    fn bytes(&self) -> usize {
        match self {
            Record::Scrape { gpus, servers, .. } => {
                let gpus: usize = gpus.iter().map(|g| 128 + g.gpu.len()).sum();
                let servers: usize = servers
                    .iter()
                    .map(|s| {
                        let names = s.gauges.keys().chain(s.counters.keys());
                        96 + s.endpoint.len() + names.map(|n| 64 + n.len()).sum::<usize>()
                    })
                    .sum();
                96 + gpus + servers
            }
            _ => 128,
        }
    }

    fn t(&self) -> f64 {
        match self {
            Record::Scrape { t, .. } | Record::Progress { t, .. } => *t,
            Record::Header { .. } => f64::NEG_INFINITY,
        }
    }
}

/// The client's totals at one progress answer, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClientCounts {
    pub done: u64,
    pub ok: u64,
    pub errors: u64,
    pub output_tokens: u64,
}

/// The series as it grows.
#[derive(Debug, Default)]
pub struct Timeseries {
    scrapes: Vec<Record>,
    progress: Vec<Record>,
    bytes: usize,
    thinned: u32,
    resumed_at: Option<f64>,
    /// Cumulative readings at the previous record, by (step, series).
    previous: HashMap<(usize, String), f64>,
    last_progress: Option<(f64, ClientCounts)>,
}

impl Timeseries {
    /// A series kept by a session that took the run over at session time `t`.
    pub fn resumed(t: f64) -> Self {
        Timeseries {
            resumed_at: Some(t),
            ..Self::default()
        }
    }

    /// The increase of cumulative reading `now` of `series` in step `k`
    /// since the previous record (all of it at the first).
    fn increase(&mut self, k: usize, series: String, now: f64) -> f64 {
        let before = self.previous.insert((k, series), now).unwrap_or(0.0);
        now - before
    }

    /// Records one scrape of step `k` at session time `t`.
    pub fn scrape(
        &mut self,
        k: usize,
        t: f64,
        t_unix_ms: u64,
        gpus: &GpuTelemetry,
        server: &ServerMetrics,
    ) {
        let mut gpu_points = Vec::with_capacity(gpus.gpus.len());
        for g in &gpus.gpus {
            let id = g.identity.uuid.clone().unwrap_or_else(|| g.key.clone());
            let gauge = |key: &str| match g.field(key) {
                Some(FieldAgg::Gauge(v)) => v.last(),
                _ => None,
            };
            // The step's energy source: the counter, else the power integral.
            let cumulative = match (g.field("energy_consumption"), g.field("gpu_power_usage")) {
                (Some(FieldAgg::Counter(c)), _) if c.changes.samples >= 1 => Some(c.delta),
                (_, Some(FieldAgg::Gauge(p))) if p.changes.samples >= 1 => Some(p.integral),
                _ => None,
            };
            let energy_j = cumulative.map(|now| self.increase(k, format!("gpu/{id}"), now));
            gpu_points.push(GpuPoint {
                power_w: gauge("gpu_power_usage"),
                energy_j,
                utilization_pct: gauge("gpu_utilization"),
                sm_active_pct: gauge("sm_active"),
                tensor_active_pct: gauge("tensor_active"),
                dram_active_pct: gauge("dram_active"),
                temperature_c: gauge("gpu_temperature"),
                memory_used_gib: gauge("gpu_memory_used"),
                gpu: id,
            });
        }
        let mut servers = Vec::new();
        for (endpoint, p) in server.points(MAX_FAMILIES_PER_POINT, MAX_NAME) {
            let counters = p
                .counters
                .into_iter()
                .map(|(name, now)| {
                    let up = self.increase(k, format!("server/{endpoint}/{name}"), now);
                    (name, up)
                })
                .collect();
            servers.push(ServerPoint {
                endpoint,
                gauges: p.gauges,
                counters,
                omitted: p.omitted,
            });
        }
        self.push_scrape(Record::Scrape {
            t,
            t_unix_ms,
            step: k,
            n: 1,
            gpus: gpu_points,
            servers,
        });
    }

    /// Records one answer of the workers' progress at session time `t`.
    pub fn progress(&mut self, t: f64, t_unix_ms: u64, c: ClientCounts) {
        if self.last_progress.is_some_and(|(_, c0)| c0 == c) {
            return;
        }
        let (dt, requests_per_s, output_tokens_per_s) = match self.last_progress {
            Some((t0, c0)) if t > t0 => {
                let dt = t - t0;
                let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                (
                    dt,
                    rate(c.done, c0.done),
                    rate(c.output_tokens, c0.output_tokens),
                )
            }
            _ => (0.0, 0.0, 0.0),
        };
        self.last_progress = Some((t, c));
        let r = Record::Progress {
            t,
            t_unix_ms,
            n: 1,
            requests_done: c.done,
            ok: c.ok,
            errors: c.errors,
            output_tokens: c.output_tokens,
            dt,
            requests_per_s,
            output_tokens_per_s,
        };
        self.bytes = append(&mut self.progress, r, 1 << self.thinned, self.bytes);
        self.bound();
    }

    fn push_scrape(&mut self, r: Record) {
        self.bytes = append(&mut self.scrapes, r, 1 << self.thinned, self.bytes);
        self.bound();
    }

    /// Past the cap, neighbouring records merge two by two.
    fn bound(&mut self) {
        while self.bytes > MAX_BYTES && (self.scrapes.len() > 1 || self.progress.len() > 1) {
            self.scrapes = halve(std::mem::take(&mut self.scrapes));
            self.progress = halve(std::mem::take(&mut self.progress));
            self.bytes = self
                .scrapes
                .iter()
                .chain(&self.progress)
                .map(Record::bytes)
                .sum();
            self.thinned += 1;
        }
    }

    /// The file: the header line, then every record in time order.
    pub fn render(&self) -> String {
        let mut records: Vec<&Record> = self.scrapes.iter().chain(&self.progress).collect();
        records.sort_by(|a, b| a.t().total_cmp(&b.t()));
        let header = Record::Header {
            schema_version: TIMESERIES_SCHEMA_VERSION,
            records: records.len(),
            thinned: self.thinned,
            max_bytes: MAX_BYTES,
            starts_after_restart_at_t: self.resumed_at,
        };
        let mut out = String::new();
        for r in std::iter::once(&header).chain(records) {
            // Numbers are finite by construction; a failure would be a bug.
            if let Ok(line) = serde_json::to_string(r) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

mod thin;

#[cfg(test)]
use self::thin::merge;
use self::thin::{append, halve};

#[cfg(test)]
mod tests;
