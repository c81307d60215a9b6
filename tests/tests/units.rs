//! The systemd units shipped beside each daemon (`server/systemd/`, `mom/systemd/`,
//! `client/systemd/`), checked by systemd's own `systemd-analyze verify` against the built
//! binaries: every key known, every command there. What the MOM's unit relies on (SIGTERM
//! to the MOM alone leaves its jobs to the next MOM) is `recovery.rs`'s
//! `a_mom_stopped_by_sigterm_leaves_its_job_to_the_next_one`.

use std::path::{Path, PathBuf};
use std::process::Command;

use capstan_tests::*;

/// The unit files, from the workspace root.
const UNITS: [&str; 3] = [
    "server/systemd/pbs_server.service",
    "mom/systemd/pbs_mom.service",
    "client/systemd/trqauthd.service",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

#[test]
fn the_shipped_units_are_valid_for_systemd() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for unit in UNITS {
        let text = std::fs::read_to_string(workspace_root().join(unit)).expect("read the unit");
        // Installed paths point at this build's binaries.
        let here = format!("{}/", bin_dir().display());
        assert!(text.contains("ExecStart=/usr/local/sbin/"), "{unit}");
        let name = Path::new(unit).file_name().expect("a file name");
        let copy = dir.path().join(name);
        std::fs::write(&copy, text.replace("/usr/local/sbin/", &here)).expect("write the unit");
        let out = output_within(
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&copy),
            None,
        );
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{unit}: {}",
            stderr(&out)
        );
    }
    // Stopping or restarting the MOM must not take the node's jobs with it.
    let mom = std::fs::read_to_string(workspace_root().join(UNITS[1])).expect("read");
    assert!(mom.lines().any(|l| l == "KillMode=process"), "{mom}");
}
