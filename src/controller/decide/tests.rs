use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::api::BenchmarkRun;
use crate::controller::conditions::{self, ACCEPTED, MEASUREMENT_VALID, WARNINGS};
use crate::loadgen::engine::{WorkerPhase, WorkerProgress};
use crate::measure::Stage;
use crate::measure::follow::{Effect, Event, Follow, lost_line};

const RUN: &str = r#"
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: r1, namespace: llm, uid: u-1, generation: 1}
spec:
  target: {url: "http://vllm:8000", model: m}
  load: {concurrency: 8, requestCount: 100}
"#;

fn run() -> BenchmarkRun {
    serde_saphyr::from_str(RUN).unwrap()
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn job(status: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": "r1-loadgen", "ownerReferences": [{
            "apiVersion": "benchrun.dev/v1alpha1", "kind": "BenchmarkRun", "name": "r1", "uid": "u-1", "controller": true
        }]},
        "status": status,
    }))
    .unwrap()
}

fn observed(job: Option<Job>, target: Target) -> Observed {
    Observed {
        job,
        failed_pod_message: None,
        stuck_pods: None,
        target,
        session: None,
        ended: None,
        foreign_results: None,
        foreign_object: None,
        max_active: None,
        pods_not_permitted: None,
        peers: Vec::new(),
        baseline: None,
    }
}

/// A session whose results are all in.
fn session_done(steps: Vec<crate::results::StepDetail>) -> SessionView {
    SessionView {
        stopping_for: None,
        stage: Stage::Done,
        progress: None,
        endpoints: None,
        discovery_note: None,
        refused: None,
        steps,
        fatal: None,
        discovered: true,
        lost: Vec::new(),
        taking_over: false,
    }
}

/// A session's view as the measurement's machine (`measure::follow`)
/// leaves it after `script` — `(session time, event)`, over one step — with
/// every pull and checkpoint write it asks for answered at once: its stage
/// is `Done` only once the machine ended, and its lost workers are the
/// machine's. The client figures (`steps`) are what the pulled results
/// would hold; `stopping_for` is the shell's clock since the stop.
fn through_machine(
    workers: &[u32],
    script: Vec<(f64, Event)>,
    steps: Vec<crate::results::StepDetail>,
    stopping_for: Option<Duration>,
) -> SessionView {
    let mut m = Follow::new(1, workers, None, 0);
    let mut queue: std::collections::VecDeque<_> = script.into();
    while let Some((now, event)) = queue.pop_front() {
        for effect in m.handle(now, event) {
            let answer = match effect {
                Effect::Pull(i) => Event::Pulled(i),
                Effect::Save(holding) => Event::Saved { holding, ok: true },
                _ => continue,
            };
            queue.push_front((now, answer));
        }
        assert_eq!(m.check(), Ok(()));
    }
    SessionView {
        stage: if m.is_done() {
            Stage::Done
        } else {
            Stage::Running
        },
        stopping_for,
        lost: m.lost().map(|(i, why)| lost_line(i, why)).collect(),
        ..session_done(steps)
    }
}

/// Worker `i`'s progress: `phase` in step 0, its `seq`th change.
fn progress(i: u32, phase: WorkerPhase, seq: u64, stopped: bool) -> (f64, Event) {
    let p = WorkerProgress {
        seq,
        phase,
        stopped,
        ..Default::default()
    };
    (seq as f64, Event::Progress(i, p))
}

/// One worker measuring, asked to stop at 3 s: the view while it stops, and
/// once it stopped and handed over what it measured (`steps`).
fn stopped_views(
    steps: Vec<crate::results::StepDetail>,
) -> (impl Fn(Option<Duration>) -> SessionView, SessionView) {
    let measuring = vec![
        progress(0, WorkerPhase::Measuring, 1, false),
        (3.0, Event::StopAsked),
    ];
    let running = {
        let measuring = measuring.clone();
        move |stopping_for| through_machine(&[0], measuring.clone(), Vec::new(), stopping_for)
    };
    let mut stopped = measuring;
    stopped.push(progress(0, WorkerPhase::Done, 4, true));
    let done = through_machine(&[0], stopped, steps, Some(Duration::from_secs(2)));
    assert_eq!(done.stage, Stage::Done, "the machine ended");
    (running, done)
}

