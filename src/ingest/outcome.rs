//! Outcome records (`POST /v1/outcomes`) and the native events' `task_outcome` → [`OutcomeRecord`].
//!
//! Outcome bodies take the same forms and limits as event bodies (one object, an array,
//! NDJSON; gzip/zstd) and are split by `body`. Each record becomes an [`OutcomeRecord`] or a
//! [`Reject`] naming its index, field and reason, exactly like an event; a bad record never
//! takes its batch down. Unknown fields are rejected so a typo never drops data. Amounts
//! (`value`, `rework_cost`) are read from their exact text, never through a float. This module
//! does no I/O: the writer stores what it returns.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::fields::{self, FieldError, Limits};
use super::{body, BodyKind, IngestError, Reject};
use crate::domain::event::Dimensions;
use crate::domain::money::{max_event_cost, round_cost};
use crate::domain::outcome::{task_key, OutcomeRecord, OutcomeSource, TaskOutcome};
use crate::keys::Principal;

/// The `source_format` of rejected outcome records in the dead-letter table.
pub const SOURCE_FORMAT: &str = "outcome";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOutcome<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    task_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    rework_cost: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    feature: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    customer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    project: Option<Cow<'a, str>>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// What parsing an outcome body needs besides the body.
pub struct Context<'a> {
    pub limits: &'a Limits,
    pub max_records: usize,
    /// The receive time: default timestamp and reference for "too far in the future".
    pub now: DateTime<Utc>,
    /// Who writes: decides the project of each outcome.
    pub principal: &'a Principal,
}

/// A body after parsing.
#[derive(Debug, Default)]
pub struct OutcomeBatch {
    pub outcomes: Vec<OutcomeRecord>,
    pub rejects: Vec<Reject>,
}

/// Starts the idempotency key derived for an outcome without an `id`: its task, outcome and
/// timestamp. A stored copy of such an outcome has the same timestamp, so the store looks for
/// it only among the outcomes of the batch's time span; explicit ids may not start with it.
pub const DERIVED_KEY_PREFIX: &str = "derived\u{1f}";

