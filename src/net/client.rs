//! The one HTTP/1.1 client setup every role uses: the load generator's
//! requests, the scraper, the controller's calls to its workers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client whose pool keeps `max_idle` connections per host.
pub fn http_client(max_idle: usize) -> HttpClient {
    pooled_client(max_idle, Duration::from_secs(10))
}

/// An HTTP/1.1 client with Nagle off, a connect timeout and `max_idle` pooled
/// connections per host, for any request body type (the scraper uses it too).
pub fn pooled_client<B>(max_idle: usize, connect_timeout: Duration) -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

/// An error and its sources, outermost first ("client error (Connect): tcp
/// connect error: Connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
