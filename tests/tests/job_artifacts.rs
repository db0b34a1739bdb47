//! Jobs with inputs and outputs, end to end: a real server, a real `berth-worker` and a
//! real Docker engine running the locally built busybox image.
//!
//! Inputs are artifacts mounted read-only under /in (fetched by the worker into its
//! verified cache with its own token); outputs are collected from the job's working dir
//! into an artifact made by the attempt, never following a symlink, refusing hard links.
//! Submissions naming an input that cannot be used are refused. A workflow step may take
//! the output of a step it needs. Workers reach only the attempts they hold.

#![expect(clippy::unwrap_used, reason = "integration tests may unwrap")]

use std::time::Duration;

use berth_common::proto::{
    Artifact, ArtifactFile, ContainerSpec, CreateArtifactRequest, CreateWorkspaceRequest,
    GetArtifactRequest, Input, Output, OutputWhen, ReadFileRequest, SubmitWorkRequestRequest,
    SubmitWorkflowRequest, WorkRequest, WorkRequestStatus, WorkResult, WorkflowStep,
};
use berth_files::FileId;
use berth_tests::artifacts::{Artifacts, create, read_all, upload};
use berth_tests::logs::{STDOUT, SYSTEM};
use berth_tests::{
    Logs, TestServer, TestWorker, WAIT, ensure_test_image, eventually, get, quick_heartbeats,
    result, sh, status, submit_request, try_submit, wait_for, wait_no_containers, wait_started,
    wait_terminal,
};
use tonic::Code;

// ----- helpers -----

async fn server_and_worker() -> (TestServer, TestWorker) {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_heartbeats).await;
    let worker = TestWorker::start(&server, &[]).await;
    worker.wait_connected(&server).await;
    (server, worker)
}

async fn finish(server: TestServer, mut worker: TestWorker) {
    wait_no_containers(&worker.name).await;
    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}

/// An artifact in `workspace` holding `files`, every file uploaded.
async fn artifact(client: &mut Artifacts, workspace: &str, files: &[(&str, &[u8])]) -> String {
    let created = create(client, workspace, "package", files).await;
    let id = created.artifact.unwrap().id;
    for path in &created.missing {
        let bytes = files.iter().find(|(p, _)| p == path).unwrap().1;
        upload(client, &id, path, bytes).await;
    }
    id
}

fn input(artifact: &str, mount: &str) -> Input {
    Input {
        artifact: artifact.into(),
        mount: mount.into(),
        from: String::new(),
    }
}

fn output(path: &str, when: OutputWhen) -> Output {
    Output {
        path: path.into(),
        when: when as i32,
    }
}

/// `script` in /work with `outputs` collected.
fn producing(script: &str, outputs: Vec<Output>) -> SubmitWorkRequestRequest {
    let mut spec: ContainerSpec = sh(script);
    spec.working_dir = "/work".into();
    spec.memory_bytes = Some(256 * 1024 * 1024);
    SubmitWorkRequestRequest {
        spec: Some(spec),
        outputs,
        ..Default::default()
    }
}

async fn run(server: &TestServer, request: SubmitWorkRequestRequest) -> WorkRequest {
    let submitted = submit_request(server, request).await;
    wait_terminal(server, &submitted.id).await
}

async fn get_artifact(server: &TestServer, id: &str) -> Artifact {
    server
        .artifacts(&server.admin_token)
        .await
        .get_artifact(GetArtifactRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

fn file<'a>(artifact: &'a Artifact, path: &str) -> &'a ArtifactFile {
    artifact
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not in {:?}", artifact.files))
}

/// Every regular file under `dir`.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk_files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn stdout(logs: &Logs) -> String {
    logs.text(STDOUT)
}

// ----- inputs -----

