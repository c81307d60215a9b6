//! A hostile client for the security tests, speaking the Batch protocol directly (no qsub).
//!
//! `capstan-forge SOCKET SCRIPT` submits SCRIPT over a Unix socket (the server's or a login
//! node's `trqauthd`) claiming to be root in every field a request can carry and the server
//! does not check (`Job_Owner`, a forged `PBS_O_LOGNAME`, and the agent's user-assertion
//! header), then prints the job id. All of it must be ignored: the owner is the uid the
//! socket's peer credentials give. (`User_List` and `group_list` naming root are refused
//! outright: `jobs.rs`'s tests.)
//!
//! `capstan-forge tls HOST:PORT SERVER_NAME CA_FILE CERT_DIR|- USER SCRIPT` dials the server's
//! TLS listener itself, presenting the certificate installed in CERT_DIR (a MOM's `mom_priv/tls`
//! or an agent's `trqauthd_priv`; `-`: none) and asserting USER, as a stolen key or a
//! home-made agent would. A refusal prints `capstan-forge: refused errno=N: MESSAGE`.
//!
//! `capstan-forge plain HOST:PORT USER SCRIPT` does the same over plain TCP (the MOM listener
//! of a server started with `--insecure-plaintext-moms`).

use capstan_proto::remote;
use capstan_proto::v1::batch_client::BatchClient;
use capstan_proto::v1::{Attr, SubmitRequest};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A plain attribute, as qsub sends it.
fn attr(name: &str, value: &str) -> Attr {
    capstan_client::qsub::request::text_attr(name, "", value)
}

fn forged_request(script: &str, user: &str) -> tonic::Request<SubmitRequest> {
    let body = std::fs::read(script).expect("read script");
    let cwd = std::env::current_dir().expect("cwd");
    let mut request = tonic::Request::new(SubmitRequest {
        attrs: vec![
            attr("Job_Owner", "root@tsrv"),
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
    });
    request.metadata_mut().insert(
        remote::ASSERTED_USER,
        user.parse().expect("user name as a header"),
    );
    request
}

fn usage() -> ! {
    eprintln!(
        "usage: capstan-forge SOCKET SCRIPT\n       \
         capstan-forge tls HOST:PORT SERVER_NAME CA_FILE CERT_DIR|- USER SCRIPT\n       \
         capstan-forge plain HOST:PORT USER SCRIPT"
    );
    std::process::exit(2);
}

async fn over_tls(args: &[String]) -> Result<capstan_proto::v1::SubmitReply, String> {
    let [addr, server_name, ca_file, cert_dir, user, script] = args else {
        usage()
    };
    let tls = if cert_dir == "-" {
        let ca = std::fs::read_to_string(ca_file).map_err(|e| format!("{ca_file}: {e}"))?;
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(server_name.clone())
    } else {
        capstan_proto::enrolment::load(std::path::Path::new(cert_dir), "-")
            .map_err(|e| e.to_string())?
            .client_config()
    };
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    submit_forged(endpoint, script, user).await
}

async fn over_plain_tcp(args: &[String]) -> Result<capstan_proto::v1::SubmitReply, String> {
    let [addr, user, script] = args else { usage() };
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?;
    submit_forged(endpoint, script, user).await
}

/// Dials `endpoint` and submits the forged request asserting `user`.
async fn submit_forged(
    endpoint: Endpoint,
    script: &str,
    user: &str,
) -> Result<capstan_proto::v1::SubmitReply, String> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e:?}"))?;
    BatchClient::new(channel)
        .submit(forged_request(script, user))
        .await
        .map(|r| r.into_inner())
        .map_err(describe)
}

fn describe(status: tonic::Status) -> String {
    match remote::refusal_errno(&status) {
        Some(errno) => format!("refused errno={errno}: {}", status.message()),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reply = capstan_client::connect::block_on(async move {
        match args.first().map(String::as_str) {
            Some("tls") => over_tls(&args[1..]).await,
            Some("plain") => over_plain_tcp(&args[1..]).await,
            _ => {
                let [socket, script] = &args[..] else { usage() };
                std::env::set_var("CAPSTAN_SOCKET", socket);
                let mut client = capstan_client::connect::connect()
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .submit(forged_request(script, "root"))
                    .await
                    .map(|r| r.into_inner())
                    .map_err(describe)
            }
        }
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
