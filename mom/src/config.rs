//! `DIR/mom_priv/config`: the subset of Torque's MOM configuration Capstan uses.
//!
//! Torque's file has one `$keyword value` per line (reference 11.2). The load
//! thresholds, `$source_login_batch`, `$prologalarm`, `$tmpdir`, the limit switches
//! (`$igncput`, `$ignmem`, `$ignvmem`, `$ignwalltime`), `$check_poll_time` and the node
//! health check (`$node_check_script`, `$node_check_interval`, `$status_update_time`)
//! change what this MOM does; every other keyword is accepted and ignored so an existing Torque config
//! file can be dropped in unchanged.

use std::path::Path;

use crate::health::{self, NodeCheck};

/// What the config file sets: the load thresholds that turn the node `busy`
/// (Torque reference 9.3) and how batch jobs' shells start.
#[derive(Debug, Clone, PartialEq)]
pub struct MomConfig {
    /// Load at or above which the node reports `busy`.
    pub max_load: Option<f64>,
    /// Load below which a `busy` node reports `free` again.
    pub ideal_load: Option<f64>,
    /// Torque's `$source_login_batch`: start a batch job's shell as a login
    /// shell (`-bash`), which reads `/etc/profile` and the user's profile. On
    /// by default, as in Torque; sites that run many short jobs turn it off,
    /// since on a typical distribution the profile costs more than the job.
    pub source_login_batch: bool,
    /// Torque's `$prologalarm`: how long a prologue or epilogue may run before it
    /// is killed (seconds, > 0).
    pub prolog_alarm_secs: u64,
    /// Torque's `$tmpdir`: the directory in which each job gets its own `TMPDIR`.
    pub tmpdir: Option<std::path::PathBuf>,
    /// Torque's `$igncput`, `$ignmem`, `$ignvmem`, `$ignwalltime`: limits this MOM does
    /// not enforce (see `limits`; all enforced by default).
    pub ignored: crate::limits::Ignored,
    /// Torque's `$check_poll_time`: how often the MOM checks its jobs' `-l` limits on its own
    /// (seconds, > 0; besides each status report).
    pub check_poll_secs: u64,
    /// Torque's `$node_check_script` and `$node_check_interval` (see `health`).
    pub node_check: Option<NodeCheck>,
    /// Torque's `$status_update_time` (seconds, > 0): the period the health check's
    /// interval counts in. Capstan's MOMs report status at the server's pace; this keeps a
    /// Torque health check as often as it ran under Torque.
    pub status_update_secs: u64,
}

/// Torque's `$status_update_time` default.
pub const DEFAULT_STATUS_UPDATE_SECS: u64 = 45;

/// Torque's `PBS_PROLOG_TIME`, the `$prologalarm` default.
pub const DEFAULT_PROLOG_ALARM_SECS: u64 = 300;

/// The `$check_poll_time` default: Torque's is 45 s; a limit this MOM can see exceeded it
/// enforces sooner.
pub const DEFAULT_CHECK_POLL_SECS: u64 = 5;

impl Default for MomConfig {
    fn default() -> MomConfig {
        MomConfig {
            max_load: None,
            ideal_load: None,
            source_login_batch: true,
            prolog_alarm_secs: DEFAULT_PROLOG_ALARM_SECS,
            tmpdir: None,
            ignored: Default::default(),
            check_poll_secs: DEFAULT_CHECK_POLL_SECS,
            node_check: None,
            status_update_secs: DEFAULT_STATUS_UPDATE_SECS,
        }
    }
}

/// Torque's `setbool`: the first letter decides (`t`/`y`/`1` on, `f`/`n`/`0`
/// off, any case), and `on`/`off` spelled out; anything else is not a boolean.
fn parse_bool(value: &str) -> Option<bool> {
    match value.bytes().next()?.to_ascii_lowercase() {
        b't' | b'y' | b'1' => Some(true),
        b'f' | b'n' | b'0' => Some(false),
        b'o' if value.eq_ignore_ascii_case("on") => Some(true),
        b'o' if value.eq_ignore_ascii_case("off") => Some(false),
        _ => None,
    }
}

