use super::*;
use crate::loadgen::request::ErrorKind;
use crate::stats::{Stats, Summary as Dist};

fn client() -> ClientStep {
    let mut ttft = Stats::default();
    [0.020, 0.021, 0.022, 0.030]
        .iter()
        .for_each(|v| ttft.add(*v));
    ClientStep {
        concurrency: Some(8),
        requests: 100,
        successes: 98,
        errors: BTreeMap::from([(ErrorKind::Timeout, 2)]),
        duration_s: 10.0,
        input_tokens: 9_800,
        output_tokens: 6_272,
        requests_per_s: 9.8,
        output_tokens_per_s: 627.2,
        total_tokens_per_s: 1607.2,
        ttft_s: ttft.summary(),
        itl_s: Dist {
            count: 98,
            p50: 0.004,
            p99: 0.0051,
            ..Default::default()
        },
        latency_s: Dist {
            count: 98,
            p99: 0.31,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn a_step_summarizes_into_the_status_fields() {
    let d = StepDetail {
        index: 0,
        client: Some(client()),
        efficiency: Some(Efficiency {
            gpu_count: 1,
            gpus_with_energy: 1,
            total_gpu_power_w: 350.0,
            total_gpu_energy_j: 3500.0,
            energy_source: "counter".into(),
            output_tokens_per_joule: Some(6272.0 / 3500.0),
            energy_per_output_token_j: Some(3500.0 / 6272.0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let s = d.summary();
    assert_eq!(s.request_throughput, Some(9.8));
    assert_eq!(s.ttft_p50_ms, Some(21.5));
    assert_eq!(s.itl_p99_ms, Some(5.1));
    assert_eq!(s.latency_p99_ms, Some(310.0));
    assert_eq!((s.error_count, s.error_rate), (Some(2), Some(0.02)));
    assert_eq!(s.output_tokens_per_joule, Some(1.792));
    assert_eq!(s.total_gpu_energy_j, Some(3500.0));
    let t = d.client_totals().unwrap();
    assert_eq!(
        (t.requests, t.output_tokens, t.concurrency),
        (98, 6272, Some(8))
    );
    // Energy that does not cover the whole step stays out of the status.
    let mut partial = d.clone();
    partial.coverage = Some(Coverage {
        complete: false,
        ..Default::default()
    });
    let s = partial.summary();
    assert_eq!(
        (s.output_tokens_per_joule, s.total_gpu_energy_j),
        (None, None)
    );
    assert_eq!(s.total_gpu_power_w, None);
    assert_eq!(s.request_throughput, Some(9.8));
}

/// A reasoning model's step shows its time to the first answer token and its
/// reasoning tokens; a step without reasoning shows neither (its first token
/// is its first answer token).
#[test]
fn a_reasoning_step_shows_its_first_answer_token_and_reasoning_tokens() {
    let plain = StepDetail {
        client: Some(client()),
        ..Default::default()
    };
    let s = plain.summary();
    assert_eq!(
        (s.ttfat_p50_ms, s.ttfat_p99_ms, s.reasoning_tokens),
        (None, None, None)
    );
    let mut c = client();
    c.reasoning_tokens = 4000;
    c.time_to_first_answer_token_s = crate::stats::Summary {
        count: 98,
        p50: 0.4125,
        p99: 0.9,
        ..Default::default()
    };
    let reasoning = StepDetail {
        client: Some(c),
        ..Default::default()
    };
    let s = reasoning.summary();
    assert_eq!(s.ttfat_p50_ms, Some(412.5));
    assert_eq!(s.ttfat_p99_ms, Some(900.0));
    assert_eq!(s.reasoning_tokens, Some(4000));
    assert_eq!(
        s.ttft_p50_ms,
        Some(21.5),
        "the first token, reasoning or not"
    );
}

#[test]
fn files_hold_the_csvs_with_one_row_per_metric_and_quoted_labels() {
    use crate::telemetry::server::{FamilyResult, SeriesResult};
    let doc = ResultsDocument {
        schema_version: RESULTS_SCHEMA_VERSION,
        run: RunRef {
            namespace: "ns".into(),
            name: "r".into(),
            uid: "u".into(),
        },
        phase: Phase::Succeeded,
        reason: "Completed".into(),
        message: String::new(),
        start_time: None,
        completion_time: None,
        summary: Summary::default(),
        routing: None,
        baseline: None,
        steps: Vec::new(),
        trials: Vec::new(),
        details: vec![StepDetail {
            index: 0,
            client: Some(client()),
            server: vec![FamilyResult {
                name: "vllm:num_requests_running".into(),
                display: "Requests Running".into(),
                kind: crate::scrape::Kind::Gauge,
                unit: "requests".into(),
                help: None,
                series: vec![SeriesResult {
                    endpoint: "http://a:8000/metrics".into(),
                    labels: BTreeMap::from([("model_name".into(), "a,\"b\"".into())]),
                    stats: Some(Dist {
                        count: 3,
                        mean: 2.0,
                        ..Default::default()
                    }),
                    total: None,
                    rate: None,
                    histogram: None,
                    quantiles: Vec::new(),
                }],
            }],
            ..Default::default()
        }],
        endpoints: Vec::new(),
        notes: Vec::new(),
    };
    let files = doc.files().unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["client_metrics.csv", "server_metrics.csv", "summary.json"]
    );
    let client = &files["client_metrics.csv"];
    assert!(client.starts_with("step,metric,unit,count,avg,min,max,std,p1,"));
    assert_eq!(client.lines().count(), 1 + 6 + 10);
    let ttft = client
        .lines()
        .find(|l| l.starts_with("0,time_to_first_token,ms,4,"))
        .unwrap();
    assert!(ttft.contains(",23.25,"), "mean in ms: {ttft}");
    let server = &files["server_metrics.csv"];
    let row = server.lines().nth(1).unwrap();
    assert!(row.contains(r#""model_name=a,""b""""#), "{row}");
    let back: ResultsDocument = serde_json::from_str(&files["summary.json"]).unwrap();
    assert_eq!(back, doc, "summary.json reads back");
}
