//! Test bed for Capstan's end-to-end tests: real `pbs_server` and `pbs_mom` processes on
//! loopback, driven by the real command binaries.
//!
//! A [`Cluster`] lives in a temporary directory of its own (server home, one home per MOM,
//! the job work directory), starts one server and one MOM per node, and kills exactly the
//! processes it started (by PID) when dropped. Waiting is always for a condition, polled a
//! bounded number of times (see [`wait_until`]), never a bare sleep.
//!
//! When the tests run as root, commands run as an unprivileged user created for the purpose
//! ([`TEST_USER`]), so jobs really run through the MOM's setuid path.
//!
//! MOMs talk to the server over mutually authenticated TLS, as in production: before a MOM
//! first starts, the cluster enrols its node (`pbs_server enroll NODE`, then
//! `pbs_mom install-cert BUNDLE`), see [`Cluster::enroll`].

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The unprivileged user commands run as when the tests run as root.
pub const TEST_USER: &str = "capstantest";
/// A second unprivileged user, for permission tests.
pub const OTHER_USER: &str = "capstanother";
/// The server name every test cluster uses, so job ids are predictable (`0.tsrv`).
pub const SERVER_NAME: &str = "tsrv";

/// Where the binaries are: `$CAPSTAN_BIN_DIR` (`test.sh` sets it to what `build.sh` gathered in
/// `target/capstan/debug`), else the workspace's `target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPSTAN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("debug")
}

fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`./build.sh`, or `cargo build --workspace`)",
        path.display()
    );
    path
}

/// A user the commands and jobs run as.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The server host's short name: the host part of `managers = root@HOST` and `Job_Owner`.
pub fn host() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .into_string()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_string()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn lookup_user(name: &str) -> Option<User> {
    let user = nix::unistd::User::from_name(name).ok().flatten()?;
    Some(User {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    })
}

/// The user tests submit as: [`TEST_USER`] (created if missing) when root, else ourselves.
pub fn test_user() -> User {
    static USER: OnceLock<User> = OnceLock::new();
    USER.get_or_init(|| {
        if is_root() {
            ensure_user(TEST_USER)
        } else {
            let uid = nix::unistd::getuid();
            let user = nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .expect("current user has a passwd entry");
            User {
                name: user.name,
                uid: uid.as_raw(),
                gid: user.gid.as_raw(),
                home: user.dir,
            }
        }
    })
    .clone()
}

/// A second user (root only); `None` when not root, and tests needing it skip with a message.
pub fn other_user() -> Option<User> {
    static USER: OnceLock<Option<User>> = OnceLock::new();
    USER.get_or_init(|| is_root().then(|| ensure_user(OTHER_USER)))
        .clone()
}

fn ensure_user(name: &str) -> User {
    if let Some(user) = lookup_user(name) {
        return user;
    }
    let status = Command::new("useradd")
        .args(["--create-home", "--shell", "/bin/bash", name])
        .status()
        .expect("run useradd");
    // Another test thread may have created it in between.
    if !status.success() && lookup_user(name).is_none() {
        panic!("useradd {name} failed: {status}");
    }
    lookup_user(name).expect("user exists after useradd")
}

