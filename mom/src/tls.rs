//! The MOM's credentials: the enrolment bundle the server issued, installed under
//! `DIR/mom_priv/tls/` (directory 0700; `node.key` 0600, `node.crt`, `ca.crt`, `server_name`).
//!
//! `pbs_mom --home DIR install-cert BUNDLE` (`-` reads standard input) checks the bundle,
//! writes the files and deletes the bundle, so no copy of the node's key is left behind. The
//! MOM then dials the server over TLS 1.3, presents `node.crt` and accepts only a server
//! certificate issued by `ca.crt` for the name in `server_name`. The bundle format and the
//! files are `capstan_proto::enrolment`'s, shared with the login nodes' `trqauthd`.

use std::path::{Path, PathBuf};

use capstan_proto::enrolment;
pub use capstan_proto::enrolment::Credentials;

fn tls_dir(mom_priv: &Path) -> PathBuf {
    mom_priv.join("tls")
}

/// Installs a bundle under `mom_priv` and deletes it (`-`: read standard input).
/// Returns the node name the certificate carries.
pub fn install(mom_priv: &Path, bundle: &Path) -> anyhow::Result<String> {
    Ok(enrolment::install(&tls_dir(mom_priv), bundle)?.0)
}

/// Loads the installed credentials; the error says how to enrol when there are none.
pub fn load(mom_priv: &Path) -> anyhow::Result<Credentials> {
    Ok(enrolment::load(
        &tls_dir(mom_priv),
        "pbs_mom --home DIR install-cert BUNDLE",
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

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
