//! TLS served by the server itself (`--tls-cert FILE --tls-key FILE`, PEM): the
//! certificate and key as a [`TlsConfig`], and a listener that hands axum connections
//! after their TLS handshake, so that [`crate::serve_tls`] is [`crate::serve`] with
//! encryption: same routes, graceful shutdown, `ConnectInfo<SocketAddr>`, feeds over `wss://`.
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1` (the feed's WebSocket
//! upgrade is HTTP/1.1). Handshakes run concurrently, each in its own task with a deadline,
//! so a slow or silent client never holds up the others.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::ServerError;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Handshakes under way at most; past that, new connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// A certificate chain and its private key, ready to serve. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// From PEM files: `cert` holds the server's certificate first, then any intermediate
    /// ones; `key` its private key (PKCS#8, PKCS#1 or SEC1). Every failure names the file
    /// and what is wrong with it.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig, ServerError> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| ServerError::Tls(format!("cannot read {}: {e}", path.display())))
        };
        let chain = certificates(&read(cert)?)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
        let key_der = private_key(&read(key)?)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
        TlsConfig::new(chain, key_der).map_err(|e| {
            ServerError::Tls(format!(
                "{} and {} do not make a certificate to serve: {e}",
                cert.display(),
                key.display()
            ))
        })
    }

    /// From PEM text (what [`TlsConfig::from_pem_files`] reads).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsConfig, ServerError> {
        let chain = certificates(cert_chain)
            .map_err(|e| ServerError::Tls(format!("the certificate: {e}")))?;
        let key_der =
            private_key(key).map_err(|e| ServerError::Tls(format!("the private key: {e}")))?;
        TlsConfig::new(chain, key_der).map_err(ServerError::Tls)
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            // Also checks that the key is the certificate's.
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in it (\"-----BEGIN CERTIFICATE-----\")".into());
    }
    Ok(chain)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no private key in it (\"-----BEGIN PRIVATE KEY-----\")".to_owned()
        }
        other => format!("not a PEM private key file: {other}"),
    })
}

/// Accepts TCP connections and yields them once their TLS handshake is done; a failed
/// handshake (a client that does not trust the certificate, speaks plain HTTP, or stays
/// silent) is logged and dropped. Cancel-safe, as axum needs: what is under way stays in
/// the listener between calls of `accept`.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, tls: &TlsConfig) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(tls.config.clone()),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        // Changes are small frames that must leave at once, and so must the handshake's.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("could not set TCP_NODELAY: {e}");
        }
        let accepting = self.acceptor.accept(tcp);
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_WITHIN, accepting).await {
                Ok(Ok(stream)) => Some((stream, peer)),
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!("TLS handshake with {peer} timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, peer)) => self.start_handshake(tcp, peer),
                    Err(e) => accept_failed(e).await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// What axum does for its own TCP listener: a connection that went away before it was
/// accepted is nothing; anything else (out of file descriptors...) is logged and waited
/// out, rather than spinning.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
