//! The load generator. Pure engine, no Kubernetes client.

pub mod plan;
