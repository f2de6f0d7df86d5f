//! The analyst's workbench on a real project: `tripwire test` runs the
//! trigger tests in queries/tests/ on a throwaway store (the example
//! project's pass), a wrong expectation prints a readable diff and exits
//! non-zero, and `check` runs the tests too.

use std::path::Path;

use crate::project::Project;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A project with the repository's example triggers, flows, segments and tests.
fn example_project() -> Project {
    let project = Project::with_config("storage = \"./store\"\n[[workspace]]\nid = \"shop\"\n");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("queries"), &project.path("queries"));
    copy_dir(&repo.join("flows"), &project.path("flows"));
    project
}

#[test]
fn the_example_projects_trigger_tests_pass() {
    let project = example_project();
    let out = project.ok(&["test"]);
    assert!(!out.contains("FAIL"), "{out}");
    for trigger in [
        "cart_abandoned",
        "deposit_started",
        "sku_reorder",
        "vip_cart_abandoned",
    ] {
        assert!(
            out.contains(&format!("ok   {trigger}: ")),
            "{trigger} has tests: {out}"
        );
    }
    assert!(out.contains("8 of 8 case(s) passed"), "{out}");
    // The throwaway stores leave nothing in the project.
    assert!(!project.path("store").exists());
}

#[test]
fn a_wrong_expectation_prints_a_diff_and_exits_non_zero() {
    let project = example_project();
    std::fs::write(
        project.path("queries/tests/vip_cart_abandoned.toml"),
        r#"
[[case]]
name = "expects the wrong value and a contact that never comes"
events = [{ name = "vip_cart_abandoned", payload = { cart_value = 420.0 }, email = "eve@example.com", timestamp = "2026-11-04T10:00:00Z" }]

[[case.expect]]
contact = "email:eve@example.com"
data = { cart_value = 999.0 }

[[case.expect]]
contact = "email:nobody@example.com"
"#,
    )
    .unwrap();
    let out = project.run(&["test", "vip_cart_abandoned"]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL vip_cart_abandoned: expects the wrong value"),
        "{stdout}"
    );
    assert!(
        stdout.contains("~ email:eve@example.com: data.cart_value: expected 999.0, got 420.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- a match for email:nobody@example.com: none"),
        "{stdout}"
    );
    assert!(stdout.contains("0 of 1 case(s) passed"), "{stdout}");
    // check runs the tests too.
    let checked = project.run(&["check"]);
    assert!(!checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stderr).contains("FAIL vip_cart_abandoned"));
}

fn write(project: &Project, path: &str, text: &str) {
    let path = project.path(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Imports carts: (email, value, sent at).
fn carts(project: &Project, file: &str, carts: &[(&str, f64, &str)]) {
    let lines: String = carts
        .iter()
        .map(|(email, v, at)| {
            format!(
                "{{\"name\": \"cart\", \"payload\": {{\"v\": {v}}}, \"email\": \"{email}\", \"timestamp\": \"{at}\"}}\n"
            )
        })
        .collect();
    write(project, file, &lines);
    project.import(&[&project.path(file)]);
}

#[test]
fn diff_compares_an_edited_trigger_with_what_its_runs_matched() {
    let project = Project::new();
    let trigger = |condition: &str| {
        format!(
            "-- backfill: all\nSELECT email FROM new_events WHERE event_name = 'cart' AND {condition}\n"
        )
    };
    write(
        &project,
        "queries/triggers/carts.sql",
        &trigger("json_get_float(properties, 'v') > 100"),
    );
    let at = "2026-11-01T10:00:00Z";
    carts(
        &project,
        "a.ndjson",
        &[("a@x", 50.0, at), ("b@x", 150.0, at), ("c@x", 250.0, at)],
    );
    project.ok(&["run"]);
    carts(
        &project,
        "b.ndjson",
        &[("d@x", 120.0, at), ("e@x", 80.0, at)],
    );
    project.ok(&["run"]);
    // Edited: above 60 and below 200. Run 1 loses c, run 2 gains e.
    write(
        &project,
        "queries/triggers/carts.sql",
        &trigger("json_get_float(properties, 'v') > 60 AND json_get_float(properties, 'v') < 200"),
    );
    let out = project.ok(&["diff", "carts"]);
    assert!(out.contains("over 2 committed run(s)"), "{out}");
    assert!(out.contains("1 added, 1 removed, 2 unchanged"), "{out}");
    assert!(out.contains("+ email:e@x"), "{out}");
    assert!(out.contains("- email:c@x"), "{out}");
    // Nothing was committed.
    assert_eq!(project.number("SELECT count(*) FROM runs"), 2.0);
}

#[test]
fn a_shadow_backfill_records_what_would_be_sent_and_sends_nothing() {
    let project = Project::new();
    // History from before the trigger exists: three carts within the week
    // before the clock, one older.
    carts(
        &project,
        "old.ndjson",
        &[
            ("a@x", 150.0, "2026-11-02T10:00:00Z"),
            ("b@x", 150.0, "2026-11-03T10:00:00Z"),
            ("c@x", 150.0, "2026-11-04T10:00:00Z"),
            ("old@x", 150.0, "2026-10-01T10:00:00Z"),
        ],
    );
    write(
        &project,
        "queries/triggers/carts.sql",
        "SELECT email FROM new_events WHERE event_name = 'cart'\n",
    );
    write(
        &project,
        "flows/nudge.toml",
        "trigger = \"carts\"\nfrequency_cap = { max = 1, per = \"24h\" }\n\
         [[branch]]\nactions = [\"audit\"]\n\
         [actions.audit]\ntype = \"file\"\npath = \"out/nudge.ndjson\"\n",
    );
    let now = "2026-11-05T00:00:00Z";
    let shadow = project.ok(&["backfill", "carts", "--since", "7d", "--now", now]);
    assert!(
        shadow.contains("3 rows → 3 matches; deliveries: 3 shadow"),
        "{shadow}"
    );
    let sent = || {
        std::fs::read_to_string(project.path("out/nudge.ndjson")).map_or(0, |t| t.lines().count())
    };
    project.ok(&["deliver"]);
    assert_eq!(sent(), 0, "a shadow sends nothing");
    let statuses = project.query("SELECT status, count(*) AS n FROM deliveries GROUP BY status");
    assert_eq!(statuses, [serde_json::json!({"status": "shadow", "n": 3})]);
    // Once per mode; the trigger itself started at the current version.
    let again = project.ok(&["backfill", "carts", "--since", "7d", "--now", now]);
    assert!(again.contains("backfilled in this mode before"), "{again}");
    let quiet = project.ok(&["run", "--now", now]);
    assert!(quiet.contains("no new events"), "{quiet}");
    // Live: the same events are sent (new delivery ids; shadow rows do not
    // count toward the cap of one a day).
    let live = project.ok(&["backfill", "carts", "--since", "7d", "--now", now, "--live"]);
    assert!(live.contains("deliveries: 3 pending"), "{live}");
    assert_eq!(sent(), 3);
    let ids = project.number("SELECT count(DISTINCT delivery_id) FROM deliveries");
    assert_eq!(ids, 6.0);
}
