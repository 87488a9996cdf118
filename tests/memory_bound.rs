//! The memory a step's server metrics and GPU telemetry keep, measured with
//! a counting allocator while a hostile server or exporter invents series,
//! GPUs, labels and buckets without end: it stays under the stated bounds
//! (docs/telemetry.md), the caps are what stops it, and the good series
//! ingested first are kept.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use benchrun::scrape::Format;
use benchrun::telemetry::gpu::{MAX_GPU_SERIES, MAX_GPUS};
use benchrun::telemetry::server::{MAX_SERIES, MAX_SERIES_KEY};
use benchrun::telemetry::{Filter, GpuTelemetry, ServerMetrics};

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

/// The count is the process's: the tests take turns, so one's bytes are not the other's.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
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

/// The bound stated in docs/telemetry.md for one step's GPU telemetry.
const GPU_BOUND: isize = 640 << 20;

/// Scrape `n` of a hostile exporter: 500 GPUs never seen before (5000 over
/// ten scrapes, past the 4096 kept) with 200-byte labels, each with 10
/// invented fields (past the step's series budget).
fn hostile_dcgm(n: usize) -> String {
    let pad = "y".repeat(200);
    let mut page = String::new();
    for f in 0..10 {
        for g in n * 500..(n + 1) * 500 {
            page.push_str(&format!(
                "DCGM_FI_DEV_INVENTED_{f}{{gpu=\"{g}\",UUID=\"GPU-evil-{g}\",modelName=\"{pad}\",pod=\"p{pad}\",namespace=\"evil\"}} {}\n",
                (g * 7 + n * 13 + f) as f64 * 1.37
            ));
        }
    }
    page
}

#[test]
fn a_hostile_exporter_cannot_grow_a_steps_gpu_telemetry_past_its_bound() {
    let good = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/metrics/aiperf-dcgm-gb200-4gpu.txt"),
    )
    .expect("the dcgm-exporter fixture");
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = GpuTelemetry::default();
    t.ingest("http://node-a:9400/metrics", 0.0, &good, Format::Prometheus);
    let fields_of_good: Vec<usize> = t.gpus.iter().map(|g| g.fields.len()).collect();
    assert_eq!(fields_of_good.len(), 4, "the fixture's GPUs");
    for n in 0..10 {
        let page = hostile_dcgm(n);
        assert!(page.len() < 16 << 20, "within a scrape's body cap");
        t.ingest(
            "http://evil:9400/metrics",
            1.0 + n as f64,
            page.as_bytes(),
            Format::Prometheus,
        );
        t.ingest(
            "http://node-a:9400/metrics",
            1.0 + n as f64,
            &good,
            Format::Prometheus,
        );
    }
    let retained = LIVE.load(Ordering::Relaxed) - before;
    let kept: usize = t.gpus.iter().map(|g| g.fields.len()).sum();
    eprintln!(
        "retained {:.1} MiB for {} GPUs and {kept} field series; {} readings of GPUs and {} of fields refused",
        retained as f64 / (1 << 20) as f64,
        t.gpus.len(),
        t.counts.gpus_refused,
        t.counts.over_limit
    );
    assert_eq!(t.gpus.len(), MAX_GPUS);
    assert_eq!(
        kept, MAX_GPU_SERIES,
        "the step's series budget is what stopped it"
    );
    assert!(t.counts.gpus_refused > 0 && t.counts.over_limit > 0);
    assert!(
        retained < GPU_BOUND,
        "retained {retained} bytes, bound {GPU_BOUND}"
    );
    // The good exporter's GPUs keep every field they had.
    let now: Vec<usize> = t.gpus[..4].iter().map(|g| g.fields.len()).collect();
    assert_eq!(now, fields_of_good);
}

/// The bound stated in docs/results.md for a run's time series.
const TIMESERIES_BOUND: isize = 16 << 20;

