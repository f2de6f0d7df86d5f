//! Importing the same file twice, or again after the import was killed
//! half-way, neither loses nor duplicates events.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::project::Project;

#[test]
fn importing_twice_stores_once() {
    let project = Project::new();
    let (file, totals) = project.sample("events.ndjson", 2_000, 4);
    project.import(&[&file]);
    let again = project.import(&[&file]);
    assert!(
        again.contains("imported 0 events") && again.contains("2000 already imported"),
        "{again}"
    );
    project.assert_holds(&totals);
}

#[test]
fn a_killed_import_resumes_exactly() {
    let project = Project::new();
    // Large enough for several chunks, so the kill lands between commits.
    let (file, totals) = project.sample("big.ndjson", 250_000, 5);
    let mut child = project
        .command(&["import", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first_commit = project
        .events_table("shop")
        .join("_delta_log")
        .join("00000000000000000001.json");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !first_commit.exists() {
        assert!(Instant::now() < deadline, "no commit within 5 minutes");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = project.number("SELECT count(*) FROM events") as u64;
    assert!(
        partial > 0 && partial < totals.events,
        "killed mid-way: {partial} of {}",
        totals.events
    );
    let resumed = project.import(&[&file]);
    assert!(
        resumed.contains(&format!("{partial} already imported")),
        "{resumed}"
    );
    project.assert_holds(&totals);
    assert_eq!(
        project.number("SELECT count(DISTINCT event_id) FROM events") as u64,
        totals.events
    );
}

/// The checkpoint files of a table's log, sorted.
fn checkpoints(table: &std::path::Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".checkpoint.parquet"))
        .collect();
    found.sort();
    found
}

/// The table's latest version, from its commit files.
fn latest_version(table: &std::path::Path) -> u64 {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")?.parse().ok()
        })
        .max()
        .unwrap()
}

#[test]
fn a_bulk_import_leaves_each_table_it_committed_to_twice_checkpointed() {
    let project = Project::new();
    let (first, totals) = project.sample("first.ndjson", 2_000, 4);
    let (second, more) = project.sample("second.ndjson", 1_000, 5);
    let (third, last) = project.sample("third.ndjson", 500, 6);
    let bad = project.path("bad.ndjson");
    std::fs::write(&bad, "{\"type\":\"track\"}\nnot json\n").unwrap();
    // One commit per file to the events, one to the quarantine.
    project.import(&[&first, &second, &bad]);
    let events = project.events_table("shop");
    let quarantine = project.path("store/shop/quarantine");
    let latest = |table| format!("{:020}.checkpoint.parquet", latest_version(table));
    assert!(
        checkpoints(&events).contains(&latest(&events)),
        "{:?}, latest {}",
        checkpoints(&events),
        latest(&events)
    );
    assert!(
        !checkpoints(&quarantine).contains(&latest(&quarantine)),
        "a table committed to once is left to Delta's interval"
    );
    let before = checkpoints(&events);
    // Nothing new to store: no commit and no checkpoint.
    project.import(&[&first]);
    assert_eq!(checkpoints(&events), before);
    // One more commit: left to the interval.
    project.import(&[&third]);
    assert_eq!(checkpoints(&events), before);
    assert_eq!(
        project.number("SELECT count(*) FROM events") as u64,
        totals.events + more.events + last.events
    );
    assert_eq!(project.number("SELECT count(*) FROM quarantine"), 2.0);
}
