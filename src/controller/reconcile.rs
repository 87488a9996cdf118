//! One reconcile: observe → decide → execute → write status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use super::context::Context;
use super::decide::{self, Action, Decision, Observed, Target};
use super::error::Error;
use super::names::{self, FIELD_MANAGER};
use super::queue::{self, Peer};
use super::{build, conditions, dereference};
use crate::api::{BenchmarkRun, BenchmarkRunStatus, Phase};

/// The reconciler the runtime calls for each run.
#[instrument(skip_all, fields(run = %guard_name(&guard)))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<BenchmarkRun>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let started = Instant::now();
    let result = match &guard.0 {
        Ok(run) => reconcile_run(run, &ctx).await,
        Err(invalid) => report_unreadable(invalid, &ctx).await,
    };
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// Retries failed reconciles with a delay; the failure is counted by category.
pub fn error_policy(
    guard: Arc<DeserializeGuard<BenchmarkRun>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Requeue {
    warn!(run = %guard_name(&guard), category = error.category(), "reconcile failed: {error}");
    ctx.metrics.failed(error.category());
    Requeue::requeue(Duration::from_secs(5))
}

fn guard_name(guard: &DeserializeGuard<BenchmarkRun>) -> String {
    match &guard.0 {
        Ok(run) => format!("{}/{}", run.namespace().unwrap_or_default(), run.name_any()),
        Err(invalid) => invalid.metadata.name.clone().unwrap_or_default(),
    }
}

async fn reconcile_run(run: &BenchmarkRun, ctx: &Context) -> Result<Requeue, Error> {
    let ns = run.namespace().ok_or(Error::MissingNamespace)?;
    if run.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the Job and ConfigMap.
        return Ok(Requeue::await_change());
    }
    let observed = observe(run, &ns, ctx).await?;
    let decision = decide::decide(run, &observed, Timestamp::now());
    if decision.stale {
        debug!("the cached copy predates the final status written for it; waiting for the cache");
        return Ok(requeue(&decision));
    }
    execute(run, &ns, &decision, ctx).await?;
    match write_status(run, &ns, &decision.status, ctx).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 => {
            // The run changed since this copy was read: decide again from a newer one.
            debug!("the run changed while it was reconciled; looking again");
            return Ok(Requeue::requeue(CONFLICT_RETRY));
        }
        other => other?,
    }
    let was_final = run
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_final);
    if !was_final && decision.status.phase.is_some_and(Phase::is_final) {
        ctx.sessions.end(run, &decision.status);
        // The results and the final status are written: the checkpoint has
        // served (were this skipped, it goes with the run).
        if let Err(e) = delete_checkpoint(run, &ns, ctx).await {
            warn!("removing the checkpoint: {e}");
        }
    }
    if let Some(t) = &decision.transition {
        info!(phase = %t.reason, "{}", t.note);
        publish(ctx, run.object_ref(&()), t.warning, &t.reason, &t.note).await;
    }
    // Warnings that matter reach the run's events, not only its results.
    let warned = |s: Option<&BenchmarkRunStatus>| {
        s.and_then(|s| conditions::get(&s.conditions, conditions::WARNINGS))
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone())
    };
    if let (None, Some(message)) = (warned(run.status.as_ref()), warned(Some(&decision.status))) {
        warn!("{message}");
        publish(ctx, run.object_ref(&()), true, "Warnings", &message).await;
    }
    Ok(requeue(&decision))
}

/// Removes the run's checkpoint ConfigMaps (only those the run owns).
async fn delete_checkpoint(run: &BenchmarkRun, ns: &str, ctx: &Context) -> Result<(), Error> {
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    delete_owned(&cms, run, "checkpoint", |_| false).await
}

