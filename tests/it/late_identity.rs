//! Late identity: a row that needs an identity it does not have waits (the
//! trigger's `wait_for_identity`, 1h by default) in the ledger; a later run
//! that sees the identify fires it once; one still unresolved after the
//! wait expires, counted, and never fires. Clocks are pinned with `--now`.

use crate::project::Project;

const CARTS: &str = "-- backfill: all\n\
    SELECT client_id, user_id, email, event_id FROM new_events WHERE event_name = 'cart'\n";

fn with_trigger(project: &Project) {
    let dir = project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("carts.sql"), CARTS).unwrap();
}

/// Imports one NDJSON line.
fn send(project: &Project, name: &str, line: &str) {
    let file = project.path(name);
    std::fs::write(&file, format!("{line}\n")).unwrap();
    project.import(&[&file]);
}

fn cart(client: &str, id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"cart","anonymousId":"{client}","messageId":"{id}","timestamp":"{at}"}}"#
    )
}

fn identify(client: &str, email: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","anonymousId":"{client}","traits":{{"email":"{email}"}},"messageId":"i-{client}","timestamp":"{at}"}}"#
    )
}

fn run(project: &Project, now: &str) -> String {
    project.ok(&["run", "--now", now])
}

fn runs(project: &Project) -> Vec<serde_json::Value> {
    project.query("SELECT matched, resolved, pending, expired FROM runs ORDER BY finished_at")
}

#[test]
fn a_row_waits_for_its_identity_and_fires_once_when_it_arrives() {
    let project = Project::new();
    with_trigger(&project);
    send(
        &project,
        "a.ndjson",
        &cart("c-late", "t1", "2026-11-05T10:00:00Z"),
    );
    let first = run(&project, "2026-11-05T10:05:00Z");
    assert!(first.contains("1 waiting for an identity"), "{first}");
    assert_eq!(project.number("SELECT count(*) FROM matches"), 0.0);
    // A preview shows what waits.
    let preview = project.ok(&["preview", "carts", "--now", "2026-11-05T10:06:00Z"]);
    assert!(
        !preview.contains("waiting for an identity"),
        "nothing new: {preview}"
    );
    // The identify arrives within the hour: the next run fires the cart.
    send(
        &project,
        "b.ndjson",
        &identify("c-late", "late@example.com", "2026-11-05T10:20:00Z"),
    );
    let second = run(&project, "2026-11-05T10:30:00Z");
    assert!(second.contains("→ 1 matches"), "{second}");
    let matches = project.query("SELECT contact, event_id FROM matches");
    assert_eq!(
        matches,
        [serde_json::json!({"contact": "email:late@example.com", "event_id": "t1"})]
    );
    // Once: the next run does not fire it again.
    send(
        &project,
        "c.ndjson",
        &cart("c-other", "t2", "2026-11-05T10:40:00Z"),
    );
    let third = run(&project, "2026-11-05T10:45:00Z");
    assert!(third.contains("→ 0 matches"), "{third}");
    assert_eq!(project.number("SELECT count(*) FROM matches"), 1.0);
    assert_eq!(
        runs(&project),
        [
            serde_json::json!({"matched": 1, "resolved": 0, "pending": 1, "expired": 0}),
            serde_json::json!({"matched": 0, "resolved": 1, "pending": 0, "expired": 0}),
            serde_json::json!({"matched": 1, "resolved": 0, "pending": 1, "expired": 0}),
        ]
    );
}

#[test]
fn a_row_still_unresolved_after_its_wait_expires_and_never_fires() {
    let project = Project::new();
    with_trigger(&project);
    send(
        &project,
        "a.ndjson",
        &cart("c-never", "t1", "2026-11-05T10:00:00Z"),
    );
    run(&project, "2026-11-05T10:05:00Z");
    // An hour and more later (another cart makes a window), it expires.
    send(
        &project,
        "b.ndjson",
        &cart("c-else", "t2", "2026-11-05T11:00:00Z"),
    );
    let late = run(&project, "2026-11-05T11:06:00Z");
    assert!(late.contains("1 expired waiting"), "{late}");
    // Its identify after that fires nothing; c-else (still within its
    // wait) fires when its own identify arrives.
    send(
        &project,
        "c.ndjson",
        &identify("c-never", "never@example.com", "2026-11-05T11:10:00Z"),
    );
    send(
        &project,
        "d.ndjson",
        &identify("c-else", "else@example.com", "2026-11-05T11:11:00Z"),
    );
    run(&project, "2026-11-05T11:15:00Z");
    let contacts: Vec<String> = project
        .query("SELECT contact FROM matches")
        .iter()
        .map(|m| m["contact"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contacts, ["email:else@example.com"]);
    let expired = project.number("SELECT sum(expired) FROM runs");
    assert_eq!(expired, 1.0);
}

#[test]
fn a_preview_lists_the_rows_that_would_wait() {
    let project = Project::new();
    with_trigger(&project);
    send(
        &project,
        "a.ndjson",
        &cart("c-late", "t1", "2026-11-05T10:00:00Z"),
    );
    let preview = project.ok(&[
        "preview",
        "carts",
        "--now",
        "2026-11-05T10:05:00Z",
        "--format",
        "json",
    ]);
    let row: serde_json::Value = serde_json::from_str(preview.lines().next().unwrap()).unwrap();
    assert_eq!(row["status"], "waiting for an identity");
    assert_eq!(row["client_id"], "c-late");
    assert_eq!(row["waiting_until"], "2026-11-05T11:05:00+00:00");
}
