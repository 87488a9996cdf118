//! Checkpoints: a run's measurement, written to `<run>-checkpoint` as it goes,
//! so that a controller that takes the run over (a restart, a failover)
//! continues it instead of starting over.
//!
//! A checkpoint holds every step's telemetry aggregates — among them the
//! opening reading of every counter (energy, PCIe and NVLink bytes, violation
//! times, server counters and histogram buckets) — the step bookkeeping and,
//! once pulled, the workers' results. Counters are cumulative, so a step's
//! energy stays exact across a restart: the closing reading minus the
//! checkpointed opening one. Gauges miss the samples of the gap, and the
//! step's coverage says how long it was.
//!
//! Written at every step boundary, every [`EVERY`] during a step, and once the
//! workers' results are in (before the workers are let go). Stored as
//! gzip-compressed CBOR (JSON has no infinities, and a histogram's `+Inf`
//! bound or an empty series' extremes are infinite) in the `binaryData` of
//! ConfigMaps the run owns, so they go with it: `<run>-checkpoint`, then
//! `<run>-checkpoint-1`, ... when it outgrows one. A ConfigMap of those names
//! the run does not own is never touched.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use super::collect::StepTelemetry;
use crate::loadgen::cli::WorkerResult;
use crate::results::MAX_CONFIGMAP_BYTES;
use crate::telemetry::Filter;

/// How often a checkpoint is written during a step.
pub const EVERY: Duration = Duration::from_secs(10);

/// The version of the checkpoint format this build reads and writes.
pub const VERSION: u32 = 1;

/// One run's measurement, as far as it went.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub version: u32,
    /// The run it belongs to (a run re-created under the same name is another run).
    pub run_uid: String,
    /// Session time 0 as unix ms: every sample's `t` counts from it.
    pub origin_unix_ms: u64,
    /// When it was taken, unix ms.
    pub taken_unix_ms: u64,
    /// Session time of its last scrape (the gap a successor sees starts here).
    pub last_scrape_t: f64,
    /// Every step opened so far, in order.
    pub steps: Vec<SavedStep>,
    /// The step being measured when it was taken.
    pub active: Option<usize>,
    /// The next step to open.
    pub next_step: usize,
    pub notes: Vec<String>,
    /// Every worker's result, once pulled (none acknowledged before this is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<WorkerResult>>,
    /// How many workers the results were pulled from.
    #[serde(default)]
    pub workers: u32,
}

/// One step's telemetry as a checkpoint keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavedStep {
    pub window: crate::results::Window,
    pub opened_t: f64,
    pub closed_t: f64,
    pub resumed: bool,
    #[serde(default)]
    pub interruptions: Vec<(f64, f64)>,
    pub gpu: crate::telemetry::gpu::GpuSnapshot,
    pub server: crate::telemetry::server::ServerSnapshot,
}

impl SavedStep {
    pub fn of(t: &StepTelemetry) -> Self {
        SavedStep {
            window: t.window,
            opened_t: t.opened_t,
            closed_t: t.closed_t,
            resumed: t.resumed,
            interruptions: t.interruptions.clone(),
            gpu: t.gpu.snapshot(),
            server: t.server.snapshot(),
        }
    }

    /// The step's telemetry, continuing from here; `filter` selects the
    /// server metrics of samples to come.
    pub fn restore(self, filter: Filter) -> StepTelemetry {
        StepTelemetry {
            gpu: crate::telemetry::GpuTelemetry::restore(self.gpu),
            server: crate::telemetry::ServerMetrics::restore(self.server, filter),
            window: self.window,
            opened_t: self.opened_t,
            closed_t: self.closed_t,
            resumed: self.resumed,
            interruptions: self.interruptions,
        }
    }
}

impl Checkpoint {
    /// The checkpoint as CBOR (exact floats, infinities included: a
    /// histogram's `+Inf` bound, an empty series' extremes), gzip-compressed
    /// and cut into pieces of at most `limit` bytes.
    pub fn encode(&self, limit: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut cbor = Vec::new();
        ciborium::into_writer(self, &mut cbor).map_err(|e| e.to_string())?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&cbor).map_err(|e| e.to_string())?;
        let gz = gz.finish().map_err(|e| e.to_string())?;
        Ok(gz.chunks(limit.max(1)).map(<[u8]>::to_vec).collect())
    }

    /// The checkpoint of `run_uid` from its pieces; `Ok(None)` when they hold
    /// another run's, or a format this build does not read.
    pub fn decode(pieces: &[Vec<u8>], run_uid: &str) -> Result<Option<Self>, String> {
        let gz = pieces.concat();
        let mut cbor = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cbor)
            .map_err(|e| e.to_string())?;
        let cp: Checkpoint = ciborium::from_reader(&cbor[..]).map_err(|e| e.to_string())?;
        Ok((cp.version == VERSION && cp.run_uid == run_uid).then_some(cp))
    }
}

