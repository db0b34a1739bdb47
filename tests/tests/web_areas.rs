//! The dashboard's area pages over HTTP on the real server and database: workers,
//! templates (history and diff), services, triggers (next fire times, pause/resume),
//! topics (subscriptions with backlog) and artifacts and collections. Each page shows a
//! member what a test made, hides another workspace's things from a user who is not a
//! member (lists leave them out, pages answer 404), and never renders a secret; the
//! actions need the form's CSRF token and the role the gRPC method needs, and change what
//! the gRPC API then reports.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::collection_service_client::CollectionServiceClient;
use berth_common::proto::service_service_client::ServiceServiceClient;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::trigger_service_client::TriggerServiceClient;
use berth_common::proto::{
    AddToCollectionRequest, CreateCollectionRequest, CreateServiceRequest,
    CreateSubscriptionRequest, CreateTemplateRequest, CreateTopicRequest, CreateTriggerRuleRequest,
    CreateWorkspaceRequest, GetTriggerRuleRequest, GetWorkerRequest, JobTemplateChange,
    JobTemplateSpec, PublishRequest, Role, ScheduleConfig, TriggerAction, UpdateTemplateRequest,
    create_template_request, create_trigger_rule_request, update_template_request,
};
use berth_tests::artifacts::{create, upload};
use berth_tests::sim::SimOptions;
use berth_tests::topics::{message, topics};
use berth_tests::{TestServer, spec};

/// A template's secret env value: it must never reach a page.
const SECRET: &str = "s3cret-value-never-rendered-7f3a";
/// The private workspace everything is made in.
const TEAM: &str = "team";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client")
}

/// A signed-in browser: its session cookie and the CSRF token its pages carry.
struct Browser {
    http: reqwest::Client,
    url: String,
    cookie: String,
}

impl Browser {
    async fn sign_in(server: &TestServer, token: &str) -> Browser {
        let http = client();
        let answer = http
            .post(format!("{}/ui/login", server.url))
            .form(&[("token", token), ("next", "/ui/queue")])
            .send()
            .await
            .expect("sign-in");
        assert_eq!(answer.status(), 303, "sign-in refused");
        let cookie = answer.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Browser {
            http,
            url: server.url.clone(),
            cookie,
        }
    }

    /// GETs `path`; returns the status and the body.
    async fn get(&self, path: &str) -> (u16, String) {
        let answer = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = answer.status().as_u16();
        (status, answer.text().await.unwrap())
    }

