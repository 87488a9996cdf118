//! Parser throughput and memory per series, as `bench/parser.sh` reports them.
//!
//! For each payload: median time of `--rounds` rounds of parse-only and of
//! parse + ingest into the telemetry engine; then memory per series, measured
//! by a counting allocator after `--scrapes` scrapes of changing values. One
//! JSON object per line on stdout.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use benchrun::scrape::{Format, Parser};
use benchrun::telemetry::{Filter, GpuTelemetry, ServerMetrics};

#[path = "../benches/support/pages.rs"]
mod pages;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn median_secs(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `--dump DIR`: write the payloads for the Python side and list them.
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--dump")
        .and_then(|i| args.get(i + 1))
    {
        for (name, body, _) in pages::all() {
            let path = std::path::Path::new(dir).join(&name);
            std::fs::write(&path, &body).expect("write payload");
            println!("{name}\t{}", path.display());
        }
        return;
    }
    let rounds = arg("--rounds", 200);
    let scrapes = arg("--scrapes", 600);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    for (name, body, is_dcgm) in pages::all() {
        if only.is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let samples = Parser::new(&body, Format::Prometheus)
            .filter(|e| matches!(e, benchrun::scrape::Entry::Sample(_)))
            .count();
        // Each round parses the page 10 times, to lift small pages above timer noise.
        let parse = median_secs(rounds, || {
            for _ in 0..10 {
                std::hint::black_box(Parser::new(&body, Format::Prometheus).count());
            }
        }) / 10.0;
        let mut gpu = GpuTelemetry::default();
        let mut server = ServerMetrics::new(Filter::default());
        let mut k = 0.0;
        let ingest = median_secs(rounds, || {
            for _ in 0..10 {
                k += 1.0;
                if is_dcgm {
                    gpu.ingest("http://node:9400/metrics", k, &body, Format::Prometheus);
                } else {
                    server.ingest("http://pod:8000/metrics", k, &body, Format::Prometheus);
                }
            }
        }) / 10.0;
        let mb = body.len() as f64 / 1e6;
        println!(
            "{{\"payload\":\"{name}\",\"bytes\":{},\"samples\":{samples},\"parseMBps\":{:.1},\"ingestMBps\":{:.1},\"parseUsPerSample\":{:.4},\"ingestUsPerSample\":{:.4}}}",
            body.len(),
            mb / parse,
            mb / ingest,
            parse * 1e6 / samples as f64,
            ingest * 1e6 / samples as f64
        );
    }
    // Memory: an 8-GPU page whose values change every scrape, so every
    // gauge's distribution grows into its sketch.
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = GpuTelemetry::default();
    for step in 0..scrapes as u64 {
        let page = pages::dcgm_page(8, step);
        t.ingest(
            "http://node:9400/metrics",
            step as f64,
            page.as_bytes(),
            Format::Prometheus,
        );
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let series: usize = t.gpus.iter().map(|g| g.fields.len()).sum();
    println!(
        "{{\"memory\":\"dcgm-h100-8gpu\",\"scrapes\":{scrapes},\"series\":{series},\"bytes\":{bytes},\"bytesPerSeries\":{}}}",
        bytes / series.max(1) as isize
    );
}
