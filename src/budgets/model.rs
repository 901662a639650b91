//! What a budget is: its scope (a filter over dimensions), its split, its period, its amount
//! and thresholds, or its run cap; and the wire form ([`BudgetSpec`]) the API and the config
//! file use, with the validation that turns one into the other.
//!
//! Everything here is pure: no I/O, no clock. Matching a scope against an in-memory event
//! ([`Scope::matches`]) and against stored events (the SQL in `store::queries::budgets`) must
//! agree, so both read the same [`Condition`]s and the SQL side uses only `=` and `LIKE` with
//! the glob translated here ([`Pattern::like`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::period::Period;
use crate::domain::dimension::Dimension;
use crate::domain::event::PricedEvent;
use crate::domain::money::to_api_string;

/// Default thresholds, in percent of the amount.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];

/// Most thresholds one budget may have, and the largest one (percent).
const MAX_THRESHOLDS: usize = 10;
const MAX_THRESHOLD_PERCENT: u32 = 1000;

/// A budget definition that does not make sense (400 at the API, a start-up error in config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BudgetError {
    /// The field at fault, e.g. `scope.model` or `thresholds`.
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> BudgetError {
    BudgetError {
        field: field.into(),
        message: message.into(),
    }
}

/// Where a budget or channel was declared; config-file ones are managed by the file only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Api,
    Config,
    Demo,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Config => "config",
            Source::Demo => "demo",
        }
    }

    pub fn parse(s: &str) -> Source {
        match s {
            "config" => Source::Config,
            "demo" => Source::Demo,
            _ => Source::Api,
        }
    }
}

/// One value of a scope condition: exact text, or a glob where `*` matches any run of
/// characters. Matching is case-sensitive, like the costs API's filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_glob(&self) -> bool {
        self.text.contains('*')
    }

    /// True when `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        if !self.is_glob() {
            return self.text == value;
        }
        let parts: Vec<&str> = self.text.split('*').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if value.len() < first.len() + last.len()
            || !value.starts_with(first)
            || !value.ends_with(last)
        {
            return false;
        }
        // Leftmost matching of the middle pieces leaves the most room for the rest.
        let mut rest = &value[first.len()..value.len() - last.len()];
        for middle in &parts[1..parts.len() - 1] {
            match rest.find(middle) {
                Some(pos) => rest = &rest[pos + middle.len()..],
                None => return false,
            }
        }
        true
    }

    /// The same pattern as a SQL `LIKE` pattern with `\` as the escape character.
    pub fn like(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 4);
        for ch in self.text.chars() {
            match ch {
                '*' => out.push('%'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(ch);
                }
                c => out.push(c),
            }
        }
        out
    }
}

/// Events whose `dim` matches any of `patterns` (for `tag`: having a matching tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub dim: Dimension,
    pub patterns: Vec<Pattern>,
}

/// All conditions must hold. An empty scope is the whole project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub conditions: Vec<Condition>,
}

impl Scope {
    /// True when the event falls in the scope (the project is checked by the caller).
    pub fn matches(&self, e: &PricedEvent) -> bool {
        self.conditions.iter().all(|c| {
            values(e, c.dim)
                .iter()
                .any(|v| c.patterns.iter().any(|p| p.matches(v)))
        })
    }

    /// True when a call described by `given` (dimension → values) falls in the scope; a scope
    /// dimension missing from `given` does not match.
    pub fn matches_given(&self, given: &HashMap<Dimension, Vec<String>>) -> bool {
        self.conditions.iter().all(|c| {
            given
                .get(&c.dim)
                .is_some_and(|vs| vs.iter().any(|v| c.patterns.iter().any(|p| p.matches(v))))
        })
    }

    /// The wire form: dimension → one value or a list.
    pub fn to_spec(&self) -> BTreeMap<String, OneOrMany> {
        self.conditions
            .iter()
            .map(|c| {
                let mut texts: Vec<String> =
                    c.patterns.iter().map(|p| p.as_str().to_string()).collect();
                let v = if texts.len() == 1 {
                    OneOrMany::One(texts.remove(0))
                } else {
                    OneOrMany::Many(texts)
                };
                (c.dim.name().to_string(), v)
            })
            .collect()
    }
}

