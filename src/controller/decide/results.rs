//! What a measurement session adds to a run's status: progress, endpoints and
//! the telemetry condition while it runs; the summary, per-step results and the
//! SLO condition when its results are in. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::super::conditions::{self as cond, MEASUREMENT_VALID, SLO_MET, TELEMETRY, WARNINGS};
use crate::api::{self, BenchmarkRun, BenchmarkRunStatus, Phase};
use crate::measure::{SessionView, Stage};
use crate::results::{Gap, GapReason, StepDetail};

/// Progress, endpoints and the telemetry condition from a running session.
pub(super) fn follow(
    status: &mut BenchmarkRunStatus,
    v: &SessionView,
    generation: Option<i64>,
    t: &Time,
) {
    if v.progress.is_some() {
        status.progress = v.progress.clone();
    }
    if v.endpoints.is_some() {
        status.endpoints = v.endpoints.clone();
    }
    if v.stage == Stage::Collecting {
        status.phase = Some(Phase::Collecting);
    }
    telemetry_condition(status, v, generation, t);
}

/// The telemetry condition from a session's discovery (none before its
/// first): set whenever the run has a session, ending or not, so a run that
/// ends at once still says what was refused.
pub(super) fn telemetry_condition(
    status: &mut BenchmarkRunStatus,
    v: &SessionView,
    generation: Option<i64>,
    t: &Time,
) {
    // Notes say why a kind found nothing, or what discovery could not look at
    // (a namespaced install's RBAC): they go with whatever was found.
    let with_note = |text: String| match &v.discovery_note {
        Some(note) => format!("{text}; {note}"),
        None => text,
    };
    let found = v
        .endpoints
        .as_ref()
        .filter(|e| e.gpu.discovered + e.server.discovered > 0);
    let (ok, reason, message) = match (found, &v.discovery_note) {
        _ if v.refused.is_some() => (
            false,
            "NotPermitted",
            with_note(v.refused.clone().unwrap_or_default()),
        ),
        (Some(e), _) => (
            true,
            "EndpointsFound",
            with_note(format!(
                "{} GPU exporter and {} server endpoints ({} and {} reachable)",
                e.gpu.discovered, e.server.discovered, e.gpu.reachable, e.server.reachable
            )),
        ),
        (None, Some(note)) => (false, "NothingFound", note.clone()),
        (None, None) => match &v.endpoints {
            Some(_) => (true, "EndpointsFound", "no endpoints to scrape".to_string()),
            None => return,
        },
    };
    cond::set(
        &mut status.conditions,
        TELEMETRY,
        ok,
        reason,
        message,
        generation,
        t,
    );
}

