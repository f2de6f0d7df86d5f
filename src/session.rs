//! The session an analyst's SQL runs in (docs/reference.md "Tables"): a
//! workspace's `events`, `quarantine`, the ledger's views, `identities` and
//! `contacts`, at a moment. `tripwire query`, previews, runs, `check` and
//! the API all start from [`workspace_session`]; a run adds `new_events`
//! (`window`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;

use crate::sql::{QueryError, delta_provider, ledger, new_context, register_delta};
use crate::store::{Store, TableKind};

/// What a session's tables see: a workspace at a moment.
#[derive(Debug, Clone)]
pub struct SessionSpec<'a> {
    pub store: &'a Store,
    pub workspace: &'a str,
    /// The run's clock: `identities` keeps identify calls younger than `identity_ttl` at `now`.
    pub now: DateTime<Utc>,
    pub identity_ttl: Duration,
    /// The events table at the version to read; `None` reads the latest.
    pub events: Option<&'a DeltaTable>,
}

/// Builds the session with the workspace's tables and views registered.
pub async fn workspace_session(spec: &SessionSpec<'_>) -> Result<SessionContext, QueryError> {
    let ctx = new_context()?;
    let events = match spec.events {
        Some(table) => Some(table.clone()),
        None => spec.store.open(spec.workspace, TableKind::Events).await?,
    };
    register_delta(&ctx, events, TableKind::Events, "events").await?;
    let quarantine = spec
        .store
        .open(spec.workspace, TableKind::Quarantine)
        .await?;
    register_delta(&ctx, quarantine, TableKind::Quarantine, "quarantine").await?;
    let erasures = spec.store.open(spec.workspace, TableKind::Erasures).await?;
    register_delta(&ctx, erasures, TableKind::Erasures, "erasures").await?;
    let ledger_table = spec.store.open(spec.workspace, TableKind::Ledger).await?;
    let attempts = spec.store.open(spec.workspace, TableKind::Attempts).await?;
    let ledger_rows = delta_provider(&ctx, ledger_table, TableKind::Ledger).await?;
    let attempts = delta_provider(&ctx, attempts, TableKind::Attempts).await?;
    ledger::register_views(&ctx, ledger_rows, attempts).await?;
    crate::identity::register(&ctx, spec.now, spec.identity_ttl).await?;
    Ok(ctx)
}
