//! Users on other hosts (SECURITY.md, "A user on a login node"): a login node is a network
//! namespace made by the test, one veth hop from the server, running `trqauthd` with the
//! certificate `pbs_server enroll login1` issued. Real processes, real TLS, real users
//! (`capstantest`, `capstanother`); everything here needs root and skips, saying so, without.
//!
//! Shown: a user's qsub/qstat/qdel (and `qsub -I`'s terminal) on login1 work through the agent and the job's owner is
//! `capstantest@login1`; before `submit_hosts` lists login1 the same qsub is refused with
//! Torque's words and nothing is created; a forged assertion header does not change who the
//! user is; another user's qdel through the agent is refused; the agent survives a server
//! restart; a TLS client without a certificate, a MOM's certificate asserting a user, and a
//! revoked login node are refused; the user can neither read the agent's key nor run an agent.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use capstan_proto::pbse::{BADHOST, BADUSER};
use capstan_tests::*;

const T: Duration = Duration::from_secs(30);
const LOGIN: &str = "login1";

/// `trqauthd` running inside the login namespace, killed by PID on drop.
struct Agent {
    child: Child,
    home: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server on the host end of a veth link, n1's MOM beside it, and login1's agent in the
/// namespace. Declared in this order so they are dropped agent first, namespace last.
struct LoginSite {
    agent: Agent,
    c: Cluster,
    ns: NetNs,
}

fn forge() -> &'static str {
    env!("CARGO_BIN_EXE_capstan-forge")
}

fn setup(tag: &str) -> Option<LoginSite> {
    let ns = match NetNs::create(tag, 231) {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: the login-node tests need a network namespace: {why}");
            return None;
        }
    };
    let c = Cluster::start_custom(&[NodeSpec::new("n1", "np=2")], &[], &ns.host_ip, &["n1"]);
    let home = c.root.join(LOGIN);

    // What an administrator does: enrol the login node on the server, install it there.
    c.enroll_with("trqauthd", &c.home, LOGIN, &home, &[]);
    assert_eq!(
        fs::read_to_string(home.join("server_name")).expect("server_name"),
        format!("{SERVER_NAME}\n")
    );

    let log = c.root.join("trqauthd.log");
    let child = ns
        .command(bin_dir().join("trqauthd"), None)
        .arg("--home")
        .arg(&home)
        .arg("--server")
        .arg(c.mom_addr())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("agent log"))
        .spawn()
        .expect("spawn trqauthd");
    let agent = Agent {
        child,
        home: home.clone(),
        log,
    };
    assert!(
        wait_until(T, || home.join("trqauthd.sock").exists()),
        "trqauthd did not come up:\n{}",
        agent.log()
    );
    Some(LoginSite { agent, c, ns })
}

impl LoginSite {
    /// A command run on login1 (in its namespace, `PBS_HOME` = the login node's home) as
    /// `user`, from the work directory.
    fn login_run(&self, user: &User, program: &str, args: &[&str]) -> Output {
        output_within(
            self.ns
                .command(bin_dir().join(program), Some(user))
                .args(args)
                .env("PBS_HOME", &self.agent.home)
                .env_remove("CAPSTAN_SOCKET")
                .env_remove("PBS_DEFAULT")
                .current_dir(&self.c.work),
            None,
        )
    }

    fn qsub(&self, user: &User, name: &str, body: &str) -> Output {
        self.c.script(name, body);
        self.login_run(user, "qsub", &[name])
    }

    /// `set server submit_hosts = HOST` through qmgr on the server host, as its manager.
    fn allow_submit_host(&self, host: &str) {
        let out = self.c.run_as_root(
            "qmgr",
            &["-c", &format!("set server submit_hosts = {host}")],
        );
        assert!(out.status.success(), "qmgr: {}", stderr(&out));
    }

    /// `capstan-forge tls`: from the login namespace, as `user` (root when `None`), dial the
    /// server's TLS listener presenting the certificate in `cert_dir` (none when `None`) and
    /// submit asserting `asserted`.
    fn forge_tls(&self, user: Option<&User>, cert_dir: Option<&Path>, asserted: &str) -> Output {
        let ca = self.c.root.join("ca.crt");
        if !ca.exists() {
            fs::copy(self.c.home.join("server_priv/ca/ca.crt"), &ca).expect("copy the CA");
            fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).expect("chmod ca.crt");
        }
        let script = self.c.script("forged.sh", "id -un\n");
        let cert_dir = cert_dir.map_or("-".into(), |d| d.to_string_lossy().to_string());
        output_within(
            self.ns
                .command(forge(), user)
                .args(["tls", &self.c.mom_addr(), SERVER_NAME])
                .arg(&ca)
                .arg(cert_dir)
                .arg(asserted)
                .arg(script),
            None,
        )
    }

    /// Jobs the server holds, as root on the server host.
    fn server_job_count(&self) -> usize {
        let out = self.c.run_as_root("qstat", &[]);
        assert!(out.status.success(), "qstat: {}", stderr(&out));
        stdout(&out).lines().filter(|l| l.contains(".tsrv")).count()
    }
}

