//! From events to deliveries, inside the relay's transaction.
//!
//! An event goes to an enabled channel of its workspace when one of the channel's event
//! type patterns matches its type, or when a reaction of the channel waits for what the
//! event means ([`reactions::on_of`]) on one of its objects: the object itself, and for
//! a work request its template, its workflow parent and the service it is a replica of.
//! Those ids are read from the event's data when it carries them (`template_id`,
//! `parent_id` / `workflow_id`, `service_id`) and from the request's own row otherwise,
//! so a reaction on a template fires for every request made from it.
//!
//! Each (event, channel) is inserted once: the unique key and `ON CONFLICT DO NOTHING`
//! make a relay that hands the same event again (after a crash between its work and its
//! commit, say) queue nothing new. The `NOTIFY` that wakes the delivery loops is sent in
//! the same transaction, so it is heard only once the deliveries are committed.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::Result;
use crate::events::SystemEvent;
use crate::notifications::store::NewDelivery;
use crate::notifications::{On, patterns, reactions};
use crate::store::schema::{
    notification_channels, notification_deliveries, notification_reactions, service_runs,
    work_requests, workspaces,
};

/// The PostgreSQL notification channel the delivery loops listen on.
pub const NOTIFY_CHANNEL: &str = "berth_notifications";

/// The webhook body of `event` (`{type, timestamp, data}`), as sent in every attempt.
pub fn body_of(event: &SystemEvent, workspace: &str) -> String {
    let body = serde_json::json!({
        "type": event.event_type,
        "timestamp": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": {
            "id": event.id,
            "seq": event.seq,
            "topic": event.topic,
            "object_id": event.object_id,
            "workspace": workspace,
            "workspace_id": event.workspace_id,
            "state": event.data,
        },
    });
    body.to_string()
}

/// Ids an event carries in its data under `key` (a string uuid), if any.
fn id_in(data: &serde_json::Value, key: &str) -> Option<Uuid> {
    data.get(key)
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Queues a delivery of each event to every enabled channel that wants it (by event
/// type, or by a reaction on its object), inside the caller's transaction. See the
/// module docs.
pub async fn fanout_in(conn: &mut AsyncPgConnection, events: &[SystemEvent]) -> Result<()> {
    queue_in(conn, events).await.map(|_| ())
}

/// [`fanout_in`], answering how many deliveries it queued.
pub(crate) async fn queue_in(
    conn: &mut AsyncPgConnection,
    events: &[SystemEvent],
) -> Result<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let workspace_ids: Vec<Uuid> = events
        .iter()
        .map(|e| e.workspace_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let channels: Vec<(Uuid, Uuid, Vec<String>, String)> = notification_channels::table
        .inner_join(workspaces::table)
        .filter(notification_channels::workspace_id.eq_any(&workspace_ids))
        .filter(notification_channels::enabled.eq(true))
        .select((
            notification_channels::id,
            notification_channels::workspace_id,
            notification_channels::event_types,
            workspaces::name,
        ))
        .load(conn)
        .await?;
    if channels.is_empty() {
        return Ok(0);
    }
    let workspace_names: BTreeMap<Uuid, String> = channels
        .iter()
        .map(|(_, ws, _, name)| (*ws, name.clone()))
        .collect();

    // The objects each event is about: itself, and a request's template, workflow and
    // service (from the data, else from the request's row).
    let object_ids: Vec<Uuid> = events.iter().map(|e| e.object_id).collect();
    let request_rows: Vec<(Uuid, Option<Uuid>, Option<Uuid>)> = work_requests::table
        .filter(work_requests::id.eq_any(&object_ids))
        .select((
            work_requests::id,
            work_requests::template_id,
            work_requests::parent_id,
        ))
        .load(conn)
        .await?;
    let service_rows: Vec<(Uuid, Uuid)> = service_runs::table
        .filter(service_runs::request_id.eq_any(&object_ids))
        .select((service_runs::request_id, service_runs::service_id))
        .load(conn)
        .await?;
    let mut related: BTreeMap<Uuid, BTreeSet<Uuid>> = BTreeMap::new();
    for (id, template, parent) in request_rows {
        let set = related.entry(id).or_default();
        set.extend(template);
        set.extend(parent);
    }
    for (id, service) in service_rows {
        related.entry(id).or_default().insert(service);
    }
    let about: Vec<BTreeSet<Uuid>> = events
        .iter()
        .map(|e| {
            let mut ids: BTreeSet<Uuid> = related.get(&e.object_id).cloned().unwrap_or_default();
            ids.insert(e.object_id);
            for key in ["template_id", "parent_id", "workflow_id", "service_id"] {
                ids.extend(id_in(&e.data, key));
            }
            ids
        })
        .collect();
    let all_ids: Vec<Uuid> = about
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let channel_ids: Vec<Uuid> = channels.iter().map(|c| c.0).collect();
    let reaction_rows: Vec<(Uuid, String, Uuid)> = notification_reactions::table
        .filter(notification_reactions::object_id.eq_any(&all_ids))
        .filter(notification_reactions::channel_id.eq_any(&channel_ids))
        .select((
            notification_reactions::object_id,
            notification_reactions::on_event,
            notification_reactions::channel_id,
        ))
        .load(conn)
        .await?;

    let mut rows = Vec::new();
    for (event, about) in events.iter().zip(&about) {
        let moments: Vec<On> = reactions::on_of(&event.event_type, &event.data);
        let mut wanted: BTreeSet<Uuid> = channels
            .iter()
            .filter(|(_, ws, types, _)| {
                *ws == event.workspace_id && patterns::any_matches(types, &event.event_type)
            })
            .map(|c| c.0)
            .collect();
        for (object, on, channel) in &reaction_rows {
            if about.contains(object)
                && moments.iter().any(|m| m.as_str() == on)
                && channels
                    .iter()
                    .any(|(id, ws, _, _)| id == channel && *ws == event.workspace_id)
            {
                wanted.insert(*channel);
            }
        }
        if wanted.is_empty() {
            continue;
        }
        let workspace = workspace_names
            .get(&event.workspace_id)
            .map(String::as_str)
            .unwrap_or_default();
        let body = body_of(event, workspace);
        for channel in wanted {
            rows.push(NewDelivery {
                id: Uuid::now_v7(),
                workspace_id: event.workspace_id,
                channel_id: channel,
                event_id: event.id,
                event_type: event.event_type.clone(),
                object_id: event.object_id,
                body: body.clone(),
                test: false,
            });
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let mut inserted = 0;
    // Bind parameters are limited (65535 per statement): insert in slices.
    for chunk in rows.chunks(1000) {
        inserted += diesel::insert_into(notification_deliveries::table)
            .values(chunk)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    if inserted > 0 {
        diesel::sql_query(format!("NOTIFY {NOTIFY_CHANNEL}"))
            .execute(conn)
            .await?;
    }
    Ok(inserted)
}
