//! The web page of a real `tripwire serve` over plain HTTP (no browser):
//! nothing without the admin key, the login cookie's flags and lifetime,
//! HTTP Basic, CSRF tokens on every state-changing form, logout ending the
//! session on the server, and values escaped. `browser` drives the same
//! page in headless Chromium.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::keys::write;
use crate::project::{ADMIN, Project, SECRET};
use crate::server::{Server, serving_project_with};

/// A trigger whose name and description are markup.
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_DESCRIPTION: &str = "<script>alert('description')</script>";

/// A visitor of the page: its own client (no redirects followed, no
/// cookie jar: each test sends the cookie it means to).
pub struct Visitor {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

/// One answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `Set-Cookie` header, if one was sent.
    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(SET_COOKIE)
            .map(|v| v.to_str().expect("ascii").to_string())
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.body[start..].find('"').expect("a closing quote");
        self.body[start..start + end].to_string()
    }
}

impl Visitor {
    pub fn new(server: &Server) -> Visitor {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Visitor {
            runtime,
            client,
            base: server.base.clone(),
        }
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        self.runtime.block_on(async {
            let response = request.send().await.expect("HTTP request");
            Answer {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.text().await.expect("a text body"),
            }
        })
    }

    /// `GET path` with extra headers (a cookie, an `Authorization`).
    pub fn get(&self, path: &str, headers: &[(&str, String)]) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send(request)
    }

    /// `POST path` with a form.
    pub fn post(&self, path: &str, headers: &[(&str, String)], form: &[(&str, &str)]) -> Answer {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send(request)
    }

    /// Logs in with `key`; the `Cookie` header the session answers to.
    pub fn login(&self, key: &str) -> (String, Answer) {
        let answer = self.post("/login", &[], &[("key", key)]);
        assert_eq!(answer.status, 303, "login: {}", answer.body);
        let set = answer.set_cookie().expect("a session cookie");
        let pair = set.split(';').next().expect("name=value").to_string();
        (pair, answer)
    }
}

/// A serving project with learning on and the repository's example
/// triggers, flows, segments and tests.
pub fn example_serving_project() -> Project {
    let project = serving_project_with("learning = true\n", "");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate::workbench::copy_dir(&repo.join("queries"), &project.path("queries"));
    crate::workbench::copy_dir(&repo.join("flows"), &project.path("flows"));
    project
}

fn basic(key: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!(":{key}"));
    format!("Basic {encoded}")
}

#[test]
fn without_the_admin_key_there_is_only_the_login_form() {
    let project = example_serving_project();
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    for path in [
        "/",
        "/query",
        "/deliveries",
        "/triggers/cart_abandoned",
        "/triggers/no_such_trigger",
    ] {
        let anonymous = visitor.get(path, &[]);
        let with_write_key = visitor.get(path, &[("authorization", basic(SECRET))]);
        let stale_cookie = visitor.get(path, &[("cookie", "tripwire_session=forged".into())]);
        for (who, answer, status) in [
            ("no key", &anonymous, 401),
            ("write key", &with_write_key, 403),
            ("unknown session", &stale_cookie, 401),
        ] {
            assert_eq!(answer.status, status, "{path} with {who}: {}", answer.body);
            assert!(answer.body.contains("id=\"key\""), "{path}: {who}: a form");
            for secret in ["cart_abandoned", "sku_reorder", "deliveries", "SELECT"] {
                assert!(
                    !answer.body.contains(secret),
                    "{path} with {who} shows {secret}: {}",
                    answer.body
                );
            }
            assert!(
                answer.headers.get("www-authenticate").is_none(),
                "no browser dialog"
            );
        }
        assert!(stale_cookie.body.contains("your session has ended"));
    }
    for (path, form) in [
        ("/query", vec![("sql", "SELECT * FROM events")]),
        ("/triggers/cart_abandoned/preview", vec![("all", "on")]),
        ("/deliveries/redeliver", vec![("id", "x")]),
    ] {
        let answer = visitor.post(path, &[], &form);
        assert_eq!(answer.status, 401, "{path}: {}", answer.body);
        assert!(!answer.body.contains("cart_abandoned"), "{path}");
    }
    let wrong = visitor.post("/login", &[], &[("key", "not-the-key")]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.set_cookie().is_none());
    assert!(wrong.body.contains("id=\"error\""), "{}", wrong.body);
    assert!(!wrong.body.contains("cart_abandoned"));
    let write_key = visitor.post("/login", &[], &[("key", SECRET)]);
    assert_eq!(write_key.status, 403, "{}", write_key.body);
    assert!(write_key.set_cookie().is_none());
    // The stylesheet and script hold no data and need no key.
    assert_eq!(visitor.get("/static/style.css", &[]).status, 200);
    assert_eq!(visitor.get("/static/nope.css", &[]).status, 404);
}

