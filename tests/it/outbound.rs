//! Issue 12, what leaves tripwire, through the real binary (`import`, `run`,
//! `deliver`, `check`) to a receiver in the test process: body templates
//! print values as JSON, https webhooks trust the CA in `SSL_CERT_FILE`,
//! `allow_private_networks = false` refuses private addresses after DNS and
//! as IP literals, and file actions stay inside the project.

use std::process::Output;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::keys::write;
use crate::project::{Project, SECRET};
use crate::receiver::{Receiver, TestCa};

const SIGNING: &str = "whsec_outbound";

/// A property no sender should be able to shape a body with.
const HOSTILE: &str = r#"he said "hi"}, "x": 1, "y": {"#;

/// The clock the runs are pinned to (the events are from the day before).
const NOW: &str = "2026-11-05T00:00:00Z";

/// A project (`shop`, signing webhooks; `workspace_lines` added) with one
/// trigger over every event, `note` taken from its properties, and one
/// imported event whose note is [`HOSTILE`].
fn project(workspace_lines: &str) -> Project {
    let project = Project::with_config(&format!(
        "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n\
         signing_secret = \"{SIGNING}\"\n{workspace_lines}\n"
    ));
    write(
        &project,
        "queries/triggers/noted.sql",
        "-- requires_identity: false\n-- backfill: all\n\
         SELECT event_id, client_id, json_get_str(properties, 'note') AS note FROM new_events\n",
    );
    let event = json!({"type": "track", "event": "noted", "anonymousId": "c-1", "messageId": "m-1",
                       "properties": {"note": HOSTILE}, "timestamp": "2026-11-04T00:00:00Z"});
    write(&project, "events.ndjson", &format!("{event}\n"));
    project.import(&[&project.path("events.ndjson")]);
    project
}

/// A flow on `noted` with one webhook action per (name, url).
fn webhook_flow(project: &Project, hooks: &[(&str, &str)], body: Option<&str>) {
    let names: Vec<String> = hooks.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let mut text = format!(
        "trigger = \"noted\"\n[[branch]]\nactions = [{}]\n",
        names.join(", ")
    );
    for (name, url) in hooks {
        text.push_str(&format!(
            "[actions.{name}]\ntype = \"webhook\"\nurl = \"{url}\"\ntimeout = \"5s\"\n"
        ));
        if let Some(body) = body {
            text.push_str(&format!("body = '{body}'\n"));
        }
    }
    write(project, "flows/hook.toml", &text);
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `status` and `last_error` of every delivery, by action.
fn outcomes(project: &Project) -> Vec<Value> {
    project.query("SELECT action, status, last_error FROM deliveries ORDER BY action")
}

fn verifies(signature: &str, body: &str) -> bool {
    let Some((t, v1)) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes()) == v1
}

