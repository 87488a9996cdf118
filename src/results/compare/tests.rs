use super::*;
use crate::api::{Phase, Tolerance};

/// The recorded results document with `summary` as its one step.
fn doc(summary: Summary) -> ResultsDocument {
    let mut d: ResultsDocument =
        serde_json::from_str(include_str!("../../cli/testdata/summary.json")).unwrap();
    d.summary = summary;
    d.steps.clear();
    d
}

fn recorded() -> Summary {
    let d: ResultsDocument =
        serde_json::from_str(include_str!("../../cli/testdata/summary.json")).unwrap();
    d.summary
}

fn tol(metric: SloMetric, max: &str) -> Tolerance {
    Tolerance {
        metric,
        max_regression: max.into(),
    }
}

#[test]
fn a_metric_regresses_only_past_its_own_tolerance_and_in_its_own_direction() {
    let base = Summary {
        ttft_p50_ms: Some(100.0),
        request_throughput: Some(10.0),
        output_tokens_per_joule: Some(2.0),
        itl_p50_ms: Some(10.0),
        ..Default::default()
    };
    let run = Summary {
        ttft_p50_ms: Some(104.0),           // 4 % slower: within 5 %
        request_throughput: Some(9.0),      // 10 % fewer: past 5 %
        output_tokens_per_joule: Some(1.0), // half: within the 60 % allowed
        itl_p50_ms: Some(5.0),              // twice as fast: better, never a regression
        ..Default::default()
    };
    let tolerances = [
        tol(SloMetric::TtftP50Ms, "5%"),
        tol(SloMetric::RequestThroughput, "5%"),
        tol(SloMetric::OutputTokensPerJoule, "60%"),
        tol(SloMetric::ItlP50Ms, "0%"),
    ];
    let g = gate("run ns/base", &doc(base.clone()), &doc(run), &tolerances);
    assert_eq!(g.regressed, ["requestThroughput -10.0% (max 5%)"]);
    assert!(g.incomplete.is_empty(), "{:?}", g.incomplete);
    let verdicts: Vec<(&str, Verdict)> = g
        .rows
        .iter()
        .map(|r| (r.metric.as_str(), r.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("ttftP50Ms", Verdict::Same),
            ("requestThroughput", Verdict::Worse),
            ("outputTokensPerJoule", Verdict::Same),
            ("itlP50Ms", Verdict::Better),
        ]
    );
    let (status, reason, message) = g.condition();
    assert_eq!((status, reason), (Some(true), "Regressed"));
    assert!(message.contains("requestThroughput -10.0%"), "{message}");
    assert!(
        message.contains("run ns/base") && message.contains("threshold"),
        "{message}"
    );

    // Latency the other way: 6 % slower is past 5 %; the same run passes at 10 %.
    let slower = Summary {
        ttft_p50_ms: Some(106.0),
        ..base.clone()
    };
    let g = gate(
        "b",
        &doc(base.clone()),
        &doc(slower.clone()),
        &[tol(SloMetric::TtftP50Ms, "5%")],
    );
    assert_eq!(g.regressed, ["ttftP50Ms +6.0% (max 5%)"]);
    let g = gate(
        "b",
        &doc(base),
        &doc(slower),
        &[tol(SloMetric::TtftP50Ms, "10%")],
    );
    let (status, reason, message) = g.condition();
    assert_eq!(
        (status, reason),
        (Some(false), "WithinTolerance"),
        "{message}"
    );
    assert!(message.starts_with("1 figures within"), "{message}");
}

