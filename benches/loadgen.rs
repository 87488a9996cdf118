//! Criterion benchmarks of the load generator's per-event work: reading one
//! streamed chunk (the cost every token pays), adding a latency to a
//! mergeable distribution, and merging the results of 16 workers.
//! `bench/loadgen.sh` measures the whole client against a server, beside aiperf.

use std::hint::black_box;

use benchrun::loadgen::engine::{StepResult, StepStats};
use benchrun::loadgen::sse::{Event, SseReader};
use benchrun::stats::Stats;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// One chat chunk as vLLM streams it.
const CHUNK: &[u8] = br#"data: {"id":"chatcmpl-3f1c","object":"chat.completion.chunk","created":1732000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}

"#;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("loadgen");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sse_chunk", |b| {
        let mut r = SseReader::default();
        let mut n = 0u64;
        b.iter(|| {
            r.feed(black_box(CHUNK), |e| {
                if let Event::Content { answer, reasoning } = e {
                    n += u64::from(answer + reasoning);
                }
            })
        });
        black_box(n);
    });
    g.bench_function("stats_add", |b| {
        let mut s = Stats::default();
        let mut x = 0.020f64;
        b.iter(|| {
            x = if x > 0.5 { 0.020 } else { x * 1.0007 };
            s.add(black_box(x));
        });
        black_box(s.count());
    });
    let worker = |seed: u64| {
        let mut stats = StepStats::default();
        let mut x = 0.01 + seed as f64 * 1e-4;
        for _ in 0..10_000 {
            x = if x > 0.9 { 0.01 } else { x * 1.001 };
            stats.ttft_s.add(x);
            stats.itl_s.add(x / 10.0);
            stats.inter_token_gap_s.add(x / 9.0);
            stats.latency_s.add(x * 20.0);
            stats.output_tokens_per_s_per_user.add(1.0 / x);
        }
        StepResult {
            requests: 10_000,
            successes: 10_000,
            started_unix_ms: 1_000,
            ended_unix_ms: 61_000,
            stats,
            ..Default::default()
        }
    };
    let parts: Vec<StepResult> = (0..16).map(worker).collect();
    g.throughput(Throughput::Elements(parts.len() as u64));
    g.bench_function("merge_16_workers", |b| {
        b.iter(|| StepResult::merge(black_box(&parts)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