/// A run's time series fed by a server with a hundred families of long names
/// (and a hundred more past the name limit) and eight GPUs, scraped far past
/// the series' cap: it stays under its bound, and thinning is what stops it.
#[test]
fn a_time_series_stays_under_its_bound_however_long_the_run() {
    use benchrun::measure::timeseries::{MAX_NAME, Record, Timeseries};
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let name = |i: usize, len: usize| format!("srv_{i:03}_{}", "n".repeat(len - 8));
    let page = |n: usize| {
        let mut p = String::new();
        for i in 0..100 {
            let kind = if i % 2 == 0 { "gauge" } else { "counter" };
            let f = name(i, MAX_NAME);
            p.push_str(&format!("# TYPE {f} {kind}\n{f}{{a=\"1\"}} {}\n", n + i));
            let long = name(i, 4 * MAX_NAME);
            p.push_str(&format!("# TYPE {long} gauge\n{long} 1\n"));
        }
        p
    };
    let mut gpus = GpuTelemetry::default();
    let mut server = ServerMetrics::new(Filter::default());
    let ingest = |n: usize, gpus: &mut GpuTelemetry, server: &mut ServerMetrics| {
        let t = n as f64;
        let mut dcgm = String::new();
        for g in 0..8 {
            dcgm.push_str(&format!(
                "DCGM_FI_DEV_POWER_USAGE{{gpu=\"{g}\",UUID=\"GPU-{g:036}\"}} 400\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"{g}\",UUID=\"GPU-{g:036}\"}} {}\n",
                n * 400_000
            ));
        }
        gpus.ingest(
            "http://node-a:9400/metrics",
            t,
            dcgm.as_bytes(),
            Format::Prometheus,
        );
        server.ingest(
            "http://10.0.0.1:8000/metrics",
            t,
            page(n).as_bytes(),
            Format::Prometheus,
        );
    };
    ingest(0, &mut gpus, &mut server);
    let before = LIVE.load(Ordering::Relaxed);
    let mut ts = Timeseries::default();
    for n in 1..1500 {
        ingest(n, &mut gpus, &mut server);
        ts.scrape(0, n as f64, 0, &gpus, &server);
    }
    let retained = LIVE.load(Ordering::Relaxed) - before;
    let header = ts.render().lines().next().map(str::to_string).unwrap();
    let Ok(Record::Header { thinned, .. }) = serde_json::from_str(&header) else {
        panic!("{header}");
    };
    eprintln!(
        "time series: retained {:.1} MiB after 1499 scrapes, thinned {thinned} times",
        retained as f64 / (1 << 20) as f64
    );
    assert!(thinned >= 1, "the cap is what stopped it");
    assert!(
        retained < TIMESERIES_BOUND,
        "retained {retained} bytes, bound {TIMESERIES_BOUND}"
    );
}

/// What a step's telemetry holds in memory for each byte it encodes to
/// (the unit of a run's telemetry budget, `--max-run-telemetry-mib`), at
/// most: docs/telemetry.md states the controller's bound with it.
const HELD_PER_ENCODED_BYTE: f64 = 5.0;

