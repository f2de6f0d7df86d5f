//! `[engine] ballista` (feature `cluster`): a scheduler and two executors,
//! each a `tripwire cluster …` child process on loopback, run the example
//! project's triggers, a preview and queries over a local store and over an
//! S3 store (moto's server, as `s3` starts it), and get the same matches and
//! rows as the in-process engine on a local store; without the scheduler
//! the same command fails, so the cluster really ran them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::project::Project;
use crate::s3::Moto;
use crate::server::PATIENCE;
use crate::workbench::copy_dir;

/// The sample's clock (README's first screen).
const NOW: &str = "2026-11-05T00:00:00Z";

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Polls until something accepts connections on `addr`, or fails after [`PATIENCE`].
fn wait_listening(addr: SocketAddr, what: &str, child: &mut Child) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {addr}: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {addr}"
        );
        std::thread::yield_now();
    }
}

/// A scheduler and executors, killed (`kill -9`) when dropped.
struct Cluster {
    scheduler: SocketAddr,
    children: Vec<Child>,
}

impl Cluster {
    /// Starts a scheduler and `executors` executors with the `tripwire` of
    /// this build, reading `project`'s config; their logs go to `logs`.
    fn start(project: &Project, executors: usize, logs: &Path) -> Cluster {
        let scheduler: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cluster = Cluster {
            scheduler,
            children: Vec::new(),
        };
        let bind = scheduler.to_string();
        cluster.spawn(
            project,
            &["cluster", "scheduler", "--bind", &bind],
            logs,
            "scheduler",
        );
        let child = cluster.children.last_mut().unwrap();
        wait_listening(scheduler, "the scheduler", child);
        for n in 0..executors {
            let flight: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let grpc = free_port();
            let work = logs.join(format!("executor{n}"));
            std::fs::create_dir_all(&work).unwrap();
            let args = [
                "cluster",
                "executor",
                "--scheduler",
                &format!("df://{scheduler}"),
                "--bind",
                &flight.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--task-slots",
                "2",
                "--work-dir",
                work.to_str().unwrap(),
            ];
            cluster.spawn(project, &args, logs, &format!("executor{n}"));
            let child = cluster.children.last_mut().unwrap();
            wait_listening(flight, "an executor's results", child);
            let tasks: SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
            wait_listening(tasks, "an executor's tasks", child);
        }
        cluster
    }

