//! Serving HTTP from the roles that run in pods (simulators, load-generator
//! workers): which address to bind, and Nagle off.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address to serve on: `--host`, else the pod's own IP (`POD_IP`, as the
/// chart and the Kubernetes downward API give it), else every interface.
pub fn listen_addr(host: Option<IpAddr>, port: u16) -> SocketAddr {
    let ip = host
        .or_else(|| std::env::var("POD_IP").ok()?.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, port)
}

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
