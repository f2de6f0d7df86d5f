//! What the runs of one tick share (docs/architecture.md "Ticks"): a
//! workspace's tables opened and stamped once, its identity index and the
//! `identities` table it answers, every trigger's cursor, health and
//! waiting rows read in one pass over the ledger (the waiting rows kept by
//! the identity cache between ticks), and each window's rows
//! read once however many triggers read that window.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use tokio::sync::OnceCell;

use super::{RunError, RunRequest};
use crate::event::batch::events_schema;
use crate::identity::index::IdentityIndex;
use crate::identity::waiting::OpenRows;
use crate::session::{WorkspaceTables, tables_session};
use crate::sql::{QueryError, json_memo, new_context, replace_table};
use crate::store::files::live_files;
use crate::store::ledger::{PendingRecord, cursor_app_id};
use crate::store::stamp::stamp_unstamped;
use crate::store::{Store, StoreError, TableKind, table};
use crate::trigger::TriggerFile;
use crate::trigger::health::{Streak, current_streaks};
use crate::window::{Window, new_events, window_for};

/// A window read by more than one trigger of a tick is decoded into memory
/// once when its files hold at most this many rows (about 0.5 GB of Arrow
/// for typical events); a larger one is read by each trigger from its
/// files, as a single trigger's window always is.
pub const MAX_SHARED_WINDOW_ROWS: i64 = 1_000_000;

/// A window and its `backfill` lower bound on `sent_at` (µs).
type WindowKey = (i64, i64, Option<i64>);

/// The state the runs of one tick of one workspace read.
pub struct Tick {
    tables: WorkspaceTables,
    /// The ledger at the tick's start (created if new); the tick's commit
    /// moves it.
    pub ledger: DeltaTable,
    pub index: Option<Arc<IdentityIndex>>,
    watermark: i64,
    cursors: HashMap<String, Option<i64>>,
    streaks: HashMap<String, Streak>,
    waiting: HashMap<String, OpenRows>,
    /// Windows decoded once for several triggers.
    shared: HashMap<WindowKey, Arc<dyn TableProvider>>,
    /// The session the runs share (see [`Tick::session`]).
    session: OnceCell<SessionContext>,
}

impl Tick {
    /// Opens `request.workspace`'s tables (stamping unstamped events) and
    /// reads what `triggers` need from the ledger.
    pub async fn open(
        request: &RunRequest<'_>,
        triggers: &[TriggerFile],
    ) -> Result<Tick, RunError> {
        let (store, workspace) = (request.store, request.workspace);
        // The two tables every run reads, opened together; the others are
        // opened when a query names them (`session::WorkspaceTables`).
        let (events, ledger) = tokio::try_join!(
            stamped_events(store, workspace),
            store.open_or_create(workspace, TableKind::Ledger),
        )?;
        let failed = |e: &dyn std::fmt::Display| StoreError::delta(ledger.table_url(), e);
        let names: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
        let has_history = ledger.version().is_some();
        // The identity index (from the events) and the ledger's reads.
        let (index, cursors, streaks, waiting) = tokio::try_join!(
            async {
                match events.as_ref() {
                    Some(table) => Ok(Some(request.identities.at(store, workspace, table).await?)),
                    None => Ok::<_, RunError>(None),
                }
            },
            async { Ok::<_, RunError>(cursors(&ledger, triggers).await?) },
            async {
                match request.commit && has_history {
                    true => current_streaks(&ledger, &names, request.max_failures)
                        .await
                        .map_err(|e| RunError::from(failed(&e))),
                    false => Ok(HashMap::new()),
                }
            },
            async {
                match !request.whole_history && has_history {
                    true => request
                        .identities
                        .waiting(&ledger, &names)
                        .await
                        .map_err(|e| RunError::from(failed(&e))),
                    false => Ok(HashMap::new()),
                }
            },
        )?;
        let watermark = events.as_ref().map_or(-1, table::version);
        let mut tables = WorkspaceTables::new(store, workspace);
        tables.opened(TableKind::Events, events);
        tables.opened(TableKind::Ledger, Some(ledger.clone()));
        let mut tick = Tick {
            tables,
            ledger,
            index,
            watermark,
            cursors,
            streaks,
            waiting,
            shared: HashMap::new(),
            session: OnceCell::new(),
        };
        tick.decode_shared_windows(request, triggers).await?;
        Ok(tick)
    }

    /// The events table at the tick's watermark (none: never written).
    pub fn events(&self) -> Option<&DeltaTable> {
        self.tables.opened_table(TableKind::Events)
    }

    /// The trigger's committed cursor (none: it never ran).
    pub fn cursor(&self, trigger: &str) -> Option<i64> {
        self.cursors.get(trigger).copied().flatten()
    }

    /// The trigger's failures in a row.
    pub fn streak(&self, trigger: &str) -> Streak {
        self.streaks.get(trigger).cloned().unwrap_or_default()
    }

    /// The trigger's rows waiting for an identity.
    pub fn waiting(&self, trigger: &str) -> &[Arc<PendingRecord>] {
        self.waiting.get(trigger).map_or(&[], |rows| rows)
    }

