//! The controller's side of a run's measurement: the cluster as the
//! measurement sees it ([`crate::measure::Cluster`]): the Job's worker pods,
//! discovery under the installer's policy, and the checkpoint's ConfigMaps.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::api::BenchmarkRunSpec;
use crate::discovery::policy::Policy;
use crate::discovery::{Found, PodInfo};
use crate::measure::Cluster;
use crate::measure::checkpoint::Checkpoint;
use crate::results::MAX_CONFIGMAP_BYTES;

/// One run's view of the cluster, for its measurement.
pub struct RunCluster {
    pub client: kube::Client,
    pub ns: String,
    /// The run's Job.
    pub job: String,
    pub spec: BenchmarkRunSpec,
    pub policy: Arc<Policy>,
    pub store: Store,
    /// The pod watches every run's discovery shares.
    pub watches: Arc<crate::discovery::watches::PodWatches>,
    /// The Job's uid, once read: a worker is a pod that Job controls.
    pub job_uid: tokio::sync::OnceCell<String>,
    /// When the run was launched, Unix seconds (its `status.startTime`).
    pub started_unix_s: Option<i64>,
}

impl RunCluster {
    /// The uid of the run's Job; `None` while it does not exist.
    async fn job_uid(&self) -> Result<Option<&str>, kube::Error> {
        if let Some(uid) = self.job_uid.get() {
            return Ok(Some(uid));
        }
        let jobs: Api<k8s_openapi::api::batch::v1::Job> =
            Api::namespaced(self.client.clone(), &self.ns);
        let Some(uid) = jobs.get_opt(&self.job).await?.and_then(|j| j.metadata.uid) else {
            return Ok(None);
        };
        Ok(Some(self.job_uid.get_or_init(|| async { uid }).await))
    }
}

impl Cluster for RunCluster {
    fn worker_pods(&self) -> BoxFuture<'_, Result<Vec<(u32, PodInfo)>, String>> {
        async move {
            // From the watch of every run's workers that discovery shares (a
            // run waiting for its workers looks every 500 ms: a LIST each
            // time was most of a hundred runs' requests), else listed.
            // A worker is a pod the run's Job controls (its owner reference
            // names the Job's uid), not any pod with a worker's labels: a
            // look-alike never receives the run's token.
            // Once the Job is gone (deleted under the run, its workers
            // orphaned and handing over), its uid cannot be read: its pods
            // are known by the name their owner reference gives it.
            let uid = self.job_uid().await.map_err(|e| e.to_string())?;
            let all = match self.watches.pods(&self.ns, &workers_selector(), true).await {
                Ok(all) => all,
                Err(_) => pods(&self.client, &self.ns, &self.job)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            Ok(workers_of(all, &self.job, uid, self.started_unix_s))
        }
        .boxed()
    }

    fn discover(&self) -> BoxFuture<'_, Result<Found, String>> {
        async move {
            crate::discovery::discover(
                &self.client,
                Some(&self.watches),
                &self.ns,
                &self.spec,
                &self.policy,
            )
            .await
            .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn read_checkpoint(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, String>> {
        self.store.read().boxed()
    }

    fn write_checkpoint(&self, cp: Checkpoint, seq: u64) -> BoxFuture<'_, Result<(), String>> {
        async move { self.store.write(&cp, seq).await }.boxed()
    }

    fn checkpoint_name(&self) -> &str {
        &self.store.base
    }

    fn scrapers(&self) -> BoxFuture<'_, Result<crate::measure::Scrapers, String>> {
        async move {
            super::scrape_credentials::scrapers(
                &self.client,
                &self.ns,
                &self.spec,
                self.policy.scrape_credentials,
            )
            .await
        }
        .boxed()
    }
}

/// The label the Job controller gives its pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Every run's load-generator pods (the labels of `names::labels(run, "loadgen")`).
fn workers_selector() -> kube::core::Selector {
    kube::core::Selector::from_iter([
        ("app.kubernetes.io/managed-by", "benchrun"),
        ("app.kubernetes.io/component", "loadgen"),
    ])
}

