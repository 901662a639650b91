//! The writer's memory of recent idempotency keys, so de-duplicating a batch does not read the
//! events table.
//!
//! De-duplication looks for a stored copy of each new event within [`DEDUP_WINDOW`] of its
//! timestamp. Asking DuckDB meant joining each commit's keys against every event of a two-day
//! window — under steady ingest that was the writer's most expensive phase (10.8 µs of its
//! 45 µs per event at 1M events, growing with the event rate). The index keeps a 64-bit hash
//! of the keys of every stored event newer than a moving `floor`, with the event's hour:
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
//! Each key is one `u64` in a hash set (9 bytes a slot with the set's control byte): the
//! hash's top 48 bits, and in the low 16 the hour of its newest event, read relative to the
//! floor's hour. At 100M events a
//! month (two keys an event, 13M keys in 48 hours) a `HashMap<u64, u32>` took 17 bytes a slot —
//! its entries pad to 16 — and, past its 8M-key budget, forgot half of its 48 hours at a time:
//! events then fell below the floor, and de-duplication went to the table for most of them
//! (2 → 30 µs an event, ingest down from 18k to 11k events/s).

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
const RETAIN_US: i64 = 48 * HOUR_US;
const HOUR_US: i64 = 3_600_000_000;

/// Low bits of an entry holding its hour; the rest hold the key's hash.
const TAG_BITS: u32 = 16;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Hours above the floor's that a tag tells apart (about 3.7 years). Keys of events further
/// ahead — a client clock years off — are not kept, and events near them ask the table.
const TAG_RANGE_H: i64 = 1 << (TAG_BITS - 1);

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

/// One key in the index: its hash's top bits, and in the low [`TAG_BITS`] the hour of its
/// newest event modulo 2^16. Equality and hashing look at the key bits only, so a set finds an
/// entry by its key and can replace its hour.
#[derive(Debug, Clone, Copy)]
struct Entry(u64);

impl Entry {
    fn new(key: u64, hour: i64) -> Self {
        // Truncation intended: the tag is the hour modulo 2^16.
        Entry((key & !TAG_MASK) | (hour as u64 & TAG_MASK))
    }

    /// Hours from `floor_h` to this entry's hour: exact for every entry the index holds, as
    /// they all lie in `[floor_h, floor_h + TAG_RANGE_H)`.
    fn hours_after(self, floor_h: i64) -> i64 {
        i64::from((self.0 as u16).wrapping_sub(floor_h as u16) as i16)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0 >> TAG_BITS == other.0 >> TAG_BITS
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 >> TAG_BITS);
    }
}

/// The entries are hashes already: one multiplication spreads their bits over the whole word
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

/// What the index says of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No stored copy exists.
    New,
    /// The table must tell (a key matched, or the event is older than the index covers).
    Ask,
}

