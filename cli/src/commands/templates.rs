//! `berth template ...`: create, change, show, compare, roll back, list, archive and
//! delete job templates, and show what their runs did.
//!
//! `set` merges into the latest release on the server; the CLI only sorts its flags into
//! the change. `--unset KEY` names a variable without saying whether it is secret, so
//! `set` first reads the template to see which of the two it is (the server still refuses
//! a key that is neither, naming it).

use std::ffi::OsString;

use berth_common::proto;

use super::{Server, Templates, show};
use crate::args::{TemplateCommand, TemplateCreateArgs, TemplateSetArgs, TemplateSpecArgs};
use crate::error::CliError;
use crate::output::Printer;
use crate::values::{into_map, networks_to_proto, resolve_secret_env, to_proto_duration};

pub(super) async fn execute(
    command: TemplateCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        TemplateCommand::Create(args) => {
            let create = create_request(&args, |key| std::env::var_os(key))?;
            show(server, printer, Templates::create_template, create).await
        }
        TemplateCommand::Set(args) => set(args, server, printer).await,
        TemplateCommand::Show {
            template,
            diff,
            workspace,
        } => {
            let (name, version) = split_version(&template)?;
            let workspace = workspace.unwrap_or_default();
            if version.is_none() && diff.is_none() {
                let get = proto::GetTemplateRequest {
                    workspace,
                    name,
                    kind: proto::TemplateKind::Job.into(),
                };
                return show(server, printer, Templates::get_template, get).await;
            }
            let get = proto::GetReleaseRequest {
                workspace,
                name,
                kind: proto::TemplateKind::Job.into(),
                version: version.unwrap_or(0),
                diff_against: diff.unwrap_or(0),
            };
            show(server, printer, Templates::get_release, get).await
        }
        TemplateCommand::Releases {
            name,
            limit,
            before,
            workspace,
        } => {
            let list = proto::ListReleasesRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                kind: proto::TemplateKind::Job.into(),
                limit: limit.unwrap_or(0),
                before_version: before.unwrap_or(0),
            };
            show(server, printer, Templates::list_releases, list).await
        }
        TemplateCommand::Rollback {
            name,
            version,
            expect_version,
            note,
            workspace,
        } => {
            let rollback = proto::RollbackTemplateRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                kind: proto::TemplateKind::Job.into(),
                version,
                expect_version,
                note: note.unwrap_or_default(),
            };
            show(server, printer, Templates::rollback_template, rollback).await
        }
        TemplateCommand::List { all, workspace } => {
            let list = proto::ListTemplatesRequest {
                workspace: workspace.unwrap_or_default(),
                kind: proto::TemplateKind::Job.into(),
                include_archived: all,
            };
            show(server, printer, Templates::list_templates, list).await
        }
        TemplateCommand::Archive {
            name,
            restore,
            workspace,
        } => {
            let archive = proto::ArchiveTemplateRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                kind: proto::TemplateKind::Job.into(),
                restore,
            };
            show(server, printer, Templates::archive_template, archive).await
        }
        TemplateCommand::Delete { name, workspace } => {
            let delete = proto::DeleteTemplateRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                kind: proto::TemplateKind::Job.into(),
            };
            show(server, printer, Templates::delete_template, delete).await
        }
        TemplateCommand::Stats {
            name,
            since,
            workspace,
        } => {
            let stats = proto::GetTemplateStatsRequest {
                workspace: workspace.unwrap_or_default(),
                name,
                kind: proto::TemplateKind::Job.into(),
                since: since.map(to_proto_duration),
            };
            show(server, printer, Templates::get_template_stats, stats).await
        }
    }
}

/// `NAME` or `NAME@vK` (also `NAME@K`).
pub(crate) fn split_version(text: &str) -> Result<(String, Option<u32>), CliError> {
    match text.split_once('@') {
        None => Ok((text.to_owned(), None)),
        Some((name, version)) => {
            let version = crate::args::parse_version(version)
                .map_err(|e| CliError::Usage(format!("{text}: {e}")))?;
            Ok((name.to_owned(), Some(version)))
        }
    }
}

fn inputs(args: &TemplateSpecArgs) -> Vec<proto::Input> {
    args.inputs
        .iter()
        .map(|input| proto::Input {
            artifact: input.artifact.clone(),
            mount: input.mount.clone(),
            from: String::new(),
        })
        .collect()
}

fn outputs(args: &TemplateSpecArgs) -> Vec<proto::Output> {
    args.outputs
        .iter()
        .map(|output| proto::Output {
            path: output.path.clone(),
            when: if output.always {
                proto::OutputWhen::Always
            } else {
                proto::OutputWhen::Success
            }
            .into(),
        })
        .collect()
}

fn pull(args: &TemplateSpecArgs) -> i32 {
    args.pull
        .map_or(proto::PullPolicy::Unspecified, proto::PullPolicy::from)
        .into()
}

