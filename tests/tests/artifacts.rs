//! Artifacts over real gRPC: dedup within a workspace and never across, expiry that hides
//! at once, deletion refused while something needs the artifact, relations, listings with
//! filters and pages, limits and bad input, and the lease-scoped access of workers.
#![expect(clippy::unwrap_used, reason = "integration tests may unwrap")]

use berth_common::proto::{
    ArtifactFile, ArtifactRelationKind, CreateArtifactRequest, DeleteArtifactRequest, Expiry,
    GetArtifactRequest, ListArtifactsRequest, QueryUploadRequest, RelateArtifactsRequest, Role,
    SetExpiryRequest, SubmitWorkRequestRequest, expiry,
};
use berth_core::artifacts::rules::ArtifactLimits;
use berth_tests::artifacts::{
    Artifacts, Backend, create, entry, random_bytes, read, read_all, upload, upload_range,
};
use berth_tests::{
    SimOptions, TestServer, assert_code, cancel, eventually, query, spec, submit_request,
    wait_started,
};
use tonic::Code;

/// Makes workspace `name` and a user who contributes to it and to `default`; returns the
/// user's token.
async fn contributor(server: &TestServer, workspace: &str, user: &str) -> String {
    if workspace != "default" {
        query(
            &server.database_url,
            &format!(
                "INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), '{workspace}') \
                 ON CONFLICT DO NOTHING"
            ),
        )
        .await;
    }
    let (_, token) = server.create_token_without_roles(Role::User, user).await;
    server.set_role(workspace, user, "contributor").await;
    token
}

