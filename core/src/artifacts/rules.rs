//! The checks on what a caller sends to make an artifact: its category, its data, its file
//! list, its expiry, and the limits on its size.
//!
//! What it owns: the category slug rule, the small table of categories that declare
//! required data keys ([`SCHEMAS`]), the data rules (a JSON object of at most
//! [`MAX_DATA_BYTES`]), the shape of each file entry, the [`ArtifactLimits`], and turning an
//! [`Expiry`] into an expiry time.
//!
//! What it must not touch: the database, and paths beyond calling
//! [`berth_files::paths::validate_paths`] (the one path validator).

use berth_files::FileId;
use berth_files::paths::validate_paths;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::work::spec::RawDuration;

/// Most bytes of an artifact's data, as JSON text.
pub const MAX_DATA_BYTES: usize = 64 * 1024;
/// Longest symlink target recorded.
pub const MAX_SYMLINK: usize = 4096;
/// The mode a file gets when the caller gives 0.
pub const DEFAULT_MODE: u32 = 0o644;

/// Categories whose data must carry some keys; every other category takes any object.
pub const SCHEMAS: &[(&str, &[&str])] = &[("test-report", &["format"])];

/// The limits of one artifact. The server's defaults suit most installations; tests lower
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArtifactLimits {
    /// Most files (and symlinks) in one artifact.
    pub max_files: usize,
    /// Most bytes of all its files together.
    pub max_total_bytes: u64,
}

impl Default for ArtifactLimits {
    fn default() -> Self {
        ArtifactLimits {
            max_files: 100_000,
            max_total_bytes: 1 << 40,
        }
    }
}

/// When an artifact expires, as a caller says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Expiry {
    /// The workspace's default expiry from now (never, if it has none).
    #[default]
    Default,
    /// This long from now.
    After(RawDuration),
    /// At this time.
    At(DateTime<Utc>),
    /// Never.
    Never,
}

/// Whether a time in the past may be given (SetExpiry may expire an artifact at once;
/// CreateArtifact may not make one that is born expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Past {
    Allowed,
    Refused,
}

/// The expiry time `expiry` means now, given the workspace's default in seconds (`None`:
/// never). `None` means never.
pub fn expires_at(
    expiry: Expiry,
    default_seconds: Option<i64>,
    now: DateTime<Utc>,
    past: Past,
) -> Result<Option<DateTime<Utc>>> {
    let after = |seconds: i64, nanos: i64| {
        chrono::Duration::try_seconds(seconds)
            .and_then(|d| d.checked_add(&chrono::Duration::nanoseconds(nanos)))
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "expiry.after: {seconds}s is too long; give at most a few hundred years"
                ))
            })
    };
    match expiry {
        Expiry::Never => Ok(None),
        Expiry::Default => default_seconds.map(|s| after(s, 0)).transpose(),
        Expiry::After(d) => {
            if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
                return Err(Error::InvalidArgument(format!(
                    "expiry.after: {}s {}ns; give a positive duration (or `never`)",
                    d.seconds, d.nanos
                )));
            }
            after(d.seconds, i64::from(d.nanos)).map(Some)
        }
        Expiry::At(at) => {
            if past == Past::Refused && at <= now {
                return Err(Error::InvalidArgument(format!(
                    "expiry.at: {} is not in the future",
                    at.to_rfc3339()
                )));
            }
            Ok(Some(at))
        }
    }
}

/// Checks a category: a slug of 1-63 characters of `[a-z0-9-]`, starting with a letter or
/// digit.
pub fn check_category(category: &str) -> Result<()> {
    let bad = || {
        Error::InvalidArgument(format!(
            "category: {category:?} is not a valid category; use 1-63 characters of a-z, 0-9 \
             and '-', starting with a letter or digit (e.g. `package`, `test-report`)"
        ))
    };
    let first_ok = category
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !first_ok
        || category.len() > 63
        || !category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad());
    }
    Ok(())
}

/// Parses an artifact's data (empty means `{}`) and checks it against its category's
/// schema, if it has one.
pub fn check_data(category: &str, data: &str) -> Result<serde_json::Value> {
    if data.len() > MAX_DATA_BYTES {
        return Err(Error::InvalidArgument(format!(
            "data: {} bytes of JSON; at most {MAX_DATA_BYTES} (64 KiB) are allowed; keep big \
             things in files",
            data.len()
        )));
    }
    let value: serde_json::Value = if data.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(data)
            .map_err(|e| Error::InvalidArgument(format!("data: not valid JSON: {e}")))?
    };
    let Some(object) = value.as_object() else {
        return Err(Error::InvalidArgument(
            "data: must be a JSON object (`{...}`)".into(),
        ));
    };
    if let Some((_, required)) = SCHEMAS.iter().find(|(name, _)| *name == category) {
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|key| !object.contains_key(*key))
            .collect();
        if !missing.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "data: a {category} artifact needs the key(s) {}; it has {}",
                missing.join(", "),
                if object.is_empty() {
                    "none".to_owned()
                } else {
                    object.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )));
        }
    }
    Ok(value)
}

