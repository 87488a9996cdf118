//! One function per phase of a run's life, each read as observation →
//! action: [`refused`] and [`pending`] (what refuses a launch, what the
//! target decides), [`discovering`] (the target
//! not found yet), [`queued`] (the target held by runs ahead), [`launch`],
//! [`running`], [`collecting`] (the Job complete, its results awaited) and
//! the ends — [`ends_early`] (cancel, preemption, timeout), [`job_failed`],
//! [`job_deleted`] and [`ended`] (the TTL of a finished run).
//!
//! The measurement inside a run is a state machine of its own
//! (`measure::follow`); what it has reached arrives here as the
//! [`SessionView`](crate::measure::SessionView) in [`Observed::session`].

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::results::{apply_results, follow, telemetry_condition};
use super::{
    Action, COLLECT_GRACE, Decision, Observed, PROGRESS, QUEUE_POLL, RESYNC, START_GRACE,
    STOP_GRACE, STOP_POLL, TARGET_RETRY, Target, all_failed, deadline, overdue, started_before,
    until,
};
use crate::api::{self, BenchmarkRun, Phase};
use crate::controller::conditions::{
    self as cond, ACCEPTED, DISCOVERED, FAILED, QUEUED, RUNNING, SUCCEEDED,
};
use crate::controller::queue::{self, Peer, Place};
use crate::measure::Stage;

/// What one reconcile looks at: the run, what the cluster holds, the clock.
pub(super) struct Look<'a> {
    pub run: &'a BenchmarkRun,
    pub observed: &'a Observed,
    pub now: Timestamp,
    pub generation: Option<i64>,
    pub t: Time,
}

impl Look<'_> {
    /// Ends the run in `phase`, for `reason`.
    fn finish(&self, d: &mut Decision, phase: Phase, reason: &str, message: String) {
        d.status.phase = Some(phase);
        d.status.completion_time.get_or_insert(self.t.clone());
        let (generation, t) = (self.generation, &self.t);
        let conditions = &mut d.status.conditions;
        if cond::get(conditions, RUNNING).is_some() {
            cond::set(
                conditions,
                RUNNING,
                false,
                reason,
                message.clone(),
                generation,
                t,
            );
        }
        let ok = phase == Phase::Succeeded;
        cond::set(
            conditions,
            SUCCEEDED,
            ok,
            reason,
            message.clone(),
            generation,
            t,
        );
        let failed = phase == Phase::Failed;
        cond::set(conditions, FAILED, failed, reason, message, generation, t);
        d.requeue_after = None;
    }

    /// Ends the run in `phase` and writes its results.
    fn end(&self, d: &mut Decision, phase: Phase, reason: &str, message: String) {
        self.finish(d, phase, reason, message);
        d.actions.push(Action::WriteResults);
    }

    fn condition(&self, d: &mut Decision, kind: &str, ok: bool, reason: &str, message: String) {
        cond::set(
            &mut d.status.conditions,
            kind,
            ok,
            reason,
            message,
            self.generation,
            &self.t,
        );
    }
}

/// Any phase: the spec is checked first. Returns whether it is valid; an
/// invalid one ends the run `Failed` (`InvalidSpec`).
pub(super) fn accept(d: &mut Decision, look: &Look) -> bool {
    match api::validate(look.run) {
        Ok(()) => {
            let why = "the spec is valid".to_string();
            look.condition(d, ACCEPTED, true, "Valid", why);
            true
        }
        Err(e) => {
            look.condition(d, ACCEPTED, false, "InvalidSpec", e.to_string());
            look.finish(d, Phase::Failed, "InvalidSpec", e.to_string());
            false
        }
    }
}

/// Any phase with a Job: who loads the target beside the run (its energy
/// is theirs too), and what the session's discovery found or refused.
pub(super) fn beside(d: &mut Decision, look: &Look) {
    if look.observed.job.is_some() {
        let beside = queue::sharing(&Peer::of(look.run), &look.observed.peers);
        d.status.shared_with = queue::merge_shared(&d.status.shared_with, &beside);
    }
    if let Some(v) = &look.observed.session {
        telemetry_condition(&mut d.status, v, look.generation, &look.t);
    }
}

