//! Job logs on their way to the server: spooled to disk, uploaded with acknowledged offsets.
//!
//! Berth promises that logs are never lost, and a user reading a log must never see a line
//! twice. The worker cannot get there by sending output as it comes: the server may
//! restart in the middle of a job, a call may fail after the server stored its bytes, and
//! the worker itself may restart while the server still lacks the end of a log. So the
//! log path has two halves that only meet through files:
//!
//! - [`LogSpool::write`] appends every (already masked) byte of each stream of an attempt
//!   to a spool file, `<spool-dir>/<work_request_id>.<attempt>.<stream>.log`, as the
//!   container produces it. Writing never waits for the network, so a slow or absent
//!   server never stalls a job.
//! - [`upload`] sends each stream from its acknowledged offset with `AppendLog` and moves
//!   on to whatever offset the server acknowledges. The offset in every request makes the
//!   call idempotent: after any failure the uploader resends from the last acknowledged
//!   offset, and the server keeps only the bytes it did not have. Whatever the server
//!   answers is the truth — if it already had more, or has less (it lost data, or we
//!   resumed past what it has), the uploader continues from the server's offset. The
//!   spool keeps every byte until the caller removes it, so rewinding is always possible.
//!
//! Each acknowledged offset is also written next to its spool file (`….acked`), so a
//! worker that restarts resumes from there instead of resending whole logs; the first call
//! after a restart checks that offset with the server, which still has the last word.
//!
//! Uploading ends when the spool is closed and every byte is acknowledged (the worker
//! reports `Finished` only then), when the server refuses the attempt (fenced, or the
//! worker's token was refused: the caller abandons the attempt), or when the caller
//! cancels it. An unreachable server is not an end: the uploader retries with jittered
//! exponential backoff for as long as it takes.
//!
//! The spool survives the worker process dying (the bytes are in the page cache), not a
//! power loss: it is not fsynced on every write, which would cost far more than the rare
//! loss it would prevent.
//!
//! # Cost per byte
//!
//! A chatty job writes tens of MiB per second, on a host whose CPUs also run the job and
//! the Docker engine, so every copy and every thread hop per write shows in the job's wall
//! time. Two things keep the path short:
//!
//! - A write goes to the spool file with one plain `write(2)` on the calling task rather
//!   than through `tokio::fs` (which copies the bytes and hands them to a blocking thread,
//!   a round trip per container frame). Appending to the page cache does not wait for the
//!   disk; it can only block under the kernel's dirty-page throttling, when the disk is
//!   far behind anyway.
//! - The bytes of each write are also kept in memory, in blocks of up to one call's size,
//!   until the uploader takes them: when the upload keeps up, which is the normal case,
//!   each block goes into an `AppendLog` request as it is, without reading the file back.
//!   The memory is bounded ([`RECENT_BYTES`] per stream): when the uploader falls behind
//!   (a slow or absent server), the oldest blocks are dropped and the uploader reads those
//!   bytes from the file instead. Resends after a failure read the file too, so a block
//!   is never needed twice.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, MutexGuard, PoisonError};
use std::time::Duration;

use berth_common::client::{BearerAuth, describe_status};
use berth_common::proto::agent_service_client::AgentServiceClient;
use berth_common::proto::{AppendLogRequest, AttemptRef, LogStream};
use rand::Rng;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The client type the worker talks to the server with.
pub type AgentClient = AgentServiceClient<InterceptedService<Channel, BearerAuth>>;

/// The streams every attempt has, in the order of [`LogSpool`]'s files.
const STREAMS: [LogStream; 3] = [LogStream::Stdout, LogStream::Stderr, LogStream::System];

/// Most bytes sent in one `AppendLog` call. Fewer, larger calls cost the server and
/// PostgreSQL less per byte (one transaction each), but every process on the way holds a
/// few copies of a call at once (the server's peak RSS grows with it: about 125 MiB in
/// the `logs` bench at the server's limit of 4 MiB, against 50 MiB at 1 MiB).
const MAX_CHUNK: usize = 2 * 1024 * 1024;

/// Most bytes of one stream kept in memory for the uploader (see the module docs): two
/// full calls, so the next block fills while one is on its way.
const RECENT_BYTES: usize = 2 * MAX_CHUNK;

/// The spooled logs of one attempt: a file per stream, and what the server acknowledged
/// of each. Cheap to clone; clones share the files.
#[derive(Clone)]
pub struct LogSpool {
    inner: Arc<Inner>,
}

struct Inner {
    work_request_id: String,
    attempt: u32,
    streams: [StreamSpool; 3],
}

/// One stream's spool file and counters.
struct StreamSpool {
    stream: LogStream,
    path: PathBuf,
    acked_path: PathBuf,
    /// The file opened for appending; the lock keeps each write whole and in order.
    file: SyncMutex<std::fs::File>,
    /// The newest bytes, for the uploader to take without reading the file.
    recent: SyncMutex<Recent>,
    /// How far the file is written and whether more may come; uploaders wait on it.
    progress: watch::Sender<Progress>,
    /// The last offset the server acknowledged (or that a restarted worker read back).
    acked: AtomicU64,
}

/// The bytes of one stream from `start` to the end of what is written, in blocks of at
/// most `block` bytes, none of them empty. Every byte here is also in the spool file;
/// this is only a shortcut past reading it back.
struct Recent {
    /// Stream offset of the first byte held.
    start: u64,
    blocks: VecDeque<Vec<u8>>,
    /// Bytes held.
    len: usize,
    /// Largest block: the most the uploader sends in one call.
    block: usize,
    /// Most bytes held; the oldest blocks go first.
    limit: usize,
}

impl Recent {
    fn new(start: u64, block: usize, limit: usize) -> Recent {
        Recent {
            start,
            blocks: VecDeque::new(),
            len: 0,
            block: block.max(1),
            limit,
        }
    }

