//! The decide stage: from the run, what the cluster holds and the clock, the next
//! status and the actions that get there.
//!
//! Pure: every input is a value, so each transition is a unit test.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::conditions::{self as cond, DISCOVERED, FAILED, QUEUED, RUNNING, SUCCEEDED};
use super::queue::Peer;
use crate::api::{BenchmarkRun, BenchmarkRunStatus, Phase};
use crate::measure::SessionView;

mod phase;
pub mod pods;
mod results;

use self::phase::Look;
pub use self::results::slo_misses;

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
        status: old,
        actions: Vec::new(),
        requeue_after: None,
        transition: None,
        stale: false,
        gate: None,
    };
    d.status.observed_generation = run.metadata.generation;
    if phase.is_final() {
        phase::ended(&mut d, run, now);
        return d;
    }
    d.status.phase.get_or_insert(Phase::Pending);
    let look = Look {
        run,
        observed,
        now,
        generation: run.metadata.generation,
        t: Time(now),
    };
    if !phase::accept(&mut d, &look) {
        return transition(d, phase);
    }
    phase::beside(&mut d, &look);
    if phase::ends_early(&mut d, &look) {
        return transition(d, phase);
    }
    match &observed.job {
        None if phase::refused(&mut d, &look) => {}
        None if d.status.start_time.is_some() => phase::job_deleted(&mut d, &look),
        None => phase::pending(&mut d, &look, phase),
        Some(job) if !owned_by(job, run) => phase::job_conflict(&mut d, &look, job),
        Some(job) => match finished(job) {
            None => phase::running(&mut d, &look, job),
            Some(JobEnd::Complete) => phase::collecting(&mut d, &look, job),
            Some(JobEnd::Failed { reason, message }) => {
                phase::job_failed(&mut d, &look, &reason, &message)
            }
        },
    }
    transition(d, phase)
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

#[cfg(test)]
mod tests;
