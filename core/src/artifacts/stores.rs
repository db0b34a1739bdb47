//! The configured file stores and which one each workspace writes to.
//!
//! The server's config names its stores (each a local directory or an S3 bucket, with an
//! optional size limit), the default one, and optionally a store per workspace. At start
//! [`Stores::open`] opens every one and upserts its `file_stores` row, so artifacts can name
//! the store that holds their files even after the config changes. A store removed from the
//! config keeps its row; its files stay readable only if it is configured again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use berth_files::store::{FileStore, StoreConfig};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::db::DbConn;
use crate::store::schema::file_stores;

/// One store as the config describes it.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Its name: a slug, unique among the stores.
    pub name: String,
    /// How to reach it.
    pub config: StoreConfig,
    /// At most this many bytes of files; `None` means no limit.
    pub max_size: Option<u64>,
}

/// The `[files]` part of the server's config.
#[derive(Debug, Clone)]
pub struct FilesSettings {
    /// Every store.
    pub stores: Vec<StoreSettings>,
    /// The store workspaces write to unless `workspaces` says otherwise.
    pub default_store: String,
    /// Workspace name → store name.
    pub workspaces: BTreeMap<String, String>,
}

impl FilesSettings {
    /// One local store, `local`, in `root`: what a server with no `[files]` config gets.
    pub fn local(root: std::path::PathBuf) -> FilesSettings {
        FilesSettings {
            stores: vec![StoreSettings {
                name: "local".into(),
                config: StoreConfig::Local { root },
                max_size: None,
            }],
            default_store: "local".into(),
            workspaces: BTreeMap::new(),
        }
    }

    /// Checks the names fit together: unique store names, a default that exists, and
    /// workspace entries that name existing stores.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for store in &self.stores {
            crate::work::spec::validate_name("file store", &store.name)?;
            if !names.insert(store.name.as_str()) {
                return Err(format!("file store {:?} is configured twice", store.name));
            }
        }
        if !names.contains(self.default_store.as_str()) {
            return Err(format!(
                "default_store {:?} is not one of the configured stores ({})",
                self.default_store,
                names.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        for (workspace, store) in &self.workspaces {
            if !names.contains(store.as_str()) {
                return Err(format!(
                    "workspace {workspace:?} is given store {store:?}, which is not configured"
                ));
            }
        }
        Ok(())
    }
}

/// An open store and its row.
#[derive(Debug, Clone)]
pub struct OpenStore {
    pub id: Uuid,
    pub name: String,
    pub max_size: Option<u64>,
    pub files: FileStore,
}

/// Every configured store, open, by id.
#[derive(Debug, Clone)]
pub struct Stores {
    by_id: HashMap<Uuid, Arc<OpenStore>>,
    by_name: HashMap<String, Uuid>,
    default: Uuid,
    workspaces: BTreeMap<String, Uuid>,
}

impl Stores {
    /// No stores, before [`Stores::open`] ran.
    pub fn empty() -> Stores {
        Stores {
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            default: Uuid::nil(),
            workspaces: BTreeMap::new(),
        }
    }

    /// Opens every configured store and records it in `file_stores` (its backend and
    /// limit are updated to what the config says now).
    pub async fn open(conn: &mut DbConn, settings: &FilesSettings) -> Result<Stores> {
        settings.check().map_err(Error::InvalidArgument)?;
        let mut by_id = HashMap::new();
        let mut by_name = HashMap::new();
        for store in &settings.stores {
            let files = FileStore::open(&store.name, &store.config)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            let max_size = store.max_size.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
            let id: Uuid = diesel::insert_into(file_stores::table)
                .values((
                    file_stores::id.eq(Uuid::now_v7()),
                    file_stores::name.eq(&store.name),
                    file_stores::backend.eq(store.config.backend()),
                    file_stores::max_size.eq(max_size),
                ))
                .on_conflict(file_stores::name)
                .do_update()
                .set((
                    file_stores::backend.eq(excluded(file_stores::backend)),
                    file_stores::max_size.eq(excluded(file_stores::max_size)),
                ))
                .returning(file_stores::id)
                .get_result(conn)
                .await?;
            by_name.insert(store.name.clone(), id);
            by_id.insert(
                id,
                Arc::new(OpenStore {
                    id,
                    name: store.name.clone(),
                    max_size: store.max_size,
                    files,
                }),
            );
        }
        // `check` above made sure every name here is a configured store.
        let named = |name: &str| by_name.get(name).copied().unwrap_or_default();
        let default = named(&settings.default_store);
        let workspaces = settings
            .workspaces
            .iter()
            .map(|(ws, store)| (ws.clone(), named(store)))
            .collect();
        Ok(Stores {
            by_id,
            by_name,
            default,
            workspaces,
        })
    }

    /// The store new artifacts of `workspace` (by name) go to.
    pub fn for_workspace(&self, workspace: &str) -> Result<Arc<OpenStore>> {
        let id = self.workspaces.get(workspace).unwrap_or(&self.default);
        self.by_id
            .get(id)
            .cloned()
            .ok_or_else(|| Error::internal("no file store is open (Stores::open has not run)"))
    }

    /// The store of an id an artifact names; FAILED_PRECONDITION when it is no longer
    /// configured on this server.
    pub fn get(&self, id: Uuid) -> Result<Arc<OpenStore>> {
        self.by_id.get(&id).cloned().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "the file store {id} that holds these files is not configured on this server"
            ))
        })
    }

    /// The store of a name, if configured.
    pub fn by_name(&self, name: &str) -> Option<Arc<OpenStore>> {
        self.by_name
            .get(name)
            .and_then(|id| self.by_id.get(id).cloned())
    }

    /// Every open store.
    pub fn all(&self) -> impl Iterator<Item = &Arc<OpenStore>> {
        self.by_id.values()
    }
}