/// Any phase: a run cancelled, preempted by the target's owner or past its
/// timeout ends — after its running workers were asked to stop and handed
/// over what they measured (at most [`STOP_GRACE`]). Returns whether it
/// ends (or waits for the stop).
pub(super) fn ends_early(d: &mut Decision, look: &Look) -> bool {
    let (run, observed, now) = (look.run, look.observed, look.now);
    let job_active = observed
        .job
        .as_ref()
        .is_some_and(|j| super::finished(j).is_none());
    let timeout_at = deadline(run, &d.status);
    let timed_out = timeout_at.is_some_and(|dl| now >= dl);
    let stopping = observed
        .session
        .as_ref()
        .is_some_and(|v| v.stopping_for.is_some());
    let early = if run.spec.cancel {
        let why = "cancelled through spec.cancel".to_string();
        Some((Phase::Cancelled, "Cancelled", why))
    } else if (job_active || stopping && !timed_out)
        && queue::gives_way(&Peer::of(run), &observed.peers)
    {
        // While its Job runs, or once it was asked to stop for this (its
        // stopped workers may fail the Job): not a guest whose Job finished
        // on its own, nor one stopping for its timeout.
        Some((
            Phase::Failed,
            "Preempted",
            "a run of the namespace that owns this target arrived: a run from another namespace gives way to the owner's runs (what it measured is kept)".to_string(),
        ))
    } else if timed_out {
        let limit = run.spec.timeout.map(|t| t.to_string()).unwrap_or_default();
        let why = format!("the run passed its timeout of {limit}");
        Some((Phase::Failed, "Timeout", why))
    } else {
        None
    };
    let Some((end, reason, message)) = early else {
        if let Some(at) = timeout_at {
            d.requeue_after = Some(until(now, at).min(RESYNC));
        }
        return false;
    };
    if holds_for_stop(d, observed, job_active) {
        return true;
    }
    if job_active {
        d.actions.push(Action::SuspendJob);
    }
    keep_measured(d, look);
    look.end(d, end, reason, message);
    true
}

/// A run that ends early (cancel, timeout) whose workers run: they are asked
/// to stop, and the run waits (at most [`STOP_GRACE`]) until their results —
/// what they measured up to the stop — are in, then ends as it would have.
/// Returns whether it waits.
fn holds_for_stop(d: &mut Decision, observed: &Observed, job_active: bool) -> bool {
    let Some(v) = observed.session.as_ref() else {
        return false;
    };
    if !job_active || v.stage == Stage::Done {
        return false;
    }
    match v.stopping_for {
        None => d.actions.push(Action::StopMeasurement),
        Some(waited) if waited < STOP_GRACE => {}
        Some(_) => return false,
    }
    d.requeue_after = Some(STOP_POLL);
    true
}

/// A run that ends early (cancel, timeout, a failed or deleted Job): the
/// results the workers handed over (their measured part, under the usual
/// coverage rules) go into the status. Returns what was kept, in words.
fn keep_measured(d: &mut Decision, look: &Look) -> &'static str {
    const MISSING: &str = "the workers' results did not arrive; only the telemetry is kept";
    match look.observed.session.as_ref() {
        Some(v) if v.stage == Stage::Done => {
            apply_results(&mut d.status, look.run, &v.steps, look.generation, &look.t);
            if v.steps.iter().any(|s| s.client.is_some()) {
                "what the workers measured up to then is kept"
            } else {
                MISSING
            }
        }
        _ => MISSING,
    }
}

/// No Job yet: what refuses a launch — pods the installer does not allow,
/// a results ConfigMap or another object of the run's names that is not
/// the run's. Returns whether the run ended for it.
pub(super) fn refused(d: &mut Decision, look: &Look) -> bool {
    let observed = look.observed;
    if let Some(why) = &observed.pods_not_permitted {
        // Nothing is launched with pods the installer does not allow.
        look.finish(d, Phase::Failed, "NotPermitted", why.clone());
        return true;
    }
    if let Some(name) = &observed.foreign_results {
        // Results are created, never taken over: nothing is launched.
        let msg = format!(
            "a ConfigMap named {name} exists and does not belong to this run; it is left untouched: set spec.results.configMapName to a free name"
        );
        look.finish(d, Phase::Failed, "ResultsConflict", msg);
        return true;
    }
    if let Some(what) = &observed.foreign_object {
        // The run's objects are created or its own, never taken over.
        let msg = format!(
            "a {what} exists and does not belong to this run; it is left untouched and nothing is launched: delete it, or give the run another name"
        );
        look.finish(d, Phase::Failed, "NameConflict", msg);
        return true;
    }
    false
}

