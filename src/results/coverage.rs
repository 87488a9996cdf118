//! Coverage: what part of a step's inputs its energy figures rest on.
//!
//! An efficiency figure divides the client's work over its measured window by
//! the energy of the GPUs that served it. It is right only when that energy
//! covers the whole window on every attributed GPU; over part of it (a
//! controller restart mid-step, an exporter that missed a boundary scrape, a
//! GPU without energy readings) it is wrong by as much as is missing. So each
//! step says what its energy covers, and the figures are published only when
//! nothing is missing: otherwise they are withheld and the gaps say why.
//!
//! Pure: every input is a value.

use serde::{Deserialize, Serialize};

use super::Window;

/// The least part of the client's window the telemetry window must cover for
/// the efficiency figures to be published. The opening boundary scrape
/// follows the workers' step start by the time it takes to notice it (tens of
/// milliseconds); anything beyond 1 % is a gap.
pub const MIN_WINDOW_FRACTION: f64 = 0.99;

/// How far the telemetry window may run past the client's, at either end,
/// as a part of the client's window: the energy of time no request was
/// measured in counts against the tokens. The closing boundary scrape goes
/// out as the last worker's step end arrives (a long poll: milliseconds),
/// never behind a periodic scrape, a discovery round or a checkpoint write.
pub const MAX_OVERSHOOT_FRACTION: f64 = 0.01;
/// The overshoot every window may have, however short: the step end's way to
/// the controller and the scrape's own way out (tens of ms on a loaded node).
pub const MIN_OVERSHOOT_S: f64 = 0.2;
/// How many times each attributed GPU's exporter must refresh inside the
/// window: with fewer, a boundary reading may be as old as a whole refresh
/// period, and the energy wrong by as much (dcgm-exporter refreshes every
/// 30 s by default: a 45 s step could be off by two thirds).
pub const MIN_REFRESHES: u32 = 2;
/// How many of its exporter's refresh periods the window must span: each
/// boundary reading may be up to a period old, so the energy may be off by
/// up to a period's worth of power at each end — 10 periods bound that to a
/// tenth of the step (with a steady power; the fault schedules' power,
/// changing every second between 100 and 700 W, was published up to 2x off
/// over windows of fewer than 10 periods). dcgm-exporter's default 30 s
/// refresh needs steps of 5 minutes; `-c 1000` (1 s) steps of 10 s.
pub const MIN_WINDOW_PERIODS: f64 = 10.0;

/// Why a step's energy does not cover the step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GapReason {
    /// The controller took the run up mid-step (a restart or a failover):
    /// the telemetry window opened late.
    Restarted,
    /// The telemetry window misses part of the client's window.
    Gap,
    /// Some attributed GPUs have no energy over the whole window.
    PartialGpus,
    /// An exporter refreshed fewer than [`MIN_REFRESHES`] times inside the
    /// window (or refreshes less often than that allows).
    StaleExporter,
    /// The telemetry window runs past the client's by more than
    /// [`MAX_OVERSHOOT_FRACTION`]: energy of time no request was measured in.
    Overshoot,
    /// No GPU was attributed to the run.
    NoGpus,
    /// The load generators' results (and so their window) are missing.
    NoClientResults,
    /// Some load generators' results are missing: the client totals are
    /// part of the step's work, and dividing them by its energy would be wrong.
    MissingWorkers,
    /// The exporters reported more GPUs than a step keeps: the GPUs past the
    /// bound were not measured, and an attributed one may be among them.
    TooManyGpus,
    /// An attributed GPU's energy counter went back inside the window (a
    /// driver reload, a GPU reset, an exporter that counts for itself and
    /// restarted): the energy between the reading before and the one after
    /// is unknown.
    CounterReset,
    /// Another run loaded the same target while this one measured
    /// (`concurrencyPolicy: Allow`): the GPUs' energy is that run's too.
    SharedGpus,
    /// The run's telemetry passed its budget (`--max-run-telemetry-mib`):
    /// the step's GPU telemetry was let go, and its energy with it.
    TelemetryBudget,
    /// More of the step's requests failed than `load.maxErrorRate` allows:
    /// the load was not the one asked for, and the energy paid for work
    /// whose tokens were never counted.
    FailedRequests,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Restarted => "Restarted",
            GapReason::Gap => "Gap",
            GapReason::PartialGpus => "PartialGpus",
            GapReason::StaleExporter => "StaleExporter",
            GapReason::Overshoot => "Overshoot",
            GapReason::NoGpus => "NoGpus",
            GapReason::NoClientResults => "NoClientResults",
            GapReason::MissingWorkers => "MissingWorkers",
            GapReason::TooManyGpus => "TooManyGpus",
            GapReason::CounterReset => "CounterReset",
            GapReason::SharedGpus => "SharedGpus",
            GapReason::FailedRequests => "FailedRequests",
            GapReason::TelemetryBudget => "TelemetryBudget",
        }
    }
}

