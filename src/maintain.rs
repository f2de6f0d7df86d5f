//! Table maintenance (docs/architecture.md "Table maintenance"), run by
//! `serve` on a schedule and by `tripwire optimize [--vacuum]`: for each
//! table of a workspace, the properties tripwire relies on, compaction of
//! small files, a checkpoint, and (when asked) VACUUM; for the events,
//! first the stamping of unstamped rows and the optional age-based
//! retention.
//!
//! Compaction of the events keeps windows cheap: files are merged in stamp
//! order and never across a trigger's cursor, so every window still reads
//! whole files and skips the rest by their stamp stats. Every rewrite
//! changes no data (`dataChange = false`): no row is new again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::{col, lit};
use deltalake_core::DeltaTable;
use deltalake_core::operations::vacuum::VacuumMode;
use tokio::sync::watch;

use crate::config::Config;
use crate::store::files::{LiveFile, live_files};
use crate::store::layout::in_runs;
use crate::store::replan::delete_rows;
use crate::store::rewrite::{Race, arrow_schema, read_files, replace, write_files_in_groups};
use crate::store::stamp::stamp_unstamped;
use crate::store::table::ROW_GROUP_ROWS;
use crate::store::{Store, StoreError, TableKind};
use crate::trigger::cursor::cursor;
use crate::trigger::load_triggers;

/// A compacted file's size goal; files half as big or more are left alone.
pub const TARGET_FILE_BYTES: i64 = 64 << 20;

/// How often `serve` vacuums (maintenance itself runs every
/// `maintenance_interval`).
pub const VACUUM_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// What one maintenance pass does.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Delete the files older versions needed, past `vacuum_retention`.
    pub vacuum: bool,
    pub vacuum_retention: Duration,
    /// Delete events sent longer than this ago.
    pub retention: Option<Duration>,
    pub now: DateTime<Utc>,
}

impl Settings {
    pub fn for_config(config: &Config, vacuum: bool, now: DateTime<Utc>) -> Settings {
        Settings {
            vacuum,
            vacuum_retention: config.vacuum_retention,
            retention: config.retention,
            now,
        }
    }
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    pub files_before: usize,
    pub files_after: usize,
    /// Events deleted by `retention`.
    pub expired_rows: usize,
    /// Files VACUUM deleted from storage.
    pub vacuumed: usize,
    /// Log files past the table's log retention deleted.
    pub logs_removed: usize,
}

impl std::fmt::Display for TableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} → {} files",
            self.table, self.files_before, self.files_after
        )?;
        if self.expired_rows > 0 {
            write!(f, ", {} events past retention deleted", self.expired_rows)?;
        }
        if self.vacuumed > 0 {
            write!(f, ", {} unreferenced files vacuumed", self.vacuumed)?;
        }
        if self.logs_removed > 0 {
            write!(f, ", {} old log files removed", self.logs_removed)?;
        }
        Ok(())
    }
}

/// Maintains every table of `workspace`.
pub async fn maintain(
    config: &Config,
    store: &Store,
    workspace: &str,
    settings: &Settings,
) -> Result<Vec<TableReport>, StoreError> {
    let mut reports = Vec::new();
    for kind in [
        TableKind::Events,
        TableKind::Quarantine,
        TableKind::Ledger,
        TableKind::Attempts,
        TableKind::Erasures,
    ] {
        let Some(mut table) = store.open(workspace, kind).await? else {
            continue;
        };
        let mut report = TableReport {
            table: kind.folder(),
            files_before: live_files(&table)?.len(),
            ..TableReport::default()
        };
        ensure_properties(&mut table, kind).await?;
        if kind == TableKind::Events {
            stamp_unstamped(&mut table).await?;
            if let Some(retention) = settings.retention {
                report.expired_rows = expire(&mut table, settings.now, retention).await?;
            }
            let cursors = cursors(config, store, workspace).await?;
            compact_events(&mut table, &cursors).await?;
        } else {
            compact_plain(&mut table).await?;
        }
        crate::store::table::checkpoint(&table).await?;
        report.logs_removed = remove_old_log(&table).await;
        if settings.vacuum {
            report.vacuumed = vacuum(&mut table, settings.vacuum_retention).await?;
        }
        report.files_after = live_files(&table)?.len();
        reports.push(report);
    }
    Ok(reports)
}

