//! `DIR/pbs_environment`, Torque's base environment: read once when the MOM starts (as
//! Torque's MOM reads it), its variables are where every job's environment starts (the
//! job's own variables and the MOM's `PBS_*` override them, see `launch::build_env`), and
//! they are the whole environment of the prologue and epilogue scripts before their own
//! variables (see `pelog::environment`).
//!
//! Torque's grammar (`setup_env`): a line starting with `#` or a space, or empty, is
//! skipped; `NAME=value` is taken as written; a bare `NAME` takes the MOM's own value, and
//! is skipped when the MOM has none. Unlike Torque, a line is not cut at 254 bytes, a
//! trailing `\r` (a file edited on Windows) is dropped, and any number of variables is
//! taken; a line that is not UTF-8 is skipped with a warning.
//!
//! Its variables reach the prologue and epilogue, which run as root (`LD_PRELOAD` would be
//! root's), so, as Torque's `chk_file_sec` demands, the file must be a regular file owned
//! by root (or by the MOM's own user) and writable by nobody else, in directories only they
//! may change (or sticky ones, as `/tmp`); otherwise, or if it cannot be read, the MOM
//! does not start.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why the MOM refuses to start with its `pbs_environment`.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentFileError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} must be a regular file owned by root (or by pbs_mom's own user) and writable by \
         nobody else: its variables reach the root prologue and epilogue",
        path.display()
    )]
    Insecure { path: PathBuf },
    #[error(
        "{} is in {}, which others may change: it must be owned by root (or by pbs_mom's \
         own user) and writable by nobody else (or sticky)",
        path.display(),
        dir.display()
    )]
    InsecureDirectory { path: PathBuf, dir: PathBuf },
}

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// In the file's order.
    pub vars: Vec<(String, String)>,
    /// A line for each line skipped.
    pub warnings: Vec<String>,
}

