//! In-process tests of the whole server: real SQLite file, real Unix socket, a scripted MOM
//! over TLS with a certificate from the server's CA (issued here as `pbs_server enroll`
//! would). No external processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_proto::v1 as pb;
use capstan_proto::v1::batch_client::BatchClient;
use capstan_proto::v1::mom_session_client::MomSessionClient;
use capstan_server::config::Config;
use capstan_server::tls;
// Its ports lie below the ephemeral range, where the scripted MOMs' own connections cannot
// take one first.
use capstan_tests::free_port;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tower::service_fn;

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    mom_port: u16,
    socket: PathBuf,
    home: PathBuf,
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

async fn launch(home: &Path) -> Running {
    launch_with(home, Duration::from_secs(1)).await
}

async fn launch_with(home: &Path, status_interval: Duration) -> Running {
    let mut config = Config::new(home.to_path_buf(), "vm".into());
    let port = free_port();
    config.mom_listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.allow_root_jobs = true;
    config.durable = std::env::var_os("CAPSTAN_TEST_DURABLE").is_some();
    config.status_interval = status_interval;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(capstan_server::server::run(config, async {
        let _ = rx.await;
    }));
    let socket = home.join("capstan.sock");
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Running {
        stop: Some(tx),
        task,
        mom_port: port,
        socket,
        home: home.to_path_buf(),
    }
}

async fn client(socket: &Path) -> BatchClient<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_with_connector(service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .unwrap();
    BatchClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// A TLS channel to the MOM listener with a certificate for `node`, enrolled with the server's
/// CA (created by the server at start) as `pbs_server enroll` would.
async fn tls_channel(server: &Running, node: &str) -> Channel {
    let server_priv = server.home.join("server_priv");
    let ca = tls::ensure_ca(&server_priv, "vm").unwrap();
    let issued = tls::issue_node(
        &ca,
        &tls::CaPaths::new(&server_priv),
        node,
        time::OffsetDateTime::now_utc() + time::Duration::days(1),
    )
    .unwrap();
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert_pem))
        .identity(Identity::from_pem(&issued.cert_pem, &issued.key_pem))
        .domain_name("vm");
    Endpoint::from_shared(format!("https://127.0.0.1:{}", server.mom_port))
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

struct Mom {
    tx: mpsc::Sender<pb::MomMessage>,
    rx: tonic::Streaming<pb::ServerMessage>,
}

impl Mom {
    async fn connect(
        server: &Running,
        node: &str,
        held: Vec<pb::HeldRun>,
    ) -> Result<Mom, tonic::Status> {
        let mut c = MomSessionClient::new(tls_channel(server, node).await);
        let (tx, rx) = mpsc::channel(16);
        tx.send(msg(pb::mom_message::Kind::Hello(pb::Hello {
            node_name: node.into(),
            version: "test".into(),
            held_runs: held,
        })))
        .await
        .unwrap();
        let rx = c.session(ReceiverStream::new(rx)).await?.into_inner();
        let mut mom = Mom { tx, rx };
        match mom.next().await {
            pb::server_message::Kind::Welcome(w) => assert_eq!(w.server_name, "vm"),
            other => panic!("expected Welcome, got {other:?}"),
        }
        // As a MOM does: the server offers a node work once it has reported.
        mom.send(pb::mom_message::Kind::Status(pb::NodeStatus {
            state: "free".into(),
            ..Default::default()
        }))
        .await;
        Ok(mom)
    }

    async fn next(&mut self) -> pb::server_message::Kind {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("timed out waiting for the server")
            .unwrap()
            .unwrap()
            .kind
            .unwrap()
    }

    async fn send(&self, kind: pb::mom_message::Kind) {
        self.tx.send(msg(kind)).await.unwrap();
    }

    /// Reports run `run_id` ended with `exit_status` and expects the server to acknowledge it.
    async fn end(&mut self, run_id: u64, exit_status: i32) {
        self.send(pb::mom_message::Kind::Ended(pb::RunEnded {
            run_id,
            exit_status,
            ..Default::default()
        }))
        .await;
        match self.next().await {
            pb::server_message::Kind::AckEnded(a) => assert_eq!(a.run_ids, vec![run_id]),
            other => panic!("expected AckRunEnded, got {other:?}"),
        }
    }
}

