//! A development CA: issues per-component certificates carrying the component's [`Identity`] as a URI SAN, and
//! writes them as PEM files: `ca.pem` / `ca.key` for the CA, `<component>.pem` / `<component>.key` per component.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::{Identity, PkiError};

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA key in a certificate directory.
pub const CA_KEY: &str = "ca.key";

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

/// A CA that can issue component certificates.
pub struct DevCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Certificate chain: the component certificate (the CA is distributed separately as `ca.pem`).
    pub cert_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

// === impl Validity ===

impl Validity {
    /// From an hour ago (tolerating clock skew between nodes) until `valid_for` from now.
    pub fn from_now(valid_for: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::from_secs(3600),
            not_after: now + valid_for,
        }
    }
}

// === impl DevCa ===

impl DevCa {
    /// A new self-signed CA named `name`, valid for `valid_for`.
    pub fn generate(name: &str, valid_for: Duration) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, name);
        params.distinguished_name.push(DnType::OrganizationName, "acv");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let validity = Validity::from_now(valid_for);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA stored in `dir` (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert = read(&dir.join(CA_CERT))?;
        let key = read(&dir.join(CA_KEY))?;
        Self::from_pem(&cert, &key)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        create_dir(dir)?;
        write_file(&dir.join(CA_CERT), &self.cert_pem, false)?;
        write_file(&dir.join(CA_KEY), &self.issuer.key().serialize_pem(), true)
    }

    /// Issues a certificate for `identity`, usable both as a TLS server and as a TLS client certificate.
    pub fn issue(&self, identity: &Identity, validity: Validity) -> Result<IssuedCert, PkiError> {
        let uri = identity
            .uri()
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Identity(e.to_string()))?;
        self.leaf(
            identity.component.as_str(),
            vec![SanType::URI(uri)],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            validity,
        )
    }

    /// Issues a TLS server certificate for `names` (DNS names, or IP addresses), e.g. the admission webhook's
    /// `acv-manager.acv-system.svc`, as cert-manager would. Clients that trust the CA check the name they dialled
    /// against these, as any HTTPS client does (unlike the component certificates, whose identity is a URI).
    pub fn issue_server(&self, names: &[&str], validity: Validity) -> Result<IssuedCert, PkiError> {
        let first = names
            .first()
            .ok_or_else(|| PkiError::Identity("a server certificate needs at least one name".into()))?;
        let sans = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => (*name)
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| PkiError::Identity(format!("{name:?}: {e}"))),
            })
            .collect::<Result<_, _>>()?;
        self.leaf(first, sans, vec![ExtendedKeyUsagePurpose::ServerAuth], validity)
    }

    /// A new key and a certificate for it signed by this CA: common name `cn` (organisation `acv`), `sans`,
    /// digital-signature key usage with `ekus`.
    fn leaf(
        &self,
        cn: &str,
        sans: Vec<SanType>,
        ekus: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.distinguished_name.push(DnType::OrganizationName, "acv");
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = ekus;
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

// === impl IssuedCert ===

impl IssuedCert {
    /// Writes `tls.crt` and `tls.key` (mode 0600) into `dir`, as a Kubernetes TLS Secret mounted as a volume
    /// holds them (what the manager's `--webhook-tls-dir` reads); returns their paths.
    pub fn write_tls(&self, dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        create_dir(dir)?;
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        write_file(&cert, &self.cert_pem, false)?;
        write_file(&key, &self.key_pem, true)?;
        Ok((cert, key))
    }

    /// Writes `<component>.pem` and `<component>.key` (mode 0600) into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, component: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        create_dir(dir)?;
        let cert = dir.join(format!("{component}.pem"));
        let key = dir.join(format!("{component}.key"));
        write_file(&cert, &self.cert_pem, false)?;
        write_file(&key, &self.key_pem, true)?;
        Ok((cert, key))
    }
}

pub(crate) fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    use x509_parser::extensions::GeneralName;

    use super::*;

    #[test]
    fn a_server_certificate_names_its_hosts_and_carries_no_identity() {
        let ca = DevCa::generate("test CA", Duration::from_secs(600)).unwrap();
        let validity = Validity::from_now(Duration::from_secs(600));
        let issued = ca
            .issue_server(&["acv-manager.acv-system.svc", "127.0.0.1"], validity)
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => format!("dns:{d}"),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => format!("other:{other}"),
            })
            .collect();
        assert_eq!(names, ["dns:acv-manager.acv-system.svc", "ip:[127, 0, 0, 1]"]);
        assert!(
            crate::Identity::from_cert_der(&der).is_err(),
            "not a component identity"
        );
        let dir = std::env::temp_dir().join(format!("acv-pki-server-{}", std::process::id()));
        let (crt, key) = issued.write_tls(&dir).unwrap();
        assert_eq!(
            (crt.file_name().unwrap(), key.file_name().unwrap()),
            ("tls.crt".as_ref(), "tls.key".as_ref())
        );
        std::fs::remove_dir_all(&dir).ok();

        assert!(matches!(
            ca.issue_server(&[], validity),
            Err(PkiError::Identity(_))
        ));
        assert!(matches!(
            ca.issue_server(&["bücher.example"], validity),
            Err(PkiError::Identity(_))
        ));
    }
}
