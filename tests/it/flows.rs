//! Flows: segment filters (SQL and imported lists), frequency caps across
//! runs, branch routing, experiment arms that plain SQL reproduces, event
//! actions chaining into another trigger, what
//! `preview` and `check` say, and broken flow files holding their trigger.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::project::Project;

const CARTS: &str = "-- backfill: all\n-- requires_identity: true\n\
    SELECT email, json_get_float(properties, 'v') AS v FROM new_events WHERE event_name = 'cart'\n";

fn write(project: &Project, path: &str, text: &str) {
    let path = project.path(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn carts(project: &Project, file: &str, rows: &[(&str, f64, &str)]) {
    let lines: String = rows
        .iter()
        .map(|(email, v, at)| {
            format!(
                "{{\"name\":\"cart\",\"payload\":{{\"v\":{v}}},\"email\":\"{email}\",\"timestamp\":\"{at}\"}}\n"
            )
        })
        .collect();
    write(project, file, &lines);
    project.import(&[&project.path(file)]);
}

const REMIND: &str = r#"
trigger = "carts"
exclude_segments = ["bought", "blocked"]
frequency_cap = { max = 1, per = "24h" }
[[branch]]
when = "v > 100"
actions = ["big"]
[[branch]]
actions = ["small"]
[actions.big]
type = "file"
path = "out/big.ndjson"
[actions.small]
type = "file"
path = "out/small.ndjson"
"#;

/// The segments the flows exclude: `bought` (SQL over `events`) and
/// `blocked` (the list in `blocked_csv`, imported); what the import said.
fn bought_and_blocked(project: &Project, blocked_csv: &str) -> String {
    write(
        project,
        "queries/segments/bought.sql",
        "SELECT DISTINCT email FROM events WHERE event_name = 'order'",
    );
    write(project, "blocked.csv", blocked_csv);
    project.ok(&[
        "import",
        "--segment",
        "blocked",
        &project.path("blocked.csv").display().to_string(),
    ])
}

/// email → (status, action, reason) of the deliveries of the run ending at `version`.
fn fates(project: &Project, run: usize) -> BTreeMap<String, (String, String, String)> {
    let runs = project.query("SELECT run_id FROM runs WHERE error IS NULL ORDER BY to_version");
    let run_id = runs[run]["run_id"].as_str().unwrap().to_string();
    project
        .query(&format!(
            "SELECT email, status, action, reason FROM deliveries WHERE run_id = '{run_id}'"
        ))
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (
                text("email"),
                (text("status"), text("action"), text("reason")),
            )
        })
        .collect()
}

#[test]
fn segments_caps_and_branches_decide_each_contact() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    write(&project, "flows/remind.toml", REMIND);
    let imported = bought_and_blocked(&project, "email,note\nc@x.com,asked us to stop\n");
    assert!(
        imported.contains("segment blocked: 1 contacts"),
        "{imported}"
    );
    write(
        &project,
        "order.ndjson",
        "{\"name\":\"order\",\"payload\":{},\"email\":\"d@x.com\",\"timestamp\":\"2026-11-01T00:00:00Z\"}\n",
    );
    project.import(&[&project.path("order.ndjson")]);
    carts(
        &project,
        "b1.ndjson",
        &[
            ("a@x.com", 500.0, "2026-11-02T00:00:00Z"),
            ("b@x.com", 50.0, "2026-11-02T00:00:00Z"),
            ("c@x.com", 500.0, "2026-11-02T00:00:00Z"),
            ("d@x.com", 500.0, "2026-11-02T00:00:00Z"),
        ],
    );
    project.ok(&["run", "--now", "2026-11-02T01:00:00Z"]);
    let first = fates(&project, 0);
    let fate = |s: &str, a: &str, r: &str| (s.to_string(), a.to_string(), r.to_string());
    // `run` delivers what it planned before it exits.
    assert_eq!(first["a@x.com"], fate("delivered", "big", ""));
    assert_eq!(first["b@x.com"], fate("delivered", "small", ""));
    let big = std::fs::read_to_string(project.path("out/big.ndjson")).unwrap();
    assert_eq!(big.lines().count(), 1);
    assert!(big.contains("\"email\":\"a@x.com\""), "{big}");
    assert_eq!(
        first["c@x.com"],
        fate("filtered", "", "in excluded segment \"blocked\"")
    );
    assert_eq!(
        first["d@x.com"],
        fate("filtered", "", "in excluded segment \"bought\"")
    );

    // An hour later a is capped; a day later it fires again.
    carts(
        &project,
        "b2.ndjson",
        &[
            ("a@x.com", 20.0, "2026-11-02T02:00:00Z"),
            ("e@x.com", 20.0, "2026-11-02T02:00:00Z"),
        ],
    );
    project.ok(&["run", "--now", "2026-11-02T02:00:00Z"]);
    let second = fates(&project, 1);
    assert_eq!(second["a@x.com"].0, "filtered");
    assert!(second["a@x.com"].2.contains("frequency cap"), "{second:?}");
    assert_eq!(second["e@x.com"], fate("delivered", "small", ""));
    carts(
        &project,
        "b3.ndjson",
        &[("a@x.com", 20.0, "2026-11-03T02:00:00Z")],
    );
    project.ok(&["run", "--now", "2026-11-03T02:00:00Z"]);
    assert_eq!(
        fates(&project, 2)["a@x.com"],
        fate("delivered", "small", "")
    );

    // The preview says, per contact, what would happen and why not.
    let preview = project.ok(&[
        "preview",
        "carts",
        "--all",
        "--now",
        "2026-11-02T01:00:00Z",
        "--format",
        "json",
    ]);
    let rows: Vec<Value> = preview
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter().any(|r| r["contact"] == "email:c@x.com"
            && r["status"] == "filtered"
            && r["reason"].as_str().unwrap().contains("blocked")),
        "{preview}"
    );
}

