//! `berth service ...`: create, show, scale, deploy, change and delete services, read
//! their history, endpoints and logs, and run one-off commands in their release.
//!
//! Most commands are one call shown as its view. Three do more: `logs` writes the
//! replicas' interleaved output with a `web.1 | ` prefix on every line (a line cut across
//! chunks is kept per replica and stream until its newline comes, so prefixes never land
//! mid-line); `run` follows its one-off request as `berth run` does and exits with its
//! status; `deploy --wait` reads the service once a second until its deploy is done or
//! has failed.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use berth_common::proto;

use super::work_requests::run_attached;
use super::{Interrupt, Server, Services, show};
use crate::args::{
    CommandArg, RestartArg, ServiceCommand, ServiceCreateArgs, ServiceDeployArgs, ServiceLogsArgs,
    ServiceSetArgs, ServiceSettingsArgs,
};
use crate::commands::templates::split_version;
use crate::error::CliError;
use crate::follow::{EXIT_INTERRUPTED, STDOUT};
use crate::output::{DeletedServiceView, Printer, ServiceView};
use crate::values::to_proto_duration;

pub(super) async fn execute(
    command: ServiceCommand,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let done = match command {
        ServiceCommand::Create(args) => {
            let create = create_request(&args)?;
            show(server, printer, Services::create_service, create).await
        }
        ServiceCommand::List { workspace } => {
            let list = proto::ListServicesRequest {
                workspace: workspace.unwrap_or_default(),
            };
            show(server, printer, Services::list_services, list).await
        }
        ServiceCommand::Get { name, workspace } => {
            let get = proto::GetServiceRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Services::get_service, get).await
        }
        ServiceCommand::Scale {
            name,
            replicas,
            workspace,
        } => {
            let scale = proto::ScaleServiceRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                replicas: replicas.into_iter().collect(),
            };
            show(server, printer, Services::scale_service, scale).await
        }
        ServiceCommand::Deploy(args) => return deploy(args, server, printer, interrupt).await,
        ServiceCommand::History {
            name,
            replica,
            limit,
            workspace,
        } => {
            let history = proto::GetServiceHistoryRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                replica: replica.unwrap_or_default(),
                limit: limit.unwrap_or(0),
                before: 0,
            };
            show(server, printer, Services::get_service_history, history).await
        }
        ServiceCommand::Endpoints { name, workspace } => {
            let endpoints = proto::ListServiceEndpointsRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Services::list_service_endpoints, endpoints).await
        }
        ServiceCommand::Logs(args) => return logs(args, server, printer, interrupt).await,
        ServiceCommand::Run(args) => {
            let request = proto::RunServiceCommandRequest {
                workspace: args.workspace.unwrap_or_default(),
                name: args.name,
                command: args.command,
                process: args.process.unwrap_or_default(),
            };
            let submitted = server
                .call(Services::run_service_command, request)
                .await
                .map_err(CliError::while_running)?;
            return run_attached(submitted, server, printer, interrupt)
                .await
                .map_err(CliError::while_running);
        }
        ServiceCommand::Set(args) => {
            let update = update_request(&args);
            show(server, printer, Services::update_service, update).await
        }
        ServiceCommand::Delete { name, workspace } => {
            let workspace = workspace.unwrap_or_default();
            let delete = proto::DeleteServiceRequest {
                workspace: workspace.clone(),
                name: name.clone(),
            };
            server.call(Services::delete_service, delete).await?;
            printer.show(&DeletedServiceView {
                name,
                workspace,
                deleted: true,
            })
        }
    };
    done.map(|()| 0)
}

fn policy(restart: Option<RestartArg>) -> i32 {
    match restart {
        None => proto::RestartPolicy::Unspecified,
        Some(RestartArg::Always) => proto::RestartPolicy::Always,
        Some(RestartArg::OnFailure) => proto::RestartPolicy::OnFailure,
        Some(RestartArg::Never) => proto::RestartPolicy::Never,
    }
    .into()
}

