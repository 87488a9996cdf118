//! What every reconcile shares: the client, the event recorder, the build settings
//! and the operator's own metrics.

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};

use super::build::BuildSettings;
use super::metrics::Metrics;
use super::session::Sessions;
use super::session::policy::Policy;
use super::worker_auth::WorkerKey;

/// Shared state of the reconcilers, behind an `Arc`.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub settings: BuildSettings,
    pub metrics: Arc<Metrics>,
    /// The measurement sessions of the runs in progress.
    pub sessions: Sessions,
    /// The key of the workers' per-run tokens.
    pub worker_key: Option<WorkerKey>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        settings: BuildSettings,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        policy: Policy,
        worker_key: Option<WorkerKey>,
    ) -> Self {
        let reporter = Reporter {
            controller: "benchrun".into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            sessions: Sessions::new(policy, worker_key.clone()),
            worker_key,
        }
    }
}
