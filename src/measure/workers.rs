//! The controller's side of the worker contract ([`crate::contract`]): find the
//! Job's pods, start them together, follow their progress, pull their results.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::contract::{
    MAX_PROGRESS_WAIT, ProgressQuery, Start, WORKER_PORT, WorkerPhase, WorkerProgress, WorkerResult,
};
use crate::discovery::PodInfo;
use crate::net::client::HttpClient;

/// Requests this controller sent to workers, all runs together (a
/// controller metric: what following a run costs).
pub static REQUESTS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// Where the workers stand together on step `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Some worker has not begun measuring step `k`.
    NotStarted,
    /// Every worker measures step `k` or has gone past it.
    Measuring,
    /// Every worker has gone past step `k`.
    Ended,
}

/// Step `k` across `workers` (all of the Job's workers must have answered).
pub fn step_state(workers: &[WorkerProgress], k: u64) -> StepState {
    let past = |w: &WorkerProgress| w.phase == WorkerPhase::Done || w.step > k;
    let measuring =
        |w: &WorkerProgress| past(w) || w.step == k && w.phase == WorkerPhase::Measuring;
    if !workers.is_empty() && workers.iter().all(past) {
        StepState::Ended
    } else if !workers.is_empty() && workers.iter().all(measuring) {
        StepState::Measuring
    } else {
        StepState::NotStarted
    }
}

pub fn base(pod: &PodInfo) -> Option<String> {
    let host = crate::discovery::url_host(pod.ip.as_deref()?);
    Some(format!("http://{host}:{WORKER_PORT}"))
}

/// A worker's completion index, address, and the token its run's workers require.
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    pub index: u32,
    pub base: String,
    pub token: Option<String>,
}

impl std::fmt::Display for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

impl Worker {
    fn request(&self, method: http::Method, path: &str) -> http::request::Builder {
        let b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => b.header(http::header::AUTHORIZATION, format!("Bearer {t}")),
            None => b,
        }
    }
}

async fn call(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    REQUESTS.inc();
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| crate::net::client::error_chain(&e))?;
    let status = resp.status().as_u16();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_WORKER_BODY);
    let body = tokio::time::timeout(timeout, limited.collect())
        .await
        .map_err(|_| "timed out reading the body".to_string())?
        .map_err(|e| format!("reading the body (at most {MAX_WORKER_BODY} bytes): {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// The most a worker's answer may weigh: a result holds every step's
/// mergeable sketches, a few hundred KiB for long sweeps; anything far
/// beyond is not a worker of ours, and is refused rather than held in memory.
pub const MAX_WORKER_BODY: usize = 64 << 20;

/// What [`start`] says when the worker refuses the run's token (HTTP 401).
pub const TOKEN_REFUSED: &str = "the worker refuses the run's token (HTTP 401)";

/// `POST /start`: `Ok(true)` when this request set the worker's start
/// instant, `Ok(false)` when the worker had been started before (409).
pub async fn start(client: &HttpClient, w: &Worker, at_unix_ms: u64) -> Result<bool, String> {
    let body = serde_json::to_vec(&Start {
        at_unix_ms: Some(at_unix_ms),
    })
    .map_err(|e| e.to_string())?;
    let req = w
        .request(http::Method::POST, "/start")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let (status, body) = call(client, req, Duration::from_secs(5)).await?;
    match status {
        202 => Ok(true),
        409 => Ok(false),
        401 => Err(TOKEN_REFUSED.into()),
        s => Err(format!(
            "POST /start: HTTP {s}: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// `GET /progress`: held by the worker until something moved, as `q` says.
pub async fn progress(
    client: &HttpClient,
    w: &Worker,
    q: ProgressQuery,
) -> Result<WorkerProgress, String> {
    let mut path = format!("/progress?after={}&waitMs={}", q.after, q.wait_ms);
    if let Some(done) = q.done {
        path.push_str(&format!("&done={done}"));
    }
    let req = w
        .request(http::Method::GET, &path)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match call(client, req, MAX_PROGRESS_WAIT + Duration::from_secs(5)).await? {
        (200, body) => serde_json::from_slice(&body)
            .map_err(|e| format!("the worker's progress is not progress: {e}")),
        (s, _) => Err(format!("GET /progress: HTTP {s}")),
    }
}

/// `GET /result`: `None` while the worker is still running.
pub async fn result(client: &HttpClient, w: &Worker) -> Result<Option<WorkerResult>, String> {
    let req = w
        .request(http::Method::GET, "/result")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match call(client, req, Duration::from_secs(10)).await? {
        (200, body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| format!("the worker's result is not a result: {e}")),
        (503, _) => Ok(None),
        (s, _) => Err(format!("GET /result: HTTP {s}")),
    }
}

/// `POST /result/ack`: the controller holds the worker's result; the worker
/// may exit. A worker already gone counts as acknowledged by whoever took it.
pub async fn acknowledge(client: &HttpClient, w: &Worker) -> Result<(), String> {
    post(client, w, "/result/ack", 200).await
}

/// `POST /preflight`: the worker checks the target as the run will use it
/// (at most one probe request, however often asked).
pub async fn preflight(
    client: &HttpClient,
    w: &Worker,
) -> Result<crate::loadgen::preflight::Report, String> {
    let req = w
        .request(http::Method::POST, "/preflight")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match call(client, req, Duration::from_secs(70)).await? {
        (200, body) => serde_json::from_slice(&body)
            .map_err(|e| format!("the worker's pre-flight report is not one: {e}")),
        (s, body) => Err(format!(
            "POST /preflight: HTTP {s}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
    }
}

/// `POST /stop`: the run ends early; the worker ends with what it measured.
pub async fn stop(client: &HttpClient, w: &Worker) -> Result<(), String> {
    post(client, w, "/stop", 202).await
}

/// An empty `POST` to `path` that must answer `expect`.
async fn post(client: &HttpClient, w: &Worker, path: &str, expect: u16) -> Result<(), String> {
    let req = w
        .request(http::Method::POST, path)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match call(client, req, Duration::from_secs(5)).await? {
        (s, _) if s == expect => Ok(()),
        (s, body) => Err(format!(
            "POST {path}: HTTP {s}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(phase: WorkerPhase, step: u64) -> WorkerProgress {
        WorkerProgress {
            phase,
            step,
            ..Default::default()
        }
    }

    #[test]
    fn a_step_is_measured_when_every_worker_is_in_it_and_ends_when_all_left() {
        use WorkerPhase::*;
        assert_eq!(step_state(&[], 0), StepState::NotStarted);
        assert_eq!(
            step_state(&[w(Warmup, 0), w(Measuring, 0)], 0),
            StepState::NotStarted
        );
        assert_eq!(
            step_state(&[w(Measuring, 0), w(Measuring, 0)], 0),
            StepState::Measuring
        );
        // One worker already in the next step's warmup: step 0 still runs on the other.
        assert_eq!(
            step_state(&[w(Warmup, 1), w(Measuring, 0)], 0),
            StepState::Measuring
        );
        assert_eq!(step_state(&[w(Warmup, 1), w(Done, 1)], 0), StepState::Ended);
        assert_eq!(
            step_state(&[w(Warmup, 1), w(Done, 1)], 1),
            StepState::NotStarted
        );
        assert_eq!(step_state(&[w(Done, 1), w(Done, 1)], 1), StepState::Ended);
    }
}
