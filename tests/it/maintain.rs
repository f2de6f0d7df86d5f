//! Table maintenance on real stores: `tripwire optimize` merges small files
//! without any row firing again, checkpoints, honours `retention`, and
//! `serve` keeps a table's file count bounded while events stream in.

use std::process::Stdio;
use std::time::Instant;

use crate::project::{Project, SECRET};
use crate::server::{PATIENCE, Request, Server};

const EVERY_EVENT: &str = "-- backfill: all\n-- requires_identity: false\n\
     SELECT event_id, email, user_id, client_id FROM new_events\n";

fn with_trigger(project: &Project, name: &str, sql: &str) {
    let dir = project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.sql")), sql).unwrap();
}

/// What python `script` prints about the Delta table at `table` (its
/// `sys.argv[1]`), failing with the script's error.
fn python_on_table(script: &str, table: &std::path::Path) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(table)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Live files of a workspace table, as the python `deltalake` package
/// reads the log (so the count is independent of tripwire).
fn live_files(project: &Project, table: &str) -> usize {
    let script = "import sys\nfrom deltalake import DeltaTable\nprint(len(DeltaTable(sys.argv[1]).file_uris()))";
    let table = project.path("store").join("shop").join(table);
    python_on_table(script, &table).trim().parse().unwrap()
}

/// Imports `files` small sample files, one commit (and file) each.
fn import_small_files(project: &Project, prefix: &str, files: u64, seed: u64) -> u64 {
    let mut events = 0;
    for i in 0..files {
        let (file, totals) = project.sample(&format!("{prefix}{i}.ndjson"), 20, seed + i);
        project.import(&[&file]);
        events += totals.events;
    }
    events
}

/// Polls `done` until it holds, failing after [`PATIENCE`].
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn matched(project: &Project) -> u64 {
    project.number("SELECT count(*) FROM matches") as u64
}

#[test]
fn optimize_merges_small_files_and_nothing_fires_again() {
    let project = Project::new();
    with_trigger(&project, "everything", EVERY_EVENT);
    let before = import_small_files(&project, "a", 12, 100);
    project.ok(&["run"]);
    let after = import_small_files(&project, "b", 5, 200);
    assert_eq!(live_files(&project, "events"), 17);
    let report = project.ok(&["optimize"]);
    assert!(report.contains("events: 17 → 2 files"), "{report}");
    // The 12 files the trigger read merged apart from the 5 it has not.
    assert_eq!(live_files(&project, "events"), 2);
    let log = std::fs::read_dir(project.events_table("shop").join("_delta_log")).unwrap();
    assert!(
        log.flatten().any(|e| e
            .file_name()
            .to_string_lossy()
            .ends_with(".checkpoint.parquet")),
        "optimize checkpoints"
    );
    let run = project.ok(&["run"]);
    assert!(run.contains(&format!(": {after} rows")), "{run}");
    assert_eq!(matched(&project), before + after);
    let quiet = project.ok(&["run"]);
    assert!(
        quiet.contains(": 0 rows") || quiet.contains("no new events"),
        "{quiet}"
    );
    assert_eq!(matched(&project), before + after);
    // The ledger's small files merge too; --vacuum keeps what is younger
    // than vacuum_retention.
    let vacuumed = project.ok(&["optimize", "--vacuum"]);
    assert!(vacuumed.contains("ledger: "), "{vacuumed}");
    assert_eq!(live_files(&project, "ledger"), 1);
    assert_eq!(
        project.number("SELECT count(*) FROM events") as u64,
        before + after
    );
}

/// Checks with pyarrow that each live events file holds each event name's
/// rows together (identify calls, with no name, first), each name's rows
/// by stamp then `seq`; prints how many files and distinct names it saw.
const GROUPED_BY_NAME: &str = r#"
import sys
import pyarrow.parquet as pq
from deltalake import DeltaTable
names = set()
files = DeltaTable(sys.argv[1]).file_uris()
groups, fewest = 0, None
for uri in files:
    f = pq.ParquetFile(uri.removeprefix("file://"))
    for g in range(f.num_row_groups):
        t = f.read_row_group(g, columns=["event_name", "commit_version", "seq"])
        rows = list(zip(*(t.column(c).to_pylist() for c in ["event_name", "commit_version", "seq"])))
        key = [(n is not None, n or "", v, s) for n, v, s in rows]
        if key != sorted(key):
            sys.exit(f"{uri} row group {g}: rows not grouped by name, stamp, seq: {rows[:20]}")
        here = {n for n, _, _ in rows}
        names.update(here)
        fewest = len(here) if fewest is None else min(fewest, len(here))
    groups = max(groups, f.num_row_groups)
