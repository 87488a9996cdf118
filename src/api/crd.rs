//! The CustomResourceDefinition, generated from the Rust types. The copy committed
//! under `crds/` is this function's output; a test fails when they differ.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::BenchmarkRun;

/// The BenchmarkRun CRD.
pub fn crd() -> CustomResourceDefinition {
    BenchmarkRun::crd()
}

/// The CRD as a YAML document, as `benchrun crd` prints it.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&crd())
}