async fn get(
    client: &mut Artifacts,
    id: &str,
) -> Result<berth_common::proto::Artifact, tonic::Status> {
    client
        .get_artifact(GetArtifactRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_counts_files_within_a_workspace_and_never_across_workspaces() {
    let server = TestServer::start_with_store(Backend::S3).await;
    let alice = contributor(&server, "team-a", "alice").await;
    let bob = contributor(&server, "team-b", "bob").await;
    let mut a = server.artifacts(&alice).await;
    let mut b = server.artifacts(&bob).await;
    let bytes = random_bytes(200_000);

    let first = create(&mut a, "team-a", "package", &[("x.bin", &bytes)]).await;
    assert_eq!(first.missing, ["x.bin"]);
    let first_id = first.artifact.as_ref().unwrap().id.clone();
    assert!(!first.artifact.unwrap().complete);
    // Not uploaded yet: a second artifact still needs it.
    let early = create(&mut a, "team-a", "package", &[("y.bin", &bytes)]).await;
    assert_eq!(early.missing, ["y.bin"]);
    assert!(
        upload(&mut a, &first_id, "x.bin", &bytes)
            .await
            .artifact_complete
    );

    // Uploaded in the workspace: present, complete in the one call.
    let again = create(&mut a, "team-a", "package", &[("z/copy.bin", &bytes)]).await;
    assert!(again.missing.is_empty(), "{:?}", again.missing);
    let again = again.artifact.unwrap();
    assert!(again.complete && again.files[0].uploaded);
    assert!(read_all(&mut a, &again.id, "z/copy.bin").await == bytes);

    // Another workspace must upload it, though the store holds the bytes.
    let other = create(&mut b, "team-b", "package", &[("x.bin", &bytes)]).await;
    assert_eq!(
        other.missing,
        ["x.bin"],
        "another workspace's files are not revealed"
    );
    let other_id = other.artifact.unwrap().id;
    assert!(!get(&mut b, &other_id).await.unwrap().complete);
    assert!(
        upload(&mut b, &other_id, "x.bin", &bytes)
            .await
            .artifact_complete
    );
    assert!(read_all(&mut b, &other_id, "x.bin").await == bytes);

    // An expired artifact's files no longer count.
    let fresh = random_bytes(1000);
    let gone = create(&mut a, "team-a", "package", &[("f", &fresh)]).await;
    let gone_id = gone.artifact.unwrap().id;
    upload(&mut a, &gone_id, "f", &fresh).await;
    expire_now(&mut a, &gone_id).await;
    let after = create(&mut a, "team-a", "package", &[("f", &fresh)]).await;
    assert_eq!(after.missing, ["f"]);
    server.stop().await;
}

async fn expire_now(client: &mut Artifacts, id: &str) {
    let past = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - 60,
        nanos: 0,
    };
    client
        .set_expiry(SetExpiryRequest {
            id: id.into(),
            expiry: Some(Expiry {
                when: Some(expiry::When::At(past)),
            }),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_artifact_is_hidden_at_once_everywhere() {
    let server = TestServer::start().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let bytes = random_bytes(5000);
    let pending = random_bytes(10);
    let created = create(
        &mut client,
        "",
        "package",
        &[("f", &bytes), ("later", &pending)],
    )
    .await;
    let id = created.artifact.unwrap().id;
    upload(&mut client, &id, "f", &bytes).await;
    assert!(read_all(&mut client, &id, "f").await == bytes);
    expire_now(&mut client, &id).await;

    assert_code(get(&mut client, &id).await, Code::NotFound, "not found");
    assert_code(
        read(&mut client, &id, "f", 0, 0).await,
        Code::NotFound,
        "not found",
    );
    assert_code(
        client
            .query_upload(QueryUploadRequest {
                artifact_id: id.clone(),
                path: "later".into(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_code(
        upload_range(&mut client, &id, "later", &pending, 0, pending.len(), true).await,
        Code::NotFound,
        "not found",
    );
    assert_code(
        client
            .set_expiry(SetExpiryRequest {
                id: id.clone(),
                expiry: Some(Expiry {
                    when: Some(expiry::When::Never(true)),
                }),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let listed = client
        .list_artifacts(ListArtifactsRequest {
            include_incomplete: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.artifacts.iter().all(|a| a.id != id), "{listed:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_defaults_to_the_workspace_and_may_be_never_or_later() {
    let server = TestServer::start().await;
    query(
        &server.database_url,
        "UPDATE workspaces SET default_expiry_seconds = 3600 WHERE name = 'default'",
    )
    .await;
    let mut client = server.artifacts(&server.admin_token).await;
    let before = chrono::Utc::now().timestamp();
    let made = create(&mut client, "", "package", &[])
        .await
        .artifact
        .unwrap();
    let at = made.expire_at.unwrap().seconds;
    assert!(
        (before + 3590..=before + 3610).contains(&at),
        "{at} vs {before}"
    );
    assert!(made.complete, "no files: complete at once");
    let never = client
        .create_artifact(CreateArtifactRequest {
            category: "package".into(),
            expiry: Some(Expiry {
                when: Some(expiry::When::Never(true)),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .artifact
        .unwrap();
    assert!(never.expire_at.is_none());
    let later = client
        .set_expiry(SetExpiryRequest {
            id: never.id.clone(),
            expiry: Some(Expiry {
                when: Some(expiry::When::After(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                })),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(later.expire_at.unwrap().seconds >= before + 86_390);
    // A creation that would be born expired is refused.
    let past = client
        .create_artifact(CreateArtifactRequest {
            category: "package".into(),
            expiry: Some(Expiry {
                when: Some(expiry::When::At(prost_types::Timestamp {
                    seconds: before - 10,
                    nanos: 0,
                })),
            }),
            ..Default::default()
        })
        .await;
    assert_code(past, Code::InvalidArgument, "not in the future");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_is_refused_while_a_pending_request_takes_the_artifact_as_input_or_a_collection_holds_it()
 {
    let server = TestServer::start().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let id = create(&mut client, "", "package", &[])
        .await
        .artifact
        .unwrap()
        .id;
    // A request no worker takes, with the artifact as its input.
    let request = submit_request(
        &server,
        SubmitWorkRequestRequest {
            spec: Some(spec(&["true"])),
            requirements: [("parked".to_owned(), "yes".to_owned())].into(),
            ..Default::default()
        },
    )
    .await;
    query(
        &server.database_url,
        &format!(
            "INSERT INTO work_request_inputs (work_request_id, mount, artifact_id) \
             VALUES ('{}', 'in', '{id}')",
            request.id
        ),
    )
    .await;
    // Expired, it stays alive while the pending request needs it.
    expire_now(&mut client, &id).await;
    assert!(
        get(&mut client, &id).await.is_ok(),
        "an input of a pending request is kept"
    );
    let refused = client
        .delete_artifact(DeleteArtifactRequest { id: id.clone() })
        .await;
    assert_code(refused, Code::FailedPrecondition, &request.id);
    cancel(&server, &request.id).await;
    assert_code(get(&mut client, &id).await, Code::NotFound, "not found");

    // Held by an active collection item.
    let held = create(&mut client, "", "package", &[])
        .await
        .artifact
        .unwrap()
        .id;
    query(
        &server.database_url,
        "INSERT INTO collections (id, workspace_id, name, category) \
           SELECT gen_random_uuid(), id, 'releases', 'package' FROM workspaces WHERE name = 'default'",
    )
    .await;
    query(
        &server.database_url,
        &format!(
            "INSERT INTO collection_items (id, collection_id, name, artifact_id, category) \
               SELECT gen_random_uuid(), id, 'v1', '{held}', 'package' FROM collections WHERE name = 'releases'"
        ),
    )
    .await;
    let refused = client
        .delete_artifact(DeleteArtifactRequest { id: held.clone() })
        .await;
    assert_code(refused, Code::FailedPrecondition, "collection releases");
    query(
        &server.database_url,
        "UPDATE collection_items SET removed_at = now(), removed_why = 'removed'",
    )
    .await;
    client
        .delete_artifact(DeleteArtifactRequest { id: held.clone() })
        .await
        .unwrap();
    assert_code(get(&mut client, &held).await, Code::NotFound, "not found");
    assert_code(
        client
            .delete_artifact(DeleteArtifactRequest { id: held.clone() })
            .await,
        Code::NotFound,
        "not found",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relations_are_added_once_shown_both_ways_and_removed() {
    let server = TestServer::start().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let report = create(&mut client, "", "test-report-ish", &[])
        .await
        .artifact
        .unwrap()
        .id;
    let package = create(&mut client, "", "package", &[])
        .await
        .artifact
        .unwrap()
        .id;
    let relate = |remove: bool, kind: ArtifactRelationKind| RelateArtifactsRequest {
        from_id: report.clone(),
        to_id: package.clone(),
        kind: kind as i32,
        remove,
    };
    let changed = |r: Result<
        tonic::Response<berth_common::proto::RelateArtifactsResponse>,
        tonic::Status,
    >| { r.unwrap().into_inner().changed };
    assert!(changed(
        client
            .relate_artifacts(relate(false, ArtifactRelationKind::RelatesTo))
            .await
    ));
    assert!(!changed(
        client
            .relate_artifacts(relate(false, ArtifactRelationKind::RelatesTo))
            .await
    ));
    assert!(changed(
        client
            .relate_artifacts(relate(false, ArtifactRelationKind::BuiltUsing))
            .await
    ));
    let from = get(&mut client, &report).await.unwrap();
    assert_eq!(from.relations.len(), 2);
    assert!(
        from.relations
            .iter()
            .all(|r| r.artifact_id == package && !r.incoming)
    );
    let to = get(&mut client, &package).await.unwrap();
    assert_eq!(to.relations.len(), 2);
    assert!(
        to.relations
            .iter()
            .all(|r| r.artifact_id == report && r.incoming)
    );
    assert!(changed(
        client
            .relate_artifacts(relate(true, ArtifactRelationKind::RelatesTo))
            .await
    ));
    assert!(!changed(
        client
            .relate_artifacts(relate(true, ArtifactRelationKind::RelatesTo))
            .await
    ));
    assert_eq!(get(&mut client, &package).await.unwrap().relations.len(), 1);
    assert_code(
        client
            .relate_artifacts(relate(false, ArtifactRelationKind::Unspecified))
            .await,
        Code::InvalidArgument,
        "kind",
    );
    assert_code(
        client
            .relate_artifacts(RelateArtifactsRequest {
                from_id: report.clone(),
                to_id: report.clone(),
                kind: ArtifactRelationKind::Extends as i32,
                remove: false,
            })
            .await,
        Code::InvalidArgument,
        "itself",
    );
    // Across workspaces: refused.
    let alice = contributor(&server, "team-a", "alice").await;
    server.set_role("default", "alice", "contributor").await;
    let mut a = server.artifacts(&alice).await;
    let elsewhere = create(&mut a, "team-a", "package", &[])
        .await
        .artifact
        .unwrap()
        .id;
    assert_code(
        a.relate_artifacts(RelateArtifactsRequest {
            from_id: report.clone(),
            to_id: elsewhere,
            kind: ArtifactRelationKind::Extends as i32,
            remove: false,
        })
        .await,
        Code::FailedPrecondition,
        "one workspace",
    );
    server.stop().await;
}

async fn list(client: &mut Artifacts, request: ListArtifactsRequest) -> Vec<String> {
    client
        .list_artifacts(request)
        .await
        .unwrap()
        .into_inner()
        .artifacts
        .into_iter()
        .map(|a| a.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_filter_by_category_creator_work_request_and_collection_and_page_newest_first() {
    let server = TestServer::start().await;
    let alice = contributor(&server, "default", "alice").await;
    let mut admin = server.artifacts(&server.admin_token).await;
    let mut a = server.artifacts(&alice).await;
    let mut packages = Vec::new();
    for _ in 0..5 {
        packages.push(
            create(&mut admin, "", "package", &[])
                .await
                .artifact
                .unwrap()
                .id,
        );
    }
    let report = create(&mut a, "", "report", &[]).await.artifact.unwrap().id;
    let bytes = random_bytes(10);
    let incomplete = create(&mut a, "", "report", &[("f", &bytes)])
        .await
        .artifact
        .unwrap()
        .id;

    // Newest first, complete only unless asked.
    let all = list(&mut admin, ListArtifactsRequest::default()).await;
    let mut expected: Vec<String> = packages.iter().rev().cloned().collect();
    expected.insert(0, report.clone());
    assert_eq!(all, expected);
    let with_incomplete = list(
        &mut admin,
        ListArtifactsRequest {
            include_incomplete: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(with_incomplete[0], incomplete);

    // Pages of two follow each other without gaps or repeats.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_artifacts(ListArtifactsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.artifacts.len() <= 2);
        paged.extend(page.artifacts.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, expected);

    let by_category = list(
        &mut admin,
        ListArtifactsRequest {
            category: "report".into(),
            include_incomplete: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_category, [incomplete.clone(), report.clone()]);
    let by_creator = list(
        &mut admin,
        ListArtifactsRequest {
            created_by: "alice".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_creator, std::slice::from_ref(&report));

    // A collection's active items only.
    query(
        &server.database_url,
        "INSERT INTO collections (id, workspace_id, name, category) \
           SELECT gen_random_uuid(), id, 'nightly', 'package' FROM workspaces WHERE name = 'default'",
    )
    .await;
    for (name, artifact, removed) in [("a", &packages[1], "NULL"), ("b", &packages[2], "now()")] {
        query(
            &server.database_url,
            &format!(
                "INSERT INTO collection_items (id, collection_id, name, artifact_id, category, removed_at) \
                   SELECT gen_random_uuid(), id, '{name}', '{artifact}', 'package', {removed} FROM collections"
            ),
        )
        .await;
    }
    let in_collection = list(
        &mut admin,
        ListArtifactsRequest {
            collection: "nightly".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(in_collection, [packages[1].clone()]);
    assert_code(
        admin
            .list_artifacts(ListArtifactsRequest {
                collection: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "collection",
    );

    // By work request: none made by this one.
    let none = list(
        &mut admin,
        ListArtifactsRequest {
            work_request_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
    assert_code(
        admin
            .list_artifacts(ListArtifactsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_code(
        admin
            .list_artifacts(ListArtifactsRequest {
                page_size: 1001,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_size",
    );
    server.stop().await;
}

fn file(path: &str) -> ArtifactFile {
    entry(path, b"x")
}

async fn create_files(
    client: &mut Artifacts,
    files: Vec<ArtifactFile>,
) -> Result<berth_common::proto::CreateArtifactResponse, tonic::Status> {
    client
        .create_artifact(CreateArtifactRequest {
            category: "package".into(),
            files,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_refused_naming_the_limit() {
    let server = TestServer::start_with(|config| {
        config.artifact_limits = ArtifactLimits {
            max_files: 3,
            max_total_bytes: 1000,
        };
    })
    .await;
    let mut client = server.artifacts(&server.admin_token).await;
    let four: Vec<ArtifactFile> = ["a", "b", "c", "d"].into_iter().map(file).collect();
    assert_code(
        create_files(&mut client, four).await,
        Code::ResourceExhausted,
        "files-per-artifact limit",
    );
    let big = ArtifactFile {
        size: 1001,
        ..file("big")
    };
    assert_code(
        create_files(&mut client, vec![big]).await,
        Code::ResourceExhausted,
        "total-size-per-artifact limit",
    );
    let huge_data = format!("{{\"a\":\"{}\"}}", "x".repeat(64 * 1024));
    assert_code(
        client
            .create_artifact(CreateArtifactRequest {
                category: "package".into(),
                data: huge_data,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "64 KiB",
    );
    assert_code(
        client
            .create_artifact(CreateArtifactRequest {
                category: "test-report".into(),
                data: "{\"suite\":\"unit\"}".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "format",
    );
    let report = client
        .create_artifact(CreateArtifactRequest {
            category: "test-report".into(),
            data: "{\"format\":\"junit\"}".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .artifact
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&report.data).unwrap(),
        serde_json::json!({"format": "junit"})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.artifacts(&server.admin_token).await;
    assert_code(
        get(&mut client, "not-a-uuid").await,
        Code::InvalidArgument,
        "id",
    );
    assert_code(
        get(&mut client, &uuid::Uuid::now_v7().to_string()).await,
        Code::NotFound,
        "not found",
    );
    for (path, rule) in [
        ("../etc/passwd", "`..`"),
        ("/abs", "relative"),
        ("a//b", "empty component"),
        ("a\\b", "backslash"),
        ("a/./b", "`.`"),
    ] {
        assert_code(
            create_files(&mut client, vec![file(path)]).await,
            Code::InvalidArgument,
            rule,
        );
    }
    assert_code(
        create_files(&mut client, vec![file("a"), file("a")]).await,
        Code::InvalidArgument,
        "twice",
    );
    assert_code(
        create_files(&mut client, vec![file("a"), file("a/b")]).await,
        Code::InvalidArgument,
        "lies under",
    );
    let bad_hash = ArtifactFile {
        sha256: "xyz".into(),
        ..file("a")
    };
    assert_code(
        create_files(&mut client, vec![bad_hash]).await,
        Code::InvalidArgument,
        "sha256",
    );
    let bad_mode = ArtifactFile {
        mode: 0o17777,
        ..file("a")
    };
    assert_code(
        create_files(&mut client, vec![bad_mode]).await,
        Code::InvalidArgument,
        "mode",
    );
    for (data, says) in [
        ("{", "not valid JSON"),
        ("[1]", "JSON object"),
        ("3", "JSON object"),
    ] {
        assert_code(
            client
                .create_artifact(CreateArtifactRequest {
                    category: "package".into(),
                    data: data.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            says,
        );
    }
    for category in ["", "Package", "a_b", "-x"] {
        assert_code(
            client
                .create_artifact(CreateArtifactRequest {
                    category: category.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "category",
        );
    }
    assert_code(
        client
            .create_artifact(CreateArtifactRequest {
                category: "package".into(),
                work_request_id: uuid::Uuid::now_v7().to_string(),
                attempt: 1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "only workers",
    );
    // Symlinks are recorded, never uploaded or read.
    let link = ArtifactFile {
        path: "link".into(),
        symlink: "/etc/passwd".into(),
        ..Default::default()
    };
    let made = create_files(&mut client, vec![link]).await.unwrap();
    assert!(made.missing.is_empty());
    let id = made.artifact.unwrap().id;
    assert_code(
        read(&mut client, &id, "link", 0, 0).await,
        Code::FailedPrecondition,
        "symlink",
    );
    assert_code(
        read(&mut client, &id, "../x", 0, 0).await,
        Code::InvalidArgument,
        "path",
    );
    // An upload stream with no first message naming a file.
    let empty = client
        .upload_file(futures::stream::iter(Vec::<
            berth_common::proto::UploadFileRequest,
        >::new()))
        .await;
    assert_code(empty, Code::InvalidArgument, "empty");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_reaches_only_the_outputs_and_inputs_of_the_attempt_it_holds() {
    let server = TestServer::start().await;
    let holder = server.sim_worker(SimOptions::default()).await;
    let request = submit_request(
        &server,
        SubmitWorkRequestRequest {
            spec: Some(spec(&["sleep", "600"])),
            ..Default::default()
        },
    )
    .await;
    wait_started(&server, &request.id).await;
    // The other worker connects after the request is taken, so it holds nothing.
    let other = server.sim_worker(SimOptions::default()).await;
    let attempt = holder.running()[0].attempt;
    assert_eq!(holder.running()[0].work_request_id, request.id);

    let mut users = server.artifacts(&server.admin_token).await;
    let input_bytes = random_bytes(1000);
    let input = create(&mut users, "", "package", &[("in.bin", &input_bytes)]).await;
    let input = input.artifact.unwrap().id;
    upload(&mut users, &input, "in.bin", &input_bytes).await;
    let unrelated = create(&mut users, "", "package", &[])
        .await
        .artifact
        .unwrap()
        .id;

    let mut mine = server.artifacts(&holder.token).await;
    let mut theirs = server.artifacts(&other.token).await;
    let output_bytes = random_bytes(2000);
    let outputs = |files: Vec<ArtifactFile>| CreateArtifactRequest {
        category: "output".into(),
        files,
        work_request_id: request.id.clone(),
        attempt,
        ..Default::default()
    };
    // Another worker may not create outputs for the attempt; nothing is made.
    let count = |server: &TestServer| {
        let url = server.database_url.clone();
        async move { query(&url, "SELECT count(*) FROM artifacts").await[0].get::<_, i64>(0) }
    };
    let before = count(&server).await;
    assert_code(
        theirs
            .create_artifact(outputs(vec![entry("out.bin", &output_bytes)]))
            .await,
        Code::PermissionDenied,
        "not held by this worker",
    );
    assert_eq!(count(&server).await, before);
    assert_code(
        mine.create_artifact(CreateArtifactRequest {
            work_request_id: String::new(),
            ..outputs(vec![])
        })
        .await,
        Code::PermissionDenied,
        "work_request_id",
    );

    // The holder may.
    let made = mine
        .create_artifact(outputs(vec![entry("out.bin", &output_bytes)]))
        .await
        .unwrap()
        .into_inner();
    let output = made.artifact.unwrap();
    assert_eq!(output.work_request_id, request.id);
    assert_eq!(output.attempt, attempt);
    assert_eq!(output.workspace, "default");
    assert!(output.created_by.is_empty());
    // Another worker may not upload to it, and changes nothing.
    assert_code(
        upload_range(
            &mut theirs,
            &output.id,
            "out.bin",
            &output_bytes,
            0,
            2000,
            true,
        )
        .await,
        Code::PermissionDenied,
        "not held by this worker",
    );
    assert!(!get(&mut users, &output.id).await.unwrap().complete);
    let done = upload(&mut mine, &output.id, "out.bin", &output_bytes).await;
    assert!(done.artifact_complete);
    let listed = list(
        &mut users,
        ListArtifactsRequest {
            work_request_id: request.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed, std::slice::from_ref(&output.id));

    // Inputs: only those of the attempt it holds, and not for another worker.
    assert_code(
        get(&mut mine, &input).await,
        Code::PermissionDenied,
        "not an input",
    );
    assert_code(
        get(&mut mine, &unrelated).await,
        Code::PermissionDenied,
        "not an input",
    );
    query(
        &server.database_url,
        &format!(
            "INSERT INTO work_request_inputs (work_request_id, mount, artifact_id) \
             VALUES ('{}', 'in', '{input}')",
            request.id
        ),
    )
    .await;
    assert_eq!(get(&mut mine, &input).await.unwrap().id, input);
    assert!(read_all(&mut mine, &input, "in.bin").await == input_bytes);
    assert_code(
        get(&mut theirs, &input).await,
        Code::PermissionDenied,
        "not an input",
    );
    assert_code(
        read(&mut theirs, &input, "in.bin", 0, 0).await,
        Code::PermissionDenied,
        "not an input",
    );
    // It may not upload to its input, nor list.
    assert_code(
        upload_range(&mut mine, &input, "in.bin", &input_bytes, 0, 1000, true).await,
        Code::PermissionDenied,
        "not made by an attempt",
    );

    // Once the attempt is over: FAILED_PRECONDITION, and nothing changes.
    cancel(&server, &request.id).await;
    eventually("the attempt to finish", berth_tests::WAIT, || {
        let url = server.database_url.clone();
        let id = request.id.clone();
        async move {
            let rows = query(
                &url,
                &format!("SELECT state FROM attempts WHERE work_request_id = '{id}'"),
            )
            .await;
            (rows[0].get::<_, String>(0) == "finished").then_some(())
        }
    })
    .await;
    let before = count(&server).await;
    assert_code(
        mine.create_artifact(outputs(vec![])).await,
        Code::FailedPrecondition,
        "no longer current",
    );
    assert_eq!(count(&server).await, before);
    assert_code(
        get(&mut mine, &input).await,
        Code::FailedPrecondition,
        "no longer current",
    );
    let pending = mine
        .query_upload(QueryUploadRequest {
            artifact_id: output.id.clone(),
            path: "out.bin".into(),
        })
        .await;
    assert_code(pending, Code::FailedPrecondition, "no longer current");
    drop(holder);
    drop(other);
    server.stop().await;
}