/// The values an event has for a dimension (none, one, or its tags).
pub fn values(e: &PricedEvent, dim: Dimension) -> Vec<&str> {
    match dim {
        Dimension::Tag => e.event.dims.tags.iter().map(String::as_str).collect(),
        _ => value(e, dim).into_iter().collect(),
    }
}

/// The event's value for a dimension, without allocating (the rollups ask it for every event
/// and dimension); for `tag`, the first tag.
pub fn value(e: &PricedEvent, dim: Dimension) -> Option<&str> {
    let ev = &e.event;
    let d = &ev.dims;
    match dim {
        Dimension::UserId => d.user_id.as_deref(),
        Dimension::TeamId => d.team_id.as_deref(),
        Dimension::Project => d.project.as_deref(),
        Dimension::ApiKeyId => d.api_key_id.as_deref(),
        Dimension::CustomerId => d.customer_id.as_deref(),
        Dimension::Feature => d.feature.as_deref(),
        Dimension::Tag => d.tags.first().map(String::as_str),
        Dimension::Model => Some(ev.model.as_str()),
        Dimension::Provider => ev.provider.as_deref(),
        Dimension::Route => Some(ev.route.as_str()),
        Dimension::Agent => d.agent.as_deref(),
        Dimension::Status => Some(ev.status.as_str()),
        Dimension::CostSource => Some(e.cost_source.as_str()),
        Dimension::TaskId => d.task_id.as_deref(),
        Dimension::RunId => d.run_id.as_deref(),
        Dimension::Operation => Some(ev.operation.as_str()),
        Dimension::ServiceTier => Some(ev.service_tier.as_str()),
        Dimension::ErrorType => ev.error_type.as_deref(),
        Dimension::SessionId => d.session_id.as_deref(),
    }
}

/// What a spend budget watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRule {
    /// One budget per value of this dimension; events without a value are not counted.
    pub split_by: Option<Dimension>,
    pub period: Period,
    pub amount: Decimal,
    /// Ascending, distinct, in percent.
    pub thresholds: Vec<Decimal>,
    pub forecast: bool,
}

/// What a run cap watches: each run (or task) on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCap {
    /// `run_id` or `task_id`.
    pub per: Dimension,
    pub max_cost: Option<Decimal>,
    pub max_calls: Option<i64>,
}

/// The two kinds of budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Spend(SpendRule),
    RunCap(RunCap),
}

/// A validated budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub id: String,
    pub project: String,
    pub name: String,
    /// Grows when a change alters what is evaluated; alerts are keyed by it.
    pub revision: i32,
    pub source: Source,
    pub scope: Scope,
    pub kind: Kind,
    /// Channel ids.
    pub channels: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Budget {
    /// The dimension budgets are split by: `split_by`, or the run/task id of a run cap.
    pub fn split_dim(&self) -> Option<Dimension> {
        match &self.kind {
            Kind::Spend(s) => s.split_by,
            Kind::RunCap(c) => Some(c.per),
        }
    }

    /// The definition as it is stored and shown (channels as ids).
    pub fn to_spec(&self) -> BudgetSpec {
        let mut spec = BudgetSpec {
            name: self.name.clone(),
            project: Some(self.project.clone()),
            scope: self.scope.to_spec(),
            channels: self.channels.clone(),
            ..BudgetSpec::default()
        };
        match &self.kind {
            Kind::Spend(s) => {
                spec.split_by = s.split_by.map(|d| d.name().to_string());
                spec.period = Some(s.period.to_string());
                spec.tz = s.period.tz().map(|tz| tz.name().to_string());
                spec.amount = Some(s.amount);
                spec.thresholds = Some(s.thresholds.clone());
                spec.forecast = Some(s.forecast);
            }
            Kind::RunCap(c) => {
                spec.run_cap = Some(RunCapSpec {
                    per: Some(c.per.name().to_string()),
                    max_cost: c.max_cost,
                    max_calls: c.max_calls,
                });
            }
        }
        spec
    }

    /// True when `other` evaluates differently (so its thresholds must re-arm).
    pub fn evaluates_like(&self, other: &Budget) -> bool {
        self.project == other.project && self.scope == other.scope && self.kind == other.kind
    }
}

