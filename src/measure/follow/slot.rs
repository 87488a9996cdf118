//! One worker as the machine follows it: its latest progress, since when it
//! is silent, where its result is, and whether its share was given up.

use crate::contract::{WorkerPhase, WorkerProgress};

/// Where one worker's result is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Held {
    /// Not yet: the worker is running, or its pull waits for a retry.
    No { retry_at: f64 },
    /// A pull is in flight.
    Pulling,
    /// In hand, not yet in a written checkpoint.
    InHand,
    /// In a written checkpoint (or given up on one), and the worker let go.
    Durable,
}

#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) latest: Option<WorkerProgress>,
    /// Since when its progress has failed to come, without an answer since.
    pub(super) failing_since: Option<f64>,
    /// Since when it reports Done (its result is tried from then).
    pub(super) done_at: Option<f64>,
    pub(super) lost: Option<String>,
    /// Its pod ended (a loss nothing revives).
    pub(super) pod_ended: bool,
    pub(super) held: Held,
}

impl Slot {
    pub(super) fn live(&self) -> bool {
        self.lost.is_none()
    }

    pub(super) fn done(&self) -> bool {
        self.latest.is_some_and(|p| p.phase == WorkerPhase::Done)
    }

    pub(super) fn result_held(&self) -> bool {
        matches!(self.held, Held::InHand | Held::Durable)
    }

    /// It measures step `k` or went past it having measured its steps.
    pub(super) fn in_or_past(&self, k: u64) -> bool {
        self.latest.is_some_and(|p| {
            p.step > k
                || p.step == k && p.phase == WorkerPhase::Measuring
                || p.phase == WorkerPhase::Done && !p.stopped
        })
    }

    /// It will not measure step `k`: it ended early (stopped) before it.
    pub(super) fn out_before(&self, k: u64) -> bool {
        self.latest
            .is_some_and(|p| p.phase == WorkerPhase::Done && p.stopped && p.step <= k)
    }

    /// It has gone past step `k` (or ended).
    pub(super) fn past(&self, k: u64) -> bool {
        self.latest
            .is_some_and(|p| p.step > k || p.phase == WorkerPhase::Done)
    }
}