#[test]
fn the_login_cookie_is_a_random_session_id_with_strict_flags_and_logout_ends_it() {
    let project = example_serving_project();
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let (cookie, answer) = visitor.login(ADMIN);
    assert_eq!(
        answer.headers.get(LOCATION).map(|v| v.to_str().unwrap()),
        Some("/")
    );
    let set = answer.set_cookie().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert!(!set.contains(ADMIN), "the key is not the cookie: {set}");
    let id = cookie.trim_start_matches("tripwire_session=");
    assert_eq!(id.len(), 64, "{cookie}");
    assert_ne!(visitor.login(ADMIN).0, cookie, "each login its own session");
    let proxied = visitor.post(
        "/login",
        &[("x-forwarded-proto", "https".into())],
        &[("key", ADMIN)],
    );
    assert!(proxied.set_cookie().unwrap().contains("; Secure"));

    let page = visitor.get("/", &[("cookie", cookie.clone())]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("cart_abandoned"), "{}", page.body);
    assert!(page.body.contains("<b id=\"workspace\">shop</b>"));
    for (name, value) in [
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(page.headers.get(name).unwrap(), value, "{name}");
    }
    let policy = page.headers.get("content-security-policy").unwrap();
    assert!(policy.to_str().unwrap().contains("default-src 'none'"));
    assert_eq!(
        visitor.get("/login", &[("cookie", cookie.clone())]).status,
        303,
        "a logged-in visitor is sent to the page"
    );

    // Logout needs the token too, then clears the cookie and the session.
    let csrf = page.csrf();
    let refused = visitor.post("/logout", &[("cookie", cookie.clone())], &[]);
    assert_eq!(refused.status, 403);
    let out = visitor.post("/logout", &[("cookie", cookie.clone())], &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    let cleared = out.set_cookie().unwrap();
    assert!(
        cleared.starts_with("tripwire_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let after = visitor.get("/", &[("cookie", cookie)]);
    assert_eq!(after.status, 401, "the server forgot the session");
    assert!(!after.body.contains("cart_abandoned"));
}

#[test]
fn http_basic_and_bearer_open_every_page_and_forms_still_need_the_token() {
    let project = example_serving_project();
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    for auth in [basic(ADMIN), format!("Bearer {ADMIN}")] {
        let headers = [("authorization", auth.clone())];
        for path in ["/", "/query", "/deliveries", "/triggers/cart_abandoned"] {
            let page = visitor.get(path, &headers);
            assert_eq!(page.status, 200, "{path} with {auth}: {}", page.body);
            assert!(page.body.contains("id=\"workspace\">shop<"), "{path}");
        }
        let page = visitor.get("/query", &headers);
        let sql = [("sql", "SELECT 41 + 1 AS answer")];
        let refused = visitor.post("/query", &headers, &sql);
        assert_eq!(refused.status, 403, "no token: {}", refused.body);
        assert!(!refused.body.contains("<td>42</td>"));
        let forged = visitor.post("/query", &headers, &[sql[0], ("csrf", "0000")]);
        assert_eq!(forged.status, 403);
        let ran = visitor.post("/query", &headers, &[sql[0], ("csrf", &page.csrf())]);
        assert_eq!(ran.status, 200, "{}", ran.body);
        assert!(ran.body.contains("<td>42</td>"), "{}", ran.body);
    }
    // A token of one login does not pass another's forms.
    let (first, _) = visitor.login(ADMIN);
    let (second, _) = visitor.login(ADMIN);
    let token = visitor.get("/query", &[("cookie", first)]).csrf();
    let crossed = visitor.post(
        "/query",
        &[("cookie", second)],
        &[("sql", "SELECT 1"), ("csrf", &token)],
    );
    assert_eq!(crossed.status, 403);
}

#[test]
fn every_state_changing_form_refuses_a_missing_token() {
    let project = example_serving_project();
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let (cookie, _) = visitor.login(ADMIN);
    let headers = [("cookie", cookie)];
    for (path, form) in [
        ("/query", vec![("sql", "SELECT 1")]),
        ("/triggers/cart_abandoned/preview", vec![("all", "on")]),
        ("/triggers/cart_abandoned/test", vec![]),
        ("/triggers/cart_abandoned/diff", vec![("since", "7d")]),
        ("/deliveries/redeliver", vec![("id", "d-1")]),
        ("/deliveries/release", vec![("run", "r-1")]),
        ("/deliveries/discard", vec![("run", "r-1")]),
        ("/logout", vec![]),
    ] {
        let answer = visitor.post(path, &headers, &form);
        assert_eq!(answer.status, 403, "{path}: {}", answer.body);
        assert!(answer.body.contains("CSRF"), "{path}: {}", answer.body);
    }
    // Reading is a GET and needs none; the session still works.
    assert_eq!(visitor.get("/", &headers).status, 200);
}

#[test]
fn markup_in_trigger_names_descriptions_and_query_results_is_escaped() {
    let project = example_serving_project();
    write(
        &project,
        &format!("queries/triggers/{HOSTILE_NAME}.sql"),
        &format!(
            "-- description: {HOSTILE_DESCRIPTION}\n-- workspace: shop\n\
             SELECT email FROM new_events WHERE event_name = '<b>'\n"
        ),
    );
    write(
        &project,
        "queries/triggers/broken.sql",
        "-- schedule: <i>red</i>\nSELECT 1\n",
    );
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let headers = [("authorization", basic(ADMIN))];
    let page = visitor.get("/", &headers);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains(HOSTILE_NAME), "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("<i>red</i>"), "{}", page.body);
    assert!(
        page.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the name is shown, escaped: {}",
        page.body
    );
    assert!(page.body.contains("&lt;script&gt;alert("), "{}", page.body);
    assert!(
        page.body.contains("broken.sql") && page.body.contains("&lt;i&gt;red&lt;"),
        "the broken file is listed with its reason, escaped: {}",
        page.body
    );
    let href = "/triggers/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E";
    assert!(
        page.body
            .contains("%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"),
        "the link is percent-encoded: {}",
        page.body
    );
    let one = visitor.get(href, &headers);
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(!one.body.contains(HOSTILE_NAME) && !one.body.contains("<script>alert"));
    assert!(one.body.contains("&lt;b&gt;"), "the SQL is shown escaped");

    let csrf = visitor.get("/query", &headers).csrf();
    let sql = "SELECT '<script>alert(1)</script>' AS \"<th>\"";
    let ran = visitor.post("/query", &headers, &[("sql", sql), ("csrf", &csrf)]);
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert!(!ran.body.contains("<script>alert(1)"), "{}", ran.body);
    assert!(!ran.body.contains("<th><th>"), "{}", ran.body);
    assert!(ran.body.contains("&lt;script&gt;alert(1)"), "{}", ran.body);
}

#[test]
fn the_query_page_is_read_only_and_says_why_a_query_failed() {
    let project = example_serving_project();
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let headers = [("authorization", basic(ADMIN))];
    let csrf = visitor.get("/query", &headers).csrf();
    for (sql, says) in [
        ("CREATE TABLE x AS SELECT 1", "read-only"),
        ("DELETE FROM events", "read-only"),
        ("SELECT nope FROM events", "nope"),
        ("SELEC 1", "syntax"),
        ("", "sql: write a query"),
    ] {
        let answer = visitor.post("/query", &headers, &[("sql", sql), ("csrf", &csrf)]);
        assert_eq!(answer.status, 400, "{sql}: {}", answer.body);
        let error = answer
            .body
            .split("id=\"error\"")
            .nth(1)
            .unwrap_or_else(|| panic!("{sql}: an error line: {}", answer.body));
        assert!(
            error.to_lowercase().contains(&says.to_lowercase()),
            "{sql}: {error}"
        );
        assert!(
            answer.body.contains("id=\"sql\""),
            "the editor is still there"
        );
    }
    // The page stops at its row limit and says so.
    let many = "SELECT * FROM generate_series(1, 5000)";
    let answer = visitor.post("/query", &headers, &[("sql", many), ("csrf", &csrf)]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body.matches("<tr><td>").count(), 1_000);
    assert!(
        answer.body.contains("the first 1000 are shown"),
        "{}",
        answer.body
    );
}

#[test]
fn a_key_of_several_workspaces_chooses_one_at_login() {
    let project = serving_project_with(
        &format!(
            "[[workspace]]\nid = \"books\"\nsecret = \"books-key\"\nadmin_secret = \"{ADMIN}\"\n"
        ),
        "",
    );
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let choose = visitor.post("/login", &[], &[("key", ADMIN)]);
    assert_eq!(choose.status, 400, "{}", choose.body);
    assert!(
        choose.body.contains("<option value=\"books\">"),
        "{}",
        choose.body
    );
    assert!(choose.body.contains("<option value=\"shop\">"));
    assert!(choose.set_cookie().is_none());
    let answer = visitor.post("/login", &[], &[("key", ADMIN), ("workspace", "books")]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie = answer.set_cookie().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = visitor.get("/", &[("cookie", cookie)]);
    assert!(
        page.body.contains("id=\"workspace\">books<"),
        "{}",
        page.body
    );
    let other = visitor.post(
        "/login",
        &[],
        &[("key", "books-key"), ("workspace", "shop")],
    );
    assert_eq!(
        other.status, 403,
        "a write key opens nothing: {}",
        other.body
    );
}

/// A trigger over `cart` events whose flow holds any run sending over 2.
fn guarded_project() -> Project {
    let project = serving_project_with("", "");
    write(
        &project,
        "queries/triggers/carts.sql",
        "-- backfill: all\n-- requires_identity: false\n\
         SELECT event_id, email FROM new_events WHERE event_name = 'cart'\n",
    );
    write(
        &project,
        "flows/audit.toml",
        "trigger = \"carts\"\nmax_deliveries_per_run = 2\n[[branch]]\nactions = [\"audit\"]\n\
         [actions.audit]\ntype = \"file\"\npath = \"out/carts.ndjson\"\n",
    );
    for batch in ["a", "b"] {
        let lines: String = (0..3)
            .map(|i| {
                format!(
                    "{{\"name\": \"cart\", \"payload\": {{}}, \"email\": \"{batch}{i}@example.com\", \
                     \"event_id\": \"{batch}{i}\", \"timestamp\": \"2026-11-01T00:00:00Z\"}}\n"
                )
            })
            .collect();
        write(&project, &format!("{batch}.ndjson"), &lines);
        project.import(&[&project.path(&format!("{batch}.ndjson"))]);
        project.ok(&["run"]);
    }
    project
}

#[test]
fn held_runs_are_released_and_discarded_with_the_deliveries_buttons() {
    let project = guarded_project();
    let runs = project.query("SELECT run_id FROM runs WHERE held > 0 ORDER BY finished_at");
    let (first, second) = (
        runs[0]["run_id"].as_str().unwrap().to_string(),
        runs[1]["run_id"].as_str().unwrap().to_string(),
    );
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let headers = [("authorization", basic(ADMIN))];
    let page = visitor.get("/deliveries?status=held", &headers);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body.matches("class=\"delivery\"").count(), 6);
    assert_eq!(page.body.matches("class=\"release\"").count(), 6);
    assert_eq!(page.body.matches("class=\"discard danger\"").count(), 6);
    let csrf = page.csrf();

    let released = visitor.post(
        "/deliveries/release",
        &headers,
        &[
            ("run", &first),
            ("for_flow", "audit"),
            ("csrf", &csrf),
            ("status", "held"),
        ],
    );
    assert_eq!(released.status, 200, "{}", released.body);
    assert!(
        released
            .body
            .contains(&format!("3 held delivery(ies) of run {first} released")),
        "{}",
        released.body
    );
    // The page after the button keeps the filter it was on: 3 still held.
    assert_eq!(released.body.matches("class=\"delivery\"").count(), 3);
    let discarded = visitor.post(
        "/deliveries/discard",
        &headers,
        &[("run", &second), ("csrf", &csrf)],
    );
    assert!(
        discarded
            .body
            .contains(&format!("3 held delivery(ies) of run {second} discarded")),
        "{}",
        discarded.body
    );
    let again = visitor.post(
        "/deliveries/discard",
        &headers,
        &[("run", &second), ("csrf", &csrf)],
    );
    assert_eq!(again.status, 400, "nothing left to discard: {}", again.body);
    assert!(again.body.contains("id=\"error\""), "{}", again.body);

    // serve delivers the released three; the discarded are never sent.
    let started = std::time::Instant::now();
    loop {
        let delivered = visitor.get("/deliveries?status=delivered", &headers);
        if delivered.body.matches("class=\"delivery\"").count() == 3 {
            break;
        }
        assert!(
            started.elapsed() < crate::server::PATIENCE,
            "{}",
            delivered.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = std::fs::read_to_string(project.path("out/carts.ndjson")).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert!(lines.contains("a0@example.com") && !lines.contains("b0@example.com"));
    let left = visitor.get("/deliveries?status=discarded", &headers);
    assert_eq!(left.body.matches("class=\"delivery\"").count(), 3);
}

#[test]
fn the_trigger_buttons_show_a_failing_test_s_diff_and_readable_errors() {
    let project = example_serving_project();
    write(
        &project,
        "queries/tests/vip_cart_abandoned.toml",
        "[[case]]\nname = \"expects the wrong value\"\nnow = \"2026-11-05T00:00:00Z\"\n\
         events = [{ name = \"vip_cart_abandoned\", payload = { cart_value = 420.0 }, \
         email = \"eve@example.com\", timestamp = \"2026-11-04T10:00:00Z\" }]\n\
         [[case.expect]]\ncontact = \"email:eve@example.com\"\ndata = { cart_value = 999.0 }\n",
    );
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let headers = [("authorization", basic(ADMIN))];
    let page = visitor.get("/triggers/vip_cart_abandoned", &headers);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<svg class=\"chart\""), "{}", page.body);
    assert!(page.body.contains("no runs yet"));
    let csrf = page.csrf();
    let tested = visitor.post(
        "/triggers/vip_cart_abandoned/test",
        &headers,
        &[("csrf", &csrf)],
    );
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert!(tested.body.contains("FAIL"), "{}", tested.body);
    assert!(
        tested
            .body
            .contains("~ email:eve@example.com: data.cart_value: expected 999.0, got 420.0"),
        "{}",
        tested.body
    );
    for (path, form, says) in [
        (
            "/triggers/vip_cart_abandoned/preview",
            vec![("now", "yesterday")],
            "now: &quot;yesterday&quot; is not an RFC 3339 time",
        ),
        (
            "/triggers/vip_cart_abandoned/diff",
            vec![("since", "a while")],
            "since: ",
        ),
    ] {
        let mut form = form.clone();
        form.push(("csrf", &csrf));
        let answer = visitor.post(path, &headers, &form);
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        let error = answer.body.split("id=\"error\"").nth(1).unwrap_or_default();
        assert!(error.contains(says), "{path}: {}", answer.body);
        assert!(
            answer.body.contains("id=\"trigger-file\""),
            "the page is still there"
        );
    }
    let missing = visitor.post("/triggers/nope/test", &headers, &[("csrf", &csrf)]);
    assert_eq!(missing.status, 404, "{}", missing.body);
}

#[test]
fn a_query_past_query_timeout_is_stopped_with_the_key_named() {
    let project = serving_project_with("", "");
    let config = std::fs::read_to_string(project.path("tripwire.toml")).unwrap();
    std::fs::write(
        project.path("tripwire.toml"),
        format!("query_timeout = \"50ms\"\n{config}"),
    )
    .unwrap();
    let server = Server::start(&project);
    let visitor = Visitor::new(&server);
    let headers = [("authorization", basic(ADMIN))];
    let csrf = visitor.get("/query", &headers).csrf();
    let slow = "SELECT count(*) FROM generate_series(1, 100000000) a, generate_series(1, 1000) b";
    let answer = visitor.post("/query", &headers, &[("sql", slow), ("csrf", &csrf)]);
    assert_eq!(answer.status, 400, "{}", answer.body);
    let error = answer.body.split("id=\"error\"").nth(1).unwrap_or_default();
    assert!(error.contains("query_timeout (50ms)"), "{}", answer.body);
}
