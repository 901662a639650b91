//! What the API, the config file and the demo call: budget and channel CRUD, the status and
//! alert history answers, redelivery and channel tests.
//!
//! Every write goes through the writer (`WriterHandle::exec`), so budget changes, alert rows
//! and delivery records never conflict with event commits. A new or changed budget is
//! evaluated at once in the same transaction (a budget created at 90 % of its amount alerts
//! now, not at the next event). After each change the in-memory definitions are reloaded and
//! the snapshot refreshed. Project scoping is the caller's (`web`) job: these functions take the
//! project to limit to, if any.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use duckdb::Connection;
use serde::Deserialize;
use serde_json::{json, Value};

use super::channel::{self, ChannelSpec, ChannelView, CheckedChannel, CreatedChannel};
use super::delivery::{ChannelKind, SendResult, Sender};
use super::evaluate::State;
use super::model::{show, Budget, BudgetError, BudgetSpec, Checked, Kind, Source};
use super::outbox::{self, Ctx};
use super::status;
use super::{signing, Engine};
use crate::store::queries::budgets::{self as sql, AlertsQuery, StoredBudget, StoredChannel};
use crate::store::queries::costs::Source as SpendSource;
use crate::store::{Store, StoreError};

/// Why a budget or channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] BudgetError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(BudgetError {
        field: field.to_string(),
        message: message.into(),
    })
}

fn new_budget_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "bud_{}",
        Alphanumeric
            .sample_string(&mut rand::rng(), 12)
            .to_ascii_lowercase()
    )
}

// ---------------------------------------------------------------------------------------------
// Loading and refreshing
// ---------------------------------------------------------------------------------------------