/// Hashes of recent stored keys with the hour of their newest event.
#[derive(Debug)]
pub struct DedupIndex {
    keys: HashSet<Entry, BuildHasherDefault<Spread>>,
    /// Every stored event at or after this time (µs) has its keys here, except those at or
    /// after `unkept`.
    floor: i64,
    /// The earliest stored event whose keys were too far above the floor to keep (µs). Not
    /// reset as the floor rises: later ones may be unkept too, and only events within a day of
    /// it ask the table for it — none but a client clock years ahead.
    unkept: i64,
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
            keys: HashSet::default(),
            floor: i64::MIN,
            unkept: i64::MAX,
            high: i64::MIN,
            max_keys,
            budget_hit: false,
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
            floor: newest - RETAIN_US,
            high: newest,
            ..Self::empty(max_keys)
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
            if index.keys.len() > index.max_keys {
                index.evict();
            }
        }
        Ok(index)
    }

    /// Whether the table must be asked about an event at `ts` with these keys.
    pub fn verdict(&self, keys: EventKeys, ts: DateTime<Utc>) -> Verdict {
        let ts = ts.timestamp_micros();
        let covered = ts.checked_sub(WINDOW_US).is_some_and(|lo| lo >= self.floor)
            && ts.saturating_add(WINDOW_US) < self.unkept;
        if covered && keys.iter().all(|k| !self.keys.contains(&Entry::new(k, 0))) {
            Verdict::New
        } else {
            Verdict::Ask
        }
    }

    /// Records committed events; call only after their commit succeeded.
    pub fn insert<'a>(&mut self, events: impl IntoIterator<Item = &'a PricedEvent> + Clone) {
        // The floor moves first, so that every key goes in with its hour read from the floor
        // it will be judged against (the tags count hours from it).
        let ceiling = clamp_high(Utc::now());
        for e in events.clone() {
            self.high = self.high.max(e.event.ts.timestamp_micros().min(ceiling));
        }
        self.evict();
        for e in events {
            self.insert_keys(EventKeys::of(e), e.event.ts.timestamp_micros());
        }
        self.evict();
    }

    fn insert_keys(&mut self, keys: EventKeys, ts: i64) {
        if ts < self.floor {
            return; // below the floor the table answers anyway
        }
        let hour = ts.div_euclid(HOUR_US);
        let floor_h = self.floor.div_euclid(HOUR_US);
        if hour - floor_h >= TAG_RANGE_H {
            self.unkept = self.unkept.min(ts);
            return;
        }
        for k in keys.iter() {
            let entry = Entry::new(k, hour);
            match self.keys.get(&entry) {
                Some(held) if held.hours_after(floor_h) >= hour - floor_h => {}
                _ => {
                    self.keys.replace(entry);
                }
            }
        }
    }

    /// Raises the floor to [`RETAIN`] behind the newest event, and further while over the key
    /// budget (only as far as the budget needs), and forgets what fell below it.
    fn evict(&mut self) {
        let mut floor = self.floor.max(self.high.saturating_sub(RETAIN_US));
        // Moving the floor costs a pass over the set: do it an hour at a time, not per commit.
        if floor < self.floor.saturating_add(HOUR_US) && self.keys.len() <= self.max_keys {
            return;
        }
        // Hours are read from the old floor's, from which every held tag reads exactly.
        let old_h = self.floor.div_euclid(HOUR_US);
        if self.keys.len() > self.max_keys {
            // Count the keys of each hour the time leaves, then keep the newest hours that fit.
            let gone_h = floor.div_euclid(HOUR_US) - old_h;
            let mut per_hour: BTreeMap<i64, usize> = BTreeMap::new();
            for h in self.keys.iter().map(|e| e.hours_after(old_h)) {
                if h >= gone_h {
                    *per_hour.entry(h).or_default() += 1;
                }
            }
            let mut held: usize = per_hour.values().sum();
            for (h, n) in per_hour {
                if held <= self.max_keys {
                    break;
                }
                held -= n;
                floor = floor.max((old_h + h + 1) * HOUR_US);
            }
            if !self.budget_hit {
                self.budget_hit = true;
                tracing::warn!(
                    keys = held,
                    budget = self.max_keys,
                    hours_kept = (self.high - floor) / HOUR_US,
                    "the de-duplication index is full: events older than the hours it keeps \
                     (less a day) are checked against the table, which is slower; raise \
                     storage.dedup_index_keys to keep more"
                );
            }
        }
        let floor_h = floor.div_euclid(HOUR_US);
        self.keys
            .retain(|e| e.hours_after(old_h) >= floor_h - old_h);
        self.floor = floor;
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
    fn a_full_index_keeps_the_newest_hours_that_fit() {
        // One key an hour for 100 hours: 48 are within RETAIN of the newest, 40 fit.
        let start = Utc::now() - chrono::Duration::hours(200);
        let at = |h: i64| start + chrono::Duration::hours(h);
        let mut index = DedupIndex::empty(40);
        for h in 0..100 {
            index.insert([&event(&format!("e{h}"), None, at(h))]);
            assert!(index.len() <= 40, "{} keys after hour {h}", index.len());
        }
        assert_eq!(index.len(), 40, "the budget is used, not half of it");
        // Hours 60..=99 are kept, so an event at hour 85 (its day back to 61) is covered.
        let probe = |name: &str, h: i64| {
            let e = event(name, None, at(h));
            index.verdict(EventKeys::of(&e), e.event.ts)
        };
        assert_eq!(probe("new", 85), Verdict::New);
        assert_eq!(probe("e70", 85), Verdict::Ask, "a kept key");
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
    fn keys_years_ahead_are_not_kept_and_events_near_them_ask_the_table() {
        let now = Utc::now();
        let far = now + chrono::Duration::days(5 * 365);
        let mut index = DedupIndex::empty(1_000);
        index.insert([&event("now", None, now), &event("far", None, far)]);
        assert_eq!(index.len(), 1, "only the present's key fits a tag");
        let e = event("other", None, far + chrono::Duration::hours(3));
        assert_eq!(index.verdict(EventKeys::of(&e), e.event.ts), Verdict::Ask);
        let e = event("other", None, now);
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
}
