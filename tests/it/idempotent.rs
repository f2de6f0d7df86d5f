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
