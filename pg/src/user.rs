//! Who the cluster runs as.
//!
//! `initdb` and `postgres` refuse to run as root, and Berth often does run as root (in
//! containers, in CI). Rather than failing there, every PostgreSQL command then runs as an
//! unprivileged user, `postgres` unless the caller names another. That user must be able to
//! walk down to the cluster's directory, which is checked here up front so that the error
//! names the directory in the way instead of leaving it to a line in `postgres.log`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

use crate::error::{EmbeddedPgError, io_error};

/// The user PostgreSQL runs as when the caller is root and names no other user.
const DEFAULT_RUN_AS: &str = "postgres";

/// The unprivileged user PostgreSQL runs as when the caller is root.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: Uid,
    pub(crate) gid: Gid,
    pub(crate) home: PathBuf,
}

/// Who PostgreSQL runs as: `None` means as ourselves, which is only possible when we are not
/// root.
pub(crate) fn resolve_run_as(requested: Option<&str>) -> Result<Option<RunAs>, EmbeddedPgError> {
    let euid = Uid::effective();
    let name = requested.unwrap_or(DEFAULT_RUN_AS);
    if !euid.is_root() && requested.is_none() {
        return Ok(None);
    }
    let user = User::from_name(name)
        .map_err(|source| EmbeddedPgError::UserLookup {
            user: name.to_owned(),
            source,
        })?
        .ok_or_else(|| EmbeddedPgError::NoSuchUser {
            user: name.to_owned(),
        })?;
    if !euid.is_root() {
        // Naming ourselves is harmless; naming anyone else needs a uid switch.
        return if user.uid == euid {
            Ok(None)
        } else {
            Err(EmbeddedPgError::RunAsNeedsRoot {
                user: name.to_owned(),
            })
        };
    }
    if user.uid.is_root() {
        return Err(EmbeddedPgError::RunAsRoot {
            user: name.to_owned(),
        });
    }
    Ok(Some(RunAs {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        home: user.dir,
    }))
}

/// Checks that `user` may enter every parent of `dir` (`dir` itself will be theirs).
/// Only the owner/group/other bits are considered, not ACLs.
pub(crate) fn check_reachable(dir: &Path, user: &RunAs) -> Result<(), EmbeddedPgError> {
    for parent in dir.ancestors().skip(1) {
        let metadata = fs::metadata(parent).map_err(io_error("inspect", parent))?;
        let search_bit = if metadata.uid() == user.uid.as_raw() {
            0o100
        } else if metadata.gid() == user.gid.as_raw() {
            0o010
        } else {
            0o001
        };
        if metadata.mode() & search_bit == 0 {
            return Err(EmbeddedPgError::Unreachable {
                dir: parent.to_owned(),
                user: user.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed test"
)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn unreachable_parent_is_reported_with_a_fix() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = RunAs {
            name: "nobody".to_owned(),
            uid: Uid::from_raw(65534),
            gid: Gid::from_raw(65534),
            home: PathBuf::from("/nonexistent"),
        };
        let err = check_reachable(&tmp.path().join("postgres"), &nobody).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("chmod o+x {}", tmp.path().display())),
            "{message}"
        );

        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o711)).unwrap();
        check_reachable(&tmp.path().join("postgres"), &nobody).unwrap();
    }

    #[test]
    fn a_missing_user_is_named_with_how_to_create_it() {
        let err = resolve_run_as(Some("berth-no-such-user")).unwrap_err();
        assert!(matches!(err, EmbeddedPgError::NoSuchUser { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("useradd --system --user-group berth-no-such-user"),
            "{message}"
        );
    }
}
