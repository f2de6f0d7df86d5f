//! A webhook receiver in the test process, on its own runtime so tests stay
//! plain `#[test]`s that also drive child processes: HTTP/1.1 over TCP, or
//! over TLS with a server certificate for `localhost`/`127.0.0.1` signed by
//! a CA made here with `rcgen`. It records every request and answers the
//! scripted statuses first, then 200.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::server::PATIENCE;

/// The most a test request may hold (headers and body).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A CA made for one test, and a server certificate it signed.
pub struct TestCa {
    /// The CA certificate, PEM: what `SSL_CERT_FILE` points at.
    pub pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().expect("a server key");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let server = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&server_key, &issuer)
            .expect("the server certificate");
        TestCa {
            pem: ca_cert.pem(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    /// Writes the CA's PEM to `path` (for `SSL_CERT_FILE`).
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.pem).expect("write the CA bundle");
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .expect("a server TLS config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

#[derive(Clone, Default)]
struct Log {
    requests: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<VecDeque<u16>>>,
}

/// A running receiver; stops with its runtime when dropped.
pub struct Receiver {
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    scheme: &'static str,
    log: Log,
}

impl Receiver {
    /// Plain HTTP on a free loopback port.
    pub fn plain() -> Receiver {
        Receiver::start(None)
    }

    /// HTTPS on a free loopback port, with a certificate `ca` signed.
    pub fn tls(ca: &TestCa) -> Receiver {
        Receiver::start(Some(ca.acceptor()))
    }

    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        let log = Log::default();
        let scheme = if tls.is_some() { "https" } else { "http" };
        runtime.spawn(accept_loop(listener, tls, log.clone()));
        Receiver {
            _runtime: runtime,
            addr,
            scheme,
            log,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `scheme://host:port/hook`.
    pub fn url(&self, host: &str) -> String {
        format!("{}://{host}:{}/hook", self.scheme, self.port())
    }

    /// The next `times` requests are answered `status`.
    pub fn fail_next(&self, status: u16, times: usize) {
        let mut replies = self.log.replies.lock().unwrap();
        replies.extend(std::iter::repeat_n(status, times));
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited for {n} requests, got {}",
                requests.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, log: Log) {
    while let Ok((stream, _)) = listener.accept().await {
        let log = log.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, log).await;
                    }
                }
                None => serve(stream, log).await,
            }
        });
    }
}

/// Answers requests on one connection until it closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, log: Log) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        log.requests.lock().unwrap().push(request);
        let status = log.replies.lock().unwrap().pop_front().unwrap_or(200);
        let answer = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One HTTP/1.1 request with a `content-length` body; `None` at the end.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<Received> {
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        read_more(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + 4 + length {
        read_more(stream, buffer).await?;
    }
    let body = String::from_utf8_lossy(&buffer[head_end + 4..head_end + 4 + length]).into_owned();
    buffer.drain(..head_end + 4 + length);
    Some(Received {
        path,
        headers,
        body,
    })
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await.ok()?;
    if n == 0 || buffer.len() + n > MAX_REQUEST_BYTES {
        return None;
    }
    buffer.extend_from_slice(&chunk[..n]);
    Some(())
}
