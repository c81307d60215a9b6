//! An interactive job's terminal (`qsub -I`): a pseudo-terminal the MOM makes for the run,
//! whose slave side becomes the job shell's controlling terminal and whose master side the
//! MOM relays to the server, which relays it to the job's qsub.
//!
//! Why the MOM holds the master and not the supervisor: the MOM already speaks to the server
//! and the supervisor speaks only to the MOM, one line at a time; a terminal's bytes need a
//! stream. The relay is one `MomSession.Terminal` stream per run, on a connection of its own
//! that the MOM dials as it dials its session (so it is authenticated as the session is).
//! Why its own: HTTP/2's flow control has a window per connection, and a terminal whose user
//! stops reading would hold the session's and stall its status reports and job ends.
//!
//! Lifetimes, as in Torque: the relay's stream is open at the server (paired with the job's
//! qsub) before the runner lets the shell run, as Torque's MOM reaches qsub first. The shell
//! ends, every holder of the slave closes it, and a read of the master fails (EIO), or the
//! run is over by its supervisor's word: the relay closes its stream, and the server tells
//! qsub. The
//! other way, when qsub goes away (or the server, or this MOM) the master is closed, and
//! the kernel hangs the terminal up: the shell gets SIGHUP, as a login session does when its
//! connection drops.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use capstan_proto::v1::mom_session_client::MomSessionClient;
use capstan_proto::v1::{terminal_from_mom, terminal_to_mom, TerminalFromMom, TerminalOpen};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// The most one output frame carries.
const FRAME: usize = 16 * 1024;

/// A pseudo-terminal made for a run: the master the MOM keeps and the slave's path, which the
/// job's shell opens as its user.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave_path: PathBuf,
}

/// Makes a run's terminal: owned by the job's user (`uid`), mode 0620 (the user, and `write`
/// for the tty group, as `login` leaves a terminal), sized `rows` × `cols`. Both sides are
/// opened close-on-exec from the start: the MOM is multi-threaded and spawns helpers as other
/// users (prologues, copies), none of which may inherit a user's terminal, not even for a
/// moment. The MOM's slave descriptor is closed again: the shell opens the slave by its
/// path, and the master read must see the end once the job's processes have closed it.
pub fn open_pty(uid: u32, rows: u16, cols: u16) -> Result<Pty, String> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // Looked up first (the group database may be slow): nothing is open yet.
    let tty_group = nix::unistd::Group::from_name("tty")
        .ok()
        .flatten()
        .map(|g| g.gid);
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot open a pty: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("cannot grant the pty: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("cannot unlock the pty: {e}"))?;
    let slave_path = PathBuf::from(
        nix::pty::ptsname_r(&master).map_err(|e| format!("cannot name the pty: {e}"))?,
    );
    // SAFETY: the descriptor was just opened and is owned by `master` alone until here.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    let slave: OwnedFd = nix::fcntl::open(
        &slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    // SAFETY: a descriptor open(2) just returned, owned by nothing else.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|e| format!("cannot open {}: {e}", slave_path.display()))?;
    nix::unistd::fchown(
        slave.as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(uid)),
        tty_group,
    )
    .map_err(|e| format!("cannot give the pty to uid {uid}: {e}"))?;
    nix::sys::stat::fchmod(
        slave.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .map_err(|e| format!("cannot set the pty's mode: {e}"))?;
    set_window(&master, rows, cols).map_err(|e| format!("cannot size the pty: {e}"))?;
    Ok(Pty { master, slave_path })
}

/// Writes a MOM notice (a walltime kill) to a run's terminal, by the path the MOM made it
/// with: while the job's shell lives (the caller's moment), that path is still its terminal.
/// Never waits on it: a terminal no one reads loses the notice instead.
pub fn tell(tty: &std::path::Path, uid: u32, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let mut terminal = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(tty)?;
    // Still the job user's terminal: once the job has let go of it, its number may already
    // be another user's, whom root must not write to.
    let meta = terminal.metadata()?;
    if !meta.file_type().is_char_device() || meta.uid() != uid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "no longer the job's terminal",
        ));
    }
    terminal.write_all(text.as_bytes())
}

/// Tells the terminal its size (the shell hears SIGWINCH).
fn set_window(master: &impl AsRawFd, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    Errno::result(rc).map(drop)
}

