//! `cargo bench --bench ingest`: a load generator against the release
//! `tripwire serve` on loopback, every request acknowledged durably (its
//! events fsynced in the write-ahead log before the answer):
//!
//! - `batch`: `POST /v1/batch`, 100 Segment tracks per request → events/s;
//! - `single`: `POST /v1/track`, one event per request → req/s;
//!
//! each with p50/p99 latency, the 200s counted and anything else reported.
//! A scenario runs for a fixed time with C requests in flight, one per
//! keep-alive connection, after a short warm-up and once the flusher has
//! committed everything earlier. Its line also says how many acknowledged
//! events the flusher was behind at the end and how long it took to catch up
//! (up to `flush_age` of that is the last segment's age).
//!
//! Bodies are prebuilt: a copy per request only gets fresh messageIds written
//! in (so nothing is deduplicated), and the generator runs on one thread. It
//! still shares the machine's cores with the server; each scenario's `cpu`
//! says how they split. At the end the server is stopped with SIGTERM and
//! `tripwire query` must find exactly the acknowledged events in the table.
//!
//! - `TRIPWIRE_BENCH_SECONDS` (default 10): the length of each scenario.
//! - `TRIPWIRE_BENCH_CONNECTIONS` (default `32`): requests in flight; a list
//!   (`16,64`) runs each scenario once per count.
//! - `TRIPWIRE_BENCH_INGEST`: extra `[ingest]` lines for the server's
//!   tripwire.toml, e.g. `flush_bytes = 67108864`.
//!
//! Then the sustained runs: for each shape of benches/wild_events.py
//! (collect envelopes, Segment calls, name/payload events, with their nested
//! properties), `POST /v1/batch` of 100 of them per request over the first
//! connection count, for `TRIPWIRE_BENCH_SUSTAINED` seconds (default 60; 0
//! skips them). Each reports the acknowledged rate, the end-to-end rate
//! (acknowledged events over the time until the table held every one of
//! them), the largest WAL backlog seen on `/metrics` (polled every 250 ms)
//! and the 503s the backlog limit (`max_wal_bytes`) answered.
//! `TRIPWIRE_BENCH_SHAPES` picks shapes (default
//! `collect,segment,name_payload`).
//!
//! The server starts on a store that has lived (`support/lived_log.rs`):
//! 1,000 collect events, then `TRIPWIRE_BENCH_LIVED_COMMITS` commits in
//! the events log (default 86400, a day at one a second; 0: a fresh store),
//! so each flush commits next to a day of log as it would in production.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

#[path = "support/lived_log.rs"]
mod lived_log;
#[path = "support/store_copy.rs"]
mod store_copy;
#[path = "support/wild_file.rs"]
mod wild_file;
use lived_log::lived_log_store;
use store_copy::copy_store;
use wild_file::wild_events;

const SECRET: &str = "bench-secret";
const BATCH_EVENTS: usize = 100;
const WARM_UP: Duration = Duration::from_secs(2);
/// Longest wait for one answer, and for the server to stop.
const PATIENCE: Duration = Duration::from_secs(120);
/// Digits of the counter in each messageId, written into the prebuilt bodies.
const ID_DIGITS: usize = 16;
const ID_SLOT: &str = "################";
/// Distinct request bodies per sustained shape (ids differ in each copy).
const SUSTAINED_BODIES: usize = 10;
/// How often the sustained runs read the WAL backlog.
const BACKLOG_POLL: Duration = Duration::from_millis(250);

