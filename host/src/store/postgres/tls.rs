//! TLS to PostgreSQL, as libpq's URL parameters ask for it: `sslmode` (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`; libpq's default `prefer`) and `sslrootcert` (a PEM
//! file of the certificate authorities to trust). tokio-postgres knows only the first three
//! modes, so both parameters are taken out of the URL here and turned into a rustls connector
//! whose certificate check is the mode's.
//!
//! As in libpq: `prefer` and `require` encrypt without checking the server's certificate (an
//! attacker on the path can read and change everything), except that `require` with an
//! `sslrootcert` checks it as `verify-ca` does; `verify-ca` checks that a trusted authority
//! signed the certificate; `verify-full` checks that too and that it names the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> anyhow::Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => anyhow::bail!(
                "[store] url: sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            ),
        })
    }

    /// As the URL spells it.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// What a store URL asks of the connection's security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSecurity {
    pub mode: SslMode,
    /// `sslrootcert`: the authorities trusted to sign the server's certificate.
    pub root_cert: Option<PathBuf>,
}

/// How the server's certificate is checked, from the mode and whether authorities are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateCheck {
    /// Encrypted, but any certificate is taken.
    None,
    /// Signed by a trusted authority, whatever host it names.
    Authority,
    /// Signed by a trusted authority and naming the host connected to.
    AuthorityAndHost,
}

