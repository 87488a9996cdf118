//! The scrapes of a run: every endpoint found so far, at most [`MAX_FETCHES`]
//! at once, each answer ingested off the async runtime into a step's
//! telemetry (or the idle baseline's) and logged for its endpoint.

use super::*;

impl Driver {
    /// Fetches every endpoint once and ingests the answers into step `k`'s
    /// telemetry (begun by this scrape when `opens`). The step's window runs
    /// from its opening scrape to its latest one, each stamped when it was sent.
    pub(super) async fn scrape(&mut self, k: usize, opens: bool) {
        self.scrape_step(k, opens, false).await;
    }

    /// [`Driver::scrape`]; `resumed`: the step was already under way when
    /// this session took the run up.
    pub(super) async fn scrape_step(&mut self, k: usize, opens: bool, resumed: bool) {
        let (t, stamp, answers) = self.fetch_all(None).await;
        self.ingest_step_as(k, t, stamp, answers, opens, resumed);
    }

    /// Ingests the answers of a scrape of step `k` sent at `t`.
    pub(super) fn ingest_step(&mut self, k: usize, t: f64, stamp: u64, answers: Vec<Answer>) {
        self.ingest_step_as(k, t, stamp, answers, false, false);
    }

    pub(super) fn ingest_step_as(
        &mut self,
        k: usize,
        t: f64,
        stamp: u64,
        answers: Vec<Answer>,
        opens: bool,
        resumed: bool,
    ) {
        let s = &mut self.state;
        s.changed(Some(k));
        if opens && s.telemetry.len() == k {
            let mut step = StepTelemetry::new(self.filter.clone(), stamp, t, resumed);
            self.budget.opened(&mut step);
            s.telemetry.push(step);
        }
        let page_bytes = answers
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok())
            .map(|p| p.body.len())
            .sum();
        let budget = &mut self.budget;
        let off = off_runtime(|| {
            ingest(&mut s.logs, s.telemetry.get_mut(k), answers, t, stamp);
            budget.after_scrape(&mut s.telemetry, k, page_bytes)
        });
        s.last_scrape_t = t;
        if let Some(off) = off {
            let note = format!("step {k}: {}", off.reason());
            warn!(ns = %self.ns, "{note}");
            self.note(note);
        }
        if let Some(step) = self.state.telemetry.get(k) {
            self.with_timeseries(|ts| ts.scrape(k, t, stamp, &step.gpu, &step.server));
        }
        self.publish();
    }

    /// Scrapes the GPU exporters into the idle baseline's telemetry (begun
    /// by this scrape when `opens`).
    pub(super) async fn scrape_idle(&mut self, idle: &mut Option<StepTelemetry>, opens: bool) {
        let (t, stamp, answers) = self.fetch_all(Some(Kind::Gpu)).await;
        if opens {
            *idle = Some(StepTelemetry::new(self.filter.clone(), stamp, t, false));
        }
        off_runtime(|| ingest(&mut self.state.logs, idle.as_mut(), answers, t, stamp));
        self.state.last_scrape_t = t;
    }

    /// Fetches every endpoint discovered so far (of `kind` only, when given),
    /// at most [`MAX_FETCHES`] at once; with the session time and unix ms
    /// the fetches were sent at.
    pub(super) fn fetch_all(
        &self,
        kind: Option<Kind>,
    ) -> impl std::future::Future<Output = (f64, u64, Vec<Answer>)> + Send + 'static {
        let timeout: Duration = self.spec.telemetry.timeout.into();
        let (t, stamp) = (self.t(), unix_ms());
        // Every endpoint discovered so far: the keys of the scrape logs.
        let targets: Vec<(Kind, String, usize)> = self
            .state
            .logs
            .iter()
            .filter(|((k, _), _)| kind.is_none_or(|want| *k == want))
            .map(|((k, url), log)| {
                let max = match log.max_bytes {
                    0 => DEFAULT_MAX_BYTES,
                    n => n,
                };
                (*k, url.clone(), max)
            })
            .collect();
        let scrapers = (self.scrapers.gpu.clone(), self.scrapers.server.clone());
        let fetches = targets.into_iter().map(move |(kind, url, max_bytes)| {
            let scraper = match kind {
                Kind::Gpu => scrapers.0.clone(),
                Kind::Server => scrapers.1.clone(),
            };
            async move {
                let began = std::time::Instant::now();
                let r = fetch::fetch(&scraper, &url, timeout, max_bytes).await;
                fetch::record(
                    kind.as_str(),
                    began.elapsed().as_secs_f64(),
                    r.as_ref().map(drop),
                );
                (kind, url, r)
            }
        });
        async move {
            // At most MAX_FETCHES at once per run, however many endpoints it
            // found, and at most ROUND_MAX_BYTES of pages kept until the
            // round is ingested: past it an answer is let go at once, and its
            // endpoint's log says why.
            let mut held = 0;
            let answers = futures::stream::iter(fetches)
                .buffer_unordered(MAX_FETCHES)
                .map(|answer| within_round(&mut held, ROUND_MAX_BYTES, answer))
                .collect()
                .await;
            (t, stamp, answers)
        }
    }
}

/// How many scrapes one run's session has in flight at most.
pub(super) const MAX_FETCHES: usize = 32;
/// The most bytes of pages one scrape round of a run keeps until they are
/// ingested (each page is bounded by its own cap besides).
pub(super) const ROUND_MAX_BYTES: usize = 64 << 20;

/// Runs `f` (parsing pages of up to 16 MiB) where it does not hold up the
/// runtime's other tasks (the probes, other runs' scrapes): on a runtime with
/// worker threads, this thread hands its tasks to another first
/// (`block_in_place`); on a single-threaded runtime (tests), in place.
pub(super) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One endpoint's answer to a scrape.
pub(super) type Answer = (Kind, String, Result<fetch::Payload, fetch::FetchError>);

/// `answer`, kept if the round's pages so far (`held`) stay within `max`
/// bytes with it; else its page is let go and the answer says why.
pub(super) fn within_round(held: &mut usize, max: usize, answer: Answer) -> Answer {
    match answer {
        (kind, url, Ok(p)) if *held + p.body.len() > max => {
            (kind, url, Err(fetch::FetchError::RoundFull(max)))
        }
        (kind, url, Ok(p)) => {
            *held += p.body.len();
            (kind, url, Ok(p))
        }
        other => other,
    }
}

/// Ingests a scrape's answers into `into` (a step's telemetry, or the idle
/// baseline's), which then spans to this scrape; each answer is logged for
/// its endpoint.
pub(super) fn ingest(
    logs: &mut std::collections::BTreeMap<(Kind, String), EndpointLog>,
    mut into: Option<&mut StepTelemetry>,
    answers: Vec<Answer>,
    t: f64,
    stamp: u64,
) {
    for (kind, url, r) in answers {
        let outcome = match r {
            Ok(p) => {
                if let Some(step) = into.as_deref_mut() {
                    step.ingest(kind, &url, t, &p.body, p.format);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Some(log) = logs.get_mut(&(kind, url)) {
            log.record(t, outcome);
        }
    }
    if let Some(step) = into {
        step.window.end_unix_ms = stamp;
        step.closed_t = t;
    }
}
