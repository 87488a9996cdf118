use super::*;
use crate::api::{StepResult, Summary};
use crate::results::ResultsDocument;

fn doc(name: &str, steps: &[Summary]) -> (String, ResultsDocument) {
    let mut d: ResultsDocument =
        serde_json::from_str(include_str!("../testdata/summary.json")).unwrap();
    d.run.name = name.into();
    d.steps = steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepResult {
            index: i as i32,
            trial: None,
            start_temperature_c: None,
            concurrency: Some(8 << i),
            request_rate: None,
            summary: s.clone(),
            slo_met: None,
            slo_missed: Vec::new(),
        })
        .collect();
    (format!("demo/{name}"), d)
}

fn summary(ttft: f64, throughput: f64, per_joule: Option<f64>) -> Summary {
    Summary {
        ttft_p50_ms: Some(ttft),
        request_throughput: Some(throughput),
        output_tokens_per_joule: per_joule,
        ..Default::default()
    }
}

fn cell<'a>(c: &'a Comparison, step: usize, metric: &str, run: usize) -> &'a Cell {
    let row = c.steps[step]
        .rows
        .iter()
        .find(|r| r.metric == metric)
        .unwrap_or_else(|| panic!("no {metric}"));
    &row.cells[run]
}

#[test]
fn each_figure_is_judged_by_its_direction_and_the_tolerance() {
    let base = doc("base", &[summary(100.0, 10.0, Some(2.0))]);
    let slower = doc("slower", &[summary(110.0, 9.0, Some(2.08))]);
    let close = doc("close", &[summary(104.0, 10.4, Some(1.95))]);
    let faster = doc("faster", &[summary(90.0, 11.0, None)]);
    let c = compare(&[base, slower, close, faster], 0.05);
    assert_eq!(
        c.runs,
        ["demo/base", "demo/slower", "demo/close", "demo/faster"]
    );
    assert_eq!(cell(&c, 0, "ttftP50Ms", 0).verdict, Verdict::Baseline);
    // Latency: more is worse; throughput and tokens per joule: less is.
    let slower_ttft = cell(&c, 0, "ttftP50Ms", 1);
    assert_eq!(slower_ttft.verdict, Verdict::Worse);
    assert!((slower_ttft.change.unwrap() - 0.10).abs() < 1e-12);
    assert_eq!(cell(&c, 0, "requestThroughput", 1).verdict, Verdict::Worse);
    assert_eq!(
        cell(&c, 0, "outputTokensPerJoule", 1).verdict,
        Verdict::Same
    );
    // Within 5 % either way: the same.
    for m in ["ttftP50Ms", "requestThroughput", "outputTokensPerJoule"] {
        assert_eq!(cell(&c, 0, m, 2).verdict, Verdict::Same, "{m}");
    }
    assert_eq!(cell(&c, 0, "ttftP50Ms", 3).verdict, Verdict::Better);
    assert_eq!(cell(&c, 0, "requestThroughput", 3).verdict, Verdict::Better);
    // A withheld figure is neither better nor worse.
    let withheld = cell(&c, 0, "outputTokensPerJoule", 3);
    assert_eq!((withheld.verdict, withheld.value), (Verdict::Missing, None));
    // Metrics no run has are not rows.
    assert!(c.steps[0].rows.iter().all(|r| r.metric != "goodput"));
    assert!(c.regressed());
    let worse: Vec<_> = c.worse().collect();
    assert_eq!(
        worse,
        [
            ("concurrency 8", "requestThroughput", "demo/slower"),
            ("concurrency 8", "ttftP50Ms", "demo/slower"),
        ]
    );
    // A wider tolerance forgives the 10 %.
    let c = compare(
        &[
            doc("base", &[summary(100.0, 10.0, None)]),
            doc("slower", &[summary(110.0, 9.0, None)]),
        ],
        0.15,
    );
    assert!(!c.regressed());
}

