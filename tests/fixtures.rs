//! Every captured payload in `shared/fixtures/metrics/` through the parser and
//! the telemetry engine, with counts and values checked against the files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use benchrun::scrape::{Catalog, Format, Kind, Parser};
use benchrun::telemetry::{Filter, GpuTelemetry, ServerMetrics};

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("BENCHRUN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/metrics")
        });
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} unreadable ({e}); set BENCHRUN_FIXTURES to the fixtures folder",
            path.display()
        )
    })
}

struct Shape {
    samples: u32,
    skipped: u32,
    families: usize,
    kinds: BTreeMap<&'static str, usize>,
}

fn shape(name: &str) -> Shape {
    let body = fixture(name);
    let mut parser = Parser::new(&body, Format::detect(None, &body));
    let mut catalog = Catalog::default();
    for e in parser.by_ref() {
        catalog.entry(e);
    }
    let report = parser.into_report();
    let mut kinds = BTreeMap::new();
    for f in catalog.families() {
        *kinds.entry(f.kind.as_str()).or_default() += 1;
    }
    Shape {
        samples: report.samples,
        skipped: report.skipped,
        families: catalog.families().len(),
        kinds,
    }
}

#[test]
fn every_fixture_parses_completely() {
    // Sample counts are the files' non-comment lines; family counts their
    // `# TYPE` lines plus undeclared families.
    type Case = (&'static str, u32, usize, &'static [(&'static str, usize)]);
    let cases: &[Case] = &[
        (
            "aiperf-dcgm-gb200-4gpu.txt",
            76,
            19,
            &[("counter", 4), ("gauge", 15)],
        ),
        ("datadog-dcgm-label-remap.txt", 1, 1, &[("gauge", 1)]),
        (
            "datadog-dcgm-t4-edgecases.txt",
            38,
            38,
            &[("counter", 8), ("gauge", 30)],
        ),
        (
            "datadog-nvidia-nim-llama3.1-8b.txt",
            111,
            24,
            &[("counter", 9), ("gauge", 10), ("histogram", 5)],
        ),
        (
            "datadog-sglang-v0.5.10.txt",
            43,
            25,
            &[("counter", 4), ("gauge", 15), ("histogram", 6)],
        ),
        (
            "datadog-triton-tritonserver-8models.txt",
            377,
            32,
            &[("counter", 10), ("gauge", 17), ("summary", 5)],
        ),
        (
            "datadog-vllm-v0-v1-mixed.txt",
            185,
            50,
            &[("counter", 17), ("gauge", 16), ("histogram", 17)],
        ),
    ];
    for (name, samples, families, kinds) in cases {
        let s = shape(name);
        assert_eq!(s.skipped, 0, "{name}");
        assert_eq!(s.samples, *samples, "{name}");
        assert_eq!(s.families, *families, "{name}: {:?}", s.kinds);
        let want: BTreeMap<&str, usize> = kinds.iter().copied().collect();
        assert_eq!(s.kinds, want, "{name}");
    }
}

#[test]
fn gb200_page_gives_four_gpus_with_their_identity_and_values() {
    let body = fixture("aiperf-dcgm-gb200-4gpu.txt");
    let mut t = GpuTelemetry::default();
    t.ingest("http://node:9400/metrics", 0.0, &body, Format::Prometheus);
    assert_eq!(t.gpus.len(), 4);
    let results: Vec<_> = t.gpus.iter().map(|g| g.result()).collect();
    let g0 = &results[0];
    assert_eq!(
        g0.identity.uuid.as_deref(),
        Some("GPU-00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(g0.identity.model.as_deref(), Some("NVIDIA GB200"));
    assert_eq!(g0.identity.pci_bus_id.as_deref(), Some("00000008:06:00.0"));
    assert_eq!(
        g0.identity.hostname.as_deref(),
        Some("sample-gb200-host.example.com")
    );
    assert_eq!(g0.identity.driver_version.as_deref(), Some("580.105.05"));
    let metric = |g: usize, key: &str| {
        results[g]
            .metrics
            .iter()
            .find(|m| m.key == key)
            .and_then(|m| m.stats.clone())
            .map(|s| s.mean)
    };
    assert_eq!(metric(0, "gpu_power_usage"), Some(170.582));
    assert_eq!(metric(3, "gpu_power_usage"), Some(180.378));
    assert_eq!(metric(0, "memory_clock"), Some(3996.0));
    assert_eq!(metric(2, "memory_temperature"), Some(29.0));
    assert_eq!(t.counts.not_dcgm, 0);
    // A single scrape cannot give energy: a counter or an integral needs two.
    assert!(g0.energy.is_none());
}

#[test]
fn pod_labels_map_gpus_to_pods() {
    let body = fixture("datadog-dcgm-label-remap.txt");
    let mut t = GpuTelemetry::default();
    t.ingest("e", 0.0, &body, Format::Prometheus);
    let pods = &t.gpus[0].pods;
    assert_eq!(pods.len(), 1);
    assert_eq!(
        (
            pods[0].namespace.as_str(),
            pods[0].pod.as_str(),
            pods[0].container.as_str()
        ),
        ("foo", "bar", "baz")
    );
}

#[test]
fn t4_edge_cases_keep_every_gpu_apart() {
    let body = fixture("datadog-dcgm-t4-edgecases.txt");
    let mut t = GpuTelemetry::default();
    t.ingest("e", 0.0, &body, Format::Prometheus);
    let keys: Vec<_> = t.gpus.iter().map(|g| g.key.as_str()).collect();
    // Three UUIDs, plus the unlabelled samples under the exporter's own key.
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys.contains(&"GPU-abc"));
    let a10g = t.gpus.iter().find(|g| g.key == "GPU-abc").unwrap();
    assert_eq!(a10g.pods[0].pod, "ray-1111111");
    assert_eq!(t.counts.repeats, 0);
}

#[test]
fn server_pages_give_families_with_names_and_units() {
    for (name, family, display, unit, kind) in [
        (
            "datadog-vllm-v0-v1-mixed.txt",
            "vllm:time_to_first_token_seconds",
            "vLLM Time To First Token Seconds",
            "seconds",
            Kind::Histogram,
        ),
        (
            "datadog-sglang-v0.5.10.txt",
            "sglang:num_running_reqs",
            "SGLang Num Running Reqs",
            "count",
            Kind::Gauge,
        ),
        (
            "datadog-nvidia-nim-llama3.1-8b.txt",
            "gpu_cache_usage_perc",
            "GPU Cache Usage Perc",
            "ratio",
            Kind::Gauge,
        ),
        (
            "datadog-triton-tritonserver-8models.txt",
            "nv_inference_request_summary_us",
            "NV Inference Request Summary µs",
            "microseconds",
            Kind::Summary,
        ),
    ] {
        let body = fixture(name);
        let mut m = ServerMetrics::new(Filter::default());
        let r = m.ingest("e", 0.0, &body, Format::Prometheus);
        assert_eq!(r.skipped, 0, "{name}");
        let res = m.results();
        let f = res
            .iter()
            .find(|f| f.name == family)
            .unwrap_or_else(|| panic!("{name}: no {family}"));
        assert_eq!(
            (f.display.as_str(), f.unit.as_str(), f.kind),
            (display, unit, kind),
            "{name}"
        );
        assert!(!f.series.is_empty());
    }
}

#[test]
fn triton_summary_quantiles_are_read() {
    let body = fixture("datadog-triton-tritonserver-8models.txt");
    let mut m = ServerMetrics::new(Filter::default());
    m.ingest("e", 0.0, &body, Format::Prometheus);
    let res = m.results();
    let f = res
        .iter()
        .find(|f| f.name == "nv_inference_request_summary_us")
        .unwrap();
    let s = f
        .series
        .iter()
        .find(|s| s.labels.get("model").map(String::as_str) == Some("simple_string"))
        .unwrap();
    assert_eq!(s.quantiles.first(), Some(&(0.5, 3.0)));
}

#[test]
fn catalog_roles_on_a_real_histogram() {
    let body = fixture("datadog-vllm-v0-v1-mixed.txt");
    let mut parser = Parser::new(&body, Format::Prometheus);
    let mut catalog = Catalog::default();
    let mut roles: BTreeMap<String, usize> = BTreeMap::new();
    for e in parser.by_ref() {
        if let Some((f, role, _)) = catalog.entry(e)
            && catalog.family(f).name == "vllm:e2e_request_latency_seconds"
        {
            *roles.entry(format!("{role:?}")).or_default() += 1;
        }
    }
    assert_eq!(roles.get("Sum"), Some(&1));
    assert_eq!(roles.get("Count"), Some(&1));
    assert!(roles.get("Bucket").copied().unwrap_or(0) > 5);
}

#[test]
fn series_counts_per_family() {
    use benchrun::cli::inspect::inspect;
    let series = |file: &str, family: &str| {
        let i = inspect(file, &fixture(file), Format::Prometheus);
        let f = i
            .families
            .iter()
            .find(|f| f.name == family)
            .unwrap_or_else(|| panic!("{file}: {family}"));
        (f.series, f.samples)
    };
    // Four GPUs, one series each.
    assert_eq!(
        series("aiperf-dcgm-gb200-4gpu.txt", "DCGM_FI_DEV_POWER_USAGE"),
        (4, 4)
    );
    // Eight models.
    assert_eq!(
        series(
            "datadog-triton-tritonserver-8models.txt",
            "nv_inference_request_success"
        ),
        (8, 8)
    );
    // A histogram is one series however many buckets it has.
    let (n, samples) = series(
        "datadog-vllm-v0-v1-mixed.txt",
        "vllm:e2e_request_latency_seconds",
    );
    assert_eq!(n, 1);
    assert!(samples > 10);
    assert_eq!(
        series("datadog-sglang-v0.5.10.txt", "sglang:num_running_reqs"),
        (1, 1)
    );
}

/// llama.cpp's server, captured from a real `llama-server` (the e2e suite's
/// engine; not in shared/): every family read, each with its unit, the
/// throughputs named `*_tokens_seconds` as tokens per second, not seconds;
/// the token counters as the run left them.
#[test]
fn llama_cpp_server_metrics_have_their_units() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llamacpp-server-0c1e570.txt");
    let body = std::fs::read(path).unwrap();
    let mut m = ServerMetrics::new(Filter::default());
    let r = m.ingest("e", 0.0, &body, Format::Prometheus);
    assert_eq!(r.skipped, 0);
    let res = m.results();
    let unit = |name: &str| {
        let f = res
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(f.series.len(), 1, "{name}");
        (f.unit.clone(), f.kind)
    };
    for (name, want, kind) in [
        ("llamacpp:prompt_tokens_seconds", "tokens/s", Kind::Gauge),
        ("llamacpp:predicted_tokens_seconds", "tokens/s", Kind::Gauge),
        ("llamacpp:prompt_seconds_total", "seconds", Kind::Counter),
        (
            "llamacpp:tokens_predicted_seconds_total",
            "seconds",
            Kind::Counter,
        ),
        ("llamacpp:prompt_tokens_total", "tokens", Kind::Counter),
        ("llamacpp:tokens_predicted_total", "tokens", Kind::Counter),
        ("llamacpp:requests_processing", "count", Kind::Gauge),
        ("llamacpp:requests_deferred", "count", Kind::Gauge),
    ] {
        let (u, k) = unit(name);
        assert_eq!((u.as_str(), k), (want, kind), "{name}");
    }
    assert_eq!(res.len(), 15, "every family kept");
}
