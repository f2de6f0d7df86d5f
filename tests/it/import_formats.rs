//! Each input format and shape lands in the events table with its values.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::project::{Project, SECRET};

#[test]
fn ndjson_in_all_three_shapes() {
    let project = Project::new();
    let (file, totals) = project.sample("events.ndjson", 3_000, 1);
    let summary = project.import(&[&file]);
    assert!(summary.contains("imported 3000 events"), "{summary}");
    project.assert_holds(&totals);
    let sum = project.number("SELECT sum(json_get_float(properties, 'cart_value')) FROM events WHERE event_name = 'cart_abandoned'");
    assert!(
        (sum - totals.cart_value_sum).abs() < 1e-6,
        "{sum} vs {}",
        totals.cart_value_sum
    );
    let distinct =
        project.number("SELECT count(DISTINCT event_id) + count(DISTINCT seq) FROM events");
    assert_eq!(distinct, 6_000.0, "event ids and seqs are unique");
}

#[test]
fn gzip_ndjson() {
    let project = Project::new();
    let (plain, totals) = project.sample("events.ndjson", 2_000, 2);
    let gz = project.path("events.ndjson.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    encoder.finish().unwrap();
    project.import(&[&gz]);
    project.assert_holds(&totals);
}

#[test]
fn the_seed_collect_envelope() {
    let project = Project::new();
    // seeds/004's example body with its placeholders filled in, as one NDJSON line.
    let body = r#"{ "partnerId": "shop", "clientId": "92adbc3c-c22b-49bf-a9ae-11d9e8b3e6b4", "context": { "debug": true }, "partnerSecret": "test-secret", "sentAt": 1524776691259, "type": "track", "properties": { "eventName": "some_event", "properties":{ "someProperty": "Some value" } }, "traits": { "userId": "97980cfea0067", "email": "[email protected]" }, "event": "custom" }"#;
    assert!(body.contains(SECRET));
    let file = project.path("seed.ndjson");
    std::fs::write(&file, format!("{body}\n")).unwrap();
    project.import(&[&file]);
    let rows = project.query(
        "SELECT event_name, client_id, user_id, email, properties->>'someProperty' AS prop, \
         CAST(sent_at AS VARCHAR) AS sent_at, requires_identity, json_get_bool(envelope, 'context', 'debug') AS debug FROM events",
    );
    assert_eq!(
        rows,
        vec![serde_json::json!({
            "event_name": "some_event",
            "client_id": "92adbc3c-c22b-49bf-a9ae-11d9e8b3e6b4",
            "user_id": "97980cfea0067",
            "email": "[email protected]",
            "prop": "Some value",
            "sent_at": "2018-04-26T21:04:51.259Z",
            "requires_identity": true,
            "debug": true
        })]
    );
}

#[test]
fn csv_with_payload_columns() {
    let project = Project::new();
    let file = project.path("events.csv");
    std::fs::write(
        &file,
        "event_name,type,email,user_id,client_id,sent_at,cart_value,sku\n\
         cart_abandoned,,a@x.com,,c1,2026-11-01T10:00:00Z,120.5,S1\n\
         cart_abandoned,track,b@x.com,,c2,1793527200000,30,\"S,2\"\n\
         ,identify,c@x.com,u3,c3,2026-11-01T11:00:00Z,,\n",
    )
    .unwrap();
    project.import(&[&file]);
    let rows = project.query(
        "SELECT email, json_get_float(properties, 'cart_value') AS v, properties->>'sku' AS sku, type \
         FROM events ORDER BY email",
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["v"], 120.5);
    assert_eq!(rows[1]["sku"], "S,2");
    assert_eq!(rows[1]["v"], 30.0);
    assert_eq!(rows[2]["type"], "identify");
    let identities = project.ok(&[
        "query",
        "SELECT user_id FROM identities WHERE client_id IS NOT NULL",
        "--now",
        "2026-11-02T00:00:00Z",
        "--format",
        "csv",
    ]);
    assert_eq!(identities, "user_id\nu3\n");
}

#[test]
fn parquet_with_table_columns() {
    let project = Project::new();
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_name", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new(
            "sent_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("amount", DataType::Int64, true),
    ]));
    let rows = 70_000; // more than one chunk
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| {
                if i % 2 == 0 {
                    "deposit_started"
                } else {
                    "page_view"
                }
            }))),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("u{}", i % 100)),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    (0..rows).map(|i| 1_793_491_200_000 + i),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(0..rows)),
        ],
    )
    .unwrap();
    let file = project.path("events.parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&file).unwrap(), schema, None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    project.import(&[&file]);
    let got = project.query(
        "SELECT event_name, count(*) AS n, sum(json_get_int(properties, 'amount')) AS total, \
         CAST(min(sent_at) AS VARCHAR) AS first FROM events GROUP BY event_name ORDER BY event_name",
    );
    let half = rows as u64 / 2;
    assert_eq!(got[0]["event_name"], "deposit_started");
    assert_eq!(got[0]["n"], half);
    assert_eq!(got[0]["total"], (0..rows).step_by(2).sum::<i64>());
    assert_eq!(got[0]["first"], "2026-11-01T00:00:00Z");
    assert_eq!(got[1]["n"], half);
}

#[test]
fn identities_are_the_latest_identify_within_the_ttl() {
    let project = Project::new();
    let (file, _) = project.sample("events.ndjson", 3_000, 3);
    project.import(&[&file]);
    // The expectation, computed from the file itself rather than by tripwire.
    let now_ms = 1_793_491_200_000 + 36 * 3_600_000; // 2026-11-02T12:00:00Z
    let mut latest: HashMap<String, (i64, String)> = HashMap::new();
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] != "identify" {
            continue;
        }
        let client = v["clientId"]
            .as_str()
            .or(v["anonymousId"].as_str())
            .unwrap()
            .to_string();
        let time = v["sentAt"].as_i64().unwrap_or_else(|| {
            chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        });
        let email = v["traits"]["email"].as_str().unwrap().to_string();
        if time <= now_ms && latest.get(&client).is_none_or(|(t, _)| time > *t) {
            latest.insert(client, (time, email));
        }
    }
    let out = project.ok(&[
        "query",
        "SELECT client_id, email FROM identities WHERE client_id IS NOT NULL ORDER BY client_id",
        "--now",
        "2026-11-02T12:00:00Z",
        "--format",
        "json",
    ]);
    let got: HashMap<String, String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| {
            (
                r["client_id"].as_str().unwrap().to_string(),
                r["email"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: HashMap<String, String> = latest.into_iter().map(|(c, (_, e))| (c, e)).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // Eight days later every mapping has expired.
    let expired = project.ok(&[
        "query",
        "SELECT count(*) AS n FROM identities",
        "--now",
        "2026-11-11T00:00:00Z",
        "--format",
        "csv",
    ]);
    assert_eq!(expired, "n\n0\n");
}
