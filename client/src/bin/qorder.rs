//! `qorder JOB JOB`: two jobs swap their places in line (Torque-compatible).
//!
//! As Torque's qorder: exactly two job ids or the usage line (exit 2); a refusal is printed
//! as Torque's `prt_job_err` prints it with no job id (`qorder: Unauthorized Request `) and
//! exits with the error number, as Torque's does; success prints nothing.

use capstan_client::connect::{self, ConnectError};
use capstan_proto::pbse;
use capstan_proto::v1::OrderJobsRequest;

const USAGE: &str = "usage: qorder job_identifier job_identifier\n";

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(run(&args));
}

fn run(args: &[String]) -> i32 {
    let [first, second] = args else {
        eprint!("{USAGE}");
        return 2;
    };
    let request = OrderJobsRequest {
        first: first.clone(),
        second: second.clone(),
    };
    connect::exit_status_of("qorder", order(request))
}

async fn order(request: OrderJobsRequest) -> i32 {
    let mut client = match connect::connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.torque_message("qorder"));
            return e.exit_code();
        }
    };
    let reply = match client.order_jobs(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            eprint!(
                "{}",
                connect::rpc_failure_line("qorder", &status, |m| format!("qorder: {m}\n"))
            );
            return ConnectError::from_status(&status).map_or(1, |e| e.exit_code());
        }
    };
    let Some(err) = reply.results.first().and_then(|r| r.error.as_ref()) else {
        return 0;
    };
    if err.code == 0 {
        return 0;
    }
    let text = capstan_client::format::pbse_message(err.code, &err.detail);
    eprintln!("qorder: {text} ");
    pbse::exit_code(err.code)
}
