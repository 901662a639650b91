//! The writer's memory of recent idempotency keys, so de-duplicating a batch does not read the
//! events table.
//!
//! De-duplication looks for a stored copy of each new event within [`DEDUP_WINDOW`] of its
//! timestamp. Asking DuckDB meant joining each commit's keys against every event of a two-day
//! window — under steady ingest that was the writer's most expensive phase (10.8 µs of its
//! 45 µs per event at 1M events, growing with the event rate). The index keeps a 64-bit hash
//! of the keys of every stored event newer than a moving `floor`, with the event's time:
//!
//! - an event whose whole window lies above the floor is *covered*: a hash that is not in the
//!   index proves no stored copy exists, which is the answer for almost every event;
//! - a hash that is in the index only makes the event a *suspect* — a real retry, or a hash
//!   collision — and suspects are checked against the table exactly as before, as are events
//!   too old to be covered (late arrivals, backfills). The index never decides "duplicate" on
//!   its own, so a collision can cost a query but never drop an event.
//!
//! It is filled from the table when the writer starts (the keys of the last
//! [`RETAIN`] of event time), and after each successful commit with its fresh events. The
//! floor follows the newest event time seen (but never past the clock, so events from a
//! skewed clock cannot evict the present), and moves up further when the index holds
//! more than its key budget, trading memory for more table lookups, never for wrong answers.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use duckdb::Connection;

use super::StoreError;
use crate::domain::event::PricedEvent;

/// How far around an event's time earlier copies of it are looked for. A retry or a second
/// source carries (nearly) the same timestamp; bounding the search by time keeps its cost
/// independent of the table's size.
pub const DEDUP_WINDOW: chrono::Duration = chrono::Duration::days(1);

/// Event time kept behind the newest event: the window, plus a day for events that arrive out
/// of order — concurrent senders of a backfill commit hours of event time apart, and an
/// event whose window dips below the floor costs a table lookup.
pub const RETAIN: chrono::Duration = chrono::Duration::hours(48);

const WINDOW_US: i64 = 86_400_000_000;
const RETAIN_US: i64 = 48 * 3_600_000_000;
const MINUTE_US: i64 = 60_000_000;

/// The keys of one event, hashed: its idempotency key and its provider request id, each within
/// its project (a tenant's keys never make another tenant's events duplicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKeys {
    pub id: Option<u64>,
    pub request: Option<u64>,
}

impl EventKeys {
    pub fn of(e: &PricedEvent) -> Self {
        let project = e.event.dims.project.as_deref().unwrap_or_default();
        EventKeys {
            id: e
                .event
                .idem_key
                .as_deref()
                .map(|id| hash(&(0u8, project, id))),
            request: e.event.request_id.as_deref().map(|r| {
                let provider = e.event.provider.as_deref().unwrap_or_default();
                hash(&(1u8, project, provider, r))
            }),
        }
    }

    fn iter(self) -> impl Iterator<Item = u64> {
        self.id.into_iter().chain(self.request)
    }
}

fn hash(v: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// What the index says of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No stored copy exists.
    New,
    /// The table must tell (a key matched, or the event is older than the index covers).
    Ask,
}

/// Hashes of recent stored keys with the minute of their newest event (minutes since the
/// epoch: 12 bytes an entry instead of 16 — the index may hold millions).
#[derive(Debug)]
pub struct DedupIndex {
    keys: HashMap<u64, u32>,
    /// Every stored event at or after this time (µs) has its keys here.
    floor: i64,
    /// The newest event time inserted (µs).
    high: i64,
    max_keys: usize,
}

impl DedupIndex {
    /// An index of an empty table: complete for every time.
    pub fn empty(max_keys: usize) -> Self {
        DedupIndex {
            keys: HashMap::new(),
            floor: i64::MIN,
            high: i64::MIN,
            max_keys,
        }
    }

    /// Loads the keys of the stored events within [`RETAIN`] of the newest one.
    pub fn load(conn: &Connection, max_keys: usize) -> Result<Self, StoreError> {
        let newest: Option<i64> =
            conn.query_row("SELECT epoch_us(max(ts)) FROM events", [], |r| r.get(0))?;
        let Some(newest) = newest else {
            return Ok(Self::empty(max_keys));
        };
        let newest = newest.min(clamp_high(Utc::now()));
        let mut index = DedupIndex {
            keys: HashMap::new(),
            floor: newest - RETAIN_US,
            high: newest,
            max_keys,
        };
        let mut stmt = conn.prepare(
            "SELECT coalesce(project, ''), idem_key, coalesce(provider, ''), request_id, epoch_us(ts)
             FROM events WHERE ts >= make_timestamp(?::BIGINT)
               AND (idem_key IS NOT NULL OR request_id IS NOT NULL)",
        )?;
        let mut rows = stmt.query([index.floor])?;
        while let Some(r) = rows.next()? {
            let project: String = r.get(0)?;
            let id: Option<String> = r.get(1)?;
            let provider: String = r.get(2)?;
            let request: Option<String> = r.get(3)?;
            let ts: i64 = r.get(4)?;
            let keys = EventKeys {
                id: id.map(|id| hash(&(0u8, project.as_str(), id.as_str()))),
                request: request
                    .map(|r| hash(&(1u8, project.as_str(), provider.as_str(), r.as_str()))),
            };
            index.insert_keys(keys, ts);
        }
        index.evict();
        Ok(index)
    }

