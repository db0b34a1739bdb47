//! One worker that stops reading its stream must not hold up any other worker.
//!
//! Everything the server tells a worker goes through one bounded queue per stream, and
//! sending never waits: a worker whose queue is full has its stream closed (it
//! reconnects and reconciles). These tests make a worker that sends but never reads, fill
//! its queue, and check that another worker's assignments and reports go on.

#![expect(clippy::unwrap_used, reason = "tests: a failure should fail the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_common::PROTOCOL_VERSION;
use berth_common::client::BearerAuth;
use berth_common::proto::agent_service_client::AgentServiceClient;
use berth_common::proto::worker_message::Msg;
use berth_common::proto::{
    Accept, AttemptRef, Hello, Role, WorkRequestStatus, WorkResult, WorkerMessage,
};
use berth_tests::{SimOptions, TestServer, eventually, get, result, spec, status, submit};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A worker stream that says Hello and then only sends: it never reads what the server
/// sends it, like a worker process that hangs.
struct DeafWorker {
    tx: mpsc::Sender<WorkerMessage>,
    inbound: tonic::Streaming<berth_common::proto::ServerMessage>,
}

impl DeafWorker {
    async fn connect(server: &TestServer, name: &str) -> DeafWorker {
        let (_, token) = server.create_token(Role::Worker, name).await;
        let mut client =
            AgentServiceClient::with_interceptor(server.channel().await, BearerAuth::new(&token));
        let (tx, rx) = mpsc::channel(1024);
        tx.send(WorkerMessage {
            msg: Some(Msg::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                name: name.into(),
                concurrency: 1,
                // Exclusive: only requests that ask for it go here.
                labels: [("lane".to_owned(), "deaf!".to_owned())].into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let inbound = client
            .connect(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        DeafWorker { tx, inbound }
    }

    /// Sends up to `count` Accepts for attempts that do not exist: the server answers
    /// each with a Cancel, which this worker never reads. Returns when the server has
    /// stopped taking them: it closed the stream, or it no longer reads it.
    async fn provoke(&self, count: usize) {
        let sent = Arc::new(AtomicUsize::new(0));
        let tx = self.tx.clone();
        let counter = sent.clone();
        let sending = tokio::spawn(async move {
            for _ in 0..count {
                let accept = WorkerMessage {
                    msg: Some(Msg::Accept(Accept {
                        attempt: Some(AttemptRef {
                            work_request_id: uuid::Uuid::now_v7().to_string(),
                            attempt: 1,
                        }),
                    })),
                };
                if tx.send(accept).await.is_err() {
                    // The server closed the stream: it has seen enough.
                    return;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = sent.load(Ordering::Relaxed);
            if sending.is_finished() || now == last {
                break;
            }
            last = now;
        }
        sending.abort();
    }

    /// Reads what the server queued, then returns how the stream ended.
    async fn ending(mut self) -> tonic::Status {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.inbound.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => panic!("the server ended the stream without saying why"),
                Ok(Err(status)) => return status,
                Err(_) => panic!("the server never closed the deaf worker's stream"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_stops_reading_does_not_delay_another_workers_reports() {
    let server = TestServer::start_with(|config| config.agent.outbox_slack = 0).await;
    let healthy = server.sim_worker(SimOptions::default()).await;
    let deaf = DeafWorker::connect(&server, "deaf").await;

    // Enough Cancels to fill the HTTP/2 windows and buffers between the server and the
    // deaf worker (megabytes), and then its queue. Before the outbox, the recorder waited
    // for room on the deaf worker's stream, and every other worker's reports waited
    // behind it.
    deaf.provoke(100_000).await;

    let request = submit(&server, spec(&["true"])).await;
    let done = eventually(
        "the healthy worker's request to complete",
        Duration::from_secs(60),
        || async {
            let found = get(&server, &request.id).await;
            (status(&found) == WorkRequestStatus::Completed).then_some(found)
        },
    )
    .await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");

    let ended = deaf.ending().await;
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
    assert!(
        ended.message().contains("did not read its stream"),
        "{ended:?}"
    );
    drop(healthy);
}
