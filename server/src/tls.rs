//! The cluster CA, node enrolment, and the MOM listener's TLS (design principle 3).
//!
//! * The CA lives in `DIR/server_priv/ca/` (directory 0700; `ca.key` 0600, `ca.crt`), created on
//!   the server's first start or the first `pbs_server enroll`, whichever comes first.
//! * `pbs_server enroll NODE` issues a node certificate (CN and the only DNS SAN = NODE,
//!   extended key usage clientAuth only) with a fresh key and writes an enrolment bundle
//!   (0600): the node's certificate, the CA certificate, the node's key and the name the server's
//!   certificate carries. `pbs_mom install-cert BUNDLE` installs it and deletes the bundle.
//!   Every issued serial is appended to `DIR/server_priv/ca/issued`.
//! * At every start the server signs itself a fresh certificate (DNS SAN = server name,
//!   extended key usage serverAuth only) whose key stays in memory. A node certificate can
//!   therefore never pass for the server's, nor the server's for a node's.
//! * The MOM listener accepts TLS 1.3 only and requires a client certificate chaining to the
//!   cluster CA and valid now; handshake failures (no certificate, another CA, expired) are
//!   logged with rustls' reason and the connection dropped before any gRPC is spoken.
//! * `DIR/server_priv/revoked` lists node names or certificate serials (hex) that may no
//!   longer connect; it is read at every connection, so an edit takes effect without restart.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// Default lifetime of a node certificate.
pub const DEFAULT_NODE_DAYS: u32 = 825;
/// Lifetime of the cluster CA.
const CA_DAYS: i64 = 3650;
/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// First line of an enrolment bundle.
pub use capstan_proto::enrolment::BUNDLE_MAGIC;

/// Where the CA's files are.
#[derive(Debug, Clone)]
pub struct CaPaths {
    pub dir: PathBuf,
}

impl CaPaths {
    pub fn new(server_priv: &Path) -> CaPaths {
        CaPaths {
            dir: server_priv.join("ca"),
        }
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn issued(&self) -> PathBuf {
        self.dir.join("issued")
    }
}

/// The loaded cluster CA.
pub struct Ca {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn now_offset() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn random_serial() -> anyhow::Result<[u8; 16]> {
    let mut bytes = [0u8; 16];
    let mut f = fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut bytes).context("reading /dev/urandom")?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip: the hex form stays stable
    Ok(bytes)
}

/// Hex form of a serial as stored in `issued` and accepted in `revoked`.
pub fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `contents` to a new file with `mode` (never follows or reuses an existing file).
fn write_private(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().ok();
    Ok(())
}

/// Loads the cluster CA, creating it first if `DIR/server_priv/ca/` has none.
pub fn ensure_ca(server_priv: &Path, server_name: &str) -> anyhow::Result<Ca> {
    let paths = CaPaths::new(server_priv);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", paths.dir.display()))?;
    if !paths.key().exists() || !paths.cert().exists() {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Capstan");
        let serial = random_serial()?;
        // The serial in the name keeps two clusters' CAs apart even with one server name.
        dn.push(
            DnType::CommonName,
            format!(
                "Capstan cluster CA {server_name} {}",
                &serial_hex(&serial)[..8]
            ),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = now_offset();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let cert = params.self_signed(&key).context("signing the CA")?;
        write_private(&paths.key(), key.serialize_pem().as_bytes(), 0o600)?;
        write_private(&paths.cert(), cert.pem().as_bytes(), 0o644)?;
        info!(dir = %paths.dir.display(), "created the cluster CA");
    }
    load_ca(&paths)
}

fn load_ca(paths: &CaPaths) -> anyhow::Result<Ca> {
    let mode = fs::metadata(paths.key())
        .with_context(|| format!("reading {}", paths.key().display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}); chmod 600 it",
            paths.key().display(),
            mode & 0o777
        );
    }
    let key_pem = fs::read_to_string(paths.key())
        .with_context(|| format!("reading {}", paths.key().display()))?;
    let cert_pem = fs::read_to_string(paths.cert())
        .with_context(|| format!("reading {}", paths.cert().display()))?;
    let key = KeyPair::from_pem(&key_pem).context("parsing the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).context("parsing the CA certificate")?;
    let cert_der = pem_certs(&cert_pem)?
        .into_iter()
        .next()
        .context("the CA file holds no certificate")?;
    Ok(Ca {
        cert_pem,
        cert_der,
        issuer,
    })
}

/// All certificates in a PEM text.
pub fn pem_certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing PEM certificates")
}

/// Whether `name` is acceptable as a node name in a certificate (a DNS name).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// A node certificate just issued.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: String,
    pub not_after: time::OffsetDateTime,
}

/// Issues a certificate naming `node` (CN and DNS SAN), clientAuth only.
pub fn issue_node(
    ca: &Ca,
    paths: &CaPaths,
    node: &str,
    not_after: time::OffsetDateTime,
) -> anyhow::Result<Issued> {
    if !valid_node_name(node) {
        bail!("{node:?} is not a valid node name (letters, digits, '-', '_', '.')");
    }
    let key = KeyPair::generate().context("generating the node key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Capstan");
    dn.push(DnType::CommonName, node);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(
        node.to_string().try_into().context("node name")?,
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = now_offset() - time::Duration::hours(1);
    params.not_after = not_after;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .context("signing the node certificate")?;
    let serial = serial_hex(&serial);
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(paths.issued())
        .with_context(|| format!("opening {}", paths.issued().display()))?;
    writeln!(log, "{serial} {node} {}", not_after.unix_timestamp().max(0))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial,
        not_after,
    })
}