    /// Appends the bytes written after the current end.
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = match self.blocks.back() {
                Some(last) => self.block.saturating_sub(last.len()),
                None => 0,
            };
            let take = if room > 0 {
                room.min(data.len())
            } else {
                // A fresh block sized for a whole call, so it never grows by copying.
                self.blocks.push_back(Vec::with_capacity(self.block));
                self.block.min(data.len())
            };
            let (now, rest) = data.split_at(take);
            if let Some(last) = self.blocks.back_mut() {
                last.extend_from_slice(now);
            }
            self.len += take;
            data = rest;
        }
        while self.len > self.limit {
            self.pop_front();
        }
    }

    /// Hands over at most `max` bytes from `offset` on (to the end of the block holding
    /// it at most), or `None` if they are no longer (or not yet) here. Everything before
    /// `offset` is let go: the uploader only moves forward from what it takes, and a
    /// rewind reads the file.
    fn take(&mut self, offset: u64, max: usize) -> Option<Vec<u8>> {
        if offset < self.start || max == 0 {
            return None;
        }
        loop {
            let first = self.blocks.front()?;
            if offset < self.start + first.len() as u64 {
                break;
            }
            self.pop_front();
        }
        let mut block = self.pop_front()?;
        let block_start = self.start - block.len() as u64;
        let skip = usize::try_from(offset - block_start).ok()?;
        if skip > 0 {
            // Only after a rewind, or a file read that ended inside a block.
            block.drain(..skip);
        }
        if block.len() > max {
            // Only when blocks are larger than the uploader's calls.
            let rest = block.split_off(max);
            self.start -= rest.len() as u64;
            self.len += rest.len();
            self.blocks.push_front(rest);
        }
        Some(block)
    }

    fn pop_front(&mut self) -> Option<Vec<u8>> {
        let block = self.blocks.pop_front()?;
        self.start += block.len() as u64;
        self.len -= block.len();
        Some(block)
    }
}

/// Locks a mutex that a panicking holder may have poisoned: the data under these locks
/// stays consistent at every step (a write that fails is cut off the file).
fn lock<T>(mutex: &SyncMutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone, Copy, Debug)]
struct Progress {
    /// Bytes in the spool file.
    written: u64,
    /// No more bytes will come.
    closed: bool,
}

impl LogSpool {
    /// Creates (or, after a worker restart, reopens) the spool files for this attempt.
    ///
    /// A reopened spool keeps the bytes already written and starts from the acknowledged
    /// offsets saved next to them. `work_request_id` becomes part of file names, so it may
    /// hold only ASCII letters, digits, `-` and `_`.
    pub async fn open(dir: &Path, work_request_id: &str, attempt: u32) -> io::Result<LogSpool> {
        Self::open_with(dir, work_request_id, attempt, MAX_CHUNK, RECENT_BYTES).await
    }

    /// [`open`](LogSpool::open) with the block size and memory limit of [`Recent`] (tests
    /// shrink them). Blocks should be the uploader's `max_chunk`; larger ones are split.
    async fn open_with(
        dir: &Path,
        work_request_id: &str,
        attempt: u32,
        block: usize,
        recent_limit: usize,
    ) -> io::Result<LogSpool> {
        let safe = !work_request_id.is_empty()
            && work_request_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !safe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("work request id {work_request_id:?} cannot name a spool file"),
            ));
        }
        tokio::fs::create_dir_all(dir).await?;
        let mut streams = Vec::with_capacity(STREAMS.len());
        for stream in STREAMS {
            let base = format!("{work_request_id}.{attempt}.{}", stream_name(stream));
            let path = dir.join(format!("{base}.log"));
            let acked_path = dir.join(format!("{base}.acked"));
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await?
                .into_std()
                .await;
            let written = file.metadata()?.len();
            let acked = read_acked(&acked_path, written).await;
            let (progress, _) = watch::channel(Progress {
                written,
                closed: false,
            });
            streams.push(StreamSpool {
                stream,
                path,
                acked_path,
                file: SyncMutex::new(file),
                recent: SyncMutex::new(Recent::new(written, block, recent_limit)),
                progress,
                acked: AtomicU64::new(acked),
            });
        }
        let streams: [StreamSpool; 3] = streams
            .try_into()
            .map_err(|_| io::Error::other("spool streams miscounted"))?;
        Ok(LogSpool {
            inner: Arc::new(Inner {
                work_request_id: work_request_id.to_owned(),
                attempt,
                streams,
            }),
        })
    }

    /// The work request this spool belongs to.
    pub fn work_request_id(&self) -> &str {
        &self.inner.work_request_id
    }

    /// The attempt this spool belongs to.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Appends bytes to a stream's spool file and wakes the uploader. The bytes must
    /// already be masked: everything written here reaches the server. Fails after
    /// [`close`](LogSpool::close), since an upload may already have finished.
    ///
    /// The file is written on the calling task (see the module docs): the call returns
    /// once the bytes are in the page cache.
    pub async fn write(&self, stream: LogStream, data: &[u8]) -> io::Result<()> {
        let spool = self.stream(stream)?;
        if data.is_empty() {
            return Ok(());
        }
        let mut file = lock(&spool.file);
        let Progress { written, closed } = *spool.progress.borrow();
        if closed {
            return Err(io::Error::other(format!(
                "the log spool of {} attempt {} is closed",
                self.inner.work_request_id, self.inner.attempt
            )));
        }
        // `File` is unbuffered: once `write_all` returns, the bytes are in the file for the
        // uploader's reads through another handle.
        if let Err(error) = file.write_all(data) {
            // Cut off a partial write so later bytes still land at the offsets the
            // uploader counts (these bytes are lost either way).
            if let Err(truncate) = file.set_len(written) {
                tracing::error!(
                    path = %spool.path.display(),
                    error = %truncate,
                    "cannot cut a failed write off the log spool; its offsets may be wrong",
                );
            }
            return Err(error);
        }
        // In memory before the uploader hears of the bytes, so it finds them there.
        lock(&spool.recent).push(data);
        spool
            .progress
            .send_modify(|progress| progress.written += data.len() as u64);
        Ok(())
    }

    /// No more bytes will come for this attempt; uploading ends once all are acknowledged.
    /// Closing twice is harmless.
    pub async fn close(&self) {
        for spool in &self.inner.streams {
            // Under the write lock, so no write can land after the uploader saw "closed".
            let _file = lock(&spool.file);
            spool
                .progress
                .send_modify(|progress| progress.closed = true);
        }
    }

    /// Removes the spool files (after everything is acknowledged). Files already gone are
    /// not an error.
    pub async fn remove(&self) -> io::Result<()> {
        for spool in &self.inner.streams {
            for path in [
                &spool.path,
                &spool.acked_path,
                &temp_path(&spool.acked_path),
            ] {
                match tokio::fs::remove_file(path).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }

    /// Bytes written to `stream` so far.
    pub fn written(&self, stream: LogStream) -> u64 {
        self.stream(stream)
            .map(|spool| spool.progress.borrow().written)
            .unwrap_or(0)
    }

    /// Bytes of `stream` the server has acknowledged, as far as this worker knows.
    pub fn acknowledged(&self, stream: LogStream) -> u64 {
        self.stream(stream)
            .map(|spool| spool.acked.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    fn stream(&self, stream: LogStream) -> io::Result<&StreamSpool> {
        self.inner
            .streams
            .iter()
            .find(|spool| spool.stream == stream)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{stream:?} is not a log stream"),
                )
            })
    }

    fn attempt_ref(&self) -> AttemptRef {
        AttemptRef {
            work_request_id: self.inner.work_request_id.clone(),
            attempt: self.inner.attempt,
        }
    }
}

