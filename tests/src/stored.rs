//! Artifacts put straight into a test server's database and file store, for tests of what
//! happens to artifacts after they are made (collections, retention, expiry, the
//! collector), and a handle to run the collector's pass against that server.
//!
//! The bytes go into the store through `FileStore::put` and the rows are inserted with
//! plain SQL, as a completed upload would leave them: `files`, `file_in_store` (with the
//! store's `total_size`), `artifacts` and `artifact_files`.

use berth_core::artifacts::gc::{self, GcReport, GcSettings};
use berth_core::artifacts::stores::{FilesSettings, OpenStore, Stores};
use berth_core::store::db::{DbPool, DbSettings, connect_pool};
use berth_files::digest::{FileId, to_hex};
use berth_files::store::StoreConfig;
use bytes::Bytes;
use std::sync::Arc;
use uuid::Uuid;

use crate::{TestServer, query};

/// When a stored artifact expires.
#[derive(Clone, Copy, Debug)]
pub enum Expiry {
    /// Never.
    Never,
    /// In an hour.
    Later,
    /// A second ago.
    Past,
}

impl Expiry {
    fn sql(self) -> &'static str {
        match self {
            Expiry::Never => "NULL",
            Expiry::Later => "now() + interval '1 hour'",
            Expiry::Past => "now() - interval '1 second'",
        }
    }
}

/// The S3 store of the test run's SeaweedFS (`scripts/with-s3`), or a panic saying what
/// is missing: the one the artifact harness uses.
pub fn s3_store_config() -> StoreConfig {
    crate::artifacts::s3_config()
}

/// A test server's database and stores, opened as the server opened them.
pub struct Stored {
    pub database_url: String,
    pub pool: DbPool,
    pub stores: Stores,
}

impl Stored {
    /// Opens the stores of a server started with `settings` (for a server with no
    /// `[files]` config: `FilesSettings::local(server.data_dir.path().join("files"))`).
    pub async fn open(server: &TestServer, settings: &FilesSettings) -> Stored {
        let pool = connect_pool(&DbSettings {
            url: server.database_url.clone(),
            ca_cert: None,
            pool_size: 4,
        })
        .await
        .unwrap();
        let stores = {
            let mut conn = pool.get().await.unwrap();
            Stores::open(&mut conn, settings).await.unwrap()
        };
        Stored {
            database_url: server.database_url.clone(),
            pool,
            stores,
        }
    }

    /// The stores of a server with the default local store.
    pub async fn local(server: &TestServer) -> Stored {
        Stored::open(
            server,
            &FilesSettings::local(server.data_dir.path().join("files")),
        )
        .await
    }

    /// The store `workspace` writes to.
    pub fn store_of(&self, workspace: &str) -> Arc<OpenStore> {
        self.stores.for_workspace(workspace).unwrap()
    }

    /// Puts `bytes` into `workspace`'s store and records it there (`files`,
    /// `file_in_store`, the store's `total_size`), as a finished upload does.
    pub async fn put_file(&self, workspace: &str, bytes: &[u8]) -> FileId {
        let store = self.store_of(workspace);
        let file = FileId::of(bytes);
        store
            .files
            .put(file, Bytes::copy_from_slice(bytes))
            .await
            .unwrap();
        let hex = to_hex(&file.sha256);
        query(
            &self.database_url,
            &format!(
                "INSERT INTO files (sha256, size) VALUES ('\\x{hex}', {}) ON CONFLICT DO NOTHING",
                file.size
            ),
        )
        .await;
        query(
            &self.database_url,
            &format!(
                "WITH added AS ( \
                   INSERT INTO file_in_store (store_id, sha256, size) \
                   VALUES ('{}', '\\x{hex}', {}) ON CONFLICT DO NOTHING RETURNING size) \
                 UPDATE file_stores SET total_size = total_size + COALESCE((SELECT sum(size) FROM added), 0) \
                 WHERE id = '{}'",
                store.id, file.size, store.id
            ),
        )
        .await;
        file
    }

