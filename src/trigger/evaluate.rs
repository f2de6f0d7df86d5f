//! A trigger's query over a run's session (which has `new_events`): its
//! rows, with the trigger's pending rows decoded back into rows of the
//! query, resolved to contacts and collapsed to matches.

use std::sync::Arc;

use datafusion::prelude::SessionContext;

use super::TriggerFile;
use crate::identity::index::{AsOf, IdentityIndex};
use crate::identity::pending::{decode, nullable};
use crate::identity::resolve::{Resolution, resolve};
use crate::sql::{explain_error, plan_read_only_physical};
use crate::store::ledger::PendingRecord;

/// What a trigger's query made of a run's window and pending rows.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub resolution: Resolution,
    /// Rows the query returned for the window (the first positions of the
    /// resolution's rows; the pending rows follow).
    pub window_rows: usize,
    /// For each position of the resolution's rows, the pending row (its
    /// index in the list given) it came from.
    pub origins: Vec<Option<usize>>,
}

/// Runs `trigger`'s SQL on `ctx` and resolves what it returns together with
/// the `pending` rows that still decode (with `index` at its clock when
/// given: `identity::resolve`).
pub async fn evaluate(
    ctx: &SessionContext,
    trigger: &TriggerFile,
    pending: &[Arc<PendingRecord>],
    index: Option<(&IdentityIndex, AsOf)>,
) -> Result<Evaluation, String> {
    let (frame, plan) = plan_read_only_physical(ctx, &trigger.sql)
        .await
        .map_err(|e| e.to_string())?;
    let schema = nullable(frame.schema().as_arrow());
    let rows = datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .map_err(|e| explain_error(&trigger.sql, &e.to_string()))?;
    let mut all = Vec::with_capacity(rows.len());
    for batch in rows {
        let relaxed = batch
            .with_schema(schema.clone())
            .map_err(|e| e.to_string())?;
        all.push(relaxed);
    }
    let window_rows: usize = all.iter().map(|b| b.num_rows()).sum();
    let (decoded, from) = decode(pending, &schema);
    let mut origins = vec![None; window_rows];
    origins.extend(from.into_iter().map(Some));
    all.extend(decoded);
    let resolution = resolve(ctx, all, schema, trigger.requires_identity, index).await?;
    Ok(Evaluation {
        resolution,
        window_rows,
        origins,
    })
}
