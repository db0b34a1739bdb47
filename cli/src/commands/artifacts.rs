//! `berth artifact ...`: create (scan, hash, upload what the store lacks, resume), get,
//! list, download (verify every file), relate, delete and expire artifacts.
//!
//! Creating reads local files only through [`scan`], which never follows a symlink (it
//! records it) and refuses devices, FIFOs and sockets; downloading writes only through
//! [`berth_files::paths::join_beneath`], into real directories under the chosen one.
//!
//! Resuming: before uploading, `create` writes the new artifact's id to a state file named
//! after everything that identifies the artifact (server, workspace, category, data, expiry
//! and the file list). Run again after an interruption, the same command finds that file,
//! asks the server how far each upload got (QueryUpload) and goes on from there; the file
//! is removed once the artifact is complete.

use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::proto;
use berth_common::proto::artifact_service_client::ArtifactServiceClient;
use berth_files::{FileId, Hasher, paths};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::StreamExt;

use super::{Artifacts, Server, show};
use crate::args::{ArtifactCommand, ArtifactCreateArgs, ArtifactListArgs};
use crate::error::CliError;
use crate::output::{DeletedArtifactView, DownloadedView, Printer, RelatedView};
use crate::values::{Setting, to_proto_duration};

/// Bytes per upload message (the server takes up to 4 MiB).
const CHUNK: usize = 1024 * 1024;

pub(super) async fn execute(
    command: ArtifactCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        ArtifactCommand::Create(args) => create(args, server, printer).await,
        ArtifactCommand::Get { id } => {
            show(
                server,
                printer,
                Artifacts::get_artifact,
                proto::GetArtifactRequest { id },
            )
            .await
        }
        ArtifactCommand::List(args) => {
            show(
                server,
                printer,
                Artifacts::list_artifacts,
                list_request(args),
            )
            .await
        }
        ArtifactCommand::Download { id, path, dir } => {
            download(server, printer, id, path, dir).await
        }
        ArtifactCommand::Relate {
            from,
            kind,
            to,
            remove,
        } => {
            let relate = proto::RelateArtifactsRequest {
                from_id: from.clone(),
                to_id: to.clone(),
                kind: proto::ArtifactRelationKind::from(kind).into(),
                remove,
            };
            let answer = server.call(Artifacts::relate_artifacts, relate).await?;
            printer.show(&RelatedView {
                from,
                kind: proto::ArtifactRelationKind::from(kind)
                    .as_str_name()
                    .trim_start_matches("ARTIFACT_RELATION_KIND_")
                    .to_ascii_lowercase()
                    .replace('_', "-"),
                to,
                removed: remove,
                changed: answer.changed,
            })
        }
        ArtifactCommand::Delete { id } => {
            let delete = proto::DeleteArtifactRequest { id: id.clone() };
            server.call(Artifacts::delete_artifact, delete).await?;
            printer.show(&DeletedArtifactView { id, deleted: true })
        }
        ArtifactCommand::Expire { id, expire } => {
            let set = proto::SetExpiryRequest {
                id,
                expiry: Some(expiry(expire)),
            };
            show(server, printer, Artifacts::set_expiry, set).await
        }
    }
}

fn expiry(setting: Setting<Duration>) -> proto::Expiry {
    proto::Expiry {
        when: Some(match setting {
            Setting::Set(after) => proto::expiry::When::After(to_proto_duration(after)),
            Setting::Clear => proto::expiry::When::Never(true),
        }),
    }
}

fn list_request(args: ArtifactListArgs) -> proto::ListArtifactsRequest {
    proto::ListArtifactsRequest {
        workspace: args.workspace.unwrap_or_default(),
        category: args.category.unwrap_or_default(),
        created_by: args.created_by.unwrap_or_default(),
        work_request_id: args.work_request.unwrap_or_default(),
        collection: args.collection.unwrap_or_default(),
        include_incomplete: args.incomplete,
        page_size: args.limit.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    }
}

/// A local file or symlink to put in an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalFile {
    /// Its path in the artifact.
    pub(crate) path: String,
    /// Where it is on this machine.
    pub(crate) local: PathBuf,
    /// Its identity (for symlinks, of nothing).
    pub(crate) file: FileId,
    /// Permission bits.
    pub(crate) mode: u32,
    /// A symlink's target, as read.
    pub(crate) symlink: Option<String>,
}

