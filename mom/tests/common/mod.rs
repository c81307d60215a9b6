//! What the MOM's integration tests share: a temporary MOM home and work
//! directory, a run spec for the current user, and a restarted MOM adopting a
//! run an earlier one left running.

#![allow(dead_code)] // each test crate uses its own part

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_mom::job::{Event, RunRecord, RunSpec};
use capstan_mom::layout::Layout;
use capstan_mom::runner::Runner;
use tokio::sync::mpsc;

/// Whether `done` came true within `limit`, checked every 50 ms (for what no
/// event announces, such as another process's end).
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The runner's next event, within 20 s (a run's start or end is announced,
/// so no polling).
pub async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("event in time")
        .expect("channel open")
}

/// Reaps `child` off the runtime (its wait blocks); `None` if it has not
/// exited within `limit`.
pub async fn reap(
    mut child: std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let waited = tokio::task::spawn_blocking(move || child.wait());
    match tokio::time::timeout(limit, waited).await {
        Ok(joined) => Some(joined.expect("wait task").expect("wait")),
        Err(_) => None,
    }
}

/// A MOM home (`layout`) and a work directory for the jobs, removed on drop.
pub struct Bed {
    pub tmp: tempfile::TempDir,
    pub layout: Layout,
    pub work: PathBuf,
}

pub fn bed() -> Bed {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(tmp.path().join("home"));
    layout.ensure().expect("layout");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    Bed { tmp, layout, work }
}

/// The supervisor program the MOM finds beside itself, as cargo built it for these tests.
pub fn supervisor_exe() -> PathBuf {
    env!("CARGO_BIN_EXE_capstan_supervisor").into()
}

/// pbs_mom, which is its own supervisor when `capstan_supervisor` is missing.
pub fn mom_exe() -> PathBuf {
    env!("CARGO_BIN_EXE_pbs_mom").into()
}

pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::current())
        .ok()
        .flatten()
        .expect("current user")
        .name
}

impl Bed {
    /// Run `run_id` of job `SEQ.vm` (`job.sh`), as the current user, output
    /// to `job.sh.oSEQ` / `.eSEQ` in the work directory.
    pub fn spec(&self, run_id: u64, seq: &str, script: &str) -> RunSpec {
        RunSpec {
            run_id,
            job_id: format!("{seq}.vm"),
            job_name: "job.sh".into(),
            job_seq: seq.into(),
            euser: current_user(),
            script: script.as_bytes().to_vec(),
            env: vec![("PBS_JOBID".into(), format!("{seq}.vm"))],
            nodefile_hosts: vec!["node1".into(), "node1".into()],
            output_path: self
                .work
                .join(format!("job.sh.o{seq}"))
                .display()
                .to_string(),
            error_path: self
                .work
                .join(format!("job.sh.e{seq}"))
                .display()
                .to_string(),
            join_path: "n".into(),
            keep_files: "n".into(),
            shell: "/bin/sh".into(),
            init_work_dir: self.work.display().to_string(),
            allow_root: true,
            ..Default::default()
        }
    }

    /// Where run `SEQ`'s stdout is delivered.
    pub fn out(&self, seq: &str) -> PathBuf {
        self.work.join(format!("job.sh.o{seq}"))
    }

    /// A MOM restarted over this home: `record` is saved as an earlier MOM
    /// left it, then a new runner recovers (adopts) it. The runner and its events.
    pub async fn adopt(&self, record: &RunRecord) -> (Arc<Runner>, mpsc::UnboundedReceiver<Event>) {
        capstan_mom::store::Store::new(self.layout.clone())
            .save(record)
            .expect("save");
        self.restart().await
    }

    /// A MOM restarted over this home: a new runner recovers what the records say.
    pub async fn restart(&self) -> (Arc<Runner>, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mom = Runner::new(self.layout.clone(), "node1".into(), tx, supervisor_exe());
        let m = Arc::clone(&mom);
        tokio::task::spawn_blocking(move || m.recover())
            .await
            .expect("recover");
        (mom, rx)
    }
}
