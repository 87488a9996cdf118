//! How the series stays bounded: records appended at the series' resolution,
//! and neighbouring records of a step merged two by two (energies and
//! increases added, gauges averaged by scrapes, rates by time).

use super::*;

/// Appends a record; once the series is thinned, new records join the last
/// one until it holds `group` raw records, so the whole file has one
/// resolution. Returns the series' new size.
pub(super) fn append(list: &mut Vec<Record>, r: Record, group: u32, bytes: usize) -> usize {
    let added = r.bytes();
    let Some(last) = list.pop() else {
        list.push(r);
        return bytes + added;
    };
    let held = match &last {
        Record::Scrape { n, .. } | Record::Progress { n, .. } => *n,
        Record::Header { .. } => group,
    };
    if held >= group {
        list.extend([last, r]);
        return bytes + added;
    }
    let before = last.bytes();
    match merge(last, r) {
        Ok(m) => {
            let after = m.bytes();
            list.push(m);
            bytes - before + after
        }
        Err(both) => {
            let (last, r) = *both;
            list.extend([last, r]);
            bytes + added
        }
    }
}

/// Merges neighbouring records two by two (scrapes only within a step).
pub(super) fn halve(records: Vec<Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::with_capacity(records.len() / 2 + 1);
    let mut pending: Option<Record> = None;
    for r in records {
        pending = match pending.take() {
            None => Some(r),
            Some(a) => match merge(a, r) {
                Ok(m) => {
                    out.push(m);
                    None
                }
                Err(both) => {
                    let (a, r) = *both;
                    out.push(a);
                    Some(r)
                }
            },
        };
    }
    out.extend(pending);
    out
}

/// One record holding both, or both back when they cannot merge.
pub(super) fn merge(a: Record, b: Record) -> Result<Record, Box<(Record, Record)>> {
    match (a, b) {
        (
            Record::Scrape {
                step: sa,
                n: na,
                gpus: ga,
                servers: xa,
                ..
            },
            Record::Scrape {
                t,
                t_unix_ms,
                step,
                n: nb,
                gpus: gb,
                servers: xb,
            },
        ) if sa == step => {
            let w = (f64::from(na), f64::from(nb));
            Ok(Record::Scrape {
                t,
                t_unix_ms,
                step,
                n: na + nb,
                gpus: merge_by(ga, gb, |p| p.gpu.clone(), |a, b| merge_gpu(a, b, w)),
                servers: merge_by(xa, xb, |p| p.endpoint.clone(), |a, b| merge_server(a, b, w)),
            })
        }
        (
            Record::Progress {
                n: na,
                dt: da,
                requests_per_s: ra,
                output_tokens_per_s: oa,
                ..
            },
            Record::Progress {
                t,
                t_unix_ms,
                n: nb,
                requests_done,
                ok,
                errors,
                output_tokens,
                dt: db,
                requests_per_s: rb,
                output_tokens_per_s: ob,
            },
        ) => {
            let dt = da + db;
            let by_time = |a: f64, b: f64| if dt > 0.0 { (a * da + b * db) / dt } else { b };
            Ok(Record::Progress {
                t,
                t_unix_ms,
                n: na + nb,
                requests_done,
                ok,
                errors,
                output_tokens,
                dt,
                requests_per_s: by_time(ra, rb),
                output_tokens_per_s: by_time(oa, ob),
            })
        }
        (a, b) => Err(Box::new((a, b))),
    }
}

/// Entries of two records matched by `key`; one only in either is kept as is.
fn merge_by<P, K: Ord>(
    a: Vec<P>,
    b: Vec<P>,
    key: impl Fn(&P) -> K,
    both: impl Fn(P, P) -> P,
) -> Vec<P> {
    let mut by: BTreeMap<K, P> = a.into_iter().map(|p| (key(&p), p)).collect();
    for p in b {
        let k = key(&p);
        let merged = match by.remove(&k) {
            Some(first) => both(first, p),
            None => p,
        };
        by.insert(k, merged);
    }
    by.into_values().collect()
}

/// Gauges weighted by the scrapes each side holds; a side without the value
/// leaves the other's.
fn mean(a: Option<f64>, b: Option<f64>, (wa, wb): (f64, f64)) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a * wa + b * wb) / (wa + wb)),
        (a, b) => a.or(b),
    }
}

fn sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

fn merge_gpu(a: GpuPoint, b: GpuPoint, w: (f64, f64)) -> GpuPoint {
    GpuPoint {
        gpu: b.gpu,
        power_w: mean(a.power_w, b.power_w, w),
        energy_j: sum(a.energy_j, b.energy_j),
        utilization_pct: mean(a.utilization_pct, b.utilization_pct, w),
        sm_active_pct: mean(a.sm_active_pct, b.sm_active_pct, w),
        tensor_active_pct: mean(a.tensor_active_pct, b.tensor_active_pct, w),
        dram_active_pct: mean(a.dram_active_pct, b.dram_active_pct, w),
        temperature_c: mean(a.temperature_c, b.temperature_c, w),
        memory_used_gib: mean(a.memory_used_gib, b.memory_used_gib, w),
    }
}

fn merge_server(a: ServerPoint, mut b: ServerPoint, w: (f64, f64)) -> ServerPoint {
    for (name, v) in a.gauges {
        let merged = mean(Some(v), b.gauges.get(&name).copied(), w);
        b.gauges.insert(name, merged.unwrap_or(v));
    }
    for (name, v) in a.counters {
        *b.counters.entry(name).or_insert(0.0) += v;
    }
    b.omitted = b.omitted.max(a.omitted);
    b
}
