//! The pass over due schedule rules, and the loop that runs every pass of this room.
//!
//! Every replica runs [`run`]; nothing here elects a leader. A pass:
//! 1. marks the pass clock ([`store::tick_clock`], the database's `now()`), in its own
//!    short transaction. When the previous mark is older than the outage threshold
//!    (five pass intervals, at least 5 s), no replica ran between that mark and now:
//!    the times in between were *missed*, and each rule's catch-up window decides which
//!    of them still fire. Times before the mark were due while a replica was running
//!    (the pass is only late, under load or after a quick restart): they all fire.
//! 2. claims due schedule rules (and rules holding a `buffer-one` time) with
//!    `FOR UPDATE SKIP LOCKED`, 32 at a time, until none is left. For each, in a
//!    savepoint of the claim's transaction, [`plan`] says what each due time becomes
//!    (pure, tested without a database), the overlap policy has its say on the times
//!    that run, the events are stored through [`store::insert_event`] and the rule moves
//!    on to its next time.
//! 3. after the commit, hands stops of cancelled runs to the hub and settles the new
//!    `pending` events ([`settle::settle`]; the settle pass retries any it leaves).
//!
//! Exactly once: a time's event has the dedupe key [`store::at_key`], so of two
//! replicas that both got to a time (a claim that outlived its lock, a rule changed
//! under a pass) only the one whose insert went in makes work; the work request is made
//! later under the id reserved on that event.
//!
//! What it must not touch: work requests (runs are stopped only through
//! [`own::stop`]), and rules' configuration, action and state other than
//! `next_fire_at`, `buffered_at` and `last_fired_at`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Double, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::schema::{trigger_events, trigger_rules, work_requests};
use crate::triggers::schedule::{self, ScheduleConfig};
use crate::triggers::store::{self, NewEvent, RuleRow};
use crate::triggers::{Catchup, Outcome, Overlap, RuleKind, Triggers, settle, watch};
use crate::work::ids::WorkRequestId;
use crate::work::lifecycle::LiveAttempt;
use crate::work::own;
use crate::work::state::Status;

/// Rules claimed at a time.
const CLAIM: i64 = 32;

/// The most times of one rule a round makes runs of; the rest wait for the next round
/// of the same pass, so a transaction stays small whatever fell due.
const FIRE_CAP: usize = 1000;

/// The most `missed` or `paused` events of one rule a round stores one by one; the
/// times beyond are stored as one event with their count and range.
const NOT_RUN_CAP: usize = 1000;

/// The shortest gap between a change announced by the hub and the next passes, so a
/// burst of changes makes one pass.
const MIN_GAP: Duration = Duration::from_millis(100);

/// The shortest outage: a pass clock older than this (or five intervals) means no
/// replica was running.
const MIN_OUTAGE: Duration = Duration::from_secs(5);

/// Runs the passes (schedule rules, event rules, pending events) until `stop` is
/// cancelled. A failed pass is logged and tried again next time.
///
/// Between passes it sleeps until the earliest next fire time (at most the interval),
/// and wakes early on a change announced by the hub: an ended run frees a
/// `buffer-one` time and is what completion rules react to.
pub async fn run(triggers: Triggers, stop: CancellationToken) {
    let mut changes = triggers.hub.subscribe();
    loop {
        for (what, result) in [
            ("schedule", pass(&triggers).await),
            ("watch", watch::pass(&triggers).await),
            ("settle", settle::pass(&triggers).await),
        ] {
            if let Err(e) = result {
                tracing::warn!(error = %e, pass = what, "triggers: pass failed; trying again");
            }
        }
        let wait = match until_due(&triggers).await {
            Ok(Some(wait)) => wait.min(triggers.interval),
            Ok(None) => triggers.interval,
            Err(e) => {
                tracing::debug!(error = %e, "triggers: next fire time unknown; waiting an interval");
                triggers.interval
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    // The hub is gone: the server is shutting down.
                    stop.cancelled().await;
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(MIN_GAP) => {}
                }
            }
        }
    }
}

/// How long until the earliest future next fire time of any schedule rule, on the
/// database's clock (a little past it, so the pass that wakes finds it due).
async fn until_due(triggers: &Triggers) -> Result<Option<Duration>> {
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = Nullable<Double>)]
        seconds: Option<f64>,
    }
    let mut conn = triggers.pool.get().await?;
    // Rules already due are left out: a replica holds them or their pass failed, and
    // either way waiting for them would spin.
    let due: Due = diesel::sql_query(
        "SELECT EXTRACT(EPOCH FROM min(next_fire_at) - now())::float8 AS seconds \
         FROM trigger_rules \
         WHERE kind = 'schedule' AND archived_at IS NULL AND next_fire_at > now()",
    )
    .get_result(&mut conn)
    .await?;
    Ok(due
        .seconds
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|d| d + Duration::from_millis(2)))
}

