//! Services end to end: a real server (its reconciler makes the replicas), simulated
//! workers for placement and restarts. Replicas are ordinary work requests, so what the
//! tests look at is what users see: the replicas' states, their requests and the history.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::BTreeMap;

use berth_core::error::Error;
use berth_core::services::{Process, ReplicaState, RestartPolicy, ServiceView};
use berth_core::work::spec::PortMapping;
use berth_tests::services::{Services, create_template, service};
use berth_tests::{SimOptions, TestServer, query, quick_heartbeats, unique_name};

fn states(view: &ServiceView) -> Vec<(String, ReplicaState)> {
    view.replicas
        .iter()
        .map(|r| (r.name.to_string(), r.state))
        .collect()
}

fn all_running(view: &ServiceView, n: usize) -> bool {
    view.replicas.len() == n
        && view.replicas.iter().all(|r| {
            r.worker.is_some() && matches!(r.state, ReplicaState::Starting | ReplicaState::Healthy)
        })
}

#[tokio::test]
async fn scale_up_and_down_stops_the_highest_indices_first() {
    let server = TestServer::start_with(quick_heartbeats).await;
    let sim = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    let services = Services::on(&server).await;
    create_template(&server, "sleeper", "busybox", &["sleep", "3600"], "").await;
    let name = unique_name("web");
    let view = services
        .create(&name, "sleeper", &[("web", 0)], |_| {})
        .await;
    assert!(view.replicas.is_empty(), "{:?}", states(&view));

    services.scale(&name, "web", 3).await;
    let view = services
        .wait(&name, "three replicas running", |v| all_running(v, 3))
        .await;
    let names: Vec<String> = view.replicas.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(names, ["web.0", "web.1", "web.2"]);
    let first = view.replicas[0].request_id;

    services.scale(&name, "web", 1).await;
    let view = services
        .wait(&name, "one replica left", |v| v.replicas.len() == 1)
        .await;
    assert_eq!(view.replicas[0].name.to_string(), "web.0");
    // The one kept is the same container: scaling down stops only what is beyond.
    assert_eq!(view.replicas[0].request_id, first);

    let history = services.history(&name).await;
    let said: Vec<(String, String, String)> = history
        .iter()
        .map(|e| {
            (
                e.row.kind.clone(),
                e.row
                    .process
                    .clone()
                    .map(|p| format!("{p}.{}", e.row.slot_index.unwrap()))
                    .unwrap_or_default(),
                e.row.reason.clone(),
            )
        })
        .collect();
    let scaled: Vec<&str> = said
        .iter()
        .filter(|s| s.0 == "scaled")
        .map(|s| s.2.as_str())
        .collect();
    assert_eq!(scaled, ["web 0 → 3", "web 3 → 1"], "{said:?}");
    let stopping: Vec<&str> = said
        .iter()
        .filter(|s| s.0 == "stopping")
        .map(|s| s.1.as_str())
        .collect();
    assert_eq!(stopping, ["web.2", "web.1"], "{said:?}");
    assert!(
        said.iter()
            .all(|s| s.0 != "stopping" || s.2 == "scaled down"),
        "{said:?}"
    );
    let started = said.iter().filter(|s| s.0 == "started").count();
    assert_eq!(started, 3, "{said:?}");
    // The stopped replicas' requests ended cancelled, with the reason as their message.
    let rows = query(
        &server.database_url,
        "SELECT r.status, r.message FROM work_requests r JOIN service_runs s ON s.request_id = r.id \
         WHERE s.slot_index > 0",
    )
    .await;
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row.get::<_, String>(0), "aborted");
        assert_eq!(row.get::<_, String>(1), "scaled down");
    }
    drop(sim);
    server.stop().await;
}

