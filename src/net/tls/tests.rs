//! HTTPS end to end on this machine: a CA made here, servers that terminate
//! TLS in front of the inference simulator (as a gateway would), and the load
//! generator and the scraper as users run them.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::loadgen::plan::{
    Endpoint, InputPlan, LoadPlan, PemSource, Step, StopCondition, TlsPlan,
};

/// A CA and a certificate it signed for `localhost`, with their keys.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(params, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Self {
            ca_pem: ca.pem(),
            leaf: leaf.der().clone(),
            leaf_key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            issuer,
        }
    }

    /// A client certificate this CA signed: its PEM and its key's.
    fn client(&self) -> (Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["benchrun-loadgen".to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }

    fn server_config(&self, alpn: &[&[u8]], client_ca: Option<&str>) -> ServerConfig {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(certificates(pem.as_bytes(), "ca").unwrap());
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(vec![self.leaf.clone()], self.leaf_key.clone_key())
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

/// Accepts TLS connections with `cfg` and hands each to `serve`; its port.
async fn serve_tls<F, Fut>(cfg: ServerConfig, serve: F) -> u16
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            // Nagle's delay would add tens of ms to every small write.
            let _ = tcp.set_nodelay(true);
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls).await;
                }
            });
        }
    });
    port
}

/// Terminates TLS and passes the bytes to `backend` (HTTP/1.1 only, as a
/// TCP-level gateway does); its port.
async fn tls_proxy(cfg: ServerConfig, backend: SocketAddr) -> u16 {
    serve_tls(cfg, move |mut tls| async move {
        if let Ok(mut up) = TcpStream::connect(backend).await {
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
        }
    })
    .await
}

/// An HTTP/2 server over TLS that answers "h2" to everything; its port.
async fn h2_server(cfg: ServerConfig) -> u16 {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    serve_tls(cfg, |tls| async move {
        let svc = service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                b"h2",
            ))))
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    })
    .await
}

/// The simulator's options: 20 ms to the first token, 5 ms per next, and `more`.
fn sim_opts(more: &[&str]) -> crate::sim::inference::InferenceOpts {
    let timing = ["--ttft", "20ms", "--itl", "5ms"];
    crate::sim::inference::tests::opts(&[&timing[..], more].concat())
}

/// The inference simulator on plain HTTP.
async fn simulator() -> SocketAddr {
    let o = sim_opts(&[]);
    let url = crate::net::testing::start(crate::sim::inference::router(o)).await;
    url.trim_start_matches("http://").parse().unwrap()
}

fn plan(url: String, tls: TlsPlan) -> LoadPlan {
    let mut p = crate::loadgen::request::tests::plan(Endpoint::Chat, true);
    p.urls = vec![url];
    p.steps = vec![Step {
        concurrency: Some(4),
        rate: None,
    }];
    p.stop = StopCondition::Requests(16);
    p.extra_body.clear();
    p.input = InputPlan::Synthetic {
        input_mean: 16,
        input_stddev: 0,
        output_mean: 8,
        output_stddev: 0,
    };
    p.tls = tls;
    p
}

/// One step of 16 requests against `url`, as one worker runs it.
async fn measure(url: String, tls: TlsPlan) -> crate::loadgen::engine::StepResult {
    crate::loadgen::engine::run(&plan(url, tls), 0, None)
        .await
        .unwrap()
        .remove(0)
}

