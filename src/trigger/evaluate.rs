//! A trigger's query over a run's session (which has `new_events`): its
//! rows, resolved to contacts and collapsed to matches.

use std::sync::Arc;

use datafusion::prelude::SessionContext;

use super::TriggerFile;
use crate::identity::resolve::{Resolution, resolve};
use crate::sql::{explain_error, plan_read_only};

/// Runs `trigger`'s SQL on `ctx` and resolves what it returns.
pub async fn evaluate(ctx: &SessionContext, trigger: &TriggerFile) -> Result<Resolution, String> {
    let frame = plan_read_only(ctx, &trigger.sql)
        .await
        .map_err(|e| e.to_string())?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let rows = frame
        .collect()
        .await
        .map_err(|e| explain_error(&trigger.sql, &e.to_string()))?;
    resolve(ctx, rows, schema, trigger.requires_identity).await
}