fn msg(kind: pb::mom_message::Kind) -> pb::MomMessage {
    pb::MomMessage { kind: Some(kind) }
}

fn text(name: &str, value: &str) -> pb::Attr {
    pb::Attr {
        name: name.into(),
        resource: String::new(),
        value: value.into(),
        kind: 0,
    }
}

fn res(name: &str, value: &str) -> pb::Attr {
    pb::Attr {
        name: "Resource_List".into(),
        resource: name.into(),
        value: value.into(),
        kind: 0,
    }
}

async fn submit(c: &mut BatchClient<Channel>, attrs: Vec<pb::Attr>) -> pb::SubmitReply {
    c.submit(pb::SubmitRequest {
        attrs,
        script: b"#!/bin/sh\necho hi\n".to_vec(),
        destination: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn stat(c: &mut BatchClient<Channel>, id: &str) -> Vec<(String, String)> {
    let reply = c
        .stat_jobs(pb::StatJobsRequest {
            operands: vec![id.into()],
            attributes: vec![],
            expand_arrays: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    // Job listings come back as one packed table: columns once, every value a slice of
    // one string (see `StatTable` in the proto). `id` names one job: the table's only row.
    let table = reply.table.expect("StatJobs answers with a table");
    assert_eq!(table.name_ends.len(), 1);
    let cells = table.row_ends[0] as usize;
    (0..cells)
        .map(|c| {
            let a = &table.columns[table.cell_columns[c] as usize];
            let name = if a.resource.is_empty() {
                a.name.clone()
            } else {
                format!("{}.{}", a.name, a.resource)
            };
            let start = if c == 0 {
                0
            } else {
                table.value_ends[c - 1] as usize
            };
            let value = table.values[start..table.value_ends[c] as usize].to_string();
            (name, value)
        })
        .collect()
}

fn get<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn setup(nodes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server_priv")).unwrap();
    std::fs::write(dir.path().join("server_priv/nodes"), nodes).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_to_completion_and_survives_restart() {
    let dir = setup("n1 np=2 fast\n");
    let server = launch(dir.path()).await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("server_name")).unwrap(),
        "vm\n"
    );
    let mut c = client(&server.socket).await;
    let mut mom = Mom::connect(&server, "n1", vec![]).await.unwrap();

    let reply = submit(
        &mut c,
        vec![
            text("Job_Name", "job.sh"),
            res("nodes", "1:ppn=2"),
            text(
                "Variable_List",
                "PBS_O_QUEUE=batch,PBS_O_HOME=/home/u,PBS_O_WORKDIR=/tmp,PBS_O_HOST=vm",
            ),
            text("submit_args", "job.sh"),
        ],
    )
    .await;
    assert_eq!(reply.job_id, "0.vm", "{:?}", reply.error);

    let start = match mom.next().await {
        pb::server_message::Kind::Start(s) => s,
        other => panic!("expected StartRun, got {other:?}"),
    };
    assert_eq!(start.job_id, "0.vm");
    assert_eq!(start.nodefile_hosts, vec!["n1", "n1"]);
    assert_eq!(start.output_path, "/tmp/job.sh.o0");
    let env: Vec<(String, String)> = start
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    assert_eq!(env[0].0, "PBS_O_QUEUE");
    assert_eq!(get(&env, "PBS_NP"), Some("2"));
    assert_eq!(get(&env, "PBS_WALLTIME"), Some("3600"));

    let attrs = stat(&mut c, "0").await;
    assert_eq!(get(&attrs, "job_state"), Some("R"));
    assert_eq!(get(&attrs, "exec_host"), Some("n1/0-1"));
    assert_eq!(get(&attrs, "Resource_List.nodect"), Some("1"));
    assert_eq!(get(&attrs, "Resource_List.walltime"), Some("01:00:00"));
    assert_eq!(get(&attrs, "Output_Path"), Some("vm:/tmp/job.sh.o0"));
    let names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("Job_Name") < pos("Job_Owner"));
    assert!(pos("Resource_List.nodes") + 1 == pos("Resource_List.nodect"));
    assert!(pos("Variable_List") < pos("euser"));

    let nodes = c
        .stat_nodes(pb::StatNodesRequest { names: vec![] })
        .await
        .unwrap()
        .into_inner();
    let node_state = &nodes.objects[0].attrs[0].value;
    assert_eq!(node_state, "job-exclusive");

    mom.send(pb::mom_message::Kind::Started(pb::RunStarted {
        run_id: start.run_id,
        session_id: 4242,
        start_time: 0,
    }))
    .await;
    mom.send(pb::mom_message::Kind::Ended(pb::RunEnded {
        run_id: start.run_id,
        exit_status: 3,
        used: Some(pb::ResourcesUsed {
            cput_secs: 1,
            mem_kb: 10,
            vmem_kb: 20,
            walltime_secs: 2,
        }),
        end_time: 0,
        session_id: 4242,
        message: String::new(),
        copy_errors: Vec::new(),
    }))
    .await;
    match mom.next().await {
        pb::server_message::Kind::AckEnded(a) => assert_eq!(a.run_ids, vec![start.run_id]),
        other => panic!("expected AckRunEnded, got {other:?}"),
    }
    // A repeat is acknowledged and ignored.
    mom.end(start.run_id, 99).await;
    let attrs = stat(&mut c, "0.vm").await;
    assert_eq!(get(&attrs, "job_state"), Some("C"));
    assert_eq!(get(&attrs, "exit_status"), Some("3"));
    assert_eq!(get(&attrs, "session_id"), Some("4242"));
    assert_eq!(get(&attrs, "resources_used.mem"), Some("10kb"));
    assert_eq!(get(&attrs, "resources_used.cput"), Some("00:00:01"));

    // Rejections consume numbers.
    let bad = c
        .submit(pb::SubmitRequest {
            attrs: vec![],
            script: b"echo\n".to_vec(),
            destination: "nosuch".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let e = bad.error.unwrap();
    assert_eq!(
        (e.code, e.detail.as_str()),
        (15020, "requested queue not found")
    );
    let e = submit(&mut c, vec![res("foo", "bar")]).await.error.unwrap();
    assert_eq!((e.code, e.object.as_str()), (15037, "Resource_List.foo"));
    let e = submit(&mut c, vec![text("bogus", "1")])
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 15002);
    let e = submit(&mut c, vec![res("nodes", "1:ppn=4")])
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 15038);
    let e = submit(&mut c, vec![text("depend", "afterok:999")])
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 15056);

    // A dependent job waits, held with Hold_Types s.
    let reply = submit(&mut c, vec![text("Hold_Types", "u")]).await;
    assert_eq!(reply.job_id, "6.vm");
    let reply = submit(&mut c, vec![text("depend", "afterok:6")]).await;
    assert_eq!(reply.job_id, "7.vm");
    let attrs = stat(&mut c, "7").await;
    assert_eq!(get(&attrs, "job_state"), Some("H"));
    assert_eq!(get(&attrs, "Hold_Types"), Some("s"));
    assert_eq!(get(&attrs, "depend"), Some("afterok:6.vm"));
    assert_eq!(
        get(&stat(&mut c, "6").await, "depend"),
        Some("beforeok:7.vm")
    );

    // Deleting the parent (never ran: no exit status) deletes the afterok dependent.
    let r = c
        .job_action(pb::JobActionRequest {
            op: pb::JobOp::Delete as i32,
            ids: vec!["6".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.results[0].error.is_none());
    let attrs = stat(&mut c, "7").await;
    assert_eq!(get(&attrs, "job_state"), Some("C"));
    assert_eq!(get(&attrs, "exit_status"), Some("271"));
    assert_eq!(
        get(&attrs, "comment"),
        Some("Job deleted as result of dependency on job 6.vm")
    );
    let r = c
        .job_action(pb::JobActionRequest {
            op: pb::JobOp::Hold as i32,
            ids: vec!["6.vm".into(), "999".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = r.results[0].error.clone().unwrap();
    assert_eq!(
        (e.code, e.detail.as_str()),
        (15018, "invalid state for job - COMPLETE")
    );
    let e = r.results[1].error.clone().unwrap();
    assert_eq!((e.code, e.object.as_str()), (15001, "999.vm"));

    drop(mom);
    drop(c);
    server.stop().await;

    // Restart: everything committed is still there and numbering continues.
    let server = launch(dir.path()).await;
    let mut c = client(&server.socket).await;
    assert_eq!(get(&stat(&mut c, "0").await, "exit_status"), Some("3"));
    let reply = submit(&mut c, vec![]).await;
    assert_eq!(reply.job_id, "8.vm");
    let queues = c
        .stat_queues(pb::StatQueuesRequest { names: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queues.objects.len(), 1);
    assert_eq!(queues.objects[0].name, "batch");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_over_tls_need_a_submit_host() {
    let dir = setup("n1 np=1\n");
    let server = launch(dir.path()).await;
    // A worker's certificate is valid for its MOM session, but n1 is not in submit_hosts.
    let mut c = BatchClient::new(tls_channel(&server, "n1").await);
    let refused = |r: Result<tonic::Response<pb::StatReply>, tonic::Status>| match r {
        Ok(reply) => panic!(
            "listing served to a non-submit host: {:?}",
            reply.into_inner()
        ),
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert_eq!(
                capstan_proto::remote::refusal_errno(&status),
                Some(capstan_proto::pbse::BADHOST)
            );
        }
    };
    refused(c.stat_jobs(pb::StatJobsRequest::default()).await);
    refused(c.stat_queues(pb::StatQueuesRequest::default()).await);
    refused(c.stat_server(pb::StatServerRequest::default()).await);
    refused(c.stat_nodes(pb::StatNodesRequest::default()).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_qmgr_operator_is_refused_not_read_as_set() {
    let dir = setup("n1 np=1\n");
    let server = launch(dir.path()).await;
    let mut c = client(&server.socket).await;
    let managers = |reply: pb::StatReply| {
        reply.objects[0]
            .attrs
            .iter()
            .find(|a| a.name == "managers")
            .map(|a| a.value.clone())
    };
    let before = managers(
        c.stat_server(pb::StatServerRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(before.is_some());
    let status = c
        .manage(pb::ManageRequest {
            command: pb::ManageCommand::Set as i32,
            object: pb::ManageObject::Server as i32,
            name: String::new(),
            attrs: vec![pb::ManageAttr {
                name: "managers".into(),
                value: "mallory@vm".into(),
                op: 7,
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let after = managers(
        c.stat_server(pb::StatServerRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(after, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_node_is_refused_and_reconnect_reconciles() {
    let dir = setup("n1 np=1\n");
    let server = launch(dir.path()).await;
    let err = Mom::connect(&server, "intruder", vec![])
        .await
        .err()
        .expect("unknown node must be refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let mut c = client(&server.socket).await;
    let mut mom = Mom::connect(&server, "n1", vec![]).await.unwrap();
    assert_eq!(submit(&mut c, vec![]).await.job_id, "0.vm");
    let start = match mom.next().await {
        pb::server_message::Kind::Start(s) => s,
        other => panic!("expected StartRun, got {other:?}"),
    };
    drop(mom);
    // The MOM comes back holding the run plus one the server never heard of.
    let mut mom = Mom::connect(
        &server,
        "n1",
        vec![
            // Stopped there, though the server never suspended it (a resume it missed).
            pb::HeldRun {
                run_id: start.run_id,
                job_id: "0.vm".into(),
                finished: false,
                suspended: true,
                session_id: 0,
            },
            pb::HeldRun {
                run_id: 777,
                job_id: "9.vm".into(),
                finished: false,
                suspended: false,
                session_id: 0,
            },
        ],
    )
    .await
    .unwrap();
    match mom.next().await {
        pb::server_message::Kind::Cancel(c) => assert_eq!(c.run_ids, vec![777]),
        other => panic!("expected CancelRuns, got {other:?}"),
    }
    match mom.next().await {
        pb::server_message::Kind::Signal(s) => {
            assert_eq!(s.run_id, start.run_id);
            assert_eq!(
                s.kind,
                pb::SignalKind::Resume as i32,
                "the server's view again"
            );
        }
        other => panic!("expected SignalRun, got {other:?}"),
    }
    assert_eq!(get(&stat(&mut c, "0").await, "job_state"), Some("R"));
    // qdel of a running job asks the MOM to kill it; its end completes the delete.
    c.job_action(pb::JobActionRequest {
        op: pb::JobOp::Delete as i32,
        ids: vec!["0".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    match mom.next().await {
        pb::server_message::Kind::Signal(s) => {
            assert!(s.delete);
            assert_eq!(s.signal, 15);
        }
        other => panic!("expected SignalRun, got {other:?}"),
    }
    // Reconnect holding the run: the pending delete is sent again.
    drop(mom);
    let mut mom = Mom::connect(
        &server,
        "n1",
        vec![pb::HeldRun {
            run_id: start.run_id,
            job_id: "0.vm".into(),
            finished: false,
            suspended: false,
            session_id: 0,
        }],
    )
    .await
    .unwrap();
    match mom.next().await {
        pb::server_message::Kind::Signal(s) => assert!(s.delete),
        other => panic!("expected SignalRun, got {other:?}"),
    }
    // Reconnect without the run: it is lost; the pending delete ends the job.
    drop(mom);
    let mut mom = Mom::connect(&server, "n1", vec![]).await.unwrap();
    let attrs = stat(&mut c, "0").await;
    assert_eq!(
        get(&attrs, "job_state"),
        Some("C"),
        "pending delete ends the job"
    );
    assert_eq!(get(&attrs, "exit_status"), Some("271"));
    let _ = &mut mom;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_node_requeues_rerunable_jobs_and_ends_the_others() {
    let dir = setup("n1 np=2\n");
    let server = launch_with(dir.path(), Duration::from_millis(200)).await;
    let mut c = client(&server.socket).await;
    let mut mom = Mom::connect(&server, "n1", vec![]).await.unwrap();
    assert_eq!(submit(&mut c, vec![]).await.job_id, "0.vm");
    assert!(matches!(
        mom.next().await,
        pb::server_message::Kind::Start(_)
    ));
    assert_eq!(
        submit(&mut c, vec![text("Rerunable", "False")])
            .await
            .job_id,
        "1.vm"
    );
    assert!(matches!(
        mom.next().await,
        pb::server_message::Kind::Start(_)
    ));
    drop(mom);
    let mut states = (String::new(), String::new());
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a = stat(&mut c, "0").await;
        let b = stat(&mut c, "1").await;
        states = (
            get(&a, "job_state").unwrap().to_string(),
            get(&b, "job_state").unwrap().to_string(),
        );
        if states == ("Q".to_string(), "C".to_string()) {
            assert_eq!(get(&b, "exit_status"), Some("-1"));
            assert_eq!(get(&b, "comment"), Some("Job lost: node n1 went down"));
            assert_eq!(get(&a, "exec_host"), None);
            break;
        }
    }
    assert_eq!(states, ("Q".to_string(), "C".to_string()));
    let nodes = c
        .stat_nodes(pb::StatNodesRequest {
            names: vec!["n1".into(), "zz".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nodes.objects[0].attrs[0].value, "down");
    assert_eq!(nodes.errors[0].code, 15064);
    // The node comes back: the requeued job starts again with start_count 2.
    let mut mom = Mom::connect(&server, "n1", vec![]).await.unwrap();
    match mom.next().await {
        pb::server_message::Kind::Start(s) => assert_eq!(s.job_id, "0.vm"),
        other => panic!("expected StartRun, got {other:?}"),
    }
    assert_eq!(get(&stat(&mut c, "0").await, "start_count"), Some("2"));
    server.stop().await;
}

/// Rough timings (not a measurement; run with `--release -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn perf_smoke() {
    let dir = setup("n1 np=1\n");
    let server = launch(dir.path()).await;
    let mut c = client(&server.socket).await;
    let n = 5000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let r = submit(
            &mut c,
            vec![text(
                "Variable_List",
                "PBS_O_QUEUE=batch,PBS_O_HOME=/home/u,PBS_O_LOGNAME=u,PBS_O_PATH=/usr/bin:/bin,PBS_O_WORKDIR=/tmp,PBS_O_HOST=vm,PBS_O_SERVER=vm",
            )],
        )
        .await;
        assert!(r.error.is_none());
    }
    eprintln!("submit: {:?} per job", t.elapsed() / n);
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let reply = c
            .stat_jobs(pb::StatJobsRequest {
                operands: vec![],
                attributes: vec![],
                expand_arrays: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.table.as_ref().map_or(0, |t| t.name_ends.len()),
            n as usize
        );
        eprintln!("stat {} jobs: {:?}", n, t.elapsed());
        let t = std::time::Instant::now();
        let bytes = prost::Message::encode_to_vec(&reply);
        let te = t.elapsed();
        let t = std::time::Instant::now();
        let back: pb::StatReply = prost::Message::decode(bytes.as_slice()).unwrap();
        eprintln!(
            "  encode {te:?} decode {:?} ({} bytes)",
            t.elapsed(),
            bytes.len()
        );
        drop(back);
    }
    server.stop().await;
}

/// Drain rate with a MOM that ends every run at once (run with `--release -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn perf_drain() {
    let dir = setup("n1 np=8\n");
    let server = launch(dir.path()).await;
    let mut c = client(&server.socket).await;
    let n = 2000usize;
    for _ in 0..n {
        assert!(submit(&mut c, vec![text("Hold_Types", "u")])
            .await
            .error
            .is_none());
    }
    let mut mom = Mom::connect(&server, "n1", vec![]).await.unwrap();
    // Latency on an idle cluster: submit returns → StartRun at the MOM.
    let mut probe = client(&server.socket).await;
    let r = submit(&mut probe, vec![]).await;
    let t = std::time::Instant::now();
    match mom.next().await {
        pb::server_message::Kind::Start(s) => {
            eprintln!("submit → StartRun: {:?}", t.elapsed());
            assert_eq!(s.job_id, r.job_id);
            mom.end(s.run_id, 0).await;
        }
        other => panic!("expected StartRun, got {other:?}"),
    }
    let t = std::time::Instant::now();
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    c.job_action(pb::JobActionRequest {
        op: pb::JobOp::Release as i32,
        ids,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ended = 0;
    while ended < n {
        match mom.next().await {
            pb::server_message::Kind::Start(s) => {
                mom.send(pb::mom_message::Kind::Ended(pb::RunEnded {
                    run_id: s.run_id,
                    exit_status: 0,
                    ..Default::default()
                }))
                .await;
            }
            pb::server_message::Kind::AckEnded(a) => ended += a.run_ids.len(),
            _ => {}
        }
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "drained {n} jobs in {secs:.2}s: {:.0} jobs/s",
        n as f64 / secs
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_named_again_is_not_built_again() {
    let dir = setup("n1 np=1\n");
    let server = launch(dir.path()).await;
    let mut c = client(&server.socket).await;
    for _ in 0..3 {
        let reply = submit(&mut c, vec![]).await;
        assert!(reply.error.is_none(), "{:?}", reply.error);
    }
    // Two hundred thousand listings of everything, then of queue batch: still three rows.
    let mut operands = vec![String::new(); 200_000];
    operands.push("batch".into());
    let reply = c
        .stat_jobs(pb::StatJobsRequest {
            operands,
            attributes: vec!["job_state".into()],
            expand_arrays: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert_eq!(reply.table.unwrap().name_ends.len(), 3);
    server.stop().await;
}

/// A scripted MOM's `Terminal` stream for run `run_id`, claiming to be `node` over `node`'s
/// certificate: its sender and, if the server accepted it, the server's side.
async fn open_terminal(
    server: &Running,
    node: &str,
    run_id: u64,
) -> (
    mpsc::Sender<pb::TerminalFromMom>,
    Result<tonic::Streaming<pb::TerminalToMom>, tonic::Status>,
) {
    let mut c = MomSessionClient::new(tls_channel(server, node).await);
    let (tx, rx) = mpsc::channel(16);
    let open = pb::terminal_from_mom::Kind::Open(pb::TerminalOpen {
        run_id,
        node_name: node.into(),
    });
    tx.send(pb::TerminalFromMom { kind: Some(open) })
        .await
        .unwrap();
    let answer = c
        .terminal(ReceiverStream::new(rx))
        .await
        .map(|r| r.into_inner());
    (tx, answer)
}

async fn next_output(
    stream: &mut tonic::Streaming<pb::InteractiveOutput>,
) -> pb::interactive_output::Kind {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("timed out waiting for the server")
        .unwrap()
        .expect("stream open")
        .kind
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_terminal_pairs_its_qsub_with_its_own_mom_only() {
    let dir = setup("n1 np=1\nn2 np=1\n");
    let server = launch(dir.path()).await;
    let mut c = client(&server.socket).await;
    let mut n1 = Mom::connect(&server, "n1", vec![]).await.unwrap();
    let _n2 = Mom::connect(&server, "n2", vec![]).await.unwrap();

    // qsub -I: the submission first, on the stream that then carries the terminal.
    let (keys, rx) = mpsc::channel(16);
    let submit = pb::InteractiveSubmit {
        request: Some(pb::SubmitRequest {
            attrs: vec![text("Job_Name", "STDIN"), res("nodes", "1")],
            script: Vec::new(),
            destination: String::new(),
        }),
        term: "xterm-test".into(),
        window: Some(pb::WindowSize {
            rows: 30,
            cols: 100,
        }),
        command: String::new(),
    };
    let input = |kind| pb::InteractiveInput { kind: Some(kind) };
    keys.send(input(pb::interactive_input::Kind::Submit(submit)))
        .await
        .unwrap();
    let mut qsub = c
        .interactive(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    match next_output(&mut qsub).await {
        pb::interactive_output::Kind::Submitted(reply) => {
            assert_eq!(reply.job_id, "0.vm", "{:?}", reply.error)
        }
        other => panic!("expected submitted, got {other:?}"),
    }
    let start = match n1.next().await {
        pb::server_message::Kind::Start(s) => s,
        other => panic!("expected StartRun, got {other:?}"),
    };
    let terminal = start.terminal.clone().expect("an interactive StartRun");
    assert_eq!(terminal.term, "xterm-test");
    assert_eq!(
        terminal.window,
        Some(pb::WindowSize {
            rows: 30,
            cols: 100
        })
    );
    let env = |name: &str| {
        start
            .env
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value.clone())
    };
    assert_eq!(env("PBS_ENVIRONMENT").as_deref(), Some("PBS_INTERACTIVE"));
    let attrs = stat(&mut c, "0.vm").await;
    assert_eq!(get(&attrs, "interactive"), Some("True"));
    assert_eq!(get(&attrs, "Rerunable"), Some("False"));

    // Another node cannot open the job's terminal, whatever it claims.
    let (_, refused) = open_terminal(&server, "n2", start.run_id).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::NotFound);

    // The mother superior can, once; qsub hears `ready`, and the size comes first.
    let (output, accepted) = open_terminal(&server, "n1", start.run_id).await;
    let mut to_mom = accepted.expect("the mother superior's terminal");
    match next_output(&mut qsub).await {
        pb::interactive_output::Kind::Ready(node) => assert_eq!(node, "n1"),
        other => panic!("expected ready, got {other:?}"),
    }
    let (_, again) = open_terminal(&server, "n1", start.run_id).await;
    assert_eq!(again.unwrap_err().code(), tonic::Code::FailedPrecondition);
    let next_down = |m: Option<pb::TerminalToMom>| m.and_then(|m| m.kind).expect("a message");
    match next_down(to_mom.message().await.unwrap()) {
        pb::terminal_to_mom::Kind::Window(w) => assert_eq!((w.rows, w.cols), (30, 100)),
        other => panic!("expected the window first, got {other:?}"),
    }

    // Keys down, output up.
    keys.send(input(pb::interactive_input::Kind::Input(b"ls\r".to_vec())))
        .await
        .unwrap();
    match next_down(to_mom.message().await.unwrap()) {
        pb::terminal_to_mom::Kind::Input(bytes) => assert_eq!(bytes, b"ls\r"),
        other => panic!("expected keys, got {other:?}"),
    }
    let out = pb::terminal_from_mom::Kind::Output(b"file\r\n".to_vec());
    output
        .send(pb::TerminalFromMom { kind: Some(out) })
        .await
        .unwrap();
    match next_output(&mut qsub).await {
        pb::interactive_output::Kind::Output(bytes) => assert_eq!(bytes, b"file\r\n"),
        other => panic!("expected output, got {other:?}"),
    }

    // The end is recorded before the terminal closes: qsub hears it only after the last
    // output, once the terminal has closed.
    n1.end(start.run_id, 3).await;
    let last = pb::terminal_from_mom::Kind::Output(b"logout\r\n".to_vec());
    output
        .send(pb::TerminalFromMom { kind: Some(last) })
        .await
        .unwrap();
    drop(output);
    match next_output(&mut qsub).await {
        pb::interactive_output::Kind::Output(bytes) => assert_eq!(bytes, b"logout\r\n"),
        other => panic!("expected the last output, got {other:?}"),
    }
    match next_output(&mut qsub).await {
        pb::interactive_output::Kind::Ended(end) => {
            assert!(end.started);
            assert_eq!(end.exit_status, 3);
        }
        other => panic!("expected ended, got {other:?}"),
    }
    assert_eq!(get(&stat(&mut c, "0.vm").await, "exit_status"), Some("3"));
    server.stop().await;
}