fn write(dir: &std::path::Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("benchrun-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_measures_over_https_as_over_http() {
    let pki = Pki::new();
    let backend = simulator().await;
    let port = tls_proxy(pki.server_config(&[b"http/1.1"], None), backend).await;
    let dir = temp_dir("loadgen");
    let ca = write(&dir, "ca.pem", pki.ca_pem.as_bytes());
    let url = format!("https://localhost:{port}");
    let tls = TlsPlan {
        ca: Some(PemSource::File(ca.clone())),
        ..Default::default()
    };
    let r = &measure(url.clone(), tls).await;
    assert_eq!((r.requests, r.successes), (16, 16), "{:?}", r.error_samples);
    // A loaded machine only adds; the handshakes fall on 4 requests of 16.
    assert!(
        (0.0195..0.028).contains(&r.ttft_s.p50),
        "TTFT p50 {} over TLS, injected 20 ms",
        r.ttft_s.p50
    );

    // Not trusting the CA: every request fails, and says why.
    let r = &measure(url.clone(), TlsPlan::default()).await;
    assert_eq!(r.successes, 0);
    let why = r.error_samples.join("; ");
    assert!(why.contains("certificate"), "{why}");

    // Told to skip verification: it runs.
    let insecure = TlsPlan {
        insecure_skip_verify: true,
        ..Default::default()
    };
    let r = &measure(url, insecure).await;
    assert_eq!(r.successes, 16, "{:?}", r.error_samples);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_asks_for_a_client_certificate_gets_one() {
    let pki = Pki::new();
    let backend = simulator().await;
    let port = tls_proxy(
        pki.server_config(&[b"http/1.1"], Some(&pki.ca_pem)),
        backend,
    )
    .await;
    let dir = temp_dir("mtls");
    let ca = write(&dir, "ca.pem", pki.ca_pem.as_bytes());
    let (cert, key) = pki.client();
    let url = format!("https://localhost:{port}");
    let without = TlsPlan {
        ca: Some(PemSource::File(ca.clone())),
        ..Default::default()
    };
    let r = &measure(url.clone(), without).await;
    assert_eq!(r.successes, 0, "refused without a client certificate");
    let with = TlsPlan {
        ca: Some(PemSource::File(ca)),
        client_cert: Some(PemSource::File(write(&dir, "client.pem", &cert))),
        client_key: Some(PemSource::File(write(&dir, "client.key", &key))),
        ..Default::default()
    };
    let r = &measure(url, with).await;
    assert_eq!(r.successes, 16, "{:?}", r.error_samples);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn http2_where_the_server_offers_it_and_http1_otherwise() {
    let pki = Pki::new();
    let tls = TlsOptions {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        ..Default::default()
    };
    let client = crate::net::client::http_client_tls(4, &tls).unwrap();
    let h2 = h2_server(pki.server_config(&[b"h2", b"http/1.1"], None)).await;
    let resp = client
        .get(format!("https://localhost:{h2}/").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"h2");

    let backend = simulator().await;
    let h1 = tls_proxy(pki.server_config(&[b"http/1.1"], None), backend).await;
    let resp = client
        .get(format!("https://localhost:{h1}/v1/models").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn metrics_are_scraped_over_https() {
    let pki = Pki::new();
    let backend = simulator().await;
    let port = tls_proxy(pki.server_config(&[b"http/1.1"], None), backend).await;
    let url = format!("https://localhost:{port}/metrics");
    let tls = TlsOptions {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        ..Default::default()
    };
    let client = crate::scrape::fetch::scrape_client_tls(&tls).unwrap();
    let p = crate::scrape::fetch::fetch(&client, &url, std::time::Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    assert!(
        std::str::from_utf8(&p.body)
            .unwrap()
            .contains("vllm:num_requests_running"),
        "the simulator's page came through"
    );
    let untrusted = crate::scrape::fetch::scrape_client();
    let err =
        crate::scrape::fetch::fetch(&untrusted, &url, std::time::Duration::from_secs(5), 1 << 20)
            .await
            .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// A server reached by address whose certificate names it by a DNS name (a
/// Service's pods, sent to by address): verified against the name given.
#[tokio::test]
async fn a_certificate_is_verified_against_the_server_name_given() {
    let pki = Pki::new();
    let backend = simulator().await;
    let port = tls_proxy(pki.server_config(&[b"http/1.1"], None), backend).await;
    let by_address = format!("https://127.0.0.1:{port}/metrics");
    let ca = Some(pki.ca_pem.clone().into_bytes());
    let t = std::time::Duration::from_secs(5);
    let fetch = |tls: TlsOptions| {
        let url = by_address.clone();
        async move {
            let client = crate::scrape::fetch::scrape_client_tls(&tls).unwrap();
            crate::scrape::fetch::fetch(&client, &url, t, 1 << 20).await
        }
    };
    let err = fetch(TlsOptions {
        ca_pem: ca.clone(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let named = fetch(TlsOptions {
        ca_pem: ca.clone(),
        server_name: Some("localhost".into()),
        ..Default::default()
    })
    .await;
    assert!(named.is_ok(), "{named:?}");
    // The load generator's client takes the same option from its plan.
    let plan = TlsPlan {
        ca: None,
        server_name: Some("localhost".into()),
        ..Default::default()
    };
    assert_eq!(
        plan.options_from(|_| None).unwrap().server_name.as_deref(),
        Some("localhost")
    );
    let bad = crate::net::client::http_client_tls(
        1,
        &TlsOptions {
            server_name: Some("not a name".into()),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(
        bad.contains("neither a DNS name nor an IP address"),
        "{bad}"
    );
}

#[test]
fn bad_tls_inputs_are_refused_with_the_reason() {
    let none = TlsOptions {
        ca_pem: Some(b"not a certificate".to_vec()),
        ..Default::default()
    };
    assert!(client_config(&none).unwrap_err().contains("CA bundle"));
    let pki = Pki::new();
    let half = crate::loadgen::plan::TlsPlan {
        client_cert: Some(PemSource::File("/nonexistent/cert.pem".into())),
        ..Default::default()
    };
    assert!(half.options().unwrap_err().contains("needs its key"));
    let missing = crate::loadgen::plan::TlsPlan {
        ca: Some(PemSource::File("/nonexistent/ca.pem".into())),
        ..Default::default()
    };
    assert!(
        missing
            .options()
            .unwrap_err()
            .contains("/nonexistent/ca.pem")
    );
    let (cert, _) = pki.client();
    let wrong_key = TlsOptions {
        identity: Some((
            cert,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
        )),
        ..Default::default()
    };
    assert!(client_config(&wrong_key).is_err());
}

/// A Job worker's TLS comes from variables the kubelet filled from the run's
/// Secrets: the plan names them, and a missing one is named.
#[test]
fn a_workers_tls_comes_from_the_variables_its_plan_names() {
    let pki = Pki::new();
    let (cert, key) = pki.client();
    let vars = std::collections::HashMap::from([
        ("CA".to_string(), pki.ca_pem.clone()),
        ("CERT".to_string(), String::from_utf8(cert.clone()).unwrap()),
        ("KEY".to_string(), String::from_utf8(key).unwrap()),
    ]);
    let plan = TlsPlan {
        ca: Some(PemSource::Env("CA".into())),
        client_cert: Some(PemSource::Env("CERT".into())),
        client_key: Some(PemSource::Env("KEY".into())),
        ..Default::default()
    };
    let o = plan.options_from(|v| vars.get(v).cloned()).unwrap();
    assert_eq!(o.ca_pem.as_deref(), Some(pki.ca_pem.as_bytes()));
    assert_eq!(o.identity.as_ref().map(|(c, _)| c.clone()), Some(cert));
    client_config(&o).expect("usable");
    let err = plan.options_from(|_| None).unwrap_err();
    assert!(err.contains("CERT") || err.contains("CA"), "{err}");
}

/// The simulator serving HTTPS itself (HTTP/2 by ALPN) with a token on
/// `/metrics`: the load generator measures over it, and the scraper gets the
/// page with the token and a 401 without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_serves_https_and_guards_its_metrics_with_a_token() {
    let pki = Pki::new();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &pki.issuer)
        .unwrap();
    let dir = temp_dir("sim-serves");
    let token = write(&dir, "token", b"m3trics-t0ken\n");
    let ca = write(&dir, "ca.crt", pki.ca_pem.as_bytes());
    let o = sim_opts(&["--metrics-bearer-token-file", token.to_str().unwrap()]);
    let cfg = super::server_config(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(crate::net::serve_tls(
        l,
        crate::sim::inference::router(o),
        cfg,
    ));
    let base = format!("https://localhost:{port}");
    let trusted = TlsPlan {
        ca: Some(PemSource::File(ca)),
        ..Default::default()
    };
    let r = measure(base.clone(), trusted.clone()).await;
    assert_eq!((r.requests, r.successes), (16, 16), "{:?}", r.error_samples);
    let ttft = r.ttft_s.mean;
    assert!((ttft - 0.020).abs() < 0.015, "TTFT {ttft}");

    let scraper = crate::scrape::fetch::scrape_client_tls(&trusted.options().unwrap()).unwrap();
    let url = format!("{base}/metrics");
    let t = std::time::Duration::from_secs(5);
    let refused = crate::scrape::fetch::fetch(&scraper, &url, t, 1 << 20).await;
    assert!(
        matches!(refused, Err(crate::scrape::fetch::FetchError::Status(401))),
        "{refused:?}"
    );
    let page = crate::scrape::fetch::fetch(
        &scraper.with_authorization("Bearer m3trics-t0ken").unwrap(),
        &url,
        t,
        1 << 20,
    )
    .await
    .unwrap();
    assert!(
        std::str::from_utf8(&page.body)
            .unwrap()
            .contains("vllm:num_requests_running")
    );
    // A key that is no PEM key is refused with the reason.
    let bad = super::server_config(cert.pem().as_bytes(), b"nope").unwrap_err();
    assert!(bad.contains("private key"), "{bad}");
}
