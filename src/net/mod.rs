//! Serving HTTP from the roles that run in pods (simulators, load-generator
//! workers): which address to bind, and Nagle off; and how a URL from a spec
//! may be shown. [`client`] is the HTTP client every role sends with.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub mod client;
pub mod conn;
pub mod tls;

/// The address to serve on: `--host`, else the pod's own IP (`POD_IP`, as the
/// chart and the Kubernetes downward API give it), else every interface.
pub fn listen_addr(host: Option<IpAddr>, port: u16) -> SocketAddr {
    let ip = host
        .or_else(|| std::env::var("POD_IP").ok()?.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, port)
}

/// `url` as conditions, events, logs and results may show it: a
/// `user:password@` becomes `***@` and every query value `***` (tokens ride
/// there too), so credentials written into a URL never leave the spec. The
/// fragment is dropped. Text that is not a URL comes back as it was.
pub fn redact_url(url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}=***"),
                    None => pair.to_string(),
                })
                .collect::<Vec<_>>()
                .join("&");
            format!("{path}?{query}")
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

/// `text` with every http(s) URL in it redacted as [`redact_url`] does
/// (credentials and query values): for messages that quote what a server,
/// a worker or a spec said before they reach a condition, an event or a log.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_url(rest) {
        out.push_str(&rest[..at]);
        let url = &rest[at..];
        let end = url
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | ',')
            })
            .unwrap_or(url.len());
        out.push_str(&redact_url(&url[..end]));
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

/// Where the next `http://` or `https://` begins, in any case.
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

/// `text` redacted ([`redact_text`]) and cut to at most `max` bytes at a
/// character boundary, saying how much was left out: what a peer says is
/// quoted, never at any length.
pub fn bounded(text: &str, max: usize) -> String {
    let text = redact_text(text);
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &text[..end], text.len() - end)
}

/// [`bounded`], keeping the end: for a log's tail, whose last lines say
/// why it ended.
pub fn bounded_tail(text: &str, max: usize) -> String {
    let text = redact_text(text);
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("(… {} bytes before) {}", start, &text[start..])
}

/// How much of a peer's message (a worker's, a server's) is quoted.
pub const MAX_QUOTED_BYTES: usize = 1024;

/// Binds `addr`, saying which address could not be bound when it fails.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Serves `app` with Nagle's algorithm off: a token chunk must leave when it
/// is written, not when the client's delayed ACK for the previous one arrives
/// (up to 40 ms later on Linux, which would land in every TTFT).
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> Result<(), String> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// Serves `app` over TLS with `cfg` until the listener fails; each
/// connection HTTP/2 or HTTP/1.1 as ALPN settled it.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cfg: rustls::ServerConfig,
) -> Result<(), String> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    loop {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that fails the handshake is its own affair.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// `host:port` of a URL (the scheme's port when none is written), lowercased;
/// a bare `host:port` (as the status records them) is returned as it is.
pub fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, url),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?.to_ascii_lowercase();
    if authority.is_empty() {
        return None;
    }
    // The port is what follows the last colon outside brackets.
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        return Some(authority);
    }
    let port = match scheme.as_deref() {
        Some("https") => 443,
        _ => 80,
    };
    Some(format!("{authority}:{port}"))
}

/// The `Hostname` label an exporter writes: the flag, else the node's name
/// (`NODE_NAME`, from the downward API), else the machine's host name.
pub fn exporter_hostname(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("NODE_NAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Test helpers: serve a router on a free loopback port; GET a body as text.
#[cfg(test)]
pub(crate) mod testing {
    pub async fn start(app: axum::Router) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(super::serve(l, app));
        format!("http://{addr}")
    }

    pub async fn get(url: &str) -> String {
        let client = crate::net::client::http_client(4);
        let resp = client
            .get(url.parse().unwrap())
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        String::from_utf8(body.to_bytes().to_vec()).unwrap()
    }

    /// The status of a `method` request to `url` with an empty body.
    pub async fn status_of(method: &str, url: &str) -> u16 {
        let client = crate::net::client::http_client(4);
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .body(http_body_util::Full::default())
            .unwrap();
        let resp = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        resp.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::{bounded, bounded_tail, redact_text, redact_url};

    #[test]
    fn urls_in_free_text_are_redacted_and_quotes_bounded() {
        assert_eq!(
            redact_text("GET HTTP://admin:hunter2@h:9/m?token=abc failed: refused"),
            "GET HTTP://***@h:9/m?token=*** failed: refused"
        );
        assert_eq!(
            redact_text("(\"https://u:p@a/x\", http://b/y) and no-url"),
            "(\"https://***@a/x\", http://b/y) and no-url"
        );
        assert_eq!(redact_text("plain"), "plain");
        // Already redacted text stays as it is.
        let once = redact_text("https://u:p@a/x?k=v");
        assert_eq!(redact_text(&once), once);
        let long = "é".repeat(1000);
        let cut = bounded(&long, 1025);
        assert!(cut.starts_with(&"é".repeat(512)), "{cut}");
        assert!(cut.ends_with("… (976 bytes more)"), "{cut}");
        assert_eq!(bounded("short http://u:p@h/", 100), "short http://***@h/");
        let tail = bounded_tail(&format!("{}\nfailed: http://u:p@h/x", "é".repeat(1000)), 30);
        assert!(tail.starts_with("(… 1994 bytes before) "), "{tail}");
        assert!(tail.ends_with("\nfailed: http://***@h/x"), "{tail}");
        assert_eq!(bounded_tail("short", 100), "short");
    }

    #[test]
    fn credentials_in_a_url_are_never_shown() {
        assert_eq!(
            redact_url("http://user:pw@vllm.llm.svc:8000/v1?api_key=sk-1&x=1#frag"),
            "http://***@vllm.llm.svc:8000/v1?api_key=***&x=***"
        );
        assert_eq!(
            redact_url("https://h/metrics?token=abc"),
            "https://h/metrics?token=***"
        );
        // Nothing to hide: unchanged.
        for plain in [
            "http://10.0.0.7:9400/metrics",
            "http://[fd00::1]:80/",
            "not a url",
        ] {
            assert_eq!(redact_url(plain), plain);
        }
    }
}
