//! The writer's memory of recent idempotency keys, so de-duplicating a batch does not read the
//! events table.
//!
//! De-duplication looks for a stored copy of each new event within [`DEDUP_WINDOW`] of its
//! timestamp. Asking DuckDB meant joining each commit's keys against every event of a two-day
//! window — under steady ingest that was the writer's most expensive phase (10.8 µs of its
//! 45 µs per event at 1M events, growing with the event rate). The index keeps a 64-bit hash
//! of the keys of every stored event newer than a moving `floor`, by the six hours of its time:
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
//! more than its key budget — only as far as the budget needs — trading memory for more table
//! lookups, never for wrong answers.
//!
//! The keys live in one hash set per six hours of event time (an *epoch*), 9 bytes a slot:
//! moving the floor drops whole sets, so no key is ever erased one by one. At 100M events a
//! month (two keys an event, 13–14M keys in 48 hours) one big map went wrong twice. Past its
//! 8M-key budget it forgot half of its hours at a time, events fell below the floor, and
//! de-duplication went to the table for most of them (2 → 30 µs an event, ingest from 18k down
//! to 11k events/s). And erasing keys from a nearly full hash table leaves tombstones, which
//! the table clears by doubling once more than half its slots are taken: a 14M-key set in
//! 16.7M slots (150 MB) became 33.5M slots (300 MB, 450 MB while copying). Epoch sets grow
//! on their own, a few tens of megabytes at a time, and are freed whole.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

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
/// Event time per set: the floor moves in these steps (so up to this much more than
/// [`RETAIN`] is kept), and a lookup probes every set within a day of the event — nine.
const EPOCH_US: i64 = 6 * HOUR_US;
const HOUR_US: i64 = 3_600_000_000;

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

/// The keys are hashes already: one multiplication spreads their bits over the whole word
/// (the set takes its control byte from the top seven), where SipHash would hash them again.
#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeySet = HashSet<u64, BuildHasherDefault<Spread>>;

/// The epoch of an event time.
fn epoch(ts: i64) -> i64 {
    ts.div_euclid(EPOCH_US)
}

/// The floor that keeps [`RETAIN`] behind the newest event `high`: the start of its epoch.
fn floor_behind(high: i64) -> i64 {
    epoch(high.saturating_sub(RETAIN_US)).saturating_mul(EPOCH_US)
}

/// What the index says of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No stored copy exists.
    New,
    /// The table must tell (a key matched, or the event is older than the index covers).
    Ask,
}

/// Hashes of recent stored keys, a set per epoch of their events' time.
#[derive(Debug)]
pub struct DedupIndex {
    sets: BTreeMap<i64, KeySet>,
    /// Every stored event at or after this time (µs) has its keys in its epoch's set; an epoch
    /// boundary, or `i64::MIN` while the table is empty.
    floor: i64,
    /// The newest event time inserted (µs).
    high: i64,
    max_keys: usize,
    /// Whether the key budget has raised the floor yet (said once in the log).
    budget_hit: bool,
}

impl DedupIndex {
    /// An index of an empty table: complete for every time.
    pub fn empty(max_keys: usize) -> Self {
        DedupIndex {
            sets: BTreeMap::new(),
            floor: i64::MIN,
            high: i64::MIN,
            max_keys,
            budget_hit: false,
        }
    }

