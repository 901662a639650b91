//! The service's OpenAPI 3.1 document, served at `GET /api/openapi.json`.
//!
//! One operation per (method, path) of [`super::router`]: the JSON API, the ingest endpoints,
//! the operations endpoints, and the dashboard's pages, forms and static files. The document is
//! assembled from small shared pieces (the analytics parameters, money, the error answer) so a
//! parameter reads the same on every endpoint that takes it, and its enums come from the code's
//! own lists (dimensions, measures, formats) so they cannot drift from the parsers. It describes
//! and decides nothing: no handler reads it. `tests/openapi.rs` keeps it honest against the
//! router's source, the running server, and the answers themselves.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Map, Value};

use crate::analytics::{anomalies, costs, params, reprice, routes, runs, tasks, time, whatif};
use crate::budgets::evaluate::AlertKind;
use crate::domain::dimension::Dimension;
use crate::keys::Role;

/// The document, built once: it depends only on the binary.
static DOCUMENT: LazyLock<Value> = LazyLock::new(build);
static TEXT: LazyLock<String> = LazyLock::new(|| DOCUMENT.to_string());

/// The whole OpenAPI document.
pub fn document() -> Value {
    DOCUMENT.clone()
}

/// `GET /api/openapi.json`.
pub async fn serve() -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/json")], TEXT.as_str()).into_response()
}

// ---------------------------------------------------------------------------------------------
// Schema pieces
// ---------------------------------------------------------------------------------------------

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn described(mut schema: Value, description: &str) -> Value {
    if let Value::Object(m) = &mut schema {
        m.insert("description".into(), description.into());
    }
    schema
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn opt_string(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description})
}

fn integer(description: &str) -> Value {
    json!({"type": "integer", "description": description})
}

