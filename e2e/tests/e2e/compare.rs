//! `kubectl benchrun compare` against runs on the real control plane: a
//! server made slower (a longer first token and decode step) is reported as
//! a regression of exactly the figures that got worse, and an identical one
//! as none.

use std::process::ExitCode;

use benchrun::api::BenchmarkRun;
use benchrun::cli::compare::Verdict;
use benchrun_e2e::harness::{TestNamespace, client};
use kube::api::PostParams;

use crate::common::{OPERATOR, bench_sim, bench_sim_run, deploy, phase, wait_ended};

async fn measured(ns: &TestNamespace, name: &str, service: &str) {
    let load = "\n    concurrency: 2\n    requestCount: 40\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 16}}}";
    let r = bench_sim_run(
        name,
        service,
        load,
        "  telemetry: {gpu: {enabled: false}}\n",
    );
    ns.api::<BenchmarkRun>()
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
    let done = wait_ended(ns, name).await;
    assert_eq!(phase(Some(&done)).as_deref(), Some("Succeeded"), "{name}");
}

#[tokio::test]
async fn a_slower_server_is_a_regression_and_an_identical_one_is_not() {
    let _steady = OPERATOR.read().await;
    let client = client().await;
    let ns = TestNamespace::create(&client, "compare").await.unwrap();
    let fast = ["--ttft", "5ms", "--itl", "1ms"];
    deploy(&ns, &bench_sim("fast", &fast, 0, None))
        .await
        .unwrap();
    deploy(&ns, &bench_sim("twin", &fast, 0, None))
        .await
        .unwrap();
    deploy(
        &ns,
        &bench_sim("slow", &["--ttft", "15ms", "--itl", "3ms"], 0, None),
    )
    .await
    .unwrap();
    for (name, service) in [("base", "fast"), ("again", "twin"), ("slower", "slow")] {
        measured(&ns, name, service).await;
    }
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
