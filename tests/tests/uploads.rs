//! Uploads and downloads of artifact files over real gRPC, against the local store and the
//! real S3 server (SeaweedFS): resuming after a cut-off on a restarted server and on
//! another replica, hash and size mismatches, resent chunks and gaps, concurrent uploads
//! of the same file, the store's size limit, and reads by offset and limit.
#![expect(clippy::unwrap_used, reason = "integration tests may unwrap")]

use berth_common::proto::UploadFileRequest;
use berth_files::FileId;
use berth_tests::artifacts::{
    Artifacts, Backend, CHUNK, committed, create, entry, random_bytes, read, read_all, upload,
    upload_range, use_s3,
};
use berth_tests::{TestServer, assert_code, eventually, query};
use tonic::Code;

const MIB: usize = 1024 * 1024;
/// The part size the server stages uploads in.
const PART: u64 = 5 * MIB as u64;

/// Sends the first 40 % of `bytes` and then cuts the connection off with the stream still
/// open, once the server has committed a part; returns the committed size.
async fn cut_off_at_40_percent(server: &TestServer, id: &str, path: &str, bytes: &[u8]) -> u64 {
    let sent = bytes.len() * 2 / 5;
    let messages: Vec<UploadFileRequest> = (0..sent)
        .step_by(CHUNK)
        .map(|offset| UploadFileRequest {
            artifact_id: if offset == 0 {
                id.into()
            } else {
                String::new()
            },
            path: if offset == 0 {
                path.into()
            } else {
                String::new()
            },
            offset: offset as u64,
            data: bytes[offset..(offset + CHUNK).min(sent)].to_vec(),
            finish: false,
        })
        .collect();
    // The stream never ends by itself: the client is cut off, not done.
    let stream =
        futures::StreamExt::chain(futures::stream::iter(messages), futures::stream::pending());
    let mut client = server.artifacts(&server.admin_token).await;
    let call = tokio::spawn(async move { client.upload_file(stream).await });
    let probe = server.artifacts(&server.admin_token).await;
    let at = eventually("the server to commit a part", berth_tests::WAIT, || {
        let mut probe = probe.clone();
        async move {
            let at = committed(&mut probe, id, path).await;
            (at > 0).then_some(at)
        }
    })
    .await;
    call.abort();
    let _ = call.await;
    at
}