fn main() {
    let seconds = env_number("TRIPWIRE_BENCH_SECONDS", 10);
    let connections: Vec<usize> = std::env::var("TRIPWIRE_BENCH_CONNECTIONS")
        .unwrap_or_else(|_| "32".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("TRIPWIRE_BENCH_CONNECTIONS: counts")
        })
        .collect();
    let extra = std::env::var("TRIPWIRE_BENCH_INGEST").unwrap_or_default();
    let lived_commits = env_number("TRIPWIRE_BENCH_LIVED_COMMITS", 86_400);
    let server = Server::start(&extra, lived_commits);
    println!(
        "tripwire serve (pid {}) at {}; {seconds} s per scenario; [ingest] {:?}; \
         {lived_commits} commits in the events log before",
        server.child.id(),
        server.base,
        extra
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let load = Load::new(&server);
    let duration = Duration::from_secs(seconds);
    let sustained = Duration::from_secs(env_number("TRIPWIRE_BENCH_SUSTAINED", 60));
    let shapes = std::env::var("TRIPWIRE_BENCH_SHAPES")
        .unwrap_or_else(|_| "collect,segment,name_payload".into());
    let mut acknowledged = 0;
    runtime.block_on(async {
        let warm = load
            .run(std::slice::from_ref(&load.batch), connections[0], WARM_UP)
            .await;
        acknowledged += warm.acknowledged_events(BATCH_EVENTS);
        for &count in &connections {
            let tally = load.measure(&server, "batch", count, duration).await;
            acknowledged += tally.acknowledged_events(BATCH_EVENTS);
        }
        for &count in &connections {
            let tally = load.measure(&server, "single", count, duration).await;
            acknowledged += tally.acknowledged_events(1);
        }
        if !sustained.is_zero() {
            for shape in shapes.split(',').map(str::trim) {
                let bodies = wild_bodies(&server.base, shape);
                let tally = load
                    .sustain(&server, shape, &bodies, connections[0], sustained)
                    .await;
                acknowledged += tally.acknowledged_events(BATCH_EVENTS);
            }
        }
    });
    server.stop_and_check(acknowledged);
}

/// [`SUSTAINED_BODIES`] `/v1/batch` bodies of [`BATCH_EVENTS`] events of
/// `shape` from benches/wild_events.py, their ids made slots.
fn wild_bodies(base: &str, shape: &str) -> Vec<Template> {
    let text = std::fs::read_to_string(wild_file(shape)).expect("the wild events");
    let items: Vec<String> = text
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).expect("a JSON event");
            let id = if event.get("event_id").is_some() {
                "event_id"
            } else {
                "messageId"
            };
            event[id] = format!("wild-{ID_SLOT}").into();
            event.to_string()
        })
        .collect();
    items
        .chunks(BATCH_EVENTS)
        .map(|chunk| {
            let body = format!(r#"{{"batch":[{}]}}"#, chunk.join(","));
            Template::new(format!("{base}/v1/batch"), body)
        })
        .collect()
}

/// [`SUSTAINED_BODIES`] × [`BATCH_EVENTS`] events of `shape`.
fn wild_file(shape: &str) -> PathBuf {
    wild_events(shape, (SUSTAINED_BODIES * BATCH_EVENTS) as u64)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}: a number"))
    })
}

/// The release `tripwire serve` in a project under target/tmp (a real
/// disk, so the fsyncs cost what they cost), on a copy of a lived store.
struct Server {
    child: Child,
    base: String,
    config: PathBuf,
    /// Events the store held before the server started.
    seeded: u64,
    _project: tempfile::TempDir,
}

