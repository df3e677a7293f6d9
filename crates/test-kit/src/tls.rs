//! Certificates made at test time: a clinic certificate authority, as a clinic that signs
//! its server's certificate itself would have, and the server certificates it signs.

use std::path::Path;

use clinic_server::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority of its own, new for each test (so one test's CA is unknown to
/// every other's clients).
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate, what a client trusts (`--ca-file`).
    pem: String,
}

impl TestCa {
    /// A new CA called `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let pem = params.self_signed(&key).expect("the CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA's certificate to `path` (PEM), as a clinic hands it out.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.pem).expect("write the CA file");
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by this CA,
    /// and its private key: `(certificate PEM, key PEM)`, what `--tls-cert` and
    /// `--tls-key` take.
    pub fn server_pem(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "clinic server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the server certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// What a server on loopback serves: a certificate for `127.0.0.1` and `localhost`.
    pub fn loopback_server(&self) -> TlsConfig {
        let (cert, key) = self.server_pem(&["127.0.0.1", "localhost"]);
        TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).expect("a servable certificate")
    }

    /// A reqwest certificate for clients that trust this CA.
    pub fn reqwest_root(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.pem.as_bytes()).expect("the CA certificate parses")
    }
}