/// The telemetry's memory against its encoded size, for pages of every
/// shape: the hostile server's and exporter's above (long keys, many
/// series, buckets), and series whose values vary every scrape (their
/// distributions grow to sketches). The ratio stays under
/// [`HELD_PER_ENCODED_BYTE`], so a budget in encoded bytes bounds memory.
#[test]
fn the_memory_telemetry_holds_is_bounded_by_what_it_encodes_to() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let mut worst: f64 = 0.0;
    let mut check = |what: &str, retained: isize, encoded: usize| {
        let ratio = retained as f64 / encoded as f64;
        eprintln!(
            "{what}: holds {:.1} MiB, encodes to {:.1} MiB: {ratio:.2} bytes held per byte encoded",
            retained as f64 / (1 << 20) as f64,
            encoded as f64 / (1 << 20) as f64
        );
        assert!(encoded > 100_000, "{what}: {encoded}");
        worst = worst.max(ratio);
    };
    // The hostile server.
    let before = LIVE.load(Ordering::Relaxed);
    let mut m = ServerMetrics::new(Filter::default());
    for n in 0..20 {
        let page = hostile_page(n);
        m.ingest(
            "http://evil:8000/metrics",
            n as f64,
            page.as_bytes(),
            Format::Prometheus,
        );
    }
    check(
        "hostile server",
        LIVE.load(Ordering::Relaxed) - before,
        m.encoded_bytes(),
    );
    drop(m);
    // The hostile exporter.
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = GpuTelemetry::default();
    for n in 0..10 {
        let page = hostile_dcgm(n);
        t.ingest(
            "http://evil:9400/metrics",
            n as f64,
            page.as_bytes(),
            Format::Prometheus,
        );
    }
    check(
        "hostile exporter",
        LIVE.load(Ordering::Relaxed) - before,
        t.encoded_bytes(),
    );
    drop(t);
    // Values that vary every scrape: 2,000 server gauges and 8 GPUs of 40
    // fields, over 300 scrapes (past the exact distributions' 64 values).
    let before = LIVE.load(Ordering::Relaxed);
    let mut m = ServerMetrics::new(Filter::default());
    let mut t = GpuTelemetry::default();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 1_000_000) as f64 / 7.0 + 1.0
    };
    for n in 0..300 {
        let mut page = String::from("# TYPE app_gauge gauge\n");
        for i in 0..2000 {
            page.push_str(&format!(
                "app_gauge{{i=\"{i}\",model=\"llama\"}} {}\n",
                next()
            ));
        }
        m.ingest(
            "http://llm:8000/metrics",
            n as f64,
            page.as_bytes(),
            Format::Prometheus,
        );
        let mut dcgm = String::new();
        for f in 0..40 {
            for g in 0..8 {
                dcgm.push_str(&format!(
                    "DCGM_FI_DEV_FIELD_{f}{{gpu=\"{g}\",UUID=\"GPU-{g:036}\"}} {}\n",
                    next()
                ));
            }
        }
        t.ingest(
            "http://node:9400/metrics",
            n as f64,
            dcgm.as_bytes(),
            Format::Prometheus,
        );
    }
    check(
        "varying values",
        LIVE.load(Ordering::Relaxed) - before,
        m.encoded_bytes() + t.encoded_bytes(),
    );
    drop((m, t));
    // A hard shape for the ratio: sketches whose few values lie far
    // apart (a dense run of empty bins between, each one byte encoded and
    // four held), 2,000 series over 100 scrapes.
    let before = LIVE.load(Ordering::Relaxed);
    let mut m = ServerMetrics::new(Filter::default());
    for n in 0..100 {
        let mut page = String::from("# TYPE far_gauge gauge\n");
        for i in 0..2000 {
            let v = if n % 2 == 0 {
                1.0 + n as f64 * 1e-3
            } else {
                20_000.0 + n as f64
            };
            page.push_str(&format!("far_gauge{{i=\"{i}\"}} {v}\n"));
        }
        m.ingest(
            "http://llm:8000/metrics",
            n as f64,
            page.as_bytes(),
            Format::Prometheus,
        );
    }
    check(
        "values far apart",
        LIVE.load(Ordering::Relaxed) - before,
        m.encoded_bytes(),
    );
    assert!(
        worst <= HELD_PER_ENCODED_BYTE,
        "{worst:.2} bytes held per byte encoded, stated {HELD_PER_ENCODED_BYTE}"
    );
}