/// One thing a step's energy misses, said plainly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Gap {
    pub reason: GapReason,
    pub message: String,
}

/// What a step's energy covers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// The client's measured window, s.
    pub client_window_s: f64,
    /// The part of it between the opening and the closing boundary scrape, s.
    pub covered_s: f64,
    /// `covered_s / client_window_s` (0 when the client window is unknown).
    pub fraction: f64,
    /// GPUs attributed to the run.
    pub gpus: u32,
    /// Of those, the GPUs whose energy spans the whole telemetry window.
    pub gpus_with_energy: u32,
    /// The longest refresh period of the attributed GPUs' exporters, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_update_period_s: Option<f64>,
    /// Seconds of the step without scrapes while a new controller took the
    /// run over from a checkpoint; energy counters span them (exact), power
    /// samples and other gauges miss them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_gap_s: Option<f64>,
    /// Nothing is missing: the efficiency figures are published.
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

/// Which load generators a step's client figures rest on. The figures are
/// totals and merged distributions over every worker: with a worker's result
/// missing they describe part of the load as if it were all of it, so they
/// are published only when every worker's result arrived.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkerCoverage {
    /// The load generators the run started.
    pub workers: u32,
    /// Of those, the ones whose result for this step arrived.
    pub reported: u32,
}

impl WorkerCoverage {
    pub fn complete(&self) -> bool {
        self.reported >= self.workers
    }

    /// What is missing, said plainly (`None` when nothing is).
    pub fn gap(&self) -> Option<Gap> {
        (!self.complete()).then(|| Gap {
            reason: GapReason::MissingWorkers,
            message: format!(
                "results from {} of {} load generators arrived; the client figures cover part of the load and are left out, and so is every figure divided by them",
                self.reported, self.workers
            ),
        })
    }
}

impl Coverage {
    /// A step taken over from a checkpoint after `gap_s` seconds without
    /// scrapes, whose closing reading came `late_close_s` after the client's
    /// step ended. Energy counters span the gap; energy integrated from power
    /// samples does not, and a closing reading taken long after the step
    /// ended (it ended during the gap) counts energy of time after it.
    pub fn with_restart_gap(mut self, gap_s: f64, late_close_s: f64, gpus: &[GpuSpan]) -> Self {
        if gap_s <= 0.0 {
            return self;
        }
        self.restart_gap_s = Some(gap_s);
        let power_only: Vec<String> = gpus
            .iter()
            .filter(|g| g.has_energy && !g.counter)
            .map(|g| g.name.clone())
            .collect();
        if !power_only.is_empty() {
            let spanning = gpus
                .iter()
                .filter(|g| g.has_energy && !g.counter && g.spans_window)
                .count() as u32;
            self.gpus_with_energy = self.gpus_with_energy.saturating_sub(spanning);
            self.gaps.push(Gap {
                reason: GapReason::Restarted,
                message: format!(
                    "the energy of {} is integrated from power samples, which miss the {gap_s:.1} s the controller was taking the run over",
                    some(&power_only)
                ),
            });
        }
        let tolerance = (1.0 - MIN_WINDOW_FRACTION) * self.client_window_s;
        if late_close_s > tolerance {
            // The restart is why it closed late: one gap says so, not two.
            self.gaps.retain(|g| g.reason != GapReason::Overshoot);
            self.gaps.push(Gap {
                reason: GapReason::Restarted,
                message: format!(
                    "the step ended while the controller was taking the run over: its closing reading came {late_close_s:.1} s after the client's step ended, so its energy counts time after the step"
                ),
            });
        }
        self.complete = self.gaps.is_empty();
        self
    }

