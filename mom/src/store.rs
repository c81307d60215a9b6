//! Run records: one file per run in `mom_priv/jobs/`, `RUNID.json`.
//!
//! A result must survive a MOM crash or a server outage until the server has
//! committed it (AckRunEnded). The file holds the record's successive
//! versions, one JSON line each, appended; the current version is the last
//! line that parses. A crash mid-append leaves a torn last line, which loading
//! skips (the next append starts on a line of its own), so the previous
//! version stands. That is the crash guarantee of writing a temporary file and
//! renaming it over the old one, without creating and deleting an inode for
//! every change of every job, which on a busy node was a measurable share of
//! the MOM's work.
//!
//! Appends are not synced. What a record protects against is the MOM process
//! dying (a crash, `kill -9`, an upgrade) while its jobs live on, and the
//! kernel keeps every completed write through that. A power loss or a kernel
//! crash kills the jobs too: a record then matters only if it holds a result
//! the server has not committed, so [`Store::sync_record`] makes exactly
//! those durable, once they have waited for the server a moment (see
//! `Runner::sync_results`); the other versions, three or four per job, are
//! not worth a disk flush each. A record written before a reboot may therefore
//! have lost its last versions, or all of them; each record names the boot it
//! was written in, so the next MOM does not read such a record as the whole
//! story (see `Runner::recover`), and an unreadable one last written before
//! this boot is removed. Where the kernel does not give a boot id, every
//! record version is synced as before ([`Store::syncing_each_version`]); the
//! supervisor's exit files are not synced either way (see `supervisor`).
//!
//! The runner writes each run's versions in order (`Runner::save_latest`). MOMs
//! before that could append a late signal's stale version after the end, so
//! loading still takes a version that says Ended over any after it: an ended
//! run never runs again.

use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    #[error("{path}: no complete run record in the file")]
    Unreadable { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
    /// Sync every version as it is appended (see [`Store::syncing_each_version`]).
    sync_each: bool,
    /// When this boot began, if known (see [`Store::booted_at`]).
    booted_at: Option<SystemTime>,
}

impl Store {
    pub fn new(layout: Layout) -> Store {
        Store {
            layout,
            sync_each: false,
            booted_at: None,
        }
    }

    /// Every version synced as it is appended, and a new file's name with it: for a node
    /// whose records cannot say which boot they are from.
    pub fn syncing_each_version(self) -> Store {
        Store {
            sync_each: true,
            ..self
        }
    }

    /// This boot's start: an unreadable record last written before it is what a power loss
    /// left of an unsynced one, and [`Store::load_all`] removes it.
    pub fn booted_at(self, booted_at: Option<SystemTime>) -> Store {
        Store { booted_at, ..self }
    }

    /// Appends `record` as the run's current version (not synced, unless every version is:
    /// see the module comment).
    pub fn save(&self, record: &RunRecord) -> Result<(), StoreError> {
        let path = self.layout.record(record.run_id);
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec(record).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        let len = f.metadata().map_err(io_err)?.len();
        let mut line = Vec::with_capacity(json.len() + 2);
        if len > 0 && !ends_with_newline(&f, len).map_err(io_err)? {
            // What a crash cut short (or a record written whole by an older MOM)
            // must not swallow this version.
            line.push(b'\n');
        }
        line.extend_from_slice(&json);
        line.push(b'\n');
        (&f).write_all(&line).map_err(io_err)?;
        if self.sync_each {
            f.sync_data().map_err(io_err)?;
            if len == 0 {
                self.sync_dir()?;
            }
        }
        Ok(())
    }

