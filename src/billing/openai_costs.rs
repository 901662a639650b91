//! `openai-costs`: OpenAI's Costs API (`GET /v1/organization/costs`) pages and the cost CSV
//! export of the usage dashboard (formats.md §1d, §1e).
//!
//! Each result is one day's cost of a project and/or line item: `amount.value` is a number in
//! dollars (major units; read from its exact text), `amount.currency` a lower-case code that is
//! upper-cased here. `line_item` (`"gpt-4o-2024-08-06, input"` in the CSV export, `"input_tokens"`
//! in the spec's example) gives the model when it has a `model, direction` shape. Group-by
//! fields are null when the report was not grouped by them; null means "all", not "unknown".
//! The CSV export has the same fields flattened: `start_time`, `end_time` (Unix seconds),
//! `amount_value`, `amount_currency`, `line_item`, `project_id`, `organization_id`,
//! `project_name`, `organization_name`.

use serde_json::Value;

use super::model::{self, CostLine, Ctx, ParsedImport};
use super::pages::{self, Item};
use super::rows::Table;
use super::ImportError;
use crate::ingest::fields::FieldError;

/// Reads Costs API pages.
pub fn parse_json(text: &str, ctx: &Ctx<'_>) -> Result<ParsedImport, ImportError> {
    let mut out = ParsedImport::default();
    let provider = model::provider(ctx.pricer, "openai");
    pages::walk(text, pages::OPENAI, ctx, &mut out, |item, out| {
        let line = from_result(item, &provider)?;
        out.push_cost(line);
        Ok(())
    })?;
    Ok(out)
}

fn from_result(item: &Item<'_>, provider: &str) -> Result<CostLine, FieldError> {
    let value = item
        .text_at(&["amount", "value"])
        .ok_or_else(|| FieldError::new("amount.value", "is required"))?;
    let amount = model::amount("amount.value", &value)?;
    let currency = model::currency(
        "amount.currency",
        item.text_at(&["amount", "currency"]).as_deref(),
    )?;
    let line_item = model::text("line_item", item.text("line_item").as_deref())?;
    let quantity = item
        .text("quantity")
        .map(|q| model::quantity("quantity", &q))
        .transpose()?;
    let unit = model::text("quantity_unit", item.text("quantity_unit").as_deref())?;
    Ok(CostLine {
        line: item.line,
        provider: provider.to_string(),
        sub_account: model::text("project_id", item.text("project_id").as_deref())?,
        service: None,
        model: line_item.as_deref().and_then(model_of_line_item),
        line_item,
        sku: None,
        period_start: item.start,
        period_end: item.end,
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
        attributes: model::json_object([
            ("api_key_id", item.value.get("api_key_id").cloned()),
            ("project_name", item.value.get("project_name").cloned()),
            (
                "organization_id",
                item.value.get("organization_id").cloned(),
            ),
        ]),
        raw: item.value.to_string(),
    })
}

/// `"gpt-4o-2024-08-06, input"` → `gpt-4o-2024-08-06`; a line item without a model part
/// (`"input_tokens"`, `"web search tool calls"`) names no model.
fn model_of_line_item(line_item: &str) -> Option<String> {
    let (model, _direction) = line_item.split_once(',')?;
    let model = model.trim();
    (!model.is_empty() && !model.contains(' ')).then(|| model.to_string())
}

/// Reads the cost CSV export.
pub fn parse_table(table: &Table, ctx: &Ctx<'_>) -> Result<ParsedImport, ImportError> {
    let cols = table.require(
        "openai-costs CSV",
        &["start_time", "end_time", "amount_value", "amount_currency"],
    )?;
    let (start_c, end_c, value_c, currency_c) = (cols[0], cols[1], cols[2], cols[3]);
    let line_item_c = table.col("line_item");
    let project_c = table.col("project_id");
    let extra: Vec<(&str, Option<usize>)> =
        ["organization_id", "project_name", "organization_name"]
            .into_iter()
            .map(|c| (c, table.col(c)))
            .collect();
    let provider = model::provider(ctx.pricer, "openai");
    Ok(table.parse_rows(ctx, |row, out| {
        let start = model::instant(
            "start_time",
            row.get(Some(start_c))
                .ok_or_else(|| FieldError::new("start_time", "is required"))?,
        )?;
        let end = model::instant(
            "end_time",
            row.get(Some(end_c))
                .ok_or_else(|| FieldError::new("end_time", "is required"))?,
        )?;
        let (period_start, period_end) =
            model::period(start, end, "start_time", "end_time", ctx.now)?;
        let amount = model::amount(
            "amount_value",
            row.get(Some(value_c))
                .ok_or_else(|| FieldError::new("amount_value", "is required"))?,
        )?;
        let line_item = model::text("line_item", row.get(line_item_c))?;
        out.push_cost(CostLine {
            line: row.line,
            provider: provider.clone(),
            sub_account: model::text("project_id", row.get(project_c))?,
            service: None,
            model: line_item.as_deref().and_then(model_of_line_item),
            line_item,
            sku: None,
            period_start,
            period_end,
            amount,
            list_amount: None,
            effective_amount: None,
            currency: model::currency("amount_currency", row.get(Some(currency_c)))?,
            quantity: None,
            unit: None,
            tokens: None,
            charge_category: None,
            charge_class: None,
            tags: None,
            attributes: model::json_object(
                extra
                    .iter()
                    .map(|(name, c)| (*name, row.get(*c).map(|v| Value::String(v.into())))),
            ),
            raw: row.raw.clone(),
        });
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_items_name_models_only_when_they_can() {
        assert_eq!(
            model_of_line_item("gpt-4o-2024-08-06, input").as_deref(),
            Some("gpt-4o-2024-08-06")
        );
        assert_eq!(model_of_line_item("input_tokens"), None);
        assert_eq!(model_of_line_item("web search tool calls, per call"), None);
    }
}
