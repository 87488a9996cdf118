//! Who may read the controller's `/metrics`: it lists every tenant's
//! finished runs (by namespace and name, with their figures), so it answers
//! only a Kubernetes bearer token that is authenticated with a TokenReview
//! and authorized with a SubjectAccessReview for `get` on the non-resource
//! URL `/metrics` — the check kube-rbac-proxy and controller-runtime's
//! metrics filter make. The chart grants that to the reader it names
//! (`metrics.readers`) through a `<release>-metrics-reader` ClusterRole; the
//! probes (`/livez`, `/readyz`) stay open for the kubelet.
//!
//! A decision is kept [`KEEP`] per token (by its SHA-256, never the token),
//! at most [`MAX_KEPT`] of them, so a Prometheus scraping every second costs
//! the API server two reviews a minute, and a flood of made-up tokens cannot
//! grow the controller's memory. Written by hand: the reviews are two POSTs
//! through the client the controller already has; a proxy sidecar would be
//! another image to ship and patch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// The most reviews under way at once: a flood of made-up tokens costs the
/// API server at most this many requests at a time (the rest get 503).
pub const MAX_REVIEWING: usize = 4;
/// How long a request waits for a turn to be reviewed.
const REVIEW_WAIT: Duration = Duration::from_secs(2);

/// How long a decision is kept.
pub const KEEP: Duration = Duration::from_secs(60);
/// The most decisions kept.
pub const MAX_KEPT: usize = 1024;

/// What a request to `/metrics` gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token's holder may read it.
    Allowed,
    /// No bearer token, or one the API server does not know: 401.
    Unauthenticated,
    /// An authenticated user without `get` on `/metrics`: 403.
    Forbidden,
    /// The reviews could not be made (the API server did not answer): 503,
    /// not kept.
    Unavailable,
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// The reviewer of `/metrics` requests.
pub struct MetricsAuth {
    client: kube::Client,
    kept: Mutex<HashMap<[u8; 32], (Verdict, Instant)>>,
    reviewing: tokio::sync::Semaphore,
}

impl MetricsAuth {
    pub fn new(client: kube::Client) -> Self {
        MetricsAuth {
            client,
            kept: Mutex::new(HashMap::new()),
            reviewing: tokio::sync::Semaphore::new(MAX_REVIEWING),
        }
    }

