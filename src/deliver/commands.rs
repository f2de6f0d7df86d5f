//! What `tripwire deliveries`, `tripwire redeliver` and the hidden
//! `tripwire deliver` do, for the command line's glue.

use std::io::Write;

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::prelude::{Expr, ident, lit};

use super::{DeliveryLimits, deliver_due, redeliver};
use crate::config::Config;
use crate::error::Error;
use crate::session::{SessionSpec, workspace_session};
use crate::sql::QueryError;
use crate::sql::ledger::DELIVERIES_COLUMNS;
use crate::sql::output::{OutputFormat, render};
use crate::store::Store;

/// Which deliveries `tripwire deliveries` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    All,
    Failed,
    Dead,
}

impl Listing {
    fn status(self) -> Option<&'static str> {
        match self {
            Listing::All => None,
            Listing::Failed => Some("failed"),
            Listing::Dead => Some("dead"),
        }
    }
}

/// Which rows of the `deliveries` view to list: each given field must be
/// equal (`GET /v1/deliveries?status=&trigger=&flow=&run_id=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub trigger: Option<String>,
    pub flow: Option<String>,
    pub run_id: Option<String>,
}

impl DeliveryFilter {
    fn conditions(&self) -> Vec<Expr> {
        [
            ("status", &self.status),
            ("trigger", &self.trigger),
            ("flow", &self.flow),
            ("run_id", &self.run_id),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some(ident(column).eq(lit(value.clone()?))))
        .collect()
    }
}

/// Rows of the workspace's `deliveries` view that pass `filter`, newest
/// first, at most `limit`; `payload` only when `with_payload`. Values are
/// compared as values (never spliced into SQL).
pub async fn delivery_rows(
    config: &Config,
    store: &Store,
    workspace: &str,
    filter: &DeliveryFilter,
    limit: usize,
    with_payload: bool,
) -> Result<Vec<RecordBatch>, Error> {
    let spec = SessionSpec {
        store,
        workspace,
        now: Utc::now(),
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await?;
    let engine = |e: DataFusionError| Error::Query(QueryError::Engine(e.to_string()));
    let columns: Vec<Expr> = DELIVERIES_COLUMNS
        .iter()
        .filter(|c| with_payload || **c != "payload")
        .map(|c| ident(*c))
        .collect();
    let mut frame = ctx.table("deliveries").await.map_err(engine)?;
    for condition in filter.conditions() {
        frame = frame.filter(condition).map_err(engine)?;
    }
    frame
        .sort(vec![
            ident("planned_at").sort(false, false),
            ident("delivery_id").sort(true, false),
        ])
        .and_then(|f| f.limit(0, Some(limit)))
        .and_then(|f| f.select(columns))
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)
}

/// Prints the fire ledger, newest first (the payload column left out: it
/// is the request body, long, and in the `deliveries` table for SQL).
pub async fn list(
    config: &Config,
    workspace: Option<&str>,
    listing: Listing,
    format: OutputFormat,
    limit: usize,
) -> Result<(), Error> {
    let workspace = config.pick_workspace(workspace).map_err(Error::Usage)?;
    let store = Store::new(config.storage.clone());
    let filter = DeliveryFilter {
        status: listing.status().map(str::to_string),
        ..DeliveryFilter::default()
    };
    let batches = delivery_rows(config, &store, &workspace.id, &filter, limit, false).await?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        eprintln!("no deliveries in workspace {:?}", workspace.id);
        return Ok(());
    }
    let text = render(&batches, format).map_err(|e| QueryError::Engine(e.to_string()))?;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// Resets `ids` to pending, then delivers what is due in the workspace.
pub async fn redeliver_now(
    config: &Config,
    workspace: Option<&str>,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let workspace = config.pick_workspace(workspace).map_err(Error::Usage)?;
    let store = Store::new(config.storage.clone());
    let reset = redeliver(&store, &workspace.id, ids, now).await?;
    println!("{}: {reset} deliveries reset to pending", workspace.id);
    let summary = deliver_due(
        &store,
        config,
        &workspace.id,
        now,
        &DeliveryLimits::for_config(config),
    )
    .await?;
    println!("{}: {summary}", workspace.id);
    Ok(())
}

/// Releases (then delivers what is due) or discards a run's held deliveries.
pub async fn decide_held_now(
    config: &Config,
    workspace: Option<&str>,
    run_id: &str,
    flow: Option<&str>,
    decision: super::Decision,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let workspace = config.pick_workspace(workspace).map_err(Error::Usage)?;
    let store = Store::new(config.storage.clone());
    let count = super::decide_held(&store, &workspace.id, run_id, flow, decision, now).await?;
    match decision {
        super::Decision::Discard => {
            println!("{}: {count} held deliveries discarded", workspace.id);
        }
        super::Decision::Release => {
            println!("{}: {count} held deliveries released", workspace.id);
            let limits = DeliveryLimits::for_config(config);
            let summary = deliver_due(&store, config, &workspace.id, now, &limits).await?;
            println!("{}: {summary}", workspace.id);
        }
    }
    Ok(())
}

/// Delivers what is due at `now` in one workspace, or in all of them
/// (attempts themselves read the wall clock).
pub async fn deliver_now(
    config: &Config,
    workspace: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let store = Store::new(config.storage.clone());
    let ids: Vec<String> = match workspace {
        Some(id) => vec![
            config
                .pick_workspace(Some(id))
                .map_err(Error::Usage)?
                .id
                .clone(),
        ],
        None => config.workspaces.iter().map(|w| w.id.clone()).collect(),
    };
    for id in ids {
        let summary = deliver_due(
            &store,
            config,
            &id,
            now,
            &DeliveryLimits::for_config(config),
        )
        .await?;
        println!("{id}: {summary}");
    }
    Ok(())
}
