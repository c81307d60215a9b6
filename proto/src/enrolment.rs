//! The enrolment bundle (`pbs_server enroll NAME` writes it) and the installed credentials a
//! host keeps from it: shared by `pbs_mom install-cert` and `trqauthd install-cert`, so the
//! format is written and read in one place.
//!
//! A bundle is a text file: the magic first line, `node:`, `server_name:` and `serial:`
//! lines, then the host's certificate, the CA certificate and the host's private key (PEM).
//! Installing writes `node.key`, `node.crt`, `ca.crt` and `server_name` (server name, then the
//! host's name) into a directory of mode 0700, every file 0600, and deletes the bundle.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// First line of an enrolment bundle.
pub const BUNDLE_MAGIC: &str = "# Capstan node enrolment bundle";

/// Why a bundle could not be installed or credentials loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("not a Capstan enrolment bundle (made by `pbs_server enroll NAME`)")]
    NotABundle,
    #[error("damaged enrolment bundle: {0}")]
    Damaged(&'static str),
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("cannot read {path}: this host is not enrolled. On the server run `pbs_server --home DIR enroll NAME`, copy the bundle here and run `{install}` ({source})")]
    NotEnrolled {
        path: PathBuf,
        install: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is readable by others; chmod 600 it (or enrol again)")]
    KeyExposed(PathBuf),
    #[error("{0} is damaged; enrol again")]
    BadNames(PathBuf),
}

/// A file operation that failed, naming the file: `creating DIR/node.new: Permission denied`.
/// The enrolment code and `trqauthd` (its socket, `server_name`) report through it.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// For `map_err`: `action` on `path` failed with the error it is given.
    pub fn at(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError {
            action,
            path,
            source,
        }
    }
}

/// The text of a bundle for `node`.
pub fn render(
    node: &str,
    server_name: &str,
    serial: &str,
    cert_pem: &str,
    ca_pem: &str,
    key_pem: &str,
) -> String {
    format!(
        "{BUNDLE_MAGIC} (SECRET: holds the node's private key; delete after install)\n\
         node: {node}\nserver_name: {server_name}\nserial: {serial}\n{}{}{}",
        ensure_nl(cert_pem),
        ensure_nl(ca_pem),
        ensure_nl(key_pem),
    )
}

fn ensure_nl(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// A parsed enrolment bundle.
#[derive(Debug)]
struct Bundle {
    node: String,
    server_name: String,
    cert_pem: String,
    ca_pem: String,
    key_pem: String,
}

fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), format!("{line}\n")));
        } else if let Some((label, mut body)) = current.take() {
            body.push_str(line);
            body.push('\n');
            if line.starts_with("-----END ") {
                blocks.push((label, body));
            } else {
                current = Some((label, body));
            }
        }
    }
    blocks
}

fn parse_bundle(text: &str) -> Result<Bundle, EnrolError> {
    if !text.starts_with(BUNDLE_MAGIC) {
        return Err(EnrolError::NotABundle);
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    let node = field("node:").ok_or(EnrolError::Damaged("it names no node"))?;
    let server_name = field("server_name:").ok_or(EnrolError::Damaged("it names no server"))?;
    let blocks = pem_blocks(text);
    let certs: Vec<&String> = blocks
        .iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, b)| b)
        .collect();
    let key = blocks
        .iter()
        .find(|(l, _)| l.ends_with("PRIVATE KEY"))
        .map(|(_, b)| b.clone())
        .ok_or(EnrolError::Damaged("it holds no private key"))?;
    let [cert_pem, ca_pem] = certs[..] else {
        return Err(EnrolError::Damaged(
            "it must hold the host certificate and the CA certificate",
        ));
    };
    Ok(Bundle {
        node,
        server_name,
        cert_pem: cert_pem.clone(),
        ca_pem: ca_pem.clone(),
        key_pem: key,
    })
}

/// Writes `contents` to `path` through a fresh temporary file with `mode`, then renames it.
fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), EnrolError> {
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(FileError::at("creating", &tmp))?;
    f.write_all(contents.as_bytes())
        .map_err(FileError::at("writing", &tmp))?;
    f.sync_all().ok();
    fs::rename(&tmp, path).map_err(FileError::at("installing", path))?;
    Ok(())
}

/// Installs a bundle into `dir` (created 0700) and deletes it (`-`: read standard input).
/// Returns `(host name, server name)` from the bundle.
pub fn install(dir: &Path, bundle: &Path) -> Result<(String, String), EnrolError> {
    let text = if bundle == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(FileError::at("reading", bundle))?;
        s
    } else {
        fs::read_to_string(bundle).map_err(FileError::at("reading", bundle))?
    };
    let b = parse_bundle(&text)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(FileError::at("creating", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(FileError::at("chmod", dir))?;
    write_private(&dir.join("node.key"), &b.key_pem, 0o600)?;
    write_private(&dir.join("node.crt"), &b.cert_pem, 0o600)?;
    write_private(&dir.join("ca.crt"), &b.ca_pem, 0o600)?;
    write_private(
        &dir.join("server_name"),
        &format!("{}\n{}\n", b.server_name, b.node),
        0o600,
    )?;
    if bundle != Path::new("-") {
        fs::remove_file(bundle).map_err(FileError::at("deleting", bundle))?;
    }
    Ok((b.node, b.server_name))
}

/// Installed credentials: this host's certificate and key, the cluster CA, the server's name.
#[derive(Clone)]
pub struct Credentials {
    /// The name the certificate carries (the node or login host).
    pub node_name: String,
    /// The name the server's certificate carries.
    pub server_name: String,
    pub cert_pem: String,
    pub ca_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("node_name", &self.node_name)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Loads the credentials installed in `dir`; `install` is the command that installs a bundle
/// on this kind of host, named in the error when there are none.
pub fn load(dir: &Path, install: &str) -> Result<Credentials, EnrolError> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(|source| EnrolError::NotEnrolled {
            path,
            install: install.to_string(),
            source,
        })
    };
    let key_path = dir.join("node.key");
    if let Ok(meta) = fs::metadata(&key_path) {
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(EnrolError::KeyExposed(key_path));
        }
    }
    let names = read("server_name")?;
    let mut lines = names.lines().map(str::trim);
    let server_name = lines.next().unwrap_or_default().to_string();
    let node_name = lines.next().unwrap_or_default().to_string();
    if server_name.is_empty() || node_name.is_empty() {
        return Err(EnrolError::BadNames(dir.join("server_name")));
    }
    Ok(Credentials {
        node_name,
        server_name,
        cert_pem: read("node.crt")?,
        ca_pem: read("ca.crt")?,
        key_pem: read("node.key")?,
    })
}

impl Credentials {
    /// tonic's client TLS settings: our certificate, the cluster CA as the only trust anchor,
    /// and the server's certificate name.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(self.server_name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_parse_agree() {
        let text = render("login1", "srv", "0a", "CERT-A", "CERT-B", "KEY");
        let text = text
            .replace(
                "CERT-A\n",
                "-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----\n",
            )
            .replace(
                "CERT-B\n",
                "-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----\n",
            )
            .replace(
                "KEY\n",
                "-----BEGIN PRIVATE KEY-----\nQ0ND\n-----END PRIVATE KEY-----\n",
            );
        let b = parse_bundle(&text).unwrap();
        assert_eq!((b.node.as_str(), b.server_name.as_str()), ("login1", "srv"));
        assert!(b.cert_pem.contains("QUFB") && b.ca_pem.contains("QkJC"));
        assert!(b.key_pem.contains("Q0ND"));
        assert!(matches!(parse_bundle("hello"), Err(EnrolError::NotABundle)));
    }
}