    /// The verdict on a request with this `Authorization` header value.
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(token) = bearer(authorization) else {
            return Verdict::Unauthenticated;
        };
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        if let Some(v) = self.kept(&key) {
            return v;
        }
        let verdict = self.review(token).await;
        if verdict != Verdict::Unavailable {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.retain(|_, (_, at)| at.elapsed() < KEEP);
            if kept.len() >= MAX_KEPT {
                // Full of live decisions: the oldest goes.
                if let Some(oldest) = kept.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    kept.remove(&oldest);
                }
            }
            kept.insert(key, (verdict.clone(), Instant::now()));
        }
        verdict
    }

    fn kept(&self, key: &[u8; 32]) -> Option<Verdict> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(key)
            .filter(|(_, at)| at.elapsed() < KEEP)
            .map(|(v, _)| v.clone())
    }

    async fn review(&self, token: &str) -> Verdict {
        let Ok(Ok(_turn)) = tokio::time::timeout(REVIEW_WAIT, self.reviewing.acquire()).await
        else {
            return Verdict::Unavailable;
        };
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let status = match reviews.create(&PostParams::default(), &review).await {
            Ok(r) => r.status.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview for /metrics failed");
                return Verdict::Unavailable;
            }
        };
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Verdict::Unauthenticated;
        };
        let access: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let ask = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match access.create(&PostParams::default(), &ask).await {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Verdict::Allowed,
            Ok(_) => Verdict::Forbidden,
            Err(e) => {
                tracing::warn!(error = %e, "SubjectAccessReview for /metrics failed");
                Verdict::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::routing::post;

    use super::*;

    #[test]
    fn only_a_bearer_token_is_a_token() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        for no in [
            None,
            Some(""),
            Some("Basic abc"),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer a b"),
        ] {
            assert_eq!(bearer(no), None, "{no:?}");
        }
    }

    /// A fake API server: token `reader` is user `r` allowed `/metrics`,
    /// `other` is user `o` who is not, anything else is unknown. Counts the
    /// reviews.
    async fn api_server() -> (kube::Client, Arc<AtomicUsize>) {
        let reviews = Arc::new(AtomicUsize::new(0));
        let (tr, sar) = (reviews.clone(), reviews.clone());
        let app = axum::Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(move |Json(r): Json<serde_json::Value>| {
                    tr.fetch_add(1, Ordering::SeqCst);
                    let user = match r["spec"]["token"].as_str() {
                        Some("reader") => Some("r"),
                        Some("other") => Some("o"),
                        _ => None,
                    };
                    let mut out = r.clone();
                    out["status"] = match user {
                        Some(u) => serde_json::json!({"authenticated": true, "user": {"username": u, "groups": ["g"]}}),
                        None => serde_json::json!({"authenticated": false}),
                    };
                    async move { Json(out) }
                }),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(move |Json(r): Json<serde_json::Value>| {
                    sar.fetch_add(1, Ordering::SeqCst);
                    let spec = &r["spec"];
                    let allowed = spec["user"] == "r"
                        && spec["nonResourceAttributes"]["path"] == "/metrics"
                        && spec["nonResourceAttributes"]["verb"] == "get";
                    let mut out = r.clone();
                    out["status"] = serde_json::json!({"allowed": allowed});
                    async move { Json(out) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        (kube::Client::try_from(config).unwrap(), reviews)
    }

    #[tokio::test]
    async fn a_reader_s_token_is_allowed_others_are_not_and_decisions_are_kept() {
        let (client, reviews) = api_server().await;
        let auth = MetricsAuth::new(client);
        assert_eq!(auth.check(None).await, Verdict::Unauthenticated);
        assert_eq!(
            auth.check(Some("Basic cjpy")).await,
            Verdict::Unauthenticated
        );
        assert_eq!(
            reviews.load(Ordering::SeqCst),
            0,
            "no review without a token"
        );
        assert_eq!(
            auth.check(Some("Bearer made-up")).await,
            Verdict::Unauthenticated
        );
        assert_eq!(auth.check(Some("Bearer other")).await, Verdict::Forbidden);
        assert_eq!(auth.check(Some("Bearer reader")).await, Verdict::Allowed);
        let made = reviews.load(Ordering::SeqCst);
        assert_eq!(
            made, 5,
            "one TokenReview each, a SubjectAccessReview for the two users"
        );
        // Kept: asking again costs the API server nothing.
        for _ in 0..3 {
            assert_eq!(auth.check(Some("Bearer reader")).await, Verdict::Allowed);
            assert_eq!(auth.check(Some("Bearer other")).await, Verdict::Forbidden);
        }
        assert_eq!(reviews.load(Ordering::SeqCst), made);
        // Never more than MAX_KEPT decisions, however many tokens are tried.
        for i in 0..MAX_KEPT + 10 {
            auth.check(Some(&format!("Bearer junk-{i}"))).await;
        }
        assert!(auth.kept.lock().unwrap().len() <= MAX_KEPT);
    }

    /// A flood of made-up tokens: never more than MAX_REVIEWING reviews at
    /// the API server at once.
    #[tokio::test]
    async fn a_flood_of_tokens_is_reviewed_a_few_at_a_time() {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), most.clone());
        let app = axum::Router::new().route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(move |Json(r): Json<serde_json::Value>| {
                let (n, m) = (n.clone(), m.clone());
                async move {
                    let at = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(at, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    n.fetch_sub(1, Ordering::SeqCst);
                    let mut out = r.clone();
                    out["status"] = serde_json::json!({"authenticated": false});
                    Json(out)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let auth = Arc::new(MetricsAuth::new(kube::Client::try_from(config).unwrap()));
        let checks = (0..24).map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.check(Some(&format!("Bearer t{i}"))).await })
        });
        for v in futures::future::join_all(checks).await {
            assert!(matches!(
                v.unwrap(),
                Verdict::Unauthenticated | Verdict::Unavailable
            ));
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=MAX_REVIEWING).contains(&most),
            "{most} reviews at once"
        );
    }

    #[tokio::test]
    async fn an_api_server_that_does_not_answer_gives_unavailable_not_a_kept_refusal() {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let auth = MetricsAuth::new(kube::Client::try_from(config).unwrap());
        assert_eq!(
            auth.check(Some("Bearer reader")).await,
            Verdict::Unavailable
        );
        assert!(auth.kept.lock().unwrap().is_empty());
    }
}
