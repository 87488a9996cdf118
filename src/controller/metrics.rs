//! The operator's own Prometheus metrics, served on `/metrics`, and the
//! finished runs' results ([`super::run_metrics`]).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of the failure counter: a fixed category, never an object name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub category: &'static str,
}

/// Reconcile metrics.
pub struct Metrics {
    pub registry: Registry,
    reconciles: Counter,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
    measurements: Gauge,
    watches: Gauge,
    /// The controller's caches of the runs, once made: the finished runs'
    /// results are read from them at each scrape.
    pub runs: std::sync::Arc<std::sync::OnceLock<Vec<super::context::RunStore>>>,
}

/// How many finished runs `/metrics` shows by default.
pub const MAX_RUNS: usize = 100;

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(MAX_RUNS)
    }
}

impl Metrics {
    /// The metrics, showing at most `max_runs` finished runs.
    pub fn new(max_runs: usize) -> Self {
        let mut registry = Registry::with_prefix("benchrun");
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile",
            "Reconciles of BenchmarkRuns",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let measurements = Gauge::default();
        registry.register(
            "active_measurements",
            "Measurement sessions running in this controller",
            measurements.clone(),
        );
        registry.register(
            "worker_requests",
            "Requests sent to load-generator workers (start, progress, result, stop)",
            crate::measure::workers::REQUESTS.clone(),
        );
        registry.register(
            "discovery_pod_reads",
            "Reads of pods by discovery, all runs together: from a shared watch, or listed",
            crate::discovery::watches::READS.clone(),
        );
        let watches = Gauge::default();
        registry.register(
            "discovery_watches",
            "Shared pod watches discovery keeps open",
            watches.clone(),
        );
        registry.register(
            "scrapes",
            "Scrapes of GPU exporters and inference servers by runs, by kind and outcome (ok or the failure's category)",
            crate::scrape::fetch::SCRAPES.clone(),
        );
        registry.register(
            "scrape_duration_seconds",
            "Time one scrape took, by kind of endpoint",
            crate::scrape::fetch::SCRAPE_SECONDS.clone(),
        );
        registry.register(
            "checkpoint_writes",
            "Checkpoint writes by runs, by outcome (written or failed): a failed one leaves results held only in this controller, their workers not yet let go",
            crate::measure::checkpoint::WRITES.clone(),
        );
        let runs = std::sync::Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(super::run_metrics::RunMetrics {
            stores: runs.clone(),
            max_runs,
        }));
        Metrics {
            watches,
            registry,
            reconciles,
            failures,
            duration,
            measurements,
            runs,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn failed(&self, category: &'static str) {
        self.failures.get_or_create(&ErrorLabels { category }).inc();
    }

    /// How many measurement sessions run now.
    pub fn set_measurements(&self, n: usize) {
        self.measurements.set(n as i64);
    }

    /// How many shared pod watches are open now.
    pub fn set_watches(&self, n: usize) {
        self.watches.set(n as i64);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_category() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(3));
        m.failed("kube_api");
        m.failed("kube_api");
        m.set_measurements(3);
        let text = m.encode();
        assert!(text.contains("benchrun_active_measurements 3"), "{text}");
        assert!(text.contains("benchrun_reconcile_total 1"), "{text}");
        assert!(
            text.contains("benchrun_reconcile_failures_total{category=\"kube_api\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("benchrun_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn scrapes_are_counted_by_kind_and_outcome_with_their_duration() {
        use crate::scrape::fetch::{FetchError, record};
        record("server", 0.02, Ok(()));
        record(
            "server",
            2.0,
            Err(&FetchError::Timeout(Duration::from_secs(2))),
        );
        let text = Metrics::default().encode();
        for series in [
            "benchrun_scrapes_total{kind=\"server\",outcome=\"ok\"}",
            "benchrun_scrapes_total{kind=\"server\",outcome=\"timeout\"}",
            "benchrun_scrape_duration_seconds_count{kind=\"server\"}",
        ] {
            assert!(text.contains(series), "{series} not in {text}");
        }
    }
}