/// A step whose client results are in.
fn measured() -> crate::results::StepDetail {
    crate::results::StepDetail {
        client: Some(crate::loadgen::engine::StepResult {
            requests: 4,
            successes: 4,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resolved() -> Target {
    let urls = vec!["http://vllm:8000".to_string()];
    Target::Resolved {
        reaches: urls.clone(),
        urls,
        owned: vec![],
    }
}

/// Feeds a decision's status back into the run, as the API server would.
fn advance(mut run: BenchmarkRun, d: &Decision) -> BenchmarkRun {
    run.status = Some(d.status.clone());
    run
}

fn condition<'a>(d: &'a Decision, type_: &str) -> (&'a str, &'a str) {
    let c = conditions::get(&d.status.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn a_new_run_creates_its_job_and_waits_pending() {
    let d = decide(&run(), &observed(None, resolved()), at(0));
    assert_eq!(
        d.actions,
        vec![Action::CreateJob(vec!["http://vllm:8000".into()])]
    );
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(d.status.start_time, Some(Time(at(0))));
    assert_eq!(d.status.job_name.as_deref(), Some("r1-loadgen"));
    assert_eq!(d.status.observed_generation, Some(1));
    assert_eq!(condition(&d, ACCEPTED), ("True", "Valid"));
}

#[test]
fn an_unready_target_keeps_the_run_discovering_and_explains_why() {
    let d = decide(
        &run(),
        &observed(
            None,
            Target::Unresolved("Service vllm has no ready endpoints".into()),
        ),
        at(0),
    );
    assert!(d.actions.is_empty());
    assert_eq!(d.status.phase, Some(Phase::Discovering));
    assert_eq!(condition(&d, DISCOVERED), ("False", "TargetNotReady"));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
    assert!(d.transition.unwrap().note.contains("no ready endpoints"));
}

#[test]
fn phases_follow_the_job_to_success() {
    let r = run();
    let d0 = decide(&r, &observed(None, resolved()), at(0));
    let r = advance(r, &d0);
    let d1 = decide(
        &r,
        &observed(
            Some(job(json!({"active": 2, "ready": 2}))),
            Target::NotNeeded,
        ),
        at(5),
    );
    assert_eq!(d1.status.phase, Some(Phase::Running));
    assert_eq!(condition(&d1, RUNNING), ("True", "LoadGeneratorsActive"));
    assert_eq!(d1.transition.as_ref().unwrap().reason, "Running");
    let r = advance(r, &d1);
    let done = job(json!({"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]}));
    let mut obs = observed(Some(done), Target::NotNeeded);
    obs.session = Some(session_done(vec![measured()]));
    let d2 = decide(&r, &obs, at(60));
    assert_eq!(d2.status.phase, Some(Phase::Succeeded));
    assert_eq!(d2.actions, vec![Action::WriteResults]);
    assert_eq!(d2.status.completion_time, Some(Time(at(60))));
    assert_eq!(d2.status.results_config_map.as_deref(), Some("r1-results"));
    assert_eq!(condition(&d2, SUCCEEDED), ("True", "Completed"));
    assert_eq!(condition(&d2, FAILED).0, "False");
    assert_eq!(condition(&d2, RUNNING).0, "False");
    let t = d2.transition.unwrap();
    assert!(!t.warning);
    assert_eq!(t.reason, "Succeeded");
}

#[test]
fn deciding_again_on_the_same_state_changes_nothing() {
    // No hot loop: a reconcile that sees its own status writes nothing new.
    let r = run();
    let states = [
        observed(Some(job(json!({"active": 1}))), Target::NotNeeded),
        observed(
            Some(job(
                json!({"conditions": [{"type": "Complete", "status": "True"}]}),
            )),
            Target::NotNeeded,
        ),
    ];
    let mut r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    for (i, obs) in states.iter().enumerate() {
        let d = decide(&r, obs, at(10 + i as i64));
        r = advance(r, &d);
        let again = decide(&r, obs, at(500 + i as i64));
        assert_eq!(again.status, d.status, "step {i}");
        assert!(again.transition.is_none(), "step {i}");
    }
}

#[test]
fn a_failed_job_fails_the_run_with_its_reason_and_the_workers_word() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let failed = job(json!({"failed": 1, "conditions": [{
        "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"
    }]}));
    let mut obs = observed(Some(failed), Target::NotNeeded);
    obs.failed_pod_message = Some("connection refused to http://vllm:8000 (exit code 1)".into());
    let d = decide(&r, &obs, at(30));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "BackoffLimitExceeded"));
    let msg = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(
        msg.contains("backoff limit") && msg.contains("connection refused"),
        "{msg}"
    );
    assert!(d.transition.unwrap().warning);
    assert_eq!(d.actions, vec![Action::WriteResults]);
}

/// Symptom of issue 33: a successor that found the workers gone and no
/// results in the checkpoint ended the run `Succeeded` with empty steps.
/// A run succeeds only with its client results.
#[test]
fn a_completed_job_without_client_results_never_succeeds() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let done = job(json!({"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]}));
    let telemetry_only = crate::results::StepDetail {
        window: Some(crate::results::Window {
            start_unix_ms: 1,
            end_unix_ms: 2,
        }),
        ..Default::default()
    };
    for (session, reason) in [
        (
            Some(session_done(vec![measured(), telemetry_only.clone()])),
            "ResultsMissing",
        ),
        (Some(session_done(vec![telemetry_only])), "ResultsMissing"),
        (Some(session_done(Vec::new())), "ResultsMissing"),
        (None, "ResultsMissing"),
        (
            Some(through_machine(
                &[0, 1],
                vec![
                    progress(0, WorkerPhase::Measuring, 1, false),
                    progress(1, WorkerPhase::Measuring, 1, false),
                    (2.0, Event::PodEnded(0, "its pod is gone".into())),
                    progress(1, WorkerPhase::Done, 3, false),
                ],
                vec![measured()],
                None,
            )),
            "WorkerLost",
        ),
    ] {
        let mut obs = observed(Some(done.clone()), Target::NotNeeded);
        obs.session = session;
        let d = decide(&r, &obs, at(60));
        assert_eq!(d.status.phase, Some(Phase::Failed), "{reason}");
        assert_eq!(condition(&d, FAILED), ("True", reason));
        assert!(d.actions.contains(&Action::WriteResults));
    }
    // One of two steps without its client results: the message says which.
    let mut obs = observed(Some(done), Target::NotNeeded);
    let missing = crate::results::StepDetail::default();
    obs.session = Some(session_done(vec![measured(), missing]));
    let d = decide(&r, &obs, at(60));
    let msg = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(
        msg.contains("no client results arrived for step(s) 2"),
        "{msg}"
    );
}

/// A worker that failed before the shared start (its index is not
/// retried): the run fails at once with its reason, not after the others
/// gave up waiting for their start.
#[test]
fn a_worker_that_failed_before_the_start_fails_the_run_at_once() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let mut obs = observed(
        Some(job(json!({"active": 1, "ready": 1, "failed": 1}))),
        Target::NotNeeded,
    );
    obs.failed_pod_message = Some("loading the tokenizer: no such file (exit code 1)".into());
    obs.session = Some(SessionView {
        stage: Stage::Starting,
        ..session_done(vec![])
    });
    let d = decide(&r, &obs, at(5));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "WorkerFailed"));
    assert!(d.actions.contains(&Action::SuspendJob));
    // Once the workers run, a failed one is the measurement's to handle;
    // so it is for a successor that has yet to follow them (a restart).
    for (stage, taking_over) in [(Stage::Running, false), (Stage::Starting, true)] {
        obs.session = Some(SessionView {
            stage,
            taking_over,
            ..session_done(vec![])
        });
        let d = decide(&r, &obs, at(5));
        assert_ne!(d.status.phase, Some(Phase::Failed));
        assert!(!d.actions.contains(&Action::SuspendJob));
    }
}

/// A worker killed mid-run (its index failed; the Job fails once the
/// others finished): the run says which load generator was lost and keeps
/// what the others measured.
#[test]
fn a_job_that_failed_for_a_lost_worker_keeps_the_others_results_and_says_whose() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let failed = job(json!({"failed": 1, "succeeded": 1, "conditions": [{
        "type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"
    }]}));
    let mut obs = observed(Some(failed), Target::NotNeeded);
    let step = crate::results::StepDetail {
        client: Some(crate::loadgen::engine::StepResult {
            requests: 4,
            successes: 4,
            ..Default::default()
        }),
        client_coverage: Some(crate::results::WorkerCoverage {
            workers: 2,
            reported: 1,
        }),
        ..crate::results::StepDetail::default()
    };
    // Both measure; load generator 1's pod is killed; 0 finishes.
    let script = vec![
        progress(0, WorkerPhase::Measuring, 1, false),
        progress(1, WorkerPhase::Measuring, 1, false),
        (
            2.0,
            Event::PodEnded(
                1,
                "its pod r-loadgen-1 ended without handing over its result".into(),
            ),
        ),
        progress(0, WorkerPhase::Done, 3, false),
    ];
    obs.session = Some(through_machine(&[0, 1], script, vec![step], None));
    assert_eq!(obs.session.as_ref().unwrap().stage, Stage::Done);
    let d = decide(&r, &obs, at(30));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "WorkerLost"));
    let msg = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(
        msg.contains("load generator 1: its pod r-loadgen-1 ended")
            && msg.contains("what the workers measured up to then is kept"),
        "{msg}"
    );
    assert!(d.actions.contains(&Action::WriteResults));
    // The step is in the status, marked incomplete for the missing worker.
    assert_eq!(
        condition(&d, "MeasurementValid"),
        ("False", "MissingWorkers")
    );
}

#[test]
fn a_job_past_its_deadline_is_a_timeout() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let failed = job(
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}),
    );
    let d = decide(&r, &observed(Some(failed), Target::NotNeeded), at(30));
    assert_eq!(condition(&d, FAILED), ("True", "Timeout"));
}

#[test]
fn cancel_suspends_the_job_and_keeps_results() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let mut r = r;
    r.spec.cancel = true;
    let d = decide(
        &r,
        &observed(Some(job(json!({"active": 1}))), Target::NotNeeded),
        at(20),
    );
    assert_eq!(d.actions, vec![Action::SuspendJob, Action::WriteResults]);
    assert_eq!(d.status.phase, Some(Phase::Cancelled));
    assert_eq!(condition(&d, SUCCEEDED), ("False", "Cancelled"));
    assert_eq!(condition(&d, FAILED), ("False", "Cancelled"));
    // Cancelling before anything started creates nothing.
    let mut fresh = run();
    fresh.spec.cancel = true;
    let d = decide(&fresh, &observed(None, Target::NotNeeded), at(0));
    assert_eq!(d.actions, vec![Action::WriteResults]);
}

/// A run that ends early while its workers run asks them to stop, waits for
/// what they measured (at most STOP_GRACE), and keeps it in its status.
#[test]
fn an_early_end_stops_the_workers_and_keeps_what_they_measured() {
    use crate::loadgen::engine::StepResult;
    use crate::results::StepDetail;
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let mut cancelled = r.clone();
    cancelled.spec.cancel = true;
    let mut timed = r.clone();
    timed.spec.timeout = Some(Duration::from_secs(10).into());
    for (r, at_s, phase) in [
        (cancelled, 20, Phase::Cancelled),
        (timed, 61, Phase::Failed),
    ] {
        let with = |session: SessionView| {
            let mut obs = observed(Some(job(json!({"active": 1}))), Target::NotNeeded);
            obs.session = Some(session);
            decide(&r, &obs, at(at_s))
        };
        let step = StepDetail {
            client: Some(StepResult {
                requests: 40,
                successes: 40,
                requests_per_s: 8.0,
                stopped: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (running, stopped) = stopped_views(vec![step]);
        // First the stop, and nothing ends yet.
        let d = with(running(None));
        assert_eq!(d.actions, vec![Action::StopMeasurement], "{phase:?}");
        assert_ne!(d.status.phase, Some(phase));
        assert_eq!(d.requeue_after, Some(Duration::from_millis(500)));
        // Waiting for the results.
        let d = with(running(Some(Duration::from_secs(3))));
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        // In: the run ends with the measured part in its status.
        let d = with(stopped);
        assert_eq!(d.status.phase, Some(phase));
        assert_eq!(d.actions, vec![Action::SuspendJob, Action::WriteResults]);
        let summary = d.status.summary.clone().expect("the measured part");
        assert_eq!(summary.request_throughput, Some(8.0));
        // Never in: the run ends without them after the grace.
        let d = with(running(Some(STOP_GRACE)));
        assert_eq!(d.status.phase, Some(phase));
        assert_eq!(d.actions, vec![Action::SuspendJob, Action::WriteResults]);
    }
}

#[test]
fn timeout_stops_the_run_and_is_requeued_for_until_then() {
    let mut r = run();
    r.spec.timeout = Some(Duration::from_secs(60).into());
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let running = || observed(Some(job(json!({"active": 1}))), Target::NotNeeded);
    let d = decide(&r, &running(), at(20));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(40)));
    let d = decide(&r, &running(), at(61));
    assert_eq!(d.actions, vec![Action::SuspendJob, Action::WriteResults]);
    assert_eq!(condition(&d, FAILED), ("True", "Timeout"));
    assert!(
        conditions::get(&d.status.conditions, FAILED)
            .unwrap()
            .message
            .contains("60s")
    );
}

#[test]
fn finished_runs_are_deleted_after_their_ttl() {
    let mut r = run();
    r.spec.ttl_seconds_after_finished = Some(100);
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let done = job(json!({"conditions": [{"type": "Complete", "status": "True"}]}));
    let r = advance(
        r.clone(),
        &decide(&r, &observed(Some(done.clone()), Target::NotNeeded), at(10)),
    );
    let d = decide(&r, &observed(Some(done.clone()), Target::NotNeeded), at(50));
    assert!(d.actions.is_empty());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
    let d = decide(&r, &observed(Some(done), Target::NotNeeded), at(111));
    assert_eq!(d.actions, vec![Action::DeleteRun]);
}

#[test]
fn an_invalid_spec_fails_without_launching_anything() {
    let mut r = run();
    r.spec.load.concurrency = Some(0);
    let d = decide(&r, &observed(None, resolved()), at(0));
    assert!(d.actions.is_empty());
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, ACCEPTED), ("False", "InvalidSpec"));
    assert!(
        conditions::get(&d.status.conditions, FAILED)
            .unwrap()
            .message
            .contains("spec.load.concurrency")
    );
}

