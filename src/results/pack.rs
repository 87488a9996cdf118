//! Fitting the result files into ConfigMaps, which hold at most 1 MiB each.
//!
//! Files that fit go in as they are. When they do not, each file is
//! gzip-compressed into `binaryData` (`NAME.gz`); a compressed file still over
//! the limit is cut into numbered pieces (`NAME.gz.000`, ...); and the entries
//! are spread over as many ConfigMaps as needed: `<run>-results` first, then
//! `<run>-results-1`, ... The first one then carries `index.json`, which says
//! where every file went and how to put it back together. Nothing is dropped.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use serde::{Deserialize, Serialize};

/// What one ConfigMap may hold, leaving room for metadata and `index.json`.
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024 - 64 * 1024;

/// The contents of one ConfigMap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigMapData {
    pub data: BTreeMap<String, String>,
    pub binary_data: BTreeMap<String, Vec<u8>>,
}

impl ConfigMapData {
    fn size(&self) -> usize {
        self.data
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + self
                .binary_data
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Where one file went (`index.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// gzip-compressed: the pieces, joined, gunzip to the file.
    pub gzip: bool,
    /// `(ConfigMap number, key)` of each piece, in order; number 0 is
    /// `<run>-results`, n is `<run>-results-n`.
    pub pieces: Vec<(usize, String)>,
}

/// Packs `files` into ConfigMaps of at most `limit` bytes each.
pub fn pack(files: BTreeMap<String, String>, limit: usize) -> Vec<ConfigMapData> {
    let total: usize = files.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total <= limit {
        return vec![ConfigMapData {
            data: files,
            ..Default::default()
        }];
    }
    // Compress everything, cut what is still too big, largest first into bins.
    let limit = limit.max(1024);
    let mut entries: Vec<(String, String, Vec<u8>)> = Vec::new();
    for (name, text) in &files {
        let gz = gzip(text.as_bytes());
        let pieces = gz.len().div_ceil(limit - 64).max(1);
        if pieces == 1 {
            entries.push((name.clone(), format!("{name}.gz"), gz));
        } else {
            for (i, chunk) in gz.chunks(limit - 64).enumerate() {
                entries.push((name.clone(), format!("{name}.gz.{i:03}"), chunk.to_vec()));
            }
        }
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(entries[i].2.len()));
    let mut bins: Vec<ConfigMapData> = vec![ConfigMapData::default()];
    let mut placed: Vec<usize> = vec![0; entries.len()];
    for i in order {
        let (_, key, bytes) = &entries[i];
        let need = key.len() + bytes.len();
        let bin = match bins.iter().position(|b| b.size() + need <= limit) {
            Some(b) => b,
            None => {
                bins.push(ConfigMapData::default());
                bins.len() - 1
            }
        };
        bins[bin].binary_data.insert(key.clone(), bytes.clone());
        placed[i] = bin;
    }
    let mut index: BTreeMap<String, Placement> = BTreeMap::new();
    for (i, (name, key, _)) in entries.iter().enumerate() {
        index
            .entry(name.clone())
            .or_insert(Placement {
                gzip: true,
                pieces: Vec::new(),
            })
            .pieces
            .push((placed[i], key.clone()));
    }
    let index = serde_json::to_string_pretty(&index).unwrap_or_default();
    bins[0].data.insert("index.json".into(), index);
    bins
}

/// Reads the ConfigMaps of results written under `base` (`base`, `base-1`,
/// ...) and unpacks their files.
pub async fn read(
    cms: &kube::Api<k8s_openapi::api::core::v1::ConfigMap>,
    base: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut parts = Vec::new();
    // A results file of MAX_DECODED_BYTES is never split over more.
    for i in 0..=MAX_DECODED_BYTES / MAX_CONFIGMAP_BYTES + 1 {
        let name = if i == 0 {
            base.to_string()
        } else {
            format!("{base}-{i}")
        };
        let Some(cm) = cms.get_opt(&name).await.map_err(|e| e.to_string())? else {
            break;
        };
        parts.push(ConfigMapData {
            data: cm.data.unwrap_or_default(),
            binary_data: cm
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        });
    }
    if parts.is_empty() {
        return Err(format!("ConfigMap {base} not found"));
    }
    unpack(&parts)
}

/// The files back from the ConfigMaps `pack` made (in their order).
pub fn unpack(parts: &[ConfigMapData]) -> Result<BTreeMap<String, String>, String> {
    let first = parts.first().ok_or("no ConfigMap")?;
    let Some(index) = first.data.get("index.json") else {
        return Ok(first.data.clone());
    };
    let index: BTreeMap<String, Placement> =
        serde_json::from_str(index).map_err(|e| format!("index.json: {e}"))?;
    let mut out = BTreeMap::new();
    let mut left = MAX_DECODED_BYTES;
    for (name, p) in index {
        let mut gz = Vec::new();
        for (part, key) in &p.pieces {
            let bytes = parts
                .get(*part)
                .and_then(|c| c.binary_data.get(key))
                .ok_or_else(|| format!("{name}: piece {key} of part {part} is missing"))?;
            gz.extend_from_slice(bytes);
        }
        // Every file together is held to the bound, not each.
        let bytes = gunzip_at_most(&gz, left).map_err(|e| format!("{name}: {e}"))?;
        left -= bytes.len();
        let text = String::from_utf8(bytes).map_err(|e| format!("{name}: {e}"))?;
        out.insert(name, text);
    }
    Ok(out)
}

/// The most a run's results file or checkpoint may decompress to. Both
/// live in the tenant's namespace, where the tenant may edit ConfigMaps: a
/// few KiB of gzip that inflate to GiB would otherwise take the controller's
/// memory each time it reads them (a crash loop).
pub const MAX_DECODED_BYTES: usize = 128 << 20;

/// `gz` decompressed, or why not: past `max` bytes it is refused, having
/// inflated no more than that.
pub fn gunzip_at_most(gz: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > max {
        return Err(format!(
            "decompresses to more than {} MiB, the most this controller reads",
            max >> 20
        ));
    }
    Ok(out)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that compresses about 2:1, like a CSV of numbers.
    fn text(n: usize, seed: u64) -> String {
        let mut x = seed;
        let mut s = String::with_capacity(n);
        while s.len() < n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(&format!("{},", x >> 44));
        }
        s
    }

    /// Results ConfigMaps rewritten by the tenant whose namespace they are
    /// in: files that inflate past the bound, alone or together, are
    /// refused with why instead of taking the controller's memory.
    #[test]
    fn results_that_inflate_past_the_bound_are_refused() {
        let bomb = |mib: usize| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            let zeros = vec![b' '; 1 << 20];
            for _ in 0..mib {
                gz.write_all(&zeros).unwrap();
            }
            gz.finish().unwrap()
        };
        let part = |files: &[(&str, usize)]| {
            let mut index = BTreeMap::new();
            let mut binary_data = BTreeMap::new();
            for (name, mib) in files {
                let key = format!("{name}.gz");
                binary_data.insert(key.clone(), bomb(*mib));
                index.insert(
                    name.to_string(),
                    serde_json::json!({"gzip": true, "pieces": [[0, key]]}),
                );
            }
            ConfigMapData {
                data: BTreeMap::from([(
                    "index.json".to_string(),
                    serde_json::to_string(&index).unwrap(),
                )]),
                binary_data,
            }
        };
        let max = MAX_DECODED_BYTES >> 20;
        let err = unpack(&[part(&[("summary.json", max + 1)])]).unwrap_err();
        assert!(err.contains("more than 128 MiB"), "{err}");
        // Two files of 70 MiB each: each under the bound, not together.
        let err = unpack(&[part(&[("a.csv", 70), ("b.csv", 70)])]).unwrap_err();
        assert!(
            err.starts_with("b.csv") && err.contains("more than"),
            "{err}"
        );
        // Within the bound, read as written.
        let ok = unpack(&[part(&[("a.csv", 1)])]).unwrap();
        assert_eq!(ok["a.csv"].len(), 1 << 20);
    }

    #[test]
    fn small_results_stay_plain() {
        let files = BTreeMap::from([("summary.json".to_string(), "{}".to_string())]);
        let bins = pack(files.clone(), 1000);
        assert_eq!(bins.len(), 1);
        assert_eq!(bins[0].data, files);
    }

    #[test]
    fn big_results_are_compressed_split_and_indexed_never_dropped() {
        let files = BTreeMap::from([
            ("summary.json".to_string(), text(30_000, 1)),
            ("server_metrics.csv".to_string(), text(200_000, 2)),
            ("gpu_telemetry.csv".to_string(), text(60_000, 3)),
        ]);
        let limit = 40_000;
        let bins = pack(files.clone(), limit);
        assert!(bins.len() > 2, "{} ConfigMaps", bins.len());
        for b in &bins {
            assert!(b.size() <= limit + 4096, "{}", b.size());
        }
        assert_eq!(unpack(&bins).unwrap(), files);
    }
}
