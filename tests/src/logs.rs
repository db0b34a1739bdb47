//! Logs as users read them: through `WorkRequestService.StreamLogs`, never from the
//! database.

use std::time::Duration;

use berth_common::proto::{LogChunk, StreamLogsRequest};
use futures::StreamExt;
use tonic::Streaming;

use crate::TestServer;

/// The container's standard output.
pub const STDOUT: u32 = 1;
/// The container's standard error.
pub const STDERR: u32 = 2;
/// The worker's notes (timeouts, stops).
pub const SYSTEM: u32 = 3;
/// The server's own notes, such as the truncation marker.
pub const NOTES: u32 = 4;

/// Opens StreamLogs for every attempt of `id`.
pub async fn open_logs(server: &TestServer, id: &str, follow: bool) -> Streaming<LogChunk> {
    server
        .work_requests(&server.admin_token)
        .await
        .max_decoding_message_size(64 * 1024 * 1024)
        .stream_logs(StreamLogsRequest {
            id: id.to_owned(),
            follow,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("StreamLogs for {id}: {status:?}"))
        .into_inner()
}

/// A request's whole stored log, as StreamLogs (not following) returns it.
pub struct Logs {
    /// Every chunk, in the order StreamLogs sent them.
    pub chunks: Vec<LogChunk>,
}

impl Logs {
    /// Reads every stored chunk of every attempt of `id`.
    pub async fn read(server: &TestServer, id: &str) -> Logs {
        let mut stream = open_logs(server, id, false).await;
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunks
                .push(chunk.unwrap_or_else(|status| panic!("reading the log of {id}: {status:?}")));
        }
        Logs { chunks }
    }

    /// The bytes of one stream, checking on the way that its chunks follow each other
    /// without a gap or an overlap.
    pub fn bytes(&self, stream: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for chunk in self.chunks.iter().filter(|c| c.stream == stream) {
            assert_eq!(
                chunk.offset,
                bytes.len() as u64,
                "stream {stream}: a chunk starts at {} after {} bytes",
                chunk.offset,
                bytes.len()
            );
            bytes.extend_from_slice(&chunk.data);
        }
        bytes
    }

    /// The text of one stream (see [`Logs::bytes`]).
    pub fn text(&self, stream: u32) -> String {
        String::from_utf8(self.bytes(stream))
            .unwrap_or_else(|e| panic!("stream {stream} is not UTF-8: {e}"))
    }
}

/// The rest of a (following) log stream, which must end within `within`: a follower's
/// stream ends once the request has ended.
pub async fn rest_of(stream: &mut Streaming<LogChunk>, within: Duration) -> Vec<LogChunk> {
    tokio::time::timeout(within, async {
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            rest.push(chunk.unwrap_or_else(|status| panic!("following the log: {status:?}")));
        }
        rest
    })
    .await
    .unwrap_or_else(|_| panic!("the log stream did not end within {within:?}"))
}