fn backoff(settings: &ServiceSettingsArgs) -> Option<proto::Backoff> {
    if settings.backoff_initial.is_none() && settings.backoff_max.is_none() {
        return None;
    }
    Some(proto::Backoff {
        initial: settings.backoff_initial.map(to_proto_duration),
        max: settings.backoff_max.map(to_proto_duration),
        ..Default::default()
    })
}

fn health(settings: &ServiceSettingsArgs) -> Option<proto::Health> {
    if settings.min_healthy.is_none() && settings.deploy_deadline.is_none() {
        return None;
    }
    Some(proto::Health {
        min_healthy: settings.min_healthy.map(to_proto_duration),
        deploy_deadline: settings.deploy_deadline.map(to_proto_duration),
    })
}

fn ports(settings: &ServiceSettingsArgs) -> Vec<proto::PortMapping> {
    settings
        .ports
        .iter()
        .map(|p| proto::PortMapping {
            container_port: u32::from(p.container_port),
            host_port: u32::from(p.host_port),
            protocol: p.protocol.clone(),
        })
        .collect()
}

/// `--command` values by process type; a process named twice is a usage error.
fn commands(list: &[CommandArg]) -> Result<BTreeMap<String, Vec<String>>, CliError> {
    let mut commands = BTreeMap::new();
    for c in list {
        if commands
            .insert(c.process.clone(), c.command.clone())
            .is_some()
        {
            return Err(CliError::Usage(format!(
                "--command: process type {} is given twice",
                c.process
            )));
        }
    }
    Ok(commands)
}

/// The `CreateService` request.
fn create_request(args: &ServiceCreateArgs) -> Result<proto::CreateServiceRequest, CliError> {
    let (template, version) =
        split_version(&args.template).map_err(|e| CliError::Usage(format!("--template {e}")))?;
    let mut commands = commands(&args.settings.commands)?;
    let mut processes: BTreeMap<String, proto::Process> = BTreeMap::new();
    for (name, replicas) in &args.processes {
        if processes.contains_key(name) {
            return Err(CliError::Usage(format!(
                "--process: process type {name} is given twice"
            )));
        }
        processes.insert(
            name.clone(),
            proto::Process {
                replicas: *replicas,
                command: commands.remove(name).unwrap_or_default(),
            },
        );
    }
    // A command for a process not scaled here: `web` by default, else 0 replicas.
    for (name, command) in commands {
        let replicas = u32::from(processes.is_empty() && name == "web");
        processes.insert(name, proto::Process { replicas, command });
    }
    let settings = &args.settings;
    Ok(proto::CreateServiceRequest {
        workspace: settings.workspace.clone().unwrap_or_default(),
        name: args.name.clone(),
        template,
        version: version.unwrap_or(0),
        processes: processes.into_iter().collect(),
        restart_policy: policy(settings.restart),
        backoff: backoff(settings),
        health: health(settings),
        ports: ports(settings),
    })
}

/// The `UpdateService` request.
fn update_request(args: &ServiceSetArgs) -> proto::UpdateServiceRequest {
    let settings = &args.settings;
    proto::UpdateServiceRequest {
        workspace: settings.workspace.clone().unwrap_or_default(),
        name: args.name.clone(),
        restart_policy: policy(settings.restart),
        backoff: backoff(settings),
        health: health(settings),
        set_ports: args.no_ports || !settings.ports.is_empty(),
        ports: ports(settings),
        commands: settings
            .commands
            .iter()
            .map(|c| {
                (
                    c.process.clone(),
                    proto::ProcessCommand {
                        command: c.command.clone(),
                    },
                )
            })
            .collect(),
    }
}

