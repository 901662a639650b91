//! SQL of billing imports: writing an import's lines in one writer transaction, and listing
//! imports.
//!
//! [`apply`] runs on the writer thread (through `WriterHandle::exec`), so deciding what an
//! import replaces and writing it can never interleave with another import. A restatement is
//! found by source — same project, format, provider and provider sub-account — and period: the
//! earlier lines of that source whose period overlaps the period the new import covers are
//! replaced, except lines whose content is identical to a new line, which stay as they are and
//! count as unchanged. Table names come from a closed list; every value is a bound parameter.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::{params, Connection, OptionalExt};
use serde::Serialize;

use super::{from_micros, Sql};
use crate::billing::import::Prepared;
use crate::billing::LineKind;
use crate::store::arrow::ts_string;
use crate::store::StoreError;

/// What the writer did with an import.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub import_id: String,
    pub accepted: usize,
    pub replaced: usize,
    pub unchanged: usize,
    /// The very same body was imported into the project before: nothing was written.
    pub same_file: bool,
    pub warnings: Vec<String>,
}

/// A line's source and fingerprint, whichever kind of line it is.
struct Keyed {
    provider: String,
    scope: String,
    fingerprint: String,
}

/// Writes an import in the caller's transaction.
pub fn apply(conn: &Connection, p: &Prepared) -> Result<Applied, StoreError> {
    let kind = p.format.kind();
    let table = match kind {
        LineKind::Cost => "billing_lines",
        LineKind::Usage => "billing_usage",
    };
    let source_format = p.format.name();
    let earlier: Option<String> = conn
        .query_row(
            "SELECT id FROM billing_imports WHERE project = ? AND content_sha256 = ?
             ORDER BY imported_at LIMIT 1",
            params![p.project, p.content_sha256],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(import_id) = earlier {
        return Ok(Applied {
            import_id,
            unchanged: p.good_lines(),
            same_file: true,
            ..Applied::default()
        });
    }

    let keyed: Vec<Keyed> = match kind {
        LineKind::Cost => p
            .parsed
            .cost_lines
            .iter()
            .map(|l| Keyed {
                provider: l.provider.clone(),
                scope: l.sub_account.clone().unwrap_or_default(),
                fingerprint: l.fingerprint(source_format),
            })
            .collect(),
        LineKind::Usage => p
            .parsed
            .usage_lines
            .iter()
            .map(|l| Keyed {
                provider: l.provider.clone(),
                scope: l.sub_account.clone().unwrap_or_default(),
                fingerprint: l.fingerprint(source_format),
            })
            .collect(),
    };

    // Earlier lines of each source inside the covered period, by fingerprint.
    let sources: BTreeSet<(&str, &str)> = keyed
        .iter()
        .map(|k| (k.provider.as_str(), k.scope.as_str()))
        .collect();
    let mut keep = vec![false; keyed.len()]; // new lines identical to a stored one
    let mut gone: Vec<(String, i64)> = Vec::new();
    let mut unchanged = 0usize;
    if let Some((cs, ce)) = p.parsed.covered {
        for (provider, scope) in &sources {
            let mut stored: HashMap<String, Vec<(String, i64)>> = HashMap::new();
            let mut stmt = conn.prepare(&format!(
                "SELECT import_id, line_no, fingerprint FROM {table}
                 WHERE project = ? AND source_format = ? AND provider = ?
                   AND coalesce(sub_account, '') = ?
                   AND period_start < CAST(? AS TIMESTAMPTZ) AND period_end > CAST(? AS TIMESTAMPTZ)"
            ))?;
            let rows = stmt.query_map(
                params![
                    p.project,
                    source_format,
                    provider,
                    scope,
                    ts_string(ce),
                    ts_string(cs)
                ],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )?;
            for row in rows {
                let (import_id, line_no, fp) = row?;
                stored.entry(fp).or_default().push((import_id, line_no));
            }
            for (i, k) in keyed.iter().enumerate() {
                if k.provider != *provider || k.scope != *scope {
                    continue;
                }
                if stored
                    .get_mut(&k.fingerprint)
                    .and_then(|v| v.pop())
                    .is_some()
                {
                    keep[i] = true;
                    unchanged += 1;
                }
            }
            gone.extend(stored.into_values().flatten());
        }
    }

    if !gone.is_empty() {
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS billing_gone (import_id VARCHAR, line_no BIGINT);
             DELETE FROM billing_gone;",
        )?;
        {
            let mut app = conn.appender("billing_gone")?;
            for (import_id, line_no) in &gone {
                app.append_row(params![import_id, line_no])?;
            }
            app.flush()?;
        }
        conn.execute(
            &format!(
                "DELETE FROM {table} USING billing_gone g
                 WHERE {table}.import_id = g.import_id AND {table}.line_no = g.line_no
                   AND {table}.project = ?"
            ),
            params![p.project],
        )?;
    }

    let accepted = keep.iter().filter(|k| !**k).count();
    if accepted > 0 {
        let mut app = conn.appender(table)?;
        match kind {
            LineKind::Cost => {
                for ((l, k), kept) in p.parsed.cost_lines.iter().zip(&keyed).zip(&keep) {
                    if *kept {
                        continue;
                    }
                    app.append_row(params![
                        p.import_id,
                        l.line as i64,
                        p.project,
                        source_format,
                        l.provider,
                        l.sub_account,
                        l.service,
                        l.model,
                        l.line_item,
                        l.sku,
                        ts_string(l.period_start),
                        ts_string(l.period_end),
                        l.amount.to_string(),
                        l.list_amount.map(|d| d.to_string()),
                        l.effective_amount.map(|d| d.to_string()),
                        l.currency,
                        l.quantity.map(|d| d.to_string()),
                        l.unit,
                        l.tokens,
                        l.charge_category,
                        l.charge_class,
                        l.tags,
                        l.attributes,
                        l.raw,
                        k.fingerprint,
                    ])?;
                }
            }
            LineKind::Usage => {
                for ((l, k), kept) in p.parsed.usage_lines.iter().zip(&keyed).zip(&keep) {
                    if *kept {
                        continue;
                    }
                    let t = &l.tokens;
                    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                    app.append_row(params![
                        p.import_id,
                        l.line as i64,
                        p.project,
                        source_format,
                        l.provider,
                        l.sub_account,
                        l.model,
                        l.api_key_id,
                        l.service_tier,
                        l.batch,
                        ts_string(l.period_start),
                        ts_string(l.period_end),
                        n(t.input_uncached),
                        n(t.cache_read),
                        n(t.cache_write_5m),
                        n(t.cache_write_1h),
                        n(t.output),
                        n(t.audio_in),
                        n(t.audio_out),
                        n(t.image_in),
                        n(t.image_out),
                        n(l.web_search_requests),
                        l.requests.map(n),
                        l.tags,
                        l.attributes,
                        l.raw,
                        k.fingerprint,
                    ])?;
                }
            }
        }
        app.flush()?;
    }

    let warnings = match p.parsed.covered {
        Some((cs, ce)) => mixed_scope_warnings(conn, p, table, &sources, cs, ce)?,
        None => Vec::new(),
    };

    let (ps, pe) = match p.parsed.covered {
        Some((s, e)) => (Some(ts_string(s)), Some(ts_string(e))),
        None => (None, None),
    };
    conn.execute(
        "INSERT INTO billing_imports (id, project, source_format, kind, content_sha256, file_name,
             imported_at, key_id, http_request, period_start, period_end, records, accepted,
             replaced, unchanged, rejected, skipped)
         VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), ?, ?, CAST(? AS TIMESTAMPTZ),
                 CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?)",
        params![
            p.import_id,
            p.project,
            source_format,
            kind.as_str(),
            p.content_sha256,
            p.file_name,
            ts_string(p.imported_at),
            p.key_id,
            p.http_request,
            ps,
            pe,
            p.parsed.records as i64,
            accepted as i64,
            gone.len() as i64,
            unchanged as i64,
            p.parsed.rejects.len() as i64,
            p.parsed.skipped as i64,
        ],
    )?;

    // Dead letters: the shared rejects table, so `/api/v1/rejects` lists them with ingest's.
    if !p.parsed.rejects.is_empty() {
        let mut stmt = conn.prepare(
            "INSERT INTO rejects (received_at, http_request, source_format, record_index, field,
                 reason, raw, project)
             VALUES (CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for r in &p.parsed.rejects {
            stmt.execute(params![
                ts_string(p.imported_at),
                p.http_request.clone().or_else(|| Some(p.import_id.clone())),
                source_format,
                r.line as i64,
                r.field,
                r.reason,
                r.raw,
                p.project,
            ])?;
        }
    }

    Ok(Applied {
        import_id: p.import_id.clone(),
        accepted,
        replaced: gone.len(),
        unchanged,
        same_file: false,
        warnings,
    })
}

