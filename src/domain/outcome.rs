//! Task outcomes: how a unit of work ended, as the application reports it.
//!
//! A task is the work a user asked for (answer a ticket, review a pull request); its calls are
//! the events that name it (`task_id`, else `run_id`, else `trace_id`). Whether it succeeded is
//! known only to the application, which says so with an outcome record (`POST /v1/outcomes`)
//! or a `task_outcome` on one of its calls — before, with, or long after the calls. Several
//! outcomes may arrive for one task: the latest by outcome timestamp wins, ties by arrival.
//! This module holds the nouns only; parsing is in `ingest::outcome`, storage in
//! `store::queries::outcomes`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::event::Dimensions;

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskOutcome {
    /// The work was done to the user's satisfaction.
    Success,
    /// The work was attempted and failed (bad answer, error, rejected result).
    Failure,
    /// The user or the agent gave up before a result.
    Abandoned,
}

impl TaskOutcome {
    pub const ALL: [TaskOutcome; 3] = [
        TaskOutcome::Success,
        TaskOutcome::Failure,
        TaskOutcome::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Success => "success",
            TaskOutcome::Failure => "failure",
            TaskOutcome::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskOutcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!("unknown outcome {s:?}; expected \"success\", \"failure\" or \"abandoned\"")
            })
    }
}

/// Where an outcome record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeSource {
    /// `POST /v1/outcomes` (or the demo loader, which uses the same path).
    Api,
    /// The `task_outcome` field of a usage event.
    Event,
}

impl OutcomeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeSource::Api => "api",
            OutcomeSource::Event => "event",
        }
    }
}

/// One outcome report, normalized and ready to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeRecord {
    /// The project of the task (the writing key's; see `keys::Principal::project_for_write`).
    pub project: String,
    pub task_id: String,
    pub outcome: TaskOutcome,
    /// When the outcome was decided; the latest wins.
    pub ts: DateTime<Utc>,
    /// Idempotency key: the record's `id`, else derived from task, outcome and an explicit
    /// timestamp; `None` when neither exists (a resend then adds a row, which changes nothing
    /// because the newest identical outcome wins).
    pub idem_key: Option<String>,
    /// What the success was worth (revenue, points), in the unit the caller chose.
    pub value: Option<Decimal>,
    /// Cost outside the LLM calls that the task caused (human review, redo), in USD.
    pub rework_cost: Option<Decimal>,
    pub feature: Option<String>,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub metadata: Option<String>,
    pub source: OutcomeSource,
}

/// The task a call belongs to: its `task_id`, else its `run_id`, else its `trace_id`.
pub fn task_key(dims: &Dimensions) -> Option<&str> {
    dims.task_id
        .as_deref()
        .or(dims.run_id.as_deref())
        .or(dims.trace_id.as_deref())
}
