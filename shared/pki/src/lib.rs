//! Identities for the peer API (mechanism 3). A sidecar's identity is its certificate: one URI SAN
//! `spiffe://acv/<namespace>/<component>`, issued by the deployment's CA.
//!
//! - [`Identity`]: the parsed SAN, read from a certificate with [`Identity::from_cert_der`].
//! - [`ca`]: a development CA that issues per-component certificates (rcgen) and writes them to a directory
//!   (the `acv-certs` binary, `make certs`). In Kubernetes the same files come from cert-manager instead.
//! - [`tls`]: loading those files into rustls configs that enforce mutual TLS: the server requires a client
//!   certificate from the CA; the client checks that the server's certificate names the component it meant to reach.
#![forbid(unsafe_code)]

use std::{fmt, path::PathBuf};

use acv_protocol::{ComponentName, NameError};
use rustls_pki_types::CertificateDer;

pub mod ca;
pub mod tls;

pub use ca::{DevCa, Validity};
pub use tls::{TlsFiles, client_config, server_config};

/// The SPIFFE trust domain of acv identities.
pub const TRUST_DOMAIN: &str = "acv";

/// Why certificates could not be created, loaded or understood.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material (e.g. a key that does not match its certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The certificate carries no acv identity, or a malformed one.
    #[error("certificate identity: {0}")]
    Identity(String),
    /// A namespace that cannot appear in an identity.
    #[error("bad namespace {0:?}: use lowercase letters, digits and '-' (at most 63)")]
    Namespace(String),
}

/// Who a certificate belongs to: a component in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The deployment namespace (Kubernetes namespace, or `default` locally).
    pub namespace: String,
    /// The component whose sidecar holds the certificate.
    pub component: ComponentName,
}

// === impl Identity ===

impl Identity {
    /// The identity of `component` in `namespace`; the namespace follows the component-name rules.
    pub fn new(namespace: &str, component: ComponentName) -> Result<Self, PkiError> {
        ComponentName::new(namespace).map_err(|_| PkiError::Namespace(namespace.to_owned()))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            component,
        })
    }

    /// The URI SAN: `spiffe://acv/<namespace>/<component>`.
    pub fn uri(&self) -> String {
        format!("spiffe://{TRUST_DOMAIN}/{}/{}", self.namespace, self.component)
    }

    /// Parses a URI SAN written by [`Identity::uri`].
    pub fn parse_uri(uri: &str) -> Result<Self, PkiError> {
        let bad = |why: &str| {
            PkiError::Identity(format!(
                "{uri:?} is not spiffe://{TRUST_DOMAIN}/<namespace>/<component>: {why}"
            ))
        };
        let rest = uri
            .strip_prefix("spiffe://")
            .and_then(|r| r.strip_prefix(TRUST_DOMAIN))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| bad("wrong scheme or trust domain"))?;
        let (namespace, component) = rest.split_once('/').ok_or_else(|| bad("missing component"))?;
        let component =
            ComponentName::new(component).map_err(|e: NameError| bad(&format!("component: {e}")))?;
        Self::new(namespace, component).map_err(|e| bad(&e.to_string()))
    }

    /// The identity in a DER certificate: exactly one `spiffe://acv/…` URI SAN. This does not verify the
    /// certificate; call it on certificates rustls has already verified.
    pub fn from_cert_der(der: &CertificateDer<'_>) -> Result<Self, PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| PkiError::Identity(format!("unparsable certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| PkiError::Identity(format!("bad subjectAltName: {e}")))?
            .ok_or_else(|| PkiError::Identity("the certificate has no subjectAltName".into()))?;
        let mut uris = san.value.general_names.iter().filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
            _ => None,
        });
        let uri = uris
            .next()
            .ok_or_else(|| PkiError::Identity("the certificate has no spiffe:// URI SAN".into()))?;
        if uris.next().is_some() {
            return Err(PkiError::Identity(
                "the certificate has more than one spiffe:// URI SAN".into(),
            ));
        }
        Self::parse_uri(uri)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trips_and_bad_uris_are_typed_errors() {
        let id = Identity::new("shop", ComponentName::new("front-end").unwrap()).unwrap();
        assert_eq!(id.uri(), "spiffe://acv/shop/front-end");
        assert_eq!(Identity::parse_uri(&id.uri()).unwrap(), id);
        for bad in [
            "spiffe://other/shop/front-end",
            "https://acv/shop/front-end",
            "spiffe://acv/shop",
            "spiffe://acv/Shop/front-end",
            "spiffe://acv/shop/front end",
            "spiffe://acv/shop/a/b",
        ] {
            assert!(
                matches!(Identity::parse_uri(bad), Err(PkiError::Identity(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Identity::new("UPPER", ComponentName::new("x").unwrap()),
            Err(PkiError::Namespace(_))
        ));
    }
}
