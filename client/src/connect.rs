//! Finding and dialling the server.
//!
//! The server is named as Torque's commands name it: `$PBS_DEFAULT`, else the first line of
//! `$PBS_HOME/server_name` (`PBS_HOME` defaults to `/var/spool/capstan`). The commands reach
//! it over a Unix socket: `$CAPSTAN_SOCKET` if set; else the server's own socket
//! `$PBS_HOME/capstan.sock` when the server runs on this host; else the login node's
//! authentication agent, `$PBS_HOME/trqauthd.sock`, which forwards to the server over TLS.
//! Either way the listener learns who we are from the socket's peer credentials, so nothing
//! here sends an identity.

use std::path::PathBuf;

use capstan_proto::v1::batch_client::BatchClient;
use capstan_proto::{pbse, remote};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

/// Largest reply the commands accept (256 MiB): far above any real cluster's listing.
const MAX_REPLY_BYTES: usize = 256 << 20;

/// Why the server could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to server {server} (socket {socket}): {source}")]
    Unreachable {
        server: String,
        socket: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The server (or the agent on its behalf) refused us before looking at the request: a
    /// host not in `submit_hosts`, an unknown user, or the agent could not reach the server.
    /// Torque reports these at connection time, as this does.
    #[error("cannot connect to server {server}: {message}")]
    Refused {
        server: String,
        /// A PBSE number (150xx) or an OS error number.
        errno: i32,
        message: String,
    },
}

impl ConnectError {
    /// The OS error number behind the failure (`ECONNREFUSED`, `ENOENT` for a missing
    /// socket, ...), if there is one.
    pub fn errno(&self) -> Option<i32> {
        let source = match self {
            ConnectError::Unreachable { source, .. } => source,
            ConnectError::Refused { errno, .. } => return Some(*errno),
        };
        os_errno(source)
    }

    /// The server's name as the error reports it.
    pub fn server(&self) -> &str {
        match self {
            ConnectError::Unreachable { server, .. } | ConnectError::Refused { server, .. } => {
                server
            }
        }
    }

    /// The text for [`ConnectError::errno`]: Torque's PBSE text or the C library's.
    pub fn reason(code: i32) -> &'static str {
        if code >= 15000 {
            pbse::text(code).trim_end()
        } else {
            strerror(code)
        }
    }

    /// The refusal a failed call carries (see `capstan_proto::remote`), if it is one.
    pub fn from_status(status: &tonic::Status) -> Option<ConnectError> {
        Some(ConnectError::Refused {
            server: default_server_name(),
            errno: remote::refusal_errno(status)?,
            message: status.message().to_string(),
        })
    }

    /// Torque's wording: `CMD: cannot connect to server NAME (errno=111) Connection refused`,
    /// `CMD: cannot connect to server NAME (errno=15010) Access from host not allowed, or
    /// unknown host`.
    pub fn torque_message(&self, cmd: &str) -> String {
        let server = self.server();
        match self.errno() {
            Some(code) => format!(
                "{cmd}: cannot connect to server {server} (errno={code}) {}",
                Self::reason(code)
            ),
            None => format!("{cmd}: cannot connect to server {server} ({self})"),
        }
    }

    /// The exit status: Torque's commands exit with the error number they could not connect
    /// with; Capstan does the same for OS errors (111 for a refused connection, 2 for a
    /// missing socket) and uses 1 when there is none or it does not fit an exit status.
    pub fn exit_code(&self) -> i32 {
        match self.errno() {
            Some(code) if code >= 15000 => pbse::exit_code(code),
            Some(code) if (1..=255).contains(&code) => code,
            _ => 1,
        }
    }
}

/// The OS error number somewhere in `error`'s chain of causes.
pub(crate) fn os_errno(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cause = Some(error);
    while let Some(err) = cause {
        if let Some(code) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        cause = err.source();
    }
    None
}

/// The C library's text for an error number (`strerror(3)`), without Rust's `(os error N)`.
pub fn strerror(code: i32) -> &'static str {
    nix::errno::Errno::from_raw(code).desc()
}

/// `$PBS_HOME`, or Capstan's default.
fn pbs_home() -> PathBuf {
    capstan_proto::daemon::home(None)
}