    /// Makes a run's record durable (its data; its name needs [`Store::sync_dir`]). A record
    /// that is gone (acknowledged and deleted meanwhile) needs nothing.
    pub fn sync_record(&self, run_id: u64) -> Result<(), StoreError> {
        let path = self.layout.record(run_id);
        match std::fs::File::open(&path).and_then(|f| f.sync_data()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Makes the records' names durable (the directory that holds them).
    pub fn sync_dir(&self) -> Result<(), StoreError> {
        let dir = self.layout.jobs_dir();
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io { path: dir, source })
    }

    pub fn delete(&self, run_id: u64) -> Result<(), StoreError> {
        let path = self.layout.record(run_id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Every readable record. An unreadable one is logged and left in place for an
    /// administrator to look at, unless it was last written before this boot: then it is
    /// what a power loss left of an unsynced record, and is removed.
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
            if is_unfinished_write(name) {
                // A MOM from before records were appended wrote each version here and renamed
                // it into place; one killed between the two left this behind. It never became
                // the record (`STEM.json` still holds the version before), so it can go.
                let file = path.display();
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!(%file, "removed an unfinished run record write"),
                    Err(e) => {
                        tracing::warn!(%file, "cannot remove an unfinished run record write: {e}")
                    }
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if stem.parse::<u64>().is_err() {
                continue;
            }
            match load(&path) {
                Ok(r) => out.push(r),
                Err(StoreError::Unreadable { .. }) if self.written_before_this_boot(&path) => {
                    let file = path.display();
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::warn!(%file, "removed an unreadable run record from before this boot")
                        }
                        Err(e) => {
                            tracing::error!(%file, "cannot remove an unreadable run record from before this boot: {e}")
                        }
                    }
                }
                Err(e) => tracing::error!("ignoring run record: {e}"),
            }
        }
        out.sort_by_key(|r| r.run_id);
        out
    }
}

impl Store {
    fn written_before_this_boot(&self, path: &Path) -> bool {
        let modified = std::fs::metadata(path).and_then(|m| m.modified());
        matches!((modified, self.booted_at), (Ok(m), Some(b)) if m < b)
    }
}

/// `RUNID.json.tmp`: what older MOMs wrote before renaming it to `RUNID.json`.
fn is_unfinished_write(name: &str) -> bool {
    name.strip_suffix(".json.tmp")
        .is_some_and(|stem| stem.parse::<u64>().is_ok())
}