#[tokio::test]
async fn a_crashing_replica_is_restarted_with_growing_backoff_pinned_then_moved() {
    let server = TestServer::start_with(quick_heartbeats).await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(2))
        .await;
    let services = Services::on(&server).await;
    create_template(&server, "crasher", "busybox", &["false"], "").await;
    let name = unique_name("crash");
    services
        .create(&name, "crasher", &[("web", 1)], |input| {
            input.backoff.initial = Some(berth_core::work::spec::RawDuration::from_millis(200));
            input.backoff.max_local_restarts = Some(3);
        })
        .await;
    // Three failures: two local restarts pinned to the worker, then a move off it.
    let moved = services
        .wait_event(&name, "moved", "crashed 3 times in a row on")
        .await;
    let history = services.history(&name).await;
    let exited: Vec<&str> = history
        .iter()
        .filter(|e| e.row.kind == "exited")
        .map(|e| e.row.reason.as_str())
        .collect();
    assert!(exited.len() >= 3, "{exited:?}");
    assert!(exited.iter().all(|r| *r == "exit 1"), "{exited:?}");
    // The delay doubles: the restarts' not_before come 200 ms, 400 ms, 800 ms (+≤10 %)
    // after the endings they follow.
    let rows = query(
        &server.database_url,
        &format!(
            "SELECT extract(epoch FROM (r.not_before - e.at))::float8 FROM service_events e \
             JOIN services s ON s.id = e.service_id \
             JOIN service_events st ON st.service_id = e.service_id AND st.kind = 'started' AND st.id > e.id \
               AND NOT EXISTS (SELECT 1 FROM service_events x WHERE x.service_id = e.service_id \
                 AND x.kind = 'started' AND x.id > e.id AND x.id < st.id) \
             JOIN work_requests r ON r.id = st.request_id \
             WHERE s.name = '{name}' AND e.kind = 'exited' AND e.reason = 'exit 1' ORDER BY e.id LIMIT 3"
        ),
    )
    .await;
    let delays: Vec<f64> = rows.iter().map(|r| r.get::<_, f64>(0)).collect();
    assert_eq!(delays.len(), 3, "{delays:?}");
    for (delay, base) in delays.iter().zip([0.2, 0.4, 0.8]) {
        assert!(
            *delay >= base - 0.05 && *delay <= base * 1.1 + 0.05,
            "{delays:?}"
        );
    }
    // The first two restarts were pinned to the worker; the third keeps off it.
    let placements = query(
        &server.database_url,
        &format!(
            "SELECT p.pin_worker_id IS NOT NULL, p.avoid_worker_id IS NOT NULL, p.why \
             FROM service_runs r JOIN services s ON s.id = r.service_id \
             JOIN request_placement p ON p.request_id = r.request_id \
             WHERE s.name = '{name}' ORDER BY r.request_id LIMIT 3"
        ),
    )
    .await;
    let kinds: Vec<(bool, bool)> = placements.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        kinds,
        [(true, false), (true, false), (false, true)],
        "{moved:?}"
    );
    let why: String = placements[0].get(2);
    assert!(why.starts_with("pinned to worker "), "{why}");
    server.stop().await;
}

#[tokio::test]
async fn restart_policies_never_and_on_failure() {
    let server = TestServer::start_with(quick_heartbeats).await;
    let _sim = server
        .sim_worker(SimOptions::default().concurrency(4))
        .await;
    let services = Services::on(&server).await;
    create_template(&server, "ok", "busybox", &["true"], "").await;
    create_template(&server, "bad", "busybox", &["false"], "").await;
    let cases = [
        ("ok", RestartPolicy::Never, true),
        ("bad", RestartPolicy::Never, true),
        ("ok", RestartPolicy::OnFailure, true),
        ("bad", RestartPolicy::OnFailure, false),
    ];
    let mut names = Vec::new();
    for (template, policy, _) in cases {
        let name = unique_name(template);
        services
            .create(&name, template, &[("web", 1)], |input| {
                input.restart_policy = Some(policy);
                input.backoff.initial = Some(berth_core::work::spec::RawDuration::from_millis(100));
            })
            .await;
        names.push(name);
    }
    for ((template, policy, stays), name) in cases.iter().zip(&names) {
        if *stays {
            let view = services
                .wait(name, "the replica exited and stayed", |v| {
                    v.replicas
                        .first()
                        .is_some_and(|r| r.state == ReplicaState::Exited)
                })
                .await;
            services
                .wait_event(
                    name,
                    "exited",
                    &format!("not restarted: restart policy {policy}"),
                )
                .await;
            assert_eq!(view.replicas[0].failures, 0, "{template} {policy}");
        } else {
            services.wait_event(name, "restarting", "(exit 1)").await;
            let starts = services
                .history(name)
                .await
                .iter()
                .filter(|e| e.row.kind == "started")
                .count();
            assert!(starts >= 2, "{template} {policy}");
        }
    }
    // A stayed replica makes no more containers: one request each.
    for ((_, _, stays), name) in cases.iter().zip(&names) {
        if *stays {
            let rows = query(
                &server.database_url,
                &format!(
                    "SELECT count(*) FROM service_runs r JOIN services s ON s.id = r.service_id WHERE s.name = '{name}'"
                ),
            )
            .await;
            assert_eq!(rows[0].get::<_, i64>(0), 1);
        }
    }
    server.stop().await;
}

