//! Collections over real gRPC on a real database: items by name, retention (keep the last
//! N, keep for a time, pinned items), replacing, the history with its artifacts, then as
//! metadata only, then gone, and what bad input gets. Artifacts are put into the database
//! and store directly (`berth_tests::stored`), as a finished upload leaves them.

#![expect(clippy::unwrap_used, reason = "integration tests may unwrap")]

use berth_common::client::BearerAuth;
use berth_common::proto::collection_service_client::CollectionServiceClient;
use berth_common::proto::{
    AddToCollectionRequest, Collection, CollectionItem, CreateCollectionRequest,
    GetCollectionRequest, ListCollectionsRequest, LookupItemRequest, RemoveFromCollectionRequest,
    Retention, Role, UpdateCollectionRequest,
};
use berth_tests::stored::{Expiry, Stored, eager_gc};
use berth_tests::{Authed, TestServer, assert_code, query};
use tonic::Code;
use uuid::Uuid;

async fn client(server: &TestServer, token: &str) -> CollectionServiceClient<Authed> {
    CollectionServiceClient::with_interceptor(server.channel().await, BearerAuth::new(token))
}

fn hours(n: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: n * 3600,
        nanos: 0,
    }
}

async fn create(
    c: &mut CollectionServiceClient<Authed>,
    name: &str,
    retention: Retention,
) -> Collection {
    c.create_collection(CreateCollectionRequest {
        workspace: String::new(),
        name: name.into(),
        category: "package".into(),
        retention: Some(retention),
    })
    .await
    .unwrap()
    .into_inner()
}

fn adding(collection: &str, name: &str, artifact: Uuid) -> AddToCollectionRequest {
    AddToCollectionRequest {
        workspace: String::new(),
        collection: collection.into(),
        name: name.into(),
        artifact_id: artifact.to_string(),
        pinned: false,
        replace: false,
    }
}

async fn add(
    c: &mut CollectionServiceClient<Authed>,
    collection: &str,
    name: &str,
    artifact: Uuid,
) -> CollectionItem {
    c.add_to_collection(adding(collection, name, artifact))
        .await
        .unwrap()
        .into_inner()
}

async fn get(c: &mut CollectionServiceClient<Authed>, name: &str) -> Collection {
    c.get_collection(GetCollectionRequest {
        workspace: String::new(),
        name: name.into(),
        history: true,
    })
    .await
    .unwrap()
    .into_inner()
}

fn names(items: &[CollectionItem]) -> Vec<&str> {
    items.iter().map(|i| i.name.as_str()).collect()
}

