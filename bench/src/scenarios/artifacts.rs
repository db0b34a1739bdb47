//! Scenario `artifacts`: one large file uploaded to and downloaded from Berth, against a
//! plain copy to the same store.
//!
//! A file store is only as useful as it is fast, and an artifact's bytes pass through the
//! server (which checks the hash and stages parts so an upload can resume anywhere). This
//! scenario measures what that costs, for each backend:
//!
//! - **local** (the default store, a directory in the server's data directory): the plain
//!   copy is `cp` into the same directory followed by `sync` of the file (Berth makes each
//!   part durable before it counts it committed, so the baseline must too); the download
//!   baseline is `cp` out of the store.
//! - **s3** (SeaweedFS, given by `BERTH_TEST_S3_*` as `scripts/with-s3` sets them): the
//!   plain copy is a multipart put with the `object_store` S3 client, and the download a
//!   streamed get, both from this process.
//!
//! Each baseline runs twice and the faster run counts. Through Berth: `CreateArtifact` (the file's SHA-256 is computed beforehand, as a client
//! must) then `UploadFile` in 1 MiB messages; the download is `ReadFile` into a file,
//! synced. Figures: seconds and MiB/s each way, the ratio plain/Berth (goal ≥ 0.8), the
//! server's peak RSS (goal ≤ 128 MiB), and the latency of a **dedup hit**: creating a second
//! artifact of the same file, which must need nothing uploaded and so costs one call.
//!
//! Then, on the local store, a **job's output**: a real worker runs a container that writes
//! the same size of data into its working directory and declares it as an output; the
//! worker walks the directory, hashes the file and uploads it before reporting. Figures:
//! the request's wall time against the same job without the output, and the worker's peak
//! RSS (goal ≤ 128 MiB: the bytes must stream through it, not gather in it).
//!
//! Goals are printed next to the figures, never asserted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use berth_common::client::BearerAuth;
use berth_common::proto::artifact_service_client::ArtifactServiceClient;
use berth_common::proto::{self, Role};
use berth_files::{FileId, Hasher};
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::Options;
use super::container::{check_success, ensure_image, poll_until_done, rpc_error, spec};
use crate::report::{Report, mib};
use crate::stack::{Authed, Sampler, Stack, StackOptions, sample};

/// The file of the full run.
const FULL_BYTES: u64 = 1 << 30;
/// The file of a `--quick` run.
const QUICK_BYTES: u64 = 32 << 20;
/// Bytes per upload message.
const CHUNK: usize = 1 << 20;
/// Goal for the server's peak RSS.
const MEMORY_GOAL: u64 = 128 << 20;
/// Goal for Berth's throughput relative to the plain copy.
const RATIO_GOAL: f64 = 0.8;

const MIB: f64 = 1024.0 * 1024.0;

/// The S3 server, from the environment `scripts/with-s3` sets.
struct S3Env {
    endpoint: String,
    bucket: String,
    region: String,
    access_key: String,
    secret_key: String,
}

impl S3Env {
    fn from_env() -> anyhow::Result<S3Env> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!(
                    "{name} is not set: the s3 half of this scenario needs a real S3 server; \
                     run it as `scripts/with-s3 berth-bench artifacts`"
                )
            })
        };
        Ok(S3Env {
            endpoint: var("BERTH_TEST_S3_ENDPOINT")?,
            bucket: var("BERTH_TEST_S3_BUCKET")?,
            region: std::env::var("BERTH_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
            access_key: var("BERTH_TEST_S3_ACCESS_KEY")?,
            secret_key: var("BERTH_TEST_S3_SECRET_KEY")?,
        })
    }

    fn server_config(&self) -> String {
        format!(
            "[files]\ndefault_store = \"s3\"\n[files.stores.s3]\nbackend = \"s3\"\n\
             endpoint = \"{}\"\nbucket = \"{}\"\nregion = \"{}\"\n\
             access_key_id_env = \"BERTH_TEST_S3_ACCESS_KEY\"\n\
             secret_access_key_env = \"BERTH_TEST_S3_SECRET_KEY\"\n",
            self.endpoint, self.bucket, self.region
        )
    }

    fn client(&self) -> anyhow::Result<object_store::aws::AmazonS3> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .build()
            .context("cannot build the S3 client")
    }
}

/// Writes `bytes` pseudo-random bytes (xorshift; incompressible enough for a store that
/// does not compress) to `path` and returns their identity.
fn make_file(path: &Path, bytes: u64) -> anyhow::Result<FileId> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut hasher = Hasher::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        out.write_all(&block[..n])?;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    Ok(hasher.finish())
}

fn run_cmd(program: &str, args: &[&Path]) -> anyhow::Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} failed: {status}");
    }
    Ok(())
}

