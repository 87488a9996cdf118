//! benchrun's end-to-end fixture: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, built from the
//! published Go modules by `e2e/tools/build.sh`) on loopback, and a test kubelet
//! that runs pods as local processes.
//!
//! `benchrun-e2e up` brings a cluster up for the demo and the suite;
//! [`harness`] is what the tests use to talk to it.

pub mod cluster;
pub mod harness;
pub mod kubeconfig;
pub mod kubelet;
pub mod pki;
pub mod probe;
pub mod process;