fn opt_integer(description: &str) -> Value {
    json!({"type": ["integer", "null"], "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn enumeration(values: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

fn timestamp(description: &str) -> Value {
    json!({"type": "string", "format": "date-time", "description": description})
}

fn opt_timestamp(description: &str) -> Value {
    json!({"type": ["string", "null"], "format": "date-time", "description": description})
}

fn date(description: &str) -> Value {
    json!({"type": "string", "format": "date", "description": description})
}

/// USD as an exact decimal string.
fn money(description: &str) -> Value {
    described(schema_ref("Money"), description)
}

fn nullable(schema: Value, description: &str) -> Value {
    json!({"anyOf": [schema, {"type": "null"}], "description": description})
}

fn opt_money(description: &str) -> Value {
    nullable(schema_ref("Money"), description)
}

/// A non-money exact decimal (a rate, a percentage, a quotient) as a string.
fn decimal(description: &str) -> Value {
    described(schema_ref("Decimal"), description)
}

fn opt_decimal(description: &str) -> Value {
    nullable(schema_ref("Decimal"), description)
}

fn array(items: Value, description: &str) -> Value {
    json!({"type": "array", "items": items, "description": description})
}

/// An object whose listed fields are always present (`null` where the schema allows it).
fn object(fields: Vec<(&str, Value)>) -> Value {
    object_with(fields, Vec::new())
}

/// An object with always-present `fields` and `optional` ones present only in some answers.
fn object_with(fields: Vec<(&str, Value)>, optional: Vec<(&str, Value)>) -> Value {
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    let mut properties = Map::new();
    for (k, v) in fields.into_iter().chain(optional) {
        properties.insert(k.to_string(), v);
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// Adds `patternProperties` to an object schema: the group-key columns of grouped rows, whose
/// names are the query's `group_by` dimensions.
fn with_keys(mut schema: Value, pattern: &str, description: &str) -> Value {
    if let Value::Object(m) = &mut schema {
        m.insert(
            "patternProperties".into(),
            json!({ pattern: {"type": ["string", "null"], "description": description} }),
        );
    }
    schema
}

fn dimension_names() -> Vec<&'static str> {
    Dimension::ALL.iter().map(|d| d.name()).collect()
}

/// `^(user_id|team_id|…)$`.
fn names_pattern(names: &[&str]) -> String {
    format!("^({})$", names.join("|"))
}

fn group_keys(schema: Value) -> Value {
    with_keys(
        schema,
        &names_pattern(&dimension_names()),
        "a group key: the row's value of that `group_by` dimension (null: events without one)",
    )
}

const MONEY_TEXT: &str = "US dollars as an exact decimal in a JSON string, every stored digit \
    kept and trailing zeros dropped (\"0.0123\", \"-5\"). Never a JSON number, so no float ever \
    rounds it.";

const DECIMAL_TEXT: &str = "An exact decimal in a JSON string (a rate, percentage or quotient). \
    Quotients are exact divisions rounded once, half-even, to the answer's quotient_scale \
    places; null where the denominator is zero.";

const ROWS_TEXT: &str = "one object per row, in the answer's order";

fn schemas() -> Map<String, Value> {
    let mut s = Map::new();
    let decimal_pattern = "^-?[0-9]+(\\.[0-9]+)?$";
    s.insert(
        "Money".into(),
        json!({"type": "string", "pattern": decimal_pattern, "description": MONEY_TEXT,
               "examples": ["1234.567891234", "0.0004"]}),
    );
    s.insert(
        "Decimal".into(),
        json!({"type": "string", "pattern": decimal_pattern, "description": DECIMAL_TEXT,
               "examples": ["0.75", "33.33"]}),
    );
    s.insert(
        "DecimalInput".into(),
        json!({"type": ["string", "number"],
               "description": "An exact decimal: a string (\"2.50\") or a JSON number, whose \
                   written digits are kept exactly (the number is never read as a float).",
               "examples": ["2.50", 10]}),
    );
    s.insert(
        "Error".into(),
        object(vec![(
            "error",
            object(vec![
                (
                    "code",
                    enumeration(
                        &[
                            "bad_request",
                            "unauthorized",
                            "forbidden",
                            "not_found",
                            "conflict",
                            "payload_too_large",
                            "unsupported_media_type",
                            "unavailable",
                            "internal",
                        ],
                        "machine-readable kind; the status code says the same",
                    ),
                ),
                (
                    "message",
                    string(
                        "what is wrong and how to fix it (the parameter, field or record \
                         at fault); a 500 says only to look up the x-request-id in the server log",
                    ),
                ),
            ]),
        )]),
    );
    for (name, file) in [
        (
            "UsageEvent",
            include_str!("../../schemas/usage-event.schema.json"),
        ),
        ("Outcome", include_str!("../../schemas/outcome.schema.json")),
    ] {
        // The wire formats' own JSON Schemas (2020-12, the dialect of OpenAPI 3.1), embedded
        // without their `$id`, so nothing resolves against an address that is not served.
        let mut schema: Value =
            serde_json::from_str(file).expect("the schemas/ files are valid JSON");
        if let Value::Object(m) = &mut schema {
            m.remove("$schema");
            m.remove("$id");
        }
        s.insert(name.into(), schema);
    }
    s.insert(
        "SourceRecord".into(),
        json!({"type": "object",
               "description": "A record in one of the source formats Tally reads (OpenAI, \
                   Anthropic and Gemini responses, OpenRouter, LiteLLM, Helicone, Portkey, \
                   Cloudflare AI Gateway, Bedrock invocation logs, CloudEvents, OTLP JSON); \
                   its shape picks the mapper unless ?format= names one. Mappings: \
                   docs/formats.md."}),
    );
    s.insert(
        "RejectedRecord".into(),
        object(vec![
            (
                "index",
                integer("position of the record in the body, from 0"),
            ),
            (
                "format",
                string(
                    "the format the record was read as (openai.chat, …; unknown when none matched)",
                ),
            ),
            ("field", string("the field at fault")),
            ("error", string("format, field and reason")),
        ]),
    );
    s.insert(
        "IngestAnswer".into(),
        object(vec![
            ("accepted", integer("records stored by this request")),
            (
                "duplicates",
                integer("records already stored (same id, or provider + request_id); their attribution fills the stored copy's gaps"),
            ),
            ("skipped", integer("items that are not LLM calls (non-GenAI spans), counted and not stored")),
            ("rejected", array(schema_ref("RejectedRecord"), "each rejected record; its raw text is kept in the rejects table")),
        ]),
    );
    s.insert("CostRow".into(), cost_row());
    s.insert("CostMeasures".into(), object(cost_measures()));
    s.insert("TaskRow".into(), task_row());
    s.insert("TaskMeasures".into(), object(task_measures()));
    s.insert("RunListRow".into(), run_list_row());
    s.insert("RunCall".into(), run_call());
    s.insert("RouteRow".into(), route_row());
    s.insert("WhatIfRow".into(), whatif_row());
    s.insert("WhatIfMeasures".into(), object(whatif_measures()));
    s.insert("RepriceRow".into(), reprice_row());
    s.insert("RepriceMeasures".into(), object(reprice_measures()));
    s.insert("Pricing".into(), pricing());
    s.insert("UnpricedRow".into(), unpriced_row());
    s.insert("Anomaly".into(), anomaly());
    s.insert("ReconRow".into(), recon_row(true));
    s.insert("ReconTotal".into(), recon_row(false));
    s.insert("ApiKey".into(), object(api_key_fields()));
    s.insert("CreatedKey".into(), {
        let mut f = api_key_fields();
        f.push((
            "secret",
            string("the key itself (tk_…): shown in this answer only, stored as a digest"),
        ));
        object(f)
    });
    s.insert("BudgetSpec".into(), budget_spec());
    s.insert(
        "Budget".into(),
        json!({"oneOf": [object(budget_fields(true, vec![])), object(budget_fields(false, vec![]))],
               "description": "A budget: a spend budget or a run cap."}),
    );
    s.insert("BudgetStatus".into(), budget_status());
    s.insert("SpendReading".into(), object(spend_reading()));
    s.insert("RunCapReading".into(), object(run_cap_reading()));
    s.insert("BudgetCheck".into(), budget_check_item());
    s.insert("Alert".into(), alert());
    s.insert("ChannelSpec".into(), channel_spec());
    s.insert("ChannelPatch".into(), channel_patch());
    s.insert("Channel".into(), object(channel_fields()));
    s.insert("CreatedChannel".into(), {
        let mut f = channel_fields();
        f.push((
            "url_full",
            string("the whole URL (listings show only its origin)"),
        ));
        f.push((
            "secret",
            string("the signing secret (whsec_…): shown in this answer only"),
        ));
        object(f)
    });
    s.insert("Scenario".into(), scenario());
    s.insert("RejectRow".into(), reject_row());
    s.insert("Import".into(), import_row());
    s.insert("ImportAnswer".into(), import_answer());
    s
}

fn cost_measures() -> Vec<(&'static str, Value)> {
    let int = |name| (name, integer("count"));
    vec![
        ("cost", money("the counted cost: reported where a source reported one, else custom, else list price")),
        ("reported_cost", money("the part of cost that sources reported")),
        ("computed_cost", money("the part of cost Tally computed from prices")),
        int("requests"),
        int("errors"),
        int("input_tokens"),
        int("output_tokens"),
        int("cache_read_tokens"),
        int("cache_write_tokens"),
        int("reasoning_tokens"),
        (
            "unpriced_requests",
            integer("requests without any known cost: in no money figure, never counted as $0"),
        ),
    ]
}

fn bucket_field() -> (&'static str, Value) {
    (
        "bucket",
        opt_timestamp(
            "start of the time bucket in the answer's tz (present when interval is not none)",
        ),
    )
}

fn cost_row() -> Value {
    group_keys(object_with(cost_measures(), vec![bucket_field()]))
}

fn task_measures() -> Vec<(&'static str, Value)> {
    let int = |name, d| (name, integer(d));
    let mon = |name, d| (name, money(d));
    vec![
        int(
            "tasks",
            "tasks whose first call is in the range and matches the filters",
        ),
        int("successful", "tasks whose winning outcome is success"),
        int("failed", "tasks whose outcome is failure"),
        int("abandoned", "tasks whose outcome is abandoned"),
        int(
            "open",
            "tasks without an outcome whose last call is within analytics.open_task_timeout",
        ),
        int(
            "unknown",
            "tasks without an outcome and older than that: never a success",
        ),
        ("success_rate", opt_decimal("successful / tasks")),
        mon(
            "cost",
            "calls_cost + rework_cost: the numerator of cost_per_successful_task",
        ),
        mon(
            "calls_cost",
            "cost of every call of the tasks, failed attempts and retries included",
        ),
        mon("rework_cost", "the winning outcomes' rework_cost"),
        ("cost_per_successful_task", opt_decimal("cost / successful")),
        ("cost_per_task", opt_decimal("cost / tasks")),
        mon(
            "retry_cost",
            "cost of calls that failed or that a later call retried or fell back from",
        ),
        int("retried_calls", "calls counted in retry_cost"),
        int("calls", "calls of the tasks"),
        ("calls_per_task_mean", opt_decimal("calls / tasks")),
        (
            "calls_per_task_p95",
            opt_integer("95th percentile of calls per task (an actual count)"),
        ),
        int("unpriced_calls", "calls without a known cost"),
        (
            "value",
            opt_money("sum of the winning outcomes' value; null when none has one"),
        ),
        int("valued_tasks", "tasks whose outcome has a value"),
        ("value_per_cost", opt_decimal("value / cost")),
        mon("cost_successful", "cost of the successful tasks"),
        mon("cost_failed", "cost of the failed tasks"),
        mon("cost_abandoned", "cost of the abandoned tasks"),
        mon("cost_open", "cost of the open tasks"),
        mon("cost_unknown", "cost of the unknown tasks"),
    ]
}

fn task_row() -> Value {
    group_keys(object_with(task_measures(), vec![bucket_field()]))
}

fn run_list_row() -> Value {
    object(vec![
        (
            "run_id",
            string("the run's id: its run_id, else task_id, else trace_id"),
        ),
        (
            "id_kind",
            string("which of run_id, task_id and trace_id run_id is"),
        ),
        ("project", opt_string("project")),
        ("task_id", opt_string("task of the run's first call")),
        ("agent", opt_string("agent")),
        ("feature", opt_string("feature of the run's first call")),
        ("user_id", opt_string("user of the run's first call")),
        (
            "customer_id",
            opt_string("customer of the run's first call"),
        ),
        ("model", opt_string("model of the run's first call")),
        ("started", timestamp("first call")),
        (
            "ended",
            timestamp("end of the last call (its start plus its latency)"),
        ),
        ("duration_ms", integer("ended - started, in milliseconds")),
        ("calls", integer("calls")),
        ("errors", integer("calls with status error")),
        ("retries", integer("calls that retry another (retry_of)")),
        (
            "fallbacks",
            integer("calls that fall back from another (fallback_from)"),
        ),
        ("cost", money("cost of every call of the run")),
        (
            "retry_cost",
            money("cost of failed, retried and fallen-back calls"),
        ),
        ("unpriced_calls", integer("calls without a known cost")),
        ("outcome", opt_string("the task's winning outcome, if any")),
        ("state", string("the outcome, else open or unknown")),
        ("input_tokens", integer("input tokens")),
        ("output_tokens", integer("output tokens")),
    ])
}

fn run_call() -> Value {
    let s = |name, d| (name, opt_string(d));
    let int = |name, d| (name, integer(d));
    object(vec![
        int("depth", "depth in the tree (0: a root)"),
        (
            "link",
            enumeration(
                &["root", "child", "retry", "fallback"],
                "how the call hangs off its parent: its parent span, a retry of it, a fallback from it",
            ),
        ),
        s("parent", "id of the parent call"),
        ("id", string("the call's id, else request_id, else span_id, else #<position>")),
        ("step", string("id of the first attempt of the call's retry/fallback chain")),
        ("ts", timestamp("when the call started (milliseconds)")),
        ("model", string("model that served the call")),
        s("model_requested", "model the caller asked for, when it differs"),
        s("provider", "provider"),
        ("route", string("direct, or the gateway's name")),
        ("operation", string("operation (chat, embeddings, …)")),
        ("service_tier", string("service tier")),
        ("status", string("success or error")),
        s("error_type", "error type"),
        ("http_status", opt_integer("HTTP status of the call")),
        ("attempt", opt_integer("attempt number the source reported")),
        ("latency_ms", opt_integer("latency in milliseconds")),
        ("ttft_ms", opt_integer("time to first token in milliseconds")),
        int("input_tokens", "input tokens"),
        int("output_tokens", "output tokens"),
        int("cache_read_tokens", "cache-read tokens"),
        int("cache_write_tokens", "cache-write tokens"),
        int("reasoning_tokens", "reasoning tokens (part of output)"),
        ("cost", opt_money("the call's counted cost; null when unpriced")),
        ("cost_source", string("reported, custom, computed or unpriced")),
        s("agent", "agent"),
        s("run_id", "run_id"),
        s("task_id", "task_id"),
        s("span_id", "span_id"),
        s("parent_span_id", "parent_span_id"),
        s("retry_of", "the call this one retries"),
        s("fallback_from", "the call this one falls back from"),
    ])
}

fn route_row() -> Value {
    let int = |name, d| (name, integer(d));
    let ms = |name, d| (name, json!({"type": ["number", "null"], "description": d}));
    group_keys(object(vec![
        int("requests", "requests"),
        int("errors", "requests with status error"),
        ("error_rate", opt_decimal("errors / requests")),
        (
            "error_types",
            array(
                object(vec![
                    ("error_type", opt_string("error type (null: not reported)")),
                    ("errors", integer("errors of this type")),
                    ("rate", opt_decimal("errors of this type / requests")),
                ]),
                "the errors split by error_type",
            ),
        ),
        ms(
            "latency_ms_p50",
            "interpolated median latency in ms, one decimal",
        ),
        ms("latency_ms_p95", "95th percentile latency in ms"),
        ms("latency_ms_p99", "99th percentile latency in ms"),
        ms("ttft_ms_p50", "median time to first token in ms"),
        ms("ttft_ms_p95", "95th percentile time to first token in ms"),
        ms("ttft_ms_p99", "99th percentile time to first token in ms"),
        int("input_tokens", "input tokens"),
        int("output_tokens", "output tokens"),
        ("cost", money("counted cost")),
        int("unpriced_requests", "requests without a known cost"),
        (
            "effective_input_price_mtok",
            opt_decimal("USD per million input tokens actually paid, over split_requests"),
        ),
        (
            "effective_output_price_mtok",
            opt_decimal("USD per million output tokens actually paid, over split_requests"),
        ),
        int("split_requests", "requests with a cost and a list price"),
        int(
            "compared_requests",
            "requests with a reported USD cost and a list price",
        ),
        ("reported_cost", money("reported cost of compared_requests")),
        ("list_cost", money("list price of compared_requests")),
        (
            "markup_pct",
            opt_decimal("(reported_cost - list_cost) / list_cost * 100"),
        ),
    ]))
}

fn whatif_measures() -> Vec<(&'static str, Value)> {
    vec![
        ("requests", integer("requests")),
        (
            "remapped_requests",
            integer("requests whose model a mapping replaced"),
        ),
        ("cost", money("the stored cost, as /api/v1/costs counts it")),
        (
            "unpriced_requests",
            integer("requests without a stored cost"),
        ),
        (
            "baseline_cost",
            money("every request priced today, as it is"),
        ),
        (
            "baseline_unpriced_requests",
            integer("requests the baseline cannot price"),
        ),
        (
            "whatif_cost",
            money("every request priced under the scenario"),
        ),
        (
            "whatif_unpriced_requests",
            integer("requests the scenario cannot price"),
        ),
        (
            "difference",
            opt_money("whatif_cost - baseline_cost; null when either side has unpriced requests"),
        ),
        (
            "difference_pct",
            opt_decimal("difference / baseline_cost * 100"),
        ),
    ]
}

fn whatif_row() -> Value {
    group_keys(object_with(whatif_measures(), vec![bucket_field()]))
}

fn reprice_measures() -> Vec<(&'static str, Value)> {
    vec![
        ("events", integer("events selected")),
        ("changed", integer("events whose pricing columns change")),
        ("cost_before", money("counted cost as stored")),
        ("cost_after", money("counted cost after re-pricing")),
        ("difference", money("cost_after - cost_before")),
        (
            "unpriced_before",
            integer("events without a cost as stored"),
        ),
        (
            "unpriced_after",
            integer("events without a cost after re-pricing"),
        ),
        ("computed_cost_before", money("list-price cost as stored")),
        (
            "computed_cost_after",
            money("list-price cost after re-pricing"),
        ),
    ]
}

fn reprice_row() -> Value {
    group_keys(object(reprice_measures()))
}

fn pricing() -> Value {
    object(vec![
        ("computed_cost", opt_money("list-price cost")),
        ("custom_cost", opt_money("cost under a custom price")),
        ("cost", opt_money("the counted cost")),
        (
            "cost_source",
            string("reported, custom, computed or unpriced"),
        ),
        ("price_id", opt_string("catalog price used")),
        ("custom_price_id", opt_string("custom price used")),
        ("unpriced_reason", opt_string("why no price applied")),
    ])
}

fn unpriced_row() -> Value {
    object(vec![
        ("provider", opt_string("provider")),
        ("model", string("model")),
        ("reason", opt_string("why pricing failed, as stored")),
        (
            "requests",
            integer("requests without a list or custom price"),
        ),
        (
            "uncosted_requests",
            integer("those without a reported cost either: missing from every total"),
        ),
        ("input_tokens", integer("input tokens")),
        ("output_tokens", integer("output tokens")),
        (
            "reported_cost",
            money("what sources reported for the others"),
        ),
        ("first_seen", timestamp("first such request")),
        ("last_seen", timestamp("last such request")),
    ])
}

fn anomaly() -> Value {
    object(vec![
        ("day", date("the calendar day in tz")),
        (
            "dimension",
            enumeration(&dimension_names(), "the dimension"),
        ),
        ("value", string("the dimension's value that jumped")),
        ("spend", money("spend of the value on the day")),
        (
            "baseline_median",
            money("median daily spend over the window"),
        ),
        (
            "baseline_mad",
            money("median absolute deviation over the window"),
        ),
        (
            "threshold",
            money("median + k * max(MAD, floor_share * median)"),
        ),
        ("excess", money("spend - threshold")),
        ("ratio", opt_decimal("spend / baseline_median")),
        (
            "score",
            opt_decimal("how many deviation scales above the median"),
        ),
    ])
}

fn recon_row(grouped: bool) -> Value {
    let fields = vec![
        (
            "billed",
            money("USD billing lines: every charge, taxes and credits included"),
        ),
        ("billed_usage", money("the usage charges alone")),
        ("billed_other", money("billed - billed_usage")),
        ("billed_lines", integer("billing lines")),
        (
            "billed_other_currencies",
            json!({"type": "object", "additionalProperties": schema_ref("Money"),
                   "description": "lines billed in other currencies, per ISO code; in no USD figure"}),
        ),
        (
            "metered",
            money("Tally's counted cost, equal to /api/v1/costs"),
        ),
        ("metered_reported", money("its reported part")),
        ("metered_computed", money("its computed part")),
        ("requests", integer("metered requests")),
        (
            "unpriced_requests",
            integer("metered requests without a cost"),
        ),
        ("gap", money("billed - metered")),
        ("gap_pct", opt_decimal("gap / billed * 100, two decimals")),
        (
            "coverage_pct",
            opt_decimal("metered / billed * 100, two decimals"),
        ),
        (
            "unattributed",
            money("max(gap, 0): billed spend no event explains"),
        ),
        (
            "billed_input_tokens",
            opt_integer("input tokens of the usage reports"),
        ),
        (
            "billed_output_tokens",
            opt_integer("output tokens of the usage reports"),
        ),
        (
            "billed_requests",
            opt_integer("requests of the usage reports"),
        ),
        ("metered_input_tokens", integer("metered input tokens")),
        ("metered_output_tokens", integer("metered output tokens")),
    ];
    if grouped {
        with_keys(
            object_with(
                fields,
                vec![("day", date("the day in tz (when grouped by day)"))],
            ),
            &names_pattern(&["provider", "project", "model"]),
            "a group key (provider, project or model)",
        )
    } else {
        object(fields)
    }
}

fn api_key_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", string("key id (key_…)")),
        ("name", string("name")),
        ("role", enumeration(&role_names(), "what the key may do")),
        (
            "project",
            opt_string("its project; null for admin keys, which span every project"),
        ),
        (
            "prefix",
            string("the first characters of the secret, to recognise it"),
        ),
        ("created_at", timestamp("created")),
        ("revoked_at", opt_timestamp("revoked")),
        ("last_used_at", opt_timestamp("last used")),
    ]
}

fn role_names() -> Vec<&'static str> {
    [Role::Ingest, Role::Read, Role::Admin]
        .iter()
        .map(|r| r.as_str())
        .collect()
}

fn scope_schema() -> Value {
    with_keys_values(
        json!({"type": "object",
               "description": "dimension → a value or a list of values (any of them); `*` in a value is a glob. Empty: the whole project."}),
        &names_pattern(&dimension_names()),
        json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    )
}

fn with_keys_values(mut schema: Value, pattern: &str, values: Value) -> Value {
    if let Value::Object(m) = &mut schema {
        m.insert("patternProperties".into(), json!({ pattern: values }));
        m.insert("additionalProperties".into(), false.into());
    }
    schema
}

fn budget_spec() -> Value {
    let mut spec = object_with(
        vec![("name", string("1–256 characters; unique in the project"))],
        vec![
            (
                "project",
                string("the project whose events count (default default)"),
            ),
            ("scope", scope_schema()),
            (
                "split_by",
                string("a dimension: one budget per value of it"),
            ),
            (
                "period",
                string(
                    "day, week, month, quarter, or rolling N hours|days (e.g. \"rolling 7 days\")",
                ),
            ),
            (
                "tz",
                string("IANA time zone of calendar periods (default UTC)"),
            ),
            (
                "amount",
                described(schema_ref("DecimalInput"), "USD per period (spend budgets)"),
            ),
            (
                "thresholds",
                array(
                    schema_ref("DecimalInput"),
                    "percents of the amount that alert (default 50, 80, 100)",
                ),
            ),
            (
                "forecast",
                boolean("also alert when the period-end forecast passes the amount"),
            ),
            (
                "channels",
                array(
                    json!({"type": "string"}),
                    "channel ids or names in the budget's project",
                ),
            ),
            ("run_cap", {
                let mut cap = object_with(
                    vec![],
                    vec![
                        (
                            "per",
                            enumeration(&["run_id", "task_id"], "what a run is (default run_id)"),
                        ),
                        (
                            "max_cost",
                            described(schema_ref("DecimalInput"), "USD one run may cost"),
                        ),
                        ("max_calls", integer("calls one run may make")),
                    ],
                );
                cap["additionalProperties"] = false.into();
                cap["description"] = "makes this a run cap instead of a spend budget".into();
                cap
            }),
        ],
    );
    spec["additionalProperties"] = false.into();
    spec["description"] = "A budget definition (the same form as [[budgets]] in the config \
        file). A spend budget needs period and amount; a run cap needs run_cap."
        .into();
    spec
}

fn budget_fields(spend: bool, extra: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    let mut f = vec![
        ("id", string("budget id (bud_…)")),
        ("name", string("name")),
        ("project", string("project")),
        ("scope", scope_schema()),
    ];
    if spend {
        f.extend([
            ("kind", enumeration(&["spend"], "a spend budget")),
            ("split_by", opt_string("the dimension it is split by")),
            ("period", string("its period (month, rolling 24 hours, …)")),
            ("tz", opt_string("time zone of calendar periods")),
            ("amount", money("USD per period")),
            (
                "thresholds",
                array(schema_ref("Decimal"), "alerting percents of the amount"),
            ),
            ("forecast", boolean("alerts on the forecast too")),
        ]);
    } else {
        f.extend([
            ("kind", enumeration(&["run_cap"], "a run cap")),
            ("per", enumeration(&["run_id", "task_id"], "what a run is")),
            ("max_cost", opt_money("USD one run may cost")),
            ("max_calls", opt_integer("calls one run may make")),
        ]);
    }
    f.extend([
        (
            "revision",
            integer("increases with every change; alerts name the revision they were raised under"),
        ),
        (
            "source",
            enumeration(
                &["api", "config", "demo"],
                "where it was declared; config ones are managed by the file",
            ),
        ),
        ("channels", array(json!({"type": "string"}), "channel ids")),
        ("created_at", timestamp("created")),
        ("updated_at", timestamp("last changed")),
    ]);
    f.extend(extra);
    f
}

fn budget_state() -> Value {
    enumeration(
        &["ok", "warning", "exceeded"],
        "the worst state of its readings",
    )
}

fn budget_status() -> Value {
    let spend = object(budget_fields(
        true,
        vec![
            ("state", budget_state()),
            (
                "rows",
                array(
                    schema_ref("SpendReading"),
                    "one reading per split value (one without split_by)",
                ),
            ),
        ],
    ));
    let cap = object(budget_fields(
        false,
        vec![
            ("state", budget_state()),
            (
                "rows",
                array(
                    schema_ref("RunCapReading"),
                    "runs near or past the cap, costliest first",
                ),
            ),
            (
                "runs_in_last_24h",
                integer("runs seen in the last 24 hours"),
            ),
        ],
    ));
    json!({"oneOf": [spend, cap], "description": "A budget with its current readings."})
}

fn spend_reading() -> Vec<(&'static str, Value)> {
    vec![
        (
            "split_value",
            opt_string("the split dimension's value; null without split_by"),
        ),
        (
            "period",
            object(vec![
                (
                    "start",
                    timestamp("start of the period, in the budget's tz"),
                ),
                ("end", timestamp("end of the period (exclusive)")),
            ]),
        ),
        ("amount", money("the amount")),
        ("spent", money("spent in the period")),
        ("remaining", money("max(amount - spent, 0)")),
        (
            "percent",
            decimal("spent / amount * 100, two decimals (display only)"),
        ),
        (
            "state",
            enumeration(&["ok", "warning", "exceeded"], "state of this reading"),
        ),
        ("forecast", opt_money("projected spend at the period's end")),
        ("calls", integer("calls counted")),
        (
            "unpriced_calls",
            integer("calls without a known cost (not in spent)"),
        ),
    ]
}

fn run_cap_reading() -> Vec<(&'static str, Value)> {
    vec![
        ("split_value", string("the run's id")),
        (
            "run",
            object(vec![
                (
                    "dimension",
                    enumeration(&["run_id", "task_id"], "what the id is"),
                ),
                ("id", string("the run's id")),
                ("first_call", timestamp("first call")),
                ("last_call", timestamp("last call")),
            ]),
        ),
        ("spent", money("the run's cost so far")),
        ("calls", integer("the run's calls so far")),
        ("unpriced_calls", integer("calls without a known cost")),
        ("max_cost", opt_money("the cap's cost limit")),
        ("max_calls", opt_integer("the cap's call limit")),
        ("remaining_cost", opt_money("max(max_cost - spent, 0)")),
        ("remaining_calls", opt_integer("max(max_calls - calls, 0)")),
        (
            "state",
            enumeration(&["ok", "warning", "exceeded"], "state of this run"),
        ),
    ]
}

fn budget_check_item() -> Value {
    let who = || {
        vec![
            ("id", string("budget id")),
            ("name", string("budget name")),
            ("split_by", opt_string("the dimension it is split by")),
        ]
    };
    let mut spend = spend_reading();
    spend.extend(who());
    spend.push(("kind", enumeration(&["spend"], "a spend budget")));
    let mut cap = run_cap_reading();
    cap.extend(who());
    cap.push(("kind", enumeration(&["run_cap"], "a run cap")));
    json!({"oneOf": [object(spend), object(cap)],
           "description": "A budget the call would count toward, with its reading."})
}

const ALERT_KINDS: [AlertKind; 4] = [
    AlertKind::Threshold,
    AlertKind::Forecast,
    AlertKind::RunCapCost,
    AlertKind::RunCapCalls,
];

fn alert() -> Value {
    let kinds: Vec<&str> = ALERT_KINDS.iter().map(|k| k.as_str()).collect();
    let mut types: Vec<&str> = ALERT_KINDS.iter().map(|k| k.event_type()).collect();
    types.dedup();
    let attempt = object(vec![
        ("attempt", integer("attempt number, from 1")),
        ("at", timestamp("when it was made")),
        ("status", opt_integer("the receiver's HTTP status")),
        ("error", opt_string("why it failed, without a status")),
        ("duration_ms", integer("how long it took")),
        (
            "response",
            opt_string("the first bytes of the receiver's answer"),
        ),
    ]);
    let delivery = object(vec![
        ("channel_id", string("channel id")),
        (
            "channel_name",
            opt_string("channel name (null once deleted)"),
        ),
        ("state", string("pending, delivered, failed or cancelled")),
        ("attempts", integer("attempts so far")),
        (
            "next_attempt_at",
            opt_timestamp("next retry, while pending"),
        ),
        ("delivered_at", opt_timestamp("when it was delivered")),
        ("attempt_log", array(attempt, "every attempt")),
    ]);
    object(vec![
        (
            "id",
            string("alert id (alrt_…); the webhook-id of its messages"),
        ),
        ("seq", integer("order of creation")),
        (
            "type",
            enumeration(&types, "the event type of its messages"),
        ),
        ("kind", enumeration(&kinds, "what was crossed")),
        ("project", string("project")),
        ("budget_id", string("budget id")),
        ("budget_name", string("budget name")),
        (
            "budget_revision",
            integer("the budget's revision when it was raised"),
        ),
        ("split_value", opt_string("split value or run id")),
        (
            "period_start",
            opt_timestamp("start of the period (null for run caps)"),
        ),
        ("period_end", opt_timestamp("end of the period")),
        ("threshold", decimal("the percent crossed (or the cap)")),
        ("amount", opt_money("the budget's amount")),
        ("spent", opt_money("spent when it was raised")),
        ("forecast", opt_money("the forecast, for forecast alerts")),
        (
            "state",
            enumeration(
                &["open", "superseded"],
                "superseded when a later alert of the same period made it moot",
            ),
        ),
        (
            "superseded_by",
            opt_string("the alert that made this one moot"),
        ),
        ("created_at", timestamp("raised")),
        (
            "payload",
            json!({"description": "the message body sent to the channels"}),
        ),
        ("deliveries", array(delivery, "one per channel")),
    ])
}

fn channel_spec() -> Value {
    let mut spec = object_with(
        vec![
            ("name", string("unique in the project")),
            (
                "url",
                string("where to POST: an https URL, or a Slack incoming webhook"),
            ),
        ],
        vec![
            (
                "project",
                string("the project whose budgets may use it (default default)"),
            ),
            (
                "kind",
                enumeration(&["webhook", "slack"], "default webhook"),
            ),
            (
                "secret",
                string("signing secret whsec_…; generated when left out"),
            ),
            ("enabled", boolean("default true")),
        ],
    );
    spec["additionalProperties"] = false.into();
    spec
}

fn channel_patch() -> Value {
    let mut patch = object_with(
        vec![],
        vec![
            ("name", string("new name")),
            ("url", string("new URL")),
            (
                "enabled",
                boolean("turning a channel on again resumes its pending alerts in order"),
            ),
            (
                "rotate_secret",
                boolean("replace the secret with a new one, shown in this answer only"),
            ),
        ],
    );
    patch["additionalProperties"] = false.into();
    patch
}

fn channel_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", string("channel id (ch_…)")),
        ("project", string("project")),
        ("name", string("name")),
        ("kind", string("webhook or slack")),
        (
            "url",
            string("scheme, host and port only; the full URL is shown at creation"),
        ),
        ("enabled", boolean("whether alerts are sent")),
        (
            "disabled_reason",
            opt_string("why Tally turned it off (e.g. the receiver answered 410)"),
        ),
        (
            "source",
            enumeration(&["api", "config", "demo"], "where it was declared"),
        ),
        ("created_at", timestamp("created")),
        ("updated_at", timestamp("last changed")),
    ]
}

