//! Criterion benchmarks: parse only, and parse + ingest into the telemetry
//! engine, on each payload. Throughput is reported in bytes per second.
//! `bench/parser.sh` runs the side-by-side comparison with aiperf's parser.

use std::hint::black_box;

use benchrun::scrape::{Format, Parser};
use benchrun::telemetry::{Filter, GpuTelemetry, ServerMetrics};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/pages.rs"]
mod pages;

fn bench(c: &mut Criterion) {
    for (name, body, is_dcgm) in pages::all() {
        let mut g = c.benchmark_group(name.trim_end_matches(".txt"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("parse", |b| {
            b.iter(|| Parser::new(black_box(&body), Format::Prometheus).count())
        });
        if is_dcgm {
            let mut t = GpuTelemetry::default();
            let mut k = 0.0;
            g.bench_function("parse+ingest", |b| {
                b.iter(|| {
                    k += 1.0;
                    t.ingest(
                        "http://node:9400/metrics",
                        k,
                        black_box(&body),
                        Format::Prometheus,
                    )
                })
            });
        } else {
            let mut m = ServerMetrics::new(Filter::default());
            let mut k = 0.0;
            g.bench_function("parse+ingest", |b| {
                b.iter(|| {
                    k += 1.0;
                    m.ingest(
                        "http://pod:8000/metrics",
                        k,
                        black_box(&body),
                        Format::Prometheus,
                    )
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
