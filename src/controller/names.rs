//! Names and labels of the objects a run owns.
//!
//! Run names may be up to 253 characters, but Job names end up in pod hostnames and
//! label values, which allow 63. Long names are cut and given a hash suffix, so two
//! long runs never share a child.

use std::collections::BTreeMap;

use crate::api::BenchmarkRun;
use kube::ResourceExt;

/// Label with the (label-safe) name of the run that owns an object.
pub const RUN_LABEL: &str = "benchrun.dev/run";
/// The field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "benchrun";
/// Selector matching every object the controller creates.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=benchrun";

/// Longest Job name that keeps `<job>-<index>` pod hostnames and the
/// `batch.kubernetes.io/job-name` label within 63 characters.
const MAX_JOB_NAME: usize = 52;
const MAX_LABEL_VALUE: usize = 63;

/// FNV-1a, enough to tell truncated names apart; stable across releases.
fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// `base` + `suffix`, cut to `max` characters with a hash of the full name when too long.
pub fn bounded_name(base: &str, suffix: &str, max: usize) -> String {
    let full = if suffix.is_empty() {
        base.to_string()
    } else {
        format!("{base}-{suffix}")
    };
    if full.len() <= max {
        return full;
    }
    let hash = short_hash(&full);
    let tail = if suffix.is_empty() {
        hash
    } else {
        format!("{hash}-{suffix}")
    };
    let keep = max.saturating_sub(tail.len() + 1);
    let head = base[..keep.min(base.len())].trim_end_matches(['-', '.']);
    format!("{head}-{tail}")
}

/// The load-generator Job of a run.
pub fn job_name(run: &BenchmarkRun) -> String {
    bounded_name(&run.name_any(), "loadgen", MAX_JOB_NAME)
}

/// The results ConfigMap of a run.
pub fn results_config_map_name(run: &BenchmarkRun) -> String {
    run.spec
        .results
        .config_map_name
        .clone()
        .unwrap_or_else(|| bounded_name(&run.name_any(), "results", 253))
}

/// The run's load plan ConfigMap, mounted into its workers.
pub fn plan_name(run: &BenchmarkRun) -> String {
    bounded_name(&run.name_any(), "plan", 253)
}

/// The run's measurement checkpoint ConfigMap (`-1`, `-2`, ... when split).
pub fn checkpoint_name(run: &BenchmarkRun) -> String {
    bounded_name(&run.name_any(), "checkpoint", 240)
}

/// Labels on every object a run owns.
pub fn labels(run: &BenchmarkRun, component: &str) -> BTreeMap<String, String> {
    let run_label = bounded_name(&run.name_any(), "", MAX_LABEL_VALUE);
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "benchrun".into()),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/instance".into(), run_label.clone()),
        ("app.kubernetes.io/managed-by".into(), "benchrun".into()),
        (RUN_LABEL.into(), run_label),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(bounded_name("llama", "loadgen", 52), "llama-loadgen");
    }

    #[test]
    fn long_names_are_cut_hashed_and_distinct() {
        let a = "a".repeat(100);
        let b = format!("{}b", "a".repeat(99));
        let na = bounded_name(&a, "loadgen", 52);
        let nb = bounded_name(&b, "loadgen", 52);
        assert!(na.len() <= 52 && nb.len() <= 52, "{na} {nb}");
        assert!(na.ends_with("-loadgen"));
        assert_ne!(na, nb);
        assert_eq!(na, bounded_name(&a, "loadgen", 52), "stable");
    }

    #[test]
    fn cut_names_do_not_end_in_separators() {
        let base = format!("{}-{}", "x".repeat(42), "y".repeat(40));
        let n = bounded_name(&base, "loadgen", 52);
        assert!(!n.contains("--"), "{n}");
    }
}
