//! `tripwire serve`: a real child process on a free loopback port, talked to
//! over real HTTP. Its scheduler runs triggers on their schedules and picks
//! up added, edited and deleted trigger files without a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::project::{Project, SECRET};

/// How long a test waits for the scheduler to get somewhere before failing.
const PATIENCE: Duration = Duration::from_secs(90);

fn serving_project() -> Project {
    Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n\
         [[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n"
    ))
}

/// A running `tripwire serve`, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(project: &Project) -> Server {
        let mut child = project
            .command(&["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tripwire serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("a first line").expect("utf-8");
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        // Keep draining stdout (run reports) so the child never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, base }
    }

    fn call(&self, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let url = format!("{}{path}", self.base);
            let mut request = match method {
                "POST" => client.post(url),
                _ => client.get(url),
            };
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.expect("HTTP request");
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    /// `GET path` with the workspace key; must answer 200.
    fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, Some(SECRET));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn runs(&self, trigger: &str) -> Vec<Value> {
        self.get(&format!("/v1/runs?trigger={trigger}"))["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls the run history until `done` holds for `trigger`'s runs.
    fn wait_for_runs(
        &self,
        trigger: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let runs = self.runs(trigger);
            if done(&runs) {
                return runs;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {trigger}: {what}; runs: {runs:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        self.child.wait().expect("wait for serve")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate(child: &Child) {
    // SAFETY: kill(2) with a pid we own and a valid signal number.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

fn write_trigger(project: &Project, name: &str, text: &str) {
    let dir = project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.sql")), text).unwrap();
}

/// The table version of the events table's latest commit.
fn events_version(project: &Project) -> i64 {
    let log = project.events_table("shop").join("_delta_log");
    std::fs::read_dir(log)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json")?.parse::<i64>().ok()
        })
        .max()
        .expect("a committed events table")
}

const EVERY_EVENT: &str = "-- schedule: every 1s\n-- requires_identity: false\n\
     SELECT event_id, email, user_id, client_id FROM new_events\n";

#[test]
fn the_api_serves_triggers_runs_and_previews_with_the_workspace_key() {
    let project = serving_project();
    write_trigger(&project, "everything", EVERY_EVENT);
    let (file, totals) = project.sample("events.ndjson", 600, 21);
    project.import(&[&file]);
    let server = Server::start(&project);

    assert_eq!(server.call("GET", "/healthz", None).0, 200);
    assert_eq!(server.call("GET", "/v1/runs", None).0, 401);
    assert_eq!(server.call("GET", "/v1/runs", Some("wrong")).0, 401);
    assert_eq!(
        server
            .call("GET", "/v1/runs?workspace=nope", Some(SECRET))
            .0,
        400
    );

    let runs = server.wait_for_runs("everything", "a committed run", |r| !r.is_empty());
    let all_events = (totals.events) as i64;
    assert_eq!(runs[0]["matched"].as_i64(), Some(all_events), "{runs:?}");
    assert_eq!(
        runs[0]["to_version"].as_i64(),
        Some(events_version(&project))
    );

    let triggers = server.get("/v1/triggers");
    let listed = &triggers["triggers"][0];
    assert_eq!(listed["trigger"], "everything");
    assert_eq!(listed["cursor"].as_i64(), Some(events_version(&project)));

    // A preview over all history fires nothing and commits nothing.
    let (status, preview) = server.call(
        "POST",
        "/v1/triggers/everything/preview?all=true",
        Some(SECRET),
    );
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["matched"].as_i64(), Some(all_events));
    assert_eq!(
        preview["matches"].as_array().map(Vec::len),
        Some(totals.events as usize)
    );
    let (status, _) = server.call("POST", "/v1/triggers/nope/preview", Some(SECRET));
    assert_eq!(status, 404);
    assert_eq!(server.runs("everything").len(), 1);

    // SIGTERM: a graceful exit.
    assert!(server.stop().success());
}

#[test]
fn the_scheduler_picks_up_added_edited_and_deleted_trigger_files() {
    let project = serving_project();
    let (file, _) = project.sample("events.ndjson", 900, 22);
    let text = std::fs::read_to_string(&file).unwrap();
    let batches: Vec<String> = text
        .lines()
        .collect::<Vec<_>>()
        .chunks(300)
        .map(|c| c.join("\n") + "\n")
        .collect();
    let import_batch = |i: usize| {
        let path = project.path(&format!("batch{i}.ndjson"));
        std::fs::write(&path, &batches[i]).unwrap();
        project.import(&[&path]);
        events_version(&project)
    };
    let server = Server::start(&project);
    let first = import_batch(0);

    // Added while serving: run without a restart.
    write_trigger(&project, "a", EVERY_EVENT);
    write_trigger(&project, "b", EVERY_EVENT);
    for name in ["a", "b"] {
        server.wait_for_runs(name, "a run after being added", |r| {
            r.iter()
                .any(|run| run["to_version"].as_i64() == Some(first))
        });
    }

    // Edited and deleted while serving.
    write_trigger(
        &project,
        "a",
        "-- schedule: every 1s\n-- requires_identity: false\n\
         SELECT event_id, client_id, user_id FROM new_events WHERE type = 'identify'\n",
    );
    std::fs::remove_file(project.path("queries/triggers/b.sql")).unwrap();
    let second = import_batch(1);
    server.wait_for_runs("a", "a run over batch 2", |r| {
        r.iter()
            .any(|run| run["to_version"].as_i64() == Some(second))
    });
    // seq is too large for an f64: read it exactly.
    let seq_before = project.query("SELECT max(seq) AS s FROM events")[0]["s"]
        .as_i64()
        .expect("a seq");
    let third = import_batch(2);
    let runs = server.wait_for_runs("a", "a run over batch 3", |r| {
        r.iter()
            .any(|run| run["to_version"].as_i64() == Some(third))
    });
    // The run over batch 3 was planned after the edit: it uses the new SQL.
    let identifies = project.number(&format!(
        "SELECT count(*) FROM events WHERE type = 'identify' AND seq > {seq_before}"
    ));
    let latest = runs
        .iter()
        .find(|run| run["to_version"].as_i64() == Some(third))
        .unwrap();
    assert_eq!(latest["from_version"].as_i64(), Some(second));
    assert_eq!(latest["matched"].as_f64(), Some(identifies), "{latest}");
    assert!(identifies > 0.0 && identifies < 300.0);

    let listed = server.get("/v1/triggers");
    let names: Vec<&str> = listed["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["trigger"].as_str())
        .collect();
    assert_eq!(names, ["a"]);
    let b_runs = server.runs("b");
    assert!(
        b_runs
            .iter()
            .all(|run| run["to_version"].as_i64() < Some(third)),
        "b ran after it was deleted: {b_runs:?}"
    );
}