/// The summary, per-step results and the SLO condition from the step details.
pub(super) fn apply_results(
    status: &mut BenchmarkRunStatus,
    run: &BenchmarkRun,
    steps: &[StepDetail],
    generation: Option<i64>,
    t: &Time,
) {
    let mut steps = steps.to_vec();
    crate::results::mark_run(
        &mut steps,
        &status.shared_with,
        run.spec.load.max_error_rate(),
    );
    let steps = steps.as_slice();
    let Some(last) = steps.last() else {
        return;
    };
    // With trials: how many steps one trial has.
    let sweep = run
        .spec
        .repeat
        .as_ref()
        .map(|_| super::super::build::sweep(&run.spec.load).len().max(1));
    let judged: Vec<api::StepResult> = steps
        .iter()
        .map(|s| {
            let summary = s.summary();
            let missed = slo_misses(run, &summary);
            let trial = sweep.map(|n| s.index as usize / n);
            let opens_trial = sweep.is_some_and(|n| (s.index as usize).is_multiple_of(n));
            api::StepResult {
                index: s.index as i32,
                trial: trial.map(|r| r as i32),
                start_temperature_c: opens_trial.then(|| s.start_temperature_c()).flatten(),
                concurrency: s
                    .client
                    .as_ref()
                    .and_then(|c| c.concurrency)
                    .map(|c| c as i32),
                request_rate: s.client.as_ref().and_then(|c| c.rate),
                summary,
                slo_met: (!run.spec.slo.is_empty()).then_some(missed.is_empty()),
                slo_missed: missed,
            }
        })
        .collect();
    if !run.spec.slo.is_empty() {
        let (met, reason, message) = slo_verdict(run.spec.slo.len(), &judged);
        cond::set(
            &mut status.conditions,
            SLO_MET,
            met,
            reason,
            message,
            generation,
            t,
        );
    }
    let mut trial_warnings = Vec::new();
    let summary = match sweep {
        Some(n) => {
            // Only whole trials are averaged: one cut short by a stop
            // measured less than the others.
            let (whole, cut) = crate::results::trials::whole_trials(steps, n);
            let counted: Vec<api::StepResult> = judged
                .iter()
                .filter(|s| whole.contains(&(s.index as usize / n)))
                .cloned()
                .collect();
            let (trials, warned) = crate::results::trials::trials(&counted, n);
            trial_warnings = warned;
            trial_warnings.extend(cut.iter().map(|k| {
                format!(
                    "trial {} did not run whole (a step was cut short by a stop, or has no client results): it is left out of the trials' means and spreads",
                    k + 1
                )
            }));
            status.trials = trials;
            // The means of the sweep's last step over every whole trial.
            let last_place: Vec<&api::Summary> = counted
                .iter()
                .filter(|s| s.index as usize % n == n - 1)
                .map(|s| &s.summary)
                .collect();
            crate::results::trials::mean_summary(&last_place)
        }
        None => last.summary(),
    };
    if steps.len() > 1 {
        status.steps = judged;
    }
    let (valid, reason, message) = if status.shared_with.is_empty() {
        measurement_valid(steps)
    } else {
        let message = crate::results::coverage::shared_message(&status.shared_with);
        (false, GapReason::SharedGpus.as_str(), message)
    };
    cond::set(
        &mut status.conditions,
        MEASUREMENT_VALID,
        valid,
        reason,
        message,
        generation,
        t,
    );
    let mut warned = warnings(steps);
    warned.extend(trial_warnings);
    let (reason, message) = match warned.len() {
        0 => ("None", "no health or measurement warnings".to_string()),
        n => {
            let mut m = format!("{n} warning{}: ", if n == 1 { "" } else { "s" });
            m.push_str(
                &warned
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            if n > 3 {
                m.push_str(&format!("; and {} more in the results", n - 3));
            }
            ("Found", m)
        }
    };
    cond::set(
        &mut status.conditions,
        WARNINGS,
        !warned.is_empty(),
        reason,
        message,
        generation,
        t,
    );
    status.summary = Some(summary);
}

/// Every health and measurement warning of the steps, each once, naming the
/// GPU (and the step, for sweeps): the GPUs' own (temperature, memory, XID,
/// throttling, low utilisation, power at the limit), exporters slower than
/// they are scraped, energy that covers only some of the GPUs, a load
/// generator that was itself the bottleneck, failed requests (how many, of
/// which kinds, the first message), a server that closes its connections,
/// and telemetry refused at its bounds.
pub fn warnings(steps: &[StepDetail]) -> Vec<String> {
    let several = steps.len() > 1;
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    let mut said_off = None;
    for step in steps {
        let at = if several {
            format!("step {}: ", step.index)
        } else {
            String::new()
        };
        for g in &step.gpus {
            let name = g.identity.uuid.clone().unwrap_or_else(|| g.key.clone());
            for w in &g.warnings {
                push(format!("{at}{name}: {w}"));
            }
            if g.stale {
                push(format!(
                    "{at}{name}: its exporter refreshes every {:.1} s, slower than it is scraped",
                    g.update_period_s.unwrap_or(0.0)
                ));
            }
        }
        if let Some(c) = &step.client {
            if let Some(m) = crate::results::coverage::failed_requests(
                c.requests,
                &c.errors,
                c.error_samples.first().map(String::as_str),
            ) {
                push(format!("{at}{m}"));
            }
            if c.stopped_early > 0 {
                push(format!(
                    "{at}{} of {} successful requests ended before their max_tokens: the server stopped them (an end-of-sequence token), so outputs are shorter than asked; ask ignore_eos in load.extraInputs where the server honours it",
                    c.stopped_early, c.successes
                ));
            }
        }
        if let Some(load) = step
            .client
            .as_ref()
            .filter(|c| c.client_saturated)
            .and_then(|c| c.client_load.as_ref())
        {
            push(format!(
                "{at}the load generator was the bottleneck ({}): its own delay is in the latencies; add workers or CPU",
                load.saturated_because.join("; ")
            ));
        }
        if let Some(c) = &step.coverage
            && c.gpus > 0
            && c.gpus_with_energy < c.gpus
        {
            push(format!(
                "{at}energy over the whole step from only ({} of {} GPUs): efficiency left out",
                c.gpus_with_energy, c.gpus
            ));
        }
        // Said for the step where it happened: later steps open with the
        // same let go, which is not news.
        let off = step.refused.and_then(|r| r.over_budget);
        if let Some(o) = off
            && off != said_off
        {
            push(format!("{at}{}", o.reason()));
        }
        said_off = off.or(said_off);
        if let Some(r) = step.refused.filter(|r| {
            r.gpu_readings_of_gpus_past_bound
                + r.gpu_readings_of_fields_past_bound
                + r.server_samples
                > 0
        }) {
            push(format!(
                "{at}telemetry set aside at its bounds: {} readings of GPUs past the most a step keeps, {} of GPU fields past the most a GPU keeps, {} server samples of series past the bounds (docs/telemetry.md, \"Bounds\")",
                r.gpu_readings_of_gpus_past_bound,
                r.gpu_readings_of_fields_past_bound,
                r.server_samples
            ));
        }
    }
    // The server's way with connections, once for the run.
    let clients = || steps.iter().filter_map(|s| s.client.as_ref());
    if clients().any(|c| c.new_connection_per_request) {
        let retried: u64 = clients().map(|c| c.retried).sum();
        out.push(format!(
            "the server closes the connections it answers on, unannounced: every request took a new connection (its connect time is in its TTFT){}",
            match retried {
                0 => String::new(),
                n => format!(
                    "; {n} requests were sent again because it had closed or reset the connection before reading them"
                ),
            }
        ));
    }
    out
}

/// Whether every step's client figures rest on every worker's result and its
/// energy covers its client window on every attributed GPU; if not, the first
/// reason and what is missing, step by step.
pub fn measurement_valid(steps: &[StepDetail]) -> (bool, &'static str, String) {
    const SHOWN: usize = 3;
    // Missing workers come first: they take the client figures out too.
    let several = steps.len() > 1;
    let partial: Vec<String> = steps
        .iter()
        .filter_map(|s| {
            let gap = s.client_coverage.and_then(|w| w.gap())?;
            Some(if several {
                format!("step {}: {}", s.index, gap.message)
            } else {
                gap.message
            })
        })
        .collect();
    if !partial.is_empty() {
        let mut message = partial
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if partial.len() > SHOWN {
            message.push_str(&format!(" (and {} more)", partial.len() - SHOWN));
        }
        return (false, GapReason::MissingWorkers.as_str(), message);
    }
    let covered: Vec<_> = steps
        .iter()
        .filter_map(|s| s.coverage.as_ref().map(|c| (s.index, c)))
        .collect();
    if covered.is_empty() {
        return (
            false,
            "NoTelemetry",
            "no GPU telemetry covers the measured phase: energy and efficiency figures are left empty"
                .into(),
        );
    }
    let mut gaps: Vec<(u32, &Gap)> = covered
        .iter()
        .flat_map(|(i, c)| c.gaps.iter().map(move |g| (*i, g)))
        .collect();
    // A load that was not the one asked for is said first, whichever step
    // it was in: it takes the efficiency out whatever the energy covers.
    gaps.sort_by_key(|(_, g)| g.reason != GapReason::FailedRequests);
    let Some((_, first)) = gaps.first() else {
        let gpus = covered.iter().map(|(_, c)| c.gpus).max().unwrap_or(0);
        let restarts: Vec<String> = covered
            .iter()
            .filter_map(|(i, c)| c.restart_gap_s.map(|g| (i, g)))
            .map(|(i, g)| {
                let at = if several {
                    format!(" in step {i}")
                } else {
                    String::new()
                };
                format!("{g:.1} s without scrapes{at}")
            })
            .collect();
        if !restarts.is_empty() {
            // Exact all the same: the energy counters span the gap.
            return (
                true,
                "Restarted",
                format!(
                    "a new controller took the run over from its checkpoint ({}); the energy counters of all {gpus} attributed GPUs span the gap, so energy and efficiency are exact, while gauge statistics miss its samples",
                    restarts.join(", ")
                ),
            );
        }
        let least = covered
            .iter()
            .map(|(_, c)| c.fraction)
            .fold(1.0_f64, f64::min);
        return (
            true,
            "Complete",
            format!(
                "the GPU energy covers at least {:.1} % of every step's client window, on all {gpus} attributed GPUs",
                least * 100.0
            ),
        );
    };
    let mut message = gaps
        .iter()
        .take(SHOWN)
        .map(|(i, g)| {
            if several {
                format!("step {i}: {}", g.message)
            } else {
                g.message.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    if gaps.len() > SHOWN {
        message.push_str(&format!(" (and {} more)", gaps.len() - SHOWN));
    }
    message.push_str(
        if gaps
            .iter()
            .all(|(_, g)| g.reason == GapReason::FailedRequests)
        {
            "; efficiency figures are left out (the energy stays)"
        } else {
            "; energy and efficiency figures are left out of the status"
        },
    );
    (false, first.reason.as_str(), message)
}

/// The `SLOMet` condition over every step: met when every step met every one
/// of the `objectives`; for sweeps, the highest load that did.
pub fn slo_verdict(objectives: usize, steps: &[api::StepResult]) -> (bool, &'static str, String) {
    let missed: Vec<&api::StepResult> = steps.iter().filter(|s| !s.slo_missed.is_empty()).collect();
    let several = steps.len() > 1;
    if missed.is_empty() {
        let on = if several { " on every step" } else { "" };
        return (
            true,
            "AllMet",
            format!("all {objectives} objectives met{on}"),
        );
    }
    if !several {
        return (false, "Missed", missed[0].slo_missed.join("; "));
    }
    let mut message = missed
        .iter()
        .map(|s| format!("{}: {}", s.load(), s.slo_missed.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    // Steps run in order of increasing load.
    match steps.iter().rev().find(|s| s.slo_met == Some(true)) {
        Some(best) => message.push_str(&format!(
            "; the highest load that met every objective: {}",
            best.load()
        )),
        None => message.push_str("; no step met every objective"),
    }
    (false, "Missed", message)
}

/// Each objective the summary misses, said plainly; a metric not measured misses.
pub fn slo_misses(run: &BenchmarkRun, s: &api::Summary) -> Vec<String> {
    let mut out = Vec::new();
    for slo in &run.spec.slo {
        let (name, value) = (slo.metric.name(), slo.metric.of(s));
        match value {
            None => out.push(format!("{name} was not measured")),
            Some(v) => {
                if let Some(max) = slo.max.filter(|m| v > *m) {
                    out.push(format!("{name} {v} > {max}"));
                }
                if let Some(min) = slo.min.filter(|m| v < *m) {
                    out.push(format!("{name} {v} < {min}"));
                }
            }
        }
    }
    out
}
