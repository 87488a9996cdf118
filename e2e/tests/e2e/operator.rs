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