/// The server's Unix socket path (`$CAPSTAN_SOCKET` overrides it).
pub fn socket_path() -> PathBuf {
    std::env::var_os("CAPSTAN_SOCKET")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| pbs_home().join("capstan.sock"))
}

/// Name of the login-node agent's socket in `$PBS_HOME`.
pub const AGENT_SOCKET: &str = "trqauthd.sock";

/// The login-node agent's socket, `$PBS_HOME/trqauthd.sock`.
pub fn agent_socket_path() -> PathBuf {
    pbs_home().join(AGENT_SOCKET)
}

/// The server's name as the commands print it before they have asked the server:
/// `$PBS_DEFAULT`, else the first line of `$PBS_HOME/server_name`, else this host's short
/// name (the server's own default name, so a one-host setup needs no configuration).
pub fn default_server_name() -> String {
    if let Ok(name) = std::env::var("PBS_DEFAULT") {
        if !name.is_empty() {
            return name;
        }
    }
    std::fs::read_to_string(pbs_home().join("server_name"))
        .ok()
        .and_then(|text| text.lines().next().map(|l| l.trim().to_string()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(short_hostname)
}

/// This host's name up to the first dot (Torque prints short names: `vm`, not `vm.example`).
pub fn short_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .map(|name| name.split('.').next().unwrap_or("").to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The socket to dial and, if that fails, the one to try next: `$CAPSTAN_SOCKET` alone when
/// set; else the server's own socket when it exists on this host (then the agent's, if it
/// exists too); else the agent's socket when it exists; else the server's (so the error
/// names what a one-host setup expects).
pub fn candidate_sockets() -> (PathBuf, Option<PathBuf>) {
    if std::env::var_os("CAPSTAN_SOCKET").is_some_and(|v| !v.is_empty()) {
        return (socket_path(), None);
    }
    let server = socket_path();
    let agent = agent_socket_path();
    match (server.exists(), agent.exists()) {
        (true, true) => (server, Some(agent)),
        (false, true) => (agent, None),
        _ => (server, None),
    }
}

/// Dials the server (its own socket, else the agent's; see [`candidate_sockets`]) and returns
/// a client for the `Batch` service. When none answers, the first failure is reported.
pub async fn connect() -> Result<BatchClient<Channel>, ConnectError> {
    // A full `qstat -f` of thousands of jobs is larger than tonic's 4 MiB default.
    let client = |channel| BatchClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES);
    let (socket, fallback) = candidate_sockets();
    let error = match dial(&socket).await {
        Ok(channel) => return Ok(client(channel)),
        Err(source) => ConnectError::Unreachable {
            server: default_server_name(),
            socket: socket.display().to_string(),
            source,
        },
    };
    if let Some(fallback) = fallback {
        if let Ok(channel) = dial(&fallback).await {
            return Ok(client(channel));
        }
    }
    Err(error)
}

/// A channel over the Unix socket at `socket`.
async fn dial(socket: &std::path::Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector below always dials the socket.
    Endpoint::from_static("http://capstan.invalid")
        // Large flow-control windows: a big listing arrives in one go instead of in
        // 64 KiB steps, each waiting for a window update.
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// Runs `future` on a single-threaded runtime: a command makes a call or two and exits, so a
/// thread pool would only cost start-up time. The runtime is not torn down (call this once
/// per process): the command exits right after, and the teardown was 0.06 ms of a 2.5 ms
/// `qsub` for nothing the exit does not do anyway.
pub fn block_on<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let output = runtime.block_on(future);
    std::mem::forget(runtime);
    Ok(output)
}

/// Runs a command's work (see [`block_on`]) to its exit status; 1, said on stderr, if no
/// runtime could start.
pub fn exit_status_of(command: &str, work: impl std::future::Future<Output = i32>) -> i32 {
    match block_on(work) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("{command}: cannot start runtime: {e}");
            1
        }
    }
}

/// What a command prints for a request the server did not answer: a refused connection or
/// host in Torque's `cannot connect` words, else `refused(message)`, the command's own line
/// for a server failure.
pub fn rpc_failure_line(
    command: &str,
    status: &tonic::Status,
    refused: impl FnOnce(&str) -> String,
) -> String {
    match ConnectError::from_status(status) {
        Some(err) => format!("{}\n", err.torque_message(command)),
        None => refused(status.message()),
    }
}