#[test]
fn a_job_of_someone_else_is_not_adopted() {
    let mut foreign = job(json!({"active": 1}));
    foreign.metadata.owner_references = None;
    let d = decide(&run(), &observed(Some(foreign), Target::NotNeeded), at(0));
    assert_eq!(condition(&d, FAILED), ("True", "JobConflict"));
}

#[test]
fn a_stale_copy_after_the_end_keeps_the_results_and_never_collects_again() {
    // The measurement ended and the results were written from the session...
    let r = run();
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let running = decide(
        &r,
        &observed(
            Some(job(json!({"active": 1, "ready": 1}))),
            Target::NotNeeded,
        ),
        at(5),
    );
    let stale = advance(r, &running);
    assert_eq!(stale.status.as_ref().unwrap().phase, Some(Phase::Running));
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    let mut obs = observed(Some(done.clone()), Target::NotNeeded);
    obs.session = Some(session_done(vec![measured()]));
    let end = decide(&stale, &obs, at(30));
    assert_eq!(end.status.phase, Some(Phase::Succeeded));
    assert_eq!(end.actions, vec![Action::WriteResults]);

    // ...then a reconcile works from the older copy (phase Running, Job
    // complete) with the session gone. Without the written end it would enter
    // Collecting and, after the grace, write empty results over the good ones.
    let without = decide(
        &stale,
        &observed(Some(done.clone()), Target::NotNeeded),
        at(31),
    );
    assert_eq!(without.actions, vec![Action::WriteResults], "the hazard");
    let mut obs = observed(Some(done), Target::NotNeeded);
    obs.ended = Some(end.status.clone());
    for t in [31, 200] {
        let d = decide(&stale, &obs, at(t));
        assert!(d.stale, "at {t}");
        assert!(d.actions.is_empty(), "at {t}: {:?}", d.actions);
        assert_eq!(d.status, end.status, "at {t}");
        assert_ne!(d.status.phase, Some(Phase::Collecting));
        assert!(d.transition.is_none());
        assert_eq!(d.requeue_after, Some(STALE_RETRY));
    }
    // A copy that shows the end is decided as usual: the run stays final.
    let current = advance(stale, &end);
    let d = decide(&current, &obs, at(40));
    assert!(!d.stale);
    assert!(d.actions.is_empty());
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
}

#[test]
fn the_measurement_condition_says_what_the_energy_misses() {
    use crate::results::{Coverage, Gap, GapReason, StepDetail};
    let r = run();
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    let step = |index: u32, gaps: Vec<Gap>| StepDetail {
        index,
        coverage: Some(Coverage {
            gpus: 2,
            gpus_with_energy: 2,
            fraction: 0.998,
            complete: gaps.is_empty(),
            gaps,
            ..Default::default()
        }),
        ..Default::default()
    };
    let ended = |steps: Vec<StepDetail>| {
        let mut obs = observed(Some(done.clone()), Target::NotNeeded);
        obs.session = Some(session_done(steps));
        decide(&r, &obs, at(30))
    };
    let d = ended(vec![step(0, vec![])]);
    assert_eq!(condition(&d, MEASUREMENT_VALID), ("True", "Complete"));
    let msg = &conditions::get(&d.status.conditions, MEASUREMENT_VALID)
        .unwrap()
        .message;
    assert!(msg.contains("99.8 %") && msg.contains("all 2"), "{msg}");

    let restarted = Gap {
        reason: GapReason::Restarted,
        message: "the GPU telemetry covers 73.3 % of the client's 30.0 s window".into(),
    };
    let d = ended(vec![
        step(0, vec![]),
        step(1, vec![restarted]),
        step(2, vec![]),
    ]);
    assert_eq!(condition(&d, MEASUREMENT_VALID), ("False", "Restarted"));
    let msg = &conditions::get(&d.status.conditions, MEASUREMENT_VALID)
        .unwrap()
        .message;
    assert!(
        msg.starts_with("step 1: the GPU telemetry covers 73.3 %"),
        "{msg}"
    );
    assert!(msg.contains("left out of the status"), "{msg}");

    let d = ended(vec![StepDetail::default()]);
    assert_eq!(condition(&d, MEASUREMENT_VALID), ("False", "NoTelemetry"));

    // A worker's result missing: said first, whatever the energy covers.
    let mut partial = step(0, vec![]);
    partial.client_coverage = Some(crate::results::WorkerCoverage {
        workers: 2,
        reported: 1,
    });
    let d = ended(vec![partial]);
    assert_eq!(
        condition(&d, MEASUREMENT_VALID),
        ("False", "MissingWorkers")
    );
    let msg = &conditions::get(&d.status.conditions, MEASUREMENT_VALID)
        .unwrap()
        .message;
    assert!(msg.contains("1 of 2 load generators"), "{msg}");
}

#[test]
fn results_named_after_a_foreign_configmap_fail_before_anything_starts() {
    let mut obs = observed(None, resolved());
    obs.foreign_results = Some("team-config".into());
    let d = decide(&run(), &obs, at(0));
    assert!(
        d.actions.is_empty(),
        "no Job, no results written: {:?}",
        d.actions
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "ResultsConflict"));
    let msg = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(
        msg.contains("team-config") && msg.contains("left untouched"),
        "{msg}"
    );
    // Once the Job exists the check is not made again (the run's own results
    // ConfigMap then exists and is its own).
    let mut obs = observed(Some(job(json!({"active": 1}))), Target::NotNeeded);
    obs.foreign_results = Some("team-config".into());
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    assert_ne!(decide(&r, &obs, at(1)).status.phase, Some(Phase::Failed));
}

#[test]
fn a_name_the_run_s_objects_take_held_by_another_object_fails_before_anything_starts() {
    let mut obs = observed(None, resolved());
    obs.foreign_object = Some("ConfigMap r1-plan".into());
    let d = decide(&run(), &obs, at(0));
    assert!(d.actions.is_empty(), "nothing launched: {:?}", d.actions);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "NameConflict"));
    let msg = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(
        msg.contains("ConfigMap r1-plan") && msg.contains("left untouched"),
        "{msg}"
    );
}

#[test]
fn every_slo_metric_is_judged_in_its_direction() {
    let metrics = [
        "requestThroughput",
        "outputTokenThroughput",
        "ttftP50Ms",
        "ttftP99Ms",
        "itlP50Ms",
        "itlP99Ms",
        "latencyP99Ms",
        "ttfatP50Ms",
        "ttfatP99Ms",
        "errorRate",
        "goodput",
        "outputTokensPerJoule",
        "energyPerOutputTokenJ",
    ];
    for m in metrics {
        let judge = |bound: serde_json::Value, measured: Option<f64>| {
            let mut r = run();
            r.spec.slo = serde_json::from_value(json!([bound])).unwrap();
            let summary: crate::api::Summary =
                serde_json::from_value(measured.map_or(json!({}), |v| json!({ m: v }))).unwrap();
            slo_misses(&r, &summary)
        };
        assert!(
            judge(json!({"metric": m, "max": 20.0}), Some(10.0)).is_empty(),
            "{m}"
        );
        assert_eq!(
            judge(json!({"metric": m, "max": 5.0}), Some(10.0)),
            [format!("{m} 10 > 5")]
        );
        assert!(
            judge(json!({"metric": m, "min": 5.0}), Some(10.0)).is_empty(),
            "{m}"
        );
        assert_eq!(
            judge(json!({"metric": m, "min": 20.0}), Some(10.0)),
            [format!("{m} 10 < 20")]
        );
        assert_eq!(
            judge(json!({"metric": m, "max": 5.0}), None),
            [format!("{m} was not measured")]
        );
    }
}