/// A command running on a pseudo-terminal the test holds ([`Cluster::on_terminal`]): what it
/// wrote so far, and the keys to type into it.
pub struct Terminal {
    pub child: Child,
    master: fs::File,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Everything written to the terminal so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Waits until `needle` has been written (panics with the screen if not within
    /// `timeout`); the screen so far.
    pub fn expect(&self, needle: &str, timeout: Duration) -> String {
        if !wait_until(timeout, || self.text().contains(needle)) {
            panic!(
                "{needle:?} never appeared on the terminal:\n{}",
                self.text()
            );
        }
        self.text()
    }

    /// Types `keys`.
    pub fn type_keys(&mut self, keys: &str) {
        self.master
            .write_all(keys.as_bytes())
            .expect("type on the terminal");
    }

    /// Types `keys` from a thread of its own, for input larger than the terminal takes at
    /// once (a paste); what cannot be typed (the command is gone) is dropped.
    pub fn type_in_background(&self, keys: String) {
        let mut master = self.master.try_clone().expect("dup the terminal");
        std::thread::spawn(move || {
            let _ = master.write_all(keys.as_bytes());
        });
    }

    /// Waits for the command to exit (panics if it does not within `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().expect("wait for the command");
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("the command did not exit:\n{}", self.text()))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How long one command may run before its test calls it hung.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// Runs `command` to its end, `input` on its stdin (none: at EOF at once, as
/// `Command::output` gives it), and returns its output. A command still running after
/// [`COMMAND_LIMIT`] is killed and fails its test there, rather than hanging the whole run
/// until CI's limit.
pub fn output_within(command: &mut Command, input: Option<&[u8]>) -> Output {
    output_bounded(command, input, COMMAND_LIMIT)
}

fn output_bounded(command: &mut Command, input: Option<&[u8]>, limit: Duration) -> Output {
    use std::io::Read;
    use std::sync::mpsc;
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    // Written from a thread of its own: a command may answer before it reads all its input.
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    // Each stream is read to its end (the command's exit, for a command that leaves no
    // process behind) on a thread that reports when done, so the wait needs no polling.
    let (done, finished) = mpsc::channel::<(bool, Vec<u8>)>();
    let readers: [(bool, Box<dyn Read + Send>); 2] = [
        (true, Box::new(child.stdout.take().expect("stdout"))),
        (false, Box::new(child.stderr.take().expect("stderr"))),
    ];
    for (is_stdout, mut stream) in readers {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            let _ = done.send((is_stdout, bytes));
        });
    }
    let deadline = Instant::now() + limit;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match finished.recv_timeout(left) {
            Ok((true, bytes)) => stdout = bytes,
            Ok((false, bytes)) => stderr = bytes,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{command:?} still running after {limit:?}: killed");
            }
        }
    }
    let status = child.wait().expect("wait for the command");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback TCP port free now, for a server that binds it a moment later, chosen below the
/// kernel's ephemeral range. Why not port 0: that hands out a port from the ephemeral range,
/// where every outgoing connection also takes its source port, and the MOMs of the tests
/// running beside this one dial out all the time; one of them took a port between the check
/// and the server's bind, and the server failed with "Address already in use". Ports are
/// handed out in turn from a start that depends on the process, so two clusters of one test
/// binary never get the same one.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.clamp(LOWEST + 1_000, 65_536) - LOWEST;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(LOWEST + offset).expect("below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOWEST}..{}", LOWEST + span);
}

/// One node line of the cluster's nodes file.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// The rest of the nodes-file line after the name: `np=2 site=a bigmem`.
    pub attrs: String,
}

impl NodeSpec {
    pub fn new(name: &str, attrs: &str) -> Self {
        NodeSpec {
            name: name.to_string(),
            attrs: attrs.to_string(),
        }
    }
}

/// A running test cluster.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    pub work: PathBuf,
    pub mom_port: u16,
    /// The address the server's MOM listener binds and MOMs dial (127.0.0.1 unless a test
    /// chooses another of its own, e.g. a veth address in a namespace it made).
    pub mom_host: String,
    pub nodes: Vec<NodeSpec>,
    pub user: User,
    server: Option<Child>,
    moms: Vec<(String, Child)>,
    server_args: Vec<String>,
}

impl Cluster {
    /// A cluster of `nodes`, every MOM up and reporting before this returns.
    pub fn start(nodes: &[NodeSpec]) -> Cluster {
        Self::start_with(nodes, &[])
    }

    /// As [`Cluster::start`], with extra `pbs_server` arguments.
    pub fn start_with(nodes: &[NodeSpec], server_args: &[&str]) -> Cluster {
        let all: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        Self::start_custom(nodes, server_args, "127.0.0.1", &all)
    }

