//! Torque's accounting log: a line per job event in `server_priv/accounting/YYYYMMDD` (the
//! local date), `MM/DD/YYYY HH:MM:SS;TYPE;JOBID;key=value ...`, which sites' usage reports
//! (pbsacct and the scripts labs write) read.
//!
//! Records: `Q` (queued, also into another queue by qmove: `queue=`), `S` (started: who,
//! what, where, the times and `Resource_List.*`), `E` (ended: the start record's fields plus
//! `session`, `end`, `Exit_status` and `resources_used.*`), `R` (a run cut short and the job
//! requeued: the same fields as `E`), `D` (qdel: `requestor=`), `A` (aborted before it ran: a
//! dependency failed). Values are written with spaces and control characters replaced by
//! `_`, so no value (an account string, a resource) can add a field or a line.
//!
//! Why it is not the database: it is a report, appended without fsync as Torque's is; a lost
//! line after a crash loses no job. A failed write is logged and never fails the change that
//! caused it. The lines are built by pure functions ([`line`]) and tested without I/O.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use chrono::{Local, TimeZone};
use tracing::warn;

use crate::attrs::format_exec_host;
use crate::model::{Job, JobState, PendingAction};
use crate::resources::format_duration;

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// `Q`: accepted into its queue.
    Queued,
    /// `S`: a run started.
    Started,
    /// `E`: it ended (completed, deleted while running, killed).
    Ended,
    /// `R`: its run ended and it went back to the queue (qrerun, a lost node, a failed start).
    Rerun,
    /// `D`: `qdel` by `requestor` (`user@host`).
    Deleted { requestor: &'a str },
    /// `A`: ended without running, and not by a qdel (its dependency failed).
    Aborted,
}

impl Event<'_> {
    fn letter(self) -> char {
        match self {
            Event::Queued => 'Q',
            Event::Started => 'S',
            Event::Ended => 'E',
            Event::Rerun => 'R',
            Event::Deleted { .. } => 'D',
            Event::Aborted => 'A',
        }
    }
}

/// The accounting directory and the day's file, kept open between records.
#[derive(Debug)]
pub struct Accounting {
    dir: PathBuf,
    /// The file of `date` (`YYYYMMDD`), reopened when the local date changes.
    open: Option<(String, File)>,
}

impl Accounting {
    /// Records go to `dir` (created at the first record).
    pub fn new(dir: PathBuf) -> Accounting {
        Accounting { dir, open: None }
    }

    /// Appends the record of `event` for `job` at `now` (epoch seconds).
    pub fn record(&mut self, event: Event<'_>, job: &Job, server: &str, now: i64) {
        let Some(time) = Local.timestamp_opt(now, 0).single() else {
            return;
        };
        let date = time.format("%Y%m%d").to_string();
        let text = line(
            event,
            job,
            server,
            &time.format("%m/%d/%Y %H:%M:%S").to_string(),
        );
        if let Err(e) = self.append(&date, &text) {
            warn!(
                dir = %self.dir.display(),
                job = %job.id(server),
                "accounting record not written: {e}"
            );
            self.open = None;
        }
    }

    fn append(&mut self, date: &str, text: &str) -> std::io::Result<()> {
        if self.open.as_ref().is_none_or(|(d, _)| d != date) {
            // Root's only: the records name every user's jobs, which other users may not see
            // (`query_other_jobs` is False by default).
            // Also when they exist already (a Torque installation's, 0755 and 0644).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.dir.join(date))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            self.open = Some((date.to_string(), file));
        }
        let (_, file) = self.open.as_mut().expect("opened above");
        file.write_all(text.as_bytes())
    }
}

/// One record, newline included. `when` is `MM/DD/YYYY HH:MM:SS`.
pub fn line(event: Event<'_>, job: &Job, server: &str, when: &str) -> String {
    let fields = match event {
        Event::Queued | Event::Aborted => format!("queue={}", clean(&job.queue)),
        Event::Deleted { requestor } => format!("requestor={}", clean(requestor)),
        Event::Started => run_fields(job),
        Event::Ended | Event::Rerun => {
            let mut fields = run_fields(job);
            let slots: usize = job.exec_host.iter().map(|h| h.slots.len()).sum();
            fields.push_str(&format!(
                " session={} total_execution_slots={slots} unique_node_count={}",
                job.session_id.unwrap_or(0),
                job.exec_host.len()
            ));
            if let Some(end) = job.comp_time {
                fields.push_str(&format!(" end={end}"));
            }
            if let Some(status) = job.exit_status {
                fields.push_str(&format!(" Exit_status={status}"));
            }
            for (name, value) in resources_used(job) {
                fields.push_str(&format!(" resources_used.{name}={value}"));
            }
            fields
        }
    };
    format!("{when};{};{};{fields}\n", event.letter(), job.id(server))
}

