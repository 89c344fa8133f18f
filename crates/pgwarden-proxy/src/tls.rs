//! TLS towards clients: [`TlsMode`] (PgBouncer's `client_tls_sslmode`, the `disable`, `allow`
//! and `require` subset) and loading the certificate and key into a rustls server
//! configuration with the `ring` provider.
//!
//! A client asks for TLS with an SSLRequest; with a certificate configured and the mode not
//! `disable`, the proxy answers `S` and runs the handshake, then reads the startup packet over
//! TLS. [`server_config`] is public so the binary can refuse unreadable or mismatched files
//! when it loads its configuration, before anything listens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocol name PostgreSQL (17 and later) and libpq use for TLS.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Whether clients may, or must, use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Answer every SSLRequest with `N`, even with a certificate configured.
    Disable,
    /// TLS for clients that ask (when a certificate is configured), plain TCP for the others.
    /// The default.
    #[default]
    Allow,
    /// Refuse clients that do not use TLS (FATAL, SQLSTATE 28000). Needs a certificate.
    /// Cancel requests are still accepted in clear text, as libpq sends them that way.
    Require,
}

impl TlsMode {
    /// The mode's configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Allow => "allow",
            TlsMode::Require => "require",
        }
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(TlsMode::Disable),
            "allow" => Ok(TlsMode::Allow),
            "require" => Ok(TlsMode::Require),
            other => Err(format!(
                "unknown TLS mode {other:?} (expected disable, allow or require)"
            )),
        }
    }
}

/// Why the certificate and key cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or holds no PEM certificate.
    #[error("TLS certificate file {}: {reason}", path.display())]
    CertFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file is missing, unreadable or holds no PEM private key.
    #[error("TLS key file {}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Both files parse, but rustls refuses them together (e.g. the key does not belong to
    /// the certificate, or the key type is unsupported).
    #[error("TLS certificate {} with key {}: {reason}", cert.display(), key.display())]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or
/// SEC1) into a rustls server configuration: TLS 1.2 and 1.3, no client certificates, ALPN
/// `postgresql`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_error = |reason: String| TlsError::CertFile {
        path: cert.to_path_buf(),
        reason,
    };
    let key_error = |reason: String| TlsError::KeyFile {
        path: key.to_path_buf(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| cert_error(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error(
            "no PEM certificate (BEGIN CERTIFICATE) found".into(),
        ));
    }
    let key_pem = std::fs::read(key).map_err(|e| key_error(e.to_string()))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            key_error("no PEM private key (BEGIN PRIVATE KEY) found".into())
        }
        e => key_error(format!("invalid PEM: {e}")),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private_key))
        .map_err(|e| TlsError::Identity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [TlsMode::Disable, TlsMode::Allow, TlsMode::Require] {
            assert_eq!(mode.as_str().parse::<TlsMode>(), Ok(mode));
        }
        assert!("prefer".parse::<TlsMode>().unwrap_err().contains("prefer"));
        assert_eq!(TlsMode::default(), TlsMode::Allow);
    }

    #[test]
    fn missing_empty_and_mismatched_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &one.cert.pem());
        let key = write(dir.path(), "key.pem", &one.key_pair.serialize_pem());
        let other_key = write(dir.path(), "other.pem", &other.key_pair.serialize_pem());
        let empty = write(dir.path(), "empty.pem", "");
        let missing = dir.path().join("missing.pem");

        assert!(server_config(&cert, &key).is_ok());
        let err = server_config(&missing, &key).unwrap_err().to_string();
        assert!(
            err.contains("certificate file") && err.contains("missing.pem"),
            "{err}"
        );
        let err = server_config(&empty, &key).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = server_config(&cert, &missing).unwrap_err().to_string();
        assert!(
            err.contains("key file") && err.contains("missing.pem"),
            "{err}"
        );
        let err = server_config(&cert, &cert).unwrap_err().to_string();
        assert!(err.contains("no PEM private key"), "{err}");
        let err = server_config(&cert, &other_key).unwrap_err();
        assert!(matches!(err, TlsError::Identity { .. }), "{err}");
    }
}
