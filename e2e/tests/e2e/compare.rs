//! `kubectl benchrun compare` and `spec.baseline` against runs on the real
//! control plane: a server made slower (a longer first token and decode
//! step, on its own simulated GPU) is reported as a regression of the
//! figures that got worse, tokens per joule among them, by the plugin and
//! by the `Regressed` condition; the same server measured again is not.

use std::process::ExitCode;

use benchrun::api::BenchmarkRun;
use benchrun::cli::compare::Verdict;
use benchrun_e2e::harness::{TestNamespace, client};
use kube::api::PostParams;

use crate::common::{OPERATOR, bench_sim_run, deploy, gpu_sim, phase, wait_ended};

/// Run `name` against `service` (5 s of two streams), with `baseline`
/// (YAML of `spec.baseline`, or empty); returns the ended run.
async fn measured(ns: &TestNamespace, name: &str, service: &str, baseline: &str) -> BenchmarkRun {
    let load = "\n    concurrency: 2\n    duration: 5s\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 16}}}";
    let r = bench_sim_run(name, service, load, baseline);
    ns.api::<BenchmarkRun>()
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
    let done = wait_ended(ns, name).await;
    assert_eq!(phase(Some(&done)).as_deref(), Some("Succeeded"), "{name}");
    done
}

/// The run's `Regressed` condition: status, reason, message.
fn regressed(run: &BenchmarkRun) -> (String, String, String) {
    let c = run
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Regressed"))
        .unwrap_or_else(|| panic!("no Regressed condition: {:?}", run.status));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The gate: three figures, each allowed 25 % (latencies of a few ms on a
/// shared 2-core machine vary by some percent from run to run).
const GATE: &str = "    tolerances:\n    - {metric: ttftP50Ms, maxRegression: \"25%\"}\n    - {metric: itlP50Ms, maxRegression: \"25%\"}\n    - {metric: outputTokensPerJoule, maxRegression: \"25%\"}\n";

#[tokio::test]
async fn a_slower_server_is_a_regression_and_an_identical_one_is_not() {
    let _steady = OPERATOR.read().await;
    let client = client().await;
    let ns = TestNamespace::create(&client, "compare").await.unwrap();
    deploy(&ns, &gpu_sim("fast", "5ms", "1ms", None))
        .await
        .unwrap();
    deploy(&ns, &gpu_sim("slow", "15ms", "3ms", None))
        .await
        .unwrap();
    let base = measured(&ns, "base", "fast", "").await;
    let base_summary = base.status.and_then(|s| s.summary).unwrap();
    assert!(
        base_summary.output_tokens_per_joule.is_some(),
        "the baseline's energy is measured: {base_summary:?}"
    );
    // The same server again, against the baseline's results ConfigMap.
    let again = measured(
        &ns,
        "again",
        "fast",
        &format!("  baseline:\n    configMapRef: base-results\n{GATE}"),
    )
    .await;
    let (status, reason, message) = regressed(&again);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "WithinTolerance"),
        "{message}"
    );
    assert!(
        message.contains(&format!("results ConfigMap {}/base-results", ns.name)),
        "{message}"
    );
    // A slower server, against the baseline run.
    let slower = measured(
        &ns,
        "slower",
        "slow",
        &format!("  baseline:\n    runRef: base\n{GATE}"),
    )
    .await;
    let (status, reason, message) = regressed(&slower);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Regressed"),
        "{message}"
    );
    for metric in ["ttftP50Ms", "itlP50Ms", "outputTokensPerJoule"] {
        assert!(message.contains(metric), "{metric} not named: {message}");
    }
    assert!(
        message.contains(&format!("against run {}/base", ns.name)),
        "{message}"
    );
    // The results document holds the comparison, figure by figure.
    let doc = crate::common::summary_json(&ns, "slower").await;
    let rows = doc["baseline"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{:#}", doc["baseline"]);
    assert!(
        rows.iter().all(|r| r["verdict"] == "worse"),
        "{:#}",
        doc["baseline"]
    );
    // Only ConfigMaps labelled as benchrun's results are read: the same
    // document in a ConfigMap of the tenant's own making is refused.
    let cms = ns.api::<k8s_openapi::api::core::v1::ConfigMap>();
    let mut copy = cms.get("base-results").await.unwrap();
    copy.metadata = kube::api::ObjectMeta {
        name: Some("unlabelled".into()),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &copy).await.unwrap();
    let foreign = measured(
        &ns,
        "foreign",
        "fast",
        "  baseline:\n    configMapRef: unlabelled\n",
    )
    .await;
    let (status, reason, message) = regressed(&foreign);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "BaselineUnavailable"),
        "{message}"
    );
    assert!(
        message.contains("not a benchrun results ConfigMap"),
        "{message}"
    );
    let names = |a: &str, b: &str| vec![a.to_string(), format!("{}/{b}", ns.name)];
    // Latencies of a few ms on a shared 2-core machine vary by some
    // percent from run to run: 25 % is the tolerance here.
    let same = benchrun::cli::results::comparison(&names("base", "again"), Some(&ns.name), 0.25)
        .await
        .unwrap();
    assert!(
        !same.regressed(),
        "{}",
        benchrun::cli::compare::table(&same)
    );
    let slower = benchrun::cli::results::comparison(&names("base", "slower"), Some(&ns.name), 0.25)
        .await
        .unwrap();
    let shown = benchrun::cli::compare::table(&slower);
    let worse: Vec<&str> = slower.worse().map(|(_, metric, _)| metric).collect();
    for metric in ["ttftP50Ms", "itlP50Ms", "latencyP99Ms", "requestThroughput"] {
        assert!(worse.contains(&metric), "{metric} not worse:\n{shown}");
    }
    let errors = slower.steps[0]
        .rows
        .iter()
        .find(|r| r.metric == "errorRate");
    assert!(
        errors.is_none_or(|r| r.cells[1].verdict == Verdict::Same),
        "no errors either side:\n{shown}"
    );
    // The plugin's exit code gates a pipeline.
    let args = |b: &str| {
        [
            "compare",
            "base",
            b,
            "-n",
            &ns.name,
            "--tolerance",
            "25%",
            "--fail-on-regression",
        ]
        .map(String::from)
        .to_vec()
    };
    let (gate_same, gate_slower) = (args("again"), args("slower"));
    let codes = tokio::task::spawn_blocking(move || {
        (
            benchrun::cli::results::main(gate_same),
            benchrun::cli::results::main(gate_slower),
        )
    })
    .await
    .unwrap();
    assert_eq!(codes, (ExitCode::SUCCESS, ExitCode::from(1)));
    ns.delete().await.unwrap();
}
