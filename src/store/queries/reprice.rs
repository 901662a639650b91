//! SQL that writes re-priced costs back to events (run on the writer, inside one
//! transaction, by `analytics::reprice::apply`), with the rollups and units they change.

use duckdb::{params, Connection};
use rust_decimal::Decimal;

use crate::domain::event::ListParts;
use crate::domain::money::COST_SCALE;
use crate::store::StoreError;

/// New pricing columns for one stored event, by row id.
#[derive(Debug, Clone)]
pub struct Update {
    pub rid: i64,
    pub computed_cost: Option<Decimal>,
    pub list_parts: Option<ListParts>,
    pub custom_cost: Option<Decimal>,
    pub cost: Option<Decimal>,
    pub cost_source: String,
    pub price_id: Option<String>,
    pub custom_price_id: Option<String>,
    pub unpriced_reason: Option<String>,
}

/// Applies `updates` with one `UPDATE … FROM` over a scratch table (row ids are stable within
/// the transaction that read them).
pub fn update(conn: &Connection, updates: &[Update]) -> Result<usize, StoreError> {
    if updates.is_empty() {
        return Ok(0);
    }
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS reprice_updates (
             rid BIGINT, computed_cost DECIMAL(18, 12), custom_cost DECIMAL(18, 12),
             list_lines_cost DECIMAL(18, 12), list_input_cost DECIMAL(18, 12),
             list_output_cost DECIMAL(18, 12),
             cost DECIMAL(18, 12), cost_source VARCHAR, price_id VARCHAR,
             custom_price_id VARCHAR, unpriced_reason VARCHAR);
         DELETE FROM reprice_updates;",
    )?;
    let money = |d: Option<Decimal>| {
        d.map(|mut v| {
            v.rescale(COST_SCALE);
            v.to_string()
        })
    };
    {
        let mut app = conn.appender("reprice_updates")?;
        for u in updates {
            app.append_row(params![
                u.rid,
                money(u.computed_cost),
                money(u.custom_cost),
                money(u.list_parts.map(|p| p.all)),
                money(u.list_parts.map(|p| p.input)),
                money(u.list_parts.map(|p| p.output)),
                money(u.cost),
                u.cost_source,
                u.price_id,
                u.custom_price_id,
                u.unpriced_reason,
            ])?;
        }
        app.flush()?;
    }
    // Re-priced costs change the rollups' sums of the hours they fall in.
    let micros = {
        let mut stmt = conn.prepare(
            "SELECT DISTINCT epoch_us(e.ts) // 3600000000 * 3600000000
             FROM events e JOIN reprice_updates u ON e.rowid = u.rid",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        rows.collect::<Result<Vec<i64>, _>>()?
    };
    // …and the sums of their tasks and runs (re-pricing never moves a call between units).
    crate::store::units::stage_calls(conn, "events e JOIN reprice_updates u ON e.rowid = u.rid")?;
    let n = conn.execute(
        "UPDATE events SET computed_cost = u.computed_cost, custom_cost = u.custom_cost,
             list_lines_cost = u.list_lines_cost, list_input_cost = u.list_input_cost,
             list_output_cost = u.list_output_cost,
             cost = u.cost, cost_source = u.cost_source, price_id = u.price_id,
             custom_price_id = u.custom_price_id, unpriced_reason = u.unpriced_reason
         FROM reprice_updates u WHERE events.rowid = u.rid",
        [],
    )?;
    conn.execute_batch("DELETE FROM reprice_updates")?;
    crate::store::rollup::rebuild_hours(conn, &crate::store::rollup::hours_of(micros))?;
    Ok(n)
}
