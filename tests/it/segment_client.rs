//! Segment's own python library (`segment-analytics-python`), pointed at a
//! real `tripwire serve`, sends tracks and an identify that land in the
//! events table as docs/reference.md "Ingest API" maps them. The sender is `segment_client.py`;
//! `.ci/run` installs the library, and without it the test fails saying how
//! to install it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::project::SECRET;
use crate::server::{Server, serving_project};

const INSTALL: &str = "pip install segment-analytics-python==2.4.0";

fn script() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/segment_client.py"
    ))
}

fn assert_library_installed() {
    let out = Command::new("python3")
        .args(["-c", "import segment.analytics"])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the Segment python library is missing, `{INSTALL}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A JSON text column read back as JSON (Null when the column is null).
fn json_column(row: &Value, column: &str) -> Value {
    row[column]
        .as_str()
        .map(|text| serde_json::from_str(text).expect("a JSON column"))
        .unwrap_or(Value::Null)
}

fn millis(timestamp: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .unwrap_or_else(|e| panic!("{timestamp:?}: {e}"))
        .timestamp_millis()
}

#[test]
fn the_segment_python_library_sends_tracks_and_identifies_that_land() {
    assert_library_installed();
    let project = serving_project();
    let server = Server::start(&project);
    let out = Command::new("python3")
        .arg(script())
        .args([server.base.as_str(), SECRET])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the Segment library's calls failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the library built and sent, by the messageId it generated.
    let sent: BTreeMap<String, Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a message"))
        .map(|message| (message["messageId"].as_str().unwrap().to_string(), message))
        .collect();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(server.stop().success());

    let rows = project.query(
        "SELECT event_id, type, event_name, client_id, user_id, email, properties, traits, \
         sent_at, envelope FROM events",
    );
    let stored: BTreeMap<String, &Value> = rows
        .iter()
        .map(|row| (row["event_id"].as_str().unwrap().to_string(), row))
        .collect();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        sent.keys().collect::<Vec<_>>(),
        "each messageId stored once: {rows:?}"
    );
    for (id, message) in &sent {
        let row = stored[id];
        let kind = message["type"].as_str().unwrap();
        assert_eq!(row["type"], message["type"], "{id}");
        assert_eq!(row["client_id"], message["anonymousId"], "{id}");
        assert_eq!(row["user_id"], message["userId"], "{id}");
        assert_eq!(
            millis(row["sent_at"].as_str().unwrap()),
            millis(message["timestamp"].as_str().unwrap()),
            "timestamp → sent_at for {id}"
        );
        let envelope = json_column(row, "envelope");
        assert_eq!(envelope["context"]["library"]["name"], "analytics-python");
        if kind == "track" {
            assert_eq!(row["event_name"], message["event"], "{id}");
            assert_eq!(json_column(row, "properties"), message["properties"]);
        } else {
            assert_eq!(kind, "identify");
            assert_eq!(row["email"], message["traits"]["email"]);
            assert_eq!(json_column(row, "traits"), message["traits"]);
        }
    }
    let names = project.query(
        "SELECT event_name, count(*) AS n FROM events WHERE type = 'track' \
         GROUP BY event_name ORDER BY event_name",
    );
    assert_eq!(
        names,
        [
            serde_json::json!({"event_name": "Cart Viewed", "n": 1}),
            serde_json::json!({"event_name": "Order Completed", "n": 1}),
            serde_json::json!({"event_name": "Product Viewed", "n": 1}),
        ]
    );
}