    /// The general form: the server's MOM listener on `mom_host`, and MOMs started (and
    /// waited for) only for the nodes in `local_moms`; the test starts the others itself.
    pub fn start_custom(
        nodes: &[NodeSpec],
        server_args: &[&str],
        mom_host: &str,
        local_moms: &[&str],
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("capstan-test-")
            .tempdir()
            .expect("create temp dir");
        let root = dir.path().to_path_buf();
        // The test user must reach the socket and its work directory.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod root");
        let home = root.join("server");
        fs::create_dir_all(home.join("server_priv")).expect("server_priv");
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod home");
        let mut nodes_file = String::new();
        for node in nodes {
            nodes_file.push_str(&format!("{} {}\n", node.name, node.attrs));
        }
        fs::write(home.join("server_priv").join("nodes"), nodes_file).expect("nodes file");
        let user = test_user();
        let work = root.join("work");
        fs::create_dir_all(&work).expect("work dir");
        chown(&work, Some(user.uid), Some(user.gid)).expect("chown work");
        let mut cluster = Cluster {
            _dir: dir,
            root,
            home,
            work,
            mom_port: free_port(),
            mom_host: mom_host.to_string(),
            nodes: nodes.to_vec(),
            user,
            server: None,
            moms: Vec::new(),
            server_args: server_args.iter().map(|s| s.to_string()).collect(),
        };
        cluster.start_server();
        for node in local_moms {
            cluster.start_mom(node);
        }
        let names: Vec<String> = local_moms.iter().map(|n| n.to_string()).collect();
        assert!(
            cluster.wait_nodes_up(&names, Duration::from_secs(20)),
            "MOMs did not all report in:\n{}",
            cluster.pbsnodes_text()
        );
        cluster
    }

