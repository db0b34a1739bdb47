//! Finding the PostgreSQL server binaries the system already has.
//!
//! Berth ships no PostgreSQL of its own; it uses whatever version from 13 up the package
//! manager installed. Packagers put the server binaries in different places (Debian keeps
//! them off `PATH` under `/usr/lib/postgresql/<version>/bin`, Homebrew under
//! `opt/postgresql@<version>/bin`), so they are searched for in the usual places, and
//! `BERTH_PG_BIN_DIR` overrides the search when a machine has several versions or an
//! unusual layout.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::EmbeddedPgError;

/// Environment variable naming the directory that holds `initdb`, `pg_ctl` and `postgres`.
pub const BIN_DIR_ENV: &str = "BERTH_PG_BIN_DIR";

const REQUIRED_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// An explicit directory, else `BERTH_PG_BIN_DIR`, is used as given (and must hold all
/// three). Otherwise the first complete directory among: `pg_config --bindir`; the directory
/// of `initdb` on `PATH`; the highest-numbered `/usr/lib/postgresql/*/bin`;
/// `/usr/local/pgsql/bin`; Homebrew's `/opt/homebrew/opt/postgresql*/bin` and
/// `/usr/local/opt/postgresql*/bin`, highest version first.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedPgError> {
    if let Some(dir) = explicit {
        // Callers fill `explicit` from their own settings, which usually read the
        // environment variable too (the server's flag does); any of them may hold the bad
        // value, so the message names both.
        return require_binaries(
            dir,
            "the PostgreSQL binary directory (BERTH_PG_BIN_DIR, or the option that set it)",
        );
    }
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|dir| !dir.is_empty()) {
        return require_binaries(Path::new(&dir), BIN_DIR_ENV);
    }
    discovered_bin_dirs()
        .into_iter()
        .find(|dir| missing_binaries(dir).is_empty())
        .ok_or(EmbeddedPgError::BinariesNotFound)
}

fn require_binaries(dir: &Path, origin: &'static str) -> Result<PathBuf, EmbeddedPgError> {
    let missing = missing_binaries(dir);
    if missing.is_empty() {
        Ok(dir.to_owned())
    } else {
        Err(EmbeddedPgError::BinariesMissing {
            dir: dir.to_owned(),
            origin,
            missing: missing.join(", "),
        })
    }
}

fn missing_binaries(dir: &Path) -> Vec<&'static str> {
    REQUIRED_BINARIES
        .into_iter()
        .filter(|name| !is_executable(&dir.join(name)))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|metadata| metadata.is_file() && metadata.mode() & 0o111 != 0)
}

/// Candidate directories in search order; they are checked for completeness by the caller.
fn discovered_bin_dirs() -> Vec<PathBuf> {
    let mut candidates = Vec::new();

    // On Debian, pg_config may come from libpq-dev without a server, hence the check later.
    if let Ok(output) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        && output.status.success()
    {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if !is_executable(&initdb) {
                continue;
            }
            candidates.push(dir);
            // A symlinked initdb (e.g. /usr/local/bin/initdb) points at the real bin dir.
            if let Some(real_dir) = initdb
                .canonicalize()
                .ok()
                .and_then(|real| real.parent().map(Path::to_owned))
            {
                candidates.push(real_dir);
            }
        }
    }

    candidates.extend(versioned_bin_dirs(Path::new("/usr/lib/postgresql"), ""));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates.extend(versioned_bin_dirs(
        Path::new("/opt/homebrew/opt"),
        "postgresql",
    ));
    candidates.extend(versioned_bin_dirs(
        Path::new("/usr/local/opt"),
        "postgresql",
    ));
    candidates
}

/// `<base>/<prefix>[@]<version>/bin` for every entry of `base` named like that, highest
/// version first; an entry without a version (Homebrew's plain `postgresql`) comes last.
fn versioned_bin_dirs(base: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let rest = name.to_str()?.strip_prefix(prefix)?;
            let version = rest.strip_prefix('@').unwrap_or(rest);
            let version = if version.is_empty() && !prefix.is_empty() {
                Vec::new()
            } else {
                version
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u32>>>()?
            };
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    versioned.into_iter().map(|(_, dir)| dir).collect()
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_found_on_this_machine() {
        let dir = find_bin_dir(None).unwrap_or_else(|err| panic!("{err}"));
        assert!(missing_binaries(&dir).is_empty());
    }

    #[test]
    fn versioned_dirs_come_highest_version_first() {
        let base = tempfile::tempdir().unwrap();
        for name in [
            "postgresql@13",
            "postgresql",
            "postgresql@16.2",
            "postgresql@9.6",
            "x",
        ] {
            fs::create_dir(base.path().join(name)).unwrap();
        }
        let names: Vec<String> = versioned_bin_dirs(base.path(), "postgresql")
            .iter()
            .filter_map(|dir| dir.parent()?.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            [
                "postgresql@16.2",
                "postgresql@13",
                "postgresql@9.6",
                "postgresql"
            ]
        );
    }
}