#[test]
fn a_hostile_property_arrives_through_a_template_as_valid_json_with_its_value_intact() {
    let receiver = Receiver::plain();
    let project = project("");
    webhook_flow(
        &project,
        &[("hook", &receiver.url("127.0.0.1"))],
        Some(r#"{"note": {{ data.note }}, "client": {{ contact.client_id }}}"#),
    );
    succeeded(&project.run(&["check"]));
    succeeded(&project.run(&["run", "--now", NOW]));

    let requests = receiver.wait_for(1);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/hook");
    let body: Value = serde_json::from_str(&requests[0].body).expect("the body is JSON");
    assert_eq!(
        body,
        json!({"note": HOSTILE, "client": "c-1"}),
        "no key added"
    );
    assert!(verifies(
        requests[0].header("tripwire-signature").unwrap(),
        &requests[0].body
    ));
}

#[test]
fn check_refuses_a_template_that_quotes_a_value_naming_the_file_and_line() {
    let project = project("");
    webhook_flow(
        &project,
        &[("hook", "http://127.0.0.1:9/hook")],
        Some(r#"{"note": "{{ data.note }}"}"#),
    );
    let out = project.run(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("hook.toml:4: actions.hook: body template: the body is not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn an_https_webhook_reaches_a_receiver_whose_ca_is_given_by_ssl_cert_file() {
    let ca = TestCa::new();
    let receiver = Receiver::tls(&ca);
    let bundle = tempfile::tempdir().unwrap();
    let ca_file = bundle.path().join("test-ca.pem");
    ca.write_pem(&ca_file);
    let project = project("");
    webhook_flow(&project, &[("hook", &receiver.url("localhost"))], None);
    let run = |args: &[&str], cert_file: Option<&std::path::Path>| {
        let mut command = project.command(args);
        command
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if let Some(file) = cert_file {
            command.env("SSL_CERT_FILE", file);
        }
        command.output().unwrap()
    };

    // A bundle that is not there: named, not "unknown issuer".
    let missing = bundle.path().join("missing.pem");
    succeeded(&run(&["run", "--now", NOW], Some(&missing)));
    let failed = &outcomes(&project)[0];
    assert_eq!(failed["status"], "failed");
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.contains("SSL_CERT_FILE") && error.contains("missing.pem"),
        "{error}"
    );

    // The platform's roots do not know the test CA: verification is real.
    // Retries are due by the real clock the first attempt was made at.
    let later = |hours: i64| (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339();
    succeeded(&run(&["deliver", "--now", &later(1)], None));
    let unknown = &outcomes(&project)[0];
    assert_eq!(unknown["status"], "failed", "{unknown}");
    let error = unknown["last_error"].as_str().unwrap();
    assert!(
        !error.contains("missing.pem") && error.contains("certificate"),
        "{error}"
    );
    assert!(
        receiver.requests().is_empty(),
        "no request without a trusted certificate"
    );

    succeeded(&run(&["deliver", "--now", &later(2)], Some(&ca_file)));
    let delivered = &outcomes(&project)[0];
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    let requests = receiver.wait_for(1);
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["data"]["note"], HOSTILE);
    assert!(verifies(
        requests[0].header("tripwire-signature").unwrap(),
        &requests[0].body
    ));
}

#[test]
fn a_name_resolving_to_loopback_is_refused_after_dns_when_private_networks_are_not_allowed() {
    let receiver = Receiver::plain();
    let project = project("allow_private_networks = false");
    webhook_flow(&project, &[("hook", &receiver.url("localhost"))], None);
    succeeded(&project.run(&["run", "--now", NOW]));
    let dead = &outcomes(&project)[0];
    assert_eq!(dead["status"], "dead", "{dead}");
    let error = dead["last_error"].as_str().unwrap();
    assert!(
        error.contains("localhost resolves only to private addresses")
            && error.contains("allow_private_networks = false"),
        "{error}"
    );
    assert!(receiver.requests().is_empty());
}

#[test]
fn private_ip_literal_urls_are_refused_when_private_networks_are_not_allowed() {
    let receiver = Receiver::plain();
    let port = receiver.port();
    let project = project("allow_private_networks = false");
    let v4 = format!("http://127.0.0.1:{port}/hook");
    let mapped = format!("http://[::ffff:127.0.0.1]:{port}/hook");
    webhook_flow(&project, &[("v4", &v4), ("mapped", &mapped)], None);
    succeeded(&project.run(&["run", "--now", NOW]));
    let rows = outcomes(&project);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["status"], "dead", "{row}");
        let error = row["last_error"].as_str().unwrap();
        assert!(
            error.contains("is a private address") && error.contains("allow_private_networks"),
            "{error}"
        );
    }
    assert!(receiver.requests().is_empty());
}

#[test]
fn the_same_loopback_webhook_is_delivered_when_private_networks_are_allowed() {
    let receiver = Receiver::plain();
    let project = project("");
    webhook_flow(&project, &[("hook", &receiver.url("localhost"))], None);
    succeeded(&project.run(&["run", "--now", NOW]));
    assert_eq!(outcomes(&project)[0]["status"], "delivered");
    assert_eq!(receiver.requests().len(), 1);
}

fn file_flow(project: &Project, path: &str) {
    write(
        project,
        "flows/audit.toml",
        &format!(
            "trigger = \"noted\"\n[[branch]]\nactions = [\"audit\"]\n\n\
             [actions.audit]\ntype = \"file\"\npath = \"{path}\"\n"
        ),
    );
}

#[test]
fn a_file_action_with_dot_dot_is_refused_by_check_and_writes_nothing() {
    let project = project("");
    file_flow(&project, "../escaped.ndjson");
    let out = project.run(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("audit.toml:5: actions.audit: path:")
            && stderr.contains("leaves the project"),
        "{stderr}"
    );
    let _ = project.run(&["run", "--now", NOW]);
    assert!(
        !project
            .dir
            .path()
            .parent()
            .unwrap()
            .join("escaped.ndjson")
            .exists()
    );
}

#[test]
fn a_file_action_with_an_absolute_path_is_refused_by_check_and_writes_nothing() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("absolute.ndjson");
    let project = project("");
    file_flow(&project, &target.display().to_string());
    let out = project.run(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("audit.toml:5: actions.audit: path:") && stderr.contains("is absolute"),
        "{stderr}"
    );
    let _ = project.run(&["run", "--now", NOW]);
    assert!(!target.exists());
}
