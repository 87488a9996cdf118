//! The worker's side of the contract with the controller ([`crate::contract`],
//! DESIGN.md "Flow of one run"), served on [`WORKER_PORT`] at `$POD_IP`.
//!
//! A bare `GET /result` changes nothing: the result is served again to
//! whoever asks (a new leader that never saw it, a retry whose answer was
//! lost). The worker exits once the result is acknowledged, or after
//! `--linger`; it prints the result on stdout too, so a run's log keeps it
//! either way.

use crate::clock::unix_ms;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Notify, watch};

use super::LoadgenOpts;
use crate::contract::{
    MAX_PROGRESS_WAIT, ProgressQuery, RESULT_SCHEMA_VERSION, Start, WORKER_PORT, WorkerResult,
    names,
};
use crate::expose::{NumberStyle, Page};
use crate::loadgen::engine::{self, Progress};
use crate::loadgen::plan::LoadPlan;
use crate::scrape::Kind;

/// The most a shared start instant may lie in the future.
const MAX_START_DELAY: Duration = Duration::from_secs(60);

struct Shared {
    index: u32,
    progress: Arc<Progress>,
    start: watch::Sender<Option<Start>>,
    result: std::sync::Mutex<Option<String>>,
    /// The controller acknowledged the result: the worker may go.
    acknowledged: Notify,
    /// What `Authorization: Bearer` must carry (`None`: the API is open).
    token: Option<String>,
    /// The plan and API key the pre-flight checks the target with.
    target: Option<(LoadPlan, Option<String>)>,
    /// The pre-flight's report (JSON), once it ran.
    preflight: tokio::sync::OnceCell<String>,
    /// The worker has prepared its load (or failed to): `/ready` answers
    /// only then, so that the controller's start instant, and the first
    /// step's window with it, come after the preparation's requests.
    prepared: std::sync::atomic::AtomicBool,
}

/// Runs as a Job worker: serve, wait for the start, run, serve the result.
pub async fn run(
    opts: &LoadgenOpts,
    plan: &LoadPlan,
    index: u32,
    api_key: Option<&str>,
    token: Option<String>,
) -> Result<WorkerResult, String> {
    let (start, mut started) = watch::channel(None);
    let shared = Arc::new(Shared {
        index,
        progress: Arc::new(Progress::default()),
        start,
        result: std::sync::Mutex::new(None),
        acknowledged: Notify::new(),
        token,
        target: Some((plan.clone(), api_key.map(str::to_string))),
        preflight: tokio::sync::OnceCell::new(),
        prepared: std::sync::atomic::AtomicBool::new(false),
    });
    let addr = crate::net::listen_addr(None, WORKER_PORT);
    let listener = crate::net::bind(addr).await?;
    tokio::spawn(crate::net::serve(listener, router(shared.clone())));
    // The pod is being deleted (its Job deleted or failed, a node drained):
    // the load ends where it is, as on `POST /stop`, and the result waits for
    // the controller until the pod's grace period runs out.
    let stop = shared.progress.stop.clone();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("listening for SIGTERM: {e}"))?;
    tokio::spawn(async move {
        if terminate.recv().await.is_some() {
            eprintln!(
                "benchrun loadgen: terminating: the load stops and the result waits for the controller"
            );
            stop.cancel();
        }
    });

    // The load's preparation (its requests to the target) runs now, before
    // the shared start instant; `/ready` answers once it is done.
    let preparing = {
        let (plan, key, shared) = (plan.clone(), api_key.map(str::to_string), shared.clone());
        tokio::spawn(async move {
            let prepared = engine::prepare(&plan, index, key.as_deref()).await;
            shared
                .prepared
                .store(true, std::sync::atomic::Ordering::Release);
            prepared
        })
    };
    if opts.wait_for_start {
        let wait = started.wait_for(Option::is_some);
        let stopped = shared.progress.stop.clone();
        let at = match tokio::select! {
            waited = tokio::time::timeout(opts.start_timeout, wait) => waited,
            () = stopped.cancelled() => return Err("stopped before the start".into()),
        } {
            Ok(Ok(s)) => s.and_then(|s| s.at_unix_ms),
            _ => {
                return Err(format!(
                    "no POST /start came within {:?}; the controller did not start this worker",
                    opts.start_timeout
                ));
            }
        };
        if let Some(at) = at {
            let delay = Duration::from_millis(at.saturating_sub(unix_ms()));
            tokio::time::sleep(delay.min(MAX_START_DELAY)).await;
        }
    } else {
        shared.start.send_replace(Some(Start::default()));
    }
    let result = WorkerResult {
        schema_version: RESULT_SCHEMA_VERSION,
        worker: index,
        steps: engine::run_prepared(
            preparing
                .await
                .map_err(|e| format!("preparing the load: {e}"))??,
            shared.progress.clone(),
        )
        .await,
    };
    let json = serde_json::to_string(&result).map_err(|e| e.to_string())?;
    println!("{json}");
    *shared.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(json);
    if tokio::time::timeout(opts.linger, shared.acknowledged.notified())
        .await
        .is_ok()
    {
        // Let the answer to the acknowledgement leave before the process ends
        // (were it lost, the controller holds the result all the same).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(result)
}

