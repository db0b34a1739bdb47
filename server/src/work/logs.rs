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

use berth_common::proto::{LogChunk, LogStream};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Integer, SmallInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::store::schema::{attempts, log_chunks, work_requests};

/// Stream code of the server's own notes (never written by workers).
pub const NOTES_STREAM: i16 = 4;

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

fn stream_code(stream: LogStream) -> Option<i16> {
    match stream {
        LogStream::Stdout => Some(1),
        LogStream::Stderr => Some(2),
        LogStream::System => Some(3),
        LogStream::Unspecified => None,
    }
}

/// One `AppendLog` call, checked for shape.
#[derive(Debug)]
pub struct Append<'a> {
    /// The worker that sent it (from its token).
    pub worker_id: Uuid,
    /// The work request.
    pub id: Uuid,
    /// The attempt number.
    pub attempt: i32,
    /// The stream.
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
) -> ApiResult<Appended> {
    let Append {
        worker_id,
        id,
        attempt,
        stream,
        offset,
        data,
    } = append;
    let code = stream_code(stream).ok_or_else(|| {
        ApiError::InvalidArgument("stream: must be STDOUT, STDERR or SYSTEM".into())
    })?;
    if data.len() > MAX_CHUNK {
        return Err(ApiError::InvalidArgument(format!(
            "data: {} bytes; send at most {MAX_CHUNK} bytes per call",
            data.len()
        )));
    }
    let offset = i64::try_from(offset)
        .map_err(|_| ApiError::InvalidArgument("offset: out of range".into()))?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        // Both rows are locked: the attempt's stream ends, and the request's log total.
        type Row = (Option<Uuid>, String, i64, i64, i64, i32, i64, bool);
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
        let end = match code {
            1 => out_end,
            2 => err_end,
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
        if state == "finished" {
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
                    log_chunks::stream.eq(NOTES_STREAM),
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
        match code {
            1 => diesel::update(target)
                .set(attempts::stdout_bytes.eq(new_end))
                .execute(conn)
                .await?,
            2 => diesel::update(target)
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
    id: Uuid,
    attempt: i32,
    after: i64,
    limit: i64,
    max_bytes: i64,
) -> ApiResult<Vec<(i64, LogChunk)>> {
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
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.seq,
                LogChunk {
                    attempt: u32::try_from(row.attempt).unwrap_or(0),
                    stream: u32::try_from(row.stream).unwrap_or(0),
                    offset: u64::try_from(row.byte_offset).unwrap_or(0),
                    data: row.data,
                },
            )
        })
        .collect())
}
