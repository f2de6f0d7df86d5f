//! The session an analyst's SQL runs in (docs/reference.md "Tables"): a
//! workspace's `events`, `quarantine`, the ledger's views, `identities` and
//! `contacts`, at a moment. `tripwire query`, previews, runs, `check` and
//! the API all start from [`workspace_session`]; a run adds `new_events`
//! (`window`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;

use crate::sql::cluster::analyst_context;
use crate::sql::{QueryError, delta_provider, ledger, register_delta};
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
    let tables = WorkspaceTables::open(spec.store, spec.workspace, spec.events).await?;
    tables_session(&tables, spec.now, spec.identity_ttl, None).await
}

/// A workspace's tables, opened (their logs read) once for the many
/// sessions of a tick (docs/architecture.md "Ticks").
#[derive(Debug, Clone)]
pub struct WorkspaceTables {
    pub events: Option<DeltaTable>,
    pub quarantine: Option<DeltaTable>,
    pub erasures: Option<DeltaTable>,
    pub ledger: Option<DeltaTable>,
    pub attempts: Option<DeltaTable>,
}

impl WorkspaceTables {
    /// Opens the workspace's tables at their latest versions (`events`, when
    /// given, at the version it is at).
    pub async fn open(
        store: &Store,
        workspace: &str,
        events: Option<&DeltaTable>,
    ) -> Result<WorkspaceTables, QueryError> {
        let events = match events {
            Some(table) => Some(table.clone()),
            None => store.open(workspace, TableKind::Events).await?,
        };
        Ok(WorkspaceTables {
            events,
            quarantine: store.open(workspace, TableKind::Quarantine).await?,
            erasures: store.open(workspace, TableKind::Erasures).await?,
            ledger: store.open(workspace, TableKind::Ledger).await?,
            attempts: store.open(workspace, TableKind::Attempts).await?,
        })
    }
}

/// A session over `tables` as of `now`; `identities` is the identity
/// index's table when it answers for `now`, else the view over `events`.
/// With `[engine] ballista`, its queries run on the cluster (`sql::cluster`).
pub async fn tables_session(
    tables: &WorkspaceTables,
    now: DateTime<Utc>,
    identity_ttl: Duration,
    identities: Option<Arc<dyn TableProvider>>,
) -> Result<SessionContext, QueryError> {
    let ctx = analyst_context()?;
    register_delta(&ctx, tables.events.clone(), TableKind::Events, "events").await?;
    let quarantine = tables.quarantine.clone();
    register_delta(&ctx, quarantine, TableKind::Quarantine, "quarantine").await?;
    let erasures = tables.erasures.clone();
    register_delta(&ctx, erasures, TableKind::Erasures, "erasures").await?;
    let ledger_rows = delta_provider(&ctx, tables.ledger.clone(), TableKind::Ledger).await?;
    let attempts = delta_provider(&ctx, tables.attempts.clone(), TableKind::Attempts).await?;
    ledger::register_views(&ctx, ledger_rows, attempts).await?;
    crate::identity::register_with(&ctx, now, identity_ttl, identities).await?;
    Ok(ctx)
}