    /// Adds the gap of client figures that miss some workers' results.
    /// A step whose exporters reported GPUs past the bound of `kept`:
    /// `refused` samples of them were set aside, so the energy may miss an
    /// attributed GPU, and the step is not complete.
    pub fn with_refused_gpus(mut self, refused: u64, kept: usize) -> Self {
        if refused > 0 {
            self.gaps.push(Gap {
                reason: GapReason::TooManyGpus,
                message: format!(
                    "the exporters reported more than the {kept} GPUs a step keeps; {refused} readings of the GPUs past that were set aside, and an attributed GPU may be among them"
                ),
            });
            self.complete = false;
        }
        self
    }

    /// A step whose GPU telemetry was let go for the run's budget: its
    /// energy is unknown, and this is the first thing said about it.
    pub fn with_dropped(mut self, dropped: super::Dropped) -> Self {
        if dropped.gpu {
            self.gaps.insert(
                0,
                Gap {
                    reason: GapReason::TelemetryBudget,
                    message: dropped.reason(),
                },
            );
            self.complete = false;
        }
        self
    }

    /// A step measured while the runs `shared_with` loaded the same target:
    /// its GPUs' energy is theirs too, so the step is not complete, and this
    /// is the first thing said about it.
    pub fn with_shared(mut self, shared_with: &[String]) -> Self {
        if !shared_with.is_empty() {
            self.gaps.insert(
                0,
                Gap {
                    reason: GapReason::SharedGpus,
                    message: shared_message(shared_with),
                },
            );
            self.complete = false;
        }
        self
    }

    /// A step whose requests failed past `max_error_rate` (a fraction): the
    /// first thing said about it, after a shared target.
    pub fn with_failed_requests(mut self, failed: Option<Gap>) -> Self {
        if let Some(gap) = failed {
            self.gaps.insert(0, gap);
            self.complete = false;
        }
        self
    }

    pub fn with_workers(mut self, workers: Option<WorkerCoverage>) -> Self {
        if let Some(gap) = workers.and_then(|w| w.gap()) {
            self.gaps.push(gap);
            self.complete = false;
        }
        self
    }
}

/// The failed requests of a client step, said plainly: how many of how
/// many, by kind, and the first message (`None` when none failed).
pub fn failed_requests(
    requests: u64,
    errors: &std::collections::BTreeMap<crate::loadgen::request::ErrorKind, u64>,
    sample: Option<&str>,
) -> Option<String> {
    let failed: u64 = errors.values().sum();
    if failed == 0 {
        return None;
    }
    let kinds = errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut m = format!(
        "{failed} of {requests} requests failed ({:.1} %): {kinds}",
        100.0 * failed as f64 / requests.max(1) as f64
    );
    if let Some(s) = sample {
        let s: String = s.chars().take(200).collect();
        m.push_str(&format!("; first: {s}"));
    }
    Some(m)
}

/// The gap of a step whose failed requests are past `max_error_rate` (a
/// fraction of its requests), `None` within it.
pub fn failed_requests_gap(
    requests: u64,
    errors: &std::collections::BTreeMap<crate::loadgen::request::ErrorKind, u64>,
    sample: Option<&str>,
    max_error_rate: f64,
) -> Option<Gap> {
    let failed: u64 = errors.values().sum();
    if requests == 0 || failed as f64 / requests as f64 <= max_error_rate {
        return None;
    }
    Some(Gap {
        reason: GapReason::FailedRequests,
        message: format!(
            "{}, past load.maxErrorRate ({} %): the load was not the one asked for, and the energy paid for requests whose tokens were never counted, so efficiency figures are left out",
            failed_requests(requests, errors, sample)?,
            max_error_rate * 100.0
        ),
    })
}