fn ends_with_newline(f: &std::fs::File, len: u64) -> io::Result<bool> {
    let mut last = [0u8];
    f.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// The current version in one record file: the last line that parses and says
/// Ended, else the last line that parses (a torn last line is an append a
/// crash cut short), else the whole file when it is one pretty-printed record
/// (written by MOMs before records were appended).
fn load(path: &Path) -> Result<RunRecord, StoreError> {
    let bytes = std::fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut versions = bytes
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<RunRecord>(line).ok());
    let latest = versions.next();
    let ended = match &latest {
        Some(r) if !r.is_ended() => versions.find(RunRecord::is_ended),
        _ => None,
    };
    ended
        .or(latest)
        .or_else(|| serde_json::from_slice::<RunRecord>(&bytes).ok())
        .ok_or_else(|| StoreError::Unreadable {
            path: path.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Phase, RunResult, Usage};

    /// A store in a fresh MOM home (the directory lives as long as the first value).
    fn store() -> (tempfile::TempDir, Layout, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        layout.ensure().expect("ensure");
        let store = Store::new(layout.clone());
        (dir, layout, store)
    }

    fn started(run_id: u64) -> RunRecord {
        RunRecord::for_test(run_id)
    }

    fn ended(r: &RunRecord, exit_status: i32) -> RunRecord {
        RunRecord {
            phase: Phase::Ended(RunResult {
                exit_status,
                used: Usage::default(),
                end_time: 2,
                session_id: 5,
                message: String::new(),
                copy_errors: Vec::new(),
            }),
            ..r.clone()
        }
    }

    #[test]
    fn round_trip_and_delete() {
        let (_dir, layout, store) = store();
        let r = started(9);
        store.save(&r).expect("save");
        let r = ended(&r, 3);
        store.save(&r).expect("save");
        std::fs::write(layout.jobs_dir().join("10.json"), b"{broken").expect("write");
        assert_eq!(store.load_all(), vec![r]);
        store.delete(9).expect("delete");
        store.delete(9).expect("delete twice");
        assert!(store.load_all().is_empty());
    }

    #[test]
    fn an_unfinished_write_of_an_older_mom_is_removed_and_the_record_kept() {
        let (_dir, layout, store) = store();
        let r = started(6);
        store.save(&r).expect("save");
        let leftover = layout.jobs_dir().join("6.json.tmp");
        std::fs::write(&leftover, b"{\"half\": ").expect("write");
        let other = layout.jobs_dir().join("notes.json.tmp");
        std::fs::write(&other, b"not ours").expect("write");
        assert_eq!(store.load_all(), vec![r]);
        assert!(!leftover.exists());
        assert!(other.exists(), "only run-record leftovers are removed");
    }

    #[test]
    fn a_torn_last_append_leaves_the_version_before_it() {
        let (_dir, layout, store) = store();
        let mut r = started(4);
        store.save(&r).expect("save");
        r.phase = Phase::Running;
        r.session_id = 77;
        store.save(&r).expect("save");
        let path = layout.record(4);
        let whole = std::fs::read(&path).expect("read");
        assert_eq!(whole.iter().filter(|b| **b == b'\n').count(), 2);
        // A crash cut the third append short.
        let mut torn = whole.clone();
        torn.extend_from_slice(br#"{"run_id":4,"job_id":"4.v"#);
        std::fs::write(&path, &torn).expect("write");
        assert_eq!(store.load_all(), vec![r.clone()]);
        // The next version starts on a line of its own, so it is read.
        r.session_id = 78;
        store.save(&r).expect("save after a torn append");
        assert_eq!(store.load_all(), vec![r.clone()]);
        // Nothing complete at all: reported and left alone.
        std::fs::write(&path, &whole[..whole.len() / 4]).expect("write");
        assert!(store.load_all().is_empty());
        assert!(path.exists());
    }

    #[test]
    fn an_ended_version_is_the_record_whatever_follows_it() {
        let (_dir, _layout, store) = store();
        let mut r = started(6);
        r.phase = Phase::Running;
        store.save(&r).expect("save");
        let ended = ended(&r, 0);
        store.save(&ended).expect("save");
        // A signal's bookkeeping that lost the race with the end.
        r.interventions.deleted = true;
        store.save(&r).expect("save");
        assert_eq!(store.load_all(), vec![ended]);
    }

    #[test]
    fn reads_a_record_an_older_mom_wrote_whole() {
        let (_dir, layout, store) = store();
        let mut r = started(5);
        let pretty = serde_json::to_vec_pretty(&r).expect("json");
        std::fs::write(layout.record(5), pretty).expect("write");
        assert_eq!(store.load_all(), vec![r.clone()]);
        // A new MOM's first version, appended after it, is read too.
        r.phase = Phase::Running;
        store.save(&r).expect("save");
        assert_eq!(store.load_all(), vec![r]);
    }

    #[test]
    fn sync_takes_records_present_and_gone() {
        let (_dir, _layout, store) = store();
        store.save(&started(1)).expect("save");
        store.sync_record(1).expect("sync");
        store
            .sync_record(2)
            .expect("a record acknowledged and deleted meanwhile is no error");
        store.sync_dir().expect("sync the directory");
        assert_eq!(
            store.load_all(),
            vec![started(1)],
            "syncing changes nothing"
        );
        let each = store.clone().syncing_each_version();
        each.save(&started(3)).expect("a synced save");
        assert_eq!(each.load_all(), vec![started(1), started(3)]);
    }

    #[test]
    fn an_unreadable_record_from_before_this_boot_is_removed_one_from_this_boot_kept() {
        let (_dir, layout, store) = store();
        // What a power loss leaves of an unsynced record: a name, no complete line.
        std::fs::write(layout.record(1), b"").expect("write");
        std::fs::write(layout.record(2), b"\0\0\0\0").expect("write");
        let written = std::fs::metadata(layout.record(2))
            .and_then(|m| m.modified())
            .expect("mtime");
        let minute = std::time::Duration::from_secs(60);
        let this_boot = store.clone().booted_at(Some(written - minute));
        assert!(this_boot.load_all().is_empty());
        assert!(
            layout.record(1).exists() && layout.record(2).exists(),
            "kept"
        );
        let after_reboot = store.booted_at(Some(written + minute));
        assert!(after_reboot.load_all().is_empty());
        assert!(
            !layout.record(1).exists() && !layout.record(2).exists(),
            "removed"
        );
    }
}