/// `Pending`, no Job yet and none refused: the target decides — not found
/// ([`discovering`]), held by runs ahead ([`queued`]) or free ([`launch`]).
pub(super) fn pending(d: &mut Decision, look: &Look, phase: Phase) {
    match &look.observed.target {
        Target::Held => {
            let recorded = d.status.target_endpoints.clone();
            // Free by now: looked at again with the target resolved.
            if !queued(d, look, &recorded) {
                d.requeue_after = Some(Duration::ZERO);
            }
        }
        Target::Resolved {
            urls,
            reaches,
            owned,
        } => {
            d.status.target_endpoints = queue::endpoints(reaches);
            d.status.owned_target_endpoints = queue::endpoints(owned);
            if !queued(d, look, reaches) {
                launch(d, look, phase, urls);
            }
        }
        Target::Unresolved(why) => discovering(d, look, why),
        Target::NotNeeded => {}
    }
}

/// `Discovering`: the target is not reachable yet; looked at again soon.
fn discovering(d: &mut Decision, look: &Look, why: &str) {
    d.status.phase = Some(Phase::Discovering);
    look.condition(d, DISCOVERED, false, "TargetNotReady", why.to_string());
    d.requeue_after = Some(TARGET_RETRY);
}

/// `Queued`: puts the run, sending to `endpoints`, in its place in the
/// queue for its target — behind the runs ahead of it (returns true), or
/// free to start beside none (or, allowed, beside the runs it then shares
/// with).
fn queued(d: &mut Decision, look: &Look, endpoints: &[String]) -> bool {
    let me = Peer::me(look.run, endpoints, &d.status.owned_target_endpoints);
    match queue::place_within(&me, &look.observed.peers, look.observed.max_active) {
        Place::Full { position, limit } => {
            let why = format!(
                "its target is free, but {limit} runs are measured at once already (the installer's limit, Helm value maxActiveMeasurements); place {position} among the runs that may start"
            );
            wait(d, look, position, "WaitingForCapacity", why);
            true
        }
        Place::Wait {
            waits_for,
            position,
        } => {
            let why = format!(
                "waits for {waits_for}, which loads the same target; place {position} in the queue (spec.concurrencyPolicy: Queue)"
            );
            wait(d, look, position, "WaitingForTarget", why);
            true
        }
        Place::Go { shared_with } => {
            d.status.shared_with = queue::merge_shared(&d.status.shared_with, &shared_with);
            if cond::get(&d.status.conditions, QUEUED).is_some() {
                let why = "the runs ahead of it (on the same target, or in the installer's limit of runs measured at once) have ended";
                look.condition(d, QUEUED, false, "TargetFree", why.to_string());
            }
            false
        }
    }
}

/// The run waits `Queued` at `position`, for the reason given.
fn wait(d: &mut Decision, look: &Look, position: usize, reason: &str, why: String) {
    d.status.phase = Some(Phase::Queued);
    d.status.queue_position = Some(position as i32);
    look.condition(d, QUEUED, true, reason, why);
    d.requeue_after = Some(QUEUE_POLL);
}

/// The target is found and free: the Job is created with its URLs, and the
/// run's clock starts.
fn launch(d: &mut Decision, look: &Look, phase: Phase, urls: &[String]) {
    // Under a limit of runs measured at once, a run that was still looking
    // its target up takes its place first (one round `Queued`): the runs
    // deciding beside it count it then, and no two start past the limit.
    if look.observed.max_active.is_some() && phase == Phase::Discovering {
        let why = "its target is found: it takes its place among the runs measured at once";
        wait(d, look, 1, "WaitingForCapacity", why.to_string());
        d.requeue_after = Some(Duration::ZERO);
        return;
    }
    d.actions.push(Action::CreateJob(urls.to_vec()));
    d.status.start_time.get_or_insert(look.t.clone());
    d.status.job_name = Some(crate::controller::names::job_name(look.run));
    d.status.phase = Some(Phase::Pending);
    let sending = urls
        .iter()
        .map(|u| crate::net::redact_url(u))
        .collect::<Vec<_>>()
        .join(", ");
    let routing = crate::results::Routing::of(&look.run.spec.target).describe();
    let why = format!("sending to {sending} ({routing})");
    look.condition(d, DISCOVERED, true, "TargetResolved", why);
    let why = "the load-generator Job was created".to_string();
    look.condition(d, RUNNING, false, "Starting", why);
    if let Some(deadline) = deadline(look.run, &d.status) {
        d.requeue_after = Some(until(look.now, deadline).min(RESYNC));
    }
}

