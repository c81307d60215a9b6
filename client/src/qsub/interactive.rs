//! `qsub -I`: an interactive job, its shell on this terminal.
//!
//! Torque's qsub listens on a port for the MOM to connect back to; here the job's terminal
//! comes through the server (`Batch.Interactive`, one stream: the submission, then the job's
//! output one way and the keystrokes the other), so no worker needs a way back to this host.
//! What the user sees is Torque's: `qsub: waiting for job ID to start`, `qsub: job ID
//! ready`, the shell, `qsub: job ID completed`; Ctrl-C while waiting asks whether to delete
//! the job; qsub exits 0 when the job is over, whatever its exit status (as Torque's).
//! The job goes with this stream: if qsub dies, the server deletes it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use capstan_proto::v1::{
    interactive_input, interactive_output, InteractiveInput, InteractiveSubmit, JobActionRequest,
    JobOp, SubmitRequest, WindowSize,
};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::error::QsubError;
use crate::connect;

/// How long Torque's qsub waits for an answer to its Ctrl-C question before deleting the job.
const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// Torque's size for a session without a terminal (`-x`).
const DEFAULT_WINDOW: WindowSize = WindowSize {
    rows: capstan_proto::window::DEFAULT_ROWS as u32,
    cols: capstan_proto::window::DEFAULT_COLS as u32,
};

/// Whether stdin and stdout are both terminals (else `-I` needs `-x`).
pub fn have_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Torque's refusal of `-I` without a terminal.
pub fn no_terminal() -> QsubError {
    QsubError::fatal(
        "qsub:\tstandard input and output must be a terminal for \n\tinteractive job submission",
        1,
    )
}

/// The terminal's size now.
fn window_of(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to a valid pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_row > 0 && size.ws_col > 0).then(|| WindowSize {
        rows: size.ws_row.into(),
        cols: size.ws_col.into(),
    })
}

/// The terminal in raw mode while the job runs, as it was again when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn input(kind: interactive_input::Kind) -> InteractiveInput {
    InteractiveInput { kind: Some(kind) }
}

/// What the user answered Torque's question with.
enum Answer {
    Delete,
    KeepWaiting,
}

/// Torque's `catchint`: asks until the answer is y or n (Enter: n); no answer within a
/// minute deletes the job.
async fn ask_whether_to_delete(lines: &mut mpsc::Receiver<Option<String>>) -> Answer {
    loop {
        say("Do you wish to terminate the job and exit (y|[n])? ");
        let line = match tokio::time::timeout(ANSWER_WAIT, lines.recv()).await {
            Err(_) => {
                say("Timeout -- deleting job\n");
                return Answer::Delete;
            }
            Ok(None | Some(None)) => return Answer::Delete,
            Ok(Some(Some(line))) => line,
        };
        match line.trim_end_matches(['\n', '\r']).chars().next() {
            None | Some('n' | 'N') => return Answer::KeepWaiting,
            Some('y' | 'Y') => return Answer::Delete,
            Some(_) => say("yes or no please\n"),
        }
    }
}

/// Reads stdin on a thread of its own (a blocking read must not hold the runtime, and must
/// not keep the process from exiting): lines while the job waits (the terminal is cooked
/// then), raw bytes once it runs.
fn read_stdin(lines: mpsc::Sender<Option<String>>, keys: mpsc::Sender<Vec<u8>>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            if n == 0 {
                let _ = lines.blocking_send(None);
                return;
            }
            if keys.blocking_send(buf[..n].to_vec()).is_err() {
                return;
            }
            // While the job waits, the same bytes are the answer to a Ctrl-C question.
            let _ = lines.try_send(Some(String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    });
}

/// Submits `request` as an interactive job and runs its terminal; the exit status.
pub async fn run(request: SubmitRequest, command: Option<String>, terminal: bool) -> i32 {
    match session(request, command, terminal).await {
        Ok(status) => status,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(err.stderr_text().as_bytes());
            err.exit_code()
        }
    }
}

