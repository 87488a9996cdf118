use prometheus_client::registry::Registry;

use super::*;

/// The runs given, exported as the controller would.
#[derive(Debug)]
struct Fixed(Vec<BenchmarkRun>, usize);

impl Collector for Fixed {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        super::encode(&latest(self.0.iter().cloned(), self.1), encoder)
    }
}

fn run(name: &str, status: serde_json::Value) -> BenchmarkRun {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "benchrun.dev/v1alpha1",
        "kind": "BenchmarkRun",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"target": {"url": "http://vllm:8000", "model": "m"}, "load": {"concurrency": 8, "requestCount": 100}},
        "status": status,
    }))
    .unwrap()
}

fn text(runs: Vec<BenchmarkRun>, max: usize) -> String {
    let mut registry = Registry::with_prefix("benchrun");
    registry.register_collector(Box::new(Fixed(runs, max)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

#[test]
fn a_finished_run_s_figures_are_gauges_labelled_by_run_and_step() {
    let done = run(
        "c8",
        serde_json::json!({
            "phase": "Succeeded",
            "completionTime": "2026-11-30T10:00:00Z",
            "summary": {"ttftP50Ms": 98.5, "ttftP99Ms": 120.0, "itlP50Ms": 9.5,
                        "requestThroughput": 11.25, "outputTokensPerJoule": 2.5,
                        "totalGpuPowerW": 350.0},
            "conditions": [{"type": "Regressed", "status": "True", "reason": "Regressed",
                            "message": "x", "lastTransitionTime": "2026-11-30T10:00:00Z"}],
        }),
    );
    let out = text(vec![done], 10);
    for line in [
        r#"benchrun_run_ttft_seconds{namespace="team-a",run="c8",step="0",quantile="0.5"} 0.0985"#,
        r#"benchrun_run_ttft_seconds{namespace="team-a",run="c8",step="0",quantile="0.99"} 0.12"#,
        r#"benchrun_run_request_throughput{namespace="team-a",run="c8",step="0"} 11.25"#,
        r#"benchrun_run_output_tokens_per_joule{namespace="team-a",run="c8",step="0"} 2.5"#,
        r#"benchrun_run_gpu_power_watts{namespace="team-a",run="c8",step="0"} 350.0"#,
        r#"benchrun_run_completion_timestamp_seconds{namespace="team-a",run="c8",phase="Succeeded"} 1796032800.0"#,
        r#"benchrun_run_regressed{namespace="team-a",run="c8"} 1.0"#,
    ] {
        assert!(out.contains(line), "{line} not in:\n{out}");
    }
    // Withheld or unmeasured figures have no series at all.
    assert!(!out.contains("benchrun_run_gpu_energy_joules{"), "{out}");
    assert!(!out.contains("benchrun_run_goodput{"), "{out}");
    // One HELP/TYPE per family, the quantiles together.
    assert_eq!(
        out.matches("# TYPE benchrun_run_ttft_seconds gauge")
            .count(),
        1,
        "{out}"
    );
}

#[test]
fn sweeps_have_a_series_per_step_and_only_the_latest_runs_are_shown() {
    let sweep = |name: &str, at: &str| {
        run(
            name,
            serde_json::json!({
                "phase": "Succeeded",
                "completionTime": at,
                "summary": {"requestThroughput": 2.0},
                "steps": [
                    {"index": 0, "concurrency": 1, "summary": {"requestThroughput": 1.0}},
                    {"index": 1, "concurrency": 2, "summary": {"requestThroughput": 2.0}},
                ],
            }),
        )
    };
    let failed = run(
        "broken",
        serde_json::json!({"phase": "Failed", "completionTime": "2026-11-30T12:00:00Z",
                           "summary": {"requestThroughput": 5.0}}),
    );
    let running = run("busy", serde_json::json!({"phase": "Running"}));
    let out = text(
        vec![
            sweep("old", "2026-11-29T10:00:00Z"),
            sweep("new", "2026-11-30T10:00:00Z"),
            failed,
            running,
        ],
        2,
    );
    assert!(
        out.contains(
            r#"benchrun_run_request_throughput{namespace="team-a",run="new",step="1"} 2.0"#
        ),
        "{out}"
    );
    assert!(
        out.contains(
            r#"benchrun_run_request_throughput{namespace="team-a",run="new",step="0"} 1.0"#
        ),
        "{out}"
    );
    // The two latest finished runs: "broken" and "new"; "old" is past the cap.
    assert!(!out.contains(r#"run="old""#), "{out}");
    assert!(out.contains(r#"benchrun_run_completion_timestamp_seconds{namespace="team-a",run="broken",phase="Failed"}"#), "{out}");
    // A run that failed has its end, not figures; one still running nothing.
    assert!(
        !out.contains(r#"benchrun_run_request_throughput{namespace="team-a",run="broken""#),
        "{out}"
    );
    assert!(!out.contains(r#"run="busy""#), "{out}");
}
