//! Job mail, as Torque's server sends it (`svr_mail.c`, `svr_format_job.c`): `qsub -m abe
//! -M addr` asks for mail when the job begins, ends or is aborted, and the owner is told
//! when someone else deletes the job, when its run is killed for a limit, and when its
//! output could not be delivered.
//!
//! Why it is split in two: which mail a change calls for ([`notices`]) and what the message
//! says ([`compose`]) are pure functions of the job's old and new versions, tested without
//! I/O, like the accounting records they are derived beside (`Core::apply_jobs_by`). Sending
//! is the [`Postman`]'s: a task that hands each message to `sendmail` (`-f FROM ADDR...`,
//! the message on its standard input, as Torque does), one at a time, off the core's lock,
//! so a slow or missing mail system never delays a job. A message that cannot be sent is
//! logged in Torque's words and dropped: mail is a courtesy, never part of a job's state.
//!
//! What Torque does and Capstan keeps: the default `Mail_Points` is `a`; `n` sends nothing
//! but forced mail; forced mail (a deletion by someone else, a limit kill, undelivered
//! output) ignores `Mail_Points` unless the server's `no_mail_force` is set; `Mail_Users`
//! if given, else `euser@mail_domain`, else the owner (`user@submithost`); `mail_domain =
//! never` sends nothing; `mail_subject_fmt` and `mail_body_fmt` with Torque's `%` escapes.
//! Capstan refuses to pass sendmail an address that could be read as an option or could
//! add a header (one starting with `-`, or holding spaces or control characters), since the
//! server runs sendmail as root and the addresses are the user's.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::accounting::{self, Event};
use crate::attrs::format_exec_host;
use crate::model::{Job, PendingAction};
use capstan_proto::job_exec;

/// Torque's `PBS_DEFAULT_MAIL`: the sender when `mail_from` is not set.
pub const DEFAULT_FROM: &str = "adm";

/// Torque's default `mail_subject_fmt`.
const DEFAULT_SUBJECT: &str = "PBS JOB %i";

/// Messages waiting for sendmail beyond this many are dropped (and logged): a mail system
/// that is down must not grow the server without bound.
const OUTBOX_CAPACITY: usize = 10_000;

/// The longest one sendmail may take before it is killed and its message given up.
const SENDMAIL_LIMIT: Duration = Duration::from_secs(60);

/// The server's mail attributes (`qmgr -c "set server mail_domain = example.org"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailSettings {
    /// `mail_from`: the envelope sender; [`DEFAULT_FROM`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `mail_domain`: owners are mailed at `euser@DOMAIN`; `never` sends no mail at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `mail_subject_fmt`: the subject, with [`expand`]'s escapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_fmt: Option<String>,
    /// `mail_body_fmt`: the body, with [`expand`]'s escapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_fmt: Option<String>,
    /// `no_mail_force`: forced mail, too, only goes where `Mail_Points` asks.
    #[serde(default)]
    pub no_mail_force: bool,
}

impl MailSettings {
    pub fn from(&self) -> &str {
        self.from.as_deref().unwrap_or(DEFAULT_FROM)
    }
}

/// What a mail is about: Torque's mail point letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// `a`: aborted by the system.
    Abort,
    /// `b`: began execution.
    Begin,
    /// `e`: execution ended.
    End,
    /// `d`: deleted by someone other than its owner (always forced).
    Delete,
    /// `o`: something went wrong around the job (its output was not delivered).
    Other,
}

impl Point {
    pub fn letter(self) -> char {
        match self {
            Point::Abort => 'a',
            Point::Begin => 'b',
            Point::End => 'e',
            Point::Delete => 'd',
            Point::Other => 'o',
        }
    }

    /// Torque's `%m` (and `%r`) text for the point (`pbs_messages.c`), its trailing space
    /// included.
    fn message(self) -> &'static str {
        match self {
            Point::Abort => "Aborted by PBS Server ",
            Point::Begin => "Begun execution",
            Point::End => "Execution terminated",
            Point::Delete => "job deleted",
            Point::Other => "An error has occurred processing your job, see below.",
        }
    }
}

/// One mail a change calls for, before the job's wishes and the server's settings say
/// whether and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub point: Point,
    /// Sent whatever `Mail_Points` says (unless `no_mail_force`).
    pub force: bool,
    /// Torque's details (`%d`): exit status and usage, the reason, ...
    pub text: Option<String>,
}

