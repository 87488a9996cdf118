//! The measured part of a run as a state machine with no I/O: it takes
//! events (a worker's progress or its silence, a worker's pod ended, a stop
//! asked, a result pulled or not, a checkpoint written or not, the passing
//! of time) with the session time, and answers with effects (open or close a
//! step with a boundary scrape, pull a result, write a checkpoint holding
//! the results in hand, let workers go, stop the workers, give a worker's
//! share up, end). [`super::run`] is the thin shell that performs the effects
//! and feeds their outcomes back; the tests drive this machine through
//! thousands of generated fault schedules (`follow/tests.rs`).
//!
//! The states of one worker, and what moves it:
//!
//! ```text
//! Following ──progress Done──▶ Pulling ──Pulled──▶ InHand ──Saved ok──▶ Durable (acknowledged)
//!     │                           │                  │
//!     └── pod ended, silent, ─────┴──────────────────┘ (before InHand)
//!         unfinished after a stop, result not pulled in time ──▶ Lost (named, with why)
//! ```
//!
//! and of the run's steps: step `k` opens (its opening boundary scrape) the
//! moment every live worker measures it or has gone past it, closes the
//! moment every live worker has gone past it, and a step no live worker
//! measured never opens — not after a stop, not after every worker ended
//! early. The invariants each transition keeps are [`Follow::check`]'s.

use std::collections::BTreeMap;

use crate::contract::WorkerProgress;

mod slot;

use self::slot::{Held, Slot};

/// How long a worker asked to stop may go on before its share is given up:
/// within the reconciler's wait for a stopping run's results
/// ([`crate::controller::decide::STOP_GRACE`], 20 s).
pub const STOP_LOST_S: f64 = 12.0;
/// How long a worker's progress may fail to come before its share is given
/// up (its pod gone from the network, a partition): every run ends.
pub const SILENT_LOST_S: f64 = 90.0;
/// How long a finished worker's result is tried for.
pub const COLLECT_S: f64 = 60.0;
/// How soon a failed pull or checkpoint write is tried again.
pub const RETRY_S: f64 = 1.0;
/// How many checkpoint writes holding a result may fail in the collection
/// of a run that ends early before its workers are let go all the same:
/// the reconciler waits [`STOP_GRACE`](crate::controller::decide::STOP_GRACE)
/// (20 s) for the results, and ends the run without them after that.
pub const SAVE_TRIES: u32 = 5;
/// How long checkpoint writes holding a result may keep failing (an API
/// server's outage, a policy or a quota refusing the write) before its
/// worker is let go all the same, with a note. Until then the worker keeps
/// its result, and a controller that crashes meanwhile leaves it for its
/// successor to pull: well inside a worker's linger (`--linger`, 10 min),
/// after which it exits whatever happens, and bounded so that every run ends.
pub const SAVE_GIVE_UP_S: f64 = 300.0;
/// The longest wait between two tries of a failing checkpoint write.
pub const SAVE_RETRY_MAX_S: f64 = 10.0;

/// How a lost worker is named in the run's status and results:
/// `load generator 1: its pod ... ended ...`.
pub fn lost_line(worker: u32, why: &str) -> String {
    format!("load generator {worker}: {why}")
}

/// What happened, as the shell saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A worker's progress (its long poll answered).
    Progress(u32, WorkerProgress),
    /// A worker's progress could not be read.
    ProgressFailed(u32),
    /// The worker's pod ended (failed, killed, evicted) or is gone.
    PodEnded(u32, String),
    /// The run ends early (cancel, timeout, its Job failed or deleted).
    StopAsked,
    /// The worker's result is in hand.
    Pulled(u32),
    /// The worker's result could not be pulled (yet).
    PullFailed(u32),
    /// A checkpoint holding the results of these workers was written, or not.
    Saved { holding: Vec<u32>, ok: bool },
    /// Time passed.
    Tick,
}

/// What the shell is to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Open step `k` with a boundary scrape.
    Open(usize),
    /// Close step `k` with a boundary scrape.
    Close(usize),
    /// Pull the worker's result.
    Pull(u32),
    /// Write a checkpoint holding the results in hand (these workers').
    Save(Vec<u32>),
    /// Let these workers go: their results are held.
    Ack(Vec<u32>),
    /// Ask every live worker to stop.
    StopWorkers,
    /// The worker's share is given up, with why (its result will not come).
    Lost(u32, String),
    /// A note for the results.
    Note(String),
    /// Nothing more comes: every worker's result is held or its share lost,
    /// and no step is open.
    Done,
}

/// The measured part of one run.
#[derive(Clone, Debug)]
pub struct Follow {
    steps: usize,
    workers: BTreeMap<u32, Slot>,
    active: Option<usize>,
    next_step: usize,
    stop_at: Option<f64>,
    /// A checkpoint write holding results is in flight.
    saving: bool,
    /// Checkpoint writes that failed in a row, and since when.
    save_failures: u32,
    saves_failing_since: Option<f64>,
    save_retry_at: f64,
    done: bool,
}

