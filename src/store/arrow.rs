//! Priced events → one Arrow record batch shaped exactly like the `events` table.
//!
//! The writer appends whole batches through DuckDB's Arrow appender, which is far faster than
//! row-by-row appends. Column order here must match `schemas/migrations/0001_events.sql`; a test
//! in the store checks the two against each other.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

use super::StoreError;
use crate::domain::event::{ListParts, PricedEvent};
use crate::domain::money::COST_SCALE;

/// Formats a timestamp the way DuckDB casts text to `TIMESTAMPTZ`.
pub fn ts_string(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

struct Strings(StringBuilder);

impl Strings {
    fn new(n: usize) -> Self {
        Strings(StringBuilder::with_capacity(n, n * 8))
    }
    fn push(&mut self, v: Option<&str>) {
        self.0.append_option(v);
    }
    fn finish(mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

fn decimal_builder(n: usize) -> Decimal128Builder {
    Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(18, COST_SCALE as i8)
        .expect("valid decimal type")
}

/// Mantissa of `value` at the stored scale. Values are rounded to that scale at ingest, so
/// rescaling never loses a digit here.
fn scaled(value: Decimal) -> i128 {
    stored_decimal(value).mantissa()
}

/// A decimal as the events table stores it (rescaled to the money scale), so that sums made
/// outside SQL (the rollups') equal sums over the stored column.
pub(super) fn stored_decimal(value: Decimal) -> Decimal {
    let mut v = value;
    v.rescale(COST_SCALE);
    v
}

fn push_decimal(b: &mut Decimal128Builder, v: Option<Decimal>) {
    b.append_option(v.map(scaled));
}

/// Builds the batch; `received` is parallel to `events`.
pub fn events_batch(
    events: &[&PricedEvent],
    received: &[DateTime<Utc>],
) -> Result<RecordBatch, StoreError> {
    let n = events.len();
    let ts_field = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut idem_key = Strings::new(n);
    let mut request_id = Strings::new(n);
    let mut source_format = Strings::new(n);
    let mut provider = Strings::new(n);
    let mut model = Strings::new(n);
    let mut model_requested = Strings::new(n);
    let mut operation = Strings::new(n);
    let mut route = Strings::new(n);
    let mut service_tier = Strings::new(n);
    let mut status = Strings::new(n);
    let mut error_type = Strings::new(n);
    let mut http_status = Int16Builder::with_capacity(n);
    let mut latency_ms = Int32Builder::with_capacity(n);
    let mut ttft_ms = Int32Builder::with_capacity(n);
    let mut user_id = Strings::new(n);
    let mut team_id = Strings::new(n);
    let mut project = Strings::new(n);
    let mut api_key_id = Strings::new(n);
    let mut customer_id = Strings::new(n);
    let mut feature = Strings::new(n);
    let mut tags = ListBuilder::new(StringBuilder::new());
    let mut task_id = Strings::new(n);
    let mut run_id = Strings::new(n);
    let mut agent = Strings::new(n);
    let mut session_id = Strings::new(n);
    let mut trace_id = Strings::new(n);
    let mut span_id = Strings::new(n);
    let mut parent_span_id = Strings::new(n);
    let mut attempt = Int32Builder::with_capacity(n);
    let mut retry_of = Strings::new(n);
    let mut fallback_from = Strings::new(n);
    let mut tokens: Vec<Int64Builder> = (0..11).map(|_| Int64Builder::with_capacity(n)).collect();
    let mut usage_detail = Strings::new(n);
    let mut reported_cost = decimal_builder(n);
    let mut currency = Strings::new(n);
    let mut computed_cost = decimal_builder(n);
    let mut custom_cost = decimal_builder(n);
    let mut cost = decimal_builder(n);
    let mut cost_source = Strings::new(n);
    let mut price_id = Strings::new(n);
    let mut custom_price_id = Strings::new(n);
    let mut unpriced_reason = Strings::new(n);
    let mut metadata = Strings::new(n);
    let mut list_lines_cost = decimal_builder(n);
    let mut list_input_cost = decimal_builder(n);
    let mut list_output_cost = decimal_builder(n);

    for (p, recv) in events.iter().zip(received) {
        let e = &p.event;
        ts.append_value(e.ts.timestamp_micros());
        received_at.append_value(recv.timestamp_micros());
        idem_key.push(e.idem_key.as_deref());
        request_id.push(e.request_id.as_deref());
        source_format.push(Some(&e.source_format));
        provider.push(e.provider.as_deref());
        model.push(Some(&e.model));
        model_requested.push(e.model_requested.as_deref());
        operation.push(Some(&e.operation));
        route.push(Some(&e.route));
        service_tier.push(Some(&e.service_tier));
        status.push(Some(e.status.as_str()));
        error_type.push(e.error_type.as_deref());
        http_status.append_option(e.http_status.map(|s| s as i16));
        latency_ms.append_option(e.latency_ms.map(clamp_i32));
        ttft_ms.append_option(e.ttft_ms.map(clamp_i32));
        let d = &e.dims;
        user_id.push(d.user_id.as_deref());
        team_id.push(d.team_id.as_deref());
        project.push(d.project.as_deref());
        api_key_id.push(d.api_key_id.as_deref());
        customer_id.push(d.customer_id.as_deref());
        feature.push(d.feature.as_deref());
        for tag in &d.tags {
            tags.values().append_value(tag);
        }
        tags.append(true);
        task_id.push(d.task_id.as_deref());
        run_id.push(d.run_id.as_deref());
        agent.push(d.agent.as_deref());
        session_id.push(d.session_id.as_deref());
        trace_id.push(d.trace_id.as_deref());
        span_id.push(d.span_id.as_deref());
        parent_span_id.push(d.parent_span_id.as_deref());
        attempt.append_option(e.attempt.map(clamp_i32));
        retry_of.push(e.retry_of.as_deref());
        fallback_from.push(e.fallback_from.as_deref());
        let t = &e.tokens;
        let counts = [
            t.input_uncached,
            t.cache_read,
            t.cache_write_5m,
            t.cache_write_1h,
            t.output,
            t.reasoning,
            t.audio_in,
            t.audio_out,
            t.image_in,
            t.image_out,
            e.web_search_requests,
        ];
        for (builder, count) in tokens.iter_mut().zip(counts) {
            builder.append_value(i64::try_from(count).unwrap_or(i64::MAX));
        }
        usage_detail.push(Some(e.usage_detail.as_str()));
        push_decimal(&mut reported_cost, e.reported_cost);
        currency.push(e.currency.as_deref());
        push_decimal(&mut computed_cost, p.computed_cost);
        push_decimal(&mut custom_cost, p.custom_cost);
        push_decimal(&mut cost, p.cost);
        cost_source.push(Some(p.cost_source.as_str()));
        price_id.push(p.price_id.as_deref());
        custom_price_id.push(p.custom_price_id.as_deref());
        unpriced_reason.push(p.unpriced_reason.as_deref());
        metadata.push(e.metadata.as_deref().filter(|m| !m.is_empty()));
        // Parts beyond the column's range (a single call's list price near a million dollars)
        // are left out; routes then re-prices that call at query time.
        let parts = p.list_parts.and_then(ListParts::storable);
        push_decimal(&mut list_lines_cost, parts.map(|x| x.all));
        push_decimal(&mut list_input_cost, parts.map(|x| x.input));
        push_decimal(&mut list_output_cost, parts.map(|x| x.output));
    }

    let money = DataType::Decimal128(18, COST_SCALE as i8);
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    let mut fields = vec![
        Field::new("ts", ts_field.clone(), false),
        Field::new("received_at", ts_field, false),
        s("idem_key"),
        s("request_id"),
        s("source_format"),
        s("provider"),
        s("model"),
        s("model_requested"),
        s("operation"),
        s("route"),
        s("service_tier"),
        s("status"),
        s("error_type"),
        Field::new("http_status", DataType::Int16, true),
        Field::new("latency_ms", DataType::Int32, true),
        Field::new("ttft_ms", DataType::Int32, true),
        s("user_id"),
        s("team_id"),
        s("project"),
        s("api_key_id"),
        s("customer_id"),
        s("feature"),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        s("task_id"),
        s("run_id"),
        s("agent"),
        s("session_id"),
        s("trace_id"),
        s("span_id"),
        s("parent_span_id"),
        Field::new("attempt", DataType::Int32, true),
        s("retry_of"),
        s("fallback_from"),
    ];
    for name in TOKEN_COLUMNS {
        fields.push(Field::new(name, DataType::Int64, false));
    }
    fields.extend([
        s("usage_detail"),
        Field::new("reported_cost", money.clone(), true),
        s("currency"),
        Field::new("computed_cost", money.clone(), true),
        Field::new("custom_cost", money.clone(), true),
        Field::new("cost", money.clone(), true),
        s("cost_source"),
        s("price_id"),
        s("custom_price_id"),
        s("unpriced_reason"),
        s("metadata"),
        Field::new("list_lines_cost", money.clone(), true),
        Field::new("list_input_cost", money.clone(), true),
        Field::new("list_output_cost", money, true),
    ]);

    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(received_at.finish()),
        idem_key.finish(),
        request_id.finish(),
        source_format.finish(),
        provider.finish(),
        model.finish(),
        model_requested.finish(),
        operation.finish(),
        route.finish(),
        service_tier.finish(),
        status.finish(),
        error_type.finish(),
        Arc::new(http_status.finish()),
        Arc::new(latency_ms.finish()),
        Arc::new(ttft_ms.finish()),
        user_id.finish(),
        team_id.finish(),
        project.finish(),
        api_key_id.finish(),
        customer_id.finish(),
        feature.finish(),
        Arc::new(tags.finish()),
        task_id.finish(),
        run_id.finish(),
        agent.finish(),
        session_id.finish(),
        trace_id.finish(),
        span_id.finish(),
        parent_span_id.finish(),
        Arc::new(attempt.finish()),
        retry_of.finish(),
        fallback_from.finish(),
    ];
    for mut builder in tokens {
        columns.push(Arc::new(builder.finish()));
    }
    columns.extend([
        usage_detail.finish(),
        Arc::new(reported_cost.finish()) as ArrayRef,
        currency.finish(),
        Arc::new(computed_cost.finish()),
        Arc::new(custom_cost.finish()),
        Arc::new(cost.finish()),
        cost_source.finish(),
        price_id.finish(),
        custom_price_id.finish(),
        unpriced_reason.finish(),
        metadata.finish(),
        Arc::new(list_lines_cost.finish()),
        Arc::new(list_input_cost.finish()),
        Arc::new(list_output_cost.finish()),
    ]);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| StoreError::Other(format!("cannot build the events batch: {e}")))
}

/// Token and unit columns, in table order.
pub const TOKEN_COLUMNS: [&str; 11] = [
    "input_uncached",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
    "audio_in",
    "audio_out",
    "image_in",
    "image_out",
    "web_search_requests",
];

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use duckdb::Connection;

    use super::*;

    fn sample(i: u64) -> PricedEvent {
        PricedEvent::sample(i)
    }

    /// The batch's columns line up with the table's, names and types, and every value
    /// survives the round trip.
    #[test]
    fn batch_matches_the_events_table() {
        let conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::apply(&conn).unwrap();
        let events: Vec<PricedEvent> = (0..3000).map(sample).collect();
        let refs: Vec<&PricedEvent> = events.iter().collect();
        let received = vec![Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(); events.len()];
        let batch = events_batch(&refs, &received).unwrap();

        let mut stmt = conn.prepare("SELECT column_name FROM information_schema.columns WHERE table_name = 'events' ORDER BY ordinal_position").unwrap();
        let table: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let fields: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(fields, table);

        let mut app = conn.appender("events").unwrap();
        app.append_record_batch(batch).unwrap();
        app.flush().unwrap();
        drop(app);

        let row: (i64, String, String, i64, i64, i64, String, String, String, i64) = conn
            .query_row(
                "SELECT count(*), sum(reported_cost)::VARCHAR, sum(computed_cost)::VARCHAR, sum(cache_write_1h),
                        sum(web_search_requests), max(http_status), max(list_extract(tags, 2)), max(metadata),
                        max(cost_source), max(epoch_us(ts)) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?)),
            )
            .unwrap();
        assert_eq!(row.0, 3000);
        assert_eq!(row.1.parse::<Decimal>().unwrap(), dec!(0.000000003));
        assert_eq!(row.2.parse::<Decimal>().unwrap(), dec!(370368370.370367036));
        assert_eq!((row.3, row.4, row.5), (12_000, 33_000, 504));
        assert_eq!(
            (row.6.as_str(), row.7.as_str(), row.8.as_str()),
            ("b", r#"{"k":"v"}"#, "reported")
        );
        assert_eq!(
            row.9,
            Utc.with_ymd_and_hms(2026, 11, 20, 10, 49, 59)
                .unwrap()
                .timestamp_micros()
        );
    }
}