fn router(shared: Arc<Shared>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/progress", get(progress))
        .route("/start", post(start))
        .route("/result", get(result))
        .route("/result/ack", post(acknowledge))
        .route("/stop", post(stop))
        .route("/preflight", post(preflight))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            authorize,
        ));
    Router::new()
        .route("/ready", get(ready))
        .merge(guarded)
        .with_state(shared)
}

/// Ready once the load is prepared (its prompts sized, its connections'
/// habits learned): before that, 503.
async fn ready(State(s): State<Arc<Shared>>) -> Response {
    if s.prepared.load(std::sync::atomic::Ordering::Acquire) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "preparing the load\n").into_response()
    }
}

/// Lets a request through only with the worker's token (when it has one).
async fn authorize(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this worker answers its run's controller only\n",
        )
            .into_response()
    }
}

/// Compares in time that does not depend on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn start(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: Start = if body.iter().all(u8::is_ascii_whitespace) {
        Start::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("bad start request: {e}\n"))
                    .into_response();
            }
        }
    };
    if start_once(&s, req) {
        (StatusCode::ACCEPTED, "starting\n").into_response()
    } else {
        (StatusCode::CONFLICT, "already started\n").into_response()
    }
}

async fn result(State(s): State<Arc<Shared>>) -> Response {
    let json = s.result.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match json {
        Some(j) => ([(header::CONTENT_TYPE, "application/json")], j).into_response(),
        None => {
            let phase = format!("{:?}", s.progress.phase());
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "phase": phase }).to_string(),
            )
                .into_response()
        }
    }
}

/// The run ends early: the load stops and the result holds what was measured.
/// A worker not started yet is started, so that it ends at once.
async fn stop(State(s): State<Arc<Shared>>) -> Response {
    s.progress.stop.cancel();
    start_once(&s, Start::default());
    (StatusCode::ACCEPTED, "stopping\n").into_response()
}

/// Checks the target as the run will use it, once: a second request gets
/// the first one's report.
async fn preflight(State(s): State<Arc<Shared>>) -> Response {
    let report = s
        .preflight
        .get_or_init(|| async {
            let report = match &s.target {
                Some((plan, key)) => crate::loadgen::preflight::run(plan, key.as_deref()).await,
                None => crate::loadgen::preflight::Report {
                    failed: Some(crate::loadgen::preflight::Check::Setup),
                    message: "this worker has no plan".into(),
                    notes: Vec::new(),
                },
            };
            serde_json::to_string(&report).unwrap_or_default()
        })
        .await;
    ([(header::CONTENT_TYPE, "application/json")], report.clone()).into_response()
}

/// Sets the start unless one was set before; whether this call set it.
fn start_once(s: &Shared, req: Start) -> bool {
    s.start.send_if_modified(|v| {
        let fresh = v.is_none();
        if fresh {
            *v = Some(req);
        }
        fresh
    })
}

