//! The dimensions analytics can group and filter by, as one closed list.
//!
//! Group-by keys and filters arrive as user text; they are only ever turned into SQL through
//! [`Dimension::column`], whose output comes from this fixed list, so no query parameter can
//! reach SQL as text.

use std::fmt;
use std::str::FromStr;

/// A groupable, filterable attribute of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    UserId,
    TeamId,
    Project,
    ApiKeyId,
    CustomerId,
    Feature,
    Tag,
    Model,
    Provider,
    Route,
    Agent,
    Status,
    CostSource,
    TaskId,
    RunId,
    Operation,
    ServiceTier,
    ErrorType,
    SessionId,
}

impl Dimension {
    /// Every dimension, in the order the API documents them.
    pub const ALL: [Dimension; 19] = [
        Dimension::UserId,
        Dimension::TeamId,
        Dimension::Project,
        Dimension::ApiKeyId,
        Dimension::CustomerId,
        Dimension::Feature,
        Dimension::Tag,
        Dimension::Model,
        Dimension::Provider,
        Dimension::Route,
        Dimension::Agent,
        Dimension::Status,
        Dimension::CostSource,
        Dimension::TaskId,
        Dimension::RunId,
        Dimension::Operation,
        Dimension::ServiceTier,
        Dimension::ErrorType,
        Dimension::SessionId,
    ];

    /// The name used in query parameters and answers.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::UserId => "user_id",
            Dimension::TeamId => "team_id",
            Dimension::Project => "project",
            Dimension::ApiKeyId => "api_key_id",
            Dimension::CustomerId => "customer_id",
            Dimension::Feature => "feature",
            Dimension::Tag => "tag",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
            Dimension::Route => "route",
            Dimension::Agent => "agent",
            Dimension::Status => "status",
            Dimension::CostSource => "cost_source",
            Dimension::TaskId => "task_id",
            Dimension::RunId => "run_id",
            Dimension::Operation => "operation",
            Dimension::ServiceTier => "service_tier",
            Dimension::ErrorType => "error_type",
            Dimension::SessionId => "session_id",
        }
    }

    /// The events-table column holding the dimension. `tag` is the list column `tags`, which
    /// queries unnest.
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Tag => "tags",
            other => other.name(),
        }
    }

    /// Comma-separated list of every name, for error messages.
    pub fn all_names() -> String {
        Self::ALL.map(Dimension::name).join(", ")
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dimension {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown dimension {s:?}; expected one of {}",
                    Dimension::all_names()
                )
            })
    }
}
