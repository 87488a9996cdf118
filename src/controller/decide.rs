//! The decide stage: from the run, what the cluster holds and the clock, the next
//! status and the actions that get there.
//!
//! Pure: every input is a value, so each transition is a unit test.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::conditions::{self as cond, ACCEPTED, DISCOVERED, FAILED, QUEUED, RUNNING, SUCCEEDED};
use super::queue::{self, Peer, Place};
use crate::api::{self, BenchmarkRun, BenchmarkRunStatus, Phase};
use crate::measure::{SessionView, Stage};

pub mod pods;
mod results;

pub use self::results::slo_misses;
use self::results::{apply_results, follow, telemetry_condition};

/// Where the target stands, as the dereference stage found it.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Base URLs to send requests to (`urls`), and the base URLs of the
    /// servers they reach (`reaches`: the pods behind a Service sent to
    /// through its virtual IP; else the URLs themselves), which decide
    /// what other runs share the target.
    Resolved {
        urls: Vec<String>,
        reaches: Vec<String>,
        /// Of `reaches`, the addresses of the run's own namespace's pods
        /// (`host:port`): the part of the target it owns for the queue.
        owned: Vec<String>,
    },
    /// Not reachable yet, and why (e.g. a Service with no ready endpoints).
    Unresolved(String),
    /// Not looked up: the Job exists already, or the run is over.
    NotNeeded,
    /// Not looked up: the run is queued, and by the addresses it recorded
    /// the runs ahead of it still hold its target.
    Held,
}

/// What the cluster holds for a run.
#[derive(Clone, Debug)]
pub struct Observed {
    pub job: Option<Job>,
    /// The termination message of a failed load-generator pod, if any.
    pub failed_pod_message: Option<String>,
    /// Why a load-generator pod is not starting, when one is stuck (see
    /// [`pods::stuck`]).
    pub stuck_pods: Option<String>,
    pub target: Target,
    /// The run's measurement session in this controller, if it has one.
    pub session: Option<SessionView>,
    /// The final status this controller already wrote for the run, when the
    /// copy in hand predates that write (see `Sessions::ended`).
    pub ended: Option<BenchmarkRunStatus>,
    /// A ConfigMap that holds the run's results name and does not belong to
    /// the run (looked up before the Job is created).
    pub foreign_results: Option<String>,
    /// Another object that holds a name the run's own objects take (its Job,
    /// plan, worker token or NetworkPolicy) and does not belong to the run,
    /// as `Kind name` (looked up before the Job is created).
    pub foreign_object: Option<String>,
    /// The most runs the installer lets be measured at once (`None`: no limit).
    pub max_active: Option<usize>,
    /// Why the installer's policy refuses the run's load-generator pods
    /// (image, service account), looked up before the Job is created.
    pub pods_not_permitted: Option<String>,
    /// The runs this controller sees, for the queue and for whom a run in
    /// progress shares its target with (looked up when the run is to launch
    /// or is in progress).
    pub peers: Vec<Peer>,
    /// The run's baseline (`spec.baseline`), looked up once its Job has
    /// completed.
    pub baseline: Option<super::baseline::Found>,
}

/// One thing to do to the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the load-generator Job with these target URLs.
    CreateJob(Vec<String>),
    /// The run ends early: ask the workers to stop and pull what they measured.
    StopMeasurement,
    /// Stop the Job's pods, keeping the Job.
    SuspendJob,
    /// Write the results ConfigMap from the final status.
    WriteResults,
    /// Delete the run: its TTL after finishing has passed.
    DeleteRun,
}

/// How long a run that ends early waits for its workers' results after
/// asking them to stop, before it ends without them.
pub const STOP_GRACE: Duration = Duration::from_secs(20);
/// How often it looks meanwhile.
const STOP_POLL: Duration = Duration::from_millis(500);

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
fn keep_measured(
    d: &mut Decision,
    run: &BenchmarkRun,
    observed: &Observed,
    generation: Option<i64>,
    t: &Time,
) -> &'static str {
    const MISSING: &str = "the workers' results did not arrive; only the telemetry is kept";
    match observed.session.as_ref() {
        Some(v) if v.stage == Stage::Done => {
            apply_results(&mut d.status, run, &v.steps, generation, t);
            if v.steps.iter().any(|s| s.client.is_some()) {
                "what the workers measured up to then is kept"
            } else {
                MISSING
            }
        }
        _ => MISSING,
    }
}

