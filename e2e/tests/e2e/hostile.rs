//! The hostile-spec suite on the real control plane: every manifest under
//! `tests/hostile/` is applied as `kubectl apply` sends it (strict field
//! validation) into one tenant namespace, and gets the outcome its
//! `benchrun.dev/expect` annotation names: refused at admission with the
//! message, failed by the controller before any load generator exists, or run
//! with what it asked for refused by the telemetry policy.

#[path = "../../../tests/hostile/expect.rs"]
mod expect;

use std::path::Path;

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;

use crate::common::LONG;
use expect::{Expect, cases};

fn condition(r: Option<&BenchmarkRun>, type_: &str) -> Option<(String, String)> {
    let c = r?
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn every_hostile_manifest_gets_its_outcome_on_the_cluster() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "hostile").await.unwrap();
    every_manifest_in(&client, &ns).await;
    ns.delete().await.unwrap();
}

/// Applies every hostile manifest (and the tenant's objects it needs) in
/// `ns` and checks each gets its outcome; shared by the cluster-wide install
/// and the namespaced one (`namespaced.rs`).
pub async fn every_manifest_in(client: &kube::Client, ns: &TestNamespace) {
    let client = client.clone();
    let cases = cases(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hostile"));
    assert!(cases.len() >= 30);
    // The ConfigMap the takeover case aims at; the controller-manager
    // publishes it into every namespace, but need not have done so yet.
    let cms = ns.api::<ConfigMap>();
    if cms.get_opt("kube-root-ca.crt").await.unwrap().is_none() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kube-root-ca.crt"},
            "data": {"ca.crt": "not a certificate"},
        }))
        .unwrap();
        let _ = cms.create(&PostParams::default(), &cm).await;
    }

    // The tenant's own objects some attacks need, made first.
    for case in &cases {
        for doc in &case.setup {
            let mut doc = doc.clone();
            doc["metadata"]["namespace"] = ns.name.clone().into();
            let plural = match doc["kind"].as_str().unwrap() {
                "Pod" => "pods",
                "ConfigMap" => "configmaps",
                other => panic!("{}: no path for a {other}", case.name),
            };
            let request = http::Request::post(format!("/api/v1/namespaces/{}/{plural}", ns.name))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&doc).unwrap())
                .unwrap();
            match client.request::<serde_json::Value>(request).await {
                Ok(_) => {}
                // Left from an earlier pass in the same namespace.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => panic!("{}: its setup: {e}", case.name),
            }
        }
    }

    // Apply each as kubectl does: strict field validation.
    let path = format!(
        "/apis/benchrun.dev/v1alpha1/namespaces/{}/benchmarkruns?fieldValidation=Strict",
        ns.name
    );
    let mut admitted = Vec::new();
    for case in &cases {
        let mut doc = case.doc.clone();
        doc["metadata"]["namespace"] = ns.name.clone().into();
        let request = http::Request::post(&path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&doc).unwrap())
            .unwrap();
        let created = client.request::<serde_json::Value>(request).await;
        match (&case.expect, created) {
            (Expect::Rejected(text), Err(kube::Error::Api(e))) => {
                assert!(
                    (400..500).contains(&e.code),
                    "{}: refused with {}",
                    case.name,
                    e.code
                );
                assert!(
                    e.message.contains(text.as_str()),
                    "{}: expected {text:?} in {:?}",
                    case.name,
                    e.message
                );
            }
            (Expect::Rejected(_), other) => panic!("{}: admitted: {other:?}", case.name),
            (_, Ok(_)) => admitted.push(case),
            (_, Err(e)) => panic!("{}: refused at admission: {e}", case.name),
        }
    }

    let runs = ns.api::<BenchmarkRun>();
    let jobs = ns.api::<Job>();
    for case in admitted {
        let name = case.name.as_str();
        let done = match &case.expect {
            Expect::Failed { reason, message } => {
                let r = wait_for(
                    &runs,
                    name,
                    "its failure",
                    LONG,
                    |r: Option<&BenchmarkRun>| {
                        condition(r, "Failed").is_some_and(|(why, _)| why == *reason)
                    },
                )
                .await
                .unwrap();
                let (_, said) = condition(Some(&r), "Failed").unwrap();
                if let Some(text) = message {
                    assert!(said.contains(text.as_str()), "{name}: {said}");
                }
                // Refused before anything ran.
                let job = jobs.get_opt(&format!("{name}-loadgen")).await.unwrap();
                assert!(job.is_none(), "{name}: a Job was made");
                r
            }
            Expect::TelemetryRefused(text) => {
                let r = wait_for(
                    &runs,
                    name,
                    "the telemetry refusal",
                    LONG,
                    |r: Option<&BenchmarkRun>| {
                        condition(r, "TelemetryDiscovered")
                            .is_some_and(|(why, _)| why == "NotPermitted")
                    },
                )
                .await
                .unwrap();
                let (_, said) = condition(Some(&r), "TelemetryDiscovered").unwrap();
                assert!(said.contains(text.as_str()), "{name}: {said}");
                r
            }
            Expect::Rejected(_) => unreachable!(),
        };
        if let Some(secret) = &case.never_shown {
            let status = serde_json::to_string(&done.status).unwrap();
            assert!(
                !status.contains(secret.as_str()),
                "{name} shows its secret: {status}"
            );
        }
    }
    // The takeover targets are as they were: not the runs'.
    let root = cms.get("kube-root-ca.crt").await.unwrap();
    assert_eq!(root.metadata.owner_references, None);
    for case in &cases {
        for doc in case.setup.iter().filter(|d| d["kind"] == "ConfigMap") {
            let name = doc["metadata"]["name"].as_str().unwrap();
            let cm = cms.get(name).await.unwrap();
            assert_eq!(cm.metadata.owner_references, None, "{name}");
            assert_eq!(
                serde_json::to_value(&cm.data).unwrap(),
                doc["data"],
                "{name}"
            );
        }
    }
}
