//! What is kept about one GPU: its identity, the pods it serves, and one
//! aggregate per field, found through a slot table for known DCGM fields.

use serde::{Deserialize, Serialize};

use super::MAX_FIELDS;
use crate::telemetry::dcgm::{FIELDS, FieldKind};
use crate::telemetry::series::{Counter, Gauge};

/// What identifies and describes one GPU (or MIG slice).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// MIG GPU instance id, for a MIG slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_profile: Option<String>,
}

/// A pod that dcgm-exporter says uses the GPU.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
}

impl std::fmt::Display for PodRef {
    /// `namespace/pod`, as kubectl names a pod.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.pod)
    }
}

/// One field's aggregate on one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldAgg {
    Gauge(Gauge),
    Counter(Counter),
    /// A byte field: its values as a gauge and as a counter.
    ByteRate {
        gauge: Gauge,
        counter: Counter,
    },
    /// The union of every bit seen.
    Bitmask(u64),
}

impl FieldAgg {
    pub(super) fn new(kind: FieldKind) -> Self {
        match kind {
            FieldKind::Gauge => FieldAgg::Gauge(Gauge::default()),
            FieldKind::Counter => FieldAgg::Counter(Counter::default()),
            FieldKind::ByteRate => FieldAgg::ByteRate {
                gauge: Gauge::default(),
                counter: Counter::default(),
            },
            FieldKind::Bitmask => FieldAgg::Bitmask(0),
        }
    }

    pub(super) fn observe(&mut self, t: f64, v: f64) {
        match self {
            FieldAgg::Gauge(g) => g.observe(t, v),
            FieldAgg::Counter(c) => c.observe(t, v),
            FieldAgg::ByteRate { gauge, counter } => {
                gauge.observe(t, v);
                counter.observe(t, v);
            }
            FieldAgg::Bitmask(bits) if v >= 0.0 && v < u64::MAX as f64 => *bits |= v as u64,
            FieldAgg::Bitmask(_) => {}
        }
    }
}

/// A field of a GPU: a known DCGM field (index into [`FIELDS`]) or another
/// `DCGM_FI_*` name, with the kind its payload declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldId {
    Known(usize),
    Other { name: String, counter: bool },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSeries {
    pub id: FieldId,
    pub agg: FieldAgg,
    /// Scrape number of the last sample taken, to drop repeats within one scrape.
    #[serde(skip)]
    pub(super) seen_in: u32,
}

/// Everything gathered about one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuSeries {
    pub key: String,
    pub endpoint: String,
    pub identity: GpuIdentity,
    pub pods: Vec<PodRef>,
    pub fields: Vec<FieldSeries>,
    /// For each entry of [`FIELDS`], 1 + its position in `fields` (0: absent).
    #[serde(skip)]
    pub(super) slots: Vec<u16>,
}

impl GpuSeries {
    /// The aggregate of a known field, by its result key.
    pub fn field(&self, key: &str) -> Option<&FieldAgg> {
        self.fields.iter().find_map(|f| match f.id {
            FieldId::Known(i) if FIELDS[i].key == key => Some(&f.agg),
            _ => None,
        })
    }
}

/// The slot of known field `i`, made when there is `room` for a new series.
pub(super) fn field_slot(gpu: &mut GpuSeries, i: usize, room: bool) -> Option<usize> {
    if gpu.slots.len() != FIELDS.len() {
        // Not serialised: rebuild after a checkpoint is read back.
        gpu.slots = vec![0; FIELDS.len()];
        for (pos, f) in gpu.fields.iter().enumerate() {
            if let FieldId::Known(k) = f.id {
                gpu.slots[k] = pos as u16 + 1;
            }
        }
    }
    if gpu.slots[i] == 0 {
        if !room {
            return None;
        }
        gpu.fields.push(FieldSeries {
            id: FieldId::Known(i),
            agg: FieldAgg::new(FIELDS[i].kind),
            seen_in: 0,
        });
        gpu.slots[i] = gpu.fields.len() as u16;
    }
    Some(usize::from(gpu.slots[i]) - 1)
}

/// The slot of a field outside the table, made when there is `room` for a
/// new series and the GPU has fewer than [`MAX_FIELDS`].
pub(super) fn other_slot(
    gpu: &mut GpuSeries,
    name: &str,
    counter: bool,
    room: bool,
) -> Option<usize> {
    let found = gpu
        .fields
        .iter()
        .position(|f| matches!(&f.id, FieldId::Other { name: n, .. } if n == name));
    if found.is_some() {
        return found;
    }
    (room && gpu.fields.len() < MAX_FIELDS).then(|| {
        let kind = if counter {
            FieldKind::Counter
        } else {
            FieldKind::Gauge
        };
        gpu.fields.push(FieldSeries {
            id: FieldId::Other {
                name: name.to_string(),
                counter,
            },
            agg: FieldAgg::new(kind),
            seen_in: 0,
        });
        gpu.fields.len() - 1
    })
}