/// The faster of two runs of a baseline, each way: the first run may pay for warming up
/// (the S3 server allocating its volumes, the page cache), which would flatter Berth.
fn best_of_two(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0.min(b.0), a.1.min(b.1))
}

/// Seconds for a plain copy into and out of the local store's directory.
fn plain_local(src: &Path, store_dir: &Path, back: &Path) -> anyhow::Result<(f64, f64)> {
    std::fs::create_dir_all(store_dir)?;
    let dst = store_dir.join("plain-copy.bin");
    let t = Instant::now();
    run_cmd("cp", &[src, &dst])?;
    run_cmd("sync", &[&dst])?;
    let up = t.elapsed().as_secs_f64();
    let t = Instant::now();
    run_cmd("cp", &[&dst, back])?;
    run_cmd("sync", &[back])?;
    let down = t.elapsed().as_secs_f64();
    std::fs::remove_file(&dst)?;
    std::fs::remove_file(back)?;
    Ok((up, down))
}

/// Seconds for a plain multipart put and a streamed get with an S3 client.
async fn plain_s3(s3: &S3Env, src: &Path, back: &Path) -> anyhow::Result<(f64, f64)> {
    let client = s3.client()?;
    let key = ObjectPath::from(format!("bench/plain-{}.bin", std::process::id()));
    let t = Instant::now();
    let upload = client
        .put_multipart(&key)
        .await
        .context("S3 multipart put")?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
    let mut file = tokio::fs::File::open(src).await?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        writer.wait_for_capacity(4).await.context("S3 put part")?;
        writer.write(&buffer[..n]);
    }
    writer.finish().await.context("S3 complete upload")?;
    let up = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut stream = client.get(&key).await.context("S3 get")?.into_stream();
    let mut out = std::fs::File::create(back)?;
    while let Some(piece) = stream.next().await {
        out.write_all(&piece.context("S3 get body")?)?;
    }
    out.sync_all()?;
    let down = t.elapsed().as_secs_f64();
    client.delete(&key).await.context("S3 delete")?;
    std::fs::remove_file(back)?;
    Ok((up, down))
}

fn rpc(what: &str) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |status| anyhow::anyhow!("{what}: {}", berth_common::client::describe_status(&status))
}

fn create_request(file: FileId, path: &str) -> proto::CreateArtifactRequest {
    proto::CreateArtifactRequest {
        category: "bench".into(),
        files: vec![proto::ArtifactFile {
            path: path.into(),
            sha256: file.hex(),
            size: file.size,
            mode: 0o644,
            ..Default::default()
        }],
        expiry: Some(proto::Expiry {
            when: Some(proto::expiry::When::Never(true)),
        }),
        ..Default::default()
    }
}

/// The upload messages of `src`, read as the stream is polled.
fn upload_stream(
    src: PathBuf,
    artifact_id: String,
    path: String,
    size: u64,
) -> impl futures::Stream<Item = proto::UploadFileRequest> {
    futures::stream::unfold(
        (None::<tokio::fs::File>, 0u64, false),
        move |(file, offset, done)| {
            let src = src.clone();
            let artifact_id = artifact_id.clone();
            let path = path.clone();
            async move {
                if done {
                    return None;
                }
                let mut file = match file {
                    Some(file) => file,
                    None => tokio::fs::File::open(&src).await.ok()?,
                };
                let want = usize::try_from((size - offset).min(CHUNK as u64)).ok()?;
                let mut data = vec![0u8; want];
                file.read_exact(&mut data).await.ok()?;
                let next = offset + want as u64;
                let finish = next >= size;
                let message = proto::UploadFileRequest {
                    artifact_id,
                    path,
                    offset,
                    data,
                    finish,
                };
                Some((message, (Some(file), next, finish)))
            }
        },
    )
}

/// Figures of one backend.
struct Figures {
    plain_up: f64,
    plain_down: f64,
    berth_up: f64,
    berth_down: f64,
    dedup_ms: f64,
    dedup_missing: usize,
    server_peak: u64,
}