/// A qdel, as its mail needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// `user@host` of who asked.
    pub requestor: String,
    /// Who asked, to tell the owner from others.
    pub uid: u32,
    /// `qdel -m`'s message, if any.
    pub message: String,
}

/// The mail a job's change calls for, given the accounting `events` it made
/// ([`accounting::transitions`] of `old` and `new`), as Torque's server sends them:
/// - a run starts: `b`;
/// - a run ends: `e` with the exit status and usage; but a run the system killed (a
///   negative exit status, and no qdel asked for it) is a forced `a` with the reason first;
/// - a qdel by anyone but the owner: a forced `d` (an owner deleting their own queued job
///   gets no mail, as in Torque);
/// - ended without running because a dependency failed: `a` with the reason.
pub fn notices(
    events: &[Event<'_>],
    old: Option<&Job>,
    new: &Job,
    deletion: Option<&Deletion>,
) -> Vec<Notice> {
    let mut out = Vec::new();
    for event in events {
        match event {
            Event::Started => out.push(Notice {
                point: Point::Begin,
                force: false,
                text: None,
            }),
            Event::Ended => {
                let status = new.exit_status.unwrap_or(0);
                let deleted = old.is_some_and(|o| o.pending == Some(PendingAction::Delete));
                let summary = exit_summary(new);
                out.push(if status < 0 && !deleted {
                    Notice {
                        point: Point::Abort,
                        force: true,
                        text: Some(format!("{}\n{summary}", abort_reason(status))),
                    }
                } else {
                    Notice {
                        point: Point::End,
                        force: false,
                        text: Some(summary),
                    }
                });
            }
            Event::Deleted { requestor } => {
                let Some(deletion) = deletion.filter(|d| d.uid != new.uid) else {
                    continue;
                };
                let mut text = format!("Job deleted at request of {requestor}");
                if !deletion.message.is_empty() {
                    text.push('\n');
                    text.push_str(&deletion.message);
                }
                out.push(Notice {
                    point: Point::Delete,
                    force: true,
                    text: Some(text),
                });
            }
            Event::Aborted => out.push(Notice {
                point: Point::Abort,
                force: false,
                text: new.comment.clone(),
            }),
            Event::Queued | Event::Rerun => {}
        }
    }
    out
}

/// The forced `o` mail for output the job's MOM could not deliver (Torque's
/// `handle_stageout`): where, and the MOM's own words.
pub fn undelivered(job_id: &str, node: &str, errors: &[String]) -> Notice {
    let mut text = format!("Post job file processing error; job {job_id} on host {node}");
    for error in errors {
        text.push('\n');
        text.push_str(error);
    }
    Notice {
        point: Point::Other,
        force: true,
        text: Some(text),
    }
}

/// Torque's obit text: `Exit_status=N` and each `resources_used` value, a line each.
fn exit_summary(job: &Job) -> String {
    let mut text = format!("Exit_status={}", job.exit_status.unwrap_or(0));
    for (name, value) in accounting::resources_used(job) {
        text.push_str(&format!("\nresources_used.{name}={value}"));
    }
    text
}

/// Why the system ended a run, in Torque's words (`req_jobobit.c`).
fn abort_reason(exit_status: i32) -> &'static str {
    match exit_status {
        job_exec::OVERLIMIT_MEM => {
            "Job exceeded a memory resource limit (vmem, pvmem, etc.). Job was aborted\nSee Administrator for help"
        }
        job_exec::OVERLIMIT_WT => {
            "Job exceeded its walltime limit. Job was aborted\nSee Administrator for help"
        }
        job_exec::OVERLIMIT_CPUT => {
            "Job exceeded its cpu time limit. Job was aborted\nSee Administrator for help"
        }
        job_exec::FAIL2 => "Job cannot be executed\nSee job standard error file",
        job_exec::INITABT => "Job aborted on PBS Server initialization",
        _ => "Job cannot be executed\nSee Administrator for help",
    }
}

/// A message ready for sendmail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub job_id: String,
    pub point: char,
    /// `-f`: the envelope sender.
    pub from: String,
    /// sendmail's address arguments.
    pub recipients: Vec<String>,
    /// Headers, a blank line, the body.
    pub message: String,
}

