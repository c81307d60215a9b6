//! Torque's PBSE error numbers and their texts (Torque's `pbs_error_db.h`).
//!
//! The server answers with a number; every command prints the text from this
//! table, so a message is spelled in exactly one place. Several Torque texts end
//! in a space (`"Unauthorized Request "`), which is why two spaces appear before
//! `MSG=` in Torque's output; the table keeps those spaces.

/// Unknown Job Id Error.
pub const UNKJOBID: i32 = 15001;
/// Undefined attribute.
pub const NOATTR: i32 = 15002;
/// Cannot set attribute, read only or insufficient permission.
pub const ATTRRO: i32 = 15003;
/// Invalid request.
pub const IVALREQ: i32 = 15004;
/// Unknown request.
pub const UNKREQ: i32 = 15005;
/// Unauthorized Request.
pub const PERM: i32 = 15007;
/// Access from host not allowed, or unknown host.
pub const BADHOST: i32 = 15010;
/// Internal Server Error (Torque 6's PBSE_SYSTEM number).
pub const SYSTEM: i32 = 15012;
/// Unknown/illegal signal name (qsig).
pub const UNKSIG: i32 = 15015;
/// Illegal attribute or resource value.
pub const BADATVAL: i32 = 15016;
/// Cannot modify attribute while job running.
pub const MODATRRUN: i32 = 15017;
/// Request invalid for state of job.
pub const BADSTATE: i32 = 15018;
/// Unknown queue.
pub const UNKQUE: i32 = 15020;
/// Queue is not enabled.
pub const QUNOENB: i32 = 15023;
/// Bad UID for job execution.
pub const BADUSER: i32 = 15025;
/// Bad GID for job execution.
pub const BADGRP: i32 = 15047;
/// Queue already exists.
pub const QUEEXIST: i32 = 15027;
/// Cannot delete busy queue.
pub const QUEBUSY: i32 = 15029;
/// Feature/function not supported.
pub const NOSUP: i32 = 15031;
/// Unknown resource type.
pub const UNKRESC: i32 = 15037;
/// Job exceeds queue resource limits.
pub const EXCQRESC: i32 = 15038;
/// qrerun of a job submitted with `-r n`.
pub const NORERUN: i32 = 15040;
/// Resource temporarily unavailable.
pub const RESCUNAV: i32 = 15046;
/// Server shutting down (qterm was accepted).
pub const SVRDOWN: i32 = 15062;
/// Server could not connect to MOM (the job's node is not reachable now).
pub const NORELYMOM: i32 = 15072;
/// Invalid Job Dependency.
pub const BADDEPEND: i32 = 15056;
/// Unknown node.
pub const UNKNODE: i32 = 15064;
/// Unknown node-attribute.
pub const UNKNODEATR: i32 = 15065;
/// Node name already exists.
pub const NODEEXIST: i32 = 15068;
/// The requested state or substate can't be set from the job's current state.
pub const BAD_STATE_TRANSITION: i32 = 15174;
/// Bad Job Array Request.
pub const BAD_ARRAY_REQ: i32 = 15083;
/// Time out.
pub const TIMEOUT: i32 = 15085;
/// Job is already in destination queue (a qmove to the job's own queue).
pub const JOB_ALREADY_IN_QUEUE: i32 = 15127;
/// Command syntax invalid.
pub const SYNTAX: i32 = 15131;
/// Server too busy.
pub const SERVER_BUSY: i32 = 15134;

/// Torque's text for a PBSE number, trailing spaces included.
pub fn text(code: i32) -> &'static str {
    match code {
        UNKJOBID => "Unknown Job Id Error",
        NOATTR => "Undefined attribute ",
        ATTRRO => "Cannot set attribute, read only or insufficient permission ",
        IVALREQ => "Invalid request",
        UNKREQ => "Unknown request",
        PERM => "Unauthorized Request ",
        BADHOST => "Access from host not allowed, or unknown host",
        SYSTEM => "Internal Server Error",
        UNKSIG => "Unknown/illegal signal name",
        BADATVAL => "Illegal attribute or resource value for",
        MODATRRUN => "Cannot modify attribute while job running",
        BADSTATE => "Request invalid for state of job",
        UNKQUE => "Unknown queue",
        QUNOENB => "Queue is not enabled",
        BADUSER => "Bad UID for job execution",
        BADGRP => "Bad GID for job execution",
        QUEEXIST => "Queue already exists",
        QUEBUSY => "Cannot delete busy queue",
        NOSUP => "No support for requested service",
        UNKRESC => "Unknown resource type ",
        EXCQRESC => "Job exceeds queue resource limits",
        NORERUN => "job is not rerunnable",
        RESCUNAV => "Resource temporarily unavailable",
        SVRDOWN => "Request not allowed: Server shutting down",
        NORELYMOM => "Server could not connect to MOM",
        BADDEPEND => "Invalid Job Dependency",
        UNKNODE => "Unknown node ",
        UNKNODEATR => "Unknown node-attribute ",
        NODEEXIST => "Node name already exists",
        BAD_STATE_TRANSITION => {
            "The requested state or substate can't be set from the job's current state (slot limit in effect)."
        }
        BAD_ARRAY_REQ => "Bad Job Array Request",
        TIMEOUT => "Time out",
        JOB_ALREADY_IN_QUEUE => "Job is already in destination queue.",
        SYNTAX => "Command syntax invalid",
        SERVER_BUSY => "Pbs Server is currently too busy to service this request. Please retry this request.",
        _ => "Unknown error",
    }
}

/// The process exit status Torque's commands use for a PBSE number: the number
/// modulo 256, as the shell sees Torque's raw `exit(15xxx)`.
pub fn exit_code(code: i32) -> i32 {
    code.rem_euclid(256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_torque_observations() {
        assert_eq!(exit_code(UNKQUE), 172);
        assert_eq!(exit_code(BADATVAL), 168);
        assert_eq!(exit_code(UNKRESC), 189);
        assert_eq!(exit_code(SYNTAX), 27);
        assert_eq!(exit_code(EXCQRESC), 190);
        assert_eq!(exit_code(NOATTR), 154);
        assert_eq!(exit_code(BADDEPEND), 208);
        assert_eq!(exit_code(BAD_ARRAY_REQ), 235);
        assert_eq!(exit_code(QUNOENB), 175);
        assert_eq!(exit_code(UNKJOBID), 153);
        assert_eq!(exit_code(PERM), 159);
        assert_eq!(exit_code(BADSTATE), 170);
        assert_eq!(exit_code(BAD_STATE_TRANSITION), 70);
    }
}
