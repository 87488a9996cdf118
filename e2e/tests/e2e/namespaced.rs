//! The chart's namespaced install (`watchNamespaces`): the operator reconciles
//! runs only in its namespaces, discovers with only what its RBAC grants, and
//! says what it could not look at. `scripts/e2e.sh` runs this after the main
//! suite, once it has turned the install namespaced (`helm upgrade --set
//! watchNamespaces={e2e-watched}`); it is ignored in a plain `cargo test`.

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client, wait_for};
use kube::api::PostParams;

use crate::common::{LONG, deploy_sim, open_to_telemetry, phase, run};

/// The namespace the script names in `watchNamespaces`.
const WATCHED: &str = "e2e-watched";

#[tokio::test]
#[ignore = "needs the namespaced install scripts/e2e.sh makes after the main suite"]
async fn a_namespaced_install_discovers_in_its_namespaces_and_reports_the_rest() {
    let client = client().await;
    let watched = TestNamespace::existing(&client, WATCHED);
    let other = TestNamespace::create(&client, "unwatched").await.unwrap();
    // The other namespace opts in; a namespaced install cannot see the label.
    open_to_telemetry(&client, &other.name).await;
    deploy_sim(&watched, 18501, 5, 1).await.unwrap();
    deploy_sim(&other, 18502, 5, 1).await.unwrap();
    let load = "\n    concurrency: 1\n    requestCount: 6\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 8}}}";
    // A run where the operator does not watch: never touched.
    other
        .api::<BenchmarkRun>()
        .create(&PostParams::default(), &run("unseen", load, ""))
        .await
        .unwrap();
    let extra = format!(
        "  telemetry:\n    server: {{selector: {{matchLabels: {{app: sim}}}}, namespaces: [{WATCHED}, {}]}}\n",
        other.name
    );
    let runs = watched.api::<BenchmarkRun>();
    runs.create(&PostParams::default(), &run("seen", load, &extra))
        .await
        .unwrap();
    let done = wait_for(
        &runs,
        "seen",
        "the run to end",
        LONG,
        |r: Option<&BenchmarkRun>| matches!(phase(r).as_deref(), Some("Succeeded" | "Failed")),
    )
    .await
    .unwrap();
    assert_eq!(phase(Some(&done)).as_deref(), Some("Succeeded"));
    let status = done.status.unwrap();
    // Its own namespace's server was found and scraped.
    let endpoints = status.endpoints.clone().unwrap_or_default();
    assert!(endpoints.server.discovered >= 1, "{endpoints:?}");
    // The other namespace is refused, and the reason the label did not open
    // it is given: this install may not list namespaces.
    let telemetry = status
        .conditions
        .iter()
        .find(|c| c.type_ == "TelemetryDiscovered")
        .expect("a TelemetryDiscovered condition");
    assert_eq!(telemetry.reason, "NotPermitted", "{}", telemetry.message);
    assert!(
        telemetry
            .message
            .contains(&format!("namespace {} is not readable", other.name)),
        "{}",
        telemetry.message
    );
    assert!(
        telemetry.message.contains("may not list namespaces"),
        "{}",
        telemetry.message
    );
    // By now the run outside the watched namespaces would have ended, had
    // the operator seen it.
    let unseen = other.api::<BenchmarkRun>().get("unseen").await.unwrap();
    assert!(unseen.status.is_none(), "{:?}", unseen.status);
    other.delete().await.unwrap();
}

/// The hostile suite passes in a namespaced install too: what the installer
/// allows does not depend on how widely the operator watches.
#[tokio::test]
#[ignore = "needs the namespaced install scripts/e2e.sh makes after the main suite"]
async fn a_namespaced_install_passes_the_hostile_suite() {
    let client = client().await;
    let watched = TestNamespace::existing(&client, WATCHED);
    crate::hostile::every_manifest_in(&client, &watched).await;
}