    /// Starts (or restarts) `pbs_server` and waits until it answers `qstat`.
    pub fn start_server(&mut self) {
        let log = fs::File::create(self.root.join("server.log"))
            .or_else(|_| {
                fs::OpenOptions::new()
                    .append(true)
                    .open(self.root.join("server.log"))
            })
            .expect("server log");
        let child = Command::new(bin("pbs_server"))
            .arg("--home")
            .arg(&self.home)
            .arg("--mom-listen")
            .arg(self.mom_addr())
            .arg("--server-name")
            .arg(SERVER_NAME)
            // Quick node liveness for tests, unless the test chose its own.
            .args(
                (!self.server_args.iter().any(|a| a == "--status-interval"))
                    .then_some(["--status-interval", "1"])
                    .into_iter()
                    .flatten(),
            )
            // Job mail goes nowhere, unless the test keeps it: never to the host's MTA.
            .args(
                (!self.server_args.iter().any(|a| a == "--sendmail"))
                    .then_some(["--sendmail", "/bin/true"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.server_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pbs_server");
        self.server = Some(child);
        let ready = wait_until(Duration::from_secs(20), || {
            self.home.join("capstan.sock").exists() && self.run("qstat", &[]).status.success()
        });
        assert!(ready, "pbs_server did not come up:\n{}", self.server_log());
    }

    /// `HOST:PORT` of the server's MOM listener.
    pub fn mom_addr(&self) -> String {
        format!("{}:{}", self.mom_host, self.mom_port)
    }

    /// The home directory of `node`'s MOM.
    pub fn mom_home(&self, node: &str) -> PathBuf {
        self.root.join(format!("mom-{node}"))
    }

    /// Runs `pbs_server --home SERVER_HOME enroll NODE` (extra arguments after it) and installs
    /// the bundle into `mom_home` with `pbs_mom install-cert`, as an administrator would.
    /// Panics with the commands' output on failure.
    pub fn enroll_into(&self, server_home: &Path, node: &str, mom_home: &Path, extra: &[&str]) {
        self.enroll_with("pbs_mom", server_home, node, mom_home, extra);
    }

    /// As [`Cluster::enroll_into`], installing with `INSTALLER --home HOME install-cert`
    /// (`pbs_mom` for a node, `trqauthd` for a login node).
    pub fn enroll_with(
        &self,
        installer: &str,
        server_home: &Path,
        node: &str,
        home: &Path,
        extra: &[&str],
    ) {
        fs::create_dir_all(home).expect("enrolled home");
        fs::set_permissions(home, fs::Permissions::from_mode(0o755)).expect("chmod");
        // A name of its own for each enrolment, so that a node enrolled twice does not meet
        // its earlier bundle.
        static BUNDLES: AtomicU32 = AtomicU32::new(0);
        let n = BUNDLES.fetch_add(1, Ordering::Relaxed);
        let bundle = self.root.join(format!("{node}-{n}.bundle"));
        let out = output_within(
            Command::new(bin("pbs_server"))
                .arg("--home")
                .arg(server_home)
                .args(["--server-name", SERVER_NAME, "enroll", node, "--out"])
                .arg(&bundle)
                .args(extra),
            None,
        );
        assert!(out.status.success(), "enroll {node}: {}", stderr(&out));
        let out = output_within(
            Command::new(bin(installer))
                .arg("--home")
                .arg(home)
                .arg("install-cert")
                .arg(&bundle),
            None,
        );
        assert!(
            out.status.success(),
            "install-cert {node}: {}",
            stderr(&out)
        );
        assert!(!bundle.exists(), "install-cert must delete the bundle");
    }

    /// Enrols `node` with this cluster's server into its usual MOM home.
    pub fn enroll(&self, node: &str) {
        self.enroll_into(&self.home, node, &self.mom_home(node), &[]);
    }

    /// Starts the MOM for `node`, enrolling it first if it has no certificate yet.
    pub fn start_mom(&mut self, node: &str) {
        self.start_mom_under(node, None);
    }

    /// As [`Cluster::start_mom`], the MOM run under `wrapper` (see [`Cluster::spawn_mom`]).
    pub fn start_mom_under(&mut self, node: &str, wrapper: Option<&[&str]>) {
        let mom_home = self.mom_home(node);
        if !mom_home.join("mom_priv/tls/node.crt").exists() {
            self.enroll(node);
        }
        let args: Vec<String> = vec!["--node-name".into(), node.into()];
        self.spawn_mom(node, &mom_home, &args, wrapper);
    }

    /// Starts a `pbs_mom` with its home at `mom_home` dialling this cluster's server, with
    /// `args` added, logging to `mom-LABEL.log`; `wrapper` runs it under another command
    /// (e.g. `ip netns exec NS`). The process is killed by PID with the cluster.
    pub fn spawn_mom(
        &mut self,
        label: &str,
        mom_home: &Path,
        args: &[String],
        wrapper: Option<&[&str]>,
    ) {
        fs::create_dir_all(mom_home).expect("mom home");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("mom-{label}.log")))
            .expect("mom log");
        let mut cmd = match wrapper {
            Some([program, rest @ ..]) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin("pbs_mom"));
                c
            }
            _ => Command::new(bin("pbs_mom")),
        };
        let child = cmd
            .arg("--home")
            .arg(mom_home)
            .arg("--server")
            .arg(self.mom_addr())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pbs_mom");
        self.moms.push((label.to_string(), child));
    }

    /// Writes `text` as `node`'s `mom_priv/config`, has its MOM reread it (SIGHUP) and waits
    /// for the reload's log line, which it returns (it shows the config now in effect).
    pub fn reconfigure_mom(&self, node: &str, text: &str) -> String {
        const LOADED: &str = "MOM config loaded";
        let loads = |c: &Cluster| c.mom_log(node).matches(LOADED).count();
        let before = loads(self);
        let config = self.mom_home(node).join("mom_priv/config");
        fs::create_dir_all(config.parent().expect("mom_priv")).expect("mom_priv");
        fs::write(&config, text).expect("write MOM config");
        self.signal_mom(node, nix::sys::signal::Signal::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(30), || loads(self) > before),
            "the MOM did not reload its config:\n{}",
            self.mom_log(node)
        );
        let log = self.mom_log(node);
        log.lines()
            .rev()
            .find(|l| l.contains(LOADED))
            .unwrap_or_default()
            .to_string()
    }

    /// How many lines of the server log contain `needle`.
    pub fn server_log_count(&self, needle: &str) -> usize {
        self.server_log()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The server process, no longer the cluster's to stop (the caller waits for it).
    pub fn take_server(&mut self) -> Option<Child> {
        self.server.take()
    }

    /// Waits (at most `timeout`) for the server process to exit by itself (qterm); whether it
    /// did. It is forgotten either way, so [`Cluster::start_server`] may start another.
    pub fn wait_server_exit(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.server.take() else {
            return true;
        };
        let exited = wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
        exited
    }

    /// `kill -9` the server, as a crash would.
    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9` one MOM, start another, and wait until it has adopted the node's running jobs.
    pub fn restart_mom_adopting(&mut self, node: &str) {
        self.restart_mom_after(node, Cluster::kill_mom);
    }

    /// Stops one MOM with `stop`, starts another, and waits until it has adopted the node's
    /// running jobs.
    pub fn restart_mom_after(&mut self, node: &str, stop: fn(&mut Cluster, &str)) {
        // The log is appended to across restarts: count this MOM's adoption lines only.
        let adoptions = |c: &Cluster| c.mom_log(node).matches("adopting running job").count();
        let before = adoptions(self);
        stop(self, node);
        self.start_mom(node);
        assert!(
            wait_until(Duration::from_secs(30), || adoptions(self) > before),
            "the new MOM did not adopt the job:\n{}",
            self.mom_log(node)
        );
    }

    /// SIGTERM to one MOM alone, as `systemctl stop` sends it under the shipped unit
    /// (`KillMode=process`), and waits for it to exit.
    pub fn stop_mom(&mut self, node: &str) {
        let Some(pos) = self.moms.iter().position(|(n, _)| n == node) else {
            return;
        };
        self.signal_mom(node, nix::sys::signal::Signal::SIGTERM);
        let (_, mut child) = self.moms.remove(pos);
        let exited = wait_until(Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the MOM of {node} did not exit on SIGTERM");
        }
    }

    /// `kill -9` one MOM.
    pub fn kill_mom(&mut self, node: &str) {
        if let Some(pos) = self.moms.iter().position(|(n, _)| n == node) {
            let (_, mut child) = self.moms.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The PID of a MOM this cluster started (to signal it); under a wrapper, the wrapper's,
    /// which is the MOM's when the wrapper execs it (`ip netns exec`).
    pub fn mom_pid(&self, node: &str) -> Option<u32> {
        self.moms
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, c)| c.id())
    }

    /// Sends `signal` to a MOM this cluster started.
    pub fn signal_mom(&self, node: &str, signal: nix::sys::signal::Signal) {
        let pid = self.mom_pid(node).expect("a MOM this cluster started");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .expect("signal the MOM");
    }

    pub fn server_log(&self) -> String {
        fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    pub fn mom_log(&self, node: &str) -> String {
        fs::read_to_string(self.root.join(format!("mom-{node}.log"))).unwrap_or_default()
    }

    /// Starts `program ARGS` as the test user on a terminal of its own (a pseudo-terminal
    /// the test holds, its controlling terminal, sized 24 × 80), as a user at a terminal
    /// would run `qsub -I`.
    pub fn on_terminal(&self, program: &str, args: &[&str]) -> Terminal {
        // Close-on-exec from the start: the other tests' children must not inherit it.
        use nix::fcntl::OFlag;
        use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("posix_openpt");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let slave_path = nix::pty::ptsname_r(&master).expect("ptsname");
        // SAFETY: the descriptor was just opened and is owned by `master` alone until here.
        let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
        let slave = nix::fcntl::open(
            slave_path.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open the pty's slave");
        // SAFETY: a descriptor open(2) just returned, owned by nothing else.
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
        assert_eq!(
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0
        );
        let mut cmd = self.command(program, Some(&self.user.clone()));
        cmd.args(args)
            .env("TERM", "capstan-test-term")
            .stdin(Stdio::from(slave.try_clone().expect("dup pty")))
            .stdout(Stdio::from(slave.try_clone().expect("dup pty")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a terminal");
        drop(cmd);
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = fs::File::from(master.try_clone().expect("dup pty master"));
        let sink = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut reader = reader;
            let mut buf = [0u8; 4096];
            // Ends with EIO once no process holds the terminal any more.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master: fs::File::from(master),
            output,
        }
    }

    fn command(&self, program: &str, user: Option<&User>) -> Command {
        let mut cmd = Command::new(bin(program));
        cmd.env("PBS_HOME", &self.home)
            .env_remove("CAPSTAN_SOCKET")
            .env_remove("PBS_DEFAULT")
            .current_dir(&self.work);
        if let Some(user) = user {
            if is_root() && user.uid != 0 {
                cmd.uid(user.uid).gid(user.gid);
                cmd.env("HOME", &user.home)
                    .env("USER", &user.name)
                    .env("LOGNAME", &user.name);
            }
        }
        cmd
    }

    /// Runs a command as the test user.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.run_as(&self.user.clone(), program, args)
    }

    /// Runs a command as `user`.
    pub fn run_as(&self, user: &User, program: &str, args: &[&str]) -> Output {
        output_within(self.command(program, Some(user)).args(args), None)
    }

    /// Runs a command as root (the operator); only meaningful when the tests run as root.
    pub fn run_as_root(&self, program: &str, args: &[&str]) -> Output {
        output_within(self.command(program, None).args(args), None)
    }

    /// Runs a command as the test user with `input` on stdin.
    pub fn run_with_input(&self, program: &str, args: &[&str], input: &[u8]) -> Output {
        let user = self.user.clone();
        output_within(self.command(program, Some(&user)).args(args), Some(input))
    }

    /// Writes a script into the work directory, owned by the test user.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        self.script_for(&self.user, &self.work, name, body)
    }

    /// Writes a script `DIR/NAME`, owned by `user`.
    fn script_for(&self, user: &User, dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, body).expect("write script");
        chown(&path, Some(user.uid), Some(user.gid)).expect("chown script");
        path
    }

    /// `qsub ARGS SCRIPT` as the test user; returns the job id. Panics with stderr on failure.
    pub fn qsub(&self, script_name: &str, body: &str, args: &[&str]) -> String {
        self.qsub_as(&self.user, &self.work, script_name, body, args)
    }

    /// `qsub ARGS SCRIPT` as `user`, from the work directory, of a script written into `dir`
    /// for them; qsub's output, whether it succeeded or not.
    pub fn submit_as(
        &self,
        user: &User,
        dir: &Path,
        script_name: &str,
        body: &str,
        args: &[&str],
    ) -> Output {
        let path = self.script_for(user, dir, script_name, body);
        // Relative to the work directory (where qsub runs) when it is there.
        let script = path
            .strip_prefix(&self.work)
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.push(&script);
        self.run_as(user, "qsub", &all)
    }

    /// [`Cluster::submit_as`] that must succeed; returns the job id. Panics with stderr on
    /// failure.
    pub fn qsub_as(
        &self,
        user: &User,
        dir: &Path,
        script_name: &str,
        body: &str,
        args: &[&str],
    ) -> String {
        let out = self.submit_as(user, dir, script_name, body, args);
        assert!(
            out.status.success(),
            "qsub {args:?} {script_name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!id.is_empty(), "qsub printed no job id");
        id
    }

    /// Submits `body` as `script_name`, waits (up to 30 s) for the job to complete and
    /// returns its id and what it wrote to its default stdout file.
    pub fn run_job(&self, script_name: &str, body: &str, args: &[&str]) -> (String, String) {
        let id = self.qsub(script_name, body, args);
        self.wait_state(&id, "C", Duration::from_secs(30));
        let out = self.read(self.default_stdout(script_name, &id));
        (id, out)
    }

    /// Where Torque puts a job's stdout by default: `SCRIPT.oSEQ` in the work directory.
    pub fn default_stdout(&self, script_name: &str, id: &str) -> PathBuf {
        self.work
            .join(format!("{script_name}.o{}", Cluster::seq(id)))
    }

    /// One attribute of a job from `qstat -f -1`, as the root/test user sees it.
    pub fn job_attr(&self, id: &str, attr: &str) -> Option<String> {
        let out = self.run_as_root("qstat", &["-f", "-1", id]);
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("    {attr} = ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.to_string()))
    }

    pub fn job_state(&self, id: &str) -> Option<String> {
        self.job_attr(id, "job_state")
    }

    /// Waits until the job reaches `state`; panics with logs when it does not.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) {
        let ok = wait_until(timeout, || self.job_state(id).as_deref() == Some(state));
        assert!(
            ok,
            "job {id} did not reach {state} (now {:?})\nserver log:\n{}",
            self.job_state(id),
            tail(&self.server_log(), 40)
        );
    }

    /// Waits until the scheduler has considered the job and decided it must wait (it writes
    /// a `Not Running: ...` comment), then checks it is still queued. Returns the comment.
    pub fn wait_held_back(&self, id: &str) -> String {
        let decided = wait_until(Duration::from_secs(30), || {
            self.job_attr(id, "comment")
                .is_some_and(|c| c.starts_with("Not Running"))
        });
        assert!(
            decided,
            "job {id} got no wait decision (state {:?}, comment {:?})",
            self.job_state(id),
            self.job_attr(id, "comment")
        );
        assert_eq!(self.job_state(id).as_deref(), Some("Q"), "job {id}");
        self.job_attr(id, "comment").unwrap_or_default()
    }

    pub fn pbsnodes_text(&self) -> String {
        String::from_utf8_lossy(&self.run_as_root("pbsnodes", &["-a"]).stdout).to_string()
    }

    /// The `state` attribute of a node.
    pub fn node_state(&self, node: &str) -> Option<String> {
        let out = self.run_as_root("pbsnodes", &[node]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("     state = ").map(|s| s.to_string()))
    }

    pub fn wait_nodes_up(&self, nodes: &[String], timeout: Duration) -> bool {
        wait_until(timeout, || {
            nodes.iter().all(|n| {
                self.node_state(n)
                    .map(|s| !s.contains("down"))
                    .unwrap_or(false)
            })
        })
    }

    /// Reads a file the job wrote (as root or the test user, whoever we are).
    pub fn read(&self, path: impl AsRef<Path>) -> String {
        fs::read_to_string(path.as_ref())
            .unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
    }

    /// Reads a file, or "" when it does not exist (yet).
    pub fn read_opt(&self, path: impl AsRef<Path>) -> String {
        fs::read_to_string(path.as_ref()).unwrap_or_default()
    }

    /// A job script that writes its shell's pid to `pid_file`, then sleeps `secs`.
    pub fn pid_then_sleep(pid_file: &Path, secs: u32) -> String {
        format!("echo $$ > {}\nsleep {secs}\n", pid_file.display())
    }

    /// `/proc/PID` of the shell that wrote its pid to `pid_file` (see
    /// [`Cluster::pid_then_sleep`]), once it has: gone from there, the shell has exited.
    pub fn shell_proc(&self, pid_file: &Path) -> PathBuf {
        assert!(
            wait_until(Duration::from_secs(30), || !self
                .read_opt(pid_file)
                .trim()
                .is_empty()),
            "{} was not written",
            pid_file.display()
        );
        PathBuf::from(format!("/proc/{}", self.read(pid_file).trim()))
    }

    /// Asserts that job `id`, killed over its `cput`, is charged (`resources_used.cput`) at
    /// least the CPU its notice in `stderr_text` (`=>> PBS: job killed: cput N exceeded
    /// limit L`) says it was judged on.
    pub fn assert_charged_the_notices_cput(&self, id: &str, stderr_text: &str) {
        let judged: u64 = stderr_text
            .split("cput ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("the cput in the notice");
        let used = self
            .job_attr(id, "resources_used.cput")
            .expect("resources_used.cput");
        let used_secs = capstan_proto::resources::parse_duration(&used)
            .unwrap_or_else(|| panic!("resources_used.cput {used:?} is not a duration"));
        assert!(used_secs >= judged, "charged {used}, killed at {judged} s");
    }

    /// The sequence number of a job id (`12.tsrv` → `12`).
    pub fn seq(id: &str) -> &str {
        id.split('.').next().unwrap_or(id)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs outlive a MOM on purpose (a restarted MOM adopts them), so end them through
        // the server first; then stop only the processes this cluster started, by PID.
        if self.server.is_some() {
            let _ = self.run_as_root("qdel", &["all"]);
            wait_until(Duration::from_secs(10), || {
                let out = self.run_as_root("qstat", &["-r"]);
                out.status.success() && out.stdout.is_empty()
            });
        }
        for (_, child) in self.moms.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The fields of `/proc/PID/stat` after the command name (which may hold spaces and
/// parentheses) of the process at `proc_dir` (`/proc/PID`); `None` once it is gone.
fn proc_stat_fields(proc_dir: &Path) -> Option<Vec<String>> {
    let stat = fs::read_to_string(proc_dir.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The state letter of the process at `proc_dir` (`R`, `S`, `T` for stopped, ...).
pub fn proc_state(proc_dir: &Path) -> Option<char> {
    proc_stat_fields(proc_dir)?.first()?.chars().next()
}

/// The pid of the parent of the process at `proc_dir`.
pub fn proc_parent(proc_dir: &Path) -> Option<i32> {
    proc_stat_fields(proc_dir)?.get(1)?.parse().ok()
}

/// The last `n` lines of a log, for failure messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Exit code of a command (signals count as -1).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A two-site cluster of four nodes as the demo uses: a1, a2 in site a; b1, b2 in site b.
pub fn two_site_nodes() -> Vec<NodeSpec> {
    vec![
        NodeSpec::new("a1", "np=2 site=a bigmem"),
        NodeSpec::new("a2", "np=2 site=a"),
        NodeSpec::new("b1", "np=2 site=b"),
        NodeSpec::new("b2", "np=2 site=b fast"),
    ]
}

/// Whether `text` contains `needle`; a helper that prints both on failure.
pub fn assert_contains(text: &str, needle: impl AsRef<OsStr>) {
    let needle = needle.as_ref().to_string_lossy();
    assert!(
        text.contains(needle.as_ref()),
        "expected to find {needle:?} in:\n{text}"
    );
}

/// A network namespace with a veth link to this one, standing for another host: the host end
/// gets `10.OCTET.ID.1/30`, the namespace end `.2`. Deleted on drop (also on panic), with
/// its veth pair. Tests that need one skip (with the reason) when it cannot be made.
pub struct NetNs {
    pub name: String,
    host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl NetNs {
    fn ip(args: &[&str]) -> bool {
        Command::new("ip")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Makes a namespace whose interface names start with `tag` (two letters, so names stay
    /// within 15 characters) on the private network `10.OCTET.x.y`; `Err` (with the reason)
    /// when not root, `ip` is missing or the kernel refuses.
    pub fn create(tag: &str, octet: u8) -> Result<NetNs, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if !is_root() {
            return Err("needs root".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("`ip` (iproute2) is not installed".into());
        }
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() + n * 7) % 250 + 1;
        let ns = NetNs {
            name: format!("capstan-{tag}{}-{n}", std::process::id()),
            host_if: format!("{tag}h{id}"),
            host_ip: format!("10.{octet}.{id}.1"),
            ns_ip: format!("10.{octet}.{id}.2"),
        };
        let ns_if = format!("{tag}n{id}");
        let ok = Self::ip(&["netns", "add", &ns.name])
            && Self::ip(&[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ])
            && Self::ip(&["link", "set", &ns_if, "netns", &ns.name])
            && Self::ip(&[
                "addr",
                "add",
                &format!("{}/30", ns.host_ip),
                "dev",
                &ns.host_if,
            ])
            && Self::ip(&["link", "set", &ns.host_if, "up"])
            && Self::ip(&[
                "netns",
                "exec",
                &ns.name,
                "ip",
                "addr",
                "add",
                &format!("{}/30", ns.ns_ip),
                "dev",
                &ns_if,
            ])
            && Self::ip(&["netns", "exec", &ns.name, "ip", "link", "set", &ns_if, "up"])
            && Self::ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        if !ok {
            return Err("could not create the namespace and veth link".into());
        }
        Ok(ns)
    }

    /// `program` (a path) to run inside the namespace, as `user` when given (entering the
    /// namespace needs root, so the child enters it first and then drops to the user's uid,
    /// primary gid and no supplementary groups), else as root.
    pub fn command(&self, program: impl AsRef<OsStr>, user: Option<&User>) -> Command {
        use std::os::fd::AsRawFd;
        let ns =
            fs::File::open(Path::new("/run/netns").join(&self.name)).expect("open the namespace");
        let ids = user.map(|u| (u.uid, u.gid));
        let mut cmd = Command::new(program);
        if let Some(user) = user {
            cmd.env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        // SAFETY: only async-signal-safe calls (setns, setgroups, setgid, setuid) between fork
        // and exec; `ns` stays open in the parent until the Command is dropped.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some((uid, gid)) = ids {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_gets_its_input_and_gives_its_output() {
        let mut cat = Command::new("sh");
        cat.args(["-c", "cat; echo err >&2; exit 3"]);
        let out = output_bounded(&mut cat, Some(b"in\n"), Duration::from_secs(30));
        assert_eq!(
            (out.status.code(), out.stdout, out.stderr),
            (Some(3), b"in\n".to_vec(), b"err\n".to_vec())
        );
    }

    #[test]
    #[should_panic(expected = "still running after")]
    fn a_hung_command_fails_its_test() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        output_bounded(&mut sleep, None, Duration::from_millis(200));
    }
}
