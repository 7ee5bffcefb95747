//! HTTPS and WSS on the listener (`--tls-cert`, `--tls-key`), with a
//! self-signed certificate made here (rcgen) and real TLS clients
//! (tokio-rustls' connector under the fastwebsockets client, and a raw
//! HTTPS GET); bad files fail at start with a message naming the flag.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use common::*;
use rustls_pki_types::ServerName;
use tickwire::server::admission::RejectReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A certificate for `localhost` and its key, as PEM files in a fresh dir.
struct Certs {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    der: rustls_pki_types::CertificateDer<'static>,
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("tickwire-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        Certs {
            dir,
            cert,
            key,
            der: ck.cert.der().clone(),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.to_str().unwrap().into(),
            "--tls-key".into(),
            self.key.to_str().unwrap().into(),
        ]
    }

    fn connector(&self) -> TlsConnector {
        tickwire::server::tls::install_provider();
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_server(certs: &Certs) -> TestServer {
    let mut args: Vec<String> = ["--synthetic", "3", "--rate", "100"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(certs.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_streams_and_https_answers() {
    let certs = Certs::new("ok");
    let server = tls_server(&certs).await;
    let connector = certs.connector();
    let name = ServerName::try_from("localhost").unwrap();

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = within(connector.connect(name.clone(), tcp)).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let authority = format!("localhost:{}", server.addr.port());
    let mut c = Client::connect_over(tls, &authority, "/ws?symbols=*", &[]).await;
    c.json_of("subscribed").await;
    let mut check = SeqCheck::default();
    while check.ticks < 200 {
        let v = c.json().await;
        if v["type"] == "tick" || v["type"] == "snapshot" {
            check.see(&v);
        }
    }
    // The browser's same-origin check knows the scheme is https.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = within(connector.connect(name.clone(), tcp)).await.unwrap();
    let own = format!("https://{authority}");
    Client::connect_over(tls, &authority, "/ws", &[("Origin", &own)]).await;

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = within(connector.connect(name, tcp)).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    within(tls.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");

    // Plain HTTP to the TLS port is refused (a failed handshake, counted).
    let r = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut r = r;
    r.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = within(r.read_to_end(&mut raw)).await;
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"));
    server
        .until("the failed handshake to be counted", |hub| {
            hub.metrics().rejected(RejectReason::Tls) == 1
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_fail_at_start_saying_what_to_fix() {
    let a = Certs::new("a");
    let b = Certs::new("b");
    let bind = |args: Vec<String>| async move {
        let mut argv = vec![
            "tickwire".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        argv.extend(args);
        tickwire::server::Server::bind(tickwire::config::Config::parse_from(argv))
            .await
            .err()
            .map(|e| e.to_string())
            .expect("the server must refuse to start")
    };
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    let e = bind(vec![
        "--tls-cert".into(),
        "/nonexistent.pem".into(),
        "--tls-key".into(),
        path(&a.key),
    ])
    .await;
    assert!(
        e.contains("--tls-cert") && e.contains("/nonexistent.pem"),
        "{e}"
    );
    let e = bind(vec![
        "--tls-cert".into(),
        path(&a.cert),
        "--tls-key".into(),
        "/nonexistent.key".into(),
    ])
    .await;
    assert!(e.contains("--tls-key"), "{e}");
    // The key of another certificate.
    let e = bind(vec![
        "--tls-cert".into(),
        path(&a.cert),
        "--tls-key".into(),
        path(&b.key),
    ])
    .await;
    assert!(e.contains("does not go with the certificate"), "{e}");
    // A key file given as the certificate.
    let e = bind(vec![
        "--tls-cert".into(),
        path(&a.key),
        "--tls-key".into(),
        path(&a.key),
    ])
    .await;
    assert!(e.contains("no certificate"), "{e}");
}
