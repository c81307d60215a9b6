//! Authenticated daemons (issue 3, SECURITY.md): real `pbs_server` and `pbs_mom` processes
//! over real TLS 1.3. Each test starts a cluster whose MOMs were enrolled the production way
//! (`pbs_server enroll`, `pbs_mom install-cert`), then points an impostor MOM at the server and
//! shows it refused, with the reason in the server's log, while the node it tried to be stays
//! down and no work reaches it.
//!
//! The user side of principle 3 (no request field says who the user is; the Unix socket's peer
//! credentials do) is shown by `control.rs::other_users_cannot_touch_a_job` (user B's qdel,
//! qhold, qsig of user A's job refused) and here by [`forged_owner_attributes_are_ignored`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

fn two_nodes() -> Vec<NodeSpec> {
    vec![NodeSpec::new("n1", "np=1"), NodeSpec::new("n2", "np=1")]
}

/// Stops n2's real MOM and waits until the server marks it down.
fn take_down_n2(c: &mut Cluster) {
    c.kill_mom("n2");
    assert!(
        wait_until(T, || c.node_state("n2").is_some_and(|s| s.contains("down"))),
        "n2 did not go down:\n{}",
        c.pbsnodes_text()
    );
}

/// Waits until the server log shows `needle` at least twice (the impostor was refused and
/// retried), then checks that n2 is still down and n1 still up.
fn assert_refused(c: &Cluster, needle: &str) {
    let seen = wait_until(T, || c.server_log_count(needle) >= 2);
    assert!(
        seen,
        "expected the server to log {needle:?} (twice); server log:\n{}",
        tail(&c.server_log(), 30)
    );
    let n2 = c.node_state("n2").unwrap_or_default();
    assert!(n2.contains("down"), "n2 must stay down, is {n2:?}");
    let n1 = c.node_state("n1").unwrap_or_default();
    assert!(!n1.contains("down"), "n1 must stay up, is {n1:?}");
    assert_eq!(
        c.server_log_count("MOM connected node=n2"),
        1,
        "only the real n2 ever connected:\n{}",
        tail(&c.server_log(), 30)
    );
}

fn impostor_home(c: &Cluster, name: &str) -> PathBuf {
    let home = c.root.join(format!("impostor-{name}"));
    fs::create_dir_all(&home).expect("impostor home");
    home
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[test]
fn enrolment_keeps_secrets_private() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let mode = |p: PathBuf| fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(c.home.join("server_priv/ca")), 0o700);
    assert_eq!(mode(c.home.join("server_priv/ca/ca.key")), 0o600);
    let tls = c.mom_home("n1").join("mom_priv/tls");
    assert_eq!(mode(tls.clone()), 0o700);
    assert_eq!(mode(tls.join("node.key")), 0o600);
    // No bundle is left behind (enroll_into asserts install-cert deleted it).
    let leftovers: Vec<_> = fs::read_dir(&c.root)
        .expect("read root")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bundle"))
        .collect();
    assert!(leftovers.is_empty(), "bundles left: {leftovers:?}");
    assert_contains(&c.server_log(), "TLS 1.3, client certificates required");
    // A job runs over the authenticated session.
    let (_, out) = c.run_job("ok.sh", "echo over-tls\n", &["-j", "oe"]);
    assert_contains(&out, "over-tls");
}

#[test]
fn mom_without_a_certificate_is_refused() {
    let mut c = Cluster::start(&two_nodes());
    take_down_n2(&mut c);

    // pbs_mom will not start unenrolled (and says how to enrol)...
    let home = impostor_home(&c, "nocert");
    let out = output_within(
        Command::new(bin_dir().join("pbs_mom"))
            .arg("--home")
            .arg(&home)
            .args(["--server", &c.mom_addr(), "--node-name", "n2"]),
        None,
    );
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "not enrolled");

    // ...and a plaintext MOM (no TLS, no certificate) claiming n2 is dropped by the TLS layer.
    c.spawn_mom(
        "plain",
        &home,
        &[
            "--insecure-plaintext-moms".into(),
            "--node-name".into(),
            "n2".into(),
        ],
        None,
    );
    assert_refused(&c, "MOM connection refused by TLS");

    // A TLS client that presents no certificate (openssl, where installed).
    if Command::new("openssl").arg("version").output().is_ok() {
        let _ = output_within(
            Command::new("openssl")
                .args(["s_client", "-tls1_3", "-connect", &c.mom_addr()])
                .args(["-servername", SERVER_NAME, "-alpn", "h2", "-CAfile"])
                .arg(c.home.join("server_priv/ca/ca.crt")),
            None,
        );
        assert!(
            wait_until(T, || c.server_log_count("peer sent no certificates") >= 1),
            "server log:\n{}",
            tail(&c.server_log(), 20)
        );
    } else {
        eprintln!("openssl not installed: skipped the certificate-less TLS client");
    }
}