impl Server {
    fn start(extra_ingest: &str, lived_commits: u64) -> Server {
        let project = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let seed = wild_file("collect");
        let lived = lived_log_store(&seed, lived_commits);
        copy_store(&lived.join("store"), &project.path().join("store")).expect("copy the store");
        let seeded = std::fs::read_to_string(&seed)
            .expect("the seed")
            .lines()
            .count() as u64;
        let config = project.path().join("tripwire.toml");
        std::fs::write(
            &config,
            format!(
                // query_memory: the durability check counts the distinct ids of
                // every event the runs stored (~60M after the sustained runs),
                // more than the default 4 GiB holds.
                "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\nmetrics_public = true\n\
                 query_memory = 17179869184\n\
                 [[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n\
                 [ingest]\n{extra_ingest}\n"
            ),
        )
        .expect("write config");
        let mut child = tripwire(&config, project.path())
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tripwire serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a first line").expect("utf-8");
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            base,
            config,
            seeded,
            _project: project,
        }
    }

    /// CPU seconds the server has used (user + system).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the server's /proc stat");
        // Fields after the command name, which ends with ')': utime and stime
        // are the 12th and 13th.
        let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // SAFETY: sysconf only reads a constant.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    /// SIGTERM (a graceful stop commits every acknowledged event), then
    /// the events table must hold exactly `acknowledged` events.
    fn stop_and_check(mut self, acknowledged: u64) {
        let started = Instant::now();
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                break status;
            }
            if started.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("tripwire serve did not stop within {PATIENCE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "tripwire serve exited with {status}");
        let stopped = started.elapsed();
        let out = tripwire(&self.config, self._project.path())
            .args(["query", "--format", "json"])
            .arg("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events")
            .output()
            .expect("run tripwire query");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let row: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON row");
        let stored = |field: &str| row[field].as_u64().and_then(|n| n.checked_sub(self.seeded));
        let (rows, ids) = (stored("n"), stored("ids"));
        println!(
            "durability: {acknowledged} events acknowledged; after SIGTERM (stopped in {:.1} s) \
             the events table holds {} rows, {} distinct ids besides the {} it started with",
            stopped.as_secs_f64(),
            rows.unwrap_or(0),
            ids.unwrap_or(0),
            self.seeded
        );
        assert_eq!(
            rows,
            Some(acknowledged),
            "acknowledged events lost or doubled"
        );
        assert_eq!(ids, Some(acknowledged), "an event id stored twice");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tripwire(config: &Path, dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripwire"));
    command.arg("--config").arg(config).current_dir(dir);
    command
}

/// A prebuilt body and where its messageIds' digits go.
struct Template {
    url: String,
    bytes: Vec<u8>,
    slots: Vec<usize>,
}

impl Template {
    fn new(url: String, body: String) -> Template {
        let slots = body.match_indices(ID_SLOT).map(|(at, _)| at).collect();
        Template {
            url,
            bytes: body.into_bytes(),
            slots,
        }
    }

    fn events(&self) -> u64 {
        self.slots.len() as u64
    }

    /// A copy with ids `first..first + events()` written in.
    fn fill(&self, first: u64) -> Vec<u8> {
        let mut body = self.bytes.clone();
        for (n, &at) in self.slots.iter().enumerate() {
            write_digits(&mut body[at..at + ID_DIGITS], first + n as u64);
        }
        body
    }
}

/// `n` in decimal, zero-padded to fill `slot`.
fn write_digits(slot: &mut [u8], mut n: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// One Segment track; `n` varies its names and ids.
fn track(n: usize) -> String {
    const NAMES: [&str; 4] = [
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
    ];
    format!(
        r#"{{"type":"track","event":"{}","anonymousId":"anon-{:06}","userId":"user-{:04}","messageId":"bench-{ID_SLOT}","timestamp":"2026-11-05T10:00:00.000Z","properties":{{"sku":"SKU-{n}","price":12.5,"quantity":{},"currency":"USD","category":"shoes"}},"context":{{"library":{{"name":"tripwire-bench","version":"1"}},"ip":"127.0.0.1","userAgent":"Mozilla/5.0 (X11; Linux x86_64)"}}}}"#,
        NAMES[n % NAMES.len()],
        n * 7919 % 100_000,
        n % 1000,
        n % 5 + 1
    )
}

/// The two request shapes, the client and the id counter.
struct Load {
    client: reqwest::Client,
    auth: String,
    batch: Template,
    single: Template,
    next_id: AtomicU64,
}

impl Load {
    fn new(server: &Server) -> Load {
        let items: Vec<String> = (0..BATCH_EVENTS).map(track).collect();
        let batch = format!(
            r#"{{"batch":[{}],"sentAt":"2026-11-05T10:00:01.000Z"}}"#,
            items.join(",")
        );
        let key = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET}:"));
        Load {
            client: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(PATIENCE)
                .build()
                .expect("an HTTP client"),
            auth: format!("Basic {key}"),
            batch: Template::new(format!("{}/v1/batch", server.base), batch),
            single: Template::new(format!("{}/v1/track", server.base), track(1)),
            next_id: AtomicU64::new(0),
        }
    }

    /// Runs `scenario` from an idle server (nothing left to flush) and
    /// prints its line, with the WAL backlog the flusher still had to commit.
    async fn measure(
        &self,
        server: &Server,
        scenario: &str,
        connections: usize,
        duration: Duration,
    ) -> Tally {
        let template = if scenario == "batch" {
            &self.batch
        } else {
            &self.single
        };
        self.drain(server).await;
        let before = WalMetrics::read(&self.client, &server.base).await;
        let server_cpu = server.cpu_seconds();
        let own_cpu = own_cpu_seconds();
        let started = Instant::now();
        let mut tally = self
            .run(std::slice::from_ref(template), connections, duration)
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let cores = |cpu: f64| cpu / elapsed;
        let (server_cores, own_cores) = (
            cores(server.cpu_seconds() - server_cpu),
            cores(own_cpu_seconds() - own_cpu),
        );
        let after = WalMetrics::read(&self.client, &server.base).await;
        let fsyncs = after.fsyncs - before.fsyncs;
        let drained = self.drain(server).await;
        let requests = tally.ok as f64 / elapsed;
        let rate = if scenario == "batch" {
            format!(
                "{:.0} events/s ({requests:.0} req/s)",
                requests * template.events() as f64
            )
        } else {
            format!("{requests:.0} req/s")
        };
        println!(
            "{scenario:<6} ({} event(s)/request, {connections} connections, {elapsed:.1} s): \
             {rate}, latency {}; {} OK, non-200: {}; {:.0} WAL fsyncs/s ({:.1} requests \
             each); cpu: server {server_cores:.2} cores, generator {own_cores:.2} cores; \
             the flusher {} events behind at the end, caught up {:.1} s later",
            template.events(),
            tally.percentiles(),
            tally.ok,
            tally.failures(),
            fsyncs / elapsed,
            tally.ok as f64 / fsyncs.max(1.0),
            after.accepted - after.flushed,
            drained.as_secs_f64(),
        );
        tally
    }

    /// Waits until the flusher has committed every acknowledged event.
    async fn drain(&self, server: &Server) -> Duration {
        let started = Instant::now();
        while WalMetrics::read(&self.client, &server.base)
            .await
            .pending_bytes
            > 0.0
        {
            assert!(
                started.elapsed() < PATIENCE,
                "the flusher did not commit the WAL within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    /// A sustained run of `bodies` (see the module's doc): acknowledged
    /// and end-to-end rates, the largest WAL backlog, the 503s.
    async fn sustain(
        &self,
        server: &Server,
        shape: &str,
        bodies: &[Template],
        connections: usize,
        duration: Duration,
    ) -> Tally {
        self.drain(server).await;
        let server_cpu = server.cpu_seconds();
        let started = Instant::now();
        let deadline = started + duration;
        let (tally, backlog) = futures::join!(
            self.run(bodies, connections, duration),
            self.largest_backlog(&server.base, deadline)
        );
        let acked_in = started.elapsed().as_secs_f64();
        self.drain(server).await;
        let landed_in = started.elapsed().as_secs_f64();
        let cores = (server.cpu_seconds() - server_cpu) / landed_in;
        let events = tally.ok as f64 * BATCH_EVENTS as f64;
        let refused = tally
            .failed
            .iter()
            .filter(|(what, _)| what.starts_with("503"))
            .map(|(_, n)| n)
            .sum::<u64>();
        println!(
            "sustained {shape:<12} ({BATCH_EVENTS} events/request, {connections} connections, \
             {acked_in:.1} s): acknowledged {:.0} events/s; end to end {:.0} events/s (all in \
             the table {:.1} s after the load stopped); largest WAL backlog {:.1} MB, {} events; \
             {refused} requests answered 503; other failures: {}; server {cores:.2} cores",
            events / acked_in,
            events / landed_in,
            landed_in - acked_in,
            backlog.bytes / 1e6,
            backlog.events,
            tally.failures_except("503"),
        );
        tally
    }

    /// The most bytes (and acknowledged events) the WAL held at once until
    /// `deadline`.
    async fn largest_backlog(&self, base: &str, deadline: Instant) -> Backlog {
        let mut largest = Backlog::default();
        while Instant::now() < deadline {
            let now = WalMetrics::read(&self.client, base).await;
            largest.bytes = largest.bytes.max(now.pending_bytes);
            largest.events = largest.events.max(now.accepted.saturating_sub(now.flushed));
            tokio::time::sleep(BACKLOG_POLL).await;
        }
        largest
    }

    /// Keeps `connections` requests of `templates` (in turn) in flight for
    /// `duration`.
    async fn run(&self, templates: &[Template], connections: usize, duration: Duration) -> Tally {
        let deadline = Instant::now() + duration;
        let workers = (0..connections).map(|_| self.worker(templates, deadline));
        let tallies = futures::future::join_all(workers).await;
        tallies.into_iter().fold(Tally::default(), Tally::merge)
    }

    async fn worker(&self, templates: &[Template], deadline: Instant) -> Tally {
        let mut tally = Tally::default();
        while Instant::now() < deadline {
            let events = templates[0].events();
            let first = self.next_id.fetch_add(events, Ordering::Relaxed);
            let template = &templates[(first / events) as usize % templates.len()];
            let body = template.fill(first);
            let started = Instant::now();
            let sent = self
                .client
                .post(&template.url)
                .header(AUTHORIZATION, &self.auth)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            let answer = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, response.bytes().await.unwrap_or_default())
                }
                Err(e) => {
                    tally.note_failure(format!("error: {e}"));
                    continue;
                }
            };
            match answer {
                (200, body) if &body[..] == br#"{"success":true}"# => {
                    tally.ok += 1;
                    tally.micros.push(started.elapsed().as_micros() as u32);
                }
                (status, body) => {
                    tally.note_failure(format!("{status} {}", String::from_utf8_lossy(&body)))
                }
            }
        }
        tally
    }
}