print(len(files), len(names), groups, fewest)
"#;

/// The workspace's live events files: (files, distinct event names, the
/// most row groups in a file, the fewest names in a row group), failing
/// unless every row group is in the events' file order.
fn names_grouped_per_file(project: &Project) -> (usize, usize, usize, usize) {
    let text = python_on_table(GROUPED_BY_NAME, &project.events_table("shop"));
    let counts: Vec<usize> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (counts[0], counts[1], counts[2], counts[3])
}

#[test]
fn events_files_hold_each_names_rows_together_after_import_and_compaction() {
    let project = Project::new();
    import_small_files(&project, "a", 3, 400);
    // Imported in arrival order, written grouped: names (and identify
    // calls) interleave in the sample, not in the files.
    let (files, names, groups, _) = names_grouped_per_file(&project);
    assert_eq!((files, groups), (3, 1));
    assert!(names > 3, "the sample mixes names: {names}");
    let before = project.number("SELECT count(*) FROM events");
    let report = project.ok(&["optimize"]);
    assert!(report.contains("events: 3 → 1 files"), "{report}");
    // One run per core, each its own row group holding a share of every
    // name: a query reads a name's rows on every core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
    let (files, after, groups, fewest) = names_grouped_per_file(&project);
    assert_eq!((files, after, groups), (1, names, cores));
    assert!(fewest > 3, "each run holds many names: {fewest}");
    assert_eq!(project.number("SELECT count(*) FROM events"), before);
}

#[test]
fn retention_deletes_old_events_and_fires_nothing() {
    let project = Project::with_config(&format!(
        "storage = \"./store\"\nretention = \"3d\"\n[[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n"
    ));
    with_trigger(&project, "everything", EVERY_EVENT);
    // The sample is from 2026-11-01; two events are from now.
    let old = import_small_files(&project, "old", 2, 300);
    let now = chrono::Utc::now().to_rfc3339();
    let fresh = project.path("fresh.ndjson");
    std::fs::write(
        &fresh,
        format!(
            "{{\"name\": \"x\", \"payload\": {{}}, \"email\": \"a@example.com\", \"timestamp\": \"{now}\"}}\n\
             {{\"name\": \"x\", \"payload\": {{}}, \"email\": \"b@example.com\", \"timestamp\": \"{now}\"}}\n"
        ),
    )
    .unwrap();
    project.import(&[&fresh]);
    project.ok(&["run"]);
    assert_eq!(matched(&project), old + 2);
    let report = project.ok(&["optimize"]);
    assert!(
        report.contains(&format!("{old} events past retention deleted")),
        "{report}"
    );
    assert_eq!(project.number("SELECT count(*) FROM events"), 2.0);
    let quiet = project.ok(&["run"]);
    assert!(
        quiet.contains(": 0 rows") || quiet.contains("no new events"),
        "{quiet}"
    );
    assert_eq!(matched(&project), old + 2);
}

