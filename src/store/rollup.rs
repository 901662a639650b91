//! Hourly rollups: the costs measures pre-summed per UTC hour over the common dimensions.
//!
//! Dashboards ask the same few questions (total, daily series, top features, users, models)
//! over months of events; summing a few thousand rollup rows instead of millions of events is
//! what keeps them instant. The rollups are maintained in the same transaction as the events
//! that change them, so a reader never sees one without the other:
//!
//! - **appends** (the common case): the writer's commit hook sums the commit's fresh events in
//!   Rust, by hour and key, and appends those partial rows. Duplicates never reach the hook
//!   (de-duplication ran first), and a late event simply adds to its own, older hour.
//! - **updates** (gap-fill from a duplicate, re-pricing): the touched hours are rebuilt from
//!   the events, which is exact whatever the update changed.
//! - **compaction**: partial rows of the hours touched since the last compaction are merged
//!   once enough have accumulated, so each hour keeps about one row per key.
//!
//! Every reader sums, so partial rows are never wrong, only less compact. A question can use a
//! rollup when all its group keys and filters are rollup dimensions, its buckets start on whole
//! hours (true for UTC and whole-hour zones; a `+05:30` day is answered from the events) and
//! its range holds at least one whole hour: the partial hours at the range's edges ("the last
//! 7 days" starts at the current minute) are read from the events ([`Span`]).
//! `store::queries::costs` makes that choice; a test checks that both paths give the same
//! answer for every group-by on the demo data, with aligned and unaligned ranges.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::Connection;
use rust_decimal::Decimal;

use super::arrow::{stored_decimal, ts_string};
use super::{CommitHook, StoreError};
use crate::analytics::params::{Common, TimeRange};
use crate::domain::dimension::Dimension;
use crate::domain::event::PricedEvent;

/// One rollup table and the dimensions it keeps.
#[derive(Debug)]
pub struct Rollup {
    pub table: &'static str,
    pub dims: &'static [Dimension],
}

/// The rollups, smallest first: a question uses the first that has all its dimensions.
pub const ROLLUPS: &[Rollup] = &[
    Rollup {
        table: "rollup_hourly",
        dims: &[
            Dimension::Project,
            Dimension::Provider,
            Dimension::Model,
            Dimension::Route,
            Dimension::Feature,
            Dimension::Agent,
            Dimension::TeamId,
            Dimension::ApiKeyId,
            Dimension::Operation,
            Dimension::ServiceTier,
            Dimension::Status,
            Dimension::CostSource,
            Dimension::ErrorType,
        ],
    },
    Rollup {
        table: "rollup_hourly_people",
        dims: &[Dimension::Project, Dimension::UserId, Dimension::CustomerId],
    },
];

/// The measure columns of every rollup, in table order.
pub const MEASURES: &str = "cost, reported_cost, computed_cost, requests, errors, input_tokens, \
    output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, unpriced_requests";

/// The measures as sums over events (what a rollup row holds), for building from the events.
const FROM_EVENTS: &[&str] = &[
    "sum(cost)",
    "sum(reported_cost) FILTER (WHERE currency = 'USD')",
    "sum(computed_cost)",
    "count(*)",
    "count(*) FILTER (WHERE status = 'error')",
    "coalesce(sum(input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in), 0)",
    "coalesce(sum(output + audio_out + image_out), 0)",
    "coalesce(sum(cache_read), 0)",
    "coalesce(sum(cache_write_5m + cache_write_1h), 0)",
    "coalesce(sum(reasoning), 0)",
    "count(*) FILTER (WHERE cost_source = 'unpriced')",
];

/// The start of a UTC hour, from a TIMESTAMPTZ column, without ICU (see docs on time zones).
const HOUR_OF_TS: &str = "to_timestamp((epoch_us(ts) // 3600000000) * 3600)";

const HOUR_US: i64 = 3_600_000_000;

/// Merge partial rows once this many were appended since the last compaction.
const COMPACT_AFTER_ROWS: usize = 50_000;

