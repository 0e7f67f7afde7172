//! TLS fixtures: a test CA made at test time (rcgen) that issues server and client certificates,
//! a real HTTPS upstream that demands a client certificate signed by that CA and echoes what it
//! received, and a TLS client that shows which certificate and protocol a connection got.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{Resp, ServerThread, read_response, sha256_hex};

/// The ring provider, the only one compiled in; tests build every config with it explicitly.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
}

/// A certificate issued by a [`TestCa`], with its key, in PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

/// What a certificate is for.
#[derive(Clone, Copy)]
pub enum Usage {
    Server,
    Client,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), with a common name of `cn`.
    pub fn issue(&self, cn: &str, names: &[&str], usage: Usage) -> Leaf {
        let key = KeyPair::generate().expect("generate a leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let cert = params.signed_by(&key, &self.issuer).expect("sign a leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn localhost(&self, cn: &str) -> Leaf {
        self.issue(cn, &["localhost", "127.0.0.1"], Usage::Server)
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.cert_pem).expect("write the CA certificate");
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.der.clone())
            .expect("the test CA is a valid root");
        roots
    }
}

impl Leaf {
    /// Writes the certificate and the key to their files (in place).
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).expect("write a certificate");
        std::fs::write(key, &self.key_pem).expect("write a key");
    }

    /// The lowercase hex SHA-256 of the certificate, as the upstream echoes it.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.der)
    }

    fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = vec![CertificateDer::from(self.der.clone())];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("a PEM key");
        (chain, key)
    }
}

/// A TLS acceptor serving `leaf`, asking clients for no certificate.
pub fn plain_acceptor(leaf: &Leaf) -> TlsAcceptor {
    let (chain, key) = leaf.chain_and_key();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the server's certificate");
    TlsAcceptor::from(Arc::new(config))
}

/// Writes `contents` next to `path`, then renames it over `path`: the atomic replacement that
/// deployment tools and editors do.
pub fn replace_by_rename(path: &Path, contents: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, contents).expect("write the staged file");
    std::fs::rename(&staged, path).expect("rename over the old file");
}

// ---------------------------------------------------------------------------------------------
// A Kubernetes-style mounted Secret
// ---------------------------------------------------------------------------------------------

/// A directory laid out as the kubelet mounts a Secret: the data in a timestamped directory,
/// `..data` a symlink to it, and `tls.crt`, `tls.key` symlinks through `..data`. An update
/// writes a new timestamped directory and swaps `..data` with one rename.
pub struct SecretMount {
    pub dir: std::path::PathBuf,
    generation: u32,
}

impl SecretMount {
    pub fn new(dir: &Path, leaf: &Leaf) -> SecretMount {
        std::fs::create_dir_all(dir).expect("create the mount directory");
        let mut mount = SecretMount {
            dir: dir.to_owned(),
            generation: 0,
        };
        let data = mount.write_generation(leaf);
        std::os::unix::fs::symlink(&data, dir.join("..data")).expect("link ..data");
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
                .expect("link a file through ..data");
        }
        mount
    }

    pub fn cert(&self) -> std::path::PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key(&self) -> std::path::PathBuf {
        self.dir.join("tls.key")
    }

    /// The kubelet's update: new data directory, `..data` swapped atomically, old data removed.
    pub fn update(&mut self, leaf: &Leaf) {
        let old = std::fs::read_link(self.dir.join("..data")).expect("read ..data");
        let data = self.write_generation(leaf);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).expect("link ..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        std::fs::remove_dir_all(self.dir.join(old)).expect("remove the old data");
    }

    /// Writes a new timestamped data directory; returns its name (relative, as the kubelet links).
    fn write_generation(&mut self, leaf: &Leaf) -> String {
        self.generation += 1;
        let name = format!(
            "..2026_11_27_21_00_{:02}.{}",
            self.generation,
            std::process::id()
        );
        let data = self.dir.join(&name);
        std::fs::create_dir(&data).expect("create a data directory");
        leaf.write(&data.join("tls.crt"), &data.join("tls.key"));
        name
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTPS upstream
// ---------------------------------------------------------------------------------------------

/// A real HTTPS server on a loopback port that refuses any client without a certificate signed
/// by the test CA, and answers every request with a JSON echo: method, path, headers, the
/// protocol version and the SHA-256 of the client's certificate. Runs on its own thread.
pub struct TlsUpstream {
    server: ServerThread,
}

impl TlsUpstream {
    pub fn start(ca: &TestCa, server: &Leaf) -> TlsUpstream {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(ca.roots()),
            provider(),
        )
        .build()
        .expect("a client verifier");
        let (chain, key) = server.chain_and_key();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("the upstream's certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let server = ServerThread::start("tls-upstream", move |stream| {
            let acceptor = acceptor.clone();
            async move {
                // A client without a good certificate fails here.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let client_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| sha256_hex(c.as_ref()));
                let service = hyper::service::service_fn(move |req| echo(client_cert.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
        TlsUpstream { server }
    }

    /// `https://localhost:PORT`, the name its certificate carries.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.server.addr().port())
    }
}

async fn echo(
    client_cert: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let echo = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
        "client_cert_sha256": client_cert,
    });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(echo.to_string())))
        .expect("valid response"))
}