impl Follow {
    /// Follows `workers` (completion indexes) through `steps`; `active` and
    /// `next_step` as a predecessor left them (a step it was measuring goes on).
    pub fn new(steps: usize, workers: &[u32], active: Option<usize>, next_step: usize) -> Self {
        let slot = Slot {
            latest: None,
            failing_since: None,
            done_at: None,
            lost: None,
            pod_ended: false,
            held: Held::No { retry_at: 0.0 },
        };
        Follow {
            steps,
            workers: workers.iter().map(|&i| (i, slot.clone())).collect(),
            active,
            next_step,
            stop_at: None,
            saving: false,
            save_failures: 0,
            saves_failing_since: None,
            save_retry_at: 0.0,
            done: false,
        }
    }

    /// The step being measured and the next one to open.
    pub fn steps_at(&self) -> (Option<usize>, usize) {
        (self.active, self.next_step)
    }

    /// Every live worker's latest progress, once each has answered.
    pub fn progress(&self) -> Option<Vec<WorkerProgress>> {
        self.workers
            .values()
            .filter(|s| s.live())
            .map(|s| s.latest)
            .collect()
    }

    /// The workers whose share was given up, with why.
    pub fn lost(&self) -> impl Iterator<Item = (u32, &str)> {
        self.workers
            .iter()
            .filter_map(|(i, s)| Some((*i, s.lost.as_deref()?)))
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes `event` at session time `now`; what to do.
    pub fn handle(&mut self, now: f64, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match event {
            Event::Progress(i, p) => {
                if let Some(s) = self.workers.get_mut(&i) {
                    // Answers may arrive out of order: the newer one counts.
                    if s.latest.is_none_or(|l| p.seq >= l.seq) {
                        s.latest = Some(p);
                    }
                    s.failing_since = None;
                    // Lost to its silence, it answers again (a healed
                    // partition): it is followed again, its result pulled.
                    if !s.pod_ended {
                        s.lost = None;
                    }
                    if s.done() && s.done_at.is_none() {
                        s.done_at = Some(now);
                    }
                }
            }
            Event::ProgressFailed(i) => {
                if let Some(s) = self.workers.get_mut(&i) {
                    s.failing_since.get_or_insert(now);
                }
            }
            Event::PodEnded(i, why) => {
                if let Some(s) = self.workers.get_mut(&i)
                    && !s.result_held()
                {
                    s.pod_ended = true;
                    if s.lost.is_none() {
                        self.lose(i, why, &mut out);
                    }
                }
            }
            Event::StopAsked => {
                if self.stop_at.is_none() {
                    self.stop_at = Some(now);
                    out.push(Effect::StopWorkers);
                }
            }
            Event::Pulled(i) => {
                if let Some(s) = self.workers.get_mut(&i)
                    && matches!(s.held, Held::Pulling | Held::No { .. })
                {
                    s.held = Held::InHand;
                    // Held now, whatever its pod does next.
                    s.lost = None;
                }
            }
            Event::PullFailed(i) => {
                if let Some(s) = self.workers.get_mut(&i)
                    && s.held == Held::Pulling
                {
                    s.held = Held::No {
                        retry_at: now + RETRY_S,
                    };
                }
            }
            Event::Saved { holding, ok } => {
                self.saving = false;
                if ok {
                    self.save_failures = 0;
                    self.saves_failing_since = None;
                    self.let_go(&holding, &mut out);
                } else {
                    // Tried again after 1, 2, 4, 8, 10, 10, ... s; the
                    // workers keep their results meanwhile.
                    self.save_failures += 1;
                    let wait = RETRY_S * 2f64.powi(self.save_failures.min(8) as i32 - 1);
                    self.save_retry_at = now + wait.min(SAVE_RETRY_MAX_S);
                    let since = *self.saves_failing_since.get_or_insert(now);
                    // Asked to stop, the run waits for its results only so
                    // long; else the patience is SAVE_GIVE_UP_S.
                    let given_up = if self.stop_at.is_some() {
                        self.save_failures >= SAVE_TRIES
                    } else {
                        now - since >= SAVE_GIVE_UP_S
                    };
                    if given_up {
                        out.push(Effect::Note(format!(
                            "{} checkpoint writes in a row failed over {:.0} s: the results of load generator(s) {} are held by this controller alone until the run's results are written (a controller restart before then loses them)",
                            self.save_failures,
                            now - since,
                            list(&holding)
                        )));
                        self.save_failures = 0;
                        self.saves_failing_since = None;
                        self.let_go(&holding, &mut out);
                    }
                }
            }
            Event::Tick => {}
        }
        self.advance(now, &mut out);
        debug_assert_eq!(self.check(), Ok(()));
        out
    }

    /// The machine's own invariants, checked after every transition in
    /// debug builds and by the simulation: at most the step before
    /// `next_step` is open; an ended machine has no open step, no write in
    /// flight, and every worker's result held or its share lost; a worker
    /// let go has its result held.
    pub fn check(&self) -> Result<(), String> {
        if let Some(k) = self.active
            && k + 1 != self.next_step
        {
            return Err(format!(
                "step {k} is open but the next step is {}",
                self.next_step
            ));
        }
        if self.next_step > self.steps {
            return Err(format!("next step {} of {}", self.next_step, self.steps));
        }
        if self.done {
            if self.active.is_some() || self.saving {
                return Err("ended with a step open or a checkpoint write in flight".into());
            }
            if let Some((i, _)) = self
                .workers
                .iter()
                .find(|(_, s)| s.live() && s.held != Held::Durable)
            {
                return Err(format!("ended with worker {i} neither held nor lost"));
            }
        }
        Ok(())
    }

    /// Lets `workers` go: their results are held.
    fn let_go(&mut self, workers: &[u32], out: &mut Vec<Effect>) {
        let mut acked = Vec::new();
        for i in workers {
            if let Some(s) = self.workers.get_mut(i)
                && s.held == Held::InHand
            {
                s.held = Held::Durable;
                acked.push(*i);
            }
        }
        if !acked.is_empty() {
            out.push(Effect::Ack(acked));
        }
    }

    fn lose(&mut self, i: u32, why: String, out: &mut Vec<Effect>) {
        if let Some(s) = self.workers.get_mut(&i) {
            s.lost = Some(why.clone());
            // Pulls are for live workers only: one in flight may still
            // bring its result in (kept), none is tried again.
            if s.held == Held::Pulling {
                s.held = Held::No { retry_at: 0.0 };
            }
            out.push(Effect::Lost(i, why));
        }
    }

    /// Everything that follows from the state at `now`.
    fn advance(&mut self, now: f64, out: &mut Vec<Effect>) {
        // Shares given up by time: every run ends.
        let mut losses = Vec::new();
        for (i, s) in &self.workers {
            if !s.live() || s.result_held() {
                continue;
            }
            let why = if let Some(at) = self.stop_at.filter(|at| now - at >= STOP_LOST_S)
                && !s.done()
            {
                Some(format!(
                    "it had not ended its share {:.0} s after it was asked to stop",
                    now - at
                ))
            } else if let Some(since) = s.failing_since.filter(|t| now - t >= SILENT_LOST_S) {
                Some(format!(
                    "its progress could not be read for {:.0} s",
                    now - since
                ))
            } else {
                s.done_at.filter(|t| now - t >= COLLECT_S).map(|at| {
                    format!(
                        "its result could not be pulled within {:.0} s of its end",
                        now - at
                    )
                })
            };
            if let Some(why) = why {
                losses.push((*i, why));
            }
        }
        for (i, why) in losses {
            self.lose(i, why, out);
        }
        self.boundaries(out);
        // Pulls: a worker that is done has its result.
        for (i, s) in self.workers.iter_mut() {
            if s.live()
                && s.done()
                && let Held::No { retry_at } = s.held
                && now >= retry_at
            {
                s.held = Held::Pulling;
                out.push(Effect::Pull(*i));
            }
        }
        // A checkpoint holding the results in hand, before their workers go.
        let in_hand: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, s)| s.held == Held::InHand)
            .map(|(i, _)| *i)
            .collect();
        if !in_hand.is_empty() && !self.saving && now >= self.save_retry_at {
            self.saving = true;
            out.push(Effect::Save(in_hand));
        }
        let settled = self
            .workers
            .values()
            .all(|s| s.held == Held::Durable || !s.live());
        if settled && self.active.is_none() && !self.saving {
            self.done = true;
            out.push(Effect::Done);
        }
    }

    /// Step boundaries: each closes the open step or opens the next one.
    fn boundaries(&mut self, out: &mut Vec<Effect>) {
        loop {
            let live: Vec<&Slot> = self.workers.values().filter(|s| s.live()).collect();
            match self.active {
                Some(k) if live.iter().all(|s| s.past(k as u64)) => {
                    self.active = None;
                    out.push(Effect::Close(k));
                }
                None if self.stop_at.is_some() => {
                    // Asked to stop: no step opens after the one under way.
                    self.next_step = self.steps;
                    break;
                }
                None if self.next_step < self.steps => {
                    let k = self.next_step as u64;
                    let measuring: Vec<&&Slot> = live.iter().filter(|s| !s.out_before(k)).collect();
                    if measuring.is_empty() {
                        // No live worker will measure it (they ended early, or
                        // every share is lost): neither it nor a later step opens.
                        self.next_step = self.steps;
                        break;
                    }
                    if !measuring.iter().all(|s| s.in_or_past(k)) {
                        break;
                    }
                    self.active = Some(self.next_step);
                    self.next_step += 1;
                    out.push(Effect::Open(k as usize));
                }
                _ => break,
            }
        }
    }
}

/// `0, 2` for [0, 2].
fn list(workers: &[u32]) -> String {
    workers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
