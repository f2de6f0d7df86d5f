//! Bad lines are reported with file:line and reason, kept in quarantine,
//! and never stop the good lines (unless `--strict`).

use crate::project::Project;

const MIXED: &str = concat!(
    r#"{"type":"track","event":"ok_1","anonymousId":"a1"}"#,
    "\n",
    r#"{"type":"track","event":"broken""#,
    "\n",
    "\n",
    r#"{"type":"page","anonymousId":"a1"}"#,
    "\n",
    r#"{"partnerId":"shop","partnerSecret":"wrong","clientId":"c","type":"track","properties":{"eventName":"x"}}"#,
    "\n",
    r#"{"name":"ok_2","payload":{"n":1},"user_id":"u1"}"#,
    "\n",
    r#"{"partnerId":"elsewhere","clientId":"c","type":"track","properties":{"eventName":"x"}}"#,
    "\n",
);

#[test]
fn bad_lines_are_reported_and_quarantined_and_good_lines_land() {
    let project = Project::new();
    let file = project.path("mixed.ndjson");
    std::fs::write(&file, MIXED).unwrap();
    let out = project.run(&["import", file.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("imported 2 events") && stdout.contains("4 bad lines"),
        "{stdout}"
    );
    for (line, reason) in [
        (2, "truncated JSON"),
        (4, "\"page\" is not supported"),
        (5, "partnerSecret does not match"),
        (7, "\"elsewhere\" is not a configured workspace"),
    ] {
        let expected = format!("mixed.ndjson:{line}: ");
        let reported = stderr.lines().find(|l| l.contains(&expected));
        assert!(
            reported.is_some_and(|l| l.contains(reason)),
            "line {line}: {stderr}"
        );
    }
    let names = project.query("SELECT event_name FROM events ORDER BY event_name");
    assert_eq!(
        names,
        vec![
            serde_json::json!({"event_name": "ok_1"}),
            serde_json::json!({"event_name": "ok_2"})
        ]
    );
    let quarantined = project.query("SELECT source, reason, raw FROM quarantine ORDER BY source");
    assert_eq!(quarantined.len(), 4);
    assert!(
        quarantined[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("mixed.ndjson:2")
    );
    assert_eq!(quarantined[0]["raw"], r#"{"type":"track","event":"broken""#);
    assert!(
        quarantined[2]["reason"]
            .as_str()
            .unwrap()
            .contains("partnerSecret")
    );
    assert!(
        !quarantined[2]["reason"]
            .as_str()
            .unwrap()
            .contains("test-secret"),
        "secrets are never echoed"
    );
}

#[test]
fn strict_imports_nothing_from_a_file_with_a_bad_line() {
    let project = Project::new();
    let file = project.path("mixed.ndjson");
    std::fs::write(&file, MIXED).unwrap();
    let out = project.run(&["import", "--strict", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a user error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 bad line(s) and --strict"), "{stderr}");
    assert_eq!(project.number("SELECT count(*) FROM events"), 0.0);
    // A clean file imports under --strict.
    let clean = project.path("clean.ndjson");
    std::fs::write(&clean, MIXED.lines().next().unwrap()).unwrap();
    project.ok(&["import", "--strict", clean.to_str().unwrap()]);
    assert_eq!(project.number("SELECT count(*) FROM events"), 1.0);
}

#[test]
fn unreadable_inputs_are_clear_errors() {
    let project = Project::new();
    let missing = project.run(&["import", "nowhere.ndjson"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere.ndjson: no such file"));
    let csv = project.path("bad.csv");
    std::fs::write(&csv, "who,what\n1,2\n").unwrap();
    let out = project.run(&["import", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no event_name column"));
    let short = project.path("short.csv");
    std::fs::write(&short, "event_name,user_id\ne,u1\ne\n").unwrap();
    let out = project.run(&["import", short.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("short.csv:3: 1 fields where the header has 2")
    );
}

/// Issue 12: the quarantine keeps what was sent, but not its secrets.
#[test]
fn a_quarantined_line_is_kept_without_its_secret() {
    let project = Project::new();
    let file = project.path("secrets.ndjson");
    let lines = [
        // Valid JSON, wrong key: the whole field goes.
        r#"{"partnerId":"shop","partnerSecret":"s3cret-wrong","clientId":"c","type":"track","properties":{"eventName":"x"}}"#,
        // A Segment call of an unsupported type with its writeKey and a header.
        r#"{"type":"page","writeKey":"wk-s3cret","anonymousId":"a","context":{"Authorization":"Bearer hdr-s3cret"}}"#,
        // Cut-off JSON: the value is blanked as text.
        r#"{"partnerId":"shop","partnerSecret":"test-secret","type":"tr"#,
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = project.run(&["import", file.to_str().unwrap()]);
    assert!(out.status.success());
    let kept = project.query("SELECT source, raw FROM quarantine ORDER BY source");
    assert_eq!(kept.len(), 3, "{kept:?}");
    for row in &kept {
        let raw = row["raw"].as_str().unwrap();
        for secret in ["s3cret-wrong", "wk-s3cret", "hdr-s3cret", "test-secret"] {
            assert!(!raw.contains(secret), "{secret} kept in {raw}");
        }
    }
    assert!(
        kept[0]["raw"]
            .as_str()
            .unwrap()
            .contains("\"clientId\":\"c\""),
        "{kept:?}"
    );
    assert!(
        kept[1]["raw"].as_str().unwrap().contains("\"page\""),
        "{kept:?}"
    );
    assert!(
        kept[2]["raw"].as_str().unwrap().contains("[redacted]"),
        "{kept:?}"
    );
}