fn scenario() -> Value {
    let price_rates = [
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "cache_write_1h_mtok",
        "input_audio_mtok",
        "output_audio_mtok",
        "input_image_mtok",
        "output_image_mtok",
        "output_reasoning_mtok",
        "web_searches_kcount",
        "requests_kcount",
    ];
    let when = |what: &str| {
        string(&format!(
            "{what}: a date (midnight UTC) or an RFC 3339 date-time"
        ))
    };
    let mut custom_fields: Vec<(&str, Value)> = vec![
        ("name", string("used in the price id custom:<name>")),
        ("provider", string("provider as in events or a catalog id")),
        (
            "service_tier",
            string("only this tier; the rates are then its final rates"),
        ),
        ("project", string("only this project")),
        ("api_key_id", string("only this API key id")),
        ("from", when("inclusive start")),
        ("to", when("exclusive end")),
    ];
    for r in price_rates {
        custom_fields.push((
            r,
            described(
                schema_ref("DecimalInput"),
                "USD per million tokens (_mtok) or per thousand (_kcount)",
            ),
        ));
    }
    let mut custom = object_with(
        vec![(
            "model",
            string("model glob: * matches any run of characters; case-insensitive"),
        )],
        custom_fields,
    );
    custom["additionalProperties"] = false.into();
    let mut discount = object_with(
        vec![(
            "multiplier",
            described(
                schema_ref("DecimalInput"),
                "≥ 0; 0.85 is 15 % off, above 1 a surcharge",
            ),
        )],
        vec![
            ("name", string("used in the price id +discount:<name>")),
            ("provider", string("only this provider")),
            ("model", string("model glob; absent: every model")),
            ("project", string("only this project")),
            ("api_key_id", string("only this API key id")),
            ("from", when("inclusive start")),
            ("to", when("exclusive end")),
        ],
    );
    discount["additionalProperties"] = false.into();
    let mut entry = object_with(
        vec![
            ("from", string("glob over the events' model names")),
            ("to", string("the model the traffic would use")),
        ],
        vec![(
            "provider",
            string("the provider that would serve it (guessed from the model otherwise)"),
        )],
    );
    entry["additionalProperties"] = false.into();
    let mut body = object_with(
        vec![],
        vec![
            ("map", array(entry, "model mappings; the first match wins")),
            (
                "custom",
                array(
                    custom,
                    "custom prices, as [[pricing.custom]]; they win over the operator's",
                ),
            ),
            (
                "discounts",
                array(
                    discount,
                    "discounts, as [[pricing.discounts]]; they compound with the operator's",
                ),
            ),
        ],
    );
    body["additionalProperties"] = false.into();
    body["description"] = "A what-if scenario: a mapping and/or a price list. At least one of \
        them (or as_model in the query) must be given."
        .into();
    body
}

fn reject_row() -> Value {
    object(vec![
        ("received_at", timestamp("when the body arrived")),
        (
            "http_request",
            opt_string("the x-request-id of the request that carried it"),
        ),
        ("source_format", string("the format it was read as")),
        ("index", integer("position in the body")),
        ("field", string("the field at fault")),
        ("reason", string("why it was rejected")),
        ("raw", string("the record as it arrived")),
    ])
}

