//! Finding and dialling the server.
//!
//! The commands reach `pbs_server` over its Unix socket: `$CAPSTAN_SOCKET` if set, else
//! `$PBS_HOME/capstan.sock` (`PBS_HOME` defaults to `/var/spool/capstan`). The server learns
//! who we are from the socket's peer credentials, so nothing here sends an identity.

use std::path::PathBuf;

use capstan_proto::v1::batch_client::BatchClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

/// Largest reply the commands accept (256 MiB): far above any real cluster's listing.
const MAX_REPLY_BYTES: usize = 256 << 20;

/// Default Torque-style home when `PBS_HOME` is not set.
pub const DEFAULT_PBS_HOME: &str = "/var/spool/capstan";

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
}

impl ConnectError {
    /// The OS error number behind the failure (`ECONNREFUSED`, `ENOENT` for a missing
    /// socket, ...), if there is one.
    pub fn errno(&self) -> Option<i32> {
        let ConnectError::Unreachable { source, .. } = self;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
        while let Some(err) = cause {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if let Some(code) = io.raw_os_error() {
                    return Some(code);
                }
            }
            cause = err.source();
        }
        None
    }

    /// Torque's wording: `CMD: cannot connect to server NAME (errno=111) Connection refused`.
    pub fn torque_message(&self, cmd: &str) -> String {
        let ConnectError::Unreachable { server, .. } = self;
        match self.errno() {
            Some(code) => format!(
                "{cmd}: cannot connect to server {server} (errno={code}) {}",
                strerror(code)
            ),
            None => format!("{cmd}: cannot connect to server {server} ({self})"),
        }
    }

    /// The exit status: Torque's commands exit with the error number they could not connect
    /// with; Capstan does the same for OS errors (111 for a refused connection, 2 for a
    /// missing socket) and uses 1 when there is none or it does not fit an exit status.
    pub fn exit_code(&self) -> i32 {
        match self.errno() {
            Some(code) if (1..=255).contains(&code) => code,
            _ => 1,
        }
    }
}

/// The C library's text for an error number (`strerror(3)`), without Rust's `(os error N)`.
pub fn strerror(code: i32) -> &'static str {
    nix::errno::Errno::from_raw(code).desc()
}

/// `$PBS_HOME`, or Capstan's default.
pub fn pbs_home() -> PathBuf {
    std::env::var_os("PBS_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PBS_HOME))
}

/// The server's Unix socket path.
pub fn socket_path() -> PathBuf {
    std::env::var_os("CAPSTAN_SOCKET")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| pbs_home().join("capstan.sock"))
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

/// Dials the server's socket and returns a client for the `Batch` service.
pub async fn connect() -> Result<BatchClient<Channel>, ConnectError> {
    let socket = socket_path();
    let path = socket.clone();
    // The URI is required by tonic but unused: the connector below always dials the socket.
    let channel = Endpoint::from_static("http://capstan.invalid")
        // Large flow-control windows: a big listing arrives in one go instead of in
        // 64 KiB steps, each waiting for a window update.
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|source| ConnectError::Unreachable {
            server: default_server_name(),
            socket: socket.display().to_string(),
            source,
        })?;
    // A full `qstat -f` of thousands of jobs is larger than tonic's 4 MiB default.
    Ok(BatchClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// Runs `future` on a single-threaded runtime: a command makes a call or two and exits, so a
/// thread pool would only cost start-up time.
pub fn block_on<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}
