//! GPU telemetry: dcgm-exporter payloads in, one aggregate per GPU and field out.
//!
//! A GPU is keyed by its UUID (plus the MIG instance, for MIG slices), else by
//! host and GPU index, else by exporter and GPU index; the same GPU served by
//! two exporters counts once (the first exporter that reported it). A series
//! seen twice in one scrape (dcgm-exporter repeats a GPU's series for each pod
//! that shares it) counts once, and every pod it names is kept.

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use super::dcgm::{self, FIELDS};
use crate::scrape::{Entry, Format, Kind, Labels, ParseReport, Parser, Value};

mod model;
pub use model::{FieldAgg, FieldId, FieldSeries, GpuIdentity, GpuSeries, PodRef};
use model::{field_slot, other_slot};

/// Counts of what ingestion set aside.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestCounts {
    pub scrapes: u32,
    pub samples: u64,
    /// DCGM blank sentinels (field not supported, no permission...).
    pub blanks: u64,
    /// Samples of fields beyond [`MAX_FIELDS`] on one GPU.
    pub over_limit: u64,
    /// Samples of GPUs beyond [`MAX_GPUS`]: such a GPU is not measured at
    /// all, and it may be one the run is attributed.
    #[serde(default)]
    pub gpus_refused: u64,
    /// Series repeated within one scrape.
    pub repeats: u64,
    /// Samples of a GPU already reported by another exporter.
    pub other_exporter: u64,
    /// Samples whose name is not a DCGM field.
    pub not_dcgm: u64,
    pub skipped_lines: u64,
}

/// Bounds that keep a hostile or broken exporter from growing memory without end.
pub const MAX_GPUS: usize = 4096;
pub const MAX_FIELDS: usize = 256;
/// Pods one GPU is shown serving (time-sliced or MPS GPUs serve several; a
/// page that names more is not believed past this).
pub const MAX_PODS_PER_GPU: usize = 64;
/// Field series over all GPUs of one step (1024 GPUs of 32 fields): with
/// [`MAX_GPUS`], [`MAX_TEXT`] and the distribution's own cap, what bounds a
/// step's GPU telemetry memory (docs/telemetry.md, "Bounds").
pub const MAX_GPU_SERIES: usize = 32_768;
/// The longest label text kept about a GPU (a Kubernetes name is at most
/// 253): a longer pod, namespace or container is not recorded, a longer
/// identity label is cut, a longer field name or GPU key is refused.
pub const MAX_TEXT: usize = 253;

/// What a checkpoint keeps of a step's GPU telemetry: every GPU's
/// aggregates (the counters' opening readings among them) and the counts.
/// [`GpuTelemetry::restore`] continues from it as if never interrupted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuSnapshot {
    pub gpus: Vec<GpuSeries>,
    pub counts: IngestCounts,
}

/// The GPU telemetry of a run, across all exporters and scrapes.
#[derive(Default)]
pub struct GpuTelemetry {
    pub gpus: Vec<GpuSeries>,
    index: FxHashMap<String, usize>,
    key: String,
    /// The GPU of the previous sample: exporters write each field for every
    /// GPU in turn, so the next sample's GPU is usually the one after it.
    last: usize,
    /// Field series over all GPUs (bounded by [`MAX_GPU_SERIES`]).
    series: usize,
    pub counts: IngestCounts,
}

/// The labels ingestion looks at, found in one pass over a sample's labels.
#[derive(Default)]
struct Seen<'a> {
    uuid: Option<Value<'a>>,
    gpu: Option<Value<'a>>,
    host: Option<Value<'a>>,
    gi: Option<Value<'a>>,
    pod: Option<Value<'a>>,
    namespace: Option<Value<'a>>,
    container: Option<Value<'a>>,
}