/// One pass over the due schedule rules. Returns how many rules it handled.
pub async fn pass(triggers: &Triggers) -> Result<usize> {
    let (previous, now) = {
        let mut conn = triggers.pool.get().await?;
        conn.transaction::<_, Error, _>(async |conn| store::tick_clock(conn).await)
            .await?
    };
    let outage = outage(previous, now, triggers.interval);
    if let Some(o) = outage {
        tracing::info!(since = ?o.since, %now, "triggers: no server ran since the last pass; catching up");
    }
    // Rules done with in this pass: a rule that keeps a buffered time while its run
    // goes on is due every round, and must not be claimed again and again.
    let mut visited: Vec<Uuid> = Vec::new();
    let mut handled = 0;
    loop {
        let mut conn = triggers.pool.get().await?;
        let mut after = AfterCommit::default();
        let claimed = conn
            .transaction::<_, Error, _>(async |conn| {
                let rules = claim(conn, now, &visited).await?;
                for rule in &rules {
                    let mut own = AfterCommit::default();
                    let done = conn
                        .transaction::<_, Error, _>(async |conn| {
                            one_rule(conn, rule, now, outage, &mut own).await
                        })
                        .await;
                    match done {
                        Ok(true) => {
                            visited.push(rule.id);
                            after.absorb(own);
                        }
                        // Times are left for another round; it comes back.
                        Ok(false) => after.absorb(own),
                        Err(e) => {
                            tracing::warn!(rule = %rule.id, name = %rule.name, error = %e,
                                "triggers: pass over a schedule rule failed; trying again next pass");
                            visited.push(rule.id);
                        }
                    }
                }
                Ok(rules.len())
            })
            .await?;
        after.deliver(triggers).await;
        if claimed == 0 {
            return Ok(handled);
        }
        handled += claimed;
    }
}

async fn claim(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    visited: &[Uuid],
) -> Result<Vec<RuleRow>> {
    Ok(trigger_rules::table
        .filter(trigger_rules::kind.eq(RuleKind::Schedule.as_str()))
        .filter(trigger_rules::archived_at.is_null())
        .filter(
            trigger_rules::next_fire_at
                .le(now)
                .or(trigger_rules::buffered_at.is_not_null().nullable()),
        )
        .filter(trigger_rules::id.ne_all(visited))
        .order((trigger_rules::next_fire_at.asc(), trigger_rules::id))
        .limit(CLAIM)
        .select(RuleRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?)
}

/// What must reach the hub and settling once the claim's transaction has committed.
#[derive(Default)]
struct AfterCommit {
    /// Containers of cancelled runs to stop.
    stops: Vec<LiveAttempt>,
    /// New `pending` events to settle.
    pending: Vec<Uuid>,
    /// Events were stored: tell followers.
    changed: bool,
}

impl AfterCommit {
    fn absorb(&mut self, other: AfterCommit) {
        self.stops.extend(other.stops);
        self.pending.extend(other.pending);
        self.changed |= other.changed;
    }

    async fn deliver(self, triggers: &Triggers) {
        let stopped = !self.stops.is_empty();
        for stop in self.stops {
            triggers.hub.cancel(stop.worker_id, stop.key);
        }
        if stopped {
            // A cancelled run frees room for queued work.
            triggers.hub.wake_scheduler();
        }
        if self.changed || stopped {
            triggers.hub.changed();
        }
        for id in self.pending {
            if let Err(e) = settle::settle(triggers, id).await {
                tracing::debug!(event = %id, error = %e, "triggers: settling left to the settle pass");
            }
        }
    }
}

/// When no replica ran for a while: the nominal times after `since` were missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outage {
    /// The last pass before it; `None` when no pass had ever run.
    since: Option<DateTime<Utc>>,
}

/// An outage, when the previous pass clock is older than five pass intervals (at least
/// [`MIN_OUTAGE`]).
fn outage(
    previous: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval: Duration,
) -> Option<Outage> {
    let threshold = (interval * 5).max(MIN_OUTAGE);
    let threshold = TimeDelta::from_std(threshold).unwrap_or(TimeDelta::MAX);
    match previous {
        None => Some(Outage { since: None }),
        Some(p) if now.signed_duration_since(p) > threshold => Some(Outage { since: Some(p) }),
        Some(_) => None,
    }
}

/// What one due time (or a run of them) of a rule becomes, before the overlap policy
/// has its say on the ones that run.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Runs, unless the overlap policy holds it back.
    Fire {
        at: DateTime<Utc>,
        reason: String,
        catch_up: bool,
    },
    /// A `missed` or `paused` event.
    NotRun {
        at: DateTime<Utc>,
        outcome: Outcome,
        reason: String,
    },
    /// Times beyond [`NOT_RUN_CAP`], as one event.
    Summary {
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        /// At least this many when not `exact`.
        count: u64,
        exact: bool,
        outcome: Outcome,
        reason: String,
    },
}