/// The rollup that can answer a question over these group keys and filters with these bucket
/// starts; `None` when only the events can. The range's edges may fall anywhere: the partial
/// hours at either end are read from the events (see [`Span`]).
pub fn choose(common: &Common, buckets: &[DateTime<Utc>]) -> Option<&'static Rollup> {
    if !buckets.iter().all(|t| on_hour(*t)) || Span::of(&common.range).is_none() {
        return None;
    }
    let dims: Vec<Dimension> = common
        .group_by
        .iter()
        .copied()
        .chain(common.filters.iter().map(|f| f.dim))
        .collect();
    covering(&dims)
}

/// The smallest rollup that keeps every one of `dims`.
pub fn covering(dims: &[Dimension]) -> Option<&'static Rollup> {
    ROLLUPS
        .iter()
        .find(|r| dims.iter().all(|d| r.dims.contains(d)))
}

fn on_hour(t: DateTime<Utc>) -> bool {
    t.timestamp_micros().rem_euclid(HOUR_US) == 0
}

/// How a range splits between a rollup and the events: the whole hours inside it come from the
/// rollup, the partial hours at its edges (a "last 7 days" range starts at the current minute)
/// from the events, so the answer is exact wherever the range starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The rollup's part: `[from, to)`, both on whole hours (or open).
    pub hours: TimeRange,
    /// The events' part below the hours: `[range.from, hours.from)`, when not empty.
    pub head: Option<TimeRange>,
    /// The events' part above the hours: `[hours.to, range.to)`, when not empty.
    pub tail: Option<TimeRange>,
}

impl Span {
    /// `None` when the range holds no whole hour (the events answer it alone).
    pub fn of(range: &TimeRange) -> Option<Span> {
        let up = |t: DateTime<Utc>| {
            let us = t.timestamp_micros();
            DateTime::from_timestamp_micros(us + (HOUR_US - us.rem_euclid(HOUR_US)) % HOUR_US)
        };
        let down = |t: DateTime<Utc>| {
            let us = t.timestamp_micros();
            DateTime::from_timestamp_micros(us - us.rem_euclid(HOUR_US))
        };
        let hours = TimeRange {
            from: match range.from {
                Some(t) => Some(up(t)?),
                None => None,
            },
            to: match range.to {
                Some(t) => Some(down(t)?),
                None => None,
            },
        };
        if let (Some(f), Some(t)) = (hours.from, hours.to) {
            if f >= t {
                return None;
            }
        }
        let part = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
            (from != to).then_some(TimeRange { from, to })
        };
        Some(Span {
            hours,
            head: range.from.and_then(|f| part(Some(f), hours.from)),
            tail: range.to.and_then(|t| part(hours.to, Some(t))),
        })
    }
}

/// Sums of one key in one hour, as a rollup row holds them.
#[derive(Debug, Default, Clone)]
struct Sums {
    cost: Option<Decimal>,
    reported_cost: Option<Decimal>,
    computed_cost: Option<Decimal>,
    counts: [i64; 8],
}

fn add(slot: &mut Option<Decimal>, v: Option<Decimal>) {
    if let Some(v) = v {
        *slot = Some(slot.unwrap_or_default() + stored_decimal(v));
    }
}

impl Sums {
    fn add(&mut self, p: &PricedEvent) {
        let e = &p.event;
        let t = &e.tokens;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        add(&mut self.cost, p.cost);
        if e.currency.as_deref() == Some("USD") {
            add(&mut self.reported_cost, e.reported_cost);
        }
        add(&mut self.computed_cost, p.computed_cost);
        let counts = [
            1,
            i64::from(e.status.as_str() == "error"),
            [
                t.input_uncached,
                t.cache_read,
                t.cache_write_5m,
                t.cache_write_1h,
                t.audio_in,
                t.image_in,
            ]
            .into_iter()
            .map(n)
            .fold(0i64, i64::saturating_add),
            [t.output, t.audio_out, t.image_out]
                .into_iter()
                .map(n)
                .fold(0i64, i64::saturating_add),
            n(t.cache_read),
            n(t.cache_write_5m).saturating_add(n(t.cache_write_1h)),
            n(t.reasoning),
            i64::from(p.cost_source.as_str() == "unpriced"),
        ];
        for (slot, c) in self.counts.iter_mut().zip(counts) {
            *slot = slot.saturating_add(c);
        }
    }
}

