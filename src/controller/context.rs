//! What every reconcile shares: the client, the event recorder, the build settings
//! and the operator's own metrics.

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};

use super::build::BuildSettings;
use super::metrics::Metrics;
use crate::discovery::policy::Policy;
use crate::measure::Sessions;

/// Shared state of the reconcilers, behind an `Arc`.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub settings: BuildSettings,
    pub metrics: Arc<Metrics>,
    /// The measurement sessions of the runs in progress.
    pub sessions: Sessions,
    /// What runs may make their measurements read.
    pub policy: Arc<Policy>,
    /// The pod watches of every run's discovery.
    pub watches: Arc<crate::discovery::watches::PodWatches>,
    /// The caches of the runs' Jobs (one per watched namespace, or one for
    /// all), fed by the same watches that start reconciles on Job events.
    pub jobs:
        std::sync::OnceLock<Vec<kube::runtime::reflector::Store<k8s_openapi::api::batch::v1::Job>>>,
    /// When each run's status (by UID) was last written, for the throttle
    /// of progress-only writes.
    pub status_written: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The controllers' caches of the runs (one per watched namespace, or
    /// one for all), set once they are made: the queue reads them.
    pub runs: Arc<std::sync::OnceLock<Vec<RunStore>>>,
    /// The most runs measured at once (`--max-active-measurements`; `None`:
    /// no limit).
    pub max_active: Option<usize>,
    /// The most bytes one run's telemetry may hold (`--max-run-telemetry-mib`;
    /// 0: no bound past each step's own).
    pub telemetry_budget_bytes: usize,
    /// Every run's telemetry together (`--max-telemetry-mib`).
    pub telemetry_pool: Arc<crate::measure::budget::Pool>,
}

/// A cache of the runs a controller watches.
pub type RunStore = kube::runtime::reflector::Store<
    kube::core::error_boundary::DeserializeGuard<crate::api::BenchmarkRun>,
>;

impl Context {
    pub fn new(
        client: kube::Client,
        settings: BuildSettings,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        policy: Policy,
        pod_scope: Option<std::collections::BTreeSet<String>>,
    ) -> Self {
        let reporter = Reporter {
            controller: "benchrun".into(),
            instance,
        };
        let watches = crate::discovery::watches::PodWatches::new(client.clone(), pod_scope);
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            runs: metrics.runs.clone(),
            metrics,
            sessions: Sessions::default(),
            policy: Arc::new(policy),
            watches: Arc::new(watches),
            jobs: std::sync::OnceLock::new(),
            status_written: Default::default(),
            max_active: None,
            telemetry_budget_bytes: crate::measure::budget::DEFAULT_RUN_TELEMETRY_MIB << 20,
            telemetry_pool: crate::measure::budget::Pool::new(
                crate::measure::budget::DEFAULT_TELEMETRY_MIB << 20,
            ),
        }
    }
}
