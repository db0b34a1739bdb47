//! One contract for every file store backend: the in-memory store, a local directory and a
//! real S3 server (SeaweedFS, started by `scripts/with-s3`, which `scripts/test` runs).
//! Each backend runs the same checks; the S3 one fails, saying what is missing, when no S3
//! server is configured.
#![expect(clippy::unwrap_used, reason = "tests may unwrap")]

use berth_files::FileId;
use berth_files::store::{FileStore, MIN_PART, StoreConfig, StoreError};
use bytes::Bytes;
use futures::TryStreamExt;
use rand::RngCore;

fn random(len: usize) -> Bytes {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    Bytes::from(bytes)
}

fn s3_config() -> StoreConfig {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: these tests need a real S3 server. Run them with \
                 ./scripts/test (which starts SeaweedFS through scripts/with-s3)"
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

async fn whole_files(open: &dyn Fn() -> FileStore) {
    let store = open();
    let bytes = random(100_000);
    let file = FileId::of(&bytes);
    assert!(!store.contains(file).await.unwrap());
    store.put(file, bytes.clone()).await.unwrap();
    // A second put of the same file is not an error.
    store.put(file, bytes.clone()).await.unwrap();
    assert!(store.contains(file).await.unwrap());
    // The same hash with another size is another file.
    assert!(!store.contains(FileId { size: 99, ..file }).await.unwrap());
    assert_eq!(
        store.read_range(file, 10..20).await.unwrap(),
        bytes.slice(10..20)
    );
    let streamed: Vec<Bytes> = store
        .read_stream(file, 0..file.size)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.concat(), bytes.to_vec());
    let listed: Vec<_> = store.list().try_collect().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|o| o.file == Some(file) && o.size == file.size)
    );
    store.delete(file).await.unwrap();
    store.delete(file).await.unwrap();
    assert!(!store.contains(file).await.unwrap());
    match store.read_range(file, 0..1).await {
        Err(StoreError::NotFound { key, .. }) => assert!(key.contains(&file.hex()), "{key}"),
        other => panic!("a read of a deleted file gave {other:?}"),
    }
}

async fn the_empty_file_always_exists(open: &dyn Fn() -> FileStore) {
    let store = open();
    assert!(store.contains(FileId::EMPTY).await.unwrap());
    store.put(FileId::EMPTY, Bytes::new()).await.unwrap();
    assert!(
        store
            .read_range(FileId::EMPTY, 0..0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Parts written through one handle and completed through another (another replica, or
/// the same server after a restart) make the file; nothing is under its key before that.
async fn staged_upload_across_handles(open: &dyn Fn() -> FileStore) {
    let bytes = random(MIN_PART + 12_345);
    let file = FileId::of(&bytes);
    let key = format!("up-{}", &file.hex()[..16]);
    let first = open();
    let upload = first.begin(&key, file).await.unwrap();
    let part0 = first
        .put_part(&key, &upload, file, 0, 0, bytes.slice(..MIN_PART))
        .await
        .unwrap();
    assert!(
        !first.contains(file).await.unwrap(),
        "visible before complete"
    );
    drop(first);

    let second = open();
    let part1 = second
        .put_part(
            &key,
            &upload,
            file,
            1,
            MIN_PART as u64,
            bytes.slice(MIN_PART..),
        )
        .await
        .unwrap();
    second
        .complete(&key, &upload, file, vec![part0, part1])
        .await
        .unwrap();
    assert!(second.contains(file).await.unwrap());
    let back = second.read_range(file, 0..file.size).await.unwrap();
    assert!(
        back == bytes,
        "the completed file differs from what was uploaded"
    );
    second.delete(file).await.unwrap();
}

async fn aborted_upload_leaves_nothing(open: &dyn Fn() -> FileStore) {
    let store = open();
    let bytes = random(1000);
    let file = FileId::of(&bytes);
    let key = format!("up-{}", &file.hex()[..16]);
    let upload = store.begin(&key, file).await.unwrap();
    store
        .put_part(&key, &upload, file, 0, 0, bytes.clone())
        .await
        .unwrap();
    store.abort(&key, &upload, file).await.unwrap();
    assert!(!store.contains(file).await.unwrap());
}

/// Runs the contract; `open` gives a new handle on the same backend each time it is called
/// (a new client for S3 and local directories, as another replica would open).
async fn contract(open: &dyn Fn() -> FileStore) {
    whole_files(open).await;
    the_empty_file_always_exists(open).await;
    staged_upload_across_handles(open).await;
    aborted_upload_leaves_nothing(open).await;
}

fn opener(config: StoreConfig) -> impl Fn() -> FileStore {
    move || FileStore::open("contract", &config).unwrap()
}

#[tokio::test]
async fn the_in_memory_store_keeps_the_contract() {
    let memory = FileStore::open("contract", &StoreConfig::Memory).unwrap();
    // Memory has no second client: a clone shares the backend as a reopened store would.
    contract(&move || memory.clone()).await;
}

#[tokio::test]
async fn a_local_directory_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&opener(StoreConfig::Local {
        root: dir.path().join("files"),
    }))
    .await;
}

#[tokio::test]
async fn a_real_s3_server_keeps_the_contract() {
    contract(&opener(s3_config())).await;
}

#[tokio::test]
async fn wrong_s3_credentials_are_an_error_that_names_no_secret() {
    let StoreConfig::S3 {
        endpoint, bucket, ..
    } = s3_config()
    else {
        unreachable!()
    };
    let config = StoreConfig::S3 {
        endpoint,
        bucket,
        region: "us-east-1".into(),
        access_key_id: "nobody".into(),
        secret_access_key: "not-the-secret-value".into(),
        path_style: true,
    };
    let store = FileStore::open("wrong", &config).unwrap();
    let err = store
        .put(FileId::of(b"x"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("file store wrong"), "{text}");
    assert!(!text.contains("not-the-secret-value"), "{text}");
    assert!(!format!("{config:?}").contains("not-the-secret-value"));
}
