//! Client certificates for an administrator's screen: the ones the server
//! refused ([`rejected`]) and trusting one of them ([`trust`]).
//!
//! async-opcua keeps the trust list as folders under the PKI directory: an
//! unknown client certificate is written to `rejected/` (named
//! `<common name> [<thumbprint>].der`) and the connection refused; a
//! certificate is trusted when a file of that name is in `trusted/`. The
//! stack looks the file up on every secure channel it opens, so a certificate
//! moved to `trusted/` is accepted from the client's next attempt, without a
//! restart. It also refuses a certificate while it is still in `rejected/`,
//! which is why trusting *moves* the file.
//!
//! What the screen shows is what an administrator compares with the client's
//! own display before trusting it: the subject, the application URI (the
//! client's identity in OPC UA) and the SHA-1 thumbprint in hex, which is how
//! OPC UA tools (UaExpert, TIA Portal's certificate manager) show it.
//!
//! The folder itself is kept private (`protect`: the folders 0700, the
//! private key 0600, whatever the umask) and `rejected/` is kept to the
//! newest certificates (`prune_rejected`), so that clients with ever new
//! certificates cannot fill the disk (issue 22, finding 11).

use std::path::{Component, Path};
use std::time::SystemTime;

use ::opcua::crypto::X509;

use crate::server::Error;

/// A certificate in `rejected/`, as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The file's name in `rejected/`; what [`trust`] takes.
    pub file_name: String,
    /// The subject, e.g. `CN=PLC_1/O=Siemens`; `unreadable certificate` when
    /// the file is not a DER certificate.
    pub subject: String,
    /// The first URI of the subject alternative names: the client's
    /// ApplicationUri.
    pub application_uri: Option<String>,
    /// The SHA-1 of the DER bytes, lowercase hex (40 digits).
    pub thumbprint: String,
    /// The end of validity, `YYYY-MM-DDTHH:MM:SSZ`.
    pub valid_to: Option<String>,
}

/// What [`ClientCertificate::subject`] says for a file that is no certificate.
pub const UNREADABLE: &str = "unreadable certificate";

/// The certificates in `pki_dir/rejected/` (`*.der`), sorted by file name. A
/// file that is not a certificate is listed as [`UNREADABLE`] (with the
/// SHA-1 of its bytes) rather than failing the list: the screen should show
/// that something is there. No `rejected/` folder is an empty list.
pub fn rejected(pki_dir: &Path) -> Result<Vec<ClientCertificate>, Error> {
    let dir = pki_dir.join("rejected");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Pki {
                action: "list",
                path: dir,
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Pki {
            action: "list",
            path: dir.clone(),
            source,
        })?;
        let Ok(file_name) = entry.file_name().into_string() else {
            continue; // not a name the stack writes
        };
        let path = entry.path();
        if !file_name.to_ascii_lowercase().ends_with(".der") || !path.is_file() {
            continue;
        }
        let certificate = match std::fs::read(&path) {
            Ok(der) => describe(file_name, &der),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not read a rejected certificate");
                ClientCertificate {
                    file_name,
                    subject: UNREADABLE.into(),
                    application_uri: None,
                    thumbprint: String::new(),
                    valid_to: None,
                }
            }
        };
        out.push(certificate);
    }
    out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(out)
}

/// Trusts a rejected certificate: moves `pki_dir/rejected/<file_name>` to
/// `pki_dir/trusted/<file_name>` in one rename (creating `trusted/` if
/// needed), so the stack never sees it in both folders or in neither. The
/// name must be a plain file name, as [`rejected`] lists it.
pub fn trust(pki_dir: &Path, file_name: &str) -> Result<(), Error> {
    if !is_plain_file_name(file_name) {
        return Err(Error::CertificateName(file_name.to_owned()));
    }
    let rejected_dir = pki_dir.join("rejected");
    let from = rejected_dir.join(file_name);
    if !from.is_file() {
        return Err(Error::NoSuchCertificate {
            name: file_name.to_owned(),
            dir: rejected_dir,
        });
    }
    let trusted_dir = pki_dir.join("trusted");
    std::fs::create_dir_all(&trusted_dir).map_err(|source| Error::Pki {
        action: "create",
        path: trusted_dir.clone(),
        source,
    })?;
    let to = trusted_dir.join(file_name);
    std::fs::rename(&from, &to).map_err(|source| Error::Pki {
        action: "move the certificate to",
        path: to,
        source,
    })?;
    tracing::info!(file_name, "OPC UA: client certificate trusted");
    Ok(())
}

