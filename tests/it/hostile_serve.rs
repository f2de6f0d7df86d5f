//! Issue 13, against a real `tripwire serve`: a hostile client or a failing
//! disk must not stall ingest, and memory must stay bounded whatever the
//! public sends. Slow-loris connections past the cap, a body that never
//! ends, a WAL directory that turns unwritable and back, a rate limit,
//! poison timestamps, deep nesting, all-duplicate requests, and 50,000
//! invented event names against the documented memory bound.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::project::{ADMIN, SECRET};
use crate::server::{PATIENCE, Request, Server, serving_project_with};

/// How often a polling loop looks again.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some`, failing after [`PATIENCE`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "waited {PATIENCE:?} for {what}"
        );
        std::thread::sleep(POLL);
    }
}

fn track(name: &str, id: &str) -> Request<'static> {
    let body = json!({"event": name, "anonymousId": "c-1", "messageId": id});
    Request::post("/v1/track", body.to_string()).bearer(SECRET)
}

/// The `/metrics` page, read with the admin key.
fn metrics_page(server: &Server) -> String {
    let (status, page) = server.text("/metrics", Some(ADMIN));
    assert_eq!(status, 200, "{page}");
    page
}

/// A metric's value on the `/metrics` page (0 when absent).
fn metric(server: &Server, name: &str) -> f64 {
    metrics_page(server)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sockets the process holds open (its listener included).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// A slow-loris client: sends a request head one header line at a time;
/// returns whether the server closed the connection within [`PATIENCE`].
fn slow_loris(addr: String) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let Ok(mut stream) = TcpStream::connect(&addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(POLL));
        let _ = stream.write_all(b"POST /v1/track HTTP/1.1\r\nHost: tripwire\r\n");
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        while started.elapsed() < PATIENCE {
            if stream.write_all(b"X-Slow: still here\r\n").is_err() {
                return true;
            }
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    })
}

#[test]
fn slow_loris_clients_holding_twice_the_connection_cap_cannot_stop_a_normal_client() {
    let cap = 8;
    let project = serving_project_with(
        "",
        &format!("[server]\nmax_connections = {cap}\nheader_timeout = \"1s\"\n"),
    );
    let server = Server::start(&project);
    let baseline = sockets(server.pid());
    let lorises: Vec<_> = (0..2 * cap)
        .map(|_| slow_loris(server.addr().to_string()))
        .collect();
    // The lorises connect (to the backlog, or accepted) before the client.
    std::thread::sleep(POLL);
    let held = sockets(server.pid()).saturating_sub(baseline);
    assert!(
        held <= cap,
        "{held} connections accepted, over the cap of {cap}"
    );

    let (status, body) = server.send(track("ordinary", "m-ordinary"));
    assert_eq!(status, 200, "{body}");
    let closed = lorises
        .into_iter()
        .filter_map(|l| l.join().ok())
        .filter(|c| *c)
        .count();
    assert_eq!(
        closed,
        2 * cap,
        "every slow client was cut off by header_timeout"
    );
    assert_eq!(server.call("GET", "/healthz", None).0, 200);
}

#[test]
fn a_body_that_never_ends_is_answered_408_after_the_request_timeout() {
    let project = serving_project_with("", "[server]\nrequest_timeout = \"1s\"\n");
    let server = Server::start(&project);
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: tripwire\r\nAuthorization: Bearer {SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"event\":"
    );
    stream
        .write_all(head.as_bytes())
        .expect("send a partial body");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.request_timeout (1s)"), "{answer}");
}

/// Makes a directory refuse new entries until dropped: immutable for root
/// (which ignores permissions), read-only otherwise.
struct Unwritable {
    dir: PathBuf,
    immutable: bool,
}

/// `FS_IMMUTABLE_FL` of linux/fs.h.
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

fn set_immutable(dir: &Path, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(dir) else {
        return false;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one long through a
    // pointer to a variable we own, on a descriptor we hold open.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return false;
        }
        flags = if on {
            flags | FS_IMMUTABLE_FL
        } else {
            flags & !FS_IMMUTABLE_FL
        };
        libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) == 0
    }
}