fn import_row() -> Value {
    object(vec![
        ("id", string("import id (imp_…)")),
        ("project", string("project")),
        ("format", string("the export's format")),
        (
            "kind",
            enumeration(&["cost", "usage"], "money lines or volume lines"),
        ),
        ("file_name", opt_string("the name it was imported under")),
        ("imported_at", timestamp("when")),
        (
            "period_start",
            opt_timestamp("start of the period it speaks for"),
        ),
        (
            "period_end",
            opt_timestamp("end of that period (exclusive)"),
        ),
        ("records", integer("lines read")),
        ("accepted", integer("lines written")),
        ("replaced", integer("earlier lines it replaced")),
        ("unchanged", integer("lines already stored as they are")),
        ("rejected", integer("bad lines")),
        ("skipped", integer("FOCUS rows of non-AI services left out")),
        (
            "live_lines",
            integer("lines still stored (the rest were replaced by later imports)"),
        ),
    ])
}

fn import_answer() -> Value {
    object(vec![
        (
            "import_id",
            string("the import the lines belong to (for a body imported before, that import)"),
        ),
        ("format", string("the export's format")),
        (
            "kind",
            enumeration(&["cost", "usage"], "money lines or volume lines"),
        ),
        ("project", string("project")),
        ("accepted", integer("lines written")),
        (
            "replaced",
            integer("earlier lines of the same source in the covered period it replaced"),
        ),
        (
            "unchanged",
            integer("lines already stored exactly as they are"),
        ),
        (
            "skipped",
            integer("FOCUS rows of non-AI services left out (see all_services)"),
        ),
        (
            "rejected",
            array(
                object(vec![
                    ("line", integer("line number")),
                    ("field", string("the field at fault")),
                    ("error", string("why")),
                ]),
                "bad lines; the good ones are committed",
            ),
        ),
        (
            "period_start",
            opt_timestamp("the period this import speaks for, [start, end)"),
        ),
        ("period_end", opt_timestamp("its end")),
        (
            "warnings",
            array(
                json!({"type": "string"}),
                "things worth knowing that are not errors",
            ),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

fn param_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

fn query(name: &str, schema: Value, description: &str, example: Value) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": schema,
           "example": example})
}

fn required_query(name: &str, schema: Value, description: &str, example: Value) -> Value {
    let mut p = query(name, schema, description, example);
    p["required"] = true.into();
    p
}

/// A comma-separated list (`group_by=feature,model`): OpenAPI's form style without explode.
fn list_query(name: &str, items: &[&str], description: &str, example: &[&str]) -> Value {
    json!({"name": name, "in": "query", "description": description, "style": "form",
           "explode": false,
           "schema": {"type": "array", "items": {"type": "string", "enum": items}},
           "example": example})
}

fn path_id(description: &str) -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": description,
           "schema": {"type": "string"}})
}

fn header_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "header", "description": description, "schema": schema})
}

fn filter_name(d: Dimension) -> String {
    format!("filter.{}", d.name())
}

fn parameters() -> Map<String, Value> {
    let mut p = Map::new();
    let bound =
        |end: bool| {
            format!(
            "{} of the range: an RFC 3339 timestamp, or a date (YYYY-MM-DD) read as midnight in \
             tz{}",
            if end { "Exclusive end" } else { "Inclusive start" },
            if end { "; a date includes that day" } else { "" }
        )
        };
    p.insert(
        "from".into(),
        query(
            "from",
            json!({"type": "string"}),
            &bound(false),
            json!("2026-11-01"),
        ),
    );
    p.insert(
        "to".into(),
        query(
            "to",
            json!({"type": "string"}),
            &bound(true),
            json!("2026-11-30"),
        ),
    );
    p.insert(
        "tz".into(),
        query(
            "tz",
            json!({"type": "string", "default": "UTC"}),
            "IANA time zone of dates and buckets (a DST day is 23 or 25 hours long)",
            json!("Europe/Berlin"),
        ),
    );
    let intervals: Vec<&str> = [
        time::Interval::Hour,
        time::Interval::Day,
        time::Interval::Week,
        time::Interval::Month,
        time::Interval::None,
    ]
    .iter()
    .map(|i| i.name())
    .collect();
    p.insert(
        "interval".into(),
        query(
            "interval",
            json!({"type": "string", "enum": intervals, "default": "none"}),
            "time buckets of the rows (week starts on Monday), in tz",
            json!("day"),
        ),
    );
    p.insert(
        "group_by".into(),
        list_query(
            "group_by",
            &dimension_names(),
            "dimensions to group by, in order; each becomes a column of the rows. Grouping by \
             tag counts an event once per tag (totals count it once).",
            &["feature", "model"],
        ),
    );
    p.insert(
        "format".into(),
        query(
            "format",
            json!({"type": "string", "enum": ["json", "csv", "parquet"], "default": "json"}),
            "json (default), or the answer's row list as a file (Content-Disposition: \
             attachment; filename=tally-<name>.csv|parquet): csv (text/csv) or parquet \
             (application/vnd.apache.parquet), one column per field of the rows, made from the \
             JSON answer itself so the three formats carry the same numbers",
            json!("csv"),
        ),
    );
    for d in Dimension::ALL {
        p.insert(
            filter_name(d),
            query(
                d.name(),
                json!({"type": "string"}),
                &format!(
                    "filter: only events whose {} is one of these values (a comma list, or the \
                     parameter repeated); an empty value matches events without one",
                    d.name()
                ),
                json!("x"),
            ),
        );
    }
    p
}

fn filters() -> Vec<Value> {
    Dimension::ALL
        .iter()
        .map(|d| param_ref(&filter_name(*d)))
        .collect()
}

fn range() -> Vec<Value> {
    ["from", "to", "tz"].iter().map(|n| param_ref(n)).collect()
}

/// What `order` may name besides an endpoint's measures.
#[derive(Debug, Clone, Copy)]
enum OrderKeys {
    Measures,
    Groups,
    GroupsAndBucket,
}

/// `order`: a sort key with an optional direction; the pattern lists exactly the keys the
/// parser accepts (a group key only when it is in `group_by`, `bucket` only with an interval).
fn order(measures: &[&str], keys: OrderKeys, default: &str) -> Value {
    let mut names: Vec<&str> = measures.to_vec();
    let also = match keys {
        OrderKeys::Measures => "",
        OrderKeys::Groups => {
            names.extend(dimension_names());
            ", or one of the group_by keys"
        }
        OrderKeys::GroupsAndBucket => {
            names.extend(dimension_names());
            names.push("bucket");
            ", one of the group_by keys, or bucket (with an interval)"
        }
    };
    let alternatives = names.join("|");
    query(
        "order",
        json!({"type": "string",
               "pattern": format!("^(-({alternatives})|({alternatives})(:(asc|desc))?)$")}),
        &format!(
            "sort key: a measure ({}){also}. `name` sorts a measure largest first and a key \
             alphabetically, `-name` descending, `name:asc` / `name:desc` as said. Default: \
             {default}.",
            measures.join(", ")
        ),
        json!(format!("-{}", measures[0])),
    )
}

fn limit(default: usize, max: usize) -> Value {
    query(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": max, "default": default}),
        "rows in the answer; truncated says when more matched",
        json!(10),
    )
}

fn offset() -> Value {
    query(
        "offset",
        json!({"type": "integer", "minimum": 0, "default": 0}),
        "rows to skip (paging)",
        json!(0),
    )
}

/// The costs API's parameters: range, interval, group_by, order over `measures` (by default
/// bucket, then `main`), limit and every dimension filter.
fn analytics(measures: &[&str], main: &str) -> Vec<Value> {
    let mut p = range();
    p.extend([
        param_ref("interval"),
        param_ref("group_by"),
        order(
            measures,
            OrderKeys::GroupsAndBucket,
            &format!("bucket (earliest first), then {main} (largest first), then the keys"),
        ),
        limit(params::DEFAULT_LIMIT, params::MAX_LIMIT),
    ]);
    p.extend(filters());
    p
}

fn project_param(what: &str) -> Value {
    query(
        "project",
        json!({"type": "string"}),
        &format!("{what}; a project key may name only its own project"),
        json!("default"),
    )
}

fn attribution_headers() -> Vec<Value> {
    crate::ingest::normalize::DEFAULT_HEADERS
        .iter()
        .map(|h| {
            let fills = match *h {
                "x-tally-user" => "user_id",
                "x-tally-feature" => "feature",
                "x-tally-customer" => "customer_id",
                "x-tally-task" => "task_id",
                "x-tally-run" => "run_id",
                "x-tally-tags" => "tags (a comma list, added to the record's own)",
                "x-tally-route" => "route",
                other => other,
            };
            let name: String = h
                .split('-')
                .map(|part| {
                    let mut c = part.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-");
            header_param(
                &name,
                json!({"type": "string"}),
                &format!(
                    "fills {fills} of every record of the request that left it empty (a \
                     record's own value wins)"
                ),
            )
        })
        .collect()
}

fn content_encoding() -> Value {
    header_param(
        "Content-Encoding",
        json!({"type": "string", "enum": ["gzip", "zstd", "deflate", "identity"]}),
        "a compressed body; limits: ingest.max_body_bytes compressed, \
         ingest.max_decompressed_bytes decompressed",
    )
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

const ERRORS: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "A parameter or body is wrong; the message names it.",
    ),
    (401, "Unauthorized", "No key, or a wrong or revoked one."),
    (
        403,
        "Forbidden",
        "The key's role or project does not allow this.",
    ),
    (
        404,
        "NotFound",
        "No such thing (in the projects this key reads).",
    ),
    (
        409,
        "Conflict",
        "It clashes with what exists (a name in use, nothing to redeliver).",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body exceeds ingest.max_body_bytes, max_decompressed_bytes or max_records.",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The Content-Type or Content-Encoding is not accepted here.",
    ),
    (
        500,
        "Internal",
        "A server fault; the server log has the details under the answer's x-request-id.",
    ),
    (
        503,
        "Unavailable",
        "The write queue is full or the server is shutting down; retry after Retry-After seconds.",
    ),
];

fn error_name(status: u16) -> &'static str {
    ERRORS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, n, _)| *n)
        .unwrap_or_else(|| panic!("no error response for {status}"))
}

