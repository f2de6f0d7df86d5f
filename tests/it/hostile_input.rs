//! Issue 13 on `tripwire import` and `tripwire check`: a 20 MiB line
//! imports and a line over `max_line_bytes` is refused with its file and
//! line (no spinning), a truncated gzip keeps its complete lines and says
//! where it broke, a mistyped Parquet column is refused per row, poison
//! times are quarantined, and `check` points at the bad line of every
//! problem and ends with a whole summary.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::json;

use crate::project::{Project, SECRET};
use crate::server::PATIENCE;

/// Runs `tripwire ARGS`, killing it (and failing) if it runs past
/// [`PATIENCE`]: an import that spins must fail the test, not hang it.
fn run_bounded(project: &Project, args: &[&str]) -> Output {
    let mut child = project
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tripwire");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("tripwire {args:?} still running after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn event_line(name: &str, payload: &str) -> String {
    json!({"name": name, "user_id": "u", "payload": {"blob": payload}}).to_string()
}

#[test]
fn a_20_mib_line_imports_and_a_line_over_max_line_bytes_is_refused_with_its_line() {
    let project = Project::with_config(&format!(
        "storage = \"./store\"\nmax_line_bytes = 25165824\n\
         [[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n"
    ));
    let big = "x".repeat(20 << 20);
    let huge = "y".repeat(30 << 20);
    let file = project.path("long.ndjson");
    let mut out = std::fs::File::create(&file).expect("create");
    for line in [
        event_line("first", "a"),
        event_line("big", &big),
        event_line("huge", &huge),
        event_line("last", "z"),
    ] {
        writeln!(out, "{line}").expect("write");
    }
    drop(out);
    let output = run_bounded(&project, &["import", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("long.ndjson:3: the line is longer than max_line_bytes (25165824 bytes)"),
        "{stderr}"
    );
    assert!(
        text(&output.stdout).contains("imported 3 events"),
        "{}",
        text(&output.stdout)
    );
    let rows = project.query(
        "SELECT event_name, length(json_get_str(properties, 'blob')) AS n FROM events ORDER BY seq",
    );
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["event_name"].as_str().unwrap().to_string(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("first".into(), 1),
            ("big".into(), 20 << 20),
            ("last".into(), 1)
        ]
    );
    let reason = project.query("SELECT source, reason FROM quarantine");
    assert_eq!(reason.len(), 1, "{reason:?}");
}

#[test]
fn a_truncated_gzip_keeps_every_complete_line_and_reports_where_it_broke() {
    let project = Project::new();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        // Incompressible enough that the cut falls mid-file.
        let noise = format!("{:x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        writeln!(
            encoder,
            "{}",
            event_line(&format!("e{i}"), &noise.repeat(8))
        )
        .unwrap();
    }
    let whole = encoder.finish().unwrap();
    let cut = &whole[..whole.len() * 2 / 3];
    let file = project.path("events.ndjson.gz");
    std::fs::write(&file, cut).unwrap();
    // What a reader can recover: the complete lines before the break.
    let mut readable = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(cut).read_to_end(&mut readable);
    let complete = readable.iter().filter(|b| **b == b'\n').count();
    assert!((100..2000).contains(&complete), "{complete}");

    let output = run_bounded(&project, &["import", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let expected = format!(
        "events.ndjson.gz:{}: the input breaks in this line (after {complete} complete lines)",
        complete + 1
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(
        project.number("SELECT count(*) FROM events"),
        complete as f64
    );
}

#[test]
fn a_parquet_column_of_the_wrong_type_is_refused_per_row_never_coerced() {
    let project = Project::new();
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_name", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("sent_at", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(StringArray::from(vec!["u1", "u2", "u3"])),
            Arc::new(Float64Array::from(vec![Some(1.7e12), None, Some(1e300)])),
        ],
    )
    .unwrap();
    let file = project.path("typed.parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&file).unwrap(), schema, None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let output = run_bounded(&project, &["import", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    for row in [1, 3] {
        let line = format!("typed.parquet:{row}: column sent_at holds Float64");
        assert!(stderr.contains(&line), "{stderr}");
    }
    let names = project.query("SELECT event_name FROM events");
    assert_eq!(
        names,
        [json!({"event_name": "b"})],
        "only the row without a value"
    );
    assert_eq!(project.number("SELECT count(*) FROM quarantine"), 2.0);
}

#[test]
fn poison_times_are_quarantined_on_import_in_every_format() {
    let project = Project::new();
    let ndjson = project.path("times.ndjson");
    std::fs::write(
        &ndjson,
        [
            r#"{"name":"ok","user_id":"u","timestamp":"2024-01-01T00:00:00Z"}"#,
            r#"{"name":"float","user_id":"u","timestamp":1e300}"#,
            r#"{"type":"track","event":"old","userId":"u","timestamp":"1969-12-31T23:59:59Z"}"#,
            r#"{"partnerId":"shop","partnerSecret":"test-secret","clientId":"c","type":"track","sentAt":9223372036854775807,"properties":{"eventName":"max"}}"#,
            r#"{"type":"track","name":"typed","payload":{},"user_id":"u"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let csv = project.path("times.csv");
    std::fs::write(
        &csv,
        "event_name,user_id,sent_at\nok,u,1700000000000\nfar,u,2200-01-01T00:00:00Z\n",
    )
    .unwrap();
    let output = run_bounded(
        &project,
        &["import", ndjson.to_str().unwrap(), csv.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    for problem in [
        "times.ndjson:2: timestamp: ",
        "times.ndjson:3: timestamp: ",
        "times.ndjson:4: sentAt: ",
        "times.csv:3: sent_at: ",
    ] {
        assert!(stderr.contains(problem), "{problem}\n{stderr}");
    }
    let names: Vec<String> = project
        .query("SELECT event_name FROM events ORDER BY event_name")
        .iter()
        .map(|r| r["event_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ok", "ok", "typed"]);
}

fn write_trigger(project: &Project, name: &str, text: &str) {
    let dir = project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.sql")), text).unwrap();
}

#[test]
fn check_names_the_bad_line_of_every_problem_and_ends_with_a_whole_summary() {
    let project = Project::new();
    write_trigger(
        &project,
        "headers",
        "-- schedule: every day\n-- activ: yes\n-- active: maybe\nSELECT email FROM new_events\n",
    );
    write_trigger(
        &project,
        "column",
        "-- description: a typo\nSELECT client_id,\n       email,\n       emial\nFROM new_events\n",
    );
    let output = run_bounded(&project, &["check"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    for problem in [
        "headers.sql:1: ",
        "headers.sql:2: unknown header key \"activ\"",
        "headers.sql:3: active: ",
        "column.sql:4: ",
    ] {
        assert!(stderr.contains(problem), "{problem}\n{stderr}");
    }
    let dir = std::path::absolute(project.dir.path()).unwrap();
    let summary = format!("error: 4 problem(s) in the project at {}", dir.display());
    assert!(stderr.trim_end().ends_with(&summary), "{stderr}");
    assert!(Path::new(&dir).is_dir());
}

#[test]
fn parquet_files_the_parquet_reader_panics_on_are_refused_as_unreadable() {
    // Found by fuzz/parquet_import: the parquet crate panics on a negative
    // column chunk offset (checked before reading) and on definition levels
    // that run past their buffer (caught); the import says the file is
    // unreadable instead of losing its reader thread.
    let project = Project::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    for (fixture, why) in [
        ("negative_column_start.parquet", "lies outside the file"),
        ("bad_definition_levels.parquet", "the Parquet reader failed"),
    ] {
        let file = project.path("broken.parquet");
        std::fs::copy(fixtures.join(fixture), &file).expect("copy the fixture");
        let output = run_bounded(&project, &["import", file.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{fixture}: {output:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("broken.parquet: not a readable Parquet file") && stderr.contains(why),
            "{fixture}: {stderr}"
        );
        assert!(!stderr.contains("reader thread panicked"), "{stderr}");
    }
}