/// `Running`: the Job runs. The measurement's fatal error, a worker that
/// failed before the shared start or workers stuck past [`START_GRACE`] end
/// the run; otherwise its progress is written.
pub(super) fn running(d: &mut Decision, look: &Look, job: &Job) {
    let session = look.observed.session.as_ref();
    if let Some(why) = session.and_then(|v| v.fatal.clone()) {
        d.actions.push(Action::SuspendJob);
        look.end(d, Phase::Failed, why.reason, why.message);
        return;
    }
    // A worker failed before the shared start (its index is not retried,
    // and the others would wait for a start that never comes): the run
    // fails with its reason now.
    let starting = session.is_some_and(|v| v.stage == Stage::Starting && !v.taking_over);
    if let Some(why) = look
        .observed
        .failed_pod_message
        .as_ref()
        .filter(|_| starting)
    {
        d.actions.push(Action::SuspendJob);
        let msg = format!("a load generator failed before the shared start: {why}");
        look.end(d, Phase::Failed, "WorkerFailed", msg);
        return;
    }
    let stuck = look.observed.stuck_pods.as_ref();
    if let Some(why) = stuck.filter(|_| started_before(&d.status, look.now, START_GRACE)) {
        d.actions.push(Action::SuspendJob);
        let msg = format!("the load generators could not start within {START_GRACE:?}: {why}");
        look.end(d, Phase::Failed, "WorkersNotStarted", msg);
        return;
    }
    let status = job.status.clone().unwrap_or_default();
    let active = status.active.unwrap_or(0);
    let ready = status.ready.unwrap_or(0);
    if active > 0 {
        d.status.phase = Some(Phase::Running);
    }
    match stuck {
        // Not yet past the grace: say what is holding the workers up.
        Some(why) => {
            look.condition(d, RUNNING, false, "WorkersNotReady", why.clone());
            d.requeue_after = Some(TARGET_RETRY);
        }
        None if active > 0 => {
            let msg = format!("{active} load-generator pods active, {ready} ready");
            look.condition(d, RUNNING, true, "LoadGeneratorsActive", msg);
        }
        None => {}
    }
    let mut next = RESYNC;
    if let Some(v) = session {
        follow(&mut d.status, v, look.generation, &look.t);
        next = PROGRESS;
    }
    d.requeue_after = Some(d.requeue_after.map_or(next, |r| r.min(next)));
}