async fn session(
    request: SubmitRequest,
    command: Option<String>,
    terminal: bool,
) -> Result<i32, QsubError> {
    let mut client = connect::connect()
        .await
        .map_err(|e| QsubError::fatal(e.torque_message("qsub"), e.exit_code()))?;
    let window = if terminal {
        window_of(std::io::stdin().as_fd()).unwrap_or(DEFAULT_WINDOW)
    } else {
        DEFAULT_WINDOW
    };
    let term = std::env::var("TERM").unwrap_or_else(|_| "unknown".into());
    let (tx, rx) = mpsc::channel(64);
    let submit = InteractiveSubmit {
        request: Some(request),
        term,
        window: Some(window),
        command: command.unwrap_or_default(),
    };
    let _ = tx
        .send(input(interactive_input::Kind::Submit(submit)))
        .await;
    let lost = |status: tonic::Status| {
        if let Some(err) = connect::ConnectError::from_status(&status) {
            return QsubError::fatal(err.torque_message("qsub"), err.exit_code());
        }
        QsubError::fatal(
            format!("qsub: lost contact with the server: {}", status.message()),
            1,
        )
    };
    let mut outputs = client
        .interactive(ReceiverStream::new(rx))
        .await
        .map_err(lost)?
        .into_inner();
    let job_id = match outputs.message().await.map_err(lost)?.and_then(|m| m.kind) {
        Some(interactive_output::Kind::Submitted(reply)) => super::submitted_job_id(reply)?,
        _ => {
            return Err(QsubError::fatal(
                "qsub: the server did not answer the submission",
                1,
            ))
        }
    };
    say(&format!("qsub: waiting for job {job_id} to start\n"));

    let (lines_tx, mut lines) = mpsc::channel(4);
    let (keys_tx, keys) = mpsc::channel::<Vec<u8>>(64);
    // Until the job runs; then a task of its own carries them (see below).
    let mut keys = Some(keys);
    let signals = || -> Result<_, QsubError> {
        let cannot =
            |e: std::io::Error| QsubError::fatal(format!("qsub: cannot catch signals: {e}"), 1);
        Ok((
            signal(SignalKind::interrupt()).map_err(cannot)?,
            signal(SignalKind::terminate()).map_err(cannot)?,
            signal(SignalKind::from_raw(libc::SIGTSTP)).map_err(cannot)?,
            signal(SignalKind::window_change()).map_err(cannot)?,
        ))
    };
    let (mut interrupt, mut terminate, mut suspend, mut resized) = signals()?;
    let mut reading = false;
    let mut raw: Option<RawMode> = None;
    let mut started = false;
    loop {
        tokio::select! {
            message = outputs.message() => {
                let kind = match message {
                    Ok(Some(m)) => m.kind,
                    Ok(None) => None,
                    Err(status) => {
                        drop(raw.take());
                        return Err(lost(status));
                    }
                };
                match kind {
                    Some(interactive_output::Kind::Ready(_node)) => {
                        started = true;
                        say(&format!("qsub: job {job_id} ready\n\n"));
                        if terminal {
                            raw = RawMode::enter();
                        }
                        if !reading {
                            read_stdin(lines_tx.clone(), keys_tx.clone());
                            reading = true;
                        }
                        // Keys go up on their own: a paste waiting for room must not stop
                        // this loop reading the output, which the server must be rid of
                        // before it takes more keys.
                        if let Some(mut keys) = keys.take() {
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                while let Some(bytes) = keys.recv().await {
                                    let kind = interactive_input::Kind::Input(bytes);
                                    if tx.send(input(kind)).await.is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                    }
                    Some(interactive_output::Kind::Output(bytes)) => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&bytes);
                        let _ = out.flush();
                    }
                    Some(interactive_output::Kind::Ended(end)) => {
                        drop(raw.take());
                        if !end.started && !started {
                            return Err(QsubError::fatal(
                                format!("qsub: job {job_id} apparently deleted"),
                                1,
                            ));
                        }
                        say(&format!("\nqsub: job {job_id} completed\n"));
                        return Ok(0);
                    }
                    Some(interactive_output::Kind::Submitted(_)) => {}
                    None => {
                        drop(raw.take());
                        return Err(QsubError::fatal(
                            format!("qsub: lost contact with the server while job {job_id} was active"),
                            1,
                        ));
                    }
                }
            }
            // Keys typed while it waits (the reader runs once Ctrl-C was asked about) are for
            // no one: dropped, so they cannot fill the queue and stall the next answer.
            Some(_) = async { keys.as_mut()?.recv().await }, if !started => {}
            _ = resized.recv() => {
                // Never waited for: a size that finds no room is followed by the next one.
                if let Some(w) = window_of(std::io::stdin().as_fd()) {
                    let _ = tx.try_send(input(interactive_input::Kind::Window(w)));
                }
            }
            _ = suspend.recv(), if !started => {
                eprintln!("Sorry, you cannot suspend qsub until the job is started");
            }
            // Once the job runs, Ctrl-C is a key for the job (raw mode) and a signal is ignored.
            _ = async { tokio::select! { _ = interrupt.recv() => {}, _ = terminate.recv() => {} } }, if !started => {
                if !reading {
                    read_stdin(lines_tx.clone(), keys_tx.clone());
                    reading = true;
                }
                // What was typed before the question is not its answer.
                while lines.try_recv().is_ok() {}
                if let Answer::Delete = ask_whether_to_delete(&mut lines).await {
                    say(&format!("Job {job_id} is being deleted\n"));
                    // As Torque's bailout, a qdel; the server would also delete the job when
                    // this stream ends, but not before qsub has returned.
                    let request = JobActionRequest {
                        op: JobOp::Delete as i32,
                        ids: vec![job_id.clone()],
                        ..Default::default()
                    };
                    if let Err(status) = client.job_action(request).await {
                        return Err(lost(status));
                    }
                    return Ok(0);
                }
                // Keys typed while waiting went to the question, not to the job.
                if let Some(keys) = keys.as_mut() {
                    while keys.try_recv().is_ok() {}
                }
            }
        }
    }
}
