//! Who is calling and what they may do: tokens become identities ([`auth`]), tokens are
//! managed ([`tokens`]), and the first admin token is made at start-up ([`bootstrap`]).
//! Users are managed in [`users`], workspaces and their members in [`workspaces`], and
//! what a role allows in a workspace is decided in [`roles`]. Dashboard sign-ins are kept in [`sessions`].
//!
//! Which role may call which method is the API edge's rule table; what a caller may do
//! with a particular thing is checked by the domain with the caller's identity.

pub mod auth;
pub mod bootstrap;
pub mod roles;
pub mod sessions;
pub mod tokens;
pub mod users;
pub mod workspaces;
