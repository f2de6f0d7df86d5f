//! `tripwire query`: read-only SQL over a workspace, in three output formats.

use crate::project::Project;

fn project_with_events() -> Project {
    let project = Project::new();
    let file = project.path("e.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"name":"cart_abandoned","payload":{"cart_value":120.5,"tag":"vip"},"email":"a@x.com","timestamp":"2026-11-01T10:00:00Z"}"#, "\n",
            r#"{"name":"cart_abandoned","payload":{"cart_value":20,"tag":"std"},"email":"b@x.com","timestamp":"2026-11-01T11:00:00Z"}"#, "\n",
        ),
    )
    .unwrap();
    project.import(&[&file]);
    project
}

#[test]
fn writes_are_refused_with_a_clear_error() {
    let project = project_with_events();
    for (sql, word) in [
        ("CREATE TABLE t AS SELECT 1", "DDL"),
        ("INSERT INTO events SELECT * FROM events", "INSERT"),
        ("DELETE FROM events", "DELETE"),
        ("COPY events TO '/tmp/x.parquet'", "COPY"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("DROP TABLE events", "DDL"),
    ] {
        let out = project.run(&["query", sql]);
        assert_eq!(out.status.code(), Some(2), "{sql}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(word) && stderr.contains("read-only"),
            "{sql}: {stderr}"
        );
    }
    assert_eq!(
        project.number("SELECT count(*) FROM events"),
        2.0,
        "nothing changed"
    );
}

#[test]
fn output_formats() {
    let project = project_with_events();
    let sql =
        "SELECT email, json_get_float(properties, 'cart_value') AS v FROM events ORDER BY email";
    let csv = project.ok(&["query", sql, "--format", "csv"]);
    assert_eq!(csv, "email,v\na@x.com,120.5\nb@x.com,20.0\n");
    let json = project.ok(&["query", sql, "--format", "json"]);
    assert_eq!(
        json,
        "{\"email\":\"a@x.com\",\"v\":120.5}\n{\"email\":\"b@x.com\",\"v\":20.0}\n"
    );
    let table = project.ok(&["query", sql]);
    assert!(
        table.contains("| email   | v     |") && table.contains("| a@x.com | 120.5 |"),
        "{table}"
    );
}

#[test]
fn json_operators_work_and_their_precedence_gets_a_hint() {
    let project = project_with_events();
    let vip = project.query("SELECT email FROM events WHERE (properties->>'tag') = 'vip'");
    assert_eq!(vip, vec![serde_json::json!({"email": "a@x.com"})]);
    let out = project.run(&[
        "query",
        "SELECT email FROM events WHERE properties->>'tag' = 'vip'",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("binds more loosely than comparisons")
            && stderr.contains("(properties->>'tag')"),
        "{stderr}"
    );
}

#[test]
fn sql_errors_are_user_errors() {
    let project = project_with_events();
    let out = project.run(&["query", "SELECT nope FROM events"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = project.run(&["query", "SELECT 1; SELECT 2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exactly one SQL statement"));
}

#[test]
fn an_empty_workspace_has_empty_tables() {
    let project = Project::new();
    assert_eq!(project.number("SELECT count(*) FROM events"), 0.0);
    assert_eq!(project.number("SELECT count(*) FROM identities"), 0.0);
    assert_eq!(project.number("SELECT count(*) FROM quarantine"), 0.0);
}

#[test]
fn deeply_nested_sql_is_an_answer_or_an_error_never_a_crash() {
    let project = project_with_events();
    // Planning 2,000 terms takes a debug build on a busy machine past the
    // default query_timeout: this test is about depth, not time.
    let config = std::fs::read_to_string(project.path("tripwire.toml")).unwrap();
    std::fs::write(
        project.path("tripwire.toml"),
        format!("query_timeout = \"1h\"\n{config}"),
    )
    .unwrap();
    // 2,000 terms: planned and answered.
    let terms = vec!["json_get_int(properties, 'cart_value')"; 2_000].join(" + ");
    let sum = project.number(&format!(
        "SELECT sum({terms}) FROM events WHERE email = 'b@x.com'"
    ));
    assert_eq!(sum, 40_000.0);
    // Deeper than the parser allows: a user error naming the reason.
    let nested = format!("SELECT {}1{} AS x", "(".repeat(5_000), ")".repeat(5_000));
    let out = project.run(&["query", &nested]);
    assert_eq!(out.status.code(), Some(2), "killed by a signal: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("recursion limit"));
}

#[test]
fn contacts_are_the_people_seen_keyed_by_email_else_user_id() {
    let project = Project::new();
    let file = project.path("people.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"track","event":"view","anonymousId":"c1","timestamp":"2026-10-31T23:00:00Z"}"#, "\n",
            r#"{"type":"identify","anonymousId":"c1","userId":"u1","traits":{"email":"one@x.com","plan":"pro"},"timestamp":"2026-11-01T00:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"view","userId":"u2","timestamp":"2026-11-01T01:00:00Z"}"#, "\n",
            r#"{"name":"view","payload":{},"email":"two@x.com","timestamp":"2026-11-01T05:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"view","anonymousId":"stranger","timestamp":"2026-11-01T06:00:00Z"}"#, "\n",
            r#"{"type":"track","event":"view","userId":"u1","timestamp":"2026-11-02T00:00:00Z"}"#, "\n",
        ),
    )
    .unwrap();
    project.import(&[&file]);
    let contacts = |now: &str| {
        project
            .ok(&[
                "query",
                "--now",
                now,
                "--format",
                "csv",
                "SELECT email, user_id, json_get_str(traits, 'plan') AS plan, first_seen, last_seen \
                 FROM contacts ORDER BY email NULLS LAST",
            ])
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        contacts("2026-11-03T00:00:00Z"),
        [
            "one@x.com,u1,pro,2026-10-31T23:00:00Z,2026-11-02T00:00:00Z",
            "two@x.com,,,2026-11-01T05:00:00Z,2026-11-01T05:00:00Z",
            ",u2,,2026-11-01T01:00:00Z,2026-11-01T01:00:00Z",
        ]
    );
    // The clock bounds what is known: u1's later visit is not seen yet.
    assert_eq!(
        contacts("2026-11-01T02:00:00Z"),
        [
            "one@x.com,u1,pro,2026-10-31T23:00:00Z,2026-11-01T00:00:00Z",
            ",u2,,2026-11-01T01:00:00Z,2026-11-01T01:00:00Z",
        ]
    );
}

#[test]
fn a_damaged_table_fails_only_the_queries_that_name_it() {
    let project = project_with_events();
    let quarantine = project.events_table("shop").with_file_name("quarantine");
    let log = quarantine.join("_delta_log");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("00000000000000000000.json"), "{not a delta log\n").unwrap();
    assert_eq!(project.number("SELECT count(*) FROM events"), 2.0);
    assert_eq!(project.number("SELECT count(*) FROM runs"), 0.0);
    let out = project.run(&["query", "SELECT count(*) FROM quarantine"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("quarantine"), "{stderr}");
}
