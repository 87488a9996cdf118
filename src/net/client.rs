//! The one HTTP client setup every role uses: the load generator's requests,
//! the scraper, the controller's calls to its workers. `http://` is HTTP/1.1;
//! `https://` is TLS ([`super::tls`]) with HTTP/2 where the server offers it
//! through ALPN (gateways often do), HTTP/1.1 otherwise. Over HTTP/1.1 the pool
//! keeps one connection per stream in flight; HTTP/2 multiplexes them.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use std::sync::Arc;

use super::conn::{Habits, WatchingConnector};
use super::tls::{TlsOptions, client_config};

/// Plain TCP, or TLS for `https://` URLs, each connection watched for the
/// server's close ([`super::conn`]).
pub type Connector = WatchingConnector;

pub type HttpClient = Client<Connector, Full<Bytes>>;

/// A client whose pool keeps `max_idle` connections per host; HTTPS verified
/// against the system's roots.
pub fn http_client(max_idle: usize) -> HttpClient {
    pooled_client(max_idle, Duration::from_secs(10), &default_tls(), None)
}

/// [`http_client`] with the TLS options given (a CA bundle, a client
/// certificate, no verification); an error when they cannot be used.
pub fn http_client_tls(max_idle: usize, tls: &TlsOptions) -> Result<HttpClient, String> {
    watched_client_tls(max_idle, tls, Arc::default())
}

/// [`http_client_tls`] whose connections record what they see of the
/// server's ways in `habits` (shared with other clients).
pub fn watched_client_tls(
    max_idle: usize,
    tls: &TlsOptions,
    habits: Arc<Habits>,
) -> Result<HttpClient, String> {
    Ok(watched_client(
        max_idle,
        Duration::from_secs(10),
        &client_config(tls)?,
        named(tls)?,
        habits,
    ))
}

/// The server name `tls` verifies against instead of the URL's host.
pub fn named(tls: &TlsOptions) -> Result<Option<rustls::pki_types::ServerName<'static>>, String> {
    tls.server_name
        .as_deref()
        .map(super::tls::server_name)
        .transpose()
}

/// The configuration without options: the system's roots, no client
/// certificate. Built once: every client shares its store of the system's
/// trust anchors (the controller makes clients per run). Building it
/// cannot fail: ring supports the default protocol versions.
pub fn default_tls() -> rustls::ClientConfig {
    static DEFAULT: std::sync::OnceLock<rustls::ClientConfig> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            client_config(&TlsOptions::default()).expect("the default TLS configuration builds")
        })
        .clone()
}

/// A client with Nagle off, a connect timeout and `max_idle` pooled
/// connections per host, for any request body type (the scraper uses it too);
/// certificates verified for `server_name` when given, else the URL's host.
pub fn pooled_client<B>(
    max_idle: usize,
    connect_timeout: Duration,
    tls: &rustls::ClientConfig,
    server_name: Option<rustls::pki_types::ServerName<'static>>,
) -> Client<Connector, B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    watched_client(max_idle, connect_timeout, tls, server_name, Arc::default())
}

fn watched_client<B>(
    max_idle: usize,
    connect_timeout: Duration,
    tls: &rustls::ClientConfig,
    server_name: Option<rustls::pki_types::ServerName<'static>>,
    habits: Arc<Habits>,
) -> Client<Connector, B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    // The TLS layer takes https; the TCP connector must let it through.
    http.enforce_http(false);
    let mut builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http();
    if let Some(name) = server_name {
        builder =
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let connector = WatchingConnector {
        inner: builder.enable_http1().enable_http2().wrap_connector(http),
        habits,
    };
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
