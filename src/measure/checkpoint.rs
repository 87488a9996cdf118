//! Checkpoints: a run's measurement, written to `<run>-checkpoint` as it goes,
//! so that a controller that takes the run over (a restart, a failover)
//! continues it instead of starting over.
//!
//! A checkpoint holds every step's telemetry aggregates — among them the
//! opening reading of every counter (energy, PCIe and NVLink bytes, violation
//! times, server counters and histogram buckets) — the step bookkeeping and
//! the workers' results pulled so far. Counters are cumulative, so a step's
//! energy stays exact across a restart: the closing reading minus the
//! checkpointed opening one. Gauges miss the samples of the gap, and the
//! step's coverage says how long it was.
//!
//! Written at every step boundary, every [`EVERY`] during a step, each time a
//! worker's result is pulled (before that worker is let go: a worker that has
//! exited leaves its result here), and once the collection is over. Stored as
//! gzip-compressed CBOR (JSON has no infinities, and a histogram's `+Inf`
//! bound or an empty series' extremes are infinite) in the `binaryData` of
//! ConfigMaps the run owns, so they go with it: `<run>-checkpoint`, then,
//! when it outgrows one, later pieces in one of two sets (`<run>-checkpoint-1`,
//! ... or `<run>-checkpoint-b1`, ...) that the first piece names. A write
//! puts its later pieces in the set the first piece does not name, then the
//! first piece: a reader sees a whole write or the one before, never a mix.
//! A read that fails is retried and then fails the run; it is never taken
//! for "no checkpoint". A ConfigMap of those names the run does not own is
//! never touched.

use std::io::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::collect::StepTelemetry;
use crate::contract::WorkerResult;
use crate::telemetry::Filter;

/// Labels of the checkpoint-write counter: `written` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct WriteLabels {
    pub outcome: &'static str,
}

/// Checkpoint writes by runs, all runs together, by outcome: failures mean
/// results held only in the controller (their workers wait to be let go).
pub static WRITES: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        WriteLabels,
        prometheus_client::metrics::counter::Counter,
    >,
> = std::sync::LazyLock::new(Default::default);

/// Counts one checkpoint write.
pub fn record_write(ok: bool) {
    let outcome = if ok { "written" } else { "failed" };
    WRITES.get_or_create(&WriteLabels { outcome }).inc();
}

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
    /// The workers' results pulled so far (each written here before its
    /// worker is acknowledged and exits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<WorkerResult>>,
    /// How many workers the run has.
    #[serde(default)]
    pub workers: u32,
    /// The collection is over: `results` is all there will be (a worker left
    /// out did not answer in time). Checkpoints written before this field
    /// held results only once the collection was over.
    #[serde(default = "collected_when_absent")]
    pub collected: bool,
    /// The GPUs' idle power measured before the first step, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<crate::telemetry::efficiency::IdleBaseline>,
    /// The load generators whose share was lost, each with why (a successor
    /// that finishes from this checkpoint names them as its predecessor did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<String>,
}

fn collected_when_absent() -> bool {
    true
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
    /// What was let go for the run's telemetry budget.
    #[serde(default)]
    pub dropped: super::budget::Dropped,
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
            dropped: t.dropped,
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
            dropped: self.dropped,
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
    /// another run's; an error for a format this build does not read (a
    /// controller of another version wrote it: it is not overwritten).
    pub fn decode(pieces: &[Vec<u8>], run_uid: &str) -> Result<Option<Self>, String> {
        let gz = pieces.concat();
        let cbor =
            crate::results::pack::gunzip_at_most(&gz, crate::results::pack::MAX_DECODED_BYTES)?;
        let cp: Checkpoint = ciborium::from_reader(&cbor[..]).map_err(|e| e.to_string())?;
        if cp.run_uid != run_uid {
            return Ok(None);
        }
        if cp.version != VERSION {
            return Err(format!(
                "the checkpoint is of format {}, and this controller reads format {VERSION}",
                cp.version
            ));
        }
        Ok(Some(cp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::MAX_CONFIGMAP_BYTES;

    /// The checkpoint's ConfigMaps are in the tenant's namespace: pieces
    /// rewritten as a gzip bomb (about 130 KiB that inflate past the most
    /// the controller reads) are refused with why, having inflated no more
    /// than that, instead of taking the controller's memory at every read.
    #[test]
    fn a_checkpoint_rewritten_as_a_gzip_bomb_is_refused_not_inflated() {
        use crate::results::pack::MAX_DECODED_BYTES;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_DECODED_BYTES >> 20) + 1 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let err = Checkpoint::decode(&[bomb], "u-1").unwrap_err();
        assert!(err.contains("more than 128 MiB"), "{err}");
    }

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
            collected: false,
            idle: None,
            lost: Vec::new(),
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
        // Another format (a controller of another version wrote it): an
        // error, so it is never taken for none and overwritten.
        let other = Checkpoint {
            version: VERSION + 1,
            ..cp.clone()
        };
        let e = Checkpoint::decode(&other.encode(usize::MAX).unwrap(), "u-1").unwrap_err();
        assert!(e.contains("of format 2"), "{e}");
        // A piece missing or garbage: an error, not a panic.
        assert!(Checkpoint::decode(&pieces[1..], "u-1").is_err());
        assert!(Checkpoint::decode(&[b"not gzip".to_vec()], "u-1").is_err());
    }

    #[test]
    fn an_older_checkpoint_with_results_held_them_once_the_collection_was_over() {
        let mut cp = serde_json::to_value(Checkpoint {
            version: VERSION,
            run_uid: "u-1".into(),
            origin_unix_ms: 0,
            taken_unix_ms: 0,
            last_scrape_t: 0.0,
            steps: Vec::new(),
            active: None,
            next_step: 1,
            notes: Vec::new(),
            results: Some(Vec::new()),
            workers: 2,
            collected: false,
            idle: None,
            lost: Vec::new(),
        })
        .unwrap();
        assert_eq!(cp["collected"], false);
        cp.as_object_mut().unwrap().remove("collected");
        let old: Checkpoint = serde_json::from_value(cp).unwrap();
        assert!(old.collected);
    }
}