/// The commit hook that keeps the rollups: see the module documentation.
#[derive(Default)]
pub struct Rollups {
    /// Hours (UTC, in hours since the epoch) with partial rows since the last compaction, and
    /// how many partial rows were appended meanwhile. Only the writer thread touches it.
    pending: Mutex<(HashSet<i64>, usize)>,
}

impl CommitHook for Rollups {
    fn name(&self) -> &'static str {
        "rollups"
    }

    fn after_append(&self, conn: &Connection, fresh: &[&PricedEvent]) -> Result<(), StoreError> {
        let mut appended = 0;
        let mut hours = HashSet::new();
        for rollup in ROLLUPS {
            // Keyed by the dimension values first, so a lookup borrows the event's values and
            // only a key not seen yet is allocated.
            let mut groups: HashMap<Vec<Option<&str>>, HashMap<i64, Sums>> = HashMap::new();
            let mut key: Vec<Option<&str>> = Vec::with_capacity(rollup.dims.len());
            for p in fresh {
                let hour = p.event.ts.timestamp_micros().div_euclid(HOUR_US);
                key.clear();
                key.extend(
                    rollup
                        .dims
                        .iter()
                        .map(|d| crate::budgets::model::value(p, *d)),
                );
                match groups.get_mut(key.as_slice()) {
                    Some(by_hour) => by_hour.entry(hour).or_default().add(p),
                    None => {
                        let mut by_hour = HashMap::new();
                        by_hour.entry(hour).or_insert_with(Sums::default).add(p);
                        groups.insert(key.clone(), by_hour);
                    }
                }
            }
            let mut app = conn.appender(rollup.table)?;
            let groups = groups
                .iter()
                .flat_map(|(key, by_hour)| by_hour.iter().map(move |(h, s)| (h, key, s)));
            let mut appended_here = 0;
            for (hour, key, s) in groups {
                appended_here += 1;
                let ts = DateTime::<Utc>::from_timestamp_micros(hour * HOUR_US)
                    .map(ts_string)
                    .ok_or_else(|| StoreError::Other(format!("hour {hour} out of range")))?;
                let mut row: Vec<Value> = Vec::with_capacity(1 + key.len() + 11);
                row.push(Value::Text(ts));
                row.extend(
                    key.iter()
                        .map(|k| k.map_or(Value::Null, |v| Value::Text(v.to_string()))),
                );
                for money in [s.cost, s.reported_cost, s.computed_cost] {
                    // Text into a DECIMAL column: DuckDB parses it exactly.
                    row.push(money.map_or(Value::Null, |d| Value::Text(d.to_string())));
                }
                row.extend(s.counts.iter().map(|c| Value::BigInt(*c)));
                let params: Vec<&dyn duckdb::ToSql> =
                    row.iter().map(|v| v as &dyn duckdb::ToSql).collect();
                app.append_row(params.as_slice())?;
                hours.insert(*hour);
            }
            app.flush()?;
            appended += appended_here;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.0.extend(hours);
        pending.1 += appended;
        if pending.1 >= COMPACT_AFTER_ROWS {
            let hours: Vec<i64> = pending.0.iter().copied().collect();
            compact(conn, &hours)?;
            pending.0.clear();
            pending.1 = 0;
        }
        Ok(())
    }
}

/// Fills the scratch table of hours that compaction and rebuilds work on.
fn stage_hours(conn: &Connection, hours: &[i64]) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS rollup_hours (h TIMESTAMPTZ NOT NULL);
         DELETE FROM rollup_hours;",
    )?;
    let mut app = conn.appender("rollup_hours")?;
    for h in hours {
        if let Some(ts) = DateTime::<Utc>::from_timestamp_micros(h * HOUR_US) {
            app.append_row([ts_string(ts)])?;
        }
    }
    app.flush()?;
    Ok(())
}