/// `Collecting`: the Job completed. The run waits (at most
/// [`COLLECT_GRACE`]) for the session to have every result, then ends —
/// `Succeeded` only with its client results: every worker's, or the steps
/// marked for the ones missing.
pub(super) fn collecting(d: &mut Decision, look: &Look, job: &Job) {
    let session = look.observed.session.as_ref();
    if session.is_some_and(|v| v.stage != Stage::Done) && !overdue(job, look.now) {
        d.status.phase = Some(Phase::Collecting);
        d.requeue_after = Some(Duration::from_secs(1));
        return;
    }
    if let Some(v) = session {
        apply_results(&mut d.status, look.run, &v.steps, look.generation, &look.t);
    }
    let missing = match session {
        Some(v) if v.stage == Stage::Done && !v.lost.is_empty() => Some((
            "WorkerLost",
            format!(
                "the load generators finished, but not all of them handed over their results ({}); what the others measured is kept",
                v.lost.join("; ")
            ),
        )),
        Some(v) if v.stage == Stage::Done && !v.steps.is_empty() && v.steps.iter().all(|s| s.client.is_some()) => None,
        // Every measured step has its client results, or the run does not
        // succeed: some steps without them say which.
        Some(v) if v.stage == Stage::Done && v.steps.iter().any(|s| s.client.is_some()) => Some((
            "ResultsMissing",
            format!(
                "the load generators finished, but no client results arrived for step(s) {}; what the others measured is kept",
                v.steps
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.client.is_none())
                    .map(|(k, _)| (k + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Some(v) if v.stage == Stage::Done => Some((
            "ResultsMissing",
            "the load generators finished, and none of their results could be pulled or read from the checkpoint; only the telemetry is kept".to_string(),
        )),
        Some(_) => Some((
            "ResultsMissing",
            format!(
                "the load generators finished; their results did not arrive within {COLLECT_GRACE:?}; only the telemetry is kept"
            ),
        )),
        None => Some((
            "ResultsMissing",
            "the load generators finished before this controller could follow them; their results were not pulled".to_string(),
        )),
    };
    match (session.and_then(|v| all_failed(&v.steps)), missing) {
        // Nothing was measured of the server: no figure stands.
        (Some(why), _) => look.end(d, Phase::Failed, "RequestsFailed", why),
        (None, Some((reason, why))) => look.end(d, Phase::Failed, reason, why),
        (None, None) => {
            let why = "the load generators finished".to_string();
            look.end(d, Phase::Succeeded, "Completed", why);
        }
    }
}

/// The Job failed: its other workers are being terminated, they stop and
/// hand over what they measured (as on cancel), and the run ends `Failed`
/// — `WorkerLost` when the session lost a worker, `Timeout` past the Job's
/// deadline.
pub(super) fn job_failed(d: &mut Decision, look: &Look, reason: &str, message: &str) {
    let observed = look.observed;
    if holds_for_stop(d, observed, true) {
        return;
    }
    let kept = keep_measured(d, look);
    let lost = observed.session.as_ref().map_or(&[][..], |v| &v.lost);
    let reason = if reason == "DeadlineExceeded" {
        "Timeout"
    } else if !lost.is_empty() {
        // A worker killed, evicted or gone silent: the others measured
        // their shares, and what they measured is kept.
        "WorkerLost"
    } else {
        reason
    };
    let mut msg = if lost.is_empty() {
        format!("the load-generator Job failed: {message}")
    } else {
        let who = if lost.len() == 1 {
            "a load generator was"
        } else {
            "load generators were"
        };
        let lost = lost.join("; ");
        format!("{who} lost ({lost}); the load-generator Job failed: {message}")
    };
    if let Some(pod) = &observed.failed_pod_message {
        msg.push_str(&format!("; worker said: {pod}"));
    }
    if observed.session.is_some() {
        msg.push_str(&format!("; {kept}"));
    }
    look.end(d, Phase::Failed, reason, msg);
}

/// The Job was deleted under a started run. It is never made again (new
/// workers would run the plan a second time); its workers, in their pods'
/// grace period, stop and hand over what they measured.
pub(super) fn job_deleted(d: &mut Decision, look: &Look) {
    if holds_for_stop(d, look.observed, true) {
        return;
    }
    let kept = keep_measured(d, look);
    let message =
        format!("the load-generator Job was deleted while the run was in progress; {kept}");
    look.end(d, Phase::Failed, "JobDeleted", message);
}

/// A Job of the run's name that is not the run's: nothing is touched.
pub(super) fn job_conflict(d: &mut Decision, look: &Look, job: &Job) {
    let name = job.name_any();
    let msg = format!("a Job named {name} exists and does not belong to this run");
    look.finish(d, Phase::Failed, "JobConflict", msg);
}

/// Ended (`Succeeded`, `Failed`, `Cancelled`): nothing changes but the
/// run's deletion once its TTL after finishing has passed.
pub(super) fn ended(d: &mut Decision, run: &BenchmarkRun, now: Timestamp) {
    let (Some(ttl), Some(done)) = (
        run.spec.ttl_seconds_after_finished,
        &d.status.completion_time,
    ) else {
        return;
    };
    let Ok(expiry) = done
        .0
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
    else {
        return;
    };
    if now >= expiry {
        d.actions.push(Action::DeleteRun);
    } else {
        d.requeue_after = Some(until(now, expiry));
    }
}
