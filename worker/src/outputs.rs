//! An attempt's outputs: collecting the declared paths from the attempt's working dir
//! (a fresh host dir the container had as its working directory) into a new artifact,
//! after the container has exited and before the attempt is reported finished.
//!
//! The walk never follows a symlink and never lets the job reach outside its dir:
//! - every entry is looked at with `symlink_metadata` (lstat); a symlink is recorded as a
//!   symlink with its target as read, never followed, whatever it points at;
//! - a regular file is opened with `O_NOFOLLOW` and must be the same inode the walk saw,
//!   with one link (a hard link could make a file from elsewhere look like the job's);
//! - devices, FIFOs and sockets are refused, as are hard links;
//! - paths must pass `berth_files::paths` (the one validator) and be UTF-8.
//!
//! Entries no output pattern selects are passed over without being opened, so only what
//! was declared can fail the collection. An output pattern selects an entry when it
//! matches its path or the path of a directory above it (`dist` collects `dist/a/b`).
//!
//! Bytes go straight from the file into `ArtifactService.UploadFile` in chunks (the
//! server lets a worker write only the outputs of an attempt it holds); an interrupted
//! upload resumes from `QueryUpload`'s committed size. Nothing is ever unpacked onto a
//! disk.
//!
//! What it must not touch: the container, the inputs, the attempt's report (the caller
//! puts the artifact id or the error into Finished).

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::client::describe_status;
use berth_common::proto::{self, OutputWhen};
use berth_files::digest::{FileId, Hasher};
use berth_files::paths::{validate_path, validate_paths};
use futures::StreamExt;
use globset::{GlobSet, GlobSetBuilder};

use crate::inputs::ArtifactClient;

/// Bytes per UploadFile message (the server takes up to 4 MiB).
const CHUNK: usize = 1024 * 1024;
/// Files uploaded at once.
const PARALLEL_UPLOADS: usize = 4;
/// Upload attempts per file before collecting fails.
const UPLOAD_TRIES: u32 = 5;
/// Entries the walk looks at before it gives up (a job that made millions of files).
const MAX_ENTRIES: usize = 1_000_000;

/// One collected entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collected {
    /// Relative to the working dir.
    pub path: String,
    /// What it is.
    pub kind: Entry,
}

/// A collected entry's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file: its identity and mode.
    File { id: FileId, mode: u32 },
    /// A symlink with its target, as read.
    Symlink(String),
}

/// Which patterns apply after an exit: `when: success` ones only after exit code 0.
pub fn patterns_for(outputs: &[proto::Output], succeeded: bool) -> Vec<String> {
    outputs
        .iter()
        .filter(|o| succeeded || o.when == OutputWhen::Always as i32)
        .map(|o| o.path.clone())
        .collect()
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("output {pattern:?} is not a valid glob: {e}"))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| format!("the output globs do not compile: {e}"))
}

/// Walks `root` (see the module docs) and returns what `patterns` select, sorted by path.
/// Hashes every selected regular file.
pub fn collect(root: &Path, patterns: &[String]) -> Result<Vec<Collected>, String> {
    let set = glob_set(patterns)?;
    let mut found = Vec::new();
    let mut seen = 0usize;
    walk(root, "", false, &set, &mut found, &mut seen)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    validate_paths(found.iter().map(|c| c.path.as_str())).map_err(|e| e.to_string())?;
    Ok(found)
}

fn walk(
    dir: &Path,
    prefix: &str,
    selected: bool,
    set: &GlobSet,
    found: &mut Vec<Collected>,
    seen: &mut usize,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {prefix:?}: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {prefix:?}: {e}"))?;
        *seen += 1;
        if *seen > MAX_ENTRIES {
            return Err(format!(
                "the working dir holds more than {MAX_ENTRIES} entries; collect less"
            ));
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // Only an error when selected; the name cannot be matched as text.
            if selected {
                return Err(format!(
                    "{prefix}/{:?} is not a UTF-8 name",
                    entry.file_name()
                ));
            }
            continue;
        };
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let host = entry.path();
        // lstat: a symlink is looked at, never through.
        let meta = std::fs::symlink_metadata(&host)
            .map_err(|e| format!("cannot look at {path:?}: {e}"))?;
        let chosen = selected || set.is_match(&path);
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(&host, &path, chosen, set, found, seen)?;
            continue;
        }
        if !chosen {
            continue;
        }
        validate_path(&path).map_err(|e| format!("output {e}"))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&host)
                .map_err(|e| format!("cannot read the symlink {path:?}: {e}"))?;
            let target = target
                .to_str()
                .ok_or_else(|| format!("the symlink {path:?} has a target that is not UTF-8"))?;
            found.push(Collected {
                path,
                kind: Entry::Symlink(target.to_owned()),
            });
        } else if kind.is_file() {
            if meta.nlink() > 1 {
                return Err(format!(
                    "{path:?} is a hard link ({} links); outputs must be files of their own",
                    meta.nlink()
                ));
            }
            let id = hash(&host, &meta).map_err(|e| format!("{path:?}: {e}"))?;
            found.push(Collected {
                path,
                kind: Entry::File {
                    id,
                    mode: meta.mode() & 0o7777,
                },
            });
        } else {
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_socket() {
                "a socket"
            } else if kind.is_block_device() || kind.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(format!(
                "{path:?} is {what}; outputs may be files, directories and symlinks"
            ));
        }
    }
    Ok(())
}