    /// The window `request.trigger` reads, and its `backfill` bound.
    pub fn window_of(&self, request: &RunRequest<'_>) -> (Window, Option<DateTime<Utc>>) {
        let trigger = request.trigger;
        match request.whole_history {
            true => (
                Window {
                    from: -1,
                    to: self.watermark,
                },
                None,
            ),
            false => window_for(
                self.cursor(&trigger.name),
                self.watermark,
                trigger.backfill,
                request.now,
            ),
        }
    }

    /// A session over the tick's tables with `new_events` as the window.
    /// The tick's runs take turns in one session, built once (its tables,
    /// views and functions planned once, not per trigger): each run
    /// registers its own window over the last one's.
    pub async fn session(
        &self,
        request: &RunRequest<'_>,
        window: Window,
        sent_after: Option<DateTime<Utc>>,
    ) -> Result<SessionContext, String> {
        let ctx = self
            .session
            .get_or_try_init(|| {
                let index = self.index.clone();
                async move {
                    let ctx =
                        tables_session(&self.tables, request.now, request.identity_ttl, index)
                            .await?;
                    json_memo::install(&ctx);
                    Ok::<_, QueryError>(ctx)
                }
            })
            .await
            .map_err(|e| e.to_string())?
            .clone();
        let key = window_key(window, sent_after);
        let rows = match self.shared.get(&key) {
            Some(decoded) => decoded.clone(),
            None => new_events(self.events(), window, sent_after).map_err(|e| e.to_string())?,
        };
        replace_table(&ctx, "new_events", rows).map_err(|e| e.to_string())?;
        Ok(ctx)
    }

    /// Decodes each window that several triggers read, within
    /// [`MAX_SHARED_WINDOW_ROWS`].
    async fn decode_shared_windows(
        &mut self,
        request: &RunRequest<'_>,
        triggers: &[TriggerFile],
    ) -> Result<(), RunError> {
        let Some(events) = self.tables.opened_table(TableKind::Events) else {
            return Ok(());
        };
        let mut readers: HashMap<WindowKey, (Window, Option<DateTime<Utc>>, usize)> =
            HashMap::new();
        for trigger in triggers {
            let one = RunRequest {
                trigger,
                ..*request
            };
            let (window, sent_after) = self.window_of(&one);
            if !window.is_empty() {
                readers
                    .entry(window_key(window, sent_after))
                    .or_insert((window, sent_after, 0))
                    .2 += 1;
            }
        }
        // A window read once is read from its files; on a cluster a window
        // travels as its file list, never decoded here.
        readers.retain(|_, (_, _, count)| *count >= 2);
        if readers.is_empty() || crate::sql::cluster::scheduler().is_some() {
            return Ok(());
        }
        let files = live_files(events)?;
        let failed = |e: &dyn std::fmt::Display| StoreError::delta(events.table_url(), e);
        for (key, (window, sent_after, _)) in readers {
            let rows: i64 = files
                .iter()
                .filter(|f| f.may_hold(window.from, window.to))
                .map(|f| f.rows)
                .sum();
            if rows > MAX_SHARED_WINDOW_ROWS {
                continue;
            }
            let decoded = decode(events, window, sent_after)
                .await
                .map_err(|e| failed(&e))?;
            self.shared.insert(key, decoded);
        }
        Ok(())
    }
}

/// The workspace's events table (none: never written), with its
/// unstamped commits stamped.
async fn stamped_events(store: &Store, workspace: &str) -> Result<Option<DeltaTable>, StoreError> {
    let mut events = store.open(workspace, TableKind::Events).await?;
    if let Some(table) = events.as_mut() {
        stamp_unstamped(table).await?;
    }
    Ok(events)
}

/// Each trigger's committed cursor. Each lookup replays the ledger's log
/// for one application id on a blocking thread, so a few run at once.
async fn cursors(
    ledger: &DeltaTable,
    triggers: &[TriggerFile],
) -> Result<HashMap<String, Option<i64>>, StoreError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let lookups: Vec<_> = triggers.iter().map(|t| cursor(ledger, &t.name)).collect();
    futures::stream::iter(lookups)
        .buffer_unordered(CURSOR_LOOKUPS)
        .try_collect()
        .await
}

/// One trigger's committed cursor, with its name.
async fn cursor(ledger: &DeltaTable, trigger: &str) -> Result<(String, Option<i64>), StoreError> {
    let cursor = table::app_progress(ledger, &cursor_app_id(trigger)).await?;
    Ok((trigger.to_string(), cursor))
}

/// Cursor lookups in flight at once.
const CURSOR_LOOKUPS: usize = 8;

fn window_key(window: Window, sent_after: Option<DateTime<Utc>>) -> WindowKey {
    (
        window.from,
        window.to,
        sent_after.map(|t| t.timestamp_micros()),
    )
}

/// The window's rows, read from their files once, as an in-memory table
/// split in as many partitions as the machine has cores.
async fn decode(
    events: &DeltaTable,
    window: Window,
    sent_after: Option<DateTime<Utc>>,
) -> Result<Arc<dyn TableProvider>, Box<dyn std::error::Error + Send + Sync>> {
    let rows = new_events(Some(events), window, sent_after)?;
    let batches = new_context()?.read_table(rows)?.collect().await?;
    let parts = std::thread::available_parallelism().map_or(1, usize::from);
    let mut partitions = vec![Vec::new(); parts];
    for (i, batch) in batches.into_iter().enumerate() {
        partitions[i % parts].push(batch);
    }
    Ok(Arc::new(MemTable::try_new(events_schema(), partitions)?))
}