/// A finished run's `resources_used` values in the order Torque's MOM reports them (its
/// obit), which the end record and the end mail list.
pub fn resources_used(job: &Job) -> [(&'static str, String); 5] {
    let mut used = job.resources_used.unwrap_or_default();
    // No report from the MOM (its node was lost): what the server saw elapse.
    if used.walltime_secs == 0 {
        if let (Some(start), Some(end)) = (job.start_time, job.comp_time) {
            used.walltime_secs = end.saturating_sub(start).max(0) as u64;
        }
    }
    [
        ("cput", format_duration(used.cput_secs)),
        ("energy_used", "0".to_string()),
        ("mem", format!("{}kb", used.mem_kb)),
        ("vmem", format!("{}kb", used.vmem_kb)),
        ("walltime", format_duration(used.walltime_secs)),
    ]
}

/// A value as a record may carry it: one field of one line.
fn clean(value: &str) -> std::borrow::Cow<'_, str> {
    let odd = |c: char| c.is_whitespace() || c.is_control();
    if value.chars().any(odd) {
        value
            .chars()
            .map(|c| if odd(c) { '_' } else { c })
            .collect::<String>()
            .into()
    } else {
        value.into()
    }
}

/// What a start record says, and an end record repeats.
fn run_fields(job: &Job) -> String {
    let mut fields = format!("user={} group={}", clean(&job.euser), clean(&job.egroup));
    if let Some(account) = &job.account {
        fields.push_str(&format!(" account={}", clean(account)));
    }
    fields.push_str(&format!(
        " jobname={} queue={} ctime={} qtime={}",
        clean(&job.name),
        clean(&job.queue),
        job.ctime,
        job.qtime
    ));
    if let Some(etime) = job.etime {
        fields.push_str(&format!(" etime={etime}"));
    }
    if let Some(start) = job.start_time {
        fields.push_str(&format!(" start={start}"));
    }
    fields.push_str(&format!(" owner={}", clean(&job.owner)));
    if !job.exec_host.is_empty() {
        let hosts = format_exec_host(&job.exec_host);
        fields.push_str(&format!(" exec_host={}", clean(&hosts)));
    }
    for (name, value) in &job.resources {
        fields.push_str(&format!(" Resource_List.{}={}", clean(name), clean(value)));
    }
    fields
}