/// Why a run that shared its target with `runs` has no energy figures.
pub fn shared_message(runs: &[String]) -> String {
    format!(
        "{} {} loaded the same target while this run measured: the GPUs' energy is theirs too (and the latencies carry their load), so energy and efficiency figures are left out of the status",
        if runs.len() == 1 { "run" } else { "runs" },
        runs.join(", ")
    )
}

/// One attributed GPU, as coverage sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSpan {
    /// How messages name it (UUID, else its key).
    pub name: String,
    /// It has energy readings at all.
    pub has_energy: bool,
    /// Its energy readings include both boundary scrapes of the window.
    pub spans_window: bool,
    /// Its energy is a cumulative counter's increase (exact across a gap in
    /// the scrapes), not an integral of power samples (which misses it).
    pub counter: bool,
    pub update_period_s: Option<f64>,
    /// How many times its exporter was seen to refresh inside the window
    /// (energy counter changes; `None` when only power is read, whose
    /// reading may stay put across a refresh).
    pub refreshes: Option<u32>,
    /// How many times its energy counter went back inside the window.
    pub resets: u32,
}

/// The coverage of a step whose telemetry window is `telemetry`, whose
/// client measured over `client` (`None`: no client results), taken up by a
/// controller mid-run when `resumed`, with the attributed `gpus`.
pub fn coverage(
    telemetry: Window,
    client: Option<Window>,
    resumed: bool,
    gpus: &[GpuSpan],
) -> Coverage {
    let mut c = Coverage {
        gpus: gpus.len() as u32,
        gpus_with_energy: gpus.iter().filter(|g| g.spans_window).count() as u32,
        longest_update_period_s: gpus
            .iter()
            .filter_map(|g| g.update_period_s)
            .reduce(f64::max),
        ..Coverage::default()
    };
    match client.filter(|w| w.start_unix_ms > 0 && w.end_unix_ms > w.start_unix_ms) {
        None => c.gaps.push(Gap {
            reason: GapReason::NoClientResults,
            message:
                "the load generators' results are missing, so nothing is divided by this energy"
                    .into(),
        }),
        Some(w) => window_gap(&mut c, telemetry, w, resumed),
    }
    gpu_gaps(&mut c, telemetry, gpus);
    c.complete = c.gaps.is_empty();
    c
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1e3
}

fn window_gap(c: &mut Coverage, telemetry: Window, client: Window, resumed: bool) {
    let from = telemetry.start_unix_ms.max(client.start_unix_ms);
    let to = telemetry.end_unix_ms.min(client.end_unix_ms);
    c.client_window_s = seconds(client.end_unix_ms - client.start_unix_ms);
    c.covered_s = seconds(to.saturating_sub(from));
    c.fraction = c.covered_s / c.client_window_s;
    // Past the client's window at either end: energy of time no request
    // was measured in.
    let before = seconds(client.start_unix_ms.saturating_sub(telemetry.start_unix_ms));
    let after = seconds(telemetry.end_unix_ms.saturating_sub(client.end_unix_ms));
    let allowed = (MAX_OVERSHOOT_FRACTION * c.client_window_s).max(MIN_OVERSHOOT_S);
    // A step taken over mid-way says its late close as a restart gap.
    if !resumed && (before > allowed || after > allowed) {
        let mut why = Vec::new();
        if before > allowed {
            why.push(format!("opened {before:.2} s before the step began"));
        }
        if after > allowed {
            why.push(format!("closed {after:.2} s after it ended"));
        }
        c.gaps.push(Gap {
            reason: GapReason::Overshoot,
            message: format!(
                "the GPU telemetry runs past the client's {:.1} s window ({}): its energy counts time no request was measured in; at most {allowed:.2} s is allowed at each end",
                c.client_window_s,
                why.join(" and ")
            ),
        });
    }
    if c.fraction >= MIN_WINDOW_FRACTION {
        return;
    }
    let late = seconds(telemetry.start_unix_ms.saturating_sub(client.start_unix_ms));
    let early = seconds(client.end_unix_ms.saturating_sub(telemetry.end_unix_ms));
    let mut why = Vec::new();
    if late > 0.0 {
        let restart = if resumed {
            ", when this controller took the run up after a restart"
        } else {
            ""
        };
        why.push(format!("opened {late:.2} s after the step began{restart}"));
    }
    if early > 0.0 {
        why.push(format!("closed {early:.2} s before it ended"));
    }
    c.gaps.push(Gap {
        reason: if resumed && late > 0.0 {
            GapReason::Restarted
        } else {
            GapReason::Gap
        },
        message: format!(
            "the GPU telemetry covers {:.1} % of the client's {:.1} s window ({}); efficiency needs {:.0} %",
            c.fraction * 100.0,
            c.client_window_s,
            why.join(" and "),
            MIN_WINDOW_FRACTION * 100.0
        ),
    });
}

