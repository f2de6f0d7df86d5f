//! `GET /query` and `POST /query`: the SQL editor. The workspace's tables
//! with their columns, and the event names and fields it has learned
//! (what `GET /v1/schema` answers), beside a textarea; results as a
//! table. The SQL goes through `sql::plan_read_only`, as `tripwire query`'s
//! does (one statement, no DDL, DML, COPY or SET, in a session on the
//! process's `query_memory` pool), stopped after `query_timeout`; the page
//! shows at most [`MAX_QUERY_ROWS`] rows.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};

use super::Web;
use super::auth::{Viewer, posted};
use super::cells::Table;
use super::page::Frame;
use crate::session::{SessionSpec, workspace_session};
use crate::sql::limits::{explain_memory, within};
use crate::sql::{explain_error, plan_read_only};

/// The most result rows the page shows (the query stops reading there).
pub const MAX_QUERY_ROWS: usize = 1_000;

/// The longest SQL text the page takes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// What the editor holds on a first visit.
const EXAMPLE_SQL: &str =
    "SELECT event_name, count(*) AS n\nFROM events\nGROUP BY event_name\nORDER BY n DESC";

/// What the page shows after a query.
#[derive(Default)]
struct Ran {
    sql: String,
    now: String,
    table: Option<Table>,
    truncated: bool,
    error: Option<String>,
}

/// `GET /query`.
pub async fn page(State(web): State<Arc<Web>>, viewer: Viewer) -> Response {
    let ran = Ran {
        sql: EXAMPLE_SQL.into(),
        ..Ran::default()
    };
    show(&web, &viewer, ran).await
}

/// `POST /query` with `sql` and an optional clock `now` (RFC 3339).
pub async fn run(State(web): State<Arc<Web>>, viewer: Viewer, body: Bytes) -> Response {
    let form = match posted(&web, &viewer, &body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let mut ran = Ran {
        sql: form.get("sql").unwrap_or_default().to_string(),
        now: form.filled("now").unwrap_or_default().to_string(),
        ..Ran::default()
    };
    match execute(&web, &viewer.workspace, &ran.sql, &ran.now).await {
        Ok((table, truncated)) => {
            ran.table = Some(table);
            ran.truncated = truncated;
        }
        Err(e) => ran.error = Some(e),
    }
    show(&web, &viewer, ran).await
}

/// Runs `sql` read-only; the rows (at most [`MAX_QUERY_ROWS`]) and whether
/// there were more. A panic in the engine is an error, not a dropped page.
async fn execute(
    web: &Web,
    workspace: &str,
    sql: &str,
    now: &str,
) -> Result<(Table, bool), String> {
    if sql.trim().is_empty() {
        return Err("sql: write a query".into());
    }
    if sql.len() > MAX_SQL_BYTES {
        return Err(format!(
            "sql: {} bytes is over the page's limit of {MAX_SQL_BYTES}",
            sql.len()
        ));
    }
    let now = match now {
        "" => Utc::now(),
        text => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                format!("now: {text:?} is not an RFC 3339 time like 2026-11-05T00:00:00Z ({e})")
            })?,
    };
    let ctx = session(web, workspace, now).await?;
    let sql = sql.to_string();
    let timeout = web.config.limits.query_timeout;
    let task = tokio::spawn(async move {
        let explain = |e: datafusion::error::DataFusionError| {
            explain_memory(explain_error(&sql, &e.to_string()))
        };
        let read = async {
            let frame = plan_read_only(&ctx, &sql)
                .await
                .map_err(|e| e.to_string())?;
            frame
                .limit(0, Some(MAX_QUERY_ROWS + 1))
                .map_err(explain)?
                .collect()
                .await
                .map_err(explain)
        };
        within(timeout, read).await.map_err(|e| e.to_string())?
    });
    let batches = task
        .await
        .map_err(|e| format!("the query engine failed: {e}"))??;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let table = Table::from_batches(&batches, MAX_QUERY_ROWS)?;
    Ok((table, rows > MAX_QUERY_ROWS))
}

async fn session(web: &Web, workspace: &str, now: DateTime<Utc>) -> Result<SessionContext, String> {
    let spec = SessionSpec {
        store: &web.store,
        workspace,
        now,
        identity_ttl: web.config.identity_ttl,
        events: None,
    };
    workspace_session(&spec).await.map_err(|e| e.to_string())
}

async fn show(web: &Web, viewer: &Viewer, ran: Ran) -> Response {
    let status = match ran.error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let frame = Frame::new("Query", "query", Some(viewer)).error(ran.error.clone());
    let tables = match tables(web, &viewer.workspace).await {
        Ok(tables) => tables,
        Err(e) => {
            return web
                .pages
                .message(StatusCode::INTERNAL_SERVER_ERROR, frame, &e);
        }
    };
    let context = json!({
        "sql": ran.sql,
        "now": ran.now,
        "result": ran.table,
        "truncated": ran.truncated,
        "max_rows": MAX_QUERY_ROWS,
        "tables": tables,
        "learned": learned(web, &viewer.workspace),
    });
    web.pages.render(status, frame, "query.html", context)
}

/// Every table the SQL can read, with its columns and their types.
async fn tables(web: &Web, workspace: &str) -> Result<Vec<Value>, String> {
    let ctx = session(web, workspace, Utc::now()).await?;
    let mut names: Vec<String> = ctx
        .catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default();
    names.sort();
    let mut tables = Vec::new();
    for name in names {
        let Ok(provider) = ctx.table_provider(name.as_str()).await else {
            continue;
        };
        let columns: Vec<Value> = provider
            .schema()
            .fields()
            .iter()
            .map(|f| json!({ "name": f.name(), "type": f.data_type().to_string() }))
            .collect();
        tables.push(json!({ "name": name, "columns": columns }));
    }
    Ok(tables)
}

/// The learned event names, each with its fields and their types (none
/// when the workspace does not learn, or nothing was sent to `serve` yet).
fn learned(web: &Web, workspace: &str) -> Vec<Value> {
    let Ok(schemas) = web.ingest.schemas.lock() else {
        return Vec::new();
    };
    let Some(schema) = schemas.get(workspace) else {
        return Vec::new();
    };
    let mut events: Vec<Value> = Vec::new();
    for row in crate::ingest::learn::rows(schema) {
        match row["field"].as_str() {
            None => {
                events.push(json!({ "event": row["event"], "count": row["count"], "fields": [] }))
            }
            Some(field) => {
                if let Some(fields) = events.last_mut().and_then(|e| e["fields"].as_array_mut()) {
                    fields.push(json!({ "name": field, "types": row["types"] }));
                }
            }
        }
    }
    events
}