/// The controller holds the result: the worker may exit.
async fn acknowledge(State(s): State<Arc<Shared>>) -> Response {
    let done = s.result.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    if done {
        s.acknowledged.notify_one();
        (StatusCode::OK, "acknowledged\n").into_response()
    } else {
        (StatusCode::CONFLICT, "no result yet\n").into_response()
    }
}

/// `GET /progress`, the long poll of [`ProgressQuery`].
async fn progress(
    State(s): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<ProgressQuery>,
) -> Response {
    axum::Json(wait_for_progress(&s.progress, q).await).into_response()
}

/// How often a held `GET /progress` looks at the counters once its `waitMs`
/// has passed (counts move without waking anyone; phases and steps wake it).
const COUNT_LOOK: Duration = Duration::from_millis(250);

/// Waits as [`ProgressQuery`] says, then answers where the worker is.
async fn wait_for_progress(p: &Progress, q: ProgressQuery) -> crate::contract::WorkerProgress {
    let begun = tokio::time::Instant::now();
    let latest = begun + MAX_PROGRESS_WAIT;
    let counts_due = begun + Duration::from_millis(q.wait_ms).min(MAX_PROGRESS_WAIT);
    loop {
        // Registered before the look, so a change in between is not missed.
        let change = p.change.notified();
        tokio::pin!(change);
        change.as_mut().enable();
        let now = p.snapshot();
        let at = tokio::time::Instant::now();
        let moved = q.done != Some(now.done);
        if now.seq > q.after || at >= latest || (at >= counts_due && moved) {
            return now;
        }
        let wake = if at < counts_due {
            counts_due
        } else {
            (at + COUNT_LOOK).min(latest)
        };
        tokio::select! {
            _ = &mut change => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let p = &s.progress;
    let worker = s.index.to_string();
    let labels = [("worker", worker.as_str())];
    let mut page = Page::new(NumberStyle::Go);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let rows = [
        (
            names::PHASE,
            "0 waiting for /start, 1 warmup, 2 measuring, 3 done.",
            Kind::Gauge,
            f64::from(p.phase() as u8),
        ),
        (
            names::STEP,
            "The step running (0-based).",
            Kind::Gauge,
            p.position().1 as f64,
        ),
        (
            names::REQUESTS,
            "Measured requests finished.",
            Kind::Counter,
            load(&p.done),
        ),
        (
            names::OK,
            "Measured requests that succeeded.",
            Kind::Counter,
            load(&p.ok),
        ),
        (
            names::ERRORS,
            "Measured requests that failed.",
            Kind::Counter,
            load(&p.errors),
        ),
        (
            names::IN_FLIGHT,
            "Requests in flight.",
            Kind::Gauge,
            load(&p.in_flight),
        ),
        (
            names::OUTPUT_TOKENS,
            "Output tokens of measured requests that succeeded.",
            Kind::Counter,
            load(&p.output_tokens),
        ),
    ];
    for (name, help, kind, v) in rows {
        page.family(name, help, kind).sample(name, &labels, v);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        page.finish(),
    )
        .into_response()
}

/// A worker's API served in a test, with its progress and result in the
/// test's hands (the measurement's tests follow it as they would a pod).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub struct TestWorker {
        shared: Arc<Shared>,
    }

    impl TestWorker {
        /// Serves a worker API at `addr` (port 0: any) whose pre-flight passes.
        pub async fn serve(addr: std::net::SocketAddr, index: u32, token: Option<String>) -> Self {
            let passed = crate::loadgen::preflight::Report {
                failed: None,
                message: "the test's target".into(),
                notes: Vec::new(),
            };
            Self::serve_reporting(addr, index, token, &passed).await
        }

        /// [`TestWorker::serve`] whose pre-flight reports `report`.
        pub async fn serve_reporting(
            addr: std::net::SocketAddr,
            index: u32,
            token: Option<String>,
            report: &crate::loadgen::preflight::Report,
        ) -> Self {
            let shared = Arc::new(Shared {
                index,
                progress: Arc::new(Progress::default()),
                start: watch::channel(None).0,
                result: std::sync::Mutex::new(None),
                acknowledged: Notify::new(),
                token,
                target: None,
                preflight: tokio::sync::OnceCell::from(serde_json::to_string(report).unwrap()),
                prepared: std::sync::atomic::AtomicBool::new(true),
            });
            let listener = crate::net::bind(addr).await.unwrap();
            tokio::spawn(crate::net::serve(listener, router(shared.clone())));
            TestWorker { shared }
        }

        pub fn progress(&self) -> &Progress {
            &self.shared.progress
        }

        /// The worker is done, with `result`.
        pub fn finish(&self, result: &WorkerResult) {
            *self.shared.result.lock().unwrap() = Some(serde_json::to_string(result).unwrap());
            self.shared
                .progress
                .set_phase_for_test(crate::contract::WorkerPhase::Done);
        }

        /// Resolves once the controller acknowledges the result.
        pub async fn acknowledged(&self) {
            self.shared.acknowledged.notified().await
        }

        pub fn started(&self) -> bool {
            self.shared.start.borrow().is_some()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testing::get;

    /// A worker's shared state with no target: `index`, its API's `token`,
    /// a `result` already held, prepared or not.
    fn shared(
        index: u32,
        token: Option<&str>,
        result: Option<&str>,
        prepared: bool,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            index,
            progress: Arc::new(Progress::default()),
            start: watch::channel(None).0,
            result: std::sync::Mutex::new(result.map(str::to_string)),
            acknowledged: Notify::new(),
            token: token.map(str::to_string),
            target: None,
            preflight: tokio::sync::OnceCell::new(),
            prepared: std::sync::atomic::AtomicBool::new(prepared),
        })
    }

    /// A worker is not ready while it prepares its load (its requests to
    /// the target come before the controller's start instant), then is.
    #[tokio::test]
    async fn ready_only_once_the_load_is_prepared() {
        let shared = shared(0, None, None, false);
        let url = crate::net::testing::start(router(shared.clone())).await;
        let client = crate::net::client::http_client(1);
        let status = || async {
            client
                .get(format!("{url}/ready").parse().unwrap())
                .await
                .unwrap()
                .status()
        };
        assert_eq!(status().await, 503);
        shared
            .prepared
            .store(true, std::sync::atomic::Ordering::Release);
        assert_eq!(status().await, 200);
    }

    #[tokio::test]
    async fn with_a_token_only_its_holder_is_answered() {
        let shared = shared(0, Some("s3cret"), Some("{}"), true);
        let url = crate::net::testing::start(router(shared.clone())).await;
        let client = crate::net::client::http_client(2);
        let call = |method: &str, path: &str, auth: Option<&str>| {
            let mut req = http::Request::builder()
                .method(method)
                .uri(format!("{url}{path}"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            client.request(req.body(http_body_util::Full::new(Bytes::new())).unwrap())
        };
        // The kubelet's probe needs no token.
        assert_eq!(call("GET", "/ready", None).await.unwrap().status(), 200);
        for (method, path) in [
            ("GET", "/metrics"),
            ("POST", "/start"),
            ("GET", "/result"),
            ("POST", "/result/ack"),
            ("POST", "/stop"),
            ("POST", "/preflight"),
        ] {
            for auth in [
                None,
                Some("Bearer wrong!"),
                Some("Bearer s3cre"),
                Some("s3cret"),
            ] {
                let status = call(method, path, auth).await.unwrap().status();
                assert_eq!(status, 401, "{method} {path} with {auth:?}");
            }
        }
        assert!(shared.start.borrow().is_none(), "nobody started it");
        assert!(!shared.progress.stop.is_cancelled(), "nobody stopped it");
        let r = call("GET", "/result", Some("Bearer s3cret")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            call("POST", "/start", Some("Bearer s3cret"))
                .await
                .unwrap()
                .status(),
            202
        );
        assert_eq!(
            call("POST", "/stop", Some("Bearer s3cret"))
                .await
                .unwrap()
                .status(),
            202
        );
        assert!(shared.progress.stop.is_cancelled());
    }

    #[tokio::test]
    async fn start_once_progress_and_result() {
        let shared = shared(2, None, None, true);
        let url = crate::net::testing::start(router(shared.clone())).await;
        let client = crate::net::client::http_client(2);
        let post = |body: &'static str| {
            let req = http::Request::post(format!("{url}/start"))
                .body(http_body_util::Full::new(Bytes::from_static(
                    body.as_bytes(),
                )))
                .unwrap();
            client.request(req)
        };
        assert_eq!(post("{not json").await.unwrap().status(), 400);
        assert_eq!(post(r#"{"atUnixMs": 5}"#).await.unwrap().status(), 202);
        assert_eq!(
            post("").await.unwrap().status(),
            409,
            "only the first start counts"
        );
        assert_eq!(
            *shared.start.borrow(),
            Some(Start {
                at_unix_ms: Some(5)
            })
        );

        shared.progress.done.store(7, Ordering::Relaxed);
        shared
            .progress
            .set_phase_for_test(crate::contract::WorkerPhase::Measuring);
        let page = get(&format!("{url}/metrics")).await;
        assert!(
            page.contains("benchrun_loadgen_requests_total{worker=\"2\"} 7\n"),
            "{page}"
        );
        assert!(
            page.contains("benchrun_loadgen_phase{worker=\"2\"} 2\n"),
            "{page}"
        );

        let early = client
            .get(format!("{url}/result").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(early.status(), 503);
        let ack = || {
            let req = http::Request::post(format!("{url}/result/ack"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            client.request(req)
        };
        assert_eq!(
            ack().await.unwrap().status(),
            409,
            "nothing to acknowledge yet"
        );
        *shared.result.lock().unwrap() = Some("{\"worker\":2}".into());
        // Fetching is not acknowledging: the result is served again, and
        // the worker stays.
        let acknowledged = shared.acknowledged.notified();
        tokio::pin!(acknowledged);
        for _ in 0..2 {
            assert_eq!(get(&format!("{url}/result")).await, "{\"worker\":2}");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(50), acknowledged.as_mut())
                .await
                .is_err(),
            "a GET let the worker go"
        );
        assert_eq!(ack().await.unwrap().status(), 200);
        tokio::time::timeout(Duration::from_secs(5), acknowledged)
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_progress_poll_answers_at_a_change_and_holds_while_nothing_moves() {
        use crate::contract::WorkerPhase;
        let p = Arc::new(Progress::default());
        let first = wait_for_progress(&p, ProgressQuery::default()).await;
        assert_eq!((first.seq, first.phase), (1, WorkerPhase::Waiting));
        // Nothing new: held to the longest wait, counts unchanged.
        let q = ProgressQuery {
            after: first.seq,
            done: Some(0),
            wait_ms: 2000,
        };
        let begun = tokio::time::Instant::now();
        let idle = wait_for_progress(&p, q).await;
        assert_eq!(idle.seq, first.seq);
        assert_eq!(begun.elapsed(), MAX_PROGRESS_WAIT);
        // Counts that moved are answered once `waitMs` has passed, not before.
        p.done.store(5, Ordering::Relaxed);
        let begun = tokio::time::Instant::now();
        let counted = wait_for_progress(&p, q).await;
        assert_eq!(counted.done, 5);
        assert_eq!(begun.elapsed(), Duration::from_millis(2000));
        // A change of phase wakes a held poll at once.
        let held = tokio::spawn({
            let p = p.clone();
            async move {
                let q = ProgressQuery {
                    after: first.seq,
                    done: Some(5),
                    wait_ms: 2000,
                };
                let begun = tokio::time::Instant::now();
                (wait_for_progress(&p, q).await, begun.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        p.set_phase_for_test(WorkerPhase::Measuring);
        let (changed, after) = held.await.unwrap();
        assert_eq!(changed.phase, WorkerPhase::Measuring);
        assert_eq!(changed.seq, first.seq + 1);
        assert_eq!(after, Duration::from_millis(700));
        assert!(changed.since_unix_ms > 0);
    }
}
