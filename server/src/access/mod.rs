//! Who is calling and what they may do: tokens, identities, the first admin token.

pub mod auth;
pub mod bootstrap;