impl<'a> Seen<'a> {
    fn of(labels: &Labels<'a>) -> Self {
        let mut s = Seen::default();
        for (name, v) in labels.iter() {
            match name {
                "UUID" | "uuid" => s.uuid = Some(v),
                "gpu" => s.gpu = Some(v),
                "Hostname" | "hostname" => s.host = Some(v),
                "GPU_I_ID" => s.gi = Some(v),
                "pod" | "exported_pod" => s.pod = Some(v),
                "namespace" | "exported_namespace" => s.namespace = Some(v),
                "container" | "exported_container" => s.container = Some(v),
                _ => {}
            }
        }
        s
    }
}

impl GpuTelemetry {
    /// The bytes of the GPUs' series kept, as a checkpoint encodes them.
    pub fn encoded_bytes(&self) -> usize {
        super::encoded_len(&self.gpus) + super::encoded_len(&self.counts)
    }

    pub fn snapshot(&self) -> GpuSnapshot {
        GpuSnapshot {
            gpus: self.gpus.clone(),
            counts: self.counts.clone(),
        }
    }

    /// The telemetry a [`GpuTelemetry::snapshot`] was taken of; the lookup
    /// tables are rebuilt (each GPU's field slots on its next sample).
    pub fn restore(s: GpuSnapshot) -> Self {
        let index = s
            .gpus
            .iter()
            .enumerate()
            .map(|(i, g)| (g.key.clone(), i))
            .collect();
        let series = s.gpus.iter().map(|g| g.fields.len()).sum();
        GpuTelemetry {
            gpus: s.gpus,
            index,
            series,
            counts: s.counts,
            ..GpuTelemetry::default()
        }
    }

    /// Takes one scrape of `endpoint` taken at `t` seconds into the phase.
    pub fn ingest(&mut self, endpoint: &str, t: f64, body: &[u8], format: Format) -> ParseReport {
        self.counts.scrapes += 1;
        let scrape = self.counts.scrapes;
        // Declared kinds of DCGM fields outside the table.
        let mut declared: FxHashMap<&str, Kind> = FxHashMap::default();
        let mut parser = Parser::new(body, format);
        for entry in parser.by_ref() {
            let s = match entry {
                Entry::Sample(s) => s,
                // Only fields outside the table take their kind from the payload.
                Entry::Type { name, kind }
                    if dcgm::is_dcgm(name) && dcgm::field_index(name).is_none() =>
                {
                    declared.insert(name, kind);
                    continue;
                }
                _ => continue,
            };
            if !dcgm::is_dcgm(s.name) {
                self.counts.not_dcgm += 1;
                continue;
            }
            let known = dcgm::field_index(s.name);
            let blank = match known {
                Some(i) => dcgm::is_blank(s.value, FIELDS[i].width),
                None => dcgm::is_blank_unknown(s.value),
            };
            if blank || !s.value.is_finite() {
                self.counts.blanks += 1;
                continue;
            }
            self.counts.samples += 1;
            let seen = Seen::of(&s.labels);
            let g = match self.gpu(endpoint, &seen, &s.labels) {
                Ok(g) => g,
                Err(Refused::OtherExporter) => {
                    self.counts.other_exporter += 1;
                    continue;
                }
                Err(Refused::TooMany) => {
                    self.counts.gpus_refused += 1;
                    continue;
                }
            };
            // A new field series only while the step's budget lasts.
            let room = self.series < MAX_GPU_SERIES;
            let gpu = &mut self.gpus[g];
            note_pod(gpu, &seen);
            let before = gpu.fields.len();
            let field = match known {
                Some(i) => field_slot(gpu, i, room),
                None => {
                    let counter = declared.get(s.name) == Some(&Kind::Counter);
                    other_slot(gpu, s.name, counter, room && s.name.len() <= MAX_TEXT)
                }
            };
            let Some(field) = field else {
                self.counts.over_limit += 1;
                continue;
            };
            self.series += gpu.fields.len() - before;
            let f = &mut gpu.fields[field];
            if f.seen_in == scrape {
                self.counts.repeats += 1;
                continue;
            }
            f.seen_in = scrape;
            let scale = known.map_or(1.0, |i| FIELDS[i].scale);
            f.agg.observe(t, s.value * scale);
        }
        let report = parser.into_report();
        self.counts.skipped_lines += u64::from(report.skipped);
        report
    }

