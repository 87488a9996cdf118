//! Shared watches of pods for discovery: one label-filtered reflector per
//! selector, shared by every run that asks for it, instead of a LIST per run
//! and selector every discovery round.
//!
//! With the default selectors every run's GPU exporters come from the same
//! four watches, and the inference pods of every run on one Deployment from
//! one more. A cluster-wide install watches across the cluster (each run then
//! sees only the namespaces its policy lets it read); a namespaced install
//! watches each namespace its RBAC covers. A watch nobody asked for in
//! [`IDLE`] is stopped. Until a watch has synced (at most [`READY_WAIT`]), and
//! for namespaces outside the install's scope, discovery lists directly, as
//! it did before: a watch that cannot start never holds a run up.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::Selector;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::PodInfo;

/// How discovery read pods, all runs together (a controller metric: what
/// discovery costs the API server): from a shared watch, or by a LIST.
pub static READS: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        ReadSource,
        prometheus_client::metrics::counter::Counter,
    >,
> = std::sync::LazyLock::new(Default::default);

/// The label of [`READS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReadSource {
    /// `watch` or `list`.
    pub source: &'static str,
}

/// Counts one read of pods from `source`.
pub fn count(source: &'static str) {
    READS.get_or_create(&ReadSource { source }).inc();
}

/// How long discovery waits for a new watch's first sync before it lists.
pub const READY_WAIT: Duration = Duration::from_secs(5);
/// A watch no discovery used for this long is stopped.
pub const IDLE: Duration = Duration::from_secs(300);

/// Waits until `store` has synced, at most [`READY_WAIT`]. In short rounds:
/// the store's ready signal keeps one waker, and several runs may wait on
/// the same store at once (see `controller::synced`).
async fn ready(store: &Store<Pod>, patience: Duration) -> Option<()> {
    let deadline = Instant::now() + patience;
    loop {
        let round = Duration::from_millis(250).min(patience.max(Duration::from_millis(1)));
        match tokio::time::timeout(round, store.wait_until_ready()).await {
            Ok(Ok(())) => return Some(()),
            Ok(Err(_)) => return None,
            Err(_) if Instant::now() >= deadline => return None,
            Err(_) => {}
        }
    }
}

/// The pod watches discovery shares.
pub struct PodWatches {
    client: kube::Client,
    /// The namespaces the install may watch pods in; `None`: the whole
    /// cluster (one watch per selector).
    scope: Option<BTreeSet<String>>,
    entries: Mutex<HashMap<(Option<String>, String), Entry>>,
}

struct Entry {
    store: Store<Pod>,
    task: tokio::task::JoinHandle<()>,
    used: Instant,
    /// It did not sync within [`READY_WAIT`] once (e.g. the RBAC does not
    /// let it watch): later asks do not wait for it again, and are listed
    /// until it has synced.
    slow: bool,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodWatches {
    pub fn new(client: kube::Client, scope: Option<BTreeSet<String>>) -> Self {
        PodWatches {
            client,
            scope,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stops the watches idle for [`IDLE`]; how many are left.
    pub fn expire_idle(&self) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| e.used.elapsed() < IDLE);
        entries.len()
    }

    /// The store of the watch of `selector` in `ns` (`None`: every
    /// namespace), started on first use; watches idle for [`IDLE`] stop.
    fn store(&self, ns: Option<&str>, selector: &Selector) -> (Store<Pod>, bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| e.used.elapsed() < IDLE);
        let key = (ns.map(str::to_string), selector.to_string());
        let entry = entries
            .entry(key)
            .or_insert_with(|| self.start(ns, selector));
        entry.used = Instant::now();
        (entry.store.clone(), entry.slow)
    }

    /// Marks the watch of `selector` in `ns` as slow to sync.
    fn slow(&self, ns: Option<&str>, selector: &Selector) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (ns.map(str::to_string), selector.to_string());
        if let Some(e) = entries.get_mut(&key) {
            e.slow = true;
        }
    }

    fn start(&self, ns: Option<&str>, selector: &Selector) -> Entry {
        let api: Api<Pod> = match ns {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let config = watcher::Config::default().labels_from(selector);
        let (store, writer) = reflector::store();
        let stream = watcher(api, config)
            .default_backoff()
            // Discovery reads none of it: the cache keeps less.
            .modify(|p: &mut Pod| p.managed_fields_mut().clear())
            .reflect(writer);
        let task = tokio::spawn(stream.for_each(|_| std::future::ready(())));
        Entry {
            store,
            task,
            used: Instant::now(),
            slow: false,
        }
    }

    /// The pods matching `selector` in `ns`, from its watch once synced;
    /// `None` when the namespace is outside the install's scope or the watch
    /// has not synced within [`READY_WAIT`] (the caller lists).
    pub async fn pods(&self, ns: &str, selector: &Selector) -> Option<Vec<PodInfo>> {
        let watched = match &self.scope {
            None => None,
            Some(scope) if scope.contains(ns) => Some(ns),
            Some(_) => return None,
        };
        let (store, slow) = self.store(watched, selector);
        let patience = if slow { Duration::ZERO } else { READY_WAIT };
        if ready(&store, patience).await.is_none() {
            self.slow(watched, selector);
            return None;
        }
        count("watch");
        Some(
            store
                .state()
                .iter()
                .filter(|p| p.namespace().as_deref() == Some(ns))
                .map(|p| PodInfo::from(p.as_ref()))
                .collect(),
        )
    }
}