fn responses() -> Map<String, Value> {
    let mut r = Map::new();
    for (status, name, description) in ERRORS {
        let mut response = json!({
            "description": description,
            "content": {"application/json": {"schema": schema_ref("Error")}},
        });
        if *status == 401 {
            response["headers"] =
                json!({"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}});
        }
        if *status == 503 {
            response["headers"] = json!({"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}});
        }
        r.insert((*name).into(), response);
    }
    let html = |d: &str| json!({"description": d, "content": {"text/html": {"schema": {"type": "string"}}}});
    r.insert(
        "SignIn".into(),
        json!({"description": "Not signed in: a redirect to /signin?next=<this page>.",
               "headers": {"Location": {"schema": {"type": "string"}}}}),
    );
    r.insert(
        "PageBadRequest".into(),
        html("An HTML page naming the parameter at fault."),
    );
    r.insert("PageForbidden".into(), html("An HTML page: the key's role does not allow this page, or a form's CSRF token is stale."));
    r.insert(
        "PageNotFound".into(),
        html("An HTML page: no such thing in the projects this key reads."),
    );
    r.insert(
        "PageInternal".into(),
        html("An HTML page; the server log has the details under the x-request-id."),
    );
    r.insert(
        "FormRejected".into(),
        json!({"description": "The body is not a form (Content-Type application/x-www-form-urlencoded).",
               "content": {"text/plain": {"schema": {"type": "string"}}}}),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// No key.
    Public,
    /// A key (or session) whose role allows any of these.
    Roles(&'static [Role]),
    /// The metrics token or an admin key, as a bearer token (no session cookie).
    Metrics,
}

impl Access {
    fn role(self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::Roles(roles) => roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join("|"),
            Access::Metrics => "admin".into(),
        }
    }

    fn sentence(self) -> String {
        match self {
            Access::Public => "Needs no key.".into(),
            Access::Roles(roles) => format!(
                "Needs a key (or a dashboard session) with the {} role{}; admin keys may do \
                 everything.",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                if roles.len() > 1 { "s" } else { "" }
            ),
            Access::Metrics => "Needs the metrics token (metrics_token) or an admin key, as \
                 Authorization: Bearer."
                .into(),
        }
    }
}

const INGEST: Access = Access::Roles(&[Role::Ingest]);
const READ: Access = Access::Roles(&[Role::Read]);
const ADMIN: Access = Access::Roles(&[Role::Admin]);
const INGEST_OR_READ: Access = Access::Roles(&[Role::Ingest, Role::Read]);

/// One operation being described.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    access: Access,
    summary: &'static str,
    about: String,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Map<String, Value>,
    /// The JSON answer's row list that `format=csv|parquet` exports.
    table: Option<&'static str>,
    /// What the file's rows are, when not that list as it is.
    file_rows: Option<&'static str>,
}

impl Op {
    fn new(
        method: &'static str,
        path: &'static str,
        id: &'static str,
        tag: &'static str,
        access: Access,
        summary: &'static str,
    ) -> Op {
        Op {
            method,
            path,
            id,
            tag,
            access,
            summary,
            about: String::new(),
            params: Vec::new(),
            body: None,
            responses: Map::new(),
            table: None,
            file_rows: None,
        }
    }

    fn about(mut self, text: &str) -> Op {
        self.about = text.to_string();
        self
    }

    fn params(mut self, params: impl IntoIterator<Item = Value>) -> Op {
        self.params.extend(params);
        self
    }

    fn body(mut self, required: bool, content: Value) -> Op {
        self.body = Some(json!({"required": required, "content": content}));
        self
    }

    fn json_body(self, schema: Value) -> Op {
        self.body(true, json!({"application/json": {"schema": schema}}))
    }

    fn form_body(self, fields: Vec<(&str, Value)>, required: &[&str]) -> Op {
        let mut schema = object_with(vec![], fields);
        schema["required"] = json!(required);
        self.body(
            true,
            json!({"application/x-www-form-urlencoded": {"schema": schema}}),
        )
    }

    fn answer(mut self, status: u16, description: &str, content: Value) -> Op {
        let mut r = json!({ "description": description });
        if !content.as_object().is_some_and(|c| c.is_empty()) {
            r["content"] = content;
        }
        self.responses.insert(status.to_string(), r);
        self
    }

    fn json(self, status: u16, description: &str, schema: Value) -> Op {
        self.answer(
            status,
            description,
            json!({"application/json": {"schema": schema}}),
        )
    }

    fn html(self) -> Op {
        self.answer(
            200,
            "The page.",
            json!({"text/html": {"schema": {"type": "string"}}}),
        )
    }

    fn redirect(self, status: u16, description: &str) -> Op {
        let mut op = self.answer(status, description, json!({}));
        op.responses[&status.to_string()]["headers"] =
            json!({"Location": {"schema": {"type": "string"}}});
        op
    }

    fn errors(mut self, statuses: &[u16]) -> Op {
        for s in statuses {
            self.responses.insert(
                s.to_string(),
                json!({"$ref": format!("#/components/responses/{}", error_name(*s))}),
            );
        }
        self
    }

    fn page_errors(mut self, statuses: &[u16]) -> Op {
        for s in statuses {
            let name = match s {
                400 => "PageBadRequest",
                403 => "PageForbidden",
                404 => "PageNotFound",
                415 => "FormRejected",
                500 => "PageInternal",
                other => panic!("no page error response for {other}"),
            };
            self.responses.insert(
                s.to_string(),
                json!({"$ref": format!("#/components/responses/{name}")}),
            );
        }
        self
    }

    /// `format=json|csv|parquet`: the 200 answer also comes as a file of the JSON answer's
    /// `key` rows.
    fn exports(mut self, key: &'static str) -> Op {
        self.table = Some(key);
        self.params.push(param_ref("format"));
        self
    }

    /// Like [`Op::exports`], for an answer whose file is not its `key` rows as they are.
    fn exports_as(mut self, key: &'static str, rows: &'static str) -> Op {
        self.file_rows = Some(rows);
        self.exports(key)
    }

    fn finish(mut self) -> Value {
        if let Some(key) = self.table {
            let ok = self
                .responses
                .get_mut("200")
                .unwrap_or_else(|| panic!("{} {} exports without a 200", self.method, self.path));
            let rows = self
                .file_rows
                .map_or_else(|| format!("the JSON answer's `{key}` rows"), str::to_string);
            let file = format!(
                "with format=csv or format=parquet: {rows} as a table, one column per field, \
                 every cell the JSON value's own text (money stays exact); nested values are \
                 compact JSON text, null an empty CSV field or a Parquet NULL. Parquet columns \
                 are typed: BIGINT for integers, DECIMAL(38, s) for decimal text (cast exactly, \
                 never through a float), BOOLEAN, and VARCHAR for keys, ids and the rest. CSV \
                 text cells a spreadsheet would run as a formula get a leading '."
            );
            ok["content"]["text/csv"] = json!({"schema": {"type": "string", "description": file}});
            ok["content"]["application/vnd.apache.parquet"] = json!({"schema": {"type": "string", "contentMediaType": "application/vnd.apache.parquet", "description": file}});
        }
        let page = super::auth::is_page(self.path);
        match self.access {
            Access::Public => {}
            Access::Roles(_) if page => {
                let signin = json!({"$ref": "#/components/responses/SignIn"});
                self.responses.entry("303").or_insert(signin);
                self = self.page_errors(&[403]);
            }
            Access::Roles(_) | Access::Metrics => self = self.errors(&[401, 403]),
        }
        let mut description = self.about.clone();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&self.access.sentence());
        let mut op = json!({
            "operationId": self.id,
            "summary": self.summary,
            "description": description,
            "tags": [self.tag],
            "x-tally-role": self.access.role(),
            "responses": self.responses,
        });
        match self.access {
            Access::Public => op["security"] = json!([]),
            Access::Roles(_) => {
                op["security"] = json!([{"apiKey": []}, {"session": []}]);
            }
            Access::Metrics => op["security"] = json!([{"apiKey": []}]),
        }
        if !self.params.is_empty() {
            op["parameters"] = Value::Array(self.params);
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        if let Some(key) = self.table {
            op["x-tally-table"] = key.into();
        }
        op
    }
}

fn operations() -> Vec<Op> {
    let mut ops = Vec::new();
    ops.extend(operations_endpoints());
    ops.extend(ingest_endpoints());
    ops.extend(analytics_endpoints());
    ops.extend(billing_endpoints());
    ops.extend(budget_endpoints());
    ops.extend(key_endpoints());
    ops.extend(pages());
    ops
}

fn operations_endpoints() -> Vec<Op> {
    vec![
        Op::new("get", "/healthz", "healthz", "operations", Access::Public, "Liveness: the process is up")
            .json(200, "Up.", object(vec![("status", enumeration(&["ok"], "always ok"))])),
        Op::new("get", "/readyz", "readyz", "operations", Access::Public, "Readiness: the database answers and the writer runs")
            .json(200, "Ready.", readiness())
            .json(503, "Not ready (the same shape, saying which part is down).", readiness()),
        Op::new("get", "/metrics", "metrics", "operations", Access::Metrics, "Prometheus metrics")
            .about("Server-wide numbers in the Prometheus text format (version 0.0.4): requests by route and status, ingest records, write queue depth, alert deliveries, memory.")
            .answer(200, "The exposition.", json!({"text/plain": {"schema": {"type": "string"}}})),
        Op::new("get", "/api/openapi.json", "openapi", "operations", Access::Public, "This document")
            .about("The OpenAPI 3.1 description of every endpoint of the service. Public: it describes the API, not data, and the same facts are in the README.")
            .json(200, "The document.", json!({"type": "object"})),
    ]
}

fn readiness() -> Value {
    object(vec![
        (
            "status",
            enumeration(&["ready", "not ready"], "the verdict"),
        ),
        ("writer", boolean("the writer thread runs")),
        ("database", boolean("the database answers a query")),
    ])
}

fn ingest_endpoints() -> Vec<Op> {
    let formats: Vec<&str> = std::iter::once("auto")
        .chain(crate::ingest::Format::ALL.iter().map(|f| f.name()))
        .collect();
    let mut ingest_params = vec![query(
        "format",
        json!({"type": "string", "enum": formats, "default": "auto"}),
        "the records' format; auto (the default) lets each record's shape pick its mapper",
        json!("native"),
    )];
    ingest_params.extend(attribution_headers());
    ingest_params.push(content_encoding());
    let records = |one: Value| {
        json!({
            "application/json": {"schema": {"anyOf": [
                one.clone(),
                {"type": "array", "items": one},
            ]}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON record per line"}},
        })
    };
    let ingest_record = json!({"anyOf": [schema_ref("UsageEvent"), schema_ref("SourceRecord")]});
    let mut trace_params = attribution_headers();
    trace_params.push(content_encoding());
    let billing_formats: Vec<&str> = crate::billing::Format::ALL
        .iter()
        .map(|f| f.name())
        .collect();
    let csv_param = |name: &str, d: &str, example: &str| {
        query(
            name,
            json!({"type": "string"}),
            &format!("format csv: {d}"),
            json!(example),
        )
    };
    vec![
        Op::new("post", "/v1/ingest", "ingest", "ingest", INGEST, "Send LLM calls")
            .about("Takes one record, a JSON array of records, or NDJSON, in Tally's native format (schemas/usage-event.schema.json) or any source format (docs/formats.md). Answers 200 whenever the body could be read: the valid records are committed before the answer is sent, and each rejected record is listed with its index, field and reason (and kept in the rejects table). Also accepted: text/plain and application/jsonl (NDJSON), application/cloudevents+json, and no Content-Type (sniffed).")
            .params(ingest_params)
            .body(true, records(ingest_record))
            .json(200, "Committed; rejected records listed.", schema_ref("IngestAnswer"))
            .errors(&[400, 413, 415, 500, 503]),
        Op::new("post", "/v1/outcomes", "outcomes", "ingest", INGEST, "Send task outcomes")
            .about("How tasks ended (schemas/outcome.schema.json): the same body forms, encodings, limits and per-record rejects as /v1/ingest. The latest outcome of a task by timestamp wins.")
            .params([content_encoding()])
            .body(true, records(schema_ref("Outcome")))
            .json(200, "Committed; rejected records listed.", object(vec![
                ("accepted", integer("outcomes stored")),
                ("duplicates", integer("outcomes already stored")),
                ("rejected", array(object(vec![
                    ("index", integer("position in the body")),
                    ("field", string("the field at fault")),
                    ("error", string("why")),
                ]), "each rejected record")),
            ]))
            .errors(&[400, 413, 415, 500, 503]),
        Op::new("post", "/v1/traces", "traces", "ingest", INGEST, "OTLP/HTTP trace receiver")
            .about("Point OTEL_EXPORTER_OTLP_TRACES_ENDPOINT here. GenAI spans become calls; other spans are skipped, not rejected. The answer is OTLP's ExportTraceServiceResponse in the request's encoding (partial_success names rejected spans); Tally's counts are also in X-Tally-Accepted, -Duplicates, -Skipped and -Rejected headers. Takes no query parameters.")
            .params(trace_params)
            .body(true, json!({
                "application/x-protobuf": {"schema": {"type": "string", "contentMediaType": "application/x-protobuf", "description": "an OTLP ExportTraceServiceRequest"}},
                "application/json": {"schema": {"type": "object", "description": "an OTLP/JSON ExportTraceServiceRequest ({\"resourceSpans\": […]})"}},
            }))
            .answer(200, "Committed.", json!({
                "application/x-protobuf": {"schema": {"type": "string", "contentMediaType": "application/x-protobuf", "description": "ExportTraceServiceResponse"}},
                "application/json": {"schema": object_with(
                    vec![("tally", object(vec![
                        ("spans", integer("spans in the body")),
                        ("accepted", integer("calls stored")),
                        ("duplicates", integer("calls already stored")),
                        ("skipped", integer("non-GenAI spans")),
                        ("rejected", array(schema_ref("RejectedRecord"), "rejected spans")),
                    ]))],
                    vec![("partialSuccess", object(vec![
                        ("rejectedSpans", string("the number of rejected spans (OTLP/JSON writes int64 as a string)")),
                        ("errorMessage", string("why, for the first few")),
                    ]))],
                )},
            }))
            .errors(&[400, 413, 415, 500, 503]),
        Op::new("post", "/v1/billing", "billing_import", "billing", INGEST, "Import a provider billing export")
            .about("One export per request (OpenAI costs/usage, Anthropic cost/usage reports, FOCUS, or any CSV with a column mapping). Answers 200 whenever the body could be read, listing bad lines; an export restating a period replaces that period's earlier lines in one transaction. The body may also be application/octet-stream (sniffed).")
            .params([
                required_query("format", json!({"type": "string", "enum": billing_formats}), "the export's format", json!("openai-costs")),
                project_param("the Tally project the lines belong to (admin keys; default default)"),
                query("file_name", json!({"type": "string"}), "a name to remember the import by", json!("costs-2026-01.json")),
                query("delimiter", json!({"type": "string", "enum": [",", ";", "|", "tab"], "default": ","}), "CSV field separator (formats openai-costs, focus, csv)", json!(",")),
                query("all_services", json!({"type": "boolean", "default": false}), "format focus: keep rows of every service, not only AI and Machine Learning ones", json!(false)),
                csv_param("date_column", "header of the date column (required)", "date"),
                csv_param("end_date_column", "header of the period-end column", "end"),
                csv_param("amount_column", "header of the amount column (required)", "amount"),
                csv_param("currency_column", "header of the currency column (this or currency)", "currency"),
                csv_param("currency", "ISO currency of every line (this or currency_column)", "USD"),
                csv_param("provider_column", "header of the provider column (this or provider)", "provider"),
                csv_param("provider", "provider of every line (this or provider_column)", "openai"),
                csv_param("model_column", "header of the model column", "model"),
                csv_param("project_column", "header of the provider-side project column", "project"),
                csv_param("quantity_column", "header of the quantity column", "quantity"),
                csv_param("unit_column", "header of the unit column", "unit"),
                csv_param("unit", "unit of every quantity", "tokens"),
                csv_param("line_item_column", "header of the line-item column", "item"),
                query("period", json!({"type": "string", "enum": ["hour", "day", "month"], "default": "day"}), "format csv: how long a line lasts from its date, without an end column", json!("day")),
                csv_param("date_format", "strftime format of the dates (default: RFC 3339 or YYYY-MM-DD)", "%d/%m/%Y"),
                content_encoding(),
            ])
            .body(true, json!({
                "application/json": {"schema": {"description": "JSON pages of the provider's API"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "contentMediaType": "application/vnd.apache.parquet"}},
            }))
            .json(200, "Committed; bad lines listed.", schema_ref("ImportAnswer"))
            .errors(&[400, 403, 413, 415, 500, 503]),
    ]
}

fn analytics_endpoints() -> Vec<Op> {
    let mut whatif_get = analytics(whatif::MEASURES, "baseline_cost");
    whatif_get.push(required_query(
        "as_model",
        json!({"type": "string"}),
        "the model every selected request would use (choose the traffic with model=…)",
        json!("claude-sonnet-4-5"),
    ));
    whatif_get.push(as_provider());
    let mut whatif_post = analytics(whatif::MEASURES, "baseline_cost");
    whatif_post.push(query(
        "as_model",
        json!({"type": "string"}),
        "a mapping of every model to this one, tried before the body's map",
        json!("claude-sonnet-4-5"),
    ));
    whatif_post.push(as_provider());
    let reprice_params = || {
        let mut p = range();
        p.extend([
            param_ref("group_by"),
            order(
                reprice::MEASURES,
                OrderKeys::Groups,
                "cost_before (largest first), then the keys",
            ),
            limit(params::DEFAULT_LIMIT, params::MAX_LIMIT),
        ]);
        p.extend(filters());
        p
    };
    let mut reprice_post = reprice_params();
    reprice_post.push(query(
        "apply",
        json!({"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"}),
        "true writes the new costs; without it this is a dry run too",
        json!("false"),
    ));
    let run_orders: Vec<&str> = crate::store::queries::runs::ORDERS
        .iter()
        .map(|(k, _)| *k)
        .collect();
    let mut runs_params = range();
    runs_params.extend([
        order(&run_orders, OrderKeys::Measures, "cost, largest first"),
        limit(runs::DEFAULT_LIMIT, params::MAX_LIMIT),
        offset(),
    ]);
    runs_params.extend(filters());
    let mut routes_params = range();
    routes_params.extend([
        list_query(
            "group_by",
            &dimension_names(),
            "further keys after route, which is always the first (e.g. provider,model)",
            &["provider", "model"],
        ),
        order(
            routes::MEASURES,
            OrderKeys::Groups,
            "requests (largest first), then the keys",
        ),
        limit(params::DEFAULT_LIMIT, params::MAX_LIMIT),
    ]);
    routes_params.extend(filters());
    let mut unpriced_params = range();
    unpriced_params.push(limit(params::DEFAULT_LIMIT, params::MAX_LIMIT));
    unpriced_params.extend(filters());
    let method = anomalies::Method::default();
    let mut anomaly_params = range();
    anomaly_params.extend([
        list_query(
            "dimensions",
            &dimension_names(),
            "the dimensions whose values are examined (default feature,user_id,model)",
            &["feature", "model"],
        ),
        query(
            "window",
            json!({"type": "integer", "minimum": 3, "maximum": 90, "default": method.window}),
            "days of baseline before each day",
            json!(14),
        ),
        query(
            "k",
            json!({"type": "string", "default": method.k.to_string()}),
            "how many deviation scales above the median a day must be (a decimal above 0, at most 100)",
            json!("5"),
        ),
        query(
            "min_spend",
            json!({"type": "string", "default": method.min_spend.to_string()}),
            "USD below which a day never alarms (a non-negative decimal)",
            json!("1"),
        ),
        limit(params::DEFAULT_LIMIT, params::MAX_LIMIT),
    ]);
    anomaly_params.extend(filters());
    let mut recon_params = range();
    recon_params.push(list_query(
        "group_by",
        &["provider", "day", "project", "model"],
        "keys of the rows (default provider,day)",
        &["provider", "day"],
    ));
    recon_params.extend(
        [Dimension::Provider, Dimension::Model, Dimension::Project]
            .iter()
            .map(|d| param_ref(&filter_name(*d))),
    );
    let mut focus_params = range();
    focus_params.push(query(
        "format",
        json!({"type": "string", "enum": ["csv", "parquet"], "default": "csv"}),
        "the file type",
        json!("parquet"),
    ));
    focus_params.extend(filters());
    let answer_range = || {
        vec![
            (
                "from",
                opt_timestamp("start of the range, in tz (null: open)"),
            ),
            ("to", opt_timestamp("end of the range (exclusive)")),
        ]
    };
    let common_answer = |interval: bool, grouped: bool| {
        let mut f = answer_range();
        if interval {
            f.push(("interval", string("the interval")));
        }
        f.push(("tz", string("the time zone")));
        if grouped {
            f.push((
                "group_by",
                array(
                    enumeration(&dimension_names(), "dimension"),
                    "the row keys, in order",
                ),
            ));
        }
        f
    };
    let definitions = || {
        (
            "definitions",
            json!({"type": "object", "additionalProperties": {"type": "string"},
                   "description": "what each figure means, in words"}),
        )
    };
    let quotient_scale = || {
        (
            "quotient_scale",
            integer("decimal places of every quotient"),
        )
    };

    let mut costs_answer = common_answer(true, true);
    costs_answer.extend([
        ("rows", array(schema_ref("CostRow"), ROWS_TEXT)),
        (
            "total",
            described(
                schema_ref("CostMeasures"),
                "every event in scope counted once",
            ),
        ),
        ("truncated", boolean("more rows matched than limit")),
    ]);
    let mut tasks_answer = common_answer(true, true);
    tasks_answer.extend([
        (
            "open_task_timeout",
            string("how long a task without an outcome stays open (24h, …)"),
        ),
        quotient_scale(),
        ("rows", array(schema_ref("TaskRow"), ROWS_TEXT)),
        (
            "total",
            described(schema_ref("TaskMeasures"), "every task in scope"),
        ),
        ("truncated", boolean("more rows matched than limit")),
        definitions(),
    ]);
    let mut runs_answer = answer_range();
    runs_answer.extend([
        ("tz", string("the time zone")),
        ("order", string("the sort used")),
        ("offset", integer("rows skipped")),
        ("limit", integer("page size")),
        ("total_runs", integer("runs matching, on every page")),
        ("runs", array(schema_ref("RunListRow"), ROWS_TEXT)),
    ]);
    let run_detail = object(vec![
        (
            "run",
            object(vec![
                ("id", string("the id asked for")),
                (
                    "matched_by",
                    enumeration(
                        &["run_id", "task_id", "trace_id"],
                        "the column the id matched",
                    ),
                ),
                ("project", opt_string("project")),
                ("task_id", opt_string("task of the first call")),
                ("agent", opt_string("the first agent named")),
                ("feature", opt_string("feature of the first call")),
                ("user_id", opt_string("user of the first call")),
                ("customer_id", opt_string("customer of the first call")),
                ("started", timestamp("first call")),
                ("ended", timestamp("end of the last call")),
                ("duration_ms", integer("ended - started")),
                ("state", string("the outcome, else open or unknown")),
                ("outcome", opt_string("the task's winning outcome")),
                ("outcome_at", opt_timestamp("its timestamp")),
                ("value", opt_money("its value")),
                ("rework_cost", opt_money("its rework cost")),
            ]),
        ),
        (
            "totals",
            object(vec![
                ("calls", integer("calls")),
                ("errors", integer("calls with status error")),
                ("retries", integer("retries")),
                ("fallbacks", integer("fallbacks")),
                ("cost", money("cost of every priced call")),
                ("unpriced_calls", integer("calls without a known cost")),
                ("input_tokens", integer("input tokens")),
                ("output_tokens", integer("output tokens")),
                ("cache_read_tokens", integer("cache-read tokens")),
                ("cache_write_tokens", integer("cache-write tokens")),
                ("reasoning_tokens", integer("reasoning tokens")),
            ]),
        ),
        (
            "most_expensive_call",
            nullable(
                object(vec![("id", string("call id")), ("cost", money("its cost"))]),
                "the costliest call",
            ),
        ),
        (
            "most_expensive_step",
            nullable(
                object(vec![
                    ("id", string("the step's first call")),
                    (
                        "calls",
                        integer("calls of the step (the call, its retries and fallbacks)"),
                    ),
                    ("cost", money("their cost")),
                    ("unpriced_calls", integer("their calls without a cost")),
                ]),
                "the costliest step (ties: the earliest)",
            ),
        ),
        (
            "calls",
            array(
                schema_ref("RunCall"),
                "the calls depth-first in time order: a table and a tree at once",
            ),
        ),
        (
            "truncated",
            boolean("the run has more calls than the tree shows"),
        ),
    ]);
    let mut routes_answer = common_answer(false, true);
    routes_answer.extend([
        quotient_scale(),
        ("rows", array(schema_ref("RouteRow"), ROWS_TEXT)),
        ("truncated", boolean("more rows matched than limit")),
        definitions(),
    ]);
    let mut whatif_answer = common_answer(true, true);
    whatif_answer.extend([
        (
            "scenario",
            object(vec![
                (
                    "map",
                    array(
                        object(vec![
                            ("from", string("model glob")),
                            ("to", string("target model")),
                            ("provider", opt_string("target provider")),
                        ]),
                        "the mappings applied, first match wins",
                    ),
                ),
                ("custom_prices", integer("custom prices of the scenario")),
                ("discounts", integer("discounts of the scenario")),
            ]),
        ),
        quotient_scale(),
        ("rows", array(schema_ref("WhatIfRow"), ROWS_TEXT)),
        (
            "total",
            described(schema_ref("WhatIfMeasures"), "every request in scope"),
        ),
        ("truncated", boolean("more rows matched than limit")),
        definitions(),
    ]);
    let mut reprice_answer = vec![
        ("dry_run", boolean("nothing was written")),
        ("applied", boolean("the new costs were written")),
    ];
    reprice_answer.extend(common_answer(false, true));
    reprice_answer.extend([
        ("rows", array(schema_ref("RepriceRow"), ROWS_TEXT)),
        (
            "total",
            described(schema_ref("RepriceMeasures"), "every event in scope"),
        ),
        (
            "changes",
            array(
                object(vec![
                    ("id", opt_string("the event's id")),
                    ("ts", timestamp("its time")),
                    ("provider", opt_string("provider")),
                    ("model", string("model")),
                    ("before", schema_ref("Pricing")),
                    ("after", schema_ref("Pricing")),
                ]),
                "changed events, at most 100",
            ),
        ),
        ("truncated", boolean("more rows matched than limit")),
        ("next", opt_string("how to apply a dry run")),
    ]);
    let mut unpriced_answer = common_answer(false, false);
    unpriced_answer.extend([
        (
            "rows",
            array(
                schema_ref("UnpricedRow"),
                "by provider, model and reason; most uncosted requests first",
            ),
        ),
        (
            "total",
            object(vec![
                ("requests", integer("requests of every row")),
                (
                    "uncosted_requests",
                    integer("uncosted requests of every row"),
                ),
                ("input_tokens", integer("input tokens of every row")),
                ("output_tokens", integer("output tokens of every row")),
                (
                    "requests_in_scope",
                    integer("every request in the range and filters"),
                ),
                (
                    "uncosted_in_scope",
                    integer("every uncosted request in them"),
                ),
            ]),
        ),
        ("truncated", boolean("more rows matched than limit")),
    ]);
    let anomalies_answer = object(vec![
        ("from", opt_timestamp("first day examined")),
        ("to", opt_timestamp("end of the last day examined")),
        ("tz", string("the time zone of the days")),
        (
            "dimensions",
            array(
                enumeration(&dimension_names(), "dimension"),
                "the dimensions examined",
            ),
        ),
        (
            "method",
            object(vec![
                ("rule", string("the rule, in words")),
                ("window", integer("baseline days")),
                ("k", decimal("deviation scales")),
                ("min_spend", money("smallest alarming spend")),
                (
                    "floor_share",
                    decimal("floor of the deviation scale, as a share of the median"),
                ),
            ]),
        ),
        (
            "anomalies",
            array(schema_ref("Anomaly"), "largest excess first"),
        ),
        ("truncated", boolean("more anomalies than limit")),
    ]);
    let recon_answer = object(vec![
        ("from", opt_timestamp("start of the range")),
        ("to", opt_timestamp("end of the range")),
        ("tz", string("the time zone of the days")),
        (
            "group_by",
            array(
                enumeration(&["provider", "day", "project", "model"], "key"),
                "the row keys",
            ),
        ),
        ("rows", array(schema_ref("ReconRow"), "by day, then keys")),
        ("total", schema_ref("ReconTotal")),
        (
            "gateway_markup",
            array(
                object(vec![
                    ("route", string("the gateway")),
                    ("provider", opt_string("provider")),
                    ("requests", integer("requests")),
                    (
                        "compared_requests",
                        integer("requests with a reported USD cost and a list price"),
                    ),
                    ("reported_cost", money("their reported cost")),
                    ("list_cost", money("their list price")),
                    ("markup", money("reported_cost - list_cost")),
                    (
                        "markup_pct",
                        opt_decimal("markup / list_cost * 100, two decimals"),
                    ),
                ]),
                "per route: reported cost against list price",
            ),
        ),
    ]);

    vec![
        Op::new("get", "/api/v1/costs", "costs", "analytics", READ, "Cost, tokens, requests and errors by any dimension")
            .about("Sums grouped and filtered by any dimension, over time buckets in a time zone. Unknown parameters and group keys are 400 errors that name them.")
            .params(analytics(costs::MEASURES, "cost"))
            .json(200, "The sums.", object(costs_answer))
            .errors(&[400, 500])
            .exports("rows"),
        Op::new("get", "/api/v1/tasks", "tasks", "analytics", READ, "Cost per successful task")
            .about("What a successful unit of work costs, retries, failed attempts and failed tasks included, grouped like /api/v1/costs. The time range selects tasks by their first call; definitions are in every answer.")
            .params(analytics(tasks::MEASURES, "cost"))
            .json(200, "The task figures.", object(tasks_answer))
            .errors(&[400, 500])
            .exports("rows"),
        Op::new("get", "/api/v1/runs", "runs", "analytics", READ, "Agent runs, one row per run")
            .about("A run is identified by run_id, else task_id, else trace_id; it is in the range when its first call is, and filters apply to its first call.")
            .params(runs_params)
            .json(200, "A page of runs.", object(runs_answer))
            .errors(&[400, 500])
            .exports("runs"),
        Op::new("get", "/api/v1/runs/{id}", "run", "analytics", READ, "One run as a tree of its calls")
            .about("The id is looked up as a run_id, then a task_id, then a trace_id. Calls link to what they retry or fall back from, else to their parent span.")
            .params([
                path_id("a run_id, task_id or trace_id"),
                query("project", json!({"type": "string"}), "the project, when the id exists in several (repeatable)", json!("default")),
            ])
            .json(200, "The run.", run_detail)
            .errors(&[400, 404, 500])
            .exports("calls"),
        Op::new("get", "/api/v1/routes", "routes", "analytics", READ, "Direct calls vs gateways")
            .about("Each route's requests, errors, latency percentiles and the prices it effectively charges; the markup against list price.")
            .params(routes_params)
            .json(200, "The routes.", object(routes_answer))
            .errors(&[400, 500])
            .exports("rows"),
        Op::new("get", "/api/v1/whatif", "whatif", "analytics", READ, "The same traffic on another model")
            .about("Every selected request priced twice with its own tokens: as it is today (baseline) and on as_model. An unpriced side is counted, never $0.")
            .params(whatif_get)
            .json(200, "The comparison.", object(whatif_answer.clone()))
            .errors(&[400, 500])
            .exports("rows"),
        Op::new("post", "/api/v1/whatif", "whatif_scenario", "analytics", READ, "The same traffic under a mapping and price list")
            .about("Like GET, with a scenario body: model mappings, custom prices and discounts (added after the operator's, so they win). Reads only.")
            .params(whatif_post)
            .json_body(schema_ref("Scenario"))
            .json(200, "The comparison.", object(whatif_answer))
            .errors(&[400, 415, 500])
            .exports("rows"),
        Op::new("get", "/api/v1/reprice", "reprice_dry_run", "analytics", READ, "What re-pricing would change")
            .about("Each selected event priced again exactly as ingest prices it, compared with what is stored. Writes nothing; apply is refused here (POST writes).")
            .params(reprice_params())
            .json(200, "The diff.", object(reprice_answer.clone()))
            .errors(&[400, 500])
            .exports("rows"),
        Op::new("post", "/api/v1/reprice", "reprice_apply", "analytics", ADMIN, "Re-price stored events")
            .about("With apply=true, writes the recomputed costs in one transaction on the writer's own snapshot, so what is written is what the answer reports. Reported costs never change. Without apply=true, a dry run.")
            .params(reprice_post)
            .json(200, "The changes (applied says whether they were written).", object(reprice_answer))
            .errors(&[400, 500, 503]),
        Op::new("get", "/api/v1/unpriced", "unpriced", "analytics", READ, "Models and volume nobody could price")
            .about("What to add to [pricing.custom] or to expect from a newer catalog, with the reason stored at pricing time.")
            .params(unpriced_params)
            .json(200, "The unpriced models.", object(unpriced_answer))
            .errors(&[400, 500])
            .exports("rows"),
        Op::new("get", "/api/v1/anomalies", "anomalies", "analytics", READ, "Days whose spend jumps")
            .about("A day is an anomaly for a value when spend > median + k × max(MAD, 10 % × median) over the window days before it, and spend ≥ min_spend. Without a range, the last 30 days.")
            .params(anomaly_params)
            .json(200, "The anomalies.", anomalies_answer)
            .errors(&[400, 500])
            .exports("anomalies"),
        Op::new("get", "/api/v1/reconciliation", "reconciliation", "billing", READ, "Billed against metered")
            .about("Imported provider billing against Tally's metered cost (the costs API's own numbers), per provider and day (or project or model). Other currencies are listed, never converted.")
            .params(recon_params)
            .json(200, "The comparison.", recon_answer)
            .errors(&[400, 500])
            .exports("rows"),
        Op::new("get", "/api/v1/export/focus", "export_focus", "billing", READ, "Tally's events as a FinOps FOCUS 1.2 file")
            .about("Daily aggregates per attribution, as CSV or Parquet (Content-Disposition names the file).")
            .params(focus_params)
            .answer(200, "The file.", json!({
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "contentMediaType": "application/vnd.apache.parquet"}},
            }))
            .errors(&[400, 500]),
        Op::new("get", "/api/v1/rejects", "rejects", "ingest", READ, "Rejected records (the dead-letter table)")
            .about("Newest first, with their raw text; a project key sees its project's only.")
            .params([
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}), "rows (clamped to 1–10000)", json!(10)),
                offset(),
                query("source_format", json!({"type": "string"}), "only records read as this format (openai.chat, native, …)", json!("native")),
                query("http_request", json!({"type": "string"}), "only records of the request with this x-request-id", json!("0b6f…")),
            ])
            .json(200, "The rejects.", object(vec![
                ("rejects", array(schema_ref("RejectRow"), ROWS_TEXT)),
                ("total", integer("rejects matching, on every page")),
            ]))
            .errors(&[400, 500])
            .exports("rejects"),
    ]
}

