//! One active replica, through a coordination.k8s.io Lease.
//!
//! A replica that is not the leader waits; a leader that loses its lease stops
//! reconciling at once and exits, so Kubernetes restarts it as a follower.

use kube_lease_manager::{LeaseManagerBuilder, Result as LeaseResult};
use tokio::sync::watch;
use tracing::info;

/// The lease name.
pub const LEASE_NAME: &str = "benchrun-controller";
/// How long the lease holds without renewal: a successor takes over at most
/// this long after its predecessor stopped.
pub const LEASE_SECONDS: u64 = 15;

/// A held lease; `lost()` resolves when it is no longer ours.
pub struct Leadership {
    state: watch::Receiver<bool>,
}

/// Waits until this replica holds the lease.
pub async fn acquire(
    client: kube::Client,
    namespace: &str,
    identity: &str,
) -> LeaseResult<Leadership> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(5)
        .with_field_manager("benchrun")
        .build()
        .await?;
    let (mut state, _task) = manager.watch().await;
    info!(
        lease = LEASE_NAME,
        namespace, identity, "waiting for leadership"
    );
    while !*state.borrow_and_update() {
        if state.changed().await.is_err() {
            break;
        }
    }
    info!("acquired leadership");
    Ok(Leadership { state })
}

impl Leadership {
    /// Resolves when the lease is lost (or its manager stopped).
    pub async fn lost(mut self) {
        loop {
            if !*self.state.borrow_and_update() {
                return;
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }
}
