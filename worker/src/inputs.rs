//! An attempt's inputs: the worker's read-only cache of input files, and each attempt's
//! input dirs laid out from it and bind-mounted read-only at `/in/<mount>`.
//!
//! The cache holds files by identity (`<files dir>/cache/<aa>/<sha256>-<size>`). A file
//! is fetched once per worker with `ArtifactService.ReadFile` (the server lets a worker
//! read only the inputs of an attempt it holds), written to a temporary file, checked
//! against its SHA-256 and size, made read-only (0444) and renamed into place, so a file
//! in the cache is always whole and right. Nothing ever changes the mode of a cached
//! file: the input dirs hold hard links to them, and a chmod through a link would change
//! every attempt's copy. A file whose mode asks for execute bits is copied instead, and
//! the copy gets its mode.
//!
//! Every path of an input goes through `berth_files::paths` (the one validator) and is
//! joined with `join_beneath`; a symlink is recreated only when its target, read against
//! the link's own directory, stays inside the input (others are left out, with a note in
//! the attempt's log). The dirs live in `<files dir>/attempts/<request>-<attempt>/` and
//! are removed when the attempt is over ([`AttemptDirs::remove`]).
//!
//! What it must not touch: the container (the executor mounts what [`AttemptDirs`] lists)
//! and the outputs (see `outputs`).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use berth_common::client::{BearerAuth, describe_status};
use berth_common::proto::artifact_service_client::ArtifactServiceClient;
use berth_common::proto::{self, AssignedInput};
use berth_files::digest::{FileId, Hasher};
use berth_files::paths::{join_beneath, validate_path, validate_paths};
use futures::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The worker's client of the artifact service.
pub type ArtifactClient = ArtifactServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Where inputs go in the container.
pub const INPUT_ROOT: &str = "/in";

/// The host dirs of one attempt and what to mount from them.
#[derive(Debug)]
pub struct AttemptDirs {
    /// `<files dir>/attempts/<request>-<attempt>`.
    pub root: PathBuf,
    /// (host dir, container path, read-only) to bind-mount.
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// The host dir mounted as the working dir, when outputs are collected.
    pub work: Option<PathBuf>,
    /// What the attempt's log should say about the inputs (symlinks left out).
    pub notes: Vec<String>,
}

impl AttemptDirs {
    /// Removes the attempt's dirs (inputs and working dir). The cache is untouched: the
    /// input dirs hold links to its files, and unlinking changes nothing of them.
    pub async fn remove(&self) {
        let root = self.root.clone();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&root)).await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(e)) => {
                tracing::warn!(dir = %self.root.display(), error = %e, "cannot remove an attempt's dirs")
            }
            Err(e) => tracing::warn!(error = %e, "removing an attempt's dirs failed"),
        }
    }
}

/// The files dir's parts.
#[derive(Clone, Debug)]
pub struct FilesDir {
    cache: PathBuf,
    attempts: PathBuf,
}

impl FilesDir {
    /// Creates (if needed) `dir`'s cache and attempts dirs. `dir` is made absolute, as
    /// bind mounts need.
    pub fn open(dir: &Path) -> std::io::Result<FilesDir> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let cache = dir.join("cache");
        let attempts = dir.join("attempts");
        // A fresh worker process runs nothing, so the dirs of attempts and the half-fetched
        // files an earlier run left are leftovers (the cache itself is kept: its files are
        // whole and checked).
        for leftover in [&attempts, &cache.join("tmp")] {
            match std::fs::remove_dir_all(leftover) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for d in [&cache, &attempts, &cache.join("tmp")] {
            std::fs::create_dir_all(d)?;
        }
        // Only the worker reaches into it: the working dirs below are open to any uid in
        // the container, so the way to them must not be.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(FilesDir { cache, attempts })
    }

    /// Where the dirs of the attempt `name` live.
    pub fn attempt_root(&self, name: &str) -> PathBuf {
        self.attempts.join(name)
    }

    fn cached(&self, id: &FileId) -> PathBuf {
        let hex = id.hex();
        self.cache
            .join(&hex[..2])
            .join(format!("{hex}-{}", id.size))
    }

