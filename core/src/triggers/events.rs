//! Reading events: a workspace's or a rule's, newest first, a page at a time.
//!
//! Pages are keyset pages on (`occurred_at`, `id`), so events stored while a caller
//! pages never shift what the next page holds. A rule's events are found through its
//! newest rule of that name, archived or not, so an archived rule's history stays
//! readable. What it must not touch: anything; it only reads.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, WorkspaceRole};
use crate::error::{Error, Result};
use crate::store::schema::{trigger_events, trigger_rules};
use crate::templates::workspace_name;
use crate::triggers::manage::find_rule;
use crate::triggers::store::EventRow;
use crate::triggers::{EventPage, EventQuery, EventView, Triggers};

/// How many events a page holds when no limit is given, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

impl Triggers {
    /// `ListTriggerEvents`.
    pub async fn list_events(&self, caller: &Identity, query: EventQuery) -> Result<EventPage> {
        let limit = match query.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(Error::InvalidArgument(format!(
                    "limit: {n} is more than {MAX_LIMIT}; ask for at most {MAX_LIMIT} events a page and follow next_page_token"
                )));
            }
            n => n,
        };
        let after = match query.page_token.as_str() {
            "" => None,
            token => Some(decode_page_token(token)?),
        };
        let mut conn = self.pool.get().await?;
        let standing =
            roles::in_workspace(&mut conn, caller, workspace_name(&query.workspace)).await?;
        standing.require(WorkspaceRole::Viewer, "read trigger events of")?;
        let mut select = trigger_events::table
            .left_join(trigger_rules::table)
            .filter(trigger_events::workspace_id.eq(standing.workspace.id))
            .select((EventRow::as_select(), trigger_rules::name.nullable()))
            .order((
                trigger_events::occurred_at.desc(),
                trigger_events::id.desc(),
            ))
            .limit(i64::from(limit) + 1)
            .into_boxed();
        if !query.rule.is_empty() {
            let rule = find_rule(&mut conn, &standing, &query.rule, false).await?;
            select = select.filter(trigger_events::rule_id.eq(rule.id));
        }
        if let Some(since) = query.since {
            select = select.filter(trigger_events::occurred_at.ge(since));
        }
        if !query.outcomes.is_empty() {
            let outcomes: Vec<&str> = query.outcomes.iter().map(|o| o.as_str()).collect();
            select = select.filter(trigger_events::outcome.eq_any(outcomes));
        }
        if let Some((at, id)) = after {
            select = select.filter(
                trigger_events::occurred_at
                    .lt(at)
                    .or(trigger_events::occurred_at
                        .eq(at)
                        .and(trigger_events::id.lt(id))),
            );
        }
        let mut rows: Vec<(EventRow, Option<String>)> = select.load(&mut conn).await?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_page_token = match (more, rows.last()) {
            (true, Some((last, _))) => encode_page_token(last.occurred_at, last.id),
            _ => String::new(),
        };
        Ok(EventPage {
            events: rows
                .into_iter()
                .map(|(row, rule)| EventView {
                    row,
                    workspace: standing.workspace.name.clone(),
                    rule: rule.unwrap_or_default(),
                })
                .collect(),
            next_page_token,
        })
    }
}

/// The position after which the next page starts: the last event's (occurred_at, id).
fn encode_page_token(occurred_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", occurred_at.timestamp_micros()))
}

fn decode_page_token(token: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || {
        Error::InvalidArgument(
            "page_token: not a token returned by ListTriggerEvents; pass next_page_token unchanged"
                .into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (micros, id) = text.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let token = encode_page_token(at, id);
        assert_eq!(decode_page_token(&token).unwrap(), (at, id));
        assert!(decode_page_token("garbage!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("1:notauuid")).is_err());
        assert!(
            decode_page_token(&URL_SAFE_NO_PAD.encode("x:00000000-0000-0000-0000-000000000000"))
                .is_err()
        );
    }
}
