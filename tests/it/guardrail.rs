//! The blast-radius guardrail: a run whose flow would send more than its
//! `max_deliveries_per_run` holds every delivery (nothing is sent); an
//! operator releases them (`tripwire release RUN_ID`) or discards them
//! (`tripwire discard RUN_ID`), and the trigger's next runs go on meanwhile.

use crate::project::Project;

const CARTS: &str = "-- backfill: all\n-- requires_identity: false\n\
    SELECT event_id, email, user_id, client_id FROM new_events WHERE event_name = 'cart'\n";

const FLOW: &str = "trigger = \"carts\"\nmax_deliveries_per_run = 100\n\
    [[branch]]\nactions = [\"audit\"]\n\
    [actions.audit]\ntype = \"file\"\npath = \"out/carts.ndjson\"\n";

fn write(project: &Project, path: &str, text: &str) {
    let path = project.path(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `count` cart events with ids `{prefix}{i}`.
fn carts(project: &Project, prefix: &str, count: usize) {
    let lines: String = (0..count)
        .map(|i| {
            format!(
                "{{\"name\": \"cart\", \"payload\": {{}}, \"email\": \"{prefix}{i}@example.com\", \
                 \"event_id\": \"{prefix}{i}\", \"timestamp\": \"2026-11-01T00:00:00Z\"}}\n"
            )
        })
        .collect();
    let file = format!("{prefix}.ndjson");
    write(project, &file, &lines);
    project.import(&[&project.path(&file)]);
}

fn lines_written(project: &Project) -> usize {
    std::fs::read_to_string(project.path("out/carts.ndjson"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn statuses(project: &Project) -> Vec<serde_json::Value> {
    project.query("SELECT status, count(*) AS n FROM deliveries GROUP BY status ORDER BY status")
}

fn held_run(project: &Project) -> String {
    let runs = project.query("SELECT run_id FROM runs WHERE held > 0 ORDER BY finished_at DESC");
    runs[0]["run_id"].as_str().unwrap().to_string()
}

#[test]
fn a_run_over_the_limit_holds_everything_until_released_or_discarded() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    write(&project, "flows/audit.toml", FLOW);
    carts(&project, "a", 500);
    let out = project.ok(&["run"]);
    assert!(
        out.contains("500 held over a flow's max_deliveries_per_run"),
        "{out}"
    );
    assert_eq!(lines_written(&project), 0, "nothing is sent");
    assert_eq!(
        statuses(&project),
        [serde_json::json!({"status": "held", "n": 500})]
    );
    let first = held_run(&project);

    // The trigger keeps running: a small window is delivered as usual.
    carts(&project, "b", 40);
    project.ok(&["run"]);
    assert_eq!(lines_written(&project), 40);

    // Released: all 500 go out.
    let released = project.ok(&["release", &first, "--flow", "audit"]);
    assert!(
        released.contains("500 held deliveries released"),
        "{released}"
    );
    assert!(released.contains("delivered 500"), "{released}");
    assert_eq!(lines_written(&project), 540);

    // Another big window, discarded: none go out, ever.
    carts(&project, "c", 150);
    project.ok(&["run"]);
    let second = held_run(&project);
    assert_ne!(first, second);
    let discarded = project.ok(&["discard", &second]);
    assert!(
        discarded.contains("150 held deliveries discarded"),
        "{discarded}"
    );
    project.ok(&["deliver"]);
    assert_eq!(lines_written(&project), 540);
    assert_eq!(
        statuses(&project),
        [
            serde_json::json!({"status": "delivered", "n": 540}),
            serde_json::json!({"status": "discarded", "n": 150}),
        ]
    );
    // Nothing is left to release.
    let again = project.run(&["release", &second]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no held deliveries"));
}

/// The admin API releases and discards held runs too, behind the admin key.
#[test]
fn held_runs_are_released_and_discarded_over_the_admin_api() {
    use crate::project::{ADMIN, SECRET};
    use crate::server::{Server, serving_project};
    let project = serving_project();
    write(
        &project,
        "queries/triggers/carts.sql",
        &format!("-- schedule: every 1s\n{CARTS}"),
    );
    write(&project, "flows/audit.toml", FLOW);
    carts(&project, "a", 120);
    let server = Server::start(&project);
    let runs = server.wait_for_runs("carts", "a held run", |r| {
        r.iter().any(|r| r["held"].as_i64() == Some(120))
    });
    let run_id = runs
        .iter()
        .find(|r| r["held"].as_i64() == Some(120))
        .and_then(|r| r["run_id"].as_str())
        .unwrap()
        .to_string();
    let release = format!("/v1/runs/{run_id}/release?flow=audit");
    assert_eq!(
        server.call("POST", &release, Some(SECRET)).0,
        403,
        "a write key"
    );
    let (status, body) = server.call("POST", &release, Some(ADMIN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"], 120);
    let (status, body) = server.call("POST", &release, Some(ADMIN));
    assert_eq!(status, 400, "nothing left to release: {body}");
    let deadline = std::time::Instant::now() + crate::server::PATIENCE;
    while lines_written(&project) < 120 {
        assert!(
            std::time::Instant::now() < deadline,
            "the released deliveries were never sent"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(server.stop().success());
    assert_eq!(lines_written(&project), 120);
}