    /// Lays out an attempt's dirs: its inputs fetched (once per worker) and linked into
    /// place, and, when `with_work_dir`, an empty working dir for outputs. The container
    /// paths: inputs at `/in/<mount>` (read-only), the working dir at `work_dir`.
    pub async fn prepare(
        &self,
        client: &ArtifactClient,
        name: &str,
        inputs: &[AssignedInput],
        work_dir: Option<&str>,
    ) -> Result<AttemptDirs, String> {
        let root = self.attempt_root(name);
        // A leftover of an earlier run of the same attempt (a crash) goes first.
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let mut dirs = AttemptDirs {
            root: root.clone(),
            mounts: Vec::new(),
            work: None,
            notes: Vec::new(),
        };
        for (i, input) in inputs.iter().enumerate() {
            validate_path(&input.mount)
                .map_err(|e| format!("input mount {:?}: {e}", input.mount))?;
            let dir = root.join("in").join(i.to_string());
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            self.lay_out(client, input, &dir, &mut dirs.notes).await?;
            dirs.mounts
                .push((dir, format!("{INPUT_ROOT}/{}", input.mount), true));
        }
        if let Some(work_dir) = work_dir {
            let work = root.join("work");
            std::fs::create_dir_all(&work)
                .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
            // The job may run as any uid.
            std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| format!("cannot open up {}: {e}", work.display()))?;
            dirs.mounts.push((work.clone(), work_dir.to_owned(), false));
            dirs.work = Some(work);
        }
        Ok(dirs)
    }

    /// Fetches what the cache lacks of `input` and links its files into `dir`.
    async fn lay_out(
        &self,
        client: &ArtifactClient,
        input: &AssignedInput,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        let what = |path: &str| format!("input {:?}, file {path:?}", input.mount);
        validate_paths(input.files.iter().map(|f| f.path.as_str()))
            .map_err(|e| format!("input {:?}: {e}", input.mount))?;
        // Regular files first, so a symlink is made only beside files already there.
        let (links, files): (Vec<_>, Vec<_>) =
            input.files.iter().partition(|f| !f.symlink.is_empty());
        for file in files {
            let id = FileId::from_hex(&file.sha256, file.size)
                .ok_or_else(|| format!("{}: bad SHA-256 {:?}", what(&file.path), file.sha256))?;
            let cached = self.cached(&id);
            if !cached.exists() {
                self.fetch(client, &input.artifact_id, &file.path, &id, &cached)
                    .await
                    .map_err(|e| format!("{}: {e}", what(&file.path)))?;
            }
            let target = join_beneath(dir, &file.path).map_err(|e| format!("{e}"))?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: cannot create its dir: {e}", what(&file.path)))?;
            }
            place(&cached, &target, file.mode)
                .map_err(|e| format!("{}: cannot lay it out: {e}", what(&file.path)))?;
        }
        for link in links {
            let target = join_beneath(dir, &link.path).map_err(|e| format!("{e}"))?;
            if !stays_inside(&link.path, &link.symlink) {
                notes.push(format!(
                    "input {:?}: symlink {:?} -> {:?} points outside the input and was left out",
                    input.mount, link.path, link.symlink
                ));
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: cannot create its dir: {e}", what(&link.path)))?;
            }
            std::os::unix::fs::symlink(&link.symlink, &target)
                .map_err(|e| format!("{}: cannot make the symlink: {e}", what(&link.path)))?;
        }
        Ok(())
    }

    /// Reads one file from the server into the cache, checked.
    async fn fetch(
        &self,
        client: &ArtifactClient,
        artifact_id: &str,
        path: &str,
        id: &FileId,
        cached: &Path,
    ) -> Result<(), String> {
        let tmp = self
            .cache
            .join("tmp")
            .join(format!("{}-{}", id.hex(), rand::random::<u64>()));
        let result = self
            .fetch_to(client, artifact_id, path, id, cached, &tmp)
            .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    async fn fetch_to(
        &self,
        client: &ArtifactClient,
        artifact_id: &str,
        path: &str,
        id: &FileId,
        cached: &Path,
        tmp: &Path,
    ) -> Result<(), String> {
        let mut out = std::fs::File::create(tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let mut hasher = Hasher::new();
        if id.size > 0 {
            let mut stream = client
                .clone()
                .read_file(proto::ReadFileRequest {
                    artifact_id: artifact_id.to_owned(),
                    path: path.to_owned(),
                    offset: 0,
                    limit: 0,
                })
                .await
                .map_err(|s| format!("ReadFile refused: {}", describe_status(&s)))?
                .into_inner();
            while let Some(piece) = stream.next().await {
                let piece =
                    piece.map_err(|s| format!("ReadFile failed: {}", describe_status(&s)))?;
                if hasher.len() + piece.data.len() as u64 > id.size {
                    return Err(format!(
                        "the server sent more than the file's {} bytes",
                        id.size
                    ));
                }
                hasher.update(&piece.data);
                out.write_all(&piece.data)
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            }
        }
        let got = hasher.finish();
        if got != *id {
            return Err(format!(
                "the bytes read have SHA-256 {} and {} bytes; the artifact says {} and {} bytes",
                got.hex(),
                got.size,
                id.hex(),
                id.size
            ));
        }
        out.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", tmp.display()))?;
        drop(out);
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o444))
            .map_err(|e| format!("cannot make {} read-only: {e}", tmp.display()))?;
        if let Some(parent) = cached.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        // Another attempt may have put the same file there meanwhile: the same bytes.
        std::fs::rename(tmp, cached).map_err(|e| format!("cannot move it into the cache: {e}"))?;
        Ok(())
    }
}