/// Pods with their completion indexes, in index order (those without one left out).
fn indexed(pods: impl Iterator<Item = PodInfo>) -> Vec<(u32, PodInfo)> {
    let mut out: Vec<(u32, PodInfo)> = pods
        .filter_map(|p| {
            let index = p
                .annotations
                .get("batch.kubernetes.io/job-completion-index")
                .and_then(|i| i.parse().ok())?;
            Some((index, p))
        })
        .collect();
    out.sort();
    out
}

/// Of `pods`, the workers of Job `job` whose uid is `uid`, with their
/// completion indexes, in index order. `None`: the Job is gone (deleted
/// under the run; a successor controller never read its uid), and its
/// workers are the pods labelled with its name whose controlling owner is a
/// Job of that name or none (an orphan), made since the run was launched
/// (`started`, Unix seconds): not an earlier run's of the same name. Pure.
fn workers_of(
    pods: Vec<PodInfo>,
    job: &str,
    uid: Option<&str>,
    started: Option<i64>,
) -> Vec<(u32, PodInfo)> {
    indexed(pods.into_iter().filter(|p| {
        p.labels.get(JOB_NAME_LABEL).map(String::as_str) == Some(job)
            && match uid {
                Some(uid) => p.job_uid.as_deref() == Some(uid),
                None => {
                    p.job_owner.as_deref().is_none_or(|o| o == job)
                        && started.is_none_or(|s| p.created_unix_s.is_some_and(|c| c >= s))
                }
            }
    }))
}

/// The pods labelled as Job `job`'s.
async fn pods(client: &kube::Client, ns: &str, job: &str) -> Result<Vec<PodInfo>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job}"));
    let listed = api.list(&lp).await?.items;
    Ok(listed.iter().map(PodInfo::from).collect())
}

/// The key of a piece in its ConfigMap's `binaryData`.
const KEY: &str = "checkpoint.cbor.gz";
/// Annotation of every piece: which write it belongs to (pieces of two
/// writes are never put together).
const WRITE: &str = "benchrun.dev/checkpoint-write";
/// Annotation of the first piece: how many pieces the write has.
const PIECES: &str = "benchrun.dev/checkpoint-pieces";
/// Annotation of the first piece: which of the two sets of later pieces the
/// write's are in (`a`: `<base>-1`, ...; `b`: `<base>-b1`, ...).
const SLOT: &str = "benchrun.dev/checkpoint-slot";

/// The name of piece `i` in `slot` (`<base>`, then `<base>-1`, ... in slot
/// `a` and `<base>-b1`, ... in slot `b`).
fn piece_name(base: &str, slot: &str, i: usize) -> String {
    match (i, slot) {
        (0, _) => base.to_string(),
        (_, "b") => format!("{base}-b{i}"),
        _ => format!("{base}-{i}"),
    }
}

/// The slot a first piece names (`a` when it names none: a checkpoint
/// written before there were two).
fn slot_of(named: Option<&str>) -> &'static str {
    if named == Some("b") { "b" } else { "a" }
}

/// The other slot.
fn other(slot: &str) -> &'static str {
    if slot == "b" { "a" } else { "b" }
}

/// Where a write of `count` pieces goes while the first piece names
/// `current`: the slot it will name, and each piece's index and name in the
/// order they are written (the first piece last). A write of one piece
/// replaces the first piece alone, and the slot it names stays as it was.
fn layout(base: &str, current: &'static str, count: usize) -> (&'static str, Vec<(usize, String)>) {
    let slot = if count > 1 { other(current) } else { current };
    let names = (0..count)
        .rev()
        .map(|i| (i, piece_name(base, slot, i)))
        .collect();
    (slot, names)
}

/// Where a session reads and writes its run's checkpoint.
#[derive(Clone)]
pub struct Store {
    pub api: Api<ConfigMap>,
    /// `<run>-checkpoint`.
    pub base: String,
    /// Labels and owner reference of the pieces.
    pub meta: kube::api::ObjectMeta,
    pub run_uid: String,
    pub field_manager: &'static str,
    /// The pieces this store has written (and so the run owns): they are
    /// not looked up again before the next write.
    written: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// The slot of the later pieces the first piece names now, once known.
    slot: Arc<std::sync::Mutex<Option<&'static str>>>,
}

