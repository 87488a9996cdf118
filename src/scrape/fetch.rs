//! Fetching one `/metrics` payload over HTTP: bounded in time and size, and
//! honest about what came back.
//!
//! Some servers answer `/metrics` with something other than the text format:
//! TRT-LLM serves JSON there and the Prometheus text under
//! `/prometheus/metrics`. A JSON (or HTML) body is recognised and reported as
//! such, and when the path was `/metrics` the Prometheus path is tried.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;

use super::parse::Format;
use crate::net::client::Connector;
use crate::net::tls::TlsOptions;

/// Default cap on one payload (a 8-GPU dcgm page with profiling is ~100 KiB).
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

/// A client for scraping (`http://` and `https://`), and the
/// `Authorization` it sends, if any.
#[derive(Clone)]
pub struct ScrapeClient {
    client: Client<Connector, Empty<Bytes>>,
    /// Marked sensitive: never shown by `Debug`, and kept out of HTTP/2's
    /// header compression tables.
    authorization: Option<hyper::header::HeaderValue>,
}

impl ScrapeClient {
    /// This client, sending `Authorization: <value>` with every request.
    /// A value that cannot be a header (a control character, a line break)
    /// is refused with the reason, never with the value.
    pub fn with_authorization(mut self, value: &str) -> Result<Self, String> {
        let mut v = hyper::header::HeaderValue::from_str(value).map_err(|_| {
            "the credential holds a character a header cannot carry (a line break?)".to_string()
        })?;
        v.set_sensitive(true);
        self.authorization = Some(v);
        Ok(self)
    }
}

/// HTTPS verified against the system's roots.
pub fn scrape_client() -> ScrapeClient {
    ScrapeClient {
        client: crate::net::client::pooled_client(
            2,
            Duration::from_secs(5),
            &crate::net::client::default_tls(),
            None,
        ),
        authorization: None,
    }
}

/// A client with the TLS options given (a CA bundle, no verification).
pub fn scrape_client_tls(tls: &TlsOptions) -> Result<ScrapeClient, String> {
    Ok(ScrapeClient {
        client: crate::net::client::pooled_client(
            2,
            Duration::from_secs(5),
            &crate::net::tls::client_config(tls)?,
            crate::net::client::named(tls)?,
        ),
        authorization: None,
    })
}

/// One fetched payload in a text format.
#[derive(Clone, Debug)]
pub struct Payload {
    /// The URL that answered (the fallback path when it was used).
    pub url: String,
    pub body: Bytes,
    pub format: Format,
}

/// Why no payload came back.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("invalid URL {:?}", crate::net::redact_url(.0))]
    BadUrl(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("payload larger than the {0}-byte cap")]
    TooLarge(usize),
    #[error("the endpoint serves {0}, not the Prometheus text format")]
    NotText(&'static str),
    #[error("not kept: the pages of this scrape round passed {} MiB together", .0 >> 20)]
    RoundFull(usize),
}

/// Labels of the scrape counter: the kind of endpoint and the outcome
/// (`ok`, or a [`FetchError::category`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ScrapeLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

/// Labels of the scrape duration: the kind of endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

type Counters = prometheus_client::metrics::family::Family<
    ScrapeLabels,
    prometheus_client::metrics::counter::Counter,
>;
type Durations = prometheus_client::metrics::family::Family<
    KindLabels,
    prometheus_client::metrics::histogram::Histogram,
    fn() -> prometheus_client::metrics::histogram::Histogram,
>;

/// Scrapes by runs, all runs together, by kind and outcome.
pub static SCRAPES: std::sync::LazyLock<Counters> = std::sync::LazyLock::new(Counters::default);

/// How long scrapes took, by kind (1 ms to 16 s).
pub static SCRAPE_SECONDS: std::sync::LazyLock<Durations> = std::sync::LazyLock::new(|| {
    Durations::new_with_constructor(|| {
        prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        )
    })
});

/// Counts one scrape of a `kind` endpoint that took `seconds`.
pub fn record(kind: &'static str, seconds: f64, outcome: Result<(), &FetchError>) {
    let outcome = outcome.map_or_else(FetchError::category, |()| "ok");
    SCRAPES.get_or_create(&ScrapeLabels { kind, outcome }).inc();
    SCRAPE_SECONDS
        .get_or_create(&KindLabels { kind })
        .observe(seconds);
}

impl FetchError {
    /// A fixed, low-cardinality name for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_url",
            FetchError::Connect(_) => "connect",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::NotText(_) => "not_text",
            FetchError::RoundFull(_) => "round_full",
        }
    }
}

/// What a body is, judged by its Content-Type and its first bytes.
pub fn sniff(content_type: Option<&str>, body: &[u8]) -> Result<Format, &'static str> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let head = body.trim_ascii_start();
    if ct.contains("json") || head.starts_with(b"{") || head.starts_with(b"[") {
        return Err("JSON");
    }
    if ct.contains("html") || head.starts_with(b"<") {
        return Err("HTML");
    }
    if ct.contains("protobuf") {
        return Err("protobuf");
    }
    Ok(Format::detect(Some(&ct), body))
}