impl ConnectionSecurity {
    /// Takes `sslmode` and `sslrootcert` out of `url`, leaving the rest for tokio-postgres
    /// byte for byte. Errors name the parameter, never the URL (it may hold a password).
    pub fn split_url(url: &str) -> anyhow::Result<(String, ConnectionSecurity)> {
        let mut security = ConnectionSecurity {
            mode: SslMode::Prefer,
            root_cert: None,
        };
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), security));
        };
        let mut rest = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value =
                || percent_decode(value).with_context(|| format!("[store] url: `{key}` is not valid percent-encoding"));
            match key {
                "sslmode" => security.mode = SslMode::parse(&value()?)?,
                "sslrootcert" => security.root_cert = Some(PathBuf::from(value()?)),
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        if security.mode == SslMode::Disable && security.root_cert.is_some() {
            anyhow::bail!("[store] url: sslrootcert is given but sslmode=disable turns TLS off");
        }
        Ok((url, security))
    }

    /// The certificate check this asks for (libpq's: `require` with authorities is `verify-ca`).
    pub fn check(&self) -> CertificateCheck {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => CertificateCheck::AuthorityAndHost,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => CertificateCheck::Authority,
            _ => CertificateCheck::None,
        }
    }

    /// The mode tokio-postgres negotiates with: whether TLS is tried, and whether it must be.
    pub fn negotiation(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The connector for every connection of the store: rustls with this mode's check.
    pub fn connector(&self) -> anyhow::Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = self.check();
        let chain = match (check, &self.root_cert) {
            (CertificateCheck::None, _) => None,
            (_, None) => anyhow::bail!(
                "[store] url: sslmode={} checks the server's certificate and needs sslrootcert=<a PEM file of the authorities to trust>",
                self.mode.name()
            ),
            (_, Some(path)) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(read_roots(path)?), provider.clone())
                    .build()
                    .context("[store] url: building the certificate check")?,
            ),
        };
        let verifier = Arc::new(Verifier {
            provider: provider.clone(),
            chain,
            host: check == CertificateCheck::AuthorityAndHost,
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// In words, for the store's health: how the connection is protected.
    pub fn describe(&self, encrypted: bool) -> String {
        match (encrypted, self.check()) {
            (false, _) => format!("plain (sslmode={})", self.mode.name()),
            (true, CertificateCheck::None) => {
                format!("TLS, server certificate not checked (sslmode={})", self.mode.name())
            }
            (true, CertificateCheck::Authority) => {
                format!("TLS, certificate authority checked (sslmode={})", self.mode.name())
            }
            (true, CertificateCheck::AuthorityAndHost) => {
                "TLS, certificate and host name checked (sslmode=verify-full)".into()
            }
        }
    }

    /// The warning an operator should see for a connection to `host` (`None`: a local one,
    /// which no one else is on the path of) that an attacker on the path could read or change.
    pub fn warning(&self, host: Option<&str>, encrypted: bool) -> Option<String> {
        let host = host?;
        if is_loopback(host) || (encrypted && self.check() == CertificateCheck::AuthorityAndHost) {
            return None;
        }
        let what = if encrypted {
            "is encrypted but the server's certificate does not prove it is the server"
        } else {
            "is not encrypted"
        };
        Some(format!(
            "the connection to the store at {host} {what}: anyone on the path can read events and \
             change deployed adapters; set sslmode=verify-full and sslrootcert in [store] url"
        ))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Reads the PEM certificates of `path`; errors name the file (a path of the operator's own).
fn read_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("[store] url: reading sslrootcert {}", path.display()))?;
    for certificate in certificates {
        let certificate = certificate
            .with_context(|| format!("[store] url: sslrootcert {} is not PEM certificates", path.display()))?;
        roots.add(certificate).with_context(|| {
            format!(
                "[store] url: a certificate of sslrootcert {} is not usable",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        anyhow::bail!("[store] url: sslrootcert {} holds no certificate", path.display());
    }
    Ok(roots)
}

fn percent_decode(value: &str) -> anyhow::Result<String> {
    Ok(percent_encoding::percent_decode_str(value).decode_utf8()?.into_owned())
}

/// The server's certificate check for a [`CertificateCheck`]. The handshake's signatures are
/// checked in every case (the session is encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// The chain check against the trusted authorities (`None`: any certificate is taken).
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the certificate must name the host; webpki checks the chain first, so a name
    /// error means the chain was good.
    host: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept_byte_for_byte() {
        let (rest, security) = ConnectionSecurity::split_url(
            "postgres://u:p%40ss@db:5432/x?options=-c%20search_path%3Dt&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%40ss@db:5432/x?options=-c%20search_path%3Dt&connect_timeout=5"
        );
        assert_eq!(security.mode, SslMode::VerifyFull);
        assert_eq!(security.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        let (rest, security) = ConnectionSecurity::split_url("postgres://u@db/x?sslmode=disable").unwrap();
        assert_eq!(rest, "postgres://u@db/x");
        assert_eq!(security.mode, SslMode::Disable);
    }

    #[test]
    fn libpqs_default_is_prefer_and_require_with_authorities_checks_them() {
        let (_, security) = ConnectionSecurity::split_url("postgres://u@db/x").unwrap();
        assert_eq!(security.mode, SslMode::Prefer);
        assert_eq!(security.check(), CertificateCheck::None);
        let (_, security) =
            ConnectionSecurity::split_url("postgres://u@db/x?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(security.check(), CertificateCheck::Authority);
        let (_, security) =
            ConnectionSecurity::split_url("postgres://u@db/x?sslmode=verify-ca&sslrootcert=ca.pem").unwrap();
        assert_eq!(security.check(), CertificateCheck::Authority);
    }

    #[test]
    fn a_wrong_mode_or_a_check_without_authorities_is_refused_without_quoting_the_url() {
        let error = ConnectionSecurity::split_url("postgres://u:secret-pw@db/x?sslmode=verify").unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("sslmode `verify`"), "{text}");
        assert!(!text.contains("secret-pw"), "{text}");
        let (_, security) = ConnectionSecurity::split_url("postgres://u:secret-pw@db/x?sslmode=verify-full").unwrap();
        let text = format!("{:#}", security.connector().err().expect("refused"));
        assert!(text.contains("needs sslrootcert"), "{text}");
        assert!(!text.contains("secret-pw"), "{text}");
    }

    #[test]
    fn only_a_verified_or_local_connection_goes_without_a_warning() {
        let full = ConnectionSecurity {
            mode: SslMode::VerifyFull,
            root_cert: Some("ca.pem".into()),
        };
        let prefer = ConnectionSecurity {
            mode: SslMode::Prefer,
            root_cert: None,
        };
        assert_eq!(full.warning(Some("db.internal"), true), None);
        assert_eq!(prefer.warning(Some("127.0.0.1"), false), None);
        assert_eq!(prefer.warning(None, false), None);
        assert!(
            prefer
                .warning(Some("db.internal"), false)
                .unwrap()
                .contains("is not encrypted")
        );
        assert!(
            prefer
                .warning(Some("db.internal"), true)
                .unwrap()
                .contains("does not prove it is the server")
        );
    }
}
