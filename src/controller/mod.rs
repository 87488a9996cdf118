//! The operator: watches BenchmarkRuns and drives each through its phases.
//!
//! Reconcile is a pipeline of stages: [`dereference`] (target URLs), [`decide`]
//! (pure: next status and actions), [`build`] (pure: the owned objects), then
//! apply and status in [`reconcile`].

pub mod baseline;
pub mod build;
pub mod conditions;
mod context;
pub mod decide;
pub mod dereference;
mod error;
pub mod health;
mod leader;
pub mod measurement;
pub mod metrics;
pub mod metrics_auth;
pub mod names;
pub mod queue;
mod reconcile;
pub mod run_metrics;
pub mod scrape_credentials;
pub mod worker_auth;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use tracing::{info, warn};

pub use context::Context;
pub use error::Error;

use crate::api::BenchmarkRun;

/// The image the controller runs from, and that load generators use by default.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/benchrun/benchrun:", env!("CARGO_PKG_VERSION"));

/// Options of `benchrun controller`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerOpts {
    /// Namespaces to watch, comma-separated or repeated. Empty watches all namespaces.
    #[arg(
        long = "namespace",
        env = "BENCHRUN_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Image of the load-generator pods when a run names none.
    #[arg(long, env = "BENCHRUN_LOADGEN_IMAGE", default_value = DEFAULT_IMAGE)]
    pub loadgen_image: String,
    /// Address of the /livez, /readyz and /metrics server.
    #[arg(long, env = "BENCHRUN_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Take a Lease so that only one replica reconciles at a time.
    #[arg(long, env = "BENCHRUN_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity of this replica in the Lease. Default: the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Namespaces every run may discover GPU exporters and inference pods in,
    /// besides its own and the operator's (namespaces labelled
    /// benchrun.dev/telemetry=readable are open too).
    #[arg(
        long = "telemetry-namespace",
        env = "BENCHRUN_TELEMETRY_NAMESPACES",
        value_delimiter = ','
    )]
    pub telemetry_namespaces: Vec<String>,
    /// Host names, IP addresses or CIDRs that a run's explicit telemetry URLs
    /// may point at; none by default. Loopback, link-local, the API server and
    /// the kubelet's ports need an entry naming that host exactly.
    #[arg(
        long = "telemetry-allowed-host",
        env = "BENCHRUN_TELEMETRY_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub telemetry_allowed_hosts: Vec<String>,
    /// Images a run's load.podTemplate.image may name besides the operator's
    /// own: whole references, or prefixes ending in `*`. None by default.
    #[arg(
        long = "loadgen-allowed-image",
        env = "BENCHRUN_LOADGEN_ALLOWED_IMAGES",
        value_delimiter = ','
    )]
    pub loadgen_allowed_images: Vec<String>,
    /// Service accounts a run's load.podTemplate.serviceAccountName may name.
    /// None by default (the workers run as the namespace's default account,
    /// without its token).
    #[arg(
        long = "loadgen-allowed-service-account",
        env = "BENCHRUN_LOADGEN_ALLOWED_SERVICE_ACCOUNTS",
        value_delimiter = ','
    )]
    pub loadgen_allowed_service_accounts: Vec<String>,
    /// How many finished runs' results `/metrics` shows (the latest by
    /// completion; each run's series go when it is deleted).
    #[arg(long, env = "BENCHRUN_METRICS_MAX_RUNS", default_value_t = metrics::MAX_RUNS)]
    pub metrics_max_runs: usize,
    /// The most runs measured at once (0: no limit); the next run waits
    /// `Queued` (reason WaitingForCapacity) until one ends.
    #[arg(long, env = "BENCHRUN_MAX_ACTIVE_MEASUREMENTS", default_value_t = 64)]
    pub max_active_measurements: usize,
    /// The most one run's telemetry may hold, every step and trial together,
    /// in MiB as its checkpoint encodes it (0: no bound past each step's
    /// own). Past it the step's server metrics, then its GPU telemetry, are
    /// let go for the rest of the run, and what rested on them is withheld.
    #[arg(long, env = "BENCHRUN_MAX_RUN_TELEMETRY_MIB", default_value_t = crate::measure::budget::DEFAULT_RUN_TELEMETRY_MIB)]
    pub max_run_telemetry_mib: usize,
    /// The most every run's telemetry may hold together, MiB as encoded (0:
    /// no limit). Past it, a run holding more than its share (this over the
    /// runs measured) lets go as past its own budget; a run within its share
    /// is never cut for another's use.
    #[arg(long, env = "BENCHRUN_MAX_TELEMETRY_MIB", default_value_t = crate::measure::budget::DEFAULT_TELEMETRY_MIB)]
    pub max_telemetry_mib: usize,
    /// Serve `/metrics` only to Kubernetes bearer tokens whose user may `get`
    /// the non-resource URL `/metrics` (TokenReview and SubjectAccessReview;
    /// the controller needs `create` on both). The probes stay open.
    #[arg(long, env = "BENCHRUN_METRICS_AUTH", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_auth: bool,
    /// Give each run's workers a NetworkPolicy that admits only this
    /// controller to their port (it takes effect where the cluster's network
    /// plugin enforces NetworkPolicy).
    #[arg(long, env = "BENCHRUN_LOADGEN_NETWORK_POLICY", default_value_t = false, action = clap::ArgAction::Set)]
    pub loadgen_network_policy: bool,
    /// Let runs name Secrets for their metrics scrapes (a bearer token, basic
    /// auth, a CA): the controller reads those Secrets in the run's namespace
    /// (it needs `get` on Secrets), and only those whose owner labelled them
    /// benchrun.dev/scrape-credentials=true.
    #[arg(long, env = "BENCHRUN_SCRAPE_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set)]
    pub scrape_credentials: bool,
    #[command(flatten)]
    pub discovered: crate::discovery::policy::DiscoveredFlags,
}

