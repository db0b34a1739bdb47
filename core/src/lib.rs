//! `berth-core`: Berth's domain and its store. Everything the server knows and decides
//! lives here; the server crate only starts it up (`app`) and speaks gRPC for it (`api`).
//!
//! The rooms, from the bottom up, and what each may use:
//!
//! - [`store`]: the pool and migrations, the schema, rows, sealed secrets. Uses nothing
//!   above it.
//! - [`error`]: the one error type and its code table. Uses nothing above it.
//! - [`live`]: this replica's in-process state: worker sessions and the one outbox to
//!   them, wake-ups, NOTIFY, leases. It may name the domain's value types (ids, states,
//!   specs) but never calls into the domain.
//! - [`access`]: tokens and identities.
//! - [`work`]: work requests: specs, the lifecycle (the one door to terminal states),
//!   the scheduler, the recorder of worker reports, dependencies, workflows, the queue,
//!   logs, and the front the API calls ([`work::requests`]).
//! - [`fleet`]: workers: their registry and a worker's session with this replica.
//! - [`artifacts`]: artifacts, their files in the file stores, collections and the
//!   collector of what expired. Beside `work`; it may read work requests but changes
//!   their state only through `work::lifecycle`.
//! - [`templates`]: named, versioned job and workflow specs and their releases, and
//!   runs made from them. Beside `work`; it submits through `work::requests` only.
//! - [`services`]: long-running containers from a template's release, scaled, restarted,
//!   moved and rolled forward by a reconciler. Above `templates`; it makes and stops
//!   requests through `work::own` only.
//! - [`triggers`]: rules that make work on a schedule, an artifact or an ended request,
//!   and their events. Above `templates`; it makes work through `Templates::run` only.
//! - [`topics`]: publish/subscribe with durable subscriptions and acknowledged delivery.
//!   Beside `work`; it reads workspaces and roles only.
//! - [`events`]: Berth's own events, from the outbox every state change writes in its
//!   transaction onto the system topics and to [`notifications`].
//! - [`notifications`]: webhook and email channels, event reactions, deliveries with
//!   retries and their log.
//!
//! Architecture invariant: this crate knows no wire protocol. It does not depend on
//! tonic, prost or the generated `berth.v1` types (its Cargo.toml says so and
//! `tests/tests/layers.rs` checks it), so a wire type cannot cross into the domain.
//! New domains (artifacts, templates, services, triggers, topics) get rooms of their own
//! here, beside `work`.

pub mod access;
pub mod artifacts;
pub mod error;
pub mod events;
pub mod fleet;
pub mod live;
pub mod notifications;
pub mod observe;
pub mod services;
pub mod store;
pub mod templates;
pub mod topics;
pub mod triggers;
pub mod work;
