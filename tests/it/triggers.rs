//! Trigger runs: each event is seen once across runs, a failed or killed run
//! leaves nothing behind, concurrent runners commit a window once, and
//! `check` names the file and line of a problem.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::project::Project;

/// Every event, keyed by its id, so each fires on its own.
const ALL_EVENTS: &str = "-- backfill: all\n-- requires_identity: false\nSELECT event_id, email, user_id, client_id FROM new_events\n";

fn with_trigger(project: &Project, name: &str, sql: &str) {
    let dir = project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.sql")), sql).unwrap();
}

fn lines(path: &std::path::Path, from: usize, to: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(from)
        .take(to - from)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn each_event_is_seen_exactly_once_across_runs() {
    let project = Project::new();
    with_trigger(&project, "everything", ALL_EVENTS);
    let (file, totals) = project.sample("all.ndjson", 1_200, 11);
    // Batch 2 holds the oldest events: late arrivals are still seen once.
    let (late, early) = (project.path("late.ndjson"), project.path("early.ndjson"));
    std::fs::write(&early, lines(&file, 400, 1_200)).unwrap();
    std::fs::write(&late, lines(&file, 0, 400)).unwrap();
    project.import(&[&early]);
    project.ok(&["run"]);
    project.import(&[&late]);
    project.ok(&["run"]);
    let quiet = project.ok(&["run"]);
    assert!(quiet.contains("no new events"), "{quiet}");
    let runs = project.query("SELECT matched FROM runs ORDER BY to_version");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["matched"], 800);
    assert_eq!(runs[1]["matched"], 400);
    let seen = project.number("SELECT count(DISTINCT (contact, event_id)) FROM matches");
    assert_eq!(seen as u64, totals.events);
    assert_eq!(
        project.number("SELECT count(*) FROM matches") as u64,
        totals.events
    );
}

#[test]
fn rows_resolve_to_contacts_and_collapse_per_contact() {
    let project = Project::new();
    let file = project.path("e.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"identify","anonymousId":"c1","userId":"u1","traits":{"email":"one@x.com"},"timestamp":"2026-11-01T00:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"cart","anonymousId":"c1","properties":{"v":1},"timestamp":"2026-11-01T01:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"cart","anonymousId":"c1","properties":{"v":2},"timestamp":"2026-11-01T02:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"cart","userId":"u1","properties":{"v":3},"timestamp":"2026-11-01T03:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"cart","anonymousId":"stranger","properties":{"v":4},"timestamp":"2026-11-01T04:00:00Z"}"#, "\n",
            r#"{"name":"cart","payload":{"v":5},"email":"two@x.com","timestamp":"2026-11-01T05:00:00Z"}"#, "\n",
        ),
    )
    .unwrap();
    project.import(&[&file]);
    with_trigger(
        &project,
        "carts",
        "-- backfill: all\n-- wait_for_identity: 0\nSELECT client_id, user_id, email, seq, json_get_int(properties, 'v') AS v FROM new_events WHERE event_name = 'cart'",
    );
    let out = project.ok(&["run", "--now", "2026-11-02T00:00:00Z"]);
    assert!(
        out.contains("5 rows, 4 resolved, 1 unresolved (1 dropped) → 2 matches"),
        "{out}"
    );
    let matches =
        project.query("SELECT email, json_get_int(data, 'v') AS v FROM matches ORDER BY email");
    // one@x.com fired once, with its latest row (highest seq).
    assert_eq!(
        matches,
        vec![
            serde_json::json!({"email": "one@x.com", "v": 3}),
            serde_json::json!({"email": "two@x.com", "v": 5})
        ]
    );
}

#[test]
fn identity_ttl_is_measured_against_the_run_clock() {
    let project = Project::new();
    let file = project.path("e.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"identify","anonymousId":"c1","userId":"u1","traits":{"email":"one@x.com"},"timestamp":"2026-11-01T00:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"cart","anonymousId":"c1","timestamp":"2026-11-09T00:00:00Z"}"#, "\n",
        ),
    )
    .unwrap();
    project.import(&[&file]);
    with_trigger(
        &project,
        "carts",
        "-- backfill: all\n-- wait_for_identity: 0\nSELECT client_id FROM new_events WHERE event_name = 'cart'",
    );
    let fresh = project.ok(&["preview", "carts", "--now", "2026-11-07T00:00:00Z"]);
    assert!(fresh.contains("one@x.com"), "{fresh}");
    let stale = project.run(&["preview", "carts", "--now", "2026-11-09T00:00:01Z"]);
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(
        stderr.contains("1 unresolved (1 dropped) → 0 matches"),
        "{stderr}"
    );
    // The same clock gives the same answer.
    assert_eq!(
        fresh,
        project.ok(&["preview", "carts", "--now", "2026-11-07T00:00:00Z"])
    );
}

