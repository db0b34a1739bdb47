//! `berth service ...`: long-running replicas of a job template's release.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::parse_version;
use crate::values::parse_duration;

/// `berth service ...`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service running a job template's release (the latest, or T@vK) and start
    /// its replicas: one `web` replica running the release's command unless --process says
    /// otherwise.
    Create(ServiceCreateArgs),
    /// List a workspace's services.
    List {
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Show a service with a table of its replicas.
    #[command(visible_alias = "show")]
    Get {
        /// The service's name.
        name: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Set the desired replicas of process types (`web=3 worker=2`; 0 parks one).
    /// Scaling down stops the highest indices first; scaling makes no release.
    Scale {
        /// The service's name.
        name: String,
        /// PROCESS=N, one or more.
        #[arg(value_name = "PROCESS=N", required = true, value_parser = parse_scale)]
        replicas: Vec<(String, u32)>,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Roll the replicas to another release one at a time (the template's latest unless
    /// --release): start the new one, wait until healthy, stop the old one.
    Deploy(ServiceDeployArgs),
    /// Every start, exit, restart, move, scale and deploy step, newest first, with why.
    History {
        /// The service's name.
        name: String,
        /// Only this replica, e.g. web.1.
        #[arg(long, value_name = "REPLICA")]
        replica: Option<String>,
        /// At most this many events (default 100, at most 1000).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Where each running replica's published ports are reached (worker host:port).
    Endpoints {
        /// The service's name.
        name: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
    /// Print the replicas' logs interleaved, each line prefixed with its replica
    /// (`web.1 | `): the containers' stdout to stdout, their stderr and Berth's notes to
    /// stderr.
    Logs(ServiceLogsArgs),
    /// Run a one-off command in an ephemeral container of the service's current release,
    /// follow its output and exit with its exit status (as `berth run` does).
    Run(ServiceRunArgs),
    /// Change a service's restart policy, backoff, health settings, ports or process
    /// commands. No release is made and no running replica is replaced: the settings apply
    /// to the next container each replica starts.
    Set(ServiceSetArgs),
    /// Delete a service: every replica is stopped (TERM, grace, KILL).
    Delete {
        /// The service's name.
        name: String,
        /// Workspace (default: default).
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
    },
}

/// A restart policy as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RestartArg {
    /// Always (after a short flat delay when it exited with 0).
    Always,
    /// Only after a failure.
    OnFailure,
    /// Never.
    Never,
}

/// One `--port`: CONTAINER[:HOST][/tcp|udp].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg {
    pub container_port: u16,
    /// 0: Docker picks a free port.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Reads `8080`, `8080:18080`, `53/udp`, `53:1053/udp`.
pub fn parse_port(text: &str) -> Result<PortArg, String> {
    let usage = "write CONTAINER[:HOST][/tcp|udp], e.g. 8080, 8080:18080 or 53/udp";
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((ports, protocol @ ("tcp" | "udp"))) => (ports, protocol),
        Some((_, other)) => {
            return Err(format!(
                "{text:?}: {other:?} is not a protocol (tcp or udp); {usage}"
            ));
        }
        None => (text, "tcp"),
    };
    let number = |what: &str, digits: &str| -> Result<u16, String> {
        match digits.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "{text:?}: {digits:?} is not a {what} port (1-65535); {usage}"
            )),
            Ok(port) => Ok(port),
        }
    };
    let (container, host) = match ports.split_once(':') {
        Some((container, host)) => (number("container", container)?, number("host", host)?),
        None => (number("container", ports)?, 0),
    };
    Ok(PortArg {
        container_port: container,
        host_port: host,
        protocol: protocol.to_owned(),
    })
}

/// Reads `web=3`.
pub fn parse_scale(text: &str) -> Result<(String, u32), String> {
    let Some((process, count)) = text.split_once('=') else {
        return Err(format!(
            "{text:?}: expected PROCESS=N, e.g. web=3 (0 parks it)"
        ));
    };
    if process.is_empty() {
        return Err(format!(
            "{text:?}: the process type is missing; write e.g. web=3"
        ));
    }
    let count = count.parse::<u32>().map_err(|_| {
        format!("{text:?}: {count:?} is not a number of replicas; write e.g. {process}=3")
    })?;
    Ok((process.to_owned(), count))
}