/// The records a job's new version calls for, compared with the version it replaces.
/// `requestor` is set when the change is a qdel's (`user@host`): only its handler knows who
/// asked. A change applied twice calls for nothing the second time.
pub fn transitions<'r>(old: Option<&Job>, new: &Job, requestor: Option<&'r str>) -> Vec<Event<'r>> {
    let Some(old) = old else {
        return vec![Event::Queued];
    };
    let running = |j: &Job| j.state == JobState::Running;
    let deleting = |j: &Job| j.pending == Some(PendingAction::Delete);
    let mut events = Vec::new();
    if old.queue != new.queue {
        events.push(Event::Queued);
    }
    // qdel of a running job: recorded when asked, before its E (at once when the run was
    // ended without waiting for its MOM: a purge, or a MOM out of reach).
    if let Some(requestor) = requestor {
        let asked = deleting(new) || new.state == JobState::Completed;
        if running(old) && !deleting(old) && asked {
            events.push(Event::Deleted { requestor });
        }
    }
    match (running(old), new.state) {
        (false, JobState::Running) => events.push(Event::Started),
        (true, JobState::Completed) => events.push(Event::Ended),
        (true, JobState::Queued | JobState::Held | JobState::Waiting) => events.push(Event::Rerun),
        (false, JobState::Completed) if old.state != JobState::Completed => {
            events.push(match requestor {
                Some(requestor) => Event::Deleted { requestor },
                None => Event::Aborted,
            })
        }
        _ => {}
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostSlots, ResourcesUsed};

    fn ran() -> Job {
        let mut job = crate::store::tests::sample_job(45);
        job.name = "pelog".into();
        job.euser = "testuser".into();
        job.egroup = "users".into();
        job.owner = "testuser@vm".into();
        job.queue = "batch".into();
        job.ctime = 100;
        job.qtime = 101;
        job.etime = Some(102);
        job.start_time = Some(103);
        job.exec_host = vec![
            HostSlots {
                node: "n1".into(),
                slots: vec![0, 1],
            },
            HostSlots {
                node: "n2".into(),
                slots: vec![0],
            },
        ];
        job.resources = vec![
            ("nodes".into(), "2".into()),
            ("walltime".into(), "01:00:00".into()),
        ];
        job
    }

    #[test]
    fn records_read_as_torques() {
        let when = "11/21/2026 16:08:23";
        let mut job = ran();
        assert_eq!(
            line(Event::Queued, &job, "vm", when),
            "11/21/2026 16:08:23;Q;45.vm;queue=batch\n"
        );
        let start = "user=testuser group=users jobname=pelog queue=batch ctime=100 qtime=101 \
                     etime=102 start=103 owner=testuser@vm exec_host=n1/0-1+n2/0 \
                     Resource_List.nodes=2 Resource_List.walltime=01:00:00";
        assert_eq!(
            line(Event::Started, &job, "vm", when),
            format!("{when};S;45.vm;{start}\n")
        );
        job.state = JobState::Completed;
        job.session_id = Some(4242);
        job.comp_time = Some(170);
        job.exit_status = Some(271);
        job.resources_used = Some(ResourcesUsed {
            cput_secs: 61,
            mem_kb: 3396,
            vmem_kb: 36052,
            walltime_secs: 67,
        });
        assert_eq!(
            line(Event::Ended, &job, "vm", when),
            format!(
                "{when};E;45.vm;{start} session=4242 total_execution_slots=3 \
                 unique_node_count=2 end=170 Exit_status=271 resources_used.cput=00:01:01 \
                 resources_used.energy_used=0 resources_used.mem=3396kb \
                 resources_used.vmem=36052kb resources_used.walltime=00:01:07\n"
            )
        );
        assert_eq!(
            line(
                Event::Deleted {
                    requestor: "root@vm"
                },
                &job,
                "vm",
                when
            ),
            format!("{when};D;45.vm;requestor=root@vm\n")
        );
        // No value adds a field or a line, whatever the user put in it.
        job.account = Some("lab\n11/21/2026 16:08:23;E;1.vm;user=bob Exit_status=0".into());
        let forged = line(Event::Started, &job, "vm", when);
        assert_eq!(forged.lines().count(), 1, "{forged}");
        let field = "account=lab_11/21/2026_16:08:23;E;1.vm;user=bob_Exit_status=0";
        assert!(forged.split(' ').any(|f| f == field), "{forged}");
    }

    #[test]
    fn a_new_version_calls_for_the_records_of_its_change() {
        let mut queued = ran();
        queued.state = JobState::Queued;
        let mut running = ran();
        running.state = JobState::Running;
        let mut done = ran();
        done.state = JobState::Completed;
        let change = |old: Option<&Job>, new: &Job| transitions(old, new, None);
        let qdel = |old: &Job, new: &Job| transitions(Some(old), new, Some("root@vm"));
        let deleted = Event::Deleted {
            requestor: "root@vm",
        };
        assert_eq!(change(None, &queued), [Event::Queued]);
        assert_eq!(change(Some(&queued), &running), [Event::Started]);
        assert_eq!(change(Some(&running), &running), []);
        assert_eq!(change(Some(&running), &done), [Event::Ended]);
        // Requeued (qrerun, a lost node): the run is over, the job is not.
        assert_eq!(change(Some(&running), &queued), [Event::Rerun]);
        // Ended before it ran: by qdel, or because its dependency failed.
        assert_eq!(qdel(&queued, &done), [deleted]);
        assert_eq!(change(Some(&queued), &done), [Event::Aborted]);
        assert_eq!(change(Some(&done), &done), []);
        // qdel of a running job: D now, E when the run ends; a second qdel adds nothing.
        let mut deleting = running.clone();
        deleting.pending = Some(PendingAction::Delete);
        assert_eq!(qdel(&running, &deleting), [deleted]);
        assert_eq!(qdel(&deleting, &deleting), []);
        assert_eq!(change(Some(&deleting), &done), [Event::Ended]);
        // Ended at once by the qdel (a purge, or its MOM out of reach): D, then E.
        assert_eq!(qdel(&running, &done), [deleted, Event::Ended]);
        assert_eq!(qdel(&deleting, &done), [Event::Ended]);
        // qmove: queued again, into its new queue.
        let mut moved = queued.clone();
        moved.queue = "lab".into();
        assert_eq!(change(Some(&queued), &moved), [Event::Queued]);
    }

    #[test]
    fn records_append_to_the_days_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut accounting = Accounting::new(dir.path().join("accounting"));
        let job = ran();
        let now = 1_700_000_000;
        accounting.record(Event::Queued, &job, "vm", now);
        accounting.record(Event::Started, &job, "vm", now);
        let date = Local
            .timestamp_opt(now, 0)
            .single()
            .unwrap()
            .format("%Y%m%d")
            .to_string();
        let text = std::fs::read_to_string(dir.path().join("accounting").join(&date)).unwrap();
        let kinds: Vec<&str> = text.lines().map(|l| l.split(';').nth(1).unwrap()).collect();
        assert_eq!(kinds, ["Q", "S"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join("accounting")), 0o700);
        assert_eq!(mode(dir.path().join("accounting").join(&date)), 0o600);
    }
}
