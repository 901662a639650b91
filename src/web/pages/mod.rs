//! Server-rendered pages: one askama template per page struct, a shared [`Layout`], the time
//! range every page reads from its URL, and the embedded static files.
//!
//! Pages are bookmarkable: every filter lives in the query string. Their numbers come from the
//! same `analytics` functions as the JSON API, parsed from the same parameters, so a page and
//! `/api/v1/…` with the same filters show the same figures. Pages answer people: errors are an
//! HTML page, and a missing sign-in redirects to the sign-in form.

pub mod budgets;
pub mod explore;
pub mod ingest;
pub mod overview;
pub mod reconciliation;
pub mod routes;
pub mod runs;
pub mod signin;
pub mod tasks;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::auth::SessionCookie;
use super::session::Sessions;
use super::Error;
use crate::analytics::costs::QueryError;
use crate::analytics::params::ParamError;
use crate::analytics::time;
use crate::keys::{Principal, Role};
use crate::store::StoreError;

/// Renders a template into an HTML response, logging how long the page took.
pub fn render(
    page: &impl Template,
    started: std::time::Instant,
    name: &str,
) -> Result<Response, PageError> {
    let html = page
        .render()
        .map_err(|e| PageError(Error::Internal(anyhow::anyhow!("template failed: {e}"))))?;
    tracing::info!(
        page = name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "page rendered"
    );
    Ok(Html(html).into_response())
}

/// An error shown to a person: an HTML page with the status and what to do.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}
impl From<QueryError> for PageError {
    fn from(e: QueryError) -> Self {
        PageError(e.into())
    }
}
impl From<ParamError> for PageError {
    fn from(e: ParamError) -> Self {
        PageError(e.into())
    }
}
impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match &self.0 {
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error on a page");
                "Something went wrong on the server; the log has the details.".to_string()
            }
            other => other.to_string(),
        };
        error_page(status, &message)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// An HTML error page.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        layout: Layout::bare("Error"),
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

/// What the base layout needs: the title, the active section, who is signed in.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub title: String,
    pub active: &'static str,
    /// "admin", or "read · project x"; `None` on a server without keys.
    pub who: Option<String>,
    /// CSRF token for the sign-out form, when signed in with a session.
    pub csrf: Option<String>,
    pub is_admin: bool,
}

impl Layout {
    /// A layout for pages outside the signed-in area (sign-in, errors).
    pub fn bare(title: &str) -> Self {
        Layout {
            title: title.into(),
            ..Layout::default()
        }
    }

    pub fn new(
        title: &str,
        active: &'static str,
        principal: &Principal,
        session: Option<&SessionCookie>,
        sessions: &Sessions,
    ) -> Self {
        let who = match (principal.role, principal.project.as_deref()) {
            (Role::Admin, _) if principal.key_id.is_none() && session.is_none() => None,
            (role, Some(p)) => Some(format!("{role} · project {p}")),
            (role, None) => Some(role.to_string()),
        };
        Layout {
            title: title.into(),
            active,
            who,
            csrf: session.map(|s| sessions.csrf_token(&s.0)),
            is_admin: principal.role == Role::Admin,
        }
    }

    /// CSS class of a navigation link.
    pub fn nav_class(&self, section: &str) -> &'static str {
        if self.active == section {
            "active"
        } else {
            ""
        }
    }
}

