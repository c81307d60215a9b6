//! `qselect`: the ids of the jobs that match the criteria, one per line, in the server's
//! order (Torque-compatible). Parsing and matching live in [`capstan_client::select`]; this
//! file asks the server for the jobs the caller may see and prints those that match.

use std::process::ExitCode;

use capstan_client::connect::{self, ConnectError};
use capstan_client::format::table::Table;
use capstan_client::format::{AttrView, ServerError};
use capstan_client::select::{self, Refusal, Selection};
use capstan_proto::pbse;
use capstan_proto::v1::StatJobsRequest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selection = match select::parse(&args, &chrono::Local::now()) {
        Ok(s) => s,
        Err(Refusal::Usage(lines)) => {
            for line in lines {
                eprintln!("{line}");
            }
            eprint!("{}", select::USAGE);
            return ExitCode::from(2);
        }
        Err(Refusal::Server(code)) => {
            eprintln!("{}", Refusal::server_message(code));
            return ExitCode::from(pbse::exit_code(code) as u8);
        }
    };
    match run(&selection).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

async fn run(selection: &Selection) -> Result<ExitCode, String> {
    let mut client = connect::connect()
        .await
        .map_err(|e| e.torque_message("qselect"))?;
    let reply = client
        .stat_jobs(StatJobsRequest {
            operands: selection.queue().map(String::from).into_iter().collect(),
            attributes: selection.attributes(),
            // Sub-jobs are selected, not their arrays, as Torque's qselect does.
            expand_arrays: true,
        })
        .await
        .map_err(|status| match ConnectError::from_status(&status) {
            Some(err) => err.torque_message("qselect"),
            None => format!("qselect: {}", status.message()),
        })?
        .into_inner();
    // An unknown queue: Torque's server refuses the whole selection.
    if let Some(error) = reply.errors.into_iter().map(ServerError::from).next() {
        eprintln!("qselect: {}", error.message());
        return Ok(ExitCode::from(error.exit_code() as u8));
    }
    let table = match reply.table.map(Table::try_from).transpose() {
        Ok(table) => table.unwrap_or_default(),
        Err(malformed) => return Err(format!("qselect: {malformed}")),
    };
    let mut out = String::new();
    for job in table.rows().filter(|job| selection.matches(job)) {
        out.push_str(job.name());
        out.push('\n');
    }
    capstan_client::format::emit(&out);
    Ok(ExitCode::SUCCESS)
}
