//! `tripwire resume TRIGGER [--skip]`: a paused trigger runs again. The
//! resume is a ledger row of kind `resume`, which ends the trigger's
//! failures in a row; with `--skip` the same commit moves the cursor to the
//! events table's current version, so the window that kept failing is
//! skipped, and records that range (`from_version`, `to_version`).

use deltalake_core::DeltaTable;

use crate::store::commit::{Append, Plan, Writer, commit, txn};
use crate::store::ledger::{RunRecord, cursor_app_id, resume_batch};
use crate::store::{Store, StoreError, TableKind, table};

/// What a resume did: the skipped range, when it skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    pub skipped: Option<(i64, i64)>,
}

/// Resumes `trigger`, skipping its pending window when `skip`.
pub async fn resume(
    store: &Store,
    workspace: &str,
    trigger: &str,
    skip: bool,
    at_micros: i64,
) -> Result<Resumed, StoreError> {
    let mut ledger = store.open_or_create(workspace, TableKind::Ledger).await?;
    let cursor = table::app_progress(&ledger, &cursor_app_id(trigger))
        .await?
        .unwrap_or(-1);
    let watermark = store
        .open(workspace, TableKind::Events)
        .await?
        .and_then(|t| t.version())
        .map_or(-1, |v| v as i64);
    let skipped = (skip && watermark > cursor).then_some((cursor, watermark));
    let record = RunRecord {
        run_id: format!("resume-{trigger}-{at_micros}"),
        trigger: trigger.to_string(),
        from_version: skipped.map_or(cursor, |(from, _)| from),
        to_version: skipped.map_or(cursor, |(_, to)| to),
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
    let mut writer = Resumption {
        record,
        moves_cursor: skipped.is_some(),
    };
    commit(&mut ledger, &mut writer).await?;
    Ok(Resumed { skipped })
}

struct Resumption {
    record: RunRecord,
    moves_cursor: bool,
}

impl Writer for Resumption {
    type Error = StoreError;

    async fn plan(&mut self, _: &DeltaTable) -> Result<Plan, StoreError> {
        let app_id = cursor_app_id(&self.record.trigger);
        let txns = match self.moves_cursor {
            true => vec![txn(&app_id, self.record.to_version)],
            false => Vec::new(),
        };
        Ok(Plan::Append(Append {
            batches: vec![resume_batch(&self.record)],
            txns,
        }))
    }
}