/// Merges the partial rows of these hours into one row per key; keys whose requests cancel
/// out (all moved elsewhere by a rebuild) disappear.
pub fn compact(conn: &Connection, hours: &[i64]) -> Result<(), StoreError> {
    if hours.is_empty() {
        return Ok(());
    }
    stage_hours(conn, hours)?;
    for r in ROLLUPS {
        let dims: Vec<&str> = r.dims.iter().map(|d| d.column()).collect();
        let sums: Vec<String> = MEASURES.split(", ").map(|m| format!("sum({m})")).collect();
        conn.execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE rollup_merged AS
                 SELECT ts, {dims}, {sums} FROM {table}
                 WHERE ts IN (SELECT h FROM rollup_hours)
                 GROUP BY ALL HAVING sum(requests) <> 0;
             DELETE FROM {table} WHERE ts IN (SELECT h FROM rollup_hours);
             INSERT INTO {table} SELECT * FROM rollup_merged;
             DROP TABLE rollup_merged;",
            dims = dims.join(", "),
            sums = sums.join(", "),
            table = r.table,
        ))?;
    }
    Ok(())
}

/// Recomputes these hours of every rollup from the events: after an update changed stored
/// events in place.
pub fn rebuild_hours(conn: &Connection, hours: &[i64]) -> Result<(), StoreError> {
    let (Some(lo), Some(hi)) = (hours.iter().min(), hours.iter().max()) else {
        return Ok(());
    };
    stage_hours(conn, hours)?;
    let bound = |h: i64| {
        DateTime::<Utc>::from_timestamp_micros(h * HOUR_US)
            .map(ts_string)
            .ok_or_else(|| StoreError::Other(format!("hour {h} out of range")))
    };
    // The range lets DuckDB skip row groups by their min/max timestamps; the hour list then
    // picks exactly the touched hours inside it.
    let filter = format!(
        "ts >= CAST('{}' AS TIMESTAMPTZ) AND ts < CAST('{}' AS TIMESTAMPTZ) \
         AND {HOUR_OF_TS} IN (SELECT h FROM rollup_hours)",
        bound(*lo)?,
        bound(hi + 1)?
    );
    for r in ROLLUPS {
        conn.execute_batch(&format!(
            "DELETE FROM {table} WHERE ts IN (SELECT h FROM rollup_hours);
             {insert}",
            table = r.table,
            insert = insert_from_events(r, &filter),
        ))?;
    }
    Ok(())
}

/// `INSERT INTO <rollup> SELECT <sums> FROM events WHERE <filter> GROUP BY hour and keys`.
fn insert_from_events(r: &Rollup, filter: &str) -> String {
    let dims: Vec<&str> = r.dims.iter().map(|d| d.column()).collect();
    format!(
        "INSERT INTO {table} SELECT {HOUR_OF_TS} AS hour, {dims}, {sums}
         FROM events WHERE {filter} GROUP BY ALL;",
        table = r.table,
        dims = dims.join(", "),
        sums = FROM_EVENTS.join(", "),
    )
}

