//! benchrun: a Kubernetes operator that benchmarks LLM inference services and
//! measures what the benchmark costs in GPU power and energy.

pub mod api;
