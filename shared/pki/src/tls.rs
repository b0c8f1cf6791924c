//! rustls configurations that enforce mutual TLS between peers.
//!
//! - Server: a client certificate chaining to the CA is required (rustls' `WebPkiClientVerifier`: signature,
//!   validity period, clientAuth usage); the caller reads the client's [`Identity`] from it after the handshake.
//! - Client: the server's certificate must chain to the same CA and carry the identity of the component the client
//!   meant to reach. That component is passed as the TLS server name ([`server_name`]), so one client config
//!   serves every peer and host names or IP addresses in URLs do not matter.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use acv_protocol::ComponentName;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    server::{ParsedCertificate, WebPkiClientVerifier},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};

use crate::{Identity, PkiError, ca::read};

/// Where a sidecar's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) peers must chain to (PEM).
    pub ca: PathBuf,
    /// The own certificate chain (PEM).
    pub cert: PathBuf,
    /// The own private key (PEM).
    pub key: PathBuf,
}

/// TLS material loaded and checked: the own identity is read from the own certificate.
pub struct Loaded {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Who the own certificate says we are.
    pub identity: Identity,
}

// === impl TlsFiles ===

impl TlsFiles {
    /// The layout `acv-certs` writes: `dir/ca.pem`, `dir/<component>.pem`, `dir/<component>.key`.
    pub fn in_dir(dir: &Path, component: &ComponentName) -> Self {
        Self {
            ca: dir.join(crate::ca::CA_CERT),
            cert: dir.join(format!("{component}.pem")),
            key: dir.join(format!("{component}.key")),
        }
    }

    /// Reads and checks the files.
    pub fn load(&self) -> Result<Loaded, PkiError> {
        let ca = certs(&self.ca)?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(|e| PkiError::Pem {
                path: self.ca.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let chain = certs(&self.cert)?;
        let identity = Identity::from_cert_der(&chain[0])?;
        let text = read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| PkiError::Pem {
            path: self.key.clone(),
            reason: format!("no private key: {e}"),
        })?;
        Ok(Loaded {
            roots: Arc::new(roots),
            chain,
            key,
            identity,
        })
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            path: path.to_owned(),
            reason: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS server name a client uses to reach `component`'s sidecar (checked against the server's identity).
pub fn server_name(component: &ComponentName) -> ServerName<'static> {
    // Component names are lowercase letters, digits and '-', at most 63: always a valid DNS label.
    ServerName::try_from(component.as_str().to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

/// A server config that requires a client certificate from the CA.
pub fn server_config(tls: &Loaded) -> Result<Arc<ServerConfig>, PkiError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(tls.roots.clone(), provider())
        .build()
        .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client config presenting the own certificate and accepting only servers whose certificate chains to the CA
/// and names, in the own namespace, the component given as server name.
pub fn client_config(tls: &Loaded) -> Result<Arc<ClientConfig>, PkiError> {
    let verifier = PeerServerVerifier {
        roots: tls.roots.clone(),
        provider: provider(),
        namespace: tls.identity.namespace.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Verifies a peer server by chain and identity instead of host name (SPIFFE style).
#[derive(Debug)]
struct PeerServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    namespace: String,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let identity =
            Identity::from_cert_der(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        let expected = server_name.to_str();
        if identity.namespace != self.namespace || identity.component.as_str() != expected {
            return Err(rustls::Error::General(format!(
                "peer certificate is {identity}, expected spiffe://{}/{}/{expected}",
                crate::TRUST_DOMAIN,
                self.namespace
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{DevCa, Validity};

    #[test]
    fn issued_files_load_with_their_identity_and_bad_files_are_typed_errors() {
        let dir = std::env::temp_dir().join(format!("acv-pki-{}-{}", std::process::id(), line!()));
        let ca = DevCa::generate("t", Duration::from_secs(3600)).unwrap();
        ca.write(&dir).unwrap();
        // A CA loaded back from its files issues certificates that verify against the same ca.pem.
        let reloaded = DevCa::load(&dir).unwrap();
        let c = ComponentName::new("catalogue").unwrap();
        let id = Identity::new("ns", c.clone()).unwrap();
        reloaded
            .issue(&id, Validity::from_now(Duration::from_secs(60)))
            .unwrap()
            .write(&dir, "catalogue")
            .unwrap();
        let files = TlsFiles::in_dir(&dir, &c);
        let loaded = files.load().unwrap();
        assert_eq!(loaded.identity, id);
        server_config(&loaded).unwrap();
        client_config(&loaded).unwrap();

        let missing = TlsFiles {
            key: dir.join("nope.key"),
            ..files.clone()
        };
        assert!(matches!(missing.load(), Err(PkiError::Io { .. })));
        std::fs::write(dir.join("junk.pem"), "not pem").unwrap();
        let junk = TlsFiles {
            cert: dir.join("junk.pem"),
            ..files
        };
        assert!(matches!(junk.load(), Err(PkiError::Pem { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }
}
