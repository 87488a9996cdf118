//! The result model of a run and its renderings (status summary, ConfigMap files).
//!
//! Pure: no Kubernetes client. The controller fills a [`ResultsDocument`] and
//! writes what [`ResultsDocument::files`] returns into the results ConfigMap.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{Phase, StepResult, Summary};

/// Version of the `summary.json` layout; bumped on any incompatible change.
pub const RESULTS_SCHEMA_VERSION: u32 = 1;

/// Everything a run produced, as `summary.json` holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultsDocument {
    pub schema_version: u32,
    pub run: RunRef,
    pub phase: Phase,
    /// Why the run ended as it did (the final condition's reason).
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
}

/// Identity of the run the results belong to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ResultsDocument {
    /// The ConfigMap files: `summary.json` now; the CSV files join it as the
    /// telemetry they render lands.
    pub fn files(&self) -> Result<BTreeMap<String, String>, serde_json::Error> {
        Ok(BTreeMap::from([(
            "summary.json".to_string(),
            serde_json::to_string_pretty(self)?,
        )]))
    }
}
