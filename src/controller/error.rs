//! Errors of the reconcile loop.

/// Why a reconcile could not finish. Spec problems are not errors: they end the run
/// Failed with a condition. These are the problems worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the BenchmarkRun has no namespace")]
    MissingNamespace,
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialize: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A fixed, low-cardinality label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingNamespace => "missing_namespace",
            Error::Kube(_) => "kube_api",
            Error::Serialize(_) => "serialize",
        }
    }
}