/// The README's formula for a contact's bucket, written out independently.
fn documented_bucket(flow: &str, contact_sql: &str) -> String {
    let hex = format!("encode(sha256(concat('{flow}', ':', {contact_sql})), 'hex')");
    let digits: Vec<String> = (0..8u32)
        .map(|i| {
            format!(
                "(strpos('0123456789abcdef', substr({hex}, {}, 1)) - 1) * {}",
                i + 1,
                16u64.pow(7 - i)
            )
        })
        .collect();
    format!("(({}) % 10000)", digits.join(" + "))
}

#[test]
fn experiment_arms_split_10k_contacts_as_the_documented_sql_says() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    write(
        &project,
        "flows/split.toml",
        "trigger = \"carts\"\n[experiment]\nholdout = 10\nvariants = { a = 50, b = 50 }\n\
         [[branch]]\nactions = [\"log\"]\n[actions.log]\ntype = \"file\"\npath = \"out/log.ndjson\"\n",
    );
    let rows: Vec<(String, f64, &str)> = (0..10_000)
        .map(|i| (format!("p{i}@x.com"), 1.0, "2026-11-02T00:00:00Z"))
        .collect();
    let rows: Vec<(&str, f64, &str)> = rows.iter().map(|(e, v, t)| (e.as_str(), *v, *t)).collect();
    carts(&project, "many.ndjson", &rows);
    project.ok(&["run", "--now", "2026-11-02T01:00:00Z"]);
    let arms: BTreeMap<String, f64> = project
        .query("SELECT variant, count(*) AS n FROM deliveries GROUP BY variant")
        .iter()
        .map(|r| {
            (
                r["variant"].as_str().unwrap().to_string(),
                r["n"].as_f64().unwrap(),
            )
        })
        .collect();
    // Binomial: 3 standard deviations (30 for the holdout, 50 per variant).
    assert!((arms["holdout"] - 1_000.0).abs() < 90.0, "{arms:?}");
    assert!((arms["a"] - 4_500.0).abs() < 150.0, "{arms:?}");
    assert!((arms["b"] - 4_500.0).abs() < 150.0, "{arms:?}");
    assert_eq!(
        project.number(
            "SELECT count(*) FROM deliveries WHERE variant = 'holdout' AND status <> 'held_out'"
        ),
        0.0
    );
    let bucket = documented_bucket("split", "'email:' || email");
    let disagree = project.number(&format!(
        "SELECT count(*) FROM (SELECT variant, {bucket} AS bucket FROM deliveries) \
         WHERE variant <> CASE WHEN bucket < 1000 THEN 'holdout' \
                              WHEN (bucket - 1000) * 100 < 50 * 9000 THEN 'a' ELSE 'b' END"
    ));
    assert_eq!(disagree, 0.0);
}