/// The `CreateTemplate` request, secret values looked up with `lookup`.
fn create_request(
    args: &TemplateCreateArgs,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::CreateTemplateRequest, CliError> {
    let spec = &args.spec;
    let secret_env = resolve_secret_env(&spec.secret_env, lookup).map_err(CliError::Usage)?;
    let (network, networks) = networks_to_proto(&spec.networks);
    let container = proto::ContainerSpec {
        ports: Vec::new(),
        image: args.image.clone(),
        command: spec.command.clone(),
        env: into_map(&spec.env),
        secret_env,
        working_dir: spec.workdir.clone().unwrap_or_default(),
        memory_bytes: spec.memory,
        cpus: spec.cpus,
        pids_limit: spec.pids,
        timeout: spec.timeout.map(to_proto_duration),
        network,
        pull_policy: pull(spec),
        stop_grace_period: spec.grace_period.map(to_proto_duration),
        networks,
    };
    Ok(proto::CreateTemplateRequest {
        workspace: spec.workspace.clone().unwrap_or_default(),
        name: args.name.clone(),
        description: args.description.clone().unwrap_or_default(),
        inactive: args.inactive,
        spec: Some(proto::create_template_request::Spec::Job(
            proto::JobTemplateSpec {
                spec: Some(container),
                requirements: into_map(&spec.require),
                priority: spec.priority.unwrap_or(0),
                retries: spec.retries.unwrap_or(0),
                retry_backoff: spec.retry_backoff.map(to_proto_duration),
                inputs: inputs(spec),
                outputs: outputs(spec),
                output_category: spec.output_category.clone().unwrap_or_default(),
            },
        )),
        note: spec.note.clone().unwrap_or_default(),
    })
}

/// Whether `args` change the spec at all (as opposed to only the description or the
/// active flag).
fn changes_spec(args: &TemplateSetArgs) -> bool {
    let spec = &args.spec;
    args.image.is_some()
        || !args.unset.is_empty()
        || !args.unset_require.is_empty()
        || !args.reset.is_empty()
        || !spec.command.is_empty()
        || !spec.env.is_empty()
        || !spec.secret_env.is_empty()
        || spec.workdir.is_some()
        || spec.memory.is_some()
        || spec.cpus.is_some()
        || spec.pids.is_some()
        || spec.timeout.is_some()
        || spec.grace_period.is_some()
        || !spec.networks.is_empty()
        || spec.pull.is_some()
        || !spec.require.is_empty()
        || spec.priority.is_some()
        || spec.retries.is_some()
        || spec.retry_backoff.is_some()
        || !spec.inputs.is_empty()
        || !spec.outputs.is_empty()
        || spec.output_category.is_some()
}

/// The `UpdateTemplate` request. `secret_keys` are the names of the latest release's
/// secret variables: an `--unset` of one of them removes a secret, any other an
/// environment variable.
fn set_request(
    args: &TemplateSetArgs,
    secret_keys: &[String],
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::UpdateTemplateRequest, CliError> {
    let spec = &args.spec;
    let change = if changes_spec(args) {
        let secret_env = resolve_secret_env(&spec.secret_env, lookup).map_err(CliError::Usage)?;
        let (unset_secret_env, unset_env): (Vec<String>, Vec<String>) = args
            .unset
            .iter()
            .cloned()
            .partition(|key| secret_keys.contains(key));
        let (network, mut networks) = networks_to_proto(&spec.networks);
        if !network.is_empty() {
            networks.push(proto::NetworkAttachment {
                name: network,
                aliases: Vec::new(),
            });
        }
        Some(proto::update_template_request::Change::Job(
            proto::JobTemplateChange {
                image: args.image.clone(),
                command: (!spec.command.is_empty()).then(|| proto::Command {
                    args: spec.command.clone(),
                }),
                env: into_map(&spec.env),
                unset_env,
                secret_env,
                unset_secret_env,
                working_dir: spec.workdir.clone(),
                memory_bytes: spec.memory,
                cpus: spec.cpus,
                pids_limit: spec.pids,
                timeout: spec.timeout.map(to_proto_duration),
                stop_grace_period: spec.grace_period.map(to_proto_duration),
                networks: (!networks.is_empty()).then_some(proto::Networks { networks }),
                pull_policy: pull(spec),
                requirements: into_map(&spec.require),
                unset_requirements: args.unset_require.clone(),
                priority: spec.priority,
                retries: spec.retries,
                retry_backoff: spec.retry_backoff.map(to_proto_duration),
                inputs: (!spec.inputs.is_empty()).then(|| proto::Inputs {
                    inputs: inputs(spec),
                }),
                outputs: (!spec.outputs.is_empty()).then(|| proto::Outputs {
                    outputs: outputs(spec),
                }),
                output_category: spec.output_category.clone(),
                reset: args.reset.clone(),
            },
        ))
    } else {
        None
    };
    let active = match (args.active, args.inactive) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    Ok(proto::UpdateTemplateRequest {
        workspace: spec.workspace.clone().unwrap_or_default(),
        name: args.name.clone(),
        kind: proto::TemplateKind::Job.into(),
        expect_version: args.expect_version,
        description: args.description.clone(),
        active,
        change,
        note: spec.note.clone().unwrap_or_default(),
    })
}

async fn set(
    args: TemplateSetArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    if !changes_spec(&args) && args.description.is_none() && !args.active && !args.inactive {
        return Err(CliError::Usage(
            "nothing to change: give spec flags (--memory, --env K=V, --unset K, ...), --description, --active or --inactive".into(),
        ));
    }
    let secret_keys = if args.unset.is_empty() {
        Vec::new()
    } else {
        let get = proto::GetTemplateRequest {
            workspace: args.spec.workspace.clone().unwrap_or_default(),
            name: args.name.clone(),
            kind: proto::TemplateKind::Job.into(),
        };
        server
            .call(Templates::get_template, get)
            .await?
            .latest
            .map(|release| release.secret_env_keys)
            .unwrap_or_default()
    };
    let update = set_request(&args, &secret_keys, |key| std::env::var_os(key))?;
    show(server, printer, Templates::update_template, update).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(argv: &[&str]) -> TemplateCommand {
        let cli = Cli::try_parse_from(std::iter::once("berth").chain(argv.iter().copied()))
            .expect("parses");
        match cli.command {
            Command::Template(command) => command,
            other => panic!("not a template command: {other:?}"),
        }
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn create_carries_every_spec_flag() {
        let TemplateCommand::Create(args) = parse(&[
            "template",
            "create",
            "web",
            "--image",
            "busybox:1.36",
            "--env",
            "A=1",
            "--secret-env",
            "API_KEY=s3cret",
            "--memory",
            "512M",
            "--network",
            "front:web,www",
            "--network",
            "back",
            "--require",
            "arch=arm64",
            "--retries",
            "2",
            "--input",
            "releases/app.tar:app",
            "--output",
            "out/*:always",
            "--workdir",
            "/work",
            "--description",
            "the site",
            "--inactive",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]) else {
            panic!("not create");
        };
        let request = create_request(&args, no_env).expect("builds");
        assert_eq!(request.name, "web");
        assert!(request.inactive);
        let Some(proto::create_template_request::Spec::Job(job)) = request.spec else {
            panic!("a job spec");
        };
        let spec = job.spec.expect("a container spec");
        assert_eq!(spec.command, ["sh", "-c", "echo hi"]);
        assert_eq!(spec.memory_bytes, Some(512 << 20));
        assert_eq!(spec.secret_env["API_KEY"], "s3cret");
        assert_eq!(spec.networks.len(), 2);
        assert_eq!(spec.networks[0].aliases, ["web", "www"]);
        assert_eq!(job.retries, 2);
        assert_eq!(job.inputs[0].mount, "app");
        assert_eq!(job.outputs[0].when, proto::OutputWhen::Always as i32);
    }

    #[test]
    fn set_sorts_unsets_into_env_and_secret_env_and_sends_only_what_is_given() {
        let TemplateCommand::Set(args) = parse(&[
            "template",
            "set",
            "web",
            "--memory",
            "2G",
            "--unset",
            "DEBUG",
            "--unset",
            "API_KEY",
            "--reset",
            "cpus",
            "--expect-version",
            "v3",
            "--network",
            "only",
        ]) else {
            panic!("not set");
        };
        let request = set_request(&args, &["API_KEY".to_owned()], no_env).expect("builds");
        assert_eq!(request.expect_version, Some(3));
        assert_eq!(request.active, None);
        let Some(proto::update_template_request::Change::Job(change)) = request.change else {
            panic!("a job change");
        };
        assert_eq!(change.memory_bytes, Some(2 << 30));
        assert_eq!(change.unset_env, ["DEBUG"]);
        assert_eq!(change.unset_secret_env, ["API_KEY"]);
        assert_eq!(change.reset, ["cpus"]);
        assert_eq!(change.networks.expect("networks").networks[0].name, "only");
        assert!(change.image.is_none() && change.command.is_none());
        assert!(change.inputs.is_none() && change.outputs.is_none());
    }

    #[test]
    fn set_without_spec_flags_changes_only_the_template() {
        let TemplateCommand::Set(args) = parse(&["template", "set", "web", "--inactive"]) else {
            panic!("not set");
        };
        let request = set_request(&args, &[], no_env).expect("builds");
        assert!(request.change.is_none());
        assert_eq!(request.active, Some(false));
    }

    #[test]
    fn versions_are_written_with_or_without_v() {
        assert_eq!(
            split_version("web@v3").expect("parses"),
            ("web".into(), Some(3))
        );
        assert_eq!(
            split_version("web@3").expect("parses"),
            ("web".into(), Some(3))
        );
        assert_eq!(split_version("web").expect("parses"), ("web".into(), None));
        assert!(split_version("web@v0").is_err());
        assert!(split_version("web@latest").is_err());
    }
}
