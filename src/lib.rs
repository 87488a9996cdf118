//! benchrun: a Kubernetes operator that benchmarks LLM inference services and
//! measures what the benchmark costs in GPU power and energy.
//!
//! One binary, several roles (see [`cli`]). The pure parts — the API types and
//! their validation, the load plan, the result model — do not talk to a cluster;
//! [`controller`] is where the Kubernetes client lives.

pub mod api;
pub mod cli;
pub mod clock;
pub mod contract;
pub mod controller;
pub mod discovery;
pub mod expose;
pub mod flags;
pub mod gpu_exporter;
pub mod loadgen;
pub mod measure;
pub mod net;
pub mod plot;
pub mod results;
pub mod scrape;
pub mod sim;
pub mod stats;
pub mod telemetry;
pub mod worker;