/// The text of an enrolment bundle (format: `capstan_proto::enrolment`).
pub fn bundle_text(node: &str, server_name: &str, ca: &Ca, issued: &Issued) -> String {
    capstan_proto::enrolment::render(
        node,
        server_name,
        &issued.serial,
        &issued.cert_pem,
        &ca.cert_pem,
        &issued.key_pem,
    )
}

/// `pbs_server enroll`: issues a node certificate and writes the bundle to `out`
/// (`-` = standard output). Returns the serial.
pub fn enroll(
    server_priv: &Path,
    server_name: &str,
    node: &str,
    days: u32,
    not_after_unix: Option<i64>,
    out: &Path,
) -> anyhow::Result<String> {
    let ca = ensure_ca(server_priv, server_name)?;
    let not_after = match not_after_unix {
        Some(t) => time::OffsetDateTime::from_unix_timestamp(t).context("--not-after-unix")?,
        None => now_offset() + time::Duration::days(days.into()),
    };
    let issued = issue_node(&ca, &CaPaths::new(server_priv), node, not_after)?;
    let text = bundle_text(node, server_name, &ca, &issued);
    if out == Path::new("-") {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
        f.write_all(text.as_bytes())?;
    }
    Ok(issued.serial)
}

/// What the server's TLS layer proved about a MOM's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate's common name, which must also be one of its DNS SANs.
    pub name: String,
    /// The certificate's serial, lower-case hex.
    pub serial: String,
}

/// Reads the node name and serial from a verified peer certificate (the leaf, first).
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<PeerIdentity, String> {
    let leaf = certs.first().ok_or("no client certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("unparsable client certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("client certificate has no common name")?
        .to_string();
    let sans: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("bad subjectAltName: {e}")),
    };
    if !sans.iter().any(|s| s == &cn) {
        return Err(format!(
            "certificate common name {cn:?} is not among its DNS names {sans:?}"
        ));
    }
    Ok(PeerIdentity {
        name: cn,
        serial: serial_hex(cert.raw_serial()),
    })
}

/// Whether `DIR/server_priv/revoked` lists the node's name or its certificate's serial.
/// Lines: a node name or a serial (hex, colons allowed); `#` starts a comment.
pub fn is_revoked(revoked_file: &Path, peer: &PeerIdentity) -> Option<String> {
    let text = fs::read_to_string(revoked_file).ok()?;
    for line in text.lines() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        if entry == peer.name {
            return Some(format!(
                "node {} is listed in {}",
                peer.name,
                revoked_file.display()
            ));
        }
        let hex: String = entry
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.trim_start_matches('0') == peer.serial.trim_start_matches('0') {
            return Some(format!(
                "certificate serial {} is listed in {}",
                peer.serial,
                revoked_file.display()
            ));
        }
    }
    None
}

/// The MOM listener's rustls configuration: TLS 1.3 only, client certificates required and
/// verified against the cluster CA, a fresh serverAuth certificate naming `server_name`.
pub fn server_config(ca: &Ca, server_name: &str) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.cert_der.clone())
        .context("adding the CA to the trust store")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the client verifier")?;

    let key = KeyPair::generate().context("generating the server key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Capstan");
    dn.push(DnType::CommonName, format!("pbs_server {server_name}"));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(
        server_name
            .to_string()
            .try_into()
            .context("server name as a DNS name")?,
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    let now = now_offset();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .context("signing the server certificate")?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], key_der)
        .context("server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts TCP connections on `listener`, completes the TLS handshake and hands established
/// streams to the gRPC server. A failed handshake is logged with its reason and dropped.
pub fn spawn_acceptor(
    listener: TcpListener,
    config: ServerConfig,
) -> mpsc::Receiver<Result<TlsStream<TcpStream>, std::io::Error>> {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("MOM listener accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = tx.closed() => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => log_refused(peer, &e.to_string()),
                    Err(_) => log_refused(peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

fn log_refused(peer: SocketAddr, reason: &str) {
    warn!(peer = %peer, "MOM connection refused by TLS: {reason}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_node_certificates_that_name_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ensure_ca(dir.path(), "srv").unwrap();
        let mode = fs::metadata(dir.path().join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let paths = CaPaths::new(dir.path());
        let issued = issue_node(&ca, &paths, "n1", now_offset() + time::Duration::days(1)).unwrap();
        let certs = pem_certs(&issued.cert_pem).unwrap();
        let peer = peer_identity(&certs).unwrap();
        assert_eq!(peer.name, "n1");
        assert_eq!(peer.serial, issued.serial);
        // Loading again reuses the same CA.
        let again = ensure_ca(dir.path(), "srv").unwrap();
        assert_eq!(again.cert_pem, ca.cert_pem);
        assert!(server_config(&ca, "srv").is_ok());
    }

    #[test]
    fn revoked_file_matches_names_and_serials() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revoked");
        let peer = PeerIdentity {
            name: "n1".into(),
            serial: "1a2b".into(),
        };
        assert!(is_revoked(&file, &peer).is_none());
        fs::write(&file, "# comment\nn2\n").unwrap();
        assert!(is_revoked(&file, &peer).is_none());
        fs::write(&file, "1A:2B  # stolen laptop\n").unwrap();
        assert!(is_revoked(&file, &peer).is_some());
        fs::write(&file, "n1\n").unwrap();
        assert!(is_revoked(&file, &peer).is_some());
    }

    #[test]
    fn node_names_must_be_dns_names() {
        assert!(valid_node_name("a1"));
        assert!(valid_node_name("node01.lab"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("a b"));
        assert!(!valid_node_name("-x"));
        assert!(!valid_node_name("x/../y"));
    }
}
