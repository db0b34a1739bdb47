//! Logs in PostgreSQL: appending what workers send, and reading it back for followers.
//!
//! Each stream of each attempt is a sequence of bytes addressed by offset. A worker sends
//! (offset, bytes); the server keeps the logical end of every stream on the attempt row
//! and stores only what extends it, so a resend after a reconnect is acknowledged without
//! storing anything twice, and a gap is answered with the true end so the worker rewinds.
//! Appends are fenced like every other worker write.
//!
//! A request's stored log is capped (`max_log_bytes`, 64 MiB by default). Past the cap the
//! job keeps running and its bytes are still acknowledged, but dropped; one marker on the
//! server's notes stream (4) says so, and the request shows `log_truncated`.

use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Integer, SmallInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::{self, Identity};
use crate::error::{Error, Result};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::schema::{attempts, log_chunks, work_requests};
use crate::work::ids::{AttemptKey, WorkRequestId};
use crate::work::state::{AttemptState, Status};

/// Which of an attempt's logs bytes belong to. The discriminant is the stored code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// The container's standard output.
    Stdout = 1,
    /// The container's standard error.
    Stderr = 2,
    /// The worker's notes about the attempt (pull progress, stop signals).
    System = 3,
    /// The server's own notes (a truncated log); never written by workers.
    Notes = 4,
}