fn code(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument(_) => "invalid",
        Error::NotFound(_) => "not-found",
        Error::AlreadyExists(_) => "exists",
        Error::FailedPrecondition(_) => "precondition",
        _ => "other",
    }
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let server = TestServer::start().await;
    let services = Services::on(&server).await;
    create_template(&server, "sleeper", "busybox", &["sleep", "3600"], "").await;
    create_template(&server, "bridged", "busybox", &["sleep", "3600"], "bridge").await;
    let admin = &services.admin;
    let m = &services.manager;
    let base = |name: &str| berth_core::services::CreateInput {
        name: name.to_owned(),
        template: "sleeper".to_owned(),
        ..Default::default()
    };
    let ms = berth_core::work::spec::RawDuration::from_millis;
    let many: BTreeMap<String, Process> = (0..17)
        .map(|i| (format!("p{i}"), Process::default()))
        .collect();
    let port = |c: u16, h: u16, p: &str| PortMapping {
        container_port: c,
        host_port: h,
        protocol: p.to_owned(),
    };
    let cases: Vec<(berth_core::services::CreateInput, &str, &str)> = vec![
        (base("Bad_Name"), "invalid", "name:"),
        (base("list"), "invalid", "reserved"),
        (base("scale"), "invalid", "reserved"),
        (
            berth_core::services::CreateInput {
                template: "nope".into(),
                ..base("a1")
            },
            "not-found",
            "nope",
        ),
        (
            berth_core::services::CreateInput {
                version: Some(9),
                ..base("a2")
            },
            "not-found",
            "v9",
        ),
        (
            berth_core::services::CreateInput {
                processes: many,
                ..base("a3")
            },
            "invalid",
            "processes",
        ),
        (
            berth_core::services::CreateInput {
                processes: BTreeMap::from([("Web".to_owned(), Process::default())]),
                ..base("a4")
            },
            "invalid",
            "processes[\"Web\"]",
        ),
        (
            berth_core::services::CreateInput {
                processes: BTreeMap::from([(
                    "web".to_owned(),
                    Process {
                        replicas: 101,
                        command: vec![],
                    },
                )]),
                ..base("a5")
            },
            "invalid",
            "replicas",
        ),
        (
            berth_core::services::CreateInput {
                processes: BTreeMap::from([(
                    "web".to_owned(),
                    Process {
                        replicas: 1,
                        command: vec![String::new()],
                    },
                )]),
                ..base("a6")
            },
            "invalid",
            "processes[\"web\"].command[0]",
        ),
        (
            {
                let mut i = base("a7");
                i.backoff.initial = Some(ms(0));
                i
            },
            "invalid",
            "backoff.initial",
        ),
        (
            {
                let mut i = base("a8");
                i.backoff.initial = Some(ms(5000));
                i.backoff.max = Some(ms(1000));
                i
            },
            "invalid",
            "backoff.max",
        ),
        (
            {
                let mut i = base("a9");
                i.backoff.max = Some(ms(2 * 3600 * 1000));
                i
            },
            "invalid",
            "backoff.max",
        ),
        (
            {
                let mut i = base("b1");
                i.health.min_healthy = Some(ms(2 * 3600 * 1000));
                i
            },
            "invalid",
            "health.min_healthy",
        ),
        (
            {
                let mut i = base("b2");
                i.health.deploy_deadline = Some(ms(5000));
                i
            },
            "invalid",
            "health.deploy_deadline",
        ),
        (
            berth_core::services::CreateInput {
                template: "bridged".into(),
                ports: vec![port(0, 0, "")],
                ..base("b3")
            },
            "invalid",
            "ports[0].container_port",
        ),
        (
            berth_core::services::CreateInput {
                template: "bridged".into(),
                ports: vec![port(80, 0, "sctp")],
                ..base("b4")
            },
            "invalid",
            "ports[0].protocol",
        ),
        (
            berth_core::services::CreateInput {
                template: "bridged".into(),
                ports: vec![port(80, 0, ""), port(80, 0, "tcp")],
                ..base("b5")
            },
            "invalid",
            "twice",
        ),
        (
            berth_core::services::CreateInput {
                template: "bridged".into(),
                ports: (1..=33).map(|p| port(p, 0, "tcp")).collect(),
                ..base("b6")
            },
            "invalid",
            "at most 32",
        ),
        (
            berth_core::services::CreateInput {
                ports: vec![port(80, 8080, "tcp")],
                ..base("b7")
            },
            "precondition",
            "ports need a network; set --network bridge on template sleeper",
        ),
    ];
    for (input, want, text) in cases {
        let name = input.name.clone();
        let e = m.create(admin, input).await.unwrap_err();
        assert_eq!(code(&e), want, "{name}: {e}");
        assert!(e.to_string().contains(text), "{name}: {e}");
    }
    // A good one, then its name again.
    let ok = berth_core::services::CreateInput {
        template: "bridged".into(),
        ports: vec![port(80, 0, "")],
        ..base("good")
    };
    let view = m.create(admin, ok.clone()).await.unwrap();
    assert_eq!(
        view.replicas.len(),
        0,
        "the reconciler makes slots, not create"
    );
    let e = m.create(admin, ok.clone()).await.unwrap_err();
    assert_eq!(code(&e), "exists", "{e}");
    // Scaling an unknown process type names the known ones.
    let e = m
        .scale(
            admin,
            &service("good"),
            &BTreeMap::from([("worker".to_owned(), 2)]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "invalid", "{e}");
    assert!(e.to_string().contains("it has web"), "{e}");
    let e = m.get(admin, &service("missing")).await.unwrap_err();
    assert_eq!(code(&e), "not-found", "{e}");
    // Deleted: the name is free at once.
    m.delete(admin, &service("good")).await.unwrap();
    m.create(admin, ok).await.unwrap();
    server.stop().await;
}
