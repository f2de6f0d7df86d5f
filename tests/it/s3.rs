//! Storage on S3 (`storage = "s3://…"`) against a real S3-compatible server:
//! moto's server mode (`pip install 'moto[server]'`), started per test as a
//! child process on loopback. Each scenario runs on a local store and on the
//! S3 store and must give the same counts: an import of an `s3://` glob of
//! gzipped NDJSON, ingest through `serve` with a `kill -9` and a restart,
//! trigger runs with deliveries, `optimize --vacuum` and `erase`. And the
//! start-up probe refuses a server that ignores create-only writes, naming
//! the storage URL and the reason. Without moto the tests skip, except
//! under CI, where they fail.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::project::{ADMIN, Project, SECRET};
use crate::server::{PATIENCE, Request, Server};

/// The bucket every test stores in.
const BUCKET: &str = "tripwire-test";

/// A moto S3 server on a free loopback port, killed when dropped.
pub(crate) struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts moto with one empty bucket; `None` (outside CI) without moto.
    pub(crate) fn start() -> Option<Moto> {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server, flask"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have moto's server: pip install 'moto[server]'"
            );
            eprintln!("skipped: `pip install 'moto[server]'` to run the S3 tests");
            return None;
        }
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let moto = Moto { child, port };
        let started = Instant::now();
        while moto.http("PUT", &format!("/{BUCKET}"), b"") != Some(200) {
            assert!(started.elapsed() < PATIENCE, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stores `body` as the object `key` of the bucket.
    fn put(&self, key: &str, body: &[u8]) {
        let status = self.http("PUT", &format!("/{BUCKET}/{key}"), body);
        assert_eq!(status, Some(200), "PUT {key}");
    }

    /// One plain HTTP/1.1 request; the status, or `None` if nothing answered.
    fn http(&self, method: &str, path: &str, body: &[u8]) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.split_whitespace().nth(1)?.parse().ok()
    }

    /// The `[storage]` table of a project stored under `prefix` in the bucket.
    pub(crate) fn storage(&self, prefix: &str) -> String {
        format!(
            "[storage]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
             allow_http = true\n",
            self.endpoint()
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// A project stored as `storage` says (a `storage =` line or a
/// `[storage]` table), with top-level keys `top` and tables `tables`.
fn project_on(storage: &str, top: &str, tables: &str) -> Project {
    Project::with_config(&format!(
        "{top}\n{storage}\n[[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n\
         admin_secret = \"{ADMIN}\"\n{tables}"
    ))
}

const LOCAL: &str = "storage = \"./store\"\n";

fn gzip(path: &std::path::Path) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(&std::fs::read(path).expect("read sample"))
        .expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn an_s3_glob_of_gzipped_ndjson_imports_as_the_local_files_do() {
    let Some(moto) = Moto::start() else { return };
    let local = project_on(LOCAL, "", "");
    let remote = project_on(&moto.storage("import"), "", "");
    let mut locals = Vec::new();
    for (i, seed) in [(0, 31), (1, 32)] {
        let (file, _) = local.sample(&format!("part-{i}.ndjson"), 1_200, seed);
        let gz = local.path(&format!("part-{i}.ndjson.gz"));
        std::fs::write(&gz, gzip(&file)).unwrap();
        moto.put(
            &format!("in/part-{i}.ndjson.gz"),
            &std::fs::read(&gz).unwrap(),
        );
        locals.push(gz);
    }
    // Neither matches the glob.
    moto.put("in/notes.csv", b"event_name,user_id\nx,y\n");
    moto.put("in/deeper/part-9.ndjson.gz", b"not gzip");

    let paths: Vec<&std::path::Path> = locals.iter().map(|p| p.as_path()).collect();
    let local_summary = local.import(&paths);
    let glob = format!("s3://{BUCKET}/in/*.ndjson.gz");
    let remote_summary = remote.ok(&["import", &glob]);
    assert!(
        remote_summary.contains("from 2 file(s), 0 bad lines"),
        "{remote_summary}"
    );
    let counts = |p: &Project| {
        p.query(
            "SELECT type, event_name, count(*) AS n, count(DISTINCT event_id) AS ids \
             FROM events GROUP BY type, event_name ORDER BY type, event_name",
        )
    };
    let want = counts(&local);
    assert!(!want.is_empty(), "{local_summary}");
    assert_eq!(counts(&remote), want);
    // Nothing of the store is on the local disk.
    assert!(!remote.path("store").exists() && !remote.path("data").exists());
    // Importing again stores nothing new; a missing object is named.
    let again = remote.ok(&["import", &glob]);
    assert!(again.contains("imported 0 events"), "{again}");
    assert_eq!(counts(&remote), want);
    let missing = remote.run(&["import", &format!("s3://{BUCKET}/in/nothing-*.ndjson")]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("nothing-*.ndjson"), "{stderr}");
}

/// Sends 30 batches of 10 fresh events (each must be acknowledged), kills
/// `serve` with `kill -9`, restarts it and stops it gracefully; returns how
/// many events are stored and how many ids are stored more than once.
fn ingest_across_a_crash(project: &Project) -> (u64, u64) {
    let server = Server::start(project);
    for n in 0..30 {
        let batch: Vec<_> = (0..10)
            .map(|i| json!({"type": "track", "event": "load", "anonymousId": "a", "messageId": format!("b{n}-{i}")}))
            .collect();
        let body = json!({ "batch": batch }).to_string();
        let (status, answer) = server.send(Request::post("/v1/batch", body).bearer(SECRET));
        assert_eq!(status, 200, "{answer}");
    }
    server.crash();
    assert!(Server::start(project).stop().success());
    let stored = project.number("SELECT count(*) FROM events") as u64;
    let twice = project.number(
        "SELECT count(*) FROM (SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1)",
    ) as u64;
    (stored, twice)
}

#[test]
fn serve_on_s3_loses_no_acknowledged_event_across_kill_9() {
    let Some(moto) = Moto::start() else { return };
    // Small segments: some are committed before the crash, the rest replayed.
    let (top, ingest) = (
        "listen = \"127.0.0.1:0\"",
        "[ingest]\nflush_bytes = 20000\nflush_age = \"200ms\"\n",
    );
    let local = ingest_across_a_crash(&project_on(LOCAL, top, ingest));
    let remote = ingest_across_a_crash(&project_on(&moto.storage("ingest"), top, ingest));
    assert_eq!(local, (300, 0));
    assert_eq!(remote, local);
}

const CARTS: &str = "-- backfill: all\n-- requires_identity: true\n\
    SELECT client_id, user_id, email, event_id FROM new_events WHERE event_name = 'cart'\n";

const FLOW: &str = "trigger = \"carts\"\n[[branch]]\nactions = [\"audit\"]\n\
    [actions.audit]\ntype = \"file\"\npath = \"deliveries/carts.ndjson\"\n";

const EVENTS: &str = r#"{"type": "identify", "anonymousId": "c-ann", "userId": "u-ann", "traits": {"email": "ann@example.com"}, "messageId": "i1", "timestamp": "2026-11-01T00:00:00Z"}
{"type": "track", "event": "cart", "anonymousId": "c-ann", "messageId": "t1", "timestamp": "2026-11-01T00:01:00Z"}
{"name": "cart", "payload": {}, "email": "ann@example.com", "event_id": "t2", "timestamp": "2026-11-01T00:02:00Z"}
{"name": "cart", "payload": {}, "email": "bo@example.com", "event_id": "t3", "timestamp": "2026-11-01T00:03:00Z"}
{"name": "view", "payload": {}, "user_id": "u-ann", "event_id": "t4", "timestamp": "2026-11-01T00:04:00Z"}
"#;

/// Imports, runs the trigger (file deliveries), optimizes with vacuum,
/// erases ann and runs again; the counts seen along the way.
fn trigger_maintain_erase(project: &Project) -> Vec<u64> {
    let write = |path: &str, text: &str| {
        let path = project.path(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("queries/triggers/carts.sql", CARTS);
    write("flows/audit.toml", FLOW);
    let count = |sql: &str| project.number(sql) as u64;
    let lines = || {
        std::fs::read_to_string(project.path("deliveries/carts.ndjson"))
            .map_or(0, |text| text.lines().count() as u64)
    };
    let mut seen = Vec::new();
    for i in 0..3 {
        // Three imports: small files for optimize to merge.
        let name = format!("events-{i}.ndjson");
        let text = EVENTS
            .replace("\"messageId\": \"", &format!("\"messageId\": \"{i}"))
            .replace("\"event_id\": \"", &format!("\"event_id\": \"{i}"));
        write(&name, &text);
        project.import(&[&project.path(&name)]);
    }
    project.ok(&["run", "--now", "2026-11-02T00:00:00Z"]);
    seen.extend([
        count("SELECT count(*) FROM events"),
        count("SELECT count(*) FROM matches"),
        count("SELECT count(*) FROM deliveries WHERE status = 'delivered'"),
        lines(),
    ]);
    let optimized = project.ok(&["optimize", "--vacuum"]);
    assert!(optimized.contains("shop"), "{optimized}");
    seen.extend([
        count("SELECT count(*) FROM events"),
        count("SELECT count(*) FROM matches"),
    ]);
    let erased = project.ok(&["erase", "--email", "ann@example.com"]);
    assert!(erased.contains("erased"), "{erased}");
    seen.extend([
        count("SELECT count(*) FROM events"),
        count("SELECT count(*) FROM matches"),
        count("SELECT count(*) FROM deliveries WHERE contact = 'erased'"),
        count("SELECT count(*) FROM erasures"),
        lines(),
    ]);
    // Nothing fires again after the erasure rewrote the files.
    let run = project.ok(&["run", "--now", "2026-11-02T00:00:00Z"]);
    assert!(!run.contains("error"), "{run}");
    seen.push(count("SELECT count(*) FROM matches"));
    seen
}

#[test]
fn runs_deliveries_optimize_and_erase_on_s3_count_as_on_a_local_store() {
    let Some(moto) = Moto::start() else { return };
    let local = trigger_maintain_erase(&project_on(LOCAL, "", ""));
    let remote = trigger_maintain_erase(&project_on(&moto.storage("runs"), "", ""));
    // 15 events, 9 carts matched and delivered as file lines; ann's 12
    // events and 6 matches erased.
    assert_eq!(local, [15, 9, 9, 9, 15, 9, 3, 3, 6, 1, 3, 3]);
    assert_eq!(remote, local);
}

#[test]
fn plain_aws_variables_configure_s3_storage() {
    let Some(moto) = Moto::start() else { return };
    let project = project_on(&format!("storage = \"s3://{BUCKET}/env\""), "", "");
    let (file, totals) = project.sample("a.ndjson", 500, 5);
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ];
    let run = |args: &[&str]| {
        let out = project
            .command(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["import", file.to_str().unwrap()]);
    let stored = run(&[
        "query",
        "SELECT count(*) AS n FROM events",
        "--format",
        "json",
    ]);
    let expected = totals.per_name.values().sum::<u64>() + totals.identifies;
    assert!(stored.contains(&format!("\"n\":{expected}")), "{stored}");
}

/// An "S3" server on loopback that answers every request 200, as a server
/// that ignores `If-None-Match` would answer the second create-only PUT;
/// it keeps each request's line and whether it had `If-None-Match: *`.
fn careless_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = stream.read_exact(&mut body);
            let conditional = text.lines().any(|l| l.trim() == "if-none-match: *");
            let line = text.lines().next().unwrap_or_default().to_string();
            record
                .lock()
                .unwrap()
                .push(format!("{line} conditional={conditional}"));
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, seen)
}

#[test]
fn a_server_that_ignores_conditional_writes_is_refused_before_anything_is_written() {
    let (port, seen) = careless_server();
    let project = project_on(
        &format!(
            "[storage]\nurl = \"s3://{BUCKET}/careless\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
             allow_http = true\n"
        ),
        "",
        "",
    );
    let (file, _) = project.sample("a.ndjson", 10, 1);
    let out = project.run(&["import", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the exit status of broken storage"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("s3://{BUCKET}/careless"))
            && stderr.contains("ignores create-only writes"),
        "{stderr}"
    );
    // Two create-only PUTs of one probe object, and nothing else written.
    let seen = seen.lock().unwrap().clone();
    let puts: Vec<&String> = seen.iter().filter(|l| l.starts_with("put ")).collect();
    assert_eq!(puts.len(), 2, "{seen:?}");
    assert_eq!(puts[0], puts[1]);
    assert!(
        puts[0].contains("/careless/_probe/") && puts[0].ends_with("conditional=true"),
        "{seen:?}"
    );
    // `serve` refuses the same way, before it listens or replays anything.
    let out = project.run(&["serve"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ignores create-only writes"), "{stderr}");
}
