//! Query parameters shared by the analytics endpoints: time range, interval, time zone,
//! group-by, filters, order and limit.
//!
//! Parameters arrive as text and leave as typed values; nothing here builds SQL. Unknown
//! parameters and unknown group keys are errors that name them, because a silently ignored
//! typo (`feture=search`) would answer a different question than the one asked.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::time::{self, Interval};
use crate::domain::dimension::Dimension;

/// A bad query parameter (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// `[from, to)`; an open end is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Events whose dimension equals one of `values`; `None` matches events without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub dim: Dimension,
    pub values: Vec<Option<String>>,
}

/// Sort key: a group key, `bucket`, or one of the endpoint's measures, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub key: String,
    pub descending: bool,
}

/// The common parameters, parsed.
#[derive(Debug, Clone)]
pub struct Common {
    pub range: TimeRange,
    pub interval: Interval,
    pub tz: Tz,
    pub group_by: Vec<Dimension>,
    pub filters: Vec<Filter>,
    pub order: Option<OrderBy>,
    pub limit: usize,
}

/// Default and largest row limits of one answer.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 100_000;

/// Parses the common parameters. `extra` names endpoint-specific parameters that are allowed
/// and returned untouched; `measures` are the names `order` may use besides group keys.
pub fn parse_common(
    pairs: &[(String, String)],
    extra: &[&str],
    measures: &[&str],
) -> Result<(Common, Vec<(String, String)>), ParamError> {
    let mut tz = Tz::UTC;
    if let Some((_, v)) = pairs.iter().find(|(k, _)| k == "tz") {
        tz = v.parse().map_err(|_| {
            ParamError(format!(
                "unknown time zone {v:?}; use an IANA name such as Europe/Berlin"
            ))
        })?;
    }
    let mut common = Common {
        range: TimeRange::default(),
        interval: Interval::None,
        tz,
        group_by: Vec::new(),
        filters: Vec::new(),
        order: None,
        limit: DEFAULT_LIMIT,
    };
    let mut extras = Vec::new();
    let mut unknown = Vec::new();
    let mut order_raw = None;
    for (key, value) in pairs {
        match key.as_str() {
            "tz" => {}
            "from" => {
                common.range.from = Some(
                    time::parse_bound(value, tz, false)
                        .map_err(|e| ParamError(format!("from: {e}")))?,
                )
            }
            "to" => {
                common.range.to = Some(
                    time::parse_bound(value, tz, true)
                        .map_err(|e| ParamError(format!("to: {e}")))?,
                )
            }
            "interval" => common.interval = Interval::parse(value).map_err(ParamError)?,
            "group_by" => {
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let dim: Dimension = name
                        .parse()
                        .map_err(|e: String| ParamError(format!("group_by: {e}")))?;
                    if common.group_by.contains(&dim) {
                        return Err(ParamError(format!("group_by: {name} is listed twice")));
                    }
                    common.group_by.push(dim);
                }
            }
            "order" => order_raw = Some(value.clone()),
            "limit" => {
                let n: usize = value.parse().map_err(|_| {
                    ParamError(format!("limit: {value:?} is not a positive integer"))
                })?;
                if n == 0 || n > MAX_LIMIT {
                    return Err(ParamError(format!(
                        "limit: must be between 1 and {MAX_LIMIT}"
                    )));
                }
                common.limit = n;
            }
            k if extra.contains(&k) => extras.push((key.clone(), value.clone())),
            k => match k.parse::<Dimension>() {
                Ok(dim) => add_filter(&mut common.filters, dim, value),
                Err(_) => unknown.push(k.to_string()),
            },
        }
    }
    if !unknown.is_empty() {
        let mut allowed = vec!["from", "to", "interval", "tz", "group_by", "order", "limit"];
        allowed.extend_from_slice(extra);
        return Err(ParamError(format!(
            "unknown parameter{} {}; expected {} or a filter by dimension ({})",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            allowed.join(", "),
            Dimension::all_names()
        )));
    }
    if let (Some(from), Some(to)) = (common.range.from, common.range.to) {
        if from >= to {
            return Err(ParamError(format!(
                "from ({}) must be before to ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            )));
        }
    }
    if let Some(raw) = order_raw {
        common.order = Some(parse_order(
            &raw,
            &common.group_by,
            common.interval,
            measures,
        )?);
    }
    Ok((common, extras))
}

/// `feature=a,b` and `feature=a&feature=b` both mean "a or b"; an empty value means "none".
fn add_filter(filters: &mut Vec<Filter>, dim: Dimension, raw: &str) {
    let values: Vec<Option<String>> = raw
        .split(',')
        .map(|v| v.trim())
        .map(|v| {
            if v.is_empty() {
                None
            } else {
                Some(v.to_string())
            }
        })
        .collect();
    match filters.iter_mut().find(|f| f.dim == dim) {
        Some(existing) => existing.values.extend(values),
        None => filters.push(Filter { dim, values }),
    }
}

fn parse_order(
    raw: &str,
    group_by: &[Dimension],
    interval: Interval,
    measures: &[&str],
) -> Result<OrderBy, ParamError> {
    let raw = raw.trim();
    let (key, descending) = if let Some(k) = raw.strip_prefix('-') {
        (k, true)
    } else if let Some((k, dir)) = raw.split_once(':') {
        match dir {
            "asc" => (k, false),
            "desc" => (k, true),
            other => {
                return Err(ParamError(format!(
                    "order: direction {other:?} must be asc or desc"
                )))
            }
        }
    } else {
        // Measures sort largest first by default; keys alphabetically.
        (raw, measures.contains(&raw))
    };
    let is_key =
        group_by.iter().any(|d| d.name() == key) || (key == "bucket" && interval != Interval::None);
    if !is_key && !measures.contains(&key) {
        let mut options: Vec<&str> = group_by.iter().map(|d| d.name()).collect();
        if interval != Interval::None {
            options.push("bucket");
        }
        options.extend_from_slice(measures);
        return Err(ParamError(format!(
            "order: cannot sort by {key:?}; expected one of {}",
            options.join(", ")
        )));
    }
    Ok(OrderBy {
        key: key.to_string(),
        descending,
    })
}

/// Splits a raw query string into decoded pairs.
pub fn pairs(raw_query: Option<&str>) -> Vec<(String, String)> {
    raw_query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Result<Common, ParamError> {
        parse_common(&pairs(Some(q)), &["format"], &["cost", "requests"]).map(|(c, _)| c)
    }

    #[test]
    fn group_by_filters_and_order() {
        let c =
            p("group_by=feature,model&feature=search,chat&model=gpt-4o&model=&order=cost&limit=5")
                .unwrap();
        assert_eq!(c.group_by, vec![Dimension::Feature, Dimension::Model]);
        assert_eq!(
            c.filters[0].values,
            vec![Some("search".into()), Some("chat".into())]
        );
        assert_eq!(c.filters[1].values, vec![Some("gpt-4o".into()), None]);
        assert_eq!(
            c.order,
            Some(OrderBy {
                key: "cost".into(),
                descending: true
            })
        );
        assert_eq!(c.limit, 5);
        assert!(
            !p("group_by=feature&order=feature")
                .unwrap()
                .order
                .unwrap()
                .descending
        );
        assert!(!p("order=requests:asc").unwrap().order.unwrap().descending);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let msg = |q: &str| p(q).unwrap_err().0;
        assert!(msg("feture=search").contains("feture"));
        assert!(msg("group_by=colour").contains("colour"));
        assert!(msg("group_by=model,model").contains("twice"));
        assert!(msg("order=price").contains("price"));
        assert!(msg("order=bucket").contains("bucket"));
        assert!(msg("tz=Mars/Olympus").contains("Mars/Olympus"));
        assert!(msg("from=2026-11-02&to=2026-11-01").contains("before"));
        assert!(msg("limit=0").contains("limit"));
        assert!(msg("interval=fortnight").contains("fortnight"));
        assert!(p("format=csv").is_ok());
    }

    #[test]
    fn sql_looking_values_stay_values() {
        let c = p("feature=x'%20OR%201=1--&group_by=model").unwrap();
        assert_eq!(c.filters[0].values, vec![Some("x' OR 1=1--".into())]);
        assert!(p("group_by=model;DROP%20TABLE%20events").is_err());
    }
}