/// The file's variables, and warnings about the lines skipped; `None` when there is no file
/// (then jobs start from nothing and the scripts get `PATH=/bin:/usr/bin` and the MOM's
/// `LANG`). `mom_uid` is the MOM's effective uid, which may own the file besides root.
pub fn load(path: &Path, mom_uid: u32) -> Result<Option<Loaded>, EnvironmentFileError> {
    let unreadable = |source| EnvironmentFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking, so that a FIFO planted there cannot hang the start (it is then refused
    // as not a regular file).
    let mut file = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    // Judged on the file opened, so it cannot be swapped between the check and the read.
    let meta = file.metadata().map_err(unreadable)?;
    if !secure(meta.is_file(), meta.uid(), meta.mode(), mom_uid) {
        return Err(EnvironmentFileError::Insecure {
            path: path.to_path_buf(),
        });
    }
    // Every directory above it, and above the file a symlink names: one that others may
    // change could swap the file.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let resolved = path.canonicalize().map_err(unreadable)?;
    let dirs = [
        parent.canonicalize().map_err(unreadable)?,
        resolved.parent().unwrap_or(Path::new("/")).to_path_buf(),
    ];
    for dir in dirs.iter().flat_map(|d| d.ancestors()) {
        let meta = std::fs::metadata(dir).map_err(unreadable)?;
        if !secure_dir(meta.uid(), meta.mode(), mom_uid) {
            return Err(EnvironmentFileError::InsecureDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(unreadable)?;
    Ok(Some(parse(&bytes, |name| {
        std::env::var_os(name).map(|v| v.into_string().map_err(|_| ()))
    })))
}

/// Torque's rule for a file root's scripts trust: a regular file, owned by root or by the
/// MOM's user, not writable by group or others.
fn secure(is_file: bool, owner: u32, mode: u32, mom_uid: u32) -> bool {
    is_file && (owner == 0 || owner == mom_uid) && mode & 0o022 == 0
}

/// The rule for a directory above it: owned by root or by the MOM's user, and not writable
/// by group or others unless sticky (then others cannot rename or remove what is not theirs).
fn secure_dir(owner: u32, mode: u32, mom_uid: u32) -> bool {
    (owner == 0 || owner == mom_uid) && (mode & 0o022 == 0 || mode & 0o1000 != 0)
}

/// The variables of the file's bytes, and a warning for each line skipped. `own` looks a
/// bare name up in the MOM's environment (`Some(Err(()))`: set, but not UTF-8). A name given
/// twice keeps its first place and its last value, as the job's environment table does.
pub fn parse(bytes: &[u8], own: impl Fn(&str) -> Option<Result<String, ()>>) -> Loaded {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut warnings = Vec::new();
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() || raw[0] == b'#' || raw[0] == b' ' {
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            warnings.push(format!("line {}: not UTF-8, skipped", n + 1));
            continue;
        };
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            None => match own(line) {
                Some(Ok(value)) => (line, value),
                Some(Err(())) => {
                    warnings.push(format!("line {}: ${line} is not UTF-8, skipped", n + 1));
                    continue;
                }
                None => continue,
            },
        };
        if name.is_empty() || name.contains('\0') || value.contains('\0') {
            warnings.push(format!("line {}: not a variable, skipped", n + 1));
            continue;
        }
        put_env_var(&mut vars, name, value);
    }
    Loaded { vars, warnings }
}

/// Torque's `put_env_var` / `bld_env_variables`: `name` set to `value`, in its place if
/// the environment has it (the last value wins, the first place stays), else at the end.
pub fn put_env_var(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_as_torques_setup_env_reads_it() {
        let text = b"PATH=/bin:/usr/bin\r\n# a comment\n indented=skipped\n\nLANG\nUNSET\nTZ=Europe/Paris\nGREETING=a b=c \nBAD=\xff\n=novalue\nPATH=/opt/bin";
        let own = |name: &str| (name == "LANG").then(|| Ok("C.UTF-8".to_string()));
        let Loaded { vars, warnings } = parse(text, own);
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            vec![
                ("PATH", "/opt/bin"),
                ("LANG", "C.UTF-8"),
                ("TZ", "Europe/Paris"),
                ("GREETING", "a b=c "),
            ]
        );
        assert_eq!(
            warnings,
            [
                "line 9: not UTF-8, skipped",
                "line 10: not a variable, skipped"
            ]
        );
    }

    #[test]
    fn only_a_file_nobody_else_may_write_is_trusted() {
        let mom = 1000;
        assert!(secure(true, 0, 0o100644, mom));
        assert!(secure(true, mom, 0o100600, mom));
        assert!(!secure(true, 0, 0o100664, mom), "group-writable");
        assert!(!secure(true, 0, 0o100646, mom), "writable by others");
        assert!(!secure(true, 1001, 0o100644, mom), "another user's");
        assert!(!secure(false, 0, 0o040755, mom), "a directory");
        assert!(secure_dir(0, 0o040755, mom));
        assert!(secure_dir(0, 0o041777, mom), "sticky, as /tmp");
        assert!(secure_dir(mom, 0o040700, mom));
        assert!(!secure_dir(0, 0o040777, mom), "writable by all, not sticky");
        assert!(!secure_dir(1001, 0o040755, mom), "another user's");
    }

    #[test]
    fn a_missing_file_is_none_and_an_insecure_one_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pbs_environment");
        let me = nix::unistd::geteuid().as_raw();
        assert!(matches!(load(&path, me), Ok(None)));
        std::fs::write(&path, "TZ=UTC\n").expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        let vars = load(&path, me).expect("secure").expect("a file").vars;
        assert_eq!(vars, [("TZ".to_string(), "UTC".to_string())]);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("chmod");
        let err = load(&path, me).expect_err("world-writable");
        assert!(err.to_string().contains("writable by nobody else"), "{err}");
    }

    #[test]
    fn a_directory_others_may_change_or_a_fifo_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let me = nix::unistd::geteuid().as_raw();
        let open_dir = dir.path().join("open");
        std::fs::create_dir(&open_dir).expect("mkdir");
        let path = open_dir.join("pbs_environment");
        std::fs::write(&path, "TZ=UTC\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(load(&path, me).is_ok(), "a 0755 directory is fine");
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let refused = |p: &Path| {
            matches!(
                load(p, me),
                Err(EnvironmentFileError::InsecureDirectory { .. })
            )
        };
        assert!(refused(&path), "writable by all, not sticky");
        // A link from a safe place to the file in the open directory: refused too.
        let link = dir.path().join("pbs_environment");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(refused(&link), "through a symlink");
        // A FIFO does not hang the start: it is not a regular file.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        assert!(matches!(
            load(&fifo, me),
            Err(EnvironmentFileError::Insecure { .. })
        ));
    }
}
