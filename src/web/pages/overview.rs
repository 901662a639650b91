//! The overview: spend for the period against the previous one, daily spend with a forecast to
//! the period's end, warnings (unpriced usage, rejects), and the top features, users, customers
//! and models — each a link into Explore. Every number comes from `analytics::costs`, the code
//! behind `/api/v1/costs`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use super::{render, urlencode, Layout, PageError, Range};
use crate::analytics::costs::{self, CostQuery, Measures, Parts};
use crate::analytics::params::{pairs, Common, Filter, OrderBy, TimeRange};
use crate::analytics::tasks::{self, TaskMeasures, TaskQuery};
use crate::analytics::time::{self, Interval};
use crate::budgets::service;
use crate::domain::dimension::Dimension;
use crate::domain::money::{display_usd, to_api_string};
use crate::keys::Principal;
use crate::store::queries::rejects;
use crate::web::auth::{self, SessionCookie};
use crate::web::charts::{BarChart, Series};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub layout: Layout,
    pub range: Range,
    pub keep: Vec<(String, String)>,
    pub total: Measures,
    pub cost: String,
    pub cost_exact: String,
    /// Change against the previous period of the same length, e.g. "+12.5 %".
    pub change: Option<String>,
    pub change_up: bool,
    pub previous_cost: String,
    pub error_rate: String,
    pub rejects: i64,
    pub forecast: Option<String>,
    pub chart: String,
    pub tops: Vec<TopTable>,
    pub api_link: String,
    /// Spend budgets' rows, closest to the limit first.
    pub budgets: Vec<BudgetBar>,
    /// The instant the budget numbers are for.
    pub budgets_at: String,
    /// Every task of the range, for the headline cost per successful task.
    pub tasks_total: TaskLine,
    /// Features, the highest cost per successful task first.
    pub task_features: Vec<TaskLine>,
    pub tasks_api: String,
}

/// One budget (and split value) as a progress bar.
pub struct BudgetBar {
    pub id: String,
    pub name: String,
    /// The split value, empty for an unsplit budget.
    pub split: String,
    pub spent: String,
    pub spent_exact: String,
    pub amount: String,
    pub amount_exact: String,
    /// As `/api/v1/budgets/status` gives it, e.g. "62.5".
    pub percent_exact: String,
    pub state: String,
    pub forecast: String,
    /// Width class step (0–100 in tens).
    pub bar: u32,
}

/// Cost per successful task and success rate of one group (or of all tasks).
pub struct TaskLine {
    pub key: String,
    pub link: String,
    pub tasks: i64,
    pub successful: i64,
    pub cost_per_success: String,
    /// The API's string, empty when no task succeeded (the API says `null`).
    pub cost_per_success_exact: String,
    pub success_rate: String,
    pub success_rate_exact: String,
}

/// Budget rows shown on the overview; the full list is on `/budgets`.
const BUDGET_BARS: usize = 5;
/// Features in the cost-per-successful-task table.
const TASK_FEATURES: usize = 5;

impl TaskLine {
    fn new(key: String, link: String, m: &TaskMeasures) -> TaskLine {
        let per = m.cost_per_successful_task();
        let rate = m.success_rate();
        TaskLine {
            key,
            link,
            tasks: m.tasks,
            successful: m.successful,
            cost_per_success: per.map(display_usd).unwrap_or_else(|| "–".into()),
            cost_per_success_exact: per.map(to_api_string).unwrap_or_default(),
            success_rate: rate
                .map(|r| percent(r, Decimal::ONE))
                .unwrap_or_else(|| "–".into()),
            success_rate_exact: rate.map(to_api_string).unwrap_or_default(),
        }
    }
}

pub struct TopTable {
    pub title: &'static str,
    pub dimension: &'static str,
    pub explore_link: String,
    pub rows: Vec<TopRow>,
}

pub struct TopRow {
    pub key: String,
    pub link: String,
    pub cost: String,
    pub cost_exact: String,
    pub share: String,
    pub requests: i64,
}

fn query(
    range: TimeRange,
    filters: &[Filter],
    group_by: Vec<Dimension>,
    interval: Interval,
    tz: chrono_tz::Tz,
    limit: usize,
) -> CostQuery {
    CostQuery {
        common: Common {
            range,
            interval,
            tz,
            group_by,
            filters: filters.to_vec(),
            order: Some(OrderBy {
                key: "cost".into(),
                descending: true,
            }),
            limit,
        },
    }
}

