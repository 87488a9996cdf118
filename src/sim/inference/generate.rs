//! Running one request to its end: tokens from the engine or the fixed
//! schedule, injected stalls and cuts, the chunks to the connection, and the
//! request's record in the metrics and the ground truth.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::engine::{Event, Source};
use super::request::Parsed;
use super::response::Chunks;
use super::state::{Outcome, Record};
use super::{Faults, Sim};

/// Runs one request to its end, writing chunks to `tx` and the record to the state.
#[allow(clippy::too_many_arguments)]
pub(super) async fn generate(
    sim: Arc<Sim>,
    mut source: Source,
    p: Parsed,
    faults: Faults,
    mut record: Record,
    start: Instant,
    chunks: Chunks,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    sim.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut last: Option<Instant> = None;
    let mut first: Option<Instant> = None;
    let mut admitted = false;
    let mut finished = false;
    while let Some(event) = source.next().await {
        let (index, fin) = match event {
            Event::Admitted(at) => {
                record.queue_s = at.duration_since(start).as_secs_f64();
                admitted = true;
                continue;
            }
            Event::Token { index, finished } => (index, finished),
        };
        if faults.stall_at == Some(index) {
            record.stalled = true;
            tokio::time::sleep(sim.opts.stall).await;
        }
        if faults.cut_at == Some(index) {
            record.outcome = Outcome::Truncated;
            break;
        }
        let word = chunks.word(index);
        let thinking = chunks.is_reasoning(index);
        let now = if p.stream {
            let chunk = chunks.token(word, index, fin);
            let now = Instant::now();
            if tx.send(Ok(chunk)).await.is_err() {
                record.outcome = Outcome::Cancelled;
                break;
            }
            now
        } else {
            if thinking { &mut reasoning } else { &mut text }.push_str(word);
            Instant::now()
        };
        mark(
            &sim,
            &mut record,
            &mut first,
            &mut last,
            now,
            start,
            admitted,
        );
        if thinking {
            record.reasoning_tokens += 1;
        } else if record.ttfat_s.is_none() {
            record.ttfat_s = Some(now.duration_since(start).as_secs_f64());
        }
        if fin {
            finished = true;
            break;
        }
    }
    if !finished && record.outcome == Outcome::Ok {
        record.outcome = Outcome::Cancelled;
    }
    // The record is written before the last bytes go out, so a client that
    // has its whole answer finds the request in /sim/truth. A complete stream
    // ends with its last token, not with the bookkeeping after it.
    let end = match (record.outcome, p.stream, last) {
        (Outcome::Ok, true, Some(l)) => l,
        _ => Instant::now(),
    };
    record.e2e_s = end.duration_since(start).as_secs_f64();
    if let (Some(f), true) = (first, record.output_tokens > 1) {
        let decode = end.duration_since(f).as_secs_f64();
        record.itl_s = Some(decode / (record.output_tokens - 1) as f64);
    }
    let (outcome, output_tokens) = (record.outcome, record.output_tokens);
    sim.in_flight.fetch_sub(1, Ordering::Relaxed);
    sim.state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .finish(record);
    let usage = json!({
        "prompt_tokens": p.prompt_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": p.prompt_tokens + output_tokens,
    });
    match (outcome, p.stream) {
        (Outcome::Ok, true) => {
            if p.include_usage {
                let _ = tx.send(Ok(chunks.usage(&usage))).await;
            }
            let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
        }
        (Outcome::Ok, false) => {
            let _ = tx.send(Ok(chunks.whole(&reasoning, &text, &usage))).await;
        }
        (Outcome::Truncated, stream) => {
            if !stream {
                let whole = chunks.whole(&reasoning, &text, &usage);
                let _ = tx.send(Ok(whole.slice(..whole.len() / 2))).await;
            }
            // The connection is cut mid-body: the client sees an incomplete message.
            let _ = tx
                .send(Err(std::io::Error::other("truncated on purpose")))
                .await;
        }
        _ => {}
    }
}

/// Counts one token sent at `now`.
fn mark(
    sim: &Sim,
    record: &mut Record,
    first: &mut Option<Instant>,
    last: &mut Option<Instant>,
    now: Instant,
    start: Instant,
    admitted: bool,
) {
    record.output_tokens += 1;
    let mut s = sim.state.lock().unwrap_or_else(|p| p.into_inner());
    match *last {
        None => {
            let ttft = now.duration_since(start).as_secs_f64();
            record.ttft_s = Some(ttft);
            if !admitted {
                // The fixed schedule has no queue.
                record.queue_s = 0.0;
            }
            *first = Some(now);
            s.first_token(record.prompt_tokens, ttft);
            s.token(None);
        }
        Some(prev) => s.token(Some(now.duration_since(prev).as_secs_f64())),
    }
    *last = Some(now);
}
