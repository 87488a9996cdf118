//! The measurement task against workers served in the test and a cluster the
//! test fakes: what it pulls, checkpoints, lets go and publishes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::super::checkpoint::{Checkpoint, VERSION};
use super::super::{Cluster, Sessions, Setup, Stage};
use crate::api::BenchmarkRun;
use crate::contract::{RESULT_SCHEMA_VERSION, WORKER_PORT, WorkerPhase, WorkerResult};
use crate::discovery::{Found, PodInfo};
use crate::loadgen::engine::StepResult;
use crate::loadgen::plan::StopCondition;
use crate::worker::serve::testing::TestWorker;

/// The cluster as the test has it: fixed worker pods, nothing to discover,
/// and a checkpoint store in memory that records every write.
struct Fake {
    pods: Mutex<Vec<(u32, PodInfo)>>,
    checkpoint: Mutex<Option<Checkpoint>>,
    writes: Mutex<Vec<Checkpoint>>,
    /// Every read of the checkpoint fails.
    unreadable: bool,
    /// Writes are refused (a policy, a quota), and the ones refused.
    refuse_writes: std::sync::atomic::AtomicBool,
    refused: Mutex<Vec<Checkpoint>>,
    /// What discovery finds (nothing, unless a test says).
    found: Mutex<Found>,
}

impl Cluster for Fake {
    fn worker_pods(&self) -> BoxFuture<'_, Result<Vec<(u32, PodInfo)>, String>> {
        futures::future::ready(Ok(self.pods.lock().unwrap().clone())).boxed()
    }

    fn discover(&self) -> BoxFuture<'_, Result<Found, String>> {
        futures::future::ready(Ok(self.found.lock().unwrap().clone())).boxed()
    }

    fn read_checkpoint(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, String>> {
        let read = match self.unreadable {
            true => Err("piece 1 of r-checkpoint is missing".to_string()),
            false => Ok(self.checkpoint.lock().unwrap().clone()),
        };
        futures::future::ready(read).boxed()
    }

    fn write_checkpoint(&self, cp: Checkpoint, _seq: u64) -> BoxFuture<'_, Result<(), String>> {
        if self.refuse_writes.load(std::sync::atomic::Ordering::SeqCst) {
            self.refused.lock().unwrap().push(cp);
            let why = "admission webhook denied the request: checkpoints are refused here";
            return futures::future::ready(Err(why.to_string())).boxed();
        }
        self.writes.lock().unwrap().push(cp.clone());
        *self.checkpoint.lock().unwrap() = Some(cp);
        futures::future::ready(Ok(())).boxed()
    }

    fn checkpoint_name(&self) -> &str {
        "r-checkpoint"
    }
}

/// A fake cluster with these worker pods and no checkpoint yet.
fn fake(pods: Vec<(u32, PodInfo)>) -> Arc<Fake> {
    Arc::new(Fake {
        pods: Mutex::new(pods),
        checkpoint: Mutex::new(None),
        writes: Mutex::new(Vec::new()),
        unreadable: false,
        refuse_writes: Default::default(),
        refused: Mutex::new(Vec::new()),
        found: Mutex::new(Found::default()),
    })
}

/// A ready worker pod at `ip` (the worker's port is the contract's).
fn pod(index: u32, ip: &str) -> (u32, PodInfo) {
    let info = PodInfo {
        namespace: "llm".into(),
        name: format!("r-loadgen-{index}"),
        node: None,
        ip: Some(ip.into()),
        ready: true,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        ports: Vec::new(),
        ..PodInfo::default()
    };
    (index, info)
}

fn result(worker: u32, requests: u64) -> WorkerResult {
    WorkerResult {
        schema_version: RESULT_SCHEMA_VERSION,
        worker,
        steps: vec![StepResult {
            requests,
            successes: requests,
            output_tokens: 10 * requests,
            duration_s: 1.0,
            ..StepResult::default()
        }],
    }
}

