//! The latency model of the inference simulator: continuous batching, as vLLM,
//! SGLang and TRT-LLM schedule. Pure: time is passed in, so tests drive it on a
//! virtual clock.
//!
//! The engine runs in steps. Before a step it admits waiting sequences in
//! arrival order while the batch has a free slot, the step's prefill budget
//! (`max_batched_tokens`) has room for the prompt, and the KV cache can hold the
//! prompt plus every token the sequence may generate (reserved up front, so
//! nothing is ever preempted). A step lasts
//!
//! ```text
//! decode_base + decode_per_seq × (sequences decoding) + prefill_per_token × (prompt tokens prefilled)
//! ```
//!
//! and at its end every sequence in the batch emits one token: a newly
//! admitted one its first (prefill produces it), the others their next. A
//! sequence leaves when it has produced `max_tokens`. So TTFT is queueing plus
//! one step, and ITL is the step time, which grows with the batch and with the
//! prefills that share the step: the shape of real serving.

use std::collections::VecDeque;

/// The model's parameters. Times in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyModel {
    /// Sequences decoding at once (vLLM's `max_num_seqs`).
    pub max_batch: usize,
    /// Prompt tokens prefilled in one step (vLLM's `max_num_batched_tokens`).
    pub max_batched_tokens: u64,
    /// KV cache capacity in tokens.
    pub kv_capacity: u64,
    pub decode_base: f64,
    pub decode_per_seq: f64,
    pub prefill_per_token: f64,
}

impl LatencyModel {
    /// Step time for `decoding` sequences and `prefill_tokens` new prompt tokens.
    pub fn step_time(&self, decoding: usize, prefill_tokens: u64) -> f64 {
        self.decode_base
            + self.decode_per_seq * decoding as f64
            + self.prefill_per_token * prefill_tokens as f64
    }

    /// Why a request can never be served, if it cannot.
    pub fn rejects(&self, prompt: u64, max_tokens: u64) -> Option<String> {
        let need = prompt + max_tokens;
        if need > self.kv_capacity {
            return Some(format!(
                "this model's maximum context is {} tokens; the request needs {need} ({prompt} in the prompt, {max_tokens} to generate)",
                self.kv_capacity
            ));
        }
        None
    }
}

/// One sequence in the scheduler.
#[derive(Clone, Debug)]
struct Seq {
    id: u64,
    prompt: u64,
    max_tokens: u64,
    generated: u64,
    prefilled: bool,
}

/// What happened to one sequence at the end of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub id: u64,
    /// 1 for the first token.
    pub index: u64,
    pub finished: bool,
}

/// A step about to run: its duration and the sequences admitted for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub duration: f64,
    pub admitted: Vec<u64>,
}

/// The continuous-batching scheduler.
#[derive(Debug)]
pub struct Scheduler {
    pub model: LatencyModel,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    kv_reserved: u64,
}

impl Scheduler {
    pub fn new(model: LatencyModel) -> Self {
        Self {
            model,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_reserved: 0,
        }
    }

    /// Queues a sequence. The caller has checked [`LatencyModel::rejects`].
    pub fn submit(&mut self, id: u64, prompt: u64, max_tokens: u64) {
        self.waiting.push_back(Seq {
            id,
            prompt,
            max_tokens: max_tokens.max(1),
            generated: 0,
            prefilled: false,
        });
    }

    /// Drops a sequence wherever it is (its client went away).
    pub fn cancel(&mut self, id: u64) {
        self.waiting.retain(|s| s.id != id);
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let s = self.running.swap_remove(i);
            self.kv_reserved -= s.prompt + s.max_tokens;
        }
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// KV cache in use, 0..=1: the prompt and generated tokens of the batch.
    pub fn kv_usage(&self) -> f64 {
        let used: u64 = self
            .running
            .iter()
            .map(|s| {
                if s.prefilled {
                    s.prompt + s.generated
                } else {
                    0
                }
            })
            .sum();
        used as f64 / self.model.kv_capacity.max(1) as f64
    }

    /// Admits what fits and says how long the next step takes; `None` when idle.
    pub fn plan(&mut self) -> Option<Step> {
        let mut budget = self.model.max_batched_tokens;
        let mut admitted = Vec::new();
        let mut prefill = 0;
        while let Some(head) = self.waiting.front() {
            let need = head.prompt + head.max_tokens;
            let fits_batch = self.running.len() < self.model.max_batch;
            let fits_kv = self.kv_reserved + need <= self.model.kv_capacity;
            // A prompt larger than the whole budget runs alone in its step.
            let fits_budget = head.prompt <= budget || admitted.is_empty();
            if !(fits_batch && fits_kv && fits_budget) {
                break;
            }
            let Some(seq) = self.waiting.pop_front() else {
                break;
            };
            budget = budget.saturating_sub(seq.prompt);
            prefill += seq.prompt;
            self.kv_reserved += need;
            admitted.push(seq.id);
            self.running.push(seq);
        }
        if self.running.is_empty() {
            return None;
        }
        let decoding = self.running.len() - admitted.len();
        Some(Step {
            duration: self.model.step_time(decoding, prefill),
            admitted,
        })
    }

