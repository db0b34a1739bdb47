//! The `berth` binary as scenarios run it: against a test server, with a token, and what
//! it printed, read as a user (or a script) would.

use std::time::Duration;

use serde_json::Value;

use crate::{TestServer, binary};

/// What one run of `berth` did.
#[derive(Debug)]
pub struct Output {
    /// The exit status (-1 if it was ended by a signal).
    pub code: i32,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Output {
    /// Asserts the CLI's error contract: exit status `code`, nothing on stdout, exactly
    /// one stderr line, starting `error: ` and mentioning every one of `expected`.
    pub fn assert_one_error_line(&self, case: &str, code: i32, expected: &[&str]) {
        assert_eq!(
            self.code, code,
            "{case}: exit status; stderr: {}",
            self.stderr
        );
        assert_eq!(self.stdout, "", "{case}: stdout should be empty");
        let line = single_error_line(&self.stderr);
        for text in expected {
            assert!(
                line.contains(text),
                "{case}: stderr should mention {text:?}: {line:?}"
            );
        }
    }
}

/// `stderr` is exactly one non-empty line, starting `error: `; returns it.
pub fn single_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr, got:\n{stderr}"
    );
    assert!(
        lines[0].starts_with("error: "),
        "the line does not start with `error: `: {}",
        lines[0]
    );
    lines[0]
}

/// A `berth` command line for `server`: `--server URL --token TOKEN` and then the
/// arguments a test gives. Start one with [`berth`].
#[derive(Clone, Debug)]
pub struct Cli {
    url: String,
    token: Option<String>,
    env: Vec<(String, String)>,
}

/// `berth` against `server`, as its admin (`--token` with the admin token).
pub fn berth(server: &TestServer) -> Cli {
    Cli {
        url: server.url.clone(),
        token: Some(server.admin_token.clone()),
        env: Vec::new(),
    }
}

impl Cli {
    /// With `--token token` instead of the admin's.
    pub fn token(mut self, token: &str) -> Cli {
        self.token = Some(token.to_owned());
        self
    }

    /// With `--server url` instead of the test server's.
    pub fn server(mut self, url: &str) -> Cli {
        self.url = url.to_owned();
        self
    }

    /// Without `--token` (the token may then come from the environment, or nowhere).
    pub fn without_token(mut self) -> Cli {
        self.token = None;
        self
    }

    /// With `key=value` in the environment. `berth` otherwise runs without `BERTH_*`
    /// variables from the test's own environment.
    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `berth --server URL [--token TOKEN] ARGS...` to its end.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(binary("berth"));
        command.arg("--server").arg(&self.url);
        if let Some(token) = &self.token {
            command.arg("--token").arg(token);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(key);
            }
        }
        let output = command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), output)
            .await
            .unwrap_or_else(|_| panic!("berth {args:?} did not finish within 120 s"))
            .unwrap_or_else(|e| panic!("cannot run berth {args:?}: {e}"));
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs it expecting exit status 0; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert_eq!(
            output.code, 0,
            "berth {args:?} failed with {}: {}",
            output.code, output.stderr
        );
        output.stdout
    }

    /// Runs it with `-o json` appended, expecting exit status 0; returns the parsed
    /// output.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut line = args.to_vec();
        line.extend_from_slice(&["-o", "json"]);
        let stdout = self.ok(&line).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("berth {args:?}: not JSON ({e}): {stdout}"))
    }
}
