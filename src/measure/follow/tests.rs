//! The follow machine driven through seeded random fault schedules over
//! random run shapes, against the simulation's own truth: workers that
//! measure their steps with warmups and cool-downs, die (SIGKILL, a lost
//! node) with or without the cluster saying so, answer their long polls
//! late or not at all, stop when asked or on their own (SIGTERM); pulls and
//! checkpoint writes that fail; a controller that crashes and a successor
//! that goes on from the checkpoint it left. Every invariant is checked
//! after every transition and at the end. A failure names its seed;
//! `FOLLOW_SEED=<seed>` replays exactly that one, `FOLLOW_SCHEDULES=<n>`
//! runs more (the long campaign, `bench/follow-campaign.sh`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::contract::WorkerPhase;

mod exporter;

/// One worker's truth.
#[derive(Clone, Debug)]
struct Truth {
    /// Its positions as planned: (from, phase, step); the last is `Done`.
    plan: Vec<(f64, WorkerPhase, u64)>,
    /// When it was told to stop (by the controller, or SIGTERM).
    stop_at: Option<f64>,
    /// When its process died without handing over (SIGKILL, a lost node)
    /// or exited (let go, or its linger over).
    gone_at: Option<f64>,
    killed: bool,
}

impl Truth {
    fn planned(&self, t: f64) -> (WorkerPhase, u64) {
        let at = self.plan.iter().rev().find(|(from, ..)| *from <= t);
        at.map_or((WorkerPhase::Waiting, 0), |(_, p, s)| (*p, *s))
    }

    /// Where it is at `t`; `None` once it is gone.
    fn at(&self, t: f64) -> Option<(WorkerPhase, u64, bool)> {
        if self.gone_at.is_some_and(|g| g <= t) {
            return None;
        }
        match self.stop_at {
            Some(s) if s <= t => {
                let (phase, step) = self.planned(s);
                Some((WorkerPhase::Done, step, phase != WorkerPhase::Done))
            }
            _ => {
                let (phase, step) = self.planned(t);
                Some((phase, step, false))
            }
        }
    }

    /// The next change of position after `t`.
    fn next_change(&self, t: f64) -> Option<f64> {
        let planned = self.plan.iter().map(|(f, ..)| *f).filter(|f| *f > t);
        let stop = self.stop_at.filter(|s| *s > t);
        planned.chain(stop).reduce(f64::min)
    }

    /// The time it spent measuring step `k`: (start, end), when any.
    fn measured(&self, k: u64) -> Option<(f64, f64)> {
        let i = self
            .plan
            .iter()
            .position(|(_, p, s)| *p == WorkerPhase::Measuring && *s == k)?;
        let start = self.plan[i].0;
        let mut end = self.plan[i + 1].0;
        for cut in [self.stop_at, self.gone_at.filter(|_| self.killed)]
            .into_iter()
            .flatten()
        {
            end = end.min(cut);
        }
        (end > start).then_some((start, end))
    }

