//! A temporary tripwire project: its own `tripwire.toml` and storage, the
//! real binary run as a child process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tripwire::sample::{SampleSpec, SampleTotals, write_ndjson};

/// The secret (write key) configured for the test workspace `shop`.
pub const SECRET: &str = "test-secret";

/// The admin key of the test workspace `shop` in a serving project.
pub const ADMIN: &str = "test-admin";

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project with one workspace, `shop`, whose secret is [`SECRET`].
    pub fn new() -> Project {
        Project::with_config(&format!(
            "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n"
        ))
    }

    pub fn with_config(toml: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("tripwire.toml"), toml).expect("write config");
        Project { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The events table's folder of a workspace.
    pub fn events_table(&self, workspace: &str) -> PathBuf {
        self.path("store").join(workspace).join("events")
    }

    /// A command running `tripwire ARGS --config <project>/tripwire.toml`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tripwire"));
        command
            .args(args)
            .arg("--config")
            .arg(self.path("tripwire.toml"))
            .current_dir(self.dir.path());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run tripwire")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tripwire {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Imports files; returns the summary line.
    pub fn import(&self, files: &[&Path]) -> String {
        let mut args = vec!["import"];
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        args.extend(names.iter().map(String::as_str));
        self.ok(&args)
    }

    /// Runs SQL and returns the rows as JSON objects.
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        self.ok(&["query", sql, "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON row"))
            .collect()
    }

    /// A single number from `SELECT <expr> …`.
    pub fn number(&self, sql: &str) -> f64 {
        let rows = self.query(sql);
        let row = rows.first().and_then(|r| r.as_object()).expect("one row");
        row.values().next().and_then(|v| v.as_f64()).unwrap_or(0.0)
    }

    /// Writes `events` sample events (seeded) as NDJSON; returns what was written.
    pub fn sample(&self, name: &str, events: u64, seed: u64) -> (PathBuf, SampleTotals) {
        let spec = SampleSpec {
            events,
            seed,
            secret: Some(SECRET.into()),
            ..SampleSpec::default()
        };
        let path = self.path(name);
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&path).expect("create sample"));
        let totals = write_ndjson(&spec, &mut file).expect("write sample");
        drop(file);
        (path, totals)
    }

    /// Asserts the events table holds exactly `totals`, per event name.
    pub fn assert_holds(&self, totals: &SampleTotals) {
        let rows = self.query(
            "SELECT event_name, count(*) AS n FROM events WHERE type = 'track' GROUP BY event_name ORDER BY event_name",
        );
        let got: Vec<(String, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r["event_name"].as_str().unwrap().to_string(),
                    r["n"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = totals
            .per_name
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(got, want);
        let identifies = self.number("SELECT count(*) FROM events WHERE type = 'identify'");
        assert_eq!(identifies as u64, totals.identifies);
    }
}