#[test]
fn check_names_the_flow_file_line_and_reason() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    write(
        &project,
        "flows/good.toml",
        &REMIND.replace("\"bought\", \"blocked\"", ""),
    );
    write(
        &project,
        "flows/no_trigger.toml",
        &REMIND
            .replace("\"carts\"", "\"cartz\"")
            .replace("\"bought\", \"blocked\"", ""),
    );
    write(
        &project,
        "flows/no_segment.toml",
        &REMIND.replace("\"bought\", \"blocked\"", "\"nobody\""),
    );
    write(
        &project,
        "flows/bad_when.toml",
        &REMIND
            .replace("\"bought\", \"blocked\"", "")
            .replace("v > 100", "nope > 100"),
    );
    write(
        &project,
        "flows/no_action.toml",
        &REMIND.replace("actions = [\"small\"]", "actions = [\"smal\"]"),
    );
    let out = project.run(&["check"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "no_trigger.toml:2: unknown trigger \"cartz\"",
        "no_segment.toml:3: unknown segment \"nobody\"",
        "bad_when.toml:6: when \"nope > 100\"",
        "no_action.toml:9: branch 1 names action \"smal\"",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
    assert!(!stderr.contains("good.toml"), "{stderr}");
}

#[test]
fn a_broken_flow_file_holds_its_trigger_and_only_its_trigger() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    write(
        &project,
        "queries/triggers/others.sql",
        "-- backfill: all\nSELECT email FROM new_events\n",
    );
    write(
        &project,
        "flows/remind.toml",
        &REMIND.replace("[[branch]]\nactions", "[[branch]\nactions"),
    );
    carts(
        &project,
        "b1.ndjson",
        &[("a@x.com", 500.0, "2026-11-02T00:00:00Z")],
    );
    let out = project.run(&["run", "--now", "2026-11-02T01:00:00Z"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("remind.toml"));
    let runs = project.query("SELECT trigger FROM runs WHERE error IS NULL");
    assert_eq!(runs, [serde_json::json!({"trigger": "others"})]);
}

#[test]
fn an_event_action_chains_into_another_trigger() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    write(
        &project,
        "queries/triggers/vip.sql",
        "-- backfill: all\nSELECT email, event_id, json_get_float(properties, 'v') AS v FROM new_events WHERE event_name = 'vip'\n",
    );
    write(
        &project,
        "flows/chain.toml",
        "trigger = \"carts\"\n[[branch]]\nwhen = \"v > 100\"\nactions = [\"emit\"]\n\
         [actions.emit]\ntype = \"event\"\nname = \"vip\"\n",
    );
    carts(
        &project,
        "b1.ndjson",
        &[
            ("a@x.com", 500.0, "2026-11-02T00:00:00Z"),
            ("b@x.com", 5.0, "2026-11-02T00:00:00Z"),
        ],
    );
    let first = project.ok(&["run", "--now", "2026-11-02T01:00:00Z"]);
    assert!(first.contains("delivered 1"), "{first}");
    // The emitted event is new to the next run, with the match's data as payload.
    let second = project.ok(&["run", "--now", "2026-11-02T01:05:00Z"]);
    assert!(second.contains("vip: versions"), "{second}");
    let delivered = project.query("SELECT delivery_id FROM deliveries WHERE status = 'delivered'");
    let vip = project.query("SELECT email, data FROM matches WHERE trigger = 'vip'");
    assert_eq!(vip.len(), 1, "{vip:?}");
    assert_eq!(vip[0]["email"], "a@x.com");
    let data: Value = serde_json::from_str(vip[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["v"], 500.0);
    assert_eq!(
        data["event_id"], delivered[0]["delivery_id"],
        "the event id is the delivery id"
    );
}

/// Ids with the delimiter an earlier build cut contacts at (auth0-style
/// `auth0|123`) are three people: a cap of one lets each fire once.
#[test]
fn user_ids_with_delimiters_are_distinct_contacts_under_a_cap() {
    let project = Project::new();
    write(
        &project,
        "queries/triggers/carts.sql",
        "-- backfill: all\n-- requires_identity: false\n\
         SELECT user_id, event_id FROM new_events WHERE event_name = 'cart'\n",
    );
    write(
        &project,
        "flows/capped.toml",
        "trigger = \"carts\"\nfrequency_cap = { max = 1, per = \"24h\" }\n\
         [[branch]]\nactions = [\"audit\"]\n\
         [actions.audit]\ntype = \"file\"\npath = \"out/capped.ndjson\"\n",
    );
    let events: String = ["auth0|1", "auth0|2", "auth0|1|x", "auth0|1", "auth0|2"]
        .iter()
        .enumerate()
        .map(|(i, user)| {
            format!(
                "{{\"name\": \"cart\", \"payload\": {{}}, \"user_id\": \"{user}\", \
                 \"event_id\": \"e{i}\", \"timestamp\": \"2026-11-01T00:00:00Z\"}}\n"
            )
        })
        .collect();
    write(&project, "carts.ndjson", &events);
    project.import(&[&project.path("carts.ndjson")]);
    project.ok(&["run", "--now", "2026-11-01T01:00:00Z"]);
    let sent = project.query(
        "SELECT contact, count(*) AS n FROM deliveries WHERE status = 'delivered' GROUP BY contact ORDER BY contact",
    );
    assert_eq!(
        sent,
        [
            serde_json::json!({"contact": "user_id:auth0|1", "n": 1}),
            serde_json::json!({"contact": "user_id:auth0|1|x", "n": 1}),
            serde_json::json!({"contact": "user_id:auth0|2", "n": 1}),
        ]
    );
    let capped = project.number("SELECT count(*) FROM deliveries WHERE status = 'filtered'");
    assert_eq!(capped, 2.0, "the second carts of auth0|1 and auth0|2");
}

/// Within a run the frequency cap counts only rows that would be delivered:
/// a first cart no branch takes does not use up the contact's one fire.
#[test]
fn the_within_run_cap_counts_only_rows_that_would_be_delivered() {
    let project = Project::new();
    write(
        &project,
        "queries/triggers/carts.sql",
        "-- backfill: all\nSELECT email, event_id, json_get_float(properties, 'v') AS v \
         FROM new_events WHERE event_name = 'cart'\n",
    );
    write(
        &project,
        "flows/big.toml",
        "trigger = \"carts\"\nfrequency_cap = { max = 1, per = \"24h\" }\n\
         [[branch]]\nwhen = \"v > 100\"\nactions = [\"audit\"]\n\
         [actions.audit]\ntype = \"file\"\npath = \"out/big.ndjson\"\n",
    );
    write(
        &project,
        "carts.ndjson",
        "{\"name\": \"cart\", \"payload\": {\"v\": 50}, \"email\": \"a@example.com\", \"event_id\": \"small\", \"timestamp\": \"2026-11-01T00:00:00Z\"}\n\
         {\"name\": \"cart\", \"payload\": {\"v\": 200}, \"email\": \"a@example.com\", \"event_id\": \"big\", \"timestamp\": \"2026-11-01T00:01:00Z\"}\n",
    );
    project.import(&[&project.path("carts.ndjson")]);
    project.ok(&["run", "--now", "2026-11-01T01:00:00Z"]);
    let outcomes = project.query(
        "SELECT d.status, d.reason, json_get_float(d.data, 'v') AS v FROM deliveries d ORDER BY v",
    );
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes[0]["status"], "filtered");
    assert_eq!(outcomes[0]["reason"], "no branch matched");
    assert_eq!(outcomes[1]["status"], "delivered");
}

