//! A run against its baseline (`spec.baseline`): the baseline's results are
//! looked up in the run's own namespace when the run's Job has completed
//! ([`look_up`]), and the run is judged when its final status is decided
//! ([`judge`], pure): the `Regressed` condition and the results document's
//! `baseline`.
//!
//! What a tenant names is contained: a run reads a BenchmarkRun or a
//! ConfigMap of its own namespace only, and a ConfigMap only when it carries
//! the labels benchrun puts on results (a copy kept past its run's TTL
//! keeps them), so a run cannot be aimed at other data; an error message
//! never quotes what a ConfigMap holds.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;

use super::conditions::{self as cond, REGRESSED};
use super::decide::Decision;
use crate::api::{BenchmarkRun, Phase};
use crate::results::ResultsDocument;
use crate::results::compare::gate;

/// The baseline as found: its name in words (`run ns/name`) and results,
/// or why it could not be read.
pub type Found = Result<(String, ResultsDocument), String>;

/// Reads the baseline `run` names, in namespace `ns`.
pub async fn look_up(client: &kube::Client, run: &BenchmarkRun, ns: &str) -> Option<Found> {
    let b = run.spec.baseline.as_ref()?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Some(match (&b.run_ref, &b.config_map_ref) {
        (Some(name), _) => {
            let runs: Api<BenchmarkRun> = Api::namespaced(client.clone(), ns);
            from_run(&runs, &cms, ns, name).await
        }
        (None, Some(name)) => from_config_map(&cms, name)
            .await
            .map(|doc| (format!("results ConfigMap {ns}/{name}"), doc)),
        (None, None) => Err("the baseline names neither a run nor a ConfigMap".into()),
    })
}

async fn from_run(runs: &Api<BenchmarkRun>, cms: &Api<ConfigMap>, ns: &str, name: &str) -> Found {
    let base = runs
        .get_opt(name)
        .await
        .map_err(|e| format!("reading BenchmarkRun {name}: {e}"))?
        .ok_or_else(|| format!("there is no BenchmarkRun {name} in namespace {ns}"))?;
    let status = base.status.unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Pending);
    if !phase.is_final() {
        return Err(format!(
            "the baseline run {name} has not finished (it is {phase})"
        ));
    }
    let results = status
        .results_config_map
        .ok_or_else(|| format!("the baseline run {name} has no results ConfigMap"))?;
    let doc = from_config_map(cms, &results).await?;
    Ok((format!("run {ns}/{name}"), doc))
}

/// The results document a ConfigMap (and its parts) holds, when benchrun wrote it.
async fn from_config_map(cms: &Api<ConfigMap>, name: &str) -> Result<ResultsDocument, String> {
    let first = cms
        .get_opt(name)
        .await
        .map_err(|e| format!("reading ConfigMap {name}: {e}"))?
        .ok_or_else(|| format!("there is no ConfigMap {name}"))?;
    if !is_results(&first) {
        return Err(format!(
            "ConfigMap {name} is not a benchrun results ConfigMap (it lacks the labels app.kubernetes.io/managed-by=benchrun and app.kubernetes.io/component=results)"
        ));
    }
    let files = crate::results::read(cms, name).await?;
    files
        .get("summary.json")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| {
            format!("ConfigMap {name} holds no readable results document (summary.json)")
        })
}

/// Whether a ConfigMap carries the labels of the results benchrun writes.
pub fn is_results(cm: &ConfigMap) -> bool {
    let labels = cm.metadata.labels.as_ref();
    let has = |k: &str, v: &str| labels.and_then(|l| l.get(k)).is_some_and(|x| x == v);
    has("app.kubernetes.io/managed-by", "benchrun") && has("app.kubernetes.io/component", "results")
}

/// Judges a run that has ended (its final status decided in `d`) against
/// its baseline: sets `Regressed` and keeps the gate for the results.
pub fn judge(
    d: &mut Decision,
    run: &BenchmarkRun,
    found: Option<&Found>,
    generation: Option<i64>,
    t: &Time,
) {
    let Some(spec) = run.spec.baseline.as_ref() else {
        return;
    };
    let phase = d.status.phase.unwrap_or(Phase::Pending);
    let (status, reason, message) = match found {
        _ if phase != Phase::Succeeded => (
            None,
            "NotJudged",
            format!(
                "the run ended {phase}: only a run that succeeded is judged against its baseline"
            ),
        ),
        None => (
            None,
            "BaselineUnavailable",
            "the baseline was not looked up".to_string(),
        ),
        Some(Err(why)) => (None, "BaselineUnavailable", why.clone()),
        Some(Ok((name, baseline))) => {
            let this = super::build::results_document(run, &d.status);
            let g = gate(name, baseline, &this, &spec.tolerances);
            let (status, reason, message) = g.condition();
            d.gate = Some(g);
            (status, reason, message)
        }
    };
    cond::set_status(
        &mut d.status.conditions,
        REGRESSED,
        status,
        reason,
        message,
        generation,
        t,
    );
}

#[cfg(test)]
mod tests;
