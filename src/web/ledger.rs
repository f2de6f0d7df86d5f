//! What the pages read from the ledger's views (`runs`, `matches`,
//! `deliveries`), with fixed SQL and the trigger name as a parameter:
//! each trigger's last run and a trigger's run history, with the matches
//! and deliveries each run recorded.

use chrono::Utc;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;

use super::Web;
use super::cells::Table;
use crate::session::{SessionSpec, workspace_session};

/// The most runs a trigger's page lists and charts.
pub const RUN_HISTORY: usize = 200;

/// Deliveries that count on the page: those planned to be sent (not the
/// ones an experiment held out or a flow filtered).
const COUNTED_DELIVERIES: &str = "status NOT IN ('filtered', 'held_out')";

/// Per run in `r`, its matches (`m`) and counted deliveries (`d`).
fn counts_sql() -> String {
    format!(
        "m AS (SELECT x.run_id, count(*) AS n FROM matches x JOIN r ON x.run_id = r.run_id GROUP BY x.run_id),
         d AS (SELECT x.run_id, count(*) AS n FROM deliveries x JOIN r ON x.run_id = r.run_id
               WHERE x.{COUNTED_DELIVERIES} GROUP BY x.run_id)"
    )
}

/// The columns both reads answer, `finished_us` in microseconds.
const COLUMNS: &str = "r.run_id, CAST(r.finished_at AS BIGINT) AS finished_us, r.from_version, \
     r.to_version, r.matched AS rows, coalesce(m.n, 0) AS matches, coalesce(d.n, 0) AS deliveries, \
     r.resolved, r.dropped, r.pending, r.held, r.error";

/// Each trigger's latest run: `trigger` and [`COLUMNS`].
pub async fn last_runs(web: &Web, workspace: &str) -> Result<Table, String> {
    let sql = format!(
        "WITH ranked AS (SELECT *, row_number() OVER (PARTITION BY trigger
                         ORDER BY finished_at DESC, run_id) AS k FROM runs),
              r AS (SELECT * FROM ranked WHERE k = 1),
              {}
         SELECT r.trigger, {COLUMNS}
         FROM r LEFT JOIN m ON m.run_id = r.run_id LEFT JOIN d ON d.run_id = r.run_id",
        counts_sql()
    );
    read(web, workspace, &sql, Vec::new()).await
}

/// `trigger`'s latest [`RUN_HISTORY`] runs, newest first: [`COLUMNS`].
pub async fn run_history(web: &Web, workspace: &str, trigger: &str) -> Result<Table, String> {
    let sql = format!(
        "WITH r AS (SELECT * FROM runs WHERE trigger = $1
                    ORDER BY finished_at DESC, run_id LIMIT {RUN_HISTORY}),
              {}
         SELECT {COLUMNS}
         FROM r LEFT JOIN m ON m.run_id = r.run_id LEFT JOIN d ON d.run_id = r.run_id
         ORDER BY r.finished_at DESC, r.run_id",
        counts_sql()
    );
    let params = vec![ScalarValue::Utf8(Some(trigger.to_string()))];
    read(web, workspace, &sql, params).await
}

async fn read(
    web: &Web,
    workspace: &str,
    sql: &str,
    params: Vec<ScalarValue>,
) -> Result<Table, String> {
    let spec = SessionSpec {
        store: &web.store,
        workspace,
        now: Utc::now(),
        identity_ttl: web.config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await.map_err(|e| e.to_string())?;
    let batches = collect(&ctx, sql, params)
        .await
        .map_err(|e| format!("reading the ledger: {e}"))?;
    Table::from_batches(&batches, usize::MAX)
}

async fn collect(
    ctx: &SessionContext,
    sql: &str,
    params: Vec<ScalarValue>,
) -> datafusion::error::Result<Vec<arrow::array::RecordBatch>> {
    let frame = ctx.sql(sql).await?;
    let frame = match params.is_empty() {
        true => frame,
        false => frame.with_param_values(params)?,
    };
    frame.collect().await
}
