//! The operator as installed by Helm: admission, leadership, RBAC.

use benchrun::api::BenchmarkRun;
use benchrun::api::rules::TARGET_ONE_OF_MSG;
use benchrun_e2e::harness::{TestNamespace, client, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::common::{LONG, OPERATOR_NS, run};

#[tokio::test]
async fn the_api_server_rejects_an_invalid_run_with_the_cel_message() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "invalid").await.unwrap();
    let mut bad = run("both-targets", "{concurrency: 1, requestCount: 1}", "");
    bad.spec.target.url = Some("http://example.invalid:8000".into());
    let err = ns
        .api::<BenchmarkRun>()
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("a run with both url and serviceRef must be rejected");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}")
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(TARGET_ONE_OF_MSG),
        "{}",
        status.message
    );

    let mut negative = run("negative", "{concurrency: 1, requestCount: 1}", "");
    negative.spec.load.concurrency = Some(-4);
    let err = ns
        .api::<BenchmarkRun>()
        .create(&PostParams::default(), &negative)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.load.concurrency"), "{err}");
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn the_operator_runs_as_its_service_account_and_holds_the_lease() {
    let client = client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=benchrun"))
        .await
        .unwrap();
    let pod = list.items.first().expect("the chart's controller pod");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("benchrun"));
    let name = pod.metadata.name.clone().unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    // Holding the Lease proves the pod talks to the API server with the
    // chart's RBAC, as no admin credentials reach it.
    wait_for(
        &leases,
        "benchrun-controller",
        "the operator to hold its lease",
        LONG,
        move |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                == Some(name.as_str())
        },
    )
    .await
    .unwrap();
}

/// The controller writes status with the resourceVersion of the copy it
/// decided from; the API server must refuse such a write once the run has
/// changed, so a decision from a stale cache can never overwrite a newer
/// status. (This checks the server's side of that contract, with the very
/// patch shape the controller sends.)
#[tokio::test]
async fn a_status_write_from_a_stale_copy_is_refused() {
    use kube::api::{Patch, PatchParams};
    let client = client().await;
    let ns = TestNamespace::create(&client, "stale").await.unwrap();
    let runs = ns.api::<BenchmarkRun>();
    let mut r = run("s", "{concurrency: 1, requestCount: 1}", "  cancel: true\n");
    r.spec.target.service_ref = None;
    r.spec.target.url = Some("http://127.0.0.1:9".into());
    runs.create(&PostParams::default(), &r).await.unwrap();
    let ended = wait_for(&runs, "s", "Cancelled", LONG, |r: Option<&BenchmarkRun>| {
        r.and_then(|r| r.status.as_ref()).and_then(|s| s.phase)
            == Some(benchrun::api::Phase::Cancelled)
    })
    .await
    .unwrap();
    let stale = ended.metadata.resource_version.clone().unwrap();
    // The run changes (a label), so the copy at `stale` is out of date.
    let label = serde_json::json!({"metadata": {"labels": {"touched": "yes"}}});
    runs.patch("s", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let write = |version: Option<&str>| {
        let mut patch = serde_json::json!({
            "apiVersion": "benchrun.dev/v1alpha1",
            "kind": "BenchmarkRun",
            "status": {"phase": "Running"},
        });
        if let Some(v) = version {
            patch["metadata"] = serde_json::json!({"resourceVersion": v});
        }
        patch
    };
    let params = PatchParams::apply("e2e-stale-writer").force();
    let err = runs
        .patch_status("s", &params, &Patch::Apply(write(Some(&stale))))
        .await
        .expect_err("a write from a stale copy must be refused");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}")
    };
    assert_eq!(status.code, 409, "{status:?}");
    let after = runs.get("s").await.unwrap();
    assert_eq!(
        after.status.and_then(|s| s.phase),
        Some(benchrun::api::Phase::Cancelled)
    );
    ns.delete().await.unwrap();
}