fn local_error(what: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Local(format!("{}: {e}", what.display()))
}

/// Lists what `paths` name: a file under its own name, a directory's contents under their
/// paths inside it. Never follows a symlink; refuses devices, FIFOs and sockets; checks
/// every path with the one validator. Sorted by path.
pub(crate) fn scan(paths: &[PathBuf]) -> Result<Vec<LocalFile>, CliError> {
    let mut found = Vec::new();
    for root in paths {
        let meta = std::fs::symlink_metadata(root).map_err(|e| local_error(root, e))?;
        if meta.is_dir() {
            walk(root, "", &mut found)?;
        } else {
            let name = root
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| local_error(root, "has no UTF-8 file name"))?;
            found.push(entry(root, name.to_owned(), &meta)?);
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    paths::validate_paths(found.iter().map(|f| f.path.as_str()))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(found)
}

fn walk(dir: &Path, prefix: &str, found: &mut Vec<LocalFile>) -> Result<(), CliError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| local_error(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| local_error(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for item in entries {
        let local = item.path();
        let name = item
            .file_name()
            .into_string()
            .map_err(|_| local_error(&local, "is not a UTF-8 name"))?;
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(&local).map_err(|e| local_error(&local, e))?;
        if meta.is_dir() {
            walk(&local, &path, found)?;
        } else {
            found.push(entry(&local, path, &meta)?);
        }
    }
    Ok(())
}

fn entry(local: &Path, path: String, meta: &std::fs::Metadata) -> Result<LocalFile, CliError> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(local).map_err(|e| local_error(local, e))?;
        let target = target
            .to_str()
            .ok_or_else(|| local_error(local, "is a symlink whose target is not UTF-8"))?
            .to_owned();
        return Ok(LocalFile {
            path,
            local: local.to_owned(),
            file: FileId::EMPTY,
            mode: 0o777,
            symlink: Some(target),
        });
    }
    if !kind.is_file() {
        return Err(local_error(
            local,
            "is not a regular file, directory or symlink (devices, FIFOs and sockets cannot go in an artifact)",
        ));
    }
    Ok(LocalFile {
        path,
        local: local.to_owned(),
        file: hash_file(local)?,
        mode: meta.mode() & 0o7777,
        symlink: None,
    })
}

fn hash_file(path: &Path) -> Result<FileId, CliError> {
    let mut file = std::fs::File::open(path).map_err(|e| local_error(path, e))?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buffer).map_err(|e| local_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finish())
}