#[test]
fn another_cas_certificate_is_refused() {
    let mut c = Cluster::start(&two_nodes());
    take_down_n2(&mut c);
    // A second cluster (its own server home, so its own CA) enrols an "n2".
    let other_server = c.root.join("other-server");
    fs::create_dir_all(other_server.join("server_priv")).expect("other server home");
    let home = impostor_home(&c, "otherca");
    c.enroll_into(&other_server, "n2", &home, &[]);
    // The attacker also knows our CA's certificate (it is public) and trusts it, so the
    // handshake reaches the point where the server checks the client's certificate.
    fs::copy(
        c.home.join("server_priv/ca/ca.crt"),
        home.join("mom_priv/tls/ca.crt"),
    )
    .expect("copy ca.crt");
    c.spawn_mom("otherca", &home, &[], None);
    assert_refused(
        &c,
        "MOM connection refused by TLS: invalid peer certificate",
    );

    // Unmodified, such a MOM refuses our server itself: it does not trust our CA either.
    let home2 = impostor_home(&c, "otherca2");
    c.enroll_into(&other_server, "n2", &home2, &[]);
    c.spawn_mom("otherca2", &home2, &[], None);
    assert!(
        wait_until(T, || c
            .mom_log("otherca2")
            .contains("invalid peer certificate")),
        "{}",
        c.mom_log("otherca2")
    );
    assert!(c.node_state("n2").unwrap_or_default().contains("down"));
}

#[test]
fn expired_certificate_is_refused() {
    let mut c = Cluster::start(&two_nodes());
    take_down_n2(&mut c);
    let home = impostor_home(&c, "expired");
    // Issued by the right CA, for the right node, but expired (2001).
    c.enroll_into(&c.home, "n2", &home, &["--not-after-unix", "1000000000"]);
    c.spawn_mom("expired", &home, &[], None);
    assert_refused(&c, "invalid peer certificate: Expired");
}

#[test]
fn another_nodes_certificate_is_refused() {
    let mut c = Cluster::start(&two_nodes());
    take_down_n2(&mut c);
    // n1's key and certificate, stolen, used by a MOM that claims to be n2.
    let home = impostor_home(&c, "stolen");
    copy_dir(
        &c.mom_home("n1").join("mom_priv/tls"),
        &home.join("mom_priv/tls"),
    );
    c.spawn_mom("stolen", &home, &["--node-name".into(), "n2".into()], None);
    assert_refused(&c, "certificate names node n1 but Hello claims n2");
    // No work for n2 went anywhere: a job asking for two nodes cannot start.
    let id = c.qsub("two.sh", "true\n", &["-l", "nodes=2"]);
    c.wait_held_back(&id);
    // The real n2 comes back and the job runs.
    c.start_mom("n2");
    c.wait_state(&id, "C", T);
}

#[test]
fn revoked_and_removed_nodes_are_refused() {
    let mut c = Cluster::start(&two_nodes());
    // Revoked by name while connected: the open session is closed, and the real n2's MOM,
    // which keeps redialling, cannot come back.
    fs::write(c.home.join("server_priv/revoked"), "n2\n").expect("revoked");
    assert!(
        wait_until(T, || c.node_state("n2").is_some_and(|s| s.contains("down"))),
        "n2 was not cut off:\n{}",
        tail(&c.server_log(), 20)
    );
    assert_contains(
        &c.server_log(),
        "closing MOM session: revoked: node n2 is listed",
    );
    assert_refused(&c, "MOM session refused: revoked: node n2 is listed");
    c.kill_mom("n2");

    // Revoked by serial: a fresh certificate for n2 works until its serial is listed.
    fs::write(c.home.join("server_priv/revoked"), "").expect("clear revoked");
    let home = impostor_home(&c, "reissued");
    c.enroll_into(&c.home, "n2", &home, &[]);
    let issued = fs::read_to_string(c.home.join("server_priv/ca/issued")).expect("issued");
    let serial = issued
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .expect("serial")
        .to_string();
    fs::write(
        c.home.join("server_priv/revoked"),
        format!("# lost laptop\n{serial}\n"),
    )
    .expect("revoke serial");
    c.spawn_mom("reissued", &home, &[], None);
    assert!(
        wait_until(T, || c.server_log_count("revoked: certificate serial") >= 2),
        "{}",
        tail(&c.server_log(), 20)
    );
    assert!(c.node_state("n2").unwrap_or_default().contains("down"));

    // A valid certificate for a node the nodes file does not list (removed, or never added).
    let home = impostor_home(&c, "n9");
    c.enroll_into(&c.home, "n9", &home, &[]);
    c.spawn_mom("n9", &home, &[], None);
    assert!(
        wait_until(T, || c
            .server_log_count("node n9 is not in the server's nodes file")
            >= 2),
        "{}",
        tail(&c.server_log(), 20)
    );
}

