//! `trqauthd`: the login node's authentication agent (Torque's `trqauthd` role).
//!
//! The commands on a login node dial the Unix socket `$PBS_HOME/trqauthd.sock` (mode 0666) as
//! they would dial the server's. For each connection the agent takes the caller's uid from
//! `SO_PEERCRED`, resolves it to a user name, and forwards every HTTP/2 (gRPC) request on it,
//! unread, to the server's TLS listener, authenticated with this host's certificate (from
//! `pbs_server enroll HOST`, installed by `trqauthd install-cert`). It removes any
//! [`ASSERTED_USER`] header the command sent and adds its own naming the peer's user; the
//! server believes it only because the certificate names a host in `submit_hosts`.
//!
//! Forwarding is generic (a hyper HTTP/2 server in front of a tonic `Channel`), so RPCs added
//! to `Batch` later pass through unchanged. The `Channel` reconnects by itself when the server
//! restarts; while the server is unreachable each call is answered with a refusal carrying
//! the OS error number, which the commands print as Torque's "cannot connect to server" line.
//!
//! Files: `$PBS_HOME/trqauthd_priv/` (0700) holds `node.key` (0600), `node.crt`, `ca.crt`
//! and `server_name`; all root's.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::daemon::SERVER_PORT;
use capstan_proto::enrolment::{self, Credentials, EnrolError, FileError};
use capstan_proto::pbse;
use capstan_proto::remote::{self, ASSERTED_USER};
use http::header::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// How long a shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// Why the agent cannot install its certificate or run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Enrolment(#[from] EnrolError),
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("{0} must belong to the user trqauthd runs as (uid {1}), who alone may read it")]
    WrongOwner(PathBuf, u32),
    #[error("no --server given and cannot read {path}: {source}")]
    NoServer {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("server address {0:?}: {1}")]
    BadServer(String, tonic::transport::Error),
}

/// The agent's private directory under `home`.
pub fn priv_dir(home: &Path) -> PathBuf {
    home.join("trqauthd_priv")
}

/// The agent's socket under `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(crate::connect::AGENT_SOCKET)
}

/// `trqauthd install-cert BUNDLE`: installs the host's credentials (deleting the bundle) and,
/// when `home/server_name` does not exist yet, writes the server's name there for the
/// commands (Torque's `$PBS_HOME/server_name`). Returns `(host, server)` names.
pub fn install(home: &Path, bundle: &Path) -> Result<(String, String), AgentError> {
    std::fs::create_dir_all(home).map_err(FileError::at("creating", home))?;
    let (host, server) = enrolment::install(&priv_dir(home), bundle)?;
    let names = home.join("server_name");
    if !names.exists() {
        std::fs::write(&names, format!("{server}\n")).map_err(FileError::at("writing", &names))?;
        std::fs::set_permissions(&names, std::fs::Permissions::from_mode(0o644))
            .map_err(FileError::at("chmod", &names))?;
    }
    Ok((host, server))
}

/// What `trqauthd` runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub home: PathBuf,
    /// The server's TLS listener, `HOST:PORT`.
    pub server: String,
}

impl AgentConfig {
    /// `server` if given (a missing port means [`SERVER_PORT`]), else the first line of
    /// `home/server_name` with the default port.
    pub fn new(home: PathBuf, server: Option<String>) -> Result<AgentConfig, AgentError> {
        let server = match server {
            Some(s) => s,
            None => {
                let path = home.join("server_name");
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| AgentError::NoServer { path, source })?;
                text.lines().next().unwrap_or("").trim().to_string()
            }
        };
        let server = if server
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !server.ends_with(']')
        {
            server
        } else {
            format!("{server}:{SERVER_PORT}")
        };
        Ok(AgentConfig { home, server })
    }
}

/// Loads the credentials, refusing a key another user owns or others can read.
pub fn load_credentials(home: &Path) -> Result<Credentials, AgentError> {
    let dir = priv_dir(home);
    let creds = enrolment::load(&dir, "trqauthd --home DIR install-cert BUNDLE")?;
    let me = nix::unistd::geteuid().as_raw();
    for path in [dir.clone(), dir.join("node.key")] {
        let meta = std::fs::metadata(&path).map_err(FileError::at("reading", &path))?;
        if meta.uid() != me {
            return Err(AgentError::WrongOwner(path, me));
        }
    }
    Ok(creds)
}