impl fmt::Debug for LogSpool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSpool")
            .field("work_request_id", &self.inner.work_request_id)
            .field("attempt", &self.inner.attempt)
            .finish_non_exhaustive()
    }
}

fn stream_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::System => "system",
        LogStream::Unspecified => "unspecified",
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Reads a saved acknowledged offset; anything unreadable counts as nothing acknowledged
/// (the server will say where it is).
async fn read_acked(path: &Path, written: u64) -> u64 {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return 0,
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot read a saved log offset; starting from 0",
            );
            return 0;
        }
    };
    match text.trim().parse::<u64>() {
        Ok(acked) if acked <= written => acked,
        Ok(acked) => {
            tracing::warn!(
                path = %path.display(),
                acked,
                written,
                "saved log offset is past the end of the spool; starting from the end",
            );
            written
        }
        Err(_) => {
            tracing::warn!(path = %path.display(), "saved log offset is garbled; starting from 0");
            0
        }
    }
}

/// Saves an acknowledged offset, replacing the old one in one step so a crash never
/// leaves half a number. A failure only costs resending after a restart, so it is logged
/// and otherwise ignored.
async fn save_acked(path: &Path, acked: u64) {
    let temp = temp_path(path);
    let result = async {
        tokio::fs::write(&temp, format!("{acked}\n")).await?;
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), %error, "cannot save the acknowledged log offset");
    }
}

/// What an upload did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Bytes the server newly acknowledged (bytes it asked for again after losing them
    /// count again).
    pub bytes: u64,
    /// `AppendLog` calls made, failed ones included.
    pub calls: u64,
}

impl std::ops::AddAssign for UploadStats {
    fn add_assign(&mut self, other: UploadStats) {
        self.bytes += other.bytes;
        self.calls += other.calls;
    }
}

/// Why an upload ended before every byte was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The attempt is no longer current (FAILED_PRECONDITION, or NOT_FOUND: the server
    /// does not know it); the caller abandons it.
    #[error("the server no longer accepts logs for this attempt")]
    Fenced,
    /// The server refused the worker's token (PERMISSION_DENIED or UNAUTHENTICATED).
    #[error("the server refused the worker's credentials")]
    Denied,
    /// The caller cancelled the upload.
    #[error("log upload cancelled")]
    Cancelled,
    /// The server refused the call for a reason retrying cannot fix (for example
    /// UNIMPLEMENTED from a server that does not take logs, or INVALID_ARGUMENT).
    #[error("the server refused the log: {message}")]
    Refused {
        /// The status code.
        code: Code,
        /// The status, as one line.
        message: String,
    },
    /// The server acknowledged bytes this worker never wrote. That is a bug on one side;
    /// the stream was no longer uploaded (the other streams were).
    #[error(
        "the server acknowledged {acknowledged} bytes of {stream:?} but only {written} were written"
    )]
    ServerAhead {
        /// The stream.
        stream: LogStream,
        /// What the server acknowledged.
        acknowledged: u64,
        /// What the spool holds.
        written: u64,
    },
    /// The spool file could not be read.
    #[error("cannot read the log spool: {0}")]
    Spool(#[from] io::Error),
}

/// Uploads a spool until it is closed and every byte is acknowledged; returns `Ok` then,
/// or `Err(UploadError::Fenced)` / `Err(UploadError::Denied)` if the server refused the
/// attempt. Survives server restarts: it keeps retrying unavailable errors until `cancel`
/// is cancelled (then `Err(UploadError::Cancelled)`).
///
/// The three streams go up concurrently, each strictly in order, one call in flight per
/// stream. Run one upload per spool at a time.
pub async fn upload(
    spool: &LogSpool,
    client: AgentClient,
    cancel: CancellationToken,
) -> Result<UploadStats, UploadError> {
    upload_with(spool, client, cancel, &UploadPolicy::default()).await
}

/// Sizes and timings of an upload; tests shrink them.
#[derive(Clone, Debug)]
pub(crate) struct UploadPolicy {
    /// Most bytes sent in one call.
    pub(crate) max_chunk: u64,
    /// Backoff after the first failure; doubles with each failure in a row.
    pub(crate) backoff_initial: Duration,
    /// Longest backoff.
    pub(crate) backoff_max: Duration,
    /// How long one call may take before it counts as failed.
    pub(crate) call_timeout: Duration,
}

impl Default for UploadPolicy {
    fn default() -> UploadPolicy {
        UploadPolicy {
            max_chunk: MAX_CHUNK as u64,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
        }
    }
}

/// [`upload`] with an explicit policy.
pub(crate) async fn upload_with(
    spool: &LogSpool,
    client: AgentClient,
    cancel: CancellationToken,
    policy: &UploadPolicy,
) -> Result<UploadStats, UploadError> {
    let [stdout, stderr, system] = &spool.inner.streams;
    let one = |stream| {
        StreamUploader {
            spool,
            stream,
            client: client.clone(),
            cancel: &cancel,
            policy,
            stats: UploadStats::default(),
            reader: None,
        }
        .run()
    };
    // A refusal of the attempt ends all three at once; a broken stream only itself.
    let (stdout, stderr, system) =
        futures::future::try_join3(one(stdout), one(stderr), one(system)).await?;
    let mut stats = UploadStats::default();
    for outcome in [stdout, stderr, system] {
        stats += outcome?;
    }
    Ok(stats)
}

/// Uploads one stream of a spool.
struct StreamUploader<'a> {
    spool: &'a LogSpool,
    stream: &'a StreamSpool,
    client: AgentClient,
    cancel: &'a CancellationToken,
    policy: &'a UploadPolicy,
    stats: UploadStats,
    /// Opened on first use.
    reader: Option<File>,
}

/// What the server made of one call.
enum Answer {
    Acknowledged(u64),
    Failed(tonic::Status),
}

