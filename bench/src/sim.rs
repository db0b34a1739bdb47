//! Simulated workers for the scenarios: the fleets of [`berth_tests::sim`], each worker
//! with its own worker token from the stack's server.
//!
//! The simulator itself lives with the test harness, where the scheduling tests use the
//! same protocol code; the bench uses its [`SimFleet`], whose workers finish every
//! attempt at once in the stream's own task.

use anyhow::Context;
use berth_common::proto::Role;
use futures::StreamExt;

pub use berth_tests::sim::{STREAMS_PER_CHANNEL, SimFleet};

use crate::stack::{Stack, create_token_with};

/// How many tokens are created at once.
const TOKEN_CONCURRENCY: usize = 32;

/// Creates `count` worker tokens named `<prefix>-<i>` and connects one simulated worker
/// per token, each offering `concurrency` slots. Returns once every stream is being
/// opened; use [`SimFleet::wait_welcomed`] to wait for the server's `Welcome`s.
pub async fn start_fleet(
    stack: &Stack,
    prefix: &str,
    count: usize,
    concurrency: u32,
) -> anyhow::Result<SimFleet> {
    let tokens = create_worker_tokens(stack, prefix, count).await?;
    connect_fleet(stack, tokens, concurrency).await
}

/// Creates `count` worker tokens named `<prefix>-<i>`; returns each name with its token,
/// for [`connect_fleet`]. Apart from it so that a scenario can time the connects alone.
pub async fn create_worker_tokens(
    stack: &Stack,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let tokens = create_tokens(stack, &names).await?;
    Ok(names.into_iter().zip(tokens).collect())
}

/// Connects one simulated worker per `(name, token)`, each offering `concurrency` slots.
pub async fn connect_fleet(
    stack: &Stack,
    tokens: Vec<(String, String)>,
    concurrency: u32,
) -> anyhow::Result<SimFleet> {
    SimFleet::start(&stack.server_url, tokens, concurrency)
        .await
        .context("cannot start the simulated workers")
}

/// Creates one worker token per name, [`TOKEN_CONCURRENCY`] at a time.
async fn create_tokens(stack: &Stack, names: &[String]) -> anyhow::Result<Vec<String>> {
    let tokens = stack.tokens(&stack.admin_token).await?;
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let mut tokens = tokens.clone();
            async move { create_token_with(&mut tokens, Role::Worker, &name).await }
        })
        .buffered(TOKEN_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}
