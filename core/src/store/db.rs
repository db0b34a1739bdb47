//! The PostgreSQL connection pool, TLS to an external database, and migrations.
//!
//! Every piece of state lives in PostgreSQL, so this module is the server's only way to
//! it. Connections come from a deadpool pool of diesel-async connections. TLS (rustls) is
//! used when the URL asks for it with `sslmode=require`, `verify-ca` or `verify-full`;
//! Unix-socket URLs (the embedded cluster) never use it. Migrations are embedded in the
//! binary and applied under an advisory lock, so several replicas may start at once.

use std::path::{Path, PathBuf};

use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt;

/// The migrations in `migrations/`, compiled into the binary.
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Arbitrary, fixed key of the advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x6265_7274_685f_6d67; // "berth_mg"

/// A pooled connection.
pub type DbConn = Object<AsyncPgConnection>;
/// The pool.
pub type DbPool = Pool<AsyncPgConnection>;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not a PostgreSQL URL.
    #[error("invalid database URL {url}: {reason}")]
    BadUrl {
        /// The URL with its password hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The CA certificate for database TLS cannot be used.
    #[error("cannot use database CA certificate {path}: {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Connecting failed.
    #[error(
        "cannot connect to the database at {url}: {reason} (check --database-url / BERTH_DATABASE_URL and that PostgreSQL is running)"
    )]
    Connect {
        /// The URL with its password hidden.
        url: String,
        /// The error.
        reason: String,
    },
    /// A migration failed.
    #[error("applying database migrations failed: {0}")]
    Migration(String),
}

/// How to reach the database.
#[derive(Clone)]
pub struct DbSettings {
    /// A `postgres://` URL (libpq style; `host=/dir` for a Unix socket).
    pub url: String,
    /// CA certificate (PEM) for TLS; without it the web PKI roots are trusted.
    pub ca_cert: Option<PathBuf>,
    /// Most connections the pool opens.
    pub pool_size: usize,
}

impl std::fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSettings")
            .field("url", &redact_url(&self.url))
            .field("ca_cert", &self.ca_cert)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut redacted = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    // `password=` may also be given as a query parameter.
    if let Some(start) = redacted.find("password=") {
        let value_start = start + "password=".len();
        let end = redacted[value_start..]
            .find('&')
            .map_or(redacted.len(), |i| value_start + i);
        redacted.replace_range(value_start..end, "***");
    }
    redacted
}

/// Whether the URL asks for TLS (`sslmode=require|verify-ca|verify-full`).
pub(crate) fn wants_tls(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query.split('&').any(|pair| {
        matches!(
            pair,
            "sslmode=require" | "sslmode=verify-ca" | "sslmode=verify-full"
        )
    })
}

pub(crate) fn tls_connector(
    ca_cert: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let bad = |reason: String| DbError::CaCert {
                path: path.to_owned(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut found = false;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: rustls::pki_types::CertificateDer<'static> =
                    cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
                found = true;
            }
            if !found {
                return Err(bad("no PEM certificate in the file".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `error` and its causes on one line. tokio-postgres keeps what matters to the reader
/// ("Connection refused", "database \"x\" does not exist", a failed password) in the
/// source; its own message is only "error connecting to server" or "db error".
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    // A server error may add DETAIL and HINT lines; errors here are one line.
    text.replace('\n', " ")
}

/// Opens one connection (TLS as the URL asks).
pub async fn connect_once(settings: &DbSettings) -> Result<AsyncPgConnection, DbError> {
    let redacted = redact_url(&settings.url);
    let config: tokio_postgres::Config =
        settings
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::BadUrl {
                url: redacted.clone(),
                reason: with_causes(&e),
            })?;
    let connect_error = |e: &dyn std::error::Error| DbError::Connect {
        url: redacted.clone(),
        reason: with_causes(e),
    };
    let connection = if wants_tls(&settings.url) {
        let tls = tls_connector(settings.ca_cert.as_deref())?;
        let (client, conn) = config.connect(tls).await.map_err(|e| connect_error(&e))?;
        AsyncPgConnection::try_from_client_and_connection(client, conn).await
    } else {
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| connect_error(&e))?;
        AsyncPgConnection::try_from_client_and_connection(client, conn).await
    };
    connection.map_err(|e| connect_error(&e))
}

/// Builds the pool and checks that one connection can be made, so a wrong URL fails at
/// start-up rather than at the first request.
pub async fn connect_pool(settings: &DbSettings) -> Result<DbPool, DbError> {
    // Fail fast with a clear message before the pool starts retrying behind our back.
    drop(connect_once(settings).await?);
    let for_setup = settings.clone();
    let mut manager_config = ManagerConfig::default();
    // No test query on every checkout: it was the most executed statement under load (a
    // round trip and a commit per checkout). A connection whose server went away is
    // still noticed, as closed, before it is handed out, and a transaction left open is
    // still refused.
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |_url| {
        let settings = for_setup.clone();
        async move {
            connect_once(&settings)
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
        }
        .boxed()
    });
    let manager =
        AsyncDieselConnectionManager::new_with_config(settings.url.clone(), manager_config);
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .build()
        .map_err(|e| DbError::Connect {
            url: redact_url(&settings.url),
            reason: e.to_string(),
        })
}

/// Applies pending migrations, holding an advisory lock so concurrent replicas take turns.
/// Returns how many were applied.
pub async fn migrate(settings: &DbSettings) -> Result<usize, DbError> {
    let mut conn = connect_once(settings).await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .await
        .map_err(|e| DbError::Migration(e.to_string()))?;
    let (conn, applied) = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
            .map_err(|e| DbError::Migration(e.to_string()));
        (harness.into_inner(), applied)
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?;
    let mut conn = conn;
    // Closing the connection releases the lock too; unlock explicitly to be tidy.
    let _ = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .await;
    let applied = applied?;
    if applied > 0 {
        tracing::info!(applied, "applied database migrations");
    }
    Ok(applied)
}

/// Makes sure a connection is usable with `SELECT 1` (used by health checks).
pub async fn ping(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    diesel::sql_query("SELECT 1")
        .execute(conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(
            redact_url("postgres://berth:s3cret@db.example:5432/berth?sslmode=require"),
            "postgres://berth:***@db.example:5432/berth?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://berth@localhost/berth?host=/tmp/x&password=abc&x=1"),
            "postgres://berth@localhost/berth?host=/tmp/x&password=***&x=1"
        );
        assert_eq!(
            redact_url("postgres://berth@/berth"),
            "postgres://berth@/berth"
        );
    }

    #[test]
    fn tls_only_when_asked() {
        assert!(wants_tls("postgres://a@b/c?sslmode=require"));
        assert!(wants_tls("postgres://a@b/c?x=1&sslmode=verify-full"));
        assert!(!wants_tls("postgres://a@b/c?sslmode=prefer"));
        assert!(!wants_tls("postgres://a@b/c"));
    }
}
