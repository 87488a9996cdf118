//! The GPUs measured idle before the first step (`telemetry.idleBaseline`):
//! the exporters settle past the pre-flight's load, then a window measured
//! exactly as a step's.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use super::super::collect::{self, StepTelemetry};
use super::Driver;

/// How many refreshes each attributed GPU's exporter must show after the
/// pre-flight before its idle window opens. A reading served when the
/// window would open was published before it, perhaps while the pre-flight's
/// requests ran; the first refresh after may still average over some of
/// them (a simulator's, or a driver's power average); the second covers only
/// time after the pre-flight.
const SETTLE_REFRESHES: u32 = 2;

/// The longest the idle baseline waits for those refreshes: two of
/// dcgm-exporter's default 30 s refreshes and a scrape's margin. A GPU whose
/// exporter does not refresh twice by then gets no idle power, with a note.
pub const IDLE_SETTLE_MAX: Duration = Duration::from_secs(75);

/// Sleeps until `until`; `false` when the run was asked to end meanwhile
/// (noted: a run asked to end while its GPUs were measured idle has no idle
/// baseline).
async fn idle_pause(d: &mut Driver, until: Instant) -> bool {
    let mut stop = d.stop_asked.clone();
    tokio::select! {
        _ = tokio::time::sleep_until(until) => true,
        _ = stop.wait_for(Option::is_some) => {
            d.note("the run was asked to end while its GPUs were measured idle: no idle baseline".into());
            false
        }
    }
}

/// The GPUs the steps will count, as they are attributed, from what `t`
/// holds.
fn idle_gpus(d: &Driver, t: &StepTelemetry) -> Vec<crate::telemetry::report::GpuResult> {
    let all = t.gpu.gpus.iter().map(|g| g.result()).collect();
    collect::attribute(all, d.state.scope, &d.state.pods).0
}

/// Scrapes the GPU exporters until every attributed GPU's exporter has
/// refreshed [`SETTLE_REFRESHES`] times, at most [`IDLE_SETTLE_MAX`]: the
/// keys of the GPUs that had not by then, or `None` when the run was asked to
/// end.
async fn settle(d: &mut Driver) -> Option<BTreeSet<String>> {
    let interval: Duration = d.spec.telemetry.interval.into();
    let deadline = Instant::now() + IDLE_SETTLE_MAX;
    let mut seen = None;
    d.scrape_idle(&mut seen, true).await;
    loop {
        let waiting = seen
            .as_ref()
            .map(|t| unsettled(&idle_gpus(d, t), t))
            .unwrap_or_default();
        if waiting.is_empty() || Instant::now() >= deadline {
            return Some(waiting);
        }
        if !idle_pause(d, (Instant::now() + interval).min(deadline)).await {
            return None;
        }
        d.scrape_idle(&mut seen, false).await;
    }
}

/// The keys of `gpus` whose exporter `t` has not yet seen refresh
/// [`SETTLE_REFRESHES`] times.
fn unsettled(gpus: &[crate::telemetry::report::GpuResult], t: &StepTelemetry) -> BTreeSet<String> {
    gpus.iter()
        .filter(|g| {
            t.gpu
                .gpus
                .iter()
                .find(|s| s.key == g.key)
                .is_none_or(|s| s.refreshes() < SETTLE_REFRESHES)
        })
        .map(|g| g.key.clone())
        .collect()
}

/// Measures the GPUs idle for `span` before the first step
/// (`telemetry.idleBaseline`). First the exporters settle: scrapes until
/// each attributed GPU's exporter has refreshed twice since the pre-flight
/// (so no reading taken carries the pre-flight's load). Then a scrape opens
/// the window, one every `telemetry.interval` follows and one closes it,
/// exactly as a step's; each GPU's idle power is the mean of its power
/// readings over the window (see [`IdleBaseline::of`]). A GPU whose exporter
/// did not settle gets none, and says why. A run asked to end meanwhile has
/// no idle baseline.
///
/// [`IdleBaseline::of`]: crate::telemetry::efficiency::IdleBaseline::of
pub(super) async fn idle_baseline(d: &mut Driver, span: Duration) {
    let interval: Duration = d.spec.telemetry.interval.into();
    let settling = Instant::now();
    let Some(late) = settle(d).await else { return };
    let settled_s = settling.elapsed().as_secs_f64();
    let mut idle = None;
    d.scrape_idle(&mut idle, true).await;
    let end = Instant::now() + span;
    loop {
        if !idle_pause(d, (Instant::now() + interval).min(end)).await {
            return;
        }
        d.scrape_idle(&mut idle, false).await;
        if Instant::now() >= end {
            break;
        }
    }
    let Some(t) = idle else { return };
    let (gpus, unsettled): (Vec<_>, Vec<_>) = idle_gpus(d, &t)
        .into_iter()
        .partition(|g| !late.contains(&g.key));
    let seconds = t.window.end_unix_ms.saturating_sub(t.window.start_unix_ms) as f64 / 1e3;
    let (baseline, notes) = crate::telemetry::efficiency::IdleBaseline::of(&gpus, seconds);
    info!(job = %d.setup.job, gpus = baseline.power_w.len(), seconds, settled_s, "GPUs measured idle");
    d.note(format!(
        "idle baseline: {} GPU(s) measured idle for {seconds:.1} s just before the first step, after {settled_s:.1} s for their exporters to refresh twice since the pre-flight",
        baseline.power_w.len()
    ));
    for note in notes {
        d.note(format!("idle baseline: {note}"));
    }
    for g in unsettled {
        let name = g.identity.uuid.as_deref().unwrap_or(&g.key);
        d.note(format!(
            "idle baseline: GPU {name} has no idle power: its exporter did not refresh twice within {} s after the pre-flight, so none of its readings can be told apart from the pre-flight's load",
            IDLE_SETTLE_MAX.as_secs()
        ));
    }
    d.state.idle = Some(baseline);
    d.state.changed(None);
    d.publish();
}
