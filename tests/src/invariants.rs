//! What must hold after any fault, checked from the database and from Docker.
//!
//! A fault test (or the chaos benchmark) installs an audit of status changes in its own
//! database before the load starts ([`install_audit`]), records Docker's view of the
//! containers its workers run ([`DockerEvents`]), and when the load has ended asks
//! [`Check::run`] for violations of:
//!
//! 1. **Every request is terminal, and became so exactly once** (from the audit: one
//!    change into `completed`/`aborted`, none out of it); every attempt was finished
//!    exactly once.
//! 2. **Attempts of one request never overlap in time**, both as the server recorded them
//!    (`assigned_at` of attempt n+1 not before `finished_at` of attempt n) and as Docker
//!    saw them (no two containers of one request running at once).
//! 3. **No worker ran more than its concurrency at once** (a sweep over the attempt
//!    intervals per worker, and over the container runs per worker).
//! 4. **Every finished job's log is complete, byte for byte**: for a request completed
//!    with success or failure, the final attempt's stdout, stored contiguously, equals
//!    what the job deterministically prints.
//! 5. **No Berth container is left** on the engine for the workers of the run.
//!
//! Violations come back as readable sentences: the bench prints them, tests assert the
//! list is empty and print it. The product's schema is not touched: the audit lives in a
//! schema of its own (`berth_test`), with triggers on `work_requests` and `attempts`, in
//! the test's database only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

/// Creates the audit schema, table and triggers in the database at `database_url`
/// (idempotent). Every status change of a request and every state change of an attempt
/// from then on is recorded with the time it was made.
pub async fn install_audit(database_url: &str) -> anyhow::Result<()> {
    let client = connect(database_url).await?;
    client
        .batch_execute(AUDIT_SQL)
        .await
        .context("cannot install the audit triggers")?;
    Ok(())
}

const AUDIT_SQL: &str = r"
CREATE SCHEMA IF NOT EXISTS berth_test;
CREATE TABLE IF NOT EXISTS berth_test.audit (
    seq              bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    tbl              text NOT NULL,
    work_request_id  uuid NOT NULL,
    attempt          integer,
    old_status       text,
    new_status       text NOT NULL
);
CREATE OR REPLACE FUNCTION berth_test.audit_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO berth_test.audit (tbl, work_request_id, old_status, new_status)
    VALUES ('work_requests', NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status);
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION berth_test.audit_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO berth_test.audit (tbl, work_request_id, attempt, old_status, new_status)
    VALUES ('attempts', NEW.work_request_id, NEW.number,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS berth_test_audit_insert ON work_requests;
DROP TRIGGER IF EXISTS berth_test_audit_update ON work_requests;
DROP TRIGGER IF EXISTS berth_test_audit_insert ON attempts;
DROP TRIGGER IF EXISTS berth_test_audit_update ON attempts;
CREATE TRIGGER berth_test_audit_insert AFTER INSERT ON work_requests
    FOR EACH ROW EXECUTE FUNCTION berth_test.audit_request();
CREATE TRIGGER berth_test_audit_update AFTER UPDATE OF status ON work_requests
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION berth_test.audit_request();
CREATE TRIGGER berth_test_audit_insert AFTER INSERT ON attempts
    FOR EACH ROW EXECUTE FUNCTION berth_test.audit_attempt();
CREATE TRIGGER berth_test_audit_update AFTER UPDATE OF state ON attempts
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION berth_test.audit_attempt();
";

async fn connect(database_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to the database to check invariants")?;
    tokio::spawn(connection);
    Ok(client)
}

/// One container run as Docker reported it.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    /// The container id.
    pub id: String,
    /// `berth.work-request`.
    pub work_request: String,
    /// `berth.attempt`.
    pub attempt: String,
    /// `berth.worker`.
    pub worker: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it died; `None` if Docker reported no death (it may still run).
    pub died: Option<DateTime<Utc>>,
}