/// What a round does with a rule's due times.
#[derive(Debug)]
struct Plan {
    steps: Vec<Step>,
    /// Due times up to here are handled; the rule's next time comes after it.
    covered: DateTime<Utc>,
    /// False when [`FIRE_CAP`] left due times for another round.
    done: bool,
}

/// Plans a rule's due times, the nominal times in [`from`, `now`]: with the rule paused
/// (`pause` is its note) each becomes `paused`; otherwise times a replica was running
/// for fire, and of the times an `outage` missed, those within the catch-up window fire
/// (the latest only, or all) and the others are `missed`.
fn plan(
    config: &ScheduleConfig,
    from: DateTime<Utc>,
    pause: Option<&str>,
    now: DateTime<Utc>,
    outage: Option<Outage>,
) -> Result<Plan> {
    let mut plan = Plan {
        steps: Vec::new(),
        covered: now,
        done: true,
    };
    if from > now {
        return Ok(plan);
    }
    // Ranges are (after, until]; timestamps are stored to the microsecond, so one
    // microsecond before `from` makes `from` itself the first of them.
    let before_from = from - TimeDelta::microseconds(1);
    let mut budget = NOT_RUN_CAP;
    if let Some(note) = pause {
        let reason = |_: Option<DateTime<Utc>>| {
            if note.is_empty() {
                "the rule is paused".to_owned()
            } else {
                format!("the rule is paused: {note}")
            }
        };
        not_run(
            &mut plan.steps,
            config,
            (before_from, now),
            &mut budget,
            Outcome::Paused,
            reason,
        )?;
        return Ok(plan);
    }

    // Times a replica was running for: all of them, unless an outage began after `from`.
    let running_until = match outage {
        None => now,
        Some(Outage { since: None }) => before_from,
        Some(Outage { since: Some(since) }) => since.clamp(before_from, now),
    };
    let span = schedule::times_in(config, before_from, running_until, FIRE_CAP)?;
    for at in &span.times {
        plan.steps.push(Step::Fire {
            at: *at,
            reason: format!("scheduled for {}", show(*at)),
            catch_up: false,
        });
    }
    if span.total > span.times.len() as u64 || !span.exact {
        return Ok(leave_rest(plan));
    }
    let Some(outage) = outage else {
        return Ok(plan);
    };

    let window = config.catchup_window();
    let shown_window = humantime::format_duration(window).to_string();
    let window_start = now - TimeDelta::from_std(window).map_err(Error::internal)?;
    let gone = match outage.since {
        Some(since) => format!("no server ran from {} to {}", show(since), show(now)),
        None => format!("no server had run before {}", show(now)),
    };
    // Missed, and too long ago for the catch-up window.
    let outside_until = window_start.max(running_until);
    let outside = |at: Option<DateTime<Utc>>| match at {
        Some(at) => format!(
            "missed {}: {gone}, and it is outside the catch-up window of {shown_window}",
            show(at)
        ),
        None => {
            format!("missed: {gone}, and they are outside the catch-up window of {shown_window}")
        }
    };
    not_run(
        &mut plan.steps,
        config,
        (running_until, outside_until),
        &mut budget,
        Outcome::Missed,
        outside,
    )?;

    // Missed, but within the window: they run (all of them, or the latest).
    match config.catchup {
        Catchup::Latest => {
            let inside = schedule::times_in(config, outside_until, now, 0)?;
            if let Some(latest) = inside.last {
                let not_latest = |at: Option<DateTime<Utc>>| {
                    format!(
                        "missed{}: {gone}; catch-up fires only the latest time within the window \
                         of {shown_window}, {}",
                        at.map(|at| format!(" {}", show(at))).unwrap_or_default(),
                        show(latest)
                    )
                };
                not_run(
                    &mut plan.steps,
                    config,
                    (outside_until, latest - TimeDelta::microseconds(1)),
                    &mut budget,
                    Outcome::Missed,
                    not_latest,
                )?;
                plan.steps.push(Step::Fire {
                    at: latest,
                    reason: catch_up_reason(latest, &gone, &shown_window),
                    catch_up: true,
                });
            }
        }
        Catchup::All => {
            let room = FIRE_CAP - span.times.len();
            let inside = schedule::times_in(config, outside_until, now, room)?;
            for at in &inside.times {
                plan.steps.push(Step::Fire {
                    at: *at,
                    reason: catch_up_reason(*at, &gone, &shown_window),
                    catch_up: true,
                });
            }
            if inside.total > inside.times.len() as u64 || !inside.exact {
                return Ok(leave_rest(plan));
            }
        }
    }
    Ok(plan)
}

/// A plan that stops at its last time: the rest waits for the next round.
fn leave_rest(mut plan: Plan) -> Plan {
    if let Some(Step::Fire { at, .. }) = plan.steps.last() {
        plan.covered = *at;
        plan.done = false;
    }
    plan
}

fn catch_up_reason(at: DateTime<Utc>, gone: &str, window: &str) -> String {
    format!(
        "caught up {}: {gone}, and it is within the catch-up window of {window}",
        show(at)
    )
}