impl StreamUploader<'_> {
    /// The outer error ends the whole upload; the inner one only this stream.
    async fn run(mut self) -> Result<Result<UploadStats, UploadError>, UploadError> {
        let name = stream_name(self.stream.stream);
        let mut progress = self.stream.progress.subscribe();
        let mut acked = self.stream.acked.load(Ordering::Acquire);
        // An offset read back after a restart is only this worker's memory: confirm it
        // with the server even when there is nothing left to send.
        let mut confirmed = acked == 0;
        let mut failures: u32 = 0;
        // Answers in a row that took none of the bytes sent; see below.
        let mut stalls: u32 = 0;
        loop {
            let Progress { written, closed } = *progress.borrow_and_update();
            if confirmed && acked >= written {
                if closed {
                    return Ok(Ok(self.stats));
                }
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return Err(UploadError::Cancelled),
                    changed = progress.changed() => {
                        // The spool outlives this borrow of it, so the sender is alive.
                        if changed.is_err() {
                            return Err(UploadError::Cancelled);
                        }
                    }
                }
                continue;
            }

            let data = self.next_chunk(acked, written).await?;
            let len = data.len() as u64;
            let mut answer = self.send(acked, data).await?;
            if let Answer::Failed(status) = &answer
                && status.code() == Code::FailedPrecondition
                && acked > 0
            {
                // A server may refuse a gap (we resumed past what it has) with the code it
                // also uses for fencing. An empty append at offset 0 only asks for the
                // acknowledged offset, so its answer tells the two apart: an offset behind
                // ours is a gap to fill; anything else leaves the refusal standing.
                match self.send(0, Vec::new()).await? {
                    Answer::Acknowledged(server) if server >= acked => {}
                    probe => answer = probe,
                }
            }

            match answer {
                Answer::Acknowledged(server) => {
                    if failures > 0 {
                        tracing::info!(
                            work_request_id = %self.spool.inner.work_request_id,
                            attempt = self.spool.inner.attempt,
                            stream = name,
                            failures,
                            "log upload resumed",
                        );
                    }
                    failures = 0;
                    confirmed = true;
                    let written = self.stream.progress.borrow().written;
                    if server > written {
                        tracing::error!(
                            work_request_id = %self.spool.inner.work_request_id,
                            attempt = self.spool.inner.attempt,
                            stream = name,
                            acknowledged = server,
                            written,
                            "the server acknowledged log bytes this worker never wrote; \
                             no longer uploading this stream",
                        );
                        return Ok(Err(UploadError::ServerAhead {
                            stream: self.stream.stream,
                            acknowledged: server,
                            written,
                        }));
                    }
                    if server != acked + len {
                        tracing::info!(
                            work_request_id = %self.spool.inner.work_request_id,
                            attempt = self.spool.inner.attempt,
                            stream = name,
                            expected = acked + len,
                            acknowledged = server,
                            "the server acknowledged another log offset; continuing from it",
                        );
                    }
                    self.stats.bytes += server.saturating_sub(acked);
                    if len > 0 && server <= acked {
                        stalls = stalls.saturating_add(1);
                    } else {
                        stalls = 0;
                    }
                    if server != acked {
                        acked = server;
                        self.stream.acked.store(acked, Ordering::Release);
                        save_acked(&self.stream.acked_path, acked).await;
                    }
                    // One rewind is normal; a server that keeps taking nothing must not
                    // turn this loop into a busy one.
                    if stalls > 1 {
                        if stalls == 2 {
                            tracing::warn!(
                                work_request_id = %self.spool.inner.work_request_id,
                                attempt = self.spool.inner.attempt,
                                stream = name,
                                offset = acked,
                                "the server keeps acknowledging no new log bytes; slowing down",
                            );
                        }
                        let delay = backoff(self.policy, stalls - 1);
                        tokio::select! {
                            biased;
                            () = self.cancel.cancelled() => return Err(UploadError::Cancelled),
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
                Answer::Failed(status) => match status.code() {
                    Code::FailedPrecondition | Code::NotFound => {
                        self.refusal(&status, "the attempt is no longer current");
                        return Err(UploadError::Fenced);
                    }
                    Code::PermissionDenied | Code::Unauthenticated => {
                        self.refusal(&status, "the server refused the worker's credentials");
                        return Err(UploadError::Denied);
                    }
                    Code::Unavailable
                    | Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::Internal
                    | Code::ResourceExhausted
                    | Code::Cancelled => {
                        failures = failures.saturating_add(1);
                        // The first failure, then now and then: an outage of hours must
                        // not flood the log.
                        if failures == 1 || failures.is_multiple_of(50) {
                            tracing::warn!(
                                work_request_id = %self.spool.inner.work_request_id,
                                attempt = self.spool.inner.attempt,
                                stream = name,
                                failures,
                                error = %describe_status(&status),
                                "log upload failed; retrying",
                            );
                        }
                        let delay = backoff(self.policy, failures);
                        tokio::select! {
                            biased;
                            () = self.cancel.cancelled() => return Err(UploadError::Cancelled),
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    _ => {
                        self.refusal(&status, "the server refused the log");
                        return Err(UploadError::Refused {
                            code: status.code(),
                            message: describe_status(&status),
                        });
                    }
                },
            }
        }
    }

    /// The bytes to send next: up to `max_chunk` from `offset`, which is before `written`.
    /// Taken from memory when they are still there, else read from the file.
    async fn next_chunk(&mut self, offset: u64, written: u64) -> Result<Vec<u8>, UploadError> {
        let max = usize::try_from(self.policy.max_chunk).unwrap_or(usize::MAX);
        if let Some(data) = lock(&self.stream.recent).take(offset, max) {
            return Ok(data);
        }
        let len = written.saturating_sub(offset).min(self.policy.max_chunk);
        self.read(offset, len).await
    }

    /// Reads `len` spooled bytes from `offset`.
    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, UploadError> {
        let mut data = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        if data.is_empty() {
            return Ok(data);
        }
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => self.reader.insert(File::open(&self.stream.path).await?),
        };
        reader.seek(SeekFrom::Start(offset)).await?;
        reader.read_exact(&mut data).await?;
        Ok(data)
    }

    /// Makes one call. Only cancellation is an error here; everything the server (or
    /// the network) says is an [`Answer`].
    async fn send(&mut self, offset: u64, data: Vec<u8>) -> Result<Answer, UploadError> {
        let sent = data.len() as u64;
        let request = AppendLogRequest {
            attempt: Some(self.spool.attempt_ref()),
            stream: self.stream.stream as i32,
            offset,
            data,
        };
        self.stats.calls += 1;
        let call = tokio::time::timeout(self.policy.call_timeout, self.client.append_log(request));
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(UploadError::Cancelled),
            result = call => Ok(match result {
                Ok(Ok(response)) => {
                    metrics::counter!(crate::metrics::LOG_BYTES_SENT).increment(sent);
                    Answer::Acknowledged(response.into_inner().acknowledged)
                }
                Ok(Err(status)) => Answer::Failed(status),
                Err(_elapsed) => Answer::Failed(tonic::Status::deadline_exceeded(
                    "AppendLog took too long",
                )),
            }),
        }
    }

    fn refusal(&self, status: &tonic::Status, what: &str) {
        tracing::warn!(
            work_request_id = %self.spool.inner.work_request_id,
            attempt = self.spool.inner.attempt,
            stream = stream_name(self.stream.stream),
            error = %describe_status(status),
            "{what}; log upload stopped",
        );
    }
}

/// The wait after `failures` failures in a row: exponential from the policy's initial
/// delay up to its maximum, half of it random so workers that lost the same server do not
/// all come back at the same instant.
fn backoff(policy: &UploadPolicy, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let ceiling = policy
        .backoff_initial
        .saturating_mul(1 << doublings)
        .min(policy.backoff_max);
    let half = ceiling / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rand::rng().random_range(0..=jitter_nanos))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::collections::{HashMap, HashSet};
    use std::net::SocketAddr;
    use std::sync::Mutex as SyncMutex;

    use berth_common::proto::agent_service_server::{AgentService, AgentServiceServer};
    use berth_common::proto::{AppendLogResponse, ServerMessage, WorkerMessage};
    use futures::stream::BoxStream;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;

    const TOKEN: &str = "berth_wkr_test";
    const WR: &str = "0197a5c2-1111-7000-8000-000000000001";
    const MIB: usize = 1024 * 1024;

    type Key = (String, u32, i32);

    /// What the fake server holds; shared by the servers of one test so a "restarted"
    /// server keeps its data, as the real one does in PostgreSQL.
    #[derive(Default)]
    struct Store {
        logs: HashMap<Key, Vec<u8>>,
        /// Every call that reached the handler: (stream, offset, bytes).
        calls: Vec<(i32, u64, usize)>,
        fenced: HashSet<(String, u32)>,
        /// Attempts that have finished: resends are acknowledged, new bytes refused, as
        /// the real server does.
        finished: HashSet<(String, u32)>,
    }

    /// How the fake answers an offset past the end of what it has.
    #[derive(Clone, Copy)]
    enum Gap {
        AckStored,
        FailedPrecondition,
    }

    #[derive(Clone)]
    struct Fake {
        store: Arc<SyncMutex<Store>>,
        gap: Gap,
        /// Every n-th call fails with UNAVAILABLE: alternately before storing and after
        /// (an acknowledgement lost on the way back).
        fail_every: Option<usize>,
        /// Calls after the first n fail with UNAVAILABLE.
        unavailable_after: Option<usize>,
        /// Acknowledges what it has and stores nothing.
        swallow: bool,
    }

    impl Fake {
        fn new(store: &Arc<SyncMutex<Store>>) -> Fake {
            Fake {
                store: Arc::clone(store),
                gap: Gap::AckStored,
                fail_every: None,
                unavailable_after: None,
                swallow: false,
            }
        }
    }

    #[tonic::async_trait]
    impl AgentService for Fake {
        type ConnectStream = BoxStream<'static, Result<ServerMessage, Status>>;

        async fn connect(
            &self,
            _request: Request<Streaming<WorkerMessage>>,
        ) -> Result<Response<Self::ConnectStream>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }

        async fn keep_containers(
            &self,
            _request: Request<berth_common::proto::KeepContainersRequest>,
        ) -> Result<Response<berth_common::proto::KeepContainersResponse>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }

        async fn append_log(
            &self,
            request: Request<AppendLogRequest>,
        ) -> Result<Response<AppendLogResponse>, Status> {
            let bearer = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if bearer != Some(&format!("Bearer {TOKEN}")) {
                return Err(Status::unauthenticated("bad token"));
            }
            let request = request.into_inner();
            let mut store = self.store.lock().unwrap();
            store
                .calls
                .push((request.stream, request.offset, request.data.len()));
            let n = store.calls.len();
            if self.unavailable_after.is_some_and(|after| n > after) {
                return Err(Status::unavailable("down"));
            }
            let flaky = self.fail_every.is_some_and(|every| n.is_multiple_of(every));
            if flaky && (n / self.fail_every.unwrap_or(1)).is_multiple_of(2) {
                return Err(Status::unavailable("flaky, before storing"));
            }
            if request.data.len() > 4 * MIB {
                return Err(Status::invalid_argument("chunk over 4 MiB"));
            }
            let attempt = request
                .attempt
                .ok_or_else(|| Status::invalid_argument("no attempt"))?;
            if store
                .fenced
                .contains(&(attempt.work_request_id.clone(), attempt.attempt))
            {
                return Err(Status::failed_precondition("attempt is not current"));
            }
            let finished = store
                .finished
                .contains(&(attempt.work_request_id.clone(), attempt.attempt));
            let swallow = self.swallow;
            let log = store
                .logs
                .entry((attempt.work_request_id, attempt.attempt, request.stream))
                .or_default();
            let stored = log.len() as u64;
            if request.offset > stored {
                return match self.gap {
                    Gap::AckStored => Ok(Response::new(AppendLogResponse {
                        acknowledged: stored,
                    })),
                    Gap::FailedPrecondition => {
                        Err(Status::failed_precondition("offset past the end"))
                    }
                };
            }
            let skip = usize::try_from(stored - request.offset).unwrap();
            if swallow {
                return Ok(Response::new(AppendLogResponse {
                    acknowledged: stored,
                }));
            }
            if request.data.len() > skip && finished {
                return Err(Status::failed_precondition("attempt finished"));
            }
            if request.data.len() > skip {
                log.extend_from_slice(&request.data[skip..]);
            }
            let acknowledged = log.len() as u64;
            if flaky {
                return Err(Status::unavailable("flaky, after storing"));
            }
            Ok(Response::new(AppendLogResponse { acknowledged }))
        }
    }

    struct Running {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: JoinHandle<Result<(), tonic::transport::Error>>,
    }

    impl Running {
        async fn stop(self) {
            let _ = self.stop.send(());
            self.task.await.unwrap().unwrap();
        }
    }

    async fn serve(fake: Fake, addr: SocketAddr) -> Running {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(fake))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Running { addr, stop, task }
    }

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    fn client(addr: SocketAddr, token: &str) -> AgentClient {
        let channel = berth_common::client::endpoint(&format!("http://{addr}"), None)
            .unwrap()
            .connect_lazy();
        AgentServiceClient::with_interceptor(channel, BearerAuth::new(token))
    }

    fn fast() -> UploadPolicy {
        UploadPolicy {
            max_chunk: 64 * 1024,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(20),
            call_timeout: Duration::from_secs(10),
        }
    }

    fn stored(store: &Arc<SyncMutex<Store>>, attempt: u32, stream: LogStream) -> Vec<u8> {
        store
            .lock()
            .unwrap()
            .logs
            .get(&(WR.to_owned(), attempt, stream as i32))
            .cloned()
            .unwrap_or_default()
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn spawn_upload(
        spool: &LogSpool,
        client: AgentClient,
        cancel: &CancellationToken,
        policy: UploadPolicy,
    ) -> JoinHandle<Result<UploadStats, UploadError>> {
        let spool = spool.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { upload_with(&spool, client, cancel, &policy).await })
    }

    /// Writes `total` random bytes in random-size pieces spread over the three streams,
    /// yielding now and then so the uploader runs alongside; returns what each got.
    async fn write_random(
        spool: &LogSpool,
        rng: &mut StdRng,
        total: usize,
        max_write: usize,
    ) -> [Vec<u8>; 3] {
        let mut expected: [Vec<u8>; 3] = Default::default();
        let mut sent = 0;
        while sent < total {
            let len = rng.random_range(1..=max_write).min(total - sent);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Mostly stdout, as in real jobs.
            let which = match rng.random_range(0..10) {
                0..=6 => 0,
                7..=8 => 1,
                _ => 2,
            };
            spool.write(STREAMS[which], &data).await.unwrap();
            expected[which].extend_from_slice(&data);
            sent += len;
            if rng.random_range(0..8) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        expected
    }

    fn assert_stored(store: &Arc<SyncMutex<Store>>, attempt: u32, expected: &[Vec<u8>; 3]) {
        for (stream, want) in STREAMS.iter().zip(expected) {
            let got = stored(store, attempt, *stream);
            assert_eq!(got.len(), want.len(), "{stream:?} length");
            assert!(got == *want, "{stream:?} content differs");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn ten_mebibytes_in_random_writes_arrive_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::default();
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        let cancel = CancellationToken::new();
        let uploading = spawn_upload(
            &spool,
            client(server.addr, TOKEN),
            &cancel,
            UploadPolicy::default(),
        );

        let mut rng = StdRng::seed_from_u64(1);
        let expected = write_random(&spool, &mut rng, 10 * MIB, 256 * 1024).await;
        spool.close().await;
        let stats = uploading.await.unwrap().unwrap();

        assert_stored(&store, 1, &expected);
        assert_eq!(stats.bytes, 10 * MIB as u64);
        let calls = store.lock().unwrap().calls.clone();
        assert!(calls.iter().all(|&(_, _, len)| len <= MAX_CHUNK));
        assert_eq!(stats.calls, calls.len() as u64);
        for stream in STREAMS {
            assert_eq!(spool.acknowledged(stream), spool.written(stream));
        }
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn chunks_are_at_most_two_mebibytes_and_coalesce_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::default();
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        // Everything is spooled before the uploader starts: 10 MiB in 1 KiB writes. The
        // first 6 MiB are no longer in memory and come from the file.
        let data: Vec<u8> = (0..10 * MIB).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(1024) {
            spool.write(LogStream::Stdout, piece).await.unwrap();
        }
        spool.close().await;
        let stats = upload(&spool, client(server.addr, TOKEN), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(stored(&store, 1, LogStream::Stdout), data);
        let calls = store.lock().unwrap().calls.clone();
        let sizes: Vec<usize> = calls.iter().map(|&(_, _, len)| len).collect();
        assert_eq!(sizes, [2 * MIB; 5]);
        assert_eq!(
            stats,
            UploadStats {
                bytes: data.len() as u64,
                calls: 5
            }
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn live_output_is_uploaded_before_the_attempt_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::default();
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        let cancel = CancellationToken::new();
        let uploading = spawn_upload(
            &spool,
            client(server.addr, TOKEN),
            &cancel,
            UploadPolicy::default(),
        );
        spool.write(LogStream::Stdout, b"step 1\n").await.unwrap();
        wait_until("first line uploaded", || {
            stored(&store, 1, LogStream::Stdout) == b"step 1\n"
        })
        .await;
        spool.write(LogStream::System, b"pulled\n").await.unwrap();
        wait_until("system line uploaded", || {
            stored(&store, 1, LogStream::System) == b"pulled\n"
        })
        .await;
        assert!(!uploading.is_finished());
        spool.close().await;
        let stats = uploading.await.unwrap().unwrap();
        assert_eq!(
            stats,
            UploadStats {
                bytes: 14,
                calls: 2
            }
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn flaky_server_gets_every_byte_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::default();
        let fake = Fake {
            fail_every: Some(3),
            ..Fake::new(&store)
        };
        let server = serve(fake, local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        let cancel = CancellationToken::new();
        let uploading = spawn_upload(&spool, client(server.addr, TOKEN), &cancel, fast());

        let mut rng = StdRng::seed_from_u64(2);
        let expected = write_random(&spool, &mut rng, 3 * MIB, 32 * 1024).await;
        spool.close().await;
        let stats = uploading.await.unwrap().unwrap();

        assert_stored(&store, 1, &expected);
        let calls = store.lock().unwrap().calls.len() as u64;
        assert!(
            calls >= 30,
            "only {calls} calls; the test needs many failures"
        );
        assert_eq!(stats.calls, calls);
        // Bytes stored before a lost acknowledgement were sent again but stored once.
        assert_eq!(stats.bytes, 3 * MIB as u64);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn server_restart_mid_upload_loses_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::default();
        let first = serve(Fake::new(&store), local()).await;
        let addr = first.addr;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        let cancel = CancellationToken::new();
        let uploading = spawn_upload(
            &spool,
            client(addr, TOKEN),
            &cancel,
            UploadPolicy::default(),
        );

        let mut rng = StdRng::seed_from_u64(3);
        let mut expected = write_random(&spool, &mut rng, MIB, 16 * 1024).await;
        wait_until("some bytes stored", || {
            !stored(&store, 1, LogStream::Stdout).is_empty()
        })
        .await;
        first.stop().await;

        // The job goes on writing while the server is away.
        let more = write_random(&spool, &mut rng, MIB, 16 * 1024).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let calls_while_down = store.lock().unwrap().calls.len();
        let second = serve(Fake::new(&store), addr).await;
        let last = write_random(&spool, &mut rng, MIB, 16 * 1024).await;
        spool.close().await;
        let stats = uploading.await.unwrap().unwrap();

        for (i, tail) in more.into_iter().chain(last).enumerate() {
            expected[i % 3].extend(tail);
        }
        assert_stored(&store, 1, &expected);
        // Calls were made to the second server, and some failed while there was none.
        let calls = store.lock().unwrap().calls.len() as u64;
        assert!(calls > calls_while_down as u64);
        assert!(
            stats.calls > calls,
            "{} calls made, {calls} arrived",
            stats.calls
        );
        second.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fenced_attempt_stops_the_upload() {
        for gap in [Gap::AckStored, Gap::FailedPrecondition] {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<SyncMutex<Store>> = Arc::default();
            store.lock().unwrap().fenced.insert((WR.to_owned(), 1));
            let server = serve(
                Fake {
                    gap,
                    ..Fake::new(&store)
                },
                local(),
            )
            .await;
            let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
            spool.write(LogStream::Stderr, b"oops\n").await.unwrap();
            // Not closed: a refusal must end the upload by itself.
            let result = upload(&spool, client(server.addr, TOKEN), CancellationToken::new()).await;
            assert!(matches!(result, Err(UploadError::Fenced)), "{result:?}");
            server.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fenced_attempt_is_told_apart_from_a_gap_after_a_restart() {
        // The worker resumes at a saved offset, the server answers FAILED_PRECONDITION:
        // for a gap the probe finds where it is, for a fenced attempt the probe is refused too.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<SyncMutex<Store>> = Arc::default();
        store.lock().unwrap().fenced.insert((WR.to_owned(), 2));
        let fake = Fake {
            gap: Gap::FailedPrecondition,
            ..Fake::new(&store)
        };
        let server = serve(fake, local()).await;
        let spool = LogSpool::open(dir.path(), WR, 2).await.unwrap();
        spool.write(LogStream::Stdout, b"0123456789").await.unwrap();
        tokio::fs::write(dir.path().join(format!("{WR}.2.stdout.acked")), "5\n")
            .await
            .unwrap();
        drop(spool);
        let spool = LogSpool::open(dir.path(), WR, 2).await.unwrap();
        spool.close().await;
        let result = upload(&spool, client(server.addr, TOKEN), CancellationToken::new()).await;
        assert!(matches!(result, Err(UploadError::Fenced)), "{result:?}");
        let offsets: Vec<u64> = store.lock().unwrap().calls.iter().map(|c| c.1).collect();
        assert_eq!(offsets, [5, 0]);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn new_bytes_for_a_finished_attempt_end_as_fenced_not_in_a_loop() {
        // The server acknowledges resends and probes for a finished attempt but refuses
        // new bytes; the probe's answer (not behind us) must leave the refusal standing.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<SyncMutex<Store>> = Arc::default();
        {
            let mut store = store.lock().unwrap();
            store.finished.insert((WR.to_owned(), 1));
            store.logs.insert(
                (WR.to_owned(), 1, LogStream::Stdout as i32),
                b"01234".to_vec(),
            );
        }
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"0123456789").await.unwrap();
        drop(spool);
        tokio::fs::write(dir.path().join(format!("{WR}.1.stdout.acked")), "5")
            .await
            .unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        let result = upload(&spool, client(server.addr, TOKEN), CancellationToken::new()).await;
        assert!(matches!(result, Err(UploadError::Fenced)), "{result:?}");
        let offsets: Vec<u64> = store.lock().unwrap().calls.iter().map(|c| c.1).collect();
        assert_eq!(offsets, [5, 0]);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn server_that_takes_nothing_is_not_called_in_a_busy_loop() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<SyncMutex<Store>> = Arc::default();
        let fake = Fake {
            swallow: true,
            ..Fake::new(&store)
        };
        let server = serve(fake, local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"hello").await.unwrap();
        let cancel = CancellationToken::new();
        let uploading = spawn_upload(
            &spool,
            client(server.addr, TOKEN),
            &cancel,
            UploadPolicy::default(),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
        let result = uploading.await.unwrap();
        assert!(matches!(result, Err(UploadError::Cancelled)), "{result:?}");
        let calls = store.lock().unwrap().calls.len();
        assert!((2..20).contains(&calls), "{calls} calls in half a second");
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn refused_token_stops_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::default();
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"x").await.unwrap();
        let result = upload(
            &spool,
            client(server.addr, "berth_wkr_wrong"),
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(result, Err(UploadError::Denied)), "{result:?}");
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unreachable_server_is_retried_until_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        // A port that was free a moment ago, with nothing listening.
        let addr = TcpListener::bind(local())
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"x").await.unwrap();
        spool.close().await;
        let cancel = CancellationToken::new();
        let uploading = spawn_upload(&spool, client(addr, TOKEN), &cancel, fast());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!uploading.is_finished());
        cancel.cancel();
        let result = uploading.await.unwrap();
        assert!(matches!(result, Err(UploadError::Cancelled)), "{result:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reopened_spool_resumes_from_the_saved_acknowledged_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<SyncMutex<Store>> = Arc::default();
        let data: Vec<u8> = (0..3 * MIB).map(|i| (i % 253) as u8).collect();

        // First worker life: two calls get through, then the server is unreachable and the
        // worker goes away.
        let fake = Fake {
            unavailable_after: Some(2),
            ..Fake::new(&store)
        };
        let server = serve(fake, local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, &data).await.unwrap();
        let cancel = CancellationToken::new();
        let one_mib = UploadPolicy {
            max_chunk: MIB as u64,
            ..UploadPolicy::default()
        };
        let uploading = spawn_upload(&spool, client(server.addr, TOKEN), &cancel, one_mib);
        wait_until("third call refused", || {
            store.lock().unwrap().calls.len() >= 3
        })
        .await;
        cancel.cancel();
        assert!(matches!(
            uploading.await.unwrap(),
            Err(UploadError::Cancelled)
        ));
        server.stop().await;
        drop(spool);
        let saved = tokio::fs::read_to_string(dir.path().join(format!("{WR}.1.stdout.acked")))
            .await
            .unwrap();
        assert_eq!(saved.trim(), (2 * MIB).to_string());

        // Second life: reopen, and carry on where the server's acknowledgement left off.
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        assert_eq!(spool.written(LogStream::Stdout), data.len() as u64);
        assert_eq!(spool.acknowledged(LogStream::Stdout), 2 * MIB as u64);
        spool.close().await;
        store.lock().unwrap().calls.clear();
        let stats = upload(&spool, client(server.addr, TOKEN), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(stored(&store, 1, LogStream::Stdout), data);
        let calls = store.lock().unwrap().calls.clone();
        assert_eq!(calls, [(LogStream::Stdout as i32, 2 * MIB as u64, MIB)]);
        assert_eq!(
            stats,
            UploadStats {
                bytes: MIB as u64,
                calls: 1
            }
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn server_behind_the_saved_offset_gets_the_missing_bytes() {
        for gap in [Gap::AckStored, Gap::FailedPrecondition] {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<SyncMutex<Store>> = Arc::default();
            let server = serve(
                Fake {
                    gap,
                    ..Fake::new(&store)
                },
                local(),
            )
            .await;
            let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
            spool.write(LogStream::Stdout, b"0123456789").await.unwrap();
            drop(spool);
            // The worker believes all ten bytes were acknowledged; the server has none.
            tokio::fs::write(dir.path().join(format!("{WR}.1.stdout.acked")), "10")
                .await
                .unwrap();
            let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
            spool.close().await;
            upload(&spool, client(server.addr, TOKEN), CancellationToken::new())
                .await
                .unwrap();
            assert_eq!(stored(&store, 1, LogStream::Stdout), b"0123456789");
            server.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn server_ahead_of_the_spool_stops_only_that_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<SyncMutex<Store>> = Arc::default();
        store.lock().unwrap().logs.insert(
            (WR.to_owned(), 1, LogStream::Stdout as i32),
            b"abcdefgh".to_vec(),
        );
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"abc").await.unwrap();
        spool.write(LogStream::Stderr, b"warning\n").await.unwrap();
        drop(spool);
        tokio::fs::write(dir.path().join(format!("{WR}.1.stdout.acked")), "2")
            .await
            .unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.close().await;
        let result = upload(&spool, client(server.addr, TOKEN), CancellationToken::new()).await;
        assert!(
            matches!(
                result,
                Err(UploadError::ServerAhead {
                    stream: LogStream::Stdout,
                    acknowledged: 8,
                    written: 3
                })
            ),
            "{result:?}"
        );
        assert_eq!(stored(&store, 1, LogStream::Stderr), b"warning\n");
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn empty_closed_spool_uploads_without_calls() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<SyncMutex<Store>> = Arc::default();
        let server = serve(Fake::new(&store), local()).await;
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.close().await;
        let stats = upload(&spool, client(server.addr, TOKEN), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(stats, UploadStats::default());
        server.stop().await;
    }

    #[tokio::test]
    async fn writes_after_close_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"a").await.unwrap();
        spool.close().await;
        spool.close().await;
        assert!(spool.write(LogStream::Stdout, b"b").await.is_err());
        assert_eq!(spool.written(LogStream::Stdout), 1);
    }

    #[tokio::test]
    async fn unspecified_stream_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        let error = spool.write(LogStream::Unspecified, b"a").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn reopening_keeps_written_bytes_and_appends_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let spool = LogSpool::open(dir.path(), WR, 3).await.unwrap();
        spool.write(LogStream::Stderr, b"before ").await.unwrap();
        drop(spool);
        let spool = LogSpool::open(dir.path(), WR, 3).await.unwrap();
        assert_eq!(spool.written(LogStream::Stderr), 7);
        assert_eq!(spool.acknowledged(LogStream::Stderr), 0);
        spool.write(LogStream::Stderr, b"after").await.unwrap();
        let on_disk = tokio::fs::read(dir.path().join(format!("{WR}.3.stderr.log")))
            .await
            .unwrap();
        assert_eq!(on_disk, b"before after");
    }

    #[tokio::test]
    async fn garbled_or_impossible_saved_offsets_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"12345").await.unwrap();
        drop(spool);
        let acked = |s: &'static str| dir.path().join(format!("{WR}.1.{s}.acked"));
        tokio::fs::write(acked("stdout"), "99").await.unwrap();
        tokio::fs::write(acked("stderr"), "not a number")
            .await
            .unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        assert_eq!(spool.acknowledged(LogStream::Stdout), 5);
        assert_eq!(spool.acknowledged(LogStream::Stderr), 0);
    }

    #[tokio::test]
    async fn remove_deletes_every_spool_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = LogSpool::open(dir.path(), WR, 1).await.unwrap();
        spool.write(LogStream::Stdout, b"a").await.unwrap();
        save_acked(&spool.inner.streams[0].acked_path, 1).await;
        spool.remove().await.unwrap();
        let mut left = tokio::fs::read_dir(dir.path()).await.unwrap();
        assert!(left.next_entry().await.unwrap().is_none());
        spool.remove().await.unwrap();
    }

    #[tokio::test]
    async fn ids_that_are_not_plain_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["", "../etc", "a/b", "a.b", "a b"] {
            let error = LogSpool::open(dir.path(), id, 1).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{id:?}");
        }
    }

    #[test]
    fn recent_bytes_are_handed_over_in_blocks_and_bounded() {
        let mut recent = Recent::new(100, 4, 8);
        recent.push(b"abcdef");
        recent.push(b"gh");
        // Blocks of at most 4 bytes; a whole block is handed over as it is.
        assert_eq!(recent.take(100, 10).unwrap(), b"abcd");
        assert_eq!(recent.take(104, 10).unwrap(), b"efgh");
        assert!(recent.take(108, 10).is_none());
        // Past the limit the oldest blocks go; the uploader then reads the file.
        recent.push(b"ijklmnopqrst");
        assert_eq!(recent.len, 8);
        assert!(recent.take(108, 10).is_none());
        assert_eq!(recent.take(112, 2).unwrap(), b"mn");
        // Resuming inside a block hands over its remainder only.
        assert_eq!(recent.take(115, 10).unwrap(), b"p");
        assert_eq!(recent.take(116, 10).unwrap(), b"qrst");
        assert!(recent.take(120, 10).is_none());
        assert_eq!((recent.start, recent.len), (120, 0));
        // What was handed over is gone: a resend of it comes from the file.
        recent.push(b"u");
        assert!(recent.take(116, 10).is_none());
        assert_eq!(recent.take(120, 10).unwrap(), b"u");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn bytes_beyond_the_memory_limit_come_from_the_file_once_each() {
        // Tiny blocks and memory, a flaky server: most bytes are read back from the file,
        // some are taken from memory, resends come from the file; every byte arrives once.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::default();
        let fake = Fake {
            fail_every: Some(4),
            ..Fake::new(&store)
        };
        let server = serve(fake, local()).await;
        let spool = LogSpool::open_with(dir.path(), WR, 1, 16 * 1024, 48 * 1024)
            .await
            .unwrap();
        let cancel = CancellationToken::new();
        let policy = UploadPolicy {
            max_chunk: 16 * 1024,
            ..fast()
        };
        let uploading = spawn_upload(&spool, client(server.addr, TOKEN), &cancel, policy);
        let mut rng = StdRng::seed_from_u64(4);
        let expected = write_random(&spool, &mut rng, 2 * MIB, 40 * 1024).await;
        spool.close().await;
        let stats = uploading.await.unwrap().unwrap();
        assert_stored(&store, 1, &expected);
        assert_eq!(stats.bytes, 2 * MIB as u64);
        for stream in &spool.inner.streams {
            assert!(lock(&stream.recent).len <= 48 * 1024);
        }
        server.stop().await;
    }

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let policy = UploadPolicy::default();
        for _ in 0..100 {
            let first = backoff(&policy, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let later = backoff(&policy, 1000);
            assert!(later >= Duration::from_millis(2500) && later <= Duration::from_secs(5));
        }
        assert!(backoff(&policy, 4) >= Duration::from_millis(400));
    }
}