/// Opens `host` without following a symlink and checks it is the file the walk saw.
fn open_checked(host: &Path, seen: &Metadata) -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(host)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let now = file
        .metadata()
        .map_err(|e| format!("cannot look at it: {e}"))?;
    if !now.file_type().is_file()
        || now.ino() != seen.ino()
        || now.dev() != seen.dev()
        || now.nlink() > 1
    {
        return Err("it changed while it was collected".into());
    }
    Ok(file)
}

fn hash(host: &Path, seen: &Metadata) -> Result<FileId, String> {
    let mut file = open_checked(host, seen)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Creates the outputs' artifact for the attempt and uploads the files the store lacks;
/// returns the artifact's id once it is complete.
pub async fn upload(
    client: &ArtifactClient,
    root: &Path,
    collected: &[Collected],
    work_request_id: &str,
    attempt: u32,
    category: &str,
) -> Result<String, String> {
    let files = collected
        .iter()
        .map(|c| match &c.kind {
            Entry::File { id, mode } => proto::ArtifactFile {
                path: c.path.clone(),
                sha256: id.hex(),
                size: id.size,
                mode: *mode,
                symlink: String::new(),
                uploaded: false,
            },
            Entry::Symlink(target) => proto::ArtifactFile {
                path: c.path.clone(),
                sha256: String::new(),
                size: 0,
                mode: 0o777,
                symlink: target.clone(),
                uploaded: false,
            },
        })
        .collect();
    let created = client
        .clone()
        .create_artifact(proto::CreateArtifactRequest {
            workspace: String::new(),
            category: category.to_owned(),
            data: String::new(),
            files,
            expiry: None,
            work_request_id: work_request_id.to_owned(),
            attempt,
        })
        .await
        .map_err(|s| format!("CreateArtifact refused: {}", describe_status(&s)))?
        .into_inner();
    let artifact = created
        .artifact
        .ok_or("CreateArtifact answered no artifact")?;
    let by_path: std::collections::HashMap<&str, &Collected> =
        collected.iter().map(|c| (c.path.as_str(), c)).collect();
    let mut uploads = Vec::with_capacity(created.missing.len());
    for path in &created.missing {
        let Some(entry) = by_path.get(path.as_str()) else {
            return Err(format!(
                "the server asked for {path:?}, which was not collected"
            ));
        };
        let Entry::File { id, .. } = &entry.kind else {
            return Err(format!(
                "the server asked for the bytes of the symlink {path:?}"
            ));
        };
        let host: PathBuf =
            berth_files::paths::join_beneath(root, path).map_err(|e| e.to_string())?;
        uploads.push((path.clone(), host, *id));
    }
    // A few files at a time: many small outputs cost round trips more than bandwidth.
    let jobs = uploads.into_iter().map(|(path, host, id)| {
        let client = client.clone();
        let artifact_id = artifact.id.clone();
        async move { upload_file(&client, &artifact_id, &path, &host, &id).await }
    });
    let mut running = futures::stream::iter(jobs).buffer_unordered(PARALLEL_UPLOADS);
    while let Some(done) = running.next().await {
        done?;
    }
    drop(running);
    Ok(artifact.id)
}

/// Uploads one file, resuming from the committed size after a failed stream.
async fn upload_file(
    client: &ArtifactClient,
    artifact_id: &str,
    path: &str,
    host: &Path,
    id: &FileId,
) -> Result<(), String> {
    let seen = std::fs::symlink_metadata(host).map_err(|e| format!("{path:?}: {e}"))?;
    let mut offset = 0u64;
    let mut last = String::new();
    for round in 0..UPLOAD_TRIES {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(200 << round)).await;
            match client
                .clone()
                .query_upload(proto::QueryUploadRequest {
                    artifact_id: artifact_id.to_owned(),
                    path: path.to_owned(),
                })
                .await
            {
                Ok(status) => {
                    let status = status.into_inner();
                    if status.complete {
                        return Ok(());
                    }
                    offset = status.committed_size;
                }
                Err(s) => {
                    last = describe_status(&s);
                    continue;
                }
            }
        }
        let file = open_checked(host, &seen).map_err(|e| format!("{path:?}: {e}"))?;
        let chunks = chunks(
            file,
            artifact_id.to_owned(),
            path.to_owned(),
            offset,
            id.size,
        )
        .map_err(|e| format!("{path:?}: {e}"))?;
        match client.clone().upload_file(chunks).await {
            Ok(answer) if answer.get_ref().complete => return Ok(()),
            Ok(answer) => {
                last = format!(
                    "the server committed {} of {} bytes but did not complete the file",
                    answer.get_ref().committed_size,
                    id.size
                );
            }
            Err(s) => {
                // A mismatch is not worth repeating: the bytes changed under us.
                if s.code() == tonic::Code::InvalidArgument {
                    return Err(format!(
                        "uploading {path:?} was refused: {}",
                        describe_status(&s)
                    ));
                }
                last = describe_status(&s);
            }
        }
    }
    Err(format!(
        "uploading {path:?} failed {UPLOAD_TRIES} times; last: {last}"
    ))
}