/// The times in `range` become `outcome` events with `reason(Some(time))`: one by one
/// while `budget` lasts, then one summary with `reason(None)`.
fn not_run(
    steps: &mut Vec<Step>,
    config: &ScheduleConfig,
    (after, until): (DateTime<Utc>, DateTime<Utc>),
    budget: &mut usize,
    outcome: Outcome,
    reason: impl Fn(Option<DateTime<Utc>>) -> String,
) -> Result<()> {
    let span = schedule::times_in(config, after, until, *budget)?;
    for at in &span.times {
        steps.push(Step::NotRun {
            at: *at,
            outcome,
            reason: reason(Some(*at)),
        });
    }
    *budget -= span.times.len();
    let rest = span.total - span.times.len() as u64;
    if rest == 0 && span.exact {
        return Ok(());
    }
    let Some(first) = config.next_after(span.times.last().copied().unwrap_or(after))? else {
        return Ok(());
    };
    // A walk that stopped counting covers the whole range all the same.
    let last = if span.exact {
        span.last.unwrap_or(first)
    } else {
        until
    };
    steps.push(Step::Summary {
        first,
        last,
        count: rest,
        exact: span.exact,
        outcome,
        reason: format!(
            "{}{rest} more times from {} to {}: {}",
            if span.exact { "" } else { "at least " },
            show(first),
            show(last),
            reason(None)
        ),
    });
    Ok(())
}

fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One claimed rule: its buffered time, then its due times. Returns false when due
/// times are left for another round.
async fn one_rule(
    conn: &mut AsyncPgConnection,
    rule: &RuleRow,
    now: DateTime<Utc>,
    outage: Option<Outage>,
    after: &mut AfterCommit,
) -> Result<bool> {
    let config = ScheduleConfig::from_value(&rule.config)?;
    let mut going = going(conn, rule).await?;
    let mut buffered_at = rule.buffered_at;
    let mut fired = false;

    // A held-back time runs once the run before it has ended (not while paused).
    if buffered_at.is_some() && rule.active && going.is_empty() {
        if let Some(run) = release_buffered(conn, rule.id).await? {
            after.pending.push(run.event_id);
            after.changed = true;
            going.push(run);
            fired = true;
        }
        buffered_at = None;
    }

    let mut done = true;
    let mut next_fire_at = rule.next_fire_at;
    if let Some(from) = rule.next_fire_at.filter(|t| *t <= now) {
        let pause = (!rule.active).then_some(rule.pause_note.as_str());
        let plan = plan(&config, from, pause, now, outage)?;
        let mut fate = Fate {
            rule,
            overlap: config.overlap,
            going,
            buffered_at,
            fired,
        };
        for step in plan.steps {
            fate.take(conn, step, after).await?;
        }
        (buffered_at, fired) = (fate.buffered_at, fate.fired);
        done = plan.done;
        next_fire_at = config.next_after(plan.covered)?;
    }

    let last_fired_at = if fired { Some(now) } else { rule.last_fired_at };
    diesel::update(trigger_rules::table.find(rule.id))
        .set((
            trigger_rules::next_fire_at.eq(next_fire_at),
            trigger_rules::buffered_at.eq(buffered_at),
            trigger_rules::last_fired_at.eq(last_fired_at),
        ))
        .execute(conn)
        .await?;
    Ok(done)
}

/// A run of a rule that has not ended: its event is `pending`, or `fired` with its work
/// request not ended.
#[derive(Clone, Debug, QueryableByName)]
struct Going {
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    nominal_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    work_request_id: Option<Uuid>,
}

impl Going {
    fn describe(&self) -> String {
        let request = self
            .work_request_id
            .map(|id| format!(" (request {id})"))
            .unwrap_or_default();
        match self.nominal_at {
            Some(at) => format!("the run for {}{request}", show(at)),
            None => format!("the run fired by hand{request}"),
        }
    }
}

/// The rule's runs still going. Ended requests are many and going ones few, so the
/// query starts from the workspace's requests that have not ended (each status has its
/// partial index) rather than from the rule's events.
async fn going(conn: &mut AsyncPgConnection, rule: &RuleRow) -> Result<Vec<Going>> {
    let not_ended = Status::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("w.status = '{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!(
        "SELECT e.id AS event_id, e.outcome, e.nominal_at, e.work_request_id \
         FROM trigger_events e WHERE e.rule_id = $1 AND e.outcome = 'pending' \
         UNION ALL \
         SELECT e.id, e.outcome, e.nominal_at, e.work_request_id \
         FROM work_requests w JOIN trigger_events e ON e.work_request_id = w.id \
         WHERE w.workspace_id = $2 AND ({not_ended}) AND e.rule_id = $1 AND e.outcome = 'fired'"
    );
    let mut runs: Vec<Going> = diesel::sql_query(sql)
        .bind::<SqlUuid, _>(rule.id)
        .bind::<SqlUuid, _>(rule.workspace_id)
        .load(conn)
        .await?;
    runs.sort_by_key(|r| (r.nominal_at, r.event_id));
    Ok(runs)
}