/// When requests were sent and not one succeeded (a wrong CA, a refused API
/// key, a model the server does not serve): why, with the errors' kinds and
/// the first samples, for the run's `Failed` condition.
pub fn all_failed(steps: &[crate::results::StepDetail]) -> Option<String> {
    let clients: Vec<_> = steps.iter().filter_map(|s| s.client.as_ref()).collect();
    let requests: u64 = clients.iter().map(|c| c.requests).sum();
    let successes: u64 = clients.iter().map(|c| c.successes).sum();
    if requests == 0 || successes > 0 {
        return None;
    }
    let mut kinds = std::collections::BTreeMap::new();
    for c in &clients {
        for (kind, n) in &c.errors {
            *kinds.entry(format!("{kind}")).or_insert(0u64) += n;
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut samples: Vec<&str> = clients
        .iter()
        .flat_map(|c| c.error_samples.iter().map(String::as_str))
        .collect();
    samples.dedup();
    samples.truncate(2);
    Some(format!(
        "not one of the {requests} requests succeeded ({}); the server said: {}",
        kinds.join(", "),
        samples.join(" | ")
    ))
}

/// An event to publish for a transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The decision of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: BenchmarkRunStatus,
    pub actions: Vec<Action>,
    pub requeue_after: Option<Duration>,
    pub transition: Option<Transition>,
    /// The copy of the run in hand is older than a final status this
    /// controller wrote: nothing is done or written; the run is looked at
    /// again once the cache has caught up.
    pub stale: bool,
    /// The run against its baseline, when it was judged (for the results).
    pub gate: Option<crate::results::compare::Gate>,
}

/// How long to wait before looking again for a target that is not ready.
const TARGET_RETRY: Duration = Duration::from_secs(5);
/// A look at running runs even without events, in case a watch event was missed.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a running run's progress is written to its status (and its
/// neighbours on the same target looked at): at most 12 writes a minute a
/// run besides its changes of phase, so that a hundred runs cost the API
/// server some 20 writes a second. A change of progress alone waits this
/// long after the run's last status write, whatever starts its reconciles
/// (Job and checkpoint events start many).
pub const PROGRESS: Duration = Duration::from_secs(5);
/// How long a completed Job's results are waited for before the run ends without them.
const COLLECT_GRACE: Duration = Duration::from_secs(90);
/// How long workers stuck on something that waiting does not fix (an image
/// that cannot be pulled, a missing Secret, an unschedulable pod) are given
/// from the run's start before the run fails with their reason.
const START_GRACE: Duration = Duration::from_secs(45);
/// How often a queued run looks again whether its target is free.
const QUEUE_POLL: Duration = Duration::from_secs(2);
/// How soon a run seen through a stale copy is looked at again.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// Decides the next status and actions of a run.
pub fn decide(run: &BenchmarkRun, observed: &Observed, now: Timestamp) -> Decision {
    let mut d = decide_inner(run, observed, now);
    if d.status.phase != Some(Phase::Queued) {
        d.status.queue_position = None;
    }
    if d.actions.contains(&Action::WriteResults) {
        d.status.results_config_map = Some(super::names::results_config_map_name(run));
        // The run has ended: against its baseline, when it names one.
        let t = Time(now);
        super::baseline::judge(
            &mut d,
            run,
            observed.baseline.as_ref(),
            run.metadata.generation,
            &t,
        );
    }
    d
}

fn decide_inner(run: &BenchmarkRun, observed: &Observed, now: Timestamp) -> Decision {
    let old = run.status.clone().unwrap_or_default();
    let phase = old.phase.unwrap_or(Phase::Pending);
    // A run never leaves a final phase: a copy that does not show the end this
    // controller wrote is stale, and every decision from it would undo that end.
    if let Some(ended) = observed.ended.as_ref().filter(|_| !phase.is_final()) {
        return Decision {
            status: ended.clone(),
            actions: Vec::new(),
            requeue_after: Some(STALE_RETRY),
            transition: None,
            stale: true,
            gate: None,
        };
    }
    let mut d = Decision {
        status: old.clone(),
        actions: Vec::new(),
        requeue_after: None,
        transition: None,
        stale: false,
        gate: None,
    };
    d.status.observed_generation = run.metadata.generation;
    if phase.is_final() {
        ttl(run, &mut d, now);
        return d;
    }
    if d.status.phase.is_none() {
        d.status.phase = Some(Phase::Pending);
    }
    let generation = run.metadata.generation;
    let t = Time(now);

    if let Err(e) = api::validate(run) {
        cond::set(
            &mut d.status.conditions,
            ACCEPTED,
            false,
            "InvalidSpec",
            e.to_string(),
            generation,
            &t,
        );
        finish(
            &mut d,
            Phase::Failed,
            "InvalidSpec",
            e.to_string(),
            generation,
            &t,
        );
        return transition(d, phase);
    }
    cond::set(
        &mut d.status.conditions,
        ACCEPTED,
        true,
        "Valid",
        "the spec is valid",
        generation,
        &t,
    );

    // A run in progress records every run that loads its target beside it:
    // its energy is theirs too.
    if observed.job.is_some() {
        let beside = queue::sharing(&Peer::of(run), &observed.peers);
        d.status.shared_with = queue::merge_shared(&d.status.shared_with, &beside);
    }
    let job_active = observed.job.as_ref().is_some_and(|j| finished(j).is_none());
    let timeout_at = deadline(run, &old);
    // What the session's discovery found or refused, whichever way the run
    // goes on or ends from here.
    if let Some(v) = &observed.session {
        telemetry_condition(&mut d.status, v, generation, &t);
    }

    // A run that ends early: cancelled, or past its timeout.
    let timed_out = timeout_at.is_some_and(|dl| now >= dl);
    let stopping = observed
        .session
        .as_ref()
        .is_some_and(|v| v.stopping_for.is_some());
    let early = if run.spec.cancel {
        Some((
            Phase::Cancelled,
            "Cancelled",
            "cancelled through spec.cancel".to_string(),
        ))
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
    } else {
        timeout_at.filter(|dl| now >= *dl).map(|_| {
            let limit = run.spec.timeout.map(|t| t.to_string()).unwrap_or_default();
            (
                Phase::Failed,
                "Timeout",
                format!("the run passed its timeout of {limit}"),
            )
        })
    };
    if let Some((end, reason, message)) = early {
        if holds_for_stop(&mut d, observed, job_active) {
            return transition(d, phase);
        }
        if job_active {
            d.actions.push(Action::SuspendJob);
        }
        // What the workers measured up to the stop, when it arrived.
        keep_measured(&mut d, run, observed, generation, &t);
        finish(&mut d, end, reason, message, generation, &t);
        d.actions.push(Action::WriteResults);
        return transition(d, phase);
    }
    if let Some(at) = timeout_at {
        d.requeue_after = Some(until(now, at).min(RESYNC));
    }

    if let (None, Some(why)) = (&observed.job, &observed.pods_not_permitted) {
        // Nothing is launched with pods the installer does not allow.
        finish(
            &mut d,
            Phase::Failed,
            "NotPermitted",
            why.clone(),
            generation,
            &t,
        );
        return transition(d, phase);
    }
    if let (None, Some(name)) = (&observed.job, &observed.foreign_results) {
        // Results are created, never taken over: nothing is launched.
        let msg = format!(
            "a ConfigMap named {name} exists and does not belong to this run; it is left untouched: set spec.results.configMapName to a free name"
        );
        finish(
            &mut d,
            Phase::Failed,
            "ResultsConflict",
            msg,
            generation,
            &t,
        );
        return transition(d, phase);
    }
    if let (None, Some(what)) = (&observed.job, &observed.foreign_object) {
        // The run's objects are created or its own, never taken over.
        let msg = format!(
            "a {what} exists and does not belong to this run; it is left untouched and nothing is launched: delete it, or give the run another name"
        );
        finish(&mut d, Phase::Failed, "NameConflict", msg, generation, &t);
        return transition(d, phase);
    }
    match &observed.job {
        // The Job was deleted under a started run. It is never made again
        // (new workers would run the plan a second time); its workers, in
        // their pods' grace period, stop and hand over what they measured.
        None if d.status.start_time.is_some() => {
            if holds_for_stop(&mut d, observed, true) {
                return transition(d, phase);
            }
            let kept = keep_measured(&mut d, run, observed, generation, &t);
            let message =
                format!("the load-generator Job was deleted while the run was in progress; {kept}");
            finish(&mut d, Phase::Failed, "JobDeleted", message, generation, &t);
            d.actions.push(Action::WriteResults);
        }
        None => {
            match &observed.target {
                Target::Held => {
                    let recorded = d.status.target_endpoints.clone();
                    // Free by now: looked at again with the target resolved.
                    if !queued(&mut d, run, observed, &recorded, generation, &t) {
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
                    if queued(&mut d, run, observed, reaches, generation, &t) {
                        return transition(d, phase);
                    }
                    // Under a limit of runs measured at once, a run that was
                    // still looking its target up takes its place first (one
                    // round `Queued`): the runs deciding beside it count it then,
                    // and no two start past the limit.
                    if observed.max_active.is_some() && phase == Phase::Discovering {
                        let why = "its target is found: it takes its place among the runs measured at once".to_string();
                        wait(&mut d, 1, "WaitingForCapacity", why, generation, &t);
                        d.requeue_after = Some(Duration::ZERO);
                        return transition(d, phase);
                    }
                    d.actions.push(Action::CreateJob(urls.clone()));
                    d.status.start_time.get_or_insert(t.clone());
                    d.status.job_name = Some(super::names::job_name(run));
                    d.status.phase = Some(Phase::Pending);
                    cond::set(
                        &mut d.status.conditions,
                        DISCOVERED,
                        true,
                        "TargetResolved",
                        format!(
                            "sending to {} ({})",
                            urls.iter()
                                .map(|u| crate::net::redact_url(u))
                                .collect::<Vec<_>>()
                                .join(", "),
                            crate::results::Routing::of(&run.spec.target).describe()
                        ),
                        generation,
                        &t,
                    );
                    cond::set(
                        &mut d.status.conditions,
                        RUNNING,
                        false,
                        "Starting",
                        "the load-generator Job was created",
                        generation,
                        &t,
                    );
                    if let Some(deadline) = deadline(run, &d.status) {
                        d.requeue_after = Some(until(now, deadline).min(RESYNC));
                    }
                }
                Target::Unresolved(why) => {
                    d.status.phase = Some(Phase::Discovering);
                    cond::set(
                        &mut d.status.conditions,
                        DISCOVERED,
                        false,
                        "TargetNotReady",
                        why.clone(),
                        generation,
                        &t,
                    );
                    d.requeue_after = Some(TARGET_RETRY);
                }
                Target::NotNeeded => {}
            }
        }
        Some(job) if !owned_by(job, run) => {
            let msg = format!(
                "a Job named {} exists and does not belong to this run",
                job.name_any()
            );
            finish(&mut d, Phase::Failed, "JobConflict", msg, generation, &t);
        }
        Some(job) => match finished(job) {
            Some(JobEnd::Complete) => {
                let session = observed.session.as_ref();
                let collecting = session.is_some_and(|v| v.stage != Stage::Done);
                if collecting && !overdue(job, now) {
                    d.status.phase = Some(Phase::Collecting);
                    d.requeue_after = Some(Duration::from_secs(1));
                } else {
                    if let Some(v) = session {
                        apply_results(&mut d.status, run, &v.steps, generation, &t);
                    }
                    // A run succeeds only with its client results: every
                    // worker's, or the steps marked for the ones missing.
                    let missing = match session {
                        Some(v) if v.stage == Stage::Done && !v.lost.is_empty() => Some(("WorkerLost", format!(
                            "the load generators finished, but not all of them handed over their results ({}); what the others measured is kept",
                            v.lost.join("; ")
                        ))),
                        Some(v) if v.stage == Stage::Done && v.steps.iter().any(|s| s.client.is_some()) => None,
                        Some(v) if v.stage == Stage::Done => Some(("ResultsMissing",
                            "the load generators finished, and none of their results could be pulled or read from the checkpoint; only the telemetry is kept".to_string(),
                        )),
                        Some(_) => Some(("ResultsMissing", format!(
                            "the load generators finished; their results did not arrive within {COLLECT_GRACE:?}; only the telemetry is kept"
                        ))),
                        None => Some(("ResultsMissing",
                            "the load generators finished before this controller could follow them; their results were not pulled".to_string(),
                        )),
                    };
                    match (session.and_then(|v| all_failed(&v.steps)), missing) {
                        // Nothing was measured of the server: no figure stands.
                        (Some(why), _) => {
                            finish(&mut d, Phase::Failed, "RequestsFailed", why, generation, &t)
                        }
                        (None, Some((reason, why))) => {
                            finish(&mut d, Phase::Failed, reason, why, generation, &t)
                        }
                        (None, None) => finish(
                            &mut d,
                            Phase::Succeeded,
                            "Completed",
                            "the load generators finished".into(),
                            generation,
                            &t,
                        ),
                    }
                    d.actions.push(Action::WriteResults);
                }
            }
            Some(JobEnd::Failed { reason, message }) => {
                // The Job's other workers are being terminated: they stop and
                // hand over what they measured, as on cancel.
                if holds_for_stop(&mut d, observed, true) {
                    return transition(d, phase);
                }
                let kept = keep_measured(&mut d, run, observed, generation, &t);
                let lost = observed.session.as_ref().map_or(&[][..], |v| &v.lost);
                let reason = if reason == "DeadlineExceeded" {
                    "Timeout".to_string()
                } else if !lost.is_empty() {
                    // A worker killed, evicted or gone silent: the others
                    // measured their shares, and what they measured is kept.
                    "WorkerLost".to_string()
                } else {
                    reason
                };
                let mut msg = if lost.is_empty() {
                    format!("the load-generator Job failed: {message}")
                } else {
                    format!(
                        "{} lost ({}); the load-generator Job failed: {message}",
                        if lost.len() == 1 {
                            "a load generator was"
                        } else {
                            "load generators were"
                        },
                        lost.join("; ")
                    )
                };
                if let Some(pod) = &observed.failed_pod_message {
                    msg.push_str(&format!("; worker said: {pod}"));
                }
                if observed.session.is_some() {
                    msg.push_str(&format!("; {kept}"));
                }
                finish(&mut d, Phase::Failed, &reason, msg, generation, &t);
                d.actions.push(Action::WriteResults);
            }
            None if let Some(why) = observed.session.as_ref().and_then(|v| v.fatal.clone()) => {
                d.actions.push(Action::SuspendJob);
                finish(
                    &mut d,
                    Phase::Failed,
                    why.reason,
                    why.message,
                    generation,
                    &t,
                );
                d.actions.push(Action::WriteResults);
            }
            // A worker failed before the shared start (its index is not
            // retried, and the others would wait for a start that never
            // comes): the run fails with its reason now.
            None if let Some(why) = observed.failed_pod_message.clone().filter(|_| {
                observed
                    .session
                    .as_ref()
                    .is_some_and(|v| v.stage == Stage::Starting && !v.taking_over)
            }) =>
            {
                d.actions.push(Action::SuspendJob);
                finish(
                    &mut d,
                    Phase::Failed,
                    "WorkerFailed",
                    format!("a load generator failed before the shared start: {why}"),
                    generation,
                    &t,
                );
                d.actions.push(Action::WriteResults);
            }
            None if observed.stuck_pods.is_some()
                && started_before(&d.status, now, START_GRACE) =>
            {
                let why = observed.stuck_pods.clone().unwrap_or_default();
                d.actions.push(Action::SuspendJob);
                finish(
                    &mut d,
                    Phase::Failed,
                    "WorkersNotStarted",
                    format!("the load generators could not start within {START_GRACE:?}: {why}"),
                    generation,
                    &t,
                );
                d.actions.push(Action::WriteResults);
            }
            None => {
                let status = job.status.clone().unwrap_or_default();
                let active = status.active.unwrap_or(0);
                let ready = status.ready.unwrap_or(0);
                if active > 0 {
                    d.status.phase = Some(Phase::Running);
                }
                match &observed.stuck_pods {
                    // Not yet past the grace: say what is holding the workers up.
                    Some(why) => {
                        cond::set(
                            &mut d.status.conditions,
                            RUNNING,
                            false,
                            "WorkersNotReady",
                            why.clone(),
                            generation,
                            &t,
                        );
                        d.requeue_after = Some(TARGET_RETRY);
                    }
                    None if active > 0 => {
                        let msg = format!("{active} load-generator pods active, {ready} ready");
                        cond::set(
                            &mut d.status.conditions,
                            RUNNING,
                            true,
                            "LoadGeneratorsActive",
                            msg,
                            generation,
                            &t,
                        );
                    }
                    None => {}
                }
                let mut next = RESYNC;
                if let Some(v) = &observed.session {
                    follow(&mut d.status, v, generation, &t);
                    next = PROGRESS;
                }
                d.requeue_after = Some(d.requeue_after.map_or(next, |r| r.min(next)));
            }
        },
    }
    transition(d, phase)
}

/// Puts the run, sending to `endpoints`, in its place in the queue for its
/// target: `Queued` behind the runs ahead of it (returns true), or free to
/// start beside none (or, allowed, beside the runs it then shares with).
fn queued(
    d: &mut Decision,
    run: &BenchmarkRun,
    observed: &Observed,
    endpoints: &[String],
    generation: Option<i64>,
    t: &Time,
) -> bool {
    match queue::place_within(
        &Peer::me(run, endpoints, &d.status.owned_target_endpoints),
        &observed.peers,
        observed.max_active,
    ) {
        Place::Full { position, limit } => {
            let why = format!(
                "its target is free, but {limit} runs are measured at once already (the installer's limit, Helm value maxActiveMeasurements); place {position} among the runs that may start"
            );
            wait(d, position, "WaitingForCapacity", why, generation, t);
            true
        }
        Place::Wait {
            waits_for,
            position,
        } => {
            let why = format!(
                "waits for {waits_for}, which loads the same target; place {position} in the queue (spec.concurrencyPolicy: Queue)"
            );
            wait(d, position, "WaitingForTarget", why, generation, t);
            true
        }
        Place::Go { shared_with } => {
            d.status.shared_with = queue::merge_shared(&d.status.shared_with, &shared_with);
            if cond::get(&d.status.conditions, QUEUED).is_some() {
                cond::set(
                    &mut d.status.conditions,
                    QUEUED,
                    false,
                    "TargetFree",
                    "the runs ahead of it (on the same target, or in the installer's limit of runs measured at once) have ended",
                    generation,
                    t,
                );
            }
            false
        }
    }
}

/// The run waits `Queued` at `position`, for the reason given.
fn wait(
    d: &mut Decision,
    position: usize,
    reason: &str,
    why: String,
    generation: Option<i64>,
    t: &Time,
) {
    d.status.phase = Some(Phase::Queued);
    d.status.queue_position = Some(position as i32);
    cond::set(
        &mut d.status.conditions,
        QUEUED,
        true,
        reason,
        why,
        generation,
        t,
    );
    d.requeue_after = Some(QUEUE_POLL);
}

/// Whether `new` differs from `old` only in the live progress (requests
/// done, throughput) and endpoint counts: such a write can wait for the
/// run's next progress write ([`PROGRESS`]) without anything being lost.
pub fn progress_only(old: &BenchmarkRunStatus, new: &BenchmarkRunStatus) -> bool {
    let mut same = old.clone();
    same.progress = new.progress.clone();
    same.endpoints = new.endpoints.clone();
    same == *new
}

/// `since` lies more than `grace` before `now`.
fn older_than(since: Option<&Time>, now: Timestamp, grace: Duration) -> bool {
    since.is_some_and(|s| until(s.0, now) > grace)
}

/// The run started (its Job was created) more than `grace` before `now`.
fn started_before(status: &BenchmarkRunStatus, now: Timestamp, grace: Duration) -> bool {
    older_than(status.start_time.as_ref(), now, grace)
}

/// The Job completed more than [`COLLECT_GRACE`] ago.
fn overdue(job: &Job, now: Timestamp) -> bool {
    let completed = job.status.as_ref().and_then(|s| s.completion_time.as_ref());
    older_than(completed, now, COLLECT_GRACE)
}

/// How a Job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum JobEnd {
    Complete,
    Failed { reason: String, message: String },
}

/// The end of a Job, from its `Complete` or `Failed` condition.
pub fn finished(job: &Job) -> Option<JobEnd> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some(JobEnd::Complete),
            "Failed" => Some(JobEnd::Failed {
                reason: c.reason.clone().unwrap_or_else(|| "JobFailed".into()),
                message: c.message.clone().unwrap_or_default(),
            }),
            _ => None,
        })
}

