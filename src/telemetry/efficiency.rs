//! Efficiency: what the client got for the energy the GPUs spent.

use serde::{Deserialize, Serialize};

use super::report::{EnergySource, GpuResult};

/// What the load generator measured over the same phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTotals {
    pub output_tokens: u64,
    pub requests: u64,
    pub duration_s: f64,
    /// Concurrent streams, for closed-loop runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Mean latency of the successful requests, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_latency_s: Option<f64>,
    /// Requests per second that met every per-request objective (with SLOs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_per_s: Option<f64>,
}

/// Totals over the GPUs that served the run, and per-token figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Efficiency {
    pub gpu_count: u32,
    /// GPUs whose energy is known (the others had no power data).
    pub gpus_with_energy: u32,
    /// Sum of the GPUs' mean power, W.
    pub total_gpu_power_w: f64,
    pub total_gpu_energy_j: f64,
    /// `counter`, `powerIntegral`, or `mixed` when GPUs differ.
    pub energy_source: String,
    /// Sum of the GPUs' uncertainty bounds, J, when every GPU has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_joule: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_output_token_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_request_j: Option<f64>,
    /// Energy divided by the concurrency (closed-loop runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_user_j: Option<f64>,
    /// Output tokens per second per watt of GPU power (performance per watt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_second_per_watt: Option<f64>,
    /// Requests per second that met every objective, per watt: good
    /// requests per joule (with SLOs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_per_watt: Option<f64>,
    /// Energy-delay product of a request, J·s: energy per request times the
    /// mean request latency. Lower is better; it weighs a saving of energy
    /// against the wait it costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_delay_product_js: Option<f64>,
    /// The mean power of these GPUs when idle, measured before the first
    /// step (`telemetry.idleBaseline`), W.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_power_w: Option<f64>,
    /// The energy above that idle power over the step, J: each GPU's energy
    /// less its idle power times the time its energy spans. Only when every
    /// GPU with energy had an idle reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_above_idle_j: Option<f64>,
    /// Why there is no energy above idle although an idle baseline was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above_idle_note: Option<String>,
}

impl Efficiency {
    /// Leaves out every figure that divides by the energy or the power: they
    /// would rest on part of the step's energy (see `results::coverage`).
    pub fn withhold(&mut self) {
        self.output_tokens_per_joule = None;
        self.energy_per_output_token_j = None;
        self.energy_per_request_j = None;
        self.energy_per_user_j = None;
        self.output_tokens_per_second_per_watt = None;
        self.goodput_per_watt = None;
        self.energy_delay_product_js = None;
    }
}

/// The idle power of GPUs, measured before a run's first step, by GPU key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleBaseline {
    /// How long the GPUs were measured idle, s.
    pub seconds: f64,
    /// Mean power of each GPU measured idle, W.
    pub power_w: std::collections::BTreeMap<String, f64>,
}

/// How many of its exporter's refreshes an idle window must span for a GPU
/// whose only reading is its energy counter: the counter read at each end
/// is up to one refresh old, so its increase over the window is within
/// 1/`REFRESHES` (2 %) of the truth.
pub const REFRESHES: f64 = 50.0;

impl IdleBaseline {
    /// The idle power of each of `gpus`, measured over `seconds`: the mean of
    /// its power readings (idle power barely moves, so their mean does not
    /// depend on when the exporter refreshed), else its energy counter's
    /// increase over the time it spans when that spans [`REFRESHES`]
    /// refreshes. With a note for each GPU left without one.
    pub fn of(gpus: &[GpuResult], seconds: f64) -> (Self, Vec<String>) {
        let mut power_w = std::collections::BTreeMap::new();
        let mut notes = Vec::new();
        for g in gpus {
            let name = g.identity.uuid.as_deref().unwrap_or(&g.key);
            let gauge = g
                .metrics
                .iter()
                .find(|m| m.key == "gpu_power_usage")
                .and_then(|m| m.stats.as_ref())
                .filter(|st| st.count >= 2)
                .map(|st| st.mean);
            let counter = g.energy.as_ref().and_then(|e| {
                let span = e.seconds.filter(|s| *s > 0.0)?;
                let refresh = g.update_period_s?;
                (span >= REFRESHES * refresh).then(|| e.joules / span)
            });
            match gauge.or(counter) {
                Some(w) => {
                    power_w.insert(g.key.clone(), w);
                }
                None => notes.push(format!(
                    "GPU {name} has no idle power: no power readings, and its energy counter{} does not span {REFRESHES} refreshes of its exporter",
                    g.update_period_s
                        .map(|u| format!(" (refreshed every {u:.1} s)"))
                        .unwrap_or_default()
                )),
            }
        }
        (IdleBaseline { seconds, power_w }, notes)
    }
}