    fn done_at(&self) -> f64 {
        let planned = self.plan.last().map_or(0.0, |(f, ..)| *f);
        self.stop_at.map_or(planned, |s| s.min(planned))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Ev {
    /// To the machine (dropped if its controller has crashed meanwhile).
    Machine(u64, Event),
    /// A worker's long poll is sent.
    Poll(u64, u32),
    /// It answers (with where the worker is then).
    Answer(u64, u32),
    /// The controller crashes; a successor starts at the given time.
    Crash(f64),
    /// The successor takes the run over from the checkpoint.
    Successor,
    /// Told to stop by the controller or SIGTERM.
    WorkerStop(u32),
    /// The reconciler asks the run's session to stop (a cancel, a timeout);
    /// it asks again of a successor, at its first look.
    Stop,
    /// A checkpoint write of this snapshot lands (or fails).
    Store(u64, Snapshot, bool),
    Tick(u64),
}

/// What a checkpoint holds, for the simulation: the steps' bookkeeping and
/// whose results.
#[derive(Clone, Debug, PartialEq, Default)]
struct Snapshot {
    seq: u64,
    active: Option<usize>,
    next_step: usize,
    results: BTreeSet<u32>,
}

struct Sim {
    rng: StdRng,
    now: f64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<(f64, Ev)>,
    workers: Vec<Truth>,
    steps: usize,
    /// The controller's generation: events of a crashed one are dropped.
    generation: u64,
    machine: Follow,
    crashed: bool,
    pull_ok: f64,
    save_ok: f64,
    /// Results in the controller's memory (lost with it).
    in_hand: BTreeSet<u32>,
    store: Snapshot,
    seq: u64,
    log: Vec<String>,
    // What happened, for the invariants.
    opened: Vec<(usize, f64)>,
    closed: Vec<(usize, f64)>,
    acked: BTreeSet<u32>,
    given_up: BTreeSet<u32>,
    /// Workers whose result reached the controller at least once.
    pulled: BTreeSet<u32>,
    lost: BTreeMap<u32, String>,
    done_at: Option<f64>,
    /// The reconciler asked the session to stop (it asks any successor too).
    stop_asked: bool,
    /// How late a long poll's answer may reach the machine: a few ms on a
    /// quiet cluster, 0.3 s on a busy one.
    answer_late: f64,
    /// The GPU and its exporter (invariant 4).
    exporter: exporter::Exporter,
    /// When each step was last opened, by which controller.
    open_at: BTreeMap<usize, (u64, f64)>,
    /// Steps opened and closed by one controller: (step, open, close).
    spans: Vec<(usize, f64, f64)>,
    /// What each such step's energy came to.
    energy: Vec<exporter::Outcome>,
}

impl Sim {
    fn at(&mut self, t: f64, ev: Ev) {
        let i = self.events.len();
        self.events.push((t, ev));
        // Times in µs as a key; ties in the order scheduled.
        self.queue.push(Reverse(((t * 1e6) as u64, i as u64, i)));
    }

    fn jitter(&mut self, max: f64) -> f64 {
        self.rng.random_range(0.0..max)
    }

    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let steps = rng.random_range(1..=4usize);
        let n = rng.random_range(1..=4u32);
        let mut workers = Vec::new();
        for _ in 0..n {
            let mut t = rng.random_range(0.0..0.5);
            let mut plan = Vec::new();
            for k in 0..steps as u64 {
                if k > 0 && rng.random_bool(0.3) {
                    plan.push((t, WorkerPhase::CoolDown, k));
                    t += rng.random_range(0.1..5.0);
                }
                if rng.random_bool(0.5) {
                    plan.push((t, WorkerPhase::Warmup, k));
                    t += rng.random_range(0.1..5.0);
                }
                plan.push((t, WorkerPhase::Measuring, k));
                t += rng.random_range(0.2..30.0);
            }
            plan.push((t, WorkerPhase::Done, steps as u64 - 1));
            workers.push(Truth {
                plan,
                stop_at: None,
                gone_at: None,
                killed: false,
            });
        }
        let end = workers.iter().map(Truth::done_at).fold(0.0, f64::max);
        let exporter = exporter::Exporter::new(seed, end);
        let answer_late = [0.005, 0.3][(seed % 2) as usize];
        let pull_ok = [1.0, 0.8, 0.3][rng.random_range(0..3)];
        let save_ok = [1.0, 0.7, 0.0][rng.random_range(0..3)];
        let indexes: Vec<u32> = (0..n).collect();
        let mut sim = Sim {
            rng,
            now: 0.0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            workers,
            steps,
            generation: 0,
            machine: Follow::new(steps, &indexes, None, 0),
            crashed: false,
            pull_ok,
            save_ok,
            in_hand: BTreeSet::new(),
            store: Snapshot::default(),
            seq: 0,
            log: Vec::new(),
            opened: Vec::new(),
            closed: Vec::new(),
            acked: BTreeSet::new(),
            given_up: BTreeSet::new(),
            pulled: BTreeSet::new(),
            lost: BTreeMap::new(),
            done_at: None,
            stop_asked: false,
            answer_late,
            exporter,
            open_at: BTreeMap::new(),
            spans: Vec::new(),
            energy: Vec::new(),
        };
        // Faults: deaths, with or without the cluster telling; a stop (a
        // cancel, a timeout) or SIGTERM to every worker; a controller crash.
        for i in 0..n {
            if sim.rng.random_bool(0.25) {
                let t = sim.jitter(end * 1.1 + 0.1);
                sim.workers[i as usize].gone_at = Some(t);
                sim.workers[i as usize].killed = true;
                if sim.rng.random_bool(0.7) {
                    let notice = t + sim.jitter(15.0);
                    sim.at(notice, Ev::Machine(0, Event::PodEnded(i, "killed".into())));
                }
            }
        }
        if sim.rng.random_bool(0.3) {
            let t = sim.jitter(end + 0.1);
            sim.at(t, Ev::Stop);
        } else if sim.rng.random_bool(0.1) {
            // SIGTERM (the Job deleted): the workers stop on their own, and
            // the reconciler asks the session to stop a little later.
            let t = sim.jitter(end + 0.1);
            for i in 0..n {
                sim.at(t, Ev::WorkerStop(i));
            }
            let later = t + sim.jitter(3.0);
            sim.at(later, Ev::Stop);
        }
        if sim.rng.random_bool(0.2) {
            let t = sim.jitter(end * 1.2 + 0.1);
            let back = t + sim.jitter(5.0);
            sim.at(t, Ev::Crash(back));
        }
        for i in 0..n {
            sim.at(0.0, Ev::Poll(0, i));
        }
        sim.at(0.0, Ev::Tick(0));
        sim
    }

    /// Runs to the machine's end (or the horizon); the invariants are
    /// checked after every transition.
    fn run(&mut self) -> Result<(), String> {
        const HORIZON: f64 = 5_000.0;
        while let Some(Reverse((_, _, i))) = self.queue.pop() {
            let (t, ev) = self.events[i].clone();
            self.now = t;
            if t > HORIZON || self.done_at.is_some() {
                break;
            }
            self.step(ev)?;
        }
        self.finally()
    }

    fn step(&mut self, ev: Ev) -> Result<(), String> {
        let now = self.now;
        match ev {
            Ev::Machine(generation, event) => {
                if generation != self.generation || self.crashed {
                    return Ok(());
                }
                self.log.push(format!("{now:.3} {event:?}"));
                if let Event::Pulled(i) = event {
                    self.in_hand.insert(i);
                    self.pulled.insert(i);
                }
                let effects = self.machine.handle(now, event);
                self.machine.check()?;
                for e in effects {
                    self.effect(e)?;
                }
            }
            Ev::Tick(generation) => {
                if generation == self.generation && !self.crashed {
                    self.at(now + 0.5, Ev::Tick(generation));
                    self.at(now, Ev::Machine(generation, Event::Tick));
                }
            }
            Ev::Poll(generation, i) => {
                if generation != self.generation || self.crashed {
                    return Ok(());
                }
                let w = &self.workers[i as usize];
                let answer = match w.at(now) {
                    Some(_) if self.rng.random_bool(0.03) => None,
                    None => None,
                    Some(_) => {
                        // The long poll is held until the next change, at
                        // most 2 s, and answers what it sees then.
                        let until = w.next_change(now).unwrap_or(f64::MAX).min(now + 2.0);
                        Some(until)
                    }
                };
                match answer {
                    None => {
                        let t = now + 0.25 + self.jitter(0.05);
                        self.at(t, Ev::Machine(generation, Event::ProgressFailed(i)));
                        self.at(t, Ev::Poll(generation, i));
                    }
                    Some(until) => self.at(until, Ev::Answer(generation, i)),
                }
            }
            Ev::Answer(generation, i) => {
                if generation != self.generation || self.crashed {
                    return Ok(());
                }
                let until = now;
                {
                    {
                        let w = &self.workers[i as usize];
                        let Some((phase, step, stopped)) = w.at(until) else {
                            let t = until + 0.25;
                            self.at(t, Ev::Machine(generation, Event::ProgressFailed(i)));
                            self.at(t, Ev::Poll(generation, i));
                            return Ok(());
                        };
                        let p = WorkerProgress {
                            seq: (until * 1e6) as u64,
                            phase,
                            step,
                            stopped,
                            ..Default::default()
                        };
                        let t = until + self.jitter(self.answer_late);
                        self.at(t, Ev::Machine(generation, Event::Progress(i, p)));
                        if phase != WorkerPhase::Done {
                            self.at(t, Ev::Poll(generation, i));
                        }
                    }
                }
            }
            Ev::Stop => {
                self.stop_asked = true;
                let g = self.generation;
                self.at(now, Ev::Machine(g, Event::StopAsked));
            }
            Ev::WorkerStop(i) => {
                let w = &mut self.workers[i as usize];
                if w.at(now).is_some() && w.stop_at.is_none() {
                    w.stop_at = Some(now);
                }
            }
            Ev::Crash(back) => {
                self.log.push(format!("{now:.3} crash"));
                self.crashed = true;
                self.in_hand.clear();
                self.at(back, Ev::Successor);
            }
            Ev::Successor => {
                self.crashed = false;
                self.generation += 1;
                let g = self.generation;
                let cp = self.store.clone();
                self.log.push(format!("{now:.3} successor from {cp:?}"));
                self.in_hand = cp.results.clone();
                // What the results will hold is what the checkpoint holds:
                // a step its predecessor opened and did not checkpoint is
                // gone with it (its telemetry too).
                self.opened = (0..cp.next_step).map(|k| (k, now)).collect();
                self.closed = (0..cp.next_step)
                    .filter(|k| cp.active != Some(*k))
                    .map(|k| (k, now))
                    .collect();
                let wanted: Vec<u32> = (0..self.workers.len() as u32)
                    .filter(|i| !cp.results.contains(i))
                    .collect();
                self.machine = Follow::new(self.steps, &wanted, cp.active, cp.next_step);
                for &i in &wanted {
                    self.at(now, Ev::Poll(g, i));
                    if self.workers[i as usize].at(now).is_none() && self.rng.random_bool(0.7) {
                        let t = now + self.jitter(3.0);
                        self.at(t, Ev::Machine(g, Event::PodEnded(i, "gone".into())));
                    }
                }
                self.at(now, Ev::Tick(g));
                if self.stop_asked {
                    // The reconciler's next look at the stopping run.
                    let t = now + self.jitter(0.5);
                    self.at(t, Ev::Machine(g, Event::StopAsked));
                }
            }
            Ev::Store(seq, snapshot, ok) => {
                if ok && seq > self.store.seq {
                    self.store = snapshot;
                }
            }
        }
        Ok(())
    }

    /// A checkpoint of what the controller holds now, written a little
    /// later: when it lands, and whether it was written.
    fn save(&mut self, seq: u64) -> (f64, bool) {
        let (active, next_step) = self.machine.steps_at();
        let snapshot = Snapshot {
            seq,
            active,
            next_step,
            results: self.in_hand.clone(),
        };
        let ok = self.rng.random_bool(self.save_ok);
        let t = self.now + self.jitter(2.0);
        self.at(t, Ev::Store(seq, snapshot, ok));
        (t, ok)
    }

    fn effect(&mut self, e: Effect) -> Result<(), String> {
        let (now, g) = (self.now, self.generation);
        self.log.push(format!("{now:.3}   -> {e:?}"));
        match e {
            Effect::Open(k) => {
                // Invariant 3: a step opens only if a worker measures it.
                let measured_by = self
                    .workers
                    .iter()
                    .filter_map(|w| w.measured(k as u64))
                    .any(|(start, _)| start <= now);
                if !measured_by {
                    return Err(format!(
                        "step {k} opened at {now:.3}, and no worker measured it"
                    ));
                }
                if self.opened.iter().any(|(o, _)| *o == k) && self.generation == 0 {
                    return Err(format!("step {k} opened twice"));
                }
                self.opened.push((k, now));
                self.open_at.insert(k, (self.generation, now));
                self.seq += 1;
                self.save(self.seq);
            }
            Effect::Close(k) => {
                // A step closes only once every worker still followed has
                // ended its measuring of it.
                for (i, w) in self.workers.iter().enumerate() {
                    let followed = !self.lost.contains_key(&(i as u32));
                    if let Some((_, end)) = w.measured(k as u64)
                        && followed
                        && end > now
                    {
                        return Err(format!(
                            "step {k} closed at {now:.3} while worker {i} measured it until {end:.3}"
                        ));
                    }
                }
                self.closed.push((k, now));
                if let Some((g, open)) = self.open_at.get(&k).copied()
                    && g == self.generation
                {
                    self.spans.push((k, open, now));
                }
                self.seq += 1;
                self.save(self.seq);
            }
            Effect::Pull(i) => {
                let t = now + 0.01 + self.jitter(0.5);
                let w = &self.workers[i as usize];
                let ok = matches!(w.at(t), Some((WorkerPhase::Done, ..)))
                    && self.rng.random_bool(self.pull_ok);
                let ev = if ok {
                    Event::Pulled(i)
                } else {
                    Event::PullFailed(i)
                };
                self.at(t, Ev::Machine(g, ev));
            }
            Effect::Save(holding) => {
                for i in &holding {
                    if !self.in_hand.contains(i) {
                        return Err(format!("a checkpoint of worker {i}'s result, not in hand"));
                    }
                }
                self.seq += 1;
                let seq = self.seq;
                // The machine hears how the write went once it lands.
                let (t, ok) = self.save(seq);
                self.at(t + 1e-6, Ev::Machine(g, Event::Saved { holding, ok }));
            }
            Effect::Ack(workers) => {
                for i in workers {
                    // Invariant 2: let go only once its result is durable,
                    // or after the writes failed, with a note.
                    let durable = self.store.results.contains(&i);
                    // A note naming this worker among those let go.
                    let names = |l: &str| {
                        let from = l.find("load generator(s) ")? + "load generator(s) ".len();
                        let to = from + l[from..].find(" are held")?;
                        Some(l[from..to].split(", ").any(|n| n == i.to_string()))
                    };
                    let noted = self.log.iter().rev().take(8).any(|l| {
                        l.contains("checkpoint writes in a row failed") && names(l) == Some(true)
                    });
                    if !durable && !noted {
                        return Err(format!("worker {i} let go before its result was durable"));
                    }
                    if !durable {
                        self.given_up.insert(i);
                    }
                    self.acked.insert(i);
                    let w = &mut self.workers[i as usize];
                    if w.at(now).is_some() {
                        w.gone_at = Some(now + 0.2);
                    }
                }
            }
            Effect::StopWorkers => {
                for i in 0..self.workers.len() as u32 {
                    let t = now + self.jitter(0.5);
                    self.at(t, Ev::WorkerStop(i));
                }
            }
            Effect::Lost(i, why) => {
                self.lost.insert(i, why);
            }
            Effect::Note(_) => {}
            Effect::Done => self.done_at = Some(now),
        }
        Ok(())
    }

    /// The invariants at the end, against the truth.
    fn finally(&mut self) -> Result<(), String> {
        // Invariant 6: every run ends, within a bound after its last fault.
        let Some(done) = self.done_at else {
            return Err(format!(
                "the machine never ended (simulated until {:.0} s)",
                self.now
            ));
        };
        let last_truth = self
            .workers
            .iter()
            .map(|w| {
                w.done_at()
                    .max(w.gone_at.filter(|_| w.killed).unwrap_or(0.0))
            })
            .fold(0.0, f64::max);
        let crash = self
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Ev::Successor))
            .map(|(t, _)| *t)
            .fold(0.0, f64::max);
        let bound = last_truth.max(crash) + SILENT_LOST_S + COLLECT_S + SAVE_GIVE_UP_S + 30.0;
        if done > bound {
            return Err(format!("ended at {done:.1} s, past its bound {bound:.1} s"));
        }
        // Invariant 3: every step opened was closed.
        for (k, _) in &self.opened {
            if !self.closed.iter().any(|(c, _)| c == k) {
                return Err(format!("step {k} was opened and never closed"));
            }
        }
        for (i, w) in self.workers.iter().enumerate() {
            let i = i as u32;
            let held = self.store.results.contains(&i) || self.acked.contains(&i);
            // Invariant 1: every worker's result is held, or its share lost
            // and named.
            if !held && !self.lost.contains_key(&i) {
                return Err(format!("worker {i} is neither held nor named lost"));
            }
            // Nothing pulled is lost: a worker that lived to hand over its
            // result (and was not let go without a checkpoint) has it held.
            let handed_over = !w.killed || w.gone_at.is_some_and(|g| g > w.done_at() + 120.0);
            // Unless every pull of it failed for the whole collection (the
            // simulation's pulls fail at random; 40 in a row is rare, and
            // then giving up is what the machine is to do).
            let unreachable = !self.pulled.contains(&i)
                && self
                    .lost
                    .get(&i)
                    .is_some_and(|why| why.contains("could not be pulled"));
            if handed_over && !held && !unreachable {
                return Err(format!(
                    "worker {i} lived to hand over its result and it is not held ({:?})",
                    self.lost.get(&i)
                ));
            }
        }
        self.energy_of_steps()
    }

    /// Invariant 4, against the GPU's truth: each step opened and closed by
    /// one controller has its energy published within the stated tolerance
    /// of the truth over the client's window, or withheld with a reason.
    /// (Steps a successor took over are left to the checkpoint's own test,
    /// `measure::collect`'s `a_step_taken_over_from_its_checkpoint_...`.)
    fn energy_of_steps(&mut self) -> Result<(), String> {
        for (k, open, close) in self.spans.clone() {
            let (mut measuring, mut reported, mut window) = (0, 0, None::<(f64, f64)>);
            for (i, w) in self.workers.iter().enumerate() {
                let Some((from, to)) = w.measured(k as u64) else {
                    continue;
                };
                measuring += 1;
                let i = i as u32;
                if self.store.results.contains(&i) || self.acked.contains(&i) {
                    reported += 1;
                    window = Some(window.map_or((from, to), |(a, b)| (a.min(from), b.max(to))));
                }
            }
            let Some(client) = window else {
                continue;
            };
            let coverage = crate::results::WorkerCoverage {
                workers: measuring,
                reported,
            };
            let outcome = self.exporter.step(k, (open, close), client, coverage)?;
            self.energy.push(outcome);
        }
        Ok(())
    }
}

