//! What every reconcile shares: the client, the event recorder, the build settings
//! and the operator's own metrics.

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};

use super::build::BuildSettings;
use super::metrics::Metrics;
use super::session::Sessions;
use super::session::policy::Policy;

/// Shared state of the reconcilers, behind an `Arc`.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub settings: BuildSettings,
    pub metrics: Arc<Metrics>,
    /// The measurement sessions of the runs in progress.
    pub sessions: Sessions,
}

impl Context {
    pub fn new(
        client: kube::Client,
        settings: BuildSettings,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        policy: Policy,
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
            sessions: Sessions::new(policy),
        }
    }
}