/// A scope value: one text or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The wire and config form of a budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub name: String,
    /// The project whose events count (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Dimension → value or list of values; `*` in a value is a glob.
    #[serde(default)]
    pub scope: BTreeMap<String, OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<String>,
    /// `day`, `week`, `month`, `quarter`, or `rolling N hours|days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// IANA time zone of calendar periods (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// USD, as a decimal string (or an integer).
    #[serde(
        default,
        with = "decimal_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub amount: Option<Decimal>,
    /// Percents of the amount (default 50, 80, 100).
    #[serde(
        default,
        with = "decimal_text::option_vec",
        skip_serializing_if = "Option::is_none"
    )]
    pub thresholds: Option<Vec<Decimal>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<bool>,
    /// Channel ids or names (in the budget's project).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Makes this a run cap instead of a spend budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_cap: Option<RunCapSpec>,
}

/// The wire form of a run cap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCapSpec {
    /// `run_id` (default) or `task_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
    #[serde(
        default,
        with = "decimal_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_cost: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<i64>,
}

/// A spec checked and parsed, its channels not yet resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub project: String,
    pub name: String,
    pub scope: Scope,
    pub kind: Kind,
    pub channels: Vec<String>,
}

/// Longest name, project and scope value.
const MAX_TEXT: usize = 256;

impl BudgetSpec {
    /// Checks everything that does not need the database.
    pub fn check(&self) -> Result<Checked, BudgetError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > MAX_TEXT {
            return Err(err("name", "must be 1–256 characters"));
        }
        let project = self
            .project
            .as_deref()
            .map(str::trim)
            .unwrap_or(crate::keys::DEFAULT_PROJECT);
        if project.is_empty() || project.len() > MAX_TEXT {
            return Err(err("project", "must be 1–256 characters"));
        }
        let scope = check_scope(&self.scope)?;
        let kind = match &self.run_cap {
            Some(cap) => {
                for (field, present) in [
                    ("split_by", self.split_by.is_some()),
                    ("period", self.period.is_some()),
                    ("tz", self.tz.is_some()),
                    ("amount", self.amount.is_some()),
                    ("thresholds", self.thresholds.is_some()),
                    ("forecast", self.forecast.is_some()),
                ] {
                    if present {
                        return Err(err(
                            field,
                            "a run cap watches each run on its own; use run_cap.max_cost / run_cap.max_calls instead",
                        ));
                    }
                }
                Kind::RunCap(check_cap(cap)?)
            }
            None => Kind::Spend(self.check_spend()?),
        };
        let mut channels: Vec<String> = Vec::new();
        for c in &self.channels {
            let c = c.trim();
            if c.is_empty() {
                return Err(err("channels", "a channel id or name must not be empty"));
            }
            if !channels.iter().any(|x| x == c) {
                channels.push(c.to_string());
            }
        }
        Ok(Checked {
            project: project.to_string(),
            name: name.to_string(),
            scope,
            kind,
            channels,
        })
    }

    fn check_spend(&self) -> Result<SpendRule, BudgetError> {
        let split_by = match self.split_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => {
                let dim: Dimension = name.parse().map_err(|e: String| err("split_by", e))?;
                if dim == Dimension::Project {
                    return Err(err(
                        "split_by",
                        "a budget belongs to one project; create one budget per project",
                    ));
                }
                Some(dim)
            }
        };
        let tz: Tz = match self.tz.as_deref() {
            None => Tz::UTC,
            Some(t) => t.trim().parse().map_err(|_| {
                err(
                    "tz",
                    format!(
                        "unknown time zone {t:?}; use an IANA name such as America/Los_Angeles"
                    ),
                )
            })?,
        };
        let period_text = self.period.as_deref().ok_or_else(|| {
            err(
                "period",
                "required: day, week, month, quarter, or rolling N hours|days",
            )
        })?;
        let period = Period::parse(period_text, tz).map_err(|m| err("period", m))?;
        if matches!(period, Period::Rolling { .. }) && self.tz.is_some() {
            return Err(err("tz", "a rolling period has no calendar; leave tz out"));
        }
        let amount = self
            .amount
            .ok_or_else(|| err("amount", "required: the budget in USD, e.g. \"500.00\""))?;
        if amount <= Decimal::ZERO {
            return Err(err("amount", "must be positive"));
        }
        if amount.scale() > 12 {
            return Err(err("amount", "at most 12 decimal places"));
        }
        let mut thresholds = match &self.thresholds {
            None => DEFAULT_THRESHOLDS
                .iter()
                .map(|t| Decimal::from(*t))
                .collect(),
            Some(list) => list.clone(),
        };
        if thresholds.is_empty() && self.forecast != Some(true) {
            return Err(err(
                "thresholds",
                "an empty list alerts on nothing; give percents or turn forecast on",
            ));
        }
        if thresholds.len() > MAX_THRESHOLDS {
            return Err(err(
                "thresholds",
                format!("at most {MAX_THRESHOLDS} thresholds"),
            ));
        }
        for t in &thresholds {
            if *t <= Decimal::ZERO || *t > Decimal::from(MAX_THRESHOLD_PERCENT) {
                return Err(err(
                    "thresholds",
                    format!(
                        "{t} is not a percent between 0 (exclusive) and {MAX_THRESHOLD_PERCENT}"
                    ),
                ));
            }
            if t.scale() > 4 {
                return Err(err("thresholds", format!("{t}: at most 4 decimal places")));
            }
        }
        thresholds = thresholds.into_iter().map(|t| t.normalize()).collect();
        thresholds.sort();
        thresholds.dedup();
        let forecast = self.forecast.unwrap_or(false);
        if forecast && !matches!(period, Period::Calendar { .. }) {
            return Err(err(
                "forecast",
                "forecasts project to the end of a calendar period; a rolling window has none",
            ));
        }
        Ok(SpendRule {
            split_by,
            period,
            amount: amount.normalize(),
            thresholds,
            forecast,
        })
    }
}