/// The first of the objects the run creates (besides its Job and results)
/// whose name another object holds, as `Kind name`: its plan and its
/// workers' NetworkPolicy are made only where the name is free or the
/// run's own.
async fn foreign_object(
    run: &BenchmarkRun,
    ns: &str,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let taken = |owned: bool, kind: &str, name: String| (!owned).then(|| format!("{kind} {name}"));
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let plan = names::plan_name(run);
    if let Some(cm) = cms.get_opt(&plan).await?
        && let Some(t) = taken(decide::owned_by(&cm, run), "ConfigMap", plan)
    {
        return Ok(Some(t));
    }
    if build::network_policy(run, &ctx.settings).is_some() {
        let name = names::job_name(run);
        let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
            Api::namespaced(ctx.client.clone(), ns);
        // An install whose role predates the check may not get them: as before.
        if let Some(np) = unless_forbidden(policies.get_opt(&name).await)?
            && let Some(t) = taken(decide::owned_by(&np, run), "NetworkPolicy", name)
        {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// A lookup the controller's role may not allow (403): as if nothing were
/// there.
fn unless_forbidden<T>(found: Result<Option<T>, kube::Error>) -> Result<Option<T>, Error> {
    match found {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(None),
        found => Ok(found?),
    }
}

/// How long a run whose Job has ended waits for its session's first
/// discovery before it is written final.
const DISCOVERY_GRACE: Duration = Duration::from_secs(10);

/// How soon a reconcile whose status write met a newer copy of the run tries again.
const CONFLICT_RETRY: Duration = Duration::from_millis(500);

fn requeue(decision: &Decision) -> Requeue {
    match decision.requeue_after {
        Some(after) => Requeue::requeue(after),
        None => Requeue::await_change(),
    }
}

async fn observe(run: &BenchmarkRun, ns: &str, ctx: &Context) -> Result<Observed, Error> {
    if let Some(ended) = ctx.sessions.ended(run) {
        // Stale copy: nothing is looked up, and no session is started for it.
        return Ok(Observed {
            job: None,
            failed_pod_message: None,
            stuck_pods: None,
            target: Target::NotNeeded,
            session: None,
            ended: Some(ended),
            foreign_results: None,
            foreign_object: None,
            max_active: None,
            pods_not_permitted: None,
            peers: Vec::new(),
            baseline: None,
        });
    }
    let final_phase = run
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_final);
    // A queued run that, by the addresses it recorded, still waits behind
    // the runs ahead of it costs the API server nothing: it has no Job (it
    // was never launched) and its target is not looked up again.
    let queued = run.status.as_ref().is_some_and(|s| {
        s.phase == Some(Phase::Queued) && s.start_time.is_none() && !run.spec.cancel
    });
    let queue_peers = if queued { peers(ctx).await } else { Vec::new() };
    let held = queued && {
        let recorded = run.status.as_ref().map(|s| s.target_endpoints.as_slice());
        let owned = run
            .status
            .as_ref()
            .map(|s| s.owned_target_endpoints.as_slice());
        let me = Peer::me(run, recorded.unwrap_or_default(), owned.unwrap_or_default());
        !matches!(
            queue::place_within(&me, &queue_peers, ctx.max_active),
            queue::Place::Go { .. }
        )
    };
    let job_name = names::job_name(run);
    let found_job = if held {
        None
    } else {
        job_of(ctx, ns, &job_name).await?
    };
    // Only the run's own Job is its Job: one of that name that another made
    // is never followed, suspended or given the run's plan.
    let (job, foreign_job) = match found_job {
        Some(j) if !decide::owned_by(&j, run) => (None, Some(format!("Job {job_name}"))),
        other => (other, None),
    };
    // The Job failed, or one of its indexes did while the others go on
    // (`backoffLimitPerIndex`: a worker killed, or one that failed to start).
    let failed = job.as_ref().is_some_and(|j| {
        matches!(decide::finished(j), Some(decide::JobEnd::Failed { .. }))
            || j.status.as_ref().and_then(|s| s.failed).unwrap_or(0) > 0
    });
    // A Job that failed, or whose workers are not all ready yet: what its pods say.
    let unready = job.as_ref().is_some_and(|j| {
        let s = j.status.clone().unwrap_or_default();
        decide::finished(j).is_none() && s.ready.unwrap_or(0) < s.active.unwrap_or(0).max(1)
    });
    let pods = if (failed || unready) && !final_phase {
        job_pods(ctx, ns, &job_name).await?
    } else {
        Vec::new()
    };
    let failed_pod_message = failed
        .then(|| decide::pods::failed_message(&pods))
        .flatten();
    let stuck_pods = unready.then(|| decide::pods::stuck(&pods)).flatten();
    let launching = job.is_none() && !final_phase && !run.spec.cancel;
    let foreign_object = match foreign_job {
        Some(j) => Some(j),
        None if launching && !held => foreign_object(run, ns, ctx).await?,
        None => None,
    };
    let target = if held {
        Target::Held
    } else if launching {
        dereference::resolve(&ctx.client, ns, &run.spec.target).await?
    } else {
        Target::NotNeeded
    };
    // Before anything is launched: the results ConfigMap's name must be free
    // or the run's own.
    let foreign_results = if launching && !held {
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        let name = names::results_config_map_name(run);
        cms.get_opt(&name)
            .await?
            .filter(|cm| !decide::owned_by(cm, run))
            .map(|_| name)
    } else {
        None
    };
    // A run whose Job exists is followed by a session; one that was already
    // running when this controller took it up is resumed.
    let running = run
        .status
        .as_ref()
        .is_some_and(|s| s.phase == Some(Phase::Running) && s.start_time.is_some());
    let session = match (&job, final_phase) {
        (Some(_), false) => {
            let resumed = running && ctx.sessions.get(run).is_none();
            ctx.sessions
                .ensure(run, || session_setup(run, ctx, resumed))
        }
        // The Job was deleted under the run before this controller followed
        // it (it started since): its workers, stopping or orphaned, may still
        // hold what they measured, and a session pulls it.
        (None, false) if running && !run.spec.cancel => match ctx.sessions.get(run) {
            Some(s) => Some(s),
            None => ctx.sessions.ensure(run, || crate::measure::Setup {
                salvage: true,
                ..session_setup(run, ctx, true)
            }),
        },
        _ => ctx.sessions.get(run),
    };
    // A Job that has ended ends the run: its session's first discovery is
    // waited for (briefly), so a run that fails at once still says what its
    // telemetry spec was refused.
    let ended = job.as_ref().is_some_and(|j| decide::finished(j).is_some());
    if let Some(s) = &session
        && ended
        && !final_phase
        && !s.view().discovered
        && !s.discovered_within(DISCOVERY_GRACE).await
    {
        debug!("the run ends before its first discovery was done");
    }
    // A queued run's peers were looked up above (it has no Job: launching).
    let peers = if queued {
        queue_peers
    } else if launching || (job.is_some() && !final_phase) {
        peers(ctx).await
    } else {
        Vec::new()
    };
    // A run whose Job completed is about to end: its baseline is read now.
    let completed = job
        .as_ref()
        .is_some_and(|j| decide::finished(j) == Some(decide::JobEnd::Complete));
    let baseline = if completed && !final_phase {
        super::baseline::look_up(&ctx.client, run, ns).await
    } else {
        None
    };
    Ok(Observed {
        baseline,
        job,
        failed_pod_message,
        stuck_pods,
        target,
        session: session.map(|s| s.view()),
        ended: None,
        foreign_results,
        foreign_object,
        max_active: ctx.max_active,
        pods_not_permitted: launching.then(|| ctx.settings.refuses(run)).flatten(),
        peers,
    })
}

/// The run's Job: from the controller's cache of the runs' Jobs, else (not
/// there yet, or not the run's: a Job of that name without benchrun's
/// label) from the API server.
async fn job_of(ctx: &Context, ns: &str, name: &str) -> Result<Option<Job>, Error> {
    let key = kube::runtime::reflector::ObjectRef::<Job>::new(name).within(ns);
    if let Some(job) = ctx
        .jobs
        .get()
        .into_iter()
        .flatten()
        .find_map(|s| s.get(&key))
    {
        return Ok(Some(Job::clone(&job)));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    Ok(jobs.get_opt(name).await?)
}

/// Every run the controller's caches hold (those that ended too: they tell
/// whom a run shared its target with), once every cache has synced: before
/// that a cache can miss a run in progress, and a queued run would start
/// beside it.
async fn peers(ctx: &Context) -> Vec<Peer> {
    let Some(stores) = ctx.runs.get() else {
        return Vec::new();
    };
    for store in stores {
        if super::synced(store).await.is_err() {
            return Vec::new();
        }
    }
    stores
        .iter()
        .flat_map(|s| s.state())
        .filter_map(|g| g.0.as_ref().ok().map(Peer::of))
        .collect()
}

/// What a new measurement session of `run` needs: its Job, its plan's
/// shape, the cluster as it may see it (checkpoint store included) and its
/// workers' token.
fn session_setup(run: &BenchmarkRun, ctx: &Context, resumed: bool) -> crate::measure::Setup {
    let plan = build::plan(run, Vec::new());
    let base = names::checkpoint_name(run);
    let uid = run.uid().unwrap_or_default();
    let ns = run.namespace().unwrap_or_default();
    let store = super::measurement::Store::new(
        &ctx.client,
        &ns,
        base.clone(),
        build::owned_meta(run, base, "checkpoint"),
        &uid,
        FIELD_MANAGER,
    );
    let cluster = super::measurement::RunCluster {
        client: ctx.client.clone(),
        ns,
        job: names::job_name(run),
        spec: run.spec.clone(),
        policy: ctx.policy.clone(),
        store,
        watches: ctx.watches.clone(),
        job_uid: tokio::sync::OnceCell::new(),
        started_unix_s: run
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_second()),
    };
    crate::measure::Setup {
        cluster: std::sync::Arc::new(cluster),
        run_uid: uid.clone(),
        job: names::job_name(run),
        steps: plan.measured_steps().count(),
        stop: plan.stop,
        warmup: plan.warmup_requests > 0,
        resumed,
        preflight: run.spec.load.preflight,
        salvage: false,
        token: ctx.settings.worker_key.as_ref().map(|k| k.token(&uid)),
        telemetry_budget_bytes: ctx.telemetry_budget_bytes,
        telemetry_pool: Some(ctx.telemetry_pool.clone()),
    }
}

/// The pods of the run's Job.
async fn job_pods(ctx: &Context, ns: &str, job: &str) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    Ok(pods.list(&lp).await?.items)
}

async fn execute(run: &BenchmarkRun, ns: &str, d: &Decision, ctx: &Context) -> Result<(), Error> {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for action in &d.actions {
        match action {
            Action::CreateJob(urls) => {
                // The workers' NetworkPolicy exists before they do.
                if let Some(np) = build::network_policy(run, &ctx.settings) {
                    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
                        Api::namespaced(ctx.client.clone(), ns);
                    policies
                        .patch(&names::job_name(run), &apply, &Patch::Apply(&np))
                        .await?;
                }
                let plan = build::plan(run, urls.clone());
                let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
                cms.patch(
                    &names::plan_name(run),
                    &apply,
                    &Patch::Apply(&build::plan_config_map(run, &plan)?),
                )
                .await?;
                let job = build::job(run, &ctx.settings, false);
                let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
                jobs.patch(&names::job_name(run), &apply, &Patch::Apply(&job))
                    .await?;
                ctx.sessions.ensure(run, || session_setup(run, ctx, false));
            }
            Action::StopMeasurement => {
                if let Some(session) = ctx.sessions.get(run) {
                    session.stop();
                }
            }
            Action::SuspendJob => {
                let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
                let patch = Patch::Merge(json!({"spec": {"suspend": true}}));
                ignore_not_found(
                    jobs.patch(&names::job_name(run), &PatchParams::default(), &patch)
                        .await,
                )?;
            }
            Action::WriteResults => {
                let mut doc = build::results_document(run, &d.status);
                doc.baseline = d.gate.clone();
                let mut timeseries = None;
                if let Some(session) = ctx.sessions.get(run) {
                    let measured = session.document();
                    (doc.details, doc.endpoints, doc.notes) =
                        (measured.steps, measured.endpoints, measured.notes);
                    crate::results::mark_run(
                        &mut doc.details,
                        &d.status.shared_with,
                        run.spec.load.max_error_rate(),
                    );
                    timeseries = session.timeseries();
                }
                doc.notes.extend(build::tls_note(run));
                if run.spec.results.timeseries && timeseries.is_none() {
                    doc.notes.push(
                        "no time series: this controller did not follow the run's measurement"
                            .into(),
                    );
                }
                let client_steps = doc.details.iter().filter(|d| d.client.is_some()).count();
                let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
                let existing = cms.get_opt(&names::results_config_map_name(run)).await?;
                if build::keep_existing_results(existing.as_ref(), client_steps) {
                    warn!(
                        client_steps,
                        "kept the results already written: they hold more client results than this write"
                    );
                    continue;
                }
                let mut files = doc.files()?;
                if let Some(ts) = timeseries {
                    files.insert(crate::measure::timeseries::FILE.into(), ts);
                }
                let parts = crate::results::pack(files, crate::results::MAX_CONFIGMAP_BYTES);
                write_results(
                    run,
                    &cms,
                    existing,
                    build::results_config_maps(run, parts, client_steps),
                )
                .await?;
            }
            Action::DeleteRun => {
                let runs: Api<BenchmarkRun> = Api::namespaced(ctx.client.clone(), ns);
                ignore_not_found(
                    runs.delete(&run.name_any(), &DeleteParams::background())
                        .await,
                )?;
                info!("deleted: ttlSecondsAfterFinished has passed");
            }
        }
    }
    Ok(())
}

/// Writes the results ConfigMaps (`first` is what holds the first one's name
/// now), never over one that belongs to something else, and removes the
/// run's leftover parts of an earlier, larger write.
async fn write_results(
    run: &BenchmarkRun,
    cms: &Api<ConfigMap>,
    first: Option<ConfigMap>,
    parts: Vec<ConfigMap>,
) -> Result<(), Error> {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let mut written = std::collections::BTreeSet::new();
    for (i, cm) in parts.into_iter().enumerate() {
        let name = cm.name_any();
        let current = if i == 0 {
            first.clone()
        } else {
            cms.get_opt(&name).await?
        };
        if current.as_ref().is_some_and(|c| !decide::owned_by(c, run)) {
            warn!(configmap = %name, "a ConfigMap of that name belongs to something else: left untouched");
            continue;
        }
        cms.patch(&name, &apply, &Patch::Apply(&cm)).await?;
        written.insert(name);
    }
    delete_owned(cms, run, "results", |name| written.contains(name)).await
}

/// Deletes the run's own ConfigMaps of `component` (by label, and only those
/// it owns), except those `keep` names.
async fn delete_owned(
    cms: &Api<ConfigMap>,
    run: &BenchmarkRun,
    component: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<(), Error> {
    let selector = format!(
        "app.kubernetes.io/component={component},{}={}",
        names::RUN_LABEL,
        names::labels(run, component)[names::RUN_LABEL]
    );
    for cm in cms.list(&ListParams::default().labels(&selector)).await? {
        if decide::owned_by(&cm, run) && !keep(&cm.name_any()) {
            ignore_not_found(cms.delete(&cm.name_any(), &DeleteParams::default()).await)?;
        }
    }
    Ok(())
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Server-side applies the status, unless nothing changed. The write holds
/// the resourceVersion of the copy it was decided from as a precondition, so a
/// decision made from a stale copy fails with a conflict instead of
/// overwriting a newer status.
async fn write_status(
    run: &BenchmarkRun,
    ns: &str,
    status: &BenchmarkRunStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if run.status.as_ref() == Some(status) {
        return Ok(());
    }
    let uid = run.uid().unwrap_or_default();
    // Progress alone is written at most every PROGRESS a run, however
    // many events start its reconciles; the next progress look writes it.
    let recent = |written: &std::collections::HashMap<String, Instant>| {
        written
            .get(&uid)
            .is_some_and(|t| t.elapsed() < decide::PROGRESS)
    };
    if let (Some(old), Ok(written)) = (run.status.as_ref(), ctx.status_written.lock())
        && decide::progress_only(old, status)
        && recent(&written)
    {
        return Ok(());
    }
    let version = run.resource_version();
    apply_status(ctx, ns, &run.name_any(), version.as_deref(), status).await?;
    if let Ok(mut written) = ctx.status_written.lock() {
        written.insert(uid, Instant::now());
    }
    Ok(())
}

async fn apply_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    resource_version: Option<&str>,
    status: &BenchmarkRunStatus,
) -> Result<(), Error> {
    let runs: Api<BenchmarkRun> = Api::namespaced(ctx.client.clone(), ns);
    let mut patch = json!({
        "apiVersion": "benchrun.dev/v1alpha1",
        "kind": "BenchmarkRun",
        "status": status,
    });
    if let Some(v) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": v });
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    runs.patch_status(name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// An object that does not even deserialize (e.g. admitted under an older CRD)
/// ends Failed with the parser's message instead of stalling the watch.
async fn report_unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<Requeue, Error> {
    let ns = invalid
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingNamespace)?;
    let name = invalid.metadata.name.clone().unwrap_or_default();
    // A stable timestamp, so that applying the same status twice changes nothing.
    let since = invalid
        .metadata
        .creation_timestamp
        .clone()
        .unwrap_or(Time(Timestamp::UNIX_EPOCH));
    let message = format!(
        "the object does not match the BenchmarkRun schema: {}",
        invalid.error
    );
    let mut status = BenchmarkRunStatus {
        observed_generation: invalid.metadata.generation,
        phase: Some(Phase::Failed),
        ..BenchmarkRunStatus::default()
    };
    let generation = invalid.metadata.generation;
    for (type_, value) in [
        (conditions::ACCEPTED, false),
        (conditions::SUCCEEDED, false),
        (conditions::FAILED, true),
    ] {
        conditions::set(
            &mut status.conditions,
            type_,
            value,
            "InvalidSpec",
            message.clone(),
            generation,
            &since,
        );
    }
    warn!("{message}");
    apply_status(ctx, &ns, &name, None, &status).await?;
    Ok(Requeue::await_change())
}

async fn publish(
    ctx: &Context,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(crate::net::bounded(note, crate::net::MAX_QUOTED_BYTES)),
        action: "Reconcile".into(),
        secondary: None,
    };
    // Events are best effort: a failure to record one must not fail the run.
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        warn!("could not publish event: {e}");
    }
}