    /// Ends the planned step: every running sequence emits one token.
    pub fn complete(&mut self) -> Vec<Emitted> {
        let mut out = Vec::with_capacity(self.running.len());
        for s in &mut self.running {
            s.prefilled = true;
            s.generated += 1;
            out.push(Emitted {
                id: s.id,
                index: s.generated,
                finished: s.generated >= s.max_tokens,
            });
        }
        let before = self.running.len();
        let mut freed = 0;
        self.running.retain(|s| {
            let done = s.generated >= s.max_tokens;
            if done {
                freed += s.prompt + s.max_tokens;
            }
            !done
        });
        debug_assert!(self.running.len() <= before);
        self.kv_reserved -= freed;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn model() -> LatencyModel {
        LatencyModel {
            max_batch: 8,
            max_batched_tokens: 1024,
            kv_capacity: 8192,
            decode_base: 0.010,
            decode_per_seq: 0.001,
            prefill_per_token: 0.0001,
        }
    }

    /// Runs `n` requests arriving at once on a virtual clock; returns each
    /// request's (TTFT, mean ITL, end time).
    fn run(m: LatencyModel, n: u64, prompt: u64, out: u64) -> Vec<(f64, f64, f64)> {
        let mut s = Scheduler::new(m);
        for id in 0..n {
            s.submit(id, prompt, out);
        }
        let mut t = 0.0;
        let mut first: HashMap<u64, f64> = HashMap::new();
        let mut done = Vec::new();
        while let Some(step) = s.plan() {
            t += step.duration;
            for e in s.complete() {
                if e.index == 1 {
                    first.insert(e.id, t);
                }
                if e.finished {
                    let f = first[&e.id];
                    let itl = if out > 1 {
                        (t - f) / (out - 1) as f64
                    } else {
                        0.0
                    };
                    done.push((f, itl, t));
                }
            }
        }
        assert!(s.is_idle());
        assert_eq!(s.kv_reserved, 0, "every reservation is released");
        done
    }

    fn mean(v: impl Iterator<Item = f64>) -> f64 {
        let v: Vec<f64> = v.collect();
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn one_request_takes_one_prefill_step_then_one_step_per_token() {
        let m = model();
        let r = run(m.clone(), 1, 100, 10);
        let (ttft, itl, end) = r[0];
        assert!((ttft - m.step_time(0, 100)).abs() < 1e-12);
        assert!((itl - m.step_time(1, 0)).abs() < 1e-12);
        assert!((end - (ttft + 9.0 * itl)).abs() < 1e-12);
    }

    #[test]
    fn latency_grows_with_load() {
        let mut last = (0.0, 0.0);
        for n in [1, 4, 8, 16, 32] {
            let r = run(model(), n, 200, 32);
            let ttft = mean(r.iter().map(|x| x.0));
            let itl = mean(r.iter().map(|x| x.1));
            assert!(ttft > last.0, "TTFT at {n} streams: {ttft} <= {}", last.0);
            assert!(itl >= last.1, "ITL at {n} streams: {itl} < {}", last.1);
            last = (ttft, itl);
        }
    }

    #[test]
    fn a_full_batch_queues_and_the_kv_cache_limits_admission() {
        let mut s = Scheduler::new(model());
        for id in 0..10 {
            s.submit(id, 10, 10);
        }
        let step = s.plan().unwrap();
        assert_eq!(step.admitted.len(), 8, "max_batch");
        assert_eq!((s.running(), s.waiting()), (8, 2));

        let mut m = model();
        m.kv_capacity = 100;
        let mut s = Scheduler::new(m);
        for id in 0..3 {
            s.submit(id, 20, 20);
        }
        assert_eq!(
            s.plan().unwrap().admitted,
            vec![0, 1],
            "two of 40 tokens fit in 100"
        );
        s.complete();
        assert!((s.kv_usage() - 42.0 / 100.0).abs() < 1e-12);
    }

    #[test]
    fn the_prefill_budget_spreads_prompts_over_steps() {
        let mut s = Scheduler::new(model());
        for id in 0..3 {
            s.submit(id, 600, 4);
        }
        assert_eq!(s.plan().unwrap().admitted, vec![0]);
        s.complete();
        assert_eq!(s.plan().unwrap().admitted, vec![1]);
        // A prompt over the whole budget still runs, alone.
        let mut s = Scheduler::new(model());
        s.submit(9, 5000, 1);
        assert_eq!(s.plan().unwrap().admitted, vec![9]);
    }

    #[test]
    fn cancel_releases_the_reservation() {
        let mut s = Scheduler::new(model());
        s.submit(1, 10, 10);
        s.submit(2, 10, 10);
        s.plan();
        s.cancel(1);
        s.cancel(2);
        assert!(s.is_idle());
        assert_eq!(s.kv_reserved, 0);
        assert!(model().rejects(8000, 500).is_some());
        assert!(model().rejects(100, 100).is_none());
    }
}
