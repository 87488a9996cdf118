//! The telemetry engine: scraped `/metrics` payloads in, the GPU, server and
//! efficiency results of a run out. Pure: no Kubernetes, no I/O.
//!
//! - [`gpu`] keys dcgm-exporter series by GPU and aggregates each field
//!   ([`dcgm`] knows the fields' units, scales and kinds);
//! - [`report`] turns a GPU's aggregates into results: statistics, energy with
//!   its source and uncertainty, profiling estimates ([`peaks`]), warnings;
//! - [`server`] discovers and aggregates every family a server exposes, with
//!   display names and units from [`names`];
//! - [`efficiency`] joins GPU energy with the client's token counts;
//! - [`xid`] names NVIDIA's XID error codes.

pub mod dcgm;
pub mod efficiency;
pub mod gpu;
pub mod names;
pub mod peaks;
pub mod report;
pub mod series;
pub mod server;
pub mod xid;

pub use efficiency::{ClientTotals, Efficiency};
pub use gpu::{GpuSeries, GpuTelemetry};
pub use report::GpuResult;
pub use server::{Filter, ServerMetrics};

/// The bytes `value` encodes to as CBOR, counted without being kept.
pub fn encoded_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a value that cannot be encoded
    // could not be checkpointed either, and counts as what was written.
    let _ = ciborium::into_writer(value, &mut count);
    count.0
}
