//! The memory a step's server metrics keep, measured with a counting
//! allocator while a hostile server invents series, labels and buckets
//! without end: it stays under the stated bound (docs/telemetry.md), the
//! caps are what stops it, and the good series ingested first are kept.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use benchrun::scrape::Format;
use benchrun::telemetry::server::{MAX_SERIES, MAX_SERIES_KEY};
use benchrun::telemetry::{Filter, ServerMetrics};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a
// count of live bytes is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The bound stated in docs/telemetry.md for one step's server metrics.
const BOUND: isize = 320 << 20;

/// Scrape `n` of the hostile server: a fresh family of 1200 gauge series
/// with 2 KiB labels, and 40 fresh histograms of 400 buckets each.
fn hostile_page(n: usize) -> String {
    let mut page = String::new();
    let pad = "x".repeat(2000);
    page.push_str(&format!("# TYPE evil_gauge_{n} gauge\n"));
    for i in 0..1200 {
        page.push_str(&format!(
            "evil_gauge_{n}{{id=\"{i}\",pad=\"{pad}\"}} {}\n",
            i as f64 * 1.37 + n as f64
        ));
    }
    page.push_str("# TYPE evil_latency_seconds histogram\n");
    for h in 0..40 {
        for b in 0..400 {
            page.push_str(&format!(
                "evil_latency_seconds_bucket{{h=\"{n}-{h}\",le=\"{}\"}} {b}\n",
                0.001 * f64::from(b + 1)
            ));
        }
        page.push_str(&format!(
            "evil_latency_seconds_bucket{{h=\"{n}-{h}\",le=\"+Inf\"}} 400\n"
        ));
        page.push_str(&format!("evil_latency_seconds_sum{{h=\"{n}-{h}\"}} 1.5\n"));
        page.push_str(&format!(
            "evil_latency_seconds_count{{h=\"{n}-{h}\"}} 400\n"
        ));
    }
    page
}

#[test]
fn a_hostile_server_cannot_grow_a_steps_memory_past_its_bound() {
    let vllm = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/metrics/datadog-vllm-v0-v1-mixed.txt"),
    )
    .expect("the vLLM fixture");
    let before = LIVE.load(Ordering::Relaxed);
    let mut m = ServerMetrics::new(Filter::default());
    m.ingest("http://llm:8000/metrics", 0.0, &vllm, Format::Prometheus);
    let vllm_series = |m: &ServerMetrics| -> Vec<(String, usize)> {
        m.results()
            .into_iter()
            .filter(|f| f.name.starts_with("vllm"))
            .map(|f| (f.name, f.series.len()))
            .collect()
    };
    let good = vllm_series(&m);
    assert!(
        good.len() > 10,
        "{} vLLM families from the fixture",
        good.len()
    );
    // 20 scrapes: past every cap (24 000 gauge series in 20 families, 800
    // histograms; at most 1024 series a family and 16 384 in all are kept).
    for n in 0..20 {
        let page = hostile_page(n);
        assert!(page.len() < 16 << 20, "within a scrape's body cap");
        m.ingest(
            "http://evil:8000/metrics",
            1.0 + n as f64,
            page.as_bytes(),
            Format::Prometheus,
        );
        m.ingest(
            "http://llm:8000/metrics",
            1.0 + n as f64,
            &vllm,
            Format::Prometheus,
        );
    }
    let retained = LIVE.load(Ordering::Relaxed) - before;
    eprintln!(
        "retained {:.1} MiB for {MAX_SERIES} series at most (keys up to {MAX_SERIES_KEY} bytes); {} samples refused",
        retained as f64 / (1 << 20) as f64,
        m.over_limit
    );
    let kept: usize = m.results().iter().map(|f| f.series.len()).sum();
    assert_eq!(
        kept, MAX_SERIES,
        "the step's series budget is what stopped it"
    );
    assert!(m.over_limit > 0, "the caps were reached");
    assert!(retained < BOUND, "retained {retained} bytes, bound {BOUND}");
    // The good server's families and series are all still there.
    assert_eq!(vllm_series(&m), good);
}
