//! Interactive jobs (`qsub -I`): the job's terminal, carried through the server.
//!
//! Why through the server: in Torque the MOM connects back to a port qsub listens on, which
//! needs a path from every worker, at either site, to every login node. Here the server dials
//! no one and MOMs may sit behind NAT or a VPN, so qsub holds one stream to the server
//! (`Batch.Interactive`), the MOM opens one (`MomSession.Terminal`, authenticated as its
//! session is) for the job's pseudo-terminal before it lets the shell run, and the server
//! pairs the two by the job. Each travels on a connection of its own (qsub's; the MOM dials one per
//! terminal, and a login node's `trqauthd` one per interactive qsub), because HTTP/2's flow
//! control has a window per connection: a terminal that stops reading then slows its own
//! job's output, never a MOM's session or other users' commands.
//!
//! Lifetimes: the job belongs to its qsub. The scheduler starts an interactive job only while
//! its qsub is attached ([`Terminals::is_attached`], asked through
//! `scheduler::PendingJob::awaiting_terminal`); when the qsub's stream ends before the job
//! does, the job is deleted, as Torque's goes with its terminal. The qsub hears `ended` only
//! once the job's end is recorded *and* the MOM's terminal stream has closed, so the job's
//! last output always reaches the terminal before qsub says the job completed.
//!
//! The registry is memory only and lives in `State` (under the state lock): no I/O and no
//! waiting happen while it is held; sends to a stream are handed back to the caller, which
//! makes them after the lock is released.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::model::JobState;

/// How many frames each way may wait in the server for a slow reader before the writer
/// waits too (HTTP/2 flow control takes it from there).
pub const FRAMES_IN_FLIGHT: usize = 64;

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub rows: u16,
    pub cols: u16,
}

impl Window {
    /// Torque's size for a qsub without a terminal (`-x`).
    pub const DEFAULT: Window = Window {
        rows: capstan_proto::window::DEFAULT_ROWS,
        cols: capstan_proto::window::DEFAULT_COLS,
    };

    /// A size as a peer sent it (see `capstan_proto::window`).
    pub fn from_wire(rows: u32, cols: u32) -> Window {
        let (rows, cols) = capstan_proto::window::from_wire(rows, cols);
        Window { rows, cols }
    }
}

/// What goes to qsub once the job was submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    /// The job's shell runs on this node.
    Ready(String),
    Output(Vec<u8>),
    /// The job is over. `started`: it ran (else it was deleted while it waited).
    Ended {
        started: bool,
        exit_status: i32,
    },
}

/// What goes to the MOM that runs the job's shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToTerminal {
    Input(Vec<u8>),
    Window(Window),
}

/// A send to make once the state lock is released.
pub type PendingSend = (mpsc::Sender<ToClient>, ToClient);

/// The qsub side of an attached job, as [`Terminals::attach`] hands it out.
#[derive(Debug)]
pub struct ClientEnds {
    /// Everything qsub is to hear, in order.
    pub events: mpsc::Receiver<ToClient>,
    /// Where qsub's keystrokes and sizes go (to the MOM once it opens the terminal).
    pub input: mpsc::Sender<ToTerminal>,
}

/// The MOM side of a paired job, as [`Terminals::open_relay`] hands it out.
#[derive(Debug)]
pub struct RelayEnds {
    pub to_client: mpsc::Sender<ToClient>,
    pub input: mpsc::Receiver<ToTerminal>,
    /// qsub's window now, for the MOM first (sizes sent before the terminal opened are
    /// only remembered, see [`Terminals::resized`]).
    pub window: Window,
}

#[derive(Debug)]
struct Attachment {
    term: String,
    window: Window,
    to_client: mpsc::Sender<ToClient>,
    /// Taken by the MOM's terminal stream; `None` once it has been.
    input: Option<mpsc::Receiver<ToTerminal>>,
    /// The MOM's terminal stream is open: `ended` waits for it to close.
    relay_open: bool,
    /// The job's end, recorded while the relay was still open.
    end: Option<i32>,
}

/// The interactive jobs whose qsub is attached, by job number.
#[derive(Debug, Default)]
pub struct Terminals {
    attached: HashMap<u64, Attachment>,
}