#[test]
fn serve_keeps_the_file_count_bounded_while_events_stream_in() {
    let project = Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\nmaintenance_interval = \"10s\"\n\
         [[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n[ingest]\nflush_age = \"100ms\"\n"
    ));
    with_trigger(
        &project,
        "everything",
        &format!("-- schedule: every 1s\n{EVERY_EVENT}"),
    );
    let server = Server::start(&project);
    // Enough separate flushes to make many small files.
    let mut sent = 0;
    for i in 0..40 {
        let body = format!(
            "{{\"batch\": [{{\"type\": \"track\", \"event\": \"e\", \"userId\": \"u{i}\", \"messageId\": \"m{i}\"}}]}}"
        );
        let (status, _) = server.send(Request::post("/v1/batch", body).bearer(SECRET));
        assert_eq!(status, 200);
        sent += 1;
        eventually("the batch is in the table", || {
            project.number("SELECT count(*) FROM events") as u64 == sent
        });
    }
    // Each batch was its own flush: a commit adding a file.
    let commits = std::fs::read_dir(project.events_table("shop").join("_delta_log"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert!(commits > 40, "{commits} commits after {sent} flushes");
    eventually("maintenance compacts", || {
        live_files(&project, "events") <= 4
    });
    eventually("every event fired once", || matched(&project) == sent);
    server.stop();
    assert_eq!(matched(&project), sent);
}

/// Sets `path`'s modification time `age` in the past.
fn age_file(path: &std::path::Path, age: std::time::Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What [`lived`] made of a table.
struct Lived {
    /// Its commits so far, now two days old.
    old_commits: Vec<std::path::PathBuf>,
    /// One of its data files.
    first_data: std::path::PathBuf,
    /// A copy of it that nothing tracks (another tool's leftover), eight
    /// days old.
    orphan: std::path::PathBuf,
}

/// Ages `table` as a store that has lived: its commits so far two days
/// old, and a file another tool left that nothing tracks eight days old.
fn lived(table: &std::path::Path) -> Lived {
    let old_commits: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    for path in &old_commits {
        age_file(path, 2 * DAY);
    }
    let first_data = std::fs::read_dir(table)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    let orphan = table.join("part-00000-left-over-by-another-tool.zstd.parquet");
    std::fs::copy(&first_data, &orphan).unwrap();
    age_file(&orphan, 8 * DAY);
    Lived {
        old_commits,
        first_data,
        orphan,
    }
}

/// Asserts that maintenance (which printed `report`) removed most of
/// `old_commits`: those a checkpoint covers.
fn most_are_gone(old_commits: &[std::path::PathBuf], report: &str) {
    let remaining = old_commits.iter().filter(|p| p.exists()).count();
    assert!(
        remaining < old_commits.len() / 2,
        "{remaining} of {} left after maintenance: {report}",
        old_commits.len()
    );
}

#[test]
fn a_lived_store_keeps_a_day_of_log_and_vacuums_files_it_no_longer_tracks() {
    let project = Project::new();
    with_trigger(&project, "everything", EVERY_EVENT);
    let events = import_small_files(&project, "a", 12, 300);
    project.ok(&["run"]);
    let table = project.events_table("shop");
    // Everything so far was written two days ago; a file nothing tracks
    // (another tool's leftover) eight days ago.
    let Lived {
        old_commits,
        first_data,
        orphan,
    } = lived(&table);

    let report = project.ok(&["optimize", "--vacuum"]);
    // The old commits a checkpoint covers are gone; the table reads whole,
    // by tripwire and by another Delta reader, and nothing fires again.
    most_are_gone(&old_commits, &report);
    assert_eq!(project.number("SELECT count(*) FROM events") as u64, events);
    assert_eq!(live_files(&project, "events"), 1);
    let quiet = project.ok(&["run"]);
    assert!(
        quiet.contains(": 0 rows") || quiet.contains("no new events"),
        "{quiet}"
    );
    assert_eq!(matched(&project), events);
    // The untracked old file is vacuumed; the small files compaction just
    // replaced stay while their tombstones are recent.
    assert!(
        !orphan.exists(),
        "an untracked file past vacuum_retention is deleted"
    );
    assert!(first_data.exists(), "a file removed just now is kept");
    let script = "import sys\nfrom deltalake import DeltaTable\nc = DeltaTable(sys.argv[1]).metadata().configuration\n\
        print(c['delta.logRetentionDuration'], '|', c['delta.deletedFileRetentionDuration'])";
    let retention = python_on_table(script, &table);
    assert_eq!(retention.trim(), "interval 1 days | interval 1 days");
}

#[test]
fn commits_leave_old_log_files_to_maintenance() {
    // Delta's own cleanup after each commit lists and stats the whole log
    // folder (a day of commits on a lived store): tripwire's commits skip it.
    let project = Project::new();
    let mut events = import_small_files(&project, "a", 12, 300);
    let table = project.events_table("shop");
    let Lived { old_commits, .. } = lived(&table);
    events += import_small_files(&project, "b", 12, 400);
    let kept = old_commits.iter().filter(|p| p.exists()).count();
    assert_eq!(kept, old_commits.len(), "a commit removed old log files");
    assert_eq!(project.number("SELECT count(*) FROM events") as u64, events);

    let report = project.ok(&["optimize"]);
    most_are_gone(&old_commits, &report);
    assert_eq!(project.number("SELECT count(*) FROM events") as u64, events);
}

/// The `add` fields of the table's latest checkpoint, as pyarrow reads it.
fn checkpoint_add_fields(table: &std::path::Path) -> String {
    let script = "import sys, glob\nimport pyarrow.parquet as pq\n\
        last = sorted(glob.glob(sys.argv[1] + '/_delta_log/*.checkpoint.parquet'))[-1]\n\
        print(' '.join(f.name for f in pq.read_schema(last).field('add').type))";
    python_on_table(script, table)
}

#[test]
fn checkpoints_carry_json_statistics_only_and_optimize_brings_older_tables_up_to_date() {
    let project = Project::new();
    with_trigger(&project, "everything", EVERY_EVENT);
    let events = import_small_files(&project, "a", 3, 500);
    let table = project.events_table("shop");
    // A table from the stops that wrote parsed statistics too.
    let script = "import sys\nfrom deltalake import DeltaTable\n\
        t = DeltaTable(sys.argv[1])\n\
        t.alter.set_table_properties({'delta.checkpoint.writeStatsAsStruct': 'true'}, raise_if_not_exists=False)\n\
        DeltaTable(sys.argv[1]).create_checkpoint()";
    python_on_table(script, &table);
    assert!(checkpoint_add_fields(&table).contains("stats_parsed"));
    // Still read from that checkpoint.
    assert_eq!(project.number("SELECT count(*) FROM events") as u64, events);

    project.ok(&["optimize"]);
    let fields = checkpoint_add_fields(&table);
    assert!(
        !fields.contains("stats_parsed") && fields.contains("stats "),
        "{fields}"
    );
    // Read by tripwire and by another Delta reader from that checkpoint.
    assert_eq!(project.number("SELECT count(*) FROM events") as u64, events);
    assert_eq!(live_files(&project, "events"), 1);
    project.ok(&["run"]);
    assert_eq!(matched(&project), events);
}

/// Every step of maintenance races: properties, stamping, merges, the
/// checkpoint, log cleanup and VACUUM.
#[test]
fn two_optimizes_at_once_lose_nothing_and_the_next_one_finishes_the_job() {
    let project = Project::new();
    with_trigger(&project, "everything", EVERY_EVENT);
    let mut events = 0;
    for round in 0..4 {
        // Each run commits the ledger: its small files race too.
        events += import_small_files(&project, &format!("r{round}-"), 2, 300 + 10 * round);
        project.ok(&["run"]);
    }
    let table = project.events_table("shop");
    let ledger_rows = || {
        project.number("SELECT (SELECT count(*) FROM matches) + (SELECT count(*) FROM runs)") as u64
    };
    let before = ledger_rows();
    assert_eq!(matched(&project), events);
    assert!(live_files(&project, "ledger") >= 4);
    // A table from before, so that both also turn parsed statistics off.
    let script = "import sys\nfrom deltalake import DeltaTable\n\
        t = DeltaTable(sys.argv[1])\n\
        t.alter.set_table_properties({'delta.checkpoint.writeStatsAsStruct': 'true'}, raise_if_not_exists=False)\n\
        DeltaTable(sys.argv[1]).create_checkpoint()";
    python_on_table(script, &table);
    // Old enough for both to clean up.
    let orphan = lived(&table).orphan;

    // Two replicas' maintenance racing on the same tables: each finishes,
    // or fails saying why; neither loses or doubles an event.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let mut command = project.command(&["optimize", "--vacuum"]);
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let outcomes: Vec<_> = racers
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    for out in &outcomes {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("error"),
            "neither finished nor said why: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(
        outcomes.iter().any(|out| out.status.success()),
        "one of them finishes"
    );
    assert_eq!(project.number("SELECT count(*) FROM events") as u64, events);
    assert_eq!(ledger_rows(), before, "the ledger's rows once each");
    let counted = python_on_table(
        "import sys\nfrom deltalake import DeltaTable\nprint(DeltaTable(sys.argv[1]).to_pyarrow_dataset().count_rows())",
        &table,
    );
    assert_eq!(counted.trim(), events.to_string(), "another reader agrees");

    project.ok(&["optimize", "--vacuum"]);
    assert!(!orphan.exists(), "vacuumed");
    assert_eq!(live_files(&project, "events"), 1);
    assert!(!checkpoint_add_fields(&table).contains("stats_parsed"));
    assert_eq!(ledger_rows(), before);
    project.ok(&["run"]);
    assert_eq!(matched(&project), events, "each event fires once");
}
