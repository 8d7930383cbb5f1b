//! TLS for the gRPC port: the server's certificate and key, and optionally a
//! client CA that makes client certificates mandatory (mTLS).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS {what} {path} holds no PEM block")]
    NotPem { what: &'static str, path: PathBuf },
}

/// The server's TLS settings, or None for plaintext.
pub fn server_config(config: &Config) -> Result<Option<ServerTlsConfig>, TlsError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read_pem("certificate", cert)?, read_pem("key", key)?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.tls_client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read_pem("client CA", ca)?))
            .client_auth_optional(false);
    }
    Ok(Some(tls))
}

/// Reads a PEM file, checking up front that it is one: rustls would
/// otherwise only fail at the first handshake, far from the cause.
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
        });
    }
    Ok(pem)
}
