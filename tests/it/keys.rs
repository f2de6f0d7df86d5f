//! Issue 12, on a real `tripwire serve`: it fails closed (no open mode when
//! a key's variable is unset), write keys only write, admin keys read and
//! act, each refusal is the documented 401 or 403, keys rotate, and the
//! admin API lists and redelivers deliveries.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::project::{ADMIN, Project, SECRET};
use crate::receiver::Receiver;
use crate::server::{PATIENCE, Request, Server, serving_project, serving_project_with};

/// A variable no test sets.
const UNSET: &str = "TRIPWIRE_TEST_NEVER_SET";

/// Runs `serve` on `project` (with `UNSET` unset) expecting it to refuse to
/// start; returns its stderr.
fn refused_to_serve(project: &Project) -> String {
    let out = project
        .command(&["serve"])
        .env_remove(UNSET)
        .stdin(Stdio::null())
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "serve should refuse: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("serving"),
        "it listened"
    );
    stderr
}

fn workspace_with(key_line: &str) -> Project {
    Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n[[workspace]]\nid = \"shop\"\n\
         secret = \"{SECRET}\"\nadmin_secret = \"{ADMIN}\"\n{key_line}\n"
    ))
}

#[test]
fn serve_refuses_to_start_when_the_secret_names_an_unset_variable() {
    let project = Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n[[workspace]]\nid = \"shop\"\n\
         secret = \"env:{UNSET}\"\nadmin_secret = \"{ADMIN}\"\n"
    ));
    let stderr = refused_to_serve(&project);
    assert!(
        stderr.contains("\"shop\"") && stderr.contains("secret") && stderr.contains(UNSET),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_start_when_the_admin_secret_names_an_unset_variable() {
    let project = Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n[[workspace]]\nid = \"shop\"\n\
         secret = \"{SECRET}\"\nadmin_secret = \"env:{UNSET}\"\n"
    ));
    let stderr = refused_to_serve(&project);
    assert!(
        stderr.contains("admin_secret") && stderr.contains(UNSET),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_start_when_one_rotated_signing_secret_is_unset() {
    let project = workspace_with(&format!("signing_secret = [\"whsec\", \"env:{UNSET}\"]"));
    let stderr = refused_to_serve(&project);
    assert!(
        stderr.contains("signing_secret") && stderr.contains(UNSET),
        "{stderr}"
    );
}

#[test]
fn the_readme_walkthrough_without_its_exports_refuses_to_serve() {
    // No tripwire.toml: the embedded default, whose keys are env:SHOP_*.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tripwire"))
        .arg("serve")
        .current_dir(dir.path())
        .env("SHOP_SECRET", "s3cret")
        .env_remove("SHOP_ADMIN")
        .env_remove("SHOP_SIGNING")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SHOP_ADMIN") && stderr.contains("SHOP_SIGNING"),
        "every unset variable is named: {stderr}"
    );
    assert!(!stderr.contains("s3cret"), "a value is never printed");
}

#[test]
fn keys_from_set_variables_and_rotated_lists_are_all_valid() {
    let project = Project::with_config(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n[[workspace]]\nid = \"shop\"\n\
         secret = [\"old-key\", \"env:TRIPWIRE_TEST_NEW_KEY\"]\n\
         admin_secret = [\"env:TRIPWIRE_TEST_ADMIN\", \"old-admin\"]\n",
    );
    let server = Server::start_with_env(
        &project,
        &[
            ("TRIPWIRE_TEST_NEW_KEY", "new-key"),
            ("TRIPWIRE_TEST_ADMIN", "new-admin"),
        ],
    );
    let event = json!({"event": "Rotated", "anonymousId": "a"}).to_string();
    for key in ["old-key", "new-key"] {
        let (status, body) = server.send(Request::post("/v1/track", event.clone()).bearer(key));
        assert_eq!(status, 200, "{key}: {body}");
    }
    for key in ["old-admin", "new-admin"] {
        assert_eq!(
            server.call("GET", "/v1/triggers", Some(key)).0,
            200,
            "{key}"
        );
    }
    assert_eq!(
        server
            .send(Request::post("/v1/track", event).bearer("TRIPWIRE_TEST_NEW_KEY"))
            .0,
        401,
        "the variable's name is not a key"
    );
}