/// Turns the rule's newest `buffered` event into a `pending` one with a fresh reserved
/// request id (any older one, which should not exist, becomes `skipped`).
async fn release_buffered(conn: &mut AsyncPgConnection, rule_id: Uuid) -> Result<Option<Going>> {
    let held: Vec<(Uuid, Option<DateTime<Utc>>)> = trigger_events::table
        .filter(trigger_events::rule_id.eq(rule_id))
        .filter(trigger_events::outcome.eq(Outcome::Buffered.as_str()))
        .order((trigger_events::nominal_at.desc(), trigger_events::id.desc()))
        .select((trigger_events::id, trigger_events::nominal_at))
        .load(conn)
        .await?;
    let Some(((newest, nominal_at), older)) = held.split_first() else {
        return Ok(None);
    };
    for (id, _) in older {
        set_outcome(
            conn,
            *id,
            Outcome::Skipped,
            "replaced by a newer buffered time",
        )
        .await?;
    }
    let request = Uuid::new_v4();
    diesel::update(trigger_events::table.find(newest))
        .set((
            trigger_events::outcome.eq(Outcome::Pending.as_str()),
            trigger_events::work_request_id.eq(Some(request)),
            trigger_events::reason.eq("buffer-one: held back until the run before it ended"),
        ))
        .execute(conn)
        .await?;
    Ok(Some(Going {
        event_id: *newest,
        outcome: Outcome::Pending.as_str().to_owned(),
        nominal_at: *nominal_at,
        work_request_id: Some(request),
    }))
}

async fn set_outcome(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    outcome: Outcome,
    reason: &str,
) -> Result<()> {
    diesel::update(trigger_events::table.find(event_id))
        .set((
            trigger_events::outcome.eq(outcome.as_str()),
            trigger_events::reason.eq(reason),
        ))
        .execute(conn)
        .await?;
    if !matches!(outcome, Outcome::Pending | Outcome::Buffered) {
        crate::observe::trigger_fire(outcome.as_str());
    }
    Ok(())
}

/// Where a rule's steps are taken: the overlap policy against the runs still going.
struct Fate<'a> {
    rule: &'a RuleRow,
    overlap: Overlap,
    going: Vec<Going>,
    buffered_at: Option<DateTime<Utc>>,
    fired: bool,
}