/// A model that does not reason has its first answer token as its first
/// token: a TTFAT objective judges the TTFT then.
#[test]
fn a_first_answer_token_objective_uses_the_ttft_without_reasoning() {
    let mut r = run();
    r.spec.slo = serde_json::from_value(json!([{"metric": "ttfatP99Ms", "max": 100.0}])).unwrap();
    let plain: crate::api::Summary = serde_json::from_value(json!({"ttftP99Ms": 150.0})).unwrap();
    assert_eq!(slo_misses(&r, &plain), ["ttfatP99Ms 150 > 100"]);
    let reasoning: crate::api::Summary =
        serde_json::from_value(json!({"ttftP99Ms": 50.0, "ttfatP99Ms": 900.0})).unwrap();
    assert_eq!(slo_misses(&r, &reasoning), ["ttfatP99Ms 900 > 100"]);
}

#[test]
fn a_sweep_says_which_steps_missed_and_the_highest_load_that_met() {
    use crate::api::StepResult;
    let step = |i: i32, c: i32, missed: &[&str]| StepResult {
        index: i,
        trial: None,
        start_temperature_c: None,
        concurrency: Some(c),
        request_rate: None,
        summary: Default::default(),
        slo_met: Some(missed.is_empty()),
        slo_missed: missed.iter().map(|m| m.to_string()).collect(),
    };
    let (met, reason, msg) = results::slo_verdict(
        2,
        &[
            step(0, 1, &[]),
            step(1, 2, &[]),
            step(2, 4, &["ttftP99Ms 612 > 500"]),
        ],
    );
    assert_eq!((met, reason), (false, "Missed"));
    assert_eq!(
        msg,
        "concurrency 4: ttftP99Ms 612 > 500; the highest load that met every objective: concurrency 2"
    );
    let (met, _, msg) = results::slo_verdict(2, &[step(0, 1, &[]), step(1, 2, &[])]);
    assert!(met);
    assert_eq!(msg, "all 2 objectives met on every step");
    let (met, _, msg) = results::slo_verdict(1, &[step(0, 1, &["a"]), step(1, 2, &["b"])]);
    assert!(!met);
    assert!(msg.ends_with("no step met every objective"), "{msg}");
    let (_, _, msg) = results::slo_verdict(1, &[step(0, 8, &["errorRate 0.2 > 0.01"])]);
    assert_eq!(msg, "errorRate 0.2 > 0.01");
}

#[test]
fn workers_stuck_on_their_image_fail_the_run_with_the_pods_reason() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let mut obs = observed(
        Some(job(json!({"active": 1, "ready": 0}))),
        Target::NotNeeded,
    );
    obs.stuck_pods = Some("r1-loadgen-0-abc: ImagePullBackOff (Back-off pulling image)".into());
    // Within the grace: still waiting, and the Running condition says why.
    let d = decide(&r, &obs, at(20));
    assert_ne!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, RUNNING), ("False", "WorkersNotReady"));
    assert!(d.actions.is_empty());
    // Past it: failed with the pod's own reason, the Job stopped, results written.
    let d = decide(&r, &obs, at(60));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "WorkersNotStarted"));
    let msg = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(msg.contains("ImagePullBackOff"), "{msg}");
    assert_eq!(d.actions, vec![Action::SuspendJob, Action::WriteResults]);
}

#[test]
fn warnings_name_the_gpu_and_the_step_and_reach_a_condition() {
    use crate::results::{Coverage, StepDetail};
    use crate::telemetry::report::GpuResult;
    let gpu = |uuid: &str, warnings: &[&str]| GpuResult {
        key: uuid.into(),
        endpoint: "e".into(),
        identity: crate::telemetry::gpu::GpuIdentity {
            uuid: Some(uuid.into()),
            ..Default::default()
        },
        pods: vec![],
        pods_elsewhere: 0,
        samples: 3,
        scrape_interval_s: Some(1.0),
        update_period_s: Some(1.0),
        stale: false,
        energy: None,
        profile: None,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
        metrics: vec![],
    };
    let step = |index: u32, gpus: Vec<GpuResult>, with_energy: u32| StepDetail {
        index,
        coverage: Some(Coverage {
            gpus: gpus.len() as u32,
            gpus_with_energy: with_energy,
            ..Default::default()
        }),
        gpus,
        ..Default::default()
    };
    let steps = vec![
        step(
            0,
            vec![
                gpu("GPU-a", &["GPU temperature reached 91 °C (above 80 °C)"]),
                gpu("GPU-b", &[]),
            ],
            2,
        ),
        step(1, vec![gpu("GPU-a", &[]), gpu("GPU-b", &[])], 1),
    ];
    let w = results::warnings(&steps);
    assert_eq!(
        w,
        [
            "step 0: GPU-a: GPU temperature reached 91 °C (above 80 °C)",
            "step 1: energy over the whole step from only (1 of 2 GPUs): efficiency left out",
        ]
    );
    // Through a completed run: the Warnings condition with the count and the first few.
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    let mut obs = observed(Some(done), Target::NotNeeded);
    obs.session = Some(session_done(steps));
    let d = decide(&r, &obs, at(30));
    assert_eq!(condition(&d, WARNINGS), ("True", "Found"));
    let msg = &conditions::get(&d.status.conditions, WARNINGS)
        .unwrap()
        .message;
    assert!(
        msg.starts_with("2 warnings: step 0: GPU-a: GPU temperature"),
        "{msg}"
    );
}

#[test]
fn a_saturated_load_generator_is_a_warning() {
    use crate::loadgen::engine::StepResult;
    use crate::loadgen::engine::saturation::ClientLoad;
    use crate::results::StepDetail;
    let load = ClientLoad::judged(14.2, 30.0, 0.95, None);
    let step = |saturated: bool| StepDetail {
        client: Some(StepResult {
            client_saturated: saturated,
            client_load: Some(if saturated {
                load.clone()
            } else {
                ClientLoad::judged(0.3, 1.0, 0.2, None)
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(results::warnings(&[step(false)]).is_empty());
    let w = results::warnings(&[step(true)]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("the load generator was the bottleneck (its event loop woke 14.2 ms late")
            && w[0].contains("95 %")
            && w[0].contains("add workers"),
        "{w:?}"
    );
}

/// Telemetry let go for the run's budget is a warning naming what went
/// and the budget; with nothing refused at the bounds, there is no line of
/// zero refusals.
#[test]
fn telemetry_let_go_for_the_budget_is_a_warning() {
    use crate::results::{Dropped, Refused, StepDetail};
    let off = Dropped {
        server: true,
        gpu: false,
        budget_bytes: 32 << 20,
        pool: false,
    };
    let step = |index: u32, refused: Option<Refused>| StepDetail {
        index,
        refused,
        ..Default::default()
    };
    let over = |off: Dropped| {
        Some(Refused {
            over_budget: Some(off),
            ..Default::default()
        })
    };
    // Steps 2 and 3 open with the same let go: said once, at step 1; the
    // GPU telemetry let go at step 4 is said there.
    let both = Dropped { gpu: true, ..off };
    let w = results::warnings(&[
        step(0, None),
        step(1, over(off)),
        step(2, over(off)),
        step(3, over(off)),
        step(4, over(both)),
        step(5, over(both)),
    ]);
    assert_eq!(
        w,
        [
            format!("step 1: {}", off.reason()),
            format!("step 4: {}", both.reason())
        ],
        "one warning each time more is let go"
    );
    assert!(w[0].contains("server metrics were let go") && w[0].contains("32 MiB"));
    let w = results::warnings(&[step(
        0,
        Some(Refused {
            server_samples: 7,
            over_budget: Some(Dropped { gpu: true, ..off }),
            ..Default::default()
        }),
    )]);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("server metrics and GPU telemetry were let go"),
        "{w:?}"
    );
    assert!(w[1].contains("7 server samples"), "{w:?}");
}

#[test]
fn pods_the_installer_does_not_allow_fail_the_run_before_anything_starts() {
    let mut obs = observed(None, resolved());
    obs.pods_not_permitted =
        Some("load.podTemplate.image \"docker.io/evil/miner\" is not among the images this installation allows".into());
    let d = decide(&run(), &obs, at(0));
    assert!(d.actions.is_empty(), "no Job: {:?}", d.actions);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "NotPermitted"));
    let msg = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(msg.contains("docker.io/evil/miner"), "{msg}");
}

#[test]
fn workers_that_refuse_the_runs_token_fail_the_run_with_the_measurements_reason() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let mut obs = observed(
        Some(job(json!({"active": 1, "ready": 1}))),
        Target::NotNeeded,
    );
    obs.session = Some(SessionView {
        stage: Stage::Starting,
        fatal: Some(crate::measure::Fatal {
            reason: "WorkerTokenRejected",
            message: "the load generators refuse the run's token (HTTP 401)".into(),
        }),
        ..session_done(vec![])
    });
    let d = decide(&r, &obs, at(3));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "WorkerTokenRejected"));
    assert!(d.actions.contains(&Action::SuspendJob), "{:?}", d.actions);
    assert!(d.actions.contains(&Action::WriteResults), "{:?}", d.actions);
}