async fn package(stored: &Stored, content: &str) -> Uuid {
    stored
        .artifact(
            "default",
            "package",
            &[("pkg.deb", content.as_bytes())],
            Expiry::Later,
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_the_last_n_items_and_the_oldest_stay_in_history_with_their_artifacts() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    let made = create(
        &mut c,
        "nightly",
        Retention {
            keep_last: Some(3),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(made.retention.unwrap().keep_last, Some(3));
    let mut artifacts = Vec::new();
    for n in 1..=5 {
        let id = package(&stored, &format!("build {n}")).await;
        artifacts.push(id);
        let item = add(&mut c, "nightly", &format!("build-{n}"), id).await;
        assert_eq!(item.artifact_id, id.to_string());
        assert_eq!(item.category, "package");
        let data: serde_json::Value = serde_json::from_str(&item.data).unwrap();
        assert_eq!(
            data["made-by"], "test",
            "the item copies the artifact's data"
        );
    }
    let got = get(&mut c, "nightly").await;
    assert_eq!(names(&got.items), ["build-5", "build-4", "build-3"]);
    assert_eq!(names(&got.history), ["build-2", "build-1"]);
    for removed in &got.history {
        assert_eq!(removed.removed_why, "retention");
        assert!(removed.removed_at.is_some());
        assert!(
            !removed.artifact_id.is_empty(),
            "history keeps its artifacts"
        );
    }
    // Expired now, the removed items' artifacts are still kept by the history period.
    query(
        &server.database_url,
        "UPDATE artifacts SET expires_at = now() - interval '1 second'",
    )
    .await;
    for id in &artifacts {
        assert_eq!(stored.alive(*id).await, Some(true), "{id}");
    }
    stored.gc(&eager_gc()).await;
    for id in &artifacts {
        assert_eq!(
            stored.alive(*id).await,
            Some(true),
            "the collector took {id}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_items_are_kept_whatever_the_retention_says() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    create(
        &mut c,
        "releases",
        Retention {
            keep_last: Some(1),
            ..Default::default()
        },
    )
    .await;
    let first = package(&stored, "1.0").await;
    let pinned = c
        .add_to_collection(AddToCollectionRequest {
            pinned: true,
            ..adding("releases", "1.0", first)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pinned.pinned);
    for version in ["1.1", "1.2", "1.3"] {
        let id = package(&stored, version).await;
        add(&mut c, "releases", version, id).await;
    }
    let got = get(&mut c, "releases").await;
    assert_eq!(names(&got.items), ["1.3", "1.0"]);
    assert_eq!(names(&got.history), ["1.2", "1.1"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_for_removes_items_older_than_the_age_limit_on_the_collectors_pass() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    create(
        &mut c,
        "recent",
        Retention {
            keep_for: Some(hours(1)),
            ..Default::default()
        },
    )
    .await;
    for name in ["old", "new"] {
        let id = package(&stored, name).await;
        add(&mut c, "recent", name, id).await;
    }
    query(
        &server.database_url,
        "UPDATE collection_items SET added_at = now() - interval '2 hours' WHERE name = 'old'",
    )
    .await;
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.retention.expired, 1);
    let got = get(&mut c, "recent").await;
    assert_eq!(names(&got.items), ["new"]);
    assert_eq!(names(&got.history), ["old"]);
    assert_eq!(got.history[0].removed_why, "retention");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_name_is_refused_unless_replace_which_moves_the_old_item_to_history() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    create(&mut c, "latest", Retention::default()).await;
    let a = package(&stored, "a").await;
    let b = package(&stored, "b").await;
    add(&mut c, "latest", "stable", a).await;
    let taken = c.add_to_collection(adding("latest", "stable", b)).await;
    // The refusal says how to replace.
    assert_code(taken, Code::AlreadyExists, "replace");
    let replaced = c
        .add_to_collection(AddToCollectionRequest {
            replace: true,
            ..adding("latest", "stable", b)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.artifact_id, b.to_string());
    let found = c
        .lookup_item(LookupItemRequest {
            workspace: String::new(),
            collection: "latest".into(),
            name: "stable".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.artifact_id, b.to_string());
    let got = get(&mut c, "latest").await;
    assert_eq!(names(&got.history), ["stable"]);
    assert_eq!(got.history[0].removed_why, "replaced");
    assert_eq!(got.history[0].artifact_id, a.to_string());
    // Removed by hand, the name is free again; lookup finds no active item meanwhile.
    let removed = c
        .remove_from_collection(RemoveFromCollectionRequest {
            workspace: String::new(),
            collection: "latest".into(),
            name: "stable".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed_why, "removed");
    let gone = c
        .lookup_item(LookupItemRequest {
            workspace: String::new(),
            collection: "latest".into(),
            name: "stable".into(),
        })
        .await;
    assert_code(gone, Code::NotFound, "no active item named \"stable\"");
    let again = c
        .remove_from_collection(RemoveFromCollectionRequest {
            workspace: String::new(),
            collection: "latest".into(),
            name: "stable".into(),
        })
        .await;
    assert_code(again, Code::NotFound, "no active item");
    add(&mut c, "latest", "stable", a).await;
    let got = get(&mut c, "latest").await;
    assert_eq!(names(&got.items), ["stable"]);
    assert_eq!(got.history.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_items_keep_their_artifacts_for_the_history_period_then_stay_as_metadata_then_go() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    create(
        &mut c,
        "kept",
        Retention {
            history: Some(hours(1)),
            metadata: Some(hours(1)),
            ..Default::default()
        },
    )
    .await;
    let id = package(&stored, "held").await;
    add(&mut c, "kept", "held", id).await;
    query(
        &server.database_url,
        &format!("UPDATE artifacts SET expires_at = now() - interval '1 second' WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(
        stored.alive(id).await,
        Some(true),
        "an active item keeps its expired artifact"
    );
    stored.gc(&eager_gc()).await;
    assert_eq!(stored.alive(id).await, Some(true));

    c.remove_from_collection(RemoveFromCollectionRequest {
        workspace: String::new(),
        collection: "kept".into(),
        name: "held".into(),
    })
    .await
    .unwrap();
    stored.gc(&eager_gc()).await;
    assert_eq!(
        stored.alive(id).await,
        Some(true),
        "a removed item keeps its artifact for the history period"
    );

    // The history period is over: the artifact is no longer alive at once, and the
    // collector lets the item go of it and deletes it; the item stays as metadata.
    query(
        &server.database_url,
        "UPDATE collection_items SET removed_at = now() - interval '90 minutes'",
    )
    .await;
    assert_eq!(stored.alive(id).await, Some(false));
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.retention.released, 1);
    assert_eq!(report.artifacts_deleted, 1);
    assert_eq!(stored.alive(id).await, None, "the artifact is deleted");
    let got = get(&mut c, "kept").await;
    assert_eq!(names(&got.history), ["held"]);
    assert_eq!(got.history[0].artifact_id, "");
    assert_eq!(got.history[0].category, "package");
    assert!(got.history[0].data.contains("made-by"));

    // The metadata period is over too: the item goes.
    query(
        &server.database_url,
        "UPDATE collection_items SET removed_at = now() - interval '3 hours'",
    )
    .await;
    let report = stored.gc(&eager_gc()).await;
    assert_eq!(report.retention.forgotten, 1);
    let got = get(&mut c, "kept").await;
    assert!(got.history.is_empty() && got.items.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lowering_keep_last_applies_at_once_and_listing_shows_every_collection_by_name() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    create(&mut c, "zeta", Retention::default()).await;
    create(&mut c, "alpha", Retention::default()).await;
    for n in 1..=4 {
        let id = package(&stored, &format!("z{n}")).await;
        add(&mut c, "zeta", &format!("z{n}"), id).await;
    }
    let updated = c
        .update_collection(UpdateCollectionRequest {
            workspace: String::new(),
            name: "zeta".into(),
            retention: Some(Retention {
                keep_last: Some(2),
                history: Some(hours(2)),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let retention = updated.retention.unwrap();
    assert_eq!(retention.keep_last, Some(2));
    assert_eq!(retention.history.unwrap().seconds, 7200);
    assert_eq!(
        retention.metadata.unwrap().seconds,
        365 * 24 * 3600,
        "an unset period is the default"
    );
    let got = get(&mut c, "zeta").await;
    assert_eq!(names(&got.items), ["z4", "z3"]);
    let listed = c
        .list_collections(ListCollectionsRequest {
            workspace: "default".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = listed.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(listed, ["alpha", "zeta"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_the_field_named_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    let bad_collections = [
        ("", "package", Retention::default(), "name"),
        ("Nightly", "package", Retention::default(), "name"),
        ("nightly", "", Retention::default(), "category"),
        ("nightly", "a b", Retention::default(), "category"),
        (
            "nightly",
            "package",
            Retention {
                keep_last: Some(0),
                ..Default::default()
            },
            "keep_last",
        ),
        (
            "nightly",
            "package",
            Retention {
                keep_for: Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "keep_for",
        ),
        (
            "nightly",
            "package",
            Retention {
                keep_for: Some(prost_types::Duration::default()),
                ..Default::default()
            },
            "keep_for",
        ),
        (
            "nightly",
            "package",
            Retention {
                history: Some(prost_types::Duration {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "history",
        ),
    ];
    for (name, category, retention, field) in bad_collections {
        let refused = c
            .create_collection(CreateCollectionRequest {
                workspace: String::new(),
                name: name.into(),
                category: category.into(),
                retention: Some(retention),
            })
            .await;
        assert_code(refused, Code::InvalidArgument, field);
    }
    let none = query(&server.database_url, "SELECT count(*) FROM collections").await;
    assert_eq!(none[0].get::<_, i64>(0), 0);

    create(&mut c, "nightly", Retention::default()).await;
    let twice = c
        .create_collection(CreateCollectionRequest {
            workspace: String::new(),
            name: "nightly".into(),
            category: "package".into(),
            retention: None,
        })
        .await;
    assert_code(twice, Code::AlreadyExists, "already has a collection named");
    let elsewhere = c
        .create_collection(CreateCollectionRequest {
            workspace: "no-such-workspace".into(),
            name: "nightly".into(),
            category: "package".into(),
            retention: None,
        })
        .await;
    assert_code(elsewhere, Code::NotFound, "no-such-workspace");

    let good = package(&stored, "good").await;
    for (name, field) in [
        (String::new(), "name"),
        ("x".repeat(256), "name"),
        ("tab\there".to_owned(), "name"),
    ] {
        let refused = c.add_to_collection(adding("nightly", &name, good)).await;
        assert_code(refused, Code::InvalidArgument, field);
    }
    let long_ok = "é".repeat(255);
    add(&mut c, "nightly", &long_ok, good).await;
    let not_an_id = c
        .add_to_collection(AddToCollectionRequest {
            artifact_id: "not-a-uuid".into(),
            ..adding("nightly", "x", good)
        })
        .await;
    assert_code(not_an_id, Code::InvalidArgument, "artifact_id");
    let unknown = c
        .add_to_collection(adding("nightly", "x", Uuid::now_v7()))
        .await;
    assert_code(unknown, Code::NotFound, "not found");
    let no_collection = c.add_to_collection(adding("weekly", "x", good)).await;
    assert_code(
        no_collection,
        Code::NotFound,
        "no collection named \"weekly\"",
    );

    // Another workspace's artifact is not found, as if it did not exist.
    query(
        &server.database_url,
        "INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'team-b')",
    )
    .await;
    let foreign = stored
        .artifact("team-b", "package", &[("f", b"foreign")], Expiry::Later)
        .await;
    let refused = c.add_to_collection(adding("nightly", "x", foreign)).await;
    assert_code(
        refused,
        Code::NotFound,
        &format!("artifact {foreign} not found"),
    );
    // Expired: hidden at once, as not found.
    let expired = stored
        .artifact("default", "package", &[("e", b"expired")], Expiry::Past)
        .await;
    assert_code(
        c.add_to_collection(adding("nightly", "x", expired)).await,
        Code::NotFound,
        &format!("artifact {expired} not found"),
    );
    let report = stored
        .artifact("default", "test-report", &[("r", b"report")], Expiry::Never)
        .await;
    let wrong_category = c.add_to_collection(adding("nightly", "x", report)).await;
    assert_code(wrong_category, Code::FailedPrecondition, "\"test-report\"");
    let incomplete = stored
        .insert_artifact(
            "default",
            "package",
            &[("i", b"incomplete")],
            Expiry::Later,
            false,
        )
        .await;
    let refused = c
        .add_to_collection(adding("nightly", "x", incomplete))
        .await;
    assert_code(refused, Code::FailedPrecondition, "not complete");
    let items = query(
        &server.database_url,
        "SELECT count(*) FROM collection_items",
    )
    .await;
    assert_eq!(items[0].get::<_, i64>(0), 1, "only the good item is stored");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_read_collections_and_only_contributors_change_them() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let (_, viewer) = server.create_token_without_roles(Role::User, "vera").await;
    server.set_role("default", "vera", "viewer").await;
    let (_, contributor) = server.create_token(Role::User, "carl").await;
    let mut as_contributor = client(&server, &contributor).await;
    let mut as_viewer = client(&server, &viewer).await;
    create(&mut as_contributor, "shared", Retention::default()).await;
    let id = package(&stored, "shared").await;
    let item = add(&mut as_contributor, "shared", "one", id).await;
    assert_eq!(item.added_by, "carl");
    let got = get(&mut as_viewer, "shared").await;
    assert_eq!(names(&got.items), ["one"]);
    let denied = as_viewer
        .add_to_collection(adding("shared", "two", id))
        .await;
    assert_code(denied, Code::PermissionDenied, "contributor");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_adds_keep_names_unique_and_the_count_limit_exact() {
    let server = TestServer::start().await;
    let stored = Stored::local(&server).await;
    let mut c = client(&server, &server.admin_token).await;
    create(
        &mut c,
        "busy",
        Retention {
            keep_last: Some(2),
            ..Default::default()
        },
    )
    .await;
    // Without a count limit, so that retention frees no name meanwhile.
    create(&mut c, "names", Retention::default()).await;
    let mut same = Vec::new();
    let mut distinct = Vec::new();
    for n in 0..8 {
        let id = package(&stored, &format!("busy {n}")).await;
        let mut same_client = client(&server, &server.admin_token).await;
        let mut distinct_client = client(&server, &server.admin_token).await;
        same.push(tokio::spawn(async move {
            same_client
                .add_to_collection(adding("names", "same", id))
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }));
        distinct.push(tokio::spawn(async move {
            distinct_client
                .add_to_collection(adding("busy", &format!("item-{n}"), id))
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }));
    }
    let mut added = 0;
    for task in same {
        match task.await.unwrap() {
            Ok(()) => added += 1,
            Err(code) => assert_eq!(code, Code::AlreadyExists),
        }
    }
    assert_eq!(added, 1, "one add of the name wins, the others are refused");
    for task in distinct {
        task.await.unwrap().unwrap();
    }
    let got = get(&mut c, "busy").await;
    assert_eq!(got.items.len(), 2, "{:?}", names(&got.items));
    assert_eq!(got.items.len() + got.history.len(), 8);
    server.stop().await;
}