#[test]
fn without_tolerances_every_metric_the_baseline_has_gates_at_five_percent() {
    let base = recorded();
    let g = gate("b", &doc(base.clone()), &doc(base.clone()), &[]);
    let gated: Vec<&str> = g.rows.iter().map(|r| r.metric.as_str()).collect();
    // Every figure of the recorded summary, and no other (no goodput
    // without objectives, no first answer token without reasoning).
    assert_eq!(
        gated,
        [
            "requestThroughput",
            "outputTokenThroughput",
            "ttftP50Ms",
            "ttftP99Ms",
            "itlP50Ms",
            "itlP99Ms",
            "latencyP99Ms",
            "errorRate",
            "outputTokensPerJoule",
            "energyPerOutputTokenJ",
            "totalGpuPowerW",
        ]
    );
    assert!(
        g.rows
            .iter()
            .all(|r| r.max_regression == DEFAULT_MAX_REGRESSION)
    );
    assert_eq!(g.condition().0, Some(false));

    // Errors where the baseline had none: worse, whatever the tolerance.
    let erring = Summary {
        error_rate: Some(0.01),
        ..base.clone()
    };
    let g = gate("b", &doc(base.clone()), &doc(erring), &[]);
    assert_eq!(g.regressed, ["errorRate worse (max 5%)"]);

    // Energy withheld in this run (coverage incomplete): the gate cannot
    // pass it, and does not call it a regression either.
    let withheld = Summary {
        output_tokens_per_joule: None,
        energy_per_output_token_j: None,
        total_gpu_power_w: None,
        ..base.clone()
    };
    let g = gate("b", &doc(base), &doc(withheld), &[]);
    assert!(g.regressed.is_empty());
    let (status, reason, message) = g.condition();
    assert_eq!((status, reason), (None, "Incomplete"));
    assert!(
        message.contains("outputTokensPerJoule: this run has no figure"),
        "{message}"
    );
}

#[test]
fn a_gate_that_cannot_compare_like_with_like_is_incomplete() {
    let base = recorded();
    // A metric asked for by name that the baseline lacks.
    let g = gate(
        "b",
        &doc(base.clone()),
        &doc(base.clone()),
        &[tol(SloMetric::Goodput, "5%")],
    );
    assert_eq!(g.incomplete, ["goodput: the baseline has no figure"]);
    assert_eq!(g.condition().0, None);

    // A baseline that did not succeed.
    let mut failed = doc(base.clone());
    failed.phase = Phase::Failed;
    failed.reason = "Timeout".into();
    let g = gate("b", &failed, &doc(base.clone()), &[]);
    assert_eq!(
        g.incomplete,
        ["the baseline ended Failed (Timeout), not Succeeded"]
    );

    // Sweeps of other loads: steps are not compared across loads.
    let sweep = |c: [i32; 2]| {
        let mut d = doc(base.clone());
        d.steps = c
            .iter()
            .enumerate()
            .map(|(i, &c)| StepResult {
                index: i as i32,
                trial: None,
                start_temperature_c: None,
                concurrency: Some(c),
                request_rate: None,
                summary: base.clone(),
                slo_met: None,
                slo_missed: Vec::new(),
            })
            .collect();
        d
    };
    let g = gate(
        "b",
        &sweep([4, 8]),
        &sweep([4, 16]),
        &[tol(SloMetric::TtftP50Ms, "5%")],
    );
    assert_eq!(
        g.incomplete,
        ["step 1: the baseline ran concurrency 8 and this run concurrency 16"]
    );
    assert_eq!(g.rows.len(), 1, "step 0 is still compared");
    // A sweep's regressions name their step.
    let mut slower = sweep([4, 8]);
    slower.steps[1].summary.ttft_p50_ms = Some(base.ttft_p50_ms.unwrap() * 2.0);
    let g = gate(
        "b",
        &sweep([4, 8]),
        &slower,
        &[tol(SloMetric::TtftP50Ms, "5%")],
    );
    assert_eq!(g.regressed, ["concurrency 8: ttftP50Ms +100.0% (max 5%)"]);
}

#[test]
fn a_gate_survives_the_results_document() {
    let base = recorded();
    let mut d = doc(base.clone());
    d.baseline = Some(gate("run ns/b", &doc(base.clone()), &doc(base), &[]));
    let back: ResultsDocument = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(back.baseline, d.baseline);
}

