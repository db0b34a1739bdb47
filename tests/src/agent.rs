//! The agent protocol by hand, for tests that must send what no well-behaved worker sends
//! (a late `Accept`, a `Finished` for an attempt the server took away) or must hold back
//! what every worker sends (an `Accept`).

use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::agent_service_client::AgentServiceClient;
use berth_common::proto::server_message::Msg as ServerMsg;
use berth_common::proto::worker_message::Msg as WorkerMsg;
use berth_common::proto::{AttemptRef, Hello, ServerMessage, Welcome, WorkerMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use crate::{Authed, TestServer};

/// One control stream, driven message by message by the test.
pub struct RawAgent {
    /// What the test sends on the stream.
    tx: mpsc::UnboundedSender<WorkerMessage>,
    /// What the server sends.
    inbound: Streaming<ServerMessage>,
    /// The same token's client, for `AppendLog`.
    pub client: AgentServiceClient<Authed>,
}

/// A `Hello` for `name` with `concurrency` slots, listing `running` as still running.
pub fn raw_hello(name: &str, concurrency: u32, running: Vec<AttemptRef>) -> Hello {
    Hello {
        protocol_version: berth_common::PROTOCOL_VERSION,
        name: name.to_owned(),
        concurrency,
        running,
        ..Default::default()
    }
}

impl RawAgent {
    /// Opens a stream to `server` with worker token `token`, sends `hello` and returns the
    /// stream with the server's `Welcome`.
    pub async fn connect(server: &TestServer, token: &str, hello: Hello) -> (RawAgent, Welcome) {
        let mut client =
            AgentServiceClient::with_interceptor(server.channel().await, BearerAuth::new(token));
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(WorkerMessage {
            msg: Some(WorkerMsg::Hello(hello)),
        })
        .unwrap_or_else(|_| panic!("the stream's receiver is right here"));
        let inbound = client
            .connect(UnboundedReceiverStream::new(rx))
            .await
            .unwrap_or_else(|status| panic!("Connect was refused: {status:?}"))
            .into_inner();
        let mut agent = RawAgent {
            tx,
            inbound,
            client,
        };
        match agent.next(Duration::from_secs(30)).await {
            ServerMsg::Welcome(welcome) => (agent, welcome),
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    /// Sends `msg` on the stream.
    pub fn send(&self, msg: WorkerMsg) {
        self.tx
            .send(WorkerMessage { msg: Some(msg) })
            .unwrap_or_else(|_| panic!("the raw agent's stream is closed"));
    }

    /// A sender for the stream, for a task that keeps it alive with heartbeats.
    pub fn sender(&self) -> mpsc::UnboundedSender<WorkerMessage> {
        self.tx.clone()
    }

    /// The server's next message; panics if none comes `within`, or the stream ends.
    pub async fn next(&mut self, within: Duration) -> ServerMsg {
        let message = tokio::time::timeout(within, self.inbound.message())
            .await
            .unwrap_or_else(|_| panic!("the server sent nothing within {within:?}"))
            .unwrap_or_else(|status| panic!("the stream failed: {status:?}"))
            .unwrap_or_else(|| panic!("the server ended the stream"));
        message
            .msg
            .unwrap_or_else(|| panic!("the server sent an empty message"))
    }
}