/// What one schedule exercised, for the campaign's report.
#[derive(Default)]
struct Tally {
    schedules: u64,
    workers: u64,
    killed: u64,
    lost: u64,
    stopped: u64,
    crashes: u64,
    failing_writes: u64,
    steps_opened: u64,
    given_up: u64,
    energy_published: u64,
    energy_withheld: BTreeMap<&'static str, u64>,
    /// The worst published energy's distance from the truth (relative),
    /// by the window's length in refresh periods: under 10, 10 to 40, 40
    /// to 200, 200 and more.
    energy_worst: [f64; 4],
}

fn schedule(seed: u64, tally: &mut Tally) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    let ran = sim.run();
    tally.schedules += 1;
    tally.workers += sim.workers.len() as u64;
    tally.killed += sim.workers.iter().filter(|w| w.killed).count() as u64;
    tally.lost += sim.lost.len() as u64;
    tally.stopped += u64::from(sim.workers.iter().any(|w| w.stop_at.is_some()));
    tally.crashes += u64::from(sim.generation > 0);
    tally.failing_writes += u64::from(sim.save_ok < 1.0);
    tally.steps_opened += sim.opened.len() as u64;
    tally.given_up += sim.given_up.len() as u64;
    for o in &sim.energy {
        match o {
            exporter::Outcome::Published { off, periods } => {
                tally.energy_published += 1;
                let bucket = [10.0, 40.0, 200.0].iter().filter(|b| periods >= *b).count();
                tally.energy_worst[bucket] = tally.energy_worst[bucket].max(*off);
            }
            exporter::Outcome::Withheld(why) => *tally.energy_withheld.entry(why).or_default() += 1,
        }
    }
    ran.map_err(|e| {
        let tail: Vec<&String> = sim.log.iter().rev().take(40).collect();
        format!(
            "schedule {seed}: {e}\nworkers: {:?}\nsteps: {}, pull ok {}, save ok {}\nlast events (newest first):\n{}",
            sim.workers,
            sim.steps,
            sim.pull_ok,
            sim.save_ok,
            tail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        )
    })
}