/// Puts the cached file at `target`: a hard link when the file needs no execute bits
/// (the link shares the cache's 0444 inode, which nobody changes), else a copy with
/// its own mode. Copies also when linking fails (another filesystem).
fn place(cached: &Path, target: &Path, mode: u32) -> std::io::Result<()> {
    if mode & 0o111 == 0 && std::fs::hard_link(cached, target).is_ok() {
        return Ok(());
    }
    std::fs::copy(cached, target)?;
    // A copy of our own: its mode is the artifact's, without set-id or sticky bits.
    std::fs::set_permissions(
        target,
        std::fs::Permissions::from_mode((mode & 0o777) | 0o444),
    )
}

/// Whether a symlink at `path` (relative to the input's root) with `target` resolves,
/// lexically, to somewhere inside the root. Absolute targets never do.
pub fn stays_inside(path: &str, target: &str) -> bool {
    if target.is_empty() || target.contains('\0') {
        return false;
    }
    let target = Path::new(target);
    if target.is_absolute() {
        return false;
    }
    // Start from the link's own directory, as the kernel does.
    let mut depth: Vec<&std::ffi::OsStr> = Path::new(path)
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(n) => depth.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_may_point_only_inside_its_input() {
        assert!(stays_inside("a/link", "b"));
        assert!(stays_inside("a/link", "../c"));
        assert!(stays_inside("a/b/link", "../../c"));
        assert!(!stays_inside("a/b/link", "../../../c"));
        assert!(!stays_inside("link", "../x"));
        assert!(!stays_inside("link", "/etc/passwd"));
        assert!(!stays_inside("a/link", "b/../../../x"));
        assert!(!stays_inside("link", ""));
    }

    #[test]
    fn a_placed_file_without_execute_bits_shares_the_read_only_cache_file() {
        #![expect(clippy::unwrap_used, reason = "tests may unwrap")]
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("cached");
        std::fs::write(&cached, b"x").unwrap();
        std::fs::set_permissions(&cached, std::fs::Permissions::from_mode(0o444)).unwrap();
        place(&cached, &dir.path().join("plain"), 0o644).unwrap();
        place(&cached, &dir.path().join("tool"), 0o755).unwrap();
        let meta = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap();
        assert_eq!(meta("plain").ino(), meta("cached").ino());
        assert_ne!(meta("tool").ino(), meta("cached").ino());
        assert_eq!(meta("tool").mode() & 0o777, 0o755);
        // The cache file's mode never changed.
        assert_eq!(meta("cached").mode() & 0o777, 0o444);
    }
}