/// What one scenario (or one of its connections) saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    /// Latency of each OK request, in microseconds.
    micros: Vec<u32>,
    /// Every other answer (status and body, or the error), and how often.
    failed: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(mut self, other: Tally) -> Tally {
        self.ok += other.ok;
        self.micros.extend(other.micros);
        for (what, n) in other.failed {
            *self.failed.entry(what).or_default() += n;
        }
        self
    }

    fn note_failure(&mut self, what: String) {
        *self.failed.entry(what).or_default() += 1;
    }

    fn failures(&self) -> String {
        self.failures_except("\0")
    }

    /// Failures whose answer does not start with `prefix`.
    fn failures_except(&self, prefix: &str) -> String {
        let each: Vec<String> = self
            .failed
            .iter()
            .filter(|(what, _)| !what.starts_with(prefix))
            .map(|(what, n)| format!("{n} × {what}"))
            .collect();
        if each.is_empty() {
            return "0".into();
        }
        each.join("; ")
    }

    /// Events acknowledged; the durability check needs every request answered.
    fn acknowledged_events(&self, per_request: usize) -> u64 {
        let unknown = self.failed.keys().any(|what| what.starts_with("error"));
        assert!(
            !unknown,
            "requests without an answer may or may not be stored: {}",
            self.failures()
        );
        self.ok * per_request as u64
    }

    fn percentiles(&mut self) -> String {
        self.micros.sort_unstable();
        let at = |p: f64| {
            let rank = (p * self.micros.len() as f64).ceil() as usize;
            let micros = self.micros[rank.clamp(1, self.micros.len()) - 1];
            micros as f64 / 1000.0
        };
        if self.micros.is_empty() {
            return "none".into();
        }
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            at(0.50),
            at(0.99),
            at(1.0)
        )
    }
}

/// The largest WAL backlog a sustained run saw.
#[derive(Default)]
struct Backlog {
    bytes: f64,
    events: u64,
}

/// The write-ahead log's and the flusher's numbers on `/metrics`.
struct WalMetrics {
    fsyncs: f64,
    pending_bytes: f64,
    accepted: u64,
    flushed: u64,
}

impl WalMetrics {
    async fn read(client: &reqwest::Client, base: &str) -> WalMetrics {
        let page = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics page");
        let value = |name: &str| -> f64 {
            page.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /metrics"))
        };
        WalMetrics {
            fsyncs: value("tripwire_wal_fsyncs_total"),
            pending_bytes: value("tripwire_wal_bytes_pending"),
            accepted: value("tripwire_events_accepted_total") as u64,
            flushed: value("tripwire_events_flushed_total") as u64,
        }
    }
}

/// CPU seconds this process has used (user + system).
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