impl Terminals {
    /// Attaches qsub to job `seq` (just submitted). `None` if one already is.
    pub fn attach(&mut self, seq: u64, term: &str, window: Window) -> Option<ClientEnds> {
        if self.attached.contains_key(&seq) {
            return None;
        }
        let (to_client, events) = mpsc::channel(FRAMES_IN_FLIGHT);
        let (input, input_rx) = mpsc::channel(FRAMES_IN_FLIGHT);
        self.attached.insert(
            seq,
            Attachment {
                term: term.to_string(),
                window,
                to_client,
                input: Some(input_rx),
                relay_open: false,
                end: None,
            },
        );
        Some(ClientEnds { events, input })
    }

    /// Whether job `seq`'s qsub is attached (an interactive job may only start then).
    pub fn is_attached(&self, seq: u64) -> bool {
        self.attached.contains_key(&seq)
    }

    /// `TERM` and the window size for job `seq`'s StartRun.
    pub fn setup(&self, seq: u64) -> Option<(String, Window)> {
        self.attached.get(&seq).map(|a| (a.term.clone(), a.window))
    }

    /// qsub's terminal was resized: remembered for the terminal's start; whether a terminal
    /// is open, to be told too. (Sizes are not queued before then: a qsub resized over and
    /// over while its job waits would fill the queue and no longer be heard going away.)
    pub fn resized(&mut self, seq: u64, window: Window) -> bool {
        match self.attached.get_mut(&seq) {
            Some(a) => {
                a.window = window;
                a.relay_open
            }
            None => false,
        }
    }

    /// Whether job `seq`'s terminal is open (its keys have someone to read them).
    pub fn is_open(&self, seq: u64) -> bool {
        self.attached.get(&seq).is_some_and(|a| a.relay_open)
    }

    /// The MOM opened job `seq`'s terminal: the relay's ends (the caller sends
    /// [`ToClient::Ready`] first). `None` if no qsub is attached or a terminal is already
    /// open.
    pub fn open_relay(&mut self, seq: u64) -> Option<RelayEnds> {
        let a = self.attached.get_mut(&seq)?;
        let input = a.input.take()?;
        a.relay_open = true;
        Some(RelayEnds {
            to_client: a.to_client.clone(),
            input,
            window: a.window,
        })
    }

    /// The MOM's terminal stream for job `seq` closed (its output all relayed): the end, if
    /// the job's was recorded meanwhile.
    pub fn relay_closed(&mut self, seq: u64) -> Option<PendingSend> {
        let a = self.attached.get_mut(&seq)?;
        a.relay_open = false;
        let exit_status = a.end?;
        // Its terminal was open: it ran.
        self.finish(seq, exit_status, true)
    }

    /// Job `seq`'s end was recorded (`started`: it ever ran): what to tell its qsub now,
    /// unless its terminal's last output is still on its way (then
    /// [`Terminals::relay_closed`] tells it).
    pub fn job_ended(&mut self, seq: u64, exit_status: i32, started: bool) -> Option<PendingSend> {
        let a = self.attached.get_mut(&seq)?;
        if a.relay_open {
            a.end = Some(exit_status);
            return None;
        }
        self.finish(seq, exit_status, started)
    }

    /// qsub's stream ended: whether the job was still its (not over), so goes with it. A job
    /// whose end is recorded (its terminal's last output still on its way) is over.
    pub fn detach(&mut self, seq: u64) -> bool {
        self.attached.remove(&seq).is_some_and(|a| a.end.is_none())
    }

    /// Forgets every attachment (shutdown): their streams end once their relays do.
    pub fn clear(&mut self) {
        self.attached.clear();
    }

    /// Forgets job `seq`'s attachment: the `ended` its qsub is to hear.
    fn finish(&mut self, seq: u64, exit_status: i32, started: bool) -> Option<PendingSend> {
        self.attached.remove(&seq).map(|a| {
            let ended = ToClient::Ended {
                started,
                exit_status,
            };
            (a.to_client, ended)
        })
    }
}

/// At start: interactive jobs still waiting lost their qsub with the last server process (a
/// qsub's stream does not outlive it, and none can attach again), so none of them could ever
/// start: each is deleted, as its owner's qdel would. (A running one needs nothing: its
/// MOM's terminal stream went with that server, so its shell was hung up.)
pub async fn delete_orphaned(core: &mut crate::state::Core, now: i64) {
    let server = core.state.server_name.clone();
    let orphaned: Vec<(String, crate::jobs::Caller)> = core
        .state
        .jobs
        .values()
        .filter(|j| j.interactive.is_some())
        .filter(|j| {
            matches!(
                j.state,
                JobState::Queued | JobState::Held | JobState::Waiting
            )
        })
        .map(|j| (j.id(&server), crate::jobs::Caller::owner_of(j)))
        .collect();
    for (id, owner) in orphaned {
        delete_as(
            core,
            &owner,
            &id,
            now,
            "its qsub went away with the last server",
        )
        .await;
    }
}

