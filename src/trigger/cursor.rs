//! A trigger's cursor, as an operator sets it (`tripwire cursor TRIGGER
//! --set VERSION|latest`): a ledger commit of kind `cursor` carrying the
//! trigger's application transaction at the new version. The latest
//! transaction wins, so a cursor can move back (to re-run windows) as well
//! as forward (to skip them). A run that is in flight meanwhile commits its
//! own window after it, and wins.

use deltalake_core::DeltaTable;

use crate::store::commit::{Append, Committed, Plan, Writer, commit, txn};
use crate::store::ledger::{RunRecord, cursor_app_id, cursor_batch};
use crate::store::{Store, StoreError, TableKind, table};

/// Where to put a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorTarget {
    /// The events table's current version: only later events are new.
    Latest,
    /// A table version: events stamped after it are new.
    Version(i64),
}

impl std::str::FromStr for CursorTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<CursorTarget, String> {
        match text {
            "latest" => Ok(CursorTarget::Latest),
            number => number
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= -1)
                .map(CursorTarget::Version)
                .ok_or_else(|| format!("{text:?} is not a table version (-1 or more) or `latest`")),
        }
    }
}

/// The trigger's cursor (`None`: it has not run yet).
pub async fn cursor(
    store: &Store,
    workspace: &str,
    trigger: &str,
) -> Result<Option<i64>, StoreError> {
    match store.open(workspace, TableKind::Ledger).await? {
        Some(ledger) => table::app_progress(&ledger, &cursor_app_id(trigger)).await,
        None => Ok(None),
    }
}

/// Moves `trigger`'s cursor to `target`; returns (before, after).
pub async fn set_cursor(
    store: &Store,
    workspace: &str,
    trigger: &str,
    target: CursorTarget,
    at_micros: i64,
) -> Result<(Option<i64>, i64), StoreError> {
    let version = match target {
        CursorTarget::Version(v) => v,
        CursorTarget::Latest => store
            .open(workspace, TableKind::Events)
            .await?
            .and_then(|t| t.version())
            .map_or(-1, |v| v as i64),
    };
    let mut ledger = store.open_or_create(workspace, TableKind::Ledger).await?;
    let before = table::app_progress(&ledger, &cursor_app_id(trigger)).await?;
    let record = RunRecord {
        run_id: format!("cursor-{trigger}-{at_micros}"),
        trigger: trigger.to_string(),
        from_version: before.unwrap_or(-1),
        to_version: version,
        started_at: at_micros,
        finished_at: at_micros,
        clock: at_micros,
        matched: 0,
        resolved: 0,
        unresolved: 0,
        dropped: 0,
        pending: 0,
        expired: 0,
        held: 0,
        error: None,
    };
    let mut writer = CursorMove { record };
    match commit(&mut ledger, &mut writer).await? {
        Committed::Version(_) | Committed::Nothing => Ok((before, version)),
    }
}

struct CursorMove {
    record: RunRecord,
}

impl Writer for CursorMove {
    type Error = StoreError;

    async fn plan(&mut self, _: &DeltaTable) -> Result<Plan, StoreError> {
        let app_id = cursor_app_id(&self.record.trigger);
        Ok(Plan::Append(Append {
            batches: vec![cursor_batch(&self.record)],
            txns: vec![txn(&app_id, self.record.to_version)],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_version_or_latest() {
        assert_eq!("latest".parse(), Ok(CursorTarget::Latest));
        assert_eq!("12".parse(), Ok(CursorTarget::Version(12)));
        assert_eq!("-1".parse(), Ok(CursorTarget::Version(-1)));
        assert!("-2".parse::<CursorTarget>().is_err());
        assert!("soon".parse::<CursorTarget>().is_err());
    }
}
