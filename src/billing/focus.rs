//! `focus`: FinOps FOCUS 1.0–1.3 cost-and-usage rows, from CSV or Parquet (formats.md §8).
//!
//! `BilledCost` (Decimal, in `BillingCurrency`) is the line's amount; `EffectiveCost` and
//! `ListCost` are kept beside it. `ChargePeriodStart` is inclusive, `ChargePeriodEnd`
//! exclusive. The provider is `ServiceProviderName` (1.3) or the deprecated `ProviderName`
//! (1.0–1.2), canonicalized like events' providers after mapping the cloud vendors' FOCUS
//! names (`Microsoft` → `azure`, `Amazon Web Services` → `aws`, `Google Cloud` → `google`).
//! `SubAccountId` is the provider-side sub-account; `Tags` is a JSON object in a string (or a
//! map in Parquet). `ConsumedQuantity`/`ConsumedUnit` become a token count when the unit counts
//! tokens (`1000 Tokens` is scaled). `ChargeCategory` (Usage, Purchase, Tax, Credit,
//! Adjustment) and `ChargeClass` (`Correction`: negative or positive amendments of an earlier
//! period) are kept, so corrections restate the period they name.
//!
//! Cloud FOCUS exports hold every service a company buys. Only rows whose `ServiceCategory` is
//! `AI and Machine Learning` (or empty) are imported unless `all_services=true`; the others are
//! counted as skipped, never silently dropped. The model is `ResourceName` when it names a
//! model Tally's catalog recognizes (the FOCUS spec's own example does this); other SKU columns
//! are hints kept in the line.

use std::collections::BTreeMap;

use serde_json::Value;

use super::model::{self, CostLine, Ctx, ParsedImport};
use super::rows::{Row, Table};
use super::ImportError;
use crate::ingest::fields::FieldError;
use crate::pricing::Pricer;

/// The service category of LLM spend.
const AI_CATEGORY: &str = "AI and Machine Learning";

const CHARGE_CATEGORIES: &[&str] = &["Usage", "Purchase", "Tax", "Credit", "Adjustment"];

/// FOCUS provider names of the clouds that resell models, to the ids events use.
const CLOUD_NAMES: &[(&str, &str)] = &[
    ("microsoft", "azure"),
    ("microsoft azure", "azure"),
    ("amazon web services", "aws"),
    ("amazon", "aws"),
    ("google cloud", "google"),
    ("google cloud platform", "google"),
    ("gcp", "google"),
];

/// Column indexes, looked up once per file.
struct Cols {
    billed: usize,
    start: usize,
    end: usize,
    currency: usize,
    provider: usize,
    provider_name: &'static str,
    effective: Option<usize>,
    list: Option<usize>,
    service: Option<usize>,
    service_category: Option<usize>,
    sku: Option<usize>,
    sku_meter: Option<usize>,
    resource_name: Option<usize>,
    sub_account: Option<usize>,
    tags: Option<usize>,
    consumed_q: Option<usize>,
    consumed_u: Option<usize>,
    pricing_q: Option<usize>,
    pricing_u: Option<usize>,
    category: Option<usize>,
    class: Option<usize>,
    description: Option<usize>,
    /// Kept as attributes: (attribute name, column).
    attributes: Vec<(&'static str, Option<usize>)>,
}

pub fn parse(
    table: &Table,
    all_services: bool,
    ctx: &Ctx<'_>,
) -> Result<ParsedImport, ImportError> {
    let (provider, provider_name) =
        match (table.col("ServiceProviderName"), table.col("ProviderName")) {
            (Some(c), _) => (c, "ServiceProviderName"),
            (None, Some(c)) => (c, "ProviderName"),
            (None, None) => {
                return Err(ImportError::Unreadable(format!(
                    "focus: the file has neither ServiceProviderName (FOCUS 1.3) nor ProviderName \
                 (1.0–1.2); its columns are: {}",
                    table.columns.join(", ")
                )))
            }
        };
    let req = table.require(
        "focus",
        &[
            "BilledCost",
            "ChargePeriodStart",
            "ChargePeriodEnd",
            "BillingCurrency",
        ],
    )?;
    let c = |name: &str| table.col(name);
    let cols = Cols {
        billed: req[0],
        start: req[1],
        end: req[2],
        currency: req[3],
        provider,
        provider_name,
        effective: c("EffectiveCost"),
        list: c("ListCost"),
        service: c("ServiceName"),
        service_category: c("ServiceCategory"),
        sku: c("SkuId"),
        sku_meter: c("SkuMeter"),
        resource_name: c("ResourceName"),
        sub_account: c("SubAccountId"),
        tags: c("Tags"),
        consumed_q: c("ConsumedQuantity"),
        consumed_u: c("ConsumedUnit"),
        pricing_q: c("PricingQuantity"),
        pricing_u: c("PricingUnit"),
        category: c("ChargeCategory"),
        class: c("ChargeClass"),
        description: c("ChargeDescription"),
        attributes: [
            ("resource_id", "ResourceId"),
            ("resource_name", "ResourceName"),
            ("sub_account_name", "SubAccountName"),
            ("billing_account_id", "BillingAccountId"),
            ("invoice_id", "InvoiceId"),
            ("region_id", "RegionId"),
            ("sku_meter", "SkuMeter"),
            ("host_provider_name", "HostProviderName"),
            ("service_subcategory", "ServiceSubcategory"),
            ("pricing_quantity", "PricingQuantity"),
            ("pricing_unit", "PricingUnit"),
        ]
        .into_iter()
        .map(|(a, col)| (a, c(col)))
        .collect(),
    };
    let mut skipped = 0usize;
    let mut out = table.parse_rows(ctx, |row, out| {
        if !all_services {
            if let Some(category) = row.get(cols.service_category) {
                if !category.eq_ignore_ascii_case(AI_CATEGORY) {
                    skipped += 1;
                    return Ok(());
                }
            }
        }
        out.push_cost(line(row, &cols, ctx)?);
        Ok(())
    });
    out.skipped = skipped;
    Ok(out)
}

fn required<'r>(row: &'r Row, col: usize, name: &str) -> Result<&'r str, FieldError> {
    row.get(Some(col))
        .ok_or_else(|| FieldError::new(name, "is required"))
}