#[test]
fn a_broken_trigger_is_reported_and_the_others_still_run() {
    let project = Project::new();
    let (file, _) = project.sample("e.ndjson", 200, 12);
    project.import(&[&file]);
    with_trigger(&project, "good", ALL_EVENTS);
    with_trigger(
        &project,
        "bad_header",
        "-- schedule: sometimes\nSELECT email FROM new_events\n",
    );
    with_trigger(
        &project,
        "bad_sql",
        "-- workspace: shop\n\nSELECT email\nFROM new_events\nWHERE nope = 1\n",
    );
    with_trigger(
        &project,
        "no_contact",
        "SELECT event_name FROM new_events\n",
    );
    // Plans, but could only fail at run time: found by check all the same.
    with_trigger(
        &project,
        "json_precedence",
        "SELECT email\nFROM new_events\nWHERE properties->>'sku' = 'SKU-1'\n",
    );
    let check = project.run(&["check"]);
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("bad_header.sql:1: \"sometimes\" is not a schedule"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad_sql.sql:5: ") && stderr.contains("nope"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no_contact.sql:1: the query must return at least one of the columns"),
        "{stderr}"
    );
    assert!(
        stderr.contains("json_precedence.sql:3: ")
            && stderr.contains("binds more loosely than comparisons"),
        "{stderr}"
    );
    let run = project.run(&["run"]);
    assert!(
        !run.status.success(),
        "failed runs make the exit code non-zero"
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("good: versions (-1, 1]: 200 rows"));
    let failed =
        project.query("SELECT trigger, error IS NOT NULL AS failed FROM runs ORDER BY trigger");
    assert_eq!(
        failed.len(),
        4,
        "the good run and the three failed runs are recorded: {failed:?}"
    );
    // A failed run did not move its cursor: it retries the same window.
    let retried = project.run(&["run", "bad_sql"]);
    assert!(String::from_utf8_lossy(&retried.stderr).contains("nope"));
}

#[test]
fn preview_commits_nothing() {
    let project = Project::new();
    let (file, _) = project.sample("e.ndjson", 300, 13);
    project.import(&[&file]);
    with_trigger(&project, "everything", ALL_EVENTS);
    let preview = project.run(&["preview", "everything", "--format", "json"]);
    assert!(preview.status.success());
    assert_eq!(
        String::from_utf8_lossy(&preview.stdout).lines().count(),
        300
    );
    assert_eq!(project.number("SELECT count(*) FROM runs"), 0.0);
    let out = project.ok(&["run"]);
    assert!(out.contains("300 rows"), "{out}");
}

