//! Any bytes through the exposition parser and both telemetry engines: no
//! panic, no runaway memory, and the parser's counts stay consistent.
#![no_main]

use benchrun::scrape::{Catalog, Format, Parser};
use benchrun::telemetry::{Filter, GpuTelemetry, ServerMetrics};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let format = Format::detect(None, data);
    let mut parser = Parser::new(data, format);
    let mut catalog = Catalog::default();
    for entry in parser.by_ref() {
        if let Some((_, _, sample)) = catalog.entry(entry) {
            for (_, value) in sample.labels.iter() {
                let _ = value.text();
            }
        }
    }
    let report = parser.into_report();
    assert!(report.samples + report.skipped <= report.lines);

    let mut gpus = GpuTelemetry::default();
    gpus.ingest("fuzz", 0.0, data, format);
    gpus.ingest("fuzz", 1.0, data, format);
    for gpu in &gpus.gpus {
        let _ = gpu.result();
    }
    let mut server = ServerMetrics::new(Filter::default());
    server.ingest("fuzz", 0.0, data, format);
    server.ingest("fuzz", 1.0, data, format);
    let _ = server.results();
});