/// The message for `notice` about `job`, or `None` when none is to be sent: the server
/// sends no mail (`mail_domain = never`), the job asked for none of this kind, or it has
/// no address sendmail may be given.
pub fn compose(
    notice: &Notice,
    job: &Job,
    settings: &MailSettings,
    server_name: &str,
) -> Option<Mail> {
    if settings
        .domain
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case("never"))
    {
        return None;
    }
    let letter = notice.point.letter();
    if !notice.force || settings.no_mail_force {
        let points = job.mail_points.as_str();
        if points.starts_with('n') || !points.contains(letter) {
            return None;
        }
    }
    let to = match &job.mail_users {
        Some(users) => users.clone(),
        None => match &settings.domain {
            Some(domain) => format!("{}@{domain}", job.euser),
            None => job.owner.clone(),
        },
    };
    let Some(recipients) = addresses(&to) else {
        warn!(job = %job.id(server_name), to = %to.escape_debug(), "not sending '{letter}' mail: not an address sendmail may be given");
        return None;
    };
    let fields = Fields {
        job,
        server_name,
        point: notice.point,
        text: notice.text.as_deref().unwrap_or(""),
    };
    let subject = expand(
        settings.subject_fmt.as_deref().unwrap_or(DEFAULT_SUBJECT),
        &fields,
    );
    let body_fmt = match &settings.body_fmt {
        Some(fmt) => fmt.clone(),
        None => default_body(notice, job),
    };
    let body = expand(&body_fmt, &fields);
    Some(Mail {
        job_id: job.id(server_name),
        point: letter,
        from: settings.from().to_string(),
        // From the checked addresses, never the raw list: nothing the user wrote can end
        // the header.
        message: format!(
            "To: {}\nSubject: {subject}\nPrecedence: bulk\n\n{body}",
            recipients.join(",")
        ),
        recipients,
    })
}

/// The addresses of a comma-separated list (`Mail_Users`), or `None` unless every one is
/// an address sendmail cannot take for an option and that cannot break the `To:` header
/// (spaces around the commas are allowed).
pub fn addresses(list: &str) -> Option<Vec<String>> {
    if list.chars().any(char::is_control) {
        return None;
    }
    let addresses: Vec<String> = list.split(',').map(|a| a.trim().to_string()).collect();
    let safe = |a: &String| {
        !a.is_empty()
            && !a.starts_with('-')
            && !a.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    addresses.iter().all(safe).then_some(addresses)
}

/// Torque's default body: id, name, where it ran, what happened, the details, and for the
/// end mail where its output went.
fn default_body(notice: &Notice, job: &Job) -> String {
    let mut fmt = String::from("PBS Job Id: %i\nJob Name:   %j\n");
    if !job.exec_host.is_empty() {
        fmt.push_str("Exec host:  %h\n");
    }
    fmt.push_str("%m\n");
    if notice.text.as_deref().is_some_and(|t| !t.is_empty()) {
        fmt.push_str("%d\n");
    }
    if notice.point == Point::End {
        fmt.push_str("Error_Path: %k\nOutput_Path: %l\n");
    }
    fmt
}

/// What a format's escapes stand for.
struct Fields<'a> {
    job: &'a Job,
    server_name: &'a str,
    point: Point,
    text: &'a str,
}

impl Fields<'_> {
    /// The files the job's output went to, for the end mail only (Torque fills them in
    /// then): with `-j oe` both are the output file, with `-j eo` both the error file.
    fn paths(&self) -> (&str, &str) {
        if self.point != Point::End {
            return ("", "");
        }
        let job = self.job;
        match job.join_path.as_str() {
            "oe" => (&job.output_path, &job.output_path),
            "eo" => (&job.error_path, &job.error_path),
            _ => (&job.error_path, &job.output_path),
        }
    }
}