/// Runs the agent until `shutdown` resolves: binds the socket, forwards every connection.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let creds = load_credentials(&config.home)?;
    let endpoint = Endpoint::from_shared(format!("https://{}", config.server))
        .map_err(|e| AgentError::BadServer(config.server.clone(), e))?
        .tls_config(creds.client_config())
        .map_err(|e| AgentError::BadServer(config.server.clone(), e))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(16 << 20));
    // Lazy: the channel dials on first use and again after the server went away.
    let channel = endpoint.connect_lazy();

    let socket = socket_path(&config.home);
    match std::fs::remove_file(&socket) {
        Ok(()) => info!(socket = %socket.display(), "removed stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(FileError::at("removing", &socket)(e).into()),
    }
    let listener = UnixListener::bind(&socket).map_err(FileError::at("binding", &socket))?;
    // Every user may connect: who they are comes from the socket's peer credentials.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
        .map_err(FileError::at("chmod", &socket))?;
    info!(
        host = %creds.node_name,
        server = %config.server,
        server_name = %creds.server_name,
        socket = %socket.display(),
        "trqauthd ready"
    );

    let server = Arc::new(config.server.clone());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let upstream = Upstream {
                        shared: channel.clone(),
                        endpoint: endpoint.clone(),
                    };
                    connections.spawn(serve_connection(stream, upstream, server.clone()));
                }
                Err(e) => {
                    warn!("accept on {} failed: {e}", socket.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    info!("shutting down");
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        warn!(
            "{} connection(s) still open after {DRAIN:?}; closing them",
            connections.len()
        );
        connections.shutdown().await;
    }
    info!("trqauthd stopped");
    Ok(())
}

/// The user behind a connection, from its peer credentials.
fn peer_user(stream: &UnixStream) -> Result<(u32, String), String> {
    let uid = stream
        .peer_cred()
        .map_err(|e| format!("no peer credentials: {e}"))?
        .uid();
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => Ok((uid, user.name)),
        Ok(None) => Err(format!("uid {uid} has no user name")),
        Err(e) => Err(format!("uid {uid}: user database: {e}")),
    }
}

/// Where a connection's requests go: the agent's one connection to the server, except an
/// interactive job's terminal (`qsub -I`), which gets a connection of its own, made when
/// first used and held while the command's connection lasts. Why: HTTP/2's flow control has
/// a window per connection, and a terminal whose reader stops (a stopped qsub) would hold
/// the shared one and stall every other user's commands behind it.
struct Upstream {
    shared: Channel,
    endpoint: Endpoint,
}

/// The one `Batch` method that streams for as long as a user likes.
const INTERACTIVE_PATH: &str = "/capstan.v1.Batch/Interactive";

async fn serve_connection(stream: UnixStream, upstream: Upstream, server: Arc<String>) {
    let Upstream { shared, endpoint } = upstream;
    let own = std::sync::OnceLock::new();
    let identity = peer_user(&stream).and_then(|(uid, name)| {
        HeaderValue::from_str(&name)
            .map(|value| (uid, name.clone(), value))
            .map_err(|_| format!("user name {name:?} cannot travel in a header"))
    });
    match &identity {
        Ok((uid, name, _)) => debug!(uid, user = %name, "connection"),
        Err(reason) => warn!("connection refused: {reason}"),
    }
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let identity = identity.clone();
        let channel = if request.uri().path() == INTERACTIVE_PATH {
            own.get_or_init(|| endpoint.connect_lazy()).clone()
        } else {
            shared.clone()
        };
        let server = server.clone();
        async move {
            Ok::<_, Infallible>(match identity {
                Ok((uid, user, value)) => {
                    forward(channel, &server, uid, &user, value, request).await
                }
                Err(reason) => remote::refusal(
                    tonic::Code::Unauthenticated,
                    pbse::BADUSER,
                    format!("trqauthd: {reason}"),
                )
                .into_http(),
            })
        }
    });
    if let Err(e) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        debug!("connection ended: {e}");
    }
}

/// Sends one request to the server with `user` asserted, and its answer back.
async fn forward(
    channel: Channel,
    server: &str,
    uid: u32,
    user: &str,
    asserted: HeaderValue,
    request: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let (mut parts, body) = request.into_parts();
    // Whatever the command claimed (any number of such headers) goes; ours replaces it.
    if parts.headers.remove(ASSERTED_USER).is_some() {
        warn!(uid, user, path = %parts.uri.path(), "removed a user assertion the client sent");
    }
    parts.headers.insert(ASSERTED_USER, asserted);
    debug!(uid, user, path = %parts.uri.path(), "forwarding");
    let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
    match channel.oneshot(request).await {
        Ok(response) => response,
        Err(e) => {
            let errno = crate::connect::os_errno(&e).unwrap_or(libc::ECONNREFUSED);
            warn!(server, errno, "cannot reach the server: {e}");
            remote::refusal(
                tonic::Code::Unavailable,
                errno,
                format!("trqauthd cannot reach the server at {server}: {e}"),
            )
            .into_http()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interactive_path_is_the_generated_one() {
        let service = capstan_proto::v1::batch_server::SERVICE_NAME;
        assert_eq!(INTERACTIVE_PATH, format!("/{service}/Interactive"));
    }

    #[test]
    fn server_address_gets_the_default_port() {
        let dir = std::path::PathBuf::from("/nonexistent");
        let c = AgentConfig::new(dir.clone(), Some("srv".into())).unwrap();
        assert_eq!(c.server, "srv:15001");
        let c = AgentConfig::new(dir.clone(), Some("10.0.0.1:4000".into())).unwrap();
        assert_eq!(c.server, "10.0.0.1:4000");
        assert!(AgentConfig::new(dir, None).is_err());
    }
}