/// Where interrupted uploads are remembered: BERTH_STATE_DIR, else
/// `$XDG_STATE_HOME/berth`, else `~/.local/state/berth`.
fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BERTH_STATE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return Some(PathBuf::from(dir).join("berth"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state/berth"))
}

/// The state file of one artifact-to-be: named after all that identifies it.
fn state_file(server: &Server, request: &proto::CreateArtifactRequest) -> Option<PathBuf> {
    let mut hasher = Hasher::new();
    let mut add = |part: &str| {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    };
    add(&server.url);
    add(&request.workspace);
    add(&request.category);
    add(&request.data);
    add(&format!("{:?}", request.expiry));
    for file in &request.files {
        add(&file.path);
        add(&file.sha256);
        add(&file.size.to_string());
        add(&file.mode.to_string());
        add(&file.symlink);
    }
    let key = hasher.finish().hex();
    state_dir().map(|dir| dir.join("uploads").join(format!("{}.artifact", &key[..32])))
}

async fn create(
    args: ArtifactCreateArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    if let Some(data) = &args.data {
        let value: serde_json::Value = serde_json::from_str(data)
            .map_err(|e| CliError::Usage(format!("--data: not JSON: {e}")))?;
        if !value.is_object() {
            return Err(CliError::Usage("--data: must be a JSON object".into()));
        }
    }
    let files = scan(&args.paths)?;
    let request = proto::CreateArtifactRequest {
        workspace: args.workspace.unwrap_or_default(),
        category: args.category,
        data: args.data.unwrap_or_default(),
        files: files
            .iter()
            .map(|f| proto::ArtifactFile {
                path: f.path.clone(),
                sha256: if f.symlink.is_some() {
                    String::new()
                } else {
                    f.file.hex()
                },
                size: if f.symlink.is_some() { 0 } else { f.file.size },
                mode: f.mode,
                symlink: f.symlink.clone().unwrap_or_default(),
                uploaded: false,
            })
            .collect(),
        expiry: args.expire.map(expiry),
        work_request_id: String::new(),
        attempt: 0,
    };
    let state = state_file(server, &request);
    let mut client: Artifacts = server.client().await?;

    // An earlier run of this same command that did not finish?
    let mut resumed = None;
    if let Some(state) = &state
        && let Ok(id) = std::fs::read_to_string(state)
    {
        let id = id.trim().to_owned();
        match client
            .get_artifact(proto::GetArtifactRequest { id: id.clone() })
            .await
        {
            Ok(found) => resumed = Some(found.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => {
                let _ = std::fs::remove_file(state);
            }
            Err(status) => return Err(status.into()),
        }
    }
    let (artifact, missing) = match resumed {
        Some(artifact) => {
            let missing: Vec<String> = artifact
                .files
                .iter()
                .filter(|f| !f.uploaded)
                .map(|f| f.path.clone())
                .collect();
            if !missing.is_empty() {
                printer.note(&format!(
                    "[berth] resuming the upload of artifact {} ({} files left)\n",
                    artifact.id,
                    missing.len()
                ))?;
            }
            (artifact, missing)
        }
        None => {
            let created = client.create_artifact(request).await?.into_inner();
            let artifact = created.artifact.unwrap_or_default();
            if !created.missing.is_empty()
                && let Some(state) = &state
            {
                // Best effort: without it a rerun starts a new artifact, nothing worse.
                if let Some(parent) = state.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let _ = std::fs::write(state, &artifact.id);
            }
            (artifact, created.missing)
        }
    };

    let to_send: Vec<&LocalFile> = files.iter().filter(|f| missing.contains(&f.path)).collect();
    let total: u64 = to_send.iter().map(|f| f.file.size).sum();
    let bar = if std::io::stderr().is_terminal() && total > 0 {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    for file in to_send {
        if let Some(bar) = &bar {
            bar.set_message(file.path.clone());
        }
        upload(&mut client, &artifact.id, file, bar.as_ref()).await?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(state) = &state {
        let _ = std::fs::remove_file(state);
    }
    show(
        server,
        printer,
        Artifacts::get_artifact,
        proto::GetArtifactRequest { id: artifact.id },
    )
    .await
}

/// Uploads one file from where the server's committed size says, in chunks, finishing
/// with the last one. A chunk the server already has (another run got further) makes it
/// ask again once.
async fn upload(
    client: &mut Artifacts,
    artifact_id: &str,
    file: &LocalFile,
    bar: Option<&ProgressBar>,
) -> Result<(), CliError> {
    for round in 0..2 {
        let status = client
            .query_upload(proto::QueryUploadRequest {
                artifact_id: artifact_id.to_owned(),
                path: file.path.clone(),
            })
            .await?
            .into_inner();
        if status.complete {
            if let Some(bar) = bar {
                bar.inc(file.file.size);
            }
            return Ok(());
        }
        let start = status.committed_size;
        if let Some(bar) = bar {
            bar.inc(start);
        }
        let chunks = read_chunks(&file.local, file.file, start, artifact_id, &file.path)?;
        let progress = bar.cloned();
        let stream = tokio_stream::iter(chunks).map(move |chunk| {
            if let Some(bar) = &progress {
                bar.inc(chunk.data.len() as u64);
            }
            chunk
        });
        match client.upload_file(stream).await {
            Ok(answer) if answer.get_ref().complete => return Ok(()),
            Ok(answer) => {
                return Err(CliError::Local(format!(
                    "{}: the server committed {} of {} bytes but did not finish the file",
                    file.path,
                    answer.get_ref().committed_size,
                    file.file.size
                )));
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition && round == 0 => {
                // Another upload moved the committed size; ask again and go on from there.
                if let Some(bar) = bar {
                    bar.set_position(0);
                }
                continue;
            }
            Err(status) if interrupted(&status) => {
                return Err(CliError::Local(format!(
                    "uploading {}: {}; the server keeps what it committed, so running the \
                     same command again resumes the upload",
                    file.path,
                    berth_common::client::describe_status(&status)
                )));
            }
            Err(status) => return Err(status.into()),
        }
    }
    Err(CliError::Local(format!(
        "{}: the upload did not settle; run the command again",
        file.path
    )))
}

/// Whether an upload failed because the connection or the server went away (rather than
/// because the server refused it): then a rerun resumes it.
fn interrupted(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unknown
            | tonic::Code::Unavailable
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
    )
}

/// The messages of one upload stream from `start`. Read lazily would need a blocking
/// reader in the stream; reading here keeps at most one file's remainder in memory, so
/// large files are read in windows by [`ChunkReader`].
fn read_chunks(
    local: &Path,
    file: FileId,
    start: u64,
    artifact_id: &str,
    path: &str,
) -> Result<ChunkReader, CliError> {
    let mut handle = std::fs::File::open(local).map_err(|e| local_error(local, e))?;
    handle
        .seek(SeekFrom::Start(start))
        .map_err(|e| local_error(local, e))?;
    Ok(ChunkReader {
        handle,
        local: local.to_owned(),
        offset: start,
        size: file.size,
        artifact_id: artifact_id.to_owned(),
        path: path.to_owned(),
        done: false,
    })
}

/// Reads a file chunk by chunk as upload messages; the last one has `finish`. A read
/// error ends the stream early, which the server sees as an unfinished upload (resumable).
struct ChunkReader {
    handle: std::fs::File,
    local: PathBuf,
    offset: u64,
    size: u64,
    artifact_id: String,
    path: String,
    done: bool,
}

impl Iterator for ChunkReader {
    type Item = proto::UploadFileRequest;

    fn next(&mut self) -> Option<proto::UploadFileRequest> {
        if self.done {
            return None;
        }
        let want = usize::try_from((self.size - self.offset.min(self.size)).min(CHUNK as u64))
            .unwrap_or(CHUNK);
        let mut data = vec![0u8; want];
        if let Err(e) = self.handle.read_exact(&mut data) {
            tracing_note(&self.local, &e);
            self.done = true;
            return None;
        }
        let offset = self.offset;
        self.offset += want as u64;
        let finish = self.offset >= self.size;
        self.done = finish;
        Some(proto::UploadFileRequest {
            artifact_id: self.artifact_id.clone(),
            path: self.path.clone(),
            offset,
            data,
            finish,
        })
    }
}

fn tracing_note(local: &Path, e: &std::io::Error) {
    // The upload stops short and the server keeps what it committed; say why here.
    let _ = writeln!(
        std::io::stderr(),
        "[berth] reading {} failed: {e}; run the command again to resume",
        local.display()
    );
}

async fn download(
    server: &Server,
    printer: &mut Printer<'_>,
    id: String,
    only: Option<String>,
    output: PathBuf,
) -> Result<(), CliError> {
    if let Some(path) = &only {
        paths::validate_path(path).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let mut client: Artifacts = server.client().await?;
    let artifact = client
        .get_artifact(proto::GetArtifactRequest { id: id.clone() })
        .await?
        .into_inner();
    let files: Vec<&proto::ArtifactFile> = artifact
        .files
        .iter()
        .filter(|f| only.as_ref().is_none_or(|p| *p == f.path))
        .collect();
    if let Some(path) = &only
        && files.is_empty()
    {
        return Err(CliError::Local(format!(
            "artifact {id} has no file {path:?}"
        )));
    }
    if let Some(missing) = files.iter().find(|f| !f.uploaded) {
        return Err(CliError::Local(format!(
            "artifact {id} is not complete: {} is not uploaded yet",
            missing.path
        )));
    }
    std::fs::create_dir_all(&output).map_err(|e| local_error(&output, e))?;
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        let dest = paths::join_beneath(&output, &file.path)
            .map_err(|e| CliError::Local(format!("the server sent a bad path: {e}")))?;
        make_parents(&output, &file.path)?;
        if !file.symlink.is_empty() {
            if symlink_stays_inside(&file.path, &file.symlink) {
                let _ = std::fs::remove_file(&dest);
                std::os::unix::fs::symlink(&file.symlink, &dest)
                    .map_err(|e| local_error(&dest, e))?;
                written.push(file.path.clone());
            } else {
                skipped.push(file.path.clone());
                printer.note(&format!(
                    "[berth] not creating symlink {} -> {}: it points outside the download\n",
                    file.path, file.symlink
                ))?;
            }
            continue;
        }
        let expected = FileId::from_hex(&file.sha256, file.size).ok_or_else(|| {
            CliError::Local(format!("the server sent a bad SHA-256 for {}", file.path))
        })?;
        fetch(&mut client, &id, file, expected, &dest).await?;
        written.push(file.path.clone());
    }
    printer.show(&DownloadedView {
        artifact: id,
        directory: output.display().to_string(),
        files: written,
        skipped,
    })
}

/// Creates the directories above `path` under `root`, refusing any that exists as
/// something other than a real directory (a symlink there could lead outside).
fn make_parents(root: &Path, path: &str) -> Result<(), CliError> {
    let mut dir = root.to_path_buf();
    let components: Vec<&str> = path.split('/').collect();
    for component in &components[..components.len().saturating_sub(1)] {
        dir.push(component);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(local_error(
                    &dir,
                    "exists and is not a directory; refusing to write through it",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(|e| local_error(&dir, e))?;
            }
            Err(e) => return Err(local_error(&dir, e)),
        }
    }
    Ok(())
}

/// Whether a symlink at `path` with `target` resolves, lexically, inside the download.
pub(crate) fn symlink_stays_inside(path: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') {
        return false;
    }
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            other => depth.push(other),
        }
    }
    true
}

async fn fetch(
    client: &mut Artifacts,
    id: &str,
    file: &proto::ArtifactFile,
    expected: FileId,
    dest: &Path,
) -> Result<(), CliError> {
    let partial = dest.with_file_name(format!(
        ".{}.berth-partial",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut out = std::fs::File::create(&partial).map_err(|e| local_error(&partial, e))?;
    let mut hasher = Hasher::new();
    let mut stream = client
        .read_file(proto::ReadFileRequest {
            artifact_id: id.to_owned(),
            path: file.path.clone(),
            offset: 0,
            limit: 0,
        })
        .await?
        .into_inner();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        hasher.update(&piece.data);
        out.write_all(&piece.data)
            .map_err(|e| local_error(&partial, e))?;
    }
    out.sync_all().map_err(|e| local_error(&partial, e))?;
    drop(out);
    let got = hasher.finish();
    if got != expected {
        let _ = std::fs::remove_file(&partial);
        return Err(CliError::Local(format!(
            "{}: downloaded {got}, expected {expected}; nothing was written",
            file.path
        )));
    }
    // Permission bits only: never set-id or sticky bits from an artifact.
    let mode = if file.mode == 0 {
        0o644
    } else {
        file.mode & 0o777
    };
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))
        .map_err(|e| local_error(&partial, e))?;
    std::fs::rename(&partial, dest).map_err(|e| local_error(dest, e))
}