#[test]
fn a_login_node_submits_through_its_agent() {
    let Some(site) = setup("la") else { return };
    let user = site.c.user.clone();

    // Not yet a submit host: refused in Torque's words, nothing created, the refusal logged.
    let out = site.qsub(&user, "early.sh", "echo early\n");
    assert!(!out.status.success(), "qsub must be refused");
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "qsub: cannot connect to server tsrv (errno={BADHOST}) Access from host not \
             allowed, or unknown host"
        )
    );
    assert_eq!(code(&out), BADHOST % 256);
    assert_eq!(site.server_job_count(), 0, "a refused qsub creates nothing");
    assert_contains(
        &site.c.server_log(),
        "remote request refused: host login1 is not in submit_hosts",
    );
    let out = site.login_run(&user, "qstat", &[]);
    assert!(!out.status.success());
    assert_contains(
        &stderr(&out),
        format!("(errno={BADHOST}) Access from host not allowed"),
    );

    site.allow_submit_host(LOGIN);

    // Now the job runs, owned by the user at the login host.
    let out = site.qsub(&user, "hello.sh", "echo hello from $PBS_O_HOST; id -un\n");
    assert!(out.status.success(), "qsub on login1: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.ends_with(".tsrv"), "job id {id:?}");
    site.c.wait_state(&id, "C", T);
    assert_eq!(
        site.c.job_attr(&id, "Job_Owner"),
        Some(format!("{}@{LOGIN}", user.name))
    );
    assert_eq!(site.c.job_attr(&id, "euser"), Some(user.name.clone()));
    let output = site.c.read(site.c.default_stdout("hello.sh", &id));
    assert_contains(&output, &user.name);

    // An interactive job's terminal passes through the agent too (`-x`: no terminal needed).
    let script = site.c.script(
        "inter.sh",
        "#!/bin/sh\necho \"interactive $PBS_ENVIRONMENT as $(id -un)\"\n",
    );
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod inter.sh");
    let out = site.login_run(&user, "qsub", &["-I", "-x", script.to_str().unwrap()]);
    assert!(out.status.success(), "qsub -I on login1: {}", stderr(&out));
    assert_contains(
        &stdout(&out),
        format!("interactive PBS_INTERACTIVE as {}", user.name),
    );
    assert_contains(&stdout(&out), " completed\n");

    // qstat and qdel through the agent.
    let out = site.qsub(&user, "long.sh", "sleep 300\n");
    assert!(out.status.success(), "qsub: {}", stderr(&out));
    let long = stdout(&out).trim().to_string();
    let out = site.login_run(&user, "qstat", &["-f", &long]);
    assert!(out.status.success(), "qstat on login1: {}", stderr(&out));
    assert_contains(&stdout(&out), format!("Job_Owner = {}@{LOGIN}", user.name));
    if let Some(other) = other_user() {
        // Another user on the login node is that user, not the owner.
        let out = site.login_run(&other, "qdel", &[&long]);
        assert!(
            !out.status.success(),
            "{} must not delete the job",
            other.name
        );
        assert_contains(&stderr(&out), "Unauthorized Request");
    }
    let out = site.login_run(&user, "qdel", &[&long]);
    assert!(out.status.success(), "qdel on login1: {}", stderr(&out));
    assert!(
        wait_until(T, || site.c.job_state(&long).as_deref() != Some("R")
            && site.c.job_state(&long).as_deref() != Some("Q")),
        "qdel through the agent did not end the job"
    );

    // A forged assertion header (and forged owner fields) through the agent change nothing.
    site.c.script("forged.sh", "id -un\n");
    let out = output_within(
        site.ns
            .command(forge(), Some(&user))
            .arg(site.agent.home.join("trqauthd.sock"))
            .arg(site.c.work.join("forged.sh"))
            .current_dir(&site.c.work),
        None,
    );
    assert!(out.status.success(), "forge: {}", stderr(&out));
    let forged = stdout(&out).trim().to_string();
    assert_eq!(
        site.c.job_attr(&forged, "Job_Owner"),
        Some(format!("{}@{LOGIN}", user.name))
    );
    assert_eq!(site.c.job_attr(&forged, "euser"), Some(user.name.clone()));
    assert_contains(
        &site.agent.log(),
        "removed a user assertion the client sent",
    );

    // While the server is down the agent answers with Torque's connect failure; it
    // reconnects by itself when the server is back.
    let mut site = site;
    site.c.kill_server();
    let out = site.login_run(&user, "qstat", &[]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "qstat: cannot connect to server tsrv (errno=111) Connection refused"
    );
    site.c.start_server();
    assert!(
        wait_until(T, || site.login_run(&user, "qstat", &[]).status.success()),
        "qstat through the agent after a server restart:\n{}",
        tail(&site.agent.log(), 20)
    );

    // SIGTERM: the agent stops and removes its socket.
    let pid = nix::unistd::Pid::from_raw(site.agent.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM trqauthd");
    let mut status = None;
    assert!(
        wait_until(T, || {
            status = site.agent.child.try_wait().expect("wait trqauthd");
            status.is_some()
        }),
        "trqauthd did not stop on SIGTERM"
    );
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
    assert!(!site.agent.home.join("trqauthd.sock").exists());
    assert_contains(&site.agent.log(), "trqauthd stopped");
}

#[test]
fn login_node_secrets_and_impostors_are_refused() {
    let Some(site) = setup("lb") else { return };
    let user = site.c.user.clone();
    site.allow_submit_host(LOGIN);
    let tls = site.agent.home.join("trqauthd_priv");

    // The agent's key is root's: 0700 directory, 0600 files; the user can read none of it,
    // and cannot run an agent of their own (not root; and with --allow-non-root, no key).
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join("node.key")), 0o600);
    let out = output_within(
        site.ns
            .command("/bin/cat", Some(&user))
            .arg(tls.join("node.key")),
        None,
    );
    assert!(!out.status.success(), "the user read the agent's key");
    let out = site.login_run(&user, "trqauthd", &["--home", "/tmp/nowhere"]);
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "must run as root");
    let own_home = site.agent.home.to_string_lossy().to_string();
    let out = site.login_run(
        &user,
        "trqauthd",
        &[
            "--allow-non-root",
            "--home",
            &own_home,
            "--server",
            &site.c.mom_addr(),
        ],
    );
    assert!(!out.status.success(), "a user ran the agent with its key");
    assert_contains(&stderr(&out), "Permission denied");

    // A TLS client without a certificate, from the login node, is dropped in the handshake.
    let out = site.forge_tls(Some(&user), None, &user.name);
    assert!(
        !out.status.success(),
        "no certificate, yet: {}",
        stdout(&out)
    );
    assert!(
        wait_until(T, || site.c.server_log_count("peer sent no certificates")
            >= 1),
        "server log:\n{}",
        tail(&site.c.server_log(), 20)
    );

    // A MOM's certificate (n1 is a node, not a submit host) cannot assert users.
    let mom_tls = site.c.mom_home("n1").join("mom_priv/tls");
    let out = site.forge_tls(None, Some(&mom_tls), &user.name);
    assert!(
        !out.status.success(),
        "n1 asserted a user: {}",
        stdout(&out)
    );
    assert_contains(&stderr(&out), format!("refused errno={BADHOST}"));
    assert_contains(
        &site.c.server_log(),
        "remote request refused: host n1 is not in submit_hosts",
    );

    // The genuine agent's certificate asserting an unknown user is refused too.
    let out = site.forge_tls(None, Some(&tls), "nosuchuser");
    assert!(
        !out.status.success(),
        "unknown user accepted: {}",
        stdout(&out)
    );
    assert_contains(&stderr(&out), format!("refused errno={BADUSER}"));

    // A revoked login node is refused at once (the list is read at every request).
    fs::write(
        site.c.home.join("server_priv/revoked"),
        format!("{LOGIN}\n"),
    )
    .expect("revoke");
    let out = site.qsub(&user, "late.sh", "echo late\n");
    assert!(!out.status.success(), "a revoked login node submitted");
    assert_contains(
        &stderr(&out),
        format!("(errno={BADHOST}) Access from host not allowed"),
    );
    assert_contains(&site.c.server_log(), "revoked: node login1 is listed in");
    assert_eq!(site.server_job_count(), 0);
}

#[test]
fn the_plaintext_listener_serves_no_commands() {
    // With --insecure-plaintext-moms there is no certificate to tell hosts apart, so the MOM
    // listener does not serve Batch at all: an assertion over it reaches nothing.
    let c = Cluster::start_custom(
        &[NodeSpec::new("n1", "np=1")],
        &["--insecure-plaintext-moms"],
        "127.0.0.1",
        &[],
    );
    let script = c.script("forged.sh", "id -un\n");
    let out = output_within(
        Command::new(forge())
            .args(["plain", &c.mom_addr(), "root"])
            .arg(script),
        None,
    );
    assert!(
        !out.status.success(),
        "plain TCP took a command: {}",
        stdout(&out)
    );
    assert_contains(&stderr(&out), "Unimplemented");
    let out = c.run_as_root("qstat", &[]);
    assert!(
        out.status.success() && stdout(&out).is_empty(),
        "{}",
        stdout(&out)
    );
}
