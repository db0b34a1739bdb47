//! Services from a test: the core's [`ServiceManager`] over the test server's database,
//! driven in this process while the server's own reconciler makes the replicas (it looks
//! every sweep interval, so a change here reaches it without a notification).
//!
//! The wire conversions of `ServiceService` are tested with the API; this is for the
//! reconciler's behaviour, which is the same whichever front asked for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::template_service_client::TemplateServiceClient;
use berth_common::proto::{self, ContainerSpec, CreateTemplateRequest, JobTemplateSpec};
use berth_core::access::auth::{Authenticator, Identity};
use berth_core::live::AgentSettings;
use berth_core::live::hub::Hub;
use berth_core::services::{
    CreateInput, EventView, HistoryQuery, Process, ServiceManager, ServiceRef, ServiceView,
};
use berth_core::store::db::{self, DbSettings};
use berth_core::store::secrets::SecretBox;
use berth_core::templates::Templates;
use berth_core::work::requests::WorkRequests;
use berth_core::work::spec::SpecDefaults;

use crate::{TestServer, eventually};

/// How long a test waits for the reconciler.
pub const WAIT: Duration = Duration::from_secs(30);

/// A [`ServiceManager`] on `server`'s database, and the admin's identity.
pub struct Services {
    pub manager: ServiceManager,
    pub admin: Identity,
}

impl Services {
    pub async fn on(server: &TestServer) -> Services {
        let pool = db::connect_pool(&DbSettings {
            url: server.database_url.clone(),
            ca_cert: None,
            pool_size: 4,
        })
        .await
        .unwrap();
        let secrets =
            SecretBox::load_or_create(&server.data_dir.path().join("secret.key")).unwrap();
        let defaults = SpecDefaults::default();
        let hub = Arc::new(Hub::new(&AgentSettings::default()));
        let requests =
            WorkRequests::new(pool.clone(), secrets.clone(), defaults.clone(), hub.clone());
        let templates = Templates::new(
            pool.clone(),
            secrets.clone(),
            defaults.clone(),
            requests.clone(),
        );
        let manager = ServiceManager::new(pool.clone(), secrets, defaults, hub, templates);
        let admin = Authenticator::new(pool)
            .authenticate(&server.admin_token)
            .await
            .unwrap();
        Services { manager, admin }
    }

    /// Creates service `name` in `default` from template `template` with `processes`
    /// (`web=N` pairs), adjusting the input with `adjust`.
    pub async fn create(
        &self,
        name: &str,
        template: &str,
        processes: &[(&str, u32)],
        adjust: impl FnOnce(&mut CreateInput),
    ) -> ServiceView {
        let mut input = CreateInput {
            name: name.to_owned(),
            template: template.to_owned(),
            processes: processes
                .iter()
                .map(|(p, n)| {
                    (
                        (*p).to_owned(),
                        Process {
                            replicas: *n,
                            command: Vec::new(),
                        },
                    )
                })
                .collect(),
            ..CreateInput::default()
        };
        adjust(&mut input);
        self.manager.create(&self.admin, input).await.unwrap()
    }

    pub async fn get(&self, name: &str) -> ServiceView {
        self.manager.get(&self.admin, &service(name)).await.unwrap()
    }

    pub async fn scale(&self, name: &str, process: &str, n: u32) -> ServiceView {
        let replicas = BTreeMap::from([(process.to_owned(), n)]);
        self.manager
            .scale(&self.admin, &service(name), &replicas)
            .await
            .unwrap()
    }

    /// Every event of `name`, oldest first.
    pub async fn history(&self, name: &str) -> Vec<EventView> {
        let mut page = self
            .manager
            .history(
                &self.admin,
                &HistoryQuery {
                    service: service(name),
                    limit: 1000,
                    ..HistoryQuery::default()
                },
            )
            .await
            .unwrap();
        page.events.reverse();
        page.events
    }

    /// Waits until `check` holds of `name`'s view.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&ServiceView) -> bool,
    ) -> ServiceView {
        eventually(what, WAIT, || async {
            let view = self.get(name).await;
            check(&view).then_some(view)
        })
        .await
    }

    /// Waits until `name`'s history has an event of `kind` whose reason contains `text`.
    pub async fn wait_event(&self, name: &str, kind: &str, text: &str) -> EventView {
        eventually(&format!("a {kind} event saying {text:?}"), WAIT, || async {
            self.history(name)
                .await
                .into_iter()
                .find(|e| e.row.kind == kind && e.row.reason.contains(text))
        })
        .await
    }
}

/// `name` in `default`.
pub fn service(name: &str) -> ServiceRef {
    ServiceRef {
        workspace: String::new(),
        name: name.to_owned(),
    }
}

/// Creates job template `name` in `default` running `command` (a simulated worker's
/// script, or a shell command for real containers) in `image`, on `network`.
pub async fn create_template(
    server: &TestServer,
    name: &str,
    image: &str,
    command: &[&str],
    network: &str,
) {
    TemplateServiceClient::with_interceptor(
        server.channel().await,
        BearerAuth::new(&server.admin_token),
    )
    .create_template(CreateTemplateRequest {
        name: name.to_owned(),
        spec: Some(proto::create_template_request::Spec::Job(JobTemplateSpec {
            spec: Some(ContainerSpec {
                image: image.to_owned(),
                command: command.iter().map(|c| (*c).to_owned()).collect(),
                network: network.to_owned(),
                ..ContainerSpec::default()
            }),
            ..JobTemplateSpec::default()
        })),
        ..CreateTemplateRequest::default()
    })
    .await
    .unwrap();
}