/// Percentage with one decimal, from exact decimals.
pub fn percent(part: Decimal, whole: Decimal) -> String {
    if whole.is_zero() {
        return "–".into();
    }
    format!("{} %", (part * Decimal::ONE_HUNDRED / whole).round_dp(1))
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCookie>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
    let now = Utc::now();
    let params = pairs(raw.as_deref());
    let range = Range::from_pairs(&params, now)?;
    let mut filters = Vec::new();
    auth::scope(&principal, &mut filters)?;
    let tz = range.tz;
    let window = TimeRange {
        from: Some(range.from),
        to: Some(range.to),
    };

    // The page's questions are independent: ask them side by side (the store reads on a pool
    // of connections), so the page takes about as long as its slowest question.
    let daily = async {
        Ok::<_, PageError>(
            costs::query(
                &state.store,
                query(window, &filters, Vec::new(), Interval::Day, tz, 10_000),
            )
            .await?,
        )
    };
    let (prev_from, prev_to) = range.previous();
    let previous = async {
        Ok::<_, PageError>(
            costs::query_parts(
                &state.store,
                query(
                    TimeRange {
                        from: Some(prev_from),
                        to: Some(prev_to),
                    },
                    &filters,
                    Vec::new(),
                    Interval::None,
                    tz,
                    1,
                ),
                Parts::TotalOnly,
            )
            .await?
            .total,
        )
    };
    let dims = [
        ("Features", Dimension::Feature),
        ("Customers", Dimension::CustomerId),
        ("Users", Dimension::UserId),
        ("Models", Dimension::Model),
    ];
    let (store, filters_ref) = (&state.store, &filters);
    let top = |dim: Dimension| async move {
        Ok::<_, PageError>(
            costs::query_parts(
                store,
                query(window, filters_ref, vec![dim], Interval::None, tz, 8),
                Parts::RowsOnly,
            )
            .await?,
        )
    };
    let project = principal.project.clone();
    let (from, to) = (range.from, range.to);
    let rejects = async {
        Ok::<_, PageError>(
            state
                .store
                .read(move |conn| rejects::count(conn, project.as_deref(), from, to))
                .await?,
        )
    };
    let budgets = budget_bars(&state, principal.project.as_deref());
    // The same question as `/api/v1/tasks?from=…&to=…&tz=…&group_by=feature&order=…`, so the
    // page and the API agree for the linked filter.
    let mut task_pairs = super::tasks::range_pairs(&range);
    task_pairs.push(("group_by".into(), "feature".into()));
    task_pairs.push(("order".into(), "cost_per_successful_task:desc".into()));
    let tasks_api = format!("/api/v1/tasks?{}", super::tasks::query_string(&task_pairs));
    let mut tq = TaskQuery::parse(&task_pairs, state.config.analytics.open_task_timeout.0, now)?;
    auth::scope(&principal, &mut tq.common.filters)?;
    let task_answer = async { Ok::<_, PageError>(tasks::query(&state.store, tq).await?) };
    let (daily, previous, t0, t1, t2, t3, rejects, (budgets, budgets_at), task_answer) = tokio::try_join!(
        daily,
        previous,
        top(dims[0].1),
        top(dims[1].1),
        top(dims[2].1),
        top(dims[3].1),
        rejects,
        budgets,
        task_answer
    )?;
    let total = daily.total.clone();

    // Daily bars from the range start to the period end; future days carry the forecast.
    let by_day: HashMap<DateTime<Utc>, Decimal> = daily
        .rows
        .iter()
        .filter_map(|r| r.bucket.map(|b| (b, r.measures.cost)))
        .collect();
    let days = time::bucket_starts(
        range.from,
        range.period_end.max(range.to),
        Interval::Day,
        tz,
        400,
    )
    .map_err(crate::analytics::params::ParamError)?;
    let today_start = time::floor(now, Interval::Day, tz);
    let rate = daily_rate(&by_day, today_start, range.from);
    let mut chart = BarChart {
        title: "Daily spend".into(),
        ..BarChart::default()
    };
    let mut actual = Vec::new();
    let mut projected_rest = Decimal::ZERO;
    for day in &days {
        chart
            .buckets
            .push(day.with_timezone(&tz).format("%b %-d").to_string());
        actual.push(by_day.get(day).copied().unwrap_or_default());
        if range.period_end > range.to && *day > today_start {
            chart.forecast.push(Some(rate));
            projected_rest += rate;
        } else {
            chart.forecast.push(None);
        }
    }
    chart.series.push(Series {
        label: "Spend".into(),
        values: actual,
    });
    let forecast = (range.period_end > range.to).then(|| display_usd(total.cost + projected_rest));

    let mut tops = Vec::new();
    for ((title, dim), answer) in dims.into_iter().zip([t0, t1, t2, t3]) {
        let rows = answer
            .rows
            .iter()
            .map(|r| {
                let key = r.keys[0].clone();
                let filter_value = key.clone().unwrap_or_default();
                TopRow {
                    key: key.unwrap_or_else(|| "(none)".into()),
                    link: format!(
                        "/explore?{}&group_by=model&{}={}",
                        range.query(),
                        dim.name(),
                        urlencode(&filter_value)
                    ),
                    cost: display_usd(r.measures.cost),
                    cost_exact: to_api_string(r.measures.cost),
                    share: percent(r.measures.cost, total.cost),
                    requests: r.measures.requests,
                }
            })
            .collect();
        tops.push(TopTable {
            title,
            dimension: dim.name(),
            explore_link: format!("/explore?{}&group_by={}", range.query(), dim.name()),
            rows,
        });
    }

    let tasks_total = TaskLine::new(
        "All tasks".into(),
        format!("/tasks?{}", range.query()),
        &task_answer.total,
    );
    let task_features = task_answer
        .rows
        .iter()
        .filter(|r| r.measures.successful > 0)
        .take(TASK_FEATURES)
        .map(|r| {
            let key = r.keys.first().cloned().flatten();
            TaskLine::new(
                key.clone().unwrap_or_else(|| "(none)".into()),
                format!(
                    "/tasks?{}&group_by=feature&feature={}",
                    range.query(),
                    urlencode(&key.unwrap_or_default())
                ),
                &r.measures,
            )
        })
        .collect();

    let change = (!previous.cost.is_zero()).then(|| {
        let pct = (total.cost - previous.cost) * Decimal::ONE_HUNDRED / previous.cost;
        // Against a near-empty previous period (a service just set up, a first month) a
        // percentage is huge and says nothing; the previous amount itself says it plainly.
        if pct.abs() > Decimal::from(1000) {
            format!("from {} in the previous period", display_usd(previous.cost))
        } else {
            format!(
                "{}{} % vs previous period",
                if pct >= Decimal::ZERO { "+" } else { "" },
                pct.round_dp(1)
            )
        }
    });
    let page = OverviewPage {
        layout: Layout::new(
            "Overview",
            "overview",
            &principal,
            session.as_ref().map(|s| &s.0),
            state.auth.sessions(),
        ),
        keep: Vec::new(),
        cost: display_usd(total.cost),
        cost_exact: to_api_string(total.cost),
        change_up: total.cost >= previous.cost,
        change,
        previous_cost: display_usd(previous.cost),
        error_rate: percent(Decimal::from(total.errors), Decimal::from(total.requests)),
        rejects,
        forecast,
        chart: chart.render(),
        tops,
        api_link: format!("/api/v1/costs?{}", range.api_query()),
        total,
        range,
        budgets,
        budgets_at,
        tasks_total,
        task_features,
        tasks_api,
    };
    render(&page, started, "overview")
}