/// A run that ends at once (its pre-flight failed, or its Job failed) still
/// says what its telemetry spec was refused: the condition is set from the
/// session whichever way the run ends.
#[test]
fn a_run_that_ends_at_once_still_says_what_was_refused() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let refused = |session: SessionView| SessionView {
        refused: Some("pod llm/p is on its node's network (hostNetwork)".into()),
        discovered: true,
        ..session
    };
    let fatal = SessionView {
        stage: Stage::Starting,
        fatal: Some(crate::measure::Fatal {
            reason: "PreflightFailed",
            message: "the pre-flight check 'reachable' failed".into(),
        }),
        ..session_done(vec![])
    };
    let failed_job = job(
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    );
    for (job, session) in [
        (job(json!({"active": 1, "ready": 1})), refused(fatal)),
        (failed_job, refused(session_done(vec![]))),
    ] {
        let mut obs = observed(Some(job), Target::NotNeeded);
        obs.session = Some(session);
        let d = decide(&r, &obs, at(3));
        assert_eq!(d.status.phase, Some(Phase::Failed));
        let telemetry = conditions::get(&d.status.conditions, "TelemetryDiscovered")
            .expect("the telemetry condition");
        assert_eq!(telemetry.reason, "NotPermitted");
        assert!(telemetry.message.contains("hostNetwork"), "{telemetry:?}");
    }
}

/// `TelemetryDiscovered`: what was found is found, whatever the notes say (a
/// namespaced install cannot list namespaces, and says so beside it); notes
/// alone mean nothing was found; a refusal outranks both.
#[test]
fn the_telemetry_condition_keeps_notes_beside_what_was_found() {
    let counts = |gpu, server| crate::api::Endpoints {
        gpu: crate::api::EndpointCounts {
            discovered: gpu,
            reachable: gpu,
        },
        server: crate::api::EndpointCounts {
            discovered: server,
            reachable: server,
        },
    };
    let note = "the controller may not list namespaces, so namespaces labelled benchrun.dev/telemetry=readable are not opened to discovery";
    let telemetry = |endpoints, note: Option<&str>, refused: Option<&str>| {
        let mut v = session_done(Vec::new());
        v.stage = Stage::Running;
        v.endpoints = endpoints;
        v.discovery_note = note.map(str::to_string);
        v.refused = refused.map(str::to_string);
        let mut status = crate::api::BenchmarkRunStatus::default();
        results::follow(&mut status, &v, Some(1), &Time(Timestamp::UNIX_EPOCH));
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::TELEMETRY)
            .cloned()
            .expect("a TelemetryDiscovered condition");
        (c.status, c.reason, c.message)
    };
    let (status, reason, message) = telemetry(Some(counts(0, 1)), Some(note), None);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "EndpointsFound")
    );
    assert!(
        message.starts_with("0 GPU exporter and 1 server endpoints"),
        "{message}"
    );
    assert!(message.contains("may not list namespaces"), "{message}");

    let (status, reason, message) = telemetry(
        Some(counts(0, 0)),
        Some("no inference pods match app=x"),
        None,
    );
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NothingFound")
    );
    assert_eq!(message, "no inference pods match app=x");

    let (status, reason, message) = telemetry(
        Some(counts(1, 1)),
        Some(note),
        Some("spec.telemetry.gpu.urls[0]: refused"),
    );
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NotPermitted")
    );
    assert!(
        message.starts_with("spec.telemetry.gpu.urls[0]: refused; the controller"),
        "{message}"
    );
}