fn as_provider() -> Value {
    query(
        "as_provider",
        json!({"type": "string"}),
        "the provider that would serve as_model (guessed from the name otherwise)",
        json!("anthropic"),
    )
}

fn billing_endpoints() -> Vec<Op> {
    vec![Op::new(
        "get",
        "/api/v1/billing/imports",
        "billing_imports",
        "billing",
        READ,
        "Billing imports, newest first",
    )
    .params([query(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}),
        "imports listed",
        json!(10),
    )])
    .json(
        200,
        "The imports.",
        object(vec![("imports", array(schema_ref("Import"), ROWS_TEXT))]),
    )
    .errors(&[400, 500])
    .exports("imports")]
}

fn budget_endpoints() -> Vec<Op> {
    let check_dims: Vec<Value> = crate::budgets::check_dimensions()
        .map(|d| {
            query(
                d.name(),
                json!({"type": "string"}),
                &if d == Dimension::Tag {
                    "the call's tags (a comma list, or repeated)".to_string()
                } else {
                    format!("the call's {} (give it once)", d.name())
                },
                json!("x"),
            )
        })
        .collect();
    let mut check_params = vec![project_param("the call's project (default default)")];
    check_params.extend(check_dims);
    let kinds: Vec<&str> = ALERT_KINDS.iter().map(|k| k.as_str()).collect();
    let deleted = || object(vec![("deleted", string("the id"))]);
    vec![
        Op::new("get", "/v1/budget-check", "budget_check", "budgets", INGEST_OR_READ, "The budgets a call would count toward")
            .about("Gateways ask before a call (ingest keys), dashboards too (read keys). Answered from memory; spend is known only after calls complete and are ingested, so enforcement through it is eventually consistent.")
            .params(check_params)
            .json(200, "The matching budgets and the worst state.", object(vec![
                ("project", string("the project asked about")),
                ("state", budget_state()),
                ("budgets", array(schema_ref("BudgetCheck"), "the budgets whose scope the call falls in")),
                ("refreshed_at", opt_timestamp("when the in-memory numbers were last refreshed")),
                ("note", string("the consistency caveat")),
            ]))
            .errors(&[400, 500]),
        Op::new("get", "/api/v1/budgets/status", "budget_status", "budgets", READ, "Budgets with their current readings")
            .params([
                project_param("only this project's budgets"),
                query("budget", json!({"type": "string"}), "only this budget (its id)", json!("bud_…")),
                query("at", json!({"type": "string"}), "readings as of this instant (RFC 3339 or a date) instead of now", json!("2026-11-15T00:00:00Z")),
            ])
            .json(200, "The budgets.", object(vec![
                ("at", timestamp("the instant of the readings")),
                ("budgets", array(schema_ref("BudgetStatus"), ROWS_TEXT)),
                ("note", string("budgets alert, they do not block calls")),
            ]))
            .errors(&[400, 404, 500])
            .exports_as(
                "budgets",
                "one row per reading of every budget (a split value, or a run near its cap), \
                 the budget's own fields beside it prefixed budget_ (a budget without readings \
                 is one row of its fields)",
            ),
        Op::new("get", "/api/v1/alerts", "alerts", "budgets", READ, "Alert history with deliveries and every attempt")
            .params([
                project_param("only this project's alerts"),
                query("budget", json!({"type": "string"}), "only this budget's alerts (its id)", json!("bud_…")),
                query("kind", json!({"type": "string", "enum": kinds}), "only this kind", json!("threshold")),
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}), "alerts listed, newest first", json!(10)),
            ])
            .json(200, "The alerts.", object(vec![
                ("alerts", array(schema_ref("Alert"), "newest first")),
                ("truncated", boolean("more alerts than limit")),
            ]))
            .errors(&[400, 500])
            .exports("alerts"),
        Op::new("post", "/api/v1/alerts/{id}/redeliver", "alert_redeliver", "budgets", ADMIN, "Queue an alert again")
            .about("Each of the budget's channels (or one) gets a fresh retry schedule and the same webhook-id.")
            .params([
                path_id("the alert id"),
                query("channel", json!({"type": "string"}), "only this channel (its id)", json!("ch_…")),
            ])
            .json(202, "Queued.", object(vec![
                ("alert_id", string("the alert")),
                ("queued", array(json!({"type": "string"}), "the channel ids it was queued for")),
            ]))
            .errors(&[400, 404, 409, 500]),
        Op::new("get", "/api/v1/budgets", "budgets", "budgets", ADMIN, "List budgets")
            .params([project_param("only this project's budgets")])
            .json(200, "The budgets.", object(vec![("budgets", array(schema_ref("Budget"), ROWS_TEXT))]))
            .errors(&[400, 500]),
        Op::new("post", "/api/v1/budgets", "budget_create", "budgets", ADMIN, "Create a budget")
            .json_body(schema_ref("BudgetSpec"))
            .json(201, "Created.", schema_ref("Budget"))
            .errors(&[400, 409, 415, 500]),
        Op::new("get", "/api/v1/budgets/{id}", "budget", "budgets", ADMIN, "One budget")
            .params([path_id("the budget id")])
            .json(200, "The budget.", schema_ref("Budget"))
            .errors(&[404, 500]),
        Op::new("put", "/api/v1/budgets/{id}", "budget_replace", "budgets", ADMIN, "Replace a budget's definition")
            .about("The whole definition; its revision increases, so alerts of the old one are not repeated for it.")
            .params([path_id("the budget id")])
            .json_body(schema_ref("BudgetSpec"))
            .json(200, "The budget as it is now.", schema_ref("Budget"))
            .errors(&[400, 404, 409, 415, 500]),
        Op::new("delete", "/api/v1/budgets/{id}", "budget_delete", "budgets", ADMIN, "Delete a budget")
            .params([path_id("the budget id")])
            .json(200, "Deleted.", deleted())
            .errors(&[404, 409, 500]),
        Op::new("get", "/api/v1/channels", "channels", "budgets", ADMIN, "List alert channels")
            .params([project_param("only this project's channels")])
            .json(200, "The channels (no secrets, URLs cut to their origin).", object(vec![("channels", array(schema_ref("Channel"), ROWS_TEXT))]))
            .errors(&[400, 500]),
        Op::new("post", "/api/v1/channels", "channel_create", "budgets", ADMIN, "Create an alert channel")
            .about("The answer is the only one that shows the secret and the full URL.")
            .json_body(schema_ref("ChannelSpec"))
            .json(201, "Created.", schema_ref("CreatedChannel"))
            .errors(&[400, 409, 415, 500]),
        Op::new("get", "/api/v1/channels/{id}", "channel", "budgets", ADMIN, "One alert channel")
            .params([path_id("the channel id")])
            .json(200, "The channel.", schema_ref("Channel"))
            .errors(&[404, 500]),
        Op::new("patch", "/api/v1/channels/{id}", "channel_update", "budgets", ADMIN, "Change an alert channel")
            .params([path_id("the channel id")])
            .json_body(schema_ref("ChannelPatch"))
            .json(200, "The channel; with secret when it was rotated.", {
                let mut c = object_with(channel_fields(), vec![("secret", string("the new secret, when rotate_secret was asked: shown once"))]);
                c["description"] = "The channel as it is now.".into();
                c
            })
            .errors(&[400, 404, 409, 415, 500]),
        Op::new("delete", "/api/v1/channels/{id}", "channel_delete", "budgets", ADMIN, "Delete an alert channel")
            .params([path_id("the channel id")])
            .json(200, "Deleted.", deleted())
            .errors(&[404, 409, 500]),
        Op::new("post", "/api/v1/channels/{id}/test", "channel_test", "budgets", ADMIN, "Send a signed test message now")
            .params([path_id("the channel id")])
            .json(200, "What the receiver answered.", object(vec![
                ("channel", schema_ref("Channel")),
                ("webhook_id", string("the message's webhook-id")),
                ("delivered", boolean("the receiver answered 2xx")),
                ("status", opt_integer("its HTTP status")),
                ("error", opt_string("why it failed, without a status")),
                ("duration_ms", integer("how long it took")),
                ("response", opt_string("the first bytes of its answer")),
            ]))
            .errors(&[404, 500]),
    ]
}