async fn resume_after_restart(backend: Backend) {
    let mut server = TestServer::start_with_store(backend).await;
    let bytes = random_bytes(20 * MIB + 12_345);
    let mut client = server.artifacts(&server.admin_token).await;
    let created = create(&mut client, "", "package", &[("big.bin", &bytes)]).await;
    assert_eq!(created.missing, ["big.bin"]);
    let id = created.artifact.unwrap().id;
    let at = cut_off_at_40_percent(&server, &id, "big.bin", &bytes).await;
    assert_eq!(
        at % PART,
        0,
        "the committed size moves by whole parts: {at}"
    );
    assert!(at <= (bytes.len() * 2 / 5) as u64);

    server.restart().await;
    let mut client = server.artifacts(&server.admin_token).await;
    assert_eq!(
        committed(&mut client, &id, "big.bin").await,
        at,
        "the committed size survives the restart"
    );
    let done = upload(&mut client, &id, "big.bin", &bytes).await;
    assert!(done.complete && done.artifact_complete, "{done:?}");
    assert_eq!(done.committed_size, bytes.len() as u64);
    assert!(read_all(&mut client, &id, "big.bin").await == bytes);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_off_at_40_percent_resumes_after_a_restart_on_the_local_store() {
    resume_after_restart(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_off_at_40_percent_resumes_after_a_restart_on_s3() {
    resume_after_restart(Backend::S3).await;
}

async fn resume_on_replica(backend: Backend) {
    let server = TestServer::start_with_store(backend).await;
    let replica = server.replica().await;
    let bytes = random_bytes(16 * MIB + 7);
    let mut client = server.artifacts(&server.admin_token).await;
    let created = create(&mut client, "", "package", &[("big.bin", &bytes)]).await;
    let id = created.artifact.unwrap().id;
    let at = cut_off_at_40_percent(&server, &id, "big.bin", &bytes).await;
    let mut other = replica.artifacts(&replica.admin_token).await;
    assert_eq!(committed(&mut other, &id, "big.bin").await, at);
    let done = upload(&mut other, &id, "big.bin", &bytes).await;
    assert!(done.complete && done.artifact_complete, "{done:?}");
    assert!(read_all(&mut client, &id, "big.bin").await == bytes);
    replica.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_off_on_one_replica_is_finished_on_another_on_the_local_store() {
    resume_on_replica(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_off_on_one_replica_is_finished_on_another_on_s3() {
    resume_on_replica(Backend::S3).await;
}

async fn stored_rows(server: &TestServer, file: FileId) -> i64 {
    query(
        &server.database_url,
        &format!(
            "SELECT count(*) FROM file_in_store WHERE sha256 = '\\x{}'::bytea AND size = {}",
            file.hex(),
            file.size
        ),
    )
    .await[0]
        .get(0)
}

async fn wrong_hash(backend: Backend, len: usize) {
    let server = TestServer::start_with_store(backend).await;
    let store = server.file_store(if backend == Backend::S3 {
        "s3"
    } else {
        "local"
    });
    let declared = random_bytes(len);
    let sent = random_bytes(len);
    let mut client = server.artifacts(&server.admin_token).await;
    let created = create(&mut client, "", "package", &[("f.bin", &declared)]).await;
    let id = created.artifact.unwrap().id;
    let answer = upload_range(&mut client, &id, "f.bin", &sent, 0, len, true).await;
    assert_code(answer, Code::FailedPrecondition, "the upload was reset");
    for bytes in [&declared, &sent] {
        let file = FileId::of(bytes);
        assert!(
            !store.contains(file).await.unwrap(),
            "the store holds {file:?}"
        );
        assert_eq!(stored_rows(&server, file).await, 0);
    }
    assert_eq!(committed(&mut client, &id, "f.bin").await, 0);
    let got = client
        .get_artifact(berth_common::proto::GetArtifactRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.complete && !got.files[0].uploaded, "{got:?}");
    let uploads: i64 =
        query(&server.database_url, "SELECT count(*) FROM file_uploads").await[0].get(0);
    assert_eq!(uploads, 0, "the reset upload left its row");
    // The right bytes go through after the reset.
    let done = upload(&mut client, &id, "f.bin", &declared).await;
    assert!(done.complete, "{done:?}");
    assert!(store.contains(FileId::of(&declared)).await.unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_hash_is_refused_and_nothing_is_stored_on_s3_for_a_staged_file() {
    wrong_hash(Backend::S3, 11 * MIB + 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_hash_is_refused_and_nothing_is_stored_on_the_local_store_for_a_small_file() {
    wrong_hash(Backend::Local, 300_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_hash_is_refused_and_nothing_is_stored_on_the_local_store_for_a_staged_file() {
    wrong_hash(Backend::Local, 6 * MIB).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_past_the_declared_size_reset_the_upload_and_say_so() {
    let server = TestServer::start().await;
    let bytes = random_bytes(1000);
    let mut client = server.artifacts(&server.admin_token).await;
    let id = create(&mut client, "", "package", &[("f", &bytes)])
        .await
        .artifact
        .unwrap()
        .id;
    let longer = random_bytes(1001);
    let answer = upload_range(&mut client, &id, "f", &longer, 0, 1001, true).await;
    assert_code(answer, Code::FailedPrecondition, "size mismatch");
    assert_eq!(committed(&mut client, &id, "f").await, 0);
    server.stop().await;
}

fn chunk(id: &str, path: &str, offset: usize, data: &[u8], finish: bool) -> UploadFileRequest {
    UploadFileRequest {
        artifact_id: id.into(),
        path: path.into(),
        offset: offset as u64,
        data: data.to_vec(),
        finish,
    }
}

fn committed_header(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get("berth-committed-size")
        .unwrap_or_else(|| panic!("no berth-committed-size in {status:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resent_chunk_is_a_no_op_and_a_gap_is_refused_with_the_committed_size() {
    let server = TestServer::start().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let small = random_bytes(3 * MIB);
    let big = random_bytes(12 * MIB);
    let created = create(
        &mut client,
        "",
        "package",
        &[("small", &small), ("big", &big)],
    )
    .await;
    let id = created.artifact.unwrap().id;

    // Every chunk sent twice, and one sent again after the next.
    let messages = vec![
        chunk(&id, "small", 0, &small[..MIB], false),
        chunk(&id, "small", 0, &small[..MIB], false),
        chunk(&id, "small", MIB, &small[MIB..2 * MIB], false),
        chunk(&id, "small", 0, &small[..MIB], false),
        chunk(&id, "small", 2 * MIB, &small[2 * MIB..], false),
        chunk(&id, "small", 2 * MIB, &small[2 * MIB..], true),
    ];
    let done = client
        .upload_file(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert!(done.complete, "{done:?}");
    assert!(read_all(&mut client, &id, "small").await == small);

    // A first chunk past the committed size (0).
    let gap = client
        .upload_file(futures::stream::iter([chunk(
            &id,
            "big",
            MIB,
            &big[MIB..2 * MIB],
            false,
        )]))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition, "{gap:?}");
    assert!(gap.message().contains("committed size is 0"), "{gap:?}");
    assert_eq!(committed_header(&gap), 0);

    // Six MiB sent: one part committed; then a gap past it.
    upload_range(&mut client, &id, "big", &big, 0, 6 * MIB, false)
        .await
        .unwrap();
    assert_eq!(committed(&mut client, &id, "big").await, PART);
    let gap = client
        .upload_file(futures::stream::iter([chunk(
            &id,
            "big",
            10 * MIB,
            &big[10 * MIB..11 * MIB],
            false,
        )]))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition, "{gap:?}");
    assert_eq!(committed_header(&gap), PART);
    assert!(gap.message().contains(&format!("committed size is {PART}")));
    // Resending from the start is fine: the committed part is skipped.
    let done = upload_range(&mut client, &id, "big", &big, 0, big.len(), true)
        .await
        .unwrap();
    assert!(done.complete && done.artifact_complete, "{done:?}");
    assert!(read_all(&mut client, &id, "big").await == big);
    server.stop().await;
}

async fn concurrent_uploads(backend: Backend) {
    let server = TestServer::start_with_store(backend).await;
    let store = if backend == Backend::S3 {
        "s3"
    } else {
        "local"
    };
    let bytes = random_bytes(12 * MIB + 1);
    let mut client = server.artifacts(&server.admin_token).await;
    // Two artifacts that both need the file, and two streams for the same path of one.
    let first = create(&mut client, "", "package", &[("a.bin", &bytes)]).await;
    let second = create(&mut client, "", "package", &[("b.bin", &bytes)]).await;
    assert_eq!(
        second.missing,
        ["b.bin"],
        "not uploaded yet, so not present"
    );
    let first = first.artifact.unwrap().id;
    let second = second.artifact.unwrap().id;
    let mut clients: Vec<Artifacts> = Vec::new();
    for _ in 0..3 {
        clients.push(server.artifacts(&server.admin_token).await);
    }
    let [mut c1, mut c2, mut c3] = <[Artifacts; 3]>::try_from(clients).unwrap();
    let (r1, r2, r3) = tokio::join!(
        upload_range(&mut c1, &first, "a.bin", &bytes, 0, bytes.len(), true),
        upload_range(&mut c2, &first, "a.bin", &bytes, 0, bytes.len(), true),
        upload_range(&mut c3, &second, "b.bin", &bytes, 0, bytes.len(), true),
    );
    for answer in [r1, r2, r3] {
        let answer = answer.unwrap();
        assert!(answer.complete && answer.artifact_complete, "{answer:?}");
        assert_eq!(answer.committed_size, bytes.len() as u64);
    }
    assert!(read_all(&mut client, &first, "a.bin").await == bytes);
    assert!(read_all(&mut client, &second, "b.bin").await == bytes);
    assert_eq!(
        stored_rows(&server, FileId::of(&bytes)).await,
        1,
        "one file, one row"
    );
    let total: i64 = query(
        &server.database_url,
        &format!("SELECT total_size FROM file_stores WHERE name = '{store}'"),
    )
    .await[0]
        .get(0);
    assert_eq!(
        total,
        bytes.len() as i64,
        "counted once in the store's size"
    );
    // An upload of a file that is complete already answers complete at once.
    let again = upload_range(&mut client, &first, "a.bin", &bytes, 0, MIB, false)
        .await
        .unwrap();
    assert!(again.complete && again.committed_size == bytes.len() as u64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_of_the_same_file_all_succeed_on_s3() {
    concurrent_uploads(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_of_the_same_file_all_succeed_on_the_local_store() {
    concurrent_uploads(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_past_its_size_limit_refuses_the_file_naming_the_limit() {
    let server = TestServer::start_with(|config| use_s3(config, Some(MIB as u64))).await;
    let mut client = server.artifacts(&server.admin_token).await;
    let fits = random_bytes(MIB / 2);
    let too_much = random_bytes(MIB);
    let created = create(
        &mut client,
        "",
        "package",
        &[("fits", &fits), ("big", &too_much)],
    )
    .await;
    let id = created.artifact.unwrap().id;
    assert!(upload(&mut client, &id, "fits", &fits).await.complete);
    let answer = upload_range(&mut client, &id, "big", &too_much, 0, MIB, true).await;
    assert_code(answer, Code::ResourceExhausted, "max_size");
    let store = server.file_store("s3");
    assert!(!store.contains(FileId::of(&too_much)).await.unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_honour_offset_and_limit_and_refuse_past_the_end() {
    let server = TestServer::start_with_store(Backend::S3).await;
    let mut client = server.artifacts(&server.admin_token).await;
    let bytes = random_bytes(3 * MIB + 5);
    let created = create(&mut client, "", "package", &[("f", &bytes), ("empty", b"")]).await;
    assert_eq!(created.missing, ["f"], "the empty file is always there");
    let id = created.artifact.unwrap().id;
    upload(&mut client, &id, "f", &bytes).await;
    let len = bytes.len() as u64;
    assert!(read(&mut client, &id, "f", 10, 100).await.unwrap() == bytes[10..110]);
    assert!(read(&mut client, &id, "f", MIB as u64, 0).await.unwrap() == bytes[MIB..]);
    assert!(read(&mut client, &id, "f", len - 3, 100).await.unwrap() == bytes[bytes.len() - 3..]);
    assert!(
        read(&mut client, &id, "f", len, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(read_all(&mut client, &id, "empty").await.is_empty());
    assert_code(
        read(&mut client, &id, "f", len + 1, 0).await,
        Code::OutOfRange,
        "past the end",
    );
    assert_code(
        read(&mut client, &id, "nope", 0, 0).await,
        Code::NotFound,
        "no file",
    );
    // The first piece says the whole file's size and hash.
    let mut stream = client
        .read_file(berth_common::proto::ReadFileRequest {
            artifact_id: id.clone(),
            path: "f".into(),
            offset: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.size, len);
    assert_eq!(first.sha256, entry("f", &bytes).sha256);
    server.stop().await;
}
