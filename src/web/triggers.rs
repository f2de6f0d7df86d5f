//! `GET /`: the workspace's triggers, as `GET /v1/triggers` and `tripwire
//! triggers` compute them (`trigger::status::trigger_rows`), with how far
//! each is behind the newest events commit and its last run; and the
//! trigger files that do not parse.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use deltalake_core::DeltaTable;
use object_store::ObjectStoreExt;
use serde_json::{Value, json};

use super::Web;
use super::auth::Viewer;
use super::cells::{Table, ago, when};
use super::ledger::last_runs;
use super::page::Frame;
use crate::store::TableKind;
use crate::trigger::status::trigger_rows;

/// The events table as it is now: its newest version, and when each
/// version still listed in its log was committed.
pub struct Newest {
    table: Option<DeltaTable>,
}

impl Newest {
    pub async fn read(web: &Web, workspace: &str) -> Result<Newest, String> {
        let table = web
            .store
            .open(workspace, TableKind::Events)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Newest { table })
    }

    pub fn version(&self) -> Option<i64> {
        self.table
            .as_ref()?
            .version()
            .and_then(|v| i64::try_from(v).ok())
    }

    /// When version `v` was committed: its commit file's modification
    /// time, while the file is kept (none once log cleanup removed it).
    async fn committed(&self, v: i64) -> Option<DateTime<Utc>> {
        let table = self.table.as_ref()?;
        let path = object_store::path::Path::from(format!("_delta_log/{v:020}.json"));
        let meta = table.object_store().head(&path).await.ok()?;
        Some(meta.last_modified)
    }

    /// How far behind a trigger whose cursor is `cursor` is, as text.
    pub async fn lag(&self, cursor: Option<i64>, now: DateTime<Utc>) -> String {
        let behind = versions_behind(cursor, self.version());
        let waited = match (cursor, behind) {
            (Some(c), Some(n)) if n > 0 => self.committed(c + 1).await.map(|t| ago(t, now)),
            _ => None,
        };
        describe_lag(behind, waited)
    }
}

/// Versions of the events table a trigger at `cursor` has not read
/// (`None` when it has not run, or there are no events).
pub fn versions_behind(cursor: Option<i64>, newest: Option<i64>) -> Option<i64> {
    Some((newest? - cursor?).max(0))
}

/// The lag column: "up to date", "3 versions (oldest 5m ago)", or why
/// there is none.
pub fn describe_lag(behind: Option<i64>, waited: Option<String>) -> String {
    match (behind, waited) {
        (None, _) => "not run yet".into(),
        (Some(0), _) => "up to date".into(),
        (Some(1), Some(waited)) => format!("1 version (waiting {waited})"),
        (Some(n), Some(waited)) => format!("{n} versions (oldest waiting {waited})"),
        (Some(1), None) => "1 version".into(),
        (Some(n), None) => format!("{n} versions"),
    }
}

/// `GET /`.
pub async fn page(State(web): State<Arc<Web>>, viewer: Viewer) -> Response {
    let frame = Frame::new("Triggers", "triggers", Some(&viewer));
    match context(&web, &viewer.workspace, Utc::now()).await {
        Ok(context) => web
            .pages
            .render(StatusCode::OK, frame, "triggers.html", context),
        Err(e) => web
            .pages
            .message(StatusCode::INTERNAL_SERVER_ERROR, frame, &e),
    }
}

async fn context(web: &Web, workspace: &str, now: DateTime<Utc>) -> Result<Value, String> {
    let (rows, errors) = trigger_rows(&web.config, &web.store, Some(workspace), now)
        .await
        .map_err(|e| e.to_string())?;
    let newest = Newest::read(web, workspace).await?;
    let last = last_runs(web, workspace).await?;
    let mut triggers = Vec::with_capacity(rows.len());
    for row in &rows {
        triggers.push(trigger_row(row, &newest, &last, now).await);
    }
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| json!({ "path": e.path, "line": e.line, "reason": e.reason }))
        .collect();
    Ok(json!({
        "triggers": triggers,
        "errors": errors,
        "newest": newest.version(),
    }))
}

/// One line of the table: the status row plus lag and last run.
async fn trigger_row(row: &Value, newest: &Newest, last: &Table, now: DateTime<Utc>) -> Value {
    let name = row["trigger"].as_str().unwrap_or_default();
    let cursor = row["cursor"].as_i64();
    let mut line = row.clone();
    line["href"] = json!(trigger_href(name));
    line["lag"] = json!(newest.lag(cursor, now).await);
    line["next_run"] = json!(next_run(row["next_run"].as_str(), now));
    line["last_run"] = (0..last.rows.len())
        .find(|i| last.cell(*i, "trigger") == Some(name))
        .map_or(Value::Null, |i| run_summary(last, i));
    line
}

/// The next scheduled run (RFC 3339, as `trigger_rows` gives it) as the
/// page shows it: `2026-11-29 20:10:00 (in 5m)`; none for a trigger that
/// does not run.
pub fn next_run(rfc3339: Option<&str>, now: DateTime<Utc>) -> Option<String> {
    let at = DateTime::parse_from_rfc3339(rfc3339?)
        .ok()?
        .with_timezone(&Utc);
    Some(format!(
        "{} (in {})",
        at.format("%Y-%m-%d %H:%M:%S"),
        ago(now, at)
    ))
}

/// A run row as the pages show it.
pub fn run_summary(runs: &Table, i: usize) -> Value {
    json!({
        "run_id": runs.cell(i, "run_id"),
        "finished": when(runs.number(i, "finished_us")),
        "from_version": runs.number(i, "from_version"),
        "to_version": runs.number(i, "to_version"),
        "rows": runs.number(i, "rows"),
        "matches": runs.number(i, "matches"),
        "deliveries": runs.number(i, "deliveries"),
        "dropped": runs.number(i, "dropped"),
        "pending": runs.number(i, "pending"),
        "held": runs.number(i, "held"),
        "error": runs.cell(i, "error"),
    })
}

/// The trigger page's address (the name percent-encoded).
pub fn trigger_href(name: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("/triggers/{}", encoded.replace('+', "%20"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_in_versions_and_time() {
        assert_eq!(versions_behind(Some(3), Some(7)), Some(4));
        assert_eq!(versions_behind(Some(7), Some(7)), Some(0));
        assert_eq!(versions_behind(None, Some(7)), None);
        assert_eq!(versions_behind(Some(-1), None), None);
        assert_eq!(describe_lag(Some(0), Some("1m".into())), "up to date");
        assert_eq!(
            describe_lag(Some(4), Some("5m".into())),
            "4 versions (oldest waiting 5m)"
        );
        assert_eq!(describe_lag(Some(1), None), "1 version");
        assert_eq!(describe_lag(None, None), "not run yet");
    }

    #[test]
    fn the_next_run_is_a_time_and_how_soon() {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            next_run(Some("2027-01-15T08:05:00.123456+00:00"), now).as_deref(),
            Some("2027-01-15 08:05:00 (in 5m)")
        );
        assert_eq!(next_run(None, now), None);
        assert_eq!(next_run(Some("soon"), now), None);
    }

    #[test]
    fn trigger_addresses_are_encoded() {
        assert_eq!(trigger_href("cart_abandoned"), "/triggers/cart_abandoned");
        assert_eq!(
            trigger_href("a b/<script>"),
            "/triggers/a%20b%2F%3Cscript%3E"
        );
    }
}
