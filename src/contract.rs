//! The contract between the controller and its load-generator workers: the
//! port, the requests, and the types both sides read and write. The worker
//! serves it ([`crate::worker`]); the measurement calls it
//! ([`crate::measure`]). Neither imports the other: both import this.
//!
//! A worker serves on [`WORKER_PORT`] at `$POD_IP`:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /ready` | 200 once the plan is loaded |
//! | `GET /progress?after=S&done=N&waitMs=M` | a [`WorkerProgress`]; held until something moved (see [`ProgressQuery`]) |
//! | `GET /metrics` | the same progress as Prometheus text, for people and Prometheus |
//! | `POST /start` `{"atUnixMs": T}` (body optional) | 202; the run begins at T (or now); 409 when already started |
//! | `GET /result` | 200 with the [`WorkerResult`] once the run is over, else 503 with the phase |
//! | `POST /result/ack` | 200 once the result is over and the controller holds it; 409 before |
//! | `POST /stop` | 202: send nothing more, drop what is in flight, and end with what was measured (cancel, timeout) |
//! | `POST /preflight` | 200 with a [`crate::loadgen::preflight::Report`]: the target checked as the run will use it, once (later calls get the same report) |
//!
//! When the worker has a token ([`WORKER_TOKEN_ENV`], from the run's Secret),
//! every request but `GET /ready` (the kubelet's probe) must carry
//! `Authorization: Bearer <token>`, or gets 401: other tenants' pods reach
//! this port too.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::loadgen::engine::{StepResult, WorkerPhase, WorkerProgress};

/// The port a worker serves its API on.
pub const WORKER_PORT: u16 = 8080;
/// The worker API's bearer token (written into the run's Job by the controller).
pub const WORKER_TOKEN_ENV: &str = "BENCHRUN_WORKER_TOKEN";
/// The result schema this build writes.
pub const RESULT_SCHEMA_VERSION: u32 = 1;

/// One worker's result: its steps, in plan order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerResult {
    pub schema_version: u32,
    pub worker: u32,
    pub steps: Vec<StepResult>,
}

/// The body of `POST /start`.
#[derive(Deserialize, Serialize, Debug, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// When to send the first request (unix milliseconds); now when absent or past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_unix_ms: Option<u64>,
}

/// The query of `GET /progress`, a long poll. The worker answers at once when
/// its `seq` is past `after` (a phase or step changed since the caller last
/// looked); else, once `waitMs` has passed, as soon as its requests-done count
/// differs from `done`; and at the latest after [`MAX_PROGRESS_WAIT`]. So a
/// step boundary reaches the controller as it happens, progress for the
/// status every `waitMs`, and a worker with nothing new costs one request per
/// [`MAX_PROGRESS_WAIT`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProgressQuery {
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub done: Option<u64>,
    #[serde(default)]
    pub wait_ms: u64,
}

/// The longest a `GET /progress` is held.
pub const MAX_PROGRESS_WAIT: Duration = Duration::from_secs(25);

/// The progress metric names of a worker's `/metrics`.
pub mod names {
    pub const PHASE: &str = "benchrun_loadgen_phase";
    pub const STEP: &str = "benchrun_loadgen_step";
    pub const REQUESTS: &str = "benchrun_loadgen_requests_total";
    pub const OK: &str = "benchrun_loadgen_requests_ok_total";
    pub const ERRORS: &str = "benchrun_loadgen_errors_total";
    pub const IN_FLIGHT: &str = "benchrun_loadgen_in_flight";
    pub const OUTPUT_TOKENS: &str = "benchrun_loadgen_output_tokens_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_answer_and_query_keep_their_wire_names() {
        let p = WorkerProgress {
            seq: 3,
            phase: WorkerPhase::Measuring,
            step: 1,
            done: 40,
            ok: 38,
            errors: 2,
            output_tokens: 900,
            since_unix_ms: 17,
            stopped: true,
        };
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(json["stopped"], true);
        assert_eq!(json["phase"], "measuring");
        assert_eq!(json["outputTokens"], 900);
        assert_eq!(json["sinceUnixMs"], 17);
        assert_eq!(serde_json::from_value::<WorkerProgress>(json).unwrap(), p);
        let q: ProgressQuery = serde_json::from_str(r#"{"after": 2, "waitMs": 500}"#).unwrap();
        assert_eq!((q.after, q.done, q.wait_ms), (2, None, 500));
        for code in 0..=4u8 {
            assert_eq!(WorkerPhase::from_code(code) as u8, code);
        }
        assert_eq!(WorkerPhase::from_code(9), WorkerPhase::Waiting);
    }

    /// A worker whose share of a step was no request still sends a result the
    /// controller can read (JSON has no infinities: empty extremes become null).
    #[test]
    fn an_empty_steps_result_survives_json() {
        let mut stats = crate::loadgen::engine::StepStats::default();
        stats.ttft_s.add(f64::NAN);
        let empty = StepResult {
            stats,
            ..StepResult::default()
        };
        let json = serde_json::to_string(&WorkerResult {
            schema_version: RESULT_SCHEMA_VERSION,
            worker: 2,
            steps: vec![empty.clone()],
        })
        .unwrap();
        let back: WorkerResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back.steps, vec![empty]);
    }
}