/// Relays run `run_id`'s terminal until its shell and everything holding the terminal are
/// gone (EIO, or `ended`: the run is over, whatever still holds it), or the server's side of
/// the stream ends; then closes the master (see the module comment). Says on `opened` when
/// the server has accepted the stream, before which the runner holds the shell back. Never
/// fails: what goes wrong is logged, and the terminal hangs up.
pub async fn relay(
    endpoint: Endpoint,
    node_name: String,
    run_id: u64,
    master: OwnedFd,
    mut ended: watch::Receiver<bool>,
    opened: std::sync::mpsc::SyncSender<()>,
) {
    if let Err(e) = fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)) {
        tracing::warn!(run = run_id, "cannot relay the job's terminal: {e}");
        return;
    }
    // SAFETY: an OwnedFd's descriptor stays open, and the same, until the AsyncFd drops it.
    let master = match unsafe { AsyncFd::register(master) } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(run = run_id, "cannot relay the job's terminal: {e}");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(16);
    let open = TerminalFromMom {
        kind: Some(terminal_from_mom::Kind::Open(TerminalOpen {
            run_id,
            node_name,
        })),
    };
    if tx.send(open).await.is_err() {
        return;
    }
    // Dialled again for a while (the server may be restarting, or the link down for a
    // moment); the whole pairing, a TLS handshake or an answer that never comes included, is
    // bounded, after which the terminal is given up and the held shell hung up.
    let pairing = async {
        let mut wait = crate::session::BACKOFF_START;
        let mut client = loop {
            match endpoint.connect().await {
                Ok(channel) => break MomSessionClient::new(channel),
                Err(e) => {
                    tracing::info!(
                        run = run_id,
                        "cannot reach the server for the job's terminal: {e}; again in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(crate::session::BACKOFF_MAX);
                }
            }
        };
        client.terminal(ReceiverStream::new(rx)).await
    };
    let mut inbound = match tokio::time::timeout(PAIRING_PATIENCE, pairing).await {
        Ok(Ok(response)) => {
            // The server paired it with the job's qsub: the shell may run.
            let _ = opened.send(());
            response.into_inner()
        }
        Ok(Err(e)) => {
            tracing::warn!(
                run = run_id,
                "the server refused the job's terminal: {}",
                e.message()
            );
            return;
        }
        Err(_) => {
            tracing::warn!(
                run = run_id,
                "the job's terminal was not paired within {PAIRING_PATIENCE:?}; it hangs up"
            );
            return;
        }
    };
    tracing::info!(run = run_id, "relaying the job's terminal");
    let output = async {
        let mut buf = vec![0u8; FRAME];
        let frame = |bytes: &[u8]| TerminalFromMom {
            kind: Some(terminal_from_mom::Kind::Output(bytes.to_vec())),
        };
        loop {
            let mut ready = tokio::select! {
                ready = master.readable() => match ready {
                    Ok(ready) => ready,
                    Err(_) => return,
                },
                // The run is over: what is left, without waiting for more.
                () = run_over(&mut ended) => {
                    while let Ok(n @ 1..) = nix::unistd::read(master.as_raw_fd(), &mut buf) {
                        if tx.send(frame(&buf[..n])).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
            };
            match ready.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(Into::into))
            {
                Ok(Ok(0)) => return,
                Ok(Ok(n)) => {
                    if tx.send(frame(&buf[..n])).await.is_err() {
                        return;
                    }
                }
                // EIO: no one holds the terminal any more (the shell is gone).
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    };
    let input = async {
        loop {
            let kind = match inbound.message().await {
                Ok(Some(m)) => m.kind,
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(
                        run = run_id,
                        "the job's terminal stream ended: {}",
                        e.message()
                    );
                    return;
                }
            };
            match kind {
                Some(terminal_to_mom::Kind::Input(bytes)) => {
                    // The terminal is gone (EIO): the output side sees it too.
                    let _ = write_all(&master, &bytes).await;
                }
                Some(terminal_to_mom::Kind::Window(w)) => {
                    let (rows, cols) = capstan_proto::window::from_wire(w.rows, w.cols);
                    let _ = set_window(master.get_ref(), rows, cols);
                }
                None => {}
            }
        }
    };
    // Whichever side ends first ends the relay; the master closes with it. Output first: once
    // the shell is gone, keys still arriving are for no one.
    let shell_gone = tokio::select! {
        biased;
        () = output => true,
        () = input => false,
    };
    if !shell_gone {
        tracing::info!(
            run = run_id,
            "the job's qsub went away: its terminal hangs up"
        );
        return;
    }
    // The last output may still be queued for the stream: end it and wait for the server
    // to close its side (it has then read everything), boundedly. Dropping the call first
    // would reset the stream and lose that output.
    drop(tx);
    let drained = tokio::time::timeout(DRAIN_WAIT, async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            run = run_id,
            "the server did not close the job's terminal stream"
        );
    }
    tracing::info!(run = run_id, "the job's terminal closed");
}

/// How long a relay may take to reach the server and have its terminal paired with the
/// job's qsub before the terminal hangs up.
pub const PAIRING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a relay whose shell is gone waits for the server to take its last output.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves once the run is over (or its runner gone).
async fn run_over(ended: &mut watch::Receiver<bool>) {
    let _ = ended.wait_for(|over| *over).await;
}

/// Writes `bytes` to the terminal, waiting while its input queue is full. Fails once the
/// terminal has hung up (no process holds its slave): its queue will never drain then, and
/// the poller keeps saying "writable" for good, so waiting on would spin.
async fn write_all(master: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> std::io::Result<()> {
    let hung_up = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    while !bytes.is_empty() {
        let mut ready = master.writable().await?;
        if ready.ready().is_write_closed() || ready.ready().is_read_closed() {
            return Err(hung_up());
        }
        match ready.try_io(|fd| nix::unistd::write(fd, bytes).map_err(Into::into)) {
            Ok(Ok(0)) => return Err(hung_up()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_is_the_users_and_sized() {
        let me = nix::unistd::getuid().as_raw();
        let pty = open_pty(me, 33, 101).unwrap();
        let meta = std::fs::metadata(&pty.slave_path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.uid(), me);
        assert_eq!(meta.mode() & 0o777, 0o620);
        if let Ok(Some(tty)) = nix::unistd::Group::from_name("tty") {
            assert_eq!(meta.gid(), tty.gid.as_raw());
        }
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize to a valid pointer.
        let rc = unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!(rc, 0);
        assert_eq!((size.ws_row, size.ws_col), (33, 101));
        let flags = fcntl(pty.master.as_raw_fd(), FcntlArg::F_GETFD).unwrap();
        assert!(
            nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
        );
    }
}