/// Sets the table properties a table of `kind` is created with, on tables
/// created before tripwire set them. Another writer's metadata commit in
/// between (another replica's maintenance setting the same ones) is read
/// and the properties checked again, up to [`PROPERTY_TRIES`] times.
async fn ensure_properties(table: &mut DeltaTable, kind: TableKind) -> Result<(), StoreError> {
    let url = table.table_url().clone();
    let mut tries = 0;
    loop {
        let missing = missing_properties(table, kind)?;
        if missing.is_empty() {
            return Ok(());
        }
        tries += 1;
        let set = table
            .clone()
            .set_tbl_properties()
            .with_properties(missing)
            .with_raise_if_not_exists(false)
            .await;
        match set {
            Ok(updated) => {
                *table = updated;
                return Ok(());
            }
            Err(e) if tries >= PROPERTY_TRIES => return Err(StoreError::delta(&url, e)),
            Err(e) => {
                tracing::debug!("setting table properties raced another writer: {e}");
                crate::store::table::refresh(table).await?;
            }
        }
    }
}

/// Tries at setting a table's properties when other writers' commits come
/// in between.
const PROPERTY_TRIES: u32 = 3;

/// The properties a table of `kind` lacks or holds another value of.
fn missing_properties(
    table: &DeltaTable,
    kind: TableKind,
) -> Result<HashMap<String, String>, StoreError> {
    let current = table
        .snapshot()
        .map_err(|e| StoreError::delta(table.table_url(), e))?
        .metadata()
        .configuration()
        .clone();
    Ok(kind
        .properties()
        .into_iter()
        // Stamping marks its own tables once every row is stamped.
        .filter(|(key, _)| *key != crate::store::stamp::STAMPED_PROPERTY)
        .filter(|(key, value)| current.get(*key).is_none_or(|v| v != value))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect())
}

/// The cursors of the workspace's triggers (active or not: a paused
/// trigger resumes from its cursor).
async fn cursors(config: &Config, store: &Store, workspace: &str) -> Result<Vec<i64>, StoreError> {
    let (triggers, _) = load_triggers(&config.project_dir);
    let mut cursors = Vec::new();
    for trigger in triggers {
        let runs_in = config
            .pick_workspace(trigger.workspace.as_deref())
            .map(|w| w.id.as_str())
            .unwrap_or_default();
        if runs_in == workspace
            && let Some(at) = cursor(store, workspace, &trigger.name).await?
        {
            cursors.push(at);
        }
    }
    Ok(cursors)
}

/// Groups of small events files to merge into one each: stamped files
/// sorted by their lowest stamp, a group never spanning a cursor (so a
/// window reads a merged file whole or not at all) and closed once it
/// reaches `target` bytes. Files that straddle a cursor, big files and
/// groups of one are left alone.
pub fn compaction_groups(files: &[LiveFile], cursors: &[i64], target: i64) -> Vec<Vec<LiveFile>> {
    let mut cursors = cursors.to_vec();
    cursors.sort_unstable();
    // Which gap between cursors a file's stamps lie in; None: it spans one.
    let gap = |low: i64, high: i64| {
        let below = cursors.partition_point(|c| *c < low);
        let straddles = cursors.get(below).is_some_and(|c| *c < high);
        (!straddles).then_some(below)
    };
    let mut candidates: Vec<(usize, &LiveFile)> = files
        .iter()
        .filter(|f| f.nulls == Some(0) && f.size < target / 2)
        .filter_map(|f| {
            let (low, high) = f.stamps?;
            gap(low, high).map(|g| (g, f))
        })
        .collect();
    candidates.sort_by_key(|(gap, f)| (*gap, f.stamps, f.path.clone()));
    let mut groups: Vec<Vec<LiveFile>> = Vec::new();
    let mut current: Vec<LiveFile> = Vec::new();
    let mut current_gap = None;
    let mut bytes = 0;
    for (gap, file) in candidates {
        if current_gap != Some(gap) || bytes >= target {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
            current_gap = Some(gap);
        }
        bytes += file.size;
        current.push(file.clone());
    }
    groups.push(current);
    groups.retain(|g| g.len() > 1);
    groups
}

/// Runs per compacted file: one per core that reads it (`layout::in_runs`).
fn compaction_runs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Merges the events' small files (see [`compaction_groups`]), each
/// group's rows in runs in the events' file order (`store::layout`).
async fn compact_events(table: &mut DeltaTable, cursors: &[i64]) -> Result<(), StoreError> {
    let groups = compaction_groups(&live_files(table)?, cursors, TARGET_FILE_BYTES);
    let schema = arrow_schema(table)?;
    for group in groups {
        let url = table.table_url().clone();
        let batches = read_files(table, &group, &schema).await?;
        let (merged, row_group_rows) = in_runs(&batches, compaction_runs(), ROW_GROUP_ROWS)
            .map_err(|e| StoreError::delta(&url, e))?;
        let new = write_files_in_groups(table, merged, row_group_rows).await?;
        // Another writer (a replica's maintenance) may have merged some
        // first: then this group is left to it.
        replace(table, &group, new, Vec::new(), Race::Retry).await?;
    }
    Ok(())
}