    /// A complete artifact of `category` in `workspace` holding `files` (path, bytes),
    /// expiring as `expiry` says; returns its id.
    pub async fn artifact(
        &self,
        workspace: &str,
        category: &str,
        files: &[(&str, &[u8])],
        expiry: Expiry,
    ) -> Uuid {
        self.insert_artifact(workspace, category, files, expiry, true)
            .await
    }

    /// Like [`Stored::artifact`] but `complete` as given.
    pub async fn insert_artifact(
        &self,
        workspace: &str,
        category: &str,
        files: &[(&str, &[u8])],
        expiry: Expiry,
        complete: bool,
    ) -> Uuid {
        let store = self.store_of(workspace);
        let id = Uuid::now_v7();
        let total: usize = files.iter().map(|(_, b)| b.len()).sum();
        query(
            &self.database_url,
            &format!(
                "INSERT INTO artifacts (id, workspace_id, store_id, category, data, expires_at, \
                   complete, total_size, file_count) \
                 SELECT '{id}', w.id, '{}', '{category}', '{{\"made-by\": \"test\"}}', {}, {complete}, {total}, {} \
                 FROM workspaces w WHERE w.name = '{workspace}'",
                store.id,
                expiry.sql(),
                files.len()
            ),
        )
        .await;
        for (path, bytes) in files {
            let file = self.put_file(workspace, bytes).await;
            query(
                &self.database_url,
                &format!(
                    "INSERT INTO artifact_files (artifact_id, path, sha256, size, uploaded) \
                     VALUES ('{id}', '{path}', '\\x{}', {}, true)",
                    to_hex(&file.sha256),
                    file.size
                ),
            )
            .await;
        }
        id
    }

    /// Runs one pass of the collector with `settings`.
    pub async fn gc(&self, settings: &GcSettings) -> GcReport {
        gc::run_once(&self.pool, &self.stores, settings)
            .await
            .unwrap()
    }

    /// Whether the alive rule (`artifacts::live::ALIVE_SQL`) holds for artifact `id`;
    /// `None` when its row is gone.
    pub async fn alive(&self, id: Uuid) -> Option<bool> {
        query(
            &self.database_url,
            &format!(
                "SELECT {} FROM artifacts WHERE id = '{id}'",
                berth_core::artifacts::live::ALIVE_SQL
            ),
        )
        .await
        .first()
        .map(|row| row.get(0))
    }

    /// The `file_in_store` row of `file` in `workspace`'s store: (unreferenced, deleting).
    pub async fn file_row(&self, workspace: &str, file: FileId) -> Option<(bool, bool)> {
        query(
            &self.database_url,
            &format!(
                "SELECT unreferenced_since IS NOT NULL, deleting FROM file_in_store \
                 WHERE store_id = '{}' AND sha256 = '\\x{}' AND size = {}",
                self.store_of(workspace).id,
                to_hex(&file.sha256),
                file.size
            ),
        )
        .await
        .first()
        .map(|row| (row.get(0), row.get(1)))
    }

    /// The `total_size` of `workspace`'s store.
    pub async fn total_size(&self, workspace: &str) -> i64 {
        query(
            &self.database_url,
            &format!(
                "SELECT total_size FROM file_stores WHERE id = '{}'",
                self.store_of(workspace).id
            ),
        )
        .await[0]
            .get(0)
    }

    /// Whether `workspace`'s store holds `file`'s bytes.
    pub async fn holds(&self, workspace: &str, file: FileId) -> bool {
        self.store_of(workspace).files.contains(file).await.unwrap()
    }
}

/// Collector settings for tests: no grace period; orphans only after a day and uploads
/// stale after an hour (tests that want those sooner say so).
pub fn eager_gc() -> GcSettings {
    GcSettings {
        grace: std::time::Duration::ZERO,
        orphan_age: std::time::Duration::from_secs(24 * 3600),
        stale_upload_age: std::time::Duration::from_secs(3600),
        ..GcSettings::default()
    }
}