/// The PKI folders the stack uses.
const FOLDERS: [&str; 4] = ["own", "private", "trusted", "rejected"];

/// Makes `pki_dir` and its folders readable by the kiosk's user alone
/// (0700), and the private key, if there is one yet, 0600; whatever the
/// umask, and for folders that already exist too. Called before the stack
/// writes its key (so the key is never in a folder others can read) and
/// after. On other platforms the folder inherits the secrets folder's ACL.
pub(crate) fn protect(pki_dir: &Path) -> Result<(), Error> {
    let pki = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Pki {
            action,
            path,
            source,
        }
    };
    for dir in std::iter::once(pki_dir.to_owned()).chain(FOLDERS.iter().map(|f| pki_dir.join(f))) {
        std::fs::create_dir_all(&dir).map_err(pki("create", &dir))?;
        set_mode(&dir, 0o700).map_err(pki("restrict", &dir))?;
    }
    let key = pki_dir.join("private").join("private.pem");
    if key.exists() {
        set_mode(&key, 0o600).map_err(pki("restrict", &key))?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Deletes all but the `keep` newest files in `pki_dir/rejected/` (by
/// modification time; the stack writes a file per refused certificate).
/// Returns how many were deleted.
pub(crate) fn prune_rejected(pki_dir: &Path, keep: usize) -> Result<usize, Error> {
    let dir = pki_dir.join("rejected");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(Error::Pki {
                action: "list",
                path: dir,
                source,
            })
        }
    };
    let mut files: Vec<(SystemTime, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), e.path()))
        })
        .collect();
    if files.len() <= keep {
        return Ok(0);
    }
    // Newest first; ties by name, so the order is stable.
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let mut deleted = 0;
    for (_, path) in files.drain(keep..) {
        match std::fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Pki {
                    action: "delete",
                    path,
                    source,
                })
            }
        }
    }
    tracing::warn!(
        deleted,
        keep,
        "OPC UA: deleted the oldest rejected client certificates"
    );
    Ok(deleted)
}

/// One normal path component and no separator of either platform: the name
/// cannot leave `rejected/` or reach into `trusted/` sub-folders.
fn is_plain_file_name(name: &str) -> bool {
    if name.is_empty() || name.contains(['/', '\\']) || name.contains('\0') {
        return false;
    }
    let mut components = Path::new(name).components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(c)), None) if c == name
    )
}

fn describe(file_name: String, der: &[u8]) -> ClientCertificate {
    match X509::from_der(der) {
        Ok(cert) => ClientCertificate {
            file_name,
            subject: cert.subject_name(),
            application_uri: application_uri(der),
            thumbprint: cert.thumbprint().as_hex_string(),
            valid_to: cert
                .not_after()
                .ok()
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        },
        Err(_) => ClientCertificate {
            file_name,
            subject: UNREADABLE.into(),
            application_uri: None,
            thumbprint: sha1_hex(der),
            valid_to: None,
        },
    }
}

/// The first URI in the subject alternative names. The stack checks it
/// against the client's ApplicationUri but does not hand it out, so it is
/// read with x509-cert, the parser the stack itself uses.
fn application_uri(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;

    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let (_, names) = cert.tbs_certificate.get::<SubjectAltName>().ok()??;
    names.0.iter().find_map(|name| match name {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    })
}

/// The SHA-1 of bytes that are not a certificate, so that even an unreadable
/// file can be told apart from another.
fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_taken() {
        assert!(is_plain_file_name("PLC_1 [0a1b].der"));
        assert!(is_plain_file_name("a..b.der"));
        for bad in [
            "",
            ".",
            "..",
            "../own/cert.der",
            "x/../../etc",
            "sub/cert.der",
            "sub\\cert.der",
            "/etc/passwd",
            "C:\\cert.der",
            "nul\0.der",
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?} was taken");
        }
    }
}
