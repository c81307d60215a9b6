//! `capstan-forge SOCKET SCRIPT`: a hostile client for the security tests. It speaks the Batch
//! protocol directly (no qsub) and submits SCRIPT claiming to be someone else in every field a
//! request can carry (`Job_Owner`, `User_List`, `group_list`, a forged `PBS_O_LOGNAME`), then
//! prints the job id. The server must ignore all of it: the owner is the uid the Unix socket's
//! peer credentials give.

use capstan_proto::v1::{Attr, SubmitRequest};

fn attr(name: &str, value: &str) -> Attr {
    Attr {
        name: name.to_string(),
        resource: String::new(),
        value: value.to_string(),
        ..Default::default()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(socket), Some(script)) = (args.next(), args.next()) else {
        eprintln!("usage: capstan-forge SOCKET SCRIPT");
        std::process::exit(2);
    };
    std::env::set_var("CAPSTAN_SOCKET", &socket);
    let body = std::fs::read(&script).expect("read script");
    let cwd = std::env::current_dir().expect("cwd");
    let request = SubmitRequest {
        attrs: vec![
            attr("Job_Owner", "root@tsrv"),
            attr("User_List", "root"),
            attr("group_list", "root"),
            attr("Job_Name", "forged"),
            attr(
                "Variable_List",
                &format!(
                    "PBS_O_LOGNAME=root,PBS_O_HOME=/root,PBS_O_WORKDIR={}",
                    cwd.display()
                ),
            ),
            attr("Join_Path", "oe"),
        ],
        script: body,
        destination: String::new(),
    };
    let reply = capstan_client::connect::block_on(async move {
        let mut client = capstan_client::connect::connect()
            .await
            .map_err(|e| e.to_string())?;
        client
            .submit(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.to_string())
    })
    .expect("runtime");
    match reply {
        Ok(r) if r.error.is_none() => println!("{}", r.job_id),
        Ok(r) => {
            eprintln!("capstan-forge: refused: {:?}", r.error);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("capstan-forge: {e}");
            std::process::exit(1);
        }
    }
}