/// Merges the small files of a table with no stamps to keep apart (the
/// quarantine, the ledger, the attempts; see [`plain_groups`]). Delta's own
/// optimize did this until two replicas' maintenance ran at once: its
/// commits retry through Delta's conflict checker, which lets two merges
/// of the same files both land (every row twice; see `rewrite::replace`).
async fn compact_plain(table: &mut DeltaTable) -> Result<(), StoreError> {
    let groups = plain_groups(&live_files(table)?, TARGET_FILE_BYTES);
    let schema = arrow_schema(table)?;
    for group in groups {
        let batches = read_files(table, &group, &schema).await?;
        let new = write_files_in_groups(table, batches, ROW_GROUP_ROWS).await?;
        replace(table, &group, new, Vec::new(), Race::Retry).await?;
    }
    Ok(())
}

/// Groups of a table's small files (under half of `target` bytes) to merge
/// into one each, in path order, each closed once it reaches `target`
/// bytes; groups of one are left alone.
pub fn plain_groups(files: &[LiveFile], target: i64) -> Vec<Vec<LiveFile>> {
    let mut small: Vec<&LiveFile> = files.iter().filter(|f| f.size < target / 2).collect();
    small.sort_by(|a, b| a.path.cmp(&b.path));
    let mut groups: Vec<Vec<LiveFile>> = vec![Vec::new()];
    let mut bytes = 0;
    for file in small {
        if bytes >= target {
            groups.push(Vec::new());
            bytes = 0;
        }
        bytes += file.size;
        groups
            .last_mut()
            .expect("one group at least")
            .push(file.clone());
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// Deletes events sent more than `retention` before `now` (a Delta delete:
/// the survivors keep their stamps, nothing fires again), again on the
/// table as it is now when another replica's compaction came first.
async fn expire(
    table: &mut DeltaTable,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<usize, StoreError> {
    let span = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let Some(cutoff) = now.checked_sub_signed(span) else {
        return Ok(0);
    };
    let cutoff = lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
        Some(cutoff.timestamp_micros()),
        Some(Arc::from("UTC")),
    ));
    let deleted = delete_rows(table, col("sent_at").lt(cutoff)).await?;
    Ok(deleted as usize)
}

/// Deletes the log files a checkpoint covers that are older than the
/// table's `delta.logRetentionDuration` (`store::HISTORY_RETENTION`). A
/// failure is reported and left for the next pass: another replica
/// deleting the same files first is a lost race, not a fault.
async fn remove_old_log(table: &DeltaTable) -> usize {
    match deltalake_core::checkpoints::cleanup_metadata(table, None).await {
        Ok(removed) => removed,
        Err(e) => {
            tracing::warn!(table = %table.table_url(), "old log files not removed: {e}");
            0
        }
    }
}

/// Deletes files no version within `retention` needs; a run reading an
/// older snapshot meanwhile finishes long before (the retention is at
/// least an hour, see `config`).
async fn vacuum(table: &mut DeltaTable, retention: Duration) -> Result<usize, StoreError> {
    let url = table.table_url().clone();
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (vacuumed, metrics) = table
        .clone()
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        // Listing the table's files, not only its tombstones: a removed
        // file's tombstone leaves the checkpoints after a day
        // (`store::HISTORY_RETENTION`), its file must still go.
        .with_mode(VacuumMode::Full)
        .await
        .map_err(|e| StoreError::delta(&url, e))?;
    *table = vacuumed;
    Ok(metrics.files_deleted.len())
}

/// `serve`'s maintenance: every `maintenance_interval`, each workspace,
/// with VACUUM once every [`VACUUM_EVERY`]; until `shutdown` turns true.
pub async fn run_maintenance_loop(config: Arc<Config>, mut shutdown: watch::Receiver<bool>) {
    let store = Store::new(config.storage.clone());
    let mut ticker = tokio::time::interval(config.maintenance_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_vacuum: Option<tokio::time::Instant> = None;
    while !*shutdown.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => continue,
        }
        let vacuum = last_vacuum.is_none_or(|at| at.elapsed() >= VACUUM_EVERY);
        let settings = Settings::for_config(&config, vacuum, Utc::now());
        for workspace in &config.workspaces {
            match maintain(&config, &store, &workspace.id, &settings).await {
                Ok(reports) => {
                    for report in reports.iter().filter(|r| r.files_before != r.files_after) {
                        tracing::info!(workspace = %workspace.id, "maintenance: {report}");
                    }
                }
                Err(e) => tracing::warn!(workspace = %workspace.id, "maintenance (retried): {e}"),
            }
        }
        if vacuum {
            last_vacuum = Some(tokio::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows `ids`, each sent on day `id` of 2026.
    fn sent_on_days(ids: std::ops::Range<i64>) -> arrow::array::RecordBatch {
        use arrow::array::{Int64Array, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let day = |id: i64| {
            let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            let date = start + chrono::Days::new(id as u64);
            date.and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("sent_at", utc, false),
        ]));
        let sent = TimestampMicrosecondArray::from_iter_values(ids.clone().map(day));
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(sent.with_timezone("UTC")),
        ];
        arrow::array::RecordBatch::try_new(schema, columns).unwrap()
    }

    #[tokio::test]
    async fn retention_that_meets_another_replicas_compaction_deletes_on_the_table_as_it_is_now() {
        use crate::store::rewrite::tests::{every_row, read_before_a_merge};
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;

        let dir = tempfile::tempdir().unwrap();
        let mut expiring = read_before_a_merge(dir.path(), sent_on_days).await;
        // Kept 15 days on 2026-01-31, from 2026-01-16 (day 15): days 0 to 14 go.
        let now = "2026-01-31T00:00:00Z".parse().unwrap();
        let deleted = expire(&mut expiring, now, Duration::from_secs(15 * 86_400)).await;
        assert_eq!(deleted.unwrap(), 15);
        let left = every_row(&expiring).await;
        let mut ids: Vec<i64> = left
            .iter()
            .flat_map(|b| {
                b.column_by_name("id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (15..30).collect::<Vec<_>>(), "each later row once");
    }

    fn file(name: &str, low: i64, high: i64, size: i64) -> LiveFile {
        LiveFile {
            path: name.into(),
            stamps: Some((low, high)),
            nulls: Some(0),
            size,
            rows: 1,
        }
    }

    fn names(groups: &[Vec<LiveFile>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(|f| f.path.as_str()).collect())
            .collect()
    }

    #[test]
    fn plain_small_files_merge_in_path_order_up_to_the_target() {
        let mut files = vec![
            file("d", 0, 0, 40),
            file("a", 0, 0, 40),
            file("big", 0, 0, 60),
            file("c", 0, 0, 40),
            file("b", 0, 0, 40),
            file("e", 0, 0, 10),
        ];
        files[0].stamps = None;
        assert_eq!(
            names(&plain_groups(&files, 100)),
            [vec!["a", "b", "c"], vec!["d", "e"]],
            "files of half the target or more stay; a group closes at the target"
        );
        assert!(plain_groups(&files[..2], 100).len() == 1);
        assert!(
            plain_groups(&files[2..3], 100).is_empty(),
            "nothing to merge"
        );
    }

    #[test]
    fn small_files_merge_in_stamp_order_and_never_across_a_cursor() {
        let files = [
            file("c", 3, 3, 10),
            file("a", 1, 1, 10),
            file("b", 2, 2, 10),
            file("d", 4, 4, 10),
            file("e", 5, 5, 10),
        ];
        // Cursors at 2 and 4: windows start after 2 or after 4.
        assert_eq!(
            names(&compaction_groups(&files, &[4, 2], 1_000)),
            [["a", "b"], ["c", "d"]]
        );
        // No cursor: one group.
        assert_eq!(
            names(&compaction_groups(&files, &[], 1_000)),
            [["a", "b", "c", "d", "e"]]
        );
    }

    #[test]
    fn big_files_straddling_files_and_unstamped_files_stay_as_they_are() {
        let mut unstamped = file("u", 1, 1, 10);
        unstamped.nulls = Some(3);
        let files = [
            file("a", 1, 1, 10),
            file("big", 1, 1, 600),
            file("wide", 1, 3, 10),
            unstamped,
            file("b", 1, 2, 10),
        ];
        assert_eq!(names(&compaction_groups(&files, &[2], 1_000)), [["a", "b"]]);
    }

    #[test]
    fn a_group_closes_once_it_reaches_the_target() {
        let files: Vec<LiveFile> = (0..5).map(|i| file(&format!("f{i}"), i, i, 40)).collect();
        assert_eq!(
            names(&compaction_groups(&files, &[], 100)),
            [vec!["f0", "f1", "f2"], vec!["f3", "f4"]]
        );
    }
}
