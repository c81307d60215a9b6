//! The session protocol against a fake server: Hello first, Welcome, work,
//! results, acknowledgement, reconnect after the server drops the stream,
//! graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

mod common;

use capstan_mom::runner::Runner;
use capstan_mom::session::{Session, SessionOptions};
use capstan_mom::shutdown::Shutdown;
use capstan_mom::status::Collector;
use capstan_proto::v1::mom_session_server::{MomSession, MomSessionServer};
use capstan_proto::v1::{
    mom_message, server_message, AckRunEnded, Hello, MomMessage, ServerMessage, StartRun,
    TerminalFromMom, TerminalToMom, Welcome,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

type Out = mpsc::UnboundedSender<Result<ServerMessage, Status>>;

struct Fake {
    sessions: mpsc::UnboundedSender<(Hello, Out, Streaming<MomMessage>)>,
}

#[tonic::async_trait]
impl MomSession for Fake {
    type SessionStream = UnboundedReceiverStream<Result<ServerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<MomMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await?.and_then(|m| m.kind) {
            Some(mom_message::Kind::Hello(h)) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.sessions.send((hello, tx, inbound));
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    type TerminalStream = UnboundedReceiverStream<Result<TerminalToMom, Status>>;

    /// No interactive job runs here.
    async fn terminal(
        &self,
        _request: Request<Streaming<TerminalFromMom>>,
    ) -> Result<Response<Self::TerminalStream>, Status> {
        Err(Status::unimplemented("no terminals in this fake"))
    }
}

fn msg(kind: server_message::Kind) -> Result<ServerMessage, Status> {
    Ok(ServerMessage { kind: Some(kind) })
}

/// Next message that is not a status heartbeat, within 20 s (heartbeats do not extend it).
async fn next_event(inbound: &mut Streaming<MomMessage>) -> mom_message::Kind {
    let next = async {
        loop {
            let m = inbound
                .message()
                .await
                .expect("stream ok")
                .expect("stream open");
            match m.kind.expect("kind") {
                mom_message::Kind::Status(_) => continue,
                other => return other,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), next)
        .await
        .expect("message in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_welcome_run_ack_reconnect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stx, mut srx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MomSessionServer::new(Fake { sessions: stx }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let bed = common::bed();
    let (layout, work) = (bed.layout.clone(), bed.work.clone());
    let (etx, erx) = mpsc::unbounded_channel();
    let runner = Runner::new(
        layout.clone(),
        "node1".into(),
        etx,
        common::supervisor_exe(),
    );
    let session = Session::new(
        SessionOptions {
            server: addr.to_string(),
            node_name: "node1".into(),
            // The protocol is what is tested here; TLS is covered end to end in
            // tests/tests/security.rs.
            tls: None,
        },
        Arc::clone(&runner),
        erx,
        Collector::new(layout.config()),
    )
    .expect("session");
    let (notify, _) = broadcast::channel(1);
    let mom = tokio::spawn(session.run(Shutdown::new(notify.subscribe())));

    let (hello, out, mut inbound) = srx.recv().await.expect("first session");
    assert_eq!(hello.node_name, "node1");
    assert!(hello.held_runs.is_empty());
    out.send(msg(server_message::Kind::Welcome(Welcome {
        server_name: "vm".into(),
        status_interval_secs: 1,
        lost_grace_secs: 0,
    })))
    .expect("welcome");

    // The first status comes at once.
    let first = tokio::time::timeout(Duration::from_secs(10), inbound.message())
        .await
        .expect("status in time")
        .expect("ok")
        .expect("open");
    match first.kind {
        Some(mom_message::Kind::Status(s)) => {
            assert_eq!(s.opsys, "linux");
            assert!(s.physmem_kb > 0 && s.ncpus > 0);
            assert!(s.state == "free" || s.state == "busy");
        }
        other => panic!("expected status, got {other:?}"),
    }

    let user = nix::unistd::User::from_uid(nix::unistd::Uid::current())
        .ok()
        .flatten()
        .expect("user");
    let start = StartRun {
        run_id: 7,
        job_id: "0.vm".into(),
        job_name: "job.sh".into(),
        job_seq: "0".into(),
        euser: user.name.clone(),
        script: b"echo hello\nexit 2\n".to_vec(),
        output_path: work.join("job.sh.o0").display().to_string(),
        error_path: work.join("job.sh.e0").display().to_string(),
        join_path: "n".into(),
        keep_files: "n".into(),
        shell: "/bin/sh".into(),
        init_work_dir: work.display().to_string(),
        allow_root: true,
        ..Default::default()
    };
    out.send(msg(server_message::Kind::Start(start.clone())))
        .expect("start");
    // A repeat of the same run id is ignored.
    out.send(msg(server_message::Kind::Start(start)))
        .expect("start again");
    match next_event(&mut inbound).await {
        mom_message::Kind::Started(s) => assert_eq!(s.run_id, 7),
        other => panic!("expected Started, got {other:?}"),
    }
    match next_event(&mut inbound).await {
        mom_message::Kind::Ended(e) => {
            assert_eq!((e.run_id, e.exit_status), (7, 2));
            assert!(e.used.is_some());
        }
        other => panic!("expected Ended, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(work.join("job.sh.o0")).expect("out"),
        "hello\n"
    );

    // Drop the stream without acknowledging: the MOM reconnects, lists the
    // finished run in Hello and sends its result again.
    drop(out);
    drop(inbound);
    let (hello, out, mut inbound) = tokio::time::timeout(Duration::from_secs(20), srx.recv())
        .await
        .expect("reconnect in time")
        .expect("second session");
    assert_eq!(hello.held_runs.len(), 1);
    assert_eq!(hello.held_runs[0].run_id, 7);
    assert!(hello.held_runs[0].finished);
    out.send(msg(server_message::Kind::Welcome(Welcome {
        server_name: "vm".into(),
        status_interval_secs: 60,
        lost_grace_secs: 0,
    })))
    .expect("welcome");
    match next_event(&mut inbound).await {
        mom_message::Kind::Ended(e) => assert_eq!((e.run_id, e.exit_status), (7, 2)),
        other => panic!("expected re-sent Ended, got {other:?}"),
    }
    out.send(msg(server_message::Kind::AckEnded(AckRunEnded {
        run_ids: vec![7],
    })))
    .expect("ack");
    assert!(common::wait_until(Duration::from_secs(2), || runner.held().is_empty()).await);
    assert!(!layout.record(7).exists());

    drop(notify);
    tokio::time::timeout(Duration::from_secs(5), mom)
        .await
        .expect("MOM stops on shutdown")
        .expect("join");
}