#[test]
fn a_baseline_of_zero_is_compared_without_a_ratio() {
    let mut zero = summary(1.0, 1.0, None);
    zero.error_rate = Some(0.0);
    let mut some = zero.clone();
    some.error_rate = Some(0.01);
    let c = compare(
        &[
            doc("a", &[zero.clone()]),
            doc("b", &[some]),
            doc("c", &[zero]),
        ],
        0.05,
    );
    let errors = cell(&c, 0, "errorRate", 1);
    assert_eq!((errors.verdict, errors.change), (Verdict::Worse, None));
    assert_eq!(cell(&c, 0, "errorRate", 2).verdict, Verdict::Same);
}

#[test]
fn sweeps_are_compared_step_by_step_and_extra_steps_are_noted() {
    let s = |t: f64| summary(t, 10.0, None);
    let c = compare(
        &[
            doc("a", &[s(10.0), s(20.0)]),
            doc("b", &[s(10.0), s(30.0), s(40.0)]),
        ],
        0.05,
    );
    assert_eq!(c.steps.len(), 2);
    assert_eq!(c.steps[1].step, "concurrency 16");
    assert_eq!(cell(&c, 0, "ttftP50Ms", 1).verdict, Verdict::Same);
    assert_eq!(cell(&c, 1, "ttftP50Ms", 1).verdict, Verdict::Worse);
    assert!(c.notes[0].contains("demo/b has 3 steps"), "{:?}", c.notes);
    // A run without a sweep is compared by its summary.
    let (name, mut plain) = doc("plain", &[]);
    plain.summary = s(12.0);
    let c = compare(&[doc("a", &[s(10.0)]), (name, plain)], 0.05);
    assert_eq!(c.steps[0].step, "concurrency 8");
    assert_eq!(cell(&c, 0, "ttftP50Ms", 1).verdict, Verdict::Worse);
}

#[test]
fn the_renderings_show_the_changes_and_say_how_they_were_judged() {
    let c = compare(
        &[
            doc("base", &[summary(100.0, 10.0, Some(2.0))]),
            doc("slower", &[summary(110.0, 10.0, None)]),
        ],
        0.05,
    );
    let t = table(&c);
    assert!(
        t.contains("baseline demo/base; tolerance 5.0%; threshold"),
        "{t}"
    );
    assert!(t.contains("ttftP50Ms ↓"), "{t}");
    assert!(t.contains("110.000 (+10.0% worse)"), "{t}");
    assert!(t.contains("- (missing)"), "{t}");
    let m = markdown(&c);
    assert!(m.contains("| metric | demo/base | demo/slower |"), "{m}");
    assert!(m.contains("**110.000 (+10.0% worse)**"), "{m}");
    let csv = csv(&c);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,metric,run,value,change,verdict,p");
    assert!(
        lines.contains(&"concurrency 8,ttftP50Ms,demo/slower,110,0.1,worse,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 1 + 3 * 2, "three metrics, two runs");
    let json: serde_json::Value = serde_json::to_value(&c).unwrap();
    assert_eq!(json["steps"][0]["rows"][0]["cells"][1]["verdict"], "same");
    assert_eq!(json["tolerance"], 0.05);
}

#[test]
fn the_steps_of_one_sweep_are_compared_with_its_first() {
    let (name, d) = doc(
        "sweep",
        &[summary(10.0, 5.0, Some(1.0)), summary(30.0, 9.0, Some(1.5))],
    );
    let c = compare_steps(&name, &d, 0.05);
    assert_eq!(
        c.runs,
        ["demo/sweep concurrency 8", "demo/sweep concurrency 16"]
    );
    assert_eq!(c.steps.len(), 1);
    assert_eq!(c.steps[0].step, "steps of demo/sweep");
    // More load: a longer first token, more throughput and tokens per joule.
    assert_eq!(cell(&c, 0, "ttftP50Ms", 1).verdict, Verdict::Worse);
    assert_eq!(cell(&c, 0, "requestThroughput", 1).verdict, Verdict::Better);
    assert_eq!(
        cell(&c, 0, "outputTokensPerJoule", 1).verdict,
        Verdict::Better
    );
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    let mut cancelled = d.clone();
    cancelled.phase = crate::api::Phase::Cancelled;
    let c = compare_steps(&name, &cancelled, 0.05);
    assert_eq!(c.notes.len(), 1, "said once: {:?}", c.notes);
}
