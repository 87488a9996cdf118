//! The CSV files of the results ConfigMap: one row per step × metric for the
//! client, per step × endpoint × GPU × metric for the GPUs, per step × endpoint
//! × series for the servers. Statistics columns are the same in all three:
//! `count,avg,min,max,std,p1,...,p99`; counters fill `total` and `rate`.

use crate::stats::Summary;

use super::StepDetail;

const STATS: [&str; 14] = [
    "count", "avg", "min", "max", "std", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95",
    "p99",
];

fn stats_cells(s: Option<&Summary>, scale: f64) -> Vec<String> {
    let Some(s) = s else {
        return vec![String::new(); STATS.len()];
    };
    let v = |x: f64| format!("{}", x * scale);
    vec![
        s.count.to_string(),
        v(s.mean),
        v(s.min),
        v(s.max),
        v(s.std),
        v(s.p1),
        v(s.p5),
        v(s.p10),
        v(s.p25),
        v(s.p50),
        v(s.p75),
        v(s.p90),
        v(s.p95),
        v(s.p99),
    ]
}

pub(crate) fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// A CSV document: `header`, then `rows`, quoted where needed.
pub(crate) fn write(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(header);
    for r in rows {
        let _ = w.write_record(&r);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn header<'a>(lead: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    lead.iter()
        .chain(STATS.iter())
        .chain(tail)
        .copied()
        .collect()
}

/// `client_metrics.csv`: latency distributions in ms, then the step's totals.
pub fn client(details: &[StepDetail]) -> String {
    let mut rows = Vec::new();
    for d in details {
        // A step some load generators' results are missing from has no
        // client rows: partial totals and percentiles would read as whole
        // (the JSON keeps them beside `clientCoverage`).
        let Some(c) = d.client.as_ref().filter(|_| d.client_complete()) else {
            continue;
        };
        let step = d.index.to_string();
        // A reasoning model's answer starts after its reasoning.
        let answer = (c.reasoning_tokens > 0).then_some((
            "time_to_first_answer_token",
            "ms",
            &c.time_to_first_answer_token_s,
            1e3,
        ));
        let dists = [
            ("time_to_first_token", "ms", &c.ttft_s, 1e3),
            ("time_to_second_token", "ms", &c.time_to_second_token_s, 1e3),
            ("inter_token_latency", "ms", &c.itl_s, 1e3),
            ("inter_token_gap", "ms", &c.inter_token_gap_s, 1e3),
            ("request_latency", "ms", &c.latency_s, 1e3),
            (
                "output_tokens_per_s_per_user",
                "tokens/s",
                &c.output_tokens_per_s_per_user,
                1.0,
            ),
        ];
        for (name, unit, s, scale) in dists.into_iter().chain(answer) {
            let mut r = vec![step.clone(), name.into(), unit.into()];
            r.extend(stats_cells(Some(s), scale));
            r.push(String::new());
            rows.push(r);
        }
        let errors: u64 = c.errors.values().sum();
        let totals = [
            ("requests", "requests", c.requests as f64),
            ("successes", "requests", c.successes as f64),
            ("errors", "requests", errors as f64),
            ("input_tokens", "tokens", c.input_tokens as f64),
            ("output_tokens", "tokens", c.output_tokens as f64),
            ("reasoning_tokens", "tokens", c.reasoning_tokens as f64),
            ("duration", "s", c.duration_s),
            ("request_throughput", "requests/s", c.requests_per_s),
            ("output_token_throughput", "tokens/s", c.output_tokens_per_s),
            ("total_token_throughput", "tokens/s", c.total_tokens_per_s),
        ];
        let goodput = c.goodput_per_s.map(|g| ("goodput", "requests/s", g));
        let totals = totals.into_iter().chain(goodput);
        for (name, unit, v) in totals {
            let mut r = vec![step.clone(), name.into(), unit.into()];
            r.extend(stats_cells(None, 1.0));
            r.push(v.to_string());
            rows.push(r);
        }
    }
    write(&header(&["step", "metric", "unit"], &["value"]), rows)
}

/// `gpu_telemetry.csv`: one row per step, endpoint, GPU and metric.
pub fn gpus(details: &[StepDetail]) -> String {
    let mut rows = Vec::new();
    for d in details {
        for g in d.shown_gpus().iter() {
            let id = &g.identity;
            let pods: Vec<String> = g.pods.iter().map(ToString::to_string).collect();
            for m in &g.metrics {
                let mut r = vec![
                    d.index.to_string(),
                    g.endpoint.clone(),
                    id.index.clone().unwrap_or_default(),
                    id.uuid.clone().unwrap_or_default(),
                    id.model.clone().unwrap_or_default(),
                    id.hostname.clone().unwrap_or_default(),
                    pods.join(" "),
                    m.field.clone(),
                    m.display.clone(),
                    m.unit.clone(),
                ];
                r.extend(stats_cells(m.stats.as_ref(), 1.0));
                r.push(opt(m.delta));
                r.push(opt(m.rate));
                rows.push(r);
            }
        }
    }
    let lead = [
        "step", "endpoint", "gpu", "uuid", "model", "hostname", "pods", "metric", "display", "unit",
    ];
    write(&header(&lead, &["total", "rate"]), rows)
}

/// `server_metrics.csv`: one row per step, endpoint and series.
pub fn server(details: &[StepDetail]) -> String {
    let mut rows = Vec::new();
    for d in details {
        for f in &d.server {
            for s in &f.series {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let mut r = vec![
                    d.index.to_string(),
                    s.endpoint.clone(),
                    f.name.clone(),
                    labels.join(","),
                    f.kind.as_str().into(),
                    f.unit.clone(),
                ];
                r.extend(stats_cells(s.stats.as_ref(), 1.0));
                let h = s.histogram.as_ref();
                let (total, rate) = match h {
                    Some(h) => (Some(h.count), None),
                    None => (s.total, s.rate),
                };
                r.push(opt(total));
                r.push(opt(rate));
                r.push(opt(h.and_then(|h| h.mean)));
                r.push(opt(h.and_then(|h| h.p50)));
                r.push(opt(h.and_then(|h| h.p90)));
                r.push(opt(h.and_then(|h| h.p99)));
                rows.push(r);
            }
        }
    }
    let lead = ["step", "endpoint", "metric", "labels", "type", "unit"];
    let tail = [
        "total",
        "rate",
        "histogram_mean",
        "histogram_p50",
        "histogram_p90",
        "histogram_p99",
    ];
    write(&header(&lead, &tail), rows)
}
