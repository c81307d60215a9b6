//! Turning validated options into the attributes Torque's qsub sends.

use capstan_proto::v1::{Attr, AttrKind, SubmitRequest};

use super::options::{Context, JobOptions};

/// The queue name for `PBS_O_QUEUE`: the queue part of `-q QUEUE[@SERVER]`. Without one the
/// variable is left out and the server, which knows its default queue, puts it first.
pub fn origin_queue(destination: Option<&str>) -> Option<&str> {
    destination
        .map(capstan_proto::text::before_at)
        .filter(|q| !q.is_empty())
}

/// Escapes a value for the comma-separated `Variable_List` (Torque writes `\,`).
fn escape(value: &str) -> String {
    value.replace(',', "\\,")
}

/// `Variable_List` in Torque's order (reference 2.3): `PBS_O_QUEUE` (with `-q`), `PBS_O_HOME`,
/// `PBS_O_LOGNAME`, `PBS_O_PATH`, `PBS_O_MAIL`, `PBS_O_SHELL` (then `PBS_O_TZ`, `PBS_O_LANG`
/// when set), the `-v` variables, `PBS_O_WORKDIR`, `PBS_O_INITDIR` (with `-d`), `PBS_O_HOST`,
/// `PBS_O_SERVER`, and with `-V` the whole submission environment.
pub fn variable_list(opts: &JobOptions, ctx: &Context) -> String {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut push = |name: &str, value: &str| vars.push((name.to_string(), value.to_string()));
    if let Some(queue) = origin_queue(opts.destination.as_deref()) {
        push("PBS_O_QUEUE", queue);
    }
    push("PBS_O_HOME", ctx.getenv("HOME").unwrap_or("/"));
    for (env, var) in [
        ("LOGNAME", "PBS_O_LOGNAME"),
        ("PATH", "PBS_O_PATH"),
        ("MAIL", "PBS_O_MAIL"),
        ("SHELL", "PBS_O_SHELL"),
        ("TZ", "PBS_O_TZ"),
        ("LANG", "PBS_O_LANG"),
    ] {
        if let Some(value) = ctx.getenv(env) {
            push(var, value);
        }
    }
    for (name, value) in &opts.variables {
        push(name, value);
    }
    let workdir = opts
        .work_dir
        .as_deref()
        .or(opts.init_dir.as_deref())
        .unwrap_or(&ctx.cwd)
        .to_string();
    push("PBS_O_WORKDIR", &workdir);
    if let Some(init) = &opts.init_dir {
        push("PBS_O_INITDIR", init);
    }
    push("PBS_O_HOST", &ctx.host);
    push("PBS_O_SERVER", &ctx.server);
    if opts.export_all {
        for (name, value) in &ctx.env {
            push(name, value);
        }
    }
    vars.iter()
        .map(|(n, v)| format!("{n}={}", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A text attribute as the server takes it: `name` or `name.resource` = `value`.
pub fn text_attr(name: &str, resource: &str, value: &str) -> Attr {
    Attr {
        name: name.to_string(),
        resource: resource.to_string(),
        value: value.to_string(),
        kind: AttrKind::Text as i32,
    }
}

/// The whole submission. `args` are qsub's arguments (without the program name), recorded
/// as `submit_args` joined by spaces, as Torque does.
pub fn build_request(
    opts: &JobOptions,
    ctx: &Context,
    args: &[String],
    script: Vec<u8>,
) -> SubmitRequest {
    let mut attrs: Vec<Attr> = Vec::new();
    for (name, value) in &opts.attrs {
        attrs.push(text_attr(name, "", value));
    }
    // With -j oe (eo) Torque copies the output (error) path to the other one, so that
    // qstat shows where the joined stream really goes.
    let join_copy = match opts.attr("Join_Path") {
        Some("oe") => opts.attr("Output_Path").map(|p| ("Error_Path", p)),
        Some("eo") => opts.attr("Error_Path").map(|p| ("Output_Path", p)),
        _ => None,
    };
    if let Some((target, path)) = join_copy {
        match attrs.iter_mut().find(|a| a.name == target) {
            Some(a) => a.value = path.to_string(),
            None => attrs.push(text_attr(target, "", path)),
        }
    }
    for (resource, value) in &opts.resources {
        attrs.push(text_attr("Resource_List", resource, value));
    }
    attrs.push(text_attr("Variable_List", "", &variable_list(opts, ctx)));
    attrs.push(text_attr("submit_args", "", &args.join(" ")));
    attrs.push(text_attr("submit_host", "", &ctx.host));
    let init_work_dir = opts.init_dir.as_deref().unwrap_or(&ctx.cwd);
    attrs.push(text_attr("init_work_dir", "", init_work_dir));
    SubmitRequest {
        attrs,
        script,
        destination: opts.destination.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::getopt::getopt;
    use crate::qsub::options::QSUB_OPTSTRING;
    use chrono::Local;

    fn ctx() -> Context {
        Context {
            cwd: "/home/testuser".into(),
            env: vec![
                ("SHELL".into(), "/bin/bash".into()),
                ("HOME".into(), "/home/testuser".into()),
                ("LOGNAME".into(), "testuser".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("MAIL".into(), "/var/mail/testuser".into()),
                ("ODD".into(), "a,b".into()),
            ],
            host: "vm".into(),
            server: "vm".into(),
            now: Local::now(),
        }
    }

    fn opts(args: &[&str]) -> JobOptions {
        let mut o = JobOptions::new("job.sh");
        o.apply_items(&getopt(args, QSUB_OPTSTRING).items, &ctx())
            .unwrap();
        o
    }

    #[test]
    fn variable_list_matches_reference_order() {
        assert_eq!(
            variable_list(&opts(&[]), &ctx()),
            "PBS_O_HOME=/home/testuser,PBS_O_LOGNAME=testuser,\
             PBS_O_PATH=/usr/bin:/bin,PBS_O_MAIL=/var/mail/testuser,PBS_O_SHELL=/bin/bash,\
             PBS_O_WORKDIR=/home/testuser,PBS_O_HOST=vm,PBS_O_SERVER=vm"
        );
    }

    #[test]
    fn variable_list_with_v_d_q_and_big_v() {
        let o = opts(&["-q", "dq@vm", "-v", "FOO=bar,BAZ=q\\,x", "-d", "/tmp", "-V"]);
        assert_eq!(
            variable_list(&o, &ctx()),
            "PBS_O_QUEUE=dq,PBS_O_HOME=/home/testuser,PBS_O_LOGNAME=testuser,\
             PBS_O_PATH=/usr/bin:/bin,PBS_O_MAIL=/var/mail/testuser,PBS_O_SHELL=/bin/bash,\
             FOO=bar,BAZ=q\\,x,PBS_O_WORKDIR=/tmp,PBS_O_INITDIR=/tmp,PBS_O_HOST=vm,\
             PBS_O_SERVER=vm,SHELL=/bin/bash,HOME=/home/testuser,LOGNAME=testuser,\
             PATH=/usr/bin:/bin,MAIL=/var/mail/testuser,ODD=a\\,b"
        );
        let o = opts(&["-w", "/scratch"]);
        let list = variable_list(&o, &ctx());
        assert!(list.contains("PBS_O_WORKDIR=/scratch,PBS_O_HOST=vm"));
        assert!(!list.contains("PBS_O_INITDIR"));
    }

    #[test]
    fn optional_origin_variables_follow_shell() {
        let mut c = ctx();
        c.env.push(("LANG".into(), "C.UTF-8".into()));
        c.env.push(("TZ".into(), "UTC".into()));
        c.env.retain(|(n, _)| n != "MAIL" && n != "HOME");
        let list = variable_list(&opts(&["-v", "X=1"]), &c);
        assert_eq!(
            list,
            "PBS_O_HOME=/,PBS_O_LOGNAME=testuser,PBS_O_PATH=/usr/bin:/bin,\
             PBS_O_SHELL=/bin/bash,PBS_O_TZ=UTC,PBS_O_LANG=C.UTF-8,X=1,\
             PBS_O_WORKDIR=/home/testuser,PBS_O_HOST=vm,PBS_O_SERVER=vm"
        );
    }

    #[test]
    fn request_attributes() {
        let args: Vec<String> = [
            "-N",
            "x",
            "-j",
            "oe",
            "-o",
            "/tmp/o",
            "-l",
            "walltime=5",
            "job.sh",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = opts(&["-N", "x", "-j", "oe", "-o", "/tmp/o", "-l", "walltime=5"]);
        let req = build_request(&o, &ctx(), &args, b"echo\n".to_vec());
        let find = |name: &str, res: &str| {
            req.attrs
                .iter()
                .find(|a| a.name == name && a.resource == res)
                .map(|a| a.value.clone())
        };
        assert_eq!(find("Job_Name", "").as_deref(), Some("x"));
        assert_eq!(find("Output_Path", "").as_deref(), Some("vm:/tmp/o"));
        assert_eq!(find("Error_Path", "").as_deref(), Some("vm:/tmp/o"));
        assert_eq!(find("Resource_List", "walltime").as_deref(), Some("5"));
        assert_eq!(
            find("submit_args", "").as_deref(),
            Some("-N x -j oe -o /tmp/o -l walltime=5 job.sh")
        );
        assert_eq!(find("submit_host", "").as_deref(), Some("vm"));
        assert_eq!(find("init_work_dir", "").as_deref(), Some("/home/testuser"));
        assert!(find("Variable_List", "").is_some());
        assert_eq!(req.destination, "");
        assert_eq!(req.script, b"echo\n");
    }
}
