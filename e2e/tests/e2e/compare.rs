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

/// Run `name` against `service` (15 s of two streams: its window spans ten refreshes of the GPU exporter), with `baseline`
/// (YAML of `spec.baseline`, or empty); returns the ended run.
async fn measured(ns: &TestNamespace, name: &str, service: &str, baseline: &str) -> BenchmarkRun {
    let load = "\n    concurrency: 2\n    duration: 15s\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 16}}}";
    let r = bench_sim_run(name, service, load, baseline);
    ns.api::<BenchmarkRun>()
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
    let done = wait_ended(ns, name).await;
    assert_eq!(phase(Some(&done)).as_deref(), Some("Succeeded"), "{name}");
    done
}

/// The message of the run's `Regressed` condition, which has `status` and `reason`.
fn regressed(run: &BenchmarkRun, status: &str, reason: &str) -> String {
    let c = run
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Regressed"))
        .unwrap_or_else(|| panic!("no Regressed condition: {:?}", run.status));
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (status, reason),
        "{}",
        c.message
    );
    c.message.clone()
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
    let message = regressed(&again, "False", "WithinTolerance");
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
    let message = regressed(&slower, "True", "Regressed");
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
    let message = regressed(&foreign, "Unknown", "BaselineUnavailable");
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

/// `spec.repeat`: three trials of one step give three trials, each with the
/// temperature its GPU started at, and per figure a mean with its interval
/// (the status summary is the means); a second three-trial run of the same
/// server against the first is judged by Welch's t-test and not regressed.
#[tokio::test]
async fn three_trials_give_intervals_and_a_gate_tested_by_welch() {
    let _steady = OPERATOR.read().await;
    let client = client().await;
    let ns = TestNamespace::create(&client, "trials").await.unwrap();
    deploy(&ns, &gpu_sim("llm", "5ms", "1ms", None))
        .await
        .unwrap();
    let trials = "  repeat: {count: 3, coolDown: 2s}\n";
    let first = measured(&ns, "first", "llm", trials).await;
    let status = first.status.unwrap();
    assert_eq!(status.trials.len(), 1, "{:?}", status.trials);
    let t = &status.trials[0];
    assert_eq!((t.index, t.concurrency, t.trials), (0, Some(2), 3));
    let ttft = &t.metrics["ttftP50Ms"];
    assert_eq!(ttft.n, 3);
    assert!(
        ttft.ci95_low <= ttft.mean && ttft.mean <= ttft.ci95_high,
        "{ttft:?}"
    );
    assert!(
        (ttft.mean - 5.0).abs() < 1.5,
        "TTFT p50 mean {} ms, injected 5 ms",
        ttft.mean
    );
    let summary = status.summary.unwrap();
    assert_eq!(summary.ttft_p50_ms, Some((ttft.mean * 1e6).round() / 1e6));
    assert!(t.metrics.contains_key("outputTokensPerJoule"), "{t:?}");
    let steps: Vec<(Option<i32>, bool)> = status
        .steps
        .iter()
        .map(|s| (s.trial, s.start_temperature_c.is_some()))
        .collect();
    assert_eq!(
        steps,
        [(Some(0), true), (Some(1), true), (Some(2), true)],
        "{:?}",
        status.steps
    );
    // The same server again, three trials, gated on the first run.
    let again = measured(
        &ns,
        "again",
        "llm",
        &format!("{trials}  baseline:\n    runRef: first\n{GATE}"),
    )
    .await;
    let message = regressed(&again, "False", "WithinTolerance");
    assert!(message.contains("Welch's t-test"), "{message}");
    ns.delete().await.unwrap();
}
