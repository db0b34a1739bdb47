//! Rebuilds the crate when a migration is added or changed: `store::db` embeds
//! `migrations/` with `embed_migrations!`, which cargo does not otherwise watch, so a new
//! migration alone would leave the binaries applying the old set.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