/// `docker events` for Berth-managed containers (start and die), recorded to a file from
/// its creation until it is dropped.
pub struct DockerEvents {
    _child: tokio::process::Child,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl DockerEvents {
    /// Starts recording. Events from one second before are included, so a container that
    /// starts while `docker events` is still subscribing is not missed.
    pub async fn start() -> anyhow::Result<DockerEvents> {
        let dir = tempfile::tempdir().context("cannot create a directory for docker events")?;
        let path = dir.path().join("events.jsonl");
        let file = std::fs::File::create(&path).context("cannot create the events file")?;
        let since = (Utc::now() - chrono::Duration::seconds(1)).timestamp();
        let child = tokio::process::Command::new("docker")
            .args(["events", "--format", "{{json .}}", "--since"])
            .arg(since.to_string())
            .args([
                "--filter",
                "type=container",
                "--filter",
                "label=berth.managed=true",
                "--filter",
                "event=start",
                "--filter",
                "event=die",
            ])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run `docker events`: these checks need the Docker CLI")?;
        Ok(DockerEvents {
            _child: child,
            path,
            _dir: dir,
        })
    }

    /// The container runs recorded so far, of the workers named in `workers` (all when
    /// empty), in order of start.
    pub fn runs(&self, workers: &HashSet<String>) -> Vec<ContainerRun> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut runs: BTreeMap<String, ContainerRun> = BTreeMap::new();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let action = event["Action"].as_str().unwrap_or_default();
            let id = event["Actor"]["ID"].as_str().unwrap_or_default().to_owned();
            let attributes = &event["Actor"]["Attributes"];
            let label = |key: &str| attributes[key].as_str().unwrap_or_default().to_owned();
            let worker = label("berth.worker");
            if !workers.is_empty() && !workers.contains(&worker) {
                continue;
            }
            let Some(at) = event["timeNano"]
                .as_i64()
                .map(DateTime::<Utc>::from_timestamp_nanos)
            else {
                continue;
            };
            match action {
                "start" => {
                    runs.insert(
                        id.clone(),
                        ContainerRun {
                            id,
                            work_request: label("berth.work-request"),
                            attempt: label("berth.attempt"),
                            worker,
                            started: at,
                            died: None,
                        },
                    );
                }
                "die" => {
                    if let Some(run) = runs.get_mut(&id) {
                        run.died = Some(at);
                    }
                }
                _ => {}
            }
        }
        let mut runs: Vec<ContainerRun> = runs.into_values().collect();
        runs.sort_by_key(|r| r.started);
        runs
    }
}

/// What [`Check::run`] looks at.
#[derive(Default)]
pub struct Check<'a> {
    /// The database the audit was installed in.
    pub database_url: String,
    /// The names of the real workers of the run (their containers are checked); empty
    /// for a run with simulated workers only.
    pub workers: Vec<String>,
    /// Docker's view of the run, when it had real workers.
    pub docker: Option<&'a DockerEvents>,
    /// Request id → the exact stdout its job prints. Checked for every such request that
    /// completed with success or failure.
    pub expected_stdout: HashMap<String, Vec<u8>>,
    /// How long containers may take to disappear after the load (default 30 s).
    pub container_grace: Option<Duration>,
}

impl Check<'_> {
    /// Every violation found, as sentences; empty when all invariants hold. An error
    /// only when the checks themselves could not run (no database, no audit).
    pub async fn run(&self) -> anyhow::Result<Vec<String>> {
        let client = connect(&self.database_url).await?;
        let mut violations = Vec::new();
        terminal_once(&client, &mut violations).await?;
        let attempts = attempts(&client).await?;
        server_attempts_disjoint(&attempts, &mut violations);
        let concurrency = concurrency(&client).await?;
        server_concurrency(&attempts, &concurrency, &mut violations);
        logs_complete(&client, &self.expected_stdout, &mut violations).await?;
        if !self.workers.is_empty() {
            let names: HashSet<String> = self.workers.iter().cloned().collect();
            let grace = self.container_grace.unwrap_or(Duration::from_secs(30));
            no_containers_left(&self.workers, grace, &mut violations).await;
            if let Some(docker) = self.docker {
                // Deaths are reported by the engine a moment after they happen: give the
                // recorder the time to catch up with containers that are gone.
                let runs = settled_runs(docker, &names).await;
                // A recorder that saw nothing of a run that started containers would make
                // the checks below pass for nothing.
                let started = client
                    .query_one(
                        "SELECT count(*) FROM attempts WHERE container_id <> '' AND worker_name = ANY($1)",
                        &[&self.workers],
                    )
                    .await?
                    .get::<_, i64>(0);
                if started > 0 && runs.is_empty() {
                    violations.push(format!(
                        "docker events recorded no container start, yet the server recorded {started} started attempts: Docker's view of the run is missing"
                    ));
                }
                docker_disjoint(&runs, &mut violations);
                docker_concurrency(&runs, &concurrency, &mut violations);
            }
        }
        Ok(violations)
    }
}