#[test]
fn forged_owner_attributes_are_ignored() {
    // Job_Owner (and a forged PBS_O_LOGNAME) sent in a Submit request are accepted for Torque
    // compatibility and ignored: the owner is the uid the Unix socket's peer credentials give.
    // (User_List and group_list naming root are refused: see the jobs tests.)
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    c.script("forged.sh", "id -un\n");
    let forge = env!("CARGO_BIN_EXE_capstan-forge");
    let mut cmd = Command::new(forge);
    cmd.arg(c.home.join("capstan.sock"))
        .arg(c.work.join("forged.sh"))
        .current_dir(&c.work);
    if is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(c.user.uid).gid(c.user.gid);
    }
    let out = output_within(&mut cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let owner = c.job_attr(&id, "Job_Owner").unwrap_or_default();
    assert!(
        owner.starts_with(&format!("{}@", c.user.name)),
        "Job_Owner {owner:?} must be the caller {}",
        c.user.name
    );
    assert_eq!(
        c.job_attr(&id, "euser").as_deref(),
        Some(c.user.name.as_str())
    );
    let _ = c.run_as_root("qdel", &[&id]);
}

#[test]
fn plaintext_is_explicit_loud_and_loopback_only() {
    // Refused outright on a non-loopback listener.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = output_within(
        Command::new(bin_dir().join("pbs_server"))
            .arg("--home")
            .arg(dir.path())
            .args(["--insecure-plaintext-moms", "--mom-listen", "0.0.0.0:1"]),
        None,
    );
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "must be a loopback address");

    // On loopback it works, with a warning from both daemons.
    let mut c = Cluster::start_custom(
        &[NodeSpec::new("n1", "np=1")],
        &["--insecure-plaintext-moms"],
        "127.0.0.1",
        &[],
    );
    let home = impostor_home(&c, "plain");
    c.spawn_mom(
        "plain",
        &home,
        &[
            "--insecure-plaintext-moms".into(),
            "--node-name".into(),
            "n1".into(),
        ],
        None,
    );
    assert!(c.wait_nodes_up(&["n1".to_string()], T));
    assert_contains(&c.server_log(), "PLAINTEXT (insecure)");
    assert_contains(&c.server_log(), "WARN");
    assert_contains(&c.mom_log("plain"), "PLAIN TCP");
}

#[test]
fn mom_in_another_network_namespace_joins_over_tls() {
    let ns = match NetNs::create("cv", 254) {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: cross-host test {why}");
            return;
        }
    };
    // The server listens on the host end of the veth link only; n1's MOM runs inside the
    // namespace, a real network hop away, and dials it.
    let nodes = [NodeSpec::new("n1", "np=1"), NodeSpec::new("n2", "np=1")];
    let mut c = Cluster::start_custom(&nodes, &[], &ns.host_ip, &["n2"]);
    c.start_mom_under("n1", Some(&["ip", "netns", "exec", ns.name.as_str()]));
    let home = c.mom_home("n1");
    assert!(
        c.wait_nodes_up(&["n1".to_string()], T),
        "n1 did not join from the namespace:\n{}\nMOM log:\n{}",
        tail(&c.server_log(), 20),
        c.mom_log("n1")
    );
    assert_contains(
        &c.server_log(),
        format!("MOM connected node=n1 peer={}:", ns.ns_ip),
    );
    // Work crosses the hop: a two-node job runs on both.
    let (_, out) = c.run_job(
        "hop.sh",
        "cat $PBS_NODEFILE\n",
        &["-l", "nodes=2", "-j", "oe"],
    );
    assert_contains(&out, "n1");
    assert_contains(&out, "n2");

    // An impostor inside the namespace with n1's stolen certificate, claiming n2, is refused.
    let stolen = impostor_home(&c, "ns-stolen");
    copy_dir(&home.join("mom_priv/tls"), &stolen.join("mom_priv/tls"));
    c.kill_mom("n2");
    c.spawn_mom(
        "ns-stolen",
        &stolen,
        &["--node-name".into(), "n2".into()],
        Some(&["ip", "netns", "exec", ns.name.as_str()][..]),
    );
    assert!(
        wait_until(T, || c
            .server_log_count("certificate names node n1 but Hello claims n2")
            >= 2),
        "{}",
        tail(&c.server_log(), 20)
    );
    drop(c);
    drop(ns);
}