    /// GETs `path`, which must answer 200; returns the body.
    async fn page(&self, path: &str) -> String {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The CSRF token of this session (every page carries it).
    async fn csrf(&self) -> String {
        let body = self.page("/ui/workers").await;
        let start = body
            .find(r#"<meta name="csrf" content=""#)
            .expect("a page carries the CSRF token")
            + r#"<meta name="csrf" content=""#.len();
        let end = body[start..].find('"').unwrap() + start;
        body[start..end].to_owned()
    }

    /// POSTs a form to `path`; returns the status and the `Location` (or the body).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let answer = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = answer.status().as_u16();
        let location = answer
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        match location {
            Some(location) => (status, location),
            None => (status, answer.text().await.unwrap()),
        }
    }
}

/// Makes the private workspace `team` and a user of `role` in it (or in none).
async fn user(server: &TestServer, name: &str, role: Option<&str>) -> String {
    let (_, token) = server.create_token_without_roles(Role::User, name).await;
    if let Some(role) = role {
        server.set_role(TEAM, name, role).await;
    }
    token
}

/// What the area tests look at, made as the admin in `team`.
struct Made {
    artifact: String,
}

async fn make_things(server: &TestServer) -> Made {
    let admin = &server.admin_token;
    server
        .workspaces(admin)
        .await
        .create_workspace(CreateWorkspaceRequest {
            name: TEAM.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut templates =
        TemplateServiceClient::with_interceptor(server.channel().await, BearerAuth::new(admin));
    let mut job = spec(&["echo", "hello"]);
    job.secret_env = [("API_KEY".to_owned(), SECRET.to_owned())].into();
    templates
        .create_template(CreateTemplateRequest {
            workspace: TEAM.into(),
            name: "nightly-build".into(),
            description: "builds every night".into(),
            spec: Some(create_template_request::Spec::Job(JobTemplateSpec {
                spec: Some(job),
                requirements: [("parked".to_owned(), "yes".to_owned())].into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap();
    templates
        .update_template(UpdateTemplateRequest {
            workspace: TEAM.into(),
            name: "nightly-build".into(),
            note: "louder greeting".into(),
            change: Some(update_template_request::Change::Job(JobTemplateChange {
                env: [("GREETING".to_owned(), "loud-greeting-v2".to_owned())].into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap();
    TriggerServiceClient::with_interceptor(server.channel().await, BearerAuth::new(admin))
        .create_trigger_rule(CreateTriggerRuleRequest {
            workspace: TEAM.into(),
            name: "every-hour".into(),
            config: Some(create_trigger_rule_request::Config::Schedule(
                ScheduleConfig {
                    cron: "0 * * * *".into(),
                    time_zone: "UTC".into(),
                    ..Default::default()
                },
            )),
            action: Some(TriggerAction {
                template: "nightly-build".into(),
                ..Default::default()
            }),
            paused: false,
        })
        .await
        .unwrap();
    ServiceServiceClient::with_interceptor(server.channel().await, BearerAuth::new(admin))
        .create_service(CreateServiceRequest {
            workspace: TEAM.into(),
            name: "web-frontend".into(),
            template: "nightly-build".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut topic_client = topics(server, admin).await;
    topic_client
        .create_topic(CreateTopicRequest {
            workspace: TEAM.into(),
            slug: "build-events".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    topic_client
        .create_subscription(CreateSubscriptionRequest {
            workspace: TEAM.into(),
            topic: "build-events".into(),
            name: "audit-log".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    topic_client
        .publish(PublishRequest {
            workspace: TEAM.into(),
            topic: "build-events".into(),
            messages: vec![
                message(serde_json::json!({"n": 1})),
                message(serde_json::json!({"n": 2})),
            ],
        })
        .await
        .unwrap();
    let mut artifacts = server.artifacts(admin).await;
    let report = b"all 12 tests passed\n";
    let created = create(
        &mut artifacts,
        TEAM,
        "build-output",
        &[("report.txt", report)],
    )
    .await;
    let artifact = created.artifact.unwrap().id;
    upload(&mut artifacts, &artifact, "report.txt", report).await;
    let mut collections =
        CollectionServiceClient::with_interceptor(server.channel().await, BearerAuth::new(admin));
    collections
        .create_collection(CreateCollectionRequest {
            workspace: TEAM.into(),
            name: "releases".into(),
            category: "build-output".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    collections
        .add_to_collection(AddToCollectionRequest {
            workspace: TEAM.into(),
            collection: "releases".into(),
            name: "latest-release".into(),
            artifact_id: artifact.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    Made { artifact }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_area_shows_a_members_things_hides_them_from_others_and_no_secret() {
    let server = TestServer::start().await;
    let worker = server
        .sim_worker(SimOptions {
            labels: [("pool".to_owned(), "gpu-pool".to_owned())].into(),
            ..Default::default()
        })
        .await;
    let made = make_things(&server).await;
    let member = Browser::sign_in(&server, &user(&server, "alice", Some("viewer")).await).await;
    let outsider = Browser::sign_in(&server, &user(&server, "mallory", None).await).await;

    // (page, what a member sees there)
    let lists: &[(&str, &[&str])] = &[
        ("/ui/templates", &["nightly-build", "v2", "GREETING"]),
        ("/ui/triggers", &["every-hour", "schedule", "active"]),
        ("/ui/services", &["web-frontend"]),
        ("/ui/topics", &["build-events"]),
        ("/ui/artifacts", &[made.artifact.as_str(), "build-output"]),
        ("/ui/collections", &["releases"]),
    ];
    let pages: &[(&str, &[&str])] = &[
        (
            "/ui/templates/team/nightly-build",
            // The history, the diff of v2 against v1, and the secret's name.
            &[
                "v1",
                "v2",
                "louder greeting",
                "GREETING",
                "loud-greeting-v2",
                "API_KEY",
                "class=\"add\"",
            ],
        ),
        (
            "/ui/triggers/team/every-hour",
            &["Next fire times", ":00:00", "nightly-build", "Pause"],
        ),
        (
            "/ui/services/team/web-frontend",
            &["web.0", "desired", "nightly-build"],
        ),
        ("/ui/topics/team/build-events", &["audit-log"]),
        (
            &format!("/ui/artifacts/{}", made.artifact),
            &[
                "report.txt",
                "20 B",
                &format!("/ui/artifacts/{}/files/report.txt", made.artifact),
            ],
        ),
        (
            "/ui/collections/team/releases",
            &["latest-release", made.artifact.as_str()],
        ),
    ];

    let mut wrong = Vec::new();
    // Workers are the fleet's, not a workspace's: every signed-in user sees them.
    let workers = member.page("/ui/workers").await;
    for wanted in [worker.name.as_str(), "connected", "pool=gpu-pool", "0 / "] {
        if !workers.contains(wanted) {
            wrong.push(format!("/ui/workers lacks {wanted:?}"));
        }
    }
    for (path, wanted) in lists.iter().chain(pages.iter()) {
        let body = member.page(path).await;
        for w in wanted.iter() {
            if !body.contains(w) {
                wrong.push(format!("{path} lacks {w:?} for a member"));
            }
        }
        if body.contains(SECRET) {
            wrong.push(format!("{path} shows the secret env value"));
        }
    }
    // The subscription's backlog: both messages owed, none in flight.
    let topic = member.page("/ui/topics/team/build-events").await;
    if !topic.contains(r#"<td class="backlog">2</td>"#) {
        wrong.push(format!(
            "the topic page does not show a backlog of 2: {topic}"
        ));
    }
    for (path, wanted) in lists.iter() {
        let body = outsider.page(path).await;
        for w in wanted.iter().take(1) {
            if body.contains(w) {
                wrong.push(format!("{path} shows {w:?} to a non-member"));
            }
        }
    }
    for (path, _) in pages.iter() {
        let (status, body) = outsider.get(path).await;
        if status != 404 {
            wrong.push(format!("{path} answered {status} to a non-member: {body}"));
        }
        if body.contains(SECRET) {
            wrong.push(format!("{path} shows the secret to a non-member"));
        }
    }
    // A workspace the outsider names itself is refused, not listed empty.
    let (status, _) = outsider.get("/ui/templates?workspace=team").await;
    if status != 404 {
        wrong.push(format!("a named foreign workspace answered {status}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_areas_say_what_to_do() {
    let server = TestServer::start().await;
    let admin = Browser::sign_in(&server, &server.admin_token).await;
    for (path, hint) in [
        ("/ui/workers", "berth-worker"),
        ("/ui/templates", "berth template create"),
        ("/ui/services", "berth service create"),
        ("/ui/triggers", "berth trigger create"),
        ("/ui/topics", "berth topic create"),
        ("/ui/artifacts", "berth artifact create"),
        ("/ui/collections", "berth collection create"),
    ] {
        let body = admin.page(path).await;
        assert!(body.contains(hint), "{path} does not say {hint:?}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn draining_and_enabling_a_worker_need_the_csrf_token_and_an_admin() {
    let server = TestServer::start().await;
    let worker = server.sim_worker(SimOptions::default()).await;
    let admin = Browser::sign_in(&server, &server.admin_token).await;
    let (_, user_token) = server.create_token(Role::User, "alice").await;
    let user = Browser::sign_in(&server, &user_token).await;
    let mut grpc = server.workers(&server.admin_token).await;
    let mut draining = async || {
        grpc.get_worker(GetWorkerRequest {
            name: worker.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .draining
    };
    let name = worker.name.as_str();

    let (status, body) = admin.post("/ui/workers/drain", &[("name", name)]).await;
    assert_eq!(status, 403, "drain without a CSRF token: {body}");
    let (status, body) = admin
        .post("/ui/workers/drain", &[("name", name), ("csrf", "forged")])
        .await;
    assert_eq!(status, 403, "drain with a forged CSRF token: {body}");
    // DrainWorker is an admin's: a user with a good token is refused too.
    let user_csrf = user.csrf().await;
    let (status, body) = user
        .post("/ui/workers/drain", &[("name", name), ("csrf", &user_csrf)])
        .await;
    assert_eq!(status, 403, "drain by a user: {body}");
    assert!(body.contains("DrainWorker"), "{body}");
    assert!(!user.page("/ui/workers").await.contains("/ui/workers/drain"));
    assert!(!draining().await);

    let csrf = admin.csrf().await;
    let (status, location) = admin
        .post("/ui/workers/drain", &[("name", name), ("csrf", &csrf)])
        .await;
    assert_eq!(status, 303, "{location}");
    assert!(location.starts_with("/ui/workers?flash="), "{location}");
    assert!(draining().await, "the worker is draining after the drain");
    let shown = admin.page(&location).await;
    assert!(shown.contains("is draining"), "{shown}");
    assert!(
        shown.contains("class=\"state-pending draining\""),
        "{shown}"
    );

    let (status, body) = user
        .post(
            "/ui/workers/enable",
            &[("name", name), ("csrf", &user_csrf)],
        )
        .await;
    assert_eq!(status, 403, "enable by a user: {body}");
    assert!(draining().await);
    let (status, location) = admin
        .post("/ui/workers/enable", &[("name", name), ("csrf", &csrf)])
        .await;
    assert_eq!(status, 303, "{location}");
    assert!(!draining().await, "enabled again, it no longer drains");

    // A worker that does not exist is a 404 naming it, not a failure.
    let (status, body) = admin
        .post(
            "/ui/workers/drain",
            &[("name", "no-such-worker"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-worker"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pausing_and_resuming_a_trigger_need_the_csrf_token_and_a_contributor() {
    let server = TestServer::start().await;
    make_things(&server).await;
    let contributor =
        Browser::sign_in(&server, &user(&server, "carol", Some("contributor")).await).await;
    let viewer = Browser::sign_in(&server, &user(&server, "victor", Some("viewer")).await).await;
    let outsider = Browser::sign_in(&server, &user(&server, "mallory", None).await).await;
    let mut grpc = TriggerServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    );
    let mut active = async || {
        grpc.get_trigger_rule(GetTriggerRuleRequest {
            workspace: TEAM.into(),
            name: "every-hour".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .active
    };
    let pause = "/ui/triggers/team/every-hour/pause";
    let resume = "/ui/triggers/team/every-hour/resume";

    let (status, body) = contributor.post(pause, &[("note", "maintenance")]).await;
    assert_eq!(status, 403, "pause without a CSRF token: {body}");
    // A viewer of the workspace may read the rule but not change it.
    let viewer_csrf = viewer.csrf().await;
    let (status, body) = viewer.post(pause, &[("csrf", &viewer_csrf)]).await;
    assert_eq!(status, 403, "pause by a viewer: {body}");
    // Someone outside the workspace does not learn the rule exists.
    let outsider_csrf = outsider.csrf().await;
    let (status, body) = outsider.post(pause, &[("csrf", &outsider_csrf)]).await;
    assert_eq!(status, 404, "pause by a non-member: {body}");
    assert!(active().await, "nothing refused changed the rule");

    let csrf = contributor.csrf().await;
    let (status, location) = contributor
        .post(pause, &[("csrf", &csrf), ("note", "<b>maintenance</b>")])
        .await;
    assert_eq!(status, 303, "{location}");
    assert!(!active().await, "the rule is paused");
    let shown = contributor.page(&location).await;
    assert!(shown.contains("is paused"), "{shown}");
    // The note is the viewer's text: escaped, never markup.
    assert!(shown.contains("&lt;b&gt;maintenance&lt;/b&gt;"), "{shown}");
    assert!(!shown.contains("<b>maintenance</b>"), "{shown}");
    assert!(shown.contains("Resume"), "{shown}");

    let (status, body) = viewer.post(resume, &[("csrf", &viewer_csrf)]).await;
    assert_eq!(status, 403, "resume by a viewer: {body}");
    assert!(!active().await);
    let (status, location) = contributor.post(resume, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303, "{location}");
    assert!(active().await, "the rule is active again");
    server.stop().await;
}