impl Fate<'_> {
    async fn take(
        &mut self,
        conn: &mut AsyncPgConnection,
        step: Step,
        after: &mut AfterCommit,
    ) -> Result<()> {
        match step {
            Step::NotRun {
                at,
                outcome,
                reason,
            } => {
                let event = self.event(outcome, at, reason, None);
                after.changed |= store::insert_event(conn, &event).await?;
            }
            Step::Summary {
                first,
                last,
                count,
                exact,
                outcome,
                reason,
            } => {
                let mut event = NewEvent::of_rule(
                    self.rule,
                    outcome,
                    format!("{outcome}:{}/{}", show(first), show(last)),
                    reason,
                );
                event.description = serde_json::json!({
                    "count": count,
                    "count_exact": exact,
                    "first": show(first),
                    "last": show(last),
                });
                after.changed |= store::insert_event(conn, &event).await?;
            }
            Step::Fire {
                at,
                reason,
                catch_up,
            } => self.fire(conn, at, reason, catch_up, after).await?,
        }
        Ok(())
    }

    fn event(
        &self,
        outcome: Outcome,
        at: DateTime<Utc>,
        reason: String,
        catch_up: Option<bool>,
    ) -> NewEvent {
        let mut event = NewEvent::of_rule(self.rule, outcome, store::at_key(at), reason);
        event.nominal_at = Some(at);
        event.description = match catch_up {
            Some(true) => serde_json::json!({ "nominal_time": show(at), "catch_up": true }),
            _ => serde_json::json!({ "nominal_time": show(at) }),
        };
        event
    }

    async fn fire(
        &mut self,
        conn: &mut AsyncPgConnection,
        at: DateTime<Utc>,
        reason: String,
        catch_up: bool,
        after: &mut AfterCommit,
    ) -> Result<()> {
        if let Some(run) = <[Going]>::first(&self.going).cloned() {
            match self.overlap {
                Overlap::Allow => {}
                Overlap::Skip => {
                    let why = format!("overlap skip: {} is still going", run.describe());
                    let event = self.event(Outcome::Skipped, at, why, None);
                    after.changed |= store::insert_event(conn, &event).await?;
                    return Ok(());
                }
                Overlap::BufferOne => {
                    let why = format!("buffer-one: waits for {} to end ({reason})", run.describe());
                    let event = self.event(Outcome::Buffered, at, why, Some(catch_up));
                    if store::insert_event(conn, &event).await? {
                        let replaced = format!("replaced by the newer time {}", show(at));
                        let older: Vec<Uuid> = trigger_events::table
                            .filter(trigger_events::rule_id.eq(self.rule.id))
                            .filter(trigger_events::outcome.eq(Outcome::Buffered.as_str()))
                            .filter(trigger_events::id.ne(event.id))
                            .select(trigger_events::id)
                            .load(conn)
                            .await?;
                        for id in older {
                            set_outcome(conn, id, Outcome::Skipped, &replaced).await?;
                        }
                        self.buffered_at = Some(at);
                        after.changed = true;
                    }
                    return Ok(());
                }
                Overlap::CancelPrevious => {
                    let message = format!(
                        "cancelled by trigger rule {}: the run for {} replaces it",
                        self.rule.name,
                        show(at)
                    );
                    let going = std::mem::take(&mut self.going);
                    for run in going {
                        if !self.cancel(conn, &run, at, &message, after).await? {
                            // Being made right now by a settle: it stays going.
                            self.going.push(run);
                        }
                    }
                }
            }
        }
        let event = self.event(Outcome::Pending, at, reason, Some(catch_up));
        if store::insert_event(conn, &event).await? {
            after.pending.push(event.id);
            after.changed = true;
            self.fired = true;
            self.going.push(Going {
                event_id: event.id,
                outcome: event.outcome.clone(),
                nominal_at: event.nominal_at,
                work_request_id: event.work_request_id,
            });
        }
        Ok(())
    }

    /// Cancels a going run for the time `at` (`cancel-previous`). A run whose request is
    /// not made yet is not made at all: its event becomes `skipped`. Returns false when a
    /// settle is making it right now (its event is locked), so it cannot be stopped yet.
    async fn cancel(
        &mut self,
        conn: &mut AsyncPgConnection,
        run: &Going,
        at: DateTime<Utc>,
        message: &str,
        after: &mut AfterCommit,
    ) -> Result<bool> {
        let Some(request) = run.work_request_id else {
            return Ok(true);
        };
        if run.outcome == Outcome::Pending.as_str() {
            let locked: Option<Uuid> = trigger_events::table
                .find(run.event_id)
                .filter(trigger_events::outcome.eq(Outcome::Pending.as_str()))
                .select(trigger_events::id)
                .for_update()
                .skip_locked()
                .first(conn)
                .await
                .optional()?;
            if locked.is_none() {
                return Ok(false);
            }
            let made: Option<Uuid> = work_requests::table
                .find(WorkRequestId(request))
                .select(work_requests::id)
                .first(conn)
                .await
                .optional()
                .map(|id: Option<WorkRequestId>| id.map(|id| id.0))?;
            if made.is_none() {
                let why = format!(
                    "cancel-previous: replaced by the newer time {} before its run was made",
                    show(at)
                );
                set_outcome(conn, run.event_id, Outcome::Skipped, &why).await?;
                after.changed = true;
                return Ok(true);
            }
        }
        let live = own::stop(conn, WorkRequestId(request), message).await?;
        after.stops.extend(live);
        after.changed = true;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;
    use crate::triggers::ScheduleInput;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn every(interval: &str, window: Duration, catchup: Catchup) -> ScheduleConfig {
        schedule::check(
            &ScheduleInput {
                interval: interval.into(),
                anchor: Some(utc("2026-01-01T00:00:00Z")),
                catchup_window: Some(window),
                catchup: Some(catchup),
                ..ScheduleInput::default()
            },
            utc("2026-01-01T00:00:00Z"),
        )
        .unwrap()
    }

    fn since(text: &str) -> Option<Outage> {
        Some(Outage {
            since: Some(utc(text)),
        })
    }

    /// Each step as (time, what) with what `fire`, `catch-up`, or the outcome.
    fn fates(plan: &Plan) -> Vec<(String, String)> {
        plan.steps
            .iter()
            .map(|s| match s {
                Step::Fire { at, catch_up, .. } => (
                    show(*at),
                    if *catch_up { "catch-up" } else { "fire" }.to_owned(),
                ),
                Step::NotRun { at, outcome, .. } => (show(*at), outcome.to_string()),
                Step::Summary {
                    first,
                    last,
                    count,
                    outcome,
                    ..
                } => (
                    format!("{}..{}", show(*first), show(*last)),
                    format!("{count} {outcome}"),
                ),
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn outage_is_a_clock_older_than_five_intervals_or_five_seconds() {
        let now = utc("2026-01-01T00:01:00Z");
        let second = Duration::from_secs(1);
        assert_eq!(outage(Some(utc("2026-01-01T00:00:56Z")), now, second), None);
        assert_eq!(
            outage(Some(utc("2026-01-01T00:00:54Z")), now, second),
            since("2026-01-01T00:00:54Z")
        );
        // Five intervals when they are longer than 5 s.
        assert_eq!(
            outage(Some(utc("2026-01-01T00:00:54Z")), now, second * 2),
            None
        );
        assert_eq!(outage(None, now, second), Some(Outage { since: None }));
    }

    #[test]
    fn due_times_while_servers_ran_all_fire() {
        let config = every("PT1S", Duration::ZERO, Catchup::Latest);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:10Z"),
            None,
            utc("2026-01-01T00:00:12.5Z"),
            None,
        )
        .unwrap();
        assert_eq!(
            fates(&plan),
            pairs(&[
                ("2026-01-01T00:00:10Z", "fire"),
                ("2026-01-01T00:00:11Z", "fire"),
                ("2026-01-01T00:00:12Z", "fire"),
            ])
        );
        assert!(plan.done);
        assert_eq!(plan.covered, utc("2026-01-01T00:00:12.5Z"));
        // Nothing is due before its time.
        let early = super::plan(
            &config,
            utc("2026-01-01T00:00:13Z"),
            None,
            utc("2026-01-01T00:00:12.5Z"),
            None,
        )
        .unwrap();
        assert!(early.steps.is_empty());
    }

    #[test]
    fn after_an_outage_the_latest_in_the_window_fires_and_the_rest_are_missed() {
        // Every 2 s; the last pass was at :10.5, now is :30.5; the window is 5 s.
        let config = every("PT2S", Duration::from_secs(5), Catchup::Latest);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:10Z"),
            None,
            utc("2026-01-01T00:00:30.5Z"),
            since("2026-01-01T00:00:10.5Z"),
        )
        .unwrap();
        assert_eq!(
            fates(&plan),
            pairs(&[
                // Due while a server still ran: it fires.
                ("2026-01-01T00:00:10Z", "fire"),
                // Outside the window (before :25.5).
                ("2026-01-01T00:00:12Z", "missed"),
                ("2026-01-01T00:00:14Z", "missed"),
                ("2026-01-01T00:00:16Z", "missed"),
                ("2026-01-01T00:00:18Z", "missed"),
                ("2026-01-01T00:00:20Z", "missed"),
                ("2026-01-01T00:00:22Z", "missed"),
                ("2026-01-01T00:00:24Z", "missed"),
                // Inside it, but not the latest.
                ("2026-01-01T00:00:26Z", "missed"),
                ("2026-01-01T00:00:28Z", "missed"),
                ("2026-01-01T00:00:30Z", "catch-up"),
            ])
        );
        let reasons: Vec<&str> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::NotRun { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            reasons[0].contains("outside the catch-up window of 5s"),
            "{}",
            reasons[0]
        );
        assert!(
            reasons[0].contains("no server ran from 2026-01-01T00:00:10.500Z"),
            "{}",
            reasons[0]
        );
        assert!(reasons[7].contains("only the latest"), "{}", reasons[7]);
        assert!(
            reasons[7].contains("2026-01-01T00:00:30Z"),
            "{}",
            reasons[7]
        );
    }

    #[test]
    fn catch_up_all_fires_every_time_in_the_window() {
        let config = every("PT2S", Duration::from_secs(5), Catchup::All);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:12Z"),
            None,
            utc("2026-01-01T00:00:30.5Z"),
            since("2026-01-01T00:00:10.5Z"),
        )
        .unwrap();
        let fates = fates(&plan);
        assert_eq!(
            fates[fates.len() - 3..],
            pairs(&[
                ("2026-01-01T00:00:26Z", "catch-up"),
                ("2026-01-01T00:00:28Z", "catch-up"),
                ("2026-01-01T00:00:30Z", "catch-up"),
            ])
        );
        assert_eq!(fates.iter().filter(|(_, f)| f == "missed").count(), 7);
    }

    #[test]
    fn a_zero_window_fires_none_of_the_missed_times() {
        let config = every("PT2S", Duration::ZERO, Catchup::Latest);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:12Z"),
            None,
            utc("2026-01-01T00:00:20Z"),
            since("2026-01-01T00:00:11Z"),
        )
        .unwrap();
        let fates = fates(&plan);
        assert_eq!(fates.len(), 5);
        assert!(fates.iter().all(|(_, f)| f == "missed"), "{fates:?}");
        // `all` fires none of them either.
        let config = every("PT2S", Duration::ZERO, Catchup::All);
        let plan = super::plan(
            &config,
            utc("2026-01-01T00:00:12Z"),
            None,
            utc("2026-01-01T00:00:20Z"),
            since("2026-01-01T00:00:11Z"),
        )
        .unwrap();
        assert!(self::fates(&plan).iter().all(|(_, f)| f == "missed"));
    }

    #[test]
    fn the_first_pass_ever_counts_as_an_outage() {
        let config = every("PT1M", Duration::from_secs(60), Catchup::Latest);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:00Z"),
            None,
            utc("2026-01-01T00:03:30Z"),
            Some(Outage { since: None }),
        )
        .unwrap();
        assert_eq!(
            fates(&plan),
            pairs(&[
                ("2026-01-01T00:00:00Z", "missed"),
                ("2026-01-01T00:01:00Z", "missed"),
                ("2026-01-01T00:02:00Z", "missed"),
                ("2026-01-01T00:03:00Z", "catch-up"),
            ])
        );
    }

    #[test]
    fn a_week_down_stores_a_thousand_misses_and_one_summary() {
        let config = every("PT1S", Duration::from_secs(60), Catchup::Latest);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:01Z"),
            None,
            utc("2026-01-08T00:00:00Z"),
            since("2026-01-01T00:00:00.5Z"),
        )
        .unwrap();
        let fates = fates(&plan);
        // 1000 one by one (the oldest), the rest outside the window summed up, the 59
        // inside it that are not the latest summed up (the budget is spent), the latest.
        assert_eq!(fates.len(), 1000 + 1 + 1 + 1);
        assert!(fates[..1000].iter().all(|(_, f)| f == "missed"));
        let outside = 7 * 86_400 - 60 - 1000;
        assert_eq!(
            fates[1000],
            (
                "2026-01-01T00:16:41Z..2026-01-07T23:59:00Z".to_owned(),
                format!("{outside} missed")
            )
        );
        assert_eq!(
            fates[1001],
            (
                "2026-01-07T23:59:01Z..2026-01-07T23:59:59Z".to_owned(),
                "59 missed".to_owned()
            )
        );
        assert_eq!(
            fates[1002],
            ("2026-01-08T00:00:00Z".to_owned(), "catch-up".to_owned())
        );
        let Step::Summary { reason, .. } = &plan.steps[1000] else {
            panic!("not a summary");
        };
        assert!(
            reason.starts_with(&format!("{outside} more times from")),
            "{reason}"
        );
    }

    #[test]
    fn a_paused_rule_records_each_time_with_its_note() {
        let config = every("PT1S", Duration::from_secs(60), Catchup::Latest);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:01Z"),
            Some("deploy freeze"),
            utc("2026-01-01T00:00:03Z"),
            None,
        )
        .unwrap();
        assert_eq!(
            fates(&plan),
            pairs(&[
                ("2026-01-01T00:00:01Z", "paused"),
                ("2026-01-01T00:00:02Z", "paused"),
                ("2026-01-01T00:00:03Z", "paused"),
            ])
        );
        let Step::NotRun { reason, .. } = &plan.steps[0] else {
            panic!("not an event");
        };
        assert_eq!(reason, "the rule is paused: deploy freeze");
        // Paused through an outage: still paused, capped the same way.
        let long = super::plan(
            &config,
            utc("2026-01-01T00:00:01Z"),
            Some(""),
            utc("2026-01-01T01:00:00Z"),
            since("2026-01-01T00:00:00Z"),
        )
        .unwrap();
        let fates = self::fates(&long);
        assert_eq!(fates.len(), 1001);
        assert_eq!(fates[1000].1, "2600 paused");
    }

    #[test]
    fn many_due_times_are_fired_a_thousand_a_round() {
        let config = every("PT1S", Duration::from_secs(60), Catchup::Latest);
        let plan = plan(
            &config,
            utc("2026-01-01T00:00:01Z"),
            None,
            utc("2026-01-01T00:30:00Z"),
            None,
        )
        .unwrap();
        assert_eq!(plan.steps.len(), FIRE_CAP);
        assert!(!plan.done);
        assert_eq!(plan.covered, utc("2026-01-01T00:16:40Z"));
        // The next round goes on from there.
        let rest = super::plan(
            &config,
            config.next_after(plan.covered).unwrap().unwrap(),
            None,
            utc("2026-01-01T00:30:00Z"),
            None,
        )
        .unwrap();
        assert_eq!(rest.steps.len(), 30 * 60 - FIRE_CAP);
        assert!(rest.done);
    }

    #[test]
    fn cron_times_missed_across_a_dst_change_are_planned_in_order() {
        // Hourly in Berlin, down from 23:30 UTC on 28 March to 03:10 UTC on 29 March
        // (the night the clocks spring forward): 00, 01, 03, 04 local times, then 05
        // local (03:00 UTC) is within the 15-minute window and fires.
        let config = schedule::check(
            &ScheduleInput {
                cron: "0 * * * *".into(),
                time_zone: "Europe/Berlin".into(),
                catchup_window: Some(Duration::from_secs(15 * 60)),
                ..ScheduleInput::default()
            },
            utc("2026-03-01T00:00:00Z"),
        )
        .unwrap();
        let plan = plan(
            &config,
            utc("2026-03-28T23:00:00Z"),
            None,
            utc("2026-03-29T03:10:00Z"),
            since("2026-03-28T22:30:00Z"),
        )
        .unwrap();
        assert_eq!(
            fates(&plan),
            pairs(&[
                ("2026-03-28T23:00:00Z", "missed"),
                ("2026-03-29T00:00:00Z", "missed"),
                ("2026-03-29T01:00:00Z", "missed"),
                ("2026-03-29T02:00:00Z", "missed"),
                ("2026-03-29T03:00:00Z", "catch-up"),
            ])
        );
    }
}
