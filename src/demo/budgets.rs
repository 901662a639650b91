//! The budgets `tally demo` ships with, sized so the stories in the generated traffic cross
//! them: the runaway code-review loop (a per-run cap, and the customer whose repository it ran
//! on in the per-customer budget), acme-corp's heavy use, the doc-qa prompt change in the last
//! week, and dev-tools' month overall.
//!
//! Rolling windows make the alerts independent of the calendar day the demo runs on; one
//! calendar-month budget with a forecast (in Los Angeles time) shows the projection. Installed
//! through the same path as `[[budgets]]` in the config file, idempotently by name. With a
//! webhook URL, every demo budget also gets a channel to it (one shared secret, returned).

use crate::budgets::channel::ChannelSpec;
use crate::budgets::model::{BudgetSpec, OneOrMany, RunCapSpec, Source};
use crate::budgets::service;
use crate::budgets::{signing, Engine};
use crate::store::Store;

/// Names of the demo budgets.
pub const PROJECT_TOTAL: &str = "dev-tools: 30 days";
pub const PER_CUSTOMER: &str = "code-review per customer: 30 days";
pub const DOC_QA_WEEK: &str = "doc-qa: 7 days";
pub const RUN_CAP: &str = "code-review runaway runs";
pub const MONTHLY_FORECAST: &str = "knowledge-hub: month";

/// Name of the demo's webhook channel (one per project).
pub const CHANNEL: &str = "demo-webhook";

fn scope(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, OneOrMany> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OneOrMany::One(v.to_string())))
        .collect()
}

fn usd(s: &str) -> Option<rust_decimal::Decimal> {
    s.parse().ok()
}

/// The demo budgets; `channels` names the channel each one alerts.
pub fn specs(channels: &[String]) -> Vec<BudgetSpec> {
    let base = |name: &str, project: &str| BudgetSpec {
        name: name.into(),
        project: Some(project.into()),
        channels: channels.to_vec(),
        ..BudgetSpec::default()
    };
    vec![
        BudgetSpec {
            period: Some("rolling 30 days".into()),
            amount: usd("800"),
            ..base(PROJECT_TOTAL, "dev-tools")
        },
        BudgetSpec {
            scope: scope(&[("feature", "code-review")]),
            split_by: Some("customer_id".into()),
            period: Some("rolling 30 days".into()),
            amount: usd("100"),
            ..base(PER_CUSTOMER, "dev-tools")
        },
        BudgetSpec {
            scope: scope(&[("feature", "code-review")]),
            run_cap: Some(RunCapSpec {
                per: Some("run_id".into()),
                max_cost: usd("10"),
                max_calls: Some(100),
            }),
            ..base(RUN_CAP, "dev-tools")
        },
        BudgetSpec {
            scope: scope(&[("feature", "doc-qa")]),
            period: Some("rolling 7 days".into()),
            amount: usd("40"),
            ..base(DOC_QA_WEEK, "knowledge-hub")
        },
        BudgetSpec {
            period: Some("month".into()),
            tz: Some("America/Los_Angeles".into()),
            amount: usd("300"),
            forecast: Some(true),
            ..base(MONTHLY_FORECAST, "knowledge-hub")
        },
    ]
}

/// Installs the demo budgets (and, with `webhook_url`, a channel per project to it). Returns
/// the channels' shared secret as `[(channel name, secret)]` when a channel was made.
pub async fn install(
    store: &Store,
    engine: &Engine,
    webhook_url: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut channels = Vec::new();
    let mut secrets = Vec::new();
    if let Some(url) = webhook_url {
        let secret = signing::new_secret();
        for project in ["dev-tools", "knowledge-hub"] {
            channels.push(ChannelSpec {
                name: CHANNEL.into(),
                project: Some(project.into()),
                kind: Some("webhook".into()),
                url: url.into(),
                secret: Some(secret.clone()),
                enabled: None,
            });
        }
        secrets.push((CHANNEL.to_string(), secret));
    }
    let names: Vec<String> = if channels.is_empty() {
        Vec::new()
    } else {
        vec![CHANNEL.to_string()]
    };
    service::apply_declared(store, engine, &specs(&names), &channels, Source::Demo).await?;
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_budgets_are_valid() {
        for spec in specs(&[CHANNEL.to_string()]) {
            spec.check()
                .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        }
    }
}
