//! The outcome each manifest under `tests/hostile/` must get, read from its
//! `benchrun.dev/expect` annotation. Shared by the offline test
//! (`tests/hostile.rs`, through `benchrun validate`) and the end-to-end test
//! on the real control plane (`e2e/tests/e2e/hostile.rs`).
//!
//! `benchrun.dev/expect` is one of:
//! - `rejected: TEXT`: admission refuses the manifest, saying TEXT;
//! - `failed: REASON[: TEXT]`: admitted, then the run fails with the `Failed`
//!   condition's REASON (and TEXT in its message) before a load generator runs;
//! - `telemetry-refused: TEXT`: admitted and run, but discovery refuses what it
//!   asked for: `TelemetryDiscovered` has reason `NotPermitted` and says TEXT.
//!
//! `benchrun.dev/never-shown: TEXT` names a secret the manifest carries that
//! must appear in no output or condition.
//!
//! A file may hold other documents before the run (a Pod, a ConfigMap): the
//! tenant's own objects the attack needs, created in the run's namespace
//! first on the cluster. Offline they cannot be seen, so an outcome that
//! rests on them (`failed` for a name conflict, `telemetry-refused` for a
//! discovered pod) is checked there as a valid spec.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// What a manifest must get.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    Rejected(String),
    Failed {
        reason: String,
        message: Option<String>,
    },
    TelemetryRefused(String),
}

/// One hostile manifest.
#[derive(Clone, Debug)]
pub struct Case {
    pub file: PathBuf,
    pub name: String,
    pub doc: serde_json::Value,
    pub expect: Expect,
    pub never_shown: Option<String>,
    /// The tenant's objects to create first (the documents before the run).
    pub setup: Vec<serde_json::Value>,
}

impl Expect {
    pub fn parse(s: &str) -> Result<Expect, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let rest = rest.trim();
        let text = || {
            (!rest.is_empty())
                .then(|| rest.to_string())
                .ok_or(format!("{kind} needs a text: {s:?}"))
        };
        match kind.trim() {
            "rejected" => Ok(Expect::Rejected(text()?)),
            "telemetry-refused" => Ok(Expect::TelemetryRefused(text()?)),
            "failed" => {
                let (reason, message) = match rest.split_once(':') {
                    Some((r, m)) => (r.trim(), Some(m.trim().to_string())),
                    None => (rest, None),
                };
                if reason.is_empty() {
                    return Err(format!("failed needs a reason: {s:?}"));
                }
                Ok(Expect::Failed {
                    reason: reason.to_string(),
                    message,
                })
            }
            other => Err(format!("unknown expectation {other:?} in {s:?}")),
        }
    }
}

/// Every manifest in `dir`, in file-name order.
pub fn cases(dir: &Path) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let doc = docs
                .pop()
                .filter(|d| d["kind"] == "BenchmarkRun")
                .unwrap_or_else(|| panic!("{}: the last document is not the run", file.display()));
            let meta = &doc["metadata"];
            let annotation = |k: &str| meta["annotations"][k].as_str().map(str::to_string);
            let expect = annotation("benchrun.dev/expect")
                .ok_or("no benchrun.dev/expect annotation".to_string())
                .and_then(|s| Expect::parse(&s))
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            Case {
                name: meta["name"].as_str().unwrap().to_string(),
                never_shown: annotation("benchrun.dev/never-shown"),
                file,
                doc,
                expect,
                setup: docs,
            }
        })
        .collect()
}