// ---------------------------------------------------------------------------------------------
// The TLS client
// ---------------------------------------------------------------------------------------------

/// Which HTTP version a client offers by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    H2,
}

/// A TLS client that trusts one test CA.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    pub fn new(ca: &TestCa, alpn: Alpn) -> TlsClient {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        // A resumed session shows the certificate of the handshake that made it: every
        // connection here makes a full handshake, to see the certificate served now.
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = match alpn {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
        };
        TlsClient {
            config: Arc::new(config),
        }
    }

    /// Opens a connection to `addr` checking the name `localhost`, and starts HTTP over it with
    /// the protocol ALPN chose.
    pub async fn connect(&self, addr: SocketAddr) -> Result<TlsConn, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").expect("a valid name");
        let stream = TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, session) = stream.get_ref();
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or("the server presented no certificate")?;
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(stream);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(TlsConn {
            addr,
            peer_cert,
            alpn,
            sender,
        })
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One open TLS connection.
pub struct TlsConn {
    addr: SocketAddr,
    /// The leaf certificate the server presented (DER).
    pub peer_cert: Vec<u8>,
    /// The protocol ALPN chose, if any.
    pub alpn: Option<Vec<u8>>,
    sender: Sender,
}

impl TlsConn {
    pub fn version(&self) -> Version {
        match self.sender {
            Sender::H1(_) => Version::HTTP_11,
            Sender::H2(_) => Version::HTTP_2,
        }
    }

    /// `GET path` with `headers` on this connection.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Resp, String> {
        let authority = format!("localhost:{}", self.addr.port());
        let mut builder = Request::builder().method("GET");
        builder = match self.sender {
            // HTTP/2 carries the target as :scheme and :authority.
            Sender::H2(_) => builder
                .uri(format!("https://{authority}{path}"))
                .version(Version::HTTP_2),
            Sender::H1(_) => builder.uri(path).header("host", &authority),
        };
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(Bytes::new()))
            .expect("a valid test request");
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| format!("connection: {e}"))?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| format!("connection: {e}"))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| format!("request: {e}"))?;
        read_response(resp)
            .await
            .map_err(|e| format!("response body: {e}"))
    }
}

/// What the HTTPS upstream's echo says it received.
pub struct TlsEcho(pub serde_json::Value);

impl TlsEcho {
    pub fn of(resp: &Resp) -> TlsEcho {
        assert_eq!(
            resp.status,
            http::StatusCode::OK,
            "expected the upstream's echo, got {} {:?}",
            resp.status,
            resp.text()
        );
        TlsEcho(resp.json())
    }

    /// Every value of header `name` the upstream received.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .expect("the echo lists headers")
            .iter()
            .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|h| h[1].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn client_cert_sha256(&self) -> Option<&str> {
        self.0["client_cert_sha256"].as_str()
    }

    pub fn version(&self) -> &str {
        self.0["version"].as_str().unwrap_or_default()
    }
}