    /// Whether the table must be asked about an event at `ts` with these keys.
    pub fn verdict(&self, keys: EventKeys, ts: DateTime<Utc>) -> Verdict {
        let covered = ts
            .timestamp_micros()
            .checked_sub(WINDOW_US)
            .is_some_and(|lo| lo >= self.floor);
        if covered && keys.iter().all(|k| !self.keys.contains_key(&k)) {
            Verdict::New
        } else {
            Verdict::Ask
        }
    }

    /// Records committed events; call only after their commit succeeded.
    pub fn insert<'a>(&mut self, events: impl IntoIterator<Item = &'a PricedEvent>) {
        let ceiling = clamp_high(Utc::now());
        for e in events {
            let ts = e.event.ts.timestamp_micros();
            self.insert_keys(EventKeys::of(e), ts);
            self.high = self.high.max(ts.min(ceiling));
        }
        self.evict();
    }

    fn insert_keys(&mut self, keys: EventKeys, ts: i64) {
        if ts < self.floor {
            return; // below the floor the table answers anyway
        }
        let minute =
            u32::try_from(ts.div_euclid(MINUTE_US)).unwrap_or(if ts < 0 { 0 } else { u32::MAX });
        for k in keys.iter() {
            let slot = self.keys.entry(k).or_insert(minute);
            *slot = (*slot).max(minute);
        }
    }

    /// Raises the floor to [`RETAIN`] behind the newest event (and further while over the key
    /// budget) and forgets what fell below it.
    fn evict(&mut self) {
        let mut floor = self.floor.max(self.high.saturating_sub(RETAIN_US));
        // Moving the floor costs a pass over the map: do it an hour at a time, not per commit.
        if floor < self.floor.saturating_add(3_600_000_000) && self.keys.len() <= self.max_keys {
            return;
        }
        loop {
            // Keep every key whose event may be at or after the floor (its minute reaches it).
            self.keys
                .retain(|_, minute| (i64::from(*minute) + 1) * MINUTE_US > floor);
            self.floor = floor;
            if self.keys.len() <= self.max_keys {
                break;
            }
            floor = floor.saturating_add(self.high.saturating_sub(floor).max(2) / 2);
        }
    }

    /// Keys held, for tests and logs.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The floor follows event time up to the clock only: events stamped in the future (a skewed
/// client clock) must not push the present out of the index.
fn clamp_high(now: DateTime<Utc>) -> i64 {
    now.timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, request: Option<&str>, ts: DateTime<Utc>) -> PricedEvent {
        let mut e = PricedEvent::sample(0);
        e.event.ts = ts;
        e.event.idem_key = Some(id.to_string());
        e.event.request_id = request.map(str::to_string);
        e.event.provider = Some("openai".into());
        e.event.dims.project = Some("p".into());
        e
    }

    #[test]
    fn covered_misses_are_new_hits_and_old_events_ask_the_table() {
        let now = Utc::now() - chrono::Duration::days(3);
        let mut index = DedupIndex::empty(1_000);
        let a = event("a", Some("r-a"), now);
        assert_eq!(index.verdict(EventKeys::of(&a), now), Verdict::New);
        index.insert([&a]);
        // The same id, or the same provider request id under another id: ask.
        assert_eq!(index.verdict(EventKeys::of(&a), now), Verdict::Ask);
        let b = event("b", Some("r-a"), now);
        assert_eq!(index.verdict(EventKeys::of(&b), now), Verdict::Ask);
        let c = event("c", Some("r-c"), now);
        assert_eq!(index.verdict(EventKeys::of(&c), now), Verdict::New);
        // Another project's identical keys are other keys.
        let mut d = event("a", Some("r-a"), now);
        d.event.dims.project = Some("q".into());
        assert_eq!(index.verdict(EventKeys::of(&d), now), Verdict::New);
        // An id equal to a request id does not match it.
        let e = event("r-a", None, now);
        assert_eq!(index.verdict(EventKeys::of(&e), now), Verdict::New);

        // Three days of newer events move the floor: a's time is no longer covered.
        let later = Utc::now();
        index.insert([&event("z", None, later)]);
        assert_eq!(
            index.verdict(EventKeys::of(&c), now),
            Verdict::Ask,
            "older than the index covers"
        );
        assert_eq!(
            index.verdict(EventKeys::of(&c), later),
            Verdict::New,
            "covered again"
        );
        assert_eq!(index.len(), 1, "a's keys were forgotten");
    }

    #[test]
    fn a_full_index_raises_its_floor_and_asks_more() {
        let now = Utc::now();
        let mut index = DedupIndex::empty(10);
        let events: Vec<PricedEvent> = (0..20)
            .map(|i| {
                event(
                    &format!("e{i}"),
                    None,
                    now - chrono::Duration::hours(20 - i),
                )
            })
            .collect();
        index.insert(&events);
        assert!(index.len() <= 10, "{} keys", index.len());
        // The oldest events are no longer covered; the newest still are.
        let probe = |h: i64| {
            let e = event("new", None, now - chrono::Duration::hours(h));
            index.verdict(EventKeys::of(&e), e.event.ts)
        };
        assert_eq!(probe(-30), Verdict::New);
        assert_eq!(probe(1), Verdict::Ask);
    }

    #[test]
    fn a_future_timestamp_does_not_evict_the_present() {
        let now = Utc::now();
        let mut index = DedupIndex::empty(1_000);
        let a = event("a", None, now);
        index.insert([&a, &event("far", None, now + chrono::Duration::days(400))]);
        assert_eq!(index.verdict(EventKeys::of(&a), now), Verdict::Ask);
        let b = event("b", None, now);
        assert_eq!(index.verdict(EventKeys::of(&b), now), Verdict::New);
    }
}