/// A trigger and a flow that delivers each match as a webhook to `url`.
fn hook_project(url: &str) -> Project {
    let project = serving_project();
    write(
        &project,
        "queries/triggers/everything.sql",
        "-- schedule: every 1s\n-- backfill: all\n-- requires_identity: false\n\
         SELECT event_id, client_id, json_get_str(properties, 'note') AS note FROM new_events\n",
    );
    write(
        &project,
        "flows/hook.toml",
        &format!(
            "trigger = \"everything\"\n[[branch]]\nactions = [\"hook\"]\n\
             [actions.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n"
        ),
    );
    project
}

pub fn write(project: &Project, path: &str, text: &str) {
    let path = project.path(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every admin endpoint, as (method, path).
const ADMIN_ENDPOINTS: [(&str, &str); 7] = [
    ("GET", "/v1/triggers"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/schema"),
    ("POST", "/v1/triggers/everything/preview?all=true"),
    ("GET", "/v1/deliveries"),
    ("POST", "/v1/deliveries/redeliver"),
    ("GET", "/metrics"),
];

fn admin_call(server: &Server, method: &str, path: &str, key: Option<&str>) -> u16 {
    let mut request = Request {
        method,
        path,
        headers: Vec::new(),
        body: Vec::new(),
    };
    if path.ends_with("redeliver") {
        request.body = br#"{"ids": ["no-such-delivery"]}"#.to_vec();
    }
    if let Some(key) = key {
        request = request.bearer(key);
    }
    server.send(request).0
}

#[test]
fn the_write_key_reads_nothing_and_the_admin_key_reads_everything() {
    let project = hook_project("http://127.0.0.1:9/hook");
    let (sample, _) = project.sample("events.ndjson", 20, 12);
    project.import(&[&sample]);
    let server = Server::start(&project);
    for (method, path) in ADMIN_ENDPOINTS {
        assert_eq!(
            admin_call(&server, method, path, None),
            401,
            "{method} {path}: no key"
        );
        assert_eq!(
            admin_call(&server, method, path, Some("wrong")),
            401,
            "{method} {path}"
        );
        assert_eq!(
            admin_call(&server, method, path, Some(SECRET)),
            403,
            "{method} {path}: a write key"
        );
        let with_admin = admin_call(&server, method, path, Some(ADMIN));
        // The redeliver call names an unknown delivery: refused after auth.
        let expected = if path.ends_with("redeliver") {
            400
        } else {
            200
        };
        assert_eq!(with_admin, expected, "{method} {path}: the admin key");
    }
    // Basic auth carries the admin key too (user name or password).
    let basic = |user_pass: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    for credentials in [format!("{ADMIN}:"), format!(":{ADMIN}")] {
        let request = Request {
            method: "GET",
            path: "/v1/runs",
            headers: vec![("authorization", basic(&credentials))],
            body: Vec::new(),
        };
        assert_eq!(server.send(request).0, 200, "{credentials}");
    }
    assert_eq!(
        server.call("GET", "/healthz", None).0,
        200,
        "healthz stays open"
    );
}

#[test]
fn an_admin_key_cannot_send_events() {
    let server = Server::start(&serving_project());
    let event = json!({"event": "E", "anonymousId": "a"}).to_string();
    let (status, body) = server.send(Request::post("/v1/track", event).bearer(ADMIN));
    assert_eq!(status, 403, "{body}");
}

#[test]
fn trigger_names_cannot_be_probed_without_the_admin_key() {
    let project = hook_project("http://127.0.0.1:9/hook");
    let server = Server::start(&project);
    for name in ["everything", "no_such_trigger"] {
        let path = format!("/v1/triggers/{name}/preview");
        assert_eq!(server.call("POST", &path, None).0, 401, "{name}");
        assert_eq!(server.call("POST", &path, Some(SECRET)).0, 403, "{name}");
    }
    let (status, _) = server.call("POST", "/v1/triggers/no_such_trigger/preview", Some(ADMIN));
    assert_eq!(status, 404);
}

#[test]
fn a_key_valid_only_for_one_workspace_writing_to_another_is_403() {
    let project = serving_project_with(
        "[[workspace]]\nid = \"other\"\nsecret = \"other-key\"\n",
        "",
    );
    let server = Server::start(&project);
    let event = json!({"event": "E", "anonymousId": "a"}).to_string();
    let (status, body) = server.send(
        Request::post("/v1/track", event.clone())
            .bearer(SECRET)
            .header("x-workspaces", "other"),
    );
    assert_eq!(status, 403, "{body}");
    let collect = json!({"partnerId": "other", "partnerSecret": SECRET, "clientId": "c",
                         "type": "track", "properties": {"eventName": "e"}});
    let (status, body) = server.send(Request::post("/http/v1/collect", collect.to_string()));
    assert_eq!(status, 403, "{body}");
}

#[test]
fn a_workspace_without_an_admin_secret_answers_403() {
    let project = Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n[[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n"
    ));
    let server = Server::start(&project);
    for key in [None, Some(SECRET), Some("anything")] {
        let (status, body) = server.call("GET", "/v1/runs", key);
        assert_eq!(status, 403, "{key:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("admin_secret"),
            "{body}"
        );
    }
}

#[test]
fn metrics_public_opens_metrics_and_nothing_else() {
    let project = serving_project_with("", "");
    let config = std::fs::read_to_string(project.path("tripwire.toml")).unwrap();
    std::fs::write(
        project.path("tripwire.toml"),
        format!("metrics_public = true\n{config}"),
    )
    .unwrap();
    let server = Server::start(&project);
    let (status, page) = server.text("/metrics", None);
    assert_eq!(status, 200);
    assert!(page.contains("tripwire_"), "{page}");
    assert_eq!(server.call("GET", "/v1/runs", None).0, 401);
}

/// Polls `GET /v1/deliveries?{query}` until `done` holds for its rows.
fn wait_for_deliveries(
    server: &Server,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let rows = server.get(&format!("/v1/deliveries?{query}"))["deliveries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&rows) {
            return rows;
        }
        assert!(started.elapsed() < PATIENCE, "deliveries?{query}: {rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deliveries_are_listed_with_filters_and_dead_ones_redelivered_over_the_api() {
    let receiver = Receiver::plain();
    receiver.fail_next(400, 1);
    let project = hook_project(&receiver.url("127.0.0.1"));
    let server = Server::start(&project);
    let event = json!({"event": "E", "anonymousId": "c-1", "properties": {"note": "hi"}});
    let (status, _) = server.send(Request::post("/v1/track", event.to_string()).bearer(SECRET));
    assert_eq!(status, 200);

    // A 400 is dead at once and never retried by itself.
    let dead = wait_for_deliveries(&server, "status=dead&flow=hook", |rows| rows.len() == 1);
    let row = &dead[0];
    assert_eq!(row["trigger"], "everything");
    assert_eq!(row["client_id"], "c-1");
    assert!(row["last_error"].as_str().unwrap().contains("400"), "{row}");
    assert!(
        row["payload"].as_str().unwrap().contains("webhook"),
        "{row}"
    );
    let id = row["delivery_id"].as_str().unwrap().to_string();
    let run_id = row["run_id"].as_str().unwrap().to_string();
    for query in [
        "status=delivered",
        "flow=other",
        "trigger=other",
        "run_id=other",
    ] {
        let rows = server.get(&format!("/v1/deliveries?{query}"))["deliveries"].clone();
        assert_eq!(rows, json!([]), "{query}");
    }
    let by_run = server.get(&format!("/v1/deliveries?run_id={run_id}&limit=1"));
    assert_eq!(by_run["deliveries"][0]["delivery_id"], id.as_str());
    assert_eq!(
        server.call("GET", "/v1/deliveries?limit=0", Some(ADMIN)).0,
        400
    );
    assert_eq!(
        server
            .call("GET", "/v1/deliveries?colour=red", Some(ADMIN))
            .0,
        400
    );
    assert_eq!(receiver.requests().len(), 1);

    let redeliver = |ids: Value| {
        server.send(
            Request::post(
                "/v1/deliveries/redeliver",
                json!({ "ids": ids }).to_string(),
            )
            .bearer(ADMIN),
        )
    };
    let (status, body) = redeliver(json!([id, "no-such-id"]));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no-such-id: no such delivery"),
        "{body}"
    );
    let (status, body) = redeliver(json!([id]));
    assert_eq!((status, &body["reset"]), (200, &json!(1)), "{body}");
    let delivered = wait_for_deliveries(&server, "status=delivered", |rows| rows.len() == 1);
    assert_eq!(delivered[0]["delivery_id"], id.as_str());
    assert_eq!(
        receiver.wait_for(2)[1].header("idempotency-key"),
        Some(id.as_str())
    );
    let (status, body) = redeliver(json!([id]));
    assert!(
        status == 400
            && body["error"]
                .as_str()
                .unwrap()
                .contains("delivered already")
    );
}
