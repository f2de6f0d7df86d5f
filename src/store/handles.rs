//! Table handles a long-lived process keeps open between its ticks
//! (docs/architecture.md "Ticks"): opening a table reads its last
//! checkpoint and every commit after it; a kept handle reads only the
//! commits since it was last brought up to date.
//!
//! A handle that cannot be brought up to date (its commits were cleaned up
//! by another writer, the table was replaced) is dropped and the table is
//! opened afresh, so a kept handle never answers differently from a fresh
//! open; it is only cheaper.

use std::collections::HashMap;
use std::sync::Mutex;

use deltalake_core::DeltaTable;
use url::Url;

/// The tables opened so far, by table URL.
#[derive(Debug, Default)]
pub struct OpenTables {
    tables: Mutex<HashMap<Url, DeltaTable>>,
}

impl OpenTables {
    /// The kept handle of `url` brought up to the table's latest commit;
    /// `None` when there is none or it could not be brought up to date.
    pub async fn latest(&self, url: &Url) -> Option<DeltaTable> {
        let mut table = self.held(url)?;
        let before = table.version();
        match table.update_state().await {
            Ok(()) if table.version() >= before => {
                self.keep(url, &table);
                Some(table)
            }
            Ok(()) => self.forget(url),
            Err(e) => {
                tracing::debug!(table = %url, "reopening a kept table: {e}");
                self.forget(url)
            }
        }
    }

    /// Keeps `table` (opened or committed to) for the next [`Self::latest`].
    pub fn keep(&self, url: &Url, table: &DeltaTable) {
        if table.version().is_some() {
            self.lock().insert(url.clone(), table.clone());
        }
    }

    fn held(&self, url: &Url) -> Option<DeltaTable> {
        self.lock().get(url).cloned()
    }

    fn forget(&self, url: &Url) -> Option<DeltaTable> {
        self.lock().remove(url);
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Url, DeltaTable>> {
        // A panic while holding the map leaves it consistent (one insert or remove).
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
