//! Encryption to the server: the ONE rustls `ClientConfig` that both the HTTP calls
//! (reqwest) and the feed's WebSocket (tokio-tungstenite) use for `https://` and `wss://`,
//! what a TLS failure means in our terms, and the warning for an address in clear text.
//!
//! Trusted: the system's roots (loaded once per process) plus an optional clinic CA file
//! (PEM), for a clinic that signs its server's certificate itself. Crypto: rustls with the
//! `ring` provider. A certificate that does not check out is an error
//! ([`SyncError::Certificate`], code `untrusted_certificate`); nothing ever falls back to
//! clear text: an `https://` address only ever speaks TLS.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::error::SyncError;

/// The client side of TLS for one server: the system's roots, plus the certificates of
/// `ca_file` (PEM) if given. An unreadable CA file, or one without a certificate, is an
/// error ([`SyncError::CaFile`]): ignoring it would only move the failure to a more
/// puzzling place.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, SyncError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        for cert in ca_certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| SyncError::CaFile(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SyncError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM file; at least one.
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, SyncError> {
    let bytes = std::fs::read(path)
        .map_err(|e| SyncError::CaFile(format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SyncError::CaFile(format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SyncError::CaFile(format!(
            "{} holds no certificate (\"-----BEGIN CERTIFICATE-----\")",
            path.display()
        )));
    }
    Ok(certs)
}

/// The system's trusted roots, read once per process (a few hundred files on some
/// systems). None found is not an error here: a clinic CA file may be all that is needed,
/// and a server nobody vouches for is refused all the same.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("could not load some of the system's trusted certificates: {e}");
        }
        found.certs
    })
}

/// A TLS failure somewhere in `error`'s chain of causes, as our error; `None` if the
/// failure has nothing to do with TLS.
///
/// (Walked by hand: an `io::Error` wrapping rustls' error reports the wrapped error's own
/// source as its source, skipping the rustls error itself.)
pub(crate) fn tls_failure(error: &(dyn StdError + 'static)) -> Option<SyncError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(from_rustls(tls));
        }
        // An io::Error made from another error: look at that error itself, not at its
        // source, which is what `io::Error::source` gives.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

fn from_rustls(error: &rustls::Error) -> SyncError {
    match error {
        rustls::Error::InvalidCertificate(why) => SyncError::Certificate(certificate_words(why)),
        rustls::Error::InvalidMessage(_) => SyncError::Tls(
            "the server did not answer in TLS (does it serve https:// on this port?)".into(),
        ),
        other => SyncError::Tls(other.to_string()),
    }
}

fn certificate_words(why: &CertificateError) -> String {
    match why {
        CertificateError::UnknownIssuer => {
            "it is signed by an authority this computer does not trust".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (is this computer's clock right?)".into()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "it was made for another address".into()
        }
        CertificateError::Revoked => "it has been revoked".into(),
        CertificateError::BadSignature => "its signature does not check out".into(),
        other => format!("{other:?}"),
    }
}

/// A warning in words if `url` would carry passwords, session tokens and patient details
/// in clear text across a network: an `http://` address of any host but this computer
/// (`localhost`, `127.0.0.0/8`, `::1`). `None` for `https://`, for loopback, and for
/// what is not an http(s) address at all (signing in says what is wrong with those).
pub fn insecure_address_warning(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    if parsed.scheme() != "http" {
        return None;
    }
    // IPv6 hosts come in brackets; names come lowercased.
    let host = parsed.host_str()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.');
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    (!loopback).then(|| {
        format!(
            "This address is not encrypted (http://): your password, your session and \
             patients' details would cross the network to {host} readable by anyone on the \
             way. Use the server's https:// address."
        )
    })
}
