//! The ingest API of a real `tripwire serve`, over real HTTP: the seed's
//! collect body verbatim, Segment's tracking API, name/payload events,
//! fan-out, idempotent retries, limits, auth, learning, metrics, and
//! `kill -9` under load losing no acknowledged event.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::project::{ADMIN, SECRET};
use crate::server::{Request, Server, serving_project, serving_project_with};

/// The seed's curl body (seeds/004), byte for byte, with its placeholders
/// replaced by the configured partner id and secret.
const SEED_BODY: &str = r#"{ "partnerId": "[ REPLACE ME]", "clientId": "92adbc3c-c22b-49bf-a9ae-11d9e8b3e6b4", "context": { "debug": true }, "partnerSecret": "[ REPLACE ME ]", "sentAt": 1524776691259, "type": "track", "properties": { "eventName": "some_event", "properties":{ "someProperty": "Some value" } }, "traits": { "userId": "97980cfea0067", "email": "[email protected]" }, "event": "custom" }"#;

fn seed_body() -> String {
    SEED_BODY
        .replace("[ REPLACE ME]", "shop")
        .replace("[ REPLACE ME ]", SECRET)
}

fn basic(key: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn the_seed_collect_body_works_verbatim_and_invalid_events_are_kept() {
    let project = serving_project();
    let server = Server::start(&project);
    let (status, body) = server.send(Request::post("/http/v1/collect", seed_body()));
    assert_eq!(status, 202, "{body}");

    // Invalid with debug: told why, nothing kept.
    let no_name = seed_body().replace(r#""eventName": "some_event", "#, "");
    let (status, body) = server.send(Request::post("/http/v1/collect", no_name.clone()));
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("eventName"),
        "{body}"
    );
    // Invalid without debug: accepted, and kept in quarantine with the reason.
    let quiet = no_name.replace(r#""debug": true"#, r#""debug": false"#);
    assert_eq!(server.send(Request::post("/http/v1/collect", quiet)).0, 202);

    let wrong = seed_body().replace(SECRET, "nope");
    assert_eq!(server.send(Request::post("/http/v1/collect", wrong)).0, 401);
    let unknown = seed_body().replace(r#""partnerId": "shop""#, r#""partnerId": "elsewhere""#);
    assert_eq!(
        server.send(Request::post("/http/v1/collect", unknown)).0,
        400
    );
    assert!(server.stop().success());

    let rows = project.query(
        "SELECT event_name, client_id, user_id, email, json_get_str(properties, 'someProperty') AS p, sent_at FROM events",
    );
    assert_eq!(
        rows,
        [
            json!({"event_name": "some_event", "client_id": "92adbc3c-c22b-49bf-a9ae-11d9e8b3e6b4",
                "user_id": "97980cfea0067", "email": "[email protected]", "p": "Some value",
                "sent_at": "2018-04-26T21:04:51.259Z"})
        ]
    );
    let kept = project.query("SELECT source, reason, raw FROM quarantine");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0]["reason"].as_str().unwrap().contains("eventName"));
    assert!(
        !kept[0]["raw"].as_str().unwrap().contains(SECRET),
        "secrets are never stored"
    );
}

#[test]
fn segments_tracking_api_with_basic_auth_gzip_and_batches() {
    let project = serving_project();
    let server = Server::start(&project);
    let track = json!({"event": "Order Completed", "anonymousId": "a1",
                       "properties": {"total": 30.5}, "messageId": "m1"});
    let (status, body) = server
        .send(Request::post("/v1/track", track.to_string()).header("authorization", basic(SECRET)));
    assert_eq!((status, body), (200, json!({"success": true})));
    let identify = json!({"anonymousId": "a1", "userId": "u1", "traits": {"email": "a@x.com"}});
    let (status, _) =
        server.send(Request::post("/v1/identify", identify.to_string()).bearer(SECRET));
    assert_eq!(status, 200);
    let batch = json!({"batch": [
        {"type": "track", "event": "Cart", "userId": "u1", "properties": {"v": 1}},
        {"type": "track", "userId": "u1"},
        {"name": "Ticket Created", "payload": {"id": 7}, "email": "b@x.com"}
    ]});
    let (status, body) = server.send(
        Request::post("/v1/batch", gzip(&batch.to_string()))
            .header("content-encoding", "gzip")
            .header("authorization", basic(SECRET)),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"][0]["index"], 1);
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("event")
    );
    let (status, body) = server.send(
        Request::post(
            "/v1/events",
            r#"{"name":"Signup","payload":{},"user_id":"u9"}"#,
        )
        .bearer(SECRET),
    );
    assert_eq!((status, body), (201, json!({"accepted": 1})));

    assert_eq!(
        server.send(Request::post("/v1/track", track.to_string())).0,
        401
    );
    let wrong = Request::post("/v1/track", track.to_string()).header("authorization", basic("x"));
    assert_eq!(server.send(wrong).0, 401);
    let bad = server.send(Request::post("/v1/track", "{not json").bearer(SECRET));
    assert_eq!(bad.0, 400);
    assert!(server.stop().success());

    let names = project.query("SELECT event_name, type, event_id FROM events ORDER BY seq");
    let got: Vec<(&str, &str)> = names
        .iter()
        .map(|r| {
            (
                r["event_name"].as_str().unwrap_or("-"),
                r["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Order Completed", "track"),
            ("-", "identify"),
            ("Cart", "track"),
            ("Ticket Created", "track"),
            ("Signup", "track")
        ]
    );
    assert_eq!(names[0]["event_id"], "m1", "messageId becomes event_id");
    assert_eq!(project.number("SELECT count(*) FROM quarantine"), 1.0);
}

#[test]
fn repeated_ids_are_stored_once_even_across_a_restart() {
    let project = serving_project();
    let send = |server: &Server, ids: &[&str]| {
        let batch: Vec<Value> = ids
            .iter()
            .map(|id| json!({"type": "track", "event": "e", "anonymousId": "a", "messageId": id}))
            .collect();
        let (status, body) = server
            .send(Request::post("/v1/batch", json!({"batch": batch}).to_string()).bearer(SECRET));
        assert_eq!(status, 200, "{body}");
    };
    let server = Server::start(&project);
    send(&server, &["m1", "m2", "m1"]);
    send(&server, &["m2", "m3"]);
    assert!(server.stop().success());
    let server = Server::start(&project);
    send(&server, &["m1", "m4"]);
    assert!(server.stop().success());
    let ids = project
        .query("SELECT event_id, count(*) AS n FROM events GROUP BY event_id ORDER BY event_id");
    assert_eq!(
        ids,
        ["m1", "m2", "m3", "m4"].map(|id| json!({"event_id": id, "n": 1}))
    );
}

#[test]
fn fan_out_needs_a_key_valid_for_every_listed_workspace() {
    let project = serving_project_with(
        &format!(
            "[[workspace]]\nid = \"shop-staging\"\nsecret = \"{SECRET}\"\n\
                  [[workspace]]\nid = \"other\"\nsecret = \"other-key\"\n"
        ),
        "",
    );
    let server = Server::start(&project);
    let event = json!({"event": "Fan", "anonymousId": "a"}).to_string();
    let (status, _) = server.send(
        Request::post("/v1/track", event.clone())
            .bearer(SECRET)
            .header("x-workspaces", "shop,shop-staging"),
    );
    assert_eq!(status, 200);
    let forbidden = Request::post("/v1/track", event.clone())
        .bearer(SECRET)
        .header("x-workspaces", "shop,other");
    assert_eq!(server.send(forbidden).0, 403);
    // The body's `workspaces` field works as the header does.
    let in_body = json!({"event": "Fan", "anonymousId": "b", "workspaces": "other"}).to_string();
    assert_eq!(
        server
            .send(Request::post("/v1/track", in_body).bearer("other-key"))
            .0,
        200
    );
    assert!(server.stop().success());
    for (workspace, want) in [("shop", 1.0), ("shop-staging", 1.0), ("other", 1.0)] {
        let n = project.ok(&[
            "query",
            "--workspace",
            workspace,
            "--format",
            "csv",
            "SELECT count(*) FROM events",
        ]);
        assert_eq!(
            n.lines().nth(1).and_then(|l| l.parse::<f64>().ok()),
            Some(want),
            "{workspace}"
        );
    }
}

#[test]
fn limits_answer_413_with_the_reason() {
    let project = serving_project_with(
        "",
        "max_event_bytes = 300\nmax_batch_items = 3\nmax_request_bytes = 2000\n",
    );
    let server = Server::start(&project);
    let big = json!({"event": "Big", "anonymousId": "a", "properties": {"x": "y".repeat(400)}});
    let (status, body) = server.send(Request::post("/v1/track", big.to_string()).bearer(SECRET));
    assert_eq!(status, 413);
    assert!(
        body["error"].as_str().unwrap().contains("per event"),
        "{body}"
    );
    let many: Vec<Value> = (0..4)
        .map(|_| json!({"type": "track", "event": "e", "anonymousId": "a"}))
        .collect();
    let (status, body) =
        server.send(Request::post("/v1/batch", json!({"batch": many}).to_string()).bearer(SECRET));
    assert_eq!(status, 413);
    assert!(
        body["error"].as_str().unwrap().contains("4 items"),
        "{body}"
    );
    let huge = json!({"batch": [], "padding": "z".repeat(3000)}).to_string();
    assert_eq!(
        server
            .send(Request::post("/v1/batch", huge).bearer(SECRET))
            .0,
        413
    );
    let bomb = json!({"batch": [], "padding": "z".repeat(30_000)}).to_string();
    let zipped = Request::post("/v1/batch", gzip(&bomb))
        .bearer(SECRET)
        .header("content-encoding", "gzip");
    assert_eq!(server.send(zipped).0, 413, "the inflated size counts");
    assert!(server.stop().success());
    assert_eq!(project.number("SELECT count(*) FROM events"), 0.0);
}

#[test]
fn schema_learning_and_metrics() {
    let project = serving_project();
    let server = Server::start(&project);
    for value in [json!(12), json!("twelve")] {
        let event = json!({"event": "Cart", "anonymousId": "a", "properties": {"value": value, "sku": {"id": "S1"}}});
        assert_eq!(
            server
                .send(Request::post("/v1/track", event.to_string()).bearer(SECRET))
                .0,
            200
        );
    }
    let started = std::time::Instant::now();
    let fields = loop {
        let schema = server.get("/v1/schema");
        let fields = schema["fields"].as_array().cloned().unwrap_or_default();
        if fields
            .iter()
            .any(|f| f["event"] == "Cart" && f["count"] == 2)
        {
            break fields;
        }
        assert!(
            started.elapsed() < crate::server::PATIENCE,
            "not learned: {schema}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let value = fields
        .iter()
        .find(|f| f["field"] == "properties.value")
        .unwrap();
    assert_eq!(value["types"], "integer|string");
    assert!(fields.iter().any(|f| f["field"] == "properties.sku.id"));
    assert_eq!(server.call("GET", "/v1/schema", None).0, 401);

    let (status, page) = server.text("/metrics", Some(ADMIN));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("tripwire_events_accepted_total 2"), "{page}");
    assert!(page.contains("tripwire_http_requests_total{endpoint=\"/v1/track\",status=\"200\"} 2"));
    assert!(page.contains("tripwire_wal_fsyncs_total"));
    assert!(server.stop().success());
    // Saved with the store: the CLI reads it without a server.
    let table = project.ok(&["schema", "--format", "csv"]);
    let value_row = table
        .lines()
        .find(|l| l.contains(",properties.value,"))
        .unwrap_or_else(|| panic!("no properties.value in {table}"));
    assert!(
        value_row.starts_with("2,Cart,") && value_row.ends_with(",integer|string"),
        "{table}"
    );
}

/// Sends batches of fresh ids from `workers` threads until the server
/// stops answering; every id of a batch answered 200 goes into `acked`.
fn load(
    base: &str,
    round: usize,
    acked: &Arc<Mutex<HashSet<String>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|worker| {
            let (url, acked) = (format!("{base}/v1/batch"), acked.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let client = reqwest::Client::new();
                for n in 0.. {
                    let ids: Vec<String> =
                        (0..10).map(|i| format!("r{round}-w{worker}-{n}-{i}")).collect();
                    let batch: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type": "track", "event": "load", "anonymousId": "a", "messageId": id}))
                        .collect();
                    let sent = runtime.block_on(
                        client
                            .post(&url)
                            .bearer_auth(SECRET)
                            .body(json!({"batch": batch}).to_string())
                            .send(),
                    );
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(200) => acked.lock().unwrap().extend(ids),
                        Ok(_) => {}
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect()
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event_and_stores_each_once() {
    let project = serving_project_with("", "flush_bytes = 20000\n");
    let acked = Arc::new(Mutex::new(HashSet::new()));
    for round in 0..3 {
        let server = Server::start(&project);
        let before = acked.lock().unwrap().len();
        let workers = load(&server.base, round, &acked);
        let started = std::time::Instant::now();
        while acked.lock().unwrap().len() < before + 400 {
            assert!(
                started.elapsed() < crate::server::PATIENCE,
                "the load made no progress"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server.crash();
        for worker in workers {
            worker.join().unwrap();
        }
    }
    // A restart replays the WAL; a graceful stop commits the rest.
    assert!(Server::start(&project).stop().success());
    let stored = project.query("SELECT event_id, count(*) AS n FROM events GROUP BY event_id");
    let twice: Vec<&Value> = stored.iter().filter(|r| r["n"] != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let ids: HashSet<String> = stored
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.difference(&ids).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert!(acked.len() >= 1_200);
}

/// The versions of `table`'s commits that added files.
fn appending_commits(table: &std::path::Path) -> Vec<u64> {
    let mut versions: Vec<u64> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let version = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            let text = std::fs::read_to_string(&path).ok()?;
            text.lines()
                .any(|l| l.starts_with(r#"{"add""#))
                .then_some(version)
        })
        .collect();
    versions.sort();
    versions
}

/// Segments in the WAL folder.
fn wal_segments(project: &crate::project::Project) -> usize {
    std::fs::read_dir(project.path("wal"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sealed_segments_land_in_one_commit_per_flush() {
    // Every append fills its segment, so each request seals one.
    let project = serving_project_with("", "flush_bytes = 1\n");
    let hold = project.path("hold-flush");
    std::fs::write(&hold, "").unwrap();
    let server =
        Server::start_with_env(&project, &[("TRIPWIRE_HOLD_FLUSH", hold.to_str().unwrap())]);
    for i in 0..24 {
        let event = json!({"type": "track", "event": "e", "anonymousId": "a", "messageId": format!("s{i}")});
        let (status, body) =
            server.send(Request::post("/v1/track", event.to_string()).bearer(SECRET));
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        wal_segments(&project) >= 24,
        "one sealed segment per request"
    );
    std::fs::remove_file(&hold).unwrap();
    let started = std::time::Instant::now();
    while wal_segments(&project) > 0 {
        assert!(started.elapsed() < crate::server::PATIENCE, "never flushed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(server.stop().success());
    let commits = appending_commits(&project.events_table("shop"));
    assert_eq!(commits.len(), 1, "24 segments, one flush: {commits:?}");
    let stored = project.number("SELECT count(*) FROM events");
    assert_eq!(stored, 24.0);
}

#[test]
fn a_backlog_over_max_wal_bytes_is_answered_503_and_loses_nothing_acknowledged() {
    let project = serving_project_with("", "flush_bytes = 1\nmax_wal_bytes = 6000\n");
    let hold = project.path("hold-flush");
    std::fs::write(&hold, "").unwrap();
    let server =
        Server::start_with_env(&project, &[("TRIPWIRE_HOLD_FLUSH", hold.to_str().unwrap())]);
    let track = |id: &str| {
        let event = json!({"type": "track", "event": "e", "anonymousId": "a", "messageId": id,
                           "properties": {"pad": "x".repeat(200)}});
        Request::post("/v1/track", event.to_string()).bearer(SECRET)
    };
    let mut acked = Vec::new();
    let (headers, body) = loop {
        let id = format!("b{}", acked.len());
        let (status, headers, body) = server.send_with_headers(track(&id));
        match status {
            200 => acked.push(id),
            503 => break (headers, body),
            other => panic!("{other}: {body}"),
        }
        assert!(acked.len() < 100, "6000 bytes never filled up");
    };
    assert!(acked.len() >= 5, "only {} fit", acked.len());
    assert_eq!(headers["retry-after"], "1");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("max_wal_bytes"), "{body}");
    let (status, health) = server.call("GET", "/healthz", None);
    assert_eq!(status, 503, "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("max_wal_bytes"),
        "{health}"
    );

    std::fs::remove_file(&hold).unwrap();
    let started = std::time::Instant::now();
    while server.call("GET", "/healthz", None).0 != 200 {
        assert!(
            started.elapsed() < crate::server::PATIENCE,
            "never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, body) = server.send(track("after"));
    assert_eq!(status, 200, "{body}");
    acked.push("after".into());
    assert!(server.stop().success());
    let mut stored: Vec<String> = project
        .query("SELECT event_id FROM events")
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    stored.sort();
    acked.sort();
    assert_eq!(
        stored, acked,
        "every acknowledged event, once, and no other"
    );
}
