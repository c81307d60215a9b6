//! Small text rules the server and the commands both apply.

/// What precedes the first `@`: the name in Torque's `NAME@HOST` forms (`user@host`,
/// `queue@server`, `path@host`), all of the text when there is no `@`.
pub fn before_at(s: &str) -> &str {
    s.split_once('@').map_or(s, |(name, _)| name)
}

/// String equality that never calls `memcmp` for empty strings (most attribute resources
/// are empty): an empty `String`'s pointer is dangling, and glibc's AVX-512 `memcmp` does a
/// masked load from it that costs a microcode assist on every call (a third of a
/// 5,000-job listing's time, measured).
pub fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_at_takes_the_name() {
        assert_eq!(before_at("alice@login1"), "alice");
        assert_eq!(before_at("batch"), "batch");
        assert_eq!(before_at("@host"), "");
    }

    #[test]
    fn same_text_is_equality() {
        assert!(same_text("", ""));
        assert!(same_text("mem", "mem"));
        assert!(!same_text("mem", "vmem"));
        assert!(!same_text("", "x"));
    }
}