/// One `--command`: PROCESS=COMMAND, the command split into words as a shell would
/// (quotes and backslashes, no expansion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandArg {
    pub process: String,
    pub command: Vec<String>,
}

/// Reads `web=sh -c 'while true; do echo tick; sleep 5; done'`.
pub fn parse_command(text: &str) -> Result<CommandArg, String> {
    let Some((process, command)) = text.split_once('=') else {
        return Err(format!(
            "{text:?}: expected PROCESS=COMMAND, e.g. web='./serve --port 8080'"
        ));
    };
    if process.is_empty() {
        return Err(format!(
            "{text:?}: the process type is missing; write e.g. web='./serve'"
        ));
    }
    Ok(CommandArg {
        process: process.to_owned(),
        command: split_words(command).map_err(|m| format!("{text:?}: {m}"))?,
    })
}

/// Splits `text` into words as a POSIX shell does for quoting (single quotes, double
/// quotes with `\"` and `\\`, backslash escapes); nothing is expanded.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a backslash ends the command".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The settings `service create` and `service set` share.
#[derive(Debug, Args)]
pub struct ServiceSettingsArgs {
    /// A process type's command, replacing the release's (repeatable), e.g.
    /// --command web='./serve --port 8080'; `PROCESS=` runs the release's own.
    #[arg(long = "command", value_name = "PROCESS=CMD", value_parser = parse_command)]
    pub commands: Vec<CommandArg>,
    /// When a replica whose container ended starts again (default: always).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub restart: Option<RestartArg>,
    /// The delay before the first restart after a failure (default 1s); it doubles with
    /// each failure in a row.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backoff_initial: Option<Duration>,
    /// The longest restart delay (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backoff_max: Option<Duration>,
    /// Running this long without restarting counts as healthy (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_healthy: Option<Duration>,
    /// How long a deploy may take before it counts as failed (default 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deploy_deadline: Option<Duration>,
    /// Publish a container port on the worker's host (repeatable): CONTAINER[:HOST][/udp];
    /// without HOST, Docker picks a free port (see `berth service endpoints`).
    #[arg(long = "port", value_name = "PORT[:HOST][/udp]", value_parser = parse_port)]
    pub ports: Vec<PortArg>,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth service create ...`
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct ServiceCreateArgs {
    /// The service's name: a-z, 0-9 and single dashes, starting with a letter.
    pub name: String,
    /// The job template to run: NAME for its latest release, NAME@vK for release K.
    #[arg(long, value_name = "T[@vK]")]
    pub template: String,
    /// Replicas of a process type (repeatable), e.g. --process web=3 --process worker=1
    /// (default: web=1).
    #[arg(long = "process", value_name = "PROCESS=N", value_parser = parse_scale)]
    pub processes: Vec<(String, u32)>,
    #[command(flatten)]
    pub settings: ServiceSettingsArgs,
}

/// `berth service set ...`
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct ServiceSetArgs {
    /// The service's name.
    pub name: String,
    /// Remove every published port.
    #[arg(long, conflicts_with = "ports")]
    pub no_ports: bool,
    #[command(flatten)]
    pub settings: ServiceSettingsArgs,
}

/// `berth service deploy ...`
#[derive(Debug, Args)]
pub struct ServiceDeployArgs {
    /// The service's name.
    pub name: String,
    /// The release to roll to, e.g. v3 (default: the template's latest).
    #[arg(long, value_name = "vK", value_parser = parse_version)]
    pub release: Option<u32>,
    /// If the deploy fails, roll back to the last release that was healthy.
    #[arg(long)]
    pub auto_revert: bool,
    /// How long this deploy may take (default: the service's deploy deadline).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<Duration>,
    /// Follow the deploy until it is done or has failed; exit with status 1 if it failed.
    #[arg(long)]
    pub wait: bool,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth service logs ...`
#[derive(Debug, Args)]
pub struct ServiceLogsArgs {
    /// The service's name.
    pub name: String,
    /// Keep printing new output, through restarts and deploys, until Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only this replica, e.g. web.1.
    #[arg(long, value_name = "REPLICA")]
    pub replica: Option<String>,
    /// Every container each replica ran, oldest first (default: the current ones).
    #[arg(long, conflicts_with = "follow")]
    pub all: bool,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
}

/// `berth service run ...`
#[derive(Debug, Args)]
pub struct ServiceRunArgs {
    /// The service's name.
    pub name: String,
    /// Take this process type's settings (default: the release's own).
    #[arg(long, value_name = "P")]
    pub process: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(value_name = "CMD", last = true, required = true)]
    pub command: Vec<String>,
    /// Workspace (default: default).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
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
    fn ports_read_container_host_and_protocol() {
        let port = |c, h, p: &str| PortArg {
            container_port: c,
            host_port: h,
            protocol: p.to_owned(),
        };
        assert_eq!(parse_port("8080"), Ok(port(8080, 0, "tcp")));
        assert_eq!(parse_port("8080:18080"), Ok(port(8080, 18080, "tcp")));
        assert_eq!(parse_port("53/udp"), Ok(port(53, 0, "udp")));
        assert_eq!(parse_port("53:1053/udp"), Ok(port(53, 1053, "udp")));
        for bad in ["", "0", "70000", "80:x", "80/sctp", "web"] {
            let message = parse_port(bad).expect_err(bad);
            assert!(message.contains("CONTAINER[:HOST]"), "{bad}: {message}");
        }
    }