/// One file entry as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    /// Hex SHA-256; empty for a symlink.
    pub sha256: String,
    pub size: u64,
    /// 0 means [`DEFAULT_MODE`].
    pub mode: u32,
    /// A symlink's target; empty for a regular file.
    pub symlink: String,
}

/// A checked file entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedFile {
    pub path: String,
    pub mode: u32,
    /// What it is.
    pub kind: FileKind,
}

/// A regular file names its contents; a symlink only its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular(FileId),
    Symlink(String),
}

/// Checks every file entry of an artifact against the limits and the path validator;
/// returns them checked, with the total size.
pub fn check_files(
    files: Vec<FileEntry>,
    limits: &ArtifactLimits,
) -> Result<(Vec<CheckedFile>, u64)> {
    if files.len() > limits.max_files {
        return Err(Error::ResourceExhausted(format!(
            "files: {} files; an artifact may hold at most {} (the server's files-per-artifact \
             limit); split it into several artifacts",
            files.len(),
            limits.max_files
        )));
    }
    validate_paths(files.iter().map(|f| f.path.as_str()))
        .map_err(|e| Error::InvalidArgument(format!("files: {e}")))?;
    let mut total: u64 = 0;
    let mut checked = Vec::with_capacity(files.len());
    for file in files {
        let field = format!("files[{:?}]", file.path);
        if file.mode > 0o7777 {
            return Err(Error::InvalidArgument(format!(
                "{field}.mode: {:#o} is not a permission mode (0 to 0o7777)",
                file.mode
            )));
        }
        let mode = if file.mode == 0 {
            DEFAULT_MODE
        } else {
            file.mode
        };
        let kind = if file.symlink.is_empty() {
            let id = FileId::from_hex(&file.sha256, file.size).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{field}.sha256: {:?} is not a SHA-256 (64 hex digits)",
                    file.sha256
                ))
            })?;
            if i64::try_from(file.size).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "{field}.size: {} is too large",
                    file.size
                )));
            }
            total = total.saturating_add(file.size);
            FileKind::Regular(id)
        } else {
            if !file.sha256.is_empty() || file.size != 0 {
                return Err(Error::InvalidArgument(format!(
                    "{field}: a symlink has no contents; leave sha256 empty and size 0"
                )));
            }
            if file.symlink.len() > MAX_SYMLINK || file.symlink.contains('\0') {
                return Err(Error::InvalidArgument(format!(
                    "{field}.symlink: at most {MAX_SYMLINK} bytes and no NUL"
                )));
            }
            FileKind::Symlink(file.symlink)
        };
        checked.push(CheckedFile {
            path: file.path,
            mode,
            kind,
        });
    }
    if total > limits.max_total_bytes {
        return Err(Error::ResourceExhausted(format!(
            "files: {total} bytes in all; an artifact may hold at most {} bytes (the server's \
             total-size-per-artifact limit)",
            limits.max_total_bytes
        )));
    }
    Ok((checked, total))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests may unwrap")]

    use super::*;

    #[test]
    fn categories_are_slugs() {
        for good in ["package", "test-report", "0day", "a"] {
            check_category(good).unwrap();
        }
        for bad in ["", "-x", "Package", "a_b", "a b", &"a".repeat(64)] {
            assert!(check_category(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn data_is_an_object_and_follows_its_schema() {
        assert_eq!(check_data("x", "").unwrap(), serde_json::json!({}));
        assert!(check_data("x", "[1]").is_err());
        assert!(check_data("x", "{").is_err());
        let Err(Error::InvalidArgument(message)) = check_data("test-report", "{\"a\":1}") else {
            panic!("a test report without a format passed");
        };
        assert!(message.contains("format"), "{message}");
        check_data("test-report", "{\"format\":\"junit\"}").unwrap();
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_DATA_BYTES));
        assert!(check_data("x", &big).is_err());
    }

    #[test]
    fn expiry_defaults_to_the_workspace_and_refuses_the_past_on_create() {
        let now = Utc::now();
        assert_eq!(
            expires_at(Expiry::Default, None, now, Past::Refused).unwrap(),
            None
        );
        assert_eq!(
            expires_at(Expiry::Default, Some(60), now, Past::Refused).unwrap(),
            Some(now + chrono::Duration::seconds(60))
        );
        let past = now - chrono::Duration::seconds(1);
        assert!(expires_at(Expiry::At(past), None, now, Past::Refused).is_err());
        assert_eq!(
            expires_at(Expiry::At(past), None, now, Past::Allowed).unwrap(),
            Some(past)
        );
        let zero = RawDuration {
            seconds: 0,
            nanos: 0,
        };
        assert!(expires_at(Expiry::After(zero), None, now, Past::Refused).is_err());
    }
}
