//! `tripwire erase`: a person's events (anonymous ones linked by identify
//! included), quarantined input, matches, delivery contacts and payloads and
//! file-action lines are erased, counted in `erasures`, and nothing fires
//! again.

use crate::project::Project;

const CARTS: &str = "-- backfill: all\n-- requires_identity: true\n\
    SELECT client_id, user_id, email, event_id FROM new_events WHERE event_name = 'cart'\n";

const FLOW: &str = "trigger = \"carts\"\n[[branch]]\nactions = [\"audit\"]\n\
    [actions.audit]\ntype = \"file\"\npath = \"deliveries/carts.ndjson\"\n";

const EVENTS: &str = r#"{"type": "identify", "anonymousId": "c-ann", "userId": "u-ann", "traits": {"email": "ann@example.com"}, "messageId": "i1", "timestamp": "2026-11-01T00:00:00Z"}
{"type": "track", "event": "cart", "anonymousId": "c-ann", "messageId": "t1", "timestamp": "2026-11-01T00:01:00Z"}
{"name": "cart", "payload": {}, "email": "ann@example.com", "event_id": "t2", "timestamp": "2026-11-01T00:02:00Z"}
{"name": "cart", "payload": {}, "email": "bo@example.com", "event_id": "t3", "timestamp": "2026-11-01T00:03:00Z"}
{"name": "view", "payload": {}, "user_id": "u-ann", "event_id": "t4", "timestamp": "2026-11-01T00:04:00Z"}
{"name": "cart", "payload": {"note": "ann@example.com wrote this", "timestamp": "yesterday"
"#;

fn write(project: &Project, path: &str, text: &str) {
    let path = project.path(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn count(project: &Project, sql: &str) -> u64 {
    project.number(sql) as u64
}

#[test]
fn erasing_a_person_removes_them_everywhere_and_refires_nothing() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    write(&project, "flows/audit.toml", FLOW);
    write(&project, "events.ndjson", EVENTS);
    project.import(&[&project.path("events.ndjson")]);
    project.ok(&["run", "--now", "2026-11-02T00:00:00Z"]);
    let lines = || {
        std::fs::read_to_string(project.path("deliveries/carts.ndjson"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(count(&project, "SELECT count(*) FROM matches"), 3);
    assert_eq!(lines(), 3);
    assert_eq!(count(&project, "SELECT count(*) FROM quarantine"), 1);

    let out = project.ok(&["erase", "--email", "ann@example.com"]);
    // ann's identify, her anonymous cart (c-ann), her own cart, and the
    // view by her user id (u-ann): the identify links both ids to her.
    assert!(
        out.contains(
            "erased 3 identifier(s): 4 events, 1 quarantined inputs, 2 matches, 2 deliveries"
        ),
        "{out}"
    );
    assert!(out.contains("2 file lines"), "{out}");
    assert_eq!(count(&project, "SELECT count(*) FROM events"), 1);
    let mentions = "SELECT count(*) FROM events WHERE email = 'ann@example.com' \
                    OR client_id = 'c-ann' OR user_id = 'u-ann'";
    assert_eq!(count(&project, mentions), 0);
    assert_eq!(count(&project, "SELECT count(*) FROM identities"), 0);
    assert_eq!(count(&project, "SELECT count(*) FROM contacts"), 1);
    assert_eq!(count(&project, "SELECT count(*) FROM quarantine"), 0);
    assert_eq!(count(&project, "SELECT count(*) FROM matches"), 1);
    let deliveries = project
        .query("SELECT contact, payload IS NULL AS gone, status FROM deliveries ORDER BY contact");
    assert_eq!(
        deliveries.len(),
        3,
        "ids and statuses are kept: {deliveries:?}"
    );
    assert_eq!(
        deliveries
            .iter()
            .filter(|d| d["contact"] == "erased" && d["gone"] == true)
            .count(),
        2
    );
    assert_eq!(lines(), 1);
    let text = std::fs::read_to_string(project.path("deliveries/carts.ndjson")).unwrap();
    assert!(!text.contains("ann"), "{text}");
    let erasures = project.query(
        "SELECT identifiers, events, quarantine, matches, deliveries, file_lines FROM erasures",
    );
    assert_eq!(
        erasures,
        [
            serde_json::json!({"identifiers": 3, "events": 4, "quarantine": 1, "matches": 2, "deliveries": 2, "file_lines": 2})
        ]
    );
    // The delete rewrote files; the survivors are not new, only bo's next cart is.
    write(
        &project,
        "later.ndjson",
        "{\"name\": \"cart\", \"payload\": {}, \"email\": \"bo@example.com\", \"event_id\": \"t5\", \"timestamp\": \"2026-11-01T00:05:00Z\"}\n",
    );
    project.import(&[&project.path("later.ndjson")]);
    let run = project.ok(&["run", "--now", "2026-11-02T00:00:00Z"]);
    assert!(run.contains(": 1 rows"), "{run}");
    assert_eq!(count(&project, "SELECT count(*) FROM matches"), 2);
}

#[test]
fn erase_needs_someone_to_erase() {
    let project = Project::new();
    let out = project.run(&["erase"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--email"));
}
