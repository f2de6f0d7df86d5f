//! The session an analyst's SQL runs in (docs/reference.md "Tables"): a
//! workspace's `events`, `quarantine`, the ledger's views, `identities` and
//! `contacts`, at a moment. `tripwire query`, previews, runs, `check` and
//! the API all start from [`workspace_session`]; a run adds `new_events`
//! (`window`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use futures::FutureExt as _;

use crate::identity::index::IdentityIndex;
use crate::sql::cluster::analyst_context;
use crate::sql::lazy_schema::{LazySchema, Table, external};
use crate::sql::{QueryError, delta_provider, engine, ledger};
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

/// Builds the session with the workspace's tables and views: each table
/// is opened, and each view planned, when a query first names it
/// (`sql::lazy_schema`).
pub async fn workspace_session(spec: &SessionSpec<'_>) -> Result<SessionContext, QueryError> {
    let mut tables = WorkspaceTables::new(spec.store, spec.workspace);
    if let Some(events) = spec.events {
        tables.opened(TableKind::Events, Some(events.clone()));
    }
    tables_session(&tables, spec.now, spec.identity_ttl, None).await
}

/// A workspace's tables for a session: those already open (a tick opens
/// `events` and the ledger; docs/architecture.md "Ticks"), and the rest
/// opened when a query names them.
#[derive(Debug, Clone)]
pub struct WorkspaceTables {
    store: Store,
    workspace: String,
    /// Tables opened already (`None`: never written).
    open: HashMap<TableKind, Option<DeltaTable>>,
}

/// The workspace tables a session offers, by name (the ledger is read
/// through its views).
const TABLES: [(&str, TableKind); 4] = [
    ("events", TableKind::Events),
    ("quarantine", TableKind::Quarantine),
    ("erasures", TableKind::Erasures),
    ("attempts", TableKind::Attempts),
];

impl WorkspaceTables {
    /// The workspace's tables, none opened yet.
    pub fn new(store: &Store, workspace: &str) -> WorkspaceTables {
        WorkspaceTables {
            store: store.clone(),
            workspace: workspace.to_string(),
            open: HashMap::new(),
        }
    }

    /// Uses `table` (already opened) as the workspace's `kind` table.
    pub fn opened(&mut self, kind: TableKind, table: Option<DeltaTable>) {
        self.open.insert(kind, table);
    }

    /// `kind`'s table if it was opened already (`None` inside: never written).
    pub fn opened_table(&self, kind: TableKind) -> Option<&DeltaTable> {
        self.open.get(&kind).and_then(Option::as_ref)
    }

    /// `kind`'s table, made when a query first names it: the one opened
    /// already, else the latest version, opened then.
    fn table(&self, kind: TableKind) -> Table {
        let opened = self.open.get(&kind).cloned();
        let (store, workspace) = (self.store.clone(), self.workspace.clone());
        Table::Later(Box::new(move |planner| {
            let (opened, store, workspace) = (opened.clone(), store.clone(), workspace.clone());
            async move {
                let table = match opened {
                    Some(table) => table,
                    None => store.open(&workspace, kind).await.map_err(external)?,
                };
                delta_provider(&planner, table, kind)
                    .await
                    .map_err(external)
            }
            .boxed()
        }))
    }
}

/// A session over `tables` as of `now`; `identities` is the identity
/// index's table when `index` answers for `now`, else the view over `events`.
/// With `[engine] ballista`, its queries run on the cluster (`sql::cluster`).
pub async fn tables_session(
    tables: &WorkspaceTables,
    now: DateTime<Utc>,
    identity_ttl: Duration,
    index: Option<Arc<IdentityIndex>>,
) -> Result<SessionContext, QueryError> {
    let ctx = analyst_context()?;
    let schema = LazySchema::install(&ctx).map_err(engine)?;
    for (name, kind) in TABLES {
        schema.add(name, tables.table(kind));
    }
    ledger::defer_views(&schema, tables.table(TableKind::Ledger));
    crate::identity::defer_views(&schema, now, identity_ttl, index);
    Ok(ctx)
}