fn line(row: &Row, cols: &Cols, ctx: &Ctx<'_>) -> Result<CostLine, FieldError> {
    let start = model::instant(
        "ChargePeriodStart",
        required(row, cols.start, "ChargePeriodStart")?,
    )?;
    let end = model::instant(
        "ChargePeriodEnd",
        required(row, cols.end, "ChargePeriodEnd")?,
    )?;
    let (period_start, period_end) =
        model::period(start, end, "ChargePeriodStart", "ChargePeriodEnd", ctx.now)?;
    let amount = model::amount("BilledCost", required(row, cols.billed, "BilledCost")?)?;
    let opt_amount =
        |col: Option<usize>, name: &str| row.get(col).map(|v| model::amount(name, v)).transpose();
    let provider_given = required(row, cols.provider, cols.provider_name)?;
    let charge_category = row
        .get(cols.category)
        .map(|v| {
            CHARGE_CATEGORIES
                .iter()
                .find(|c| c.eq_ignore_ascii_case(v))
                .map(|c| c.to_string())
                .ok_or_else(|| {
                    FieldError::new(
                        "ChargeCategory",
                        format!("{v:?} is not one of {}", CHARGE_CATEGORIES.join(", ")),
                    )
                })
        })
        .transpose()?;
    let charge_class = row
        .get(cols.class)
        .map(|v| {
            if v.eq_ignore_ascii_case("Correction") {
                Ok("Correction".to_string())
            } else {
                Err(FieldError::new(
                    "ChargeClass",
                    format!("{v:?} must be Correction or empty"),
                ))
            }
        })
        .transpose()?;
    let (quantity, unit) = match row.get(cols.consumed_q) {
        Some(q) => (
            Some(model::quantity("ConsumedQuantity", q)?),
            model::text("ConsumedUnit", row.get(cols.consumed_u))?,
        ),
        None => match row.get(cols.pricing_q) {
            Some(q) => (
                Some(model::quantity("PricingQuantity", q)?),
                model::text("PricingUnit", row.get(cols.pricing_u))?,
            ),
            None => (None, None),
        },
    };
    let description = model::text("ChargeDescription", row.get(cols.description))?;
    let resource_name = model::text("ResourceName", row.get(cols.resource_name))?;
    Ok(CostLine {
        line: row.line,
        provider: provider(ctx.pricer, provider_given),
        sub_account: model::text("SubAccountId", row.get(cols.sub_account))?,
        service: model::text("ServiceName", row.get(cols.service))?,
        model: resource_name.filter(|m| ctx.pricer.infer_provider(m).is_some()),
        line_item: match description {
            Some(d) => Some(d),
            None => model::text("SkuMeter", row.get(cols.sku_meter))?,
        },
        sku: model::text("SkuId", row.get(cols.sku))?,
        period_start,
        period_end,
        amount,
        list_amount: opt_amount(cols.list, "ListCost")?,
        effective_amount: opt_amount(cols.effective, "EffectiveCost")?,
        currency: model::currency("BillingCurrency", row.get(Some(cols.currency)))?,
        tokens: model::token_quantity(quantity, unit.as_deref()),
        quantity,
        unit,
        charge_category,
        charge_class,
        tags: row.get(cols.tags).map(tags).transpose()?.flatten(),
        attributes: model::json_object(
            cols.attributes
                .iter()
                .map(|(name, c)| (*name, row.get(*c).map(|v| Value::String(v.into())))),
        ),
        raw: row.raw.clone(),
    })
}

/// A FOCUS provider name → the provider id events carry.
fn provider(pricer: &Pricer, given: &str) -> String {
    let lower = given.trim().to_ascii_lowercase();
    match CLOUD_NAMES.iter().find(|(name, _)| *name == lower) {
        Some((_, id)) => model::provider(pricer, id),
        None => model::provider(pricer, &lower),
    }
}

/// `Tags`: a JSON object (FOCUS KeyValue format), kept compact with sorted keys; `{}` is none.
fn tags(raw: &str) -> Result<Option<String>, FieldError> {
    let parsed: BTreeMap<String, Value> = serde_json::from_str(raw).map_err(|_| {
        FieldError::new(
            "Tags",
            "must be a JSON object of tag names to values (FOCUS KeyValue format)",
        )
    })?;
    if parsed.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&parsed)
        .map(Some)
        .map_err(|e| FieldError::new("Tags", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_must_be_objects() {
        assert_eq!(
            tags(r#"{"team":"support","feature":"bot"}"#)
                .unwrap()
                .as_deref(),
            Some(r#"{"feature":"bot","team":"support"}"#)
        );
        assert_eq!(tags("{}").unwrap(), None);
        assert!(tags("team=support").is_err());
        assert!(tags("[1]").is_err());
    }
}
