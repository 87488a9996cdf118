//! The pre-flight against servers that pass and fail each check.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::*;
use crate::loadgen::plan::Endpoint;
use crate::loadgen::request::tests::plan;

/// `benchrun sim inference` serving the model `m`.
async fn simulator() -> String {
    let o = crate::sim::inference::tests::opts(&["--ttft", "5ms", "--itl", "1ms"]);
    crate::net::testing::start(crate::sim::inference::router(o)).await
}

fn against(url: &str, model: &str) -> LoadPlan {
    let mut p = plan(Endpoint::Chat, true);
    p.urls = vec![url.to_string()];
    p.model = model.into();
    p
}

#[tokio::test]
async fn a_server_that_serves_the_model_and_streams_passes() {
    let url = simulator().await;
    let r = run(&against(&url, "m"), None).await;
    assert_eq!(r.failed, None, "{}", r.message);
    assert!(r.message.contains("serves \"m\""), "{}", r.message);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

#[tokio::test]
async fn a_model_the_server_does_not_serve_is_named_with_what_it_serves() {
    let url = simulator().await;
    let r = run(&against(&url, "llama-70b"), None).await;
    assert_eq!(r.failed, Some(Check::Model), "{}", r.message);
    assert!(
        r.message.contains("\"llama-70b\"") && r.message.contains("it serves m"),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn refused_credentials_and_a_dead_endpoint_say_so() {
    let app = Router::new().route(
        "/v1/models",
        get(|| async { (StatusCode::UNAUTHORIZED, r#"{"error":"invalid api key"}"#) }),
    );
    let url = crate::net::testing::start(app).await;
    let r = run(&against(&url, "m"), Some("wrong")).await;
    assert_eq!(r.failed, Some(Check::Credentials), "{}", r.message);
    assert!(
        r.message.contains("HTTP 401") && r.message.contains("invalid api key"),
        "{}",
        r.message
    );
    let dead = run(&against("http://127.0.0.1:1", "m"), None).await;
    assert_eq!(dead.failed, Some(Check::Reachable), "{}", dead.message);
    assert!(dead.message.contains("did not answer"), "{}", dead.message);
}

/// A server without `/v1/models` (many gateways): the probe request decides,
/// and the report says what was not checked. A stream without a token fails.
#[tokio::test]
async fn without_a_model_list_the_probe_decides() {
    let chunk = r#"data: {"choices":[{"delta":{"content":"a"}}]}"#;
    let streams = Router::new().route(
        "/v1/chat/completions",
        post(move || async move { format!("{chunk}\n\ndata: [DONE]\n\n") }),
    );
    let url = crate::net::testing::start(streams).await;
    let r = run(&against(&url, "m"), None).await;
    assert_eq!(r.failed, None, "{}", r.message);
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(r.notes[0].contains("HTTP 404"), "{:?}", r.notes);

    let silent = Router::new().route(
        "/v1/chat/completions",
        post(|| async { "data: [DONE]\n\n" }),
    );
    let url = crate::net::testing::start(silent).await;
    let r = run(&against(&url, "m"), None).await;
    assert_eq!(r.failed, Some(Check::Request), "{}", r.message);
    assert!(r.message.contains("no generated text"), "{}", r.message);
}

#[test]
fn the_probe_asks_for_a_few_tokens_only() {
    let body =
        Bytes::from_static(br#"{"model":"m","max_tokens":1024,"max_completion_tokens":900}"#);
    let v: Value = serde_json::from_slice(&short(&body)).unwrap();
    assert_eq!(v["max_tokens"], PROBE_TOKENS);
    assert_eq!(v["max_completion_tokens"], PROBE_TOKENS);
    let small = Bytes::from_static(br#"{"max_tokens":2}"#);
    let v: Value = serde_json::from_slice(&short(&small)).unwrap();
    assert_eq!(v["max_tokens"], 2);
}

#[test]
fn what_a_failed_probe_request_means() {
    let p = against("http://x", "m");
    let rec = |error: Option<(ErrorKind, &str)>| Record {
        ok: error.is_none(),
        error: error.map(|(k, m)| (k, m.to_string())),
        ttft: Some(0.01),
        ttfat: Some(0.01),
        token_times: Vec::new(),
        latency: 0.02,
        input_tokens: 1,
        output_tokens: 1,
        source: crate::loadgen::request::TokenSource::Usage,
        reasoning_tokens: 0,
        text: None,
        retried: false,
        server: None,
        asked_tokens: None,
    };
    let cases = [
        (
            Some((ErrorKind::HttpStatus, "HTTP 401: no key")),
            Some(Check::Credentials),
        ),
        (
            Some((
                ErrorKind::HttpStatus,
                "HTTP 404: The model `m` does not exist",
            )),
            Some(Check::Model),
        ),
        (
            Some((
                ErrorKind::Connect,
                "invalid peer certificate: UnknownIssuer",
            )),
            Some(Check::Tls),
        ),
        (
            Some((ErrorKind::Connect, "connection refused")),
            Some(Check::Reachable),
        ),
        (
            Some((ErrorKind::HttpStatus, "HTTP 500: boom")),
            Some(Check::Request),
        ),
        (None, None),
    ];
    for (error, want) in cases {
        assert_eq!(judge(&rec(error), &p).map(|(c, _)| c), want, "{error:?}");
    }
}
