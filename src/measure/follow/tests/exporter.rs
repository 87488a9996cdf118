//! The GPU behind the simulated run and its exporter, for the energy
//! invariant (4): the GPU draws a power that changes every second (100 to
//! 700 W); the exporter refreshes every `period` s (0.1 s to dcgm-exporter's
//! default 30 s), answers as of up to `late` s after a scrape was sent, is
//! down (a death, a restart: scrapes fail) over some windows, and its
//! energy counter may start again from zero (a GPU reset, a driver reload).
//!
//! Each step the machine opened and closed in one controller's life is
//! scraped as the shell scrapes it (a boundary scrape at its opening and at
//! its closing, one a second between) into a real [`StepTelemetry`], and
//! its result is computed by the real [`collect::detail`]: a published
//! energy must be the truth over the client's window within the tolerance
//! the coverage rules state (both ends' allowance, a refresh period and the
//! lateness at each end, at the most power), else the figure is withheld
//! with a reason.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::api::GpuScope;
use crate::loadgen::engine::StepResult as ClientStep;
use crate::measure::collect::{self, Kind, Pods, StepTelemetry};
use crate::results::WorkerCoverage;
use crate::results::coverage::{MAX_OVERSHOOT_FRACTION, MIN_OVERSHOOT_S, MIN_WINDOW_FRACTION};
use crate::scrape::Format;
use crate::telemetry::Filter;

const P_MIN: f64 = 100.0;
const P_MAX: f64 = 700.0;
/// The shell's periodic scrape interval.
const EVERY_S: f64 = 1.0;
/// Unix ms of session time 0.
const T0_MS: u64 = 1_800_000_000_000;
const URL: &str = "http://dcgm:9400/metrics";
const LABELS: &str = "gpu=\"0\",UUID=\"GPU-sim\",namespace=\"ns\",pod=\"llm-0\"";

#[derive(Clone, Debug)]
pub struct Exporter {
    seed: u64,
    pub period: f64,
    phase: f64,
    pub late: f64,
    pub down: Vec<(f64, f64)>,
    pub reset_at: Option<f64>,
    /// Energy drawn by the end of each second, J (filled up to need).
    drawn: Vec<f64>,
}

/// What one step's energy came to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Published, this far from the truth (relative), over a window of
    /// this many of the exporter's refresh periods.
    Published { off: f64, periods: f64 },
    /// Withheld with a reason (the first one).
    Withheld(&'static str),
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (splitmix(x) >> 11) as f64 / (1u64 << 53) as f64
}

