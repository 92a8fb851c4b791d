//! Certificates for the PostgreSQL test server's TLS: an authority of the tests' own that signs
//! the server's certificate (for the host name `localhost` only, so a connection to `127.0.0.1`
//! shows the host check), and a second authority that signed nothing of the server's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The environment variables naming the two authorities' PEM files.
pub const CA_ENV: &str = "DOLPHIN_BRIDGE_TEST_POSTGRES_CA";
pub const OTHER_CA_ENV: &str = "DOLPHIN_BRIDGE_TEST_POSTGRES_OTHER_CA";
/// The server's files, relative to its data directory (where `ssl_cert_file` resolves them).
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
/// The host name the server's certificate is for.
pub const SERVER_NAME: &str = "localhost";

/// The authorities' files, written beside the server's.
pub struct Authorities {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
}

/// Writes the server's certificate and key into `data`, and both authorities' certificates
/// into `folder`. The key is made readable by its owner only, as PostgreSQL requires.
pub fn write(data: &Path, folder: &Path) -> Result<Authorities> {
    let ca_key = KeyPair::generate().context("generating the test authority's key")?;
    let ca_params = authority("dolphin-bridge test authority")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
    server_params.distinguished_name.push(DnType::CommonName, SERVER_NAME);
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let other_key = KeyPair::generate()?;
    let other_cert = authority("an authority the server does not use")?.self_signed(&other_key)?;

    std::fs::write(data.join(SERVER_CERT), server_cert.pem())?;
    let key_path = data.join(SERVER_KEY);
    std::fs::write(&key_path, server_key.serialize_pem())?;
    std::fs::set_permissions(&key_path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let authorities = Authorities {
        ca: folder.join("test-ca.crt"),
        other_ca: folder.join("other-ca.crt"),
    };
    std::fs::write(&authorities.ca, ca_cert.pem())?;
    std::fs::write(&authorities.other_ca, other_cert.pem())?;
    Ok(authorities)
}

fn authority(name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(params)
}