/// A flow like `remind`, for trigger `trigger`, writing `out/<trigger>.ndjson`.
fn excluding_flow(trigger: &str) -> String {
    format!(
        "trigger = \"{trigger}\"\nexclude_segments = [\"bought\", \"blocked\"]\n\
         [[branch]]\nactions = [\"line\"]\n\
         [actions.line]\ntype = \"file\"\npath = \"out/{trigger}.ndjson\"\n"
    )
}

/// The emails `out/<trigger>.ndjson` holds lines for, sorted.
fn emails_written(project: &Project, trigger: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(project.path(&format!("out/{trigger}.ndjson"))).unwrap_or_default();
    let mut emails: Vec<String> = text
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            line["contact"]["email"].as_str().expect(l).to_string()
        })
        .collect();
    emails.sort();
    emails
}

#[test]
fn the_triggers_of_one_tick_each_read_their_own_window_and_the_same_segments() {
    let project = Project::new();
    write(&project, "queries/triggers/carts.sql", CARTS);
    bought_and_blocked(&project, "email\nc@x.com\n");
    write(&project, "flows/carts.toml", &excluding_flow("carts"));
    carts(
        &project,
        "b1.ndjson",
        &[
            ("a@x.com", 1.0, "2026-11-02T00:00:00Z"),
            ("c@x.com", 1.0, "2026-11-02T00:00:00Z"),
        ],
    );
    project.ok(&["run", "--now", "2026-11-02T01:00:00Z"]);
    assert_eq!(emails_written(&project, "carts"), ["a@x.com"]);

    // A second trigger with the same segments joins; its first window is
    // all history, the first trigger's only what came since.
    write(&project, "queries/triggers/carts_too.sql", CARTS);
    write(
        &project,
        "flows/carts_too.toml",
        &excluding_flow("carts_too"),
    );
    carts(
        &project,
        "b2.ndjson",
        &[
            ("b@x.com", 1.0, "2026-11-02T02:00:00Z"),
            ("c@x.com", 1.0, "2026-11-02T02:00:00Z"),
        ],
    );
    let ran = project.ok(&["run", "--now", "2026-11-02T03:00:00Z"]);
    assert_eq!(ran.matches("committed run").count(), 2, "{ran}");
    assert_eq!(emails_written(&project, "carts"), ["a@x.com", "b@x.com"]);
    assert_eq!(
        emails_written(&project, "carts_too"),
        ["a@x.com", "b@x.com"],
        "all history, with the blocked contact filtered"
    );
}
