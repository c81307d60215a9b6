//! Torque's accounting log: a line per job event in `server_priv/accounting/YYYYMMDD` (the
//! local date), `MM/DD/YYYY HH:MM:SS;TYPE;JOBID;key=value ...`, which sites' usage reports
//! (pbsacct and the scripts labs write) read.
//!
//! Records: `Q` (queued: `queue=`), `S` (started: who, what, where, the times and
//! `Resource_List.*`), `E` (ended: the start record's fields plus `session`, `end`,
//! `Exit_status` and `resources_used.*`), `D` (deleted: `requestor=`).
//!
//! Why it is not the database: it is a report, appended without fsync as Torque's is; a lost
//! line after a crash loses no job. A failed write is logged and never fails the change that
//! caused it. The lines are built by pure functions ([`line`]) and tested without I/O.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use chrono::{Local, TimeZone};
use tracing::warn;

use crate::attrs::format_exec_host;
use crate::model::{Job, JobState};
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
    /// `D`: `qdel` by `requestor` (`user@host`).
    Deleted { requestor: &'a str },
}

impl Event<'_> {
    fn letter(self) -> char {
        match self {
            Event::Queued => 'Q',
            Event::Started => 'S',
            Event::Ended => 'E',
            Event::Deleted { .. } => 'D',
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
                job = job.seq,
                "accounting record not written: {e}"
            );
            self.open = None;
        }
    }

    fn append(&mut self, date: &str, text: &str) -> std::io::Result<()> {
        if self.open.as_ref().is_none_or(|(d, _)| d != date) {
            // Root's only: the records name every user's jobs, which other users may not see
            // (`query_other_jobs` is False by default).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.dir.join(date))?;
            self.open = Some((date.to_string(), file));
        }
        let (_, file) = self.open.as_mut().expect("opened above");
        file.write_all(text.as_bytes())
    }
}

/// One record, newline included. `when` is `MM/DD/YYYY HH:MM:SS`.
pub fn line(event: Event<'_>, job: &Job, server: &str, when: &str) -> String {
    let fields = match event {
        Event::Queued => format!("queue={}", job.queue),
        Event::Deleted { requestor } => format!("requestor={requestor}"),
        Event::Started => run_fields(job),
        Event::Ended => {
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
            let used = job.resources_used.unwrap_or_default();
            fields.push_str(&format!(
                " resources_used.cput={} resources_used.energy_used=0 resources_used.mem={}kb \
                 resources_used.vmem={}kb resources_used.walltime={}",
                format_duration(used.cput_secs),
                used.mem_kb,
                used.vmem_kb,
                format_duration(used.walltime_secs)
            ));
            fields
        }
    };
    format!("{when};{};{};{fields}\n", event.letter(), job.id(server))
}

/// What a start record says, and an end record repeats.
fn run_fields(job: &Job) -> String {
    let mut fields = format!("user={} group={}", job.euser, job.egroup);
    if let Some(account) = &job.account {
        fields.push_str(&format!(" account={account}"));
    }
    fields.push_str(&format!(
        " jobname={} queue={} ctime={} qtime={}",
        job.name, job.queue, job.ctime, job.qtime
    ));
    if let Some(etime) = job.etime {
        fields.push_str(&format!(" etime={etime}"));
    }
    if let Some(start) = job.start_time {
        fields.push_str(&format!(" start={start}"));
    }
    fields.push_str(&format!(" owner={}", job.owner));
    if !job.exec_host.is_empty() {
        fields.push_str(&format!(" exec_host={}", format_exec_host(&job.exec_host)));
    }
    for (name, value) in &job.resources {
        fields.push_str(&format!(" Resource_List.{name}={value}"));
    }
    fields
}

/// The records a job's new version calls for, compared with the version it replaces: `Q` for
/// a new job, `S` for a start, `E` for the end of a run. (`D` is written where qdel is
/// handled: only there is the requestor known.)
pub fn transitions(old: Option<&Job>, new: &Job) -> Vec<Event<'static>> {
    let was_running = old.is_some_and(|o| o.state == JobState::Running);
    let mut events = Vec::new();
    if old.is_none() {
        events.push(Event::Queued);
    }
    if new.state == JobState::Running && !was_running {
        events.push(Event::Started);
    }
    if was_running && new.state == JobState::Completed {
        events.push(Event::Ended);
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
    }

    #[test]
    fn a_new_version_calls_for_the_records_of_its_change() {
        let mut queued = ran();
        queued.state = JobState::Queued;
        let mut running = ran();
        running.state = JobState::Running;
        let mut done = ran();
        done.state = JobState::Completed;
        assert_eq!(transitions(None, &queued), [Event::Queued]);
        assert_eq!(transitions(Some(&queued), &running), [Event::Started]);
        assert_eq!(transitions(Some(&running), &running), []);
        assert_eq!(transitions(Some(&running), &done), [Event::Ended]);
        // Deleted before it ever ran: the D record says so, there is no run to end.
        assert_eq!(transitions(Some(&queued), &done), []);
        // Requeued (qrerun, a lost node): the run is over, the job is not.
        assert_eq!(transitions(Some(&running), &queued), []);
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