/// A Job deleted or failed under a running run: never made again; the
/// workers (terminating) are asked to stop, what they hand over is kept, and
/// the run fails saying which.
#[test]
fn a_deleted_or_failed_job_keeps_what_its_workers_measured() {
    use crate::loadgen::engine::StepResult;
    use crate::results::StepDetail;
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let failed = job(json!({"failed": 1, "conditions": [{
        "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"
    }]}));
    for (job, reason) in [(None, "JobDeleted"), (Some(failed), "BackoffLimitExceeded")] {
        let with = |session: SessionView| {
            let mut obs = observed(job.clone(), resolved());
            obs.session = Some(session);
            decide(&r, &obs, at(30))
        };
        let step = StepDetail {
            client: Some(StepResult {
                requests: 12,
                successes: 12,
                requests_per_s: 6.0,
                stopped: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (running, stopped) = stopped_views(vec![step]);
        let d = with(running(None));
        assert_eq!(d.actions, vec![Action::StopMeasurement], "{reason}");
        assert!(!d.status.phase.is_some_and(Phase::is_final), "{reason}");
        let d = with(running(Some(Duration::from_secs(3))));
        assert!(d.actions.is_empty(), "{reason}: {:?}", d.actions);
        let d = with(stopped);
        assert_eq!(d.status.phase, Some(Phase::Failed), "{reason}");
        assert_eq!(condition(&d, FAILED), ("True", reason));
        assert_eq!(
            d.actions,
            vec![Action::WriteResults],
            "{reason}: never a new Job"
        );
        let summary = d.status.summary.clone().expect("the measured part");
        assert_eq!(summary.request_throughput, Some(6.0));
        let message = &conditions::get(&d.status.conditions, FAILED)
            .unwrap()
            .message;
        assert!(message.contains("measured up to then is kept"), "{message}");
        // A session that ended with nothing handed over (the workers were
        // gone when a successor looked for them) says so too.
        let (_, nothing) = stopped_views(vec![StepDetail::default()]);
        let d = with(nothing);
        assert_eq!(d.status.phase, Some(Phase::Failed), "{reason}");
        let message = &conditions::get(&d.status.conditions, FAILED)
            .unwrap()
            .message;
        assert!(message.contains("did not arrive"), "{reason}: {message}");
        // Nothing handed over within the grace: the run ends without it.
        let d = with(running(Some(STOP_GRACE)));
        assert_eq!(d.status.phase, Some(Phase::Failed));
        assert_eq!(d.actions, vec![Action::WriteResults]);
        assert!(d.status.summary.is_none());
        let message = &conditions::get(&d.status.conditions, FAILED)
            .unwrap()
            .message;
        assert!(message.contains("did not arrive"), "{message}");
    }
}

/// Another run on the same target (`http://vllm:8000`, in or out of progress).
fn peer(name: &str, created: i64, active: bool) -> Peer {
    Peer {
        name: format!("llm/{name}"),
        uid: format!("u-{name}"),
        created: Some(at(created)),
        policy: crate::api::ConcurrencyPolicy::Queue,
        started: active.then(|| at(created)),
        ended: None,
        waiting: !active,
        discovering: false,
        keys: ["endpoint vllm:8000".to_string()].into(),
        owned: Default::default(),
    }
}

fn created(mut r: BenchmarkRun, s: i64) -> BenchmarkRun {
    r.metadata.creation_timestamp = Some(Time(at(s)));
    r
}

#[test]
fn a_run_through_a_service_sends_to_its_name_and_is_queued_by_its_pods() {
    let mut r = run();
    r.spec.target.url = None;
    r.spec.target.service_ref = Some(crate::api::ServiceRef {
        name: "vllm".into(),
        port: Some(80),
        port_name: None,
        scheme: crate::api::Scheme::Http,
        routing: crate::api::Routing::Service,
    });
    let target = Target::Resolved {
        urls: vec!["http://vllm.llm.svc:80".into()],
        reaches: vec!["http://10.0.0.1:8000".into(), "http://10.0.0.2:8000".into()],
        owned: vec!["10.0.0.2:8000".into()],
    };
    let d = decide(&r, &observed(None, target), at(0));
    assert_eq!(
        d.actions,
        vec![Action::CreateJob(vec!["http://vllm.llm.svc:80".into()])]
    );
    // Other runs sending to the same pods by address share this target.
    assert_eq!(
        d.status.target_endpoints,
        ["10.0.0.1:8000", "10.0.0.2:8000"]
    );
    // Of them, the one its namespace's pod holds is recorded as its own.
    assert_eq!(d.status.owned_target_endpoints, ["10.0.0.2:8000"]);
    let msg = &conditions::get(&d.status.conditions, DISCOVERED)
        .unwrap()
        .message;
    assert!(
        msg.contains("vllm.llm.svc:80") && msg.contains("through the Service's name"),
        "{msg}"
    );
}

#[test]
fn a_run_on_a_busy_target_waits_queued_and_starts_once_it_is_free() {
    let r = created(run(), 10);
    let mut obs = observed(None, resolved());
    obs.peers = vec![peer("first", 0, true), peer("second", 5, false)];
    let d = decide(&r, &obs, at(10));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.status.phase, Some(Phase::Queued));
    assert_eq!(d.status.queue_position, Some(2));
    assert_eq!(
        d.status.start_time, None,
        "the timeout does not run while queued"
    );
    assert_eq!(d.status.target_endpoints, ["vllm:8000"]);
    assert_eq!(condition(&d, QUEUED), ("True", "WaitingForTarget"));
    let msg = &conditions::get(&d.status.conditions, QUEUED)
        .unwrap()
        .message;
    assert!(
        msg.contains("llm/first") && msg.contains("place 2"),
        "{msg}"
    );
    assert_eq!(d.requeue_after, Some(QUEUE_POLL));
    assert_eq!(d.transition.as_ref().unwrap().reason, "Queued");
    // The first ends; the second goes: this run is next.
    let r = advance(r, &d);
    obs.peers = vec![peer("second", 5, true)];
    let d = decide(&r, &obs, at(20));
    assert_eq!(d.status.queue_position, Some(1));
    assert!(d.transition.is_none(), "still queued: no new event");
    // Both ended: it starts, and says the queue is behind it.
    let r = advance(r, &d);
    obs.peers = vec![];
    let d = decide(&r, &obs, at(30));
    assert_eq!(
        d.actions,
        vec![Action::CreateJob(vec!["http://vllm:8000".into()])]
    );
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(d.status.queue_position, None);
    assert_eq!(d.status.start_time, Some(Time(at(30))));
    assert_eq!(condition(&d, QUEUED), ("False", "TargetFree"));
    assert!(d.status.shared_with.is_empty());
    // A queued run can be cancelled: nothing was launched.
    let mut r2 = advance(
        created(run(), 10),
        &decide(&created(run(), 10), &observed(None, resolved()), at(10)),
    );
    r2.spec.cancel = true;
    let mut obs = observed(None, resolved());
    obs.peers = vec![peer("first", 0, true)];
    let d = decide(&r2, &obs, at(40));
    assert_eq!(d.status.phase, Some(Phase::Cancelled));
    assert!(d.actions.iter().all(|a| !matches!(a, Action::CreateJob(_))));
}

#[test]
fn a_run_past_the_installer_s_limit_waits_for_capacity_then_starts() {
    let r = created(run(), 10);
    let mut obs = observed(None, resolved());
    // Two runs on other targets in progress; the limit is two.
    let elsewhere = |name: &str| Peer {
        keys: [format!("endpoint {name}:8000")].into(),
        ..peer(name, 0, true)
    };
    obs.peers = vec![elsewhere("a"), elsewhere("b")];
    obs.max_active = Some(2);
    let d = decide(&r, &obs, at(10));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.status.phase, Some(Phase::Queued));
    assert_eq!(condition(&d, QUEUED), ("True", "WaitingForCapacity"));
    let msg = &conditions::get(&d.status.conditions, QUEUED)
        .unwrap()
        .message;
    assert!(msg.contains("2 runs are measured at once"), "{msg}");
    // One ends: it starts.
    let r = advance(r, &d);
    obs.peers = vec![elsewhere("a")];
    let d = decide(&r, &obs, at(20));
    assert!(
        matches!(d.actions.as_slice(), [Action::CreateJob(_)]),
        "{:?}",
        d.actions
    );
    assert_eq!(condition(&d, QUEUED), ("False", "TargetFree"));
}

/// Under a limit, a run that was still looking its target up is `Queued`
/// one round before it launches, so runs deciding beside it count it.
#[test]
fn a_run_that_found_its_target_takes_its_place_before_it_launches() {
    let r = created(run(), 10);
    let looking = decide(
        &r,
        &observed(None, Target::Unresolved("no ready endpoints".into())),
        at(10),
    );
    assert_eq!(looking.status.phase, Some(Phase::Discovering));
    let r = advance(r, &looking);
    let mut obs = observed(None, resolved());
    obs.max_active = Some(4);
    let d = decide(&r, &obs, at(11));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.status.phase, Some(Phase::Queued));
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
    let r = advance(r, &d);
    let d = decide(&r, &obs, at(11));
    assert!(
        matches!(d.actions.as_slice(), [Action::CreateJob(_)]),
        "{:?}",
        d.actions
    );
    // Without a limit it launches at once.
    let r = advance(created(run(), 10), &looking);
    let d = decide(&r, &observed(None, resolved()), at(11));
    assert!(
        matches!(d.actions.as_slice(), [Action::CreateJob(_)]),
        "{:?}",
        d.actions
    );
}

#[test]
fn runs_that_share_a_target_withhold_their_energy_and_say_with_whom() {
    use crate::results::{Coverage, StepDetail};
    use crate::telemetry::efficiency::Efficiency;
    let mut r = created(run(), 10);
    r.spec.concurrency_policy = crate::api::ConcurrencyPolicy::Allow;
    let mut obs = observed(None, resolved());
    obs.peers = vec![peer("first", 0, true)];
    // Allowed: it starts beside the run in progress and records it.
    let d = decide(&r, &obs, at(10));
    assert!(matches!(d.actions.as_slice(), [Action::CreateJob(_)]));
    assert_eq!(d.status.shared_with, ["llm/first"]);
    // A run in progress records a run that started beside it later.
    let alone = advance(
        created(run(), 0),
        &decide(&created(run(), 0), &observed(None, resolved()), at(0)),
    );
    let running = Some(job(json!({"active": 1, "ready": 1})));
    let mut obs = observed(running.clone(), Target::NotNeeded);
    obs.peers = vec![peer("allowed", 10, true)];
    let d = decide(&alone, &obs, at(12));
    assert_eq!(d.status.shared_with, ["llm/allowed"]);
    // Kept once the other has ended.
    let alone = advance(alone, &d);
    let d = decide(&alone, &observed(running, Target::NotNeeded), at(20));
    assert_eq!(d.status.shared_with, ["llm/allowed"]);
    // At the end: the energy was measured, and complete on its own, but the
    // status leaves it out and says why.
    let alone = advance(alone, &d);
    let step = StepDetail {
        coverage: Some(Coverage {
            gpus: 1,
            gpus_with_energy: 1,
            fraction: 1.0,
            complete: true,
            ..Default::default()
        }),
        efficiency: Some(Efficiency {
            gpu_count: 1,
            gpus_with_energy: 1,
            total_gpu_power_w: 300.0,
            total_gpu_energy_j: 9000.0,
            output_tokens_per_joule: Some(2.0),
            ..Default::default()
        }),
        ..measured()
    };
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    let mut obs = observed(Some(done), Target::NotNeeded);
    obs.session = Some(session_done(vec![step.clone()]));
    let d = decide(&alone, &obs, at(30));
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(condition(&d, MEASUREMENT_VALID), ("False", "SharedGpus"));
    let msg = &conditions::get(&d.status.conditions, MEASUREMENT_VALID)
        .unwrap()
        .message;
    assert!(
        msg.contains("llm/allowed") && msg.contains("left out"),
        "{msg}"
    );
    let summary = d.status.summary.unwrap();
    assert_eq!(summary.total_gpu_energy_j, None);
    assert_eq!(summary.output_tokens_per_joule, None);
    assert_eq!(summary.total_gpu_power_w, None);
    // The same step alone publishes its energy: the withholding is the sharing's.
    let mut clean = alone.clone();
    clean.status.as_mut().unwrap().shared_with.clear();
    let d = decide(&clean, &obs, at(30));
    assert_eq!(d.status.summary.unwrap().total_gpu_energy_j, Some(9000.0));
}

