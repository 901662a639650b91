//! `csv`: any CSV invoice or cost export, read through a column mapping given as parameters
//! (`date_column`, `amount_column`, `currency_column` or `currency`, `provider_column` or
//! `provider`, and optionally `end_date_column`, `model_column`, `project_column`,
//! `quantity_column`, `unit_column`/`unit`, `line_item_column`, `period`, `date_format`).
//!
//! Amounts are major units read from their exact text (a sign is allowed: credits). A line
//! lasts from its date for one `period` (day by default) unless an end column is mapped; an end
//! given as a bare date is inclusive (invoices write "1 Jan – 31 Jan"), so it ends at the next
//! midnight. Every mapped column must exist in the header: a typo is a 400 naming the parameter
//! and the columns the file has, never a silently empty field.

use chrono::{DateTime, Duration, Months, NaiveDate, NaiveDateTime, Utc};

use super::model::{self, CostLine, Ctx, ParsedImport};
use super::rows::Table;
use super::{CsvMapping, ImportError, Period};
use crate::ingest::fields::FieldError;

pub fn parse(table: &Table, m: &CsvMapping, ctx: &Ctx<'_>) -> Result<ParsedImport, ImportError> {
    let col = |param: &str, name: &str| {
        table.col(name).ok_or_else(|| {
            ImportError::BadParameter(format!(
                "{param}: the file has no column {name:?}; its columns are: {}",
                table.columns.join(", ")
            ))
        })
    };
    let opt_col =
        |param: &str, name: &Option<String>| name.as_deref().map(|n| col(param, n)).transpose();
    let date_c = col("date_column", &m.date_column)?;
    let amount_c = col("amount_column", &m.amount_column)?;
    let end_c = opt_col("end_date_column", &m.end_date_column)?;
    let currency_c = opt_col("currency_column", &m.currency_column)?;
    let provider_c = opt_col("provider_column", &m.provider_column)?;
    let model_c = opt_col("model_column", &m.model_column)?;
    let project_c = opt_col("project_column", &m.project_column)?;
    let quantity_c = opt_col("quantity_column", &m.quantity_column)?;
    let unit_c = opt_col("unit_column", &m.unit_column)?;
    let line_item_c = opt_col("line_item_column", &m.line_item_column)?;
    let date_name = m.date_column.as_str();
    let amount_name = m.amount_column.as_str();
    Ok(table.parse_rows(ctx, |row, out| {
        let start_raw = row
            .get(Some(date_c))
            .ok_or_else(|| FieldError::new(date_name, "is required"))?;
        let start = date(date_name, start_raw, m.date_format.as_deref())?;
        let end = match row.get(end_c) {
            Some(raw) => {
                let name = m.end_date_column.as_deref().unwrap_or("end_date_column");
                let end = date(name, raw, m.date_format.as_deref())?;
                if is_bare_date(raw) {
                    end + Duration::days(1)
                } else {
                    end
                }
            }
            None => after(start, m.period)
                .ok_or_else(|| FieldError::new(date_name, "the period's end is out of range"))?,
        };
        let end_name = m.end_date_column.as_deref().unwrap_or(date_name);
        let (period_start, period_end) = model::period(start, end, date_name, end_name, ctx.now)?;
        let amount = model::amount(
            amount_name,
            row.get(Some(amount_c))
                .ok_or_else(|| FieldError::new(amount_name, "is required"))?,
        )?;
        let currency_field = m.currency_column.as_deref().unwrap_or("currency");
        let currency = model::currency(
            currency_field,
            row.get(currency_c).or(m.currency.as_deref()),
        )?;
        let provider_field = m.provider_column.as_deref().unwrap_or("provider");
        let provider_name = row
            .get(provider_c)
            .or(m.provider.as_deref())
            .ok_or_else(|| FieldError::new(provider_field, "is required"))?;
        let name = |c: &Option<String>, fallback: &'static str| -> String {
            c.clone().unwrap_or_else(|| fallback.to_string())
        };
        let quantity = row
            .get(quantity_c)
            .map(|q| model::quantity(&name(&m.quantity_column, "quantity"), q))
            .transpose()?;
        let unit = model::text(
            &name(&m.unit_column, "unit"),
            row.get(unit_c).or(m.unit.as_deref()),
        )?;
        out.push_cost(CostLine {
            line: row.line,
            provider: model::provider(ctx.pricer, provider_name),
            sub_account: model::text(&name(&m.project_column, "project"), row.get(project_c))?,
            service: None,
            model: model::text(&name(&m.model_column, "model"), row.get(model_c))?,
            line_item: model::text(
                &name(&m.line_item_column, "line_item"),
                row.get(line_item_c),
            )?,
            sku: None,
            period_start,
            period_end,
            amount,
            list_amount: None,
            effective_amount: None,
            currency,
            tokens: model::token_quantity(quantity, unit.as_deref()),
            quantity,
            unit,
            charge_category: None,
            charge_class: None,
            tags: None,
            attributes: None,
            raw: row.raw.clone(),
        });
        Ok(())
    }))
}

fn is_bare_date(raw: &str) -> bool {
    let t = raw.trim();
    t.len() == 10 && NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok()
}

/// A date cell: with the mapping's `date_format` when given, else any encoding
/// [`model::instant`] reads. Dates without a time are UTC midnight.
fn date(field: &str, raw: &str, format: Option<&str>) -> Result<DateTime<Utc>, FieldError> {
    let Some(fmt) = format else {
        return model::instant(field, raw);
    };
    let t = raw.trim();
    if let Ok(ts) = NaiveDateTime::parse_from_str(t, fmt) {
        return Ok(ts.and_utc());
    }
    if let Some(d) = NaiveDate::parse_from_str(t, fmt)
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(d.and_utc());
    }
    Err(FieldError::new(
        field,
        format!("{t:?} does not match date_format {fmt:?}"),
    ))
}

fn after(start: DateTime<Utc>, period: Period) -> Option<DateTime<Utc>> {
    match period {
        Period::Hour => Some(start + Duration::hours(1)),
        Period::Day => Some(start + Duration::days(1)),
        Period::Month => start.checked_add_months(Months::new(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_with_and_without_a_format() {
        let want: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
        assert_eq!(date("d", "2026-01-05", None).unwrap(), want);
        assert_eq!(date("d", "05/01/2026", Some("%d/%m/%Y")).unwrap(), want);
        assert!(date("d", "2026-01-05", Some("%d/%m/%Y")).is_err());
        assert!(is_bare_date("2026-01-31"));
        assert!(!is_bare_date("2026-01-31T00:00:00Z"));
        assert_eq!(
            after(want, Period::Month).unwrap(),
            "2026-02-05T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
