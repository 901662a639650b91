//! One HTTP attempt to deliver an alert to a channel: a Standard Webhooks request (generic
//! webhook) or a Slack incoming-webhook message, signed either way, with a timeout and without
//! following redirects (a webhook URL that redirects elsewhere is a misconfiguration or an
//! attack, and a 3xx counts as a failure).
//!
//! What happens after an attempt — retry, give up, disable — is `dispatcher`'s decision; this
//! module only sends and reports. It never logs URLs (Slack's carry their token) or secrets.

use std::time::{Duration, Instant};

use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::Value;

use super::signing;
use crate::domain::money::display_usd;

/// Kinds of channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Any HTTPS endpoint; receives the Standard Webhooks JSON payload.
    Webhook,
    /// A Slack incoming webhook; receives a `{"text": …}` message.
    Slack,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Result<ChannelKind, String> {
        match s {
            "webhook" => Ok(ChannelKind::Webhook),
            "slack" => Ok(ChannelKind::Slack),
            other => Err(format!(
                "unknown channel kind {other:?}; expected webhook or slack"
            )),
        }
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The first bytes of the answer.
    pub response: Option<String>,
}

impl SendResult {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Most bytes of a receiver's answer kept with an attempt.
const RESPONSE_KEPT: usize = 512;

/// Sends alerts over HTTP.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new(timeout: Duration) -> anyhow::Result<Sender> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tally-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender { client })
    }

    /// One signed attempt.
    pub async fn send(
        &self,
        kind: ChannelKind,
        url: &str,
        secret: &str,
        msg_id: &str,
        payload: &str,
    ) -> SendResult {
        let started = Instant::now();
        let elapsed = |s: Instant| s.elapsed().as_millis().min(i64::MAX as u128) as i64;
        let key = match signing::key_bytes(secret) {
            Ok(k) => k,
            Err(e) => {
                return SendResult {
                    status: None,
                    error: Some(format!("unusable channel secret: {e}")),
                    duration_ms: 0,
                    response: None,
                }
            }
        };
        let body = match kind {
            ChannelKind::Webhook => payload.to_string(),
            ChannelKind::Slack => slack_body(payload),
        };
        let timestamp = Utc::now().timestamp();
        let signature = signing::sign(&key, msg_id, timestamp, &body);
        let result = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let kept: String = text.chars().take(RESPONSE_KEPT).collect();
                let ok = (200..300).contains(&status);
                SendResult {
                    status: Some(status),
                    error: (!ok).then(|| format!("the receiver answered HTTP {status}")),
                    duration_ms: elapsed(started),
                    response: (!kept.is_empty()).then_some(kept),
                }
            }
            Err(e) => SendResult {
                status: None,
                error: Some(describe(&e)),
                duration_ms: elapsed(started),
                response: None,
            },
        }
    }
}

/// A transport error in words, without the URL (which may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirected"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}

/// Escapes text for Slack's mrkdwn.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn usd(v: &Value) -> String {
    v.as_str()
        .and_then(|s| s.parse::<Decimal>().ok())
        .map(display_usd)
        .unwrap_or_else(|| "?".into())
}

/// A Slack incoming-webhook message for a payload.
pub fn slack_body(payload: &str) -> String {
    let p: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let d = &p["data"];
    let b = &d["budget"];
    let name = esc(b["name"].as_str().unwrap_or("budget"));
    let split = match (b["split_by"].as_str(), d["split_value"].as_str()) {
        (Some(dim), Some(v)) => format!(" ({}={})", esc(dim), esc(v)),
        _ => String::new(),
    };
    let period = match (d["period"]["start"].as_str(), d["period"]["end"].as_str()) {
        (Some(s), Some(e)) => format!(" for {s} – {e}"),
        _ => String::new(),
    };
    let mut text = match p["type"].as_str().unwrap_or("") {
        "budget.threshold_crossed" => format!(
            ":rotating_light: Budget *{name}*{split} reached {}%: {} of {} ({}%){period}",
            d["threshold"].as_str().unwrap_or("?"),
            usd(&d["spent"]),
            usd(&d["amount"]),
            d["percent"].as_str().unwrap_or("?"),
        ),
        "budget.forecast_exceeded" => format!(
            ":chart_with_upwards_trend: Budget *{name}*{split} is projected to reach {} against {} (spent so far {}){period}",
            usd(&d["forecast"]),
            usd(&d["amount"]),
            usd(&d["spent"]),
        ),
        "budget.run_cap_exceeded" => format!(
            ":octagonal_sign: Run cap *{name}*: {} `{}` reached its {} cap ({}): {} calls, {}",
            d["run"]["dimension"].as_str().unwrap_or("run"),
            esc(d["run"]["id"].as_str().unwrap_or("?")),
            d["limit"].as_str().unwrap_or("?"),
            esc(d["max"].as_str().unwrap_or("?")),
            d["calls"],
            usd(&d["spent"]),
        ),
        other => format!("Tally: {}", esc(other)),
    };
    let tops: Vec<String> = d["top_contributors"]["feature"]
        .as_array()
        .into_iter()
        .flatten()
        .take(3)
        .map(|t| {
            format!(
                "{} {}",
                esc(t["value"].as_str().unwrap_or("(none)")),
                usd(&t["cost"])
            )
        })
        .collect();
    if !tops.is_empty() {
        text.push_str(&format!("\nTop features: {}", tops.join(", ")));
    }
    if let Some(url) = d["dashboard_url"].as_str() {
        text.push_str(&format!("\n<{}|Open in Tally>", esc(url)));
    }
    serde_json::json!({ "text": text }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_messages_say_what_crossed_and_escape_user_text() {
        let payload = serde_json::json!({
            "type": "budget.threshold_crossed",
            "data": {
                "budget": {"name": "search <prod>", "split_by": "customer_id"},
                "split_value": "acme & co",
                "threshold": "80", "spent": "812.4", "amount": "1000", "percent": "81.24",
                "period": {"start": "2026-11-01T00:00:00-07:00", "end": "2026-12-01T00:00:00-08:00"},
                "top_contributors": {"feature": [{"value": "search", "cost": "400"}]},
                "dashboard_url": "https://tally.example.com/budgets#b1"
            }
        })
        .to_string();
        let body: Value = serde_json::from_str(&slack_body(&payload)).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("search &lt;prod&gt;"), "{text}");
        assert!(text.contains("(customer_id=acme &amp; co)"), "{text}");
        assert!(
            text.contains("reached 80%: $812.40 of $1,000.00 (81.24%)"),
            "{text}"
        );
        assert!(text.contains("Top features: search $400.00"), "{text}");
        assert!(
            text.contains("<https://tally.example.com/budgets#b1|Open in Tally>"),
            "{text}"
        );
    }
}