/// Panics with every violation, one per line, unless there is none.
pub fn assert_none(violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{} invariant violation(s):\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}

async fn terminal_once(
    client: &tokio_postgres::Client,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let installed = client
        .query_one("SELECT to_regclass('berth_test.audit') IS NOT NULL", &[])
        .await?
        .get::<_, bool>(0);
    anyhow::ensure!(
        installed,
        "the audit is not installed in this database: call invariants::install_audit before the load"
    );
    // A request the audit never saw was submitted before it was installed, and nothing
    // below could be said about it.
    for row in client
        .query(
            "SELECT id::text FROM work_requests w WHERE NOT EXISTS \
               (SELECT 1 FROM berth_test.audit a \
                WHERE a.tbl = 'work_requests' AND a.work_request_id = w.id AND a.old_status IS NULL)",
            &[],
        )
        .await?
    {
        violations.push(format!(
            "request {} has no audited submission: the audit was installed after it",
            row.get::<_, String>(0)
        ));
    }
    for row in client
        .query(
            "SELECT id::text, status, reason FROM work_requests \
             WHERE status NOT IN ('completed', 'aborted') ORDER BY created_at",
            &[],
        )
        .await?
    {
        violations.push(format!(
            "request {} never ended: it is {} ({})",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ));
    }
    let rows = client
        .query(
            "SELECT work_request_id::text, \
                    count(*) FILTER (WHERE new_status IN ('completed', 'aborted') \
                                     AND old_status IS DISTINCT FROM 'completed' \
                                     AND old_status IS DISTINCT FROM 'aborted'), \
                    count(*) FILTER (WHERE old_status IN ('completed', 'aborted')), \
                    string_agg(coalesce(old_status, '-') || '→' || new_status, ', ' ORDER BY seq) \
             FROM berth_test.audit WHERE tbl = 'work_requests' \
             GROUP BY work_request_id",
            &[],
        )
        .await?;
    for row in rows {
        let id: String = row.get(0);
        let endings: i64 = row.get(1);
        let reopened: i64 = row.get(2);
        let history: String = row.get(3);
        if endings > 1 || reopened > 0 {
            violations.push(format!(
                "request {id} became terminal {endings} times and left a terminal state {reopened} times: {history}"
            ));
        }
    }
    let rows = client
        .query(
            "SELECT work_request_id::text, attempt, count(*), \
                    string_agg(coalesce(old_status, '-') || '→' || new_status, ', ' ORDER BY seq) \
             FROM berth_test.audit WHERE tbl = 'attempts' \
             GROUP BY work_request_id, attempt \
             HAVING count(*) FILTER (WHERE new_status = 'finished') <> 1",
            &[],
        )
        .await?;
    for row in rows {
        violations.push(format!(
            "attempt {} of request {} was not finished exactly once: {}",
            row.get::<_, i32>(1),
            row.get::<_, String>(0),
            row.get::<_, String>(3)
        ));
    }
    Ok(())
}

/// An attempt's interval as the server recorded it.
struct Attempt {
    request: String,
    number: i32,
    worker: String,
    assigned: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    reason: String,
}

async fn attempts(client: &tokio_postgres::Client) -> anyhow::Result<Vec<Attempt>> {
    Ok(client
        .query(
            "SELECT work_request_id::text, number, worker_name, \
                    (extract(epoch FROM assigned_at) * 1000000)::bigint, \
                    (extract(epoch FROM finished_at) * 1000000)::bigint, reason \
             FROM attempts ORDER BY work_request_id, number",
            &[],
        )
        .await?
        .iter()
        .map(|row| Attempt {
            request: row.get(0),
            number: row.get(1),
            worker: row.get(2),
            assigned: micros(row.get(3)),
            finished: row.get::<_, Option<i64>>(4).map(micros),
            reason: row.get(5),
        })
        .collect())
}

/// Microseconds since the epoch as a time.
fn micros(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default()
}