fn key_endpoints() -> Vec<Op> {
    let mut new_key = object_with(
        vec![
            ("name", string("1–128 characters")),
            ("role", enumeration(&role_names(), "what the key may do")),
        ],
        vec![(
            "project",
            string("its project: required for ingest and read keys, absent for admin keys"),
        )],
    );
    new_key["additionalProperties"] = false.into();
    vec![
        Op::new(
            "get",
            "/api/v1/keys",
            "keys",
            "keys",
            ADMIN,
            "List API keys",
        )
        .json(
            200,
            "The keys (never their secrets).",
            object(vec![("keys", array(schema_ref("ApiKey"), ROWS_TEXT))]),
        )
        .errors(&[500]),
        Op::new(
            "post",
            "/api/v1/keys",
            "key_create",
            "keys",
            ADMIN,
            "Create an API key",
        )
        .about("The secret is in this answer only; Tally keeps a SHA-256 digest.")
        .json_body(new_key)
        .json(201, "Created.", schema_ref("CreatedKey"))
        .errors(&[400, 415, 500]),
        Op::new(
            "delete",
            "/api/v1/keys/{id}",
            "key_revoke",
            "keys",
            ADMIN,
            "Revoke an API key",
        )
        .about("It stops working at once, and its dashboard sessions end.")
        .params([path_id("the key id")])
        .json(200, "Revoked.", object(vec![("revoked", string("the id"))]))
        .errors(&[404, 500]),
    ]
}

