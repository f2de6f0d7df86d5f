//! The stored data is standard Delta/Parquet: the python `deltalake`
//! package reads the table's log, DuckDB reads the Parquet files it lists,
//! and both agree with tripwire. `.ci/run` installs both packages; outside
//! CI the test says how to install them and skips if they are missing.

use std::process::Command;

use crate::project::Project;

const READER: &str = r#"
import json, sys
import duckdb
from deltalake import DeltaTable
table = DeltaTable(sys.argv[1])
files = table.file_uris()
con = duckdb.connect()
rows = con.execute(
    "SELECT event_name, count(*), sum(CAST(json_extract(properties, '$.cart_value') AS DOUBLE)), "
    "count(DISTINCT event_id), min(sent_at)::VARCHAR FROM read_parquet(?) GROUP BY event_name ORDER BY event_name NULLS FIRST",
    [files],
).fetchall()
print(json.dumps({"version": table.version(), "files": len(files), "rows": rows}))
"#;

fn python_has_readers() -> bool {
    Command::new("python3")
        .args(["-c", "import deltalake, duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn deltalake_and_duckdb_read_what_tripwire_stored() {
    if !python_has_readers() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the python packages: pip install deltalake duckdb"
        );
        eprintln!("skipped: `pip install deltalake duckdb` to run the interop test");
        return;
    }
    let project = Project::new();
    let (first, _) = project.sample("a.ndjson", 1_500, 8);
    let (second, _) = project.sample("b.ndjson", 1_500, 9);
    project.import(&[&first, &second]);
    let out = Command::new("python3")
        .args(["-c", READER])
        .arg(project.events_table("shop"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let external: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = project.query(
        "SELECT event_name, count(*) AS n, sum(json_get_float(properties, 'cart_value')) AS v, \
         count(DISTINCT event_id) AS ids FROM events GROUP BY event_name ORDER BY event_name NULLS FIRST",
    );
    let rows = external["rows"].as_array().unwrap();
    assert_eq!(rows.len(), ours.len());
    for (theirs, ours) in rows.iter().zip(&ours) {
        assert_eq!(theirs[0], ours["event_name"]);
        assert_eq!(theirs[1], ours["n"]);
        let (a, b) = (
            theirs[2].as_f64().unwrap_or(0.0),
            ours["v"].as_f64().unwrap_or(0.0),
        );
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        assert_eq!(theirs[3], ours["ids"]);
    }
    assert_eq!(external["version"], 2, "create + one commit per file");
}