/// Decodes and splits a whole body and reads each record.
pub fn parse_body(
    bytes: &[u8],
    kind: BodyKind,
    ctx: &Context<'_>,
) -> Result<OutcomeBatch, IngestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        IngestError::Unreadable(format!(
            "body is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    let (_layout, records) = body::split(text, kind, ctx.max_records)?;
    let mut batch = OutcomeBatch::default();
    for record in records {
        let parsed = match record.syntax_error {
            Some(reason) => Err(FieldError::new("(record)", reason)),
            None => parse_record(record.text, ctx),
        };
        match parsed {
            Ok(outcome) => batch.outcomes.push(outcome),
            Err(e) => batch.rejects.push(Reject {
                index: record.index,
                source_format: SOURCE_FORMAT.into(),
                field: e.field,
                reason: e.reason,
                raw: record.text.to_string(),
            }),
        }
    }
    Ok(batch)
}

/// Reads one outcome record.
pub fn parse_record(text: &str, ctx: &Context<'_>) -> Result<OutcomeRecord, FieldError> {
    if !text.trim_start().starts_with('{') {
        return Err(FieldError::new(
            "(record)",
            format!("expected a JSON object, got {}", fields::json_kind(text)),
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let wire: WireOutcome<'_> =
        serde_path_to_error::deserialize(de).map_err(FieldError::from_serde)?;
    let lim = ctx.limits;
    let task_id = fields::required_str("task_id", wire.task_id, lim)?;
    let outcome: TaskOutcome = fields::required_str("outcome", wire.outcome, lim)?
        .trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|e: String| FieldError::new("outcome", e))?;
    let explicit_ts = wire
        .timestamp
        .map(|raw| fields::timestamp("timestamp", &raw, ctx.now))
        .transpose()?;
    let ts = explicit_ts.unwrap_or(ctx.now);
    let idem_key = match fields::opt_str("id", wire.id, lim)? {
        // The prefix marks keys that name their outcome's own time, which the store relies on.
        Some(id) if id.starts_with(DERIVED_KEY_PREFIX) => {
            return Err(FieldError::new(
                "id",
                "must not start with \"derived\" and the U+001F separator: Tally reserves it \
                 for the ids it derives",
            ));
        }
        Some(id) => Some(id),
        // Without an id, the same task, outcome and stated time is the same report; a record
        // without a timestamp has nothing stable to derive a key from.
        None => explicit_ts.map(|t| {
            format!(
                "{DERIVED_KEY_PREFIX}{task_id}\u{1f}{outcome}\u{1f}{}",
                t.timestamp_micros()
            )
        }),
    };
    let record_project = fields::opt_str("project", wire.project, lim)?;
    let project = ctx
        .principal
        .project_for_write(record_project.as_deref())
        .map_err(|reason| FieldError::new("project", reason))?;
    Ok(OutcomeRecord {
        project,
        task_id,
        outcome,
        ts,
        idem_key,
        value: wire.value.map(|raw| amount("value", raw)).transpose()?,
        rework_cost: wire
            .rework_cost
            .map(|raw| amount("rework_cost", raw))
            .transpose()?,
        feature: fields::opt_str("feature", wire.feature, lim)?,
        user_id: fields::opt_str("user_id", wire.user_id, lim)?,
        customer_id: fields::opt_str("customer_id", wire.customer_id, lim)?,
        metadata: wire
            .metadata
            .map(|raw| fields::metadata("metadata", raw, lim))
            .transpose()?
            .filter(|m| !m.is_empty()),
        source: OutcomeSource::Api,
    })
}

/// A non-negative decimal from a JSON string or number, stored at the money scale.
fn amount(field: &str, raw: &RawValue) -> Result<Decimal, FieldError> {
    let text = raw.get();
    let inner = match text.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(s) => s,
        None if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => text,
        None => {
            return Err(FieldError::new(
                field,
                format!("expected a decimal string or a number, got {text}"),
            ))
        }
    };
    let value = fields::parse_decimal(inner)
        .ok_or_else(|| FieldError::new(field, format!("{inner:?} is not a decimal number")))?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(FieldError::new(
            field,
            format!("must not be negative ({value})"),
        ));
    }
    let rounded = round_cost(value);
    if rounded > max_event_cost() {
        return Err(FieldError::new(
            field,
            format!(
                "{value} is larger than {} (the stored range)",
                max_event_cost()
            ),
        ));
    }
    Ok(rounded)
}

/// The `task_outcome` of a native event: the outcome of the task the call belongs to. The
/// call must name that task (`task_id`, else `run_id`, else `trace_id`, the same key the tasks
/// API uses), or the outcome could never be joined to anything.
pub fn event_task_outcome(
    raw: Option<&str>,
    dims: &Dimensions,
) -> Result<Option<TaskOutcome>, FieldError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let outcome: TaskOutcome = raw
        .to_ascii_lowercase()
        .parse()
        .map_err(|e: String| FieldError::new("task_outcome", e))?;
    if task_key(dims).is_none() {
        return Err(FieldError::new(
            "task_outcome",
            "needs task_id (or run_id or trace_id) to say which task it ends",
        ));
    }
    Ok(Some(outcome))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::keys::Role;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn parse_as(text: &str, principal: &Principal) -> Result<OutcomeRecord, FieldError> {
        let limits = Limits::default();
        let ctx = Context {
            limits: &limits,
            max_records: 10,
            now: now(),
            principal,
        };
        parse_record(text, &ctx)
    }

    fn parse(text: &str) -> Result<OutcomeRecord, FieldError> {
        parse_as(text, &Principal::superuser())
    }

    #[test]
    fn a_full_record() {
        let o = parse(
            r#"{"id":"o-1","task_id":"t-1","outcome":"Success","value":"12.50","rework_cost":0.25,
                "timestamp":"2026-11-21T10:00:00Z","feature":"search","user_id":"u","customer_id":"c",
                "project":"p","metadata":{"reviewer":"ana"}}"#,
        )
        .unwrap();
        assert_eq!(o.task_id, "t-1");
        assert_eq!(o.outcome, TaskOutcome::Success);
        assert_eq!(o.value, Some(dec!(12.5)));
        assert_eq!(o.rework_cost, Some(dec!(0.25)));
        assert_eq!(o.ts, Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap());
        assert_eq!(o.idem_key.as_deref(), Some("o-1"));
        assert_eq!(o.project, "p");
        assert_eq!(o.feature.as_deref(), Some("search"));
        assert_eq!(o.metadata.as_deref(), Some(r#"{"reviewer":"ana"}"#));
        assert_eq!(o.source, OutcomeSource::Api);
    }

    #[test]
    fn defaults_and_derived_keys() {
        let o = parse(r#"{"task_id":"t","outcome":"failure"}"#).unwrap();
        assert_eq!(o.ts, now());
        assert_eq!(
            o.idem_key, None,
            "no id and no timestamp: nothing to derive from"
        );
        assert_eq!(o.project, "default");
        let a = parse(r#"{"task_id":"t","outcome":"failure","timestamp":"2026-11-21T10:00:00Z"}"#)
            .unwrap();
        let b =
            parse(r#"{"task_id":"t","outcome":"failure","timestamp":"2026-11-21T11:00:00+01:00"}"#)
                .unwrap();
        assert!(a.idem_key.is_some());
        assert_eq!(
            a.idem_key, b.idem_key,
            "the same instant is the same report"
        );
        let taken = parse(r#"{"id":"derived\u001ft","task_id":"t","outcome":"failure"}"#);
        assert_eq!(
            taken.unwrap_err().field,
            "id",
            "the derived keys' prefix is reserved"
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            (r#"{"outcome":"success"}"#, "task_id"),
            (r#"{"task_id":"t"}"#, "outcome"),
            (r#"{"task_id":"t","outcome":"done"}"#, "outcome"),
            (
                r#"{"task_id":"t","outcome":"success","value":"-1"}"#,
                "value",
            ),
            (
                r#"{"task_id":"t","outcome":"success","rework_cost":"abc"}"#,
                "rework_cost",
            ),
            (
                r#"{"task_id":"t","outcome":"success","value":"1e9"}"#,
                "value",
            ),
            (
                r#"{"task_id":"t","outcome":"success","timestamp":"yesterday"}"#,
                "timestamp",
            ),
            (
                r#"{"task_id":"t","outcome":"success","timestamp":"2026-11-30T00:00:00Z"}"#,
                "timestamp",
            ),
            (
                r#"{"task_id":"t","outcome":"success","colour":1}"#,
                "colour",
            ),
            (r#"[1]"#, "(record)"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text} → {e}");
        }
    }

    #[test]
    fn a_project_key_writes_only_its_project() {
        let key = Principal {
            role: Role::Ingest,
            project: Some("a".into()),
            key_id: None,
        };
        assert_eq!(
            parse_as(r#"{"task_id":"t","outcome":"success"}"#, &key)
                .unwrap()
                .project,
            "a"
        );
        let e = parse_as(r#"{"task_id":"t","outcome":"success","project":"b"}"#, &key).unwrap_err();
        assert_eq!(e.field, "project");
    }

    #[test]
    fn bodies_keep_valid_records_and_name_bad_ones() {
        let limits = Limits::default();
        let principal = Principal::superuser();
        let ctx = Context {
            limits: &limits,
            max_records: 10,
            now: now(),
            principal: &principal,
        };
        let body = "{\"task_id\":\"a\",\"outcome\":\"success\"}\n{broken\n{\"task_id\":\"b\",\"outcome\":\"nope\"}\n";
        let batch = parse_body(body.as_bytes(), BodyKind::Sniff, &ctx).unwrap();
        assert_eq!(batch.outcomes.len(), 1);
        let rejected: Vec<(usize, &str)> = batch
            .rejects
            .iter()
            .map(|r| (r.index, r.field.as_str()))
            .collect();
        assert_eq!(rejected, vec![(1, "(record)"), (2, "outcome")]);
        assert!(batch.rejects.iter().all(|r| r.source_format == "outcome"));
    }

    #[test]
    fn native_events_carry_a_task_outcome_only_with_a_task() {
        let now = now();
        let lim = Limits::default();
        let ev = super::super::native::parse(
            r#"{"model":"m","task_id":"t","task_outcome":"abandoned"}"#,
            now,
            &lim,
        )
        .unwrap();
        assert_eq!(ev.task_outcome, Some(TaskOutcome::Abandoned));
        let ev = super::super::native::parse(
            r#"{"model":"m","trace_id":"tr","task_outcome":"success"}"#,
            now,
            &lim,
        )
        .unwrap();
        assert_eq!(ev.task_outcome, Some(TaskOutcome::Success));
        assert_eq!(
            super::super::native::parse(r#"{"model":"m"}"#, now, &lim)
                .unwrap()
                .task_outcome,
            None
        );
        for text in [
            r#"{"model":"m","task_outcome":"success"}"#,
            r#"{"model":"m","task_id":"t","task_outcome":"maybe"}"#,
        ] {
            let e = super::super::native::parse(text, now, &lim).unwrap_err();
            assert_eq!(e.field, "task_outcome", "{text}");
        }
    }
}
