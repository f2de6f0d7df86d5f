//! `tripwire serve`: a real child process on a free loopback port, talked to
//! over real HTTP. Its scheduler runs triggers on their schedules and picks
//! up added, edited and deleted trigger files without a restart.

use crate::project::{ADMIN, Project, SECRET};
use crate::server::{Request, Server, serving_project};

fn write_trigger(project: &Project, name: &str, text: &str) {
    let dir = project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.sql")), text).unwrap();
}

/// The table version of the events table's latest commit.
fn events_version(project: &Project) -> i64 {
    let log = project.events_table("shop").join("_delta_log");
    std::fs::read_dir(log)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json")?.parse::<i64>().ok()
        })
        .max()
        .expect("a committed events table")
}

const EVERY_EVENT: &str = "-- schedule: every 1s\n-- backfill: all\n-- requires_identity: false\n\
     SELECT event_id, email, user_id, client_id FROM new_events\n";

#[test]
fn the_api_serves_triggers_runs_and_previews_with_the_admin_key() {
    let project = serving_project();
    write_trigger(&project, "everything", EVERY_EVENT);
    let (file, totals) = project.sample("events.ndjson", 600, 21);
    project.import(&[&file]);
    let server = Server::start(&project);

    assert_eq!(server.call("GET", "/healthz", None).0, 200);
    assert_eq!(server.call("GET", "/v1/runs", None).0, 401);
    assert_eq!(server.call("GET", "/v1/runs", Some("wrong")).0, 401);
    assert_eq!(server.call("GET", "/v1/runs", Some(SECRET)).0, 403);
    assert_eq!(
        server.call("GET", "/v1/runs?workspace=nope", Some(ADMIN)).0,
        403
    );

    let runs = server.wait_for_runs("everything", "a committed run", |r| !r.is_empty());
    let all_events = (totals.events) as i64;
    assert_eq!(runs[0]["matched"].as_i64(), Some(all_events), "{runs:?}");
    assert_eq!(
        runs[0]["to_version"].as_i64(),
        Some(events_version(&project))
    );

    let triggers = server.get("/v1/triggers");
    let listed = &triggers["triggers"][0];
    assert_eq!(listed["trigger"], "everything");
    assert_eq!(listed["cursor"].as_i64(), Some(events_version(&project)));

    // A preview over all history fires nothing and commits nothing.
    let (status, preview) = server.call(
        "POST",
        "/v1/triggers/everything/preview?all=true",
        Some(ADMIN),
    );
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["matched"].as_i64(), Some(all_events));
    assert_eq!(
        preview["matches"].as_array().map(Vec::len),
        Some(totals.events as usize)
    );
    let (status, _) = server.call("POST", "/v1/triggers/nope/preview", Some(ADMIN));
    assert_eq!(status, 404);
    assert_eq!(server.runs("everything").len(), 1);

    // SIGTERM: a graceful exit.
    assert!(server.stop().success());
}

