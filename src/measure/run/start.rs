//! The workers' start: waiting for them (ready, or — for a successor — any
//! with an address after a while), the preflight request, and the shared
//! start instant.

use super::*;

/// The Job's ready workers, by index.
pub(super) async fn ready_workers(d: &Driver) -> Option<Vec<Worker>> {
    workers_of(d, true).await
}

/// The Job's workers with an address, by index; only the ready ones when
/// `ready` (a stopping pod is not ready, yet holds its result until its
/// grace period ends).
pub(super) async fn workers_of(d: &Driver, ready: bool) -> Option<Vec<Worker>> {
    let s = &d.setup;
    match s.cluster.worker_pods().await {
        Ok(pods) => Some(
            pods.iter()
                .filter(|(_, p)| p.ready || !ready)
                .filter_map(|(index, p)| {
                    Some(Worker {
                        index: *index,
                        base: workers::base(p)?,
                        token: s.token.clone(),
                    })
                })
                .collect(),
        ),
        Err(e) => {
            warn!(job = %s.job, "listing the workers: {e}");
            None
        }
    }
}

/// How long a session that takes a running run over waits for its workers
/// to be ready before it follows those that are (one that died meanwhile
/// never will; the machine finds it ended and names it).
pub(super) const TAKE_OVER_WAIT: Duration = Duration::from_secs(15);

/// Waits until every worker whose result is not held yet is ready; those
/// workers, by index, and the indexes of every worker whose result is
/// awaited (a worker whose result is held may have exited). A session that
/// takes a running run over waits at most [`TAKE_OVER_WAIT`]. `None` when
/// the run ends early first (its Job deleted, cancelled, past its timeout):
/// stopping workers never become ready again.
pub(super) async fn wait_for_workers(
    d: &Driver,
    taking_over: bool,
) -> Option<(Vec<Worker>, Vec<u32>)> {
    let wanted: Vec<u32> = (0..d.workers.max(0) as u32)
        .filter(|i| !d.results.contains_key(i))
        .collect();
    let until = Instant::now() + TAKE_OVER_WAIT;
    loop {
        if d.stop_asked.borrow().is_some() {
            return None;
        }
        if let Some(ready) = ready_workers(d).await {
            let live: Vec<Worker> = ready
                .into_iter()
                .filter(|w| wanted.contains(&w.index))
                .collect();
            if live.len() >= wanted.len() {
                return Some((live, wanted));
            }
        }
        if taking_over && Instant::now() >= until {
            // Every one with an address is followed, ready or not: its
            // silence or its pod's end then ends its share.
            let all = workers_of(d, false).await.unwrap_or_default();
            let live = all
                .into_iter()
                .filter(|w| wanted.contains(&w.index))
                .collect();
            return Some((live, wanted));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Has the first worker check the target as the run will use it; a failed
/// check ends the measurement (the run fails `PreflightFailed` with what the
/// server answered). Returns whether the run goes on.
pub(super) async fn preflight(d: &mut Driver, bases: &[Worker]) -> bool {
    let Some(first) = bases.first() else {
        return true;
    };
    match workers::preflight(&d.http, first).await {
        Ok(report) => {
            for note in report.notes {
                d.note(format!("pre-flight: {note}"));
            }
            if let Some(check) = report.failed {
                d.state.fatal = Some(Fatal {
                    reason: "PreflightFailed",
                    message: format!(
                        "the pre-flight check '{}' failed before any load was sent: {}",
                        check.as_str(),
                        report.message
                    ),
                });
                d.publish();
                return false;
            }
            info!(job = %d.setup.job, "pre-flight passed: {}", report.message);
            true
        }
        Err(e) => {
            // A worker image without the pre-flight: the run goes on unchecked.
            d.note(format!("no pre-flight: {e}"));
            true
        }
    }
}

/// How far ahead of the start request the workers' shared start instant lies:
/// room for every worker to get it, retries included, before it comes.
pub(super) const START_AHEAD: Duration = Duration::from_millis(1500);

/// Starts every worker at one shared instant, asking them all at once (one
/// slow worker delays nobody), and notes a worker that got it too late.
/// Returns the instant when every worker took it from this request in time.
pub(super) async fn start_workers(d: &mut Driver, bases: &[Worker]) -> Option<u64> {
    let at = unix_ms() + START_AHEAD.as_millis() as u64;
    // A worker that cannot be reached by then is given up on (and said so).
    let give_up = at + START_AHEAD.as_millis() as u64;
    let http = &d.http;
    let starts = bases.iter().map(|base| async move {
        loop {
            match workers::start(http, base, at).await {
                Ok(now) => return Ok((now, unix_ms())),
                Err(e) if e == workers::TOKEN_REFUSED => return Err(e),
                Err(e) if unix_ms() < give_up => {
                    debug!(%base, "starting the worker: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    });
    let answers = futures::future::join_all(starts).await;
    let mut all_on_time = true;
    for (base, answer) in bases.iter().zip(answers) {
        let note = match answer {
            Ok((true, when)) if when > at => format!(
                "the worker at {base} accepted the shared start {} ms late and started then",
                when - at
            ),
            Ok((true, _)) => continue,
            // Started before, by an earlier session: its start instant is not this one.
            Ok((false, _)) => {
                all_on_time = false;
                continue;
            }
            Err(e) if e == workers::TOKEN_REFUSED => {
                d.state.fatal = Some(Fatal {
                    reason: "WorkerTokenRejected",
                    message: format!(
                        "the load generators refuse the run's token (HTTP 401): the {} written into their Job was derived from another key (was the Secret {} in the operator's namespace replaced while the run was in progress?); create the run again",
                        crate::contract::WORKER_TOKEN_ENV,
                        crate::controller::worker_auth::KEY_SECRET
                    ),
                });
                d.publish();
                return None;
            }
            Err(e) => {
                warn!(%base, "could not start the worker: {e}");
                format!("the worker at {base} could not be started: {e}")
            }
        };
        all_on_time = false;
        d.note(note);
    }
    info!(job = %d.setup.job, workers = bases.len(), "load generators started");
    all_on_time.then_some(at)
}