impl LogStream {
    /// The stored code.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The stream with this stored code.
    pub(crate) fn from_code(code: i16) -> Option<LogStream> {
        [
            LogStream::Stdout,
            LogStream::Stderr,
            LogStream::System,
            LogStream::Notes,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// Bytes of one stream of one attempt, at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The attempt number.
    pub attempt: i32,
    /// The stream.
    pub stream: LogStream,
    /// Offset of `data[0]` in the stream.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Largest chunk a worker may send in one call.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// What happened to an append.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored (or already had); everything before this offset is stored.
    Acknowledged(u64),
    /// The attempt is not this worker's current attempt.
    Fenced,
}

/// One `AppendLog` call, checked for shape.
#[derive(Debug)]
pub struct Append<'a> {
    /// The worker that sent it (from its token).
    pub worker_id: Uuid,
    /// The attempt.
    pub key: AttemptKey,
    /// The stream (stdout, stderr or system).
    pub stream: LogStream,
    /// Byte offset of `data[0]` in the stream.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// Appends `data` at `offset` to one stream of an attempt owned by `worker_id`.
pub async fn append(
    conn: &mut AsyncPgConnection,
    append: Append<'_>,
    max_log_bytes: u64,
) -> Result<Appended> {
    let Append {
        worker_id,
        key: AttemptKey { id, attempt },
        stream,
        offset,
        data,
    } = append;
    if stream == LogStream::Notes {
        return Err(Error::InvalidArgument(
            "stream: must be STDOUT, STDERR or SYSTEM".into(),
        ));
    }
    let code = stream.code();
    if data.len() > MAX_CHUNK {
        return Err(Error::InvalidArgument(format!(
            "data: {} bytes; send at most {MAX_CHUNK} bytes per call",
            data.len()
        )));
    }
    let offset =
        i64::try_from(offset).map_err(|_| Error::InvalidArgument("offset: out of range".into()))?;
    conn.transaction::<_, Error, _>(async |conn| {
        // Both rows are locked: the attempt's stream ends, and the request's log total.
        type Row = (Option<Uuid>, AttemptState, i64, i64, i64, i32, i64, bool);
        let row: Option<Row> = attempts::table
            .inner_join(work_requests::table)
            .filter(attempts::work_request_id.eq(id))
            .filter(attempts::number.eq(attempt))
            .select((
                attempts::worker_id,
                attempts::state,
                attempts::stdout_bytes,
                attempts::stderr_bytes,
                attempts::system_bytes,
                work_requests::attempt_count,
                work_requests::log_bytes,
                work_requests::log_truncated,
            ))
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some((owner, state, out_end, err_end, sys_end, current, stored, truncated)) = row
        else {
            return Ok(Appended::Fenced);
        };
        if owner != Some(worker_id) || current != attempt {
            return Ok(Appended::Fenced);
        }
        let end = match stream {
            LogStream::Stdout => out_end,
            LogStream::Stderr => err_end,
            _ => sys_end,
        };
        let data_len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        // A gap: tell the worker where we are so it resends from there.
        if offset > end {
            return Ok(Appended::Acknowledged(end as u64));
        }
        // Nothing new: a resend of bytes already stored.
        if offset + data_len <= end {
            return Ok(Appended::Acknowledged(end as u64));
        }
        // Logs of a finished attempt were all flushed before it finished.
        if state == AttemptState::Finished {
            return Ok(Appended::Fenced);
        }
        let new = &data[usize::try_from(end - offset).unwrap_or(0)..];
        let new_end = offset + data_len;
        let cap = i64::try_from(max_log_bytes).unwrap_or(i64::MAX);
        let room = usize::try_from((cap - stored).max(0)).unwrap_or(0);
        let keep = &new[..new.len().min(room)];
        if !keep.is_empty() {
            diesel::insert_into(log_chunks::table)
                .values((
                    log_chunks::work_request_id.eq(id),
                    log_chunks::attempt.eq(attempt),
                    log_chunks::stream.eq(code),
                    log_chunks::byte_offset.eq(end),
                    log_chunks::data.eq(keep),
                ))
                .execute(conn)
                .await?;
        }
        let kept = i64::try_from(keep.len()).unwrap_or(0);
        crate::observe::log_bytes(keep.len() as u64);
        let now_truncated = keep.len() < new.len();
        if now_truncated && !truncated {
            // The marker goes past the cap on purpose (it must be seen), on the server's
            // own notes stream so it takes no offset in a stream the worker writes.
            let marker = format!(
                "[berth] log truncated: this work request reached the {} MiB log limit; further output is dropped (the job keeps running)\n",
                max_log_bytes / (1024 * 1024)
            );
            diesel::insert_into(log_chunks::table)
                .values((
                    log_chunks::work_request_id.eq(id),
                    log_chunks::attempt.eq(attempt),
                    log_chunks::stream.eq(LogStream::Notes.code()),
                    log_chunks::byte_offset.eq(0i64),
                    log_chunks::data.eq(marker.as_bytes()),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
        }
        diesel::update(work_requests::table.find(id))
            .set((
                work_requests::log_bytes.eq(stored + kept),
                work_requests::log_truncated.eq(truncated || now_truncated),
            ))
            .execute(conn)
            .await?;
        let target = attempts::table.find((id, attempt));
        match stream {
            LogStream::Stdout => diesel::update(target)
                .set(attempts::stdout_bytes.eq(new_end))
                .execute(conn)
                .await?,
            LogStream::Stderr => diesel::update(target)
                .set(attempts::stderr_bytes.eq(new_end))
                .execute(conn)
                .await?,
            _ => diesel::update(target)
                .set(attempts::system_bytes.eq(new_end))
                .execute(conn)
                .await?,
        };
        Ok(Appended::Acknowledged(new_end as u64))
    })
    .await
}

/// Records that the stored log of attempt `key` misses output, and why: on the attempt
/// (`log_incomplete`) and as a note at the end of the server's notes stream, so whoever
/// reads the log sees it where the output is missing. Runs in the caller's transaction.
pub(crate) async fn note_incomplete(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    reason: &str,
) -> Result<()> {
    // A worker's reason is shown to users: keep it to one bounded line.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    diesel::update(attempts::table.find((key.id, key.attempt)))
        .set(attempts::log_incomplete.eq(&reason))
        .execute(conn)
        .await?;
    let end: i64 = log_chunks::table
        .filter(log_chunks::work_request_id.eq(key.id))
        .filter(log_chunks::attempt.eq(key.attempt))
        .filter(log_chunks::stream.eq(LogStream::Notes.code()))
        .select(diesel::dsl::sql::<BigInt>(
            "coalesce(max(byte_offset + length(data)), 0)::bigint",
        ))
        .first(conn)
        .await?;
    let note = format!("[berth] log incomplete: {reason}\n");
    diesel::insert_into(log_chunks::table)
        .values((
            log_chunks::work_request_id.eq(key.id),
            log_chunks::attempt.eq(key.attempt),
            log_chunks::stream.eq(LogStream::Notes.code()),
            log_chunks::byte_offset.eq(end),
            log_chunks::data.eq(note.as_bytes()),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// One row of [`read_after`].
#[derive(QueryableByName)]
struct ChunkRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = SmallInt)]
    stream: i16,
    #[diesel(sql_type = BigInt)]
    byte_offset: i64,
    #[diesel(sql_type = Bytea)]
    data: Vec<u8>,
}

/// Reads the chunks of request `id` after sequence number `after`, in production order;
/// only `attempt` if it is not 0. Returns the chunks with their sequence numbers: at most
/// `limit` of them, and no more than needed to reach `max_bytes` (at least one), so a
/// follower holds a bounded amount of log whatever the chunk sizes.
pub async fn read_after(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    attempt: i32,
    after: i64,
    limit: i64,
    max_bytes: i64,
) -> Result<Vec<(i64, Chunk)>> {
    // `octet_length` of a stored value reads its size from the TOAST pointer, so only
    // the chunks returned are fetched and decompressed.
    let rows: Vec<ChunkRow> = diesel::sql_query(
        "SELECT seq, attempt, stream, byte_offset, data FROM ( \
           SELECT seq, attempt, stream, byte_offset, data, \
                  sum(octet_length(data)) OVER (ORDER BY seq) - octet_length(data) AS before \
           FROM log_chunks \
           WHERE work_request_id = $1 AND seq > $2 AND ($3 = 0 OR attempt = $3) \
           ORDER BY seq LIMIT $4 \
         ) batch WHERE before < $5 ORDER BY seq",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(after)
    .bind::<Integer, _>(attempt)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(max_bytes.max(1))
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let stream = LogStream::from_code(row.stream).ok_or_else(|| {
                Error::internal(format!(
                    "log chunk {} has unknown stream {}",
                    row.seq, row.stream
                ))
            })?;
            Ok((
                row.seq,
                Chunk {
                    attempt: row.attempt,
                    stream,
                    offset: u64::try_from(row.byte_offset).unwrap_or(0),
                    data: row.data,
                },
            ))
        })
        .collect()
}

/// Most chunks a follower reads from the database at once.
const BATCH_CHUNKS: i64 = 64;
/// About the most log bytes a follower reads at once (one chunk more at most): chunks
/// are up to 4 MiB, and a follower should not hold 64 of them.
const BATCH_BYTES: i64 = 8 * 1024 * 1024;

/// What a follower of one request's log reads.
#[derive(Clone, Debug)]
pub struct Follow {
    /// The request.
    pub id: WorkRequestId,
    /// Only this attempt, or all for 0.
    pub attempt: i32,
    /// Wait for more until the request is terminal.
    pub follow: bool,
    /// Bytes to skip at the start of stdout and stderr (the offsets a reader already has).
    pub skip_stdout: u64,
    pub skip_stderr: u64,
}

/// Streams one request's log to one reader: chunks in production order, then (when
/// following) whatever comes until the request is terminal and everything stored was
/// sent. The channel closes at the end; a read error is sent once, then it closes. Ends
/// quietly when the reader goes away.
///
/// A follower is a stream opened with `caller`'s token: when that token, or its user, is
/// disabled or deleted (the hub says so, here or through another replica), it ends with
/// UNAUTHENTICATED saying why. It also re-checks the token every `RECHECK` (5 s), so a lost
/// notification only delays the end.
pub fn follow(
    pool: DbPool,
    hub: Arc<Hub>,
    caller: &Identity,
    what: Follow,
) -> tokio::sync::mpsc::Receiver<Result<Chunk>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let reader = (caller.token_id, caller.user_id);
    tokio::spawn(async move {
        if let Err(e) = follow_into(&pool, &hub, reader, &what, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

/// How often a follower re-checks its caller's token without being told to: the same
/// bound as the token cache's, so a lost notification costs a follower no more than it
/// costs any other call.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The follower's loop; `Ok` when done or when the reader went away. `reader` is the
/// caller's token id and user id.
async fn follow_into(
    pool: &DbPool,
    hub: &Hub,
    reader: (Uuid, Option<Uuid>),
    what: &Follow,
    tx: &tokio::sync::mpsc::Sender<Result<Chunk>>,
) -> Result<()> {
    let (token_id, user_id) = reader;
    let mut changes = hub.subscribe();
    let mut closed = hub.subscribe_closed();
    let mut checked = std::time::Instant::now();
    let recheck = async || -> Result<()> {
        let mut conn = pool.get().await?;
        auth::token_usable(&mut conn, token_id).await
    };
    let mut after = 0i64;
    loop {
        // Read the status before the chunks: if it was terminal then, every chunk
        // written before it is in this read.
        let status: Status = {
            let mut conn = pool.get().await?;
            work_requests::table
                .find(what.id)
                .select(work_requests::status)
                .first(&mut conn)
                .await?
        };
        loop {
            let batch = {
                let mut conn = pool.get().await?;
                read_after(
                    &mut conn,
                    what.id,
                    what.attempt,
                    after,
                    BATCH_CHUNKS,
                    BATCH_BYTES,
                )
                .await?
            };
            // A batch cut by size holds at least BATCH_BYTES.
            let bytes: usize = batch.iter().map(|(_, chunk)| chunk.data.len()).sum();
            let more = batch.len() as i64 == BATCH_CHUNKS || bytes as i64 >= BATCH_BYTES;
            for (seq, mut chunk) in batch {
                after = seq;
                let skip = match chunk.stream {
                    LogStream::Stdout => what.skip_stdout,
                    LogStream::Stderr => what.skip_stderr,
                    _ => 0,
                };
                let end = chunk.offset + chunk.data.len() as u64;
                if end <= skip {
                    continue;
                }
                if chunk.offset < skip {
                    chunk
                        .data
                        .drain(..usize::try_from(skip - chunk.offset).unwrap_or(0));
                    chunk.offset = skip;
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
            if !more {
                break;
            }
        }
        if !what.follow || status.is_terminal() {
            return Ok(());
        }
        // Wait for a change here, or re-check after a while (another replica may
        // have stored the bytes), or stop when the reader is gone.
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            () = tx.closed() => return Ok(()),
            heard = closed.recv() => match heard {
                Ok(what) if what.concerns(token_id, user_id) => {
                    recheck().await?;
                    checked = std::time::Instant::now();
                }
                Ok(_) => {}
                // Some closings were missed: one of them may have been ours.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    recheck().await?;
                    checked = std::time::Instant::now();
                }
                // The hub is gone: the server is stopping.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
        if checked.elapsed() >= RECHECK {
            recheck().await?;
            checked = std::time::Instant::now();
        }
    }
}
