//! Windows on a store that has lived: a new trigger starts at the current
//! version unless it backfills; a cursor an operator moves; and windows that
//! hold after log cleanup and checkpoints, and after another Delta writer
//! (the python `deltalake` package, which `.ci/run` installs) deleted,
//! compacted or appended rows. Every count is exact.

use std::process::Command;

use tripwire::store::{Store, TableKind};
use url::Url;

use crate::project::Project;

/// Every event keyed by its id, from history.
const EVERY_EVENT: &str = "-- backfill: all\n-- requires_identity: false\n\
     SELECT event_id, email, user_id, client_id FROM new_events\n";

fn with_trigger(project: &Project, name: &str, sql: &str) {
    let dir = project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.sql")), sql).unwrap();
}

/// Runs a python script over the events table; its stdout.
fn python(project: &Project, script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(project.events_table("shop"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed (CI installs `deltalake`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Matches of `trigger`'s runs so far.
fn matched(project: &Project, trigger: &str) -> u64 {
    project.number(&format!(
        "SELECT count(*) FROM matches WHERE trigger = '{trigger}'"
    )) as u64
}

/// Imports `events` sample events (seeded); returns how many were stored.
fn import_sample(project: &Project, name: &str, events: u64, seed: u64) -> u64 {
    let (file, totals) = project.sample(name, events, seed);
    project.import(&[&file]);
    totals.events
}

#[test]
fn a_new_trigger_fires_for_what_arrives_after_it_unless_it_backfills() {
    let project = Project::new();
    let history = import_sample(&project, "old.ndjson", 400, 3);
    let plain =
        "-- requires_identity: false\nSELECT event_id, email, user_id, client_id FROM new_events\n";
    with_trigger(&project, "from_now", plain);
    with_trigger(&project, "everything", EVERY_EVENT);
    with_trigger(&project, "last_hour", &format!("-- backfill: 1h\n{plain}"));
    // The sample's events are a minute apart from 2026-11-01T00:00Z.
    let now = "2026-11-01T05:00:00Z";
    let first = project.ok(&["run", "--now", now]);
    assert!(first.contains("from_now: starts at version 1"), "{first}");
    assert_eq!(matched(&project, "from_now"), 0);
    assert_eq!(matched(&project, "everything"), history);
    let recent = project.number(&format!(
        "SELECT count(*) FROM events WHERE sent_at > TIMESTAMP '{now}' - INTERVAL '1' HOUR"
    )) as u64;
    assert!(recent > 0 && recent < history, "{recent} of {history}");
    assert_eq!(matched(&project, "last_hour"), recent);
    // From here on all three see exactly what arrives.
    let later = import_sample(&project, "new.ndjson", 150, 4);
    project.ok(&["run", "--now", now]);
    assert_eq!(matched(&project, "from_now"), later);
    assert_eq!(matched(&project, "everything"), history + later);
    assert_eq!(matched(&project, "last_hour"), recent + later);
}

#[test]
fn an_operator_moves_a_cursor_back_to_rerun_or_to_latest_to_skip() {
    let project = Project::new();
    let first = import_sample(&project, "a.ndjson", 200, 5);
    with_trigger(&project, "everything", EVERY_EVENT);
    project.ok(&["run"]);
    assert_eq!(matched(&project, "everything"), first);
    let shown = project.ok(&["cursor", "everything"]);
    assert!(shown.contains("cursor 1"), "{shown}");
    // Back to the start: the next run reads everything again.
    let moved = project.ok(&["cursor", "everything", "--set", "-1"]);
    assert!(moved.contains("moved from 1 to -1"), "{moved}");
    project.ok(&["run"]);
    assert_eq!(matched(&project, "everything"), 2 * first);
    // To latest: what arrived meanwhile is skipped.
    import_sample(&project, "b.ndjson", 100, 6);
    project.ok(&["cursor", "everything", "--set", "latest"]);
    let quiet = project.ok(&["run"]);
    assert!(quiet.contains("no new events"), "{quiet}");
    assert_eq!(matched(&project, "everything"), 2 * first);
    let refused = project.run(&["cursor", "everything", "--set", "soon"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("latest"));
}

/// Delta log cleanup deletes commit files older than the retention once a
/// checkpoint covers them: here, every commit a trigger's old cursor
/// points into.
const CLEAN_UP_THE_LOG: &str = r#"
import os, sys
from deltalake import DeltaTable
path = sys.argv[1]
DeltaTable(path).alter.set_table_properties(
    {"delta.logRetentionDuration": "interval 0 seconds"}, raise_if_not_exists=False)
table = DeltaTable(path)
table.create_checkpoint()
table.cleanup_metadata()
commits = [n for n in os.listdir(os.path.join(path, "_delta_log")) if n.endswith(".json")]
print(len(commits))
"#;

#[test]
fn a_window_survives_log_cleanup_and_checkpoints() {
    let project = Project::new();
    let first = import_sample(&project, "a.ndjson", 300, 7);
    with_trigger(&project, "everything", EVERY_EVENT);
    project.ok(&["run"]);
    let mut later = 0;
    for (i, seed) in [8, 9, 10].into_iter().enumerate() {
        later += import_sample(&project, &format!("b{i}.ndjson"), 50, seed);
    }
    let left = python(&project, CLEAN_UP_THE_LOG);
    assert_eq!(
        left.trim(),
        "1",
        "only the commit the checkpoint is at is left"
    );
    let run = project.ok(&["run"]);
    assert!(run.contains(&format!("{later} rows")), "{run}");
    assert_eq!(matched(&project, "everything"), first + later);
    let preview = project.ok(&["preview", "everything", "--all", "--format", "json"]);
    assert_eq!(preview.lines().count() as u64, first + later);
    // A trigger added after the cleanup backfills from the current files.
    with_trigger(&project, "late_comer", EVERY_EVENT);
    project.ok(&["run", "late_comer"]);
    assert_eq!(matched(&project, "late_comer"), first + later);
}

/// Another writer deletes rows, compacts files, and appends rows without
/// tripwire's stamp.
const DELETE: &str = r#"
import sys
from deltalake import DeltaTable
DeltaTable(sys.argv[1]).delete("event_name = 'page_view'")
"#;
const OPTIMIZE: &str = r#"
import sys
from deltalake import DeltaTable
DeltaTable(sys.argv[1]).optimize.compact()
"#;
const APPEND_UNSTAMPED: &str = r#"
import sys
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
table = DeltaTable(sys.argv[1])
rows = table.to_pyarrow_table().slice(0, 7)
ids = pa.array([f"foreign-{i}" for i in range(rows.num_rows)])
rows = rows.set_column(rows.schema.get_field_index("event_id"), "event_id", ids)
stamp = rows.schema.get_field_index("commit_version")
rows = rows.set_column(stamp, "commit_version", pa.nulls(rows.num_rows, pa.int64()))
write_deltalake(sys.argv[1], rows, mode="append")
"#;

#[test]
fn another_writers_delete_and_compaction_refire_nothing_and_its_appends_fire_once() {
    let project = Project::new();
    let first = import_sample(&project, "a.ndjson", 400, 11);
    with_trigger(&project, "everything", EVERY_EVENT);
    project.ok(&["run"]);
    assert_eq!(matched(&project, "everything"), first);
    // Between two runs another writer deletes rows (rewriting every file
    // that held one) and compacts: the survivors are not new.
    python(&project, DELETE);
    python(&project, OPTIMIZE);
    let survivors = project.number("SELECT count(*) FROM events") as u64;
    assert!(survivors < first, "the delete removed page views");
    let later = import_sample(&project, "b.ndjson", 100, 12);
    let run = project.ok(&["run"]);
    assert!(run.contains(&format!("{later} rows")), "{run}");
    assert_eq!(matched(&project, "everything"), first + later);
    // Rows it appends without a stamp are stamped when tripwire next runs,
    // and fire once.
    python(&project, APPEND_UNSTAMPED);
    let run = project.ok(&["run"]);
    assert!(run.contains(": 7 rows"), "{run}");
    let quiet = project.ok(&["run"]);
    assert!(!quiet.contains(": 7 rows"), "{quiet}");
    assert_eq!(matched(&project, "everything"), first + later + 7);
    let unstamped = project.number("SELECT count(*) FROM events WHERE commit_version IS NULL");
    assert_eq!(unstamped, 0.0);
}

/// The identity index a run saves (`state/identity/`) must not outlive the
/// identify calls it folded: after another writer deletes them, the next
/// run (a fresh process, starting from the saved index) no longer resolves
/// the client, and an identify sent afterwards resolves it again.
#[test]
fn identities_another_writer_deletes_are_forgotten_by_the_saved_index() {
    let project = Project::new();
    let write = |name: &str, lines: &[&str]| {
        let file = project.path(name);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        project.import(&[&file]);
    };
    let cart = |at: &str| {
        format!(
            r#"{{"type":"track","event":"cart","anonymousId":"c1","messageId":"cart-{at}","timestamp":"2026-11-01T{at}:00:00Z"}}"#
        )
    };
    let identify = |email: &str, at: &str| {
        format!(
            r#"{{"type":"identify","anonymousId":"c1","traits":{{"email":"{email}"}},"messageId":"id-{email}","timestamp":"2026-11-01T{at}:00:00Z"}}"#
        )
    };
    with_trigger(
        &project,
        "carts",
        "-- backfill: all\n-- wait_for_identity: 0\nSELECT client_id FROM new_events WHERE event_name = 'cart'\n",
    );
    let now = "2026-11-02T00:00:00Z";
    write("a.ndjson", &[&identify("one@x.com", "00"), &cart("01")]);
    let out = project.ok(&["run", "--now", now]);
    assert!(out.contains("1 rows, 1 resolved"), "{out}");
    let saved = std::fs::read_dir(project.path("store/shop/state/identity"))
        .map(|dir| dir.count())
        .unwrap_or(0);
    assert!(saved > 0, "the run saved its identity index");

    python(&project, DELETE_IDENTIFIES);
    write("b.ndjson", &[&cart("02")]);
    let out = project.ok(&["run", "--now", now]);
    assert!(
        out.contains("1 rows, 0 resolved, 1 unresolved (1 dropped)"),
        "{out}"
    );

    write("c.ndjson", &[&identify("two@x.com", "03"), &cart("04")]);
    project.ok(&["run", "--now", now]);
    let emails = project.query("SELECT email FROM matches ORDER BY email");
    assert_eq!(
        emails,
        vec![
            serde_json::json!({"email": "one@x.com"}),
            serde_json::json!({"email": "two@x.com"})
        ]
    );
}

const DELETE_IDENTIFIES: &str = r#"
import sys
from deltalake import DeltaTable
DeltaTable(sys.argv[1]).delete("type = 'identify'")
"#;

/// The version and live files of the events table as `store` opens it.
fn seen(store: &Store, runtime: &tokio::runtime::Runtime) -> (Option<u64>, Vec<String>) {
    runtime.block_on(async {
        let table = store
            .open("shop", TableKind::Events)
            .await
            .expect("open")
            .expect("an events table");
        let mut files: Vec<String> = table
            .get_file_uris()
            .expect("files")
            .map(|uri| uri.to_string())
            .collect();
        files.sort();
        (table.version(), files)
    })
}

#[test]
fn a_kept_table_handle_reads_what_a_fresh_open_reads_through_other_writers_and_cleanup() {
    let project = Project::new();
    import_sample(&project, "a.ndjson", 200, 31);
    let root = Url::from_directory_path(project.path("store")).unwrap();
    let kept = Store::new(root.clone()).keeping_tables_open();
    let fresh = || Store::new(root.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(seen(&kept, &runtime), seen(&fresh(), &runtime));
    // Appends, another writer's delete and compaction, then log cleanup
    // past the kept handle's version: each open agrees with a fresh one.
    import_sample(&project, "b.ndjson", 60, 32);
    assert_eq!(seen(&kept, &runtime), seen(&fresh(), &runtime));
    python(&project, DELETE);
    python(&project, OPTIMIZE);
    assert_eq!(seen(&kept, &runtime), seen(&fresh(), &runtime));
    for (i, seed) in [33, 34, 35].into_iter().enumerate() {
        import_sample(&project, &format!("c{i}.ndjson"), 40, seed);
    }
    python(&project, CLEAN_UP_THE_LOG);
    assert_eq!(seen(&kept, &runtime), seen(&fresh(), &runtime));
    // Nothing new: the kept handle answers from its two log lookups.
    assert_eq!(seen(&kept, &runtime), seen(&fresh(), &runtime));
    // The table replaced by one with fewer commits: its own commit is gone.
    let (before, _) = seen(&kept, &runtime);
    std::fs::remove_dir_all(project.events_table("shop")).unwrap();
    import_sample(&project, "d.ndjson", 30, 36);
    let (after, files) = seen(&fresh(), &runtime);
    assert!(after < before, "{after:?} < {before:?}");
    assert_eq!(seen(&kept, &runtime), (after, files));
}