/// A document of three trials of one step, with TTFT p50 `ttft` in each.
fn trials_of(ttft: [f64; 3]) -> ResultsDocument {
    let steps: Vec<StepResult> = ttft
        .iter()
        .enumerate()
        .map(|(k, &t)| StepResult {
            index: k as i32,
            trial: Some(k as i32),
            concurrency: Some(8),
            summary: Summary {
                ttft_p50_ms: Some(t),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    let mut d = doc(Summary::default());
    d.trials = crate::results::trials::trials(&steps, 1).0;
    d.steps = steps;
    d
}

#[test]
fn with_trials_on_both_sides_only_a_significant_change_counts() {
    let tolerances = [tol(SloMetric::TtftP50Ms, "5%")];
    // 20 % slower and tightly spread: significant, and past 5 %.
    let g = gate(
        "b",
        &trials_of([100.0, 101.0, 99.0]),
        &trials_of([120.0, 121.0, 119.0]),
        &tolerances,
    );
    assert_eq!(g.regressed.len(), 1, "{g:?}");
    assert!(
        g.regressed[0].starts_with("ttftP50Ms +20.0% (max 5%, p="),
        "{g:?}"
    );
    assert!(g.rows[0].p.unwrap() < 0.001);
    assert!(g.test.starts_with("Welch's t-test"), "{}", g.test);
    // 20 % slower on average, but the trials spread far wider: not shown
    // to be more than chance, so not a regression.
    let g = gate(
        "b",
        &trials_of([80.0, 100.0, 120.0]),
        &trials_of([90.0, 120.0, 150.0]),
        &tolerances,
    );
    assert!(g.regressed.is_empty(), "{g:?}");
    assert_eq!(g.rows[0].verdict, Verdict::Same);
    assert!(g.rows[0].p.unwrap() > 0.05);
    assert_eq!(g.condition().0, Some(false));
    // Significant but within the tolerance: the same.
    let g = gate(
        "b",
        &trials_of([100.0, 100.1, 99.9]),
        &trials_of([102.0, 102.1, 101.9]),
        &tolerances,
    );
    assert_eq!(g.rows[0].verdict, Verdict::Same);
    // Trials on one side only: the threshold, and it says no test was possible.
    let g = gate(
        "b",
        &doc(Summary {
            ttft_p50_ms: Some(100.0),
            ..Default::default()
        }),
        &trials_of([120.0, 121.0, 119.0]),
        &tolerances,
    );
    assert!(g.test.contains("only one side has trials"), "{}", g.test);
    assert_eq!(g.regressed.len(), 1);
}

/// Symptom of issue 33: a gate that judged no figure (every one withheld,
/// or none measured on the baseline's side) said `Regressed=False`. Now it
/// is `Unknown` (`Incomplete`), and `compare --fail-on-regression` has no
/// cell judged to pass on.
#[test]
fn a_gate_that_judged_no_figure_is_unknown_not_passed() {
    let withheld = doc(Summary::default());
    let g = gate("b", &withheld, &doc(recorded()), &[]);
    let (regressed, reason, message) = g.condition();
    assert_eq!((regressed, reason), (None, "Incomplete"), "{message}");
    assert!(
        message.contains("no gated figure could be judged"),
        "{message}"
    );
    // Judged against a baseline that has them: a pass.
    let g = gate("b", &doc(recorded()), &doc(recorded()), &[]);
    assert_eq!(g.condition().0, Some(false));
    let c = compare(
        &[("a".into(), withheld.clone()), ("b".into(), withheld)],
        0.05,
    );
    assert!(!c.judged_any() && !c.regressed());
    let c = compare(
        &[("a".into(), doc(recorded())), ("b".into(), doc(recorded()))],
        0.05,
    );
    assert!(c.judged_any());
}
