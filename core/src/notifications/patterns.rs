//! Event type patterns: what a channel's `event_types` may hold and how an event's type
//! is matched against them.
//!
//! An event type is dot-separated lower-case words (`work_request.failed`,
//! `notification.channel_disabled`). A pattern is an exact type, a prefix ending in `.*`
//! (`work_request.*` matches every type under `work_request.`, at any depth), or `*`
//! (everything). Nothing else is a pattern, so a typo is refused when the channel is
//! made instead of silently matching nothing.

use crate::error::{Error, Result};

/// The most patterns one channel may hold.
pub const MAX_PATTERNS: usize = 64;

fn is_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 64
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks `patterns` (field `field`) and returns them without duplicates, sorted.
pub fn check(field: &str, patterns: &[String]) -> Result<Vec<String>> {
    if patterns.len() > MAX_PATTERNS {
        return Err(Error::InvalidArgument(format!(
            "{field}: {} patterns; a channel takes at most {MAX_PATTERNS} (use `work_request.*` or `*` to cover many)",
            patterns.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.iter().enumerate() {
        let p = pattern.trim();
        let body = p.strip_suffix(".*").unwrap_or(p);
        let ok = p == "*" || (!body.is_empty() && body.split('.').all(is_word));
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "{field}[{i}]: {pattern:?} is not an event type pattern; write a type such as work_request.failed, a prefix such as work_request.*, or * for every event"
            )));
        }
        out.push(p.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether `event_type` matches `pattern` (a pattern [`check`] accepted).
pub fn matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event_type,
    }
}

/// Whether any of `patterns` matches `event_type`.
pub fn any_matches(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| matches(p, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn patterns_match_exactly_by_prefix_or_everything() {
        assert!(matches("work_request.failed", "work_request.failed"));
        assert!(!matches("work_request.failed", "work_request.failed.x"));
        assert!(matches("work_request.*", "work_request.failed"));
        assert!(matches("work_request.*", "work_request.step.failed"));
        assert!(!matches("work_request.*", "work_request"));
        assert!(!matches("work_request.*", "work_requests.failed"));
        assert!(matches("*", "notification.ping"));
    }

    #[test]
    fn bad_patterns_are_refused_with_their_index() {
        for bad in [
            "",
            "work_request.",
            "*.failed",
            "Work.x",
            "a..b",
            "a.*.b",
            "a b",
        ] {
            let error =
                check("event_types", &strings(&["ok.type", bad])).expect_err("must be refused");
            assert!(
                error.to_string().starts_with("event_types[1]:"),
                "{bad:?}: {error}"
            );
        }
        assert_eq!(
            check("event_types", &strings(&["b.*", "a.x", "b.*"])).expect("good"),
            strings(&["a.x", "b.*"])
        );
    }
}