/// Sources are told apart by sub-account, so an export grouped by sub-account and one that
/// was not both stay when they cover the same days, and count the same spend twice. That is
/// the user's call to make, but never a silent one.
fn mixed_scope_warnings(
    conn: &Connection,
    p: &Prepared,
    table: &str,
    sources: &BTreeSet<(&str, &str)>,
    cs: DateTime<Utc>,
    ce: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let providers: BTreeSet<&str> = sources.iter().map(|(p, _)| *p).collect();
    let mut warnings = Vec::new();
    for provider in providers {
        let new_scopes: BTreeSet<&str> = sources
            .iter()
            .filter(|(p, _)| *p == provider)
            .map(|(_, s)| *s)
            .collect();
        let mut stmt = conn.prepare(&format!(
            "SELECT DISTINCT coalesce(sub_account, '') FROM {table}
             WHERE project = ? AND source_format = ? AND provider = ?
               AND period_start < CAST(? AS TIMESTAMPTZ) AND period_end > CAST(? AS TIMESTAMPTZ)"
        ))?;
        let rows = stmt.query_map(
            params![
                p.project,
                p.format.name(),
                provider,
                ts_string(ce),
                ts_string(cs)
            ],
            |r| r.get::<_, String>(0),
        )?;
        let mut others = Vec::new();
        for scope in rows {
            let scope = scope?;
            if !new_scopes.contains(scope.as_str()) {
                others.push(scope);
            }
        }
        let mixes = others
            .iter()
            .any(|o| o.is_empty() || new_scopes.contains(""));
        if mixes {
            warnings.push(format!(
                "{provider}: lines of this format imported before for the same days are grouped \
                 differently (by sub-account or not) and stay beside this import's; if both \
                 exports cover the same spend it is counted twice — import exports grouped the \
                 same way"
            ));
        }
    }
    Ok(warnings)
}