impl Store {
    /// The store named `base` in namespace `ns`, whose pieces carry `meta`
    /// (the run's labels and owner reference) and are applied by `field_manager`.
    pub fn new(
        client: &kube::Client,
        ns: &str,
        base: String,
        meta: kube::api::ObjectMeta,
        run_uid: &str,
        field_manager: &'static str,
    ) -> Self {
        Store {
            api: Api::namespaced(client.clone(), ns),
            meta,
            base,
            run_uid: run_uid.to_string(),
            field_manager,
            written: Default::default(),
            slot: Default::default(),
        }
    }

    /// The ConfigMap is the run's own.
    fn owns(&self, cm: &ConfigMap) -> bool {
        cm.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == self.run_uid)
    }

    fn annotation<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
        cm.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// Reads the run's checkpoint, if it left one: `None` when there is none
    /// (or the ConfigMap of its name is not the run's), an error when it
    /// cannot be read whole (the reader retries; it never takes an error for
    /// "none").
    pub async fn read(&self) -> Result<Option<Checkpoint>, String> {
        let get = |slot: &'static str, i: usize| {
            let name = piece_name(&self.base, slot, i);
            async move {
                self.api
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            }
        };
        let Some(first) = get("a", 0).await?.filter(|cm| self.owns(cm)) else {
            return Ok(None);
        };
        let write = Self::annotation(&first, WRITE)
            .unwrap_or_default()
            .to_string();
        let count: usize = Self::annotation(&first, PIECES)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        // Pieces of a ConfigMap each: more than the most a checkpoint may
        // decompress to could hold is not one of this controller's.
        let most = crate::results::pack::MAX_DECODED_BYTES / 1024;
        if count > most {
            return Err(format!(
                "{} says it has {count} pieces, more than any checkpoint has",
                self.base
            ));
        }
        let slot = slot_of(Self::annotation(&first, SLOT));
        if let Ok(mut s) = self.slot.lock() {
            *s = Some(slot);
        }
        let mut pieces = vec![first];
        for i in 1..count {
            match get(slot, i).await? {
                Some(cm) if self.owns(&cm) && Self::annotation(&cm, WRITE) == Some(&write) => {
                    pieces.push(cm)
                }
                _ => return Err(format!("piece {i} of {} is missing", self.base)),
            }
        }
        let bytes: Vec<Vec<u8>> = pieces
            .into_iter()
            .map(|cm| {
                cm.binary_data
                    .and_then(|mut b| b.remove(KEY))
                    .map(|b| b.0)
                    .unwrap_or_default()
            })
            .collect();
        Checkpoint::decode(&bytes, &self.run_uid)
    }

    /// The slot the first piece names now (read from it once, then known).
    async fn current_slot(&self) -> Result<&'static str, String> {
        if let Some(slot) = self.slot.lock().ok().and_then(|s| *s) {
            return Ok(slot);
        }
        let first = self
            .api
            .get_opt(&self.base)
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        let named = first.as_ref().and_then(|cm| Self::annotation(cm, SLOT));
        Ok(slot_of(named))
    }

    /// Writes `cp` atomically: its later pieces into the slot the first
    /// piece does not name, then the first piece, which names them. A reader
    /// (or a write cut off part-way) sees the whole write or the one before,
    /// never a mix. Never touches a ConfigMap of these names the run does not own.
    pub async fn write(&self, cp: &Checkpoint, seq: u64) -> Result<(), String> {
        let pieces = cp.encode(MAX_CONFIGMAP_BYTES)?;
        let count = pieces.len();
        let write = format!("{}-{seq}", cp.taken_unix_ms);
        let apply = PatchParams::apply(self.field_manager).force();
        let (slot, names) = layout(&self.base, self.current_slot().await?, count);
        let mut pieces: Vec<Option<Vec<u8>>> = pieces.into_iter().map(Some).collect();
        for (i, name) in names {
            let piece = pieces[i].take().unwrap_or_default();
            let known = self.written.lock().is_ok_and(|w| w.contains(&name));
            if !known
                && let Some(cm) = self.api.get_opt(&name).await.map_err(|e| e.to_string())?
                && !self.owns(&cm)
            {
                return Err(format!(
                    "ConfigMap {name} exists and is not this run's: the checkpoint is not written"
                ));
            }
            let mut meta = self.meta.clone();
            meta.name = Some(name.clone());
            let mut annotations = BTreeMap::from([(WRITE.to_string(), write.clone())]);
            if i == 0 {
                annotations.insert(PIECES.to_string(), count.to_string());
                annotations.insert(SLOT.to_string(), slot.to_string());
            }
            meta.annotations = Some(annotations);
            let cm = ConfigMap {
                metadata: meta,
                binary_data: Some(BTreeMap::from([(
                    KEY.to_string(),
                    k8s_openapi::ByteString(piece),
                )])),
                ..ConfigMap::default()
            };
            if let Err(e) = self.api.patch(&name, &apply, &Patch::Apply(&cm)).await {
                // It may have been applied all the same: the next write
                // reads which slot the first piece names.
                if let Ok(mut s) = self.slot.lock() {
                    *s = None;
                }
                return Err(format!("{name}: {e}"));
            }
            if let Ok(mut w) = self.written.lock() {
                w.insert(name);
            }
        }
        if let Ok(mut s) = self.slot.lock() {
            *s = Some(slot);
        }
        Ok(())
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    /// A store of pieces: name → (write, slot named, pieces counted).
    type Pieces = BTreeMap<String, (u32, &'static str, usize)>;

    /// What a reader assembles: the write every piece belongs to, or `None`
    /// for a mix (the read fails).
    fn read(store: &Pieces) -> Option<u32> {
        let (write, slot, count) = *store.get("cp")?;
        (1..count)
            .all(|i| {
                store
                    .get(&piece_name("cp", slot, i))
                    .is_some_and(|p| p.0 == write)
            })
            .then_some(write)
    }

    /// Symptom of issue 33: a write cut off part-way left a mix of two
    /// writes' pieces, which the reader rejected (and a successor then
    /// overwrote). Now every cut of every write leaves the whole write
    /// before it, or the whole write.
    #[test]
    fn a_checkpoint_write_cut_off_anywhere_leaves_a_whole_one() {
        let mut store = Pieces::new();
        let mut current = "a";
        // Writes of 1 to 4 pieces in every order of sizes.
        let sizes = [3, 1, 4, 2, 2, 1, 3, 4, 4, 1];
        for (write, &count) in sizes.iter().enumerate() {
            let write = write as u32 + 1;
            let before = read(&store);
            let (slot, names) = layout("cp", current, count);
            for cut in 0..=names.len() {
                let mut partial = store.clone();
                for (i, name) in &names[..cut] {
                    let named = if *i == 0 { slot } else { "" };
                    partial.insert(name.clone(), (write, named, count));
                }
                let seen = read(&partial);
                let whole = if cut == names.len() {
                    Some(write)
                } else {
                    before
                };
                assert_eq!(
                    seen, whole,
                    "write {write} of {count} cut after {cut} pieces"
                );
            }
            for (i, name) in names {
                let named = if i == 0 { slot } else { "" };
                store.insert(name, (write, named, count));
            }
            current = slot;
        }
    }
}

#[cfg(test)]
mod worker_tests {
    use kube::core::SelectorExt;

    use super::*;

    #[test]
    fn the_shared_watch_of_workers_sees_every_runs_workers_and_only_its_jobs_by_index() {
        let run: crate::api::BenchmarkRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "benchrun.dev/v1alpha1", "kind": "BenchmarkRun",
            "metadata": {"name": "r1", "namespace": "llm"},
            "spec": {"target": {"url": "http://vllm:8000", "model": "m"}, "load": {"concurrency": 1}}
        }))
        .unwrap();
        // The workers carry the labels the selector asks for.
        let labels = super::super::names::labels(&run, "loadgen");
        assert!(workers_selector().matches(&labels));
        assert!(!workers_selector().matches(&super::super::names::labels(&run, "results")));
        let pod = |index: Option<&str>| PodInfo {
            namespace: "llm".into(),
            name: "p".into(),
            node: None,
            ip: None,
            ready: true,
            annotations: index
                .map(|i| {
                    (
                        "batch.kubernetes.io/job-completion-index".to_string(),
                        i.to_string(),
                    )
                })
                .into_iter()
                .collect(),
            labels: BTreeMap::from([(JOB_NAME_LABEL.to_string(), "r1-loadgen".to_string())]),
            job_uid: Some("uid-1".into()),
            job_owner: Some("r1-loadgen".into()),
            ..PodInfo::default()
        };
        let got = workers_of(
            vec![pod(Some("1")), pod(None), pod(Some("0"))],
            "r1-loadgen",
            Some("uid-1"),
            None,
        );
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
        // A look-alike: the labels and index of a worker, but no Job of the
        // run controls it (none, or another Job of that name, since deleted).
        let mut lookalike = pod(Some("2"));
        lookalike.job_uid = None;
        lookalike.job_owner = None;
        let mut stale = pod(Some("3"));
        stale.job_uid = Some("uid-0".into());
        let mut other_job = pod(Some("4"));
        other_job
            .labels
            .insert(JOB_NAME_LABEL.into(), "r2-loadgen".into());
        let got = workers_of(
            vec![lookalike.clone(), stale, other_job, pod(Some("0"))],
            "r1-loadgen",
            Some("uid-1"),
            None,
        );
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0]);
        // The Job deleted under the run: its workers, owned by its name or
        // orphaned, made since the run was launched; not an earlier run's.
        let started = Some(1_800_000_000);
        let mut orphan = pod(Some("2"));
        (orphan.job_uid, orphan.job_owner) = (None, None);
        orphan.created_unix_s = Some(1_800_000_005);
        let mut mine = pod(Some("1"));
        mine.created_unix_s = Some(1_800_000_001);
        let mut earlier = pod(Some("0"));
        earlier.created_unix_s = Some(1_700_000_000);
        let mut elsewhere = pod(Some("3"));
        elsewhere.job_owner = Some("other".into());
        elsewhere.created_unix_s = Some(1_800_000_002);
        let got = workers_of(
            vec![orphan, mine, earlier, elsewhere],
            "r1-loadgen",
            None,
            started,
        );
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_pod_read_from_a_worker_s_owner_reference_and_stripped_keeps_what_discovery_reads() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "r1-loadgen-0-x", "namespace": "llm",
                "labels": {"batch.kubernetes.io/job-name": "r1-loadgen"},
                "annotations": {
                    "batch.kubernetes.io/job-completion-index": "0",
                    "prometheus.io/port": "9090",
                    "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(10_000),
                },
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": "r1-loadgen", "uid": "uid-1", "controller": true},
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "uid-9"},
                ],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "w", "image": "img",
                    "env": [{"name": "TOKEN", "value": "secret"}],
                    "ports": [{"name": "metrics", "containerPort": 9090}],
                }],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.9",
                "conditions": [
                    {"type": "Ready", "status": "True", "message": "m"},
                    {"type": "PodScheduled", "status": "True"},
                ],
                "containerStatuses": [{"name": "w", "image": "img", "imageID": "", "ready": true, "restartCount": 0}],
            },
        }))
        .unwrap();
        let info = PodInfo::from(&pod);
        assert_eq!(info.job_uid.as_deref(), Some("uid-1"));
        assert!(info.ready);
        assert_eq!(info.annotations.len(), 2, "{:?}", info.annotations);
        let kept = crate::discovery::watches::stripped(&pod);
        assert_eq!(PodInfo::from(&kept), info);
        let text = serde_json::to_string(&kept).unwrap();
        for gone in [
            "secret",
            "volumes",
            "managedFields",
            "last-applied",
            "containerStatuses",
            "PodScheduled",
            "uid-9",
        ] {
            assert!(!text.contains(gone), "{gone} kept: {text}");
        }
        assert!(text.len() < 1_000, "{text}");
    }
}