#[tokio::test(flavor = "multi_thread")]
async fn a_job_reads_its_input_at_in_and_cannot_write_it() {
    let (server, worker) = server_and_worker().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let hello = b"hello from an artifact\n";
    let id = artifact(
        &mut client,
        "",
        &[("hello.txt", hello), ("sub/deep/data.txt", b"deep\n")],
    )
    .await;
    let request = SubmitWorkRequestRequest {
        spec: Some(sh("cat /in/src/hello.txt /in/src/sub/deep/data.txt; \
             if echo changed > /in/src/hello.txt; then echo WROTE; else echo REFUSED; fi; \
             if touch /in/src/new 2>/dev/null; then echo CREATED; else echo NOT-CREATED; fi; \
             cat /in/src/hello.txt")),
        inputs: vec![input(&id, "src")],
        ..Default::default()
    };
    let done = run(&server, request).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");
    assert_eq!(done.inputs.len(), 1, "{done:?}");
    assert_eq!(done.inputs[0].mount, "src");
    assert_eq!(done.inputs[0].artifact_id, id);
    let logs = Logs::read(&server, &done.id).await;
    assert_eq!(
        stdout(&logs),
        "hello from an artifact\ndeep\nREFUSED\nNOT-CREATED\nhello from an artifact\n",
    );

    // A second job with the same input is laid out from the worker's cache, not fetched
    // again: with the server's copy of the bytes gone, it still reads them. The cached
    // file is read-only and stays so.
    let stored: Vec<std::path::PathBuf> = walk_files(&server.data_dir.path().join("files"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&FileId::of(hello).hex()))
        })
        .collect();
    assert_eq!(
        stored.len(),
        1,
        "the local store holds the file once: {stored:?}"
    );
    std::fs::remove_file(&stored[0]).unwrap();
    let again = SubmitWorkRequestRequest {
        spec: Some(sh("cat /in/x/hello.txt")),
        inputs: vec![input(&id, "x")],
        ..Default::default()
    };
    let done = run(&server, again).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");
    assert_eq!(
        stdout(&Logs::read(&server, &done.id).await),
        "hello from an artifact\n"
    );
    let hex = FileId::of(hello).hex();
    let cached = worker
        .spool_dir
        .join("files/cache")
        .join(&hex[..2])
        .join(format!("{hex}-{}", hello.len()));
    let meta = std::fs::metadata(&cached).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_eq!(std::fs::read(&cached).unwrap(), hello);
    // The attempts' dirs go once their reports are out.
    let attempts = worker.spool_dir.join("files/attempts");
    eventually("the attempts' dirs to be removed", WAIT, async || {
        (std::fs::read_dir(&attempts).unwrap().count() == 0).then_some(())
    })
    .await;
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_that_is_missing_expired_incomplete_or_of_another_workspace_refuses_the_submission()
 {
    let server = TestServer::start().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let submit_with = |inputs: Vec<Input>| SubmitWorkRequestRequest {
        spec: Some(sh("true")),
        inputs,
        ..Default::default()
    };
    let refused = async |inputs: Vec<Input>, code: Code| {
        let status = try_submit(&server, &server.admin_token, submit_with(inputs))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        status.message().to_owned()
    };

    // Missing.
    let message = refused(
        vec![input("0190f5c2-8b1e-7c3a-9d4e-5f6a7b8c9d0e", "x")],
        Code::NotFound,
    )
    .await;
    assert!(message.contains("inputs[0]"), "{message}");
    // No such collection item.
    let message = refused(vec![input("nightly/latest", "x")], Code::NotFound).await;
    assert!(message.contains("nightly"), "{message}");

    // Incomplete: a file not uploaded yet.
    let partial = create(&mut client, "", "package", &[("f", b"not yet")]).await;
    let partial = partial.artifact.unwrap().id;
    let message = refused(vec![input(&partial, "x")], Code::FailedPrecondition).await;
    assert!(message.contains("not complete"), "{message}");

    // Another workspace's artifact is NOT_FOUND, as if it did not exist.
    server
        .workspaces(&server.admin_token)
        .await
        .create_workspace(CreateWorkspaceRequest {
            name: "elsewhere".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let foreign = artifact(&mut client, "elsewhere", &[("f", b"theirs")]).await;
    let message = refused(vec![input(&foreign, "x")], Code::NotFound).await;
    assert!(message.contains(&foreign), "{message}");

    // Expired.
    let fine = artifact(&mut client, "", &[("f", b"mine")]).await;
    let ok = try_submit(
        &server,
        &server.admin_token,
        submit_with(vec![input(&fine, "x")]),
    )
    .await
    .unwrap();
    assert_eq!(ok.inputs[0].artifact_id, fine);
    let expiring = artifact(&mut client, "", &[("g", b"soon gone")]).await;
    client
        .set_expiry(berth_common::proto::SetExpiryRequest {
            id: expiring.clone(),
            expiry: Some(berth_common::proto::Expiry {
                when: Some(berth_common::proto::expiry::When::At(
                    prost_types::Timestamp {
                        seconds: chrono::Utc::now().timestamp() - 60,
                        nanos: 0,
                    },
                )),
            }),
        })
        .await
        .unwrap();
    refused(vec![input(&expiring, "x")], Code::NotFound).await;

    // Mounts are checked by the one path validator.
    let message = refused(vec![input(&fine, "../escape")], Code::InvalidArgument).await;
    assert!(message.contains("inputs[0].mount"), "{message}");
    server.stop().await;
}

// ----- outputs -----

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_small_outputs_come_back_byte_for_byte() {
    let (server, worker) = server_and_worker().await;
    let request = producing(
        "mkdir -p out/a out/b; i=0; while [ $i -lt 1000 ]; do \
           if [ $((i % 2)) -eq 0 ]; then d=a; else d=b; fi; \
           echo \"small file $i\" > out/$d/f$i.txt; i=$((i+1)); done; \
         echo ignored > not-collected.txt",
        vec![output("out", OutputWhen::Success)],
    );
    let done = run(&server, request).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");
    assert!(!done.output_artifact_id.is_empty(), "{done:?}");
    assert_eq!(done.outputs.len(), 1);
    assert_eq!(done.output_category, "output");
    let artifact = get_artifact(&server, &done.output_artifact_id).await;
    assert!(artifact.complete, "{artifact:?}");
    assert_eq!(artifact.category, "output");
    assert_eq!(artifact.work_request_id, done.id);
    assert_eq!(artifact.files.len(), 1000, "{:?}", artifact.files.len());
    for i in 0..1000 {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        let path = format!("out/{dir}/f{i}.txt");
        let bytes = format!("small file {i}\n");
        let entry = file(&artifact, &path);
        assert_eq!(entry.sha256, FileId::of(bytes.as_bytes()).hex(), "{path}");
        assert_eq!(entry.size, bytes.len() as u64, "{path}");
    }
    let mut client = server.artifacts(&server.admin_token).await;
    for i in [0, 1, 499, 998, 999] {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        let back = read_all(&mut client, &artifact.id, &format!("out/{dir}/f{i}.txt")).await;
        assert_eq!(back, format!("small file {i}\n").into_bytes());
    }
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_gib_output_comes_back_with_the_hash_the_job_computed() {
    let (server, worker) = server_and_worker().await;
    let request = producing(
        "mkdir out && dd if=/dev/urandom of=out/big bs=1048576 count=1024 2>/dev/null \
         && sha256sum out/big",
        vec![output("out/big", OutputWhen::Success)],
    );
    let submitted = submit_request(&server, request).await;
    let done = wait_for(
        &server,
        &submitted.id,
        "the 1 GiB job to end",
        Duration::from_secs(600),
        berth_tests::is_terminal,
    )
    .await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");
    let printed = stdout(&Logs::read(&server, &done.id).await);
    let printed_hash = printed.split_whitespace().next().unwrap().to_owned();
    let artifact = get_artifact(&server, &done.output_artifact_id).await;
    assert!(artifact.complete, "{artifact:?}");
    let big = file(&artifact, "out/big");
    assert_eq!(big.size, 1024 * 1024 * 1024);
    assert_eq!(big.sha256, printed_hash);
    // The bytes in the store are those bytes: read back and hashed.
    let mut client = server.artifacts(&server.admin_token).await;
    let mut stream = client
        .read_file(ReadFileRequest {
            artifact_id: artifact.id.clone(),
            path: "out/big".into(),
            offset: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut hasher = berth_files::Hasher::new();
    while let Some(piece) = stream.message().await.unwrap() {
        hasher.update(&piece.data);
    }
    assert_eq!(hasher.finish().hex(), printed_hash);
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_planted_in_the_outputs_are_recorded_as_symlinks_and_never_followed() {
    let (server, worker) = server_and_worker().await;
    let request = producing(
        "mkdir -p out/sub && echo mine > out/real.txt \
         && ln -s /etc/passwd out/passwd && ln -s ../../x out/up \
         && ln -s /etc out/sub/etc && ln -s real.txt out/inside",
        vec![output("out", OutputWhen::Success)],
    );
    let done = run(&server, request).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:?}");
    let artifact = get_artifact(&server, &done.output_artifact_id).await;
    let mut paths: Vec<(&str, &str, &str)> = artifact
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.symlink.as_str(), f.sha256.as_str()))
        .collect();
    paths.sort();
    let mine = FileId::of(b"mine\n").hex();
    assert_eq!(
        paths,
        vec![
            ("out/inside", "real.txt", ""),
            ("out/passwd", "/etc/passwd", ""),
            ("out/real.txt", "", mine.as_str()),
            ("out/sub/etc", "/etc", ""),
            ("out/up", "../../x", ""),
        ]
    );
    // Nothing but the job's own file has bytes: /etc/passwd was never read.
    let with_bytes: Vec<&ArtifactFile> = artifact.files.iter().filter(|f| f.size > 0).collect();
    assert_eq!(with_bytes.len(), 1, "{with_bytes:?}");

    // Taken as an input, the symlinks that point outside are left out, the one inside
    // is kept.
    let consumer = SubmitWorkRequestRequest {
        spec: Some(sh("cat /in/o/out/inside; ls /in/o/out; \
             if [ -e /in/o/out/passwd ] || [ -L /in/o/out/passwd ]; then echo LEAK; fi")),
        inputs: vec![input(&artifact.id, "o")],
        ..Default::default()
    };
    let used = run(&server, consumer).await;
    assert_eq!(result(&used), WorkResult::Success, "{used:?}");
    let logs = Logs::read(&server, &used.id).await;
    let out = stdout(&logs);
    assert!(out.starts_with("mine\n"), "{out}");
    assert!(!out.contains("LEAK"), "{out}");
    let notes = logs.text(SYSTEM);
    assert!(notes.contains("points outside"), "{notes}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hard_link_in_the_outputs_is_refused_no_artifact_is_made_and_the_request_ends_in_error() {
    let (server, worker) = server_and_worker().await;
    let request = producing(
        "echo secret > outside.txt && mkdir out && ln outside.txt out/linked.txt",
        vec![output("out", OutputWhen::Success)],
    );
    let done = run(&server, request).await;
    assert_eq!(done.output_artifact_id, "", "{done:?}");
    // The job exited 0 but did not deliver what it declared: an error, saying why.
    assert_eq!(result(&done), WorkResult::Error, "{done:?}");
    assert_eq!(done.reason, "outputs", "{done:?}");
    assert!(done.message.contains("hard link"), "{done:?}");
    let attempt = done.attempts.last().unwrap();
    assert!(attempt.message.contains("hard link"), "{attempt:?}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn success_outputs_wait_for_exit_zero_and_always_outputs_do_not() {
    let (server, worker) = server_and_worker().await;
    let request = producing(
        "echo report > report.txt; echo pkg > pkg.txt; exit 3",
        vec![
            output("pkg.txt", OutputWhen::Success),
            output("report.txt", OutputWhen::Always),
        ],
    );
    let done = run(&server, request).await;
    assert_eq!(result(&done), WorkResult::Failure, "{done:?}");
    let artifact = get_artifact(&server, &done.output_artifact_id).await;
    let paths: Vec<&str> = artifact.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["report.txt"]);
    finish(server, worker).await;
}

// ----- workflows -----

fn step(name: &str, script: &str) -> WorkflowStep {
    let mut spec = sh(script);
    spec.working_dir = "/work".into();
    WorkflowStep {
        name: name.into(),
        spec: Some(spec),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_step_takes_the_output_of_a_step_it_needs() {
    let (server, worker) = server_and_worker().await;
    let mut build = step("build", "mkdir dist && echo built > dist/app.txt");
    build.outputs = vec![output("dist", OutputWhen::Success)];
    let mut use_it = step("use", "cat /in/dist/dist/app.txt");
    use_it.needs = vec!["build".into()];
    use_it.inputs = vec![Input {
        artifact: String::new(),
        mount: "dist".into(),
        from: "build".into(),
    }];
    // A step that declares outputs but makes none: its dependant fails, saying why.
    let mut empty = step("empty", "true");
    empty.outputs = vec![output("nothing/**", OutputWhen::Success)];
    let mut starved = step("starved", "ls /in/x");
    starved.needs = vec!["empty".into()];
    starved.inputs = vec![Input {
        artifact: String::new(),
        mount: "x".into(),
        from: "empty".into(),
    }];
    let parent = server
        .work_requests(&server.admin_token)
        .await
        .submit_workflow(SubmitWorkflowRequest {
            name: "pipeline".into(),
            steps: vec![build, use_it, empty, starved],
            workspace: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let parent = wait_terminal(&server, &parent.id).await;
    let by_name = |name: &str| {
        parent
            .children
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .id
            .clone()
    };
    let build = get(&server, &by_name("build")).await;
    let used = get(&server, &by_name("use")).await;
    assert_eq!(result(&used), WorkResult::Success, "{used:?}");
    assert_eq!(used.inputs[0].artifact_id, build.output_artifact_id);
    assert_eq!(used.inputs[0].from_work_request_id, build.id);
    assert_eq!(stdout(&Logs::read(&server, &used.id).await), "built\n");
    let starved = get(&server, &by_name("starved")).await;
    assert_eq!(result(&starved), WorkResult::Error, "{starved:?}");
    assert!(
        starved.message.contains("made no output artifact"),
        "{starved:?}"
    );
    assert_eq!(starved.inputs[0].artifact_id, "");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_may_take_the_output_only_of_a_needed_step_that_declares_outputs() {
    let server = TestServer::start().await;
    let mut client = server.work_requests(&server.admin_token).await;
    let take = |from: &str| Input {
        artifact: String::new(),
        mount: "x".into(),
        from: from.into(),
    };
    let mut a = step("a", "true");
    let mut b = step("b", "true");
    b.inputs = vec![take("a")];
    let refused = client
        .submit_workflow(SubmitWorkflowRequest {
            name: "w".into(),
            steps: vec![a.clone(), b.clone()],
            workspace: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("needs"), "{refused:?}");
    b.needs = vec!["a".into()];
    let refused = client
        .submit_workflow(SubmitWorkflowRequest {
            name: "w".into(),
            steps: vec![a.clone(), b.clone()],
            workspace: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("declares no outputs"),
        "{refused:?}"
    );
    a.outputs = vec![output("x", OutputWhen::Success)];
    client
        .submit_workflow(SubmitWorkflowRequest {
            name: "w".into(),
            steps: vec![a, b],
            workspace: String::new(),
        })
        .await
        .unwrap();
    server.stop().await;
}

// ----- lease scope -----

#[tokio::test(flavor = "multi_thread")]
async fn another_workers_token_can_neither_read_this_attempts_inputs_nor_write_its_outputs() {
    let (server, worker) = server_and_worker().await;
    let mut admin = server.artifacts(&server.admin_token).await;
    let id = artifact(&mut admin, "", &[("secret.txt", b"for the holder only\n")]).await;
    let mut request = producing(
        "cat /in/in/secret.txt; echo out > o.txt; sleep 600",
        vec![output("o.txt", OutputWhen::Always)],
    );
    request.inputs = vec![input(&id, "in")];
    let submitted = submit_request(&server, request).await;
    let running = wait_started(&server, &submitted.id).await;
    let attempt = running.attempts.last().unwrap().number;
    // The holder read its input with its own token: the job printed it.
    eventually("the job prints its input", WAIT, async || {
        (stdout(&Logs::read(&server, &submitted.id).await) == "for the holder only\n").then_some(())
    })
    .await;

    // Another worker, connected and registered, holding nothing of this request.
    let other = TestWorker::start(&server, &["--label", "other=yes"]).await;
    other.wait_connected(&server).await;
    let mut stranger = server.artifacts(&other.token).await;
    let read = stranger
        .read_file(ReadFileRequest {
            artifact_id: id.clone(),
            path: "secret.txt".into(),
            offset: 0,
            limit: 0,
        })
        .await;
    let denied = match read {
        Err(denied) => denied,
        Ok(stream) => stream.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let got = stranger
        .get_artifact(GetArtifactRequest { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(got.code(), Code::PermissionDenied, "{got:?}");
    let made = stranger
        .create_artifact(CreateArtifactRequest {
            category: "output".into(),
            files: vec![berth_tests::artifacts::entry("o.txt", b"forged\n")],
            work_request_id: submitted.id.clone(),
            attempt,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(made.code(), Code::PermissionDenied, "{made:?}");

    // Cancelled, the attempt is over: even its own worker may no longer write for it.
    berth_tests::cancel(&server, &submitted.id).await;
    let done = wait_for(&server, &submitted.id, "its attempt to finish", WAIT, |r| {
        r.attempts.last().is_some_and(|a| a.finished_at.is_some())
    })
    .await;
    assert_eq!(status(&done), WorkRequestStatus::Aborted, "{done:?}");
    // Nothing was collected for a cancelled attempt.
    assert_eq!(done.output_artifact_id, "", "{done:?}");
    let mut holder = server.artifacts(&worker.token).await;
    let late = holder
        .create_artifact(CreateArtifactRequest {
            category: "output".into(),
            files: vec![berth_tests::artifacts::entry("o.txt", b"late\n")],
            work_request_id: submitted.id.clone(),
            attempt,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    let mut other = other;
    other.terminate(Duration::from_secs(30)).await;
    finish(server, worker).await;
}

// ----- the CLI -----

#[tokio::test(flavor = "multi_thread")]
async fn berth_run_takes_inputs_and_outputs_and_berth_get_shows_them() {
    let (server, worker) = server_and_worker().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let id = artifact(&mut client, "", &[("in.txt", b"from the cli\n")]).await;
    let input_flag = format!("{id}:data");
    let out = berth_tests::berth(&server)
        .ok(&[
            "run",
            "--input",
            &input_flag,
            "--output",
            "copy.txt",
            "--output",
            "log.txt:always",
            "--output-category",
            "report",
            "--workdir",
            "/work",
            "--pull",
            "never",
            berth_tests::TEST_IMAGE,
            "--",
            "sh",
            "-c",
            "cp /in/data/in.txt copy.txt && echo done > log.txt && cat copy.txt",
        ])
        .await;
    assert_eq!(out, "from the cli\n");
    let listed = berth_tests::berth(&server).json(&["list"]).await;
    let request_id = listed["work_requests"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = berth_tests::berth(&server)
        .json(&["get", &request_id])
        .await;
    assert_eq!(shown["inputs"][0]["mount"], "data", "{shown}");
    assert_eq!(shown["inputs"][0]["artifact_id"], id.as_str(), "{shown}");
    assert_eq!(shown["outputs"][0]["path"], "copy.txt", "{shown}");
    assert_eq!(shown["outputs"][0]["when"], "success", "{shown}");
    assert_eq!(shown["outputs"][1]["when"], "always", "{shown}");
    assert_eq!(shown["output_category"], "report", "{shown}");
    let output = shown["output_artifact_id"].as_str().unwrap();
    let artifact = get_artifact(&server, output).await;
    assert_eq!(artifact.category, "report");
    let mut paths: Vec<&str> = artifact.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["copy.txt", "log.txt"]);
    assert_eq!(
        file(&artifact, "copy.txt").sha256,
        FileId::of(b"from the cli\n").hex()
    );
    // The table view names them too.
    let table = berth_tests::berth(&server).ok(&["get", &request_id]).await;
    assert!(table.contains(&format!("/in/data <- {id}")), "{table}");
    assert!(table.contains("log.txt (always)"), "{table}");
    finish(server, worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collection_item_input_is_pinned_to_the_items_artifact_at_submission() {
    let server = TestServer::start().await;
    let mut client = server.artifacts(&server.admin_token).await;
    let first = artifact(&mut client, "", &[("v", b"1")]).await;
    let second = artifact(&mut client, "", &[("v", b"2")]).await;
    // The collection rows as CollectionService would make them.
    berth_tests::query(
        &server.database_url,
        "INSERT INTO collections (id, workspace_id, name, category) \
         SELECT gen_random_uuid(), id, 'nightly', 'package' FROM workspaces WHERE name = 'default'",
    )
    .await;
    let add = |artifact: &str| {
        format!(
            "INSERT INTO collection_items (id, collection_id, name, artifact_id, category) \
             SELECT gen_random_uuid(), id, 'latest', '{artifact}', 'package' FROM collections \
             WHERE name = 'nightly'"
        )
    };
    berth_tests::query(&server.database_url, &add(&first)).await;
    let request = SubmitWorkRequestRequest {
        spec: Some(sh("true")),
        inputs: vec![input("nightly/latest", "pkg")],
        ..Default::default()
    };
    let submitted = try_submit(&server, &server.admin_token, request.clone())
        .await
        .unwrap();
    assert_eq!(submitted.inputs[0].artifact_id, first);
    // The item moves on; the request keeps what it was pinned to, a new one gets the new.
    berth_tests::query(
        &server.database_url,
        "UPDATE collection_items SET removed_at = now(), removed_why = 'replaced' \
         WHERE name = 'latest'",
    )
    .await;
    berth_tests::query(&server.database_url, &add(&second)).await;
    assert_eq!(
        get(&server, &submitted.id).await.inputs[0].artifact_id,
        first
    );
    let later = try_submit(&server, &server.admin_token, request)
        .await
        .unwrap();
    assert_eq!(later.inputs[0].artifact_id, second);
    // A COLLECTION/ITEM input needs a mount (an item name may hold a `/`).
    let refused = try_submit(
        &server,
        &server.admin_token,
        SubmitWorkRequestRequest {
            spec: Some(sh("true")),
            inputs: vec![input("nightly/latest", "")],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    server.stop().await;
}
