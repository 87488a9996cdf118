//! Readiness checks: an HTTP/1.1 GET that reads only the status line, and a TCP
//! connect. Written by hand because a probe needs nothing more, and a full HTTP
//! client would only add weight to a test fixture.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `path` from `addr` (`host:port`) and returns the status code.
pub async fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<u16> {
    tokio::time::timeout(timeout, async {
        let mut s = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: benchrun-e2e-probe\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let read = s.read(&mut buf[n..]).await?;
            if read == 0 {
                break;
            }
            n += read;
        }
        status_code(&buf[..n])
    })
    .await
    .context("probe timed out")?
}

/// Whether a TCP connection to `addr` opens within `timeout`.
pub async fn tcp(addr: &str, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

fn status_code(head: &[u8]) -> Result<u16> {
    let text = std::str::from_utf8(head).unwrap_or("");
    let mut parts = text.split(' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code
            .get(..3)
            .unwrap_or(code)
            .parse()
            .context("status code")?),
        _ => bail!("not an HTTP/1.x response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable").unwrap(),
            503
        );
        assert!(status_code(b"SSH-2.0-OpenSSH").is_err());
        assert!(status_code(b"").is_err());
    }

    #[tokio::test]
    async fn gets_a_status_from_a_real_socket() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET /ready HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
        });
        assert_eq!(
            http_get(&addr, "/ready", Duration::from_secs(5))
                .await
                .unwrap(),
            204
        );
    }

    #[tokio::test]
    async fn tcp_tells_open_from_closed_ports() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert!(tcp(&addr, Duration::from_secs(1)).await);
        drop(l);
        assert!(!tcp(&addr, Duration::from_secs(1)).await);
    }
}