/// Every spend budget's rows from `/api/v1/budgets/status`' code, closest to the limit first.
/// Run caps are left to `/budgets`: they have no "percent of a limit" for a period.
/// The budget rows closest to their limit, and the instant their numbers are for (the status
/// answer's `at`, which `/api/v1/budgets/status?at=` reproduces).
async fn budget_bars(
    state: &AppState,
    project: Option<&str>,
) -> Result<(Vec<BudgetBar>, String), PageError> {
    let status = service::status(&state.store, &state.budgets, project, None, None)
        .await
        .map_err(crate::web::Error::from)?;
    let at = status["at"].as_str().unwrap_or_default().to_string();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let dec = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<Decimal>().ok());
    let mut bars: Vec<(Decimal, BudgetBar)> = Vec::new();
    for b in status["budgets"].as_array().into_iter().flatten() {
        if b["kind"] == "run_cap" {
            continue;
        }
        for r in b["rows"].as_array().into_iter().flatten() {
            let Some(pct) = dec(&r["percent"]) else {
                continue;
            };
            bars.push((
                pct,
                BudgetBar {
                    id: text(&b["id"]),
                    name: text(&b["name"]),
                    split: text(&r["split_value"]),
                    spent: dec(&r["spent"]).map(display_usd).unwrap_or_default(),
                    spent_exact: text(&r["spent"]),
                    amount: dec(&r["amount"]).map(display_usd).unwrap_or_default(),
                    amount_exact: text(&r["amount"]),
                    percent_exact: text(&r["percent"]),
                    state: text(&r["state"]),
                    forecast: dec(&r["forecast"])
                        .map(display_usd)
                        .unwrap_or_else(|| "–".into()),
                    bar: super::budgets::bar_width(pct),
                },
            ));
        }
    }
    // Highest percent first; ties in a stable, readable order.
    bars.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.name.cmp(&b.1.name))
            .then_with(|| a.1.split.cmp(&b.1.split))
    });
    Ok((
        bars.into_iter()
            .take(BUDGET_BARS)
            .map(|(_, bar)| bar)
            .collect(),
        at,
    ))
}

/// Spend per day lately: the mean over the last seven complete days (fewer when the range is
/// younger), the basis of the period-end forecast (spent so far + rate × days left).
fn daily_rate(
    by_day: &HashMap<DateTime<Utc>, Decimal>,
    today_start: DateTime<Utc>,
    range_start: DateTime<Utc>,
) -> Decimal {
    let start = range_start.max(today_start - Duration::days(7));
    let days = (today_start - start).num_days();
    if days <= 0 {
        return Decimal::ZERO;
    }
    let sum: Decimal = by_day
        .iter()
        .filter(|(day, _)| **day >= start && **day < today_start)
        .map(|(_, c)| *c)
        .sum();
    (sum / Decimal::from(days)).round_dp(6)
}