async fn through_berth(
    stack: &Stack,
    src: &Path,
    back: &Path,
    file: FileId,
) -> anyhow::Result<Figures> {
    let token = stack.create_token(Role::User, "bench-artifacts").await?;
    stack.make_contributor("default", "bench-artifacts").await?;
    let mut client: ArtifactServiceClient<Authed> =
        ArtifactServiceClient::with_interceptor(stack.channel().await?, BearerAuth::new(&token))
            .max_decoding_message_size(64 << 20);
    let sampler = Sampler::start(stack.server_pid());

    let t = Instant::now();
    let created = client
        .create_artifact(create_request(file, "big.bin"))
        .await
        .map_err(rpc("CreateArtifact"))?
        .into_inner();
    let id = created.artifact.map(|a| a.id).unwrap_or_default();
    if created.missing != ["big.bin"] {
        bail!(
            "CreateArtifact asked for {:?}, not the one file",
            created.missing
        );
    }
    let answer = client
        .upload_file(upload_stream(
            src.to_owned(),
            id.clone(),
            "big.bin".into(),
            file.size,
        ))
        .await
        .map_err(rpc("UploadFile"))?
        .into_inner();
    let berth_up = t.elapsed().as_secs_f64();
    if !answer.complete {
        bail!(
            "the upload ended at {} bytes, not complete",
            answer.committed_size
        );
    }

    let t = Instant::now();
    let second = client
        .create_artifact(create_request(file, "again.bin"))
        .await
        .map_err(rpc("CreateArtifact (dedup)"))?
        .into_inner();
    let dedup_ms = t.elapsed().as_secs_f64() * 1000.0;

    let t = Instant::now();
    let mut stream = client
        .read_file(proto::ReadFileRequest {
            artifact_id: id,
            path: "big.bin".into(),
            offset: 0,
            limit: 0,
        })
        .await
        .map_err(rpc("ReadFile"))?
        .into_inner();
    let mut out = std::fs::File::create(back)?;
    let mut hasher = Hasher::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(rpc("ReadFile stream"))?;
        hasher.update(&piece.data);
        out.write_all(&piece.data)?;
    }
    out.sync_all()?;
    let berth_down = t.elapsed().as_secs_f64();
    if hasher.finish() != file {
        bail!("the downloaded file differs from the uploaded one");
    }
    std::fs::remove_file(back)?;
    let sampled = sampler.stop().await;
    let server_peak = sample(stack.server_pid())
        .map(|s| s.peak_rss_bytes)
        .unwrap_or(0)
        .max(sampled);
    Ok(Figures {
        plain_up: 0.0,
        plain_down: 0.0,
        berth_up,
        berth_down,
        dedup_ms,
        dedup_missing: second.missing.len(),
        server_peak,
    })
}

fn rows(name: &str, size: u64, f: &Figures, rows: &mut Vec<(String, String)>) -> serde_json::Value {
    let rate = |secs: f64| size as f64 / MIB / secs;
    let up_ratio = f.plain_up / f.berth_up;
    let down_ratio = f.plain_down / f.berth_down;
    rows.push((
        format!("{name}: upload, plain copy (best of 2)"),
        format!("{:.2} s ({:.0} MiB/s)", f.plain_up, rate(f.plain_up)),
    ));
    rows.push((
        format!("{name}: upload, Berth"),
        format!(
            "{:.2} s ({:.0} MiB/s), {:.2}× plain (goal ≥ {RATIO_GOAL})",
            f.berth_up,
            rate(f.berth_up),
            up_ratio
        ),
    ));
    rows.push((
        format!("{name}: download, plain copy (best of 2)"),
        format!("{:.2} s ({:.0} MiB/s)", f.plain_down, rate(f.plain_down)),
    ));
    rows.push((
        format!("{name}: download, Berth"),
        format!(
            "{:.2} s ({:.0} MiB/s), {:.2}× plain (goal ≥ {RATIO_GOAL})",
            f.berth_down,
            rate(f.berth_down),
            down_ratio
        ),
    ));
    rows.push((
        format!("{name}: dedup hit (create, all files present)"),
        format!(
            "{:.2} ms, one call, {} files to upload",
            f.dedup_ms, f.dedup_missing
        ),
    ));
    rows.push((
        format!("{name}: server peak RSS"),
        format!("{} (goal ≤ {})", mib(f.server_peak), mib(MEMORY_GOAL)),
    ));
    json!({
        "plain_upload_seconds": f.plain_up,
        "plain_download_seconds": f.plain_down,
        "berth_upload_seconds": f.berth_up,
        "berth_download_seconds": f.berth_down,
        "upload_ratio": up_ratio,
        "download_ratio": down_ratio,
        "dedup_hit_ms": f.dedup_ms,
        "dedup_hit_missing": f.dedup_missing,
        "server_peak_rss_bytes": f.server_peak,
    })
}