fn check_scope(scope: &BTreeMap<String, OneOrMany>) -> Result<Scope, BudgetError> {
    let mut conditions = Vec::new();
    for (key, value) in scope {
        let field = format!("scope.{key}");
        let dim: Dimension = key.parse().map_err(|e: String| err(&field, e))?;
        if dim == Dimension::Project {
            return Err(err(
                field,
                "a budget's project is its `project` field, not a scope condition",
            ));
        }
        let mut patterns = Vec::new();
        for v in value.clone().into_vec() {
            if v.trim().is_empty() {
                return Err(err(&field, "values must not be empty"));
            }
            if v.len() > MAX_TEXT {
                return Err(err(&field, "values must be at most 256 characters"));
            }
            patterns.push(Pattern::new(&v));
        }
        if patterns.is_empty() {
            return Err(err(&field, "give at least one value"));
        }
        conditions.push(Condition { dim, patterns });
    }
    // BTreeMap order is by name: the canonical order, so equal scopes compare equal.
    Ok(Scope { conditions })
}

fn check_cap(cap: &RunCapSpec) -> Result<RunCap, BudgetError> {
    let per = match cap.per.as_deref().map(str::trim) {
        None | Some("run_id") => Dimension::RunId,
        Some("task_id") => Dimension::TaskId,
        Some(other) => {
            return Err(err(
                "run_cap.per",
                format!("{other:?}: expected run_id or task_id"),
            ))
        }
    };
    if cap.max_cost.is_none() && cap.max_calls.is_none() {
        return Err(err("run_cap", "give max_cost (USD), max_calls, or both"));
    }
    if let Some(c) = cap.max_cost {
        if c <= Decimal::ZERO || c.scale() > 12 {
            return Err(err(
                "run_cap.max_cost",
                "must be positive, with at most 12 decimal places",
            ));
        }
    }
    if let Some(n) = cap.max_calls {
        if n <= 0 {
            return Err(err("run_cap.max_calls", "must be positive"));
        }
    }
    Ok(RunCap {
        per,
        max_cost: cap.max_cost.map(|c| c.normalize()),
        max_calls: cap.max_calls,
    })
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.id, self.project, self.name)
    }
}