/// Time-range presets of the picker.
pub const PRESETS: [(&str, &str); 6] = [
    ("today", "Today"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("this_month", "This month"),
    ("last_month", "Last month"),
    ("custom", "Custom"),
];

/// A page's time range, resolved from `range`, `from`, `to` and `tz` in its URL.
#[derive(Debug, Clone)]
pub struct Range {
    pub preset: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// End of the calendar period the range belongs to (for forecasts); equals `to` for
    /// rolling ranges.
    pub period_end: DateTime<Utc>,
    pub tz: Tz,
    /// The range as the date inputs show it (local dates, `to` inclusive).
    pub from_date: String,
    pub to_date: String,
}

impl Range {
    /// Reads the range parameters; everything else in `pairs` is left to the page.
    pub fn from_pairs(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<Range, ParamError> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let tz: Tz = match get("tz") {
            Some(name) => name
                .parse()
                .map_err(|_| ParamError(format!("unknown time zone {name:?}")))?,
            None => Tz::UTC,
        };
        let preset = get("range").unwrap_or(if get("from").is_some() {
            "custom"
        } else {
            "this_month"
        });
        let today = now.with_timezone(&tz).date_naive();
        let month_start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
        let next_month = |d: NaiveDate| {
            let (y, m) = if d.month() == 12 {
                (d.year() + 1, 1)
            } else {
                (d.year(), d.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d)
        };
        let (from, to, period_end) = match preset {
            "today" => (
                time::start_of_day(tz, today),
                now,
                time::start_of_day(tz, today + Duration::days(1)),
            ),
            "7d" => (now - Duration::days(7), now, now),
            "30d" => (now - Duration::days(30), now, now),
            "this_month" => (
                time::start_of_day(tz, month_start),
                now,
                time::start_of_day(tz, next_month(month_start)),
            ),
            "last_month" => {
                let last = NaiveDate::from_ymd_opt(
                    if month_start.month() == 1 {
                        month_start.year() - 1
                    } else {
                        month_start.year()
                    },
                    if month_start.month() == 1 {
                        12
                    } else {
                        month_start.month() - 1
                    },
                    1,
                )
                .unwrap_or(month_start);
                let start = time::start_of_day(tz, last);
                let end = time::start_of_day(tz, month_start);
                (start, end, end)
            }
            "custom" => {
                let from = time::parse_bound(get("from").unwrap_or(""), tz, false)
                    .map_err(|e| ParamError(format!("from: {e}")))?;
                let to = match get("to") {
                    Some(t) => time::parse_bound(t, tz, true)
                        .map_err(|e| ParamError(format!("to: {e}")))?,
                    None => now,
                };
                if from >= to {
                    return Err(ParamError("the range must start before it ends".into()));
                }
                (from, to, to)
            }
            other => {
                return Err(ParamError(format!(
                    "unknown range {other:?}; expected one of {}",
                    PRESETS.map(|p| p.0).join(", ")
                )))
            }
        };
        let local_date = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
        // `to` is exclusive; the date input shows the last day included.
        let last_day = local_date(to - Duration::microseconds(1));
        Ok(Range {
            preset: preset.to_string(),
            from,
            to,
            period_end,
            tz,
            from_date: local_date(from).format("%Y-%m-%d").to_string(),
            to_date: last_day.format("%Y-%m-%d").to_string(),
        })
    }

    /// The same-length window just before this one, for "change against the previous period".
    pub fn previous(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let len = self.to - self.from;
        (self.from - len, self.from)
    }

    /// Query parameters that reproduce this range on another page or API call.
    pub fn query(&self) -> String {
        let mut q = format!("range={}&tz={}", self.preset, urlencode(self.tz.name()));
        if self.preset == "custom" {
            q.push_str(&format!("&from={}&to={}", self.from_date, self.to_date));
        }
        q
    }

    /// The equivalent `from`/`to` of the JSON API, as exact instants.
    pub fn api_query(&self) -> String {
        format!(
            "from={}&to={}&tz={}",
            urlencode(&self.from.to_rfc3339()),
            urlencode(&self.to.to_rfc3339()),
            urlencode(self.tz.name())
        )
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `/static/tally.css`, compiled into the binary so the service works from any directory and
/// offline.
pub async fn stylesheet() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../../../static/tally.css"),
    )
}

/// `/static/tally.js`: small progressive enhancements; every page works without it.
pub async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../../../static/tally.js"),
    )
}

/// `/static/favicon.svg` (also answered at `/favicon.ico`, which browsers ask for anyway).
pub async fn favicon() -> Response {
    static_file("image/svg+xml", include_str!("../../../static/favicon.svg"))
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn pairs(q: &str) -> Vec<(String, String)> {
        crate::analytics::params::pairs(Some(q))
    }

    #[test]
    fn presets_resolve_in_the_time_zone() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 6, 30, 0).unwrap();
        let r = Range::from_pairs(&pairs("range=this_month&tz=America/Los_Angeles"), now).unwrap();
        assert_eq!(r.from, Utc.with_ymd_and_hms(2026, 11, 1, 7, 0, 0).unwrap());
        assert_eq!(
            r.period_end,
            Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap()
        );
        assert_eq!(
            (r.from_date.as_str(), r.to_date.as_str()),
            ("2026-11-01", "2026-11-20")
        );
        let r = Range::from_pairs(&pairs("range=last_month"), now).unwrap();
        assert_eq!(
            (r.from_date.as_str(), r.to_date.as_str()),
            ("2026-10-01", "2026-10-31")
        );
        let r = Range::from_pairs(&pairs("from=2026-11-02&to=2026-11-03"), now).unwrap();
        assert_eq!(r.preset, "custom");
        assert_eq!(r.to - r.from, Duration::days(2));
        assert_eq!(
            r.previous().0,
            Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap()
        );
        assert!(Range::from_pairs(&pairs("range=fortnight"), now).is_err());
        assert!(Range::from_pairs(&pairs("from=2026-11-05&to=2026-11-01"), now).is_err());
    }
}