impl Unwritable {
    fn new(dir: &Path) -> Unwritable {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            assert!(
                set_immutable(dir, true),
                "chattr +i {} (needs CAP_LINUX_IMMUTABLE)",
                dir.display()
            );
        } else {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        Unwritable {
            dir: dir.to_path_buf(),
            immutable: root,
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            set_immutable(&self.dir, false);
        } else {
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn an_unwritable_wal_directory_fails_ingest_with_503_and_heals_without_a_restart() {
    let project = serving_project_with("", "");
    let server = Server::start(&project);
    assert_eq!(server.send(track("before", "m-before")).0, 200);
    // Committed, and its segment removed: the next append needs a new file.
    wait_for("the first event to be committed", || {
        let done = metric(&server, "tripwire_events_flushed_total") >= 1.0
            && metric(&server, "tripwire_wal_bytes_pending") == 0.0;
        done.then_some(())
    });

    let broken = Unwritable::new(&project.path("wal"));
    let (status, body) = server.send(track("during", "m-during"));
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("could not be stored durably"),
        "{body}"
    );
    let (status, health) = server.call("GET", "/healthz", None);
    assert_eq!(status, 503, "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap_or("")
            .contains("write-ahead log"),
        "{health}"
    );
    assert!(metric(&server, "tripwire_wal_errors_total") >= 1.0);

    drop(broken);
    wait_for("/healthz to recover", || {
        (server.call("GET", "/healthz", None).0 == 200).then_some(())
    });
    assert_eq!(server.send(track("after", "m-after")).0, 200);
    assert!(server.stop().success());
    let names: Vec<Value> = project
        .query("SELECT event_name FROM events ORDER BY seq")
        .into_iter()
        .map(|r| r["event_name"].clone())
        .collect();
    assert_eq!(names, [json!("before"), json!("after")]);
}

#[test]
fn a_write_key_over_max_events_per_second_is_answered_429_with_retry_after() {
    let project = crate::project::Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\nmax_events_per_second = 5\n\
         [[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\nadmin_secret = \"{ADMIN}\"\n[ingest]\nflush_age = \"200ms\"\n"
    ));
    let server = Server::start(&project);
    let batch = |n: usize| {
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"type": "track", "event": "e", "anonymousId": format!("c{i}")}))
            .collect();
        Request::post("/v1/batch", json!({"batch": items}).to_string()).bearer(SECRET)
    };
    assert_eq!(server.send(batch(5)).0, 200, "a second's worth at once");
    let (status, headers, body) = server.send_with_headers(batch(1));
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("max_events_per_second"),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    let metrics = metrics_page(&server);
    assert!(metrics.contains("status=\"429\"} 1"), "{metrics}");
}

