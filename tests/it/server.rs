//! A real `tripwire serve` child process on a free loopback port, and an
//! HTTP client for it: what the `serve` and `ingest` tests share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::project::{ADMIN, Project, SECRET};

/// How long a test waits for the server to get somewhere before failing.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A project serving on a free port, `shop` with the write key [`SECRET`]
/// and the admin key [`ADMIN`]; its WAL flushes after 200 ms.
pub fn serving_project() -> Project {
    serving_project_with("", "")
}

/// [`serving_project`] with more workspaces and `[ingest]` keys.
pub fn serving_project_with(workspaces: &str, ingest: &str) -> Project {
    Project::with_config(&format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n\
         [[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\nadmin_secret = \"{ADMIN}\"\n{workspaces}\n\
         [ingest]\nflush_age = \"200ms\"\n{ingest}"
    ))
}

/// One HTTP request to the server.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
}

impl<'a> Request<'a> {
    pub fn post(path: &'a str, body: impl Into<Vec<u8>>) -> Request<'a> {
        Request {
            method: "POST",
            path,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Request<'a> {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bearer(self, key: &str) -> Request<'a> {
        self.header("authorization", format!("Bearer {key}"))
    }
}

/// A running `tripwire serve`, killed when dropped unless stopped first.
pub struct Server {
    child: Child,
    pub base: String,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Server {
    pub fn start(project: &Project) -> Server {
        Server::start_with_env(project, &[])
    }

    /// [`Server::start`] with extra environment variables (test hooks).
    pub fn start_with_env(project: &Project, env: &[(&str, &str)]) -> Server {
        let mut command = project.command(&["serve"]);
        command.envs(env.iter().copied());
        Server::spawn(command)
    }

    /// A `tripwire serve` from `command` (another config, environment).
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Server {
            child,
            base,
            runtime,
            client: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `host:port` it listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Sends `request`; returns the status and the JSON body (Null if none).
    pub fn send(&self, request: Request) -> (u16, Value) {
        let (status, _, body) = self.send_with_headers(request);
        (status, body)
    }

    /// [`Server::send`], with the response's headers.
    pub fn send_with_headers(&self, request: Request) -> (u16, reqwest::header::HeaderMap, Value) {
        self.runtime.block_on(async {
            let url = format!("{}{}", self.base, request.path);
            let method = request.method.parse().expect("a method");
            let mut builder = self.client.request(method, url).body(request.body);
            for (name, value) in request.headers {
                builder = builder.header(name, value);
            }
            let response = builder.send().await.expect("HTTP request");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            (
                status,
                headers,
                response.json().await.unwrap_or(Value::Null),
            )
        })
    }

    pub fn call(&self, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = Request {
            method,
            path,
            headers: Vec::new(),
            body: Vec::new(),
        };
        if let Some(key) = key {
            request = request.bearer(key);
        }
        self.send(request)
    }

    /// `GET path` as text, with `key` if given.
    pub fn text(&self, path: &str, key: Option<&str>) -> (u16, String) {
        self.runtime.block_on(async {
            let url = format!("{}{path}", self.base);
            let mut request = self.client.get(url);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.expect("HTTP request");
            let status = response.status().as_u16();
            (status, response.text().await.expect("a text body"))
        })
    }

    /// `GET path` with the workspace's admin key; must answer 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, Some(ADMIN));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub fn runs(&self, trigger: &str) -> Vec<Value> {
        self.get(&format!("/v1/runs?trigger={trigger}"))["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls the run history until `done` holds for `trigger`'s runs.
    pub fn wait_for_runs(
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

    /// SIGTERM, then waits: a graceful stop commits everything acknowledged.
    pub fn stop(mut self) -> ExitStatus {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().expect("wait for serve")
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