    /// The GPU a sample belongs to, created on first sight.
    fn gpu(
        &mut self,
        endpoint: &str,
        seen: &Seen<'_>,
        labels: &Labels<'_>,
    ) -> Result<usize, Refused> {
        self.key.clear();
        let gpu = seen.gpu.map_or("", |v| v.raw());
        match (seen.uuid, seen.host) {
            (Some(u), _) => self.key.push_str(u.raw()),
            (None, Some(h)) => push_all(&mut self.key, &[h.raw(), "/", gpu]),
            (None, None) => push_all(&mut self.key, &[endpoint, "#", gpu]),
        }
        if let Some(gi) = seen.gi {
            push_all(&mut self.key, &["/mig", gi.raw()]);
        }
        let guess = [self.last + 1, 0]
            .into_iter()
            .find(|&i| i < self.gpus.len());
        let hit = guess.filter(|&i| self.gpus[i].key == self.key);
        if let Some(i) = hit.or_else(|| self.index.get(self.key.as_str()).copied()) {
            self.last = i;
            return if self.gpus[i].endpoint == endpoint {
                Ok(i)
            } else {
                Err(Refused::OtherExporter)
            };
        }
        if self.gpus.len() >= MAX_GPUS || self.key.len() > 2 * MAX_TEXT {
            return Err(Refused::TooMany);
        }
        let cut = |v: Value<'_>| {
            let t = v.text();
            let mut end = t.len().min(MAX_TEXT);
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t[..end].to_string()
        };
        let text = |name: &str| labels.get(name).map(cut);
        let identity = GpuIdentity {
            uuid: seen.uuid.map(cut),
            index: seen.gpu.map(cut),
            model: text("modelName"),
            hostname: seen.host.map(cut),
            pci_bus_id: text("pci_bus_id"),
            device: text("device"),
            driver_version: text("DCGM_FI_DRIVER_VERSION"),
            mig_instance: seen.gi.map(cut),
            mig_profile: text("GPU_I_PROFILE"),
        };
        self.gpus.push(GpuSeries {
            key: self.key.clone(),
            endpoint: endpoint.to_string(),
            identity,
            pods: Vec::new(),
            fields: Vec::new(),
            slots: vec![0; FIELDS.len()],
        });
        self.index.insert(self.key.clone(), self.gpus.len() - 1);
        self.last = self.gpus.len() - 1;
        Ok(self.last)
    }
}

enum Refused {
    OtherExporter,
    TooMany,
}

fn push_all(buf: &mut String, parts: &[&str]) {
    parts.iter().for_each(|p| buf.push_str(p));
}

fn note_pod(gpu: &mut GpuSeries, seen: &Seen<'_>) {
    let Some(pod) = seen.pod.filter(|p| !p.raw().is_empty()) else {
        return;
    };
    let ns = seen.namespace.map_or("", |v| v.raw());
    let container = seen.container.map_or("", |v| v.raw());
    // Longer than any Kubernetes name: not a pod to attribute a GPU to.
    if [pod.raw(), ns, container]
        .iter()
        .any(|t| t.len() > MAX_TEXT)
    {
        return;
    }
    let known = gpu
        .pods
        .iter()
        .any(|p| pod.is(&p.pod) && ns == p.namespace && container == p.container);
    if known {
        return;
    }
    // A pod restored without its name (the checkpoint names none the run
    // may not read) is this one seen again, rather than one more.
    if let Some(i) = gpu
        .pods
        .iter()
        .position(|p| p.namespace.is_empty() && p.pod.is_empty())
    {
        gpu.pods.remove(i);
    }
    if gpu.pods.len() < MAX_PODS_PER_GPU {
        gpu.pods.push(PodRef {
            namespace: seen
                .namespace
                .map(|v| v.text().into_owned())
                .unwrap_or_default(),
            pod: pod.text().into_owned(),
            container: seen
                .container
                .map(|v| v.text().into_owned())
                .unwrap_or_default(),
        });
    }
}

#[cfg(test)]
#[path = "gpu/tests.rs"]
mod tests;