/// Names the first few of `names`, and how many more there are.
fn some(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

fn gpu_gaps(c: &mut Coverage, telemetry: Window, gpus: &[GpuSpan]) {
    if gpus.is_empty() {
        c.gaps.push(Gap {
            reason: GapReason::NoGpus,
            message: "no GPU was attributed to the run, so there is no energy to divide by".into(),
        });
        return;
    }
    let without: Vec<String> = gpus
        .iter()
        .filter(|g| !g.has_energy)
        .map(|g| g.name.clone())
        .collect();
    let partial: Vec<String> = gpus
        .iter()
        .filter(|g| g.has_energy && !g.spans_window)
        .map(|g| g.name.clone())
        .collect();
    if !without.is_empty() || !partial.is_empty() {
        let mut why = Vec::new();
        if !without.is_empty() {
            why.push(format!("no energy readings from {}", some(&without)));
        }
        if !partial.is_empty() {
            why.push(format!(
                "{}'s exporter missed a boundary scrape",
                some(&partial)
            ));
        }
        c.gaps.push(Gap {
            reason: GapReason::PartialGpus,
            message: format!(
                "energy covers the whole window on {} of {} GPUs ({})",
                c.gpus_with_energy,
                c.gpus,
                why.join("; ")
            ),
        });
    }
    // A counter that went back counted from zero again: the energy between
    // the last reading before and the first after is not in it.
    let reset: Vec<String> = gpus
        .iter()
        .filter(|g| g.counter && g.resets > 0)
        .map(|g| g.name.clone())
        .collect();
    if !reset.is_empty() {
        c.gaps.push(Gap {
            reason: GapReason::CounterReset,
            message: format!(
                "the energy counter of {} went back inside the window (a driver reload, a GPU reset, or an exporter that counts for itself restarted): the energy between the reading before and the one after is unknown",
                some(&reset)
            ),
        });
    }
    let window_s = seconds(
        telemetry
            .end_unix_ms
            .saturating_sub(telemetry.start_unix_ms),
    );
    // Every attributed GPU's exporter refreshed at least twice inside the
    // window, seen so (its energy counter moved), and the window spans
    // MIN_WINDOW_PERIODS of its refresh period.
    let stale: Vec<&GpuSpan> = gpus
        .iter()
        .filter(|g| {
            g.refreshes.is_some_and(|n| n < MIN_REFRESHES)
                || g.update_period_s
                    .is_some_and(|p| p * MIN_WINDOW_PERIODS > window_s)
        })
        .collect();
    if !stale.is_empty() {
        let names: Vec<String> = stale.iter().map(|g| g.name.clone()).collect();
        let seen = stale
            .iter()
            .filter_map(|g| g.refreshes)
            .min()
            .map(|n| format!("refreshed {n} time(s) inside it, "))
            .unwrap_or_default();
        let period = stale
            .iter()
            .filter_map(|g| g.update_period_s)
            .reduce(f64::max)
            .map(|p| format!("every {p:.1} s"))
            .unwrap_or_else(|| "at an unknown period".into());
        c.gaps.push(Gap {
            reason: GapReason::StaleExporter,
            message: format!(
                "the exporter of {} {seen}refreshing {period}: a {window_s:.1} s window needs to span at least {MIN_WINDOW_PERIODS} refresh periods (and {MIN_REFRESHES} refreshes seen), or the boundary readings, each up to a refresh old, may be off by more than a tenth of the step's energy",
                some(&names),
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Symptom of issue 33: a telemetry window that ran past the client's
    /// was flagged only after a restart, and an exporter refreshing every
    /// 30 s made a 45 s step `Complete`. Now both are gaps.
    #[test]
    fn an_overshooting_window_and_an_exporter_seen_to_refresh_once_are_gaps() {
        let gpus = [gpu("GPU-a")];
        // Closed 150 ms after a 45 s step: within the allowance.
        let c = coverage(w(1_000, 46_150), Some(w(1_000, 46_000)), false, &gpus);
        assert!(c.complete, "{:?}", c.gaps);
        // Closed 2 s after it (the closing scrape waited behind something).
        let c = coverage(w(1_000, 48_000), Some(w(1_000, 46_000)), false, &gpus);
        assert_eq!(
            c.gaps.iter().map(|g| g.reason).collect::<Vec<_>>(),
            [GapReason::Overshoot]
        );
        assert!(
            c.gaps[0].message.contains("closed 2.00 s after it ended"),
            "{}",
            c.gaps[0].message
        );
        // Opened early, as well.
        let c = coverage(w(0, 46_000), Some(w(1_000, 46_000)), false, &gpus);
        assert_eq!(c.gaps[0].reason, GapReason::Overshoot);
        // dcgm-exporter's default 30 s refresh in a 45 s step: stale, by its
        // period and by the one refresh seen inside the window.
        let slow = GpuSpan {
            update_period_s: Some(30.0),
            refreshes: Some(1),
            ..gpu("GPU-a")
        };
        let c = coverage(
            w(1_000, 46_000),
            Some(w(1_000, 46_000)),
            false,
            std::slice::from_ref(&slow),
        );
        assert!(!c.complete);
        assert_eq!(c.gaps[0].reason, GapReason::StaleExporter);
        assert!(
            c.gaps[0].message.contains("refreshed 1 time(s)"),
            "{}",
            c.gaps[0].message
        );
        // Its period unknown, seen to refresh once: stale all the same.
        let once = GpuSpan {
            update_period_s: None,
            ..slow.clone()
        };
        assert!(!coverage(w(1_000, 46_000), Some(w(1_000, 46_000)), false, &[once]).complete);
        // A 90 s step with the same exporter, seen refreshing three times:
        // each boundary reading may be 30 s old — a third of the step.
        let three = GpuSpan {
            refreshes: Some(3),
            ..slow.clone()
        };
        let c = coverage(w(1_000, 91_000), Some(w(1_000, 91_000)), false, &[three]);
        assert_eq!(c.gaps[0].reason, GapReason::StaleExporter);
        // A 300 s step, ten periods: complete.
        let ten = GpuSpan {
            refreshes: Some(10),
            ..slow
        };
        assert!(coverage(w(1_000, 301_000), Some(w(1_000, 301_000)), false, &[ten]).complete);
        // dcgm-exporter at -c 1000: a 5 s step is stale, a 10 s one complete.
        let fast = GpuSpan {
            update_period_s: Some(1.0),
            refreshes: Some(5),
            ..gpu("GPU-a")
        };
        assert!(
            !coverage(
                w(1_000, 6_000),
                Some(w(1_000, 6_000)),
                false,
                std::slice::from_ref(&fast)
            )
            .complete
        );
        assert!(coverage(w(1_000, 11_000), Some(w(1_000, 11_000)), false, &[fast]).complete);
    }

    fn w(start: u64, end: u64) -> Window {
        Window {
            start_unix_ms: start,
            end_unix_ms: end,
        }
    }

    fn gpu(name: &str) -> GpuSpan {
        GpuSpan {
            name: name.into(),
            has_energy: true,
            spans_window: true,
            counter: true,
            update_period_s: Some(1.0),
            refreshes: Some(10),
            resets: 0,
        }
    }

    /// An energy counter that went back inside the window (a GPU reset, a
    /// driver reload) misses the energy between the readings around it:
    /// withheld, naming the GPU. A power-integrated GPU has no counter to
    /// reset.
    #[test]
    fn an_energy_counter_that_went_back_withholds_the_energy() {
        let reset = GpuSpan {
            resets: 1,
            ..gpu("GPU-r")
        };
        let gpus = [gpu("GPU-a"), reset.clone()];
        let c = coverage(w(T0, T0 + 30_000), Some(w(T0, T0 + 30_000)), false, &gpus);
        assert!(!c.complete);
        assert_eq!(
            c.gaps.iter().map(|g| g.reason).collect::<Vec<_>>(),
            [GapReason::CounterReset]
        );
        assert!(c.gaps[0].message.contains("GPU-r"), "{}", c.gaps[0].message);
        let power = GpuSpan {
            counter: false,
            refreshes: None,
            ..reset
        };
        let c = coverage(
            w(T0, T0 + 30_000),
            Some(w(T0, T0 + 30_000)),
            false,
            &[power],
        );
        assert!(c.complete, "{:?}", c.gaps);
    }

    #[test]
    fn a_restart_gap_keeps_counter_energy_and_withholds_what_misses_it() {
        let whole = || coverage(w(T0, T0 + 30_000), Some(w(T0, T0 + 30_000)), false, &[]);
        let gpus = [gpu("GPU-a"), gpu("GPU-b")];
        let base = coverage(w(T0, T0 + 30_000), Some(w(T0, T0 + 30_000)), false, &gpus);
        assert!(base.complete);
        // Counters span a 4 s gap: exact, published, and the gap is stated.
        let c = base.clone().with_restart_gap(4.0, 0.02, &gpus);
        assert!(c.complete, "{c:?}");
        assert_eq!(c.restart_gap_s, Some(4.0));
        // Nothing happened: nothing changes.
        assert_eq!(base.clone().with_restart_gap(0.0, 0.0, &gpus), base);
        // A GPU whose energy is integrated from power samples misses the gap.
        let mut power = gpu("GPU-p");
        power.counter = false;
        let gpus = [gpu("GPU-a"), power];
        let base = coverage(w(T0, T0 + 30_000), Some(w(T0, T0 + 30_000)), false, &gpus);
        let c = base.with_restart_gap(4.0, 0.0, &gpus);
        assert!(!c.complete);
        assert_eq!((c.gpus, c.gpus_with_energy), (2, 1));
        assert_eq!(c.gaps[0].reason, GapReason::Restarted);
        assert!(
            c.gaps[0].message.contains("GPU-p") && c.gaps[0].message.contains("4.0 s"),
            "{:?}",
            c.gaps
        );
        // The step ended during the gap: the closing reading counts time after it.
        let gpus = [gpu("GPU-a")];
        let c = coverage(w(T0, T0 + 33_000), Some(w(T0, T0 + 30_000)), false, &gpus)
            .with_restart_gap(5.0, 3.0, &gpus);
        assert!(!c.complete);
        assert!(c.gaps[0].message.contains("3.0 s after"), "{:?}", c.gaps);
        assert!(!whole().complete, "no GPUs: still incomplete");
    }

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn a_window_opened_just_after_the_step_began_is_complete() {
        // 30 s step; the opening scrape followed its start by 60 ms.
        let c = coverage(
            w(T0 + 60, T0 + 30_080),
            Some(w(T0, T0 + 30_000)),
            false,
            &[gpu("GPU-a"), gpu("GPU-b")],
        );
        assert!(c.complete, "{c:?}");
        assert_eq!((c.gpus, c.gpus_with_energy), (2, 2));
        assert_eq!(c.client_window_s, 30.0);
        assert!((c.fraction - 0.998).abs() < 1e-9, "{}", c.fraction);
    }

    #[test]
    fn a_restart_mid_step_is_a_gap_named_as_such() {
        // The new controller opened its window 8 s into a 30 s step.
        let c = coverage(
            w(T0 + 8_000, T0 + 30_050),
            Some(w(T0, T0 + 30_000)),
            true,
            &[gpu("GPU-a")],
        );
        assert!(!c.complete);
        assert_eq!(c.gaps.len(), 1);
        assert_eq!(c.gaps[0].reason, GapReason::Restarted);
        let m = &c.gaps[0].message;
        assert!(
            m.contains("73.3 %") && m.contains("8.00 s after") && m.contains("restart"),
            "{m}"
        );
        // The same late opening without a restart is a plain gap.
        let c = coverage(
            w(T0 + 8_000, T0 + 30_050),
            Some(w(T0, T0 + 30_000)),
            false,
            &[gpu("GPU-a")],
        );
        assert_eq!(c.gaps[0].reason, GapReason::Gap);
        // A window that closed early is a gap too.
        let c = coverage(
            w(T0, T0 + 20_000),
            Some(w(T0, T0 + 30_000)),
            false,
            &[gpu("GPU-a")],
        );
        assert_eq!(c.gaps[0].reason, GapReason::Gap);
        assert!(
            c.gaps[0].message.contains("closed 10.00 s before"),
            "{:?}",
            c.gaps
        );
    }

    #[test]
    fn gpus_without_energy_over_the_whole_window_are_partial() {
        let mut dead = gpu("GPU-dead");
        dead.spans_window = false;
        let mut none = gpu("GPU-none");
        none.has_energy = false;
        none.spans_window = false;
        let c = coverage(
            w(T0, T0 + 10_000),
            Some(w(T0, T0 + 10_000)),
            false,
            &[gpu("GPU-a"), dead, none],
        );
        assert!(!c.complete);
        assert_eq!((c.gpus, c.gpus_with_energy), (3, 1));
        assert_eq!(c.gaps[0].reason, GapReason::PartialGpus);
        let m = &c.gaps[0].message;
        assert!(
            m.contains("1 of 3 GPUs") && m.contains("GPU-none") && m.contains("GPU-dead"),
            "{m}"
        );
    }

    #[test]
    fn an_exporter_slower_than_the_window_is_stale() {
        let mut slow = gpu("GPU-slow");
        slow.update_period_s = Some(30.0);
        let c = coverage(w(T0, T0 + 10_000), Some(w(T0, T0 + 10_000)), false, &[slow]);
        assert_eq!(c.gaps.len(), 1);
        assert_eq!(c.gaps[0].reason, GapReason::StaleExporter);
        assert_eq!(c.longest_update_period_s, Some(30.0));
        assert!(c.gaps[0].message.contains("30.0 s"), "{:?}", c.gaps);
    }

    #[test]
    fn without_gpus_or_client_results_nothing_is_complete() {
        let c = coverage(w(T0, T0 + 10_000), Some(w(T0, T0 + 10_000)), false, &[]);
        assert_eq!(c.gaps[0].reason, GapReason::NoGpus);
        let c = coverage(w(T0, T0 + 10_000), None, false, &[gpu("GPU-a")]);
        assert_eq!(c.gaps[0].reason, GapReason::NoClientResults);
        assert!(!c.complete);
        // A client window that was never stamped (an older worker) is unknown, not whole.
        let c = coverage(w(T0, T0 + 10_000), Some(w(0, 0)), false, &[gpu("GPU-a")]);
        assert_eq!(c.gaps[0].reason, GapReason::NoClientResults);
    }

    #[test]
    fn refused_gpus_make_a_step_incomplete_and_say_why() {
        let whole = coverage(
            w(T0, T0 + 10_000),
            Some(w(T0, T0 + 10_000)),
            false,
            &[gpu("GPU-a")],
        );
        assert!(whole.complete);
        assert_eq!(whole.clone().with_refused_gpus(0, 4096), whole);
        let refused = whole.with_refused_gpus(6, 4096);
        assert!(!refused.complete);
        assert_eq!(refused.gaps[0].reason, GapReason::TooManyGpus);
        assert!(
            refused.gaps[0].message.contains("4096"),
            "{:?}",
            refused.gaps
        );
    }
}