#[test]
fn a_run_killed_before_its_commit_is_rerun_with_the_same_window() {
    let project = Project::new();
    let (file, totals) = project.sample("e.ndjson", 500, 14);
    project.import(&[&file]);
    with_trigger(&project, "everything", ALL_EVENTS);
    let pause = tempfile::tempdir().unwrap();
    let mut child = project
        .command(&["run"])
        .env("TRIPWIRE_PAUSE_BEFORE_COMMIT", pause.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pause.path().join("paused").exists() {
        assert!(
            Instant::now() < deadline,
            "the run never reached its commit"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        project.number("SELECT count(*) FROM runs"),
        0.0,
        "nothing was committed"
    );
    let out = project.ok(&["run"]);
    assert!(
        out.contains("versions (-1, 1]"),
        "same window after the crash: {out}"
    );
    assert_eq!(
        project.number("SELECT count(*) FROM matches") as u64,
        totals.events
    );
}

#[test]
fn two_runners_at_once_commit_each_window_once() {
    let project = Project::new();
    let (file, totals) = project.sample("e.ndjson", 2_000, 15);
    project.import(&[&file]);
    with_trigger(&project, "everything", ALL_EVENTS);
    let runners: Vec<_> = (0..2)
        .map(|_| {
            project
                .command(&["run"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for runner in runners {
        let out = runner.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(project.number("SELECT count(*) FROM runs"), 1.0);
    assert_eq!(
        project.number("SELECT count(*) FROM matches") as u64,
        totals.events
    );
}

#[test]
fn a_run_pinned_with_now_is_reproduced_exactly_on_another_store() {
    let sql = "-- backfill: all\nSELECT client_id, email, json_get_float(properties, 'cart_value') AS cart_value \
               FROM new_events WHERE event_name = 'cart_abandoned'";
    let ledger_of = |seed_project: &Project| {
        with_trigger(seed_project, "carts", sql);
        seed_project.ok(&["run", "--now", "2026-11-05T00:00:00Z"]);
        seed_project.query(
            "SELECT run_id, ordinal, contact, email, user_id, client_id, data FROM matches ORDER BY contact",
        )
    };
    let (first, second) = (Project::new(), Project::new());
    let (file, _) = first.sample("e.ndjson", 1_500, 31);
    std::fs::copy(&file, second.path("e.ndjson")).unwrap();
    first.import(&[&file]);
    second.import(&[&second.path("e.ndjson")]);
    let matches = ledger_of(&first);
    assert!(matches.len() > 10, "{matches:?}");
    assert!(matches.iter().all(|m| m["email"].is_string()));
    assert_eq!(matches, ledger_of(&second));
}

/// A poison event makes a trigger's SQL fail at run time on every retry of
/// its window: after max_run_failures (5) in a row the trigger is paused,
/// `triggers` says why, and `resume --skip` moves it past the window.
#[test]
fn a_trigger_failing_five_times_in_a_row_is_paused_until_resumed() {
    let project = Project::new();
    with_trigger(
        &project,
        "numbers",
        "-- backfill: all\nSELECT email, CAST(json_get_str(properties, 'n') AS BIGINT) AS n \
         FROM new_events WHERE event_name = 'number'\n",
    );
    let event = |id: &str, n: &str| {
        format!(
            "{{\"name\": \"number\", \"payload\": {{\"n\": \"{n}\"}}, \"email\": \"a@example.com\", \"event_id\": \"{id}\"}}\n"
        )
    };
    let poison = project.path("poison.ndjson");
    std::fs::write(&poison, event("p", "not a number")).unwrap();
    project.import(&[&poison]);
    for _ in 0..5 {
        let out = project.run(&["run", "numbers"]);
        assert!(!out.status.success(), "the poison fails the run");
    }
    let paused = project.run(&["run", "numbers"]);
    let stderr = String::from_utf8_lossy(&paused.stderr);
    assert!(
        stderr.contains("paused after 5 failed runs in a row"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not a number"),
        "the last error is shown: {stderr}"
    );
    let listed = project.ok(&["triggers"]);
    assert!(listed.contains("true"), "paused is shown: {listed}");
    assert_eq!(
        project.number("SELECT count(*) FROM runs WHERE error IS NOT NULL"),
        5.0
    );

    // Resumed without skipping, it retries (and fails) again, one failure in.
    project.ok(&["resume", "numbers"]);
    let retried = project.run(&["run", "numbers"]);
    let stderr = String::from_utf8_lossy(&retried.stderr);
    assert!(!stderr.contains("paused"), "{stderr}");

    // Skipping the window: the cursor moves past it, later events fire.
    let skipped = project.ok(&["resume", "numbers", "--skip"]);
    assert!(skipped.contains("versions (-1, 1] skipped"), "{skipped}");
    let good = project.path("good.ndjson");
    std::fs::write(&good, event("g", "42")).unwrap();
    project.import(&[&good]);
    let run = project.ok(&["run", "numbers"]);
    assert!(run.contains("1 rows, 1 resolved"), "{run}");
    let n = project.number("SELECT json_get_int(data, 'n') FROM matches");
    assert_eq!(n, 42.0);
}

/// The commit files of the workspace's ledger table.
fn ledger_commits(project: &Project) -> usize {
    std::fs::read_dir(project.path("store/shop/ledger/_delta_log"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// A workspace's triggers run as one tick: they read the shared window
/// and land in one ledger commit, a failing one records its failure in
/// that commit without holding the others back, and each trigger still
/// sees each event once.
#[test]
fn a_workspaces_triggers_run_as_one_tick_and_land_in_one_commit() {
    let project = Project::new();
    let (file, totals) = project.sample("a.ndjson", 300, 21);
    project.import(&[&file]);
    for name in ["t1", "t2", "t3"] {
        with_trigger(&project, name, ALL_EVENTS);
    }
    with_trigger(
        &project,
        "fails",
        "-- backfill: all\nSELECT email, 1 / (seq - seq) AS boom FROM new_events\n",
    );
    let before = ledger_commits(&project);
    let out = project.run(&["run", "--now", "2026-11-02T00:00:00Z"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the failing trigger fails the command"
    );
    assert_eq!(stdout.matches("committed run").count(), 3, "{stdout}");
    // The ledger's creation, then one commit for the whole tick.
    assert_eq!(before, 0);
    assert_eq!(ledger_commits(&project), 2, "one commit for the tick");
    let runs =
        project.number("SELECT count(*) FROM runs WHERE trigger = 'fails' AND error IS NOT NULL");
    assert_eq!(runs, 1.0, "the failure is recorded");
    for name in ["t1", "t2", "t3"] {
        let matched = project.number(&format!(
            "SELECT count(DISTINCT event_id) FROM matches WHERE trigger = '{name}'"
        ));
        assert!(
            matched > 0.0 && matched <= totals.events as f64,
            "{name}: {matched}"
        );
    }
    // Nothing new: nothing commits, nothing fires twice.
    let quiet = project.ok(&["run", "t1", "t2", "t3", "--now", "2026-11-02T00:00:00Z"]);
    assert_eq!(quiet.matches("no new events").count(), 3, "{quiet}");
    let (more, _) = project.sample("b.ndjson", 50, 22);
    project.import(&[&more]);
    let before = ledger_commits(&project);
    let next = project.ok(&["run", "t1", "t2", "t3", "--now", "2026-11-02T00:00:00Z"]);
    assert_eq!(next.matches("committed run").count(), 3, "{next}");
    assert_eq!(ledger_commits(&project) - before, 1);
    let per_trigger = project
        .query("SELECT trigger, count(*) AS n FROM matches GROUP BY trigger ORDER BY trigger");
    let counts: Vec<i64> = per_trigger
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{per_trigger:?}");
}