    /// Loads the keys of the stored events within [`RETAIN`] of the newest one, newest hour
    /// first, a query an hour.
    ///
    /// The rows are streamed ([`super::stream_rows`]): materialised, the 10M rows of keys of 48
    /// hours at 100M events a month took the server to 1.8 GiB while it started. Newest hour
    /// first, the budget fills with the hours the index keeps anyway, and the hours below the
    /// floor it then sets are not read at all.
    pub fn load(conn: &Connection, max_keys: usize) -> Result<Self, StoreError> {
        let newest: Option<i64> =
            conn.query_row("SELECT epoch_us(max(ts)) FROM events", [], |r| r.get(0))?;
        let Some(newest) = newest else {
            return Ok(Self::empty(max_keys));
        };
        let newest = newest.min(clamp_high(Utc::now()));
        let mut index = DedupIndex {
            floor: floor_behind(newest),
            high: newest,
            ..Self::empty(max_keys)
        };
        const KEYS: &str = "SELECT coalesce(project, ''), idem_key, coalesce(provider, ''), \
             request_id, epoch_us(ts) FROM events \
             WHERE (idem_key IS NOT NULL OR request_id IS NOT NULL) \
               AND ts >= make_timestamp(?::BIGINT)";
        // The first slice has no upper bound: it also takes events stamped ahead of the clock.
        let mut newest_hour = conn.prepare(KEYS)?;
        let mut older_hour = conn.prepare(&format!("{KEYS} AND ts < make_timestamp(?::BIGINT)"))?;
        let mut upper = None;
        let mut lower = newest.div_euclid(HOUR_US) * HOUR_US;
        loop {
            let from = lower.max(index.floor);
            let mut rows = match upper {
                None => super::stream_rows(&mut newest_hour, [from])?,
                Some(to) => super::stream_rows(&mut older_hour, [from, to])?,
            };
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
                index.keep_budget();
            }
            // The budget may have raised the floor past what is left.
            if from <= index.floor {
                return Ok(index);
            }
            upper = Some(from);
            lower = from - HOUR_US;
        }
    }

    /// Whether the table must be asked about an event at `ts` with these keys.
    pub fn verdict(&self, keys: EventKeys, ts: DateTime<Utc>) -> Verdict {
        let ts = ts.timestamp_micros();
        let (Some(lo), Some(hi)) = (ts.checked_sub(WINDOW_US), ts.checked_add(WINDOW_US)) else {
            return Verdict::Ask;
        };
        if lo < self.floor {
            return Verdict::Ask;
        }
        let mut near = self.sets.range(epoch(lo)..=epoch(hi)).map(|(_, set)| set);
        if near.any(|set| keys.iter().any(|k| set.contains(&k))) {
            Verdict::Ask
        } else {
            Verdict::New
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
        // The floor follows the newest event, an epoch at a time: whole sets go.
        let floor = floor_behind(self.high);
        if floor > self.floor {
            self.floor = floor;
            self.sets = self.sets.split_off(&epoch(floor));
        }
        self.keep_budget();
    }

    fn insert_keys(&mut self, keys: EventKeys, ts: i64) {
        if ts < self.floor {
            return; // below the floor the table answers anyway
        }
        let set = self.sets.entry(epoch(ts)).or_default();
        set.extend(keys.iter());
    }

    /// While over the key budget, drops the oldest set and raises the floor past it.
    fn keep_budget(&mut self) {
        while self.len() > self.max_keys {
            let Some((e, _)) = self.sets.pop_first() else {
                break;
            };
            self.floor = self.floor.max((e + 1).saturating_mul(EPOCH_US));
            if !self.budget_hit {
                self.budget_hit = true;
                tracing::warn!(
                    budget = self.max_keys,
                    hours_kept = (self.high - self.floor) / 3_600_000_000,
                    "the de-duplication index is full: events within a day of the oldest \
                     hours it dropped are checked against the table, which is slower; raise \
                     storage.dedup_index_keys to keep more"
                );
            }
        }
    }

    /// Keys held, over all sets (a key may be in several; there are about nine sets).
    pub fn len(&self) -> usize {
        self.sets.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.values().all(HashSet::is_empty)
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
    fn a_full_index_keeps_the_newest_hours_that_fit() {
        // One key an hour for 100 hours from an epoch boundary: 52 are in the epochs within
        // RETAIN of the newest (hours 48..=99), 40 fit — the epochs from hour 60 on.
        let boundary = (epoch(Utc::now().timestamp_micros()) - 34) * EPOCH_US;
        let start = DateTime::from_timestamp_micros(boundary).unwrap();
        let at = |h: i64| start + chrono::Duration::hours(h);
        let mut index = DedupIndex::empty(40);
        for h in 0..100 {
            index.insert([&event(&format!("e{h}"), None, at(h))]);
            assert!(index.len() <= 40, "{} keys after hour {h}", index.len());
        }
        assert_eq!(index.len(), 40, "the budget is used, not half of it");
        // An event at hour 85 (its day back to 61) is covered; at 83 it is not.
        let probe = |name: &str, h: i64| {
            let e = event(name, None, at(h));
            index.verdict(EventKeys::of(&e), e.event.ts)
        };
        assert_eq!(probe("new", 85), Verdict::New);
        assert_eq!(probe("e70", 85), Verdict::Ask, "a kept key");
        assert_eq!(probe("e62", 85), Verdict::Ask, "a kept key a day back");
        assert_eq!(
            probe("new", 83),
            Verdict::Ask,
            "its day reaches below the kept hours"
        );
    }

    #[test]
    fn a_budget_filled_by_future_events_is_kept_without_spinning() {
        // The floor follows the clock, not these events: before, raising it toward the
        // newest event moved it a microsecond a pass once it got there, and never finished.
        let tomorrow = Utc::now() + chrono::Duration::days(1);
        let mut index = DedupIndex::empty(5);
        let events: Vec<PricedEvent> = (0..10)
            .map(|i| event(&format!("f{i}"), None, tomorrow))
            .collect();
        index.insert(&events);
        assert!(index.len() <= 5);
        let e = event("f1", None, tomorrow);
        assert_eq!(index.verdict(EventKeys::of(&e), tomorrow), Verdict::Ask);
    }

    #[test]
    fn keys_years_ahead_are_kept_apart_from_the_present() {
        let now = Utc::now();
        let far = now + chrono::Duration::days(5 * 365);
        let mut index = DedupIndex::empty(1_000);
        index.insert([&event("now", None, now), &event("far", None, far)]);
        assert_eq!(index.len(), 2);
        let e = event("far", None, far + chrono::Duration::hours(3));
        assert_eq!(index.verdict(EventKeys::of(&e), e.event.ts), Verdict::Ask);
        let e = event("far", None, now);
        assert_eq!(index.verdict(EventKeys::of(&e), now), Verdict::New);
    }

    #[test]
    fn a_floor_that_jumps_years_forgets_what_it_held() {
        let now = Utc::now();
        let then = now - chrono::Duration::days(6 * 365);
        let mut index = DedupIndex::empty(1_000);
        index.insert([&event("old", None, then)]);
        index.insert([&event("new", None, now)]);
        assert_eq!(index.len(), 1);
        let e = event("old", None, now);
        assert_eq!(index.verdict(EventKeys::of(&e), now), Verdict::New);
    }

    proptest::proptest! {
        /// The contract, against a model that remembers every stored event: the index says
        /// `New` only when no stored event within a day shares a key, whatever the order of
        /// event times, the budget, or the floor's moves.
        #[test]
        fn new_means_no_stored_copy_within_a_day(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..40, 0u8..40, 0i64..400, -30i64..4), 1..12),
                1..40,
            ),
            budget in 5usize..200,
        ) {
            let start = Utc::now() - chrono::Duration::days(30);
            let mut index = DedupIndex::empty(budget);
            let mut stored: Vec<PricedEvent> = Vec::new();
            let mut clock = 0i64;
            for batch in batches {
                let mut fresh = Vec::new();
                for (id, request, step, skew) in batch {
                    // Time mostly moves forward (hours in steps of up to 400 minutes), with
                    // events up to 30 hours late.
                    clock += step;
                    let ts = start + chrono::Duration::minutes(clock) + chrono::Duration::hours(skew);
                    let e = event(&format!("i{id}"), Some(&format!("r{request}")), ts);
                    let keys = EventKeys::of(&e);
                    let copy_in = |events: &[PricedEvent]| {
                        events.iter().any(|s| {
                            let k = EventKeys::of(s);
                            (k.id == keys.id || k.request == keys.request)
                                && (s.event.ts - ts).abs() <= DEDUP_WINDOW
                        })
                    };
                    // The index knows committed events; the writer finds copies within the
                    // group itself.
                    if index.verdict(keys, ts) == Verdict::New {
                        proptest::prop_assert!(!copy_in(&stored), "New for a copy at {ts}");
                    }
                    if !copy_in(&stored) && !copy_in(&fresh) {
                        fresh.push(e);
                    }
                }
                index.insert(&fresh);
                proptest::prop_assert!(index.len() <= budget);
                stored.extend(fresh);
            }
        }
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

    /// Events at every ten minutes of the last 72 hours, one two hours ahead of the clock and
    /// one without keys, in a table shaped like `events` where the keys are concerned.
    fn table_of_recent_events(now: DateTime<Utc>) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events (project VARCHAR, idem_key VARCHAR, provider VARCHAR, \
             request_id VARCHAR, ts TIMESTAMP)",
        )
        .unwrap();
        let mut add = conn
            .prepare("INSERT INTO events VALUES ('p', ?, 'openai', ?, make_timestamp(?::BIGINT))")
            .unwrap();
        for i in 0..72 * 6 {
            let ts = now - chrono::Duration::minutes(10 * i + 1);
            add.execute(duckdb::params![
                format!("e{i}"),
                format!("r{i}"),
                ts.timestamp_micros()
            ])
            .unwrap();
        }
        let ahead = (now + chrono::Duration::hours(2)).timestamp_micros();
        add.execute(duckdb::params!["ahead", None::<String>, ahead])
            .unwrap();
        add.execute(duckdb::params![None::<String>, None::<String>, ahead])
            .unwrap();
        conn
    }

    /// Keys (idempotency and request ids) of the stored events at or after `floor`, by SQL.
    fn keys_from(conn: &Connection, floor: i64) -> usize {
        conn.query_row(
            "SELECT count(idem_key) + count(request_id) FROM events \
             WHERE ts >= make_timestamp(?::BIGINT)",
            [floor],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as usize
    }

    #[test]
    fn loading_takes_every_key_above_the_floor_hour_by_hour() {
        let now = Utc::now();
        let conn = table_of_recent_events(now);
        let index = DedupIndex::load(&conn, 1_000_000).unwrap();
        // The floor keeps 48 hours behind the clock (not the event ahead of it), to an epoch.
        let behind = index.floor - (now - RETAIN).timestamp_micros();
        assert!(
            (-EPOCH_US..=0).contains(&behind),
            "floor {behind} µs from 48 h back"
        );
        assert_eq!(index.len(), keys_from(&conn, index.floor));
        let stored = |id: &str, ts: DateTime<Utc>| {
            let e = event(id, None, ts);
            index.verdict(EventKeys::of(&e), ts)
        };
        assert_eq!(stored("e0", now), Verdict::Ask);
        assert_eq!(
            stored("ahead", now),
            Verdict::Ask,
            "an event ahead of the clock"
        );
        assert_eq!(
            stored("e1", now - chrono::Duration::hours(12)),
            Verdict::Ask
        );
        assert_eq!(
            stored("never", now - chrono::Duration::hours(12)),
            Verdict::New
        );
    }

    #[test]
    fn loading_into_a_small_budget_keeps_the_newest_hours_that_fit() {
        let now = Utc::now();
        let conn = table_of_recent_events(now);
        // Twelve keys an hour: room for about a day.
        let budget = 24 * 12 + 5;
        let index = DedupIndex::load(&conn, budget).unwrap();
        assert!(index.len() <= budget);
        assert_eq!(index.floor.rem_euclid(EPOCH_US), 0, "an epoch boundary");
        assert_eq!(
            index.len(),
            keys_from(&conn, index.floor),
            "every key above the floor, none below"
        );
        assert!(
            keys_from(&conn, index.floor - EPOCH_US) > budget,
            "an epoch more would have fit"
        );
    }
}