/// Builds the rollups from every stored event, once: on the first start after the migration
/// that added them (a database from before keeps its history answerable from rollups too).
pub fn ensure_built(conn: &Connection) -> Result<(), StoreError> {
    let built: bool = conn
        .query_row("SELECT bool_and(built) FROM rollup_state", [], |r| {
            r.get::<_, Option<bool>>(0)
        })?
        .unwrap_or(false);
    if built {
        return Ok(());
    }
    let started = std::time::Instant::now();
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = (|| -> Result<(), StoreError> {
        for r in ROLLUPS {
            conn.execute_batch(&format!(
                "DELETE FROM {};\n{}",
                r.table,
                insert_from_events(r, "TRUE")
            ))?;
        }
        conn.execute_batch("UPDATE rollup_state SET built = true")?;
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "built the hourly rollups from the stored events"
    );
    Ok(())
}

/// Hours (since the epoch) of the given timestamps in microseconds, for [`rebuild_hours`].
pub fn hours_of(micros: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let set: HashSet<i64> = micros
        .into_iter()
        .map(|us| us.div_euclid(HOUR_US))
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::costs::{CostQuery, CostRow, MAX_BUCKETS};
    use crate::analytics::params::pairs;
    use crate::analytics::time::{self, Interval};
    use crate::store::queries::costs::{self as sql, Source};
    use crate::store::Store;

    /// Every answer of both paths, rows compared field by field (money numerically).
    fn same(a: &[CostRow], b: &[CostRow], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: row counts");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.keys, y.keys, "{what}");
            assert_eq!(x.bucket, y.bucket, "{what}");
            assert_eq!(x.measures, y.measures, "{what}: {:?}", x.keys);
        }
    }

    /// Asks `query` of the events and of the rollups; returns whether a rollup answered.
    async fn compare(store: &Store, query: &str) -> bool {
        let (q, _) = CostQuery::parse(&pairs(Some(query)), &[]).unwrap();
        let c = &q.common;
        let buckets = if c.interval == Interval::None {
            Vec::new()
        } else {
            let (lo, hi) = store.read(sql::span).await.unwrap();
            let (from, to) = (
                c.range.from.or(lo).unwrap(),
                c.range
                    .to
                    .or(hi.map(|h| h + chrono::Duration::hours(1)))
                    .unwrap(),
            );
            time::bucket_starts(from, to, c.interval, c.tz, MAX_BUCKETS).unwrap()
        };
        let used = choose(c, &buckets).is_some();
        let what = query.to_string();
        store
            .read(move |conn| {
                let raw = sql::grouped_from(conn, &q, &buckets, Source::Events)?;
                let rolled = sql::grouped_from(conn, &q, &buckets, Source::Auto)?;
                assert!(!raw.is_empty(), "{what}: the demo has rows");
                same(&rolled, &raw, &what);
                let raw = sql::total_from(conn, &q, Source::Events)?;
                let rolled = sql::total_from(conn, &q, Source::Auto)?;
                assert_eq!(rolled, raw, "{what}: total");
                Ok(())
            })
            .await
            .unwrap();
        used
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rollups_answer_like_the_events_for_every_group_by_on_demo_data() {
        let (_dir, store, cfg) = crate::demo::load::demo_store().await;

        for round in ["as appended", "after compaction"] {
            for dim in Dimension::ALL {
                let eligible = ROLLUPS.iter().any(|r| r.dims.contains(&dim));
                for interval in ["none", "day"] {
                    let query = format!("group_by={}&interval={interval}&limit=100000", dim.name());
                    let used = compare(&store, &query).await;
                    assert_eq!(used, eligible, "{round}: {query}");
                }
            }
            // Hourly buckets, a zone with whole-hour offsets (rollups) and one with a half
            // hour (events), hour-aligned and unaligned ranges, filters, two-key groups.
            for (query, rollup) in [
                ("group_by=feature&interval=hour&limit=100000", true),
                ("group_by=model&interval=day&tz=America/New_York", true),
                ("group_by=model&interval=day&tz=Asia/Kolkata", false),
                ("group_by=provider,model&feature=support-chat,ticket-triage&status=error,success", true),
                ("group_by=user_id,customer_id&interval=week", true),
                ("group_by=feature,user_id", false),
                ("group_by=feature&from=2020-01-01T00:30:00Z", true),
                ("group_by=customer_id&feature=support-chat", false),
                ("group_by=model&session_id=", false),
            ] {
                assert_eq!(compare(&store, query).await, rollup, "{round}: {query}");
            }
            // Ranges that start and end inside hours, as the dashboard's "last 7 days" does:
            // whole hours from the rollup, the partial ones at the edges from the events.
            let at = |t: DateTime<Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .replace('+', "%2B")
            };
            let from = at(cfg.end - chrono::Duration::days(7) + chrono::Duration::minutes(13));
            let to = at(cfg.end - chrono::Duration::hours(30) - chrono::Duration::minutes(29));
            let inside = at(cfg.end - chrono::Duration::hours(30) - chrono::Duration::minutes(45));
            for (query, rollup) in [
                (format!("group_by=feature&from={from}&to={to}"), true),
                (
                    format!("group_by=model&interval=day&from={from}&to={to}"),
                    true,
                ),
                (format!("group_by=user_id&interval=hour&from={from}"), true),
                (format!("group_by=provider&to={to}"), true),
                (format!("group_by=feature&from={inside}&to={to}"), false),
            ] {
                assert_eq!(compare(&store, &query).await, rollup, "{round}: {query}");
            }
            // Merge every hour's partial rows and ask again.
            let hours = store
                .read(|conn| {
                    let mut stmt = conn
                        .prepare("SELECT DISTINCT epoch_us(ts) // 3600000000 FROM rollup_hourly")?;
                    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
                    Ok(rows.collect::<Result<Vec<i64>, _>>()?)
                })
                .await
                .unwrap();
            store
                .writer()
                .exec(move |conn| compact(conn, &hours))
                .await
                .unwrap();
        }
        let (events, rolled): (i64, i64) = store
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rollup_hourly)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert!(
            rolled * 5 < events,
            "compacted: {rolled} rollup rows for {events} events"
        );
    }

    #[test]
    fn choice_needs_a_whole_hour_and_rollup_dimensions() {
        let q = |s: &str| CostQuery::parse(&pairs(Some(s)), &[]).unwrap().0.common;
        let hour = |h: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 1, h, 0, 0).unwrap();
        assert_eq!(
            choose(&q("group_by=feature"), &[]).unwrap().table,
            "rollup_hourly"
        );
        assert_eq!(
            choose(&q("group_by=user_id"), &[]).unwrap().table,
            "rollup_hourly_people"
        );
        assert!(choose(&q("group_by=tag"), &[]).is_none());
        assert!(choose(&q("group_by=feature&user_id=u1"), &[]).is_none());
        // Unaligned edges are read from the events; a range inside one hour has nothing else.
        assert!(choose(&q("from=2026-11-01T00:00:01Z"), &[]).is_some());
        assert!(choose(&q("from=2026-11-01T00:00:01Z&to=2026-11-01T02:00:00Z"), &[]).is_some());
        assert!(choose(&q("from=2026-11-01T00:00:01Z&to=2026-11-01T01:00:00Z"), &[]).is_none());
        assert!(choose(&q("from=2026-11-01T00:00:01Z&to=2026-11-01T00:59:00Z"), &[]).is_none());
        assert!(choose(&q("from=2026-11-01T00:10:00Z&to=2026-11-01T01:50:00Z"), &[]).is_none());
        assert!(choose(&q("from=2026-11-01T05:00:00Z"), &[hour(5), hour(6)]).is_some());
        let half = hour(5) + chrono::Duration::minutes(30);
        assert!(choose(&q(""), &[hour(5), half]).is_none());
    }

    #[test]
    fn a_span_splits_a_range_into_whole_hours_and_partial_edges() {
        let t = |h: u32, m: u32| {
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 1, h, m, 0).unwrap()
        };
        let r = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| TimeRange { from, to };
        let s = Span::of(&r(Some(t(3, 20)), Some(t(7, 5)))).unwrap();
        assert_eq!(s.hours, r(Some(t(4, 0)), Some(t(7, 0))));
        assert_eq!(s.head, Some(r(Some(t(3, 20)), Some(t(4, 0)))));
        assert_eq!(s.tail, Some(r(Some(t(7, 0)), Some(t(7, 5)))));
        let s = Span::of(&r(Some(t(3, 0)), None)).unwrap();
        assert_eq!(
            (s.hours, s.head, s.tail),
            (r(Some(t(3, 0)), None), None, None)
        );
        let s = Span::of(&r(None, Some(t(9, 59)))).unwrap();
        assert_eq!(s.hours, r(None, Some(t(9, 0))));
        assert_eq!(s.tail, Some(r(Some(t(9, 0)), Some(t(9, 59)))));
        assert!(Span::of(&r(Some(t(3, 1)), Some(t(3, 59)))).is_none());
        assert!(Span::of(&r(Some(t(3, 1)), Some(t(4, 59)))).is_none());
        assert!(Span::of(&r(Some(t(3, 1)), Some(t(5, 0)))).is_some());
    }
}
