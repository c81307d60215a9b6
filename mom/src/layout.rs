//! Where the MOM keeps things under its home directory (`--home`, `$PBS_HOME`):
//!
//! ```text
//! DIR/mom_priv/           0751  root-owned; the MOM's private area
//! DIR/mom_priv/config           Torque-style config ($max_load, $ideal_load, $source_login_batch,
//!                               $prologalarm, $tmpdir)
//! DIR/mom_priv/prologue, prologue.user, epilogue.user, epilogue
//!                               the site's scripts around each job, if any (see `pelog`)
//! DIR/mom_priv/jobs/      0711  run records RUNID.json, supervisor results RUNID.exit,
//!                               per-job spool dirs JOBID/
//! DIR/mom_priv/jobs/JOBID/ 0700 owned by the job's user: the script JOBID.SC,
//!                               the job's spooled stdout/stderr JOBID.OU, JOBID.ER
//! DIR/aux/                0755  node files: DIR/aux/JOBID (0600, owned by the job's user)
//! DIR/undelivered/        0711  output that could not be copied to its path:
//!                               JOBID.OU / JOBID.ER, 0600, owned by the job's user
//! ```
//!
//! `jobs/` is traversable but not listable so a user can reach their own
//! script (the shell runs as the user and reads it) without seeing others'.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    home: PathBuf,
}

impl Layout {
    pub fn new(home: impl Into<PathBuf>) -> Layout {
        Layout { home: home.into() }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn mom_priv(&self) -> PathBuf {
        self.home.join("mom_priv")
    }

    pub fn config(&self) -> PathBuf {
        self.mom_priv().join("config")
    }

    /// Torque's `pbs_environment` (see `pbs_environment`).
    pub fn pbs_environment(&self) -> PathBuf {
        self.home.join("pbs_environment")
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.mom_priv().join("jobs")
    }

    pub fn aux_dir(&self) -> PathBuf {
        self.home.join("aux")
    }

    /// The record of one run (see `store`).
    pub fn record(&self, run_id: u64) -> PathBuf {
        self.jobs_dir().join(format!("{run_id}.json"))
    }

    /// Where a run's supervisor writes how the job's shell ended.
    pub fn exit_file(&self, run_id: u64) -> PathBuf {
        self.jobs_dir().join(format!("{run_id}.exit"))
    }

    /// The per-job spool directory. `job_id` must pass [`safe_component`].
    pub fn spool_dir(&self, job_id: &str) -> PathBuf {
        self.jobs_dir().join(job_id)
    }

    pub fn script(&self, job_id: &str) -> PathBuf {
        self.spool_dir(job_id).join(format!("{job_id}.SC"))
    }

    /// Where output that could not be delivered is kept (Torque's `undelivered/`).
    pub fn undelivered_dir(&self) -> PathBuf {
        self.home.join("undelivered")
    }

    pub fn nodefile(&self, job_id: &str) -> PathBuf {
        self.aux_dir().join(job_id)
    }

    /// `$PBS_NODEFILE` as Torque spells it: `aux//JOBID` (double slash, reference 7.1).
    pub fn nodefile_env(&self, job_id: &str, suffix: &str) -> String {
        format!("{}/aux//{job_id}{suffix}", self.home.display())
    }

    /// Creates the directories with their modes (only the ones missing).
    pub fn ensure(&self) -> io::Result<()> {
        for (dir, mode) in [
            (self.home.clone(), 0o755),
            (self.mom_priv(), 0o751),
            (self.jobs_dir(), 0o711),
            (self.aux_dir(), 0o755),
            (self.undelivered_dir(), 0o711),
        ] {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(&dir)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
            }
        }
        Ok(())
    }
}

/// Whether a name from the server can be used as one path component (job ids
/// become file names; `../x` or `a/b` must never escape the MOM's dirs).
pub fn safe_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.ends_with(".json")
        && !name.ends_with(".exit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let l = Layout::new("/var/spool/capstan");
        assert_eq!(
            l.record(7),
            Path::new("/var/spool/capstan/mom_priv/jobs/7.json")
        );
        assert_eq!(
            l.script("45.vm"),
            Path::new("/var/spool/capstan/mom_priv/jobs/45.vm/45.vm.SC")
        );
        assert_eq!(
            l.nodefile("45.vm"),
            Path::new("/var/spool/capstan/aux/45.vm")
        );
        assert_eq!(l.nodefile_env("45.vm", ""), "/var/spool/capstan/aux//45.vm");
        assert_eq!(
            l.nodefile_env("45.vm", "gpu"),
            "/var/spool/capstan/aux//45.vmgpu"
        );
    }

    #[test]
    fn unsafe_names() {
        assert!(safe_component("12.vm"));
        assert!(safe_component("43[1].vm"));
        for bad in ["", ".", "..", "../x", "a/b", "x\0", "3.json"] {
            assert!(!safe_component(bad), "{bad:?}");
        }
    }
}