impl MomConfig {
    /// Parses the config text. Bad values are skipped and returned as warnings
    /// (a typo in one line must not stop the MOM).
    pub fn parse(text: &str) -> (MomConfig, Vec<String>) {
        let mut cfg = MomConfig::default();
        let mut warnings = Vec::new();
        let mut script_path: Option<std::path::PathBuf> = None;
        let mut interval = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or("");
            let value = words.next();
            if key == "$source_login_batch" {
                match value.and_then(parse_bool) {
                    Some(on) => cfg.source_login_batch = on,
                    None => warnings.push(format!("line {}: bad value for {key}: {raw:?}", n + 1)),
                }
                continue;
            }
            let switch = match key {
                "$igncput" => Some(&mut cfg.ignored.cput),
                "$ignmem" => Some(&mut cfg.ignored.mem),
                "$ignvmem" => Some(&mut cfg.ignored.vmem),
                "$ignwalltime" => Some(&mut cfg.ignored.walltime),
                _ => None,
            };
            if let Some(switch) = switch {
                match value.and_then(parse_bool) {
                    Some(on) => *switch = on,
                    None => warnings.push(format!("line {}: bad value for {key}: {raw:?}", n + 1)),
                }
                continue;
            }
            if key == "$tmpdir" {
                match value {
                    Some(dir) if dir.starts_with('/') => cfg.tmpdir = Some(dir.into()),
                    _ => warnings.push(format!(
                        "line {}: {key} needs an absolute directory: {raw:?}",
                        n + 1
                    )),
                }
                continue;
            }
            if key == "$node_check_script" {
                match value {
                    Some(script) if script.starts_with('/') => script_path = Some(script.into()),
                    _ => warnings.push(format!(
                        "line {}: {key} needs an absolute path: {raw:?}",
                        n + 1
                    )),
                }
                continue;
            }
            if key == "$node_check_interval" {
                match value.and_then(health::parse_interval) {
                    Some(parsed) => interval = Some(parsed),
                    None => warnings.push(format!("line {}: bad value for {key}: {raw:?}", n + 1)),
                }
                continue;
            }
            let seconds = match key {
                "$prologalarm" => Some(&mut cfg.prolog_alarm_secs),
                "$check_poll_time" => Some(&mut cfg.check_poll_secs),
                "$status_update_time" => Some(&mut cfg.status_update_secs),
                _ => None,
            };
            if let Some(slot) = seconds {
                // Torque takes only a positive number of seconds.
                match value.map(str::parse::<u64>) {
                    Some(Ok(secs)) if secs > 0 => *slot = secs,
                    _ => warnings.push(format!("line {}: bad value for {key}: {raw:?}", n + 1)),
                }
                continue;
            }
            let slot = match key {
                "$max_load" => &mut cfg.max_load,
                "$ideal_load" => &mut cfg.ideal_load,
                _ => continue,
            };
            match value.map(str::parse::<f64>) {
                Some(Ok(v)) if v.is_finite() && v >= 0.0 => *slot = Some(v),
                _ => warnings.push(format!("line {}: bad value for {key}: {raw:?}", n + 1)),
            }
        }
        // The interval alone does nothing, as in Torque.
        cfg.node_check = script_path.map(|script| {
            let (every, on_job_start, on_job_end) = interval.unwrap_or((1, false, false));
            NodeCheck {
                script,
                every,
                on_job_start,
                on_job_end,
            }
        });
        // Torque: setting only one of the two sets the other to the same value.
        match (cfg.max_load, cfg.ideal_load) {
            (Some(m), None) => cfg.ideal_load = Some(m),
            (None, Some(i)) => cfg.max_load = Some(i),
            _ => {}
        }
        (cfg, warnings)
    }

    /// Reads the file; a missing file is an empty config (Torque's MOM runs without one).
    pub fn load(path: &Path) -> (MomConfig, Vec<String>) {
        match std::fs::read_to_string(path) {
            Ok(text) => MomConfig::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (MomConfig::default(), vec![]),
            Err(e) => (
                MomConfig::default(),
                vec![format!("cannot read {}: {e}", path.display())],
            ),
        }
    }

    /// Torque's `check_busy` with hysteresis: only when `max_load` > 0, load ≥
    /// max_load sets busy and load < ideal_load clears it; in between the
    /// previous state holds.
    pub fn busy(&self, was_busy: bool, load: f64) -> bool {
        let max = match self.max_load {
            Some(m) if m > 0.0 => m,
            _ => return false,
        };
        let ideal = self.ideal_load.unwrap_or(max);
        if load >= max {
            true
        } else if load < ideal {
            false
        } else {
            was_busy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_thresholds_and_ignores_other_keywords() {
        let (c, w) = MomConfig::parse(
            "$pbsserver vm\n$logevent 255\n$max_load 0.5 # comment\n  $ideal_load   0.3\nsize[fs=/tmp] 1\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.max_load, Some(0.5));
        assert_eq!(c.ideal_load, Some(0.3));
    }

    #[test]
    fn the_health_check_takes_a_script_and_an_interval() {
        let (c, w) = MomConfig::parse(
            "$node_check_script /usr/local/sbin/healthy
",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.node_check,
            Some(NodeCheck {
                script: "/usr/local/sbin/healthy".into(),
                every: 1,
                on_job_start: false,
                on_job_end: false,
            })
        );
        assert_eq!(c.status_update_secs, 45);
        let (c, w) = MomConfig::parse(
            "$node_check_interval 4,jobstart
$node_check_script /h
$status_update_time 30
",
        );
        assert!(w.is_empty(), "{w:?}");
        let check = c.node_check.unwrap();
        assert_eq!(
            (check.every, check.on_job_start, check.on_job_end),
            (4, true, false)
        );
        assert_eq!(c.status_update_secs, 30);
        let (c, w) = MomConfig::parse(
            "$node_check_script healthy
$node_check_interval sometimes
$status_update_time 0
",
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!((c.node_check, c.status_update_secs), (None, 45));
        // The interval alone asks for nothing.
        assert_eq!(
            MomConfig::parse(
                "$node_check_interval 1
"
            )
            .0
            .node_check,
            None
        );
    }

    #[test]
    fn one_threshold_sets_the_other() {
        let (c, _) = MomConfig::parse("$max_load 2\n");
        assert_eq!((c.max_load, c.ideal_load), (Some(2.0), Some(2.0)));
        let (c, _) = MomConfig::parse("$ideal_load 1.5\n");
        assert_eq!((c.max_load, c.ideal_load), (Some(1.5), Some(1.5)));
    }

    #[test]
    fn source_login_batch_is_on_unless_turned_off() {
        assert!(MomConfig::parse("").0.source_login_batch);
        for off in ["false", "False", "f", "no", "N", "0", "off", "OFF"] {
            let (c, w) = MomConfig::parse(&format!("$source_login_batch {off}\n"));
            assert!(w.is_empty() && !c.source_login_batch, "{off}: {w:?}");
        }
        let (c, w) = MomConfig::parse("$source_login_batch false\n$source_login_batch TRUE\n");
        assert!(w.is_empty() && c.source_login_batch);
        let (c, w) = MomConfig::parse("$source_login_batch off\n$source_login_batch On\n");
        assert!(w.is_empty() && c.source_login_batch);
        let (c, w) = MomConfig::parse(
            "$source_login_batch maybe\n$source_login_batch\n$source_login_batch oui\n",
        );
        assert_eq!(w.len(), 3);
        assert!(c.source_login_batch);
    }

    #[test]
    fn limit_switches_are_torques_booleans() {
        let (c, w) = MomConfig::parse("");
        assert!(w.is_empty());
        assert_eq!(c.ignored, crate::limits::Ignored::default());
        let (c, w) = MomConfig::parse("$igncput true\n$ignmem 1\n$ignvmem yes\n$ignwalltime on\n");
        assert!(w.is_empty(), "{w:?}");
        assert!(c.ignored.cput && c.ignored.mem && c.ignored.vmem && c.ignored.walltime);
        let (c, w) = MomConfig::parse("$igncput maybe\n$ignwalltime false\n");
        assert_eq!(w.len(), 1);
        assert!(!c.ignored.cput && !c.ignored.walltime);
    }

    #[test]
    fn bad_values_warn_and_are_skipped() {
        let (c, w) = MomConfig::parse("$max_load lots\n$ideal_load\n$max_load -1\n");
        assert_eq!(c, MomConfig::default());
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn prologalarm_takes_positive_seconds() {
        assert_eq!(MomConfig::parse("").0.prolog_alarm_secs, 300);
        let (c, w) = MomConfig::parse("$prologalarm 45\n");
        assert!(w.is_empty() && c.prolog_alarm_secs == 45, "{w:?}");
        let (c, w) = MomConfig::parse("$prologalarm 0\n$prologalarm -5\n$prologalarm soon\n");
        assert_eq!((c.prolog_alarm_secs, w.len()), (300, 3));
    }

    #[test]
    fn check_poll_time_takes_positive_seconds() {
        assert_eq!(MomConfig::parse("").0.check_poll_secs, 5);
        let (c, w) = MomConfig::parse("$check_poll_time 45\n");
        assert!(w.is_empty() && c.check_poll_secs == 45, "{w:?}");
        let (c, w) = MomConfig::parse("$check_poll_time 0\n$check_poll_time x\n");
        assert_eq!((c.check_poll_secs, w.len()), (5, 2));
    }

    #[test]
    fn tmpdir_takes_an_absolute_directory() {
        assert_eq!(MomConfig::parse("").0.tmpdir, None);
        let (c, w) = MomConfig::parse("$tmpdir /scratch\n");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.tmpdir.as_deref(), Some(Path::new("/scratch")));
        let (c, w) = MomConfig::parse("$tmpdir scratch\n$tmpdir\n");
        assert_eq!((c.tmpdir, w.len()), (None, 2));
    }

    #[test]
    fn busy_has_hysteresis() {
        let (c, _) = MomConfig::parse("$max_load 0.5\n$ideal_load 0.3\n");
        assert!(c.busy(false, 12.0));
        assert!(c.busy(true, 0.4));
        assert!(!c.busy(false, 0.4));
        assert!(!c.busy(true, 0.2));
        assert!(!MomConfig::default().busy(true, 100.0));
    }
}
