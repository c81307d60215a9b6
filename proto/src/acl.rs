//! Torque's ACL matching (`acl_users`, `acl_hosts`, `acl_groups` of queues and nodes, and
//! `qselect -u`): pure rules the server and the commands share, so a name matches alike on
//! both sides.

/// Torque's `ACL_User` rule: an entry `user` matches that user from any host; `user@host`
/// matches the host exactly or by a leading `*` wildcard (`*.lab.example`, `*`); the user
/// part may itself be `*`.
pub fn acl_user_match(entries: &[String], user_at_host: &str) -> bool {
    let (user, host) = user_at_host.split_once('@').unwrap_or((user_at_host, ""));
    entries.iter().any(|entry| {
        let entry = entry.trim();
        let (e_user, e_host) = match entry.split_once('@') {
            Some((u, h)) => (u, Some(h)),
            None => (entry, None),
        };
        let user_ok = e_user == "*" || e_user == user;
        let host_ok = match e_host {
            None => true,
            Some(pattern) => host_pattern_match(pattern, host),
        };
        user_ok && host_ok
    })
}

/// Torque's `ACL_Host` rule: exact (case-insensitive) or a leading `*` wildcard; a short name
/// also matches the same host's fully qualified name.
pub fn acl_host_match(entries: &[String], host: &str) -> bool {
    entries
        .iter()
        .any(|pattern| host_pattern_match(pattern.trim(), host))
}

/// Torque's `ACL_Group` rule: exact group names.
pub fn acl_group_match(entries: &[String], groups: &[String]) -> bool {
    entries
        .iter()
        .any(|entry| groups.iter().any(|g| g == entry.trim()))
}

fn host_pattern_match(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    if let Some(suffix) = pattern.strip_prefix('*') {
        return host.ends_with(suffix);
    }
    if pattern == host {
        return true;
    }
    // `login1` and `login1.lab.example` name the same host.
    let short = |h: &str| h.split('.').next().unwrap_or_default().to_string();
    (!pattern.contains('.') || !host.contains('.')) && short(&pattern) == short(&host)
}