impl ControllerOpts {
    /// The namespaces whose pods discovery may watch: all (`None`) in a
    /// cluster-wide install; in a namespaced one, those it watches, the
    /// telemetry namespaces the installer opened and its own (where the
    /// chart grants the pod reader).
    pub fn pod_scope(&self) -> Option<std::collections::BTreeSet<String>> {
        let watched = non_empty(&self.namespaces);
        if watched.is_empty() {
            return None;
        }
        let mut scope: std::collections::BTreeSet<String> = watched.into_iter().collect();
        scope.extend(non_empty(&self.telemetry_namespaces));
        scope.insert(self.lease_namespace.clone());
        Some(scope)
    }

    /// The telemetry policy these options set: the operator's own namespace
    /// is open to every run (the chart's exporters run there).
    pub fn policy(&self) -> Result<crate::discovery::policy::Policy, String> {
        // The API server's addresses as the pod sees them.
        let api_server = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|h| h.parse().ok())
            .into_iter()
            .collect();
        let mut policy = crate::discovery::policy::Policy::from_flags(
            &self.lease_namespace,
            &non_empty(&self.telemetry_namespaces),
            &non_empty(&self.telemetry_allowed_hosts),
            api_server,
        )?;
        policy.scrape_credentials = self.scrape_credentials;
        policy.discovered = self.discovered.rules()?;
        Ok(policy)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The entries of a list flag, trimmed, without empty ones (an empty
/// environment variable is no entry).
fn non_empty(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn api<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Waits until `store` has synced once. kube-runtime's ready signal keeps
/// one waker: with the controller's runner (and anyone else) waiting on the
/// same store, a single wait may never wake (kube-runtime 5.0,
/// utils/delayed_init.rs). Waiting in short rounds re-registers, and a store
/// that is ready answers at once. (A single wait here once kept the reaper
/// of deleted runs' measurements from ever starting.)
async fn synced(
    store: &context::RunStore,
) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
    loop {
        if let Ok(ready) =
            tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await
        {
            return ready;
        }
    }
}

/// Whether a BenchmarkRun controls the object (its controller owner
/// reference), not only whether it wears benchrun's labels.
pub fn run_controlled(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.kind == "BenchmarkRun"
            && o.api_version.starts_with("benchrun.dev/")
    })
}

/// How often sessions are checked against the runs that exist.
const REAP: Duration = Duration::from_secs(3);

