//! Artifacts in tests: a server whose default store is the real S3 server of the run,
//! creating artifacts from bytes, uploading (whole, in ranges, or cut off part-way) and
//! reading files back.
//!
//! The S3 server is SeaweedFS, started around the run by `scripts/with-s3` (which
//! `scripts/test` runs) and found through `BERTH_TEST_S3_*`; a test that needs it fails
//! saying what is missing when it is not there.

use berth_common::proto::artifact_service_client::ArtifactServiceClient;
use berth_common::proto::{
    ArtifactFile, CreateArtifactRequest, CreateArtifactResponse, QueryUploadRequest,
    ReadFileRequest, UploadFileRequest, UploadFileResponse,
};
use berth_core::artifacts::stores::{FilesSettings, StoreSettings};
use berth_files::FileId;
use berth_files::store::{FileStore, StoreConfig};
use berth_server::app::config::Config;

use crate::{Authed, TestServer};

/// An ArtifactService client.
pub type Artifacts = ArtifactServiceClient<Authed>;

/// Bytes per message the helpers send (well under the 4 MiB message limit).
pub const CHUNK: usize = 1024 * 1024;

/// The run's S3 server as a store config, or a panic naming what is missing.
pub fn s3_config() -> StoreConfig {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: this test needs the real S3 server (SeaweedFS). Run it \
                 with ./scripts/test, which starts one through scripts/with-s3"
            )
        })
    };
    StoreConfig::S3 {
        endpoint: Some(var("BERTH_TEST_S3_ENDPOINT")),
        bucket: var("BERTH_TEST_S3_BUCKET"),
        region: std::env::var("BERTH_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        access_key_id: var("BERTH_TEST_S3_ACCESS_KEY"),
        secret_access_key: var("BERTH_TEST_S3_SECRET_KEY"),
        path_style: true,
    }
}

/// Makes the run's S3 server the default store (named `s3`) of `config`, with an
/// optional size limit; the local store stays configured beside it.
pub fn use_s3(config: &mut Config, max_size: Option<u64>) {
    config.files.stores.push(StoreSettings {
        name: "s3".into(),
        config: s3_config(),
        max_size,
    });
    config.files.default_store = "s3".into();
}

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

impl TestServer {
    /// Starts a server whose default store is `backend`.
    pub async fn start_with_store(backend: Backend) -> TestServer {
        TestServer::start_with(|config| {
            if backend == Backend::S3 {
                use_s3(config, None);
            }
        })
        .await
    }

    /// An ArtifactService client using `token`.
    pub async fn artifacts(&self, token: &str) -> Artifacts {
        ArtifactServiceClient::with_interceptor(
            self.channel().await,
            berth_common::client::BearerAuth::new(token),
        )
        .max_decoding_message_size(8 * 1024 * 1024)
    }

    /// The store `name` as this server's config opens it, to look at its objects.
    pub fn file_store(&self, name: &str) -> FileStore {
        let settings: &FilesSettings = &self.config.files;
        let store = settings
            .stores
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("the server has no store named {name}"));
        FileStore::open(name, &store.config).unwrap()
    }
}

/// A file entry for `bytes` at `path`.
pub fn entry(path: &str, bytes: &[u8]) -> ArtifactFile {
    let id = FileId::of(bytes);
    ArtifactFile {
        path: path.into(),
        sha256: id.hex(),
        size: id.size,
        ..Default::default()
    }
}

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Creates an artifact of `category` in `workspace` holding `files`; panics on refusal.
pub async fn create(
    client: &mut Artifacts,
    workspace: &str,
    category: &str,
    files: &[(&str, &[u8])],
) -> CreateArtifactResponse {
    client
        .create_artifact(CreateArtifactRequest {
            workspace: workspace.into(),
            category: category.into(),
            files: files.iter().map(|(p, b)| entry(p, b)).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Sends `bytes[from..to]` of `path` in [`CHUNK`] messages, the last with `finish` if
/// asked, in one stream.
pub async fn upload_range(
    client: &mut Artifacts,
    artifact_id: &str,
    path: &str,
    bytes: &[u8],
    from: usize,
    to: usize,
    finish: bool,
) -> Result<UploadFileResponse, tonic::Status> {
    let mut messages = Vec::new();
    let mut offset = from;
    loop {
        let end = (offset + CHUNK).min(to);
        let last = end == to;
        messages.push(UploadFileRequest {
            artifact_id: if messages.is_empty() {
                artifact_id.into()
            } else {
                String::new()
            },
            path: if messages.is_empty() {
                path.into()
            } else {
                String::new()
            },
            offset: offset as u64,
            data: bytes[offset..end].to_vec(),
            finish: last && finish,
        });
        offset = end;
        if last {
            break;
        }
    }
    client
        .upload_file(futures::stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

/// Uploads the whole of `path` from where the upload stands, and finishes it.
pub async fn upload(
    client: &mut Artifacts,
    artifact_id: &str,
    path: &str,
    bytes: &[u8],
) -> UploadFileResponse {
    let from = committed(client, artifact_id, path).await;
    upload_range(
        client,
        artifact_id,
        path,
        bytes,
        from as usize,
        bytes.len(),
        true,
    )
    .await
    .unwrap()
}

/// The committed size of `path`'s upload.
pub async fn committed(client: &mut Artifacts, artifact_id: &str, path: &str) -> u64 {
    client
        .query_upload(QueryUploadRequest {
            artifact_id: artifact_id.into(),
            path: path.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .committed_size
}

/// Reads `path` of an artifact from `offset`, at most `limit` bytes (0: all).
pub async fn read(
    client: &mut Artifacts,
    artifact_id: &str,
    path: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .read_file(ReadFileRequest {
            artifact_id: artifact_id.into(),
            path: path.into(),
            offset,
            limit,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(piece) = stream.message().await? {
        assert_eq!(
            piece.offset,
            offset + out.len() as u64,
            "pieces come in order"
        );
        assert!(piece.data.len() <= 1024 * 1024, "a piece is at most 1 MiB");
        out.extend_from_slice(&piece.data);
    }
    Ok(out)
}

/// Reads all of `path`.
pub async fn read_all(client: &mut Artifacts, artifact_id: &str, path: &str) -> Vec<u8> {
    read(client, artifact_id, path, 0, 0).await.unwrap()
}
