//! The pass over event rules: new completed artifacts and ended work requests that
//! match a rule become its events.

use crate::error::{Error, Result};
use crate::triggers::Triggers;

/// One pass over the active and paused event rules. Returns how many events it stored.
pub async fn pass(triggers: &Triggers) -> Result<usize> {
    let _ = triggers;
    Err(Error::internal("event rule passes are not built yet"))
}