impl Efficiency {
    /// Adds the idle power of `gpus` and the energy above it, when every
    /// GPU with energy has an idle reading and a span; otherwise says why not.
    pub fn above_idle(&mut self, gpus: &[GpuResult], idle: &IdleBaseline) -> Result<(), String> {
        let (mut watts, mut above) = (0.0, 0.0);
        for g in gpus {
            let Some(e) = &g.energy else { continue };
            let name = g.identity.uuid.as_deref().unwrap_or(&g.key);
            let w = idle
                .power_w
                .get(&g.key)
                .ok_or_else(|| format!("GPU {name} was not measured idle"))?;
            let s = e
                .seconds
                .ok_or_else(|| format!("the energy of GPU {name} spans no known time"))?;
            watts += w;
            above += e.joules - w * s;
        }
        if self.gpus_with_energy == 0 {
            return Err("no GPU energy was measured".into());
        }
        (self.idle_power_w, self.energy_above_idle_j) = (Some(watts), Some(above));
        Ok(())
    }
}

/// Efficiency of `gpus` serving `client`.
pub fn efficiency(gpus: &[GpuResult], client: &ClientTotals) -> Efficiency {
    let energies: Vec<_> = gpus.iter().filter_map(|g| g.energy.as_ref()).collect();
    let joules: f64 = energies.iter().map(|e| e.joules).sum();
    let power: f64 = energies.iter().map(|e| e.avg_power_w).sum();
    let source = match (
        energies.iter().all(|e| e.source == EnergySource::Counter),
        energies
            .iter()
            .all(|e| e.source == EnergySource::PowerIntegral),
    ) {
        _ if energies.is_empty() => "none",
        (true, _) => "counter",
        (_, true) => "powerIntegral",
        _ => "mixed",
    };
    let have_energy = joules > 0.0;
    let per = |n: f64| (have_energy && n > 0.0).then(|| joules / n);
    let tokens = client.output_tokens as f64;
    Efficiency {
        gpu_count: gpus.len() as u32,
        gpus_with_energy: energies.len() as u32,
        total_gpu_power_w: power,
        total_gpu_energy_j: joules,
        energy_source: source.to_string(),
        energy_uncertainty_j: energies
            .iter()
            .map(|e| e.uncertainty_j)
            .sum::<Option<f64>>()
            .filter(|_| !energies.is_empty()),
        output_tokens_per_joule: have_energy.then(|| tokens / joules),
        energy_per_output_token_j: per(tokens),
        energy_per_request_j: per(client.requests as f64),
        energy_per_user_j: client.concurrency.and_then(|c| per(f64::from(c))),
        output_tokens_per_second_per_watt: (power > 0.0 && client.duration_s > 0.0)
            .then(|| tokens / client.duration_s / power),
        goodput_per_watt: client
            .goodput_per_s
            .filter(|_| power > 0.0)
            .map(|g| g / power),
        energy_delay_product_js: per(client.requests as f64)
            .zip(client.mean_latency_s)
            .map(|(j, s)| j * s),
        idle_power_w: None,
        energy_above_idle_j: None,
        above_idle_note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::report::Energy;

    fn gpu(joules: f64, power: f64, source: EnergySource) -> GpuResult {
        GpuResult {
            key: "k".into(),
            endpoint: "e".into(),
            identity: Default::default(),
            pods: vec![],
            pods_elsewhere: 0,
            samples: 10,
            scrape_interval_s: Some(1.0),
            update_period_s: Some(1.0),
            stale: false,
            energy: Some(Energy {
                joules,
                source,
                avg_power_w: power,
                seconds: Some(joules / power),
                uncertainty_j: Some(power),
            }),
            profile: None,
            warnings: vec![],
            metrics: vec![],
        }
    }

    #[test]
    fn hand_computed_example() {
        // Two GPUs at 300 W and 500 W for 100 s: 30 kJ + 50 kJ.
        let gpus = [
            gpu(30_000.0, 300.0, EnergySource::Counter),
            gpu(50_000.0, 500.0, EnergySource::Counter),
        ];
        let client = ClientTotals {
            output_tokens: 160_000,
            requests: 1000,
            duration_s: 100.0,
            concurrency: Some(16),
            mean_latency_s: Some(1.6),
            goodput_per_s: Some(8.0),
        };
        let e = efficiency(&gpus, &client);
        assert_eq!(
            (e.gpu_count, e.total_gpu_power_w, e.total_gpu_energy_j),
            (2, 800.0, 80_000.0)
        );
        assert_eq!(e.energy_source, "counter");
        assert_eq!(e.output_tokens_per_joule, Some(2.0));
        assert_eq!(e.energy_per_output_token_j, Some(0.5));
        assert_eq!(e.energy_per_request_j, Some(80.0));
        assert_eq!(e.energy_per_user_j, Some(5000.0));
        assert_eq!(e.output_tokens_per_second_per_watt, Some(2.0));
        assert_eq!(e.energy_uncertainty_j, Some(800.0));
        // 8 good requests/s at 800 W; 80 J a request, 1.6 s each.
        assert_eq!(e.goodput_per_watt, Some(0.01));
        assert_eq!(e.energy_delay_product_js, Some(128.0));
        let mut withheld = e.clone();
        withheld.withhold();
        assert_eq!(
            (withheld.goodput_per_watt, withheld.energy_delay_product_js),
            (None, None)
        );
        assert_eq!(
            withheld.total_gpu_energy_j, 80_000.0,
            "the energy itself stays"
        );
        // Without objectives there is no goodput to divide.
        let e = efficiency(
            &gpus,
            &ClientTotals {
                goodput_per_s: None,
                ..client
            },
        );
        assert_eq!(e.goodput_per_watt, None);
    }

    /// `g` with power readings of mean `watts`.
    fn with_power(mut g: GpuResult, watts: f64) -> GpuResult {
        g.metrics.push(crate::telemetry::report::MetricResult {
            key: "gpu_power_usage".into(),
            field: "DCGM_FI_DEV_POWER_USAGE".into(),
            display: "Power".into(),
            unit: "W".into(),
            kind: crate::telemetry::dcgm::FieldKind::Gauge,
            stats: Some(crate::stats::Summary {
                count: 10,
                mean: watts,
                ..Default::default()
            }),
            first: None,
            delta: None,
            rate: None,
            resets: 0,
            bits: None,
        });
        g
    }

    #[test]
    fn idle_power_from_the_counter_alone_needs_a_window_of_many_refreshes() {
        // No power gauge; the exporter refreshes every second.
        let idle = |joules: f64, seconds: f64| {
            let g = gpu(joules, joules / seconds, EnergySource::Counter);
            IdleBaseline::of(&[g], seconds)
        };
        let (short, notes) = idle(700.0, 10.0);
        assert!(short.power_w.is_empty());
        assert_eq!(
            notes,
            [
                "GPU k has no idle power: no power readings, and its energy counter (refreshed every 1.0 s) does not span 50 refreshes of its exporter"
            ]
        );
        let (long, notes) = idle(4200.0, 60.0);
        assert_eq!(long.power_w.get("k"), Some(&70.0));
        assert!(notes.is_empty());
    }

    #[test]
    fn energy_above_idle_takes_each_gpu_s_idle_power_over_its_own_span() {
        let keyed = |key: &str, joules: f64, power: f64| GpuResult {
            key: key.into(),
            ..gpu(joules, power, EnergySource::Counter)
        };
        // Idle for 10 s at 70 W and 60 W, read from their power gauges.
        let (idle, notes) = IdleBaseline::of(
            &[
                with_power(keyed("a", 700.0, 70.0), 70.0),
                with_power(keyed("b", 600.0, 60.0), 60.0),
            ],
            10.0,
        );
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(idle.power_w.get("a"), Some(&70.0));
        assert_eq!(idle.power_w.get("b"), Some(&60.0));
        // Then 100 s at 300 W and 500 W: 80 kJ, of which 7 kJ + 6 kJ idle.
        let gpus = [keyed("a", 30_000.0, 300.0), keyed("b", 50_000.0, 500.0)];
        let mut e = efficiency(&gpus, &ClientTotals::default());
        e.above_idle(&gpus, &idle).unwrap();
        assert_eq!(e.idle_power_w, Some(130.0));
        assert_eq!(e.energy_above_idle_j, Some(67_000.0));
        assert_eq!(e.total_gpu_energy_j, 80_000.0, "the total stays beside it");
        // A GPU that was not measured idle: nothing above idle, and why.
        let gpus = [keyed("a", 30_000.0, 300.0), keyed("c", 50_000.0, 500.0)];
        let mut e = efficiency(&gpus, &ClientTotals::default());
        let why = e.above_idle(&gpus, &idle).unwrap_err();
        assert_eq!(why, "GPU c was not measured idle");
        assert_eq!((e.idle_power_w, e.energy_above_idle_j), (None, None));
    }

    #[test]
    fn mixed_sources_and_no_energy() {
        let gpus = [
            gpu(1.0, 1.0, EnergySource::Counter),
            gpu(1.0, 1.0, EnergySource::PowerIntegral),
        ];
        assert_eq!(
            efficiency(&gpus, &ClientTotals::default()).energy_source,
            "mixed"
        );
        let e = efficiency(
            &[],
            &ClientTotals {
                output_tokens: 5,
                ..Default::default()
            },
        );
        assert_eq!(e.energy_source, "none");
        assert_eq!(
            (e.output_tokens_per_joule, e.energy_per_user_j),
            (None, None)
        );
    }
}