/// A stored budget, validated again (a definition that no longer validates is reported and
/// left out rather than evaluated wrongly).
fn parse_stored(row: &StoredBudget) -> Result<Budget, BudgetError> {
    let spec: BudgetSpec = serde_json::from_str(&row.definition).map_err(|e| BudgetError {
        field: "definition".into(),
        message: e.to_string(),
    })?;
    let c = spec.check()?;
    Ok(Budget {
        id: row.id.clone(),
        project: row.project.clone(),
        name: row.name.clone(),
        revision: row.revision,
        source: Source::parse(&row.source),
        scope: c.scope,
        kind: c.kind,
        channels: c.channels,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Loads the definitions into memory and refreshes the snapshot.
pub async fn reload(store: &Store, engine: &Engine) -> Result<(), StoreError> {
    let rows = store.read(sql::all_budgets).await?;
    let mut budgets = Vec::with_capacity(rows.len());
    for row in &rows {
        match parse_stored(row) {
            Ok(b) => budgets.push(b),
            Err(e) => {
                tracing::error!(budget_id = %row.id, error = %e, "stored budget is invalid; not evaluated")
            }
        }
    }
    engine.set_budgets(budgets);
    refresh(store, engine).await
}

/// Recomputes every budget's numbers for the snapshot.
pub async fn refresh(store: &Store, engine: &Engine) -> Result<(), StoreError> {
    let as_of = engine.commit_count();
    let budgets = engine.budgets();
    let now = Utc::now();
    let source = store.source();
    let readings = store
        .read(move |conn| {
            let mut out = Vec::new();
            for b in budgets.iter() {
                out.extend(status::readings(conn, b, now, true, source)?);
            }
            Ok(out)
        })
        .await?;
    engine.apply_refresh(readings, as_of, now);
    Ok(())
}

/// Refreshes the snapshot every `alerts.refresh` while the store runs.
pub fn spawn_refresher(store: Store, engine: Arc<Engine>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(engine.settings().refresh);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !store.writer().is_alive() || engine.stopping() {
                return;
            }
            if let Err(e) = refresh(&store, &engine).await {
                tracing::debug!(error = %e, "budget snapshot refresh skipped");
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Budgets
// ---------------------------------------------------------------------------------------------

/// Budgets in memory, optionally of one project.
pub fn list_budgets(engine: &Engine, project: Option<&str>) -> Vec<Arc<Budget>> {
    engine
        .budgets()
        .iter()
        .filter(|b| project.is_none_or(|p| b.project == p))
        .cloned()
        .collect()
}

pub fn get_budget(engine: &Engine, id: &str) -> Option<Arc<Budget>> {
    engine.budgets().iter().find(|b| b.id == id).cloned()
}

/// Channel ids for a budget's `channels` entries (ids or names of its project).
fn resolve_channels(
    conn: &Connection,
    project: &str,
    wanted: &[String],
) -> Result<Result<Vec<String>, ServiceError>, StoreError> {
    let all = sql::all_channels(conn)?;
    let mut ids = Vec::new();
    for w in wanted {
        let found = all
            .iter()
            .find(|c| &c.id == w)
            .or_else(|| all.iter().find(|c| c.project == project && &c.name == w));
        match found {
            Some(c) if c.project != project => {
                return Ok(Err(invalid(
                    "channels",
                    format!("channel {w:?} belongs to another project"),
                )))
            }
            Some(c) => {
                if !ids.contains(&c.id) {
                    ids.push(c.id.clone())
                }
            }
            None => {
                return Ok(Err(invalid(
                    "channels",
                    format!("no channel {w:?} in project {project:?}"),
                )))
            }
        }
    }
    Ok(Ok(ids))
}

fn stored(b: &Budget) -> Result<StoredBudget, StoreError> {
    Ok(StoredBudget {
        id: b.id.clone(),
        project: b.project.clone(),
        name: b.name.clone(),
        definition: serde_json::to_string(&b.to_spec())
            .map_err(|e| StoreError::Other(format!("cannot encode budget: {e}")))?,
        revision: b.revision,
        source: b.source.as_str().into(),
        created_at: b.created_at,
        updated_at: b.updated_at,
    })
}

fn existing_by_name(
    conn: &Connection,
    project: &str,
    name: &str,
) -> Result<Option<StoredBudget>, StoreError> {
    Ok(sql::all_budgets(conn)?
        .into_iter()
        .find(|b| b.project == project && b.name == name))
}

/// Writes a budget (new, or replacing `previous`) and evaluates it; on the writer connection.
fn upsert(
    conn: &Connection,
    c: Checked,
    previous: Option<&StoredBudget>,
    source: Source,
    public_url: Option<&str>,
    spend_from: SpendSource,
    now: DateTime<Utc>,
) -> Result<Result<(Budget, usize), ServiceError>, StoreError> {
    let channels = match resolve_channels(conn, &c.project, &c.channels)? {
        Ok(ids) => ids,
        Err(e) => return Ok(Err(e)),
    };
    let mut b = Budget {
        id: previous.map_or_else(new_budget_id, |p| p.id.clone()),
        project: c.project,
        name: c.name,
        revision: 1,
        source,
        scope: c.scope,
        kind: c.kind,
        channels,
        created_at: previous.map_or(now, |p| p.created_at),
        updated_at: now,
    };
    match previous {
        None => sql::insert_budget(conn, &stored(&b)?)?,
        Some(p) => {
            let old = parse_stored(p).ok();
            b.revision = match old {
                Some(old) if old.evaluates_like(&b) => p.revision,
                _ => p.revision + 1,
            };
            sql::update_budget(conn, &stored(&b)?)?;
        }
    }
    let outcome = outbox::evaluate_all(
        Ctx {
            conn,
            now,
            public_url,
            source: spend_from,
        },
        &b,
    )?;
    Ok(Ok((b, outcome.alerts)))
}

async fn after_change(store: &Store, engine: &Engine, alerts: usize) -> Result<(), StoreError> {
    reload(store, engine).await?;
    if alerts > 0 {
        engine.wake.notify_one();
    }
    Ok(())
}

/// Creates a budget (409 when its project has one of that name).
pub async fn create_budget(
    store: &Store,
    engine: &Engine,
    spec: BudgetSpec,
) -> Result<Budget, ServiceError> {
    let c = spec.check()?;
    let url = engine.public_url().map(str::to_string);
    let spend_from = engine.spend_source();
    let (b, alerts) = store
        .writer()
        .exec(move |conn| {
            if existing_by_name(conn, &c.project, &c.name)?.is_some() {
                return Ok(Err(ServiceError::Conflict(format!(
                    "project {:?} already has a budget named {:?}",
                    c.project, c.name
                ))));
            }
            upsert(
                conn,
                c,
                None,
                Source::Api,
                url.as_deref(),
                spend_from,
                Utc::now(),
            )
        })
        .await??;
    after_change(store, engine, alerts).await?;
    tracing::info!(budget_id = %b.id, project = %b.project, "budget created");
    Ok(b)
}

/// Replaces a budget's definition. Changing what it evaluates (scope, period, amount,
/// thresholds, …) starts a new revision, which re-arms its thresholds.
pub async fn replace_budget(
    store: &Store,
    engine: &Engine,
    id: &str,
    spec: BudgetSpec,
) -> Result<Budget, ServiceError> {
    let c = spec.check()?;
    let url = engine.public_url().map(str::to_string);
    let spend_from = engine.spend_source();
    let id = id.to_string();
    let (b, alerts) = store
        .writer()
        .exec(move |conn| {
            let all = sql::all_budgets(conn)?;
            let Some(previous) = all.iter().find(|b| b.id == id) else {
                return Ok(Err(ServiceError::NotFound(format!("no budget {id:?}"))));
            };
            if previous.source == Source::Config.as_str() {
                return Ok(Err(ServiceError::Conflict(format!(
                    "budget {id:?} is declared in the config file; change it there"
                ))));
            }
            if all
                .iter()
                .any(|b| b.id != id && b.project == c.project && b.name == c.name)
            {
                return Ok(Err(ServiceError::Conflict(format!(
                    "project {:?} already has a budget named {:?}",
                    c.project, c.name
                ))));
            }
            let source = Source::parse(&previous.source);
            upsert(
                conn,
                c,
                Some(previous),
                source,
                url.as_deref(),
                spend_from,
                Utc::now(),
            )
        })
        .await??;
    after_change(store, engine, alerts).await?;
    tracing::info!(budget_id = %b.id, revision = b.revision, "budget replaced");
    Ok(b)
}

/// Deletes a budget; its alert history stays.
pub async fn delete_budget(store: &Store, engine: &Engine, id: &str) -> Result<(), ServiceError> {
    let id = id.to_string();
    let id2 = id.clone();
    store
        .writer()
        .exec(move |conn| {
            let all = sql::all_budgets(conn)?;
            let Some(b) = all.iter().find(|b| b.id == id2) else {
                return Ok(Err(ServiceError::NotFound(format!("no budget {id2:?}"))));
            };
            if b.source == Source::Config.as_str() {
                return Ok(Err(ServiceError::Conflict(format!(
                    "budget {id2:?} is declared in the config file; remove it there"
                ))));
            }
            sql::delete_budget(conn, &id2)?;
            Ok(Ok(()))
        })
        .await??;
    after_change(store, engine, 0).await?;
    tracing::info!(budget_id = %id, "budget deleted");
    Ok(())
}

/// A budget as the API shows it.
pub fn budget_json(b: &Budget) -> Value {
    let mut v = outbox::budget_json(b);
    if let Value::Object(m) = &mut v {
        m.insert("revision".into(), b.revision.into());
        m.insert("source".into(), b.source.as_str().into());
        m.insert("channels".into(), b.channels.clone().into());
        m.insert("created_at".into(), fmt(b.created_at).into());
        m.insert("updated_at".into(), fmt(b.updated_at).into());
    }
    v
}

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------------------
// Declared budgets (config file, demo)
// ---------------------------------------------------------------------------------------------

/// Applies budgets and channels declared outside the API, idempotently by (project, name): a
/// declaration that did not change leaves its budget's revision (and so its alerts) alone.
/// With [`Source::Config`], config-declared budgets and channels no longer in the file are
/// removed. Returns the secrets of channels it created without one (for the caller to show).
pub async fn apply_declared(
    store: &Store,
    engine: &Engine,
    budgets: &[BudgetSpec],
    channels: &[ChannelSpec],
    source: Source,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut checked_channels: Vec<CheckedChannel> = Vec::new();
    for (i, spec) in channels.iter().enumerate() {
        let c = spec
            .check()
            .map_err(|e| anyhow::anyhow!("channels[{i}] ({}): {e}", spec.name))?;
        if source == Source::Config && c.kind == ChannelKind::Webhook && c.secret.is_none() {
            anyhow::bail!(
                "channels[{i}] ({}): secret: a webhook channel declared in the config file needs its secret there, so its receiver can verify signatures (generate one with `echo whsec_$(openssl rand -base64 32)`)",
                c.name
            );
        }
        if checked_channels
            .iter()
            .any(|o| o.project == c.project && o.name == c.name)
        {
            anyhow::bail!(
                "channels[{i}]: {:?} is declared twice in project {:?}",
                c.name,
                c.project
            );
        }
        checked_channels.push(c);
    }
    let mut checked_budgets: Vec<Checked> = Vec::new();
    for (i, spec) in budgets.iter().enumerate() {
        let c = spec
            .check()
            .map_err(|e| anyhow::anyhow!("budgets[{i}] ({}): {e}", spec.name))?;
        if checked_budgets
            .iter()
            .any(|o| o.project == c.project && o.name == c.name)
        {
            anyhow::bail!(
                "budgets[{i}]: {:?} is declared twice in project {:?}",
                c.name,
                c.project
            );
        }
        checked_budgets.push(c);
    }
    let url = engine.public_url().map(str::to_string);
    let spend_from = engine.spend_source();
    let (secrets, alerts) = store
        .writer()
        .exec(move |conn| {
            let now = Utc::now();
            let mut secrets = Vec::new();
            let existing = sql::all_channels(conn)?;
            for c in &checked_channels {
                match existing
                    .iter()
                    .find(|e| e.project == c.project && e.name == c.name)
                {
                    Some(e) => {
                        let updated = StoredChannel {
                            url: c.url.clone(),
                            kind: c.kind.as_str().into(),
                            secret: c.secret.clone().unwrap_or_else(|| e.secret.clone()),
                            source: source.as_str().into(),
                            updated_at: now,
                            ..e.clone()
                        };
                        if updated.url != e.url
                            || updated.secret != e.secret
                            || updated.kind != e.kind
                            || updated.source != e.source
                        {
                            sql::update_channel(conn, &updated)?;
                        }
                    }
                    None => {
                        let secret = c.secret.clone().unwrap_or_else(signing::new_secret);
                        let row = StoredChannel {
                            id: channel::new_channel_id(),
                            project: c.project.clone(),
                            name: c.name.clone(),
                            kind: c.kind.as_str().into(),
                            url: c.url.clone(),
                            secret: secret.clone(),
                            enabled: c.enabled.unwrap_or(true),
                            disabled_reason: None,
                            source: source.as_str().into(),
                            created_at: now,
                            updated_at: now,
                        };
                        sql::insert_channel(conn, &row)?;
                        if c.secret.is_none() {
                            secrets.push((row.name.clone(), secret));
                        }
                    }
                }
            }
            let mut alerts = 0;
            let mut kept: Vec<String> = Vec::new();
            for c in checked_budgets {
                let previous = existing_by_name(conn, &c.project, &c.name)?;
                let (b, n) = match upsert(
                    conn,
                    c,
                    previous.as_ref(),
                    source,
                    url.as_deref(),
                    spend_from,
                    now,
                )? {
                    Ok(v) => v,
                    // Rolled back: a declaration that cannot be applied stops the start.
                    Err(e) => return Err(StoreError::Other(format!("declared budget: {e}"))),
                };
                alerts += n;
                kept.push(b.id);
            }
            if source == Source::Config {
                for b in sql::all_budgets(conn)? {
                    if b.source == Source::Config.as_str() && !kept.contains(&b.id) {
                        tracing::info!(budget_id = %b.id, name = %b.name, "budget removed from the config file; deleting it");
                        sql::delete_budget(conn, &b.id)?;
                    }
                }
                let used: Vec<String> = sql::all_budgets(conn)?
                    .iter()
                    .filter_map(|b| parse_stored(b).ok())
                    .flat_map(|b| b.channels)
                    .collect();
                for c in sql::all_channels(conn)? {
                    let declared = checked_channels
                        .iter()
                        .any(|d| d.project == c.project && d.name == c.name);
                    if c.source == Source::Config.as_str() && !declared {
                        if used.contains(&c.id) {
                            tracing::warn!(channel_id = %c.id, "channel removed from the config file is still used by budgets; kept");
                        } else {
                            sql::delete_channel(conn, &c.id)?;
                        }
                    }
                }
            }
            Ok((secrets, alerts))
        })
        .await?;
    after_change(store, engine, alerts).await?;
    Ok(secrets)
}

// ---------------------------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------------------------

pub async fn list_channels(
    store: &Store,
    project: Option<&str>,
) -> Result<Vec<ChannelView>, StoreError> {
    let project = project.map(str::to_string);
    Ok(store
        .read(sql::all_channels)
        .await?
        .iter()
        .filter(|c| project.as_deref().is_none_or(|p| c.project == p))
        .map(ChannelView::from)
        .collect())
}

pub async fn get_channel(store: &Store, id: &str) -> Result<ChannelView, ServiceError> {
    let id = id.to_string();
    let id2 = id.clone();
    store
        .read(move |conn| sql::channel(conn, &id2))
        .await?
        .map(|c| ChannelView::from(&c))
        .ok_or_else(|| ServiceError::NotFound(format!("no channel {id:?}")))
}

/// Creates a channel; the answer is the only one that carries its secret.
pub async fn create_channel(
    store: &Store,
    spec: ChannelSpec,
) -> Result<CreatedChannel, ServiceError> {
    let c = spec.check()?;
    let row = store
        .writer()
        .exec(move |conn| {
            if sql::all_channels(conn)?
                .iter()
                .any(|e| e.project == c.project && e.name == c.name)
            {
                return Ok(Err(ServiceError::Conflict(format!(
                    "project {:?} already has a channel named {:?}",
                    c.project, c.name
                ))));
            }
            let now = Utc::now();
            let row = StoredChannel {
                id: channel::new_channel_id(),
                project: c.project,
                name: c.name,
                kind: c.kind.as_str().into(),
                url: c.url,
                secret: c.secret.unwrap_or_else(signing::new_secret),
                enabled: c.enabled.unwrap_or(true),
                disabled_reason: None,
                source: Source::Api.as_str().into(),
                created_at: now,
                updated_at: now,
            };
            sql::insert_channel(conn, &row)?;
            Ok(Ok(row))
        })
        .await??;
    tracing::info!(channel_id = %row.id, kind = %row.kind, "channel created");
    Ok(CreatedChannel {
        channel: ChannelView::from(&row),
        url_full: row.url.clone(),
        secret: row.secret.clone(),
    })
}

/// A partial change to a channel.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    /// Turning a channel on again (e.g. after a 410) resumes its pending alerts in order.
    pub enabled: Option<bool>,
    /// Replace the secret with a new random one, shown in this answer only.
    #[serde(default)]
    pub rotate_secret: bool,
}

/// Changes a channel; `Some(secret)` when it was rotated.
pub async fn update_channel(
    store: &Store,
    engine: &Engine,
    id: &str,
    patch: ChannelPatch,
) -> Result<(ChannelView, Option<String>), ServiceError> {
    let id = id.to_string();
    let (row, rotated) = store
        .writer()
        .exec(move |conn| {
            let Some(mut row) = sql::channel(conn, &id)? else {
                return Ok(Err(ServiceError::NotFound(format!("no channel {id:?}"))));
            };
            if row.source == Source::Config.as_str()
                && (patch.name.is_some() || patch.url.is_some() || patch.rotate_secret)
            {
                return Ok(Err(ServiceError::Conflict(format!(
                    "channel {id:?} is declared in the config file; only `enabled` can be changed here"
                ))));
            }
            let spec = ChannelSpec {
                name: patch.name.clone().unwrap_or(row.name.clone()),
                project: Some(row.project.clone()),
                kind: Some(row.kind.clone()),
                url: patch.url.clone().unwrap_or(row.url.clone()),
                secret: None,
                enabled: None,
            };
            let c = match spec.check() {
                Ok(c) => c,
                Err(e) => return Ok(Err(e.into())),
            };
            if c.name != row.name
                && sql::all_channels(conn)?
                    .iter()
                    .any(|e| e.project == row.project && e.name == c.name)
            {
                return Ok(Err(ServiceError::Conflict(format!(
                    "project {:?} already has a channel named {:?}",
                    row.project, c.name
                ))));
            }
            row.name = c.name;
            row.url = c.url;
            if let Some(enabled) = patch.enabled {
                row.enabled = enabled;
                if enabled {
                    row.disabled_reason = None;
                } else if row.disabled_reason.is_none() {
                    row.disabled_reason = Some("disabled through the API".into());
                }
            }
            let rotated = patch.rotate_secret.then(signing::new_secret);
            if let Some(s) = &rotated {
                row.secret = s.clone();
            }
            row.updated_at = Utc::now();
            sql::update_channel(conn, &row)?;
            Ok(Ok((row, rotated)))
        })
        .await??;
    engine.wake.notify_one();
    Ok((ChannelView::from(&row), rotated))
}

/// Deletes a channel no budget uses (409 otherwise); its pending deliveries are cancelled.
pub async fn delete_channel(store: &Store, engine: &Engine, id: &str) -> Result<(), ServiceError> {
    let users: Vec<String> = engine
        .budgets()
        .iter()
        .filter(|b| b.channels.iter().any(|c| c == id))
        .map(|b| b.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "channel {id:?} is used by budgets {}; remove it from them first",
            users.join(", ")
        )));
    }
    let id = id.to_string();
    store
        .writer()
        .exec(move |conn| {
            let Some(row) = sql::channel(conn, &id)? else {
                return Ok(Err(ServiceError::NotFound(format!("no channel {id:?}"))));
            };
            if row.source == Source::Config.as_str() {
                return Ok(Err(ServiceError::Conflict(format!(
                    "channel {id:?} is declared in the config file; remove it there"
                ))));
            }
            sql::delete_channel(conn, &id)?;
            Ok(Ok(()))
        })
        .await??;
    Ok(())
}

/// Sends a `budget.test` message to a channel now and reports what happened. A 410 disables
/// the channel, as it would for an alert.
pub async fn test_channel(
    store: &Store,
    engine: &Engine,
    id: &str,
) -> Result<(ChannelView, SendResult, String), ServiceError> {
    let id2 = id.to_string();
    let row = store
        .read(move |conn| sql::channel(conn, &id2))
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no channel {id:?}")))?;
    let now = Utc::now();
    let msg_id = format!("test_{}", uuid::Uuid::now_v7().simple());
    let payload = outbox::envelope(
        "budget.test",
        now,
        json!({
            "message": "A test message from Tally: this channel receives budget alerts.",
            "channel": {"id": row.id, "name": row.name, "project": row.project},
            "dashboard_url": engine.public_url().map(|u| format!("{}/budgets", u.trim_end_matches('/'))),
        }),
    );
    let sender =
        Sender::new(engine.settings().timeout).map_err(|e| StoreError::Other(e.to_string()))?;
    let kind = ChannelKind::parse(&row.kind).unwrap_or(ChannelKind::Webhook);
    let result = sender
        .send(kind, &row.url, &row.secret, &msg_id, &payload)
        .await;
    let mut row = row;
    if result.status == Some(410) {
        let cid = row.id.clone();
        store
            .writer()
            .exec(move |conn| {
                sql::set_channel_enabled(
                    conn,
                    &cid,
                    false,
                    Some("the receiver answered 410 Gone (channel test)"),
                    Utc::now(),
                )
            })
            .await?;
        row.enabled = false;
        row.disabled_reason = Some("the receiver answered 410 Gone (channel test)".into());
    }
    Ok((ChannelView::from(&row), result, msg_id))
}

// ---------------------------------------------------------------------------------------------
// Status, alerts, redelivery
// ---------------------------------------------------------------------------------------------

/// Most run rows a run cap shows in status.
const STATUS_RUNS: usize = 100;

/// `/api/v1/budgets/status`: every budget (of `project`, or one budget) and split value at
/// `at` (default now), fresh from SQL.
pub async fn status(
    store: &Store,
    engine: &Engine,
    project: Option<&str>,
    budget: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<Value, ServiceError> {
    let budgets: Vec<Arc<Budget>> = list_budgets(engine, project)
        .into_iter()
        .filter(|b| budget.is_none_or(|id| b.id == id))
        .collect();
    if let Some(id) = budget {
        if budgets.is_empty() {
            return Err(ServiceError::NotFound(format!("no budget {id:?}")));
        }
    }
    let now = Utc::now();
    let when = at.unwrap_or(now);
    let live = at.is_none();
    let list = budgets.clone();
    let source = store.source();
    let readings = store
        .read(move |conn| {
            let mut out = Vec::new();
            for b in list.iter() {
                out.push(status::readings(conn, b, when, live, source)?);
            }
            Ok(out)
        })
        .await?;
    let mut out = Vec::new();
    for (b, rows) in budgets.iter().zip(readings) {
        let mut v = budget_json(b);
        let mut worst = State::Ok;
        let mut shown: Vec<(State, &status::Reading)> =
            rows.iter().map(|r| (status::state_of(b, r), r)).collect();
        for (s, _) in &shown {
            worst = worst.max(*s);
        }
        let runs_seen = shown.len();
        if matches!(b.kind, Kind::RunCap(_)) {
            // Only runs near or past a cap, largest first: a day can hold thousands of runs.
            shown.retain(|(s, _)| *s != State::Ok);
            shown.sort_by(|a, b| b.1.spent.cmp(&a.1.spent).then(a.1.key.cmp(&b.1.key)));
            shown.truncate(STATUS_RUNS);
        }
        if let Value::Object(m) = &mut v {
            m.insert("state".into(), worst.as_str().into());
            m.insert(
                "rows".into(),
                shown
                    .iter()
                    .map(|(_, r)| status::reading_json(b, r))
                    .collect::<Vec<_>>()
                    .into(),
            );
            if matches!(b.kind, Kind::RunCap(_)) {
                m.insert("runs_in_last_24h".into(), runs_seen.into());
            }
        }
        out.push(v);
    }
    Ok(json!({
        // To the microsecond: `?at=` with this value reproduces the answer exactly (a page
        // showing these numbers links the same instant).
        "at": when.to_rfc3339_opts(SecondsFormat::Micros, true),
        "budgets": out,
        "note": "spend is known after calls complete and are ingested; budgets alert, they do not block calls",
    }))
}

/// `/api/v1/alerts`: history, newest first, with deliveries and every attempt.
pub async fn alerts(store: &Store, q: AlertsQuery) -> Result<(Vec<Value>, bool), StoreError> {
    let limit = q.limit;
    let (rows, deliveries, attempts) = store
        .read(move |conn| {
            let mut rows = sql::list_alerts(conn, &q)?;
            rows.truncate(q.limit + 1);
            let ids: Vec<String> = rows.iter().take(q.limit).map(|r| r.id.clone()).collect();
            let (d, a) = sql::deliveries(conn, &ids)?;
            Ok((rows, d, a))
        })
        .await?;
    let truncated = rows.len() > limit;
    let mut by_alert: HashMap<&str, Vec<Value>> = HashMap::new();
    for d in &deliveries {
        let log: Vec<Value> = attempts
            .iter()
            .filter(|a| a.alert_id == d.alert_id && a.channel_id == d.channel_id)
            .map(|a| {
                json!({
                    "attempt": a.attempt,
                    "at": fmt(a.at),
                    "status": a.status_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                    "response": a.response,
                })
            })
            .collect();
        by_alert
            .entry(d.alert_id.as_str())
            .or_default()
            .push(json!({
                "channel_id": d.channel_id,
                "channel_name": d.channel_name,
                "state": d.state,
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at.filter(|_| d.state == "pending").map(fmt),
                "delivered_at": d.delivered_at.map(fmt),
                "attempt_log": log,
            }));
    }
    let out = rows
        .iter()
        .take(limit)
        .map(|r| {
            let run = r.period_start == outbox::run_key_start() && r.period_end.is_none();
            json!({
                "id": r.id,
                "seq": r.seq,
                "type": r.event_type,
                "kind": r.kind,
                "project": r.project,
                "budget_id": r.budget_id,
                "budget_name": r.budget_name,
                "budget_revision": r.budget_revision,
                "split_value": (!r.split_key.is_empty()).then(|| r.split_key.clone()),
                "period_start": (!run).then(|| fmt(r.period_start)),
                "period_end": r.period_end.map(fmt),
                "threshold": show(r.threshold),
                "amount": r.amount.map(show),
                "spent": r.spent.map(show),
                "forecast": r.forecast.map(show),
                "state": r.state,
                "superseded_by": r.superseded_by,
                "created_at": fmt(r.created_at),
                "payload": serde_json::from_str::<Value>(&r.payload).unwrap_or(Value::Null),
                "deliveries": by_alert.remove(r.id.as_str()).unwrap_or_default(),
            })
        })
        .collect();
    Ok((out, truncated))
}

/// The project of an alert, if it exists.
pub async fn alert_project(store: &Store, id: &str) -> Result<Option<String>, StoreError> {
    let id = id.to_string();
    store.read(move |conn| sql::alert_project(conn, &id)).await
}

/// Queues an alert again to its budget's channels (or one channel): each gets a fresh retry
/// schedule and the same `webhook-id`. Channels added to the budget since are included.
pub async fn redeliver(
    store: &Store,
    engine: &Engine,
    alert_id: &str,
    channel: Option<&str>,
) -> Result<Vec<String>, ServiceError> {
    let id = alert_id.to_string();
    let channel = channel.map(str::to_string);
    let budgets = engine.budgets();
    let queued = store
        .writer()
        .exec(move |conn| {
            let rows = sql::list_alerts(
                conn,
                &AlertsQuery {
                    id: Some(id.clone()),
                    limit: 1,
                    ..AlertsQuery::default()
                },
            )?;
            let Some(alert) = rows.first() else {
                return Ok(Err(ServiceError::NotFound(format!("no alert {id:?}"))));
            };
            let now = Utc::now();
            if let Some(b) = budgets.iter().find(|b| b.id == alert.budget_id) {
                for c in &b.channels {
                    if channel.as_deref().is_none_or(|w| w == c) {
                        sql::insert_delivery(conn, &alert.id, c, &alert.project, alert.seq, now)?;
                    }
                }
            }
            let queued = sql::redeliver(conn, &id, channel.as_deref(), now)?;
            if queued.is_empty() {
                return Ok(Err(ServiceError::Conflict(match channel {
                    Some(c) => format!("alert {id:?} has no delivery to channel {c:?}"),
                    None => format!("alert {id:?} has no channel to deliver to"),
                })));
            }
            Ok(Ok(queued))
        })
        .await??;
    engine.wake.notify_one();
    Ok(queued)
}
