//! The controller's `/metrics` scraped by a real Prometheus server (built
//! from its published module, e2e/tools/build.sh): after two runs end, every
//! query of the shipped Grafana dashboard returns data through Prometheus's
//! HTTP API, each run figure it shows equals the run's status, and every
//! metric the dashboard names is one the controller exports.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client};
use kube::api::PostParams;
use serde_json::Value;

use crate::common::{
    LONG, OPERATOR, bench_sim_run, controller_metrics_url, deploy, get_json, get_text, gpu_sim,
    phase, wait_ended,
};

/// A Prometheus server scraping `target` (host:port) every second with the
/// bearer `token`, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn prometheus(target: &str, token: &str) -> Prometheus {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("benchrun-e2e-prometheus-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: benchrun\n    authorization: {{credentials_file: \"{}\"}}\n    static_configs: [{{targets: [\"{target}\"]}}]\n",
            token_file.display()
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus on PATH (scripts/e2e.sh puts e2e/tools' builds there)");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    }
}

/// The result vector of instant query `expr`, or `None` when Prometheus
/// is not answering yet.
async fn query(p: &Prometheus, expr: &str) -> Option<Vec<Value>> {
    let mut url = format!("{}/api/v1/query?query=", p.url);
    url.extend(form_urlencoded::byte_serialize(expr.as_bytes()));
    let answer = tokio::time::timeout(Duration::from_secs(5), get_text(&url))
        .await
        .ok()?;
    let v: Value = serde_json::from_str(&answer).ok()?;
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().cloned()
}

/// Waits (up to LONG) until `expr` returns at least one series.
async fn until_data(p: &Prometheus, expr: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if let Some(r) = query(p, expr).await.filter(|r| !r.is_empty()) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no data for {expr} from Prometheus"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn value(series: &Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

/// Every PromQL expression of the dashboard, with its variables set.
fn dashboard_queries(namespace: &str, run: &str) -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/benchrun/dashboards/benchrun.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"].as_array().unwrap().iter().map(move |t| {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$namespace", namespace)
                    .replace("$run", run);
                (title.clone(), expr)
            })
        })
        .collect()
}

#[tokio::test]
async fn every_dashboard_query_answers_through_prometheus_with_the_run_s_figures() {
    let _steady = OPERATOR.read().await;
    let client = client().await;
    let ns = TestNamespace::create(&client, "prom").await.unwrap();
    let metrics_url = controller_metrics_url(&client).await;
    let target = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let token = crate::common::metrics_token(&client, crate::common::METRICS_READER).await;
    let prom = prometheus(&target, &token);
    deploy(&ns, &gpu_sim("llm", "5ms", "1ms", None))
        .await
        .unwrap();
    let load = "\n    concurrency: 2\n    duration: 15s\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 16}}}";
    let runs = ns.api::<BenchmarkRun>();
    runs.create(
        &PostParams::default(),
        &bench_sim_run("base", "llm", load, ""),
    )
    .await
    .unwrap();
    assert_eq!(
        phase(Some(&wait_ended(&ns, "base").await)).as_deref(),
        Some("Succeeded")
    );
    let gate = "  baseline:\n    runRef: base\n    tolerances:\n    - {metric: outputTokensPerJoule, maxRegression: \"50%\"}\n";
    runs.create(
        &PostParams::default(),
        &bench_sim_run("gated", "llm", load, gate),
    )
    .await
    .unwrap();
    let done = wait_ended(&ns, "gated").await;
    assert_eq!(phase(Some(&done)).as_deref(), Some("Succeeded"));
    let status = done.status.unwrap();
    let summary = status.summary.clone().unwrap();

    // The run's series reach Prometheus.
    let mine = format!(
        "benchrun_run_completion_timestamp_seconds{{namespace=\"{}\", run=\"gated\"}}",
        ns.name
    );
    let ended = until_data(&prom, &mine).await;
    let completed = status.completion_time.unwrap().0.as_millisecond() as f64 / 1e3;
    assert_eq!(value(&ended[0]), completed);

    // Every dashboard query answers; the run figures are the status's.
    let expected: [(&str, Option<f64>); 8] = [
        ("Output tokens/s per step", summary.output_token_throughput),
        ("TTFT p99 per step", summary.ttft_p99_ms.map(|v| v / 1e3)),
        ("ITL p50 per step", summary.itl_p50_ms.map(|v| v / 1e3)),
        ("Requests/s per step", summary.request_throughput),
        (
            "Output tokens per joule over time",
            summary.output_tokens_per_joule,
        ),
        (
            "Energy per output token over time",
            summary.energy_per_output_token_j,
        ),
        ("GPU power per step", summary.total_gpu_power_w),
        ("Runs regressed against their baseline", Some(0.0)),
    ];
    for (title, expr) in dashboard_queries(&ns.name, "gated") {
        let result = until_data(&prom, &expr).await;
        if let Some((_, want)) = expected.iter().find(|(t, _)| *t == title) {
            let want = want.unwrap_or_else(|| panic!("{title}: the status has no figure"));
            let got = value(&result[0]);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{title}: Prometheus {got}, status {want} ({expr})"
            );
        }
    }

    // Every metric the dashboard names is exported by the controller.
    let (status, exported) = crate::common::get_text_as(&metrics_url, Some(&token)).await;
    assert_eq!(status, 200, "{exported}");
    for (title, expr) in dashboard_queries(&ns.name, "gated") {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("benchrun_"))
        {
            let base = name.trim_end_matches("_bucket");
            assert!(
                exported
                    .lines()
                    .any(|l| l.starts_with(&format!("# TYPE {base} "))
                        || l.starts_with(&format!("# TYPE {} ", base.trim_end_matches("_total")))),
                "{title}: the controller does not export {name}"
            );
        }
    }
    // The scrape counters count this run's scrapes of its GPU exporter.
    let ok = get_json(&format!(
        "{}/api/v1/query?query=benchrun_scrapes_total%7Bkind%3D%22gpu%22%2Coutcome%3D%22ok%22%7D",
        prom.url
    ))
    .await;
    assert!(value(&ok["data"]["result"][0]) > 0.0, "{ok}");
    ns.delete().await.unwrap();
}

/// `/metrics` lists every tenant's runs: it answers only a token whose user
/// may get it (the chart's metrics-reader ClusterRole); the probes stay open.
#[tokio::test]
async fn the_controller_s_metrics_answer_only_a_reader_s_token() {
    let client = client().await;
    let url = controller_metrics_url(&client).await;
    let (status, said) = crate::common::get_text_as(&url, None).await;
    assert_eq!(status, 401, "{said}");
    let (status, said) = crate::common::get_text_as(&url, Some("not-a-token")).await;
    assert_eq!(status, 401, "{said}");
    // An account of the cluster's, not bound to the reader role.
    let stranger = crate::common::metrics_token(&client, "e2e-metrics-stranger").await;
    let (status, said) = crate::common::get_text_as(&url, Some(&stranger)).await;
    assert_eq!(status, 403, "{said}");
    let reader = crate::common::metrics_token(&client, crate::common::METRICS_READER).await;
    let (status, page) = crate::common::get_text_as(&url, Some(&reader)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("benchrun_"), "{page}");
    for probe in ["/livez", "/readyz"] {
        let (status, said) =
            crate::common::get_text_as(&url.replace("/metrics", probe), None).await;
        assert!(status == 200 || status == 503, "{probe}: {status} {said}");
        assert_ne!(status, 401, "{probe}");
    }
}