fn run() -> BenchmarkRun {
    serde_saphyr::from_str(
        r#"
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: r, namespace: llm, uid: u-1}
spec:
  target: {url: "http://vllm:8000", model: m}
  load: {concurrency: 2, workers: 2, requestCount: 6}
"#,
    )
    .unwrap()
}

fn setup(cluster: Arc<Fake>, resumed: bool) -> Setup {
    Setup {
        cluster,
        run_uid: "u-1".into(),
        job: "r-loadgen".into(),
        steps: 1,
        stop: StopCondition::Requests(6),
        warmup: false,
        resumed,
        preflight: true,
        salvage: false,
        token: Some("t".into()),
        telemetry_budget_bytes: crate::measure::budget::DEFAULT_RUN_TELEMETRY_MIB << 20,
        telemetry_pool: None,
    }
}

async fn worker_at(ip: &str, index: u32) -> TestWorker {
    let addr = format!("{ip}:{WORKER_PORT}").parse().unwrap();
    TestWorker::serve(addr, index, Some("t".into())).await
}

const WITHIN: Duration = Duration::from_secs(20);

/// Why the session's measurement cannot go on, once it says.
async fn fatal_of(session: &super::super::Session) -> super::super::Fatal {
    let mut published = session.published.clone();
    tokio::time::timeout(WITHIN, published.wait_for(|p| p.view.fatal.is_some()))
        .await
        .unwrap()
        .unwrap()
        .view
        .fatal
        .clone()
        .unwrap()
}