/// Stops the measurement of every run that is gone (deleted: no reconcile
/// follows a deletion without a finalizer), and keeps the gauge of active
/// measurements. Only once every watch has synced, so a run is never taken
/// for gone because the cache has not seen it yet.
async fn reap(ctx: Arc<Context>, stores: Vec<context::RunStore>) {
    for store in &stores {
        if synced(store).await.is_err() {
            return;
        }
    }
    loop {
        // Runs being deleted count as gone: their measurement ends with them.
        let alive: std::collections::HashSet<String> = stores
            .iter()
            .flat_map(|s| s.state())
            .filter_map(|g| {
                let run = g.0.as_ref().ok()?;
                run.metadata
                    .deletion_timestamp
                    .is_none()
                    .then(|| run.metadata.uid.clone())?
            })
            .collect();
        let left = ctx.sessions.retain(|uid| alive.contains(uid));
        if let Ok(mut written) = ctx.status_written.lock() {
            written.retain(|uid, _| alive.contains(uid));
        }
        ctx.metrics.set_measurements(left);
        ctx.metrics.set_watches(ctx.watches.expire_idle());
        tokio::time::sleep(REAP).await;
    }
}

/// Runs the operator until a shutdown signal, or until leadership is lost.
pub async fn run(opts: ControllerOpts) -> Result<(), BoxError> {
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(metrics::Metrics::new(opts.metrics_max_runs));
    let health = Arc::new(health::Health::default());
    let listener = tokio::net::TcpListener::bind(opts.health_addr).await?;
    info!(addr = %opts.health_addr, authenticated = opts.metrics_auth, "serving /livez, /readyz and /metrics");
    let auth = opts
        .metrics_auth
        .then(|| Arc::new(metrics_auth::MetricsAuth::new(client.clone())));
    let router = health::router(health.clone(), metrics.clone(), auth);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            warn!("health server stopped: {e}");
        }
    });

    let identity = opts.identity.clone().unwrap_or_else(hostname);
    let leadership = if opts.leader_elect {
        // A standby replica is healthy: it must not block rolling updates.
        health.set_ready(true);
        let l = leader::acquire(client.clone(), &opts.lease_namespace, &identity).await?;
        health.set_ready(false);
        Some(l)
    } else {
        None
    };

    // The workers' tokens derive from a key only the controller holds.
    let worker_key = worker_auth::WorkerKey::ensure(&client, &opts.lease_namespace)
        .await
        .map_err(|e| {
            format!(
                "the worker key (needs get/create on Secret benchrun-worker-key in {}): {e}",
                opts.lease_namespace
            )
        })?;
    let settings = build::BuildSettings {
        loadgen_image: opts.loadgen_image.clone(),
        worker_key: Some(worker_key),
        allowed_images: non_empty(&opts.loadgen_allowed_images),
        allowed_service_accounts: non_empty(&opts.loadgen_allowed_service_accounts),
        network_policy: opts
            .loadgen_network_policy
            .then(|| opts.lease_namespace.clone()),
    };
    let policy = opts.policy()?;
    info!(
        namespaces = ?policy.namespaces,
        allowed_hosts = policy.allowed_hosts.len(),
        "telemetry policy: runs read their own namespace, these and those labelled {}={}",
        crate::discovery::policy::READABLE_LABEL,
        crate::discovery::policy::READABLE_VALUE
    );
    let mut ctx = Context::new(
        client.clone(),
        settings,
        metrics,
        Some(identity),
        policy,
        opts.pod_scope(),
    );
    ctx.max_active = (opts.max_active_measurements > 0).then_some(opts.max_active_measurements);
    ctx.telemetry_budget_bytes = opts.max_run_telemetry_mib.saturating_mul(1 << 20);
    ctx.telemetry_pool =
        crate::measure::budget::Pool::new(opts.max_telemetry_mib.saturating_mul(1 << 20));
    let ctx = Arc::new(ctx);
    let namespaces: Vec<Option<String>> = if opts.namespaces.is_empty() {
        vec![None]
    } else {
        opts.namespaces.iter().cloned().map(Some).collect()
    };
    let owned = watcher::Config::default().labels(names::MANAGED_SELECTOR);
    let mut stores = Vec::new();
    let mut job_stores = Vec::new();
    let mut controllers = Vec::new();
    for ns in &namespaces {
        info!(
            namespace = ns.as_deref().unwrap_or("<all>"),
            "watching BenchmarkRuns"
        );
        let runs = api::<DeserializeGuard<BenchmarkRun>>(&client, ns.as_deref());
        // The runs' Jobs: one watch both caches them (reconciles read the
        // cache instead of a GET each) and starts the reconciles of their runs.
        let (job_store, job_writer) = kube::runtime::reflector::store();
        let jobs = watcher(api::<Job>(&client, ns.as_deref()), owned.clone())
            .default_backoff()
            // The label is only a first sieve (a tenant can set it): the
            // cache keeps the Jobs a BenchmarkRun controls.
            .filter(|event| {
                std::future::ready(match event {
                    Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => {
                        run_controlled(&j.metadata)
                    }
                    _ => true,
                })
            })
            .reflect(job_writer)
            .touched_objects();
        job_stores.push(job_store);
        let controller = Controller::new(runs, watcher::Config::default())
            .owns_stream(jobs)
            .owns(api::<ConfigMap>(&client, ns.as_deref()), owned.clone());
        stores.push(controller.store());
        controllers.push(
            controller
                .shutdown_on_signal()
                .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!("controller: {e}");
                    }
                }),
        );
    }
    // Set before any controller runs: the queue reads the runs from these,
    // and every reconcile its run's Job.
    let _ = ctx.runs.set(stores.clone());
    let _ = ctx.jobs.set(job_stores);
    tokio::spawn(reap(ctx.clone(), stores.clone()));
    let ready = health.clone();
    tokio::spawn(async move {
        for store in stores {
            if let Err(e) = synced(&store).await {
                warn!("a watch stopped before its first sync: {e}");
                return;
            }
        }
        info!("watches synced");
        ready.set_ready(true);
    });
    let all = futures::future::join_all(controllers);
    match leadership {
        Some(leadership) => tokio::select! {
            _ = all => Ok(()),
            () = leadership.lost() => Err("lost the leader lease; exiting so a new leader can take over".into()),
        },
        None => {
            all.await;
            Ok(())
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "benchrun".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Opts {
        #[command(flatten)]
        controller: ControllerOpts,
    }

    fn opts(args: &[&str]) -> ControllerOpts {
        let argv = ["controller", "--lease-namespace", "benchrun-system"];
        Opts::try_parse_from(argv.iter().chain(args))
            .unwrap()
            .controller
    }

    #[test]
    fn only_what_a_run_controls_is_cached_not_what_wears_its_labels() {
        let meta = |refs: serde_json::Value| -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            serde_json::from_value(serde_json::json!({
                "name": "x",
                "labels": {"app.kubernetes.io/managed-by": "benchrun"},
                "ownerReferences": refs,
            }))
            .unwrap()
        };
        let run_ref = |controller: bool, kind: &str| serde_json::json!([{"apiVersion": "benchrun.dev/v1alpha1", "kind": kind, "name": "r", "uid": "u", "controller": controller}]);
        assert!(run_controlled(&meta(run_ref(true, "BenchmarkRun"))));
        assert!(!run_controlled(&meta(run_ref(false, "BenchmarkRun"))));
        assert!(!run_controlled(&meta(run_ref(true, "Deployment"))));
        assert!(!run_controlled(&meta(serde_json::json!([]))));
    }

    #[test]
    fn the_telemetry_policy_comes_from_the_flags() {
        let p = opts(&[
            "--telemetry-namespace",
            "gpu-operator,,monitoring",
            "--telemetry-allowed-host",
            "10.0.0.0/8,,dcgm.monitoring.svc",
        ])
        .policy()
        .unwrap();
        let ns: Vec<&str> = p.namespaces.iter().map(String::as_str).collect();
        assert_eq!(ns, ["benchrun-system", "gpu-operator", "monitoring"]);
        assert_eq!(p.allowed_hosts.len(), 2);
        assert!(p.check_url("http://10.1.2.3:9400/metrics").is_ok());
        // Nothing set: the operator's namespace only, and no URL allowed.
        let p = opts(&[]).policy().unwrap();
        assert_eq!(p.namespaces.len(), 1);
        assert!(p.allowed_hosts.is_empty());
        // A bad entry stops the controller with a message naming the flag.
        let e = opts(&["--telemetry-allowed-host", "http://x"])
            .policy()
            .unwrap_err();
        assert!(e.contains("--telemetry-allowed-host"), "{e}");
    }
}
