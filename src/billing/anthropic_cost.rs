//! `anthropic-cost`: Anthropic's `GET /v1/organizations/cost_report` pages (formats.md §2c).
//!
//! The trap of this format: `amount` is a **decimal string in the currency's smallest unit**
//! (cents for USD): `"123.45"` is $1.2345. It is read as text and divided by 100 exactly
//! (a shift of the decimal point, never a float). Buckets are RFC 3339 `starting_at` /
//! `ending_at`, daily. `workspace_id` is the provider-side sub-account; `description`, `model`,
//! `cost_type`, `token_type`, `service_tier`, `context_window` and `inference_geo` are null
//! unless the report was grouped by description. `token_type` says which token bucket a line
//! prices; it is kept in the line's attributes. Priority Tier spend never appears in this
//! report (Anthropic bills it separately), which reconciliation shows as a gap.

use rust_decimal::Decimal;

use super::model::{self, CostLine, Ctx, ParsedImport};
use super::pages::{self, Item};
use super::ImportError;
use crate::ingest::fields::FieldError;

pub fn parse(text: &str, ctx: &Ctx<'_>) -> Result<ParsedImport, ImportError> {
    let mut out = ParsedImport::default();
    let provider = model::provider(ctx.pricer, "anthropic");
    pages::walk(text, pages::ANTHROPIC, ctx, &mut out, |item, out| {
        out.push_cost(from_result(item, &provider)?);
        Ok(())
    })?;
    Ok(out)
}

fn from_result(item: &Item<'_>, provider: &str) -> Result<CostLine, FieldError> {
    let cents = item
        .text("amount")
        .ok_or_else(|| FieldError::new("amount", "is required"))?;
    let cents = model::amount("amount", &cents)?;
    // Smallest unit → major unit: an exact decimal shift. (Every ISO currency Anthropic bills
    // in has two minor digits; the cookbook divides by 100 as well.)
    let amount = model::amount("amount", &(cents / Decimal::ONE_HUNDRED).to_string())?;
    let s = |k: &str| model::text(k, item.text(k).as_deref());
    let token_type = s("token_type")?;
    let description = s("description")?;
    Ok(CostLine {
        line: item.line,
        provider: provider.to_string(),
        sub_account: s("workspace_id")?,
        service: s("cost_type")?,
        model: s("model")?,
        line_item: description.clone().or_else(|| token_type.clone()),
        sku: None,
        period_start: item.start,
        period_end: item.end,
        amount,
        list_amount: None,
        effective_amount: None,
        currency: model::currency("currency", item.text("currency").as_deref())?,
        quantity: None,
        unit: None,
        tokens: None,
        charge_category: None,
        charge_class: None,
        tags: None,
        attributes: model::json_object([
            (
                "amount_minor_units",
                Some(serde_json::Value::String(cents.to_string())),
            ),
            ("token_type", token_type.map(Into::into)),
            ("service_tier", item.value.get("service_tier").cloned()),
            ("context_window", item.value.get("context_window").cloned()),
            ("inference_geo", item.value.get("inference_geo").cloned()),
        ]),
        raw: item.value.to_string(),
    })
}
