//! The first admin token.
//!
//! On a database with no tokens at all, the server makes user `admin` and an admin token
//! and writes the token to `<data-dir>/admin.token` (mode 0600). The log names the file,
//! never the token. Replicas starting together take an advisory lock so only one does it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_token::{Token, TokenKind};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::access::tokens::{ensure_admin, insert_token};
use crate::error::Error;
use crate::store::schema::tokens;

const BOOTSTRAP_LOCK_KEY: i64 = 0x6265_7274_685f_6274; // "berth_bt"

/// The name of the user the first admin token belongs to.
pub const FIRST_ADMIN: &str = "admin";

/// Writes `secret` to `path` with mode 0600, replacing an older file.
pub(crate) fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Creates the first admin token if the database has no tokens. Returns the file written.
pub async fn first_admin_token(
    conn: &mut AsyncPgConnection,
    data_dir: &Path,
) -> Result<Option<PathBuf>, Error> {
    let path = data_dir.join("admin.token");
    conn.transaction::<_, Error, _>(async |conn| {
        diesel::sql_query(format!(
            "SELECT pg_advisory_xact_lock({BOOTSTRAP_LOCK_KEY})"
        ))
        .execute(conn)
        .await?;
        let existing: i64 = tokens::table.select(count_star()).first(conn).await?;
        if existing > 0 {
            return Ok(None);
        }
        let token = Token::generate(TokenKind::Admin);
        let user_id = ensure_admin(conn, FIRST_ADMIN).await?;
        insert_token(conn, &token, Some(user_id), "", "first admin token", None).await?;
        // Written before the commit: if writing fails, nothing is committed and the next
        // start tries again, so there is never an admin token nobody holds.
        write_private(&path, token.expose_secret())
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
        Ok(Some(path.clone()))
    })
    .await
}

/// Creates another admin token for `name` (the `admin-token` subcommand).
pub async fn new_admin_token(
    conn: &mut AsyncPgConnection,
    name: &str,
    comment: &str,
) -> Result<Token, Error> {
    let token = Token::generate(TokenKind::Admin);
    let user_id = ensure_admin(conn, name).await?;
    insert_token(conn, &token, Some(user_id), "", comment, None).await?;
    Ok(token)
}
