use super::*;

fn vllm_page(k: f64) -> String {
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{model_name=\"m\"}} {running}\n\
         # TYPE vllm:generation_tokens_total counter\n\
         vllm:generation_tokens_total{{model_name=\"m\"}} {tokens}\n\
         # TYPE vllm:time_to_first_token_seconds histogram\n\
         vllm:time_to_first_token_seconds_bucket{{le=\"0.1\",model_name=\"m\"}} {b1}\n\
         vllm:time_to_first_token_seconds_bucket{{le=\"0.2\", model_name=\"m\"}} {b2}\n\
         vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\",model_name=\"m\"}} {b2}\n\
         vllm:time_to_first_token_seconds_count{{model_name=\"m\"}} {b2}\n\
         vllm:time_to_first_token_seconds_sum{{model_name=\"m\"}} {sum}\n",
        running = 4.0 + k,
        tokens = 1000.0 + 500.0 * k,
        b1 = 10.0 + 10.0 * k,
        b2 = 20.0 + 20.0 * k,
        sum = 3.0 + 2.0 * k,
    )
}

#[test]
fn gauges_counters_and_histograms_over_a_phase() {
    let mut m = ServerMetrics::new(Filter::default());
    for k in 0..3 {
        let r = m.ingest(
            "http://s:8000/metrics",
            f64::from(k) * 2.0,
            vllm_page(f64::from(k)).as_bytes(),
            Format::Prometheus,
        );
        assert_eq!(r.skipped, 0);
    }
    let res = m.results();
    let names: Vec<_> = res.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vllm:num_requests_running",
            "vllm:generation_tokens_total",
            "vllm:time_to_first_token_seconds"
        ]
    );

    let running = &res[0];
    assert_eq!(running.display, "vLLM Num Requests Running");
    assert_eq!(
        running.series[0]
            .labels
            .get("model_name")
            .map(String::as_str),
        Some("m")
    );
    let s = running.series[0].stats.as_ref().unwrap();
    assert_eq!((s.min, s.max, s.mean), (4.0, 6.0, 5.0));

    let tokens = &res[1].series[0];
    assert_eq!((tokens.total, tokens.rate), (Some(1000.0), Some(250.0)));
    assert_eq!(res[1].unit, "tokens");

    let ttft = &res[2];
    assert_eq!(
        ttft.series.len(),
        1,
        "buckets, sum and count share one series"
    );
    assert_eq!(ttft.unit, "seconds");
    let h = ttft.series[0].histogram.as_ref().unwrap();
    assert_eq!((h.count, h.sum), (40.0, 4.0));
    assert_eq!(h.mean, Some(0.1));
    assert_eq!(
        h.buckets,
        vec![(0.1, 20.0), (0.2, 40.0), (f64::INFINITY, 40.0)]
    );
    // Rank 20 of 40 is the top of the first bucket.
    assert_eq!(h.p50, Some(0.1));
    assert!((h.p90.unwrap() - 0.18).abs() < 1e-12);
}

#[test]
fn include_and_exclude_patterns() {
    let f = Filter::new(&["vllm:.*".into()], &[".*_seconds".into()]).unwrap();
    let mut m = ServerMetrics::new(f);
    m.ingest("e", 0.0, vllm_page(0.0).as_bytes(), Format::Prometheus);
    let names: Vec<_> = m.results().into_iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        ["vllm:num_requests_running", "vllm:generation_tokens_total"]
    );
    assert!(Filter::new(&["(".into()], &[]).is_err());
}

#[test]
fn summaries_and_repeated_series() {
    let page = "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 0.2\nrpc{quantile=\"0.9\"} 0.7\nrpc_sum 10\nrpc_count 50\nrpc_count 50\n\
                # TYPE g gauge\ng 1\ng 99\n";
    let mut m = ServerMetrics::new(Filter::default());
    m.ingest("e", 0.0, page.as_bytes(), Format::Prometheus);
    m.ingest(
        "e",
        1.0,
        page.replace("rpc_count 50", "rpc_count 60").as_bytes(),
        Format::Prometheus,
    );
    let res = m.results();
    let rpc = &res[0].series[0];
    assert_eq!(rpc.quantiles, vec![(0.5, 0.2), (0.9, 0.7)]);
    assert_eq!(rpc.total, Some(10.0));
    let g = res[1].series[0].stats.as_ref().unwrap();
    assert_eq!(
        (g.count, g.max),
        (2, 1.0),
        "the repeat within a scrape is dropped"
    );
}

#[test]
fn histogram_quantile_edges() {
    assert_eq!(histogram_quantile(0.5, &[]), None);
    assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    assert_eq!(
        histogram_quantile(0.99, &[(1.0, 1.0), (f64::INFINITY, 10.0)]),
        Some(1.0)
    );
    assert_eq!(
        histogram_quantile(0.5, &[(2.0, 10.0), (f64::INFINITY, 10.0)]),
        Some(1.0)
    );
}

#[test]
fn infinite_bucket_bounds_survive_json() {
    let h = HistogramResult {
        count: 3.0,
        sum: 1.5,
        mean: Some(0.5),
        buckets: vec![(0.1, 1.0), (f64::INFINITY, 3.0)],
        ..Default::default()
    };
    let json = serde_json::to_string(&h).unwrap();
    assert!(json.contains(r#"["+Inf",3.0]"#), "{json}");
    let back: HistogramResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
    assert!(
        serde_json::from_str::<HistogramResult>(r#"{"count":1,"sum":1,"buckets":[["x",1]]}"#)
            .is_err()
    );
}

#[test]
fn series_past_the_step_budget_or_with_huge_labels_are_refused_and_counted() {
    let mut m = ServerMetrics::new(Filter::default());
    let huge = "y".repeat(MAX_SERIES_KEY);
    let page = format!("# TYPE g gauge\ng{{a=\"{huge}\"}} 1\ng{{a=\"short\"}} 2\n");
    m.ingest("http://s/metrics", 0.0, page.as_bytes(), Format::Prometheus);
    assert_eq!(m.over_limit, 1, "the huge identity is refused");
    assert_eq!(m.results()[0].series.len(), 1, "the short one is kept");
    // Fill the step's budget over many families; the next new series is refused.
    let mut m = ServerMetrics::new(Filter::default());
    let mut page = String::new();
    for f in 0..(MAX_SERIES / MAX_SERIES_PER_FAMILY + 1) {
        for i in 0..MAX_SERIES_PER_FAMILY {
            page.push_str(&format!("f{f}{{i=\"{i}\"}} 1\n"));
        }
    }
    m.ingest("http://s/metrics", 0.0, page.as_bytes(), Format::Prometheus);
    let kept: usize = m.results().iter().map(|f| f.series.len()).sum();
    assert_eq!(kept, MAX_SERIES);
    assert_eq!(m.over_limit, MAX_SERIES_PER_FAMILY as u64);
}