    fn spawn(&mut self, project: &Project, args: &[&str], logs: &Path, name: &str) {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = project
            .command(args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start tripwire cluster");
        self.children.push(child);
    }

    /// The `[engine]` table that sends a project's queries here.
    fn engine(&self) -> String {
        format!("[engine]\nballista = \"df://{}\"\n", self.scheduler)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A local store.
const LOCAL: &str = "storage = \"./store\"\n";

/// The config of a project stored as `storage` says, plus `extra` tables.
fn config(storage: &str, extra: &str) -> String {
    format!("{storage}\n[[workspace]]\nid = \"shop\"\n{extra}")
}

/// The repository's example project (triggers, flows, segments) stored as
/// `storage` says, with the sample imported, plus `extra` config.
fn example_project(storage: &str, extra: &str) -> Project {
    let project = Project::with_config(&config(storage, extra));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("queries"), &project.path("queries"));
    copy_dir(&repo.join("flows"), &project.path("flows"));
    project.ok(&["import", repo.join("data/sample").to_str().unwrap()]);
    project
}

/// The rows of `sql`, as [`json_rows`] reads them.
fn query(project: &Project, sql: &str) -> Vec<serde_json::Value> {
    json_rows(&project.ok(&["query", "--now", NOW, "--format", "json", sql]))
}

/// JSON lines as rows, with each match's `data` parsed and its `seq` (a
/// store's own numbering of events) left out.
fn json_rows(lines: &str) -> Vec<serde_json::Value> {
    lines
        .lines()
        .map(|l| {
            let mut row: serde_json::Value = serde_json::from_str(l).expect("a JSON row");
            if let Some(data) = row.get("data").and_then(|d| d.as_str()) {
                let mut data: serde_json::Value = serde_json::from_str(data).expect("JSON data");
                data.as_object_mut().map(|d| d.remove("seq"));
                row["data"] = data;
            }
            row
        })
        .collect()
}

/// `rows` in one order whatever order ties came in.
fn sorted(mut rows: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

/// Fails on the first row where the cluster's answer differs.
fn assert_same(cluster: &[serde_json::Value], local: &[serde_json::Value], what: &str) {
    for (n, (c, l)) in cluster.iter().zip(local).enumerate() {
        assert_eq!(c, l, "{what}: row {n} differs");
    }
    assert_eq!(cluster.len(), local.len(), "{what}: row counts differ");
}

const MATCHES: &str =
    "SELECT trigger, contact, email, user_id, client_id, event_id, data FROM matches";

#[test]
fn the_example_triggers_and_queries_match_the_in_process_engine() {
    same_results_on_a_cluster(LOCAL);
}

#[test]
fn on_s3_the_cluster_matches_the_in_process_engine_too() {
    let Some(moto) = Moto::start() else {
        return;
    };
    same_results_on_a_cluster(&moto.storage("cluster"));
}

/// The example project on a local store in-process, and stored as
/// `storage` says on a cluster (whose processes read the same `storage`):
/// the same matches, deliveries, previews and query rows.
fn same_results_on_a_cluster(storage: &str) {
    let logs = tempfile::tempdir().unwrap();
    let local = example_project(LOCAL, "");
    let config_only = Project::with_config(&config(storage, ""));
    let cluster = Cluster::start(&config_only, 2, logs.path());
    let remote = example_project(storage, &cluster.engine());

    // Two runs: the second picks up the events the first one's flows emitted.
    for _ in 0..2 {
        local.ok(&["run", "--now", NOW]);
        remote.ok(&["run", "--now", NOW]);
    }
    let matched = sorted(query(&local, MATCHES));
    assert!(matched.len() > 10, "the sample matches: {matched:?}");
    assert_same(&sorted(query(&remote, MATCHES)), &matched, "matches");
    let fired = "SELECT trigger, count(*) AS n FROM matches GROUP BY trigger ORDER BY trigger";
    let per_trigger = query(&local, fired);
    assert!(
        per_trigger
            .iter()
            .any(|r| r["trigger"] == "vip_cart_abandoned"),
        "chained events fired: {per_trigger:?}"
    );
    let deliveries =
        "SELECT flow, action, contact, status FROM deliveries ORDER BY flow, action, contact";
    let (remote_deliveries, local_deliveries) =
        (query(&remote, deliveries), query(&local, deliveries));
    assert_same(
        &sorted(remote_deliveries),
        &sorted(local_deliveries),
        "deliveries",
    );

    // Queries an analyst writes: JSON functions and operators, joins with
    // identities and contacts, aggregates and windows.
    for sql in [
        "SELECT event_name, count(*) AS n FROM events GROUP BY event_name ORDER BY n DESC, event_name",
        "SELECT email, json_get_float(properties, 'cart_value') AS v FROM events \
         WHERE event_name = 'cart_abandoned' AND json_get_float(properties, 'cart_value') > 300 \
         ORDER BY v DESC, email",
        "SELECT count(*) AS n FROM events WHERE (properties->>'sku') = 'SKU-300'",
        "SELECT i.user_id, i.email, count(*) AS n FROM events e JOIN identities i \
         ON e.client_id = i.client_id GROUP BY 1, 2 ORDER BY n DESC, 1 LIMIT 20",
        "SELECT email, user_id, row_number() OVER (ORDER BY email, user_id) AS k FROM contacts \
         ORDER BY k LIMIT 20",
        "SELECT trigger, count(*) AS n FROM runs GROUP BY trigger ORDER BY trigger",
    ] {
        let expected = query(&local, sql);
        assert!(!expected.is_empty(), "{sql} returns rows");
        assert_same(&query(&remote, sql), &expected, sql);
    }

    // A preview: a dry run of a trigger over the whole table.
    let preview = |p: &Project| {
        let args = [
            "preview",
            "cart_abandoned",
            "--all",
            "--now",
            NOW,
            "--format",
            "json",
        ];
        sorted(json_rows(&p.ok(&args)))
    };
    let planned = preview(&local);
    assert!(
        planned.len() > 10,
        "the preview plans deliveries: {planned:?}"
    );
    assert_same(&preview(&remote), &planned, "preview");

    // The executors ran the tasks: both logged work, and without the cluster
    // the same query fails, naming the engine.
    let executed =
        |n: usize| std::fs::read_to_string(logs.path().join(format!("executor{n}.log"))).unwrap();
    for n in 0..2 {
        let log = executed(n);
        assert!(
            log.contains("Finished task"),
            "executor{n} ran tasks:\n{log}"
        );
    }
    let named = format!(
        "cannot reach the Ballista cluster of [engine] ballista = \"df://{}\"",
        cluster.scheduler
    );
    drop(cluster);
    for args in [
        &["query", "SELECT count(*) FROM events"][..],
        &["preview", "cart_abandoned", "--all", "--now", NOW][..],
    ] {
        let failed = remote.run(args);
        assert_eq!(failed.status.code(), Some(2), "{args:?} needs the cluster");
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(
            stderr.contains(&named),
            "{args:?} names the scheduler: {stderr}"
        );
    }
}