#[test]
fn only_a_change_of_progress_can_wait_for_the_next_progress_write() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let old = r.status.clone().unwrap();
    let mut new = old.clone();
    new.progress = Some(crate::api::Progress {
        requests_done: 10,
        ..Default::default()
    });
    assert!(progress_only(&old, &new));
    new.phase = Some(Phase::Running);
    assert!(
        !progress_only(&old, &new),
        "a change of phase is written at once"
    );
    let mut shared = old.clone();
    shared.shared_with = vec!["llm/other".into()];
    assert!(!progress_only(&old, &shared));
    assert!(progress_only(&old, &old));
}

#[test]
fn a_queued_run_held_by_what_it_recorded_looks_nothing_up_and_stays() {
    let r = created(run(), 10);
    let mut obs = observed(None, resolved());
    obs.peers = vec![peer("first", 0, true)];
    let queued = advance(r, &decide(&created(run(), 10), &obs, at(10)));
    // Held: the controller did not resolve the target again.
    obs.target = Target::Held;
    let d = decide(&queued, &obs, at(12));
    assert!(d.actions.is_empty());
    assert_eq!(d.status.phase, Some(Phase::Queued));
    assert_eq!(d.status.target_endpoints, ["vllm:8000"]);
    assert_eq!(d.requeue_after, Some(QUEUE_POLL));
    assert_eq!(
        d.status,
        queued.status.clone().unwrap(),
        "nothing new to write"
    );
    // The target came free in between: looked at again at once, resolved.
    obs.peers.clear();
    let d = decide(&queued, &obs, at(13));
    assert!(d.actions.is_empty());
    assert_eq!(d.requeue_after, Some(Duration::ZERO));
}

/// Load generators that finished without one request succeeding (a wrong CA,
/// a refused key) fail the run with what the server said; one success is
/// enough for the run to stand (its error rate says the rest).
#[test]
fn a_run_whose_every_request_failed_fails_with_the_servers_answer() {
    use crate::loadgen::engine::StepResult;
    use crate::loadgen::request::ErrorKind;
    use crate::results::StepDetail;
    let r = run();
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    let ended = |successes: u64| {
        let step = StepDetail {
            client: Some(StepResult {
                requests: 4,
                successes,
                errors: [(ErrorKind::Connect, 4 - successes)].into_iter().collect(),
                error_samples: vec![
                    "could not connect: invalid peer certificate: UnknownIssuer".into(),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut obs = observed(Some(done.clone()), Target::NotNeeded);
        obs.session = Some(session_done(vec![step]));
        decide(&r, &obs, at(30))
    };
    let d = ended(0);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "RequestsFailed"));
    let message = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(
        message.contains("not one of the 4 requests succeeded (4 could not connect)")
            && message.contains("UnknownIssuer"),
        "{message}"
    );
    assert_eq!(
        d.actions,
        vec![Action::WriteResults],
        "the results are kept"
    );
    let d = ended(1);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
}

#[test]
fn a_run_with_a_baseline_is_judged_when_it_ends_and_only_if_it_succeeded() {
    use crate::results::StepDetail;
    let mut r = run();
    r.spec.baseline = serde_json::from_value(
        json!({"runRef": "base", "tolerances": [{"metric": "ttftP50Ms", "maxRegression": "5%"}]}),
    )
    .unwrap();
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    // This run measured a TTFT p50 of 98.763 ms (the recorded client step).
    let recorded: crate::results::ResultsDocument =
        serde_json::from_str(include_str!("../../cli/testdata/summary.json")).unwrap();
    let step = StepDetail {
        client: recorded.details[0].client.clone(),
        ..Default::default()
    };
    let ended = |baseline: Option<super::super::baseline::Found>| {
        let mut obs = observed(Some(done.clone()), Target::NotNeeded);
        obs.session = Some(session_done(vec![step.clone()]));
        obs.baseline = baseline;
        decide(&r, &obs, at(30))
    };
    let with_ttft = |ms: f64| {
        let mut b = recorded.clone();
        b.summary.ttft_p50_ms = Some(ms);
        Some(Ok(("run llm/base".to_string(), b)))
    };
    // The baseline was 20 % faster: this run regressed.
    let d = ended(with_ttft(82.3));
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(condition(&d, "Regressed"), ("True", "Regressed"));
    let msg = &conditions::get(&d.status.conditions, "Regressed")
        .unwrap()
        .message;
    assert!(
        msg.starts_with("ttftP50Ms +20.0% (max 5%) against run llm/base"),
        "{msg}"
    );
    assert_eq!(d.gate.as_ref().map(|g| g.regressed.len()), Some(1));
    // As fast: within its tolerance.
    let d = ended(with_ttft(98.0));
    assert_eq!(condition(&d, "Regressed"), ("False", "WithinTolerance"));
    // A baseline that cannot be read: unknown, with the reason.
    let d = ended(Some(Err(
        "there is no BenchmarkRun base in namespace llm".into()
    )));
    assert_eq!(
        condition(&d, "Regressed"),
        ("Unknown", "BaselineUnavailable")
    );
    assert!(d.gate.is_none());
    // A run that failed is not judged.
    let failed = job(
        json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}]}),
    );
    let mut obs = observed(Some(failed), Target::NotNeeded);
    obs.baseline = with_ttft(98.0);
    let d = decide(&r, &obs, at(30));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, "Regressed"), ("Unknown", "NotJudged"));
    // A run without a baseline has no such condition.
    let mut obs = observed(Some(done.clone()), Target::NotNeeded);
    obs.session = Some(session_done(vec![step.clone()]));
    let d = decide(&run(), &obs, at(30));
    assert!(conditions::get(&d.status.conditions, "Regressed").is_none());
}

#[test]
fn trials_give_each_step_its_trial_and_the_summary_their_means() {
    let mut r = run();
    r.spec.repeat = Some(crate::api::Repeat {
        count: 3,
        cool_down: Duration::from_secs(1).into(),
    });
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    let recorded: crate::results::ResultsDocument =
        serde_json::from_str(include_str!("../../cli/testdata/summary.json")).unwrap();
    // Three trials of the recorded step, TTFT p50 90, 100 and 110 ms, the
    // GPU at 40, 45 and 50 °C as each began.
    let steps: Vec<crate::results::StepDetail> = (0..3)
        .map(|k| {
            let mut s = recorded.details[0].clone();
            s.index = k;
            let c = s.client.as_mut().unwrap();
            c.ttft_s.p50 = 0.09 + 0.01 * f64::from(k);
            let temp = s.gpus[0]
                .metrics
                .iter_mut()
                .find(|m| m.key == "gpu_temperature")
                .unwrap();
            temp.first = Some(40.0 + 5.0 * f64::from(k));
            s
        })
        .collect();
    let mut obs = observed(Some(done), Target::NotNeeded);
    obs.session = Some(session_done(steps.clone()));
    let d = decide(&r, &obs, at(60));
    let s = &d.status;
    let per_step: Vec<(Option<i32>, Option<f64>)> = s
        .steps
        .iter()
        .map(|s| (s.trial, s.start_temperature_c))
        .collect();
    assert_eq!(
        per_step,
        [
            (Some(0), Some(40.0)),
            (Some(1), Some(45.0)),
            (Some(2), Some(50.0))
        ]
    );
    assert_eq!(s.trials.len(), 1);
    let ttft = &s.trials[0].metrics["ttftP50Ms"];
    assert_eq!((ttft.n, ttft.mean), (3, 100.0));
    assert!((ttft.std - 10.0).abs() < 1e-9);
    assert_eq!(s.summary.as_ref().unwrap().ttft_p50_ms, Some(100.0));
    // A 10 % CV is no warning; past it would be.
    let warned = &conditions::get(&s.conditions, WARNINGS).unwrap().message;
    assert!(!warned.contains("varies across"), "{warned}");
    // Cancelled during the third trial: its step was cut short, so the
    // means are the first two trials', and a warning says why.
    let mut cut = steps.clone();
    cut[2].client.as_mut().unwrap().stopped = true;
    let mut obs = observed(
        Some(job(
            json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
        )),
        Target::NotNeeded,
    );
    obs.session = Some(session_done(cut));
    let s = decide(&r, &obs, at(60)).status;
    let ttft = &s.trials[0].metrics["ttftP50Ms"];
    assert_eq!((ttft.n, ttft.mean), (2, 95.0));
    assert_eq!(s.trials[0].trials, 2);
    assert_eq!(s.summary.as_ref().unwrap().ttft_p50_ms, Some(95.0));
    // Each step still shows what it measured.
    assert_eq!(s.steps.len(), 3);
    let warned = &conditions::get(&s.conditions, WARNINGS).unwrap().message;
    assert!(warned.contains("trial 3 did not run whole"), "{warned}");
}

