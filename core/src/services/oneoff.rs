//! One-off commands in an ephemeral container of a service's current release: a plain
//! work request, submitted for the caller like a template run.
//!
//! It is exactly `berth run --template T@vK -- CMD` with the service's release: the
//! release's image, environment, secrets, limits and timeout, the given command, and the
//! release recorded as the request's origin ([`Templates::run`](crate::templates::Templates)
//! does the submitting, through `WorkRequests::submit_from`, so it is validated like any
//! submission). It is not a replica: it has no slot, publishes no ports, is not
//! restarted, and counts only as the job it is.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::access::auth::Identity;
use crate::access::roles::WorkspaceRole;
use crate::error::{Error, Result};
use crate::services::logs::find_for;
use crate::services::{Process, RunInput, ServiceManager};
use crate::store::schema::templates;
use crate::templates::TemplateRef;
use crate::templates::runs::{Overrides, RunInput as TemplateRun};
use crate::work::requests::RequestView;
use crate::work::state::Kind;

/// Refuses a process type the service does not have, naming those it has.
fn check_process(
    service: &str,
    processes: &BTreeMap<String, Process>,
    process: &str,
) -> Result<()> {
    if process.is_empty() || processes.contains_key(process) {
        return Ok(());
    }
    let has: Vec<&str> = processes.keys().map(String::as_str).collect();
    Err(Error::InvalidArgument(format!(
        "process: service {service} has no process type {process:?}; it has {}",
        has.join(", ")
    )))
}

impl ServiceManager {
    /// `RunServiceCommand`: contributors of the service's (open) workspace.
    pub async fn run(&self, caller: &Identity, input: RunInput) -> Result<RequestView> {
        if input.command.is_empty() {
            return Err(Error::InvalidArgument(
                "command: is required; give the command to run, e.g. berth service run NAME -- sh -c 'env'"
                    .into(),
            ));
        }
        let (standing, service, template) = {
            let mut conn = self.pool.get().await?;
            let (standing, service) = find_for(
                &mut conn,
                caller,
                &input.service,
                WorkspaceRole::Contributor,
                "run commands in services of",
            )
            .await?;
            let template: String = templates::table
                .find(service.template_id)
                .select(templates::name)
                .first(&mut conn)
                .await?;
            (standing, service, template)
        };
        standing.require_open()?;
        let processes: BTreeMap<String, Process> =
            serde_json::from_value(service.processes.clone()).map_err(|e| {
                Error::internal(format!(
                    "stored processes of service {} unreadable: {e}",
                    service.id
                ))
            })?;
        check_process(&service.name, &processes, &input.process)?;
        let run = TemplateRun {
            template: TemplateRef {
                workspace: standing.workspace.name.clone(),
                name: template,
                kind: Some(Kind::Job),
            },
            version: Some(service.version),
            overrides: Overrides {
                command: input.command,
                ..Overrides::default()
            },
            params: BTreeMap::new(),
            inputs: Vec::new(),
            id: None,
        };
        // The run names the override it refuses; here the command is the caller's own.
        let view = self.templates.run(caller, run).await.map_err(|e| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(
                m.strip_prefix("overrides.")
                    .map_or_else(|| m.clone(), str::to_owned),
            ),
            other => other,
        })?;
        tracing::info!(work_request = %view.row.id, service = %service.name, version = service.version, by = %caller.name, "one-off command submitted");
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_process_type_is_refused_naming_those_there_are() {
        let processes: BTreeMap<String, Process> = [
            ("web".to_owned(), Process::default()),
            ("worker".to_owned(), Process::default()),
        ]
        .into();
        assert!(check_process("shop", &processes, "").is_ok());
        assert!(check_process("shop", &processes, "worker").is_ok());
        match check_process("shop", &processes, "cron") {
            Err(Error::InvalidArgument(m)) => {
                assert!(m.starts_with("process: "), "{m}");
                assert!(m.ends_with("it has web, worker"), "{m}");
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
}
