//! Table handles a long-lived process keeps open between its ticks
//! (docs/architecture.md "Ticks"): opening a table reads its last
//! checkpoint and every commit after it; a kept handle reads only the
//! commits since it was last brought up to date.
//!
//! A handle that cannot be brought up to date (its commits were cleaned up
//! by another writer, the table was replaced) is dropped and the table is
//! opened afresh, so a kept handle never answers differently from a fresh
//! open; it is only cheaper. Whether there is anything new is asked first
//! with two lookups (its own commit, the next), not a listing of the log.

use std::collections::HashMap;
use std::sync::Mutex;

use deltalake_core::DeltaTable;
use deltalake_core::logstore::commit_uri_from_version;
use object_store::ObjectStoreExt as _;
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
        match probe(&table).await {
            Probe::Current => return Some(table),
            Probe::Gone => return self.forget(url),
            Probe::Moved => {}
        }
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

/// Where a kept handle stands, told by two lookups in its table's log.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Its own commit is there and the next one is not: nothing new.
    Current,
    /// Its own commit is gone: the table was replaced, or its log cleaned
    /// up past the handle; it cannot be brought up to date.
    Gone,
    /// There is a newer commit (or the lookups failed): bring it up to date.
    Moved,
}

/// Where `table` stands. Bringing a handle up to date lists the whole log
/// folder on a local disk, which a table that has lived keeps thousands of
/// commits in until log retention removes them, and most ticks find
/// nothing new: two lookups answer that.
async fn probe(table: &DeltaTable) -> Probe {
    let Some(version) = table.version() else {
        return Probe::Moved;
    };
    let objects = table.log_store().object_store(None);
    let exists = |version: u64| {
        let objects = objects.clone();
        async move {
            let path = commit_uri_from_version(Some(version));
            match objects.head(&path).await {
                Ok(_) => Some(true),
                Err(object_store::Error::NotFound { .. }) => Some(false),
                Err(_) => None,
            }
        }
    };
    match (exists(version).await, exists(version + 1).await) {
        (Some(false), _) => Probe::Gone,
        (Some(true), Some(false)) => Probe::Current,
        _ => Probe::Moved,
    }
}
