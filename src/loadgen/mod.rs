//! The load generator. Pure engine, no Kubernetes client.

pub mod client;
pub mod engine;
pub mod plan;
pub mod preflight;
pub mod request;
pub mod sse;
pub mod tokenize;
pub mod workload;
