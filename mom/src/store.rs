//! Durable run records: one JSON file per run in `mom_priv/jobs/`.
//!
//! A result must survive a MOM crash or a server outage until the server has
//! committed it (AckRunEnded), so every change is written to a temporary file,
//! synced and renamed over the old one: a crash leaves the old or the new
//! record, never half of one.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::job::RunRecord;
use crate::layout::Layout;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
}

impl Store {
    pub fn new(layout: Layout) -> Store {
        Store { layout }
    }

    pub fn save(&self, record: &RunRecord) -> Result<(), StoreError> {
        let path = self.layout.record(record.run_id);
        let tmp = path.with_extension("json.tmp");
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err)?;
        f.write_all(&bytes).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        std::fs::rename(&tmp, &path).map_err(io_err)?;
        Ok(())
    }

    pub fn delete(&self, run_id: u64) -> Result<(), StoreError> {
        let path = self.layout.record(run_id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Every readable record; unreadable ones are logged and left in place
    /// for an administrator to look at.
    pub fn load_all(&self) -> Vec<RunRecord> {
        let dir = self.layout.jobs_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if stem.parse::<u64>().is_err() {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<RunRecord>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(r) => out.push(r),
                Err(e) => tracing::error!("ignoring run record {}: {e}", path.display()),
            }
        }
        out.sort_by_key(|r| r.run_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Phase, RunResult, RunSpec, Usage};

    #[test]
    fn round_trip_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        layout.ensure().expect("ensure");
        let store = Store::new(layout.clone());
        let spec = RunSpec {
            run_id: 9,
            job_id: "3.vm".into(),
            euser: "u".into(),
            ..Default::default()
        };
        let mut r = RunRecord {
            uid: 1000,
            ..RunRecord::starting(&spec, 1)
        };
        store.save(&r).expect("save");
        r.phase = Phase::Ended(RunResult {
            exit_status: 3,
            used: Usage::default(),
            end_time: 2,
            session_id: 5,
            message: String::new(),
            copy_errors: Vec::new(),
        });
        store.save(&r).expect("save");
        std::fs::write(layout.jobs_dir().join("10.json"), b"{broken").expect("write");
        assert_eq!(store.load_all(), vec![r]);
        store.delete(9).expect("delete");
        store.delete(9).expect("delete twice");
        assert!(store.load_all().is_empty());
    }
}
