//! The storage root: per-workspace Delta tables on object_store
//! (docs/architecture.md "Storage").
//!
//! ```text
//! <root>/<workspace>/events/       the events (docs/reference.md "Tables")
//! <root>/<workspace>/quarantine/   rejected input with its reason
//! <root>/<workspace>/ledger/       trigger runs, matches and planned deliveries (the fire ledger)
//! <root>/<workspace>/attempts/     every delivery attempt (append-only)
//! <root>/<workspace>/erasures/     what each `tripwire erase` erased (counts)
//! ```
//! - `table`: open, create, evolve and refresh one table; `handles`: tables kept open.
//! - `commit`: the one commit path every writer appends through.
//! - `files`: a table's live files with their stamps; `follow`: the files
//!   a table's commits after a version added, from its log entries.
//! - `rewrite`: replacing files without changing data; `stamp`: rows without a stamp get one.
//! - `seq`: the `seq` values of appended rows; `layout`: the row order of an events file.
//! - `ledger`, `quarantine`: those tables' rows; `state`: small JSON objects.
//! - `objects`: the object stores behind `file://` and `s3://` URLs; `probe`:
//!   whether the storage honours create-only writes.

pub mod commit;
pub mod erasures;
pub mod files;
pub mod follow;
pub mod handles;
pub mod journal;
pub mod layout;
pub mod ledger;
pub mod local_log;
pub mod log_reads;
pub mod objects;
pub mod probe;
pub mod quarantine;
pub mod replan;
pub mod rewrite;
pub mod seq;
pub mod stamp;
pub mod state;
pub mod table;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use deltalake_core::DeltaTable;
use url::Url;

use crate::event::events_schema;

/// A failure of the storage layer: whose fault is the storage's, not the user's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("table {table}: {message}")]
    Delta { table: String, message: String },
    #[error("storage root {root}: {message}")]
    Root { root: String, message: String },
}

impl StoreError {
    pub fn delta(table: &Url, e: impl std::fmt::Display) -> StoreError {
        StoreError::Delta {
            table: table.to_string(),
            message: e.to_string(),
        }
    }
}

/// Commits between checkpoints: the log a reader replays stays short.
pub const CHECKPOINT_INTERVAL: &str = "10";

/// How long an ingest segment's, an import chunk's or an emit's application
/// transaction is remembered after it was written; re-import idempotency
/// beyond it comes from `import`'s own record of finished files.
pub const TRANSACTION_RETENTION: &str = "interval 30 days";

/// How long a table's log keeps a commit after a checkpoint covers it, and
/// a checkpoint keeps a removed file's tombstone. Opening a table lists its
/// log folder and reads every tombstone of its checkpoint, and `serve`
/// commits every few seconds (a WAL flush, a tick) and compacts what it
/// committed: with Delta's defaults (30 days of log, 7 of tombstones) a
/// store that lived a month under steady ingest held ~10^6 log files and
/// ~10^5 tombstones, and every open paid for them. Nothing in tripwire
/// reads an old version (windows select rows by their stamp in the latest
/// snapshot), so a day is kept for other tools' time travel. Files whose
/// tombstone expired are still deleted by VACUUM, which lists the table's
/// files (`maintain`).
pub const HISTORY_RETENTION: &str = "interval 1 days";

/// The tables a workspace keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    Events,
    Quarantine,
    Ledger,
    Attempts,
    Erasures,
}

