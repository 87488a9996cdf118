//! Where tokens come from: the batching engine (one task running the
//! [`Scheduler`] in real time) or, in the deterministic mode, a fixed schedule
//! per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::model::Scheduler;
use super::state::{Gauges, State};
use super::timer::Timer;

/// What the engine tells one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// Admitted into the batch (queueing ends).
    Admitted(Instant),
    /// Token number `index` (1 = first) is ready.
    Token { index: u64, finished: bool },
}

pub enum Msg {
    Submit {
        id: u64,
        prompt: u64,
        max_tokens: u64,
        events: mpsc::UnboundedSender<Event>,
    },
    Cancel(u64),
}

/// Runs the scheduler in real time until every sender is gone. Steps are laid
/// end to end on absolute deadlines, so timer lateness does not accumulate into
/// the ITL; after an idle spell (or a stall of more than a step) the clock
/// restarts from now.
pub async fn run(
    mut sched: Scheduler,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    state: Arc<Mutex<State>>,
    timer: Timer,
) {
    let mut subscribers: HashMap<u64, mpsc::UnboundedSender<Event>> = HashMap::new();
    let mut next: Option<Instant> = None;
    let apply = |m: Msg, sched: &mut Scheduler, subs: &mut HashMap<u64, _>| match m {
        Msg::Submit {
            id,
            prompt,
            max_tokens,
            events,
        } => {
            sched.submit(id, prompt, max_tokens);
            subs.insert(id, events);
        }
        Msg::Cancel(id) => {
            sched.cancel(id);
            subs.remove(&id);
        }
    };
    loop {
        if sched.is_idle() {
            publish(&state, &sched);
            match rx.recv().await {
                Some(m) => apply(m, &mut sched, &mut subscribers),
                None => return,
            }
            next = None;
        }
        while let Ok(m) = rx.try_recv() {
            apply(m, &mut sched, &mut subscribers);
        }
        let Some(step) = sched.plan() else {
            continue;
        };
        let now = Instant::now();
        for id in &step.admitted {
            if let Some(tx) = subscribers.get(id) {
                let _ = tx.send(Event::Admitted(now));
            }
        }
        publish(&state, &sched);
        let duration = Duration::from_secs_f64(step.duration);
        let start = match next {
            Some(n) if n + duration >= now => n,
            _ => now,
        };
        let deadline = start + duration;
        timer.sleep_until(deadline).await;
        next = Some(deadline);
        for e in sched.complete() {
            let gone = match subscribers.get(&e.id) {
                Some(tx) => tx
                    .send(Event::Token {
                        index: e.index,
                        finished: e.finished,
                    })
                    .is_err(),
                None => true,
            };
            if e.finished || gone {
                subscribers.remove(&e.id);
                if gone && !e.finished {
                    sched.cancel(e.id);
                }
            }
        }
    }
}

fn publish(state: &Mutex<State>, sched: &Scheduler) {
    let g = Gauges {
        running: sched.running(),
        waiting: sched.waiting(),
        kv_usage: sched.kv_usage(),
    };
    if let Ok(mut s) = state.lock() {
        s.gauges = g;
    }
}

/// The token source of one request.
pub enum Source {
    Engine {
        events: mpsc::UnboundedReceiver<Event>,
        engine: mpsc::UnboundedSender<Msg>,
        id: u64,
        done: bool,
    },
    /// Token `k` (1-based) at `start + ttft + (k − 1) × itl`.
    Fixed {
        timer: Timer,
        start: Instant,
        ttft: Duration,
        itl: Duration,
        max_tokens: u64,
        sent: u64,
    },
}

impl Source {
    /// The next event; `None` when the engine is gone.
    pub async fn next(&mut self) -> Option<Event> {
        match self {
            Source::Engine { events, done, .. } => {
                let e = events.recv().await;
                if let Some(Event::Token { finished: true, .. }) = e {
                    *done = true;
                }
                e
            }
            Source::Fixed {
                timer,
                start,
                ttft,
                itl,
                max_tokens,
                sent,
            } => {
                if *sent >= *max_tokens {
                    return None;
                }
                *sent += 1;
                let at = *start + *ttft + *itl * (*sent - 1) as u32;
                timer.sleep_until(at).await;
                Some(Event::Token {
                    index: *sent,
                    finished: *sent == *max_tokens,
                })
            }
        }
    }
}

impl Drop for Source {
    /// A request that ends early (client gone, truncated) leaves the batch.
    fn drop(&mut self) {
        if let Source::Engine {
            engine, id, done, ..
        } = self
            && !*done
        {
            let _ = engine.send(Msg::Cancel(*id));
        }
    }
}