#[test]
fn poison_times_deep_nesting_and_duplicates_are_handled_the_same_on_every_endpoint() {
    let project = serving_project_with("", "");
    let server = Server::start(&project);
    // A float time that would overflow is refused, naming the field.
    let poison = json!({"event": "e", "anonymousId": "c", "timestamp": 1e300});
    let (status, body) = server.send(Request::post("/v1/track", poison.to_string()).bearer(SECRET));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("timestamp: "),
        "{body}"
    );
    let collect = json!({"partnerId": "shop", "partnerSecret": SECRET, "clientId": "c", "type": "track",
        "sentAt": 1e300, "context": {"debug": true}, "properties": {"eventName": "e"}});
    let (status, body) = server.send(Request::post("/http/v1/collect", collect.to_string()));
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("sentAt: "),
        "{body}"
    );

    // A number no float holds is refused wherever it is (found by
    // fuzz/event_shapes: it was stored, and no JSON reader could read it back).
    let huge = r#"{"event":"e","anonymousId":"c","properties":{"n":1524e2776691259}}"#;
    let (status, body) = server.send(Request::post("/v1/track", huge).bearer(SECRET));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("64-bit float"),
        "{body}"
    );

    // 16,000 levels are refused by every endpoint, before any parser recurses.
    let deep = format!("{}1{}", "[".repeat(16_000), "]".repeat(16_000));
    let item =
        format!(r#"{{"type":"track","event":"e","anonymousId":"c","properties":{{"x":{deep}}}}}"#);
    let named = format!(r#"{{"name":"e","user_id":"u","payload":{{"x":{deep}}}}}"#);
    for (path, body) in [
        ("/v1/track", item.clone()),
        ("/v1/batch", format!(r#"{{"batch":[{item}]}}"#)),
        ("/v1/events", named.clone()),
        ("/v1/events", format!("[{named}]")),
    ] {
        let (status, answer) = server.send(Request::post(path, body).bearer(SECRET));
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("deeper than"),
            "{path}: {answer}"
        );
    }

    // A name/payload item with a `type` field is a name/payload event.
    let typed =
        json!({"batch": [{"type": "track", "name": "typed", "payload": {"a": 1}, "user_id": "u"}]});
    let (status, body) = server.send(Request::post("/v1/batch", typed.to_string()).bearer(SECRET));
    assert_eq!(status, 200, "{body}");
    assert!(body.get("rejected").is_none(), "{body}");

    // All-duplicate requests count as duplicates.
    assert_eq!(server.send(track("once", "m-dup")).0, 200);
    assert_eq!(server.send(track("once", "m-dup")).0, 200);
    assert_eq!(metric(&server, "tripwire_events_duplicate_total"), 1.0);
    assert!(server.stop().success());
    let typed = project.number("SELECT count(*) FROM events WHERE event_name = 'typed'");
    assert_eq!(typed, 1.0);
}

#[test]
fn events_at_the_depth_limit_are_held_to_it_inside_every_body() {
    // An event nesting `levels` deep (the event object is level 1).
    let event = |levels: usize| {
        let arrays = levels - 2;
        let deep = format!("{}1{}", "[".repeat(arrays), "]".repeat(arrays));
        format!(r#"{{"name":"e","user_id":"u","payload":{{"x":{deep}}}}}"#)
    };
    let project = serving_project_with("", "");
    let server = Server::start(&project);
    // In an array body each event is read with the body; 64 levels are an
    // event, 65 are refused for that item alone.
    let array = format!("[{},{}]", event(64), event(65));
    let (status, answer) = server.send(Request::post("/v1/events", array).bearer(SECRET));
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    let reason = answer["rejected"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("deeper than 64"), "{answer}");
    // A batch of 64-level events is stored whole; one of 65 levels puts the
    // body past its own bound, refused before any parser recurses.
    let batch = format!(r#"{{"batch":[{},{}]}}"#, event(64), event(64));
    let (status, answer) = server.send(Request::post("/v1/batch", batch).bearer(SECRET));
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("rejected").is_none(), "{answer}");
    let batch = format!(r#"{{"batch":[{},{}]}}"#, event(64), event(65));
    let (status, answer) = server.send(Request::post("/v1/batch", batch).bearer(SECRET));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("deeper than 66"),
        "{answer}"
    );
    assert!(server.stop().success());
    assert_eq!(project.number("SELECT count(*) FROM events"), 3.0);
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// The bound the README documents for `serve` under this test's load with
/// the default limits (max_learned_names = 1000, max_learned_fields = 200).
const RSS_BOUND: u64 = 400 << 20;

#[test]
fn fifty_thousand_invented_event_names_keep_serve_under_its_memory_bound() {
    let project = serving_project_with("", "");
    let server = Server::start(&project);
    let names = 50_000;
    for first in (0..names).step_by(500) {
        let items: Vec<Value> = (first..first + 500)
            .map(|i| {
                json!({"type": "track", "event": format!("invented_{i}"), "anonymousId": "c",
                       "properties": {format!("field_{i}"): i, "shared": "x".repeat(200)}})
            })
            .collect();
        let body = json!({"batch": items}).to_string();
        let (status, answer) = server.send(Request::post("/v1/batch", body).bearer(SECRET));
        assert_eq!(status, 200, "{answer}");
    }
    wait_for("every event to be committed", || {
        (metric(&server, "tripwire_events_flushed_total") >= names as f64).then_some(())
    });
    let schema = wait_for("the schema to be learned", || {
        let schema = server.get("/v1/schema");
        (schema["unlearned"].as_u64() == Some(names - 1000)).then_some(schema)
    });
    let learned: std::collections::BTreeSet<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["event"].as_str())
        .collect();
    assert_eq!(learned.len(), 1000);
    let resident = rss(server.pid());
    eprintln!(
        "serve RSS after {names} invented names: {} MiB",
        resident >> 20
    );
    assert!(
        resident < RSS_BOUND,
        "{} MiB over the {} MiB bound",
        resident >> 20,
        RSS_BOUND >> 20
    );
    let saved = wait_for("schema.json to be saved", || {
        std::fs::metadata(project.path("store/shop/state/schema.json")).ok()
    });
    assert!(
        saved.len() < 1 << 20,
        "schema.json is {} bytes",
        saved.len()
    );
}