impl TableKind {
    pub fn folder(self) -> &'static str {
        match self {
            TableKind::Events => "events",
            TableKind::Quarantine => "quarantine",
            TableKind::Ledger => "ledger",
            TableKind::Attempts => "attempts",
            TableKind::Erasures => "erasures",
        }
    }

    /// The Delta table properties a new table of this kind gets
    /// (docs/architecture.md "Table maintenance").
    pub fn properties(self) -> Vec<(&'static str, &'static str)> {
        let mut properties = vec![
            // No change data: a deleted row must not live on in it.
            ("delta.enableChangeDataFeed", "false"),
            ("delta.checkpointInterval", CHECKPOINT_INTERVAL),
            // Checkpoints carry each file's statistics as JSON only: given
            // a parsed copy as well, the kernel turns it back into JSON for
            // every checkpoint row on every open (deltalake then parses the
            // JSON either way), which cost more than it saved
            // (docs/architecture.md "Table maintenance").
            ("delta.checkpoint.writeStatsAsStruct", "false"),
            ("delta.logRetentionDuration", HISTORY_RETENTION),
            ("delta.deletedFileRetentionDuration", HISTORY_RETENTION),
        ];
        match self {
            TableKind::Events => properties.extend([
                (stamp::STAMPED_PROPERTY, "true"),
                (
                    "delta.setTransactionRetentionDuration",
                    TRANSACTION_RETENTION,
                ),
            ]),
            TableKind::Quarantine => properties.push((
                "delta.setTransactionRetentionDuration",
                TRANSACTION_RETENTION,
            )),
            // The ledger's transactions are the triggers' cursors: kept for good.
            TableKind::Ledger | TableKind::Attempts | TableKind::Erasures => {}
        }
        properties
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            TableKind::Events => events_schema(),
            TableKind::Quarantine => quarantine::quarantine_schema(),
            TableKind::Ledger => ledger::ledger_schema(),
            TableKind::Attempts => ledger::attempts::attempts_schema(),
            TableKind::Erasures => erasures::erasures_schema(),
        }
    }
}

/// Where everything durable lives.
#[derive(Debug, Clone)]
pub struct Store {
    root: Url,
    /// Set in long-lived processes: tables stay open between opens.
    kept: Option<Arc<handles::OpenTables>>,
}

impl Store {
    pub fn new(root: Url) -> Store {
        let mut root = root;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Store { root, kept: None }
    }

    /// This store, keeping the tables it opens open: a later open reads
    /// only the commits since (`serve`'s ticks).
    pub fn keeping_tables_open(self) -> Store {
        Store {
            kept: Some(Arc::default()),
            ..self
        }
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The URL of one workspace table.
    pub fn table_url(&self, workspace: &str, kind: TableKind) -> Result<Url, StoreError> {
        self.root
            .join(&format!("{workspace}/{}/", kind.folder()))
            .map_err(|e| StoreError::Root {
                root: self.root.to_string(),
                message: e.to_string(),
            })
    }

    /// Opens a workspace table, creating it on first use.
    pub async fn open_or_create(
        &self,
        workspace: &str,
        kind: TableKind,
    ) -> Result<DeltaTable, StoreError> {
        let url = self.table_url(workspace, kind)?;
        if let Some(table) = self.kept_table(&url).await {
            return Ok(table);
        }
        let table = table::open(&url).await?;
        let table = migrate_old_layout(kind, table).await?;
        let table = table::open_or_create(&url, &kind.schema(), &kind.properties(), table).await?;
        self.keep(&url, &table);
        Ok(table)
    }

    /// Opens a workspace table if it exists.
    pub async fn open(
        &self,
        workspace: &str,
        kind: TableKind,
    ) -> Result<Option<DeltaTable>, StoreError> {
        let url = self.table_url(workspace, kind)?;
        if let Some(table) = self.kept_table(&url).await {
            return Ok(Some(table));
        }
        let table = table::open(&url).await?;
        if table.version().is_none() {
            return Ok(None);
        }
        let table = migrate_old_layout(kind, table).await?;
        let table = table::add_missing_columns(table, &kind.schema()).await?;
        self.keep(&url, &table);
        Ok(Some(table))
    }

    async fn kept_table(&self, url: &Url) -> Option<DeltaTable> {
        self.kept.as_ref()?.latest(url).await
    }

    fn keep(&self, url: &Url, table: &DeltaTable) {
        if let Some(kept) = &self.kept {
            kept.keep(url, table);
        }
    }
}

/// A ledger written before the `kind` layout is rewritten once.
async fn migrate_old_layout(kind: TableKind, table: DeltaTable) -> Result<DeltaTable, StoreError> {
    match kind == TableKind::Ledger && ledger::migrate::is_old(&table) {
        true => ledger::migrate::migrate(table).await,
        false => Ok(table),
    }
}