/// The file from `offset` as a stream of upload messages, read lazily in a blocking task
/// (at most a few chunks ahead), the last one with `finish`.
fn chunks(
    mut file: File,
    artifact_id: String,
    path: String,
    offset: u64,
    size: u64,
) -> std::io::Result<impl futures::Stream<Item = proto::UploadFileRequest>> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::UploadFileRequest>(4);
    tokio::task::spawn_blocking(move || {
        let mut at = offset;
        loop {
            let want = usize::try_from((size - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            let mut data = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match file.read(&mut data[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    // The stream ends short; the server's check at finish says so.
                    Err(_) => break,
                }
            }
            data.truncate(filled);
            let finish = filled < CHUNK || at + filled as u64 >= size;
            let first = at == offset;
            let message = proto::UploadFileRequest {
                artifact_id: if first {
                    artifact_id.clone()
                } else {
                    String::new()
                },
                path: if first { path.clone() } else { String::new() },
                offset: at,
                data,
                finish,
            };
            at += filled as u64;
            if tx.blocking_send(message).is_err() || finish {
                break;
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests may unwrap")]
    use super::*;

    fn collect_all(root: &Path, patterns: &[&str]) -> Result<Vec<Collected>, String> {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        collect(root, &patterns)
    }

    #[test]
    fn files_under_a_selected_directory_are_collected_with_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dist/sub")).unwrap();
        std::fs::write(dir.path().join("dist/a.txt"), b"a").unwrap();
        std::fs::write(dir.path().join("dist/sub/b.txt"), b"bb").unwrap();
        std::fs::write(dir.path().join("other.txt"), b"c").unwrap();
        let found = collect_all(dir.path(), &["dist"]).unwrap();
        let paths: Vec<&str> = found.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["dist/a.txt", "dist/sub/b.txt"]);
        let mode = std::fs::metadata(dir.path().join("dist/sub/b.txt"))
            .unwrap()
            .mode()
            & 0o7777;
        assert_eq!(
            found[1].kind,
            Entry::File {
                id: FileId::of(b"bb"),
                mode
            }
        );
    }

    #[test]
    fn a_glob_star_does_not_cross_directories_but_a_double_star_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/x.deb"), b"1").unwrap();
        std::fs::write(dir.path().join("a/b/y.deb"), b"2").unwrap();
        let one: Vec<String> = collect_all(dir.path(), &["a/*.deb"])
            .unwrap()
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(one, ["a/x.deb"]);
        let all: Vec<String> = collect_all(dir.path(), &["**/*.deb"])
            .unwrap()
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(all, ["a/b/y.deb", "a/x.deb"]);
    }

    #[test]
    fn symlinks_are_recorded_as_symlinks_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", out.join("passwd")).unwrap();
        std::os::unix::fs::symlink("../../x", out.join("up")).unwrap();
        // A symlink to a directory outside: recorded, its contents never walked.
        std::os::unix::fs::symlink("/etc", out.join("etc")).unwrap();
        let found = collect_all(&out, &["**"]).unwrap();
        assert_eq!(
            found,
            vec![
                Collected {
                    path: "etc".into(),
                    kind: Entry::Symlink("/etc".into())
                },
                Collected {
                    path: "passwd".into(),
                    kind: Entry::Symlink("/etc/passwd".into())
                },
                Collected {
                    path: "up".into(),
                    kind: Entry::Symlink("../../x".into())
                },
            ]
        );
    }

    #[test]
    fn a_hard_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::fs::hard_link(dir.path().join("secret"), out.join("copy")).unwrap();
        let err = collect_all(&out, &["copy"]).unwrap_err();
        assert!(err.contains("hard link"), "{err}");
    }

    #[test]
    fn a_fifo_is_refused_but_only_when_selected() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        std::fs::write(dir.path().join("ok"), b"ok").unwrap();
        assert_eq!(collect_all(dir.path(), &["ok"]).unwrap().len(), 1);
        let err = collect_all(dir.path(), &["*"]).unwrap_err();
        assert!(err.contains("FIFO"), "{err}");
    }

    #[test]
    fn only_the_patterns_for_the_exit_apply() {
        let outputs = vec![
            proto::Output {
                path: "a".into(),
                when: OutputWhen::Success as i32,
            },
            proto::Output {
                path: "b".into(),
                when: OutputWhen::Always as i32,
            },
        ];
        assert_eq!(patterns_for(&outputs, true), ["a", "b"]);
        assert_eq!(patterns_for(&outputs, false), ["b"]);
    }
}
