//! Job templates over real gRPC on a real database: creation and names, config merges
//! release by release, changes that change nothing, conditional changes, twenty
//! concurrent changes, a server killed amid concurrent changes, rollback, comparisons,
//! archiving and deleting — and secret values, which must appear in no answer and not in
//! plain form in the database.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::BTreeSet;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::{
    ArchiveTemplateRequest, ChangeKind, CreateTemplateRequest, DeleteTemplateRequest,
    GetReleaseRequest, GetTemplateRequest, JobTemplateChange, JobTemplateSpec, ListReleasesRequest,
    ListTemplatesRequest, Release, RollbackTemplateRequest, RunTemplateRequest, Template,
    UpdateTemplateRequest, create_template_request, release, update_template_request,
};
use berth_tests::{Authed, TestServer, assert_code, query, spec};
use tonic::Code;

const MIB: u64 = 1024 * 1024;
const SECRET: &str = "hunter2-template-secret-value";
const OTHER_SECRET: &str = "swordfish-second-secret-value";

async fn client(server: &TestServer) -> TemplateServiceClient<Authed> {
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
}

/// A job template `name`: the test image, `env`, a secret `API_KEY`, 512 MiB.
fn job(name: &str, env: &[(&str, &str)]) -> CreateTemplateRequest {
    let mut container = spec(&["true"]);
    container.memory_bytes = Some(512 * MIB);
    container.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    container.secret_env = [("API_KEY".to_owned(), SECRET.to_owned())].into();
    CreateTemplateRequest {
        name: name.into(),
        description: "a test job".into(),
        spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
            spec: Some(container),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn change(name: &str, change: JobTemplateChange) -> UpdateTemplateRequest {
    UpdateTemplateRequest {
        name: name.into(),
        change: Some(update_template_request::Change::Job(change)),
        ..Default::default()
    }
}

fn set_env(pairs: &[(&str, &str)]) -> JobTemplateChange {
    JobTemplateChange {
        env: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

async fn update(
    c: &mut TemplateServiceClient<Authed>,
    name: &str,
    job_change: JobTemplateChange,
) -> Template {
    c.update_template(change(name, job_change))
        .await
        .unwrap()
        .into_inner()
}

async fn releases(c: &mut TemplateServiceClient<Authed>, name: &str) -> Vec<Release> {
    c.list_releases(ListReleasesRequest {
        name: name.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .releases
}

async fn get_release(c: &mut TemplateServiceClient<Authed>, name: &str, version: u32) -> Release {
    c.get_release(GetReleaseRequest {
        name: name.into(),
        version,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

fn job_spec(release: &Release) -> JobTemplateSpec {
    match release.spec.clone().unwrap() {
        release::Spec::Job(job) => job,
        release::Spec::Workflow(_) => panic!("a job template's release holds a workflow"),
    }
}

fn env_keys(release: &Release) -> Vec<String> {
    let mut keys: Vec<String> = job_spec(release).spec.unwrap().env.into_keys().collect();
    keys.sort();
    keys
}

fn memory(release: &Release) -> u64 {
    job_spec(release).spec.unwrap().memory_bytes.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_merge_into_the_latest_release_keeping_what_they_do_not_name() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    let v1 = c
        .create_template(job("web", &[("A", "1"), ("B", "2")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v1.latest_version, 1);
    assert_eq!(v1.latest.as_ref().unwrap().summary, "created");
    assert_eq!(v1.created_by, "admin");

    let v2 = update(
        &mut c,
        "web",
        JobTemplateChange {
            memory_bytes: Some(2048 * MIB),
            ..set_env(&[("C", "3")])
        },
    )
    .await;
    assert_eq!(v2.latest_version, 2);
    let latest = v2.latest.unwrap();
    assert_eq!(env_keys(&latest), ["A", "B", "C"]);
    assert_eq!(memory(&latest), 2048 * MIB);
    assert_eq!(latest.summary, "memory 512 MiB → 2 GiB; added env C");

    let v3 = update(
        &mut c,
        "web",
        JobTemplateChange {
            unset_env: vec!["A".into()],
            ..Default::default()
        },
    )
    .await;
    let latest = v3.latest.unwrap();
    assert_eq!(env_keys(&latest), ["B", "C"]);
    assert_eq!(memory(&latest), 2048 * MIB, "memory is kept");
    assert_eq!(latest.summary, "removed env A");

    let v4 = update(
        &mut c,
        "web",
        JobTemplateChange {
            secret_env: [("API_KEY".to_owned(), OTHER_SECRET.to_owned())].into(),
            env: [("B".to_owned(), "two".to_owned())].into(),
            ..Default::default()
        },
    )
    .await;
    let latest = v4.latest.unwrap();
    assert_eq!(v4.latest_version, 4);
    assert_eq!(env_keys(&latest), ["B", "C"]);
    assert_eq!(job_spec(&latest).spec.unwrap().env["B"], "two");
    assert_eq!(latest.secret_env_keys, ["API_KEY"]);
    assert_eq!(latest.summary, "env B changed; secret API_KEY changed");
    let secret = latest
        .changes
        .iter()
        .find(|c| c.field == "secret_env[\"API_KEY\"]")
        .unwrap();
    assert!(secret.secret && secret.before.is_empty() && secret.after.is_empty());
    assert_eq!(secret.kind, ChangeKind::Changed as i32);

    let history = releases(&mut c, "web").await;
    let versions: Vec<u32> = history.iter().map(|r| r.version).collect();
    assert_eq!(versions, [4, 3, 2, 1], "newest first, nothing lost");
    assert_eq!(env_keys(&history[3]), ["A", "B"], "v1 is as it was made");

    // Unsetting what is not there is refused, naming the key.
    assert_code(
        c.update_template(change(
            "web",
            JobTemplateChange {
                unset_env: vec!["NOPE".into()],
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "env[\"NOPE\"]",
    );
    // Reset gives back the server's default; naming a field twice is refused.
    let reset = update(
        &mut c,
        "web",
        JobTemplateChange {
            reset: vec!["memory_bytes".into()],
            ..Default::default()
        },
    )
    .await;
    assert_ne!(memory(&reset.latest.unwrap()), 2048 * MIB);
    assert_code(
        c.update_template(change(
            "web",
            JobTemplateChange {
                memory_bytes: Some(MIB * 64),
                reset: vec!["memory_bytes".into()],
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "either set it or reset it",
    );
    assert_code(
        c.update_template(change(
            "web",
            JobTemplateChange {
                reset: vec!["colour".into()],
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "output_category",
    );
    // A merge is checked as a submission would be.
    assert_code(
        c.update_template(change(
            "web",
            JobTemplateChange {
                env: [("1BAD".to_owned(), "x".to_owned())].into(),
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "spec.env",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_that_changes_nothing_is_refused_and_makes_no_release() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    c.create_template(job("same", &[("A", "1")])).await.unwrap();
    for nothing in [
        set_env(&[("A", "1")]),
        JobTemplateChange {
            memory_bytes: Some(512 * MIB),
            ..Default::default()
        },
        JobTemplateChange {
            secret_env: [("API_KEY".to_owned(), SECRET.to_owned())].into(),
            ..Default::default()
        },
    ] {
        assert_code(
            c.update_template(change("same", nothing)).await,
            Code::FailedPrecondition,
            "changes nothing; v1 stays the latest",
        );
    }
    assert_eq!(releases(&mut c, "same").await.len(), 1);
    // Description and the active flag change the template, not what it runs.
    let described = c
        .update_template(UpdateTemplateRequest {
            name: "same".into(),
            description: Some("new words".into()),
            active: Some(false),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.description, "new words");
    assert!(!described.active);
    assert_eq!(described.latest_version, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conditional_change_on_an_older_version_is_aborted() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    c.create_template(job("cas", &[])).await.unwrap();
    let ok = c
        .update_template(UpdateTemplateRequest {
            expect_version: Some(1),
            ..change("cas", set_env(&[("A", "1")]))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.latest_version, 2);
    assert_code(
        c.update_template(UpdateTemplateRequest {
            expect_version: Some(1),
            ..change("cas", set_env(&[("B", "1")]))
        })
        .await,
        Code::Aborted,
        "is at v2, not v1",
    );
    assert_code(
        c.rollback_template(RollbackTemplateRequest {
            name: "cas".into(),
            version: 1,
            expect_version: Some(1),
            ..Default::default()
        })
        .await,
        Code::Aborted,
        "is at v2, not v1",
    );
    assert_eq!(releases(&mut c, "cas").await.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_changes_get_v2_to_v21_and_each_keeps_the_others_keys() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    c.create_template(job("busy", &[])).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut c = client(&server).await;
        tasks.spawn(async move {
            update(&mut c, "busy", set_env(&[(&format!("K{i}"), "x")]))
                .await
                .latest_version
        });
    }
    let mut versions = BTreeSet::new();
    while let Some(version) = tasks.join_next().await {
        assert!(versions.insert(version.unwrap()), "a version given twice");
    }
    assert_eq!(versions, (2..=21).collect::<BTreeSet<u32>>());
    let history = releases(&mut c, "busy").await;
    let stored: Vec<u32> = history.iter().map(|r| r.version).collect();
    assert_eq!(stored, (1..=21).rev().collect::<Vec<u32>>(), "no gap");
    let mut expected: Vec<String> = (0..20).map(|i| format!("K{i}")).collect();
    expected.sort();
    assert_eq!(env_keys(&history[0]), expected, "v21 holds every change");
    let page = c
        .list_releases(ListReleasesRequest {
            name: "busy".into(),
            limit: 5,
            before_version: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let paged: Vec<u32> = page.releases.iter().map(|r| r.version).collect();
    assert_eq!(paged, [9, 8, 7, 6, 5], "pages go back from `before`");
    for release in &history[..20] {
        assert_eq!(
            release.changes.len(),
            1,
            "v{} adds exactly one key onto the one before it",
            release.version
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_makes_a_new_release_equal_to_the_old_one_and_keeps_history() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    c.create_template(job("undo", &[("A", "1")])).await.unwrap();
    update(
        &mut c,
        "undo",
        JobTemplateChange {
            secret_env: [("TOKEN".to_owned(), OTHER_SECRET.to_owned())].into(),
            ..set_env(&[("X", "y")])
        },
    )
    .await;
    update(
        &mut c,
        "undo",
        JobTemplateChange {
            memory_bytes: Some(1024 * MIB),
            unset_secret_env: vec!["TOKEN".into()],
            ..Default::default()
        },
    )
    .await;
    let v2 = get_release(&mut c, "undo", 2).await;
    let v3 = get_release(&mut c, "undo", 3).await;

    let rolled = c
        .rollback_template(RollbackTemplateRequest {
            name: "undo".into(),
            version: 2,
            note: "v3 ran out of tokens".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rolled.latest_version, 4);
    let v4 = rolled.latest.unwrap();
    assert_eq!(v4.rolled_back_from, Some(2));
    assert_eq!(v4.spec, v2.spec, "v4 runs what v2 ran");
    assert_eq!(v4.secret_env_keys, v2.secret_env_keys);
    assert_eq!(v4.note, "v3 ran out of tokens");
    assert_eq!(
        v4.summary,
        "rolled back to v2; memory 1 GiB → 512 MiB; added secret TOKEN"
    );
    // The secret's sealed value came back with it.
    let same = query(
        &server.database_url,
        "SELECT (SELECT secret_env FROM template_releases r JOIN templates t ON t.id = r.template_id \
         WHERE t.name = 'undo' AND version = 4) \
         = (SELECT secret_env FROM template_releases r JOIN templates t ON t.id = r.template_id \
         WHERE t.name = 'undo' AND version = 2)",
    )
    .await;
    assert!(same[0].get::<_, bool>(0));

    let history = releases(&mut c, "undo").await;
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        [4, 3, 2, 1]
    );
    assert_eq!(history[1].spec, v3.spec, "v3 is untouched");

    assert_code(
        c.rollback_template(RollbackTemplateRequest {
            name: "undo".into(),
            version: 2,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "changes nothing",
    );
    assert_code(
        c.rollback_template(RollbackTemplateRequest {
            name: "undo".into(),
            version: 9,
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "no release v9",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_compares_with_any_other_version() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    c.create_template(job("cmp", &[("DEBUG", "1")]))
        .await
        .unwrap();
    update(&mut c, "cmp", set_env(&[("LOG_LEVEL", "info")])).await;
    update(
        &mut c,
        "cmp",
        JobTemplateChange {
            unset_env: vec!["DEBUG".into()],
            memory_bytes: Some(2048 * MIB),
            ..Default::default()
        },
    )
    .await;
    let compared = c
        .get_release(GetReleaseRequest {
            name: "cmp".into(),
            version: 3,
            diff_against: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(compared.diff_against, 1);
    let fields: Vec<(&str, i32, &str, &str)> = compared
        .diff
        .iter()
        .map(|c| {
            (
                c.field.as_str(),
                c.kind,
                c.before.as_str(),
                c.after.as_str(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            (
                "memory_bytes",
                ChangeKind::Changed as i32,
                "512 MiB",
                "2 GiB"
            ),
            ("env[\"DEBUG\"]", ChangeKind::Removed as i32, "1", ""),
            ("env[\"LOG_LEVEL\"]", ChangeKind::Added as i32, "", "info"),
        ]
    );
    // The latest by default; no comparison unless asked.
    let latest = c
        .get_release(GetReleaseRequest {
            name: "cmp".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.version, 3);
    assert!(latest.diff.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_slugs_not_reserved_unique_and_random_when_empty() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    for bad in ["Web", "web-", "we--b", "9web", "we_b"] {
        assert_code(
            c.create_template(job(bad, &[])).await,
            Code::InvalidArgument,
            "name: ",
        );
    }
    for reserved in ["latest", "new", "all", "templates"] {
        assert_code(
            c.create_template(job(reserved, &[])).await,
            Code::InvalidArgument,
            "is reserved",
        );
    }
    c.create_template(job("taken", &[])).await.unwrap();
    assert_code(
        c.create_template(job("taken", &[])).await,
        Code::AlreadyExists,
        "\"taken\" already exists",
    );
    let mut names = BTreeSet::new();
    for _ in 0..3 {
        let made = c.create_template(job("", &[])).await.unwrap().into_inner();
        let parts: Vec<&str> = made.name.split('-').collect();
        assert!(parts.len() >= 2, "{} is adjective-noun", made.name);
        assert!(parts.iter().all(|p| !p.is_empty()), "{}", made.name);
        names.insert(made.name);
    }
    assert_eq!(names.len(), 3, "each random name is new: {names:?}");
    // A spec that a submission would refuse is refused, naming the field.
    let mut no_image = job("noimage", &[]);
    if let Some(create_template_request::Spec::Job(j)) = &mut no_image.spec {
        j.spec.as_mut().unwrap().image.clear();
    }
    assert_code(
        c.create_template(no_image).await,
        Code::InvalidArgument,
        "spec.image",
    );
    let mut bad_retries = job("retries", &[]);
    if let Some(create_template_request::Spec::Job(j)) = &mut bad_retries.spec {
        j.retries = 99;
    }
    assert_code(
        c.create_template(bad_retries).await,
        Code::InvalidArgument,
        "retries",
    );
    let mut step_input = job("input", &[]);
    if let Some(create_template_request::Spec::Job(j)) = &mut step_input.spec {
        j.inputs = vec![berth_common::proto::Input {
            from: "build".into(),
            ..Default::default()
        }];
    }
    assert_code(
        c.create_template(step_input).await,
        Code::InvalidArgument,
        "inputs[0]",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_appear_in_no_answer_and_are_sealed_in_the_database() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    let mut answers = Vec::new();
    let made = c
        .create_template(job("vault", &[]))
        .await
        .unwrap()
        .into_inner();
    answers.push(format!("{made:?}"));
    let changed = update(
        &mut c,
        "vault",
        JobTemplateChange {
            secret_env: [
                ("API_KEY".to_owned(), OTHER_SECRET.to_owned()),
                ("NEW_KEY".to_owned(), SECRET.to_owned()),
            ]
            .into(),
            ..Default::default()
        },
    )
    .await;
    answers.push(format!("{changed:?}"));
    let got = c
        .get_template(GetTemplateRequest {
            name: "vault".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    answers.push(format!("{got:?}"));
    answers.push(format!("{:?}", releases(&mut c, "vault").await));
    let compared = c
        .get_release(GetReleaseRequest {
            name: "vault".into(),
            version: 2,
            diff_against: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(compared.diff.len(), 2, "{:?}", compared.diff);
    answers.push(format!("{compared:?}"));
    let rolled = c
        .rollback_template(RollbackTemplateRequest {
            name: "vault".into(),
            version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    answers.push(format!("{rolled:?}"));
    let listed = c
        .list_templates(ListTemplatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    answers.push(format!("{listed:?}"));
    // Refusals must not echo a secret either.
    let refused = c
        .update_template(change(
            "vault",
            JobTemplateChange {
                secret_env: [("API_KEY".to_owned(), SECRET.to_owned())].into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    answers.push(format!("{refused:?}"));
    for answer in &answers {
        assert!(!answer.contains(SECRET), "a secret value leaked: {answer}");
        assert!(
            !answer.contains(OTHER_SECRET),
            "a secret value leaked: {answer}"
        );
    }
    assert!(answers[1].contains("API_KEY") && answers[1].contains("NEW_KEY"));

    let rows = query(
        &server.database_url,
        "SELECT count(*) FROM template_releases WHERE spec::text LIKE '%hunter2%' \
         OR changes::text LIKE '%hunter2%' OR summary LIKE '%hunter2%' \
         OR position('hunter2'::bytea IN coalesce(secret_env, ''::bytea)) > 0 \
         OR position('swordfish'::bytea IN coalesce(secret_env, ''::bytea)) > 0 \
         OR spec::text LIKE '%swordfish%' OR changes::text LIKE '%swordfish%'",
    )
    .await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        0,
        "a secret is stored in plain form"
    );
    let sealed = query(
        &server.database_url,
        "SELECT count(*) FROM template_releases WHERE secret_env IS NOT NULL",
    )
    .await;
    assert_eq!(
        sealed[0].get::<_, i64>(0),
        3,
        "every release seals its secrets"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archived_template_is_hidden_and_refuses_changes_until_restored() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    c.create_template(job("old", &[])).await.unwrap();
    c.create_template(job("kept", &[])).await.unwrap();
    let archived = c
        .archive_template(ArchiveTemplateRequest {
            name: "old".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(archived.archived);
    let names = |list: Vec<Template>| list.into_iter().map(|t| t.name).collect::<Vec<_>>();
    let listed = c
        .list_templates(ListTemplatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(listed.templates), ["kept"]);
    let all = c
        .list_templates(ListTemplatesRequest {
            include_archived: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(all.templates), ["kept", "old"]);
    assert_code(
        c.update_template(change("old", set_env(&[("A", "1")])))
            .await,
        Code::FailedPrecondition,
        "is archived",
    );
    assert_code(
        c.rollback_template(RollbackTemplateRequest {
            name: "old".into(),
            version: 1,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "is archived",
    );
    let restored = c
        .archive_template(ArchiveTemplateRequest {
            name: "old".into(),
            restore: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!restored.archived);
    assert_eq!(
        update(&mut c, "old", set_env(&[("A", "1")]))
            .await
            .latest_version,
        2
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_an_unused_template_and_archives_one_a_pending_request_uses() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    c.create_template(job("gone", &[])).await.unwrap();
    update(&mut c, "gone", set_env(&[("A", "1")])).await;
    let deleted = c
        .delete_template(DeleteTemplateRequest {
            name: "gone".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted && !deleted.archived);
    assert!(
        deleted.message.contains("2 releases"),
        "{}",
        deleted.message
    );
    assert_code(
        c.get_template(GetTemplateRequest {
            name: "gone".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "no template named \"gone\"",
    );
    let left = query(
        &server.database_url,
        "SELECT count(*) FROM template_releases",
    )
    .await;
    assert_eq!(left[0].get::<_, i64>(0), 0);

    // A template a pending request was made from is archived, not deleted.
    let used = c
        .create_template(job("used", &[]))
        .await
        .unwrap()
        .into_inner();
    // No worker is connected, so the run stays pending.
    let run = c
        .run_template(RunTemplateRequest {
            name: "used".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let recorded = query(
        &server.database_url,
        &format!(
            "SELECT template_id::text, template_version FROM work_requests WHERE id = '{}'",
            run.id
        ),
    )
    .await;
    assert_eq!(recorded[0].get::<_, String>(0), used.id);
    assert_eq!(recorded[0].get::<_, i32>(1), 1);
    let kept = c
        .delete_template(DeleteTemplateRequest {
            name: "used".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!kept.deleted && kept.archived, "{kept:?}");
    assert!(
        kept.message.contains("archived instead"),
        "{}",
        kept.message
    );
    let still = c
        .get_template(GetTemplateRequest {
            name: "used".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(still.archived);
    let recorded = query(
        &server.database_url,
        &format!(
            "SELECT template_id::text FROM work_requests WHERE id = '{}'",
            run.id
        ),
    )
    .await;
    assert_eq!(
        recorded[0].get::<_, String>(0),
        used.id,
        "the run keeps its origin"
    );
    assert_code(
        c.run_template(RunTemplateRequest {
            name: "used".into(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "archived",
    );
    server.stop().await;
}

/// A server killed with SIGKILL while many changes are in flight: every change it
/// acknowledged is in the history, no release is half made or missing, and the versions
/// still run 1, 2, 3, ... without a gap once it is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_amid_concurrent_changes_keeps_every_acknowledged_release_and_no_gap() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let database_url = berth_tests::fresh_database().await;
    let mut process = berth_tests::ServerProcess::start(&database_url, None, "").await;
    let server = process.handle(&process.admin_token());
    let mut c = client(&server).await;
    c.create_template(job("doomed", &[])).await.unwrap();

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let mut c = client(&server).await;
        let acknowledged = acknowledged.clone();
        tasks.spawn(async move {
            let key = format!("K{i}");
            let answer = c
                .update_template(change("doomed", set_env(&[(&key, "x")])))
                .await;
            answer.ok().map(|t| {
                acknowledged.fetch_add(1, Ordering::SeqCst);
                (key, t.into_inner().latest_version)
            })
        });
    }
    berth_tests::eventually(
        "some changes to be acknowledged",
        std::time::Duration::from_secs(30),
        || {
            let acknowledged = acknowledged.clone();
            async move { (acknowledged.load(Ordering::SeqCst) >= 30).then_some(()) }
        },
    )
    .await;
    process.kill().await;
    let mut answered = Vec::new();
    let mut refused = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Some(done) => answered.push(done),
            None => refused += 1,
        }
    }
    assert!(
        refused > 0,
        "the kill must land while changes are in flight ({} answered)",
        answered.len()
    );

    process.spawn().await;
    let mut c = client(&server).await;
    let history = c
        .list_releases(ListReleasesRequest {
            name: "doomed".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .releases;
    let latest = history[0].version;
    let stored: Vec<u32> = history.iter().map(|r| r.version).collect();
    assert_eq!(stored, (1..=latest).rev().collect::<Vec<u32>>(), "no gap");
    // Each release after v1 added exactly one key onto the one before it.
    assert_eq!(
        env_keys(&history[0]).len(),
        usize::try_from(latest - 1).unwrap()
    );
    for release in &history[..history.len() - 1] {
        assert_eq!(release.changes.len(), 1, "v{} is whole", release.version);
    }
    let kept: BTreeSet<String> = env_keys(&history[0]).into_iter().collect();
    let mut versions = BTreeSet::new();
    for (key, version) in &answered {
        assert!(
            kept.contains(key),
            "acknowledged {key} (v{version}) was lost"
        );
        assert!(versions.insert(*version), "v{version} acknowledged twice");
    }
    process.stop().await;
}