/// Deletes interactive job `id` as `owner`'s qdel would (its qsub went away: `why`).
pub async fn delete_as(
    core: &mut crate::state::Core,
    owner: &crate::jobs::Caller,
    id: &str,
    now: i64,
    why: &str,
) {
    let args = crate::jobs::ActionArgs::default();
    let (results, _) = crate::jobs::job_action(
        core,
        owner,
        crate::jobs::JobOp::Delete,
        &[id.to_string()],
        &args,
        now,
    )
    .await;
    tracing::info!(job = %id, ?results, "interactive job deleted: {why}");
}

/// Makes the sends [`Terminals`] handed back, in order, off the caller's lock.
pub fn send_later(sends: Vec<PendingSend>) {
    if sends.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for (tx, event) in sends {
            // A qsub gone meanwhile has nothing left to hear.
            let _ = tx.send(event).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            rows: 40,
            cols: 100,
        }
    }

    #[test]
    fn a_started_job_that_never_opened_its_terminal_ended_started() {
        let mut t = Terminals::default();
        let _ends = t.attach(5, "xterm", window()).unwrap();
        assert!(!t.resized(5, window()), "no terminal to tell yet");
        let (_, event) = t.job_ended(5, -1, true).unwrap();
        assert_eq!(
            event,
            ToClient::Ended {
                started: true,
                exit_status: -1
            }
        );
    }

    #[test]
    fn a_job_that_ends_unstarted_tells_its_qsub_at_once() {
        let mut t = Terminals::default();
        let _ends = t.attach(5, "xterm", window()).unwrap();
        assert!(t.is_attached(5));
        assert!(t.attach(5, "xterm", window()).is_none(), "one qsub per job");
        let (_, event) = t.job_ended(5, 271, false).unwrap();
        assert_eq!(
            event,
            ToClient::Ended {
                started: false,
                exit_status: 271
            }
        );
        assert!(!t.is_attached(5));
        assert!(
            !t.detach(5),
            "an ended job is no longer its qsub's to delete"
        );
    }

    #[test]
    fn the_end_waits_for_the_terminal_to_close() {
        let mut t = Terminals::default();
        let _ends = t.attach(5, "xterm", window()).unwrap();
        let relay = t.open_relay(5).unwrap();
        assert!(t.open_relay(5).is_none(), "one terminal per job");
        drop(relay);
        assert!(
            t.job_ended(5, 0, true).is_none(),
            "its output may still be on the way"
        );
        let (_, event) = t.relay_closed(5).unwrap();
        assert_eq!(
            event,
            ToClient::Ended {
                started: true,
                exit_status: 0
            }
        );
        assert!(!t.is_attached(5));
    }

    #[test]
    fn a_qsub_gone_after_the_end_deletes_nothing() {
        let mut t = Terminals::default();
        let _ends = t.attach(5, "xterm", window()).unwrap();
        let _relay = t.open_relay(5).unwrap();
        assert!(t.job_ended(5, 0, true).is_none());
        assert!(!t.detach(5), "the job is over");
    }

    #[test]
    fn a_terminal_closed_before_the_end_leaves_the_end_to_tell() {
        let mut t = Terminals::default();
        let _ends = t.attach(5, "vt100", window()).unwrap();
        let _relay = t.open_relay(5).unwrap();
        assert!(t.relay_closed(5).is_none());
        assert!(t.is_attached(5));
        let (_, event) = t.job_ended(5, 3, true).unwrap();
        assert_eq!(
            event,
            ToClient::Ended {
                started: true,
                exit_status: 3
            }
        );
    }

    #[test]
    fn sizes_are_kept_for_the_start() {
        let mut t = Terminals::default();
        let _ends = t.attach(9, "xterm", window()).unwrap();
        t.resized(
            9,
            Window {
                rows: 50,
                cols: 132,
            },
        );
        assert_eq!(
            t.setup(9),
            Some((
                "xterm".to_string(),
                Window {
                    rows: 50,
                    cols: 132
                }
            ))
        );
        assert_eq!(Window::from_wire(0, 70_000), Window::DEFAULT);
        assert_eq!(Window::from_wire(24, 80), Window { rows: 24, cols: 80 });
    }
}