/// Shows a percent or amount without trailing zeros.
pub fn show(d: Decimal) -> String {
    to_api_string(d)
}

/// Exact decimals from JSON or TOML: strings and integers; a JSON number keeps its exact text
/// (serde_json's arbitrary precision); a TOML float is refused, because it has already been
/// through a binary float.
pub mod decimal_text {
    use rust_decimal::Decimal;
    use serde::de::{self, MapAccess, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt;

    struct Exact;

    impl<'de> Visitor<'de> for Exact {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal as a string (\"12.50\") or an integer")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            crate::ingest::fields::parse_decimal(v)
                .ok_or_else(|| E::custom(format!("{v:?} is not a decimal number")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            Err(E::custom(format!(
                "{v} was read as a binary float; write it as a string (\"{v}\") so it stays exact"
            )))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Decimal, A::Error> {
            // serde_json with arbitrary_precision hands numbers over as a one-entry map holding
            // their source text; rust_decimal reads that text exactly.
            <Decimal as Deserialize>::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }

    fn exact<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(Exact)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(d) => s.serialize_str(&d.normalize().to_string()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            struct Opt;
            impl<'de> Visitor<'de> for Opt {
                type Value = Option<Decimal>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a decimal or null")
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    exact(d).map(Some)
                }
            }
            d.deserialize_option(Opt)
        }
    }

    pub mod option_vec {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<Vec<Decimal>>, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            match v {
                Some(list) => {
                    let mut seq = s.serialize_seq(Some(list.len()))?;
                    for d in list {
                        seq.serialize_element(&d.normalize().to_string())?;
                    }
                    seq.end()
                }
                None => s.serialize_none(),
            }
        }

        struct Elem(Decimal);
        impl<'de> Deserialize<'de> for Elem {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Percents are not money: a TOML float such as 87.5 is read through its
                // shortest decimal text, which is what the user wrote.
                struct Percent;
                impl<'de> Visitor<'de> for Percent {
                    type Value = Decimal;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a percent")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
                        Exact.visit_str(v)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
                        Ok(Decimal::from(v))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
                        Ok(Decimal::from(v))
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
                        crate::ingest::fields::parse_decimal(&v.to_string())
                            .ok_or_else(|| E::custom(format!("{v} is not a percent")))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Decimal, A::Error> {
                        Exact.visit_map(map)
                    }
                }
                d.deserialize_any(Percent).map(Elem)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<Decimal>>, D::Error> {
            struct List;
            impl<'de> Visitor<'de> for List {
                type Value = Option<Vec<Decimal>>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a list of percents")
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    d.deserialize_seq(self)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some(Elem(d)) = seq.next_element()? {
                        out.push(d);
                    }
                    Ok(Some(out))
                }
            }
            d.deserialize_option(List)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> BudgetSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn globs_match_like_their_sql_translation_would() {
        let p = Pattern::new("gpt-*");
        assert!(p.matches("gpt-4o") && p.matches("gpt-") && !p.matches("o3-gpt-4"));
        assert!(
            !p.matches("GPT-4o"),
            "case-sensitive like the costs filters"
        );
        let p = Pattern::new("*mini*");
        assert!(p.matches("gpt-4o-mini") && p.matches("mini") && !p.matches("mni"));
        let p = Pattern::new("a*b*a");
        assert!(p.matches("aba") && p.matches("abba") && !p.matches("ab") && !p.matches("a"));
        assert_eq!(Pattern::new("100%_*").like(), "100\\%\\_%");
        assert!(Pattern::new("exact").matches("exact") && !Pattern::new("exact").matches("exac"));
    }

    #[test]
    fn a_spend_budget_with_defaults() {
        let c = spec(
            r#"{"name": " search ", "scope": {"feature": "search", "model": ["gpt-*", "o3"]},
                         "period": "month", "tz": "America/Los_Angeles", "amount": "500.50"}"#,
        )
        .check()
        .unwrap();
        assert_eq!(c.name, "search");
        assert_eq!(c.project, "default");
        assert_eq!(c.scope.conditions.len(), 2);
        assert_eq!(c.scope.conditions[0].dim, Dimension::Feature);
        let Kind::Spend(s) = c.kind else { panic!() };
        assert_eq!(s.amount, dec!(500.5));
        assert_eq!(s.thresholds, vec![dec!(50), dec!(80), dec!(100)]);
        assert!(!s.forecast);
    }

    #[test]
    fn amounts_are_exact_and_floats_are_refused_where_money_is_concerned() {
        let c = spec(r#"{"name": "x", "period": "day", "amount": 0.1, "thresholds": [87.5, 50]}"#)
            .check()
            .unwrap();
        let Kind::Spend(s) = c.kind else { panic!() };
        assert_eq!(s.amount, dec!(0.1));
        assert_eq!(s.thresholds, vec![dec!(50), dec!(87.5)]);
        // A TOML float amount has been through f64 already: refused with a hint.
        let toml_err = figment::Figment::from(figment::providers::Serialized::defaults(
            serde_json::json!({"name": "x"}),
        ))
        .merge(
            <figment::providers::Toml as figment::providers::Format>::string(
                "amount = 0.1\nperiod = \"day\"",
            ),
        )
        .extract::<BudgetSpec>()
        .unwrap_err();
        assert!(toml_err.to_string().contains("string"), "{toml_err}");
    }

    #[test]
    fn errors_name_the_field() {
        let field = |json: &str| spec(json).check().unwrap_err().field;
        assert_eq!(field(r#"{"name": "x", "period": "day"}"#), "amount");
        assert_eq!(field(r#"{"name": "x", "amount": "1"}"#), "period");
        assert_eq!(
            field(r#"{"name": "x", "period": "fortnight", "amount": "1"}"#),
            "period"
        );
        assert_eq!(
            field(r#"{"name": "x", "period": "day", "amount": "-1"}"#),
            "amount"
        );
        assert_eq!(
            field(r#"{"name": "x", "period": "day", "amount": "1", "tz": "Mars/Base"}"#),
            "tz"
        );
        assert_eq!(
            field(r#"{"name": "x", "period": "day", "amount": "1", "scope": {"colour": "red"}}"#),
            "scope.colour"
        );
        assert_eq!(
            field(r#"{"name": "x", "period": "day", "amount": "1", "scope": {"project": "b"}}"#),
            "scope.project"
        );
        assert_eq!(
            field(r#"{"name": "x", "period": "day", "amount": "1", "split_by": "colour"}"#),
            "split_by"
        );
        assert_eq!(
            field(r#"{"name": "x", "period": "day", "amount": "1", "thresholds": [0]}"#),
            "thresholds"
        );
        assert_eq!(
            field(r#"{"name": "x", "period": "rolling 7 days", "amount": "1", "forecast": true}"#),
            "forecast"
        );
        assert_eq!(field(r#"{"name": "x", "run_cap": {}}"#), "run_cap");
        assert_eq!(
            field(r#"{"name": "x", "run_cap": {"max_calls": 5}, "amount": "1"}"#),
            "amount"
        );
        assert_eq!(
            field(r#"{"name": "x", "run_cap": {"per": "user_id", "max_calls": 5}}"#),
            "run_cap.per"
        );
        assert_eq!(
            field(r#"{"name": "", "period": "day", "amount": "1"}"#),
            "name"
        );
    }

    #[test]
    fn the_stored_form_round_trips() {
        let c = spec(
            r#"{"name": "cap", "project": "p", "scope": {"agent": "code-*"},
                         "run_cap": {"max_cost": "10", "max_calls": 100}}"#,
        )
        .check()
        .unwrap();
        let b = Budget {
            id: "bud_1".into(),
            project: c.project,
            name: c.name,
            revision: 1,
            source: Source::Api,
            scope: c.scope,
            kind: c.kind,
            channels: vec!["ch_1".into()],
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let text = serde_json::to_string(&b.to_spec()).unwrap();
        let again = serde_json::from_str::<BudgetSpec>(&text)
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(again.kind, b.kind);
        assert_eq!(again.scope, b.scope);
        assert!(text.contains(r#""max_cost":"10""#), "{text}");
    }
}
