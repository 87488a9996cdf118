//! `/livez`, `/readyz` and `/metrics` of the controller. The probes are
//! open; `/metrics` answers only what [`MetricsAuth`] allows, when it is on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;
use super::metrics_auth::{MetricsAuth, Verdict};

/// Readiness shared between the controller and the probe endpoints.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    auth: Option<Arc<MetricsAuth>>,
}

/// The probe and metrics routes; `/metrics` behind `auth` (`None`: open).
pub fn router(
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    auth: Option<Arc<MetricsAuth>>,
) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState {
            health,
            metrics,
            auth,
        })
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "watches not synced yet")
    }
}

async fn metrics_text(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Some(auth) = &s.auth {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let refused = match auth.check(given).await {
            Verdict::Allowed => None,
            Verdict::Unauthenticated => Some((
                StatusCode::UNAUTHORIZED,
                "a Kubernetes bearer token is needed (see metrics.readers in the chart)",
            )),
            Verdict::Forbidden => Some((
                StatusCode::FORBIDDEN,
                "this user may not get /metrics (ClusterRole <release>-metrics-reader)",
            )),
            Verdict::Unavailable => Some((
                StatusCode::SERVICE_UNAVAILABLE,
                "the API server did not review the token; try again",
            )),
        };
        if let Some((code, why)) = refused {
            return (code, why).into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}