impl super::Service for Artifacts {
    fn new(channel: tonic::transport::Channel, auth: berth_common::client::BearerAuth) -> Self {
        ArtifactServiceClient::with_interceptor(channel, auth)
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests may unwrap")]

    use super::*;

    #[test]
    fn scanning_records_symlinks_and_refuses_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dist");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), b"hello").unwrap();
        std::fs::write(root.join("sub/b.bin"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let files = scan(std::slice::from_ref(&root)).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "link", "sub/b.bin"]);
        assert_eq!(files[0].file, FileId::of(b"hello"));
        assert_eq!(files[1].symlink.as_deref(), Some("/etc/passwd"));
        assert_eq!(files[2].file, FileId::EMPTY);

        let fifo = dir.path().join("fifo");
        nix_mkfifo(&fifo);
        let err = scan(&[fifo]).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    fn nix_mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn symlinks_are_recreated_only_when_they_stay_inside() {
        assert!(symlink_stays_inside("a/link", "b"));
        assert!(symlink_stays_inside("a/link", "../c"));
        assert!(!symlink_stays_inside("a/link", "../../c"));
        assert!(!symlink_stays_inside("link", "/etc/passwd"));
        assert!(!symlink_stays_inside("link", ".."));
        assert!(!symlink_stays_inside("link", ""));
    }
}
