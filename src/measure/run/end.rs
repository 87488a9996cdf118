//! The end of a session that stops following the workers: the salvage of a
//! run taken over after its collection, the stop of the workers, the pull of
//! the results they hold (checkpointed before any worker is let go), and the
//! merge of every result into the steps.

use super::*;

/// How long a session whose Job is gone waits for its workers' results:
/// within the pods' grace period, and before the run ends without them.
pub(super) const SALVAGE: Duration = Duration::from_secs(10);

/// The run ended before the session followed its workers: their Job was
/// deleted while no session followed it (this controller started since), or
/// it ended early while the session waited for them. The workers are asked to
/// stop (a stopping pod has already; an orphaned one, or one never started,
/// has not), the step a predecessor left open is closed, and the results
/// they hold are pulled.
pub(super) async fn salvage(d: &mut Driver, resume: Option<Resume>) {
    let workers: Vec<Worker> = workers_of(d, false)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|w| !d.results.contains_key(&w.index))
        .collect();
    stop_workers(&d.http, &workers).await;
    if let Some(r) = resume {
        if let Some(k) = r.active {
            take_over_step(d, k).await;
        }
        d.save(None, r.next_step);
    }
    info!(job = %d.setup.job, workers = workers.len(), "the Job is gone: pulling what its workers hold");
    collect_results(d, &workers, SALVAGE).await;
}

/// Asks every one of `bases` to stop, all at once (one that cannot be
/// reached is logged: its result, if any, is pulled all the same).
pub(super) async fn stop_workers(http: &HttpClient, bases: &[Worker]) {
    let stops = bases.iter().map(|w| workers::stop(http, w));
    for (w, r) in bases.iter().zip(futures::future::join_all(stops).await) {
        if let Err(e) = r {
            warn!(worker = %w, "stopping the worker: {e}");
        }
    }
}

/// Pulls every worker's result, all at once, then acknowledges them (each
/// worker exits on its acknowledgement, never on a bare fetch: a result whose
/// answer was lost on the way is fetched again). A worker whose result does
/// not come in time is left out, and the steps' coverage says so.
pub(super) async fn collect_results(d: &mut Driver, bases: &[Worker], within: Duration) {
    d.state.stage = Stage::Collecting;
    d.publish_view();
    let deadline = Instant::now() + within;
    let http = &d.http;
    let missing: Vec<&Worker> = bases
        .iter()
        .filter(|w| !d.results.contains_key(&w.index))
        .collect();
    let pulls = missing.iter().map(|base| async move {
        loop {
            match workers::result(http, base).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(None) => return Err("the worker had not finished".to_string()),
                Err(e) => return Err(e),
            }
        }
    });
    let answers = futures::future::join_all(pulls).await;
    let mut pulled = Vec::new();
    for (base, answer) in missing.into_iter().zip(answers) {
        match answer {
            Ok(r) => {
                d.results.insert(base.index, r);
                pulled.push(base);
            }
            Err(e) => {
                warn!(%base, "no result from the worker: {e}");
                d.note(format!(
                    "no result from the worker at {base} within {within:?}: {e}"
                ));
            }
        }
    }
    // Held in the checkpoint before any worker is let go: a successor that
    // finds the workers gone still has their results.
    d.collected = true;
    let mut tries = 0;
    while !d.checkpoint_results().await {
        tries += 1;
        if tries >= follow_machine::SAVE_TRIES {
            // Held only here until the reconciler writes them: a worker not
            // let go exits at the end of its linger anyway, so holding it
            // keeps nothing and holds the run open.
            d.note(format!(
                "{tries} checkpoint writes in a row failed: the results pulled from the stopping load generators are held by this controller alone until the run's results are written"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs_f64(follow_machine::RETRY_S)).await;
    }
    finish(d);
    acknowledge(&d.http, &pulled).await;
}

/// Merges the workers' results into the session's steps: everything is in.
pub(super) fn finish(d: &mut Driver) {
    let results: Vec<WorkerResult> = d.results.values().cloned().collect();
    let merged = collect::merge_client(&results, d.setup.steps, d.workers.max(1) as u32);
    let s = &mut d.state;
    (s.client, s.client_coverage) = merged.into_iter().unzip();
    s.changed(None);
    s.stage = Stage::Done;
    d.publish();
    info!(job = %d.setup.job, workers = results.len(), "results collected");
}

/// Lets the workers go: their results are held.
pub(super) async fn acknowledge(http: &HttpClient, bases: &[&Worker]) {
    let acks = bases.iter().map(|base| async move {
        if let Err(e) = workers::acknowledge(http, base).await {
            debug!(%base, "acknowledging the result: {e}");
        }
    });
    futures::future::join_all(acks).await;
}