/// Ten runs at once, each a five-step sweep scraping a tenant's hostile page
/// (about 4 MiB, the most a tenant's pod may serve: 1,900 series with 2 KiB
/// labels) beside a real exporter and a real vLLM server, ten scrapes a
/// step, under a budget of 8 MiB a run: every run lets its server metrics
/// go once the budget is passed and keeps its GPUs, and what the ten hold
/// stays under ten times the budget times [`HELD_PER_ENCODED_BYTE`].
/// Without the budget one such run alone holds more than all ten.
#[test]
fn ten_runs_scraping_a_hostile_page_hold_no_more_than_their_budgets() {
    use benchrun::measure::budget::Budget;
    use benchrun::measure::collect::{Kind, StepTelemetry};
    const BUDGET: usize = 8 << 20;
    const RUNS: usize = 10;
    let fixture = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/fixtures/metrics")
                .join(name),
        )
        .unwrap()
    };
    let (dcgm, vllm) = (
        fixture("aiperf-dcgm-gb200-4gpu.txt"),
        fixture("datadog-vllm-v0-v1-mixed.txt"),
    );
    let pad = "h".repeat(2000);
    let hostile = |n: usize| {
        let mut page = format!("# TYPE evil_{n} gauge\n");
        for i in 0..1900 {
            page.push_str(&format!("evil_{n}{{i=\"{i}\",pad=\"{pad}\"}} {}\n", i + n));
        }
        page
    };
    assert!(hostile(0).len() < benchrun::discovery::policy::TENANT_MAX_BYTES);
    let measure = |budget: usize, runs: usize| {
        let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
        let before = LIVE.load(Ordering::Relaxed);
        let mut runs: Vec<(Budget, Vec<StepTelemetry>)> = (0..runs)
            .map(|_| (Budget::new(budget), Vec::new()))
            .collect();
        let mut let_go = 0;
        for k in 0..5 {
            for scrape in 0..10 {
                let t = (k * 10 + scrape) as f64;
                let page = hostile(k * 10 + scrape);
                for (b, steps) in runs.iter_mut() {
                    if scrape == 0 {
                        let mut s = StepTelemetry::new(Filter::default(), 0, t, false);
                        b.opened(&mut s);
                        steps.push(s);
                    }
                    let s = &mut steps[k];
                    s.ingest(
                        Kind::Gpu,
                        "http://node:9400/metrics",
                        t,
                        &dcgm,
                        Format::Prometheus,
                    );
                    s.ingest(
                        Kind::Server,
                        "http://llm:8000/metrics",
                        t,
                        &vllm,
                        Format::Prometheus,
                    );
                    s.ingest(
                        Kind::Server,
                        "http://evil:8000/metrics",
                        t,
                        page.as_bytes(),
                        Format::Prometheus,
                    );
                    let bytes = dcgm.len() + vllm.len() + page.len();
                    let_go += usize::from(b.after_scrape(steps, k, bytes).is_some());
                }
            }
        }
        let held = LIVE.load(Ordering::Relaxed) - before;
        let gpus_kept = runs
            .iter()
            .all(|(_, steps)| steps.iter().all(|s| s.gpu.gpus.len() == 4));
        drop(runs);
        (held, let_go, gpus_kept)
    };
    let (held, let_go, gpus_kept) = measure(BUDGET, RUNS);
    let (unbounded, _, _) = measure(0, 1);
    let bound = (RUNS * BUDGET) as f64 * HELD_PER_ENCODED_BYTE;
    eprintln!(
        "ten runs: hold {:.1} MiB under budgets of {} MiB (bound {:.0} MiB); one run without a budget {:.1} MiB",
        held as f64 / (1 << 20) as f64,
        BUDGET >> 20,
        bound / (1 << 20) as f64,
        unbounded as f64 / (1 << 20) as f64
    );
    assert_eq!(let_go, RUNS, "each run let its server metrics go once");
    assert!(gpus_kept, "every step keeps its GPUs");
    assert!((held as f64) < bound, "{held} bytes held, bound {bound}");
    assert!(
        unbounded > held,
        "one run without the budget {unbounded}, ten with {held}"
    );
}