/// Torque's `svr_format_job`: `%d` details, `%h` exec host, `%i` job id, `%j` job name,
/// `%k` error path, `%l` output path, `%m` and `%r` what happened; `\n`, `\t`, `\\`, `\'`
/// and `\"` as in C. Anything else, a lone `%` or `\` included, is copied as it is.
fn expand(fmt: &str, fields: &Fields<'_>) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(escape @ ('d' | 'h' | 'i' | 'j' | 'k' | 'l' | 'm' | 'r'))) => {
                chars.next();
                let (error_path, output_path) = fields.paths();
                match escape {
                    'd' => out.push_str(fields.text),
                    'h' => out.push_str(&format_exec_host(&fields.job.exec_host)),
                    'i' => out.push_str(&fields.job.id(fields.server_name)),
                    'j' => out.push_str(&fields.job.name),
                    'k' => out.push_str(error_path),
                    'l' => out.push_str(output_path),
                    _ => out.push_str(fields.point.message()),
                }
            }
            ('\\', Some(escape @ ('n' | 't' | '\\' | '\'' | '"'))) => {
                chars.next();
                out.push(match escape {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// The core's side of the outbox: hands messages to the [`Postman`] without waiting.
#[derive(Debug, Clone, Default)]
pub struct Mailer {
    outbox: Option<mpsc::Sender<Mail>>,
}

impl Mailer {
    /// Queues `mail`; a full outbox or a stopped postman drops it, logged.
    pub fn send(&self, mail: Mail) {
        let Some(outbox) = &self.outbox else {
            debug!(job = %mail.job_id, point = %mail.point, "no postman: mail not sent");
            return;
        };
        if let Err(e) = outbox.try_send(mail) {
            let (why, mail) = match e {
                mpsc::error::TrySendError::Full(mail) => ("too many messages wait", mail),
                mpsc::error::TrySendError::Closed(mail) => ("the postman has stopped", mail),
            };
            warn!(job = %mail.job_id, point = %mail.point, "mail dropped: {why}");
        }
    }
}

/// Sends what the [`Mailer`] queues, through `sendmail`, one message at a time.
#[derive(Debug)]
pub struct Postman {
    sendmail: PathBuf,
    inbox: mpsc::Receiver<Mail>,
}

/// A connected mailer and postman; the postman sends with the program at `sendmail`.
pub fn channel(sendmail: PathBuf) -> (Mailer, Postman) {
    let (outbox, inbox) = mpsc::channel(OUTBOX_CAPACITY);
    (
        Mailer {
            outbox: Some(outbox),
        },
        Postman { sendmail, inbox },
    )
}

impl Postman {
    /// Sends until the [`Mailer`] is dropped and everything queued is sent: at shutdown the
    /// server drops it once nothing more can change a job (and bounds the wait).
    pub async fn run(mut self) {
        while let Some(mail) = self.inbox.recv().await {
            self.deliver(mail).await;
        }
    }

    async fn deliver(&self, mail: Mail) {
        let command = format!(
            "{} -f {} {}",
            self.sendmail.display(),
            mail.from,
            mail.recipients.join(" ")
        );
        let failed = |how: String| {
            warn!(
                job = %mail.job_id,
                "Email '{}' to {} failed: Child process '{command}' {how}",
                mail.point,
                mail.recipients.join(",")
            )
        };
        let spawned = tokio::process::Command::new(&self.sendmail)
            .arg("-f")
            .arg(&mail.from)
            .args(&mail.recipients)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return failed(format!("could not start: {e}")),
        };
        let sent = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A sendmail that exits without reading is judged by its exit status.
                let _ = stdin.write_all(mail.message.as_bytes()).await;
            }
            child.wait().await
        };
        match tokio::time::timeout(SENDMAIL_LIMIT, sent).await {
            Ok(Ok(status)) if status.success() => {
                info!(job = %mail.job_id, point = %mail.point, to = %mail.recipients.join(","), "Email sent successfully");
            }
            Ok(Ok(status)) => failed(match (status.code(), status.signal()) {
                (Some(code), _) => format!("returned {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                _ => "croaked".to_string(),
            }),
            Ok(Err(e)) => failed(format!("could not be waited for: {e}")),
            Err(_) => failed(format!(
                "did not finish within {} s and was killed",
                SENDMAIL_LIMIT.as_secs()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostSlots, JobState, ResourcesUsed};

    fn queued() -> Job {
        let mut job = crate::store::tests::sample_job(7);
        job.name = "sweep".into();
        job
    }

    fn running() -> Job {
        let mut job = queued();
        job.state = JobState::Running;
        job.start_time = Some(100);
        job.exec_host = vec![HostSlots {
            node: "a1".into(),
            slots: vec![0, 1],
        }];
        job
    }

    fn ended(exit_status: i32) -> Job {
        let mut job = running();
        job.state = JobState::Completed;
        job.exit_status = Some(exit_status);
        job.comp_time = Some(105);
        job.resources_used = Some(ResourcesUsed {
            cput_secs: 2,
            mem_kb: 1024,
            vmem_kb: 2048,
            walltime_secs: 5,
        });
        job
    }

    /// The notices for the change from `old` to `new`, as the core derives them.
    fn notices_of(old: Option<&Job>, new: &Job, deletion: Option<&Deletion>) -> Vec<Notice> {
        let events = accounting::transitions(old, new, deletion.map(|d| d.requestor.as_str()));
        notices(&events, old, new, deletion)
    }

    fn qdel_by(uid: u32, message: &str) -> Deletion {
        Deletion {
            requestor: "root@vm".into(),
            uid,
            message: message.into(),
        }
    }

    const SUMMARY: &str = "resources_used.cput=00:00:02\nresources_used.energy_used=0\n\
                           resources_used.mem=1024kb\nresources_used.vmem=2048kb\n\
                           resources_used.walltime=00:00:05";

    #[test]
    fn a_start_and_a_normal_end_call_for_b_and_e() {
        let started = notices_of(Some(&queued()), &running(), None);
        assert_eq!(
            started,
            vec![Notice {
                point: Point::Begin,
                force: false,
                text: None
            }]
        );
        // A failing script is still an end, not an abort, as in Torque.
        let end = notices_of(Some(&running()), &ended(3), None);
        assert_eq!(
            end,
            vec![Notice {
                point: Point::End,
                force: false,
                text: Some(format!("Exit_status=3\n{SUMMARY}")),
            }]
        );
        assert!(notices_of(None, &queued(), None).is_empty());
    }

    #[test]
    fn a_run_the_system_killed_is_a_forced_abort_unless_a_qdel_asked() {
        let walltime = notices_of(Some(&running()), &ended(job_exec::OVERLIMIT_WT), None);
        assert_eq!(walltime.len(), 1);
        assert_eq!((walltime[0].point, walltime[0].force), (Point::Abort, true));
        assert_eq!(
            walltime[0].text.as_deref().unwrap(),
            format!(
                "Job exceeded its walltime limit. Job was aborted\nSee Administrator for help\n\
                 Exit_status=-11\n{SUMMARY}"
            )
        );
        let mut deleting = running();
        deleting.pending = Some(PendingAction::Delete);
        let after_qdel = notices_of(Some(&deleting), &ended(job_exec::OVERLIMIT_WT), None);
        assert_eq!(after_qdel[0].point, Point::End);
    }

    #[test]
    fn a_qdel_mails_the_owner_only_when_someone_else_asked() {
        let mut deleted = queued();
        deleted.state = JobState::Completed;
        deleted.exit_status = Some(271);
        let by_owner = qdel_by(1000, "");
        assert!(notices_of(Some(&queued()), &deleted, Some(&by_owner)).is_empty());
        let by_admin = qdel_by(0, "node a1 is being repaired");
        assert_eq!(
            notices_of(Some(&queued()), &deleted, Some(&by_admin)),
            vec![Notice {
                point: Point::Delete,
                force: true,
                text: Some("Job deleted at request of root@vm\nnode a1 is being repaired".into()),
            }]
        );
        // A running job: told at once; the end mail follows when its run ends.
        let mut deleting = running();
        deleting.pending = Some(PendingAction::Delete);
        let asked = notices_of(Some(&running()), &deleting, Some(&qdel_by(0, "")));
        assert_eq!(
            asked[0].text.as_deref(),
            Some("Job deleted at request of root@vm")
        );
    }

    #[test]
    fn a_failed_dependency_is_an_abort_with_its_reason() {
        let mut aborted = queued();
        aborted.state = JobState::Completed;
        aborted.exit_status = Some(271);
        aborted.comment = Some("Job deleted as result of dependency on job 6.vm".into());
        assert_eq!(
            notices_of(Some(&queued()), &aborted, None),
            vec![Notice {
                point: Point::Abort,
                force: false,
                text: aborted.comment.clone(),
            }]
        );
    }

    #[test]
    fn the_end_mail_is_torques_message() {
        let mut job = ended(0);
        job.mail_points = "be".into();
        let notice = notices_of(Some(&running()), &job, None).remove(0);
        let mail = compose(&notice, &job, &MailSettings::default(), "vm").unwrap();
        assert_eq!(mail.from, "adm");
        assert_eq!(mail.recipients, vec!["u@vm".to_string()]);
        assert_eq!(mail.point, 'e');
        assert_eq!(
            mail.message,
            format!(
                "To: u@vm\nSubject: PBS JOB 7.vm\nPrecedence: bulk\n\n\
                 PBS Job Id: 7.vm\nJob Name:   sweep\nExec host:  a1/0-1\n\
                 Execution terminated\nExit_status=0\n{SUMMARY}\n\
                 Error_Path: vm:/tmp/job.sh.e0\nOutput_Path: vm:/tmp/job.sh.o0\n"
            )
        );
        // `-j oe`: both lines name the output file.
        job.join_path = "oe".into();
        let joined = compose(&notice, &job, &MailSettings::default(), "vm").unwrap();
        assert!(joined
            .message
            .ends_with("Error_Path: vm:/tmp/job.sh.o0\nOutput_Path: vm:/tmp/job.sh.o0\n"));
    }

    #[test]
    fn mail_points_decide_unless_the_mail_is_forced() {
        let begin = Notice {
            point: Point::Begin,
            force: false,
            text: None,
        };
        let forced = Notice {
            point: Point::Delete,
            force: true,
            text: Some("Job deleted at request of root@vm".into()),
        };
        let settings = MailSettings::default();
        let mut job = running();
        // Torque's default `a` wants no begin mail.
        assert!(compose(&begin, &job, &settings, "vm").is_none());
        assert!(compose(&forced, &job, &settings, "vm").is_some());
        job.mail_points = "n".into();
        assert!(compose(&forced, &job, &settings, "vm").is_some());
        let no_force = MailSettings {
            no_mail_force: true,
            ..MailSettings::default()
        };
        assert!(compose(&forced, &job, &no_force, "vm").is_none());
        job.mail_points = "bd".into();
        assert!(compose(&begin, &job, &settings, "vm").is_some());
        assert!(compose(&forced, &job, &no_force, "vm").is_some());
        let never = MailSettings {
            domain: Some("NEVER".into()),
            ..MailSettings::default()
        };
        assert!(compose(&forced, &job, &never, "vm").is_none());
    }

    #[test]
    fn recipients_are_mail_users_else_the_owner_at_the_mail_domain_else_the_owner() {
        let forced = Notice {
            point: Point::Other,
            force: true,
            text: None,
        };
        let mut job = running();
        let domain = MailSettings {
            domain: Some("lab.example".into()),
            from: Some("pbs@lab.example".into()),
            ..MailSettings::default()
        };
        let mail = compose(&forced, &job, &domain, "vm").unwrap();
        assert_eq!(mail.recipients, vec!["u@lab.example".to_string()]);
        assert_eq!(mail.from, "pbs@lab.example");
        job.mail_users = Some("ann@lab.example,bob@lab.example".into());
        let mail = compose(&forced, &job, &domain, "vm").unwrap();
        assert_eq!(mail.recipients, ["ann@lab.example", "bob@lab.example"]);
        assert!(mail
            .message
            .starts_with("To: ann@lab.example,bob@lab.example\n"));
        // Never an option for sendmail (run as root), never a second header.
        for bad in [
            "-oQ/tmp",
            "ann@lab.example,-C/etc/x",
            "a b",
            "ann\nBcc: x",
            "a@x,\nFrom:ceo@corp",
            "a@x,\n\nbody",
            "a@x,,b@y",
        ] {
            job.mail_users = Some(bad.into());
            assert!(compose(&forced, &job, &domain, "vm").is_none(), "{bad}");
        }
    }

    #[test]
    fn formats_take_torques_escapes() {
        let job = running();
        let fields = Fields {
            job: &job,
            server_name: "vm",
            point: Point::Abort,
            text: "why",
        };
        assert_eq!(
            expand("%i %j on %h: %m|%r|%d|%k%l\\t\\\\ \\\"x\\' %x 100% \\q", &fields),
            "7.vm sweep on a1/0-1: Aborted by PBS Server |Aborted by PBS Server |why|\t\\ \"x' %x 100% \\q"
        );
        let settings = MailSettings {
            subject_fmt: Some("[lab] %j (%i)".into()),
            body_fmt: Some("%m\\n%d".into()),
            ..MailSettings::default()
        };
        let notice = Notice {
            point: Point::Abort,
            force: true,
            text: Some("details".into()),
        };
        let mail = compose(&notice, &job, &settings, "vm").unwrap();
        assert_eq!(
            mail.message,
            "To: u@vm\nSubject: [lab] sweep (7.vm)\nPrecedence: bulk\n\nAborted by PBS Server \ndetails"
        );
    }

    #[test]
    fn undelivered_output_is_a_forced_other_with_the_moms_words() {
        let notice = undelivered("7.vm", "a1", &["Unable to copy file A".into(), "B".into()]);
        assert_eq!((notice.point, notice.force), (Point::Other, true));
        assert_eq!(
            notice.text.as_deref(),
            Some("Post job file processing error; job 7.vm on host a1\nUnable to copy file A\nB")
        );
    }
}