    #[test]
    fn scale_and_command_values_need_a_process_type() {
        assert_eq!(parse_scale("web=3"), Ok(("web".to_owned(), 3)));
        assert!(parse_scale("web").is_err());
        assert!(parse_scale("=3").is_err());
        assert!(parse_scale("web=-1").is_err());
        assert_eq!(
            parse_command("web=sh -c 'while true; do echo \"tick\"; sleep 5; done'"),
            Ok(CommandArg {
                process: "web".into(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "while true; do echo \"tick\"; sleep 5; done".into()
                ],
            })
        );
        assert_eq!(
            parse_command("web=").map(|c| c.command),
            Ok(Vec::<String>::new())
        );
        assert!(parse_command("web='open").is_err());
    }

    #[test]
    fn every_subcommand_parses_its_flags() {
        match service(&[
            "service",
            "create",
            "shop",
            "--template",
            "srv@v2",
            "--process",
            "web=3",
            "--command",
            "web=./serve",
            "--restart",
            "on-failure",
            "--backoff-initial",
            "2s",
            "--port",
            "8080:18080",
            "--workspace",
            "team",
        ]) {
            ServiceCommand::Create(args) => {
                assert_eq!(args.template, "srv@v2");
                assert_eq!(args.processes, [("web".to_owned(), 3)]);
                assert_eq!(args.settings.restart, Some(RestartArg::OnFailure));
                assert_eq!(args.settings.backoff_initial, Some(Duration::from_secs(2)));
                assert_eq!(args.settings.ports[0].host_port, 18080);
                assert_eq!(args.settings.workspace.as_deref(), Some("team"));
            }
            other => panic!("{other:?}"),
        }
        match service(&["service", "scale", "shop", "web=3", "worker=0"]) {
            ServiceCommand::Scale { replicas, .. } => {
                assert_eq!(replicas, [("web".to_owned(), 3), ("worker".to_owned(), 0)]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            service(&["service", "show", "shop"]),
            ServiceCommand::Get { .. }
        ));
        match service(&[
            "service",
            "run",
            "shop",
            "--process",
            "web",
            "--",
            "env",
            "-0",
        ]) {
            ServiceCommand::Run(args) => {
                assert_eq!(args.command, ["env", "-0"]);
                assert_eq!(args.process.as_deref(), Some("web"));
            }
            other => panic!("{other:?}"),
        }
        match service(&[
            "service",
            "deploy",
            "shop",
            "--release",
            "v4",
            "--auto-revert",
            "--wait",
        ]) {
            ServiceCommand::Deploy(args) => {
                assert_eq!(args.release, Some(4));
                assert!(args.auto_revert && args.wait);
            }
            other => panic!("{other:?}"),
        }
        match service(&["service", "logs", "shop", "-f", "--replica", "web.1"]) {
            ServiceCommand::Logs(args) => {
                assert!(args.follow);
                assert_eq!(args.replica.as_deref(), Some("web.1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