fn page_range() -> Vec<Value> {
    vec![
        query(
            "range",
            json!({"type": "string", "enum": crate::web::pages::PRESETS.map(|p| p.0), "default": "this_month"}),
            "the time-range preset (custom with from and to)",
            json!("7d"),
        ),
        param_ref("from"),
        param_ref("to"),
        param_ref("tz"),
    ]
}

fn pages() -> Vec<Op> {
    let page = |path, id, summary| {
        Op::new("get", path, id, "pages", READ, summary)
            .html()
            .page_errors(&[400, 500])
    };
    let mut explore_params = page_range();
    explore_params.extend([
        param_ref("group_by"),
        query(
            "interval",
            json!({"type": "string", "enum": ["hour", "day", "week", "month", "none"]}),
            "the chart's buckets",
            json!("day"),
        ),
        order(costs::MEASURES, OrderKeys::Groups, "cost, largest first"),
        limit(100, params::MAX_LIMIT),
        query(
            "fdim",
            json!({"type": "string"}),
            "the add-a-filter form's dimension (redirects to <dimension>=<fval>)",
            json!("feature"),
        ),
        query(
            "fval",
            json!({"type": "string"}),
            "the add-a-filter form's value",
            json!("search"),
        ),
    ]);
    explore_params.extend(filters());
    let mut csv_params = page_range();
    csv_params.extend([
        param_ref("group_by"),
        order(costs::MEASURES, OrderKeys::Groups, "cost, largest first"),
        limit(100, params::MAX_LIMIT),
    ]);
    csv_params.extend(filters());
    let grouped_page = |default: &str| {
        let mut p = page_range();
        p.push(list_query(
            "group_by",
            &dimension_names(),
            &format!("row keys (default {default})"),
            &["feature"],
        ));
        p.extend(filters());
        p
    };
    let csrf = || ("csrf", string("the form's CSRF token (from the page)"));
    let static_file = |path, id, summary, media: &str| {
        Op::new("get", path, id, "pages", Access::Public, summary).answer(
            200,
            "The file (cached for an hour).",
            json!({ media: {"schema": {"type": "string"}} }),
        )
    };
    vec![
        page("/", "page_overview", "Overview: spend, its change, top features and models, budgets")
            .params(page_range()),
        page("/explore", "page_explore", "Explore: the costs API as a table and chart")
            .params(explore_params)
            .redirect(303, "The add-a-filter form's fdim/fval as a dimension parameter, or the sign-in form."),
        Op::new("get", "/explore.csv", "page_explore_csv", "pages", READ, "The Explore table as CSV, every stored digit")
            .params(csv_params)
            .answer(200, "The table.", json!({"text/csv": {"schema": {"type": "string"}}}))
            .page_errors(&[400, 500]),
        page("/reconciliation", "page_reconciliation", "Reconciliation: billed against metered per provider and day")
            .params(page_range()),
        page("/tasks", "page_tasks", "Tasks & runs: cost per successful task and the costliest runs")
            .params(grouped_page("feature")),
        page("/runs/{id}", "page_run", "A run's waterfall of calls")
            .params([
                path_id("a run_id, task_id or trace_id"),
                query("project", json!({"type": "string"}), "the project, when the id exists in several", json!("default")),
            ])
            .page_errors(&[404]),
        page("/routes", "page_routes", "Routes: direct calls vs gateways")
            .params(grouped_page("provider,model")),
        page("/budgets", "page_budgets", "Budgets, alerts and (for admins) the budget form and channels")
            .params([
                query("edit", json!({"type": "string"}), "a budget id to load into the form (admins)", json!("bud_…")),
                query("notice", json!({"type": "string"}), "a message to show (set by the forms' redirects)", json!("Budget saved.")),
            ])
            .page_errors(&[404]),
        page("/ingest", "page_ingest", "Ingest health: arrivals by format, rejects, unpriced models")
            .params(page_range()),
        Op::new("post", "/budgets/save", "page_budget_save", "pages", ADMIN, "The budget form: create, or replace the budget named by id")
            .form_body(
                vec![
                    csrf(),
                    ("id", string("the budget to replace; empty creates one")),
                    ("name", string("name")),
                    ("project", string("project")),
                    ("scope", string("dimension=value pairs, comma-separated; values | -separated")),
                    ("split_by", string("a dimension")),
                    ("period", string("day, week, month, quarter or rolling N hours|days")),
                    ("tz", string("IANA time zone")),
                    ("amount", string("USD, a decimal")),
                    ("thresholds", string("percents, comma-separated")),
                    ("forecast", string("present: alert on the forecast too")),
                    ("channels", string("channel ids or names, comma-separated")),
                ],
                &["csrf"],
            )
            .redirect(303, "Saved: back to /budgets?notice=…")
            .page_errors(&[400, 404, 415, 500]),
        Op::new("post", "/budgets/alerts/{id}/redeliver", "page_alert_redeliver", "pages", ADMIN, "The alert list's redeliver button")
            .params([path_id("the alert id")])
            .form_body(vec![csrf()], &["csrf"])
            .redirect(303, "Queued: back to /budgets?notice=…")
            .page_errors(&[404, 415, 500]),
        Op::new("post", "/budgets/channels/{id}/test", "page_channel_test", "pages", ADMIN, "The channel list's test button")
            .params([path_id("the channel id")])
            .form_body(vec![csrf()], &["csrf"])
            .redirect(303, "Sent: back to /budgets?notice=… with the receiver's answer")
            .page_errors(&[404, 415, 500]),
        Op::new("get", "/signin", "page_signin", "pages", Access::Public, "The sign-in form")
            .params([query("next", json!({"type": "string"}), "the local path to go to after signing in", json!("/explore"))])
            .html(),
        Op::new("post", "/signin", "signin", "pages", Access::Public, "Sign in with an API key")
            .about("Exchanges a read or admin key for the tally_session cookie (HttpOnly, SameSite=Strict, signed; it holds no secret) and redirects to next.")
            .form_body(
                vec![
                    ("key", string("a read or admin API key")),
                    ("next", string("a local path")),
                ],
                &["key"],
            )
            .redirect(303, "Signed in (Set-Cookie: tally_session=…).")
            .answer(401, "The key is not valid or was revoked (the form again).", json!({"text/html": {"schema": {"type": "string"}}}))
            .answer(403, "Ingest keys cannot sign in (the form again).", json!({"text/html": {"schema": {"type": "string"}}}))
            .page_errors(&[415]),
        Op::new("post", "/signout", "signout", "pages", Access::Public, "Sign out")
            .form_body(vec![csrf()], &["csrf"])
            .redirect(303, "Signed out: the cookie is cleared, back to /signin.")
            .page_errors(&[403, 415]),
        static_file("/static/tally.css", "static_css", "The stylesheet", "text/css"),
        static_file("/static/tally.js", "static_js", "Small progressive enhancements (every page works without it)", "text/javascript"),
        static_file("/static/favicon.svg", "static_favicon", "The icon", "image/svg+xml"),
        static_file("/favicon.ico", "favicon", "The icon (browsers ask for it here)", "image/svg+xml"),
    ]
}

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

const DESCRIPTION: &str = "Tally attributes LLM spend: it takes calls from gateways, SDKs and \
telemetry, prices them exactly, and answers what each feature, user, customer, task and run \
cost.\n\n\
**Authentication.** Every endpoint except the public ones (health probes, this document, the \
sign-in form and static files) needs `Authorization: Bearer <key>`, or the dashboard's \
`tally_session` cookie. Keys have a role — ingest (write events, outcomes, billing), read \
(query), admin (everything) — and a project: a project key's reads and writes stay in its \
project. A missing or wrong key is a 401 (pages redirect to /signin), the wrong role a 403. A \
server started without an admin key (allowed on loopback only) needs no key at all. \
`x-tally-role` on each operation names the role it needs (`ingest|read`: either).\n\n\
**Money** is always a JSON string holding an exact decimal (`\"0.0123\"`), never a number; \
quotients are exact divisions rounded once, half-even, to the `quotient_scale` an answer \
states.\n\n\
**Errors** of the JSON API are `{\"error\": {\"code\", \"message\"}}` with the status code; \
pages answer an HTML page. Every answer carries an `x-request-id` that the server log repeats. \
A request that takes longer than 300 seconds is answered 408.";

fn build() -> Value {
    let mut paths = Map::new();
    for op in operations() {
        let (method, path) = (op.method, op.path);
        let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        assert!(
            item.get(method).is_none(),
            "{method} {path} is described twice"
        );
        item[method] = op.finish();
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tally",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "ingest", "description": "LLM calls, task outcomes and traces in; rejected records"},
            {"name": "analytics", "description": "Costs, tasks, runs, routes, what-if, re-pricing, unpriced usage, anomalies"},
            {"name": "billing", "description": "Provider billing imports, reconciliation and the FOCUS export"},
            {"name": "budgets", "description": "Budgets, their status, alerts and alert channels"},
            {"name": "keys", "description": "API keys"},
            {"name": "operations", "description": "Health, readiness, metrics and this document"},
            {"name": "pages", "description": "The dashboard: HTML pages, their forms and static files"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "responses": responses(),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (tk_…) or the bootstrap admin key: Authorization: Bearer <key>.",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": super::session::COOKIE,
                    "description": "The dashboard's session cookie, set by POST /signin. Forms that change something also carry a CSRF token.",
                },
            },
        },
        "security": [{"apiKey": []}, {"session": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique_and_every_export_has_its_row_list() {
        let doc = document();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_string()), "{method} {path}: {id} twice");
                if let Some(key) = op.get("x-tally-table").and_then(Value::as_str) {
                    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
                    assert_eq!(
                        schema["properties"][key]["type"], "array",
                        "{method} {path}: its export table {key} is not an array of the answer"
                    );
                }
            }
        }
    }
}
