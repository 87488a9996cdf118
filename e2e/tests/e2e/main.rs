//! End-to-end tests against the real control plane with benchrun installed by
//! Helm (scripts/e2e.sh sets it up). Each test works in a namespace of its own
//! and waits on conditions, never on fixed sleeps.

mod chart;
mod common;
mod compare;
mod faults;
mod fidelity;
mod hostile;
mod https;
mod llama_cpp;
mod namespaced;
mod operator;
mod prometheus;
mod queue;
mod runs;
mod simulators;
mod tenancy;