#[test]
fn thousands_of_fault_schedules_keep_every_invariant() {
    if let Some(seed) = std::env::var("FOLLOW_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        schedule(seed, &mut Tally::default()).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let n: u64 = std::env::var("FOLLOW_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000);
    let first: u64 = std::env::var("FOLLOW_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut tally = Tally::default();
    for seed in first..first + n {
        if let Err(e) = schedule(seed, &mut tally) {
            panic!("{e}\nreplay: FOLLOW_SEED={seed} cargo test --lib measure::follow");
        }
    }
    if std::env::var_os("FOLLOW_STATS").is_some() {
        let t = &tally;
        println!(
            "== {} schedules, {} workers: {} killed, {} shares lost; {} with a stop, {} with a controller crash, {} with failing checkpoint writes; {} steps opened; {} workers let go without a checkpoint after failed writes",
            t.schedules,
            t.workers,
            t.killed,
            t.lost,
            t.stopped,
            t.crashes,
            t.failing_writes,
            t.steps_opened,
            t.given_up
        );
        println!(
            "== step energy: {} published, the worst from the truth over a window of <10, 10-40, 40-200, >=200 refresh periods: {:.2?} %; withheld: {:?}",
            t.energy_published,
            t.energy_worst.map(|w| w * 100.0),
            t.energy_withheld
        );
    }
    // The schedules reach the faults they are for.
    assert!(tally.killed > 0 && tally.lost > 0 && tally.stopped > 0 && tally.crashes > 0);
    assert!(tally.energy_published > 0 && !tally.energy_withheld.is_empty());
    assert!(
        tally.steps_opened >= tally.schedules,
        "a step opens in most schedules"
    );
}

fn at(phase: WorkerPhase, step: u64, seq: u64) -> WorkerProgress {
    WorkerProgress {
        seq,
        phase,
        step,
        ..Default::default()
    }
}

/// Feeds `events` at `now`; every effect, in order.
fn feed(m: &mut Follow, now: f64, events: Vec<Event>) -> Vec<Effect> {
    let mut out = Vec::new();
    for e in events {
        out.extend(m.handle(now, e));
        assert_eq!(m.check(), Ok(()));
    }
    out
}

/// Symptom: a worker killed mid-step (SIGKILL, an OOM kill) held the whole
/// run open until it failed with "only the telemetry is kept". Now its
/// share ends, the other's result is pulled, checkpointed and let go, the
/// step closes, and the machine ends naming the lost worker.
#[test]
fn a_worker_killed_mid_step_loses_only_its_own_share() {
    use WorkerPhase::*;
    let mut m = Follow::new(1, &[0, 1], None, 0);
    let opened = feed(
        &mut m,
        1.0,
        vec![
            Event::Progress(0, at(Measuring, 0, 2)),
            Event::Progress(1, at(Measuring, 0, 2)),
        ],
    );
    assert_eq!(opened, [Effect::Open(0)]);
    // Worker 1 is killed: its progress stops coming; worker 0 finishes.
    let out = feed(
        &mut m,
        5.0,
        vec![Event::ProgressFailed(1), Event::Progress(0, at(Done, 0, 3))],
    );
    assert_eq!(out, [Effect::Pull(0)], "the step waits for worker 1");
    let out = feed(&mut m, 5.1, vec![Event::Pulled(0)]);
    assert_eq!(out, [Effect::Save(vec![0])]);
    let out = feed(
        &mut m,
        5.2,
        vec![Event::Saved {
            holding: vec![0],
            ok: true,
        }],
    );
    assert_eq!(out, [Effect::Ack(vec![0])]);
    // The cluster says its pod ended: its share is lost, the step closes
    // and the machine ends.
    let why = "its pod r-loadgen-1 ended without handing over its result".to_string();
    let out = feed(&mut m, 6.0, vec![Event::PodEnded(1, why.clone())]);
    assert_eq!(
        out,
        [Effect::Lost(1, why.clone()), Effect::Close(0), Effect::Done]
    );
    assert_eq!(m.lost().collect::<Vec<_>>(), [(1, why.as_str())]);
    // Without the cluster's word, its silence ends it too, within a bound.
    let mut m = Follow::new(1, &[0, 1], Some(0), 1);
    feed(&mut m, 0.0, vec![Event::Progress(0, at(Done, 0, 3))]);
    feed(&mut m, 0.1, vec![Event::Pulled(0)]);
    feed(
        &mut m,
        0.2,
        vec![Event::Saved {
            holding: vec![0],
            ok: true,
        }],
    );
    feed(&mut m, 1.0, vec![Event::ProgressFailed(1)]);
    assert!(!feed(&mut m, 1.0 + SILENT_LOST_S - 1.0, vec![Event::Tick]).contains(&Effect::Done));
    let out = feed(&mut m, 1.0 + SILENT_LOST_S, vec![Event::Tick]);
    assert!(matches!(out[0], Effect::Lost(1, _)), "{out:?}");
    assert_eq!(out.last(), Some(&Effect::Done));
}

/// Symptom: a 3-step sweep cancelled in its second step grew a third step
/// with a 1 ms window and no client. Now the stop closes the second step
/// and no step opens after it, whether the controller asked for the stop
/// or the workers were stopped on their own (SIGTERM) and said so.
#[test]
fn a_sweep_stopped_in_its_second_step_opens_no_third() {
    use WorkerPhase::*;
    for asked in [true, false] {
        let mut m = Follow::new(3, &[0], Some(1), 2);
        feed(&mut m, 10.0, vec![Event::Progress(0, at(Measuring, 1, 5))]);
        if asked {
            assert_eq!(
                feed(&mut m, 11.0, vec![Event::StopAsked]),
                [Effect::StopWorkers]
            );
        }
        let stopped = WorkerProgress {
            stopped: true,
            ..at(Done, 1, 6)
        };
        let out = feed(&mut m, 11.2, vec![Event::Progress(0, stopped)]);
        assert_eq!(out, [Effect::Close(1), Effect::Pull(0)], "asked: {asked}");
        feed(&mut m, 11.3, vec![Event::Pulled(0)]);
        let out = feed(
            &mut m,
            11.4,
            vec![Event::Saved {
                holding: vec![0],
                ok: true,
            }],
        );
        assert_eq!(out, [Effect::Ack(vec![0]), Effect::Done]);
        assert_eq!(m.steps_at(), (None, 3), "no step is left to open");
    }
    // Stopped in the warmup of its second step: the second never opens.
    let mut m = Follow::new(3, &[0, 1], None, 1);
    let stopped = |seq| WorkerProgress {
        stopped: true,
        ..at(Done, 1, seq)
    };
    feed(&mut m, 1.0, vec![Event::Progress(0, at(Warmup, 1, 4))]);
    let out = feed(
        &mut m,
        2.0,
        vec![
            Event::Progress(0, stopped(5)),
            Event::Progress(1, stopped(5)),
        ],
    );
    assert!(!out.iter().any(|e| matches!(e, Effect::Open(_))), "{out:?}");
}

/// A checkpoint write that fails keeps the worker: it is tried again, and
/// the worker is let go only once a write holding its result succeeds.
#[test]
fn a_worker_is_let_go_only_once_its_result_is_checkpointed() {
    use WorkerPhase::*;
    let mut m = Follow::new(1, &[0], None, 1);
    feed(
        &mut m,
        0.0,
        vec![Event::Progress(0, at(Done, 0, 3)), Event::Pulled(0)],
    );
    let out = feed(
        &mut m,
        0.5,
        vec![Event::Saved {
            holding: vec![0],
            ok: false,
        }],
    );
    assert!(
        out.is_empty(),
        "not let go, not tried again at once: {out:?}"
    );
    let out = feed(&mut m, 0.5 + RETRY_S, vec![Event::Tick]);
    assert_eq!(out, [Effect::Save(vec![0])]);
    let out = feed(
        &mut m,
        2.0,
        vec![Event::Saved {
            holding: vec![0],
            ok: true,
        }],
    );
    assert_eq!(out, [Effect::Ack(vec![0]), Effect::Done]);
}

/// Checkpoint writes that keep failing (a policy or a quota refusing them,
/// an API server's outage): the worker keeps its result for minutes, so a
/// controller that crashes meanwhile leaves it to its successor; the write
/// is tried again less and less often; only after SAVE_GIVE_UP_S is the
/// worker let go, with a note. A run that was asked to stop waits only a
/// few tries: the reconciler ends it after STOP_GRACE.
#[test]
fn a_checkpoint_that_cannot_be_written_keeps_the_worker_for_minutes() {
    use WorkerPhase::*;
    for stopping in [false, true] {
        let mut m = Follow::new(1, &[0], None, 1);
        if stopping {
            feed(&mut m, 0.0, vec![Event::StopAsked]);
        }
        feed(
            &mut m,
            0.0,
            vec![Event::Progress(0, at(Done, 0, 3)), Event::Pulled(0)],
        );
        let (mut now, mut tries, mut waits) = (0.0, 0, Vec::new());
        let let_go = loop {
            let out = feed(
                &mut m,
                now,
                vec![Event::Saved {
                    holding: vec![0],
                    ok: false,
                }],
            );
            tries += 1;
            if out.iter().any(|e| matches!(e, Effect::Ack(_))) {
                break out;
            }
            assert!(out.is_empty(), "{out:?}");
            // The next try comes when the machine asks for it.
            let asked = (1..=200)
                .map(|k| now + f64::from(k) * 0.1)
                .find(|&t| feed(&mut m, t, vec![Event::Tick]) == [Effect::Save(vec![0])])
                .expect("tried again within 20 s");
            waits.push(asked - now);
            now = asked;
        };
        let noted = let_go.iter().any(
            |e| matches!(e, Effect::Note(n) if n.contains("checkpoint writes in a row failed")),
        );
        assert!(noted, "{let_go:?}");
        if stopping {
            assert_eq!(tries, SAVE_TRIES, "{waits:?}");
        } else {
            assert!(
                (SAVE_GIVE_UP_S..SAVE_GIVE_UP_S + 11.0).contains(&now),
                "{now}"
            );
            // 1, 2, 4, 8, then every 10 s.
            assert!((waits[0] - 1.0).abs() < 0.11, "{waits:?}");
            assert!((waits[3] - 8.0).abs() < 0.11, "{waits:?}");
            assert!(
                waits[5..].iter().all(|w| (w - 10.0).abs() < 0.11),
                "{waits:?}"
            );
        }
    }
}
