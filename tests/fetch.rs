//! The scrape fetcher against a real HTTP server on loopback.

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use benchrun::scrape::Format;
use benchrun::scrape::fetch::{FetchError, fetch, scrape_client};

async fn serve() -> String {
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"iteration\": 1}",
                )
            }),
        )
        .route(
            "/prometheus/metrics",
            get(|| async { "trtllm_requests_total 3\n" }),
        )
        .route("/json/metrics", get(|| async { "[1, 2]" }))
        .route(
            "/om",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0",
                    )],
                    "a_total 1\n# EOF\n",
                )
            }),
        )
        .route("/big", get(|| async { "x 1\n".repeat(100_000) }))
        .route(
            "/err",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late 1\n"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn json_at_metrics_falls_back_to_the_prometheus_path() {
    let base = serve().await;
    let c = scrape_client();
    let p = fetch(&c, &format!("{base}/metrics"), T, 1 << 20)
        .await
        .unwrap();
    assert_eq!(p.url, format!("{base}/prometheus/metrics"));
    assert_eq!(&p.body[..], b"trtllm_requests_total 3\n");
    assert_eq!(p.format, Format::Prometheus);
    // No fallback from other paths: the JSON is reported.
    let e = fetch(&c, &format!("{base}/json/metrics"), T, 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::NotText("JSON"));
    assert_eq!(
        e.to_string(),
        "the endpoint serves JSON, not the Prometheus text format"
    );
}

#[tokio::test]
async fn formats_caps_statuses_and_dead_endpoints() {
    let base = serve().await;
    let c = scrape_client();
    let om = fetch(&c, &format!("{base}/om"), T, 1 << 20).await.unwrap();
    assert_eq!(om.format, Format::OpenMetrics);
    assert_eq!(
        fetch(&c, &format!("{base}/big"), T, 1 << 16)
            .await
            .unwrap_err(),
        FetchError::TooLarge(1 << 16)
    );
    assert!(fetch(&c, &format!("{base}/big"), T, 1 << 20).await.is_ok());
    assert_eq!(
        fetch(&c, &format!("{base}/err"), T, 1 << 20)
            .await
            .unwrap_err(),
        FetchError::Status(503)
    );
    let slow = fetch(
        &c,
        &format!("{base}/slow"),
        Duration::from_millis(200),
        1 << 20,
    )
    .await
    .unwrap_err();
    assert_eq!(slow, FetchError::Timeout(Duration::from_millis(200)));
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", dead.local_addr().unwrap());
    drop(dead);
    let e = fetch(&c, &url, T, 1 << 20).await.unwrap_err();
    assert_eq!(e.category(), "connect", "{e}");
    assert!(matches!(
        fetch(&c, "not a url", T, 10).await,
        Err(FetchError::BadUrl(_))
    ));
}
