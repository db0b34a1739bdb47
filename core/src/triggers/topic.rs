//! `topic` rules: fire when a message is published on a topic. The type is registered so
//! that its name is taken and its configuration has a home, but topics do not exist yet:
//! every such rule is refused, saying so.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::triggers::TopicInput;

/// A topic rule as it will be stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub topic: String,
}

/// Refuses every topic rule (FAILED_PRECONDITION): there are no topics to publish on yet.
pub fn check(input: &TopicInput) -> Result<TopicConfig> {
    Err(Error::FailedPrecondition(format!(
        "topic rules are not available yet: topics (and publishing on {:?}) come with a later version of the server; use a schedule, artifact or completion rule",
        input.topic
    )))
}