/// Whether `obj` is owned by `run` (an owner reference with its UID).
pub fn owned_by<K: kube::Resource>(obj: &K, run: &BenchmarkRun) -> bool {
    let uid = run.metadata.uid.as_deref();
    obj.owner_references()
        .iter()
        .any(|o| Some(o.uid.as_str()) == uid)
}

fn finish(
    d: &mut Decision,
    phase: Phase,
    reason: &str,
    message: String,
    generation: Option<i64>,
    t: &Time,
) {
    d.status.phase = Some(phase);
    d.status.completion_time.get_or_insert(t.clone());
    let ok = phase == Phase::Succeeded;
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
    cond::set(
        conditions,
        SUCCEEDED,
        ok,
        reason,
        message.clone(),
        generation,
        t,
    );
    cond::set(
        conditions,
        FAILED,
        phase == Phase::Failed,
        reason,
        message,
        generation,
        t,
    );
    d.requeue_after = None;
}

/// Adds the event of a phase change.
fn transition(mut d: Decision, from: Phase) -> Decision {
    let to = d.status.phase.unwrap_or(Phase::Pending);
    if to != from {
        let failed = cond::get(&d.status.conditions, FAILED).is_some_and(|c| c.status == "True");
        let note = match to {
            Phase::Succeeded | Phase::Failed | Phase::Cancelled => {
                cond::get(&d.status.conditions, SUCCEEDED).map(|c| c.message.clone())
            }
            Phase::Running => cond::get(&d.status.conditions, RUNNING).map(|c| c.message.clone()),
            Phase::Discovering => {
                cond::get(&d.status.conditions, DISCOVERED).map(|c| c.message.clone())
            }
            Phase::Queued => cond::get(&d.status.conditions, QUEUED).map(|c| c.message.clone()),
            _ => None,
        };
        d.transition = Some(Transition {
            warning: failed,
            reason: to.to_string(),
            note: note.unwrap_or_else(|| format!("phase {from} -> {to}")),
        });
    }
    d
}

fn deadline(run: &BenchmarkRun, status: &BenchmarkRunStatus) -> Option<Timestamp> {
    let start = status.start_time.as_ref()?.0;
    let timeout: Duration = run.spec.timeout?.into();
    start
        .checked_add(SignedDuration::try_from(timeout).ok()?)
        .ok()
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn ttl(run: &BenchmarkRun, d: &mut Decision, now: Timestamp) {
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

#[cfg(test)]
mod tests;
