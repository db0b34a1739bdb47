//! The collector (`artifacts::gc`) on a real database and real stores (a local directory,
//! and SeaweedFS for S3): expired artifacts are hidden at once and their bytes freed, a
//! file another live artifact holds stays, the grace period is honoured, a crash between
//! bytes and rows is finished by the next pass, orphan objects are swept, stale uploads
//! are aborted, and nothing is collected while an unfinished request takes it as input.

#![expect(clippy::unwrap_used, reason = "integration tests may unwrap")]

use std::collections::BTreeMap;
use std::time::Duration;

use berth_common::proto::{CancelWorkRequestRequest, SubmitWorkRequestRequest};
use berth_core::artifacts::gc::GcSettings;
use berth_core::artifacts::stores::{FilesSettings, StoreSettings};
use berth_files::digest::{FileId, to_hex};
use berth_tests::stored::{Expiry, Stored, eager_gc, s3_store_config};
use berth_tests::{TestServer, query, spec};
use bytes::Bytes;
use uuid::Uuid;

/// Bytes no other test (or run) has: files are content-addressed and the S3 bucket is
/// shared by the whole run.
fn unique(what: &str) -> Vec<u8> {
    format!("{what} {}", Uuid::new_v4()).into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_artifact_is_hidden_at_once_and_the_collector_frees_its_bytes_on_s3() {
    let settings = FilesSettings {
        stores: vec![StoreSettings {
            name: "seaweed".into(),
            config: s3_store_config(),
            max_size: None,
        }],
        default_store: "seaweed".into(),
        workspaces: BTreeMap::new(),
    };
    let for_server = settings.clone();
    let server = TestServer::start_with(move |c| c.files = for_server).await;
    let stored = Stored::open(&server, &settings).await;
    let before = stored.total_size("default").await;
    let bytes = unique("expiring");
    let id = stored
        .artifact("default", "output", &[("out.txt", &bytes)], Expiry::Later)
        .await;
    let file = FileId::of(&bytes);
    assert!(stored.holds("default", file).await);
    assert_eq!(
        stored.total_size("default").await,
        before + i64::try_from(bytes.len()).unwrap()
    );
    assert_eq!(stored.alive(id).await, Some(true));

    query(
        &server.database_url,
        &format!("UPDATE artifacts SET expires_at = now() - interval '1 second' WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(
        stored.alive(id).await,
        Some(false),
        "hidden at once, before any collection"
    );
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.artifacts_deleted, 1);
    assert_eq!(report.files_deleted, 1);
    assert_eq!(report.bytes_freed, u64::try_from(bytes.len()).unwrap());
    assert_eq!(stored.alive(id).await, None, "the artifact row is gone");
    assert!(
        !stored.holds("default", file).await,
        "the object is gone from S3"
    );
    assert_eq!(stored.file_row("default", file).await, None);
    assert_eq!(stored.total_size("default").await, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_a_live_artifact_also_holds_is_not_deleted() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let shared = unique("shared");
    let own = unique("own");
    let file = FileId::of(&shared);
    let dying = stored
        .artifact(
            "default",
            "output",
            &[("a", &shared), ("b", &own)],
            Expiry::Past,
        )
        .await;
    let living = stored
        .artifact("default", "output", &[("copy", &shared)], Expiry::Never)
        .await;
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.artifacts_deleted, 1);
    assert_eq!(report.files_deleted, 1, "only the file no one else holds");
    assert_eq!(stored.alive(dying).await, None);
    assert_eq!(stored.alive(living).await, Some(true));
    assert!(stored.holds("default", file).await);
    assert_eq!(stored.file_row("default", file).await, Some((false, false)));
    assert!(!stored.holds("default", FileId::of(&own)).await);
    assert_eq!(
        stored.total_size("default").await,
        i64::try_from(shared.len()).unwrap()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_are_deleted_only_after_the_grace_period_and_a_new_reference_saves_them() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let graceful = GcSettings {
        grace: Duration::from_secs(3600),
        ..eager_gc()
    };
    let bytes = unique("graceful");
    let file = FileId::of(&bytes);
    stored
        .artifact("default", "output", &[("f", &bytes)], Expiry::Past)
        .await;
    let report = stored.gc(&graceful).await;
    assert_eq!(report.artifacts_deleted, 1);
    assert_eq!(report.files_unreferenced, 1);
    assert_eq!(report.files_deleted, 0);
    assert_eq!(
        stored.file_row("default", file).await,
        Some((true, false)),
        "marked unreferenced, not deleting"
    );
    assert!(stored.holds("default", file).await);

    // Referenced again within the grace period: the mark is cleared, and however old it
    // was, the bytes stay.
    let again = stored
        .artifact("default", "output", &[("again", &bytes)], Expiry::Never)
        .await;
    let report = stored.gc(&graceful).await;
    assert_eq!(report.files_referenced_again, 1);
    assert_eq!(stored.file_row("default", file).await, Some((false, false)));
    query(
        &server.database_url,
        "UPDATE file_in_store SET unreferenced_since = now() - interval '2 hours'",
    )
    .await;
    let report = stored.gc(&graceful).await;
    assert_eq!(report.files_deleted, 0);
    assert!(stored.holds("default", file).await);

    // Unreferenced again, and past the grace period: gone.
    query(
        &server.database_url,
        &format!(
            "UPDATE artifacts SET expires_at = now() - interval '1 second' WHERE id = '{again}'"
        ),
    )
    .await;
    stored.gc(&graceful).await;
    assert_eq!(stored.file_row("default", file).await, Some((true, false)));
    query(
        &server.database_url,
        "UPDATE file_in_store SET unreferenced_since = now() - interval '2 hours'",
    )
    .await;
    let report = stored.gc(&graceful).await;
    assert_eq!(report.files_deleted, 1);
    assert!(!stored.holds("default", file).await);
    assert_eq!(stored.file_row("default", file).await, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_deleting_bytes_and_rows_is_finished_by_the_next_pass() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let bytes = unique("crashed");
    let file = FileId::of(&bytes);
    stored.put_file("default", &bytes).await;
    let size = i64::try_from(bytes.len()).unwrap();
    assert_eq!(stored.total_size("default").await, size);
    // A pass marked the row deleting and deleted the bytes, then the process died.
    query(
        &server.database_url,
        &format!(
            "UPDATE file_in_store SET deleting = true, unreferenced_since = now() WHERE sha256 = '\\x{}'",
            to_hex(&file.sha256)
        ),
    )
    .await;
    stored.store_of("default").files.delete(file).await.unwrap();
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.files_deleted, 1);
    assert_eq!(stored.file_row("default", file).await, None);
    assert_eq!(stored.total_size("default").await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_orphan_sweep_deletes_objects_no_row_names_and_leaves_the_others() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let kept = unique("has a row");
    stored
        .artifact("default", "output", &[("k", &kept)], Expiry::Never)
        .await;
    let orphan = unique("no row");
    let orphan_file = FileId::of(&orphan);
    let store = stored.store_of("default");
    store
        .files
        .put(orphan_file, Bytes::from(orphan.clone()))
        .await
        .unwrap();
    // Young orphans are left alone (an object is written a moment before its row).
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.orphans_deleted, 0);
    assert!(stored.holds("default", orphan_file).await);
    let any_age = GcSettings {
        orphan_age: Duration::ZERO,
        ..eager_gc()
    };
    let report = stored.gc(&any_age).await;
    assert_eq!(report.orphans_deleted, 1);
    assert!(!stored.holds("default", orphan_file).await);
    assert!(stored.holds("default", FileId::of(&kept)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_of_an_unfinished_request_is_never_collected_and_is_once_it_has_finished() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let bytes = unique("input");
    let input = stored
        .artifact("default", "package", &[("in", &bytes)], Expiry::Past)
        .await;
    // A request no worker takes (it requires a label none has): pending for ever.
    let mut work = server.work_requests(&server.admin_token).await;
    let request = work
        .submit_work_request(SubmitWorkRequestRequest {
            spec: Some(spec(&["true"])),
            requirements: [("parked".to_owned(), "yes".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    query(
        &server.database_url,
        &format!(
            "INSERT INTO work_request_inputs (work_request_id, mount, artifact_id) \
             VALUES ('{request}', 'pkg', '{input}')"
        ),
    )
    .await;
    assert_eq!(stored.alive(input).await, Some(true));
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.artifacts_deleted, 0);
    assert!(stored.holds("default", FileId::of(&bytes)).await);

    work.cancel_work_request(CancelWorkRequestRequest {
        id: request.clone(),
    })
    .await
    .unwrap();
    assert_eq!(stored.alive(input).await, Some(false));
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.artifacts_deleted, 1);
    assert!(!stored.holds("default", FileId::of(&bytes)).await);
    // The finished request still says what it took, without the artifact.
    let rows = query(
        &server.database_url,
        &format!(
            "SELECT mount, artifact_id IS NULL FROM work_request_inputs WHERE work_request_id = '{request}'"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "pkg");
    assert!(rows[0].get::<_, bool>(1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_upload_is_aborted_and_its_artifact_stays_incomplete() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let bytes = unique("never finished");
    let file = FileId::of(&bytes);
    let id = stored
        .insert_artifact(
            "default",
            "output",
            &[("partial", &bytes)],
            Expiry::Never,
            false,
        )
        .await;
    let store = stored.store_of("default");
    let key = format!("gc-test-{}", Uuid::new_v4().simple());
    let upload = store.files.begin(&key, file).await.unwrap();
    store
        .files
        .put_part(&key, &upload, file, 0, 0, Bytes::from(bytes[..4].to_vec()))
        .await
        .unwrap();
    let staged = server.data_dir.path().join("files/uploads").join(&key);
    assert!(staged.exists(), "{} is staged", staged.display());
    query(
        &server.database_url,
        &format!(
            "INSERT INTO file_uploads (artifact_id, path, store_id, staging_key, multipart_id, committed_size, updated_at) \
             VALUES ('{id}', 'partial', '{}', '{key}', '{upload}', 4, now() - interval '5 minutes')",
            store.id
        ),
    )
    .await;
    // Not stale yet.
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.uploads_aborted, 0);
    assert!(staged.exists());
    let impatient = GcSettings {
        stale_upload_age: Duration::from_secs(60),
        ..eager_gc()
    };
    let report = stored.gc(&impatient).await;
    assert_eq!(report.uploads_aborted, 1);
    assert!(!staged.exists(), "the staged bytes are gone");
    let left = query(&server.database_url, "SELECT count(*) FROM file_uploads").await;
    assert_eq!(left[0].get::<_, i64>(0), 0);
    assert_eq!(
        stored.alive(id).await,
        Some(true),
        "the artifact stays, incomplete"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_collectors_at_once_delete_everything_exactly_once() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let other = Stored::local(&server).await;
    let mut files = Vec::new();
    for n in 0..30 {
        let bytes = unique(&format!("file {n}"));
        files.push(FileId::of(&bytes));
        stored
            .artifact("default", "output", &[("f", &bytes)], Expiry::Past)
            .await;
    }
    // Small batches, so the two passes interleave over many statements.
    let small = GcSettings {
        batch: 4,
        ..eager_gc()
    };
    let (a, b) = tokio::join!(stored.gc(&small), other.gc(&small));
    assert_eq!(a.artifacts_deleted + b.artifacts_deleted, 30);
    assert_eq!(a.files_deleted + b.files_deleted, 30);
    assert_eq!(stored.total_size("default").await, 0);
    for file in files {
        assert!(!stored.holds("default", file).await);
        assert_eq!(stored.file_row("default", file).await, None);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_own_collector_frees_an_expired_artifact() {
    let server = TestServer::start_with(|c| {
        c.gc.interval = Duration::from_secs(1);
        c.gc.grace = Duration::ZERO;
    })
    .await;
    let stored = Stored::local(&server).await;
    let bytes = unique("collected by the server");
    let file = FileId::of(&bytes);
    let id = stored
        .artifact("default", "output", &[("f", &bytes)], Expiry::Past)
        .await;
    berth_tests::eventually(
        "the server's collector",
        Duration::from_secs(30),
        || async {
            (stored.alive(id).await.is_none() && stored.file_row("default", file).await.is_none())
                .then_some(())
        },
    )
    .await;
    assert!(!stored.holds("default", file).await);
    server.stop().await;
}

/// Through the real ArtifactService: an artifact uploaded, held by a collection, expired,
/// let go by the collection, then collected; and one deleted while only the history
/// holds it.
#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_artifact_is_kept_by_its_collection_then_collected_once_let_go() {
    use berth_common::proto::collection_service_client::CollectionServiceClient;
    use berth_common::proto::{
        AddToCollectionRequest, CreateCollectionRequest, DeleteArtifactRequest, Expiry,
        GetArtifactRequest, GetCollectionRequest, RemoveFromCollectionRequest, SetExpiryRequest,
        expiry,
    };
    use berth_tests::artifacts::{create, read_all, upload};
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut artifacts = server.artifacts(&server.admin_token).await;
    let mut collections = CollectionServiceClient::with_interceptor(
        server.channel().await,
        berth_common::client::BearerAuth::new(&server.admin_token),
    );
    let bytes = unique("uploaded");
    let file = FileId::of(&bytes);
    let id = create(&mut artifacts, "", "package", &[("pkg", &bytes)])
        .await
        .artifact
        .unwrap()
        .id;
    upload(&mut artifacts, &id, "pkg", &bytes).await;
    collections
        .create_collection(CreateCollectionRequest {
            name: "releases".into(),
            category: "package".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let adding = |name: &str, artifact: &str| AddToCollectionRequest {
        collection: "releases".into(),
        name: name.into(),
        artifact_id: artifact.into(),
        ..Default::default()
    };
    collections
        .add_to_collection(adding("1.0", &id))
        .await
        .unwrap();
    let past = Expiry {
        when: Some(expiry::When::At(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() - 60,
            nanos: 0,
        })),
    };
    artifacts
        .set_expiry(SetExpiryRequest {
            id: id.clone(),
            expiry: Some(past),
        })
        .await
        .unwrap();
    stored.gc(&eager_gc()).await;
    assert_eq!(
        read_all(&mut artifacts, &id, "pkg").await,
        bytes,
        "the collection keeps it downloadable"
    );

    // Let go at once: a history of no time.
    query(
        &server.database_url,
        "UPDATE collections SET history_seconds = 0",
    )
    .await;
    collections
        .remove_from_collection(RemoveFromCollectionRequest {
            collection: "releases".into(),
            name: "1.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let gone = artifacts
        .get_artifact(GetArtifactRequest { id: id.clone() })
        .await;
    assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.artifacts_deleted, 1);
    assert!(!stored.holds("default", file).await);

    // Deleted while only a removed item holds it (within its history): the delete wins.
    query(
        &server.database_url,
        "UPDATE collections SET history_seconds = 3600",
    )
    .await;
    let other = unique("deleted");
    let second = create(&mut artifacts, "", "package", &[("pkg", &other)])
        .await
        .artifact
        .unwrap()
        .id;
    upload(&mut artifacts, &second, "pkg", &other).await;
    collections
        .add_to_collection(adding("2.0", &second))
        .await
        .unwrap();
    collections
        .remove_from_collection(RemoveFromCollectionRequest {
            collection: "releases".into(),
            name: "2.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    artifacts
        .delete_artifact(DeleteArtifactRequest { id: second.clone() })
        .await
        .unwrap();
    let gone = artifacts
        .get_artifact(GetArtifactRequest { id: second.clone() })
        .await;
    assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
    let history = collections
        .get_collection(GetCollectionRequest {
            name: "releases".into(),
            history: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .history;
    assert!(history.iter().all(|item| item.artifact_id.is_empty()));
    stored.gc(&eager_gc()).await;
    assert!(!stored.holds("default", FileId::of(&other)).await);
    server.stop().await;
}
