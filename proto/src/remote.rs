//! What travels beside a `Batch` request from another host: the user the login node's
//! authentication agent (`trqauthd`) asserts, and the error number a refusal carries so the
//! commands print Torque's "cannot connect to server" line.
//!
//! The server honours [`ASSERTED_USER`] only on its TLS listener and only from a host in its
//! `submit_hosts`; on the local Unix socket it is ignored (peer credentials decide), and the
//! agent strips any such header a command sent before adding its own.

/// Request metadata (an HTTP/2 header) naming the user the agent vouches for.
pub const ASSERTED_USER: &str = "capstan-user";

/// Response metadata on a refused request: a PBSE number (PBSE_BADHOST for a host not in
/// `submit_hosts`) or an OS error number (111 when the agent cannot reach the server).
pub const REFUSAL_ERRNO: &str = "capstan-errno";

/// A `Status` that refuses the request with `errno` (see [`REFUSAL_ERRNO`]).
pub fn refusal(code: tonic::Code, errno: i32, message: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::new(code, message);
    if let Ok(value) = errno.to_string().parse() {
        status.metadata_mut().insert(REFUSAL_ERRNO, value);
    }
    status
}

/// The error number a refusal carries, if `status` is one.
pub fn refusal_errno(status: &tonic::Status) -> Option<i32> {
    status
        .metadata()
        .get(REFUSAL_ERRNO)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_number() {
        let s = refusal(tonic::Code::PermissionDenied, 15010, "no");
        assert_eq!(refusal_errno(&s), Some(15010));
        assert_eq!(refusal_errno(&tonic::Status::internal("x")), None);
    }
}