/// Waits until every one of `workers` was started.
async fn started(workers: &[&TestWorker]) {
    tokio::time::timeout(WITHIN, async {
        while !workers.iter().all(|w| w.started()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the workers were started");
}

/// Two workers at `ip0` and `ip1` of a session of [`run`], both started
/// at the shared instant (the step opens then) and measuring.
async fn two_measuring(
    ip0: &str,
    ip1: &str,
) -> (
    TestWorker,
    TestWorker,
    Arc<Fake>,
    Sessions,
    Arc<super::super::Session>,
) {
    let w0 = worker_at(ip0, 0).await;
    let w1 = worker_at(ip1, 1).await;
    let fake = fake(vec![pod(0, ip0), pod(1, ip1)]);
    let sessions = Sessions::default();
    let session = sessions
        .ensure(&run(), || setup(fake.clone(), false))
        .unwrap();
    started(&[&w0, &w1]).await;
    for w in [&w0, &w1] {
        w.progress().set_phase_for_test(WorkerPhase::Measuring);
    }
    (w0, w1, fake, sessions, session)
}

/// A worker that is done is pulled, checkpointed and let go at once, while
/// the other still measures; the run's results merge both.
#[tokio::test]
async fn a_finished_worker_is_checkpointed_and_let_go_before_the_others_end() {
    let (ip0, ip1) = ("127.77.1.1", "127.77.1.2");
    let (w0, w1, fake, _sessions, session) = two_measuring(ip0, ip1).await;
    w1.finish(&result(1, 2));
    tokio::time::timeout(WITHIN, w1.acknowledged())
        .await
        .expect("worker 1 let go while worker 0 runs");
    let held = fake.checkpoint.lock().unwrap().clone().unwrap();
    assert_eq!(held.results.as_ref().map(Vec::len), Some(1));
    assert_eq!((held.workers, held.collected), (2, false));
    assert_eq!(session.view().stage, Stage::Running);
    w0.finish(&result(0, 4));
    tokio::time::timeout(WITHIN, w0.acknowledged())
        .await
        .unwrap();
    let view = session.wait_for_stage(Stage::Done, WITHIN).await;
    let client = view.steps[0].client.as_ref().unwrap();
    assert_eq!((client.requests, client.successes), (6, 6));
    let last = fake.writes.lock().unwrap().last().cloned().unwrap();
    assert!(last.collected);
    assert_eq!(last.results.map(|r| r.len()), Some(2));
}

/// A predecessor's checkpoint of a 2-worker run after its one step, holding
/// `results`.
fn after_step_0(results: Vec<WorkerResult>) -> Checkpoint {
    Checkpoint {
        version: VERSION,
        run_uid: "u-1".into(),
        origin_unix_ms: crate::clock::unix_ms() - 30_000,
        taken_unix_ms: crate::clock::unix_ms() - 1_000,
        last_scrape_t: 29.0,
        steps: Vec::new(),
        active: None,
        next_step: 1,
        notes: Vec::new(),
        results: Some(results),
        workers: 2,
        collected: false,
        idle: None,
        lost: Vec::new(),
    }
}

/// A successor of a session that pulled one worker's result (the worker has
/// exited since) takes it from the checkpoint and pulls the other's.
#[tokio::test]
async fn a_result_held_by_the_checkpoint_is_merged_with_the_live_workers() {
    let ip0 = "127.77.2.1";
    let w0 = worker_at(ip0, 0).await;
    w0.finish(&result(0, 4));
    let fake = Arc::new(Fake {
        // Worker 1 exited once its result was checkpointed: no pod answers for it.
        pods: Mutex::new(vec![pod(0, ip0)]),
        checkpoint: Mutex::new(Some(after_step_0(vec![result(1, 2)]))),
        writes: Mutex::new(Vec::new()),
        unreadable: false,
        refuse_writes: Default::default(),
        refused: Mutex::new(Vec::new()),
        found: Mutex::new(Found::default()),
    });
    let sessions = Sessions::default();
    let session = sessions
        .ensure(&run(), || setup(fake.clone(), true))
        .unwrap();
    let view = session.wait_for_stage(Stage::Done, WITHIN).await;
    tokio::time::timeout(WITHIN, w0.acknowledged())
        .await
        .unwrap();
    let client = view.steps[0].client.as_ref().unwrap();
    assert_eq!((client.requests, client.successes), (6, 6));
    let coverage = view.steps[0].client_coverage.unwrap();
    assert_eq!((coverage.workers, coverage.reported), (2, 2));
    let last = fake.writes.lock().unwrap().last().cloned().unwrap();
    assert!(last.collected);
    assert_eq!(last.results.map(|r| r.len()), Some(2));
}

/// Symptom of issue 33: one of two workers killed mid-step (SIGKILL: no
/// result handed over) lost every worker's result. Now its pod's end ends
/// its share: the other's result is pulled, checkpointed and let go, the
/// session ends with it, and the step's coverage and notes say what is
/// missing and whose.
#[tokio::test]
async fn one_of_two_workers_killed_mid_step_keeps_the_other_s_result() {
    let (ip0, ip1) = ("127.77.6.1", "127.77.6.2");
    let (w0, _w1, fake, _sessions, session) = two_measuring(ip0, ip1).await;
    // Worker 1's process is killed: its pod fails (its server in this test
    // goes on answering "measuring", as a hung one would).
    fake.pods.lock().unwrap()[1].1.ended = true;
    w0.finish(&result(0, 4));
    tokio::time::timeout(WITHIN, w0.acknowledged())
        .await
        .expect("the survivor is let go");
    let view = session.wait_for_stage(Stage::Done, WITHIN).await;
    let step = &view.steps[0];
    let client = step.client.as_ref().unwrap();
    assert_eq!(client.requests, 4, "the survivor's requests, all of them");
    let coverage = step.client_coverage.unwrap();
    assert_eq!((coverage.workers, coverage.reported), (2, 1));
    let notes = session.document().notes.join("\n");
    assert!(
        notes.contains("load generator 1's share is lost: its pod r-loadgen-1 ended"),
        "{notes}"
    );
    let last = fake.writes.lock().unwrap().last().cloned().unwrap();
    assert!(last.collected);
    assert_eq!(last.results.map(|r| r.len()), Some(1));
}

/// Symptom of issue 33: a three-step sweep stopped in its second step grew
/// a phantom third step. Now the results hold the steps measured: the
/// first whole, the second up to the stop, no third.
#[tokio::test]
async fn a_sweep_stopped_in_its_second_step_reports_two_steps() {
    let ip = "127.77.7.1";
    let w = worker_at(ip, 0).await;
    let fake = fake(vec![pod(0, ip)]);
    let sessions = Sessions::default();
    let mut one = run();
    one.spec.load.workers = 1;
    let session = sessions
        .ensure(&one, || Setup {
            steps: 3,
            ..setup(fake.clone(), false)
        })
        .unwrap();
    started(&[&w]).await;
    w.progress().enter_for_test(WorkerPhase::Measuring, 0);
    w.progress().enter_for_test(WorkerPhase::Measuring, 1);
    tokio::time::timeout(WITHIN, async {
        while fake
            .writes
            .lock()
            .unwrap()
            .last()
            .is_none_or(|c| c.steps.len() < 2)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second step opens");
    session.stop();
    tokio::time::timeout(WITHIN, async {
        while !w.progress().stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the worker is asked to stop");
    let mut r = result(0, 3);
    r.steps.push(StepResult {
        stopped: true,
        ..r.steps[0].clone()
    });
    w.finish(&r);
    let view = session.wait_for_stage(Stage::Done, WITHIN).await;
    assert_eq!(
        view.steps.iter().map(|s| s.index).collect::<Vec<_>>(),
        [0, 1],
        "no phantom third step"
    );
    assert!(
        view.steps
            .iter()
            .all(|s| s.window.is_some() && s.client.is_some())
    );
    let last = fake.writes.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last.steps.len(), last.active, last.next_step),
        (2, None, 3)
    );
}

/// Symptom of issue 33: a checkpoint that could not be read was taken for
/// none, and the new session overwrote it. Now the read is retried and the
/// run fails with the reason; nothing is written over it.
// On a paused clock: its reads are retried over about a minute.
#[tokio::test(start_paused = true)]
async fn a_checkpoint_that_cannot_be_read_fails_the_run_and_is_not_overwritten() {
    let ip = "127.77.8.1";
    let w = worker_at(ip, 0).await;
    let fake = Arc::new(Fake {
        unreadable: true,
        ..Arc::into_inner(fake(vec![pod(0, ip)])).unwrap()
    });
    let sessions = Sessions::default();
    let session = sessions
        .ensure(&run(), || setup(fake.clone(), true))
        .unwrap();
    let mut published = session.published.clone();
    let fatal = tokio::time::timeout(
        Duration::from_secs(120),
        published.wait_for(|p| p.view.fatal.is_some()),
    )
    .await
    .expect("the run fails within its retries")
    .unwrap()
    .view
    .fatal
    .clone()
    .unwrap();
    assert_eq!(fatal.reason, "CheckpointUnreadable");
    assert!(
        fatal.message.contains("piece 1 of r-checkpoint is missing"),
        "{}",
        fatal.message
    );
    assert!(
        fake.writes.lock().unwrap().is_empty(),
        "nothing written over it"
    );
    assert!(!w.started(), "no worker started");
}

/// A successor that finishes from a checkpoint whose collection was over
/// names the load generators its predecessor lost (the run ends
/// `WorkerLost`, not `Succeeded`).
#[tokio::test]
async fn a_successor_names_the_workers_its_predecessor_lost() {
    let lost = "load generator 1: its pod r-loadgen-1 ended without handing over its result";
    let fake = Arc::new(Fake {
        checkpoint: Mutex::new(Some(Checkpoint {
            collected: true,
            lost: vec![lost.into()],
            ..after_step_0(vec![result(0, 4)])
        })),
        ..Arc::into_inner(fake(Vec::new())).unwrap()
    });
    let sessions = Sessions::default();
    let session = sessions
        .ensure(&run(), || setup(fake.clone(), true))
        .unwrap();
    let view = session.wait_for_stage(Stage::Done, WITHIN).await;
    assert_eq!(view.lost, [lost]);
    assert!(view.taking_over);
    let coverage = view.steps[0].client_coverage.unwrap();
    assert_eq!((coverage.workers, coverage.reported), (2, 1));
}

/// A step change reaches a progress request the worker holds, as it happens.
#[tokio::test]
async fn the_controller_hears_a_step_change_through_its_held_request() {
    use crate::contract::ProgressQuery;
    use crate::measure::workers::{self, Worker};
    let ip = "127.77.3.1";
    let worker = worker_at(ip, 0).await;
    let client = crate::net::client::http_client(2);
    let w = Worker {
        index: 0,
        base: format!("http://{ip}:{WORKER_PORT}"),
        token: Some("t".into()),
    };
    let now = workers::progress(&client, &w, ProgressQuery::default())
        .await
        .unwrap();
    let q = ProgressQuery {
        after: now.seq,
        done: Some(now.done),
        wait_ms: 10_000,
    };
    let held = tokio::spawn(async move { workers::progress(&client, &w, q).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!held.is_finished(), "answered with nothing new");
    worker.progress().set_phase_for_test(WorkerPhase::Measuring);
    let p = tokio::time::timeout(Duration::from_secs(2), held)
        .await
        .expect("the change was not heard while the request was held")
        .unwrap()
        .unwrap();
    assert_eq!((p.phase, p.seq), (WorkerPhase::Measuring, now.seq + 1));
}

/// Workers that hold another token than the run's (their Job's token was
/// derived from another key) end the measurement with the reason.
#[tokio::test]
async fn workers_that_refuse_the_runs_token_end_the_measurement_with_why() {
    let ip = "127.77.4.1";
    let addr = format!("{ip}:{WORKER_PORT}").parse().unwrap();
    let w = TestWorker::serve(addr, 0, Some("planted".into())).await;
    let fake = fake(vec![pod(0, ip)]);
    let mut r = run();
    r.spec.load.workers = 1;
    let sessions = Sessions::default();
    let session = sessions.ensure(&r, || setup(fake, false)).unwrap();
    let fatal = fatal_of(&session).await.message;
    assert!(
        fatal.contains("benchrun-worker-key") && fatal.contains("401"),
        "{fatal}"
    );
    assert!(!w.started(), "the worker was not started");
}

/// A run that asks for a time series gets one: a header, a scrape record at
/// each of the step's boundary scrapes, and the client's progress; a run that
/// does not ask keeps none.
#[tokio::test]
async fn a_run_that_asks_for_a_time_series_keeps_one() {
    use std::sync::atomic::Ordering;
    let ip = "127.77.5.1";
    let w = worker_at(ip, 0).await;
    let fake = fake(vec![pod(0, ip)]);
    let mut r = run();
    r.spec.load.workers = 1;
    r.spec.results.timeseries = true;
    let sessions = Sessions::default();
    let session = sessions.ensure(&r, || setup(fake.clone(), false)).unwrap();
    tokio::time::timeout(WITHIN, async {
        while !w.started() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    w.progress().set_phase_for_test(WorkerPhase::Measuring);
    w.progress().done.store(6, Ordering::Relaxed);
    w.progress().ok.store(6, Ordering::Relaxed);
    w.finish(&result(0, 6));
    session.wait_for_stage(Stage::Done, WITHIN).await;
    let series = session.timeseries().expect("a time series");
    let records: Vec<serde_json::Value> = series
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["type"], "header", "{series}");
    let scrapes = records
        .iter()
        .filter(|r| r["type"] == "scrape" && r["step"] == 0);
    assert!(
        scrapes.count() >= 2,
        "the opening and closing scrapes: {series}"
    );
    let done = records
        .iter()
        .filter(|r| r["type"] == "progress")
        .filter_map(|r| r["requestsDone"].as_u64())
        .max();
    assert_eq!(done, Some(6), "{series}");

    let mut plain = run();
    plain.metadata.uid = Some("u-2".into());
    let other = sessions
        .ensure(&plain, || setup(fake.clone(), false))
        .unwrap();
    assert!(other.timeseries().is_none());
}

/// The Job deleted before this controller followed the run: the workers (one
/// stopping, so not ready, its result held; one orphaned and still measuring)
/// are asked to stop and their results pulled, and the step the predecessor left open is closed with the time it was away
/// recorded as its interruption.
#[tokio::test]
async fn a_session_whose_job_is_gone_pulls_what_its_stopping_workers_hold() {
    use super::super::checkpoint::SavedStep;
    use super::super::collect::StepTelemetry;
    use crate::clock::unix_ms;
    let (ip0, ip1) = ("127.77.11.1", "127.77.11.2");
    let stopping = worker_at(ip0, 0).await;
    stopping.finish(&result(0, 4));
    let orphaned = worker_at(ip1, 1).await;
    let mut terminating = pod(0, ip0);
    terminating.1.ready = false;
    let now = unix_ms();
    let open = StepTelemetry::new(
        crate::telemetry::Filter::default(),
        now - 20_000,
        10.0,
        false,
    );
    let fake = Arc::new(Fake {
        pods: Mutex::new(vec![terminating, pod(1, ip1)]),
        checkpoint: Mutex::new(Some(Checkpoint {
            version: VERSION,
            run_uid: "u-1".into(),
            origin_unix_ms: now - 30_000,
            taken_unix_ms: now - 5_000,
            last_scrape_t: 25.0,
            steps: vec![SavedStep::of(&open)],
            active: Some(0),
            next_step: 1,
            notes: Vec::new(),
            results: None,
            workers: 2,
            collected: false,
            idle: None,
            lost: Vec::new(),
        })),
        writes: Mutex::new(Vec::new()),
        unreadable: false,
        refuse_writes: Default::default(),
        refused: Mutex::new(Vec::new()),
        found: Mutex::new(Found::default()),
    });
    let sessions = Sessions::default();
    let session = sessions
        .ensure(&run(), || Setup {
            salvage: true,
            ..setup(fake.clone(), true)
        })
        .unwrap();
    tokio::time::timeout(WITHIN, orphaned.progress().stop.cancelled())
        .await
        .expect("the orphaned worker is asked to stop");
    orphaned.finish(&result(1, 2));
    let view = session.wait_for_stage(Stage::Done, WITHIN).await;
    assert!(
        stopping.progress().stop.is_cancelled(),
        "every worker is asked to stop"
    );
    let client = view.steps[0].client.as_ref().unwrap();
    assert_eq!((client.requests, client.successes), (6, 6));
    let coverage = view.steps[0].client_coverage.unwrap();
    assert_eq!((coverage.workers, coverage.reported), (2, 2));
    for w in [&stopping, &orphaned] {
        tokio::time::timeout(WITHIN, w.acknowledged())
            .await
            .expect("each worker is let go once its result is held");
    }
    let last = fake.writes.lock().unwrap().last().cloned().unwrap();
    assert!(last.collected);
    assert_eq!(last.active, None, "the open step is closed");
    let step = &last.steps[0];
    assert_eq!(step.interruptions.len(), 1, "{:?}", step.interruptions);
    let (from, to) = step.interruptions[0];
    assert_eq!(from, 25.0, "from the predecessor's last scrape");
    assert!(to >= 30.0, "to the successor's closing scrape: {to}");
    assert!(step.window.end_unix_ms >= now, "{:?}", step.window);
}

/// A pre-flight that fails ends the measurement before any worker starts,
/// with the check and what the server said; a passing one lets it go on.
#[tokio::test]
async fn a_failed_preflight_ends_the_measurement_before_the_start() {
    use crate::loadgen::preflight::{Check, Report};
    let ip = "127.77.10.1";
    let addr = format!("{ip}:{WORKER_PORT}").parse().unwrap();
    let report = Report {
        failed: Some(Check::Model),
        message: "the server does not serve the model \"m\"; it serves llama".into(),
        notes: Vec::new(),
    };
    let w = TestWorker::serve_reporting(addr, 0, Some("t".into()), &report).await;
    let mut r = run();
    r.spec.load.workers = 1;
    let sessions = Sessions::default();
    let session = sessions
        .ensure(&r, || setup(fake(vec![pod(0, ip)]), false))
        .unwrap();
    let fatal = fatal_of(&session).await;
    assert_eq!(fatal.reason, "PreflightFailed");
    assert!(
        fatal.message.contains("'model'") && fatal.message.contains("it serves llama"),
        "{}",
        fatal.message
    );
    assert!(!w.started(), "no load was sent");
}

/// Parsing a scrape's pages does not hold up the runtime: on a runtime with
/// one worker thread, a task beside the parse goes on running while the
/// parse blocks (it waits, at most 10 s, for the other task to tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn parsing_runs_beside_the_runtime_s_other_tasks() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let seen = tokio::spawn(async move {
        super::scrape::off_runtime(|| {
            let from = ticks.load(Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if ticks.load(Ordering::SeqCst) >= from + 5 {
                    return true;
                }
                std::thread::yield_now();
            }
            false
        })
    })
    .await
    .unwrap();
    ticker.abort();
    assert!(seen, "the other task did not run while the parse blocked");
}

/// Symptom of issue 33: workers were let go whether or not the checkpoint
/// holding their results was written. A write that is refused keeps the
/// worker: its result is held in hand, the write is tried again, and the
/// worker is let go only once a write holding its result lands.
#[tokio::test]
async fn a_worker_is_let_go_only_once_a_checkpoint_holding_its_result_is_written() {
    let (ip0, ip1) = ("127.77.1.41", "127.77.1.42");
    let (w0, w1, fake, _sessions, session) = two_measuring(ip0, ip1).await;
    fake.refuse_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    w1.finish(&result(1, 2));
    let holds_1 = |cp: &Checkpoint| {
        cp.results
            .as_ref()
            .is_some_and(|r| r.iter().any(|r| r.worker == 1))
    };
    // Refused twice with worker 1's result in it: tried again.
    tokio::time::timeout(WITHIN, async {
        while fake
            .refused
            .lock()
            .unwrap()
            .iter()
            .filter(|cp| holds_1(cp))
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a refused write is tried again");
    assert!(
        w1.acknowledged().now_or_never().is_none(),
        "worker 1 let go while no checkpoint held its result"
    );
    assert!(!fake.writes.lock().unwrap().iter().any(holds_1));
    // Writable again: the next try lands, and only then is it let go.
    fake.refuse_writes
        .store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::timeout(WITHIN, w1.acknowledged())
        .await
        .expect("worker 1 let go once a checkpoint holds its result");
    assert!(fake.writes.lock().unwrap().iter().any(holds_1));
    assert_eq!(session.view().stage, Stage::Running);
    w0.finish(&result(0, 4));
    let view = session.wait_for_stage(Stage::Done, WITHIN).await;
    let client = view.steps[0].client.as_ref().unwrap();
    assert_eq!((client.requests, client.successes), (6, 6));
}

/// A scrape round keeps at most its bound of pages until they are
/// ingested: answers past it are let go at once, saying why (their
/// endpoints' logs record the failure), and errors pass through.
#[test]
fn a_scrape_round_keeps_no_more_pages_than_its_bound() {
    use super::scrape::{Answer, within_round};
    use crate::measure::collect::Kind;
    use crate::scrape::fetch::{FetchError, Payload};
    let page = |n: usize, url: &str| -> Answer {
        (
            Kind::Server,
            url.into(),
            Ok(Payload {
                url: url.into(),
                body: bytes::Bytes::from(vec![b'#'; n]),
                format: crate::scrape::Format::Prometheus,
            }),
        )
    };
    let mut held = 0;
    let kept = |a: &Answer| a.2.is_ok();
    assert!(kept(&within_round(&mut held, 100, page(60, "a"))));
    let full = within_round(&mut held, 100, page(60, "b"));
    assert!(
        matches!(full.2, Err(FetchError::RoundFull(100))),
        "{:?}",
        full.2.err()
    );
    assert!(
        kept(&within_round(&mut held, 100, page(40, "c"))),
        "room for it"
    );
    let failed: Answer = (Kind::Gpu, "d".into(), Err(FetchError::Status(503)));
    assert!(matches!(
        within_round(&mut held, 100, failed).2,
        Err(FetchError::Status(503))
    ));
    assert_eq!(held, 100);
    assert!(!kept(&within_round(&mut held, 100, page(1, "e"))));
}

/// Through a whole session: a server discovered beside the run serves a
/// page of 2,000 series with 1 KB labels, past a 1 MiB budget at the first
/// sizing. The step's server metrics are let go, the run's notes say so
/// once, the step's detail names what went and keeps nothing of the server,
/// and the checkpoint written carries it.
#[tokio::test]
async fn a_session_past_its_budget_lets_the_server_metrics_go_and_says_so() {
    use axum::{Router, routing::get};
    let page: String = std::iter::once("# TYPE evil gauge\n".to_string())
        .chain((0..2000).map(|i| format!("evil{{i=\"{i}\",pad=\"{}\"}} 1\n", "x".repeat(1000))))
        .collect();
    let app = Router::new().route("/metrics", get(move || async move { page }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let ip = "127.77.9.1";
    let w = worker_at(ip, 0).await;
    let fake = fake(vec![pod(0, ip)]);
    fake.found.lock().unwrap().servers = vec![(url.clone(), None)];
    let mut r = run();
    r.spec.load.workers = 1;
    let sessions = Sessions::default();
    let session = sessions
        .ensure(&r, || Setup {
            telemetry_budget_bytes: 1 << 20,
            ..setup(fake.clone(), false)
        })
        .unwrap();
    started(&[&w]).await;
    w.progress().set_phase_for_test(WorkerPhase::Measuring);
    // The step is open and scraped: the page was sized and let go.
    let said = |doc: &super::super::Document| {
        doc.notes
            .iter()
            .filter(|n| n.contains("server metrics were let go"))
            .count()
    };
    tokio::time::timeout(WITHIN, async {
        while said(&session.document()) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the budget was passed and said");
    w.progress()
        .done
        .store(6, std::sync::atomic::Ordering::Relaxed);
    w.progress()
        .ok
        .store(6, std::sync::atomic::Ordering::Relaxed);
    w.finish(&result(0, 6));
    session.wait_for_stage(Stage::Done, WITHIN).await;
    let doc = session.document();
    assert_eq!(said(&doc), 1, "said once: {:?}", doc.notes);
    let note = doc.notes.iter().find(|n| n.contains("let go")).unwrap();
    assert!(
        note.starts_with("step 0: ") && note.contains("budget of 1 MiB"),
        "{note}"
    );
    let step = &doc.steps[0];
    assert!(step.server.is_empty(), "{:?}", step.server);
    let off = step
        .refused
        .and_then(|r| r.over_budget)
        .expect("refused.overBudget");
    assert!(off.server && !off.gpu && !off.pool, "{off:?}");
    let cp = fake
        .writes
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a checkpoint");
    assert!(cp.steps[0].dropped.server, "the checkpoint carries it");
}
