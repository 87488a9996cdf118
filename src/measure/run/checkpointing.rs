//! The session's checkpoint: what it holds (the steps' telemetry, the step
//! bookkeeping, the results in hand, the lost workers), restoring from a
//! predecessor's, and writing one — numbered, so an older write never
//! lands over a newer one.

use super::*;

impl Driver {
    /// Takes the measurement over from a predecessor's checkpoint.
    pub(super) fn restore(&mut self, cp: Checkpoint) -> Resume {
        let s = &mut self.state;
        s.telemetry = cp
            .steps
            .into_iter()
            .map(|st| st.restore(self.filter.clone()))
            .collect();
        s.notes = cp.notes;
        s.idle = cp.idle;
        s.lost = cp.lost;
        s.last_scrape_t = cp.last_scrape_t;
        s.changed(None);
        self.budget = self.setup.budget().restored(&s.telemetry);
        self.results = cp
            .results
            .into_iter()
            .flatten()
            .map(|r| (r.worker, r))
            .collect();
        Resume {
            active: cp.active,
            next_step: cp.next_step,
            collected: cp.collected && !self.results.is_empty(),
        }
    }

    /// The measurement as far as it went.
    pub(super) fn checkpoint(&self, active: Option<usize>, next_step: usize) -> Checkpoint {
        let s = &self.state;
        Checkpoint {
            version: checkpoint::VERSION,
            run_uid: self.setup.run_uid.clone(),
            origin_unix_ms: self.origin_unix_ms,
            taken_unix_ms: unix_ms(),
            last_scrape_t: s.last_scrape_t,
            // The checkpoint sits in the run's namespace: it names no pod
            // the run may not read either.
            steps: s
                .telemetry
                .iter()
                .map(|t| {
                    let mut step = SavedStep::of(t);
                    for g in &mut step.gpu.gpus {
                        s.pods.anonymize(&mut g.pods);
                    }
                    step
                })
                .collect(),
            active,
            next_step,
            notes: s.notes.clone(),
            results: (!self.results.is_empty()).then(|| self.results.values().cloned().collect()),
            workers: self.workers as u32,
            collected: self.collected,
            idle: s.idle.clone(),
            lost: s.lost.clone(),
        }
    }

    /// Writes a checkpoint in the background (boundaries and the periodic
    /// ones: the schedule does not wait on the API server).
    pub(super) fn save(&mut self, active: Option<usize>, next_step: usize) {
        self.steps_at = (active, next_step);
        let cp = self.checkpoint(active, next_step);
        self.last_checkpoint = Instant::now();
        let seq = self.next_seq();
        let (written, cluster) = (self.written.clone(), self.setup.cluster.clone());
        tokio::spawn(async move { write(&*cluster, &written, seq, cp).await });
    }

    /// Writes a checkpoint now, with the results pulled so far, and says
    /// whether it was written (a worker is let go only once it was).
    pub(super) async fn checkpoint_results(&mut self) -> bool {
        let (active, next_step) = self.steps_at;
        let cp = self.checkpoint(active, next_step);
        let seq = self.next_seq();
        write(&*self.setup.cluster, &self.written, seq, cp).await
    }

    /// A checkpoint is due during a step.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= checkpoint::EVERY
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.checkpoints += 1;
        self.checkpoints
    }
}

/// Writes checkpoint number `seq` unless a newer one was written already.
pub(super) async fn write(
    cluster: &dyn Cluster,
    written: &tokio::sync::Mutex<u64>,
    seq: u64,
    cp: Checkpoint,
) -> bool {
    let mut last = written.lock().await;
    if seq <= *last {
        return true;
    }
    let written = match cluster.write_checkpoint(cp, seq).await {
        Ok(()) => {
            *last = seq;
            true
        }
        Err(e) => {
            warn!(checkpoint = %cluster.checkpoint_name(), "writing the checkpoint: {e}");
            false
        }
    };
    checkpoint::record_write(written);
    written
}