#[test]
fn the_scheduler_picks_up_added_edited_and_deleted_trigger_files() {
    let project = serving_project();
    let (file, _) = project.sample("events.ndjson", 900, 22);
    let text = std::fs::read_to_string(&file).unwrap();
    let batches: Vec<String> = text
        .lines()
        .collect::<Vec<_>>()
        .chunks(300)
        .map(|c| c.join("\n") + "\n")
        .collect();
    let import_batch = |i: usize| {
        let path = project.path(&format!("batch{i}.ndjson"));
        std::fs::write(&path, &batches[i]).unwrap();
        project.import(&[&path]);
        events_version(&project)
    };
    let server = Server::start(&project);
    let first = import_batch(0);

    // Added while serving: run without a restart.
    write_trigger(&project, "a", EVERY_EVENT);
    write_trigger(&project, "b", EVERY_EVENT);
    for name in ["a", "b"] {
        server.wait_for_runs(name, "a run after being added", |r| {
            r.iter()
                .any(|run| run["to_version"].as_i64() == Some(first))
        });
    }

    // Edited and deleted while serving.
    write_trigger(
        &project,
        "a",
        "-- schedule: every 1s\n-- requires_identity: false\n\
         SELECT event_id, client_id, user_id FROM new_events WHERE type = 'identify'\n",
    );
    std::fs::remove_file(project.path("queries/triggers/b.sql")).unwrap();
    let second = import_batch(1);
    server.wait_for_runs("a", "a run over batch 2", |r| {
        r.iter()
            .any(|run| run["to_version"].as_i64() == Some(second))
    });
    // seq is too large for an f64: read it exactly.
    let seq_before = project.query("SELECT max(seq) AS s FROM events")[0]["s"]
        .as_i64()
        .expect("a seq");
    let third = import_batch(2);
    let runs = server.wait_for_runs("a", "a run over batch 3", |r| {
        r.iter()
            .any(|run| run["to_version"].as_i64() == Some(third))
    });
    // The run over batch 3 was planned after the edit: it uses the new SQL.
    let identifies = project.number(&format!(
        "SELECT count(*) FROM events WHERE type = 'identify' AND seq > {seq_before}"
    ));
    let latest = runs
        .iter()
        .find(|run| run["to_version"].as_i64() == Some(third))
        .unwrap();
    assert_eq!(latest["from_version"].as_i64(), Some(second));
    assert_eq!(latest["matched"].as_f64(), Some(identifies), "{latest}");
    assert!(identifies > 0.0 && identifies < 300.0);

    let listed = server.get("/v1/triggers");
    let names: Vec<&str> = listed["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["trigger"].as_str())
        .collect();
    assert_eq!(names, ["a"]);
    let b_runs = server.runs("b");
    assert!(
        b_runs
            .iter()
            .all(|run| run["to_version"].as_i64() < Some(third)),
        "b ran after it was deleted: {b_runs:?}"
    );
}

/// Segment's usual backend call: an identify with a userId and an email,
/// no anonymousId. A later track that carries only the userId resolves to
/// that email.
#[test]
fn a_server_side_identify_resolves_later_tracks_by_user_id() {
    let project = serving_project();
    write_trigger(
        &project,
        "carts",
        "-- schedule: every 1s\n-- backfill: all\n-- wait_for_identity: 0\n\
         SELECT user_id, email, event_id FROM new_events WHERE event_name = 'cart'\n",
    );
    let server = Server::start(&project);
    let identify =
        r#"{"userId": "u-9", "traits": {"email": "nine@example.com"}, "messageId": "i-9"}"#;
    let (status, _) = server.send(Request::post("/v1/identify", identify).bearer(SECRET));
    assert_eq!(status, 200);
    let track = r#"{"userId": "u-9", "event": "cart", "messageId": "t-9"}"#;
    let (status, _) = server.send(Request::post("/v1/track", track).bearer(SECRET));
    assert_eq!(status, 200);
    let runs = server.wait_for_runs("carts", "the cart resolved", |runs| {
        runs.iter().any(|r| r["resolved"].as_i64() == Some(1))
    });
    assert!(
        runs.iter().all(|r| r["dropped"].as_i64() == Some(0)),
        "{runs:?}"
    );
    assert!(server.stop().success());
    let matches = project.query("SELECT contact, user_id, event_id FROM matches");
    assert_eq!(
        matches,
        [
            serde_json::json!({"contact": "email:nine@example.com", "user_id": "u-9", "event_id": "t-9"})
        ]
    );
}

/// A panic inside a run (a bug) is recorded as the run's error; the
/// trigger is not left marked running: it is retried on schedule (and
/// paused after max_run_failures), and the other triggers go on.
#[test]
fn a_panicking_run_is_recorded_and_retried_and_the_others_go_on() {
    let project = serving_project();
    write_trigger(&project, "broken", EVERY_EVENT);
    write_trigger(&project, "fine", EVERY_EVENT);
    let (file, _) = project.sample("events.ndjson", 50, 3);
    project.import(&[&file]);
    let server = Server::start_with_env(&project, &[("TRIPWIRE_PANIC_IN_RUN", "broken")]);
    server.wait_for_runs("fine", "a committed run", |r| !r.is_empty());
    let runs = server.wait_for_runs("broken", "several panicked runs", |r| r.len() >= 3);
    for run in &runs {
        let error = run["error"].as_str().unwrap_or_default();
        assert!(error.contains("the run panicked"), "{run}");
    }
    let triggers = server.get("/v1/triggers");
    let broken = triggers["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trigger"] == "broken")
        .cloned()
        .unwrap();
    assert!(broken["failures"].as_u64().unwrap() >= 3, "{broken}");
    assert!(server.stop().success());
}
