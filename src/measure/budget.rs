//! A run's telemetry budget: the most bytes its steps' telemetry may hold,
//! across every step and trial, measured as the checkpoint encodes it
//! (CBOR, before compression).
//!
//! Each step is bounded on its own (series, fields, GPUs, key length:
//! docs/telemetry.md "Bounds"), but a step's bounds are generous and a run
//! keeps every step to its end: one page of many long series, scraped
//! through a sweep, would hold hundreds of MiB. The budget bounds the run as
//! a whole. Past it, the telemetry of the step being measured is let go —
//! its server metrics first; its GPU telemetry too if that alone passes the
//! budget — and none of that kind is kept for the rest of the run. What
//! rested on it is withheld with the reason (a coverage gap, a warning),
//! never kept in part: a counter sampled for half a step reads as half the
//! step.
//!
//! Runs also share the controller's **pool** (`--max-telemetry-mib`): when
//! the runs' telemetry together passes it, a run holding more than its fair
//! share (the pool over the runs measured) lets go as above at its next
//! sizing, so the runs that hold the most pay for it and a run within its
//! share is never cut for another's use.
//!
//! Sizing encodes the step into a counting writer (nothing is kept:
//! [`crate::telemetry::encoded_len`]);
//! it is done after the first scrape of a step, and then whenever
//! [`CHECK_EVERY_SCRAPES`] scrapes or [`CHECK_EVERY_BYTES`] of pages have
//! been ingested since the last sizing, so between two sizings a run's
//! telemetry grows by at most that many scrapes' worth.

use super::collect::StepTelemetry;
pub use crate::results::Dropped;

/// The default budget of one run's telemetry, MiB (`--max-run-telemetry-mib`).
pub const DEFAULT_RUN_TELEMETRY_MIB: usize = 32;
/// The default limit of every run's telemetry together, MiB
/// (`--max-telemetry-mib`): held as at most five times that, it fits the
/// chart's 512 Mi with room for the rest.
pub const DEFAULT_TELEMETRY_MIB: usize = 64;
/// Scrapes between two sizings at most.
pub const CHECK_EVERY_SCRAPES: u32 = 10;
/// Bytes of pages ingested between two sizings at most.
pub const CHECK_EVERY_BYTES: usize = 4 << 20;

/// The telemetry every run holds together, against the controller's limit.
#[derive(Debug, Default)]
pub struct Pool {
    limit: usize,
    held: std::sync::atomic::AtomicUsize,
    runs: std::sync::atomic::AtomicUsize,
}

impl Pool {
    /// A pool of `limit` bytes (0: none).
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Pool {
            limit,
            ..Default::default()
        })
    }

    /// The bytes the runs held at their latest sizings.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a run holding `own` bytes is past its share: the pool is
    /// past its limit and the run holds more than the limit over the runs.
    fn past_share(&self, own: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let runs = self.runs.load(Relaxed).max(1);
        self.limit > 0 && self.held.load(Relaxed) > self.limit && own > self.limit / runs
    }
}

/// A run's budget and what its steps were last sized at.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    /// The controller's pool, and what this run adds to it.
    pool: Option<std::sync::Arc<Pool>>,
    reported: usize,
    /// Each step's size as last measured.
    sizes: Vec<usize>,
    scrapes_since: u32,
    bytes_since: usize,
    /// The kinds let go for the rest of the run.
    pub off: Dropped,
}

impl Budget {
    /// A budget of `limit` bytes (0: none).
    pub fn new(limit: usize) -> Self {
        Budget {
            limit,
            pool: None,
            reported: 0,
            sizes: Vec::new(),
            scrapes_since: 0,
            bytes_since: 0,
            off: Dropped::default(),
        }
    }

    /// Shares `pool` with the controller's other runs (until dropped).
    pub fn in_pool(mut self, pool: std::sync::Arc<Pool>) -> Self {
        pool.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pool = Some(pool);
        self
    }

    /// Tells the pool what the run holds now.
    fn report(&mut self, own: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(pool) = &self.pool {
            pool.held.fetch_add(own, Relaxed);
            pool.held.fetch_sub(self.reported, Relaxed);
        }
        self.reported = own;
    }

    /// Whether the run, holding `own` bytes, is past its budget or its
    /// share of the pool.
    fn past(&self, own: usize) -> bool {
        (self.limit > 0 && own > self.limit)
            || self.pool.as_ref().is_some_and(|p| p.past_share(own))
    }

    /// Carries on from restored steps: what they let go stays let go, and
    /// every step is sized at the next scrape.
    pub fn restored(mut self, steps: &[StepTelemetry]) -> Self {
        for s in steps {
            self.off.server |= s.dropped.server;
            self.off.gpu |= s.dropped.gpu;
        }
        self.off.budget_bytes = self.limit as u64;
        self.scrapes_since = CHECK_EVERY_SCRAPES;
        self
    }

    /// The telemetry of a step opened now: what the run let go is not kept.
    pub fn opened(&self, step: &mut StepTelemetry) {
        if self.off.any() {
            step.dropped = self.off;
        }
    }

    /// Called after each scrape of step `k` that ingested `page_bytes`:
    /// sizes the run's telemetry when it is due, and past the budget lets
    /// step `k`'s server metrics go, then its GPU telemetry. Returns what
    /// it let go now, for the run's notes.
    pub fn after_scrape(
        &mut self,
        steps: &mut [StepTelemetry],
        k: usize,
        page_bytes: usize,
    ) -> Option<Dropped> {
        let pooled = self.pool.as_ref().is_some_and(|p| p.limit > 0);
        if (self.limit == 0 && !pooled) || k >= steps.len() {
            return None;
        }
        self.scrapes_since += 1;
        self.bytes_since += page_bytes;
        let opening = self.sizes.len() <= k;
        if !opening
            && self.scrapes_since < CHECK_EVERY_SCRAPES
            && self.bytes_since < CHECK_EVERY_BYTES
        {
            return None;
        }
        self.scrapes_since = 0;
        self.bytes_since = 0;
        // Steps not sized yet (restored ones), then step k afresh.
        self.sizes.resize(steps.len(), usize::MAX);
        for (i, s) in steps.iter().enumerate() {
            if self.sizes[i] == usize::MAX || i == k {
                self.sizes[i] = s.encoded_bytes();
            }
        }
        let before = self.off;
        let step = &mut steps[k];
        self.report(self.sizes.iter().sum());
        while self.past(self.reported) && !(self.off.server && self.off.gpu) {
            if !self.off.server {
                self.off.server = true;
            } else {
                self.off.gpu = true;
            }
            let own_budget = self.limit > 0 && self.reported > self.limit;
            let pool_limit = self.pool.as_ref().map_or(0, |p| p.limit);
            self.off.pool = !own_budget;
            self.off.budget_bytes = if own_budget { self.limit } else { pool_limit } as u64;
            step.let_go(self.off);
            self.sizes[k] = step.encoded_bytes();
            self.report(self.sizes.iter().sum());
        }
        (self.off != before).then_some(self.off)
    }
}

impl Drop for Budget {
    /// The run's telemetry leaves the pool with it.
    fn drop(&mut self) {
        self.report(0);
        if let Some(pool) = &self.pool {
            pool.runs.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