impl Exporter {
    /// An exporter for schedule `seed` of a run ending near `end` s (its
    /// own random stream: the fault schedule stays what it was).
    pub fn new(seed: u64, end: f64) -> Exporter {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_E4E0_0000_0001);
        let period = [0.1, 1.0, 1.0, 5.0, 30.0][rng.random_range(0..5)];
        let late = [0.0, 0.0, 0.02, 0.4][rng.random_range(0..4)];
        let mut down = Vec::new();
        for p in [0.3, 0.1] {
            if rng.random_bool(p) {
                let at = rng.random_range(0.0..end + 1.0);
                down.push((at, at + rng.random_range(0.5..10.0)));
            }
        }
        let reset_at = rng
            .random_bool(0.1)
            .then(|| rng.random_range(0.0..end + 1.0));
        Exporter {
            seed,
            period,
            phase: rng.random_range(0.0..period),
            late,
            down,
            reset_at,
            drawn: Vec::new(),
        }
    }

    fn power(&self, second: u64) -> f64 {
        P_MIN + (P_MAX - P_MIN) * unit(self.seed.wrapping_mul(1_000_003) ^ second)
    }

    /// Energy drawn from 0 to `t`, J: the truth.
    pub fn energy(&mut self, t: f64) -> f64 {
        let t = t.max(0.0);
        let s = t.floor() as usize;
        while self.drawn.len() <= s {
            let before = self.drawn.last().copied().unwrap_or(0.0);
            let next = before + self.power(self.drawn.len() as u64);
            self.drawn.push(next);
        }
        let whole = if s == 0 { 0.0 } else { self.drawn[s - 1] };
        whole + self.power(s as u64) * (t - s as f64)
    }

    /// The page a scrape sent at `t` gets (`None`: it failed).
    fn page(&mut self, t: f64) -> Option<String> {
        if self.down.iter().any(|(a, b)| (*a..*b).contains(&t)) {
            return None;
        }
        let late = self.late * unit(self.seed ^ (t * 1e6) as u64);
        let seen = t + late;
        // The last refresh by then.
        let k = ((seen - self.phase) / self.period).floor();
        let refreshed = self.phase + k * self.period;
        let joules = match self.reset_at {
            Some(r) if refreshed >= r => self.energy(refreshed) - self.energy(r),
            _ => 1e6 + self.energy(refreshed),
        };
        let watts = self.power(refreshed.floor() as u64);
        Some(format!(
            "# TYPE DCGM_FI_DEV_POWER_USAGE gauge\nDCGM_FI_DEV_POWER_USAGE{{{LABELS}}} {watts}\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{LABELS}}} {}\n",
            (joules * 1e3).round()
        ))
    }

    /// A step opened at `open` and closed at `close` (session s), whose
    /// client measured over `client` (the workers' results held: `reported`
    /// of `measuring`); its energy against the truth.
    pub fn step(
        &mut self,
        k: usize,
        (open, close): (f64, f64),
        client: (f64, f64),
        coverage: WorkerCoverage,
    ) -> Result<Outcome, String> {
        let ms = |t: f64| T0_MS + (t * 1e3).round() as u64;
        let mut tel = StepTelemetry::new(Filter::default(), ms(open), open, false);
        let mut t = open;
        loop {
            if let Some(page) = self.page(t) {
                tel.ingest(Kind::Gpu, URL, t, page.as_bytes(), Format::Prometheus);
            }
            tel.window.end_unix_ms = ms(t);
            tel.closed_t = t;
            if t >= close {
                break;
            }
            t = (t + EVERY_S).min(close);
        }
        let (from, to) = client;
        let seconds = to - from;
        let output_tokens = (seconds * 100.0).round() as u64;
        let step = ClientStep {
            requests: 10,
            successes: 10,
            output_tokens,
            duration_s: seconds,
            started_unix_ms: ms(from),
            ended_unix_ms: ms(to),
            ..Default::default()
        };
        let pods = Pods {
            inference: BTreeSet::from(["ns/llm-0".to_string()]),
            readable: BTreeSet::from(["ns".to_string()]),
        };
        let d = collect::detail(
            k as u32,
            Some(&tel),
            Some(step),
            Some(coverage),
            GpuScope::Auto,
            &pods,
            None,
        );
        let truth = self.energy(to) - self.energy(from);
        let Some(reported) = d.summary().total_gpu_energy_j else {
            let first = d.coverage.as_ref().and_then(|c| c.gaps.first());
            return match (first, coverage.gap()) {
                (Some(gap), _) => Ok(Outcome::Withheld(gap.reason.as_str())),
                (None, Some(gap)) => Ok(Outcome::Withheld(gap.reason.as_str())),
                (None, None) => Err(format!(
                    "step {k}: energy withheld without a reason ({:?})",
                    d.coverage
                )),
            };
        };
        // What the coverage rules allow: at each end, the window's
        // allowance past or short of the client's, a refresh period of
        // staleness and the answer's lateness, each at the most power.
        let allowed = (MAX_OVERSHOOT_FRACTION * seconds)
            .max(MIN_OVERSHOOT_S)
            .max((1.0 - MIN_WINDOW_FRACTION) * seconds);
        let tolerance = 0.005 * truth + 2.0 * P_MAX * (allowed + self.period + self.late);
        let off = reported - truth;
        if off.abs() > tolerance {
            return Err(format!(
                "step {k}: {reported:.1} J published, the truth over the client's window is {truth:.1} J ({:+.2} %, allowed ±{tolerance:.1} J); exporter {:?}; window {open:.3}..{close:.3}, client {from:.3}..{to:.3}; coverage {:?}",
                100.0 * off / truth,
                (self.period, self.late, &self.down, self.reset_at),
                d.coverage
            ));
        }
        Ok(Outcome::Published {
            off: off.abs() / truth,
            periods: seconds / self.period,
        })
    }
}