/// The key of a piece in its ConfigMap's `binaryData`.
const KEY: &str = "checkpoint.cbor.gz";
/// Annotation of every piece: which write it belongs to (pieces of two
/// writes are never put together).
const WRITE: &str = "benchrun.dev/checkpoint-write";
/// Annotation of the first piece: how many pieces the write has.
const PIECES: &str = "benchrun.dev/checkpoint-pieces";

/// The name of piece `i` (`<base>`, `<base>-1`, ...).
fn piece_name(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_string()
    } else {
        format!("{base}-{i}")
    }
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
}

impl Store {
    /// The store of `run` (with its UID `run_uid`) in its namespace `ns`.
    pub fn new(
        client: &kube::Client,
        ns: &str,
        run: &crate::api::BenchmarkRun,
        run_uid: &str,
    ) -> Self {
        let base = crate::controller::names::checkpoint_name(run);
        Store {
            api: Api::namespaced(client.clone(), ns),
            meta: crate::controller::build::owned_meta(run, base.clone(), "checkpoint"),
            base,
            run_uid: run_uid.to_string(),
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

    /// Reads the run's checkpoint, if it left a whole one.
    pub async fn read(&self) -> Result<Option<Checkpoint>, String> {
        let get = |i: usize| {
            let name = piece_name(&self.base, i);
            async move {
                self.api
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            }
        };
        let Some(first) = get(0).await?.filter(|cm| self.owns(cm)) else {
            return Ok(None);
        };
        let write = Self::annotation(&first, WRITE)
            .unwrap_or_default()
            .to_string();
        let count: usize = Self::annotation(&first, PIECES)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut pieces = vec![first];
        for i in 1..count {
            match get(i).await? {
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

    /// Writes `cp`, the first piece last (a reader sees a whole write or the
    /// one before); never touches a ConfigMap of these names the run does not own.
    pub async fn write(&self, cp: &Checkpoint, seq: u64) -> Result<(), String> {
        let pieces = cp.encode(MAX_CONFIGMAP_BYTES)?;
        let count = pieces.len();
        let write = format!("{}-{seq}", cp.taken_unix_ms);
        let apply = PatchParams::apply(crate::controller::names::FIELD_MANAGER).force();
        for (i, piece) in pieces.into_iter().enumerate().rev() {
            let name = piece_name(&self.base, i);
            if let Some(cm) = self.api.get_opt(&name).await.map_err(|e| e.to_string())?
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
            self.api
                .patch(&name, &apply, &Patch::Apply(&cm))
                .await
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_encoding_whole_and_in_pieces() {
        let cp = Checkpoint {
            version: VERSION,
            run_uid: "u-1".into(),
            origin_unix_ms: 1_800_000_000_000,
            taken_unix_ms: 1_800_000_012_345,
            last_scrape_t: 12.3,
            steps: Vec::new(),
            active: Some(0),
            next_step: 1,
            notes: vec!["a note".into()],
            results: None,
            workers: 0,
        };
        let whole = cp.encode(MAX_CONFIGMAP_BYTES).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(Checkpoint::decode(&whole, "u-1").unwrap(), Some(cp.clone()));
        let pieces = cp.encode(16).unwrap();
        assert!(pieces.len() > 2, "{}", pieces.len());
        assert_eq!(
            Checkpoint::decode(&pieces, "u-1").unwrap(),
            Some(cp.clone())
        );
        // Another run's checkpoint (a run re-created under the same name) is not this one's.
        assert_eq!(Checkpoint::decode(&whole, "u-2").unwrap(), None);
        // A piece missing or garbage: an error, not a panic.
        assert!(Checkpoint::decode(&pieces[1..], "u-1").is_err());
        assert!(Checkpoint::decode(&[b"not gzip".to_vec()], "u-1").is_err());
    }
}
