//! Shared watches of pods for discovery: one label-filtered reflector per
//! selector, shared by every run that asks for it, instead of a LIST per run
//! and selector every discovery round.
//!
//! With the default selectors every run's GPU exporters come from the same
//! four watches, and the inference pods of every run on one Deployment from
//! one more. Only the default selectors — benchrun's, not a tenant's — are
//! watched across the cluster (in a cluster-wide install); a selector a run
//! names is watched in each namespace the run may read, never cluster-wide,
//! so a tenant's selector caches at most what that tenant may read. A
//! namespaced install watches each namespace its RBAC covers. A watch nobody
//! asked for in [`IDLE`] is stopped.
//!
//! Bounded: at most [`MAX_WATCHES`] watches, and a watch caching more than
//! [`MAX_WATCHED_PODS`] pods is stopped; past either, discovery lists (at
//! most [`MAX_LISTED_PODS`] pods a list) and says so in the run's notes. The
//! cache keeps only what discovery reads ([`stripped`]): no environment, no
//! volumes, no status beyond readiness and the address.
//!
//! Until a watch has synced (at most [`READY_WAIT`]), and for namespaces
//! outside the install's scope, discovery lists directly, as it did before:
//! a watch that cannot start never holds a run up.

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

/// How long discovery waits for a new watch's first sync before it lists
/// (the watch goes on syncing, for the next round). Short: a run's first
/// discovery is on the way to what its condition says before its workers
/// start, and a run that fails at once still says what was refused.
pub const READY_WAIT: Duration = Duration::from_millis(250);
/// A watch no discovery used for this long is stopped.
pub const IDLE: Duration = Duration::from_secs(300);
/// The most pod watches the controller keeps, all runs together.
pub const MAX_WATCHES: usize = 256;
/// A watch that caches more pods than this is stopped (the namespace's pods
/// are listed instead).
pub const MAX_WATCHED_PODS: usize = 5_000;
/// The most pods one list reads (one page; a note says when more matched).
pub const MAX_LISTED_PODS: u32 = 2_000;

/// Why the pods matching `selector` are listed: too many to watch.
fn too_many(selector: &Selector) -> String {
    format!("more than {MAX_WATCHED_PODS} pods match {selector}: they are listed, not watched")
}

/// A pod as the watches cache it: only the fields [`PodInfo`] reads (name,
/// namespace, labels, the annotations [`super::read_annotation`] names, the
/// controlling owner, node, host network, container port names and numbers,
/// phase, readiness and address). Pure.
pub fn stripped(p: &Pod) -> Pod {
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let m = &p.metadata;
    let annotations = m.annotations.as_ref().map(|a| {
        a.iter()
            .filter(|(k, _)| super::read_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    let spec = p.spec.as_ref().map(|s| PodSpec {
        node_name: s.node_name.clone(),
        host_network: s.host_network,
        containers: s
            .containers
            .iter()
            .map(|c| Container {
                name: c.name.clone(),
                ports: c.ports.clone(),
                ..Container::default()
            })
            .collect(),
        ..PodSpec::default()
    });
    let status = p.status.as_ref().map(|s| PodStatus {
        phase: s.phase.clone(),
        pod_ip: s.pod_ip.clone(),
        conditions: s.conditions.as_ref().map(|c| {
            c.iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    ..PodCondition::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
    Pod {
        metadata: ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            deletion_timestamp: m.deletion_timestamp.clone(),
            creation_timestamp: m.creation_timestamp.clone(),
            labels: m.labels.clone(),
            annotations,
            owner_references: m.owner_references.as_ref().map(|o| {
                o.iter()
                    .filter(|o| o.controller == Some(true))
                    .cloned()
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        spec,
        status,
    }
}

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
    /// Watches stopped for caching more than [`MAX_WATCHED_PODS`], and when:
    /// not started again for [`IDLE`] (their pods are listed meanwhile).
    too_big: Mutex<HashMap<(Option<String>, String), Instant>>,
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
            too_big: Mutex::new(HashMap::new()),
        }
    }

    /// Stops the watches idle for [`IDLE`]; how many are left.
    pub fn expire_idle(&self) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| e.used.elapsed() < IDLE);
        entries.len()
    }

    /// The store of the watch of `selector` in `ns` (`None`: every
    /// namespace), started on first use; watches idle for [`IDLE`] or
    /// caching more than [`MAX_WATCHED_PODS`] stop. `Err`: none is started,
    /// as [`MAX_WATCHES`] are running; why, for the run's notes.
    fn store(&self, ns: Option<&str>, selector: &Selector) -> Result<(Store<Pod>, bool), String> {
        let key = (ns.map(str::to_string), selector.to_string());
        let mut too_big = self.too_big.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|k, e| {
            let over = e.store.len() > MAX_WATCHED_PODS;
            if over {
                too_big.insert(k.clone(), Instant::now());
            }
            e.used.elapsed() < IDLE && !over
        });
        too_big.retain(|_, at| at.elapsed() < IDLE);
        if too_big.contains_key(&key) {
            return Err(too_many(selector));
        }
        if !entries.contains_key(&key) && entries.len() >= MAX_WATCHES {
            return Err(format!(
                "the controller's pod watches are all in use ({MAX_WATCHES}): pods matching {selector} were listed"
            ));
        }
        let entry = entries
            .entry(key)
            .or_insert_with(|| self.start(ns, selector));
        entry.used = Instant::now();
        Ok((entry.store.clone(), entry.slow))
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
            // The cache keeps only what discovery reads.
            .modify(|p: &mut Pod| *p = stripped(p))
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
    /// `Err` (why, or nothing to say) when the namespace is outside the
    /// install's scope, no watch can start, or the watch has not synced
    /// within [`READY_WAIT`] or holds too many pods: the caller lists.
    /// `shared`: the selector is benchrun's own (a default), watched across
    /// the cluster in a cluster-wide install; any other is watched in `ns`.
    pub async fn pods(
        &self,
        ns: &str,
        selector: &Selector,
        shared: bool,
    ) -> Result<Vec<PodInfo>, Option<String>> {
        let watched = match &self.scope {
            None if shared => None,
            None => Some(ns),
            Some(scope) if scope.contains(ns) => Some(ns),
            Some(_) => return Err(None),
        };
        let (store, slow) = self.store(watched, selector).map_err(Some)?;
        let patience = if slow { Duration::ZERO } else { READY_WAIT };
        if ready(&store, patience).await.is_none() {
            self.slow(watched, selector);
            return Err(None);
        }
        if store.len() > MAX_WATCHED_PODS {
            // Stopped now (its cache goes), and not started again for a while.
            let key = (watched.map(str::to_string), selector.to_string());
            let mut too_big = self.too_big.lock().unwrap_or_else(|e| e.into_inner());
            too_big.insert(key.clone(), Instant::now());
            self.entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            return Err(Some(too_many(selector)));
        }
        count("watch");
        Ok(store
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns))
            .map(|p| PodInfo::from(p.as_ref()))
            .collect())
    }
}