/// GETs `url`; on a JSON or HTML answer at `/metrics`, tries `/prometheus/metrics`.
pub async fn fetch(
    client: &ScrapeClient,
    url: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Payload, FetchError> {
    match fetch_one(client, url, timeout, max_bytes).await {
        Err(FetchError::NotText(what)) => match fallback_url(url) {
            Some(alt) => fetch_one(client, &alt, timeout, max_bytes)
                .await
                .map_err(|_| FetchError::NotText(what)),
            None => Err(FetchError::NotText(what)),
        },
        other => other,
    }
}

/// `http://h:p/metrics` → `http://h:p/prometheus/metrics`.
fn fallback_url(url: &str) -> Option<String> {
    url.strip_suffix("/metrics")
        .filter(|base| !base.ends_with("/prometheus"))
        .map(|base| format!("{base}/prometheus/metrics"))
}

async fn fetch_one(
    client: &ScrapeClient,
    url: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Payload, FetchError> {
    let uri: hyper::Uri = url.parse().map_err(|_| FetchError::BadUrl(url.into()))?;
    let mut req = hyper::Request::get(uri).header(
        hyper::header::ACCEPT,
        "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
    );
    if let Some(v) = &client.authorization {
        req = req.header(hyper::header::AUTHORIZATION, v.clone());
    }
    let req = req
        .body(Empty::new())
        .map_err(|_| FetchError::BadUrl(url.into()))?;
    let work = async {
        let resp = client
            .client
            .request(req)
            .await
            .map_err(|e| FetchError::Connect(crate::net::client::error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| FetchError::Connect(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > max_bytes {
                    return Err(FetchError::TooLarge(max_bytes));
                }
                buf.extend_from_slice(&data);
            }
        }
        let body = buf.freeze();
        let format = sniff(content_type.as_deref(), &body).map_err(FetchError::NotText)?;
        Ok(Payload {
            url: url.to_string(),
            body,
            format,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_json_html_and_text() {
        assert_eq!(sniff(Some("application/json"), b"{}"), Err("JSON"));
        assert_eq!(sniff(None, b"  [{\"a\":1}]"), Err("JSON"));
        assert_eq!(sniff(Some("text/html"), b"<html>"), Err("HTML"));
        assert_eq!(
            sniff(Some("text/plain; version=0.0.4"), b"a 1\n"),
            Ok(Format::Prometheus)
        );
        assert_eq!(
            sniff(
                Some("application/openmetrics-text; version=1.0.0"),
                b"a 1\n"
            ),
            Ok(Format::OpenMetrics)
        );
        assert_eq!(sniff(None, b"a_total 1\n# EOF\n"), Ok(Format::OpenMetrics));
    }

    /// The credential goes with every scrape (the fallback path too); a value
    /// no header can carry is refused without being shown.
    #[tokio::test]
    async fn a_client_with_credentials_sends_them_with_every_request() {
        use axum::http::HeaderMap;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(|| async { ([("content-type", "application/json")], "{}") }),
            )
            .route(
                "/prometheus/metrics",
                axum::routing::get(move |h: HeaderMap| {
                    let log = log.clone();
                    async move {
                        let auth = h
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let ok = auth == "Bearer t0k";
                        log.lock().unwrap().push(auth);
                        if ok {
                            (axum::http::StatusCode::OK, "up 1\n")
                        } else {
                            (axum::http::StatusCode::UNAUTHORIZED, "")
                        }
                    }
                }),
            );
        let base = crate::net::testing::start(app).await;
        let url = format!("{base}/metrics");
        let t = Duration::from_secs(5);
        let plain = fetch(&scrape_client(), &url, t, 1 << 20).await;
        assert!(plain.is_err(), "{plain:?}");
        let client = scrape_client().with_authorization("Bearer t0k").unwrap();
        let p = fetch(&client, &url, t, 1 << 20).await.unwrap();
        assert_eq!(&p.body[..], b"up 1\n");
        assert_eq!(*seen.lock().unwrap(), ["", "Bearer t0k"]);
        let bad = scrape_client()
            .with_authorization("Bearer a\nX-Evil: 1")
            .err()
            .unwrap();
        assert!(!bad.contains("Evil"), "{bad}");
    }

    #[test]
    fn falls_back_only_from_the_plain_metrics_path() {
        assert_eq!(
            fallback_url("http://10.0.0.1:8000/metrics").as_deref(),
            Some("http://10.0.0.1:8000/prometheus/metrics")
        );
        assert_eq!(fallback_url("http://h/prometheus/metrics"), None);
        assert_eq!(fallback_url("http://h/stats"), None);
    }
}