/// A step that lost a third of its requests (llama.cpp's closed connections,
/// before benchrun sent them again) ends `Succeeded` but says so where users
/// look: `Warnings` names how many failed, of which kind, and the first
/// message; past `load.maxErrorRate` the measurement is not valid and the
/// efficiency is withheld in the status and in the step's own figures, while
/// the energy the GPUs spent is still reported. Within the rate: a warning only.
#[test]
fn failed_requests_are_a_warning_and_past_the_rate_withhold_the_efficiency() {
    use crate::loadgen::engine::StepResult as ClientStep;
    use crate::loadgen::request::ErrorKind;
    use crate::results::{Coverage, StepDetail};
    use crate::telemetry::efficiency::Efficiency;
    let r = run();
    let r = advance(r.clone(), &decide(&r, &observed(None, resolved()), at(0)));
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    let step = |failed: u64| {
        StepDetail {
        client: Some(ClientStep {
            requests: 60,
            successes: 60 - failed,
            errors: [(ErrorKind::Disconnected, failed)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            error_samples: (failed > 0)
                .then(|| "http://llm:8080/v1/chat/completions: connection closed before message completed".to_string())
                .into_iter()
                .collect(),
            output_tokens: 32 * (60 - failed),
            duration_s: 10.0,
            ..Default::default()
        }),
        coverage: Some(Coverage {
            gpus: 1,
            gpus_with_energy: 1,
            fraction: 1.0,
            complete: true,
            ..Default::default()
        }),
        efficiency: Some(Efficiency {
            gpu_count: 1,
            gpus_with_energy: 1,
            total_gpu_power_w: 100.0,
            total_gpu_energy_j: 1000.0,
            output_tokens_per_joule: Some(1.248),
            energy_per_output_token_j: Some(0.8),
            ..Default::default()
        }),
        ..Default::default()
    }
    };
    let ended = |r: &BenchmarkRun, steps: Vec<StepDetail>| {
        let mut obs = observed(Some(done.clone()), Target::NotNeeded);
        obs.session = Some(session_done(steps));
        decide(r, &obs, at(30))
    };
    let d = ended(&r, vec![step(21)]);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(
        condition(&d, MEASUREMENT_VALID),
        ("False", "FailedRequests")
    );
    let valid = &conditions::get(&d.status.conditions, MEASUREMENT_VALID)
        .unwrap()
        .message;
    assert!(
        valid.starts_with("21 of 60 requests failed (35.0 %)")
            && valid.contains("maxErrorRate (1 %)")
            && valid.ends_with("efficiency figures are left out (the energy stays)"),
        "{valid}"
    );
    let (status, _) = condition(&d, WARNINGS);
    assert_eq!(status, "True");
    let warned = &conditions::get(&d.status.conditions, WARNINGS)
        .unwrap()
        .message;
    assert!(
        warned.contains("21 of 60 requests failed")
            && warned.contains("closed before a response")
            && warned.contains("connection closed before message completed"),
        "{warned}"
    );
    let s = d.status.summary.as_ref().unwrap();
    assert_eq!(s.output_tokens_per_joule, None, "withheld");
    assert_eq!(s.energy_per_output_token_j, None, "withheld");
    assert_eq!(s.total_gpu_energy_j, Some(1000.0), "the energy is right");
    assert_eq!(s.error_count, Some(21));

    // The step's own efficiency (the ConfigMap's, the CLI's) is withheld too.
    let mut steps = vec![step(21)];
    crate::results::mark_run(&mut steps, &[], 0.01);
    assert_eq!(
        steps[0]
            .efficiency
            .as_ref()
            .unwrap()
            .output_tokens_per_joule,
        None
    );
    // Marking twice says it once.
    crate::results::mark_run(&mut steps, &[], 0.01);
    assert_eq!(steps[0].coverage.as_ref().unwrap().gaps.len(), 1);

    // A rate the user allows: valid, published, and still warned.
    let mut lenient = r.clone();
    lenient.spec.load.max_error_rate = Some(0.5);
    let d = ended(&lenient, vec![step(21)]);
    assert_eq!(condition(&d, MEASUREMENT_VALID).0, "True");
    assert_eq!(
        d.status.summary.as_ref().unwrap().output_tokens_per_joule,
        Some(1.248)
    );
    assert_eq!(condition(&d, WARNINGS).0, "True");
    // None failed: nothing said.
    let d = ended(&r, vec![step(0)]);
    assert_eq!(condition(&d, MEASUREMENT_VALID).0, "True");
    assert_eq!(condition(&d, WARNINGS), ("False", "None"));

    // In a sweep, a later step's failed requests are said first, before an
    // earlier step's energy gap.
    let mut restarted = step(0);
    restarted.coverage = Some(Coverage {
        gaps: vec![crate::results::Gap {
            reason: crate::results::GapReason::Restarted,
            message: "the GPU telemetry covers 73.3 % of the client's window".into(),
        }],
        complete: false,
        ..restarted.coverage.unwrap()
    });
    let mut failing = step(21);
    failing.index = 1;
    let d = ended(&r, vec![restarted, failing]);
    assert_eq!(
        condition(&d, MEASUREMENT_VALID),
        ("False", "FailedRequests")
    );
    let valid = &conditions::get(&d.status.conditions, MEASUREMENT_VALID)
        .unwrap()
        .message;
    assert!(
        valid.starts_with("step 1: 21 of 60")
            && valid.contains("step 0: the GPU telemetry covers 73.3 %")
            && valid.ends_with("energy and efficiency figures are left out of the status"),
        "{valid}"
    );
}

/// Outputs shorter than asked, and a server that closes its connections,
/// are said in `Warnings`: the figures are of what the server did.
#[test]
fn short_outputs_and_closed_connections_are_warnings() {
    use crate::loadgen::engine::StepResult as ClientStep;
    use crate::results::StepDetail;
    let step = StepDetail {
        client: Some(ClientStep {
            requests: 40,
            successes: 40,
            stopped_early: 7,
            retried: 2,
            new_connection_per_request: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut second = step.clone();
    second.index = 1;
    let warned = super::results::warnings(&[step, second]);
    assert!(
        warned
            .iter()
            .any(|w| w
                .starts_with("step 0: 7 of 40 successful requests ended before their max_tokens")),
        "{warned:?}"
    );
    // The server's habit once for the run, its retries summed.
    let closes: Vec<&String> = warned
        .iter()
        .filter(|w| w.contains("every request took a new connection"))
        .collect();
    assert_eq!(closes.len(), 1, "{warned:?}");
    assert!(
        closes[0].contains("4 requests were sent again"),
        "{warned:?}"
    );
}

/// A run from another namespace in progress on a target another namespace
/// owns gives way when one of the owner's runs waits: it ends early, as a
/// cancel does (its workers are stopped and what they measured is kept).
#[test]
fn a_guest_run_gives_way_to_the_owner_namespace_s_run() {
    let r = advance(run(), &decide(&run(), &observed(None, resolved()), at(0)));
    let owner = Peer {
        name: "vllm-team/theirs".into(),
        owned: ["endpoint vllm:8000".to_string()].into(),
        ..peer("theirs", 15, false)
    };
    let mut obs = observed(Some(job(json!({"active": 1}))), Target::NotNeeded);
    // A run of its own namespace on the same target does not stop it.
    obs.peers = vec![peer("mine", 15, false)];
    let d = decide(&r, &obs, at(20));
    assert_eq!(d.status.phase, Some(Phase::Running));
    assert!(!d.actions.contains(&Action::SuspendJob));
    obs.peers = vec![owner];
    let d = decide(&r, &obs, at(20));
    assert_eq!(d.actions, vec![Action::SuspendJob, Action::WriteResults]);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(condition(&d, FAILED), ("True", "Preempted"));
    let said = &conditions::get(&d.status.conditions, FAILED)
        .unwrap()
        .message;
    assert!(said.contains("gives way"), "{said}");
    // Its workers, asked to stop for this, failed its Job: still Preempted.
    let mut stopped = observed(
        Some(job(
            json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
        )),
        Target::NotNeeded,
    );
    stopped.peers = obs.peers.clone();
    stopped.session = Some(SessionView {
        stage: Stage::Done,
        stopping_for: Some(Duration::from_secs(2)),
        ..session_done(vec![])
    });
    let d = decide(&r, &stopped, at(22));
    assert_eq!(condition(&d, FAILED), ("True", "Preempted"));
    // Its Job finished on its own (it is collecting): it is not preempted.
    let mut done = observed(
        Some(job(
            json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
        )),
        Target::NotNeeded,
    );
    done.peers = obs.peers.clone();
    let d = decide(&r, &done, at(22));
    assert!(
        !d.status.conditions.iter().any(|c| c.reason == "Preempted"),
        "{:?}",
        d.status.conditions
    );
}