async fn concurrency(client: &tokio_postgres::Client) -> anyhow::Result<HashMap<String, i32>> {
    Ok(client
        .query("SELECT name, concurrency FROM workers", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

fn server_attempts_disjoint(attempts: &[Attempt], violations: &mut Vec<String>) {
    for pair in attempts.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.request != b.request {
            continue;
        }
        match a.finished {
            None => violations.push(format!(
                "request {}: attempt {} (worker {}) was never finished, yet attempt {} was assigned at {}",
                a.request, a.number, a.worker, b.number, b.assigned
            )),
            Some(finished) if b.assigned < finished => violations.push(format!(
                "request {}: attempt {} (worker {}) was assigned at {} while attempt {} (worker {}) ran until {} ({})",
                a.request, b.number, b.worker, b.assigned, a.number, a.worker, finished, a.reason
            )),
            Some(_) => {}
        }
    }
}

/// The most intervals open at once, and when; an interval without an end counts as open
/// until the end of time. Ends sort before starts at the same instant.
fn peak(
    intervals: impl Iterator<Item = (DateTime<Utc>, Option<DateTime<Utc>>)>,
) -> (usize, Option<DateTime<Utc>>) {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (start, end) in intervals {
        edges.push((start, 1));
        if let Some(end) = end {
            edges.push((end, -1));
        }
    }
    edges.sort();
    let (mut open, mut most, mut when) = (0i64, 0i64, None);
    for (at, delta) in edges {
        open += i64::from(delta);
        if open > most {
            most = open;
            when = Some(at);
        }
    }
    (usize::try_from(most).unwrap_or(0), when)
}

fn server_concurrency(
    attempts: &[Attempt],
    concurrency: &HashMap<String, i32>,
    violations: &mut Vec<String>,
) {
    let mut by_worker: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for attempt in attempts {
        by_worker.entry(&attempt.worker).or_default().push(attempt);
    }
    for (worker, list) in by_worker {
        let Some(&limit) = concurrency.get(worker) else {
            continue;
        };
        let (most, when) = peak(list.iter().map(|a| (a.assigned, a.finished)));
        if most > usize::try_from(limit).unwrap_or(0) {
            violations.push(format!(
                "worker {worker} held {most} attempts at once (concurrency {limit}) at {}",
                when.map(|w| w.to_string()).unwrap_or_default()
            ));
        }
    }
}

async fn logs_complete(
    client: &tokio_postgres::Client,
    expected: &HashMap<String, Vec<u8>>,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut ids: Vec<&String> = expected.keys().collect();
    ids.sort();
    for id in ids {
        let want = &expected[id];
        let Some(row) = client
            .query_opt(
                "SELECT status || '/' || coalesce(result, ''), attempt_count FROM work_requests WHERE id::text = $1",
                &[id],
            )
            .await?
        else {
            violations.push(format!("request {id} is missing from the database"));
            continue;
        };
        let status: String = row.get(0);
        let attempt: i32 = row.get(1);
        // Only a job that ran to its end printed everything; one that ended in error (its
        // workers lost too often, say) or was aborted did not.
        if status != "completed/success" && status != "completed/failure" {
            continue;
        }
        let chunks = client
            .query(
                "SELECT byte_offset, data FROM log_chunks \
                 WHERE work_request_id::text = $1 AND attempt = $2 AND stream = 1 \
                 ORDER BY byte_offset",
                &[id, &attempt],
            )
            .await?;
        let mut got: Vec<u8> = Vec::with_capacity(want.len());
        let mut gap = None;
        for chunk in &chunks {
            let offset: i64 = chunk.get(0);
            let data: Vec<u8> = chunk.get(1);
            if usize::try_from(offset).ok() != Some(got.len()) && gap.is_none() {
                gap = Some((got.len(), offset));
            }
            got.extend_from_slice(&data);
        }
        if let Some((have, offset)) = gap {
            violations.push(format!(
                "request {id} attempt {attempt}: stdout has a gap or overlap: {have} bytes, then a chunk at offset {offset}"
            ));
        } else if got != *want {
            let first = got
                .iter()
                .zip(want.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            violations.push(format!(
                "request {id} attempt {attempt}: stdout has {} bytes where {} were expected, first difference at byte {first}",
                got.len(),
                want.len()
            ));
        }
    }
    Ok(())
}

async fn container_ids(worker: &str) -> Result<Vec<String>, String> {
    let output = tokio::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            "label=berth.managed=true",
            "--filter",
            &format!("label=berth.worker={worker}"),
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `docker ps`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "docker ps failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

async fn no_containers_left(workers: &[String], grace: Duration, violations: &mut Vec<String>) {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let mut left = Vec::new();
        for worker in workers {
            match container_ids(worker).await {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => left.push(format!(
                    "worker {worker} left {} container(s) on the engine: {}",
                    ids.len(),
                    ids.join(" ")
                )),
                Err(e) => left.push(e),
            }
        }
        if left.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            violations.extend(left);
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The recorded runs once every container that is gone has its death recorded (or after
/// 10 s, when Docker is that slow).
async fn settled_runs(docker: &DockerEvents, workers: &HashSet<String>) -> Vec<ContainerRun> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let runs = docker.runs(workers);
        let mut undead = 0;
        for run in runs.iter().filter(|r| r.died.is_none()) {
            let gone = tokio::process::Command::new("docker")
                .args(["inspect", "--format", "{{.State.Running}}", &run.id])
                .stdin(Stdio::null())
                .output()
                .await
                .map(|o| !o.status.success() || String::from_utf8_lossy(&o.stdout).trim() != "true")
                .unwrap_or(true);
            if gone {
                undead += 1;
            }
        }
        if undead == 0 || tokio::time::Instant::now() >= deadline {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn docker_disjoint(runs: &[ContainerRun], violations: &mut Vec<String>) {
    let mut by_request: BTreeMap<&str, Vec<&ContainerRun>> = BTreeMap::new();
    for run in runs {
        by_request.entry(&run.work_request).or_default().push(run);
    }
    for (request, list) in by_request {
        // `runs` is in order of start, and so is each list.
        for (i, earlier) in list.iter().enumerate() {
            for later in &list[i + 1..] {
                let overlaps = earlier.died.is_none_or(|died| later.started < died);
                if overlaps {
                    violations.push(format!(
                        "request {request}: container {} (attempt {}, worker {}) started at {} while container {} (attempt {}, worker {}) ran {}",
                        short(&later.id),
                        later.attempt,
                        later.worker,
                        later.started,
                        short(&earlier.id),
                        earlier.attempt,
                        earlier.worker,
                        earlier
                            .died
                            .map_or_else(|| "on and was never seen to die".to_owned(), |d| format!("until {d}")),
                    ));
                }
            }
        }
    }
}

fn docker_concurrency(
    runs: &[ContainerRun],
    concurrency: &HashMap<String, i32>,
    violations: &mut Vec<String>,
) {
    let mut by_worker: BTreeMap<&str, Vec<&ContainerRun>> = BTreeMap::new();
    for run in runs {
        by_worker.entry(&run.worker).or_default().push(run);
    }
    for (worker, list) in by_worker {
        let Some(&limit) = concurrency.get(worker) else {
            continue;
        };
        let (most, when) = peak(list.iter().map(|r| (r.started, r.died)));
        if most > usize::try_from(limit).unwrap_or(0) {
            violations.push(format!(
                "worker {worker} had {most} containers running at once (concurrency {limit}) at {}",
                when.map(|w| w.to_string()).unwrap_or_default()
            ));
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default()
    }

    #[test]
    fn peak_counts_overlaps_and_lets_ends_precede_starts() {
        assert_eq!(
            peak([(t(0), Some(t(2))), (t(2), Some(t(4)))].into_iter()).0,
            1
        );
        assert_eq!(
            peak([(t(0), Some(t(3))), (t(2), Some(t(4))), (t(5), None)].into_iter()),
            (2, Some(t(2)))
        );
        assert_eq!(peak([(t(0), None), (t(9), None)].into_iter()).0, 2);
    }

    #[test]
    fn overlapping_containers_of_one_request_are_a_violation() {
        let run = |id: &str, start: i64, died: Option<i64>| ContainerRun {
            id: id.to_owned(),
            work_request: "r".to_owned(),
            attempt: id.to_owned(),
            worker: "w".to_owned(),
            started: t(start),
            died: died.map(t),
        };
        let mut violations = Vec::new();
        docker_disjoint(
            &[run("1", 0, Some(5)), run("2", 5, Some(6))],
            &mut violations,
        );
        assert!(violations.is_empty(), "{violations:?}");
        docker_disjoint(
            &[run("1", 0, Some(5)), run("2", 4, Some(6))],
            &mut violations,
        );
        assert_eq!(violations.len(), 1, "{violations:?}");
        docker_disjoint(&[run("1", 0, None), run("2", 9, None)], &mut violations);
        assert_eq!(violations.len(), 2, "{violations:?}");
    }
}
