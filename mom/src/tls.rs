//! The MOM's credentials: the enrolment bundle the server issued, installed under
//! `DIR/mom_priv/tls/` (directory 0700; `node.key` 0600, `node.crt`, `ca.crt`, `server_name`).
//!
//! `pbs_mom --home DIR install-cert BUNDLE` (`-` reads standard input) checks the bundle,
//! writes the files and deletes the bundle, so no copy of the node's key is left behind. The
//! MOM then dials the server over TLS 1.3, presents `node.crt` and accepts only a server
//! certificate issued by `ca.crt` for the name in `server_name`.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

const BUNDLE_MAGIC: &str = "# Capstan node enrolment bundle";

/// The installed credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub node_name: String,
    pub server_name: String,
    cert_pem: String,
    ca_pem: String,
    key_pem: String,
}

fn tls_dir(mom_priv: &Path) -> PathBuf {
    mom_priv.join("tls")
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

fn parse_bundle(text: &str) -> anyhow::Result<Bundle> {
    if !text.starts_with(BUNDLE_MAGIC) {
        bail!("not a Capstan enrolment bundle (made by `pbs_server enroll NODE`)");
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    let node = field("node:").context("bundle names no node")?;
    let server_name = field("server_name:").context("bundle names no server")?;
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
        .context("bundle holds no private key")?;
    if certs.len() != 2 {
        bail!("bundle must hold the node certificate and the CA certificate");
    }
    Ok(Bundle {
        node,
        server_name,
        cert_pem: certs[0].clone(),
        ca_pem: certs[1].clone(),
        key_pem: key,
    })
}

fn write_private(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all().ok();
    fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))?;
    Ok(())
}

/// Installs a bundle under `mom_priv` and deletes it (`-`: read standard input).
/// Returns the node name the certificate carries.
pub fn install(mom_priv: &Path, bundle: &Path) -> anyhow::Result<String> {
    let text = if bundle == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        fs::read_to_string(bundle).with_context(|| format!("reading {}", bundle.display()))?
    };
    let b = parse_bundle(&text)?;
    let dir = tls_dir(mom_priv);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    write_private(&dir.join("node.key"), &b.key_pem, 0o600)?;
    write_private(&dir.join("node.crt"), &b.cert_pem, 0o600)?;
    write_private(&dir.join("ca.crt"), &b.ca_pem, 0o600)?;
    write_private(
        &dir.join("server_name"),
        &format!("{}\n{}\n", b.server_name, b.node),
        0o600,
    )?;
    if bundle != Path::new("-") {
        fs::remove_file(bundle).with_context(|| format!("deleting {}", bundle.display()))?;
    }
    Ok(b.node)
}

/// Loads the installed credentials; the error says how to enrol when there are none.
pub fn load(mom_priv: &Path) -> anyhow::Result<Credentials> {
    let dir = tls_dir(mom_priv);
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: this node is not enrolled. On the server run \
                 `pbs_server --home DIR enroll NODE`, copy the bundle here and run \
                 `pbs_mom --home DIR install-cert BUNDLE`",
                path.display()
            )
        })
    };
    let key_path = dir.join("node.key");
    if let Ok(meta) = fs::metadata(&key_path) {
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is readable by others; chmod 600 it (or enrol again)",
                key_path.display()
            );
        }
    }
    let names = read("server_name")?;
    let mut lines = names.lines().map(str::trim);
    let server_name = lines.next().unwrap_or_default().to_string();
    let node_name = lines.next().unwrap_or_default().to_string();
    if server_name.is_empty() || node_name.is_empty() {
        bail!(
            "{} is damaged; enrol again",
            dir.join("server_name").display()
        );
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

    const FAKE: &str =
        "# Capstan node enrolment bundle (SECRET)\nnode: n1\nserver_name: srv\nserial: 01\n\
-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----\n\
-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----\n\
-----BEGIN PRIVATE KEY-----\nQ0ND\n-----END PRIVATE KEY-----\n";

    #[test]
    fn installs_a_bundle_privately_and_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("n1.bundle");
        fs::write(&bundle, FAKE).unwrap();
        let mom_priv = dir.path().join("mom_priv");
        fs::create_dir(&mom_priv).unwrap();
        assert_eq!(install(&mom_priv, &bundle).unwrap(), "n1");
        assert!(!bundle.exists(), "the bundle is deleted");
        let tls = mom_priv.join("tls");
        assert_eq!(
            fs::metadata(&tls).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let key = tls.join("node.key");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let creds = load(&mom_priv).unwrap();
        assert_eq!(
            (creds.node_name.as_str(), creds.server_name.as_str()),
            ("n1", "srv")
        );
        assert!(creds.cert_pem.contains("QUFB") && creds.ca_pem.contains("QkJC"));
    }

    #[test]
    fn rejects_other_files_and_says_how_to_enrol() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        fs::write(&f, "hello").unwrap();
        assert!(install(dir.path(), &f).is_err());
        assert!(f.exists(), "a rejected file is not deleted");
        let e = load(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("not enrolled"));
    }
}