/// Wall seconds of one job writing `size` bytes to `out.bin` in its working directory,
/// with or without declaring it as an output, and the output artifact's total size.
async fn timed_job(
    stack: &Stack,
    token: &str,
    size: u64,
    collect: bool,
) -> anyhow::Result<(f64, u64)> {
    let mut requests = stack.work_requests(token).await?;
    let mut job = spec(&[
        "sh",
        "-c",
        &format!("head -c {size} /dev/zero | tr '\\0' x > out.bin"),
    ]);
    job.working_dir = "/work".into();
    let t = Instant::now();
    let submitted = requests
        .submit_work_request(proto::SubmitWorkRequestRequest {
            spec: Some(job),
            outputs: if collect {
                vec![proto::Output {
                    path: "out.bin".into(),
                    when: proto::OutputWhen::Success as i32,
                }]
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .await
        .map_err(rpc_error("SubmitWorkRequest"))?
        .into_inner();
    let done = poll_until_done(&mut requests, &submitted.id).await?;
    let secs = t.elapsed().as_secs_f64();
    check_success(&done)?;
    if !collect {
        return Ok((secs, 0));
    }
    let token_client =
        ArtifactServiceClient::with_interceptor(stack.channel().await?, BearerAuth::new(token));
    let mut artifacts: ArtifactServiceClient<Authed> = token_client;
    let artifact = artifacts
        .get_artifact(proto::GetArtifactRequest {
            id: done.output_artifact_id.clone(),
        })
        .await
        .map_err(rpc("GetArtifact (job output)"))?
        .into_inner();
    Ok((secs, artifact.total_size))
}

/// A job's output of `size` bytes through a real worker on the local store.
async fn job_output(
    stack: &Stack,
    size: u64,
    table: &mut Vec<(String, String)>,
) -> anyhow::Result<serde_json::Value> {
    ensure_image().await?;
    let token = stack.create_token(Role::User, "bench-outputs").await?;
    stack.make_contributor("default", "bench-outputs").await?;
    let worker = stack.spawn_worker("bench-output-worker", 1).await?;
    let sampler = Sampler::start(worker.pid());
    let (plain, _) = timed_job(stack, &token, size, false).await?;
    let (collected, stored) = timed_job(stack, &token, size, true).await?;
    let sampled = sampler.stop().await;
    let peak = sample(worker.pid())
        .map(|s| s.peak_rss_bytes)
        .unwrap_or(0)
        .max(sampled);
    worker.stop().await;
    if stored != size {
        bail!("the job's output artifact holds {stored} bytes, not {size}");
    }
    table.push(("job output: the job alone".into(), format!("{plain:.2} s")));
    table.push((
        "job output: the job with its output collected".into(),
        format!(
            "{collected:.2} s ({:.0} MiB/s for the extra {:.2} s)",
            size as f64 / MIB / (collected - plain).max(1e-3),
            collected - plain
        ),
    ));
    table.push((
        "job output: worker peak RSS".into(),
        format!("{} (goal ≤ {})", mib(peak), mib(MEMORY_GOAL)),
    ));
    Ok(json!({
        "job_seconds": plain,
        "job_with_output_seconds": collected,
        "worker_peak_rss_bytes": peak,
    }))
}

/// Runs the scenario: local store, then S3.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let size = if opts.quick { QUICK_BYTES } else { FULL_BYTES };
    let s3 = S3Env::from_env()?;
    let mut table = vec![("file".to_owned(), mib(size))];
    let mut figures = serde_json::Map::new();

    // Local store.
    let stack = Stack::start(StackOptions::default()).await?;
    let src = stack.dir.path().join("source.bin");
    let back = stack.dir.path().join("back.bin");
    let file = make_file(&src, size)?;
    let store_dir = stack.dir.path().join("data").join("files");
    let (plain_up, plain_down) = best_of_two(
        plain_local(&src, &store_dir, &back)?,
        plain_local(&src, &store_dir, &back)?,
    );
    let mut local = through_berth(&stack, &src, &back, file).await?;
    local.plain_up = plain_up;
    local.plain_down = plain_down;
    figures.insert("local".into(), rows("local", size, &local, &mut table));
    let outputs = job_output(&stack, size, &mut table).await?;
    figures.insert("job_output".into(), outputs);

    // S3 store (the same source file, from the local stack's directory).
    let s3_stack = Stack::start(StackOptions {
        extra_config: s3.server_config(),
        ..StackOptions::default()
    })
    .await?;
    let (plain_up, plain_down) = best_of_two(
        plain_s3(&s3, &src, &back).await?,
        plain_s3(&s3, &src, &back).await?,
    );
    let mut remote = through_berth(&s3_stack, &src, &back, file).await?;
    remote.plain_up = plain_up;
    remote.plain_down = plain_down;
    figures.insert("s3".into(), rows("s3", size, &remote, &mut table));
    s3_stack.stop().await?;
    stack.stop().await?;

    Ok(Report {
        scenario: "artifacts".into(),
        rows: table,
        json: json!({ "file_bytes": size, "stores": figures }),
    })
}