/// One import as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ImportRow {
    pub id: String,
    pub project: String,
    pub format: String,
    pub kind: String,
    pub file_name: Option<String>,
    pub imported_at: String,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub records: i64,
    pub accepted: i64,
    pub replaced: i64,
    pub unchanged: i64,
    pub rejected: i64,
    pub skipped: i64,
    /// Lines of this import still stored (the rest were replaced by later imports).
    pub live_lines: i64,
}

/// Imports, newest first; `project` limits them to one project.
pub fn list_imports(
    conn: &Connection,
    project: Option<&str>,
    limit: usize,
) -> Result<Vec<ImportRow>, StoreError> {
    let mut sql = Sql::default();
    sql.push(
        "SELECT i.id, i.project, i.source_format, i.kind, i.file_name, epoch_us(i.imported_at),
                epoch_us(i.period_start), epoch_us(i.period_end), i.records, i.accepted,
                i.replaced, i.unchanged, i.rejected, i.skipped,
                coalesce(l.n, 0) + coalesce(u.n, 0)
         FROM billing_imports i
         LEFT JOIN (SELECT import_id, count(*) AS n FROM billing_lines GROUP BY ALL) l
                ON l.import_id = i.id
         LEFT JOIN (SELECT import_id, count(*) AS n FROM billing_usage GROUP BY ALL) u
                ON u.import_id = i.id
         WHERE TRUE",
    );
    if let Some(project) = project {
        sql.push(" AND i.project = ")
            .bind(Value::Text(project.into()));
    }
    sql.push(" ORDER BY i.imported_at DESC, i.id DESC LIMIT ")
        .bind(Value::BigInt(limit as i64));
    let mut stmt = conn.prepare(&sql.text)?;
    let ts = |us: Option<i64>| us.map(|u| from_micros(u).to_rfc3339());
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok(ImportRow {
            id: r.get(0)?,
            project: r.get(1)?,
            format: r.get(2)?,
            kind: r.get(3)?,
            file_name: r.get(4)?,
            imported_at: from_micros(r.get(5)?).to_rfc3339(),
            period_start: ts(r.get(6)?),
            period_end: ts(r.get(7)?),
            records: r.get(8)?,
            accepted: r.get(9)?,
            replaced: r.get(10)?,
            unchanged: r.get(11)?,
            rejected: r.get(12)?,
            skipped: r.get(13)?,
            live_lines: r.get(14)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