/// `deploy`: starts it, and with `--wait` reads the service until the deploy is over.
async fn deploy(
    args: ServiceDeployArgs,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let workspace = args.workspace.clone().unwrap_or_default();
    let request = proto::DeployServiceRequest {
        workspace: workspace.clone(),
        name: args.name.clone(),
        version: args.release.unwrap_or(0),
        auto_revert: args.auto_revert,
        deadline: args.deadline.map(to_proto_duration),
    };
    let mut client: Services = server.client().await?;
    let started = client.deploy_service(request).await?.into_inner();
    if !args.wait {
        printer.show(&ServiceView::from(started))?;
        return Ok(0);
    }
    let get = proto::GetServiceRequest {
        workspace,
        name: args.name.clone(),
    };
    let mut last = String::new();
    let mut service = started;
    let watch = async {
        loop {
            let line = progress(&service);
            if line != last {
                printer.note(&format!("{line}\n"))?;
                last = line;
            }
            let state = service.deploy.as_ref().map_or("", |d| d.state.as_str());
            if matches!(state, "done" | "failed") {
                return Ok::<_, CliError>(service);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            service = client.get_service(get.clone()).await?.into_inner();
        }
    };
    let ended = tokio::select! {
        biased;
        () = interrupt => None,
        ended = watch => Some(ended),
    };
    let Some(ended) = ended else {
        printer.note(&format!(
            "stopped waiting; the deploy goes on: berth service get {}\n",
            args.name
        ))?;
        return Ok(EXIT_INTERRUPTED);
    };
    let service = ended?;
    let failed = service
        .deploy
        .as_ref()
        .filter(|d| d.state == "failed")
        .map(|d| (d.to_version, d.message.clone()));
    printer.show(&ServiceView::from(service))?;
    match failed {
        None => Ok(0),
        Some((to, message)) => Err(CliError::Local(format!(
            "the deploy of {} to v{to} failed: {message}",
            args.name
        ))),
    }
}

/// One line saying where a deploy stands: its state and each replica's release and state.
fn progress(service: &proto::Service) -> String {
    let state = service.deploy.as_ref().map_or_else(
        || "no deploy".to_owned(),
        |d| format!("{} v{}", d.state, d.to_version),
    );
    let replicas: Vec<String> = service
        .replicas
        .iter()
        .map(|r| {
            let next = if r.next_work_request_id.is_empty() {
                ""
            } else {
                " (+ replacement)"
            };
            format!("{}.{} v{} {}{next}", r.process, r.index, r.version, r.state)
        })
        .collect();
    format!("deploy: {state}; {}", replicas.join(", "))
}

/// Writes lines of several replicas' output, each prefixed with its replica. A piece of
/// a line is held per (replica, stream) until the rest of it comes.
#[derive(Debug, Default)]
pub(crate) struct Prefixed {
    partial: BTreeMap<(String, bool), Vec<u8>>,
}

impl Prefixed {
    /// Writes the whole lines `data` completes for `replica` to `sink`.
    pub(crate) fn write(
        &mut self,
        replica: &str,
        stdout: bool,
        data: &[u8],
        sink: &mut dyn Write,
    ) -> std::io::Result<()> {
        let pending = self
            .partial
            .entry((replica.to_owned(), stdout))
            .or_default();
        pending.extend_from_slice(data);
        let Some(last) = pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let rest = pending.split_off(last + 1);
        for line in pending.split_inclusive(|&b| b == b'\n') {
            sink.write_all(replica.as_bytes())?;
            sink.write_all(b" | ")?;
            sink.write_all(line)?;
        }
        *pending = rest;
        sink.flush()
    }

    /// Writes what is left of every unfinished line, ended with a newline.
    pub(crate) fn finish(
        &mut self,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> std::io::Result<()> {
        for ((replica, stdout), rest) in std::mem::take(&mut self.partial) {
            if rest.is_empty() {
                continue;
            }
            let sink: &mut dyn Write = if stdout { &mut *out } else { &mut *err };
            sink.write_all(replica.as_bytes())?;
            sink.write_all(b" | ")?;
            sink.write_all(&rest)?;
            sink.write_all(b"\n")?;
            sink.flush()?;
        }
        Ok(())
    }
}

/// `logs`: the replicas' output as it comes, each line prefixed. Ctrl-C ends `-f`.
async fn logs(
    args: ServiceLogsArgs,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let mut client: Services = server.client().await?;
    let request = proto::StreamServiceLogsRequest {
        workspace: args.workspace.unwrap_or_default(),
        name: args.name,
        replica: args.replica.unwrap_or_default(),
        follow: args.follow,
        all: args.all,
    };
    let mut stream = client.stream_service_logs(request).await?.into_inner();
    let mut lines = Prefixed::default();
    let out = &mut *printer.out;
    let err = &mut *printer.err;
    let read = async {
        while let Some(chunk) = stream.message().await? {
            let stdout = chunk.stream == STDOUT;
            let sink: &mut dyn Write = if stdout { &mut *out } else { &mut *err };
            lines.write(&chunk.replica, stdout, &chunk.data, sink)?;
        }
        Ok::<_, CliError>(())
    };
    let ended = tokio::select! {
        biased;
        () = interrupt => None,
        ended = read => Some(ended),
    };
    lines.finish(&mut *printer.out, &mut *printer.err)?;
    match ended {
        None => Ok(EXIT_INTERRUPTED),
        Some(ended) => ended.map(|()| 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;
    use crate::args::tests::parse;

    fn service(line: &[&str]) -> ServiceCommand {
        match parse(line).command {
            Command::Service(command) => command,
            other => panic!("expected service, got {other:?}"),
        }
    }

    #[test]
    fn lines_are_prefixed_and_pieces_wait_for_their_newline() {
        let mut lines = Prefixed::default();
        let mut out = Vec::new();
        let mut err = Vec::new();
        lines.write("web.0", true, b"hel", &mut out).expect("write");
        lines
            .write("web.1", true, b"one\ntw", &mut out)
            .expect("write");
        lines
            .write("web.0", true, b"lo\nbye\n", &mut out)
            .expect("write");
        lines
            .write("web.0", false, b"oops", &mut err)
            .expect("write");
        lines.finish(&mut out, &mut err).expect("finish");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "web.1 | one\nweb.0 | hello\nweb.0 | bye\nweb.1 | tw\n"
        );
        assert_eq!(String::from_utf8(err).expect("utf-8"), "web.0 | oops\n");
    }

    #[test]
    fn create_sends_processes_with_their_commands_and_the_release() {
        let ServiceCommand::Create(args) = service(&[
            "service",
            "create",
            "shop",
            "--template",
            "srv@v3",
            "--process",
            "web=2",
            "--command",
            "web=./serve --port 8080",
            "--command",
            "worker=./work",
            "--min-healthy",
            "5s",
            "--port",
            "8080/udp",
        ]) else {
            panic!("create");
        };
        let request = create_request(&args).expect("valid");
        assert_eq!(request.template, "srv");
        assert_eq!(request.version, 3);
        assert_eq!(request.processes["web"].replicas, 2);
        assert_eq!(
            request.processes["web"].command,
            ["./serve", "--port", "8080"]
        );
        assert_eq!(request.processes["worker"].replicas, 0);
        assert_eq!(request.ports[0].protocol, "udp");
        assert_eq!(
            request
                .health
                .and_then(|h| h.min_healthy)
                .map(|d| d.seconds),
            Some(5)
        );
        assert!(request.backoff.is_none());
        let ServiceCommand::Create(args) = service(&[
            "service",
            "create",
            "shop",
            "--template",
            "srv",
            "--command",
            "web=x",
        ]) else {
            panic!("create");
        };
        let request = create_request(&args).expect("valid");
        assert_eq!(request.version, 0);
        assert_eq!(request.processes["web"].replicas, 1);
    }

    #[test]
    fn set_replaces_ports_only_when_asked() {
        let ServiceCommand::Set(args) = service(&["service", "set", "shop", "--restart", "never"])
        else {
            panic!("set");
        };
        let request = update_request(&args);
        assert!(!request.set_ports);
        assert_eq!(request.restart_policy, proto::RestartPolicy::Never as i32);
        let ServiceCommand::Set(args) = service(&["service", "set", "shop", "--no-ports"]) else {
            panic!("set");
        };
        let request = update_request(&args);
        assert!(request.set_ports && request.ports.is_empty());
    }
}
