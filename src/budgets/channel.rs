//! Alert channels: where a budget's alerts go (a Standard Webhooks endpoint or a Slack incoming
//! webhook), their wire form, validation, and how they are shown without their secrets.
//!
//! A channel's secret is shown once, when it is created; listings show neither the secret nor
//! the full URL (Slack URLs are credentials), only its scheme, host and port.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::delivery::ChannelKind;
use super::model::{BudgetError, Source};
use super::signing;
use crate::store::queries::budgets::StoredChannel;

/// The wire and config form of a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    /// The project whose budgets may use it (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `webhook` (default) or `slack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub url: String,
    /// `whsec_…`; generated when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A channel spec checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedChannel {
    pub project: String,
    pub name: String,
    pub kind: ChannelKind,
    pub url: String,
    pub secret: Option<String>,
    pub enabled: Option<bool>,
}

fn err(field: &str, message: impl Into<String>) -> BudgetError {
    BudgetError {
        field: field.to_string(),
        message: message.into(),
    }
}

impl ChannelSpec {
    pub fn check(&self) -> Result<CheckedChannel, BudgetError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(err("name", "must be 1–256 characters"));
        }
        let project = self
            .project
            .as_deref()
            .map(str::trim)
            .unwrap_or(crate::keys::DEFAULT_PROJECT);
        if project.is_empty() || project.len() > 256 {
            return Err(err("project", "must be 1–256 characters"));
        }
        let kind = ChannelKind::parse(self.kind.as_deref().unwrap_or("webhook"))
            .map_err(|m| err("kind", m))?;
        let url = self.url.trim();
        let parsed =
            reqwest::Url::parse(url).map_err(|e| err("url", format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(err("url", "must be an http:// or https:// URL with a host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(err("url", "put credentials in the secret, not in the URL"));
        }
        if let Some(s) = &self.secret {
            signing::key_bytes(s).map_err(|m| err("secret", m))?;
        }
        Ok(CheckedChannel {
            project: project.to_string(),
            name: name.to_string(),
            kind,
            url: url.to_string(),
            secret: self.secret.as_ref().map(|s| s.trim().to_string()),
            enabled: self.enabled,
        })
    }
}

/// A channel as listed: no secret, the URL cut to its origin.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub id: String,
    pub project: String,
    pub name: String,
    pub kind: String,
    /// Scheme, host and port only; the full URL was shown at creation.
    pub url: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub source: Source,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&StoredChannel> for ChannelView {
    fn from(c: &StoredChannel) -> Self {
        ChannelView {
            id: c.id.clone(),
            project: c.project.clone(),
            name: c.name.clone(),
            kind: c.kind.clone(),
            url: redact_url(&c.url),
            enabled: c.enabled,
            disabled_reason: c.disabled_reason.clone(),
            source: Source::parse(&c.source),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A channel just created: the only answer that shows its secret and full URL.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: ChannelView,
    pub url_full: String,
    pub secret: String,
}

/// `https://hooks.slack.com/…`: enough to recognise, nothing to abuse.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}/…", u.scheme()),
                None => format!("{}://{host}/…", u.scheme()),
            }
        }
        Err(_) => "…".into(),
    }
}

/// A new channel id.
pub fn new_channel_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "ch_{}",
        Alphanumeric
            .sample_string(&mut rand::rng(), 12)
            .to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_checked_and_shown_without_secrets() {
        let ok = ChannelSpec {
            name: "oncall".into(),
            url: "https://hooks.slack.com/services/T0/B0/XYZ".into(),
            kind: Some("slack".into()),
            ..ChannelSpec::default()
        }
        .check()
        .unwrap();
        assert_eq!(ok.kind, ChannelKind::Slack);
        assert_eq!(ok.project, "default");
        assert_eq!(redact_url(&ok.url), "https://hooks.slack.com/…");
        assert_eq!(
            redact_url("http://127.0.0.1:8080/x?token=1"),
            "http://127.0.0.1:8080/…"
        );
        let bad = |spec: ChannelSpec| spec.check().unwrap_err().field;
        let base = ChannelSpec {
            name: "x".into(),
            url: "https://example.com/hook".into(),
            ..ChannelSpec::default()
        };
        assert_eq!(
            bad(ChannelSpec {
                url: "ftp://x/y".into(),
                ..base.clone()
            }),
            "url"
        );
        assert_eq!(
            bad(ChannelSpec {
                url: "https://u:p@x/y".into(),
                ..base.clone()
            }),
            "url"
        );
        assert_eq!(
            bad(ChannelSpec {
                kind: Some("email".into()),
                ..base.clone()
            }),
            "kind"
        );
        assert_eq!(
            bad(ChannelSpec {
                secret: Some("hunter2".into()),
                ..base.clone()
            }),
            "secret"
        );
        assert_eq!(
            bad(ChannelSpec {
                name: " ".into(),
                ..base
            }),
            "name"
        );
    }
}
